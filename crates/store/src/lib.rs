//! The storage interface for versioned FHIR resources: one [`Store`] that dispatches to an embedded
//! SQLite engine or a PostgreSQL engine, with the same behaviour, proven by one conformance suite
//! ([`conformance`]) that runs against both.
//!
//! The store is deliberately simple-minded: it never parses FHIR and never decides policy. The layer
//! above (the `exchange` crate) validates resources, assigns ids, versions and timestamps, extracts the
//! index rows with `fhir::search`, and hands the store a batch of [`Write`]s to apply atomically under
//! optimistic concurrency: each write names the version it expects to replace, and a batch whose
//! expectations do not hold fails whole with [`StoreError::Conflict`].
//!
//! Search takes a parsed [`fhir::search::Query`] and answers with the matching current resources,
//! their includes, an optional total and opaque paging cursors that stay stable while others write.
//!
//! Layout: `migrations/` holds the schema (the same shape on both engines); [`query`](crate) builds
//! the SQL for every read once for both engines; `sqlite` and `postgres` hold what differs (connection
//! handling, migrations, and the write path, which each engine does its fastest way).
//!
//! Database URLs: `sqlite://PATH` (or `sqlite::memory:`) and `postgres://user@host:port/db`, where
//! `options=-c search_path=SCHEMA` puts the tables in a schema of their own and `pool_size=N` sizes
//! the connection pool (default 16). Both engines refuse to start when a migration they applied
//! before was edited since.
//!
//! The audit log ([`Store::append_audit`], [`Store::commit_with_audit`], [`Store::audit_records`],
//! [`Store::verify_audit`]) is append-only and hash-chained: records of concurrent callers are
//! grouped into one transaction each (group commit), a write and its audit records commit together,
//! and verification names the first record that was changed, removed or inserted. No method updates
//! or deletes a record, and triggers refuse UPDATE and DELETE on both engines. Each record carries
//! the `(name, value)` pairs the exchange chose to find it by (`audit_index`, written in the
//! record's transaction on PostgreSQL, copied from the log file with the record on SQLite);
//! [`Store::search_audit`] answers records by them, newest first. On SQLite the log is a file
//! ([`audit_log_of`], format in `audit_file`) and the audit database its searchable copy.
//!
//! SMART Backend Services clients ([`Store::register_client`], [`Store::client`], [`Store::clients`],
//! [`Store::set_client_status`]), the client assertion ids already used ([`Store::remember_jti`],
//! atomic across processes) and the access-token signing key ([`Store::token_key`], made once per
//! database) are in `clients`.
//!
//! Portal accounts and their sessions ([`Store::add_user`], [`Store::user_by_login`],
//! [`Store::record_failed_sign_in`], [`Store::use_totp_step`], [`Store::create_session`] and the
//! rest) are in `accounts`: a login is unique regardless of case, a session is kept by the SHA-256
//! of its cookie secret, and failed attempts and TOTP steps are decided by one statement each.
//!
//! Direct secure messaging (`mail`): the Direct addresses issued, certificates with sealed keys,
//! trust anchors per domain, mailboxes, and the outbound queue, which processes sharing the
//! database claim rows of under a lease ([`Store::claim_outbound`]).
//!
//! The EHR compatibility catalog and the compliance roster (`compliance`, migration 0011): catalog
//! products and providers' requests to add or review one, roster imports (one transaction each)
//! and their licensees, operators' match decisions and licensees' exemptions.
//!
//! Connecting to the exchange (`onboarding`, migration 0010): connection applications with their
//! licences, checklist steps and changes of path, agreement versions and their signatures, and
//! [`Store::onboarding_facts`] for the compliance report. An application's id, a step of it, an
//! agreement version and a signature are each stored once; a step lands only on the path the
//! caller saw.
//!
//! Real deletion ([`Store::purge`], `purge`): every version, index and compartment row of the
//! resources given removed in one transaction with the audit records of what went (the consent
//! purge of an opted-out patient's clinical data); [`Store::compartment_members`] finds them.
//!
//! Query plans: [`Store::explain`] shows how the engine runs a search's page statement; the tests
//! `selective_searches_use_indexes` (both engines) check that the benchmark's selective searches
//! are index lookups. Measurements: the ignored tests `write_throughput` and `search_latency`.

mod accounts;
mod audit;
#[cfg(feature = "sqlite")]
mod audit_file;
mod clients;
mod compliance;
pub mod conformance;
mod engine;
mod exec;
mod mail;
mod migrate;
mod mpi;
mod onboarding;
#[cfg(feature = "postgres")]
mod postgres;
mod purge;
mod query;
mod relationships;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

pub use accounts::{
    login_key, Invitation, NewInvitation, NewUser, Session, User, UserStatus, NO_PASSWORD,
    USER_ROLES,
};
pub use audit::{
    chain_hash, Appended, AuditCheck, AuditFault, AuditHash, AuditQuery, AuditRecord,
    NewAuditRecord,
};
pub use clients::{Client, ClientKeys, ClientStatus, NewClient};
pub use compliance::{
    EhrProduct, EhrRequest, LicenceKey, LicenseeExemption, MatchDecision, RosterImport,
    StoredLicensee,
};
pub use engine::Store;
pub use mail::{
    domain_of, AddressStatus, AnchorDirection, DeliveryStatus, DirectAddress, DirectCertificate,
    MailKind, MailMessage, Outbound, OutboundKind, Settle, TrustAnchor,
};
pub use mpi::{
    Decide, LinkContext, LinkDecision, LinkOutcome, MpiCandidate, MpiConstraint, MpiCurrent,
    MpiHistoryEntry, MpiRebuild, MpiRebuilt, MpiReview, MpiReviewItem, MpiSnapshot, MpiSubject,
    Split, SplitContext,
};
pub use onboarding::{
    AgreementDocument, AgreementSignature, ApplicationData, ApplicationRecord, DecisionRecord,
    LicenceRecord, OnboardingFacts, PathChangeRecord, StepRecord,
};
pub use purge::{PurgeAudit, Purged};
pub use relationships::RelationshipBasis;
#[cfg(feature = "sqlite")]
pub use sqlite::{audit_file_of, audit_log_of};
pub use types::*;
