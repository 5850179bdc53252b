//! Sending a batch to MongoDB: per collection, consecutive statements of one kind go in one
//! `update` or `delete` command (at most [`STATEMENTS_PER_COMMAND`] each). On a write error the
//! command's statements are sent again one at a time — safe, as every write is idempotent, and
//! needed because FerretDB does not say which statement failed — and the statements that fail
//! alone are handed back as rejected instead of stopping the stream.
//!
//! In [`Mode::InsertNew`] (the initial snapshot, which writes documents that mostly do not exist
//! yet), an upsert by `_id` that only `$set`s is sent as an `insert` of the document it would
//! create: one cheap insert instead of a lookup and an update. A chunk the store refuses (a
//! document already exists) is sent again as the upserts, which do the same to a new document
//! and merge into an existing one.

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::batch::{POSITION, Write};

/// Most statements sent in one command. FerretDB 1.24, on either backend, holds one backend
/// connection per statement that matches a document until the whole command ends, and waits
/// forever for a free one: a command of more statements than its pool has connections (100 on
/// SQLite, 50 by default on PostgreSQL) deadlocks it, and several large ones at once from
/// different clients can too. MongoDB allows 100,000.
pub const STATEMENTS_PER_COMMAND: usize = 32;

/// How upserts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As `update` statements (streaming).
    Update,
    /// Upserts by `_id` that only `$set` as inserts, falling back to updates.
    InsertNew,
}

/// Documents sent in one `insert` command.
const DOCUMENTS_PER_INSERT: usize = 256;

/// The store could not be written; the batch must be sent again later.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The database handle's write concern could not be written into a command.
    #[error("failed to encode the write concern")]
    WriteConcernEncoding(#[from] mongodb::bson::error::Error),
    /// The command failed (store down, timeout, ...).
    #[error("failed to write to the store")]
    Store(#[from] mongodb::error::Error),
    /// The store applied the command but could not satisfy the write concern.
    #[error("the store reported a write concern error: {0}")]
    WriteConcern(String),
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

/// Sends `statements` (per collection, in order) to `database`. Returns what the store did not
/// apply statement by statement; any other failure is an error and nothing may be assumed
/// written (sending the batch again is safe).
pub async fn flush(
    database: &Database,
    statements: &[(&'static str, Vec<Write>)],
    mode: Mode,
    mut on_command: impl FnMut(&'static str, usize, std::time::Duration),
) -> Result<Skipped, FlushError> {
    let concern = write_concern(database)?;
    let mut skipped = Skipped::default();
    for (collection, writes) in statements {
        for run in runs(writes, mode) {
            let inserts: Option<Vec<Document>> = match mode {
                Mode::InsertNew => run.iter().map(Write::new_document).collect(),
                Mode::Update => None,
            };
            let mut updates: Vec<&[Write]> = Vec::new();
            match inserts {
                Some(documents) => {
                    for (chunk, writes) in documents
                        .chunks(DOCUMENTS_PER_INSERT)
                        .zip(run.chunks(DOCUMENTS_PER_INSERT))
                    {
                        let started = std::time::Instant::now();
                        if insert(database, &concern, collection, chunk).await? {
                            on_command(collection, chunk.len(), started.elapsed());
                        } else {
                            updates.push(writes);
                        }
                    }
                }
                None => updates.push(run),
            }
            for chunk in updates
                .into_iter()
                .flat_map(|writes| writes.chunks(STATEMENTS_PER_COMMAND))
            {
                let started = std::time::Instant::now();
                let errors = send(database, &concern, collection, chunk).await?;
                on_command(collection, chunk.len(), started.elapsed());
                if errors.is_empty() {
                    continue;
                }
                for write in chunk {
                    let single = std::slice::from_ref(write);
                    let Some(error) = send(database, &concern, collection, single)
                        .await?
                        .into_iter()
                        .next()
                    else {
                        continue;
                    };
                    if error.code == DUPLICATE_KEY && is_newer(database, write).await? {
                        skipped.stale.push(collection);
                    } else {
                        skipped.rejected.push(Rejected {
                            write: write.clone(),
                            error: error.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(skipped)
}

/// Whether the document a guarded single-document write addresses is stored with a newer
/// position than the write's LSN.
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
    let stored = database
        .collection::<Document>(write.collection())
        .find_one(filter.clone())
        .projection(doc! { POSITION: 1 })
        .await?;
    let position = stored
        .as_ref()
        .and_then(|document| document.get_document("_cdc").ok())
        .and_then(|cdc| cdc.get_i64("position").ok());
    Ok(position.is_some_and(|position| u64::try_from(position).is_ok_and(|p| p > *lsn)))
}

/// Splits `writes` into maximal runs of one kind (deletes, updates, and in
/// [`Mode::InsertNew`] insertable upserts), keeping their order.
fn runs(writes: &[Write], mode: Mode) -> Vec<&[Write]> {
    let kind = |write: &Write| match write {
        Write::Delete { .. } => 0,
        Write::Update { .. } if mode == Mode::InsertNew && write.new_document().is_some() => 2,
        Write::Update { .. } => 1,
    };
    let mut runs = Vec::new();
    let mut start = 0;
    for index in 1..=writes.len() {
        if index == writes.len() || kind(&writes[index]) != kind(&writes[start]) {
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
        .map(mongodb::bson::serialize_to_document)
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
    let reply = database.run_command(with_concern(command, concern)).await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(FlushError::WriteConcern(concern.to_string()));
    }
    Ok(write_errors(&reply).is_empty())
}

/// Sends one command of same-kind statements; returns the write errors it reported.
async fn send(
    database: &Database,
    concern: &Option<Document>,
    collection: &str,
    writes: &[Write],
) -> Result<Vec<WriteError>, FlushError> {
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
                    Write::Delete { .. } => None,
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
                    Write::Update { .. } => None,
                })
                .collect();
            doc! { "delete": collection, "deletes": deletes, "ordered": true }
        }
        None => return Ok(Vec::new()),
    };
    let reply = database.run_command(with_concern(command, concern)).await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        // Not applied durably: treat as a failed round trip, to be retried.
        return Err(FlushError::WriteConcern(concern.to_string()));
    }
    Ok(write_errors(&reply))
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
        let field = mongodb::bson::serialize_to_document(&concern).ok();
        let command = with_concern(doc! { "update": "c", "updates": [] }, &field);
        assert_eq!(
            command.get_document("writeConcern").ok(),
            Some(&doc! { "w": "majority", "wtimeout": 2500, "j": true })
        );
    }

    #[test]
    fn runs_split_updates_from_deletes_in_order() {
        let update = Write::update("c", "a", doc! { "$set": { "x": 1 } });
        let delete = Write::delete("c", "a");
        let writes = vec![
            update.clone(),
            update.clone(),
            delete.clone(),
            update.clone(),
        ];
        let lengths: Vec<usize> = runs(&writes, Mode::Update)
            .iter()
            .map(|run| run.len())
            .collect();
        assert_eq!(lengths, [2, 1, 1]);
        assert!(runs(&[], Mode::Update).is_empty());
    }

    #[test]
    fn insertable_upserts_form_their_own_runs_when_inserting() {
        let upsert = Write::upsert("c", "a", doc! { "x": 1, "m.k": 2 });
        let update = Write::update("c", "a", doc! { "$set": { "x": 1 } });
        let writes = vec![
            upsert.clone(),
            upsert.clone(),
            update.clone(),
            upsert.clone(),
        ];
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
