//! Readiness: the dependency checks behind `GET /readyz`.
//!
//! A service names each dependency and supplies an async check returning `Err(reason)` when the
//! dependency is unusable. All checks run concurrently, each on its own task, and the probe waits
//! for them only until a shared deadline. A check that misses the deadline counts as failed and
//! is left to finish on its own: its future is never dropped half-way, which database drivers
//! (the MongoDB driver in particular) do not tolerate. While it is still running no second check
//! of that dependency is started, so a hanging dependency never piles up checks.
//!
//! `/readyz` answers from [`Readiness::cached`]: the checks run at most once per interval
//! however many probes arrive, so a flood of unauthenticated probes costs no database work.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::response::BoxFuture;

/// An async dependency check: `Ok(())` when usable, else a reason for the log.
type Check = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

/// The named dependency checks of a service. Cloning is cheap (clones share the cache).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
    state: Arc<Mutex<State>>,
}

/// The last result and the checks still running past their deadline, by dependency index.
#[derive(Default)]
struct State {
    last: Option<(Instant, Vec<FailedCheck>)>,
    running: Vec<Option<JoinHandle<Result<(), String>>>>,
}

/// A dependency whose check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCheck {
    /// The dependency's name, as given to [`Readiness::with_check`].
    pub name: &'static str,
    /// Why it failed, as the check said: may name hosts or users, so it is logged, not shown.
    pub reason: String,
    /// Whether it failed by missing the deadline (rather than answering an error).
    pub timed_out: bool,
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

    /// The result of the last run if it is younger than `interval`, else a new [`Self::run`].
    /// Concurrent callers wait for the one run in progress instead of starting their own.
    pub async fn cached(&self, interval: Duration, timeout: Duration) -> Vec<FailedCheck> {
        let mut state = self.state.lock().await;
        if let Some((at, failed)) = &state.last
            && at.elapsed() < interval
        {
            return failed.clone();
        }
        let failed = self.run_locked(&mut state, timeout).await;
        state.last = Some((Instant::now(), failed.clone()));
        failed
    }

    /// Runs every check concurrently and returns the failed ones, in the order they were added.
    /// A check that has not finished within `timeout` fails as timed out; a check still running
    /// from an earlier call is not started again and fails the same way.
    pub async fn run(&self, timeout: Duration) -> Vec<FailedCheck> {
        let mut state = self.state.lock().await;
        self.run_locked(&mut state, timeout).await
    }

    async fn run_locked(&self, state: &mut State, timeout: Duration) -> Vec<FailedCheck> {
        let deadline = Instant::now() + timeout;
        state.running.resize_with(self.checks.len(), || None);
        for ((_, check), running) in self.checks.iter().zip(state.running.iter_mut()) {
            let busy = running.as_ref().is_some_and(|handle| !handle.is_finished());
            if !busy {
                *running = Some(tokio::spawn(check()));
            }
        }
        let mut failed = Vec::new();
        for ((name, _), running) in self.checks.iter().zip(state.running.iter_mut()) {
            let Some(handle) = running.as_mut() else {
                continue;
            };
            let outcome = tokio::time::timeout_at(deadline, handle).await;
            let reason = match outcome {
                Err(_elapsed) => {
                    // Left running (kept in `running`); the next call reports it again.
                    failed.push(FailedCheck {
                        name,
                        reason: format!("no answer within {} ms", timeout.as_millis()),
                        timed_out: true,
                    });
                    continue;
                }
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(reason))) => Some(reason),
                Ok(Err(join_error)) => {
                    tracing::error!(dependency = name, error = %join_error, "readiness check panicked");
                    Some("check failed unexpectedly".to_owned())
                }
            };
            *running = None;
            if let Some(reason) = reason {
                failed.push(FailedCheck {
                    name,
                    reason,
                    timed_out: false,
                });
            }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        assert!(!failed[0].timed_out);
        assert!(failed[1].timed_out);
    }

    #[tokio::test]
    async fn cached_results_run_each_check_at_most_once_per_interval() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let readiness = Readiness::new().with_check("db", move || {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        });
        let interval = Duration::from_millis(300);
        let probes: Vec<_> = (0..200)
            .map(|_| {
                let readiness = readiness.clone();
                tokio::spawn(
                    async move { readiness.cached(interval, Duration::from_secs(1)).await },
                )
            })
            .collect();
        for probe in probes {
            assert!(probe.await.unwrap().is_empty());
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "200 concurrent probes, one check"
        );
        tokio::time::sleep(interval).await;
        assert!(
            readiness
                .cached(interval, Duration::from_secs(1))
                .await
                .is_empty()
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "a new check once the interval passed"
        );
    }

    #[tokio::test]
    async fn a_check_still_running_past_its_deadline_is_not_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let readiness = Readiness::new().with_check("hangs", move || {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        });
        for _ in 0..5 {
            let failed = readiness
                .cached(Duration::ZERO, Duration::from_millis(50))
                .await;
            assert!(failed[0].timed_out);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
