//! Each message kind decoded from bytes laid out field by field, and the ways a message can be
//! malformed: cut short, followed by extra bytes, or carrying markers and flags version 1 does
//! not define.

use bytes::Bytes;

use super::encoder::{Wire, encode};
use crate::decode::{
    Begin, Column, ColumnData, Commit, DecodeError, Delete, Insert, LogicalMessage, Message,
    OldTuple, Origin, Relation, Truncate, TupleData, TypeInfo, Update, decode, decode_bytes,
};

fn text(value: &str) -> ColumnData {
    ColumnData::Text(Bytes::copy_from_slice(value.as_bytes()))
}

fn sample_tuple() -> TupleData {
    TupleData(vec![
        text("42"),
        ColumnData::Null,
        ColumnData::UnchangedToast,
        text(""),
        ColumnData::Binary(Bytes::from_static(&[0, 1, 2])),
    ])
}

/// One valid message of every kind (and both shapes of the kinds that have two).
pub(crate) fn samples() -> Vec<Message> {
    vec![
        Message::Begin(Begin {
            final_lsn: 0x16B_3748,
            commit_time_micros: 767_000_000_123_456,
            xid: 771,
        }),
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: 0x16B_3748,
            end_lsn: 0x16B_3778,
            commit_time_micros: -5,
        }),
        Message::Origin(Origin {
            commit_lsn: 7,
            name: "pg_1".to_owned(),
        }),
        Message::Relation(Relation {
            id: 16_385,
            namespace: "public".to_owned(),
            name: "measurements".to_owned(),
            replica_identity: b'd',
            columns: vec![
                Column {
                    is_key: true,
                    name: "report_id".to_owned(),
                    type_oid: 2950,
                    type_modifier: -1,
                },
                Column {
                    is_key: false,
                    name: "ünit".to_owned(),
                    type_oid: 1043,
                    type_modifier: 36,
                },
            ],
        }),
        Message::Type(TypeInfo {
            id: 16_400,
            namespace: "public".to_owned(),
            name: "mood".to_owned(),
        }),
        Message::Insert(Insert {
            relation_id: 16_385,
            new: sample_tuple(),
        }),
        Message::Update(Update {
            relation_id: 16_385,
            old: None,
            new: sample_tuple(),
        }),
        Message::Update(Update {
            relation_id: 16_385,
            old: Some(OldTuple::Key(TupleData(vec![text("1"), ColumnData::Null]))),
            new: sample_tuple(),
        }),
        Message::Update(Update {
            relation_id: 16_385,
            old: Some(OldTuple::Full(sample_tuple())),
            new: TupleData(vec![]),
        }),
        Message::Delete(Delete {
            relation_id: 16_385,
            old: OldTuple::Key(TupleData(vec![text("1")])),
        }),
        Message::Delete(Delete {
            relation_id: 16_385,
            old: OldTuple::Full(sample_tuple()),
        }),
        Message::Truncate(Truncate {
            cascade: true,
            restart_identity: false,
            relation_ids: vec![16_385, 16_390],
        }),
        Message::Message(LogicalMessage {
            transactional: true,
            lsn: 0x16B_3700,
            prefix: "myhealth".to_owned(),
            content: Bytes::from_static(b"hello\0world"),
        }),
    ]
}

#[test]
fn decode_begin_reads_lsn_time_and_xid() {
    let bytes = [
        b'B', 0, 0, 0, 0, 1, 0x6B, 0x37, 0x48, 0, 0x02, 0xB9, 0xF6, 0x9B, 0x5B, 0x8A, 0x40, 0, 0,
        3, 3,
    ];
    let message = decode(&bytes).unwrap();
    assert_eq!(
        message,
        Message::Begin(Begin {
            final_lsn: 0x16B_3748,
            commit_time_micros: 0x0002_B9F6_9B5B_8A40,
            xid: 0x303,
        })
    );
    assert_eq!(message.kind(), "begin");
}

#[test]
fn decode_commit_reads_flags_lsns_and_time() {
    let bytes = Wire::tag(b'C').u8(0).u64(10).u64(20).i64(-1).build();
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: 10,
            end_lsn: 20,
            commit_time_micros: -1,
        })
    );
}

#[test]
fn decode_origin_reads_lsn_and_name() {
    let bytes = Wire::tag(b'O').u64(99).string("upstream").build();
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Origin(Origin {
            commit_lsn: 99,
            name: "upstream".to_owned(),
        })
    );
}

#[test]
fn decode_relation_reads_every_column() {
    let bytes = Wire::tag(b'R')
        .u32(16_385)
        .string("")
        .string("patients")
        .u8(b'f')
        .u16(2)
        .u8(1)
        .string("id")
        .u32(2950)
        .i32(-1)
        .u8(0)
        .string("full_name")
        .u32(1043)
        .i32(104)
        .build();
    let Message::Relation(relation) = decode(&bytes).unwrap() else {
        panic!("not a relation");
    };
    assert_eq!(relation.id, 16_385);
    assert_eq!(relation.namespace, "");
    assert_eq!(relation.name, "patients");
    assert_eq!(relation.replica_identity, b'f');
    assert_eq!(
        relation.columns,
        vec![
            Column {
                is_key: true,
                name: "id".to_owned(),
                type_oid: 2950,
                type_modifier: -1,
            },
            Column {
                is_key: false,
                name: "full_name".to_owned(),
                type_oid: 1043,
                type_modifier: 104,
            },
        ]
    );
}

