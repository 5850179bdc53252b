//! One upload in one transaction, idempotent by upload id, in one round trip to PostgreSQL.
//!
//! The write is one call of `store_upload()` (migration V6), a statement of its own outside an
//! explicit transaction, so the statement is the transaction: it takes an advisory lock on the
//! upload id, so two copies of the same upload racing each other are serialized (the first
//! writes, the second finds the ledger row and replays its result); then it applies the clinic
//! rule of [`super::patients`] to the upload's patients, checks that a stored checkup is the
//! same patient's visit at the same clinic and that a stored report has the same content (then
//! it is skipped as a duplicate), and only then writes patients, links, audit rows, checkups,
//! reports, measurements and the ledger row, one multi-row statement per table. A refusal
//! writes nothing.
//!
//! The statement that records the commit LSN (the WAL position the read store must reach for
//! the upload to be visible there) is sent right behind it on the same connection, without
//! waiting for its answer: PostgreSQL runs it after the upload's commit, as a transaction of its
//! own, and both answers come back together.

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::devices::Device;
use super::patients::{self, IdentityConflict, Unverified, Verified};
use super::{StoreError, connection, wal_position_after_commit};
use crate::upload::{Patch, Upload};

/// How often the upload is run again after it lost a race (unique violation, serialization
/// failure, deadlock) or came back with names to compare (see [`patients::verify`]).
const ATTEMPTS: usize = 4;

/// The upload's write: every parameter of `store_upload()`, in its order (see migration V6).
pub const STORE: &str = "SELECT store_upload($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                     $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, \
                     $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38)";

/// Records the WAL position as the commit LSN of upload `$1` from device `$2` with body hash
/// `$3`, if that upload is stored without one; run after the upload's own statement, so the
/// position is at or after its commit. The benchmark's reference runs it as it stands.
pub const RECORD: &str = "UPDATE uploads u SET commit_lsn = w.lsn, \
                          result = jsonb_set(u.result, '{commit_lsn}', to_jsonb(w.lsn::text)) \
                      FROM (SELECT pg_current_wal_insert_lsn() AS lsn) w \
                      WHERE u.id = $1 AND u.device_id = $2 AND u.body_sha256 = $3 \
                        AND u.commit_lsn IS NULL \
                      RETURNING u.commit_lsn::text";

/// What an accepted upload wrote; stored in the ledger and returned on every replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadResult {
    /// The upload's id.
    pub upload_id: Uuid,
    /// Checkups in the upload.
    pub checkups: usize,
    /// Reports written (duplicates of stored reports not counted).
    pub reports: usize,
    /// Measurements written.
    pub measurements: usize,
    /// Reports skipped because they were already stored with identical content.
    pub duplicate_reports: usize,
    /// The WAL position after the upload's commit (`pg_lsn` text); the upload is in the read
    /// store once the CDC daemon's checkpoint has reached it.
    pub commit_lsn: Option<String>,
}

/// The answer to an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    /// Written now.
    Created(UploadResult),
    /// Written before, with the same body: the stored result.
    Replayed(UploadResult),
    /// Refused: it contradicts what is stored. Nothing was written.
    Conflict {
        /// What contradicts what.
        detail: String,
        /// The JSON pointer of the offending part of the upload, if it is one part.
        pointer: Option<String>,
    },
}

