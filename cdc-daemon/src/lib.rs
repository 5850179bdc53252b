//! Change-data-capture daemon: PostgreSQL logical replication into the MongoDB read store.
//!
//! The modules, in the order a change flows through them:
//!
//! ```text
//! replication ─▶ decode ─▶ apply ─▶ mapping (one file per source table) ─▶ sink ─▶ checkpoint
//!   snapshot ──────────────▲   (retries, dead letters, the `latest` settlement)
//!   support_requests ──────┘   (rows read from the source enter as inserts)
//! ```
//!
//! - [`replication`]: the slot and its stream of pgoutput messages;
//! - [`decode`]: pgoutput bytes → messages (and rows of announced table schemas);
//! - [`apply`]: the one writer of the store: takes row changes through the [`mapping`] into a
//!   batch, writes it through the [`sink`] with the one [`retry`] policy, records dead
//!   letters and settles patients' `latest`;
//! - [`mapping`]: row changes → document writes, one file per source table;
//! - [`sink`]: batched writes → store commands;
//! - [`checkpoint`]: the last applied position, stored before the slot is confirmed.
//!
//! [`pipeline`] wires them into the streaming loop; [`snapshot`] (the initial copy) and
//! [`support_requests`] (resync, replay) read rows from the source ([`source_tables`]) and hand
//! them to [`apply`] like streamed inserts. [`verify`] compares the store with PostgreSQL.
//! Around the chain: [`lag`], [`heartbeat`] and [`metrics`] for SREs, the operations port
//! (`/healthz`, `/readyz`, `/metrics`), and [`resident`], the estimate the memory budget counts
//! caches and batches by.
//!
//! The rule that keeps this readable, checked by a test: a module imports only modules after
//! it in that order — `pipeline`, `snapshot`, `support_requests`, `verify`, `source_tables`,
//! `replication`, `apply`, `mapping`, `sink`, `checkpoint` — or shared leaves that import no
//! step (`decode`, `metrics`, `retry`, `backoff`, `lag`, `heartbeat`, `resident`); nothing imports
//! `pipeline`, and `snapshot` and `support_requests` do not import each other. `apply` comes
//! before `mapping` in that order although changes are mapped before they are written: it is
//! `apply` that runs the mapper (retrying its lookups) and settles what a written batch made
//! stale.

pub mod apply;
pub mod backoff;
pub mod checkpoint;
pub mod decode;
pub mod heartbeat;
pub mod lag;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod replication;
pub mod resident;
pub mod retry;
pub mod sink;
pub mod snapshot;
pub mod source_tables;
pub mod support_requests;
pub mod verify;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use service_plumbing::http::{HttpServer, HttpSettings, Readiness, Router};
use service_plumbing::metrics::Metrics;
use service_plumbing::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Name of the daemon in logs, in PostgreSQL's `application_name` and in MongoDB's `appName`.
pub const SERVICE_NAME: &str = "cdc-daemon";

/// Listen address of the operations port when `http.listen` is not configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9187);

/// Size of the PostgreSQL pool used for readiness checks.
const POSTGRES_POOL_SIZE: usize = 2;

