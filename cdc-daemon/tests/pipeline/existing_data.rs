//! The daemon on a database with history: the initial snapshot (with uploads going on, and
//! killed halfway), schema changes mid-stream, dead letters and their replay, a poison row,
//! and resyncing one patient while load continues.

use std::time::{Duration, Instant};

use devstack::tablet::Tablet;
use mongodb::bson::{Document, doc};
use uuid::Uuid;

use crate::support::{Rig, Source, load, metric};

/// Fills the source with `patients` patients of `checkups` checkups of 5 reports (2
/// measurements each).
async fn history(rig: &Rig, patients: usize, checkups: usize) {
    let source = Source::new(rig).await;
    let sql = format!(
        "INSERT INTO patients (id, external_ref, full_name, birth_date, sex)
           SELECT gen_random_uuid(), 'MRN-' || g, 'Patient ' || g, date '1950-01-01' + g, 'other'
             FROM generate_series(1, {patients}) g;
         INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at)
           SELECT gen_random_uuid(), p.id, '{clinic}', '{device}',
                  timestamptz '2025-01-01' + (g || ' days')::interval
             FROM patients p, generate_series(1, {checkups}) g;
         INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial,
                              taken_at, notes, raw)
           SELECT gen_random_uuid(), c.id, c.patient_id, 'blood_pressure', 'BP-7',
                  c.started_at + (g || ' minutes')::interval,
                  CASE WHEN g = 1 THEN 'tab\there' END, '{{\"cuff\": \"L\"}}'
             FROM checkups c, generate_series(1, 5) g;
         INSERT INTO measurements
           SELECT r.id, '8480-6', 'Systolic blood pressure', 100 + (random() * 40)::int,
                  'mm[Hg]', 90, 120, 'N' FROM reports r;
         INSERT INTO measurements
           SELECT r.id, '8462-4', 'Diastolic blood pressure', 60.5, 'mm[Hg]', 60, 80, 'N'
             FROM reports r;
         ANALYZE",
        clinic = source.clinic,
        device = source.device,
    );
    source.client.batch_execute(&sql).await.unwrap();
}

/// Once the daemon at `base` snapshots, posts up to `most` uploads a second apart while the
/// snapshot lasts; returns how many were accepted. (Few: on FerretDB every streamed write
/// scans its collection, so catching up on 50,000 reports' worth is slow.)
async fn upload_during_snapshot(mut tablet: Tablet, base: String, most: usize) -> usize {
    let patients: Vec<_> = (0..3).map(|_| tablet.patient()).collect();
    while metric(&base, "cdc_snapshot_running").await != 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut accepted = 0;
    let mut at = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    while accepted < most && metric(&base, "cdc_snapshot_running").await == 1.0 {
        at += time::Duration::minutes(30);
        let upload = tablet.upload(&patients[accepted % patients.len()], at);
        tablet.post(&upload).await.unwrap();
        accepted += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    accepted
}

#[tokio::test]
async fn a_database_with_50000_reports_is_snapshotted_while_uploads_go_on() {
    // A store of its own: the other tests' stores stay fast meanwhile.
    let rig = Rig::with_own_store().await;
    // Long histories: 500 patients of 20 checkups.
    history(&rig, 500, 20).await;
    let ingest = rig.start_ingest("Uploading Clinic", "tablet").await;
    let tablet = Tablet::new(&ingest.base, &ingest.token, 11);

    let started = Instant::now();
    let daemon = rig.launch(&[]).await;
    let uploads = tokio::spawn(upload_during_snapshot(tablet, daemon.base.clone(), 5));
    while metric(&daemon.base, "cdc_connected").await != 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the snapshot did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snapshot_seconds = started.elapsed().as_secs_f64();
    let accepted = uploads.await.unwrap();
    ingest.stop.trigger();
    assert!(accepted > 0, "no upload went through during the snapshot");
    // The history (2 clinics' worth of lookups aside) and at most what exists now: uploads
    // committed after the slot's start arrive through the stream instead.
    let copied = metric(&daemon.base, "cdc_snapshot_rows_total").await;
    let now: i64 = rig
        .client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM clinics) + (SELECT count(*) FROM devices)
                  + (SELECT count(*) FROM patients) + (SELECT count(*) FROM checkups)
                  + (SELECT count(*) FROM reports) + (SELECT count(*) FROM measurements)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        copied >= 160_500.0 && copied < now as f64,
        "copied {copied} rows; the source has {now}"
    );
    rig.assert_verified().await;
    let reports = rig
        .store
        .collection::<Document>(read_model::REPORTS)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(reports, 50_000 + accepted as u64 * 5);
    eprintln!("snapshot of 50,000 reports: {snapshot_seconds:.1} s, {accepted} uploads meanwhile");
    daemon.stop().await;
}

