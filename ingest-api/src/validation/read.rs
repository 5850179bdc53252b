//! Reading a body's JSON text straight into the members of the walk, in one pass and without
//! a `serde_json::Value` of the body.
//!
//! Each kind of object says which members it knows ([`Members`]) and reads each of them as it
//! comes, in document order, into typed values or into the detail of what is wrong with it
//! ([`Leaf`]); a value of the wrong kind is skipped as it is read, so the walk goes on and the
//! problems are reported afterwards, in the documented order (see `walk`). The last of
//! duplicate members counts, as it did when bodies were read into a `serde_json::Map`; unknown
//! members are remembered by name only, in the `Map`'s (sorted) order.
//!
//! What bounds memory: every JSON value read (objects, arrays, strings, numbers, booleans, nulls;
//! kept or skipped) spends one unit of a budget, and the read stops with
//! [`ReadError::TooManyValues`] once it is spent, so a hostile body costs at most the budget's
//! worth of problems and kept members, whatever it holds. Nothing is kept of a skipped value;
//! array elements past their limit (checkups, reports, measurements) are skipped, only counted;
//! the only `serde_json::Value`s built are reports' `raw` payloads, under the same budget.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Limits;
use super::walk::{Clock, Detail, Leaf};

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Not JSON (or not UTF-8), as serde_json reports it.
    Json(serde_json::Error),
    /// More than the budget of values.
    TooManyValues,
}

/// What one read of a body shares: the budget of values left, the clock timestamps are
/// checked against and the limits on counts and sizes.
pub(super) struct Reader<'l> {
    /// Values that may still be read.
    left: Cell<usize>,
    /// Whether one more was asked for (the read's error is then the budget's).
    exhausted: Cell<bool>,
    /// The server's clock.
    pub(super) clock: Clock,
    /// The request's limits.
    pub(super) limits: &'l Limits,
}

impl<'l> Reader<'l> {
    /// A reader that reads at most `max_values` values.
    pub(super) fn new(max_values: usize, clock: Clock, limits: &'l Limits) -> Self {
        Self {
            left: Cell::new(max_values),
            exhausted: Cell::new(false),
            clock,
            limits,
        }
    }

    /// The whole of `body` as an object of members `M`; trailing data is an error.
    pub(super) fn body<M: Members>(&self, body: &[u8]) -> Result<Object<M>, ReadError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let outcome = ObjectSeed::<M>::new(self)
            .deserialize(&mut deserializer)
            .and_then(|object| deserializer.end().map(|()| object));
        match outcome {
            Ok(object) => Ok(object),
            Err(_) if self.exhausted.get() => Err(ReadError::TooManyValues),
            Err(error) => Err(ReadError::Json(error)),
        }
    }

    /// Spends one value of the budget, failing the read when none is left.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.left.get();
        if left == 0 {
            self.exhausted.set(true);
            return Err(E::custom("too many JSON values"));
        }
        self.left.set(left - 1);
        Ok(())
    }

    /// A seed that reads a scalar member.
    pub(super) fn scalar(&self) -> ScalarSeed<'_> {
        ScalarSeed { reader: self }
    }

    /// A seed that reads an object of members `M`.
    pub(super) fn object<M: Members>(&self) -> ObjectSeed<'_, M> {
        ObjectSeed::new(self)
    }

    /// A seed that reads an array, keeping at most `max` elements, each read with `element`.
    pub(super) fn list<S>(&self, max: usize, element: S) -> ListSeed<'_, S> {
        ListSeed {
            reader: self,
            max,
            element,
        }
    }

    /// A seed that reads a report's `raw` payload, which is kept as a JSON value.
    pub(super) fn raw(&self) -> RawSeed<'_> {
        RawSeed { reader: self }
    }
}

/// A kind of object: the members it knows and how each is read.
pub(super) trait Members: Default {
    /// A known member.
    type Name: Copy + 'static;

    /// The known members by wire name.
    const NAMES: &'static [(&'static str, Self::Name)];

    /// Reads the value of the known member `name` (exactly one `next_value_seed` of `map`),
    /// replacing what an earlier member of the same name left.
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        name: Self::Name,
        map: &mut A,
        reader: &Reader<'_>,
    ) -> Result<(), A::Error>;
}

/// An object as read: its members, or the detail of why the value is not an object.
pub(super) type Object<M> = Result<Fields<M>, Detail>;

