//! Where the harness keeps its files: the workspace root and `target/devstack/`.

use std::path::PathBuf;

/// The root of the Cargo workspace (the folder holding `Cargo.toml` and `tools/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/devstack/` (or `$CARGO_TARGET_DIR/devstack/`): cached binaries, the local stack's
/// data and logs, and the `env` file `make run` writes.
pub fn devstack_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("devstack")
}
