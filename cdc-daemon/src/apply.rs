//! The `apply` step, the one writer of the store: mapped row changes, batched, go to the
//! [`sink`](crate::sink), then what they made stale in patients' `latest` is settled and
//! written too. Streaming, the initial snapshot and support requests all write through a
//! [`Writer`], so the three share one retry policy and one way of recording dead letters.
//!
//! Three outcomes, kept apart by type: a failure of the store is retried until it passes (or
//! shutdown gives up, [`GaveUp`]); a change the mapping cannot turn into documents, or a write
//! the store refuses on its own, becomes a dead letter in `cdc_dead_letters` and the stream
//! goes on; halting at a dead letter instead (`stop_on_dead_letter`) is the pipeline's decision.
//!
//! Streaming writes a batch on a task of its own while the next one is mapped: the batch leaves
//! the mapping as a [`Taken`], a [`Writing`] marks it in flight, and the mapping's store reads
//! ([`SettledStore`]) wait until it is written. The snapshot and support requests write in
//! place ([`Writer::apply`]).
//!
//! A dead letter keeps the change as canonical Extended JSON text ([`extended_json`]), never as
//! nested documents: a refused update's `$`-prefixed and dotted keys, or a column named with a
//! dot, may be refused by MongoDB when the letter is stored or replayed. Canonical rather than
//! relaxed: it keeps every BSON type (an `int64` stays one, a date stays a date), and a type can
//! be why the store refused a write. A dead letter the store refuses to record is not dropped:
//! the writer retries it (backpressure: nothing else is written meanwhile) until it is stored.

use std::sync::Arc;
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc};
use read_model::{
    DEAD_LETTERS, LOOKUP_CHECKUPS, LOOKUP_CLINICS, LOOKUP_DEVICES, LOOKUP_PATIENT_CLINICS,
    MOVING_REPORTS, PATIENTS, REPORTS,
};

use crate::decode::Message;
use crate::mapping::latest::{self, LatestWork};
use crate::mapping::lookups::LookupStore;
use crate::mapping::{DeadLetter, Mapped, Mapper, Transaction};
use crate::metrics::{CdcMetrics, Stage};
use crate::retry::{Failures, GaveUp, Retry};
use crate::sink::{self, Batch, Limits, Mode, Write};

/// Longest Extended JSON text a dead letter keeps per field: the change itself is in
/// PostgreSQL (replay rebuilds from there), and a letter must stay far below the store's
/// largest document, also when it records a write refused for being too large.
const LETTER_TEXT_BYTES: usize = 64 * 1024;

/// The fields of a dead letter that hold Extended JSON text: the values of a change that could
/// not be mapped, or the filter and update of a write the store refused.
const LETTER_JSON_FIELDS: [&str; 3] = ["values", "filter", "update"];

/// `value` as canonical Extended JSON text, cut after [`LETTER_TEXT_BYTES`] with a marker
/// saying how much was kept (a cut text is no longer JSON).
pub fn extended_json(value: Bson) -> String {
    let mut text = value.into_canonical_extjson().to_string();
    if text.len() > LETTER_TEXT_BYTES {
        let total = text.len();
        let mut end = LETTER_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(&format!("… [truncated: {end} of {total} bytes kept]"));
    }
    text
}

/// The document a dead letter's Extended JSON `field` holds (letters recorded before the text
/// form hold the document itself); `None` if absent or cut.
pub fn letter_document(letter: &Document, field: &str) -> Option<Document> {
    match letter.get(field)? {
        Bson::String(text) => {
            let json: serde_json::Value = serde_json::from_str(text).ok()?;
            match Bson::try_from(json).ok()? {
                Bson::Document(document) => Some(document),
                _ => None,
            }
        }
        Bson::Document(document) => Some(document.clone()),
        _ => None,
    }
}

/// `letter` as relaxed Extended JSON, for people: its Extended JSON text fields inlined as
/// relaxed Extended JSON too (a cut text stays text).
pub fn letter_json(letter: Document) -> serde_json::Value {
    let inlined: Vec<(&str, Document)> = LETTER_JSON_FIELDS
        .into_iter()
        .filter_map(|field| Some((field, letter_document(&letter, field)?)))
        .collect();
    let mut json = Bson::Document(letter).into_relaxed_extjson();
    if let Some(fields) = json.as_object_mut() {
        for (field, document) in inlined {
            fields.insert(
                field.to_string(),
                Bson::Document(document).into_relaxed_extjson(),
            );
        }
    }
    json
}

