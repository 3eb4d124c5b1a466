//! The participant registry: every organization and solo practitioner connected to the exchange.
//!
//! A participant is an Organization (a solo practice too: its Organization stands for the practice,
//! and its Practitioner is joined to it by a PractitionerRole), so the provider directory is plain
//! FHIR search. Its status in the exchange (applied, onboarding, live, suspended) is a `meta.tag`,
//! so `_tag` finds participants by status and every change is a new version with its history. The
//! registry is a use case over the [`Repository`]: every write is validated, versioned and indexed
//! as any other, and every read passes the decision point.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::access::Requester;
use crate::repository::{Error, Handling, Repository};
use fhir::{Issue, IssueType};
/// A practitioner's licence type: the privacy rules' own (`is_behavioral_health` says whether what
/// such a practitioner sends is behavioral-health information).
pub use privacy::codes::Licence as LicenceType;

/// The base of the definitions nutmeg itself makes (code systems, extensions, identifier systems).
/// A reserved `.example` name, so that it can never mean anyone else's definitions.
pub const CANONICAL: &str = "https://nutmeg.example/fhir";
/// The code system of a participant's status (the `meta.tag` of its Organization).
pub const STATUS_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/participant-status";
/// The code system of participant types (an Organization's `type`).
pub const TYPE_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/participant-type";
/// The code system of practitioners' licence types (a Practitioner's `qualification.code`).
pub const LICENCE_TYPE_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/licence-type";
/// The extension that names the EHR product a participant uses.
pub const EHR_EXTENSION: &str = "https://nutmeg.example/fhir/StructureDefinition/participant-ehr";
/// The National Provider Identifier.
pub const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";
/// The US Employer Identification Number (tax id).
pub const TAX_ID_SYSTEM: &str = "urn:oid:2.16.840.1.113883.4.4";

/// The identifier system of a state's licences: `https://nutmeg.example/fhir/sid/licence/CT`.
pub fn licence_system(state: &str) -> String {
    format!("{CANONICAL}/sid/licence/{state}")
}

/// Declares a closed set of codes with their displays, parsing and printing.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $display:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            pub fn display(self) -> &'static str {
                match self { $($name::$variant => $display,)+ }
            }

            /// The value for a code (as printed by [`Self::code`]), case-insensitively.
            pub fn parse(code: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.code().eq_ignore_ascii_case(code))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

codes! {
    /// Where a participant is in joining the exchange. Only live participants query clinical data.
    Status {
        Applied = "applied", "Applied";
        Onboarding = "onboarding", "Onboarding";
        Live = "live", "Live";
        Suspended = "suspended", "Suspended";
    }
}

codes! {
    /// What kind of participant an organization is. A psychiatric facility (a psychiatric
    /// hospital or clinic, Conn. Gen. Stat. 52-146d) sends only psychiatric (PSY) data.
    Kind {
        Hospital = "hospital", "Hospital";
        Lab = "lab", "Laboratory";
        Clinic = "clinic", "Clinic";
        PsychiatricFacility = "psychiatric-facility", "Psychiatric facility";
        GroupPractice = "group-practice", "Group practice";
        SoloPractice = "solo-practice", "Solo practice";
        PublicHealth = "public-health", "Public health agency";
        ExchangeOperator = "exchange-operator", "Exchange operator";
    }
}

codes! {
    /// How a participant's system is reached: its FHIR server, its Direct address, its HL7 v2 feed.
    EndpointKind {
        Fhir = "hl7-fhir-rest", "HL7 FHIR";
        Direct = "direct-project", "Direct Project";
        Mllp = "hl7v2-mllp", "HL7 v2 MLLP";
    }
}

/// The code system of Endpoint.connectionType.
pub const CONNECTION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/endpoint-connection-type";

