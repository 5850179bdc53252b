//! Starting the daemon on a test database, writing source rows, waiting and verifying.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use devstack::TestContext;
use service_plumbing::shutdown::Shutdown;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A daemon running in this process.
pub struct Daemon {
    pub shutdown: Shutdown,
    pub base: String,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    /// Waits until the daemon holds its slot (changes from now on reach it).
    pub async fn wait_streaming(&self) {
        let started = Instant::now();
        loop {
            let metrics = reqwest::get(format!("{}/metrics", self.base)).await;
            if let Ok(response) = metrics {
                let text = response.text().await.unwrap_or_default();
                if text.lines().any(|line| line == "cdc_connected 1") {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon did not start streaming"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the daemon stops within its deadline")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The settings of a daemon for `ctx` on `slot` (plus `extra`).
pub fn settings(ctx: &TestContext, slot: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("MYHEALTH_HTTP__LISTEN", "127.0.0.1:0"),
        ("MYHEALTH_DATABASE_URL", ctx.database_url.as_str()),
        ("MYHEALTH_MONGODB_URI", ctx.mongodb_uri.as_str()),
        ("MYHEALTH_MONGODB_DATABASE", ctx.database.as_str()),
        ("MYHEALTH_SLOT", slot),
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

pub async fn start(ctx: &TestContext, slot: &str) -> Daemon {
    start_with(ctx, slot, &[]).await
}

pub async fn start_with(ctx: &TestContext, slot: &str, extra: &[(&str, &str)]) -> Daemon {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = service_plumbing::telemetry::init_tracing("cdc-daemon-test");
    }
    let config: cdc_daemon::Config =
        service_plumbing::config::load_from_vars(None, settings(ctx, slot, extra)).unwrap();
    let shutdown = Shutdown::new();
    let app = cdc_daemon::build(config, shutdown.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let handle = tokio::spawn(app.run_until_stopped());
    let daemon = Daemon {
        shutdown,
        base,
        handle: Some(handle),
    };
    daemon.wait_streaming().await;
    daemon
}

/// Waits until the daemon's checkpoint has reached the source's current WAL position.
pub async fn caught_up(ctx: &TestContext, slot: &str) {
    let client = ctx.postgres().await.unwrap();
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let target = read_model::lsn::parse(&target).unwrap();
    let started = Instant::now();
    loop {
        let checkpoint = read_model::checkpoint::load(&ctx.store(), slot)
            .await
            .unwrap();
        if checkpoint.is_some_and(|checkpoint| checkpoint.lsn >= target) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon did not catch up with {} (checkpoint {checkpoint:?})",
            read_model::lsn::format(target)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the daemon, then checks that `cdc-daemon verify` finds no difference.
pub async fn assert_verified(ctx: &TestContext, slot: &str) {
    caught_up(ctx, slot).await;
    let client = ctx.postgres().await.unwrap();
    let differences =
        cdc_daemon::verify::verify(&client, &ctx.store(), slot, Duration::from_secs(30))
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

/// Source rows written with plain SQL, as any writer of the source database could.
pub struct Source {
    pub client: tokio_postgres::Client,
    pub clinic: Uuid,
    pub device: Uuid,
}

impl Source {
    pub async fn new(ctx: &TestContext) -> Source {
        let client = ctx.postgres().await.unwrap();
        let clinic: Uuid = client
            .query_one(
                "INSERT INTO clinics (name) VALUES ('North Clinic') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let device: Uuid = client
            .query_one(
                "INSERT INTO devices (clinic_id, label, token_sha256) \
                 VALUES ($1, 'tablet-1', sha256(gen_random_uuid()::text::bytea)) RETURNING id",
                &[&clinic],
            )
            .await
            .unwrap()
            .get(0);
        Source {
            client,
            clinic,
            device,
        }
    }

    pub async fn patient(&self, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        self.client
            .execute(
                "INSERT INTO patients (id, external_ref, full_name, birth_date, sex) \
                 VALUES ($1::uuid, 'MRN-' || left($1::uuid::text, 8), $2, '1985-12-10', 'female')",
                &[&id, &name],
            )
            .await
            .unwrap();
        id
    }

    /// A checkup of `patient` with `reports` blood pressure reports, all in one transaction;
    /// returns the report ids.
    pub async fn checkup(&self, patient: Uuid, reports: usize) -> Vec<Uuid> {
        let checkup = Uuid::new_v4();
        let ids: Vec<Uuid> = (0..reports).map(|_| Uuid::new_v4()).collect();
        let mut sql = format!(
            "BEGIN; INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at) \
             VALUES ('{checkup}', '{patient}', '{}', '{}', now());",
            self.clinic, self.device
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
        self.client.batch_execute(&sql).await.unwrap();
        ids
    }
}
