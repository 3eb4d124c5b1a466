//! The master patient index engine: record linkage of patient records, with no I/O.
//!
//! A [`Record`] is [`standardise()`]d (ASCII lower case, nicknames, USPS abbreviations, digits-only phones,
//! dates as `YYYYMMDD`); [`Blocking`] keys joined by OR pick the candidate pairs; each [`Field`] is compared
//! at graded levels (a missing value is its own level, weighing nothing); a Fellegi-Sunter [`Model`] trained
//! without labels ([`train`]: u from seeded random pairs, m and the prior by expectation maximisation,
//! started from deterministic rules) scores a pair as a probability and a FHIR match [`Grade`]; [`matches()`],
//! [`one_to_one`] and [`clusters`] turn scored pairs into links and identities in batch. The [`Index`] holds
//! records in memory and matches one new record against them. [`generate()`] makes seeded
//! noisy duplicates and twins for tests and benchmarks. Everything is deterministic for a given seed and
//! input order.

pub mod blocking;
pub mod compare;
pub mod generate;
pub mod index;
pub mod linkage;
pub mod model;
pub mod record;
pub mod rng;
pub mod standardise;

pub use blocking::{pair_quality, Blocking, BlockingKey, PairQuality};
pub use compare::{Field, MISSING};
pub use generate::{generate, Generated, Generator, GeneratorConfig};
pub use index::{Index, Match};
pub use linkage::{accuracy, cluster_pairs, clusters, matches, one_to_one, Accuracy, ScoredPair};
pub use model::{train, FieldModel, Grade, Model, Score, TermFrequencies, TrainingConfig};
pub use record::{Identifier, Record};
pub use standardise::{standardise, Standardised};
