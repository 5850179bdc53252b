//! Store documents → the JSON the patient app receives: RFC 3339 times, measurements as an array
//! in catalogue order with their reference range, `raw` as JSON again.

use mongodb::bson::{Bson, Document};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

/// A report as a list item (everything but `raw` and the patient snapshot).
pub fn list_item(report: &Document) -> Value {
    let checkup = report.get_document("checkup").ok();
    json!({
        "id": text(report.get("_id")),
        "taken_at": instant(report.get("taken_at")),
        "status": text(report.get("status")),
        "instrument": {
            "type": report.get_document("instrument").ok().map(|i| text(i.get("type"))),
            "serial": report.get_document("instrument").ok().map(|i| text(i.get("serial"))),
        },
        "clinic": {
            "id": checkup.map(|c| text(c.get("clinic_id"))),
            "name": checkup.map(|c| text(c.get("clinic_name"))),
        },
        "checkup": {
            "id": checkup.map(|c| text(c.get("id"))),
            "started_at": checkup.map(|c| instant(c.get("started_at"))),
            "completed_at": checkup.map(|c| instant(c.get("completed_at"))),
            "device": checkup.map(|c| text(c.get("device_label"))),
        },
        "measurements": measurements(report.get_document("measurements").ok()),
        "notes": text(report.get("notes")),
    })
}

/// A report with everything, `raw` included.
pub fn full_report(report: &Document) -> Value {
    let mut item = list_item(report);
    let raw = report
        .get_str("raw")
        .ok()
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .unwrap_or(Value::Null);
    item["raw"] = raw;
    if let Ok(patient) = report.get_document("patient") {
        item["patient"] = json!({
            "id": text(patient.get("id")),
            "external_ref": text(patient.get("external_ref")),
            "full_name": text(patient.get("full_name")),
            "birth_date": text(patient.get("birth_date")),
            "sex": text(patient.get("sex")),
        });
    }
    item
}

/// The patient's summary: demographics and the newest value of each code.
pub fn summary(patient: &Document) -> Value {
    let mut latest: Vec<(usize, String, Value)> = patient
        .get_document("latest")
        .map(|latest| {
            latest
                .iter()
                .filter_map(|(code, entry)| match entry {
                    Bson::Document(entry) => Some((
                        clinical_catalogue::order(code),
                        code.clone(),
                        json!({
                            "code": code,
                            "name": text(entry.get("name")),
                            "value": number(entry.get("value")),
                            "unit": text(entry.get("unit")),
                            "flag": text(entry.get("flag")),
                            "taken_at": instant(entry.get("taken_at")),
                            "report_id": text(entry.get("report_id")),
                        }),
                    )),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    latest.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    json!({
        "id": text(patient.get("_id")),
        "external_ref": text(patient.get("external_ref")),
        "full_name": text(patient.get("full_name")),
        "birth_date": text(patient.get("birth_date")),
        "sex": text(patient.get("sex")),
        "latest": latest.into_iter().map(|(_, _, entry)| entry).collect::<Vec<_>>(),
    })
}

/// A trend: the points of `code` from reports given newest first, listed oldest to newest
/// (the order a chart draws them in).
pub fn trend(
    code: &clinical_catalogue::Code,
    newest_first: &[Document],
    next_cursor: Option<String>,
) -> Value {
    let points: Vec<Value> = newest_first
        .iter()
        .rev()
        .filter_map(|report| {
            let measurement = report
                .get_document("measurements")
                .ok()?
                .get_document(code.code)
                .ok()?;
            Some(json!({
                "taken_at": instant(report.get("taken_at")),
                "value": number(measurement.get("value")),
                "unit": text(measurement.get("unit")),
                "flag": text(measurement.get("flag")),
                "report_id": text(report.get("_id")),
            }))
        })
        .collect();
    let reference_range = code.reference.map_or(
        Value::Null,
        |range| json!({ "low": range.low, "high": range.high }),
    );
    json!({
        "code": code.code,
        "name": code.display,
        "unit": code.unit,
        "reference_range": reference_range,
        "points": points,
        "next_cursor": next_cursor,
    })
}

/// Measurements in catalogue order (codes the catalogue does not know last, by code).
fn measurements(measurements: Option<&Document>) -> Vec<Value> {
    let mut items: Vec<(usize, &String, &Document)> = measurements
        .into_iter()
        .flat_map(|measurements| measurements.iter())
        .filter_map(|(code, value)| match value {
            Bson::Document(value) => Some((clinical_catalogue::order(code), code, value)),
            _ => None,
        })
        .collect();
    items.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    items
        .into_iter()
        .map(|(_, code, value)| {
            let (low, high) = (
                number(value.get("reference_low")),
                number(value.get("reference_high")),
            );
            let reference_range = if low.is_null() && high.is_null() {
                Value::Null
            } else {
                json!({ "low": low, "high": high })
            };
            json!({
                "code": code,
                "name": text(value.get("name")),
                "value": number(value.get("value")),
                "unit": text(value.get("unit")),
                "reference_range": reference_range,
                "flag": text(value.get("flag")),
            })
        })
        .collect()
}

fn text(value: Option<&Bson>) -> Value {
    match value {
        Some(Bson::String(text)) => Value::String(text.clone()),
        _ => Value::Null,
    }
}

/// Numbers stay numbers; a numeric kept as text (too precise for a double) stays text.
fn number(value: Option<&Bson>) -> Value {
    match value {
        Some(Bson::Double(number)) => json!(number),
        Some(Bson::Int32(number)) => json!(number),
        Some(Bson::Int64(number)) => json!(number),
        Some(Bson::String(text)) => Value::String(text.clone()),
        _ => Value::Null,
    }
}

fn instant(value: Option<&Bson>) -> Value {
    match value {
        Some(Bson::DateTime(instant)) => {
            let nanos = i128::from(instant.timestamp_millis()) * 1_000_000;
            time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()
                .and_then(|instant| instant.format(&Rfc3339).ok())
                .map_or(Value::Null, Value::String)
        }
        _ => Value::Null,
    }
}
