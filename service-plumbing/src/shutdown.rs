//! Graceful shutdown: one [`Shutdown`] per process, cloned into every task that must stop.
//!
//! `main` creates it with [`Shutdown::listen_for_signals`] (SIGTERM, SIGINT); tests create it
//! with [`Shutdown::new`] and call [`Shutdown::trigger`]. It is passed down explicitly, never
//! kept in a global, so a test can run several services in one process.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Why the signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("failed to install the {signal} handler")]
pub struct ShutdownError {
    /// The signal's name.
    signal: &'static str,
    /// What went wrong.
    #[source]
    source: std::io::Error,
}

/// A cloneable shutdown flag: once triggered, every [`Shutdown::wait`] returns.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// `true` once shutdown was triggered. Each clone holds the sender, so the channel never
    /// closes while any waiter exists.
    sender: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::trigger`] starts.
    pub fn new() -> Self {
        let (sender, _receiver) = watch::channel(false);
        Self {
            sender: Arc::new(sender),
        }
    }

    /// A shutdown that SIGTERM or SIGINT starts (and [`Shutdown::trigger`] too).
    ///
    /// Must be called inside a tokio runtime: it spawns the task that waits for the signals.
    pub fn listen_for_signals() -> Result<Self, ShutdownError> {
        let mut terminate = signal(SignalKind::terminate()).map_err(|source| ShutdownError {
            signal: "SIGTERM",
            source,
        })?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|source| ShutdownError {
            signal: "SIGINT",
            source,
        })?;
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown signal received");
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Starts the shutdown; calling it again does nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Returns once the shutdown has started (at once if it already has).
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // `wait_for` fails only when the sender is dropped, which `self` prevents.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn trigger_wakes_every_clone() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        let waiting = tokio::spawn(async move { waiter.wait().await });
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        let joined = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(joined, Ok(Ok(()))));
        assert!(shutdown.is_triggered());
    }

    #[tokio::test]
    async fn wait_after_trigger_returns_at_once() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        shutdown.trigger();
        let waited = tokio::time::timeout(Duration::from_secs(5), shutdown.wait()).await;
        assert!(waited.is_ok());
    }
}
