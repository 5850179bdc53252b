//! The store rules the daemon and the reports API rely on, checked on each store they may meet:
//! FerretDB 1.24 on its PostgreSQL backend (the harness default) and on its SQLite backend, and
//! the MongoDB server at `MONGODB_URI` when one is given. Each rule is named where the code
//! relies on it (`cdc-daemon/src/sink/store.rs`, `cdc-daemon/src/sink/limits.rs`,
//! `read-model/src/indexes.rs`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use devstack::ferretdb::{Backend, Store};
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Database};

/// The daemon's statements per command on FerretDB (`FERRETDB_STATEMENTS` in the daemon's sink).
const STATEMENTS: usize = 32;

/// How long a command may take before the test calls it stuck (FerretDB deadlocks rather than
/// failing when a command needs more pool connections than it has).
const STUCK: Duration = Duration::from_secs(60);

/// Runs `check` on a fresh database of each store: both FerretDB backends, each started for
/// this test, and `MONGODB_URI`'s server if set. The tests of this file run at once and share
/// that server, so each names its own database (`test`, made unique per process).
async fn on_every_store<F, Fut>(test: &str, check: F)
where
    F: Fn(Database, String) -> Fut,
    Fut: Future<Output = ()>,
{
    on_stores(test, &[Backend::Postgresql, Backend::Sqlite], check).await;
}

/// [`on_every_store`] with only `backends` of FerretDB (and `MONGODB_URI`'s server if set).
async fn on_stores<F, Fut>(test: &str, backends: &[Backend], check: F)
where
    F: Fn(Database, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stores = Vec::new();
    for &backend in backends {
        stores.push(Store::start_ferretdb_on(backend, None).await.unwrap());
    }
    if std::env::var("MONGODB_URI").is_ok_and(|uri| !uri.is_empty()) {
        stores.push(Store::from_env_or_start(None).await.unwrap());
    }
    for store in &stores {
        let client = Client::with_uri_str(store.uri()).await.unwrap();
        let name = format!("rules_{test}_{}", std::process::id());
        let database = client.database(&name);
        check(database.clone(), store.describe()).await;
        database.drop().await.unwrap();
    }
}

/// Runs `command` on a spawned task with a deadline (a driver future is never dropped
/// mid-flight: the task is left to finish on its own).
async fn run(database: &Database, command: Document, what: &str, store: &str) -> Document {
    let database = database.clone();
    let task = tokio::spawn(async move { database.run_command(command).await });
    match tokio::time::timeout(STUCK, task).await {
        Ok(reply) => reply.unwrap().unwrap(),
        Err(_) => panic!(
            "{what} on {store} did not complete in {} s",
            STUCK.as_secs()
        ),
    }
}

fn upserts(range: std::ops::Range<usize>, value: i64) -> Vec<Bson> {
    range
        .map(|id| {
            Bson::Document(doc! {
                "q": { "_id": format!("d-{id}") },
                "u": { "$set": { "value": value } },
                "upsert": true,
                "multi": false,
            })
        })
        .collect()
}

