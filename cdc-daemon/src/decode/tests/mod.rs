//! Tests of the decode step: per-message layouts, values, rows, totality under arbitrary input,
//! and agreement with an independent parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod differential;
mod encoder;
mod messages;
mod never_panics;
mod relations;
mod strategies;
mod values;
