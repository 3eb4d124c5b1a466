//! AuditEvents in the style of IHE Basic Audit Log Patterns (BALP): what the exchange records about
//! every request that touches patient data, built from plain facts so that every path (REST, and
//! later Direct and HL7 v2) records the same shape. The store keeps them in the hash-chained audit
//! log; a patient's accounting of disclosures is a search over them by patient.
//!
//! The shape follows BALP's RESTful patterns as a server records them: `type` rest with the FHIR
//! interaction as `subtype`; the client as the source agent (with its network address), the
//! exchange as the destination agent, and the requesting participant, user or client as the
//! requestor; the purpose of use; entities for the X-Request-Id, the query, each patient and each
//! resource disclosed or written (with its version).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use fhir::search::datetime::format_instant;

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The FHIR RESTful interaction audited (the AuditEvent's `subtype`), which also fixes its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    History,
    Create,
    Search,
    Batch,
    Transaction,
    /// An operation such as `$everything`.
    Operation,
}

impl Interaction {
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::History => "history",
            Interaction::Create => "create",
            Interaction::Search => "search",
            Interaction::Batch => "batch",
            Interaction::Transaction => "transaction",
            Interaction::Operation => "operation",
        }
    }

    /// AuditEvent.action: C, R, U, D or E (execute: searches and operations).
    pub fn action(self) -> &'static str {
        match self {
            Interaction::Create => "C",
            Interaction::Read | Interaction::Vread | Interaction::History => "R",
            Interaction::Update | Interaction::Patch => "U",
            Interaction::Delete => "D",
            Interaction::Search
            | Interaction::Batch
            | Interaction::Transaction
            | Interaction::Operation => "E",
        }
    }
}

/// AuditEvent.outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The request was refused or failed on its input (a 4xx).
    MinorFailure,
    /// The request failed inside the exchange (a 5xx).
    SeriousFailure,
}

impl Outcome {
    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            0..=399 => Outcome::Success,
            400..=499 => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        }
    }

    /// AuditEvent.outcome's code.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }
}

/// Who made the request: the requestor agent, as the access decision saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requestor {
    /// A reference to the participant the requester acts for (`Organization/...`), if any.
    pub participant: Option<String>,
    /// The authenticated system client or user, as an identifier value (a client id, a user name).
    pub id: Option<String>,
    /// A readable name for the record (a client's or user's display name), never patient data.
    pub display: Option<String>,
}

/// The facts of one audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFacts {
    /// Milliseconds since the Unix epoch.
    pub recorded: i64,
    pub interaction: Interaction,
    pub outcome: Outcome,
    /// The request id (X-Request-Id) that ties the record to the log lines of the request.
    pub request_id: String,
    pub requestor: Requestor,
    /// The client's network address (IP), if known.
    pub client_address: Option<String>,
    /// The purpose of use (a v3 ActReason code such as TREAT).
    pub purpose: String,
    /// The exchange's FHIR base URL (the destination agent and observer).
    pub server: String,
    /// The query string of a search or operation, as received.
    pub query: Option<String>,
    /// The ids of the patients the request concerned.
    pub patients: Vec<String>,
    /// Each resource disclosed or written: type, id and version.
    pub resources: Vec<(String, String, i64)>,
    /// Why a request was refused (the decision point's reason codes), or what a privacy officer
    /// must review (emergency access): AuditEvent.outcomeDesc. Never patient data.
    pub outcome_desc: Option<String>,
    /// What the privacy policy withheld from the answer, and why: for the operators' view of the
    /// trail only (the patient's accounting and the requester never see it).
    pub withheld: Vec<Withheld>,
}

/// A resource version the privacy policy withheld from a request, with the policy's reason codes
/// (`opted-out`, `no-consent`, ...) and the patients it is about. Recorded as an entity whose role
/// is [`WITHHELD_ROLE`] with a `detail` [`WITHHELD_DETAIL`] holding the codes, comma-separated;
/// its patients are index pairs (`patient`), never disclosures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub resource: (String, String, i64),
    pub patients: Vec<String>,
    pub reasons: Vec<String>,
}

