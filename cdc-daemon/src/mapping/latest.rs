//! Settling patients' `latest` after a batch is written, with one write per patient:
//!
//! - a patient whose newest values may have gone down (a measurement deleted or amended, a
//!   report deleted, entered in error or re-dated) is recomputed from its report documents;
//! - otherwise the batch's newest measurement per code replaces the stored entry if it is newer.
//!
//! Each is one query for all of the batch's patients. The daemon is the only writer of these
//! documents, so reading then writing is safe; and the result is the same whatever was applied
//! before (the maximum, or a recomputation), so replaying a batch converges.

use std::collections::{BTreeMap, BTreeSet};

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::{PATIENTS, REPORTS};

use super::documents::{ReportValues, latest};
use crate::sink::Write;

/// Which `latest` codes of a patient must be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    /// Every code.
    All,
    /// These codes.
    Codes(BTreeSet<String>),
}

impl Dirty {
    /// Just `code` (a measurement of it changed or went away).
    pub fn one(code: String) -> Dirty {
        Dirty::Codes(BTreeSet::from([code]))
    }
}

/// A measurement that may become its patient's newest value of its code.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// When its report was taken.
    pub taken_at: DateTime,
    /// Its report.
    pub report_id: String,
    /// The `latest.<code>` entry it would be.
    pub entry: Document,
}

impl Candidate {
    /// Whether this candidate is newer than the entry `other` (by time, then report id).
    pub fn newer_than(&self, other: &Document) -> bool {
        let (Ok(taken_at), Ok(report_id)) =
            (other.get_datetime("taken_at"), other.get_str("report_id"))
        else {
            return true;
        };
        (self.taken_at, self.report_id.as_str()) > (*taken_at, report_id)
    }
}

/// What the batch changed about patients' newest values: patients to recompute from their
/// reports, and per patient and code the newest inserted measurement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestWork {
    /// Patients whose newest values may have gone down.
    pub dirty: BTreeMap<String, Dirty>,
    /// Per patient, per code, the batch's newest measurement.
    pub candidates: BTreeMap<String, BTreeMap<String, Candidate>>,
}

impl LatestWork {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.candidates.is_empty()
    }
}

/// The writes that settle `latest` for `work` (the store must already hold the batch): one
/// query for the reports of the patients to recompute, one for the stored `latest` of the
/// patients with candidates.
pub async fn settle(
    database: &Database,
    work: &LatestWork,
) -> Result<Vec<Write>, mongodb::error::Error> {
    let mut writes = Vec::new();
    if !work.dirty.is_empty() {
        let reports = stored_reports(database, work.dirty.keys()).await?;
        writes.extend(recomputed(&work.dirty, &reports));
    }
    let patients = work.patients_with_candidates();
    if !patients.is_empty() {
        let stored = stored_latest(database, &patients).await?;
        writes.extend(raised(work, &stored));
    }
    Ok(writes)
}

impl LatestWork {
    /// Whether `code` of `patient` is recomputed anyway, making its candidate moot.
    fn recomputes(&self, patient: &str, code: &str) -> bool {
        match self.dirty.get(patient) {
            Some(Dirty::All) => true,
            Some(Dirty::Codes(codes)) => codes.contains(code),
            None => false,
        }
    }

    /// Patients with a candidate for a code that is not recomputed anyway.
    fn patients_with_candidates(&self) -> Vec<&String> {
        self.candidates
            .iter()
            .filter(|(patient, codes)| codes.keys().any(|code| !self.recomputes(patient, code)))
            .map(|(patient, _)| patient)
            .collect()
    }
}

/// Per patient, the stored `latest` (empty when the document has none) of `patients`; a
/// patient without a document is left out.
async fn stored_latest(
    database: &Database,
    patients: &[&String],
) -> Result<BTreeMap<String, Document>, mongodb::error::Error> {
    let mut cursor = database
        .collection::<Document>(PATIENTS)
        .find(doc! { "_id": { "$in": patients } })
        .projection(doc! { "latest": 1 })
        .await?;
    let mut stored = BTreeMap::new();
    while cursor.advance().await? {
        let patient = cursor.deserialize_current()?;
        if let Ok(id) = patient.get_str("_id") {
            stored.insert(
                id.to_string(),
                patient.get_document("latest").cloned().unwrap_or_default(),
            );
        }
    }
    Ok(stored)
}

