//! The `mapping` step: row changes → document writes.
//!
//! Each published table maps to documents of the read model (see `read-model`):
//!
//! | table | writes |
//! | --- | --- |
//! | clinics, devices | their lookup document; a rename fans out to every report of the clinic or device |
//! | patients | the patient document; a change of the snapshot fans out to every report of the patient; a delete removes the patient's documents |
//! | patient_clinics | the link's lookup document; its record number fans out to the patient's reports at that clinic (see [`links`]) |
//! | checkups | the lookup document; a change fans out to the checkup embedded in its reports |
//! | reports | the report document, with the patient snapshot and the checkup (clinic name, device label) joined from the daemon's own state |
//! | measurements | `measurements.<code>` of the report document, and `latest.<code>` of the patient document |
//!
//! Joins never query the source: parents come from [`lookups`]. Deletes are routed from the
//! replica identity alone (every child's key carries its document's key). Patients' newest
//! values per code are settled after each batch (see [`latest`]): an inserted measurement is a
//! candidate that wins if it is newer; a change that can lower a newest value (a delete, an
//! amendment, a status or time change) marks the patient for recomputation from its reports.
//! A change that cannot be mapped becomes a [`DeadLetter`] and the stream goes on.

pub mod documents;
pub mod latest;
pub mod links;
pub mod lookups;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::{LOOKUP_CHECKUPS, LOOKUP_CLINICS, LOOKUP_DEVICES, PATIENTS, REPORTS};

use self::documents::FieldError;
use self::lookups::{LookupStore, Lookups, ReportInfo, link_key};
use crate::decode::relations::{RelationCache, Row, row};
use crate::decode::{ColumnData, Message, Relation, TupleData};
use crate::sink::{Batch, Write};

/// A published table the mapping knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `public.clinics`
    Clinics,
    /// `public.devices`
    Devices,
    /// `public.patients`
    Patients,
    /// `public.patient_clinics`
    PatientClinics,
    /// `public.checkups`
    Checkups,
    /// `public.reports`
    Reports,
    /// `public.measurements`
    Measurements,
}

impl Table {
    /// The table a relation describes, if the mapping knows it.
    pub fn of(relation: &Relation) -> Option<Table> {
        if relation.namespace != "public" {
            return None;
        }
        Some(match relation.name.as_str() {
            "clinics" => Table::Clinics,
            "devices" => Table::Devices,
            "patients" => Table::Patients,
            "patient_clinics" => Table::PatientClinics,
            "checkups" => Table::Checkups,
            "reports" => Table::Reports,
            "measurements" => Table::Measurements,
            _ => return None,
        })
    }

