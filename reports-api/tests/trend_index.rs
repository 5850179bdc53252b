//! Which plan the store picks for the trend query, asked with `explain` for the filter and
//! order the API sends: on MongoDB an index scan of `patient_instrument_taken_at` (the promise
//! of `reports-api/src/store.rs`); on FerretDB 1.24, whose answer is PostgreSQL's own plan, what
//! `read-model/src/indexes.rs` says of it: an index serves the patient, FerretDB sorts. The
//! store is told apart by `buildInfo`, as the daemon does.

#![allow(clippy::unwrap_used, missing_docs)]

use devstack::ferretdb::Store;
use mongodb::Client;
use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::indexes::REPORTS_BY_PATIENT_INSTRUMENT;
use reports_api::params::parse_trend_query;
use reports_api::store;
use uuid::Uuid;

/// Patients, and checkups per patient, each with one report per instrument type below: one
/// patient's reports are a small part of the collection, as in production.
const PATIENTS: usize = 20;
const CHECKUPS: i64 = 30;
const INSTRUMENTS: &[&str] = &[
    "blood_pressure",
    "pulse_oximeter",
    "scale",
    "ecg",
    "glucometer",
];

/// Every node of a PostgreSQL plan (`Plans`), outermost first.
fn nodes(plan: &Document, found: &mut Vec<Document>) {
    found.push(plan.clone());
    if let Ok(inputs) = plan.get_array("Plans") {
        for input in inputs.iter().filter_map(Bson::as_document) {
            nodes(input, found);
        }
    }
}

/// Every stage of a MongoDB plan, outermost first (`inputStage`, `inputStages`).
fn stages(plan: &Document, found: &mut Vec<Document>) {
    found.push(plan.clone());
    if let Ok(input) = plan.get_document("inputStage") {
        stages(input, found);
    }
    if let Ok(inputs) = plan.get_array("inputStages") {
        for input in inputs.iter().filter_map(Bson::as_document) {
            stages(input, found);
        }
    }
}

#[tokio::test]
async fn the_trend_query_is_planned_as_the_store_in_use_plans_it() {
    let server = Store::from_env_or_start(None).await.unwrap();
    let client = Client::with_uri_str(server.uri()).await.unwrap();
    let database = client.database(&format!("trend_index_{}", std::process::id()));
    read_model::indexes::create(&database).await.unwrap();
    let reports = database.collection::<Document>(read_model::REPORTS);
    let patients: Vec<Uuid> = (0..PATIENTS).map(|_| Uuid::new_v4()).collect();
    let mut documents = Vec::new();
    for patient in &patients {
        for checkup in 0..CHECKUPS {
            for instrument in INSTRUMENTS {
                let code = if *instrument == "blood_pressure" {
                    "8480-6"
                } else {
                    "other"
                };
                documents.push(doc! {
                    "_id": Uuid::new_v4().to_string(),
                    "patient_id": patient.to_string(),
                    "instrument": { "type": *instrument },
                    "taken_at": DateTime::from_millis(1_700_000_000_000 + checkup * 86_400_000),
                    "status": "final",
                    "measurements": { code: { "code": code, "value": 120.0 } },
                });
            }
        }
    }
    reports.insert_many(documents).await.unwrap();

    let query = parse_trend_query(Some("code=8480-6&limit=20")).unwrap();
    let filter = store::trend_filter(patients[1], &query);
    let explain = doc! {
        "explain": {
            "find": read_model::REPORTS,
            "filter": filter.clone(),
            "sort": store::newest_first_sort(),
            "limit": i64::from(query.limit) + 1,
        },
        "verbosity": "queryPlanner",
    };
    let build_info = database.run_command(doc! { "buildInfo": 1 }).await.unwrap();
    let answer = database.run_command(explain).await.unwrap();
    // The query itself still finds the patient's readings, newest first.
    let (points, more) = store::trend(&database, patients[1], &query).await.unwrap();
    database.drop().await.unwrap();
    assert_eq!(points.len(), 20);
    assert!(more);

    let planner = answer.get_document("queryPlanner").unwrap();
    if build_info.contains_key("ferretdbVersion") {
        // FerretDB answers with PostgreSQL's plan of the query it made: the patient condition
        // is pushed down (`_jsonb->'patient_id' @> …`) and served by the index on that key;
        // the rest is filtered, sorted and limited by FerretDB.
        let mut found = Vec::new();
        nodes(planner.get_document("Plan").unwrap(), &mut found);
        let by_patient = found.iter().any(|node| {
            node.get_str("Node Type")
                .is_ok_and(|kind| kind.contains("Index Scan"))
                && node
                    .get_str("Index Cond")
                    .is_ok_and(|cond| cond.contains("'patient_id'"))
        });
        assert!(by_patient, "no index scan by patient: {answer}");
        assert!(
            found
                .iter()
                .all(|node| node.get_str("Node Type").ok() != Some("Seq Scan")),
            "{answer}"
        );
        assert_eq!(
            answer.get_bool("filterPushdown").ok(),
            Some(true),
            "{answer}"
        );
        assert_eq!(
            answer.get_bool("sortPushdown").ok(),
            Some(false),
            "{answer}"
        );
    } else {
        let mut found = Vec::new();
        stages(planner.get_document("winningPlan").unwrap(), &mut found);
        let scans: Vec<&Document> = found
            .iter()
            .filter(|stage| stage.get_str("stage").ok() == Some("IXSCAN"))
            .collect();
        assert!(!scans.is_empty(), "no index scan: {answer}");
        assert!(
            scans
                .iter()
                .all(|scan| scan.get_str("indexName").ok() == Some(REPORTS_BY_PATIENT_INSTRUMENT)),
            "{answer}"
        );
        assert!(
            found
                .iter()
                .all(|stage| !matches!(stage.get_str("stage").ok(), Some("COLLSCAN" | "SORT"))),
            "a collection scan or an in-memory sort: {answer}"
        );
    }
}
