//! Patient-facing reports API: patients read their own reports from the MongoDB read store.
//!
//! A request flows through [`routes`]: [`auth`] (the bearer JWT names the patient), [`params`]
//! (query parameters parsed into types, bad ones refused with pointers), [`freshness`]
//! (read-your-upload and `X-Data-LSN`), one query of [`store`], and [`views`] (documents → the
//! app's JSON). [`app`] serves the patient web app, whose files are compiled in. [`build`] binds
//! the listener and creates the MongoDB client without waiting for a connection, so tests start
//! the service in-process on port 0.

pub mod app;
pub mod auth;
pub mod freshness;
pub mod params;
pub mod routes;
pub mod store;
pub mod views;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use prometheus::{HistogramOpts, HistogramVec};
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Store query latency by query (list, get, summary, trend).
pub const STORE_QUERY_SECONDS: &str = "reports_store_query_duration_seconds";

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
    /// The CDC daemon's slot, whose checkpoint tells how fresh the store is (`MYHEALTH_SLOT`).
    #[serde(default = "default_slot")]
    pub slot: String,
    /// How patients' tokens are verified (`MYHEALTH_AUTH__*`).
    pub auth: auth::AuthConfig,
}

fn default_slot() -> String {
    read_model::DEFAULT_SLOT.to_owned()
}

fn default_database() -> String {
    "myhealth".to_owned()
}

/// A built service, bound to its port but not yet serving.
pub struct App {
    local_addr: SocketAddr,
    listener: TcpListener,
    server: HttpServer,
    watch: freshness::Watch,
    database: mongodb::Database,
    slot: String,
}

/// Creates the MongoDB client, the routes and the metrics, and binds the listen address.
pub async fn build(config: Config) -> anyhow::Result<App> {
    // A patient waiting on a down store gets a 503 within seconds, not after the driver's 30 s.
    let database = service_plumbing::mongo::database(
        &config.mongodb_uri,
        &config.mongodb_database,
        SERVICE_NAME,
        std::time::Duration::from_secs(3),
    )
    .await?;
    let database = store::majority_reads(&database);
    let checked = database.clone();
    let readiness = Readiness::new().with_check("mongodb", move || {
        service_plumbing::mongo::check(checked.clone())
    });
    let metrics = Metrics::new().context("failed to set up metrics")?;
    let query_seconds = HistogramVec::new(
        HistogramOpts::new(
            STORE_QUERY_SECONDS,
            "Duration of one store query, by query.",
        ),
        &["query"],
    )
    .context("failed to set up metrics")?;
    metrics
        .register(Box::new(query_seconds.clone()))
        .context("failed to set up metrics")?;
    let watch = freshness::Watch::default();
    let state = Arc::new(routes::State {
        database: database.clone(),
        verifier: auth::Verifier::new(&config.auth).context("invalid auth configuration")?,
        watch: watch.clone(),
        query_seconds,
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
        watch,
        database,
        slot: config.slot,
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
        let poller = tokio::spawn(self.watch.poll(self.database, self.slot, shutdown.clone()));
        self.server.serve(self.listener, shutdown).await;
        // The poller may be waiting on an unreachable store; nothing it holds needs finishing.
        poller.abort();
        Ok(())
    }
}
