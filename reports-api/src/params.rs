//! Query parameters of the read endpoints, parsed into types at the edge.
//!
//! `GET /v1/me/reports` takes [`ListQuery`] ([`parse_list_query`]), `GET /v1/me/trends`
//! [`TrendQuery`] ([`parse_trend_query`]); the other read endpoints take only the
//! read-your-writes parameters of [`Freshness`] ([`parse_freshness`]). Parsing is
//! strict and reports every problem at once, each as a [`FieldError`] whose pointer names the
//! parameter (`/query/limit`); [`invalid_query`] turns them into a `400` problem.
//!
//! The rules, common to every parameter:
//!
//! - the query string is `&`-separated `name=value` pairs, percent-encoded, `+` meaning a space;
//!   bad percent escapes or non-UTF-8 text are refused;
//! - unknown parameters are refused (not ignored), so a misspelt filter cannot silently return
//!   unfiltered data; a parameter may appear at most once; an empty value is refused (leave
//!   the parameter out instead);
//! - anything shaped like a MongoDB operator (a value starting with `$` or `{`, containing
//!   `$where` or `"$`, or a name with `$` or brackets such as `instrument[$ne]`) is refused with
//!   a detail saying so. This is defence in depth: values are parsed into types and never
//!   reach a query as raw strings anyway, but an explicit refusal is clearer to a client and to
//!   whoever reads the logs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clinical_catalogue::InstrumentType;
use http::StatusCode;
use service_plumbing::problem::{FieldError, Problem};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;

/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 100;

/// Points of a trend when `limit` is not given, and the most one answer holds: about ten
/// years of weekly checkups, and still a small answer (a point is about 130 bytes of JSON).
pub const MAX_TREND_POINTS: u32 = 500;

/// Largest accepted `wait_ms`: how long a request may wait for the read store to catch up.
pub const MAX_WAIT_MS: u64 = 5_000;

/// Detail of every problem about an operator-shaped name or value.
pub const OPERATOR_DETAIL: &str =
    "looks like a database query operator; operators are not accepted, give a plain value";

/// Parameters accepted by [`parse_list_query`].
const LIST_PARAMETERS: &[&str] = &[
    "limit",
    "cursor",
    "instrument",
    "from",
    "to",
    "min_lsn",
    "wait_ms",
];

/// Detail of the problem when `code` is missing from a trend query.
const CODE_REQUIRED: &str = "is required: a measurement code like 8480-6";

/// Parameters accepted by [`parse_trend_query`].
const TREND_PARAMETERS: &[&str] = &[
    "code", "since", "until", "limit", "cursor", "min_lsn", "wait_ms",
];

/// Parameters accepted by [`parse_freshness`].
const FRESHNESS_PARAMETERS: &[&str] = &["min_lsn", "wait_ms"];

/// Longest accepted cursor text; an encoded cursor is at most 80 characters.
const MAX_CURSOR_CHARS: usize = 128;

/// The parameters of `GET /v1/me/reports`: one page of the patient's reports, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Page size (`limit`): 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    pub limit: u32,
    /// Where the page starts (`cursor`): after this report; `None` for the first page.
    pub cursor: Option<Cursor>,
    /// Only reports of this instrument type (`instrument`, a catalogue name like
    /// `blood_pressure`).
    pub instrument: Option<InstrumentType>,
    /// Only reports taken at or after this instant (`from`, RFC 3339 with an offset).
    pub from: Option<OffsetDateTime>,
    /// Only reports taken at or before this instant (`to`, RFC 3339 with an offset); never
    /// before `from`.
    pub to: Option<OffsetDateTime>,
    /// Read-your-writes parameters (`min_lsn`, `wait_ms`).
    pub freshness: Freshness,
}

impl Default for ListQuery {
    /// The first page with the default size, unfiltered.
    fn default() -> Self {
        ListQuery {
            limit: DEFAULT_LIMIT,
            cursor: None,
            instrument: None,
            from: None,
            to: None,
            freshness: Freshness::default(),
        }
    }
}

