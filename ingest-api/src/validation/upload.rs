//! Upload bodies (`POST /v1/uploads`): the upload, its checkups, each checkup's patient and
//! reports, and the checks that span the whole upload: checkup and report ids are unique, and
//! a patient sent in several checkups carries the same demographics in each.

use std::collections::HashMap;

use clinical_catalogue::InstrumentType;
use serde::de::MapAccess;
use serde_json::Value;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::Limits;
use super::measurement::{MeasurementMembers, measurements};
use super::raw::raw;
use super::read::{List, Members, Object, Reader};
use super::walk::{At, Leaf, Problems, Text, parse_each};
use crate::upload::{Checkup, Patch, Patient, Report, Sex, Upload};

const EXTERNAL_REF: Text = Text::line(64);
const FULL_NAME: Text = Text::line(200);
const PHONE: Text = Text::line(32);
const EMAIL: Text = Text::line(254);
const SERIAL: Text = Text::line(64);
/// Report notes; also the amendment's.
pub(super) const NOTES: Text = Text::multiline(4000);

const SEXES: [(&str, Sex); 4] = [
    ("female", Sex::Female),
    ("male", Sex::Male),
    ("other", Sex::Other),
    ("unknown", Sex::Unknown),
];

/// The members of an upload as read (each `None` when absent).
#[derive(Debug, Default)]
pub(super) struct UploadMembers {
    upload_id: Option<Leaf<Uuid>>,
    checkups: Option<List<Object<CheckupMembers>>>,
}

/// A member of an upload.
#[derive(Debug, Clone, Copy)]
pub(super) enum UploadMember {
    UploadId,
    Checkups,
}

impl Members for UploadMembers {
    type Name = UploadMember;

    const NAMES: &'static [(&'static str, UploadMember)] = &[
        ("upload_id", UploadMember::UploadId),
        ("checkups", UploadMember::Checkups),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: UploadMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        match name {
            UploadMember::UploadId => {
                self.upload_id = Some(map.next_value_seed(reader.scalar())?.uuid());
            }
            UploadMember::Checkups => {
                let seed = reader.list(reader.limits.max_checkups, reader.object());
                self.checkups = Some(map.next_value_seed(seed)?);
            }
        }
        Ok(())
    }
}

/// The members of a checkup as read; `completed_at` is `None` when absent or `null`.
#[derive(Debug, Default)]
pub(super) struct CheckupMembers {
    id: Option<Leaf<Uuid>>,
    patient: Option<Object<PatientMembers>>,
    started_at: Option<Leaf<OffsetDateTime>>,
    completed_at: Option<Leaf<OffsetDateTime>>,
    reports: Option<List<Object<ReportMembers>>>,
}

/// A member of a checkup.
#[derive(Debug, Clone, Copy)]
pub(super) enum CheckupMember {
    Id,
    Patient,
    StartedAt,
    CompletedAt,
    Reports,
}

impl Members for CheckupMembers {
    type Name = CheckupMember;

    const NAMES: &'static [(&'static str, CheckupMember)] = &[
        ("id", CheckupMember::Id),
        ("patient", CheckupMember::Patient),
        ("started_at", CheckupMember::StartedAt),
        ("completed_at", CheckupMember::CompletedAt),
        ("reports", CheckupMember::Reports),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: CheckupMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        match name {
            CheckupMember::Id => self.id = Some(map.next_value_seed(reader.scalar())?.uuid()),
            CheckupMember::Patient => self.patient = Some(map.next_value_seed(reader.object())?),
            CheckupMember::StartedAt => {
                let value = map.next_value_seed(reader.scalar())?;
                self.started_at = Some(value.timestamp(reader.clock));
            }
            CheckupMember::CompletedAt => {
                let value = map.next_value_seed(reader.scalar())?;
                self.completed_at = (!value.is_null()).then(|| value.timestamp(reader.clock));
            }
            CheckupMember::Reports => {
                let seed = reader.list(reader.limits.max_reports_per_checkup, reader.object());
                self.reports = Some(map.next_value_seed(seed)?);
            }
        }
        Ok(())
    }
}

/// The members of a patient as read; `phone` and `email` are `Some(Ok(None))` when `null` or
/// blank.
#[derive(Debug, Default)]
pub(super) struct PatientMembers {
    id: Option<Leaf<Uuid>>,
    external_ref: Option<Leaf<String>>,
    full_name: Option<Leaf<String>>,
    birth_date: Option<Leaf<Date>>,
    sex: Option<Leaf<Sex>>,
    phone: Option<Leaf<Option<String>>>,
    email: Option<Leaf<Option<String>>>,
}

