//! The privacy decision table as data, for this crate's tests and for end-to-end tests that run the
//! same scenarios through the server.
//!
//! [`DECISION_TABLE`] (`tests/decision_table.txt`, whose header documents the columns) has one
//! scenario per line: the data (labels the source sends, its licence, facility, family members,
//! which participant sent it), the request (purpose, relationship, recipient, flags), the patient's
//! consents in a shorthand, the time, and the expected outcome, reasons, obligations and consents
//! used. [`parse`] turns it into [`Scenario`]s holding what a client would send: the resource as the
//! source sends it, the FHIR Consents to record (ids `c1`, `c2`... in order), the request's facts.
//! [`Scenario::run`] labels, parses and decides in process; [`Scenario::check`] compares a decision
//! with the expectation. An end-to-end test stores the resource as the source, records the
//! consents, asks as the recipient, and compares what comes back (a withheld resource is a 404).
//!
//! Bad rows are reported with their line numbers, never by a panic.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::codes::{
    Licence, Purpose, ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, NORDSCLCD, PURPOSE_SYSTEM,
};
use crate::consent::{
    Consent, Recipient, ACTOR_SYSTEM, ANY_TREATING_PROVIDER, INFORMED_EXTENSION, SCOPE_SYSTEM,
};
use crate::labels::{self, SourceFacts};
use crate::policy::{Data, Decision, Model, Obligation, Policy, Request};

/// The shipped decision table.
pub const DECISION_TABLE: &str = include_str!("../tests/decision_table.txt");
/// The patient every scenario is about.
pub const PATIENT: &str = "p1";
/// The id of every scenario's resource (an Observation).
pub const RESOURCE_ID: &str = "o1";
/// The time of a scenario whose `now` column is `-`.
pub const DEFAULT_NOW: &str = "2026-06-01T12:00:00Z";
/// The `dateTime` of a consent without `at=`.
pub const DEFAULT_CONSENT_TIME: &str = "2026-01-10T09:00:00Z";

/// What a scenario expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub permit: bool,
    /// Reason codes that must be among a denial's reasons.
    pub reasons: Vec<String>,
    /// The exact obligations, by [`obligation_name`], sorted.
    pub obligations: Vec<String>,
    /// The exact consents used, in order.
    pub consents_used: Vec<String>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The line in the table (1-based).
    pub line: usize,
    pub name: String,
    /// The row as written, for reports.
    pub row: String,
    /// The resource as the source sends it (before labelling): an Observation about [`PATIENT`].
    pub resource: Value,
    /// Who sent it, as labelling sees them.
    pub source: SourceFacts,
    /// The participant that sent it, when the row says (`from=`).
    pub source_participant: Option<String>,
    /// The FHIR Consents to record, in order (ids `c1`, `c2`...).
    pub consents: Vec<Value>,
    pub request: Request,
    /// The policy's model for this scenario (the shipped one unless the row's flags say `opt-in`).
    pub model: Model,
    pub now: OffsetDateTime,
    pub expect: Expectation,
}

/// Parses a decision table, reporting every bad row (`line N: ...`).
pub fn parse(table: &str) -> Result<Vec<Scenario>, Vec<String>> {
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in table.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match row(i + 1, trimmed) {
            Ok(s) => {
                if scenarios.iter().any(|o: &Scenario| o.name == s.name) {
                    errors.push(format!("line {}: scenario {} named twice", i + 1, s.name));
                }
                scenarios.push(s);
            }
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(errors)
    }
}

fn tokens(column: &str) -> Vec<&str> {
    if column == "-" {
        Vec::new()
    } else {
        column.split_whitespace().collect()
    }
}