/// The daemon's configuration (see `service_plumbing::config` for how it is loaded).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Operations HTTP server settings (`MYHEALTH_HTTP__*`).
    #[serde(default)]
    pub http: HttpSettings,
    /// Source PostgreSQL connection URL; may carry a password (`MYHEALTH_DATABASE_URL`).
    pub database_url: SecretString,
    /// MongoDB connection string; may carry a password (`MYHEALTH_MONGODB_URI`).
    pub mongodb_uri: SecretString,
    /// Database holding the read store (`MYHEALTH_MONGODB_DATABASE`).
    #[serde(default = "default_database")]
    pub mongodb_database: String,
    /// Replication slot (`MYHEALTH_SLOT`); created if missing.
    #[serde(default = "default_slot")]
    pub slot: String,
    /// Publication to stream (`MYHEALTH_PUBLICATION`).
    #[serde(default = "default_publication")]
    pub publication: String,
    /// Flush a batch at this many row changes (`MYHEALTH_BATCH_MAX_CHANGES`).
    #[serde(default = "default_batch_max_changes")]
    pub batch_max_changes: usize,
    /// Flush a batch once its writes keep about this many bytes in memory
    /// (`MYHEALTH_BATCH_MAX_BYTES`, counted as [`resident`] estimates them); at most the bytes of
    /// one store command ([`sink::limits::BYTES_PER_COMMAND`]), which is plenty: commands are
    /// cut by the store's limits, not by batches.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Flush a batch at most this long after its first change (`MYHEALTH_BATCH_MAX_DELAY_MS`).
    #[serde(default = "default_batch_max_delay_ms")]
    pub batch_max_delay_ms: u64,
    /// Lanes each collection's writes of a batch go out on at once (`MYHEALTH_WRITE_LANES`):
    /// every document's writes stay on one lane, in order, while different documents' writes
    /// are sent concurrently, each lane taking one connection of the driver's pool
    /// (`maxPoolSize`, 10 by default) while it waits for the store.
    #[serde(default = "default_write_lanes")]
    pub write_lanes: usize,
    /// Bytes the lookup caches and the batches may hold together
    /// (`MYHEALTH_MEMORY_BUDGET_BYTES`): the batch being built and the one being written take
    /// up to `batch_max_bytes` each (together at most half), the caches the rest. What else the
    /// daemon keeps resident (code, runtime, driver, the command being sent) does not grow with
    /// the data.
    #[serde(default = "default_memory_budget_bytes")]
    pub memory_budget_bytes: usize,
    /// The entry count per cache that `memory_budget_bytes` replaced (`MYHEALTH_CACHE_CAPACITY`):
    /// refused at start, so that an old setting is not silently ignored.
    #[serde(default)]
    cache_capacity: Option<serde::de::IgnoredAny>,
    /// Halt streaming at the first change that cannot be mapped, instead of recording it as a
    /// dead letter and going on (`MYHEALTH_STOP_ON_DEAD_LETTER`).
    #[serde(default)]
    pub stop_on_dead_letter: bool,
    /// Emit a heartbeat (a logical decoding message) on the source this often, so that lag
    /// stays measured when nothing changes; 0 turns it off (`MYHEALTH_HEARTBEAT_INTERVAL_MS`).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// Benchmarking switch (`MYHEALTH_SINK`): `discard` decodes, maps and batches as usual but
    /// never writes documents (checkpoints are still stored), to measure the daemon without its
    /// store; give it a memory budget that caches the whole workload (a cache miss would read an
    /// empty store). Never use it in production.
    #[serde(default)]
    pub sink: apply::SinkMode,
    /// The write concern of every write the daemon sends (`MYHEALTH_WRITE_CONCERN__*`).
    #[serde(default)]
    pub write_concern: WriteConcernSettings,
}

/// How durable a write must be before the store acknowledges it. The daemon confirms a position
/// to PostgreSQL, which may then recycle the WAL, only after the store acknowledged the writes
/// below it: a write acknowledged by one member and rolled back by a failover would be lost for
/// good. Hence `majority` and the journal by default; the timeout bounds how long an
/// unsatisfiable concern (members down) blocks a write before it is retried like any store
/// error, so that a shutdown deadline still fires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WriteConcernSettings {
    /// `majority`, a number of members, or a custom write concern's tag set name
    /// (`MYHEALTH_WRITE_CONCERN__W`).
    pub w: String,
    /// Acknowledged only once in the journal (`MYHEALTH_WRITE_CONCERN__JOURNAL`).
    pub journal: bool,
    /// `wtimeout` in milliseconds (`MYHEALTH_WRITE_CONCERN__TIMEOUT_MS`).
    pub timeout_ms: u64,
}

