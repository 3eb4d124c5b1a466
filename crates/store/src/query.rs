//! The reads both engines share: one SQL builder for the search query model, keyset paging with
//! opaque cursors, `_include`/`_revinclude`, history and the Patient compartment. Engines differ only
//! in [`Dialect`] and in how [`Exec`] runs a statement.
//!
//! Every predicate becomes `r.rid IN (subquery over an index table)`: the subquery is an index range
//! scan on `(param, value..., rid, to_seq)`, and the planner can drive the search from its result by
//! primary key instead of scanning all resources of a type. Index rows exist only for live versions,
//! each valid from the commit that wrote it (`from_seq`) until the commit that replaced or deleted it
//! (`to_seq`, NULL while current); current searches read the rows with `to_seq IS NULL`.
//!
//! Paging is keyset paging on (sort values..., rid) over a snapshot: the first page also reads the
//! greatest commit sequence number (`MAX(versions.seq)`), and its cursors carry it. The pages that
//! follow read the index and compartment rows valid at that number, the resources live at it and
//! the versions current at it, so that they show the result set as it stood when the first page
//! was read: resources created since never join, and resources updated or deleted since keep their
//! place and the version they had (no duplicates, no gaps). A cursor also carries a hash of the
//! query it belongs to, so that a cursor used with another query is refused
//! ([`StoreError::BadCursor`]). Cursors stay valid as long as replaced index rows are kept (today:
//! forever; a pruner would have to keep those newer than the oldest cursor it honours).

use std::collections::{BTreeSet, HashMap, HashSet};

use base64::Engine as _;
use fhir::search::{
    Include, Predicate, Prefix, Query, StringMatch, Test, TokenTest, Total, UriMatch,
};
use serde_json::{json, Value};

use crate::exec::{fnv1a, Dialect, Exec, Val};
use crate::{
    CompartmentRequest, Current, HistoryPage, HistoryRequest, HistoryScope, Result, SearchOptions,
    SearchPage, StoreError, Stored,
};

/// The largest code point: `v` followed by it bounds every string that starts with `v`.
const MAX_CHAR: char = '\u{10FFFF}';
/// How many keys or rids go into one `IN (...)` list.
const CHUNK: usize = 400;

/// The index tables, one per kind of [`fhir::search::IndexValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    String,
    Token,
    TokenType,
    Date,
    Number,
    Quantity,
    Reference,
    Uri,
}

impl Table {
    pub(crate) const ALL: [Table; 8] = [
        Table::String,
        Table::Token,
        Table::TokenType,
        Table::Date,
        Table::Number,
        Table::Quantity,
        Table::Reference,
        Table::Uri,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::String => "idx_string",
            Table::Token => "idx_token",
            Table::TokenType => "idx_token_type",
            Table::Date => "idx_date",
            Table::Number => "idx_number",
            Table::Quantity => "idx_quantity",
            Table::Reference => "idx_reference",
            Table::Uri => "idx_uri",
        }
    }

    /// The value a resource sorts by: the least of its rows ascending, the greatest descending.
    fn sort_value(self, a: &str, descending: bool) -> String {
        let agg = if descending { "MAX" } else { "MIN" };
        let column = match self {
            Table::String => format!("{a}.normalized"),
            Table::Token => format!("{a}.code"),
            Table::TokenType => format!("{a}.value"),
            Table::Date | Table::Number | Table::Quantity => {
                if descending {
                    format!("{a}.high")
                } else {
                    format!("{a}.low")
                }
            }
            Table::Reference => {
                format!("COALESCE({a}.target_type || '/' || {a}.target_id, {a}.url)")
            }
            Table::Uri => format!("{a}.uri"),
        };
        format!("{agg}({column})")
    }
}

/// Which index tables hold rows of a parameter (found by probing; the store does not know FHIR).
type ParamTables = HashMap<&'static str, Vec<Table>>;

/// Builds one statement: SQL text plus its numbered arguments.
struct Sql<'a> {
    dialect: Dialect,
    args: Vec<Val>,
    aliases: usize,
    tables: &'a ParamTables,
    /// The snapshot (a commit sequence number) a later page reads; `None` reads the current state.
    at: Option<i64>,
}

impl<'a> Sql<'a> {
    fn new(dialect: Dialect, tables: &'a ParamTables) -> Self {
        Sql {
            dialect,
            args: Vec::new(),
            aliases: 0,
            tables,
            at: None,
        }
    }

