//! The tools of the walk over a request body: the checks of scalar values, the list of problems
//! and their JSON pointers, and the reporting of what was read.
//!
//! A body is walked in two steps. While it is read (see `read`), each scalar member is checked
//! on its own into a [`Leaf`]: its typed value, or the detail of what is wrong with it. Then the
//! members read are gone through in the documented order, object by object: the problems of
//! each are recorded in [`Problems`] with their pointer ([`At`]), and the checks that relate
//! members (unique ids, a unit against its code, …) are made. A reporting step that meets a
//! problem records it and returns `None`; the caller goes on with the next member, so one pass
//! finds every problem. A `Some` does not mean the whole body is valid: only an empty
//! [`Problems`] at the end does (see [`Problems::finish`]).

use std::borrow::Cow;
use std::fmt::Write;
use std::ops::RangeInclusive;

use service_plumbing::problem::FieldError;
use time::format_description::well_known::Rfc3339;
use time::macros::{date, format_description};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::Rejection;
use super::read::{List, Object, Scalar};

/// The earliest birth date accepted.
const EARLIEST_BIRTH_DATE: Date = date!(1900 - 01 - 01);

/// How much of a client's value a problem's detail quotes back.
const QUOTE_CHARS: usize = 64;

/// What is wrong with a value: the detail of its problem.
pub(super) type Detail = Cow<'static, str>;

/// A member checked on its own: its typed value, or what is wrong with it.
pub(super) type Leaf<T> = Result<T, Detail>;

/// The problems found in one request body, in the order the walk met them.
#[derive(Debug, Default)]
pub(super) struct Problems {
    errors: Vec<FieldError>,
}

impl Problems {
    /// Records that the value at `at` is wrong, and why.
    pub(super) fn add(&mut self, at: &At<'_>, detail: impl Into<String>) {
        self.errors.push(FieldError {
            pointer: at.pointer(),
            detail: detail.into(),
        });
    }

    /// How many problems were found so far.
    pub(super) fn len(&self) -> usize {
        self.errors.len()
    }

    /// The member if it was sent; reports it as required when it was not.
    pub(super) fn required<T>(&mut self, member: Option<T>, at: &At<'_>) -> Option<T> {
        if member.is_none() {
            self.add(at, "is required");
        }
        member
    }

    /// The value of a required scalar member; records that it is absent, or its problem.
    pub(super) fn required_leaf<T>(&mut self, member: Option<Leaf<T>>, at: &At<'_>) -> Option<T> {
        let leaf = self.required(member, at)?;
        self.leaf(leaf, at)
    }

    /// The value of `leaf`; records its problem if it has one.
    pub(super) fn leaf<T>(&mut self, leaf: Leaf<T>, at: &At<'_>) -> Option<T> {
        leaf.map_err(|detail| self.add(at, detail)).ok()
    }

    /// The known members of `object`; records that it is not an object, or each of its unknown
    /// members.
    pub(super) fn object<M>(&mut self, object: Object<M>, at: &At<'_>) -> Option<M> {
        let fields = self.leaf(object, at)?;
        for name in &fields.unknown {
            self.add(&at.member(name), "unknown field");
        }
        Some(fields.members)
    }

