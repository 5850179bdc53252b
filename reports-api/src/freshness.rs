//! How fresh the store is: the daemon's checkpoint, polled in the background so that requests
//! cost no extra round trip. Every response says the position it was served at (`X-Data-LSN`);
//! a request with `min_lsn` (a `commit_lsn` the ingest API returned) waits up to `wait_ms` for
//! the checkpoint to pass it — read-your-upload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mongodb::Database;
use service_plumbing::shutdown::Shutdown;

/// How often the checkpoint is read.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The last checkpoint seen (0 before the first read).
#[derive(Debug, Clone, Default)]
pub struct Watch {
    lsn: Arc<AtomicU64>,
}

impl Watch {
    /// The position the store is known to have reached.
    pub fn lsn(&self) -> u64 {
        self.lsn.load(Ordering::Relaxed)
    }

    /// Waits up to `wait` for the store to reach `min_lsn`; true if it has.
    pub async fn reached(&self, min_lsn: u64, wait: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.lsn() >= min_lsn {
                return true;
            }
            if started.elapsed() >= wait {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10).min(wait)).await;
        }
    }

    /// Reads the checkpoint of `slot` until `shutdown`.
    pub async fn poll(self, database: Database, slot: String, shutdown: Shutdown) {
        loop {
            match read_model::checkpoint::load(&database, &slot).await {
                Ok(Some(checkpoint)) => self.lsn.fetch_max(checkpoint.lsn, Ordering::Relaxed),
                Ok(None) => 0,
                Err(error) => {
                    tracing::debug!(%error, "could not read the checkpoint");
                    0
                }
            };
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = shutdown.wait() => return,
            }
        }
    }
}
