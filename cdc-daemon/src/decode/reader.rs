//! A checked cursor over one pgoutput message: every read says what it was reading, and a
//! message that ends early, or a string without its NUL, becomes a [`DecodeError`] instead of a
//! panic. Values are sliced out of the message's [`Bytes`] without copying.

use bytes::Bytes;

use super::DecodeError;

/// Reads big-endian integers, NUL-terminated strings and length-prefixed byte runs from the
/// front of a message.
pub(super) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(super) fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// How many bytes are left to read.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `len` bytes, or an error naming `field` when fewer are left.
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let buf: &'a Bytes = self.buf;
        let slice = self
            .pos
            .checked_add(len)
            .and_then(|end| buf.get(self.pos..end))
            .ok_or(DecodeError::UnexpectedEnd {
                field,
                needed: len,
                remaining: self.remaining(),
            })?;
        self.pos += len;
        Ok(slice)
    }

    /// Exactly `N` bytes, for the fixed-width integers.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N, field)?;
        // `take` returned exactly N bytes, so the conversion cannot fail; map it anyway rather
        // than unwrap.
        slice.try_into().map_err(|_| DecodeError::UnexpectedEnd {
            field,
            needed: N,
            remaining: slice.len(),
        })
    }

    /// One byte.
    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `Int16`, read unsigned (pgoutput uses it for counts).
    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `Int32`, read unsigned (OIDs, xids, counts and lengths).
    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian signed `Int32` (type modifiers).
    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `Int64`, read unsigned (LSNs).
    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A big-endian signed `Int64` (timestamps).
    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A NUL-terminated UTF-8 string; the NUL is consumed and not part of the result.
    pub(super) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|byte| *byte == 0)
            .ok_or(DecodeError::UnterminatedString { field })?;
        let text = self.take(len, field)?;
        self.take(1, field)?;
        let text = std::str::from_utf8(text)
            .map_err(|source| DecodeError::InvalidUtf8 { field, source })?;
        Ok(text.to_owned())
    }

    /// The next `len` bytes as a slice of the message (no copy).
    pub(super) fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(len, field)?;
        // `take` checked that start..start + len lies inside the buffer.
        Ok(self.buf.slice(start..self.pos))
    }

    /// Succeeds when the whole message was read; `tag` names the message in the error.
    pub(super) fn finish(self, tag: u8) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                tag: char::from(tag),
                count,
            }),
        }
    }
}
