//! The FHIRPath functions this engine supports: their names and arities (checked at parse time) and
//! their evaluation.

use regex::Regex;
use serde_json::Value;

use crate::ast::{BinOp, Expr};
use crate::eval::{Evaluator, Items, Res, Scope, NULL};
use crate::value::{compare, is_primitive_type, prim, DateTime, Prim};
use crate::{EvalError, Item};

macro_rules! funcs {
    ($($variant:ident = $name:literal ($min:literal, $max:literal),)*) => {
        /// A supported function, resolved from its name at parse time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant,)* }

        impl Func {
            pub(crate) fn from_name(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }

            /// The least and the most arguments it takes.
            pub(crate) fn arity(self) -> (usize, usize) {
                match self { $(Func::$variant => ($min, $max),)* }
            }
        }

        /// The names of every supported function (besides `is`, `as` and `ofType`).
        pub const SUPPORTED_FUNCTIONS: &[&str] = &[$($name,)* "is", "as", "ofType"];
    };
}

funcs! {
    Empty = "empty"(0, 0),
    Exists = "exists"(0, 1),
    All = "all"(1, 1),
    AllTrue = "allTrue"(0, 0),
    AnyTrue = "anyTrue"(0, 0),
    AllFalse = "allFalse"(0, 0),
    AnyFalse = "anyFalse"(0, 0),
    SubsetOf = "subsetOf"(1, 1),
    SupersetOf = "supersetOf"(1, 1),
    Count = "count"(0, 0),
    Distinct = "distinct"(0, 0),
    IsDistinct = "isDistinct"(0, 0),
    Where = "where"(1, 1),
    Sort = "sort"(0, 16),
    Select = "select"(1, 1),
    Repeat = "repeat"(1, 1),
    Single = "single"(0, 0),
    First = "first"(0, 0),
    Last = "last"(0, 0),
    Tail = "tail"(0, 0),
    Skip = "skip"(1, 1),
    Take = "take"(1, 1),
    Intersect = "intersect"(1, 1),
    Exclude = "exclude"(1, 1),
    Union = "union"(1, 1),
    Combine = "combine"(1, 1),
    Iif = "iif"(2, 3),
    ToBoolean = "toBoolean"(0, 0),
    ConvertsToBoolean = "convertsToBoolean"(0, 0),
    ToInteger = "toInteger"(0, 0),
    ConvertsToInteger = "convertsToInteger"(0, 0),
    ToDecimal = "toDecimal"(0, 0),
    ConvertsToDecimal = "convertsToDecimal"(0, 0),
    ToStringFn = "toString"(0, 0),
    ConvertsToString = "convertsToString"(0, 0),
    ToDate = "toDate"(0, 0),
    ConvertsToDate = "convertsToDate"(0, 0),
    ToDateTime = "toDateTime"(0, 0),
    ConvertsToDateTime = "convertsToDateTime"(0, 0),
    ToTime = "toTime"(0, 0),
    ConvertsToTime = "convertsToTime"(0, 0),
    ToQuantity = "toQuantity"(0, 1),
    ConvertsToQuantity = "convertsToQuantity"(0, 1),
    IndexOf = "indexOf"(1, 1),
    Substring = "substring"(1, 2),
    StartsWith = "startsWith"(1, 1),
    EndsWith = "endsWith"(1, 1),
    Contains = "contains"(1, 1),
    Upper = "upper"(0, 0),
    Lower = "lower"(0, 0),
    Replace = "replace"(2, 2),
    Matches = "matches"(1, 1),
    MatchesFull = "matchesFull"(1, 1),
    ReplaceMatches = "replaceMatches"(2, 2),
    Length = "length"(0, 0),
    ToChars = "toChars"(0, 0),
    Trim = "trim"(0, 0),
    Split = "split"(1, 1),
    Join = "join"(0, 1),
    Encode = "encode"(1, 1),
    Decode = "decode"(1, 1),
    Escape = "escape"(1, 1),
    Unescape = "unescape"(1, 1),
    Abs = "abs"(0, 0),
    Ceiling = "ceiling"(0, 0),
    Exp = "exp"(0, 0),
    Floor = "floor"(0, 0),
    Ln = "ln"(0, 0),
    Log = "log"(1, 1),
    Power = "power"(1, 1),
    Round = "round"(0, 1),
    Sqrt = "sqrt"(0, 0),
    Truncate = "truncate"(0, 0),
    Children = "children"(0, 0),
    Descendants = "descendants"(0, 0),
    Trace = "trace"(1, 2),
    Not = "not"(0, 0),
    Aggregate = "aggregate"(1, 2),
    Extension = "extension"(1, 1),
    HasValue = "hasValue"(0, 0),
    Resolve = "resolve"(0, 0),
}