impl Default for WriteConcernSettings {
    fn default() -> Self {
        WriteConcernSettings {
            w: "majority".to_owned(),
            journal: true,
            timeout_ms: 10_000,
        }
    }
}

impl WriteConcernSettings {
    /// The driver's form; `w` as a number when it is one.
    pub fn to_options(&self) -> mongodb::options::WriteConcern {
        let w = match self.w.parse::<u32>() {
            Ok(nodes) => mongodb::options::Acknowledgment::Nodes(nodes),
            Err(_) => mongodb::options::Acknowledgment::from(self.w.as_str()),
        };
        mongodb::options::WriteConcern::builder()
            .w(w)
            .journal(self.journal)
            .w_timeout(std::time::Duration::from_millis(self.timeout_ms))
            .build()
    }
}

fn default_database() -> String {
    "myhealth".to_owned()
}

fn default_slot() -> String {
    read_model::DEFAULT_SLOT.to_owned()
}

fn default_publication() -> String {
    source_schema::PUBLICATION.to_owned()
}

/// `batch_max_changes` unless configured.
pub const DEFAULT_BATCH_MAX_CHANGES: usize = 5000;

/// `batch_max_bytes` unless configured.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// `write_lanes` unless configured.
pub const DEFAULT_WRITE_LANES: usize = 4;

fn default_batch_max_changes() -> usize {
    DEFAULT_BATCH_MAX_CHANGES
}

fn default_batch_max_bytes() -> usize {
    DEFAULT_BATCH_MAX_BYTES
}

fn default_batch_max_delay_ms() -> u64 {
    50
}

fn default_write_lanes() -> usize {
    DEFAULT_WRITE_LANES
}

fn default_memory_budget_bytes() -> usize {
    24 * 1024 * 1024
}

impl Config {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> anyhow::Result<()> {
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        anyhow::ensure!(
            valid_name(&self.slot),
            "slot {:?} must be 1-63 characters of a-z, 0-9 and _",
            self.slot
        );
        let limits = [
            (
                "batch_max_changes",
                self.batch_max_changes as u64,
                MAX_BATCH_CHANGES,
            ),
            (
                "batch_max_bytes",
                self.batch_max_bytes as u64,
                sink::limits::BYTES_PER_COMMAND as u64,
            ),
            (
                "batch_max_delay_ms",
                self.batch_max_delay_ms,
                MAX_BATCH_DELAY_MS,
            ),
            (
                "memory_budget_bytes",
                self.memory_budget_bytes as u64,
                MAX_MEMORY_BUDGET_BYTES,
            ),
            ("write_lanes", self.write_lanes as u64, MAX_WRITE_LANES),
        ];
        for (setting, value, most) in limits {
            anyhow::ensure!(
                (1..=most).contains(&value),
                "{setting} (MYHEALTH_{}) must be between 1 and {most}, not {value}",
                setting.to_ascii_uppercase()
            );
        }
        anyhow::ensure!(
            self.cache_capacity.is_none(),
            "cache_capacity (MYHEALTH_CACHE_CAPACITY) was replaced by memory_budget_bytes (MYHEALTH_MEMORY_BUDGET_BYTES), which bounds the caches by bytes"
        );
        anyhow::ensure!(
            BATCHES_IN_MEMORY * self.batch_max_bytes <= self.memory_budget_bytes / 2,
            "memory_budget_bytes (MYHEALTH_MEMORY_BUDGET_BYTES) must be at least four times batch_max_bytes ({}: two batches, at most half the budget), not {}",
            self.batch_max_bytes,
            self.memory_budget_bytes
        );
        anyhow::ensure!(
            !self.write_concern.w.is_empty() && self.write_concern.w != "0",
            "write_concern.w must be majority, a number of members (at least 1) or a tag set name"
        );
        anyhow::ensure!(
            self.write_concern.timeout_ms > 0,
            "write_concern.timeout_ms must be positive (0 would wait forever)"
        );
        Ok(())
    }
}

