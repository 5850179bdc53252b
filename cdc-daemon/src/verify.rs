//! `cdc-daemon verify`: recomputes from PostgreSQL what the store should hold and compares.
//!
//! The expected documents come from one consistent snapshot (a repeatable-read transaction)
//! and one join over the published tables, built into documents by the same functions the
//! streaming mapping uses. Before comparing, verify waits (up to a timeout) until the daemon's
//! checkpoint has reached the snapshot's WAL position, so a quiet system verifies with zero
//! differences; under continuing writes, changes newer than the snapshot show up as
//! differences. `_cdc` bookkeeping is not compared; an empty `measurements` or `latest` equals
//! a missing one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document};
use mongodb::error::ErrorKind;
use read_model::{PATIENTS, REPORTS};

use crate::decode::relations::Row;
use crate::decode::values::Value;
use crate::mapping::documents::{self, ReportValues};

/// One document that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The read-model collection holding (or missing) the document.
    pub collection: &'static str,
    /// The document's `_id` (the source row's id).
    pub id: String,
    /// What differs.
    pub detail: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.collection, self.id, self.detail)
    }
}

/// Verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// PostgreSQL failed.
    #[error("failed to read the source: {0}")]
    Source(#[from] tokio_postgres::Error),
    /// The store failed.
    #[error("failed to read the store: {0}")]
    Store(#[from] mongodb::error::Error),
    /// A source row could not become a document.
    #[error("a source row cannot be mapped: {0}")]
    Mapping(#[from] documents::FieldError),
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] read_model::checkpoint::CheckpointError),
}

const REPORTS_SQL: &str = "
SELECT r.id, r.patient_id, r.checkup_id, r.instrument_type, r.instrument_serial, r.taken_at,
       r.status, r.notes, r.raw::text,
       p.external_ref, p.full_name, p.birth_date, p.sex,
       c.clinic_id, cl.name, c.device_id, d.label, c.started_at, c.completed_at,
       m.code, m.display_name, m.value::text, m.unit, m.reference_low::text,
       m.reference_high::text, m.flag, pc.external_ref
FROM reports r
JOIN patients p ON p.id = r.patient_id
JOIN checkups c ON c.id = r.checkup_id
JOIN clinics cl ON cl.id = c.clinic_id
JOIN devices d ON d.id = c.device_id
LEFT JOIN patient_clinics pc ON pc.patient_id = r.patient_id AND pc.clinic_id = c.clinic_id
LEFT JOIN measurements m ON m.report_id = r.id
ORDER BY r.id";

const PATIENTS_SQL: &str =
    "SELECT id, external_ref, full_name, birth_date, sex, phone, email FROM patients";

/// Compares the store with the source; waits up to `wait` for the checkpoint of `slot` to
/// reach the snapshot first.
pub async fn verify(
    source: &tokio_postgres::Client,
    store: &Database,
    slot: &str,
    wait: Duration,
) -> Result<Vec<Difference>, VerifyError> {
    source
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let snapshot_lsn: String = source
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let report_rows = source.query(REPORTS_SQL, &[]).await?;
    let patient_rows = source.query(PATIENTS_SQL, &[]).await?;
    source.batch_execute("COMMIT").await?;

    let (expected_reports, values) = expected_reports(&report_rows)?;
    let expected_patients = expected_patients(&patient_rows, &values)?;

    wait_for_checkpoint(
        store,
        slot,
        read_model::lsn::parse(&snapshot_lsn).unwrap_or(0),
        wait,
    )
    .await?;
    let mut differences = compare(
        REPORTS,
        &expected_reports,
        &actual(store, REPORTS).await?,
        "measurements",
    );
    differences.extend(compare(
        PATIENTS,
        &expected_patients,
        &actual(store, PATIENTS).await?,
        "latest",
    ));
    Ok(differences)
}

