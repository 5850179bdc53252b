//! Amendment bodies (`PATCH /v1/reports/{id}`): a new status, and optionally new notes and a
//! new set of measurements. Which codes the report's instrument may report is checked by the
//! handler, which knows the instrument (see [`super::check_instrument_fit`]).

use serde::de::MapAccess;

use super::Limits;
use super::measurement::{MeasurementMembers, measurements};
use super::read::{List, Members, Object, Reader};
use super::upload::NOTES;
use super::walk::{At, Leaf, Problems};
use crate::upload::{AmendedStatus, Amendment};

const STATUSES: [(&str, AmendedStatus); 2] = [
    ("amended", AmendedStatus::Amended),
    ("entered-in-error", AmendedStatus::EnteredInError),
];

/// The members of an amendment as read (each `None` when absent).
#[derive(Debug, Default)]
pub(super) struct AmendmentMembers {
    status: Option<Leaf<AmendedStatus>>,
    notes: Option<Leaf<Option<String>>>,
    measurements: Option<List<Object<MeasurementMembers>>>,
}

/// A member of an amendment.
#[derive(Debug, Clone, Copy)]
pub(super) enum AmendmentMember {
    Status,
    Notes,
    Measurements,
}

impl Members for AmendmentMembers {
    type Name = AmendmentMember;

    const NAMES: &'static [(&'static str, AmendmentMember)] = &[
        ("status", AmendmentMember::Status),
        ("notes", AmendmentMember::Notes),
        ("measurements", AmendmentMember::Measurements),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: AmendmentMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        match name {
            AmendmentMember::Status => {
                let value = map.next_value_seed(reader.scalar())?;
                self.status = Some(value.one_of("status", &STATUSES));
            }
            AmendmentMember::Notes => {
                let value = map.next_value_seed(reader.scalar())?;
                self.notes = Some(value.optional_text(NOTES));
            }
            AmendmentMember::Measurements => {
                let seed = reader.list(reader.limits.max_measurements_per_report, reader.object());
                self.measurements = Some(map.next_value_seed(seed)?);
            }
        }
        Ok(())
    }
}

/// The amendment read from a body, or `None` with the problems recorded.
pub(super) fn amendment(
    body: Object<AmendmentMembers>,
    limits: &Limits,
    problems: &mut Problems,
) -> Option<Amendment> {
    let root = At::Root;
    let members = problems.object(body, &root)?;
    let status = problems.required_leaf(members.status, &root.member("status"));
    // Absent: keep the notes; null or blank: clear them.
    let notes = members.notes.map_or(Some(None), |leaf| {
        problems.leaf(leaf, &root.member("notes")).map(Some)
    });
    // Absent: keep the measurements; present: replace them, by none only when the report is
    // withdrawn as entered in error.
    let at = root.member("measurements");
    let measurements = members.measurements.map_or(Some(None), |list| {
        let count = 0..=limits.max_measurements_per_report;
        let replacement = measurements(list, count, None, &at, problems)?;
        if replacement.is_empty() && status == Some(AmendedStatus::Amended) {
            problems.add(&at, "must not be empty unless status is entered-in-error");
            return None;
        }
        Some(Some(replacement))
    });
    Some(Amendment {
        status: status?,
        notes: notes?,
        measurements: measurements?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validation::fixtures::NOW;
    use crate::validation::{Rejection, parse_amendment};

    fn parse(body: &Value) -> Result<Amendment, Rejection> {
        parse_amendment(body.to_string().as_bytes(), NOW, &Limits::default())
    }

    fn problems(body: &Value) -> Vec<(String, String)> {
        match parse(body) {
            Err(Rejection::Invalid(errors)) => errors
                .into_iter()
                .map(|error| (error.pointer, error.detail))
                .collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn systolic(value: f64) -> Value {
        json!({"code": "8480-6", "value": value, "unit": "mm[Hg]"})
    }

    #[test]
    fn a_status_alone_keeps_notes_and_measurements() {
        let amendment = parse(&json!({"status": "amended"})).unwrap();
        assert_eq!(
            amendment,
            Amendment {
                status: AmendedStatus::Amended,
                notes: None,
                measurements: None,
            }
        );
    }

    #[test]
    fn null_notes_clear_them_and_text_replaces_them() {
        let cleared = parse(&json!({"status": "amended", "notes": null})).unwrap();
        assert_eq!(cleared.notes, Some(None));
        let replaced = parse(&json!({"status": "amended", "notes": " right arm "})).unwrap();
        assert_eq!(replaced.notes, Some(Some("right arm".to_owned())));
    }

    #[test]
    fn measurements_replace_the_set() {
        let body = json!({"status": "amended", "measurements": [systolic(130.0)]});
        let measurements = parse(&body).unwrap().measurements.unwrap();
        assert_eq!(measurements.len(), 1);
        assert_eq!(measurements[0].code.code, "8480-6");
        assert_eq!(measurements[0].value, 130.0);
    }

    #[test]
    fn an_empty_set_is_allowed_only_when_entered_in_error() {
        let withdrawn = json!({"status": "entered-in-error", "measurements": []});
        assert_eq!(parse(&withdrawn).unwrap().measurements, Some(Vec::new()));
        let amended = json!({"status": "amended", "measurements": []});
        assert_eq!(
            problems(&amended),
            [(
                "/measurements".to_owned(),
                "must not be empty unless status is entered-in-error".to_owned()
            )]
        );
    }

    #[test]
    fn the_status_is_required_and_must_be_known() {
        assert_eq!(
            problems(&json!({})),
            [("/status".to_owned(), "is required".to_owned())]
        );
        assert_eq!(
            problems(&json!({"status": "final"})),
            [(
                "/status".to_owned(),
                "unknown status \"final\"; expected one of amended, entered-in-error".to_owned()
            )]
        );
    }

    #[test]
    fn every_problem_of_an_amendment_is_reported() {
        let body = json!({
            "status": "amended",
            "notes": 5,
            "measurements": [systolic(120.0), systolic(20.0), {"code": "x"}],
            "report_id": "r",
        });
        let pointers: Vec<String> = problems(&body)
            .into_iter()
            .map(|(pointer, _)| pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                "/report_id",
                "/notes",
                "/measurements/1/code",
                "/measurements/1/value",
                "/measurements/2/code",
                "/measurements/2/value",
                "/measurements/2/unit",
            ]
        );
    }

    #[test]
    fn measurements_must_be_an_array_and_bounded() {
        let body = json!({"status": "amended", "measurements": null});
        assert_eq!(
            problems(&body),
            [("/measurements".to_owned(), "must be an array".to_owned())]
        );
        let body = json!({"status": "amended", "measurements": vec![systolic(120.0); 21]});
        assert_eq!(
            problems(&body)[0],
            (
                "/measurements".to_owned(),
                "must have at most 20 elements; it has 21".to_owned()
            )
        );
    }
}