/// The code system of the role of an audit entity the exchange records that BALP has no code for.
pub const ENTITY_ROLE_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/audit-entity-role";
/// The role (in [`ENTITY_ROLE_SYSTEM`]) of a resource the privacy policy withheld.
pub const WITHHELD_ROLE: &str = "withheld";
/// The `entity.detail.type` that carries the privacy policy's reason codes.
pub const WITHHELD_DETAIL: &str = "privacy-policy-reasons";
/// How many withheld resources one record names (a search that withholds more names the first
/// ones and counts the rest in a last entity's detail).
pub const WITHHELD_NAMED: usize = 100;

/// The names the exchange indexes audit records by (`store::NewAuditRecord::index`), and the values
/// each takes.
pub mod index {
    /// A patient the request concerned (the Patient's id), one pair per patient, unless the request
    /// disclosed the patient's data ([`DISCLOSURE`] instead); a patient whose data the policy
    /// withheld always has this one. Records written by earlier versions have both for a disclosure.
    pub const PATIENT: &str = "patient";
    /// The requesting participant (its Organization's id).
    pub const PARTICIPANT: &str = "participant";
    /// The authenticated client or user (a client id, a user name).
    pub const AGENT: &str = "agent";
    /// AuditEvent.outcome: `0`, `4` or `8`.
    pub const OUTCOME: &str = "outcome";
    /// The interaction (AuditEvent.subtype): `read`, `search`, `create`...
    pub const SUBTYPE: &str = "subtype";
    /// The purpose of use (`TREAT`, `ETREAT`...).
    pub const PURPOSE: &str = "purpose";
    /// A patient whose data the request disclosed to a participant (see
    /// [`super::is_disclosure`]): what the patient's accounting of disclosures looks up; a search
    /// of the trail by patient looks up both this and [`PATIENT`].
    pub const DISCLOSURE: &str = "disclosure";
}

/// The interactions that disclose data: what an accounting of disclosures lists.
pub const DISCLOSING: &[Interaction] = &[
    Interaction::Read,
    Interaction::Vread,
    Interaction::Search,
    Interaction::History,
    Interaction::Operation,
];

/// Whether the audited request disclosed data to a participant: it succeeded, read (read, vread,
/// search, history, an operation), acted for a participant, and let at least one resource leave.
/// Writes, refusals, attestations (which disclose nothing) and the exchange's own tools are not
/// disclosures.
pub fn is_disclosure(facts: &AuditFacts) -> bool {
    facts.outcome == Outcome::Success
        && DISCLOSING.contains(&facts.interaction)
        && facts.requestor.participant.is_some()
        && !facts.resources.is_empty()
}

/// The `(name, value)` pairs to find this request's record by (see [`index`]).
pub fn audit_index(facts: &AuditFacts) -> Vec<(String, String)> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    // A patient whose data was disclosed gets one pair, `disclosure`, not also `patient`: each of
    // these pairs lands on a random page of the index, and on SQLite the pages a durable append
    // dirties are most of what it costs (an operator's search by patient looks up both names).
    let name = if is_disclosure(facts) {
        index::DISCLOSURE
    } else {
        index::PATIENT
    };
    for patient in &facts.patients {
        pairs.push((name, patient.clone()));
    }
    for withheld in &facts.withheld {
        for patient in &withheld.patients {
            if !facts.patients.contains(patient)
                && !pairs
                    .iter()
                    .any(|(n, v)| *n == index::PATIENT && v == patient)
            {
                pairs.push((index::PATIENT, patient.clone()));
            }
        }
    }
    let r = &facts.requestor;
    if let Some(participant) = &r.participant {
        let id = participant
            .strip_prefix("Organization/")
            .unwrap_or(participant);
        pairs.push((index::PARTICIPANT, id.to_string()));
    }
    if let Some(agent) = &r.id {
        pairs.push((index::AGENT, agent.clone()));
    }
    pairs.push((index::OUTCOME, facts.outcome.code().to_string()));
    pairs.push((index::SUBTYPE, facts.interaction.code().to_string()));
    pairs.push((index::PURPOSE, facts.purpose.clone()));
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

/// The audit record of these facts for the store: the AuditEvent and its index.
pub fn audit_record(facts: &AuditFacts) -> store::NewAuditRecord {
    store::NewAuditRecord {
        recorded: facts.recorded,
        json: audit_event_text(facts),
        index: audit_index(facts),
    }
}

