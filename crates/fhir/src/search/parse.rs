//! The parser from a search's query parameters to a [`Query`], resolving every parameter against the
//! generated tables. Returns every problem found.
//!
//! Two kinds of problem: what the server does not know or support (an unknown parameter or modifier) is a
//! warning under lenient handling and an error under strict handling; what is malformed (a bad date, an
//! unknown prefix, a `_count` that is not a number) is always an error. Parsing goes on after a problem so
//! that the caller hears about all of them at once.

use super::datetime;
use super::extract::{is_absolute, is_id};
use super::model::{
    Clause, Include, Predicate, Prefix, Query, SortKey, StringMatch, Summary, Test, TokenTest,
    Total, UriMatch,
};
use super::normalize::normalize;
use crate::definitions::{self, ParamType, SearchParam};
use crate::{Issue, IssueType};

/// A parsed search, and the issues to report alongside the results (ignored parameters under lenient
/// handling).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub query: Query,
    pub warnings: Vec<Issue>,
    /// The positions in `params` of the parameters that were ignored (unknown or unsupported, under
    /// lenient handling): a searchset's links leave them out, as they were not part of the search.
    pub ignored: Vec<usize>,
}

/// Parses the query parameters of a search on `resource_type` (`None` for a search across all types).
/// `params` are decoded name/value pairs in the order given, including result parameters (`_count`,
/// `_sort`, `_include`...). Parameters that are not about search (`_format`, `_pretty`) are ignored.
/// Unknown or unsupported parameters are warnings when `strict` is false and errors when it is true;
/// malformed values are always errors.
pub fn parse(
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
) -> Result<Parsed, Vec<Issue>> {
    let mut parser = Parser {
        strict,
        issues: Vec::new(),
        query: Query::default(),
        budget: 0,
        too_costly: false,
        ignoring: false,
    };
    let ty = match resource_type {
        None => None,
        Some(name) => match intern_type(name) {
            Some(ty) => Some(ty),
            None => {
                return Err(vec![Issue::error(
                    IssueType::NotSupported,
                    format!("'{name}' is not a resource type this server knows"),
                )]);
            }
        },
    };
    parser.query.resource_type = ty;
    if let Some(issue) = too_big(params) {
        return Err(vec![issue]);
    }
    let mut ignored = Vec::new();
    for (position, (name, value)) in params.iter().enumerate() {
        if name.chars().chain(value.chars()).any(is_forbidden_char) {
            // The value is not echoed: it may be anything.
            parser.invalid(format!(
                "{}: search parameters may not contain control characters (other than tab, carriage \
                 return and line feed)",
                name.replace(is_forbidden_char, "?")
            ));
            continue;
        }
        parser.ignoring = false;
        parser.param(ty, name, value);
        if parser.ignoring {
            ignored.push(position);
        }
    }
    let Parser { issues, query, .. } = parser;
    let mut unique: Vec<Issue> = Vec::with_capacity(issues.len());
    for issue in issues {
        if !unique.contains(&issue) {
            unique.push(issue);
        }
    }
    if unique.iter().any(Issue::is_error) {
        Err(unique)
    } else {
        Ok(Parsed {
            query,
            warnings: unique,
            ignored,
        })
    }
}

/// The most parameters (name=value pairs, result parameters included) one search may have.
pub const MAX_PARAMS: usize = 100;

/// The most values one search may have over all its parameters (each value of a comma-separated OR
/// list counts). A client looking up more ids than this sends several searches.
pub const MAX_VALUES: usize = 1000;

/// A search beyond [`MAX_PARAMS`] or [`MAX_VALUES`]: refused as too costly before anything is planned.
fn too_big(params: &[(String, String)]) -> Option<Issue> {
    if params.len() > MAX_PARAMS {
        return Some(Issue::error(
            IssueType::TooCostly,
            format!(
                "a search may have at most {MAX_PARAMS} parameters; this one has {}",
                params.len()
            ),
        ));
    }
    let values: usize = params.iter().map(|(_, v)| v.split(',').count()).sum();
    (values > MAX_VALUES).then(|| {
        Issue::error(
            IssueType::TooCostly,
            format!(
                "a search may have at most {MAX_VALUES} values in all; this one has {values} \
                 (split the list over several searches)"
            ),
        )
    })
}

