//! The endpoints: `GET /v1/me/reports`, `GET /v1/me/reports/{id}`, `GET /v1/me/summary`,
//! `GET /v1/me/trends`, and the patient web app's files under `/app/` (see [`crate::app`]).
//!
//! Each request: authenticate (the patient is the token's `sub`), parse the parameters into
//! types, wait for `min_lsn` if asked, run one query scoped to that patient, answer with an
//! `ETag` (`304` when `If-None-Match` matches) and the `X-Data-LSN` it was served at (not on a
//! `401`). Every answer carries `Cache-Control: no-store`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use mongodb::Database;
use prometheus::HistogramVec;
use serde_json::{Value, json};
use service_plumbing::http::{HttpResponse, RequestContext, RouteError, Router};
use service_plumbing::problem::{FieldError, Problem};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::Verifier;
use crate::freshness::Watch;
use crate::params::{self, Cursor};
use crate::{app, store, views};

/// The header carrying the store position an answer reflects.
pub const DATA_LSN_HEADER: &str = "x-data-lsn";
/// How long a client should wait before retrying when the store is behind or down.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the handlers share.
pub struct State {
    /// The read store.
    pub database: Database,
    /// Token verification.
    pub verifier: Verifier,
    /// The daemon's checkpoint, kept fresh in the background.
    pub watch: Watch,
    /// Store query latency by query.
    pub query_seconds: HistogramVec,
}

/// The routes of the service.
pub fn router(state: Arc<State>) -> Result<Router, RouteError> {
    let mut router = Router::new();
    let shared = state.clone();
    router.route(
        Method::GET,
        "/v1/me/reports",
        move |request: Request<Incoming>, context: RequestContext| {
            let state = shared.clone();
            async move { answer(&state, &request, &context, list(&state, &request)).await }
        },
    )?;
    let shared = state.clone();
    router.route(
        Method::GET,
        "/v1/me/reports/{id}",
        move |request: Request<Incoming>, context: RequestContext| {
            let state = shared.clone();
            async move {
                let id = context.param("id").unwrap_or_default().to_string();
                answer(&state, &request, &context, report(&state, &request, id)).await
            }
        },
    )?;
    let shared = state.clone();
    router.route(
        Method::GET,
        "/v1/me/summary",
        move |request: Request<Incoming>, context: RequestContext| {
            let state = shared.clone();
            async move { answer(&state, &request, &context, summary(&state, &request)).await }
        },
    )?;
    router.route(
        Method::GET,
        "/v1/me/trends",
        move |request: Request<Incoming>, context: RequestContext| {
            let state = state.clone();
            async move { answer(&state, &request, &context, trend(&state, &request)).await }
        },
    )?;
    app::routes(&mut router)?;
    Ok(router)
}

/// Runs `body` and turns its outcome into the response: JSON with `ETag` and `X-Data-LSN`, a
/// `304`, or a problem.
async fn answer(
    state: &State,
    request: &Request<Incoming>,
    context: &RequestContext,
    body: impl Future<Output = Result<Value, Problem>>,
) -> HttpResponse {
    // The position is read before the query: the answer reflects at least this much.
    let served_at = state.watch.lsn();
    let mut response = match body.await {
        Ok(value) => json_with_etag(&value, request.headers()),
        Err(problem) => problem
            .with_request_id(context.request_id())
            .into_response(),
    };
    // Patient data, and answers about it: never kept by browsers or shared caches.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A caller that is not authenticated learns nothing of the store, not even its position.
    if response.status() != StatusCode::UNAUTHORIZED
        && let Ok(lsn) = HeaderValue::from_str(&read_model::lsn::format(served_at))
    {
        response.headers_mut().insert(DATA_LSN_HEADER, lsn);
    }
    response
}

async fn list(state: &State, request: &Request<Incoming>) -> Result<Value, Problem> {
    let patient = state
        .verifier
        .verify(authorization(request))
        .map_err(|error| error.to_problem())?;
    let query = params::parse_list_query(request.uri().query()).map_err(bad_request)?;
    wait_for(state, query.freshness.min_lsn, query.freshness.wait_ms).await?;
    let started = Instant::now();
    let (page, more) = store::list(&state.database, patient, &query)
        .await
        .map_err(store_unavailable)?;
    observe(state, "list", started);
    Ok(json!({
        "items": page.iter().map(views::list_item).collect::<Vec<_>>(),
        "next_cursor": next_cursor(&page, more),
    }))
}