impl EndpointKind {
    /// The address in the form Endpoint.address takes for this kind, or why it is not one:
    /// `https://...` (or `http://` for a test system), `mailto:user@domain` (a bare address is
    /// accepted), `mllp://host:port`.
    pub fn address(self, text: &str) -> Result<String, String> {
        let text = text.trim();
        let printable = !text.is_empty()
            && text.len() <= 500
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if !printable {
            return Err("address: 1-500 characters without spaces".into());
        }
        match self {
            EndpointKind::Fhir => {
                let rest = text
                    .strip_prefix("https://")
                    .or_else(|| text.strip_prefix("http://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.starts_with('/') => {
                        Ok(text.to_string())
                    }
                    _ => Err("address: a FHIR base URL starts with https://".into()),
                }
            }
            EndpointKind::Direct => {
                let address = text.strip_prefix("mailto:").unwrap_or(text);
                match address.split_once('@') {
                    Some((local, domain))
                        if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
                    {
                        Ok(format!("mailto:{address}"))
                    }
                    _ => Err(
                        "address: a Direct address looks like jane.doe@direct.example.org".into(),
                    ),
                }
            }
            EndpointKind::Mllp => {
                let port = text
                    .strip_prefix("mllp://")
                    .and_then(|rest| rest.rsplit_once(':'))
                    .filter(|(host, _)| !host.is_empty())
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    .filter(|port| *port > 0);
                match port {
                    Some(_) => Ok(text.to_string()),
                    None => Err("address: an MLLP endpoint looks like mllp://host:port".into()),
                }
            }
        }
    }
}

impl Status {
    /// Whether the participant's systems may get access tokens: while onboarding (the directory and
    /// onboarding only; the decision point keeps clinical data for live participants) and live; not
    /// before the application is accepted, and not while suspended.
    pub fn may_hold_tokens(self) -> bool {
        matches!(self, Status::Onboarding | Status::Live)
    }

    /// Whether a participant in this status may be moved to `next`: forward through onboarding to
    /// live, suspended from anywhere, and back from suspension to onboarding or live.
    pub fn may_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Applied, Onboarding)
                | (Onboarding, Live)
                | (_, Suspended)
                | (Suspended, Onboarding)
                | (Suspended, Live)
        ) && self != next
    }
}

/// A state licence: the state (two letters) and the number the state issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub state: String,
    pub number: String,
}

/// The active PractitionerRoles whose `param` (`organization` or `practitioner`) is `reference`,
/// read straight from the store (the registry's own facts, for the decision point, intake and the
/// operators' tools; not a disclosure). At most the first 100.
async fn active_roles(
    store: &store::Store,
    param: &str,
    reference: String,
) -> Result<Vec<Value>, store::StoreError> {
    Ok(
        search_active_roles(store, vec![(param.to_string(), reference)], 100, None)
            .await?
            .matches
            .iter()
            .filter_map(|role| serde_json::from_str::<Value>(&role.json).ok())
            .collect(),
    )
}

/// One page (`count`) of the active PractitionerRoles matching `params`, read straight from the
/// store, with `include` (`_include`) when given.
async fn search_active_roles(
    store: &store::Store,
    mut params: Vec<(String, String)>,
    count: usize,
    include: Option<&str>,
) -> Result<store::SearchPage, store::StoreError> {
    params.push(("active".to_string(), "true".to_string()));
    if let Some(include) = include {
        params.push(("_include".to_string(), include.to_string()));
    }
    let query = fhir::search::parse::parse(Some("PractitionerRole"), &params, true)
        .map_err(|_| {
            store::StoreError::Database("the PractitionerRole search did not parse".into())
        })?
        .query;
    let options = store::SearchOptions {
        count,
        max_includes: if include.is_some() { count } else { 0 },
    };
    store.search(&query, &options).await
}

