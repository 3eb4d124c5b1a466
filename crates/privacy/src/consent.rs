//! The consent model: FHIR R4 Consent resources (scope `patient-privacy`) parsed into what the
//! policy evaluates.
//!
//! # Kinds
//!
//! A Consent's `policyRule` (HL7 v3 ActCode) says what kind it is:
//!
//! | `policyRule` | kind | meaning |
//! |---|---|---|
//! | `OPTOUT` | [`Kind::OptOut`] | the exchange-wide choice: the patient is out (root provision without conditions, `type` `deny` or none, or no provision) |
//! | `OPTIN` | [`Kind::OptIn`] | the exchange-wide choice: the patient is in (root provision without conditions, `type` `permit` or none, or no provision) |
//! | `42CFRPart2` (or `policy.uri` [`PART2_POLICY_URI`]) | [`Kind::Part2`] | a 42 CFR Part 2 consent: its permit provisions name the recipients and purposes (one consent may cover treatment, payment and operations, as the 2024 rule allows) |
//! | anything else, or none | [`Kind::Grant`] | a patient-specific consent: grants (permit) and restrictions (deny) for sensitive categories |
//!
//! An unconditional `OPTOUT` root provision of type permit, or `OPTIN` of type deny, contradicts
//! itself and is refused. An `OPTIN` or `OPTOUT` consent whose root provision has conditions
//! (actors, purposes, labels, classes, data, actions) is not the exchange-wide choice but a
//! patient-specific grant or restriction, its `type` required (FHIR's consent-example-notOrg:
//! `OPTIN`, deny to Organization/f001). The latest exchange-wide choice in force (by `dateTime`)
//! is the patient's choice; nested provisions of a choice act as grants and restrictions.
//!
//! The psychiatric "informed" flag travels with any of them as the extension [`INFORMED_EXTENSION`]
//! (`valueBoolean`): the patient was told that their psychiatric records are shared between their
//! providers for treatment. The latest consent in force that carries the extension decides.
//!
//! # Provisions
//!
//! A provision applies to an access when every condition it has holds: its `period` holds `now`; one
//! of its `actor`s is the recipient; one of its `purpose`s is the purpose of use; one of its
//! `securityLabel`s is on the data or one of its `class`es (resource types) is the data's type
//! (when it has either); one of its `data` references is the resource (the meanings `instance`,
//! `related` and `dependents` are all read as that instance; `authoredby` is refused). A condition
//! not given holds for everything.
//!
//! `provision.type` is required except on the root of an unconditional choice: R4 makes it
//! optional, and guessing would make some of FHIR's own examples (consent-example-notThem) grant
//! what they mean to withhold. `action`, when given, must include `access`, `use` or `disclose`
//! for the provision to apply to a disclosure. Provisions nest at most [`MAX_PROVISION_DEPTH`] deep.
//!
//! Actors are recipients: `actor.role`, when given, is v3-ParticipationType `PRCP` or `IRCP`
//! (a custodian or author role names where data comes from, which this model does not evaluate, and
//! is refused). They are `Organization/[id]`, `Practitioner/[id]`, `Patient/[id]` (the patient as
//! recipient: a family member's consent that lets the patient see a family-therapy record), or
//! **any treating provider**: a reference by identifier, system [`ACTOR_SYSTEM`], value [`ANY_TREATING_PROVIDER`],
//! which is every recipient with a treatment relationship with the patient. Anything else is refused
//! rather than silently never matched (a restriction that cannot be evaluated must not be ignored).
//!
//! # Conflicts: deny overrides
//!
//! Within one Consent the most specific applicable provision decides: a nested provision that
//! applies overrides its parent (FHIR's exceptions: "deny everything except permit org A"). Between
//! sibling provisions that both apply, and between Consents, **deny overrides permit**: a grant and
//! a restriction that both cover an access give a denial.
//!
//! # In force
//!
//! Only `active` consents count (`inactive` is a revoked one, `rejected`, `draft`, `proposed` and
//! `entered-in-error` never count), from their `dateTime` (required: it orders the choices) and
//! within their root provision's `period`.

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime, Time};

use serde_json::{json, Value};

use crate::codes::{Coding, Purpose, ACT_CODE_SYSTEM, PURPOSE_SYSTEM};
use crate::labels::Labels;

/// The Consent scope code system; privacy consents have the code `patient-privacy`.
pub const SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// The extension (valueBoolean) that records whether the patient was informed that psychiatric
/// records are shared for treatment.
pub const INFORMED_EXTENSION: &str =
    "https://nutmeg.example/fhir/StructureDefinition/psychiatric-informed";
/// The identifier system of the exchange's actor designations.
pub const ACTOR_SYSTEM: &str = "https://nutmeg.example/fhir/sid/consent-actor";
/// The [`ACTOR_SYSTEM`] value for any provider with a treatment relationship with the patient.
pub const ANY_TREATING_PROVIDER: &str = "any-treating-provider";
/// The eCFR address of 42 CFR Part 2, accepted in `Consent.policy.uri`.
pub const PART2_POLICY_URI: &str =
    "https://www.ecfr.gov/current/title-42/chapter-I/subchapter-A/part-2";
/// The code system of `provision.class` codes the exchange understands: resource types.
pub const RESOURCE_TYPES_SYSTEM: &str = "http://hl7.org/fhir/resource-types";

/// One problem in a Consent, naming the element (for an OperationOutcome issue's `expression`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConsentError {
    /// The element, as a FHIRPath: `Consent.provision.provision[1].actor[0].reference`.
    pub path: String,
    pub message: String,
}

/// A Consent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    Proposed,
    Active,
    Rejected,
    Inactive,
    EnteredInError,
}

impl Status {
    fn parse(code: &str) -> Option<Status> {
        Some(match code {
            "draft" => Status::Draft,
            "proposed" => Status::Proposed,
            "active" => Status::Active,
            "rejected" => Status::Rejected,
            "inactive" => Status::Inactive,
            "entered-in-error" => Status::EnteredInError,
            _ => return None,
        })
    }
}

/// What kind of consent it is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OptIn,
    OptOut,
    Part2,
    Grant,
}

