//! `POST /v1/uploads` and `GET /v1/uploads/{id}`.

use std::time::Duration;

use devstack::postgres::{ClusterOptions, PostgresServer};
use devstack::roles::ServiceLogin;
use futures::future::join_all;
use serde_json::{Value, json};

use crate::support::{Api, expect_status, pointers, report_id, upload};

#[tokio::test]
async fn an_upload_is_stored_completely_with_flags_from_the_catalogue() {
    let api = Api::start().await;
    let token = api.device("North Clinic").await;
    let body = upload();

    let response = api.post(&token, &body).await;
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let result = expect_status(response, 201).await;
    let location = location.unwrap();
    assert_eq!(result["upload_id"], body["upload_id"]);
    assert_eq!(
        (result["checkups"].as_u64(), result["reports"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(result["measurements"], 4);
    assert!(result["commit_lsn"].as_str().unwrap().contains('/'));
    assert_eq!(
        location,
        format!("/v1/uploads/{}", body["upload_id"].as_str().unwrap())
    );

    let client = api.ctx.postgres().await.unwrap();
    let checkup = client
        .query_one(
            "SELECT cl.name, p.full_name, p.birth_date::text FROM checkups c \
             JOIN clinics cl ON cl.id = c.clinic_id JOIN patients p ON p.id = c.patient_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(checkup.get::<_, &str>(0), "North Clinic");
    assert_eq!(checkup.get::<_, &str>(1), "Ada Lovelace");
    assert_eq!(checkup.get::<_, &str>(2), "1985-12-10");
    let systolic = client
        .query_one(
            "SELECT m.display_name, m.value::float8, m.unit, m.reference_low::float8, \
                    m.reference_high::float8, m.flag, r.notes, r.raw \
             FROM measurements m JOIN reports r ON r.id = m.report_id WHERE m.code = '8480-6'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(systolic.get::<_, &str>(0), "Systolic blood pressure");
    assert_eq!(systolic.get::<_, f64>(1), 135.0);
    assert_eq!(systolic.get::<_, &str>(2), "mm[Hg]");
    assert_eq!(
        (systolic.get::<_, f64>(3), systolic.get::<_, f64>(4)),
        (90.0, 120.0)
    );
    assert_eq!(systolic.get::<_, &str>(5), "H");
    assert_eq!(systolic.get::<_, &str>(6), "left arm, seated");
    assert_eq!(
        systolic.get::<_, Value>(7),
        json!({"cuff": "M", "readings": [120, 80]})
    );
    assert_eq!(api.count("measurements").await, 4);

    let fetched: Value = api
        .http
        .get(format!("{}{location}", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["commit_lsn"], result["commit_lsn"]);
    assert_eq!(
        fetched["replicated"], false,
        "no CDC slot exists in this test"
    );
}

#[tokio::test]
async fn a_gzip_upload_is_accepted_and_a_gzip_bomb_is_cut_off() {
    let api = Api::start_on(
        devstack::TestContext::new().await.unwrap(),
        &[("MYHEALTH_MAX_BODY_BYTES", "1048576")],
    )
    .await;
    let token = api.device("Gzip Clinic").await;
    let body = serde_json::to_vec(&upload()).unwrap();
    assert_eq!(api.post_gzip(&token, &body).await.status(), 201);

    // 64 MiB of spaces inflate from a few dozen KiB; the limit is 1 MiB.
    let mut bomb = b"{\"upload_id\": ".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 * 1024 * 1024));
    let response = api.post_gzip(&token, &bomb).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(api.count("uploads").await, 1);
}

#[tokio::test]
async fn a_replay_returns_the_stored_result_and_a_changed_body_is_a_conflict() {
    let api = Api::start().await;
    let token = api.device("Replay Clinic").await;
    let body = upload();
    let first: Value = api.post(&token, &body).await.json().await.unwrap();

    let replay = api.post(&token, &body).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap(), first);

    let mut changed = body.clone();
    changed["checkups"][0]["reports"][0]["notes"] = json!("right arm");
    let conflict = api.post(&token, &changed).await;
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.unwrap();
    assert_eq!(pointers(&problem), ["/upload_id"]);
    assert_eq!(api.count("reports").await, 2);
}

#[tokio::test]
async fn stored_reports_in_a_new_upload_are_skipped_when_identical_and_refused_when_not() {
    let api = Api::start().await;
    let token = api.device("Dup Clinic").await;
    let body = upload();
    api.post(&token, &body).await;

    let mut again = body.clone();
    again["upload_id"] = json!(uuid::Uuid::new_v4());
    let response = api.post(&token, &again).await;
    assert_eq!(response.status(), 201);
    let result: Value = response.json().await.unwrap();
    assert_eq!(
        (
            result["reports"].as_u64(),
            result["duplicate_reports"].as_u64()
        ),
        (Some(0), Some(2))
    );

    let mut different = body.clone();
    different["upload_id"] = json!(uuid::Uuid::new_v4());
    different["checkups"][0]["reports"][1]["measurements"][0]["value"] = json!(91);
    let response = api.post(&token, &different).await;
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(pointers(&problem), ["/checkups/0/reports/1"]);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&report_id(&body, 1))
    );
    assert_eq!(api.count("uploads").await, 2);
    assert_eq!(api.count("measurements").await, 4);
}

#[tokio::test]
async fn identical_uploads_racing_each_other_are_written_once() {
    let api = Api::start().await;
    let token = api.device("Race Clinic").await;
    let body = upload();
    let responses = join_all((0..8).map(|_| api.post(&token, &body))).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(api.count("uploads").await, 1);
    assert_eq!(api.count("reports").await, 2);
}

#[tokio::test]
async fn every_validation_problem_is_listed_with_its_pointer_and_nothing_is_written() {
    let api = Api::start().await;
    let token = api.device("Strict Clinic").await;
    let mut body = upload();
    body["checkups"][0]["reports"][0]["measurements"][1]["unit"] = json!("kPa");
    body["checkups"][0]["reports"][1]["instrument"]["type"] = json!("tricorder");
    body["checkups"][0]["completed_at"] = json!("2026-11-27T08:00:00Z");
    body["checkups"][0]["patient"]["nickname"] = json!("Ada");

    let response = api.post(&token, &body).await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    let found = pointers(&problem);
    for pointer in [
        "/checkups/0/patient/nickname",
        "/checkups/0/completed_at",
        "/checkups/0/reports/0/measurements/1/unit",
        "/checkups/0/reports/1/instrument/type",
    ] {
        assert!(
            found.iter().any(|p| p == pointer),
            "{pointer} missing from {found:?}"
        );
    }
    assert!(problem["request_id"].is_string());
    for table in ["patients", "checkups", "reports", "measurements", "uploads"] {
        assert_eq!(api.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversize_bodies_are_refused() {
    let api = Api::start_on(
        devstack::TestContext::new().await.unwrap(),
        &[("MYHEALTH_MAX_BODY_BYTES", "4096")],
    )
    .await;
    let token = api.device("Careless Clinic").await;
    let post = |content_type: &'static str, body: Vec<u8>| {
        api.http
            .post(format!("{}/v1/uploads", api.base))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let malformed = post(
        "application/json",
        b"{\n  \"upload_id\": \"x\",\n  oops\n}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(malformed.status(), 400);
    let problem: Value = malformed.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("line 3"), "{detail}");
    assert!(detail.contains("column"), "{detail}");

    let text = post("text/plain", b"{}".to_vec()).await.unwrap();
    assert_eq!(text.status(), 415);

    let huge = post("application/json", vec![b' '; 10_000]).await.unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(api.count("uploads").await, 0);
}

#[tokio::test]
async fn missing_unknown_and_revoked_tokens_are_unauthorized() {
    let api = Api::start().await;
    let body = upload();
    let anonymous = api
        .http
        .post(format!("{}/v1/uploads", api.base))
        .json(&body)
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

    let unknown = api.post("mhd_0000", &body).await;
    assert_eq!(unknown.status(), 401);
    assert!(
        unknown.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let mut client = api.ctx.postgres().await.unwrap();
    let (_, token) = ingest_api::store::devices::add(&mut client, "Gone Clinic", "old")
        .await
        .unwrap();
    ingest_api::store::devices::revoke(&client, "Gone Clinic", "old")
        .await
        .unwrap();
    assert_eq!(api.post(&token, &body).await.status(), 401);
    assert_eq!(api.count("uploads").await, 0);
}

#[tokio::test]
async fn a_stopped_database_gives_503_with_retry_after_and_the_service_recovers() {
    let mut cluster = PostgresServer::start(ClusterOptions::default())
        .await
        .unwrap();
    let ctx = devstack::TestContext::new().await.unwrap();
    let admin = cluster.connect("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE outage").await.unwrap();
    let mut client = cluster.connect("outage").await.unwrap();
    source_schema::migrate(&mut client).await.unwrap();
    let token = ingest_api::store::devices::add(&mut client, "Outage Clinic", "t1")
        .await
        .unwrap()
        .1;
    devstack::roles::create_logins(&client).await.unwrap();
    let url = devstack::roles::url_as(&cluster.url_for("outage"), ServiceLogin::Ingest).unwrap();
    let api = Api::start_on(ctx, &[("MYHEALTH_DATABASE_URL", url.as_str())]).await;
    assert_eq!(api.post(&token, &upload()).await.status(), 201);

    cluster.stop().await.unwrap();
    let response = api.post(&token, &upload()).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert!(!problem.to_string().contains("postgres://"), "{problem}");

    cluster.restart().await.unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = api.post(&token, &upload()).await.status().as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201);
}
