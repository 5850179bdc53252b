//! Sending a batch to MongoDB: per collection, on its write [`lanes`](super::lanes) at once, and
//! on each lane consecutive statements of one kind go in one `update` or `delete` command, cut
//! by the store's [`Limits`]: at most so many statements and so many bytes each, a statement
//! larger than the byte bound alone. On a write error the
//! command's statements are sent again one at a time — safe, as every write is idempotent, and
//! needed because FerretDB does not say which statement failed — and the statements that fail
//! alone are handed back as rejected instead of stopping the stream. A statement larger than
//! the store's largest document is rejected without being sent: no command can hold it, and
//! the server's refusal of such a command would look like a failing store, retried forever.
//!
//! A report moved to another patient is moved by [`move_report`], in its place in the stream.
//!
//! In [`Mode::InsertNew`] (the initial snapshot, which writes documents that mostly do not exist
//! yet), an upsert by `_id` that only `$set`s is sent as an `insert` of the document it would
//! create: one cheap insert instead of a lookup and an update. A chunk the store refuses (a
//! document already exists) is sent again as the upserts, which do the same to a new document
//! and merge into an existing one.

use futures_util::future::join_all;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use read_model::lsn::to_position;
use read_model::{MOVING_REPORTS, REPORTS};

use super::batch::{Key, POSITION, Write, bson_size};
use super::lanes;
use super::limits::Limits;

/// How upserts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As `update` statements (streaming).
    Update,
    /// Upserts by `_id` that only `$set` as inserts, falling back to updates.
    InsertNew,
}

/// The store could not be written; the batch must be sent again later.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The database handle's write concern could not be written into a command.
    #[error("failed to encode the write concern")]
    WriteConcernEncoding(#[from] bson::error::Error),
    /// The command failed (store down, timeout, ...).
    #[error("failed to write to the store")]
    Store(#[from] mongodb::error::Error),
    /// The store applied the command but could not satisfy the write concern.
    #[error("the store reported a write concern error: {0}")]
    WriteConcern(String),
    /// Repeating a fan-out (see [`repeat_fan_out`]) did not settle.
    #[error("repeating the multi-document writes to {collection}: {detail}")]
    FanOut {
        /// The collection written.
        collection: &'static str,
        /// The store's error, or how many passes still changed documents.
        detail: String,
    },
}

/// A statement the store refused on its own (e.g. a document over the size limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The statement as it was sent; its dead letter records filter and update.
    pub write: Write,
    /// The store's error message and code.
    pub error: String,
}

/// What of a batch the store did not apply, statement by statement.
#[derive(Debug, Default)]
pub struct Skipped {
    /// Statements the store refused on their own.
    pub rejected: Vec<Rejected>,
    /// The collection of each guarded upsert skipped because its document was already newer
    /// (see [`Write`]). Guarded plain updates and deletes of a newer document are skipped as
    /// well, but the store does not say which statement of a command matched nothing.
    pub stale: Vec<&'static str>,
}

/// The error code of a duplicate key: what a guarded upsert gets when its document exists but
/// is newer (the filter matches nothing, so the store tries to insert the `_id` again).
const DUPLICATE_KEY: i32 = 11000;