/// The parameters of `GET /v1/me/trends`: the patient's series of one measurement code.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendQuery {
    /// The measurement (`code`, required): a LOINC code of the catalogue, like `8480-6`.
    pub code: &'static clinical_catalogue::Code,
    /// Only points taken at or after this instant (`since`, RFC 3339 with an offset).
    pub since: Option<OffsetDateTime>,
    /// Only points taken at or before this instant (`until`, RFC 3339 with an offset); never
    /// before `since`.
    pub until: Option<OffsetDateTime>,
    /// Most points in the answer (`limit`): 1 to [`MAX_TREND_POINTS`], default the maximum.
    /// The answer holds the newest ones of the window.
    pub limit: u32,
    /// Only points older than this one (`cursor`, the `next_cursor` of the previous answer).
    pub cursor: Option<Cursor>,
    /// Read-your-writes parameters (`min_lsn`, `wait_ms`).
    pub freshness: Freshness,
}

/// Read-your-writes parameters: a client that has just uploaded passes the LSN the ingest API
/// returned, and the read waits until the read store has applied it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The read store must have applied the WAL up to this LSN (`min_lsn`, PostgreSQL text
    /// form `0/16B3748`).
    pub min_lsn: Option<u64>,
    /// How long to wait for it, in milliseconds (`wait_ms`): 0 to [`MAX_WAIT_MS`], default 0.
    /// Meaningful only with `min_lsn`.
    pub wait_ms: u64,
}

impl Freshness {
    /// [`Freshness::wait_ms`] as a duration.
    pub fn wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.wait_ms)
    }
}

/// A position in the list of a patient's reports, sorted by `taken_at` then report id, both
/// descending: the next page starts after the report it names.
///
/// On the wire a cursor is opaque: URL-safe base64 without padding of `v1:<taken_at
/// millis>:<report id>`. It is not signed, so a client can forge one; that is acceptable
/// because a cursor only says where to start, and the patient filter from the token is always
/// applied on the server, so a forged cursor can reach no other patient's data. Decoding is
/// strict (version, canonical integer, canonical lowercase hyphenated uuid), so every accepted
/// text is exactly what [`Cursor::encode`] would produce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `taken_at` of the last report of the previous page, in milliseconds since the Unix epoch
    /// (the BSON datetime).
    pub taken_at_millis: i64,
    /// `_id` of that report: a uuid in lowercase hyphenated text, as the CDC daemon writes it.
    pub report_id: String,
}

/// Why a cursor text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than any cursor this API produces.
    #[error("it is too long")]
    TooLong,
    /// Not URL-safe base64 without padding, or not UTF-8 inside.
    #[error("it is not URL-safe base64 text")]
    NotBase64,
    /// Not `v1:` followed by two fields.
    #[error("its version or layout is unknown")]
    UnknownVersion,
    /// The `taken_at` field is not a canonical integer.
    #[error("its time is not an integer")]
    BadTime,
    /// The report id is not a lowercase hyphenated uuid.
    #[error("its report id is not a uuid")]
    BadReportId,
}

impl Cursor {
    /// The opaque wire form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.taken_at_millis, self.report_id))
    }

    /// Parses the wire form strictly; never panics, whatever the input.
    pub fn decode(text: &str) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::TooLong);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::NotBase64)?;
        let plain = String::from_utf8(bytes).map_err(|_| CursorError::NotBase64)?;
        let mut fields = plain.split(':');
        let (Some("v1"), Some(millis), Some(report_id), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(CursorError::UnknownVersion);
        };
        let taken_at_millis: i64 = millis.parse().map_err(|_| CursorError::BadTime)?;
        // `parse` takes `+1` and `01`; only the canonical text keeps one cursor per position.
        if taken_at_millis.to_string() != millis {
            return Err(CursorError::BadTime);
        }
        match Uuid::parse_str(report_id) {
            Ok(id) if id.hyphenated().to_string() == report_id => Ok(Cursor {
                taken_at_millis,
                report_id: report_id.to_owned(),
            }),
            _ => Err(CursorError::BadReportId),
        }
    }
}

