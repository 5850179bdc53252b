//! Unit tests of the mapper: row changes of every table in, document writes and `latest` work
//! out, over an in-memory lookup store — no server. One file per source table, as in the
//! mapping; `latest.rs` covers the settlement that runs after a batch is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checkups;
mod clinics_and_devices;
mod latest;
mod measurements;
mod patient_clinics;
mod patients;
mod reports;

use bytes::Bytes;
use mongodb::bson::{DateTime, Document};

use super::lookups::MemoryStore;
use super::{Mapped, Mapper, Table, Transaction};
use crate::decode::{
    Column, ColumnData, Delete, Insert, Message, OldTuple, Relation, Truncate, TupleData, Update,
};
use crate::sink::{Batch, Write};

pub(super) const CLINIC: &str = "11111111-1111-4111-8111-111111111111";
pub(super) const DEVICE: &str = "22222222-2222-4222-8222-222222222222";
pub(super) const PATIENT: &str = "33333333-3333-4333-8333-333333333333";
pub(super) const OTHER_PATIENT: &str = "33333333-3333-4333-8333-444444444444";
pub(super) const CHECKUP: &str = "44444444-4444-4444-8444-444444444444";
pub(super) const REPORT: &str = "55555555-5555-4555-8555-555555555555";
pub(super) const LATER_REPORT: &str = "55555555-5555-4555-8555-666666666666";

/// 2026-11-27 09:05:00 UTC, when [`REPORT`] was taken.
pub(super) const TAKEN_AT: &str = "2026-11-27 09:05:00+00";
/// An hour later, when [`LATER_REPORT`] was taken.
pub(super) const LATER: &str = "2026-11-27 10:05:00+00";

/// One column's value in a test row; a column left out of a row is NULL.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cell {
    /// The value in PostgreSQL's text output.
    Text(&'static str),
    /// An unchanged TOASTed value, which pgoutput does not send.
    Toast,
}

use Cell::Text;

