//! The initial snapshot: on first start (no checkpoint), the daemon copies every published table
//! and builds every document before it streams.
//!
//! The slot is created with an exported snapshot, and every table is copied inside that
//! snapshot (`SET TRANSACTION SNAPSHOT`): the copy holds exactly the transactions committed
//! before the slot's start, and the stream exactly those after it, so nothing is missed or
//! applied twice. Ingest goes on meanwhile; its changes wait in the slot.
//!
//! Rows are read with `COPY (…) TO STDOUT` and fed, as Insert messages of the relation pgoutput
//! would announce, to the same mapping and sink as streamed changes, a batch at a time. Tables
//! without a dependency are copied in parallel (clinics, devices, patients, checkups), each on
//! its own connection; reports then come with their measurements in one ordered join, so that
//! each report document is written once, whole, and each patient's `latest` settles once.
//! Documents are written as inserts ([`Mode::InsertNew`]).
//!
//! The snapshot starts by emptying the read model, so a snapshot that was interrupted (a crash,
//! a kill) is simply started again: the next start finds no checkpoint, drops the unfinished
//! slot and begins anew. A PostgreSQL advisory lock keeps a second daemon from doing the same
//! at the same time.
//!
//! Progress goes to the log every few seconds (rows per table, rate, time left), to a progress
//! bar when stderr is a terminal, and to the `cdc_snapshot_*` metrics.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mongodb::bson::DateTime;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use service_plumbing::shutdown::Shutdown;

use crate::apply::{SettledStore, Writer};
use crate::decode::{ColumnData, Insert, Message, Relation, TupleData};
use crate::mapping::{Mapper, Table, Transaction};
use crate::metrics::CdcMetrics;
use crate::replication::{ExportedSnapshot, ReplicationError, Source};
use crate::retry::GaveUp;
use crate::sink::{Batch, Mode};
use crate::source_tables::{self, SourceError};

/// Rows sent from a copying task to the mapping loop at a time.
const ROWS_PER_CHUNK: usize = 500;
/// How often progress is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Why a snapshot stopped before it finished; the next start begins it again.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Another daemon is taking the snapshot ([`ReplicationError::SlotInUse`]).
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Shutdown gave up waiting for the store.
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
}

/// The advisory lock that lets one daemon at a time snapshot a slot.
pub struct Lock {
    _client: Client,
}

impl Lock {
    /// Takes the lock of `source`'s slot; [`ReplicationError::SlotInUse`] while another daemon
    /// holds it. Released when dropped (or when the process dies).
    pub async fn acquire(source: &Source) -> Result<Lock, SnapshotError> {
        let client = source_tables::connect(&source.url).await?;
        let key = format!("myhealth cdc-daemon snapshot {}", source.slot);
        let row = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .await
            .map_err(SourceError::from)?;
        if row.get::<_, bool>(0) {
            Ok(Lock { _client: client })
        } else {
            Err(ReplicationError::SlotInUse(source.slot.clone()).into())
        }
    }
}

