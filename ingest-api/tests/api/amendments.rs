//! `PATCH /v1/reports/{id}` and `DELETE /v1/reports/{id}`.

use serde_json::{Value, json};

use crate::support::{Api, pointers, report_id, upload};

async fn patch(api: &Api, token: &str, id: &str, body: &Value) -> reqwest::Response {
    api.http
        .patch(format!("{}/v1/reports/{id}", api.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete(api: &Api, token: &str, id: &str) -> reqwest::Response {
    api.http
        .delete(format!("{}/v1/reports/{id}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_amendment_sets_status_notes_and_replaces_the_measurement_set() {
    let api = Api::start().await;
    let token = api.device("Amend Clinic").await;
    let body = upload();
    api.post(&token, &body).await;
    let id = report_id(&body, 0);

    let response = patch(
        &api,
        &token,
        &id,
        &json!({
            "status": "amended",
            "notes": "re-measured after rest",
            "measurements": [
                { "code": "8480-6", "value": 118, "unit": "mm[Hg]" },
                { "code": "8867-4", "value": 64, "unit": "/min" }
            ]
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["report_id"], id.as_str());
    assert!(answer["commit_lsn"].is_string());

    let client = api.ctx.postgres().await.unwrap();
    let report = client
        .query_one(
            "SELECT status, notes FROM reports WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(report.get::<_, &str>(0), "amended");
    assert_eq!(report.get::<_, &str>(1), "re-measured after rest");
    let measurements: Vec<(String, f64, String)> = client
        .query(
            "SELECT code, value::float8, flag FROM measurements \
             WHERE report_id = $1::text::uuid ORDER BY code",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        measurements,
        [
            ("8480-6".to_string(), 118.0, "N".to_string()),
            ("8867-4".to_string(), 64.0, "N".to_string())
        ]
    );
}

#[tokio::test]
async fn an_amendment_that_does_not_fit_the_instrument_changes_nothing() {
    let api = Api::start().await;
    let token = api.device("Fit Clinic").await;
    let body = upload();
    api.post(&token, &body).await;
    let id = report_id(&body, 0);
    let response = patch(
        &api,
        &token,
        &id,
        &json!({
            "status": "amended",
            "measurements": [{ "code": "2339-0", "value": 90, "unit": "mg/dL" }]
        }),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        pointers(&response.json().await.unwrap()),
        ["/measurements/0/code"]
    );
    let client = api.ctx.postgres().await.unwrap();
    let status: String = client
        .query_one(
            "SELECT status FROM reports WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "final");
}

#[tokio::test]
async fn only_a_device_of_the_reports_clinic_may_change_it() {
    let api = Api::start().await;
    let owner = api.device("Owner Clinic").await;
    let stranger = api.device("Other Clinic").await;
    let body = upload();
    api.post(&owner, &body).await;
    let id = report_id(&body, 1);

    let amend = json!({ "status": "entered-in-error" });
    assert_eq!(patch(&api, &stranger, &id, &amend).await.status(), 403);
    assert_eq!(delete(&api, &stranger, &id).await.status(), 403);
    assert_eq!(api.count("reports").await, 2);

    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(delete(&api, &owner, &missing).await.status(), 404);
    assert_eq!(
        patch(&api, &owner, "not-a-uuid", &amend).await.status(),
        404
    );

    let deleted = delete(&api, &owner, &id).await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap()["deleted"], true);
    assert_eq!(api.count("reports").await, 1);
    assert_eq!(api.count("measurements").await, 2);
}
