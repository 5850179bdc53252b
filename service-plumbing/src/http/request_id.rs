//! The `x-request-id` of a request: echoed when the client sent a sane one, generated otherwise.
//!
//! The id goes into the response header, the request's log span and problem bodies, so one id
//! ties a client's report to our logs. Client-supplied ids are limited to 64 characters of
//! `[A-Za-z0-9-]`, so they cannot inject anything into logs or headers.

use http::HeaderMap;
use http::header::HeaderName;

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is echoed.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The request's id: the incoming `x-request-id` if acceptable, else a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable(value))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Whether a client-supplied id is short and made only of ASCII letters, digits and `-`.
fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers_with(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(id).unwrap());
        headers
    }

    fn is_generated(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4)
    }

    #[test]
    fn a_sane_incoming_id_is_echoed() {
        let id = "tablet-7-upload-0001";
        assert_eq!(request_id(&headers_with(id)), id);
    }

    #[test]
    fn an_id_of_exactly_64_characters_is_echoed() {
        let id = "a".repeat(64);
        assert_eq!(request_id(&headers_with(&id)), id);
    }

    #[test]
    fn a_missing_id_is_generated_as_uuid_v4() {
        let id = request_id(&HeaderMap::new());
        assert!(is_generated(&id), "{id}");
    }

    #[test]
    fn unacceptable_ids_are_replaced() {
        for bad in [
            "",
            &"a".repeat(65),
            "has space",
            "semi;colon",
            "new\tline",
            "ünï",
        ] {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(bad) {
                headers.insert(REQUEST_ID_HEADER, value);
            }
            let id = request_id(&headers);
            assert!(is_generated(&id), "{bad:?} gave {id}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
