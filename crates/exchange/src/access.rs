//! The single access decision point. Every request passes [`DecisionPoint::authorize`] before the
//! repository reads or writes anything, and everything about to be disclosed passes
//! [`DecisionPoint::decide`], which sees who is asking, why, about whom and what is about to leave.
//!
//! The rules of the access issue, in the order they are applied:
//!
//! 1. **Who.** The exchange itself (local tools) may do anything. Nobody unauthenticated may do
//!    anything. The audit trail is written only by the exchange.
//! 2. **Scopes.** A SMART client may do only what its granted scopes allow, per interaction and
//!    resource type; a resource of a type outside its scopes is withheld from a result.
//! 3. **Participant status.** Only a live participant queries or sends clinical data; an applied,
//!    onboarding or suspended one may only read the provider directory. A status change holds within
//!    [`STATUS_TTL`] (one second: the status is read from the store, not taken from the token, and
//!    a process trusts what it read for that long; a change made through this process at once).
//! 4. **Purpose and relationship.** Clinical data about a patient is disclosed to a participant for
//!    treatment (and payment, operations, or a patient's request) only with a treatment
//!    relationship: it sent data about the patient, is on the patient's care team, or attested one
//!    (`Patient/[id]/$attest-treatment`, recorded and audited). The relationship is with the
//!    person: one with any Patient linked to the same enterprise identity counts ([`Persons`]), so
//!    a hospital treating someone reads what a clinic sent about them under the clinic's own
//!    record, until an operator unlinks the two. Break-the-glass (`ETREAT`) is
//!    permitted without one, with the obligation to flag the disclosure in the audit trail. Public
//!    health purposes are for public-health participants only.
//! 5. **People.** Operators see administrative data (the directory, the audit trail, and, since
//!    they run the patient index, Patients themselves: who someone is and their identifiers), and
//!    other clinical data only with a purpose they stated. An operator token (a live
//!    exchange-operator participant's system) is an operator for Patients; for other clinical
//!    data it is held to a participant's rules. A patient sees only their own record (the person's:
//!    every Patient linked with theirs). A participant's
//!    clinician or staff member is treated like the participant's systems; its administrator sees
//!    the directory only.
//!
//! Denials carry reasons for the audit trail. A request-level denial answers 403 naming the rule;
//! a withheld resource is never mentioned to the caller (it looks like one that does not exist).
//!
//! 6. **Privacy.** After those rules permit, clinical data (a resource in some Patient's
//!    compartment, the Patient itself included) goes through the privacy policy
//!    ([`privacy::policy::Policy::decide`], Connecticut's by default, [`DecisionPoint::with_policy`]
//!    for another) with the patients' current consents ([`crate::consents::ConsentRegistry`]): the
//!    requester's purpose, its participant as recipient, whether it has a treatment relationship
//!    with the patient, the resource's labels and source (its `meta.security` and `meta.tag`), the
//!    family members it names and their consents, and whether a medical emergency was declared.
//!    A resource about several patients is disclosed only when the policy permits it for each. A
//!    denial withholds the resource like one that does not exist; a permit's obligations (the
//!    NORDSCLCD label and the Part 2 notice, break-the-glass flagged in the audit trail, the
//!    patient and the source told) come back with the decision. Who the policy binds:
//!    participants' systems and people, with their purpose of use; a patient, for their record
//!    (as `PATRQT`), except their own Patient and their own Consents, which they always see (they
//!    must be able to opt back in); operators are not bound (they record paper forms, answer the
//!    patient and run the purge; every read of theirs is audited); the exchange's own tools are
//!    not bound.
//!
//! 7. **Notices.** A break-the-glass notice the exchange wrote to a participant
//!    ([`crate::notices`]) is shown to that participant (under the rules above), its operators
//!    and tools, and withheld from everyone else, the patient included (who sees the emergency
//!    access in their accounting of disclosures).
//!
//! A rule plugged in through [`DecisionPoint::with_rule`] (tests) applies after all of these.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use store::{Store, Stored};

pub use auth::purpose::PurposeOfUse;
pub use auth::scope::Interaction;
use auth::scope::{Context, ScopeSet};

use crate::consents::ConsentRegistry;
use crate::participants::{participant_of, Kind, Status};

/// A portal user's role. A patient's account is linked to one Patient by the operator after
/// identity proofing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    OperatorAdmin,
    ParticipantAdmin,
    Clinician,
    Staff,
    Patient { patient_id: String },
}

/// Who is asking, as authenticated by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The exchange itself: local commands (import, demo, admin) and internal jobs.
    System { name: String },
    /// A system authenticated with SMART Backend Services, acting for a participant (its
    /// Organization's id), with the scopes its token was granted.
    Client {
        client_id: String,
        participant: String,
        scopes: ScopeSet,
    },
    /// A person signed in to the portal: a participant's user, an operator, or a patient.
    User {
        user_id: String,
        participant: Option<String>,
        role: Role,
    },
    /// Nobody has authenticated.
    Anonymous,
}

impl Principal {
    /// The participant (Organization id) the principal acts for, if any.
    pub fn participant(&self) -> Option<&str> {
        match self {
            Principal::Client { participant, .. } => Some(participant),
            Principal::User { participant, .. } => participant.as_deref(),
            Principal::System { .. } | Principal::Anonymous => None,
        }
    }
}

/// Who is asking, why, and from where. Built by the adapter for every request; carries the request
/// id for the log and the audit trail, and remembers, for the length of the request, what the
/// decision point looked up about it.
#[derive(Debug, Clone)]
pub struct Requester {
    pub request_id: String,
    pub principal: Principal,
    pub purpose: PurposeOfUse,
    /// Whether the purpose was stated by the requester (in the token request or the portal) rather
    /// than defaulted; operators see clinical data only with a stated purpose.
    pub purpose_stated: bool,
    /// The client's network address, when the request came over the network.
    pub client_address: Option<std::net::IpAddr>,
    /// Whether the requester declared a medical emergency (42 CFR 2.51) with a break-the-glass
    /// (`ETREAT`) request: only then does the policy open substance-use (Part 2) records.
    pub emergency_declared: bool,
    pub(crate) facts: Arc<Mutex<Facts>>,
}

