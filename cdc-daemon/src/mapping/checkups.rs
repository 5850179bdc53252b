//! `public.checkups` → `lookup_checkups` (patient, clinic, device, times of a visit). An update
//! rewrites the `checkup` embedded in the visit's reports; a delete removes those reports.

use mongodb::bson::{Document, doc};
use read_model::{LOOKUP_CHECKUPS, REPORTS};

use super::lookups::{LookupStore, link_key};
use super::{
    ColumnTypes, Dirty, ID, INSTANT, MapError, Mapper, Operation, Transaction, documents,
    forget_every_latest, known,
};
use crate::decode::relations::Row;
use crate::sink::{Batch, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[
    ("id", ID),
    ("patient_id", ID),
    ("clinic_id", ID),
    ("device_id", ID),
    ("started_at", INSTANT),
    ("completed_at", INSTANT),
];

impl<S: LookupStore> Mapper<S> {
    /// Writes the checkup's lookup; an update rewrites the checkup embedded in its reports.
    pub(super) async fn upsert_checkup(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(row, "id")?.to_string();
        let fields = documents::checkup_fields(row)?;
        batch.push(Write::upsert(LOOKUP_CHECKUPS, id.as_str(), fields.clone()));
        self.lookups.set_checkup(&id, fields.clone());
        if operation == Operation::Update {
            let embedded = self.embedded_checkup(&id, &fields).await?;
            let patient_id = fields.get_str("patient_id").unwrap_or_default();
            batch.push(Write::update_many(
                REPORTS,
                doc! { "patient_id": patient_id, "checkup_id": &id },
                doc! { "$set": { "checkup": embedded, "_cdc": transaction.cdc() } },
            ));
        }
        Ok(())
    }

    /// The checkup as reports embed it: its lookup with its clinic's name, the patient's record
    /// number at the clinic (none when not linked) and its device's label.
    pub(super) async fn embedded_checkup(
        &mut self,
        id: &str,
        lookup: &Document,
    ) -> Result<Document, MapError> {
        let clinic_id = lookup.get_str("clinic_id").unwrap_or_default().to_string();
        let device_id = lookup.get_str("device_id").unwrap_or_default().to_string();
        let clinic = known(
            self.lookups.clinic_name(&clinic_id).await?,
            "clinic",
            &clinic_id,
        )?;
        let device = known(
            self.lookups.device_label(&device_id).await?,
            "device",
            &device_id,
        )?;
        let patient_id = lookup.get_str("patient_id").unwrap_or_default();
        let record_number = self
            .lookups
            .record_number(&link_key(patient_id, &clinic_id))
            .await?;
        Ok(documents::checkup_embedded(
            id,
            lookup,
            &clinic,
            &device,
            record_number.as_deref(),
        ))
    }

    /// Removes the checkup's lookup and its reports; the patient's `latest` is recomputed.
    pub(super) fn delete_checkup(
        &mut self,
        key: &Row<'_>,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(key, "id")?.to_string();
        let patient_id = documents::uuid(key, "patient_id")?.to_string();
        batch.push(Write::delete(LOOKUP_CHECKUPS, id.as_str()));
        batch.push(Write::delete_many(
            REPORTS,
            doc! { "patient_id": &patient_id, "checkup_id": &id },
        ));
        self.lookups.forget(&id);
        self.mark(&patient_id, Dirty::All);
        Ok(())
    }
}

/// Removes every checkup lookup and every report, and with them every `latest`.
pub(super) fn truncate_checkups(batch: &mut Batch) {
    batch.push(Write::delete_many(LOOKUP_CHECKUPS, Document::new()));
    batch.push(Write::delete_many(REPORTS, Document::new()));
    batch.push(forget_every_latest());
}
