//! Estimates of what a value keeps resident on the heap, for bounding memory by bytes rather
//! than by entries: the lookup caches and the batches count what they hold with them. An
//! estimate counts the allocations a value owns by their contents and the document's table
//! slots; it leaves out the allocator's own overhead and the slack of a grown table.

use mongodb::bson::{Bson, Document};

/// What a value keeps on the heap beyond its own inline size.
pub trait Resident {
    /// Estimated heap bytes owned by the value.
    fn heap_bytes(&self) -> usize;
}

impl Resident for String {
    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

impl Resident for Document {
    fn heap_bytes(&self) -> usize {
        document_heap_bytes(self)
    }
}

/// One member of a document in memory: the `IndexMap`'s bucket (hash, key, value), its index
/// slot and its control byte.
const MEMBER_BYTES: usize = size_of::<(u64, String, Bson)>() + size_of::<usize>() + 1;

fn document_heap_bytes(document: &Document) -> usize {
    document
        .iter()
        .map(|(key, value)| MEMBER_BYTES + key.len() + bson_heap_bytes(value))
        .sum()
}

fn bson_heap_bytes(value: &Bson) -> usize {
    match value {
        Bson::String(text) | Bson::JavaScriptCode(text) | Bson::Symbol(text) => text.len(),
        Bson::Document(document) => document_heap_bytes(document),
        Bson::Array(values) => values
            .iter()
            .map(|value| size_of::<Bson>() + bson_heap_bytes(value))
            .sum(),
        Bson::Binary(binary) => binary.bytes.len(),
        Bson::RegularExpression(regex) => {
            regex.pattern.as_str().len() + regex.options.as_str().len()
        }
        Bson::JavaScriptCodeWithScope(code) => code.code.len() + document_heap_bytes(&code.scope),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn a_document_is_counted_by_what_it_holds() {
        let small = doc! { "name": "Ada" };
        let nested = doc! { "name": "Ada", "checkup": { "clinic": "North", "device": "BP-1" } };
        let long = doc! { "name": "A".repeat(10_000) };
        assert!(small.heap_bytes() >= MEMBER_BYTES + "name".len() + "Ada".len());
        assert!(nested.heap_bytes() > small.heap_bytes() + 2 * MEMBER_BYTES);
        assert!(long.heap_bytes() > 10_000);
    }
}
