//! The source limit: `pg_recvlogical` draining a pgoutput slot (the daemon's protocol options,
//! its own slot over the same WAL) to `/dev/null` — how fast PostgreSQL decodes and ships the
//! workload to a client that does nothing with it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

/// Streams `slot` of `url` until `end_lsn`; returns the seconds it took.
pub async fn drain(bindir: &Path, url: &str, slot: &str, end_lsn: &str) -> Result<f64> {
    let started = Instant::now();
    let output = tokio::process::Command::new(bindir.join("pg_recvlogical"))
        .args(["--start", "--no-loop", "--file=/dev/null"])
        .args(["-o", "proto_version=1"])
        .args([
            "-o",
            &format!("publication_names={}", source_schema::PUBLICATION),
        ])
        .arg(format!("--slot={slot}"))
        .arg(format!("--endpos={end_lsn}"))
        .arg(format!("--dbname={url}"))
        .output()
        .await
        .context("failed to run pg_recvlogical")?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "pg_recvlogical failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(seconds)
}
