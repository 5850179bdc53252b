//! Totality: `decode` and `parse_value` return (an error at worst) on any input, however
//! malformed. Arbitrary bytes rarely get past the first byte, so inputs also start with each
//! message tag, and valid messages are mutated (bytes flipped, cut, spliced).

use proptest::prelude::*;

use super::encoder::encode;
use super::strategies::message;
use crate::decode::relations::{RelationCache, row};
use crate::decode::values::{KNOWN_TYPES, parse_value};
use crate::decode::{Message, decode};

/// Decodes, and for a change whose relation is known, builds its rows, like the pipeline does.
fn exercise(cache: &mut RelationCache, bytes: &[u8]) {
    let Ok(message) = decode(bytes) else {
        return;
    };
    let (relation_id, tuples) = match &message {
        Message::Relation(relation) => {
            cache.update(relation.clone());
            return;
        }
        Message::Insert(insert) => (insert.relation_id, vec![&insert.new]),
        Message::Update(update) => {
            let mut tuples = vec![&update.new];
            tuples.extend(update.old.as_ref().map(|old| old.tuple()));
            (update.relation_id, tuples)
        }
        Message::Delete(delete) => (delete.relation_id, vec![delete.old.tuple()]),
        _ => return,
    };
    if let Some(relation) = cache.get(relation_id) {
        for tuple in tuples {
            let _ = row(relation, tuple);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes_after_a_tag(
        tag in proptest::sample::select(b"BCORYIUDTMSEcAPKrbp".to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_messages(
        message in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        should_cut in any::<bool>(),
    ) {
        let mut bytes = encode(&message);
        for (index, value) in flips {
            let at = index.index(bytes.len());
            if let Some(byte) = bytes.get_mut(at) {
                *byte = value;
            }
        }
        if should_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn rows_never_panic_on_streams_of_mutated_messages(
        messages in proptest::collection::vec(message(), 1..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut encoded: Vec<Vec<u8>> = messages.iter().map(encode).collect();
        for (which, index, value) in flips {
            let count = encoded.len();
            if let Some(bytes) = encoded.get_mut(which.index(count)) {
                let at = index.index(bytes.len());
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = value;
                }
            }
        }
        let mut cache = RelationCache::new();
        for bytes in &encoded {
            exercise(&mut cache, bytes);
        }
    }

    #[test]
    fn parse_value_never_panics_on_arbitrary_bytes(
        oid in proptest::sample::select(KNOWN_TYPES.map(|(oid, _)| oid).to_vec()),
        text in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = parse_value(oid, &text);
    }

    #[test]
    fn parse_value_never_panics_on_date_like_text(
        oid in proptest::sample::select(KNOWN_TYPES.map(|(oid, _)| oid).to_vec()),
        text in "[0-9]{0,11}-[0-9]{0,3}-[0-9]{0,3}( [0-9]{0,3}:[0-9]{0,3}:[0-9]{0,3}(\\.[0-9]{0,12})?)?([+-][0-9]{0,3}(:[0-9]{0,3}(:[0-9]{0,3})?)?)?( BC)?",
    ) {
        let _ = parse_value(oid, text.as_bytes());
    }

    #[test]
    fn parse_value_never_panics_on_number_like_text(
        oid in proptest::sample::select(KNOWN_TYPES.map(|(oid, _)| oid).to_vec()),
        text in "[-+]?[0-9.eE+-]{0,40}",
    ) {
        let _ = parse_value(oid, text.as_bytes());
    }
}