/// What the decision point learned from the database during one request.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    status: Option<Option<(Status, Option<Kind>)>>,
    related: HashSet<String>,
    unrelated: HashSet<String>,
    practitioner: Option<Option<String>>,
}

impl Requester {
    /// A requester for `principal` with a purpose; the adapter fills in the client address.
    pub fn new(
        request_id: impl Into<String>,
        principal: Principal,
        purpose: PurposeOfUse,
        purpose_stated: bool,
    ) -> Self {
        Requester {
            request_id: request_id.into(),
            principal,
            purpose,
            purpose_stated,
            client_address: None,
            emergency_declared: false,
            facts: Arc::default(),
        }
    }

    /// A requester for local tools (import, demo seeding, admin commands) acting as the system
    /// itself, for treatment.
    pub fn system(request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        Requester::new(
            request_id.clone(),
            Principal::System { name: request_id },
            PurposeOfUse::Treat,
            false,
        )
    }

    /// This requester, coming from `address`.
    pub fn with_client_address(mut self, address: Option<std::net::IpAddr>) -> Self {
        self.client_address = address;
        self
    }

    /// The requestor of this request's AuditEvent.
    pub fn audit_requestor(&self) -> crate::audit::Requestor {
        let participant = self
            .principal
            .participant()
            .map(|id| format!("Organization/{id}"));
        match &self.principal {
            Principal::System { name } => crate::audit::Requestor {
                participant,
                id: None,
                display: Some(format!("nutmeg {name}")),
            },
            Principal::Client { client_id, .. } => crate::audit::Requestor {
                participant,
                id: Some(client_id.clone()),
                display: None,
            },
            Principal::User { user_id, .. } => crate::audit::Requestor {
                participant,
                id: Some(user_id.clone()),
                display: None,
            },
            Principal::Anonymous => crate::audit::Requestor {
                participant,
                id: None,
                display: Some("unauthenticated".into()),
            },
        }
    }

    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why something was denied. Recorded in the audit trail; request-level reasons are also shown to
/// the caller (they say nothing about any patient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nobody authenticated.
    Unauthenticated,
    /// The granted scopes do not allow this interaction on this type.
    Scope {
        interaction: Interaction,
        resource_type: String,
    },
    /// The principal acts for no participant the exchange knows.
    UnknownParticipant,
    /// The participant is not live (clinical data) or not known.
    ParticipantStatus { status: Status },
    /// The purpose of use is not one this principal may use.
    Purpose { purpose: PurposeOfUse },
    /// The participant has no treatment relationship with the patient.
    NoRelationship,
    /// An operator asked for clinical data without stating a purpose.
    NoStatedPurpose,
    /// A patient asked for someone else's data.
    NotOwnRecord,
    /// A role that does not include this kind of data.
    Role,
    /// The audit trail is written by the exchange only.
    AuditTrail,
    /// Participant records (Organizations with a participant status) are changed by operators only.
    ParticipantRecord,
    /// The privacy policy withholds the resource (its reason codes, for the audit trail and the
    /// log; never shown to the requester of a withheld resource).
    Privacy(Vec<String>),
    /// A rule plugged in by a test.
    Rule(String),
}

impl Reason {
    /// A short code for the audit trail and the log.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Unauthenticated => "unauthenticated",
            Reason::Scope { .. } => "scope",
            Reason::UnknownParticipant => "unknown-participant",
            Reason::ParticipantStatus { .. } => "participant-status",
            Reason::Purpose { .. } => "purpose-of-use",
            Reason::NoRelationship => "no-treatment-relationship",
            Reason::NoStatedPurpose => "no-stated-purpose",
            Reason::NotOwnRecord => "not-own-record",
            Reason::Role => "role",
            Reason::AuditTrail => "audit-trail-read-only",
            Reason::ParticipantRecord => "participant-record",
            Reason::Privacy(_) => "privacy-policy",
            Reason::Rule(_) => "rule",
        }
    }

    /// What to tell the caller of a request-level denial.
    pub fn text(&self) -> String {
        match self {
            Reason::Unauthenticated => "Authentication is required".into(),
            Reason::Scope {
                interaction,
                resource_type,
            } => format!(
                "The access token's scopes do not allow {} of {resource_type}",
                interaction_name(*interaction)
            ),
            Reason::UnknownParticipant => {
                "The client is not registered for a participant of this exchange".into()
            }
            Reason::ParticipantStatus { status } => format!(
                "The participant's status is {}: only live participants exchange clinical data",
                status.code()
            ),
            Reason::Purpose { purpose } => {
                format!("The purpose of use {} is not allowed here", purpose.code())
            }
            Reason::NoRelationship => "No treatment relationship with the patient".into(),
            Reason::NoStatedPurpose => {
                "Operators see clinical data only with a stated purpose of use".into()
            }
            Reason::NotOwnRecord => "Patients see only their own record".into(),
            Reason::Role => "The user's role does not include this data".into(),
            Reason::AuditTrail => "The audit trail is written by the exchange only".into(),
            Reason::ParticipantRecord => {
                "Participant records are changed by the exchange's operators only".into()
            }
            Reason::Privacy(codes) => {
                format!("Withheld by the privacy policy: {}", codes.join(", "))
            }
            Reason::Rule(text) => text.clone(),
        }
    }
}

fn interaction_name(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Vread => "vread",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
        Interaction::History => "history",
    }
}

/// What a permit obliges the repository to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    /// Emergency access without a treatment relationship: the disclosure is flagged in the audit
    /// trail so that the privacy officer reviews it.
    FlagEmergencyAccess,
    /// The disclosed resource carries this security label (NORDSCLCD on Part 2 data).
    AddLabel(privacy::codes::Coding),
    /// The disclosure carries this notice (the 42 CFR 2.32 notice on Part 2 data).
    AttachNotice { name: String, text: String },
    /// The patient is told of the disclosure (break-the-glass).
    NotifyPatient,
    /// The participant that sent the data is told of the disclosure (break-the-glass).
    NotifySource,
}

