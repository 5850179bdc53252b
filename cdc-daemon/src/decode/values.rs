//! Column values, parsed from PostgreSQL's text output format by type OID.
//!
//! The daemon does not request pgoutput's `binary` option, so every value arrives as the text
//! its type's output function writes. The replication session pins `DateStyle=ISO` and
//! `TimeZone=UTC`, so dates and timestamps come in ISO form; any offset that ISO style prints
//! (`+00`, `+05:30`, `-03:30:15`) and the ` BC` suffix are understood all the same. Types the
//! pipeline has no use for are passed on as [`Value::Text`].

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use uuid::Uuid;

/// A column value the mapping step can use without knowing PostgreSQL's text formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `bool`.
    Bool(bool),
    /// `int2`, `int4` and `int8`.
    Int(i64),
    /// `float4` and `float8`, including NaN and the infinities. A `float4` is read from its
    /// shortest decimal text, so `3.14` is the `f64` nearest 3.14, not the widened `f32`.
    Float(f64),
    /// `numeric`, as PostgreSQL's canonical text (`-12.340`, `NaN`, `Infinity`, `-Infinity`):
    /// kept as text because no machine number holds every numeric exactly.
    Numeric(String),
    /// `text`, `varchar`, `bpchar` (with its padding) and `name`, and any type not listed here.
    Text(String),
    /// `uuid`.
    Uuid(Uuid),
    /// `date`.
    Date(Date),
    /// `timestamp` (without time zone).
    Timestamp(PrimitiveDateTime),
    /// `timestamptz`, with the offset it was printed with.
    TimestampTz(OffsetDateTime),
    /// `json` and `jsonb`, the text as sent. PostgreSQL validated it on the way in; it is not
    /// parsed again here.
    Json(String),
    /// SQL NULL (never produced by [`parse_value`], which only sees non-null values).
    Null,
}

/// OID of `bool`.
pub const BOOL: u32 = 16;
/// OID of `name`.
pub const NAME: u32 = 19;
/// OID of `int8`.
pub const INT8: u32 = 20;
/// OID of `int2`.
pub const INT2: u32 = 21;
/// OID of `int4`.
pub const INT4: u32 = 23;
/// OID of `text`.
pub const TEXT: u32 = 25;
/// OID of `json`.
pub const JSON: u32 = 114;
/// OID of `float4`.
pub const FLOAT4: u32 = 700;
/// OID of `float8`.
pub const FLOAT8: u32 = 701;
/// OID of `bpchar` (`char(n)`).
pub const BPCHAR: u32 = 1042;
/// OID of `varchar`.
pub const VARCHAR: u32 = 1043;
/// OID of `date`.
pub const DATE: u32 = 1082;
/// OID of `timestamp`.
pub const TIMESTAMP: u32 = 1114;
/// OID of `timestamptz`.
pub const TIMESTAMPTZ: u32 = 1184;
/// OID of `numeric`.
pub const NUMERIC: u32 = 1700;
/// OID of `uuid`.
pub const UUID: u32 = 2950;
/// OID of `jsonb`.
pub const JSONB: u32 = 3802;

/// Every type [`parse_value`] knows by name, with that name; other OIDs become text.
pub const KNOWN_TYPES: [(u32, &str); 17] = [
    (BOOL, "bool"),
    (NAME, "name"),
    (INT8, "int8"),
    (INT2, "int2"),
    (INT4, "int4"),
    (TEXT, "text"),
    (JSON, "json"),
    (FLOAT4, "float4"),
    (FLOAT8, "float8"),
    (BPCHAR, "bpchar"),
    (VARCHAR, "varchar"),
    (DATE, "date"),
    (TIMESTAMP, "timestamp"),
    (TIMESTAMPTZ, "timestamptz"),
    (NUMERIC, "numeric"),
    (UUID, "uuid"),
    (JSONB, "jsonb"),
];

/// How much of an invalid value an error message quotes, in characters.
const QUOTED_VALUE_CHARS: usize = 100;

/// A value that is not valid text for its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} value {value:?}: {reason}", type_label(*.type_oid))]
pub struct ValueError {
    type_oid: u32,
    value: String,
    reason: &'static str,
}

impl ValueError {
    fn new(type_oid: u32, text: &[u8], reason: &'static str) -> Self {
        ValueError {
            type_oid,
            value: quote(text),
            reason,
        }
    }

    /// The OID of the type the value was parsed as.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }

