//! Everything the ingest API reads from and writes to PostgreSQL.
//!
//! - [`devices`]: tablets and their tokens (authentication, and the operator CLI);
//! - [`uploads`]: one upload in one transaction, idempotent by upload id;
//! - [`patients`]: what an upload may do to the patients it names (the clinic rule), and their
//!   audit trail;
//! - [`reports`]: amending and deleting one report.
//!
//! Each write is one transaction with a fixed number of statements (multi-row `unnest` inserts),
//! never one round trip per row.

pub mod devices;
pub mod patients;
pub mod reports;
pub mod uploads;

use deadpool_postgres::{Pool, PoolError};
use tokio_postgres::error::SqlState;

/// Why a store operation failed, in terms the HTTP layer maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down: 503, try again later.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data the service cannot read back (a bug or a hand edit): 500, logged.
    #[error("unreadable stored data: {0}")]
    Unreadable(String),
    /// The same write lost a race more often than it may be run again: 503, try again later.
    #[error("the write kept meeting concurrent changes: {0}")]
    Contended(&'static str),
    /// Anything else: 500, logged, never shown to the client.
    #[error("database operation failed: {context}")]
    Internal {
        /// What was being done.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl StoreError {
    /// Classifies a driver error from `context`.
    pub(crate) fn from_postgres(context: &'static str, error: tokio_postgres::Error) -> Self {
        let connection_lost = error.is_closed()
            || std::error::Error::source(&error)
                .is_some_and(|source| source.is::<std::io::Error>());
        let unavailable = connection_lost
            || error.code().is_some_and(|code| {
                code.code().starts_with("08") // connection exception
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
            });
        if unavailable {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Internal {
                context,
                source: error,
            }
        }
    }

    /// Whether running the same transaction again may succeed (a concurrent writer won a race).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            StoreError::Internal { source, .. } => matches!(
                source.code(),
                Some(code) if *code == SqlState::UNIQUE_VIOLATION
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            ),
            StoreError::Unavailable(_) | StoreError::Contended(_) | StoreError::Unreadable(_) => {
                false
            }
        }
    }
}

/// A pooled connection, or `Unavailable` when none can be had in time.
pub(crate) async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|error| match error {
        PoolError::Backend(error) => StoreError::from_postgres("connecting", error),
        other => StoreError::Unavailable(Box::new(other)),
    })
}

/// A WAL position at or after the end of every transaction committed so far: once the CDC
/// daemon's checkpoint reaches it, whatever the caller just committed is in the read store.
pub(crate) async fn wal_position_after_commit(
    client: &tokio_postgres::Client,
) -> Result<String, StoreError> {
    let row = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|error| StoreError::from_postgres("reading the WAL position", error))?;
    Ok(row.get(0))
}