#[tokio::test]
async fn a_snapshot_killed_halfway_starts_again_and_converges() {
    let rig = Rig::new().await;
    history(&rig, 400, 5).await;
    let mut process = rig.spawn_binary().await;
    let started = Instant::now();
    while metric(&process.base, "cdc_snapshot_rows_total").await < 2_000.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the snapshot did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill9().await;
    let checkpoint = read_model::checkpoint::load(&rig.store, &rig.slot)
        .await
        .unwrap();
    assert_eq!(
        checkpoint, None,
        "the snapshot was not finished when killed"
    );
    // Rows deleted and added before the restart: the new snapshot must not keep stale ones.
    let source = Source::new(&rig).await;
    source
        .client
        .batch_execute("DELETE FROM patients WHERE id IN (SELECT id FROM patients LIMIT 50)")
        .await
        .unwrap();
    let patient = source.patient("After The Kill").await;
    source.checkup(patient, 3).await;

    let process = rig.spawn_binary().await;
    process.wait_snapshotted().await;
    rig.assert_verified().await;
}

#[tokio::test]
async fn a_column_added_mid_stream_is_harmless() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Before Alter").await;
    source.checkup(patient, 2).await;
    source
        .client
        .batch_execute(
            "ALTER TABLE reports ADD COLUMN room text DEFAULT 'A1';
             ALTER TABLE patients ADD COLUMN nickname text",
        )
        .await
        .unwrap();
    source.checkup(patient, 2).await;
    source
        .client
        .execute(
            "UPDATE patients SET full_name = 'After Alter', nickname = 'AA' WHERE id = $1",
            &[&patient],
        )
        .await
        .unwrap();
    rig.assert_verified().await;
    assert_eq!(metric(&daemon.base, "cdc_dead_letters_total").await, 0.0);
    daemon.stop().await;
}

#[tokio::test]
async fn dropping_a_mapped_column_dead_letters_its_changes_until_fixed_and_replayed() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Dropped Notes").await;
    source.checkup(patient, 1).await;
    source
        .client
        .batch_execute("ALTER TABLE reports DROP COLUMN status")
        .await
        .unwrap();
    let reports = source.checkup(patient, 2).await;
    // The stream goes on: a later patient maps fine.
    let later = source.patient("Behind The Poison").await;
    rig.caught_up().await;
    let stored = rig
        .store
        .collection::<Document>(read_model::PATIENTS)
        .find_one(doc! { "_id": later.to_string() })
        .await
        .unwrap();
    assert!(
        stored.is_some(),
        "a change behind the dead letters was not applied"
    );
    let letters = cdc_daemon::support_requests::unresolved(&rig.store)
        .await
        .unwrap();
    let of = |table: &str| {
        letters
            .iter()
            .filter(|letter| letter.get_str("table").unwrap() == table)
            .collect::<Vec<_>>()
    };
    // Two reports, and their four measurements, orphans without them.
    assert_eq!(
        (of("reports").len(), of("measurements").len(), letters.len()),
        (2, 4, 6),
        "{letters:?}"
    );
    for letter in of("reports") {
        assert!(
            letter.get_str("error").unwrap().contains("column status"),
            "{letter:?}"
        );
        // The values as Extended JSON text, which reads back as the row's columns.
        let values: serde_json::Value =
            serde_json::from_str(letter.get_str("values").unwrap()).unwrap();
        assert!(
            reports
                .iter()
                .any(|id| values["id"].as_str() == Some(&id.to_string())),
            "{values}"
        );
    }
    assert!(metric(&daemon.base, "cdc_errors_total").await >= 2.0);
    // Their measurements are orphans until the reports exist.
    let missing = rig
        .store
        .collection::<Document>(read_model::REPORTS)
        .count_documents(doc! { "_id": reports[0].to_string() })
        .await
        .unwrap();
    assert_eq!(missing, 0);

    // The fix: the column is back (the data behind it is what the source now says).
    source
        .client
        .batch_execute(
            "ALTER TABLE reports ADD COLUMN status text NOT NULL DEFAULT 'final' \
             CHECK (status IN ('final', 'amended', 'entered-in-error'))",
        )
        .await
        .unwrap();
    let replay = rig
        .cli(&["dead-letters", "replay", "--wait-seconds", "60"])
        .await;
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        cdc_daemon::support_requests::unresolved(&rig.store)
            .await
            .unwrap()
            .is_empty()
    );
    let listed = rig.cli(&["dead-letters", "list", "--all"]).await;
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.lines().count() >= 2 && listed.contains("replayed_at"),
        "{listed}"
    );
    // Each line is JSON, with the values inlined as the object they hold.
    for line in listed.lines() {
        let letter: serde_json::Value = serde_json::from_str(line).unwrap();
        if letter["table"] == "reports" {
            assert!(letter["values"]["id"].is_string(), "{line}");
        }
    }
    rig.assert_verified().await;
    daemon.stop().await;
}

