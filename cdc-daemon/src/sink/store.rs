//! Sending a batch to MongoDB: per collection, consecutive statements of one kind go in one
//! `update` or `delete` command (at most [`STATEMENTS_PER_COMMAND`] each). On a write error the
//! command's statements are sent again one at a time — safe, as every write is idempotent, and
//! needed because FerretDB does not say which statement failed — and the statements that fail
//! alone are handed back as rejected instead of stopping the stream.

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::batch::Write;

/// Most statements sent in one command. FerretDB 1.24 keeps one SQLite connection per
/// statement open until the whole command ends, from a pool of 100: a command of more than 100
/// statements deadlocks it, and two large ones at once from different clients can too.
pub const STATEMENTS_PER_COMMAND: usize = 32;

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
    /// The statement.
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
    mut on_command: impl FnMut(&'static str, usize, std::time::Duration),
) -> Result<Vec<Rejected>, FlushError> {
    let mut rejected = Vec::new();
    for (collection, writes) in statements {
        for run in runs(writes) {
            for chunk in run.chunks(STATEMENTS_PER_COMMAND) {
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

/// Splits `writes` into maximal runs of updates or of deletes, keeping their order.
fn runs(writes: &[Write]) -> Vec<&[Write]> {
    let is_update = |write: &Write| matches!(write, Write::Update { .. });
    let mut runs = Vec::new();
    let mut start = 0;
    for index in 1..=writes.len() {
        if index == writes.len() || is_update(&writes[index]) != is_update(&writes[start]) {
            runs.push(&writes[start..index]);
            start = index;
        }
    }
    runs
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
        let lengths: Vec<usize> = runs(&writes).iter().map(|run| run.len()).collect();
        assert_eq!(lengths, [2, 1, 1]);
        assert!(runs(&[]).is_empty());
    }
}
