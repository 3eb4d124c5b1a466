//! The FHIR repository: every interaction of the FHIR RESTful API as a use case over the store.
//!
//! Adapters hand it parsed JSON and parameters and get back JSON and a status; they never touch the
//! store. Every resource it returns has passed the [`crate::access::DecisionPoint`].

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use store::Store;

use crate::access::DecisionPoint;
use fhir::{Issue, IssueType};

mod audit_search;
mod bundle;
mod capability;
mod consent;
mod crud;
mod disclosure;
mod elements;
mod history;
mod identities;
mod labelling;
mod matching;
mod pdqm;
mod pix;
mod search;
mod support;
mod verify;

pub use elements::ReadShape;
pub use identities::{Progress, RebuildReport};
pub use labelling::SOURCE_TTL;
pub use matching::{MATCH_GRADE, MIN_TRAINING};
pub use pdqm::{MOTHERS_MAIDEN_NAME, PDQM_PARAMS};
pub use search::Searchset;
pub use store::HistoryScope;
pub use support::parse_query_string;

/// Settings the repository needs from the configuration.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// The public FHIR base URL (`http://127.0.0.1:8080/fhir`), used for `fullUrl`s, links and
    /// recognising local absolute references.
    pub base_url: String,
    /// `_count` when the client gives none.
    pub default_count: usize,
    /// The largest `_count` honoured.
    pub max_count: usize,
}

/// How the client asked unknown search parameters to be handled (`Prefer: handling=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Lenient,
    Strict,
}

/// A resource as the repository answers it: the JSON, its version and when it was last updated,
/// which the adapter turns into `ETag`, `Last-Modified` and `Location`.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Milliseconds since the Unix epoch, UTC.
    pub last_updated: i64,
    pub resource: Value,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// `true` if a new resource was created (201), `false` if an existing one was updated (200).
    pub created: bool,
    pub resource: Versioned,
    /// Informational or warning issues to report alongside (for `Prefer: return=OperationOutcome`).
    pub issues: Vec<Issue>,
}

impl Versioned {
    /// The weak ETag of this version: `W/"3"`.
    pub fn etag(&self) -> String {
        support::etag(self.version)
    }

    /// `Last-Modified` as an instant (`2024-01-02T03:04:05.678Z`); the adapter formats it as an HTTP
    /// date.
    pub fn last_modified(&self) -> String {
        fhir::search::datetime::format_instant(self.last_updated)
    }

    /// The `Location` of this version: `[base]/Type/id/_history/n`.
    pub fn location(&self, base_url: &str) -> String {
        format!(
            "{}/{}/{}/_history/{}",
            base_url.trim_end_matches('/'),
            self.resource_type,
            self.id,
            self.version
        )
    }
}

/// What `Prefer: return=` asks a write to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    /// An empty body (headers only).
    Minimal,
    /// The resource as stored (the default).
    #[default]
    Representation,
    /// An OperationOutcome about the write.
    OperationOutcome,
}

impl Return {
    /// Parses the `Prefer` header's `return=` token; anything else (or nothing) is the default.
    pub fn from_prefer(prefer: Option<&str>) -> Return {
        prefer
            .into_iter()
            .flat_map(|h| h.split([',', ';']))
            .filter_map(|part| part.trim().strip_prefix("return="))
            .find_map(|value| match value.trim().trim_matches('"') {
                "minimal" => Some(Return::Minimal),
                "representation" => Some(Return::Representation),
                "OperationOutcome" => Some(Return::OperationOutcome),
                _ => None,
            })
            .unwrap_or_default()
    }
}

impl Handling {
    /// Parses the `Prefer` header's `handling=` token; anything else (or nothing) is lenient.
    pub fn from_prefer(prefer: Option<&str>) -> Handling {
        let strict = prefer
            .into_iter()
            .flat_map(|h| h.split([',', ';']))
            .any(|part| part.trim().trim_matches('"') == "handling=strict");
        if strict {
            Handling::Strict
        } else {
            Handling::Lenient
        }
    }
}

impl WriteOutcome {
    /// The HTTP status of a successful write: 201 if it created the resource, 200 otherwise.
    pub fn status(&self) -> u16 {
        if self.created {
            201
        } else {
            200
        }
    }

    /// The body `Prefer: return=` asks for: `None` for minimal, the resource, or an OperationOutcome
    /// with the write's warnings (or one informational issue saying what happened).
    pub fn body(&self, prefer: Return) -> Option<Value> {
        match prefer {
            Return::Minimal => None,
            Return::Representation => Some(self.resource.resource.clone()),
            Return::OperationOutcome => Some(self.outcome()),
        }
    }

