//! Settling patients' `latest` after a batch is written, with one write per patient:
//!
//! - a patient whose newest values may have gone down (a measurement deleted or amended, a
//!   report deleted, entered in error or re-dated) is recomputed from its report documents;
//! - otherwise the batch's newest measurement per code replaces the stored entry if it is newer.
//!
//! Each is one query for all of the batch's patients. The daemon is the only writer of these
//! documents, so reading then writing is safe; and the result is the same whatever was applied
//! before (the maximum, or a recomputation), so replaying a batch converges.

use std::collections::BTreeMap;

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use read_model::{PATIENTS, REPORTS};

use super::documents::{ReportValues, latest};
use super::{Dirty, LatestWork};
use crate::sink::Write;

/// The writes that settle `latest` for `work` (the store must already hold the batch).
pub async fn settle(
    database: &Database,
    work: &LatestWork,
) -> Result<Vec<Write>, mongodb::error::Error> {
    let mut writes = recompute(database, &work.dirty).await?;
    writes.extend(newest(database, work).await?);
    Ok(writes)
}

/// Raises `latest.<code>` to the batch's candidates where they are newer, for the codes that
/// are not recomputed anyway.
async fn newest(
    database: &Database,
    work: &LatestWork,
) -> Result<Vec<Write>, mongodb::error::Error> {
    // A code being recomputed comes out right anyway; any other code of the same patient still
    // needs its candidate.
    let recomputed = |patient: &String, code: &String| match work.dirty.get(patient) {
        Some(Dirty::All) => true,
        Some(Dirty::Codes(codes)) => codes.contains(code),
        None => false,
    };
    let patients: Vec<&String> = work
        .candidates
        .iter()
        .filter(|(patient, codes)| codes.keys().any(|code| !recomputed(patient, code)))
        .map(|(patient, _)| patient)
        .collect();
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let mut cursor = database
        .collection::<Document>(PATIENTS)
        .find(doc! { "_id": { "$in": &patients } })
        .projection(doc! { "latest": 1 })
        .await?;
    let mut stored: BTreeMap<String, Document> = BTreeMap::new();
    while cursor.advance().await? {
        let patient = cursor.deserialize_current()?;
        if let Ok(id) = patient.get_str("_id") {
            stored.insert(
                id.to_string(),
                patient.get_document("latest").cloned().unwrap_or_default(),
            );
        }
    }
    let mut writes = Vec::new();
    for patient in patients {
        // A patient without a document (deleted later in the stream) gets nothing.
        let (Some(latest), Some(candidates)) = (stored.get(patient), work.candidates.get(patient))
        else {
            continue;
        };
        let mut set = Document::new();
        for (code, candidate) in candidates {
            if recomputed(patient, code) {
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
    Ok(writes)
}

/// The writes that bring `latest` of the `dirty` patients in line with their reports in the
/// store.
async fn recompute(
    database: &Database,
    dirty: &BTreeMap<String, Dirty>,
) -> Result<Vec<Write>, mongodb::error::Error> {
    if dirty.is_empty() {
        return Ok(Vec::new());
    }
    let patients: Vec<&String> = dirty.keys().collect();
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
    Ok(dirty
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
        .collect())
}
