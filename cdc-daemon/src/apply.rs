//! The `apply` step, the one writer of the store: mapped row changes, batched, go to the
//! [`sink`](crate::sink), then what they made stale in patients' `latest` is settled and
//! written too. Streaming, the initial snapshot and support requests all write through a
//! [`Writer`], so the three share one retry policy and one way of recording dead letters.
//!
//! Three outcomes, kept apart by type: a failure of the store is retried until it passes (or
//! shutdown gives up, [`GaveUp`]); a change the mapping cannot turn into documents, or a write
//! the store refuses on its own, becomes a dead letter in `cdc_dead_letters` and the stream
//! goes on; halting at a dead letter instead (`stop_on_dead_letter`) is the pipeline's decision.

use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, doc};
use read_model::DEAD_LETTERS;

use crate::decode::Message;
use crate::mapping::{DeadLetter, Mapped, Mapper, Transaction, latest};
use crate::metrics::{CdcMetrics, Stage};
use crate::retry::{GaveUp, Retry};
use crate::sink::{self, Batch, Limits, Mode, Write};

/// When a batch is full and where its writes go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Flush once this many row changes are batched.
    pub max_batch_changes: usize,
    /// Flush once the batch holds about this many bytes.
    pub max_batch_bytes: usize,
    /// Flush a batch at most this long after its first change.
    pub max_batch_delay: Duration,
    /// Where document writes go.
    pub sink: SinkMode,
}

/// Where document writes go: the store, or nowhere (a benchmarking switch, see `Config::sink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// Write to the store.
    #[default]
    Store,
    /// Drop every document write (checkpoints are still written).
    Discard,
}

/// Writes batches to the store, retrying while it is unavailable.
#[derive(Debug, Clone)]
pub struct Writer {
    database: Database,
    settings: Settings,
    metrics: CdcMetrics,
    retry: Retry,
    limits: Limits,
}

impl Writer {
    /// A writer to `database`, cutting commands by FerretDB's limits (which every store
    /// takes) until told the store's own ([`Writer::set_limits`]).
    pub fn new(database: Database, settings: Settings, metrics: CdcMetrics, retry: Retry) -> Self {
        Writer {
            database,
            settings,
            metrics,
            retry,
            limits: Limits::FERRETDB,
        }
    }

