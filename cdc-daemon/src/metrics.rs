//! The daemon's metrics, served on its operations port. Names are constants so that the
//! dashboards, alert rules and tests use the same strings.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
};
use service_plumbing::metrics::{Metrics, MetricsError};

/// The store's checkpoint: end LSN of the last applied source transaction (as a number).
pub const APPLIED_LSN: &str = "cdc_applied_lsn";
/// The source server's current WAL position (as a number), polled.
pub const SERVER_WAL_LSN: &str = "cdc_server_wal_lsn";
/// Bytes of source WAL not yet applied: server position minus checkpoint.
pub const LAG_BYTES: &str = "cdc_lag_bytes";
/// Age of the oldest committed but unapplied change the daemon has received; 0 when caught up.
pub const LAG_SECONDS: &str = "cdc_lag_seconds";
/// WAL the slot keeps on the source's disk (server position minus the slot's restart LSN).
pub const SLOT_RETAINED_WAL_BYTES: &str = "cdc_slot_retained_wal_bytes";
/// Source transactions applied.
pub const TRANSACTIONS_TOTAL: &str = "cdc_transactions_total";
/// Row changes mapped, by table and operation.
pub const CHANGES_TOTAL: &str = "cdc_changes_total";
/// Statements sent to the store, by collection.
pub const STORE_WRITES_TOTAL: &str = "cdc_store_writes_total";
/// Row changes per flushed batch.
pub const BATCH_CHANGES: &str = "cdc_batch_changes";
/// Duration of one store write command.
pub const STORE_WRITE_SECONDS: &str = "cdc_store_write_duration_seconds";
/// From a source commit to its checkpoint in the store.
pub const COMMIT_TO_STORE_SECONDS: &str = "cdc_commit_to_store_seconds";
/// Errors by [`Stage`].
pub const ERRORS_TOTAL: &str = "cdc_errors_total";
/// Changes recorded as dead letters, by table.
pub const DEAD_LETTERS_TOTAL: &str = "cdc_dead_letters_total";
/// Writes the store skipped because the document was already newer (written by a later change:
/// a replay after a crash, or a stale daemon's late batch), by collection.
pub const STALE_WRITES_TOTAL: &str = "cdc_stale_writes_total";
/// 1 while the daemon holds the slot and streams, else 0.
pub const CONNECTED: &str = "cdc_connected";
/// 1 while the initial snapshot runs.
pub const SNAPSHOT_RUNNING: &str = "cdc_snapshot_running";
/// Rows copied by the initial snapshot, by table.
pub const SNAPSHOT_ROWS_TOTAL: &str = "cdc_snapshot_rows_total";
/// The planner's estimate of each table's rows when the snapshot started.
pub const SNAPSHOT_ROWS_ESTIMATED: &str = "cdc_snapshot_rows_estimated";
/// 1 when streaming halted at a change it cannot map (`stop_on_dead_letter`).
pub const HALTED: &str = "cdc_halted";
/// Seconds since the newest heartbeat the daemon has applied was emitted (with heartbeats on).
pub const HEARTBEAT_AGE_SECONDS: &str = "cdc_heartbeat_age_seconds";

