//! The daemon's main loop, in the order the data flows:
//!
//! 1. [`replication`](crate::replication): events from the slot, starting at the checkpoint;
//! 2. [`decode`](crate::decode): pgoutput bytes → messages;
//! 3. [`mapping`](crate::mapping): row changes → document writes, collected in a batch;
//! 4. [`apply`](crate::apply) through the [`sink`](crate::sink): the batch → the store, when it
//!    is full or old enough, on a task of its own while the next batch is mapped;
//! 5. [`checkpoint`](crate::checkpoint): the last transaction completed in that batch → the
//!    store, once the store acknowledged the batch, then the slot.
//!
//! At most one batch is in flight: a full batch waits for the one before it, so memory stays at
//! two batches (the budget counts both) and the store gets batches in stream order. While a
//! batch is written, a lookup the mapping must read from the store waits for it
//! ([`Writing`](crate::apply::Writing)): the next batch never reads what the store has not been
//! given yet.
//!
//! Transactions arrive only after they committed (pgoutput v1), so changes are applied as they
//! come: a transaction of any size costs at most a batch of memory, and the checkpoint only
//! moves at transaction ends. After a crash, transactions at or below the checkpoint are
//! skipped and the rest replayed; every write is idempotent, so the store converges. While the
//! store is down, the loop retries the same batch and stops reading (backpressure); when
//! PostgreSQL goes away, it reconnects with backoff and resumes from the checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use service_plumbing::shutdown::Shutdown;
use tokio::task::{JoinError, JoinHandle};

use crate::apply::{SettledStore, Taken, Writer};
use crate::backoff::Backoff;
use crate::checkpoint::Checkpoints;
use crate::decode::{self, Message};
use crate::heartbeat;
use crate::lag::LagState;
use crate::mapping::{DeadLetter, Mapper, Origin, Transaction};
use crate::metrics::Stage;
use crate::replication::{self, Event, ReplicationError, Source, Stream, unix_millis};
use crate::retry::GaveUp;
use crate::sink::{self, Batch, Mode};
use crate::snapshot::{self, SnapshotError};
use crate::source_tables::SourceError;
use crate::support_requests::{self, RequestError};

/// Why a replication session ended, by what the daemon does next.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reconnect after a backoff and resume from the checkpoint.
    #[error(transparent)]
    Reconnect(#[from] Interruption),
    /// Stop streaming: the daemon does not go on by itself.
    #[error(transparent)]
    Halt(#[from] Halt),
}

/// A transient end of a session: the source went away or refused for now.
#[derive(Debug, thiserror::Error)]
pub enum Interruption {
    /// Replication failed or could not start (including another daemon holding the slot).
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The server ended the stream.
    #[error("the replication stream ended")]
    StreamEnded,
    /// Reading tables from the source (snapshot, support request) failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// A terminal end of streaming.
#[derive(Debug, thiserror::Error)]
pub enum Halt {
    /// Shutdown waited for the store longer than its deadline; the unwritten batch is replayed
    /// on the next start.
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
    /// A change could not be mapped and the daemon is set to stop (`stop_on_dead_letter`);
    /// it waits before the change until an operator restarts it.
    #[error("halted at a change that cannot be mapped (stop_on_dead_letter): {0}")]
    DeadLetter(String),
}

impl From<ReplicationError> for SessionError {
    fn from(error: ReplicationError) -> Self {
        Interruption::from(error).into()
    }
}

impl From<SourceError> for SessionError {
    fn from(error: SourceError) -> Self {
        Interruption::from(error).into()
    }
}

impl From<GaveUp> for SessionError {
    fn from(error: GaveUp) -> Self {
        Halt::from(error).into()
    }
}

impl From<SnapshotError> for SessionError {
    fn from(error: SnapshotError) -> Self {
        match error {
            SnapshotError::Replication(error) => error.into(),
            SnapshotError::Source(error) => error.into(),
            SnapshotError::GaveUp(error) => error.into(),
        }
    }
}

impl From<RequestError> for SessionError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Source(error) => error.into(),
            RequestError::GaveUp(error) => error.into(),
        }
    }
}

