//! The end-to-end pipeline benchmark behind `make bench`: every figure is measured next to a
//! reference on the same machine in the same run, and reported as a ratio with its target.
//!
//! Two source databases on one PostgreSQL server and one store (the harness's, or
//! `DATABASE_URL`/`MONGODB_URI`): a large workload for what does not touch the store (the source
//! limit and the daemon with a discard sink), a smaller one for what does (FerretDB's writes
//! slow down as collections grow, see `docs/benchmarks.md`). In order:
//!
//! - a. [`source`]: `pg_recvlogical` drains the large workload from its own slot;
//! - b. the daemon with `MYHEALTH_SINK=discard` drains it from another slot;
//! - c. the daemon drains the small workload into the store; [`store_reference`] issues the same
//!   document writes with a minimal driver loop;
//! - d. [`freshness`]: uploads at half of c's rate while that daemon keeps up;
//! - e. the peak RSS of c's daemon, in its backlog (c) and while streaming (d), default settings;
//! - f. [`load`] on the ingest API against [`ingest_reference`] (pgbench, same SQL);
//! - g. [`load`] on the reports API's list page against the same query from a driver loop;
//! - c by lanes: on a third workload (the lanes workload, in its own source database), the
//!   daemon into the store and the store reference with 1, 2, 4 and 8 write lanes each, every
//!   run into an empty store database of its own.

pub mod freshness;
pub mod ingest_reference;
pub mod load;
pub mod report;
pub mod services;
pub mod source;
pub mod store_reference;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdc_daemon::{DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_CHANGES, DEFAULT_WRITE_LANES};
use devstack::TestContext;
use devstack::tablet::Tablet;
use mongodb::bson::{Document, doc};

use crate::report::{Machine, Report};
use crate::services::Service;

/// Concurrent tablets generating the workloads.
const TABLETS: usize = 4;
/// The write lanes of the table of c by lanes.
const LANES: [usize; 4] = [1, 2, 4, 8];
/// Longest a daemon may take to drain a workload.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the service binaries are (`target/release` for a real run).
    pub bin_dir: PathBuf,
    /// Uploads of the large workload (source limit, discard sink, backlog RSS).
    pub uploads: usize,
    /// Uploads of the store workload (daemon into the store, store capacity, reports API).
    pub store_uploads: usize,
    /// Uploads of the lanes workload (c by lanes).
    pub lanes_uploads: usize,
    /// Duration of each timed load (freshness, ingest, reports), in seconds.
    pub seconds: u64,
    /// Concurrent clients of the HTTP loads and of pgbench.
    pub clients: usize,
    /// Where service logs and scratch files go.
    pub work_dir: PathBuf,
}

