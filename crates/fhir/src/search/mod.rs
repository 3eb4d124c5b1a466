//! FHIR search: the query model the store executes, the parser from URL query strings to it, and the
//! extraction of index values from resources on write.
//!
//! The parser resolves every parameter against the generated search parameter tables, so the store never
//! sees a name it has to look up: it gets typed [`model::Predicate`]s and typed [`model::IndexValue`]s.

pub mod datetime;
pub mod extract;
pub mod model;
pub mod normalize;
pub mod parse;

pub use model::*;