/// The streaming loop's parts: where it reads, how it writes, how much it may cache.
pub struct Pipeline {
    /// Where changes come from: the source database, its slot and publication.
    pub source: Source,
    /// Writes batches (and holds the store, the metrics and the retry policy).
    pub writer: Writer,
    /// Bytes the mapper's lookup caches keep resident together (the memory budget less the
    /// share of the two batches, the one mapped and the one written).
    pub cache_bytes: usize,
    /// Halt at the first change that cannot be mapped instead of recording a dead letter.
    pub stop_on_dead_letter: bool,
    /// Lag bookkeeping shared with the lag poller.
    pub lag: Arc<LagState>,
    /// Ends the loop; the last batch is still written (within the retry policy's deadline).
    pub shutdown: Shutdown,
}

impl Pipeline {
    /// Runs until shutdown: one replication session after another, backing off between them.
    ///
    /// The loop between sessions is not a [`Retry`](crate::retry::Retry): a session is not one
    /// operation to repeat but a stream to resume; a slot held by another daemon is a wait, not
    /// an error; and shutdown ends it at once (nothing is in flight between sessions), where a
    /// retried write still gets the shutdown deadline.
    pub async fn run(mut self) {
        let store = self.writer.database().clone();
        let limits = self
            .writer
            .retry()
            .until_ok(Stage::Sink, || sink::limits::detect(&store))
            .await;
        let Ok(limits) = limits else {
            return;
        };
        tracing::info!(
            statements = limits.statements,
            bytes = limits.bytes,
            "store command limits detected"
        );
        self.writer.set_limits(limits);
        let database = self.writer.database();
        let indexes = self
            .writer
            .retry()
            .until_ok(Stage::Indexes, || async {
                read_model::indexes::create(database).await
            })
            .await;
        if indexes.is_err() {
            return;
        }
        let checkpoints = Checkpoints::new(database.clone(), self.source.slot.clone());
        let mut mapper = Mapper::new(self.writer.lookups(), self.cache_bytes);
        let metrics = self.writer.metrics();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            let outcome = self.session(&checkpoints, &mut mapper, &mut backoff).await;
            metrics.connected.set(0);
            match outcome {
                Ok(()) => return,
                Err(SessionError::Reconnect(Interruption::Replication(
                    ReplicationError::SlotInUse(slot),
                ))) => {
                    tracing::info!(%slot, "the slot is held by another daemon; waiting to take over");
                }
                Err(SessionError::Reconnect(error)) => {
                    metrics.error(Stage::Replication);
                    tracing::warn!(error = %error, "replication session ended; reconnecting");
                }
                Err(SessionError::Halt(Halt::GaveUp(_))) => {
                    tracing::warn!(
                        "stopped with the last batch unwritten; it is replayed on restart"
                    );
                    return;
                }
                Err(SessionError::Halt(error @ Halt::DeadLetter(_))) => {
                    // Streaming stays stopped before the change (the slot keeps the WAL) until
                    // an operator fixes the cause and restarts the daemon.
                    metrics.halted.set(1);
                    tracing::error!(error = %error, "streaming halted; fix the change's cause, then restart");
                    self.shutdown.wait().await;
                    return;
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
        mapper: &mut Mapper<SettledStore>,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let retry = self.writer.retry();
        let checkpoint = retry
            .until_ok(Stage::Checkpoint, || checkpoints.load())
            .await?;
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
                let copied = snapshot::copy(
                    &self.writer,
                    &self.source,
                    &exported,
                    mapper,
                    &self.shutdown,
                )
                .await?;
                if !copied {
                    return Ok(());
                }
                retry
                    .until_ok(Stage::Checkpoint, || async {
                        checkpoints.start_at(exported.consistent_lsn).await
                    })
                    .await?;
                exported.consistent_lsn
            }
        };
        let stream = connection.start().await?;
        tracing::info!(slot = %self.source.slot, from = %read_model::lsn::format(applied), "streaming");
        let metrics = self.writer.metrics();
        metrics.connected.set(1);
        metrics.applied_lsn.set(applied as f64);
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
            in_flight: None,
            last_idle_advance: Instant::now(),
        };
        let outcome = session.run(mapper).await;
        // A batch still being written ends before the next session replays from the
        // checkpoint, so that two sessions' writes never interleave; the replay covers it.
        if let Some(task) = session.in_flight.take() {
            let _ = joined(task.await);
        }
        session.stream.close().await;
        outcome
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
    /// The batch being written on its own task.
    in_flight: Option<JoinHandle<Result<Written, GaveUp>>>,
    last_idle_advance: Instant,
}

/// What a batch written on its own task completed.
struct Written {
    /// End LSN and commit time of its last completed transaction, now the stored checkpoint.
    checkpoint: Option<(u64, DateTime)>,
    /// Commit times of the transactions it completed.
    commit_times: Vec<DateTime>,
}