    /// The elements of `list` that were read, checking their count is within `count`; past the
    /// maximum only the count is reported (the elements beyond it were not read, so the walk
    /// stays bounded whatever the body holds).
    pub(super) fn list<T>(
        &mut self,
        list: List<T>,
        count: RangeInclusive<usize>,
        at: &At<'_>,
    ) -> Option<Vec<T>> {
        let elements = self.leaf(list, at)?;
        if elements.count < *count.start() {
            let detail = match *count.start() {
                1 => "must not be empty".to_owned(),
                least => format!("must have at least {least} elements"),
            };
            self.add(at, detail);
        } else if elements.count > *count.end() {
            self.add(
                at,
                format!(
                    "must have at most {} elements; it has {}",
                    count.end(),
                    elements.count
                ),
            );
        }
        Some(elements.items)
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

/// Reports every element with `report`, going on after one fails so that the problems of each
/// are found; all of them if every one parsed.
pub(super) fn parse_each<T, U>(
    elements: Vec<T>,
    at: &At<'_>,
    mut report: impl FnMut(T, &At<'_>) -> Option<U>,
) -> Option<Vec<U>> {
    let parsed: Vec<Option<U>> = elements
        .into_iter()
        .enumerate()
        .map(|(index, element)| report(element, &at.element(index)))
        .collect();
    parsed.into_iter().collect()
}

/// Where a value is in the body, as a chain of member names and indices that is written out as
/// an RFC 6901 pointer ([`At::pointer`]) only when a problem or a first use needs it.
#[derive(Debug, Clone, Copy)]
pub(super) enum At<'a> {
    /// The whole body (pointer `""`).
    Root,
    /// A member of the object at the first.
    Member(&'a At<'a>, &'a str),
    /// An element of the array at the first.
    Element(&'a At<'a>, usize),
}

impl At<'_> {
    /// The member `name` of the object here.
    pub(super) fn member<'b>(&'b self, name: &'b str) -> At<'b> {
        At::Member(self, name)
    }

    /// The element `index` of the array here.
    pub(super) fn element(&self, index: usize) -> At<'_> {
        At::Element(self, index)
    }

    /// The RFC 6901 pointer to here, `""` for the whole body.
    pub(super) fn pointer(&self) -> String {
        let mut pointer = String::new();
        self.push_to(&mut pointer);
        pointer
    }

    fn push_to(&self, pointer: &mut String) {
        match self {
            At::Root => {}
            At::Member(parent, name) => {
                parent.push_to(pointer);
                pointer.push('/');
                push_escaped(pointer, name);
            }
            At::Element(parent, index) => {
                parent.push_to(pointer);
                pointer.push('/');
                // Writing to a `String` cannot fail.
                let _ = write!(pointer, "{index}");
            }
        }
    }
}

/// Pushes the member name `key` escaped as RFC 6901 requires (`~` → `~0`, `/` → `~1`).
fn push_escaped(pointer: &mut String, key: &str) {
    if !key.contains(['~', '/']) {
        pointer.push_str(key);
        return;
    }
    for character in key.chars() {
        match character {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            other => pointer.push(other),
        }
    }
}

/// `pointer` extended by the member name `key`, escaped as RFC 6901 requires.
pub(super) fn member_pointer(pointer: &str, key: &str) -> String {
    let mut extended = String::with_capacity(pointer.len() + key.len() + 1);
    extended.push_str(pointer);
    extended.push('/');
    push_escaped(&mut extended, key);
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

impl Scalar<'_> {
    /// Whether the value is `null`.
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }

    /// The string, as sent.
    pub(super) fn string(&self) -> Leaf<&str> {
        match self {
            Scalar::Text(text) => Ok(text),
            _ => Err(Cow::Borrowed("must be a string")),
        }
    }

    /// A required text: trimmed, not blank, within the rule's length and characters.
    pub(super) fn text(&self, rule: Text) -> Leaf<String> {
        let text = self.clean_text(rule)?;
        if text.is_empty() {
            return Err(Cow::Borrowed("must not be blank"));
        }
        Ok(text)
    }

    /// An optional text: `null` and blank text mean none; otherwise as [`Scalar::text`].
    pub(super) fn optional_text(&self, rule: Text) -> Leaf<Option<String>> {
        if self.is_null() {
            return Ok(None);
        }
        let text = self.clean_text(rule)?;
        Ok((!text.is_empty()).then_some(text))
    }

    /// The trimmed string, if it is within the rule (blank allowed).
    fn clean_text(&self, rule: Text) -> Leaf<String> {
        let text = self.string()?.trim();
        let allowed = |character: char| rule.multiline && matches!(character, '\n' | '\t');
        if text.contains('\0') {
            return Err(Cow::Borrowed("must not contain NUL characters"));
        }
        if text
            .chars()
            .any(|character| character.is_control() && !allowed(character))
        {
            return Err(Cow::Borrowed(if rule.multiline {
                "must not contain control characters other than line feeds and tabs"
            } else {
                "must not contain control characters"
            }));
        }
        let length = text.chars().count();
        if length > rule.max_chars {
            return Err(Cow::Owned(format!(
                "must be at most {} characters; it has {length}",
                rule.max_chars
            )));
        }
        Ok(text.to_owned())
    }

    /// One of `choices`, by wire name; `what` names the kind of value in the detail.
    pub(super) fn one_of<T: Copy>(&self, what: &str, choices: &[(&str, T)]) -> Leaf<T> {
        let name = self.string()?;
        match choices.iter().find(|(wire, _)| *wire == name) {
            Some((_, value)) => Ok(*value),
            None => {
                let expected: Vec<&str> = choices.iter().map(|(wire, _)| *wire).collect();
                Err(Cow::Owned(format!(
                    "unknown {what} {}; expected one of {}",
                    quoted(name),
                    expected.join(", ")
                )))
            }
        }
    }