impl Func {
    pub(crate) fn takes_regex(self) -> bool {
        matches!(
            self,
            Func::Matches | Func::MatchesFull | Func::ReplaceMatches
        )
    }
}

pub(crate) fn compile_regex(func: Func, pattern: &str) -> Result<Regex, EvalError> {
    // `.` matches newlines in FHIRPath; matchesFull must match the whole string.
    let source = if func == Func::MatchesFull {
        format!("(?s)^(?:{pattern})$")
    } else {
        format!("(?s){pattern}")
    };
    Regex::new(&source).map_err(|e| EvalError(format!("invalid regular expression: {e}")))
}

/// `sort(key, -key, ...)` (FHIRPath 2.1): by each key in turn, evaluated on every item, descending where
/// the key is negated; items themselves when no key is given. An empty key sorts after every value (so
/// first when descending), as the FHIRPath test suite expects.
fn sort<'a>(
    ev: &Evaluator<'a, '_>,
    input: &[Item<'a>],
    args: &[Expr],
    scope: Scope<'_, 'a>,
) -> Res<'a> {
    let keys: Vec<(&Expr, bool)> = args
        .iter()
        .map(|a| match a {
            Expr::Negate(inner) => (&**inner, true),
            other => (other, false),
        })
        .collect();
    let mut keyed: Vec<(Vec<Option<Item<'a>>>, Item<'a>)> = Vec::with_capacity(input.len());
    for (i, item) in input.iter().enumerate() {
        let mut values = Vec::with_capacity(keys.len().max(1));
        if keys.is_empty() {
            values.push(Some(item.clone()));
        }
        for (key, _) in &keys {
            let this = std::slice::from_ref(item);
            let found = ev.eval(
                key,
                Scope {
                    this,
                    index: Some(i),
                    total: scope.total,
                },
            )?;
            values.push(ev.single(&found, "a sort key")?.cloned());
        }
        keyed.push((values, item.clone()));
    }
    let mut incomparable = false;
    keyed.sort_by(|(a, _), (b, _)| {
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            let order = match (x, y) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => match compare(prim(x, ev.model), prim(y, ev.model)) {
                    Ok(Some(o)) => o,
                    _ => {
                        incomparable = true;
                        std::cmp::Ordering::Equal
                    }
                },
            };
            let descending = keys.get(k).is_some_and(|(_, d)| *d);
            let order = if descending { order.reverse() } else { order };
            if order.is_ne() {
                return order;
            }
        }
        std::cmp::Ordering::Equal
    });
    if incomparable {
        return err("sort() keys must be comparable values of one kind");
    }
    Ok(keyed.into_iter().map(|(_, item)| item).collect())
}

fn err<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(message.into()))
}

fn boolean<'a>(b: bool) -> Res<'a> {
    Ok(vec![Item::Boolean(b)])
}