/// Parses the query string of `GET /v1/me/reports` (`None` when the URI has none), collecting
/// every problem.
pub fn parse_list_query(query: Option<&str>) -> Result<ListQuery, Vec<FieldError>> {
    let mut parameters = Parameters::split(query, LIST_PARAMETERS);
    let limit = parameters
        .parse("limit", parse_limit)
        .unwrap_or(DEFAULT_LIMIT);
    let cursor = parameters.parse("cursor", parse_cursor);
    let instrument = parameters.parse("instrument", parse_instrument);
    let from = parameters.parse("from", parse_instant);
    let to = parameters.parse("to", parse_instant);
    let freshness = parse_freshness_parameters(&mut parameters);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        parameters
            .errors
            .push(field_error("from", "must not be after `to`"));
    }
    parameters.finish(ListQuery {
        limit,
        cursor,
        instrument,
        from,
        to,
        freshness,
    })
}

/// Parses the query string of `GET /v1/me/trends`, collecting every problem.
pub fn parse_trend_query(query: Option<&str>) -> Result<TrendQuery, Vec<FieldError>> {
    let mut parameters = Parameters::split(query, TREND_PARAMETERS);
    let code = parameters.parse("code", parse_code);
    if code.is_none() && !parameters.has("code") {
        parameters.errors.push(field_error("code", CODE_REQUIRED));
    }
    let since = parameters.parse("since", parse_instant);
    let until = parameters.parse("until", parse_instant);
    let limit = parameters
        .parse("limit", |text| parse_bounded(text, MAX_TREND_POINTS))
        .unwrap_or(MAX_TREND_POINTS);
    let cursor = parameters.parse("cursor", parse_cursor);
    let freshness = parse_freshness_parameters(&mut parameters);
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        parameters
            .errors
            .push(field_error("since", "must not be after `until`"));
    }
    parameters.finish(())?;
    // Not reached without a code: its absence or refusal is an error above.
    let code = code.ok_or_else(|| vec![field_error("code", CODE_REQUIRED)])?;
    Ok(TrendQuery {
        code,
        since,
        until,
        limit,
        cursor,
        freshness,
    })
}

/// Parses the query string of the read endpoints other than the report list, which accept
/// only `min_lsn` and `wait_ms`.
pub fn parse_freshness(query: Option<&str>) -> Result<Freshness, Vec<FieldError>> {
    let mut parameters = Parameters::split(query, FRESHNESS_PARAMETERS);
    let freshness = parse_freshness_parameters(&mut parameters);
    parameters.finish(freshness)
}

/// The `400 Bad Request` problem for the errors of [`parse_list_query`] or [`parse_freshness`].
pub fn invalid_query(errors: Vec<FieldError>) -> Problem {
    let detail = match errors.len() {
        1 => "the query string has 1 invalid parameter".to_owned(),
        count => format!("the query string has {count} invalid parameters"),
    };
    let mut problem = Problem::new(StatusCode::BAD_REQUEST, detail);
    problem.errors = errors;
    problem
}

fn parse_freshness_parameters(parameters: &mut Parameters) -> Freshness {
    let min_lsn = parameters.parse("min_lsn", |text| {
        read_model::lsn::parse(text)
            .map_err(|_| "must be a PostgreSQL LSN like 0/16B3748".to_owned())
    });
    let wait_ms = parameters.parse("wait_ms", parse_wait_ms).unwrap_or(0);
    Freshness { min_lsn, wait_ms }
}

fn parse_limit(text: &str) -> Result<u32, String> {
    parse_bounded(text, MAX_LIMIT)
}

