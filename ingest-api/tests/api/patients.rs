//! Patients belong to clinics: an unlinked clinic cannot overwrite another clinic's patient,
//! a matching identity links it, a linked clinic's changes are applied and audited, and an
//! omitted optional field keeps its value.

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::{Api, expect_status, pointers, upload};

/// `upload()` naming `patient` with `demographics` merged over the default patient.
fn upload_for(patient: Uuid, demographics: Value) -> Value {
    let mut body = upload();
    let stored = &mut body["checkups"][0]["patient"];
    stored["id"] = json!(patient);
    for (key, value) in demographics.as_object().unwrap() {
        stored[key] = value.clone();
    }
    body
}

/// The stored demographics of `patient`.
async fn patient_row(api: &Api, patient: Uuid) -> Value {
    let client = api.ctx.postgres().await.unwrap();
    let row = client
        .query_one(
            "SELECT json_build_object('external_ref', external_ref, 'full_name', full_name, \
                 'birth_date', birth_date, 'sex', sex, 'phone', phone, 'email', email) \
             FROM patients WHERE id = $1",
            &[&patient],
        )
        .await
        .unwrap();
    row.get(0)
}

/// `(clinic name, record number)` of every link of `patient`, by clinic name.
async fn links(api: &Api, patient: Uuid) -> Vec<(String, String)> {
    let client = api.ctx.postgres().await.unwrap();
    client
        .query(
            "SELECT c.name, l.external_ref FROM patient_clinics l \
             JOIN clinics c ON c.id = l.clinic_id WHERE l.patient_id = $1 ORDER BY c.name",
            &[&patient],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// `(action, clinic, old values, new values)` of `patient`'s audit trail, oldest first.
async fn audit(api: &Api, patient: Uuid) -> Vec<(String, String, Value, Value)> {
    let client = api.ctx.postgres().await.unwrap();
    client
        .query(
            "SELECT h.action, c.name, h.old_values, h.new_values FROM patient_changes h \
             JOIN clinics c ON c.id = h.clinic_id WHERE h.patient_id = $1 ORDER BY h.id",
            &[&patient],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

fn ada() -> Value {
    json!({
        "external_ref": "N-1", "full_name": "Ada Lovelace", "birth_date": "1985-12-10",
        "sex": "female", "phone": "+44 20 7946 0000", "email": "ada@example.org"
    })
}

#[tokio::test]
async fn an_unlinked_clinic_naming_a_patient_with_another_identity_is_refused_whole() {
    let api = Api::start().await;
    let north = api.device("North Clinic").await;
    let south = api.device("South Clinic").await;
    let patient = Uuid::new_v4();
    expect_status(api.post(&north, &upload_for(patient, ada())).await, 201).await;
    let before = patient_row(&api, patient).await;
    let tables = [
        "patients",
        "patient_clinics",
        "patient_changes",
        "checkups",
        "reports",
        "measurements",
        "uploads",
    ];
    let mut counts = Vec::new();
    for table in tables {
        counts.push(api.count(table).await);
    }

    // A new patient first, then the existing one under another name: the whole upload goes.
    let mut body = upload_for(Uuid::new_v4(), json!({ "full_name": "Grace Hopper" }));
    let mut second = upload_for(
        patient,
        json!({ "full_name": "Mary Shelley", "birth_date": "1997-08-30" }),
    )["checkups"][0]
        .clone();
    second["id"] = json!(Uuid::new_v4());
    for report in second["reports"].as_array_mut().unwrap() {
        report["id"] = json!(Uuid::new_v4());
    }
    body["checkups"].as_array_mut().unwrap().push(second);
    let response = api.post(&south, &body).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = expect_status(response, 409).await;
    assert_eq!(pointers(&problem), ["/checkups/1/patient"]);
    assert!(!problem.to_string().contains("Ada"), "{problem}");

    // Same name, another birth date: refused too.
    let body = upload_for(patient, json!({ "birth_date": "1985-12-11" }));
    let problem = expect_status(api.post(&south, &body).await, 409).await;
    assert_eq!(pointers(&problem), ["/checkups/0/patient"]);

    assert_eq!(patient_row(&api, patient).await, before);
    for (table, count) in tables.iter().zip(counts) {
        assert_eq!(api.count(table).await, count, "{table}");
    }
    assert_eq!(
        links(&api, patient).await,
        [("North Clinic".to_string(), "N-1".to_string())]
    );
}

#[tokio::test]
async fn an_unlinked_clinic_sending_the_same_identity_is_linked_and_changes_nothing_else() {
    let api = Api::start().await;
    let north = api.device("North Clinic").await;
    let south = api.device("South Clinic").await;
    let patient = Uuid::new_v4();
    expect_status(api.post(&north, &upload_for(patient, ada())).await, 201).await;
    let before = patient_row(&api, patient).await;

    let body = upload_for(
        patient,
        json!({
            "external_ref": "S-77", "full_name": "  ADA  LOVELÁCE ", "birth_date": "1985-12-10",
            "sex": "other", "phone": "+1 555 0100", "email": null
        }),
    );
    expect_status(api.post(&south, &body).await, 201).await;

    assert_eq!(patient_row(&api, patient).await, before);
    assert_eq!(
        links(&api, patient).await,
        [
            ("North Clinic".to_string(), "N-1".to_string()),
            ("South Clinic".to_string(), "S-77".to_string())
        ]
    );
    let trail = audit(&api, patient).await;
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(
        (trail[0].0.as_str(), trail[0].1.as_str()),
        ("created", "North Clinic")
    );
    assert_eq!(trail[0].3["full_name"], "Ada Lovelace");
    assert_eq!(
        trail[1],
        (
            "linked".to_string(),
            "South Clinic".to_string(),
            json!({}),
            json!({ "external_ref": "S-77" })
        )
    );

    // Now linked, South's next upload may change the patient.
    let body = upload_for(patient, json!({ "external_ref": "S-77", "sex": "other" }));
    expect_status(api.post(&south, &body).await, 201).await;
    assert_eq!(patient_row(&api, patient).await["sex"], "other");
}

#[tokio::test]
async fn a_linked_clinics_change_is_applied_and_listed_by_the_history_command() {
    let api = Api::start().await;
    // A second of slack: the change times are the database server's clock, not this process's.
    let began = OffsetDateTime::now_utc() - Duration::seconds(1);
    let north = api.device("North Clinic").await;
    let patient = Uuid::new_v4();
    expect_status(api.post(&north, &upload_for(patient, ada())).await, 201).await;

    let body = upload_for(
        patient,
        json!({ "external_ref": "N-1b", "full_name": "Augusta Ada King", "phone": "+44 1" }),
    );
    expect_status(api.post(&north, &body).await, 201).await;
    let row = patient_row(&api, patient).await;
    assert_eq!(
        (&row["full_name"], &row["phone"], &row["email"]),
        (
            &json!("Augusta Ada King"),
            &json!("+44 1"),
            &json!("ada@example.org")
        )
    );
    // The registration number stays; the clinic's own number is its link's.
    assert_eq!(row["external_ref"], "N-1");
    assert_eq!(
        links(&api, patient).await,
        [("North Clinic".to_string(), "N-1b".to_string())]
    );
    let trail = audit(&api, patient).await;
    assert_eq!(
        trail[1],
        (
            "updated".to_string(),
            "North Clinic".to_string(),
            json!({ "external_ref": "N-1", "full_name": "Ada Lovelace", "phone": "+44 20 7946 0000" }),
            json!({ "external_ref": "N-1b", "full_name": "Augusta Ada King", "phone": "+44 1" })
        )
    );
    // The same upload again changes nothing and records nothing.
    let mut again = body.clone();
    again["upload_id"] = json!(Uuid::new_v4());
    expect_status(api.post(&north, &again).await, 201).await;
    assert_eq!(audit(&api, patient).await.len(), 2);

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ingest-api"))
        .args(["patient", "history", "--patient", &patient.to_string()])
        .env(
            "MYHEALTH_DATABASE_URL",
            api.ctx.url_as(devstack::roles::ServiceLogin::Ingest),
        )
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[0]["action"], &lines[0]["clinic"]),
        (&json!("created"), &json!("North Clinic"))
    );
    assert_eq!(lines[1]["action"], "updated");
    assert_eq!(lines[1]["old"]["full_name"], "Ada Lovelace");
    assert_eq!(lines[1]["new"]["full_name"], "Augusta Ada King");
    assert_eq!(lines[1]["upload_id"], body["upload_id"]);
    assert!(lines[1]["device"].as_str().unwrap().starts_with("tablet-"));
    // When: RFC 3339 times, in the order the changes were made, none before the test began.
    let times: Vec<OffsetDateTime> = lines
        .iter()
        .map(|line| {
            OffsetDateTime::parse(line["changed_at"].as_str().unwrap(), &Rfc3339)
                .unwrap_or_else(|error| panic!("{line}: {error}"))
        })
        .collect();
    assert!(times[0] >= began && times[0] <= times[1], "{times:?}");
}

#[tokio::test]
async fn an_omitted_phone_or_email_keeps_its_value_and_null_clears_it() {
    let api = Api::start().await;
    let north = api.device("North Clinic").await;
    let patient = Uuid::new_v4();
    expect_status(api.post(&north, &upload_for(patient, ada())).await, 201).await;

    let mut thin = upload_for(patient, json!({ "external_ref": "N-1" }));
    let stored = thin["checkups"][0]["patient"].as_object_mut().unwrap();
    assert!(stored.remove("phone").is_none() && stored.remove("email").is_none());
    expect_status(api.post(&north, &thin).await, 201).await;
    let row = patient_row(&api, patient).await;
    assert_eq!(
        (&row["phone"], &row["email"]),
        (&json!("+44 20 7946 0000"), &json!("ada@example.org"))
    );
    assert_eq!(audit(&api, patient).await.len(), 1);

    let cleared = upload_for(
        patient,
        json!({ "external_ref": "N-1", "phone": null, "email": null }),
    );
    expect_status(api.post(&north, &cleared).await, 201).await;
    let row = patient_row(&api, patient).await;
    assert_eq!((&row["phone"], &row["email"]), (&Value::Null, &Value::Null));
    let trail = audit(&api, patient).await;
    assert_eq!(
        (&trail[1].2, &trail[1].3),
        (
            &json!({ "phone": "+44 20 7946 0000", "email": "ada@example.org" }),
            &json!({ "phone": null, "email": null })
        )
    );
}
