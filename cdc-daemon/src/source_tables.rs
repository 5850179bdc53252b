//! Reading published tables straight from PostgreSQL, shaped like the stream's messages: the
//! initial snapshot, a patient's resync and a dead letter's replay feed these rows to the same
//! mapping as streamed changes.
//!
//! [`relations`] builds, from the catalog, the [`Relation`] pgoutput would announce for each
//! table of the publication (its published columns, types and replica identity). [`copy`] runs
//! `COPY (query) TO STDOUT` and turns each line of COPY's text format into a [`TupleData`] of
//! text values: COPY and pgoutput print values with the same type output functions, so only
//! COPY's escaping has to be undone. [`connect`] and [`read_view`] open the plain connections
//! these reads run on.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::Client;

use crate::decode::{Column, ColumnData, Relation, TupleData};

/// Reading a table failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection could not be opened.
    #[error(transparent)]
    Connect(#[from] service_plumbing::postgres::ConnectError),
    /// The query or COPY failed.
    #[error("reading the source failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// COPY sent a line this reader cannot split.
    #[error("unexpected COPY output: {0}")]
    Format(String),
}

/// A plain (not replication) connection to the source at `url`.
pub async fn connect(url: &SecretString) -> Result<Client, SourceError> {
    Ok(service_plumbing::postgres::connect(url.expose_secret()).await?)
}

/// A connection in a read-only repeatable-read transaction, so that everything read on it is
/// one state of the source: the exported `snapshot` when given, else the transaction's own.
/// Values print as the stream prints them (ISO dates, UTC). The transaction ends with the
/// connection.
pub async fn read_view(url: &SecretString, snapshot: Option<&str>) -> Result<Client, SourceError> {
    let client = connect(url).await?;
    let mut sql = "SET DateStyle = ISO; SET TimeZone = 'UTC';
                   BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
        .to_string();
    if let Some(snapshot) = snapshot {
        sql.push_str(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ));
    }
    client.batch_execute(&sql).await?;
    Ok(client)
}

/// The relations of `publication`'s tables, as pgoutput would announce them.
pub async fn relations(client: &Client, publication: &str) -> Result<Vec<Relation>, SourceError> {
    let tables = client
        .query(
            "SELECT c.oid, n.nspname, c.relname, c.relreplident::text, pt.attnames
               FROM pg_publication_tables pt
               JOIN pg_namespace n ON n.nspname = pt.schemaname
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
              WHERE pt.pubname = $1
              ORDER BY n.nspname, c.relname",
            &[&publication],
        )
        .await?;
    let mut relations = Vec::with_capacity(tables.len());
    for table in tables {
        let id: u32 = table.get(0);
        let replica_identity: String = table.get(3);
        let published: Vec<String> = table.get(4);
        // The replica identity's columns: the primary key by default, else the chosen index
        // (FULL: every column; NOTHING: none).
        let columns = client
            .query(
                "SELECT a.attname, a.atttypid, a.atttypmod,
                        CASE $2::text
                          WHEN 'f' THEN true
                          WHEN 'n' THEN false
                          ELSE EXISTS (SELECT 1 FROM pg_index i
                                        WHERE i.indrelid = a.attrelid
                                          AND a.attnum = ANY (i.indkey)
                                          AND CASE $2::text WHEN 'i' THEN i.indisreplident
                                                            ELSE i.indisprimary END)
                        END
                   FROM pg_attribute a
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attname = ANY ($3)
                  ORDER BY a.attnum",
                &[&id, &replica_identity, &published],
            )
            .await?;
        relations.push(Relation {
            id,
            namespace: table.get(1),
            name: table.get(2),
            replica_identity: replica_identity.bytes().next().unwrap_or(b'd'),
            columns: columns
                .iter()
                .map(|column| Column {
                    name: column.get(0),
                    type_oid: column.get(1),
                    type_modifier: column.get(2),
                    is_key: column.get(3),
                })
                .collect(),
        });
    }
    Ok(relations)
}

