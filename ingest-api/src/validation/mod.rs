//! Request bodies into the domain types of [`crate::upload`] ("parse, don't validate").
//!
//! A body's JSON text is read once, straight into typed members (no `serde_json::Value` of the
//! body; [`Rejection::Malformed`] if it is not JSON, [`Rejection::TooManyValues`] past the
//! budget of values), then what was read is walked, one function per kind of object, collecting
//! every problem with the RFC 6901 pointer of the offending member ([`Rejection::Invalid`]), so
//! a tablet learns everything wrong with an upload from one response. Problems come in document
//! order: array elements in order, an object's unknown members first (sorted by name), then its
//! known members in the order the API documents them, whatever order the body sends them in.
//!
//! - `read`: the JSON text into members, within the budget of values (what bounds memory);
//! - `walk`: the checks of scalars, the problem list and pointers, the reporting of members;
//! - `upload`: upload, checkup, patient and report, and the checks spanning the whole upload
//!   (unique ids, consistent patients);
//! - `measurement`: measurement lists against the catalogue, shared with amendments;
//! - `raw`: the instrument payload, which must be storable in PostgreSQL and MongoDB;
//! - `amendment`: report amendments.

mod amendment;
mod measurement;
mod raw;
mod read;
mod upload;
mod walk;

use service_plumbing::problem::FieldError;
use time::{Duration, OffsetDateTime};

pub use self::measurement::check_instrument_fit;
use self::read::{Members, Object, ReadError, Reader};
use self::walk::{Clock, Problems};
use crate::upload::{Amendment, Upload};

/// Bounds on what one request body may hold, so that a request costs bounded work and storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most checkups in one upload (default 200).
    pub max_checkups: usize,
    /// Most reports in one checkup (default 50).
    pub max_reports_per_checkup: usize,
    /// Most measurements in one report or amendment (default 20).
    pub max_measurements_per_report: usize,
    /// Most bytes of a report's `raw` payload, serialized as compact JSON (default 256 KiB).
    pub max_raw_bytes: usize,
    /// Deepest nesting of objects and arrays in `raw`, itself included (default 16).
    pub max_raw_depth: usize,
    /// How far in the future a timestamp may be, for tablets whose clocks run fast (default
    /// five minutes).
    pub max_future_skew: Duration,
    /// Most JSON values (objects, arrays, strings, numbers, booleans, nulls) read from an upload
    /// body (default 500,000; about 24 MiB if all of them were kept); every value read is
    /// counted, kept or skipped, so what a hostile body makes the service keep is bounded.
    pub max_upload_values: usize,
    /// Most JSON values read from an amendment body (default 1,000; a full amendment is ~100).
    pub max_amendment_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_checkups: 200,
            max_reports_per_checkup: 50,
            max_measurements_per_report: 20,
            max_raw_bytes: 256 * 1024,
            max_raw_depth: 16,
            max_future_skew: Duration::minutes(5),
            max_upload_values: 500_000,
            max_amendment_values: 1_000,
        }
    }
}

/// Why a body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON at all (or not UTF-8): 400. `line`/`column` from serde_json (1-based).
    Malformed {
        /// Line of the first error.
        line: usize,
        /// Column of the first error (0 when the body ends before a value starts).
        column: usize,
        /// What is wrong there, without the position.
        message: String,
    },
    /// JSON, but invalid: 422 with every problem.
    Invalid(Vec<FieldError>),
    /// More JSON values than the limit (`max`): 413, refused while parsing.
    TooManyValues {
        /// The most JSON values the body may hold (the upload or the amendment budget of
        /// `Limits`).
        max: usize,
    },
}

/// Parses an upload body (`POST /v1/uploads`); timestamps are checked against `now`.
pub fn parse_upload(
    body: &[u8],
    now: OffsetDateTime,
    limits: &Limits,
) -> Result<Upload, Rejection> {
    let clock = Clock {
        now,
        max_future_skew: limits.max_future_skew,
    };
    let read = read(body, limits.max_upload_values, clock, limits)?;
    let mut problems = Problems::default();
    let upload = upload::upload(read, limits, &mut problems);
    problems.finish(upload)
}