async fn wait_for_checkpoint(
    store: &Database,
    slot: &str,
    lsn: u64,
    wait: Duration,
) -> Result<(), VerifyError> {
    let started = Instant::now();
    loop {
        let reached = read_model::checkpoint::load(store, slot)
            .await?
            .is_some_and(|checkpoint| checkpoint.lsn >= lsn);
        if reached || started.elapsed() >= wait {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(values: Vec<(&str, Value)>) -> Row<'_> {
    values.into_iter().collect()
}

fn text(value: Option<String>) -> Value {
    value.map_or(Value::Null, Value::Text)
}

fn numeric(value: Option<String>) -> Value {
    value.map_or(Value::Null, Value::Numeric)
}

type Expected = BTreeMap<String, Document>;

fn expected_reports(
    rows: &[tokio_postgres::Row],
) -> Result<(Expected, BTreeMap<String, Vec<ReportValues>>), VerifyError> {
    let mut reports = Expected::new();
    let mut values: BTreeMap<String, Vec<ReportValues>> = BTreeMap::new();
    for source in rows {
        let id: uuid::Uuid = source.get(0);
        let key = id.to_string();
        if !reports.contains_key(&key) {
            let report = row(vec![
                ("id", Value::Uuid(id)),
                ("patient_id", Value::Uuid(source.get(1))),
                ("checkup_id", Value::Uuid(source.get(2))),
                ("instrument_type", Value::Text(source.get(3))),
                ("instrument_serial", Value::Text(source.get(4))),
                ("taken_at", Value::TimestampTz(source.get(5))),
                ("status", Value::Text(source.get(6))),
                ("notes", text(source.get(7))),
                ("raw", Value::Json(source.get(8))),
            ]);
            let patient = row(vec![
                ("id", Value::Uuid(source.get(1))),
                ("external_ref", Value::Text(source.get(9))),
                ("full_name", Value::Text(source.get(10))),
                ("birth_date", Value::Date(source.get(11))),
                ("sex", Value::Text(source.get(12))),
            ]);
            let checkup = row(vec![
                ("patient_id", Value::Uuid(source.get(1))),
                ("clinic_id", Value::Uuid(source.get(13))),
                ("device_id", Value::Uuid(source.get(15))),
                ("started_at", Value::TimestampTz(source.get(17))),
                (
                    "completed_at",
                    source
                        .get::<_, Option<time::OffsetDateTime>>(18)
                        .map_or(Value::Null, Value::TimestampTz),
                ),
            ]);
            let checkup_id = source.get::<_, uuid::Uuid>(2).to_string();
            let mut document = documents::report_fields(&report)?;
            document.insert("patient", documents::patient_snapshot(&patient)?);
            document.insert(
                "checkup",
                documents::checkup_embedded(
                    &checkup_id,
                    &documents::checkup_fields(&checkup)?,
                    source.get(14),
                    source.get(16),
                    source.get(26),
                ),
            );
            document.insert("measurements", Document::new());
            reports.insert(key.clone(), document);
        }
        if let Some(code) = source.get::<_, Option<String>>(19) {
            let measurement = row(vec![
                ("code", Value::Text(code)),
                ("display_name", Value::Text(source.get(20))),
                ("value", numeric(source.get(21))),
                ("unit", Value::Text(source.get(22))),
                ("reference_low", numeric(source.get(23))),
                ("reference_high", numeric(source.get(24))),
                ("flag", text(source.get(25))),
            ]);
            let (code, fields) = documents::measurement(&measurement)?;
            if let Some(Bson::Document(measurements)) = reports
                .get_mut(&key)
                .and_then(|document| document.get_mut("measurements"))
            {
                measurements.insert(code, fields);
            }
        }
    }
    for (id, document) in &reports {
        let patient_id = document
            .get_str("patient_id")
            .unwrap_or_default()
            .to_string();
        values.entry(patient_id).or_default().push(ReportValues {
            report_id: id.clone(),
            taken_at: *document.get_datetime("taken_at").unwrap_or(&DateTime::MIN),
            entered_in_error: document
                .get_str("status")
                .is_ok_and(|status| status == "entered-in-error"),
            measurements: document
                .get_document("measurements")
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok((reports, values))
}

fn expected_patients(
    rows: &[tokio_postgres::Row],
    reports: &BTreeMap<String, Vec<ReportValues>>,
) -> Result<Expected, VerifyError> {
    let mut patients = Expected::new();
    for source in rows {
        let id: uuid::Uuid = source.get(0);
        let patient = row(vec![
            ("id", Value::Uuid(id)),
            ("external_ref", Value::Text(source.get(1))),
            ("full_name", Value::Text(source.get(2))),
            ("birth_date", Value::Date(source.get(3))),
            ("sex", Value::Text(source.get(4))),
            ("phone", text(source.get(5))),
            ("email", text(source.get(6))),
        ]);
        let mut document = documents::patient_fields(&patient);
        let key = id.to_string();
        let latest = documents::latest(reports.get(&key).map(Vec::as_slice).unwrap_or_default());
        document.insert("latest", latest);
        patients.insert(key, document);
    }
    Ok(patients)
}

/// Every document of `collection` by id, without `_id` and `_cdc`.
/// The store's code for a cursor it no longer has.
const CURSOR_NOT_FOUND: i32 = 43;

/// Scans of one collection before a store that keeps losing its cursors fails the verify.
const SCANS: usize = 3;

/// Every document of `collection` by id, without `_cdc`. A scan whose cursor the store lost
/// (`CursorNotFound`) starts again: FerretDB closes a cursor with the connection that opened
/// it, and after a store restart the driver may send the `getMore` on another connection.
async fn actual(store: &Database, collection: &str) -> Result<Expected, VerifyError> {
    let mut scans = 1;
    loop {
        match scan(store, collection).await {
            Err(error) if scans < SCANS && is_cursor_not_found(&error) => scans += 1,
            outcome => return Ok(outcome?),
        }
    }
}

fn is_cursor_not_found(error: &mongodb::error::Error) -> bool {
    matches!(&*error.kind, ErrorKind::Command(command) if command.code == CURSOR_NOT_FOUND)
}

async fn scan(store: &Database, collection: &str) -> Result<Expected, mongodb::error::Error> {
    let mut cursor = store
        .collection::<Document>(collection)
        .find(Document::new())
        .await?;
    let mut documents = Expected::new();
    while cursor.advance().await? {
        let mut document = cursor.deserialize_current()?;
        let id = match document.remove("_id") {
            Some(Bson::String(id)) => id,
            Some(other) => other.to_string(),
            None => continue,
        };
        document.remove("_cdc");
        documents.insert(id, document);
    }
    Ok(documents)
}

fn compare(
    collection: &'static str,
    expected: &Expected,
    actual: &Expected,
    map_field: &str,
) -> Vec<Difference> {
    let normalize = |document: &Document| {
        let mut document = document.clone();
        if !matches!(document.get(map_field), Some(Bson::Document(_))) {
            document.insert(map_field, Document::new());
        }
        document
    };
    let mut differences = Vec::new();
    for (id, wanted) in expected {
        let difference = |detail: String| Difference {
            collection,
            id: id.clone(),
            detail,
        };
        match actual.get(id) {
            None => differences.push(difference("missing from the store".to_string())),
            Some(found) => {
                let (wanted, found) = (normalize(wanted), normalize(found));
                if wanted != found {
                    differences.push(difference(describe(&wanted, &found)));
                }
            }
        }
    }
    for id in actual.keys().filter(|id| !expected.contains_key(*id)) {
        differences.push(Difference {
            collection,
            id: id.clone(),
            detail: "in the store but not in the source".to_string(),
        });
    }
    differences
}

/// The fields that differ, down to the innermost differing path (`latest.8480-6.value`).
fn describe(expected: &Document, actual: &Document) -> String {
    let mut differences = Vec::new();
    differing_paths("", expected, actual, &mut differences);
    differences.join("; ")
}

fn differing_paths(prefix: &str, expected: &Document, actual: &Document, out: &mut Vec<String>) {
    let mut fields: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    fields.sort();
    fields.dedup();
    let shorten = |value: Option<&Bson>| {
        let text = value.map_or("(absent)".to_string(), |value| value.to_string());
        if text.chars().count() > 200 {
            format!("{}…", text.chars().take(200).collect::<String>())
        } else {
            text
        }
    };
    for field in fields {
        let (left, right) = (expected.get(field.as_str()), actual.get(field.as_str()));
        if left == right {
            continue;
        }
        let path = format!("{prefix}{field}");
        match (left, right) {
            (Some(Bson::Document(left)), Some(Bson::Document(right))) => {
                differing_paths(&format!("{path}."), left, right, out);
            }
            _ => out.push(format!(
                "{path}: expected {}, found {}",
                shorten(left),
                shorten(right)
            )),
        }
    }
}
