//! `public.patient_clinics` → `lookup_patient_clinics` (a patient's record number at one
//! clinic) and `checkup.clinic_record_number` of the patient's reports at that clinic.
//!
//! A patient has one record number per clinic, so a report shows the one of the clinic its
//! checkup was taken at. A link written or changed fans out to the reports of that patient at
//! that clinic (inserts too: the migration back-fills links for reports that already exist); a
//! removed link clears the number. Reports mapped later read the number from the lookup. An
//! update that does not carry the number (an unchanged TOASTed value) changes nothing.

use mongodb::bson::{Bson, Document, doc};
use read_model::{LOOKUP_PATIENT_CLINICS, REPORTS};

use super::lookups::{LookupStore, link_key};
use super::{ColumnTypes, ID, MapError, Mapper, Operation, TEXTUAL, Transaction, documents};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[
    ("patient_id", ID),
    ("clinic_id", ID),
    ("external_ref", TEXTUAL),
];

impl<S: LookupStore> Mapper<S> {
    /// Writes the link's lookup; a new or changed record number reaches the patient's reports
    /// at the clinic.
    pub(super) async fn upsert_patient_clinic(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let patient_id = documents::uuid(row, "patient_id")?.to_string();
        let clinic_id = documents::uuid(row, "clinic_id")?.to_string();
        // Not sent (unchanged TOAST): nothing mapped changed.
        let Some(number) = documents::sent_text(row, "external_ref")? else {
            return Ok(());
        };
        let key = link_key(&patient_id, &clinic_id);
        let previous = match operation {
            Operation::Update => self.lookups.record_number(&key).await?,
            _ => None,
        };
        batch.push(Write::upsert(
            LOOKUP_PATIENT_CLINICS,
            key.as_str(),
            doc! { "patient_id": &patient_id, "clinic_id": &clinic_id, "external_ref": number },
        ));
        self.lookups.set_record_number(&key, number);
        if previous.as_deref() != Some(number) {
            batch.push(fan_out(
                &patient_id,
                &clinic_id,
                Bson::from(number),
                transaction.cdc(),
            ));
        }
        Ok(())
    }

    /// Removes the link's lookup (its key is the replica identity); the patient's reports at
    /// the clinic show no record number any more.
    pub(super) fn delete_patient_clinic(
        &mut self,
        key: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let patient_id = documents::uuid(key, "patient_id")?.to_string();
        let clinic_id = documents::uuid(key, "clinic_id")?.to_string();
        let key = link_key(&patient_id, &clinic_id);
        batch.push(Write::delete(LOOKUP_PATIENT_CLINICS, key.as_str()));
        self.lookups.forget(&key);
        batch.push(fan_out(
            &patient_id,
            &clinic_id,
            Bson::Null,
            transaction.cdc(),
        ));
        Ok(())
    }
}

/// Empties the link lookups; no report shows a record number any more.
pub(super) fn truncate_patient_clinics(batch: &mut Batch) {
    batch.push(Write::delete_many(LOOKUP_PATIENT_CLINICS, Document::new()));
    batch.push(Write::update_many(
        REPORTS,
        Document::new(),
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