/// Stores `upload` from `device`, whose canonical body hashes to `body_sha256`.
pub async fn store(
    pool: &Pool,
    device: Device,
    upload: &Upload,
    body_sha256: [u8; 32],
) -> Result<UploadOutcome, StoreError> {
    let client = connection(pool).await?;
    let (store, record) =
        tokio::try_join!(client.prepare_cached(STORE), client.prepare_cached(RECORD))
            .map_err(|error| StoreError::from_postgres("preparing the upload statements", error))?;
    let columns = Columns::of(upload);
    let hash = body_sha256.as_slice();
    let mut verified = Verified::default();
    let mut attempt = 1;
    let (outcome, recorded) = loop {
        let params = columns.params(&device, &hash, &verified);
        let record_params: [&(dyn ToSql + Sync); 3] = [&upload.upload_id, &device.id, &hash];
        // Both are sent before either answer is read: one round trip.
        let (written, recorded) = tokio::join!(
            client.query_one(&store, &params),
            client.query_opt(&record, &record_params)
        );
        let written =
            written.map_err(|error| StoreError::from_postgres("storing an upload", error));
        let unverified = match written {
            Err(error) if error.is_retryable() && attempt < ATTEMPTS => None,
            Err(error) => return Err(error),
            Ok(row) => match outcome(upload, row.get::<_, Json<Written>>(0).0) {
                Ok(outcome) => break (outcome, recorded),
                Err(unverified) => Some(unverified),
            },
        };
        if let Some(unverified) = unverified {
            if let Err(conflict) = patients::verify(upload, unverified, &mut verified) {
                return Ok(identity_conflict(conflict));
            }
            if attempt == ATTEMPTS {
                return Err(StoreError::Contended(
                    "stored patient names changed while they were compared",
                ));
            }
        }
        attempt += 1;
    };
    let recorded: Option<String> = recorded
        .map_err(|error| StoreError::from_postgres("recording the commit LSN", error))?
        .map(|row| row.get(0));
    let with_lsn = |mut result: UploadResult| async {
        result.commit_lsn = result.commit_lsn.or(recorded);
        if result.commit_lsn.is_some() {
            return Ok(result);
        }
        // Recorded by a concurrent replay between the two statements, or the upload was
        // committed by a process that stopped before recording it: record or read it now.
        record_commit_lsn(&client, result).await
    };
    Ok(match outcome {
        UploadOutcome::Created(result) => UploadOutcome::Created(with_lsn(result).await?),
        UploadOutcome::Replayed(result) => UploadOutcome::Replayed(with_lsn(result).await?),
        conflict @ UploadOutcome::Conflict { .. } => conflict,
    })
}

/// What `store_upload()` answered (its JSON object, see migration V6).
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Written {
    Created { result: UploadResult },
    Replayed { result: UploadResult },
    UploadConflict,
    PatientConflict { checkup: usize },
    CheckupConflict { checkup: usize },
    ReportConflict { checkup: usize, report: usize },
    Verify { patients: Vec<Unverified> },
}

/// The outcome `written` means for `upload`, or the stored patients whose names must be
/// compared before the upload can be decided.
fn outcome(upload: &Upload, written: Written) -> Result<UploadOutcome, Vec<Unverified>> {
    Ok(match written {
        Written::Created { result } => UploadOutcome::Created(result),
        Written::Replayed { result } => UploadOutcome::Replayed(result),
        Written::UploadConflict => UploadOutcome::Conflict {
            detail: format!(
                "upload {} was already received with a different body or from another device; \
                 a new upload needs a new upload_id",
                upload.upload_id
            ),
            pointer: Some("/upload_id".to_string()),
        },
        Written::PatientConflict { checkup } => {
            identity_conflict(IdentityConflict::at(upload, checkup))
        }
        Written::CheckupConflict { checkup } => UploadOutcome::Conflict {
            detail: format!(
                "checkup {} is already stored for another patient or clinic",
                upload
                    .checkups
                    .get(checkup)
                    .map(|c| c.id)
                    .unwrap_or_default()
            ),
            pointer: Some(format!("/checkups/{checkup}/id")),
        },
        Written::ReportConflict { checkup, report } => {
            let id = upload
                .checkups
                .get(checkup)
                .and_then(|c| c.reports.get(report))
                .map(|r| r.id)
                .unwrap_or_default();
            UploadOutcome::Conflict {
                detail: format!(
                    "report {id} is already stored with different content; amend it with \
                     PATCH /v1/reports/{id} instead"
                ),
                pointer: Some(format!("/checkups/{checkup}/reports/{report}")),
            }
        }
        Written::Verify { patients } => return Err(patients),
    })
}

fn identity_conflict(conflict: IdentityConflict) -> UploadOutcome {
    UploadOutcome::Conflict {
        detail: conflict.detail,
        pointer: Some(conflict.pointer),
    }
}

/// The stored result of upload `id` if `clinic_id`'s devices sent it, with its commit LSN.
pub async fn find(
    pool: &Pool,
    id: Uuid,
    clinic_id: Uuid,
) -> Result<Option<UploadResult>, StoreError> {
    let client = connection(pool).await?;
    let row = client
        .query_opt(
            "SELECT u.result FROM uploads u JOIN devices d ON d.id = u.device_id \
             WHERE u.id = $1 AND d.clinic_id = $2",
            &[&id, &clinic_id],
        )
        .await
        .map_err(|error| StoreError::from_postgres("reading an upload", error))?;
    let Some(row) = row else { return Ok(None) };
    let result = parse_result(row.get(0))?;
    if result.commit_lsn.is_some() {
        return Ok(Some(result));
    }
    record_commit_lsn(&client, result).await.map(Some)
}

