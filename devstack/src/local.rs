//! The local stack of `devstack run`: PostgreSQL and the store, the migrated database with the
//! services' logins, the three service binaries, Prometheus, a demo tablet and demo patients,
//! and the env file (`target/devstack/env`) that makes the README's commands work as written
//! after `set -a; . target/devstack/env; set +a`.
//!
//! The env file carries the short names the README's psql and curl lines use (`DATABASE_URL`,
//! `INGEST_URL`, …) and the `MYHEALTH_*` names the binaries read, so that the operator commands
//! (`ingest-api device add`, `reports-api token`, `cdc-daemon verify`, …) run against this stack
//! without further settings: the administrator's database URL, the store, the slot and the
//! local HS256 key that signs patients' tokens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::postgres::{ClusterOptions, connect, redact};
use crate::prometheus::{Prometheus, ScrapeTarget};
use crate::roles::{self, ServiceLogin};
use crate::services::{self, READY_TIMEOUT, ServiceProcess};
use crate::tablet::{self, Tablet};
use crate::{HarnessError, Stack};

/// How often the local Prometheus scrapes the services and evaluates the alert rules.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a service may take to shut down after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port of the ingest API.
    pub ingest_port: u16,
    /// Port of the reports API.
    pub reports_port: u16,
    /// Port of the daemon's metrics and health endpoints.
    pub cdc_port: u16,
    /// Port of Prometheus.
    pub prometheus_port: u16,
    /// The source database and the MongoDB database (created if missing).
    pub database: String,
    /// The daemon's replication slot.
    pub slot: String,
    /// Where the service binaries are.
    pub bin_dir: PathBuf,
    /// Where the services' logs go.
    pub log_dir: PathBuf,
    /// The env file to write once everything is ready (removed when the stack stops).
    pub env_file: PathBuf,
}

/// The running local stack. [`LocalStack::stop`] stops it in order; dropping it stops every
/// process too, less gently.
pub struct LocalStack {
    services: Vec<ServiceProcess>,
    prometheus: Prometheus,
    env: Vec<(String, String)>,
    env_file: PathBuf,
    demo_patient_name: String,
    demo_commit_lsn: String,
    /// The servers, dropped last.
    pub stack: Stack,
}