/// Parses an amendment body (`PATCH /v1/reports/{id}`). An amendment holds no timestamp, so
/// `now` only sets the reader's clock; it is taken so that both parsers are called alike.
pub fn parse_amendment(
    body: &[u8],
    now: OffsetDateTime,
    limits: &Limits,
) -> Result<Amendment, Rejection> {
    let clock = Clock {
        now,
        max_future_skew: limits.max_future_skew,
    };
    let read = read(body, limits.max_amendment_values, clock, limits)?;
    let mut problems = Problems::default();
    let amendment = amendment::amendment(read, limits, &mut problems);
    problems.finish(amendment)
}

/// The body read as an object of members `M`, reading at most `max_values` JSON values, or
/// where and why it is not JSON.
fn read<M: Members>(
    body: &[u8],
    max_values: usize,
    clock: Clock,
    limits: &Limits,
) -> Result<Object<M>, Rejection> {
    Reader::new(max_values, clock, limits)
        .body(body)
        .map_err(|error| {
            let error = match error {
                ReadError::TooManyValues => return Rejection::TooManyValues { max: max_values },
                ReadError::Json(error) => error,
            };
            let (line, column) = (error.line(), error.column());
            let text = error.to_string();
            // serde_json appends the position, which the rejection carries on its own.
            let position = format!(" at line {line} column {column}");
            let message = text.strip_suffix(&position).unwrap_or(&text).to_owned();
            Rejection::Malformed {
                line,
                column,
                message,
            }
        })
}