/// Characters that validation keeps out of every stored string (the C0 control characters other than
/// tab, CR and LF), so that no search can match them; PostgreSQL cannot even take NUL as a value.
pub fn is_forbidden_char(c: char) -> bool {
    (c as u32) < 32 && !matches!(c, '\t' | '\r' | '\n')
}

/// The interned name of a resource type.
fn intern_type(name: &str) -> Option<&'static str> {
    let types = definitions::resource_types();
    types.binary_search(&name).ok().map(|i| types[i])
}

/// A search parameter of `ty`, or a common one when the search spans all types.
fn lookup(ty: Option<&'static str>, code: &str) -> Option<&'static SearchParam> {
    match ty {
        Some(ty) => definitions::search_param(ty, code),
        None => {
            let common = definitions::common_search_params();
            common
                .binary_search_by(|p| p.code.cmp(code))
                .ok()
                .map(|i| &common[i])
        }
    }
}

fn type_label(ty: Option<&str>) -> &str {
    ty.unwrap_or("a search across all types")
}

/// A modifier after `:` in a parameter name, checked against the parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    OfType,
    Above,
    Below,
    Identifier,
    /// `subject:Patient=123`.
    Type(&'static str),
}

/// A parameter name resolved against the tables: what the values will be tested against.
#[derive(Debug, Clone)]
enum Resolved {
    Leaf {
        param: &'static SearchParam,
        modifier: Option<Modifier>,
        ty: Option<&'static str>,
    },
    /// `param` is a reference; each target type that has the rest of the chain, with its resolution.
    Chain {
        param: &'static SearchParam,
        targets: Vec<(&'static str, Resolved)>,
    },
    /// `_has:source_type:ref_param:inner`.
    Has {
        source_type: &'static str,
        ref_param: &'static SearchParam,
        inner: Box<Resolved>,
    },
}

struct Parser {
    strict: bool,
    issues: Vec<Issue>,
    query: Query,
    /// How many more (type, name) resolutions the parameter being parsed may take (see [`MAX_RESOLUTIONS`]).
    budget: usize,
    /// Set when the budget ran out: the parameter is refused.
    too_costly: bool,
    /// Set when the parameter being parsed is ignored (unknown or unsupported).
    ignoring: bool,
}

/// The most reference hops (chain links and `_has` steps) one parameter may take.
pub const MAX_CHAIN_LINKS: usize = 6;

/// The most (type, name) resolutions one parameter may need. A chain through a parameter that refers to any
/// type (`Task?subject.subject.name`: Task.subject may point at 145 types) branches at every link; beyond
/// this the search is refused as too costly rather than planned.
pub const MAX_RESOLUTIONS: usize = 2000;

impl Parser {
    /// Something the server does not know or support: ignored with a warning, or an error under strict.
    fn unsupported(&mut self, diagnostics: String) {
        self.ignoring = true;
        let issue = if self.strict {
            Issue::error(IssueType::NotSupported, diagnostics)
        } else {
            Issue::warning(IssueType::NotSupported, diagnostics)
        };
        self.issues.push(issue);
    }

    /// A malformed value: always an error.
    fn invalid(&mut self, diagnostics: String) {
        self.issues
            .push(Issue::error(IssueType::Invalid, diagnostics));
    }

    fn param(&mut self, ty: Option<&'static str>, name: &str, value: &str) {
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (name, None),
        };
        match (base, modifier) {
            ("", None) if value.is_empty() => {}
            ("_format" | "_pretty", _) => {}
            ("_count", None) => match value.trim().parse::<usize>() {
                Ok(n) => self.query.count = Some(n),
                Err(_) => self.invalid(format!(
                    "_count: '{value}' is not a non-negative whole number"
                )),
            },
            ("_total", None) => match value {
                "none" => self.query.total = Total::None,
                "estimate" => self.query.total = Total::Estimate,
                "accurate" => self.query.total = Total::Accurate,
                _ => self.invalid(format!(
                    "_total: '{value}' is not one of none, estimate, accurate"
                )),
            },
            ("_summary", None) => match value {
                "true" => self.query.summary = Some(Summary::True),
                "text" => self.query.summary = Some(Summary::Text),
                "data" => self.query.summary = Some(Summary::Data),
                "count" => self.query.summary = Some(Summary::Count),
                "false" => self.query.summary = Some(Summary::False),
                _ => self.invalid(format!(
                    "_summary: '{value}' is not one of true, text, data, count, false"
                )),
            },
            ("_elements", None) => {
                let elements = value.split(',').map(str::trim).filter(|e| !e.is_empty());
                self.query.elements.extend(elements.map(str::to_string));
            }
            ("_page", None) => self.query.page = Some(value.to_string()),
            ("_sort", None) => self.sort(ty, value),
            ("_include" | "_revinclude", modifier) => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(other) => {
                        self.unsupported(format!(
                            "{base}: the modifier ':{other}' is not supported"
                        ));
                        return;
                    }
                };
                self.include(ty, base == "_revinclude", iterate, value);
            }
            _ => self.search_param(ty, name, value),
        }
    }

    fn sort(&mut self, ty: Option<&'static str>, value: &str) {
        for key in value.split(',') {
            let key = key.trim();
            let (code, descending) = match key.strip_prefix('-') {
                Some(code) => (code, true),
                None => (key, false),
            };
            match lookup(ty, code) {
                Some(param) if !param.expression.is_empty() && param.kind != ParamType::Special => {
                    self.query.sort.push(SortKey {
                        param: param.code,
                        descending,
                    });
                }
                _ if code.is_empty() => self.invalid("_sort: an empty sort key".to_string()),
                _ => self.invalid(format!(
                    "_sort: '{code}' is not a search parameter of {} to sort by",
                    type_label(ty)
                )),
            }
        }
    }

    fn include(&mut self, ty: Option<&'static str>, reverse: bool, iterate: bool, value: &str) {
        let mut found = Vec::new();
        self.include_into(&mut found, ty, reverse, iterate, value);
        let list = if reverse {
            &mut self.query.revinclude
        } else {
            &mut self.query.include
        };
        list.extend(found);
    }

    fn include_into(
        &mut self,
        list: &mut Vec<Include>,
        ty: Option<&'static str>,
        reverse: bool,
        iterate: bool,
        value: &str,
    ) {
        let name = if reverse { "_revinclude" } else { "_include" };
        if value == "*" {
            let Some(ty) = ty else {
                self.unsupported(format!("{name}=*: needs a resource type to search"));
                return;
            };
            if reverse {
                for &source in definitions::resource_types() {
                    for param in definitions::search_params(source) {
                        if param.kind == ParamType::Reference && param.targets.contains(&ty) {
                            list.push(Include {
                                source_type: source,
                                param: param.code,
                                target_type: Some(ty),
                                iterate,
                            });
                        }
                    }
                }
            } else {
                list.extend(reference_params(ty).map(|param| Include {
                    source_type: ty,
                    param: param.code,
                    target_type: None,
                    iterate,
                }));
            }
            return;
        }
        let mut parts = value.splitn(3, ':');
        let (Some(source), Some(code)) = (parts.next(), parts.next()) else {
            self.invalid(format!(
                "{name}: '{value}' is not of the form Type:parameter[:targetType]"
            ));
            return;
        };
        let target = parts.next();
        let Some(source_type) = intern_type(source) else {
            self.unsupported(format!("{name}: '{source}' is not a resource type"));
            return;
        };
        if code == "*" {
            list.extend(reference_params(source_type).map(|param| Include {
                source_type,
                param: param.code,
                target_type: None,
                iterate,
            }));
            return;
        }
        let param = match definitions::search_param(source_type, code) {
            Some(param) if param.kind == ParamType::Reference => param,
            _ => {
                self.unsupported(format!(
                    "{name}: '{code}' is not a reference search parameter of {source_type}"
                ));
                return;
            }
        };
        let target_type = match target {
            None => None,
            Some(target) => match intern_type(target) {
                Some(t) if param.targets.is_empty() || param.targets.contains(&t) => Some(t),
                _ => {
                    self.unsupported(format!(
                        "{name}: '{target}' is not a type that {source_type}:{code} can refer to"
                    ));
                    return;
                }
            },
        };
        list.push(Include {
            source_type,
            param: param.code,
            target_type,
            iterate,
        });
    }

    fn search_param(&mut self, ty: Option<&'static str>, name: &str, value: &str) {
        let links = name.matches('.').count() + name.matches("_has:").count();
        if links > MAX_CHAIN_LINKS {
            self.issues.push(Issue::error(
                IssueType::TooCostly,
                format!("{name}: chains may take at most {MAX_CHAIN_LINKS} references"),
            ));
            return;
        }
        self.budget = MAX_RESOLUTIONS;
        self.too_costly = false;
        let resolved = self.resolve(ty, name);
        if self.too_costly {
            self.issues.push(Issue::error(
                IssueType::TooCostly,
                format!(
                    "{name}: the chain goes through too many resource types; name the type at each link \
                     (for example subject:Patient.name)"
                ),
            ));
            return;
        }
        let Some(resolved) = resolved else {
            return;
        };
        let values: Vec<&str> = split_unescaped(value, ',')
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            self.unsupported(format!("{name}: no value given, the parameter is ignored"));
            return;
        }
        let mut any = Vec::new();
        let mut failed = false;
        for v in values {
            match self.build(&resolved, name, v) {
                Some(predicates) => any.extend(predicates),
                None => failed = true,
            }
        }
        if failed || any.is_empty() {
            return;
        }
        // `code:not=a,b` asks for neither a nor b: one clause per value, ANDed.
        if matches!(
            resolved,
            Resolved::Leaf {
                modifier: Some(Modifier::Not),
                ..
            }
        ) {
            self.query
                .clauses
                .extend(any.into_iter().map(|p| Clause { any: vec![p] }));
        } else {
            self.query.clauses.push(Clause { any });
        }
    }

    /// Resolves a parameter name (with modifiers, chains and `_has`) on `ty`, reporting what is unknown.
    fn resolve(&mut self, ty: Option<&'static str>, name: &str) -> Option<Resolved> {
        if self.budget == 0 {
            self.too_costly = true;
            return None;
        }
        self.budget -= 1;
        if let Some(rest) = name.strip_prefix("_has:") {
            return self.resolve_has(ty, name, rest);
        }
        let (head, chain) = match name.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (name, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (head, None),
        };
        let Some(param) = lookup(ty, code) else {
            self.unsupported(format!(
                "Unknown search parameter '{code}' for {}",
                type_label(ty)
            ));
            return None;
        };
        if param.expression.is_empty() || param.kind == ParamType::Special {
            self.unsupported(format!("The search parameter '{code}' is not supported"));
            return None;
        }
        let Some(chain) = chain else {
            let modifier = match modifier {
                None => None,
                Some(m) => Some(self.modifier(param, m)?),
            };
            return Some(Resolved::Leaf {
                param,
                modifier,
                ty,
            });
        };
        if param.kind != ParamType::Reference {
            self.unsupported(format!(
                "{name}: '{code}' is not a reference parameter, so it cannot be chained"
            ));
            return None;
        }
        let targets: Vec<&'static str> = match modifier {
            None => param.targets.to_vec(),
            Some(m) => match self.modifier(param, m)? {
                Modifier::Type(t) => vec![t],
                _ => {
                    self.unsupported(format!(
                        "{name}: only a type modifier can come before a chain"
                    ));
                    return None;
                }
            },
        };
        // Each target type that has the rest of the chain; what is unknown on one target is not a
        // problem as long as another has it.
        let mut resolved_targets = Vec::new();
        let mut first_problems = None;
        for target in targets {
            let saved = std::mem::take(&mut self.issues);
            let ignoring = self.ignoring;
            let inner = self.resolve(Some(target), chain);
            // A target without the rest of the chain does not make the parameter ignored.
            self.ignoring = ignoring;
            let problems = std::mem::replace(&mut self.issues, saved);
            match inner {
                Some(inner) => {
                    self.issues.extend(problems);
                    resolved_targets.push((target, inner));
                }
                None => {
                    first_problems.get_or_insert(problems);
                }
            }
        }
        if resolved_targets.is_empty() {
            self.ignoring = true;
            match first_problems {
                Some(problems) if !problems.is_empty() => self.issues.extend(problems),
                _ => self.unsupported(format!(
                    "{name}: no type that '{code}' refers to has '{chain}'"
                )),
            }
            return None;
        }
        Some(Resolved::Chain {
            param,
            targets: resolved_targets,
        })
    }

    fn resolve_has(
        &mut self,
        ty: Option<&'static str>,
        name: &str,
        rest: &str,
    ) -> Option<Resolved> {
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(code), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            self.invalid(format!(
                "{name}: _has needs the form _has:Type:reference:parameter"
            ));
            return None;
        };
        let Some(ty) = ty else {
            self.unsupported(format!("{name}: _has needs a resource type to search"));
            return None;
        };
        let Some(source_type) = intern_type(source) else {
            self.unsupported(format!("{name}: '{source}' is not a resource type"));
            return None;
        };
        let ref_param = match definitions::search_param(source_type, code) {
            Some(p)
                if p.kind == ParamType::Reference
                    && (p.targets.is_empty() || p.targets.contains(&ty)) =>
            {
                p
            }
            _ => {
                self.unsupported(format!("{name}: '{code}' is not a reference search parameter of {source_type} that can refer to {ty}"));
                return None;
            }
        };
        let inner = self.resolve(Some(source_type), inner)?;
        Some(Resolved::Has {
            source_type,
            ref_param,
            inner: Box::new(inner),
        })
    }

    fn modifier(&mut self, param: &'static SearchParam, modifier: &str) -> Option<Modifier> {
        use ParamType as P;
        let m = match (param.kind, modifier) {
            (_, "missing") => Some(Modifier::Missing),
            (P::String, "exact") => Some(Modifier::Exact),
            (P::String, "contains") => Some(Modifier::Contains),
            (P::Token, "text") => Some(Modifier::Text),
            (P::Token, "not") => Some(Modifier::Not),
            (P::Token, "of-type") => Some(Modifier::OfType),
            (P::Uri, "above") => Some(Modifier::Above),
            (P::Uri, "below") => Some(Modifier::Below),
            (P::Reference, "identifier") => Some(Modifier::Identifier),
            (P::Reference, t) => intern_type(t)
                .filter(|t| param.targets.is_empty() || param.targets.contains(t))
                .map(Modifier::Type),
            _ => None,
        };
        if m.is_none() {
            self.unsupported(format!(
                "{}: the modifier ':{modifier}' is not supported",
                param.code
            ));
        }
        m
    }

    /// The predicates for one (comma-separated) value of a resolved parameter; `None` if it is malformed.
    fn build(&mut self, resolved: &Resolved, name: &str, value: &str) -> Option<Vec<Predicate>> {
        match resolved {
            Resolved::Leaf {
                param,
                modifier,
                ty,
            } => {
                let code = param.code;
                let predicate = match modifier {
                    Some(Modifier::Missing) => match value {
                        "true" => Predicate::Missing {
                            param: code,
                            missing: true,
                        },
                        "false" => Predicate::Missing {
                            param: code,
                            missing: false,
                        },
                        _ => {
                            self.invalid(format!(
                                "{name}: ':missing' takes true or false, not '{value}'"
                            ));
                            return None;
                        }
                    },
                    Some(Modifier::Not) => Predicate::Not {
                        param: code,
                        test: self.test(*ty, param, None, name, value)?,
                    },
                    _ if param.kind == ParamType::Composite => Predicate::Composite {
                        param: code,
                        components: self.composite(*ty, param, name, value)?,
                    },
                    _ => Predicate::Index {
                        param: code,
                        test: self.test(*ty, param, *modifier, name, value)?,
                    },
                };
                Some(vec![predicate])
            }
            Resolved::Chain { param, targets } => {
                // Target types whose inner predicate comes out the same share one Chain.
                let mut groups: Vec<(Predicate, Vec<&'static str>)> = Vec::new();
                for (target, inner) in targets {
                    for predicate in self.build(inner, name, value)? {
                        match groups.iter_mut().find(|(p, _)| *p == predicate) {
                            Some((_, types)) => types.push(target),
                            None => groups.push((predicate, vec![target])),
                        }
                    }
                }
                Some(
                    groups
                        .into_iter()
                        .map(|(inner, target_types)| Predicate::Chain {
                            param: param.code,
                            target_types,
                            inner: Box::new(inner),
                        })
                        .collect(),
                )
            }
            Resolved::Has {
                source_type,
                ref_param,
                inner,
            } => Some(
                self.build(inner, name, value)?
                    .into_iter()
                    .map(|inner| Predicate::Has {
                        source_type,
                        ref_param: ref_param.code,
                        inner: Box::new(inner),
                    })
                    .collect(),
            ),
        }
    }

    fn composite(
        &mut self,
        ty: Option<&'static str>,
        param: &'static SearchParam,
        name: &str,
        value: &str,
    ) -> Option<Vec<(&'static str, Test)>> {
        let parts = split_unescaped(value, '$');
        if parts.len() != param.components.len() {
            self.invalid(format!(
                "{name}: '{value}' needs {} parts separated by '$'",
                param.components.len()
            ));
            return None;
        }
        let mut components = Vec::with_capacity(parts.len());
        let mut ok = true;
        for (component, part) in param.components.iter().zip(parts) {
            let Some(component_param) = lookup(ty, component.param) else {
                self.unsupported(format!(
                    "{name}: the component '{}' is not supported",
                    component.param
                ));
                return None;
            };
            match self.test(ty, component_param, None, name, part) {
                Some(test) => components.push((component_param.code, test)),
                None => ok = false,
            }
        }
        ok.then_some(components)
    }

    /// The test for one value of a parameter by its type; `None` (with an error) if the value is malformed.
    fn test(
        &mut self,
        ty: Option<&'static str>,
        param: &'static SearchParam,
        modifier: Option<Modifier>,
        name: &str,
        value: &str,
    ) -> Option<Test> {
        let _ = ty;
        match param.kind {
            ParamType::String => {
                let value = unescape(value);
                Some(match modifier {
                    Some(Modifier::Exact) => Test::String {
                        value,
                        mode: StringMatch::Exact,
                    },
                    Some(Modifier::Contains) => Test::String {
                        value: normalize(&value),
                        mode: StringMatch::Contains,
                    },
                    _ => Test::String {
                        value: normalize(&value),
                        mode: StringMatch::StartsWith,
                    },
                })
            }
            ParamType::Token => Some(Test::Token(self.token(modifier, name, value)?)),
            ParamType::Reference => self.reference(param, modifier, name, value),
            ParamType::Date => {
                let (prefix, rest) = self.prefix(name, value)?;
                // A `+` of a time zone that was not percent-encoded arrives as a space.
                let rest = rest.replace(' ', "+");
                match datetime::parse_range(&rest) {
                    Some((low, high)) => Some(Test::Date { prefix, low, high }),
                    None => {
                        self.invalid(format!(
                            "{name}: '{value}' is not a valid date, dateTime or instant"
                        ));
                        None
                    }
                }
            }
            ParamType::Number => {
                let (prefix, rest) = self.prefix(name, value)?;
                match number_range(rest) {
                    Some((low, high)) => Some(Test::Number { prefix, low, high }),
                    None => {
                        self.invalid(format!("{name}: '{value}' is not a number"));
                        None
                    }
                }
            }
            ParamType::Quantity => {
                let (prefix, rest) = self.prefix(name, value)?;
                let parts = split_unescaped(rest, '|');
                if parts.len() > 3 || parts.len() == 2 {
                    self.invalid(format!(
                        "{name}: '{value}' is not of the form [prefix]number[|system|code]"
                    ));
                    return None;
                }
                let Some((low, high)) = number_range(parts[0]) else {
                    self.invalid(format!("{name}: '{value}' does not start with a number"));
                    return None;
                };
                let system = parts.get(1).filter(|s| !s.is_empty()).map(|s| unescape(s));
                let code = parts.get(2).filter(|s| !s.is_empty()).map(|s| unescape(s));
                Some(Test::Quantity {
                    prefix,
                    low,
                    high,
                    system,
                    code,
                })
            }
            ParamType::Uri => {
                let mode = match modifier {
                    Some(Modifier::Above) => UriMatch::Above,
                    Some(Modifier::Below) => UriMatch::Below,
                    _ => UriMatch::Exact,
                };
                Some(Test::Uri {
                    value: unescape(value),
                    mode,
                })
            }
            ParamType::Composite | ParamType::Special => {
                self.unsupported(format!("{name}: this parameter cannot be used here"));
                None
            }
        }
    }

    fn token(&mut self, modifier: Option<Modifier>, name: &str, value: &str) -> Option<TokenTest> {
        match modifier {
            Some(Modifier::Text) => return Some(TokenTest::Text(normalize(&unescape(value)))),
            Some(Modifier::OfType) => {
                let parts = split_unescaped(value, '|');
                return match parts[..] {
                    [system, code, id] if !code.is_empty() && !id.is_empty() => {
                        Some(TokenTest::OfType {
                            type_system: (!system.is_empty()).then(|| unescape(system)),
                            type_code: unescape(code),
                            value: unescape(id),
                        })
                    }
                    _ => {
                        self.invalid(format!(
                            "{name}: ':of-type' needs system|code|value, not '{value}'"
                        ));
                        None
                    }
                };
            }
            _ => {}
        }
        let parts = split_unescaped(value, '|');
        match parts[..] {
            [code] => Some(TokenTest::Code {
                system: None,
                code: Some(unescape(code)),
            }),
            ["", ""] => {
                self.invalid(format!("{name}: '{value}' has neither a system nor a code"));
                None
            }
            [system, code] => Some(TokenTest::Code {
                system: Some((!system.is_empty()).then(|| unescape(system))),
                code: (!code.is_empty()).then(|| unescape(code)),
            }),
            _ => {
                self.invalid(format!("{name}: '{value}' has more than one '|'"));
                None
            }
        }
    }

    fn reference(
        &mut self,
        param: &'static SearchParam,
        modifier: Option<Modifier>,
        name: &str,
        value: &str,
    ) -> Option<Test> {
        if modifier == Some(Modifier::Identifier) {
            return Some(Test::ReferenceIdentifier(self.token(None, name, value)?));
        }
        let value = unescape(value);
        let malformed = |parser: &mut Self| {
            parser.invalid(format!(
                "{name}: '{value}' is not a reference (id, Type/id or absolute URL)"
            ));
            None
        };
        if is_absolute(&value) {
            let (url, version) = match value.split_once('|') {
                Some((url, version)) => (url.to_string(), Some(version.to_string())),
                None => (value.clone(), None),
            };
            if url.is_empty() {
                return malformed(self);
            }
            return Some(Test::Reference {
                target_type: None,
                target_id: None,
                url: Some(url),
                version,
            });
        }
        let segments: Vec<&str> = value.split('/').collect();
        let (target_type, id) = match segments[..] {
            [id] => {
                let implied = match modifier {
                    Some(Modifier::Type(t)) => Some(t),
                    _ if param.targets.len() == 1 => Some(param.targets[0]),
                    _ => None,
                };
                (implied, id)
            }
            [ty, id] | [ty, id, "_history", _] => match intern_type(ty) {
                Some(t) => match modifier {
                    Some(Modifier::Type(m)) if m != t => {
                        self.invalid(format!("{name}: '{value}' is not a {m}"));
                        return None;
                    }
                    _ => (Some(t), id),
                },
                None => return malformed(self),
            },
            _ => return malformed(self),
        };
        if !is_id(id) {
            return malformed(self);
        }
        Some(Test::Reference {
            target_type: target_type.map(str::to_string),
            target_id: Some(id.to_string()),
            url: None,
            version: None,
        })
    }

    /// A comparison prefix (`ge2020`): the prefix and the rest. Two leading letters that are not a
    /// prefix are an error.
    fn prefix<'v>(&mut self, name: &str, value: &'v str) -> Option<(Prefix, &'v str)> {
        let b = value.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || !b[1].is_ascii_alphabetic() {
            return Some((Prefix::Eq, value));
        }
        let prefix = match &value[..2] {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            other => {
                self.invalid(format!(
                    "{name}: '{other}' is not a search prefix (eq, ne, gt, lt, ge, le, sa, eb, ap)"
                ));
                return None;
            }
        };
        Some((prefix, &value[2..]))
    }
}

