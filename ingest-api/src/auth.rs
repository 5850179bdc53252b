//! Device authentication: `Authorization: Bearer <device token>`.

use deadpool_postgres::Pool;
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use service_plumbing::problem::Problem;

use crate::store::devices::{self, Device};
use crate::store::{StoreError, connection};

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No usable credentials, or credentials of no active device: 401.
    Unauthorized(Rejection),
    /// The database could not be asked.
    Store(StoreError),
}

/// What is wrong with a request's credentials; each says its problem detail and picks its
/// RFC 6750 challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header: the challenge names the realm only.
    Missing,
    /// The header's value is not visible ASCII.
    Unreadable,
    /// The header is not `Bearer <token>`.
    NotBearer,
    /// The token is no active device's.
    UnknownToken,
}

impl Rejection {
    /// The problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Rejection::Missing => "an Authorization: Bearer <device token> header is required",
            Rejection::Unreadable => "the Authorization header is not readable",
            Rejection::NotBearer => "the Authorization header must be `Bearer <token>`",
            Rejection::UnknownToken => "the device token is unknown or revoked",
        }
    }

    /// The `WWW-Authenticate` challenge: without credentials only the realm, with unusable
    /// ones also `error="invalid_token"`.
    fn challenge(self) -> &'static str {
        match self {
            Rejection::Missing => r#"Bearer realm="ingest-api""#,
            Rejection::Unreadable | Rejection::NotBearer | Rejection::UnknownToken => {
                r#"Bearer realm="ingest-api", error="invalid_token""#
            }
        }
    }
}

/// The device whose token the request carries.
pub async fn authenticate(pool: &Pool, headers: &HeaderMap) -> Result<Device, AuthError> {
    let token = bearer_token(headers)?;
    let client = connection(pool).await.map_err(AuthError::Store)?;
    devices::authenticate(&client, token)
        .await
        .map_err(AuthError::Store)?
        .ok_or(AuthError::Unauthorized(Rejection::UnknownToken))
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Unauthorized(Rejection::Missing))?
        .to_str()
        .map_err(|_| AuthError::Unauthorized(Rejection::Unreadable))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Unauthorized(Rejection::NotBearer))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Unauthorized(Rejection::NotBearer));
    }
    Ok(token)
}

/// The 401 problem of `rejection`, with the challenge RFC 6750 asks for.
pub fn unauthorized(rejection: Rejection) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, rejection.detail()).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(rejection.challenge()),
    )
}
