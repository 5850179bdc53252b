//! A test-only pgoutput writer: [`Wire`] spells a message out field by field, so a test states
//! the layout it expects, and [`encode`] writes any [`Message`] with it for the property tests.

use crate::decode::{ColumnData, Message, OldTuple, TupleData};

/// A message under construction, written field by field in network byte order.
#[derive(Default)]
pub(crate) struct Wire(Vec<u8>);

impl Wire {
    /// A message starting with `tag`.
    pub(crate) fn tag(tag: u8) -> Self {
        Wire(vec![tag])
    }

    pub(crate) fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    pub(crate) fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn i32(mut self, value: i32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A NUL-terminated string.
    pub(crate) fn string(mut self, value: &str) -> Self {
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(0);
        self
    }

    /// Raw bytes, without a length.
    pub(crate) fn raw(mut self, value: &[u8]) -> Self {
        self.0.extend_from_slice(value);
        self
    }

    /// A tuple: column count, then each column's kind and, for values, length and bytes.
    pub(crate) fn tuple(self, tuple: &TupleData) -> Self {
        let count = u16::try_from(tuple.0.len()).expect("test tuples have few columns");
        tuple
            .0
            .iter()
            .fold(self.u16(count), |wire, column| match column {
                ColumnData::Null => wire.u8(b'n'),
                ColumnData::UnchangedToast => wire.u8(b'u'),
                ColumnData::Text(value) => wire.u8(b't').u32(len(value)).raw(value),
                ColumnData::Binary(value) => wire.u8(b'b').u32(len(value)).raw(value),
            })
    }

    /// The message's bytes.
    pub(crate) fn build(self) -> Vec<u8> {
        self.0
    }
}

fn len(value: &[u8]) -> u32 {
    u32::try_from(value.len()).expect("test values are small")
}

/// Writes `message` as pgoutput protocol version 1 does.
pub(crate) fn encode(message: &Message) -> Vec<u8> {
    let wire = match message {
        Message::Begin(begin) => Wire::tag(b'B')
            .u64(begin.final_lsn)
            .i64(begin.commit_time_micros)
            .u32(begin.xid),
        Message::Commit(commit) => Wire::tag(b'C')
            .u8(commit.flags)
            .u64(commit.commit_lsn)
            .u64(commit.end_lsn)
            .i64(commit.commit_time_micros),
        Message::Origin(origin) => Wire::tag(b'O').u64(origin.commit_lsn).string(&origin.name),
        Message::Relation(relation) => {
            let count = u16::try_from(relation.columns.len()).expect("few test columns");
            let head = Wire::tag(b'R')
                .u32(relation.id)
                .string(&relation.namespace)
                .string(&relation.name)
                .u8(relation.replica_identity)
                .u16(count);
            relation.columns.iter().fold(head, |wire, column| {
                wire.u8(u8::from(column.is_key))
                    .string(&column.name)
                    .u32(column.type_oid)
                    .i32(column.type_modifier)
            })
        }
        Message::Type(type_info) => Wire::tag(b'Y')
            .u32(type_info.id)
            .string(&type_info.namespace)
            .string(&type_info.name),
        Message::Insert(insert) => Wire::tag(b'I')
            .u32(insert.relation_id)
            .u8(b'N')
            .tuple(&insert.new),
        Message::Update(update) => {
            let head = Wire::tag(b'U').u32(update.relation_id);
            let head = match &update.old {
                Some(old) => old_tuple(head, old),
                None => head,
            };
            head.u8(b'N').tuple(&update.new)
        }
        Message::Delete(delete) => old_tuple(Wire::tag(b'D').u32(delete.relation_id), &delete.old),
        Message::Truncate(truncate) => {
            let count = u32::try_from(truncate.relation_ids.len()).expect("few test relations");
            let options = u8::from(truncate.cascade) | u8::from(truncate.restart_identity) << 1;
            let head = Wire::tag(b'T').u32(count).u8(options);
            truncate
                .relation_ids
                .iter()
                .fold(head, |wire, id| wire.u32(*id))
        }
        Message::Message(message) => Wire::tag(b'M')
            .u8(u8::from(message.transactional))
            .u64(message.lsn)
            .string(&message.prefix)
            .u32(len(&message.content))
            .raw(&message.content),
    };
    wire.build()
}

fn old_tuple(wire: Wire, old: &OldTuple) -> Wire {
    match old {
        OldTuple::Key(tuple) => wire.u8(b'K').tuple(tuple),
        OldTuple::Full(tuple) => wire.u8(b'O').tuple(tuple),
    }
}