/// The members of an object as read.
#[derive(Debug, Default)]
pub(super) struct Fields<M> {
    /// The known members.
    pub(super) members: M,
    /// The names of the unknown members, each once, in order.
    pub(super) unknown: BTreeSet<String>,
}

/// An array as read: its first elements, or the detail of why the value is not an array.
pub(super) type List<T> = Result<Elements<T>, Detail>;

/// The elements of an array as read.
#[derive(Debug)]
pub(super) struct Elements<T> {
    /// The elements up to the limit the array was read with.
    pub(super) items: Vec<T>,
    /// How many elements the array has, those past the limit included.
    pub(super) count: usize,
}

/// A member's value as the checks of scalars see it: objects and arrays are skipped as they are
/// read, only their kind is kept.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'de> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number, as `f64`.
    Number(f64),
    /// A string, borrowed from the body when it holds no escape.
    Text(Cow<'de, str>),
    /// An array.
    Array,
    /// An object.
    Object,
}

/// Implements a visitor's methods for scalars: each spends a value and yields `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.reader.spend()?;
            Ok($value)
        }
    };
}

/// Skips the rest of an array, spending a value for each value in it.
fn skip_seq<'de, A: SeqAccess<'de>>(reader: &Reader<'_>, mut seq: A) -> Result<usize, A::Error> {
    let mut count = 0;
    while seq.next_element_seed(SkipSeed { reader })?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// Skips the rest of an object, spending a value for each value in it.
fn skip_map<'de, A: MapAccess<'de>>(reader: &Reader<'_>, mut map: A) -> Result<(), A::Error> {
    while map.next_key::<IgnoredAny>()?.is_some() {
        map.next_value_seed(SkipSeed { reader })?;
    }
    Ok(())
}

/// Reads any value and keeps nothing of it.
#[derive(Clone, Copy)]
struct SkipSeed<'r> {
    reader: &'r Reader<'r>,
}

impl<'de> DeserializeSeed<'de> for SkipSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SkipSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    scalars_are!(());

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.reader.spend()?;
        skip_seq(self.reader, seq).map(drop)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.reader.spend()?;
        skip_map(self.reader, map)
    }
}

/// Reads a [`Scalar`].
#[derive(Clone, Copy)]
pub(super) struct ScalarSeed<'r> {
    reader: &'r Reader<'r>,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = Scalar<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Bool)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Number(value as f64))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Number(value as f64))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Number(value))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Text(Cow::Owned(value.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        self.reader.spend()?;
        Ok(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        self.reader.spend()?;
        skip_seq(self.reader, seq)?;
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        self.reader.spend()?;
        skip_map(self.reader, map)?;
        Ok(Scalar::Object)
    }
}

/// A member name: one of the known ones, or the unknown name as sent.
enum Key<N> {
    Known(N),
    Unknown(String),
}

/// Reads a member name against the known ones.
struct KeySeed<N: 'static> {
    names: &'static [(&'static str, N)],
}

impl<'de, N: Copy> DeserializeSeed<'de> for KeySeed<N> {
    type Value = Key<N>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<N>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, N: Copy> Visitor<'de> for KeySeed<N> {
    type Value = Key<N>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<N>, E> {
        Ok(match self.names.iter().find(|(name, _)| *name == key) {
            Some((_, known)) => Key::Known(*known),
            None => Key::Unknown(key.to_owned()),
        })
    }
}

/// Reads an [`Object`] of members `M`.
pub(super) struct ObjectSeed<'r, M> {
    reader: &'r Reader<'r>,
    members: PhantomData<fn() -> M>,
}

impl<'r, M> ObjectSeed<'r, M> {
    fn new(reader: &'r Reader<'r>) -> Self {
        Self {
            reader,
            members: PhantomData,
        }
    }
}

impl<M> Clone for ObjectSeed<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for ObjectSeed<'_, M> {}

