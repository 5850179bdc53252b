//! The MongoDB-compatible store for the local stack and the tests: either the server
//! `MONGODB_URI` names (a real MongoDB), or FerretDB 1.24 on one of its two backends
//! (`FERRETDB_BACKEND`): PostgreSQL (the default), in a throwaway PostgreSQL cluster of the
//! store's own, or SQLite, in a throwaway directory.
//!
//! The store's cluster is not the source's: the chaos run and the outage tests stop the store
//! and the source independently, as in production. "The store" is FerretDB and its cluster
//! together: [`Store::stop`] stops both, [`Store::restart`] starts both.
//!
//! FerretDB is built from the Go module proxy through the project's own wrapper in
//! `tools/ferretdb/` (the upstream `go install` binary panics at start), cached in
//! `target/devstack/bin/ferretdb`, and rebuilt only when the wrapper changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::certs::ServerTls;
use crate::postgres::{ClusterOptions, PostgresServer};
use crate::process::{Supervised, free_loopback_port, run};
use crate::{HarnessError, workspace};

/// How long a fresh FerretDB may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The database of the store's cluster that FerretDB keeps its collections in (one schema per
/// MongoDB database, one table per collection).
const BACKEND_DATABASE: &str = "ferretdb";

/// Connections FerretDB's PostgreSQL backend may open (its default is 50). FerretDB holds one
/// connection per statement that matches a document until the whole command ends and waits
/// forever for a free one, so with 50, two clients each sending a command of 32 updates deadlock
/// it (`read-model/tests/store_rules.rs` shows it). 256 lets eight such commands run at once
/// and stays below the cluster's `max_connections` (300).
const BACKEND_POOL_CONNECTIONS: u32 = 256;

/// Which of FerretDB's storage backends the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A database in a PostgreSQL cluster of the store's own: the default, many times faster
    /// than SQLite for the daemon's writes and the reports API's queries.
    Postgresql,
    /// SQLite files in a throwaway directory.
    Sqlite,
}

impl Backend {
    /// `FERRETDB_BACKEND`: `postgresql` (also when unset or empty) or `sqlite`.
    pub fn from_env() -> Result<Backend, HarnessError> {
        match std::env::var("FERRETDB_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("postgresql") => Ok(Backend::Postgresql),
            Ok("sqlite") => Ok(Backend::Sqlite),
            Ok(other) => Err(HarnessError::BadUrl {
                name: "FERRETDB_BACKEND",
                detail: format!("{other:?} is neither `postgresql` nor `sqlite`"),
            }),
        }
    }

    /// The wrapper's `-backend` value.
    fn flag(self) -> &'static str {
        match self {
            Backend::Postgresql => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A MongoDB-compatible server.
#[derive(Debug)]
pub struct Store {
    uri: String,
    /// FerretDB's port (0 for a server from `MONGODB_URI`).
    port: u16,
    /// The backend FerretDB runs on; `None` for a server from `MONGODB_URI`.
    backend: Option<Backend>,
    /// The FerretDB process; `None` when `MONGODB_URI` names an existing server. Declared before
    /// `cluster` so that it stops first when the store is dropped.
    process: Option<Supervised>,
    /// The PostgreSQL backend's cluster.
    cluster: Option<PostgresServer>,
}

impl Store {
    /// The server named by `MONGODB_URI` if it is set, else a new FerretDB on the backend
    /// `FERRETDB_BACKEND` names, on a free port (or on `port`).
    pub async fn from_env_or_start(port: Option<u16>) -> Result<Self, HarnessError> {
        match std::env::var("MONGODB_URI") {
            Ok(uri) if !uri.is_empty() => Ok(Store {
                uri,
                port: 0,
                backend: None,
                process: None,
                cluster: None,
            }),
            _ => Self::start_ferretdb(port).await,
        }
    }

    /// Builds FerretDB if needed and starts it on the backend `FERRETDB_BACKEND` names, with
    /// throwaway data.
    pub async fn start_ferretdb(port: Option<u16>) -> Result<Self, HarnessError> {
        Self::start(Backend::from_env()?, port, None).await
    }

    /// Builds FerretDB if needed and starts it on `backend`, with throwaway data: a new cluster
    /// for [`Backend::Postgresql`], a new directory for [`Backend::Sqlite`].
    pub async fn start_ferretdb_on(
        backend: Backend,
        port: Option<u16>,
    ) -> Result<Self, HarnessError> {
        Self::start(backend, port, None).await
    }

    /// FerretDB (on the backend `FERRETDB_BACKEND` names) with its TLS listener alone (no
    /// plaintext port); the URI connects to the certificate's host with `tls=true` and
    /// `tlsCAFile`.
    pub async fn start_ferretdb_tls(tls: &ServerTls) -> Result<Self, HarnessError> {
        Self::start(Backend::from_env()?, None, Some(tls)).await
    }

    async fn start(
        backend: Backend,
        port: Option<u16>,
        tls: Option<&ServerTls>,
    ) -> Result<Self, HarnessError> {
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
            format!("-backend={}", backend.flag()),
        ];
        let cluster = match backend {
            Backend::Sqlite => {
                command.push(format!("-data-dir={}", dir.join("data").display()));
                None
            }
            Backend::Postgresql => {
                let cluster = start_backend_cluster().await?;
                command.push(format!(
                    "-postgresql-url={}?pool_max_conns={BACKEND_POOL_CONNECTIONS}",
                    cluster.url_for(BACKEND_DATABASE)
                ));
                Some(cluster)
            }
        };
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
            backend: Some(backend),
            process: Some(process),
            cluster,
        };
        store.wait_until_ready().await?;
        Ok(store)
    }

