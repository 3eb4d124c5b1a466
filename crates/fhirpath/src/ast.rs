//! The syntax tree of a parsed expression. Function names, variables and type specifiers are resolved
//! at parse time so that evaluation never looks at strings it could have decided once.

use crate::functions::Func;

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// `{}`
    Empty,
    Literal(Literal),
    /// `$this`
    This,
    /// `$index`
    Index,
    /// `$total`
    Total,
    Env(EnvVar),
    /// A path step: `name` applied to `base` (or to the focus when `base` is `None`).
    Member {
        base: Option<Box<Expr>>,
        name: String,
    },
    /// A function invocation on `base` (or on the focus).
    Call {
        base: Option<Box<Expr>>,
        func: Func,
        args: Vec<Expr>,
        regex: Option<Box<regex::Regex>>,
    },
    /// `base[index]`
    Indexer {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    Negate(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `expr is T`, `expr as T`, and the function forms `is(T)`, `as(T)`, `ofType(T)`.
    Type {
        op: TypeOp,
        base: Option<Box<Expr>>,
        ty: TypeSpec,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Boolean(bool),
    Integer(i64),
    Decimal(f64),
    String(String),
    Date(String),
    DateTime(String),
    Time(String),
    Quantity { value: f64, unit: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EnvVar {
    Resource,
    Context,
    /// A fixed string: `%ucum`, `%sct`, `%loinc`, `%vs-name`, `%ext-name`.
    Constant(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeOp {
    Is,
    As,
    OfType,
}

/// A type specifier: `Patient`, `FHIR.Quantity`, `System.String`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeSpec {
    /// `Some("FHIR")` or `Some("System")` when qualified.
    pub namespace: Option<String>,
    pub name: String,
}