/// Handles to every daemon metric.
#[derive(Debug, Clone)]
pub struct CdcMetrics {
    /// See [`APPLIED_LSN`].
    pub applied_lsn: Gauge,
    /// See [`SERVER_WAL_LSN`].
    pub server_wal_lsn: Gauge,
    /// See [`LAG_BYTES`].
    pub lag_bytes: Gauge,
    /// See [`LAG_SECONDS`].
    pub lag_seconds: Gauge,
    /// See [`SLOT_RETAINED_WAL_BYTES`].
    pub retained_wal_bytes: Gauge,
    /// See [`TRANSACTIONS_TOTAL`].
    pub transactions: IntCounter,
    /// See [`CHANGES_TOTAL`].
    pub changes: IntCounterVec,
    /// See [`STORE_WRITES_TOTAL`].
    pub store_writes: IntCounterVec,
    /// See [`BATCH_CHANGES`].
    pub batch_changes: Histogram,
    /// See [`STORE_WRITE_SECONDS`].
    pub store_write_seconds: Histogram,
    /// See [`COMMIT_TO_STORE_SECONDS`].
    pub commit_to_store_seconds: Histogram,
    /// See [`ERRORS_TOTAL`].
    pub errors: IntCounterVec,
    /// See [`DEAD_LETTERS_TOTAL`].
    pub dead_letters: IntCounterVec,
    /// See [`STALE_WRITES_TOTAL`].
    pub stale_writes: IntCounterVec,
    /// See [`CONNECTED`].
    pub connected: IntGauge,
    /// See [`SNAPSHOT_RUNNING`].
    pub snapshot_running: IntGauge,
    /// See [`SNAPSHOT_ROWS_TOTAL`].
    pub snapshot_rows: IntCounterVec,
    /// See [`SNAPSHOT_ROWS_ESTIMATED`].
    pub snapshot_rows_estimated: GaugeVec,
    /// See [`HALTED`].
    pub halted: IntGauge,
    /// See [`HEARTBEAT_AGE_SECONDS`].
    pub heartbeat_age_seconds: Gauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl CdcMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Result<Self, MetricsError> {
        let gauge = |name: &str, help: &str| Gauge::new(name, help).map_err(MetricsError::Register);
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map_err(MetricsError::Register)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .map_err(MetricsError::Register)
        };
        let created = CdcMetrics {
            applied_lsn: gauge(
                APPLIED_LSN,
                "End LSN of the last source transaction applied to the store.",
            )?,
            server_wal_lsn: gauge(SERVER_WAL_LSN, "Current WAL position of the source server.")?,
            lag_bytes: gauge(
                LAG_BYTES,
                "Bytes of source WAL not yet applied to the store.",
            )?,
            lag_seconds: gauge(
                LAG_SECONDS,
                "Age of the oldest committed source change not yet applied; 0 when caught up.",
            )?,
            retained_wal_bytes: gauge(
                SLOT_RETAINED_WAL_BYTES,
                "WAL kept on the source's disk for the slot.",
            )?,
            transactions: IntCounter::new(TRANSACTIONS_TOTAL, "Source transactions applied.")
                .map_err(MetricsError::Register)?,
            changes: counter_vec(
                CHANGES_TOTAL,
                "Row changes mapped, by table and operation.",
                &["table", "operation"],
            )?,
            store_writes: counter_vec(
                STORE_WRITES_TOTAL,
                "Statements sent to the store, by collection.",
                &["collection"],
            )?,
            batch_changes: histogram(
                BATCH_CHANGES,
                "Row changes per flushed batch.",
                vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
            )?,
            store_write_seconds: histogram(
                STORE_WRITE_SECONDS,
                "Duration of one store write command.",
                LATENCY_BUCKETS.to_vec(),
            )?,
            commit_to_store_seconds: histogram(
                COMMIT_TO_STORE_SECONDS,
                "Time from a source commit to its checkpoint in the store.",
                LATENCY_BUCKETS.to_vec(),
            )?,
            errors: counter_vec(ERRORS_TOTAL, "Errors by pipeline stage.", &["stage"])?,
            dead_letters: counter_vec(
                DEAD_LETTERS_TOTAL,
                "Changes recorded as dead letters, by table.",
                &["table"],
            )?,
            stale_writes: counter_vec(
                STALE_WRITES_TOTAL,
                "Writes skipped because the document was already newer, by collection.",
                &["collection"],
            )?,
            connected: IntGauge::new(CONNECTED, "1 while the daemon holds the slot and streams.")
                .map_err(MetricsError::Register)?,
            snapshot_running: IntGauge::new(SNAPSHOT_RUNNING, "1 while the initial snapshot runs.")
                .map_err(MetricsError::Register)?,
            snapshot_rows: counter_vec(
                SNAPSHOT_ROWS_TOTAL,
                "Rows copied by the initial snapshot, by table.",
                &["table"],
            )?,
            snapshot_rows_estimated: GaugeVec::new(
                Opts::new(
                    SNAPSHOT_ROWS_ESTIMATED,
                    "Estimated rows per table when the initial snapshot started.",
                ),
                &["table"],
            )
            .map_err(MetricsError::Register)?,
            halted: IntGauge::new(
                HALTED,
                "1 when streaming halted at a change it cannot map (stop_on_dead_letter).",
            )
            .map_err(MetricsError::Register)?,
            heartbeat_age_seconds: gauge(
                HEARTBEAT_AGE_SECONDS,
                "Seconds since the newest applied heartbeat was emitted on the source.",
            )?,
        };
        metrics.register(Box::new(created.applied_lsn.clone()))?;
        metrics.register(Box::new(created.server_wal_lsn.clone()))?;
        metrics.register(Box::new(created.lag_bytes.clone()))?;
        metrics.register(Box::new(created.lag_seconds.clone()))?;
        metrics.register(Box::new(created.retained_wal_bytes.clone()))?;
        metrics.register(Box::new(created.transactions.clone()))?;
        metrics.register(Box::new(created.changes.clone()))?;
        metrics.register(Box::new(created.store_writes.clone()))?;
        metrics.register(Box::new(created.batch_changes.clone()))?;
        metrics.register(Box::new(created.store_write_seconds.clone()))?;
        metrics.register(Box::new(created.commit_to_store_seconds.clone()))?;
        metrics.register(Box::new(created.errors.clone()))?;
        metrics.register(Box::new(created.dead_letters.clone()))?;
        metrics.register(Box::new(created.stale_writes.clone()))?;
        metrics.register(Box::new(created.connected.clone()))?;
        metrics.register(Box::new(created.snapshot_running.clone()))?;
        metrics.register(Box::new(created.snapshot_rows.clone()))?;
        metrics.register(Box::new(created.snapshot_rows_estimated.clone()))?;
        metrics.register(Box::new(created.halted.clone()))?;
        metrics.register(Box::new(created.heartbeat_age_seconds.clone()))?;
        Ok(created)
    }

    /// Counts an error of `stage`.
    pub fn error(&self, stage: Stage) {
        self.errors.with_label_values(&[stage.label()]).inc();
    }
}

