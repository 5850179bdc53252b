//! The `checkpoint` step: once a batch's writes are acknowledged, the end LSN of the last
//! transaction it completed is stored in the store, then confirmed to PostgreSQL, which may
//! then recycle the WAL before it. In that order: a crash between the two replays a little, and
//! replaying is harmless; the other order could lose changes.

use mongodb::Database;
use mongodb::bson::DateTime;
use read_model::checkpoint::{self, Checkpoint, CheckpointError};

use crate::replication::Stream;

/// Reads and advances one slot's checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    database: Database,
    slot: String,
}

impl Checkpoints {
    /// The checkpoints of `slot` in `database`.
    pub fn new(database: Database, slot: String) -> Self {
        Checkpoints { database, slot }
    }

    /// Where streaming resumes: the stored checkpoint, or 0 (the slot's own position) when the
    /// daemon never applied anything.
    pub async fn resume_position(&self) -> Result<u64, CheckpointError> {
        Ok(checkpoint::load(&self.database, &self.slot)
            .await?
            .map_or(0, |checkpoint| checkpoint.lsn))
    }

    /// Stores `lsn` (reached at `commit_time`) as applied, then confirms it on `stream`.
    pub async fn advance(
        &self,
        stream: &Stream,
        lsn: u64,
        commit_time: DateTime,
    ) -> Result<(), CheckpointError> {
        checkpoint::save(
            &self.database,
            &self.slot,
            Checkpoint {
                lsn,
                commit_time_millis: commit_time.timestamp_millis(),
            },
        )
        .await?;
        stream.confirm(lsn);
        Ok(())
    }
}