/// A provision's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Permit,
    Deny,
}

/// Who a provision is about, as a recipient of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Organization(String),
    Practitioner(String),
    Patient(String),
    AnyTreatingProvider,
}

/// A period, as instants: `start` inclusive, `end` exclusive (a date-only end holds its whole day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

impl Period {
    pub fn holds(&self, now: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now < e)
    }
}

/// A Consent provision, with its nested exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    pub effect: Effect,
    pub period: Option<Period>,
    /// consentaction codes; a provision with actions applies to disclosures only when one of them
    /// is `access`, `use` or `disclose` (not `collect` or `correct`).
    pub actions: Vec<String>,
    pub actors: Vec<Actor>,
    /// ActReason codes.
    pub purposes: Vec<String>,
    pub security_labels: Vec<Coding>,
    /// Resource types.
    pub classes: Vec<String>,
    /// Relative references to the resources the provision is about (`Observation/1`).
    pub data: Vec<String>,
    pub provisions: Vec<Provision>,
}

/// Who receives the data, as the consent rules see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The participant (Organization id) the requester acts for.
    pub organization: Option<String>,
    /// The practitioner (Practitioner id) asking, when a person asks.
    pub practitioner: Option<String>,
    /// The patient (Patient id), when a patient asks for a record (PATRQT).
    pub patient: Option<String>,
}

/// One access, as a provision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub purpose: Purpose,
    pub recipient: &'a Recipient,
    /// Whether the recipient has a treatment relationship with the patient.
    pub relationship: bool,
    pub labels: &'a Labels,
    /// `Type/id` of the resource, when known.
    pub reference: Option<&'a str>,
    pub now: OffsetDateTime,
}

impl Actor {
    fn is(&self, access: &Access<'_>) -> bool {
        let r = access.recipient;
        match self {
            Actor::Organization(id) => r.organization.as_deref() == Some(id),
            Actor::Practitioner(id) => r.practitioner.as_deref() == Some(id),
            Actor::Patient(id) => r.patient.as_deref() == Some(id),
            Actor::AnyTreatingProvider => access.relationship,
        }
    }
}

impl Provision {
    /// Whether this provision or one nested in it names a practitioner as an actor (so the
    /// decision needs to know which practitioner asks).
    pub fn names_practitioner(&self) -> bool {
        self.actors
            .iter()
            .any(|a| matches!(a, Actor::Practitioner(_)))
            || self.provisions.iter().any(Provision::names_practitioner)
    }

    /// Whether the provision names anything to narrow what it covers (actors, purposes, labels,
    /// classes, data, actions); a period alone does not.
    pub fn is_conditional(&self) -> bool {
        !(self.actors.is_empty()
            && self.purposes.is_empty()
            && self.security_labels.is_empty()
            && self.classes.is_empty()
            && self.data.is_empty()
            && self.actions.is_empty())
    }

    /// Whether this provision's own conditions hold for the access.
    fn applies(&self, access: &Access<'_>) -> bool {
        let resource_type = access.reference.and_then(|r| r.split('/').next());
        let disclosing = ["access", "use", "disclose"];
        self.period.is_none_or(|p| p.holds(access.now))
            && (self.actions.is_empty()
                || self
                    .actions
                    .iter()
                    .any(|a| disclosing.contains(&a.as_str())))
            && (self.actors.is_empty() || self.actors.iter().any(|a| a.is(access)))
            && (self.purposes.is_empty()
                || self.purposes.iter().any(|p| p == access.purpose.code()))
            && ((self.security_labels.is_empty() && self.classes.is_empty())
                || self
                    .security_labels
                    .iter()
                    .any(|l| access.labels.carries(l))
                || self
                    .classes
                    .iter()
                    .any(|c| Some(c.as_str()) == resource_type))
            && (self.data.is_empty()
                || self
                    .data
                    .iter()
                    .any(|d| Some(d.as_str()) == access.reference))
    }

    /// The effect of this provision and its exceptions on the access: the most specific applicable
    /// provision decides; among siblings that apply, deny overrides.
    pub fn evaluate(&self, access: &Access<'_>) -> Option<Effect> {
        if !self.applies(access) {
            return None;
        }
        combine(self.provisions.iter().filter_map(|p| p.evaluate(access))).or(Some(self.effect))
    }
}

/// Deny overrides: deny if any is deny, permit if any is permit, else nothing.
fn combine(effects: impl Iterator<Item = Effect>) -> Option<Effect> {
    let mut out = None;
    for effect in effects {
        if effect == Effect::Deny {
            return Some(Effect::Deny);
        }
        out = Some(Effect::Permit);
    }
    out
}

/// A parsed patient-privacy Consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The resource id, when it has one (stored consents do).
    pub id: Option<String>,
    pub status: Status,
    /// The patient's id (from `Patient/[id]`).
    pub patient: String,
    pub date_time: OffsetDateTime,
    pub kind: Kind,
    /// The psychiatric informed flag, when the consent records it.
    pub informed: Option<bool>,
    /// The root provision (for an exchange-wide choice without one, a provision with no
    /// conditions and the choice's effect).
    pub provision: Provision,
}

