//! Collecting writes: ordered per collection, conflated per document, each stamped with the
//! commit LSN of the change that made it (its guard, see [`Write`]).

use std::collections::HashMap;

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use read_model::lsn::to_position;
use read_model::{DEAD_LETTERS, REPORTS};

use crate::resident::Resident;

/// One write to the store.
///
/// A write made by a change carries the change's commit LSN (`lsn`, stamped by
/// [`Batch::push`]); the sink sends it conditional on the stored document being no newer, and
/// records the LSN in the document (`_cdc.position`). So a replay after a crash, or a stale
/// daemon's late batch, never moves a document back to an older state; a write at the same
/// LSN applies again, which is harmless (every write is idempotent) and needed (a crash may
/// have landed only part of a transaction's writes to a document).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// An `update` statement: `filter`, operator-only `update`, `upsert`, `multi`.
    Update {
        /// Target collection.
        collection: &'static str,
        /// Which documents.
        filter: Document,
        /// `$set`/`$unset` operators.
        update: Document,
        /// Create the document when the filter matches none.
        upsert: bool,
        /// Update every match rather than the first.
        multi: bool,
        /// The commit LSN of the change that made the write, if it is guarded.
        lsn: Option<u64>,
    },
    /// A `delete` statement.
    Delete {
        /// Target collection.
        collection: &'static str,
        /// Which documents.
        filter: Document,
        /// Delete every match rather than the first.
        multi: bool,
        /// The commit LSN of the change that made the write, if it is guarded.
        lsn: Option<u64>,
    },
    /// Report `id` moves from patient `from` to patient `to`, keeping its fields and
    /// measurements: the shard key of `reports` changes, which a sharded cluster refuses in
    /// an update, so the sink moves the document itself in stream order (see
    /// `store::move_report`). The report's new fields follow as a write of their own.
    Move {
        /// The report id.
        id: String,
        /// The patient it is stored under.
        from: String,
        /// The patient it moves to.
        to: String,
        /// The commit LSN of the change that moved it.
        lsn: Option<u64>,
    },
}

/// The single document a write addresses: its `_id` and, for a report, its patient too. A
/// sharded cluster routes a statement by the shard key in its filter (`patient_id` for
/// `reports`); an upsert without it is refused there, and a read or delete without it goes to
/// every shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Key(Document);

impl Key {
    /// Report `id` of patient `patient_id`.
    pub fn report(id: &str, patient_id: &str) -> Key {
        Key(doc! { "_id": id, "patient_id": patient_id })
    }
}

impl From<&str> for Key {
    fn from(id: &str) -> Key {
        Key(doc! { "_id": id })
    }
}

impl Write {
    /// `$set` `fields` on the document `key`, creating it if needed.
    pub fn upsert(collection: &'static str, key: impl Into<Key>, fields: Document) -> Write {
        Write::Update {
            collection,
            filter: key.into().0,
            update: doc! { "$set": fields },
            upsert: true,
            multi: false,
            lsn: None,
        }
    }

    /// Applies `update` to the document `key` if it exists.
    pub fn update(collection: &'static str, key: impl Into<Key>, update: Document) -> Write {
        Write::Update {
            collection,
            filter: key.into().0,
            update,
            upsert: false,
            multi: false,
            lsn: None,
        }
    }

    /// Applies `update` to every document matching `filter`.
    pub fn update_many(collection: &'static str, filter: Document, update: Document) -> Write {
        Write::Update {
            collection,
            filter,
            update,
            upsert: false,
            multi: true,
            lsn: None,
        }
    }

    /// Moves report `id` from patient `from` to patient `to`.
    pub fn move_report(id: &str, from: &str, to: &str) -> Write {
        Write::Move {
            id: id.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            lsn: None,
        }
    }

    /// Deletes the document `key`.
    pub fn delete(collection: &'static str, key: impl Into<Key>) -> Write {
        Write::Delete {
            collection,
            filter: key.into().0,
            multi: false,
            lsn: None,
        }
    }

    /// Deletes every document matching `filter`.
    pub fn delete_many(collection: &'static str, filter: Document) -> Write {
        Write::Delete {
            collection,
            filter,
            multi: true,
            lsn: None,
        }
    }

