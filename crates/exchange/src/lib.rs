//! The exchange's use cases, independent of HTTP, SMTP or MLLP and of the storage engine.
//!
//! - [`repository`]: the FHIR repository. Validates every write, assigns ids, versions and timestamps,
//!   extracts search index rows, applies writes through the store under optimistic concurrency, and
//!   builds the Bundles that search, history, batch/transaction and `$everything` answer with.
//! - [`access`]: the one decision point between the store and every response. Every resource that
//!   leaves the repository (read, vread, search matches and includes, history, `$everything`, paging)
//!   passes [`access::DecisionPoint::decide`]; later issues plug consent and access rules in there.
//! - [`audit`]: the AuditEvent (IHE BALP style) recorded for each request that touches patient data.
//! - [`notices`]: the break-the-glass notices the exchange writes to the sources of data disclosed
//!   in an emergency (FHIR Communications addressed to them).
//! - [`consents`]: every patient's privacy consents, kept current for the decision point, followed
//!   across the records linked to one person.
//! - [`purge`]: the consent purge, which deletes an opted-out person's clinical data after the
//!   policy window.
//! - [`onboarding`]: connecting to the exchange: connection applications, the two-path onboarding
//!   checklist, agreements and their electronic signatures (the rules are `onboard`'s).
//! - [`catalog`]: the EHR compatibility catalog (products, providers' requests, the tally per
//!   product); [`catalog::products`] is the catalog as the connection application lists it.
//! - [`compliance`]: the mandate's compliance on the stored roster: licensees matched to
//!   applicants, their facts, the report and a provider's own lookup.
//! - [`participants`]: the participant registry (organizations and solo practices, their status in
//!   the exchange), as FHIR resources written and read through the repository.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod compliance;
pub mod consents;
pub mod notices;
pub mod onboarding;
pub mod participants;
pub mod purge;
pub mod repository;
