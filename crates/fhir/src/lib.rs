//! FHIR R4 (4.0.1) handled as JSON: the tables generated from the official definitions, validation of every
//! write, the search parameters with the extraction of index values, and the search query model with its
//! parser. Pure code, no I/O: the store and the adapters build on this.

pub mod definitions;
pub mod generated;
pub mod model;
pub mod outcome;
pub mod search;
pub mod validate;

pub use outcome::{Issue, IssueType, Severity};
