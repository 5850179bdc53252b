//! What the daemon sends to the store, as the driver's command monitoring sees it: FerretDB
//! ignores write concerns and shard keys, so that they are there is proven on the commands
//! themselves. Over inserts, updates, deletes, renames, amendments, deletes of reports and a
//! report moved to another patient: every write command carries the configured write concern,
//! and every statement on `reports` names its patient — except those meant for every patient,
//! which go to every shard: the fan-outs of a clinic or device rename, and emptying the
//! collection (before the initial snapshot, or for a `TRUNCATE`). None changes the patient of
//! the report it addresses: the moved report is deleted under one and inserted under the other.
//!
//! And the write lanes are real: with several, a batch's write commands are in flight at once;
//! with one, never two.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devstack::in_process;
use devstack::services;
use mongodb::bson::{Bson, Document};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use uuid::Uuid;

use crate::support::{Rig, Source};

/// Commands that write, by the name the driver reports.
const WRITES: &[&str] = &[
    "insert",
    "update",
    "delete",
    "findAndModify",
    "createIndexes",
];

#[tokio::test]
async fn every_write_carries_the_write_concern_and_every_report_statement_its_patient() {
    let rig = Rig::new().await;
    let sent: Arc<Mutex<Vec<(String, Document)>>> = Arc::default();
    let recorder = Arc::clone(&sent);
    let daemon = monitored_daemon(
        &rig,
        &[("MYHEALTH_WRITE_CONCERN__TIMEOUT_MS", "7000")],
        move |event| {
            if let CommandEvent::Started(started) = event {
                recorder
                    .lock()
                    .unwrap()
                    .push((started.command_name, started.command));
            }
        },
    )
    .await;

    let source = Source::new(&rig).await;
    let ada = source.patient("Ada Lovelace").await;
    let grace = source.patient("Grace Hopper").await;
    let ada_reports = source.checkup(ada, 3).await;
    let grace_reports = source.checkup(grace, 2).await;
    let grace_checkup: Uuid = source
        .client
        .query_one(
            "SELECT checkup_id FROM reports WHERE id = $1",
            &[&grace_reports[0]],
        )
        .await
        .unwrap()
        .get(0);
    source
        .client
        .batch_execute(&format!(
            "UPDATE reports SET status = 'amended', notes = 'rechecked' WHERE id = '{r0}';
             DELETE FROM measurements WHERE report_id = '{r0}' AND code = '8462-4';
             UPDATE measurements SET value = 99 WHERE report_id = '{r0}' AND code = '8480-6';
             UPDATE reports SET status = 'entered-in-error' WHERE id = '{g0}';
             UPDATE patients SET full_name = 'Ada King' WHERE id = '{ada}';
             UPDATE checkups SET completed_at = now() WHERE patient_id = '{ada}';
             UPDATE clinics SET name = 'North Clinic (renamed)';
             UPDATE devices SET label = 'tablet-one';
             UPDATE reports SET checkup_id = '{grace_checkup}', patient_id = '{grace}'
              WHERE id = '{r1}';
             DELETE FROM reports WHERE id = '{r2}';",
            r0 = ada_reports[0],
            r1 = ada_reports[1],
            r2 = ada_reports[2],
            g0 = grace_reports[0],
        ))
        .await
        .unwrap();
    if let Err(stuck) = rig.caught_up_within(Duration::from_secs(240)).await {
        // What the daemon kept sending says why.
        let sent = sent.lock().unwrap();
        let last: Vec<String> = sent
            .iter()
            .rev()
            .take(12)
            .map(|(name, command)| format!("{name}: {command}"))
            .collect();
        panic!(
            "{stuck}; its last commands, newest first:\n{}",
            last.join("\n")
        );
    }
    rig.assert_verified().await;
    daemon.stop().await.unwrap();

    let sent = sent.lock().unwrap();
    let writes: Vec<&(String, Document)> = sent
        .iter()
        .filter(|(name, _)| WRITES.contains(&name.as_str()))
        .collect();
    for kind in ["update", "delete"] {
        assert!(
            writes.iter().any(|(name, _)| name == kind),
            "the workload sends {kind} commands"
        );
    }
    for (name, command) in &writes {
        let concern = command
            .get_document("writeConcern")
            .unwrap_or_else(|_| panic!("{name} without a write concern: {command}"));
        assert_eq!(concern.get_str("w").ok(), Some("majority"), "{command}");
        assert_eq!(concern.get_bool("j").ok(), Some(true), "{command}");
        let timeout = concern.get("wtimeout").and_then(Bson::as_i64_lenient);
        assert_eq!(timeout, Some(7000), "{command}");
    }

    let mut report_statements = 0;
    for (name, command) in &writes {
        if command.get_str(name).ok() != Some(read_model::REPORTS) {
            continue;
        }
        let statements = match name.as_str() {
            "update" => command.get_array("updates").unwrap(),
            "delete" => command.get_array("deletes").unwrap(),
            _ => continue,
        };
        for statement in statements {
            let filter = statement.as_document().unwrap().get_document("q").unwrap();
            let broadcast = filter.is_empty()
                || filter.contains_key("checkup.clinic_id")
                || filter.contains_key("checkup.device_id");
            assert!(
                broadcast || filter.contains_key("patient_id"),
                "a statement on reports without its patient: {filter}"
            );
            report_statements += 1;
        }
    }
    assert!(
        report_statements > 10,
        "{report_statements} statements on reports"
    );

    // No statement changes the patient of the report it addresses (a sharded cluster refuses
    // that outside a transaction): the moved report left Ada in a delete and arrived under
    // Grace in an insert, with its measurements (verify passed).
    for (name, command) in &writes {
        if name != "update" || command.get_str(name).ok() != Some(read_model::REPORTS) {
            continue;
        }
        for statement in command.get_array("updates").unwrap() {
            let statement = statement.as_document().unwrap();
            let (filter, update) = (
                statement.get_document("q").unwrap(),
                statement.get_document("u").unwrap(),
            );
            let sets = update.get_document("$set").unwrap_or(update);
            if let (Ok(addressed), Ok(set)) =
                (filter.get_str("patient_id"), sets.get_str("patient_id"))
            {
                assert_eq!(addressed, set, "a statement moving a report: {statement}");
            }
        }
    }
    let (moved, ada, grace) = (
        ada_reports[1].to_string(),
        ada.to_string(),
        grace.to_string(),
    );
    let left = writes.iter().any(|(name, command)| {
        name == "delete"
            && command.get_str(name).ok() == Some(read_model::REPORTS)
            && command
                .get_array("deletes")
                .unwrap()
                .iter()
                .any(|statement| {
                    let filter = statement.as_document().unwrap().get_document("q").unwrap();
                    filter.get_str("_id").ok() == Some(moved.as_str())
                        && filter.get_str("patient_id").ok() == Some(ada.as_str())
                })
    });
    let arrived = writes.iter().any(|(name, command)| {
        name == "insert"
            && command.get_str(name).ok() == Some(read_model::REPORTS)
            && command
                .get_array("documents")
                .unwrap()
                .iter()
                .any(|document| {
                    let document = document.as_document().unwrap();
                    document.get_str("_id").ok() == Some(moved.as_str())
                        && document.get_str("patient_id").ok() == Some(grace.as_str())
                        && document.contains_key("measurements")
                })
    });
    assert!(
        left,
        "the moved report was not deleted under its old patient"
    );
    assert!(
        arrived,
        "the moved report was not inserted under its new patient"
    );

    // Each rename's fan-out is sent again, alone, until a pass changes nothing (a chunk
    // migration may hide documents from one pass); the renames took effect, so verify passed.
    for field in ["checkup.clinic_id", "checkup.device_id"] {
        let passes = writes
            .iter()
            .filter(|(name, command)| {
                name == "update" && command.get_str(name).ok() == Some(read_model::REPORTS)
            })
            .flat_map(|(_, command)| command.get_array("updates").unwrap())
            .filter(|statement| {
                let statement = statement.as_document().unwrap();
                statement.get_bool("multi").unwrap_or(false)
                    && statement.get_document("q").unwrap().contains_key(field)
            })
            .count();
        assert!(
            passes >= 2,
            "the fan-out on {field} was sent {passes} times"
        );
    }
}

