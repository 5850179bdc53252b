//! Clinics and devices: lookups, renames fanning out to reports, unchanged TOAST, deletes,
//! truncates.

use mongodb::bson::doc;
use read_model::{LOOKUP_CLINICS, LOOKUP_DEVICES, REPORTS};

use super::{
    CHECKUP, CLINIC, Cell, DEVICE, PATIENT, Stream, checkup, clinic, deletes, device, set_of,
    update_of, with, writes_to,
};
use crate::mapping::{Operation, Table};

#[tokio::test]
async fn an_inserted_clinic_becomes_its_lookup_and_touches_no_report() {
    let mut stream = Stream::new();
    let mapped = stream.insert(Table::Clinics, clinic("North Clinic")).await;
    assert_eq!(mapped.change, Some((Table::Clinics, Operation::Insert)));
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, LOOKUP_CLINICS, CLINIC),
        &doc! { "name": "North Clinic" }
    );
    assert_eq!(writes.len(), 1, "{writes:#?}");
}

#[tokio::test]
async fn a_renamed_clinic_is_renamed_in_every_report_of_it() {
    let mut stream = Stream::seeded().await;
    stream.update(Table::Clinics, clinic("South Clinic")).await;
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, LOOKUP_CLINICS, CLINIC),
        &doc! { "name": "South Clinic" }
    );
    let fan_out = update_of(&writes, REPORTS, &doc! { "checkup.clinic_id": CLINIC });
    let set = fan_out.get_document("$set").unwrap();
    assert_eq!(set.get_str("checkup.clinic_name").unwrap(), "South Clinic");
    assert!(set.contains_key("_cdc"));
}

#[tokio::test]
async fn a_clinic_updated_without_a_new_name_leaves_the_reports_alone() {
    let mut stream = Stream::seeded().await;
    stream.update(Table::Clinics, clinic("North Clinic")).await;
    let writes = stream.writes();
    assert!(!writes_to(
        &writes,
        REPORTS,
        &doc! { "checkup.clinic_id": CLINIC }
    ));
}

#[tokio::test]
async fn a_relabelled_device_is_relabelled_in_every_report_taken_with_it() {
    let mut stream = Stream::seeded().await;
    stream.update(Table::Devices, device("tablet-2")).await;
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, LOOKUP_DEVICES, DEVICE),
        &doc! { "clinic_id": CLINIC, "label": "tablet-2" }
    );
    let fan_out = update_of(&writes, REPORTS, &doc! { "checkup.device_id": DEVICE });
    assert_eq!(
        fan_out
            .get_document("$set")
            .unwrap()
            .get_str("checkup.device_label")
            .unwrap(),
        "tablet-2"
    );
}

#[tokio::test]
async fn deleting_a_clinic_or_device_removes_only_its_lookup() {
    let mut stream = Stream::seeded().await;
    stream
        .delete(Table::Clinics, vec![("id", Cell::Text(CLINIC))])
        .await;
    stream
        .delete(Table::Devices, vec![("id", Cell::Text(DEVICE))])
        .await;
    let writes = stream.writes();
    assert!(deletes(&writes, LOOKUP_CLINICS, &doc! { "_id": CLINIC }));
    assert!(deletes(&writes, LOOKUP_DEVICES, &doc! { "_id": DEVICE }));
    assert_eq!(writes.len(), 2, "{writes:#?}");
}

#[tokio::test]
async fn a_rename_after_a_restart_compares_with_the_stored_name() {
    let mut store = crate::mapping::lookups::MemoryStore::default();
    store.insert(LOOKUP_CLINICS, CLINIC, doc! { "name": "North Clinic" });
    let mut stream = Stream::over(store);
    stream.update(Table::Clinics, clinic("North Clinic")).await;
    let unchanged = stream.writes();
    assert!(!writes_to(
        &unchanged,
        REPORTS,
        &doc! { "checkup.clinic_id": CLINIC }
    ));
    stream.update(Table::Clinics, clinic("East Clinic")).await;
    let renamed = stream.writes();
    assert!(writes_to(
        &renamed,
        REPORTS,
        &doc! { "checkup.clinic_id": CLINIC }
    ));
}

#[tokio::test]
async fn truncating_clinics_empties_their_lookups() {
    let mut stream = Stream::seeded().await;
    stream.truncate(Table::Clinics).await;
    let writes = stream.writes();
    assert!(deletes(&writes, LOOKUP_CLINICS, &doc! {}));
}

#[tokio::test]
async fn a_clinic_update_whose_name_is_unchanged_toast_keeps_the_name_everywhere() {
    let mut stream = Stream::seeded().await;
    let toasted = with(clinic("North Clinic"), "name", Cell::Toast);
    let mapped = stream.update(Table::Clinics, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    assert!(
        !writes_to(&writes, LOOKUP_CLINICS, &doc! { "_id": CLINIC }),
        "{writes:#?}"
    );
    assert!(
        !writes_to(&writes, REPORTS, &doc! { "checkup.clinic_id": CLINIC }),
        "{writes:#?}"
    );
    // The name stays known: a checkup rewritten afterwards embeds it.
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
    assert_eq!(embedded.get_str("clinic_name").unwrap(), "North Clinic");
}

#[tokio::test]
async fn a_device_update_whose_label_is_unchanged_toast_keeps_the_label_everywhere() {
    let mut stream = Stream::seeded().await;
    let toasted = with(device("tablet-1"), "label", Cell::Toast);
    let mapped = stream.update(Table::Devices, toasted).await;
    assert_eq!(mapped.dead_letter, None);
    let writes = stream.writes();
    assert_eq!(
        set_of(&writes, LOOKUP_DEVICES, DEVICE),
        &doc! { "clinic_id": CLINIC }
    );
    assert!(
        !writes_to(&writes, REPORTS, &doc! { "checkup.device_id": DEVICE }),
        "{writes:#?}"
    );
    assert_eq!(
        stream.mapper.lookups.device_label(DEVICE).await.unwrap(),
        Some("tablet-1".to_string())
    );
}
