//! The `mapping` step: row changes → document writes.
//!
//! Each published table maps to documents of the read model (see `read-model`):
//!
//! | table | writes |
//! | --- | --- |
//! | clinics, devices | their lookup document; a rename fans out to every report of the clinic or device |
//! | patients | the patient document; a change of the snapshot fans out to every report of the patient; a delete removes the patient's documents |
//! | patient_clinics | the link's lookup document; its record number fans out to the patient's reports at that clinic |
//! | checkups | the lookup document; a change fans out to the checkup embedded in its reports |
//! | reports | the report document, with the patient snapshot and the checkup (clinic name, the patient's record number there, device label) joined from the daemon's own state |
//! | measurements | `measurements.<code>` of the report document, and `latest.<code>` of the patient document |
//!
//! Joins never query the source: parents come from [`lookups`]. Deletes are routed from the
//! replica identity alone (every child's key carries its document's key). Patients' newest
//! values per code are settled after each batch (see [`latest`]): an inserted measurement is a
//! candidate that wins if it is newer; a change that can lower a newest value (a delete, an
//! amendment, a status or time change) marks the patient for recomputation from its reports.
//! A change that cannot be mapped becomes a [`DeadLetter`] and the stream goes on.
//!
//! An UPDATE does not carry the columns whose values are unchanged and TOASTed (stored out of
//! line): their fields keep the values the documents have, field by field inside a
//! sub-document (see [`documents::SentFields`]), and nothing of them fans out.

mod cache;
mod checkups;
mod clinics;
mod devices;
pub mod documents;
pub mod latest;
pub mod lookups;
mod measurements;
mod patient_clinics;
mod patients;
mod reports;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::PATIENTS;

pub use self::latest::{Candidate, Dirty, LatestWork};

use self::documents::FieldError;
use self::lookups::{LookupStore, Lookups};
use crate::decode::relations::{RelationCache, Row, row};
use crate::decode::values::{
    DATE as DATE_OID, FLOAT4, FLOAT8, INT2, INT4, INT8, JSON as JSON_OID, JSONB, NUMERIC, TEXT,
    TIMESTAMP, TIMESTAMPTZ, UUID, VARCHAR,
};
use crate::decode::{ColumnData, Message, Relation, TupleData, Update};
use crate::sink::{Batch, Write};

/// Column names with the type oids the mapping accepts for each.
pub type ColumnTypes = &'static [(&'static str, &'static [u32])];

// The kinds of column the mapping accepts: each table's `COLUMNS` names one per column.
const ID: &[u32] = &[UUID];
const TEXTUAL: &[u32] = &[TEXT, VARCHAR];
const INSTANT: &[u32] = &[TIMESTAMPTZ, TIMESTAMP];
const NUMBER: &[u32] = &[NUMERIC, INT2, INT4, INT8, FLOAT4, FLOAT8];
const DATE: &[u32] = &[DATE_OID];
const JSON: &[u32] = &[JSONB, JSON_OID];

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
        Table::named(&relation.name)
    }

    /// The table called `name` (in `public`), if the mapping knows it.
    pub fn named(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }

    /// Every table the mapping knows, parents before children.
    pub const ALL: [Table; 7] = [
        Table::Clinics,
        Table::Devices,
        Table::Patients,
        Table::PatientClinics,
        Table::Checkups,
        Table::Reports,
        Table::Measurements,
    ];

    /// The columns the mapping reads, with the types it accepts for each (each table's file
    /// lists its own). A published schema without one of them (dropped, renamed) or with
    /// another type cannot be mapped: its inserts and updates become dead letters rather than
    /// documents with silent gaps.
    pub fn needed_columns(self) -> ColumnTypes {
        match self {
            Table::Clinics => clinics::COLUMNS,
            Table::Devices => devices::COLUMNS,
            Table::Patients => patients::COLUMNS,
            Table::PatientClinics => patient_clinics::COLUMNS,
            Table::Checkups => checkups::COLUMNS,
            Table::Reports => reports::COLUMNS,
            Table::Measurements => measurements::COLUMNS,
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

    /// The table's name in `public`, also its label in metrics and dead letters.
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
    /// A row was inserted (or read from the source by a snapshot or a resync).
    Insert,
    /// A row was updated; unchanged TOASTed values are not sent.
    Update,
    /// A row was deleted; only its replica identity is sent.
    Delete,
    /// Tables were emptied with `TRUNCATE`.
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
    /// Its commit time on the source, stored in `_cdc.commit_time`.
    pub commit_time: DateTime,
}

impl Transaction {
    /// The `_cdc` field of documents this transaction writes.
    fn cdc(&self) -> Document {
        doc! { "lsn": read_model::lsn::format(self.commit_lsn), "commit_time": self.commit_time }
    }
}

/// Where a dead letter came from; stored as its `table` field.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A row change of a table the mapping knows.
    Table(Table),
    /// A row change of a relation id no Relation message announced.
    UnknownRelation(u32),
    /// Bytes from the stream that do not decode as a pgoutput message.
    Undecodable,
}

