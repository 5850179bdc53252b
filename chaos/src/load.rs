//! The load generator: tablets posting uploads, amendments (`PATCH`), deletes (`DELETE`) and
//! patient renames (a new upload whose patient has another name) through the ingest API, at a
//! steady rate, while faults happen.
//!
//! Every request is retried on `503` and on transport errors (the API or PostgreSQL is down)
//! until it gets a definite answer; retrying is safe because uploads are idempotent by upload
//! id, amendments set values, and a `404` to a repeated delete means the first one committed. The
//! ledger records what the API acknowledged, which is what the end checks hold the source to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use devstack::tablet::{Patient, Tablet};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rng::Rng;

/// How long one request is retried before the run counts it as failed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// What the API acknowledged, and what went wrong.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Upload id → its report ids, for every upload answered 201 or 200.
    pub uploads: HashMap<Uuid, Vec<Uuid>>,
    /// Reports deleted (answered 200, or 404 after an attempt whose answer was lost).
    pub deleted: HashSet<Uuid>,
    /// Report → the notes of its last acknowledged amendment.
    pub amended: HashMap<Uuid, String>,
    /// Uploads answered 200: replays of an upload whose first answer was lost.
    pub replays: usize,
    /// Uploads that renamed their patient.
    pub renames: usize,
    /// Requests sent again after a 503 or a transport error.
    pub retries: usize,
    /// Answers no correct system gives (a 4xx to a valid request, a 500, giving up).
    pub unexpected: Vec<String>,
}

impl Ledger {
    fn merge(&mut self, other: Ledger) {
        self.uploads.extend(other.uploads);
        self.deleted.extend(other.deleted);
        self.amended.extend(other.amended);
        self.replays += other.replays;
        self.renames += other.renames;
        self.retries += other.retries;
        self.unexpected.extend(other.unexpected);
    }

    /// Amendments acknowledged.
    pub fn amendments(&self) -> usize {
        self.amended.len()
    }
}

/// How a request ended.
enum Answer {
    /// A status other than 503, with the body.
    Status(u16, Value),
    /// Still 503 or unreachable after [`GIVE_UP_AFTER`].
    GaveUp(String),
}

/// One tablet's loop.
struct Worker {
    http: reqwest::Client,
    base: String,
    token: String,
    tablet: Tablet,
    rng: Rng,
    patients: Vec<Patient>,
    /// This worker's reports that are not deleted (only the worker that uploaded a report
    /// amends or deletes it, so that the ledger has one writer per report).
    live: Vec<Uuid>,
    ledger: Ledger,
}

/// Runs `workers` tablets, together about `rate` operations a second, until `stop` is set; then
/// returns the merged ledger once every request in flight has a definite answer.
pub async fn run(
    base: String,
    token: String,
    seed: u64,
    workers: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Ledger {
    let pause = Duration::from_secs_f64(workers as f64 / rate.max(0.1));
    let mut handles = Vec::new();
    for index in 0..workers {
        let mut worker = Worker {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base: base.clone(),
            token: token.clone(),
            tablet: Tablet::new(&base, &token, seed.wrapping_add(index as u64)),
            rng: Rng::new(seed ^ (0x9e37_79b9 * (index as u64 + 1))),
            patients: Vec::new(),
            live: Vec::new(),
            ledger: Ledger::default(),
        };
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                worker.step().await;
                tokio::time::sleep(pause).await;
            }
            worker.ledger
        }));
    }
    let mut ledger = Ledger::default();
    for handle in handles {
        match handle.await {
            Ok(part) => ledger.merge(part),
            Err(error) => ledger
                .unexpected
                .push(format!("a load worker failed: {error}")),
        }
    }
    ledger
}

impl Worker {
    /// One operation: mostly uploads; amendments, deletes and renames of earlier ones.
    async fn step(&mut self) {
        let roll = self.rng.below(100);
        if self.patients.len() < 3 || roll < 10 {
            let patient = self.tablet.patient();
            self.patients.push(patient);
        }
        match roll {
            _ if self.live.is_empty() => self.upload(false).await,
            0..55 => self.upload(false).await,
            55..70 => self.upload(true).await,
            70..88 => self.amend().await,
            _ => self.delete().await,
        }
    }

