//! Our decoder against `pg_walstream`'s, an independent pgoutput parser: valid messages of every
//! version 1 kind must decode to the same fields in both, and whatever bytes we accept, it must
//! accept with the same meaning. (It is more lenient than we are — it ignores trailing bytes and
//! unknown flag bits — so it may accept what we reject; not the other way round.)

use pg_walstream::{
    ColumnData as TheirColumn, LogicalReplicationMessage as Theirs, LogicalReplicationParser,
    TupleData as TheirTuple,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::encoder::encode;
use super::strategies::message;
use crate::decode::{ColumnData, Message, OldTuple, TupleData, decode};

fn theirs(bytes: &[u8]) -> Option<Theirs> {
    LogicalReplicationParser::with_protocol_version(1)
        .parse_wal_message(bytes)
        .ok()
        .map(|parsed| parsed.message)
}

fn same_tuple(ours: &TupleData, theirs: &TheirTuple) -> Result<(), TestCaseError> {
    prop_assert_eq!(ours.0.len(), theirs.column_count());
    for (ours, theirs) in ours.0.iter().zip(theirs.columns.iter()) {
        same_column(ours, theirs)?;
    }
    Ok(())
}

fn same_column(ours: &ColumnData, theirs: &TheirColumn) -> Result<(), TestCaseError> {
    match ours {
        ColumnData::Null => prop_assert!(theirs.is_null()),
        ColumnData::UnchangedToast => prop_assert!(theirs.is_unchanged()),
        ColumnData::Text(value) => {
            prop_assert!(theirs.is_text());
            prop_assert_eq!(value.as_ref(), theirs.as_bytes());
        }
        ColumnData::Binary(value) => {
            prop_assert!(theirs.is_binary());
            prop_assert_eq!(value.as_ref(), theirs.as_bytes());
        }
    }
    Ok(())
}

fn same_old(ours: &OldTuple, key_type: char, tuple: &TheirTuple) -> Result<(), TestCaseError> {
    let expected = match ours {
        OldTuple::Key(_) => 'K',
        OldTuple::Full(_) => 'O',
    };
    prop_assert_eq!(key_type, expected);
    same_tuple(ours.tuple(), tuple)
}

/// Compares every field the two representations share.
fn same_message(ours: &Message, theirs: &Theirs) -> Result<(), TestCaseError> {
    match (ours, theirs) {
        (
            Message::Begin(ours),
            Theirs::Begin {
                final_lsn,
                timestamp,
                xid,
            },
        ) => {
            prop_assert_eq!(ours.final_lsn, *final_lsn);
            prop_assert_eq!(ours.commit_time_micros, *timestamp);
            prop_assert_eq!(ours.xid, *xid);
        }
        (
            Message::Commit(ours),
            Theirs::Commit {
                flags,
                commit_lsn,
                end_lsn,
                timestamp,
            },
        ) => {
            prop_assert_eq!(ours.flags, *flags);
            prop_assert_eq!(ours.commit_lsn, *commit_lsn);
            prop_assert_eq!(ours.end_lsn, *end_lsn);
            prop_assert_eq!(ours.commit_time_micros, *timestamp);
        }
        (
            Message::Origin(ours),
            Theirs::Origin {
                origin_lsn,
                origin_name,
            },
        ) => {
            prop_assert_eq!(ours.commit_lsn, *origin_lsn);
            prop_assert_eq!(&ours.name, origin_name);
        }
        (
            Message::Relation(ours),
            Theirs::Relation {
                relation_id,
                namespace,
                relation_name,
                replica_identity,
                columns,
            },
        ) => {
            prop_assert_eq!(ours.id, *relation_id);
            prop_assert_eq!(ours.namespace.as_str(), &**namespace);
            prop_assert_eq!(ours.name.as_str(), &**relation_name);
            prop_assert_eq!(ours.replica_identity, *replica_identity);
            prop_assert_eq!(ours.columns.len(), columns.len());
            for (ours, theirs) in ours.columns.iter().zip(columns) {
                prop_assert_eq!(ours.is_key, theirs.is_key());
                prop_assert_eq!(ours.name.as_str(), &*theirs.name);
                prop_assert_eq!(ours.type_oid, theirs.type_id);
                prop_assert_eq!(ours.type_modifier, theirs.type_modifier);
            }
        }
        (
            Message::Type(ours),
            Theirs::Type {
                type_id,
                namespace,
                type_name,
            },
        ) => {
            prop_assert_eq!(ours.id, *type_id);
            prop_assert_eq!(&ours.namespace, namespace);
            prop_assert_eq!(&ours.name, type_name);
        }
        (Message::Insert(ours), Theirs::Insert { relation_id, tuple }) => {
            prop_assert_eq!(ours.relation_id, *relation_id);
            same_tuple(&ours.new, tuple)?;
        }
        (
            Message::Update(ours),
            Theirs::Update {
                relation_id,
                old_tuple,
                new_tuple,
                key_type,
            },
        ) => {
            prop_assert_eq!(ours.relation_id, *relation_id);
            match (&ours.old, old_tuple, key_type) {
                (None, None, None) => {}
                (Some(old), Some(tuple), Some(key_type)) => same_old(old, *key_type, tuple)?,
                (old, tuple, key_type) => {
                    prop_assert!(false, "old tuples differ: {old:?} / {tuple:?} {key_type:?}")
                }
            }
            same_tuple(&ours.new, new_tuple)?;
        }
        (
            Message::Delete(ours),
            Theirs::Delete {
                relation_id,
                old_tuple,
                key_type,
            },
        ) => {
            prop_assert_eq!(ours.relation_id, *relation_id);
            same_old(&ours.old, *key_type, old_tuple)?;
        }
        (
            Message::Truncate(ours),
            Theirs::Truncate {
                relation_ids,
                flags,
            },
        ) => {
            prop_assert_eq!(&ours.relation_ids, relation_ids);
            prop_assert_eq!(ours.cascade, flags & 1 != 0);
            prop_assert_eq!(ours.restart_identity, flags & 2 != 0);
        }
        (
            Message::Message(ours),
            Theirs::Message {
                flags,
                lsn,
                prefix,
                content,
            },
        ) => {
            prop_assert_eq!(ours.transactional, flags & 1 != 0);
            prop_assert_eq!(ours.lsn, *lsn);
            prop_assert_eq!(&ours.prefix, prefix);
            prop_assert_eq!(&ours.content, content);
        }
        (ours, theirs) => prop_assert!(false, "kinds differ: {ours:?} / {theirs:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_agrees_with_pg_walstream_on_valid_messages(message in message()) {
        let bytes = encode(&message);
        let ours = decode(&bytes).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&ours, &message);
        let theirs = theirs(&bytes)
            .ok_or_else(|| TestCaseError::fail("pg_walstream rejected a valid message"))?;
        same_message(&ours, &theirs)?;
    }

    #[test]
    fn decode_accepts_only_what_pg_walstream_reads_the_same_way(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        if let Ok(ours) = decode(&bytes) {
            let theirs = theirs(&bytes)
                .ok_or_else(|| TestCaseError::fail("pg_walstream rejected what we accepted"))?;
            same_message(&ours, &theirs)?;
        }
    }
}
