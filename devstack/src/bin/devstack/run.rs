//! `devstack run`: the whole stack on this machine, for as long as the developer wants it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use devstack::postgres::{ClusterOptions, connect, redact};
use devstack::prometheus::{Prometheus, ScrapeTarget};
use devstack::roles::{self, ServiceLogin};
use devstack::tablet::{self, Tablet};
use devstack::{Stack, workspace};
use tokio::signal::unix::{SignalKind, signal};

use crate::services::{RunningServices, ServiceSpec};

/// How often the local Prometheus scrapes the services and evaluates the alert rules.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(5);

/// Options of `devstack run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Port of the ingest API.
    #[arg(long, default_value_t = 8080)]
    ingest_port: u16,
    /// Port of the reports API.
    #[arg(long, default_value_t = 8081)]
    reports_port: u16,
    /// Port of the CDC daemon's metrics and health endpoints.
    #[arg(long, default_value_t = 9187)]
    cdc_port: u16,
    /// Port of Prometheus (the replication dashboard is at /consoles/replication.html).
    #[arg(long, default_value_t = 9090)]
    prometheus_port: u16,
    /// Name of the source database and of the MongoDB database.
    #[arg(long, env = "MYHEALTH_DATABASE", default_value = "myhealth")]
    database: String,
}

/// Starts everything, waits for Ctrl-C or SIGTERM (or a service dying), stops everything.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let env_file = workspace::devstack_dir().join("env");
    // A stale file would point at servers that are gone; it is written again once all is ready.
    let _ = std::fs::remove_file(&env_file);

    let durable = ClusterOptions {
        port: None,
        durable: true,
    };
    let stack = Stack::from_env_or_start(durable, None)
        .await
        .context("failed to start PostgreSQL and the store")?;
    let database_url = create_and_migrate(&stack, &args.database).await?;

    // Patients' tokens are signed with a secret of this run only (HS256, the local mode).
    let token_secret = uuid::Uuid::new_v4().simple().to_string();
    let shared_env = vec![
        ("MYHEALTH_AUTH__ALGORITHM".to_string(), "HS256".to_string()),
        ("MYHEALTH_AUTH__HS256_SECRET".to_string(), token_secret),
        (
            "MYHEALTH_MONGODB_URI".to_string(),
            stack.store.uri().to_string(),
        ),
        (
            "MYHEALTH_MONGODB_DATABASE".to_string(),
            args.database.clone(),
        ),
    ];
    // Each service connects with its own least-privilege login; reports-api reads the store only.
    let specs = [
        ServiceSpec::new("ingest-api", "INGEST_URL", args.ingest_port).with_env(
            "MYHEALTH_DATABASE_URL",
            roles::url_as(&database_url, ServiceLogin::Ingest)?,
        ),
        ServiceSpec::new("reports-api", "REPORTS_URL", args.reports_port),
        ServiceSpec::new("cdc-daemon", "CDC_METRICS_URL", args.cdc_port).with_env(
            "MYHEALTH_DATABASE_URL",
            roles::url_as(&database_url, ServiceLogin::Replication)?,
        ),
    ];
    let mut services = RunningServices::start(&specs, &shared_env).await?;
    let targets = [
        ("ingest-api", args.ingest_port),
        ("reports-api", args.reports_port),
        ("cdc-daemon", args.cdc_port),
    ]
    .map(|(job, port)| ScrapeTarget {
        job: job.to_string(),
        address: format!("127.0.0.1:{port}"),
    });
    let prometheus = Prometheus::start(&targets, Some(args.prometheus_port), SCRAPE_INTERVAL)
        .await
        .context("failed to start Prometheus")?;
    let device_token = demo_device(&database_url).await?;
    let ingest_url = format!("http://127.0.0.1:{}", args.ingest_port);
    let (patient, commit_lsn) = seed(&ingest_url, &device_token).await?;
    let patient_token = patient_token(&shared_env, patient.id).await?;

    let mut lines = vec![
        ("DATABASE_URL".to_string(), database_url),
        ("MONGODB_URI".to_string(), stack.store.uri().to_string()),
        ("MONGODB_DATABASE".to_string(), args.database.clone()),
    ];
    lines.extend(services.urls());
    lines.push(("PROMETHEUS_URL".to_string(), prometheus.url()));
    lines.push(("DEVICE_TOKEN".to_string(), device_token));
    lines.push(("DEMO_PATIENT_ID".to_string(), patient.id.to_string()));
    lines.push(("PATIENT_TOKEN".to_string(), patient_token.clone()));
    // The token rides in the fragment, which the browser never sends; the app moves it to
    // sessionStorage and out of the address bar.
    let app_url = format!(
        "http://127.0.0.1:{}/app/#token={patient_token}",
        args.reports_port
    );
    lines.push(("APP_SIGN_IN_URL".to_string(), app_url.clone()));
    write_env_file(&env_file, &lines)?;

    eprintln!("devstack: the stack is ready (Ctrl-C stops it)");
    for (key, value) in &lines {
        eprintln!("  {key:<18} {}", redact_if_url(value));
    }
    eprintln!("  dashboard          {}", prometheus.dashboard_url());
    eprintln!("  logs               {}", services.log_dir().display());
    eprintln!(
        "devstack: {} has {DEMO_CHECKUPS} demo checkups; open the patient app signed in as them:",
        patient.full_name
    );
    eprintln!("  {app_url}");
    eprintln!("devstack: their reports as JSON:");
    eprintln!(
        "  curl -s -H 'Authorization: Bearer {patient_token}' 'http://127.0.0.1:{}/v1/me/reports?min_lsn={commit_lsn}&wait_ms=3000'",
        args.reports_port
    );
    eprintln!("  env file           {}", env_file.display());

    let mut terminate = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = terminate.recv() => ExitCode::SUCCESS,
        name = services.first_exit() => {
            eprintln!("devstack: {name} exited unexpectedly; see its log; stopping the stack");
            ExitCode::FAILURE
        }
    };
    eprintln!("devstack: stopping");
    services.stop_all().await;
    drop(prometheus);
    let _ = std::fs::remove_file(&env_file);
    drop(stack);
    eprintln!("devstack: stopped");
    Ok(code)
}