    /// The OperationOutcome about this write.
    pub fn outcome(&self) -> Value {
        let mut issues = self.issues.clone();
        if issues.is_empty() {
            let v = &self.resource;
            let what = if self.created {
                "created as version"
            } else {
                "is now at version"
            };
            issues.push(Issue::information(
                IssueType::Informational,
                format!("{}/{} {what} {}", v.resource_type, v.id, v.version),
            ));
        }
        fhir::outcome::operation_outcome(&issues)
    }
}

/// Everything that can go wrong, each mapping to one HTTP status and an OperationOutcome.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or the resource invalid (400), with every problem found.
    #[error("invalid request")]
    Invalid(Vec<Issue>),
    /// Valid FHIR but breaks a rule of the operation (422), for example an id in the body that does not
    /// match the URL.
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    /// No such resource or version (404).
    #[error("not found")]
    NotFound,
    /// The decision point refused the request (403), with its reasons (they name rules, never a
    /// patient).
    #[error("forbidden")]
    Forbidden(Vec<crate::access::Reason>),
    /// The resource was deleted (410).
    #[error("gone")]
    Gone { version: i64, last_updated: i64 },
    /// A conditional operation matched several resources (412).
    #[error("multiple matches")]
    MultipleMatches,
    /// `If-Match` named a version that is not current (412).
    #[error("precondition failed")]
    PreconditionFailed { current: i64 },
    /// Someone else changed the resource in the meantime (409).
    #[error("conflict")]
    Conflict,
    /// Something this server does not support (400 or 501 as the adapter decides; never 5xx for input).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A participant's `PUT [type]/[id]` of data about patients named an id that is not a resource
    /// it may change (405): participants do not create by update, so that an id in use by a
    /// resource withheld from them answers exactly as an unused one.
    #[error("update as create is not allowed")]
    UpdateCreate { resource_type: String },
    /// The store failed (500). The message is for the log only.
    #[error("storage failure: {0}")]
    Store(#[from] store::StoreError),
    /// An entry of a transaction failed (the status is the entry's); the whole bundle is rejected.
    #[error("transaction entry {index} failed: {error}")]
    Entry { index: usize, error: Box<Error> },
}

