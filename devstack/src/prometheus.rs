//! Prometheus for the local stack and the observability tests: Debian's `prometheus` binary on a
//! loopback port, scraping the services, with the project's alert rules
//! (`deploy/prometheus/rules/`) and its replication console dashboard
//! (`deploy/prometheus/consoles/`, served at `/consoles/replication.html`).
//!
//! The configuration is generated for the services' actual addresses; the data directory is
//! throwaway and removed, with the process, when the handle is dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{Supervised, free_loopback_port};
use crate::{HarnessError, workspace};

/// How long Prometheus may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the replication dashboard under the Prometheus URL.
pub const DASHBOARD_PATH: &str = "/consoles/replication.html";

/// A service for Prometheus to scrape: the `job` label the rules and dashboards select on
/// (`ingest-api`, `reports-api`, `cdc-daemon`) and its `host:port`.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// The job name.
    pub job: String,
    /// `host:port` serving `/metrics`.
    pub address: String,
}

/// A running Prometheus, stopped and its data removed on drop.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    process: Supervised,
}

impl Prometheus {
    /// Starts Prometheus on `port` (a free one when `None`) scraping `targets` every
    /// `scrape_interval` (rules are evaluated as often), and waits until it is ready.
    pub async fn start(
        targets: &[ScrapeTarget],
        port: Option<u16>,
        scrape_interval: Duration,
    ) -> Result<Prometheus, HarnessError> {
        let binary = prometheus_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("myhealth-prometheus-")
            .tempdir()
            .map_err(HarnessError::io("failed to create a temporary directory"))?
            .keep();
        let port = match port {
            Some(port) => port,
            None => free_loopback_port()?,
        };
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config(targets, scrape_interval)).map_err(
            HarnessError::io(format!("failed to write {}", config_path.display())),
        )?;
        let deploy = workspace::root().join("deploy/prometheus");
        let command = vec![
            binary.display().to_string(),
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            "--storage.tsdb.retention.time=1d".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!(
                "--web.console.templates={}",
                deploy.join("consoles").display()
            ),
            format!(
                "--web.console.libraries={}",
                deploy.join("console_libraries").display()
            ),
        ];
        let process = Supervised::start(&command, &[], &dir.join("prometheus.log"), &dir)?;
        let mut prometheus = Prometheus { port, process };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    /// The base URL, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The replication dashboard's URL.
    pub fn dashboard_url(&self) -> String {
        format!("{}{DASHBOARD_PATH}", self.url())
    }

    async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", self.url());
        let started = Instant::now();
        loop {
            let error = match client.get(&ready).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("/-/ready answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            if self.process.has_exited() || started.elapsed() > START_TIMEOUT {
                return Err(HarnessError::NotReady {
                    what: "Prometheus".to_string(),
                    seconds: started.elapsed().as_secs(),
                    last_error: error,
                    log: self.process.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The generated `prometheus.yml`: one job per target and the project's rule files.
fn config(targets: &[ScrapeTarget], scrape_interval: Duration) -> String {
    let interval = format!("{}ms", scrape_interval.as_millis());
    let rules = workspace::root().join("deploy/prometheus/rules/*.yml");
    let mut text = format!(
        "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
         rule_files:\n  - {}\nscrape_configs:\n",
        rules.display()
    );
    for target in targets {
        text.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
            target.job, target.address
        ));
    }
    text
}

/// `$PROMETHEUS_BIN`, else `prometheus` on `PATH` (Debian's package installs /usr/bin/prometheus).
fn prometheus_binary() -> Result<PathBuf, HarnessError> {
    if let Some(binary) = std::env::var_os("PROMETHEUS_BIN") {
        return Ok(PathBuf::from(binary));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("prometheus"))
        .chain([Path::new("/usr/bin/prometheus").to_path_buf()])
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::Missing {
            what: "prometheus".to_string(),
            hint: "install Debian's `prometheus` package (scripts/install-deps.sh does) or set \
                   PROMETHEUS_BIN"
                .to_string(),
        })
}
