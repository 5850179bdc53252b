//! The harness and the source schema against real processes: a PostgreSQL cluster with
//! `wal_level=logical` and the MongoDB-compatible store.

#![allow(clippy::unwrap_used, missing_docs)]

use devstack::TestContext;
use mongodb::bson::{Document, doc};
use source_schema::PUBLICATION;

async fn context() -> TestContext {
    TestContext::new()
        .await
        .expect("the test stack should start")
}

async fn slots_of(ctx: &TestContext, database: &str) -> i64 {
    let admin = devstack::postgres::connect(ctx.stack().postgres.admin_url())
        .await
        .unwrap();
    admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn migrations_apply_twice_and_the_second_run_changes_nothing() {
    let ctx = context().await;
    let mut client = ctx.postgres().await.unwrap();
    // TestContext::new applied them once already.
    let applied_again = source_schema::migrate(&mut client).await.unwrap();
    assert!(applied_again.is_empty(), "re-run applied {applied_again:?}");

    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in [
        "checkups",
        "clinics",
        "devices",
        "measurements",
        "patient_changes",
        "patient_clinics",
        "patients",
        "reports",
        "uploads",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "missing table {table} in {tables:?}"
        );
    }
}

#[tokio::test]
async fn the_publication_lists_exactly_the_tables_the_daemon_reads() {
    let ctx = context().await;
    let client = ctx.postgres().await.unwrap();
    let published: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename",
            &[&PUBLICATION],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        published,
        [
            "checkups",
            "clinics",
            "devices",
            "measurements",
            "patient_clinics",
            "patients",
            "reports"
        ]
    );
    let device_columns: Vec<String> = client
        .query_one(
            "SELECT attnames::text[] FROM pg_publication_tables \
             WHERE pubname = $1 AND tablename = 'devices'",
            &[&PUBLICATION],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !device_columns.iter().any(|c| c == "token_sha256"),
        "{device_columns:?}"
    );
}

#[tokio::test]
async fn every_child_replica_identity_carries_its_parent_document_key() {
    let ctx = context().await;
    let client = ctx.postgres().await.unwrap();
    let identity = |table: &'static str| {
        let client = &client;
        async move {
            let columns: Vec<String> = client
                .query(
                    "SELECT a.attname FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = $1::text::regclass \
                       AND (i.indisreplident OR (i.indisprimary AND NOT EXISTS ( \
                            SELECT 1 FROM pg_index r WHERE r.indrelid = i.indrelid AND r.indisreplident))) \
                     ORDER BY a.attname",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            columns
        }
    };
    assert_eq!(identity("checkups").await, ["id", "patient_id"]);
    assert_eq!(identity("reports").await, ["id", "patient_id"]);
    assert_eq!(identity("measurements").await, ["code", "report_id"]);
    assert_eq!(
        identity("patient_clinics").await,
        ["clinic_id", "patient_id"]
    );
}

/// V5 on a database with history: every clinic with a checkup of a patient is linked to it
/// since its first checkup, with the record number stored so far; a patient without checkups
/// gets no link; nothing else changes.
#[tokio::test]
async fn the_clinic_links_migration_back_fills_links_from_existing_checkups() {
    let ctx = context().await;
    let mut client = ctx.postgres().await.unwrap();
    // Back to the schema before V5 (TestContext::new applied every migration; the later ones
    // only create or replace functions, so they apply again as they stand).
    client
        .batch_execute(
            "DROP TABLE patient_changes, patient_clinics; \
             DELETE FROM refinery_schema_history WHERE version >= 5",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO clinics (id, name) VALUES \
                 ('00000000-0000-0000-0000-00000000000a', 'North'), \
                 ('00000000-0000-0000-0000-00000000000b', 'South'); \
             INSERT INTO devices (id, clinic_id, label, token_sha256) VALUES \
                 ('00000000-0000-0000-0000-0000000000da', '00000000-0000-0000-0000-00000000000a', \
                  'n', decode(repeat('ab', 32), 'hex')), \
                 ('00000000-0000-0000-0000-0000000000db', '00000000-0000-0000-0000-00000000000b', \
                  's', decode(repeat('cd', 32), 'hex')); \
             INSERT INTO patients (id, external_ref, full_name, birth_date, sex) VALUES \
                 ('00000000-0000-0000-0000-0000000000f1', 'MRN-1', 'Ada', '1985-12-10', 'female'), \
                 ('00000000-0000-0000-0000-0000000000f2', 'MRN-2', 'Grace', '1906-12-09', 'female'), \
                 ('00000000-0000-0000-0000-0000000000f3', 'MRN-3', 'Mary', '1980-12-26', 'female'); \
             INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at, created_at) \
             VALUES \
                 (gen_random_uuid(), '00000000-0000-0000-0000-0000000000f1', \
                  '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000da', \
                  now(), '2025-03-01T00:00:00Z'), \
                 (gen_random_uuid(), '00000000-0000-0000-0000-0000000000f1', \
                  '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000da', \
                  now(), '2025-01-01T00:00:00Z'), \
                 (gen_random_uuid(), '00000000-0000-0000-0000-0000000000f1', \
                  '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-0000000000db', \
                  now(), '2025-02-01T00:00:00Z'), \
                 (gen_random_uuid(), '00000000-0000-0000-0000-0000000000f2', \
                  '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-0000000000db', \
                  now(), '2025-04-01T00:00:00Z')",
        )
        .await
        .unwrap();

    let applied = source_schema::migrate(&mut client).await.unwrap();
    assert_eq!(applied, ["V5__patient_clinics", "V6__store_upload"]);
    let links: Vec<(String, String, String, String)> = client
        .query(
            "SELECT p.full_name, c.name, l.external_ref, \
                    to_char(l.linked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') \
             FROM patient_clinics l JOIN patients p ON p.id = l.patient_id \
             JOIN clinics c ON c.id = l.clinic_id ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let expected = [
        ("Ada", "North", "MRN-1", "2025-01-01"),
        ("Ada", "South", "MRN-1", "2025-02-01"),
        ("Grace", "South", "MRN-2", "2025-04-01"),
    ];
    assert_eq!(
        links,
        expected.map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
    );
    let untouched: i64 = client
        .query_one(
            "SELECT count(*) FROM patients WHERE external_ref IN ('MRN-1', 'MRN-2', 'MRN-3')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(untouched, 3);
}

