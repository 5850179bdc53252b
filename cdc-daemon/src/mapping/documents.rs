//! Row values → document fields, as the document contract in `read-model` describes them. The
//! streaming mapping and `cdc-daemon verify` build documents with these same functions.
//!
//! Values take types that MongoDB 6–8 and FerretDB store and compare alike: uuids and dates
//! become strings (`YYYY-MM-DD`), timestamps BSON datetimes (milliseconds), numerics a double
//! when it round-trips exactly and a string otherwise, JSON (`raw`) its text. A column absent
//! from the row (an unchanged TOASTed value in an UPDATE) is left out of the fields, never
//! written as null: the document keeps the value it has (see [`SentFields`]).

use mongodb::bson::{Bson, DateTime, Document, doc};
use uuid::Uuid;

use crate::decode::relations::Row;
use crate::decode::values::Value;

/// A row that cannot become a document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {detail}")]
pub struct FieldError {
    /// The column at fault.
    pub column: String,
    /// What is wrong with it.
    pub detail: String,
}

fn field_error(column: &str, detail: impl Into<String>) -> FieldError {
    FieldError {
        column: column.to_string(),
        detail: detail.into(),
    }
}

/// A required uuid column.
pub fn uuid(row: &Row<'_>, column: &str) -> Result<Uuid, FieldError> {
    match row.get(column) {
        Some(Value::Uuid(id)) => Ok(*id),
        Some(other) => Err(field_error(
            column,
            format!("expected a uuid, found {}", kind(other)),
        )),
        None => Err(field_error(column, "is missing")),
    }
}

/// A required text column.
pub fn text<'r>(row: &'r Row<'_>, column: &str) -> Result<&'r str, FieldError> {
    match row.get(column) {
        Some(Value::Text(text)) => Ok(text),
        Some(other) => Err(field_error(
            column,
            format!("expected text, found {}", kind(other)),
        )),
        None => Err(field_error(column, "is missing")),
    }
}

/// A text column that an UPDATE leaves out when its value is an unchanged TOASTed one: `None`
/// then, and the value already written stays.
pub fn sent_text<'r>(row: &'r Row<'_>, column: &str) -> Result<Option<&'r str>, FieldError> {
    match row.get(column) {
        None => Ok(None),
        Some(_) => text(row, column).map(Some),
    }
}

/// A required timestamp column as milliseconds since the epoch.
pub fn timestamp(row: &Row<'_>, column: &str) -> Result<DateTime, FieldError> {
    match row.get(column) {
        Some(value @ (Value::TimestampTz(_) | Value::Timestamp(_))) => Ok(to_datetime(value)),
        Some(other) => Err(field_error(
            column,
            format!("expected a timestamp, found {}", kind(other)),
        )),
        None => Err(field_error(column, "is missing")),
    }
}

fn to_datetime(value: &Value) -> DateTime {
    let instant = match value {
        Value::TimestampTz(instant) => *instant,
        Value::Timestamp(local) => local.assume_utc(),
        _ => return DateTime::from_millis(0),
    };
    let millis = instant.unix_timestamp_nanos() / 1_000_000;
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// The document value of any column value.
pub fn bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(*flag),
        Value::Int(number) => Bson::Int64(*number),
        Value::Float(number) if number.is_finite() => Bson::Double(*number),
        Value::Float(number) => Bson::String(number.to_string()),
        Value::Numeric(text) => numeric(text),
        Value::Text(text) | Value::Json(text) => Bson::String(text.clone()),
        Value::Uuid(id) => Bson::String(id.to_string()),
        Value::Date(date) => Bson::String(date.to_string()),
        Value::Timestamp(_) | Value::TimestampTz(_) => Bson::DateTime(to_datetime(value)),
    }
}

/// A numeric as a double when the double prints back as the same number, else as its text.
pub fn numeric(text: &str) -> Bson {
    let normalize = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    match text.parse::<f64>() {
        Ok(number) if number.is_finite() && normalize(&number.to_string()) == normalize(text) => {
            Bson::Double(number)
        }
        _ => Bson::String(text.to_string()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Numeric(_) => "a numeric",
        Value::Text(_) => "text",
        Value::Json(_) => "json",
        Value::Uuid(_) => "a uuid",
        Value::Date(_) => "a date",
        Value::Timestamp(_) | Value::TimestampTz(_) => "a timestamp",
    }
}

/// The fields of a sub-document (or of a document) made from the columns a row carries. An
/// UPDATE does not carry an unchanged TOASTed value: its column is named in `missing`, and
/// writing the fields with [`SentFields::set_at`] leaves the field the document has alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SentFields {
    /// The fields of the columns the row carries.
    pub fields: Document,
    /// The columns it does not carry.
    pub missing: Vec<&'static str>,
}

