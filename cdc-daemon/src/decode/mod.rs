//! The `decode` step of the pipeline: one pgoutput message (protocol version 1, as PostgreSQL
//! 15 sends it in an `XLogData` payload or returns it from `pg_logical_slot_*_binary_changes`)
//! becomes a typed [`Message`].
//!
//! The decoder is strict and total: any input, however malformed, yields a [`Message`] or a
//! [`DecodeError`], never a panic, and a message with bytes left over after its last field is an
//! error rather than silently accepted. Protocol version 2+ messages (streaming, two-phase) are
//! [`DecodeError::UnsupportedMessage`]: the daemon requests version 1, so one of those means the
//! stream is not what we asked for.
//!
//! The rest of the step: [`relations`] remembers the table schemas that `Relation` messages
//! announce and turns tuples into named [`relations::Row`]s, and [`values`] parses each text
//! value by its type OID.

pub mod relations;
pub mod values;

mod reader;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use self::reader::Reader;

/// Bit of a Truncate message's options: `TRUNCATE … CASCADE`.
const TRUNCATE_CASCADE: u8 = 1;
/// Bit of a Truncate message's options: `TRUNCATE … RESTART IDENTITY`.
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
/// Bit of a logical decoding message's flags: emitted as transactional.
const MESSAGE_TRANSACTIONAL: u8 = 1;
/// Bit of a Relation column's flags: part of the replica identity key.
const COLUMN_KEY: u8 = 1;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`: a transaction starts; its changes follow, then a [`Commit`].
    Begin(Begin),
    /// `C`: the transaction started by the last [`Begin`] committed.
    Commit(Commit),
    /// `O`: the transaction came from another node through replication origin `name`.
    Origin(Origin),
    /// `R`: the schema of a table, sent before its first change and again after it changes.
    Relation(Relation),
    /// `Y`: a non-built-in data type used by a following [`Relation`].
    Type(TypeInfo),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: one or more tables were truncated.
    Truncate(Truncate),
    /// `M`: a logical decoding message from `pg_logical_emit_message`.
    Message(LogicalMessage),
}

impl Message {
    /// The message kind's name (`"begin"`, `"insert"`, …), for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Begin(_) => "begin",
            Message::Commit(_) => "commit",
            Message::Origin(_) => "origin",
            Message::Relation(_) => "relation",
            Message::Type(_) => "type",
            Message::Insert(_) => "insert",
            Message::Update(_) => "update",
            Message::Delete(_) => "delete",
            Message::Truncate(_) => "truncate",
            Message::Message(_) => "message",
        }
    }
}

/// The start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: u64,
    /// Commit time, in microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
    pub commit_time_micros: i64,
    /// The transaction id (32-bit, wraps around): for logs, never for ordering.
    pub xid: u32,
}

/// The end of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Unused by PostgreSQL 15 (always 0); kept as sent.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: u64,
    /// The LSN just past the commit record: where a restart after this transaction resumes.
    pub end_lsn: u64,
    /// Commit time, in microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
    pub commit_time_micros: i64,
}

/// The replication origin a transaction was replayed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The LSN of the commit on the origin server.
    pub commit_lsn: u64,
    /// The origin's name.
    pub name: String,
}

/// A table's schema as published: its id and the columns that tuples of it carry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID; changes refer to the table by it.
    pub id: u32,
    /// The schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// The table name, unquoted.
    pub name: String,
    /// `relreplident`: `d` (primary key), `n` (nothing), `f` (full row) or `i` (an index).
    pub replica_identity: u8,
    /// The published columns, in the order tuples list their values.
    pub columns: Vec<Column>,
}

/// One published column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Whether the column is part of the replica identity (what old-key tuples carry).
    pub is_key: bool,
    /// The column name, unquoted, as the mapping looks it up.
    pub name: String,
    /// The OID of the column's data type.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`), e.g. a `varchar`'s length; -1 for none.
    pub type_modifier: i32,
}

/// A data type announced before a [`Relation`] that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's OID.
    pub id: u32,
    /// The type's schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// The type's name.
    pub name: String,
}

/// An inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The [`Relation`] the row belongs to.
    pub relation_id: u32,
    /// The inserted row, every column present (inserts carry no unchanged TOAST).
    pub new: TupleData,
}

/// An updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The [`Relation`] the row belongs to.
    pub relation_id: u32,
    /// The old row or key; sent only when the replica identity changed (key) or the table has
    /// `REPLICA IDENTITY FULL` (full row).
    pub old: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns are [`ColumnData::UnchangedToast`].
    pub new: TupleData,
}

/// The old version of a row, as an update or delete identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity columns carry values, the others are null.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

/// A deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The [`Relation`] the row belonged to.
    pub relation_id: u32,
    /// The deleted row's key (or whole row under `REPLICA IDENTITY FULL`).
    pub old: OldTuple,
}

/// One `TRUNCATE` statement's published tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// `TRUNCATE … CASCADE`.
    pub cascade: bool,
    /// `TRUNCATE … RESTART IDENTITY`.
    pub restart_identity: bool,
    /// The truncated [`Relation`]s.
    pub relation_ids: Vec<u32>,
}

