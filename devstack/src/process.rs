//! Server processes tied to their owner.
//!
//! A server is started under a small `sh` supervisor whose standard input is a pipe held by the
//! owner. When the owner drops the [`Supervised`] handle, or dies without running destructors
//! (a test process exits, a `kill -9`), the pipe closes, the supervisor stops the server with
//! SIGINT (fast shutdown for PostgreSQL), waits for it and removes its throwaway directory. So a
//! harness never leaks a server or its data, whatever happens to the tests.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::HarnessError;

/// The supervisor: runs the server in the background, waits for its standard input to close,
/// then stops the server and removes `$1` if it is not empty.
const SUPERVISOR: &str = r#"
cleanup_dir="$1"; shift
"$@" &
server=$!
read -r _ignored || true
kill -INT "$server" 2>/dev/null
wait "$server"
if [ -n "$cleanup_dir" ]; then rm -rf "$cleanup_dir"; fi
"#;

/// A running server process, stopped (and its throwaway directory removed) on drop.
#[derive(Debug)]
pub struct Supervised {
    supervisor: Child,
    lifeline: Option<ChildStdin>,
    log: PathBuf,
}

impl Supervised {
    /// Starts `command` with its output appended to `log`. If `cleanup_dir` is given, it is
    /// removed after the server has stopped.
    pub fn start(
        command: &[String],
        log: &Path,
        cleanup_dir: Option<&Path>,
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
        let cleanup = cleanup_dir.map(|dir| dir.display().to_string());
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("devstack-supervisor")
            .arg(cleanup.unwrap_or_default())
            .args(command)
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
        })
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
