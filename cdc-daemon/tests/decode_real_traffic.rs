//! The decoder on pgoutput bytes that a real PostgreSQL wrote: one session of the project's
//! tables (inserts, a TOASTed column left unchanged by an update, a delete by key, a truncate, a
//! schema change mid-stream, a logical message), read through a `pgoutput` slot with
//! `pg_logical_slot_peek_binary_changes`.
//!
//! The same session is kept as `tests/fixtures/pgoutput-session.bin` (for each message a
//! big-endian `u32` length, then its bytes) for benches and the fuzz corpus; run with
//! `CAPTURE_PGOUTPUT_FIXTURE=1` to capture it again.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use cdc_daemon::decode::relations::{Row, row};
use cdc_daemon::decode::values::Value;
use cdc_daemon::decode::{Message, OldTuple, Relation, decode_bytes};
use devstack::TestContext;
use time::macros::{date, datetime};
use uuid::{Uuid, uuid};

const CLINIC: Uuid = uuid!("6d1f0c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f");
const DEVICE: Uuid = uuid!("7e2a1d2f-3c4b-4d6e-9f0a-1b2c3d4e5f60");
const PATIENT: Uuid = uuid!("8f3b2e30-4d5c-4e7f-a01b-2c3d4e5f6071");
const SECOND_PATIENT: Uuid = uuid!("9a4c3f41-5e6d-4f80-b12c-3d4e5f607182");
const CHECKUP: Uuid = uuid!("0b5d4a52-6f7e-4091-823d-4e5f60718293");
const REPORT: Uuid = uuid!("1c6e5b63-7a8f-41a2-934e-5f60718293a4");

/// The message kinds the session produces, in order. PostgreSQL 15 skips transactions with
/// nothing published (the `ALTER TABLE`), so they leave no Begin/Commit pair. `TRUNCATE` gives
/// the table a new file, which invalidates pgoutput's cache entry, so the unchanged Relation is
/// sent again before the Truncate.
const EXPECTED_KINDS: &[&str] = &[
    "begin", "relation", "insert", "commit", // clinic
    "begin", "relation", "insert", "commit", // device
    "begin", "relation", "insert", "commit", // patient
    "begin", "relation", "insert", "commit", // checkup
    "begin", "relation", "insert", "commit", // report with TOASTed notes
    "begin", "relation", "insert", "insert", "commit", // two measurements
    "begin", "update", "commit", // report status only
    "begin", "update", "commit", // patient phone
    "begin", "delete", "commit", // one measurement
    "begin", "relation", "truncate", "commit", // measurements
    "begin", "relation", "insert", "commit", // patient after ADD COLUMN nickname
    "begin", "message", "commit", // pg_logical_emit_message
];

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pgoutput-session.bin")
}

/// About 12 KB of letters from a fixed pseudo-random sequence: long enough to be TOASTed, too
/// irregular for pglz to compress under the TOAST threshold.
fn long_notes() -> String {
    let mut state: u32 = 0x2545_F491;
    (0..12_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(b'a' + u8::try_from(state % 26).unwrap())
        })
        .collect()
}

/// Runs the session in a fresh database and returns the raw pgoutput messages.
async fn capture_session() -> Vec<Bytes> {
    let ctx = TestContext::new()
        .await
        .expect("the test stack should start");
    let client = ctx.postgres().await.unwrap();
    let slot = ctx.unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();

    let notes = long_notes();
    // Each statement on its own: one simple query with several would be one transaction.
    let statements: &[(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)])] = &[
        (
            "INSERT INTO clinics (id, name) VALUES ($1, 'North Clinic')",
            &[&CLINIC],
        ),
        (
            "INSERT INTO devices (id, clinic_id, label, token_sha256) \
             VALUES ($1, $2, 'tablet-1', sha256('secret token'))",
            &[&DEVICE, &CLINIC],
        ),
        (
            "INSERT INTO patients (id, external_ref, full_name, birth_date, sex) \
             VALUES ($1, 'MRN-1', 'Ada Lovelace', '1815-12-10', 'female')",
            &[&PATIENT],
        ),
        (
            "INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at) \
             VALUES ($1, $2, $3, $4, '2024-05-06 07:08:09.123456+00')",
            &[&CHECKUP, &PATIENT, &CLINIC, &DEVICE],
        ),
        (
            "INSERT INTO reports (id, checkup_id, patient_id, instrument_type, \
             instrument_serial, taken_at, notes, raw) \
             VALUES ($1, $2, $3, 'thermometer', 'SN-1', '2024-05-06 07:10:00+02', $4, \
             '{\"readings\": [36.6], \"cuff\": null}')",
            &[&REPORT, &CHECKUP, &PATIENT, &notes],
        ),
        (
            "INSERT INTO measurements (report_id, code, display_name, value, unit, \
             reference_low, reference_high, flag) VALUES \
             ($1, '8310-5', 'Body temperature', 36.6, 'Cel', 36.1, 37.2, 'N'), \
             ($1, '8480-6', 'Systolic blood pressure', 120, 'mm[Hg]', NULL, NULL, NULL)",
            &[&REPORT],
        ),
        (
            "UPDATE reports SET status = 'amended' WHERE id = $1",
            &[&REPORT],
        ),
        (
            "UPDATE patients SET phone = '+44 20 7946 0000' WHERE id = $1",
            &[&PATIENT],
        ),
        (
            "DELETE FROM measurements WHERE report_id = $1 AND code = '8480-6'",
            &[&REPORT],
        ),
        ("TRUNCATE measurements", &[]),
        ("ALTER TABLE patients ADD COLUMN nickname text", &[]),
        (
            "INSERT INTO patients (id, external_ref, full_name, birth_date, sex, nickname) \
             VALUES ($1, 'MRN-2', 'Charles Babbage', '1791-12-26', 'male', 'Charlie')",
            &[&SECOND_PATIENT],
        ),
        (
            "SELECT pg_logical_emit_message(true, 'myhealth', 'hello')",
            &[],
        ),
    ];
    for (statement, params) in statements {
        client
            .execute(*statement, params)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }

    // The SQL interface renders values with this session's settings, the walsender with the
    // daemon's: make them the same.
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'")
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', 'myhealth_cdc', 'messages', 'true')",
            &[&slot],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0)))
        .collect()
}