impl Origin {
    /// The stored `table` field and the `table` label of `cdc_dead_letters_total`.
    pub fn label(&self) -> String {
        match self {
            Origin::Table(table) => table.name().to_string(),
            Origin::UnknownRelation(id) => format!("relation {id}"),
            Origin::Undecodable => "(undecodable)".to_string(),
        }
    }
}

/// A change the mapping could not turn into writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// What the change was a change of.
    pub origin: Origin,
    /// The row change's kind; `None` for undecodable bytes.
    pub operation: Option<Operation>,
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
    /// A mapper whose caches, backed by `store`, keep about `cache_bytes` resident together.
    pub fn new(store: S, cache_bytes: usize) -> Self {
        Mapper {
            relations: RelationCache::new(),
            schema_problems: HashMap::new(),
            lookups: Lookups::new(store, cache_bytes),
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

    /// Called after a batch was written: caches may drop what they no longer use now.
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
    pub async fn map_change(
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
                    if let Some(table) = self
                        .relations
                        .get(*id)
                        .and_then(|relation| Table::of(relation))
                    {
                        self.truncate(table, batch);
                    }
                }
                return Ok(Mapped::default());
            }
            _ => return Ok(Mapped::default()),
        };
        // A shared handle, so that the rows below can borrow its column names.
        let Some(relation) = self.relations.get(relation_id).cloned() else {
            return Ok(Mapped {
                change: None,
                dead_letter: Some(DeadLetter {
                    origin: Origin::UnknownRelation(relation_id),
                    operation: Some(operation),
                    values: Document::new(),
                    error: "a change arrived before its table's Relation message".to_string(),
                }),
            });
        };
        let Some(table) = Table::of(&relation) else {
            return Ok(Mapped::default());
        };
        if operation != Operation::Delete
            && let Some(problem) = self.schema_problems.get(&relation_id)
        {
            return Ok(Mapped {
                change: Some((table, operation)),
                dead_letter: Some(DeadLetter {
                    origin: Origin::Table(table),
                    operation: Some(operation),
                    values: raw_values(&relation, tuple),
                    error: problem.clone(),
                }),
            });
        }
        let filled;
        let tuple = match message {
            Message::Update(Update { old: Some(old), .. })
                if tuple.0.contains(&ColumnData::UnchangedToast) =>
            {
                filled = fill_unchanged(tuple, old.tuple());
                &filled
            }
            _ => tuple,
        };
        // With an update's old key, sent when the update changed the key.
        let old = match message {
            Message::Update(Update { old: Some(old), .. }) => Some(old.tuple()),
            _ => None,
        };
        let parsed = row(&relation, tuple).and_then(|parsed| {
            let old = old.map(|old| row(&relation, old)).transpose()?;
            Ok((parsed, old))
        });
        let (parsed, old) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                return Ok(Mapped {
                    change: Some((table, operation)),
                    dead_letter: Some(DeadLetter {
                        origin: Origin::Table(table),
                        operation: Some(operation),
                        values: raw_values(&relation, tuple),
                        error: error.to_string(),
                    }),
                });
            }
        };
        let outcome = match operation {
            Operation::Delete => self.delete(table, &parsed, transaction, batch).await,
            _ => {
                self.upsert(table, operation, &parsed, old.as_ref(), transaction, batch)
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
            origin: Origin::Table(table),
            operation: Some(operation),
            values: raw_values(&relation, tuple),
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

    /// Maps an insert or update of `table`; `old` is the row's old key when an update changed
    /// it (only a report's matters: its patient is the shard key of its document).
    async fn upsert(
        &mut self,
        table: Table,
        operation: Operation,
        row: &Row<'_>,
        old: Option<&Row<'_>>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        match table {
            Table::Clinics => self.upsert_clinic(operation, row, transaction, batch).await,
            Table::Devices => self.upsert_device(operation, row, transaction, batch).await,
            Table::Patients => {
                self.upsert_patient(operation, row, transaction, batch)
                    .await
            }
            Table::PatientClinics => {
                self.upsert_patient_clinic(operation, row, transaction, batch)
                    .await
            }
            Table::Checkups => {
                self.upsert_checkup(operation, row, transaction, batch)
                    .await
            }
            Table::Reports => {
                self.upsert_report(operation, row, old, transaction, batch)
                    .await
            }
            Table::Measurements => {
                self.upsert_measurement(operation, row, transaction, batch)
                    .await
            }
        }
    }

    /// Maps a delete of `table`, routed by its replica identity `key` alone.
    async fn delete(
        &mut self,
        table: Table,
        key: &Row<'_>,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        match table {
            Table::Clinics => self.delete_clinic(key, batch),
            Table::Devices => self.delete_device(key, batch),
            Table::Patients => self.delete_patient(key, batch),
            Table::PatientClinics => self.delete_patient_clinic(key, transaction, batch),
            Table::Checkups => self.delete_checkup(key, batch),
            Table::Reports => self.delete_report(key, batch),
            Table::Measurements => self.delete_measurement(key, transaction, batch).await,
        }
    }

    /// Maps a TRUNCATE of `table`; every cached lookup may be stale after it.
    fn truncate(&mut self, table: Table, batch: &mut Batch) {
        match table {
            Table::Clinics => clinics::truncate_clinics(batch),
            Table::Devices => devices::truncate_devices(batch),
            Table::Patients => patients::truncate_patients(batch),
            Table::PatientClinics => patient_clinics::truncate_patient_clinics(batch),
            Table::Checkups => checkups::truncate_checkups(batch),
            Table::Reports => reports::truncate_reports(batch),
            Table::Measurements => measurements::truncate_measurements(batch),
        }
        self.lookups.clear();
    }
}

/// `found`, or the orphan error of a change whose `parent` (`"patient"`, …) `id` is unknown.
fn known<T>(found: Option<T>, parent: &str, id: &str) -> Result<T, MapError> {
    found.ok_or_else(|| MapError::Orphan(format!("{parent} {id} is unknown")))
}

/// The write that empties every patient's `latest` (after a truncate of what it derives from).
fn forget_every_latest() -> Write {
    Write::update_many(PATIENTS, doc! {}, doc! { "$unset": { "latest": "" } })
}

/// `new` with its unchanged TOASTed values taken from `old` where it has them. PostgreSQL logs
/// the old key when a key column is stored out of line (the new row cannot carry it), so an
/// update whose key was TOASTed still names its row.
fn fill_unchanged(new: &TupleData, old: &TupleData) -> TupleData {
    TupleData(
        new.0
            .iter()
            .enumerate()
            .map(|(index, value)| match (value, old.0.get(index)) {
                (ColumnData::UnchangedToast, Some(old @ ColumnData::Text(_))) => old.clone(),
                _ => value.clone(),
            })
            .collect(),
    )
}

/// The values of a tuple as text by column name, for a dead letter (the only place that shows an
/// unchanged TOASTed value, as a placeholder: documents never hold one).
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