#[tokio::test]
async fn with_stop_on_dead_letter_the_daemon_halts_before_the_poison_change() {
    let rig = Rig::new().await;
    let daemon = rig
        .start_with(&[("MYHEALTH_STOP_ON_DEAD_LETTER", "true")])
        .await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Fine").await;
    rig.caught_up().await;
    source
        .client
        .batch_execute("ALTER TABLE patients DROP COLUMN email")
        .await
        .unwrap();
    source.patient("Poison").await;
    let started = Instant::now();
    while metric(&daemon.base, "cdc_halted").await != 1.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "did not halt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cdc_daemon::support_requests::unresolved(&rig.store)
            .await
            .unwrap()
            .is_empty(),
        "halting records no dead letter"
    );
    let stored = rig.count(read_model::PATIENTS).await;
    assert_eq!(stored, 1, "only the patient before the poison is there");
    let _ = patient;
    daemon.stop().await;
}

#[tokio::test]
async fn resyncing_a_patient_repairs_their_documents_while_load_goes_on() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Damaged").await;
    let reports = source.checkup(patient, 3).await;
    rig.caught_up().await;
    // Someone damaged the read model by hand.
    let store = &rig.store;
    store
        .collection::<Document>(read_model::REPORTS)
        .delete_one(doc! { "_id": reports[0].to_string() })
        .await
        .unwrap();
    store
        .collection::<Document>(read_model::REPORTS)
        .update_one(
            doc! { "_id": reports[1].to_string() },
            doc! { "$set": { "patient.full_name": "Wrong", "measurements.bogus": { "value": 1 } } },
        )
        .await
        .unwrap();
    store
        .collection::<Document>(read_model::PATIENTS)
        .update_one(
            doc! { "_id": patient.to_string() },
            doc! { "$unset": { "latest": "" } },
        )
        .await
        .unwrap();

    let url = rig.database_url.clone();
    let writer = tokio::spawn(load(url, 30, 2));
    let resync = rig
        .cli(&["resync", "--patient", &patient.to_string()])
        .await;
    assert!(
        resync.status.success(),
        "{}",
        String::from_utf8_lossy(&resync.stderr)
    );
    writer.await.unwrap();
    rig.assert_verified().await;
    let unknown = Uuid::new_v4().to_string();
    let resync = rig.cli(&["resync", "--patient", &unknown]).await;
    assert!(
        resync.status.success(),
        "resyncing an unknown patient is a no-op"
    );
    rig.assert_verified().await;
    daemon.stop().await;
}

#[tokio::test]
async fn heartbeats_arrive_and_keep_the_checkpoint_moving() {
    let rig = Rig::new().await;
    let daemon = rig
        .start_with(&[("MYHEALTH_HEARTBEAT_INTERVAL_MS", "200")])
        .await;
    let before = read_model::checkpoint::load(&rig.store, &rig.slot)
        .await
        .unwrap()
        .unwrap()
        .lsn;
    let started = Instant::now();
    loop {
        let age = metric(&daemon.base, "cdc_heartbeat_age_seconds").await;
        let now = read_model::checkpoint::load(&rig.store, &rig.slot)
            .await
            .unwrap()
            .unwrap()
            .lsn;
        if age > 0.0 && age < 5.0 && now > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no heartbeat arrived (age {age}) or the checkpoint stood still"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;
}
