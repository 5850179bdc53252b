//! The daemon against a real PostgreSQL and the real store, each scenario followed by a verify
//! with zero differences.

#![allow(clippy::unwrap_used, missing_docs)]

mod changes;
mod end_to_end;
mod existing_data;
mod fan_outs;
mod fencing;
mod identity;
mod moves;
mod replay;
mod resilience;
mod store_commands;
mod support;