impl<'de, M: Members> DeserializeSeed<'de> for ObjectSeed<'_, M> {
    type Value = Object<M>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Object<M>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, M: Members> Visitor<'de> for ObjectSeed<'_, M> {
    type Value = Object<M>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    scalars_are!(Err(Cow::Borrowed("must be an object")));

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Object<M>, A::Error> {
        self.reader.spend()?;
        skip_seq(self.reader, seq)?;
        Ok(Err(Cow::Borrowed("must be an object")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<M>, A::Error> {
        self.reader.spend()?;
        let mut fields = Fields::<M>::default();
        while let Some(key) = map.next_key_seed(KeySeed { names: M::NAMES })? {
            match key {
                Key::Known(name) => fields.members.read(name, &mut map, self.reader)?,
                Key::Unknown(name) => {
                    map.next_value_seed(SkipSeed {
                        reader: self.reader,
                    })?;
                    fields.unknown.insert(name);
                }
            }
        }
        Ok(Ok(fields))
    }
}

/// Reads a [`List`] whose elements are read with `S`.
#[derive(Clone, Copy)]
pub(super) struct ListSeed<'r, S> {
    reader: &'r Reader<'r>,
    max: usize,
    element: S,
}

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for ListSeed<'_, S> {
    type Value = List<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ListSeed<'_, S> {
    type Value = List<S::Value>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    scalars_are!(Err(Cow::Borrowed("must be an array")));

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.reader.spend()?;
        let mut items = Vec::new();
        while items.len() < self.max {
            match seq.next_element_seed(self.element)? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        let count = items.len() + skip_seq(self.reader, seq)?;
        Ok(Ok(Elements { items, count }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.reader.spend()?;
        skip_map(self.reader, map)?;
        Ok(Err(Cow::Borrowed("must be an array")))
    }
}

/// Reads a report's `raw` member: a JSON object, built as a `serde_json::Value`.
#[derive(Clone, Copy)]
pub(super) struct RawSeed<'r> {
    reader: &'r Reader<'r>,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = Leaf<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Leaf<Value>, D::Error> {
        let value = ValueSeed {
            reader: self.reader,
        }
        .deserialize(deserializer)?;
        if value.is_object() {
            Ok(Ok(value))
        } else {
            Ok(Err(Cow::Borrowed("must be an object")))
        }
    }
}

/// Builds a `serde_json::Value`, spending a value of the budget for each value it builds.
#[derive(Clone, Copy)]
struct ValueSeed<'r> {
    reader: &'r Reader<'r>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::from(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.reader.spend()?;
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.reader.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.reader.spend()?;
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::fixtures::{NOW, UPLOAD_ID, invalid, valid_upload};
    use crate::validation::{Rejection, parse_upload};

    /// A kind of object that knows one member, `a`, read as a scalar.
    #[derive(Debug, Default)]
    struct OneMember {
        a: Option<Scalar<'static>>,
    }

    impl Members for OneMember {
        type Name = ();

        const NAMES: &'static [(&'static str, ())] = &[("a", ())];

        fn read<'de, A: MapAccess<'de>>(
            &mut self,
            (): (),
            map: &mut A,
            reader: &Reader<'_>,
        ) -> Result<(), A::Error> {
            let value = map.next_value_seed(reader.scalar())?;
            self.a = Some(match value {
                Scalar::Text(text) => Scalar::Text(Cow::Owned(text.into_owned())),
                Scalar::Null => Scalar::Null,
                Scalar::Bool => Scalar::Bool,
                Scalar::Number(number) => Scalar::Number(number),
                Scalar::Array => Scalar::Array,
                Scalar::Object => Scalar::Object,
            });
            Ok(())
        }
    }

    fn read(text: &[u8], max_values: usize) -> Result<Object<OneMember>, ReadError> {
        let limits = Limits::default();
        let clock = Clock {
            now: NOW,
            max_future_skew: limits.max_future_skew,
        };
        Reader::new(max_values, clock, &limits).body(text)
    }

    #[test]
    fn every_value_read_is_counted_kept_or_skipped() {
        let text = br#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "a2": []}"#;
        // 11 values: two objects, two arrays, six scalars and the empty object; keys are not
        // values. `a` is skipped as an array (only its kind kept), `a2` as unknown.
        let fields = read(text, 11).unwrap().unwrap();
        assert_eq!(fields.members.a, Some(Scalar::Array));
        assert_eq!(fields.unknown.into_iter().collect::<Vec<_>>(), ["a2"]);
        assert!(matches!(read(text, 10), Err(ReadError::TooManyValues)));
    }

    #[test]
    fn one_value_over_the_budget_is_refused_anywhere_in_the_body() {
        let zeros = format!("[{}0]", "0,".repeat(999_999));
        assert!(matches!(
            read(zeros.as_bytes(), 1_000),
            Err(ReadError::TooManyValues)
        ));
        // Checkups past the limit are skipped, not kept, but still counted.
        let checkups = format!("{{\"checkups\": [{}{{}}]}}", "{},".repeat(999));
        assert_eq!(
            parse_upload(
                checkups.as_bytes(),
                NOW,
                &Limits {
                    max_upload_values: 1_000,
                    ..Limits::default()
                }
            ),
            Err(Rejection::TooManyValues { max: 1_000 })
        );
    }

    #[test]
    fn malformed_json_and_trailing_data_are_reported_with_their_position() {
        let Err(ReadError::Json(error)) = read(b"{\"a\": [1,\n 2,,]}", 100) else {
            panic!("expected a syntax error");
        };
        assert_eq!((error.line(), error.column()), (2, 4));
        assert!(matches!(read(b"{} {}", 100), Err(ReadError::Json(_))));
        // Skipped values are read as strictly as kept ones.
        for skipped in [
            &b"{\"z\": \"\xff\"}"[..],
            b"{\"z\": 1e999}",
            b"{\"a\": [\"\\ud800\"]}",
        ] {
            assert!(
                matches!(read(skipped, 100), Err(ReadError::Json(_))),
                "{}",
                String::from_utf8_lossy(skipped)
            );
        }
    }

    #[test]
    fn the_last_of_duplicate_members_counts_and_unknown_ones_are_named_once_sorted() {
        let fields = read(br#"{"z": 1, "a": "x", "b": 2, "a": null, "z": 3}"#, 100)
            .unwrap()
            .unwrap();
        assert_eq!(fields.members.a, Some(Scalar::Null));
        assert_eq!(fields.unknown.into_iter().collect::<Vec<_>>(), ["b", "z"]);

        // The problems of an earlier duplicate are gone with its value.
        let body = format!(
            r#"{{"upload_id": 7, "checkups": {}, "upload_id": "{UPLOAD_ID}"}}"#,
            valid_upload()["checkups"]
        );
        assert!(parse_upload(body.as_bytes(), NOW, &Limits::default()).is_ok());
    }

    #[test]
    fn problems_come_in_the_documented_order_whatever_order_members_are_sent_in() {
        // Members reversed: measurements before the instrument, the value before the code,
        // known members before unknown ones.
        let mut report = Map::new();
        report.insert(
            "measurements".to_owned(),
            json!([{"zz": 1, "unit": "%", "value": 1000, "code": "8480-6"}]),
        );
        report.insert(
            "instrument".to_owned(),
            json!({"serial": "", "type": "pulse_oximeter"}),
        );
        report.insert("id".to_owned(), json!("r"));
        let text = |members: &Map<String, Value>| {
            let parts: Vec<String> = members
                .iter()
                .rev()
                .map(|(key, value)| format!("{}: {value}", json!(key)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        };
        let body = valid_upload();
        let checkup = &body["checkups"][0];
        let body = format!(
            r#"{{"checkups": [{{"reports": [{}], "started_at": {}, "patient": {}, "id": {}}}], "upload_id": "{UPLOAD_ID}"}}"#,
            text(&report),
            checkup["started_at"],
            checkup["patient"],
            checkup["id"]
        );
        let Err(Rejection::Invalid(problems)) =
            parse_upload(body.as_bytes(), NOW, &Limits::default())
        else {
            panic!("expected problems");
        };
        let pointers: Vec<&str> = problems
            .iter()
            .map(|problem| problem.pointer.as_str())
            .collect();
        let report = "/checkups/0/reports/0";
        assert_eq!(
            pointers,
            [
                format!("{report}/id"),
                format!("{report}/instrument/serial"),
                format!("{report}/taken_at"),
                format!("{report}/measurements/0/zz"),
                format!("{report}/measurements/0/code"),
                format!("{report}/measurements/0/value"),
                format!("{report}/measurements/0/unit"),
            ]
        );
        // The same body sent in the documented order has the same problems.
        let mut documented = valid_upload();
        documented["checkups"][0]["reports"][0] = json!({
            "id": "r",
            "instrument": {"type": "pulse_oximeter", "serial": ""},
            "measurements": [{"code": "8480-6", "value": 1000, "unit": "%", "zz": 1}],
        });
        let details: Vec<(String, String)> = problems
            .into_iter()
            .map(|problem| (problem.pointer, problem.detail))
            .collect();
        assert_eq!(invalid(&documented), details);
    }
}