    /// `a.param`, as a probe by `rid` should test it: on SQLite behind a unary `+`, so that the
    /// planner seeks the primary key `(rid, ...)` instead of scanning every row of the parameter in
    /// the lookup index (`(param, value..., rid, to_seq)` also covers the probe, and at a million
    /// resources SQLite chose it: 500 ms per search).
    fn probe_param(&self, a: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("+{a}.param"),
            Dialect::Postgres => format!("{a}.param"),
        }
    }

    /// The index or compartment row aliased `a` is valid: current, or at the snapshot.
    fn valid(&mut self, a: &str) -> String {
        match self.at {
            None => format!("{a}.to_seq IS NULL"),
            Some(seq) => {
                let s = self.int(seq);
                format!("{a}.from_seq <= {s} AND ({a}.to_seq IS NULL OR {a}.to_seq > {s})")
            }
        }
    }

    /// The resource aliased `r` is live: now, or at the snapshot (its latest version up to the
    /// snapshot is not a deletion; a resource created since has none).
    fn alive(&mut self, r: &str) -> String {
        match self.at {
            None => format!("{r}.deleted = 0"),
            Some(seq) => {
                let s = self.int(seq);
                let w = self.alias("w");
                format!(
                    "(SELECT {w}.deleted FROM versions {w} WHERE {w}.rid = {r}.rid AND {w}.seq <= {s} \
                     ORDER BY {w}.version DESC LIMIT 1) = 0"
                )
            }
        }
    }

    fn arg(&mut self, value: Val) -> String {
        self.args.push(value);
        self.dialect.placeholder(self.args.len())
    }

    fn text(&mut self, value: &str) -> String {
        self.arg(Val::Text(value.to_string()))
    }

    fn int(&mut self, value: i64) -> String {
        self.arg(Val::Int(value))
    }

    fn list<S: AsRef<str>>(&mut self, values: &[S]) -> String {
        values
            .iter()
            .map(|v| self.text(v.as_ref()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn ints(&mut self, values: &[i64]) -> String {
        values
            .iter()
            .map(|v| self.int(*v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn alias(&mut self, base: &str) -> String {
        self.aliases += 1;
        format!("{base}{}", self.aliases)
    }

    /// `{a}.{column}` starts with `value`, as an index range.
    fn starts_with(&mut self, a: &str, column: &str, value: &str) -> String {
        if value.is_empty() {
            return format!("{a}.{column} IS NOT NULL");
        }
        let low = self.text(value);
        let high = self.text(&format!("{value}{MAX_CHAR}"));
        format!("{a}.{column} >= {low} AND {a}.{column} < {high}")
    }

    /// The conditions of a search's clauses on resources aliased `r`, ANDed, and whether one of them
    /// drives the search (see [`driver`]).
    ///
    /// On SQLite, which materializes every `IN (subquery)` in full, only the most selective clause
    /// (by a fixed ranking of predicate kinds) is an `IN` that drives the search through the rowid;
    /// the others become correlated `EXISTS` probes of the index tables' primary keys `(rid, n)`, so
    /// that "this patient's observations with this common code" never reads every row of the code.
    /// PostgreSQL plans semi-joins from statistics, so there every clause stays an `IN`.
    fn clauses(&mut self, query: &Query, r: &str) -> Result<(Vec<String>, bool)> {
        let driver = driver(query);
        let correlate = self.dialect == Dialect::Sqlite && driver.is_some();
        let mut parts = Vec::new();
        for (i, clause) in query.clauses.iter().enumerate() {
            if clause.any.is_empty() {
                continue;
            }
            let correlated = correlate && Some(i) != driver;
            let mut any = Vec::with_capacity(clause.any.len());
            for predicate in &clause.any {
                any.push(if correlated {
                    self.correlated(predicate, r)?
                } else {
                    self.predicate(predicate, r)?
                });
            }
            parts.push(format!("({})", balanced(&any, "OR")));
        }
        Ok((parts, correlate))
    }

    /// A condition on the resource aliased `r` that probes the index rows of `r` itself.
    fn correlated(&mut self, predicate: &Predicate, r: &str) -> Result<String> {
        Ok(match predicate {
            Predicate::Index { param, test } => {
                let a = self.alias("i");
                let p = self.text(param);
                let (table, cond) = self.test(test, &a);
                let valid = self.valid(&a);
                let param = self.probe_param(&a);
                format!(
                    "EXISTS (SELECT 1 FROM {} {a} WHERE {a}.rid = {r}.rid AND {param} = {p} AND {cond} AND {valid})",
                    table.name()
                )
            }
            Predicate::Chain {
                param,
                target_types,
                inner,
            } => {
                let x = self.alias("x");
                let t = self.alias("t");
                let p = self.text(param);
                let types = if target_types.is_empty() {
                    String::new()
                } else {
                    format!(" AND {t}.type IN ({})", self.list(target_types))
                };
                let inner = self.predicate(inner, &t)?;
                let (valid, alive) = (self.valid(&x), self.alive(&t));
                let param = self.probe_param(&x);
                format!(
                    "EXISTS (SELECT 1 FROM idx_reference {x} JOIN resources {t} \
                     ON {t}.type = {x}.target_type AND {t}.id = {x}.target_id \
                     WHERE {x}.rid = {r}.rid AND {param} = {p} AND {valid}{types} AND {alive} AND {inner})"
                )
            }
            Predicate::Composite { param, components } => {
                match self.composite(param, components, true) {
                    None => "1 = 1".to_string(),
                    Some((first, from, conds)) => {
                        format!(
                            "EXISTS (SELECT 1 FROM {from} WHERE {first}.rid = {r}.rid AND {conds})"
                        )
                    }
                }
            }
            Predicate::Has {
                source_type,
                ref_param,
                inner,
            } => {
                let s = self.alias("s");
                let x = self.alias("x");
                let st = self.text(source_type);
                let p = self.text(ref_param);
                let inner = self.predicate(inner, &s)?;
                let (valid, alive) = (self.valid(&x), self.alive(&s));
                format!(
                    "EXISTS (SELECT 1 FROM idx_reference {x} JOIN resources {s} ON {s}.rid = {x}.rid \
                     WHERE {x}.param = {p} AND {x}.target_id = {r}.id AND {x}.target_type = {r}.type \
                     AND {valid} AND {s}.type = {st} AND {alive} AND {inner})"
                )
            }
            other => self.predicate(other, r)?,
        })
    }

    /// A condition on the resource aliased `r`.
    fn predicate(&mut self, predicate: &Predicate, r: &str) -> Result<String> {
        Ok(match predicate {
            Predicate::Index { param, test } => {
                let a = self.alias("i");
                let p = self.text(param);
                let (table, cond) = self.test(test, &a);
                let valid = self.valid(&a);
                format!(
                    "{r}.rid IN (SELECT {a}.rid FROM {} {a} WHERE {a}.param = {p} AND {cond} AND {valid})",
                    table.name()
                )
            }
            Predicate::Not { param, test } => {
                let a = self.alias("i");
                let p = self.text(param);
                let (table, cond) = self.test(test, &a);
                let valid = self.valid(&a);
                format!(
                    "{r}.rid NOT IN (SELECT {a}.rid FROM {} {a} WHERE {a}.param = {p} AND {cond} AND {valid})",
                    table.name()
                )
            }
            Predicate::Missing { param, missing } => {
                let tables = self.tables.get(param).cloned().unwrap_or_default();
                if tables.is_empty() {
                    return Ok(if *missing { "1 = 1" } else { "1 = 0" }.to_string());
                }
                let p = self.text(param);
                let mut selects = Vec::with_capacity(tables.len());
                for t in &tables {
                    let m = self.alias("m");
                    let valid = self.valid(&m);
                    selects.push(format!(
                        "SELECT {m}.rid FROM {} {m} WHERE {m}.param = {p} AND {valid}",
                        t.name()
                    ));
                }
                let union = selects.join(" UNION ALL ");
                let not = if *missing { "NOT " } else { "" };
                format!("{r}.rid {not}IN ({union})")
            }
            Predicate::Chain {
                param,
                target_types,
                inner,
            } => {
                let x = self.alias("x");
                let t = self.alias("t");
                let p = self.text(param);
                let types = if target_types.is_empty() {
                    String::new()
                } else {
                    format!(" AND {t}.type IN ({})", self.list(target_types))
                };
                let inner = self.predicate(inner, &t)?;
                let (valid, alive) = (self.valid(&x), self.alive(&t));
                format!(
                    "{r}.rid IN (SELECT {x}.rid FROM idx_reference {x} JOIN resources {t} \
                     ON {t}.type = {x}.target_type AND {t}.id = {x}.target_id \
                     WHERE {x}.param = {p} AND {valid}{types} AND {alive} AND {inner})"
                )
            }
            Predicate::Has {
                source_type,
                ref_param,
                inner,
            } => {
                let s = self.alias("s");
                let x = self.alias("x");
                let t = self.alias("t");
                let st = self.text(source_type);
                let p = self.text(ref_param);
                let inner = self.predicate(inner, &s)?;
                let (valid, alive) = (self.valid(&x), self.alive(&s));
                format!(
                    "{r}.rid IN (SELECT {t}.rid FROM resources {s} JOIN idx_reference {x} ON {x}.rid = {s}.rid \
                     JOIN resources {t} ON {t}.type = {x}.target_type AND {t}.id = {x}.target_id \
                     WHERE {s}.type = {st} AND {alive} AND {x}.param = {p} AND {valid} AND {inner})"
                )
            }
            Predicate::Composite { param, components } => {
                match self.composite(param, components, false) {
                    None => "1 = 1".to_string(),
                    Some((first, from, conds)) => {
                        format!("{r}.rid IN (SELECT {first}.rid FROM {from} WHERE {conds})")
                    }
                }
            }
        })
    }

    /// A composite's rows: the alias of its first component, the joined tables of all its
    /// components (one item: same rid, parameter and group) and their conditions; `None` if it has
    /// no components.
    fn composite(
        &mut self,
        param: &str,
        components: &[(&'static str, Test)],
        probe: bool,
    ) -> Option<(String, String, String)> {
        if components.is_empty() {
            return None;
        }
        let p = self.text(param);
        let first = self.alias("c");
        let mut from = String::new();
        let first_param = if probe {
            self.probe_param(&first)
        } else {
            format!("{first}.param")
        };
        let mut conds = vec![format!("{first_param} = {p}")];
        for (position, (_, test)) in components.iter().enumerate() {
            let c = if position == 0 {
                first.clone()
            } else {
                self.alias("c")
            };
            let (table, cond) = self.test(test, &c);
            if position == 0 {
                from = format!("{} {c}", table.name());
            } else {
                from.push_str(&format!(
                    " JOIN {} {c} ON {c}.rid = {first}.rid AND {c}.param = {first}.param AND {c}.grp = {first}.grp",
                    table.name()
                ));
            }
            conds.push(format!("{c}.comp = {position}"));
            conds.push(cond);
            conds.push(self.valid(&c));
        }
        Some((first, from, conds.join(" AND ")))
    }

    /// The table a test reads and its condition on the row aliased `a`.
    fn test(&mut self, test: &Test, a: &str) -> (Table, String) {
        match test {
            Test::String { value, mode } => {
                let cond = match mode {
                    StringMatch::StartsWith => self.starts_with(a, "normalized", value),
                    StringMatch::Exact => format!("{a}.exact = {}", self.text(value)),
                    StringMatch::Contains => {
                        let pattern = format!("%{}%", escape_like(value));
                        format!("{a}.normalized LIKE {} ESCAPE '\\'", self.text(&pattern))
                    }
                };
                (Table::String, cond)
            }
            Test::Token(token) | Test::ReferenceIdentifier(token) => self.token(token, a),
            Test::Date { prefix, low, high } => {
                let gap = (now_millis().saturating_sub(*low)).saturating_abs() / 10;
                let wide = (
                    Val::Int(low.saturating_sub(gap)),
                    Val::Int(high.saturating_add(gap)),
                );
                (
                    Table::Date,
                    self.range(a, *prefix, Val::Int(*low), Val::Int(*high), wide),
                )
            }
            Test::Number { prefix, low, high } => {
                let wide = widen(*low, *high);
                (
                    Table::Number,
                    self.range(a, *prefix, Val::Real(*low), Val::Real(*high), wide),
                )
            }
            Test::Quantity {
                prefix,
                low,
                high,
                system,
                code,
            } => {
                let wide = widen(*low, *high);
                let mut conds =
                    vec![self.range(a, *prefix, Val::Real(*low), Val::Real(*high), wide)];
                if let Some(system) = system {
                    conds.push(format!("{a}.system = {}", self.text(system)));
                }
                if let Some(code) = code {
                    let c = self.text(code);
                    if system.is_some() {
                        conds.push(format!("{a}.code = {c}"));
                    } else {
                        conds.push(format!("({a}.code = {c} OR {a}.unit = {c})"));
                    }
                }
                (Table::Quantity, conds.join(" AND "))
            }
            Test::Reference {
                target_type,
                target_id,
                url,
                version,
            } => {
                let mut conds = Vec::new();
                for (column, value) in [
                    ("target_type", target_type),
                    ("target_id", target_id),
                    ("url", url),
                    ("version", version),
                ] {
                    if let Some(value) = value {
                        conds.push(format!("{a}.{column} = {}", self.text(value)));
                    }
                }
                (Table::Reference, balanced(&conds, "AND"))
            }
            Test::Uri { value, mode } => {
                let cond = match mode {
                    UriMatch::Exact => format!("{a}.uri = {}", self.text(value)),
                    UriMatch::Below => self.starts_with(a, "uri", value),
                    UriMatch::Above => format!(
                        "substr(CAST({} AS TEXT), 1, length({a}.uri)) = {a}.uri",
                        self.text(value)
                    ),
                };
                (Table::Uri, cond)
            }
        }
    }

    fn token(&mut self, test: &TokenTest, a: &str) -> (Table, String) {
        match test {
            TokenTest::Code { system, code } => {
                let mut conds = Vec::new();
                if let Some(code) = code {
                    conds.push(format!("{a}.code = {}", self.text(code)));
                }
                match system {
                    None => {}
                    Some(None) => conds.push(format!("{a}.system IS NULL")),
                    Some(Some(system)) => conds.push(format!("{a}.system = {}", self.text(system))),
                }
                (Table::Token, balanced(&conds, "AND"))
            }
            TokenTest::Text(text) => (Table::Token, self.starts_with(a, "text", text)),
            TokenTest::OfType {
                type_system,
                type_code,
                value,
            } => {
                let mut conds = vec![
                    format!("{a}.value = {}", self.text(value)),
                    format!("{a}.type_code = {}", self.text(type_code)),
                ];
                if let Some(system) = type_system {
                    conds.push(format!("{a}.type_system = {}", self.text(system)));
                }
                (Table::TokenType, conds.join(" AND "))
            }
        }
    }

    /// FHIR's prefix semantics on ranges: the row holds the resource's range `[low, high]`, the
    /// search its own. Each condition also bounds `low` where it can, so the `(param, low, ...)` index
    /// serves as a range scan.
    fn range(&mut self, a: &str, prefix: Prefix, low: Val, high: Val, wide: (Val, Val)) -> String {
        let (l, h) = (format!("{a}.low"), format!("{a}.high"));
        match prefix {
            Prefix::Eq => {
                let (sl, sh) = (self.arg(low), self.arg(high));
                format!("{l} >= {sl} AND {l} <= {sh} AND {h} <= {sh}")
            }
            Prefix::Ne => {
                let (sl, sh) = (self.arg(low), self.arg(high));
                format!("({l} < {sl} OR {h} > {sh})")
            }
            Prefix::Gt => format!("{h} > {}", self.arg(high)),
            Prefix::Lt => format!("{l} < {}", self.arg(low)),
            Prefix::Ge => {
                let (sl, sh) = (self.arg(low), self.arg(high));
                format!("({h} > {sh} OR {l} >= {sl})")
            }
            Prefix::Le => {
                let (sl, sh) = (self.arg(low), self.arg(high));
                format!("{l} <= {sh} AND ({l} < {sl} OR {h} <= {sh})")
            }
            Prefix::Sa => format!("{l} > {}", self.arg(high)),
            Prefix::Eb => {
                let sl = self.arg(low);
                format!("{l} < {sl} AND {h} < {sl}")
            }
            Prefix::Ap => {
                let (wl, wh) = (self.arg(wide.0), self.arg(wide.1));
                format!("{l} <= {wh} AND {h} >= {wl}")
            }
        }
    }
}

/// The clause that should drive a search: the one whose predicates are all index lookups and
/// whose least selective predicate is the most selective (by kind), first on ties. `None` when no
/// clause can drive (only `:not` and `:missing`).
fn driver(query: &Query) -> Option<usize> {
    query
        .clauses
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.any.is_empty())
        .filter_map(|(i, c)| {
            let ranks: Option<Vec<u8>> = c.any.iter().map(selectivity).collect();
            ranks
                .and_then(|r| r.into_iter().max())
                .map(|rank| (rank, i))
        })
        .min()
        .map(|(_, i)| i)
}

/// How selective a kind of predicate usually is (lower is more selective); `None` if it cannot
/// drive a search.
fn selectivity(predicate: &Predicate) -> Option<u8> {
    const TWO_DAYS: i64 = 2 * 86_400_000;
    Some(match predicate {
        Predicate::Index { param: "_id", .. } => 0,
        Predicate::Index { test, .. } => match test {
            Test::Token(TokenTest::OfType { .. }) => 2,
            Test::Reference {
                target_id: Some(_), ..
            } => 2,
            Test::Token(TokenTest::Code {
                code: Some(_),
                system: Some(Some(_)),
            }) => 4,
            Test::ReferenceIdentifier(_) | Test::Reference { url: Some(_), .. } => 4,
            Test::String {
                mode: StringMatch::Exact,
                ..
            } => 4,
            Test::Uri {
                mode: UriMatch::Exact,
                ..
            } => 4,
            // A day or less (a birth date): fewer matches than a name's first letters.
            Test::Date {
                prefix: Prefix::Eq,
                low,
                high,
            } if high.saturating_sub(*low) < TWO_DAYS => 5,
            Test::Token(TokenTest::Code { code: Some(_), .. }) => 6,
            Test::String {
                mode: StringMatch::StartsWith,
                value,
            } if value.chars().count() >= 3 => 6,
            Test::Date {
                prefix: Prefix::Eq, ..
            } => 8,
            Test::Number {
                prefix: Prefix::Eq, ..
            } => 8,
            Test::Quantity {
                prefix: Prefix::Eq, ..
            } => 8,
            Test::String {
                mode: StringMatch::StartsWith,
                ..
            } => 10,
            Test::Uri {
                mode: UriMatch::Below,
                ..
            } => 10,
            Test::Date { .. } | Test::Number { .. } | Test::Quantity { .. } => 12,
            _ => 14,
        },
        Predicate::Composite { .. } => 8,
        Predicate::Chain { .. } | Predicate::Has { .. } => 10,
        Predicate::Not { .. } | Predicate::Missing { .. } => return None,
    })
}

/// `parts` joined by `op` (AND or OR) as a balanced tree of parenthesised halves, so that the
/// expression is as deep as the logarithm of the number of parts: SQLite refuses expressions deeper
/// than 1,000, which a flat list of a thousand ORs (parsed left-deep) would be.
fn balanced(parts: &[String], op: &str) -> String {
    match parts {
        [] => if op == "AND" { "1 = 1" } else { "1 = 0" }.to_string(),
        [one] => one.clone(),
        _ if parts.len() <= 8 => parts.join(&format!(" {op} ")),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            format!("({}) {op} ({})", balanced(left, op), balanced(right, op))
        }
    }
}

/// `ap` on numbers: 10% of the value either side.
fn widen(low: f64, high: f64) -> (Val, Val) {
    let margin = low.abs().max(high.abs()) * 0.1;
    (Val::Real(low - margin), Val::Real(high + margin))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where the next or previous page starts, as handed to clients (opaque).
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    /// Whether this cursor pages backwards (a `previous` link).
    back: bool,
    /// The sort values and rid (or history seq) of the row the page starts after (or before).
    keys: Vec<Val>,
    row: i64,
    /// The snapshot: the greatest commit sequence number (`versions.seq`) when the first page was
    /// read (unused by history cursors).
    max: i64,
    /// The hash of the query this cursor belongs to.
    query: u64,
}

impl Cursor {
    fn encode(&self) -> String {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| match k {
                Val::Null => Value::Null,
                Val::Int(i) => json!({ "i": i }),
                Val::Real(f) => json!({ "f": f }),
                Val::Text(s) => json!({ "s": s }),
                // (no search sorts by a byte column)
                Val::Bytes(b) => json!({ "s": String::from_utf8_lossy(b) }),
            })
            .collect();
        let value = json!({ "b": self.back, "k": keys, "r": self.row, "m": self.max, "q": self.query.to_string() });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn decode(text: &str, query: u64) -> Result<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| StoreError::BadCursor)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
        let mut keys = Vec::new();
        for key in value["k"].as_array().ok_or(StoreError::BadCursor)? {
            keys.push(if key.is_null() {
                Val::Null
            } else if let Some(i) = key["i"].as_i64() {
                Val::Int(i)
            } else if let Some(f) = key["f"].as_f64() {
                Val::Real(f)
            } else if let Some(s) = key["s"].as_str() {
                Val::Text(s.to_string())
            } else {
                return Err(StoreError::BadCursor);
            });
        }
        let cursor = Cursor {
            back: value["b"].as_bool().ok_or(StoreError::BadCursor)?,
            keys,
            row: value["r"].as_i64().ok_or(StoreError::BadCursor)?,
            max: value["m"].as_i64().ok_or(StoreError::BadCursor)?,
            query: value["q"]
                .as_str()
                .and_then(|q| q.parse().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        if cursor.query != query {
            return Err(StoreError::BadCursor);
        }
        Ok(cursor)
    }
}

fn hash_of(text: &str) -> u64 {
    fnv1a(text.as_bytes())
}

/// Which compartment rows give a fetched version's patients ([`Stored::patients`]).
#[derive(Clone, Copy)]
enum Patients<'a> {
    /// Not read (the caller finds them in the JSON).
    Unread,
    /// The current version's: its rows are the ones still open.
    Current,
    /// The version current at a snapshot (the SQL text of its sequence number): the rows valid
    /// then. Each commit's rows start at its sequence number (SQLite: the version's own; PostgreSQL:
    /// the batch's, below its versions') and end at the next commit that replaced the resource.
    At(&'a str),
}

/// The columns that make a [`Stored`], selected from `resources r` and `versions v`; with the
/// patients, one more: their ids joined by the unit separator (no FHIR id holds it), or NULL.
fn stored_columns(dialect: Dialect, patients: Patients<'_>) -> String {
    let columns = format!(
        "r.rid, r.type, r.id, v.version, v.last_updated, v.deleted, {}",
        dialect.json_column("v")
    );
    let valid = match patients {
        Patients::Unread => return columns,
        Patients::Current => "c.to_seq IS NULL".to_string(),
        Patients::At(seq) => {
            format!("c.from_seq <= {seq} AND (c.to_seq IS NULL OR c.to_seq > {seq})")
        }
    };
    let joined = match dialect {
        Dialect::Sqlite => "group_concat(c.patient_id, char(31))",
        Dialect::Postgres => "string_agg(c.patient_id, chr(31))",
    };
    format!("{columns}, (SELECT {joined} FROM compartment c WHERE c.rid = r.rid AND {valid})")
}

fn stored_from_row(row: Vec<Val>, patients: Patients<'_>) -> Result<(i64, Stored)> {
    let mut it = row.into_iter();
    let mut next = || {
        it.next()
            .ok_or_else(|| StoreError::Database("short row".to_string()))
    };
    let rid = next()?.int()?;
    let mut stored = Stored {
        resource_type: next()?.text()?,
        id: next()?.text()?,
        version: next()?.int()?,
        last_updated: next()?.int()?,
        deleted: next()?.int()? != 0,
        json: next()?.text()?,
        patients: None,
    };
    if !matches!(patients, Patients::Unread) {
        let joined = next()?.text()?;
        stored.patients = Some(if stored.deleted || joined.is_empty() {
            Vec::new()
        } else {
            joined.split('\u{1f}').map(str::to_string).collect()
        });
    }
    Ok((rid, stored))
}

/// The current version of each key, in order.
pub(crate) async fn current<E: Exec>(
    e: &mut E,
    keys: &[(String, String)],
) -> Result<Vec<Option<Current>>> {
    let tables = ParamTables::new();
    let mut found: HashMap<(String, String), Current> = HashMap::new();
    for chunk in keys.chunks(CHUNK / 2) {
        let mut b = Sql::new(e.dialect(), &tables);
        let ors: Vec<String> = chunk
            .iter()
            .map(|(ty, id)| format!("(type = {} AND id = {})", b.text(ty), b.text(id)))
            .collect();
        let sql = format!(
            "SELECT type, id, version, deleted, last_updated FROM resources WHERE {}",
            balanced(&ors, "OR")
        );
        for row in e.rows(&sql, &b.args).await? {
            let mut it = row.into_iter();
            let mut next = || {
                it.next()
                    .ok_or_else(|| StoreError::Database("short row".to_string()))
            };
            let key = (next()?.text()?, next()?.text()?);
            let current = Current {
                version: next()?.int()?,
                deleted: next()?.int()? != 0,
                last_updated: next()?.int()?,
            };
            found.insert(key, current);
        }
    }
    Ok(keys.iter().map(|k| found.get(k).copied()).collect())
}

/// The current version (or a tombstone) of one resource.
pub(crate) async fn read<E: Exec>(
    e: &mut E,
    resource_type: &str,
    id: &str,
) -> Result<Option<Stored>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT {} FROM resources r JOIN versions v ON v.rid = r.rid AND v.version = r.version \
         WHERE r.type = {} AND r.id = {}",
        stored_columns(d, Patients::Current),
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(resource_type.to_string()),
        Val::Text(id.to_string()),
    ];
    match e.rows(&sql, &args).await?.into_iter().next() {
        Some(row) => Ok(Some(stored_from_row(row, Patients::Current)?.1)),
        None => Ok(None),
    }
}

/// One version of one resource.
pub(crate) async fn vread<E: Exec>(
    e: &mut E,
    resource_type: &str,
    id: &str,
    version: i64,
) -> Result<Option<Stored>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT {} FROM resources r JOIN versions v ON v.rid = r.rid \
         WHERE r.type = {} AND r.id = {} AND v.version = {}",
        stored_columns(d, Patients::Unread),
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    let args = [
        Val::Text(resource_type.to_string()),
        Val::Text(id.to_string()),
        Val::Int(version),
    ];
    match e.rows(&sql, &args).await?.into_iter().next() {
        Some(row) => Ok(Some(stored_from_row(row, Patients::Unread)?.1)),
        None => Ok(None),
    }
}

/// The current versions of `rids` (or those current at the snapshot `at`), in that order (rids
/// without one are left out).
async fn fetch<E: Exec>(e: &mut E, rids: &[i64], at: Option<i64>) -> Result<Vec<Stored>> {
    let tables = ParamTables::new();
    let mut by_rid = HashMap::with_capacity(rids.len());
    for chunk in rids.chunks(CHUNK) {
        let mut b = Sql::new(e.dialect(), &tables);
        let list = b.ints(chunk);
        let (version, patients) = match at {
            None => ("r.version".to_string(), None),
            Some(seq) => {
                let seq = b.int(seq);
                (
                    format!("(SELECT MAX(w.version) FROM versions w WHERE w.rid = r.rid AND w.seq <= {seq})"),
                    Some(seq),
                )
            }
        };
        let patients = patients.as_deref().map_or(Patients::Current, Patients::At);
        let sql = format!(
            "SELECT {} FROM resources r JOIN versions v ON v.rid = r.rid AND v.version = {version} \
             WHERE r.rid IN ({list})",
            stored_columns(e.dialect(), patients)
        );
        for row in e.rows(&sql, &b.args).await? {
            let (rid, stored) = stored_from_row(row, patients)?;
            by_rid.insert(rid, stored);
        }
    }
    Ok(rids.iter().filter_map(|rid| by_rid.remove(rid)).collect())
}

/// Finds which index tables hold rows of each parameter (for `:missing` and `_sort`).
async fn probe<E: Exec>(e: &mut E, params: &BTreeSet<&'static str>) -> Result<ParamTables> {
    let mut out = ParamTables::new();
    let d = e.dialect();
    for param in params {
        let p = d.placeholder(1);
        let sql = Table::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "SELECT {i} WHERE EXISTS (SELECT 1 FROM {} WHERE param = {p})",
                    t.name()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut tables = Vec::new();
        for row in e.rows(&sql, &[Val::Text(param.to_string())]).await? {
            if let Some(i) = row.into_iter().next() {
                if let Some(t) = usize::try_from(i.int()?)
                    .ok()
                    .and_then(|i| Table::ALL.get(i))
                {
                    tables.push(*t);
                }
            }
        }
        out.insert(param, tables);
    }
    Ok(out)
}

fn missing_params(predicate: &Predicate, out: &mut BTreeSet<&'static str>) {
    match predicate {
        Predicate::Missing { param, .. } => {
            out.insert(param);
        }
        Predicate::Chain { inner, .. } | Predicate::Has { inner, .. } => missing_params(inner, out),
        _ => {}
    }
}

/// The statement selecting one page (and one row more, to know whether more follow).
fn page_sql(
    b: &mut Sql<'_>,
    from_where: &str,
    keys: &[(String, bool)],
    cursor: Option<&Cursor>,
    count: usize,
) -> Result<String> {
    let back = cursor.is_some_and(|c| c.back);
    let limit = count + 1;
    // A first page also reports the snapshot bound its cursors will carry.
    let max = if cursor.is_none() {
        format!(", {MAX_SEQ}")
    } else {
        String::new()
    };
    Ok(if keys.is_empty() {
        let keyset = match cursor {
            Some(c) => format!(
                " AND r.rid {} {}",
                if back { "<" } else { ">" },
                b.int(c.row)
            ),
            None => String::new(),
        };
        let order = if back { "DESC" } else { "ASC" };
        format!("SELECT r.rid{max} {from_where}{keyset} ORDER BY r.rid {order} LIMIT {limit}")
    } else {
        let select: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (expr, _))| format!("{expr} AS k{i}"))
            .collect();
        let keyset = match cursor {
            Some(c) => format!(" WHERE {}", keyset(b, keys, c)?),
            None => String::new(),
        };
        let mut order: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (_, desc))| match (*desc, back) {
                (false, false) => format!("t.k{i} ASC NULLS LAST"),
                (true, false) => format!("t.k{i} DESC NULLS LAST"),
                (false, true) => format!("t.k{i} DESC NULLS FIRST"),
                (true, true) => format!("t.k{i} ASC NULLS FIRST"),
            })
            .collect();
        order.push(format!("t.rid {}", if back { "DESC" } else { "ASC" }));
        let outer: Vec<String> = (0..keys.len()).map(|i| format!(", t.k{i}")).collect();
        format!(
            "SELECT t.rid{}{max} FROM (SELECT r.rid AS rid, {} {from_where}) t{keyset} ORDER BY {} LIMIT {limit}",
            outer.concat(),
            select.join(", "),
            order.join(", ")
        )
    })
}

