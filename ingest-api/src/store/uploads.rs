//! One upload in one transaction, idempotent by upload id.
//!
//! The transaction takes an advisory lock on the upload id, so two copies of the same upload
//! racing each other are serialized: the first writes, the second finds the ledger row and
//! replays its result. Then, with one statement per table: patients are created, linked to the
//! clinic or changed under the clinic rule of [`super::patients`] (a row changes only when a
//! value did, so the CDC stream carries no empty updates; a refused patient writes nothing),
//! checkups inserted (an existing checkup must belong to the same patient and clinic), reports
//! already stored with identical content skipped (different content is a conflict), new reports
//! and their measurements inserted, and the ledger row written. After the commit, the ledger gets
//! the WAL position the read store must reach for the upload to be visible there.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, Transaction};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::devices::Device;
use super::{StoreError, connection, patients, wal_position_after_commit};
use crate::upload::{Report, Upload};

/// How often a transaction that lost a race (unique violation, deadlock) is run again.
const ATTEMPTS: usize = 3;

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
    let mut client = connection(pool).await?;
    let mut attempt = 1;
    let outcome = loop {
        let transaction = client
            .transaction()
            .await
            .map_err(|error| StoreError::from_postgres("beginning an upload", error))?;
        match write(transaction, device, upload, &body_sha256).await {
            Err(error) if error.is_retryable() && attempt < ATTEMPTS => attempt += 1,
            other => break other?,
        }
    };
    // Written now, or replayed from a process that stopped between its commit and recording
    // the commit LSN: record it now.
    Ok(match outcome {
        UploadOutcome::Created(result) if result.commit_lsn.is_none() => {
            UploadOutcome::Created(record_commit_lsn(&client, result).await?)
        }
        UploadOutcome::Replayed(result) if result.commit_lsn.is_none() => {
            UploadOutcome::Replayed(record_commit_lsn(&client, result).await?)
        }
        other => other,
    })
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

async fn write(
    transaction: Transaction<'_>,
    device: Device,
    upload: &Upload,
    body_sha256: &[u8; 32],
) -> Result<UploadOutcome, StoreError> {
    let db = |context| move |error| StoreError::from_postgres(context, error);
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))",
            &[&upload.upload_id],
        )
        .await
        .map_err(db("locking the upload id"))?;
    let previous = transaction
        .query_opt(
            "SELECT device_id, body_sha256, result FROM uploads WHERE id = $1",
            &[&upload.upload_id],
        )
        .await
        .map_err(db("reading the upload ledger"))?;
    if let Some(row) = previous {
        let (device_id, hash): (Uuid, &[u8]) = (row.get(0), row.get(1));
        if device_id == device.id && hash == body_sha256.as_slice() {
            return Ok(UploadOutcome::Replayed(parse_result(row.get(2))?));
        }
        return Ok(UploadOutcome::Conflict {
            detail: format!(
                "upload {} was already received with a different body or from another device; \
                 a new upload needs a new upload_id",
                upload.upload_id
            ),
            pointer: Some("/upload_id".to_string()),
        });
    }

    if let Err(conflict) = patients::apply(&transaction, device, upload).await? {
        return Ok(UploadOutcome::Conflict {
            detail: conflict.detail,
            pointer: Some(conflict.pointer),
        });
    }
    if let Some(conflict) = insert_checkups(&transaction, device, upload).await? {
        return Ok(conflict);
    }
    let duplicates = match stored_duplicates(&transaction, upload).await? {
        Ok(duplicates) => duplicates,
        Err(conflict) => return Ok(conflict),
    };
    let (reports, measurements) = insert_reports(&transaction, upload, &duplicates).await?;

    let result = UploadResult {
        upload_id: upload.upload_id,
        checkups: upload.checkups.len(),
        reports,
        measurements,
        duplicate_reports: duplicates.len(),
        commit_lsn: None,
    };
    let stored = serde_json::to_value(&result)
        .map_err(|error| StoreError::Unreadable(format!("upload result: {error}")))?;
    transaction
        .execute(
            "INSERT INTO uploads (id, device_id, body_sha256, result) VALUES ($1, $2, $3, $4)",
            &[
                &upload.upload_id,
                &device.id,
                &body_sha256.as_slice(),
                &stored,
            ],
        )
        .await
        .map_err(db("writing the upload ledger"))?;
    transaction
        .commit()
        .await
        .map_err(db("committing an upload"))?;
    Ok(UploadOutcome::Created(result))
}

