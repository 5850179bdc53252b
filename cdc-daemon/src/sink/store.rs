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

use super::batch::Write;

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

/// Sends `statements` (per collection, in order) to `database`. Returns the statements the
/// store refused individually; any other failure is an error and nothing may be assumed
/// written (sending the batch again is safe).
pub async fn flush(
    database: &Database,
    statements: &[(&'static str, Vec<Write>)],
    mode: Mode,
    mut on_command: impl FnMut(&'static str, usize, std::time::Duration),
) -> Result<Vec<Rejected>, FlushError> {
    let mut rejected = Vec::new();
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
                        if insert(database, collection, chunk).await? {
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
                let errors = send(database, collection, chunk).await?;
                on_command(collection, chunk.len(), started.elapsed());
                if errors.is_empty() {
                    continue;
                }
                for write in chunk {
                    let single = std::slice::from_ref(write);
                    if let Some(error) =
                        send(database, collection, single).await?.into_iter().next()
                    {
                        rejected.push(Rejected {
                            write: write.clone(),
                            error,
                        });
                    }
                }
            }
        }
    }
    Ok(rejected)
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

/// Inserts `documents`; false if the store refused any of them (FerretDB does not say which,
/// and may have inserted the others).
async fn insert(
    database: &Database,
    collection: &str,
    documents: &[Document],
) -> Result<bool, FlushError> {
    let reply = database
        .run_command(doc! { "insert": collection, "documents": documents, "ordered": false })
        .await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(FlushError::WriteConcern(concern.to_string()));
    }
    Ok(write_errors(&reply).is_empty())
}

/// Sends one command of same-kind statements; returns the write errors it reported.
async fn send(
    database: &Database,
    collection: &str,
    writes: &[Write],
) -> Result<Vec<String>, FlushError> {
    let command = match writes.first() {
        Some(Write::Update { .. }) => {
            let updates: Vec<Bson> = writes
                .iter()
                .filter_map(|write| match write {
                    Write::Update {
                        filter,
                        update,
                        upsert,
                        multi,
                        ..
                    } => Some(Bson::Document(doc! {
                        "q": filter.clone(), "u": update.clone(), "upsert": *upsert, "multi": *multi,
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
                    Write::Delete { filter, multi, .. } => Some(Bson::Document(doc! {
                        "q": filter.clone(), "limit": if *multi { 0 } else { 1 },
                    })),
                    Write::Update { .. } => None,
                })
                .collect();
            doc! { "delete": collection, "deletes": deletes, "ordered": true }
        }
        None => return Ok(Vec::new()),
    };
    let reply = database.run_command(command).await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        // Not applied durably: treat as a failed round trip, to be retried.
        return Err(FlushError::WriteConcern(concern.to_string()));
    }
    Ok(write_errors(&reply))
}

fn write_errors(reply: &Document) -> Vec<String> {
    reply
        .get_array("writeErrors")
        .map(|errors| {
            errors
                .iter()
                .map(|error| match error {
                    Bson::Document(error) => format!(
                        "code {}: {}",
                        error.get_i32("code").unwrap_or_default(),
                        error.get_str("errmsg").unwrap_or_default()
                    ),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