impl Error {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Invalid(_) => 400,
            Error::Unprocessable(_) => 422,
            Error::NotFound => 404,
            Error::Forbidden(_) => 403,
            Error::Gone { .. } => 410,
            Error::MultipleMatches | Error::PreconditionFailed { .. } => 412,
            Error::Conflict => 409,
            Error::NotSupported(_) => 400,
            Error::UpdateCreate { .. } => 405,
            Error::Store(store::StoreError::Conflict { .. }) => 409,
            Error::Store(store::StoreError::BadCursor) => 400,
            Error::Store(store::StoreError::Unsupported(_)) => 400,
            Error::Store(_) => 500,
            Error::Entry { error, .. } => error.status(),
        }
    }

    /// The issues of the OperationOutcome that answers this error. Store failures say nothing about
    /// their cause: that is for the log only.
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            Error::Invalid(issues) | Error::Unprocessable(issues) => issues.clone(),
            Error::NotFound => vec![Issue::error(IssueType::NotFound, "Resource not found")],
            Error::Forbidden(reasons) => reasons
                .iter()
                .map(|r| Issue::error(IssueType::Forbidden, r.text()))
                .collect(),
            Error::Gone { version, .. } => {
                vec![Issue::error(
                    IssueType::Deleted,
                    format!("Resource was deleted (version {version})"),
                )]
            }
            Error::MultipleMatches => {
                vec![Issue::error(
                    IssueType::MultipleMatches,
                    "The condition matched more than one resource",
                )]
            }
            Error::PreconditionFailed { current } => vec![Issue::error(
                IssueType::Conflict,
                format!("Version precondition failed: the current version is {current}"),
            )],
            Error::Conflict => {
                vec![Issue::error(
                    IssueType::Conflict,
                    "The resource was changed concurrently; try again",
                )]
            }
            Error::NotSupported(what) => vec![Issue::error(IssueType::NotSupported, what.clone())],
            Error::UpdateCreate { resource_type: ty } => vec![Issue::error(
                IssueType::NotSupported,
                format!(
                    "PUT {ty}/[id] updates a {ty} that exists and that you may see; it does not \
                     create one. Create with POST {ty} (the exchange assigns the id), or with a \
                     conditional update PUT {ty}?identifier=[system]|[value] and no id in the body"
                ),
            )],
            Error::Store(store::StoreError::Conflict { .. }) => {
                vec![Issue::error(
                    IssueType::Conflict,
                    "The resource was changed concurrently; try again",
                )]
            }
            Error::Store(store::StoreError::BadCursor) => {
                vec![Issue::error(
                    IssueType::Invalid,
                    "Invalid or expired paging link",
                )]
            }
            Error::Store(store::StoreError::Unsupported(what)) => {
                vec![Issue::error(IssueType::NotSupported, what.clone())]
            }
            Error::Store(_) => vec![Issue::error(
                IssueType::Exception,
                "Internal storage failure",
            )],
            Error::Entry { index, error } => {
                let prefix = format!("Bundle.entry[{index}]");
                error
                    .issues()
                    .into_iter()
                    .map(|mut issue| {
                        if issue.expression.is_empty() {
                            issue.expression.push(prefix.clone());
                        }
                        issue.diagnostics = format!("{prefix}: {}", issue.diagnostics);
                        issue
                    })
                    .collect()
            }
        }
    }

    /// The OperationOutcome resource that answers this error.
    pub fn outcome(&self) -> Value {
        fhir::outcome::operation_outcome(&self.issues())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Repository {
    pub(crate) store: Store,
    pub(crate) config: RepositoryConfig,
    pub(crate) gate: DecisionPoint,
    /// The CapabilityStatement, built on first use: it depends only on the tables and the config.
    pub(crate) capability: Arc<OnceLock<Value>>,
    /// The master patient index of `Patient/$match`, built on first use.
    pub(crate) matcher: Arc<matching::Matcher>,
    /// Participants' source facts for labelling, remembered for [`SOURCE_TTL`].
    pub(crate) sources: Arc<labelling::SourceCache>,
    /// Where break-the-glass notices go once written, besides the store (`send_notices_to`).
    pub(crate) notice_outlet: Arc<OnceLock<crate::notices::Outlet>>,
}

impl Repository {
    pub fn new(store: Store, config: RepositoryConfig, gate: DecisionPoint) -> Self {
        Repository {
            store,
            config,
            gate,
            capability: Arc::new(OnceLock::new()),
            matcher: Arc::default(),
            sources: Arc::default(),
            notice_outlet: Arc::default(),
        }
    }

    /// Hands every break-the-glass notice, once written, to `outlet` as well (every clone of this
    /// repository does); `false` if an outlet was given before (the first stays).
    pub fn send_notices_to(&self, outlet: crate::notices::Outlet) -> bool {
        self.notice_outlet.set(outlet).is_ok()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    pub fn decision_point(&self) -> &DecisionPoint {
        &self.gate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a failing store is a 5xx; every other error, bad input of any kind, is a 4xx with issues.
    #[test]
    fn only_store_failures_are_5xx() {
        let input_errors = [
            Error::Invalid(vec![Issue::error(IssueType::Value, "x")]),
            Error::Unprocessable(vec![Issue::error(IssueType::Processing, "x")]),
            Error::NotFound,
            Error::Forbidden(vec![crate::access::Reason::NoRelationship]),
            Error::Gone {
                version: 2,
                last_updated: 0,
            },
            Error::MultipleMatches,
            Error::PreconditionFailed { current: 3 },
            Error::Conflict,
            Error::NotSupported("x".into()),
            Error::Store(store::StoreError::Conflict {
                resource_type: "Patient".into(),
                id: "1".into(),
            }),
            Error::Store(store::StoreError::BadCursor),
            Error::Store(store::StoreError::Unsupported("x".into())),
            Error::Entry {
                index: 4,
                error: Box::new(Error::NotFound),
            },
        ];
        for error in &input_errors {
            assert!((400..500).contains(&error.status()), "{error:?}");
            let outcome = error.outcome();
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            assert!(
                outcome["issue"].as_array().is_some_and(|i| !i.is_empty()),
                "{error:?}"
            );
        }
        for error in [
            Error::Store(store::StoreError::Database("secret detail".into())),
            Error::Store(store::StoreError::Open("secret detail".into())),
        ] {
            assert_eq!(error.status(), 500);
            assert!(!error.outcome().to_string().contains("secret detail"));
        }
        let entry = Error::Entry {
            index: 4,
            error: Box::new(Error::NotFound),
        };
        assert_eq!(
            entry.issues()[0].expression,
            vec!["Bundle.entry[4]".to_string()]
        );
    }
}
