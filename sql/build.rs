//! The migrations are embedded at compile time (`refinery::embed_migrations!`): rebuild the
//! crate when a file under `migrations/` is added or changed, not only when Rust code is.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
