//! The reference for the ingest API: `pgbench` running, on the same server, the SQL one upload
//! executes (see `ingest-api/src/store/`): the device lookup by token hash, then in one
//! transaction the advisory lock on the upload id, the ledger check, the patient upsert, the
//! checkup insert, the duplicate-report check, the report and measurement inserts and the ledger
//! row; after the commit, the WAL position and its ledger update. The statements are the API's,
//! with the ids drawn fresh for every transaction (`gen_random_uuid()`) and the values of one
//! tablet upload, run with prepared statements like the API's pool.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// Writes the pgbench script for uploads like `upload` (a `devstack::tablet` upload) to `path`.
pub fn write_script(upload: &Value, path: &Path) -> Result<()> {
    let reports = upload["checkups"][0]["reports"]
        .as_array()
        .context("the upload has no reports")?;
    let ids: Vec<String> = (1..=reports.len()).map(|n| format!(":r{n}")).collect();
    let text_array = |values: Vec<String>| format!("ARRAY[{}]", values.join(", "));
    let quoted = |value: &Value| match value.as_str() {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => "NULL".to_string(),
    };
    let report_column = |field: &dyn Fn(&Value) -> String| {
        text_array(reports.iter().map(field).collect::<Vec<_>>())
    };
    let mut measurement_rows = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        for measurement in report["measurements"].as_array().into_iter().flatten() {
            let code = measurement["code"].as_str().unwrap_or_default();
            let value = measurement["value"].as_f64().unwrap_or_default();
            let entry = clinical_catalogue::lookup(code)
                .with_context(|| format!("code {code} is not catalogued"))?;
            let reference = entry.reference;
            // The measurement insert's columns, in order.
            measurement_rows.push([
                ids[index].clone(),
                format!("'{code}'"),
                format!("'{}'", entry.display),
                format!("{value}"),
                format!("'{}'", entry.unit),
                reference.map_or("NULL".to_string(), |r| format!("{}", r.low)),
                reference.map_or("NULL".to_string(), |r| format!("{}", r.high)),
                entry
                    .flag(value)
                    .map_or("NULL".to_string(), |flag| format!("'{}'", flag.as_str())),
            ]);
        }
    }
    let column = |index: usize| {
        text_array(
            measurement_rows
                .iter()
                .map(|row: &[String; 8]| row[index].clone())
                .collect(),
        )
    };
    let uuid_vars: Vec<String> = (1..=reports.len())
        .map(|n| format!("gen_random_uuid() AS r{n}"))
        .collect();
    let script = format!(
        r#"SELECT gen_random_uuid() AS upload_id, gen_random_uuid() AS patient_id, gen_random_uuid() AS checkup_id, {uuids}, (random() * 999999)::int AS mrn \gset
SELECT id AS device_id, clinic_id, token_sha256 FROM device_by_token_sha256(sha256(convert_to(:token, 'UTF8'))) \gset
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended(:upload_id::uuid::text, 0));
SELECT device_id, body_sha256, result FROM uploads WHERE id = :upload_id::uuid;
INSERT INTO patients (id, external_ref, full_name, birth_date, sex, phone, email) SELECT * FROM unnest(ARRAY[:patient_id]::uuid[], ARRAY['MRN-' || :mrn]::text[], ARRAY['Ada Lovelace']::text[], ARRAY['1980-05-17']::date[], ARRAY['female']::text[], ARRAY[NULL]::text[], ARRAY[NULL]::text[]) ON CONFLICT (id) DO UPDATE SET external_ref = EXCLUDED.external_ref, full_name = EXCLUDED.full_name, birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, phone = EXCLUDED.phone, email = EXCLUDED.email, updated_at = now() WHERE (patients.external_ref, patients.full_name, patients.birth_date, patients.sex, patients.phone, patients.email) IS DISTINCT FROM (EXCLUDED.external_ref, EXCLUDED.full_name, EXCLUDED.birth_date, EXCLUDED.sex, EXCLUDED.phone, EXCLUDED.email);
WITH new AS (INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at, completed_at) SELECT u.id, u.patient_id, :clinic_id::uuid, :device_id::uuid, u.started_at, u.completed_at FROM unnest(ARRAY[:checkup_id]::uuid[], ARRAY[:patient_id]::uuid[], ARRAY[now() - interval '15 minutes']::timestamptz[], ARRAY[now()]::timestamptz[]) AS u(id, patient_id, started_at, completed_at) ON CONFLICT (id) DO NOTHING RETURNING id) SELECT c.id, c.patient_id, c.clinic_id FROM checkups c WHERE c.id = ANY(ARRAY[:checkup_id]::uuid[]) AND c.id NOT IN (SELECT id FROM new);
SELECT r.id, r.checkup_id, r.instrument_type, r.instrument_serial, r.taken_at, r.notes, r.raw, array_agg(m.code ORDER BY m.code) FILTER (WHERE m.code IS NOT NULL), array_agg(m.value::float8 ORDER BY m.code) FILTER (WHERE m.code IS NOT NULL) FROM reports r LEFT JOIN measurements m ON m.report_id = r.id WHERE r.id = ANY({report_ids}::uuid[]) GROUP BY r.id;
INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial, taken_at, notes, raw) SELECT * FROM unnest({report_ids}::uuid[], {checkups}::uuid[], {patients}::uuid[], {types}::text[], {serials}::text[], {taken}::timestamptz[], {notes}::text[], {raws}::jsonb[]);
INSERT INTO measurements (report_id, code, display_name, value, unit, reference_low, reference_high, flag) SELECT u.report_id, u.code, u.display_name, u.value::numeric, u.unit, u.low::numeric, u.high::numeric, u.flag FROM unnest({m_reports}::uuid[], {m_codes}::text[], {m_names}::text[], {m_values}::float8[], {m_units}::text[], {m_lows}::float8[], {m_highs}::float8[], {m_flags}::text[]) AS u(report_id, code, display_name, value, unit, low, high, flag) ON CONFLICT (report_id, code) DO UPDATE SET display_name = EXCLUDED.display_name, value = EXCLUDED.value, unit = EXCLUDED.unit, reference_low = EXCLUDED.reference_low, reference_high = EXCLUDED.reference_high, flag = EXCLUDED.flag WHERE (measurements.display_name, measurements.value, measurements.unit, measurements.reference_low, measurements.reference_high, measurements.flag) IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.value, EXCLUDED.unit, EXCLUDED.reference_low, EXCLUDED.reference_high, EXCLUDED.flag);
INSERT INTO uploads (id, device_id, body_sha256, result) VALUES (:upload_id::uuid, :device_id::uuid, sha256(convert_to(:upload_id, 'UTF8')), jsonb_build_object('upload_id', :upload_id::text, 'checkups', 1, 'reports', {report_count}, 'measurements', {measurement_count}, 'duplicate_reports', 0, 'commit_lsn', NULL));
END;
SELECT pg_current_wal_insert_lsn()::text AS lsn \gset
UPDATE uploads SET commit_lsn = COALESCE(commit_lsn, :lsn::text::pg_lsn), result = jsonb_set(result, '{{commit_lsn}}', to_jsonb(COALESCE(commit_lsn, :lsn::text::pg_lsn)::text)) WHERE id = :upload_id::uuid RETURNING commit_lsn::text;
"#,
        uuids = uuid_vars.join(", "),
        report_ids = text_array(ids.clone()),
        checkups = text_array(vec![":checkup_id".to_string(); reports.len()]),
        patients = text_array(vec![":patient_id".to_string(); reports.len()]),
        types = report_column(&|r| quoted(&r["instrument"]["type"])),
        serials = report_column(&|r| quoted(&r["instrument"]["serial"])),
        taken = text_array(
            (0..reports.len())
                .map(|n| format!("now() - interval '{} minutes'", 14 - 3 * n))
                .collect()
        ),
        notes = report_column(&|r| quoted(&r["notes"])),
        raws = report_column(&|r| json_object(&r["raw"])),
        m_reports = column(0),
        m_codes = column(1),
        m_names = column(2),
        m_values = column(3),
        m_units = column(4),
        m_lows = column(5),
        m_highs = column(6),
        m_flags = column(7),
        report_count = reports.len(),
        measurement_count = measurement_rows.len(),
    );
    std::fs::write(path, script).with_context(|| format!("failed to write {}", path.display()))
}

/// `object` as a `jsonb_build_object(...)` call: pgbench reads `:name` in a literal as a
/// variable, so JSON text cannot be written inline.
fn json_object(object: &Value) -> String {
    let pairs: Vec<String> = object
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| match value {
            Value::String(text) => format!("'{key}', '{text}'"),
            other => format!("'{key}', {other}"),
        })
        .collect();
    format!("jsonb_build_object({})", pairs.join(", "))
}

/// Runs `script` with pgbench against `url` for `seconds` with `clients` connections; returns
/// transactions (uploads) per second.
pub async fn run(
    bindir: &Path,
    url: &str,
    token: &str,
    script: &Path,
    clients: usize,
    seconds: u64,
) -> Result<f64> {
    let output = tokio::process::Command::new(bindir.join("pgbench"))
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("--client={clients}"))
        .arg(format!("--time={seconds}"))
        .arg(format!("--define=token={token}"))
        .arg(format!("--file={}", script.display()))
        .arg(url)
        .output()
        .await
        .context("failed to run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))
}
