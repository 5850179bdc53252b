//! A small HTTP/1.1 server on hyper: routing, request ids, panics as 500s, request metrics, the
//! built-in `/healthz`, `/readyz` and `/metrics`, and graceful shutdown with a deadline.
//!
//! A service builds a [`Router`] of its own routes and a [`Readiness`] of its dependency checks,
//! passes both to [`HttpServer::new`], and runs [`HttpServer::serve`] on a bound listener until
//! its [`Shutdown`] is triggered. On shutdown the server stops accepting, lets open requests
//! finish, and drops the connections still open when `shutdown_deadline_ms` has passed.
//!
//! Load is shed before any work: a service's own routes run at most `max_concurrent_requests`
//! at once, counted before the handler (and so before authentication) runs; beyond it they are
//! answered `503` with `Retry-After` at once. The built-in routes are exempt because they are
//! cheap by construction (`/readyz` answers from a cache, [`Readiness::cached`]), so probes keep
//! answering under a flood.

mod bearer;
mod context;
mod readiness;
mod request_id;
mod response;
mod router;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use self::bearer::{BearerError, bearer_token, parse_bearer};
pub use self::context::{BodyError, PathParams, RequestContext};
pub use self::readiness::{FailedCheck, Readiness};
pub use self::request_id::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, request_id};
pub use self::response::{BoxFuture, HttpResponse, json_response};
use self::router::RouteMatch;
pub use self::router::{Handler, RouteError, Router};
use crate::metrics::{Metrics, MetricsError, TEXT_CONTENT_TYPE};
use crate::problem::Problem;
use crate::shutdown::Shutdown;

/// Counter of answered requests, labelled `method`, `route` (the pattern) and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";

/// Histogram of request durations in seconds, labelled `method` and `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";

/// The `route` label of requests that matched no route (keeps label values bounded).
const UNMATCHED_ROUTE: &str = "unmatched";

/// How long a client is asked to wait before probing `/readyz` again.
const READY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a client is asked to wait when every request slot is taken.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The built-in routes, which are not counted against `max_concurrent_requests`.
const BUILT_IN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The `http` section of every service's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Address to listen on; `None` means the service's own default
    /// (see [`HttpSettings::listen_or`]).
    pub listen: Option<SocketAddr>,
    /// Time allowed for a client to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// Time allowed for a client to send a whole request body ([`RequestContext::read_body`]).
    pub body_read_timeout_ms: u64,
    /// Time open requests get to finish after shutdown starts; then connections are dropped.
    pub shutdown_deadline_ms: u64,
    /// Time all readiness checks together get before `/readyz` reports them as timed out.
    pub readiness_timeout_ms: u64,
    /// Age below which `/readyz` answers from the last checks' result instead of checking
    /// again: the dependencies are checked at most once per this interval.
    pub readiness_interval_ms: u64,
    /// Requests to the service's own routes handled at once; beyond it they are answered 503
    /// with `Retry-After` before any work (the built-in routes are not counted).
    pub max_concurrent_requests: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: None,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 30_000,
            shutdown_deadline_ms: 10_000,
            readiness_timeout_ms: 2_000,
            readiness_interval_ms: 1_000,
            max_concurrent_requests: 64,
        }
    }
}

impl HttpSettings {
    /// The configured listen address, or `default` when none is configured.
    pub fn listen_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or(default)
    }
}

