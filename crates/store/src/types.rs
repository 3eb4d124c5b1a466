//! The types of the storage interface: what goes in, what comes out, what can go wrong.

use fhir::search::{IndexEntry, Query};

/// A resource version as stored. `json` is the resource exactly as the exchange wrote it (with
/// `meta.versionId` and `meta.lastUpdated` set); it is empty for a deletion (a tombstone version).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Milliseconds since the Unix epoch, UTC.
    pub last_updated: i64,
    pub deleted: bool,
    pub json: String,
    /// The ids of the Patients whose compartment this version is in, from the compartment rows
    /// written with it, where the store read them with the version (reads of the current version
    /// and search pages); `None` where it did not (history, vread), and the caller finds them in
    /// `json`. Empty for a tombstone.
    pub patients: Option<Vec<String>>,
}

/// The current state of a logical resource: the latest version number and whether it is a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub version: i64,
    pub deleted: bool,
    pub last_updated: i64,
}

/// What a write changes.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Store a new version: the resource JSON, its index rows and the patients whose compartment it is
    /// in (their ids; a Patient lists itself).
    Put {
        json: String,
        index: Vec<IndexEntry>,
        compartments: Vec<String>,
    },
    /// Store a tombstone version; the resource leaves search and compartments but keeps its history.
    Delete,
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub resource_type: String,
    pub id: String,
    /// The new version number: `expect + 1`, or 1 for a resource that never existed.
    pub version: i64,
    /// The current version this write replaces: `None` if the resource must never have existed,
    /// `Some(n)` if its current version (live or deleted) must be `n`.
    pub expect: Option<i64>,
    /// Milliseconds since the Unix epoch, UTC; the same for every write of a transaction.
    pub last_updated: i64,
    pub op: WriteOp,
}

/// Which history to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    pub scope: HistoryScope,
    /// `_since`: versions with `last_updated >= since`.
    pub since: Option<i64>,
    /// `_at`: the versions current at some point of this period (first and last millisecond, both
    /// included; equal for an instant): written no later than its end, and not replaced by another
    /// version by its start.
    pub at: Option<(i64, i64)>,
    pub count: usize,
    /// An opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// Versions, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub entries: Vec<Stored>,
    pub total: Option<u64>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Page size after the server's default and maximum are applied.
    pub count: usize,
    /// The most included resources to return for one page.
    pub max_includes: usize,
}

/// One page of search results: the matches in order, the resources `_include`d and `_revinclude`d
/// (each once, none of them also a match), the total if asked for, and cursors for the neighbouring pages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchPage {
    pub matches: Vec<Stored>,
    pub included: Vec<Stored>,
    pub total: Option<u64>,
    pub next: Option<String>,
    pub previous: Option<String>,
}

/// A request for the resources in the compartments of one or more Patients (for
/// `Patient/$everything`), those Patients themselves excluded; a resource in several of them is
/// answered once.
#[derive(Debug, Clone, PartialEq)]
pub struct CompartmentRequest {
    pub patient_ids: Vec<String>,
    /// Also the compartments of every Patient linked to the same enterprise identity as one of
    /// `patient_ids` (the person's record), those Patients included; looked up in the same read,
    /// and part of what a paging cursor is valid for (a link change between pages makes the next
    /// page's cursor a bad one).
    pub linked: bool,
    /// `_type`: only these types; empty means all.
    pub types: Vec<String>,
    /// `_since`: only resources last updated at or after this instant.
    pub since: Option<i64>,
    pub count: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's expectation did not hold: someone else changed the resource first. Nothing was written.
    #[error("version conflict on {resource_type}/{id}")]
    Conflict { resource_type: String, id: String },
    /// A paging cursor that this store did not make, or that no longer applies.
    #[error("invalid paging cursor")]
    BadCursor,
    /// The query uses something this engine cannot do (reported to the client as not supported).
    #[error("unsupported search: {0}")]
    Unsupported(String),
    /// The database failed; details are for the log, never for the client.
    #[error("database error: {0}")]
    Database(String),
    /// Opening the database or migrating its schema failed.
    #[error("cannot open database: {0}")]
    Open(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Marker so the crate's public surface names the query type it executes.
pub type SearchQuery = Query;
