//! The search query model shared by the parser (this crate) and the store engines, and the index rows
//! extracted from resources. Both sides agree on these types only; neither knows the other's internals.
//!
//! Conventions:
//! - Dates and instants are ranges of milliseconds since 1970-01-01T00:00:00Z, both ends inclusive:
//!   `2024-03` is `[2024-03-01T00:00:00.000Z, 2024-03-31T23:59:59.999Z]`. A value without a time zone is
//!   taken as UTC. Open ends use `i64::MIN` / `i64::MAX`.
//! - Numbers and quantities are ranges of `f64`, both ends inclusive, from the implicit precision of the
//!   written value (`100` is `[99.5, 100.5]`, `1.0` is `[0.95, 1.05]`) for search values; an indexed value
//!   is its own point range unless it is a Range or has a comparator.
//! - Strings are indexed twice: `normalized` (lower case, accents removed, punctuation and white space
//!   folded to single spaces) for the default and `:contains` searches, and `exact` as written.

/// A token index row: `system|code`, plus a display text for `:text`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenValue {
    pub system: Option<String>,
    pub code: Option<String>,
    /// Normalized display text (CodeableConcept.text, Coding.display, Identifier.type.text) for `:text`.
    pub text: Option<String>,
}

/// One value a resource has for one search parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    String {
        normalized: String,
        exact: String,
    },
    Token(TokenValue),
    /// For `Identifier`s only, in addition to the plain token: the identifier's type coding and value,
    /// for `:of-type` (`type-system|type-code|value`).
    IdentifierOfType {
        type_system: Option<String>,
        type_code: String,
        value: String,
    },
    Date {
        low: i64,
        high: i64,
    },
    Number {
        low: f64,
        high: f64,
    },
    Quantity {
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
        low: f64,
        high: f64,
    },
    /// A reference. Relative (`Patient/123`) and local absolute references (this server's base) are held
    /// as type and id; other absolute or canonical ones as `url` (with `version` after a `|`).
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
        version: Option<String>,
    },
    Uri(String),
}

/// An index row for a resource: which parameter, which value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The search parameter code (`birthdate`, `_tag`, or a composite's own code for its parts).
    pub param: &'static str,
    pub value: IndexValue,
    /// Set on the rows of a composite parameter: `param` is the composite's code, `component` its
    /// component's position, and `group` numbers the item the composite's expression selected, so that
    /// a search can require every component to match within one item (one `Observation.component`).
    pub composite: Option<CompositePart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompositePart {
    pub group: u32,
    pub component: u8,
}

/// `eq`, `ne`, `gt`, `lt`, `ge`, `le`, `sa`, `eb`, `ap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefix {
    #[default]
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// The default: case- and accent-insensitive starts-with on `normalized`.
    StartsWith,
    /// `:exact`: equal to `exact`.
    Exact,
    /// `:contains`: substring of `normalized`.
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    /// `:below`: the indexed uri starts with the value.
    Below,
    /// `:above`: the value starts with the indexed uri.
    Above,
}

/// What a token search value constrains.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenTest {
    /// `code` (any system), `system|code`, `|code` (no system: `system: Some(None)`), `system|` (any code).
    Code {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// `:text`: starts-with on the normalized display text.
    Text(String),
    /// `:of-type`: `type-system|type-code|value`.
    OfType {
        type_system: Option<String>,
        type_code: String,
        value: String,
    },
}

/// One test against the index rows of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    String {
        value: String,
        mode: StringMatch,
    },
    Token(TokenTest),
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Number {
        prefix: Prefix,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// Matches a reference row by type and id, by id alone (any type), or by absolute/canonical url.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
        version: Option<String>,
    },
    /// `:identifier` on a reference parameter: the Reference.identifier's token.
    ReferenceIdentifier(TokenTest),
    Uri {
        value: String,
        mode: UriMatch,
    },
}

/// A condition on resources of the type being searched. A [`Query`] ANDs its clauses; a clause ORs
/// its predicates (a comma-separated value).
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Some index row of `param` passes `test`.
    Index { param: &'static str, test: Test },
    /// `:not`: no index row of `param` passes `test` (resources without the parameter match).
    Not { param: &'static str, test: Test },
    /// `:missing=true` (`missing: true`) or `:missing=false`.
    Missing { param: &'static str, missing: bool },
    /// A chain: `param` is a reference whose target, of one of `target_types`, satisfies `inner`
    /// (which is evaluated on the target's type). Nested chains nest.
    Chain {
        param: &'static str,
        target_types: Vec<&'static str>,
        inner: Box<Predicate>,
    },
    /// `_has:source_type:ref_param:...`: some resource of `source_type` whose `ref_param` refers to this
    /// resource satisfies `inner` (evaluated on `source_type`).
    Has {
        source_type: &'static str,
        ref_param: &'static str,
        inner: Box<Predicate>,
    },
    /// A composite parameter: every component passes its test on the same item the composite's
    /// expression selects. `components` are in the parameter's component order.
    Composite {
        param: &'static str,
        components: Vec<(&'static str, Test)>,
    },
}

/// Predicates ORed together.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub any: Vec<Predicate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub param: &'static str,
    pub descending: bool,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, or `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The type holding the reference (`*` not allowed here; a wildcard include lists every reference
    /// parameter of the type instead).
    pub source_type: &'static str,
    pub param: &'static str,
    pub target_type: Option<&'static str>,
    pub iterate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    #[default]
    None,
    Estimate,
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// The type searched; `None` for a search across all types (`GET /fhir?_id=...`), where only
    /// common parameters are allowed.
    pub resource_type: Option<&'static str>,
    pub clauses: Vec<Clause>,
    pub sort: Vec<SortKey>,
    /// `_count`; the caller applies the server's default and maximum.
    pub count: Option<usize>,
    pub total: Total,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub summary: Option<Summary>,
    pub elements: Vec<String>,
    /// An opaque paging cursor from a previous page's link (`_page`), if any.
    pub page: Option<String>,
}