/// The practitioners joined to a participant's Organization by an active PractitionerRole (ids of
/// Practitioners that exist, with their resources).
pub async fn practitioners_of(
    store: &store::Store,
    participant: &str,
) -> Result<Vec<(String, Value)>, store::StoreError> {
    let roles = active_roles(store, "organization", format!("Organization/{participant}")).await?;
    let mut out: Vec<(String, Value)> = Vec::new();
    for role in roles {
        let Some(id) = role["practitioner"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Practitioner/"))
        else {
            continue;
        };
        if out.iter().any(|(known, _)| known == id) {
            continue;
        }
        let Some(practitioner) = store.read("Practitioner", id).await? else {
            continue;
        };
        if practitioner.deleted {
            continue;
        }
        if let Ok(json) = serde_json::from_str::<Value>(&practitioner.json) {
            out.push((id.to_string(), json));
        }
    }
    Ok(out)
}

/// The practitioners of many participants at once, as [`practitioners_of`] answers for one: each
/// participant's Practitioners joined to it by an active PractitionerRole, read ten participants
/// a query with the Practitioners `_include`d (at most 1,000 roles per ten participants).
pub async fn practitioners_of_all(
    store: &store::Store,
    participants: &[String],
) -> Result<HashMap<String, Vec<(String, Value)>>, store::StoreError> {
    let mut out: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for chunk in participants.chunks(10) {
        let organizations: Vec<String> =
            chunk.iter().map(|p| format!("Organization/{p}")).collect();
        let page = search_active_roles(
            store,
            vec![("organization".to_string(), organizations.join(","))],
            1000,
            Some("PractitionerRole:practitioner"),
        )
        .await?;
        let practitioners: HashMap<&str, Value> = page
            .included
            .iter()
            .filter(|p| p.resource_type == "Practitioner" && !p.deleted)
            .filter_map(|p| Some((p.id.as_str(), serde_json::from_str(&p.json).ok()?)))
            .collect();
        for role in &page.matches {
            let Ok(role) = serde_json::from_str::<Value>(&role.json) else {
                continue;
            };
            let (Some(org), Some(id)) = (
                role["organization"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Organization/")),
                role["practitioner"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Practitioner/")),
            ) else {
                continue;
            };
            let Some(practitioner) = practitioners.get(id) else {
                continue;
            };
            let known = out.entry(org.to_string()).or_default();
            if !known.iter().any(|(k, _)| k == id) {
                known.push((id.to_string(), practitioner.clone()));
            }
        }
    }
    Ok(out)
}

/// The participants a Direct address's owner belongs to: an organization is its own participant,
/// a practitioner belongs to those it is joined to by an active PractitionerRole.
pub async fn participants_of_owner(
    store: &store::Store,
    owner_kind: &str,
    owner_id: &str,
) -> Result<Vec<String>, store::StoreError> {
    match owner_kind {
        "organization" => Ok(vec![owner_id.to_string()]),
        _ => participants_of_practitioner(store, owner_id).await,
    }
}

/// The participants (Organization ids) a practitioner is joined to by an active PractitionerRole.
pub async fn participants_of_practitioner(
    store: &store::Store,
    practitioner: &str,
) -> Result<Vec<String>, store::StoreError> {
    let roles = active_roles(
        store,
        "practitioner",
        format!("Practitioner/{practitioner}"),
    )
    .await?;
    let mut out: Vec<String> = Vec::new();
    for role in roles {
        if let Some(org) = role["organization"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Organization/"))
        {
            if !out.iter().any(|o| o == org) {
                out.push(org.to_string());
            }
        }
    }
    Ok(out)
}

/// The practitioner of a solo practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPractitioner {
    pub given: String,
    pub family: String,
    pub npi: Option<String>,
    pub licence_type: LicenceType,
    pub licence: Licence,
}

/// What an operator (or an approved application) registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParticipant {
    pub name: String,
    pub kind: Kind,
    pub npi: Option<String>,
    pub tax_id: Option<String>,
    /// The organization's own licence (a facility licence), if it has one.
    pub licence: Option<Licence>,
    /// The EHR product it uses, if any.
    pub ehr: Option<String>,
    /// Required for a solo practice, and only there.
    pub practitioner: Option<NewPractitioner>,
}

/// A registered participant as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The Organization's id.
    pub id: String,
    pub version: i64,
    pub name: String,
    pub kind: Option<Kind>,
    pub status: Status,
    pub npi: Option<String>,
    pub tax_id: Option<String>,
    pub licence: Option<Licence>,
    pub ehr: Option<String>,
}

/// The largest page the registry reads when it lists participants.
const PAGE: usize = 1000;

/// The two-letter codes of the US states, the District of Columbia and the territories.
const STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "AS", "GU", "MP", "PR", "VI",
];

