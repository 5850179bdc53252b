//! `patient_clinics` → the link's lookup document and `checkup.clinic_record_number` of the
//! patient's reports at that clinic.
//!
//! A patient has one record number per clinic, so a report shows the one of the clinic its
//! checkup was taken at. A link written or changed fans out to the reports of that patient at
//! that clinic (inserts too: the migration back-fills links for reports that already exist); a
//! removed link clears the number. Reports mapped later read the number from the lookup.

use mongodb::bson::{Bson, Document, doc};
use read_model::{LOOKUP_PATIENT_CLINICS, REPORTS};

use super::lookups::{LookupStore, Lookups, link_key};
use super::{MapError, Operation, documents};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// Maps an inserted or updated link.
pub(super) async fn upsert<S: LookupStore>(
    lookups: &mut Lookups<S>,
    operation: Operation,
    row: &Row,
    cdc: Document,
    batch: &mut Batch,
) -> Result<(), MapError> {
    let patient_id = documents::uuid(row, "patient_id")?.to_string();
    let clinic_id = documents::uuid(row, "clinic_id")?.to_string();
    let number = documents::text(row, "external_ref")?;
    let key = link_key(&patient_id, &clinic_id);
    let previous = match operation {
        Operation::Update => lookups.record_number(&key).await?,
        _ => None,
    };
    batch.push(Write::upsert(
        LOOKUP_PATIENT_CLINICS,
        key.as_str(),
        doc! { "patient_id": &patient_id, "clinic_id": &clinic_id, "external_ref": number },
    ));
    lookups.set_record_number(&key, number);
    if previous.as_deref() != Some(number) {
        batch.push(fan_out(&patient_id, &clinic_id, Bson::from(number), cdc));
    }
    Ok(())
}

/// Maps a deleted link (its key is the replica identity).
pub(super) fn delete<S: LookupStore>(
    lookups: &mut Lookups<S>,
    key: &Row,
    cdc: Document,
    batch: &mut Batch,
) -> Result<(), MapError> {
    let patient_id = documents::uuid(key, "patient_id")?.to_string();
    let clinic_id = documents::uuid(key, "clinic_id")?.to_string();
    let key = link_key(&patient_id, &clinic_id);
    batch.push(Write::delete(LOOKUP_PATIENT_CLINICS, key.as_str()));
    lookups.forget(&key);
    batch.push(fan_out(&patient_id, &clinic_id, Bson::Null, cdc));
    Ok(())
}

/// The writes of `TRUNCATE patient_clinics`: no report shows a record number any more.
pub(super) fn truncate(batch: &mut Batch) {
    batch.push(Write::delete_many(LOOKUP_PATIENT_CLINICS, doc! {}));
    batch.push(Write::update_many(
        REPORTS,
        doc! {},
        doc! { "$set": { "checkup.clinic_record_number": Bson::Null } },
    ));
}

fn fan_out(patient_id: &str, clinic_id: &str, number: Bson, cdc: Document) -> Write {
    Write::update_many(
        REPORTS,
        doc! { "patient_id": patient_id, "checkup.clinic_id": clinic_id },
        doc! { "$set": { "checkup.clinic_record_number": number, "_cdc": cdc } },
    )
}