impl SentFields {
    /// Adds `column` as `field`, or records it missing.
    fn value(&mut self, row: &Row<'_>, column: &'static str, field: &str) {
        match row.get(column) {
            Some(value) => {
                self.fields.insert(field, bson(value));
            }
            None => self.missing.push(column),
        }
    }

    /// Adds the text column `column` as `field`, or records it missing.
    fn text(&mut self, row: &Row<'_>, column: &'static str, field: &str) -> Result<(), FieldError> {
        match sent_text(row, column)? {
            Some(text) => {
                self.fields.insert(field, text);
            }
            None => self.missing.push(column),
        }
        Ok(())
    }

    /// The fields, or the error of the first missing column: for rows that carry every column
    /// (those `cdc-daemon verify` reads with SQL).
    pub fn whole(self) -> Result<Document, FieldError> {
        match self.missing.first() {
            Some(column) => Err(field_error(column, "is missing")),
            None => Ok(self.fields),
        }
    }

    /// The `$set` fields that write these at `path`: the whole sub-document when no column is
    /// missing, else each field on its own (`path.field`), so that the missing ones keep the
    /// value the document has.
    pub fn set_at(&self, path: &str) -> Document {
        if self.missing.is_empty() {
            return doc! { path: self.fields.clone() };
        }
        self.fields
            .iter()
            .map(|(field, value)| (format!("{path}.{field}"), value.clone()))
            .collect()
    }
}

/// Copies the present `columns` of `row` into `fields` under the same names.
fn copy_present(row: &Row<'_>, columns: &[&str], fields: &mut Document) {
    for column in columns {
        if let Some(value) = row.get(column) {
            fields.insert(*column, bson(value));
        }
    }
}

/// The patient snapshot embedded in report documents.
pub fn patient_snapshot(row: &Row<'_>) -> Result<Document, FieldError> {
    patient_snapshot_sent(row)?.whole()
}

/// The fields of the patient snapshot that `row` carries.
pub fn patient_snapshot_sent(row: &Row<'_>) -> Result<SentFields, FieldError> {
    let mut snapshot = SentFields {
        fields: doc! { "id": uuid(row, "id")?.to_string() },
        missing: Vec::new(),
    };
    for column in ["external_ref", "full_name", "birth_date", "sex"] {
        snapshot.value(row, column, column);
    }
    Ok(snapshot)
}

/// The demographics fields of a patient document.
pub fn patient_fields(row: &Row<'_>) -> Document {
    let mut fields = Document::new();
    copy_present(
        row,
        &[
            "external_ref",
            "full_name",
            "birth_date",
            "sex",
            "phone",
            "email",
        ],
        &mut fields,
    );
    fields
}

/// The fields of a checkup lookup document.
pub fn checkup_fields(row: &Row<'_>) -> Result<Document, FieldError> {
    let mut fields = doc! {
        "patient_id": uuid(row, "patient_id")?.to_string(),
        "clinic_id": uuid(row, "clinic_id")?.to_string(),
        "device_id": uuid(row, "device_id")?.to_string(),
        "started_at": timestamp(row, "started_at")?,
    };
    copy_present(row, &["completed_at"], &mut fields);
    Ok(fields)
}

/// The checkup as embedded in report documents, from its lookup document, its clinic's and
/// device's names and the patient's record number at the clinic (none when not linked).
pub fn checkup_embedded(
    id: &str,
    lookup: &Document,
    clinic_name: &str,
    device_label: &str,
    record_number: Option<&str>,
) -> Document {
    doc! {
        "id": id,
        "clinic_id": lookup.get("clinic_id").cloned().unwrap_or(Bson::Null),
        "clinic_name": clinic_name,
        "clinic_record_number": record_number,
        "device_id": lookup.get("device_id").cloned().unwrap_or(Bson::Null),
        "device_label": device_label,
        "started_at": lookup.get("started_at").cloned().unwrap_or(Bson::Null),
        "completed_at": lookup.get("completed_at").cloned().unwrap_or(Bson::Null),
    }
}

/// The report's own fields (everything but the embedded patient, checkup and measurements).
pub fn report_fields(row: &Row<'_>) -> Result<Document, FieldError> {
    report_fields_sent(row)?.whole()
}

/// The report's own fields that `row` carries, as `$set` fields: `instrument` whole, or the
/// part of it that `row` carries.
pub fn report_fields_sent(row: &Row<'_>) -> Result<SentFields, FieldError> {
    let mut report = SentFields {
        fields: doc! {
            "patient_id": uuid(row, "patient_id")?.to_string(),
            "checkup_id": uuid(row, "checkup_id")?.to_string(),
        },
        missing: Vec::new(),
    };
    let mut instrument = SentFields::default();
    instrument.text(row, "instrument_type", "type")?;
    instrument.text(row, "instrument_serial", "serial")?;
    report.fields.extend(instrument.set_at("instrument"));
    report.missing.extend(instrument.missing);
    report
        .fields
        .insert("taken_at", timestamp(row, "taken_at")?);
    report.text(row, "status", "status")?;
    copy_present(row, &["notes", "raw"], &mut report.fields);
    Ok(report)
}

