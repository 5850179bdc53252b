//! The daemon's main loop, in the order the data flows:
//!
//! 1. [`replication`](crate::replication): events from the slot, starting at the checkpoint;
//! 2. [`decode`](crate::decode): pgoutput bytes → messages;
//! 3. [`mapping`](crate::mapping): row changes → document writes, collected in a batch;
//! 4. [`sink`](crate::sink): the batch → the store, when it is full or old enough;
//! 5. [`checkpoint`](crate::checkpoint): the last completed transaction → the store, then the
//!    slot.
//!
//! Transactions arrive only after they committed (pgoutput v1), so changes are applied as they
//! come: a transaction of any size costs at most a batch of memory, and the checkpoint only
//! moves at transaction ends. After a crash, transactions at or below the checkpoint are
//! skipped and the rest replayed; every write is idempotent, so the store converges. While the
//! store is down, the loop retries the same batch and stops reading (backpressure); when
//! PostgreSQL goes away, it reconnects with backoff and resumes from the checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, doc};
use read_model::DEAD_LETTERS;
use service_plumbing::shutdown::Shutdown;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpoints;
use crate::decode::{self, Message};
use crate::heartbeat;
use crate::lag::LagState;
use crate::mapping::{DeadLetter, Mapper, Transaction, latest};
use crate::metrics::CdcMetrics;
use crate::replication::{self, Event, ReplicationError, Source, Stream, unix_millis};
use crate::requests;
use crate::sink::{self, Batch, Mode, Write};
use crate::snapshot;
use crate::source_tables::SourceError;

/// When a batch is flushed and how much the daemon caches.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Flush once this many row changes are batched.
    pub max_batch_changes: usize,
    /// Flush once the batch holds about this many bytes.
    pub max_batch_bytes: usize,
    /// Flush a batch at most this long after its first change.
    pub max_batch_delay: Duration,
    /// Entries per lookup cache.
    pub cache_capacity: usize,
    /// How long shutdown may wait for the store before giving up on the last batch.
    pub shutdown_deadline: Duration,
    /// Halt at the first change that cannot be mapped instead of recording a dead letter.
    pub stop_on_dead_letter: bool,
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

/// Why a replication session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Replication failed or could not start.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The server ended the stream.
    #[error("the replication stream ended")]
    StreamEnded,
    /// Shutdown waited for the store longer than its deadline.
    #[error("shutting down while the store is unavailable")]
    GaveUp,
    /// Reading tables from the source (snapshot, resync) failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A change could not be mapped and the daemon is set to stop.
    #[error("halted at a change that cannot be mapped (stop_on_dead_letter): {0}")]
    Halted(String),
}

/// The pipeline and what it needs.
pub struct Pipeline {
    /// The slot to read.
    pub source: Source,
    /// The read store.
    pub database: Database,
    /// Batching and caching.
    pub settings: Settings,
    /// Metrics.
    pub metrics: CdcMetrics,
    /// Lag bookkeeping shared with the lag poller.
    pub lag: Arc<LagState>,
    /// Stops the loop.
    pub shutdown: Shutdown,
}

