//! Fuzzes what the ingest API does with a request body before any database work: parse it as an
//! upload and as an amendment, with the default limits, at a fixed clock (so that a finding
//! replays the same way). Both must return, an error at worst, on any input.
//!
//! Seeds are real uploads and amendments in `seeds/upload_parse/` (see `../README.md`):
//! `mkdir -p corpus/upload_parse && cargo +nightly fuzz run upload_parse corpus/upload_parse
//! seeds/upload_parse`.
//! `ingest-api/tests/fuzz_corpus.rs` runs the same calls on the seeds and on mutations of them
//! in every `cargo test`.

#![no_main]

use ingest_api::validation::{Limits, parse_amendment, parse_upload};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let now = datetime!(2026-11-27 12:00 UTC);
    let limits = Limits::default();
    let _ = parse_upload(data, now, &limits);
    let _ = parse_amendment(data, now, &limits);
});
