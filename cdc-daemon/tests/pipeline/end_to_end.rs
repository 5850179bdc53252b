//! Through the whole path: a tablet's upload via the real ingest API reaches the store, and the
//! ingest API then reports it as replicated.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use crate::support::Rig;

#[tokio::test]
async fn an_upload_through_the_ingest_api_reaches_the_store_and_is_reported_replicated() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let ingest = rig.start_ingest("E2E Clinic", "tablet").await;
    let (base, token) = (ingest.base.clone(), ingest.token.clone());

    let report_id = uuid::Uuid::new_v4().to_string();
    let upload_id = uuid::Uuid::new_v4().to_string();
    let upload = json!({
        "upload_id": upload_id,
        "checkups": [{
            "id": uuid::Uuid::new_v4(),
            "patient": { "id": uuid::Uuid::new_v4(), "external_ref": "MRN-9", "full_name": "Mary Somerville",
                         "birth_date": "1980-12-26", "sex": "female" },
            "started_at": "2026-11-27T09:00:00Z",
            "reports": [{
                "id": report_id,
                "instrument": { "type": "thermometer", "serial": "T-1" },
                "taken_at": "2026-11-27T09:01:00Z",
                "measurements": [{ "code": "8310-5", "value": 37.9, "unit": "Cel" }]
            }]
        }]
    });
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(&token)
        .json(&upload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["commit_lsn"].is_string(), "{created}");

    let started = Instant::now();
    let stored = loop {
        let found = rig
            .store
            .collection::<Document>("reports")
            .find_one(doc! { "_id": &report_id })
            .await
            .unwrap();
        if let Some(found) = found {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the report never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let temperature = stored
        .get_document("measurements")
        .unwrap()
        .get_document("8310-5")
        .unwrap();
    assert_eq!(temperature.get_f64("value").unwrap(), 37.9);
    assert_eq!(temperature.get_str("flag").unwrap(), "H");
    assert_eq!(
        stored
            .get_document("checkup")
            .unwrap()
            .get_str("clinic_name")
            .unwrap(),
        "E2E Clinic"
    );

    // The slot's confirmed position passes the upload's commit LSN once the daemon checkpoints
    // beyond it (idle advance on the server's keepalives).
    let mut replicated = Value::Null;
    for _ in 0..300 {
        let status: Value = http
            .get(format!("{base}/v1/uploads/{upload_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        replicated = status["replicated"].clone();
        if replicated == json!(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replicated, json!(true));
    rig.assert_verified().await;
    ingest.stop.trigger();
    daemon.stop().await;
}