impl Obligation {
    fn from_policy(o: &privacy::policy::Obligation) -> Option<Obligation> {
        use privacy::policy::Obligation as P;
        Some(match o {
            P::Redact => return None,
            P::AddLabel(coding) => Obligation::AddLabel(coding.clone()),
            P::AttachNotice { name, text } => Obligation::AttachNotice {
                name: name.clone(),
                text: text.clone(),
            },
            P::NotifyPatient => Obligation::NotifyPatient,
            P::NotifySource => Obligation::NotifySource,
            P::FlagBreakGlass => Obligation::FlagEmergencyAccess,
        })
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit { obligations: Vec<Obligation> },
    Deny { reasons: Vec<Reason> },
}

impl Decision {
    pub const PERMIT: Decision = Decision::Permit {
        obligations: Vec::new(),
    };

    pub fn deny(reason: Reason) -> Decision {
        Decision::Deny {
            reasons: vec![reason],
        }
    }

    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit { .. })
    }

    /// The reasons of a denial (empty for a permit).
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Decision::Deny { reasons } => reasons,
            Decision::Permit { .. } => &[],
        }
    }

    pub fn obligations(&self) -> &[Obligation] {
        match self {
            Decision::Permit { obligations } => obligations,
            Decision::Deny { .. } => &[],
        }
    }
}

/// What a request asks to do, known before anything is read: the interaction and the resource
/// type (none for a search or history across all types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub interaction: Interaction,
    pub resource_type: Option<&'a str>,
}

impl<'a> Ask<'a> {
    pub fn new(interaction: Interaction, resource_type: Option<&'a str>) -> Self {
        Ask {
            interaction,
            resource_type,
        }
    }
}

/// A resource about to be disclosed, with the patients it is about (the Patient compartments it
/// is in; a Patient is about itself).
#[derive(Debug)]
pub struct Subject<'a> {
    pub stored: &'a Stored,
    pub patients: &'a [String],
}

/// A rule the decision point applies, after its own, to every resource about to be disclosed
/// (tests use it to deny one resource and show that it never leaves the repository; the consent
/// issue plugs its rules in here).
pub type Rule = Arc<dyn Fn(&Requester, &Subject<'_>) -> Decision + Send + Sync>;

/// The types of the provider directory, which every participant in any status may read.
pub const DIRECTORY_TYPES: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Endpoint",
    "Location",
    "HealthcareService",
];

/// Whether a type holds directory (administrative) data rather than clinical data.
pub fn is_directory(resource_type: &str) -> bool {
    DIRECTORY_TYPES.contains(&resource_type)
}

/// The decision point. [`DecisionPoint::open`] permits everything (tools and tests that exercise
/// something else); [`DecisionPoint::enforcing`] applies the exchange's rules with facts from the
/// store.
#[derive(Clone, Default)]
pub struct DecisionPoint {
    store: Option<Store>,
    rule: Option<Rule>,
    cache: Arc<Cache>,
    privacy: Option<Arc<Privacy>>,
}

/// The time the policy decides at: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>;

/// The privacy policy and the consent state it reads.
pub struct Privacy {
    pub policy: privacy::policy::Policy,
    pub consents: ConsentRegistry,
    pub clock: Clock,
}

impl Privacy {
    fn new(policy: privacy::policy::Policy) -> Self {
        Privacy {
            policy,
            consents: ConsentRegistry::default(),
            clock: Arc::new(time::OffsetDateTime::now_utc),
        }
    }
}

/// How long a participant's status, once read, is trusted by every request of this process. A
/// suspension made by another process (`nutmeg admin`) holds within this time.
pub const STATUS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many (participant, patient) relationships are remembered per process.
const RELATED_CAPACITY: usize = 200_000;

/// A participant's status and kind as read from the store (`None`: no such participant).
type Known = Option<(Status, Option<Kind>)>;

/// What the decision point remembers between requests: participants' status for [`STATUS_TTL`],
/// treatment relationships found in the store (which are never removed, so a remembered one
/// never goes stale; ones not found are asked again on every request), and the persons it looked
/// up ([`Persons`]).
#[derive(Default)]
struct Cache {
    participants: Mutex<HashMap<String, (Known, std::time::Instant)>>,
    related: Mutex<HashSet<(String, String)>>,
    persons: Mutex<Persons>,
}

/// At most this many Patients' persons are remembered per process.
const PERSONS_CAPACITY: usize = 100_000;

/// Treatment relationships and a patient's own record follow the person: the decision point asks
/// the patient index which Patients are linked to the same enterprise identity as one it decides
/// about, and remembers the answers and the relationships found through them only while the link
/// history stands still. Its head is read at most once per [`STATUS_TTL`] (links made by other
/// processes hold within a second) and at once after a link change of this process
/// ([`DecisionPoint::identities_changed`]); when it moved, everything here is forgotten (an unlink
/// takes back what the link gave). Patients with a relationship of their own never get here.
#[derive(Default)]
struct Persons {
    /// The link history's head when last read, and when.
    head: Option<i64>,
    checked: Option<std::time::Instant>,
    /// Bumped whenever what is remembered is forgotten, so that an answer read before a change is
    /// not remembered after it.
    generation: u64,
    /// Each Patient's person: every Patient linked with it, itself included.
    members: HashMap<String, Arc<[String]>>,
    /// (participant, patient) with a treatment relationship through another record of the person.
    related: HashSet<(String, String)>,
}

impl Persons {
    fn forget(&mut self) {
        self.generation += 1;
        self.members.clear();
        self.related.clear();
    }
}

impl Cache {
    fn status(&self, id: &str) -> Option<Known> {
        let map = self.participants.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|(_, at)| at.elapsed() < STATUS_TTL)
            .map(|(found, _)| *found)
    }

    fn remember_status(&self, id: &str, found: Known) {
        let mut map = self.participants.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < STATUS_TTL);
        }
        map.insert(id.to_string(), (found, std::time::Instant::now()));
    }

    fn forget_status(&self, id: &str) {
        let mut map = self.participants.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    fn is_related(&self, participant: &str, patient: &str) -> bool {
        let set = self.related.lock().unwrap_or_else(|e| e.into_inner());
        set.contains(&(participant.to_string(), patient.to_string()))
    }

    fn persons(&self) -> std::sync::MutexGuard<'_, Persons> {
        self.persons.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember_related<'a>(&self, participant: &str, patients: impl Iterator<Item = &'a String>) {
        let mut set = self.related.lock().unwrap_or_else(|e| e.into_inner());
        for patient in patients {
            if set.len() >= RELATED_CAPACITY {
                set.clear();
            }
            set.insert((participant.to_string(), patient.clone()));
        }
    }
}

