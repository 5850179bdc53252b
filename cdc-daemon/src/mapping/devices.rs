//! `public.devices` → `lookup_devices`, the tablet labels that reports embed. A relabel fans
//! out to `checkup.device_label` of every report taken with the device; an update that does not
//! carry the label (an unchanged TOASTed value) keeps it everywhere.

use mongodb::bson::{Document, doc};
use read_model::{LOOKUP_DEVICES, REPORTS};

use super::lookups::LookupStore;
use super::{ColumnTypes, ID, MapError, Mapper, Operation, TEXTUAL, Transaction, documents};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[("id", ID), ("clinic_id", ID), ("label", TEXTUAL)];

impl<S: LookupStore> Mapper<S> {
    /// Writes the device's lookup; an update that relabels it relabels it in its reports too.
    pub(super) async fn upsert_device(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(row, "id")?.to_string();
        let clinic_id = documents::uuid(row, "clinic_id")?.to_string();
        let label = documents::sent_text(row, "label")?;
        let mut fields = doc! { "clinic_id": clinic_id };
        if let Some(label) = label {
            fields.insert("label", label);
        }
        batch.push(Write::upsert(LOOKUP_DEVICES, id.as_str(), fields));
        // Not sent (unchanged TOAST): the cached label and the reports' stay.
        let Some(label) = label else {
            return Ok(());
        };
        let previous = match operation {
            Operation::Update => self.lookups.device_label(&id).await?,
            _ => None,
        };
        self.lookups.set_device(&id, label);
        if operation == Operation::Update && previous.as_deref() != Some(label) {
            batch.push(Write::update_many(
                REPORTS,
                doc! { "checkup.device_id": &id },
                doc! { "$set": { "checkup.device_label": label, "_cdc": transaction.cdc() } },
            ));
        }
        Ok(())
    }

    /// Removes the device's lookup (its reports keep the label they embed).
    pub(super) fn delete_device(
        &mut self,
        key: &Row<'_>,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(key, "id")?.to_string();
        batch.push(Write::delete(LOOKUP_DEVICES, id.as_str()));
        self.lookups.forget(&id);
        Ok(())
    }
}

/// Empties the device lookups.
pub(super) fn truncate_devices(batch: &mut Batch) {
    batch.push(Write::delete_many(LOOKUP_DEVICES, Document::new()));
}
