//! How far the store is behind the source, for SREs: lag in seconds from the pipeline's own
//! bookkeeping, lag in bytes and the slot's retained WAL polled from `pg_replication_slots`
//! (a catalog read every few seconds, not a query of the replicated tables).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
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
}

impl LagState {
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

    /// Seconds since the oldest unapplied commit, 0 when caught up.
    pub fn seconds(&self, now_millis: i64) -> f64 {
        match self.oldest_unapplied_millis.load(Ordering::Relaxed) {
            0 => 0.0,
            since => (now_millis - since).max(0) as f64 / 1000.0,
        }
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
        let now = mongodb::bson::DateTime::now().timestamp_millis();
        metrics.lag_seconds.set(state.seconds(now));
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
}