impl std::fmt::Debug for DecisionPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionPoint")
            .field("enforcing", &self.store.is_some())
            .field("rule", &self.rule.as_ref().map(|_| "<rule>"))
            .finish_non_exhaustive()
    }
}

type Result<T> = std::result::Result<T, store::StoreError>;

impl DecisionPoint {
    /// A decision point that permits everything.
    pub fn new() -> Self {
        DecisionPoint::default()
    }

    /// The exchange's rules, looking up participants and treatment relationships in `store`.
    pub fn enforcing(store: Store) -> Self {
        DecisionPoint {
            store: Some(store),
            rule: None,
            cache: Arc::default(),
            privacy: Some(Arc::new(Privacy::new(
                privacy::policy::Policy::connecticut(),
            ))),
        }
    }

    /// This decision point with `policy` instead of the shipped Connecticut one (an enforcing
    /// decision point only: open access has no policy).
    pub fn with_policy(mut self, policy: privacy::policy::Policy) -> Self {
        if self.store.is_some() {
            let clock = self.privacy.as_ref().map(|p| p.clock.clone());
            let mut privacy = Privacy::new(policy);
            if let Some(clock) = clock {
                privacy.clock = clock;
            }
            self.privacy = Some(Arc::new(privacy));
        }
        self
    }

    /// This decision point without the privacy policy: the access issue's rules alone (to measure
    /// what the policy costs; never for serving).
    pub fn without_privacy(mut self) -> Self {
        self.privacy = None;
        self
    }