/// Valid bodies to mutate, and shorthands to parse them, for the tests of every module.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fixtures {
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::{Limits, Rejection, parse_upload};
    use crate::upload::Upload;

    /// The server's clock in the tests.
    pub(super) const NOW: OffsetDateTime = datetime!(2026-11-27 10:00 UTC);
    pub(super) const UPLOAD_ID: &str = "3f8a1c52-7d0e-4b8a-9a34-2c1b5e6f7a80";
    pub(super) const CHECKUP_ID: &str = "9b2d4e61-1f3a-4c5b-8d7e-0a1b2c3d4e5f";
    pub(super) const PATIENT_ID: &str = "c4d5e6f7-0819-4a2b-bc3d-4e5f60718293";
    pub(super) const REPORT_ID: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";

    /// The upload documented in the API: one checkup, one blood pressure report.
    pub(super) fn valid_upload() -> Value {
        json!({
            "upload_id": UPLOAD_ID,
            "checkups": [{
                "id": CHECKUP_ID,
                "patient": {
                    "id": PATIENT_ID,
                    "external_ref": "MRN-001",
                    "full_name": "Ada Lovelace",
                    "birth_date": "1985-12-10",
                    "sex": "female",
                    "phone": "+44 20 7946 0000",
                    "email": "ada@example.org",
                },
                "started_at": "2026-11-27T09:00:00Z",
                "completed_at": "2026-11-27T09:20:00Z",
                "reports": [{
                    "id": REPORT_ID,
                    "instrument": {"type": "blood_pressure", "serial": "BP-123"},
                    "taken_at": "2026-11-27T09:05:00Z",
                    "notes": "left arm, seated",
                    "raw": {"any": "instrument payload (JSON object)"},
                    "measurements": [
                        {"code": "8480-6", "value": 120, "unit": "mm[Hg]"},
                        {"code": "8462-4", "value": 80, "unit": "mm[Hg]"},
                    ],
                }],
            }],
        })
    }

    /// `body` with the member or element at `pointer` set to `value` (a new member is added to
    /// its parent object).
    pub(super) fn with(mut body: Value, pointer: &str, value: Value) -> Value {
        if let Some(target) = body.pointer_mut(pointer) {
            *target = value;
            return body;
        }
        let (parent, name) = pointer.rsplit_once('/').unwrap();
        let parent = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        parent.insert(name.replace("~1", "/").replace("~0", "~"), value);
        body
    }

    /// `body` without the member at `pointer`.
    pub(super) fn without(mut body: Value, pointer: &str) -> Value {
        let (parent, name) = pointer.rsplit_once('/').unwrap();
        let parent = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        assert!(
            parent.remove(name).is_some(),
            "{pointer} is not in the body"
        );
        body
    }

    /// Parses `body` as an upload at [`NOW`] with the default limits.
    pub(super) fn parse(body: &Value) -> Result<Upload, Rejection> {
        parse_upload(body.to_string().as_bytes(), NOW, &Limits::default())
    }

    /// The problems of an invalid upload body, as `(pointer, detail)`.
    pub(super) fn invalid(body: &Value) -> Vec<(String, String)> {
        match parse(body) {
            Err(Rejection::Invalid(errors)) => errors
                .into_iter()
                .map(|error| (error.pointer, error.detail))
                .collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clinical_catalogue::{CODES, Code, InstrumentType};
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use time::format_description::well_known::Rfc3339;

    use super::fixtures::{NOW, invalid, parse, valid_upload, with};
    use super::*;

    #[test]
    fn malformed_json_is_rejected_with_its_position() {
        let body = b"{\n  \"upload_id\": \"x\",\n  \"checkups\": [,]\n}";
        assert_eq!(
            parse_upload(body, NOW, &Limits::default()),
            Err(Rejection::Malformed {
                line: 3,
                column: 16,
                message: "expected value".to_owned(),
            })
        );
    }

    #[test]
    fn an_empty_body_is_malformed() {
        let rejection = parse_upload(b"", NOW, &Limits::default()).unwrap_err();
        assert!(
            matches!(rejection, Rejection::Malformed { line: 1, .. }),
            "{rejection:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let body = b"{\"upload_id\": \"\xff\xfe\"}";
        let rejection = parse_upload(body, NOW, &Limits::default()).unwrap_err();
        assert!(
            matches!(rejection, Rejection::Malformed { line: 1, .. }),
            "{rejection:?}"
        );
        let rejection = parse_amendment(body, NOW, &Limits::default()).unwrap_err();
        assert!(
            matches!(rejection, Rejection::Malformed { .. }),
            "{rejection:?}"
        );
    }

    #[test]
    fn several_different_problems_are_all_reported() {
        let body = with(valid_upload(), "/upload_id", json!(7));
        let body = with(body, "/checkups/0/patient/birth_date", json!("1985-02-30"));
        let body = with(body, "/checkups/0/reports/0/raw/$where", json!("1"));
        let body = with(
            body,
            "/checkups/0/reports/0/measurements/1/unit",
            json!("mmHg"),
        );
        assert_eq!(
            invalid(&body),
            [
                ("/upload_id".to_owned(), "must be a string".to_owned()),
                (
                    "/checkups/0/patient/birth_date".to_owned(),
                    "must be a date in the form YYYY-MM-DD".to_owned()
                ),
                (
                    "/checkups/0/reports/0/raw/$where".to_owned(),
                    "key must not start with '$'".to_owned()
                ),
                (
                    "/checkups/0/reports/0/measurements/1/unit".to_owned(),
                    "must be \"mm[Hg]\" for code 8462-4 (Diastolic blood pressure), not \"mmHg\""
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        let limits = Limits::default();
        assert_eq!(limits.max_checkups, 200);
        assert_eq!(limits.max_reports_per_checkup, 50);
        assert_eq!(limits.max_measurements_per_report, 20);
        assert_eq!(limits.max_raw_bytes, 262_144);
        assert_eq!(limits.max_raw_depth, 16);
        assert_eq!(limits.max_future_skew, Duration::minutes(5));
    }

    #[test]
    fn limits_are_taken_from_the_caller() {
        let limits = Limits {
            max_measurements_per_report: 1,
            ..Limits::default()
        };
        let body = valid_upload().to_string();
        let Err(Rejection::Invalid(errors)) = parse_upload(body.as_bytes(), NOW, &limits) else {
            panic!("two measurements are over a limit of one");
        };
        assert_eq!(errors[0].pointer, "/checkups/0/reports/0/measurements");
    }

    /// Any JSON value, bounded in depth and size.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            // Strings shaped like the ones the walk looks at.
            prop_oneof![
                Just("8480-6"),
                Just("2026-11-27T09:00:00Z"),
                Just("1985-12-10"),
                Just("female"),
                Just("blood_pressure"),
                Just("3f8a1c52-7d0e-4b8a-9a34-2c1b5e6f7a80"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_/~$.]{0,8}", inner, 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Every pointer into `value`, the whole value (`""`) included.
    fn pointers(value: &Value, at: String, into: &mut Vec<String>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    pointers(member, walk::member_pointer(&at, key), into);
                }
            }
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    pointers(element, walk::element_pointer(&at, index), into);
                }
            }
            _ => {}
        }
        into.push(at);
    }

    /// Every problem points into the body, or at a missing member of an object in it.
    fn assert_pointers_resolve(body: &Value, errors: &[FieldError]) {
        for error in errors {
            let resolves = body.pointer(&error.pointer).is_some()
                || error
                    .pointer
                    .rsplit_once('/')
                    .is_some_and(|(parent, _)| body.pointer(parent).is_some_and(Value::is_object));
            assert!(resolves, "{} does not point into {body}", error.pointer);
        }
    }

    /// A valid report: a catalogued instrument with some of the codes it may report, at values
    /// inside their possible range. Its id is left for [`numbered`] to set.
    fn any_valid_report() -> impl Strategy<Value = Value> {
        prop::sample::select(InstrumentType::ALL.to_vec())
            .prop_flat_map(|instrument| {
                let codes: Vec<&'static Code> = CODES
                    .iter()
                    .filter(|code| code.reported_by(instrument))
                    .collect();
                let count = codes.len();
                (
                    Just(instrument),
                    prop::sample::subsequence(codes, 1..=count),
                    prop::collection::vec(any::<prop::sample::Index>(), count),
                    "[A-Z]{2}-[0-9]{1,6}",
                    0..600i64,
                )
            })
            .prop_map(|(instrument, codes, positions, serial, minutes_ago)| {
                let measurements: Vec<Value> = codes
                    .iter()
                    .zip(positions)
                    .map(|(code, position)| {
                        json!({
                            "code": code.code,
                            "value": value_inside(code, position),
                            "unit": code.unit,
                        })
                    })
                    .collect();
                let taken_at = NOW - Duration::minutes(minutes_ago);
                json!({
                    "instrument": {"type": instrument.as_str(), "serial": serial},
                    "taken_at": taken_at.format(&Rfc3339).unwrap(),
                    "measurements": measurements,
                })
            })
    }

    /// A value of `code` strictly inside its possible range, in whole tenths (which JSON
    /// carries back to the same `f64`, away from the range's ends).
    fn value_inside(code: &Code, position: prop::sample::Index) -> f64 {
        let lowest = (code.possible.low * 10.0).ceil() as i64 + 1;
        let highest = (code.possible.high * 10.0).floor() as i64 - 1;
        let span = usize::try_from(highest - lowest + 1).unwrap();
        (lowest + i64::try_from(position.index(span)).unwrap()) as f64 / 10.0
    }

    /// A valid upload of a few checkups of a few reports each.
    fn any_valid_upload() -> impl Strategy<Value = Value> {
        let checkup = (
            prop::collection::vec(any_valid_report(), 1..4),
            "[A-Za-z][A-Za-z ]{0,30}",
            prop::sample::select(vec!["female", "male", "other", "unknown"]),
        )
            .prop_map(|(reports, full_name, sex)| {
                json!({
                    "patient": {
                        "external_ref": "MRN-1",
                        "full_name": full_name,
                        "birth_date": "1970-01-01",
                        "sex": sex,
                    },
                    "started_at": "2026-11-27T08:00:00Z",
                    "reports": reports,
                })
            });
        prop::collection::vec(checkup, 1..4)
            .prop_map(|checkups| numbered(json!({ "checkups": checkups })))
    }

    /// `upload` with distinct ids for itself, each checkup, patient and report.
    fn numbered(mut upload: Value) -> Value {
        let mut ids = (1u128..).map(|n| Value::from(uuid::Uuid::from_u128(n).to_string()));
        let mut next_id = || ids.next().unwrap();
        upload["upload_id"] = next_id();
        for checkup in upload["checkups"].as_array_mut().unwrap() {
            checkup["id"] = next_id();
            checkup["patient"]["id"] = next_id();
            for report in checkup["reports"].as_array_mut().unwrap() {
                report["id"] = next_id();
            }
        }
        upload
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in prop::collection::vec(any::<u8>(), ..256)) {
            let _ = parse_upload(&body, NOW, &Limits::default());
            let _ = parse_amendment(&body, NOW, &Limits::default());
        }

        #[test]
        fn parsing_arbitrary_json_never_panics_and_points_into_the_body(body in any_json()) {
            let bytes = body.to_string();
            for result in [
                parse_upload(bytes.as_bytes(), NOW, &Limits::default()).err(),
                parse_amendment(bytes.as_bytes(), NOW, &Limits::default()).err(),
            ] {
                match result {
                    Some(Rejection::Invalid(errors)) => {
                        prop_assert!(!errors.is_empty());
                        assert_pointers_resolve(&body, &errors);
                    }
                    Some(Rejection::Malformed { .. }) => prop_assert!(false, "{bytes} is JSON"),
                    // A large generated body may pass the amendment's budget of values.
                    Some(Rejection::TooManyValues { .. }) | None => {}
                }
            }
        }

        #[test]
        fn replacing_any_part_of_a_valid_upload_never_panics(
            index in any::<prop::sample::Index>(),
            replacement in any_json(),
        ) {
            let valid = valid_upload();
            let mut all = Vec::new();
            pointers(&valid, String::new(), &mut all);
            let pointer = index.get(&all).clone();
            let body = with(valid, &pointer, replacement);
            if let Err(rejection) = parse(&body) {
                let Rejection::Invalid(errors) = rejection else {
                    return Err(TestCaseError::fail("a JSON body is never malformed"));
                };
                prop_assert!(!errors.is_empty());
                assert_pointers_resolve(&body, &errors);
            }
        }

        #[test]
        fn generated_valid_uploads_parse(body in any_valid_upload()) {
            let upload = parse(&body)
                .map_err(|rejection| TestCaseError::fail(format!("{rejection:?} for {body:#}")))?;
            let sent_checkups = body["checkups"].as_array().unwrap();
            prop_assert_eq!(upload.checkups.len(), sent_checkups.len());
            for (checkup, sent) in upload.checkups.iter().zip(sent_checkups) {
                let sent_name = sent["patient"]["full_name"].as_str().unwrap();
                prop_assert_eq!(checkup.patient.full_name.as_str(), sent_name.trim());
                let sent_reports = sent["reports"].as_array().unwrap();
                for (report, sent) in checkup.reports.iter().zip(sent_reports) {
                    prop_assert_eq!(report.instrument.as_str(), &sent["instrument"]["type"]);
                    let sent = sent["measurements"].as_array().unwrap();
                    prop_assert_eq!(report.measurements.len(), sent.len());
                    for (measurement, sent) in report.measurements.iter().zip(sent) {
                        prop_assert_eq!(measurement.code.code, &sent["code"]);
                        prop_assert_eq!(Some(measurement.value), sent["value"].as_f64());
                    }
                }
            }
        }
    }
}