/// Runs every stage and returns the report.
pub async fn run(settings: &Settings) -> Result<Report> {
    std::fs::create_dir_all(&settings.work_dir)
        .with_context(|| format!("failed to create {}", settings.work_dir.display()))?;
    let bindir = devstack::postgres::find_bindir()?;
    let bins = settings.bin_dir.as_path();
    let logs = settings.work_dir.as_path();
    let large = TestContext::new()
        .await
        .context("failed to start the stack")?;
    let small = TestContext::new()
        .await
        .context("failed to start the stack")?;
    let by_lanes = TestContext::new()
        .await
        .context("failed to start the stack")?;
    let mut report = Report::new(Machine::read(large.stack().store.describe()), settings);

    // Workloads: slots first, so that every change of the workload stays in them.
    log("generating the large workload");
    let pg_large = large.postgres().await?;
    create_slots(
        &pg_large,
        &large.store(),
        &["bench_source", "bench_discard"],
    )
    .await?;
    let Posted {
        token: token_large,
        ingest: ingest_large,
        workload,
        end: end_large,
    } = post(bins, logs, &large, &pg_large, settings.uploads, 1).await?;
    report.large = workload;

    log("generating the store workload");
    let pg_small = small.postgres().await?;
    create_slots(
        &pg_small,
        &small.store(),
        &["bench_store", "bench_reference"],
    )
    .await?;
    let Posted {
        token: token_small,
        ingest: ingest_small,
        workload,
        end: end_small,
    } = post(bins, logs, &small, &pg_small, settings.store_uploads, 2).await?;
    report.small = workload;
    let busiest = report
        .small
        .busiest_patient
        .context("the store workload has no patient")?;

    log("generating the lanes workload");
    let pg_lanes = by_lanes.postgres().await?;
    create_slots(&pg_lanes, &by_lanes.store(), &["bench_lanes_reference"]).await?;
    for lanes in LANES {
        create_slots(
            &pg_lanes,
            &lanes_store(&by_lanes, lanes),
            &[&lanes_slot(lanes)],
        )
        .await?;
    }
    let posted = post(bins, logs, &by_lanes, &pg_lanes, settings.lanes_uploads, 3).await?;
    posted.ingest.stop().await?;
    let end_lanes = posted.end;
    report.lanes_workload = posted.workload;

    log("a. pg_recvlogical");
    report.source_seconds = source::drain(
        &bindir,
        &large.database_url,
        "bench_source",
        &read_model::lsn::format(end_large),
    )
    .await?;

    log("b. daemon, discard sink");
    let mut env = daemon_env(&large, &large.database, "bench_discard");
    env.push(("MYHEALTH_SINK", "discard".to_string()));
    // With nothing written, a cache miss would read an empty store: the caches hold it all.
    env.push(("MYHEALTH_MEMORY_BUDGET_BYTES", (1_u64 << 40).to_string()));
    let started = Instant::now();
    let mut discard = Service::start(bins, "cdc-daemon", &env, logs).await?;
    report.discard = drain(&mut discard, started, end_large).await?;
    discard.stop().await?;
    drop_slots(&pg_large, &["bench_source", "bench_discard"]).await?;

    log("c. daemon into the store");
    let started = Instant::now();
    let mut daemon = Service::start(
        bins,
        "cdc-daemon",
        &daemon_env(&small, &small.database, "bench_store"),
        logs,
    )
    .await?;
    report.store = drain(&mut daemon, started, end_small).await?;

    log("c. store capacity (driver loop)");
    let messages = store_reference::capture(&pg_small, "bench_reference").await?;
    drop_slots(&pg_small, &["bench_reference"]).await?;
    let (batches, changes) = prepare_reference(&messages).await?;
    drop(messages);
    let reference_db = small
        .mongo
        .database(&format!("{}_reference", small.database));
    let written = store_reference::write(&reference_db, &batches, DEFAULT_WRITE_LANES).await;
    reference_db
        .drop()
        .await
        .context("failed to drop the reference store")?;
    report.store_reference_changes = changes;
    report.store_reference_seconds = written?;

    log("d. freshness at half of c");
    daemon.reset_peak_rss()?;
    let rows_per_upload = report.store.changes / report.small.uploads.max(1) as f64;
    let rate = report.store.rows_per_second() / 2.0 / rows_per_upload.max(1.0);
    report.freshness = Some(
        freshness::steady(
            &mut daemon,
            &ingest_small.url,
            &token_small,
            rate,
            settings.seconds,
        )
        .await?,
    );
    report.streaming_peak_rss_bytes = daemon.peak_rss_bytes()?;
    daemon.stop().await?;
    drop_slots(&pg_small, &["bench_store"]).await?;
    ingest_small.stop().await?;

    log("f. ingest API against pgbench");
    report.ingest = Some(ingest_load(&ingest_large.url, &token_large, settings).await?);
    let script = settings.work_dir.join("upload.pgbench.sql");
    let mut tablet = Tablet::new(&ingest_large.url, &token_large, 5);
    let patient = tablet.patient();
    ingest_reference::write_script(
        &tablet.upload(&patient, time::OffsetDateTime::now_utc()),
        &script,
    )?;
    let device_large = ingest_reference::device(&pg_large, &token_large).await?;
    report.pgbench_tps = ingest_reference::run(
        &bindir,
        &large.database_url,
        &device_large,
        &script,
        settings.clients,
        settings.seconds,
    )
    .await?;
    ingest_large.stop().await?;

    log("g. reports API against a driver loop");
    let (reports, driver) = reports_load(bins, logs, &small, busiest, settings).await?;
    report.reports = Some(reports);
    report.reports_driver = Some(driver);

    log("c by write lanes");
    report.by_lanes = lanes_runs(bins, logs, &by_lanes, &pg_lanes, end_lanes).await?;
    Ok(report)
}

