//! FHIR dates, dateTimes and instants as ranges of milliseconds since the Unix epoch (UTC), both ends
//! inclusive, from the precision they are written with.
//!
//! A search for `2024-03` must find `2024-03-17T10:00:00Z`, and an index row for `2024` must overlap a
//! search for `2024-06-01`: both sides become ranges, and the store compares ranges. A value written
//! without a time zone is taken as UTC (the server has no better knowledge of where it was written).

use time::{Date, Month, OffsetDateTime};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// `2024` → the whole year; `2024-03-05T10:00:00+01:00` → that second. `None` if malformed.
///
/// Accepts the FHIR `date`, `dateTime` and `instant` forms, plus the minute precision
/// (`2024-03-05T10:00`) that searches use. A time zone is only allowed after a time.
pub fn parse_range(value: &str) -> Option<(i64, i64)> {
    let b = value.as_bytes();
    let year = digits(b, 0, 4)?;
    if year == 0 {
        return None;
    }
    if b.len() == 4 {
        let low = day_start(year, 1, 1)?;
        let high = day_start(year, 12, 31)? + MS_PER_DAY - 1;
        return Some((low, high));
    }
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if b.len() == 7 {
        let low = day_start(year, month, 1)?;
        let days = Month::try_from(u8::try_from(month).ok()?)
            .ok()?
            .length(i32::try_from(year).ok()?);
        return Some((low, low + i64::from(days) * MS_PER_DAY - 1));
    }
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    let day_ms = day_start(year, month, day)?;
    if b.len() == 10 {
        return Some((day_ms, day_ms + MS_PER_DAY - 1));
    }
    expect(b, 10, b'T')?;
    let (time_low, width, end) = parse_time(b, 11)?;
    let offset = parse_offset(&b[end..])?;
    let low = day_ms + time_low - offset;
    Some((low, low + width - 1))
}

/// A FHIR `time` (`10:30`, `10:30:15`, `10:30:15.5`) as a range of milliseconds since midnight, both ends
/// inclusive. `None` if malformed (no time zone is allowed on a `time`).
pub fn parse_time_range(value: &str) -> Option<(i64, i64)> {
    let b = value.as_bytes();
    let (low, width, end) = parse_time(b, 0)?;
    if end != b.len() {
        return None;
    }
    Some((low, low + width - 1))
}

/// An instant as FHIR writes it: `2024-03-05T09:00:00.123Z`. Values outside the years 0001-9999 (such as
/// the open ends `i64::MIN`/`i64::MAX`) are clamped to them, so the result is always a valid instant.
pub fn format_instant(millis: i64) -> String {
    let min = day_start(1, 1, 1).unwrap_or(i64::MIN);
    let max = day_start(9999, 12, 31).map_or(i64::MAX, |d| d + MS_PER_DAY - 1);
    let millis = millis.clamp(min, max);
    let days = millis.div_euclid(MS_PER_DAY);
    let in_day = millis.rem_euclid(MS_PER_DAY);
    let date = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .unwrap_or(Date::MIN);
    let (year, month, day) = date.to_calendar_date();
    format!(
        "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(month),
        in_day / MS_PER_HOUR,
        in_day % MS_PER_HOUR / MS_PER_MINUTE,
        in_day % MS_PER_MINUTE / MS_PER_SECOND,
        in_day % MS_PER_SECOND,
    )
}

/// The current time in milliseconds since the Unix epoch, for callers that stamp `meta.lastUpdated`.
pub fn now_millis() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// `n` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

/// Milliseconds at the start of a calendar day; `None` for a day that does not exist (Feb 30).
fn day_start(year: i64, month: i64, day: i64) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    Some((i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * MS_PER_DAY)
}

/// `hh:mm[:ss[.fff...]]` at `at`: (milliseconds since midnight, width of the range, end position).
fn parse_time(b: &[u8], at: usize) -> Option<(i64, i64, usize)> {
    let hour = digits(b, at, 2)?;
    expect(b, at + 2, b':')?;
    let minute = digits(b, at + 3, 2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let base = hour * MS_PER_HOUR + minute * MS_PER_MINUTE;
    let mut pos = at + 5;
    if b.get(pos) != Some(&b':') {
        return Some((base, MS_PER_MINUTE, pos));
    }
    let second = digits(b, pos + 1, 2)?;
    // FHIR's regex allows a leap second (`60`); the epoch scale has none, so it folds into second 59.
    if second > 60 {
        return None;
    }
    let base = base + second.min(59) * MS_PER_SECOND;
    pos += 3;
    if b.get(pos) != Some(&b'.') {
        return Some((base, MS_PER_SECOND, pos));
    }
    pos += 1;
    let start = pos;
    let mut fraction = 0i64;
    while let Some(c) = b.get(pos).filter(|c| c.is_ascii_digit()) {
        if pos - start < 3 {
            fraction = fraction * 10 + i64::from(c - b'0');
        }
        pos += 1;
    }
    let n = pos - start;
    if n == 0 {
        return None;
    }
    let (ms, width) = match n {
        1 => (fraction * 100, 100),
        2 => (fraction * 10, 10),
        _ => (fraction, 1),
    };
    Some((base + ms, width, pos))
}

/// A time zone (`Z`, `+hh:mm`, `-hh:mm`, or nothing for UTC) as milliseconds east of UTC.
fn parse_offset(b: &[u8]) -> Option<i64> {
    match b {
        [] | [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), ..] if b.len() == 6 => {
            let hours = digits(b, 1, 2)?;
            expect(b, 3, b':')?;
            let minutes = digits(b, 4, 2)?;
            if minutes > 59 || hours > 14 || (hours == 14 && minutes > 0) {
                return None;
            }
            let offset = hours * MS_PER_HOUR + minutes * MS_PER_MINUTE;
            Some(if *sign == b'-' { -offset } else { offset })
        }
        _ => None,
    }
}
