//! The tools of the walk over a request body: the list of problems found so far, JSON
//! pointers, and readers for objects, arrays and scalars.
//!
//! Every reader is given the request's [`Problems`]. When a value is not what it should be, the
//! reader records why at the value's pointer and returns `None`; the caller goes on with the
//! next member, so one pass over the body finds every problem. A `Some` does not mean the whole
//! body is valid: only an empty [`Problems`] at the end does (see [`Problems::finish`]).

use std::ops::RangeInclusive;

use serde_json::{Map, Value};
use service_plumbing::problem::FieldError;
use time::format_description::well_known::Rfc3339;
use time::macros::{date, format_description};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::Rejection;

/// The earliest birth date accepted.
const EARLIEST_BIRTH_DATE: Date = date!(1900 - 01 - 01);

/// How much of a client's value a problem's detail quotes back.
const QUOTE_CHARS: usize = 64;

/// The problems found in one request body, in the order the walk met them.
#[derive(Debug, Default)]
pub(super) struct Problems {
    errors: Vec<FieldError>,
}

impl Problems {
    /// Records that the value at `pointer` is wrong, and why.
    pub(super) fn add(&mut self, pointer: &str, detail: impl Into<String>) {
        self.errors.push(FieldError {
            pointer: pointer.to_owned(),
            detail: detail.into(),
        });
    }

    /// How many problems were found so far.
    pub(super) fn len(&self) -> usize {
        self.errors.len()
    }

    /// The parsed value if the walk found no problem, else every problem.
    pub(super) fn finish<T>(self, parsed: Option<T>) -> Result<T, Rejection> {
        match parsed {
            Some(parsed) if self.errors.is_empty() => Ok(parsed),
            // A reader that returns `None` always records why, so the fallback is only a guard
            // against a future reader forgetting to.
            _ if self.errors.is_empty() => Err(Rejection::Invalid(vec![FieldError {
                pointer: String::new(),
                detail: "is invalid".to_owned(),
            }])),
            _ => Err(Rejection::Invalid(self.errors)),
        }
    }
}

/// `pointer` extended by the member name `key`, escaped as RFC 6901 requires (`~` → `~0`,
/// `/` → `~1`).
pub(super) fn member_pointer(pointer: &str, key: &str) -> String {
    let mut extended = String::with_capacity(pointer.len() + key.len() + 1);
    extended.push_str(pointer);
    extended.push('/');
    for character in key.chars() {
        match character {
            '~' => extended.push_str("~0"),
            '/' => extended.push_str("~1"),
            other => extended.push(other),
        }
    }
    extended
}

/// `pointer` extended by the array index `index`.
pub(super) fn element_pointer(pointer: &str, index: usize) -> String {
    format!("{pointer}/{index}")
}

/// A client's string, quoted for a problem's detail: escaped and cut short.
pub(super) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The server's clock as timestamps are checked against it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// The time the request is handled.
    pub(super) now: OffsetDateTime,
    /// How far ahead of `now` a client's clock may be.
    pub(super) max_future_skew: Duration,
}

/// How a text member is checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Text {
    /// The most characters (Unicode scalar values) allowed, after trimming.
    max_chars: usize,
    /// Whether line feeds and tabs are allowed (free text such as notes).
    multiline: bool,
}

impl Text {
    /// A single-line text of at most `max_chars` characters.
    pub(super) const fn line(max_chars: usize) -> Self {
        Self {
            max_chars,
            multiline: false,
        }
    }

    /// A free text of at most `max_chars` characters, line feeds and tabs allowed.
    pub(super) const fn multiline(max_chars: usize) -> Self {
        Self {
            max_chars,
            multiline: true,
        }
    }
}

/// A value of the body and where it is.
#[derive(Debug, Clone)]
pub(super) struct Field<'a> {
    /// The value.
    pub(super) value: &'a Value,
    /// Its RFC 6901 pointer, `""` for the whole body.
    pub(super) pointer: String,
}

impl<'a> Field<'a> {
    /// The whole body.
    pub(super) fn root(value: &'a Value) -> Self {
        Self {
            value,
            pointer: String::new(),
        }
    }

