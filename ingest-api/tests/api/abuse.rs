//! Hostile input against the running ingest API: SQL injection in every text field, bodies that
//! are not UTF-8 or absurdly deep or big, forged tokens, another clinic's tablet; and, against the
//! real binary, a request flood (shed with `Retry-After`, memory bounded) with its logs checked
//! for tokens, passwords and patient data.
//!
//! Already covered elsewhere: slow headers and bodies and shedding (`limits`), gzip bombs,
//! malformed JSON, oversize bodies and missing/unknown/revoked tokens (`uploads`), another
//! clinic's amendments and deletes (`amendments`).

use std::path::Path;
use std::time::Duration;

use devstack::roles::{DEV_PASSWORD, ServiceLogin};
use devstack::services::{READY_TIMEOUT, ServiceProcess};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::{Api, expect_status, pointers, report_id, upload};

/// Classic injection payloads; each is valid text for the field it is put in.
const INJECTIONS: &[&str] = &[
    "'; DROP TABLE reports; --",
    "Robert'); DELETE FROM patients WHERE ('1'='1",
    "\" OR \"\"=\"",
    "1; TRUNCATE uploads CASCADE",
    "$$; SELECT pg_sleep(10); $$",
    "\\'; UPDATE devices SET revoked_at = NULL; --",
];

/// Row counts of every table, and the list of tables, as the superuser sees them.
async fn snapshot(api: &Api) -> Vec<(String, i64)> {
    let client = api.ctx.postgres().await.unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut counts = Vec::new();
    for table in tables {
        let count = api.count(&table).await;
        counts.push((table, count));
    }
    counts
}

