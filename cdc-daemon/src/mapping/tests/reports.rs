//! Reports: the denormalized document, orphans, unchanged TOAST, what marks `latest`, deletes.

use mongodb::bson::doc;
use read_model::REPORTS;

use super::{
    CHECKUP, Cell, LATER, LATER_REPORT, OTHER_PATIENT, PATIENT, REPORT, Stream, TAKEN_AT, deletes,
    patient, report, set_of, systolic, update_of, with, writes_to,
};
use crate::decode::{Delete, Insert, Message, OldTuple, TupleData, Update};
use crate::mapping::{Dirty, Operation, Origin, Table};
use crate::sink::Write;

#[tokio::test]
async fn an_inserted_report_embeds_its_patient_and_checkup() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Reports, report(REPORT, TAKEN_AT, "final"))
        .await;
    let writes = stream.writes();
    let set = set_of(&writes, REPORTS, REPORT);
    assert_eq!(set.get_str("patient_id").unwrap(), PATIENT);
    assert_eq!(set.get_str("status").unwrap(), "final");
    assert_eq!(set.get_str("notes").unwrap(), "left arm, seated");
    assert_eq!(
        set.get_datetime("taken_at").unwrap().timestamp_millis(),
        1_795_770_300_000
    );
    assert_eq!(
        set.get_document("instrument").unwrap(),
        &doc! { "type": "blood_pressure", "serial": "BP-123" }
    );
    let embedded_patient = set.get_document("patient").unwrap();
    assert_eq!(
        embedded_patient.get_str("full_name").unwrap(),
        "Ada Lovelace"
    );
    assert!(
        !embedded_patient.contains_key("email"),
        "reports embed only the snapshot"
    );
    let embedded_checkup = set.get_document("checkup").unwrap();
    assert_eq!(embedded_checkup.get_str("id").unwrap(), CHECKUP);
    assert_eq!(
        embedded_checkup.get_str("clinic_name").unwrap(),
        "North Clinic"
    );
    assert_eq!(
        embedded_checkup.get_str("device_label").unwrap(),
        "tablet-1"
    );
    assert!(set.contains_key("_cdc"));
    assert!(stream.mapper.take_latest().is_empty());
}

#[tokio::test]
async fn a_report_of_an_unknown_patient_is_a_dead_letter_with_its_values() {
    let mut stream = Stream::seeded().await;
    let orphan = with(
        report(REPORT, TAKEN_AT, "final"),
        "patient_id",
        Cell::Text(OTHER_PATIENT),
    );
    let mapped = stream.insert(Table::Reports, orphan).await;
    assert_eq!(mapped.change, Some((Table::Reports, Operation::Insert)));
    let letter = mapped
        .dead_letter
        .expect("an orphan report is a dead letter");
    assert_eq!(letter.origin, Origin::Table(Table::Reports));
    assert_eq!(letter.operation, Some(Operation::Insert));
    assert_eq!(letter.error, format!("patient {OTHER_PATIENT} is unknown"));
    assert_eq!(letter.values.get_str("id").unwrap(), REPORT);
    assert!(stream.writes().is_empty(), "nothing is written for it");
}

#[tokio::test]
async fn an_unchanged_toasted_raw_is_left_out_of_the_report_update_never_nulled() {
    let mut stream = Stream::seeded().await;
    let toasted = with(
        with(report(REPORT, TAKEN_AT, "amended"), "raw", Cell::Toast),
        "notes",
        Cell::Toast,
    );
    stream.update(Table::Reports, toasted).await;
    let writes = stream.writes();
    let set = set_of(&writes, REPORTS, REPORT);
    assert_eq!(set.get_str("status").unwrap(), "amended");
    assert!(!set.contains_key("raw"), "{set}");
    assert!(!set.contains_key("notes"), "{set}");
}