    /// A UUID in the canonical hyphenated form `8-4-4-4-12`, hex digits of either case.
    pub(super) fn uuid(&self) -> Leaf<Uuid> {
        let text = self.string()?;
        // `Uuid::try_parse` also takes the simple, braced and URN forms; ids are compared and
        // logged as text elsewhere, so only one form is accepted.
        let hyphenated = text.len() == 36
            && text.char_indices().all(|(index, character)| match index {
                8 | 13 | 18 | 23 => character == '-',
                _ => character.is_ascii_hexdigit(),
            });
        match Uuid::try_parse(text) {
            Ok(id) if hyphenated => Ok(id),
            _ => Err(Cow::Borrowed(
                "must be a UUID in hyphenated form, e.g. 6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            )),
        }
    }

    /// An RFC 3339 timestamp with an explicit UTC offset, not later than the clock allows.
    pub(super) fn timestamp(&self, clock: Clock) -> Leaf<OffsetDateTime> {
        let text = self.string()?;
        let parsed = if has_offset(text) {
            OffsetDateTime::parse(text, &Rfc3339).ok()
        } else {
            None
        };
        let Some(timestamp) = parsed else {
            let naive =
                !has_offset(text) && OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).is_ok();
            return Err(Cow::Borrowed(if naive {
                "must have a UTC offset (Z or ±hh:mm), e.g. 2026-11-27T09:00:00Z"
            } else {
                "must be an RFC 3339 timestamp, e.g. 2026-11-27T09:00:00Z"
            }));
        };
        let latest = clock
            .now
            .checked_add(clock.max_future_skew)
            .unwrap_or(clock.now);
        if timestamp > latest {
            return Err(Cow::Owned(format!(
                "must not be in the future (more than {} seconds after the server's clock)",
                clock.max_future_skew.whole_seconds()
            )));
        }
        Ok(timestamp)
    }

    /// A birth date, `YYYY-MM-DD`, from 1900-01-01 to the clock's date.
    pub(super) fn birth_date(&self, clock: Clock) -> Leaf<Date> {
        let text = self.string()?;
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
            return Err(Cow::Borrowed("must be a date in the form YYYY-MM-DD"));
        };
        if date > clock.now.date() {
            return Err(Cow::Borrowed("must not be in the future"));
        }
        if date < EARLIEST_BIRTH_DATE {
            return Err(Cow::Borrowed("must not be before 1900-01-01"));
        }
        Ok(date)
    }

