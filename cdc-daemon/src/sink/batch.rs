//! Collecting writes: ordered per collection, conflated per document.

use std::collections::HashMap;

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use read_model::REPORTS;

/// One write to the store.
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
    },
    /// A `delete` statement.
    Delete {
        /// Target collection.
        collection: &'static str,
        /// Which documents.
        filter: Document,
        /// Delete every match rather than the first.
        multi: bool,
    },
}

impl Write {
    /// `$set` `fields` on document `id`, creating it if needed.
    pub fn upsert(collection: &'static str, id: impl Into<Bson>, fields: Document) -> Write {
        Write::Update {
            collection,
            filter: doc! { "_id": id.into() },
            update: doc! { "$set": fields },
            upsert: true,
            multi: false,
        }
    }

    /// Applies `update` to document `id` if it exists.
    pub fn update(collection: &'static str, id: impl Into<Bson>, update: Document) -> Write {
        Write::Update {
            collection,
            filter: doc! { "_id": id.into() },
            update,
            upsert: false,
            multi: false,
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
        }
    }

    /// Deletes document `id`.
    pub fn delete(collection: &'static str, id: impl Into<Bson>) -> Write {
        Write::Delete {
            collection,
            filter: doc! { "_id": id.into() },
            multi: false,
        }
    }

    /// Deletes every document matching `filter`.
    pub fn delete_many(collection: &'static str, filter: Document) -> Write {
        Write::Delete {
            collection,
            filter,
            multi: true,
        }
    }

    /// The collection written.
    pub fn collection(&self) -> &'static str {
        match self {
            Write::Update { collection, .. } | Write::Delete { collection, .. } => collection,
        }
    }

    /// The document an upsert by `_id` that only `$set`s creates when no document has that
    /// `_id`: the id and the fields, dotted paths nested. `None` for any other write.
    pub fn new_document(&self) -> Option<Document> {
        let Write::Update {
            filter,
            update,
            upsert: true,
            multi: false,
            ..
        } = self
        else {
            return None;
        };
        let id = filter.get("_id").filter(|_| filter.len() == 1)?;
        if update.len() != 1 {
            return None;
        }
        let mut document = doc! { "_id": id.clone() };
        for (path, value) in update.get_document("$set").ok()? {
            let mut parts = path.split('.').peekable();
            let mut target = &mut document;
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    if target.contains_key(part) {
                        return None;
                    }
                    target.insert(part, value.clone());
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

    /// The `_id` of a single-document update addressed by id alone (the conflatable kind).
    fn conflation_key(&self) -> Option<String> {
        match self {
            Write::Update {
                filter,
                multi: false,
                ..
            } if filter.len() == 1 => filter.get("_id").map(|id| id.to_string()),
            _ => None,
        }
    }

    /// Size in bytes of the filter and update, for bounding a batch and a command.
    pub(super) fn approximate_size(&self) -> usize {
        let size = |document: &Document| {
            RawDocumentBuf::try_from(document).map_or(0, |raw| raw.as_bytes().len())
        };
        match self {
            Write::Update { filter, update, .. } => size(filter) + size(update),
            Write::Delete { filter, .. } => size(filter),
        }
    }
}

/// Writes waiting to be flushed.
#[derive(Debug, Default)]
pub struct Batch {
    /// Per collection, statements in the order they were pushed.
    statements: HashMap<&'static str, Vec<Write>>,
    /// Per collection and document id, the position of the statement later `$set`/`$unset`
    /// writes may merge into. Cleared for a collection by any other kind of write to it.
    open: HashMap<&'static str, HashMap<String, usize>>,
    changes: usize,
    bytes: usize,
}

impl Batch {
    /// Adds `write`, merging it into an earlier write to the same document when that keeps the
    /// outcome the same.
    pub fn push(&mut self, write: Write) {
        self.changes += 1;
        self.bytes += write.approximate_size();
        let collection = write.collection();
        let statements = self.statements.entry(collection).or_default();
        let open = self.open.entry(collection).or_default();
        let Some(key) = write.conflation_key() else {
            // A multi-document write or a delete: later writes must not move before it.
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

    /// Approximate size of the pushed writes.
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
        let mut taken: Vec<_> = self.statements.drain().collect();
        taken.sort_by_key(|(collection, _)| (*collection != REPORTS, *collection));
        taken
    }
}

/// Merges `later` into `earlier` (both single-document updates of the same id) if the merged
/// statement does what the two do one after the other. Edits `earlier` in place: merging many
/// writes into one statement stays linear.
fn merge(earlier: &mut Write, later: &Write) -> bool {
    let (
        Write::Update {
            update: first,
            upsert: first_upsert,
            ..
        },
        Write::Update {
            update: second,
            upsert: second_upsert,
            ..
        },
    ) = (earlier, later)
    else {
        return false;
    };
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
            }]
        );
        assert!(batch.is_empty());
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
