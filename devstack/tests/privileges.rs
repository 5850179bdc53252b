//! Least privilege, proven by logging in as each service's login (`devstack::roles`) on a
//! migrated database: every statement outside the service's scope is refused by PostgreSQL with
//! `insufficient_privilege`, and what the service needs works.
//!
//! What each service runs is in its own tests, which connect with these same logins: the ingest
//! API's (`ingest-api/tests/api`), the daemon's (`cdc-daemon/tests/pipeline`).

#![allow(clippy::unwrap_used, missing_docs)]

use devstack::TestContext;
use devstack::roles::ServiceLogin;
use tokio_postgres::error::SqlState;

/// The token hashes of the fixture's two devices, of two clinics.
const NORTH_HASH: &str = "decode(repeat('ab', 32), 'hex')";
const SOUTH_HASH: &str = "decode(repeat('cd', 32), 'hex')";

/// A migrated database with two clinics, a device each, one patient (linked to North, with one
/// audit row), checkup, report, measurement and upload.
async fn fixture() -> TestContext {
    let ctx = TestContext::new().await.unwrap();
    let admin = ctx.postgres().await.unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO clinics (id, name) VALUES \
                 ('00000000-0000-0000-0000-00000000000a', 'North'), \
                 ('00000000-0000-0000-0000-00000000000b', 'South'); \
             INSERT INTO devices (id, clinic_id, label, token_sha256) VALUES \
                 ('00000000-0000-0000-0000-0000000000da', '00000000-0000-0000-0000-00000000000a', \
                  'north-1', {NORTH_HASH}), \
                 ('00000000-0000-0000-0000-0000000000db', '00000000-0000-0000-0000-00000000000b', \
                  'south-1', {SOUTH_HASH}); \
             INSERT INTO patients (id, external_ref, full_name, birth_date, sex) VALUES \
                 ('00000000-0000-0000-0000-0000000000f1', 'MRN-1', 'Ada', '1985-12-10', 'female'); \
             INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at) VALUES \
                 ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000f1', \
                  '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000da', \
                  now()); \
             INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial, \
                                  taken_at) VALUES \
                 ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000c1', \
                  '00000000-0000-0000-0000-0000000000f1', 'thermometer', 'T-1', now()); \
             INSERT INTO measurements (report_id, code, display_name, value, unit) VALUES \
                 ('00000000-0000-0000-0000-0000000000e1', '8310-5', 'Body temperature', 37, 'Cel'); \
             INSERT INTO uploads (id, device_id, body_sha256, result) VALUES \
                 ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000da', \
                  {NORTH_HASH}, '{{}}'); \
             INSERT INTO patient_clinics (patient_id, clinic_id, external_ref) VALUES \
                 ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-00000000000a', \
                  'MRN-1'); \
             INSERT INTO patient_changes (patient_id, clinic_id, device_id, upload_id, action, \
                                          old_values, new_values) VALUES \
                 ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-00000000000a', \
                  '00000000-0000-0000-0000-0000000000da', '00000000-0000-0000-0000-0000000000a1', \
                  'created', '{{}}', '{{\"full_name\": \"Ada\"}}')"
        ))
        .await
        .unwrap();
    ctx
}

async fn login(ctx: &TestContext, login: ServiceLogin) -> tokio_postgres::Client {
    devstack::postgres::connect(&ctx.url_as(login))
        .await
        .unwrap()
}

