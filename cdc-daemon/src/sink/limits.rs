//! How large a command the store takes, asked of the store itself once before streaming: the
//! statements per command depend on which server it is (FerretDB deadlocks on commands MongoDB
//! takes with ease), and no command may come near the 16 MiB a BSON document may hold.

use mongodb::Database;
use mongodb::bson::{Document, doc};

/// Most bytes of statements (or documents) sent in one command; a single larger one goes
/// alone. A command document may hold 16 MiB and 16 KiB; half of that leaves room for each
/// statement's own fields (`q`, `u`, `upsert`, ... about 40 bytes each) and the command's
/// (collection, write concern, session), however many statements a command holds.
pub const BYTES_PER_COMMAND: usize = 8 * 1024 * 1024;

/// Statements per command on FerretDB 1.24, on either backend, which holds one backend
/// connection per statement that matches a document until the whole command ends, and waits
/// forever for a free one: a command of more statements than its pool has connections (100 on
/// SQLite, 50 by default on PostgreSQL) deadlocks it, and several large ones at once from
/// different clients can too.
pub const FERRETDB_STATEMENTS: usize = 32;

/// Documents per `insert` on FerretDB: an insert holds no connection per document, and the
/// initial snapshot, which inserts, is faster in larger commands.
pub const FERRETDB_DOCUMENTS: usize = 256;

/// Most statements (or documents of an `insert`) per command on MongoDB (which allows `maxWriteBatchSize`, 100,000 since
/// 3.6; 1,000 before). More buys nothing: 1,000 statements already spread a round trip thin,
/// [`BYTES_PER_COMMAND`] usually cuts sooner, and after a write error a command's statements
/// are sent again one at a time, which a larger command makes longer.
pub const MONGODB_STATEMENTS: usize = 1000;

/// The largest document MongoDB and FerretDB take (`maxBsonObjectSize`), for a server whose
/// `hello` does not say.
const DEFAULT_MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// How the statements of a batch are cut into commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most `update` or `delete` statements in one command.
    pub statements: usize,
    /// Most documents in one `insert` command.
    pub documents: usize,
    /// Most bytes of statements in one command, see [`BYTES_PER_COMMAND`].
    pub bytes: usize,
    /// The largest document the store takes: a statement larger than this cannot be sent in
    /// any command (the server would refuse the command, or the driver the message, as if the
    /// store were failing), so it is refused without being sent.
    pub max_statement: usize,
}

impl Limits {
    /// FerretDB's limits, which MongoDB takes too: what a writer uses until it knows better.
    pub const FERRETDB: Limits = Limits {
        statements: FERRETDB_STATEMENTS,
        documents: FERRETDB_DOCUMENTS,
        bytes: BYTES_PER_COMMAND,
        max_statement: DEFAULT_MAX_DOCUMENT,
    };

    /// The limits for a server, from its answers to `buildInfo` and `hello`: FerretDB says
    /// `ferretdbVersion` in `buildInfo` (its `hello` has MongoDB's fields, `maxWriteBatchSize`
    /// included, which it cannot live up to).
    pub fn from_replies(build_info: &Document, hello: &Document) -> Limits {
        let number = |name: &str| {
            hello
                .get(name)
                .and_then(|value| value.as_i64().or(value.as_i32().map(i64::from)))
                .and_then(|value| usize::try_from(value).ok())
                .filter(|value| *value > 0)
        };
        let (statements, documents) = if build_info.contains_key("ferretdbVersion") {
            (FERRETDB_STATEMENTS, FERRETDB_DOCUMENTS)
        } else {
            let most = number("maxWriteBatchSize")
                .map_or(MONGODB_STATEMENTS, |most| most.min(MONGODB_STATEMENTS));
            (most, most)
        };
        Limits {
            statements,
            documents,
            bytes: BYTES_PER_COMMAND,
            max_statement: number("maxBsonObjectSize").unwrap_or(DEFAULT_MAX_DOCUMENT),
        }
    }
}

/// Asks `database`'s server which limits apply (two round trips).
pub async fn detect(database: &Database) -> Result<Limits, mongodb::error::Error> {
    let build_info = database.run_command(doc! { "buildInfo": 1 }).await?;
    let hello = database.run_command(doc! { "hello": 1 }).await?;
    Ok(Limits::from_replies(&build_info, &hello))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferretdb_is_told_by_its_version_field_whatever_its_hello_says() {
        let hello = doc! { "maxWriteBatchSize": 100_000, "maxBsonObjectSize": 16_777_216 };
        let ferretdb = Limits::from_replies(&doc! { "ferretdbVersion": "v1.24.0" }, &hello);
        assert_eq!(ferretdb, Limits::FERRETDB);
        let mongodb = Limits::from_replies(&doc! { "version": "8.0.4" }, &hello);
        assert_eq!(
            (mongodb.statements, mongodb.documents),
            (MONGODB_STATEMENTS, MONGODB_STATEMENTS)
        );
        assert_eq!(mongodb.max_statement, 16_777_216);
    }

    #[test]
    fn a_smaller_server_limit_wins_and_missing_fields_fall_back() {
        let small = doc! { "maxWriteBatchSize": 500_i64, "maxBsonObjectSize": 1_000_000 };
        let limits = Limits::from_replies(&doc! {}, &small);
        assert_eq!(
            (limits.statements, limits.documents, limits.max_statement),
            (500, 500, 1_000_000)
        );
        let bare = Limits::from_replies(&doc! {}, &doc! { "maxWriteBatchSize": 0 });
        assert_eq!(
            (bare.statements, bare.max_statement),
            (MONGODB_STATEMENTS, DEFAULT_MAX_DOCUMENT)
        );
    }
}
