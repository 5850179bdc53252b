//! The HTTP server started in-process on 127.0.0.1:0 and called over real HTTP.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use service_plumbing::http::{
    HttpServer, HttpSettings, Readiness, RequestContext, Router, json_response,
};
use service_plumbing::metrics::Metrics;
use service_plumbing::problem::PROBLEM_CONTENT_TYPE;
use service_plumbing::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A server running on its own task.
struct TestServer {
    base: String,
    addr: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(router: Router, readiness: Readiness, settings: HttpSettings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(settings, router, readiness, Metrics::new().unwrap()).unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.serve(listener, shutdown.clone()));
        Self {
            base: format!("http://{addr}"),
            addr,
            shutdown,
            task,
        }
    }

    async fn with_routes(router: Router) -> Self {
        Self::start(router, Readiness::new(), HttpSettings::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn assert_problem(response: &reqwest::Response, status: StatusCode) {
    assert_eq!(response.status().as_u16(), status.as_u16());
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        PROBLEM_CONTENT_TYPE
    );
}

fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Routes used by several tests: path parameters, body reading, a panic, a slow request.
fn demo_router() -> Router {
    let mut router = Router::new();
    router
        .route(
            Method::POST,
            "/v1/things/{name}",
            |request: Request<Incoming>, context: RequestContext| async move {
                let name = context.param("name").unwrap_or_default().to_owned();
                match context.read_body(request.into_body(), 16).await {
                    Ok(body) => json_response(
                        StatusCode::CREATED,
                        &json!({"name": name, "bytes": body.len()}),
                    ),
                    Err(error) => error
                        .to_problem()
                        .with_request_id(context.request_id())
                        .into_response(),
                }
            },
        )
        .unwrap();
    router
        .route(
            Method::GET,
            "/panic",
            |_: Request<Incoming>, _: RequestContext| async {
                if true {
                    panic!("handler bug");
                }
                json_response(StatusCode::OK, &json!({}))
            },
        )
        .unwrap();
    router
        .route(
            Method::GET,
            "/slow/{ms}",
            |_: Request<Incoming>, context: RequestContext| async move {
                let ms = context.param("ms").unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json_response(StatusCode::OK, &json!({"slept_ms": ms}))
            },
        )
        .unwrap();
    router
}

#[tokio::test]
async fn healthz_answers_ok_with_a_generated_request_id() {
    let server = TestServer::with_routes(Router::new()).await;
    let response = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id_of(&response);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_echoed_and_a_bad_one_replaced() {
    let server = TestServer::with_routes(Router::new()).await;
    let echoed = client()
        .get(server.url("/healthz"))
        .header("x-request-id", "tablet-7-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id_of(&echoed), "tablet-7-0001");
    let replaced = client()
        .get(server.url("/healthz"))
        .header("x-request-id", "not/ok")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id_of(&replaced), "not/ok");
}

#[tokio::test]
async fn readyz_is_ok_when_every_check_passes() {
    let readiness = Readiness::new().with_check("postgres", || async { Ok(()) });
    let server = TestServer::start(Router::new(), readiness, HttpSettings::default()).await;
    let response = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_is_a_503_problem_naming_the_failing_dependency() {
    let readiness = Readiness::new()
        .with_check("postgres", || async { Ok(()) })
        .with_check("mongodb", || async {
            Err("connection to db.internal:27017 as user reports_api refused".to_owned())
        });
    let server = TestServer::start(Router::new(), readiness, HttpSettings::default()).await;
    let response = client().get(server.url("/readyz")).send().await.unwrap();
    assert_problem(&response, StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let id = request_id_of(&response);
    let text = response.text().await.unwrap();
    // The driver's error names hosts and users: logged, never shown to an unauthenticated caller.
    for leak in ["db.internal", "reports_api", "refused"] {
        assert!(!text.contains(leak), "{text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(
        body["errors"],
        json!([{"pointer": "#/dependencies/mongodb", "detail": "unavailable"}])
    );
    assert!(body["detail"].as_str().unwrap().contains("mongodb"));
    assert!(!body["detail"].as_str().unwrap().contains("postgres"));
}

#[tokio::test]
async fn metrics_exposes_process_and_request_metrics_in_text_format() {
    let server = TestServer::with_routes(Router::new()).await;
    client().get(server.url("/healthz")).send().await.unwrap();
    let response = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let server = TestServer::with_routes(Router::new()).await;
    let response = client().get(server.url("/nope")).send().await.unwrap();
    assert_problem(&response, StatusCode::NOT_FOUND);
    let id = request_id_of(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["instance"], "/nope");
    assert_eq!(body["request_id"], id.as_str());
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let server = TestServer::with_routes(Router::new()).await;
    let response = client()
        .delete(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_problem(&response, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
}

#[tokio::test]
async fn handlers_get_path_parameters_and_the_body() {
    let server = TestServer::with_routes(demo_router()).await;
    let response = client()
        .post(server.url("/v1/things/scale"))
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"name": "scale", "bytes": 5}));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let server = TestServer::with_routes(demo_router()).await;
    let response = client()
        .post(server.url("/v1/things/scale"))
        .body("x".repeat(17))
        .send()
        .await
        .unwrap();
    assert_problem(&response, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_a_408_problem() {
    let settings = HttpSettings {
        body_read_timeout_ms: 200,
        ..HttpSettings::default()
    };
    let server = TestServer::start(demo_router(), Readiness::new(), settings).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/things/scale HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\n12")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_client_slow_to_send_headers_is_disconnected() {
    let settings = HttpSettings {
        header_read_timeout_ms: 200,
        ..HttpSettings::default()
    };
    let server = TestServer::start(Router::new(), Readiness::new(), settings).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(result.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_keeps_serving() {
    let server = TestServer::with_routes(demo_router()).await;
    let response = client().get(server.url("/panic")).send().await.unwrap();
    assert_problem(&response, StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert!(!body["detail"].as_str().unwrap().contains("handler bug"));
    let after = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_an_open_request_finish() {
    let server = TestServer::with_routes(demo_router()).await;
    let request = tokio::spawn(client().get(server.url("/slow/300")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.trigger();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_returns_within_the_deadline_despite_a_stuck_request() {
    let settings = HttpSettings {
        shutdown_deadline_ms: 300,
        ..HttpSettings::default()
    };
    let server = TestServer::start(demo_router(), Readiness::new(), settings).await;
    let stuck = tokio::spawn(client().get(server.url("/slow/60000")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // The dropped connection fails the client's request instead of leaving it hanging.
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .unwrap();
    assert!(outcome.unwrap().is_err());
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_before_the_handler_and_probes_still_answer()
{
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut router = Router::new();
    let (wait, count) = (release.clone(), started.clone());
    router
        .route(
            Method::GET,
            "/slow",
            move |_: Request<Incoming>, _: RequestContext| {
                let (wait, count) = (wait.clone(), count.clone());
                async move {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    wait.notified().await;
                    json_response(StatusCode::OK, &json!({}))
                }
            },
        )
        .unwrap();
    let settings = HttpSettings {
        max_concurrent_requests: 2,
        ..HttpSettings::default()
    };
    let readiness = Readiness::new().with_check("db", || async { Ok(()) });
    let server = TestServer::start(router, readiness, settings).await;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client().get(server.url("/slow")).send()))
        .collect();
    while started.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for _ in 0..20 {
        let response = client().get(server.url("/slow")).send().await.unwrap();
        assert_problem(&response, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a shed request never reaches its handler"
    );
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let response = client().get(server.url(probe)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{probe} while every slot is taken");
    }

    release.notify_waiters();
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    let again = tokio::spawn(client().get(server.url("/slow")).send());
    while started.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.notify_waiters();
    assert_eq!(
        again.await.unwrap().unwrap().status(),
        200,
        "slots are given back"
    );
}