fn decode_all(raw: &[Bytes]) -> Vec<Message> {
    raw.iter()
        .enumerate()
        .map(|(index, bytes)| {
            decode_bytes(bytes).unwrap_or_else(|error| panic!("message {index}: {error}"))
        })
        .collect()
}

fn kinds(messages: &[Message]) -> Vec<&'static str> {
    messages.iter().map(Message::kind).collect()
}

/// Builds the rows of every change with the latest relation of its table before it, each
/// labelled with its message kind and table.
fn rows(messages: &[Message]) -> Vec<(&'static str, String, Row<'_>)> {
    let mut relations = HashMap::new();
    let mut rows = Vec::new();
    for message in messages {
        let (relation_id, tuple) = match message {
            Message::Relation(relation) => {
                relations.insert(relation.id, relation);
                continue;
            }
            Message::Insert(insert) => (insert.relation_id, &insert.new),
            Message::Update(update) => (update.relation_id, &update.new),
            Message::Delete(delete) => (delete.relation_id, delete.old.tuple()),
            _ => continue,
        };
        let relation = relations
            .get(&relation_id)
            .expect("a relation precedes its changes");
        let row = row(relation, tuple).unwrap_or_else(|error| panic!("{error}: {error:?}"));
        rows.push((message.kind(), relation.name.clone(), row));
    }
    rows
}

fn relations<'a>(messages: &'a [Message], name: &str) -> Vec<&'a Relation> {
    messages
        .iter()
        .filter_map(|message| match message {
            Message::Relation(relation) if relation.name == name => Some(relation),
            _ => None,
        })
        .collect()
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn numeric(value: &str) -> Value {
    Value::Numeric(value.to_owned())
}

