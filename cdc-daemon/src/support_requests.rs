//! Support requests to the running daemon, carried through the WAL: `cdc-daemon resync
//! --patient <uuid>` and `cdc-daemon dead-letters replay`.
//!
//! The command emits a transactional logical decoding message (`pg_logical_emit_message`)
//! and waits until the daemon's checkpoint passes it. The daemon reads the message in stream
//! order, between the changes committed before it and those after, and rebuilds from the source
//! what the request names: a patient's documents (the patient, their checkups with clinic and
//! device, their reports with measurements, `latest`), deleting documents the source no longer
//! has. It reads the source as of the moment it handles the message, which is at or after the
//! message's position; changes after that position then arrive from the stream and are applied
//! on top, idempotently, so the documents converge with the stream still running. Only the
//! daemon writes the documents: no second writer races it.
//!
//! A replay resyncs the patients that unresolved dead letters touch (and re-reads clinics and
//! devices), then marks those letters replayed. A change that still cannot be mapped becomes a
//! new dead letter with the current error.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::{DEAD_LETTERS, LOOKUP_CHECKUPS, LOOKUP_PATIENT_CLINICS, PATIENTS, REPORTS};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::apply::{self, SettledStore, Writer};
use crate::decode::{Insert, Message, Relation, TupleData, Update};
use crate::mapping::{Mapper, Table, Transaction};
use crate::metrics::Stage;
use crate::replication::Source;
use crate::retry::GaveUp;
use crate::sink::{Batch, Mode, Write};
use crate::source_tables::{self, SourceError};

/// The prefix of request messages.
pub const PREFIX: &str = "myhealth.cdc.request";

/// Why a request could not be carried out; streaming reconnects (or stops) and the request is
/// read again from the stream.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Shutdown gave up waiting for the store.
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
}

/// What the daemon is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Rebuild one patient's documents from the source.
    ResyncPatient {
        /// The patient whose documents are rebuilt (or removed, if the source has none).
        patient_id: Uuid,
    },
    /// Rebuild what the unresolved dead letters touch, then mark them replayed.
    ReplayDeadLetters,
}

/// Emits `request` on the source; returns its WAL position.
pub async fn send(client: &Client, request: &Request) -> anyhow::Result<u64> {
    let content = serde_json::to_string(request)?;
    let lsn: String = client
        .query_one(
            "SELECT pg_logical_emit_message(true, $1, $2)::text",
            &[&PREFIX, &content],
        )
        .await?
        .get(0);
    Ok(read_model::lsn::parse(&lsn)?)
}