/// A member of a patient.
#[derive(Debug, Clone, Copy)]
pub(super) enum PatientMember {
    Id,
    ExternalRef,
    FullName,
    BirthDate,
    Sex,
    Phone,
    Email,
}

impl Members for PatientMembers {
    type Name = PatientMember;

    const NAMES: &'static [(&'static str, PatientMember)] = &[
        ("id", PatientMember::Id),
        ("external_ref", PatientMember::ExternalRef),
        ("full_name", PatientMember::FullName),
        ("birth_date", PatientMember::BirthDate),
        ("sex", PatientMember::Sex),
        ("phone", PatientMember::Phone),
        ("email", PatientMember::Email),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: PatientMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        let value = map.next_value_seed(reader.scalar())?;
        match name {
            PatientMember::Id => self.id = Some(value.uuid()),
            PatientMember::ExternalRef => self.external_ref = Some(value.text(EXTERNAL_REF)),
            PatientMember::FullName => self.full_name = Some(value.text(FULL_NAME)),
            PatientMember::BirthDate => self.birth_date = Some(value.birth_date(reader.clock)),
            PatientMember::Sex => self.sex = Some(value.one_of("sex", &SEXES)),
            PatientMember::Phone => self.phone = Some(value.optional_text(PHONE)),
            PatientMember::Email => self.email = Some(email(value.optional_text(EMAIL))),
        }
        Ok(())
    }
}

/// The members of a report as read.
#[derive(Debug, Default)]
pub(super) struct ReportMembers {
    id: Option<Leaf<Uuid>>,
    instrument: Option<Object<InstrumentMembers>>,
    taken_at: Option<Leaf<OffsetDateTime>>,
    notes: Option<Leaf<Option<String>>>,
    raw: Option<Leaf<Value>>,
    measurements: Option<List<Object<MeasurementMembers>>>,
}

/// A member of a report.
#[derive(Debug, Clone, Copy)]
pub(super) enum ReportMember {
    Id,
    Instrument,
    TakenAt,
    Notes,
    Raw,
    Measurements,
}

impl Members for ReportMembers {
    type Name = ReportMember;

    const NAMES: &'static [(&'static str, ReportMember)] = &[
        ("id", ReportMember::Id),
        ("instrument", ReportMember::Instrument),
        ("taken_at", ReportMember::TakenAt),
        ("notes", ReportMember::Notes),
        ("raw", ReportMember::Raw),
        ("measurements", ReportMember::Measurements),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: ReportMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        match name {
            ReportMember::Id => self.id = Some(map.next_value_seed(reader.scalar())?.uuid()),
            ReportMember::Instrument => {
                self.instrument = Some(map.next_value_seed(reader.object())?);
            }
            ReportMember::TakenAt => {
                let value = map.next_value_seed(reader.scalar())?;
                self.taken_at = Some(value.timestamp(reader.clock));
            }
            ReportMember::Notes => {
                let value = map.next_value_seed(reader.scalar())?;
                self.notes = Some(value.optional_text(NOTES));
            }
            ReportMember::Raw => self.raw = Some(map.next_value_seed(reader.raw())?),
            ReportMember::Measurements => {
                let seed = reader.list(reader.limits.max_measurements_per_report, reader.object());
                self.measurements = Some(map.next_value_seed(seed)?);
            }
        }
        Ok(())
    }
}

/// The members of a report's instrument as read.
#[derive(Debug, Default)]
pub(super) struct InstrumentMembers {
    kind: Option<Leaf<InstrumentType>>,
    serial: Option<Leaf<String>>,
}

/// A member of an instrument.
#[derive(Debug, Clone, Copy)]
pub(super) enum InstrumentMember {
    Type,
    Serial,
}

impl Members for InstrumentMembers {
    type Name = InstrumentMember;

    const NAMES: &'static [(&'static str, InstrumentMember)] = &[
        ("type", InstrumentMember::Type),
        ("serial", InstrumentMember::Serial),
    ];

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: InstrumentMember,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error> {
        let value = map.next_value_seed(reader.scalar())?;
        match name {
            InstrumentMember::Type => {
                let kinds = InstrumentType::ALL.map(|kind| (kind.as_str(), kind));
                self.kind = Some(value.one_of("instrument type", &kinds));
            }
            InstrumentMember::Serial => self.serial = Some(value.text(SERIAL)),
        }
        Ok(())
    }
}

/// The upload read from a body, or `None` with the problems recorded.
pub(super) fn upload(
    body: Object<UploadMembers>,
    limits: &Limits,
    problems: &mut Problems,
) -> Option<Upload> {
    UploadWalk {
        limits,
        checkup_ids: HashMap::new(),
        report_ids: HashMap::new(),
        patients: HashMap::new(),
    }
    .upload(body, problems)
}

