//! Crashes, outages and takeovers: after each, the store converges to the source.

use std::time::Duration;

use devstack::services;

use crate::support::{Rig, Source, load};

#[tokio::test]
async fn a_daemon_killed_with_sigkill_mid_stream_loses_and_duplicates_nothing() {
    let rig = Rig::new().await;
    let mut first = rig.spawn_binary().await;
    first.wait_streaming().await;
    let writer = tokio::spawn(load(rig.database_url.clone(), 1000, 2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = rig.spawn_binary().await;
    second.wait_streaming().await;
    writer.await.unwrap();
    rig.assert_verified().await;
}

#[tokio::test]
async fn the_daemon_catches_up_by_itself_after_the_store_was_down() {
    let mut rig = Rig::with_own_store().await;
    let daemon = rig.start().await;
    let writer = tokio::spawn(load(rig.database_url.clone(), 400, 3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = rig.ferretdb.as_mut().unwrap();
    store.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    store.restart().await.unwrap();
    writer.await.unwrap();
    rig.assert_verified().await;
    daemon.stop().await;
}

#[tokio::test]
async fn the_daemon_reconnects_after_postgresql_restarts_under_load() {
    let mut rig = Rig::with_own_postgres().await;
    let daemon = rig.start().await;
    let writer = tokio::spawn(load(rig.database_url.clone(), 400, 3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cluster = rig.postgres.as_mut().unwrap();
    cluster.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart().await.unwrap();
    writer.await.unwrap();
    daemon.wait_streaming().await;
    rig.assert_verified().await;
    daemon.stop().await;
}

#[tokio::test]
async fn writes_to_unpublished_tables_do_not_make_the_slot_retain_wal() {
    let rig = Rig::with_own_postgres().await;
    let daemon = rig.start().await;
    let client = rig.client().await;
    client
        .batch_execute(
            "CREATE TABLE scratch (data text); \
             INSERT INTO scratch SELECT repeat(md5(i::text), 32) FROM generate_series(1, 60000) i;",
        )
        .await
        .unwrap();
    let written: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut behind = i64::MAX;
    for _ in 0..300 {
        // A checkpoint logs the running transactions a logical slot needs to move its restart
        // position.
        client.batch_execute("CHECKPOINT").await.unwrap();
        behind = client
            .query_one(
                "SELECT (pg_current_wal_lsn() - restart_lsn)::int8 FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&rig.slot],
            )
            .await
            .unwrap()
            .get::<_, Option<i64>>(0)
            .unwrap_or(i64::MAX);
        if behind < 16 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        behind < 16 * 1024 * 1024,
        "the slot retains {behind} bytes after ~60 MB of unpublished writes ({written})"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_second_daemon_takes_over_when_the_first_dies() {
    let rig = Rig::new().await;
    let mut active = rig.spawn_binary().await;
    active.wait_streaming().await;
    let standby = rig.spawn_binary().await;
    let writer = tokio::spawn(load(rig.database_url.clone(), 600, 3));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let metrics = reqwest::get(format!("{}/metrics", standby.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|line| line == "cdc_connected 0"),
        "the standby must wait"
    );
    active.kill9().await;
    services::wait_streaming(&standby.base, services::STREAMING_TIMEOUT)
        .await
        .unwrap();
    writer.await.unwrap();
    rig.assert_verified().await;
}

#[tokio::test]
async fn a_transaction_of_100000_measurements_is_applied_in_bounded_memory() {
    let rig = Rig::new().await;
    let daemon = rig.spawn_binary().await;
    daemon.wait_streaming().await;
    let source = Source::new(&rig).await;
    // One transaction: 10 patients, 100 reports of 1,000 measurements each, each report
    // followed by its measurements (as an ingest of many uploads in one transaction would be).
    source
        .client
        .batch_execute(&format!(
            "DO $$
             BEGIN
               INSERT INTO patients (id, external_ref, full_name, birth_date, sex)
                 SELECT md5('p' || p)::uuid, 'MRN-' || p, 'Patient ' || p, '1980-01-01', 'other'
                 FROM generate_series(1, 10) p;
               INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at)
                 SELECT md5('c' || p)::uuid, md5('p' || p)::uuid, '{clinic}', '{device}', now()
                 FROM generate_series(1, 10) p;
               FOR r IN 1..100 LOOP
                 INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial,
                                      taken_at, raw)
                   VALUES (md5('r' || r)::uuid, md5('c' || (r % 10 + 1))::uuid,
                           md5('p' || (r % 10 + 1))::uuid, 'ecg', 'ECG-1',
                           now() - r * interval '1 second', '{{\"lead\": \"II\"}}');
                 INSERT INTO measurements (report_id, code, display_name, value, unit)
                   SELECT md5('r' || r)::uuid, 'code-' || c, 'Code ' || c, r + c / 10.0, 'ms'
                   FROM generate_series(1, 1000) c;
               END LOOP;
             END
             $$;",
            clinic = source.clinic,
            device = source.device,
        ))
        .await
        .unwrap();
    rig.assert_verified().await;
    let peak = daemon.peak_rss();
    assert!(
        peak < 150 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / 1024 / 1024
    );
}
