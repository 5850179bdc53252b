//! Retrying one operation while what it needs (the store, mostly) is unavailable: every
//! failure is counted under its [`Stage`] and logged, then the operation is tried again after
//! an exponential backoff. The daemon never skips a write it could not make; it waits. Only
//! shutdown ends the waiting, once it has waited longer than its deadline ([`GaveUp`]): what
//! was not written is replayed from the checkpoint on the next start.

use std::time::{Duration, Instant};

use service_plumbing::shutdown::Shutdown;

use crate::backoff::Backoff;
use crate::metrics::{CdcMetrics, Stage};

/// First delay between attempts; doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Shutdown waited for an operation longer than its deadline.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shutting down while the store is unavailable")]
pub struct GaveUp;

/// The retry policy shared by every store operation of the daemon.
#[derive(Debug, Clone)]
pub struct Retry {
    metrics: CdcMetrics,
    shutdown: Shutdown,
    /// How long a triggered shutdown still waits for a failing operation.
    shutdown_deadline: Duration,
}

impl Retry {
    /// Retries counted in `metrics`, giving up `shutdown_deadline` after `shutdown` triggered.
    pub fn new(metrics: CdcMetrics, shutdown: Shutdown, shutdown_deadline: Duration) -> Self {
        Retry {
            metrics,
            shutdown,
            shutdown_deadline,
        }
    }

    /// Runs `attempt` until it succeeds, recording each failure as an error of `stage`.
    pub async fn until_ok<T, E, F, Fut>(&self, stage: Stage, mut attempt: F) -> Result<T, GaveUp>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures = self.failures(stage);
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => failures.wait(&error).await?,
            }
        }
    }

    /// The failures of one operation, for a caller whose attempts borrow its state mutably
    /// (which a closure given to [`Retry::until_ok`] cannot lend out).
    pub fn failures(&self, stage: Stage) -> Failures<'_> {
        Failures {
            retry: self,
            stage,
            backoff: Backoff::new(FIRST_DELAY, MAX_DELAY),
            shutdown_since: None,
        }
    }
}

/// The failures of one operation so far.
#[derive(Debug)]
pub struct Failures<'r> {
    retry: &'r Retry,
    stage: Stage,
    backoff: Backoff,
    shutdown_since: Option<Instant>,
}

impl Failures<'_> {
    /// Records `error`, then waits before the next attempt; [`GaveUp`] when shutdown has
    /// waited longer than its deadline.
    pub async fn wait(&mut self, error: &impl std::fmt::Display) -> Result<(), GaveUp> {
        let retry = self.retry;
        retry.metrics.error(self.stage);
        tracing::warn!(%error, stage = self.stage.label(), "operation failed; retrying");
        if retry.shutdown.is_triggered() {
            let since = *self.shutdown_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= retry.shutdown_deadline {
                return Err(GaveUp);
            }
        }
        tokio::time::sleep(self.backoff.next_delay()).await;
        Ok(())
    }
}