/// Most changes per batch: a batch is held in memory, and a larger one only delays its
/// checkpoint.
const MAX_BATCH_CHANGES: u64 = 1_000_000;

/// Longest a change may wait in a batch (one minute): readers wait that long for what they
/// wrote.
const MAX_BATCH_DELAY_MS: u64 = 60_000;

/// Batches in memory at once, each up to `batch_max_bytes`: the one being built and the one
/// being written ([`pipeline`]).
const BATCHES_IN_MEMORY: usize = 2;

/// Most write lanes: each takes a connection to the store while it waits for it, and past a
/// few per shard more lanes only queue up in the store.
const MAX_WRITE_LANES: u64 = 64;

/// Largest memory budget (1 TiB): beyond any machine the daemon runs on.
const MAX_MEMORY_BUDGET_BYTES: u64 = 1 << 40;

/// A built daemon, bound to its operations port but not yet running.
pub struct App {
    local_addr: SocketAddr,
    listener: TcpListener,
    server: HttpServer,
    pipeline: pipeline::Pipeline,
    pool: deadpool_postgres::Pool,
    heartbeat_interval: std::time::Duration,
}

/// Prepares the PostgreSQL pool and the MongoDB client (neither connects yet), the metrics,
/// and binds the operations port.
pub async fn build(config: Config, shutdown: Shutdown) -> anyhow::Result<App> {
    // Fail a store command within seconds while the store is down, instead of the driver's 30 s:
    // the pipeline retries on its own, and must notice a shutdown in between.
    let database = service_plumbing::mongo::database(
        &config.mongodb_uri,
        &config.mongodb_database,
        SERVICE_NAME,
        std::time::Duration::from_secs(5),
    )
    .await?;
    build_on(config, database.client().clone(), shutdown).await
}

/// [`build`] on a store client the caller made (a test's, listening to the commands the
/// driver sends); `mongodb_uri` is not read.
pub async fn build_on(
    config: Config,
    client: mongodb::Client,
    shutdown: Shutdown,
) -> anyhow::Result<App> {
    config.validate()?;
    let pool =
        service_plumbing::postgres::pool(&config.database_url, POSTGRES_POOL_SIZE, SERVICE_NAME)?;
    // Every write goes through this handle: the driver's own operations take the write concern
    // from it, and the sink copies it into the commands it builds.
    let database = client.database_with_options(
        &config.mongodb_database,
        mongodb::options::DatabaseOptions::builder()
            .write_concern(config.write_concern.to_options())
            .build(),
    );
    let checked_pool = pool.clone();
    let checked_database = database.clone();
    let readiness = Readiness::new()
        .with_check("postgres", move || {
            let pool = checked_pool.clone();
            async move { service_plumbing::postgres::check(&pool).await }
        })
        .with_check("mongodb", move || {
            service_plumbing::mongo::check(checked_database.clone())
        });
    let registry = Metrics::new().context("failed to set up metrics")?;
    let metrics = metrics::CdcMetrics::register(&registry).context("failed to set up metrics")?;
    let server = HttpServer::new(config.http.clone(), Router::new(), readiness, registry)
        .context("failed to set up http server")?;
    let heartbeat_interval = std::time::Duration::from_millis(config.heartbeat_interval_ms);
    let retry = retry::Retry::new(
        metrics.clone(),
        shutdown.clone(),
        std::time::Duration::from_millis(config.http.shutdown_deadline_ms),
    );
    let writer = apply::Writer::new(
        database,
        apply::Settings {
            max_batch_changes: config.batch_max_changes,
            max_batch_bytes: config.batch_max_bytes,
            max_batch_delay: std::time::Duration::from_millis(config.batch_max_delay_ms),
            write_lanes: config.write_lanes,
            sink: config.sink,
        },
        metrics,
        retry,
    );
    let pipeline = pipeline::Pipeline {
        source: replication::Source {
            url: config.database_url.clone(),
            slot: config.slot.clone(),
            publication: config.publication.clone(),
        },
        writer,
        cache_bytes: config.memory_budget_bytes - BATCHES_IN_MEMORY * config.batch_max_bytes,
        stop_on_dead_letter: config.stop_on_dead_letter,
        lag: std::sync::Arc::new(lag::LagState::new(heartbeat_interval)),
        shutdown,
    };
    let (listener, local_addr) =
        service_plumbing::http::bind(config.http.listen_or(DEFAULT_LISTEN)).await?;
    Ok(App {
        local_addr,
        listener,
        server,
        pipeline,
        pool,
        heartbeat_interval,
    })
}