impl Consent {
    /// Parses a FHIR R4 Consent, reporting every problem found.
    pub fn parse(json: &Value) -> Result<Consent, Vec<ConsentError>> {
        let mut errors = Errors::default();
        let Some(object) = json.as_object() else {
            errors.add("Consent", "a Consent is a JSON object");
            return Err(errors.0);
        };
        if object.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            errors.add("Consent.resourceType", "must be Consent");
        }
        let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
        let status = match object.get("status") {
            None => {
                errors.add("Consent.status", "is required");
                None
            }
            Some(v) => {
                let s = v.as_str().and_then(Status::parse);
                if s.is_none() {
                    errors.add(
                        "Consent.status",
                        "must be draft, proposed, active, rejected, inactive or entered-in-error",
                    );
                }
                s
            }
        };
        let privacy = object.get("scope").map(|s| {
            codings_of(s)
                .iter()
                .any(|c| c.is(SCOPE_SYSTEM, "patient-privacy"))
        });
        match privacy {
            None => errors.add("Consent.scope", "is required"),
            Some(false) => errors.add(
                "Consent.scope",
                "only patient-privacy consents (http://terminology.hl7.org/CodeSystem/consentscope#patient-privacy) are accepted here",
            ),
            Some(true) => {}
        }
        let patient = match object.get("patient") {
            None => {
                errors.add("Consent.patient", "is required");
                None
            }
            Some(p) => {
                let id = p
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(|r| reference_id(r, "Patient"));
                if id.is_none() {
                    errors.add(
                        "Consent.patient.reference",
                        "must be a reference to a Patient",
                    );
                }
                id
            }
        };
        let date_time = match object.get("dateTime") {
            None => {
                errors.add(
                    "Consent.dateTime",
                    "is required: it orders a patient's choices",
                );
                None
            }
            Some(v) => {
                let t = v.as_str().and_then(|s| instant(s, false));
                if t.is_none() {
                    errors.add(
                        "Consent.dateTime",
                        "must be a FHIR dateTime with a time zone",
                    );
                }
                t
            }
        };
        let mut kind = kind_of(object);
        let informed = informed_of(object, &mut errors);
        let choice_effect = match kind {
            Kind::OptIn => Some(Effect::Permit),
            Kind::OptOut => Some(Effect::Deny),
            Kind::Part2 | Kind::Grant => None,
        };
        let provision = match object.get("provision") {
            Some(p) => {
                let provision =
                    parse_provision(p, "Consent.provision", 0, choice_effect, &mut errors);
                // The root of an OPTIN or OPTOUT consent with conditions is not the exchange-wide
                // choice but a patient-specific grant or restriction (FHIR's
                // consent-example-notOrg: OPTIN, deny Organization/f001).
                if choice_effect.is_some()
                    && provision.as_ref().is_some_and(Provision::is_conditional)
                {
                    kind = Kind::Grant;
                }
                provision
            }
            None => match kind {
                Kind::OptIn => Some(unconditional(Effect::Permit)),
                Kind::OptOut => Some(unconditional(Effect::Deny)),
                Kind::Part2 | Kind::Grant => {
                    errors.add(
                        "Consent.provision",
                        "is required: it says who may receive what, and for what",
                    );
                    None
                }
            },
        };
        if let Some(p) = &provision {
            match (kind, p.effect) {
                (Kind::OptOut, Effect::Permit) => errors.add(
                    "Consent.provision.type",
                    "an OPTOUT consent's root provision is deny",
                ),
                (Kind::OptIn, Effect::Deny) => errors.add(
                    "Consent.provision.type",
                    "an OPTIN consent's root provision is permit",
                ),
                _ => {}
            }
        }
        match (status, patient, date_time, provision) {
            (Some(status), Some(patient), Some(date_time), Some(provision))
                if errors.0.is_empty() =>
            {
                Ok(Consent {
                    id,
                    status,
                    patient,
                    date_time,
                    kind,
                    informed,
                    provision,
                })
            }
            _ => Err(errors.0),
        }
    }

    /// Whether the consent counts at `now`: active, recorded by then, and within its period.
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        self.status == Status::Active
            && self.date_time <= now
            && self.provision.period.is_none_or(|p| p.holds(now))
    }

    /// For an exchange-wide choice: whether the patient is in.
    pub fn choice(&self) -> Option<bool> {
        match self.kind {
            Kind::OptIn => Some(true),
            Kind::OptOut => Some(false),
            Kind::Part2 | Kind::Grant => None,
        }
    }

    /// The consent's grant or restriction for an access (not the exchange-wide choice itself: for
    /// a choice, only its nested provisions count). None when the consent does not speak to it or
    /// is not in force.
    pub fn evaluate(&self, access: &Access<'_>) -> Option<Effect> {
        if !self.in_force(access.now) {
            return None;
        }
        match self.kind {
            Kind::OptIn | Kind::OptOut => {
                if !self.provision.applies(access) {
                    return None;
                }
                combine(
                    self.provision
                        .provisions
                        .iter()
                        .filter_map(|p| p.evaluate(access)),
                )
            }
            Kind::Part2 | Kind::Grant => self.provision.evaluate(access),
        }
    }
}

fn unconditional(effect: Effect) -> Provision {
    Provision::everything(effect)
}

impl Provision {
    /// A provision about everything: the root of an exchange-wide choice.
    pub fn everything(effect: Effect) -> Provision {
        Provision {
            effect,
            period: None,
            actions: Vec::new(),
            actors: Vec::new(),
            purposes: Vec::new(),
            security_labels: Vec::new(),
            classes: Vec::new(),
            data: Vec::new(),
            provisions: Vec::new(),
        }
    }