/// Inserts new checkups; a checkup id already stored must be the same patient's visit at the
/// same clinic (a later upload may add reports to it), else the upload is a conflict.
async fn insert_checkups(
    transaction: &Transaction<'_>,
    device: Device,
    upload: &Upload,
) -> Result<Option<UploadOutcome>, StoreError> {
    let statement = transaction
        .prepare_cached(
            "WITH new AS ( \
                 INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at, completed_at) \
                 SELECT u.id, u.patient_id, $5, $6, u.started_at, u.completed_at \
                 FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[]) \
                      AS u(id, patient_id, started_at, completed_at) \
                 ON CONFLICT (id) DO NOTHING RETURNING id) \
             SELECT c.id, c.patient_id, c.clinic_id FROM checkups c \
             WHERE c.id = ANY($1) AND c.id NOT IN (SELECT id FROM new)",
        )
        .await
        .map_err(|error| StoreError::from_postgres("preparing the checkup insert", error))?;
    let ids: Vec<Uuid> = upload.checkups.iter().map(|c| c.id).collect();
    let patients: Vec<Uuid> = upload.checkups.iter().map(|c| c.patient.id).collect();
    let started: Vec<OffsetDateTime> = upload.checkups.iter().map(|c| c.started_at).collect();
    let completed: Vec<Option<OffsetDateTime>> =
        upload.checkups.iter().map(|c| c.completed_at).collect();
    let existing = transaction
        .query(
            &statement,
            &[
                &ids,
                &patients,
                &started,
                &completed,
                &device.clinic_id,
                &device.id,
            ],
        )
        .await
        .map_err(|error| StoreError::from_postgres("inserting checkups", error))?;
    for row in existing {
        let (id, patient_id, clinic_id): (Uuid, Uuid, Uuid) = (row.get(0), row.get(1), row.get(2));
        let Some(index) = upload.checkups.iter().position(|c| c.id == id) else {
            continue;
        };
        if patient_id != upload.checkups[index].patient.id || clinic_id != device.clinic_id {
            return Ok(Some(UploadOutcome::Conflict {
                detail: format!("checkup {id} is already stored for another patient or clinic"),
                pointer: Some(format!("/checkups/{index}/id")),
            }));
        }
    }
    Ok(None)
}

/// The ids of the upload's reports that are already stored with identical content, or the
/// conflict if one is stored with different content.
async fn stored_duplicates(
    transaction: &Transaction<'_>,
    upload: &Upload,
) -> Result<Result<HashSet<Uuid>, UploadOutcome>, StoreError> {
    let statement = transaction
        .prepare_cached(
            "SELECT r.id, r.checkup_id, r.instrument_type, r.instrument_serial, r.taken_at, \
                    r.notes, r.raw, \
                    array_agg(m.code ORDER BY m.code) FILTER (WHERE m.code IS NOT NULL), \
                    array_agg(m.value::float8 ORDER BY m.code) FILTER (WHERE m.code IS NOT NULL) \
             FROM reports r LEFT JOIN measurements m ON m.report_id = r.id \
             WHERE r.id = ANY($1) GROUP BY r.id",
        )
        .await
        .map_err(|error| StoreError::from_postgres("preparing the duplicate check", error))?;
    let ids: Vec<Uuid> = upload
        .checkups
        .iter()
        .flat_map(|checkup| checkup.reports.iter().map(|report| report.id))
        .collect();
    let rows = transaction
        .query(&statement, &[&ids])
        .await
        .map_err(|error| StoreError::from_postgres("looking for stored reports", error))?;
    let stored: HashMap<Uuid, tokio_postgres::Row> =
        rows.into_iter().map(|row| (row.get(0), row)).collect();

    let mut duplicates = HashSet::new();
    for (checkup_index, checkup) in upload.checkups.iter().enumerate() {
        for (report_index, report) in checkup.reports.iter().enumerate() {
            let Some(row) = stored.get(&report.id) else {
                continue;
            };
            if same_report(row, checkup.id, report) {
                duplicates.insert(report.id);
            } else {
                return Ok(Err(UploadOutcome::Conflict {
                    detail: format!(
                        "report {} is already stored with different content; amend it with \
                         PATCH /v1/reports/{} instead",
                        report.id, report.id
                    ),
                    pointer: Some(format!("/checkups/{checkup_index}/reports/{report_index}")),
                }));
            }
        }
    }
    Ok(Ok(duplicates))
}

/// Whether a stored report (a row of the duplicate check) is the uploaded one.
fn same_report(row: &tokio_postgres::Row, checkup_id: Uuid, report: &Report) -> bool {
    let codes: Option<Vec<String>> = row.get(7);
    let values: Option<Vec<f64>> = row.get(8);
    let stored: Vec<(String, f64)> = codes
        .unwrap_or_default()
        .into_iter()
        .zip(values.unwrap_or_default())
        .collect();
    let mut uploaded: Vec<(String, f64)> = report
        .measurements
        .iter()
        .map(|m| (m.code.code.to_string(), m.value))
        .collect();
    uploaded.sort_by(|a, b| a.0.cmp(&b.0));
    row.get::<_, Uuid>(1) == checkup_id
        && row.get::<_, &str>(2) == report.instrument.as_str()
        && row.get::<_, &str>(3) == report.serial
        && row.get::<_, OffsetDateTime>(4) == report.taken_at
        && row.get::<_, Option<&str>>(5) == report.notes.as_deref()
        && row.get::<_, serde_json::Value>(6) == report.raw
        && stored == uploaded
}