/// What the walk over one upload remembers from the parts already seen.
struct UploadWalk<'l> {
    limits: &'l Limits,
    /// The pointer of each checkup id's first use, to name it when the id is used again.
    checkup_ids: HashMap<Uuid, String>,
    /// The same for report ids (unique across the whole upload, not just within a checkup).
    report_ids: HashMap<Uuid, String>,
    /// Each patient's first demographics and their pointer, which repeats must match.
    patients: HashMap<Uuid, (Patient, String)>,
}

impl UploadWalk<'_> {
    fn upload(&mut self, body: Object<UploadMembers>, problems: &mut Problems) -> Option<Upload> {
        let root = At::Root;
        let members = problems.object(body, &root)?;
        let at = root.member("upload_id");
        let upload_id = problems.required_leaf(members.upload_id, &at);
        let at = root.member("checkups");
        let checkups = problems
            .required(members.checkups, &at)
            .and_then(|list| problems.list(list, 1..=self.limits.max_checkups, &at))
            .and_then(|elements| {
                parse_each(elements, &at, |element, at| {
                    self.checkup(element, at, problems)
                })
            });
        Some(Upload {
            upload_id: upload_id?,
            checkups: checkups?,
        })
    }

    fn checkup(
        &mut self,
        checkup: Object<CheckupMembers>,
        here: &At<'_>,
        problems: &mut Problems,
    ) -> Option<Checkup> {
        let members = problems.object(checkup, here)?;
        let at = here.member("id");
        let id = problems
            .required(members.id, &at)
            .and_then(|leaf| unique_id(leaf, &at, &mut self.checkup_ids, problems));
        let at = here.member("patient");
        let patient = problems.required(members.patient, &at).and_then(|object| {
            let patient = patient(object, &at, problems)?;
            self.same_demographics(&patient, &at, problems);
            Some(patient)
        });
        let at = here.member("started_at");
        let started_at = problems.required_leaf(members.started_at, &at);
        let at = here.member("completed_at");
        let completed_at = members.completed_at.map_or(Some(None), |leaf| {
            let completed_at = problems.leaf(leaf, &at)?;
            if let Some(started_at) = started_at
                && completed_at < started_at
            {
                problems.add(&at, "must not be before started_at");
                return None;
            }
            Some(Some(completed_at))
        });
        let at = here.member("reports");
        let reports = problems
            .required(members.reports, &at)
            .and_then(|list| problems.list(list, 1..=self.limits.max_reports_per_checkup, &at))
            .and_then(|elements| {
                parse_each(elements, &at, |element, at| {
                    self.report(element, at, problems)
                })
            });
        Some(Checkup {
            id: id?,
            patient: patient?,
            started_at: started_at?,
            completed_at: completed_at?,
            reports: reports?,
        })
    }

    /// Remembers the first demographics sent for a patient; reports later ones that differ.
    fn same_demographics(&mut self, patient: &Patient, at: &At<'_>, problems: &mut Problems) {
        match self.patients.get(&patient.id) {
            Some((first, first_pointer)) if first != patient => problems.add(
                at,
                format!(
                    "patient {} is also sent at {first_pointer} with different demographics; \
                     they must be identical",
                    patient.id
                ),
            ),
            Some(_) => {}
            None => {
                self.patients
                    .insert(patient.id, (patient.clone(), at.pointer()));
            }
        }
    }

    fn report(
        &mut self,
        report: Object<ReportMembers>,
        here: &At<'_>,
        problems: &mut Problems,
    ) -> Option<Report> {
        let members = problems.object(report, here)?;
        let at = here.member("id");
        let id = problems
            .required(members.id, &at)
            .and_then(|leaf| unique_id(leaf, &at, &mut self.report_ids, problems));
        let at = here.member("instrument");
        let (instrument, serial) = problems
            .required(members.instrument, &at)
            .map_or((None, None), |object| instrument(object, &at, problems));
        let at = here.member("taken_at");
        let taken_at = problems.required_leaf(members.taken_at, &at);
        let at = here.member("notes");
        let notes = members
            .notes
            .map_or(Some(None), |leaf| problems.leaf(leaf, &at));
        let raw = raw(members.raw, &here.member("raw"), self.limits, problems);
        let at = here.member("measurements");
        let measurements = problems
            .required(members.measurements, &at)
            .and_then(|list| {
                let count = 1..=self.limits.max_measurements_per_report;
                measurements(list, count, instrument, &at, problems)
            });
        Some(Report {
            id: id?,
            instrument: instrument?,
            serial: serial?,
            taken_at: taken_at?,
            notes: notes?,
            raw: raw?,
            measurements: measurements?,
        })
    }
}

