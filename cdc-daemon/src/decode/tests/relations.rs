//! The relation cache and rows built from tuples with it.

use bytes::Bytes;

use crate::decode::relations::{RelationCache, Row, RowError, row};
use crate::decode::values::{NUMERIC, TEXT, UUID, Value};
use crate::decode::{Column, ColumnData, Relation, TupleData};

fn column(name: &str, type_oid: u32, is_key: bool) -> Column {
    Column {
        is_key,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    }
}

fn reports(columns: Vec<Column>) -> Relation {
    Relation {
        id: 16_420,
        namespace: "public".to_owned(),
        name: "reports".to_owned(),
        replica_identity: b'i',
        columns,
    }
}

fn text(value: &str) -> ColumnData {
    ColumnData::Text(Bytes::copy_from_slice(value.as_bytes()))
}

const ID: &str = "0b7e1a52-8d8a-4d5e-9c11-3d2f4a5b6c7d";

#[test]
fn decode_relation_cache_replaces_a_relation_announced_again() {
    let mut cache = RelationCache::new();
    assert!(cache.is_empty());
    cache.update(reports(vec![column("id", UUID, true)]));
    cache.update(reports(vec![
        column("id", UUID, true),
        column("notes", TEXT, false),
    ]));
    assert_eq!(cache.len(), 1);
    let relation = cache.get(16_420).unwrap();
    assert_eq!(relation.columns.len(), 2);
    assert!(cache.get(1).is_none());
}

#[test]
fn decode_row_leaves_unchanged_toast_out_and_keeps_nulls() {
    let relation = reports(vec![
        column("id", UUID, true),
        column("notes", TEXT, false),
        column("value", NUMERIC, false),
        column("flag", TEXT, false),
    ]);
    let tuple = TupleData(vec![
        text(ID),
        ColumnData::UnchangedToast,
        text("36.6"),
        ColumnData::Null,
    ]);
    let row = row(&relation, &tuple).unwrap();
    assert_eq!(row.len(), 3);
    assert!(!row.is_empty());
    assert_eq!(row.get("notes"), None);
    assert_eq!(row.get("flag"), Some(&Value::Null));
    assert_eq!(row.get("value"), Some(&Value::Numeric("36.6".to_owned())));
    let names: Vec<&str> = row.iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["id", "value", "flag"]);
}

#[test]
fn decode_row_rejects_a_column_count_mismatch() {
    let relation = reports(vec![column("id", UUID, true), column("notes", TEXT, false)]);
    for tuple in [
        TupleData(vec![text(ID)]),
        TupleData(vec![text(ID), ColumnData::Null, ColumnData::Null]),
    ] {
        let error = row(&relation, &tuple).unwrap_err();
        assert!(
            matches!(error, RowError::ColumnCount { expected: 2, .. }),
            "{error}"
        );
    }
}

#[test]
fn decode_row_names_the_column_of_an_invalid_value() {
    let relation = reports(vec![column("id", UUID, true)]);
    let error = row(&relation, &TupleData(vec![text("not-a-uuid")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value in column id of public.reports"
    );
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        source.contains("uuid") && source.contains("not-a-uuid"),
        "{source}"
    );
}

#[test]
fn decode_row_rejects_binary_values() {
    let relation = reports(vec![column("id", UUID, true)]);
    let tuple = TupleData(vec![ColumnData::Binary(Bytes::from_static(&[0; 16]))]);
    assert!(matches!(
        row(&relation, &tuple),
        Err(RowError::BinaryValue { column, .. }) if column == "id"
    ));
}

#[test]
fn decode_row_can_be_collected_from_named_values() {
    let row: Row = [("id", Value::Uuid(ID.parse().unwrap()))]
        .into_iter()
        .collect();
    assert_eq!(row.len(), 1);
    assert!(matches!(row.get("id"), Some(Value::Uuid(_))));
}
