//! Proptest strategies for valid messages of every kind version 1 defines.

use bytes::Bytes;
use proptest::prelude::*;

use crate::decode::{
    Begin, Column, ColumnData, Commit, Delete, Insert, LogicalMessage, Message, OldTuple, Origin,
    Relation, Truncate, TupleData, TypeInfo, Update,
};

/// A protocol string: any text without NUL (including none at all and non-ASCII).
fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn column_data() -> impl Strategy<Value = ColumnData> {
    prop_oneof![
        Just(ColumnData::Null),
        Just(ColumnData::UnchangedToast),
        payload().prop_map(ColumnData::Text),
        payload().prop_map(ColumnData::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(column_data(), 0..12).prop_map(TupleData)
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn column() -> impl Strategy<Value = Column> {
    (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(is_key, name, type_oid, type_modifier)| Column {
            is_key,
            name,
            type_oid,
            type_modifier,
        },
    )
}

/// Any valid message.
pub(crate) fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, time, xid)| {
            Message::Begin(Begin {
                final_lsn,
                commit_time_micros: time,
                xid,
            })
        }),
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, time)| Message::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time_micros: time,
            })
        ),
        (any::<u64>(), name())
            .prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        (
            any::<u32>(),
            name(),
            name(),
            prop_oneof![Just(b'd'), Just(b'n'), Just(b'f'), Just(b'i')],
            proptest::collection::vec(column(), 0..10),
        )
            .prop_map(|(id, namespace, name, replica_identity, columns)| {
                Message::Relation(Relation {
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (any::<u32>(), name(), name()).prop_map(|(id, namespace, name)| {
            Message::Type(TypeInfo {
                id,
                namespace,
                name,
            })
        }),
        (any::<u32>(), tuple())
            .prop_map(|(relation_id, new)| Message::Insert(Insert { relation_id, new })),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple()).prop_map(
            |(relation_id, old, new)| Message::Update(Update {
                relation_id,
                old,
                new,
            })
        ),
        (any::<u32>(), old_tuple())
            .prop_map(|(relation_id, old)| Message::Delete(Delete { relation_id, old })),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(any::<u32>(), 0..8)
        )
            .prop_map(|(cascade, restart_identity, relation_ids)| {
                Message::Truncate(Truncate {
                    cascade,
                    restart_identity,
                    relation_ids,
                })
            }),
        (any::<bool>(), any::<u64>(), name(), payload()).prop_map(
            |(transactional, lsn, prefix, content)| Message::Message(LogicalMessage {
                transactional,
                lsn,
                prefix,
                content,
            })
        ),
    ]
}
