//! A closed-loop load generator: `concurrency` workers each issue one request after another for
//! a fixed time; requests per second and latency percentiles of the successful ones. Used for the
//! HTTP services and, with the same code, for their references (so both sides pay the same
//! client cost on this machine).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second.
    pub per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// Runs `request` from `concurrency` workers for `duration`. `request` returns whether the
/// request succeeded.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Result<Load>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0_u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if request().await {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mine, failed) = worker.await.context("a load worker panicked")?;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1000.0)
    };
    Ok(Load {
        requests: latencies.len() as u64,
        errors,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
    })
}
