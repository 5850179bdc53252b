//! Starting the daemon on a test database, writing source rows, waiting and verifying.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdc_daemon::sink::{self, Batch, FlushError, Limits, Mode, Skipped};
use devstack::TestContext;
use devstack::ferretdb::Store as FerretDb;
use devstack::in_process::{self, Running};
use devstack::postgres::{ClusterOptions, PostgresServer};
use devstack::roles::{ServiceLogin, url_as};
use devstack::services::{self, ServiceProcess};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use service_plumbing::shutdown::Shutdown;
use uuid::Uuid;

/// A daemon running in this process.
pub struct Daemon {
    pub base: String,
    running: Running,
}

impl Daemon {
    /// Waits until the daemon holds its slot (changes from now on reach it).
    pub async fn wait_streaming(&self) {
        services::wait_streaming(&self.base, services::STREAMING_TIMEOUT)
            .await
            .unwrap();
    }

    pub async fn stop(self) {
        self.running.stop().await.unwrap();
    }
}

/// A source database, a store database and a slot for one test: on the shared harness
/// servers, or on servers of the test's own that it may stop and restart.
pub struct Rig {
    pub ctx: TestContext,
    pub database_url: String,
    pub mongodb_uri: String,
    pub store: Database,
    pub slot: String,
    pub postgres: Option<PostgresServer>,
    pub ferretdb: Option<FerretDb>,
}

impl Rig {
    /// On the shared servers.
    pub async fn new() -> Rig {
        let ctx = TestContext::new().await.unwrap();
        Rig {
            database_url: ctx.database_url.clone(),
            mongodb_uri: ctx.mongodb_uri.clone(),
            store: ctx.store(),
            slot: ctx.unique_name("slot"),
            ctx,
            postgres: None,
            ferretdb: None,
        }
    }

    /// With a PostgreSQL cluster of its own (which the test may restart).
    pub async fn with_own_postgres() -> Rig {
        let mut rig = Rig::new().await;
        let cluster = PostgresServer::start(ClusterOptions::default())
            .await
            .unwrap();
        let admin = cluster.connect("postgres").await.unwrap();
        admin.batch_execute("CREATE DATABASE source").await.unwrap();
        let mut client = cluster.connect("source").await.unwrap();
        source_schema::migrate(&mut client).await.unwrap();
        devstack::roles::create_logins(&client).await.unwrap();
        rig.database_url = cluster.url_for("source");
        rig.postgres = Some(cluster);
        rig
    }

