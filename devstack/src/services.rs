//! The service binaries as child processes: what `devstack run`, chaos, pipeline-bench and the
//! tests that kill or measure a process start.
//!
//! Each service runs under the [`crate::process`] supervisor on `127.0.0.1:<port>` with its
//! settings in its environment and its output in a log file, so it never outlives its owner,
//! can be stopped with SIGTERM (then SIGKILL after a deadline), crashed with SIGKILL and started
//! again on the same port. Waiting for `/readyz` and for the daemon to hold its slot lives here
//! once, for in-process services too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::process::{Supervised, log_tail};

/// How long a service may take to answer `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to hold its slot (it may wait for an earlier one to let go).
pub const STREAMING_TIMEOUT: Duration = Duration::from_secs(60);

/// A service binary running under the supervisor.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    url: String,
    log: PathBuf,
    process: Supervised,
}

/// `bin_dir/name`, or an error saying how to build it.
pub fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf, HarnessError> {
    let binary = bin_dir.join(name);
    if binary.is_file() {
        return Ok(binary);
    }
    Err(HarnessError::Missing {
        what: binary.display().to_string(),
        hint: "run `cargo build --workspace --bins` first".to_string(),
    })
}

impl ServiceProcess {
    /// Starts `binary` listening on `127.0.0.1:port`, with `env` added to the inherited
    /// environment; its output goes to `log` (emptied first), or, without one, to a file that is
    /// removed with the process. Does not wait for it.
    pub fn spawn(
        binary: &Path,
        port: u16,
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> Result<ServiceProcess, HarnessError> {
        let name = binary
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("devstack-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(HarnessError::io(format!(
            "failed to create {}",
            dir.display()
        )))?;
        let log = log.map_or_else(|| dir.join("service.log"), Path::to_path_buf);
        std::fs::write(&log, b"").map_err(HarnessError::io(format!(
            "failed to create {}",
            log.display()
        )))?;
        let mut env = env.to_vec();
        env.push((
            "MYHEALTH_HTTP__LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ));
        let process = Supervised::start(&[binary.display().to_string()], &env, &log, &dir)?;
        Ok(ServiceProcess {
            name,
            url: format!("http://127.0.0.1:{port}"),
            log,
            process,
        })
    }

    /// The binary's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until the service answers `/readyz` with 200; fails early if it exits.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.url);
        let started = Instant::now();
        loop {
            let last = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                ),
                Err(error) => error.to_string(),
            };
            if !self.is_running() || started.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    what: self.name.clone(),
                    seconds: started.elapsed().as_secs(),
                    last_error: last,
                    log: log_tail(&self.log),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the service process is alive (it has not exited or crashed).
    pub fn is_running(&self) -> bool {
        // The supervisor writes the pid just after it starts the server: until then it starts.
        let Some(pid) = self.process.server_pid() else {
            return true;
        };
        // An exited child stays a zombie (state Z) until the supervisor reaps it.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    }

    /// SIGTERM, then SIGKILL if it has not exited after `deadline`; waits until it is gone.
    pub async fn stop(&mut self, deadline: Duration) -> Result<(), HarnessError> {
        self.process.terminate_server(deadline).await
    }

    /// SIGSTOP: frozen with its connections open, until [`ServiceProcess::thaw`].
    pub fn freeze(&self) -> Result<(), HarnessError> {
        self.process.freeze_server()
    }

    /// SIGCONT after [`ServiceProcess::freeze`].
    pub fn thaw(&self) -> Result<(), HarnessError> {
        self.process.thaw_server()
    }

    /// SIGKILL (a crash: no chance to flush or checkpoint); waits until it is gone.
    pub async fn kill(&mut self) -> Result<(), HarnessError> {
        self.process.kill_server().await
    }

    /// Starts it again after [`ServiceProcess::stop`] or [`ServiceProcess::kill`], on the same
    /// port with the same settings; its log goes on.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.start_server()
    }

