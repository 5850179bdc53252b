//! Patients: the patient document, the snapshot reports embed, unchanged TOAST, deletes.

use mongodb::bson::doc;
use read_model::{PATIENTS, REPORTS};

use super::{
    Cell, PATIENT, REPORT, Stream, TAKEN_AT, deletes, patient, report, set_of, systolic, update_of,
    with, writes_to,
};
use crate::mapping::Table;

#[tokio::test]
async fn an_inserted_patient_becomes_a_document_with_its_demographics() {
    let mut stream = Stream::new();
    stream
        .insert(Table::Patients, patient(PATIENT, "Ada Lovelace"))
        .await;
    let writes = stream.writes();
    let set = set_of(&writes, PATIENTS, PATIENT);
    assert_eq!(set.get_str("full_name").unwrap(), "Ada Lovelace");
    assert_eq!(set.get_str("birth_date").unwrap(), "1985-12-10");
    assert_eq!(set.get_str("email").unwrap(), "ada@example.org");
    assert!(set.contains_key("_cdc"));
    // A NULL column is written as null (the source says it is empty), unlike a TOASTed one.
    assert!(
        set.get("phone")
            .is_some_and(|phone| phone.as_null().is_some())
    );
}

#[tokio::test]
async fn a_renamed_patient_is_renamed_in_every_report_of_theirs() {
    let mut stream = Stream::seeded().await;
    stream
        .update(Table::Patients, patient(PATIENT, "Ada King"))
        .await;
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, PATIENTS, PATIENT)
            .get_str("full_name")
            .unwrap(),
        "Ada King"
    );
    let fan_out = update_of(&writes, REPORTS, &doc! { "patient_id": PATIENT });
    let snapshot = fan_out
        .get_document("$set")
        .unwrap()
        .get_document("patient")
        .unwrap();
    assert_eq!(snapshot.get_str("full_name").unwrap(), "Ada King");
    assert_eq!(snapshot.get_str("id").unwrap(), PATIENT);
}

#[tokio::test]
async fn a_change_outside_the_embedded_snapshot_does_not_fan_out() {
    let mut stream = Stream::seeded().await;
    let changed = with(
        patient(PATIENT, "Ada Lovelace"),
        "email",
        Cell::Text("ada@example.com"),
    );
    stream.update(Table::Patients, changed).await;
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, PATIENTS, PATIENT).get_str("email").unwrap(),
        "ada@example.com"
    );
    assert!(!writes_to(
        &writes,
        REPORTS,
        &doc! { "patient_id": PATIENT }
    ));
}

#[tokio::test]
async fn an_unchanged_toasted_email_is_left_out_of_the_patient_update() {
    let mut stream = Stream::seeded().await;
    let toasted = with(patient(PATIENT, "Ada Lovelace"), "email", Cell::Toast);
    stream.update(Table::Patients, toasted).await;
    let writes = stream.writes();
    let set = set_of(&writes, PATIENTS, PATIENT);
    assert!(!set.contains_key("email"), "{set}");
    assert_eq!(set.get_str("full_name").unwrap(), "Ada Lovelace");
}

#[tokio::test]
async fn unchanged_toasted_snapshot_columns_are_kept_in_the_patient_and_in_the_reports() {
    let mut stream = Stream::seeded().await;
    let toasted = with(
        with(
            with(patient(PATIENT, "Ada Lovelace"), "full_name", Cell::Toast),
            "external_ref",
            Cell::Toast,
        ),
        "birth_date",
        Cell::Text("1985-12-11"),
    );
    let mapped = stream.update(Table::Patients, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let set = set_of(&writes, PATIENTS, PATIENT);
    assert!(!set.contains_key("full_name"), "{set}");
    assert!(!set.contains_key("external_ref"), "{set}");
    assert_eq!(set.get_str("birth_date").unwrap(), "1985-12-11");
    let fan_out = update_of(&writes, REPORTS, &doc! { "patient_id": PATIENT })
        .get_document("$set")
        .unwrap();
    assert!(!fan_out.contains_key("patient"), "{fan_out}");
    assert!(!fan_out.contains_key("patient.full_name"), "{fan_out}");
    assert!(!fan_out.contains_key("patient.external_ref"), "{fan_out}");
    assert_eq!(fan_out.get_str("patient.birth_date").unwrap(), "1985-12-11");
    // The snapshot a report embeds afterwards has both the kept and the new values.
    stream
        .update(Table::Reports, report(REPORT, TAKEN_AT, "final"))
        .await;
    let writes = stream.writes();
    let embedded = set_of(&writes, REPORTS, REPORT)
        .get_document("patient")
        .unwrap();
    assert_eq!(embedded.get_str("full_name").unwrap(), "Ada Lovelace");
    assert_eq!(embedded.get_str("external_ref").unwrap(), "MRN-001");
    assert_eq!(embedded.get_str("birth_date").unwrap(), "1985-12-11");
}

#[tokio::test]
async fn a_deleted_patient_takes_their_reports_and_pending_latest_with_them() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    stream
        .delete(Table::Patients, vec![("id", Cell::Text(PATIENT))])
        .await;
    let writes = stream.writes();
    assert!(deletes(&writes, PATIENTS, &doc! { "_id": PATIENT }));
    assert!(deletes(&writes, REPORTS, &doc! { "patient_id": PATIENT }));
    assert!(stream.mapper.take_latest().is_empty());
}