fn row(line: usize, text: &str) -> Result<Scenario, String> {
    let c: Vec<&str> = text.split('|').map(str::trim).collect();
    let [name, data, purpose, rel, recipient, consents, flags, now, expect, obligations, used] =
        c[..]
    else {
        return Err(format!("11 columns, found {}", c.len()));
    };
    let (resource, source, source_participant) = resource(data)?;
    let flags = tokens(flags);
    for flag in &flags {
        if !matches!(*flag, "emergency" | "opt-in") {
            return Err(format!("unknown flag {flag}"));
        }
    }
    let request = Request {
        purpose: Purpose::parse(purpose).ok_or_else(|| format!("unknown purpose {purpose}"))?,
        recipient: recipient_of(recipient),
        relationship: match rel {
            "yes" => true,
            "no" => false,
            other => return Err(format!("rel is yes or no, not {other}")),
        },
        emergency_declared: flags.contains(&"emergency"),
    };
    let consents = tokens(consents)
        .iter()
        .enumerate()
        .map(|(i, item)| consent(item, &format!("c{}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let now_text = if now == "-" { DEFAULT_NOW } else { now };
    let now = OffsetDateTime::parse(now_text, &Rfc3339).map_err(|e| format!("now: {e}"))?;
    let expect = Expectation {
        permit: match expect.split_once(':') {
            None if expect == "permit" => true,
            Some(("deny", _)) => false,
            _ => return Err(format!("expect is permit or deny:CODES, not {expect}")),
        },
        reasons: expect
            .split_once(':')
            .map(|(_, codes)| codes.split('+').map(str::to_owned).collect())
            .unwrap_or_default(),
        obligations: {
            let mut o: Vec<String> = tokens(obligations).into_iter().map(str::to_owned).collect();
            o.sort_unstable();
            o
        },
        consents_used: if used == "-" {
            Vec::new()
        } else {
            used.split('+').map(str::to_owned).collect()
        },
    };
    Ok(Scenario {
        line,
        name: name.to_owned(),
        row: text.to_owned(),
        resource,
        source,
        source_participant,
        consents,
        request,
        model: if flags.contains(&"opt-in") {
            Model::OptIn
        } else {
            Model::OptOut
        },
        now,
        expect,
    })
}

fn recipient_of(column: &str) -> Recipient {
    if column == "patient" {
        return Recipient {
            patient: Some(PATIENT.into()),
            ..Recipient::default()
        };
    }
    let (organization, practitioner) = match column.split_once('/') {
        Some((o, p)) => (o, Some(p.to_owned())),
        None => (column, None),
    };
    Recipient {
        organization: Some(organization.to_owned()),
        practitioner,
        patient: None,
    }
}

/// The resource of the data column as its source sends it.
fn resource(column: &str) -> Result<(Value, SourceFacts, Option<String>), String> {
    let mut source = SourceFacts::default();
    let mut security = Vec::new();
    let mut family: Vec<&str> = Vec::new();
    let mut sent_by = None;
    for token in tokens(column) {
        if let Some(l) = token.strip_prefix("lic=") {
            source.licence =
                Some(Licence::parse_loose(l).ok_or_else(|| format!("unknown licence {l}"))?);
        } else if token == "psych-fac" {
            source.psychiatric_facility = true;
        } else if let Some(participant) = token.strip_prefix("from=") {
            sent_by = Some(participant.to_owned());
        } else if let Some(members) = token.strip_prefix("family=") {
            family = members.split('+').collect();
        } else if token.len() == 1 {
            security.push(json!({"system": CONFIDENTIALITY_SYSTEM, "code": token}));
        } else if token.chars().all(|c| c.is_ascii_uppercase()) {
            security.push(json!({"system": ACT_CODE_SYSTEM, "code": token}));
        } else {
            return Err(format!("unknown data token {token}"));
        }
    }
    let mut resource = json!({
        "resourceType": "Observation", "id": RESOURCE_ID, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{PATIENT}")},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    if !family.is_empty() {
        // A family therapy session: the record names its participants (valid FHIR: nested
        // extensions of the session-participants extension).
        let mut participants = vec![
            json!({"url": "participant", "valueReference": {"reference": format!("Patient/{PATIENT}")}}),
        ];
        participants.extend(family.iter().map(
            |m| json!({"url": "participant", "valueReference": {"reference": format!("Patient/{m}")}}),
        ));
        resource["extension"] = json!([{
            "url": crate::policy::SESSION_PARTICIPANTS,
            "extension": participants}]);
    }
    if !security.is_empty() {
        resource["meta"] = json!({"security": security});
    }
    Ok((resource, source, sent_by))
}

fn date_time(text: &str) -> String {
    if text.contains('T') {
        text.to_owned()
    } else {
        format!("{text}T09:00:00Z")
    }
}

/// The FHIR Consent of one shorthand item, `kind(key=value,...)` (see the table's header).
fn consent(item: &str, id: &str) -> Result<Value, String> {
    let (kind, args) = match item.split_once('(') {
        Some((kind, rest)) => (
            kind,
            rest.strip_suffix(')')
                .ok_or_else(|| format!("{item}: no closing )"))?,
        ),
        None => (item, ""),
    };
    let mut consent = json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{PATIENT}")},
        "dateTime": DEFAULT_CONSENT_TIME,
    });
    let (policy_rule, effect) = match kind {
        "optout" => (Some("OPTOUT"), "deny"),
        "optin" => (Some("OPTIN"), "permit"),
        "grant" => (None, "permit"),
        "deny" => (None, "deny"),
        "part2" => (Some("42CFRPart2"), "permit"),
        _ => return Err(format!("unknown consent kind {kind}")),
    };
    if let Some(rule) = policy_rule {
        consent["policyRule"] = json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": rule}]});
    }
    let mut provision = json!({"type": effect});
    let mut period = Map::new();
    for arg in args.split(',').filter(|a| !a.is_empty()) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{item}: {arg} is not key=value"))?;
        let list = || value.split('+');
        match key {
            "patient" => consent["patient"] = json!({"reference": format!("Patient/{value}")}),
            "at" => consent["dateTime"] = json!(date_time(value)),
            "status" => consent["status"] = json!(value),
            "informed" => {
                consent["extension"] =
                    json!([{"url": INFORMED_EXTENSION, "valueBoolean": value == "yes"}])
            }
            "actor" => {
                let actors: Vec<Value> = list()
                    .map(|a| {
                        let reference = if a == "any" {
                            json!({"identifier": {"system": ACTOR_SYSTEM, "value": ANY_TREATING_PROVIDER}})
                        } else if let Some(p) = a.strip_prefix("pr:") {
                            json!({"reference": format!("Practitioner/{p}")})
                        } else if let Some(p) = a.strip_prefix("patient:") {
                            json!({"reference": format!("Patient/{p}")})
                        } else {
                            json!({"reference": format!("Organization/{a}")})
                        };
                        json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                               "reference": reference})
                    })
                    .collect();
                provision["actor"] = Value::Array(actors);
            }
            "labels" => {
                provision["securityLabel"] = Value::Array(
                    list()
                        .map(|l| json!({"system": ACT_CODE_SYSTEM, "code": l}))
                        .collect(),
                )
            }
            "purposes" => {
                provision["purpose"] = Value::Array(
                    list()
                        .map(|p| json!({"system": PURPOSE_SYSTEM, "code": p}))
                        .collect(),
                )
            }
            "data" => {
                provision["data"] = Value::Array(
                    list()
                        .map(|d| json!({"meaning": "instance", "reference": {"reference": d}}))
                        .collect(),
                )
            }
            "from" => {
                period.insert("start".into(), json!(value));
            }
            "until" => {
                period.insert("end".into(), json!(value));
            }
            _ => return Err(format!("{item}: unknown key {key}")),
        }
    }
    if !period.is_empty() {
        provision["period"] = Value::Object(period);
    }
    consent["provision"] = provision;
    Ok(consent)
}