/// Creates `database` if it does not exist, applies the migrations and creates the services'
/// logins; returns its URL (as the administrator).
async fn create_and_migrate(stack: &Stack, database: &str) -> Result<String> {
    let admin = connect(stack.postgres.admin_url()).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .context("failed to look up the database")?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await
            .with_context(|| format!("failed to create database {database}"))?;
    }
    let url = stack.postgres.url_for(database);
    let mut client = connect(&url).await?;
    let applied = source_schema::migrate(&mut client).await?;
    roles::create_logins(&client).await?;
    eprintln!(
        "devstack: database {database} migrated ({} new migrations)",
        applied.len()
    );
    Ok(url)
}

/// Creates a tablet of "Demo Clinic" with the operator command an SRE would use, and returns its
/// token, so that the README's curl example works as pasted.
async fn demo_device(database_url: &str) -> Result<String> {
    let binary = std::env::current_exe()
        .context("failed to locate the devstack binary")?
        .with_file_name("ingest-api");
    let label = format!(
        "demo-tablet-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let output = tokio::process::Command::new(&binary)
        .args([
            "device",
            "add",
            "--clinic",
            "Demo Clinic",
            "--label",
            &label,
        ])
        .env("MYHEALTH_DATABASE_URL", database_url)
        .output()
        .await
        .with_context(|| format!("failed to run {}", binary.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "`ingest-api device add` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Checkups of the first demo patient, a month apart: enough for the app's trend charts to
/// show a trend and its report list to have more than one page.
const DEMO_CHECKUPS: i64 = 8;

/// Posts demo checkups through the ingest API, as a tablet would: [`DEMO_CHECKUPS`] for the
/// first of three patients, two for the others; returns the first patient and the last
/// upload's commit LSN.
async fn seed(ingest_url: &str, device_token: &str) -> Result<(tablet::Patient, String)> {
    let mut tablet = Tablet::new(ingest_url, device_token, 2026);
    let patients: Vec<tablet::Patient> = (0..3).map(|_| tablet.patient()).collect();
    let mut commit_lsn = String::new();
    for (index, patient) in patients.iter().enumerate() {
        let checkups = if index == 0 { DEMO_CHECKUPS } else { 2 };
        for month in 0..checkups {
            let at =
                time::OffsetDateTime::now_utc() - time::Duration::days(30 * month + index as i64);
            let upload = tablet.upload(patient, at);
            let result = tablet
                .post(&upload)
                .await
                .context("failed to seed a demo upload")?;
            commit_lsn = result["commit_lsn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
    }
    let first = patients.into_iter().next().context("no demo patient")?;
    Ok((first, commit_lsn))
}

/// A token for `patient` from `reports-api token`, signed with this run's secret.
async fn patient_token(env: &[(String, String)], patient: uuid::Uuid) -> Result<String> {
    let binary = std::env::current_exe()
        .context("failed to locate the devstack binary")?
        .with_file_name("reports-api");
    let output = tokio::process::Command::new(&binary)
        .args(["token", "--patient", &patient.to_string(), "--ttl", "12h"])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .await
        .with_context(|| format!("failed to run {}", binary.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "`reports-api token` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Writes `KEY=VALUE` lines for scripts (`set -a; . target/devstack/env`).
fn write_env_file(path: &Path, lines: &[(String, String)]) -> Result<()> {
    let text: String = lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

fn redact_if_url(value: &str) -> String {
    if value.contains("://") {
        redact(value)
    } else {
        value.to_string()
    }
}
