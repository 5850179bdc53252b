//! The services under test as child processes: started from the built binaries with their
//! configuration in the environment, each on a free loopback port with its log in a file, polled
//! for metrics and for their peak resident memory, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// How long a service may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running service.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    /// Its HTTP base URL (API or operations port).
    pub url: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts `bin_dir/name` with `env`, waits until it is ready.
    pub async fn start(
        bin_dir: &Path,
        name: &str,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Result<Service> {
        let binary = bin_dir.join(name);
        let port = devstack::process::free_loopback_port()?;
        let log = log_dir.join(format!("{name}-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let child = Command::new(&binary)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .env("MYHEALTH_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("failed to duplicate a log handle")?,
            )
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {} (is it built?)", binary.display()))?;
        let mut service = Service {
            name: name.to_string(),
            child,
            log,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        service.wait_ready().await?;
        Ok(service)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let answer = self.http.get(format!("{}/readyz", self.url)).send().await;
            if answer.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if !matches!(self.child.try_wait(), Ok(None)) || started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} did not become ready{}",
                    self.name,
                    devstack::process::log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        let pid = self.child.id().context("the service has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("failed to read the service's /proc status")?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .context("no VmHWM in /proc status")?;
        Ok(kib * 1024)
    }

    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .with_context(|| format!("failed to scrape {}", self.name))?
            .text()
            .await
            .context("failed to read metrics")?;
        Ok(Metrics(text))
    }

    /// Fails if the process exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if matches!(self.child.try_wait(), Ok(None)) {
            return Ok(());
        }
        bail!(
            "{} exited unexpectedly{}",
            self.name,
            devstack::process::log_tail(&self.log)
        )
    }

    /// SIGTERM, then waits (kills it after a deadline).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .context("failed to run kill")?;
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            self.child
                .kill()
                .await
                .context("failed to kill a service")?;
        }
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
