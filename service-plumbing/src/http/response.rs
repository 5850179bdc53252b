//! Response types and the JSON response helper shared by handlers.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::problem::Problem;

/// The response every handler returns: the whole body in memory.
pub type HttpResponse = Response<Full<Bytes>>;

/// A boxed, sendable future, the return type of handlers and readiness checks.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An `application/json` response of `value` with `status`.
///
/// A value that fails to serialize (a map with non-string keys, say) is a bug; it is logged and
/// answered with a 500 problem.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "failed to serialize response body");
            Problem::internal().into_response()
        }
    }
}
