//! Device authentication: `Authorization: Bearer <device token>`.

use deadpool_postgres::Pool;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use service_plumbing::http::BearerError;
use service_plumbing::problem::Problem;

use crate::store::devices::{self, Device};
use crate::store::{StoreError, connection};

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No usable credentials, or credentials of no active device: 401.
    Unauthorized(&'static str),
    /// The database could not be asked.
    Store(StoreError),
}

/// The device whose token the request carries.
pub async fn authenticate(pool: &Pool, headers: &HeaderMap) -> Result<Device, AuthError> {
    let token = bearer_token(headers)?;
    let client = connection(pool).await.map_err(AuthError::Store)?;
    devices::authenticate(&client, token)
        .await
        .map_err(AuthError::Store)?
        .ok_or(AuthError::Unauthorized(
            "the device token is unknown or revoked",
        ))
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    service_plumbing::http::bearer_token(headers).map_err(|error| match error {
        BearerError::Missing => {
            AuthError::Unauthorized("an Authorization: Bearer <device token> header is required")
        }
        BearerError::NotBearer | BearerError::Malformed => {
            AuthError::Unauthorized("the Authorization header must be `Bearer <token>`")
        }
    })
}

/// The 401 problem, with the challenge RFC 6750 asks for.
pub fn unauthorized(detail: &str) -> Problem {
    let challenge = if detail.contains("required") {
        r#"Bearer realm="ingest-api""#
    } else {
        r#"Bearer realm="ingest-api", error="invalid_token""#
    };
    Problem::new(StatusCode::UNAUTHORIZED, detail)
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
}