impl Session<'_> {
    async fn run(&mut self, mapper: &mut Mapper<SettledStore>) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        let max_batch_delay = pipeline.writer.settings().max_batch_delay;
        loop {
            let flush_at = self.batch_opened.map(|opened| opened + max_batch_delay);
            // Events that are already waiting come before the flush timer: under a backlog,
            // batches fill up to their size limits; when the stream is quiet, the timer bounds
            // how long a change waits.
            let event = tokio::select! {
                biased;
                () = pipeline.shutdown.wait() => {
                    self.flush(mapper).await?;
                    self.wait_written().await?;
                    return Ok(());
                }
                written = in_flight(&mut self.in_flight) => {
                    self.in_flight = None;
                    self.written(joined(written)?);
                    continue;
                }
                event = self.stream.next() => event?.ok_or(Interruption::StreamEnded)?,
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
        mapper: &mut Mapper<SettledStore>,
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
                    self.change(&message, mapper).await?;
                }
                Ok(_) => {}
                Err(error) => {
                    pipeline.writer.metrics().error(Stage::Decode);
                    let letter = DeadLetter {
                        origin: Origin::Undecodable,
                        operation: None,
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
            Event::Message(message) if message.prefix == support_requests::PREFIX => {
                if self.open.as_ref().is_some_and(|open| !open.skip) {
                    self.request(&message.content, message.lsn, mapper).await?;
                }
            }
            Event::Message(_) => {}
            Event::KeepAlive { wal_end } => self.idle_advance(wal_end).await?,
        }
        if pipeline.writer.is_full(&self.batch) {
            self.flush(mapper).await?;
        }
        Ok(())
    }

    /// Maps one row change of the open transaction into the batch (nothing for a transaction
    /// at or below the checkpoint), counting it and recording what cannot be mapped.
    async fn change(
        &mut self,
        message: &Message,
        mapper: &mut Mapper<SettledStore>,
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
        let writer = &pipeline.writer;
        let mapped = writer
            .map_retrying(mapper, message, &transaction, &mut self.batch)
            .await?;
        if let Some((table, operation)) = mapped.change {
            writer
                .metrics()
                .changes
                .with_label_values(&[table.name(), operation.name()])
                .inc();
        }
        if let Some(letter) = mapped.dead_letter {
            writer.metrics().error(Stage::Mapping);
            self.dead_letter(letter)?;
        }
        self.batch_opened.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Carries out a support request (see [`support_requests`]) after writing what came before
    /// it.
    async fn request(
        &mut self,
        content: &[u8],
        lsn: u64,
        mapper: &mut Mapper<SettledStore>,
    ) -> Result<(), SessionError> {
        let pipeline = self.pipeline;
        let request: support_requests::Request = match serde_json::from_slice(content) {
            Ok(request) => request,
            Err(error) => {
                pipeline.writer.metrics().error(Stage::Request);
                tracing::warn!(%error, lsn = %read_model::lsn::format(lsn), "ignoring a malformed request");
                return Ok(());
            }
        };
        tracing::info!(?request, lsn = %read_model::lsn::format(lsn), "carrying out a request");
        self.flush(mapper).await?;
        self.wait_written().await?;
        // The request writes behind the mapper's caches, and its own mapper takes their share
        // of the memory budget meanwhile.
        mapper.forget_lookups();
        support_requests::carry_out(
            &pipeline.writer,
            &pipeline.source,
            pipeline.cache_bytes,
            &request,
            lsn,
        )
        .await?;
        Ok(())
    }

    /// Records a change that could not be mapped, with the writes of its batch; an error when
    /// the daemon is set to halt instead.
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SessionError> {
        let (lsn, number) = match &self.open {
            Some(open) => (open.transaction.commit_lsn, open.changes),
            None => (self.applied, 0),
        };
        if self.pipeline.stop_on_dead_letter {
            let operation = letter
                .operation
                .map_or("change", |operation| operation.name());
            return Err(Halt::DeadLetter(format!(
                "{} {operation} at {}: {}",
                letter.origin.label(),
                read_model::lsn::format(lsn),
                letter.error
            ))
            .into());
        }
        self.batch.push(
            self.pipeline
                .writer
                .dead_letter(lsn, &number.to_string(), letter),
        );
        Ok(())
    }

    /// Hands the batch to a task of its own, once the batch before it is written: the task
    /// writes it, settles what it made stale in patients' `latest`, then stores the checkpoint
    /// of the last transaction it completed. The stream is told that checkpoint when the task
    /// is seen to end ([`Session::written`]).
    async fn flush(&mut self, mapper: &mut Mapper<SettledStore>) -> Result<(), SessionError> {
        self.batch_opened = None;
        if self.batch.is_empty() && self.completed.is_none() {
            return Ok(());
        }
        self.wait_written().await?;
        // Everything written before this batch is in the store now: the caches may let it go.
        mapper.end_batch();
        let taken = Taken::from(&mut self.batch, mapper);
        let checkpoint = self.completed.take();
        let commit_times = std::mem::take(&mut self.commit_times);
        let writer = self.pipeline.writer.clone();
        let checkpoints = self.checkpoints.clone();
        let applied = self.applied;
        let writing = writer.writing().await;
        self.in_flight = Some(tokio::spawn(async move {
            let _writing = writing;
            writer.write_taken(taken, applied, Mode::Update).await?;
            if let Some((lsn, commit_time)) = checkpoint {
                store_checkpoint(&writer, &checkpoints, lsn, commit_time).await?;
            }
            Ok(Written {
                checkpoint,
                commit_times,
            })
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any, and takes in what it completed.
    async fn wait_written(&mut self) -> Result<(), GaveUp> {
        if let Some(task) = self.in_flight.take() {
            self.written(joined(task.await)?);
        }
        Ok(())
    }

    /// Takes in what a written batch completed: its checkpoint goes to the slot.
    fn written(&mut self, written: Written) {
        let Some((lsn, _)) = written.checkpoint else {
            return;
        };
        self.confirm(lsn);
        let pipeline = self.pipeline;
        pipeline.lag.caught_up();
        let metrics = pipeline.writer.metrics();
        let now = DateTime::now().timestamp_millis();
        for commit_time in written.commit_times {
            metrics.transactions.inc();
            let seconds = (now - commit_time.timestamp_millis()).max(0) as f64 / 1000.0;
            metrics.commit_to_store_seconds.observe(seconds);
        }
    }

    /// While nothing is pending, moves the checkpoint to `lsn`, a position the server has sent
    /// everything before: WAL written to unpublished tables is released, and readers waiting
    /// for a position see it reached.
    async fn idle_advance(&mut self, lsn: u64) -> Result<(), SessionError> {
        let idle = self.open.is_none()
            && self.batch.is_empty()
            && self.completed.is_none()
            && self.in_flight.is_none();
        if !idle
            || lsn <= self.applied
            || self.last_idle_advance.elapsed() < Duration::from_millis(500)
        {
            return Ok(());
        }
        tracing::debug!(lsn = %read_model::lsn::format(lsn), "advancing the idle checkpoint");
        self.checkpoint(lsn, DateTime::now()).await?;
        self.last_idle_advance = Instant::now();
        Ok(())
    }

    /// Stores `lsn` (reached at `commit_time`) as the checkpoint, then confirms it to the slot.
    async fn checkpoint(&mut self, lsn: u64, commit_time: DateTime) -> Result<(), GaveUp> {
        store_checkpoint(&self.pipeline.writer, self.checkpoints, lsn, commit_time).await?;
        self.confirm(lsn);
        Ok(())
    }

    /// Tells the slot that everything before `lsn` is in the store (stored as the checkpoint
    /// first: a crash between the two replays a little, which is harmless).
    fn confirm(&mut self, lsn: u64) {
        self.stream.confirm(lsn);
        self.applied = lsn;
        self.pipeline.writer.metrics().applied_lsn.set(lsn as f64);
    }
}

/// Stores `lsn` (reached at `commit_time`) as the checkpoint, retrying while the store is
/// unavailable.
async fn store_checkpoint(
    writer: &Writer,
    checkpoints: &Checkpoints,
    lsn: u64,
    commit_time: DateTime,
) -> Result<(), GaveUp> {
    writer
        .retry()
        .until_ok(Stage::Checkpoint, || async {
            checkpoints.advance(lsn, commit_time).await
        })
        .await
}

/// The end of the batch in flight; never, if there is none.
async fn in_flight(
    task: &mut Option<JoinHandle<Result<Written, GaveUp>>>,
) -> Result<Result<Written, GaveUp>, JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// A write task's outcome: a panic in it goes on in the caller, as if it had been written
/// in place; a task cancelled by the runtime shutting down gave up.
fn joined(outcome: Result<Result<Written, GaveUp>, JoinError>) -> Result<Written, GaveUp> {
    match outcome {
        Ok(written) => written,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(GaveUp),
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
