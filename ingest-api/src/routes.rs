//! The HTTP endpoints: `POST /v1/uploads`, `GET /v1/uploads/{id}`, `PATCH /v1/reports/{id}`,
//! `DELETE /v1/reports/{id}`. Each reads and checks its input, calls [`crate::store`] once,
//! and maps the outcome to a status; every error is problem+json with the request id.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use http::header::{HeaderValue, LOCATION};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use service_plumbing::http::{HttpResponse, RequestContext, RouteError, Router, json_response};
use service_plumbing::problem::Problem;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::auth::{AuthError, DeviceCache, authenticate, shaped_token, unauthorized};
use crate::body::read_json;
use crate::metrics::IngestMetrics;
use crate::store::StoreError;
use crate::store::devices::Device;
use crate::store::reports::{self, ReportChange};
use crate::store::uploads::{self, UploadOutcome};
use crate::validation::{self, Limits, Rejection};

/// How long a client should wait before retrying when the service sheds load or the database
/// is down.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// The largest amendment body: 4,000 characters of notes and 20 measurements fit many times
/// over, and every concurrent request may hold one.
pub const MAX_AMENDMENT_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct State {
    /// The PostgreSQL pool.
    pub pool: Pool,
    /// Devices authenticated recently.
    pub devices: DeviceCache,
    /// Largest upload body, after decompression.
    pub max_body_bytes: usize,
    /// Validation limits.
    pub limits: Limits,
    /// The CDC daemon's replication slot, for `replicated` in `GET /v1/uploads/{id}`.
    pub slot: String,
    /// Uploads being processed at once; beyond it, requests are shed with 503.
    pub upload_permits: Arc<Semaphore>,
    /// Upload metrics.
    pub metrics: IngestMetrics,
}

/// The routes of the service.
pub fn router(state: Arc<State>) -> Result<Router, RouteError> {
    let mut router = Router::new();
    let shared = state.clone();
    router.route(Method::POST, "/v1/uploads", move |request, context| {
        let state = shared.clone();
        async move { post_upload(&state, request, context).await }
    })?;
    let shared = state.clone();
    router.route(Method::GET, "/v1/uploads/{id}", move |request, context| {
        let state = shared.clone();
        async move { get_upload(&state, request, context).await }
    })?;
    let shared = state.clone();
    router.route(
        Method::PATCH,
        "/v1/reports/{id}",
        move |request, context| {
            let state = shared.clone();
            async move { patch_report(&state, request, context).await }
        },
    )?;
    router.route(
        Method::DELETE,
        "/v1/reports/{id}",
        move |request, context| {
            let state = state.clone();
            async move { delete_report(&state, request, context).await }
        },
    )?;
    Ok(router)
}

async fn post_upload(
    state: &State,
    request: Request<Incoming>,
    context: RequestContext,
) -> HttpResponse {
    let outcome = upload(state, request, &context).await;
    let (label, response) = match outcome {
        Ok((label, response)) => (label, response),
        Err((label, problem)) => (
            label,
            problem
                .with_request_id(context.request_id())
                .into_response(),
        ),
    };
    state.metrics.upload(label);
    response
}

/// The upload flow; errors carry the metric label of their outcome.
async fn upload(
    state: &State,
    request: Request<Incoming>,
    context: &RequestContext,
) -> Result<(&'static str, HttpResponse), (&'static str, Problem)> {
    // A token that cannot be valid is refused first, so a flood of them takes no permit; then
    // load is shed before reading a body: memory stays bounded by permits × body limit.
    shaped_token(request.headers()).map_err(|error| auth_problem(error, context))?;
    let _permit = state
        .upload_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            let problem = Problem::service_unavailable(
                "too many uploads in progress; retry shortly",
                RETRY_AFTER,
            );
            ("overloaded", problem)
        })?;
    let (parts, body) = request.into_parts();
    let device = authenticate(&state.pool, &state.devices, &parts.headers)
        .await
        .map_err(|error| auth_problem(error, context))?;
    let bytes = read_json(&parts.headers, body, context, state.max_body_bytes)
        .await
        .map_err(|problem| ("malformed", problem))?;
    let upload = validation::parse_upload(&bytes, OffsetDateTime::now_utc(), &state.limits)
        .map_err(rejection_problem)?;
    let body_sha256: [u8; 32] = Sha256::digest(&bytes).into();

    let outcome = uploads::store(&state.pool, device, &upload, body_sha256)
        .await
        .map_err(|error| store_problem(error, context))?;
    match outcome {
        UploadOutcome::Created(result) => {
            state.metrics.rows("checkups", result.checkups);
            state.metrics.rows("reports", result.reports);
            state.metrics.rows("measurements", result.measurements);
            state.metrics.duplicates(result.duplicate_reports);
            let mut response = json_response(StatusCode::CREATED, &result);
            if let Ok(location) =
                HeaderValue::from_str(&format!("/v1/uploads/{}", result.upload_id))
            {
                response.headers_mut().insert(LOCATION, location);
            }
            Ok(("created", response))
        }
        UploadOutcome::Replayed(result) => Ok(("replayed", json_response(StatusCode::OK, &result))),
        UploadOutcome::Conflict { detail, pointer } => {
            let mut problem = Problem::new(StatusCode::CONFLICT, detail.clone());
            if let Some(pointer) = pointer {
                problem = problem.with_error(pointer, detail);
            }
            Err(("conflict", problem))
        }
    }
}

