//! A clinic tablet simulator: realistic uploads posted to the real ingest API. `make run` seeds
//! demo data with it; tests and benchmarks use it to produce documents through the whole path.
//!
//! An upload is one checkup of five instrument readings (blood pressure, pulse oximeter, scale,
//! ECG, glucometer: twelve measurements, every code the catalogue lets those instruments report),
//! with values drawn from a seeded generator so runs are repeatable.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// A patient as the tablet knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    /// The patient id (also the `sub` of the patient's tokens).
    pub id: Uuid,
    /// Medical record number.
    pub external_ref: String,
    /// Full name.
    pub full_name: String,
}

/// Posting an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum TabletError {
    /// The request did not complete.
    #[error("upload request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The API refused the upload.
    #[error("the ingest API answered {status}: {body}")]
    Refused {
        /// The status.
        status: u16,
        /// The problem document.
        body: String,
    },
}

/// A tablet with its device token, posting to one ingest API.
#[derive(Debug, Clone)]
pub struct Tablet {
    http: reqwest::Client,
    base_url: String,
    token: String,
    seed: u64,
}

impl Tablet {
    /// A tablet posting to `base_url` (e.g. `http://127.0.0.1:8080`) with `token`; `seed` makes
    /// the generated values repeatable.
    pub fn new(base_url: &str, token: &str, seed: u64) -> Tablet {
        Tablet {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            seed: seed | 1,
        }
    }

    /// A new patient with a generated name.
    pub fn patient(&mut self) -> Patient {
        const FIRST: [&str; 8] = [
            "Ada", "Grace", "Mary", "Emmy", "Sofia", "Hedy", "Rosalind", "Lise",
        ];
        const LAST: [&str; 8] = [
            "Lovelace",
            "Hopper",
            "Somerville",
            "Noether",
            "Kovalevskaya",
            "Lamarr",
            "Franklin",
            "Meitner",
        ];
        let first = FIRST[self.next(8) as usize];
        let last = LAST[self.next(8) as usize];
        Patient {
            id: Uuid::new_v4(),
            external_ref: format!("MRN-{:06}", self.next(1_000_000)),
            full_name: format!("{first} {last}"),
        }
    }

    /// An upload of one checkup of `patient` that ended at `at` (it began 15 minutes before).
    pub fn upload(&mut self, patient: &Patient, at: OffsetDateTime) -> Value {
        let minute = |offset: i64| {
            (at + time::Duration::minutes(offset))
                .format(&Rfc3339)
                .unwrap_or_default()
        };
        let systolic = 100 + self.next(60);
        let heart_rate = 55 + self.next(50);
        let weight = 50.0 + self.next(600) as f64 / 10.0;
        let height = 150 + self.next(45);
        let bmi = (weight / ((height as f64 / 100.0).powi(2)) * 10.0).round() / 10.0;
        let (diastolic, saturation) = (60 + self.next(35), 92 + self.next(9));
        let (qrs, qt, glucose) = (80 + self.next(40), 360 + self.next(80), 70 + self.next(80));
        let reports = json!([
            self.report(
                "blood_pressure",
                "BP-100",
                minute(-14),
                json!([
                    { "code": "8480-6", "value": systolic, "unit": "mm[Hg]" },
                    { "code": "8462-4", "value": diastolic, "unit": "mm[Hg]" },
                    { "code": "8867-4", "value": heart_rate, "unit": "/min" },
                ])
            ),
            self.report(
                "pulse_oximeter",
                "OX-200",
                minute(-12),
                json!([
                    { "code": "2708-6", "value": saturation, "unit": "%" },
                    { "code": "8867-4", "value": heart_rate + 2, "unit": "/min" },
                ])
            ),
            self.report(
                "scale",
                "SC-300",
                minute(-10),
                json!([
                    { "code": "29463-7", "value": weight, "unit": "kg" },
                    { "code": "8302-2", "value": height, "unit": "cm" },
                    { "code": "39156-5", "value": bmi, "unit": "kg/m2" },
                ])
            ),
            self.report(
                "ecg",
                "ECG-400",
                minute(-7),
                json!([
                    { "code": "8867-4", "value": heart_rate, "unit": "/min" },
                    { "code": "8633-0", "value": qrs, "unit": "ms" },
                    { "code": "8634-8", "value": qt, "unit": "ms" },
                ])
            ),
            self.report(
                "glucometer",
                "GL-500",
                minute(-3),
                json!([
                    { "code": "2339-0", "value": glucose, "unit": "mg/dL" },
                ])
            ),
        ]);
        json!({
            "upload_id": Uuid::new_v4(),
            "checkups": [{
                "id": Uuid::new_v4(),
                "patient": {
                    "id": patient.id,
                    "external_ref": patient.external_ref,
                    "full_name": patient.full_name,
                    "birth_date": "1980-05-17",
                    "sex": "female",
                },
                "started_at": minute(-15),
                "completed_at": minute(0),
                "reports": reports,
            }]
        })
    }

    /// Posts `upload`; returns the ingest API's result (`commit_lsn` among others).
    pub async fn post(&self, upload: &Value) -> Result<Value, TabletError> {
        let response = self
            .http
            .post(format!("{}/v1/uploads", self.base_url))
            .bearer_auth(&self.token)
            .json(upload)
            .send()
            .await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.text().await.unwrap_or_default();
            return Err(TabletError::Refused { status, body });
        }
        Ok(response.json().await?)
    }

    fn report(&mut self, kind: &str, serial: &str, taken_at: String, measurements: Value) -> Value {
        json!({
            "id": Uuid::new_v4(),
            "instrument": { "type": kind, "serial": serial },
            "taken_at": taken_at,
            "notes": if self.next(4) == 0 { Value::String("repeated after rest".into()) } else { Value::Null },
            "raw": { "firmware": "2.4.1", "battery": self.next(100) },
            "measurements": measurements,
        })
    }

    /// A number below `bound` from a xorshift generator.
    fn next(&mut self, bound: u64) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % bound.max(1)
    }
}
