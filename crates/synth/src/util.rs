//! Small deterministic helpers: calendar arithmetic (no clock is ever read), UUIDs and NPIs drawn from
//! the generator's random stream, and FHIR datatype builders shared by the directory and the patients.

use fastrand::Rng;
use serde_json::{json, Value};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// The generator's "today" (2025-06-30): fixed so that the same seed gives the same data on any day.
pub const TODAY: i64 = days_from_civil(2025, 6, 30) * DAY;

/// Mixes two numbers into a well-spread seed (SplitMix64's finaliser), so that neighbouring patient
/// indices get unrelated random streams.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A FHIR `date` (`YYYY-MM-DD`) for a time in seconds since the epoch.
pub fn date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A FHIR `dateTime`/`instant` in UTC for a time in seconds since the epoch.
pub fn date_time(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let s = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A random (version 4 shaped) UUID from the generator's stream.
pub fn uuid(rng: &mut Rng) -> String {
    let hi = rng.u64(..);
    let lo = rng.u64(..);
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// A ten-digit NPI that passes the standard check (Luhn over `80840` and the first nine digits); the
/// first digit is 1 for a person and 2 for an organization, as CMS issues them.
pub fn npi(rng: &mut Rng, organization: bool) -> String {
    let mut digits = vec![if organization { 2 } else { 1 }];
    for _ in 0..8 {
        digits.push(rng.u32(0..10));
    }
    // Luhn: double every other digit from the right of the payload that the check digit will follow;
    // the constant prefix 80840 contributes 24.
    let mut sum = 24;
    for (i, d) in digits.iter().rev().enumerate() {
        let v = if i % 2 == 0 { d * 2 } else { *d };
        sum += v / 10 + v % 10;
    }
    digits.push((10 - sum % 10) % 10);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect()
}

/// Picks one item of a non-empty table.
pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// A uniform draw in `[low, high]` rounded to `decimals` places.
pub fn between(rng: &mut Rng, low: f64, high: f64, decimals: u32) -> f64 {
    round(low + rng.f64() * (high - low), decimals)
}

pub fn round(value: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

/// A CodeableConcept with one coding and the display as text.
pub fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }], "text": display })
}

/// A CodeableConcept with one coding, no text (for status-like codes).
pub fn coded(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

/// A phone number in the 555-01xx range, which North American numbering reserves for fiction.
pub fn phone(rng: &mut Rng, area: &str) -> String {
    format!("{area}-555-01{:02}", rng.u32(0..100))
}

/// A made-up street address in a city of the table.
pub fn address(rng: &mut Rng, city: &(&str, &str, &str, &str), kind: &str) -> Value {
    use crate::codes::{STREETS, STREET_KINDS};
    let line = format!(
        "{} {} {}",
        rng.u32(1..9999),
        pick(rng, STREETS),
        pick(rng, STREET_KINDS)
    );
    json!({
        "use": kind,
        "line": [line],
        "city": city.0,
        "state": city.1,
        "postalCode": format!("{}{:02}", city.2, rng.u32(1..100)),
        "country": "US"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (2000, 2, 29, 11_016),
            (2025, 6, 30, 20_269),
        ] {
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(civil_from_days(days), (y, m, d));
        }
        for days in -40_000..40_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_time(TODAY + 3_661), "2025-06-30T01:01:01Z");
    }

    #[test]
    fn npis_pass_the_check_digit() {
        // A published example NPI from CMS's check-digit guidance.
        fn valid(npi: &str) -> bool {
            let digits: Vec<u32> = npi.chars().filter_map(|c| c.to_digit(10)).collect();
            let mut sum = 24;
            for (i, d) in digits.iter().rev().enumerate() {
                let v = if i % 2 == 1 { d * 2 } else { *d };
                sum += v / 10 + v % 10;
            }
            digits.len() == 10 && sum % 10 == 0
        }
        assert!(valid("1234567893"));
        let mut rng = Rng::with_seed(7);
        for _ in 0..1000 {
            let n = npi(&mut rng, false);
            assert!(valid(&n), "{n}");
        }
    }

    #[test]
    fn uuids_are_well_formed() {
        let mut rng = Rng::with_seed(1);
        let u = uuid(&mut rng);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
