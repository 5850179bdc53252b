//! A report's `raw` member: the instrument's own payload, kept as sent.
//!
//! It is stored as `jsonb` and copied into MongoDB documents, so it must be an object, small
//! and shallow enough to store, with no key MongoDB would read as an operator (`$…`) or a path
//! (`a.b`), and no NUL character (PostgreSQL text cannot hold one).

use std::io;

use serde_json::{Map, Value};

use super::Limits;
use super::walk::{At, Leaf, Problems};

/// The `raw` member read at `at` if present, else an empty object.
pub(super) fn raw(
    member: Option<Leaf<Value>>,
    at: &At<'_>,
    limits: &Limits,
    problems: &mut Problems,
) -> Option<Value> {
    let Some(leaf) = member else {
        return Some(Value::Object(Map::new()));
    };
    let value = problems.leaf(leaf, at)?;
    let size = serialized_len(&value);
    if size > limits.max_raw_bytes {
        // Too big to be worth inspecting further.
        problems.add(
            at,
            format!(
                "must be at most {} bytes when serialized; it is {size}",
                limits.max_raw_bytes
            ),
        );
        return None;
    }
    let before = problems.len();
    inspect(&value, at, 1, limits.max_raw_depth, problems);
    (problems.len() == before).then_some(value)
}

/// Reports the keys and strings MongoDB or PostgreSQL cannot store, and containers nested
/// deeper than `max_depth` (where `value` is at `depth`, the `raw` object itself being 1).
fn inspect(value: &Value, at: &At<'_>, depth: usize, max_depth: usize, problems: &mut Problems) {
    match value {
        Value::Object(_) | Value::Array(_) if depth > max_depth => {
            problems.add(
                at,
                format!("nests objects and arrays more than {max_depth} levels deep"),
            );
        }
        Value::Object(members) => {
            for (key, member) in members {
                let member_at = at.member(key);
                if let Some(detail) = unstorable_key(key) {
                    problems.add(&member_at, detail);
                }
                inspect(member, &member_at, depth + 1, max_depth, problems);
            }
        }
        Value::Array(elements) => {
            for (index, element) in elements.iter().enumerate() {
                inspect(element, &at.element(index), depth + 1, max_depth, problems);
            }
        }
        Value::String(text) if text.contains('\0') => {
            problems.add(at, "must not contain NUL characters");
        }
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Why a key cannot be stored, if it cannot.
fn unstorable_key(key: &str) -> Option<&'static str> {
    if key.starts_with('$') {
        Some("key must not start with '$'")
    } else if key.contains('.') {
        Some("key must not contain '.'")
    } else if key.contains('\0') {
        Some("key must not contain NUL characters")
    } else {
        None
    }
}

/// The length of `value` serialized as compact JSON, counted without building the text.
fn serialized_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Writing a `Value` to a counter cannot fail; count it as too big if it ever does.
        Err(_) => usize::MAX,
    }
}

/// A writer that only counts the bytes written to it.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::fixtures::{invalid, parse, valid_upload, with, without};

    const RAW: &str = "/checkups/0/reports/0/raw";

    #[test]
    fn raw_is_kept_as_sent() {
        let upload = parse(&valid_upload()).unwrap();
        assert_eq!(
            upload.checkups[0].reports[0].raw,
            json!({"any": "instrument payload (JSON object)"})
        );
    }

    #[test]
    fn absent_raw_becomes_an_empty_object() {
        let upload = parse(&without(valid_upload(), RAW)).unwrap();
        assert_eq!(upload.checkups[0].reports[0].raw, json!({}));
    }

    #[test]
    fn raw_must_be_an_object() {
        for not_an_object in [json!([1]), json!("text"), json!(null)] {
            let body = with(valid_upload(), RAW, not_an_object);
            assert_eq!(
                invalid(&body),
                [(RAW.to_owned(), "must be an object".to_owned())]
            );
        }
    }

    #[test]
    fn raw_keys_that_mongodb_would_misread_are_reported_at_the_key() {
        let body = with(
            valid_upload(),
            RAW,
            json!({"$set": 1, "a.b": 2, "ok": {"nul\u{0}": 3, "list": [{"$x": 4}]}}),
        );
        // Sorted: member order follows `serde_json::Map`, which depends on its features.
        let mut problems = invalid(&body);
        problems.sort();
        assert_eq!(
            problems,
            [
                (
                    format!("{RAW}/$set"),
                    "key must not start with '$'".to_owned()
                ),
                (format!("{RAW}/a.b"), "key must not contain '.'".to_owned()),
                (
                    format!("{RAW}/ok/list/0/$x"),
                    "key must not start with '$'".to_owned()
                ),
                (
                    format!("{RAW}/ok/nul\u{0}"),
                    "key must not contain NUL characters".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn raw_strings_must_not_contain_nul() {
        let body = with(valid_upload(), RAW, json!({"a": ["x\u{0}y"]}));
        assert_eq!(
            invalid(&body),
            [(
                format!("{RAW}/a/0"),
                "must not contain NUL characters".to_owned()
            )]
        );
    }

    #[test]
    fn raw_keys_are_escaped_in_pointers() {
        let body = with(valid_upload(), RAW, json!({"a/b": {"c~d": "\u{0}"}}));
        assert_eq!(invalid(&body)[0].0, format!("{RAW}/a~1b/c~0d"));
    }

    #[test]
    fn raw_may_nest_up_to_the_depth_limit() {
        let nested = |levels: usize| (1..levels).fold(json!({}), |inner, _| json!({ "a": inner }));
        assert!(parse(&with(valid_upload(), RAW, nested(16))).is_ok());
        let pointer = format!("{RAW}{}", "/a".repeat(16));
        assert_eq!(
            invalid(&with(valid_upload(), RAW, nested(17))),
            [(
                pointer,
                "nests objects and arrays more than 16 levels deep".to_owned()
            )]
        );
    }

    #[test]
    fn raw_arrays_count_towards_depth() {
        let nested = (1..17).fold(json!([]), |inner, _| json!([inner]));
        let pointer = format!("{RAW}/a{}", "/0".repeat(15));
        assert_eq!(
            invalid(&with(valid_upload(), RAW, json!({ "a": nested }))),
            [(
                pointer,
                "nests objects and arrays more than 16 levels deep".to_owned()
            )]
        );
    }

    #[test]
    fn raw_is_bounded_in_serialized_size() {
        let limits = Limits::default();
        // `{"a":"…"}` is 8 bytes around the text.
        let exactly = json!({ "a": "x".repeat(limits.max_raw_bytes - 8) });
        assert_eq!(serialized_len(&exactly), limits.max_raw_bytes);
        assert!(parse(&with(valid_upload(), RAW, exactly)).is_ok());

        let over = json!({ "a": "x".repeat(limits.max_raw_bytes - 7) });
        assert_eq!(
            invalid(&with(valid_upload(), RAW, over)),
            [(
                RAW.to_owned(),
                "must be at most 262144 bytes when serialized; it is 262145".to_owned()
            )]
        );
    }
}
