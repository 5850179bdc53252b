//! The fuzz smoke run of `make test`, on stable Rust: the seed corpus of the `upload_parse`
//! cargo-fuzz target (`fuzz/seeds/upload_parse/`, real uploads and amendments) and a bounded
//! number of mutations of it go through the same calls as the fuzz target. Every input must give
//! an answer, never a panic, and every rejection must name where the problem is.
//!
//! This is no substitute for coverage-guided fuzzing (`fuzz/README.md`); it keeps the corpus
//! honest (the seeds must still be accepted) and catches the shallow crashes on every run.
//! `FUZZ_SMOKE_SEED` picks another mutation sequence; a failure prints the input as hex.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use ingest_api::validation::{Limits, Rejection, parse_amendment, parse_upload};
use time::macros::datetime;

/// Mutated inputs per run: about two seconds of a debug build.
const MUTATIONS: usize = 20_000;

/// Bytes that matter to a JSON reader, and numbers at the edges of what it and the catalogue
/// accept.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"0.000000000000000000000001",
    b"\"\\ud800\"",
    b"\"$gt\"",
    b"\"a.b\"",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"\xff",
    b"\x00",
];

/// A small deterministic generator (xorshift64*), so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/upload_parse");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// One mutation of `input`: a flipped bit, an interesting token, a cut, a copied span, or a
/// splice with another seed.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let index = at.min(bytes.len() - 1);
                bytes[index] ^= 1 << rng.below(8);
            }
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                let end = (at + rng.below(8)).min(bytes.len());
                bytes.splice(at..end, token.iter().copied());
            }
            2 => bytes.truncate(at),
            3 if !bytes.is_empty() => {
                let start = rng.below(bytes.len());
                let end = (start + rng.below(64)).min(bytes.len());
                let span = bytes[start..end].to_vec();
                bytes.splice(at..at, span);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
        }
    }
    bytes
}

/// What the fuzz target does, plus the property that a rejection names its problems.
fn exercise(input: &[u8]) -> (bool, bool) {
    let now = datetime!(2026-11-27 12:00 UTC);
    let limits = Limits::default();
    let check = |rejection: &Rejection| {
        if let Rejection::Invalid(problems) = rejection {
            assert!(!problems.is_empty(), "a 422 without problems");
            for problem in problems {
                assert!(
                    problem.pointer.is_empty() || problem.pointer.starts_with('/'),
                    "not a JSON pointer: {:?}",
                    problem.pointer
                );
                assert!(!problem.detail.is_empty());
            }
        }
    };
    let upload = parse_upload(input, now, &limits);
    if let Err(rejection) = &upload {
        check(rejection);
    }
    let amendment = parse_amendment(input, now, &limits);
    if let Err(rejection) = &amendment {
        check(rejection);
    }
    (upload.is_ok(), amendment.is_ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn the_seed_corpus_is_real_uploads_and_amendments() {
    let seeds = seeds();
    assert!(seeds.len() >= 8, "the corpus lost its seeds");
    let outcomes: Vec<(bool, bool)> = seeds.iter().map(|seed| exercise(seed)).collect();
    assert!(
        outcomes.iter().filter(|(upload, _)| *upload).count() >= 5,
        "most seeds must be accepted uploads (the clock is 2026-11-27 12:00 UTC)"
    );
    assert!(outcomes.iter().any(|(_, amendment)| *amendment));
}

#[test]
fn mutated_uploads_are_answered_without_a_panic() {
    let seeds = seeds();
    let seed = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed | 1);
    for round in 0..MUTATIONS {
        let base = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, base, &seeds);
        let outcome = std::panic::catch_unwind(|| exercise(&input));
        assert!(
            outcome.is_ok(),
            "FUZZ_SMOKE_SEED={seed}, round {round}: parsing panicked on {}",
            hex(&input)
        );
    }
}