/// One page of rids from `from_where` (which selects from `resources r` and ends in a `WHERE`
/// clause), in `keys` order, then rid; whether more rows follow in the direction paged.
struct PageRows {
    rows: Vec<(i64, Vec<Val>)>,
    more: bool,
    /// The snapshot bound, read with a first page (that has rows).
    max: Option<i64>,
}

async fn page_rows<E: Exec>(
    e: &mut E,
    mut b: Sql<'_>,
    from_where: &str,
    keys: &[(String, bool)],
    cursor: Option<&Cursor>,
    count: usize,
) -> Result<PageRows> {
    let back = cursor.is_some_and(|c| c.back);
    let sql = page_sql(&mut b, from_where, keys, cursor, count)?;
    let mut rows = Vec::new();
    let mut max = None;
    for mut row in e.rows(&sql, &b.args).await? {
        if cursor.is_none() {
            let bound = row
                .pop()
                .ok_or_else(|| StoreError::Database("short row".to_string()))?
                .int()?;
            max = Some(bound);
        }
        let mut it = row.into_iter();
        let rid = it
            .next()
            .ok_or_else(|| StoreError::Database("short row".to_string()))?
            .int()?;
        rows.push((rid, it.collect::<Vec<_>>()));
    }
    let more = rows.len() > count;
    rows.truncate(count);
    if back {
        rows.reverse();
    }
    Ok(PageRows { rows, more, max })
}

