//! Inserts, updates, deletes and truncates of every table reach the store.

use mongodb::bson::{Document, doc};

use crate::support::{Rig, Source};

#[tokio::test]
async fn inserts_updates_and_deletes_of_every_table_converge() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let ada = source.patient("Ada Lovelace").await;
    let grace = source.patient("Grace Hopper").await;
    let ada_reports = source.checkup(ada, 3).await;
    let grace_reports = source.checkup(grace, 2).await;
    rig.caught_up().await;

    let reports = rig.store.collection::<Document>("reports");
    let first = reports
        .find_one(doc! { "_id": ada_reports[0].to_string() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first
            .get_document("patient")
            .unwrap()
            .get_str("full_name")
            .unwrap(),
        ("Ada Lovelace")
    );
    assert_eq!(
        first
            .get_document("checkup")
            .unwrap()
            .get_str("clinic_name")
            .unwrap(),
        ("North Clinic")
    );
    assert_eq!(
        first
            .get_document("checkup")
            .unwrap()
            .get_str("device_label")
            .unwrap(),
        ("tablet-1")
    );
    let systolic = first
        .get_document("measurements")
        .unwrap()
        .get_document("8480-6")
        .unwrap();
    assert_eq!(systolic.get_f64("value").unwrap(), (110.0));
    assert_eq!(first.get_str("raw").unwrap(), ("{\"cuff\": \"M\"}"));
    let patients = rig.store.collection::<Document>("patients");
    let summary = patients
        .find_one(doc! { "_id": ada.to_string() })
        .await
        .unwrap()
        .unwrap();
    let latest = summary
        .get_document("latest")
        .unwrap()
        .get_document("8480-6")
        .unwrap();
    assert_eq!(
        latest.get_str("report_id").unwrap(),
        (ada_reports[0].to_string().as_str()),
        "the newest report"
    );

    // Amend: status, a replaced measurement set; rename a patient, the clinic and the device.
    source
        .client
        .batch_execute(&format!(
            "BEGIN;
             UPDATE reports SET status = 'amended', notes = 'rechecked' WHERE id = '{r0}';
             DELETE FROM measurements WHERE report_id = '{r0}' AND code = '8462-4';
             UPDATE measurements SET value = 99 WHERE report_id = '{r0}' AND code = '8480-6';
             INSERT INTO measurements VALUES ('{r0}', '8867-4', 'Heart rate', 61, '/min', 60, 100, 'N');
             UPDATE reports SET status = 'entered-in-error' WHERE id = '{g0}';
             COMMIT;
             UPDATE patients SET full_name = 'Ada King' WHERE id = '{ada}';
             UPDATE clinics SET name = 'North Clinic (renamed)';
             UPDATE devices SET label = 'tablet-one';
             DELETE FROM reports WHERE id = '{r2}';",
            r0 = ada_reports[0],
            r2 = ada_reports[2],
            g0 = grace_reports[0],
        ))
        .await
        .unwrap();
    rig.assert_verified().await;
    let first = reports
        .find_one(doc! { "_id": ada_reports[0].to_string() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first
            .get_document("patient")
            .unwrap()
            .get_str("full_name")
            .unwrap(),
        ("Ada King")
    );
    assert_eq!(
        first
            .get_document("checkup")
            .unwrap()
            .get_str("clinic_name")
            .unwrap(),
        ("North Clinic (renamed)")
    );

    // A patient delete cascades in PostgreSQL and removes every document of the patient.
    source
        .client
        .execute("DELETE FROM patients WHERE id = $1", &[&grace])
        .await
        .unwrap();
    rig.assert_verified().await;
    assert_eq!(
        reports
            .count_documents(doc! { "patient_id": grace.to_string() })
            .await
            .unwrap(),
        0
    );
    assert!(
        patients
            .find_one(doc! { "_id": grace.to_string() })
            .await
            .unwrap()
            .is_none()
    );

    // Truncate.
    source
        .client
        .batch_execute("TRUNCATE measurements")
        .await
        .unwrap();
    rig.assert_verified().await;
    source
        .client
        .batch_execute("TRUNCATE reports CASCADE")
        .await
        .unwrap();
    rig.assert_verified().await;
    assert_eq!(reports.count_documents(doc! {}).await.unwrap(), 0);
    daemon.stop().await;
}

#[tokio::test]
async fn an_update_that_leaves_a_toasted_column_untouched_keeps_it() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Toast Patient").await;
    let report = source.checkup(patient, 1).await[0];
    // Random text does not compress, so 100 KB of it is stored out of line (TOASTed).
    source
        .client
        .execute(
            "UPDATE reports SET notes = (SELECT string_agg(md5(random()::text), '') \
                                         FROM generate_series(1, 3000)), \
                                raw = jsonb_build_object('samples', (SELECT jsonb_agg(random()) \
                                         FROM generate_series(1, 5000))) WHERE id = $1",
            &[&report],
        )
        .await
        .unwrap();
    source
        .client
        .execute(
            "UPDATE reports SET status = 'amended' WHERE id = $1",
            &[&report],
        )
        .await
        .unwrap();
    rig.assert_verified().await;
    let stored = rig
        .store
        .collection::<Document>("reports")
        .find_one(doc! { "_id": report.to_string() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("status").unwrap(), ("amended"));
    assert_eq!(stored.get_str("notes").unwrap().len(), 96_000);
    assert!(stored.get_str("raw").unwrap().len() > 50_000);
    daemon.stop().await;
}