    /// With a FerretDB of its own (which the test may stop and restart).
    pub async fn with_own_store() -> Rig {
        let mut rig = Rig::new().await;
        let ferretdb = FerretDb::start_ferretdb(None).await.unwrap();
        rig.mongodb_uri = ferretdb.uri().to_string();
        rig.store = mongodb::Client::with_uri_str(ferretdb.uri())
            .await
            .unwrap()
            .database(&rig.ctx.database);
        rig.ferretdb = Some(ferretdb);
        rig
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        devstack::postgres::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// The daemon's settings (plus `extra`); it connects as the replication login.
    pub fn settings(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let daemon_url = url_as(&self.database_url, ServiceLogin::Replication).unwrap();
        let mut vars: HashMap<String, String> = [
            ("MYHEALTH_HTTP__LISTEN", "127.0.0.1:0"),
            ("MYHEALTH_DATABASE_URL", daemon_url.as_str()),
            ("MYHEALTH_MONGODB_URI", self.mongodb_uri.as_str()),
            ("MYHEALTH_MONGODB_DATABASE", self.ctx.database.as_str()),
            ("MYHEALTH_SLOT", self.slot.as_str()),
            ("MYHEALTH_BATCH_MAX_DELAY_MS", "20"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        for (key, value) in extra {
            vars.insert((*key).to_string(), (*value).to_string());
        }
        vars
    }

    /// A daemon in this process, once it streams.
    pub async fn start(&self) -> Daemon {
        self.start_with(&[]).await
    }

    pub async fn start_with(&self, extra: &[(&str, &str)]) -> Daemon {
        let daemon = self.launch(extra).await;
        daemon.wait_streaming().await;
        daemon
    }

    /// A daemon in this process, not waited for.
    pub async fn launch(&self, extra: &[(&str, &str)]) -> Daemon {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = service_plumbing::telemetry::init_tracing("cdc-daemon-test");
        }
        let settings = self.settings(extra);
        let pairs: Vec<(&str, &str)> = settings
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let running = in_process::daemon(&pairs).await.unwrap();
        Daemon {
            base: running.url.clone(),
            running,
        }
    }

    /// Waits until the daemon's checkpoint has reached the source's current WAL position.
    pub async fn caught_up(&self) {
        if let Err(stuck) = self.caught_up_within(Duration::from_secs(300)).await {
            panic!("{stuck}");
        }
    }

    /// [`Rig::caught_up`], or after `limit` what the checkpoint stayed behind.
    pub async fn caught_up_within(&self, limit: Duration) -> Result<(), String> {
        let client = self.client().await;
        let target: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let target = read_model::lsn::parse(&target).unwrap();
        let started = Instant::now();
        loop {
            let checkpoint = read_model::checkpoint::load(&self.store, &self.slot)
                .await
                .ok()
                .flatten();
            if checkpoint.is_some_and(|checkpoint| checkpoint.lsn >= target) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "the daemon did not catch up with {} (checkpoint {checkpoint:?})",
                    read_model::lsn::format(target)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stored(&self, collection: &str, id: impl ToString) -> Document {
        let id = id.to_string();
        self.store
            .collection::<Document>(collection)
            .find_one(doc! { "_id": &id })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {collection} document {id}"))
    }

    /// Every document of `collection`.
    pub async fn documents(&self, collection: &str) -> Vec<Document> {
        let mut cursor = self
            .store
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .unwrap();
        let mut documents = Vec::new();
        while cursor.advance().await.unwrap() {
            documents.push(cursor.deserialize_current().unwrap());
        }
        documents
    }

    /// How many documents `collection` holds.
    pub async fn count(&self, collection: &str) -> u64 {
        self.store
            .collection::<Document>(collection)
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    /// Sends `batch` to the store as the daemon's sink does while streaming.
    pub async fn flush(&self, mut batch: Batch) -> Result<Skipped, FlushError> {
        sink::flush(
            &self.store,
            &batch.take(),
            Mode::Update,
            Limits::FERRETDB,
            cdc_daemon::DEFAULT_WRITE_LANES,
            |_, _, _| {},
        )
        .await
    }

    /// Waits for the daemon, then checks that `cdc-daemon verify` finds no difference.
    pub async fn assert_verified(&self) {
        self.caught_up().await;
        self.assert_verified_by(&self.slot, Duration::from_secs(30))
            .await;
    }

    /// Checks that `cdc-daemon verify` finds no difference once the daemon of `slot` caught up
    /// (waiting at most `wait`).
    pub async fn assert_verified_by(&self, slot: &str, wait: Duration) {
        let client = self.client().await;
        let differences = cdc_daemon::verify::verify(&client, &self.store, slot, wait)
            .await
            .unwrap();
        let shown: Vec<String> = differences
            .iter()
            .take(10)
            .map(ToString::to_string)
            .collect();
        assert!(
            differences.is_empty(),
            "{} differences:\n{}",
            differences.len(),
            shown.join("\n")
        );
    }
}

/// An ingest API running in this process on the rig's source database.
pub struct Ingest {
    pub base: String,
    /// A device token of clinic `clinic`.
    pub token: String,
    /// Triggering it stops the ingest API.
    pub stop: Shutdown,
    _running: Running,
}

impl Rig {
    /// Starts an ingest API and registers the device `label` of `clinic` with it.
    pub async fn start_ingest(&self, clinic: &str, label: &str) -> Ingest {
        let running = in_process::ingest(&[
            ("MYHEALTH_DATABASE_URL", &self.database_url),
            ("MYHEALTH_SLOT", &self.slot),
        ])
        .await
        .unwrap();
        let mut client = self.client().await;
        let (_, token) = ingest_api::store::devices::add(&mut client, clinic, label)
            .await
            .unwrap();
        Ingest {
            base: running.url.clone(),
            token,
            stop: running.shutdown.clone(),
            _running: running,
        }
    }

    /// Runs `cdc-daemon <args>` with the rig's settings.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cdc-daemon"))
            .args(args)
            .envs(self.settings(&[]))
            .output()
            .await
            .unwrap()
    }
}

/// Source rows written with plain SQL, as any writer of the source database could.
pub struct Source {
    pub client: tokio_postgres::Client,
    pub clinic: Uuid,
    pub device: Uuid,
}

impl Source {
    pub async fn new(rig: &Rig) -> Source {
        Source::attach(rig.client().await).await.unwrap()
    }

    /// Uses `client`, with the clinic "North Clinic" and its device "tablet-1" (created once).
    pub async fn attach(client: tokio_postgres::Client) -> Option<Source> {
        client
            .batch_execute(
                "INSERT INTO clinics (name) VALUES ('North Clinic') ON CONFLICT (name) DO NOTHING; \
                 INSERT INTO devices (clinic_id, label, token_sha256) \
                 SELECT id, 'tablet-1', sha256(gen_random_uuid()::text::bytea) FROM clinics \
                 WHERE name = 'North Clinic' ON CONFLICT (clinic_id, label) DO NOTHING",
            )
            .await
            .ok()?;
        let row = client
            .query_one(
                "SELECT c.id, d.id FROM clinics c JOIN devices d ON d.clinic_id = c.id \
                 WHERE c.name = 'North Clinic' AND d.label = 'tablet-1'",
                &[],
            )
            .await
            .ok()?;
        Some(Source {
            clinic: row.get(0),
            device: row.get(1),
            client,
        })
    }

    pub async fn patient(&self, name: &str) -> Uuid {
        self.try_patient(name).await.unwrap()
    }

    pub async fn try_patient(&self, name: &str) -> Result<Uuid, tokio_postgres::Error> {
        let id = Uuid::new_v4();
        self.client
            .execute(
                "INSERT INTO patients (id, external_ref, full_name, birth_date, sex) \
                 VALUES ($1::uuid, 'MRN-' || left($1::uuid::text, 8), $2, '1985-12-10', 'female')",
                &[&id, &name],
            )
            .await?;
        Ok(id)
    }

    /// A checkup of `patient` with `reports` blood pressure reports, all in one transaction
    /// with the patient's link to the clinic (made on the first checkup there, as the ingest
    /// API does); returns the report ids.
    pub async fn checkup(&self, patient: Uuid, reports: usize) -> Vec<Uuid> {
        self.try_checkup(patient, reports).await.unwrap()
    }

    pub async fn try_checkup(
        &self,
        patient: Uuid,
        reports: usize,
    ) -> Result<Vec<Uuid>, tokio_postgres::Error> {
        let checkup = Uuid::new_v4();
        let ids: Vec<Uuid> = (0..reports).map(|_| Uuid::new_v4()).collect();
        let mut sql = format!(
            "BEGIN; INSERT INTO patient_clinics (patient_id, clinic_id, external_ref) \
             VALUES ('{patient}', '{clinic}', 'N-' || left('{patient}', 8)) \
             ON CONFLICT (patient_id, clinic_id) DO NOTHING; \
             INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at) \
             VALUES ('{checkup}', '{patient}', '{clinic}', '{device}', now());",
            clinic = self.clinic,
            device = self.device
        );
        for (index, id) in ids.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial, \
                                      taken_at, notes, raw) \
                 VALUES ('{id}', '{checkup}', '{patient}', 'blood_pressure', 'BP-1', \
                         now() - interval '{index} minutes', 'seated', '{{\"cuff\": \"M\"}}'); \
                 INSERT INTO measurements VALUES \
                   ('{id}', '8480-6', 'Systolic blood pressure', {}, 'mm[Hg]', 90, 120, 'N'), \
                   ('{id}', '8462-4', 'Diastolic blood pressure', 80.5, 'mm[Hg]', 60, 80, 'H');",
                110 + index
            ));
        }
        sql.push_str("COMMIT;");
        self.client.batch_execute(&sql).await?;
        Ok(ids)
    }
}