impl LocalStack {
    /// Starts everything, seeds the demo data and writes the env file.
    pub async fn start(options: &Options) -> Result<LocalStack, HarnessError> {
        // A stale file would point at servers that are gone; it is written again once all is
        // ready.
        let _ = std::fs::remove_file(&options.env_file);
        std::fs::create_dir_all(&options.log_dir).map_err(HarnessError::io(format!(
            "failed to create {}",
            options.log_dir.display()
        )))?;
        let durable = ClusterOptions {
            port: None,
            durable: true,
            tls: None,
        };
        let stack = Stack::from_env_or_start(durable, None).await?;
        let database_url = create_and_migrate(&stack, &options.database).await?;

        // Patients' tokens are signed with a secret of this run only (HS256, the local mode).
        let token_secret = uuid::Uuid::new_v4().simple().to_string();
        let mongodb_uri = stack.store.uri().to_string();
        let shared = [
            ("MYHEALTH_MONGODB_URI", mongodb_uri.clone()),
            ("MYHEALTH_MONGODB_DATABASE", options.database.clone()),
            ("MYHEALTH_SLOT", options.slot.clone()),
            ("MYHEALTH_AUTH__ALGORITHM", "HS256".to_string()),
            ("MYHEALTH_AUTH__HS256_SECRET", token_secret),
        ]
        .map(|(key, value)| (key.to_string(), value));
        // Each service connects with its own least-privilege login; reports-api reads the store
        // only.
        let ingest_url = roles::url_as(&database_url, ServiceLogin::Ingest)?;
        let daemon_url = roles::url_as(&database_url, ServiceLogin::Replication)?;
        let started = [
            ("ingest-api", options.ingest_port, Some(ingest_url)),
            ("reports-api", options.reports_port, None),
            ("cdc-daemon", options.cdc_port, Some(daemon_url)),
        ];
        let mut running = Vec::new();
        for (name, port, url) in started {
            let mut env = shared.to_vec();
            env.extend(url.map(|url| ("MYHEALTH_DATABASE_URL".to_string(), url)));
            let binary = services::binary(&options.bin_dir, name)?;
            let log = options.log_dir.join(format!("{name}.log"));
            running.push(ServiceProcess::spawn(&binary, port, &env, Some(&log))?);
        }
        for service in &running {
            service.wait_ready(READY_TIMEOUT).await?;
        }
        let targets = running.iter().map(|service| ScrapeTarget {
            job: service.name().to_string(),
            address: service.url().trim_start_matches("http://").to_string(),
        });
        let prometheus = Prometheus::start(
            &targets.collect::<Vec<_>>(),
            Some(options.prometheus_port),
            SCRAPE_INTERVAL,
        )
        .await?;

        // The operator commands run as the administrator, as an SRE would run them.
        let mut operator = shared.to_vec();
        operator.push(("MYHEALTH_DATABASE_URL".to_string(), database_url.clone()));
        let label = format!(
            "demo-tablet-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let device_token = run_tool(
            &options.bin_dir,
            "ingest-api",
            &[
                "device",
                "add",
                "--clinic",
                "Demo Clinic",
                "--label",
                &label,
            ],
            &operator,
        )
        .await?;
        let (patient, demo_commit_lsn) = seed(running[0].url(), &device_token).await?;
        let patient_token = run_tool(
            &options.bin_dir,
            "reports-api",
            &[
                "token",
                "--patient",
                &patient.id.to_string(),
                "--ttl",
                "12h",
            ],
            &operator,
        )
        .await?;

        let mut env = vec![
            ("DATABASE_URL".to_string(), database_url),
            ("MONGODB_URI".to_string(), mongodb_uri),
            ("MONGODB_DATABASE".to_string(), options.database.clone()),
        ];
        env.extend(operator);
        for (key, service) in ["INGEST_URL", "REPORTS_URL", "CDC_METRICS_URL"]
            .into_iter()
            .zip(&running)
        {
            env.push((key.to_string(), service.url().to_string()));
        }
        env.push(("PROMETHEUS_URL".to_string(), prometheus.url()));
        env.push(("DEVICE_TOKEN".to_string(), device_token));
        env.push(("DEMO_PATIENT_ID".to_string(), patient.id.to_string()));
        let app_url = app_sign_in_url(running[1].url(), &patient_token);
        env.push(("PATIENT_TOKEN".to_string(), patient_token));
        env.push(("APP_SIGN_IN_URL".to_string(), app_url));
        write_env_file(&options.env_file, &env)?;
        Ok(LocalStack {
            services: running,
            prometheus,
            env,
            env_file: options.env_file.clone(),
            demo_patient_name: patient.full_name,
            demo_commit_lsn,
            stack,
        })
    }

    /// What the env file holds, in its order.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The value of `key` in the env file.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The commit LSN of the last demo upload: once the store has reached it, the demo
    /// patients' reports are readable.
    pub fn demo_commit_lsn(&self) -> &str {
        &self.demo_commit_lsn
    }

    /// The URLs, the env file and a ready-to-paste curl of the demo patient's reports, as
    /// `devstack run` prints them once the stack is ready (secrets left out, URLs redacted).
    pub fn summary(&self) -> String {
        use std::fmt::Write;

        let mut text = String::from("devstack: the stack is ready (Ctrl-C stops it)\n");
        for (key, value) in &self.env {
            if key.contains("SECRET") {
                continue;
            }
            let _ = writeln!(text, "  {key:<28} {}", redact_if_url(value));
        }
        let _ = writeln!(
            text,
            "  dashboard                    {}",
            self.prometheus.dashboard_url()
        );
        if let Some(log_dir) = self.services.first().and_then(|s| s.log().parent()) {
            let _ = writeln!(text, "  logs                         {}", log_dir.display());
        }
        let _ = writeln!(
            text,
            "devstack: {} has {DEMO_CHECKUPS} demo checkups; open the patient app signed in as them:",
            self.demo_patient_name
        );
        let _ = writeln!(
            text,
            "  {}",
            self.var("APP_SIGN_IN_URL").unwrap_or_default()
        );
        let _ = writeln!(text, "devstack: their reports as JSON:");
        let _ = writeln!(
            text,
            "  curl -s -H 'Authorization: Bearer {}' '{}/v1/me/reports?min_lsn={}&wait_ms=3000'",
            self.var("PATIENT_TOKEN").unwrap_or_default(),
            self.var("REPORTS_URL").unwrap_or_default(),
            self.demo_commit_lsn
        );
        let _ = writeln!(
            text,
            "  env file                     {}",
            self.env_file.display()
        );
        text
    }

