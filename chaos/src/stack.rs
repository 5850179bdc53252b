//! The system under test: a PostgreSQL cluster and a store of the run's own (FerretDB on the
//! backend `FERRETDB_BACKEND` names, by default PostgreSQL in a second cluster), so that the
//! source and the store can be stopped and restarted independently; the migrated `chaos`
//! database with the services' logins; and the three service binaries from the build
//! directory, each supervised on a fixed port so that a restart comes back where the load
//! generator and the checks expect it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use devstack::ferretdb::Store;
use devstack::postgres::{ClusterOptions, PostgresServer, connect};
use devstack::process::free_loopback_port;
use devstack::roles::{self, ServiceLogin};
use devstack::services::{self, ServiceProcess};

/// The source database and the MongoDB database of a run.
pub const DATABASE: &str = "chaos";
/// The slot the daemon uses (its default).
pub const SLOT: &str = read_model::DEFAULT_SLOT;

/// One of the three services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `ingest-api`.
    Ingest,
    /// `cdc-daemon`.
    Daemon,
    /// `reports-api`.
    Reports,
}

impl Service {
    fn binary(self) -> &'static str {
        match self {
            Service::Ingest => "ingest-api",
            Service::Daemon => "cdc-daemon",
            Service::Reports => "reports-api",
        }
    }
}

struct Running {
    service: Service,
    process: ServiceProcess,
}

/// How long a service may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// Everything the run starts; dropping it stops every process, the services first (fields drop
/// in order).
pub struct Stack {
    services: Vec<Running>,
    /// The source cluster.
    pub postgres: PostgresServer,
    /// The read store.
    pub store: Store,
    /// The `chaos` database as the superuser: for the checks.
    pub admin_url: String,
    /// The `chaos` database as the daemon's login: for `cdc-daemon verify`.
    pub replication_url: String,
    /// A token of the tablet the load generator posts with.
    pub device_token: String,
    /// Where the binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Where the services' logs are.
    pub log_dir: PathBuf,
}

impl Stack {
    /// Starts the servers, migrates, creates a tablet, starts the services and waits until each
    /// is ready.
    pub async fn start() -> Result<Stack> {
        let bin_dir = std::env::current_exe()
            .context("failed to locate the chaos binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("the chaos binary has no parent directory")?;
        let log_dir = devstack::workspace::devstack_dir()
            .parent()
            .map(|target| target.join("chaos"))
            .context("target directory")?;
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("failed to create {}", log_dir.display()))?;

        let (postgres, store) = tokio::join!(
            PostgresServer::start(ClusterOptions::default()),
            Store::start_ferretdb(None)
        );
        let (postgres, store) = (postgres?, store?);
        let admin = postgres.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .context("failed to create the chaos database")?;
        let admin_url = postgres.url_for(DATABASE);
        let mut client = connect(&admin_url).await?;
        source_schema::migrate(&mut client).await?;
        roles::create_logins(&client).await?;

        let ingest_url = roles::url_as(&admin_url, ServiceLogin::Ingest)?;
        let replication_url = roles::url_as(&admin_url, ServiceLogin::Replication)?;
        let mut stack = Stack {
            services: Vec::new(),
            postgres,
            store,
            admin_url,
            replication_url,
            device_token: String::new(),
            bin_dir,
            log_dir,
        };
        let mongodb_uri = stack.store.uri().to_string();
        let secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
        stack.spawn(
            Service::Daemon,
            &[
                ("MYHEALTH_DATABASE_URL", stack.replication_url.clone()),
                ("MYHEALTH_MONGODB_URI", mongodb_uri.clone()),
                ("MYHEALTH_MONGODB_DATABASE", DATABASE.to_string()),
                // Eight lanes of writes at once: a kill finds them at different positions.
                ("MYHEALTH_WRITE_LANES", "8".to_string()),
            ],
        )?;
        // The load starts once the daemon holds its slot, so that the run measures faults rather
        // than the initial snapshot.
        stack.wait_streaming(Duration::from_secs(60)).await?;
        let (_, device_token) =
            ingest_api::store::devices::add(&mut client, "Chaos Clinic", "tablet-1")
                .await
                .context("failed to create the load generator's tablet")?;
        stack.device_token = device_token;
        stack.spawn(Service::Ingest, &[("MYHEALTH_DATABASE_URL", ingest_url)])?;
        stack.spawn(
            Service::Reports,
            &[
                ("MYHEALTH_MONGODB_URI", mongodb_uri),
                ("MYHEALTH_MONGODB_DATABASE", DATABASE.to_string()),
                ("MYHEALTH_AUTH__ALGORITHM", "HS256".to_string()),
                ("MYHEALTH_AUTH__HS256_SECRET", secret),
            ],
        )?;
        for service in [Service::Ingest, Service::Reports] {
            stack.wait_ready(service, Duration::from_secs(60)).await?;
        }
        Ok(stack)
    }

    fn spawn(&mut self, service: Service, settings: &[(&str, String)]) -> Result<()> {
        let binary = services::binary(&self.bin_dir, service.binary())?;
        let env: Vec<(String, String)> = settings
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect();
        let log = self.log_dir.join(format!("{}.log", service.binary()));
        let process = ServiceProcess::spawn(&binary, free_loopback_port()?, &env, Some(&log))?;
        self.services.push(Running { service, process });
        Ok(())
    }

    fn running(&mut self, service: Service) -> Result<&mut Running> {
        self.services
            .iter_mut()
            .find(|running| running.service == service)
            .with_context(|| format!("{} was not started", service.binary()))
    }

    /// The base URL of `service`.
    pub fn base(&self, service: Service) -> String {
        self.services
            .iter()
            .find(|running| running.service == service)
            .map(|running| running.process.url().to_string())
            .unwrap_or_default()
    }

    /// Kills `service` with SIGKILL (`crash`) or stops it with SIGTERM, then starts it again on
    /// the same port after `pause`.
    pub async fn restart(&mut self, service: Service, crash: bool, pause: Duration) -> Result<()> {
        let running = self.running(service)?;
        if crash {
            running.process.kill().await?;
        } else {
            running.process.stop(STOP_DEADLINE).await?;
        }
        tokio::time::sleep(pause).await;
        running.process.restart()?;
        Ok(())
    }

    /// Waits until the daemon holds its slot (`cdc_connected 1`).
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        services::wait_streaming(&self.base(Service::Daemon), timeout)
            .await
            .with_context(|| format!("see {}", self.log_dir.display()))
    }

    /// Waits until `service` answers `/readyz` with 200.
    pub async fn wait_ready(&self, service: Service, timeout: Duration) -> Result<()> {
        let running = self
            .services
            .iter()
            .find(|running| running.service == service)
            .with_context(|| format!("{} was not started", service.binary()))?;
        running.process.wait_ready(timeout).await?;
        Ok(())
    }
}