    fn to_fhir(&self) -> Result<Value, ConsentError> {
        let mut out = serde_json::Map::new();
        let effect = match self.effect {
            Effect::Permit => "permit",
            Effect::Deny => "deny",
        };
        out.insert("type".into(), json!(effect));
        if let Some(period) = &self.period {
            let mut p = serde_json::Map::new();
            if let Some(start) = period.start {
                p.insert("start".into(), json!(format_instant(start)?));
            }
            if let Some(end) = period.end {
                // Stored exclusive; written as the last instant it holds.
                let last = end
                    .checked_sub(Duration::nanoseconds(1))
                    .ok_or_else(out_of_range)?;
                p.insert("end".into(), json!(format_instant(last)?));
            }
            out.insert("period".into(), Value::Object(p));
        }
        if !self.actors.is_empty() {
            let actors: Vec<Value> = self
                .actors
                .iter()
                .map(|a| {
                    let reference = match a {
                        Actor::Organization(id) => json!({"reference": format!("Organization/{id}")}),
                        Actor::Practitioner(id) => json!({"reference": format!("Practitioner/{id}")}),
                        Actor::Patient(id) => json!({"reference": format!("Patient/{id}")}),
                        Actor::AnyTreatingProvider => json!({"identifier": {
                            "system": ACTOR_SYSTEM, "value": ANY_TREATING_PROVIDER}}),
                    };
                    json!({"role": {"coding": [{"system": PARTICIPATION_TYPE_SYSTEM, "code": "IRCP"}]},
                           "reference": reference})
                })
                .collect();
            out.insert("actor".into(), Value::Array(actors));
        }
        if !self.actions.is_empty() {
            let actions: Vec<Value> = self
                .actions
                .iter()
                .map(|a| json!({"coding": [{"system": ACTION_SYSTEM, "code": a}]}))
                .collect();
            out.insert("action".into(), Value::Array(actions));
        }
        if !self.security_labels.is_empty() {
            out.insert(
                "securityLabel".into(),
                Value::Array(self.security_labels.iter().map(Coding::to_json).collect()),
            );
        }
        if !self.purposes.is_empty() {
            let purposes: Vec<Value> = self
                .purposes
                .iter()
                .map(|p| json!({"system": PURPOSE_SYSTEM, "code": p}))
                .collect();
            out.insert("purpose".into(), Value::Array(purposes));
        }
        if !self.classes.is_empty() {
            let classes: Vec<Value> = self
                .classes
                .iter()
                .map(|c| json!({"system": RESOURCE_TYPES_SYSTEM, "code": c}))
                .collect();
            out.insert("class".into(), Value::Array(classes));
        }
        if !self.data.is_empty() {
            let data: Vec<Value> = self
                .data
                .iter()
                .map(|d| json!({"meaning": "instance", "reference": {"reference": d}}))
                .collect();
            out.insert("data".into(), Value::Array(data));
        }
        if !self.provisions.is_empty() {
            let nested = self
                .provisions
                .iter()
                .map(Provision::to_fhir)
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("provision".into(), Value::Array(nested));
        }
        Ok(Value::Object(out))
    }
}