    /// The collection written.
    pub fn collection(&self) -> &'static str {
        match self {
            Write::Update { collection, .. } | Write::Delete { collection, .. } => collection,
            Write::Move { .. } => REPORTS,
        }
    }

    /// Whether the write addresses every document its filter matches (a fan-out).
    pub fn is_multi(&self) -> bool {
        match self {
            Write::Update { multi, .. } | Write::Delete { multi, .. } => *multi,
            Write::Move { .. } => false,
        }
    }

    /// The commit LSN the write is guarded by, if any.
    pub fn lsn(&self) -> Option<u64> {
        match self {
            Write::Update { lsn, .. } | Write::Delete { lsn, .. } | Write::Move { lsn, .. } => *lsn,
        }
    }

    pub(super) fn set_lsn(&mut self, position: Option<u64>) {
        match self {
            Write::Update { lsn, .. } | Write::Delete { lsn, .. } | Write::Move { lsn, .. } => {
                *lsn = position;
            }
        }
    }

    /// The filter as sent: with the guard, when the write has one, that the stored document is
    /// no newer than the change (a document without a position is older than any change). A
    /// move's is that of the document it moves.
    pub fn sent_filter(&self) -> Document {
        let (mut sent, lsn) = match self {
            Write::Update { filter, lsn, .. } | Write::Delete { filter, lsn, .. } => {
                (filter.clone(), lsn)
            }
            Write::Move { id, from, lsn, .. } => (Key::report(id, from).0, lsn),
        };
        guard(&mut sent, *lsn);
        sent
    }

    /// The update as sent (`None` for a delete or a move): recording the write's LSN as the
    /// document's position, inside a `_cdc` the update sets whole or as its own path.
    pub fn sent_update(&self) -> Option<Document> {
        let Write::Update { update, lsn, .. } = self else {
            return None;
        };
        let Some(lsn) = lsn else {
            return Some(update.clone());
        };
        let mut sent = update.clone();
        if sent.get_document("$set").is_err() {
            sent.insert("$set", Document::new());
        }
        if let Ok(set) = sent.get_document_mut("$set") {
            match set.get_document_mut("_cdc") {
                Ok(cdc) => {
                    cdc.insert("position", to_position(*lsn));
                }
                Err(_) => {
                    set.insert(POSITION, to_position(*lsn));
                }
            }
        }
        Some(sent)
    }

    /// The document an upsert of one document that only `$set`s creates when none matches:
    /// the filter's fields (`_id`, a report's `patient_id`) and the set fields, dotted paths
    /// nested, the position included. `None` for any other write.
    pub fn new_document(&self) -> Option<Document> {
        let Write::Update {
            filter,
            upsert: true,
            multi: false,
            ..
        } = self
        else {
            return None;
        };
        let update = self.sent_update()?;
        if !filter.contains_key("_id") || update.len() != 1 {
            return None;
        }
        let mut document = filter.clone();
        if document
            .values()
            .any(|value| matches!(value, Bson::Document(_)))
        {
            return None;
        }
        for (path, value) in update.get_document("$set").ok()? {
            let mut parts = path.split('.').peekable();
            let mut target = &mut document;
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    match target.get(part) {
                        Some(existing) if existing == value && filter.contains_key(part) => {}
                        Some(_) => return None,
                        None => {
                            target.insert(part, value.clone());
                        }
                    }
                } else {
                    if !target.contains_key(part) {
                        target.insert(part, Document::new());
                    }
                    target = target.get_document_mut(part).ok()?;
                }
            }
        }
        Some(document)
    }

    /// For a single-document update (the conflatable kind), a hash of its filter: the
    /// filter's keys and text values, which name the document. Two filters may share a hash,
    /// so a merge compares the filters themselves (see [`merge`]); hashing instead of
    /// formatting the filter keeps pushing a write free of allocations.
    fn conflation_key(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        match self {
            Write::Update {
                filter,
                multi: false,
                ..
            } if filter.contains_key("_id") => {
                let mut hasher = std::hash::DefaultHasher::new();
                for (key, value) in filter {
                    key.hash(&mut hasher);
                    value.as_str().hash(&mut hasher);
                }
                Some(hasher.finish())
            }
            _ => None,
        }
    }

    /// What the write keeps in memory while it waits in a batch: itself and its documents'
    /// heap, often several times its size as BSON (every key and string is an allocation of
    /// its own, every value a full `Bson`).
    fn resident_bytes(&self) -> usize {
        size_of::<Write>()
            + match self {
                Write::Update { filter, update, .. } => filter.heap_bytes() + update.heap_bytes(),
                Write::Delete { filter, .. } => filter.heap_bytes(),
                Write::Move { id, from, to, .. } => id.len() + from.len() + to.len(),
            }
    }

    /// Size in bytes of the filter and update as BSON, for bounding a command.
    pub(super) fn approximate_size(&self) -> usize {
        match self {
            Write::Update { filter, update, .. } => bson_size(filter) + bson_size(update),
            Write::Delete { filter, .. } => bson_size(filter),
            Write::Move { id, from, to, .. } => id.len() + from.len() + to.len(),
        }
    }
}

