//! Hostile input against the running reports API: MongoDB operators in every query parameter and
//! in the path, forged tokens (no algorithm, another algorithm, an operator as the subject); and,
//! against the real binary, its logs checked for the signing secret and bearer tokens; and the
//! service full (`http.max_concurrent_requests` requests in progress) shedding the next one.
//!
//! Already covered in `api.rs`: missing, badly signed, expired, not-yet-valid, wrong-issuer and
//! wrong-audience tokens, another patient's report, a few operator-shaped parameters.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use devstack::TestContext;
use devstack::services::{READY_TIMEOUT, ServiceProcess};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mongodb::bson::{DateTime, doc};
use serde_json::{Value, json};
use service_plumbing::shutdown::Shutdown;
use time::OffsetDateTime;
use uuid::Uuid;

const SECRET: &str = "abuse-test-secret-of-the-reports-api-0123456789";
const ISSUER: &str = "myhealth-local";
const AUDIENCE: &str = "myhealth-reports-api";

/// The query parameters the API knows.
const PARAMETERS: &[&str] = &[
    "limit",
    "cursor",
    "instrument",
    "from",
    "to",
    "min_lsn",
    "wait_ms",
];

/// Operator-shaped values, URL-encoded.
/// The parameters of `GET /v1/me/trends`.
const TREND_PARAMETERS: &[&str] = &[
    "code", "since", "until", "limit", "cursor", "min_lsn", "wait_ms",
];

const OPERATORS: &[&str] = &[
    "%7B%22%24gt%22%3A%22%22%7D",          // {"$gt":""}
    "%7B%22%24ne%22%3Anull%7D",            // {"$ne":null}
    "%24where",                            // $where
    "%24regex%3A.*",                       // $regex:.*
    "this.patient_id%20!%3D%20null",       // a $where body
    "%7B%22%24expr%22%3A%7B%7D%7D",        // {"$expr":{}}
    "%5B%7B%22%24match%22%3A%7B%7D%7D%5D", // [{"$match":{}}]
];

fn claims(subject: Value) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({ "sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600 })
}

fn token(subject: Value, algorithm: Algorithm) -> String {
    encode(
        &Header::new(algorithm),
        &claims(subject),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token with `"alg": "none"` and no signature.
fn unsigned(subject: Value) -> String {
    use base64::Engine;
    let encode = |value: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        encode(json!({ "alg": "none", "typ": "JWT" })),
        encode(claims(subject))
    )
}

fn settings(ctx: &TestContext) -> HashMap<String, String> {
    [
        ("MYHEALTH_MONGODB_URI", ctx.mongodb_uri.as_str()),
        ("MYHEALTH_MONGODB_DATABASE", ctx.database.as_str()),
        ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
        ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

/// The API in this process on the test's store, which holds one report of another patient.
async fn start() -> (TestContext, String, Uuid, Shutdown) {
    let ctx = TestContext::new().await.unwrap();
    let other_report = Uuid::new_v4();
    ctx.store()
        .collection("reports")
        .insert_one(doc! {
            "_id": other_report.to_string(),
            "patient_id": Uuid::new_v4().to_string(),
            "taken_at": DateTime::now(),
            "instrument": { "type": "scale", "serial": "S-1" },
            "status": "final",
        })
        .await
        .unwrap();
    let mut vars = settings(&ctx);
    vars.insert(
        "MYHEALTH_HTTP__LISTEN".to_string(),
        "127.0.0.1:0".to_string(),
    );
    let config: reports_api::Config = service_plumbing::config::load_from_vars(None, vars).unwrap();
    let app = reports_api::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    (ctx, base, other_report, shutdown)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_concurrency_limit_are_shed_while_probes_still_answer() {
    let (ctx, base, _, shutdown) = start().await;
    let config: reports_api::Config =
        service_plumbing::config::load_from_vars(None, settings(&ctx)).unwrap();
    let limit = config.http.max_concurrent_requests;
    let http = reqwest::Client::new();
    let bearer = token(json!(Uuid::new_v4()), Algorithm::HS256);
    // A request that holds its slot for the longest wait without touching the store: the
    // read model never reaches this position.
    let waiting = format!(
        "{base}/v1/me/summary?min_lsn=FFFFFFFF/0&wait_ms={}",
        reports_api::params::MAX_WAIT_MS
    );
    let hold = |count: usize| {
        (0..count)
            .map(|_| {
                let request = http.get(&waiting).bearer_auth(&bearer);
                tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
            })
            .collect::<Vec<_>>()
    };
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}")).bearer_auth(&bearer);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_string());
            (status, retry_after, response.text().await.unwrap())
        }
    };

    // One slot short of the limit: a request is still served.
    let mut held = hold(limit - 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, body) = get("/v1/me/reports").await;
    assert_eq!(status, 200, "{body}");

    // Every slot taken: the next request is shed at once, before its token is even looked at,
    // and the probes, which take no slot, still answer.
    held.extend(hold(1));
    let started = std::time::Instant::now();
    let shed = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A held request that arrived after a probe had taken the last slot was shed itself:
        // send it again, so that `limit` requests are in progress.
        let (lost, kept): (Vec<_>, Vec<_>) =
            held.into_iter().partition(|request| request.is_finished());
        held = kept;
        held.extend(hold(lost.len()));
        let answer = get("/v1/me/reports").await;
        if answer.0 == 503 || started.elapsed() > Duration::from_secs(3) {
            break answer;
        }
    };
    assert_eq!(
        shed.0, 503,
        "not shed with {limit} requests in progress: {}",
        shed.2
    );
    assert_eq!(shed.1.as_deref(), Some("1"));
    assert!(
        shed.2.contains("too many requests in progress"),
        "{}",
        shed.2
    );
    let forged = http
        .get(format!("{base}/v1/me/reports"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        503,
        "a forged token was looked at before the request was shed"
    );
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let status = http
            .get(format!("{base}{probe}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe} under a full service");
    }

    // The held requests end (the store never catches up: 503 from the freshness wait), and
    // the slots are free again.
    for request in held {
        assert_eq!(request.await.unwrap(), 503);
    }
    let (status, _, body) = get("/v1/me/reports").await;
    assert_eq!(status, 200, "{body}");
    shutdown.trigger();
}

#[tokio::test]
async fn mongodb_operators_in_any_parameter_or_the_path_are_refused_before_any_query() {
    let (_ctx, base, other_report, shutdown) = start().await;
    let http = reqwest::Client::new();
    let bearer = token(json!(Uuid::new_v4()), Algorithm::HS256);
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(&bearer);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };

    // The test can fail: a plain request is answered, and shows none of the other patient's.
    let (status, body) = get("/v1/me/reports".to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&other_report.to_string()));

    // A trend query is otherwise valid: only the operator makes it a 400.
    for (endpoint, parameters) in [
        ("/v1/me/reports?", PARAMETERS),
        ("/v1/me/summary?", PARAMETERS),
        ("/v1/me/trends?code=8480-6&", TREND_PARAMETERS),
    ] {
        for parameter in parameters {
            for operator in OPERATORS {
                for query in [
                    format!("{parameter}={operator}"),
                    format!("{parameter}%5B%24ne%5D={operator}"), // parameter[$ne]=
                    format!("{parameter}.%24gt=1"),               // parameter.$gt=
                    format!("{parameter}=1&{parameter}={operator}"),
                ] {
                    let (status, body) = get(format!("{endpoint}{query}")).await;
                    assert_eq!(status, 400, "{endpoint}{query}: {body}");
                    let problem: Value = serde_json::from_str(&body).unwrap();
                    let pointer = problem["errors"][0]["pointer"].as_str().unwrap();
                    assert!(pointer.starts_with("/query/"), "{query}: {problem}");
                    assert!(!body.contains(&other_report.to_string()));
                }
            }
        }
    }
    for operator in OPERATORS {
        let (status, body) = get(format!("/v1/me/reports/{operator}")).await;
        assert!([400, 404].contains(&status), "{operator}: {status} {body}");
        assert!(!body.contains(&other_report.to_string()));
    }
    shutdown.trigger();
}

