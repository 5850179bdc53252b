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
            Rejection::NotBearer => "the Authorization header must be `Bearer <token>`",
            Rejection::UnknownToken => "the device token is unknown or revoked",
        }
    }

    /// The `WWW-Authenticate` challenge: without credentials only the realm, with unusable
    /// ones also `error="invalid_token"`.
    fn challenge(self) -> &'static str {
        match self {
            Rejection::Missing => r#"Bearer realm="ingest-api""#,
            Rejection::NotBearer | Rejection::UnknownToken => {
                r#"Bearer realm="ingest-api", error="invalid_token""#
            }
        }
    }
}

/// The device whose token the request carries. A token that cannot be one the service issued
/// is refused without asking the database ([`shaped_token`]).
pub async fn authenticate(pool: &Pool, headers: &HeaderMap) -> Result<Device, AuthError> {
    let token = shaped_token(headers)?;
    let client = connection(pool).await.map_err(AuthError::Store)?;
    devices::authenticate(&client, token)
        .await
        .map_err(AuthError::Store)?
        .ok_or(AuthError::Unauthorized(Rejection::UnknownToken))
}

/// The bearer token, if it has the shape of a token the service issues
/// ([`devices::is_token_shaped`]): a cheap check, made before any database round trip and
/// before an upload takes one of its permits.
pub fn shaped_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let token = bearer_token(headers)?;
    if devices::is_token_shaped(token) {
        Ok(token)
    } else {
        Err(AuthError::Unauthorized(Rejection::UnknownToken))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    service_plumbing::http::bearer_token(headers).map_err(|error| {
        AuthError::Unauthorized(match error {
            BearerError::Missing => Rejection::Missing,
            BearerError::NotBearer | BearerError::Malformed => Rejection::NotBearer,
        })
    })
}

/// The 401 problem of `rejection`, with the challenge RFC 6750 asks for.
pub fn unauthorized(rejection: Rejection) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, rejection.detail()).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(rejection.challenge()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::header::AUTHORIZATION;
    use secrecy::SecretString;

    use super::*;

    /// A pool whose every connection attempt fails (nothing listens on port 1).
    fn unreachable_pool() -> Pool {
        let url = SecretString::from("postgres://nobody@127.0.0.1:1/nothing");
        service_plumbing::postgres::pool(&url, 1, "auth-test").unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_a_database_round_trip() {
        let pool = unreachable_pool();
        let well_formed = devices::new_token().unwrap();
        for forged in [
            "mhd_".to_string(),
            format!("{}0", well_formed),
            well_formed[..well_formed.len() - 1].to_string(),
            well_formed.to_uppercase(),
            well_formed.replace("mhd_", "xyz_"),
            format!("mhd_{}", "g".repeat(64)),
            "' OR 1=1 --".to_string(),
            "a".repeat(16 * 1024),
        ] {
            let outcome = authenticate(&pool, &bearer(&forged)).await;
            assert!(
                matches!(outcome, Err(AuthError::Unauthorized(_))),
                "{forged:.40}: {outcome:?}"
            );
        }
        // A well-formed token is looked up: here the lookup fails, which proves it was tried.
        let outcome = authenticate(&pool, &bearer(&well_formed)).await;
        assert!(matches!(outcome, Err(AuthError::Store(_))), "{outcome:?}");
    }
}