/// The rows after (or, for a backward cursor, before) the cursor's row in sort order; missing sort
/// values come last in both directions.
fn keyset(b: &mut Sql<'_>, keys: &[(String, bool)], cursor: &Cursor) -> Result<String> {
    if cursor.keys.len() != keys.len() {
        return Err(StoreError::BadCursor);
    }
    let back = cursor.back;
    let rid = b.int(cursor.row);
    let mut cond = format!("t.rid {} {rid}", if back { "<" } else { ">" });
    for (i, ((_, desc), value)) in keys.iter().zip(&cursor.keys).enumerate().rev() {
        let k = format!("t.k{i}");
        let (beyond, equal) = match value {
            Val::Null => {
                let beyond = if back {
                    format!("{k} IS NOT NULL")
                } else {
                    "1 = 0".to_string()
                };
                (beyond, format!("{k} IS NULL"))
            }
            value => {
                let v = b.arg(value.clone());
                let op = if *desc != back { "<" } else { ">" };
                let beyond = if back {
                    format!("{k} {op} {v}")
                } else {
                    format!("({k} {op} {v} OR {k} IS NULL)")
                };
                (beyond, format!("{k} = {v}"))
            }
        };
        cond = format!("({beyond} OR ({equal} AND {cond}))");
    }
    Ok(cond)
}

