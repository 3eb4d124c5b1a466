//! FHIR date, dateTime, instant and time values as the millisecond ranges that date searches compare.

use fhir::search::datetime::{format_instant, parse_range, parse_time_range};

/// `expected` is the range as two instants (inclusive), or `None` for a value that must be rejected.
fn check(input: &str, expected: Option<(&str, &str)>) {
    let got = parse_range(input).map(|(low, high)| (format_instant(low), format_instant(high)));
    let expected = expected.map(|(low, high)| (low.to_string(), high.to_string()));
    assert_eq!(got, expected, "parse_range({input:?})");
}

#[test]
fn ranges_follow_the_written_precision() {
    check(
        "2024",
        Some(("2024-01-01T00:00:00.000Z", "2024-12-31T23:59:59.999Z")),
    );
    check(
        "2024-02",
        Some(("2024-02-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z")),
    );
    check(
        "2023-02",
        Some(("2023-02-01T00:00:00.000Z", "2023-02-28T23:59:59.999Z")),
    );
    check(
        "2024-12",
        Some(("2024-12-01T00:00:00.000Z", "2024-12-31T23:59:59.999Z")),
    );
    check(
        "2024-03-05",
        Some(("2024-03-05T00:00:00.000Z", "2024-03-05T23:59:59.999Z")),
    );
    check(
        "2024-03-05T10:00",
        Some(("2024-03-05T10:00:00.000Z", "2024-03-05T10:00:59.999Z")),
    );
    check(
        "2024-03-05T10:00:07",
        Some(("2024-03-05T10:00:07.000Z", "2024-03-05T10:00:07.999Z")),
    );
    check(
        "2024-03-05T10:00:07Z",
        Some(("2024-03-05T10:00:07.000Z", "2024-03-05T10:00:07.999Z")),
    );
    check(
        "2024-03-05T10:00:07.1Z",
        Some(("2024-03-05T10:00:07.100Z", "2024-03-05T10:00:07.199Z")),
    );
    check(
        "2024-03-05T10:00:07.12Z",
        Some(("2024-03-05T10:00:07.120Z", "2024-03-05T10:00:07.129Z")),
    );
    check(
        "2024-03-05T10:00:07.123Z",
        Some(("2024-03-05T10:00:07.123Z", "2024-03-05T10:00:07.123Z")),
    );
    check(
        "2024-03-05T10:00:07.123456Z",
        Some(("2024-03-05T10:00:07.123Z", "2024-03-05T10:00:07.123Z")),
    );
    check(
        "9999",
        Some(("9999-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z")),
    );
    check(
        "0001-01-01",
        Some(("0001-01-01T00:00:00.000Z", "0001-01-01T23:59:59.999Z")),
    );
    check(
        "1969-12-31T23:59:59.999Z",
        Some(("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z")),
    );
}

#[test]
fn time_zones_shift_to_utc() {
    check(
        "2024-03-05T10:00:00+01:00",
        Some(("2024-03-05T09:00:00.000Z", "2024-03-05T09:00:00.999Z")),
    );
    check(
        "2024-03-05T00:30:00-05:30",
        Some(("2024-03-05T06:00:00.000Z", "2024-03-05T06:00:00.999Z")),
    );
    check(
        "2024-01-01T00:00:00+14:00",
        Some(("2023-12-31T10:00:00.000Z", "2023-12-31T10:00:00.999Z")),
    );
    check(
        "2024-03-05T10:00-00:00",
        Some(("2024-03-05T10:00:00.000Z", "2024-03-05T10:00:59.999Z")),
    );
}

#[test]
fn malformed_values_are_rejected() {
    for bad in [
        "",
        "24",
        "20245",
        "0000",
        "2024-13",
        "2024-00",
        "2024-1",
        "2024-02-30",
        "2023-02-29",
        "2024-04-31",
        "2024-03-05T24:00:00Z",
        "2024-03-05T10:60:00Z",
        "2024-03-05T10:00:61Z",
        "2024-03-05T10",
        "2024-03-05T10:00:00.Z",
        "2024-03-05T10:00:00+15:00",
        "2024-03-05T10:00:00+01:60",
        "2024-03-05T10:00:00+0100",
        "2024-03-05Z",
        "2024Z",
        "2024-03-05 10:00:00",
        "2024-03-05T10:00:00ZZ",
        "abcd",
        "２０２４",
        "2024-03-05T10:00:00.123Z trailing",
    ] {
        check(bad, None);
    }
}

#[test]
fn times_of_day() {
    let cases: [(&str, Option<(i64, i64)>); 7] = [
        ("10:30", Some((37_800_000, 37_859_999))),
        ("10:30:15", Some((37_815_000, 37_815_999))),
        ("10:30:15.5", Some((37_815_500, 37_815_599))),
        ("00:00:00", Some((0, 999))),
        ("24:00:00", None),
        ("10:30:00Z", None),
        ("1030", None),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_time_range(input),
            expected,
            "parse_time_range({input:?})"
        );
    }
}

#[test]
fn instants_format_with_milliseconds_and_stay_valid_at_the_ends() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_709_629_200_123, "2024-03-05T09:00:00.123Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (i64::MIN, "0001-01-01T00:00:00.000Z"),
        (i64::MAX, "9999-12-31T23:59:59.999Z"),
    ];
    for (millis, expected) in cases {
        assert_eq!(format_instant(millis), expected, "format_instant({millis})");
    }
    // What is formatted reads back as the same instant.
    let (low, high) = parse_range("2024-03-05T09:00:00.123Z").expect("valid instant");
    assert_eq!((low, high), (1_709_629_200_123, 1_709_629_200_123));
}
