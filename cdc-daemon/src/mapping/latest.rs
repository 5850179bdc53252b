//! Recomputing `latest` of patients whose newest values may have gone down (a measurement
//! deleted or amended, a report deleted, entered in error or re-dated): one query for all of a
//! batch's patients over their report documents, then one write per patient.

use std::collections::BTreeMap;

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use read_model::{PATIENTS, REPORTS};

use super::Dirty;
use super::documents::{ReportValues, latest};
use crate::sink::Write;

/// The writes that bring `latest` of the `dirty` patients in line with their reports in the
/// store (which must already hold the batch's writes).
pub async fn recompute(
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
