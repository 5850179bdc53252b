//! What a handler gets besides the request: its id, path parameters, and body reading with
//! the server's whole-body read timeout and a size limit.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::problem::Problem;

/// Per-request information passed to a [`super::Handler`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub(crate) request_id: String,
    pub(crate) params: PathParams,
    pub(crate) body_read_timeout: Duration,
}

impl RequestContext {
    /// The request's id, also sent back in `x-request-id`; put it in problems you return.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The path parameter `name` (for `{id}` in the route pattern, `param("id")`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// All path parameters.
    pub fn params(&self) -> &PathParams {
        &self.params
    }

    /// Reads the whole body, failing if it is longer than `max_bytes` or takes longer than the
    /// server's `body_read_timeout_ms` (slow clients must not hold a handler forever).
    pub async fn read_body(&self, body: Incoming, max_bytes: usize) -> Result<Bytes, BodyError> {
        let collect = Limited::new(body, max_bytes).collect();
        match tokio::time::timeout(self.body_read_timeout, collect).await {
            Err(_elapsed) => Err(BodyError::TimedOut(self.body_read_timeout)),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) => {
                if error.is::<LengthLimitError>() {
                    return Err(BodyError::TooLarge { max_bytes });
                }
                match error.downcast::<hyper::Error>() {
                    Ok(error) => Err(BodyError::Read(*error)),
                    Err(other) => Err(BodyError::Other(other)),
                }
            }
        }
    }
}

/// The path parameters bound by the matched route pattern, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    pub(crate) fn from_matchit(params: &matchit::Params<'_, '_>) -> Self {
        Self(
            params
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    /// The value bound to `name`, not percent-decoded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every `(name, value)` pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the handler accepts.
    #[error("request body is larger than {max_bytes} bytes")]
    TooLarge {
        /// The limit passed to [`RequestContext::read_body`].
        max_bytes: usize,
    },
    /// The client did not send the whole body in time.
    #[error("request body was not received within {0:?}")]
    TimedOut(Duration),
    /// The connection failed while reading the body.
    #[error("failed to read request body")]
    Read(#[source] hyper::Error),
    /// Any other body error.
    #[error("failed to read request body")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BodyError {
    /// The problem to answer with: 413, 408 or 400.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::TooLarge { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            Self::TimedOut(_) => Problem::new(StatusCode::REQUEST_TIMEOUT, self.to_string()),
            Self::Read(_) | Self::Other(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
        }
    }
}
