//! The MongoDB-compatible store for the local stack and the tests: either the server
//! `MONGODB_URI` names (a real MongoDB), or FerretDB 1.24 with its SQLite backend.
//!
//! FerretDB is built from the Go module proxy through the project's own wrapper in
//! `tools/ferretdb/` (the upstream `go install` binary panics at start), cached in
//! `target/devstack/bin/ferretdb`, and rebuilt only when the wrapper changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::certs::ServerTls;
use crate::process::{Supervised, free_loopback_port, run};
use crate::{HarnessError, workspace};

/// How long a fresh FerretDB may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A MongoDB-compatible server.
#[derive(Debug)]
pub struct Store {
    uri: String,
    /// FerretDB's port (0 for a server from `MONGODB_URI`).
    port: u16,
    /// The FerretDB process; `None` when `MONGODB_URI` names an existing server.
    process: Option<Supervised>,
}

impl Store {
    /// The server named by `MONGODB_URI` if it is set, else a new FerretDB on a free port (or on
    /// `port`).
    pub async fn from_env_or_start(port: Option<u16>) -> Result<Self, HarnessError> {
        match std::env::var("MONGODB_URI") {
            Ok(uri) if !uri.is_empty() => Ok(Store {
                uri,
                port: 0,
                process: None,
            }),
            _ => Self::start_ferretdb(port).await,
        }
    }

    /// Builds FerretDB if needed and starts it with a throwaway SQLite directory.
    pub async fn start_ferretdb(port: Option<u16>) -> Result<Self, HarnessError> {
        Self::start(port, None).await
    }

    /// FerretDB with its TLS listener alone (no plaintext port); the URI connects to the
    /// certificate's host with `tls=true` and `tlsCAFile`.
    pub async fn start_ferretdb_tls(tls: &ServerTls) -> Result<Self, HarnessError> {
        Self::start(None, Some(tls)).await
    }

    async fn start(port: Option<u16>, tls: Option<&ServerTls>) -> Result<Self, HarnessError> {
        let binary = ferretdb_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("myhealth-ferretdb-")
            .tempdir()
            .map_err(HarnessError::io("failed to create a temporary directory"))?
            .keep();
        let port = match port {
            Some(port) => port,
            None => free_loopback_port()?,
        };
        let mut command = vec![
            binary.display().to_string(),
            format!("-data-dir={}", dir.join("data").display()),
        ];
        let mut uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        match tls {
            None => command.push(format!("-listen=127.0.0.1:{port}")),
            Some(tls) => {
                let (cert, key, ca) = tls.write_to(&dir)?;
                command.extend([
                    "-listen=".to_string(),
                    format!("-tls-listen=127.0.0.1:{port}"),
                    format!("-tls-cert-file={}", cert.display()),
                    format!("-tls-key-file={}", key.display()),
                ]);
                uri = format!(
                    "mongodb://{}:{port}/?directConnection=true&tls=true&tlsCAFile={}",
                    tls.host,
                    ca.display()
                );
            }
        }
        let process = Supervised::start(&command, &[], &dir.join("ferretdb.log"), &dir)?;
        let mut store = Store {
            uri,
            port,
            process: Some(process),
        };
        store.wait_until_ready().await?;
        Ok(store)
    }

    /// Stops the harness's FerretDB, keeping its data, to simulate an outage.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.stop_server().await
    }

    /// Starts FerretDB again after [`Store::stop`] and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.start_server()?;
        self.wait_until_ready().await
    }

    fn process_mut(&mut self) -> Result<&mut Supervised, HarnessError> {
        self.process.as_mut().ok_or_else(|| HarnessError::Missing {
            what: "the harness's FerretDB".to_string(),
            hint: "a server from MONGODB_URI cannot be stopped by the tests".to_string(),
        })
    }

    /// The connection string.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether this is the harness's FerretDB (rather than a server from `MONGODB_URI`).
    pub fn is_ferretdb(&self) -> bool {
        self.process.is_some()
    }

    async fn wait_until_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            let error = match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(_) => return Ok(()),
                Err(error) => error.to_string(),
            };
            let exited = self.process.as_mut().is_some_and(Supervised::has_exited);
            if exited || started.elapsed() > START_TIMEOUT {
                return Err(HarnessError::NotReady {
                    what: "FerretDB".to_string(),
                    seconds: START_TIMEOUT.as_secs(),
                    last_error: error,
                    log: self
                        .process
                        .as_ref()
                        .map(Supervised::log_tail)
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The FerretDB binary: `$FERRETDB_BIN` if set, else the cached build, (re)built when missing or
/// older than the wrapper's sources.
pub fn ferretdb_binary() -> Result<PathBuf, HarnessError> {
    if let Some(binary) = std::env::var_os("FERRETDB_BIN") {
        return Ok(PathBuf::from(binary));
    }
    let source = workspace::root().join("tools/ferretdb");
    let binary = workspace::devstack_dir().join("bin/ferretdb");
    let sources = ["main.go", "go.mod", "go.sum"].map(|file| source.join(file));
    if modified(&binary).is_some_and(|built| sources.iter().all(|s| modified(s) <= Some(built))) {
        return Ok(binary);
    }
    let go = find_go()?;
    let bin_dir = binary.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(bin_dir).map_err(HarnessError::io(format!(
        "failed to create {}",
        bin_dir.display()
    )))?;
    // Build under a unique name and rename, so that test processes building at the same time
    // never see a half-written binary.
    let partial = bin_dir.join(format!(
        "ferretdb.partial-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let built = run(Command::new(&go)
        .current_dir(&source)
        .args(["build", "-o"])
        .arg(&partial)
        .arg("."));
    if let Err(error) = built {
        let _ = std::fs::remove_file(&partial);
        return Err(HarnessError::Missing {
            what: "FerretDB (could not be built from the Go module proxy)".to_string(),
            hint: format!("{error}; set MONGODB_URI to use a MongoDB server instead"),
        });
    }
    std::fs::rename(&partial, &binary).map_err(HarnessError::io(format!(
        "failed to install {}",
        binary.display()
    )))?;
    Ok(binary)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

fn find_go() -> Result<PathBuf, HarnessError> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([
            PathBuf::from("/usr/local/go/bin/go"),
            PathBuf::from("/usr/lib/go/bin/go"),
        ])
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::Missing {
            what: "the Go toolchain (to build FerretDB)".to_string(),
            hint: "install Go 1.22 or newer (Debian: golang), set FERRETDB_BIN to a built \
                   wrapper, or set MONGODB_URI to a MongoDB server"
                .to_string(),
        })
}
