//! The reference for the ingest API: `pgbench` running, on the same server, the SQL one upload
//! executes (see `ingest-api/src/store/uploads.rs`): the call of `store_upload()` (lock, ledger,
//! patients, checkups, duplicate check, reports, measurements, ledger row: one statement, one
//! transaction), then the statement that records the commit LSN (`uploads::RECORD`, taken from
//! the API's code). The device is looked up once, before the run, as the API's device cache
//! does. The ids are drawn fresh for every transaction (`gen_random_uuid()`), the values are
//! those of one tablet upload, run with prepared statements like the API's pool. The API sends
//! the two statements together (one round trip); pgbench 15 cannot pipeline statements that
//! are transactions of their own, so it waits for the first answer before sending the second.

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
    let count = reports.len();
    let body_sha256 = "sha256(convert_to(:upload_id, 'UTF8'))";
    // The arguments of `store_upload()`, in order (see `ingest-api/src/store/uploads.rs`): a new
    // patient with no phone or e-mail, one checkup, the reports and their measurements.
    let arguments = [
        ":upload_id::uuid".to_string(),
        ":device_id::uuid".to_string(),
        ":clinic_id::uuid".to_string(),
        body_sha256.to_string(),
        "ARRAY[:patient_id]::uuid[]".to_string(),
        "ARRAY[0]::int[]".to_string(),
        "ARRAY['MRN-' || :mrn]::text[]".to_string(),
        "ARRAY['Ada Lovelace']::text[]".to_string(),
        "ARRAY['1980-05-17']::date[]".to_string(),
        "ARRAY['female']::text[]".to_string(),
        "ARRAY[NULL]::text[]".to_string(),
        "ARRAY[false]::boolean[]".to_string(),
        "ARRAY[NULL]::text[]".to_string(),
        "ARRAY[false]::boolean[]".to_string(),
        "'{}'::uuid[]".to_string(),
        "'{}'::text[]".to_string(),
        "ARRAY[:checkup_id]::uuid[]".to_string(),
        "ARRAY[:patient_id]::uuid[]".to_string(),
        "ARRAY[now() - interval '15 minutes']::timestamptz[]".to_string(),
        "ARRAY[now()]::timestamptz[]".to_string(),
        format!("{}::uuid[]", text_array(ids.clone())),
        format!(
            "{}::uuid[]",
            text_array(vec![":checkup_id".to_string(); count])
        ),
        format!(
            "{}::uuid[]",
            text_array(vec![":patient_id".to_string(); count])
        ),
        format!("{}::int[]", text_array(vec!["0".to_string(); count])),
        format!(
            "{}::int[]",
            text_array((0..count).map(|n| n.to_string()).collect())
        ),
        format!(
            "{}::text[]",
            report_column(&|r| quoted(&r["instrument"]["type"]))
        ),
        format!(
            "{}::text[]",
            report_column(&|r| quoted(&r["instrument"]["serial"]))
        ),
        format!(
            "{}::timestamptz[]",
            text_array(
                (0..count)
                    .map(|n| format!("now() - interval '{} minutes'", 14 - 3 * n))
                    .collect()
            )
        ),
        format!("{}::text[]", report_column(&|r| quoted(&r["notes"]))),
        format!("{}::jsonb[]", report_column(&|r| json_object(&r["raw"]))),
        format!("{}::uuid[]", column(0)),
        format!("{}::text[]", column(1)),
        format!("{}::text[]", column(2)),
        format!("{}::float8[]", column(3)),
        format!("{}::text[]", column(4)),
        format!("{}::float8[]", column(5)),
        format!("{}::float8[]", column(6)),
        format!("{}::text[]", column(7)),
    ];
    let record = ingest_api::store::uploads::RECORD
        .replace("$1", ":upload_id::uuid")
        .replace("$2", ":device_id::uuid")
        .replace("$3", body_sha256);
    let script = format!(
        "SELECT gen_random_uuid() AS upload_id, gen_random_uuid() AS patient_id, \
         gen_random_uuid() AS checkup_id, {uuids}, (random() * 999999)::int AS mrn \\gset\n\
         SELECT store_upload({arguments});\n\
         {record};\n",
        uuids = uuid_vars.join(", "),
        arguments = arguments.join(", "),
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

/// The device `token` belongs to, as the API's cache holds it: `(id, clinic id)`.
pub async fn device(client: &tokio_postgres::Client, token: &str) -> Result<(String, String)> {
    let row = client
        .query_one(
            "SELECT id::text, clinic_id::text FROM device_by_token_sha256(sha256(convert_to($1, 'UTF8')))",
            &[&token],
        )
        .await
        .context("failed to look the benchmark's device up")?;
    Ok((row.get(0), row.get(1)))
}

/// Runs `script` with pgbench against `url` for `seconds` with `clients` connections, as
/// `device` (see [`device`]); returns transactions (uploads) per second.
pub async fn run(
    bindir: &Path,
    url: &str,
    device: &(String, String),
    script: &Path,
    clients: usize,
    seconds: u64,
) -> Result<f64> {
    let output = tokio::process::Command::new(bindir.join("pgbench"))
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("--client={clients}"))
        .arg(format!("--time={seconds}"))
        .arg(format!("--define=device_id={}", device.0))
        .arg(format!("--define=clinic_id={}", device.1))
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
