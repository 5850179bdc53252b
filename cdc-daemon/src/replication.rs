//! The `replication` step: the slot and the stream of pgoutput messages.
//!
//! [`connect`] connects with `replication=database` (TLS and SCRAM through `pgwire-replication`)
//! and checks on that same session what replication needs — `wal_level=logical`, a role with
//! `REPLICATION`, the publication — failing with a message naming what is missing. On that
//! session the daemon then finds, drops or creates the slot (pgoutput, with an exported snapshot
//! for the initial copy) and starts streaming from the given position. The
//! session pins `DateStyle=ISO` and `TimeZone=UTC` so values decode the same everywhere.
//! PostgreSQL lets one session hold a slot: while another daemon holds it, starting fails with
//! [`ReplicationError::SlotInUse`] and the caller waits to take over.

use std::time::Duration;

use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use secrecy::{ExposeSecret, SecretString};
use service_plumbing::postgres::tls;

use crate::decode::{Begin, Commit, LogicalMessage};

/// How often confirmed positions reach the server (after each checkpoint, at most this late).
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest silence before the client sends a status update anyway.
const IDLE_WAKEUP: Duration = Duration::from_secs(10);

/// Where to replicate from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The source database URL (`postgres://user:password@host:port/db?sslmode=...`).
    pub url: SecretString,
    /// The logical replication slot (pgoutput) streamed from; the daemon creates it, with an
    /// initial snapshot, when it is missing.
    pub slot: String,
    /// The publication whose tables the slot streams; created by the migrations, not here.
    pub publication: String,
}

/// Why replication could not start or went on.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// `database_url` is unusable.
    #[error("database_url is invalid: {0}")]
    BadUrl(String),
    /// The server is not set up for logical replication.
    #[error(
        "wal_level is {0:?}; logical replication needs wal_level = logical (postgresql.conf, then restart)"
    )]
    WalLevel(String),
    /// The role cannot replicate.
    #[error("role {0:?} lacks the REPLICATION attribute (ALTER ROLE {0} REPLICATION)")]
    NotReplicationRole(String),
    /// The publication is missing.
    #[error(
        "publication {0:?} does not exist in the source database; apply the migrations in sql/"
    )]
    NoPublication(String),
    /// The slot exists but was made for another output plugin.
    #[error(
        "replication slot {slot:?} uses plugin {plugin:?}, not pgoutput; drop it or choose another slot"
    )]
    WrongPlugin {
        /// The slot.
        slot: String,
        /// Its plugin.
        plugin: String,
    },
    /// Another session holds the slot.
    #[error("replication slot {0:?} is held by another session")]
    SlotInUse(String),
    /// Any other failure of the connection or the server.
    #[error("replication connection failed: {0}")]
    Connection(#[from] pgwire_replication::PgWireError),
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A transaction begins (parsed by the client library).
    Begin(Begin),
    /// An encoded pgoutput message (Relation, Insert, Update, Delete, Truncate, Type, Origin),
    /// for the `decode` step.
    Data(Bytes),
    /// The transaction committed (parsed by the client library).
    Commit(Commit),
    /// A logical decoding message (parsed by the client library).
    Message(LogicalMessage),
    /// The server is alive and has sent everything before `wal_end`.
    KeepAlive {
        /// The server's position.
        wal_end: u64,
    },
}