/// A short name for an obligation, as the table writes it: `redact`, `nordsclcd` (or `add-label`
/// for another label), `notice`, `notify-patient`, `notify-source`, `flag`.
pub fn obligation_name(obligation: &Obligation) -> &'static str {
    match obligation {
        Obligation::Redact => "redact",
        Obligation::AddLabel(c) if c.code == NORDSCLCD => "nordsclcd",
        Obligation::AddLabel(_) => "add-label",
        Obligation::AttachNotice { .. } => "notice",
        Obligation::NotifyPatient => "notify-patient",
        Obligation::NotifySource => "notify-source",
        Obligation::FlagBreakGlass => "flag",
    }
}

impl Scenario {
    /// The data's facts after labelling on intake, as the decision sees them.
    pub fn data(&self) -> Data {
        let mut stored = self.resource.clone();
        let labels = labels::label(&stored, &self.source);
        labels::apply(&mut stored, &labels, &self.source);
        let mut data = Data::from_resource(&stored, PATIENT);
        data.source_participant = self.source_participant.clone();
        data
    }

    /// Labels, parses the consents and decides with `policy` (its model set to the scenario's).
    pub fn run(&self, policy: &Policy) -> Result<Decision, String> {
        let consents = self
            .consents
            .iter()
            .map(|c| Consent::parse(c).map_err(|e| format!("{e:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut policy = policy.clone();
        policy.model = self.model;
        Ok(policy.decide(&self.request, &self.data(), &consents, self.now))
    }

    /// What is wrong with a decision for this scenario (nothing: empty).
    pub fn check(&self, decision: &Decision) -> Vec<String> {
        let mut problems = Vec::new();
        if decision.permit != self.expect.permit {
            problems.push(format!(
                "expected {}, got {}",
                if self.expect.permit { "permit" } else { "deny" },
                if decision.permit { "permit" } else { "deny" }
            ));
        }
        let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
        for code in &self.expect.reasons {
            if !codes.contains(&code.as_str()) {
                problems.push(format!("reason {code} missing (reasons {codes:?})"));
            }
        }
        let mut obligations: Vec<&str> = decision.obligations.iter().map(obligation_name).collect();
        obligations.sort_unstable();
        if obligations != self.expect.obligations {
            problems.push(format!(
                "obligations {obligations:?}, expected {:?}",
                self.expect.obligations
            ));
        }
        if decision.consents_used != self.expect.consents_used {
            problems.push(format!(
                "consents used {:?}, expected {:?}",
                decision.consents_used, self.expect.consents_used
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_with_their_lines() {
        let table = "# header\n\
            a | - | TREAT | yes | org-a | - | - | - | permit | - | -\n\
            b | - | NOPE | yes | org-a | - | - | - | permit | - | -\n\
            c | - | TREAT | maybe | org-a | - | - | - | permit | - | -\n\
            d | - | TREAT | yes | org-a | wish(x=1) | - | - | permit | - | -\n\
            e | - | TREAT | yes | org-a | grant(actor | - | - | permit | - | -\n\
            f | lic=wizard | TREAT | yes | org-a | - | - | - | permit | - | -\n\
            g | - | TREAT | yes | org-a | - | dance | - | permit | - | -\n\
            h | - | TREAT | yes | org-a | - | - | yesterday | permit | - | -\n\
            i | - | TREAT | yes | org-a | - | - | - | maybe | - | -\n\
            a | - | TREAT | yes | org-a | - | - | - | permit | - | -\n\
            j | too | few\n";
        let errors = parse(table).expect_err("bad rows");
        let lines: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            lines,
            [
                "line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "line 10",
                "line 11", "line 12"
            ]
        );
    }
}