#[tokio::test]
async fn an_unchanged_toasted_instrument_serial_and_status_are_kept_in_the_report() {
    let mut stream = Stream::seeded().await;
    let toasted = with(
        with(
            with(
                report(REPORT, TAKEN_AT, "final"),
                "instrument_serial",
                Cell::Toast,
            ),
            "status",
            Cell::Toast,
        ),
        "notes",
        Cell::Text("right arm"),
    );
    let mapped = stream.update(Table::Reports, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let set = set_of(&writes, REPORTS, REPORT);
    assert_eq!(set.get_str("notes").unwrap(), "right arm");
    assert!(!set.contains_key("status"), "{set}");
    assert!(!set.contains_key("instrument"), "{set}");
    assert!(!set.contains_key("instrument.serial"), "{set}");
    assert_eq!(set.get_str("instrument.type").unwrap(), "blood_pressure");
    assert!(stream.mapper.take_latest().is_empty());
}

#[tokio::test]
async fn a_report_entered_in_error_stays_so_when_its_status_is_unchanged_toast() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(
            Table::Reports,
            report(LATER_REPORT, LATER, "entered-in-error"),
        )
        .await;
    let toasted = with(
        report(LATER_REPORT, LATER, "entered-in-error"),
        "status",
        Cell::Toast,
    );
    let mapped = stream.update(Table::Reports, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    stream
        .insert(Table::Measurements, systolic(LATER_REPORT, "130"))
        .await;
    assert!(stream.mapper.take_latest().candidates.is_empty());
}

#[tokio::test]
async fn an_update_that_keeps_what_latest_depends_on_marks_nothing() {
    let mut stream = Stream::seeded().await;
    let new_notes = with(
        report(REPORT, TAKEN_AT, "final"),
        "notes",
        Cell::Text("right arm"),
    );
    stream.update(Table::Reports, new_notes).await;
    assert!(stream.mapper.take_latest().is_empty());
}

#[tokio::test]
async fn a_report_entered_in_error_or_redated_recomputes_its_patients_latest() {
    for changed in [
        report(REPORT, TAKEN_AT, "entered-in-error"),
        report(REPORT, LATER, "final"),
    ] {
        let mut stream = Stream::seeded().await;
        stream.update(Table::Reports, changed).await;
        let work = stream.mapper.take_latest();
        assert_eq!(work.dirty.get(PATIENT), Some(&Dirty::All));
    }
}

#[tokio::test]
async fn a_report_moved_to_another_patient_recomputes_both() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Patients, patient(OTHER_PATIENT, "Grace Hopper"))
        .await;
    let moved = with(
        report(REPORT, TAKEN_AT, "final"),
        "patient_id",
        Cell::Text(OTHER_PATIENT),
    );
    let old_key = vec![
        ("id", Cell::Text(REPORT)),
        ("patient_id", Cell::Text(PATIENT)),
    ];
    stream.update_key(Table::Reports, old_key, moved).await;
    // The document moves (measurements and all), then its fields are written under the new
    // patient: no statement changes the patient of the document it addresses.
    let writes = stream.writes();
    assert_eq!(
        writes[0],
        Write::Move {
            id: REPORT.to_string(),
            from: PATIENT.to_string(),
            to: OTHER_PATIENT.to_string(),
            lsn: writes[0].lsn(),
        }
    );
    let set = update_of(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": OTHER_PATIENT },
    )
    .get_document("$set")
    .unwrap();
    assert_eq!(set.get_str("patient_id").ok(), Some(OTHER_PATIENT));
    assert!(!writes_to(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT }
    ));
    let work = stream.mapper.take_latest();
    assert_eq!(work.dirty.get(PATIENT), Some(&Dirty::All));
    assert_eq!(work.dirty.get(OTHER_PATIENT), Some(&Dirty::All));
}

#[tokio::test]
async fn a_deleted_report_is_removed_and_its_patients_latest_recomputed() {
    let mut stream = Stream::seeded().await;
    stream
        .delete(
            Table::Reports,
            vec![
                ("id", Cell::Text(REPORT)),
                ("patient_id", Cell::Text(PATIENT)),
            ],
        )
        .await;
    let writes = stream.writes();
    assert!(deletes(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT }
    ));
    assert_eq!(
        stream.mapper.take_latest().dirty.get(PATIENT),
        Some(&Dirty::All)
    );
}

#[tokio::test]
async fn a_report_after_a_restart_is_joined_from_the_stored_lookups() {
    use crate::mapping::lookups::MemoryStore;
    use read_model::{LOOKUP_CHECKUPS, LOOKUP_CLINICS, LOOKUP_DEVICES, PATIENTS};

    let mut store = MemoryStore::default();
    store.insert(
        LOOKUP_CLINICS,
        super::CLINIC,
        doc! { "name": "North Clinic" },
    );
    store.insert(
        LOOKUP_DEVICES,
        super::DEVICE,
        doc! { "clinic_id": super::CLINIC, "label": "tablet-1" },
    );
    store.insert(
        LOOKUP_CHECKUPS,
        CHECKUP,
        doc! { "patient_id": PATIENT, "clinic_id": super::CLINIC, "device_id": super::DEVICE },
    );
    store.insert(
        PATIENTS,
        PATIENT,
        doc! { "_id": PATIENT, "full_name": "Ada Lovelace", "email": "ada@example.org" },
    );
    let mut stream = Stream::over(store);
    let mapped = stream
        .insert(Table::Reports, report(REPORT, TAKEN_AT, "final"))
        .await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let set = set_of(&writes, REPORTS, REPORT);
    assert_eq!(
        set.get_document("patient").unwrap(),
        &doc! { "id": PATIENT, "full_name": "Ada Lovelace" }
    );
    assert_eq!(
        set.get_document("checkup")
            .unwrap()
            .get_str("device_label")
            .unwrap(),
        "tablet-1"
    );
}

#[tokio::test]
async fn a_change_of_an_unannounced_relation_is_a_dead_letter_of_that_relation() {
    let mut stream = Stream::seeded().await;
    let mapped = stream
        .send(Message::Insert(Insert {
            relation_id: 99,
            new: TupleData(Vec::new()),
        }))
        .await;
    let letter = mapped.dead_letter.expect("a dead letter");
    assert_eq!(letter.origin, Origin::UnknownRelation(99));
    assert_eq!(letter.origin.label(), "relation 99");
}

#[tokio::test]
async fn a_table_without_a_column_the_mapping_reads_dead_letters_upserts_but_applies_deletes() {
    let mut stream = Stream::seeded().await;
    let mut relation = super::relation(Table::Reports);
    relation.columns.retain(|column| column.name != "status");
    stream.mapper.relation(relation.clone());
    let mapped = stream
        .send(Message::Update(Update {
            relation_id: relation.id,
            old: None,
            new: super::tuple(&relation, &report(REPORT, TAKEN_AT, "final")),
        }))
        .await;
    let letter = mapped.dead_letter.expect("a dead letter");
    assert!(
        letter
            .error
            .starts_with("column status is not in the published table"),
        "{}",
        letter.error
    );
    let key = [
        ("id", Cell::Text(REPORT)),
        ("patient_id", Cell::Text(PATIENT)),
    ];
    let mapped = stream
        .send(Message::Delete(Delete {
            relation_id: relation.id,
            old: OldTuple::Key(super::tuple(&relation, &key)),
        }))
        .await;
    assert_eq!(mapped.dead_letter, None);
    assert!(deletes(
        &stream.writes(),
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT }
    ));
}
