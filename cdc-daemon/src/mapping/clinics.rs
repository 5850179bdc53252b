//! `public.clinics` → `lookup_clinics`, the clinic names that reports embed. A rename fans out
//! to `checkup.clinic_name` of every report of the clinic; an update that does not carry the
//! name (an unchanged TOASTed value) changes nothing.

use mongodb::bson::{Document, doc};
use read_model::{LOOKUP_CLINICS, REPORTS};

use super::lookups::LookupStore;
use super::{ColumnTypes, ID, MapError, Mapper, Operation, TEXTUAL, Transaction, documents};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[("id", ID), ("name", TEXTUAL)];

impl<S: LookupStore> Mapper<S> {
    /// Writes the clinic's lookup; an update that renames it renames it in its reports too.
    pub(super) async fn upsert_clinic(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(row, "id")?.to_string();
        // Not sent (unchanged TOAST): nothing mapped changed.
        let Some(name) = documents::sent_text(row, "name")? else {
            return Ok(());
        };
        let previous = match operation {
            Operation::Update => self.lookups.clinic_name(&id).await?,
            _ => None,
        };
        batch.push(Write::upsert(
            LOOKUP_CLINICS,
            id.as_str(),
            doc! { "name": name },
        ));
        self.lookups.set_clinic(&id, name);
        if operation == Operation::Update && previous.as_deref() != Some(name) {
            batch.push(Write::update_many(
                REPORTS,
                doc! { "checkup.clinic_id": &id },
                doc! { "$set": { "checkup.clinic_name": name, "_cdc": transaction.cdc() } },
            ));
        }
        Ok(())
    }

    /// Removes the clinic's lookup (its reports keep the name they embed).
    pub(super) fn delete_clinic(
        &mut self,
        key: &Row<'_>,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(key, "id")?.to_string();
        batch.push(Write::delete(LOOKUP_CLINICS, id.as_str()));
        self.lookups.forget(&id);
        Ok(())
    }
}

/// Empties the clinic lookups.
pub(super) fn truncate_clinics(batch: &mut Batch) {
    batch.push(Write::delete_many(LOOKUP_CLINICS, Document::new()));
}