    /// The columns the mapping reads, with the types it accepts for each. A published schema
    /// without one of them (dropped, renamed) or with another type cannot be mapped: its
    /// inserts and updates become dead letters rather than documents with silent gaps.
    pub fn needed_columns(self) -> &'static [(&'static str, &'static [u32])] {
        use crate::decode::values::{
            DATE, FLOAT4, FLOAT8, INT2, INT4, INT8, JSON, JSONB, NUMERIC, TEXT, TIMESTAMP,
            TIMESTAMPTZ, UUID, VARCHAR,
        };
        const ID: &[u32] = &[UUID];
        const TEXTUAL: &[u32] = &[TEXT, VARCHAR];
        const INSTANT: &[u32] = &[TIMESTAMPTZ, TIMESTAMP];
        const NUMBER: &[u32] = &[NUMERIC, INT2, INT4, INT8, FLOAT4, FLOAT8];
        match self {
            Table::Clinics => &[("id", ID), ("name", TEXTUAL)],
            Table::Devices => &[("id", ID), ("clinic_id", ID), ("label", TEXTUAL)],
            Table::Patients => &[
                ("id", ID),
                ("external_ref", TEXTUAL),
                ("full_name", TEXTUAL),
                ("birth_date", &[DATE]),
                ("sex", TEXTUAL),
                ("phone", TEXTUAL),
                ("email", TEXTUAL),
            ],
            Table::PatientClinics => &[
                ("patient_id", ID),
                ("clinic_id", ID),
                ("external_ref", TEXTUAL),
            ],
            Table::Checkups => &[
                ("id", ID),
                ("patient_id", ID),
                ("clinic_id", ID),
                ("device_id", ID),
                ("started_at", INSTANT),
                ("completed_at", INSTANT),
            ],
            Table::Reports => &[
                ("id", ID),
                ("checkup_id", ID),
                ("patient_id", ID),
                ("instrument_type", TEXTUAL),
                ("instrument_serial", TEXTUAL),
                ("taken_at", INSTANT),
                ("status", TEXTUAL),
                ("notes", TEXTUAL),
                ("raw", &[JSONB, JSON]),
            ],
            Table::Measurements => &[
                ("report_id", ID),
                ("code", TEXTUAL),
                ("display_name", TEXTUAL),
                ("value", NUMBER),
                ("unit", TEXTUAL),
                ("reference_low", NUMBER),
                ("reference_high", NUMBER),
                ("flag", TEXTUAL),
            ],
        }
    }

    /// What keeps `relation` (of this table) from being mapped, if anything.
    pub fn schema_problem(self, relation: &Relation) -> Option<String> {
        self.needed_columns().iter().find_map(|(name, types)| {
            match relation.columns.iter().find(|column| column.name == *name) {
                None => Some(format!(
                    "column {name} is not in the published table (dropped or renamed); the mapping needs it"
                )),
                Some(column) if !types.contains(&column.type_oid) => Some(format!(
                    "column {name} changed to type {}; the mapping does not accept it",
                    column.type_oid
                )),
                Some(_) => None,
            }
        })
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Clinics => "clinics",
            Table::Devices => "devices",
            Table::Patients => "patients",
            Table::PatientClinics => "patient_clinics",
            Table::Checkups => "checkups",
            Table::Reports => "reports",
            Table::Measurements => "measurements",
        }
    }
}

/// The kind of a row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// INSERT
    Insert,
    /// UPDATE
    Update,
    /// DELETE
    Delete,
    /// TRUNCATE
    Truncate,
}

impl Operation {
    /// The operation's name, for metrics and dead letters.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Truncate => "truncate",
        }
    }
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transaction {
    /// Its commit LSN (the Begin message's final LSN).
    pub commit_lsn: u64,
    /// Its commit time.
    pub commit_time: DateTime,
}

impl Transaction {
    /// The `_cdc` field of documents this transaction writes.
    fn cdc(&self) -> Document {
        doc! { "lsn": read_model::lsn::format(self.commit_lsn), "commit_time": self.commit_time }
    }
}

/// Which `latest` codes of a patient must be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    /// Every code.
    All,
    /// These codes.
    Codes(BTreeSet<String>),
}

/// A change the mapping could not turn into writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The table.
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The row's values as sent (text), by column.
    pub values: Document,
    /// Why it could not be mapped.
    pub error: String,
}

/// What mapping one message did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapped {
    /// The table and operation, for a row change of a known table.
    pub change: Option<(Table, Operation)>,
    /// Set when the change could not be mapped.
    pub dead_letter: Option<DeadLetter>,
}

enum MapError {
    Field(FieldError),
    Orphan(String),
    Store(mongodb::error::Error),
}

impl From<FieldError> for MapError {
    fn from(error: FieldError) -> Self {
        MapError::Field(error)
    }
}

impl From<mongodb::error::Error> for MapError {
    fn from(error: mongodb::error::Error) -> Self {
        MapError::Store(error)
    }
}

/// A measurement that may become its patient's newest value of its code.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// When its report was taken.
    pub taken_at: DateTime,
    /// Its report.
    pub report_id: String,
    /// The `latest.<code>` entry it would be.
    pub entry: Document,
}

impl Candidate {
    /// Whether this candidate is newer than the entry `other` (by time, then report id).
    pub fn newer_than(&self, other: &Document) -> bool {
        let (Ok(taken_at), Ok(report_id)) =
            (other.get_datetime("taken_at"), other.get_str("report_id"))
        else {
            return true;
        };
        (self.taken_at, self.report_id.as_str()) > (*taken_at, report_id)
    }
}

/// What the batch changed about patients' newest values: patients to recompute from their
/// reports, and per patient and code the newest inserted measurement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestWork {
    /// Patients whose newest values may have gone down.
    pub dirty: BTreeMap<String, Dirty>,
    /// Per patient, per code, the batch's newest measurement.
    pub candidates: BTreeMap<String, BTreeMap<String, Candidate>>,
}