#[test]
fn decode_type_reads_oid_namespace_and_name() {
    let bytes = Wire::tag(b'Y')
        .u32(16_400)
        .string("public")
        .string("mood")
        .build();
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Type(TypeInfo {
            id: 16_400,
            namespace: "public".to_owned(),
            name: "mood".to_owned(),
        })
    );
}

#[test]
fn decode_insert_reads_every_column_kind() {
    let bytes = Wire::tag(b'I')
        .u32(7)
        .u8(b'N')
        .u16(5)
        .u8(b't')
        .u32(2)
        .raw(b"42")
        .u8(b'n')
        .u8(b'u')
        .u8(b't')
        .u32(0)
        .u8(b'b')
        .u32(3)
        .raw(&[0, 1, 2])
        .build();
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Insert(Insert {
            relation_id: 7,
            new: sample_tuple(),
        })
    );
}

#[test]
fn decode_update_without_old_tuple() {
    let bytes = Wire::tag(b'U')
        .u32(7)
        .u8(b'N')
        .tuple(&sample_tuple())
        .build();
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Update(Update {
            relation_id: 7,
            old: None,
            new: sample_tuple(),
        })
    );
}

#[test]
fn decode_update_with_old_key_and_with_old_row() {
    let key = TupleData(vec![text("1"), ColumnData::Null]);
    for (marker, old) in [
        (b'K', OldTuple::Key(key.clone())),
        (b'O', OldTuple::Full(key.clone())),
    ] {
        let bytes = Wire::tag(b'U')
            .u32(7)
            .u8(marker)
            .tuple(&key)
            .u8(b'N')
            .tuple(&sample_tuple())
            .build();
        let Message::Update(update) = decode(&bytes).unwrap() else {
            panic!("not an update");
        };
        assert_eq!(update.relation_id, 7);
        assert_eq!(update.old.as_ref().map(|old| old.tuple()), Some(&key));
        assert_eq!(update.old, Some(old));
        assert_eq!(update.new, sample_tuple());
    }
}

#[test]
fn decode_delete_with_old_key_and_with_old_row() {
    let key = TupleData(vec![text("1"), text("8480-6")]);
    for (marker, old) in [
        (b'K', OldTuple::Key(key.clone())),
        (b'O', OldTuple::Full(key.clone())),
    ] {
        let bytes = Wire::tag(b'D').u32(9).u8(marker).tuple(&key).build();
        assert_eq!(
            decode(&bytes).unwrap(),
            Message::Delete(Delete {
                relation_id: 9,
                old,
            })
        );
    }
}

#[test]
fn decode_truncate_reads_options_and_relations() {
    for (options, cascade, restart_identity) in [
        (0, false, false),
        (1, true, false),
        (2, false, true),
        (3, true, true),
    ] {
        let bytes = Wire::tag(b'T').u32(2).u8(options).u32(5).u32(6).build();
        assert_eq!(
            decode(&bytes).unwrap(),
            Message::Truncate(Truncate {
                cascade,
                restart_identity,
                relation_ids: vec![5, 6],
            })
        );
    }
}

#[test]
fn decode_logical_message_reads_flags_prefix_and_content() {
    for (flags, transactional) in [(0, false), (1, true)] {
        let bytes = Wire::tag(b'M')
            .u8(flags)
            .u64(1234)
            .string("myhealth")
            .u32(5)
            .raw(b"hello")
            .build();
        assert_eq!(
            decode(&bytes).unwrap(),
            Message::Message(LogicalMessage {
                transactional,
                lsn: 1234,
                prefix: "myhealth".to_owned(),
                content: Bytes::from_static(b"hello"),
            })
        );
    }
}

#[test]
fn decode_bytes_slices_values_out_of_the_message() {
    let bytes = Bytes::from(
        Wire::tag(b'I')
            .u32(1)
            .u8(b'N')
            .tuple(&sample_tuple())
            .build(),
    );
    let Message::Insert(insert) = decode_bytes(&bytes).unwrap() else {
        panic!("not an insert");
    };
    let Some(ColumnData::Text(value)) = insert.new.0.first() else {
        panic!("not a text value");
    };
    let range = bytes.as_ptr_range();
    assert!(range.contains(&value.as_ptr()), "the value was copied");
}

#[test]
fn every_sample_round_trips_through_the_test_encoder() {
    for message in samples() {
        assert_eq!(decode(&encode(&message)).unwrap(), message);
    }
}

