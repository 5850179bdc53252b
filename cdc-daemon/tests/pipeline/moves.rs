//! A report moved to another patient is moved by the sink in four steps: copied aside, deleted
//! under its old patient, inserted under the new one, its copy dropped. A crash after any step
//! leaves a state that the replay of the same move finishes, with the measurements (which no
//! change of the report row carries) kept. Each state is built in the real store, then the
//! move's writes are flushed over it as a replay would send them.

use cdc_daemon::sink::{self, Batch, Key, Write};
use mongodb::bson::{Document, doc};
use read_model::lsn::to_position;
use read_model::{MOVING_REPORTS, REPORTS};

use crate::support::Rig;

/// The move's commit LSN.
const LSN: u64 = 0x1_0000_0100;

/// Report `r1` as stored under `patient` at `position`, with a measurement.
fn report(patient: &str, position: u64) -> Document {
    doc! {
        "_id": "r1",
        "patient_id": patient,
        "status": "final",
        "measurements": { "8480-6": { "code": "8480-6", "value": 120.0 } },
        "_cdc": { "lsn": "1/F0", "position": to_position(position) },
    }
}

/// The copy step 1 makes.
fn copy() -> Document {
    doc! {
        "_id": format!("r1@{LSN:016X}"),
        "document": report("ada", LSN - 0x10),
    }
}

/// Empties both collections, then stores `reports` and `copies`.
async fn state(rig: &Rig, reports: Vec<Document>, copies: Vec<Document>) {
    for (collection, documents) in [(REPORTS, reports), (MOVING_REPORTS, copies)] {
        let collection = rig.store.collection::<Document>(collection);
        collection.delete_many(doc! {}).await.unwrap();
        if !documents.is_empty() {
            collection.insert_many(documents).await.unwrap();
        }
    }
}

/// Sends what the mapping makes of `UPDATE reports SET patient_id = 'grace', status = 'amended'`
/// (committed at [`LSN`]): the move, then the new fields under the new patient.
async fn replay_the_move(rig: &Rig) -> sink::Skipped {
    let mut batch = Batch::default();
    batch.at(LSN);
    batch.push(Write::move_report("r1", "ada", "grace"));
    batch.push(Write::upsert(
        REPORTS,
        Key::report("r1", "grace"),
        doc! { "patient_id": "grace", "status": "amended" },
    ));
    rig.flush(batch).await.unwrap()
}

#[tokio::test]
async fn a_move_interrupted_after_any_step_is_finished_by_its_replay() {
    let rig = Rig::new().await;
    let before = || report("ada", LSN - 0x10);
    let arrived = || report("grace", LSN);
    let states = [
        ("not started", vec![before()], vec![]),
        ("copied", vec![before()], vec![copy()]),
        ("left the old patient", vec![], vec![copy()]),
        (
            "arrived under the new patient",
            vec![arrived()],
            vec![copy()],
        ),
        ("done", vec![arrived()], vec![]),
    ];
    for (name, reports, copies) in states {
        state(&rig, reports, copies).await;
        let skipped = replay_the_move(&rig).await;
        assert!(
            skipped.rejected.is_empty(),
            "{name}: {:?}",
            skipped.rejected
        );
        let reports = rig.documents(REPORTS).await;
        assert_eq!(reports.len(), 1, "{name}: {reports:?}");
        let moved = &reports[0];
        assert_eq!(moved.get_str("patient_id").ok(), Some("grace"), "{name}");
        assert_eq!(moved.get_str("status").ok(), Some("amended"), "{name}");
        assert_eq!(
            moved.get_document("measurements").ok(),
            before().get_document("measurements").ok(),
            "{name}: the measurements moved with the report"
        );
        let position = moved.get_document("_cdc").unwrap().get_i64("position");
        assert_eq!(position.ok(), Some(to_position(LSN)), "{name}");
        assert!(rig.documents(MOVING_REPORTS).await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_move_older_than_the_stored_report_changes_nothing() {
    let rig = Rig::new().await;
    // Newer under the new patient (a standby already moved and amended it), or back under the
    // old one (moved back since).
    for newer in [report("grace", LSN + 0x10), report("ada", LSN + 0x10)] {
        state(&rig, vec![newer.clone()], vec![]).await;
        let skipped = replay_the_move(&rig).await;
        assert!(skipped.rejected.is_empty(), "{:?}", skipped.rejected);
        assert_eq!(
            skipped.stale,
            [REPORTS],
            "the late upsert is counted as stale"
        );
        assert_eq!(rig.documents(REPORTS).await, [newer]);
        assert!(rig.documents(MOVING_REPORTS).await.is_empty());
    }
}
