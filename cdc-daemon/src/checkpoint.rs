//! The `checkpoint` step: once a batch's writes are acknowledged, the end LSN of the last
//! transaction it completed is stored in the store; only then does the pipeline confirm it to
//! PostgreSQL, which may then recycle the WAL before it. In that order: a crash between the two
//! replays a little, and replaying is harmless; the other order could lose changes.

use mongodb::Database;
use mongodb::bson::DateTime;
use read_model::checkpoint::{self, Checkpoint, CheckpointError};

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

    /// Where streaming resumes; `None` until an initial snapshot completed.
    pub async fn load(&self) -> Result<Option<u64>, CheckpointError> {
        Ok(checkpoint::load(&self.database, &self.slot)
            .await?
            .map(|checkpoint| checkpoint.lsn))
    }

    /// Records that the initial snapshot holds everything before `lsn`, the new slot's start
    /// (the slot is already there, so there is nothing to confirm).
    pub async fn start_at(&self, lsn: u64) -> Result<(), CheckpointError> {
        checkpoint::save(
            &self.database,
            &self.slot,
            Checkpoint {
                lsn,
                commit_time_millis: DateTime::now().timestamp_millis(),
            },
        )
        .await
    }

    /// Stores `lsn` (reached at `commit_time`) as applied; the caller confirms it to the slot
    /// after this returns. A stored checkpoint already further is left alone: another daemon
    /// took the slot over while this one was cut off, and this one's session is about to end.
    pub async fn advance(&self, lsn: u64, commit_time: DateTime) -> Result<(), CheckpointError> {
        let checkpoint = Checkpoint {
            lsn,
            commit_time_millis: commit_time.timestamp_millis(),
        };
        if !checkpoint::advance(&self.database, &self.slot, checkpoint).await? {
            tracing::warn!(slot = %self.slot, lsn = %read_model::lsn::format(lsn), "the stored checkpoint is further than this daemon: another daemon has taken the slot over");
        }
        Ok(())
    }
}