/// When a batch is full and where its writes go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Flush once this many row changes are batched.
    pub max_batch_changes: usize,
    /// Flush once the batch keeps about this many bytes in memory.
    pub max_batch_bytes: usize,
    /// Flush a batch at most this long after its first change.
    pub max_batch_delay: Duration,
    /// Lanes a batch's writes to one collection go out on at once (see [`sink::lanes`]).
    pub write_lanes: usize,
    /// Where document writes go.
    pub sink: SinkMode,
}

/// Where document writes go: the store, or nowhere (a benchmarking switch, see `Config::sink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// Write to the store.
    #[default]
    Store,
    /// Drop every document write (checkpoints are still written).
    Discard,
}

/// Writes batches to the store, retrying while it is unavailable.
#[derive(Debug, Clone)]
pub struct Writer {
    database: Database,
    settings: Settings,
    metrics: CdcMetrics,
    retry: Retry,
    limits: Limits,
    /// Locked while a batch is written behind the mapping ([`Writer::writing`]).
    writing: Arc<tokio::sync::Mutex<()>>,
}

/// A batch taken out of the mapping, with everything its writing needs: its statements and what
/// it changed about patients' newest values.
#[derive(Debug)]
pub struct Taken {
    statements: Vec<(&'static str, Vec<Write>)>,
    latest: LatestWork,
    newest: Option<u64>,
    changes: usize,
}

impl Taken {
    /// Takes what `batch` and `mapper` collected, leaving both empty.
    pub fn from<S: LookupStore>(batch: &mut Batch, mapper: &mut Mapper<S>) -> Self {
        Taken {
            changes: batch.changes(),
            newest: batch.newest(),
            statements: batch.take(),
            latest: mapper.take_latest(),
        }
    }
}

/// Held while a batch is written on a task of its own: until it is dropped, every lookup read
/// through [`Writer::lookups`] waits, so that the mapping of the next batch never reads a
/// document the store has not been given yet (a cache miss, or an entry forgotten at a delete).
/// Being a lock, it also keeps a second batch from starting before the first ended.
#[derive(Debug)]
pub struct Writing {
    _held: tokio::sync::OwnedMutexGuard<()>,
}

/// The store as the mapping reads it: after every batch being written ([`Writing`]).
#[derive(Debug, Clone)]
pub struct SettledStore {
    database: Database,
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl LookupStore for SettledStore {
    async fn find(
        &self,
        collection: &'static str,
        id: &str,
    ) -> Result<Option<Document>, mongodb::error::Error> {
        drop(self.writing.lock().await);
        self.database.find(collection, id).await
    }
}

impl Writer {
    /// A writer to `database`, cutting commands by FerretDB's limits (which every store
    /// takes) until told the store's own ([`Writer::set_limits`]).
    pub fn new(database: Database, settings: Settings, metrics: CdcMetrics, retry: Retry) -> Self {
        Writer {
            database,
            settings,
            metrics,
            retry,
            limits: Limits::FERRETDB,
            writing: Arc::default(),
        }
    }

    /// Where a mapper reads its cache misses: the store, once the batch being written is in it.
    pub fn lookups(&self) -> SettledStore {
        SettledStore {
            database: self.database.clone(),
            writing: self.writing.clone(),
        }
    }

    /// Waits for the batch being written to end, then marks a new one as being written until
    /// the returned [`Writing`] is dropped.
    pub async fn writing(&self) -> Writing {
        Writing {
            _held: self.writing.clone().lock_owned().await,
        }
    }

    /// Cuts commands by `limits` from now on (the store's, [`sink::limits::detect`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The read store, for what is read or written outside batches (checkpoints, indexes).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Batch limits and sink mode.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &CdcMetrics {
        &self.metrics
    }

    /// The retry policy, for the store operations that are not writes of a batch (checkpoints).
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// Empties the read model's documents and dead letters (not the checkpoints), before an
    /// initial snapshot copies the source again.
    pub async fn clear_read_model(&self) -> Result<(), GaveUp> {
        for collection in [
            REPORTS,
            PATIENTS,
            LOOKUP_CLINICS,
            LOOKUP_DEVICES,
            LOOKUP_CHECKUPS,
            LOOKUP_PATIENT_CLINICS,
            DEAD_LETTERS,
            MOVING_REPORTS,
        ] {
            let collection = self.database.collection::<Document>(collection);
            self.retry
                .until_ok(Stage::Snapshot, || async {
                    collection.delete_many(doc! {}).await
                })
                .await?;
        }
        Ok(())
    }