/// An access token issued to a SMART client: at the token endpoint, or by `nutmeg admin token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// Milliseconds since the Unix epoch.
    pub recorded: i64,
    pub client_id: String,
    /// The client's participant (its Organization's id).
    pub participant: String,
    /// The purpose of use the token carries (`TREAT`...).
    pub purpose: String,
    /// The scopes granted, as the token response gives them.
    pub scopes: String,
    /// The token's own id (never the token).
    pub token_id: String,
    /// Who asked: the client's network address at the token endpoint, none at the command line.
    pub client_address: Option<String>,
    /// How it was issued: `token endpoint` or `nutmeg admin token`.
    pub via: String,
    /// The exchange's FHIR base URL.
    pub server: String,
}

/// A login's agents: the caller's address (the requestor when nothing better names it) and the
/// exchange.
fn login_agents(address: Option<&str>, address_asks: bool, server: &str) -> Vec<Value> {
    let mut agents = Vec::new();
    if let Some(address) = address {
        agents.push(serde_json::json!({
            "type": {"coding": [{"system": DICOM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"value": address}},
            "requestor": address_asks,
            "network": {"address": address, "type": "2"},
        }));
    }
    agents.push(serde_json::json!({
        "type": {"coding": [{"system": DICOM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": "nutmeg", "identifier": {"value": server}},
        "requestor": false,
    }));
    agents
}

/// A BALP-style login event (DICOM 110114 User Authentication, subtype 110122 Login).
fn login_event(recorded: i64, outcome: Outcome, description: String, agents: Vec<Value>) -> Value {
    serde_json::json!({
        "resourceType": "AuditEvent",
        "type": {"system": DICOM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DICOM, "code": "110122", "display": "Login"}],
        "action": "E",
        "recorded": format_instant(recorded),
        "outcome": outcome.code(),
        "outcomeDesc": description,
        "agent": agents,
        "source": {
            "observer": {"display": "nutmeg"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    })
}

/// The audit record of an issued token: a BALP-style security event (DICOM 110114 User
/// Authentication, subtype 110122 Login, outcome success) naming the client and its participant
/// as the requestor, the purpose, and the token (by id) with its scopes; found by `agent`,
/// `participant`, `subtype` (`login` or `110122`), `purpose` and `outcome`. Never about a patient.
pub fn issuance_record(i: &Issuance) -> store::NewAuditRecord {
    let mut agents = login_agents(i.client_address.as_deref(), false, &i.server);
    agents.push(serde_json::json!({
        "type": {"coding": [{"system": DICOM, "code": "110150", "display": "Application"}]},
        "who": {
            "reference": format!("Organization/{}", i.participant),
            "identifier": {"value": i.client_id},
        },
        "requestor": true,
        "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": i.purpose}]}],
    }));
    let mut event = login_event(
        i.recorded,
        Outcome::Success,
        format!("access token issued ({})", i.via),
        agents,
    );
    event["purposeOfEvent"] =
        serde_json::json!([{"coding": [{"system": ACT_REASON, "code": i.purpose}]}]);
    event["entity"] = serde_json::json!([{
        "what": {"identifier": {"value": i.token_id}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": "access token",
        "detail": [{"type": "scope", "valueString": i.scopes}],
    }]);
    store::NewAuditRecord {
        recorded: i.recorded,
        json: event.to_string(),
        index: vec![
            (index::AGENT.to_string(), i.client_id.clone()),
            (index::PARTICIPANT.to_string(), i.participant.clone()),
            (
                index::OUTCOME.to_string(),
                Outcome::Success.code().to_string(),
            ),
            (index::SUBTYPE.to_string(), "login".to_string()),
            // (the subtype's code, for a search by the coding itself)
            (index::SUBTYPE.to_string(), "110122".to_string()),
            (index::PURPOSE.to_string(), i.purpose.clone()),
        ],
    }
}

/// A refused token request, as the token endpoint tells the audit trail.
#[derive(Debug, Clone)]
pub struct TokenRefusal {
    /// When (milliseconds since the Unix epoch).
    pub recorded: i64,
    /// The RFC 6749 error (`invalid_client`, `invalid_grant`, `invalid_request`...).
    pub error: String,
    /// Why, as the client was told.
    pub description: String,
    /// The client id the request claimed (the assertion's issuer, unverified), if it named one.
    pub claimed_client: Option<String>,
    /// The participant of that client, when it is registered.
    pub participant: Option<String>,
    /// The caller's network address.
    pub client_address: Option<String>,
    /// How many refusals like this one (same caller, same error) were not recorded one by one
    /// since the last record of them.
    pub not_recorded_before: u64,
    /// The exchange's FHIR base URL.
    pub server: String,
}

/// The audit record of a refused token request: DICOM 110114 User Authentication, subtype 110122
/// Login, outcome minor failure (`4`), with the caller's address, the client it claimed to be (and
/// its participant, when registered), the error and how many like it went unrecorded before it;
/// found by `subtype` (`login`, `110122`), `outcome` `4`, and `agent`/`participant` when known.
pub fn token_refusal_record(r: &TokenRefusal) -> store::NewAuditRecord {
    let failure = Outcome::MinorFailure.code();
    let mut agents = login_agents(
        r.client_address.as_deref(),
        r.claimed_client.is_none(),
        &r.server,
    );
    if let Some(client) = &r.claimed_client {
        let mut who = serde_json::json!({ "identifier": { "value": client } });
        if let Some(participant) = &r.participant {
            who["reference"] = serde_json::json!(format!("Organization/{participant}"));
        }
        agents.push(serde_json::json!({
            "type": {"coding": [{"system": DICOM, "code": "110150", "display": "Application"}]},
            "who": who,
            "requestor": true,
        }));
    }
    let mut description = format!("token request refused: {}: {}", r.error, r.description);
    if r.not_recorded_before > 0 {
        description.push_str(&format!(
            " ({} more like it from this caller before this one, not recorded one by one)",
            r.not_recorded_before
        ));
    }
    let event = login_event(r.recorded, Outcome::MinorFailure, description, agents);
    let mut index = vec![
        (index::OUTCOME.to_string(), failure.to_string()),
        (index::SUBTYPE.to_string(), "login".to_string()),
        (index::SUBTYPE.to_string(), "110122".to_string()),
    ];
    if let Some(client) = &r.claimed_client {
        index.insert(0, (index::AGENT.to_string(), client.clone()));
    }
    if let Some(participant) = &r.participant {
        index.push((index::PARTICIPANT.to_string(), participant.clone()));
    }
    store::NewAuditRecord {
        recorded: r.recorded,
        json: event.to_string(),
        index,
    }
}

/// The AuditEvent for these facts (without `id` and `meta`: the store assigns its place).
pub fn audit_event(facts: &AuditFacts) -> Value {
    serde_json::to_value(event(facts)).unwrap_or(Value::Null)
}

/// The AuditEvent for these facts as text, as the store keeps it.
pub fn audit_event_text(facts: &AuditFacts) -> String {
    serde_json::to_string(&event(facts)).unwrap_or_default()
}

fn event(facts: &AuditFacts) -> Event<'_> {
    let source = Agent {
        ty: Concept::of(Coding::new(DICOM, "110153", "Source Role ID")),
        who: facts.client_address.as_deref().map(|address| Who {
            identifier: Some(IdValue { value: address }),
            ..Who::default()
        }),
        requestor: false,
        purpose_of_use: None,
        network: facts
            .client_address
            .as_deref()
            .map(|address| Network { address, ty: "2" }),
    };
    let destination = Agent {
        ty: Concept::of(Coding::new(DICOM, "110152", "Destination Role ID")),
        who: Some(Who {
            display: Some("nutmeg"),
            identifier: Some(IdValue {
                value: &facts.server,
            }),
            ..Who::default()
        }),
        requestor: false,
        purpose_of_use: None,
        network: Some(Network {
            address: &facts.server,
            ty: "5",
        }),
    };
    let r = &facts.requestor;
    let mut who = Who {
        reference: r.participant.as_deref(),
        identifier: r.id.as_deref().map(|value| IdValue { value }),
        display: r.display.as_deref(),
    };
    if who.reference.is_none() && who.identifier.is_none() && who.display.is_none() {
        who.display = Some("nutmeg (local command)");
    }
    let purpose = Concept::of(Coding::code(ACT_REASON, &facts.purpose));
    let requestor = Agent {
        ty: Concept::of(Coding::new(DICOM, "110150", "Application")),
        who: Some(who),
        requestor: true,
        purpose_of_use: Some([purpose.clone()]),
        network: None,
    };

    let mut entity = vec![Entity {
        ty: Coding::new(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        role: None,
        what: Some(What::Identifier {
            identifier: IdValue {
                value: &facts.request_id,
            },
        }),
        query: None,
        detail: None,
    }];
    if let Some(query) = &facts.query {
        entity.push(Entity {
            ty: Coding::new(ENTITY_TYPE, "2", "System Object"),
            role: Some(Coding::new(OBJECT_ROLE, "24", "Query")),
            what: None,
            query: Some(STANDARD.encode(query)),
            detail: None,
        });
    }
    for patient in &facts.patients {
        // The codings repeated per patient and per resource carry no display: a search's record
        // names every version it disclosed, and the displays made up a fifth of its bytes.
        entity.push(Entity {
            ty: Coding::code(ENTITY_TYPE, "1"),
            role: Some(Coding::code(OBJECT_ROLE, "1")),
            what: Some(What::Reference {
                reference: format!("Patient/{patient}"),
            }),
            query: None,
            detail: None,
        });
    }
    for (ty, id, version) in &facts.resources {
        if ty == "Patient" && facts.patients.contains(id) {
            continue;
        }
        entity.push(Entity {
            ty: Coding::code(ENTITY_TYPE, "2"),
            role: Some(Coding::code(OBJECT_ROLE, "4")),
            what: Some(What::Reference {
                reference: format!("{ty}/{id}/_history/{version}"),
            }),
            query: None,
            detail: None,
        });
    }
    for withheld in facts.withheld.iter().take(WITHHELD_NAMED) {
        let (ty, id, version) = &withheld.resource;
        entity.push(Entity {
            ty: Coding::code(ENTITY_TYPE, "2"),
            role: Some(Coding::new(
                ENTITY_ROLE_SYSTEM,
                WITHHELD_ROLE,
                "Withheld by the privacy policy",
            )),
            what: Some(What::Reference {
                reference: format!("{ty}/{id}/_history/{version}"),
            }),
            query: None,
            detail: Some(vec![Detail {
                ty: WITHHELD_DETAIL,
                value_string: withheld.reasons.join(","),
            }]),
        });
    }
    if facts.withheld.len() > WITHHELD_NAMED {
        entity.push(Entity {
            ty: Coding::code(ENTITY_TYPE, "2"),
            role: Some(Coding::new(
                ENTITY_ROLE_SYSTEM,
                WITHHELD_ROLE,
                "Withheld by the privacy policy",
            )),
            what: None,
            query: None,
            detail: Some(vec![Detail {
                ty: "more-withheld",
                value_string: (facts.withheld.len() - WITHHELD_NAMED).to_string(),
            }]),
        });
    }
    Event {
        resource_type: "AuditEvent",
        ty: Coding::new(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        subtype: [Coding::new(
            RESTFUL_INTERACTION,
            facts.interaction.code(),
            facts.interaction.code(),
        )],
        action: facts.interaction.action(),
        recorded: format_instant(facts.recorded),
        outcome: facts.outcome.code(),
        outcome_desc: facts.outcome_desc.as_deref(),
        purpose_of_event: [purpose],
        agent: [source, destination, requestor],
        source: EventSource {
            observer: Who {
                display: Some("nutmeg"),
                identifier: Some(IdValue {
                    value: &facts.server,
                }),
                ..Who::default()
            },
            ty: [Coding::new(SOURCE_TYPE, "4", "Application Server")],
        },
        entity,
    }
}

/// An AuditEvent as the exchange writes it. Serialised straight to text (the audit record), the
/// per-resource entities without building a JSON tree for each.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    ty: Coding<'a>,
    subtype: [Coding<'a>; 1],
    action: &'static str,
    recorded: String,
    outcome: &'static str,
    #[serde(rename = "outcomeDesc", skip_serializing_if = "Option::is_none")]
    outcome_desc: Option<&'a str>,
    #[serde(rename = "purposeOfEvent")]
    purpose_of_event: [Concept<'a>; 1],
    agent: [Agent<'a>; 3],
    source: EventSource<'a>,
    entity: Vec<Entity<'a>>,
}

#[derive(Serialize)]
struct Agent<'a> {
    #[serde(rename = "type")]
    ty: Concept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    who: Option<Who<'a>>,
    requestor: bool,
    #[serde(rename = "purposeOfUse", skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<[Concept<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
}

#[derive(Serialize, Default)]
struct Who<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<IdValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

#[derive(Serialize)]
struct Network<'a> {
    address: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
}

#[derive(Serialize)]
struct EventSource<'a> {
    observer: Who<'a>,
    #[serde(rename = "type")]
    ty: [Coding<'a>; 1],
}

#[derive(Serialize, Clone)]
struct Concept<'a> {
    coding: [Coding<'a>; 1],
}

impl<'a> Concept<'a> {
    fn of(coding: Coding<'a>) -> Self {
        Concept { coding: [coding] }
    }
}

#[derive(Serialize)]
struct Entity<'a> {
    #[serde(rename = "type")]
    ty: Coding<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<What<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Vec<Detail>>,
}

#[derive(Serialize)]
struct Detail {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(rename = "valueString")]
    value_string: String,
}

#[derive(Serialize, Clone)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

impl<'a> Coding<'a> {
    fn new(system: &'a str, code: &'a str, display: &'a str) -> Self {
        Coding {
            system,
            code,
            display: Some(display),
        }
    }

    fn code(system: &'a str, code: &'a str) -> Self {
        Coding {
            system,
            code,
            display: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum What<'a> {
    Reference { reference: String },
    Identifier { identifier: IdValue<'a> },
}

#[derive(Serialize, Clone)]
struct IdValue<'a> {
    value: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn search_facts() -> AuditFacts {
        AuditFacts {
            recorded: 1_764_374_400_000,
            interaction: Interaction::Search,
            outcome: Outcome::Success,
            request_id: "req-1".into(),
            requestor: Requestor {
                participant: Some("Organization/hartford".into()),
                id: Some("ehr-client-7".into()),
                display: Some("Hartford General EHR".into()),
            },
            client_address: Some("192.0.2.10".into()),
            purpose: "TREAT".into(),
            server: "https://hie.example/fhir".into(),
            query: Some("patient=p1&code=http://loinc.org|85354-9".into()),
            patients: vec!["p1".into()],
            resources: vec![
                ("Observation".into(), "o1".into(), 2),
                ("Patient".into(), "p1".into(), 1),
            ],
            outcome_desc: None,
            withheld: Vec::new(),
        }
    }

    #[test]
    fn a_search_is_an_execute_with_its_query_patient_and_disclosed_versions() {
        let event = audit_event(&search_facts());
        assert_eq!(event["type"]["code"], "rest");
        assert_eq!(event["subtype"][0]["code"], "search");
        assert_eq!(event["action"], "E");
        assert_eq!(event["outcome"], "0");
        assert_eq!(event["recorded"], "2025-11-29T00:00:00.000Z");
        assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let agents = event["agent"].as_array().unwrap();
        assert_eq!(agents[0]["network"]["address"], "192.0.2.10");
        assert_eq!(agents[2]["requestor"], true);
        assert_eq!(agents[2]["who"]["reference"], "Organization/hartford");
        assert_eq!(agents[2]["who"]["identifier"]["value"], "ehr-client-7");
        let entities = event["entity"].as_array().unwrap();
        assert_eq!(entities[0]["what"]["identifier"]["value"], "req-1");
        let query = STANDARD
            .decode(entities[1]["query"].as_str().unwrap())
            .unwrap();
        assert_eq!(query, b"patient=p1&code=http://loinc.org|85354-9");
        assert_eq!(entities[2]["what"]["reference"], "Patient/p1");
        assert_eq!(
            entities[3]["what"]["reference"],
            "Observation/o1/_history/2"
        );
        // The patient is named once, as the patient.
        assert_eq!(entities.len(), 4);
    }

    fn pairs(facts: &AuditFacts) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = audit_index(facts)
            .into_iter()
            .map(|(name, value)| {
                let name = [
                    index::PATIENT,
                    index::PARTICIPANT,
                    index::AGENT,
                    index::OUTCOME,
                    index::SUBTYPE,
                    index::PURPOSE,
                    index::DISCLOSURE,
                ]
                .into_iter()
                .find(|n| *n == name)
                .expect("a known name");
                (name, value)
            })
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn a_disclosure_is_indexed_by_patient_participant_agent_and_codes() {
        let facts = search_facts();
        // The patient disclosed is one `disclosure` pair (a search by patient looks up both names).
        assert_eq!(
            pairs(&facts),
            vec![
                ("agent", "ehr-client-7".to_string()),
                ("disclosure", "p1".to_string()),
                ("outcome", "0".to_string()),
                ("participant", "hartford".to_string()),
                ("purpose", "TREAT".to_string()),
                ("subtype", "search".to_string()),
            ]
        );
        let record = audit_record(&facts);
        assert_eq!(record.recorded, facts.recorded);
        assert_eq!(
            serde_json::from_str::<Value>(&record.json).unwrap(),
            audit_event(&facts)
        );
    }

    #[test]
    fn writes_refusals_and_empty_answers_are_not_disclosures() {
        let not_disclosed = |facts: AuditFacts| {
            assert!(!is_disclosure(&facts), "{facts:?}");
            let pairs = pairs(&facts);
            assert!(pairs.iter().all(|(name, _)| *name != "disclosure"));
            assert!(pairs.contains(&("patient", "p1".to_string())), "{pairs:?}");
        };
        not_disclosed(AuditFacts {
            interaction: Interaction::Create,
            ..search_facts()
        });
        not_disclosed(AuditFacts {
            outcome: Outcome::MinorFailure,
            ..search_facts()
        });
        not_disclosed(AuditFacts {
            resources: Vec::new(),
            ..search_facts()
        });
        not_disclosed(AuditFacts {
            requestor: Requestor {
                participant: None,
                id: Some("operator-1".into()),
                display: None,
            },
            ..search_facts()
        });
    }

    #[test]
    fn actions_and_outcomes() {
        for (interaction, action) in [
            (Interaction::Create, "C"),
            (Interaction::Read, "R"),
            (Interaction::Vread, "R"),
            (Interaction::History, "R"),
            (Interaction::Update, "U"),
            (Interaction::Patch, "U"),
            (Interaction::Delete, "D"),
            (Interaction::Search, "E"),
            (Interaction::Operation, "E"),
            (Interaction::Transaction, "E"),
        ] {
            assert_eq!(interaction.action(), action, "{interaction:?}");
        }
        assert_eq!(Outcome::of_status(200), Outcome::Success);
        assert_eq!(Outcome::of_status(304), Outcome::Success);
        assert_eq!(Outcome::of_status(403), Outcome::MinorFailure);
        assert_eq!(Outcome::of_status(500), Outcome::SeriousFailure);
    }

    #[test]
    fn a_local_command_without_a_requestor_still_names_one() {
        let mut facts = search_facts();
        facts.requestor = Requestor::default();
        facts.client_address = None;
        facts.query = None;
        let event = audit_event(&facts);
        assert_eq!(
            event["agent"][2]["who"]["display"],
            "nutmeg (local command)"
        );
        assert!(event["agent"][0].get("network").is_none());
        assert_eq!(event["entity"].as_array().unwrap().len(), 3);
    }

    /// The event is a valid R4 AuditEvent by the repository's own validator, and its `patient`
    /// search parameter finds the patient (what the accounting of disclosures searches by).
    #[test]
    fn the_event_validates_and_indexes_its_patient() {
        let mut event = audit_event(&search_facts());
        let issues = fhir::validate::validate_resource(&event);
        assert!(
            issues
                .iter()
                .all(|i| i.severity != fhir::outcome::Severity::Error),
            "{issues:?}"
        );
        event["meta"] = json!({ "lastUpdated": "2025-11-29T00:00:00.000Z" });
        let patients: Vec<Option<String>> = fhir::search::extract::index_entries(&event)
            .into_iter()
            .filter(|e| e.param == "patient")
            .filter_map(|e| match e.value {
                fhir::search::model::IndexValue::Reference { target_id, .. } => Some(target_id),
                _ => None,
            })
            .collect();
        assert_eq!(patients, vec![Some("p1".to_string())]);
        assert_eq!(
            fhir::search::extract::patient_compartments(&event),
            vec!["p1".to_string()]
        );
    }
}
