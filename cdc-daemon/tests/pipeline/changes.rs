//! Inserts, updates, deletes and truncates of every table reach the store; updates that leave
//! TOASTed values out keep them.

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
    let stored = rig.stored("reports", report).await;
    assert_eq!(stored.get_str("status").unwrap(), ("amended"));
    assert_eq!(stored.get_str("notes").unwrap().len(), 96_000);
    assert!(stored.get_str("raw").unwrap().len() > 50_000);
    daemon.stop().await;
}

#[tokio::test]
async fn updates_beside_toasted_names_keep_the_names_and_apply_the_rest() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Toast Names").await;
    let report = source.checkup(patient, 1).await[0];
    // Random hex barely compresses: a few KB of it make the row too large to keep inline, so
    // PostgreSQL stores these values out of line (the clinic name and device label stay under
    // the 2,704 bytes their unique indexes take).
    let random_hex = |md5s: u32| {
        format!("(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, {md5s}))")
    };
    source
        .client
        .batch_execute(&format!(
            "UPDATE clinics SET name = {indexed} WHERE id = '{clinic_id}';
             UPDATE devices SET label = {indexed} WHERE id = '{device_id}';
             UPDATE patient_clinics SET external_ref = {name} WHERE patient_id = '{patient}';
             UPDATE patients SET full_name = {name} WHERE id = '{patient}';
             UPDATE measurements SET display_name = {name}, unit = {name}
             WHERE report_id = '{report}' AND code = '8480-6';",
            indexed = random_hex(80),
            name = random_hex(100),
            clinic_id = source.clinic,
            device_id = source.device,
        ))
        .await
        .unwrap();
    for table in [
        "clinics",
        "devices",
        "patient_clinics",
        "patients",
        "measurements",
    ] {
        let toasted: i64 = source
            .client
            .query_one(
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = $1::text::regclass",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert!(toasted > 0, "{table} stored nothing out of line");
    }
    let clinic_name: String = source
        .client
        .query_one("SELECT name FROM clinics WHERE id = $1", &[&source.clinic])
        .await
        .unwrap()
        .get(0);
    let device_label: String = source
        .client
        .query_one("SELECT label FROM devices WHERE id = $1", &[&source.device])
        .await
        .unwrap()
        .get(0);
    let record_number: String = source
        .client
        .query_one(
            "SELECT external_ref FROM patient_clinics WHERE patient_id = $1",
            &[&patient],
        )
        .await
        .unwrap()
        .get(0);
    let full_name: String = source
        .client
        .query_one("SELECT full_name FROM patients WHERE id = $1", &[&patient])
        .await
        .unwrap()
        .get(0);
    let names = source
        .client
        .query_one(
            "SELECT display_name, unit FROM measurements WHERE report_id = $1 AND code = '8480-6'",
            &[&report],
        )
        .await
        .unwrap();
    let (display_name, unit): (String, String) = (names.get(0), names.get(1));
    rig.caught_up().await;

    // Updates of other columns: the TOASTed values come as unchanged TOAST.
    source
        .client
        .batch_execute(&format!(
            "UPDATE clinics SET updated_at = now() + interval '1 second' WHERE id = '{clinic_id}';
             UPDATE devices SET created_at = created_at - interval '1 day' WHERE id = '{device_id}';
             UPDATE patient_clinics SET updated_at = now() + interval '1 second'
             WHERE patient_id = '{patient}';
             UPDATE patients SET birth_date = '1985-12-11' WHERE id = '{patient}';
             UPDATE measurements SET value = 99 WHERE report_id = '{report}' AND code = '8480-6';",
            clinic_id = source.clinic,
            device_id = source.device,
        ))
        .await
        .unwrap();
    rig.assert_verified().await;

    let stored = rig.stored("reports", report).await;
    let checkup = stored.get_document("checkup").unwrap();
    assert_eq!(checkup.get_str("clinic_name").unwrap(), clinic_name);
    assert_eq!(checkup.get_str("device_label").unwrap(), device_label);
    assert_eq!(
        checkup.get_str("clinic_record_number").unwrap(),
        record_number
    );
    let embedded = stored.get_document("patient").unwrap();
    assert_eq!(embedded.get_str("full_name").unwrap(), full_name);
    assert_eq!(embedded.get_str("birth_date").unwrap(), "1985-12-11");
    let systolic = stored
        .get_document("measurements")
        .unwrap()
        .get_document("8480-6")
        .unwrap();
    assert_eq!(systolic.get_f64("value").unwrap(), 99.0);
    assert_eq!(systolic.get_str("name").unwrap(), display_name);
    assert_eq!(systolic.get_str("unit").unwrap(), unit);
    let lookup = rig.stored(read_model::LOOKUP_CLINICS, source.clinic).await;
    assert_eq!(lookup.get_str("name").unwrap(), clinic_name);
    let summary = rig.stored("patients", patient).await;
    assert_eq!(summary.get_str("full_name").unwrap(), full_name);
    assert_eq!(summary.get_str("birth_date").unwrap(), "1985-12-11");
    assert_eq!(rig.count(read_model::DEAD_LETTERS).await, 0);
    daemon.stop().await;
}

#[tokio::test]
async fn an_update_of_a_measurement_whose_code_is_toasted_is_applied() {
    let rig = Rig::new().await;
    let daemon = rig.start().await;
    let source = Source::new(&rig).await;
    let patient = source.patient("Toast Code").await;
    let report = source.checkup(patient, 1).await[0];
    // A code of random hex long enough to be stored out of line (its primary key index still
    // takes it): an update names the row by the old key PostgreSQL logs for it.
    let code: String = source
        .client
        .query_one(
            "INSERT INTO measurements VALUES ($1, (SELECT string_agg(md5(random()::text), '') \
                                                    FROM generate_series(1, 80)), \
                                              'Long code', 5, 'u', NULL, NULL, NULL) \
             RETURNING code",
            &[&report],
        )
        .await
        .unwrap()
        .get(0);
    let toasted: i64 = source
        .client
        .query_one(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'measurements'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(toasted > 0, "the code is not stored out of line");
    source
        .client
        .execute(
            "UPDATE measurements SET value = 6 WHERE report_id = $1 AND code = $2",
            &[&report, &code],
        )
        .await
        .unwrap();
    rig.assert_verified().await;
    let stored = rig.stored("reports", report).await;
    let measurement = stored
        .get_document("measurements")
        .unwrap()
        .get_document(&code)
        .unwrap();
    assert_eq!(measurement.get_f64("value").unwrap(), 6.0);
    assert_eq!(rig.count(read_model::DEAD_LETTERS).await, 0);
    daemon.stop().await;
}