/// c with one number of write lanes: the daemon into an empty store, and the store reference
/// with as many lanes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LanesRun {
    /// Write lanes of both.
    pub lanes: usize,
    /// The daemon's drain of the lanes workload.
    pub daemon: Drain,
    /// Row changes the store reference wrote.
    pub reference_changes: usize,
    /// Seconds the store reference took.
    pub reference_seconds: f64,
}

/// The daemon and the store reference over the lanes workload (up to WAL position `end`), with
/// each number of [`LANES`] in turn; every store database is dropped after its run, so that
/// each starts as empty as the first.
async fn lanes_runs(
    bins: &Path,
    logs: &Path,
    ctx: &TestContext,
    pg: &tokio_postgres::Client,
    end: u64,
) -> Result<Vec<LanesRun>> {
    let messages = store_reference::capture(pg, "bench_lanes_reference").await?;
    drop_slots(pg, &["bench_lanes_reference"]).await?;
    let (batches, changes) = prepare_reference(&messages).await?;
    drop(messages);
    let mut runs = Vec::new();
    for lanes in LANES {
        let (slot, store) = (lanes_slot(lanes), lanes_store(ctx, lanes));
        let mut env = daemon_env(ctx, store.name(), &slot);
        env.push(("MYHEALTH_WRITE_LANES", lanes.to_string()));
        let started = Instant::now();
        let mut daemon = Service::start(bins, "cdc-daemon", &env, logs).await?;
        let drained = drain(&mut daemon, started, end).await?;
        daemon.stop().await?;
        drop_slots(pg, &[&slot]).await?;
        store
            .drop()
            .await
            .context("failed to drop a lanes run's store")?;
        let reference_db = ctx.mongo.database(&format!("{}_reference", ctx.database));
        let written = store_reference::write(&reference_db, &batches, lanes).await;
        reference_db
            .drop()
            .await
            .context("failed to drop the reference store")?;
        runs.push(LanesRun {
            lanes,
            daemon: drained,
            reference_changes: changes,
            reference_seconds: written?,
        });
    }
    Ok(runs)
}

/// The slot of the lanes run with `lanes` lanes.
fn lanes_slot(lanes: usize) -> String {
    format!("bench_lanes_{lanes}")
}

/// The store database of the lanes run with `lanes` lanes.
fn lanes_store(ctx: &TestContext, lanes: usize) -> mongodb::Database {
    ctx.mongo
        .database(&format!("{}_lanes_{lanes}", ctx.database))
}

/// The store reference's batches of `messages`, cut at the daemon's default batch limits.
async fn prepare_reference(
    messages: &[bytes::Bytes],
) -> Result<(Vec<store_reference::PreparedBatch>, usize)> {
    store_reference::prepare(messages, DEFAULT_BATCH_MAX_CHANGES, DEFAULT_BATCH_MAX_BYTES).await
}

/// A workload posted to a source database.
struct Posted {
    /// The token of the tablet that posted it.
    token: String,
    /// The ingest API it was posted to, still running.
    ingest: Service,
    /// What was posted.
    workload: workload::Workload,
    /// The source's WAL position once it was.
    end: u64,
}