    /// This decision point deciding at the times `clock` answers (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        if let Some(p) = self.privacy.take() {
            let policy = p.policy.clone();
            let mut privacy = Privacy::new(policy);
            privacy.clock = clock;
            self.privacy = Some(Arc::new(privacy));
        }
        self
    }

    /// The privacy policy and consent state, when this decision point enforces one.
    pub fn privacy(&self) -> Option<&Privacy> {
        self.privacy.as_deref()
    }

    /// A Consent write of this process landed: the next decision reads the consent state again.
    pub fn consents_changed(&self) {
        if let Some(p) = &self.privacy {
            p.consents.changed();
        }
    }

    /// Whether this decision point applies the exchange's rules (and so needs authenticated
    /// requesters), rather than permitting everything.
    pub fn is_enforcing(&self) -> bool {
        self.store.is_some()
    }

    /// This decision point with `rule` applied after its own rules to every resource.
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Whether this decision point permits `who` everything, so that callers may skip work that
    /// only matters when something is withheld.
    pub fn permits_everything(&self, who: &Requester) -> bool {
        self.rule.is_none()
            && (self.store.is_none() || matches!(who.principal, Principal::System { .. }))
    }

    /// The request-level decision, before anything is read or written.
    pub async fn authorize(&self, who: &Requester, ask: Ask<'_>) -> Result<Decision> {
        let writes = matches!(
            ask.interaction,
            Interaction::Create | Interaction::Update | Interaction::Delete
        );
        let system = matches!(who.principal, Principal::System { .. });
        if ask.resource_type == Some("AuditEvent") && writes && !system {
            return Ok(Decision::deny(Reason::AuditTrail));
        }
        if self.store.is_none() {
            return Ok(Decision::PERMIT);
        }
        if ask.resource_type == Some("AuditEvent") {
            // The audit trail is read by operators (a patient reads their own accounting of
            // disclosures through its own operation).
            return Ok(match &who.principal {
                Principal::Anonymous => Decision::deny(Reason::Unauthenticated),
                _ if self.is_operator(who).await? => Decision::PERMIT,
                _ => Decision::deny(Reason::Role),
            });
        }
        match &who.principal {
            Principal::System { .. } => Ok(Decision::PERMIT),
            Principal::Anonymous => Ok(Decision::deny(Reason::Unauthenticated)),
            Principal::Client { scopes, .. } => {
                if let Some(ty) = ask.resource_type {
                    if !scopes.permits(Context::System, ty, ask.interaction) {
                        return Ok(Decision::deny(Reason::Scope {
                            interaction: ask.interaction,
                            resource_type: ty.to_string(),
                        }));
                    }
                }
                self.participant_rules(who, ask).await
            }
            Principal::User { role, .. } => match role {
                Role::OperatorAdmin => {
                    let clinical = ask.resource_type.is_none_or(|ty| {
                        !is_directory(ty) && ty != "AuditEvent" && ty != "Patient"
                    });
                    if clinical && !who.purpose_stated {
                        Ok(Decision::deny(Reason::NoStatedPurpose))
                    } else {
                        Ok(Decision::PERMIT)
                    }
                }
                Role::Patient { .. } => {
                    // A patient records their own privacy choices (checked against the body
                    // before the write commits), and writes nothing else.
                    let consent = ask.resource_type == Some("Consent")
                        && ask.interaction != Interaction::Delete;
                    if writes && !consent {
                        Ok(Decision::deny(Reason::Role))
                    } else {
                        Ok(Decision::PERMIT)
                    }
                }
                Role::ParticipantAdmin => {
                    if ask.resource_type.is_some_and(is_directory) {
                        self.participant_rules(who, ask).await
                    } else {
                        Ok(Decision::deny(Reason::Role))
                    }
                }
                Role::Clinician | Role::Staff => self.participant_rules(who, ask).await,
            },
        }
    }

    /// Whether `who` acts for the exchange's operator: the exchange itself, an operator's portal
    /// account, or a system of a live exchange-operator participant (an operator token). With open
    /// access, everyone.
    pub async fn is_operator(&self, who: &Requester) -> Result<bool> {
        if self.store.is_none() {
            return Ok(true);
        }
        Ok(match &who.principal {
            Principal::System { .. } => true,
            Principal::User { role, .. } => *role == Role::OperatorAdmin,
            Principal::Client { .. } => matches!(
                self.participant(who).await?,
                Some((Status::Live, Some(Kind::ExchangeOperator)))
            ),
            Principal::Anonymous => false,
        })
    }

    /// Participant status and purpose of use, for a participant's systems and people.
    async fn participant_rules(&self, who: &Requester, ask: Ask<'_>) -> Result<Decision> {
        let directory = ask.resource_type.is_some_and(is_directory)
            && matches!(
                ask.interaction,
                Interaction::Read | Interaction::Vread | Interaction::Search | Interaction::History
            );
        let Some((status, kind)) = self.participant(who).await? else {
            return Ok(Decision::deny(Reason::UnknownParticipant));
        };
        if directory {
            return Ok(Decision::PERMIT);
        }
        if status != Status::Live {
            return Ok(Decision::deny(Reason::ParticipantStatus { status }));
        }
        let public_health = kind == Some(Kind::PublicHealth);
        match who.purpose {
            PurposeOfUse::Pubhlth if !public_health => Ok(Decision::deny(Reason::Purpose {
                purpose: who.purpose,
            })),
            _ => Ok(Decision::PERMIT),
        }
    }

    /// The practitioner (Practitioner id) asking, read once per request, for consents that name
    /// one: a user's account linked to a Practitioner (`nutmeg admin user add --practitioner`), or
    /// any requester of a solo practice (the practice is its one practitioner). Either way the
    /// Practitioner must be joined to the requester's participant by an active PractitionerRole
    /// now, so an account cannot keep a practitioner who left, nor claim another participant's.
    async fn practitioner_of(&self, who: &Requester) -> Result<Option<String>> {
        if let Some(known) = &who.facts().practitioner {
            return Ok(known.clone());
        }
        let found = match (&self.store, who.principal.participant()) {
            (Some(store), Some(participant)) => {
                let claimed = match &who.principal {
                    Principal::User { user_id, .. } => {
                        store.user(user_id).await?.and_then(|u| u.practitioner_id)
                    }
                    _ => None,
                };
                let solo = matches!(
                    self.participant(who).await?,
                    Some((_, Some(Kind::SoloPractice)))
                );
                if claimed.is_some() || solo {
                    let joined = crate::participants::practitioners_of(store, participant).await?;
                    match claimed {
                        Some(id) => joined.iter().any(|(j, _)| *j == id).then_some(id),
                        None if joined.len() == 1 => joined.into_iter().next().map(|(id, _)| id),
                        None => None,
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        who.facts().practitioner = Some(found.clone());
        Ok(found)
    }

    /// The status and kind of the requester's participant, read once per request; `None` if it
    /// acts for no participant the exchange knows.
    async fn participant(&self, who: &Requester) -> Result<Option<(Status, Option<Kind>)>> {
        if let Some(known) = who.facts().status {
            return Ok(known);
        }
        let found = match (who.principal.participant(), &self.store) {
            (Some(id), Some(store)) => match self.cache.status(id) {
                Some(found) => found,
                None => {
                    let found = store
                        .read("Organization", id)
                        .await?
                        .filter(|s| !s.deleted)
                        .and_then(|s| {
                            let org: Value = serde_json::from_str(&s.json).ok()?;
                            participant_of(&s.id, s.version, &org).map(|p| (p.status, p.kind))
                        });
                    self.cache.remember_status(id, found);
                    found
                }
            },
            _ => None,
        };
        who.facts().status = Some(found);
        Ok(found)
    }

    /// The decision about one resource about to be disclosed.
    pub async fn decide(&self, who: &Requester, stored: &Stored) -> Result<Decision> {
        Ok(self.judge(who, stored).await?.0)
    }

    /// [`DecisionPoint::decide`], answering also the patients the resource is about (for the audit
    /// trail). The exchange's own tools get neither rules nor patients: they are not audited.
    pub async fn judge(&self, who: &Requester, stored: &Stored) -> Result<(Decision, Vec<String>)> {
        if matches!(who.principal, Principal::System { .. }) && self.rule.is_none() {
            return Ok((Decision::PERMIT, Vec::new()));
        }
        // The store reads the patients with the version where it can (the compartment rows written
        // with it); otherwise only the elements the Patient compartment looks at are parsed. A
        // stored resource that cannot be read is withheld rather than taken for directory data.
        let patients = if stored.deleted {
            Vec::new()
        } else if let Some(patients) = &stored.patients {
            patients.clone()
        } else {
            match fhir::search::extract::patient_compartments_of_json(&stored.json) {
                Some(patients) => patients,
                None => {
                    return Ok((
                        Decision::deny(Reason::Rule("the stored resource is unreadable".into())),
                        Vec::new(),
                    ))
                }
            }
        };
        let decision = self
            .decide_about(
                who,
                &Subject {
                    stored,
                    patients: &patients,
                },
            )
            .await?;
        Ok((decision, patients))
    }

    /// [`DecisionPoint::decide`] for a resource whose patients are already known.
    pub async fn decide_about(&self, who: &Requester, subject: &Subject<'_>) -> Result<Decision> {
        let mut decision = if self.store.is_some() {
            if !self.may_see_notice(who, subject.stored).await? {
                return Ok(Decision::deny(Reason::Role));
            }
            self.own_rules(who, subject).await?
        } else {
            Decision::PERMIT
        };
        if let Decision::Permit { obligations } = &mut decision {
            match self.privacy_rules(who, subject).await? {
                Decision::Permit { obligations: more } => {
                    for o in more {
                        if !obligations.contains(&o) {
                            obligations.push(o);
                        }
                    }
                }
                deny => decision = deny,
            }
        }
        match (&self.rule, decision) {
            (Some(rule), Decision::Permit { mut obligations }) => match rule(who, subject) {
                Decision::Permit { obligations: more } => {
                    obligations.extend(more);
                    Ok(Decision::Permit { obligations })
                }
                deny => Ok(deny),
            },
            (_, decision) => Ok(decision),
        }
    }

    /// A notice the exchange wrote to a participant (a break-the-glass notice,
    /// [`crate::notices`]) is shown to its addressee (under the rules for any other data about the
    /// patient), the exchange's operators and its tools; to nobody else.
    async fn may_see_notice(&self, who: &Requester, stored: &Stored) -> Result<bool> {
        let Some(addressee) = crate::notices::addressee(&stored.resource_type, &stored.json) else {
            return Ok(true);
        };
        if addressee.is_some() && who.principal.participant() == addressee.as_deref() {
            return Ok(true);
        }
        self.is_operator(who).await
    }

    async fn own_rules(&self, who: &Requester, subject: &Subject<'_>) -> Result<Decision> {
        let ty = subject.stored.resource_type.as_str();
        let clinical = !subject.patients.is_empty();
        // Operators run the patient index: to them a Patient (who someone is and under which
        // identifiers each source knows them, what `$ihe-pix` and PDQm cross-reference) is the
        // index's administrative data, whatever their purpose and without a treatment relationship.
        let identity = ty == "Patient" && subject.patients == [subject.stored.id.as_str()];
        match &who.principal {
            Principal::System { .. } => Ok(Decision::PERMIT),
            Principal::Anonymous => Ok(Decision::deny(Reason::Unauthenticated)),
            Principal::Client { scopes, .. } => {
                if !scopes.permits(Context::System, ty, Interaction::Read) {
                    return Ok(Decision::deny(Reason::Scope {
                        interaction: Interaction::Read,
                        resource_type: ty.to_string(),
                    }));
                }
                if identity && self.is_operator(who).await? {
                    return Ok(Decision::PERMIT);
                }
                self.relationship_rules(who, subject, clinical).await
            }
            Principal::User { role, .. } => match role {
                Role::OperatorAdmin => {
                    if clinical && !identity && !who.purpose_stated {
                        Ok(Decision::deny(Reason::NoStatedPurpose))
                    } else {
                        Ok(Decision::PERMIT)
                    }
                }
                Role::Patient { patient_id } => {
                    if !clinical || self.same_person_as(patient_id, subject.patients).await? {
                        Ok(Decision::PERMIT)
                    } else {
                        Ok(Decision::deny(Reason::NotOwnRecord))
                    }
                }
                Role::ParticipantAdmin if clinical => Ok(Decision::deny(Reason::Role)),
                Role::ParticipantAdmin => Ok(Decision::PERMIT),
                Role::Clinician | Role::Staff => {
                    self.relationship_rules(who, subject, clinical).await
                }
            },
        }
    }

    /// A participant sees clinical data about a patient only as a live participant, and (except
    /// in an emergency) only with a treatment relationship with every patient the resource is
    /// about.
    async fn relationship_rules(
        &self,
        who: &Requester,
        subject: &Subject<'_>,
        clinical: bool,
    ) -> Result<Decision> {
        let Some((status, kind)) = self.participant(who).await? else {
            return Ok(Decision::deny(Reason::UnknownParticipant));
        };
        if !clinical {
            return Ok(Decision::PERMIT);
        }
        if status != Status::Live {
            return Ok(Decision::deny(Reason::ParticipantStatus { status }));
        }
        match who.purpose {
            PurposeOfUse::Etreat => {
                return Ok(Decision::Permit {
                    obligations: vec![Obligation::FlagEmergencyAccess],
                })
            }
            PurposeOfUse::Pubhlth => {
                return Ok(if kind == Some(Kind::PublicHealth) {
                    Decision::PERMIT
                } else {
                    Decision::deny(Reason::Purpose {
                        purpose: who.purpose,
                    })
                });
            }
            _ => {}
        }
        if self.related_to_all(who, subject.patients).await? {
            Ok(Decision::PERMIT)
        } else {
            Ok(Decision::deny(Reason::NoRelationship))
        }
    }

    /// The privacy policy's decision about a resource the exchange's other rules permit (see the
    /// module documentation for whom it binds).
    async fn privacy_rules(&self, who: &Requester, subject: &Subject<'_>) -> Result<Decision> {
        let (Some(privacy), Some(store)) = (&self.privacy, &self.store) else {
            return Ok(Decision::PERMIT);
        };
        if subject.patients.is_empty() || subject.stored.deleted {
            return Ok(Decision::PERMIT);
        }
        let ty = subject.stored.resource_type.as_str();
        let (purpose, recipient) = match &who.principal {
            Principal::System { .. } | Principal::Anonymous => return Ok(Decision::PERMIT),
            Principal::User {
                role: Role::OperatorAdmin,
                ..
            } => return Ok(Decision::PERMIT),
            Principal::User {
                role: Role::Patient { patient_id },
                ..
            } => {
                // Who they are and what they chose: always theirs to see.
                if (ty == "Patient" && subject.stored.id == *patient_id)
                    || (ty == "Consent" && subject.patients.iter().all(|p| p == patient_id))
                {
                    return Ok(Decision::PERMIT);
                }
                (
                    privacy::codes::Purpose::Patrqt,
                    privacy::consent::Recipient {
                        patient: Some(patient_id.clone()),
                        ..Default::default()
                    },
                )
            }
            Principal::Client { participant, .. }
            | Principal::User {
                participant: Some(participant),
                ..
            } => {
                if self.is_operator(who).await? {
                    return Ok(Decision::PERMIT);
                }
                let purpose = privacy::codes::Purpose::parse(who.purpose.code())
                    .unwrap_or(privacy::codes::Purpose::Treat);
                (
                    purpose,
                    privacy::consent::Recipient {
                        organization: Some(participant.clone()),
                        ..Default::default()
                    },
                )
            }
            Principal::User { .. } => return Ok(Decision::deny(Reason::Role)),
        };
        privacy.consents.refresh(store).await?;
        let now = (privacy.clock)();
        let mut obligations: Vec<Obligation> = Vec::new();
        for patient in subject.patients {
            let Ok(data) = privacy::policy::Data::from_json_text(
                &subject.stored.json,
                patient,
                &privacy.policy,
            ) else {
                return Ok(Decision::deny(Reason::Privacy(vec!["unreadable".into()])));
            };
            let relationship = match &who.principal {
                Principal::Client { .. } | Principal::User { .. }
                    if recipient.organization.is_some() =>
                {
                    self.related_to_all(who, std::slice::from_ref(patient))
                        .await?
                }
                _ => false,
            };
            let consents = privacy.consents.for_decision(patient, &data.family);
            let mut recipient = recipient.clone();
            if consents.iter().any(|c| c.provision.names_practitioner()) {
                recipient.practitioner = self.practitioner_of(who).await?;
            }
            let request = privacy::policy::Request {
                purpose,
                recipient,
                relationship,
                emergency_declared: who.emergency_declared,
            };
            let decided = privacy.policy.decide(&request, &data, &consents, now);
            if !decided.permit {
                return Ok(Decision::deny(Reason::Privacy(
                    decided
                        .reasons
                        .iter()
                        .map(|r| r.code().to_string())
                        .collect(),
                )));
            }
            for o in decided
                .obligations
                .iter()
                .filter_map(Obligation::from_policy)
            {
                if !obligations.contains(&o) {
                    obligations.push(o);
                }
            }
        }
        Ok(Decision::Permit { obligations })
    }

    /// The policy's decision about sending or querying `resource` (as it would be labelled on
    /// intake; a plain resource when the caller names none) about `patient`, for the requester:
    /// the CDS Hooks consult. Purpose, recipient and relationship are the requester's own; the
    /// exchange's own tools and operators ask as a recipient with no participant (no
    /// relationship). `None` when this decision point enforces no policy.
    pub async fn consult(
        &self,
        who: &Requester,
        patient: &str,
        resource: &Value,
    ) -> Result<Option<privacy::policy::Decision>> {
        let (Some(privacy), Some(store)) = (&self.privacy, &self.store) else {
            return Ok(None);
        };
        let (purpose, recipient) = match &who.principal {
            Principal::User {
                role: Role::Patient { patient_id },
                ..
            } => (
                privacy::codes::Purpose::Patrqt,
                privacy::consent::Recipient {
                    patient: Some(patient_id.clone()),
                    ..Default::default()
                },
            ),
            principal => (
                privacy::codes::Purpose::parse(who.purpose.code())
                    .unwrap_or(privacy::codes::Purpose::Treat),
                privacy::consent::Recipient {
                    organization: principal.participant().map(str::to_string),
                    ..Default::default()
                },
            ),
        };
        let mut resource = resource.clone();
        let source = privacy::labels::ResourceLabels::from_resource(&resource).source;
        let labels = privacy::labels::label(&resource, &source);
        privacy::labels::apply(&mut resource, &labels, &source);
        let mut data = privacy::policy::Data::from_resource(&resource, patient);
        // Who sent stored data is what intake recorded, never what a caller claims.
        data.source_participant = None;
        let mut relationship = recipient.organization.is_some()
            && self
                .related_to_all(who, std::slice::from_ref(&patient.to_string()))
                .await?;
        privacy.consents.refresh(store).await?;
        let mut consents = privacy.consents.for_decision(patient, &data.family);
        // A patient out of the exchange is answered for as one never heard of (no consents, no
        // relationship): the answer reveals neither their choice nor that the exchange knows them.
        // They themselves, and operators, get the real answer.
        let all: Vec<&privacy::consent::Consent> = consents.iter().collect();
        let (inside, _) = privacy.policy.choice(&all, (privacy.clock)());
        let own = matches!(&who.principal,
            Principal::User { role: Role::Patient { patient_id }, .. } if patient_id == patient);
        if !inside && !own && !self.is_operator(who).await? {
            consents.clear();
            relationship = false;
        }
        let mut recipient = recipient;
        if consents.iter().any(|c| c.provision.names_practitioner()) {
            recipient.practitioner = self.practitioner_of(who).await?;
        }
        let request = privacy::policy::Request {
            purpose,
            recipient,
            relationship,
            emergency_declared: who.emergency_declared,
        };
        Ok(Some(privacy.policy.decide(
            &request,
            &data,
            &consents,
            (privacy.clock)(),
        )))
    }

    /// Whether the requester's participant has a treatment relationship with every one of
    /// `patients`, asking the store only about patients not yet seen in this request. A
    /// relationship is with the person: one with any Patient linked to the same enterprise
    /// identity counts ([`Persons`]).
    async fn related_to_all(&self, who: &Requester, patients: &[String]) -> Result<bool> {
        let (Some(store), Some(participant)) = (&self.store, who.principal.participant()) else {
            return Ok(false);
        };
        let unknown: Vec<String> = {
            let facts = who.facts();
            if patients.iter().any(|p| facts.unrelated.contains(p)) {
                return Ok(false);
            }
            patients
                .iter()
                .filter(|p| !facts.related.contains(*p) && !self.cache.is_related(participant, p))
                .cloned()
                .collect()
        };
        if unknown.is_empty() {
            return Ok(true);
        }
        let mut related: HashSet<String> = store
            .treatment_relationships(participant, &unknown)
            .await?
            .into_iter()
            .collect();
        self.cache.remember_related(participant, related.iter());
        let others: Vec<String> = unknown
            .iter()
            .filter(|p| !related.contains(*p))
            .cloned()
            .collect();
        if !others.is_empty() {
            related.extend(
                self.related_through_person(store, participant, &others)
                    .await?,
            );
        }
        let mut facts = who.facts();
        let mut all = true;
        for patient in unknown {
            if related.contains(&patient) {
                facts.related.insert(patient);
            } else {
                all = false;
                facts.unrelated.insert(patient);
            }
        }
        Ok(all)
    }

    /// Those of `patients` (none of which the participant has a relationship with of its own)
    /// whose person includes a Patient the participant has a treatment relationship with.
    async fn related_through_person(
        &self,
        store: &Store,
        participant: &str,
        patients: &[String],
    ) -> Result<HashSet<String>> {
        let generation = self.fresh_persons(store).await?;
        let mut found = HashSet::new();
        let mut unknown = Vec::new();
        {
            let persons = self.cache.persons();
            for patient in patients {
                if persons
                    .related
                    .contains(&(participant.to_string(), patient.clone()))
                {
                    found.insert(patient.clone());
                } else {
                    unknown.push(patient.clone());
                }
            }
        }
        if unknown.is_empty() {
            return Ok(found);
        }
        let persons = self.persons_of(store, &unknown, generation).await?;
        let mut members: Vec<String> = persons
            .values()
            .flat_map(|m| m.iter())
            .filter(|m| !unknown.contains(m))
            .cloned()
            .collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Ok(found);
        }
        let related: HashSet<String> = store
            .treatment_relationships(participant, &members)
            .await?
            .into_iter()
            .collect();
        let through: Vec<String> = unknown
            .into_iter()
            .filter(|p| {
                persons
                    .get(p)
                    .is_some_and(|m| m.iter().any(|m| related.contains(m)))
            })
            .collect();
        let mut remembered = self.cache.persons();
        if remembered.generation == generation {
            if remembered.related.len() >= PERSONS_CAPACITY {
                remembered.related.clear();
            }
            for patient in &through {
                remembered
                    .related
                    .insert((participant.to_string(), patient.clone()));
            }
        }
        found.extend(through);
        Ok(found)
    }

    /// Forgets the remembered persons when the link history moved since it was last read (read at
    /// most once per [`STATUS_TTL`], or at once after [`DecisionPoint::identities_changed`]);
    /// answers the generation of what is remembered now.
    async fn fresh_persons(&self, store: &Store) -> Result<u64> {
        {
            let persons = self.cache.persons();
            if persons.checked.is_some_and(|at| at.elapsed() < STATUS_TTL) {
                return Ok(persons.generation);
            }
        }
        let head = store.mpi_history_head().await?;
        let mut persons = self.cache.persons();
        if persons.head != Some(head) {
            persons.forget();
            persons.head = Some(head);
        }
        persons.checked = Some(std::time::Instant::now());
        Ok(persons.generation)
    }

    /// Each of `patients` with its person (every Patient linked with it, itself included; just
    /// itself when it is not linked), remembered while `generation` holds.
    async fn persons_of(
        &self,
        store: &Store,
        patients: &[String],
        generation: u64,
    ) -> Result<HashMap<String, Arc<[String]>>> {
        let mut out = HashMap::new();
        let mut unknown = Vec::new();
        {
            let persons = self.cache.persons();
            for patient in patients {
                match persons.members.get(patient) {
                    Some(members) => {
                        out.insert(patient.clone(), members.clone());
                    }
                    None => unknown.push(patient.clone()),
                }
            }
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        let mut linked: HashMap<String, Vec<String>> = HashMap::new();
        for (asked, member) in store.mpi_persons_of(&unknown).await? {
            linked.entry(asked).or_default().push(member);
        }
        let mut remembered = self.cache.persons();
        let keep = remembered.generation == generation;
        if keep && remembered.members.len() >= PERSONS_CAPACITY {
            remembered.members.clear();
        }
        for patient in unknown {
            let mut members = linked.remove(&patient).unwrap_or_default();
            if !members.contains(&patient) {
                members.push(patient.clone());
            }
            let members: Arc<[String]> = members.into();
            if keep {
                remembered.members.insert(patient.clone(), members.clone());
            }
            out.insert(patient, members);
        }
        Ok(out)
    }

    /// Whether every one of `patients` is `own` or linked to the same enterprise identity (a
    /// patient's record is the person's).
    async fn same_person_as(&self, own: &str, patients: &[String]) -> Result<bool> {
        if patients.iter().all(|p| p == own) {
            return Ok(true);
        }
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let generation = self.fresh_persons(store).await?;
        let persons = self
            .persons_of(store, std::slice::from_ref(&own.to_string()), generation)
            .await?;
        Ok(persons
            .get(own)
            .is_some_and(|members| patients.iter().all(|p| members.iter().any(|m| m == p))))
    }

    /// An enterprise identity changed in this process: the persons and the relationships through
    /// them are read again before the next decision that needs them.
    pub fn identities_changed(&self) {
        let mut persons = self.cache.persons();
        persons.forget();
        persons.checked = None;
    }

    /// Tells the decision point that the requester's participant now has a relationship with these
    /// patients (it just sent data about them), so the rest of the request need not ask again.
    pub(crate) fn note_related(&self, who: &Requester, patients: &[String]) {
        let mut facts = who.facts();
        for patient in patients {
            facts.unrelated.remove(patient);
            facts.related.insert(patient.clone());
        }
        if let Some(participant) = who.principal.participant() {
            self.cache.remember_related(participant, patients.iter());
        }
    }

    /// Forgets what this process remembered about a participant's status (its Organization was
    /// just written here), so the next request reads it again.
    pub(crate) fn forget_participant(&self, id: &str) {
        self.cache.forget_status(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_is_named_in_the_audit_trail() {
        let mut who = Requester::system("import");
        assert_eq!(who.principal.participant(), None);
        assert_eq!(
            who.audit_requestor().display.as_deref(),
            Some("nutmeg import")
        );
        who.principal = Principal::Client {
            client_id: "ehr-7".into(),
            participant: "hartford".into(),
            scopes: ScopeSet::parse("system/Patient.rs").unwrap(),
        };
        let requestor = who.audit_requestor();
        assert_eq!(
            requestor.participant.as_deref(),
            Some("Organization/hartford")
        );
        assert_eq!(requestor.id.as_deref(), Some("ehr-7"));
        who.principal = Principal::User {
            user_id: "pat-1".into(),
            participant: None,
            role: Role::Patient {
                patient_id: "p1".into(),
            },
        };
        assert_eq!(who.audit_requestor().participant, None);
        assert_eq!(who.audit_requestor().id.as_deref(), Some("pat-1"));
        who.principal = Principal::Anonymous;
        assert_eq!(
            who.audit_requestor().display.as_deref(),
            Some("unauthenticated")
        );
    }

    #[test]
    fn request_level_reasons_name_the_rule_without_patient_data() {
        let reason = Reason::Scope {
            interaction: Interaction::Search,
            resource_type: "Observation".into(),
        };
        assert_eq!(reason.code(), "scope");
        assert_eq!(
            reason.text(),
            "The access token's scopes do not allow search of Observation"
        );
        assert!(Reason::ParticipantStatus {
            status: Status::Suspended
        }
        .text()
        .contains("suspended"));
    }
}