/// Inserts the reports not in `duplicates` and their measurements; returns both counts.
async fn insert_reports(
    transaction: &Transaction<'_>,
    upload: &Upload,
    duplicates: &HashSet<Uuid>,
) -> Result<(usize, usize), StoreError> {
    let new: Vec<(Uuid, Uuid, &Report)> = upload
        .checkups
        .iter()
        .flat_map(|checkup| {
            checkup
                .reports
                .iter()
                .map(move |report| (checkup.id, checkup.patient.id, report))
        })
        .filter(|(_, _, report)| !duplicates.contains(&report.id))
        .collect();
    if new.is_empty() {
        return Ok((0, 0));
    }
    let reports = transaction
        .prepare_cached(
            "INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial, \
                                  taken_at, notes, raw) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], \
                                  $6::timestamptz[], $7::text[], $8::jsonb[])",
        )
        .await
        .map_err(|error| StoreError::from_postgres("preparing the report insert", error))?;
    let ids: Vec<Uuid> = new.iter().map(|(_, _, r)| r.id).collect();
    let checkups: Vec<Uuid> = new.iter().map(|(c, _, _)| *c).collect();
    let patients: Vec<Uuid> = new.iter().map(|(_, p, _)| *p).collect();
    let types: Vec<&str> = new.iter().map(|(_, _, r)| r.instrument.as_str()).collect();
    let serials: Vec<&str> = new.iter().map(|(_, _, r)| r.serial.as_str()).collect();
    let taken: Vec<OffsetDateTime> = new.iter().map(|(_, _, r)| r.taken_at).collect();
    let notes: Vec<Option<&str>> = new.iter().map(|(_, _, r)| r.notes.as_deref()).collect();
    let raws: Vec<&serde_json::Value> = new.iter().map(|(_, _, r)| &r.raw).collect();
    transaction
        .execute(
            &reports,
            &[
                &ids, &checkups, &patients, &types, &serials, &taken, &notes, &raws,
            ],
        )
        .await
        .map_err(|error| StoreError::from_postgres("inserting reports", error))?;

    let measurements: Vec<_> = new
        .iter()
        .flat_map(|(_, _, report)| report.measurements.iter().map(move |m| (report.id, m)))
        .collect();
    insert_measurements(transaction, &measurements).await?;
    Ok((new.len(), measurements.len()))
}

/// Inserts `(report id, measurement)` rows, or updates the stored row of the same code when it
/// differs (an amendment replacing a value).
pub(crate) async fn insert_measurements(
    transaction: &Transaction<'_>,
    measurements: &[(Uuid, &crate::upload::Measurement)],
) -> Result<(), StoreError> {
    let statement = transaction
        .prepare_cached(
            "INSERT INTO measurements (report_id, code, display_name, value, unit, \
                                       reference_low, reference_high, flag) \
             SELECT u.report_id, u.code, u.display_name, u.value::numeric, u.unit, \
                    u.low::numeric, u.high::numeric, u.flag \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::text[], \
                         $6::float8[], $7::float8[], $8::text[]) \
                  AS u(report_id, code, display_name, value, unit, low, high, flag) \
             ON CONFLICT (report_id, code) DO UPDATE SET display_name = EXCLUDED.display_name, \
                 value = EXCLUDED.value, unit = EXCLUDED.unit, \
                 reference_low = EXCLUDED.reference_low, reference_high = EXCLUDED.reference_high, \
                 flag = EXCLUDED.flag \
             WHERE (measurements.display_name, measurements.value, measurements.unit, \
                    measurements.reference_low, measurements.reference_high, measurements.flag) \
                IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.value, EXCLUDED.unit, \
                    EXCLUDED.reference_low, EXCLUDED.reference_high, EXCLUDED.flag)",
        )
        .await
        .map_err(|error| StoreError::from_postgres("preparing the measurement insert", error))?;
    let reports: Vec<Uuid> = measurements.iter().map(|(id, _)| *id).collect();
    let codes: Vec<&str> = measurements.iter().map(|(_, m)| m.code.code).collect();
    let names: Vec<&str> = measurements.iter().map(|(_, m)| m.code.display).collect();
    let values: Vec<f64> = measurements.iter().map(|(_, m)| m.value).collect();
    let units: Vec<&str> = measurements.iter().map(|(_, m)| m.code.unit).collect();
    let lows: Vec<Option<f64>> = measurements
        .iter()
        .map(|(_, m)| m.reference().map(|r| r.low))
        .collect();
    let highs: Vec<Option<f64>> = measurements
        .iter()
        .map(|(_, m)| m.reference().map(|r| r.high))
        .collect();
    let flags: Vec<Option<&str>> = measurements
        .iter()
        .map(|(_, m)| m.flag().map(|f| f.as_str()))
        .collect();
    transaction
        .execute(
            &statement,
            &[
                &reports, &codes, &names, &values, &units, &lows, &highs, &flags,
            ],
        )
        .await
        .map_err(|error| StoreError::from_postgres("inserting measurements", error))?;
    Ok(())
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
