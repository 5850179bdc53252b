//! `public.measurements` → `measurements.<code>` of the report document, and the patient's
//! `latest.<code>`: an inserted measurement of a report not entered in error is a candidate
//! that wins if it is newer; an update or delete marks the code for recomputation. An update
//! that does not carry a value (an unchanged TOASTed one) sets the others field by field, so
//! the report keeps that value. A measurement of an unknown report is an orphan (a dead
//! letter). A delete is routed by its key `(report_id, code)` alone; its write names the
//! report's patient (the shard key of `reports`) from the report's lookup, and is left out
//! when the report is known nowhere (its document does not exist either).

use mongodb::bson::{Document, doc};
use read_model::REPORTS;

use super::lookups::LookupStore;
use super::{
    Candidate, ColumnTypes, Dirty, ID, MapError, Mapper, NUMBER, Operation, TEXTUAL, Transaction,
    documents, forget_every_latest, known,
};
use crate::decode::relations::Row;
use crate::sink::{Batch, Key, Write};

/// The columns the mapping reads.
pub(super) const COLUMNS: ColumnTypes = &[
    ("report_id", ID),
    ("code", TEXTUAL),
    ("display_name", TEXTUAL),
    ("value", NUMBER),
    ("unit", TEXTUAL),
    ("reference_low", NUMBER),
    ("reference_high", NUMBER),
    ("flag", TEXTUAL),
];

impl<S: LookupStore> Mapper<S> {
    /// Sets the measurement in its report, then records what it means for `latest`.
    pub(super) async fn upsert_measurement(
        &mut self,
        operation: Operation,
        row: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let report_id = documents::uuid(row, "report_id")?.to_string();
        let (code, measurement) = documents::measurement_sent(row)?;
        let report = known(self.lookups.report(&report_id).await?, "report", &report_id)?;
        let mut set = measurement.set_at(&format!("measurements.{code}"));
        set.insert("_cdc", transaction.cdc());
        batch.push(Write::update(
            REPORTS,
            Key::report(&report_id, &report.patient_id),
            doc! { "$set": set },
        ));
        match operation {
            // An insert carries every column (only updates leave unchanged TOAST out).
            Operation::Insert if !report.entered_in_error => {
                let candidate = Candidate {
                    taken_at: report.taken_at,
                    entry: documents::latest_entry(
                        &measurement.fields,
                        &report_id,
                        report.taken_at,
                    ),
                    report_id,
                };
                self.propose_latest(report.patient_id, code, candidate);
            }
            Operation::Insert => {}
            _ => self.mark(&report.patient_id, Dirty::one(code)),
        }
        Ok(())
    }

    /// Keeps `candidate` as the batch's newest `code` of `patient_id` if it beats the one kept.
    fn propose_latest(&mut self, patient_id: String, code: String, candidate: Candidate) {
        let kept = self.latest.candidates.entry(patient_id).or_default();
        if kept
            .get(&code)
            .is_none_or(|current| candidate.newer_than(&current.entry))
        {
            kept.insert(code, candidate);
        }
    }

    /// Unsets the measurement in its report; the code of the patient's `latest` is recomputed.
    pub(super) async fn delete_measurement(
        &mut self,
        key: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let report_id = documents::uuid(key, "report_id")?.to_string();
        let code = documents::text(key, "code")?.to_string();
        let Some(report) = self.lookups.report(&report_id).await? else {
            return Ok(());
        };
        batch.push(Write::update(
            REPORTS,
            Key::report(&report_id, &report.patient_id),
            doc! {
                "$unset": { format!("measurements.{code}"): "" },
                "$set": { "_cdc": transaction.cdc() },
            },
        ));
        self.mark(&report.patient_id, Dirty::one(code));
        Ok(())
    }
}

/// Empties every report's measurements, and with them every `latest`.
pub(super) fn truncate_measurements(batch: &mut Batch) {
    batch.push(Write::update_many(
        REPORTS,
        Document::new(),
        doc! { "$set": { "measurements": {} } },
    ));
    batch.push(forget_every_latest());
}
