//! The reports API over real HTTP, reading documents the real daemon produced from uploads
//! posted by a simulated tablet through the real ingest API.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use devstack::TestContext;
use devstack::in_process::{self, InProcessStack};
use devstack::tablet::{Patient, Tablet};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

const SECRET: &str = "test-secret-of-the-reports-api-0123456789";
const ISSUER: &str = "myhealth-local";
const AUDIENCE: &str = "myhealth-reports-api";

/// Ingest API, daemon and reports API on one test's databases, and a tablet.
struct Stack {
    /// Kept alive for the test: dropping it stops the services and drops the databases.
    _services: InProcessStack,
    reports: String,
    ingest: String,
    device_token: String,
    tablet: Tablet,
    http: reqwest::Client,
}

impl Stack {
    async fn start() -> Stack {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = service_plumbing::telemetry::init_tracing("reports-api-test");
        }
        let ctx = TestContext::new().await.unwrap();
        let services = InProcessStack::start(ctx, SECRET, "Reports Clinic")
            .await
            .unwrap();
        Stack {
            reports: services.reports.url.clone(),
            tablet: Tablet::new(&services.ingest.url, &services.device_token, 7),
            ingest: services.ingest.url.clone(),
            device_token: services.device_token.clone(),
            http: reqwest::Client::new(),
            _services: services,
        }
    }

    /// Posts an upload for `patient` at `at`; returns the ingest result.
    async fn upload(&mut self, patient: &Patient, at: OffsetDateTime) -> Value {
        let upload = self.tablet.upload(patient, at);
        self.tablet.post(&upload).await.unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.reports))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

fn token_with(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(patient: Uuid) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    token_with(
        json!({ "sub": patient, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600 }),
        SECRET,
    )
}

async fn json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{body}");
    body
}

fn fresh(result: &Value) -> String {
    format!(
        "min_lsn={}&wait_ms=5000",
        result["commit_lsn"].as_str().unwrap()
    )
}

