//! Starting the service in-process against a test database, tablets, and example uploads.

use std::io::Write;

use devstack::TestContext;
use devstack::in_process::{self, Running};
use devstack::roles::ServiceLogin;
use flate2::Compression;
use flate2::write::GzEncoder;
use ingest_api::store::devices;
use serde_json::{Value, json};
use uuid::Uuid;

/// A running ingest API on its own test database.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// Dropped before the databases: the service is told to stop first.
    _running: Running,
    pub ctx: TestContext,
}

impl Api {
    pub async fn start() -> Api {
        let ctx = TestContext::new()
            .await
            .expect("the test stack should start");
        Api::start_on(ctx, &[]).await
    }

    /// Starts the service on `ctx`'s database with extra `MYHEALTH_*` settings.
    pub async fn start_on(ctx: TestContext, settings: &[(&str, &str)]) -> Api {
        let database_url = ctx.url_as(ServiceLogin::Ingest);
        let mut all = vec![("MYHEALTH_DATABASE_URL", database_url.as_str())];
        all.extend_from_slice(settings);
        let running = in_process::ingest(&all).await.unwrap();
        Api {
            base: running.url.clone(),
            http: reqwest::Client::new(),
            _running: running,
            ctx,
        }
    }

    /// A new tablet of `clinic`; returns its token.
    pub async fn device(&self, clinic: &str) -> String {
        let mut client = self.ctx.postgres().await.unwrap();
        let label = format!("tablet-{}", Uuid::new_v4().simple());
        devices::add(&mut client, clinic, &label).await.unwrap().1
    }

    pub async fn post(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/uploads", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_gzip(&self, token: &str, body: &[u8]) -> reqwest::Response {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(body).unwrap();
        self.http
            .post(format!("{}/v1/uploads", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(encoder.finish().unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Counts rows of `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let client = self.ctx.postgres().await.unwrap();
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// An upload of one checkup with a blood pressure and a pulse oximeter report, new ids.
pub fn upload() -> Value {
    json!({
        "upload_id": Uuid::new_v4(),
        "checkups": [{
            "id": Uuid::new_v4(),
            "patient": {
                "id": Uuid::new_v4(), "external_ref": "MRN-001", "full_name": "Ada Lovelace",
                "birth_date": "1985-12-10", "sex": "female"
            },
            "started_at": "2026-11-27T09:00:00Z",
            "completed_at": "2026-11-27T09:20:00Z",
            "reports": [
                {
                    "id": Uuid::new_v4(),
                    "instrument": { "type": "blood_pressure", "serial": "BP-123" },
                    "taken_at": "2026-11-27T09:05:00Z",
                    "notes": "left arm, seated",
                    "raw": { "cuff": "M", "readings": [120, 80] },
                    "measurements": [
                        { "code": "8480-6", "value": 135, "unit": "mm[Hg]" },
                        { "code": "8462-4", "value": 80, "unit": "mm[Hg]" }
                    ]
                },
                {
                    "id": Uuid::new_v4(),
                    "instrument": { "type": "pulse_oximeter", "serial": "OX-9" },
                    "taken_at": "2026-11-27T09:10:00Z",
                    "measurements": [
                        { "code": "2708-6", "value": 97, "unit": "%" },
                        { "code": "8867-4", "value": 72, "unit": "/min" }
                    ]
                }
            ]
        }]
    })
}

/// The id of report `index` of the first checkup of `upload`.
pub fn report_id(upload: &Value, index: usize) -> String {
    upload["checkups"][0]["reports"][index]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A problem response's `errors[].pointer` values.
pub fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap().to_string())
        .collect()
}

/// The JSON body of `response`, after checking its status (the body is shown if it differs).
pub async fn expect_status(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}
