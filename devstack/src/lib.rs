//! The development and test harness: real PostgreSQL and FerretDB processes on loopback ports.
//!
//! - [`postgres`] starts a throwaway PostgreSQL cluster with `wal_level=logical` (or uses
//!   `DATABASE_URL`);
//! - [`ferretdb`] builds and starts FerretDB 1.24 on its PostgreSQL backend, in a cluster of its
//!   own (or on SQLite with `FERRETDB_BACKEND=sqlite`, or uses `MONGODB_URI`);
//! - [`stack`] is the two together, started once per process and shared by its tests;
//! - [`test_context`] gives each test its own migrated PostgreSQL database and MongoDB database,
//!   and drops them, with every replication slot created in them, when the test ends;
//! - [`prometheus`] runs Prometheus with the project's rules and console dashboard, scraping the
//!   services;
//! - [`roles`] creates the services' least-privilege logins and their URLs;
//! - [`certs`] makes a throwaway CA and server certificates, for servers started with TLS;
//! - [`tablet`] simulates a clinic tablet posting realistic uploads to the ingest API;
//! - [`services`] runs the service binaries as child processes and waits until they are ready
//!   (or, for the daemon, streaming); [`in_process`] runs them inside a test process, alone or
//!   as the whole pipeline on one test's databases;
//! - [`local`] is the local stack of `devstack run`, which writes `target/devstack/env`;
//! - [`process`] keeps the server processes tied to their owner: when the owner goes away, even
//!   by a crash, the server stops and its throwaway data directory is removed.
//!
//! The `devstack` binary uses the same pieces for `make run` and `make test`.

pub mod certs;
pub mod ferretdb;
pub mod in_process;
pub mod local;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod roles;
pub mod services;
pub mod stack;
pub mod tablet;
pub mod test_context;
pub mod workspace;

pub use stack::Stack;
pub use test_context::TestContext;

/// Why the harness could not provide a PostgreSQL server or a MongoDB-compatible store.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program the harness needs is not installed.
    #[error("{what} not found: {hint}")]
    Missing {
        /// What was looked for.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// A command the harness ran failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and the end of its output.
        detail: String,
    },
    /// A server exited before it was ready, or did not become ready in time.
    #[error("{what} was not ready after {seconds} s; last error: {last_error}{log}")]
    NotReady {
        /// Which server.
        what: String,
        /// How long the harness waited (less than its timeout: the server exited).
        seconds: u64,
        /// The last connection error.
        last_error: String,
        /// The end of the server's log, if it has one.
        log: String,
    },
    /// A file system operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What the harness was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A test certificate could not be made.
    #[error("failed to make a test certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A connection to PostgreSQL could not be opened.
    #[error("failed to connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The underlying error.
        #[source]
        source: service_plumbing::postgres::ConnectError,
    },
    /// PostgreSQL refused a harness statement.
    #[error("{action}: {source}")]
    Postgres {
        /// What the harness was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The MongoDB-compatible store refused a harness command.
    #[error("{action}: {source}")]
    Mongo {
        /// What the harness was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: mongodb::error::Error,
    },
    /// Applying the schema migrations failed.
    #[error(transparent)]
    Migration(#[from] source_schema::MigrationError),
    /// A service could not be configured, started or stopped.
    #[error("{service}: {detail}")]
    Service {
        /// Which service.
        service: String,
        /// What went wrong, with its causes.
        detail: String,
    },
    /// A URL from the environment could not be used.
    #[error("invalid {name}: {detail}")]
    BadUrl {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl HarnessError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let action = action.into();
        move |source| HarnessError::Io { action, source }
    }
}
