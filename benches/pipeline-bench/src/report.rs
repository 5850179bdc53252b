//! The benchmark's report: the machine, the workloads, every measurement, and the table of
//! figures against their references and targets, as JSON and as markdown for
//! `docs/benchmarks.md` (written between two marker comments, so the prose around it stays).

use std::path::Path;

use anyhow::{Context, Result};
use cdc_daemon::DEFAULT_WRITE_LANES;
use serde::Serialize;

use crate::freshness::Freshness;
use crate::load::Load;
use crate::workload::Workload;
use crate::{Drain, LanesRun, Settings};

const START: &str = "<!-- pipeline-bench:start -->";
const END: &str = "<!-- pipeline-bench:end -->";
const MIB: f64 = 1024.0 * 1024.0;

/// The machine the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    /// RAM, GiB.
    pub ram_gib: f64,
    /// Which store the run wrote to: FerretDB and its backend, or the MongoDB at `MONGODB_URI`.
    pub store: String,
}

impl Machine {
    /// Reads `/proc`; `store` says which store the run measured.
    pub fn read(store: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split(':').nth(1))
                .map(|value| value.trim().to_string())
                .unwrap_or_default()
        };
        let ram_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        Machine {
            cpu: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            ram_gib: (ram_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            store,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran: a ratio means little without the cores and the store.
    pub machine: Machine,
    /// Uploads of the large workload.
    pub uploads: usize,
    /// Uploads of the store workload.
    pub store_uploads: usize,
    /// Uploads of the lanes workload.
    pub lanes_uploads: usize,
    /// Seconds of each timed load.
    pub seconds: u64,
    /// Clients of the loads.
    pub clients: usize,
    /// What was generated for a, b and e (the WAL both readers drain).
    pub large: Workload,
    /// What was generated for c, d and g (small enough for the store to take in one run).
    pub small: Workload,
    /// What was generated for c by lanes (small enough for eight runs).
    pub lanes_workload: Workload,
    /// a. pg_recvlogical's seconds over the large workload.
    pub source_seconds: f64,
    /// b. the daemon with a discard sink over the large workload.
    pub discard: Drain,
    /// c. the daemon into the store over the store workload (its RSS is the backlog's peak).
    pub store: Drain,
    /// e. the peak resident set size of c's daemon while d streams, bytes.
    pub streaming_peak_rss_bytes: u64,
    /// Row changes the store reference wrote.
    pub store_reference_changes: usize,
    /// Seconds the store reference took.
    pub store_reference_seconds: f64,
    /// d. freshness.
    pub freshness: Option<Freshness>,
    /// f. the ingest API at saturation.
    pub ingest: Option<Load>,
    /// f. pgbench transactions (uploads) per second.
    pub pgbench_tps: f64,
    /// g. the reports API's list page.
    pub reports: Option<Load>,
    /// g. the same query from a driver loop.
    pub reports_driver: Option<Load>,
    /// c by lanes, in order of lanes.
    pub by_lanes: Vec<LanesRun>,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// What is measured.
    pub figure: String,
    /// The project's value, formatted with its unit.
    pub value: String,
    /// What it is compared with, and that reference's value in the same run.
    pub reference: String,
    /// value / reference.
    pub ratio: Option<f64>,
    /// The goal the ratio or value is held to (e.g. `≥ 0.8`).
    pub target: String,
    /// Whether it is met.
    pub met: bool,
}

impl Report {
    /// An empty report for `settings` on `machine`.
    pub fn new(machine: Machine, settings: &Settings) -> Report {
        Report {
            machine,
            uploads: settings.uploads,
            store_uploads: settings.store_uploads,
            lanes_uploads: settings.lanes_uploads,
            seconds: settings.seconds,
            clients: settings.clients,
            large: Workload::default(),
            small: Workload::default(),
            lanes_workload: Workload::default(),
            source_seconds: 0.0,
            discard: Drain::default(),
            store: Drain::default(),
            streaming_peak_rss_bytes: 0,
            store_reference_changes: 0,
            store_reference_seconds: 0.0,
            freshness: None,
            ingest: None,
            pgbench_tps: 0.0,
            reports: None,
            reports_driver: None,
            by_lanes: Vec::new(),
        }
    }

    /// The table: every figure against its reference and target.
    pub fn lines(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        let source = self.discard.changes / self.source_seconds;
        let discard = self.discard.rows_per_second();
        lines.push(ratio_line(
            &format!(
                "b. daemon, discard sink (decode + map + batch), rows/s (peak RSS {:.1} MiB, \
                 with caches holding the whole workload)",
                self.discard.peak_rss_bytes as f64 / MIB
            ),
            discard,
            &format!("a. pg_recvlogical, same WAL: {source:.0} rows/s"),
            source,
            0.8,
        ));
        let store = self.store.rows_per_second();
        let capacity = self.store_reference_changes as f64 / self.store_reference_seconds;
        lines.push(ratio_line(
            &format!("c. daemon into the store, rows/s ({DEFAULT_WRITE_LANES} write lanes)"),
            store,
            &format!(
                "store capacity, driver loop, same writes, batches and lanes: {capacity:.0} rows/s"
            ),
            capacity,
            0.9,
        ));
        if let Some(freshness) = &self.freshness {
            lines.push(Line {
                figure: format!(
                    "d. commit-to-store latency at {:.1} uploads/s (half of c): p99 (p50)",
                    freshness.uploads_per_second
                ),
                value: format!("{:.0} ms ({:.0} ms)", freshness.p99_ms, freshness.p50_ms),
                reference: format!(
                    "{:.1} % of transactions within 250 ms; store: {:.1} write commands per \
                     upload, {:.0} ms each",
                    freshness.within_250ms * 100.0,
                    freshness.commands_per_upload,
                    freshness.store_command_ms
                ),
                ratio: None,
                target: "p99 ≤ 250 ms".to_string(),
                met: freshness.within_250ms >= 0.99,
            });
        }
        for (name, bytes) in [
            (
                "c (the store workload's backlog at once), default settings",
                self.store.peak_rss_bytes,
            ),
            ("d (streaming)", self.streaming_peak_rss_bytes),
        ] {
            let mib = bytes as f64 / MIB;
            lines.push(Line {
                figure: format!("e. daemon peak RSS, {name}"),
                value: format!("{mib:.1} MiB"),
                reference: "-".to_string(),
                ratio: None,
                target: "≤ 64 MiB".to_string(),
                met: mib <= 64.0,
            });
        }
        if let Some(ingest) = &self.ingest {
            lines.push(ratio_line(
                &format!(
                    "f. ingest API uploads/s at saturation, {} clients (p99 {:.0} ms)",
                    self.clients, ingest.p99_ms
                ),
                ingest.per_second,
                &format!(
                    "pgbench, same SQL, same server: {:.0} uploads/s",
                    self.pgbench_tps
                ),
                self.pgbench_tps,
                0.7,
            ));
        }
        if let (Some(api), Some(driver)) = (&self.reports, &self.reports_driver) {
            lines.push(ratio_line(
                &format!(
                    "g. reports API list page, requests/s, {} clients (p99 {:.1} ms)",
                    self.clients, api.p99_ms
                ),
                api.per_second,
                &format!(
                    "driver loop, same query: {:.0} requests/s (p99 {:.1} ms)",
                    driver.per_second, driver.p99_ms
                ),
                driver.per_second,
                0.7,
            ));
        }
        lines
    }

    /// The markdown section: machine, workloads, table.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut text = format!(
            "Machine: {} ({} logical CPUs, {:.1} GiB RAM). Store: {}. PostgreSQL: the harness \
             cluster (or `DATABASE_URL`). Release builds.\n\n",
            m.cpu, m.cores, m.ram_gib, m.store
        );
        let lanes_drain = self
            .by_lanes
            .first()
            .map(|run| run.daemon.clone())
            .unwrap_or_default();
        for (name, workload, drain) in [
            ("Large workload (a, b, e)", &self.large, &self.discard),
            ("Store workload (c, d, g)", &self.small, &self.store),
            (
                "Lanes workload (c by lanes)",
                &self.lanes_workload,
                &lanes_drain,
            ),
        ] {
            text.push_str(&format!(
                "- {name}: {} uploads ({} with a renamed patient), {} amendments, {} deletes = \
                 {:.0} row changes in {:.0} transactions (posted in {:.0} s).\n",
                workload.uploads,
                workload.renames,
                workload.amendments,
                workload.deletes,
                drain.changes,
                drain.transactions,
                workload.seconds
            ));
        }
        text.push_str(&format!(
            "- Timed loads: {} s each, {} clients.\n\n",
            self.seconds, self.clients
        ));
        text.push_str("| figure | value | reference | ratio | target | met |\n");
        text.push_str("| --- | ---: | --- | ---: | --- | --- |\n");
        for line in self.lines() {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                line.figure,
                line.value,
                line.reference,
                line.ratio
                    .map_or("-".to_string(), |ratio| format!("{ratio:.2}")),
                line.target,
                if line.met { "met" } else { "**not met**" }
            ));
        }
        text.push_str(&self.lanes_markdown());
        text
    }

    /// The table of c by write lanes: the daemon and the store reference, each into an empty
    /// store, with each number of lanes.
    fn lanes_markdown(&self) -> String {
        let mut text = String::from(
            "\nc by write lanes (`MYHEALTH_WRITE_LANES`), on the lanes workload, each run into \
             an empty store:\n\n\
             | lanes | c, daemon, rows/s | store capacity, same lanes, rows/s | c ÷ capacity | \
             c ÷ c with 1 lane |\n| ---: | ---: | ---: | ---: | ---: |\n",
        );
        let one = self
            .by_lanes
            .first()
            .map_or(f64::NAN, |run| run.daemon.rows_per_second());
        for run in &self.by_lanes {
            let daemon = run.daemon.rows_per_second();
            let capacity = run.reference_changes as f64 / run.reference_seconds;
            text.push_str(&format!(
                "| {} | {daemon:.0} | {capacity:.0} | {:.2} | {:.2} |\n",
                run.lanes,
                daemon / capacity,
                daemon / one
            ));
        }
        text
    }

    /// Writes `json_path` and the section of `markdown_path` between the markers (appended,
    /// with the markers, when the file has none).
    pub fn write(&self, markdown_path: &Path, json_path: &Path) -> Result<()> {
        let json = serde_json::json!({ "report": self, "table": self.lines() });
        let json = serde_json::to_string_pretty(&json).context("failed to encode the report")?;
        std::fs::write(json_path, json + "\n")
            .with_context(|| format!("failed to write {}", json_path.display()))?;
        let section = format!("{START}\n{}{END}", self.markdown());
        let existing = std::fs::read_to_string(markdown_path).unwrap_or_default();
        let updated = match (existing.find(START), existing.find(END)) {
            (Some(start), Some(end)) if start < end => {
                format!(
                    "{}{section}{}",
                    &existing[..start],
                    &existing[end + END.len()..]
                )
            }
            _ if existing.is_empty() => format!("# Benchmarks\n\n{section}\n"),
            _ => format!("{existing}\n{section}\n"),
        };
        std::fs::write(markdown_path, updated)
            .with_context(|| format!("failed to write {}", markdown_path.display()))
    }
}

fn ratio_line(
    figure: &str,
    value: f64,
    reference: &str,
    reference_value: f64,
    target: f64,
) -> Line {
    let ratio = value / reference_value;
    Line {
        figure: figure.to_string(),
        value: format!("{value:.0}"),
        reference: reference.to_string(),
        ratio: Some(ratio),
        target: format!("≥ {target}"),
        met: ratio >= target,
    }
}