    /// A finite JSON number.
    pub(super) fn number(&self) -> Leaf<f64> {
        match self {
            Scalar::Number(number) if number.is_finite() => Ok(*number),
            Scalar::Number(_) => Err(Cow::Borrowed("must be a finite number")),
            _ => Err(Cow::Borrowed("must be a number")),
        }
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::de::DeserializeSeed;
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;
    use crate::validation::Limits;
    use crate::validation::read::{Elements, Reader};

    const CLOCK: Clock = Clock {
        now: datetime!(2026-11-27 10:00 UTC),
        max_future_skew: Duration::minutes(5),
    };

    /// Reads `value` as a member and checks it with `check`, returning the result and the
    /// details of the problems recorded at the member.
    fn read<T>(
        value: Value,
        check: impl FnOnce(&Scalar<'_>) -> Leaf<T>,
    ) -> (Option<T>, Vec<String>) {
        let limits = Limits::default();
        let reader = Reader::new(100, CLOCK, &limits);
        let text = value.to_string();
        let mut deserializer = serde_json::Deserializer::from_str(&text);
        let scalar = reader.scalar().deserialize(&mut deserializer).unwrap();
        let mut problems = Problems::default();
        let parsed = problems.leaf(check(&scalar), &At::Root.member("x"));
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
        let root = At::Root;
        let member = root.member("a");
        let nested = member.member("b/c~d");
        assert_eq!(nested.element(3).pointer(), "/a/b~1c~0d/3");
        assert_eq!(root.pointer(), "");
    }

    #[test]
    fn uuids_are_accepted_only_in_hyphenated_form_of_either_case() {
        let upper = "6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B";
        let (id, details) = read(json!(upper), |scalar| scalar.uuid());
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
            let (id, details) = read(json!(other), |scalar| scalar.uuid());
            assert_eq!(id, None, "{other}");
            assert_eq!(details.len(), 1, "{other}");
        }
    }

    #[test]
    fn timestamps_need_an_explicit_offset() {
        let (parsed, details) = read(json!("2026-11-27T09:00:00+02:00"), |scalar| {
            scalar.timestamp(CLOCK)
        });
        assert_eq!(parsed, Some(datetime!(2026-11-27 07:00 UTC)));
        assert!(details.is_empty());

        let (parsed, details) = read(json!("2026-11-27T09:00:00"), |scalar| {
            scalar.timestamp(CLOCK)
        });
        assert_eq!(parsed, None);
        assert!(
            details[0].starts_with("must have a UTC offset"),
            "{details:?}"
        );

        let (parsed, details) = read(json!("27/11/2026 09:00"), |scalar| scalar.timestamp(CLOCK));
        assert_eq!(parsed, None);
        assert!(
            details[0].starts_with("must be an RFC 3339 timestamp"),
            "{details:?}"
        );
    }

    #[test]
    fn timestamps_may_be_ahead_of_the_clock_by_the_skew_only() {
        let at_limit = json!("2026-11-27T10:05:00Z");
        let (parsed, _) = read(at_limit, |scalar| scalar.timestamp(CLOCK));
        assert_eq!(parsed, Some(datetime!(2026-11-27 10:05 UTC)));

        let past_limit = json!("2026-11-27T10:05:01Z");
        let (parsed, details) = read(past_limit, |scalar| scalar.timestamp(CLOCK));
        assert_eq!(parsed, None);
        assert_eq!(
            details,
            ["must not be in the future (more than 300 seconds after the server's clock)"]
        );
    }

    #[test]
    fn text_is_trimmed_and_checked_for_blanks_length_and_control_characters() {
        let rule = Text::line(5);
        let (text, _) = read(json!("  abc \n"), |scalar| scalar.text(rule));
        assert_eq!(text.as_deref(), Some("abc"));

        let (_, details) = read(json!("   "), |scalar| scalar.text(rule));
        assert_eq!(details, ["must not be blank"]);
        let (_, details) = read(json!("abcdef"), |scalar| scalar.text(rule));
        assert_eq!(details, ["must be at most 5 characters; it has 6"]);
        let (text, _) = read(json!("éééé"), |scalar| scalar.text(rule));
        assert_eq!(
            text.as_deref(),
            Some("éééé"),
            "length counts characters, not bytes"
        );
        let (_, details) = read(json!("a\u{7}b"), |scalar| scalar.text(rule));
        assert_eq!(details, ["must not contain control characters"]);
        let (_, details) = read(json!("a\u{0}b"), |scalar| scalar.text(rule));
        assert_eq!(details, ["must not contain NUL characters"]);
        let (_, details) = read(json!(5), |scalar| scalar.text(rule));
        assert_eq!(details, ["must be a string"]);
    }

    #[test]
    fn multiline_text_allows_line_feeds_and_tabs_only() {
        let rule = Text::multiline(50);
        let (text, _) = read(json!("a\n\tb"), |scalar| scalar.text(rule));
        assert_eq!(text.as_deref(), Some("a\n\tb"));
        let (_, details) = read(json!("a\rb"), |scalar| scalar.text(rule));
        assert_eq!(
            details,
            ["must not contain control characters other than line feeds and tabs"]
        );
        let (_, details) = read(json!("a\0b"), |scalar| scalar.text(rule));
        assert_eq!(details, ["must not contain NUL characters"]);
    }

    #[test]
    fn optional_text_treats_null_and_blank_as_none() {
        let rule = Text::line(5);
        for none in [json!(null), json!(""), json!("  ")] {
            let (text, details) = read(none, |scalar| scalar.optional_text(rule));
            assert_eq!(text, Some(None));
            assert!(details.is_empty());
        }
        let (text, _) = read(json!(" a "), |scalar| scalar.optional_text(rule));
        assert_eq!(text, Some(Some("a".to_owned())));
    }

    #[test]
    fn arrays_report_their_count_once_and_yield_what_was_read() {
        let count = |list: List<u8>| {
            let mut problems = Problems::default();
            let read = problems.list(list, 1..=2, &At::Root.member("x"));
            let details: Vec<String> = problems
                .errors
                .into_iter()
                .map(|error| error.detail)
                .collect();
            (read.map(|items| items.len()), details)
        };
        let (yielded, details) = count(Ok(Elements {
            items: vec![1, 2],
            count: 4,
        }));
        assert_eq!(yielded, Some(2));
        assert_eq!(details, ["must have at most 2 elements; it has 4"]);
        let (_, details) = count(Ok(Elements {
            items: Vec::new(),
            count: 0,
        }));
        assert_eq!(details, ["must not be empty"]);
        let (_, details) = count(Err(Cow::Borrowed("must be an array")));
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
        problems.add(&At::Root.member("a"), "is required");
        assert_eq!(
            problems.finish(Some(1)),
            Err(Rejection::Invalid(vec![FieldError {
                pointer: "/a".to_owned(),
                detail: "is required".to_owned(),
            }]))
        );
    }
}