/// Whether `npi` is a valid National Provider Identifier: ten digits whose last is the Luhn check
/// digit of the first nine prefixed with the card issuer code 80840.
pub fn is_valid_npi(npi: &str) -> bool {
    if npi.len() != 10 || !npi.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits: Vec<u32> = npi.bytes().map(|b| u32::from(b - b'0')).collect();
    // 80840 contributes 24 to the Luhn sum of the nine digits that follow it.
    let mut sum = 24;
    for (i, d) in digits[..9].iter().rev().enumerate() {
        sum += if i % 2 == 0 {
            let doubled = d * 2;
            doubled / 10 + doubled % 10
        } else {
            *d
        };
    }
    (10 - sum % 10) % 10 == digits[9]
}

/// A tax id as nine digits (`06-1234567` or `061234567`), or `None` if it is not one.
fn normal_tax_id(tax_id: &str) -> Option<String> {
    let digits: String = tax_id.chars().filter(|c| *c != '-').collect();
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}-{}", &digits[..2], &digits[2..]))
}

fn invalid(issues: &mut Vec<Issue>, what: impl Into<String>) {
    issues.push(Issue::error(IssueType::Value, what));
}

fn check_text(issues: &mut Vec<Issue>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        invalid(issues, format!("{field}: required"));
    } else if value.chars().count() > max || value.chars().any(char::is_control) {
        invalid(
            issues,
            format!("{field}: at most {max} characters, no control characters"),
        );
    }
}

fn check_licence(issues: &mut Vec<Issue>, field: &str, licence: &Licence) {
    if !STATES.contains(&licence.state.as_str()) {
        invalid(
            issues,
            format!("{field}: the state must be a two-letter US state code such as CT"),
        );
    }
    let number_ok = !licence.number.is_empty()
        && licence.number.len() <= 40
        && licence
            .number
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/'));
    if !number_ok {
        invalid(
            issues,
            format!("{field}: the number must be 1-40 letters, digits, '-', '.' or '/'"),
        );
    }
}

fn check_npi(issues: &mut Vec<Issue>, field: &str, npi: &Option<String>) {
    if let Some(npi) = npi {
        if !is_valid_npi(npi) {
            invalid(
                issues,
                format!("{field}: not a valid NPI (ten digits with a check digit)"),
            );
        }
    }
}

impl NewParticipant {
    /// Every problem with what was given, at once.
    pub fn problems(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        check_text(&mut issues, "name", &self.name, 200);
        check_npi(&mut issues, "npi", &self.npi);
        if let Some(tax_id) = &self.tax_id {
            if normal_tax_id(tax_id).is_none() {
                invalid(
                    &mut issues,
                    "tax id: nine digits, as 06-1234567 or 061234567",
                );
            }
        }
        if let Some(licence) = &self.licence {
            check_licence(&mut issues, "licence", licence);
        }
        if let Some(ehr) = &self.ehr {
            check_text(&mut issues, "ehr", ehr, 200);
        }
        match (&self.practitioner, self.kind) {
            (None, Kind::SoloPractice) => invalid(
                &mut issues,
                "practitioner: a solo practice names its practitioner",
            ),
            (Some(_), kind) if kind != Kind::SoloPractice => invalid(
                &mut issues,
                "practitioner: only a solo practice is registered with its practitioner; \
                 an organization's practitioners join through its directory",
            ),
            (Some(p), _) => {
                check_text(&mut issues, "practitioner given name", &p.given, 100);
                check_text(&mut issues, "practitioner family name", &p.family, 100);
                check_npi(&mut issues, "practitioner npi", &p.npi);
                check_licence(&mut issues, "practitioner licence", &p.licence);
            }
            (None, _) => {}
        }
        issues
    }

