//! Patient-facing reports API.
//!
//! For now it serves only the built-in `/healthz`, `/readyz` (does MongoDB answer `ping`?) and
//! `/metrics`; the report routes come with their own issue. [`build`] binds the listener and
//! creates the MongoDB client without waiting for a connection, so tests can start the service
//! in-process on port 0 and read the port from [`App::local_addr`].

mod mongo;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness, Router};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Name of the service in logs and in MongoDB's `appName`.
pub const SERVICE_NAME: &str = "reports-api";

/// Listen address when `http.listen` is not configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8081);

/// The service's configuration (see `service_plumbing::config` for how it is loaded).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// HTTP server settings (`MYHEALTH_HTTP__*`).
    #[serde(default)]
    pub http: HttpSettings,
    /// MongoDB connection string; may carry a password (`MYHEALTH_MONGODB_URI`).
    pub mongodb_uri: SecretString,
    /// Database holding the read store (`MYHEALTH_MONGODB_DATABASE`).
    #[serde(default = "default_database")]
    pub mongodb_database: String,
}

fn default_database() -> String {
    "myhealth".to_owned()
}

/// A built service, bound to its port but not yet serving.
#[derive(Debug)]
pub struct App {
    local_addr: SocketAddr,
    listener: TcpListener,
    server: HttpServer,
}

/// Creates the MongoDB client, the routes and the metrics, and binds the listen address.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let database = mongo::database(&config.mongodb_uri, &config.mongodb_database).await?;
    let readiness = Readiness::new().with_check("mongodb", move || mongo::check(database.clone()));
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
    /// The bound address (with the real port when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests until `shutdown` is triggered and open requests have finished or the
    /// shutdown deadline has passed.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.server.serve(self.listener, shutdown).await;
        Ok(())
    }
}
