//! Consent and behavioral-health privacy, the pure core.
pub mod codes;
pub mod consent;
pub mod labels;