/// Posts `uploads` uploads (generator `seed`) to `ctx`'s source through an ingest API started
/// for it with a tablet of its own.
async fn post(
    bins: &Path,
    logs: &Path,
    ctx: &TestContext,
    pg: &tokio_postgres::Client,
    uploads: usize,
    seed: u64,
) -> Result<Posted> {
    let token = device(bins, &ctx.database_url).await?;
    let ingest = Service::start(bins, "ingest-api", &ingest_env(ctx), logs).await?;
    let workload = workload::generate(&ingest.url, &token, uploads, TABLETS, seed).await?;
    let end = wal_position(pg).await?;
    Ok(Posted {
        token,
        ingest,
        workload,
        end,
    })
}

/// A daemon's drain of a backlog.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Drain {
    /// Seconds from starting the daemon until its last transaction was stored.
    pub seconds: f64,
    /// Row changes mapped (`cdc_changes_total`).
    pub changes: f64,
    /// Transactions applied.
    pub transactions: f64,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: u64,
}

impl Drain {
    /// Row changes per second.
    pub fn rows_per_second(&self) -> f64 {
        self.changes / self.seconds
    }
}

/// Polls `daemon` until its checkpoint reaches `end`. The drain ends when the transaction
/// count reached its final value (the checkpoint may pass `end` a little later, when the daemon
/// moves it on an idle keepalive).
async fn drain(daemon: &mut Service, started: Instant, end: u64) -> Result<Drain> {
    let (mut last_count, mut last_change) = (-1.0, 0.0);
    loop {
        daemon.ensure_running()?;
        anyhow::ensure!(
            started.elapsed() < DRAIN_TIMEOUT,
            "the daemon did not reach the end of the workload in {DRAIN_TIMEOUT:?}"
        );
        let metrics = daemon.metrics().await?;
        let now = started.elapsed().as_secs_f64();
        let transactions = metrics.sum("cdc_transactions_total");
        if transactions != last_count {
            (last_count, last_change) = (transactions, now);
        }
        if metrics.sum("cdc_applied_lsn") as u64 >= end {
            return Ok(Drain {
                seconds: last_change,
                changes: metrics.sum("cdc_changes_total"),
                transactions,
                peak_rss_bytes: daemon.peak_rss_bytes()?,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log(stage: &str) {
    eprintln!("pipeline-bench: {stage}");
}

fn ingest_env(ctx: &TestContext) -> Vec<(&'static str, String)> {
    vec![("MYHEALTH_DATABASE_URL", ctx.database_url.clone())]
}

/// A daemon of `ctx`'s source streaming `slot` into the store database `database`.
fn daemon_env(ctx: &TestContext, database: &str, slot: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MYHEALTH_DATABASE_URL", ctx.database_url.clone()),
        ("MYHEALTH_MONGODB_URI", ctx.mongodb_uri.clone()),
        ("MYHEALTH_MONGODB_DATABASE", database.to_string()),
        ("MYHEALTH_SLOT", slot.to_string()),
    ]
}

/// Creates `slots` before the workload, each with a daemon checkpoint at its start in `store`:
/// a daemon then streams the whole workload instead of taking an initial snapshot of it.
async fn create_slots(
    client: &tokio_postgres::Client,
    store: &mongodb::Database,
    slots: &[&str],
) -> Result<()> {
    for slot in slots {
        let start: String = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await
            .with_context(|| format!("failed to create slot {slot}"))?
            .get(0);
        read_model::checkpoint::save(
            store,
            slot,
            read_model::checkpoint::Checkpoint {
                lsn: read_model::lsn::parse(&start)?,
                commit_time_millis: 0,
            },
        )
        .await
        .with_context(|| format!("failed to store the checkpoint of slot {slot}"))?;
    }
    Ok(())
}

/// Drops `slots`, waiting for the walsender of a stopped client to let go of them.
async fn drop_slots(client: &tokio_postgres::Client, slots: &[&str]) -> Result<()> {
    for slot in slots {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
            {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("failed to drop slot {slot}"));
                }
            }
        }
    }
    Ok(())
}

async fn wal_position(client: &tokio_postgres::Client) -> Result<u64> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .context("failed to read the WAL position")?;
    Ok(read_model::lsn::parse(row.get(0))?)
}