    /// The start of the offending value (at most 100 characters, invalid UTF-8 replaced).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What was wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// The type's name for messages: its SQL name when known, else its OID.
fn type_label(type_oid: u32) -> String {
    KNOWN_TYPES
        .iter()
        .find(|(oid, _)| *oid == type_oid)
        .map_or_else(
            || format!("type {type_oid}"),
            |(_, name)| (*name).to_owned(),
        )
}

/// At most [`QUOTED_VALUE_CHARS`] characters of `text`, with `…` when there was more.
fn quote(text: &[u8]) -> String {
    // Four bytes per character at most: looking further is wasted work.
    let head = text.get(..QUOTED_VALUE_CHARS * 4).unwrap_or(text);
    let lossy = String::from_utf8_lossy(head);
    let mut chars = lossy.chars();
    let mut quoted: String = chars.by_ref().take(QUOTED_VALUE_CHARS).collect();
    if chars.next().is_some() || head.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// Parses the text output of a value of type `type_oid`.
pub fn parse_value(type_oid: u32, text: &[u8]) -> Result<Value, ValueError> {
    let fail = |reason| ValueError::new(type_oid, text, reason);
    let utf8 = || std::str::from_utf8(text).map_err(|_| fail("not valid UTF-8"));
    match type_oid {
        BOOL => match text {
            b"t" => Ok(Value::Bool(true)),
            b"f" => Ok(Value::Bool(false)),
            _ => Err(fail("expected t or f")),
        },
        INT2 => utf8()?
            .parse::<i16>()
            .map(|value| Value::Int(value.into()))
            .map_err(|_| fail("not an int2")),
        INT4 => utf8()?
            .parse::<i32>()
            .map(|value| Value::Int(value.into()))
            .map_err(|_| fail("not an int4")),
        INT8 => utf8()?
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| fail("not an int8")),
        FLOAT4 | FLOAT8 => float(text)
            .map(Value::Float)
            .ok_or_else(|| fail("not a float")),
        NUMERIC if is_numeric(text) => Ok(Value::Numeric(utf8()?.to_owned())),
        NUMERIC => Err(fail("not a numeric")),
        UUID => Uuid::try_parse_ascii(text)
            .map(Value::Uuid)
            .map_err(|_| fail("not a uuid")),
        DATE => datetime(text, Parts::Date)
            .map_err(fail)
            .map(|stamp| Value::Date(stamp.date)),
        TIMESTAMP => datetime(text, Parts::DateTime)
            .map_err(fail)
            .map(|stamp| Value::Timestamp(PrimitiveDateTime::new(stamp.date, stamp.time))),
        TIMESTAMPTZ => datetime(text, Parts::DateTimeOffset)
            .map_err(fail)
            .map(|stamp| {
                Value::TimestampTz(
                    PrimitiveDateTime::new(stamp.date, stamp.time).assume_offset(stamp.offset),
                )
            }),
        JSON | JSONB => Ok(Value::Json(utf8()?.to_owned())),
        _ => Ok(Value::Text(utf8()?.to_owned())),
    }
}

/// A `float4`/`float8` in PostgreSQL's output: a decimal (maybe with an exponent), `NaN`,
/// `Infinity` or `-Infinity`. Rust's own spellings (`inf`, `nan`) are refused.
fn float(text: &[u8]) -> Option<f64> {
    match text {
        b"NaN" => Some(f64::NAN),
        b"Infinity" => Some(f64::INFINITY),
        b"-Infinity" => Some(f64::NEG_INFINITY),
        _ if !text.is_empty()
            && text
                .iter()
                .all(|byte| byte.is_ascii_digit() || b"+-.eE".contains(byte)) =>
        {
            std::str::from_utf8(text).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// Whether `text` is a `numeric` as PostgreSQL prints it: `-?digits(.digits)?`, `NaN`,
/// `Infinity` or `-Infinity`.
fn is_numeric(text: &[u8]) -> bool {
    if matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
        return true;
    }
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let (whole, fraction) = match unsigned.iter().position(|byte| *byte == b'.') {
        Some(dot) => (
            unsigned.get(..dot).unwrap_or_default(),
            unsigned.get(dot + 1..),
        ),
        None => (unsigned, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    digits(whole) && fraction.is_none_or(digits)
}

/// Which parts a date/time text has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS[.f…]`.
    DateTime,
    /// `YYYY-MM-DD HH:MM:SS[.f…]±HH[:MM[:SS]]`.
    DateTimeOffset,
}

/// The parsed parts; those a [`Parts`] lacks are midnight and UTC.
struct Stamp {
    date: Date,
    time: Time,
    offset: UtcOffset,
}

/// Parses a date, timestamp or timestamptz in ISO output style, each optionally followed by
/// ` BC`. Years of five or more digits are read, then refused by `time`'s range.
fn datetime(text: &[u8], parts: Parts) -> Result<Stamp, &'static str> {
    const SHAPE: &str = "not in ISO format";
    if matches!(text, b"infinity" | b"-infinity") {
        return Err("infinite dates and times are not supported");
    }
    let mut cursor = Cursor { text, pos: 0 };
    let year = cursor.number(4, 9).ok_or(SHAPE)?;
    let month = cursor.separated(b'-').ok_or(SHAPE)?;
    let day = cursor.separated(b'-').ok_or(SHAPE)?;
    let mut time = Time::MIDNIGHT;
    let mut offset = UtcOffset::UTC;
    if parts != Parts::Date {
        let hour = cursor.separated(b' ').ok_or(SHAPE)?;
        let minute = cursor.separated(b':').ok_or(SHAPE)?;
        let second = cursor.separated(b':').ok_or(SHAPE)?;
        let nanosecond = match cursor.eat(b'.') {
            true => cursor.fraction().ok_or(SHAPE)?,
            false => 0,
        };
        time = Time::from_hms_nano(narrow(hour)?, narrow(minute)?, narrow(second)?, nanosecond)
            .map_err(|_| "time out of range")?;
    }
    if parts == Parts::DateTimeOffset {
        let sign: i8 = match cursor.next() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(SHAPE),
        };
        let hours = cursor.number(2, 2).ok_or(SHAPE)?;
        let minutes = cursor.separated(b':');
        let seconds = minutes.and_then(|_| cursor.separated(b':'));
        let (minutes, seconds) = (minutes.unwrap_or(0), seconds.unwrap_or(0));
        let signed = |part: u32| narrow(part).map(|part: i8| part * sign);
        offset = UtcOffset::from_hms(signed(hours)?, signed(minutes)?, signed(seconds)?)
            .map_err(|_| "offset out of range")?;
    }
    let before_christ = cursor.rest() == b" BC";
    if !before_christ && !cursor.rest().is_empty() {
        return Err(SHAPE);
    }
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    // There is no year 0 in PostgreSQL's calendar: 1 BC is the astronomical year 0.
    let year = if before_christ { 1 - year } else { year };
    let month = Month::try_from(narrow::<u8>(month)?).map_err(|_| "month out of range")?;
    let date =
        Date::from_calendar_date(year, month, narrow(day)?).map_err(|_| "date out of range")?;
    Ok(Stamp { date, time, offset })
}

/// A small number into the integer type a `time` constructor takes.
fn narrow<T: TryFrom<u32>>(value: u32) -> Result<T, &'static str> {
    T::try_from(value).map_err(|_| "field out of range")
}

/// Reads the fields of a date/time text left to right.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The next byte, consumed.
    fn next(&mut self) -> Option<u8> {
        let byte = self.text.get(self.pos).copied()?;
        self.pos += 1;
        Some(byte)
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.get(self.pos) == Some(&byte);
        if found {
            self.pos += 1;
        }
        found
    }

