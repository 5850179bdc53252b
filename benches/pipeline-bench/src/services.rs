//! The services under test as child processes (devstack's supervised launcher), each on a free
//! loopback port with its log in the work directory, polled for metrics and for their peak
//! resident memory, stopped with SIGTERM.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use devstack::services::{self, READY_TIMEOUT, ServiceProcess};

/// How long a service may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running service.
pub struct Service {
    process: ServiceProcess,
    /// Its HTTP base URL (API or operations port).
    pub url: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts `bin_dir/name` with `env` (and `RUST_LOG=warn`), waits until it is ready.
    pub async fn start(
        bin_dir: &Path,
        name: &str,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Result<Service> {
        let binary = services::binary(bin_dir, name)?;
        let port = devstack::process::free_loopback_port()?;
        let log = log_dir.join(format!("{name}-{port}.log"));
        let mut settings: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect();
        settings.push(("RUST_LOG".to_string(), "warn".to_string()));
        let process = ServiceProcess::spawn(&binary, port, &settings, Some(&log))?;
        process.wait_ready(READY_TIMEOUT).await?;
        Ok(Service {
            url: process.url().to_string(),
            process,
            http: reqwest::Client::new(),
        })
    }

    /// The process's peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        Ok(self.process.peak_rss_bytes()?)
    }

    /// Starts measuring the peak resident set size afresh (see
    /// [`devstack::services::ServiceProcess::reset_peak_rss`]).
    pub fn reset_peak_rss(&self) -> Result<()> {
        Ok(self.process.reset_peak_rss()?)
    }

    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .with_context(|| format!("failed to scrape {}", self.process.name()))?
            .text()
            .await
            .context("failed to read metrics")?;
        Ok(Metrics(text))
    }

    /// Fails if the process exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if self.process.is_running() {
            return Ok(());
        }
        bail!(
            "{} exited unexpectedly{}",
            self.process.name(),
            devstack::process::log_tail(self.process.log())
        )
    }

    /// SIGTERM, then waits (kills it after a deadline).
    pub async fn stop(mut self) -> Result<()> {
        self.process.stop(STOP_DEADLINE).await?;
        Ok(())
    }
}

/// A scraped Prometheus text exposition.
pub struct Metrics(String);

impl Metrics {
    /// The sum of every sample of `name` (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples(name).map(|(_, value)| value).sum()
    }

    /// Cumulative histogram buckets of `name`: `(upper bound, count)`, ascending, `+Inf` last.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples(&bucket)
            .filter_map(|(labels, value)| {
                let le = labels.split("le=\"").nth(1)?.split('"').next()?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    fn samples<'m>(&'m self, name: &'m str) -> impl Iterator<Item = (&'m str, f64)> + 'm {
        self.0.lines().filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().ok()?))
        })
    }
}

/// The `quantile` (0..1) of the observations between two scrapes of a histogram, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], quantile: f64) -> f64 {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let Some(&(_, total)) = counts.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = quantile * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in &counts {
        if count >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let inside = count - lower.1;
            let fraction = if inside > 0.0 {
                (rank - lower.1) / inside
            } else {
                1.0
            };
            return lower.0 + (bound - lower.0) * fraction;
        }
        lower = (bound, count);
    }
    lower.0
}

/// The share (0..1) of the observations between two scrapes at or below `bound` (a bucket
/// boundary): exact, unlike an interpolated quantile.
pub fn share_at_or_below(before: &[(f64, f64)], after: &[(f64, f64)], bound: f64) -> f64 {
    let count = |buckets: &[(f64, f64)], b: f64| {
        buckets
            .iter()
            .find(|(le, _)| *le == b)
            .map_or(0.0, |(_, c)| *c)
    };
    let total = count(after, f64::INFINITY) - count(before, f64::INFINITY);
    if total <= 0.0 {
        return f64::NAN;
    }
    (count(after, bound) - count(before, bound)) / total
}