/// Sends `statements` (per collection, in order) to `database`, in commands cut by `limits`,
/// each collection's on up to `lanes` lanes at once (see [`super::lanes`]); `on_command` is
/// told each command's collection, statements and duration. Returns what the store did not
/// apply statement by statement; any other failure is an error and nothing may be assumed
/// written (sending the batch again is safe). A lane that fails does not cut the others short:
/// the error is returned once every lane of its segment has ended.
pub async fn flush(
    database: &Database,
    statements: &[(&'static str, Vec<Write>)],
    mode: Mode,
    limits: Limits,
    lanes: usize,
    on_command: impl Fn(&'static str, usize, std::time::Duration) + Sync,
) -> Result<Skipped, FlushError> {
    let sender = Sender {
        database,
        concern: write_concern(database)?,
        mode,
        limits,
        on_command: &on_command,
    };
    let mut skipped = Skipped::default();
    for (collection, writes) in statements {
        for segment in lanes::segments(writes, lanes) {
            let sent = join_all(segment.iter().map(|lane| sender.lane(collection, lane))).await;
            for lane in sent {
                let lane = lane?;
                skipped.rejected.extend(lane.rejected);
                skipped.stale.extend(lane.stale);
            }
        }
    }
    Ok(skipped)
}

/// What sending one lane needs, shared by the lanes of a flush.
struct Sender<'a, F> {
    database: &'a Database,
    concern: Option<Document>,
    mode: Mode,
    limits: Limits,
    on_command: &'a F,
}

impl<F: Fn(&'static str, usize, std::time::Duration)> Sender<'_, F> {
    /// Sends one lane's `writes` to `collection`, in order: runs of one kind, each in commands
    /// cut by the limits. A multi-document write comes alone (see [`lanes::segments`]), so a
    /// fan-out is the whole of its command and is repeated right after it (see
    /// [`repeat_fan_out`]).
    async fn lane(
        &self,
        collection: &'static str,
        writes: &[&Write],
    ) -> Result<Skipped, FlushError> {
        let (database, concern, limits) = (self.database, &self.concern, self.limits);
        let mut skipped = Skipped::default();
        for run in runs(writes, self.mode) {
            if let [Write::Move { .. }, ..] = run {
                for write in run {
                    let started = std::time::Instant::now();
                    let refused = move_report(database, concern, write).await?;
                    (self.on_command)(collection, 1, started.elapsed());
                    if let Some(error) = refused {
                        skipped.rejected.push(Rejected {
                            write: (*write).clone(),
                            error: error.to_string(),
                        });
                    }
                }
                continue;
            }
            let inserts: Option<Vec<Document>> = match self.mode {
                Mode::InsertNew => run.iter().map(|write| write.new_document()).collect(),
                Mode::Update => None,
            };
            let mut updates: Vec<&[&Write]> = Vec::new();
            match inserts {
                Some(documents) => {
                    let sizes: Vec<usize> = documents.iter().map(bson_size).collect();
                    for range in commands(&sizes, limits.documents, limits.bytes) {
                        let chunk = &documents[range.clone()];
                        // One the store cannot take goes to the updates, which reject it.
                        let fits = sizes[range.clone()]
                            .iter()
                            .all(|&size| size <= limits.max_statement);
                        let started = std::time::Instant::now();
                        if fits && insert(database, concern, collection, chunk).await? {
                            (self.on_command)(collection, chunk.len(), started.elapsed());
                        } else {
                            updates.push(&run[range]);
                        }
                    }
                }
                None => updates.push(run),
            }
            for writes in updates {
                let sizes: Vec<usize> = writes
                    .iter()
                    .map(|write| write.approximate_size())
                    .collect();
                for range in commands(&sizes, limits.statements, limits.bytes) {
                    let chunk = &writes[range.clone()];
                    if let [write] = chunk
                        && sizes[range.start] > limits.max_statement
                    {
                        skipped.rejected.push(Rejected {
                            write: (*write).clone(),
                            error: format!(
                                "not sent: the statement is {} bytes, more than the {} bytes of \
                                 the largest document the store takes",
                                sizes[range.start], limits.max_statement
                            ),
                        });
                        continue;
                    }
                    let started = std::time::Instant::now();
                    let errors = send(database, concern, collection, chunk).await?.errors;
                    (self.on_command)(collection, chunk.len(), started.elapsed());
                    if errors.is_empty() {
                        if let [fan_out] = chunk
                            && is_fan_out(fan_out)
                        {
                            repeat_fan_out(database, concern, collection, fan_out).await?;
                        }
                        continue;
                    }
                    for write in chunk {
                        let Some(error) = send(database, concern, collection, &[*write])
                            .await?
                            .errors
                            .into_iter()
                            .next()
                        else {
                            if is_fan_out(write) {
                                repeat_fan_out(database, concern, collection, write).await?;
                            }
                            continue;
                        };
                        if error.code == DUPLICATE_KEY && is_newer(database, write).await? {
                            skipped.stale.push(collection);
                        } else {
                            skipped.rejected.push(Rejected {
                                write: (*write).clone(),
                                error: error.to_string(),
                            });
                        }
                    }
                }
            }
        }
        Ok(skipped)
    }
}

/// Most passes [`repeat_fan_out`] makes: a pass that still changes documents after these is
/// reported as an error, to be retried with the batch, rather than repeated forever.
const FAN_OUT_PASSES: usize = 8;

/// Whether `write` is a fan-out that [`repeat_fan_out`] repeats: a multi-document write guarded
/// by its change's LSN. Unguarded ones (the dead-letter bookkeeping, clearing the read model
/// before a snapshot) are not: nothing orders them against later statements.
fn is_fan_out(write: &Write) -> bool {
    write.is_multi() && write.lsn().is_some()
}

/// Sends `fan_out` (just applied, the last statement of its command) again, alone, until a
/// pass changes nothing. On a sharded cluster an `updateMany` or `deleteMany` can miss
/// documents that a chunk migration is moving at that moment, and says nothing about it;
/// MongoDB's advice is to repeat the statement until nothing is left to change. Repeating is
/// safe: the statement is guarded by its LSN (a document written since is not matched) and only
/// `$set`/`$unset`s fixed values or deletes, so a document already done is matched but not
/// changed. It is repeated before any later statement is sent: several fan-outs repeated
/// together would never settle when a later one rewrites what an earlier one set (a checkup's
/// change embeds its clinic's old name, the clinic's rename in the same transaction sets the
/// new one). A pass that changes nothing costs one round trip per fan-out.
async fn repeat_fan_out(
    database: &Database,
    concern: &Option<Document>,
    collection: &'static str,
    fan_out: &Write,
) -> Result<(), FlushError> {
    for _ in 0..FAN_OUT_PASSES {
        let reply = send(database, concern, collection, &[fan_out]).await?;
        if let Some(error) = reply.errors.first() {
            return Err(FlushError::FanOut {
                collection,
                detail: error.to_string(),
            });
        }
        if reply.changed == 0 {
            return Ok(());
        }
    }
    Err(FlushError::FanOut {
        collection,
        detail: format!("documents still changed after {FAN_OUT_PASSES} passes"),
    })
}

/// Moves a report to another patient ([`Write::Move`]) in four steps, each safe to repeat, so
/// that the replay of the same move after a crash at any point finishes it:
///
/// 1. the document, if it is still under its old patient and no newer than the move, is copied
///    into [`MOVING_REPORTS`], keyed by the report id and the move's LSN (`<id>@<LSN in hex>`);
/// 2. it is deleted under the old patient (guarded);
/// 3. the copy, if there is one, is inserted under the new patient, with the move's position,
///    unless a document of that id is there already (an earlier attempt got that far, or a
///    newer change put it there: either way it stays);
/// 4. the copy is deleted.
///
/// A report cannot be under both patients at once (one `_id` in a collection, and on a shard),
/// so it has to leave the old patient before it arrives under the new one; in between, the copy
/// holds its measurements, which no change of the report row carries. Every step names the
/// shard key: this is a change of shard key without a transaction. Returns the error of a
/// statement the store refused (the move stops there, to become a dead letter).
async fn move_report(
    database: &Database,
    concern: &Option<Document>,
    write: &Write,
) -> Result<Option<WriteError>, FlushError> {
    let Write::Move { id, from, to, lsn } = write else {
        return Ok(None);
    };
    let copy = format!("{id}@{:016X}", lsn.unwrap_or_default());
    let first_error = |reply: Reply| reply.errors.into_iter().next();
    if let Some(document) = database
        .collection::<Document>(REPORTS)
        .find_one(write.sent_filter())
        .await?
    {
        let stash = Write::upsert(MOVING_REPORTS, copy.as_str(), doc! { "document": document });
        if let Some(error) = first_error(send(database, concern, MOVING_REPORTS, &[&stash]).await?)
        {
            return Ok(Some(error));
        }
    }
    let mut leave = Write::delete(REPORTS, Key::report(id, from));
    leave.set_lsn(*lsn);
    if let Some(error) = first_error(send(database, concern, REPORTS, &[&leave]).await?) {
        return Ok(Some(error));
    }
    let stashed = database
        .collection::<Document>(MOVING_REPORTS)
        .find_one(doc! { "_id": &copy })
        .await?;
    if let Some(mut document) =
        stashed.and_then(|entry| entry.get_document("document").ok().cloned())
    {
        document.insert("patient_id", to.as_str());
        if let Ok(cdc) = document.get_document_mut("_cdc") {
            cdc.insert("position", lsn.map(to_position));
        }
        let arrive = doc! { "insert": REPORTS, "documents": [document] };
        match first_error(run(database, concern, arrive).await?) {
            Some(error) if error.code != DUPLICATE_KEY => return Ok(Some(error)),
            _ => {}
        }
    }
    let forget = Write::delete(MOVING_REPORTS, copy.as_str());
    Ok(first_error(
        send(database, concern, MOVING_REPORTS, &[&forget]).await?,
    ))
}

/// Whether the document of a guarded single-document write's `_id` is stored with a newer
/// position than the write's LSN. By `_id` alone: a report's document may have moved to
/// another patient since the write (the store refuses a second document of that id all the
/// same).
async fn is_newer(database: &Database, write: &Write) -> Result<bool, FlushError> {
    let (Write::Update {
        filter,
        multi: false,
        lsn: Some(lsn),
        ..
    }
    | Write::Delete {
        filter,
        multi: false,
        lsn: Some(lsn),
        ..
    }) = write
    else {
        return Ok(false);
    };
    let Some(id) = filter.get("_id") else {
        return Ok(false);
    };
    let stored = database
        .collection::<Document>(write.collection())
        .find_one(doc! { "_id": id.clone() })
        .projection(doc! { POSITION: 1 })
        .await?;
    let position = stored
        .as_ref()
        .and_then(|document| document.get_document("_cdc").ok())
        .and_then(|cdc| cdc.get_i64("position").ok());
    Ok(position.is_some_and(|position| u64::try_from(position).is_ok_and(|p| p > *lsn)))
}

/// Cuts statements of `sizes` bytes into commands (index ranges, in order) of at most `most`
/// statements and `bytes` bytes; a statement larger than `bytes` goes alone.
fn commands(sizes: &[usize], most: usize, bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut commands = Vec::new();
    let mut start = 0;
    let mut taken = 0;
    for (index, size) in sizes.iter().enumerate() {
        if index > start && (index - start == most || taken + size > bytes) {
            commands.push(start..index);
            start = index;
            taken = 0;
        }
        taken += size;
    }
    if start < sizes.len() {
        commands.push(start..sizes.len());
    }
    commands
}

/// Splits `writes` into maximal runs of one kind (deletes, updates, moves, and in
/// [`Mode::InsertNew`] insertable upserts), keeping their order.
fn runs<'l, 'w>(writes: &'l [&'w Write], mode: Mode) -> Vec<&'l [&'w Write]> {
    let kind = |write: &Write| match write {
        Write::Delete { .. } => 0,
        Write::Update { .. } if mode == Mode::InsertNew && write.new_document().is_some() => 2,
        Write::Update { .. } => 1,
        Write::Move { .. } => 3,
    };
    let mut runs = Vec::new();
    let mut start = 0;
    for index in 1..=writes.len() {
        if index == writes.len() || kind(writes[index]) != kind(writes[start]) {
            runs.push(&writes[start..index]);
            start = index;
        }
    }
    runs
}

/// The `writeConcern` field every command carries: the database handle's write concern.
/// `run_command` sends a command exactly as given and never adds the handle's concern itself;
/// without the field the server would apply its own default, which may be `w: 1`.
fn write_concern(database: &Database) -> Result<Option<Document>, FlushError> {
    Ok(database
        .write_concern()
        .map(bson::serialize_to_document)
        .transpose()?)
}

/// `command` with `concern` added.
fn with_concern(mut command: Document, concern: &Option<Document>) -> Document {
    if let Some(concern) = concern {
        command.insert("writeConcern", concern.clone());
    }
    command
}

/// Inserts `documents`; false if the store refused any of them (FerretDB does not say which,
/// and may have inserted the others).
async fn insert(
    database: &Database,
    concern: &Option<Document>,
    collection: &str,
    documents: &[Document],
) -> Result<bool, FlushError> {
    let command = doc! { "insert": collection, "documents": documents, "ordered": false };
    Ok(run(database, concern, command).await?.errors.is_empty())
}

/// What the store answered to one command.
#[derive(Debug, Default)]
struct Reply {
    /// The statements' errors.
    errors: Vec<WriteError>,
    /// Documents changed: `nModified` of an update (a match already at the new values is not
    /// counted), `n` of a delete.
    changed: i64,
}

/// Sends one command of same-kind statements.
async fn send(
    database: &Database,
    concern: &Option<Document>,
    collection: &str,
    writes: &[&Write],
) -> Result<Reply, FlushError> {
    let command = match writes.first() {
        Some(Write::Update { .. }) => {
            let updates: Vec<Bson> = writes
                .iter()
                .filter_map(|write| match write {
                    Write::Update { upsert, multi, .. } => Some(Bson::Document(doc! {
                        "q": write.sent_filter(),
                        "u": write.sent_update().unwrap_or_default(),
                        "upsert": *upsert,
                        "multi": *multi,
                    })),
                    Write::Delete { .. } | Write::Move { .. } => None,
                })
                .collect();
            doc! { "update": collection, "updates": updates, "ordered": true }
        }
        Some(Write::Delete { .. }) => {
            let deletes: Vec<Bson> = writes
                .iter()
                .filter_map(|write| match write {
                    Write::Delete { multi, .. } => Some(Bson::Document(doc! {
                        "q": write.sent_filter(), "limit": if *multi { 0 } else { 1 },
                    })),
                    Write::Update { .. } | Write::Move { .. } => None,
                })
                .collect();
            doc! { "delete": collection, "deletes": deletes, "ordered": true }
        }
        Some(Write::Move { .. }) | None => return Ok(Reply::default()),
    };
    run(database, concern, command).await
}

/// Runs one write `command` with `concern`.
async fn run(
    database: &Database,
    concern: &Option<Document>,
    command: Document,
) -> Result<Reply, FlushError> {
    let reply = database.run_command(with_concern(command, concern)).await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        // Not applied durably: treat as a failed round trip, to be retried.
        return Err(FlushError::WriteConcern(concern.to_string()));
    }
    // An update's reply has both (`n` counts matches), a delete's only `n`.
    let changed = match reply.get("nModified").or_else(|| reply.get("n")) {
        Some(Bson::Int32(count)) => i64::from(*count),
        Some(Bson::Int64(count)) => *count,
        _ => 0,
    };
    Ok(Reply {
        errors: write_errors(&reply),
        changed,
    })
}

