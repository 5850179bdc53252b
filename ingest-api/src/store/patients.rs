//! Patients belong to clinics: what an upload may do to the patients it names, inside the
//! upload's transaction, and the audit trail it leaves.
//!
//! The rule, as a clinic reads it: a clinic may update the details of a patient it is linked
//! to. A clinic not yet linked may name an existing patient only with the same full name and
//! birth date (ignoring case, accents and extra spaces); that links the clinic with its record
//! number and changes nothing else, and any other difference refuses the whole upload (409).
//!
//! Patient ids are not secret (a patient's token carries one), so without this rule any tablet
//! could overwrite any patient. A patient the upload creates is linked to the uploading clinic.
//! Optional fields follow merge-patch rules ([`crate::upload::Patch`]): an upload that leaves out `phone` keeps
//! the stored one. Every creation, link and change is appended to `patient_changes` with the
//! device, clinic, upload and the old and new values of the fields it touched.
//!
//! The rule runs inside PostgreSQL, in the upload's one statement (`store_upload()`, migration
//! V6): there the patients are locked (sorted by id, so that concurrent uploads lock them in the
//! same order), planned and written, with one multi-row statement each for new patients,
//! changed patients, links and audit rows. What PostgreSQL cannot do as this service does is
//! compare names as a clerk does ([`clerk_form`]): a stored name that is not textually the
//! uploaded one comes back to [`verify`], and the upload is run again with the names found the
//! same. A new patient created by a concurrent upload makes the insert fail on the primary key;
//! the upload is then run again and finds the patient stored.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use super::StoreError;
use crate::upload::{Patient, Upload};

/// The upload's patients could not all be accepted: nothing may be written.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConflict {
    /// What the clinic must know, without repeating stored health data.
    pub detail: String,
    /// `/checkups/N/patient` of the first checkup naming the patient.
    pub pointer: String,
}

impl IdentityConflict {
    /// The conflict of the patient of checkup `index`: stored, not linked to the uploading
    /// clinic, and named with another full name or birth date.
    pub(super) fn at(upload: &Upload, index: usize) -> Self {
        let id = upload
            .checkups
            .get(index)
            .map(|checkup| checkup.patient.id.to_string())
            .unwrap_or_default();
        IdentityConflict {
            detail: format!(
                "patient {id} is registered by another clinic with another full name or birth \
                 date; this clinic is not linked to the patient and may only name it with the \
                 same full name and birth date"
            ),
            pointer: format!("/checkups/{index}/patient"),
        }
    }
}

/// The upload's patients, each once, sorted by id, each with the index of the first checkup
/// naming it. Validation guarantees that a patient repeated in several checkups is identical.
pub(super) fn named(upload: &Upload) -> Vec<(usize, &Patient)> {
    let mut patients: Vec<(usize, &Patient)> = upload
        .checkups
        .iter()
        .enumerate()
        .map(|(index, checkup)| (index, &checkup.patient))
        .collect();
    patients.sort_by_key(|(index, patient)| (patient.id, *index));
    patients.dedup_by_key(|(_, patient)| patient.id);
    patients
}

/// A stored patient an unlinked clinic names with the same birth date but not textually the
/// same full name, as `store_upload()` reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Unverified {
    /// The index of the first checkup naming the patient.
    pub checkup: usize,
    /// The stored full name.
    pub full_name: String,
}

/// Stored patients whose stored full name was found, in clerk form, the uploaded one: the
/// `verified_*` parameters of `store_upload()`.
#[derive(Debug, Default)]
pub(super) struct Verified {
    /// The patients' ids.
    pub ids: Vec<Uuid>,
    /// The stored full name compared, one per id.
    pub names: Vec<String>,
}

/// Compares each unverified patient's uploaded and stored names in clerk form, in order: adds
/// each that is the same person to `verified`, or returns the conflict of the first that is
/// not.
pub(super) fn verify(
    upload: &Upload,
    unverified: Vec<Unverified>,
    verified: &mut Verified,
) -> Result<(), IdentityConflict> {
    for stored in unverified {
        let Some(checkup) = upload.checkups.get(stored.checkup) else {
            return Err(IdentityConflict::at(upload, stored.checkup));
        };
        if clerk_form(&checkup.patient.full_name) != clerk_form(&stored.full_name) {
            return Err(IdentityConflict::at(upload, stored.checkup));
        }
        match verified.ids.iter().position(|id| *id == checkup.patient.id) {
            Some(known) => verified.names[known] = stored.full_name,
            None => {
                verified.ids.push(checkup.patient.id);
                verified.names.push(stored.full_name);
            }
        }
    }
    Ok(())
}

/// A name as a clerk compares it: compatibility-decomposed (NFKD) with the combining marks
/// (accents) removed, lowercased, and with runs of whitespace made one space and none at the
/// ends. "  JOSÉ  García " and "jose garcia" have the same form.
pub fn clerk_form(name: &str) -> String {
    let bare: String = name
        .nfkd()
        .filter(|character| !is_combining_mark(*character))
        .collect::<String>()
        .to_lowercase();
    bare.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One row of a patient's audit trail, for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// When the upload made it.
    pub changed_at: time::OffsetDateTime,
    /// `created`, `linked` or `updated`.
    pub action: String,
    /// The clinic's name.
    pub clinic: String,
    /// The label of the tablet that uploaded it.
    pub device: String,
    /// The upload it came with.
    pub upload_id: Uuid,
    /// The touched fields' values before (empty for a creation or a link).
    pub old_values: Value,
    /// The touched fields' values after.
    pub new_values: Value,
}

/// The audit trail of `patient`, oldest first.
pub async fn history(
    client: &tokio_postgres::Client,
    patient: Uuid,
) -> Result<Vec<Change>, StoreError> {
    let rows = client
        .query(
            "SELECT h.changed_at, h.action, c.name, d.label, h.upload_id, h.old_values, \
                    h.new_values \
             FROM patient_changes h \
             JOIN clinics c ON c.id = h.clinic_id \
             JOIN devices d ON d.id = h.device_id \
             WHERE h.patient_id = $1 ORDER BY h.id",
            &[&patient],
        )
        .await
        .map_err(|error| StoreError::from_postgres("reading a patient's history", error))?;
    Ok(rows
        .into_iter()
        .map(|row| Change {
            changed_at: row.get(0),
            action: row.get(1),
            clinic: row.get(2),
            device: row.get(3),
            upload_id: row.get(4),
            old_values: row.get(5),
            new_values: row.get(6),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_accents_and_extra_spaces() {
        assert_eq!(clerk_form("  JOSÉ  García "), "jose garcia");
        assert_eq!(clerk_form("Zoë Ångström"), clerk_form("zoe angstrom"));
        // Precomposed and decomposed accents are the same letter.
        assert_eq!(clerk_form("Ren\u{e9}e"), clerk_form("Rene\u{301}e"));
        // Compatibility forms (full-width letters, ligatures) fold too.
        assert_eq!(clerk_form("Ａｄａ"), "ada");
        assert_eq!(clerk_form("Ruﬁ"), "rufi");
    }

    #[test]
    fn different_names_stay_different() {
        assert_ne!(clerk_form("Ada Lovelace"), clerk_form("Ada Byron"));
        assert_ne!(clerk_form("Anna"), clerk_form("Ana"));
        assert_ne!(clerk_form("Jo Ann"), clerk_form("Joann"));
    }
}
