//! Fuzzes the decode step with what the pipeline does to each replication payload: decode it,
//! remember Relations, build rows of changes, and parse values by type.
//!
//! An input is tried three ways: as one pgoutput message; as a stream of messages framed like
//! `tests/fixtures/pgoutput-session.bin` (big-endian `u32` length, then the bytes), so that a
//! Relation can be followed by changes that use it; and, first byte choosing a known type OID,
//! as a value's text. Seeds live in `seeds/pgoutput_decode/`:
//! `cargo +nightly fuzz run pgoutput_decode corpus/pgoutput_decode seeds/pgoutput_decode`.

#![no_main]

use cdc_daemon::decode::relations::{RelationCache, row};
use cdc_daemon::decode::values::{KNOWN_TYPES, parse_value};
use cdc_daemon::decode::{Message, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cache = RelationCache::new();
    apply(&mut cache, data);

    let mut cache = RelationCache::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        let Some((message, tail)) = tail.split_at_checked(len) else {
            break;
        };
        apply(&mut cache, message);
        rest = tail;
    }

    if let Some((first, text)) = data.split_first() {
        let index = usize::from(*first) % KNOWN_TYPES.len();
        if let Some((oid, _)) = KNOWN_TYPES.get(index) {
            let _ = parse_value(*oid, text);
        }
    }
});

/// Decodes one message; remembers a Relation, turns a change's tuples into rows.
fn apply(cache: &mut RelationCache, bytes: &[u8]) {
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
            if let Ok(row) = row(relation, tuple) {
                let _ = row.iter().count();
            }
        }
    }
}
