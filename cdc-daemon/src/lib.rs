//! Change-data-capture daemon: PostgreSQL logical replication into the MongoDB read store.
//!
//! The replication pipeline is added by the CDC issue; for now the daemon only serves its
//! operations port: `/healthz`, `/readyz` (PostgreSQL and MongoDB reachable) and `/metrics`.

mod mongo;
mod postgres;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness, Router};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Name of the daemon in logs, in PostgreSQL's `application_name` and in MongoDB's `appName`.
pub const SERVICE_NAME: &str = "cdc-daemon";

/// Listen address of the operations port when `http.listen` is not configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9187);

/// Size of the PostgreSQL pool used for readiness checks.
const POSTGRES_POOL_SIZE: usize = 2;

/// The daemon's configuration (see `service_plumbing::config` for how it is loaded).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Operations HTTP server settings (`MYHEALTH_HTTP__*`).
    #[serde(default)]
    pub http: HttpSettings,
    /// Source PostgreSQL connection URL; may carry a password (`MYHEALTH_DATABASE_URL`).
    pub database_url: SecretString,
    /// MongoDB connection string; may carry a password (`MYHEALTH_MONGODB_URI`).
    pub mongodb_uri: SecretString,
    /// Database holding the read store (`MYHEALTH_MONGODB_DATABASE`).
    #[serde(default = "default_database")]
    pub mongodb_database: String,
}

fn default_database() -> String {
    "myhealth".to_owned()
}

/// A built daemon, bound to its operations port but not yet running.
#[derive(Debug)]
pub struct App {
    local_addr: SocketAddr,
    listener: TcpListener,
    server: HttpServer,
}

/// Prepares the PostgreSQL pool and the MongoDB client (neither connects yet), the metrics,
/// and binds the operations port.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let pool = postgres::pool(&config.database_url, POSTGRES_POOL_SIZE)?;
    let database = mongo::database(&config.mongodb_uri, &config.mongodb_database).await?;
    let readiness = Readiness::new()
        .with_check("postgres", move || {
            let pool = pool.clone();
            async move { postgres::check(&pool).await }
        })
        .with_check("mongodb", move || mongo::check(database.clone()));
    let metrics = Metrics::new().context("failed to set up metrics")?;
    let server = HttpServer::new(config.http.clone(), Router::new(), readiness, metrics)
        .context("failed to set up http server")?;
    let listen = config.http.listen_or(DEFAULT_LISTEN);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let local_addr = listener
        .local_addr()
        .context("failed to read the bound address")?;
    Ok(App {
        local_addr,
        listener,
        server,
    })
}

impl App {
    /// The bound operations address (with the real port when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the operations port until `shutdown` is triggered.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.server.serve(self.listener, shutdown).await;
        Ok(())
    }
}