    /// A run of `min..=max` decimal digits (at most 9, so it fits a `u32`).
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let (value, count) = self.digits(max);
        (count >= min).then_some(value)
    }

    /// The digits of a fraction of a second (1 to 9 of them), in nanoseconds.
    fn fraction(&mut self) -> Option<u32> {
        let (value, count) = self.digits(9);
        if count == 0 {
            return None;
        }
        let missing = u32::try_from(9_usize.saturating_sub(count)).ok()?;
        Some(value * 10_u32.pow(missing))
    }

    /// Up to `max` (at most 9) decimal digits: their value and how many there were.
    fn digits(&mut self, max: usize) -> (u32, usize) {
        let mut value: u32 = 0;
        let mut count = 0;
        while count < max.min(9) {
            match self.text.get(self.pos) {
                Some(digit) if digit.is_ascii_digit() => {
                    value = value * 10 + u32::from(digit - b'0');
                    self.pos += 1;
                    count += 1;
                }
                _ => break,
            }
        }
        (value, count)
    }

    /// `separator` followed by exactly two digits; nothing is consumed when they do not follow.
    fn separated(&mut self, separator: u8) -> Option<u32> {
        let start = self.pos;
        let value = if self.eat(separator) {
            self.number(2, 2)
        } else {
            None
        };
        if value.is_none() {
            self.pos = start;
        }
        value
    }

    /// What has not been read.
    fn rest(&self) -> &[u8] {
        self.text.get(self.pos..).unwrap_or_default()
    }
}
