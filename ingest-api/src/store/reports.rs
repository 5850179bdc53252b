//! Amending and deleting one stored report. Only a device of the report's clinic may do either;
//! the report row is locked first so that the check and the change see the same report.

use clinical_catalogue::InstrumentType;
use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use super::devices::Device;
use super::{StoreError, connection, wal_position_after_commit};
use crate::upload::Amendment;

/// The stored report a change applies to, as far as the change needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredReport {
    /// The instrument that took it (amended measurements must fit it).
    pub instrument: InstrumentType,
}

/// What became of a change to a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportChange {
    /// Done; the read store has it once the CDC checkpoint reaches `commit_lsn`.
    Done {
        /// The WAL position after the commit.
        commit_lsn: String,
    },
    /// No such report.
    NotFound,
    /// The report belongs to another clinic.
    Forbidden,
    /// The amendment does not fit the report (e.g. a code its instrument cannot report);
    /// `check` returned these problems, and nothing was changed.
    Invalid(Vec<service_plumbing::problem::FieldError>),
}

/// Applies `amendment` to report `id` on behalf of `device`. `check` validates the amendment
/// against the stored report before anything is written.
pub async fn amend(
    pool: &Pool,
    device: Device,
    id: Uuid,
    amendment: &Amendment,
    check: impl Fn(StoredReport) -> Vec<service_plumbing::problem::FieldError>,
) -> Result<ReportChange, StoreError> {
    let mut client = connection(pool).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(|error| StoreError::from_postgres("beginning an amendment", error))?;
    let report = match lock_report(&transaction, device, id).await? {
        Ok(report) => report,
        Err(refusal) => return Ok(refusal),
    };
    let problems = check(report);
    if !problems.is_empty() {
        return Ok(ReportChange::Invalid(problems));
    }

    let (replace_notes, notes) = match &amendment.notes {
        None => (false, None),
        Some(notes) => (true, notes.as_deref()),
    };
    transaction
        .execute(
            "UPDATE reports SET status = $2, \
                 notes = CASE WHEN $3 THEN $4 ELSE notes END, updated_at = now() \
             WHERE id = $1",
            &[&id, &amendment.status.as_str(), &replace_notes, &notes],
        )
        .await
        .map_err(|error| StoreError::from_postgres("amending a report", error))?;
    if let Some(measurements) = &amendment.measurements {
        let codes: Vec<&str> = measurements.iter().map(|m| m.code.code).collect();
        transaction
            .execute(
                "DELETE FROM measurements WHERE report_id = $1 AND code <> ALL($2::text[])",
                &[&id, &codes],
            )
            .await
            .map_err(|error| StoreError::from_postgres("replacing measurements", error))?;
        let rows: Vec<_> = measurements.iter().map(|m| (id, m)).collect();
        insert_measurements(&transaction, &rows).await?;
    }
    transaction
        .commit()
        .await
        .map_err(|error| StoreError::from_postgres("committing an amendment", error))?;
    let commit_lsn = wal_position_after_commit(&client).await?;
    Ok(ReportChange::Done { commit_lsn })
}

/// Deletes report `id` (and its measurements) on behalf of `device`.
pub async fn delete(pool: &Pool, device: Device, id: Uuid) -> Result<ReportChange, StoreError> {
    let mut client = connection(pool).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(|error| StoreError::from_postgres("beginning a delete", error))?;
    if let Err(refusal) = lock_report(&transaction, device, id).await? {
        return Ok(refusal);
    }
    transaction
        .execute("DELETE FROM reports WHERE id = $1", &[&id])
        .await
        .map_err(|error| StoreError::from_postgres("deleting a report", error))?;
    transaction
        .commit()
        .await
        .map_err(|error| StoreError::from_postgres("committing a delete", error))?;
    let commit_lsn = wal_position_after_commit(&client).await?;
    Ok(ReportChange::Done { commit_lsn })
}

/// Locks report `id` for the rest of the transaction if `device` may change it.
async fn lock_report(
    transaction: &Transaction<'_>,
    device: Device,
    id: Uuid,
) -> Result<Result<StoredReport, ReportChange>, StoreError> {
    let row = transaction
        .query_opt(
            "SELECT r.instrument_type, c.clinic_id FROM reports r \
             JOIN checkups c ON c.id = r.checkup_id WHERE r.id = $1 FOR UPDATE OF r",
            &[&id],
        )
        .await
        .map_err(|error| StoreError::from_postgres("locking a report", error))?;
    let Some(row) = row else {
        return Ok(Err(ReportChange::NotFound));
    };
    if row.get::<_, Uuid>(1) != device.clinic_id {
        return Ok(Err(ReportChange::Forbidden));
    }
    let name: &str = row.get(0);
    let instrument = InstrumentType::parse(name)
        .ok_or_else(|| StoreError::Unreadable(format!("instrument type {name:?}")))?;
    Ok(Ok(StoredReport { instrument }))
}

/// Inserts `(report id, measurement)` rows, or updates the stored row of the same code when it
/// differs (an amendment replacing a value).
async fn insert_measurements(
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