/// The reference parameters of a type (for `_include=*` and `Type:*`).
fn reference_params(ty: &'static str) -> impl Iterator<Item = &'static SearchParam> {
    definitions::search_params(ty)
        .iter()
        .filter(|p| p.kind == ParamType::Reference)
}

/// The range a search number stands for, from its implicit precision: `100` is [99.5, 100.5], `1.0`
/// is [0.95, 1.05], `1e2` is [50, 150].
pub fn number_range(s: &str) -> Option<(f64, f64)> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == int_start {
        return None;
    }
    let mut decimals: i32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == frac_start {
            return None;
        }
        decimals = i32::try_from(i - frac_start).ok()?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_start = i;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let digits_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits_start || i - digits_start > 4 {
            return None;
        }
        let exponent: i32 = s[exp_start..i].parse().ok()?;
        decimals -= exponent;
    }
    if i != b.len() {
        return None;
    }
    let value: f64 = s.parse().ok()?;
    // The bounds are computed in decimal (`5.4` → `535e-2`, `545e-2`) so that they are the nearest
    // doubles to the decimal bounds, as a value written `5.35` in a resource would be.
    let mantissa_digits: String = s[..i]
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '.' && *c != '+')
        .collect();
    let bounds = mantissa_digits.parse::<i128>().ok().and_then(|m| {
        let m10 = m.checked_mul(10)?;
        let scale = -(i64::from(decimals) + 1);
        let low: f64 = format!("{}e{scale}", m10.checked_sub(5)?).parse().ok()?;
        let high: f64 = format!("{}e{scale}", m10.checked_add(5)?).parse().ok()?;
        Some((low, high))
    });
    let (low, high) = bounds.unwrap_or_else(|| {
        let half = 0.5 * 10f64.powi(-decimals);
        (value - half, value + half)
    });
    (value.is_finite() && low.is_finite() && high.is_finite()).then_some((low, high))
}