    /// The object's members; reports each member not named in `known` as unknown.
    pub(super) fn object(&self, known: &[&str], problems: &mut Problems) -> Option<Object<'a>> {
        let Value::Object(members) = self.value else {
            problems.add(&self.pointer, "must be an object");
            return None;
        };
        for name in members.keys() {
            if !known.contains(&name.as_str()) {
                problems.add(&member_pointer(&self.pointer, name), "unknown field");
            }
        }
        Some(Object {
            members,
            pointer: self.pointer.clone(),
        })
    }

    /// The array's elements, checking their count is within `count`. Past the maximum only
    /// the count is reported: the elements beyond it are not returned, so the walk stays
    /// bounded whatever the body holds.
    pub(super) fn array(
        &self,
        count: RangeInclusive<usize>,
        problems: &mut Problems,
    ) -> Option<Vec<Field<'a>>> {
        let Value::Array(elements) = self.value else {
            problems.add(&self.pointer, "must be an array");
            return None;
        };
        if elements.len() < *count.start() {
            let detail = match *count.start() {
                1 => "must not be empty".to_owned(),
                least => format!("must have at least {least} elements"),
            };
            problems.add(&self.pointer, detail);
        } else if elements.len() > *count.end() {
            problems.add(
                &self.pointer,
                format!(
                    "must have at most {} elements; it has {}",
                    count.end(),
                    elements.len()
                ),
            );
        }
        Some(
            elements
                .iter()
                .take(*count.end())
                .enumerate()
                .map(|(index, value)| Field {
                    value,
                    pointer: element_pointer(&self.pointer, index),
                })
                .collect(),
        )
    }

    /// The string, as sent.
    pub(super) fn string(&self, problems: &mut Problems) -> Option<&'a str> {
        let Value::String(text) = self.value else {
            problems.add(&self.pointer, "must be a string");
            return None;
        };
        Some(text)
    }

    /// A required text: trimmed, not blank, within the rule's length and characters.
    pub(super) fn text(&self, rule: Text, problems: &mut Problems) -> Option<String> {
        let text = self.clean_text(rule, problems)?;
        if text.is_empty() {
            problems.add(&self.pointer, "must not be blank");
            return None;
        }
        Some(text)
    }

    /// An optional text: `null` and blank text mean none; otherwise as [`Field::text`].
    pub(super) fn optional_text(
        &self,
        rule: Text,
        problems: &mut Problems,
    ) -> Option<Option<String>> {
        if self.value.is_null() {
            return Some(None);
        }
        let text = self.clean_text(rule, problems)?;
        Some((!text.is_empty()).then_some(text))
    }

    /// The trimmed string, if it is within the rule (blank allowed).
    fn clean_text(&self, rule: Text, problems: &mut Problems) -> Option<String> {
        let text = self.string(problems)?.trim();
        let allowed = |character: char| rule.multiline && matches!(character, '\n' | '\t');
        if text.contains('\0') {
            problems.add(&self.pointer, "must not contain NUL characters");
            return None;
        }
        if text
            .chars()
            .any(|character| character.is_control() && !allowed(character))
        {
            let detail = if rule.multiline {
                "must not contain control characters other than line feeds and tabs"
            } else {
                "must not contain control characters"
            };
            problems.add(&self.pointer, detail);
            return None;
        }
        let length = text.chars().count();
        if length > rule.max_chars {
            problems.add(
                &self.pointer,
                format!(
                    "must be at most {} characters; it has {length}",
                    rule.max_chars
                ),
            );
            return None;
        }
        Some(text.to_owned())
    }

    /// One of `choices`, by wire name; `what` names the kind of value in the detail.
    pub(super) fn one_of<T: Copy>(
        &self,
        what: &str,
        choices: &[(&str, T)],
        problems: &mut Problems,
    ) -> Option<T> {
        let name = self.string(problems)?;
        let chosen = choices.iter().find(|(wire, _)| *wire == name);
        if chosen.is_none() {
            let expected: Vec<&str> = choices.iter().map(|(wire, _)| *wire).collect();
            problems.add(
                &self.pointer,
                format!(
                    "unknown {what} {}; expected one of {}",
                    quoted(name),
                    expected.join(", ")
                ),
            );
        }
        chosen.map(|(_, value)| *value)
    }

    /// A UUID in the canonical hyphenated form `8-4-4-4-12`, hex digits of either case.
    pub(super) fn uuid(&self, problems: &mut Problems) -> Option<Uuid> {
        let text = self.string(problems)?;
        // `Uuid::try_parse` also takes the simple, braced and URN forms; ids are compared and
        // logged as text elsewhere, so only one form is accepted.
        let hyphenated = text.len() == 36
            && text.char_indices().all(|(index, character)| match index {
                8 | 13 | 18 | 23 => character == '-',
                _ => character.is_ascii_hexdigit(),
            });
        match Uuid::try_parse(text) {
            Ok(id) if hyphenated => Some(id),
            _ => {
                problems.add(
                    &self.pointer,
                    "must be a UUID in hyphenated form, e.g. 6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                );
                None
            }
        }
    }

    /// An RFC 3339 timestamp with an explicit UTC offset, not later than the clock allows.
    pub(super) fn timestamp(
        &self,
        clock: Clock,
        problems: &mut Problems,
    ) -> Option<OffsetDateTime> {
        let text = self.string(problems)?;
        let parsed = if has_offset(text) {
            OffsetDateTime::parse(text, &Rfc3339).ok()
        } else {
            None
        };
        let Some(timestamp) = parsed else {
            let naive =
                !has_offset(text) && OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).is_ok();
            let detail = if naive {
                "must have a UTC offset (Z or ±hh:mm), e.g. 2026-11-27T09:00:00Z"
            } else {
                "must be an RFC 3339 timestamp, e.g. 2026-11-27T09:00:00Z"
            };
            problems.add(&self.pointer, detail);
            return None;
        };
        let latest = clock
            .now
            .checked_add(clock.max_future_skew)
            .unwrap_or(clock.now);
        if timestamp > latest {
            problems.add(
                &self.pointer,
                format!(
                    "must not be in the future (more than {} seconds after the server's clock)",
                    clock.max_future_skew.whole_seconds()
                ),
            );
            return None;
        }
        Some(timestamp)
    }

    /// A birth date, `YYYY-MM-DD`, from 1900-01-01 to the clock's date.
    pub(super) fn birth_date(&self, clock: Clock, problems: &mut Problems) -> Option<Date> {
        let text = self.string(problems)?;
        let shaped = text.len() == 10
            && text.char_indices().all(|(index, character)| match index {
                4 | 7 => character == '-',
                _ => character.is_ascii_digit(),
            });
        let parsed = if shaped {
            Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
        } else {
            None
        };
        let Some(date) = parsed else {
            problems.add(&self.pointer, "must be a date in the form YYYY-MM-DD");
            return None;
        };
        if date > clock.now.date() {
            problems.add(&self.pointer, "must not be in the future");
            return None;
        }
        if date < EARLIEST_BIRTH_DATE {
            problems.add(&self.pointer, "must not be before 1900-01-01");
            return None;
        }
        Some(date)
    }

    /// A finite JSON number.
    pub(super) fn number(&self, problems: &mut Problems) -> Option<f64> {
        match self.value.as_f64() {
            Some(number) if number.is_finite() => Some(number),
            Some(_) => {
                problems.add(&self.pointer, "must be a finite number");
                None
            }
            None => {
                problems.add(&self.pointer, "must be a number");
                None
            }
        }
    }
}