async fn get_upload(
    state: &State,
    request: Request<Incoming>,
    context: RequestContext,
) -> HttpResponse {
    let answer = async {
        let device = authenticate(&state.pool, &state.devices, request.headers())
            .await
            .map_err(|error| auth_problem(error, &context).1)?;
        let id = path_uuid(&context)?;
        let result = uploads::find(&state.pool, id, device.clinic_id)
            .await
            .map_err(|error| store_problem(error, &context).1)?
            .ok_or_else(|| Problem::not_found(format!("no upload {id} from this clinic")))?;
        let replicated = match &result.commit_lsn {
            Some(lsn) => uploads::is_replicated(&state.pool, &state.slot, lsn)
                .await
                .map_err(|error| store_problem(error, &context).1)?,
            None => false,
        };
        let mut body = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
        body["replicated"] = json!(replicated);
        Ok::<_, Problem>(json_response(StatusCode::OK, &body))
    };
    answer.await.unwrap_or_else(|problem| {
        problem
            .with_request_id(context.request_id())
            .into_response()
    })
}

async fn patch_report(
    state: &State,
    request: Request<Incoming>,
    context: RequestContext,
) -> HttpResponse {
    let answer = async {
        let (parts, body) = request.into_parts();
        let device = authenticate(&state.pool, &state.devices, &parts.headers)
            .await
            .map_err(|error| auth_problem(error, &context).1)?;
        let id = path_uuid(&context)?;
        let bytes = read_json(&parts.headers, body, &context, MAX_AMENDMENT_BYTES).await?;
        let amendment =
            validation::parse_amendment(&bytes, OffsetDateTime::now_utc(), &state.limits)
                .map_err(|rejection| rejection_problem(rejection).1)?;
        let change = reports::amend(&state.pool, device, id, &amendment, |stored| {
            amendment
                .measurements
                .as_deref()
                .map(|set| {
                    validation::check_instrument_fit(stored.instrument, set, "/measurements")
                })
                .unwrap_or_default()
        })
        .await
        .map_err(|error| store_problem(error, &context).1)?;
        change_response(
            change,
            device,
            id,
            json!({"status": amendment.status.as_str()}),
        )
    };
    answer.await.unwrap_or_else(|problem| {
        problem
            .with_request_id(context.request_id())
            .into_response()
    })
}

async fn delete_report(
    state: &State,
    request: Request<Incoming>,
    context: RequestContext,
) -> HttpResponse {
    let answer = async {
        let device = authenticate(&state.pool, &state.devices, request.headers())
            .await
            .map_err(|error| auth_problem(error, &context).1)?;
        let id = path_uuid(&context)?;
        let change = reports::delete(&state.pool, device, id)
            .await
            .map_err(|error| store_problem(error, &context).1)?;
        change_response(change, device, id, json!({"deleted": true}))
    };
    answer.await.unwrap_or_else(|problem| {
        problem
            .with_request_id(context.request_id())
            .into_response()
    })
}

/// The response to a report change: `{"report_id", "commit_lsn", ...extra}` or the refusal.
fn change_response(
    change: ReportChange,
    device: Device,
    id: Uuid,
    mut extra: serde_json::Value,
) -> Result<HttpResponse, Problem> {
    match change {
        ReportChange::Done { commit_lsn } => {
            extra["report_id"] = json!(id);
            extra["commit_lsn"] = json!(commit_lsn);
            Ok(json_response(StatusCode::OK, &extra))
        }
        ReportChange::NotFound => Err(Problem::not_found(format!("no report {id}"))),
        ReportChange::Forbidden => {
            tracing::warn!(device = %device.id, report = %id, "device tried to change another clinic's report");
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("report {id} belongs to another clinic"),
            ))
        }
        ReportChange::Invalid(problems) => Err(invalid(problems)),
    }
}

fn path_uuid(context: &RequestContext) -> Result<Uuid, Problem> {
    let raw = context.param("id").unwrap_or_default();
    Uuid::try_parse(raw).map_err(|_| Problem::not_found(format!("{raw:?} is not a valid id")))
}

fn invalid(problems: Vec<service_plumbing::problem::FieldError>) -> Problem {
    let count = problems.len();
    let mut problem = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("the request has {count} invalid value(s); see errors"),
    );
    problem.errors = problems;
    problem
}

fn rejection_problem(rejection: Rejection) -> (&'static str, Problem) {
    match rejection {
        Rejection::Malformed {
            line,
            column,
            message,
        } => (
            "malformed",
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {message} at line {line}, column {column}"),
            ),
        ),
        Rejection::Invalid(problems) => ("invalid", invalid(problems)),
        Rejection::TooManyValues { max } => (
            "malformed",
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body holds more than {max} JSON values"),
            ),
        ),
    }
}

fn auth_problem(error: AuthError, context: &RequestContext) -> (&'static str, Problem) {
    match error {
        AuthError::Unauthorized(rejection) => ("unauthorized", unauthorized(rejection)),
        AuthError::Store(error) => store_problem(error, context),
    }
}

fn store_problem(error: StoreError, context: &RequestContext) -> (&'static str, Problem) {
    let request_id = context.request_id();
    match error {
        StoreError::Unavailable(source) => {
            tracing::warn!(%request_id, error = %source, "database unavailable");
            (
                "unavailable",
                Problem::service_unavailable(
                    "the database is unavailable; retry shortly",
                    RETRY_AFTER,
                ),
            )
        }
        StoreError::Contended(what) => {
            tracing::warn!(%request_id, what, "write contended");
            (
                "unavailable",
                Problem::service_unavailable(
                    "the upload met concurrent changes; retry shortly",
                    RETRY_AFTER,
                ),
            )
        }
        other => {
            tracing::error!(%request_id, error = ?other, "request failed");
            ("failed", Problem::internal())
        }
    }
}