/// A statement's error in a command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WriteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code, self.message)
    }
}

fn write_errors(reply: &Document) -> Vec<WriteError> {
    reply
        .get_array("writeErrors")
        .map(|errors| {
            errors
                .iter()
                .map(|error| match error {
                    Bson::Document(error) => WriteError {
                        code: error.get_i32("code").unwrap_or_default(),
                        message: error.get_str("errmsg").unwrap_or_default().to_string(),
                    },
                    other => WriteError {
                        code: 0,
                        message: other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_concern_field_is_the_handles_concern_as_the_server_reads_it() {
        let concern = mongodb::options::WriteConcern::builder()
            .w(mongodb::options::Acknowledgment::Majority)
            .journal(true)
            .w_timeout(std::time::Duration::from_millis(2500))
            .build();
        let field = bson::serialize_to_document(&concern).ok();
        let command = with_concern(doc! { "update": "c", "updates": [] }, &field);
        assert_eq!(
            command.get_document("writeConcern").ok(),
            Some(&doc! { "w": "majority", "wtimeout": 2500, "j": true })
        );
    }

    #[test]
    fn commands_are_cut_at_the_statement_count() {
        assert_eq!(commands(&[1; 7], 3, 100), [0..3, 3..6, 6..7]);
        assert_eq!(commands(&[1; 6], 3, 100), [0..3, 3..6]);
        assert!(commands(&[], 3, 100).is_empty());
    }

    #[test]
    fn commands_are_cut_before_the_statement_that_would_pass_the_byte_bound() {
        assert_eq!(commands(&[40, 40, 20, 1], 3, 100), [0..3, 3..4]);
        assert_eq!(commands(&[40, 40, 21, 1], 3, 100), [0..2, 2..4]);
        assert_eq!(commands(&[100, 1], 3, 100), [0..1, 1..2]);
    }

    #[test]
    fn a_statement_over_the_byte_bound_goes_alone() {
        assert_eq!(commands(&[10, 500, 10, 10], 3, 100), [0..1, 1..2, 2..4]);
        assert_eq!(commands(&[500, 500], 3, 100), [0..1, 1..2]);
    }

    #[test]
    fn the_mongodb_limits_cut_a_large_run_by_bytes_first() {
        use crate::sink::limits::{BYTES_PER_COMMAND, MONGODB_STATEMENTS};
        // 3,000 statements of 10 KiB: 30 MiB, in commands of at most 8 MiB.
        let sizes = vec![10 * 1024; 3000];
        let cut = commands(&sizes, MONGODB_STATEMENTS, BYTES_PER_COMMAND);
        assert!(
            cut.iter()
                .all(|range| sizes[range.clone()].iter().sum::<usize>() <= BYTES_PER_COMMAND)
        );
        assert_eq!(cut.iter().map(ExactSizeIterator::len).sum::<usize>(), 3000);
        assert_eq!(cut[0].len(), 819);
    }

    #[tokio::test]
    async fn a_statement_larger_than_the_largest_document_is_rejected_without_being_sent() {
        // No server listens there: sending anything would fail the flush.
        let client = mongodb::Client::with_uri_str(
            "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100&connectTimeoutMS=100",
        )
        .await
        .expect("a client");
        let large = Write::upsert("c", "a", doc! { "text": "x".repeat(2000) });
        let limits = Limits {
            max_statement: 1000,
            ..Limits::FERRETDB
        };
        for mode in [Mode::Update, Mode::InsertNew] {
            let statements = [("c", vec![large.clone()])];
            let skipped = flush(
                &client.database("d"),
                &statements,
                mode,
                limits,
                1,
                |_, _, _| {},
            )
            .await
            .expect("nothing sent");
            let rejected = skipped.rejected;
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].write, large);
            assert!(
                rejected[0].error.starts_with("not sent"),
                "{}",
                rejected[0].error
            );
        }
    }

    #[test]
    fn runs_split_updates_from_deletes_in_order() {
        let update = Write::update("c", "a", doc! { "$set": { "x": 1 } });
        let delete = Write::delete("c", "a");
        let writes = [&update, &update, &delete, &update];
        let lengths: Vec<usize> = runs(&writes, Mode::Update)
            .iter()
            .map(|run| run.len())
            .collect();
        assert_eq!(lengths, [2, 1, 1]);
        assert!(runs(&[], Mode::Update).is_empty());
        let moved = Write::move_report("a", "p1", "p2");
        let writes = [&update, &moved, &moved, &update];
        let lengths: Vec<usize> = runs(&writes, Mode::Update)
            .iter()
            .map(|run| run.len())
            .collect();
        assert_eq!(lengths, [1, 2, 1]);
    }

    #[test]
    fn insertable_upserts_form_their_own_runs_when_inserting() {
        let upsert = Write::upsert("c", "a", doc! { "x": 1, "m.k": 2 });
        let update = Write::update("c", "a", doc! { "$set": { "x": 1 } });
        let writes = [&upsert, &upsert, &update, &upsert];
        let lengths: Vec<usize> = runs(&writes, Mode::InsertNew)
            .iter()
            .map(|run| run.len())
            .collect();
        assert_eq!(lengths, [2, 1, 1]);
        assert_eq!(runs(&writes, Mode::Update).len(), 1);
        assert_eq!(
            upsert.new_document(),
            Some(doc! { "_id": "a", "x": 1, "m": { "k": 2 } })
        );
        assert_eq!(update.new_document(), None);
    }
}
