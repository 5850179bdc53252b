//! Micro benchmarks of the daemon's steps on captured real traffic
//! (`tests/fixtures/pgoutput-session.bin`, see `tests/decode_real_traffic.rs`): pgoutput
//! decoding (messages/s), mapping row changes to document writes (changes/s, joins served from
//! the mapper's own caches) and encoding the resulting documents to BSON (bytes/s).
//!
//! `cargo bench -p cdc-daemon --bench steps`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

/// The daemon binary's allocator (see `src/main.rs`), so that the steps are measured as they run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use cdc_daemon::decode::{Message, decode_bytes};
use cdc_daemon::mapping::lookups::MemoryStore;
use cdc_daemon::mapping::{Mapper, Transaction};
use cdc_daemon::replication::unix_millis;
use cdc_daemon::sink::{Batch, Write};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongodb::bson::{DateTime, Document, RawDocumentBuf};

/// The captured session: for each message a big-endian `u32` length, then its bytes.
fn fixture() -> Vec<Bytes> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pgoutput-session.bin"
    );
    let raw = std::fs::read(path).expect("the pgoutput fixture should be readable");
    let mut messages = Vec::new();
    let mut rest = raw.as_slice();
    while let Some((length, tail)) = rest.split_first_chunk::<4>() {
        let length = u32::from_be_bytes(*length) as usize;
        messages.push(Bytes::copy_from_slice(&tail[..length]));
        rest = &tail[length..];
    }
    messages
}

fn is_change(message: &Message) -> bool {
    matches!(
        message,
        Message::Insert(_) | Message::Update(_) | Message::Delete(_) | Message::Truncate(_)
    )
}

/// Maps every message of the session into one batch with a fresh mapper.
fn map_session(runtime: &tokio::runtime::Runtime, messages: &[Message]) -> Batch {
    runtime.block_on(async {
        // An empty store: every parent a change needs was inserted earlier in the same stream,
        // so the mapper finds it in its caches.
        let mut mapper = Mapper::new(MemoryStore::default(), 1 << 20);
        let mut batch = Batch::default();
        let mut transaction = Transaction {
            commit_lsn: 0,
            commit_time: DateTime::from_millis(0),
        };
        for message in messages {
            match message {
                Message::Begin(begin) => {
                    transaction = Transaction {
                        commit_lsn: begin.final_lsn,
                        commit_time: DateTime::from_millis(unix_millis(begin.commit_time_micros)),
                    }
                }
                Message::Relation(relation) => mapper.relation(relation.clone()),
                _ => {
                    mapper
                        .map_change(message, &transaction, &mut batch)
                        .await
                        .unwrap();
                }
            }
        }
        batch
    })
}

fn steps(criterion: &mut Criterion) {
    let raw = fixture();
    let messages: Vec<Message> = raw
        .iter()
        .map(|bytes| decode_bytes(bytes).unwrap())
        .collect();
    let changes = messages.iter().filter(|message| is_change(message)).count();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = criterion.benchmark_group("decode");
    group.throughput(Throughput::Elements(raw.len() as u64));
    group.bench_function("pgoutput session (messages)", |bench| {
        bench.iter(|| {
            for bytes in &raw {
                black_box(decode_bytes(black_box(bytes)).unwrap());
            }
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("mapping");
    group.throughput(Throughput::Elements(changes as u64));
    group.bench_function("pgoutput session (row changes)", |bench| {
        bench.iter(|| black_box(map_session(&runtime, black_box(&messages))))
    });
    group.finish();

    let writes: Vec<Write> = map_session(&runtime, &messages)
        .take()
        .into_iter()
        .flat_map(|(_, writes)| writes)
        .collect();
    let documents: Vec<&Document> = writes
        .iter()
        .flat_map(|write| match write {
            Write::Update { filter, update, .. } => vec![filter, update],
            Write::Delete { filter, .. } => vec![filter],
            Write::Move { .. } => vec![],
        })
        .collect();
    let bytes: usize = documents
        .iter()
        .map(|document| {
            RawDocumentBuf::try_from(*document)
                .unwrap()
                .as_bytes()
                .len()
        })
        .sum();
    let mut group = criterion.benchmark_group("encoding");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mapped writes to BSON (bytes)", |bench| {
        bench.iter(|| {
            for document in &documents {
                black_box(RawDocumentBuf::try_from(*black_box(document)).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
