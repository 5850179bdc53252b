//! Tablet-facing upload API.
//!
//! For now it serves only the built-in `/healthz`, `/readyz` (is PostgreSQL reachable?) and
//! `/metrics`; the upload routes come with their own issue. [`build`] binds the listener and
//! prepares the connection pool without connecting, so tests can start the service in-process
//! on port 0 and read the port from [`App::local_addr`].

mod postgres;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness, Router};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Name of the service in logs.
pub const SERVICE_NAME: &str = "ingest-api";

/// Listen address when `http.listen` is not configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The service's configuration (see `service_plumbing::config` for how it is loaded).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// HTTP server settings (`MYHEALTH_HTTP__*`).
    #[serde(default)]
    pub http: HttpSettings,
    /// PostgreSQL connection URL; may carry a password (`MYHEALTH_DATABASE_URL`).
    pub database_url: SecretString,
    /// Maximum number of pooled PostgreSQL connections (`MYHEALTH_DATABASE_POOL_SIZE`).
    #[serde(default = "default_pool_size")]
    pub database_pool_size: usize,
}

fn default_pool_size() -> usize {
    16
}

/// A built service, bound to its port but not yet serving.
#[derive(Debug)]
pub struct App {
    local_addr: SocketAddr,
    listener: TcpListener,
    server: HttpServer,
}

/// Prepares the PostgreSQL pool, the routes and the metrics, and binds the listen address.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let pool = postgres::pool(&config.database_url, config.database_pool_size)?;
    let readiness = Readiness::new().with_check("postgres", move || {
        let pool = pool.clone();
        async move { postgres::check(&pool).await }
    });
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
