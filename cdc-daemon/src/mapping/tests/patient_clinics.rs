//! Patient–clinic links: the lookup, the record number in the reports at that clinic, unchanged
//! TOAST, deletes.

use mongodb::bson::{Bson, doc};
use read_model::{LOOKUP_PATIENT_CLINICS, REPORTS};

use super::{
    CHECKUP, CLINIC, Cell, PATIENT, REPORT, Stream, Values, checkup, deletes, report, set_of,
    update_of, with, writes_to,
};
use crate::mapping::Table;
use crate::sink::Write;

const LINK: &str = "33333333-3333-4333-8333-333333333333/11111111-1111-4111-8111-111111111111";

fn link(number: &'static str) -> Values {
    use super::Cell::Text;
    vec![
        ("patient_id", Text(PATIENT)),
        ("clinic_id", Text(CLINIC)),
        ("external_ref", Text(number)),
    ]
}

/// The record number a write to the reports of [`PATIENT`] at [`CLINIC`] sets.
fn fanned_out(writes: &[Write]) -> Bson {
    let filter = doc! { "patient_id": PATIENT, "checkup.clinic_id": CLINIC };
    update_of(writes, REPORTS, &filter)
        .get_document("$set")
        .unwrap()
        .get("checkup.clinic_record_number")
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_link_becomes_its_lookup_and_its_record_number_reaches_the_clinics_reports() {
    let mut stream = Stream::seeded().await;
    stream.insert(Table::PatientClinics, link("MRN-7")).await;
    let writes = stream.writes();
    let set = set_of(&writes, LOOKUP_PATIENT_CLINICS, LINK);
    assert_eq!(set.get_str("external_ref").unwrap(), "MRN-7");
    assert_eq!(fanned_out(&writes), Bson::from("MRN-7"));

    stream.update(Table::PatientClinics, link("MRN-8")).await;
    assert_eq!(fanned_out(&stream.writes()), Bson::from("MRN-8"));

    // A report mapped after the link embeds the number.
    stream
        .update(Table::Reports, report(REPORT, super::TAKEN_AT, "final"))
        .await;
    let writes = stream.writes();
    let checkup = set_of(&writes, REPORTS, REPORT)
        .get_document("checkup")
        .unwrap();
    assert_eq!(checkup.get_str("clinic_record_number").unwrap(), "MRN-8");
}

#[tokio::test]
async fn an_unchanged_update_fans_out_nothing_and_a_delete_clears_the_number() {
    let mut stream = Stream::seeded().await;
    stream.insert(Table::PatientClinics, link("MRN-7")).await;
    stream.writes();
    stream.update(Table::PatientClinics, link("MRN-7")).await;
    let writes = stream.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");

    stream.delete(Table::PatientClinics, link("MRN-7")).await;
    let writes = stream.writes();
    assert!(deletes(
        &writes,
        LOOKUP_PATIENT_CLINICS,
        &doc! { "_id": LINK }
    ));
    assert_eq!(fanned_out(&writes), Bson::Null);
}

#[tokio::test]
async fn a_report_of_an_unlinked_clinic_shows_no_record_number() {
    let mut stream = Stream::seeded().await;
    stream
        .update(Table::Reports, report(REPORT, super::TAKEN_AT, "final"))
        .await;
    let writes = stream.writes();
    let checkup = set_of(&writes, REPORTS, REPORT)
        .get_document("checkup")
        .unwrap();
    assert_eq!(checkup.get("clinic_record_number"), Some(&Bson::Null));
}

#[tokio::test]
async fn a_link_update_whose_record_number_is_unchanged_toast_keeps_the_number_everywhere() {
    let mut stream = Stream::seeded().await;
    stream.insert(Table::PatientClinics, link("MRN-7")).await;
    stream.writes();
    let toasted = with(link("MRN-7"), "external_ref", Cell::Toast);
    let mapped = stream.update(Table::PatientClinics, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    let filter = doc! { "patient_id": PATIENT, "checkup.clinic_id": CLINIC };
    assert!(!writes_to(&writes, REPORTS, &filter), "{writes:#?}");
    let lookup = doc! { "_id": LINK };
    assert!(
        !writes_to(&writes, LOOKUP_PATIENT_CLINICS, &lookup)
            || !set_of(&writes, LOOKUP_PATIENT_CLINICS, LINK).contains_key("external_ref"),
        "{writes:#?}"
    );
    // The number stays known: the checkup rewritten in the reports still shows it.
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
    assert_eq!(embedded.get_str("clinic_record_number").unwrap(), "MRN-7");
}