/// Why a service could not listen on its address.
#[derive(Debug, thiserror::Error)]
#[error("failed to listen on {address}")]
pub struct BindError {
    address: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds `address`; returns the listener and the address it got (with the real port when the
/// configured port is 0, as tests configure it).
pub async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let error = |source| BindError { address, source };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let local_addr = listener.local_addr().map_err(error)?;
    Ok((listener, local_addr))
}

/// Why the server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A built-in route clashes with a service route.
    #[error("failed to add built-in route")]
    Route(#[from] RouteError),
    /// The request metrics could not be registered.
    #[error("failed to register http metrics")]
    Metrics(#[from] MetricsError),
}

/// The HTTP server of a service. Cloning is cheap (the state is shared).
#[derive(Clone, Debug)]
pub struct HttpServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    router: Router,
    settings: HttpSettings,
    /// One permit per request to a service route in progress.
    permits: Arc<Semaphore>,
    requests: IntCounterVec,
    durations: HistogramVec,
}

impl HttpServer {
    /// A server for `router` plus the built-in routes:
    ///
    /// - `GET /healthz`: `200 {"status":"ok"}` while the process is alive;
    /// - `GET /readyz`: `readiness`' result, at most `readiness_interval_ms` old;
    ///   `200 {"status":"ready"}`, or `503` problem+json with one `errors` entry per failed
    ///   dependency (`pointer` `#/dependencies/<name>`, detail "unavailable" or "no answer in
    ///   time"; the driver's error, which may name hosts and users, is only logged);
    /// - `GET /metrics`: `metrics` in the Prometheus text format.
    ///
    /// Registers the request metrics ([`HTTP_REQUESTS_TOTAL`],
    /// [`HTTP_REQUEST_DURATION_SECONDS`]) in `metrics`.
    pub fn new(
        settings: HttpSettings,
        mut router: Router,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Result<Self, ServerError> {
        router.route(
            Method::GET,
            "/healthz",
            |_: Request<Incoming>, _: RequestContext| async {
                json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            },
        )?;
        let timeout = Duration::from_millis(settings.readiness_timeout_ms);
        let interval = Duration::from_millis(settings.readiness_interval_ms);
        router.route(
            Method::GET,
            "/readyz",
            move |_: Request<Incoming>, context: RequestContext| {
                let readiness = readiness.clone();
                async move { ready(&readiness, interval, timeout, &context).await }
            },
        )?;
        let registry = metrics.clone();
        router.route(
            Method::GET,
            "/metrics",
            move |_: Request<Incoming>, _: RequestContext| {
                let metrics = registry.clone();
                async move { metrics_text(&metrics) }
            },
        )?;

        let requests = IntCounterVec::new(
            Opts::new(HTTP_REQUESTS_TOTAL, "HTTP requests answered."),
            &["method", "route", "status"],
        )
        .map_err(MetricsError::Register)?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                HTTP_REQUEST_DURATION_SECONDS,
                "Time from receiving a request's headers to producing its response.",
            ),
            &["method", "route"],
        )
        .map_err(MetricsError::Register)?;
        metrics.register(Box::new(requests.clone()))?;
        metrics.register(Box::new(durations.clone()))?;

        Ok(Self {
            inner: Arc::new(Inner {
                router,
                permits: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
                settings,
                requests,
                durations,
            }),
        })
    }