/// Splits `s` at each `sep` not escaped by a backslash; the parts keep their escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Removes the search escapes `\,` `\$` `\|` `\\`; any other backslash stays as written.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next @ (',' | '$' | '|' | '\\')) = chars.peek() {
                out.push(next);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{number_range, split_unescaped, unescape};

    #[test]
    fn escapes() {
        assert_eq!(split_unescaped(r"a,b\,c,d", ','), vec!["a", r"b\,c", "d"]);
        assert_eq!(split_unescaped(r"a\\,b", ','), vec![r"a\\", "b"]);
        assert_eq!(split_unescaped("", ','), vec![""]);
        assert_eq!(unescape(r"b\,c\$d\|e\\f\g"), r"b,c$d|e\f\g");
    }

    #[test]
    fn numbers_carry_their_precision() {
        let cases = [
            ("100", Some((99.5, 100.5))),
            ("1.0", Some((0.95, 1.05))),
            ("-2", Some((-2.5, -1.5))),
            ("1e2", Some((50.0, 150.0))),
            ("1.5E-1", Some((0.145, 0.155))),
            ("1.", None),
            (".5", None),
            ("abc", None),
            ("1e", None),
            ("NaN", None),
            ("inf", None),
            ("1e99999", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let got = number_range(input);
            match (got, expected) {
                (Some((l, h)), Some((el, eh))) => {
                    assert!(
                        (l - el).abs() < 1e-9 && (h - eh).abs() < 1e-9,
                        "{input}: {got:?}"
                    )
                }
                _ => assert_eq!(got, expected, "{input}"),
            }
        }
    }
}
