//! FHIRPath over FHIR JSON (`serde_json::Value`): the subset that R4 search parameter expressions and
//! invariants need. Pure code, no I/O. Type knowledge comes from the caller through [`Model`], so this
//! crate does not depend on the FHIR definitions.
//!
//! Parse once, evaluate many times: [`parse`] gives an [`Expression`] that is cheap to evaluate and
//! can be shared between threads.

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;
mod value;

use serde_json::Value;

pub use functions::SUPPORTED_FUNCTIONS;

/// What the engine needs to know about FHIR types; implemented by the `fhir` crate from the generated tables.
///
/// A type reference is either a FHIR type name (`"HumanName"`, `"date"`, `"Patient"`) or, for
/// backbone elements, the element path that defines it (`"Patient.contact"`).
pub trait Model: Send + Sync {
    /// The type of child `element` of a node of type `parent`, or `None` if no such element is defined.
    /// Choice elements (`value[x]`) are not asked for here: the engine reads their type from the JSON key.
    fn child_type(&self, parent: &str, element: &str) -> Option<&'static str>;
    /// Whether `ty` is `ancestor` or is derived from it (`Patient` is a `DomainResource` is a `Resource`).
    fn is_a(&self, ty: &str, ancestor: &str) -> bool;
    /// Whether `name` is a resource type (so `Patient.name` starts by filtering on the resource type).
    fn is_resource_type(&self, name: &str) -> bool;
    /// The interned name of a FHIR type (`"Quantity"`, `"dateTime"`), if it is one.
    fn type_name(&self, name: &str) -> Option<&'static str>;
}

/// One item of a FHIRPath collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A node of the input, with its FHIR type when known (`"HumanName"`, `"date"`, `"Patient.contact"`).
    Node {
        value: &'a Value,
        ty: Option<&'static str>,
    },
    Boolean(bool),
    Integer(i64),
    Decimal(f64),
    String(String),
    /// A date, dateTime or time literal or result, as written (`2024-01`, `2024-01-02T10:00:00Z`).
    Date(String),
    DateTime(String),
    Time(String),
    Quantity {
        value: f64,
        unit: String,
    },
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    ast: ast::Expr,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("FHIRPath syntax error at {position}: {message}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("FHIRPath evaluation error: {0}")]
pub struct EvalError(pub String);

/// Parses an expression. Unknown functions and variables, wrong argument counts and invalid literal
/// regular expressions are reported here, with the byte offset where they start.
pub fn parse(source: &str) -> Result<Expression, ParseError> {
    let ast = parser::parse(source)?;
    Ok(Expression {
        source: source.to_string(),
        ast,
    })
}

impl Expression {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression with `resource` as `%resource`, `%context` and the initial focus.
    pub fn evaluate<'a>(
        &self,
        resource: &'a Value,
        model: &dyn Model,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let evaluator = eval::Evaluator::new(resource, model);
        let root = [evaluator.root.clone()];
        evaluator.eval(
            &self.ast,
            eval::Scope {
                this: &root,
                index: None,
                total: None,
            },
        )
    }
}

#[cfg(test)]
mod tests;
