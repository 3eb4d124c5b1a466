//! Items seen as FHIRPath system values: the primitive view of a node (by its FHIR type), equality,
//! equivalence and ordering, and the partial-precision arithmetic of dates, dateTimes and times.

use std::cmp::Ordering;

use serde_json::Value;

use crate::{Item, Model};

/// A borrowed, typed view of an item, so comparisons never copy strings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(&'x str),
    Date(&'x str),
    DateTime(&'x str),
    Time(&'x str),
    Quantity(f64, &'x str),
    /// An element with children (compared structurally), or a primitive without a value.
    Complex(&'x Value),
}

pub(crate) fn is_primitive_type(ty: &str) -> bool {
    ty.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

pub(crate) fn is_quantity_type(ty: &str, model: &dyn Model) -> bool {
    matches!(
        ty,
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "MoneyQuantity" | "SimpleQuantity"
    ) || model.is_a(ty, "Quantity")
}

pub(crate) fn prim<'x>(item: &'x Item<'_>, model: &dyn Model) -> Prim<'x> {
    match item {
        Item::Boolean(b) => Prim::Bool(*b),
        Item::Integer(i) => Prim::Int(*i),
        Item::Decimal(d) => Prim::Dec(*d),
        Item::String(s) => Prim::Str(s),
        Item::Date(s) => Prim::Date(s),
        Item::DateTime(s) => Prim::DateTime(s),
        Item::Time(s) => Prim::Time(s),
        Item::Quantity { value, unit } => Prim::Quantity(*value, unit),
        Item::Node { value, ty } => node_prim(value, *ty, model),
    }
}

fn node_prim<'x>(value: &'x Value, ty: Option<&str>, model: &dyn Model) -> Prim<'x> {
    match value {
        Value::Bool(b) => Prim::Bool(*b),
        Value::Number(n) => match (ty, n.as_i64()) {
            (Some("decimal"), _) | (_, None) => Prim::Dec(n.as_f64().unwrap_or(f64::NAN)),
            (_, Some(i)) => Prim::Int(i),
        },
        Value::String(s) => match ty {
            Some("date") => Prim::Date(s),
            Some("dateTime") | Some("instant") => Prim::DateTime(s),
            Some("time") => Prim::Time(s),
            Some("decimal") => s.parse().map(Prim::Dec).unwrap_or(Prim::Str(s)),
            Some("integer") | Some("positiveInt") | Some("unsignedInt") | Some("integer64") => {
                s.parse().map(Prim::Int).unwrap_or(Prim::Str(s))
            }
            _ => Prim::Str(s),
        },
        Value::Object(obj) if ty.is_some_and(|t| is_quantity_type(t, model)) => {
            let Some(v) = obj.get("value").and_then(Value::as_f64) else {
                return Prim::Complex(value);
            };
            let unit = obj
                .get("code")
                .or_else(|| obj.get("unit"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Prim::Quantity(v, unit)
        }
        _ => Prim::Complex(value),
    }
}

/// `=`: `None` when the answer is unknown (dates of different precision).
pub(crate) fn equals(a: Prim, b: Prim) -> Option<bool> {
    Some(match (a, b) {
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Int(x), Prim::Int(y)) => x == y,
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => num_eq(num(a)?, num(b)?),
        (Prim::Str(x), Prim::Str(y)) => x == y,
        (Prim::Date(_) | Prim::DateTime(_), Prim::Date(_) | Prim::DateTime(_))
        | (Prim::Time(_), Prim::Time(_)) => {
            return compare_temporal(a, b).map(|o| o == Ordering::Equal)
        }
        (Prim::Quantity(x, u), Prim::Quantity(y, v)) => match quantity_factor(u, v) {
            Some(f) => num_eq(x * f, y),
            // A calendar year or month and UCUM `a` or `mo` differ in length: unknown.
            None if calendar_equivalent(u, v) => return None,
            None => false,
        },
        (Prim::Complex(x), Prim::Complex(y)) => x == y,
        _ => false,
    })
}

/// `~`: never unknown.
pub(crate) fn equivalent(a: Prim, b: Prim) -> bool {
    match (a, b) {
        (Prim::Str(x), Prim::Str(y)) => normalize(x) == normalize(y),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => match (num(a), num(b)) {
            (Some(x), Some(y)) => {
                let places = decimal_places(x).min(decimal_places(y));
                let scale = 10f64.powi(places as i32);
                (x * scale).round() == (y * scale).round()
            }
            _ => false,
        },
        (Prim::Quantity(x, u), Prim::Quantity(y, v)) => {
            // Compared in the first unit, at the precision of the less precise value.
            let f = quantity_factor(u, v).or_else(|| calendar_equivalent(u, v).then_some(1.0));
            f.is_some_and(|f| equivalent(Prim::Dec(x), Prim::Dec(y / f)))
        }
        (Prim::Complex(x), Prim::Complex(y)) => x == y,
        _ => equals(a, b).unwrap_or(false),
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn decimal_places(x: f64) -> usize {
    let s = format!("{x}");
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

fn num(p: Prim) -> Option<f64> {
    match p {
        Prim::Int(i) => Some(i as f64),
        Prim::Dec(d) => Some(d),
        _ => None,
    }
}

/// Decimals are binary floats here; compare with a tolerance far below any clinical precision so that
/// `0.1 + 0.2 = 0.3` holds.
fn num_eq(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-10 * x.abs().max(y.abs()).max(1.0)
}

/// The factor that turns a value in unit `from` into unit `to`, for equal units and the definite
/// durations where a calendar keyword and its UCUM code mean the same thing.
pub(crate) fn quantity_factor(from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(1.0);
    }
    let canon = |u: &str| match u {
        "week" | "wk" => Some(("s", 604_800_000.0)),
        "day" | "d" => Some(("s", 86_400_000.0)),
        "hour" | "h" => Some(("s", 3_600_000.0)),
        "minute" | "min" => Some(("s", 60_000.0)),
        "second" | "s" => Some(("s", 1000.0)),
        "millisecond" | "ms" => Some(("s", 1.0)),
        "g" => Some(("g", 1000.0)),
        "mg" => Some(("g", 1.0)),
        "kg" => Some(("g", 1_000_000.0)),
        "m" => Some(("m", 1000.0)),
        "cm" => Some(("m", 10.0)),
        "mm" => Some(("m", 1.0)),
        _ => None,
    };
    let (a, fa) = canon(from)?;
    let (b, fb) = canon(to)?;
    (a == b).then_some(fa / fb)
}

fn calendar_equivalent(u: &str, v: &str) -> bool {
    let key = |u: &str| match u {
        "year" | "a" => "year",
        "month" | "mo" => "month",
        _ => "",
    };
    !key(u).is_empty() && key(u) == key(v)
}

/// Ordering for `<`, `>`, `<=`, `>=`: `Err` for values that cannot be compared, `Ok(None)` when the
/// answer is unknown.
pub(crate) fn compare(a: Prim, b: Prim) -> Result<Option<Ordering>, ()> {
    match (a, b) {
        (Prim::Int(x), Prim::Int(y)) => Ok(Some(x.cmp(&y))),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            Ok(num(a).zip(num(b)).and_then(|(x, y)| x.partial_cmp(&y)))
        }
        (Prim::Str(x), Prim::Str(y)) => Ok(Some(x.cmp(y))),
        (Prim::Date(_) | Prim::DateTime(_), Prim::Date(_) | Prim::DateTime(_))
        | (Prim::Time(_), Prim::Time(_)) => Ok(compare_temporal(a, b)),
        (Prim::Quantity(x, u), Prim::Quantity(y, v)) => match quantity_factor(u, v) {
            Some(f) => Ok((x * f).partial_cmp(&y)),
            None => Err(()),
        },
        _ => Err(()),
    }
}

fn compare_temporal(a: Prim, b: Prim) -> Option<Ordering> {
    let parse = |p: Prim| match p {
        Prim::Date(s) | Prim::DateTime(s) => DateTime::parse(s),
        Prim::Time(s) => DateTime::parse_time(s),
        _ => None,
    };
    let (mut x, mut y) = (parse(a)?, parse(b)?);
    // With a time of day, a zone on one side only makes the answer unknown.
    if x.precision > 3 && y.precision > 3 && x.tz.is_some() != y.tz.is_some() {
        return None;
    }
    if let (Some(tx), Some(ty)) = (x.tz, y.tz) {
        if tx != ty && x.precision >= 4 && y.precision >= 4 {
            x = x.shifted_minutes(-i64::from(tx));
            y = y.shifted_minutes(-i64::from(ty));
        }
    }
    let common = x.precision.min(y.precision);
    for i in 0..common {
        match x.parts[i].cmp(&y.parts[i]) {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    // Seconds and milliseconds are one precision: `10:00:00` equals `10:00:00.000`.
    (x.precision == y.precision).then_some(Ordering::Equal)
}

/// A date, dateTime or time split into fields: year, month, day, hour, minute, millisecond-of-minute;
/// `precision` counts the fields given (a time starts at hour, so its first three fields are zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DateTime {
    pub parts: [i64; 6],
    pub precision: usize,
    /// Offset from UTC in minutes, when given.
    pub tz: Option<i32>,
    pub is_time: bool,
    /// Whether milliseconds were written (`10:00:00.000`), so that formatting keeps them.
    pub millis: bool,
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() >= n && s.as_bytes()[..n].iter().all(u8::is_ascii_digit))
        .then(|| s[..n].parse().ok())
        .flatten()
}

impl DateTime {
    pub(crate) fn parse(s: &str) -> Option<DateTime> {
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut parts = [0i64; 6];
        let mut precision = 0;
        let mut rest = date;
        for (i, (n, sep)) in [(4, ""), (2, "-"), (2, "-")].iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            rest = rest.strip_prefix(sep)?;
            parts[i] = digits(rest, *n)?;
            rest = &rest[*n..];
            precision = i + 1;
        }
        if !rest.is_empty() || precision == 0 {
            return None;
        }
        if precision >= 2 && !(1..=12).contains(&parts[1])
            || precision == 3 && !(1..=days_in_month(parts[0], parts[1])).contains(&parts[2])
        {
            return None;
        }
        let mut dt = DateTime {
            parts,
            precision,
            tz: None,
            is_time: false,
            millis: false,
        };
        if let Some(t) = time {
            if precision < 3 && !t.is_empty() {
                return None;
            }
            if !t.is_empty() {
                let (tp, tz) = parse_clock(t)?;
                dt.parts[3..].copy_from_slice(&tp.0);
                dt.precision = 3 + tp.1;
                dt.tz = tz;
                dt.millis = tp.2;
            }
        }
        Some(dt)
    }

    pub(crate) fn parse_time(s: &str) -> Option<DateTime> {
        let (tp, tz) = parse_clock(s)?;
        if tz.is_some() {
            return None;
        }
        let mut parts = [0i64; 6];
        parts[3..].copy_from_slice(&tp.0);
        // Leading date fields are equal for all times, so comparisons start at the hour.
        Some(DateTime {
            parts,
            precision: 3 + tp.1,
            tz: None,
            is_time: true,
            millis: tp.2,
        })
    }

    /// The same instant `minutes` later, at full precision arithmetic over the calendar.
    pub(crate) fn shifted_minutes(self, minutes: i64) -> DateTime {
        let p = self.parts;
        let days = days_from_civil(p[0], p[1].max(1), p[2].max(1));
        let total = days * 1440 + p[3] * 60 + p[4] + minutes;
        let (d, m) = (total.div_euclid(1440), total.rem_euclid(1440));
        let (y, mo, da) = civil_from_days(d);
        DateTime {
            parts: [y, mo, da, m / 60, m % 60, p[5]],
            tz: Some(0),
            ..self
        }
    }

    /// Adds a calendar quantity, truncated to a whole number of its unit (as the FHIRPath tests
    /// expect: `+ 7.7 days` adds 7 days, `+ 0.1 's'` adds nothing); `None` when the unit is not a calendar duration or the result is
    /// out of range.
    pub(crate) fn add(self, amount: f64, unit: &str) -> Option<DateTime> {
        let mut p = self.parts;
        let whole = amount.trunc() as i64;
        match unit {
            "year" | "years" => p[0] += whole,
            "month" | "months" => {
                let m = p[0] * 12 + (p[1] - 1) + whole;
                p[0] = m.div_euclid(12);
                p[1] = m.rem_euclid(12) + 1;
            }
            "week" | "weeks" | "day" | "days" => {
                let days = if unit.starts_with("week") {
                    whole * 7
                } else {
                    whole
                };
                if self.is_time || self.precision < 3 {
                    return None;
                }
                let (y, mo, d) = civil_from_days(days_from_civil(p[0], p[1], p[2]) + days);
                p[0..3].copy_from_slice(&[y, mo, d]);
            }
            "hour" | "hours" | "minute" | "minutes" | "second" | "seconds" | "millisecond"
            | "milliseconds" => {
                let ms = match unit.trim_end_matches('s') {
                    "hour" => whole * 3_600_000,
                    "minute" => whole * 60_000,
                    "second" => whole * 1000,
                    _ => whole,
                };
                let base_days = if self.is_time {
                    0
                } else {
                    days_from_civil(p[0], p[1].max(1), p[2].max(1))
                };
                let total = base_days * 86_400_000 + p[3] * 3_600_000 + p[4] * 60_000 + p[5] + ms;
                let (d, rem) = (total.div_euclid(86_400_000), total.rem_euclid(86_400_000));
                if !self.is_time {
                    let (y, mo, da) = civil_from_days(d);
                    p[0..3].copy_from_slice(&[y, mo, da]);
                }
                p[3] = rem / 3_600_000;
                p[4] = rem / 60_000 % 60;
                p[5] = rem % 60_000;
            }
            _ => return None,
        }
        if !self.is_time && self.precision >= 3 {
            p[2] = p[2].min(days_in_month(p[0], p[1]));
        }
        (1..=9999)
            .contains(&p[0])
            .then_some(DateTime { parts: p, ..self })
    }

    /// Formats the value at its own precision (without the leading `@` or `T`).
    pub(crate) fn format(&self) -> String {
        let p = self.parts;
        let mut s = String::new();
        if !self.is_time {
            s.push_str(&format!("{:04}", p[0]));
            if self.precision >= 2 {
                s.push_str(&format!("-{:02}", p[1]));
            }
            if self.precision >= 3 {
                s.push_str(&format!("-{:02}", p[2]));
            }
            if self.precision > 3 {
                s.push('T');
            }
        }
        if self.precision >= 4 {
            s.push_str(&format!("{:02}", p[3]));
        }
        if self.precision >= 5 {
            s.push_str(&format!(":{:02}", p[4]));
        }
        if self.precision >= 6 {
            s.push_str(&format!(":{:02}", p[5] / 1000));
            if self.millis || p[5] % 1000 != 0 {
                s.push_str(&format!(".{:03}", p[5] % 1000));
            }
        }
        match self.tz {
            Some(0) if self.precision > 3 => s.push('Z'),
            Some(tz) if self.precision > 3 => s.push_str(&format!(
                "{}{:02}:{:02}",
                if tz < 0 { '-' } else { '+' },
                tz.abs() / 60,
                tz.abs() % 60
            )),
            _ => {}
        }
        s
    }
}

/// `hh[:mm[:ss[.fff]]][Z|+hh:mm]`: the fields (hour, minute, millisecond-of-minute), how many were
/// given, and the offset.
#[allow(clippy::type_complexity)]
fn parse_clock(t: &str) -> Option<(([i64; 3], usize, bool), Option<i32>)> {
    let (clock, tz) = if let Some(c) = t.strip_suffix('Z') {
        (c, Some(0))
    } else if let Some(i) = t.rfind(['+', '-']) {
        let off = &t[i + 1..];
        let (h, m) = (digits(off, 2)?, digits(off.get(3..)?, 2)?);
        if off.len() != 5 || &off[2..3] != ":" {
            return None;
        }
        let sign = if t.as_bytes()[i] == b'-' { -1 } else { 1 };
        (&t[..i], Some(sign * (h * 60 + m) as i32))
    } else {
        (t, None)
    };
    let mut f = [0i64; 3];
    let mut n = 0;
    let mut millis = false;
    let mut rest = clock;
    for (i, sep) in ["", ":", ":"].iter().enumerate() {
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(sep)?;
        f[i] = digits(rest, 2)?;
        rest = &rest[2..];
        n = i + 1;
    }
    if n == 0 || f[0] > 23 || f[1] > 59 || f[2] > 59 {
        return None;
    }
    if n == 3 {
        f[2] *= 1000;
        if let Some(frac) = rest.strip_prefix('.') {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let ms: String = frac.chars().chain("000".chars()).take(3).collect();
            f[2] += ms.parse::<i64>().ok()?;
            millis = true;
            rest = "";
        }
    }
    rest.is_empty().then_some(((f, n, millis), tz))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}