/// A message emitted with `pg_logical_emit_message` (sent when the `messages` option is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Emitted inside the transaction (delivered with it) rather than immediately.
    pub transactional: bool,
    /// The LSN of the message.
    pub lsn: u64,
    /// The prefix the emitter chose to tell its messages apart.
    pub prefix: String,
    /// The payload as emitted, uninterpreted (heartbeats and support requests parse their own).
    pub content: Bytes,
}

/// The column values of one row version, in the order of its [`Relation`]'s columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData(pub Vec<ColumnData>);

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnData {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value the change did not touch, so it is not sent; the stored value is
    /// still the old one.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(Bytes),
    /// `b`: the value in the type's binary format (only with the `binary` option, which the
    /// daemon does not request).
    Binary(Bytes),
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message has no bytes at all.
    #[error("empty pgoutput message")]
    Empty,
    /// The message ended in the middle of a field.
    #[error("pgoutput message ends inside {field}: {needed} bytes needed, {remaining} left")]
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A string field has no terminating NUL.
    #[error("pgoutput string {field} has no terminating NUL")]
    UnterminatedString {
        /// The field being read.
        field: &'static str,
    },
    /// A string field is not valid UTF-8.
    #[error("pgoutput string {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// Where the UTF-8 went wrong.
        source: std::str::Utf8Error,
    },
    /// The message tag is not one protocol version 1 defines (this includes the streaming and
    /// two-phase messages of versions 2 and 3).
    #[error("unsupported pgoutput message {}", describe_tag(*.0))]
    UnsupportedMessage(u8),
    /// A tuple marker (`N`, `K`, `O`) other than the ones the message allows.
    #[error("unexpected tuple marker {} in a {message} message", describe_tag(*.found))]
    UnexpectedTupleMarker {
        /// The message kind being read.
        message: &'static str,
        /// The marker byte found.
        found: u8,
    },
    /// A tuple column kind other than `n`, `u`, `t` or `b`.
    #[error("unknown tuple column kind {}", describe_tag(*.0))]
    UnknownColumnKind(u8),
    /// A flags field has bits set that protocol version 1 does not define.
    #[error("unknown bits in {field}: {value:#04x}")]
    UnknownFlags {
        /// The flags field.
        field: &'static str,
        /// The whole flags byte.
        value: u8,
    },
    /// The message was complete but bytes were left after it.
    #[error("{count} trailing bytes after a complete pgoutput message {tag:?}")]
    TrailingBytes {
        /// The message's tag.
        tag: char,
        /// How many bytes were left.
        count: usize,
    },
}

/// A tag byte for an error message: the letter when it is printable, else its hex value.
fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", char::from(tag))
    } else {
        format!("{tag:#04x}")
    }
}

/// Decodes one pgoutput message (copying it once; see [`decode_bytes`] to avoid the copy).
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_bytes(&Bytes::copy_from_slice(bytes))
}

/// Decodes one pgoutput message; column values and message contents are slices of `bytes`,
/// not copies.
pub fn decode_bytes(bytes: &Bytes) -> Result<Message, DecodeError> {
    let mut reader = Reader::new(bytes);
    let tag = match reader.u8("message tag") {
        Ok(tag) => tag,
        Err(_) => return Err(DecodeError::Empty),
    };
    let message = match tag {
        b'B' => Message::Begin(begin(&mut reader)?),
        b'C' => Message::Commit(commit(&mut reader)?),
        b'O' => Message::Origin(origin(&mut reader)?),
        b'R' => Message::Relation(relation(&mut reader)?),
        b'Y' => Message::Type(type_info(&mut reader)?),
        b'I' => Message::Insert(insert(&mut reader)?),
        b'U' => Message::Update(update(&mut reader)?),
        b'D' => Message::Delete(delete(&mut reader)?),
        b'T' => Message::Truncate(truncate(&mut reader)?),
        b'M' => Message::Message(logical_message(&mut reader)?),
        other => return Err(DecodeError::UnsupportedMessage(other)),
    };
    reader.finish(tag)?;
    Ok(message)
}

fn begin(reader: &mut Reader<'_>) -> Result<Begin, DecodeError> {
    Ok(Begin {
        final_lsn: reader.u64("begin final lsn")?,
        commit_time_micros: reader.i64("begin commit time")?,
        xid: reader.u32("begin xid")?,
    })
}

fn commit(reader: &mut Reader<'_>) -> Result<Commit, DecodeError> {
    Ok(Commit {
        flags: reader.u8("commit flags")?,
        commit_lsn: reader.u64("commit lsn")?,
        end_lsn: reader.u64("commit end lsn")?,
        commit_time_micros: reader.i64("commit time")?,
    })
}

fn origin(reader: &mut Reader<'_>) -> Result<Origin, DecodeError> {
    Ok(Origin {
        commit_lsn: reader.u64("origin commit lsn")?,
        name: reader.string("origin name")?,
    })
}

/// The fewest bytes one column of a Relation message takes: flags, an empty name's NUL, the
/// type OID and the type modifier.
const MIN_RELATION_COLUMN_LEN: usize = 1 + 1 + 4 + 4;

