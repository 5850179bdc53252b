//! The reports API reads with read concern `majority`: FerretDB ignores read concerns, so this
//! listens to the commands the real driver sends while the API's store code reads a store.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};

use devstack::ferretdb::Store;
use mongodb::Client;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use reports_api::params::{ListQuery, parse_trend_query};
use reports_api::store;
use uuid::Uuid;

#[tokio::test]
async fn every_read_of_the_api_and_of_its_checkpoint_asks_for_majority() {
    let server = Store::from_env_or_start(None).await.unwrap();
    let sent: Arc<Mutex<Vec<Document>>> = Arc::default();
    let mut options = ClientOptions::parse(server.uri()).await.unwrap();
    let recorder = sent.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event {
            recorder.lock().unwrap().push(started.command);
        }
    }));
    let client = Client::with_options(options).unwrap();
    let written = client.database(&format!("read_concern_{}", std::process::id()));
    let patient = Uuid::new_v4();
    let report = Uuid::new_v4();
    let taken_at = DateTime::from_millis(1_700_000_000_000);
    written
        .collection::<Document>(read_model::REPORTS)
        .insert_one(doc! {
            "_id": report.to_string(),
            "patient_id": patient.to_string(),
            "instrument": { "type": "blood_pressure" },
            "taken_at": taken_at,
            "status": "final",
            "measurements": { "8480-6": { "code": "8480-6", "value": 120.0 } },
        })
        .await
        .unwrap();
    written
        .collection::<Document>(read_model::PATIENTS)
        .insert_one(doc! { "_id": patient.to_string() })
        .await
        .unwrap();
    let checkpoint = read_model::checkpoint::Checkpoint {
        lsn: 0x16_B374_D848,
        commit_time_millis: 1_700_000_000_000,
    };
    read_model::checkpoint::save(&written, "slot", checkpoint)
        .await
        .unwrap();
    sent.lock().unwrap().clear();

    let reads = store::majority_reads(&written);
    let (page, _) = store::list(&reads, patient, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let trend = parse_trend_query(Some("code=8480-6")).unwrap();
    let (points, _) = store::trend(&reads, patient, &trend).await.unwrap();
    assert_eq!(points.len(), 1);
    assert!(store::get(&reads, patient, report).await.unwrap().is_some());
    assert!(store::summary(&reads, patient).await.unwrap().is_some());
    let loaded = read_model::checkpoint::load(&reads, "slot").await.unwrap();
    assert_eq!(loaded, Some(checkpoint));

    let sent = sent.lock().unwrap().clone();
    let finds: Vec<&Document> = sent
        .iter()
        .filter(|command| command.contains_key("find"))
        .collect();
    assert_eq!(finds.len(), 5, "{sent:?}");
    for find in finds {
        let level = find
            .get_document("readConcern")
            .and_then(|concern| concern.get_str("level"))
            .ok();
        assert_eq!(level, Some("majority"), "{find}");
    }
    written.drop().await.unwrap();
}
