//! Measurements: `measurements.<code>` of the report (whole, or the fields an update carries),
//! and what they mean for `latest`.

use mongodb::bson::doc;
use read_model::{PATIENTS, REPORTS};

use super::{
    Cell, LATER, LATER_REPORT, PATIENT, REPORT, Stream, report, systolic, update_of, with,
};
use crate::decode::{Message, OldTuple, Update};
use crate::mapping::{Dirty, Table};

#[tokio::test]
async fn an_inserted_measurement_is_set_in_its_report_and_proposed_for_latest() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    let writes = stream.writes();
    let set = update_of(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT },
    )
    .get_document("$set")
    .unwrap();
    let measurement = set.get_document("measurements.8480-6").unwrap();
    assert_eq!(measurement.get_f64("value").unwrap(), 120.0);
    assert_eq!(measurement.get_str("unit").unwrap(), "mm[Hg]");
    assert_eq!(
        measurement.get_str("name").unwrap(),
        "Systolic blood pressure"
    );
    let work = stream.mapper.take_latest();
    assert!(work.dirty.is_empty());
    let candidate = &work.candidates[PATIENT]["8480-6"];
    assert_eq!(candidate.report_id, REPORT);
    assert_eq!(candidate.entry.get_f64("value").unwrap(), 120.0);
}

#[tokio::test]
async fn the_newest_measurement_of_a_batch_is_the_one_proposed() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Reports, report(LATER_REPORT, LATER, "final"))
        .await;
    stream
        .insert(Table::Measurements, systolic(LATER_REPORT, "130"))
        .await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    let work = stream.mapper.take_latest();
    assert_eq!(work.candidates[PATIENT]["8480-6"].report_id, LATER_REPORT);
}

#[tokio::test]
async fn a_measurement_of_a_report_entered_in_error_is_never_proposed() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(
            Table::Reports,
            report(LATER_REPORT, LATER, "entered-in-error"),
        )
        .await;
    stream
        .insert(Table::Measurements, systolic(LATER_REPORT, "130"))
        .await;
    assert!(stream.mapper.take_latest().candidates.is_empty());
}

#[tokio::test]
async fn an_amended_or_deleted_measurement_recomputes_its_code() {
    let mut stream = Stream::seeded().await;
    stream
        .update(Table::Measurements, systolic(REPORT, "125"))
        .await;
    assert_eq!(
        stream.mapper.take_latest().dirty.get(PATIENT),
        Some(&Dirty::one("8480-6".to_string()))
    );
    stream
        .delete(
            Table::Measurements,
            vec![
                ("report_id", Cell::Text(REPORT)),
                ("code", Cell::Text("8480-6")),
            ],
        )
        .await;
    let writes = stream.writes();
    let unset = update_of(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT },
    )
    .get_document("$unset")
    .unwrap();
    assert!(unset.contains_key("measurements.8480-6"));
    assert_eq!(
        stream.mapper.take_latest().dirty.get(PATIENT),
        Some(&Dirty::one("8480-6".to_string()))
    );
}

#[tokio::test]
async fn a_measurement_of_an_unknown_report_is_a_dead_letter() {
    let mut stream = Stream::seeded().await;
    let mapped = stream
        .insert(Table::Measurements, systolic(LATER_REPORT, "130"))
        .await;
    let letter = mapped.dead_letter.expect("an orphan is a dead letter");
    assert_eq!(letter.error, format!("report {LATER_REPORT} is unknown"));
}

#[tokio::test]
async fn a_code_that_cannot_be_a_document_key_is_a_dead_letter() {
    let mut stream = Stream::seeded().await;
    let mapped = stream
        .insert(
            Table::Measurements,
            with(systolic(REPORT, "120"), "code", Cell::Text("$where")),
        )
        .await;
    let letter = mapped.dead_letter.expect("a dead letter");
    assert!(letter.error.starts_with("column code:"), "{}", letter.error);
}

#[tokio::test]
async fn truncating_measurements_empties_every_report_and_every_latest() {
    let mut stream = Stream::seeded().await;
    stream.truncate(Table::Measurements).await;
    let writes = stream.writes();
    assert_eq!(
        update_of(&writes, REPORTS, &doc! {}),
        &doc! { "$set": { "measurements": {} } }
    );
    assert_eq!(
        update_of(&writes, PATIENTS, &doc! {}),
        &doc! { "$unset": { "latest": "" } }
    );
}

#[tokio::test]
async fn a_measurement_update_with_unchanged_toast_names_sets_only_the_fields_it_carries() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    stream.writes();
    stream.mapper.take_latest();
    let toasted = with(
        with(systolic(REPORT, "125"), "display_name", Cell::Toast),
        "unit",
        Cell::Toast,
    );
    let mapped = stream.update(Table::Measurements, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let set = update_of(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT },
    )
    .get_document("$set")
    .unwrap();
    assert!(!set.contains_key("measurements.8480-6"), "{set}");
    assert!(!set.contains_key("measurements.8480-6.name"), "{set}");
    assert!(!set.contains_key("measurements.8480-6.unit"), "{set}");
    assert_eq!(set.get_f64("measurements.8480-6.value").unwrap(), 125.0);
    assert_eq!(set.get_str("measurements.8480-6.flag").unwrap(), "N");
    assert_eq!(
        set.get_f64("measurements.8480-6.reference_high").unwrap(),
        120.0
    );
    assert_eq!(
        stream.mapper.take_latest().dirty.get(PATIENT),
        Some(&Dirty::one("8480-6".to_string()))
    );
}

#[tokio::test]
async fn a_measurement_update_whose_toasted_code_comes_in_the_old_key_is_applied() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    stream.writes();
    // PostgreSQL logs the old key when a key column is stored out of line.
    let relation = super::relation(Table::Measurements);
    let key = [
        ("report_id", Cell::Text(REPORT)),
        ("code", Cell::Text("8480-6")),
    ];
    let mapped = stream
        .send(Message::Update(Update {
            relation_id: relation.id,
            old: Some(OldTuple::Key(super::tuple(&relation, &key))),
            new: super::tuple(
                &relation,
                &with(systolic(REPORT, "125"), "code", Cell::Toast),
            ),
        }))
        .await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let set = update_of(
        &writes,
        REPORTS,
        &doc! { "_id": REPORT, "patient_id": PATIENT },
    )
    .get_document("$set")
    .unwrap();
    let measurement = set.get_document("measurements.8480-6").unwrap();
    assert_eq!(measurement.get_str("code").unwrap(), "8480-6");
    assert_eq!(measurement.get_f64("value").unwrap(), 125.0);
}