pub(crate) fn call<'a>(
    ev: &Evaluator<'a, '_>,
    func: Func,
    input: &[Item<'a>],
    args: &[Expr],
    regex: Option<&Regex>,
    scope: Scope<'_, 'a>,
) -> Res<'a> {
    let m = ev.model;
    // Arguments that are not evaluated per item are evaluated in the caller's scope.
    let arg = |i: usize| -> Res<'a> { args.get(i).map_or(Ok(Vec::new()), |a| ev.eval(a, scope)) };
    // Evaluates argument `i` with each input item as `$this`.
    let per_item = |i: usize, item: &Item<'a>, index: usize| -> Res<'a> {
        let this = std::slice::from_ref(item);
        match args.get(i) {
            Some(a) => ev.eval(
                a,
                Scope {
                    this,
                    index: Some(index),
                    total: scope.total,
                },
            ),
            None => Ok(Vec::new()),
        }
    };
    match func {
        Func::Empty => boolean(input.is_empty()),
        Func::Exists => {
            if args.is_empty() {
                return boolean(!input.is_empty());
            }
            for (i, item) in input.iter().enumerate() {
                if ev.boolean(&per_item(0, item, i)?)? == Some(true) {
                    return boolean(true);
                }
            }
            boolean(false)
        }
        Func::All => {
            for (i, item) in input.iter().enumerate() {
                if ev.boolean(&per_item(0, item, i)?)? != Some(true) {
                    return boolean(false);
                }
            }
            boolean(true)
        }
        Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
            let mut values = Vec::with_capacity(input.len());
            for item in input {
                match prim(item, m) {
                    Prim::Bool(b) => values.push(b),
                    _ => return err("allTrue/anyTrue/allFalse/anyFalse need booleans"),
                }
            }
            boolean(match func {
                Func::AllTrue => values.iter().all(|b| *b),
                Func::AnyTrue => values.iter().any(|b| *b),
                Func::AllFalse => values.iter().all(|b| !*b),
                _ => values.iter().any(|b| !*b),
            })
        }
        Func::SubsetOf => {
            let other = arg(0)?;
            boolean(input.iter().all(|i| ev.contains(&other, i)))
        }
        Func::SupersetOf => {
            let other = arg(0)?;
            boolean(other.iter().all(|i| ev.contains(input, i)))
        }
        Func::Count => Ok(vec![Item::Integer(input.len() as i64)]),
        Func::Distinct => Ok(distinct(ev, input.iter().cloned())),
        Func::Sort => sort(ev, input, args, scope),
        Func::IsDistinct => boolean(distinct(ev, input.iter().cloned()).len() == input.len()),
        Func::Where => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                if ev.boolean(&per_item(0, item, i)?)? == Some(true) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        Func::Select => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(per_item(0, item, i)?);
            }
            Ok(out)
        }
        Func::Repeat => {
            let mut out: Items<'a> = Vec::new();
            let mut frontier: Items<'a> = input.to_vec();
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for (i, item) in frontier.iter().enumerate() {
                    for found in per_item(0, item, i)? {
                        if !ev.contains(&out, &found) {
                            out.push(found.clone());
                            next.push(found);
                        }
                    }
                }
                frontier = next;
            }
            Ok(out)
        }
        Func::Single => match input {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![one.clone()]),
            _ => err("single() on a collection of more than one item"),
        },
        Func::First => Ok(input.first().cloned().into_iter().collect()),
        Func::Last => Ok(input.last().cloned().into_iter().collect()),
        Func::Tail => Ok(input.iter().skip(1).cloned().collect()),
        Func::Skip | Func::Take => {
            let n = arg(0)?;
            let Some(n) = ev.single(&n, "skip/take")? else {
                return Ok(Vec::new());
            };
            let n = ev
                .integer(n)
                .ok_or_else(|| EvalError("skip/take need an integer".into()))?;
            let n = n.max(0) as usize;
            Ok(if func == Func::Skip {
                input.iter().skip(n).cloned().collect()
            } else {
                input.iter().take(n).cloned().collect()
            })
        }
        Func::Intersect => {
            let other = arg(0)?;
            Ok(distinct(
                ev,
                input.iter().filter(|i| ev.contains(&other, i)).cloned(),
            ))
        }
        Func::Exclude => {
            let other = arg(0)?;
            Ok(input
                .iter()
                .filter(|i| !ev.contains(&other, i))
                .cloned()
                .collect())
        }
        Func::Union => ev.apply(BinOp::Union, input.to_vec(), arg(0)?),
        Func::Combine => {
            let mut out = input.to_vec();
            out.extend(arg(0)?);
            Ok(out)
        }
        Func::Iif => {
            if input.len() > 1 {
                return err("iif() on a collection of more than one item");
            }
            let inner = Scope {
                this: input,
                index: scope.index,
                total: scope.total,
            };
            let criterion = ev.eval(&args[0], inner)?;
            let chosen = match (criterion.as_slice(), &criterion.first().map(|c| prim(c, m))) {
                ([_], Some(Prim::Bool(b))) => *b,
                ([], _) => false,
                _ => return err("iif() criterion must be a single boolean"),
            };
            match (chosen, args.get(2)) {
                (true, _) => ev.eval(&args[1], inner),
                (false, Some(e)) => ev.eval(e, inner),
                (false, None) => Ok(Vec::new()),
            }
        }
        Func::ToBoolean | Func::ConvertsToBoolean => convert(ev, func, input, to_boolean),
        Func::ToInteger | Func::ConvertsToInteger => convert(ev, func, input, to_integer),
        Func::ToDecimal | Func::ConvertsToDecimal => convert(ev, func, input, to_decimal),
        Func::ToStringFn | Func::ConvertsToString => convert(ev, func, input, to_string),
        Func::ToDate | Func::ConvertsToDate => convert(ev, func, input, to_date),
        Func::ToDateTime | Func::ConvertsToDateTime => convert(ev, func, input, to_datetime),
        Func::ToTime | Func::ConvertsToTime => convert(ev, func, input, to_time),
        Func::ToQuantity | Func::ConvertsToQuantity => {
            let unit = arg(0)?;
            let unit = match ev.single(&unit, "toQuantity")? {
                Some(u) => Some(
                    ev.string(u)
                        .ok_or_else(|| EvalError("toQuantity() needs a unit string".into()))?,
                ),
                None => None,
            };
            let Some(item) = ev.single(input, "toQuantity")? else {
                return Ok(Vec::new());
            };
            let q = to_quantity(prim(item, m)).filter(|q| match (&unit, q) {
                (None, _) => true,
                (Some(u), Item::Quantity { unit: have, .. }) => u == have,
                _ => false,
            });
            Ok(if func == Func::ToQuantity {
                q.into_iter().collect()
            } else {
                vec![Item::Boolean(q.is_some())]
            })
        }
        Func::IndexOf
        | Func::Substring
        | Func::StartsWith
        | Func::EndsWith
        | Func::Contains
        | Func::Upper
        | Func::Lower
        | Func::Replace
        | Func::Matches
        | Func::MatchesFull
        | Func::ReplaceMatches
        | Func::Length
        | Func::ToChars
        | Func::Trim
        | Func::Split
        | Func::Encode
        | Func::Decode
        | Func::Escape
        | Func::Unescape => {
            let Some(item) = ev.single(input, "a string function")? else {
                return Ok(Vec::new());
            };
            let Some(s) = ev.str(item) else {
                return err("string functions need a string");
            };
            string_function(ev, func, s, &arg, regex)
        }
        Func::Join => {
            let sep = arg(0)?;
            let sep = match ev.single(&sep, "join")? {
                Some(s) => ev.string(s).unwrap_or_default(),
                None => String::new(),
            };
            let mut parts = Vec::with_capacity(input.len());
            for item in input {
                parts.push(
                    ev.str(item)
                        .ok_or_else(|| EvalError("join() needs strings".into()))?,
                );
            }
            Ok(vec![Item::String(parts.join(&sep))])
        }
        Func::Abs
        | Func::Ceiling
        | Func::Exp
        | Func::Floor
        | Func::Ln
        | Func::Log
        | Func::Power
        | Func::Round
        | Func::Sqrt
        | Func::Truncate => {
            let Some(item) = ev.single(input, "a math function")? else {
                return Ok(Vec::new());
            };
            math(ev, func, prim(item, m), &arg)
        }
        Func::Children | Func::Descendants => {
            let mut out = Vec::new();
            for item in input {
                ev.all_children(item, &mut out);
            }
            if func == Func::Descendants {
                let mut i = 0;
                while i < out.len() {
                    let item = out[i].clone();
                    ev.all_children(&item, &mut out);
                    i += 1;
                }
            }
            Ok(out)
        }
        Func::Trace => Ok(input.to_vec()),
        Func::Not => match input {
            [] => Ok(Vec::new()),
            [item] => match prim(item, m) {
                Prim::Bool(b) => boolean(!b),
                // Singleton evaluation: one item that is not a boolean counts as true.
                _ => boolean(false),
            },
            _ => err("not() on a collection of more than one item"),
        },
        Func::Aggregate => {
            let mut total = arg(1)?;
            for (i, item) in input.iter().enumerate() {
                let this = std::slice::from_ref(item);
                total = ev.eval(
                    &args[0],
                    Scope {
                        this,
                        index: Some(i),
                        total: Some(&total),
                    },
                )?;
            }
            Ok(total)
        }
        Func::Extension => {
            let url = arg(0)?;
            let Some(url) = ev.single(&url, "extension")? else {
                return Ok(Vec::new());
            };
            let url = ev
                .string(url)
                .ok_or_else(|| EvalError("extension() needs a url string".into()))?;
            let mut extensions = Vec::new();
            for item in input {
                ev.children_named(item, "extension", &mut extensions);
            }
            Ok(extensions
                .into_iter()
                .filter(|e| matches!(e, Item::Node { value, .. } if value.get("url").and_then(Value::as_str) == Some(&url)))
                .collect())
        }
        Func::HasValue => boolean(match input {
            [Item::Node { value, ty }] => {
                !matches!(value, Value::Object(_) | Value::Array(_) | Value::Null)
                    && ty.is_none_or(is_primitive_type)
            }
            [_] => true,
            _ => false,
        }),
        Func::Resolve => Ok(input.iter().filter_map(|i| resolve(ev, i)).collect()),
    }
}

