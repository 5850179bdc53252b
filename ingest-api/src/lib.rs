//! Tablet-facing upload API: clinic tablets bulk-upload checkups, amend and delete reports.
//!
//! A request flows through [`routes`] (HTTP), [`auth`] (device token), [`body`] (content type,
//! gzip, size limit), [`validation`] (JSON → the domain types of [`upload`], or every problem
//! with its JSON pointer) and [`store`] (one PostgreSQL transaction). [`build`] binds the
//! listener and prepares the pool without connecting, so tests start the service in-process on
//! port 0 and read the port from [`App::local_addr`].

pub mod auth;
pub mod body;
pub mod metrics;
pub mod routes;
pub mod store;
pub mod upload;
pub mod validation;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    /// Largest upload body in bytes, after decompression (`MYHEALTH_MAX_BODY_BYTES`).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Uploads processed at once; more are refused with 503 and `Retry-After`
    /// (`MYHEALTH_MAX_CONCURRENT_UPLOADS`). With `max_body_bytes` and `max_json_values` it sets
    /// the worst-case memory: see docs/security.md#memory.
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Most JSON values read from one upload body, counted while parsing; more is 413
    /// (`MYHEALTH_MAX_JSON_VALUES`).
    #[serde(default = "default_max_json_values")]
    pub max_json_values: usize,
    /// The CDC daemon's replication slot, whose confirmed position tells whether an upload is
    /// in the read store (`MYHEALTH_SLOT`).
    #[serde(default = "default_slot")]
    pub slot: String,
    /// How long an authenticated device is remembered, so that its requests cost no lookup
    /// (`MYHEALTH_DEVICE_CACHE_SECONDS`); a revoked device's token keeps working for at most
    /// this long. Zero looks every request's device up.
    #[serde(default = "default_device_cache_seconds")]
    pub device_cache_seconds: u64,
}

fn default_pool_size() -> usize {
    16
}

fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_max_concurrent_uploads() -> usize {
    8
}

fn default_max_json_values() -> usize {
    validation::Limits::default().max_upload_values
}

fn default_device_cache_seconds() -> u64 {
    5
}

fn default_slot() -> String {
    read_model::DEFAULT_SLOT.to_owned()
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
    let pool = service_plumbing::postgres::pool(
        &config.database_url,
        config.database_pool_size,
        SERVICE_NAME,
    )?;
    let checked = pool.clone();
    let readiness = Readiness::new().with_check("postgres", move || {
        let pool = checked.clone();
        async move { service_plumbing::postgres::check(&pool).await }
    });
    let metrics = Metrics::new().context("failed to set up metrics")?;
    let state = Arc::new(routes::State {
        pool,
        devices: auth::DeviceCache::new(std::time::Duration::from_secs(
            config.device_cache_seconds,
        )),
        max_body_bytes: config.max_body_bytes,
        limits: validation::Limits {
            max_upload_values: config.max_json_values,
            ..validation::Limits::default()
        },
        slot: config.slot.clone(),
        upload_permits: Arc::new(Semaphore::new(config.max_concurrent_uploads)),
        metrics: metrics::IngestMetrics::register(&metrics).context("failed to set up metrics")?,
    });
    let router = routes::router(state).context("failed to set up routes")?;
    let server = HttpServer::new(config.http.clone(), router, readiness, metrics)
        .context("failed to set up http server")?;
    let (listener, local_addr) =
        service_plumbing::http::bind(config.http.listen_or(DEFAULT_LISTEN)).await?;
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