/// Copies every published table of `source` inside `exported` into the store through `writer`.
/// False if `shutdown` came first (the next start begins again).
pub async fn copy(
    writer: &Writer,
    source: &Source,
    exported: &ExportedSnapshot,
    mapper: &mut Mapper<SettledStore>,
    shutdown: &Shutdown,
) -> Result<bool, SnapshotError> {
    let catalog = source_tables::read_view(&source.url, Some(&exported.name)).await?;
    let relations = source_tables::relations(&catalog, &source.publication).await?;
    let mut progress = Progress::new(writer.metrics(), &catalog, &relations).await?;
    drop(catalog);
    for relation in &relations {
        mapper.relation(relation.clone());
    }
    writer.clear_read_model().await?;
    tracing::info!(tables = relations.len(), lsn = %read_model::lsn::format(exported.consistent_lsn), "initial snapshot started");

    let mut copier = Copier {
        writer,
        mapper,
        batch: Batch::default(),
        transaction: Transaction {
            commit_lsn: exported.consistent_lsn,
            commit_time: DateTime::now(),
        },
        rows: 0,
    };
    let (reports, others): (Vec<&Relation>, Vec<&Relation>) =
        relations.iter().partition(|relation| {
            matches!(
                Table::of(relation),
                Some(Table::Reports | Table::Measurements)
            )
        });

    // Tables nothing else depends on the order of: in parallel.
    let (sender, mut receiver) = mpsc::channel::<Result<Chunk, SourceError>>(8);
    for relation in others {
        let client = source_tables::read_view(&source.url, Some(&exported.name)).await?;
        let query = format!(
            "SELECT {} FROM {}",
            source_tables::column_list(relation, ""),
            source_tables::table_name(relation)
        );
        tokio::spawn(send_rows(client, query, relation.clone(), sender.clone()));
    }
    drop(sender);
    while let Some(chunk) = receiver.recv().await {
        let chunk = chunk?;
        progress.copied(&chunk.relation.name, chunk.rows.len());
        for row in chunk.rows {
            copier.map_copied(chunk.relation.id, row).await?;
        }
        copier.flush_if_full().await?;
        if shutdown.is_triggered() {
            return Ok(false);
        }
    }

    // Reports with their measurements, one patient after another.
    let report = reports
        .iter()
        .find(|relation| Table::of(relation) == Some(Table::Reports));
    let measurement = reports
        .iter()
        .find(|relation| Table::of(relation) == Some(Table::Measurements));
    if let Some(report) = report {
        let client = source_tables::read_view(&source.url, Some(&exported.name)).await?;
        let query = match measurement {
            Some(measurement) => format!(
                "SELECT {}, {} FROM {} r LEFT JOIN {} m ON m.report_id = r.id
                 ORDER BY r.patient_id, r.id",
                source_tables::column_list(report, "r"),
                source_tables::column_list(measurement, "m"),
                source_tables::table_name(report),
                source_tables::table_name(measurement),
            ),
            None => format!(
                "SELECT {} FROM {} r ORDER BY r.patient_id, r.id",
                source_tables::column_list(report, "r"),
                source_tables::table_name(report),
            ),
        };
        let rows = source_tables::copy(&client, &query).await?;
        let mut rows = std::pin::pin!(rows);
        let width = report.columns.len();
        let id_column = report
            .columns
            .iter()
            .position(|column| column.name == "id")
            .unwrap_or(0);
        let mut previous: Option<ColumnData> = None;
        while let Some(row) = rows.next().await {
            let TupleData(mut values) = row?;
            let measurement_values = values.split_off(width.min(values.len()));
            // The join repeats a report once per measurement: map it the first time.
            if previous.as_ref() != values.get(id_column) {
                previous = values.get(id_column).cloned();
                progress.copied(&report.name, 1);
                copier.map_copied(report.id, TupleData(values)).await?;
            }
            if let Some(measurement) = measurement
                && measurement_values
                    .iter()
                    .any(|value| value != &ColumnData::Null)
            {
                progress.copied(&measurement.name, 1);
                copier
                    .map_copied(measurement.id, TupleData(measurement_values))
                    .await?;
            }
            copier.flush_if_full().await?;
            if shutdown.is_triggered() {
                return Ok(false);
            }
        }
    } else if let Some(measurement) = measurement {
        let client = source_tables::read_view(&source.url, Some(&exported.name)).await?;
        let query = format!(
            "SELECT {} FROM {}",
            source_tables::column_list(measurement, ""),
            source_tables::table_name(measurement)
        );
        let rows = source_tables::copy(&client, &query).await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.next().await {
            progress.copied(&measurement.name, 1);
            copier.map_copied(measurement.id, row?).await?;
            copier.flush_if_full().await?;
            if shutdown.is_triggered() {
                return Ok(false);
            }
        }
    }
    copier.flush().await?;
    progress.finish();
    Ok(true)
}

/// Rows of one table, on their way to the mapping.
struct Chunk {
    relation: Relation,
    rows: Vec<TupleData>,
}

/// Copies `query`'s rows to `sender` in chunks.
async fn send_rows(
    client: Client,
    query: String,
    relation: Relation,
    sender: mpsc::Sender<Result<Chunk, SourceError>>,
) {
    let rows = match source_tables::copy(&client, &query).await {
        Ok(rows) => rows,
        Err(error) => {
            let _ = sender.send(Err(error)).await;
            return;
        }
    };
    let mut rows = std::pin::pin!(rows.chunks(ROWS_PER_CHUNK));
    while let Some(rows) = rows.next().await {
        let chunk = rows
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|rows| Chunk {
                relation: relation.clone(),
                rows,
            });
        if sender.send(chunk).await.is_err() {
            return;
        }
    }
}