/// A measurement's code (checked to be usable as a document key) and its sub-document.
pub fn measurement(row: &Row<'_>) -> Result<(String, Document), FieldError> {
    let (code, fields) = measurement_sent(row)?;
    Ok((code, fields.whole()?))
}

/// A measurement's code (checked to be usable as a document key) and the fields of its
/// sub-document that `row` carries.
pub fn measurement_sent(row: &Row<'_>) -> Result<(String, SentFields), FieldError> {
    let code = text(row, "code")?;
    if code.is_empty() || code.starts_with('$') || code.contains('.') || code.contains('\0') {
        return Err(field_error(
            "code",
            format!("{code:?} cannot be a document key"),
        ));
    }
    let mut fields = SentFields {
        fields: doc! { "code": code },
        missing: Vec::new(),
    };
    for (column, name) in [
        ("display_name", "name"),
        ("value", "value"),
        ("unit", "unit"),
        ("reference_low", "reference_low"),
        ("reference_high", "reference_high"),
        ("flag", "flag"),
    ] {
        fields.value(row, column, name);
    }
    Ok((code.to_string(), fields))
}

/// One patient's reports as the latest-value computation needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportValues {
    /// The report's id: the tie-break between reports taken at the same time.
    pub report_id: String,
    /// When it was taken.
    pub taken_at: DateTime,
    /// Whether it was entered in error (such reports never count).
    pub entered_in_error: bool,
    /// Its measurements, keyed by code.
    pub measurements: Document,
}

/// The entry of `latest.<code>` for a measurement of a report.
pub fn latest_entry(measurement: &Document, report_id: &str, taken_at: DateTime) -> Document {
    doc! {
        "value": measurement.get("value").cloned().unwrap_or(Bson::Null),
        "unit": measurement.get("unit").cloned().unwrap_or(Bson::Null),
        "name": measurement.get("name").cloned().unwrap_or(Bson::Null),
        "flag": measurement.get("flag").cloned().unwrap_or(Bson::Null),
        "taken_at": taken_at,
        "report_id": report_id,
    }
}

/// The `latest` document of a patient: per code, the measurement of the newest report (by
/// `taken_at`, then report id) that was not entered in error.
pub fn latest(reports: &[ReportValues]) -> Document {
    let mut newest: std::collections::BTreeMap<String, (&ReportValues, &Document)> =
        std::collections::BTreeMap::new();
    for report in reports.iter().filter(|report| !report.entered_in_error) {
        for (code, measurement) in &report.measurements {
            let Bson::Document(measurement) = measurement else {
                continue;
            };
            let newer = newest.get(code).is_none_or(|(current, _)| {
                (report.taken_at, &report.report_id) > (current.taken_at, &current.report_id)
            });
            if newer {
                newest.insert(code.clone(), (report, measurement));
            }
        }
    }
    newest
        .into_iter()
        .map(|(code, (report, measurement))| {
            (
                code,
                Bson::Document(latest_entry(
                    measurement,
                    &report.report_id,
                    report.taken_at,
                )),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numerics_become_doubles_only_when_exact() {
        assert_eq!(numeric("120"), Bson::Double(120.0));
        assert_eq!(numeric("36.6"), Bson::Double(36.6));
        assert_eq!(numeric("36.60"), Bson::Double(36.6));
        assert_eq!(numeric("0.1"), Bson::Double(0.1));
        assert_eq!(
            numeric("12345678901234567890.123"),
            Bson::String("12345678901234567890.123".into())
        );
        assert_eq!(numeric("NaN"), Bson::String("NaN".into()));
    }

    fn report(id: &str, millis: i64, error: bool, values: &[(&str, f64)]) -> ReportValues {
        let mut measurements = Document::new();
        for (code, value) in values {
            measurements.insert(
                *code,
                doc! { "value": *value, "unit": "u", "name": "n", "flag": "N" },
            );
        }
        ReportValues {
            report_id: id.to_string(),
            taken_at: DateTime::from_millis(millis),
            entered_in_error: error,
            measurements,
        }
    }

    #[test]
    fn latest_takes_the_newest_report_per_code_and_skips_errors() {
        let reports = [
            report("a", 1_000, false, &[("x", 1.0), ("y", 1.0)]),
            report("b", 2_000, false, &[("x", 2.0)]),
            report("c", 3_000, true, &[("x", 3.0), ("y", 3.0)]),
            report("d", 2_000, false, &[("y", 4.0)]),
        ];
        let latest = latest(&reports);
        assert_eq!(
            latest
                .get_document("x")
                .unwrap()
                .get_str("report_id")
                .unwrap(),
            ("b")
        );
        assert_eq!(
            latest.get_document("y").unwrap().get_f64("value").unwrap(),
            (4.0)
        );
        assert_eq!(latest.len(), 2);
    }
}