    async fn upload(&mut self, rename: bool) {
        let index = self.rng.below(self.patients.len() as u64) as usize;
        if rename {
            let new_name = self.tablet.patient().full_name;
            self.patients[index].full_name = new_name;
        }
        let at = OffsetDateTime::now_utc() - time::Duration::minutes(self.rng.below(600) as i64);
        let body = self.tablet.upload(&self.patients[index], at);
        let url = format!("{}/v1/uploads", self.base);
        match self
            .send(|http, token| http.post(&url).bearer_auth(token).json(&body))
            .await
        {
            Answer::Status(status @ (200 | 201), _) => {
                let upload_id = body["upload_id"].as_str().and_then(|id| id.parse().ok());
                let reports: Vec<Uuid> = body["checkups"][0]["reports"]
                    .as_array()
                    .map(|reports| {
                        reports
                            .iter()
                            .filter_map(|report| report["id"].as_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(upload_id) = upload_id {
                    self.live.extend(&reports);
                    self.ledger.uploads.insert(upload_id, reports);
                }
                self.ledger.replays += usize::from(status == 200);
                self.ledger.renames += usize::from(rename);
            }
            Answer::Status(status, problem) => self
                .ledger
                .unexpected
                .push(format!("upload answered {status}: {problem}")),
            Answer::GaveUp(last) => self.ledger.unexpected.push(format!("upload: {last}")),
        }
    }

    async fn amend(&mut self) {
        let report = self.live[self.rng.below(self.live.len() as u64) as usize];
        let notes = format!("chaos amendment {}", Uuid::new_v4().simple());
        let url = format!("{}/v1/reports/{report}", self.base);
        let body = json!({ "status": "amended", "notes": notes });
        match self
            .send(|http, token| http.patch(&url).bearer_auth(token).json(&body))
            .await
        {
            Answer::Status(200, _) => {
                self.ledger.amended.insert(report, notes);
            }
            Answer::Status(status, problem) => self.ledger.unexpected.push(format!(
                "amendment of {report} answered {status}: {problem}"
            )),
            Answer::GaveUp(last) => self.ledger.unexpected.push(format!("amendment: {last}")),
        }
    }

    async fn delete(&mut self) {
        let index = self.rng.below(self.live.len() as u64) as usize;
        let report = self.live.swap_remove(index);
        let url = format!("{}/v1/reports/{report}", self.base);
        let retries_before = self.ledger.retries;
        match self
            .send(|http, token| http.delete(&url).bearer_auth(token))
            .await
        {
            Answer::Status(200 | 204, _) => {
                self.ledger.deleted.insert(report);
            }
            // The first attempt committed but its answer was lost.
            Answer::Status(404, _) if self.ledger.retries > retries_before => {
                self.ledger.deleted.insert(report);
            }
            Answer::Status(status, problem) => self
                .ledger
                .unexpected
                .push(format!("delete of {report} answered {status}: {problem}")),
            Answer::GaveUp(last) => self.ledger.unexpected.push(format!("delete: {last}")),
        }
    }

    /// Sends the request `build` makes until it is answered with something other than 503.
    async fn send(
        &mut self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Answer {
        let started = Instant::now();
        loop {
            let last = match build(&self.http, &self.token).send().await {
                Ok(response) if response.status() != 503 => {
                    let status = response.status().as_u16();
                    let body = response.json().await.unwrap_or(Value::Null);
                    return Answer::Status(status, body);
                }
                Ok(_) => "503".to_string(),
                Err(error) => error.to_string(),
            };
            if started.elapsed() > GIVE_UP_AFTER {
                return Answer::GaveUp(format!(
                    "no answer after {} s: {last}",
                    GIVE_UP_AFTER.as_secs()
                ));
            }
            self.ledger.retries += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
