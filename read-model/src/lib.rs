//! The read model in MongoDB: the contract between `cdc-daemon`, which writes it, and
//! `reports-api`, which reads it.
//!
//! - `reports`: one document per report, `_id` = report id, fully denormalized (patient
//!   snapshot, checkup with clinic name, device label and `clinic_record_number`: the patient's
//!   record number at the checkup's clinic, `null` when the clinic has none; instrument, status,
//!   notes, `raw` as JSON text, measurements keyed by code, `_cdc` with the source commit LSN
//!   and time);
//! - `patients`: one document per patient: demographics and `latest`, the newest value of each
//!   measurement code (reports entered in error do not count);
//! - `lookup_clinics`, `lookup_devices`, `lookup_checkups`, `lookup_patient_clinics`: what the
//!   daemon needs to denormalize new reports without querying the source; nobody else reads
//!   them;
//! - `cdc_checkpoints`: per replication slot, the last source commit whose writes are all
//!   acknowledged by the store;
//! - `cdc_dead_letters`: changes the daemon could not map, kept for inspection and replay;
//! - `cdc_moving_reports`: a report moved to another patient, while the daemon moves its
//!   document from the old patient to the new one (empty between moves).

pub mod checkpoint;
pub mod indexes;
pub mod lsn;

/// The replication slot the daemon streams from unless `slot` (`MYHEALTH_SLOT`) names another:
/// the daemon's checkpoint in [`CHECKPOINTS`] is keyed by it, the reports API reads that
/// checkpoint for freshness, and the ingest API reads the slot's confirmed position for
/// `replicated`.
pub const DEFAULT_SLOT: &str = "myhealth_cdc";

/// Report documents.
pub const REPORTS: &str = "reports";
/// Per-patient documents.
pub const PATIENTS: &str = "patients";
/// Clinic names, for denormalizing checkups.
pub const LOOKUP_CLINICS: &str = "lookup_clinics";
/// Device labels, for denormalizing checkups.
pub const LOOKUP_DEVICES: &str = "lookup_devices";
/// Checkups, for denormalizing reports.
pub const LOOKUP_CHECKUPS: &str = "lookup_checkups";
/// Patient–clinic links (`_id` = `<patient id>/<clinic id>`) with the clinic's record number,
/// for denormalizing checkups.
pub const LOOKUP_PATIENT_CLINICS: &str = "lookup_patient_clinics";
/// Replication checkpoints, one per slot.
pub const CHECKPOINTS: &str = "cdc_checkpoints";
/// Changes that could not be mapped.
pub const DEAD_LETTERS: &str = "cdc_dead_letters";
/// Copies of report documents being moved to another patient, keyed by report id and the
/// move's LSN (`<id>@<LSN in hex>`): a report cannot be under both patients at once (one
/// `_id`), so its copy here is what a move resumes from after a crash.
pub const MOVING_REPORTS: &str = "cdc_moving_reports";
