//! The `sink` step: document writes collected into a batch, then sent to the store with as few
//! round trips as possible.
//!
//! Delivery is at least once: after a crash the daemon replays every transaction after its
//! checkpoint, so every write must be idempotent — `$set`/`$unset`/upserts/deletes and
//! conditional filters, never `$inc` or `$push`. Within a batch, writes to one collection keep
//! their order (a fan-out to every report of a patient must follow the reports written before
//! it); several single-document `$set`/`$unset` writes to the same document are conflated into
//! one while no multi-document write on that collection stands between them. Commands are cut
//! by the store's [`limits`], which the daemon asks the store for before streaming, and sent on
//! several [`lanes`] at once, each document's writes on one lane.

mod batch;
pub mod lanes;
pub mod limits;
mod store;

pub use self::batch::{Batch, Key, Write};
pub use self::limits::Limits;
pub use self::store::{FlushError, Mode, Rejected, Skipped, flush};