/// Runs each statement in a transaction that is rolled back, and asserts PostgreSQL refused it
/// for lack of privilege.
async fn assert_refused(client: &tokio_postgres::Client, who: &str, statements: &[&str]) {
    for statement in statements {
        let outcome = client
            .batch_execute(&format!("BEGIN; {statement}; ROLLBACK"))
            .await;
        let code = outcome.as_ref().err().and_then(|error| error.code());
        assert_eq!(
            code,
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{who} should be refused `{statement}`, got {outcome:?}"
        );
        client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Runs each statement in a transaction that is rolled back, and asserts it worked.
async fn assert_allowed(client: &tokio_postgres::Client, who: &str, statements: &[&str]) {
    for statement in statements {
        let outcome = client
            .batch_execute(&format!("BEGIN; {statement}; ROLLBACK"))
            .await;
        assert!(
            outcome.is_ok(),
            "{who} should be allowed `{statement}`: {outcome:?}"
        );
    }
}

/// A call of `store_upload` (V6) with every argument `null`, whatever its parameters are today.
async fn store_upload_call(ctx: &TestContext) -> String {
    let admin = ctx.postgres().await.unwrap();
    let arguments: i16 = admin
        .query_one(
            "SELECT pronargs FROM pg_proc WHERE proname = 'store_upload'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let nulls = vec!["NULL"; usize::try_from(arguments).unwrap()];
    format!("SELECT store_upload({})", nulls.join(", "))
}

/// Asserts PostgreSQL refused `who` the call of `store_upload` itself (its EXECUTE privilege),
/// not a statement inside it: the function runs with its caller's rights, so a login allowed
/// to call it would still be refused the tables it writes, and that must not pass for this.
async fn assert_store_upload_refused(client: &tokio_postgres::Client, who: &str, call: &str) {
    let outcome = client
        .batch_execute(&format!("BEGIN; {call}; ROLLBACK"))
        .await;
    let error = outcome.as_ref().err().and_then(|error| error.as_db_error());
    assert_eq!(
        error.map(|error| (error.code(), error.message())),
        Some((
            &SqlState::INSUFFICIENT_PRIVILEGE,
            "permission denied for function store_upload"
        )),
        "{who} should be refused calling store_upload, got {outcome:?}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// What no service login may do: change the schema, empty tables, read the migration history,
/// take over replication or other roles.
const NOBODY: &[&str] = &[
    "DROP TABLE measurements",
    "TRUNCATE reports CASCADE",
    "ALTER TABLE patients ADD COLUMN x text",
    "CREATE TABLE stash (x text)",
    "SELECT * FROM refinery_schema_history",
    "ALTER PUBLICATION myhealth_cdc ADD TABLE uploads",
    "CREATE PUBLICATION mine FOR TABLE patients",
    "SELECT token_sha256 FROM devices",
    "INSERT INTO clinics (name) VALUES ('x')",
    "INSERT INTO devices (clinic_id, label, token_sha256) \
     VALUES ('00000000-0000-0000-0000-00000000000a', 'rogue', decode(repeat('ee', 32), 'hex'))",
    "UPDATE devices SET revoked_at = NULL",
    "DELETE FROM devices",
    "GRANT myhealth_ingest TO myhealth_support",
];

#[tokio::test]
async fn the_ingest_login_reaches_only_what_the_ingest_api_runs() {
    let ctx = fixture().await;
    let ingest = login(&ctx, ServiceLogin::Ingest).await;
    assert_refused(&ingest, "ingest", NOBODY).await;
    assert_refused(
        &ingest,
        "ingest",
        &[
            "DELETE FROM patients",
            "DELETE FROM checkups",
            "UPDATE checkups SET completed_at = now()",
            "DELETE FROM uploads",
            "SELECT pg_create_logical_replication_slot('stolen', 'pgoutput')",
            // The audit trail is append-only, and links are never removed.
            "UPDATE patient_changes SET new_values = '{}'",
            "UPDATE patient_changes SET clinic_id = '00000000-0000-0000-0000-00000000000b'",
            "DELETE FROM patient_changes",
            "DELETE FROM patient_clinics",
        ],
    )
    .await;
    assert_allowed(
        &ingest,
        "ingest",
        &[
            "SELECT id, clinic_id, label, revoked_at FROM devices",
            "SELECT * FROM reports r JOIN measurements m ON m.report_id = r.id FOR UPDATE OF r",
            "UPDATE reports SET notes = 'x'",
            "DELETE FROM reports",
            "UPDATE patients SET full_name = 'Ada L.'",
            "INSERT INTO patient_clinics (patient_id, clinic_id, external_ref) VALUES \
             ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-00000000000b', 'S-1')",
            "UPDATE patient_clinics SET external_ref = 'MRN-2', updated_at = now()",
            "INSERT INTO patient_changes (patient_id, clinic_id, device_id, upload_id, action, \
                                          old_values, new_values) \
             SELECT patient_id, clinic_id, device_id, upload_id, 'updated', new_values, old_values \
             FROM patient_changes",
            "SELECT * FROM patient_changes",
            "UPDATE uploads SET commit_lsn = pg_current_wal_insert_lsn()",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT confirmed_flush_lsn FROM pg_replication_slots",
        ],
    )
    .await;

    // Only the ingest role may call store_upload (V6 revokes it from PUBLIC); called with nulls
    // it may fail on its arguments, but not for want of the privilege.
    let call = store_upload_call(&ctx).await;
    let outcome = ingest
        .batch_execute(&format!("BEGIN; {call}; ROLLBACK"))
        .await;
    assert_ne!(
        outcome.as_ref().err().and_then(|error| error.code()),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "ingest should be allowed to call store_upload: {outcome:?}"
    );
    ingest.batch_execute("ROLLBACK").await.unwrap();

    // Tablets are authenticated through a function that answers for the presented hash only:
    // the other clinic's device (and its hash) stays out of reach.
    let rows = ingest
        .query(
            &format!("SELECT id, clinic_id FROM device_by_token_sha256({NORTH_HASH})"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let clinic: uuid::Uuid = rows[0].get(1);
    assert_eq!(clinic.to_string(), "00000000-0000-0000-0000-00000000000a");
    let none = ingest
        .query(
            "SELECT id FROM device_by_token_sha256(decode(repeat('00', 32), 'hex'))",
            &[],
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn the_daemon_login_reads_the_published_columns_and_writes_nothing() {
    let ctx = fixture().await;
    let daemon = login(&ctx, ServiceLogin::Replication).await;
    assert_refused(&daemon, "daemon", NOBODY).await;
    let writes: Vec<String> = [
        "clinics",
        "patients",
        "patient_clinics",
        "checkups",
        "reports",
        "measurements",
    ]
    .iter()
    .flat_map(|table| {
        [
            format!("DELETE FROM {table}"),
            format!("INSERT INTO {table} SELECT * FROM {table}"),
        ]
    })
    .chain([
        "UPDATE patients SET full_name = 'Eve'".to_string(),
        "UPDATE reports SET status = 'entered-in-error'".to_string(),
        "UPDATE measurements SET value = 0".to_string(),
        "UPDATE checkups SET completed_at = now()".to_string(),
        "SELECT * FROM uploads".to_string(),
        "SELECT * FROM patient_changes".to_string(),
        "UPDATE patient_clinics SET external_ref = 'x'".to_string(),
        format!("SELECT * FROM device_by_token_sha256({NORTH_HASH})"),
    ])
    .collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    assert_refused(&daemon, "daemon", &writes).await;
    let call = store_upload_call(&ctx).await;
    assert_store_upload_refused(&daemon, "daemon", &call).await;
    assert_allowed(
        &daemon,
        "daemon",
        &[
            "SELECT * FROM clinics, patients, patient_clinics, checkups, reports, measurements",
            "SELECT id, clinic_id, label, created_at, revoked_at FROM devices",
            "SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')",
        ],
    )
    .await;
    let replication: bool = daemon
        .query_one(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(replication, "the daemon's login needs REPLICATION");
}

#[tokio::test]
async fn the_readonly_login_reads_everything_but_credentials_and_writes_nothing() {
    let ctx = fixture().await;
    let readonly = login(&ctx, ServiceLogin::Readonly).await;
    assert_refused(&readonly, "readonly", NOBODY).await;
    assert_refused(
        &readonly,
        "readonly",
        &[
            "DELETE FROM uploads",
            "UPDATE patients SET full_name = 'Eve'",
            "INSERT INTO measurements SELECT * FROM measurements",
            "DELETE FROM reports",
            "DELETE FROM patient_changes",
            "UPDATE patient_clinics SET external_ref = 'x'",
            "SELECT pg_create_logical_replication_slot('stolen', 'pgoutput')",
            &format!("SELECT * FROM device_by_token_sha256({SOUTH_HASH})"),
        ],
    )
    .await;
    let call = store_upload_call(&ctx).await;
    assert_store_upload_refused(&readonly, "readonly", &call).await;
    assert_allowed(
        &readonly,
        "readonly",
        &[
            "SELECT * FROM clinics, patients, checkups, reports, measurements, uploads",
            "SELECT * FROM patient_clinics, patient_changes",
            "SELECT id, clinic_id, label FROM devices",
        ],
    )
    .await;
}
