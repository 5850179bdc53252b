//! `Authorization: Bearer <token>` (RFC 6750 section 2.1), parsed the same way by every service
//! that takes a bearer token; what a token means (a device, a patient) is the service's business.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Why a request carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization` header, or an empty one.
    #[error("the request has no Authorization header")]
    Missing,
    /// An `Authorization` header with another scheme, such as `Basic`.
    #[error("the Authorization header does not use the Bearer scheme")]
    NotBearer,
    /// `Bearer` with no token, a token with white space in it, several `Authorization` headers,
    /// or a header that is not visible ASCII.
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
}

/// The token of the request's one `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(BearerError::Missing),
        (Some(value), None) => parse_bearer(value.to_str().map_err(|_| BearerError::Malformed)?),
        (Some(_), Some(_)) => Err(BearerError::Malformed),
    }
}

/// The token of an `Authorization` value `Bearer <token>`; the scheme is matched
/// case-insensitively (RFC 9110 section 11.1).
pub fn parse_bearer(value: &str) -> Result<&str, BearerError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(BearerError::Missing);
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_must_be_one_word() {
        assert_eq!(parse_bearer("Bearer abc"), Ok("abc"));
        assert_eq!(parse_bearer("bearer  abc"), Ok("abc"));
        assert_eq!(parse_bearer(""), Err(BearerError::Missing));
        assert_eq!(parse_bearer("Basic abc"), Err(BearerError::NotBearer));
        assert_eq!(parse_bearer("Bearerabc"), Err(BearerError::NotBearer));
        assert_eq!(parse_bearer("Bearer"), Err(BearerError::Malformed));
        assert_eq!(parse_bearer("Bearer a b"), Err(BearerError::Malformed));
    }

    #[test]
    fn two_authorization_headers_are_malformed() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Err(BearerError::Missing));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(bearer_token(&headers), Ok("a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer_token(&headers), Err(BearerError::Malformed));
    }
}