impl LatestWork {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.candidates.is_empty()
    }
}

/// Turns decoded messages into writes, keeping the state joins need.
#[derive(Debug)]
pub struct Mapper<S> {
    relations: RelationCache,
    /// Per relation id, why its inserts and updates cannot be mapped (see
    /// [`Table::schema_problem`]), checked once per announced schema.
    schema_problems: HashMap<u32, String>,
    lookups: Lookups<S>,
    latest: LatestWork,
}

impl<S: LookupStore> Mapper<S> {
    /// A mapper whose caches hold about `cache_capacity` entries each, backed by `store`.
    pub fn new(store: S, cache_capacity: usize) -> Self {
        Mapper {
            relations: RelationCache::new(),
            schema_problems: HashMap::new(),
            lookups: Lookups::new(store, cache_capacity),
            latest: LatestWork::default(),
        }
    }

    /// Remembers a table schema announced by the stream.
    pub fn relation(&mut self, relation: Relation) {
        match Table::of(&relation).and_then(|table| table.schema_problem(&relation)) {
            Some(problem) => self.schema_problems.insert(relation.id, problem),
            None => self.schema_problems.remove(&relation.id),
        };
        self.relations.update(relation);
    }

    /// Forgets all state but the store's (the stream restarts from the checkpoint).
    pub fn reset(&mut self) {
        self.relations = RelationCache::new();
        self.schema_problems.clear();
        self.lookups.clear();
        self.latest = LatestWork::default();
    }

    /// Forgets the cached lookups (the store changed behind the mapper's back), keeping the
    /// table schemas the stream announced.
    pub fn forget_lookups(&mut self) {
        self.lookups.clear();
    }

    /// Makes the next batch recompute every `latest` value of `patient_id` from its reports.
    pub fn recompute_latest(&mut self, patient_id: &str) {
        self.mark(patient_id, Dirty::All);
    }

    /// Called after a batch was written: caches may shrink now.
    pub fn end_batch(&mut self) {
        self.lookups.trim();
    }

    /// What the batch changed about patients' newest values, leaving nothing.
    pub fn take_latest(&mut self) -> LatestWork {
        std::mem::take(&mut self.latest)
    }