impl App {
    /// The bound operations address (with the real port when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Streams and serves the operations port until the shutdown given to [`build`] is
    /// triggered; returns once the last batch is checkpointed (or the deadline passed).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.pipeline.shutdown.clone();
        let heartbeat = (!self.heartbeat_interval.is_zero()).then(|| {
            tokio::spawn(heartbeat::emit(
                self.pool.clone(),
                self.heartbeat_interval,
                self.pipeline.writer.metrics().clone(),
                shutdown.clone(),
            ))
        });
        let poller = tokio::spawn(lag::poll(
            self.pool,
            self.pipeline.source.slot.clone(),
            self.pipeline.lag.clone(),
            self.pipeline.writer.metrics().clone(),
            shutdown.clone(),
        ));
        let server = tokio::spawn(self.server.serve(self.listener, shutdown));
        self.pipeline.run().await;
        let _ = poller.await;
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
        let _ = server.await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::path::Path;

    use super::Config;

    fn config(settings: &[(&str, &str)]) -> Config {
        let mut values = serde_json::json!({
            "database_url": "postgres://localhost/db",
            "mongodb_uri": "mongodb://localhost",
        });
        for (name, value) in settings {
            values[*name] = value.parse().expect("a number");
        }
        serde_json::from_value(values).expect("a configuration")
    }

    #[test]
    fn the_defaults_are_valid() {
        config(&[]).validate().expect("valid");
    }

    #[test]
    fn a_setting_out_of_range_is_refused_by_name() {
        for (setting, value) in [
            ("batch_max_changes", "0"),
            ("batch_max_changes", "1000001"),
            ("batch_max_bytes", "0"),
            ("batch_max_bytes", "8388609"),
            ("batch_max_delay_ms", "0"),
            ("batch_max_delay_ms", "60001"),
            ("memory_budget_bytes", "0"),
            ("memory_budget_bytes", "1099511627777"),
            ("write_lanes", "0"),
            ("write_lanes", "65"),
        ] {
            let error = config(&[(setting, value)])
                .validate()
                .expect_err(setting)
                .to_string();
            assert!(
                error.starts_with(setting) && error.ends_with(&format!("not {value}")),
                "{error}"
            );
        }
        config(&[
            ("batch_max_changes", "1000000"),
            ("batch_max_bytes", "8388608"),
            ("batch_max_delay_ms", "1"),
            ("memory_budget_bytes", "1099511627776"),
            ("write_lanes", "64"),
        ])
        .validate()
        .expect("the bounds themselves are valid");
    }

    #[test]
    fn the_replaced_cache_capacity_is_refused_with_its_successor_named() {
        let error = config(&[("cache_capacity", "100000")])
            .validate()
            .expect_err("replaced")
            .to_string();
        assert!(error.contains("MYHEALTH_MEMORY_BUDGET_BYTES"), "{error}");
    }

    #[test]
    fn the_two_batches_may_take_at_most_half_of_the_memory_budget() {
        let half = config(&[
            ("batch_max_bytes", "1048576"),
            ("memory_budget_bytes", "4194304"),
        ]);
        half.validate().expect("half is allowed");
        let error = config(&[
            ("batch_max_bytes", "1048576"),
            ("memory_budget_bytes", "4194303"),
        ])
        .validate()
        .expect_err("more than half")
        .to_string();
        assert!(
            error.starts_with("memory_budget_bytes")
                && error.contains("four times batch_max_bytes"),
            "{error}"
        );
    }

