//! Freshness: commit-to-store latency at a steady ingest rate. Uploads are posted at a fixed
//! rate through the ingest API while the daemon (already caught up) keeps the store in step;
//! the latency of each source transaction is the daemon's own `cdc_commit_to_store_seconds`
//! histogram (PostgreSQL's commit timestamp to the checkpoint write), read before and after.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use devstack::tablet::Tablet;
use serde::Serialize;

use crate::services::{Service, histogram_quantile, share_at_or_below};

const HISTOGRAM: &str = "cdc_commit_to_store_seconds";
const STORE_COMMANDS_SUM: &str = "cdc_store_write_duration_seconds_sum";
const STORE_COMMANDS_COUNT: &str = "cdc_store_write_duration_seconds_count";

/// What the steady run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// Uploads per second offered.
    pub uploads_per_second: f64,
    /// Uploads posted.
    pub uploads: usize,
    /// Median commit-to-store latency, milliseconds (interpolated inside the histogram bucket).
    pub p50_ms: f64,
    /// 99th percentile, milliseconds (interpolated inside the histogram bucket).
    pub p99_ms: f64,
    /// Share of transactions in the store within 250 ms (exact: a bucket boundary).
    pub within_250ms: f64,
    /// Mean duration of one store write command meanwhile, milliseconds
    /// (`cdc_store_write_duration_seconds`): how much of the latency the store itself takes.
    pub store_command_ms: f64,
    /// Store write commands per upload meanwhile.
    pub commands_per_upload: f64,
}

/// Posts `rate` uploads per second for `seconds` and reads the daemon's latency histogram.
pub async fn steady(
    daemon: &mut Service,
    ingest_url: &str,
    token: &str,
    rate: f64,
    seconds: u64,
) -> Result<Freshness> {
    let scraped = daemon.metrics().await?;
    let before = scraped.buckets(HISTOGRAM);
    let store_before = (
        scraped.sum(STORE_COMMANDS_SUM),
        scraped.sum(STORE_COMMANDS_COUNT),
    );
    let observed_before = before.last().map_or(0.0, |(_, count)| *count);
    let mut tablet = Tablet::new(ingest_url, token, 77);
    let patients: Vec<_> = (0..16).map(|_| tablet.patient()).collect();
    let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let count = ((rate * seconds as f64).round() as usize).max(1);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut posts = Vec::new();
    for number in 0..count {
        ticker.tick().await;
        let upload = tablet.upload(
            &patients[number % patients.len()],
            time::OffsetDateTime::now_utc(),
        );
        let poster = tablet.clone();
        posts.push(tokio::spawn(async move { poster.post(&upload).await }));
    }
    for post in posts {
        post.await
            .context("an upload task panicked")?
            .context("a steady-rate upload failed")?;
    }
    // One published transaction per upload: wait until the daemon has stored them all.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (after, store_after) = loop {
        daemon.ensure_running()?;
        let scraped = daemon.metrics().await?;
        let buckets = scraped.buckets(HISTOGRAM);
        let observed = buckets.last().map_or(0.0, |(_, count)| *count);
        if observed - observed_before >= count as f64 {
            let store = (
                scraped.sum(STORE_COMMANDS_SUM),
                scraped.sum(STORE_COMMANDS_COUNT),
            );
            break (buckets, store);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon did not store every upload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(Freshness {
        uploads_per_second: rate,
        uploads: count,
        p50_ms: histogram_quantile(&before, &after, 0.5) * 1000.0,
        p99_ms: histogram_quantile(&before, &after, 0.99) * 1000.0,
        within_250ms: share_at_or_below(&before, &after, 0.25),
        store_command_ms: (store_after.0 - store_before.0) / (store_after.1 - store_before.1)
            * 1000.0,
        commands_per_upload: (store_after.1 - store_before.1) / count as f64,
    })
}
