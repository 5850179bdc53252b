//! Fan-outs (guarded multi-document writes: a rename reaching every report of a patient, a
//! clinic or a device) are sent again until a pass changes nothing, as MongoDB advises for
//! multi-shard updates. Two of them in one batch, the later rewriting what the earlier set, must
//! still settle: a checkup's change embeds its clinic's name as it was, and the clinic's rename
//! in the same transaction sets the new one.

use cdc_daemon::sink::{Batch, Write};
use mongodb::bson::{Document, doc};
use read_model::REPORTS;

use crate::support::Rig;

#[tokio::test]
async fn fan_outs_that_rewrite_each_other_settle_in_stream_order() {
    let rig = Rig::new().await;
    let reports = rig.store.collection::<Document>(REPORTS);
    let documents: Vec<Document> = (0..3)
        .map(|n| {
            doc! {
                "_id": format!("r{n}"), "patient_id": "p1",
                "checkup": { "clinic_id": "c1", "clinic_name": "North" },
                "_cdc": { "position": 1_i64 },
            }
        })
        .collect();
    reports.insert_many(documents).await.unwrap();

    let mut batch = Batch::default();
    batch.at(0x100);
    batch.push(Write::update_many(
        REPORTS,
        doc! { "patient_id": "p1" },
        doc! { "$set": { "checkup": { "clinic_id": "c1", "clinic_name": "North" } } },
    ));
    batch.push(Write::update_many(
        REPORTS,
        doc! { "checkup.clinic_id": "c1" },
        doc! { "$set": { "checkup.clinic_name": "North (renamed)" } },
    ));
    rig.flush(batch).await.expect("the fan-outs settle");
    let names: Vec<String> = rig
        .documents(REPORTS)
        .await
        .iter()
        .map(|report| {
            let checkup = report.get_document("checkup").unwrap();
            checkup.get_str("clinic_name").unwrap().to_string()
        })
        .collect();
    assert_eq!(names, ["North (renamed)"; 3], "the later fan-out wins");
}
