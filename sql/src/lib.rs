//! The PostgreSQL source schema: versioned migrations (tables, publication, roles) embedded
//! from `sql/migrations/` and applied with refinery.
//!
//! Applying is idempotent: refinery records applied versions in `refinery_schema_history` and
//! skips them on the next run.

/// The publication that lists exactly the tables the CDC daemon consumes.
pub const PUBLICATION: &str = "myhealth_cdc";

/// The group role of the ingest API.
pub const INGEST_ROLE: &str = "myhealth_ingest";
/// The group role of the CDC daemon (its login also needs the REPLICATION attribute).
pub const REPLICATION_ROLE: &str = "myhealth_replication";
/// The group role of read-only tools.
pub const READONLY_ROLE: &str = "myhealth_readonly";

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Failure to bring the schema up to date.
#[derive(Debug, thiserror::Error)]
#[error("failed to apply the source schema migrations")]
pub struct MigrationError(#[source] refinery::Error);

/// Applies every migration not yet applied to the database `client` is connected to, and
/// returns the names of the ones it applied (empty when the schema was already current).
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<String>, MigrationError> {
    let report = embedded::migrations::runner()
        .run_async(client)
        .await
        .map_err(MigrationError)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|migration| migration.to_string())
        .collect())
}
