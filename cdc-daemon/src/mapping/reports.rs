//! `public.reports` → the report document, denormalized: the patient snapshot and the checkup
//! (clinic name, device label) are joined from the daemon's own lookups, never from the source.
//! A report whose patient or checkup is unknown is an orphan (a dead letter). An update that
//! moves, re-dates or withdraws a report (`entered-in-error`) makes its patient's `latest` be
//! recomputed; so does a delete. An update that does not carry a value (an unchanged TOASTed
//! one) leaves it as the report document has it.
//!
//! Every write names the report's patient as well as its id: `patient_id` is the shard key of
//! `reports` on a sharded cluster, which refuses an update that changes it. A report moved to
//! another patient (an operator's correction: its checkup and patient change together) is a
//! [`Write::Move`] of its document, measurements included, from the old patient to the new
//! one (the update's old key names the old patient: the replica identity of `reports` is
//! `(id, patient_id)`), followed by its new fields under the new patient.

use mongodb::bson::Document;
use read_model::REPORTS;

use super::lookups::{LookupStore, ReportInfo};
use super::{
    ColumnTypes, Dirty, ID, INSTANT, JSON, MapError, Mapper, Operation, TEXTUAL, Transaction,
    documents, forget_every_latest, known,
};
use crate::decode::relations::Row;
use crate::sink::{Batch, Key, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[
    ("id", ID),
    ("checkup_id", ID),
    ("patient_id", ID),
    ("instrument_type", TEXTUAL),
    ("instrument_serial", TEXTUAL),
    ("taken_at", INSTANT),
    ("status", TEXTUAL),
    ("notes", TEXTUAL),
    ("raw", JSON),
];

impl<S: LookupStore> Mapper<S> {
    /// Writes the report document, first moving it when `old` (the old key, sent when an
    /// update changed it) names another patient; an update that changes what `latest` depends
    /// on marks the patient (and a patient it moved away from) for recomputation.
    pub(super) async fn upsert_report(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        old: Option<&Row<'_>>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(row, "id")?.to_string();
        let fields = self.report_document(row, transaction).await?;
        let previous = match operation {
            Operation::Update => self.lookups.report(&id).await?,
            _ => None,
        };
        let entered_in_error = match documents::sent_text(row, "status")? {
            Some(status) => status == "entered-in-error",
            None => previous
                .as_ref()
                .is_some_and(|known| known.entered_in_error),
        };
        let info = ReportInfo {
            patient_id: fields.get_str("patient_id").unwrap_or_default().to_string(),
            taken_at: documents::timestamp(row, "taken_at")?,
            entered_in_error,
        };
        if let Some(old) = old {
            let from = documents::uuid(old, "patient_id")?.to_string();
            if from != info.patient_id {
                batch.push(Write::move_report(&id, &from, &info.patient_id));
                self.mark(&from, Dirty::All);
            }
        }
        batch.push(Write::upsert(
            REPORTS,
            Key::report(&id, &info.patient_id),
            fields,
        ));
        self.lookups.set_report(&id, info.clone());
        if operation == Operation::Update && previous.as_ref() != Some(&info) {
            self.mark(&info.patient_id, Dirty::All);
        }
        Ok(())
    }

    /// The report's fields that `row` carries, with its patient snapshot and checkup joined in
    /// (its measurements are written by their own changes).
    async fn report_document(
        &mut self,
        row: &Row<'_>,
        transaction: &Transaction,
    ) -> Result<Document, MapError> {
        let mut fields = documents::report_fields_sent(row)?.fields;
        let patient_id = fields.get_str("patient_id").unwrap_or_default().to_string();
        let checkup_id = fields.get_str("checkup_id").unwrap_or_default().to_string();
        let patient = known(
            self.lookups.patient(&patient_id).await?,
            "patient",
            &patient_id,
        )?;
        let checkup = known(
            self.lookups.checkup(&checkup_id).await?,
            "checkup",
            &checkup_id,
        )?;
        fields.insert("patient", patient);
        fields.insert(
            "checkup",
            self.embedded_checkup(&checkup_id, &checkup).await?,
        );
        fields.insert("_cdc", transaction.cdc());
        Ok(fields)
    }

    /// Removes the report document; its patient's `latest` is recomputed.
    pub(super) fn delete_report(
        &mut self,
        key: &Row<'_>,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = documents::uuid(key, "id")?.to_string();
        let patient_id = documents::uuid(key, "patient_id")?.to_string();
        batch.push(Write::delete(REPORTS, Key::report(&id, &patient_id)));
        self.lookups.forget(&id);
        self.mark(&patient_id, Dirty::All);
        Ok(())
    }
}

/// Removes every report, and with them every `latest`.
pub(super) fn truncate_reports(batch: &mut Batch) {
    batch.push(Write::delete_many(REPORTS, Document::new()));
    batch.push(forget_every_latest());
}