fn distinct<'a>(ev: &Evaluator<'a, '_>, items: impl Iterator<Item = Item<'a>>) -> Items<'a> {
    let mut out = Vec::new();
    for item in items {
        if !ev.contains(&out, &item) {
            out.push(item);
        }
    }
    out
}

/// `toX()` gives the converted value or nothing; `convertsToX()` says whether it would work.
fn convert<'a>(
    ev: &Evaluator<'a, '_>,
    func: Func,
    input: &[Item<'a>],
    f: impl Fn(Prim) -> Option<Item<'a>>,
) -> Res<'a> {
    let Some(item) = ev.single(input, "a conversion function")? else {
        return Ok(Vec::new());
    };
    let converted = f(prim(item, ev.model));
    let test_only = matches!(
        func,
        Func::ConvertsToBoolean
            | Func::ConvertsToInteger
            | Func::ConvertsToDecimal
            | Func::ConvertsToString
            | Func::ConvertsToDate
            | Func::ConvertsToDateTime
            | Func::ConvertsToTime
    );
    Ok(if test_only {
        vec![Item::Boolean(converted.is_some())]
    } else {
        converted.into_iter().collect()
    })
}

fn to_boolean<'a>(p: Prim) -> Option<Item<'a>> {
    Some(Item::Boolean(match p {
        Prim::Bool(b) => b,
        Prim::Int(1) => true,
        Prim::Int(0) => false,
        Prim::Dec(1.0) => true,
        Prim::Dec(0.0) => false,
        Prim::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => true,
            "false" | "f" | "no" | "n" | "0" | "0.0" => false,
            _ => return None,
        },
        _ => return None,
    }))
}

