//! Replication checkpoints: per slot, the end LSN of the last source transaction whose writes
//! the store has acknowledged. The daemon writes it after each batch, then confirms it to
//! PostgreSQL; the reports API reads it to tell how fresh its answers are.

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};

use crate::CHECKPOINTS;
use crate::lsn;

/// A checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every source change before this WAL position is in the store.
    pub lsn: u64,
    /// Commit time of the last applied transaction (or of the position, when advanced while
    /// idle), in milliseconds since the Unix epoch.
    pub commit_time_millis: i64,
}

/// Reading or writing a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store refused or could not be reached.
    #[error("checkpoint store operation failed")]
    Store(#[from] mongodb::error::Error),
    /// The stored document is not a checkpoint.
    #[error("the checkpoint of slot {slot} is malformed: {detail}")]
    Malformed {
        /// The slot.
        slot: String,
        /// What is wrong.
        detail: String,
    },
}

/// The checkpoint of `slot`, if the daemon has written one.
pub async fn load(database: &Database, slot: &str) -> Result<Option<Checkpoint>, CheckpointError> {
    let found = database
        .collection::<Document>(CHECKPOINTS)
        .find_one(doc! { "_id": slot })
        .await?;
    let Some(document) = found else {
        return Ok(None);
    };
    let malformed = |detail: &str| CheckpointError::Malformed {
        slot: slot.to_string(),
        detail: detail.to_string(),
    };
    let lsn = document
        .get_str("lsn")
        .map_err(|_| malformed("lsn is missing"))?;
    let lsn = lsn::parse(lsn).map_err(|error| malformed(&error.to_string()))?;
    let commit_time_millis = document
        .get_datetime("commit_time")
        .map(|time| time.timestamp_millis())
        .unwrap_or(0);
    Ok(Some(Checkpoint {
        lsn,
        commit_time_millis,
    }))
}

/// Stores `checkpoint` as the checkpoint of `slot` (the LSN as PostgreSQL writes it), whatever
/// was stored before (a new snapshot starts over).
pub async fn save(
    database: &Database,
    slot: &str,
    checkpoint: Checkpoint,
) -> Result<(), CheckpointError> {
    database
        .collection::<Document>(CHECKPOINTS)
        .update_one(doc! { "_id": slot }, fields(checkpoint))
        .upsert(true)
        .await?;
    Ok(())
}

/// Moves the checkpoint of `slot` forward to `checkpoint`; false, with nothing written, if the
/// stored one is already further (a standby took the slot over and went on while this daemon
/// was cut off): a checkpoint never moves back.
pub async fn advance(
    database: &Database,
    slot: &str,
    checkpoint: Checkpoint,
) -> Result<bool, CheckpointError> {
    let not_ahead = doc! { "$not": { "$gt": lsn::to_position(checkpoint.lsn) } };
    let written = database
        .collection::<Document>(CHECKPOINTS)
        .update_one(
            doc! { "_id": slot, "position": not_ahead },
            fields(checkpoint),
        )
        .upsert(true)
        .await;
    match written {
        Ok(_) => Ok(true),
        // The filter matched nothing and the upsert met the existing `_id`: it is ahead.
        Err(error) if is_duplicate_key(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn fields(checkpoint: Checkpoint) -> Document {
    doc! { "$set": {
        "lsn": lsn::format(checkpoint.lsn),
        "position": lsn::to_position(checkpoint.lsn),
        "commit_time": DateTime::from_millis(checkpoint.commit_time_millis),
        "updated_at": DateTime::now(),
    } }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(failure))
            if failure.code == 11000
    )
}
