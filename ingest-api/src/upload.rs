//! A validated upload, report amendment and their parts: what the database layer writes.
//!
//! Values of these types are only built by [`crate::validation`] from request bodies ("parse,
//! don't validate"), so the rest of the service can trust them.

use clinical_catalogue::{Code, Flag, InstrumentType, Range};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// A bulk upload from one tablet.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The client-generated idempotency key.
    pub upload_id: Uuid,
    /// The visits in the upload, at least one.
    pub checkups: Vec<Checkup>,
}

/// A visit: one patient, several instrument readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkup {
    /// Client-generated id.
    pub id: Uuid,
    /// The patient's identity and demographics; what the upload may change of a stored patient
    /// depends on the clinic's link to it (see `store::patients`).
    pub patient: Patient,
    /// When the visit began.
    pub started_at: OffsetDateTime,
    /// When it ended, if it has (never before `started_at`).
    pub completed_at: Option<OffsetDateTime>,
    /// The readings taken, at least one.
    pub reports: Vec<Report>,
}

/// A patient's demographics as the tablet knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    /// Client-generated (or registry) id.
    pub id: Uuid,
    /// The clinic's reference, e.g. a medical record number.
    pub external_ref: String,
    /// Full name.
    pub full_name: String,
    /// Date of birth (not in the future).
    pub birth_date: Date,
    /// Administrative sex.
    pub sex: Sex,
    /// Phone number: keep the stored one, clear it, or set it.
    pub phone: Patch<String>,
    /// E-mail address, under the same rule as `phone`.
    pub email: Patch<String>,
}

/// What an upload does to an optional stored field, as JSON merge-patch (RFC 7396) reads it:
/// a member left out keeps the stored value, `null` (or blank text) clears it, a value sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch<T> {
    /// The member was absent.
    Keep,
    /// The member was `null` or blank.
    Clear,
    /// The member's value.
    Set(T),
}

impl<T: Clone> Patch<T> {
    /// The value after applying this patch to `stored`.
    pub fn apply(&self, stored: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => stored,
            Patch::Clear => None,
            Patch::Set(value) => Some(value.clone()),
        }
    }
}

/// Administrative sex, as FHIR names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    /// female
    Female,
    /// male
    Male,
    /// other
    Other,
    /// unknown
    Unknown,
}

impl Sex {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
}

/// One instrument reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Client-generated id.
    pub id: Uuid,
    /// The kind of instrument.
    pub instrument: InstrumentType,
    /// The instrument's serial number.
    pub serial: String,
    /// When the reading was taken.
    pub taken_at: OffsetDateTime,
    /// Free-text notes, if any.
    pub notes: Option<String>,
    /// The instrument's own payload: a JSON object, bounded in size and depth.
    pub raw: serde_json::Value,
    /// The values read, each code at most once, each one the instrument may report.
    pub measurements: Vec<Measurement>,
}

/// One value of a reading, in its code's unit and within its possible range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The catalogue entry (code, display name, unit, ranges).
    pub code: &'static Code,
    /// The value in the code's unit, within the code's possible range in the catalogue.
    pub value: f64,
}

impl Measurement {
    /// The reference range the server attaches, if the code has one.
    pub fn reference(&self) -> Option<Range> {
        self.code.reference
    }

    /// The flag the server computes, if the code has a reference range.
    pub fn flag(&self) -> Option<Flag> {
        self.code.flag(self.value)
    }
}

/// The status an amendment sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendedStatus {
    /// The report was corrected.
    Amended,
    /// The report should never have existed.
    EnteredInError,
}

impl AmendedStatus {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            AmendedStatus::Amended => "amended",
            AmendedStatus::EnteredInError => "entered-in-error",
        }
    }
}

/// A change to a stored report (`PATCH /v1/reports/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Amendment {
    /// The new status.
    pub status: AmendedStatus,
    /// `None`: keep the notes; `Some(None)`: clear them; `Some(Some(text))`: replace them.
    pub notes: Option<Option<String>>,
    /// `None`: keep the measurements; `Some(set)`: replace them by exactly this set.
    pub measurements: Option<Vec<Measurement>>,
}
