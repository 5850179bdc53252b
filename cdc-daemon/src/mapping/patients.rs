//! `public.patients` → the patient document (demographics; `latest` is settled separately). A
//! change of what reports embed (the patient snapshot) fans out to every report of the patient;
//! a delete removes the patient with their reports. An update that does not carry a value (an
//! unchanged TOASTed one) leaves it as the patient document and the reports have it.

use mongodb::bson::{Document, doc};
use read_model::{PATIENTS, REPORTS};

use super::lookups::LookupStore;
use super::{ColumnTypes, DATE, ID, MapError, Mapper, Operation, TEXTUAL, Transaction, documents};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[
    ("id", ID),
    ("external_ref", TEXTUAL),
    ("full_name", TEXTUAL),
    ("birth_date", DATE),
    ("sex", TEXTUAL),
    ("phone", TEXTUAL),
    ("email", TEXTUAL),
];

impl<S: LookupStore> Mapper<S> {
    /// Writes the patient document; an update that changes the snapshot reports embed
    /// rewrites it in every report of the patient (only the fields the update carries, when it
    /// leaves some out).
    pub(super) async fn upsert_patient(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(row, "id")?.to_string();
        let previous = match operation {
            Operation::Update => self.lookups.patient(&id).await?,
            _ => None,
        };
        let cdc = transaction.cdc();
        let mut fields = documents::patient_fields(row);
        fields.insert("_cdc", cdc.clone());
        batch.push(Write::upsert(PATIENTS, id.as_str(), fields));
        let sent = documents::patient_snapshot_sent(row)?;
        // What the store has once the batch is written: the sent fields over the known ones.
        let mut snapshot = previous.clone().unwrap_or_default();
        snapshot.extend(sent.fields.clone());
        self.lookups.set_patient(&id, snapshot.clone());
        if operation == Operation::Update && previous.as_ref() != Some(&snapshot) {
            let mut set = sent.set_at("patient");
            set.insert("_cdc", cdc);
            batch.push(Write::update_many(
                REPORTS,
                doc! { "patient_id": &id },
                doc! { "$set": set },
            ));
        }
        Ok(())
    }

    /// Removes the patient document and the patient's reports; nothing is left to settle.
    pub(super) fn delete_patient(
        &mut self,
        key: &Row<'_>,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(key, "id")?.to_string();
        batch.push(Write::delete(PATIENTS, id.as_str()));
        batch.push(Write::delete_many(REPORTS, doc! { "patient_id": &id }));
        self.lookups.forget(&id);
        self.latest.dirty.remove(&id);
        self.latest.candidates.remove(&id);
        Ok(())
    }
}

/// Removes every patient and every report.
pub(super) fn truncate_patients(batch: &mut Batch) {
    batch.push(Write::delete_many(PATIENTS, Document::new()));
    batch.push(Write::delete_many(REPORTS, Document::new()));
}