/// Where a document records the commit LSN of the last change written to it.
pub const POSITION: &str = "_cdc.position";

/// Adds to `filter` the guard of a write made at `lsn`, if any: the stored document is no
/// newer than the change.
fn guard(filter: &mut Document, lsn: Option<u64>) {
    if let Some(lsn) = lsn {
        filter.insert(POSITION, doc! { "$not": { "$gt": to_position(lsn) } });
    }
}

/// Size of `document` in bytes as BSON, for bounding commands: counted from its fields,
/// without encoding it (encoding every write just to count was a twentieth of the daemon's
/// CPU).
pub(super) fn bson_size(document: &Document) -> usize {
    elements_size(document.iter().map(|(key, value)| (key.len(), value)))
}

/// A document's length prefix, its elements (a type byte, the key as a C string, the value)
/// and its terminating zero.
fn elements_size<'v>(elements: impl Iterator<Item = (usize, &'v Bson)>) -> usize {
    let elements: usize = elements
        .map(|(key, value)| 1 + key + 1 + value_size(value))
        .sum();
    4 + elements + 1
}

/// Bytes of `value` as a BSON element's value.
fn value_size(value: &Bson) -> usize {
    let string = |text: &str| 4 + text.len() + 1;
    match value {
        Bson::Double(_) | Bson::Int64(_) | Bson::DateTime(_) | Bson::Timestamp(_) => 8,
        Bson::Int32(_) => 4,
        Bson::Boolean(_) => 1,
        Bson::Null | Bson::Undefined | Bson::MaxKey | Bson::MinKey => 0,
        Bson::ObjectId(_) => 12,
        Bson::Decimal128(_) => 16,
        Bson::String(text) | Bson::JavaScriptCode(text) | Bson::Symbol(text) => string(text),
        Bson::Document(document) => bson_size(document),
        // An array is a document keyed "0", "1", ...
        Bson::Array(items) => elements_size(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| (decimal_digits(index), item)),
        ),
        Bson::Binary(binary) => {
            // The old binary subtype repeats the length inside the data.
            let old = usize::from(binary.subtype == bson::spec::BinarySubtype::BinaryOld) * 4;
            4 + 1 + old + binary.bytes.len()
        }
        Bson::RegularExpression(regex) => regex.pattern.len() + 1 + regex.options.len() + 1,
        Bson::JavaScriptCodeWithScope(code) => 4 + string(&code.code) + bson_size(&code.scope),
        // Deprecated, never written by the daemon; its fields are private, so it is encoded.
        Bson::DbPointer(_) => RawDocumentBuf::try_from(&doc! { "": value.clone() })
            .map_or(0, |raw| raw.as_bytes().len() - 4 - 1 - 2),
    }
}