/// Waits until the checkpoint of `slot` is past `lsn` (the daemon carried out what is there).
pub async fn wait_applied(
    store: &Database,
    slot: &str,
    lsn: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let checkpoint = read_model::checkpoint::load(store, slot).await?;
        if checkpoint.is_some_and(|checkpoint| checkpoint.lsn > lsn) {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the daemon of slot {slot} did not reach {} within {} s; is it running?",
            read_model::lsn::format(lsn),
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Carries out `request`, read from the stream at `lsn`, reading `source` and writing through
/// `writer` with a mapper of its own (caches of `cache_bytes`).
pub async fn carry_out(
    writer: &Writer,
    source: &Source,
    cache_bytes: usize,
    request: &Request,
    lsn: u64,
) -> Result<(), RequestError> {
    let client = source_tables::read_view(&source.url, None).await?;
    let relations = source_tables::relations(&client, &source.publication).await?;
    // What the request writes is as new as the request (see `sink::Write`'s guard).
    let mut batch = Batch::default();
    batch.at(lsn);
    let mut rebuild = Rebuild {
        client: &client,
        mapper: Mapper::new(writer.lookups(), cache_bytes),
        batch,
        transaction: Transaction {
            commit_lsn: lsn,
            commit_time: DateTime::now(),
        },
        relations: &relations,
        writer,
        changes: 0,
    };
    for relation in &relations {
        rebuild.mapper.relation(relation.clone());
    }
    match request {
        Request::ResyncPatient { patient_id } => {
            rebuild.patient(*patient_id).await?;
            tracing::info!(patient = %patient_id, "patient resynced");
        }
        Request::ReplayDeadLetters => {
            let letters = unresolved(writer.database()).await;
            let letters = match letters {
                Ok(letters) => letters,
                Err(error) => {
                    writer.metrics().error(Stage::Request);
                    tracing::warn!(%error, "cannot read the dead letters; replay skipped");
                    return Ok(());
                }
            };
            let mut patients = BTreeSet::new();
            let mut replayed = Vec::new();
            for letter in &letters {
                // Undecodable bytes or a write the store refused: nothing to re-read.
                let Some(table) = letter.get_str("table").ok().and_then(Table::named) else {
                    continue;
                };
                let values = apply::letter_document(letter, "values").unwrap_or_default();
                let id = |column: &str| {
                    values
                        .get_str(column)
                        .ok()
                        .and_then(|text| Uuid::parse_str(text).ok())
                };
                let patient = match table {
                    Table::Patients => id("id"),
                    Table::PatientClinics | Table::Checkups | Table::Reports => id("patient_id"),
                    Table::Measurements => match id("report_id") {
                        Some(report) => rebuild.patient_of(report).await?,
                        None => None,
                    },
                    Table::Clinics | Table::Devices => {
                        if let Some(row_id) = id("id") {
                            rebuild.refresh(table, row_id).await?;
                        }
                        None
                    }
                };
                patients.extend(patient);
                replayed.push(letter.get("_id").cloned().unwrap_or(Bson::Null));
            }
            for patient in &patients {
                rebuild.patient(*patient).await?;
            }
            rebuild.batch.push(Write::update_many(
                DEAD_LETTERS,
                doc! { "_id": { "$in": &replayed } },
                doc! { "$set": { "replayed_at": DateTime::now(), "replayed_by": read_model::lsn::format(lsn) } },
            ));
            tracing::info!(
                letters = replayed.len(),
                left = letters.len() - replayed.len(),
                patients = patients.len(),
                "dead letters replayed"
            );
        }
    }
    Ok(rebuild.finish().await?)
}

/// The dead letters not replayed yet, oldest first.
pub async fn unresolved(store: &Database) -> Result<Vec<Document>, mongodb::error::Error> {
    dead_letters(store, doc! { "replayed_at": { "$exists": false } }).await
}

/// The dead letters matching `filter`, oldest first.
pub async fn dead_letters(
    store: &Database,
    filter: Document,
) -> Result<Vec<Document>, mongodb::error::Error> {
    let mut cursor = store
        .collection::<Document>(DEAD_LETTERS)
        .find(filter)
        .sort(doc! { "_id": 1 })
        .await?;
    let mut letters = Vec::new();
    while cursor.advance().await? {
        letters.push(cursor.deserialize_current()?);
    }
    Ok(letters)
}

/// Rebuilding documents from source rows, with a mapper of its own (its schemas are the
/// catalog's current ones, which may be ahead of the stream's).
struct Rebuild<'a> {
    client: &'a Client,
    mapper: Mapper<SettledStore>,
    batch: Batch,
    transaction: Transaction,
    relations: &'a [Relation],
    writer: &'a Writer,
    changes: u32,
}

impl Rebuild<'_> {
    fn relation(&self, table: Table) -> Option<&Relation> {
        self.relations
            .iter()
            .find(|relation| Table::of(relation) == Some(table))
    }

    /// The rows of `table` matching `condition` (on alias `t`).
    async fn rows(&self, table: Table, condition: &str) -> Result<Vec<TupleData>, RequestError> {
        let Some(relation) = self.relation(table) else {
            return Ok(Vec::new());
        };
        let query = format!(
            "SELECT {} FROM {} t WHERE {condition}",
            source_tables::column_list(relation, "t"),
            source_tables::table_name(relation)
        );
        let rows = source_tables::copy(self.client, &query).await?;
        let rows: Vec<Result<TupleData, SourceError>> = rows.collect().await;
        Ok(rows.into_iter().collect::<Result<_, _>>()?)
    }

    /// Maps one re-read row into the rebuild's batch.
    async fn map_row(&mut self, message: Message) -> Result<(), GaveUp> {
        self.changes += 1;
        self.writer
            .map_source_row(
                &mut self.mapper,
                &message,
                &self.transaction,
                &mut self.batch,
                &format!("request-{}", self.changes),
            )
            .await
    }

    async fn insert(&mut self, table: Table, rows: Vec<TupleData>) -> Result<(), GaveUp> {
        let Some(relation_id) = self.relation(table).map(|relation| relation.id) else {
            return Ok(());
        };
        for new in rows {
            self.map_row(Message::Insert(Insert { relation_id, new }))
                .await?;
        }
        Ok(())
    }

    /// The patient of report `report`, if it still exists.
    async fn patient_of(&self, report: Uuid) -> Result<Option<Uuid>, RequestError> {
        let query = format!(
            "SELECT patient_id FROM {} WHERE id = $1",
            Table::Reports.name()
        );
        let row = self
            .client
            .query_opt(&query, &[&report])
            .await
            .map_err(SourceError::from)?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Re-reads clinic or device `id` and maps it as an update (renames fan out).
    async fn refresh(&mut self, table: Table, id: Uuid) -> Result<(), RequestError> {
        let Some(relation_id) = self.relation(table).map(|relation| relation.id) else {
            return Ok(());
        };
        for new in self.rows(table, &format!("t.id = '{id}'")).await? {
            self.map_row(Message::Update(Update {
                relation_id,
                old: None,
                new,
            }))
            .await?;
        }
        Ok(())
    }

    /// Rebuilds every document of `patient` from the source.
    async fn patient(&mut self, patient: Uuid) -> Result<(), RequestError> {
        let id = patient.to_string();
        let patients = self
            .rows(Table::Patients, &format!("t.id = '{id}'"))
            .await?;
        self.batch
            .push(Write::delete_many(REPORTS, doc! { "patient_id": &id }));
        for lookup in [LOOKUP_CHECKUPS, LOOKUP_PATIENT_CLINICS] {
            self.batch
                .push(Write::delete_many(lookup, doc! { "patient_id": &id }));
        }
        if patients.is_empty() {
            self.batch.push(Write::delete(PATIENTS, id.as_str()));
            return Ok(());
        }
        let of_checkups = |column: &str| {
            format!(
                "t.id IN (SELECT {column} FROM {} WHERE patient_id = '{id}')",
                Table::Checkups.name()
            )
        };
        let clinics = self.rows(Table::Clinics, &of_checkups("clinic_id")).await?;
        self.insert(Table::Clinics, clinics).await?;
        let devices = self.rows(Table::Devices, &of_checkups("device_id")).await?;
        self.insert(Table::Devices, devices).await?;
        self.insert(Table::Patients, patients).await?;
        let links = self
            .rows(Table::PatientClinics, &format!("t.patient_id = '{id}'"))
            .await?;
        self.insert(Table::PatientClinics, links).await?;
        let checkups = self
            .rows(Table::Checkups, &format!("t.patient_id = '{id}'"))
            .await?;
        self.insert(Table::Checkups, checkups).await?;
        let reports = self
            .rows(Table::Reports, &format!("t.patient_id = '{id}'"))
            .await?;
        self.insert(Table::Reports, reports).await?;
        let measurements = self
            .rows(
                Table::Measurements,
                &format!(
                    "t.report_id IN (SELECT id FROM {} WHERE patient_id = '{id}')",
                    Table::Reports.name()
                ),
            )
            .await?;
        self.insert(Table::Measurements, measurements).await?;
        self.mapper.recompute_latest(&id);
        Ok(())
    }

    async fn finish(mut self) -> Result<(), GaveUp> {
        self.writer
            .apply(
                &mut self.batch,
                &mut self.mapper,
                self.transaction.commit_lsn,
                Mode::Update,
            )
            .await
    }
}
