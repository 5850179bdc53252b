//! The three services running inside the test process, each on a free loopback port: what a
//! test starts when it needs a service's real HTTP surface but not its process (for that, see
//! [`crate::services`]).
//!
//! Settings are the `MYHEALTH_*` variables the binaries read, given as pairs; the listen address
//! defaults to `127.0.0.1:0`. [`InProcessStack`] is the whole pipeline on one test's databases:
//! ingest API, daemon and reports API with their least-privilege logins, a tablet of a clinic,
//! and the daemon streaming before the first source row is written.

use std::collections::HashMap;
use std::time::Duration;

use service_plumbing::shutdown::Shutdown;
use tokio::task::JoinHandle;

use crate::roles::ServiceLogin;
use crate::{HarnessError, TestContext, services};

/// How long a stopped service may take to finish (the daemon checkpoints its batch first).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `MYHEALTH_*` settings from pairs, as `config::load_from_vars` takes them.
pub fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A service serving on its own task; dropping it triggers its shutdown without waiting.
pub struct Running {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Triggering it stops the service as SIGTERM would.
    pub shutdown: Shutdown,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Triggers the shutdown and waits until the service has finished, returning its error.
    pub async fn stop(mut self) -> Result<(), HarnessError> {
        self.shutdown.trigger();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let failed = |detail: String| HarnessError::Service {
            service: "in-process service".to_string(),
            detail,
        };
        match tokio::time::timeout(STOP_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(failed(format!("{error:#}"))),
            Ok(Err(panic)) => Err(failed(format!("panicked: {panic}"))),
            Err(_) => Err(failed(format!(
                "did not stop within {} s",
                STOP_TIMEOUT.as_secs()
            ))),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

fn config<T: serde::de::DeserializeOwned>(
    service: &str,
    settings: &[(&str, &str)],
) -> Result<T, HarnessError> {
    let mut all = vars(&[("MYHEALTH_HTTP__LISTEN", "127.0.0.1:0")]);
    all.extend(vars(settings));
    service_plumbing::config::load_from_vars(None, all).map_err(|error| HarnessError::Service {
        service: service.to_string(),
        detail: format!("bad settings: {error}"),
    })
}

fn build_failed(service: &str) -> impl FnOnce(anyhow::Error) -> HarnessError + '_ {
    move |error| HarnessError::Service {
        service: service.to_string(),
        detail: format!("{error:#}"),
    }
}

/// Starts `ingest-api` with `settings` (`MYHEALTH_DATABASE_URL` at least).
pub async fn ingest(settings: &[(&str, &str)]) -> Result<Running, HarnessError> {
    let app = ingest_api::build(config("ingest-api", settings)?)
        .await
        .map_err(build_failed("ingest-api"))?;
    let shutdown = Shutdown::new();
    Ok(Running {
        url: format!("http://{}", app.local_addr()),
        task: Some(tokio::spawn(app.run_until_stopped(shutdown.clone()))),
        shutdown,
    })
}

/// Starts `reports-api` with `settings` (`MYHEALTH_MONGODB_URI` and `MYHEALTH_AUTH__*` at
/// least).
pub async fn reports(settings: &[(&str, &str)]) -> Result<Running, HarnessError> {
    let app = reports_api::build(config("reports-api", settings)?)
        .await
        .map_err(build_failed("reports-api"))?;
    let shutdown = Shutdown::new();
    Ok(Running {
        url: format!("http://{}", app.local_addr()),
        task: Some(tokio::spawn(app.run_until_stopped(shutdown.clone()))),
        shutdown,
    })
}

/// Starts `cdc-daemon` with `settings` (`MYHEALTH_DATABASE_URL` and `MYHEALTH_MONGODB_URI` at
/// least), without waiting for it to stream ([`services::wait_streaming`] does).
pub async fn daemon(settings: &[(&str, &str)]) -> Result<Running, HarnessError> {
    let shutdown = Shutdown::new();
    let app = cdc_daemon::build(config("cdc-daemon", settings)?, shutdown.clone()).await;
    run_daemon(app, shutdown)
}

/// [`daemon`] writing through `client`, a store client of the caller's (one that listens to
/// the commands the driver sends); `MYHEALTH_MONGODB_URI` is not used.
pub async fn daemon_on(
    settings: &[(&str, &str)],
    client: mongodb::Client,
) -> Result<Running, HarnessError> {
    let shutdown = Shutdown::new();
    let config = config("cdc-daemon", settings)?;
    let app = cdc_daemon::build_on(config, client, shutdown.clone()).await;
    run_daemon(app, shutdown)
}

/// Runs a built daemon on its own task.
fn run_daemon(
    app: anyhow::Result<cdc_daemon::App>,
    shutdown: Shutdown,
) -> Result<Running, HarnessError> {
    let app = app.map_err(build_failed("cdc-daemon"))?;
    Ok(Running {
        url: format!("http://{}", app.local_addr()),
        task: Some(tokio::spawn(app.run_until_stopped())),
        shutdown,
    })
}

/// Ingest API, daemon and reports API on one test's databases, with a registered tablet.
/// Fields drop in order: the services are told to stop before the databases are dropped.
pub struct InProcessStack {
    /// `ingest-api`, connected as its least-privilege login.
    pub ingest: Running,
    /// `cdc-daemon`, connected as the replication login, streaming from [`InProcessStack::slot`].
    pub daemon: Running,
    /// `reports-api`, verifying HS256 tokens signed with the secret given to `start`.
    pub reports: Running,
    /// The test's own replication slot.
    pub slot: String,
    /// The token of tablet `tablet` of the clinic given to `start`.
    pub device_token: String,
    /// The test's databases.
    pub ctx: TestContext,
}

impl InProcessStack {
    /// Starts the three services on `ctx`; the reports API checks tokens signed with
    /// `hs256_secret`; a tablet of `clinic` is registered once the daemon streams (so that the
    /// clinic's row reaches the store through the stream).
    pub async fn start(
        ctx: TestContext,
        hs256_secret: &str,
        clinic: &str,
    ) -> Result<InProcessStack, HarnessError> {
        let slot = ctx.unique_name("slot");
        let daemon = daemon(&[
            (
                "MYHEALTH_DATABASE_URL",
                &ctx.url_as(ServiceLogin::Replication),
            ),
            ("MYHEALTH_MONGODB_URI", &ctx.mongodb_uri),
            ("MYHEALTH_MONGODB_DATABASE", &ctx.database),
            ("MYHEALTH_SLOT", &slot),
            ("MYHEALTH_BATCH_MAX_DELAY_MS", "10"),
        ])
        .await?;
        let ingest = ingest(&[
            ("MYHEALTH_DATABASE_URL", &ctx.url_as(ServiceLogin::Ingest)),
            ("MYHEALTH_SLOT", &slot),
        ])
        .await?;
        let reports = reports(&[
            ("MYHEALTH_MONGODB_URI", &ctx.mongodb_uri),
            ("MYHEALTH_MONGODB_DATABASE", &ctx.database),
            ("MYHEALTH_SLOT", &slot),
            ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
            ("MYHEALTH_AUTH__HS256_SECRET", hs256_secret),
        ])
        .await?;
        services::wait_streaming(&daemon.url, services::STREAMING_TIMEOUT).await?;
        let mut client = ctx.postgres().await?;
        let (_, device_token) = ingest_api::store::devices::add(&mut client, clinic, "tablet")
            .await
            .map_err(|error| HarnessError::Service {
                service: "ingest-api".to_string(),
                detail: format!("failed to register a tablet: {error}"),
            })?;
        Ok(InProcessStack {
            ingest,
            daemon,
            reports,
            slot,
            device_token,
            ctx,
        })
    }
}