/// Raises `latest.<code>` to the batch's candidates where they are newer than `stored`, for
/// the codes that are not recomputed anyway.
pub fn raised(work: &LatestWork, stored: &BTreeMap<String, Document>) -> Vec<Write> {
    let mut writes = Vec::new();
    for patient in work.patients_with_candidates() {
        // A patient without a document (deleted later in the stream) gets nothing.
        let (Some(latest), Some(candidates)) = (stored.get(patient), work.candidates.get(patient))
        else {
            continue;
        };
        let mut set = Document::new();
        for (code, candidate) in candidates {
            if work.recomputes(patient, code) {
                continue;
            }
            let newer = latest
                .get_document(code)
                .map_or(true, |current| candidate.newer_than(current));
            if newer {
                set.insert(format!("latest.{code}"), candidate.entry.clone());
            }
        }
        if !set.is_empty() {
            writes.push(Write::update(
                PATIENTS,
                patient.as_str(),
                doc! { "$set": set },
            ));
        }
    }
    writes
}

/// Per patient, the stored reports of `patients` as the recomputation needs them.
async fn stored_reports(
    database: &Database,
    patients: impl Iterator<Item = &String>,
) -> Result<BTreeMap<String, Vec<ReportValues>>, mongodb::error::Error> {
    let patients: Vec<&String> = patients.collect();
    let mut cursor = database
        .collection::<Document>(REPORTS)
        .find(doc! { "patient_id": { "$in": patients } })
        .projection(doc! { "patient_id": 1, "taken_at": 1, "status": 1, "measurements": 1 })
        .await?;
    let mut reports: BTreeMap<String, Vec<ReportValues>> = BTreeMap::new();
    while cursor.advance().await? {
        let report = cursor.deserialize_current()?;
        let (Ok(id), Ok(patient_id), Ok(taken_at)) = (
            report.get_str("_id"),
            report.get_str("patient_id"),
            report.get_datetime("taken_at"),
        ) else {
            continue;
        };
        reports
            .entry(patient_id.to_string())
            .or_default()
            .push(ReportValues {
                report_id: id.to_string(),
                taken_at: *taken_at,
                entered_in_error: report
                    .get_str("status")
                    .is_ok_and(|status| status == "entered-in-error"),
                measurements: report
                    .get_document("measurements")
                    .cloned()
                    .unwrap_or_default(),
            });
    }
    Ok(reports)
}

/// The writes that bring `latest` of the `dirty` patients in line with their `reports`.
pub fn recomputed(
    dirty: &BTreeMap<String, Dirty>,
    reports: &BTreeMap<String, Vec<ReportValues>>,
) -> Vec<Write> {
    dirty
        .iter()
        .map(|(patient_id, codes)| {
            let computed = latest(
                reports
                    .get(patient_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            );
            let update = match codes {
                Dirty::All => doc! { "$set": { "latest": computed } },
                Dirty::Codes(codes) => {
                    let mut set = Document::new();
                    let mut unset = Document::new();
                    for code in codes {
                        match computed.get(code) {
                            Some(entry) => set.insert(format!("latest.{code}"), entry.clone()),
                            None => {
                                unset.insert(format!("latest.{code}"), Bson::String(String::new()))
                            }
                        };
                    }
                    let mut update = Document::new();
                    if !set.is_empty() {
                        update.insert("$set", set);
                    }
                    if !unset.is_empty() {
                        update.insert("$unset", unset);
                    }
                    update
                }
            };
            Write::update(PATIENTS, patient_id.as_str(), update)
        })
        .filter(|write| !matches!(write, Write::Update { update, .. } if update.is_empty()))
        .collect()
}