/// Whether the CDC slot `slot` has confirmed a position at or after `lsn`.
pub async fn is_replicated(pool: &Pool, slot: &str, lsn: &str) -> Result<bool, StoreError> {
    let client = connection(pool).await?;
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot, &lsn],
        )
        .await
        .map_err(|error| StoreError::from_postgres("reading the CDC slot", error))?;
    Ok(row
        .and_then(|row| row.get::<_, Option<bool>>(0))
        .unwrap_or(false))
}

/// The upload as `store_upload()`'s array parameters, built once for every attempt.
struct Columns<'u> {
    upload_id: Uuid,
    patient_ids: Vec<Uuid>,
    patient_checkups: Vec<i32>,
    patient_refs: Vec<&'u str>,
    patient_names: Vec<&'u str>,
    patient_births: Vec<Date>,
    patient_sexes: Vec<&'static str>,
    patient_phones: Vec<Option<&'u str>>,
    patient_phones_sent: Vec<bool>,
    patient_emails: Vec<Option<&'u str>>,
    patient_emails_sent: Vec<bool>,
    checkup_ids: Vec<Uuid>,
    checkup_patients: Vec<Uuid>,
    checkup_starts: Vec<OffsetDateTime>,
    checkup_ends: Vec<Option<OffsetDateTime>>,
    report_ids: Vec<Uuid>,
    report_checkups: Vec<Uuid>,
    report_patients: Vec<Uuid>,
    report_checkup_indexes: Vec<i32>,
    report_indexes: Vec<i32>,
    report_types: Vec<&'static str>,
    report_serials: Vec<&'u str>,
    report_taken: Vec<OffsetDateTime>,
    report_notes: Vec<Option<&'u str>>,
    report_raws: Vec<&'u serde_json::Value>,
    measurement_reports: Vec<Uuid>,
    measurement_codes: Vec<&'static str>,
    measurement_names: Vec<&'static str>,
    measurement_values: Vec<f64>,
    measurement_units: Vec<&'static str>,
    measurement_lows: Vec<Option<f64>>,
    measurement_highs: Vec<Option<f64>>,
    measurement_flags: Vec<Option<&'static str>>,
}

/// A merge patch as `store_upload()` takes it: the value, and whether the member was sent.
fn patch(patch: &Patch<String>) -> (Option<&str>, bool) {
    match patch {
        Patch::Keep => (None, false),
        Patch::Clear => (None, true),
        Patch::Set(value) => (Some(value.as_str()), true),
    }
}