/// Parses every element with `parse`, going on after one fails so that the problems of each
/// are found; all of them if every one parsed.
pub(super) fn parse_each<'a, T>(
    elements: &[Field<'a>],
    parse: impl FnMut(&Field<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let parsed: Vec<Option<T>> = elements.iter().map(parse).collect();
    parsed.into_iter().collect()
}

/// Whether an RFC 3339 timestamp ends in an explicit offset: `Z` or `±hh:mm`. Checked on the
/// text so that no parser leniency lets a local time through.
fn has_offset(text: &str) -> bool {
    if text.ends_with(['Z', 'z']) {
        return true;
    }
    let bytes = text.as_bytes();
    let Some(offset) = bytes.len().checked_sub(6).map(|start| &bytes[start..]) else {
        return false;
    };
    matches!(offset[0], b'+' | b'-')
        && offset[1].is_ascii_digit()
        && offset[2].is_ascii_digit()
        && offset[3] == b':'
        && offset[4].is_ascii_digit()
        && offset[5].is_ascii_digit()
}

/// An object of the body whose members have been checked against the known names.
#[derive(Debug, Clone)]
pub(super) struct Object<'a> {
    members: &'a Map<String, Value>,
    pointer: String,
}

impl<'a> Object<'a> {
    /// The member `name`; reports it as required when it is absent.
    pub(super) fn required(&self, name: &str, problems: &mut Problems) -> Option<Field<'a>> {
        let field = self.optional(name);
        if field.is_none() {
            problems.add(&member_pointer(&self.pointer, name), "is required");
        }
        field
    }

    /// The member `name`, if present (even if `null`).
    pub(super) fn optional(&self, name: &str) -> Option<Field<'a>> {
        self.members.get(name).map(|value| Field {
            value,
            pointer: member_pointer(&self.pointer, name),
        })
    }

    /// The member `name`, if present and not `null`.
    pub(super) fn nullable(&self, name: &str) -> Option<Field<'a>> {
        self.optional(name).filter(|field| !field.value.is_null())
    }

    /// An optional text member: absent, `null` or blank mean none (`Some(None)`); `None` when
    /// it is invalid.
    pub(super) fn optional_text(
        &self,
        name: &str,
        rule: Text,
        problems: &mut Problems,
    ) -> Option<Option<String>> {
        self.optional(name)
            .map_or(Some(None), |field| field.optional_text(rule, problems))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const CLOCK: Clock = Clock {
        now: datetime!(2026-11-27 10:00 UTC),
        max_future_skew: Duration::minutes(5),
    };

    /// Reads `value` with `read`, returning the result and the details of the problems.
    fn read<T>(
        value: Value,
        read: impl FnOnce(&Field<'_>, &mut Problems) -> Option<T>,
    ) -> (Option<T>, Vec<String>) {
        let mut problems = Problems::default();
        let field = Field {
            value: &value,
            pointer: "/x".to_owned(),
        };
        let parsed = read(&field, &mut problems);
        for error in &problems.errors {
            assert_eq!(error.pointer, "/x");
        }
        let details = problems
            .errors
            .into_iter()
            .map(|error| error.detail)
            .collect();
        (parsed, details)
    }

    #[test]
    fn member_pointers_escape_tilde_and_slash() {
        assert_eq!(member_pointer("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(member_pointer("", "~1"), "/~01");
        assert_eq!(element_pointer("/a", 3), "/a/3");
    }

    #[test]
    fn uuids_are_accepted_only_in_hyphenated_form_of_either_case() {
        let upper = "6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B";
        let (id, details) = read(json!(upper), |field, problems| field.uuid(problems));
        assert_eq!(
            id.map(|id| id.to_string().to_uppercase()),
            Some(upper.to_owned())
        );
        assert!(details.is_empty());
        for other in [
            "6f1c2a3b4d5e4f608a7b9c0d1e2f3a4b",
            "{6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b}",
            "urn:uuid:6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4",
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4g",
            "",
        ] {
            let (id, details) = read(json!(other), |field, problems| field.uuid(problems));
            assert_eq!(id, None, "{other}");
            assert_eq!(details.len(), 1, "{other}");
        }
    }

    #[test]
    fn timestamps_need_an_explicit_offset() {
        let (parsed, details) = read(json!("2026-11-27T09:00:00+02:00"), |field, problems| {
            field.timestamp(CLOCK, problems)
        });
        assert_eq!(parsed, Some(datetime!(2026-11-27 07:00 UTC)));
        assert!(details.is_empty());

        let (parsed, details) = read(json!("2026-11-27T09:00:00"), |field, problems| {
            field.timestamp(CLOCK, problems)
        });
        assert_eq!(parsed, None);
        assert!(
            details[0].starts_with("must have a UTC offset"),
            "{details:?}"
        );

        let (parsed, details) = read(json!("27/11/2026 09:00"), |field, problems| {
            field.timestamp(CLOCK, problems)
        });
        assert_eq!(parsed, None);
        assert!(
            details[0].starts_with("must be an RFC 3339 timestamp"),
            "{details:?}"
        );
    }

    #[test]
    fn timestamps_may_be_ahead_of_the_clock_by_the_skew_only() {
        let at_limit = json!("2026-11-27T10:05:00Z");
        let (parsed, _) = read(at_limit, |field, problems| field.timestamp(CLOCK, problems));
        assert_eq!(parsed, Some(datetime!(2026-11-27 10:05 UTC)));

        let past_limit = json!("2026-11-27T10:05:01Z");
        let (parsed, details) = read(past_limit, |field, problems| {
            field.timestamp(CLOCK, problems)
        });
        assert_eq!(parsed, None);
        assert_eq!(
            details,
            ["must not be in the future (more than 300 seconds after the server's clock)"]
        );
    }

    #[test]
    fn text_is_trimmed_and_checked_for_blanks_length_and_control_characters() {
        let rule = Text::line(5);
        let (text, _) = read(json!("  abc \n"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(text.as_deref(), Some("abc"));

        let (_, details) = read(json!("   "), |field, problems| field.text(rule, problems));
        assert_eq!(details, ["must not be blank"]);
        let (_, details) = read(json!("abcdef"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(details, ["must be at most 5 characters; it has 6"]);
        let (text, _) = read(json!("éééé"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(
            text.as_deref(),
            Some("éééé"),
            "length counts characters, not bytes"
        );
        let (_, details) = read(json!("a\u{7}b"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(details, ["must not contain control characters"]);
        let (_, details) = read(json!("a\u{0}b"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(details, ["must not contain NUL characters"]);
        let (_, details) = read(json!(5), |field, problems| field.text(rule, problems));
        assert_eq!(details, ["must be a string"]);
    }

    #[test]
    fn multiline_text_allows_line_feeds_and_tabs_only() {
        let rule = Text::multiline(50);
        let (text, _) = read(json!("a\n\tb"), |field, problems| {
            field.text(rule, problems)
        });
        assert_eq!(text.as_deref(), Some("a\n\tb"));
        let (_, details) = read(json!("a\rb"), |field, problems| field.text(rule, problems));
        assert_eq!(
            details,
            ["must not contain control characters other than line feeds and tabs"]
        );
        let (_, details) = read(json!("a\0b"), |field, problems| field.text(rule, problems));
        assert_eq!(details, ["must not contain NUL characters"]);
    }

    #[test]
    fn optional_text_treats_null_and_blank_as_none() {
        let rule = Text::line(5);
        for none in [json!(null), json!(""), json!("  ")] {
            let (text, details) = read(none, |field, problems| field.optional_text(rule, problems));
            assert_eq!(text, Some(None));
            assert!(details.is_empty());
        }
        let (text, _) = read(json!(" a "), |field, problems| {
            field.optional_text(rule, problems)
        });
        assert_eq!(text, Some(Some("a".to_owned())));
    }

    #[test]
    fn arrays_report_their_count_once_and_yield_at_most_the_maximum() {
        let count = |field: &Field<'_>, problems: &mut Problems| {
            field.array(1..=2, problems).map(|elements| elements.len())
        };
        let (yielded, details) = read(json!([1, 2, 3, 4]), count);
        assert_eq!(yielded, Some(2));
        assert_eq!(details, ["must have at most 2 elements; it has 4"]);
        let (_, details) = read(json!([]), count);
        assert_eq!(details, ["must not be empty"]);
        let (_, details) = read(json!({}), count);
        assert_eq!(details, ["must be an array"]);
    }

    #[test]
    fn long_values_are_quoted_cut_short() {
        assert_eq!(quoted("a\"b"), r#""a\"b""#);
        let long = "x".repeat(100);
        assert_eq!(quoted(&long), format!("\"{}\"…", "x".repeat(64)));
    }

    #[test]
    fn finish_without_problems_returns_the_value() {
        assert_eq!(Problems::default().finish(Some(1)), Ok(1));
        let mut problems = Problems::default();
        problems.add("/a", "is required");
        assert_eq!(
            problems.finish(Some(1)),
            Err(Rejection::Invalid(vec![FieldError {
                pointer: "/a".to_owned(),
                detail: "is required".to_owned(),
            }]))
        );
    }
}