fn to_integer<'a>(p: Prim) -> Option<Item<'a>> {
    Some(Item::Integer(match p {
        Prim::Int(i) => i,
        Prim::Bool(b) => i64::from(b),
        Prim::Str(s) => {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()?
        }
        _ => return None,
    }))
}

fn to_decimal<'a>(p: Prim) -> Option<Item<'a>> {
    Some(Item::Decimal(match p {
        Prim::Int(i) => i as f64,
        Prim::Dec(d) => d,
        Prim::Bool(b) => f64::from(u8::from(b)),
        Prim::Str(s) => {
            let body = s.strip_prefix(['+', '-']).unwrap_or(s);
            let (whole, frac) = body.split_once('.').unwrap_or((body, "0"));
            let ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if !ok(whole) || !ok(frac) {
                return None;
            }
            s.parse().ok()?
        }
        _ => return None,
    }))
}

pub(crate) fn format_decimal(d: f64) -> String {
    let s = format!("{d}");
    if s.contains(['.', 'e', 'N', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn format_quantity(v: f64, unit: &str) -> String {
    let number = if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format_decimal(v)
    };
    if crate::parser::calendar_unit(unit) == Some(unit) {
        format!("{number} {unit}")
    } else {
        format!("{number} '{unit}'")
    }
}

fn to_string<'a>(p: Prim) -> Option<Item<'a>> {
    Some(Item::String(match p {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => format_decimal(d),
        Prim::Str(s) | Prim::Date(s) | Prim::DateTime(s) | Prim::Time(s) => s.to_string(),
        Prim::Quantity(v, u) => format_quantity(v, u),
        Prim::Complex(_) => return None,
    }))
}

fn to_date<'a>(p: Prim) -> Option<Item<'a>> {
    match p {
        Prim::Str(s) | Prim::Date(s) | Prim::DateTime(s) => {
            let mut dt = DateTime::parse(s)?;
            dt.precision = dt.precision.min(3);
            dt.tz = None;
            Some(Item::Date(dt.format()))
        }
        _ => None,
    }
}

fn to_datetime<'a>(p: Prim) -> Option<Item<'a>> {
    match p {
        Prim::Str(s) | Prim::Date(s) | Prim::DateTime(s) => {
            DateTime::parse(s).map(|_| Item::DateTime(s.to_string()))
        }
        _ => None,
    }
}

fn to_time<'a>(p: Prim) -> Option<Item<'a>> {
    match p {
        Prim::Str(s) | Prim::Time(s) => DateTime::parse_time(s).map(|_| Item::Time(s.to_string())),
        _ => None,
    }
}

fn to_quantity<'a>(p: Prim) -> Option<Item<'a>> {
    let (value, unit) = match p {
        Prim::Int(i) => (i as f64, "1".to_string()),
        Prim::Dec(d) => (d, "1".to_string()),
        Prim::Quantity(v, u) => (v, u.to_string()),
        Prim::Bool(b) => (f64::from(u8::from(b)), "1".to_string()),
        Prim::Str(s) => {
            let s = s.trim();
            let (num, rest) = s.split_once(' ').unwrap_or((s, ""));
            let to_dec = |t: &str| match to_decimal(Prim::Str(t)) {
                Some(Item::Decimal(d)) => Some(d),
                _ => None,
            };
            let value = to_dec(num)?;
            let rest = rest.trim();
            let unit = if rest.is_empty() {
                "1".to_string()
            } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                u.to_string()
            } else {
                crate::parser::calendar_unit(rest)?.to_string()
            };
            (value, unit)
        }
        _ => return None,
    };
    Some(Item::Quantity { value, unit })
}

fn string_function<'a>(
    ev: &Evaluator<'a, '_>,
    func: Func,
    s: &str,
    arg: &dyn Fn(usize) -> Res<'a>,
    regex: Option<&Regex>,
) -> Res<'a> {
    // A string argument; `None` when it is empty (the result is then empty).
    let text = |i: usize| -> Result<Option<String>, EvalError> {
        let v = arg(i)?;
        match ev.single(&v, "a string argument")? {
            None => Ok(None),
            Some(item) => ev
                .string(item)
                .map(Some)
                .ok_or_else(|| EvalError("expected a string argument".into())),
        }
    };
    let int = |i: usize| -> Result<Option<i64>, EvalError> {
        let v = arg(i)?;
        match ev.single(&v, "an integer argument")? {
            None => Ok(None),
            Some(item) => ev
                .integer(item)
                .map(Some)
                .ok_or_else(|| EvalError("expected an integer argument".into())),
        }
    };
    let pattern = |i: usize| -> Result<Option<std::borrow::Cow<'_, Regex>>, EvalError> {
        if let Some(r) = regex {
            return Ok(Some(std::borrow::Cow::Borrowed(r)));
        }
        Ok(match text(i)? {
            Some(p) => Some(std::borrow::Cow::Owned(compile_regex(func, &p)?)),
            None => None,
        })
    };
    let chars: Vec<char>;
    let out = match func {
        Func::IndexOf => match text(0)? {
            None => return Ok(Vec::new()),
            Some(sub) => Item::Integer(s.find(&sub).map_or(-1, |b| s[..b].chars().count() as i64)),
        },
        Func::Substring => {
            chars = s.chars().collect();
            let Some(start) = int(0)? else {
                return Ok(Vec::new());
            };
            if start < 0 || start as usize >= chars.len() {
                return Ok(Vec::new());
            }
            let start = start as usize;
            let len = match int(1)? {
                Some(l) => l.max(0) as usize,
                None => chars.len() - start,
            };
            Item::String(chars[start..].iter().take(len).collect())
        }
        Func::StartsWith => match text(0)? {
            None => return Ok(Vec::new()),
            Some(p) => Item::Boolean(s.starts_with(&p)),
        },
        Func::EndsWith => match text(0)? {
            None => return Ok(Vec::new()),
            Some(p) => Item::Boolean(s.ends_with(&p)),
        },
        Func::Contains => match text(0)? {
            None => return Ok(Vec::new()),
            Some(p) => Item::Boolean(s.contains(&p)),
        },
        Func::Upper => Item::String(s.to_uppercase()),
        Func::Lower => Item::String(s.to_lowercase()),
        Func::Replace => match (text(0)?, text(1)?) {
            (Some(from), Some(to)) if from.is_empty() => {
                let mut out = to.clone();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&to);
                }
                Item::String(out)
            }
            (Some(from), Some(to)) => Item::String(s.replace(&from, &to)),
            _ => return Ok(Vec::new()),
        },
        Func::Matches | Func::MatchesFull => match pattern(0)? {
            None => return Ok(Vec::new()),
            Some(r) => Item::Boolean(r.is_match(s)),
        },
        Func::ReplaceMatches => match (pattern(0)?, text(1)?) {
            (Some(r), Some(_)) if r.as_str() == "(?s)" => Item::String(s.to_string()),
            (Some(r), Some(to)) => Item::String(r.replace_all(s, to.as_str()).into_owned()),
            _ => return Ok(Vec::new()),
        },
        Func::Length => Item::Integer(s.chars().count() as i64),
        Func::ToChars => return Ok(s.chars().map(|c| Item::String(c.to_string())).collect()),
        Func::Trim => Item::String(s.trim().to_string()),
        Func::Split => match text(0)? {
            None => return Ok(Vec::new()),
            Some(sep) => {
                return Ok(s
                    .split(sep.as_str())
                    .map(|p| Item::String(p.to_string()))
                    .collect())
            }
        },
        Func::Encode | Func::Decode | Func::Escape | Func::Unescape => {
            let Some(format) = text(0)? else {
                return Ok(Vec::new());
            };
            let converted = match (func, format.as_str()) {
                (Func::Encode, "hex") => Some(codec::hex_encode(s.as_bytes())),
                (Func::Encode, "base64") => Some(codec::base64_encode(s.as_bytes(), false)),
                (Func::Encode, "urlbase64") => Some(codec::base64_encode(s.as_bytes(), true)),
                (Func::Decode, "hex") => {
                    codec::hex_decode(s).and_then(|b| String::from_utf8(b).ok())
                }
                (Func::Decode, "base64") => {
                    codec::base64_decode(s, false).and_then(|b| String::from_utf8(b).ok())
                }
                (Func::Decode, "urlbase64") => {
                    codec::base64_decode(s, true).and_then(|b| String::from_utf8(b).ok())
                }
                (Func::Escape, "html") => Some(codec::html_escape(s)),
                (Func::Escape, "json") => Some(codec::json_escape(s)),
                (Func::Unescape, "html") => Some(codec::html_unescape(s)),
                (Func::Unescape, "json") => codec::json_unescape(s),
                _ => None,
            };
            match converted {
                Some(c) => Item::String(c),
                None => return Ok(Vec::new()),
            }
        }
        _ => return err("not a string function"),
    };
    Ok(vec![out])
}