#[tokio::test]
async fn decode_a_real_pgoutput_session() {
    let raw = capture_session().await;
    let messages = decode_all(&raw);
    assert_eq!(kinds(&messages), EXPECTED_KINDS);
    let rows = rows(&messages);
    let find = |kind: &str, table: &str| -> Vec<&Row<'_>> {
        rows.iter()
            .filter(|(k, t, _)| *k == kind && t == table)
            .map(|(_, _, row)| row)
            .collect()
    };

    // Devices are published without their token hash.
    let devices = relations(&messages, "devices");
    let device_columns: Vec<&str> = devices[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        device_columns,
        ["id", "clinic_id", "label", "created_at", "revoked_at"]
    );
    let device = find("insert", "devices")[0];
    assert_eq!(device.get("id"), Some(&Value::Uuid(DEVICE)));
    assert_eq!(device.get("token_sha256"), None);
    assert_eq!(device.get("revoked_at"), Some(&Value::Null));
    let Some(Value::TimestampTz(created_at)) = device.get("created_at") else {
        panic!("created_at is not a timestamptz: {device:?}");
    };
    assert!(created_at.offset().is_utc(), "{created_at}");

    let patient = find("insert", "patients")[0];
    assert_eq!(
        patient.get("birth_date"),
        Some(&Value::Date(date!(1815 - 12 - 10)))
    );
    assert_eq!(patient.get("full_name"), Some(&text("Ada Lovelace")));
    assert_eq!(patient.get("phone"), Some(&Value::Null));

    let checkup = find("insert", "checkups")[0];
    assert_eq!(
        checkup.get("started_at"),
        Some(&Value::TimestampTz(
            datetime!(2024-05-06 07:08:09.123456 UTC)
        ))
    );

    // A TOASTed value is sent in full when the row is inserted...
    let report = find("insert", "reports")[0];
    assert_eq!(report.get("notes"), Some(&text(&long_notes())));
    assert_eq!(
        report.get("taken_at"),
        Some(&Value::TimestampTz(datetime!(2024-05-06 05:10:00 UTC)))
    );
    let Some(Value::Json(raw_json)) = report.get("raw") else {
        panic!("raw is not json: {report:?}");
    };
    let raw_json: serde_json::Value = serde_json::from_str(raw_json).unwrap();
    assert_eq!(
        raw_json,
        serde_json::json!({"readings": [36.6], "cuff": null})
    );

    let measurements = find("insert", "measurements");
    assert_eq!(measurements[0].get("value"), Some(&numeric("36.6")));
    assert_eq!(measurements[0].get("reference_low"), Some(&numeric("36.1")));
    assert_eq!(measurements[1].get("value"), Some(&numeric("120")));
    assert_eq!(measurements[1].get("flag"), Some(&Value::Null));

    // ...and left out, not nulled, by an update that did not touch it.
    let updated_report = find("update", "reports")[0];
    assert_eq!(updated_report.get("notes"), None);
    assert_eq!(updated_report.get("status"), Some(&text("amended")));
    assert_eq!(updated_report.len(), report.len() - 1);
    let update = messages
        .iter()
        .find_map(|message| match message {
            Message::Update(update) => Some(update),
            _ => None,
        })
        .unwrap();
    assert_eq!(update.old, None, "the key did not change, so no old tuple");

    let updated_patient = find("update", "patients")[0];
    assert_eq!(
        updated_patient.get("phone"),
        Some(&text("+44 20 7946 0000"))
    );

    // A delete carries the replica identity (the primary key); other columns are null.
    let delete = messages
        .iter()
        .find_map(|message| match message {
            Message::Delete(delete) => Some(delete),
            _ => None,
        })
        .unwrap();
    assert!(matches!(delete.old, OldTuple::Key(_)), "{delete:?}");
    let deleted = find("delete", "measurements")[0];
    assert_eq!(deleted.get("report_id"), Some(&Value::Uuid(REPORT)));
    assert_eq!(deleted.get("code"), Some(&text("8480-6")));
    assert_eq!(deleted.get("value"), Some(&Value::Null));

    let measurements_relations = relations(&messages, "measurements");
    assert_eq!(
        measurements_relations.len(),
        2,
        "sent again with the truncate"
    );
    assert_eq!(measurements_relations[0], measurements_relations[1]);
    let measurements_relation = measurements_relations[0];
    let truncate = messages
        .iter()
        .find_map(|message| match message {
            Message::Truncate(truncate) => Some(truncate),
            _ => None,
        })
        .unwrap();
    assert_eq!(truncate.relation_ids, [measurements_relation.id]);
    assert!(!truncate.cascade && !truncate.restart_identity);

    // The schema change comes as a second Relation for the same table.
    let patients = relations(&messages, "patients");
    assert_eq!(patients.len(), 2);
    assert_eq!(patients[0].id, patients[1].id);
    assert_eq!(patients[1].columns.len(), patients[0].columns.len() + 1);
    assert_eq!(patients[1].columns.last().unwrap().name, "nickname");
    let second = find("insert", "patients")[1];
    assert_eq!(second.get("id"), Some(&Value::Uuid(SECOND_PATIENT)));
    assert_eq!(second.get("nickname"), Some(&text("Charlie")));

    let Some(Message::Message(logical)) = messages.iter().find(|m| m.kind() == "message") else {
        panic!("no logical message");
    };
    assert!(logical.transactional);
    assert_eq!(logical.prefix, "myhealth");
    assert_eq!(logical.content.as_ref(), b"hello");
}

fn write_fixture(raw: &[Bytes]) {
    let mut file = Vec::new();
    for message in raw {
        file.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        file.extend_from_slice(message);
    }
    std::fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
    std::fs::write(fixture_path(), file).unwrap();
}

fn read_fixture() -> Vec<Bytes> {
    let file = Bytes::from(std::fs::read(fixture_path()).expect("the committed fixture"));
    let mut messages = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let len: [u8; 4] = file.get(at..at + 4).unwrap().try_into().unwrap();
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap();
        messages.push(file.slice(at + 4..at + 4 + len));
        at += 4 + len;
    }
    messages
}

#[tokio::test]
async fn decode_the_captured_pgoutput_fixture() {
    if std::env::var("CAPTURE_PGOUTPUT_FIXTURE").is_ok_and(|value| value == "1") {
        write_fixture(&capture_session().await);
    }
    let messages = decode_all(&read_fixture());
    assert_eq!(kinds(&messages), EXPECTED_KINDS);
    assert_eq!(rows(&messages).len(), 11);
}