/// A test row: column name and value.
pub(super) type Values = Vec<(&'static str, Cell)>;

/// The relation the stream would announce for `table`: exactly the columns the mapping reads.
pub(super) fn relation(table: Table) -> Relation {
    let keys: &[&str] = match table {
        Table::Clinics | Table::Devices | Table::Patients => &["id"],
        Table::Checkups | Table::Reports => &["id", "patient_id"],
        Table::PatientClinics => &["patient_id", "clinic_id"],
        Table::Measurements => &["report_id", "code"],
    };
    Relation {
        id: relation_id(table),
        namespace: "public".to_string(),
        name: table.name().to_string(),
        replica_identity: b'd',
        columns: table
            .needed_columns()
            .iter()
            .map(|(name, types)| Column {
                is_key: keys.contains(name),
                name: (*name).to_string(),
                type_oid: types[0],
                type_modifier: -1,
            })
            .collect(),
    }
}

pub(super) fn relation_id(table: Table) -> u32 {
    16_400
        + Table::ALL
            .iter()
            .position(|known| *known == table)
            .unwrap_or(0) as u32
}

/// `values` in the column order of `relation`.
pub(super) fn tuple(relation: &Relation, values: &[(&'static str, Cell)]) -> TupleData {
    TupleData(
        relation
            .columns
            .iter()
            .map(
                |column| match values.iter().find(|(name, _)| *name == column.name) {
                    Some((_, Text(text))) => ColumnData::Text(Bytes::from(text.to_string())),
                    Some((_, Cell::Toast)) => ColumnData::UnchangedToast,
                    None => ColumnData::Null,
                },
            )
            .collect(),
    )
}

pub(super) fn clinic(name: &'static str) -> Values {
    vec![("id", Text(CLINIC)), ("name", Text(name))]
}

pub(super) fn device(label: &'static str) -> Values {
    vec![
        ("id", Text(DEVICE)),
        ("clinic_id", Text(CLINIC)),
        ("label", Text(label)),
    ]
}

pub(super) fn patient(id: &'static str, full_name: &'static str) -> Values {
    vec![
        ("id", Text(id)),
        ("external_ref", Text("MRN-001")),
        ("full_name", Text(full_name)),
        ("birth_date", Text("1985-12-10")),
        ("sex", Text("female")),
        ("email", Text("ada@example.org")),
    ]
}

pub(super) fn checkup(completed_at: &'static str) -> Values {
    vec![
        ("id", Text(CHECKUP)),
        ("patient_id", Text(PATIENT)),
        ("clinic_id", Text(CLINIC)),
        ("device_id", Text(DEVICE)),
        ("started_at", Text("2026-11-27 09:00:00+00")),
        ("completed_at", Text(completed_at)),
    ]
}

pub(super) fn report(id: &'static str, taken_at: &'static str, status: &'static str) -> Values {
    vec![
        ("id", Text(id)),
        ("checkup_id", Text(CHECKUP)),
        ("patient_id", Text(PATIENT)),
        ("instrument_type", Text("blood_pressure")),
        ("instrument_serial", Text("BP-123")),
        ("taken_at", Text(taken_at)),
        ("status", Text(status)),
        ("notes", Text("left arm, seated")),
        ("raw", Text(r#"{"cuff": "M"}"#)),
    ]
}

pub(super) fn systolic(report: &'static str, value: &'static str) -> Values {
    vec![
        ("report_id", Text(report)),
        ("code", Text("8480-6")),
        ("display_name", Text("Systolic blood pressure")),
        ("value", Text(value)),
        ("unit", Text("mm[Hg]")),
        ("reference_low", Text("90")),
        ("reference_high", Text("120")),
        ("flag", Text("N")),
    ]
}

/// Replaces the value of `column` in `values`.
pub(super) fn with(mut values: Values, column: &'static str, cell: Cell) -> Values {
    values.retain(|(name, _)| *name != column);
    values.push((column, cell));
    values
}

/// A mapper over an in-memory store, fed changes one transaction each, every table announced.
pub(super) struct Stream {
    pub(super) mapper: Mapper<MemoryStore>,
    pub(super) batch: Batch,
    lsn: u64,
}

impl Stream {
    /// A stream over an empty store.
    pub(super) fn new() -> Stream {
        Stream::over(MemoryStore::default())
    }

    /// A stream over `store` (what a restarted daemon finds in the store).
    pub(super) fn over(store: MemoryStore) -> Stream {
        let mut mapper = Mapper::new(store, 1 << 20);
        for table in Table::ALL {
            mapper.relation(relation(table));
        }
        Stream {
            mapper,
            batch: Batch::default(),
            lsn: 0x100,
        }
    }

    /// A clinic, its device, a patient, a checkup and [`REPORT`], already written.
    pub(super) async fn seeded() -> Stream {
        let mut stream = Stream::new();
        stream.insert(Table::Clinics, clinic("North Clinic")).await;
        stream.insert(Table::Devices, device("tablet-1")).await;
        stream
            .insert(Table::Patients, patient(PATIENT, "Ada Lovelace"))
            .await;
        stream
            .insert(Table::Checkups, checkup("2026-11-27 09:20:00+00"))
            .await;
        stream
            .insert(Table::Reports, report(REPORT, TAKEN_AT, "final"))
            .await;
        stream.writes();
        stream.mapper.take_latest();
        stream
    }

    pub(super) async fn insert(&mut self, table: Table, values: Values) -> Mapped {
        let new = tuple(&relation(table), &values);
        self.send(Message::Insert(Insert {
            relation_id: relation_id(table),
            new,
        }))
        .await
    }

    pub(super) async fn update(&mut self, table: Table, values: Values) -> Mapped {
        let new = tuple(&relation(table), &values);
        self.send(Message::Update(Update {
            relation_id: relation_id(table),
            old: None,
            new,
        }))
        .await
    }

    /// An update that changed the key: it carries the old one, `key` (the replica identity's
    /// columns).
    pub(super) async fn update_key(&mut self, table: Table, key: Values, values: Values) -> Mapped {
        let relation = relation(table);
        self.send(Message::Update(Update {
            relation_id: relation_id(table),
            old: Some(OldTuple::Key(tuple(&relation, &key))),
            new: tuple(&relation, &values),
        }))
        .await
    }

    /// A delete carrying only `key` (the replica identity's columns).
    pub(super) async fn delete(&mut self, table: Table, key: Values) -> Mapped {
        let old = OldTuple::Key(tuple(&relation(table), &key));
        self.send(Message::Delete(Delete {
            relation_id: relation_id(table),
            old,
        }))
        .await
    }

    pub(super) async fn truncate(&mut self, table: Table) -> Mapped {
        self.send(Message::Truncate(Truncate {
            cascade: false,
            restart_identity: false,
            relation_ids: vec![relation_id(table)],
        }))
        .await
    }

    /// Maps `message` as the only change of a new transaction.
    pub(super) async fn send(&mut self, message: Message) -> Mapped {
        self.lsn += 0x10;
        let transaction = Transaction {
            commit_lsn: self.lsn,
            commit_time: DateTime::from_millis(1_800_000_000_000),
        };
        self.mapper
            .map_change(&message, &transaction, &mut self.batch)
            .await
            .expect("the in-memory store does not fail")
    }

    /// The batch's writes, in order per collection, leaving it empty.
    pub(super) fn writes(&mut self) -> Vec<Write> {
        self.batch
            .take()
            .into_iter()
            .flat_map(|(_, writes)| writes)
            .collect()
    }
}

/// The update of the write to `collection` whose filter is `filter`; panics listing the
/// writes when there is none.
pub(super) fn update_of<'w>(
    writes: &'w [Write],
    collection: &str,
    filter: &Document,
) -> &'w Document {
    writes
        .iter()
        .find_map(|write| match write {
            Write::Update {
                collection: written,
                filter: matched,
                update,
                ..
            } if *written == collection && matched == filter => Some(update),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no update of {collection} {filter} in {writes:#?}"))
}

/// The `$set` of the write to document `id` of `collection`.
pub(super) fn set_of<'w>(writes: &'w [Write], collection: &str, id: &str) -> &'w Document {
    let filter = writes
        .iter()
        .find_map(|write| match write {
            Write::Update {
                collection: written,
                filter,
                ..
            } if *written == collection && filter.get_str("_id").ok() == Some(id) => Some(filter),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no write to {collection} {id} in {writes:#?}"));
    update_of(writes, collection, filter)
        .get_document("$set")
        .unwrap_or_else(|_| panic!("the write to {collection} {id} sets nothing"))
}

/// Whether a write to `collection` matches `filter`.
pub(super) fn writes_to(writes: &[Write], collection: &str, filter: &Document) -> bool {
    writes.iter().any(|write| match write {
        Write::Update {
            collection: written,
            filter: matched,
            ..
        }
        | Write::Delete {
            collection: written,
            filter: matched,
            ..
        } => *written == collection && matched == filter,
        Write::Move { .. } => false,
    })
}

/// Whether a delete of `collection` matches `filter`.
pub(super) fn deletes(writes: &[Write], collection: &str, filter: &Document) -> bool {
    writes.iter().any(|write| {
        matches!(write, Write::Delete { collection: written, filter: matched, .. }
            if *written == collection && matched == filter)
    })
}