/// The encodings of `encode`, `decode`, `escape` and `unescape` (FHIRPath 2.1), written out rather than
/// taken from a crate: a few lines each.
mod codec {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn hex_encode(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
        if s.len() & 1 == 1 || !s.is_ascii() {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect()
    }

    pub fn base64_encode(bytes: &[u8], url: bool) -> String {
        let alphabet = if url { URL_SAFE } else { STANDARD };
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn base64_decode(s: &str, url: bool) -> Option<Vec<u8>> {
        let alphabet = if url { URL_SAFE } else { STANDARD };
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let body = digits
            .iter()
            .rposition(|&b| b != b'=')
            .map_or(&digits[..0], |end| &digits[..=end]);
        if digits.len() - body.len() > 2 {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0);
        for &b in body {
            let v = alphabet.iter().position(|&a| a == b)?;
            acc = acc << 6 | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Some(out)
    }

    pub fn html_escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    pub fn html_unescape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find('&') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
                let c = match &rest[1..end] {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    entity => {
                        let n = match entity.strip_prefix("#x").or(entity.strip_prefix("#X")) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                            None => entity.strip_prefix('#')?.parse().ok()?,
                        };
                        char::from_u32(n)?
                    }
                };
                Some((c, end))
            });
            match decoded {
                Some((c, end)) => {
                    out.push(c);
                    rest = &rest[end + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn json_escape(s: &str) -> String {
        // A JSON string literal without its quotes.
        let quoted = serde_json::Value::String(s.to_string()).to_string();
        quoted[1..quoted.len() - 1].to_string()
    }

    /// Undoes JSON's backslash escapes (other characters, bare quotes too, stay as they are).
    pub fn json_unescape(s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            out.push(match chars.next()? {
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                other => other,
            });
        }
        Some(out)
    }
}

fn math<'a>(
    ev: &Evaluator<'a, '_>,
    func: Func,
    p: Prim,
    arg: &dyn Fn(usize) -> Res<'a>,
) -> Res<'a> {
    let x = match p {
        Prim::Int(i) => i as f64,
        Prim::Dec(d) => d,
        Prim::Quantity(v, u) if func == Func::Abs => {
            return Ok(vec![Item::Quantity {
                value: v.abs(),
                unit: u.to_string(),
            }])
        }
        _ => return err("math functions need a number"),
    };
    let number_arg = |i: usize| -> Result<Option<f64>, EvalError> {
        let v = arg(i)?;
        match ev
            .single(&v, "a number argument")?
            .map(|a| prim(a, ev.model))
        {
            None => Ok(None),
            Some(Prim::Int(i)) => Ok(Some(i as f64)),
            Some(Prim::Dec(d)) => Ok(Some(d)),
            Some(_) => err("expected a number argument"),
        }
    };
    let int = matches!(p, Prim::Int(_));
    let dec = |d: f64| {
        if d.is_finite() {
            vec![Item::Decimal(d)]
        } else {
            Vec::new()
        }
    };
    Ok(match func {
        // An integer's absolute value, except i64::MIN's, which does not fit: empty, like other overflows.
        Func::Abs if int => match p {
            Prim::Int(i) => i.checked_abs().map(Item::Integer).into_iter().collect(),
            _ => Vec::new(),
        },
        Func::Abs => dec(x.abs()),
        Func::Ceiling => vec![Item::Integer(x.ceil() as i64)],
        Func::Floor => vec![Item::Integer(x.floor() as i64)],
        Func::Truncate => vec![Item::Integer(x.trunc() as i64)],
        Func::Exp => dec(x.exp()),
        Func::Ln => dec(x.ln()),
        Func::Sqrt => dec(x.sqrt()),
        Func::Log => match number_arg(0)? {
            Some(base) => dec(x.ln() / base.ln()),
            None => Vec::new(),
        },
        Func::Power => match (number_arg(0)?, p) {
            (None, _) => Vec::new(),
            (Some(e), Prim::Int(b)) if e.fract() == 0.0 && e >= 0.0 => b
                .checked_pow(e as u32)
                .map(Item::Integer)
                .into_iter()
                .collect(),
            (Some(e), _) => dec(x.powf(e)),
        },
        Func::Round => {
            let places = number_arg(0)?.unwrap_or(0.0);
            if places < 0.0 {
                return err("round() needs a non-negative precision");
            }
            let scale = 10f64.powi(places as i32);
            dec((x * scale).round() / scale)
        }
        _ => return err("not a math function"),
    })
}

