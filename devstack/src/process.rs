//! Server processes tied to their owner.
//!
//! A server is started under a small `sh` supervisor whose standard input is a pipe held by the
//! owner. When the owner drops the [`Supervised`] handle, or dies without running destructors
//! (a test process exits, a `kill -9`), the pipe closes, the supervisor stops the server with
//! SIGINT (fast shutdown for PostgreSQL), waits for it and removes its throwaway directory. So a
//! harness never leaks a server or its data, whatever happens to the tests.
//!
//! The same pipe carries `stop` and `start` lines, so tests can take a server down and bring it
//! back on the same data (an outage), still under the supervisor.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// The supervisor: runs the server (`$3...`) in the background, writes its pid to
/// `$1/server.pid`, and obeys `stop` (SIGINT), `term` (SIGTERM), `kill` (SIGKILL) and `start`
/// lines on its standard input, touching `$2` once a stop has completed; when its input closes, it stops the server and
/// removes `$1`.
const SUPERVISOR: &str = r#"
cleanup_dir="$1"; stopped_marker="$2"; shift 2
"$@" &
server=$!
echo "$server" > "$cleanup_dir/server.pid"
while read -r command; do
    case "$command" in
        stop) kill -INT "$server" 2>/dev/null; wait "$server"; : > "$stopped_marker" ;;
        term) kill -TERM "$server" 2>/dev/null; wait "$server"; : > "$stopped_marker" ;;
        kill) kill -KILL "$server" 2>/dev/null; wait "$server"; : > "$stopped_marker" ;;
        start) rm -f "$stopped_marker"; "$@" & server=$!; echo "$server" > "$cleanup_dir/server.pid" ;;
    esac
done
kill -INT "$server" 2>/dev/null
wait "$server"
rm -rf "$cleanup_dir"
"#;

/// How long a server may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server process, stopped (and its throwaway directory removed) on drop.
#[derive(Debug)]
pub struct Supervised {
    supervisor: Child,
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    stopped_marker: PathBuf,
    dir: PathBuf,
}

impl Supervised {
    /// Starts `command` with `env` added to its environment and its output appended to `log`.
    /// `dir` (which holds the server's throwaway data) is removed after the server has stopped
    /// for good.
    pub fn start(
        command: &[String],
        env: &[(String, String)],
        log: &Path,
        dir: &Path,
    ) -> Result<Supervised, HarnessError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(HarnessError::io(format!(
                "failed to open log {}",
                log.display()
            )))?;
        let log_err = log_file
            .try_clone()
            .map_err(HarnessError::io("failed to duplicate a log handle"))?;
        let stopped_marker = dir.join("server-stopped");
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("devstack-supervisor")
            .arg(dir)
            .arg(&stopped_marker)
            .args(command)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(HarnessError::io(format!(
                "failed to start {}",
                command.join(" ")
            )))?;
        let lifeline = supervisor.stdin.take();
        Ok(Supervised {
            supervisor,
            lifeline,
            log: log.to_path_buf(),
            stopped_marker,
            dir: dir.to_path_buf(),
        })
    }

    /// Stops the server (SIGINT) and waits until it has exited; its data stays.
    pub async fn stop_server(&mut self) -> Result<(), HarnessError> {
        self.end_server("stop").await
    }

    /// Sends the server SIGTERM and waits until it has exited; kills it with SIGKILL if it is
    /// still running after `deadline`. Its data stays.
    pub async fn terminate_server(&mut self, deadline: Duration) -> Result<(), HarnessError> {
        let _ = std::fs::remove_file(&self.stopped_marker);
        self.send("term")?;
        let started = Instant::now();
        while !self.stopped_marker.exists() {
            if started.elapsed() > deadline {
                // The supervisor is busy waiting for the server: signal the server directly.
                if let Some(pid) = self.server_pid() {
                    // It may have exited meanwhile; then there is nothing to kill.
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                return self.wait_stopped("kill").await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the server with SIGKILL (a crash: no chance to clean up) and waits until it is gone.
    pub async fn kill_server(&mut self) -> Result<(), HarnessError> {
        self.end_server("kill").await
    }

    /// Freezes the server (SIGSTOP): it keeps its connections and state but does nothing, as a
    /// process paused by a long garbage collection, a hung VM or a network partition would.
    pub fn freeze_server(&self) -> Result<(), HarnessError> {
        self.signal_server("STOP")
    }

    /// Resumes a server frozen by [`Supervised::freeze_server`] (SIGCONT).
    pub fn thaw_server(&self) -> Result<(), HarnessError> {
        self.signal_server("CONT")
    }

    fn signal_server(&self, signal: &str) -> Result<(), HarnessError> {
        let pid = self.server_pid().ok_or_else(|| HarnessError::Missing {
            what: "the server's process id".to_string(),
            hint: "the server has not started yet".to_string(),
        })?;
        run(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()))
    }

    /// The server's process id (of its current run).
    pub fn server_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("server.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
    }

    async fn end_server(&mut self, command: &str) -> Result<(), HarnessError> {
        let _ = std::fs::remove_file(&self.stopped_marker);
        self.send(command)?;
        self.wait_stopped(command).await
    }

    async fn wait_stopped(&self, command: &str) -> Result<(), HarnessError> {
        let started = Instant::now();
        while !self.stopped_marker.exists() {
            if started.elapsed() > STOP_TIMEOUT {
                return Err(HarnessError::Command {
                    command: command.to_string(),
                    detail: format!("the server did not stop in time{}", self.log_tail()),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Starts the server again after [`Supervised::stop_server`], with the same command.
    pub fn start_server(&mut self) -> Result<(), HarnessError> {
        self.send("start")
    }

    fn send(&mut self, command: &str) -> Result<(), HarnessError> {
        let lifeline = self.lifeline.as_mut().ok_or_else(|| HarnessError::Io {
            action: "the supervisor is gone".to_string(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        writeln!(lifeline, "{command}")
            .and_then(|()| lifeline.flush())
            .map_err(HarnessError::io(format!(
                "failed to send {command} to the supervisor"
            )))
    }

    /// Whether the supervisor (and so the server) has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.supervisor.try_wait(), Ok(None))
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Closing the pipe tells the supervisor to stop the server; waiting makes the stop and
        // the clean-up finish before the owner goes on.
        drop(self.lifeline.take());
        let _ = self.supervisor.wait();
    }
}

/// The last 30 lines of a log file, prefixed for inclusion in an error message.
pub fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(30);
            format!(
                "\n--- end of {} ---\n{}",
                log.display(),
                lines[start..].join("\n")
            )
        }
        Err(_) => String::new(),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_loopback_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(HarnessError::io("failed to find a free loopback port"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(HarnessError::io("failed to read a bound port"))
}

/// Runs a command to completion, turning a failure into an error that shows its output.
pub fn run(command: &mut Command) -> Result<(), HarnessError> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(HarnessError::io(format!("failed to run {shown}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = format!("{}", output.status);
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        if !text.trim().is_empty() {
            detail.push('\n');
            detail.push_str(text.trim_end());
        }
    }
    Err(HarnessError::Command {
        command: shown,
        detail,
    })
}
