//! Shared plumbing of the thin hyper services (`ingest-api`, `reports-api`, `cdc-daemon`).
//!
//! Each service loads its settings with [`config::load`], starts JSON logs with
//! [`telemetry::init_tracing`], creates a [`shutdown::Shutdown`] that listens for signals, and
//! serves its routes with [`http::HttpServer`], which adds `/healthz`, `/readyz` and `/metrics`
//! and turns every error into an RFC 9457 [`problem::Problem`]. The services that talk to
//! PostgreSQL build their pool with [`postgres::pool`], those that read or write the MongoDB store
//! their client with [`mongo::database`].

pub mod config;
pub mod http;
pub mod metrics;
pub mod mongo;
pub mod postgres;
pub mod problem;
pub mod shutdown;
pub mod telemetry;
