//! The workload: clinic tablets posting uploads through the real ingest API (one checkup of five
//! reports with twelve measurements each, from `devstack::tablet`), several tablets at once.
//! Each tablet serves a pool of patients who come back for new checkups; now and then a
//! patient's name changes (a rename fans out to their reports), a report is amended (new status,
//! notes and value) or deleted.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use devstack::tablet::{Patient, Tablet};
use serde::Serialize;
use serde_json::{Value, json};

/// Every how many uploads of a tablet its patient arrives with a new name.
const RENAME_EVERY: usize = 20;
/// Every how many uploads a report of the upload is amended.
const AMEND_EVERY: usize = 10;
/// Every how many uploads a report of the upload is deleted.
const DELETE_EVERY: usize = 25;
/// Uploads per patient, on average.
const UPLOADS_PER_PATIENT: usize = 4;

/// What a workload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    /// Uploads posted.
    pub uploads: usize,
    /// Uploads whose patient had a new name.
    pub renames: usize,
    /// Reports amended.
    pub amendments: usize,
    /// Reports deleted.
    pub deletes: usize,
    /// How long posting took, in seconds.
    pub seconds: f64,
    /// The patient with the most uploads (tablet 0's first).
    #[serde(skip)]
    pub busiest_patient: Option<uuid::Uuid>,
}

/// Posts `uploads` uploads (with renames, amendments and deletes) to `ingest_url` from
/// `tablets` concurrent tablets sharing the device `token`.
pub async fn generate(
    ingest_url: &str,
    token: &str,
    uploads: usize,
    tablets: usize,
    seed: u64,
) -> Result<Workload> {
    let started = Instant::now();
    let tablets = tablets.clamp(1, uploads.max(1));
    let mut tasks = Vec::new();
    for index in 0..tablets {
        let share = uploads / tablets + usize::from(index < uploads % tablets);
        let tablet = Tablet::new(ingest_url, token, seed + index as u64);
        let (url, token) = (ingest_url.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            run_tablet(tablet, &url, &token, share).await
        }));
    }
    let mut total = Workload::default();
    for (index, task) in tasks.into_iter().enumerate() {
        let (done, busiest) = task.await.context("a tablet task panicked")??;
        total.uploads += done.uploads;
        total.renames += done.renames;
        total.amendments += done.amendments;
        total.deletes += done.deletes;
        if index == 0 {
            total.busiest_patient = busiest;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

async fn run_tablet(
    mut tablet: Tablet,
    ingest_url: &str,
    token: &str,
    uploads: usize,
) -> Result<(Workload, Option<uuid::Uuid>)> {
    let http = reqwest::Client::new();
    let mut patients: Vec<Patient> = (0..uploads.div_ceil(UPLOADS_PER_PATIENT).max(1))
        .map(|_| tablet.patient())
        .collect();
    let mut done = Workload::default();
    let mut at = time::OffsetDateTime::now_utc() - time::Duration::days(365);
    for number in 1..=uploads {
        let slot = (number - 1) % patients.len();
        if number % RENAME_EVERY == 0 {
            let first = patients[slot].full_name.split(' ').next().unwrap_or("Pat");
            patients[slot].full_name = format!("{first} Renamed-{number}");
            done.renames += 1;
        }
        at += time::Duration::minutes(17);
        let upload = tablet.upload(&patients[slot], at);
        tablet
            .post(&upload)
            .await
            .context("a workload upload failed")?;
        done.uploads += 1;
        let report = |index: usize| {
            upload["checkups"][0]["reports"][index]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if number % AMEND_EVERY == 0 {
            // The glucometer reading (the fifth report), corrected after a calibration.
            let body = json!({
                "status": "amended",
                "notes": "corrected after calibration",
                "measurements": [{ "code": "2339-0", "value": 90 + number % 40, "unit": "mg/dL" }],
            });
            let url = format!("{ingest_url}/v1/reports/{}", report(4));
            send(http.patch(url).bearer_auth(token).json(&body)).await?;
            done.amendments += 1;
        }
        if number % DELETE_EVERY == 0 {
            let url = format!("{ingest_url}/v1/reports/{}", report(1));
            send(http.delete(url).bearer_auth(token)).await?;
            done.deletes += 1;
        }
    }
    Ok((done, patients.first().map(|patient| patient.id)))
}

async fn send(request: reqwest::RequestBuilder) -> Result<Value> {
    let response = request
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .context("a workload request failed")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "the ingest API answered {status}: {body}"
    );
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}
