//! The service processes of `devstack run`: started from the binaries built next to `devstack`,
//! each on its own port with its log in `target/devstack/logs/`, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use devstack::process::log_tail;
use devstack::workspace;
use tokio::process::{Child, Command};

/// How long a service may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to shut down after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// A service to start: its binary name, the env-file key of its URL, its port, and settings of
/// its own (such as the database URL of its login) on top of the shared ones.
#[derive(Debug)]
pub struct ServiceSpec {
    name: &'static str,
    url_key: &'static str,
    port: u16,
    env: Vec<(String, String)>,
}

impl ServiceSpec {
    /// Describes a service.
    pub fn new(name: &'static str, url_key: &'static str, port: u16) -> Self {
        ServiceSpec {
            name,
            url_key,
            port,
            env: Vec::new(),
        }
    }

    /// Adds a setting of this service only.
    pub fn with_env(mut self, key: &str, value: String) -> Self {
        self.env.push((key.to_string(), value));
        self
    }
}

struct RunningService {
    name: &'static str,
    url_key: &'static str,
    url: String,
    child: Child,
}

/// The started services.
pub struct RunningServices {
    services: Vec<RunningService>,
    log_dir: PathBuf,
}

impl RunningServices {
    /// Starts every service and waits until each answers `/readyz` with 200. On failure the ones
    /// already started are stopped (their children are killed on drop).
    pub async fn start(specs: &[ServiceSpec], env: &[(String, String)]) -> Result<Self> {
        let bin_dir = std::env::current_exe()
            .context("failed to locate the devstack binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("the devstack binary has no parent directory")?;
        let log_dir = workspace::devstack_dir().join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("failed to create {}", log_dir.display()))?;

        let mut running = RunningServices {
            services: Vec::new(),
            log_dir,
        };
        for spec in specs {
            let binary = bin_dir.join(spec.name);
            if !binary.is_file() {
                bail!(
                    "{} is not built; run `cargo build --workspace --bins` (make run does)",
                    binary.display()
                );
            }
            let log = running.log_path(spec.name);
            let log_file = std::fs::File::create(&log)
                .with_context(|| format!("failed to create {}", log.display()))?;
            let child = Command::new(&binary)
                .envs(env.iter().chain(&spec.env).map(|(k, v)| (k, v)))
                .env("MYHEALTH_HTTP__LISTEN", format!("127.0.0.1:{}", spec.port))
                .stdin(Stdio::null())
                .stdout(
                    log_file
                        .try_clone()
                        .context("failed to duplicate a log handle")?,
                )
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("failed to start {}", binary.display()))?;
            running.services.push(RunningService {
                name: spec.name,
                url_key: spec.url_key,
                url: format!("http://127.0.0.1:{}", spec.port),
                child,
            });
        }
        for index in 0..running.services.len() {
            running.wait_ready(index).await?;
        }
        Ok(running)
    }

    /// `(KEY, URL)` of every service, for the env file.
    pub fn urls(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .map(|service| (service.url_key.to_string(), service.url.clone()))
            .collect()
    }

    /// Where the services' logs are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Resolves with the name of the first service that exits.
    pub async fn first_exit(&mut self) -> &'static str {
        loop {
            for service in &mut self.services {
                if !matches!(service.child.try_wait(), Ok(None)) {
                    return service.name;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM to every service, waits for them, and kills those past the deadline.
    pub async fn stop_all(&mut self) {
        for service in &self.services {
            if let Some(pid) = service.child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for service in &mut self.services {
            match tokio::time::timeout(STOP_DEADLINE, service.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "devstack: {} did not stop in time; killing it",
                        service.name
                    );
                    let _ = service.child.kill().await;
                }
            }
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    async fn wait_ready(&mut self, index: usize) -> Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let ready_url = format!("{}/readyz", self.services[index].url);
        loop {
            let last = match client.get(&ready_url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                ),
                Err(error) => error.to_string(),
            };
            let service = &mut self.services[index];
            let exited = !matches!(service.child.try_wait(), Ok(None));
            if exited || started.elapsed() > READY_TIMEOUT {
                let name = service.name;
                let log = log_tail(&self.log_path(name));
                bail!("{name} did not become ready ({last}){log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