async fn trend(state: &State, request: &Request<Incoming>) -> Result<Value, Problem> {
    let patient = state
        .verifier
        .verify(authorization(request))
        .map_err(|error| error.to_problem())?;
    let query = params::parse_trend_query(request.uri().query()).map_err(bad_request)?;
    wait_for(state, query.freshness.min_lsn, query.freshness.wait_ms).await?;
    let started = Instant::now();
    let (newest_first, more) = store::trend(&state.database, patient, &query)
        .await
        .map_err(store_unavailable)?;
    observe(state, "trend", started);
    Ok(views::trend(
        query.code,
        &newest_first,
        next_cursor(&newest_first, more),
    ))
}

/// The cursor continuing after the last document of a page, if more follow.
fn next_cursor(page: &[mongodb::bson::Document], more: bool) -> Option<String> {
    let last = page.last().filter(|_| more)?;
    Some(
        Cursor {
            taken_at_millis: last
                .get_datetime("taken_at")
                .map(|t| t.timestamp_millis())
                .unwrap_or(0),
            report_id: last.get_str("_id").unwrap_or_default().to_string(),
        }
        .encode(),
    )
}

async fn report(state: &State, request: &Request<Incoming>, id: String) -> Result<Value, Problem> {
    let patient = state
        .verifier
        .verify(authorization(request))
        .map_err(|error| error.to_problem())?;
    let freshness = params::parse_freshness(request.uri().query()).map_err(bad_request)?;
    wait_for(state, freshness.min_lsn, freshness.wait_ms).await?;
    // An id that is not a uuid names no report: the same 404 as another patient's report.
    let not_found = || Problem::not_found("no such report");
    let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    let started = Instant::now();
    let found = store::get(&state.database, patient, id)
        .await
        .map_err(store_unavailable)?;
    observe(state, "get", started);
    found
        .map(|report| views::full_report(&report))
        .ok_or_else(not_found)
}

async fn summary(state: &State, request: &Request<Incoming>) -> Result<Value, Problem> {
    let patient = state
        .verifier
        .verify(authorization(request))
        .map_err(|error| error.to_problem())?;
    let freshness = params::parse_freshness(request.uri().query()).map_err(bad_request)?;
    wait_for(state, freshness.min_lsn, freshness.wait_ms).await?;
    let started = Instant::now();
    let found = store::summary(&state.database, patient)
        .await
        .map_err(store_unavailable)?;
    observe(state, "summary", started);
    found
        .map(|patient| views::summary(&patient))
        .ok_or_else(|| Problem::not_found("no reports for this patient yet"))
}

fn authorization(request: &Request<Incoming>) -> Option<&str> {
    request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
}

/// Read-your-upload: waits up to `wait_ms` for the store to reach `min_lsn`.
async fn wait_for(state: &State, min_lsn: Option<u64>, wait_ms: u64) -> Result<(), Problem> {
    let Some(min_lsn) = min_lsn else {
        return Ok(());
    };
    if state
        .watch
        .reached(min_lsn, Duration::from_millis(wait_ms))
        .await
    {
        return Ok(());
    }
    Err(Problem::service_unavailable(
        format!(
            "the store has not reached {} yet (it is at {}); retry shortly",
            read_model::lsn::format(min_lsn),
            read_model::lsn::format(state.watch.lsn())
        ),
        RETRY_AFTER,
    ))
}

fn bad_request(problems: Vec<FieldError>) -> Problem {
    let mut problem = Problem::new(
        StatusCode::BAD_REQUEST,
        format!("{} invalid query parameter(s); see errors", problems.len()),
    );
    problem.errors = problems;
    problem
}

fn store_unavailable(error: mongodb::error::Error) -> Problem {
    tracing::warn!(%error, "store query failed");
    Problem::service_unavailable(
        "the report store is unavailable; retry shortly",
        RETRY_AFTER,
    )
}

fn observe(state: &State, query: &str, started: Instant) {
    state
        .query_seconds
        .with_label_values(&[query])
        .observe(started.elapsed().as_secs_f64());
}

/// A JSON `200` with a strong `ETag` of its body, or `304` if the client has that version.
fn json_with_etag(value: &Value, headers: &HeaderMap) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&body);
    let etag: String = digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let etag = format!("\"{etag}\"");
    let matches = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if matches {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}
