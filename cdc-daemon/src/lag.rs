//! How far the store is behind the source, for SREs: lag in seconds from the pipeline's own
//! bookkeeping, lag in bytes and the slot's retained WAL polled from `pg_replication_slots`
//! (a catalog read every few seconds, not a query of the replicated tables).
//!
//! The pipeline only knows the age of what it received: a stream that stalls before anything
//! arrives looks caught up. With heartbeats on (see [`heartbeat`](crate::heartbeat)), the age
//! of the newest heartbeat that came through, less one interval, is a lower bound of the lag
//! that needs no change to happen, and the lag reported is the larger of the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use mongodb::bson::DateTime;
use service_plumbing::shutdown::Shutdown;

use crate::metrics::CdcMetrics;

/// How often the source is polled.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Shared between the pipeline, which records, and the poller, which publishes.
#[derive(Debug, Default)]
pub struct LagState {
    /// Unix milliseconds of the commit time of the oldest transaction received but not yet
    /// checkpointed; 0 when there is none.
    oldest_unapplied_millis: AtomicI64,
    /// Emission time (Unix milliseconds) of the newest heartbeat received; 0 before the first.
    heartbeat_millis: AtomicI64,
    /// The heartbeat interval in milliseconds; 0 when heartbeats are off.
    heartbeat_interval_millis: i64,
}

impl LagState {
    /// Lag bookkeeping for heartbeats every `interval` (zero: none).
    pub fn new(heartbeat_interval: Duration) -> Self {
        LagState {
            heartbeat_interval_millis: i64::try_from(heartbeat_interval.as_millis())
                .unwrap_or(i64::MAX),
            ..LagState::default()
        }
    }

    /// A heartbeat arrived; its content is its emission time in Unix milliseconds.
    pub fn heartbeat(&self, content: &[u8]) {
        let emitted = std::str::from_utf8(content)
            .ok()
            .and_then(|text| text.parse::<i64>().ok());
        if let Some(emitted) = emitted {
            self.heartbeat_millis.fetch_max(emitted, Ordering::Relaxed);
        }
    }

    /// Seconds since the newest heartbeat received was emitted; `None` before the first.
    pub fn heartbeat_age(&self, now_millis: i64) -> Option<f64> {
        match self.heartbeat_millis.load(Ordering::Relaxed) {
            0 => None,
            emitted => Some((now_millis - emitted).max(0) as f64 / 1000.0),
        }
    }

    /// A transaction committed at `commit_millis` was received and is not applied yet.
    pub fn received(&self, commit_millis: i64) {
        let _ = self.oldest_unapplied_millis.compare_exchange(
            0,
            commit_millis.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Everything received is applied.
    pub fn caught_up(&self) {
        self.oldest_unapplied_millis.store(0, Ordering::Relaxed);
    }

    /// Seconds since the oldest unapplied commit (0 when caught up), or, when larger, the age
    /// of the newest heartbeat less one interval.
    pub fn seconds(&self, now_millis: i64) -> f64 {
        let received = match self.oldest_unapplied_millis.load(Ordering::Relaxed) {
            0 => 0.0,
            since => (now_millis - since).max(0) as f64 / 1000.0,
        };
        let heartbeat = match (
            self.heartbeat_interval_millis,
            self.heartbeat_age(now_millis),
        ) {
            (0, _) | (_, None) => 0.0,
            (interval, Some(age)) => (age - interval as f64 / 1000.0).max(0.0),
        };
        received.max(heartbeat)
    }
}

/// Publishes lag metrics until `shutdown`.
pub async fn poll(
    pool: Pool,
    slot: String,
    state: Arc<LagState>,
    metrics: CdcMetrics,
    shutdown: Shutdown,
) {
    loop {
        let now = DateTime::now().timestamp_millis();
        metrics.lag_seconds.set(state.seconds(now));
        if let Some(age) = state.heartbeat_age(now) {
            metrics.heartbeat_age_seconds.set(age);
        }
        if let Err(error) = poll_source(&pool, &slot, &metrics).await {
            tracing::debug!(%error, "could not poll the source for lag metrics");
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            () = shutdown.wait() => return,
        }
    }
}

async fn poll_source(pool: &Pool, slot: &str, metrics: &CdcMetrics) -> Result<(), String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    let row = client
        .query_one(
            "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8, \
                    (SELECT (pg_current_wal_lsn() - restart_lsn)::float8 \
                     FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|error| error.to_string())?;
    let server: f64 = row.get(0);
    metrics.server_wal_lsn.set(server);
    metrics
        .retained_wal_bytes
        .set(row.get::<_, Option<f64>>(1).unwrap_or(0.0));
    metrics
        .lag_bytes
        .set((server - metrics.applied_lsn.get()).max(0.0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_unapplied_commit() {
        let state = LagState::default();
        assert_eq!(state.seconds(10_000), 0.0);
        state.received(4_000);
        state.received(6_000);
        assert_eq!(state.seconds(10_000), 6.0);
        state.caught_up();
        assert_eq!(state.seconds(10_000), 0.0);
    }

    #[test]
    fn a_late_heartbeat_shows_lag_that_nothing_received_would_hide() {
        let state = LagState::new(Duration::from_secs(1));
        state.heartbeat(b"3000");
        assert_eq!(state.heartbeat_age(10_000), Some(7.0));
        assert_eq!(state.seconds(10_000), 6.0);
        state.heartbeat(b"9500");
        state.heartbeat(b"not a number");
        assert_eq!(state.seconds(10_000), 0.0);
    }
}