/// Where an error happened: the `stage` label of [`ERRORS_TOTAL`] and the `stage` field of the
/// daemon's warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Creating the store's indexes at start failed; retried.
    Indexes,
    /// A replication session failed or could not start (source down, slot problem); the daemon
    /// reconnects and resumes from its checkpoint.
    Replication,
    /// Bytes from the stream are not pgoutput this daemon understands; recorded as a dead letter.
    Decode,
    /// Reading a lookup or settling patients' `latest` failed (retried), or a change cannot be
    /// mapped (recorded as a dead letter).
    Mapping,
    /// A store write failed (retried), or the store refused one write (recorded as a dead
    /// letter).
    Sink,
    /// Reading or storing the checkpoint failed; retried.
    Checkpoint,
    /// Emptying the read model before an initial snapshot failed; retried.
    Snapshot,
    /// A support request (resync, replay) is malformed, or the dead letters of a replay cannot
    /// be read; the request is skipped.
    Request,
    /// Emitting a heartbeat on the source failed; the next interval tries again.
    Heartbeat,
}

impl Stage {
    /// The value of the `stage` label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Indexes => "indexes",
            Stage::Replication => "replication",
            Stage::Decode => "decode",
            Stage::Mapping => "mapping",
            Stage::Sink => "sink",
            Stage::Checkpoint => "checkpoint",
            Stage::Snapshot => "snapshot",
            Stage::Request => "request",
            Stage::Heartbeat => "heartbeat",
        }
    }
}