/// The links around a page: `next` after its last row, `previous` before its first.
fn links(
    page: &PageRows,
    cursor: Option<&Cursor>,
    max: i64,
    query: u64,
) -> (Option<String>, Option<String>) {
    let at = |back: bool, row: &(i64, Vec<Val>)| {
        Cursor {
            back,
            keys: row.1.clone(),
            row: row.0,
            max,
            query,
        }
        .encode()
    };
    let flipped = |c: &Cursor| {
        Cursor {
            back: !c.back,
            ..c.clone()
        }
        .encode()
    };
    let (first, last) = (page.rows.first(), page.rows.last());
    match cursor {
        None => (
            if page.more {
                last.map(|r| at(false, r))
            } else {
                None
            },
            None,
        ),
        Some(c) if !c.back => (
            if page.more {
                last.map(|r| at(false, r))
            } else {
                None
            },
            Some(first.map_or_else(|| flipped(c), |r| at(true, r))),
        ),
        Some(c) => (
            Some(last.map_or_else(|| flipped(c), |r| at(false, r))),
            if page.more {
                first.map(|r| at(true, r))
            } else {
                None
            },
        ),
    }
}

/// What a search needs to know before its statements are built.
struct Plan {
    tables: ParamTables,
    cursor: Option<Cursor>,
    query_hash: u64,
}