    /// Whether `batch` reached a size limit and should be written now.
    pub fn is_full(&self, batch: &Batch) -> bool {
        batch.changes() >= self.settings.max_batch_changes
            || batch.bytes() >= self.settings.max_batch_bytes
    }

    /// Maps `message` into `batch`, retrying while a lookup cannot be read from the store.
    pub async fn map_retrying<S: LookupStore>(
        &self,
        mapper: &mut Mapper<S>,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<Mapped, GaveUp> {
        let mut failures = self.retry.failures(Stage::Mapping);
        batch.at(transaction.commit_lsn);
        loop {
            match mapper.map_change(message, transaction, batch).await {
                Ok(mapped) => return Ok(mapped),
                Err(error) => failures.wait(&error).await?,
            }
        }
    }

    /// Maps a row read from the source (snapshot, support request) into `batch`, recording a
    /// change it cannot map as dead letter `number` of `transaction`.
    pub async fn map_source_row<S: LookupStore>(
        &self,
        mapper: &mut Mapper<S>,
        message: &Message,
        transaction: &Transaction,
        batch: &mut Batch,
        number: &str,
    ) -> Result<(), GaveUp> {
        let mapped = self
            .map_retrying(mapper, message, transaction, batch)
            .await?;
        if let Some(letter) = mapped.dead_letter {
            self.metrics.error(Stage::Mapping);
            batch.push(self.dead_letter(transaction.commit_lsn, number, letter));
        }
        Ok(())
    }

    /// The dead-letter record of `letter`, change `number` of the transaction at `lsn`; its id
    /// (`<lsn>-<number>`) makes recording it again after a replay harmless.
    pub fn dead_letter(&self, lsn: u64, number: &str, letter: DeadLetter) -> Write {
        let origin = letter.origin.label();
        tracing::warn!(table = %origin, error = %letter.error, lsn = %read_model::lsn::format(lsn), "change recorded as a dead letter");
        self.metrics
            .dead_letters
            .with_label_values(&[origin.as_str()])
            .inc();
        let id = format!("{lsn:016X}-{number}");
        let mut record = doc! {
            "lsn": read_model::lsn::format(lsn),
            "table": origin,
        };
        if let Some(operation) = letter.operation {
            record.insert("operation", operation.name());
        }
        record.insert("values", extended_json(Bson::Document(letter.values)));
        record.insert("error", letter.error);
        record.insert("recorded_at", DateTime::now());
        Write::upsert(DEAD_LETTERS, id.as_str(), record)
    }

    /// Writes `batch`, then what it made stale in patients' `latest`, retrying while the store
    /// is unavailable, then lets `mapper`'s caches drop what they no longer need. Statements the
    /// store refuses on their own become dead letters named after `lsn`.
    pub async fn apply<S: LookupStore>(
        &self,
        batch: &mut Batch,
        mapper: &mut Mapper<S>,
        lsn: u64,
        mode: Mode,
    ) -> Result<(), GaveUp> {
        self.write_taken(Taken::from(batch, mapper), lsn, mode)
            .await?;
        mapper.end_batch();
        Ok(())
    }

    /// Writes a batch taken out of the mapping (see [`Writer::apply`]); needs no mapper, so that
    /// it can run while the next batch is mapped.
    pub async fn write_taken(&self, taken: Taken, lsn: u64, mode: Mode) -> Result<(), GaveUp> {
        let Taken {
            statements,
            latest,
            newest,
            changes,
        } = taken;
        self.write(&statements, lsn, mode).await?;
        // The batch's documents are freed before the settlement reads reports.
        drop(statements);
        // Settling reads the store, which a discarding sink never wrote.
        if !latest.is_empty() && self.settings.sink == SinkMode::Store {
            let writes = self
                .retry
                .until_ok(Stage::Mapping, || async {
                    latest::settle(&self.database, &latest).await
                })
                .await?;
            // Derived from every change of the batch: as new as the newest of them.
            let mut derived = Batch::default();
            if let Some(newest) = newest {
                derived.at(newest);
            }
            derived.extend(writes);
            self.write(&derived.take(), lsn, Mode::Update).await?;
        }
        if changes > 0 {
            self.metrics.batch_changes.observe(changes as f64);
        }
        Ok(())
    }

    /// Sends statements, retrying while the store is unavailable; statements the store refuses
    /// on their own become dead letters.
    async fn write(
        &self,
        statements: &[(&'static str, Vec<Write>)],
        lsn: u64,
        mode: Mode,
    ) -> Result<(), GaveUp> {
        let sink::Skipped { rejected, stale } = self.send(statements, mode).await?;
        let metrics = &self.metrics;
        for collection in stale {
            metrics.stale_writes.with_label_values(&[collection]).inc();
        }
        if rejected.is_empty() {
            return Ok(());
        }
        let mut letters = Batch::default();
        for (index, refused) in rejected.into_iter().enumerate() {
            metrics.error(Stage::Sink);
            metrics
                .dead_letters
                .with_label_values(&[refused.write.collection()])
                .inc();
            tracing::warn!(collection = refused.write.collection(), error = %refused.error, "the store refused a write; recorded as a dead letter");
            let (filter, update) = match &refused.write {
                Write::Update { filter, update, .. } => (
                    extended_json(Bson::Document(filter.clone())),
                    Bson::String(extended_json(Bson::Document(update.clone()))),
                ),
                Write::Delete { filter, .. } => {
                    (extended_json(Bson::Document(filter.clone())), Bson::Null)
                }
                Write::Move { id, from, to, .. } => (
                    extended_json(Bson::Document(doc! { "_id": id, "patient_id": from })),
                    // What the move does to the document, as an update would say it.
                    Bson::String(extended_json(Bson::Document(
                        doc! { "$set": { "patient_id": to } },
                    ))),
                ),
            };
            letters.push(Write::upsert(
                DEAD_LETTERS,
                format!("{lsn:016X}-store-{index}").as_str(),
                doc! {
                    "lsn": read_model::lsn::format(lsn),
                    "collection": refused.write.collection(),
                    "filter": filter,
                    "update": update,
                    "error": refused.error,
                    "recorded_at": DateTime::now(),
                },
            ));
        }
        let failures = self.retry.failures(Stage::Sink);
        // Dead letters carry no LSN guard: the store skips none as stale.
        store_letters(letters.take(), failures, |letters| async move {
            Ok(self.send(&letters, Mode::Update).await?.rejected)
        })
        .await
    }

    /// One [`sink::flush`], retried until the store takes it.
    async fn send(
        &self,
        statements: &[(&'static str, Vec<Write>)],
        mode: Mode,
    ) -> Result<sink::Skipped, GaveUp> {
        if statements.is_empty() || self.settings.sink == SinkMode::Discard {
            return Ok(sink::Skipped::default());
        }
        let metrics = &self.metrics;
        self.retry
            .until_ok(Stage::Sink, || async {
                sink::flush(
                    &self.database,
                    statements,
                    mode,
                    self.limits,
                    self.settings.write_lanes,
                    |collection, count, elapsed| {
                        metrics
                            .store_writes
                            .with_label_values(&[collection])
                            .inc_by(count as u64);
                        metrics.store_write_seconds.observe(elapsed.as_secs_f64());
                    },
                )
                .await
            })
            .await
    }
}

/// Sends `letters` with `send` until the store has taken every one: a letter it refuses is
/// sent again after the retry policy's backoff, counted as an error of the sink, and nothing
/// else is written meanwhile. Only shutdown ends the waiting ([`GaveUp`]), and then the batch
/// behind the letters is replayed on the next start.
async fn store_letters<F, Fut>(
    mut letters: Vec<(&'static str, Vec<Write>)>,
    mut failures: Failures<'_>,
    mut send: F,
) -> Result<(), GaveUp>
where
    F: FnMut(Vec<(&'static str, Vec<Write>)>) -> Fut,
    Fut: Future<Output = Result<Vec<sink::Rejected>, GaveUp>>,
{
    loop {
        let refused = send(letters).await?;
        let Some(first) = refused.first() else {
            return Ok(());
        };
        tracing::error!(
            letters = refused.len(),
            "the store refuses to record dead letters; writing waits until it takes them"
        );
        failures
            .wait(&format!("the store refused a dead letter: {}", first.error))
            .await?;
        let mut again = Batch::default();
        again.extend(refused.into_iter().map(|refused| refused.write));
        letters = again.take();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use service_plumbing::shutdown::Shutdown;

    use super::*;

    fn retry(shutdown: &Shutdown) -> (Retry, CdcMetrics) {
        let registry = service_plumbing::metrics::Metrics::new().expect("a registry");
        let metrics = CdcMetrics::register(&registry).expect("metrics");
        let retry = Retry::new(metrics.clone(), shutdown.clone(), Duration::ZERO);
        (retry, metrics)
    }

    fn letter(id: &str) -> Write {
        Write::upsert(DEAD_LETTERS, id, doc! { "error": "e" })
    }

    fn sink_errors(metrics: &CdcMetrics) -> u64 {
        metrics.errors.with_label_values(&["sink"]).get()
    }

    #[test]
    fn a_change_is_kept_as_canonical_extended_json_that_reads_back() {
        let update = doc! { "$set": { "m.8480-6": 1_i64, "at": DateTime::from_millis(5) } };
        let text = extended_json(Bson::Document(update.clone()));
        assert!(text.contains(r#""$numberLong":"1""#), "{text}");
        let letter = doc! { "update": &text, "filter": { "_id": "old form" } };
        assert_eq!(letter_document(&letter, "update"), Some(update));
        assert_eq!(
            letter_document(&letter, "filter"),
            Some(doc! { "_id": "old form" })
        );
        let printed = letter_json(letter);
        assert_eq!(printed["update"]["$set"]["m.8480-6"], 1);
    }

    #[test]
    fn a_text_over_the_bound_is_cut_with_a_marker() {
        let large = doc! { "text": "é".repeat(LETTER_TEXT_BYTES) };
        let text = extended_json(Bson::Document(large));
        assert!(text.len() < LETTER_TEXT_BYTES + 100, "{}", text.len());
        assert!(
            text.ends_with("bytes kept]"),
            "{}",
            &text[text.len() - 60..]
        );
        let letter = doc! { "values": &text };
        assert_eq!(letter_document(&letter, "values"), None);
        assert!(letter_json(letter)["values"].is_string());
    }

    #[tokio::test]
    async fn a_lookup_waits_for_the_batch_being_written() {
        let shutdown = Shutdown::new();
        let (retry, metrics) = retry(&shutdown);
        // Nothing listens there: a find that gets to the store fails quickly.
        let client = mongodb::Client::with_uri_str(
            "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=50&connectTimeoutMS=50",
        )
        .await
        .expect("a client");
        let settings = Settings {
            max_batch_changes: 1,
            max_batch_bytes: 1,
            max_batch_delay: Duration::ZERO,
            write_lanes: 1,
            sink: SinkMode::Store,
        };
        let writer = Writer::new(client.database("unused"), settings, metrics, retry);
        let writing = writer.writing().await;
        let lookups = writer.lookups();
        let mut find = tokio::spawn(async move { lookups.find(REPORTS, "r").await });
        let waited = tokio::time::timeout(Duration::from_millis(500), &mut find).await;
        assert!(
            waited.is_err(),
            "the lookup read the store during the write"
        );
        drop(writing);
        let found = tokio::time::timeout(Duration::from_secs(10), find)
            .await
            .expect("the lookup goes on once the write ended")
            .expect("not panicked");
        assert!(found.is_err(), "it reached the (absent) store");
    }

    #[tokio::test]
    async fn a_refused_dead_letter_is_sent_again_until_the_store_takes_it() {
        let shutdown = Shutdown::new();
        let (retry, metrics) = retry(&shutdown);
        let sent: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut batch = Batch::default();
        batch.extend([letter("a"), letter("b")]);
        let outcome = store_letters(batch.take(), retry.failures(Stage::Sink), |letters| {
            let sent = sent.clone();
            async move {
                let mut sent = sent.lock().expect("not poisoned");
                sent.push(letters.iter().map(|(_, writes)| writes.len()).sum());
                // The store refuses letter `b` twice, then takes it.
                let refused = (sent.len() < 3).then(|| sink::Rejected {
                    write: letter("b"),
                    error: "too large".to_string(),
                });
                Ok(refused.into_iter().collect())
            }
        })
        .await;
        assert!(outcome.is_ok());
        assert_eq!(*sent.lock().expect("not poisoned"), [2, 1, 1]);
        assert_eq!(sink_errors(&metrics), 2);
    }

    #[tokio::test]
    async fn a_store_refusing_every_dead_letter_holds_the_writer_until_shutdown_gives_up() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let (retry, metrics) = retry(&shutdown);
        let mut batch = Batch::default();
        batch.push(letter("a"));
        let outcome = store_letters(batch.take(), retry.failures(Stage::Sink), |_| async {
            Ok(vec![sink::Rejected {
                write: letter("a"),
                error: "refused".to_string(),
            }])
        })
        .await;
        assert!(matches!(outcome, Err(GaveUp)));
        assert_eq!(sink_errors(&metrics), 1);
    }
}
