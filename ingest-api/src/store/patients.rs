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
//! Statements are fixed in number: one locking read of the named patients and this clinic's
//! links, then one multi-row statement each for new patients, changed patients, links and audit
//! rows. A new patient created by a concurrent upload makes the insert fail on the primary key;
//! the upload's transaction is then run again and finds the patient stored.

use serde_json::{Map, Value, json};
use time::Date;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use super::StoreError;
use super::devices::Device;
use crate::upload::{Patient, Upload};

/// The upload's patients could not all be accepted: nothing may be written.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConflict {
    /// What the clinic must know, without repeating stored health data.
    pub detail: String,
    /// `/checkups/N/patient` of the first checkup naming the patient.
    pub pointer: String,
}

/// A patient as stored, with the uploading clinic's record number if it is linked.
struct Stored {
    full_name: String,
    birth_date: Date,
    sex: String,
    phone: Option<String>,
    email: Option<String>,
    link: Option<String>,
}

/// What the upload does to one patient.
enum Plan<'u> {
    Create(&'u Patient),
    Link(&'u Patient),
    Update {
        patient: &'u Patient,
        stored: Stored,
    },
}

/// Applies the upload's patients under the clinic rule; an [`IdentityConflict`] means nothing
/// was written and the caller must not commit.
pub(super) async fn apply(
    transaction: &deadpool_postgres::Transaction<'_>,
    device: Device,
    upload: &Upload,
) -> Result<Result<(), IdentityConflict>, StoreError> {
    let db = |context| move |error| StoreError::from_postgres(context, error);
    // Validation guarantees that a patient repeated in several checkups is identical; sorted by
    // id so that concurrent uploads lock patient rows in the same order.
    let mut patients: Vec<(usize, &Patient)> = upload
        .checkups
        .iter()
        .enumerate()
        .map(|(index, checkup)| (index, &checkup.patient))
        .collect();
    patients.sort_by_key(|(index, patient)| (patient.id, *index));
    patients.dedup_by_key(|(_, patient)| patient.id);

    let ids: Vec<Uuid> = patients.iter().map(|(_, patient)| patient.id).collect();
    let rows = transaction
        .query(
            "SELECT p.id, p.full_name, p.birth_date, p.sex, p.phone, p.email, l.external_ref \
             FROM patients p \
             LEFT JOIN patient_clinics l ON l.patient_id = p.id AND l.clinic_id = $2 \
             WHERE p.id = ANY($1) ORDER BY p.id FOR UPDATE OF p",
            &[&ids, &device.clinic_id],
        )
        .await
        .map_err(db("reading the upload's patients"))?;
    let mut stored: std::collections::HashMap<Uuid, Stored> = rows
        .into_iter()
        .map(|row| {
            let stored = Stored {
                full_name: row.get(1),
                birth_date: row.get(2),
                sex: row.get(3),
                phone: row.get(4),
                email: row.get(5),
                link: row.get(6),
            };
            (row.get(0), stored)
        })
        .collect();

    let mut plans = Vec::with_capacity(patients.len());
    for (index, patient) in patients {
        plans.push(match stored.remove(&patient.id) {
            None => Plan::Create(patient),
            Some(stored) if stored.link.is_some() => Plan::Update { patient, stored },
            Some(stored) => {
                if !same_identity(patient, &stored) {
                    return Ok(Err(IdentityConflict {
                        detail: format!(
                            "patient {} is registered by another clinic with another full name or \
                             birth date; this clinic is not linked to the patient and may only \
                             name it with the same full name and birth date",
                            patient.id
                        ),
                        pointer: format!("/checkups/{index}/patient"),
                    }));
                }
                Plan::Link(patient)
            }
        });
    }
    write(transaction, device, upload.upload_id, &plans).await?;
    Ok(Ok(()))
}

/// Whether an unlinked clinic names the stored patient: same full name (as a clerk compares
/// names) and same birth date.
fn same_identity(patient: &Patient, stored: &Stored) -> bool {
    patient.birth_date == stored.birth_date
        && clerk_form(&patient.full_name) == clerk_form(&stored.full_name)
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

/// One audit row: action, old and new values.
struct Audit {
    patient_id: Uuid,
    action: &'static str,
    old: Value,
    new: Value,
}

async fn write(
    transaction: &deadpool_postgres::Transaction<'_>,
    device: Device,
    upload_id: Uuid,
    plans: &[Plan<'_>],
) -> Result<(), StoreError> {
    let db = |context| move |error| StoreError::from_postgres(context, error);
    let mut created: Vec<&Patient> = Vec::new();
    // A changed patient with its phone and e-mail after the merge patch.
    let mut updated: Vec<(&Patient, Option<String>, Option<String>)> = Vec::new();
    let mut links: Vec<(Uuid, &str)> = Vec::new();
    let mut audits: Vec<Audit> = Vec::new();
    for plan in plans {
        match plan {
            Plan::Create(patient) => {
                created.push(patient);
                links.push((patient.id, patient.external_ref.as_str()));
                let mut new = Map::new();
                new.insert("external_ref".into(), json!(patient.external_ref));
                new.insert("full_name".into(), json!(patient.full_name));
                new.insert("birth_date".into(), json!(patient.birth_date.to_string()));
                new.insert("sex".into(), json!(patient.sex.as_str()));
                if let Some(phone) = patient.phone.apply(None) {
                    new.insert("phone".into(), json!(phone));
                }
                if let Some(email) = patient.email.apply(None) {
                    new.insert("email".into(), json!(email));
                }
                audits.push(Audit {
                    patient_id: patient.id,
                    action: "created",
                    old: json!({}),
                    new: Value::Object(new),
                });
            }
            Plan::Link(patient) => {
                links.push((patient.id, patient.external_ref.as_str()));
                audits.push(Audit {
                    patient_id: patient.id,
                    action: "linked",
                    old: json!({}),
                    new: json!({ "external_ref": patient.external_ref }),
                });
            }
            Plan::Update { patient, stored } => {
                let (old, new) = changes(patient, stored);
                if old.is_empty() {
                    continue;
                }
                if old.contains_key("external_ref") {
                    links.push((patient.id, patient.external_ref.as_str()));
                }
                if old.keys().any(|field| field != "external_ref") {
                    updated.push((
                        patient,
                        patient.phone.apply(stored.phone.clone()),
                        patient.email.apply(stored.email.clone()),
                    ));
                }
                audits.push(Audit {
                    patient_id: patient.id,
                    action: "updated",
                    old: Value::Object(old),
                    new: Value::Object(new),
                });
            }
        }
    }

    if !created.is_empty() {
        let ids: Vec<Uuid> = created.iter().map(|p| p.id).collect();
        let refs: Vec<&str> = created.iter().map(|p| p.external_ref.as_str()).collect();
        let names: Vec<&str> = created.iter().map(|p| p.full_name.as_str()).collect();
        let births: Vec<Date> = created.iter().map(|p| p.birth_date).collect();
        let sexes: Vec<&str> = created.iter().map(|p| p.sex.as_str()).collect();
        let phones: Vec<Option<String>> = created.iter().map(|p| p.phone.apply(None)).collect();
        let emails: Vec<Option<String>> = created.iter().map(|p| p.email.apply(None)).collect();
        transaction
            .execute(
                "INSERT INTO patients (id, external_ref, full_name, birth_date, sex, phone, email) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], \
                                      $5::text[], $6::text[], $7::text[])",
                &[&ids, &refs, &names, &births, &sexes, &phones, &emails],
            )
            .await
            .map_err(db("inserting patients"))?;
    }
    if !updated.is_empty() {
        let ids: Vec<Uuid> = updated.iter().map(|(p, ..)| p.id).collect();
        let names: Vec<&str> = updated.iter().map(|(p, ..)| p.full_name.as_str()).collect();
        let births: Vec<Date> = updated.iter().map(|(p, ..)| p.birth_date).collect();
        let sexes: Vec<&str> = updated.iter().map(|(p, ..)| p.sex.as_str()).collect();
        let phones: Vec<Option<&str>> = updated.iter().map(|(_, p, _)| p.as_deref()).collect();
        let emails: Vec<Option<&str>> = updated.iter().map(|(.., e)| e.as_deref()).collect();
        transaction
            .execute(
                "UPDATE patients p SET full_name = u.full_name, birth_date = u.birth_date, \
                     sex = u.sex, phone = u.phone, email = u.email, updated_at = now() \
                 FROM unnest($1::uuid[], $2::text[], $3::date[], $4::text[], $5::text[], \
                             $6::text[]) AS u(id, full_name, birth_date, sex, phone, email) \
                 WHERE p.id = u.id",
                &[&ids, &names, &births, &sexes, &phones, &emails],
            )
            .await
            .map_err(db("updating patients"))?;
    }
    if !links.is_empty() {
        let patients: Vec<Uuid> = links.iter().map(|(id, _)| *id).collect();
        let refs: Vec<&str> = links
            .iter()
            .map(|(_, external_ref)| *external_ref)
            .collect();
        transaction
            .execute(
                "INSERT INTO patient_clinics (patient_id, clinic_id, external_ref) \
                 SELECT u.patient_id, $3, u.external_ref \
                 FROM unnest($1::uuid[], $2::text[]) AS u(patient_id, external_ref) \
                 ON CONFLICT (patient_id, clinic_id) DO UPDATE \
                     SET external_ref = EXCLUDED.external_ref, updated_at = now()",
                &[&patients, &refs, &device.clinic_id],
            )
            .await
            .map_err(db("linking patients to the clinic"))?;
    }
    if !audits.is_empty() {
        let patients: Vec<Uuid> = audits.iter().map(|a| a.patient_id).collect();
        let actions: Vec<&str> = audits.iter().map(|a| a.action).collect();
        let old: Vec<&Value> = audits.iter().map(|a| &a.old).collect();
        let new: Vec<&Value> = audits.iter().map(|a| &a.new).collect();
        transaction
            .execute(
                "INSERT INTO patient_changes (patient_id, clinic_id, device_id, upload_id, action, \
                                              old_values, new_values) \
                 SELECT u.patient_id, $5, $6, $7, u.action, u.old_values, u.new_values \
                 FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[]) \
                      AS u(patient_id, action, old_values, new_values)",
                &[
                    &patients,
                    &actions,
                    &old,
                    &new,
                    &device.clinic_id,
                    &device.id,
                    &upload_id,
                ],
            )
            .await
            .map_err(db("recording patient changes"))?;
    }
    Ok(())
}

/// The fields a linked clinic's upload changes, as (old values, new values) by field name; the
/// record number is compared with the clinic's own.
fn changes(patient: &Patient, stored: &Stored) -> (Map<String, Value>, Map<String, Value>) {
    let mut old = Map::new();
    let mut new = Map::new();
    let mut compare = |field: &str, before: Value, after: Value| {
        if before != after {
            old.insert(field.to_string(), before);
            new.insert(field.to_string(), after);
        }
    };
    compare(
        "external_ref",
        json!(stored.link),
        json!(patient.external_ref),
    );
    compare(
        "full_name",
        json!(stored.full_name),
        json!(patient.full_name),
    );
    compare(
        "birth_date",
        json!(stored.birth_date.to_string()),
        json!(patient.birth_date.to_string()),
    );
    compare("sex", json!(stored.sex), json!(patient.sex.as_str()));
    compare(
        "phone",
        json!(stored.phone),
        json!(patient.phone.apply(stored.phone.clone())),
    );
    compare(
        "email",
        json!(stored.email),
        json!(patient.email.apply(stored.email.clone())),
    );
    (old, new)
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