fn write_error_codes(reply: &Document) -> Vec<i32> {
    reply
        .get_array("writeErrors")
        .map(|errors| {
            errors
                .iter()
                .filter_map(|error| error.as_document()?.get_i32("code").ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn commands_of_32_statements_from_several_clients_at_once_complete() {
    // Not on the SQLite backend: there, four clients' commands at once did not all finish
    // within a minute (seen once in CI, on 2 loaded cores). The daemon sends one command at a
    // time, so it never meets that; the README says so where it offers the SQLite backend.
    on_stores(
        "concurrent",
        &[Backend::Postgresql],
        |database, store| async move {
            // Create the documents, then update them all at once from four clients: each statement
            // matches a document, which is when FerretDB holds a backend connection per statement
            // until the command ends.
            let clients = 4;
            for client in 0..clients {
                let range = client * STATEMENTS..(client + 1) * STATEMENTS;
                let command =
                    doc! { "update": "docs", "updates": upserts(range, 0), "ordered": true };
                run(&database, command, "an upsert command", &store).await;
            }
            for round in 1..=3_i64 {
                let tasks: Vec<_> = (0..clients)
                    .map(|client| {
                        let database = database.clone();
                        let store = store.clone();
                        let range = client * STATEMENTS..(client + 1) * STATEMENTS;
                        tokio::spawn(async move {
                            let command = doc! {
                                "update": "docs", "updates": upserts(range, round), "ordered": true,
                            };
                            run(&database, command, "concurrent update commands", &store).await
                        })
                    })
                    .collect();
                for task in tasks {
                    let reply = task.await.unwrap();
                    assert_eq!(
                        reply.get_i32("n").unwrap(),
                        STATEMENTS as i32,
                        "{store}: {reply}"
                    );
                    assert!(write_error_codes(&reply).is_empty(), "{store}: {reply}");
                }
            }
            let docs = database.collection::<Document>("docs");
            let updated = docs.count_documents(doc! { "value": 3_i64 }).await.unwrap();
            assert_eq!(updated, (clients * STATEMENTS) as u64, "{store}");
        },
    )
    .await;
}

#[tokio::test]
async fn an_insert_of_an_existing_id_is_a_write_error_11000_and_the_others_are_inserted() {
    on_every_store("insert", |database, store| async move {
        let docs = database.collection::<Document>("docs");
        docs.insert_one(doc! { "_id": "b", "value": "old" })
            .await
            .unwrap();
        let command = doc! {
            "insert": "docs",
            "documents": [
                { "_id": "a", "value": "new" },
                { "_id": "b", "value": "new" },
                { "_id": "c", "value": "new" },
            ],
            "ordered": false,
        };
        let reply = run(&database, command, "an insert", &store).await;
        assert_eq!(write_error_codes(&reply), [11000], "{store}: {reply}");
        let kept = docs.find_one(doc! { "_id": "b" }).await.unwrap().unwrap();
        assert_eq!(kept.get_str("value").unwrap(), "old", "{store}");
        // With `ordered: false`, every other document is inserted (the snapshot's fallback to
        // upserts makes the outcome right either way, but this is what each store does).
        let inserted = docs.count_documents(doc! { "value": "new" }).await.unwrap();
        assert_eq!(inserted, 2, "{store}");
    })
    .await;
}

#[tokio::test]
async fn a_failing_statement_is_reported_in_write_errors_and_retrying_one_by_one_applies_the_rest()
{
    on_every_store("failing", |database, store| async move {
        let docs = database.collection::<Document>("docs");
        docs.insert_one(doc! { "_id": "x", "value": 0 })
            .await
            .unwrap();
        // The middle statement changes `_id`, which every store refuses on its own.
        let statements = vec![
            Bson::Document(
                doc! { "q": { "_id": "w" }, "u": { "$set": { "value": 1 } }, "upsert": true },
            ),
            Bson::Document(
                doc! { "q": { "_id": "x" }, "u": { "$set": { "_id": "moved" } }, "upsert": true },
            ),
            Bson::Document(
                doc! { "q": { "_id": "y" }, "u": { "$set": { "value": 1 } }, "upsert": true },
            ),
        ];
        let command = doc! { "update": "docs", "updates": statements.clone(), "ordered": true };
        let reply = run(&database, command, "an update command", &store).await;
        assert_eq!(write_error_codes(&reply).len(), 1, "{store}: {reply}");

        // What the daemon does on any write error: the command again, one statement at a time.
        let mut refused = 0;
        for statement in statements {
            let command = doc! { "update": "docs", "updates": [statement], "ordered": true };
            let reply = run(&database, command, "one statement", &store).await;
            refused += write_error_codes(&reply).len();
        }
        assert_eq!(refused, 1, "{store}");
        let written = docs.count_documents(doc! { "value": 1 }).await.unwrap();
        assert_eq!(written, 2, "{store}");
        assert_eq!(
            docs.count_documents(doc! { "_id": "moved" }).await.unwrap(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn a_write_guarded_by_its_lsn_skips_newer_documents_and_an_upsert_of_one_is_error_11000() {
    // The daemon's guard (`cdc-daemon/src/sink/batch.rs`): `_cdc.position` not above the
    // write's LSN, which a document without a position passes; commands carry the daemon's
    // default write concern.
    on_every_store("guard", |database, store| async move {
        let docs = database.collection::<Document>("docs");
        docs.insert_many([
            doc! { "_id": "newer", "p": "1", "_cdc": { "position": 20_i64 }, "v": "kept" },
            doc! { "_id": "older", "p": "1", "_cdc": { "position": 5_i64 }, "v": "old" },
            doc! { "_id": "unstamped", "p": "1", "v": "old" },
        ])
        .await
        .unwrap();
        let guard = doc! { "$not": { "$gt": 10_i64 } };
        let statement = |id: &str| {
            Bson::Document(doc! {
                "q": { "_id": id, "p": "1", "_cdc.position": guard.clone() },
                "u": { "$set": { "v": "new", "_cdc.position": 10_i64 } },
                "upsert": true,
            })
        };
        let concern = doc! { "w": "majority", "j": true, "wtimeout": 10_000 };
        for id in ["older", "unstamped", "absent"] {
            let command = doc! {
                "update": "docs", "updates": [statement(id)], "ordered": true,
                "writeConcern": concern.clone(),
            };
            let reply = run(&database, command, "a guarded upsert", &store).await;
            assert!(
                write_error_codes(&reply).is_empty(),
                "{store} {id}: {reply}"
            );
            let written = docs.find_one(doc! { "_id": id }).await.unwrap().unwrap();
            assert_eq!(written.get_str("v").unwrap(), "new", "{store} {id}");
            assert_eq!(written.get_str("p").unwrap(), "1", "{store} {id}");
        }
        let command = doc! {
            "update": "docs", "updates": [statement("newer")], "ordered": true,
            "writeConcern": concern.clone(),
        };
        let reply = run(&database, command, "a stale upsert", &store).await;
        assert_eq!(write_error_codes(&reply), [11000], "{store}: {reply}");
        let command = doc! {
            "delete": "docs",
            "deletes": [{ "q": { "_id": "newer", "_cdc.position": guard.clone() }, "limit": 1 }],
            "writeConcern": concern,
        };
        let reply = run(&database, command, "a stale delete", &store).await;
        assert_eq!(reply.get_i32("n").ok(), Some(0), "{store}: {reply}");
        let kept = docs
            .find_one(doc! { "_id": "newer" })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.get_str("v").unwrap(), "kept", "{store}");
    })
    .await;
}

#[tokio::test]
async fn the_read_models_indexes_are_created_once_and_creating_them_again_changes_nothing() {
    on_every_store("indexes", |database, store| async move {
        read_model::indexes::create(&database).await.unwrap();
        let reports = database.collection::<Document>(read_model::REPORTS);
        let mut first = reports.list_index_names().await.unwrap();
        first.sort();
        for name in [
            read_model::indexes::REPORTS_BY_PATIENT,
            read_model::indexes::REPORTS_BY_PATIENT_INSTRUMENT,
        ] {
            assert!(
                first.iter().any(|index| index == name),
                "{store}: {first:?}"
            );
        }
        // A daemon restarting on the same store: the connection must survive.
        read_model::indexes::create(&database).await.unwrap();
        let mut second = reports.list_index_names().await.unwrap();
        second.sort();
        assert_eq!(first, second, "{store}");
        reports.insert_one(doc! { "_id": "r" }).await.unwrap();
        assert_eq!(
            reports.count_documents(doc! {}).await.unwrap(),
            1,
            "{store}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_server_says_whether_it_is_ferretdb_and_how_large_a_command_may_be() {
    on_every_store("limits", |database, store| async move {
        // What `cdc-daemon/src/sink/limits.rs` reads: FerretDB names itself in `buildInfo`;
        // every store states its largest document in `hello`, and MongoDB its largest batch.
        let build_info = run(&database, doc! { "buildInfo": 1 }, "buildInfo", &store).await;
        let hello = run(&database, doc! { "hello": 1 }, "hello", &store).await;
        let ferretdb = build_info.contains_key("ferretdbVersion");
        assert!(
            ferretdb || !store.starts_with("FerretDB"),
            "{store}: {build_info}"
        );
        let number = |name: &str| {
            let value = hello
                .get(name)
                .unwrap_or_else(|| panic!("{store}: no {name} in {hello}"));
            value.as_i64().or(value.as_i32().map(i64::from)).unwrap()
        };
        assert!(
            number("maxBsonObjectSize") >= 16 * 1024 * 1024,
            "{store}: {hello}"
        );
        if !ferretdb {
            // The daemon sends up to 1,000 statements per command on MongoDB.
            assert!(number("maxWriteBatchSize") >= 1000, "{store}: {hello}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_statement_over_the_daemons_byte_bound_is_taken_alone() {
    on_every_store("large", |database, store| async move {
        // The daemon cuts commands at 8 MiB of statements and sends a larger statement alone;
        // the store takes it as long as the document stays under 16 MiB.
        let large = "x".repeat(9 * 1024 * 1024);
        let statement = doc! {
            "q": { "_id": "large" }, "u": { "$set": { "text": &large } }, "upsert": true,
        };
        let command = doc! { "update": "docs", "updates": [statement], "ordered": true };
        let reply = run(&database, command, "a 9 MiB statement", &store).await;
        assert!(write_error_codes(&reply).is_empty(), "{store}: {reply}");
        assert_eq!(reply.get_i32("n").unwrap(), 1, "{store}: {reply}");
        let stored = database
            .collection::<Document>("docs")
            .find_one(doc! { "_id": "large" })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.get_str("text").unwrap().len(),
            large.len(),
            "{store}"
        );
    })
    .await;
}