    /// The daemon's steps in import order: each may import only steps after it.
    const STEPS: &[&str] = &[
        "pipeline",
        "snapshot",
        "support_requests",
        "verify",
        "source_tables",
        "replication",
        "apply",
        "mapping",
        "sink",
        "checkpoint",
    ];
    /// Modules any step may import; they import no step themselves, and each imports only
    /// leaves after it (so they form no cycle either).
    const LEAVES: &[&str] = &[
        "heartbeat",
        "lag",
        "retry",
        "backoff",
        "decode",
        "metrics",
        "resident",
    ];

    /// The `crate::<module>` paths in code (not comments) of module `name`'s files.
    fn imports(name: &str) -> Vec<String> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let file = source.join(format!("{name}.rs"));
        let mut files = Vec::new();
        if file.exists() {
            files.push(file);
        } else {
            let mut dirs = vec![source.join(name)];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).expect("module directory is readable") {
                    let path = entry.expect("directory entry is readable").path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
        }
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("module file is readable");
            let code: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            // A top-level module's `super::` is the crate root.
            let top_level = file.parent() == Some(source.as_path());
            let prefixes: &[&str] = if top_level {
                &["crate::", "super::"]
            } else {
                &["crate::"]
            };
            for prefix in prefixes {
                for (at, _) in code.match_indices(prefix) {
                    for module in paths_after(&code[at + prefix.len()..]) {
                        // An empty name is an item of the crate root (`crate::SERVICE_NAME`).
                        if !module.is_empty() && module != name && !found.contains(&module) {
                            found.push(module);
                        }
                    }
                }
            }
        }
        found
    }

    /// The first segment of a path's rest (`mapping::Mapper` → `mapping`), or of each path in a
    /// group (`{mapping::Mapper, sink}` → `mapping`, `sink`).
    fn paths_after(rest: &str) -> Vec<String> {
        let segment = |text: &str| -> String {
            text.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        };
        let Some(group) = rest.strip_prefix('{') else {
            return vec![segment(rest)];
        };
        let (mut depth, mut start, mut firsts) = (0, 0, Vec::new());
        for (at, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    firsts.push(segment(&group[start..at]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    firsts.push(segment(&group[start..at]));
                    start = at + 1;
                }
                _ => {}
            }
        }
        firsts
    }

    #[test]
    fn grouped_and_nested_imports_name_each_module() {
        assert_eq!(paths_after("mapping::Mapper;"), ["mapping"]);
        assert_eq!(
            paths_after("{mapping::{Mapper, Table},\n    sink::Batch, metrics};"),
            ["mapping", "sink", "metrics"]
        );
    }

    #[test]
    fn every_module_is_a_step_or_a_leaf() {
        let root =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
                .expect("lib.rs is readable");
        let declared: Vec<&str> = root
            .lines()
            .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        assert!(declared.len() >= STEPS.len(), "{declared:?}");
        for module in declared {
            assert!(
                STEPS.contains(&module) || LEAVES.contains(&module),
                "{module} is neither a step nor a shared leaf: place it in STEPS or LEAVES"
            );
        }
    }

    #[test]
    fn each_module_imports_only_modules_after_it_or_shared_leaves() {
        for (position, step) in STEPS.iter().enumerate() {
            for module in imports(step) {
                assert!(
                    STEPS[position + 1..].contains(&module.as_str())
                        || LEAVES.contains(&module.as_str()),
                    "{step} imports {module}, which comes before it"
                );
            }
        }
        assert!(!imports("snapshot").contains(&"support_requests".to_string()));
        for (position, leaf) in LEAVES.iter().enumerate() {
            for module in imports(leaf) {
                assert!(
                    LEAVES[position + 1..].contains(&module.as_str()),
                    "the shared leaf {leaf} imports {module}, which is a step or a leaf before it"
                );
            }
        }
    }
}
