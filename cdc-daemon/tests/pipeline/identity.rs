//! Patients belong to clinics, through both services: a conflicting upload of an unlinked
//! clinic changes nothing anywhere, a matching one links the clinic (its reports show its own
//! record number), a linked clinic's change reaches every document and the audit trail, and an
//! omitted phone keeps its value while `null` clears it. Each step ends with a verify of zero
//! differences; then a resync and a fresh snapshot rebuild the same documents.

use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Ingest, Rig};

/// An upload of one checkup with one thermometer report for `patient`.
fn upload(patient: Value) -> (Value, String) {
    let report = Uuid::new_v4().to_string();
    let body = json!({
        "upload_id": Uuid::new_v4(),
        "checkups": [{
            "id": Uuid::new_v4(),
            "patient": patient,
            "started_at": "2026-11-27T09:00:00Z",
            "reports": [{
                "id": report,
                "instrument": { "type": "thermometer", "serial": "T-1" },
                "taken_at": "2026-11-27T09:01:00Z",
                "measurements": [{ "code": "8310-5", "value": 36.6, "unit": "Cel" }]
            }]
        }]
    });
    (body, report)
}

async fn post(ingest: &Ingest, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/uploads", ingest.base))
        .bearer_auth(&ingest.token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn document(rig: &Rig, collection: &str, id: &str) -> Document {
    rig.store
        .collection::<Document>(collection)
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{collection} {id} is not in the store"))
}

/// `(patient full name, checkup record number)` of report `id`.
async fn report_view(rig: &Rig, id: &str) -> (String, Bson) {
    let report = document(rig, "reports", id).await;
    let name = report.get_document("patient").unwrap().get_str("full_name");
    let number = report
        .get_document("checkup")
        .unwrap()
        .get("clinic_record_number")
        .cloned();
    (name.unwrap().to_string(), number.unwrap_or(Bson::Undefined))
}

/// Posts an upload of `patient` from `ingest` and checks that it is refused with a 409 at the
/// patient and that none of it reaches the store.
async fn assert_refused(rig: &Rig, ingest: &Ingest, patient: Value) {
    let (body, report) = upload(patient);
    let (status, problem) = post(ingest, &body).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/checkups/0/patient");
    rig.assert_verified().await;
    let refused = rig
        .store
        .collection::<Document>("reports")
        .find_one(doc! { "_id": &report })
        .await
        .unwrap();
    assert!(refused.is_none());
}

#[tokio::test]
async fn clinics_change_only_their_patients_and_the_documents_follow() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let north = rig.start_ingest("North Clinic", "tablet-n").await;
    let south = rig.start_ingest("South Clinic", "tablet-s").await;
    let patient = Uuid::new_v4();
    let id = patient.to_string();
    let ada = json!({
        "id": patient, "external_ref": "N-1", "full_name": "Ada Lovelace",
        "birth_date": "1985-12-10", "sex": "female", "phone": "+44 1", "email": "ada@example.org"
    });
    let (body, north_report) = upload(ada.clone());
    assert_eq!(post(&north, &body).await.0, 201);
    rig.assert_verified().await;
    assert_eq!(
        report_view(&rig, &north_report).await,
        ("Ada Lovelace".to_string(), Bson::from("N-1"))
    );

    // An unlinked clinic under another name, or another birth date: refused, nothing reaches
    // the store.
    let before = document(&rig, "patients", &id).await;
    for (field, value) in [("full_name", "Mary Shelley"), ("birth_date", "1985-12-11")] {
        let mut other = ada.clone();
        other[field] = json!(value);
        assert_refused(&rig, &south, other).await;
        assert_eq!(document(&rig, "patients", &id).await, before, "{field}");
    }

    // The same identity as a clerk reads it: South is linked with its own record number.
    let mut same = ada.clone();
    same["full_name"] = json!(" ada LOVELACE ");
    same["external_ref"] = json!("S-77");
    same["phone"] = json!("+1 555");
    let (body, south_report) = upload(same);
    assert_eq!(post(&south, &body).await.0, 201);
    rig.assert_verified().await;
    assert_eq!(
        report_view(&rig, &south_report).await,
        ("Ada Lovelace".to_string(), Bson::from("S-77"))
    );
    assert_eq!(report_view(&rig, &north_report).await.1, Bson::from("N-1"));
    assert_eq!(
        document(&rig, "patients", &id).await.get("phone"),
        Some(&Bson::from("+44 1"))
    );

    // A linked clinic's change: applied, fanned out to both clinics' reports, audited.
    let mut renamed = ada.clone();
    renamed["full_name"] = json!("Augusta Ada King");
    renamed["external_ref"] = json!("N-2");
    let (body, _) = upload(renamed.clone());
    assert_eq!(post(&north, &body).await.0, 201);
    rig.assert_verified().await;
    assert_eq!(
        report_view(&rig, &north_report).await,
        ("Augusta Ada King".to_string(), Bson::from("N-2"))
    );
    assert_eq!(
        report_view(&rig, &south_report).await,
        ("Augusta Ada King".to_string(), Bson::from("S-77"))
    );
    let client = rig.client().await;
    let trail: Vec<(String, Value, Value)> = client
        .query(
            "SELECT action, old_values, new_values FROM patient_changes \
             WHERE patient_id = $1 ORDER BY id",
            &[&patient],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let actions: Vec<&str> = trail.iter().map(|(action, ..)| action.as_str()).collect();
    assert_eq!(actions, ["created", "linked", "updated"]);
    assert_eq!(
        (&trail[2].1, &trail[2].2),
        (
            &json!({ "external_ref": "N-1", "full_name": "Ada Lovelace" }),
            &json!({ "external_ref": "N-2", "full_name": "Augusta Ada King" })
        )
    );

    // Omitted phone and e-mail are kept; null clears them.
    let mut thin = renamed.clone();
    let members = thin.as_object_mut().unwrap();
    members.remove("phone");
    members.remove("email");
    let (body, _) = upload(thin.clone());
    assert_eq!(post(&north, &body).await.0, 201);
    rig.assert_verified().await;
    let stored = document(&rig, "patients", &id).await;
    assert_eq!(
        (stored.get("phone"), stored.get("email")),
        (
            Some(&Bson::from("+44 1")),
            Some(&Bson::from("ada@example.org"))
        )
    );
    thin["phone"] = Value::Null;
    thin["email"] = Value::Null;
    let (body, _) = upload(thin);
    assert_eq!(post(&north, &body).await.0, 201);
    rig.assert_verified().await;
    let stored = document(&rig, "patients", &id).await;
    assert_eq!(
        (stored.get("phone"), stored.get("email")),
        (Some(&Bson::Null), Some(&Bson::Null))
    );

    // A record number changed by any writer of the source fans out too.
    client
        .execute(
            "UPDATE patient_clinics SET external_ref = 'S-78' WHERE patient_id = $1 \
             AND clinic_id = (SELECT id FROM clinics WHERE name = 'South Clinic')",
            &[&patient],
        )
        .await
        .unwrap();
    rig.assert_verified().await;
    assert_eq!(report_view(&rig, &south_report).await.1, Bson::from("S-78"));

    // A resync and a fresh snapshot rebuild the same documents.
    let resync = rig.cli(&["resync", "--patient", &id]).await;
    assert!(resync.status.success(), "{resync:?}");
    rig.assert_verified().await;
    daemon.stop().await;
    let fresh = rig.ctx.unique_name("slot");
    let again = rig.start_with(&[("MYHEALTH_SLOT", fresh.as_str())]).await;
    rig.assert_verified_by(&fresh, Duration::from_secs(60))
        .await;
    assert_eq!(
        report_view(&rig, &north_report).await,
        ("Augusta Ada King".to_string(), Bson::from("N-2"))
    );
    again.stop().await;
    north.stop.trigger();
    south.stop.trigger();
}