#[tokio::test]
async fn a_row_inserted_into_a_published_table_is_seen_through_a_pgoutput_slot() {
    let ctx = context().await;
    let client = ctx.postgres().await.unwrap();
    let slot = ctx.unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO clinics (name) VALUES ('Seen Through The Slot')",
            &[],
        )
        .await
        .unwrap();

    let messages: Vec<Vec<u8>> = client
        .query(
            "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', $2)",
            &[&slot, &PUBLICATION],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let kinds: Vec<char> = messages.iter().map(|m| char::from(m[0])).collect();
    assert_eq!(
        kinds,
        ['B', 'R', 'I', 'C'],
        "Begin, Relation, Insert, Commit"
    );
    let relation = String::from_utf8_lossy(&messages[1]);
    assert!(relation.contains("clinics"), "{relation}");
    let insert = String::from_utf8_lossy(&messages[2]);
    assert!(insert.contains("Seen Through The Slot"), "{insert}");
    // The slot is left for the context to drop.
}

#[tokio::test]
async fn the_store_upserts_and_reads_a_document() {
    let ctx = context().await;
    let reports = ctx.store().collection::<Document>("reports");
    for notes in ["first", "second"] {
        reports
            .update_one(doc! { "_id": "r-1" }, doc! { "$set": { "notes": notes } })
            .upsert(true)
            .await
            .unwrap();
    }
    let stored = reports
        .find_one(doc! { "_id": "r-1" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("notes").unwrap(), "second");
    assert_eq!(reports.count_documents(doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn tests_running_at_the_same_time_do_not_see_each_others_data() {
    let (a, b) = tokio::join!(context(), context());
    assert_ne!(a.database, b.database);
    for ctx in [&a, &b] {
        let client = ctx.postgres().await.unwrap();
        // The same unique clinic name in both: it would collide in a shared database.
        client
            .execute("INSERT INTO clinics (name) VALUES ('Same Name')", &[])
            .await
            .unwrap();
        ctx.store()
            .collection::<Document>("patients")
            .insert_one(doc! { "_id": "same-id", "database": &ctx.database })
            .await
            .unwrap();
    }
    for ctx in [&a, &b] {
        let client = ctx.postgres().await.unwrap();
        let clinics: i64 = client
            .query_one("SELECT count(*) FROM clinics", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(clinics, 1);
        let patients = ctx.store().collection::<Document>("patients");
        let only = patients.find_one(doc! {}).await.unwrap().unwrap();
        assert_eq!(only.get_str("database").unwrap(), ctx.database);
        assert_eq!(patients.count_documents(doc! {}).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn slots_and_databases_are_dropped_when_a_test_ends_even_by_panic() {
    let observer = context().await;
    let (database, store_database) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                let ctx = context().await;
                let client = ctx.postgres().await.unwrap();
                let slot = ctx.unique_name("slot");
                client
                    .execute(
                        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                        &[&slot],
                    )
                    .await
                    .unwrap();
                ctx.store()
                    .collection::<Document>("reports")
                    .insert_one(doc! { "_id": 1 })
                    .await
                    .unwrap();
                tx.send((ctx.database.clone(), ctx.database.clone()))
                    .unwrap();
                panic!("the test fails while holding a slot");
            })
        }));
        assert!(outcome.is_err());
        rx.recv().unwrap()
    })
    .join()
    .unwrap();

    assert_eq!(
        slots_of(&observer, &database).await,
        0,
        "slot of {database} leaked"
    );
    let admin = devstack::postgres::connect(observer.stack().postgres.admin_url())
        .await
        .unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .unwrap();
    assert!(exists.is_none(), "database {database} was not dropped");
    let names = observer.mongo.list_database_names().await.unwrap();
    assert!(
        !names.contains(&store_database),
        "store database {store_database} was not dropped"
    );
}

#[tokio::test]
async fn each_role_is_refused_outside_its_scope() {
    let ctx = context().await;
    let client = ctx.postgres().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO clinics (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'C'); \
             INSERT INTO devices (clinic_id, label, token_sha256) \
             VALUES ('00000000-0000-0000-0000-000000000001', 'tablet', decode(repeat('ab', 32), 'hex'))",
        )
        .await
        .unwrap();
    let as_role = |role: &'static str, sql: &'static str| {
        let client = &client;
        async move {
            let outcome = client
                .batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}; {sql}; COMMIT"))
                .await;
            if outcome.is_err() {
                client.batch_execute("ROLLBACK").await.unwrap();
            }
            outcome.map_err(|error| error.code().cloned())
        }
    };
    let denied = Err(Some(
        tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
    ));

    // The daemon's role reads what is published, never a token hash, and writes nothing.
    assert!(
        as_role("myhealth_replication", "SELECT id, label FROM devices")
            .await
            .is_ok()
    );
    assert_eq!(
        as_role("myhealth_replication", "SELECT token_sha256 FROM devices").await,
        denied
    );
    assert_eq!(
        as_role("myhealth_replication", "DELETE FROM reports").await,
        denied
    );
    assert_eq!(
        as_role("myhealth_replication", "SELECT * FROM uploads").await,
        denied
    );
    // The ingest role writes reports but cannot create clinics or devices.
    assert!(
        as_role("myhealth_ingest", "DELETE FROM reports")
            .await
            .is_ok()
    );
    assert_eq!(
        as_role("myhealth_ingest", "INSERT INTO clinics (name) VALUES ('x')").await,
        denied
    );
    assert_eq!(
        as_role("myhealth_ingest", "UPDATE devices SET revoked_at = now()").await,
        denied
    );
    // The read-only role reads and never writes.
    assert!(
        as_role("myhealth_readonly", "SELECT count(*) FROM measurements")
            .await
            .is_ok()
    );
    assert_eq!(
        as_role("myhealth_readonly", "DELETE FROM uploads").await,
        denied
    );
}