impl Pipeline {
    /// Runs until shutdown: one replication session after another, backing off between them.
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        while let Err(error) = read_model::indexes::create(&self.database).await {
            tracing::warn!(%error, "cannot create the store's indexes yet; retrying");
            if self.pause(backoff.next_delay()).await {
                return;
            }
        }
        let checkpoints = Checkpoints::new(self.database.clone(), self.source.slot.clone());
        let mut mapper = Mapper::new(self.database.clone(), self.settings.cache_capacity);
        loop {
            let outcome = self.session(&checkpoints, &mut mapper, &mut backoff).await;
            self.metrics.connected.set(0);
            match outcome {
                Ok(()) => return,
                Err(SessionError::Replication(ReplicationError::SlotInUse(slot))) => {
                    tracing::info!(%slot, "the slot is held by another daemon; waiting to take over");
                }
                Err(SessionError::GaveUp) => {
                    tracing::warn!(
                        "stopped with the last batch unwritten; it is replayed on restart"
                    );
                    return;
                }
                Err(error @ SessionError::Halted(_)) => {
                    // Streaming stays stopped before the change (the slot keeps the WAL) until
                    // an operator fixes the cause and restarts the daemon.
                    self.metrics.halted.set(1);
                    tracing::error!(error = %error, "streaming halted; fix the change's cause, then restart");
                    self.shutdown.wait().await;
                    return;
                }
                Err(error) => {
                    self.metrics.error("replication");
                    tracing::warn!(error = %error, "replication session ended; reconnecting");
                }
            }
            mapper.reset();
            if self.pause(backoff.next_delay()).await {
                return;
            }
        }
    }

    /// Sleeps for `delay`; true if shutdown came first.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => self.shutdown.is_triggered(),
            () = self.shutdown.wait() => true,
        }
    }

    async fn session(
        &self,
        checkpoints: &Checkpoints,
        mapper: &mut Mapper<Database>,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let checkpoint = {
            let mut retry = self.retry();
            loop {
                match checkpoints.load().await {
                    Ok(value) => break value,
                    Err(error) => retry.failed("checkpoint", &error).await?,
                }
            }
        };
        let mut connection = replication::connect(&self.source, checkpoint.unwrap_or(0)).await?;
        let slot_exists = connection.slot_exists().await?;
        // Held until the session ends, so that no second daemon starts a snapshot of its own.
        let mut _snapshot_lock = None;
        let applied = match checkpoint {
            Some(lsn) if slot_exists => lsn,
            _ => {
                if checkpoint.is_some() {
                    tracing::warn!(slot = %self.source.slot, "the slot is gone but a checkpoint exists: changes may be missing; taking a new snapshot");
                }
                _snapshot_lock = Some(snapshot::Lock::acquire(&self.source).await?);
                if slot_exists {
                    // A snapshot that never finished: its slot's exported snapshot is gone.
                    connection.drop_slot().await?;
                }
                let exported = connection.create_slot().await?;
                mapper.reset();
                if !snapshot::copy(self, &exported, mapper).await? {
                    return Ok(());
                }
                let mut retry = self.retry();
                while let Err(error) = checkpoints.start_at(exported.consistent_lsn).await {
                    retry.failed("checkpoint", &error).await?;
                }
                exported.consistent_lsn
            }
        };
        let stream = connection.start().await?;
        tracing::info!(slot = %self.source.slot, from = %read_model::lsn::format(applied), "streaming");
        self.metrics.connected.set(1);
        self.metrics.applied_lsn.set(applied as f64);
        backoff.reset();
        let mut session = Session {
            pipeline: self,
            checkpoints,
            stream,
            batch: Batch::default(),
            applied,
            open: None,
            completed: None,
            commit_times: Vec::new(),
            batch_opened: None,
            last_idle_advance: Instant::now(),
        };
        let outcome = session.run(mapper).await;
        session.stream.close().await;
        outcome
    }

    /// A retry policy for store operations: back off while the store is unavailable, give up
    /// only when shutdown has waited longer than its deadline.
    pub(crate) fn retry(&self) -> Retry<'_> {
        Retry {
            pipeline: self,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            shutdown_since: None,
        }
    }

    /// Writes `batch`, then what it made stale in patients' `latest`, retrying while the store
    /// is unavailable. Statements the store refuses on their own become dead letters named
    /// after `lsn`.
    pub(crate) async fn apply(
        &self,
        batch: &mut Batch,
        mapper: &mut Mapper<Database>,
        lsn: u64,
        mode: Mode,
    ) -> Result<(), SessionError> {
        let changes = batch.changes();
        let statements = batch.take();
        self.write(&statements, lsn, mode).await?;
        let latest = mapper.take_latest();
        // Settling reads the store, which a discarding sink never wrote.
        if !latest.is_empty() && self.settings.sink == SinkMode::Store {
            let writes = {
                let mut retry = self.retry();
                loop {
                    match latest::settle(&self.database, &latest).await {
                        Ok(value) => break value,
                        Err(error) => retry.failed("mapping", &error).await?,
                    }
                }
            };
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

    /// Maps a row read from the source (snapshot, request) into `batch`, recording a change it
    /// cannot map as dead letter `number` of `transaction`.
    pub(crate) async fn map_source_row(
        &self,
        mapper: &mut Mapper<Database>,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
        number: &str,
    ) -> Result<(), SessionError> {
        let mapped = {
            let mut retry = self.retry();
            loop {
                match mapper.map(message, transaction, batch).await {
                    Ok(value) => break value,
                    Err(error) => retry.failed("mapping", &error).await?,
                }
            }
        };
        if let Some(letter) = mapped.dead_letter {
            self.metrics.error("mapping");
            batch.push(self.dead_letter(transaction.commit_lsn, number, letter));
        }
        Ok(())
    }

    /// The dead-letter record of `letter`, change `number` of the transaction at `lsn`.
    pub(crate) fn dead_letter(&self, lsn: u64, number: &str, letter: DeadLetter) -> Write {
        tracing::warn!(table = %letter.table, error = %letter.error, lsn = %read_model::lsn::format(lsn), "change recorded as a dead letter");
        self.metrics
            .dead_letters
            .with_label_values(&[&letter.table])
            .inc();
        let id = format!("{lsn:016X}-{number}");
        Write::upsert(
            DEAD_LETTERS,
            id.as_str(),
            doc! {
                "lsn": read_model::lsn::format(lsn),
                "table": letter.table,
                "operation": letter.operation.name(),
                "values": letter.values,
                "error": letter.error,
                "recorded_at": DateTime::now(),
            },
        )
    }

    /// Sends statements, retrying while the store is unavailable; statements the store refuses
    /// on their own become dead letters.
    async fn write(
        &self,
        statements: &[(&'static str, Vec<Write>)],
        lsn: u64,
        mode: Mode,
    ) -> Result<(), SessionError> {
        let rejected = self.send(statements, mode).await?;
        if rejected.is_empty() {
            return Ok(());
        }
        let metrics = &self.metrics;
        let mut letters = Batch::default();
        for (index, refused) in rejected.into_iter().enumerate() {
            metrics.error("sink");
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
    ) -> Result<Vec<sink::Rejected>, SessionError> {
        if statements.is_empty() || self.settings.sink == SinkMode::Discard {
            return Ok(Vec::new());
        }
        let metrics = &self.metrics;
        let mut retry = self.retry();
        loop {
            let flushed = sink::flush(
                &self.database,
                statements,
                mode,
                |collection, count, elapsed| {
                    metrics
                        .store_writes
                        .with_label_values(&[collection])
                        .inc_by(count as u64);
                    metrics.store_write_seconds.observe(elapsed.as_secs_f64());
                },
            )
            .await;
            match flushed {
                Ok(rejected) => return Ok(rejected),
                Err(error) => retry.failed("sink", &error).await?,
            }
        }
    }
}

/// Retrying one store operation (see [`Pipeline::retry`]).
pub(crate) struct Retry<'p> {
    pipeline: &'p Pipeline,
    backoff: Backoff,
    shutdown_since: Option<Instant>,
}

impl Retry<'_> {
    /// Records a failure of `stage`, then waits before the next attempt; an error when the
    /// daemon should give up.
    pub(crate) async fn failed(
        &mut self,
        stage: &str,
        error: &impl std::fmt::Display,
    ) -> Result<(), SessionError> {
        self.pipeline.metrics.error(stage);
        tracing::warn!(error = %error, stage, "store operation failed; retrying");
        if self.pipeline.shutdown.is_triggered() {
            let since = *self.shutdown_since.get_or_insert_with(Instant::now);
            if since.elapsed() > self.pipeline.settings.shutdown_deadline {
                return Err(SessionError::GaveUp);
            }
        }
        tokio::time::sleep(self.backoff.next_delay()).await;
        Ok(())
    }
}

/// A transaction being received.
struct Open {
    transaction: Transaction,
    /// At or below the checkpoint: already applied before a restart.
    skip: bool,
    /// Changes seen so far, numbering dead letters.
    changes: u32,
}

/// One replication session's state.
struct Session<'p> {
    pipeline: &'p Pipeline,
    checkpoints: &'p Checkpoints,
    stream: Stream,
    batch: Batch,
    /// The checkpoint: everything before it is in the store.
    applied: u64,
    open: Option<Open>,
    /// End LSN and commit time of the last transaction completed in the batch.
    completed: Option<(u64, DateTime)>,
    /// Commit times of the transactions completed in the batch (for commit-to-store latency).
    commit_times: Vec<DateTime>,
    batch_opened: Option<Instant>,
    last_idle_advance: Instant,
}

impl Session<'_> {
    async fn run(&mut self, mapper: &mut Mapper<Database>) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        loop {
            let flush_at = self
                .batch_opened
                .map(|opened| opened + pipeline.settings.max_batch_delay);
            // Events that are already waiting come before the flush timer: under a backlog,
            // batches fill up to their size limits; when the stream is quiet, the timer bounds
            // how long a change waits.
            let event = tokio::select! {
                biased;
                () = pipeline.shutdown.wait() => {
                    self.flush(mapper).await?;
                    return Ok(());
                }
                event = self.stream.next() => event?.ok_or(SessionError::StreamEnded)?,
                () = sleep_until(flush_at) => {
                    self.flush(mapper).await?;
                    continue;
                }
            };
            self.handle(event, mapper).await?;
        }
    }

    async fn handle(
        &mut self,
        event: Event,
        mapper: &mut Mapper<Database>,
    ) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        match event {
            Event::Begin(begin) => {
                if begin.final_lsn < self.applied {
                    tracing::debug!(lsn = %read_model::lsn::format(begin.final_lsn), "skipping a transaction at or below the checkpoint");
                }
                self.open = Some(Open {
                    transaction: Transaction {
                        commit_lsn: begin.final_lsn,
                        commit_time: DateTime::from_millis(unix_millis(begin.commit_time_micros)),
                    },
                    skip: begin.final_lsn < self.applied,
                    changes: 0,
                });
            }
            Event::Data(bytes) => match decode::decode_bytes(&bytes) {
                Ok(Message::Relation(relation)) => mapper.relation(relation),
                Ok(
                    message @ (Message::Insert(_)
                    | Message::Update(_)
                    | Message::Delete(_)
                    | Message::Truncate(_)),
                ) => {
                    self.map(&message, mapper).await?;
                }
                Ok(_) => {}
                Err(error) => {
                    pipeline.metrics.error("decode");
                    let letter = DeadLetter {
                        table: "(undecodable)".to_string(),
                        operation: crate::mapping::Operation::Insert,
                        values: doc! { "bytes": hex(&bytes) },
                        error: error.to_string(),
                    };
                    self.dead_letter(letter)?;
                }
            },
            Event::Commit(commit) => {
                if let Some(open) = self.open.take().filter(|open| !open.skip) {
                    pipeline
                        .lag
                        .received(open.transaction.commit_time.timestamp_millis());
                    self.completed = Some((commit.end_lsn, open.transaction.commit_time));
                    self.commit_times.push(open.transaction.commit_time);
                    self.batch_opened.get_or_insert_with(Instant::now);
                }
            }
            Event::Message(message) if !message.transactional => {
                if message.prefix == heartbeat::PREFIX {
                    pipeline.lag.heartbeat(&message.content);
                }
                self.idle_advance(message.lsn).await?
            }
            Event::Message(message) if message.prefix == requests::PREFIX => {
                if self.open.as_ref().is_some_and(|open| !open.skip) {
                    self.request(&message.content, message.lsn, mapper).await?;
                }
            }
            Event::Message(_) => {}
            Event::KeepAlive { wal_end } => self.idle_advance(wal_end).await?,
        }
        if self.batch.changes() >= pipeline.settings.max_batch_changes
            || self.batch.bytes() >= pipeline.settings.max_batch_bytes
        {
            self.flush(mapper).await?;
        }
        Ok(())
    }

    async fn map(
        &mut self,
        message: &Message,
        mapper: &mut Mapper<Database>,
    ) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if open.skip {
            return Ok(());
        }
        open.changes += 1;
        let transaction = open.transaction;
        let batch = &mut self.batch;
        let mapped = {
            let mut retry = pipeline.retry();
            loop {
                match mapper.map(message, &transaction, batch).await {
                    Ok(value) => break value,
                    Err(error) => retry.failed("mapping", &error).await?,
                }
            }
        };
        if let Some((table, operation)) = mapped.change {
            pipeline
                .metrics
                .changes
                .with_label_values(&[table.name(), operation.name()])
                .inc();
        }
        if let Some(letter) = mapped.dead_letter {
            pipeline.metrics.error("mapping");
            self.dead_letter(letter)?;
        }
        self.batch_opened.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Carries out a support request (see [`requests`]) after writing what came before it.
    async fn request(
        &mut self,
        content: &[u8],
        lsn: u64,
        mapper: &mut Mapper<Database>,
    ) -> Result<(), SessionError> {
        let request: requests::Request = match serde_json::from_slice(content) {
            Ok(request) => request,
            Err(error) => {
                self.pipeline.metrics.error("request");
                tracing::warn!(%error, lsn = %read_model::lsn::format(lsn), "ignoring a malformed request");
                return Ok(());
            }
        };
        tracing::info!(?request, lsn = %read_model::lsn::format(lsn), "carrying out a request");
        self.flush(mapper).await?;
        requests::carry_out(self.pipeline, &request, lsn).await?;
        // The request wrote behind the mapper's caches.
        mapper.forget_lookups();
        Ok(())
    }

    /// Records a change that could not be mapped, with the writes of its batch; an error when
    /// the daemon is set to halt instead.
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SessionError> {
        let (lsn, number) = match &self.open {
            Some(open) => (open.transaction.commit_lsn, open.changes),
            None => (self.applied, 0),
        };
        if self.pipeline.settings.stop_on_dead_letter {
            return Err(SessionError::Halted(format!(
                "{} {} at {}: {}",
                letter.table,
                letter.operation.name(),
                read_model::lsn::format(lsn),
                letter.error
            )));
        }
        self.batch
            .push(self.pipeline.dead_letter(lsn, &number.to_string(), letter));
        Ok(())
    }

    /// Writes the batch, recomputes what it made stale, then checkpoints the last completed
    /// transaction.
    async fn flush(&mut self, mapper: &mut Mapper<Database>) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        pipeline
            .apply(&mut self.batch, mapper, self.applied, Mode::Update)
            .await?;
        self.batch_opened = None;

        let Some((lsn, commit_time)) = self.completed.take() else {
            return Ok(());
        };
        let (checkpoints, stream) = (self.checkpoints, &self.stream);
        {
            let mut retry = pipeline.retry();
            loop {
                match checkpoints.advance(stream, lsn, commit_time).await {
                    Ok(value) => break value,
                    Err(error) => retry.failed("checkpoint", &error).await?,
                }
            }
        };
        self.applied = lsn;
        pipeline.lag.caught_up();
        pipeline.metrics.applied_lsn.set(lsn as f64);
        let now = DateTime::now().timestamp_millis();
        for commit_time in self.commit_times.drain(..) {
            pipeline.metrics.transactions.inc();
            let seconds = (now - commit_time.timestamp_millis()).max(0) as f64 / 1000.0;
            pipeline.metrics.commit_to_store_seconds.observe(seconds);
        }
        Ok(())
    }

    /// While nothing is pending, moves the checkpoint to `lsn`, a position the server has sent
    /// everything before: WAL written to unpublished tables is released, and readers waiting
    /// for a position see it reached.
    async fn idle_advance(&mut self, lsn: u64) -> Result<(), SessionError> {
        let idle = self.open.is_none() && self.batch.is_empty() && self.completed.is_none();
        if !idle
            || lsn <= self.applied
            || self.last_idle_advance.elapsed() < Duration::from_millis(500)
        {
            return Ok(());
        }
        let pipeline = self.pipeline;
        tracing::debug!(lsn = %read_model::lsn::format(lsn), "advancing the idle checkpoint");
        let (checkpoints, stream) = (self.checkpoints, &self.stream);
        let now = DateTime::now();
        {
            let mut retry = pipeline.retry();
            loop {
                match checkpoints.advance(stream, lsn, now).await {
                    Ok(value) => break value,
                    Err(error) => retry.failed("checkpoint", &error).await?,
                }
            }
        };
        self.applied = lsn;
        self.last_idle_advance = Instant::now();
        pipeline.metrics.applied_lsn.set(lsn as f64);
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(4096)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