/// A started replication stream.
pub struct Stream {
    client: ReplicationClient,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

/// A checked replication session that has not started streaming: what runs on it before
/// [`Connection::start`] (creating or dropping the slot) runs on the same server session.
pub struct Connection {
    client: ReplicationClient,
    slot: String,
}

/// A slot created with an exported snapshot: the database as of the slot's start, readable from
/// other sessions (`SET TRANSACTION SNAPSHOT`) until the creating session runs another command.
#[derive(Debug, Clone)]
pub struct ExportedSnapshot {
    /// The snapshot's name.
    pub name: String,
    /// Transactions committing after this position are streamed; those before are in the
    /// snapshot.
    pub consistent_lsn: u64,
}

/// Connects and checks what replication needs; streaming will start with transactions that
/// commit after `start_lsn` (0: from the slot's confirmed position).
pub async fn connect(source: &Source, start_lsn: u64) -> Result<Connection, ReplicationError> {
    let config = connection_config(source)?
        .with_start_lsn(Lsn::from_u64(start_lsn))
        .with_options("-c DateStyle=ISO -c TimeZone=UTC")
        .with_application_name(crate::SERVICE_NAME)
        .with_status_interval(STATUS_INTERVAL)
        .with_wakeup_interval(IDLE_WAKEUP);
    let user = config.user.clone();
    let mut client = ReplicationClient::connect_gated(config)
        .await
        .map_err(|error| explain(error, &user))?;

    let wal_level = single_text(&mut client, "SHOW wal_level")
        .await?
        .unwrap_or_default();
    if wal_level != "logical" {
        return Err(ReplicationError::WalLevel(wal_level));
    }
    let can_replicate = single_text(
        &mut client,
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .await?;
    if can_replicate.as_deref() != Some("t") {
        return Err(ReplicationError::NotReplicationRole(user));
    }
    let publication = single_text(
        &mut client,
        &format!(
            "SELECT pubname FROM pg_publication WHERE pubname = {}",
            quote(&source.publication)
        ),
    )
    .await?;
    if publication.is_none() {
        return Err(ReplicationError::NoPublication(source.publication.clone()));
    }
    Ok(Connection {
        client,
        slot: source.slot.clone(),
    })
}

impl Connection {
    /// Whether the slot exists (a slot of another output plugin is an error).
    pub async fn slot_exists(&mut self) -> Result<bool, ReplicationError> {
        let plugin = single_text(
            &mut self.client,
            &format!(
                "SELECT plugin FROM pg_replication_slots WHERE slot_name = {}",
                quote(&self.slot)
            ),
        )
        .await?;
        match plugin.as_deref() {
            None => Ok(false),
            Some("pgoutput") => Ok(true),
            Some(other) => Err(ReplicationError::WrongPlugin {
                slot: self.slot.clone(),
                plugin: other.to_string(),
            }),
        }
    }

    /// Drops the slot; fails with [`ReplicationError::SlotInUse`] while a session holds it.
    pub async fn drop_slot(&mut self) -> Result<(), ReplicationError> {
        self.client
            .simple_query(&format!("DROP_REPLICATION_SLOT \"{}\"", self.slot))
            .await
            .map_err(|error| in_use(error, &self.slot))?;
        tracing::info!(slot = %self.slot, "dropped replication slot");
        Ok(())
    }

    /// Creates the slot (pgoutput) and exports its snapshot. Use the snapshot before
    /// [`start`](Self::start): starting ends it.
    pub async fn create_slot(&mut self) -> Result<ExportedSnapshot, ReplicationError> {
        let rows = self
            .client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput (SNAPSHOT 'export')",
                self.slot
            ))
            .await?;
        // Columns: slot_name, consistent_point, snapshot_name, output_plugin.
        let column = |index: usize| {
            rows.first()
                .and_then(|row| row.get(index).cloned().flatten())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        let (Some(consistent_point), Some(name)) = (column(1), column(2)) else {
            return Err(ReplicationError::Connection(
                pgwire_replication::PgWireError::Internal(
                    "CREATE_REPLICATION_SLOT returned no snapshot".into(),
                ),
            ));
        };
        let consistent_lsn = read_model::lsn::parse(&consistent_point).map_err(|error| {
            ReplicationError::Connection(pgwire_replication::PgWireError::Internal(
                error.to_string(),
            ))
        })?;
        tracing::info!(slot = %self.slot, consistent_point, snapshot = %name, "created replication slot");
        Ok(ExportedSnapshot {
            name,
            consistent_lsn,
        })
    }

    /// Starts streaming.
    pub async fn start(mut self) -> Result<Stream, ReplicationError> {
        self.client.start().await?;
        let slot = self.slot.clone();
        self.client
            .wait_started()
            .await
            .map_err(|error| in_use(error, &slot))?;
        Ok(Stream {
            client: self.client,
        })
    }
}

/// Names the usual "slot is active for PID n" failure.
fn in_use(error: pgwire_replication::PgWireError, slot: &str) -> ReplicationError {
    if error.to_string().contains("is active for PID") {
        ReplicationError::SlotInUse(slot.to_string())
    } else {
        ReplicationError::Connection(error)
    }
}

impl Stream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ReplicationError> {
        let event = match self.client.recv().await? {
            None => return Ok(None),
            Some(event) => event,
        };
        Ok(Some(match event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => Event::Begin(Begin {
                final_lsn: final_lsn.as_u64(),
                commit_time_micros,
                xid,
            }),
            ReplicationEvent::XLogData { data, .. } => Event::Data(data),
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => Event::Commit(Commit {
                flags: 0,
                commit_lsn: lsn.as_u64(),
                end_lsn: end_lsn.as_u64(),
                commit_time_micros,
            }),
            ReplicationEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => Event::Message(LogicalMessage {
                transactional,
                lsn: lsn.as_u64(),
                prefix,
                content,
            }),
            ReplicationEvent::KeepAlive { wal_end, .. }
            | ReplicationEvent::StoppedAt { reached: wal_end } => Event::KeepAlive {
                wal_end: wal_end.as_u64(),
            },
        }))
    }

    /// Tells the server that everything before `lsn` is durably applied, so the slot may
    /// release that WAL (sent within a second, and on every status update after).
    pub fn confirm(&self, lsn: u64) {
        self.client.update_applied_lsn(Lsn::from_u64(lsn));
    }

    /// Ends the stream cleanly, sending the last confirmed position.
    pub async fn close(mut self) {
        if let Err(error) = self.client.shutdown().await {
            tracing::debug!(%error, "replication stream ended with an error while closing");
        }
    }
}