    /// The Organization that stands for the participant.
    fn organization(&self) -> Value {
        let mut identifiers = Vec::new();
        if let Some(npi) = &self.npi {
            identifiers.push(json!({ "system": NPI_SYSTEM, "value": npi }));
        }
        if let Some(tax_id) = self.tax_id.as_deref().and_then(normal_tax_id) {
            identifiers.push(json!({ "system": TAX_ID_SYSTEM, "value": tax_id }));
        }
        if let Some(licence) = &self.licence {
            identifiers
                .push(json!({ "system": licence_system(&licence.state), "value": licence.number }));
        }
        let mut org = json!({
            "resourceType": "Organization",
            "meta": { "tag": [status_tag(Status::Applied)] },
            "active": true,
            "type": [{ "coding": [{
                "system": TYPE_SYSTEM, "code": self.kind.code(), "display": self.kind.display()
            }] }],
            "name": self.name.trim(),
        });
        if !identifiers.is_empty() {
            org["identifier"] = Value::Array(identifiers);
        }
        if let Some(ehr) = &self.ehr {
            org["extension"] = json!([{ "url": EHR_EXTENSION, "valueString": ehr.trim() }]);
        }
        org
    }
}

impl NewPractitioner {
    fn practitioner(&self) -> Value {
        let mut identifiers = Vec::new();
        if let Some(npi) = &self.npi {
            identifiers.push(json!({ "system": NPI_SYSTEM, "value": npi }));
        }
        let licence = json!({
            "system": licence_system(&self.licence.state),
            "value": self.licence.number,
        });
        identifiers.push(licence.clone());
        json!({
            "resourceType": "Practitioner",
            "active": true,
            "identifier": identifiers,
            "name": [{ "family": self.family.trim(), "given": [self.given.trim()] }],
            "qualification": [{
                "identifier": [licence],
                "code": { "coding": [{
                    "system": LICENCE_TYPE_SYSTEM,
                    "code": self.licence_type.code(),
                    "display": self.licence_type.display(),
                }] },
            }],
        })
    }
}

fn status_tag(status: Status) -> Value {
    json!({ "system": STATUS_SYSTEM, "code": status.code(), "display": status.display() })
}

/// The participant an Organization stands for, or `None` if it is not a participant (it carries
/// no status tag).
pub fn participant_of(id: &str, version: i64, org: &Value) -> Option<Participant> {
    let tags = org["meta"]["tag"].as_array()?;
    let status = tags
        .iter()
        .filter(|t| t["system"] == STATUS_SYSTEM)
        .find_map(|t| t["code"].as_str().and_then(Status::parse))?;
    let identifier = |wanted: &dyn Fn(&str) -> bool| {
        org["identifier"].as_array().and_then(|ids| {
            ids.iter().find_map(|i| {
                let (system, value) = (i["system"].as_str()?, i["value"].as_str()?);
                wanted(system).then(|| (system.to_string(), value.to_string()))
            })
        })
    };
    let licence_prefix = format!("{CANONICAL}/sid/licence/");
    Some(Participant {
        id: id.to_string(),
        version,
        name: org["name"].as_str().unwrap_or_default().to_string(),
        kind: org["type"].as_array().and_then(|types| {
            types.iter().find_map(|t| {
                t["coding"].as_array()?.iter().find_map(|c| {
                    (c["system"] == TYPE_SYSTEM)
                        .then(|| c["code"].as_str().and_then(Kind::parse))
                        .flatten()
                })
            })
        }),
        status,
        npi: identifier(&|s| s == NPI_SYSTEM).map(|(_, v)| v),
        tax_id: identifier(&|s| s == TAX_ID_SYSTEM).map(|(_, v)| v),
        licence: identifier(&|s| s.starts_with(&licence_prefix)).map(|(system, number)| Licence {
            state: system[licence_prefix.len()..].to_string(),
            number,
        }),
        ehr: org["extension"].as_array().and_then(|exts| {
            exts.iter()
                .find(|e| e["url"] == EHR_EXTENSION)
                .and_then(|e| e["valueString"].as_str())
                .map(str::to_string)
        }),
    })
}