#[tokio::test]
async fn sql_injection_in_every_text_field_is_stored_verbatim_and_changes_nothing_else() {
    let api = Api::start().await;
    let token = api.device("Injection Clinic").await;
    for (round, payload) in INJECTIONS.iter().enumerate() {
        let before = snapshot(&api).await;
        let mut body = upload();
        let checkup = &mut body["checkups"][0];
        checkup["patient"]["external_ref"] = json!(payload);
        checkup["patient"]["full_name"] = json!(payload);
        checkup["patient"]["phone"] = json!(&payload[..payload.len().min(32)]);
        checkup["patient"]["email"] = json!(format!("{payload}@example.org"));
        checkup["reports"][0]["instrument"]["serial"] = json!(payload);
        checkup["reports"][0]["notes"] = json!(payload);
        let raw = json!({ format!("key {payload}"): payload, "nested": [payload] });
        checkup["reports"][0]["raw"] = raw.clone();
        let created = expect_status(api.post(&token, &body).await, 201).await;
        assert_eq!(created["reports"], 2, "round {round}");

        let client = api.ctx.postgres().await.unwrap();
        let row = client
            .query_one(
                "SELECT p.external_ref, p.full_name, p.phone, p.email, r.instrument_serial, \
                        r.notes, r.raw \
                 FROM reports r JOIN patients p ON p.id = r.patient_id WHERE r.id = $1::text::uuid",
                &[&report_id(&body, 0)],
            )
            .await
            .unwrap();
        let stored: (String, String, String, String, String, String, Value) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
            row.get(6),
        );
        assert_eq!(
            stored,
            (
                payload.to_string(),
                payload.to_string(),
                payload[..payload.len().min(32)].to_string(),
                format!("{payload}@example.org"),
                payload.to_string(),
                payload.to_string(),
                raw,
            )
        );

        // An amendment's notes are text too.
        let amended = api
            .http
            .patch(format!("{}/v1/reports/{}", api.base, report_id(&body, 1)))
            .bearer_auth(&token)
            .json(&json!({ "status": "amended", "notes": payload }))
            .send()
            .await
            .unwrap();
        expect_status(amended, 200).await;
        let notes: String = client
            .query_one(
                "SELECT notes FROM reports WHERE id = $1::text::uuid",
                &[&report_id(&body, 1)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(notes, *payload);

        // Exactly one more patient (with its link and audit row), checkup and upload, two reports,
        // four measurements.
        let after = snapshot(&api).await;
        let grown: Vec<(String, i64)> = before
            .iter()
            .zip(&after)
            .map(|((table, was), (same, now))| {
                assert_eq!(table, same, "the tables changed");
                (table.clone(), now - was)
            })
            .filter(|(_, delta)| *delta != 0)
            .collect();
        let expected: Vec<(String, i64)> = [
            ("checkups", 1),
            ("measurements", 4),
            ("patient_changes", 1),
            ("patient_clinics", 1),
            ("patients", 1),
            ("reports", 2),
            ("uploads", 1),
        ]
        .iter()
        .map(|(table, delta)| (table.to_string(), *delta))
        .collect();
        assert_eq!(grown, expected, "round {round}: {payload}");
    }
}

#[tokio::test]
async fn injection_in_fields_with_a_closed_set_of_values_is_refused_and_nothing_is_written() {
    let api = Api::start().await;
    let token = api.device("Closed Set Clinic").await;
    let payload = INJECTIONS[0];
    for pointer in [
        "/upload_id",
        "/checkups/0/id",
        "/checkups/0/patient/sex",
        "/checkups/0/patient/birth_date",
        "/checkups/0/started_at",
        "/checkups/0/reports/0/instrument/type",
        "/checkups/0/reports/0/measurements/0/code",
        "/checkups/0/reports/0/measurements/0/unit",
        "/checkups/0/reports/0/measurements/0/value",
    ] {
        let mut body = upload();
        *body.pointer_mut(pointer).unwrap() = json!(payload);
        let problem = expect_status(api.post(&token, &body).await, 422).await;
        assert!(
            pointers(&problem).contains(&pointer.to_string()),
            "{pointer}: {problem}"
        );
    }
    for path in [
        "/v1/reports/'%20OR%20'1'='1",
        "/v1/uploads/1%3B%20DROP%20TABLE%20uploads",
    ] {
        let response = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(
            [400, 404, 405].contains(&response.status().as_u16()),
            "{path}: {}",
            response.status()
        );
    }
    for table in ["patients", "checkups", "reports", "measurements", "uploads"] {
        assert_eq!(api.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_utf8_too_deep_or_huge_are_refused_and_the_service_keeps_serving() {
    let api = Api::start().await;
    let token = api.device("Hostile Body Clinic").await;
    let send = |body: Vec<u8>| {
        api.http
            .post(format!("{}/v1/uploads", api.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let mut not_utf8 = br#"{"upload_id": ""#.to_vec();
    not_utf8.extend([0xff, 0xfe, 0xc3, 0x28]);
    not_utf8.extend(br#""}"#);
    expect_status(send(not_utf8).await.unwrap(), 400).await;

    // 100,000 nested arrays: refused by the JSON reader's depth limit, without a stack overflow.
    let deep = "[".repeat(100_000).into_bytes();
    expect_status(send(deep).await.unwrap(), 400).await;

    let mut deep_raw = json!("leaf");
    for _ in 0..40 {
        deep_raw = json!({ "level": deep_raw });
    }
    let mut body = upload();
    body["checkups"][0]["reports"][0]["raw"] = deep_raw;
    let problem = expect_status(api.post(&token, &body).await, 422).await;
    assert!(
        pointers(&problem)
            .iter()
            .any(|pointer| pointer.starts_with("/checkups/0/reports/0/raw")),
        "{problem}"
    );

    // Huge but under the body limit: a 6 MiB note, and 300,000 checkups.
    let mut body = upload();
    body["checkups"][0]["reports"][0]["notes"] = json!("x".repeat(6 << 20));
    expect_status(api.post(&token, &body).await, 422).await;
    let mut body = upload();
    body["checkups"] = Value::Array(vec![json!({}); 300_000]);
    let response = api.post(&token, &body).await;
    assert_eq!(response.status(), 422);
    let answer = response.bytes().await.unwrap();
    assert!(
        answer.len() < 64 * 1024,
        "the problem list is bounded, got {} bytes",
        answer.len()
    );

    expect_status(api.post(&token, &upload()).await, 201).await;
    assert_eq!(api.count("uploads").await, 1);
}

#[tokio::test]
async fn forged_tokens_and_another_clinics_tablet_are_refused() {
    let api = Api::start().await;
    let north = api.device("North Abuse Clinic").await;
    let south = api.device("South Abuse Clinic").await;
    let body = upload();
    expect_status(api.post(&north, &body).await, 201).await;
    let upload_id = body["upload_id"].as_str().unwrap();

    let well_formed = format!("mhd_{}", "0".repeat(64));
    // The real token with its last digit changed (to another digit, whatever it was).
    let (kept, last) = north.split_at(north.len() - 1);
    let almost = format!("{kept}{}", if last == "0" { "1" } else { "0" });
    let long = format!("mhd_{}", "a".repeat(16 * 1024));
    for forged in [
        well_formed.as_str(),
        almost.as_str(),
        "' OR '1'='1",
        "mhd_' OR token_sha256 IS NOT NULL --",
        long.as_str(),
    ] {
        let response = api
            .http
            .get(format!("{}/v1/uploads/{upload_id}", api.base))
            .bearer_auth(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{forged:.40}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(forged), "the token must not be echoed");
    }

    // Another clinic's tablet: the upload does not exist for it, and its id cannot be reused.
    let read = api
        .http
        .get(format!("{}/v1/uploads/{upload_id}", api.base))
        .bearer_auth(&south)
        .send()
        .await
        .unwrap();
    expect_status(read, 404).await;
    expect_status(api.post(&south, &body).await, 409).await;
    let mut other = upload();
    other["checkups"][0]["id"] = body["checkups"][0]["id"].clone();
    other["checkups"][0]["patient"] = body["checkups"][0]["patient"].clone();
    expect_status(api.post(&south, &other).await, 409).await;
    assert_eq!(api.count("uploads").await, 1);
    assert_eq!(api.count("checkups").await, 1);
}

#[tokio::test]
async fn a_flood_is_shed_with_retry_after_memory_stays_bounded_and_logs_hold_no_secrets() {
    let ctx = devstack::TestContext::new().await.unwrap();
    let mut admin = ctx.postgres().await.unwrap();
    let (_, token) = ingest_api::store::devices::add(&mut admin, "Flood Clinic", "t1")
        .await
        .unwrap();
    let port = devstack::process::free_loopback_port().unwrap();
    let env = [
        (
            "MYHEALTH_DATABASE_URL".to_string(),
            ctx.url_as(ServiceLogin::Ingest),
        ),
        (
            "MYHEALTH_MAX_CONCURRENT_UPLOADS".to_string(),
            "4".to_string(),
        ),
        ("RUST_LOG".to_string(), "debug".to_string()),
    ];
    let binary = Path::new(env!("CARGO_BIN_EXE_ingest-api"));
    let mut service = ServiceProcess::spawn(binary, port, &env, None).unwrap();
    service.wait_ready(READY_TIMEOUT).await.unwrap();
    let base = service.url().to_string();
    let http = reqwest::Client::new();

    let post = |token: String| {
        let http = http.clone();
        let url = format!("{base}/v1/uploads");
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&upload())
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().contains_key("retry-after");
            (response.status().as_u16(), retry_after)
        }
    };
    for _ in 0..30 {
        assert_eq!(post(token.clone()).await.0, 201);
    }
    let rss_before = service.rss_bytes().unwrap() / 1024;

    // One request in ten carries a forged token; shedding comes before authentication, so
    // those are answered 401 or 503, never 201.
    let forged = format!("mhd_{}", "f".repeat(64));
    let outcomes: Vec<(bool, u16, bool)> = futures::stream::iter(0..2000)
        .map(|index| {
            let is_forged = index % 10 == 0;
            let attempt = post(if is_forged {
                forged.clone()
            } else {
                token.clone()
            });
            async move {
                let (status, retry_after) = attempt.await;
                (is_forged, status, retry_after)
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let rss_after = service.rss_bytes().unwrap() / 1024;

    let count = |forged: bool, wanted: u16| {
        outcomes
            .iter()
            .filter(|(is_forged, status, _)| *is_forged == forged && *status == wanted)
            .count()
    };
    let created = count(false, 201);
    let shed = count(false, 503) + count(true, 503);
    assert_eq!(
        created + count(false, 503),
        1800,
        "valid uploads: 201 or 503"
    );
    assert_eq!(
        count(true, 401) + count(true, 503),
        200,
        "forged: 401 or 503"
    );
    assert!(count(true, 401) > 0);
    assert!(shed > 0, "200 concurrent uploads over 4 permits");
    assert!(created > 0);
    assert!(
        outcomes
            .iter()
            .filter(|(_, status, _)| *status == 503)
            .all(|(_, _, retry_after)| *retry_after),
        "every 503 carries Retry-After"
    );
    let client = ctx.postgres().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM uploads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 30 + created as i64, "every 201 is stored");
    eprintln!("ingest-api RSS: {rss_before} KiB before the flood, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB under the flood"
    );

    service.stop(Duration::from_secs(20)).await.unwrap();
    let log = std::fs::read_to_string(service.log()).unwrap();
    assert!(log.lines().count() > 100, "debug logs were captured");
    let secret_part = token.trim_start_matches("mhd_");
    for (what, secret) in [
        ("the device token", secret_part),
        ("the forged token", forged.trim_start_matches("mhd_")),
        ("the database password", DEV_PASSWORD),
        ("a patient's name", "Ada Lovelace"),
        ("a patient's record number", "MRN-001"),
    ] {
        let line = log.lines().find(|line| line.contains(secret));
        assert!(line.is_none(), "{what} appears in the logs: {line:?}");
    }
}