    /// Maps one row change (Insert, Update, Delete, Truncate) into `batch`. Other messages map
    /// to nothing. A store error (reading a lookup) is returned; anything wrong with the change
    /// itself comes back as a dead letter.
    pub async fn map(
        &mut self,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<Mapped, mongodb::error::Error> {
        let (relation_id, tuple, operation) = match message {
            Message::Insert(insert) => (insert.relation_id, &insert.new, Operation::Insert),
            Message::Update(update) => (update.relation_id, &update.new, Operation::Update),
            Message::Delete(delete) => (delete.relation_id, delete.old.tuple(), Operation::Delete),
            Message::Truncate(truncate) => {
                for id in &truncate.relation_ids {
                    if let Some(table) = self.relations.get(*id).and_then(Table::of) {
                        self.truncate(table, batch);
                    }
                }
                return Ok(Mapped::default());
            }
            _ => return Ok(Mapped::default()),
        };
        let Some(relation) = self.relations.get(relation_id) else {
            return Ok(Mapped {
                change: None,
                dead_letter: Some(DeadLetter {
                    table: format!("relation {relation_id}"),
                    operation,
                    values: Document::new(),
                    error: "a change arrived before its table's Relation message".to_string(),
                }),
            });
        };
        let Some(table) = Table::of(relation) else {
            return Ok(Mapped::default());
        };
        if operation != Operation::Delete
            && let Some(problem) = self.schema_problems.get(&relation_id)
        {
            return Ok(Mapped {
                change: Some((table, operation)),
                dead_letter: Some(DeadLetter {
                    table: table.name().to_string(),
                    operation,
                    values: raw_values(relation, tuple),
                    error: problem.clone(),
                }),
            });
        }
        let parsed = match row(relation, tuple) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Ok(Mapped {
                    change: Some((table, operation)),
                    dead_letter: Some(DeadLetter {
                        table: table.name().to_string(),
                        operation,
                        values: raw_values(relation, tuple),
                        error: error.to_string(),
                    }),
                });
            }
        };
        let outcome = match operation {
            Operation::Delete => self.delete(table, &parsed, transaction, batch).await,
            _ => {
                self.upsert(table, operation, &parsed, transaction, batch)
                    .await
            }
        };
        let error = match outcome {
            Ok(()) => None,
            Err(MapError::Store(error)) => return Err(error),
            Err(MapError::Field(error)) => Some(error.to_string()),
            Err(MapError::Orphan(error)) => Some(error),
        };
        // The raw values are collected only for a change that failed: for every change, they
        // cost about as much as mapping it.
        let dead_letter = error.map(|error| DeadLetter {
            table: table.name().to_string(),
            operation,
            values: self
                .relations
                .get(relation_id)
                .map(|relation| raw_values(relation, tuple))
                .unwrap_or_default(),
            error,
        });
        Ok(Mapped {
            change: Some((table, operation)),
            dead_letter,
        })
    }

    fn mark(&mut self, patient_id: &str, codes: Dirty) {
        let entry = self
            .latest
            .dirty
            .entry(patient_id.to_string())
            .or_insert(Dirty::Codes(BTreeSet::new()));
        match (entry, codes) {
            (Dirty::All, _) => {}
            (entry, Dirty::All) => *entry = Dirty::All,
            (Dirty::Codes(existing), Dirty::Codes(more)) => existing.extend(more),
        }
    }

    async fn upsert(
        &mut self,
        table: Table,
        operation: Operation,
        row: &Row,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = || documents::uuid(row, "id").map(|id| id.to_string());
        let cdc = transaction.cdc();
        match table {
            Table::Clinics => {
                let id = id()?;
                let name = documents::text(row, "name")?;
                let previous = match operation {
                    Operation::Update => self.lookups.clinic_name(&id).await?,
                    _ => None,
                };
                batch.push(Write::upsert(
                    LOOKUP_CLINICS,
                    id.as_str(),
                    doc! { "name": name },
                ));
                self.lookups.set_clinic(&id, name);
                if operation == Operation::Update && previous.as_deref() != Some(name) {
                    batch.push(Write::update_many(
                        REPORTS,
                        doc! { "checkup.clinic_id": &id },
                        doc! { "$set": { "checkup.clinic_name": name, "_cdc": cdc } },
                    ));
                }
            }
            Table::Devices => {
                let id = id()?;
                let label = documents::text(row, "label")?;
                let previous = match operation {
                    Operation::Update => self.lookups.device_label(&id).await?,
                    _ => None,
                };
                let clinic_id = documents::uuid(row, "clinic_id")?.to_string();
                batch.push(Write::upsert(
                    LOOKUP_DEVICES,
                    id.as_str(),
                    doc! { "clinic_id": clinic_id, "label": label },
                ));
                self.lookups.set_device(&id, label);
                if operation == Operation::Update && previous.as_deref() != Some(label) {
                    batch.push(Write::update_many(
                        REPORTS,
                        doc! { "checkup.device_id": &id },
                        doc! { "$set": { "checkup.device_label": label, "_cdc": cdc } },
                    ));
                }
            }
            Table::Patients => {
                let id = id()?;
                let previous = match operation {
                    Operation::Update => self.lookups.patient(&id).await?,
                    _ => None,
                };
                let mut fields = documents::patient_fields(row);
                fields.insert("_cdc", cdc.clone());
                batch.push(Write::upsert(PATIENTS, id.as_str(), fields));
                let snapshot = documents::patient_snapshot(row)?;
                self.lookups.set_patient(&id, snapshot.clone());
                if operation == Operation::Update && previous.as_ref() != Some(&snapshot) {
                    batch.push(Write::update_many(
                        REPORTS,
                        doc! { "patient_id": &id },
                        doc! { "$set": { "patient": snapshot, "_cdc": cdc } },
                    ));
                }
            }
            Table::PatientClinics => {
                links::upsert(&mut self.lookups, operation, row, cdc, batch).await?;
            }
            Table::Checkups => {
                let id = id()?;
                let fields = documents::checkup_fields(row)?;
                batch.push(Write::upsert(LOOKUP_CHECKUPS, id.as_str(), fields.clone()));
                self.lookups.set_checkup(&id, fields.clone());
                if operation == Operation::Update {
                    let embedded = self.embedded_checkup(&id, &fields).await?;
                    batch.push(Write::update_many(
                        REPORTS,
                        doc! { "checkup_id": &id },
                        doc! { "$set": { "checkup": embedded, "_cdc": cdc } },
                    ));
                }
            }
            Table::Reports => {
                let id = id()?;
                let mut fields = documents::report_fields(row)?;
                let patient_id = fields.get_str("patient_id").unwrap_or_default().to_string();
                let checkup_id = fields.get_str("checkup_id").unwrap_or_default().to_string();
                let patient =
                    self.lookups.patient(&patient_id).await?.ok_or_else(|| {
                        MapError::Orphan(format!("patient {patient_id} is unknown"))
                    })?;
                let checkup =
                    self.lookups.checkup(&checkup_id).await?.ok_or_else(|| {
                        MapError::Orphan(format!("checkup {checkup_id} is unknown"))
                    })?;
                fields.insert("patient", patient);
                fields.insert(
                    "checkup",
                    self.embedded_checkup(&checkup_id, &checkup).await?,
                );
                fields.insert("_cdc", cdc);
                let info = ReportInfo {
                    patient_id: patient_id.clone(),
                    taken_at: documents::timestamp(row, "taken_at")?,
                    entered_in_error: documents::text(row, "status")? == "entered-in-error",
                };
                let previous = match operation {
                    Operation::Update => self.lookups.report(&id).await?,
                    _ => None,
                };
                batch.push(Write::upsert(REPORTS, id.as_str(), fields));
                self.lookups.set_report(&id, info.clone());
                if operation == Operation::Update && previous.as_ref() != Some(&info) {
                    if let Some(previous) = previous.filter(|p| p.patient_id != patient_id) {
                        self.mark(&previous.patient_id, Dirty::All);
                    }
                    self.mark(&patient_id, Dirty::All);
                }
            }
            Table::Measurements => {
                let report_id = documents::uuid(row, "report_id")?.to_string();
                let (code, measurement) = documents::measurement(row)?;
                let report =
                    self.lookups.report(&report_id).await?.ok_or_else(|| {
                        MapError::Orphan(format!("report {report_id} is unknown"))
                    })?;
                batch.push(Write::update(
                    REPORTS,
                    report_id.as_str(),
                    doc! { "$set": { format!("measurements.{code}"): measurement.clone(), "_cdc": cdc } },
                ));
                match operation {
                    Operation::Insert if !report.entered_in_error => {
                        let candidate = Candidate {
                            taken_at: report.taken_at,
                            entry: documents::latest_entry(
                                &measurement,
                                &report_id,
                                report.taken_at,
                            ),
                            report_id,
                        };
                        let codes = self.latest.candidates.entry(report.patient_id).or_default();
                        if codes
                            .get(&code)
                            .is_none_or(|current| candidate.newer_than(&current.entry))
                        {
                            codes.insert(code, candidate);
                        }
                    }
                    Operation::Insert => {}
                    _ => self.mark(&report.patient_id, Dirty::Codes(BTreeSet::from([code]))),
                }
            }
        }
        Ok(())
    }

    async fn embedded_checkup(
        &mut self,
        id: &str,
        lookup: &Document,
    ) -> Result<Document, MapError> {
        let clinic_id = lookup.get_str("clinic_id").unwrap_or_default().to_string();
        let device_id = lookup.get_str("device_id").unwrap_or_default().to_string();
        let patient_id = lookup.get_str("patient_id").unwrap_or_default();
        let record_number = self
            .lookups
            .record_number(&link_key(patient_id, &clinic_id))
            .await?;
        let clinic = self
            .lookups
            .clinic_name(&clinic_id)
            .await?
            .ok_or_else(|| MapError::Orphan(format!("clinic {clinic_id} is unknown")))?;
        let device = self
            .lookups
            .device_label(&device_id)
            .await?
            .ok_or_else(|| MapError::Orphan(format!("device {device_id} is unknown")))?;
        Ok(documents::checkup_embedded(
            id,
            lookup,
            &clinic,
            &device,
            record_number.as_deref(),
        ))
    }

    async fn delete(
        &mut self,
        table: Table,
        key: &Row,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        let id = || documents::uuid(key, "id").map(|id| id.to_string());
        match table {
            Table::Clinics => {
                let id = id()?;
                batch.push(Write::delete(LOOKUP_CLINICS, id.as_str()));
                self.lookups.forget(&id);
            }
            Table::Devices => {
                let id = id()?;
                batch.push(Write::delete(LOOKUP_DEVICES, id.as_str()));
                self.lookups.forget(&id);
            }
            Table::Patients => {
                let id = id()?;
                batch.push(Write::delete(PATIENTS, id.as_str()));
                batch.push(Write::delete_many(REPORTS, doc! { "patient_id": &id }));
                self.lookups.forget(&id);
                self.latest.dirty.remove(&id);
                self.latest.candidates.remove(&id);
            }
            Table::PatientClinics => {
                links::delete(&mut self.lookups, key, transaction.cdc(), batch)?;
            }
            Table::Checkups => {
                let id = id()?;
                let patient_id = documents::uuid(key, "patient_id")?.to_string();
                batch.push(Write::delete(LOOKUP_CHECKUPS, id.as_str()));
                batch.push(Write::delete_many(REPORTS, doc! { "checkup_id": &id }));
                self.lookups.forget(&id);
                self.mark(&patient_id, Dirty::All);
            }
            Table::Reports => {
                let id = id()?;
                let patient_id = documents::uuid(key, "patient_id")?.to_string();
                batch.push(Write::delete(REPORTS, id.as_str()));
                self.lookups.forget(&id);
                self.mark(&patient_id, Dirty::All);
            }
            Table::Measurements => {
                let report_id = documents::uuid(key, "report_id")?.to_string();
                let code = documents::text(key, "code")?.to_string();
                batch.push(Write::update(
                    REPORTS,
                    report_id.as_str(),
                    doc! {
                        "$unset": { format!("measurements.{code}"): "" },
                        "$set": { "_cdc": transaction.cdc() },
                    },
                ));
                if let Some(report) = self.lookups.report(&report_id).await? {
                    self.mark(&report.patient_id, Dirty::Codes(BTreeSet::from([code])));
                }
            }
        }
        Ok(())
    }

    fn truncate(&mut self, table: Table, batch: &mut Batch) {
        let everything = Document::new;
        let forget_latest =
            || Write::update_many(PATIENTS, doc! {}, doc! { "$unset": { "latest": "" } });
        match table {
            Table::Clinics => batch.push(Write::delete_many(LOOKUP_CLINICS, everything())),
            Table::Devices => batch.push(Write::delete_many(LOOKUP_DEVICES, everything())),
            Table::Patients => {
                batch.push(Write::delete_many(PATIENTS, everything()));
                batch.push(Write::delete_many(REPORTS, everything()));
            }
            Table::PatientClinics => links::truncate(batch),
            Table::Checkups => {
                batch.push(Write::delete_many(LOOKUP_CHECKUPS, everything()));
                batch.push(Write::delete_many(REPORTS, everything()));
                batch.push(forget_latest());
            }
            Table::Reports => {
                batch.push(Write::delete_many(REPORTS, everything()));
                batch.push(forget_latest());
            }
            Table::Measurements => {
                batch.push(Write::update_many(
                    REPORTS,
                    everything(),
                    doc! { "$set": { "measurements": {} } },
                ));
                batch.push(forget_latest());
            }
        }
        self.lookups.clear();
    }
}

/// The values of a tuple as text by column name, for a dead letter.
fn raw_values(relation: &Relation, tuple: &TupleData) -> Document {
    relation
        .columns
        .iter()
        .zip(&tuple.0)
        .map(|(column, value)| {
            let value = match value {
                ColumnData::Null => Bson::Null,
                ColumnData::UnchangedToast => Bson::String("(unchanged toast)".to_string()),
                ColumnData::Text(bytes) => {
                    Bson::String(String::from_utf8_lossy(bytes).into_owned())
                }
                ColumnData::Binary(bytes) => {
                    Bson::String(format!("(binary, {} bytes)", bytes.len()))
                }
            };
            (column.name.clone(), value)
        })
        .collect()
}
