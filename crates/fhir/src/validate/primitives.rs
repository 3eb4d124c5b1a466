//! Formats of the FHIR R4 primitive types, written by hand after the regular expressions of the
//! specification (no regex engine, no allocation). Each check returns why a value is wrong.

/// Checks a string-valued primitive of type `ty`; `None` if it is well formed.
pub fn check_string(ty: &str, s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("empty strings are not allowed; leave the element out");
    }
    let ok = match ty {
        "string" | "markdown" => return check_text(s),
        "code" => is_code(s),
        "id" => is_id(s),
        "uri" | "url" | "canonical" => !s.chars().any(char::is_whitespace),
        "oid" => s.strip_prefix("urn:oid:").is_some_and(is_oid_body),
        "uuid" => s.strip_prefix("urn:uuid:").is_some_and(is_uuid_body),
        "date" => is_date(s),
        "dateTime" => is_date_time(s),
        "instant" => is_instant(s),
        "time" => is_time(s),
        "base64Binary" => is_base64(s),
        "xhtml" => s.trim_start().starts_with("<div"),
        _ => true,
    };
    if ok {
        None
    } else {
        Some(match ty {
            "code" => "a code has no leading, trailing or repeated whitespace",
            "id" => "an id is 1 to 64 letters, digits, '-' and '.'",
            "uri" | "url" | "canonical" => "a URI has no whitespace",
            "oid" => "an oid is urn:oid: followed by a dotted number such as 2.16.840.1",
            "uuid" => "a uuid is urn:uuid: followed by a lower-case UUID",
            "date" => "a date is YYYY, YYYY-MM or YYYY-MM-DD",
            "dateTime" => "a dateTime is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a time zone",
            "instant" => "an instant is YYYY-MM-DDThh:mm:ss[.fff] with a time zone",
            "time" => "a time is hh:mm:ss[.fff]",
            "base64Binary" => "not valid base64",
            "xhtml" => "narrative XHTML is a <div> element",
            _ => "malformed value",
        })
    }
}

/// The JSON kind a primitive type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Bool,
    /// An integer within the type's range (lowest allowed value).
    Integer(i64),
    Decimal,
    String,
}

pub fn json_kind(ty: &str) -> JsonKind {
    match ty {
        "boolean" => JsonKind::Bool,
        "integer" => JsonKind::Integer(i32::MIN as i64),
        "unsignedInt" => JsonKind::Integer(0),
        "positiveInt" => JsonKind::Integer(1),
        "decimal" => JsonKind::Decimal,
        _ => JsonKind::String,
    }
}

/// The most a string may hold: the specification limits strings to 1 MB.
const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Strings may hold any text but not control characters other than tab, carriage return and line feed.
fn check_text(s: &str) -> Option<&'static str> {
    if s.len() > MAX_STRING_BYTES {
        return Some("a string may hold at most 1 MB");
    }
    if s.chars()
        .any(|c| (c as u32) < 32 && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Some("strings may not contain control characters other than tab, carriage return and line feed");
    }
    if s.trim().is_empty() {
        return Some("a string needs at least one character that is not whitespace");
    }
    None
}

fn is_code(s: &str) -> bool {
    // [^\s]+(\s[^\s]+)*
    let b = s.as_bytes();
    let ws = |c: u8| c.is_ascii_whitespace();
    !ws(b[0])
        && !ws(b[b.len() - 1])
        && !b.windows(2).any(|w| ws(w[0]) && ws(w[1]))
        && !s.contains(['\u{a0}'])
}

pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

fn is_oid_body(s: &str) -> bool {
    // [0-2](\.(0|[1-9][0-9]*))+
    let mut parts = s.split('.');
    let first_ok = matches!(parts.next(), Some("0" | "1" | "2"));
    let mut rest = 0;
    for p in parts {
        if p.is_empty()
            || !p.bytes().all(|c| c.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return false;
        }
        rest += 1;
    }
    first_ok && rest > 0
}