    /// Its resident set size now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> Result<u64, HarnessError> {
        self.memory_bytes("VmRSS")
    }

    /// Its peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64, HarnessError> {
        self.memory_bytes("VmHWM")
    }

    /// Starts measuring its peak resident set size afresh (writes `5` to `/proc/<pid>/clear_refs`,
    /// which sets `VmHWM` to the current `VmRSS`), so that the peak of one phase of a run can be
    /// told from an earlier one's.
    pub fn reset_peak_rss(&self) -> Result<(), HarnessError> {
        let path = self.proc_file("clear_refs", "resetting the peak memory")?;
        std::fs::write(path, "5")
            .map_err(|error| self.failed("resetting the peak memory", &error.to_string()))
    }

    /// A memory line of `/proc/<pid>/status` (which gives it in KiB), in bytes.
    fn memory_bytes(&self, field: &str) -> Result<u64, HarnessError> {
        let doing = "reading the memory";
        let status = std::fs::read_to_string(self.proc_file("status", doing)?)
            .map_err(|error| self.failed(doing, &error.to_string()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| self.failed(doing, &format!("no {field} in /proc status")))?;
        Ok(kib * 1024)
    }

    /// The path of the running process's `/proc/<pid>/<file>`, for `doing` something with it.
    fn proc_file(&self, file: &str, doing: &str) -> Result<String, HarnessError> {
        let pid = self
            .process
            .server_pid()
            .ok_or_else(|| self.failed(doing, "it has no process id"))?;
        Ok(format!("/proc/{pid}/{file}"))
    }

    /// The error of `doing` something with this process.
    fn failed(&self, doing: &str, detail: &str) -> HarnessError {
        HarnessError::Command {
            command: format!("{doing} of {}", self.name),
            detail: detail.to_string(),
        }
    }
}

/// What a service's probes answer: `/healthz`'s status, `/readyz`'s status and its body (a
/// problem naming each unready dependency by pointer when it is not ready).
#[derive(Debug)]
pub struct Probes {
    /// `/healthz`: 200 while the process serves at all.
    pub alive: u16,
    /// `/readyz`: 200 when every dependency answers, else 503.
    pub ready: u16,
    /// `/readyz`'s JSON body.
    pub readiness: serde_json::Value,
}

/// Asks the service at `url` (`http://host:port`) `/healthz` and `/readyz` once each.
pub async fn probe(url: &str) -> Result<Probes, HarnessError> {
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let request = http.get(format!("{url}{path}"));
        async move {
            let failed = |error: reqwest::Error| HarnessError::Command {
                command: format!("GET {url}{path}"),
                detail: error.to_string(),
            };
            let response = request.send().await.map_err(failed)?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(failed)?;
            Ok::<_, HarnessError>((status, body))
        }
    };
    let (alive, _) = get("/healthz").await?;
    let (ready, body) = get("/readyz").await?;
    let readiness = serde_json::from_slice(&body).map_err(|error| HarnessError::Command {
        command: format!("GET {url}/readyz"),
        detail: format!("not JSON: {error}"),
    })?;
    Ok(Probes {
        alive,
        ready,
        readiness,
    })
}

/// Waits until the daemon serving `url` reports `cdc_connected 1` (it holds its slot, so every
/// source change from now on reaches it).
pub async fn wait_streaming(url: &str, timeout: Duration) -> Result<(), HarnessError> {
    let http = reqwest::Client::new();
    let metrics = format!("{url}/metrics");
    let started = Instant::now();
    loop {
        let last = match http.get(&metrics).send().await {
            Ok(response) => {
                let text = response.text().await.unwrap_or_default();
                if text.lines().any(|line| line == "cdc_connected 1") {
                    return Ok(());
                }
                "cdc_connected is not 1".to_string()
            }
            Err(error) => error.to_string(),
        };
        if started.elapsed() > timeout {
            return Err(HarnessError::NotReady {
                what: format!("the daemon at {url} (streaming)"),
                seconds: started.elapsed().as_secs(),
                last_error: last,
                log: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
