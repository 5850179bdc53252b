//! Reading a body into a `serde_json::Value` with a budget of JSON values.
//!
//! A parsed `Value` costs far more than its text: `[0,0,0,…]` takes 2 bytes a value as text and
//! about 32 (plus the array's spare capacity) once parsed, so a maximum-size hostile body would
//! be inflated about 16-fold before validation could look at a single count. Counting values
//! while parsing, and stopping at the budget, bounds that memory to the budget whatever the body
//! holds; the validation limits (checkups, reports, measurements, `raw`'s size) then apply to
//! what was read.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Not JSON (or not UTF-8), as serde_json reports it.
    Json(serde_json::Error),
    /// More than the budget of values (objects, arrays, strings, numbers, booleans, nulls).
    TooManyValues,
}

/// `body` as a JSON value, refusing to build more than `max_values` values.
pub fn from_slice(body: &[u8], max_values: usize) -> Result<Value, ReadError> {
    let budget = Budget {
        left: Cell::new(max_values),
        exhausted: Cell::new(false),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = Budgeted { budget: &budget }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match outcome {
        Ok(value) => Ok(value),
        Err(_) if budget.exhausted.get() => Err(ReadError::TooManyValues),
        Err(error) => Err(ReadError::Json(error)),
    }
}

/// Values that may still be built, and whether one more was asked for.
struct Budget {
    left: Cell<usize>,
    exhausted: Cell<bool>,
}

/// A `Value` seed that spends one unit of the budget per value it builds.
#[derive(Clone, Copy)]
struct Budgeted<'a> {
    budget: &'a Budget,
}

impl Budgeted<'_> {
    fn spend<E: de::Error>(self) -> Result<(), E> {
        let left = self.budget.left.get();
        if left == 0 {
            self.budget.exhausted.set(true);
            return Err(E::custom("too many JSON values"));
        }
        self.budget.left.set(left - 1);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
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

    #[test]
    fn a_body_within_the_budget_reads_as_serde_json_reads_it() {
        let text = br#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "a2": []}"#;
        // 11 values: two objects, two arrays, six scalars and the empty object; keys are not values.
        let value = from_slice(text, 11).unwrap();
        assert_eq!(value, serde_json::from_slice::<Value>(text).unwrap());
        assert_eq!(value["a"][6], json!({"b": {}}));
    }

    #[test]
    fn one_value_over_the_budget_is_refused_anywhere_in_the_body() {
        let text = br#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "a2": []}"#;
        assert!(matches!(
            from_slice(text, 10),
            Err(ReadError::TooManyValues)
        ));
        let zeros = format!("[{}0]", "0,".repeat(999_999));
        assert!(matches!(
            from_slice(zeros.as_bytes(), 1_000),
            Err(ReadError::TooManyValues)
        ));
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let Err(ReadError::Json(error)) = from_slice(b"{\"a\": [1,\n 2,,]}", 100) else {
            panic!("expected a syntax error");
        };
        assert_eq!((error.line(), error.column()), (2, 4));
        assert!(matches!(
            from_slice(b"[1] [2]", 100),
            Err(ReadError::Json(_))
        ));
    }
}