/// A tablet made with the operator command; returns its token.
async fn device(bins: &Path, database_url: &str) -> Result<String> {
    let output = tokio::process::Command::new(bins.join("ingest-api"))
        .args([
            "device",
            "add",
            "--clinic",
            "Bench Clinic",
            "--label",
            "bench-tablet",
        ])
        .env("MYHEALTH_DATABASE_URL", database_url)
        .output()
        .await
        .context("failed to run `ingest-api device add`")?;
    anyhow::ensure!(
        output.status.success(),
        "`ingest-api device add` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Uploads of new patients at saturation (a new patient each, like the pgbench script).
async fn ingest_load(url: &str, token: &str, settings: &Settings) -> Result<load::Load> {
    let tablet = Arc::new(Mutex::new(Tablet::new(url, token, 9)));
    let http = reqwest::Client::new();
    let (endpoint, token) = (format!("{url}/v1/uploads"), token.to_string());
    load::closed_loop(
        settings.clients,
        Duration::from_secs(settings.seconds),
        move || {
            let body = match tablet.lock() {
                Ok(mut tablet) => {
                    let patient = tablet.patient();
                    tablet
                        .upload(&patient, time::OffsetDateTime::now_utc())
                        .to_string()
                }
                Err(_) => String::new(),
            };
            let request = http
                .post(&endpoint)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body);
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|answer| answer.status().is_success())
            }
        },
    )
    .await
}

/// The reports API's first list page of `patient`, and the same query from a driver loop.
async fn reports_load(
    bins: &Path,
    logs: &Path,
    ctx: &TestContext,
    patient: uuid::Uuid,
    settings: &Settings,
) -> Result<(load::Load, load::Load)> {
    let env = vec![
        ("MYHEALTH_MONGODB_URI", ctx.mongodb_uri.clone()),
        ("MYHEALTH_MONGODB_DATABASE", ctx.database.clone()),
        ("MYHEALTH_SLOT", "bench_store".to_string()),
        ("MYHEALTH_AUTH__ALGORITHM", "HS256".to_string()),
        (
            "MYHEALTH_AUTH__HS256_SECRET",
            uuid::Uuid::new_v4().simple().to_string(),
        ),
    ];
    let output = tokio::process::Command::new(bins.join("reports-api"))
        .args(["token", "--patient", &patient.to_string(), "--ttl", "1h"])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .await
        .context("failed to run `reports-api token`")?;
    anyhow::ensure!(output.status.success(), "`reports-api token` failed");
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let api = Service::start(bins, "reports-api", &env, logs).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/me/reports", api.url);
    let served = load::closed_loop(
        settings.clients,
        Duration::from_secs(settings.seconds),
        move || {
            let request = http.get(&url).bearer_auth(&token);
            async move {
                match request.send().await {
                    Ok(answer) if answer.status().is_success() => answer.bytes().await.is_ok(),
                    _ => false,
                }
            }
        },
    )
    .await?;
    api.stop().await?;

    // What `reports-api/src/store.rs` sends for the first page of 20.
    let reports = ctx
        .mongo
        .database(&ctx.database)
        .collection::<Document>(read_model::REPORTS);
    let patient = patient.to_string();
    let driver = load::closed_loop(
        settings.clients,
        Duration::from_secs(settings.seconds),
        move || {
            let (reports, filter) = (reports.clone(), doc! { "patient_id": &patient });
            async move {
                let find = reports
                .find(filter)
                .sort(doc! { "taken_at": -1, "_id": -1 })
                .projection(
                    doc! { "raw": 0, "_cdc": 0, "patient": 0, "patient_id": 0, "checkup_id": 0 },
                )
                .limit(21)
                .batch_size(21);
                let Ok(mut cursor) = find.await else {
                    return false;
                };
                let mut page = Vec::new();
                while let Ok(true) = cursor.advance().await {
                    match cursor.deserialize_current() {
                        Ok(document) => page.push(document),
                        Err(_) => return false,
                    }
                }
                !page.is_empty()
            }
        },
    )
    .await?;
    Ok((served, driver))
}