async fn plan<E: Exec>(e: &mut E, query: &Query) -> Result<Plan> {
    let query_hash = hash_of(&format!(
        "{:?}|{:?}|{:?}",
        query.resource_type, query.clauses, query.sort
    ));
    let cursor = match &query.page {
        Some(text) => Some(Cursor::decode(text, query_hash)?),
        None => None,
    };
    let mut params = BTreeSet::new();
    for clause in &query.clauses {
        for predicate in &clause.any {
            missing_params(predicate, &mut params);
        }
    }
    params.extend(query.sort.iter().map(|k| k.param));
    let tables = probe(e, &params).await?;
    Ok(Plan {
        tables,
        cursor,
        query_hash,
    })
}

/// The snapshot a first page reads: the greatest commit sequence number now (read in the same
/// statement, and reported by [`page_sql`] for the cursors).
const MAX_SEQ: &str = "(SELECT COALESCE(MAX(seq), 0) FROM versions)";

/// `FROM resources r WHERE ...`: the live resources that match, now or (on a later page, with
/// `b.at` set) at the snapshot.
fn from_where(b: &mut Sql<'_>, query: &Query, cursor: Option<&Cursor>) -> Result<String> {
    let (clauses, driven) = b.clauses(query, "r")?;
    // When a clause drives the search (SQLite), a unary `+` keeps the planner from using the other
    // indexes of `resources` instead.
    let plus = if driven { "+" } else { "" };
    let mut conds = vec![match cursor {
        None => format!("{plus}r.deleted = 0"),
        Some(_) => b.alive("r"),
    }];
    if let Some(ty) = query.resource_type {
        conds.push(format!("{plus}r.type = {}", b.text(ty)));
    }
    conds.extend(clauses);
    Ok(format!(
        "FROM resources r WHERE {}",
        balanced(&conds, "AND")
    ))
}

/// The sort key expressions of a search, each with whether it is descending.
fn sort_keys(b: &mut Sql<'_>, query: &Query, tables: &ParamTables) -> Vec<(String, bool)> {
    let mut keys = Vec::with_capacity(query.sort.len());
    for key in &query.sort {
        let expr = match tables.get(key.param).and_then(|t| t.first()) {
            Some(table) => {
                let a = b.alias("k");
                let p = b.text(key.param);
                let valid = b.valid(&a);
                let param = b.probe_param(&a);
                format!(
                    "(SELECT {} FROM {} {a} WHERE {a}.rid = r.rid AND {param} = {p} AND {valid})",
                    table.sort_value(&a, key.descending),
                    table.name()
                )
            }
            None => "NULL".to_string(),
        };
        keys.push((expr, key.descending));
    }
    keys
}

