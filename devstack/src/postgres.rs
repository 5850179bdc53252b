//! A PostgreSQL server for the local stack and the tests: either the one `DATABASE_URL` names,
//! or a throwaway cluster `initdb`-ed in a temporary directory with `wal_level=logical`,
//! listening on a free loopback port, stopped and removed when its handle is dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use url::Url;

use crate::HarnessError;
use crate::certs::{ServerTls, write_file};
use crate::process::{Supervised, free_loopback_port, run};

/// How long a fresh cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a throwaway cluster. Logical replication needs `wal_level=logical`; the tests and
/// the daemon use many slots and walsenders at once.
const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("wal_level", "logical"),
    ("max_replication_slots", "64"),
    ("max_wal_senders", "64"),
    ("max_connections", "300"),
    ("log_min_messages", "warning"),
];

/// Settings that trade crash safety of the whole machine for speed, for test clusters only:
/// a process crash (of PostgreSQL or of the daemon) still loses nothing.
const FAST_SETTINGS: &[(&str, &str)] = &[("fsync", "off"), ("full_page_writes", "off")];

/// A PostgreSQL server reachable as a superuser (or a user allowed to create databases).
#[derive(Debug)]
pub struct PostgresServer {
    admin_url: Url,
    /// The throwaway cluster's process; `None` when `DATABASE_URL` names an existing server.
    process: Option<Supervised>,
}

/// How to start a throwaway cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// The port to listen on; a free one when `None`.
    pub port: Option<u16>,
    /// Keep `fsync` on (the local stack); tests turn it off for speed.
    pub durable: bool,
    /// Serve TLS, and TLS only: `ssl=on` and a `pg_hba.conf` of `hostssl` lines alone, so a
    /// plaintext connection is refused. The admin URL then connects to the certificate's host
    /// with `sslmode=verify-full`.
    pub tls: Option<ServerTls>,
}

/// Loopback connections only, all TLS; trust, like the plain cluster's `initdb --auth=trust`.
const HOSTSSL_ONLY: &str = "local all all trust
hostssl all all 127.0.0.1/32 trust
hostssl replication all 127.0.0.1/32 trust
";

