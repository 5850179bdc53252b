//! The ingest API over real HTTP against a real PostgreSQL: one binary, one module per concern.

#![allow(clippy::unwrap_used, missing_docs)]

mod abuse;
mod amendments;
mod flood;
mod limits;
mod openapi;
mod support;
mod uploads;