/// `"c1", "c2"`: a relation's columns for a select list, qualified by `alias` when given.
pub fn column_list(relation: &Relation, alias: &str) -> String {
    relation
        .columns
        .iter()
        .map(|column| {
            let name = quote_identifier(&column.name);
            if alias.is_empty() {
                name
            } else {
                format!("{alias}.{name}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"schema"."table"`.
pub fn table_name(relation: &Relation) -> String {
    format!(
        "{}.{}",
        quote_identifier(&relation.namespace),
        quote_identifier(&relation.name)
    )
}

/// An SQL identifier, quoted.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows `query` returns, through `COPY (query) TO STDOUT`, one [`TupleData`] of text values
/// per row.
pub async fn copy(
    client: &Client,
    query: &str,
) -> Result<impl Stream<Item = Result<TupleData, SourceError>> + use<>, SourceError> {
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT"))
        .await?;
    Ok(lines(stream).map(|line| line.and_then(|line| parse_line(&line))))
}

/// Splits COPY data (one message per row in practice, but not promised) into lines.
fn lines(
    stream: impl Stream<Item = Result<Bytes, tokio_postgres::Error>>,
) -> impl Stream<Item = Result<Bytes, SourceError>> {
    let state = (Box::pin(stream), BytesMut::new());
    futures_util::stream::unfold(state, |(mut stream, mut pending)| async move {
        loop {
            if let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                let line = pending.split_to(end + 1).freeze().slice(..end);
                return Some((Ok(line), (stream, pending)));
            }
            match stream.next().await {
                Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                Some(Err(error)) => return Some((Err(error.into()), (stream, pending))),
                None if pending.is_empty() => return None,
                None => {
                    let rest = pending.split().freeze();
                    return Some((Ok(rest), (stream, pending)));
                }
            }
        }
    })
}

/// One line of COPY's text format: tab-separated fields, `\N` for NULL, backslash escapes.
pub fn parse_line(line: &[u8]) -> Result<TupleData, SourceError> {
    line.split(|&byte| byte == b'\t')
        .map(|field| {
            if field == b"\\N" {
                Ok(ColumnData::Null)
            } else {
                unescape(field).map(|text| ColumnData::Text(Bytes::from(text)))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(TupleData)
}

fn unescape(field: &[u8]) -> Result<Vec<u8>, SourceError> {
    let mut text = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            text.push(byte);
            continue;
        }
        let escaped = bytes.next().ok_or_else(|| {
            SourceError::Format(format!(
                "a field ends with a backslash: {:?}",
                String::from_utf8_lossy(field)
            ))
        })?;
        text.push(match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(digit @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(digit - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                (value & 0xff) as u8
            }
            b'x' => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match bytes.peek().and_then(|digit| (*digit as char).to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit;
                            bytes.next();
                        }
                        None => break,
                    }
                }
                value as u8
            }
            other => other,
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn text(value: &str) -> ColumnData {
        ColumnData::Text(Bytes::from(value.to_string()))
    }

    #[test]
    fn copy_lines_are_unescaped_into_text_values() {
        let tuple = parse_line(b"a\\tb\t\\N\tline\\nbreak\tback\\\\slash\t\\101\\x42").unwrap();
        assert_eq!(
            tuple.0,
            [
                text("a\tb"),
                ColumnData::Null,
                text("line\nbreak"),
                text("back\\slash"),
                text("AB"),
            ]
        );
    }

    #[test]
    fn a_dangling_backslash_is_an_error() {
        assert!(parse_line(b"bad\\").is_err());
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks() {
        let chunks = vec![
            Ok(Bytes::from_static(b"a\tb\nc")),
            Ok(Bytes::from_static(b"\td\n")),
            Ok(Bytes::from_static(b"e\n")),
        ];
        let lines: Vec<Bytes> = lines(futures_util::stream::iter(chunks))
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(lines, ["a\tb", "c\td", "e"]);
    }
}