/// How many decimal digits `number` has.
fn decimal_digits(number: usize) -> usize {
    number
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

/// Writes waiting to be flushed.
#[derive(Debug, Default)]
pub struct Batch {
    /// Per collection, statements in the order they were pushed.
    statements: HashMap<&'static str, Vec<Write>>,
    /// Per collection and hash of a document's filter, the position of the statement later
    /// `$set`/`$unset` writes may merge into. Cleared for a collection by any other kind of
    /// write to it.
    open: HashMap<&'static str, HashMap<u64, usize>>,
    changes: usize,
    bytes: usize,
    /// The commit LSN of the change being mapped, stamped on the writes pushed.
    lsn: Option<u64>,
    /// The highest LSN stamped since the batch was last taken.
    newest: Option<u64>,
}

impl Batch {
    /// Writes pushed from now on were made by a change committed at `lsn`.
    pub fn at(&mut self, lsn: u64) {
        self.lsn = Some(lsn);
    }

    /// The highest commit LSN of the writes pushed since the batch was last taken: the
    /// position of what is derived from them (patients' `latest`).
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Adds `write`, merging it into an earlier write to the same document when that keeps the
    /// outcome the same. A write to any collection but the dead letters (whose ids name their
    /// change) is stamped with the current LSN (see [`Batch::at`]).
    pub fn push(&mut self, mut write: Write) {
        if write.collection() != DEAD_LETTERS && self.lsn.is_some() {
            write.set_lsn(self.lsn);
            self.newest = self.newest.max(self.lsn);
        }
        self.changes += 1;
        // A write merged into an earlier one is still counted whole: the estimate stays above
        // what the batch holds.
        self.bytes += write.resident_bytes();
        let collection = write.collection();
        let statements = self.statements.entry(collection).or_default();
        let open = self.open.entry(collection).or_default();
        let Some(key) = write.conflation_key() else {
            // A multi-document write, a delete or a move: later writes must not move before it.
            open.clear();
            statements.push(write);
            return;
        };
        if let Some(&position) = open.get(&key)
            && let Some(earlier) = statements.get_mut(position)
            && merge(earlier, &write)
        {
            return;
        }
        open.insert(key, statements.len());
        statements.push(write);
    }

    /// Adds every write of `writes`.
    pub fn extend(&mut self, writes: impl IntoIterator<Item = Write>) {
        for write in writes {
            self.push(write);
        }
    }

    /// Changes pushed since the batch was last taken (before conflation).
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Estimated bytes the pushed writes keep in memory (see [`crate::resident`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.statements.values().all(Vec::is_empty)
    }

    /// The statements per collection, in order, leaving the batch empty: `reports` first, then
    /// the other collections by name. Whether a rename fans out to the reports depends on the
    /// stored patient, clinic or device document; writing the fan-out before that document
    /// means a crash between the two replays a fan-out rather than skipping it for good.
    pub fn take(&mut self) -> Vec<(&'static str, Vec<Write>)> {
        self.open.clear();
        self.changes = 0;
        self.bytes = 0;
        self.newest = None;
        let mut taken: Vec<_> = self.statements.drain().collect();
        taken.sort_by_key(|(collection, _)| (*collection != REPORTS, *collection));
        taken
    }
}

/// Merges `later` into `earlier` (both single-document updates) if they address the same
/// document and the merged statement does what the two do one after the other. Edits
/// `earlier` in place: merging many writes into one statement stays linear.
fn merge(earlier: &mut Write, later: &Write) -> bool {
    let (
        Write::Update {
            filter: first_filter,
            update: first,
            upsert: first_upsert,
            lsn: first_lsn,
            ..
        },
        Write::Update {
            filter: second_filter,
            update: second,
            upsert: second_upsert,
            lsn: second_lsn,
            ..
        },
    ) = (earlier, later)
    else {
        return false;
    };
    if first_filter != second_filter {
        return false;
    }
    // An upsert after a plain update could create a document the plain update skipped.
    if *second_upsert && !*first_upsert {
        return false;
    }
    let only_set_unset = |update: &Document| update.keys().all(|k| k == "$set" || k == "$unset");
    if !only_set_unset(first) || !only_set_unset(second) {
        return false;
    }
    let later_paths = ["$set", "$unset"]
        .into_iter()
        .filter_map(|operator| second.get_document(operator).ok())
        .flat_map(Document::keys);
    for path in later_paths {
        if nested_conflict(first, path) {
            return false;
        }
    }
    for (operator, other) in [("$set", "$unset"), ("$unset", "$set")] {
        let Ok(fields) = second.get_document(operator) else {
            continue;
        };
        for (path, value) in fields {
            if let Ok(opposite) = first.get_document_mut(other) {
                opposite.remove(path);
            }
            if first.get_document(operator).is_err() {
                first.insert(operator, Document::new());
            }
            if let Ok(target) = first.get_document_mut(operator) {
                target.insert(path.clone(), value.clone());
            }
        }
    }
    for operator in ["$set", "$unset"] {
        if first.get_document(operator).is_ok_and(Document::is_empty) {
            first.remove(operator);
        }
    }
    *first_lsn = (*first_lsn).max(*second_lsn);
    true
}

/// Whether `update` writes a path that is a proper prefix of `path`, or has `path` as a proper
/// prefix (`a` and `a.b` in one update conflict; the same path twice is fine, the later wins).
fn nested_conflict(update: &Document, path: &str) -> bool {
    let operators: Vec<&Document> = ["$set", "$unset"]
        .into_iter()
        .filter_map(|operator| update.get_document(operator).ok())
        .collect();
    let prefix_written = path.match_indices('.').any(|(end, _)| {
        operators
            .iter()
            .any(|fields| fields.contains_key(&path[..end]))
    });
    let extends_path = |key: &String| {
        key.len() > path.len() && key.starts_with(path) && key.as_bytes()[path.len()] == b'.'
    };
    prefix_written
        || operators
            .iter()
            .any(|fields| fields.keys().any(extends_path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn set(id: &str, path: &str, value: i32) -> Write {
        Write::update("reports", id, doc! { "$set": { path: value } })
    }

    #[test]
    fn writes_to_one_document_are_conflated_later_values_winning() {
        let mut batch = Batch::default();
        batch.push(Write::upsert("reports", "r1", doc! { "status": "final" }));
        batch.push(set("r1", "measurements.8480-6", 1));
        batch.push(set("r1", "measurements.8480-6", 2));
        batch.push(Write::update(
            "reports",
            "r1",
            doc! { "$unset": { "notes": "" } },
        ));
        let taken = batch.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            taken[0].1,
            [Write::Update {
                collection: "reports",
                filter: doc! { "_id": "r1" },
                update: doc! {
                    "$set": { "status": "final", "measurements.8480-6": 2 },
                    "$unset": { "notes": "" },
                },
                upsert: true,
                multi: false,
                lsn: None,
            }]
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn writes_are_stamped_with_their_changes_lsn_and_a_merge_keeps_the_newest() {
        let mut batch = Batch::default();
        batch.at(7);
        batch.push(set("r1", "a", 1));
        batch.at(9);
        batch.push(set("r1", "b", 2));
        batch.push(Write::upsert(DEAD_LETTERS, "0-1", doc! { "error": "x" }));
        assert_eq!(batch.newest(), Some(9));
        let taken = batch.take();
        let lsns: Vec<Option<u64>> = taken
            .iter()
            .flat_map(|(_, writes)| writes.iter().map(Write::lsn))
            .collect();
        assert_eq!(lsns, [Some(9), None], "reports first, then the dead letter");
        assert_eq!(batch.newest(), None);
    }

    #[test]
    fn a_guarded_write_is_sent_for_documents_no_newer_and_records_its_position() {
        let mut batch = Batch::default();
        batch.at(0x1_0000_0010);
        batch.push(Write::upsert(
            "reports",
            Key::report("r1", "p1"),
            doc! { "status": "final", "_cdc": { "lsn": "1/10" } },
        ));
        batch.push(Write::delete("patients", "p2"));
        let taken = batch.take();
        let (upsert, delete) = (&taken[0].1[0], &taken[1].1[0]);
        let guard = doc! { "$not": { "$gt": 0x1_0000_0010_i64 } };
        assert_eq!(
            upsert.sent_filter(),
            doc! { "_id": "r1", "patient_id": "p1", POSITION: guard.clone() }
        );
        assert_eq!(
            upsert.sent_update(),
            Some(doc! { "$set": {
                "status": "final",
                "_cdc": { "lsn": "1/10", "position": 0x1_0000_0010_i64 },
            } })
        );
        assert_eq!(
            upsert.new_document(),
            Some(doc! {
                "_id": "r1", "patient_id": "p1", "status": "final",
                "_cdc": { "lsn": "1/10", "position": 0x1_0000_0010_i64 },
            })
        );
        assert_eq!(delete.sent_filter(), doc! { "_id": "p2", POSITION: guard });
        let plain = Write::update("patients", "p3", doc! { "$unset": { "x": "" } });
        assert_eq!(plain.sent_filter(), doc! { "_id": "p3" });
        assert_eq!(plain.sent_update(), Some(doc! { "$unset": { "x": "" } }));
    }

    #[test]
    fn a_documents_size_is_counted_as_its_encoding_would_be() {
        use bson::spec::BinarySubtype;
        use bson::{Binary, DateTime, Decimal128, Regex, Timestamp, oid::ObjectId};
        let items: Vec<Bson> = (0..12).map(Bson::Int32).collect();
        let document = doc! {
            "text": "héllo", "double": 1.5, "int32": 7, "int64": 7_i64, "yes": true,
            "nothing": Bson::Null, "when": DateTime::from_millis(1), "items": items,
            "nested": { "a": { "b": [ { "c": "d" } ] } }, "empty": {}, "none": [],
            "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "old": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![1, 2] },
            "id": ObjectId::new(), "decimal": Decimal128::from_bytes([0; 16]),
            "regex": Regex { pattern: "^a".try_into().unwrap(), options: "i".try_into().unwrap() },
            "stamp": Timestamp { time: 1, increment: 2 },
            "max": Bson::MaxKey, "min": Bson::MinKey, "undefined": Bson::Undefined,
        };
        let encoded = RawDocumentBuf::try_from(&document)
            .unwrap()
            .as_bytes()
            .len();
        assert_eq!(bson_size(&document), encoded);
        assert_eq!(bson_size(&Document::new()), 5);
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(100), 3);
    }

    #[test]
    fn a_set_after_an_unset_of_the_same_path_wins() {
        let mut batch = Batch::default();
        batch.push(Write::update(
            "reports",
            "r1",
            doc! { "$unset": { "m.a": "" } },
        ));
        batch.push(set("r1", "m.a", 3));
        let taken = batch.take();
        let Write::Update { update, .. } = &taken[0].1[0] else {
            panic!()
        };
        assert_eq!(update, &doc! { "$set": { "m.a": 3 } });
    }

    #[test]
    fn a_multi_document_write_is_a_barrier_to_conflation() {
        let mut batch = Batch::default();
        batch.push(set("r1", "a", 1));
        batch.push(Write::update_many(
            "reports",
            doc! { "patient_id": "p" },
            doc! { "$set": { "b": 1 } },
        ));
        batch.push(set("r1", "a", 2));
        assert_eq!(batch.take()[0].1.len(), 3);
        // So is a move: the writes before it address the document where it was.
        batch.push(set("r1", "a", 1));
        batch.push(Write::move_report("r1", "p1", "p2"));
        batch.push(set("r1", "a", 2));
        assert_eq!(batch.take()[0].1.len(), 3);
    }

    #[test]
    fn nested_paths_are_not_merged_and_other_collections_do_not_interfere() {
        let mut batch = Batch::default();
        batch.push(set("p1", "latest", 1));
        batch.push(set("p1", "latest.x", 2));
        batch.push(Write::delete_many("lookup_clinics", doc! {}));
        batch.push(set("p1", "other", 3));
        let taken = batch.take();
        assert_eq!(taken.len(), 2);
        let reports = &taken.iter().find(|(c, _)| *c == "reports").unwrap().1;
        assert_eq!(reports.len(), 2, "{reports:?}");
    }

    #[test]
    fn reports_are_written_before_the_documents_that_decide_their_fan_outs() {
        let mut batch = Batch::default();
        batch.push(Write::upsert("patients", "p1", doc! { "full_name": "B" }));
        batch.push(Write::upsert("lookup_clinics", "c1", doc! { "name": "C" }));
        batch.push(Write::update_many(
            "reports",
            doc! { "patient_id": "p1" },
            doc! { "$set": { "patient.full_name": "B" } },
        ));
        let order: Vec<&str> = batch
            .take()
            .iter()
            .map(|(collection, _)| *collection)
            .collect();
        assert_eq!(order, ["reports", "lookup_clinics", "patients"]);
    }

    #[test]
    fn an_upsert_is_not_merged_into_a_plain_update() {
        let mut batch = Batch::default();
        batch.push(set("r1", "a", 1));
        batch.push(Write::upsert("reports", "r1", doc! { "b": 2 }));
        assert_eq!(batch.take()[0].1.len(), 2);
        assert_eq!(batch.changes(), 0);
    }
}