    /// Resolves with the name of the first service that exits.
    pub async fn first_exit(&self) -> String {
        loop {
            if let Some(service) = self.services.iter().find(|s| !s.is_running()) {
                return service.name().to_string();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the services (SIGTERM, then SIGKILL after 20 s) and removes the env file; the
    /// servers and Prometheus stop when the stack is dropped.
    pub async fn stop_services(&mut self) {
        let _ = std::fs::remove_file(&self.env_file);
        for service in &mut self.services {
            if let Err(error) = service.stop(STOP_DEADLINE).await {
                eprintln!("devstack: {}: {error}", service.name());
            }
        }
    }
}

/// The patient app's sign-in link on the reports API at `reports_url`, signed in with the
/// patient's `token`. The token rides in the fragment, which the browser never sends; the app
/// moves it to sessionStorage and out of the address bar.
pub fn app_sign_in_url(reports_url: &str, token: &str) -> String {
    format!("{reports_url}/app/#token={token}")
}

/// Creates `database` if it does not exist, applies the migrations and creates the services'
/// logins; returns its URL (as the administrator).
async fn create_and_migrate(stack: &Stack, database: &str) -> Result<String, HarnessError> {
    let failed = |action: String| move |source| HarnessError::Postgres { action, source };
    let admin = connect(stack.postgres.admin_url()).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(failed("failed to look up the database".to_string()))?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await
            .map_err(failed(format!("failed to create database {database}")))?;
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

/// Runs an operator command of a service binary and returns what it printed on stdout.
async fn run_tool(
    bin_dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(String, String)],
) -> Result<String, HarnessError> {
    let binary = services::binary(bin_dir, name)?;
    let shown = format!("{name} {}", args.join(" "));
    let output = tokio::process::Command::new(&binary)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .await
        .map_err(HarnessError::io(format!("failed to run {shown}")))?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Checkups of the first demo patient, a month apart: enough for the app's trend charts to
/// show a trend and its report list to have more than one page.
const DEMO_CHECKUPS: i64 = 8;

/// Posts demo checkups through the ingest API, as a tablet would: [`DEMO_CHECKUPS`] for the
/// first of three patients, two for the others; returns the first patient and the last
/// upload's commit LSN.
async fn seed(
    ingest_url: &str,
    device_token: &str,
) -> Result<(tablet::Patient, String), HarnessError> {
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
                .map_err(|error| HarnessError::Service {
                    service: "ingest-api".to_string(),
                    detail: format!("failed to seed a demo upload: {error}"),
                })?;
            commit_lsn = result["commit_lsn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
    }
    let first = patients.into_iter().next().ok_or(HarnessError::Service {
        service: "devstack".to_string(),
        detail: "no demo patient".to_string(),
    })?;
    Ok((first, commit_lsn))
}

/// Writes `KEY=VALUE` lines for scripts (`set -a; . target/devstack/env`), readable by the
/// owner only: it holds tokens and the local signing secret.
fn write_env_file(path: &Path, lines: &[(String, String)]) -> Result<(), HarnessError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let text: String = lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(HarnessError::io(format!(
            "failed to create {}",
            dir.display()
        )))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(HarnessError::io(format!(
            "failed to write {}",
            path.display()
        )))
}

fn redact_if_url(value: &str) -> String {
    if value.contains("://") {
        redact(value)
    } else {
        value.to_string()
    }
}