#[tokio::test]
async fn unsigned_other_algorithm_and_operator_subject_tokens_are_refused() {
    let (_ctx, base, other_report, shutdown) = start().await;
    let http = reqwest::Client::new();
    let patient = json!(Uuid::new_v4());
    for (name, forged) in [
        ("alg none", unsigned(patient.clone())),
        (
            "HS512 instead of HS256",
            token(patient.clone(), Algorithm::HS512),
        ),
        (
            "HS384 instead of HS256",
            token(patient.clone(), Algorithm::HS384),
        ),
        (
            "operator subject",
            token(json!({ "$ne": null }), Algorithm::HS256),
        ),
        (
            "operator text subject",
            token(json!("{\"$ne\":null}"), Algorithm::HS256),
        ),
        (
            "injection subject",
            token(json!("' || '1'=='1"), Algorithm::HS256),
        ),
        ("no subject", token(Value::Null, Algorithm::HS256)),
        ("garbage", "not.a.token".to_string()),
        ("huge", "a".repeat(32 * 1024)),
    ] {
        let response = http
            .get(format!("{base}/v1/me/reports"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            status == 401 || (name == "huge" && status == 431),
            "{name}: {status} {body}"
        );
        assert!(!body.contains(&forged), "{name}: the token is echoed");
        assert!(!body.contains(&other_report.to_string()));
    }
    shutdown.trigger();
}

#[tokio::test]
async fn the_binary_never_logs_the_signing_secret_or_a_bearer_token() {
    let ctx = TestContext::new().await.unwrap();
    let port = devstack::process::free_loopback_port().unwrap();
    let mut env: Vec<(String, String)> = settings(&ctx).into_iter().collect();
    env.push(("RUST_LOG".to_string(), "debug".to_string()));
    let binary = Path::new(env!("CARGO_BIN_EXE_reports-api"));
    let mut service = ServiceProcess::spawn(binary, port, &env, None).unwrap();
    service.wait_ready(READY_TIMEOUT).await.unwrap();
    let base = service.url().to_string();
    let http = reqwest::Client::new();

    let patient = json!(Uuid::new_v4());
    let valid = token(patient.clone(), Algorithm::HS256);
    let forged = token(patient.clone(), Algorithm::HS512);
    let unsigned = unsigned(patient);
    for bearer in [&valid, &forged, &unsigned] {
        for path in ["/v1/me/reports", "/v1/me/summary", "/v1/me/reports?limit=0"] {
            http.get(format!("{base}{path}"))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
        }
    }
    service.stop(Duration::from_secs(20)).await.unwrap();
    let log = std::fs::read_to_string(service.log()).unwrap();
    assert!(log.lines().count() > 9, "debug logs were captured:\n{log}");
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_string();
    for (what, secret) in [
        ("the signing secret", SECRET.to_string()),
        ("a valid token", valid.clone()),
        ("a valid token's signature", signature(&valid)),
        ("a forged token", forged.clone()),
        ("an unsigned token", unsigned.clone()),
    ] {
        assert!(!log.contains(&secret), "{what} appears in the logs");
    }
}