impl Consent {
    /// The FHIR Consent that [`Consent::parse`] reads back as this one: what the portal and the
    /// API write when a patient, an operator or a participant records a choice, a grant or a
    /// restriction. Without an `id` when the consent has none (the repository assigns it).
    /// Fails only for instants outside the years 0000-9999 (naming the element).
    pub fn to_fhir(&self) -> Result<Value, ConsentError> {
        let mut out = serde_json::Map::new();
        out.insert("resourceType".into(), json!("Consent"));
        if let Some(id) = &self.id {
            out.insert("id".into(), json!(id));
        }
        if let Some(informed) = self.informed {
            out.insert(
                "extension".into(),
                json!([{"url": INFORMED_EXTENSION, "valueBoolean": informed}]),
            );
        }
        let status = match self.status {
            Status::Draft => "draft",
            Status::Proposed => "proposed",
            Status::Active => "active",
            Status::Rejected => "rejected",
            Status::Inactive => "inactive",
            Status::EnteredInError => "entered-in-error",
        };
        out.insert("status".into(), json!(status));
        out.insert(
            "scope".into(),
            json!({"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]}),
        );
        out.insert(
            "category".into(),
            json!([{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}]),
        );
        out.insert(
            "patient".into(),
            json!({"reference": format!("Patient/{}", self.patient)}),
        );
        out.insert(
            "dateTime".into(),
            json!(format_instant(self.date_time).map_err(|e| ConsentError {
                path: "Consent.dateTime".into(),
                message: e.message,
            })?),
        );
        let rule = match self.kind {
            Kind::OptIn => Some("OPTIN"),
            Kind::OptOut => Some("OPTOUT"),
            Kind::Part2 => Some("42CFRPart2"),
            Kind::Grant => None,
        };
        if let Some(rule) = rule {
            out.insert(
                "policyRule".into(),
                json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": rule}]}),
            );
        }
        let provision = self.provision.to_fhir().map_err(|e| ConsentError {
            path: "Consent.provision".into(),
            message: e.message,
        })?;
        out.insert("provision".into(), provision);
        Ok(Value::Object(out))
    }
}

fn out_of_range() -> ConsentError {
    ConsentError {
        path: "Consent".into(),
        message: "an instant is outside the years 0000-9999".into(),
    }
}

fn format_instant(t: OffsetDateTime) -> Result<String, ConsentError> {
    t.format(&Rfc3339).map_err(|_| out_of_range())
}

#[derive(Default)]
struct Errors(Vec<ConsentError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConsentError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn kind_of(object: &serde_json::Map<String, Value>) -> Kind {
    let rules = object.get("policyRule").map(codings_of).unwrap_or_default();
    let act = |code: &str| rules.iter().any(|c| c.is(ACT_CODE_SYSTEM, code));
    let part2_uri = object
        .get("policy")
        .and_then(Value::as_array)
        .is_some_and(|ps| {
            ps.iter()
                .any(|p| p.get("uri").and_then(Value::as_str) == Some(PART2_POLICY_URI))
        });
    if act("42CFRPart2") || part2_uri {
        Kind::Part2
    } else if act("OPTOUT") {
        Kind::OptOut
    } else if act("OPTIN") {
        Kind::OptIn
    } else {
        Kind::Grant
    }
}

fn informed_of(object: &serde_json::Map<String, Value>, errors: &mut Errors) -> Option<bool> {
    let extensions = object.get("extension")?.as_array()?;
    let mut informed = None;
    for (i, ext) in extensions.iter().enumerate() {
        if ext.get("url").and_then(Value::as_str) != Some(INFORMED_EXTENSION) {
            continue;
        }
        match ext.get("valueBoolean").and_then(Value::as_bool) {
            Some(b) => informed = Some(b),
            None => errors.add(
                format!("Consent.extension[{i}].valueBoolean"),
                "the psychiatric-informed extension has a valueBoolean",
            ),
        }
    }
    informed
}

/// The codings of a CodeableConcept (or of an array of them).
fn codings_of(value: &Value) -> Vec<Coding> {
    match value {
        Value::Array(items) => items.iter().flat_map(codings_of).collect(),
        _ => value
            .get("coding")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(Coding::from_json).collect())
            .unwrap_or_default(),
    }
}

/// The id of a reference to `resource_type`, relative (`Patient/1`) or absolute
/// (`https://x/fhir/Patient/1`), without a version.
fn reference_id(reference: &str, resource_type: &str) -> Option<String> {
    let reference = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let kind = parts.next()?;
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (kind == resource_type && valid).then(|| id.to_owned())
}

/// `Type/id` of a relative or absolute reference to any type.
pub(crate) fn relative_reference(reference: &str) -> Option<String> {
    let reference = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let kind = parts.next()?;
    let type_ok = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphabetic());
    (type_ok && reference_id(reference, kind).is_some()).then(|| format!("{kind}/{id}"))
}

/// How deep provisions may nest.
pub const MAX_PROVISION_DEPTH: usize = 8;

/// The recipient roles of `actor.role` (HL7 v3 ParticipationType): primary and other information
/// recipients. Other roles (custodian, author...) name where data comes from, which this model
/// does not evaluate, so they are refused rather than misread as recipients.
const RECIPIENT_ROLES: &[&str] = &["PRCP", "IRCP"];
const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";

/// Parses a provision. Its `type` may be missing only on the root of an exchange-wide choice
/// without conditions (`choice`, the choice's effect, is then its type); elsewhere it is required:
/// R4 makes it optional, and guessing would turn some of FHIR's own examples
/// (consent-example-notThem) from restrictions into grants.
fn parse_provision(
    value: &Value,
    path: &str,
    depth: usize,
    choice: Option<Effect>,
    errors: &mut Errors,
) -> Option<Provision> {
    let Some(object) = value.as_object() else {
        errors.add(path, "a provision is a JSON object");
        return None;
    };
    if depth >= MAX_PROVISION_DEPTH {
        errors.add(path, "provisions nest at most 8 deep");
        return None;
    }
    let mut ok = true;
    let mut fail = |errors: &mut Errors, at: String, message: &str| {
        ok = false;
        errors.add(at, message);
    };
    let given = match object.get("type") {
        None => None,
        Some(t) => match t.as_str() {
            Some("permit") => Some(Effect::Permit),
            Some("deny") => Some(Effect::Deny),
            _ => {
                fail(errors, format!("{path}.type"), "must be permit or deny");
                None
            }
        },
    };
    for unsupported in ["code", "dataPeriod"] {
        if object.contains_key(unsupported) {
            fail(
                errors,
                format!("{path}.{unsupported}"),
                "is not supported: use securityLabel, class or data",
            );
        }
    }
    let period = match object.get("period") {
        None => None,
        Some(p) => {
            let bound = |key: &str, end: bool, errors: &mut Errors| -> Option<OffsetDateTime> {
                let v = p.get(key)?;
                let t = v.as_str().and_then(|s| instant(s, end));
                if t.is_none() {
                    errors.add(format!("{path}.period.{key}"), "must be a FHIR dateTime");
                }
                t
            };
            let period = Period {
                start: bound("start", false, errors),
                end: bound("end", true, errors),
            };
            if let (Some(s), Some(e)) = (period.start, period.end) {
                if e <= s {
                    fail(errors, format!("{path}.period"), "ends before it starts");
                }
            }
            Some(period)
        }
    };
    let mut actions = Vec::new();
    for (i, action) in array(object, "action").iter().enumerate() {
        let codes: Vec<Coding> = codings_of(action)
            .into_iter()
            .filter(|c| c.system == ACTION_SYSTEM)
            .collect();
        if codes.is_empty() {
            fail(
                errors,
                format!("{path}.action[{i}]"),
                "must have a coding from http://terminology.hl7.org/CodeSystem/consentaction",
            );
        }
        actions.extend(codes.into_iter().map(|c| c.code));
    }
    let mut actors = Vec::new();
    for (i, actor) in array(object, "actor").iter().enumerate() {
        if let Some(role) = actor.get("role") {
            let recipient = codings_of(role).iter().any(|c| {
                c.system == PARTICIPATION_TYPE_SYSTEM && RECIPIENT_ROLES.contains(&c.code.as_str())
            });
            if !recipient {
                fail(
                    errors,
                    format!("{path}.actor[{i}].role"),
                    "must be a recipient (v3-ParticipationType PRCP or IRCP): actors are who receives the data",
                );
                continue;
            }
        }
        let at = format!("{path}.actor[{i}].reference");
        match parse_actor(actor.get("reference")) {
            Some(a) => actors.push(a),
            None => fail(
                errors,
                at,
                "must reference an Organization, a Practitioner or a Patient, or be the identifier https://nutmeg.example/fhir/sid/consent-actor|any-treating-provider",
            ),
        }
    }
    let mut purposes = Vec::new();
    for (i, purpose) in array(object, "purpose").iter().enumerate() {
        match Coding::from_json(purpose) {
            Some(c) if c.system == PURPOSE_SYSTEM => purposes.push(c.code),
            _ => fail(
                errors,
                format!("{path}.purpose[{i}]"),
                "must be a Coding from http://terminology.hl7.org/CodeSystem/v3-ActReason",
            ),
        }
    }
    let mut security_labels = Vec::new();
    for (i, label) in array(object, "securityLabel").iter().enumerate() {
        match Coding::from_json(label) {
            Some(c) => security_labels.push(c),
            None => fail(
                errors,
                format!("{path}.securityLabel[{i}]"),
                "must be a Coding with system and code",
            ),
        }
    }
    let mut classes = Vec::new();
    for (i, class) in array(object, "class").iter().enumerate() {
        match Coding::from_json(class) {
            Some(c) if c.system == RESOURCE_TYPES_SYSTEM => classes.push(c.code),
            _ => fail(
                errors,
                format!("{path}.class[{i}]"),
                "must be a resource type from http://hl7.org/fhir/resource-types",
            ),
        }
    }
    let mut data = Vec::new();
    for (i, d) in array(object, "data").iter().enumerate() {
        match d.get("meaning").and_then(Value::as_str) {
            Some("instance" | "related" | "dependents") => {}
            _ => fail(
                errors,
                format!("{path}.data[{i}].meaning"),
                "must be instance, related or dependents",
            ),
        }
        match d
            .get("reference")
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
            .and_then(relative_reference)
        {
            Some(r) => data.push(r),
            None => fail(
                errors,
                format!("{path}.data[{i}].reference"),
                "must be a reference to a resource (Type/id)",
            ),
        }
    }
    let conditional = !(actions.is_empty()
        && actors.is_empty()
        && purposes.is_empty()
        && security_labels.is_empty()
        && classes.is_empty()
        && data.is_empty());
    let effect = match (given, object.contains_key("type")) {
        (Some(effect), _) => Some(effect),
        (None, true) => None,
        (None, false) => match choice {
            Some(effect) if depth == 0 && !conditional => Some(effect),
            _ => {
                fail(
                    errors,
                    format!("{path}.type"),
                    "is required (permit or deny) except on an exchange-wide choice without conditions",
                );
                None
            }
        },
    };
    let mut provisions = Vec::new();
    for (i, nested) in array(object, "provision").iter().enumerate() {
        match parse_provision(
            nested,
            &format!("{path}.provision[{i}]"),
            depth + 1,
            None,
            errors,
        ) {
            Some(p) => provisions.push(p),
            None => ok = false,
        }
    }
    match effect {
        Some(effect) if ok => Some(Provision {
            effect,
            period,
            actions,
            actors,
            purposes,
            security_labels,
            classes,
            data,
            provisions,
        }),
        _ => None,
    }
}

fn array<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> &'a [Value] {
    object
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn parse_actor(reference: Option<&Value>) -> Option<Actor> {
    let reference = reference?;
    if let Some(identifier) = reference.get("identifier") {
        let system = identifier.get("system").and_then(Value::as_str);
        let value = identifier.get("value").and_then(Value::as_str);
        return (system == Some(ACTOR_SYSTEM) && value == Some(ANY_TREATING_PROVIDER))
            .then_some(Actor::AnyTreatingProvider);
    }
    let text = reference.get("reference").and_then(Value::as_str)?;
    if let Some(id) = reference_id(text, "Organization") {
        Some(Actor::Organization(id))
    } else if let Some(id) = reference_id(text, "Practitioner") {
        Some(Actor::Practitioner(id))
    } else {
        reference_id(text, "Patient").map(Actor::Patient)
    }
}

/// A FHIR date or dateTime as an instant: the start of what it names, or (with `end`) the first
/// instant after it. Partial dates (`2026`, `2026-03`, `2026-03-01`) are UTC; a time needs a zone.
pub fn instant(text: &str, end: bool) -> Option<OffsetDateTime> {
    if text.contains('T') {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        return if end {
            t.checked_add(Duration::nanoseconds(1))
        } else {
            Some(t)
        };
    }
    if !text.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return None;
    }
    let mut parts = text.split('-');
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month = match parts.next() {
        Some(m) if m.len() == 2 => Some(Month::try_from(m.parse::<u8>().ok()?).ok()?),
        Some(_) => return None,
        None => None,
    };
    let day = match parts.next() {
        Some(d) if d.len() == 2 => Some(d.parse::<u8>().ok()?),
        Some(_) => return None,
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let date =
        Date::from_calendar_date(year, month.unwrap_or(Month::January), day.unwrap_or(1)).ok()?;
    let date = if !end {
        date
    } else if day.is_some() {
        date.next_day()?
    } else if let Some(m) = month {
        let (y, m) = if m == Month::December {
            (year + 1, Month::January)
        } else {
            (year, m.next())
        };
        Date::from_calendar_date(y, m, 1).ok()?
    } else {
        Date::from_calendar_date(year + 1, Month::January, 1).ok()?
    };
    Some(date.with_time(Time::MIDNIGHT).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Sensitivity;
    use serde_json::json;
    use time::macros::datetime;

    fn base(policy_rule: Option<&str>, provision: Value) -> Value {
        let mut c = json!({
            "resourceType": "Consent", "id": "c1", "status": "active",
            "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "dateTime": "2026-01-10T09:00:00Z",
            "provision": provision,
        });
        if let Some(rule) = policy_rule {
            c["policyRule"] = json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": rule}]});
        }
        c
    }

    fn paths(json: &Value) -> Vec<String> {
        match Consent::parse(json) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn exchange_choice() {
        let out = Consent::parse(&base(Some("OPTOUT"), json!({"type": "deny"}))).expect("parses");
        assert_eq!((out.kind, out.choice()), (Kind::OptOut, Some(false)));
        let mut no_provision = base(Some("OPTIN"), json!(null));
        no_provision.as_object_mut().map(|o| o.remove("provision"));
        let in_ = Consent::parse(&no_provision).expect("parses");
        assert_eq!(
            (in_.choice(), in_.provision.effect),
            (Some(true), Effect::Permit)
        );
        assert_eq!(
            paths(&base(Some("OPTOUT"), json!({"type": "permit"}))),
            ["Consent.provision.type"]
        );
        // With conditions, OPTIN/OPTOUT is a patient-specific restriction, and its type is required.
        let restriction = base(
            Some("OPTIN"),
            json!({"type": "deny", "actor": [{"reference": {"reference": "Organization/o1"}}]}),
        );
        let restriction = Consent::parse(&restriction).expect("parses");
        assert_eq!(
            (restriction.kind, restriction.choice()),
            (Kind::Grant, None)
        );
        assert_eq!(
            paths(&base(
                Some("OPTOUT"),
                json!({"actor": [{"reference": {"reference": "Organization/o1"}}]})
            )),
            ["Consent.provision.type"]
        );
        // A choice for a period only is still the choice.
        let period = base(Some("OPTIN"), json!({"period": {"start": "2026-01-01"}}));
        assert_eq!(Consent::parse(&period).map(|c| c.kind), Ok(Kind::OptIn));
        // Nested provisions need their type.
        assert_eq!(
            paths(&base(
                None,
                json!({"type": "permit", "provision": [{"purpose": []}]})
            )),
            ["Consent.provision.provision[0].type"]
        );
    }

    #[test]
    fn kinds_and_informed() {
        let mut part2 = base(Some("42CFRPart2"), json!({"type": "permit"}));
        assert_eq!(Consent::parse(&part2).map(|c| c.kind), Ok(Kind::Part2));
        part2.as_object_mut().map(|o| o.remove("policyRule"));
        part2["policy"] = json!([{"uri": PART2_POLICY_URI}]);
        assert_eq!(Consent::parse(&part2).map(|c| c.kind), Ok(Kind::Part2));
        let mut grant = base(None, json!({"type": "permit"}));
        grant["extension"] = json!([{"url": INFORMED_EXTENSION, "valueBoolean": true}]);
        let grant = Consent::parse(&grant).expect("parses");
        assert_eq!((grant.kind, grant.informed), (Kind::Grant, Some(true)));
        let mut bad = base(None, json!({"type": "permit"}));
        bad["extension"] = json!([{"url": "x"}, {"url": INFORMED_EXTENSION, "valueString": "yes"}]);
        assert_eq!(paths(&bad), ["Consent.extension[1].valueBoolean"]);
    }

    #[test]
    fn bad_consents_name_every_element() {
        assert_eq!(paths(&json!([])), ["Consent"]);
        let empty = json!({"resourceType": "Consent"});
        assert_eq!(
            paths(&empty),
            [
                "Consent.status",
                "Consent.scope",
                "Consent.patient",
                "Consent.dateTime",
                "Consent.provision"
            ]
        );
        let mut c = base(
            None,
            json!({
                "type": "allow",
                "period": {"start": "2026-02-01", "end": "2026-01-01"},
                "actor": [{"reference": {"reference": "CareTeam/t1"}}, {"reference": {"identifier": {"system": ACTOR_SYSTEM, "value": "anyone"}}}],
                "purpose": [{"system": "http://example.org", "code": "TREAT"}],
                "securityLabel": [{"code": "R"}],
                "class": [{"system": "urn:oid:1.2.3", "code": "x"}],
                "data": [{"meaning": "authoredby", "reference": {"reference": "Observation/o1"}}, {"meaning": "instance", "reference": {}}],
                "code": [{"text": "x"}],
                "provision": [{"type": "deny", "actor": [{"reference": {"reference": "Group/g"}}]}]
            }),
        );
        c["status"] = json!("revoked");
        c["scope"] = json!({"coding": [{"system": SCOPE_SYSTEM, "code": "research"}]});
        c["patient"] = json!({"reference": "Group/1"});
        c["dateTime"] = json!("2026-01-10T09:00:00");
        assert_eq!(
            paths(&c),
            [
                "Consent.status",
                "Consent.scope",
                "Consent.patient.reference",
                "Consent.dateTime",
                "Consent.provision.type",
                "Consent.provision.code",
                "Consent.provision.period",
                "Consent.provision.actor[0].reference",
                "Consent.provision.actor[1].reference",
                "Consent.provision.purpose[0]",
                "Consent.provision.securityLabel[0]",
                "Consent.provision.class[0]",
                "Consent.provision.data[0].meaning",
                "Consent.provision.data[1].reference",
                "Consent.provision.provision[0].actor[0].reference",
            ]
        );
        let messages: Vec<String> = Consent::parse(&c)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(messages[0].starts_with("Consent.status: must be"));
    }

    #[test]
    fn instants() {
        assert_eq!(
            instant("2026-03-01", false),
            Some(datetime!(2026-03-01 00:00 UTC))
        );
        assert_eq!(
            instant("2026-03-01", true),
            Some(datetime!(2026-03-02 00:00 UTC))
        );
        assert_eq!(
            instant("2026-12", true),
            Some(datetime!(2027-01-01 00:00 UTC))
        );
        assert_eq!(instant("2026", true), Some(datetime!(2027-01-01 00:00 UTC)));
        assert_eq!(
            instant("2026-03-01T10:00:00-05:00", false),
            Some(datetime!(2026-03-01 15:00 UTC))
        );
        for bad in [
            "",
            "26",
            "2026-3",
            "2026-13",
            "2026-02-30",
            "2026-01-01T10:00:00",
            "x-y-z",
            "2026-01-01-01",
        ] {
            assert_eq!(instant(bad, false), None, "{bad}");
        }
    }

    fn access<'a>(
        recipient: &'a Recipient,
        labels: &'a Labels,
        purpose: Purpose,
        now: OffsetDateTime,
    ) -> Access<'a> {
        Access {
            purpose,
            recipient,
            relationship: true,
            labels,
            reference: Some("Observation/o1"),
            now,
        }
    }

    #[test]
    fn nested_exceptions_and_deny_overrides() {
        // Deny all BH except to org A for treatment.
        let c = Consent::parse(&base(None, json!({
            "type": "deny",
            "securityLabel": [{"system": ACT_CODE_SYSTEM, "code": "BH"}],
            "provision": [{"type": "permit", "actor": [{"reference": {"reference": "Organization/a"}}],
                            "purpose": [{"system": PURPOSE_SYSTEM, "code": "TREAT"}]}]
        }))).expect("parses");
        let bh = Labels::of([Sensitivity::Bh]);
        let plain = Labels::default();
        let now = datetime!(2026-02-01 00:00 UTC);
        let a = Recipient {
            organization: Some("a".into()),
            ..Recipient::default()
        };
        let b = Recipient {
            organization: Some("b".into()),
            ..Recipient::default()
        };
        assert_eq!(
            c.evaluate(&access(&a, &bh, Purpose::Treat, now)),
            Some(Effect::Permit)
        );
        assert_eq!(
            c.evaluate(&access(&a, &bh, Purpose::Hpaymt, now)),
            Some(Effect::Deny)
        );
        assert_eq!(
            c.evaluate(&access(&b, &bh, Purpose::Treat, now)),
            Some(Effect::Deny)
        );
        assert_eq!(c.evaluate(&access(&b, &plain, Purpose::Treat, now)), None);
        // Not in force before its dateTime.
        assert_eq!(
            c.evaluate(&access(
                &a,
                &bh,
                Purpose::Treat,
                datetime!(2026-01-01 00:00 UTC)
            )),
            None
        );
        // Siblings: deny overrides.
        let s = Consent::parse(&base(None, json!({"type": "permit", "provision": [
            {"type": "permit", "actor": [{"reference": {"reference": "Organization/a"}}]},
            {"type": "deny", "class": [{"system": RESOURCE_TYPES_SYSTEM, "code": "Observation"}]}
        ]}))).expect("parses");
        assert_eq!(
            s.evaluate(&access(&a, &bh, Purpose::Treat, now)),
            Some(Effect::Deny)
        );
    }

    #[test]
    fn actors_and_data() {
        let c = Consent::parse(&base(None, json!({
            "type": "permit",
            "period": {"start": "2026-01-01", "end": "2026-06-30"},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"identifier": {"system": ACTOR_SYSTEM, "value": ANY_TREATING_PROVIDER}}},
                      {"reference": {"reference": "https://other.example/fhir/Practitioner/pr1/_history/2"}}],
            "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]
        }))).expect("parses");
        let labels = Labels::default();
        let now = datetime!(2026-03-01 00:00 UTC);
        let nobody = Recipient::default();
        let pr1 = Recipient {
            practitioner: Some("pr1".into()),
            ..Recipient::default()
        };
        let mut a = access(&nobody, &labels, Purpose::Treat, now);
        assert_eq!(
            c.evaluate(&a),
            Some(Effect::Permit),
            "any treating provider"
        );
        a.relationship = false;
        assert_eq!(c.evaluate(&a), None);
        a.recipient = &pr1;
        assert_eq!(
            c.evaluate(&a),
            Some(Effect::Permit),
            "the named practitioner"
        );
        a.reference = Some("Observation/o2");
        assert_eq!(c.evaluate(&a), None, "other data");
        a.reference = Some("Observation/o1");
        a.now = datetime!(2026-06-30 23:59 UTC);
        assert_eq!(
            c.evaluate(&a),
            Some(Effect::Permit),
            "the end date holds its day"
        );
        a.now = datetime!(2026-07-01 00:00 UTC);
        assert_eq!(c.evaluate(&a), None, "expired");
    }

    #[test]
    fn only_active_consents_count() {
        let now = datetime!(2026-02-01 00:00 UTC);
        for (status, counts) in [
            ("active", true),
            ("inactive", false),
            ("rejected", false),
            ("draft", false),
            ("proposed", false),
            ("entered-in-error", false),
        ] {
            let mut c = base(None, json!({"type": "permit"}));
            c["status"] = json!(status);
            let c = Consent::parse(&c).expect("parses");
            assert_eq!(c.in_force(now), counts, "{status}");
        }
    }

    #[test]
    fn actor_roles_and_actions() {
        let custodian = base(
            None,
            json!({"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
            "reference": {"reference": "Organization/f001"}}]}),
        );
        assert_eq!(paths(&custodian), ["Consent.provision.actor[0].role"]);
        let correct_only = Consent::parse(&base(None, json!({"type": "deny",
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "correct"}]}]})))
            .expect("parses");
        let access_too = Consent::parse(&base(None, json!({"type": "deny",
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "correct"}]},
                       {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]})))
            .expect("parses");
        let labels = Labels::default();
        let nobody = Recipient::default();
        let now = datetime!(2026-02-01 00:00 UTC);
        assert_eq!(
            correct_only.evaluate(&access(&nobody, &labels, Purpose::Treat, now)),
            None
        );
        assert_eq!(
            access_too.evaluate(&access(&nobody, &labels, Purpose::Treat, now)),
            Some(Effect::Deny)
        );
        assert_eq!(
            paths(&base(
                None,
                json!({"type": "deny", "action": [{"text": "look"}]})
            )),
            ["Consent.provision.action[0]"]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut provision = json!({"type": "permit"});
        for _ in 0..MAX_PROVISION_DEPTH {
            provision = json!({"type": "deny", "provision": [provision]});
        }
        let errors = paths(&base(None, provision));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with(".provision[0]"), "{errors:?}");
    }

    #[test]
    fn to_fhir_reads_back_the_same() {
        let nested = json!({
            "type": "deny",
            "period": {"start": "2026-01-01", "end": "2026-12-31"},
            "actor": [{"reference": {"reference": "Organization/a"}},
                      {"reference": {"identifier": {"system": ACTOR_SYSTEM, "value": ANY_TREATING_PROVIDER}}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "purpose": [{"system": PURPOSE_SYSTEM, "code": "HPAYMT"}],
            "securityLabel": [{"system": ACT_CODE_SYSTEM, "code": "PSY", "display": "psych"}],
            "class": [{"system": RESOURCE_TYPES_SYSTEM, "code": "Observation"}],
            "data": [{"meaning": "related", "reference": {"reference": "Observation/o1"}}],
            "provision": [{"type": "permit", "actor": [{"reference": {"reference": "Patient/p2"}},
                {"reference": {"reference": "Practitioner/pr"}}],
                "period": {"end": "2026-06-01T10:00:00.5+02:00"}}]
        });
        for (rule, provision) in [
            (
                Some("OPTOUT"),
                json!({"type": "deny", "provision": [nested.clone()]}),
            ),
            (Some("OPTIN"), json!({"period": {"start": "2026-02-01"}})),
            (Some("42CFRPart2"), nested.clone()),
            (None, nested.clone()),
        ] {
            let mut json = base(rule, provision);
            json["extension"] = json!([{"url": INFORMED_EXTENSION, "valueBoolean": false}]);
            let consent = Consent::parse(&json).expect("parses");
            let written = consent.to_fhir().expect("writes");
            assert_eq!(Consent::parse(&written), Ok(consent.clone()), "{written}");
            let mut without_id = consent.clone();
            without_id.id = None;
            let written = without_id.to_fhir().expect("writes");
            assert!(written.get("id").is_none());
            assert_eq!(Consent::parse(&written), Ok(without_id));
        }
        // A consent the portal makes: the patient opts out now.
        let opt_out = Consent {
            id: None,
            status: Status::Active,
            patient: "p1".into(),
            date_time: datetime!(2026-03-01 10:00 UTC),
            kind: Kind::OptOut,
            informed: None,
            provision: Provision::everything(Effect::Deny),
        };
        let json = opt_out.to_fhir().expect("writes");
        assert_eq!(json["policyRule"]["coding"][0]["code"], "OPTOUT");
        assert_eq!(json["dateTime"], "2026-03-01T10:00:00Z");
        assert_eq!(Consent::parse(&json), Ok(opt_out));
    }
}