    /// Stops the harness's FerretDB and its backend's cluster, keeping their data, to simulate
    /// an outage of the store.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.stop_server().await?;
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.stop().await?;
        }
        Ok(())
    }

    /// Starts the backend's cluster and FerretDB again after [`Store::stop`] and waits until
    /// FerretDB accepts connections.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.restart().await?;
        }
        self.process_mut()?.start_server()?;
        self.wait_until_ready().await
    }

    /// Freezes the harness's FerretDB (SIGSTOP): connections stay open, commands sent to it wait
    /// unanswered until [`Store::thaw`].
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.freeze_server()
    }

    /// Resumes FerretDB after [`Store::freeze`].
    pub fn thaw(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.thaw_server()
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

    /// The backend of the harness's FerretDB; `None` for a server from `MONGODB_URI`.
    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// What the store is, for reports: `FerretDB 1.24 (PostgreSQL backend, harness)`, or the
    /// server at `MONGODB_URI`.
    pub fn describe(&self) -> String {
        match self.backend {
            Some(Backend::Postgresql) => "FerretDB 1.24 (PostgreSQL backend, harness)".to_string(),
            Some(Backend::Sqlite) => "FerretDB 1.24 (SQLite backend, harness)".to_string(),
            None => "the MongoDB server at MONGODB_URI".to_string(),
        }
    }

    /// The PostgreSQL backend's cluster (for inspecting FerretDB's tables).
    pub fn cluster(&self) -> Option<&PostgresServer> {
        self.cluster.as_ref()
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
                    seconds: started.elapsed().as_secs(),
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

/// The harness's one tuning of FerretDB's tables (never applied to a real MongoDB or anywhere
/// outside the store's throwaway cluster): an event trigger that gives every btree index
/// FerretDB creates whose first key is a top-level field (`_id`, and of the read model's
/// indexes `patient_id` and `checkup_id`) a GIN index on that field's expression, once per
/// table and field, with `fastupdate` off so that writes do not pile up in a pending list.
/// FerretDB filters with `_jsonb->'key' @> value`, which its btree indexes do not serve but GIN
/// does; without them every update and every list query reads the whole collection. Dotted
/// fields are left alone: FerretDB filters them with `#>`, which an index on a `->` chain does
/// not match.
///
/// Measured here (same FerretDB, same cluster, back to back, the daemon's write shape of
/// commands of 32 `_id` upserts plus 32 `_id` updates, growing to 8,192 documents, 2 busy
/// cores): 62 → 684 writes/s between 6,144 and 8,192 documents, and 39 → 157 list queries/s
/// (a patient's `find` + sort + limit 21) at 8,192 documents.
const BACKEND_TUNING: &str = r#"
CREATE FUNCTION harness_gin_companion() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    created record;
    first_key text;
    target regclass;
BEGIN
    FOR created IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
        SELECT pg_get_indexdef(i.indexrelid, 1, true), i.indrelid::regclass
          INTO first_key, target
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_am am ON am.oid = c.relam
         WHERE i.indexrelid = created.objid AND am.amname = 'btree';
        IF first_key ~ '^\(_jsonb -> ''[^'']*''::text\)$' AND NOT EXISTS (
            SELECT 1 FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_am am ON am.oid = c.relam
             WHERE i.indrelid = target AND am.amname = 'gin'
               AND pg_get_indexdef(i.indexrelid, 1, true) = first_key)
        THEN
            EXECUTE format('CREATE INDEX ON %s USING gin (%s) WITH (fastupdate = off)', target, first_key);
        END IF;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER harness_gin_companion ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION harness_gin_companion();
"#;

/// A throwaway cluster for the PostgreSQL backend, with FerretDB's database created and tuned
/// ([`BACKEND_TUNING`]). Its data is thrown away with it, so it runs with `fsync` off like the
/// test clusters (a process crash still loses nothing).
async fn start_backend_cluster() -> Result<PostgresServer, HarnessError> {
    let cluster = PostgresServer::start(ClusterOptions::default()).await?;
    let admin = cluster.connect("postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {BACKEND_DATABASE}"))
        .await
        .map_err(|source| HarnessError::Postgres {
            action: "failed to create FerretDB's database in the store's cluster".to_string(),
            source,
        })?;
    cluster
        .connect(BACKEND_DATABASE)
        .await?
        .batch_execute(BACKEND_TUNING)
        .await
        .map_err(|source| HarnessError::Postgres {
            action: "failed to tune FerretDB's tables".to_string(),
            source,
        })?;
    Ok(cluster)
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
