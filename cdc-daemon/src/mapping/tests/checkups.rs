//! Checkups: the lookup, the checkup embedded in reports, deletes.

use mongodb::bson::doc;
use read_model::{LOOKUP_CHECKUPS, REPORTS};

use super::{
    CHECKUP, CLINIC, Cell, DEVICE, PATIENT, Stream, checkup, clinic, deletes, device, patient,
    set_of, update_of, writes_to,
};
use crate::mapping::{Dirty, Table};

#[tokio::test]
async fn an_inserted_checkup_becomes_its_lookup_and_touches_no_report() {
    let mut stream = Stream::new();
    stream.insert(Table::Clinics, clinic("North Clinic")).await;
    stream.insert(Table::Devices, device("tablet-1")).await;
    stream
        .insert(Table::Patients, patient(PATIENT, "Ada Lovelace"))
        .await;
    stream.writes();
    stream
        .insert(Table::Checkups, checkup("2026-11-27 09:20:00+00"))
        .await;
    let writes = stream.writes();
    let set = set_of(&writes, LOOKUP_CHECKUPS, CHECKUP);
    assert_eq!(set.get_str("patient_id").unwrap(), PATIENT);
    assert_eq!(set.get_str("clinic_id").unwrap(), CLINIC);
    assert_eq!(set.get_str("device_id").unwrap(), DEVICE);
    assert!(set.get_datetime("started_at").is_ok());
    assert!(!writes_to(
        &writes,
        REPORTS,
        &doc! { "patient_id": PATIENT, "checkup_id": CHECKUP }
    ));
}

#[tokio::test]
async fn an_updated_checkup_is_rewritten_in_its_reports_with_clinic_and_device_names() {
    let mut stream = Stream::seeded().await;
    stream
        .update(Table::Checkups, checkup("2026-11-27 09:45:00+00"))
        .await;
    let writes = stream.writes();
    let embedded = update_of(
        &writes,
        REPORTS,
        &doc! { "patient_id": PATIENT, "checkup_id": CHECKUP },
    )
    .get_document("$set")
    .unwrap()
    .get_document("checkup")
    .unwrap();
    assert_eq!(embedded.get_str("id").unwrap(), CHECKUP);
    assert_eq!(embedded.get_str("clinic_name").unwrap(), "North Clinic");
    assert_eq!(embedded.get_str("device_label").unwrap(), "tablet-1");
    assert_eq!(
        embedded
            .get_datetime("completed_at")
            .unwrap()
            .timestamp_millis(),
        1_795_772_700_000
    );
}

#[tokio::test]
async fn a_checkup_of_an_unknown_clinic_is_a_dead_letter_when_it_fans_out() {
    let mut stream = Stream::new();
    stream
        .insert(Table::Patients, patient(PATIENT, "Ada Lovelace"))
        .await;
    let mapped = stream
        .update(Table::Checkups, checkup("2026-11-27 09:20:00+00"))
        .await;
    let letter = mapped
        .dead_letter
        .expect("an orphan checkup is a dead letter");
    assert_eq!(letter.error, format!("clinic {CLINIC} is unknown"));
}

#[tokio::test]
async fn a_deleted_checkup_takes_its_reports_and_recomputes_the_patients_latest() {
    let mut stream = Stream::seeded().await;
    stream
        .delete(
            Table::Checkups,
            vec![
                ("id", Cell::Text(CHECKUP)),
                ("patient_id", Cell::Text(PATIENT)),
            ],
        )
        .await;
    let writes = stream.writes();
    assert!(deletes(&writes, LOOKUP_CHECKUPS, &doc! { "_id": CHECKUP }));
    assert!(deletes(
        &writes,
        REPORTS,
        &doc! { "patient_id": PATIENT, "checkup_id": CHECKUP }
    ));
    assert_eq!(
        stream.mapper.take_latest().dirty.get(PATIENT),
        Some(&Dirty::All)
    );
}
