//! The indexes the read model needs, created by the daemon at start. Every reports API query is
//! served by one of them on MongoDB. FerretDB 1.24 creates them as PostgreSQL indexes on each
//! key's expression; on its PostgreSQL backend the patient condition it pushes down is served by
//! one (a bitmap index scan), and the rest of the filter, the sort and the limit are applied in
//! its own process (`reports-api/tests/trend_index.rs` asks both stores to explain the trend).

use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::REPORTS;

/// A patient's reports, newest first: `GET /v1/me/reports` and the daemon's fan-outs by patient.
pub const REPORTS_BY_PATIENT: &str = "patient_taken_at";
/// A patient's reports of one instrument type, newest first; also a patient's trend of one
/// code (`GET /v1/me/trends`), asked for as the instrument types the catalogue says may report
/// it, whose index ranges MongoDB merges in `taken_at` order.
pub const REPORTS_BY_PATIENT_INSTRUMENT: &str = "patient_instrument_taken_at";

fn index(name: &str, keys: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_string()).build())
        .build()
}

/// Creates the read model's indexes that do not exist yet. Existing ones are left alone rather
/// than created again: FerretDB 1.24 drops the connection when asked to create a compound index
/// that already exists.
pub async fn create(database: &Database) -> Result<(), mongodb::error::Error> {
    let reports = database.collection::<Document>(REPORTS);
    let existing = reports.list_index_names().await.unwrap_or_default();
    let missing: Vec<IndexModel> = [
        index(
            REPORTS_BY_PATIENT,
            doc! { "patient_id": 1, "taken_at": -1, "_id": -1 },
        ),
        index(
            REPORTS_BY_PATIENT_INSTRUMENT,
            doc! { "patient_id": 1, "instrument.type": 1, "taken_at": -1, "_id": -1 },
        ),
        index("checkup", doc! { "checkup_id": 1 }),
        index("clinic", doc! { "checkup.clinic_id": 1 }),
        index("device", doc! { "checkup.device_id": 1 }),
    ]
    .into_iter()
    .filter(|model| {
        let name = model
            .options
            .as_ref()
            .and_then(|options| options.name.as_ref());
        !name.is_some_and(|name| existing.contains(name))
    })
    .collect();
    if !missing.is_empty() {
        reports.create_indexes(missing).await?;
    }
    Ok(())
}