    /// Serves connections from `listener` until `shutdown` is triggered, then shuts down
    /// gracefully: stops accepting, waits for open connections to finish their requests for up
    /// to `shutdown_deadline_ms`, and drops the connections still open after that.
    ///
    /// Handlers run on tasks of their own and are not aborted with their connection; any still
    /// running when this returns end with the runtime.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) {
        let settings = &self.inner.settings;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms));
        let graceful = GracefulShutdown::new();
        // Connection tasks live in a JoinSet so that the ones outliving the deadline can be
        // aborted.
        let mut connections = JoinSet::new();

        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "failed to accept connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => break,
            };
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}

            let server = self.clone();
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(request).await) }
            });
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            connections.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
            });
        }

        drop(listener);
        let deadline = Duration::from_millis(settings.shutdown_deadline_ms);
        tracing::info!(
            open_connections = graceful.count(),
            deadline_ms = settings.shutdown_deadline_ms,
            "http server shutting down"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(deadline) => {
                while connections.try_join_next().is_some() {}
                tracing::warn!(
                    dropped_connections = connections.len(),
                    "shutdown deadline passed, dropping open connections"
                );
            }
        }
        connections.shutdown().await;
    }

    /// Answers one request: routes it, runs the handler on its own task, and adds the request
    /// id, a log line and metrics.
    async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let request_id = request_id(request.headers());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let found = self.inner.router.find(&method, &path);
        let route = match &found {
            RouteMatch::Found { pattern, .. } | RouteMatch::MethodNotAllowed { pattern, .. } => {
                (*pattern).to_owned()
            }
            RouteMatch::NotFound => UNMATCHED_ROUTE.to_owned(),
        };
        let span = tracing::info_span!("request", %request_id, %method, %route);

        let mut response = match found {
            RouteMatch::Found {
                handler,
                pattern,
                params,
            } => 'found: {
                // Held by the handler's task, so a client that goes away frees it only when
                // the work it started is done.
                let permit = if BUILT_IN_ROUTES.contains(&pattern) {
                    None
                } else {
                    match self.inner.permits.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            break 'found Problem::service_unavailable(
                                "too many requests in progress; retry shortly",
                                BUSY_RETRY_AFTER,
                            )
                            .with_request_id(&request_id)
                            .into_response();
                        }
                    }
                };
                let context = RequestContext {
                    request_id: request_id.clone(),
                    params,
                    body_read_timeout: Duration::from_millis(
                        self.inner.settings.body_read_timeout_ms,
                    ),
                };
                let task = tokio::spawn(
                    async move {
                        let response = handler.call(request, context).await;
                        drop(permit);
                        response
                    }
                    .instrument(span.clone()),
                );
                match task.await {
                    Ok(response) => response,
                    Err(error) => {
                        span.in_scope(|| tracing::error!(%error, "handler failed"));
                        Problem::internal()
                            .with_request_id(&request_id)
                            .into_response()
                    }
                }
            }
            RouteMatch::MethodNotAllowed { allowed, .. } => {
                Problem::method_not_allowed(&method, &allowed)
                    .with_request_id(&request_id)
                    .into_response()
            }
            RouteMatch::NotFound => Problem::not_found(format!("no route matches {path}"))
                .with_instance(path)
                .with_request_id(&request_id)
                .into_response(),
        };

        // The id was generated or checked to be [A-Za-z0-9-], so it is a valid header value.
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let elapsed = started.elapsed();
        let status = response.status();
        let method_label = method_label(&method);
        self.inner
            .requests
            .with_label_values(&[method_label, &route, status.as_str()])
            .inc();
        self.inner
            .durations
            .with_label_values(&[method_label, &route])
            .observe(elapsed.as_secs_f64());
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1e3,
                "request completed"
            );
        });
        response
    }
}

/// `GET /readyz`.
async fn ready(
    readiness: &Readiness,
    interval: Duration,
    timeout: Duration,
    context: &RequestContext,
) -> HttpResponse {
    let failed = readiness.cached(interval, timeout).await;
    if failed.is_empty() {
        return json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}));
    }
    let names = failed
        .iter()
        .map(|check| check.name)
        .collect::<Vec<_>>()
        .join(", ");
    let mut problem =
        Problem::service_unavailable(format!("not ready: {names} unavailable"), READY_RETRY_AFTER)
            .with_request_id(context.request_id());
    for check in failed {
        // The reason may name hosts, users or databases: for the log only.
        tracing::warn!(dependency = check.name, reason = %check.reason, "not ready");
        let detail = if check.timed_out {
            "no answer in time"
        } else {
            "unavailable"
        };
        problem = problem.with_error(format!("#/dependencies/{}", check.name), detail);
    }
    problem.into_response()
}

/// `GET /metrics`.
fn metrics_text(metrics: &Metrics) -> HttpResponse {
    match metrics.encode() {
        Ok(text) => {
            let mut response = HttpResponse::new(text.into());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
            response
        }
        Err(error) => {
            tracing::error!(error = %error, "failed to encode metrics");
            Problem::internal().into_response()
        }
    }
}

/// The `method` label: standard methods by name, anything else as `other`, so clients cannot
/// create unbounded label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
