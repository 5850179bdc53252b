//! Measurement lists, shared by uploads and amendments: each measurement's code, value and unit
//! against the catalogue, each code at most once, and (when the instrument is known) each code
//! one the instrument may report.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::RangeInclusive;

use clinical_catalogue::{Code, InstrumentType};
use serde::de::MapAccess;
use service_plumbing::problem::FieldError;

use super::read::{List, Members, Object, Reader};
use super::walk::{At, Leaf, Problems, element_pointer, member_pointer, parse_each, quoted};
use crate::upload::Measurement;

/// Problems of `measurements` that `instrument` cannot report, one at each such measurement's
/// `code`; `pointer_prefix` is the pointer of the measurement array, e.g. `/measurements`.
///
/// Uploads are checked as they are parsed. An amendment does not name the instrument, so its
/// handler calls this with the stored report's instrument once the body has parsed.
pub fn check_instrument_fit(
    instrument: InstrumentType,
    measurements: &[Measurement],
    pointer_prefix: &str,
) -> Vec<FieldError> {
    measurements
        .iter()
        .enumerate()
        .filter_map(|(index, measurement)| {
            let pointer = member_pointer(&element_pointer(pointer_prefix, index), "code");
            misfit(instrument, measurement.code).map(|detail| FieldError { pointer, detail })
        })
        .collect()
}

/// Why `instrument` cannot report `code`, if it cannot.
fn misfit(instrument: InstrumentType, code: &Code) -> Option<String> {
    if code.reported_by(instrument) {
        return None;
    }
    let reporters: Vec<&str> = code.instruments.iter().map(|kind| kind.as_str()).collect();
    Some(format!(
        "code {} ({}) cannot be reported by a {} instrument; it is reported by {}",
        code.code,
        code.display,
        instrument.as_str(),
        reporters.join(", ")
    ))
}

/// The members of a measurement as read: the code looked up in the catalogue, the value and
/// the unit checked on their own (against the code once all three are read).
#[derive(Debug, Default)]
pub(super) struct MeasurementMembers {
    code: Option<Leaf<&'static Code>>,
    value: Option<Leaf<f64>>,
    unit: Option<Leaf<String>>,
}

/// A member of a measurement.
#[derive(Debug, Clone, Copy)]
pub(super) enum MeasurementMember {
    Code,
    Value,
    Unit,
}

impl Members for MeasurementMembers {
    type Name = MeasurementMember;

    const NAMES: &'static [(&'static str, MeasurementMember)] = &[
        ("code", MeasurementMember::Code),
        ("value", MeasurementMember::Value),
        ("unit", MeasurementMember::Unit),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: MeasurementMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        let value = map.next_value_seed(reader.scalar())?;
        match name {
            MeasurementMember::Code => {
                self.code = Some(value.string().and_then(|text| {
                    clinical_catalogue::lookup(text).ok_or_else(|| {
                        Cow::Owned(format!("unknown measurement code {}", quoted(text)))
                    })
                }));
            }
            MeasurementMember::Value => self.value = Some(value.number()),
            MeasurementMember::Unit => self.unit = Some(value.string().map(str::to_owned)),
        }
        Ok(())
    }
}

/// The measurement array read at `at`, with between `count` elements. `instrument` is the
/// report's instrument when known (parsed), to check each code is one it may report.
pub(super) fn measurements(
    list: List<Object<MeasurementMembers>>,
    count: RangeInclusive<usize>,
    instrument: Option<InstrumentType>,
    at: &At<'_>,
    problems: &mut Problems,
) -> Option<Vec<Measurement>> {
    let elements = problems.list(list, count, at)?;
    // The pointer of each code's first occurrence, to name it when the code is repeated.
    let mut first_seen = HashMap::new();
    parse_each(elements, at, |element, at| {
        measurement(element, at, instrument, &mut first_seen, problems)
    })
}

/// One `{code, value, unit}` object.
fn measurement(
    object: Object<MeasurementMembers>,
    here: &At<'_>,
    instrument: Option<InstrumentType>,
    first_seen: &mut HashMap<&'static str, String>,
    problems: &mut Problems,
) -> Option<Measurement> {
    let members = problems.object(object, here)?;
    let at = here.member("code");
    let code = problems
        .required_leaf(members.code, &at)
        .inspect(|code| check_code(code, &at, instrument, first_seen, problems));
    let at = here.member("value");
    let value = problems
        .required_leaf(members.value, &at)
        .and_then(|value| {
            if let Some(code) = code
                && !code.possible.contains(value)
            {
                problems.add(
                    &at,
                    format!(
                        "must be between {} and {} {} for code {} ({})",
                        code.possible.low, code.possible.high, code.unit, code.code, code.display
                    ),
                );
                return None;
            }
            Some(value)
        });
    let at = here.member("unit");
    let unit = problems.required_leaf(members.unit, &at).and_then(|unit| {
        if let Some(code) = code
            && unit != code.unit
        {
            problems.add(
                &at,
                format!(
                    "must be {:?} for code {} ({}), not {}",
                    code.unit,
                    code.code,
                    code.display,
                    quoted(&unit)
                ),
            );
            return None;
        }
        Some(unit)
    });
    unit?;
    Some(Measurement {
        code: code?,
        value: value?,
    })
}