/// An index as an SQL `int` (upload limits keep every index far below `i32::MAX`).
fn index(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

impl<'u> Columns<'u> {
    fn of(upload: &'u Upload) -> Self {
        let patients = patients::named(upload);
        let reports: Vec<(
            usize,
            usize,
            &crate::upload::Checkup,
            &crate::upload::Report,
        )> = upload
            .checkups
            .iter()
            .enumerate()
            .flat_map(|(c, checkup)| {
                checkup
                    .reports
                    .iter()
                    .enumerate()
                    .map(move |(r, report)| (c, r, checkup, report))
            })
            .collect();
        let measurements: Vec<(Uuid, &crate::upload::Measurement)> = reports
            .iter()
            .flat_map(|(_, _, _, report)| report.measurements.iter().map(|m| (report.id, m)))
            .collect();
        Columns {
            upload_id: upload.upload_id,
            patient_ids: patients.iter().map(|(_, p)| p.id).collect(),
            patient_checkups: patients.iter().map(|(i, _)| index(*i)).collect(),
            patient_refs: patients
                .iter()
                .map(|(_, p)| p.external_ref.as_str())
                .collect(),
            patient_names: patients.iter().map(|(_, p)| p.full_name.as_str()).collect(),
            patient_births: patients.iter().map(|(_, p)| p.birth_date).collect(),
            patient_sexes: patients.iter().map(|(_, p)| p.sex.as_str()).collect(),
            patient_phones: patients.iter().map(|(_, p)| patch(&p.phone).0).collect(),
            patient_phones_sent: patients.iter().map(|(_, p)| patch(&p.phone).1).collect(),
            patient_emails: patients.iter().map(|(_, p)| patch(&p.email).0).collect(),
            patient_emails_sent: patients.iter().map(|(_, p)| patch(&p.email).1).collect(),
            checkup_ids: upload.checkups.iter().map(|c| c.id).collect(),
            checkup_patients: upload.checkups.iter().map(|c| c.patient.id).collect(),
            checkup_starts: upload.checkups.iter().map(|c| c.started_at).collect(),
            checkup_ends: upload.checkups.iter().map(|c| c.completed_at).collect(),
            report_ids: reports.iter().map(|(.., r)| r.id).collect(),
            report_checkups: reports.iter().map(|(_, _, c, _)| c.id).collect(),
            report_patients: reports.iter().map(|(_, _, c, _)| c.patient.id).collect(),
            report_checkup_indexes: reports.iter().map(|(c, ..)| index(*c)).collect(),
            report_indexes: reports.iter().map(|(_, r, ..)| index(*r)).collect(),
            report_types: reports
                .iter()
                .map(|(.., r)| r.instrument.as_str())
                .collect(),
            report_serials: reports.iter().map(|(.., r)| r.serial.as_str()).collect(),
            report_taken: reports.iter().map(|(.., r)| r.taken_at).collect(),
            report_notes: reports.iter().map(|(.., r)| r.notes.as_deref()).collect(),
            report_raws: reports.iter().map(|(.., r)| &r.raw).collect(),
            measurement_reports: measurements.iter().map(|(id, _)| *id).collect(),
            measurement_codes: measurements.iter().map(|(_, m)| m.code.code).collect(),
            measurement_names: measurements.iter().map(|(_, m)| m.code.display).collect(),
            measurement_values: measurements.iter().map(|(_, m)| m.value).collect(),
            measurement_units: measurements.iter().map(|(_, m)| m.code.unit).collect(),
            measurement_lows: measurements
                .iter()
                .map(|(_, m)| m.reference().map(|r| r.low))
                .collect(),
            measurement_highs: measurements
                .iter()
                .map(|(_, m)| m.reference().map(|r| r.high))
                .collect(),
            measurement_flags: measurements
                .iter()
                .map(|(_, m)| m.flag().map(|f| f.as_str()))
                .collect(),
        }
    }

    /// The parameters of [`STORE`], in order.
    fn params<'a>(
        &'a self,
        device: &'a Device,
        body_sha256: &'a &'a [u8],
        verified: &'a Verified,
    ) -> [&'a (dyn ToSql + Sync); 38] {
        [
            &self.upload_id,
            &device.id,
            &device.clinic_id,
            body_sha256,
            &self.patient_ids,
            &self.patient_checkups,
            &self.patient_refs,
            &self.patient_names,
            &self.patient_births,
            &self.patient_sexes,
            &self.patient_phones,
            &self.patient_phones_sent,
            &self.patient_emails,
            &self.patient_emails_sent,
            &verified.ids,
            &verified.names,
            &self.checkup_ids,
            &self.checkup_patients,
            &self.checkup_starts,
            &self.checkup_ends,
            &self.report_ids,
            &self.report_checkups,
            &self.report_patients,
            &self.report_checkup_indexes,
            &self.report_indexes,
            &self.report_types,
            &self.report_serials,
            &self.report_taken,
            &self.report_notes,
            &self.report_raws,
            &self.measurement_reports,
            &self.measurement_codes,
            &self.measurement_names,
            &self.measurement_values,
            &self.measurement_units,
            &self.measurement_lows,
            &self.measurement_highs,
            &self.measurement_flags,
        ]
    }
}

/// Records (once) the WAL position after the upload's commit in its ledger row.
async fn record_commit_lsn(
    client: &tokio_postgres::Client,
    mut result: UploadResult,
) -> Result<UploadResult, StoreError> {
    let lsn = wal_position_after_commit(client).await?;
    let row = client
        .query_one(
            "UPDATE uploads SET commit_lsn = COALESCE(commit_lsn, $2::text::pg_lsn), \
                 result = jsonb_set(result, '{commit_lsn}', \
                                    to_jsonb(COALESCE(commit_lsn, $2::text::pg_lsn)::text)) \
             WHERE id = $1 RETURNING commit_lsn::text",
            &[&result.upload_id, &lsn],
        )
        .await
        .map_err(|error| StoreError::from_postgres("recording the commit LSN", error))?;
    result.commit_lsn = row.get(0);
    Ok(result)
}

fn parse_result(value: serde_json::Value) -> Result<UploadResult, StoreError> {
    serde_json::from_value(value)
        .map_err(|error| StoreError::Unreadable(format!("upload ledger row: {error}")))
}