/// `resolve()` without a server: a contained reference (`#id`) or a Bundle entry (by `fullUrl`, when
/// the resource under evaluation is a Bundle) gives the real resource; any other reference
/// (`Patient/123`, `http://x/fhir/Patient/123`, or `urn:uuid:...` with `Reference.type`) gives a
/// pseudo-node that has no content but carries the target's type, so that `resolve() is Patient`
/// and `resolve().ofType(Patient)` test the reference's type.
fn resolve<'a>(ev: &Evaluator<'a, '_>, item: &Item<'a>) -> Option<Item<'a>> {
    let (reference, declared_type) = match item {
        Item::Node {
            value: Value::Object(obj),
            ..
        } => (
            obj.get("reference").and_then(Value::as_str),
            obj.get("type").and_then(Value::as_str),
        ),
        Item::Node {
            value: Value::String(s),
            ..
        } => (Some(s.as_str()), None),
        Item::String(s) => (Some(s.as_str()), None),
        _ => (None, None),
    };
    let root = match &ev.root {
        Item::Node { value, .. } => *value,
        _ => &NULL,
    };
    if let Some(r) = reference {
        if let Some(id) = r.strip_prefix('#') {
            let found = root
                .get("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))?;
            return Some(Item::Node {
                value: found,
                ty: ev.refine(found, None),
            });
        }
        if root.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let entries = root
                .get("entry")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for entry in entries {
                let full_url = entry.get("fullUrl").and_then(Value::as_str);
                if let (Some(url), Some(res)) = (full_url, entry.get("resource")) {
                    if url == r || url.ends_with(&format!("/{r}")) {
                        return Some(Item::Node {
                            value: res,
                            ty: ev.refine(res, None),
                        });
                    }
                }
            }
        }
    }
    let ty = reference
        .and_then(|r| reference_type(ev, r))
        .or_else(|| declared_type.and_then(|t| ev.model.type_name(t)))?;
    ev.model.is_resource_type(ty).then_some(Item::Node {
        value: &NULL,
        ty: Some(ty),
    })
}

/// The resource type a literal reference names: the segment before the id, skipping `_history/v`.
fn reference_type(ev: &Evaluator<'_, '_>, reference: &str) -> Option<&'static str> {
    if reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let n = segments.len();
    let ty = match segments.as_slice() {
        [.., ty, _id, "_history", _v] if n >= 4 => ty,
        [.., ty, _id] => ty,
        _ => return None,
    };
    ev.model
        .type_name(ty)
        .filter(|t| ev.model.is_resource_type(t))
}