/// Maps copied rows into batches and writes them.
struct Copier<'p, 'm> {
    writer: &'p Writer,
    mapper: &'m mut Mapper<SettledStore>,
    batch: Batch,
    transaction: Transaction,
    rows: u64,
}

impl Copier<'_, '_> {
    /// Maps one copied row as an insert into the copier's batch.
    async fn map_copied(&mut self, relation_id: u32, new: TupleData) -> Result<(), GaveUp> {
        let message = Message::Insert(Insert { relation_id, new });
        self.rows += 1;
        self.writer
            .map_source_row(
                self.mapper,
                &message,
                &self.transaction,
                &mut self.batch,
                &format!("snapshot-{}", self.rows),
            )
            .await
    }

    /// Writes the batch once it is full.
    async fn flush_if_full(&mut self) -> Result<(), GaveUp> {
        if self.writer.is_full(&self.batch) {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), GaveUp> {
        self.writer
            .apply(
                &mut self.batch,
                &mut *self.mapper,
                self.transaction.commit_lsn,
                Mode::InsertNew,
            )
            .await
    }
}

/// Rows copied per table against the planner's estimates.
struct Progress<'p> {
    metrics: &'p CdcMetrics,
    tables: Vec<(String, u64, u64)>,
    started: Instant,
    logged: Instant,
    bar: bool,
}

impl<'p> Progress<'p> {
    async fn new(
        metrics: &'p CdcMetrics,
        catalog: &Client,
        relations: &[Relation],
    ) -> Result<Progress<'p>, SourceError> {
        let mut tables = Vec::new();
        for relation in relations {
            let estimate: f32 = catalog
                .query_one(
                    "SELECT reltuples FROM pg_class WHERE oid = $1",
                    &[&relation.id],
                )
                .await?
                .get(0);
            // -1 when the table was never analyzed.
            let estimate = estimate.max(0.0) as u64;
            metrics
                .snapshot_rows_estimated
                .with_label_values(&[&relation.name])
                .set(estimate as f64);
            tables.push((relation.name.clone(), 0, estimate));
        }
        metrics.snapshot_running.set(1);
        Ok(Progress {
            metrics,
            tables,
            started: Instant::now(),
            logged: Instant::now(),
            bar: std::io::stderr().is_terminal(),
        })
    }

    fn copied(&mut self, table: &str, rows: usize) {
        if let Some(entry) = self.tables.iter_mut().find(|(name, ..)| name == table) {
            entry.1 += rows as u64;
        }
        self.metrics
            .snapshot_rows
            .with_label_values(&[table])
            .inc_by(rows as u64);
        if self.logged.elapsed() >= LOG_INTERVAL {
            self.logged = Instant::now();
            self.report();
        }
    }

    fn report(&self) {
        let copied: u64 = self.tables.iter().map(|(_, copied, _)| copied).sum();
        let estimate: u64 = self
            .tables
            .iter()
            .map(|(_, copied, estimate)| (*copied).max(*estimate))
            .sum();
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = copied as f64 / seconds;
        let left = if rate > 0.0 {
            estimate.saturating_sub(copied) as f64 / rate
        } else {
            0.0
        };
        let per_table = self
            .tables
            .iter()
            .map(|(name, copied, estimate)| format!("{name} {copied}/~{estimate}"))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            rows = copied,
            estimated_rows = estimate,
            rows_per_second = rate.round(),
            seconds_left = left.round(),
            tables = %per_table,
            "snapshot progress"
        );
        if self.bar {
            let done = if estimate == 0 {
                1.0
            } else {
                copied as f64 / estimate as f64
            };
            let filled = (done.min(1.0) * 30.0) as usize;
            eprint!(
                "\r[{}{}] {:>3.0}% {copied}/~{estimate} rows, {rate:.0}/s, ~{left:.0} s left ",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                done * 100.0
            );
        }
    }

    fn finish(&self) {
        self.report();
        if self.bar {
            eprintln!();
        }
        self.metrics.snapshot_running.set(0);
        let copied: u64 = self.tables.iter().map(|(_, copied, _)| copied).sum();
        tracing::info!(
            rows = copied,
            seconds = self.started.elapsed().as_secs_f64(),
            "initial snapshot finished"
        );
    }
}
