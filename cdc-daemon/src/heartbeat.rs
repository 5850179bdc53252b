//! Heartbeats: with `heartbeat_interval_ms` set, the daemon emits a non-transactional logical
//! decoding message on the source at that interval, carrying its emission time. It travels the
//! same stream as the changes, so its arrival proves the stream moves (see [`lag`](crate::lag)),
//! and it lets the checkpoint advance — releasing WAL — even when no published table changes.

use std::time::Duration;

use deadpool_postgres::Pool;
use service_plumbing::shutdown::Shutdown;

use crate::metrics::{CdcMetrics, Stage};

/// The prefix of heartbeat messages.
pub const PREFIX: &str = "myhealth.cdc.heartbeat";

/// Emits a heartbeat every `interval` until `shutdown`.
pub async fn emit(pool: Pool, interval: Duration, metrics: CdcMetrics, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.wait() => return,
        }
        if let Err(error) = emit_one(&pool).await {
            metrics.error(Stage::Heartbeat);
            tracing::debug!(%error, "could not emit a heartbeat");
        }
    }
}

async fn emit_one(pool: &Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    client
        .execute(
            "SELECT pg_logical_emit_message(false, $1, \
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text)",
            &[&PREFIX],
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}