/// Reports a catalogued code at `at` that was already seen in this list, or that `instrument`
/// cannot report.
fn check_code(
    code: &'static Code,
    at: &At<'_>,
    instrument: Option<InstrumentType>,
    first_seen: &mut HashMap<&'static str, String>,
    problems: &mut Problems,
) {
    if let Some(first) = first_seen.get(code.code) {
        problems.add(
            at,
            format!("duplicate code {}; already measured at {first}", code.code),
        );
    } else {
        first_seen.insert(code.code, at.pointer());
    }
    if let Some(detail) = instrument.and_then(|instrument| misfit(instrument, code)) {
        problems.add(at, detail);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clinical_catalogue::{Flag, lookup};
    use serde_json::{Value, json};

    use super::*;
    use crate::validation::fixtures::{invalid, parse, valid_upload, with};

    const MEASUREMENTS: &str = "/checkups/0/reports/0/measurements";

    fn with_measurements(measurements: Value) -> Value {
        with(valid_upload(), MEASUREMENTS, measurements)
    }

    #[test]
    fn measurements_get_their_catalogue_entry_and_flag() {
        let upload = parse(&valid_upload()).unwrap();
        let measurements = &upload.checkups[0].reports[0].measurements;
        assert_eq!(measurements[0].code.code, "8480-6");
        assert_eq!(measurements[0].value, 120.0);
        assert_eq!(measurements[0].flag(), Some(Flag::Normal));
        assert_eq!(measurements[1].code.code, "8462-4");
        assert_eq!(measurements[1].flag(), Some(Flag::Normal));
    }

    #[test]
    fn an_unknown_code_is_reported_at_the_code() {
        let body = with_measurements(json!([{"code": "1234-5", "value": 1, "unit": "mm[Hg]"}]));
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/0/code"),
                "unknown measurement code \"1234-5\"".to_owned()
            )]
        );
    }

    #[test]
    fn a_wrong_unit_is_reported_with_the_expected_unit() {
        let body = with(
            valid_upload(),
            &format!("{MEASUREMENTS}/1/unit"),
            json!("mmHg"),
        );
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/1/unit"),
                "must be \"mm[Hg]\" for code 8462-4 (Diastolic blood pressure), not \"mmHg\""
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_missing_unit_is_required() {
        let body = with_measurements(json!([{"code": "8480-6", "value": 120}]));
        assert_eq!(
            invalid(&body),
            [(format!("{MEASUREMENTS}/0/unit"), "is required".to_owned())]
        );
    }

    #[test]
    fn a_value_outside_the_possible_range_is_reported_with_the_range() {
        let body = with(
            valid_upload(),
            &format!("{MEASUREMENTS}/0/value"),
            json!(301),
        );
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/0/value"),
                "must be between 30 and 300 mm[Hg] for code 8480-6 (Systolic blood pressure)"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_value_must_be_a_number() {
        let body = with(
            valid_upload(),
            &format!("{MEASUREMENTS}/0/value"),
            json!("120"),
        );
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/0/value"),
                "must be a number".to_owned()
            )]
        );
    }

    #[test]
    fn a_repeated_code_is_reported_at_the_second_occurrence() {
        let body = with_measurements(json!([
            {"code": "8480-6", "value": 120, "unit": "mm[Hg]"},
            {"code": "8462-4", "value": 80, "unit": "mm[Hg]"},
            {"code": "8480-6", "value": 121, "unit": "mm[Hg]"},
        ]));
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/2/code"),
                format!("duplicate code 8480-6; already measured at {MEASUREMENTS}/0/code")
            )]
        );
    }

    #[test]
    fn a_code_the_instrument_cannot_report_is_reported_at_the_code() {
        let body = with_measurements(json!([
            {"code": "8480-6", "value": 120, "unit": "mm[Hg]"},
            {"code": "2708-6", "value": 98, "unit": "%"},
        ]));
        assert_eq!(
            invalid(&body),
            [(
                format!("{MEASUREMENTS}/1/code"),
                "code 2708-6 (Oxygen saturation in arterial blood) cannot be reported by a \
                 blood_pressure instrument; it is reported by pulse_oximeter"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_report_needs_at_least_one_measurement() {
        let body = with_measurements(json!([]));
        assert_eq!(
            invalid(&body),
            [(MEASUREMENTS.to_owned(), "must not be empty".to_owned())]
        );
    }

    #[test]
    fn too_many_measurements_are_reported_once_at_the_array() {
        let many: Vec<Value> = (0..10_000)
            .map(|_| json!({"code": "8480-6", "value": 120, "unit": "mm[Hg]"}))
            .collect();
        let problems = invalid(&with_measurements(Value::Array(many)));
        assert_eq!(
            problems[0],
            (
                MEASUREMENTS.to_owned(),
                "must have at most 20 elements; it has 10000".to_owned()
            )
        );
        // Only the first 20 are looked at: 19 duplicates, not 9,999.
        assert_eq!(problems.len(), 20);
    }

    #[test]
    fn unknown_members_of_a_measurement_are_reported() {
        let body = with(
            valid_upload(),
            &format!("{MEASUREMENTS}/0/flag"),
            json!("H"),
        );
        assert_eq!(
            invalid(&body),
            [(format!("{MEASUREMENTS}/0/flag"), "unknown field".to_owned())]
        );
    }

    #[test]
    fn instrument_fit_names_each_measurement_the_instrument_cannot_report() {
        let measurement = |code| Measurement {
            code: lookup(code).unwrap(),
            value: 80.0,
        };
        let measurements = [
            measurement("8867-4"),
            measurement("8310-5"),
            measurement("2708-6"),
        ];
        let problems = check_instrument_fit(InstrumentType::Ecg, &measurements, "/measurements");
        let pointers: Vec<&str> = problems
            .iter()
            .map(|problem| problem.pointer.as_str())
            .collect();
        assert_eq!(pointers, ["/measurements/1/code", "/measurements/2/code"]);
        assert!(
            check_instrument_fit(InstrumentType::PulseOximeter, &measurements[..1], "/m")
                .is_empty()
        );
    }
}
