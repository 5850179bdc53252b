//! Readiness: the dependency checks behind `GET /readyz`.
//!
//! A service names each dependency and supplies an async check returning `Err(reason)` when the
//! dependency is unusable. All checks run concurrently, each on its own task, and the probe waits
//! for them only until a shared deadline. A check that misses the deadline counts as failed and
//! is left to finish on its own: its future is never dropped half-way, which database drivers
//! (the MongoDB driver in particular) do not tolerate.

use std::sync::Arc;
use std::time::Duration;

use super::response::BoxFuture;

/// An async dependency check: `Ok(())` when usable, else a short reason safe to show.
type Check = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

/// The named dependency checks of a service. Cloning is cheap.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

/// A dependency whose check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCheck {
    /// The dependency's name, as given to [`Readiness::with_check`].
    pub name: &'static str,
    /// Why it failed.
    pub reason: String,
}

impl Readiness {
    /// No checks: the service is ready whenever it is alive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the check of dependency `name` (e.g. `"postgres"`).
    pub fn with_check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()) as BoxFuture<_>)));
        self
    }

    /// Runs every check concurrently and returns the failed ones, in the order they were added.
    /// A check that has not finished within `timeout` fails with reason "timed out".
    pub async fn run(&self, timeout: Duration) -> Vec<FailedCheck> {
        let deadline = tokio::time::Instant::now() + timeout;
        let running: Vec<_> = self
            .checks
            .iter()
            .map(|(name, check)| (*name, tokio::spawn(check())))
            .collect();
        let mut failed = Vec::new();
        for (name, handle) in running {
            let reason = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(reason))) => reason,
                Ok(Err(join_error)) => {
                    tracing::error!(dependency = name, error = %join_error, "readiness check panicked");
                    "check failed unexpectedly".to_owned()
                }
                Err(_elapsed) => format!("timed out after {} ms", timeout.as_millis()),
            };
            failed.push(FailedCheck { name, reason });
        }
        failed
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(name, _)| name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_checks_means_ready() {
        assert!(
            Readiness::new()
                .run(Duration::from_secs(1))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn failing_slow_and_panicking_checks_are_reported_in_order() {
        let readiness = Readiness::new()
            .with_check("ok", || async { Ok(()) })
            .with_check("down", || async { Err("connection refused".to_owned()) })
            .with_check("slow", || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .with_check("broken", || async { panic!("bug in check") });
        let started = std::time::Instant::now();
        let failed = readiness.run(Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let names: Vec<_> = failed.iter().map(|check| check.name).collect();
        assert_eq!(names, ["down", "slow", "broken"]);
        assert_eq!(failed[0].reason, "connection refused");
        assert!(failed[1].reason.contains("timed out"));
    }
}
