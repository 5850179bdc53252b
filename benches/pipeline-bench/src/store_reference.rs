//! The store's own capacity: the document writes the daemon makes for a workload, issued by a
//! minimal driver loop with the daemon's batching and nothing else.
//!
//! The workload is read from its own pgoutput slot with `pg_logical_slot_get_binary_changes`
//! and mapped in memory beforehand with the daemon's decoder and mapper (its joins served from
//! the mapper's caches, as in the daemon), cut into batches at the daemon's limits. Timed: per
//! batch, its statements as `update`/`delete` commands of at most 32 statements, per collection
//! on the daemon's write lanes (the daemon's own split, [`segments`], each segment's lanes at
//! once), the patients' `latest` settlement (which reads the store, as the daemon does) and one
//! checkpoint upsert. Not timed: replication, decoding, mapping.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use cdc_daemon::decode::{Message, decode_bytes};
use cdc_daemon::mapping::lookups::MemoryStore;
use cdc_daemon::mapping::{LatestWork, Mapper, Transaction, latest};
use cdc_daemon::replication::unix_millis;
use cdc_daemon::sink::lanes::segments;
use cdc_daemon::sink::{Batch, Write};
use futures_util::future::join_all;
use mongodb::Database;
use mongodb::bson::{Bson, DateTime, doc};

/// Statements per command, as the daemon sends them to FerretDB.
const STATEMENTS_PER_COMMAND: usize = 32;

/// One batch as the daemon would flush it.
pub struct PreparedBatch {
    statements: Vec<(&'static str, Vec<Write>)>,
    latest: LatestWork,
    end_lsn: u64,
}

/// Reads every change of `slot` (consuming them).
pub async fn capture(client: &tokio_postgres::Client, slot: &str) -> Result<Vec<Bytes>> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', $2)",
            &[&slot, &source_schema::PUBLICATION],
        )
        .await
        .context("failed to read the reference slot")?;
    Ok(rows
        .into_iter()
        .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0)))
        .collect())
}

/// Maps `messages` into batches of at most `max_changes` changes / about `max_bytes` bytes.
/// Returns the batches and the number of row changes.
pub async fn prepare(
    messages: &[Bytes],
    max_changes: usize,
    max_bytes: usize,
) -> Result<(Vec<PreparedBatch>, usize)> {
    // An empty store: every parent a change needs was inserted earlier in the same stream, so
    // the mapper finds it in its caches.
    let mut mapper = Mapper::new(MemoryStore::default(), usize::MAX);
    let mut batch = Batch::default();
    let mut batches = Vec::new();
    let mut transaction = Transaction {
        commit_lsn: 0,
        commit_time: DateTime::from_millis(0),
    };
    let (mut end_lsn, mut changes) = (0, 0);
    for bytes in messages {
        match decode_bytes(bytes).context("the reference stream did not decode")? {
            Message::Begin(begin) => {
                transaction = Transaction {
                    commit_lsn: begin.final_lsn,
                    commit_time: DateTime::from_millis(unix_millis(begin.commit_time_micros)),
                };
            }
            Message::Relation(relation) => mapper.relation(relation),
            Message::Commit(commit) => end_lsn = commit.end_lsn,
            message @ (Message::Insert(_)
            | Message::Update(_)
            | Message::Delete(_)
            | Message::Truncate(_)) => {
                let mapped = mapper
                    .map_change(&message, &transaction, &mut batch)
                    .await
                    .context("mapping the reference stream failed")?;
                anyhow::ensure!(
                    mapped.dead_letter.is_none(),
                    "the reference stream has an unmappable change: {:?}",
                    mapped.dead_letter
                );
                changes += 1;
            }
            _ => {}
        }
        if batch.changes() >= max_changes || batch.bytes() >= max_bytes {
            batches.push(PreparedBatch {
                statements: batch.take(),
                latest: mapper.take_latest(),
                end_lsn,
            });
            mapper.end_batch();
        }
    }
    if !batch.is_empty() {
        batches.push(PreparedBatch {
            statements: batch.take(),
            latest: mapper.take_latest(),
            end_lsn,
        });
    }
    Ok((batches, changes))
}

/// Writes `batches` into `database` on `lanes` write lanes; returns the seconds it took.
pub async fn write(database: &Database, batches: &[PreparedBatch], lanes: usize) -> Result<f64> {
    read_model::indexes::create(database)
        .await
        .context("failed to create the reference store's indexes")?;
    let started = Instant::now();
    for batch in batches {
        send(database, &batch.statements, lanes).await?;
        if !batch.latest.is_empty() {
            let writes = latest::settle(database, &batch.latest)
                .await
                .context("failed to settle latest values")?;
            let mut derived = Batch::default();
            derived.extend(writes);
            send(database, &derived.take(), lanes).await?;
        }
        read_model::checkpoint::save(
            database,
            "reference",
            read_model::checkpoint::Checkpoint {
                lsn: batch.end_lsn,
                commit_time_millis: 0,
            },
        )
        .await
        .context("failed to write the reference checkpoint")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Per collection, its segments in order, each segment's lanes at once. The benchmark's
/// workloads move no report to another patient, so there is no move to send.
async fn send(
    database: &Database,
    statements: &[(&'static str, Vec<Write>)],
    lanes: usize,
) -> Result<()> {
    for (collection, writes) in statements {
        anyhow::ensure!(
            !writes
                .iter()
                .any(|write| matches!(write, Write::Move { .. })),
            "the reference does not move reports"
        );
        for segment in segments(writes, lanes) {
            let sent = join_all(
                segment
                    .iter()
                    .map(|lane| send_lane(database, collection, lane)),
            );
            for lane in sent.await {
                lane?;
            }
        }
    }
    Ok(())
}

/// One lane's runs of updates or deletes in order, 32 statements per command.
async fn send_lane(database: &Database, collection: &str, writes: &[&Write]) -> Result<()> {
    for run in writes.chunk_by(|a, b| is_update(a) == is_update(b)) {
        for chunk in run.chunks(STATEMENTS_PER_COMMAND) {
            let command = if is_update(chunk[0]) {
                let updates: Vec<Bson> = chunk
                    .iter()
                    .filter_map(|write| update_statement(write))
                    .collect();
                doc! { "update": collection, "updates": updates, "ordered": true }
            } else {
                let deletes: Vec<Bson> = chunk
                    .iter()
                    .filter_map(|write| delete_statement(write))
                    .collect();
                doc! { "delete": collection, "deletes": deletes, "ordered": true }
            };
            let reply = database
                .run_command(command)
                .await
                .context("a reference write failed")?;
            anyhow::ensure!(
                !reply.contains_key("writeErrors"),
                "the store refused a reference write: {reply}"
            );
        }
    }
    Ok(())
}

fn is_update(write: &Write) -> bool {
    matches!(write, Write::Update { .. })
}

fn update_statement(write: &Write) -> Option<Bson> {
    match write {
        Write::Update {
            filter,
            update,
            upsert,
            multi,
            ..
        } => Some(Bson::Document(
            doc! { "q": filter.clone(), "u": update.clone(), "upsert": *upsert, "multi": *multi },
        )),
        Write::Delete { .. } | Write::Move { .. } => None,
    }
}

fn delete_statement(write: &Write) -> Option<Bson> {
    match write {
        Write::Delete { filter, multi, .. } => Some(Bson::Document(
            doc! { "q": filter.clone(), "limit": if *multi { 0 } else { 1 } },
        )),
        Write::Update { .. } | Write::Move { .. } => None,
    }
}