/// Executes a search.
pub(crate) async fn search<E: Exec>(
    e: &mut E,
    query: &Query,
    options: &SearchOptions,
) -> Result<SearchPage> {
    let Plan {
        tables,
        cursor,
        query_hash,
    } = plan(e, query).await?;
    let mut b = Sql::new(e.dialect(), &tables);
    b.at = cursor.as_ref().map(|c| c.max);
    let from_where = from_where(&mut b, query, cursor.as_ref())?;

    let total = match query.total {
        Total::None => None,
        Total::Estimate | Total::Accurate => {
            let sql = format!("SELECT COUNT(*) {from_where}");
            let rows = e.rows(&sql, &b.args).await?;
            let n = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .map_or(Ok(0), |v| v.int())?;
            Some(u64::try_from(n).unwrap_or(0))
        }
    };
    if options.count == 0 {
        return Ok(SearchPage {
            total,
            ..SearchPage::default()
        });
    }

    let keys = sort_keys(&mut b, query, &tables);
    let page = page_rows(e, b, &from_where, &keys, cursor.as_ref(), options.count).await?;
    let max = cursor.as_ref().map(|c| c.max).or(page.max).unwrap_or(0);
    let (next, previous) = links(&page, cursor.as_ref(), max, query_hash);
    let rids: Vec<i64> = page.rows.iter().map(|r| r.0).collect();
    let included = includes(e, query, &rids, options.max_includes).await?;
    Ok(SearchPage {
        matches: fetch(e, &rids, cursor.as_ref().map(|c| c.max)).await?,
        included: fetch(e, &included, None).await?,
        total,
        next,
        previous,
    })
}

/// The engine's plan for the statement that selects a search's page, one line per plan node
/// (SQLite's `EXPLAIN QUERY PLAN` details indented by depth, PostgreSQL's `EXPLAIN` text).
pub(crate) async fn explain<E: Exec>(
    e: &mut E,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<String>> {
    let d = e.dialect();
    let Plan { tables, cursor, .. } = plan(e, query).await?;
    let mut b = Sql::new(d, &tables);
    b.at = cursor.as_ref().map(|c| c.max);
    let from_where = from_where(&mut b, query, cursor.as_ref())?;
    let keys = sort_keys(&mut b, query, &tables);
    let sql = page_sql(
        &mut b,
        &from_where,
        &keys,
        cursor.as_ref(),
        options.count.max(1),
    )?;
    let rows = match d {
        Dialect::Sqlite => {
            e.rows(&format!("EXPLAIN QUERY PLAN {sql}"), &b.args)
                .await?
        }
        Dialect::Postgres => e.rows(&format!("EXPLAIN {sql}"), &b.args).await?,
    };
    let mut depth: HashMap<i64, usize> = HashMap::new();
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        match d {
            Dialect::Sqlite => {
                let mut it = row.into_iter();
                let id = it.next().map_or(Ok(0), |v| v.int())?;
                let parent = it.next().map_or(Ok(0), |v| v.int())?;
                let detail = it.last().map_or(Ok(String::new()), Val::text)?;
                let level = depth.get(&parent).map_or(0, |l| l + 1);
                depth.insert(id, level);
                lines.push(format!("{}{detail}", "  ".repeat(level)));
            }
            Dialect::Postgres => {
                lines.push(
                    row.into_iter()
                        .next()
                        .map_or(Ok(String::new()), Val::text)?,
                );
            }
        }
    }
    Ok(lines)
}