    /// Cuts commands by `limits` from now on (the store's, [`sink::limits::detect`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The read store, for what is read or written outside batches (checkpoints, indexes).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Batch limits and sink mode.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &CdcMetrics {
        &self.metrics
    }

    /// The retry policy, for the store operations that are not writes of a batch (checkpoints,
    /// clearing the read model).
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// Whether `batch` reached a size limit and should be written now.
    pub fn is_full(&self, batch: &Batch) -> bool {
        batch.changes() >= self.settings.max_batch_changes
            || batch.bytes() >= self.settings.max_batch_bytes
    }

    /// Maps `message` into `batch`, retrying while a lookup cannot be read from the store.
    pub async fn map_retrying(
        &self,
        mapper: &mut Mapper<Database>,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<Mapped, GaveUp> {
        let mut failures = self.retry.failures(Stage::Mapping);
        loop {
            match mapper.map_change(message, transaction, batch).await {
                Ok(mapped) => return Ok(mapped),
                Err(error) => failures.wait(&error).await?,
            }
        }
    }

    /// Maps a row read from the source (snapshot, support request) into `batch`, recording a
    /// change it cannot map as dead letter `number` of `transaction`.
    pub async fn map_source_row(
        &self,
        mapper: &mut Mapper<Database>,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
        number: &str,
    ) -> Result<(), GaveUp> {
        let mapped = self
            .map_retrying(mapper, message, transaction, batch)
            .await?;
        if let Some(letter) = mapped.dead_letter {
            self.metrics.error(Stage::Mapping);
            batch.push(self.dead_letter(transaction.commit_lsn, number, letter));
        }
        Ok(())
    }

    /// The dead-letter record of `letter`, change `number` of the transaction at `lsn`; its id
    /// (`<lsn>-<number>`) makes recording it again after a replay harmless.
    pub fn dead_letter(&self, lsn: u64, number: &str, letter: DeadLetter) -> Write {
        let origin = letter.origin.label();
        tracing::warn!(table = %origin, error = %letter.error, lsn = %read_model::lsn::format(lsn), "change recorded as a dead letter");
        self.metrics
            .dead_letters
            .with_label_values(&[origin.as_str()])
            .inc();
        let id = format!("{lsn:016X}-{number}");
        let mut record = doc! {
            "lsn": read_model::lsn::format(lsn),
            "table": origin,
        };
        if let Some(operation) = letter.operation {
            record.insert("operation", operation.name());
        }
        record.insert("values", letter.values);
        record.insert("error", letter.error);
        record.insert("recorded_at", DateTime::now());
        Write::upsert(DEAD_LETTERS, id.as_str(), record)
    }

    /// Writes `batch`, then what it made stale in patients' `latest`, retrying while the store
    /// is unavailable. Statements the store refuses on their own become dead letters named
    /// after `lsn`.
    pub async fn apply(
        &self,
        batch: &mut Batch,
        mapper: &mut Mapper<Database>,
        lsn: u64,
        mode: Mode,
    ) -> Result<(), GaveUp> {
        let changes = batch.changes();
        let statements = batch.take();
        self.write(&statements, lsn, mode).await?;
        let work = mapper.take_latest();
        // Settling reads the store, which a discarding sink never wrote.
        if !work.is_empty() && self.settings.sink == SinkMode::Store {
            let writes = self
                .retry
                .until_ok(Stage::Mapping, || async {
                    latest::settle(&self.database, &work).await
                })
                .await?;
            let mut derived = Batch::default();
            derived.extend(writes);
            self.write(&derived.take(), lsn, Mode::Update).await?;
        }
        mapper.end_batch();
        if changes > 0 {
            self.metrics.batch_changes.observe(changes as f64);
        }
        Ok(())
    }

    /// Sends statements, retrying while the store is unavailable; statements the store refuses
    /// on their own become dead letters.
    async fn write(
        &self,
        statements: &[(&'static str, Vec<Write>)],
        lsn: u64,
        mode: Mode,
    ) -> Result<(), GaveUp> {
        let rejected = self.send(statements, mode).await?;
        if rejected.is_empty() {
            return Ok(());
        }
        let metrics = &self.metrics;
        let mut letters = Batch::default();
        for (index, refused) in rejected.into_iter().enumerate() {
            metrics.error(Stage::Sink);
            metrics
                .dead_letters
                .with_label_values(&[refused.write.collection()])
                .inc();
            tracing::warn!(collection = refused.write.collection(), error = %refused.error, "the store refused a write; recorded as a dead letter");
            let (filter, update) = match &refused.write {
                Write::Update { filter, update, .. } => {
                    (filter.clone(), Bson::Document(update.clone()))
                }
                Write::Delete { filter, .. } => (filter.clone(), Bson::Null),
            };
            letters.push(Write::upsert(
                DEAD_LETTERS,
                format!("{lsn:016X}-store-{index}").as_str(),
                doc! {
                    "lsn": read_model::lsn::format(lsn),
                    "collection": refused.write.collection(),
                    "filter": filter,
                    "update": update,
                    "error": refused.error,
                    "recorded_at": DateTime::now(),
                },
            ));
        }
        self.send(&letters.take(), Mode::Update).await?;
        Ok(())
    }

    /// One [`sink::flush`], retried until the store takes it.
    async fn send(
        &self,
        statements: &[(&'static str, Vec<Write>)],
        mode: Mode,
    ) -> Result<Vec<sink::Rejected>, GaveUp> {
        if statements.is_empty() || self.settings.sink == SinkMode::Discard {
            return Ok(Vec::new());
        }
        let metrics = &self.metrics;
        self.retry
            .until_ok(Stage::Sink, || async {
                sink::flush(
                    &self.database,
                    statements,
                    mode,
                    self.limits,
                    |collection, count, elapsed| {
                        metrics
                            .store_writes
                            .with_label_values(&[collection])
                            .inc_by(count as u64);
                        metrics.store_write_seconds.observe(elapsed.as_secs_f64());
                    },
                )
                .await
            })
            .await
    }
}