#[tokio::test]
async fn a_patient_lists_reads_and_summarizes_their_own_reports() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let now = OffsetDateTime::now_utc();
    stack.upload(&ada, now - time::Duration::days(30)).await;
    let last = stack.upload(&ada, now - time::Duration::days(1)).await;
    let token = token(ada.id);

    let response = stack
        .get(&token, &format!("/v1/me/reports?{}", fresh(&last)))
        .await;
    assert!(response.headers().contains_key("x-data-lsn"));
    assert!(response.headers().contains_key("etag"));
    assert_eq!(response.headers()["cache-control"], "no-store");
    let page = json(response, 200).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    let times: Vec<&str> = items
        .iter()
        .map(|item| item["taken_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let blood_pressure = items
        .iter()
        .find(|i| i["instrument"]["type"] == "blood_pressure")
        .unwrap();
    let codes: Vec<&str> = blood_pressure["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["8480-6", "8462-4", "8867-4"], "catalogue order");
    assert_eq!(blood_pressure["clinic"]["name"], "Reports Clinic");
    assert_eq!(
        blood_pressure["measurements"][0]["reference_range"],
        json!({"low": 90.0, "high": 120.0})
    );
    assert!(blood_pressure.get("raw").is_none());

    let id = blood_pressure["id"].as_str().unwrap();
    let report = json(
        stack.get(&token, &format!("/v1/me/reports/{id}")).await,
        200,
    )
    .await;
    assert_eq!(report["raw"]["firmware"], "2.4.1");
    assert_eq!(report["patient"]["full_name"], ada.full_name.as_str());

    let summary = json(stack.get(&token, "/v1/me/summary").await, 200).await;
    assert_eq!(summary["full_name"], ada.full_name.as_str());
    let latest: Vec<&str> = summary["latest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(latest.len(), 10, "{latest:?}");
    assert_eq!(latest[0], "8480-6");
}

#[tokio::test]
async fn tokens_are_checked_and_other_patients_reports_do_not_exist() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let grace = stack.tablet.patient();
    let result = stack.upload(&ada, OffsetDateTime::now_utc()).await;
    let page = json(
        stack
            .get(
                &token(ada.id),
                &format!("/v1/me/reports?{}", fresh(&result)),
            )
            .await,
        200,
    )
    .await;
    let adas_report = page["items"][0]["id"].as_str().unwrap().to_string();

    let anonymous = stack
        .http
        .get(format!("{}/v1/me/reports", stack.reports))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // An unauthenticated caller learns nothing of the store, not even its position.
    assert!(!anonymous.headers().contains_key("x-data-lsn"));
    assert_eq!(anonymous.headers()["cache-control"], "no-store");
    // Every patient-data route, with a forged token: the same.
    for path in [
        "/v1/me/reports".to_string(),
        format!("/v1/me/reports/{adas_report}"),
        "/v1/me/summary".to_string(),
    ] {
        let forged = stack.get("not.a.jwt", &path).await;
        assert_eq!(forged.status(), 401, "{path}");
        assert!(!forged.headers().contains_key("x-data-lsn"), "{path}");
        assert_eq!(forged.headers()["cache-control"], "no-store", "{path}");
        let own = stack.get(&token(ada.id), &path).await;
        assert_eq!(own.status(), 200, "{path}");
        assert_eq!(own.headers()["cache-control"], "no-store", "{path}");
        assert!(own.headers().contains_key("x-data-lsn"), "{path}");
    }

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = |patch: Value| {
        let mut claims =
            json!({ "sub": ada.id, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600 });
        for (key, value) in patch.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    for (name, bad) in [
        (
            "bad signature",
            token_with(claims(json!({})), "another-secret"),
        ),
        (
            "expired",
            token_with(claims(json!({ "exp": now - 3600 })), SECRET),
        ),
        (
            "wrong audience",
            token_with(claims(json!({ "aud": "someone-else" })), SECRET),
        ),
        (
            "wrong issuer",
            token_with(claims(json!({ "iss": "evil" })), SECRET),
        ),
        (
            "not yet valid",
            token_with(claims(json!({ "nbf": now + 3600 })), SECRET),
        ),
    ] {
        let response = stack.get(&bad, "/v1/me/reports").await;
        assert_eq!(response.status(), 401, "{name}");
        let body = response.text().await.unwrap();
        assert!(!body.contains(&bad), "{name}: the token must not be echoed");
    }

    let other = stack
        .get(&token(grace.id), &format!("/v1/me/reports/{adas_report}"))
        .await;
    assert_eq!(other.status(), 404);
    let missing = stack
        .get(
            &token(ada.id),
            &format!("/v1/me/reports/{}", Uuid::new_v4()),
        )
        .await;
    assert_eq!(missing.status(), 404);
    let graces = json(stack.get(&token(grace.id), "/v1/me/reports").await, 200).await;
    assert_eq!(graces["items"], json!([]));
}

#[tokio::test]
async fn walking_the_pages_while_reports_arrive_never_repeats_or_skips() {
    const ARRIVALS: i64 = 8;
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let now = OffsetDateTime::now_utc();
    let mut last = Value::Null;
    for day in 0..4 {
        last = stack
            .upload(&ada, now - time::Duration::days(10 + day))
            .await;
    }
    let token = token(ada.id);
    let everything = json(
        stack
            .get(
                &token,
                &format!("/v1/me/reports?limit=100&{}", fresh(&last)),
            )
            .await,
        200,
    )
    .await;
    let before: HashSet<String> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 20);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut day = 0;
    loop {
        // New reports arrive during the first pages, newer and older than the walk's position
        // (from the sixth on older than every report before the walk). A bounded number: five
        // reports arriving behind the position per page of three would outrun the walk for good
        // whenever the store shows them quickly.
        if day < ARRIVALS {
            stack
                .upload(&ada, now - time::Duration::days(day * 3))
                .await;
            day += 1;
        }
        let path = match &cursor {
            Some(cursor) => format!("/v1/me/reports?limit=3&cursor={cursor}"),
            None => "/v1/me/reports?limit=3".to_string(),
        };
        let page = json(stack.get(&token, &path).await, 200).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a report was repeated");
    for id in &before {
        assert!(unique.contains(id), "report {id} was skipped");
    }
}

#[tokio::test]
async fn filters_etags_freshness_and_bad_parameters() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let now = OffsetDateTime::now_utc();
    stack.upload(&ada, now - time::Duration::days(40)).await;
    let last = stack.upload(&ada, now - time::Duration::days(2)).await;
    let token = token(ada.id);

    let scales = json(
        stack
            .get(
                &token,
                &format!("/v1/me/reports?instrument=scale&{}", fresh(&last)),
            )
            .await,
        200,
    )
    .await;
    let items = scales["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["instrument"]["type"] == "scale"));
    let from = (now - time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let recent = json(
        stack
            .get(&token, &format!("/v1/me/reports?from={}", urlencode(&from)))
            .await,
        200,
    )
    .await;
    assert_eq!(recent["items"].as_array().unwrap().len(), 5);

    let first = stack.get(&token, "/v1/me/summary").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let again = stack
        .http
        .get(format!("{}/v1/me/summary", stack.reports))
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.headers().contains_key("x-data-lsn"));

    let behind = stack
        .get(&token, "/v1/me/summary?min_lsn=FFFFFFFF/0&wait_ms=200")
        .await;
    assert_eq!(behind.status(), 503);
    assert!(behind.headers().contains_key("retry-after"));

    for (query, pointer) in [
        ("limit=0", "/query/limit"),
        ("limit=101", "/query/limit"),
        ("limit=%7B%22%24gt%22%3A%22%22%7D", "/query/limit"),
        ("cursor=not-a-cursor", "/query/cursor"),
        ("cursor=%24where", "/query/cursor"),
        ("from=yesterday", "/query/from"),
        ("instrument=tricorder", "/query/instrument"),
        ("instrument%5B%24ne%5D=scale", "/query/instrument[$ne]"),
        ("min_lsn=12", "/query/min_lsn"),
        ("wait_ms=60000", "/query/wait_ms"),
        ("sort=taken_at", "/query/sort"),
    ] {
        let response = stack.get(&token, &format!("/v1/me/reports?{query}")).await;
        let problem = json(response, 400).await;
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{query}: {pointers:?}");
    }
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

/// A validator for `components/schemas/{name}` of the OpenAPI document.
fn schema(name: &str) -> jsonschema::Validator {
    let document: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let mut schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    schema["components"] = document["components"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

#[tokio::test]
async fn answers_match_the_openapi_document_and_every_operation_is_served() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let last = stack.upload(&ada, OffsetDateTime::now_utc()).await;
    let token = token(ada.id);
    let page = json(
        stack
            .get(&token, &format!("/v1/me/reports?limit=2&{}", fresh(&last)))
            .await,
        200,
    )
    .await;
    assert!(schema("Page").is_valid(&page), "{page}");
    let id = page["items"][0]["id"].as_str().unwrap();
    let report = json(
        stack.get(&token, &format!("/v1/me/reports/{id}")).await,
        200,
    )
    .await;
    assert!(schema("Report").is_valid(&report), "{report}");
    let summary = json(stack.get(&token, "/v1/me/summary").await, 200).await;
    assert!(schema("Summary").is_valid(&summary), "{summary}");
    let trend = json(stack.get(&token, "/v1/me/trends?code=8867-4").await, 200).await;
    assert!(schema("Trend").is_valid(&trend), "{trend}");
    assert_eq!(trend["points"].as_array().unwrap().len(), 3, "{trend}");
    let bounded = json(
        stack.get(&token, "/v1/me/trends?code=8867-4&limit=1").await,
        200,
    )
    .await;
    assert!(schema("Trend").is_valid(&bounded), "{bounded}");
    assert!(bounded["next_cursor"].is_string(), "{bounded}");
    let problem = json(stack.get(&token, "/v1/me/reports?limit=0").await, 400).await;
    assert!(schema("Problem").is_valid(&problem), "{problem}");

    let document: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    for path in document["paths"].as_object().unwrap().keys() {
        let url = format!("{}{}", stack.reports, path.replace("{id}", id));
        let response = stack.http.get(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            401,
            "{path} is documented but not served"
        );
    }
}

#[tokio::test]
async fn a_store_outage_gives_503_with_retry_after_and_the_service_recovers() {
    let mut ferretdb = devstack::ferretdb::Store::start_ferretdb(None)
        .await
        .unwrap();
    let service = in_process::reports(&[
        ("MYHEALTH_MONGODB_URI", ferretdb.uri()),
        ("MYHEALTH_MONGODB_DATABASE", "outage"),
        ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
        ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
    ])
    .await
    .unwrap();
    let base = service.url.clone();
    let http = reqwest::Client::new();
    let token = token(Uuid::new_v4());
    let list = || {
        http.get(format!("{base}/v1/me/reports"))
            .bearer_auth(&token)
            .send()
    };

    assert_eq!(list().await.unwrap().status(), 200);
    ferretdb.stop().await.unwrap();
    let down = list().await.unwrap();
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    let problem: Value = down.json().await.unwrap();
    assert!(!problem.to_string().contains("mongodb://"), "{problem}");

    ferretdb.restart().await.unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = list().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    service.stop().await.unwrap();
}

/// The `taken_at` and report id of every point of a trend answer, checked oldest to newest.
fn points(trend: &Value) -> Vec<(String, String)> {
    let points: Vec<(String, String)> = trend["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["taken_at"].as_str().unwrap().to_string(),
                p["report_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        points.windows(2).all(|pair| pair[0] <= pair[1]),
        "not oldest to newest: {points:?}"
    );
    points
}

#[tokio::test]
async fn trends_are_one_codes_values_bounded_and_without_reports_entered_in_error() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let grace = stack.tablet.patient();
    let now = OffsetDateTime::now_utc();
    let mut uploads = Vec::new();
    let mut last = Value::Null;
    for day in (1..=4).rev() {
        let upload = stack.tablet.upload(&ada, now - time::Duration::days(day));
        last = stack.tablet.post(&upload).await.unwrap();
        uploads.push(upload);
    }
    let graces_upload = stack.upload(&grace, now).await;
    let graces_token = token(grace.id);
    let token = token(ada.id);
    // Every systolic value uploaded, oldest first, with its report.
    let systolic: Vec<(String, f64)> = uploads
        .iter()
        .map(|upload| {
            let report = &upload["checkups"][0]["reports"][0];
            assert_eq!(report["instrument"]["type"], "blood_pressure");
            assert_eq!(report["measurements"][0]["code"], "8480-6");
            (
                report["id"].as_str().unwrap().to_string(),
                report["measurements"][0]["value"].as_f64().unwrap(),
            )
        })
        .collect();

    let response = stack
        .get(
            &token,
            &format!("/v1/me/trends?code=8480-6&{}", fresh(&last)),
        )
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().contains_key("x-data-lsn"));
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let trend = json(response, 200).await;
    assert_eq!(trend["code"], "8480-6");
    assert_eq!(trend["name"], "Systolic blood pressure");
    assert_eq!(trend["unit"], "mm[Hg]");
    assert_eq!(trend["next_cursor"], Value::Null);
    let served: Vec<(String, f64)> = trend["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["unit"], "mm[Hg]");
            assert!(
                ["L", "N", "H"].contains(&p["flag"].as_str().unwrap()),
                "{p}"
            );
            (
                p["report_id"].as_str().unwrap().to_string(),
                p["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(served, systolic, "the uploaded values, oldest to newest");
    points(&trend);
    let again = stack
        .http
        .get(format!("{}/v1/me/trends?code=8480-6", stack.reports))
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Heart rate comes from three instruments per checkup: 12 points, walked 5 at a time from
    // the newest back, never repeating or skipping one.
    let all = points(&json(stack.get(&token, "/v1/me/trends?code=8867-4").await, 200).await);
    assert_eq!(all.len(), 12);
    let mut walked: Vec<(String, String)> = Vec::new();
    let mut path = "/v1/me/trends?code=8867-4&limit=5".to_string();
    loop {
        let page = json(stack.get(&token, &path).await, 200).await;
        let mut chunk = points(&page);
        assert!(chunk.len() <= 5);
        if let (Some(newest), Some(oldest_seen)) = (chunk.last(), walked.first()) {
            assert!(newest < oldest_seen, "pages go back in time");
        }
        chunk.append(&mut walked);
        walked = chunk;
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/me/trends?code=8867-4&limit=5&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, all);

    let since = (now - time::Duration::days(2) - time::Duration::hours(12))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let recent = json(
        stack
            .get(
                &token,
                &format!("/v1/me/trends?code=8480-6&since={}", urlencode(&since)),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(points(&recent).len(), 2);
    let graces = json(
        stack
            .get(
                &graces_token,
                &format!("/v1/me/trends?code=8480-6&{}", fresh(&graces_upload)),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(graces["points"].as_array().unwrap().len(), 1);
    assert!(
        !graces.to_string().contains(&systolic[0].0),
        "another patient's report"
    );

    // A report entered in error leaves the trend.
    let (withdrawn, _) = &systolic[3];
    let response = stack
        .http
        .patch(format!("{}/v1/reports/{withdrawn}", stack.ingest))
        .bearer_auth(&stack.device_token)
        .json(&json!({ "status": "entered-in-error" }))
        .send()
        .await
        .unwrap();
    let changed = json(response, 200).await;
    let trend = json(
        stack
            .get(
                &token,
                &format!("/v1/me/trends?code=8480-6&{}", fresh(&changed)),
            )
            .await,
        200,
    )
    .await;
    let left: Vec<String> = points(&trend).into_iter().map(|(_, id)| id).collect();
    let expected: Vec<String> = systolic[..3].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(left, expected);

    for (query, pointer) in [
        ("", &["/query/code"][..]),
        ("code=1234-5", &["/query/code"]),
        ("code=", &["/query/code"]),
        ("code=8480-6&code=8462-4", &["/query/code"]),
        ("code%5B%24ne%5D=x", &["/query/code[$ne]", "/query/code"]),
        ("code=%7B%22%24gt%22%3A%22%22%7D", &["/query/code"]),
        ("code=8480-6&limit=501", &["/query/limit"]),
        ("code=8480-6&limit=0", &["/query/limit"]),
        ("code=8480-6&cursor=nope", &["/query/cursor"]),
        ("code=8480-6&since=yesterday", &["/query/since"]),
        (
            "code=8480-6&since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            &["/query/since"],
        ),
        ("code=8480-6&from=2026-01-01T00:00:00Z", &["/query/from"]),
    ] {
        let response = stack.get(&token, &format!("/v1/me/trends?{query}")).await;
        let problem = json(response, 400).await;
        assert!(schema("Problem").is_valid(&problem), "{problem}");
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert_eq!(pointers, pointer, "{query}");
    }
}

#[test]
fn the_documented_trend_codes_are_the_catalogues() {
    let document: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let codes: Vec<&str> = clinical_catalogue::CODES.iter().map(|c| c.code).collect();
    let parameter = document["paths"]["/v1/me/trends"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "code")
        .unwrap();
    assert_eq!(parameter["schema"]["enum"], json!(codes));
    assert_eq!(
        document["components"]["schemas"]["Trend"]["properties"]["code"]["enum"],
        json!(codes)
    );
}