/// The rids `_include`d and `_revinclude`d by a page of matches: distinct, none a match, at most
/// `max`; `:iterate` ones repeated on what they found until nothing new turns up.
async fn includes<E: Exec>(
    e: &mut E,
    query: &Query,
    matches: &[i64],
    max: usize,
) -> Result<Vec<i64>> {
    if matches.is_empty() || (query.include.is_empty() && query.revinclude.is_empty()) {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<i64> = matches.iter().copied().collect();
    let mut out = Vec::new();
    let mut frontier = matches.to_vec();
    let mut first = true;
    while !frontier.is_empty() && out.len() < max {
        let mut found = Vec::new();
        for (include, reverse) in query
            .include
            .iter()
            .map(|i| (i, false))
            .chain(query.revinclude.iter().map(|i| (i, true)))
        {
            if !first && !include.iterate {
                continue;
            }
            for chunk in frontier.chunks(CHUNK) {
                let limit = max - out.len() + seen.len();
                for rid in include_step(e, include, reverse, chunk, limit).await? {
                    if out.len() < max && seen.insert(rid) {
                        out.push(rid);
                        found.push(rid);
                    }
                }
            }
        }
        first = false;
        frontier = found;
    }
    Ok(out)
}

async fn include_step<E: Exec>(
    e: &mut E,
    include: &Include,
    reverse: bool,
    rids: &[i64],
    limit: usize,
) -> Result<Vec<i64>> {
    let tables = ParamTables::new();
    let mut b = Sql::new(e.dialect(), &tables);
    let list = b.ints(rids);
    let source = b.text(include.source_type);
    let param = b.text(include.param);
    let sql = if reverse {
        let target = match include.target_type {
            Some(t) => format!(" AND t.type = {}", b.text(t)),
            None => String::new(),
        };
        format!(
            "SELECT DISTINCT x.rid FROM resources t JOIN idx_reference x ON x.target_type = t.type AND x.target_id = t.id \
             JOIN resources s ON s.rid = x.rid \
             WHERE t.rid IN ({list}){target} AND x.param = {param} AND x.to_seq IS NULL AND s.type = {source} \
             ORDER BY x.rid LIMIT {limit}"
        )
    } else {
        let target = match include.target_type {
            Some(t) => format!(" AND x.target_type = {}", b.text(t)),
            None => String::new(),
        };
        format!(
            "SELECT DISTINCT t.rid FROM idx_reference x JOIN resources s ON s.rid = x.rid \
             JOIN resources t ON t.type = x.target_type AND t.id = x.target_id \
             WHERE x.rid IN ({list}) AND s.type = {source} AND x.param = {param} AND x.to_seq IS NULL{target} \
             AND t.deleted = 0 \
             ORDER BY t.rid LIMIT {limit}"
        )
    };
    let mut out = Vec::new();
    for row in e.rows(&sql, &b.args).await? {
        if let Some(v) = row.into_iter().next() {
            out.push(v.int()?);
        }
    }
    Ok(out)
}

/// The live resources in some Patients' compartments, by rid, paged like a search.
pub(crate) async fn compartment<E: Exec>(
    e: &mut E,
    request: &CompartmentRequest,
) -> Result<SearchPage> {
    if request.patient_ids.is_empty() {
        return Ok(SearchPage::default());
    }
    let mut members = request.patient_ids.clone();
    if request.linked {
        members.extend(
            crate::mpi::persons_of(e, &request.patient_ids)
                .await?
                .into_iter()
                .map(|(_, linked)| linked),
        );
        members.sort();
        members.dedup();
    }
    let query_hash = hash_of(&format!(
        "{:?}|{:?}|{:?}|{:?}",
        request.patient_ids, members, request.types, request.since
    ));
    let cursor = match &request.cursor {
        Some(text) => Some(Cursor::decode(text, query_hash)?),
        None => None,
    };
    let tables = ParamTables::new();
    let mut b = Sql::new(e.dialect(), &tables);
    b.at = cursor.as_ref().map(|c| c.max);
    let patients = b.list(&members);
    let named = b.list(&request.patient_ids);
    let patient_type = b.text("Patient");
    // The compartment drives: on SQLite, keep the planner from scanning all resources of a `_type`
    // in rid order instead (see [`from_where`]).
    let plus = if e.dialect() == Dialect::Sqlite {
        "+"
    } else {
        ""
    };
    let live = match cursor {
        None => format!("{plus}r.deleted = 0"),
        Some(_) => b.alive("r"),
    };
    let valid = b.valid("c");
    let mut conds = vec![
        live,
        format!(
            "r.rid IN (SELECT c.rid FROM compartment c WHERE c.patient_id IN ({patients}) AND {valid})"
        ),
        format!("NOT (r.type = {patient_type} AND r.id IN ({named}))"),
    ];
    if !request.types.is_empty() {
        conds.push(format!("{plus}r.type IN ({})", b.list(&request.types)));
    }
    if let Some(since) = request.since {
        conds.push(format!("r.last_updated >= {}", b.int(since)));
    }
    let from_where = format!("FROM resources r WHERE {}", conds.join(" AND "));
    if request.count == 0 {
        return Ok(SearchPage::default());
    }
    let page = page_rows(e, b, &from_where, &[], cursor.as_ref(), request.count).await?;
    let max = cursor.as_ref().map(|c| c.max).or(page.max).unwrap_or(0);
    let (next, previous) = links(&page, cursor.as_ref(), max, query_hash);
    let rids: Vec<i64> = page.rows.iter().map(|r| r.0).collect();
    Ok(SearchPage {
        matches: fetch(e, &rids, cursor.as_ref().map(|c| c.max)).await?,
        included: Vec::new(),
        total: None,
        next,
        previous,
    })
}

/// Versions newest first, by the global sequence.
pub(crate) async fn history<E: Exec>(e: &mut E, request: &HistoryRequest) -> Result<HistoryPage> {
    let query_hash = hash_of(&format!(
        "{:?}|{:?}|{:?}",
        request.scope, request.since, request.at
    ));
    let cursor = match &request.cursor {
        Some(text) => Some(Cursor::decode(text, query_hash)?),
        None => None,
    };
    let d = e.dialect();
    let tables = ParamTables::new();
    let filter = |b: &mut Sql<'_>| {
        let mut conds = Vec::new();
        match &request.scope {
            HistoryScope::System => {}
            HistoryScope::Type(ty) => conds.push(format!("v.type = {}", b.text(ty))),
            HistoryScope::Instance(ty, id) => {
                conds.push(format!("r.type = {}", b.text(ty)));
                conds.push(format!("r.id = {}", b.text(id)));
            }
        }
        if let Some(since) = request.since {
            conds.push(format!("v.last_updated >= {}", b.int(since)));
        }
        if let Some((start, end)) = request.at {
            let (start, end) = (b.int(start), b.int(end));
            conds.push(format!(
                "v.last_updated <= {end} AND NOT EXISTS (SELECT 1 FROM versions w \
                 WHERE w.rid = v.rid AND w.last_updated <= {start} AND w.seq > v.seq)"
            ));
        }
        conds
    };
    let total = if matches!(request.scope, HistoryScope::Instance(..)) {
        let mut b = Sql::new(d, &tables);
        let conds = filter(&mut b);
        let sql = format!(
            "SELECT COUNT(*) FROM versions v JOIN resources r ON r.rid = v.rid WHERE {}",
            balanced(&conds, "AND")
        );
        let rows = e.rows(&sql, &b.args).await?;
        let n = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .map_or(Ok(0), |v| v.int())?;
        Some(u64::try_from(n).unwrap_or(0))
    } else {
        None
    };
    let mut b = Sql::new(d, &tables);
    let mut conds = filter(&mut b);
    if let Some(c) = &cursor {
        conds.push(format!("v.seq < {}", b.int(c.row)));
    }
    let limit = request.count + 1;
    let sql = format!(
        "SELECT {}, v.seq FROM versions v JOIN resources r ON r.rid = v.rid WHERE {} ORDER BY v.seq DESC LIMIT {limit}",
        stored_columns(d, Patients::Unread),
        balanced(&conds, "AND")
    );
    let rows = e.rows(&sql, &b.args).await?;
    let more = rows.len() > request.count;
    let mut entries = Vec::with_capacity(request.count);
    let mut last_seq = None;
    for mut row in rows.into_iter().take(request.count) {
        let seq = row
            .pop()
            .ok_or_else(|| StoreError::Database("short row".to_string()))?
            .int()?;
        entries.push(stored_from_row(row, Patients::Unread)?.1);
        last_seq = Some(seq);
    }
    let next = match (more, last_seq) {
        (true, Some(seq)) => Some(
            Cursor {
                back: false,
                keys: Vec::new(),
                row: seq,
                max: 0,
                query: query_hash,
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(HistoryPage {
        entries,
        total,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir::search::{Clause, TokenTest};

    fn clause(predicate: Predicate) -> Clause {
        Clause {
            any: vec![predicate],
        }
    }

    fn code(code: &str) -> Predicate {
        Predicate::Index {
            param: "code",
            test: Test::Token(TokenTest::Code {
                system: Some(Some("http://loinc.org".into())),
                code: Some(code.into()),
            }),
        }
    }

    fn subject(id: &str) -> Predicate {
        Predicate::Index {
            param: "subject",
            test: Test::Reference {
                target_type: Some("Patient".into()),
                target_id: Some(id.into()),
                url: None,
                version: None,
            },
        }
    }

    fn date(prefix: Prefix, low: i64, high: i64) -> Predicate {
        Predicate::Index {
            param: "date",
            test: Test::Date { prefix, low, high },
        }
    }

    #[test]
    fn the_most_selective_clause_drives_whatever_its_position() {
        let q = |clauses: Vec<Clause>| Query {
            clauses,
            ..Query::default()
        };
        assert_eq!(
            driver(&q(vec![clause(code("x")), clause(subject("p1"))])),
            Some(1)
        );
        assert_eq!(
            driver(&q(vec![clause(subject("p1")), clause(code("x"))])),
            Some(0)
        );
        // A day beats a name prefix; a range never beats a reference.
        let family = Predicate::Index {
            param: "family",
            test: Test::String {
                value: "smi".into(),
                mode: StringMatch::StartsWith,
            },
        };
        let day = date(Prefix::Eq, 0, 86_400_000 - 1);
        assert_eq!(driver(&q(vec![clause(family), clause(day)])), Some(1));
        assert_eq!(
            driver(&q(vec![
                clause(date(Prefix::Ge, 0, 1)),
                clause(subject("p1"))
            ])),
            Some(1)
        );
        // An OR clause is as selective as its least selective member.
        let either = Clause {
            any: vec![subject("p1"), date(Prefix::Gt, 0, 1)],
        };
        assert_eq!(driver(&q(vec![either, clause(code("x"))])), Some(1));
        // `:not` and `:missing` never drive.
        let not = Predicate::Not {
            param: "code",
            test: Test::Token(TokenTest::Code {
                system: None,
                code: Some("x".into()),
            }),
        };
        assert_eq!(driver(&q(vec![clause(not)])), None);
        assert_eq!(driver(&q(vec![])), None);
    }
}
