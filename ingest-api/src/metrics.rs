//! The ingest API's own metrics (the request count and latency by route and status come from
//! `service-plumbing`).

use prometheus::{IntCounter, IntCounterVec, Opts};
use service_plumbing::metrics::{Metrics, MetricsError};

/// Uploads by outcome: created, replayed, conflict, invalid, malformed, unauthorized,
/// forbidden, unavailable, overloaded, failed.
pub const UPLOADS_TOTAL: &str = "ingest_uploads_total";
/// Rows written by table.
pub const ROWS_WRITTEN_TOTAL: &str = "ingest_rows_written_total";
/// Reports skipped because they were already stored with identical content.
pub const DUPLICATE_REPORTS_TOTAL: &str = "ingest_duplicate_reports_total";

/// Handles to the ingest metrics.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    uploads: IntCounterVec,
    rows: IntCounterVec,
    duplicates: IntCounter,
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Result<Self, MetricsError> {
        let uploads = IntCounterVec::new(
            Opts::new(UPLOADS_TOTAL, "Uploads received, by outcome."),
            &["outcome"],
        )
        .map_err(MetricsError::Register)?;
        let rows = IntCounterVec::new(
            Opts::new(ROWS_WRITTEN_TOTAL, "Rows written by uploads, by table."),
            &["table"],
        )
        .map_err(MetricsError::Register)?;
        let duplicates = IntCounter::new(
            DUPLICATE_REPORTS_TOTAL,
            "Reports skipped because they were already stored with identical content.",
        )
        .map_err(MetricsError::Register)?;
        metrics.register(Box::new(uploads.clone()))?;
        metrics.register(Box::new(rows.clone()))?;
        metrics.register(Box::new(duplicates.clone()))?;
        Ok(IngestMetrics {
            uploads,
            rows,
            duplicates,
        })
    }

    /// Counts one upload with `outcome`.
    pub fn upload(&self, outcome: &str) {
        self.uploads.with_label_values(&[outcome]).inc();
    }

    /// Counts rows written to `table`.
    pub fn rows(&self, table: &str, count: usize) {
        self.rows
            .with_label_values(&[table])
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts skipped duplicate reports.
    pub fn duplicates(&self, count: usize) {
        self.duplicates
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
}