impl PostgresServer {
    /// The server named by `DATABASE_URL` if it is set, else a new throwaway cluster.
    pub async fn from_env_or_start(options: ClusterOptions) -> Result<Self, HarnessError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self::existing(&url),
            _ => Self::start(options).await,
        }
    }

    /// Uses an existing server; the URL's user must be able to create databases.
    pub fn existing(url: &str) -> Result<Self, HarnessError> {
        let admin_url = Url::parse(url).map_err(|error| HarnessError::BadUrl {
            name: "DATABASE_URL",
            detail: error.to_string(),
        })?;
        Ok(PostgresServer {
            admin_url,
            process: None,
        })
    }

    /// `initdb`s and starts a throwaway cluster.
    pub async fn start(options: ClusterOptions) -> Result<Self, HarnessError> {
        let bin = find_bindir()?;
        let owner = ServerUser::current_or_postgres()?;
        let dir = tempfile::Builder::new()
            .prefix("myhealth-pg-")
            .tempdir()
            .map_err(HarnessError::io("failed to create a temporary directory"))?
            .keep();
        owner.take_ownership(&dir)?;
        let data = dir.join("data");

        let mut initdb = owner.command(&bin.join("initdb"));
        initdb
            .current_dir(&dir)
            .arg("--pgdata")
            .arg(&data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync", "--no-instructions"]);
        if let Err(error) = run(&mut initdb) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }

        let port = match options.port {
            Some(port) => port,
            None => free_loopback_port()?,
        };
        let mut server: Vec<String> = owner.prefix();
        server.push(bin.join("postgres").display().to_string());
        server.extend(["-D".to_string(), data.display().to_string()]);
        let mut settings: Vec<(&str, String)> = SERVER_SETTINGS
            .iter()
            .map(|(key, value)| (*key, value.to_string()))
            .collect();
        settings.push(("port", port.to_string()));
        settings.push(("unix_socket_directories", dir.display().to_string()));
        if !options.durable {
            settings.extend(FAST_SETTINGS.iter().map(|(k, v)| (*k, v.to_string())));
        }
        let mut admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        if let Some(tls) = &options.tls {
            let (cert, key, ca) = tls.write_to(&dir)?;
            // PostgreSQL refuses a key that others can read, or that another user owns.
            owner.take_ownership(&key)?;
            write_file(&data.join("pg_hba.conf"), HOSTSSL_ONLY, 0o600)?;
            owner.take_ownership(&data.join("pg_hba.conf"))?;
            settings.push(("ssl", "on".to_string()));
            settings.push(("ssl_cert_file", cert.display().to_string()));
            settings.push(("ssl_key_file", key.display().to_string()));
            admin_url = format!(
                "postgres://postgres@{}:{port}/postgres?sslmode=verify-full&sslrootcert={}",
                tls.host,
                ca.display()
            );
        }
        for (key, value) in settings {
            server.push("-c".to_string());
            server.push(format!("{key}={value}"));
        }
        let log = dir.join("postgres.log");
        let process = Supervised::start(&server, &[], &log, &dir)?;

        let admin_url = Url::parse(&admin_url).map_err(|error| HarnessError::BadUrl {
            name: "cluster URL",
            detail: error.to_string(),
        })?;
        let mut cluster = PostgresServer {
            admin_url,
            process: Some(process),
        };
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// Stops the throwaway cluster (fast shutdown), keeping its data, to simulate an outage.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.stop_server().await
    }

    /// Starts the cluster again after [`PostgresServer::stop`] and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process_mut()?.start_server()?;
        self.wait_until_ready().await
    }

    fn process_mut(&mut self) -> Result<&mut Supervised, HarnessError> {
        self.process.as_mut().ok_or_else(|| HarnessError::Missing {
            what: "a throwaway cluster".to_string(),
            hint: "only a cluster the harness started can be stopped and restarted".to_string(),
        })
    }

    /// The URL of the server's administrative database.
    pub fn admin_url(&self) -> &str {
        self.admin_url.as_str()
    }

    /// The URL of `database` on this server, with the same user and options.
    pub fn url_for(&self, database: &str) -> String {
        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// Connects to `database` on this server; the connection task runs on the current runtime.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, HarnessError> {
        connect(&self.url_for(database)).await
    }

    async fn wait_until_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            let error = match connect(self.admin_url.as_str()).await {
                Ok(_) => return Ok(()),
                Err(error) => error.to_string(),
            };
            let exited = self.process.as_mut().is_some_and(Supervised::has_exited);
            if exited || started.elapsed() > START_TIMEOUT {
                return Err(HarnessError::NotReady {
                    what: "PostgreSQL".to_string(),
                    seconds: started.elapsed().as_secs(),
                    last_error: error,
                    log: self
                        .process
                        .as_ref()
                        .map(Supervised::log_tail)
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Connects with `url` (its `sslmode`/`sslrootcert` as the services read them), spawning the
/// connection task on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, HarnessError> {
    service_plumbing::postgres::connect(url)
        .await
        .map_err(|source| HarnessError::Connect {
            url: redact(url),
            source,
        })
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// The directory holding `initdb` and `postgres`: `$PG_BINDIR`, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf, HarnessError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from)
        && has_server(&dir)
    {
        return Ok(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| HarnessError::Missing {
            what: "PostgreSQL server binaries (initdb, postgres)".to_string(),
            hint: "install Debian's `postgresql` package (scripts/install-deps.sh does), set \
               PG_BINDIR, or set DATABASE_URL to an existing server"
                .to_string(),
        })
}

/// The user the cluster runs as. PostgreSQL refuses to run as root, so as root the harness runs
/// it as the `postgres` system user (created by Debian's package) through `setpriv`.
#[derive(Debug, Clone, Copy)]
enum ServerUser {
    Current,
    Postgres { uid: u32, gid: u32 },
}

impl ServerUser {
    fn current_or_postgres() -> Result<Self, HarnessError> {
        let uid = std::fs::metadata("/proc/self")
            .map_err(HarnessError::io("failed to read the current user id"))?
            .uid();
        if uid != 0 {
            return Ok(ServerUser::Current);
        }
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(HarnessError::io("failed to read /etc/passwd"))?;
        passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
            .and_then(|fields| {
                Some(ServerUser::Postgres {
                    uid: fields[2].parse().ok()?,
                    gid: fields[3].parse().ok()?,
                })
            })
            .ok_or_else(|| HarnessError::Missing {
                what: "the `postgres` system user".to_string(),
                hint: "PostgreSQL refuses to run as root; install Debian's `postgresql` package, \
                       which creates that user"
                    .to_string(),
            })
    }

    fn take_ownership(self, dir: &Path) -> Result<(), HarnessError> {
        if let ServerUser::Postgres { uid, gid } = self {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(HarnessError::io(
                format!("failed to chown {}", dir.display()),
            ))?;
        }
        Ok(())
    }

    /// The words that run a program as this user.
    fn prefix(self) -> Vec<String> {
        match self {
            ServerUser::Current => Vec::new(),
            ServerUser::Postgres { uid, gid } => vec![
                "setpriv".to_string(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_string(),
                "--".to_string(),
            ],
        }
    }

    fn command(self, program: &Path) -> Command {
        let prefix = self.prefix();
        match prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
        }
    }
}