/// An integer from 1 to `max`.
fn parse_bounded(text: &str, max: u32) -> Result<u32, String> {
    let detail = || format!("must be an integer from 1 to {max}");
    match parse_decimal(text) {
        Some(value) if (1..=u64::from(max)).contains(&value) => {
            u32::try_from(value).map_err(|_| detail())
        }
        _ => Err(detail()),
    }
}

fn parse_cursor(text: &str) -> Result<Cursor, String> {
    Cursor::decode(text).map_err(|error| format!("is not a cursor returned by this API: {error}"))
}

fn parse_code(text: &str) -> Result<&'static clinical_catalogue::Code, String> {
    clinical_catalogue::lookup(text).ok_or_else(|| {
        let codes: Vec<&str> = clinical_catalogue::CODES
            .iter()
            .map(|code| code.code)
            .collect();
        format!(
            "must be a measurement code of the catalogue: {}",
            codes.join(", ")
        )
    })
}

fn parse_wait_ms(text: &str) -> Result<u64, String> {
    match parse_decimal(text) {
        Some(wait) if wait <= MAX_WAIT_MS => Ok(wait),
        _ => Err(format!("must be an integer from 0 to {MAX_WAIT_MS}")),
    }
}

/// A non-negative integer written with ASCII digits only (no sign, no spaces).
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_instrument(text: &str) -> Result<InstrumentType, String> {
    InstrumentType::parse(text).ok_or_else(|| {
        let names: Vec<&str> = InstrumentType::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect();
        format!("must be one of {}", names.join(", "))
    })
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        let mut detail = "must be an RFC 3339 date-time with an offset, like \
                          2024-05-01T08:30:00Z or 2024-05-01T10:30:00+02:00"
            .to_owned();
        if text.contains(' ') {
            // The usual cause: an unencoded `+02:00`, whose `+` a query string reads as a space.
            detail.push_str(" (write + as %2B in a query string)");
        }
        detail
    })
}

/// The parameters of one query string, split and checked against the accepted names, with the
/// problems found so far.
struct Parameters {
    /// The value of each accepted parameter given exactly once, by name.
    values: Vec<(&'static str, String)>,
    errors: Vec<FieldError>,
}

impl Parameters {
    fn split(query: Option<&str>, accepted: &'static [&'static str]) -> Parameters {
        let mut errors = Vec::new();
        let mut given: Vec<(&'static str, String)> = Vec::new();
        let mut refused_names: Vec<String> = Vec::new();
        let mut refuse = |errors: &mut Vec<FieldError>, name: &str, detail: &str| {
            if !refused_names.iter().any(|refused| refused == name) {
                refused_names.push(name.to_owned());
                errors.push(FieldError {
                    pointer: pointer(name),
                    detail: detail.to_owned(),
                });
            }
        };
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty());
        for pair in pairs {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(name) = percent_decode(raw_name) else {
                errors.push(FieldError {
                    pointer: "/query".to_owned(),
                    detail: "a parameter name is not valid percent-encoded UTF-8".to_owned(),
                });
                continue;
            };
            if name.contains(['$', '[', ']', '{', '}']) {
                refuse(&mut errors, &name, OPERATOR_DETAIL);
                continue;
            }
            let Some(known) = accepted.iter().find(|known| **known == name) else {
                let detail = format!("unknown parameter; accepted: {}", accepted.join(", "));
                refuse(&mut errors, &name, &detail);
                continue;
            };
            let Some(value) = percent_decode(raw_value) else {
                refuse(&mut errors, known, "is not valid percent-encoded UTF-8");
                continue;
            };
            given.push((known, value));
        }
        let mut values = Vec::new();
        for name in accepted {
            let mut occurrences = given.iter().filter(|(given, _)| given == name);
            match (occurrences.next(), occurrences.next()) {
                (Some(_), Some(_)) => refuse(&mut errors, name, "is given more than once"),
                (Some((_, value)), None) if value.is_empty() => refuse(
                    &mut errors,
                    name,
                    "must not be empty; leave the parameter out instead",
                ),
                (Some((_, value)), None) if looks_like_operator(value) => {
                    refuse(&mut errors, name, OPERATOR_DETAIL);
                }
                (Some((_, value)), None) => values.push((*name, value.clone())),
                (None, _) => {}
            }
        }
        Parameters { values, errors }
    }