#[tokio::test]
async fn the_postgresql_backend_gets_gin_indexes_that_serve_ferretdbs_filters() {
    use devstack::ferretdb::{Backend, Store};
    // A store of its own: under `devstack test` the shared one comes from MONGODB_URI.
    let store = Store::start_ferretdb_on(Backend::Postgresql, None)
        .await
        .unwrap();
    let client = mongodb::Client::with_uri_str(store.uri()).await.unwrap();
    let reports = client.database("tuned").collection::<Document>("reports");
    reports
        .insert_one(doc! { "_id": "r-1", "patient_id": "p-1", "checkup": { "clinic_id": "c" } })
        .await
        .unwrap();
    for keys in [
        doc! { "patient_id": 1, "taken_at": -1, "_id": -1 },
        doc! { "checkup.clinic_id": 1 },
    ] {
        reports
            .create_index(mongodb::IndexModel::builder().keys(keys).build())
            .await
            .unwrap();
    }

    let backend = store.cluster().unwrap().connect("ferretdb").await.unwrap();
    let gin: Vec<String> = backend
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'tuned' \
             AND tablename LIKE 'reports%' AND indexdef LIKE '%USING gin%' ORDER BY indexdef",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(gin.len(), 2, "{gin:?}");
    assert!(gin[0].contains("(_jsonb -> '_id'::text)"), "{gin:?}");
    assert!(gin[1].contains("(_jsonb -> 'patient_id'::text)"), "{gin:?}");
    assert!(
        gin.iter().all(|index| index.contains("fastupdate=off")),
        "{gin:?}"
    );

    // The filter FerretDB sends for `{_id: "r-1"}` can use the index.
    let table: String = backend
        .query_one(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'tuned' AND tablename LIKE 'reports%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    backend
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = backend
        .query(
            &format!(
                "EXPLAIN SELECT _jsonb FROM tuned.\"{table}\" WHERE _jsonb -> '_id' @> '\"r-1\"'"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter().any(|line| line.contains("Index Scan")),
        "{plan:?}"
    );
}
