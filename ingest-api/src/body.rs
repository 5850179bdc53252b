//! Reading an upload's body: content type, optional gzip, and the size limit, which applies to
//! the inflated bytes so that a gzip bomb is cut off while it inflates.

use std::io::Read;

use bytes::Bytes;
use flate2::read::GzDecoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use service_plumbing::http::RequestContext;
use service_plumbing::problem::Problem;

/// Reads a JSON request body of at most `max_bytes` (after decompression).
pub async fn read_json(
    headers: &HeaderMap,
    body: Incoming,
    context: &RequestContext,
    max_bytes: usize,
) -> Result<Bytes, Problem> {
    require_json(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    let raw = context
        .read_body(body, max_bytes)
        .await
        .map_err(|error| error.to_problem())?;
    if gzip {
        inflate(&raw, max_bytes)
    } else {
        Ok(raw)
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json, not {content_type:?}"),
        ))
    }
}

fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, Problem> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let encoding = value.to_str().unwrap_or("").trim();
    if encoding.eq_ignore_ascii_case("gzip") {
        Ok(true)
    } else if encoding.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding must be gzip or identity, not {encoding:?}"),
        ))
    }
}

/// Inflates `compressed`, failing as soon as the output passes `max_bytes`.
fn inflate(compressed: &[u8], max_bytes: usize) -> Result<Bytes, Problem> {
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut inflated = Vec::new();
    GzDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut inflated)
        .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "the body is not valid gzip"))?;
    if inflated.len() > max_bytes {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the inflated body is larger than {max_bytes} bytes"),
        ));
    }
    Ok(Bytes::from(inflated))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_cut_off_at_the_limit() {
        let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
        assert!(bomb.len() < 100_000);
        let problem = inflate(&bomb, 1024 * 1024).unwrap_err();
        assert_eq!(problem.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_body_at_the_limit_inflates() {
        let body = vec![b'x'; 1000];
        assert_eq!(inflate(&gzip(&body), 1000).unwrap().len(), 1000);
        assert_eq!(inflate(&gzip(&body), 999).unwrap_err().status, 413);
    }

    #[test]
    fn content_types_other_than_json_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(require_json(&headers).unwrap_err().status, 415);
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(require_json(&headers).unwrap_err().status, 415);
        headers.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(require_json(&headers).is_ok());
    }
}