    /// Whether `name` was given at all (even if refused).
    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(given, _)| *given == name)
            || self
                .errors
                .iter()
                .any(|error| error.pointer == pointer(name))
    }

    /// Parses the value of `name`, if given and not yet refused, recording a refusal.
    fn parse<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (_, value) = self.values.iter().find(|(given, _)| *given == name)?;
        match parse(value) {
            Ok(parsed) => Some(parsed),
            Err(detail) => {
                self.errors.push(field_error(name, &detail));
                None
            }
        }
    }

    fn finish<T>(self, parsed: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(parsed)
        } else {
            Err(self.errors)
        }
    }
}

fn field_error(name: &str, detail: &str) -> FieldError {
    FieldError {
        pointer: pointer(name),
        detail: detail.to_owned(),
    }
}

/// The JSON pointer (RFC 6901) of a query parameter: `/query/<name>`, with `~` and `/` escaped.
fn pointer(name: &str) -> String {
    format!("/query/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// Whether a value is shaped like a MongoDB operator or an operator document.
fn looks_like_operator(value: &str) -> bool {
    let start = value.trim_start();
    start.starts_with('$')
        || start.starts_with('{')
        || value.contains("$where")
        || value.contains("\"$")
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` escapes and `+` for a space. `None`
/// for a malformed escape or text that is not UTF-8 once decoded.
fn percent_decode(text: &str) -> Option<String> {
    fn hex(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|digit| u8::try_from(digit).ok())
    }
    let mut bytes = text.bytes();
    let mut decoded = Vec::with_capacity(text.len());
    while let Some(byte) = bytes.next() {
        decoded.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = hex(bytes.next()?)?;
                let low = hex(bytes.next()?)?;
                (high << 4) | low
            }
            other => other,
        });
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    const REPORT: &str = "0b9a5f3e-2c1d-4e6f-8a7b-9c0d1e2f3a4b";

    fn errors(query: &str) -> Vec<FieldError> {
        parse_list_query(Some(query)).unwrap_err()
    }

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|error| error.pointer.as_str()).collect()
    }

    /// The single error of `query`, checked to point at `pointer`; returns its detail.
    fn single_error(query: &str, pointer: &str) -> String {
        let errors = errors(query);
        assert_eq!(pointers(&errors), [pointer], "{query}: {errors:?}");
        errors[0].detail.clone()
    }

    fn cursor() -> Cursor {
        Cursor {
            taken_at_millis: 1_714_552_200_000,
            report_id: REPORT.to_owned(),
        }
    }

    #[test]
    fn no_query_means_the_defaults() {
        for query in [None, Some(""), Some("&"), Some("&&")] {
            assert_eq!(parse_list_query(query), Ok(ListQuery::default()));
        }
        assert_eq!(ListQuery::default().limit, 20);
        assert_eq!(parse_freshness(None), Ok(Freshness::default()));
    }

    #[test]
    fn every_parameter_is_parsed_into_its_type() {
        let query = format!(
            "limit=50&cursor={}&instrument=blood_pressure&from=2024-05-01T08%3A30%3A00Z\
             &to=2024-05-02T10:30:00%2B02:00&min_lsn=0/16B3748&wait_ms=1500",
            cursor().encode()
        );
        assert_eq!(
            parse_list_query(Some(&query)),
            Ok(ListQuery {
                limit: 50,
                cursor: Some(cursor()),
                instrument: Some(InstrumentType::BloodPressure),
                from: Some(datetime!(2024-05-01 08:30:00 UTC)),
                to: Some(datetime!(2024-05-02 10:30:00 +02:00)),
                freshness: Freshness {
                    min_lsn: Some(0x16B_3748),
                    wait_ms: 1500,
                },
            })
        );
    }

    #[test]
    fn limit_must_be_an_integer_from_1_to_100() {
        for good in ["1", "100", "020"] {
            assert!(
                parse_list_query(Some(&format!("limit={good}"))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "0",
            "101",
            "-1",
            "+5",
            "1.5",
            "ten",
            "%201",
            "99999999999999999999",
        ] {
            let detail = single_error(&format!("limit={bad}"), "/query/limit");
            assert_eq!(detail, "must be an integer from 1 to 100", "{bad}");
        }
    }

    #[test]
    fn wait_ms_must_be_an_integer_up_to_5000() {
        assert_eq!(
            parse_freshness(Some("wait_ms=5000")),
            Ok(Freshness {
                min_lsn: None,
                wait_ms: 5000
            })
        );
        assert_eq!(parse_freshness(Some("wait_ms=0")).unwrap().wait_ms, 0);
        for bad in ["5001", "-1", "1e3", "soon"] {
            let errors = parse_freshness(Some(&format!("wait_ms={bad}"))).unwrap_err();
            assert_eq!(pointers(&errors), ["/query/wait_ms"], "{bad}");
        }
    }

    #[test]
    fn min_lsn_must_be_a_postgresql_lsn() {
        assert_eq!(
            parse_freshness(Some("min_lsn=A%2F0")).unwrap().min_lsn,
            Some(10 << 32)
        );
        for bad in ["16B3748", "0/", "x/1", "1/2/3"] {
            let errors = parse_freshness(Some(&format!("min_lsn={bad}"))).unwrap_err();
            assert_eq!(pointers(&errors), ["/query/min_lsn"], "{bad}");
        }
    }

    #[test]
    fn instrument_must_be_a_catalogue_name() {
        for kind in InstrumentType::ALL {
            let query = format!("instrument={}", kind.as_str());
            assert_eq!(
                parse_list_query(Some(&query)).unwrap().instrument,
                Some(kind)
            );
        }
        let detail = single_error("instrument=Blood_Pressure", "/query/instrument");
        assert!(
            detail.contains("blood_pressure, pulse_oximeter"),
            "{detail}"
        );
    }

    #[test]
    fn from_and_to_must_be_rfc3339_with_an_offset() {
        for bad in [
            "2024-05-01",
            "2024-05-01T08:30:00",
            "yesterday",
            "1714552200",
        ] {
            single_error(&format!("from={bad}"), "/query/from");
            single_error(&format!("to={bad}"), "/query/to");
        }
        let detail = single_error("from=2024-05-01T08:30:00+02:00", "/query/from");
        assert!(
            detail.ends_with("(write + as %2B in a query string)"),
            "{detail}"
        );
    }

    #[test]
    fn from_must_not_be_after_to() {
        let detail = single_error(
            "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
            "/query/from",
        );
        assert_eq!(detail, "must not be after `to`");
        let same = "from=2024-05-01T00:00:00Z&to=2024-05-01T02:00:00%2B02:00";
        assert!(parse_list_query(Some(same)).is_ok());
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let detail = single_error("limt=5", "/query/limt");
        assert!(
            detail.starts_with("unknown parameter; accepted: limit, cursor"),
            "{detail}"
        );
        let errors = parse_freshness(Some("limit=5&a%2Fb~=1")).unwrap_err();
        assert_eq!(pointers(&errors), ["/query/limit", "/query/a~1b~0"]);
    }

    #[test]
    fn repeated_parameters_are_refused_once() {
        let detail = single_error("limit=5&limit=6&limit=7", "/query/limit");
        assert_eq!(detail, "is given more than once");
        single_error("limit=5&limit=5", "/query/limit");
    }

    #[test]
    fn empty_values_are_refused() {
        for query in ["cursor=", "cursor"] {
            let detail = single_error(query, "/query/cursor");
            assert!(detail.starts_with("must not be empty"), "{detail}");
        }
    }

    #[test]
    fn bad_percent_encoding_is_refused() {
        single_error("instrument=%ZZ", "/query/instrument");
        single_error("instrument=%C3%28", "/query/instrument");
        single_error("instrument=ecg%", "/query/instrument");
        let errors = errors("%FF=1");
        assert_eq!(pointers(&errors), ["/query"]);
    }

    #[test]
    fn plus_and_percent_escapes_are_decoded() {
        assert_eq!(percent_decode("a+b%2Bc%20d").as_deref(), Some("a b+c d"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn operator_injection_attempts_are_refused_as_operators() {
        for (query, pointer) in [
            (r#"limit={"$gt":""}"#, "/query/limit"),
            ("limit=%7B%22%24gt%22%3A%22%22%7D", "/query/limit"),
            ("instrument[$ne]=x", "/query/instrument[$ne]"),
            ("instrument%5B%24ne%5D=x", "/query/instrument[$ne]"),
            ("cursor=$where", "/query/cursor"),
            ("cursor=%24where", "/query/cursor"),
            (r#"from={"$gt":""}"#, "/query/from"),
            ("to=+{}", "/query/to"),
            ("instrument=ecg%22%24", "/query/instrument"),
            ("instrument=ecg;$where:1", "/query/instrument"),
            ("$where=1", "/query/$where"),
        ] {
            let detail = single_error(query, pointer);
            assert_eq!(detail, OPERATOR_DETAIL, "{query}");
        }
        let errors = parse_freshness(Some("min_lsn=$gt")).unwrap_err();
        assert_eq!(errors[0].detail, OPERATOR_DETAIL);
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = errors("limit=0&cursor=nope&instrument=x&from=a&to=b&min_lsn=c&wait_ms=d&x=1");
        assert_eq!(
            pointers(&errors),
            [
                "/query/x",
                "/query/limit",
                "/query/cursor",
                "/query/instrument",
                "/query/from",
                "/query/to",
                "/query/min_lsn",
                "/query/wait_ms",
            ]
        );
    }

    #[test]
    fn a_trend_query_needs_a_catalogue_code_and_takes_a_window() {
        let query = parse_trend_query(Some(
            "code=8480-6&since=2024-05-01T00:00:00Z&until=2024-06-01T00:00:00Z&limit=500",
        ))
        .unwrap();
        assert_eq!(query.code.code, "8480-6");
        assert_eq!(query.since, Some(datetime!(2024-05-01 00:00:00 UTC)));
        assert_eq!(query.until, Some(datetime!(2024-06-01 00:00:00 UTC)));
        assert_eq!(query.limit, MAX_TREND_POINTS);
        assert_eq!(
            parse_trend_query(Some("code=8867-4")).unwrap().limit,
            MAX_TREND_POINTS
        );
        let trend_errors = |query: &str| parse_trend_query(Some(query)).unwrap_err();
        assert_eq!(pointers(&trend_errors("")), ["/query/code"]);
        assert_eq!(trend_errors("")[0].detail, CODE_REQUIRED);
        let detail = &trend_errors("code=8480")[0].detail;
        assert!(detail.contains("8480-6, 8462-4"), "{detail}");
        assert_eq!(
            pointers(&trend_errors("code=8480-6&limit=501&instrument=scale")),
            ["/query/instrument", "/query/limit"]
        );
    }

    #[test]
    fn the_problem_is_a_400_listing_every_error() {
        let problem = invalid_query(errors("limit=0&x=1"));
        assert_eq!(problem.status, StatusCode::BAD_REQUEST);
        assert_eq!(problem.detail, "the query string has 2 invalid parameters");
        assert_eq!(pointers(&problem.errors), ["/query/x", "/query/limit"]);
    }

    #[test]
    fn a_cursor_round_trips_through_its_opaque_text() {
        let text = cursor().encode();
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text), Ok(cursor()));
        let negative = Cursor {
            taken_at_millis: -1,
            ..cursor()
        };
        assert_eq!(Cursor::decode(&negative.encode()), Ok(negative));
        let lengths = [0, i64::MIN].map(|taken_at_millis| {
            Cursor {
                taken_at_millis,
                ..cursor()
            }
            .encode()
            .len()
        });
        assert_eq!(lengths, [55, 80], "the bounds the OpenAPI document gives");
    }

    #[test]
    fn cursors_are_decoded_strictly() {
        let encode = |plain: &str| URL_SAFE_NO_PAD.encode(plain);
        for (text, error) in [
            (
                encode(&format!("v2:1:{REPORT}")),
                CursorError::UnknownVersion,
            ),
            (
                encode(&format!("v1:1:{REPORT}:x")),
                CursorError::UnknownVersion,
            ),
            (encode("v1:1"), CursorError::UnknownVersion),
            (encode(&format!("v1:+1:{REPORT}")), CursorError::BadTime),
            (encode(&format!("v1:01:{REPORT}")), CursorError::BadTime),
            (encode(&format!("v1:-0:{REPORT}")), CursorError::BadTime),
            (encode(&format!("v1::{REPORT}")), CursorError::BadTime),
            (encode(&format!("v1:1.5:{REPORT}")), CursorError::BadTime),
            (encode("v1:1:not-a-uuid"), CursorError::BadReportId),
            (
                encode(&format!("v1:1:{}", REPORT.to_uppercase())),
                CursorError::BadReportId,
            ),
            (
                encode(&format!("v1:1:{}", REPORT.replace('-', ""))),
                CursorError::BadReportId,
            ),
            (format!("{}=", cursor().encode()), CursorError::NotBase64),
            ("not base64!".to_owned(), CursorError::NotBase64),
            (URL_SAFE_NO_PAD.encode([0xFF, 0xFE]), CursorError::NotBase64),
            ("A".repeat(200), CursorError::TooLong),
        ] {
            assert_eq!(Cursor::decode(&text), Err(error), "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_cursor_round_trips(millis in any::<i64>(), id in any::<u128>()) {
            let cursor = Cursor {
                taken_at_millis: millis,
                report_id: Uuid::from_u128(id).to_string(),
            };
            let text = cursor.encode();
            prop_assert!(text.len() <= MAX_CURSOR_CHARS);
            // The OpenAPI document describes a cursor by this shape.
            prop_assert!((55..=80).contains(&text.len()), "{}", text);
            prop_assert!(text.starts_with("djE6"), "{}", text);
            prop_assert_eq!(Cursor::decode(&text), Ok(cursor));
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = Cursor::decode(&text);
        }

        #[test]
        fn an_accepted_cursor_is_exactly_its_encoding(bytes in proptest::collection::vec(any::<u8>(), 0..90)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            if let Ok(cursor) = Cursor::decode(&text) {
                prop_assert_eq!(cursor.encode(), text);
            }
        }

        #[test]
        fn decoding_plausible_plain_text_never_panics(
            millis in "[-+0-9]{0,25}",
            id in "[0-9a-fA-F-]{0,40}",
        ) {
            let text = URL_SAFE_NO_PAD.encode(format!("v1:{millis}:{id}"));
            if let Ok(cursor) = Cursor::decode(&text) {
                prop_assert_eq!(cursor.encode(), text);
            }
        }

        #[test]
        fn parsing_arbitrary_query_strings_never_panics(query in "[a-z_$%{}\\[\\]=&+0-9A-F\"]{0,80}") {
            let _ = parse_list_query(Some(&query));
            let _ = parse_freshness(Some(&query));
        }
    }
}