/// The daemon binary running as a child process under the harness's supervisor (so that it can
/// be killed with SIGKILL, its memory measured, and it never outlives the test process).
pub struct Process {
    process: ServiceProcess,
    pub base: String,
}

impl Rig {
    /// Starts `cdc-daemon` as a child process on a free port.
    pub async fn spawn_binary(&self) -> Process {
        let port = devstack::process::free_loopback_port().unwrap();
        let env: Vec<(String, String)> = self.settings(&[]).into_iter().collect();
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_cdc-daemon"));
        let process = ServiceProcess::spawn(binary, port, &env, None).unwrap();
        Process {
            base: process.url().to_string(),
            process,
        }
    }
}

impl Process {
    /// Waits until this process holds its slot.
    pub async fn wait_streaming(&self) {
        services::wait_streaming(&self.base, services::STREAMING_TIMEOUT)
            .await
            .unwrap();
    }

    /// Waits until this process has copied the source (an initial snapshot) and streams. The
    /// copy runs beside the other tests on two cores, the 50,000-report snapshot among them,
    /// so it is given minutes rather than the slot hand-over's [`services::STREAMING_TIMEOUT`].
    pub async fn wait_snapshotted(&self) {
        services::wait_streaming(&self.base, Duration::from_secs(300))
            .await
            .unwrap();
    }

    /// SIGSTOP: frozen mid-work, its connections open.
    pub fn freeze(&self) {
        self.process.freeze().unwrap();
    }

    /// SIGCONT after [`Process::freeze`].
    pub fn thaw(&self) {
        self.process.thaw().unwrap();
    }

    /// SIGKILL: no chance to flush or checkpoint.
    pub async fn kill9(&mut self) {
        self.process.kill().await.unwrap();
    }

    /// Peak resident memory so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        self.process.peak_rss_bytes().unwrap()
    }
}

/// A daemon metric's value (summed over its labels), 0 when absent.
pub async fn metric(base: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{base}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes `checkups` checkups of `reports` reports each over `patients` patients, reconnecting
/// and going on when PostgreSQL goes away (a checkup whose commit was lost is simply retried
/// with new ids: whatever PostgreSQL holds at the end is what verify compares).
pub async fn load(rig_url: String, checkups: usize, reports: usize) {
    let mut source: Option<Source> = None;
    let mut patients: Vec<Uuid> = Vec::new();
    let mut written = 0;
    while written < checkups {
        if source.is_none() {
            match devstack::postgres::connect(&rig_url).await {
                Ok(client) => source = Source::attach(client).await,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        }
        let Some(current) = source.as_ref() else {
            continue;
        };
        if patients.len() < 20 {
            match current.try_patient("Load Patient").await {
                Ok(id) => patients.push(id),
                Err(_) => source = None,
            }
            continue;
        }
        match current
            .try_checkup(patients[written % patients.len()], reports)
            .await
        {
            Ok(_) => written += 1,
            Err(_) => source = None,
        }
    }
}