fn is_uuid_body(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

pub fn is_uuid_urn(s: &str) -> bool {
    s.strip_prefix("urn:uuid:").is_some_and(is_uuid_body)
}

pub fn is_oid_urn(s: &str) -> bool {
    s.strip_prefix("urn:oid:").is_some_and(is_oid_body)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses the date part (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) at the start of `b`; returns its length.
fn date_prefix(b: &[u8]) -> Option<usize> {
    let year = digits(b, 0, 4)?;
    if year == 0 {
        return None;
    }
    if b.get(4) != Some(&b'-') {
        return Some(4);
    }
    let month = digits(b, 5, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if b.get(7) != Some(&b'-') {
        return Some(7);
    }
    let day = digits(b, 8, 2)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&day).then_some(10)
}

/// `hh:mm:ss(.f+)?` at the start of `b`; returns its length.
fn time_prefix(b: &[u8]) -> Option<usize> {
    let (h, m, s) = (digits(b, 0, 2)?, digits(b, 3, 2)?, digits(b, 6, 2)?);
    if b[2] != b':' || b[5] != b':' || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut len = 8;
    if b.get(8) == Some(&b'.') {
        let fraction = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction == 0 {
            return None;
        }
        len += 1 + fraction;
    }
    Some(len)
}

/// `Z` or `(+|-)hh:mm` with hh:mm at most 14:00, the whole of `b`.
fn is_zone(b: &[u8]) -> bool {
    match b {
        [b'Z'] => true,
        [b'+' | b'-', ..] if b.len() == 6 => {
            let (Some(h), Some(m)) = (digits(b, 1, 2), digits(b, 4, 2)) else {
                return false;
            };
            b[3] == b':' && m <= 59 && (h < 14 || (h == 14 && m == 0))
        }
        _ => false,
    }
}

fn is_date(s: &str) -> bool {
    date_prefix(s.as_bytes()) == Some(s.len())
}

fn is_time(s: &str) -> bool {
    time_prefix(s.as_bytes()) == Some(s.len())
}

fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    match date_prefix(b) {
        Some(n) if n == b.len() => true,
        Some(10) if b.get(10) == Some(&b'T') => date_time_rest(&b[11..]),
        _ => false,
    }
}

fn date_time_rest(b: &[u8]) -> bool {
    match time_prefix(b) {
        Some(n) => is_zone(&b[n..]),
        None => false,
    }
}

fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    date_prefix(b) == Some(10) && b.get(10) == Some(&b'T') && date_time_rest(&b[11..])
}

fn is_base64(s: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for c in s.bytes() {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => padding += 1,
            c if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' => {
                if padding > 0 {
                    return false;
                }
            }
            _ => return false,
        }
        count += 1;
    }
    count & 3 == 0 && padding <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ty: &str, good: &[&str], bad: &[&str]) {
        for s in good {
            assert_eq!(check_string(ty, s), None, "{ty} {s:?} should be valid");
        }
        for s in bad {
            assert!(
                check_string(ty, s).is_some(),
                "{ty} {s:?} should be invalid"
            );
        }
    }

    #[test]
    fn formats() {
        check(
            "date",
            &["2024", "2024-02", "2024-02-29", "1900-01-01"],
            &[
                "24",
                "2024-13",
                "2023-02-29",
                "2024-1-01",
                "2024-01-01T10:00:00Z",
                "0000",
                "",
            ],
        );
        check(
            "dateTime",
            &[
                "2024",
                "2024-02",
                "2024-02-29",
                "2024-02-29T10:11:12Z",
                "2024-02-29T10:11:12.123+05:30",
                "2015-02-07T13:28:17-05:00",
            ],
            &[
                "2024-02-29T10:11:12",
                "2024-02-29T10:11Z",
                "2024-02-29T24:00:00Z",
                "2024-02-29T10:11:12+15:00",
                "2024-02-29 10:11:12Z",
                "2024-02-29T10:11:12.Z",
            ],
        );
        check(
            "instant",
            &["2024-02-29T10:11:12Z", "2024-02-29T10:11:12.5-14:00"],
            &["2024-02-29", "2024-02-29T10:11:12"],
        );
        check(
            "time",
            &["10:11:12", "23:59:60", "00:00:00.000"],
            &["24:00:00", "10:11", "10:11:12Z"],
        );
        check(
            "id",
            &["a", "A-1.b", &"x".repeat(64)],
            &["a b", "a_b", &"x".repeat(65), "a/b"],
        );
        check(
            "code",
            &["active", "a b", "Text With Space"],
            &[" a", "a ", "a  b", "a\tb\t"],
        );
        check(
            "uri",
            &["http://example.org/a", "urn:x", "#a"],
            &["http://example.org/a b"],
        );
        check(
            "oid",
            &["urn:oid:2.16.840.1.113883", "urn:oid:1.0"],
            &["urn:oid:3.1", "urn:oid:2", "urn:oid:2.01", "2.16.840"],
        );
        check(
            "uuid",
            &["urn:uuid:c757873d-ec9a-4326-a141-556f43239520"],
            &[
                "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
                "c757873d-ec9a-4326-a141-556f43239520",
            ],
        );
        check(
            "base64Binary",
            &["aGVsbG8=", "aGVs bG8h", "ab+/"],
            &["aGVsbG8", "aGVs=bG8", "a$bc", "a==="],
        );
        check(
            "string",
            &["x", " x ", "line\nbreak"],
            &["", "   ", "bell\u{7}"],
        );
        check(
            "xhtml",
            &["<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"],
            &["<p>x</p>"],
        );
    }
}
