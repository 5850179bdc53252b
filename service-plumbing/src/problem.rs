//! RFC 9457 problem details: the body of every error response (`application/problem+json`).
//!
//! A [`Problem`] has the standard members (`type`, `title`, `status`, `detail`, `instance`)
//! plus two extensions: `errors`, a list of `{pointer, detail}` naming what was wrong where (a
//! JSON pointer into the request body, or a dependency for readiness), and `request_id`, so a
//! client can quote the id found in our logs. The constructors for common cases never put
//! internal error text in the response; log it instead.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde::{Serialize, Serializer};

/// `Content-Type` of a problem details response.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The `type` of problems that mean no more than their HTTP status (RFC 9457 section 4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// An RFC 9457 problem details object, ready to become an HTTP response.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI identifying the problem type; [`ABOUT_BLANK`] for plain HTTP statuses.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the problem type, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    #[serde(serialize_with = "serialize_status")]
    pub status: StatusCode,
    /// An explanation of this occurrence, safe to show to the client.
    pub detail: String,
    /// A URI identifying this occurrence (for example the request path), if useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What was wrong where; empty when the problem is not about particular fields.
    pub errors: Vec<FieldError>,
    /// The `x-request-id` of the request, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Extra response headers (`Allow`, `Retry-After`); not part of the JSON body.
    #[serde(skip)]
    headers: HeaderMap,
}

/// One entry of [`Problem::errors`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// A JSON pointer (RFC 6901) to the offending value, such as `/checkups/0/reports/2/taken_at`.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

impl Problem {
    /// A problem of type [`ABOUT_BLANK`], titled with the status's reason phrase.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            type_uri: ABOUT_BLANK.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status,
            detail: detail.into(),
            instance: None,
            errors: Vec::new(),
            request_id: None,
            headers: HeaderMap::new(),
        }
    }

    /// `404 Not Found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// `405 Method Not Allowed`, with the `Allow` header listing `allowed`.
    pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> Self {
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let problem = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed here; allowed: {allow}"),
        );
        match HeaderValue::from_str(&allow) {
            Ok(value) => problem.with_header(ALLOW, value),
            // Method names are header-safe tokens, so this does not happen.
            Err(_) => problem,
        }
    }

    /// `503 Service Unavailable`, with `Retry-After` in whole seconds (at least one).
    pub fn service_unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs().max(1);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// `500 Internal Server Error` with a fixed detail: internals are logged, never shown.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not complete the request; quote the request id when reporting it",
        )
    }

    /// Replaces the `type` URI and `title` (for problem types of our own).
    pub fn with_type(mut self, type_uri: impl Into<String>, title: impl Into<String>) -> Self {
        self.type_uri = type_uri.into();
        self.title = title.into();
        self
    }

    /// Sets `instance`.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Sets `request_id`.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Appends an entry to `errors`.
    pub fn with_error(mut self, pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
        self
    }

    /// Adds a response header (not part of the JSON body).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The extra response headers set with [`Problem::with_header`] and the constructors.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `application/problem+json` response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            // Serializing strings and numbers cannot fail; keep a valid body regardless.
            Err(_) => {
                br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#.to_vec()
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        response
    }
}

impl From<Problem> for Response<Full<Bytes>> {
    fn from(problem: Problem) -> Self {
        problem.into_response()
    }
}

fn serialize_status<S: Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;

    async fn body_json(response: Response<Full<Bytes>>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_validation_problem_serializes_every_member() {
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "2 fields are invalid")
            .with_type(
                "https://myhealth.example/problems/validation",
                "Invalid upload",
            )
            .with_instance("/v1/uploads")
            .with_error("#/reports/0/taken_at", "must be in the past")
            .with_error("#/device_id", "unknown device")
            .with_request_id("req-1");
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(
            body_json(response).await,
            json!({
                "type": "https://myhealth.example/problems/validation",
                "title": "Invalid upload",
                "status": 422,
                "detail": "2 fields are invalid",
                "instance": "/v1/uploads",
                "errors": [
                    {"pointer": "#/reports/0/taken_at", "detail": "must be in the past"},
                    {"pointer": "#/device_id", "detail": "unknown device"},
                ],
                "request_id": "req-1",
            })
        );
    }

    #[tokio::test]
    async fn not_found_omits_unknown_optional_members() {
        let response = Problem::not_found("no route for /nope").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(response).await,
            json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no route for /nope",
                "errors": [],
            })
        );
    }

    #[test]
    fn method_not_allowed_lists_allowed_methods_in_the_allow_header() {
        let response = Problem::method_not_allowed(&Method::DELETE, &[Method::GET, Method::POST])
            .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, POST");
    }

    #[test]
    fn service_unavailable_sets_retry_after_in_whole_seconds() {
        let response =
            Problem::service_unavailable("not ready", Duration::from_millis(200)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn internal_error_shows_a_fixed_detail() {
        let body = body_json(Problem::internal().into_response()).await;
        assert_eq!(body["status"], 500);
        assert_eq!(body["title"], "Internal Server Error");
        assert!(body["detail"].as_str().unwrap().contains("request id"));
    }
}