impl Repository {
    /// Registers a participant (status applied): its Organization, and for a solo practice its
    /// Practitioner and their PractitionerRole, in one transaction. A second participant with the
    /// same NPI or licence is refused (422) and names the first.
    pub async fn add_participant(
        &self,
        who: &Requester,
        new: &NewParticipant,
    ) -> Result<Participant, Error> {
        let issues = new.problems();
        if !issues.is_empty() {
            return Err(Error::Invalid(issues));
        }
        let mut taken = Vec::new();
        let mut keys: Vec<(&str, String, String)> = Vec::new();
        if let Some(npi) = &new.npi {
            keys.push(("Organization", NPI_SYSTEM.to_string(), npi.clone()));
        }
        if let Some(licence) = &new.licence {
            let system = licence_system(&licence.state);
            keys.push(("Organization", system, licence.number.clone()));
        }
        if let Some(p) = &new.practitioner {
            if let Some(npi) = &p.npi {
                keys.push(("Practitioner", NPI_SYSTEM.to_string(), npi.clone()));
            }
            let system = licence_system(&p.licence.state);
            keys.push(("Practitioner", system, p.licence.number.clone()));
        }
        for (ty, system, value) in &keys {
            let params = vec![("identifier".to_string(), format!("{system}|{value}"))];
            let found = self
                .search(who, Some(ty), &params, Handling::Strict)
                .await?;
            for entry in found.to_value()["entry"].as_array().into_iter().flatten() {
                if let Some(id) = entry["resource"]["id"].as_str() {
                    taken.push(Issue::error(
                        IssueType::Duplicate,
                        format!("{system}|{value} is already registered as {ty}/{id}"),
                    ));
                }
            }
        }
        if !taken.is_empty() {
            return Err(Error::Unprocessable(taken));
        }

        let org_ref = "urn:uuid:00000000-0000-4000-8000-000000000001";
        let mut entries = vec![json!({
            "fullUrl": org_ref,
            "resource": new.organization(),
            "request": { "method": "POST", "url": "Organization" },
        })];
        if let Some(p) = &new.practitioner {
            let practitioner_ref = "urn:uuid:00000000-0000-4000-8000-000000000002";
            entries.push(json!({
                "fullUrl": practitioner_ref,
                "resource": p.practitioner(),
                "request": { "method": "POST", "url": "Practitioner" },
            }));
            entries.push(json!({
                "resource": {
                    "resourceType": "PractitionerRole",
                    "active": true,
                    "practitioner": { "reference": practitioner_ref },
                    "organization": { "reference": org_ref },
                },
                "request": { "method": "POST", "url": "PractitionerRole" },
            }));
        }
        let response = self
            .bundle(
                who,
                json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }),
            )
            .await?;
        let location = response["entry"][0]["response"]["location"]
            .as_str()
            .unwrap_or_default();
        let id = location
            .split('/')
            .skip_while(|s| *s != "Organization")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        self.participant(who, &id).await
    }

    /// Registers one of the participant's endpoints (an Endpoint managed by its Organization, which
    /// lists it), in one transaction that fails if the Organization changed meanwhile. Answers the
    /// Endpoint's id.
    pub async fn add_participant_endpoint(
        &self,
        who: &Requester,
        id: &str,
        kind: EndpointKind,
        address: &str,
    ) -> Result<String, Error> {
        let address = kind
            .address(address)
            .map_err(|e| Error::Invalid(vec![Issue::error(IssueType::Value, e)]))?;
        let current = self.read(who, "Organization", id).await?;
        participant_of(&current.id, current.version, &current.resource).ok_or(Error::NotFound)?;
        let endpoint_ref = "urn:uuid:00000000-0000-4000-8000-000000000003";
        let mut org = current.resource;
        let mut endpoints = org["endpoint"].as_array().cloned().unwrap_or_default();
        endpoints.push(json!({ "reference": endpoint_ref }));
        org["endpoint"] = Value::Array(endpoints);
        let response = self
            .bundle(
                who,
                json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
                    {
                        "fullUrl": endpoint_ref,
                        "resource": {
                            "resourceType": "Endpoint",
                            "status": "active",
                            "connectionType": {
                                "system": CONNECTION_TYPE_SYSTEM,
                                "code": kind.code(),
                                "display": kind.display(),
                            },
                            "managingOrganization": { "reference": format!("Organization/{id}") },
                            "payloadType": [{ "coding": [{
                                "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                                "code": "any",
                            }] }],
                            "address": address,
                        },
                        "request": { "method": "POST", "url": "Endpoint" },
                    },
                    {
                        "resource": org,
                        "request": {
                            "method": "PUT",
                            "url": format!("Organization/{id}"),
                            "ifMatch": format!("W/\"{}\"", current.version),
                        },
                    },
                ]}),
            )
            .await?;
        let location = response["entry"][0]["response"]["location"]
            .as_str()
            .unwrap_or_default();
        Ok(location
            .split('/')
            .skip_while(|s| *s != "Endpoint")
            .nth(1)
            .unwrap_or_default()
            .to_string())
    }

    /// The participant's endpoints: (Endpoint id, kind, address), in the order its Organization
    /// lists them (the order they were added).
    pub async fn participant_endpoints(
        &self,
        who: &Requester,
        id: &str,
    ) -> Result<Vec<(String, EndpointKind, String)>, Error> {
        let org = self.read(who, "Organization", id).await?;
        participant_of(&org.id, org.version, &org.resource).ok_or(Error::NotFound)?;
        let params = vec![
            ("organization".to_string(), format!("Organization/{id}")),
            ("_count".to_string(), PAGE.to_string()),
        ];
        let found = self
            .search(who, Some("Endpoint"), &params, Handling::Strict)
            .await?
            .to_value();
        let mut by_id = std::collections::HashMap::new();
        for entry in found["entry"].as_array().into_iter().flatten() {
            let e = &entry["resource"];
            let kind = e["connectionType"]["code"]
                .as_str()
                .and_then(EndpointKind::parse);
            if let (Some(kind), Some(id), Some(address)) =
                (kind, e["id"].as_str(), e["address"].as_str())
            {
                by_id.insert(
                    format!("Endpoint/{id}"),
                    (id.to_string(), kind, address.to_string()),
                );
            }
        }
        Ok(org.resource["endpoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["reference"].as_str().and_then(|r| by_id.remove(r)))
            .collect())
    }

    /// One participant by its Organization's id; 404 if there is none (or the Organization is not a
    /// participant).
    pub async fn participant(&self, who: &Requester, id: &str) -> Result<Participant, Error> {
        let org = self.read(who, "Organization", id).await?;
        participant_of(&org.id, org.version, &org.resource).ok_or(Error::NotFound)
    }

    /// Every participant, or those in one status, ordered by name.
    pub async fn participants(
        &self,
        who: &Requester,
        status: Option<Status>,
    ) -> Result<Vec<Participant>, Error> {
        let statuses: Vec<String> = match status {
            Some(s) => vec![format!("{STATUS_SYSTEM}|{}", s.code())],
            None => Status::ALL
                .iter()
                .map(|s| format!("{STATUS_SYSTEM}|{}", s.code()))
                .collect(),
        };
        let mut params = vec![
            ("_tag".to_string(), statuses.join(",")),
            ("_sort".to_string(), "name".to_string()),
            ("_count".to_string(), PAGE.to_string()),
        ];
        let mut out = Vec::new();
        loop {
            let page = self
                .search(who, Some("Organization"), &params, Handling::Strict)
                .await?
                .to_value();
            for entry in page["entry"].as_array().into_iter().flatten() {
                let resource = &entry["resource"];
                let version = resource["meta"]["versionId"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let id = resource["id"].as_str().unwrap_or_default();
                out.extend(participant_of(id, version, resource));
            }
            let next = page["link"].as_array().and_then(|links| {
                links
                    .iter()
                    .find(|l| l["relation"] == "next")
                    .and_then(|l| l["url"].as_str())
                    .and_then(|url| url.split_once('?'))
                    .map(|(_, query)| crate::repository::parse_query_string(query))
            });
            match next {
                Some(next) => params = next,
                None => return Ok(out),
            }
        }
    }

    /// Moves a participant to `status` (see [`Status::may_become`]); a move the workflow does not
    /// allow is 422. The change is a new version of the Organization, kept in its history.
    pub async fn set_participant_status(
        &self,
        who: &Requester,
        id: &str,
        status: Status,
    ) -> Result<Participant, Error> {
        let current = self.read(who, "Organization", id).await?;
        let before = participant_of(&current.id, current.version, &current.resource)
            .ok_or(Error::NotFound)?;
        if !before.status.may_become(status) {
            return Err(Error::Unprocessable(vec![Issue::error(
                IssueType::BusinessRule,
                format!(
                    "a participant that is {} cannot become {}",
                    before.status, status
                ),
            )]));
        }
        let mut org = current.resource;
        let tags = org["meta"]["tag"].as_array_mut().ok_or(Error::NotFound)?;
        tags.retain(|t| t["system"] != STATUS_SYSTEM);
        tags.push(status_tag(status));
        org["active"] = json!(status != Status::Suspended);
        let written = self
            .update(who, "Organization", id, org, Some(current.version))
            .await?;
        participant_of(id, written.resource.version, &written.resource.resource)
            .ok_or(Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_check_digits() {
        // CMS's example NPI and neighbours with a wrong check digit or shape.
        for (npi, valid) in [
            ("1234567893", true),
            ("1234567890", false),
            ("123456789", false),
            ("12345678931", false),
            ("123456789a", false),
            ("1245319599", true),
        ] {
            assert_eq!(is_valid_npi(npi), valid, "{npi}");
        }
    }

    #[test]
    fn status_moves() {
        use Status::*;
        for (from, to, allowed) in [
            (Applied, Onboarding, true),
            (Applied, Live, false),
            (Onboarding, Live, true),
            (Live, Suspended, true),
            (Applied, Suspended, true),
            (Suspended, Live, true),
            (Suspended, Onboarding, true),
            (Live, Applied, false),
            (Live, Onboarding, false),
            (Live, Live, false),
            (Suspended, Suspended, false),
        ] {
            assert_eq!(from.may_become(to), allowed, "{from} -> {to}");
        }
    }

    #[test]
    fn endpoint_addresses() {
        use EndpointKind::*;
        for (kind, given, expected) in [
            (
                Fhir,
                "https://ehr.example.org/fhir",
                Ok("https://ehr.example.org/fhir"),
            ),
            (Fhir, "ftp://ehr.example.org", Err(())),
            (Fhir, "https:///fhir", Err(())),
            (
                Direct,
                "jane.doe@direct.example.org",
                Ok("mailto:jane.doe@direct.example.org"),
            ),
            (
                Direct,
                "mailto:jane@direct.example.org",
                Ok("mailto:jane@direct.example.org"),
            ),
            (Direct, "jane.doe", Err(())),
            (Direct, "a@b@c.org", Err(())),
            (
                Mllp,
                "mllp://interface.example.org:2575",
                Ok("mllp://interface.example.org:2575"),
            ),
            (Mllp, "mllp://interface.example.org", Err(())),
            (Mllp, "mllp://:2575", Err(())),
            (Fhir, "https://ehr example", Err(())),
        ] {
            let got = kind.address(given).map_err(|_| ());
            assert_eq!(got, expected.map(str::to_string), "{kind} {given}");
        }
    }

    #[test]
    fn tax_ids() {
        assert_eq!(normal_tax_id("061234567").as_deref(), Some("06-1234567"));
        assert_eq!(normal_tax_id("06-1234567").as_deref(), Some("06-1234567"));
        assert_eq!(normal_tax_id("06-123456"), None);
        assert_eq!(normal_tax_id("0612345678"), None);
        assert_eq!(normal_tax_id("06-12345x7"), None);
    }
}
