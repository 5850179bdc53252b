//! Every PostgreSQL connection of the project goes through here, so that `sslmode` and
//! `sslrootcert` mean the same everywhere ([`tls`]): the pool of a service and its readiness
//! check (the ingest API writes through it; the daemon uses it for readiness and catalog
//! polling), and [`connect`] for single connections (the daemon's snapshot and support reads,
//! `cdc-daemon verify`, operator commands, migrations, the dev harness).

pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};

/// Bound on connecting, and on waiting for a free pooled connection, so a stuck database shows
/// up as an error rather than as requests that never finish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `database_url` or its TLS settings are unusable (the message names the option, never
    /// the URL).
    #[error(transparent)]
    BadUrl(#[from] tls::ConfigError),
    /// The pool could not be built.
    #[error("failed to build the postgres pool")]
    Build(#[source] deadpool_postgres::BuildError),
}

/// A pool of at most `size` connections to `url`, named `application_name` in PostgreSQL
/// unless the URL names it. Connects lazily: no I/O happens here.
pub fn pool(url: &SecretString, size: usize, application_name: &str) -> Result<Pool, PoolError> {
    let tls::Target {
        mut config,
        tls: settings,
    } = tls::parse(url.expose_secret())?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    let manager = Manager::from_config(
        config,
        settings.connector()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(PoolError::Build)
}

/// Why a single connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or its TLS settings are unusable.
    #[error(transparent)]
    Config(#[from] tls::ConfigError),
    /// The server could not be reached, refused TLS, failed verification or refused the login.
    #[error("failed to connect to PostgreSQL: {}", with_causes(.0))]
    Postgres(tokio_postgres::Error),
}

/// One connection to `url` with its `sslmode`/`sslrootcert`; the connection task runs on the
/// current runtime until the client is dropped.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, ConnectError> {
    let target = tls::parse(url)?;
    let (client, connection) = target
        .config
        .connect(target.tls.connector()?)
        .await
        .map_err(ConnectError::Postgres)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}

/// Readiness: a pooled connection answers `SELECT 1`.
pub async fn check(pool: &Pool) -> Result<(), String> {
    let client = pool
        .get()
        .await
        .map_err(|error| format!("no connection: {}", with_causes(&error)))?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|error| format!("query failed: {}", with_causes(&error)))?;
    Ok(())
}

/// `error` and its sources joined by `: `, skipping a source whose message the text already
/// ends with (the pool repeats its backend error's message; that error omits its own cause).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
