//! A daemon cut off with a batch in flight lands it after a standby took over and wrote newer
//! changes to the same documents: the LSN guard keeps the newer state, the late writes are
//! counted as stale, and the checkpoint does not move back.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

use crate::support::{Rig, Source, metric};

#[tokio::test]
async fn a_frozen_daemons_late_batch_never_overwrites_what_the_standby_wrote_since() {
    let mut rig = Rig::with_own_store().await;
    let mut first = rig.spawn_binary().await;
    first.wait_streaming().await;
    let source = Source::new(&rig).await;
    let ada = source.patient("Ada Lovelace").await;
    source.checkup(ada, 2).await;
    rig.caught_up().await;

    // The store hangs, so the first daemon's batch for the rename (the fan-out to the reports,
    // then the patient document) stays in flight; the daemon is frozen with it.
    let mapped = metric(&first.base, "cdc_changes_total").await;
    rig.ferretdb.as_mut().unwrap().freeze().unwrap();
    source
        .client
        .execute(
            "UPDATE patients SET full_name = 'Ada First' WHERE id = $1",
            &[&ada],
        )
        .await
        .unwrap();
    let started = Instant::now();
    while metric(&first.base, "cdc_changes_total").await <= mapped {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.freeze();
    rig.ferretdb.as_mut().unwrap().thaw().unwrap();

    // Cut off from PostgreSQL: its walsender ends, a standby takes the slot, replays the rename
    // and applies a newer one.
    let admin = rig.client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&rig.slot],
        )
        .await
        .unwrap();
    let standby = rig.start().await;
    source
        .client
        .execute(
            "UPDATE patients SET full_name = 'Ada Second' WHERE id = $1",
            &[&ada],
        )
        .await
        .unwrap();
    rig.caught_up().await;
    let checkpoint = read_model::checkpoint::load(&rig.store, &rig.slot)
        .await
        .unwrap()
        .unwrap();

    // The frozen daemon resumes and lands the rest of its batch.
    first.thaw();
    let started = Instant::now();
    while metric(&first.base, "cdc_stale_writes_total").await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the late batch was never refused as stale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let patient = rig
        .store
        .collection::<Document>("patients")
        .find_one(doc! { "_id": ada.to_string() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(patient.get_str("full_name").unwrap(), "Ada Second");
    let after = read_model::checkpoint::load(&rig.store, &rig.slot)
        .await
        .unwrap()
        .unwrap();
    assert!(after.lsn >= checkpoint.lsn, "the checkpoint moved back");
    rig.assert_verified().await;
    standby.stop().await;
    first.kill9().await;
}