fn relation(reader: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let id = reader.u32("relation id")?;
    let namespace = reader.string("relation namespace")?;
    let name = reader.string("relation name")?;
    let replica_identity = reader.u8("relation replica identity")?;
    let count = usize::from(reader.u16("relation column count")?);
    let mut columns = Vec::with_capacity(count.min(reader.remaining() / MIN_RELATION_COLUMN_LEN));
    for _ in 0..count {
        let flags = reader.u8("column flags")?;
        if flags & !COLUMN_KEY != 0 {
            return Err(DecodeError::UnknownFlags {
                field: "column flags",
                value: flags,
            });
        }
        columns.push(Column {
            is_key: flags & COLUMN_KEY != 0,
            name: reader.string("column name")?,
            type_oid: reader.u32("column type oid")?,
            type_modifier: reader.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn type_info(reader: &mut Reader<'_>) -> Result<TypeInfo, DecodeError> {
    Ok(TypeInfo {
        id: reader.u32("type oid")?,
        namespace: reader.string("type namespace")?,
        name: reader.string("type name")?,
    })
}

fn insert(reader: &mut Reader<'_>) -> Result<Insert, DecodeError> {
    let relation_id = reader.u32("insert relation id")?;
    match reader.u8("insert tuple marker")? {
        b'N' => Ok(Insert {
            relation_id,
            new: tuple(reader)?,
        }),
        found => Err(DecodeError::UnexpectedTupleMarker {
            message: "insert",
            found,
        }),
    }
}

fn update(reader: &mut Reader<'_>) -> Result<Update, DecodeError> {
    let relation_id = reader.u32("update relation id")?;
    let first = reader.u8("update tuple marker")?;
    let old = match first {
        b'K' => Some(OldTuple::Key(tuple(reader)?)),
        b'O' => Some(OldTuple::Full(tuple(reader)?)),
        _ => None,
    };
    let marker = match old {
        Some(_) => reader.u8("update new tuple marker")?,
        None => first,
    };
    if marker != b'N' {
        return Err(DecodeError::UnexpectedTupleMarker {
            message: "update",
            found: marker,
        });
    }
    Ok(Update {
        relation_id,
        old,
        new: tuple(reader)?,
    })
}

fn delete(reader: &mut Reader<'_>) -> Result<Delete, DecodeError> {
    let relation_id = reader.u32("delete relation id")?;
    let old = match reader.u8("delete tuple marker")? {
        b'K' => OldTuple::Key(tuple(reader)?),
        b'O' => OldTuple::Full(tuple(reader)?),
        found => {
            return Err(DecodeError::UnexpectedTupleMarker {
                message: "delete",
                found,
            });
        }
    };
    Ok(Delete { relation_id, old })
}

fn truncate(reader: &mut Reader<'_>) -> Result<Truncate, DecodeError> {
    let count = length(reader.u32("truncate relation count")?);
    let options = reader.u8("truncate options")?;
    if options & !(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY) != 0 {
        return Err(DecodeError::UnknownFlags {
            field: "truncate options",
            value: options,
        });
    }
    let mut relation_ids = Vec::with_capacity(count.min(reader.remaining() / 4));
    for _ in 0..count {
        relation_ids.push(reader.u32("truncate relation id")?);
    }
    Ok(Truncate {
        cascade: options & TRUNCATE_CASCADE != 0,
        restart_identity: options & TRUNCATE_RESTART_IDENTITY != 0,
        relation_ids,
    })
}

fn logical_message(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    let flags = reader.u8("message flags")?;
    if flags & !MESSAGE_TRANSACTIONAL != 0 {
        return Err(DecodeError::UnknownFlags {
            field: "message flags",
            value: flags,
        });
    }
    let lsn = reader.u64("message lsn")?;
    let prefix = reader.string("message prefix")?;
    let len = length(reader.u32("message content length")?);
    Ok(LogicalMessage {
        transactional: flags & MESSAGE_TRANSACTIONAL != 0,
        lsn,
        prefix,
        content: reader.bytes(len, "message content")?,
    })
}

/// The values of one row version: a column count, then per column a kind byte and, for text and
/// binary values, a length-prefixed value.
fn tuple(reader: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let count = usize::from(reader.u16("tuple column count")?);
    // Every column takes at least its kind byte.
    let mut columns = Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        let column = match reader.u8("tuple column kind")? {
            b'n' => ColumnData::Null,
            b'u' => ColumnData::UnchangedToast,
            b't' => {
                let len = length(reader.u32("text value length")?);
                ColumnData::Text(reader.bytes(len, "text value")?)
            }
            b'b' => {
                let len = length(reader.u32("binary value length")?);
                ColumnData::Binary(reader.bytes(len, "binary value")?)
            }
            other => return Err(DecodeError::UnknownColumnKind(other)),
        };
        columns.push(column);
    }
    Ok(TupleData(columns))
}

/// A length field as a `usize`; one too large for the platform cannot be satisfied by the
/// remaining bytes anyway, so it saturates and the read that follows fails.
fn length(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