#[test]
fn decode_rejects_every_truncation_of_a_valid_message() {
    for message in samples() {
        let bytes = encode(&message);
        for len in 0..bytes.len() {
            let cut = bytes.get(..len).unwrap();
            assert!(
                decode(cut).is_err(),
                "{} cut to {len} of {} bytes decoded",
                message.kind(),
                bytes.len()
            );
        }
    }
}

#[test]
fn decode_rejects_trailing_bytes_after_a_complete_message() {
    for message in samples() {
        let mut bytes = encode(&message);
        bytes.push(0);
        let error = decode(&bytes).unwrap_err();
        assert!(
            matches!(error, DecodeError::TrailingBytes { count: 1, .. }),
            "{}: {error}",
            message.kind()
        );
    }
}

#[test]
fn decode_rejects_an_empty_message() {
    assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
}

#[test]
fn decode_rejects_streaming_and_two_phase_messages_as_unsupported() {
    for tag in *b"SEcAPKrbpX\0" {
        let bytes = [tag, 0, 0, 0, 1, 0, 0, 0, 0];
        let error = decode(&bytes).unwrap_err();
        assert!(
            matches!(error, DecodeError::UnsupportedMessage(found) if found == tag),
            "{error}"
        );
    }
    assert_eq!(
        DecodeError::UnsupportedMessage(b'S').to_string(),
        "unsupported pgoutput message 'S'"
    );
    assert_eq!(
        DecodeError::UnsupportedMessage(0).to_string(),
        "unsupported pgoutput message 0x00"
    );
}

#[test]
fn decode_rejects_invalid_utf8_in_strings() {
    let bytes = Wire::tag(b'O').u64(1).raw(&[0xFF, 0xFE, 0]).build();
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::InvalidUtf8 {
            field: "origin name",
            ..
        })
    ));
}

#[test]
fn decode_rejects_a_string_without_its_nul() {
    let bytes = Wire::tag(b'O').u64(1).raw(b"abc").build();
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::UnterminatedString { .. })
    ));
}

#[test]
fn decode_rejects_wrong_tuple_markers() {
    let tuple = TupleData(vec![ColumnData::Null]);
    let cases = [
        Wire::tag(b'I').u32(1).u8(b'K').tuple(&tuple).build(),
        Wire::tag(b'U').u32(1).u8(b'X').tuple(&tuple).build(),
        Wire::tag(b'U')
            .u32(1)
            .u8(b'K')
            .tuple(&tuple)
            .u8(b'K')
            .tuple(&tuple)
            .build(),
        Wire::tag(b'D').u32(1).u8(b'N').tuple(&tuple).build(),
    ];
    for bytes in cases {
        let error = decode(&bytes).unwrap_err();
        assert!(
            matches!(error, DecodeError::UnexpectedTupleMarker { .. }),
            "{error}"
        );
    }
}

#[test]
fn decode_rejects_unknown_column_kinds() {
    let bytes = Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'x').build();
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::UnknownColumnKind(b'x'))
    ));
}

#[test]
fn decode_rejects_flag_bits_version_1_does_not_define() {
    let cases = [
        Wire::tag(b'T').u32(0).u8(4).build(),
        Wire::tag(b'M').u8(2).u64(0).string("p").u32(0).build(),
        Wire::tag(b'R')
            .u32(1)
            .string("public")
            .string("t")
            .u8(b'd')
            .u16(1)
            .u8(2)
            .string("c")
            .u32(25)
            .i32(-1)
            .build(),
    ];
    for bytes in cases {
        let error = decode(&bytes).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownFlags { .. }), "{error}");
    }
}

#[test]
fn decode_rejects_huge_counts_without_allocating_for_them() {
    // Counts claim far more entries than the few bytes left could hold; each must fail on the
    // missing bytes, not try to reserve room for billions of entries first.
    let cases = [
        Wire::tag(b'T').u32(u32::MAX).u8(0).u32(1).build(),
        Wire::tag(b'I')
            .u32(1)
            .u8(b'N')
            .u16(u16::MAX)
            .u8(b'n')
            .build(),
        Wire::tag(b'R')
            .u32(1)
            .string("s")
            .string("t")
            .u8(b'd')
            .u16(u16::MAX)
            .build(),
        Wire::tag(b'M')
            .u8(0)
            .u64(0)
            .string("p")
            .u32(u32::MAX)
            .raw(b"x")
            .build(),
        Wire::tag(b'I')
            .u32(1)
            .u8(b'N')
            .u16(1)
            .u8(b't')
            .u32(u32::MAX)
            .raw(b"x")
            .build(),
    ];
    for bytes in cases {
        let error = decode(&bytes).unwrap_err();
        assert!(
            matches!(error, DecodeError::UnexpectedEnd { .. }),
            "{error}"
        );
    }
}

#[test]
fn decode_errors_name_the_field_that_ran_out() {
    let bytes = Wire::tag(b'B').u64(1).build();
    assert_eq!(
        decode(&bytes).unwrap_err().to_string(),
        "pgoutput message ends inside begin commit time: 8 bytes needed, 0 left"
    );
}