/// The patient read at `at`, or `None` with its problems recorded.
fn patient(
    object: Object<PatientMembers>,
    at: &At<'_>,
    problems: &mut Problems,
) -> Option<Patient> {
    let members = problems.object(object, at)?;
    let id = problems.required_leaf(members.id, &at.member("id"));
    let external_ref = problems.required_leaf(members.external_ref, &at.member("external_ref"));
    let full_name = problems.required_leaf(members.full_name, &at.member("full_name"));
    let birth_date = problems.required_leaf(members.birth_date, &at.member("birth_date"));
    let sex = problems.required_leaf(members.sex, &at.member("sex"));
    let phone = members.phone.map_or(Some(Patch::Keep), |leaf| {
        problems.leaf(leaf, &at.member("phone")).map(patch)
    });
    let email = members.email.map_or(Some(Patch::Keep), |leaf| {
        problems.leaf(leaf, &at.member("email")).map(patch)
    });
    Some(Patient {
        id: id?,
        external_ref: external_ref?,
        full_name: full_name?,
        birth_date: birth_date?,
        sex: sex?,
        phone: phone?,
        email: email?,
    })
}

/// An id that must not have been used before in `seen` (checkup or report ids of the upload).
fn unique_id(
    leaf: Leaf<Uuid>,
    at: &At<'_>,
    seen: &mut HashMap<Uuid, String>,
    problems: &mut Problems,
) -> Option<Uuid> {
    let id = problems.leaf(leaf, at)?;
    if let Some(first) = seen.get(&id) {
        problems.add(at, format!("duplicate id; first used at {first}"));
        return None;
    }
    seen.insert(id, at.pointer());
    Some(id)
}

/// The report's `{type, serial}`, each part reported on its own so that a bad serial does not
/// hide which codes the type may report.
fn instrument(
    object: Object<InstrumentMembers>,
    here: &At<'_>,
    problems: &mut Problems,
) -> (Option<InstrumentType>, Option<String>) {
    let Some(members) = problems.object(object, here) else {
        return (None, None);
    };
    let at = here.member("type");
    let kind = problems.required_leaf(members.kind, &at);
    let at = here.member("serial");
    let serial = problems.required_leaf(members.serial, &at);
    (kind, serial)
}

/// A present optional member as a merge patch: `null` or blank clears, a value sets.
fn patch(value: Option<String>) -> Patch<String> {
    value.map_or(Patch::Clear, Patch::Set)
}

