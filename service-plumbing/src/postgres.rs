//! The PostgreSQL connection pool of a service and its readiness check (the ingest API writes
//! through it; the daemon uses it for readiness and catalog polling).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;

/// Bound on connecting, and on waiting for a free pooled connection, so a stuck database shows
/// up as an error rather than as requests that never finish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `database_url` does not parse (the message names the option, never the URL).
    #[error("failed to parse database_url")]
    BadUrl(#[source] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("failed to build the postgres pool")]
    Build(#[source] deadpool_postgres::BuildError),
}

/// A pool of at most `size` connections to `url`, named `application_name` in PostgreSQL
/// unless the URL names it. Connects lazily: no I/O happens here.
pub fn pool(url: &SecretString, size: usize, application_name: &str) -> Result<Pool, PoolError> {
    let mut config =
        tokio_postgres::Config::from_str(url.expose_secret()).map_err(PoolError::BadUrl)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    let manager = Manager::from_config(
        config,
        NoTls,
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