/// A daemon of `rig` with `extra` settings, streaming, whose driver tells `monitor` every
/// command event.
async fn monitored_daemon(
    rig: &Rig,
    extra: &[(&str, &str)],
    monitor: impl Fn(CommandEvent) + Send + Sync + 'static,
) -> in_process::Running {
    let mut options = ClientOptions::parse(&rig.mongodb_uri).await.unwrap();
    options.command_event_handler = Some(EventHandler::callback(monitor));
    let client = mongodb::Client::with_options(options).unwrap();
    let settings = rig.settings(extra);
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let daemon = in_process::daemon_on(&pairs, client).await.unwrap();
    services::wait_streaming(&daemon.url, services::STREAMING_TIMEOUT)
        .await
        .unwrap();
    daemon
}

/// The most write commands the daemon had sent without yet seeing their answer, at any one
/// moment of a workload of many patients' checkups, streamed with `lanes` write lanes.
async fn most_writes_in_flight(lanes: &str) -> usize {
    let rig = Rig::new().await;
    // The write commands sent and not yet answered, by request id; the most there were.
    let in_flight: Arc<Mutex<(HashSet<i32>, usize)>> = Arc::default();
    let recorder = Arc::clone(&in_flight);
    let daemon = monitored_daemon(&rig, &[("MYHEALTH_WRITE_LANES", lanes)], move |event| {
        let mut guard = recorder.lock().unwrap();
        let (sent, most) = &mut *guard;
        match event {
            CommandEvent::Started(started) if WRITES.contains(&started.command_name.as_str()) => {
                sent.insert(started.request_id);
                *most = (*most).max(sent.len());
            }
            CommandEvent::Succeeded(succeeded) => {
                sent.remove(&succeeded.request_id);
            }
            CommandEvent::Failed(failed) => {
                sent.remove(&failed.request_id);
            }
            _ => {}
        }
    })
    .await;
    let source = Source::new(&rig).await;
    for index in 0..20 {
        let patient = source.patient(&format!("Patient {index}")).await;
        source.checkup(patient, 4).await;
    }
    rig.assert_verified().await;
    daemon.stop().await.unwrap();
    in_flight.lock().unwrap().1
}

#[tokio::test]
async fn writes_overlap_on_several_lanes_and_never_on_one() {
    assert_eq!(most_writes_in_flight("1").await, 1);
    let most = most_writes_in_flight("4").await;
    assert!(most > 1, "with four lanes, at most {most} write in flight");
}

/// `as_i64` for either integer width (the driver writes `wtimeout` as a 32-bit integer).
trait Lenient {
    fn as_i64_lenient(&self) -> Option<i64>;
}

impl Lenient for Bson {
    fn as_i64_lenient(&self) -> Option<i64> {
        match self {
            Bson::Int32(value) => Some(i64::from(*value)),
            Bson::Int64(value) => Some(*value),
            _ => None,
        }
    }
}
