//! Parsing and validation of upload bodies, the work `POST /v1/uploads` does before touching the
//! database: a tablet's upload from the fuzz seeds (one checkup, a few reports) and a larger one
//! of 60 checkups made from all the tablet seeds (about 230 KiB, a busy clinic's day).
//!
//! `cargo bench -p ingest-api --bench validation`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingest_api::validation::{Limits, parse_upload};
use serde_json::Value;
use time::macros::datetime;

/// Later than every timestamp in the seeds.
const NOW: time::OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

fn seed(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fuzz/seeds/upload_parse/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).expect("the seed should be readable")
}

/// 60 checkups: the six tablet seeds' checkups repeated, with fresh checkup and report ids.
fn large_upload() -> Vec<u8> {
    let tablets: Vec<Value> = (1..=6)
        .map(|n| serde_json::from_slice(&seed(&format!("tablet-{n}.json"))).unwrap())
        .collect();
    let mut ids = (1u128..).map(|n| Value::from(uuid::Uuid::from_u128(n).to_string()));
    let mut checkups = Vec::new();
    while checkups.len() < 60 {
        for tablet in &tablets {
            for checkup in tablet["checkups"].as_array().unwrap() {
                let mut checkup = checkup.clone();
                checkup["id"] = ids.next().unwrap();
                for report in checkup["reports"].as_array_mut().unwrap() {
                    report["id"] = ids.next().unwrap();
                }
                checkups.push(checkup);
            }
        }
    }
    checkups.truncate(60);
    let body = serde_json::json!({"upload_id": ids.next().unwrap(), "checkups": checkups});
    serde_json::to_vec_pretty(&body).unwrap()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_upload");
    for (name, body) in [
        ("tablet", seed("tablet-1.json")),
        ("clinic_day", large_upload()),
    ] {
        parse_upload(&body, NOW, &limits).expect("the bench body should be valid");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_upload(black_box(&body), NOW, &limits))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
