//! The `latest` settlement after a batch: candidates against the stored values, and
//! recomputation from the stored reports.

use std::collections::BTreeMap;

use mongodb::bson::{DateTime, Document, doc};
use read_model::PATIENTS;

use super::{LATER, LATER_REPORT, PATIENT, REPORT, Stream, TAKEN_AT, report, systolic, update_of};
use crate::mapping::documents::{ReportValues, latest_entry};
use crate::mapping::latest::{raised, recomputed};
use crate::mapping::{Dirty, Table};
use crate::sink::Write;

/// 09:05 and 10:05 UTC on 2026-11-27, when [`REPORT`] and [`LATER_REPORT`] were taken.
const EARLY: i64 = 1_795_770_300_000;
const LATE: i64 = 1_795_773_900_000;

/// A stored `latest.8480-6` of `report`, taken at `millis`, valued `value`.
fn stored_entry(report: &str, millis: i64, value: f64) -> Document {
    latest_entry(
        &doc! { "value": value, "unit": "mm[Hg]", "name": "Systolic blood pressure", "flag": "N" },
        report,
        DateTime::from_millis(millis),
    )
}

fn stored_patient(latest: Document) -> BTreeMap<String, Document> {
    BTreeMap::from([(PATIENT.to_string(), latest)])
}

#[tokio::test]
async fn a_candidate_newer_than_the_stored_value_raises_latest() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Reports, report(LATER_REPORT, LATER, "final"))
        .await;
    stream
        .insert(Table::Measurements, systolic(LATER_REPORT, "130"))
        .await;
    let work = stream.mapper.take_latest();
    let stored = stored_patient(doc! { "8480-6": stored_entry(REPORT, EARLY, 120.0) });
    let writes = raised(&work, &stored);
    let set = update_of(&writes, PATIENTS, &doc! { "_id": PATIENT })
        .get_document("$set")
        .unwrap();
    let entry = set.get_document("latest.8480-6").unwrap();
    assert_eq!(entry.get_str("report_id").unwrap(), LATER_REPORT);
    assert_eq!(entry.get_f64("value").unwrap(), 130.0);
}

#[tokio::test]
async fn a_candidate_older_than_the_stored_value_changes_nothing() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    let work = stream.mapper.take_latest();
    let stored = stored_patient(doc! { "8480-6": stored_entry(LATER_REPORT, LATE, 130.0) });
    assert_eq!(raised(&work, &stored), Vec::<Write>::new());
}

#[tokio::test]
async fn a_candidate_for_a_patient_without_a_document_changes_nothing() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    let work = stream.mapper.take_latest();
    assert_eq!(raised(&work, &BTreeMap::new()), Vec::<Write>::new());
}

#[tokio::test]
async fn a_candidate_of_a_code_being_recomputed_is_left_to_the_recomputation() {
    let mut stream = Stream::seeded().await;
    stream
        .insert(Table::Measurements, systolic(REPORT, "120"))
        .await;
    stream
        .update(Table::Reports, report(REPORT, TAKEN_AT, "amended"))
        .await;
    stream
        .update(Table::Reports, report(REPORT, LATER, "amended"))
        .await;
    let work = stream.mapper.take_latest();
    assert_eq!(work.dirty.get(PATIENT), Some(&Dirty::All));
    let stored = stored_patient(Document::new());
    assert_eq!(raised(&work, &stored), Vec::<Write>::new());
}

fn stored_reports() -> BTreeMap<String, Vec<ReportValues>> {
    let measurements = |value: f64| {
        doc! { "8480-6": { "code": "8480-6", "value": value, "unit": "mm[Hg]", "name": "Systolic blood pressure", "flag": "N" } }
    };
    BTreeMap::from([(
        PATIENT.to_string(),
        vec![
            ReportValues {
                report_id: REPORT.to_string(),
                taken_at: DateTime::from_millis(EARLY),
                entered_in_error: false,
                measurements: measurements(120.0),
            },
            ReportValues {
                report_id: LATER_REPORT.to_string(),
                taken_at: DateTime::from_millis(LATE),
                entered_in_error: true,
                measurements: measurements(180.0),
            },
        ],
    )])
}

#[test]
fn recomputing_every_code_takes_the_newest_report_not_entered_in_error() {
    let dirty = BTreeMap::from([(PATIENT.to_string(), Dirty::All)]);
    let writes = recomputed(&dirty, &stored_reports());
    assert_eq!(
        update_of(&writes, PATIENTS, &doc! { "_id": PATIENT }),
        &doc! { "$set": { "latest": { "8480-6": stored_entry(REPORT, EARLY, 120.0) } } }
    );
}

#[test]
fn recomputing_a_code_no_report_has_any_more_unsets_it() {
    let dirty = BTreeMap::from([(
        PATIENT.to_string(),
        Dirty::Codes(["8480-6".to_string(), "8462-4".to_string()].into()),
    )]);
    let writes = recomputed(&dirty, &stored_reports());
    assert_eq!(
        update_of(&writes, PATIENTS, &doc! { "_id": PATIENT }),
        &doc! {
            "$set": { "latest.8480-6": stored_entry(REPORT, EARLY, 120.0) },
            "$unset": { "latest.8462-4": "" },
        }
    );
}

#[test]
fn recomputing_a_patient_without_reports_empties_latest() {
    let dirty = BTreeMap::from([(PATIENT.to_string(), Dirty::All)]);
    let writes = recomputed(&dirty, &BTreeMap::new());
    assert_eq!(
        update_of(&writes, PATIENTS, &doc! { "_id": PATIENT }),
        &doc! { "$set": { "latest": {} } }
    );
}
