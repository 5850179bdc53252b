//! Table schemas as the stream announces them, and rows built from tuples with them.
//!
//! pgoutput sends a `Relation` message before the first change of a table in a session and again
//! whenever its schema changed, and changes name their table only by OID: the [`RelationCache`]
//! keeps the latest schema per OID, and [`row`] pairs a tuple's values with its column names and
//! types. An unchanged TOASTed column is left out of the row, never turned into a null: the
//! stored value is still the old one.

use std::collections::HashMap;
use std::sync::Arc;

use super::values::{Value, ValueError, parse_value};
use super::{ColumnData, Relation, TupleData};

/// The latest [`Relation`] of each table seen in the stream. Each is shared (`Arc`) so that a
/// row can borrow its column names while the mapper that holds the cache goes on working.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        RelationCache::default()
    }

    /// Remembers `relation`, replacing any earlier schema of the same table (its columns
    /// changed mid-stream).
    pub fn update(&mut self, relation: Relation) {
        self.relations.insert(relation.id, Arc::new(relation));
    }

    /// The latest schema of table `id`, if one was seen.
    pub fn get(&self, id: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&id)
    }

    /// How many tables are known.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// Whether no table is known yet.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }
}

/// One row version with named, typed values; columns whose value was not sent (unchanged
/// TOAST) are absent. The names are borrowed from the [`Relation`] (or whatever else names the
/// columns), so building a row allocates only its values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row<'n> {
    columns: Vec<(&'n str, Value)>,
}

impl<'n> Row<'n> {
    /// The value of column `name`, or `None` when the row does not carry it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(column, _)| *column == name)
            .map(|(_, value)| value)
    }

    /// The columns the row carries, in the table's column order.
    pub fn iter(&self) -> impl Iterator<Item = (&'n str, &Value)> {
        self.columns.iter().map(|(name, value)| (*name, value))
    }

    /// Whether the row carries no column at all.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// How many columns the row carries.
    pub fn len(&self) -> usize {
        self.columns.len()
    }
}

/// Builds a row from `(column, value)` pairs; `cdc-daemon verify` makes rows from SQL results
/// this way, to build expected documents with the mapping's own functions.
impl<'n> FromIterator<(&'n str, Value)> for Row<'n> {
    fn from_iter<I: IntoIterator<Item = (&'n str, Value)>>(columns: I) -> Self {
        Row {
            columns: columns.into_iter().collect(),
        }
    }
}

/// Why a tuple could not be made into a [`Row`].
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The tuple has a different number of values than the relation has columns.
    #[error("tuple of {relation} has {found} values, but the relation has {expected} columns")]
    ColumnCount {
        /// The table, as `namespace.name`.
        relation: String,
        /// The relation's column count.
        expected: usize,
        /// The tuple's value count.
        found: usize,
    },
    /// A value is not valid text for its column's type.
    #[error("invalid value in column {column} of {relation}")]
    Value {
        /// The table, as `namespace.name`.
        relation: String,
        /// The column holding the value.
        column: String,
        /// What was wrong with the value.
        source: ValueError,
    },
    /// A value came in binary format, which the daemon never requests.
    #[error("binary value in column {column} of {relation}; only text format is supported")]
    BinaryValue {
        /// The table, as `namespace.name`.
        relation: String,
        /// The column holding the value.
        column: String,
    },
}

/// Pairs `tuple`'s values with `relation`'s columns and parses each by its type.
pub fn row<'r>(relation: &'r Relation, tuple: &TupleData) -> Result<Row<'r>, RowError> {
    let name = || format!("{}.{}", relation.namespace, relation.name);
    if tuple.0.len() != relation.columns.len() {
        return Err(RowError::ColumnCount {
            relation: name(),
            expected: relation.columns.len(),
            found: tuple.0.len(),
        });
    }
    let mut columns = Vec::with_capacity(tuple.0.len());
    for (column, data) in relation.columns.iter().zip(&tuple.0) {
        let value = match data {
            ColumnData::Null => Value::Null,
            ColumnData::UnchangedToast => continue,
            ColumnData::Text(text) => {
                parse_value(column.type_oid, text).map_err(|source| RowError::Value {
                    relation: name(),
                    column: column.name.clone(),
                    source,
                })?
            }
            ColumnData::Binary(_) => {
                return Err(RowError::BinaryValue {
                    relation: name(),
                    column: column.name.clone(),
                });
            }
        };
        columns.push((column.name.as_str(), value));
    }
    Ok(Row { columns })
}
