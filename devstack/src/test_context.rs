//! What one test owns: its own migrated PostgreSQL database and its own MongoDB database on the
//! shared [`Stack`], both dropped when the test ends (also when it panics), together with every
//! replication slot created in that PostgreSQL database — a leaked slot would retain WAL forever.

use std::time::Duration;

use uuid::Uuid;

use crate::postgres::{connect, redact};
use crate::roles::{self, ServiceLogin};
use crate::{HarnessError, Stack};

/// An isolated pair of databases for one test.
#[derive(Debug)]
pub struct TestContext {
    /// The PostgreSQL database name, `t_<uuid>`; the MongoDB database has the same name.
    pub database: String,
    /// The URL of the test's PostgreSQL database (superuser on the harness cluster): for the
    /// test's own setup and checks; services connect with [`TestContext::url_as`].
    pub database_url: String,
    /// The connection string of the store.
    pub mongodb_uri: String,
    /// A driver client for the store.
    pub mongo: mongodb::Client,
    /// The database's URL as each service login, in the order of the `ServiceLogin` variants.
    login_urls: [String; 3],
    stack: &'static Stack,
}

impl TestContext {
    /// Creates and migrates a fresh PostgreSQL database and names a fresh MongoDB database.
    pub async fn new() -> Result<TestContext, HarnessError> {
        Self::on(Stack::shared().await?).await
    }

    /// The same on `stack` rather than the shared one (servers started with other settings,
    /// such as TLS).
    pub async fn on(stack: &'static Stack) -> Result<TestContext, HarnessError> {
        let database = format!("t_{}", Uuid::new_v4().simple());
        let admin = connect(stack.postgres.admin_url()).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await
            .map_err(|source| HarnessError::Postgres {
                action: format!("failed to create database {database}"),
                source,
            })?;
        let database_url = stack.postgres.url_for(&database);
        let mut client = connect(&database_url).await?;
        source_schema::migrate(&mut client).await?;
        roles::create_logins(&client).await?;
        let login_urls = [
            roles::url_as(&database_url, ServiceLogin::Ingest)?,
            roles::url_as(&database_url, ServiceLogin::Replication)?,
            roles::url_as(&database_url, ServiceLogin::Readonly)?,
        ];

        let mongodb_uri = stack.store.uri().to_string();
        let mongo = mongodb::Client::with_uri_str(&mongodb_uri)
            .await
            .map_err(|source| HarnessError::Mongo {
                action: "failed to create a MongoDB client".to_string(),
                source,
            })?;
        Ok(TestContext {
            database,
            database_url,
            mongodb_uri,
            mongo,
            login_urls,
            stack,
        })
    }

    /// A new connection to the test's PostgreSQL database.
    pub async fn postgres(&self) -> Result<tokio_postgres::Client, HarnessError> {
        connect(&self.database_url).await
    }

    /// The URL of the test's PostgreSQL database as `login`: what a service under test connects
    /// with.
    pub fn url_as(&self, login: ServiceLogin) -> String {
        let index = match login {
            ServiceLogin::Ingest => 0,
            ServiceLogin::Replication => 1,
            ServiceLogin::Readonly => 2,
        };
        self.login_urls[index].clone()
    }

    /// The test's MongoDB database.
    pub fn store(&self) -> mongodb::Database {
        self.mongo.database(&self.database)
    }

    /// A cluster-wide unique name with `prefix`, for replication slots and publications.
    pub fn unique_name(&self, prefix: &str) -> String {
        format!("{prefix}_{}", Uuid::new_v4().simple())
    }

    /// The shared stack the test runs on.
    pub fn stack(&self) -> &'static Stack {
        self.stack
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: clean up on a thread
        // with a runtime of its own, and wait for it.
        let database = self.database.clone();
        let admin_url = self.stack.postgres.admin_url().to_string();
        let mongodb_uri = self.mongodb_uri.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("failed to start a clean-up runtime: {error}"))?;
            runtime.block_on(drop_databases(&database, &admin_url, &mongodb_uri))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test clean-up of {}: {error}", self.database),
            Err(_) => eprintln!("test clean-up of {} panicked", self.database),
        }
    }
}

/// Drops the replication slots of `database`, then the database itself, then the MongoDB
/// database of the same name.
pub async fn drop_databases(
    database: &str,
    admin_url: &str,
    mongodb_uri: &str,
) -> Result<(), String> {
    let admin = connect(admin_url)
        .await
        .map_err(|error| format!("{}: {error}", redact(admin_url)))?;
    drop_slots(&admin, database).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await
        .map_err(|error| format!("failed to drop database: {error}"))?;

    let mongo = mongodb::Client::with_uri_str(mongodb_uri)
        .await
        .map_err(|error| format!("failed to create a MongoDB client: {error}"))?;
    mongo
        .database(database)
        .drop()
        .await
        .map_err(|error| format!("failed to drop MongoDB database: {error}"))?;
    Ok(())
}

/// Drops every replication slot of `database`, first ending the walsenders that hold them.
pub async fn drop_slots(admin: &tokio_postgres::Client, database: &str) -> Result<(), String> {
    for _attempt in 0..50 {
        admin
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active_pid IS NOT NULL",
                &[&database],
            )
            .await
            .map_err(|error| format!("failed to end walsenders: {error}"))?;
        let dropped = admin
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1 AND NOT active",
                &[&database],
            )
            .await;
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                &[&database],
            )
            .await
            .map_err(|error| format!("failed to list replication slots: {error}"))?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        // A slot that became active again between the two statements: try again shortly.
        if let Err(error) = dropped {
            eprintln!("retrying replication slot clean-up after: {error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "replication slots of {database} are still in use after 5 s"
    ))
}