/// An optional e-mail address: one `@` with text on both sides.
fn email(text: Leaf<Option<String>>) -> Leaf<Option<String>> {
    let email = text?;
    if let Some(address) = &email {
        let well_formed = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
        if !well_formed {
            return Err("must be an e-mail address: one '@' with text on both sides".into());
        }
    }
    Ok(email)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clinical_catalogue::InstrumentType;
    use serde_json::{Value, json};
    use time::macros::{date, datetime};

    use super::*;
    use crate::validation::fixtures::{
        CHECKUP_ID, PATIENT_ID, REPORT_ID, UPLOAD_ID, invalid, parse, valid_upload, with, without,
    };

    const PATIENT: &str = "/checkups/0/patient";
    const REPORT: &str = "/checkups/0/reports/0";

    /// The single problem of `body`, as `(pointer, detail)`.
    fn only_problem(body: &Value) -> (String, String) {
        let problems = invalid(body);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.into_iter().next().unwrap()
    }

    fn pointer_of_only_problem(body: &Value) -> String {
        only_problem(body).0
    }

    /// A second checkup: a copy of the first with fresh checkup and report ids.
    fn second_checkup() -> Value {
        let mut checkup = valid_upload()["checkups"][0].clone();
        checkup["id"] = json!("00000000-0000-4000-8000-000000000001");
        checkup["reports"][0]["id"] = json!("00000000-0000-4000-8000-000000000002");
        checkup
    }

    fn with_second_checkup(checkup: Value) -> Value {
        let mut body = valid_upload();
        body["checkups"].as_array_mut().unwrap().push(checkup);
        body
    }

    #[test]
    fn the_documented_example_parses_into_the_domain_types() {
        let upload = parse(&valid_upload()).unwrap();
        assert_eq!(upload.upload_id.to_string(), UPLOAD_ID);
        let checkup = &upload.checkups[0];
        assert_eq!(checkup.id.to_string(), CHECKUP_ID);
        assert_eq!(checkup.started_at, datetime!(2026-11-27 09:00 UTC));
        assert_eq!(checkup.completed_at, Some(datetime!(2026-11-27 09:20 UTC)));
        assert_eq!(
            checkup.patient,
            Patient {
                id: PATIENT_ID.parse().unwrap(),
                external_ref: "MRN-001".to_owned(),
                full_name: "Ada Lovelace".to_owned(),
                birth_date: date!(1985 - 12 - 10),
                sex: Sex::Female,
                phone: Patch::Set("+44 20 7946 0000".to_owned()),
                email: Patch::Set("ada@example.org".to_owned()),
            }
        );
        let report = &checkup.reports[0];
        assert_eq!(report.id.to_string(), REPORT_ID);
        assert_eq!(report.instrument, InstrumentType::BloodPressure);
        assert_eq!(report.serial, "BP-123");
        assert_eq!(report.taken_at, datetime!(2026-11-27 09:05 UTC));
        assert_eq!(report.notes.as_deref(), Some("left arm, seated"));
        assert_eq!(report.measurements.len(), 2);
    }

    #[test]
    fn the_body_must_be_an_object() {
        let body = json!([valid_upload()]);
        assert_eq!(
            only_problem(&body),
            (String::new(), "must be an object".to_owned())
        );
    }

    #[test]
    fn a_missing_member_is_reported_where_it_should_be() {
        for pointer in [
            "/upload_id",
            "/checkups",
            "/checkups/0/id",
            "/checkups/0/patient",
            "/checkups/0/patient/id",
            "/checkups/0/patient/external_ref",
            "/checkups/0/patient/full_name",
            "/checkups/0/patient/birth_date",
            "/checkups/0/patient/sex",
            "/checkups/0/started_at",
            "/checkups/0/reports",
            "/checkups/0/reports/0/id",
            "/checkups/0/reports/0/instrument",
            "/checkups/0/reports/0/instrument/type",
            "/checkups/0/reports/0/instrument/serial",
            "/checkups/0/reports/0/taken_at",
            "/checkups/0/reports/0/measurements",
        ] {
            let body = without(valid_upload(), pointer);
            assert_eq!(
                only_problem(&body),
                (pointer.to_owned(), "is required".to_owned()),
                "{pointer}"
            );
        }
    }

    #[test]
    fn optional_members_may_be_absent_or_null() {
        for pointer in [
            "/checkups/0/patient/phone",
            "/checkups/0/patient/email",
            "/checkups/0/completed_at",
            "/checkups/0/reports/0/notes",
        ] {
            assert!(
                parse(&without(valid_upload(), pointer)).is_ok(),
                "{pointer}"
            );
            assert!(
                parse(&with(valid_upload(), pointer, json!(null))).is_ok(),
                "{pointer}"
            );
        }
        let upload = parse(&with(
            valid_upload(),
            "/checkups/0/completed_at",
            json!(null),
        ))
        .unwrap();
        assert_eq!(upload.checkups[0].completed_at, None);
    }

    #[test]
    fn blank_optional_text_means_none() {
        let body = with(valid_upload(), "/checkups/0/patient/phone", json!("  "));
        assert_eq!(
            parse(&body).unwrap().checkups[0].patient.phone,
            Patch::Clear
        );
    }

    #[test]
    fn absent_phone_and_email_keep_the_stored_value_and_null_clears_it() {
        for member in ["phone", "email"] {
            let pointer = format!("/checkups/0/patient/{member}");
            let patient = |body: &Value| parse(body).unwrap().checkups[0].patient.clone();
            let field = |patient: Patient| match member {
                "phone" => patient.phone,
                _ => patient.email,
            };
            assert_eq!(
                field(patient(&without(valid_upload(), &pointer))),
                Patch::Keep
            );
            assert_eq!(
                field(patient(&with(valid_upload(), &pointer, json!(null)))),
                Patch::Clear
            );
        }
    }

    #[test]
    fn unknown_members_are_reported_at_the_member() {
        for pointer in [
            "/extra",
            "/checkups/0/extra",
            "/checkups/0/patient/extra",
            "/checkups/0/reports/0/extra",
            "/checkups/0/reports/0/instrument/extra",
        ] {
            let body = with(valid_upload(), pointer, json!(1));
            assert_eq!(
                only_problem(&body),
                (pointer.to_owned(), "unknown field".to_owned()),
                "{pointer}"
            );
        }
    }

    #[test]
    fn unknown_member_names_are_escaped_in_pointers() {
        let mut body = valid_upload();
        body["checkups"][0]["patient"]["a/b~c"] = json!(1);
        assert_eq!(
            pointer_of_only_problem(&body),
            "/checkups/0/patient/a~1b~0c"
        );
    }

    #[test]
    fn wrong_types_are_reported_at_the_member() {
        let cases = [
            ("/upload_id", json!(1), "must be a string"),
            ("/checkups", json!({}), "must be an array"),
            ("/checkups/0", json!("checkup"), "must be an object"),
            ("/checkups/0/patient", json!([]), "must be an object"),
            (
                "/checkups/0/patient/full_name",
                json!(null),
                "must be a string",
            ),
            (
                "/checkups/0/reports/0/instrument",
                json!("bp"),
                "must be an object",
            ),
            (
                "/checkups/0/reports/0/measurements",
                json!({}),
                "must be an array",
            ),
        ];
        for (pointer, value, detail) in cases {
            let body = with(valid_upload(), pointer, value);
            assert_eq!(only_problem(&body), (pointer.to_owned(), detail.to_owned()));
        }
    }

    #[test]
    fn ids_must_be_hyphenated_uuids() {
        let body = with(valid_upload(), "/checkups/0/id", json!("not-a-uuid"));
        assert_eq!(pointer_of_only_problem(&body), "/checkups/0/id");
        let simple = CHECKUP_ID.replace('-', "");
        let body = with(valid_upload(), "/checkups/0/id", json!(simple));
        assert_eq!(pointer_of_only_problem(&body), "/checkups/0/id");
        let upper = CHECKUP_ID.to_uppercase();
        let body = with(valid_upload(), "/checkups/0/id", json!(upper));
        assert_eq!(parse(&body).unwrap().checkups[0].id.to_string(), CHECKUP_ID);
    }

    #[test]
    fn text_limits_are_reported_at_the_member() {
        let cases = [
            ("/checkups/0/patient/external_ref", 64),
            ("/checkups/0/patient/full_name", 200),
            ("/checkups/0/patient/phone", 32),
            ("/checkups/0/reports/0/instrument/serial", 64),
            ("/checkups/0/reports/0/notes", 4000),
        ];
        for (pointer, max) in cases {
            assert!(parse(&with(valid_upload(), pointer, json!("x".repeat(max)))).is_ok());
            let body = with(valid_upload(), pointer, json!("x".repeat(max + 1)));
            assert_eq!(
                only_problem(&body),
                (
                    pointer.to_owned(),
                    format!("must be at most {max} characters; it has {}", max + 1)
                )
            );
        }
        let email = |local_chars| json!(format!("{}@example.org", "x".repeat(local_chars)));
        let pointer = "/checkups/0/patient/email";
        assert!(parse(&with(valid_upload(), pointer, email(242))).is_ok());
        assert_eq!(
            only_problem(&with(valid_upload(), pointer, email(243))),
            (
                pointer.to_owned(),
                "must be at most 254 characters; it has 255".to_owned()
            )
        );
    }

    #[test]
    fn required_text_must_not_be_blank() {
        let body = with(
            valid_upload(),
            "/checkups/0/patient/full_name",
            json!(" \t "),
        );
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/patient/full_name".to_owned(),
                "must not be blank".to_owned()
            )
        );
    }

    #[test]
    fn text_is_stored_trimmed() {
        let body = with(
            valid_upload(),
            "/checkups/0/patient/full_name",
            json!(" Ada "),
        );
        assert_eq!(parse(&body).unwrap().checkups[0].patient.full_name, "Ada");
    }

    #[test]
    fn control_characters_are_rejected_except_line_breaks_and_tabs_in_notes() {
        let body = with(
            valid_upload(),
            "/checkups/0/patient/full_name",
            json!("Ada\nL"),
        );
        assert_eq!(
            pointer_of_only_problem(&body),
            "/checkups/0/patient/full_name"
        );
        let body = with(
            valid_upload(),
            "/checkups/0/patient/external_ref",
            json!("M\u{0}1"),
        );
        assert_eq!(
            pointer_of_only_problem(&body),
            "/checkups/0/patient/external_ref"
        );
        let notes = "left arm\n\tseated";
        let body = with(valid_upload(), "/checkups/0/reports/0/notes", json!(notes));
        assert_eq!(
            parse(&body).unwrap().checkups[0].reports[0]
                .notes
                .as_deref(),
            Some(notes)
        );
        let body = with(
            valid_upload(),
            "/checkups/0/reports/0/notes",
            json!("a\u{0}"),
        );
        assert_eq!(
            pointer_of_only_problem(&body),
            "/checkups/0/reports/0/notes"
        );
    }

    #[test]
    fn emails_need_one_at_sign_with_text_on_both_sides() {
        for bad in ["ada", "@example.org", "ada@", "a@b@c"] {
            let body = with(valid_upload(), "/checkups/0/patient/email", json!(bad));
            assert_eq!(
                pointer_of_only_problem(&body),
                "/checkups/0/patient/email",
                "{bad}"
            );
        }
    }

    #[test]
    fn timestamps_must_have_an_offset() {
        let body = with(
            valid_upload(),
            "/checkups/0/started_at",
            json!("2026-11-27T09:00:00"),
        );
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/started_at".to_owned(),
                "must have a UTC offset (Z or ±hh:mm), e.g. 2026-11-27T09:00:00Z".to_owned()
            )
        );
        let body = with(
            valid_upload(),
            "/checkups/0/reports/0/taken_at",
            json!("yesterday"),
        );
        assert_eq!(
            pointer_of_only_problem(&body),
            "/checkups/0/reports/0/taken_at"
        );
    }

    #[test]
    fn timestamps_in_the_future_beyond_the_skew_are_rejected() {
        // The fixtures' clock reads 2026-11-27T10:00:00Z; five minutes of skew are allowed.
        let body = with(
            valid_upload(),
            "/checkups/0/completed_at",
            json!("2026-11-27T10:04:00Z"),
        );
        assert!(parse(&body).is_ok());
        for pointer in ["/checkups/0/completed_at", "/checkups/0/reports/0/taken_at"] {
            let body = with(valid_upload(), pointer, json!("2026-11-27T10:06:00Z"));
            assert_eq!(pointer_of_only_problem(&body), pointer);
        }
    }

    #[test]
    fn offsets_are_honoured_when_comparing() {
        // 10:30+02:00 is 08:30Z: in the past, and before started_at (09:00Z).
        let body = with(
            valid_upload(),
            "/checkups/0/completed_at",
            json!("2026-11-27T10:30:00+02:00"),
        );
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/completed_at".to_owned(),
                "must not be before started_at".to_owned()
            )
        );
    }

    #[test]
    fn taken_at_may_lie_outside_the_checkup() {
        let body = with(
            valid_upload(),
            "/checkups/0/reports/0/taken_at",
            json!("2026-11-26T09:00:00Z"),
        );
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn birth_dates_are_plain_dates_from_1900_to_today() {
        let pointer = "/checkups/0/patient/birth_date";
        for bad in [
            "1985-12-10T00:00:00Z",
            "10/12/1985",
            "1985-13-01",
            "1985-2-1",
            "+1985-12-10",
        ] {
            let body = with(valid_upload(), pointer, json!(bad));
            assert_eq!(
                only_problem(&body),
                (
                    pointer.to_owned(),
                    "must be a date in the form YYYY-MM-DD".to_owned()
                ),
                "{bad}"
            );
        }
        assert!(parse(&with(valid_upload(), pointer, json!("1900-01-01"))).is_ok());
        assert!(parse(&with(valid_upload(), pointer, json!("2026-11-27"))).is_ok());
        let body = with(valid_upload(), pointer, json!("2026-11-28"));
        assert_eq!(
            only_problem(&body),
            (pointer.to_owned(), "must not be in the future".to_owned())
        );
        let body = with(valid_upload(), pointer, json!("1899-12-31"));
        assert_eq!(
            only_problem(&body),
            (
                pointer.to_owned(),
                "must not be before 1900-01-01".to_owned()
            )
        );
    }

    #[test]
    fn sex_must_be_one_of_the_fhir_codes() {
        let body = with(valid_upload(), "/checkups/0/patient/sex", json!("F"));
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/patient/sex".to_owned(),
                "unknown sex \"F\"; expected one of female, male, other, unknown".to_owned()
            )
        );
    }

    #[test]
    fn instrument_types_must_be_catalogued() {
        let body = with(
            valid_upload(),
            "/checkups/0/reports/0/instrument/type",
            json!("sphygmo"),
        );
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/reports/0/instrument/type".to_owned(),
                "unknown instrument type \"sphygmo\"; expected one of blood_pressure, \
                 pulse_oximeter, thermometer, scale, height_meter, glucometer, ecg"
                    .to_owned()
            )
        );
    }

    #[test]
    fn array_counts_are_checked_at_the_array() {
        let body = with(valid_upload(), "/checkups", json!([]));
        assert_eq!(
            only_problem(&body),
            ("/checkups".to_owned(), "must not be empty".to_owned())
        );
        let body = with(valid_upload(), "/checkups/0/reports", json!([]));
        assert_eq!(
            only_problem(&body),
            (
                "/checkups/0/reports".to_owned(),
                "must not be empty".to_owned()
            )
        );
    }

    #[test]
    fn too_many_checkups_are_reported_once_and_only_the_first_ones_are_read() {
        let checkups = vec![json!("not a checkup"); 10_000];
        let problems = invalid(&with(valid_upload(), "/checkups", Value::Array(checkups)));
        assert_eq!(
            problems[0],
            (
                "/checkups".to_owned(),
                "must have at most 200 elements; it has 10000".to_owned()
            )
        );
        assert_eq!(problems.len(), 1 + 200);
        assert_eq!(problems[200].0, "/checkups/199");
    }

    #[test]
    fn too_many_reports_are_reported_at_the_array() {
        let reports = vec![json!({}); 51];
        let problems = invalid(&with(
            valid_upload(),
            "/checkups/0/reports",
            Value::Array(reports),
        ));
        assert_eq!(
            problems[0],
            (
                "/checkups/0/reports".to_owned(),
                "must have at most 50 elements; it has 51".to_owned()
            )
        );
    }

    #[test]
    fn checkup_ids_are_unique_across_the_upload() {
        let mut checkup = second_checkup();
        checkup["id"] = json!(CHECKUP_ID);
        assert_eq!(
            only_problem(&with_second_checkup(checkup)),
            (
                "/checkups/1/id".to_owned(),
                "duplicate id; first used at /checkups/0/id".to_owned()
            )
        );
    }

    #[test]
    fn report_ids_are_unique_across_the_upload() {
        let mut checkup = second_checkup();
        checkup["reports"][0]["id"] = json!(REPORT_ID);
        assert_eq!(
            only_problem(&with_second_checkup(checkup)),
            (
                "/checkups/1/reports/0/id".to_owned(),
                "duplicate id; first used at /checkups/0/reports/0/id".to_owned()
            )
        );
    }

    #[test]
    fn a_patient_may_appear_in_several_checkups_with_the_same_demographics() {
        let upload = parse(&with_second_checkup(second_checkup())).unwrap();
        assert_eq!(upload.checkups[0].patient, upload.checkups[1].patient);
    }

    #[test]
    fn a_repeated_patient_with_other_demographics_is_reported_at_the_later_patient() {
        let mut checkup = second_checkup();
        checkup["patient"]["full_name"] = json!("Augusta Ada King");
        assert_eq!(
            only_problem(&with_second_checkup(checkup)),
            (
                "/checkups/1/patient".to_owned(),
                format!(
                    "patient {PATIENT_ID} is also sent at {PATIENT} with different \
                     demographics; they must be identical"
                )
            )
        );
    }

    #[test]
    fn every_problem_is_reported_in_document_order() {
        let mut body = valid_upload();
        body["upload_id"] = json!("nope");
        body["checkups"][0]["patient"]["sex"] = json!("f");
        body["checkups"][0]["patient"]["nickname"] = json!("Ada");
        body["checkups"][0]["started_at"] = json!("2026-11-27 09:00");
        body["checkups"][0]["reports"][0]["instrument"]["serial"] = json!("");
        body["checkups"][0]["reports"][0]["measurements"][0]["code"] = json!("2708-6");
        body["checkups"][0]["reports"][0]["measurements"][1]["value"] = json!(1000);
        body["checkups"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "id": CHECKUP_ID }));
        let pointers: Vec<String> = invalid(&body)
            .into_iter()
            .map(|(pointer, _)| pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                "/upload_id",
                "/checkups/0/patient/nickname",
                "/checkups/0/patient/sex",
                "/checkups/0/started_at",
                "/checkups/0/reports/0/instrument/serial",
                "/checkups/0/reports/0/measurements/0/code",
                "/checkups/0/reports/0/measurements/0/value",
                "/checkups/0/reports/0/measurements/0/unit",
                "/checkups/0/reports/0/measurements/1/value",
                "/checkups/1/id",
                "/checkups/1/patient",
                "/checkups/1/started_at",
                "/checkups/1/reports",
            ]
        );
    }

    #[test]
    fn a_report_with_a_bad_instrument_type_still_has_its_measurements_checked() {
        let body = with(
            valid_upload(),
            &format!("{REPORT}/instrument/type"),
            json!("x"),
        );
        let body = with(body, &format!("{REPORT}/measurements/0/unit"), json!("kPa"));
        let pointers: Vec<String> = invalid(&body)
            .into_iter()
            .map(|(pointer, _)| pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                format!("{REPORT}/instrument/type"),
                format!("{REPORT}/measurements/0/unit")
            ]
        );
    }
}
