//! The reports API's queries: one round trip each, served by the indexes the daemon creates
//! (`patient_taken_at`, `patient_instrument_taken_at`), fetching only what the answer needs.
//! A trend is served by `patient_instrument_taken_at` too: the catalogue names the instruments
//! that may report a code, so the query asks for those instrument types and reads, in index
//! order, only reports that (nearly always) carry the code.
//! Every query is scoped to the caller's patient id; parameters arrive parsed into types, so no
//! client text ever becomes part of a filter as an operator.
//!
//! Every read, the daemon's checkpoint behind `X-Data-LSN` included, is made through
//! [`majority_reads`]: with read concern `majority` (see the function for why).

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{DatabaseOptions, ReadConcern};
use read_model::{PATIENTS, REPORTS};
use uuid::Uuid;

use crate::params::{Cursor, ListQuery, TrendQuery};

/// `database` reading with read concern `majority`: an answer holds only writes a majority of
/// the replica set has, which no failover rolls back. `local` (the server's usual default) can
/// show a batch, or a checkpoint, that a failover then erases; `linearizable` would add a
/// round trip to a majority per read and serves single-document reads only. Majority reads
/// cost no round trip: the primary answers from its majority-committed snapshot, at most the
/// replication lag behind its newest writes.
///
/// It keeps `X-Data-LSN` truthful: the daemon writes a batch's documents with write concern
/// `majority` before the checkpoint that covers them, so a checkpoint read from the majority
/// snapshot only names documents already in it, and the documents a request reads afterwards
/// come from that snapshot or a newer one. One gap remains: right after a failover the new
/// primary may, for a moment, answer from a majority snapshot older than the one the old
/// primary last answered from, so documents can briefly be behind the header (the highest
/// checkpoint seen, which never moves back); they never hold a write that is later rolled back.
/// Causally consistent sessions would close that gap; they are not used.
pub fn majority_reads(database: &Database) -> Database {
    let options = DatabaseOptions::builder()
        .read_concern(ReadConcern::majority())
        .build();
    database
        .client()
        .database_with_options(database.name(), options)
}

/// The status of a report withdrawn at the clinic; its values are no one's trend.
const ENTERED_IN_ERROR: &str = "entered-in-error";

/// Fields a list item does not need.
const LIST_PROJECTION: &[&str] = &["raw", "_cdc", "patient", "patient_id", "checkup_id"];

/// One page of a patient's reports, newest first, and whether more follow.
pub async fn list(
    database: &Database,
    patient: Uuid,
    query: &ListQuery,
) -> Result<(Vec<Document>, bool), mongodb::error::Error> {
    let mut filter = doc! { "patient_id": patient.to_string() };
    if let Some(instrument) = query.instrument {
        filter.insert("instrument.type", instrument.as_str());
    }
    let mut taken_at = Document::new();
    if let Some(from) = query.from {
        taken_at.insert("$gte", millis(from));
    }
    if let Some(to) = query.to {
        taken_at.insert("$lte", millis(to));
    }
    if !taken_at.is_empty() {
        filter.insert("taken_at", taken_at);
    }
    if let Some(cursor) = &query.cursor {
        filter.insert("$or", after(cursor));
    }
    let projection: Document = LIST_PROJECTION
        .iter()
        .map(|field| (field.to_string(), 0.into()))
        .collect();
    newest_first(database, filter, projection, query.limit).await
}

/// The patient's reports carrying `query.code` (entered-in-error ones excluded), newest first,
/// at most `query.limit`, with the report id, time and that one measurement; and whether older
/// ones follow.
pub async fn trend(
    database: &Database,
    patient: Uuid,
    query: &TrendQuery,
) -> Result<(Vec<Document>, bool), mongodb::error::Error> {
    let measurement = format!("measurements.{}", query.code.code);
    let projection = doc! { "taken_at": 1, &measurement: 1 };
    newest_first(
        database,
        trend_filter(patient, query),
        projection,
        query.limit,
    )
    .await
}

/// The filter of [`trend`]: the patient and the instrument types that may report the code
/// lead, as in `patient_instrument_taken_at`. Public so that a test can ask the store to
/// explain the query as sent.
pub fn trend_filter(patient: Uuid, query: &TrendQuery) -> Document {
    let instruments: Vec<&str> = query
        .code
        .instruments
        .iter()
        .map(|instrument| instrument.as_str())
        .collect();
    let measurement = format!("measurements.{}", query.code.code);
    let mut filter = doc! {
        "patient_id": patient.to_string(),
        "instrument.type": { "$in": instruments },
        &measurement: { "$exists": true },
        "status": { "$ne": ENTERED_IN_ERROR },
    };
    let mut taken_at = Document::new();
    if let Some(since) = query.since {
        taken_at.insert("$gte", millis(since));
    }
    if let Some(until) = query.until {
        taken_at.insert("$lte", millis(until));
    }
    if !taken_at.is_empty() {
        filter.insert("taken_at", taken_at);
    }
    if let Some(cursor) = &query.cursor {
        filter.insert("$or", after(cursor));
    }
    filter
}

/// The order of every list and trend: newest first, the id breaking ties (the order of the
/// `*_taken_at` indexes and of the keyset cursor).
pub fn newest_first_sort() -> Document {
    doc! { "taken_at": -1, "_id": -1 }
}

/// Keyset pagination: strictly after `cursor` in (taken_at desc, _id desc) order, so new
/// reports never shift a walk in progress.
fn after(cursor: &Cursor) -> Vec<Document> {
    let at = DateTime::from_millis(cursor.taken_at_millis);
    vec![
        doc! { "taken_at": { "$lt": at } },
        doc! { "taken_at": at, "_id": { "$lt": &cursor.report_id } },
    ]
}

/// Up to `limit` reports matching `filter`, newest first, and whether more follow.
async fn newest_first(
    database: &Database,
    filter: Document,
    projection: Document,
    limit: u32,
) -> Result<(Vec<Document>, bool), mongodb::error::Error> {
    let wanted = limit as usize;
    let limit = i64::from(limit) + 1;
    let mut cursor = database
        .collection::<Document>(REPORTS)
        .find(filter)
        .sort(newest_first_sort())
        .projection(projection)
        .limit(limit)
        .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
        .await?;
    let mut page = Vec::new();
    while cursor.advance().await? {
        page.push(cursor.deserialize_current()?);
    }
    let more = page.len() > wanted;
    page.truncate(wanted);
    Ok((page, more))
}

/// One report of the patient, everything included; `None` if there is none with that id for
/// this patient (whoever else's it may be).
pub async fn get(
    database: &Database,
    patient: Uuid,
    report: Uuid,
) -> Result<Option<Document>, mongodb::error::Error> {
    database
        .collection::<Document>(REPORTS)
        .find_one(doc! { "_id": report.to_string(), "patient_id": patient.to_string() })
        .projection(doc! { "_cdc": 0 })
        .await
}

/// The patient's own document (demographics and newest values).
pub async fn summary(
    database: &Database,
    patient: Uuid,
) -> Result<Option<Document>, mongodb::error::Error> {
    database
        .collection::<Document>(PATIENTS)
        .find_one(doc! { "_id": patient.to_string() })
        .projection(doc! { "_cdc": 0 })
        .await
}

fn millis(instant: time::OffsetDateTime) -> DateTime {
    let millis = instant.unix_timestamp_nanos() / 1_000_000;
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}
