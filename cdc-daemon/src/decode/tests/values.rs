//! Text output of every supported type, as PostgreSQL 15 prints it with `DateStyle=ISO`.

use time::macros::{date, datetime};
use uuid::Uuid;

use crate::decode::values::{
    BOOL, BPCHAR, DATE, FLOAT4, FLOAT8, INT2, INT4, INT8, JSON, JSONB, NAME, NUMERIC, TEXT,
    TIMESTAMP, TIMESTAMPTZ, UUID, VARCHAR, Value, parse_value,
};

fn parse(oid: u32, text: &str) -> Value {
    parse_value(oid, text.as_bytes()).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

fn rejects(oid: u32, text: &str) {
    assert!(
        parse_value(oid, text.as_bytes()).is_err(),
        "{text:?} parsed as type {oid}"
    );
}

#[test]
fn decode_bool_reads_t_and_f_only() {
    assert_eq!(parse(BOOL, "t"), Value::Bool(true));
    assert_eq!(parse(BOOL, "f"), Value::Bool(false));
    for text in ["true", "T", "", "1"] {
        rejects(BOOL, text);
    }
}

#[test]
fn decode_integers_check_their_width() {
    assert_eq!(parse(INT2, "-32768"), Value::Int(-32_768));
    rejects(INT2, "32768");
    assert_eq!(parse(INT4, "2147483647"), Value::Int(2_147_483_647));
    rejects(INT4, "2147483648");
    assert_eq!(parse(INT8, "-9223372036854775808"), Value::Int(i64::MIN));
    rejects(INT8, "9223372036854775808");
    for text in ["", "1.0", " 1", "1e3", "abc"] {
        rejects(INT4, text);
    }
}

#[test]
fn decode_floats_read_postgres_spellings_of_nan_and_infinity() {
    assert_eq!(parse(FLOAT8, "36.6"), Value::Float(36.6));
    assert_eq!(parse(FLOAT4, "2.71"), Value::Float(2.71));
    assert_eq!(parse(FLOAT8, "1e+20"), Value::Float(1e20));
    assert_eq!(parse(FLOAT8, "-1.5e-07"), Value::Float(-1.5e-7));
    assert_eq!(parse(FLOAT8, "Infinity"), Value::Float(f64::INFINITY));
    assert_eq!(parse(FLOAT4, "-Infinity"), Value::Float(f64::NEG_INFINITY));
    assert!(matches!(parse(FLOAT8, "NaN"), Value::Float(value) if value.is_nan()));
    for text in ["", "inf", "nan", "infinity", "1,5", "0x10"] {
        rejects(FLOAT8, text);
    }
}

#[test]
fn decode_numeric_keeps_the_canonical_text() {
    for text in [
        "36.6",
        "120",
        "-0.001",
        "0.10",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        assert_eq!(parse(NUMERIC, text), Value::Numeric(text.to_owned()));
    }
    for text in ["", "-", "1.", ".5", "1e5", "+1", "1.2.3", "nan", " 1"] {
        rejects(NUMERIC, text);
    }
}

#[test]
fn decode_text_types_keep_text_as_sent() {
    assert_eq!(parse(TEXT, "héllo"), Value::Text("héllo".to_owned()));
    assert_eq!(parse(VARCHAR, ""), Value::Text(String::new()));
    assert_eq!(parse(BPCHAR, "ab  "), Value::Text("ab  ".to_owned()));
    assert_eq!(parse(NAME, "public"), Value::Text("public".to_owned()));
    assert!(parse_value(TEXT, &[0xC3, 0x28]).is_err());
}

#[test]
fn decode_unknown_types_pass_through_as_text() {
    assert_eq!(parse(17, "\\x0102"), Value::Text("\\x0102".to_owned()));
    assert_eq!(
        parse(3220, "0/16B3748"),
        Value::Text("0/16B3748".to_owned())
    );
    assert!(parse_value(17, &[0xFF]).is_err());
}

#[test]
fn decode_uuid() {
    let id = "8f5c7cb4-54a3-4f6b-9f3a-0c1d2e3f4a5b";
    assert_eq!(parse(UUID, id), Value::Uuid(Uuid::parse_str(id).unwrap()));
    rejects(UUID, "8f5c7cb4");
}

#[test]
fn decode_json_and_jsonb_keep_the_text() {
    let text = r#"{"cuff": "adult", "readings": [120, 80]}"#;
    assert_eq!(parse(JSONB, text), Value::Json(text.to_owned()));
    assert_eq!(parse(JSON, "[1, 2]"), Value::Json("[1, 2]".to_owned()));
}

#[test]
fn decode_dates_in_iso_style() {
    assert_eq!(
        parse(DATE, "2024-02-29"),
        Value::Date(date!(2024 - 02 - 29))
    );
    assert_eq!(
        parse(DATE, "0001-01-01"),
        Value::Date(date!(0001 - 01 - 01))
    );
    // 44 BC is astronomical year -43: PostgreSQL's calendar has no year 0.
    assert_eq!(
        parse(DATE, "0044-03-15 BC"),
        Value::Date(date!(-0043 - 03 - 15))
    );
    for text in [
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "24-01-01",
        "2024-01-01 ",
        "2024-01-01 AD",
        "infinity",
        "-infinity",
        "10000-01-01",
        "",
    ] {
        rejects(DATE, text);
    }
}

#[test]
fn decode_timestamps_with_and_without_fractions() {
    assert_eq!(
        parse(TIMESTAMP, "2024-01-02 03:04:05"),
        Value::Timestamp(datetime!(2024-01-02 03:04:05))
    );
    assert_eq!(
        parse(TIMESTAMP, "2024-01-02 03:04:05.123456"),
        Value::Timestamp(datetime!(2024-01-02 03:04:05.123456))
    );
    assert_eq!(
        parse(TIMESTAMP, "2024-01-02 03:04:05.5"),
        Value::Timestamp(datetime!(2024-01-02 03:04:05.5))
    );
    for text in [
        "2024-01-02",
        "2024-01-02T03:04:05",
        "2024-01-02 03:04",
        "2024-01-02 03:04:05.",
        "2024-01-02 24:00:01",
        "2024-01-02 03:04:05+00",
        "infinity",
    ] {
        rejects(TIMESTAMP, text);
    }
}

#[test]
fn decode_timestamptz_with_every_iso_offset_form() {
    let cases = [
        (
            "2024-01-02 03:04:05.123456+00",
            datetime!(2024-01-02 03:04:05.123456 UTC),
        ),
        (
            "2024-01-02 03:04:05+05:30",
            datetime!(2024-01-02 03:04:05 +05:30),
        ),
        (
            "2024-01-02 03:04:05-03",
            datetime!(2024-01-02 03:04:05 -03:00),
        ),
        (
            "1900-01-01 00:00:00-00:17:30",
            datetime!(1900-01-01 00:00:00 -00:17:30),
        ),
        (
            "0044-03-15 12:00:00+00 BC",
            datetime!(-0043-03-15 12:00:00 UTC),
        ),
    ];
    for (text, expected) in cases {
        let Value::TimestampTz(parsed) = parse(TIMESTAMPTZ, text) else {
            panic!("{text:?} is not a timestamptz");
        };
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.offset(), expected.offset(), "{text}");
    }
    for text in [
        "2024-01-02 03:04:05",
        "2024-01-02 03:04:05+",
        "2024-01-02 03:04:05+5",
        "2024-01-02 03:04:05+05:3",
        "2024-01-02 03:04:05+05:30:00:00",
        "2024-01-02 03:04:05 UTC",
        "2024-01-02 03:04:05+99",
        "-infinity",
    ] {
        rejects(TIMESTAMPTZ, text);
    }
}

#[test]
fn decode_value_errors_name_the_type_and_a_bounded_value() {
    let error = parse_value(INT4, b"12x").unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"invalid int4 value "12x": not an int4"#
    );
    assert_eq!(error.type_oid(), INT4);

    let long = "9".repeat(5000);
    let error = parse_value(INT8, long.as_bytes()).unwrap_err();
    assert_eq!(error.value().chars().count(), 101);
    assert!(error.value().ends_with('…'));
    assert!(error.to_string().len() < 200, "{error}");

    let error = parse_value(TEXT, &[b'a', 0xFF, b'b']).unwrap_err();
    assert!(error.to_string().contains("text"), "{error}");
    assert_eq!(error.value(), "a\u{FFFD}b");
}