/// The connection part of the client configuration, from `database_url`, with the same
/// `sslmode`/`sslrootcert` meanings as every other connection (`service_plumbing::postgres::tls`).
fn connection_config(source: &Source) -> Result<ReplicationConfig, ReplicationError> {
    let target = tls::parse(source.url.expose_secret())
        .map_err(|error| ReplicationError::BadUrl(error.to_string()))?;
    let url = &target.config;
    let host = match url.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = url.get_ports().first().copied().unwrap_or(5432);
    let user = url
        .get_user()
        .ok_or_else(|| ReplicationError::BadUrl("no user".to_string()))?
        .to_string();
    let password = url
        .get_password()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    let database = url.get_dbname().unwrap_or(&user).to_string();
    Ok(ReplicationConfig::new(
        host.clone(),
        user,
        password,
        database,
        source.slot.clone(),
        source.publication.clone(),
    )
    .with_port(port)
    .with_tls(replication_tls(&target.tls, &host))
    .with_buffer_size(BUFFERED_EVENTS))
}

/// pgoutput messages the replication client reads ahead of the daemon. Under a backlog the
/// buffer stays full, so it is resident memory outside the memory budget: each message is an
/// allocation of its own, a row change of a few hundred bytes. The client's default, 8,192, kept
/// several MiB; a fifth of a default batch keeps the decoder fed, with the socket's buffer
/// behind it.
const BUFFERED_EVENTS: usize = 1024;

/// The same mode for pgwire-replication's own rustls TLS. Its `Prefer` and `Require` check no
/// certificate (like libpq); `sslrootcert=system` is its built-in Mozilla root set, as here.
/// It refuses `VerifyFull` to an IP address unless the TLS server name is set, although an IP
/// address SAN verifies like a DNS name: naming the host itself keeps libpq's meaning.
/// Its `VerifyCa` (0.5.0) also fails on a certificate for another name — its chain-only
/// verifier misses the error variant rustls 0.23 reports — so on this connection `verify-ca`
/// is as strict as `verify-full`: stricter than libpq, never weaker.
fn replication_tls(settings: &tls::Tls, host: &str) -> TlsConfig {
    let ca = match &settings.root {
        Some(tls::RootCert::File(path)) => Some(path.clone()),
        Some(tls::RootCert::System) | None => None,
    };
    match settings.mode {
        tls::SslMode::Disable => TlsConfig::disabled(),
        tls::SslMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        tls::SslMode::Require => TlsConfig::require(),
        tls::SslMode::VerifyCa => TlsConfig::verify_ca(ca),
        tls::SslMode::VerifyFull => TlsConfig::verify_full(ca).with_sni_hostname(host),
    }
}

/// The first column of the first row of `sql`, if any.
async fn single_text(
    client: &mut ReplicationClient,
    sql: &str,
) -> Result<Option<String>, ReplicationError> {
    let rows = client.simple_query(sql).await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Turns "must be superuser or replication role" into the error naming the missing attribute.
fn explain(error: pgwire_replication::PgWireError, user: &str) -> ReplicationError {
    if error.to_string().contains("replication role") {
        ReplicationError::NotReplicationRole(user.to_string())
    } else {
        ReplicationError::Connection(error)
    }
}

/// PostgreSQL's epoch (2000-01-01) in Unix milliseconds.
const POSTGRES_EPOCH_MILLIS: i64 = 946_684_800_000;

/// A PostgreSQL timestamp (microseconds since 2000-01-01) as Unix milliseconds.
pub fn unix_millis(postgres_micros: i64) -> i64 {
    POSTGRES_EPOCH_MILLIS + postgres_micros / 1000
}
