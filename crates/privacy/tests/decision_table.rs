//! Runs the decision table `tests/decision_table.txt` (its header documents the columns) against
//! the shipped Connecticut policy: each scenario's data is labelled on intake, its consents are
//! built as FHIR Consent resources and parsed, and the decision is compared with the expected
//! outcome, reason codes, obligations and consents used. Every failing row is reported at once.

use privacy::codes::{Licence, Purpose, ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, PURPOSE_SYSTEM};
use privacy::consent::{
    Consent, Recipient, ACTOR_SYSTEM, ANY_TREATING_PROVIDER, INFORMED_EXTENSION, SCOPE_SYSTEM,
};
use privacy::labels::{self, SourceFacts};
use privacy::policy::{Data, Decision, Model, Obligation, Policy, Request};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const TABLE: &str = include_str!("decision_table.txt");
const DEFAULT_NOW: &str = "2026-06-01T12:00:00Z";
const DEFAULT_AT: &str = "2026-01-10T09:00:00Z";

struct Row<'a> {
    line: usize,
    name: &'a str,
    data: &'a str,
    purpose: &'a str,
    rel: &'a str,
    recipient: &'a str,
    consents: &'a str,
    flags: &'a str,
    now: &'a str,
    expect: &'a str,
    obligations: &'a str,
    used: &'a str,
}

fn rows() -> Vec<Row<'static>> {
    TABLE
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(c.len(), 11, "line {}: 11 columns, found {}", i + 1, c.len());
            Row {
                line: i + 1,
                name: c[0],
                data: c[1],
                purpose: c[2],
                rel: c[3],
                recipient: c[4],
                consents: c[5],
                flags: c[6],
                now: c[7],
                expect: c[8],
                obligations: c[9],
                used: c[10],
            }
        })
        .collect()
}

fn tokens(column: &str) -> Vec<&str> {
    if column == "-" {
        Vec::new()
    } else {
        column.split_whitespace().collect()
    }
}

fn date_time(text: &str) -> String {
    if text.contains('T') {
        text.to_owned()
    } else {
        format!("{text}T09:00:00Z")
    }
}

/// The labelled resource of the data column, about p1, and its facts as the decision sees them.
fn data(column: &str) -> Data {
    let mut source = SourceFacts::default();
    let mut security = Vec::new();
    let mut family = Vec::new();
    let mut sent_by = None;
    for token in tokens(column) {
        if let Some(l) = token.strip_prefix("lic=") {
            source.licence = Some(Licence::parse_loose(l).unwrap_or_else(|| panic!("licence {l}")));
        } else if token == "psych-fac" {
            source.psychiatric_facility = true;
        } else if let Some(participant) = token.strip_prefix("from=") {
            sent_by = Some(participant.to_owned());
        } else if let Some(members) = token.strip_prefix("family=") {
            family = members.split('+').collect();
        } else {
            let system = if token.len() == 1 {
                CONFIDENTIALITY_SYSTEM
            } else {
                ACT_CODE_SYSTEM
            };
            security.push(json!({"system": system, "code": token}));
        }
    }
    let mut resource = if family.is_empty() {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": "Patient/p1"}})
    } else {
        // A family therapy session: the Observation records its participants.
        let mut participants = vec![json!({"actor": {"reference": "Patient/p1"}})];
        participants.extend(
            family
                .iter()
                .map(|m| json!({"actor": {"reference": format!("Patient/{m}")}})),
        );
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": "Patient/p1"},
               "extension": [{"url": "https://nutmeg.example/fhir/StructureDefinition/session", "extension": [],
                              "participant": participants}]})
    };
    if !security.is_empty() {
        resource["meta"] = json!({"security": security});
    }
    let labels = labels::label(&resource, &source);
    labels::apply(&mut resource, &labels, &source);
    let mut data = Data::from_resource(&resource, "p1");
    data.source_participant = sent_by;
    assert_eq!(data.labels, labels);
    assert_eq!(data.source, source);
    data
}

/// The FHIR Consent of one shorthand item, `kind(key=value,...)`.
fn consent_json(item: &str, id: &str) -> Value {
    let (kind, args) = match item.split_once('(') {
        Some((kind, rest)) => (
            kind,
            rest.strip_suffix(')')
                .unwrap_or_else(|| panic!("{item}: no )")),
        ),
        None => (item, ""),
    };
    let mut consent = json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": DEFAULT_AT,
    });
    let (policy_rule, effect) = match kind {
        "optout" => (Some("OPTOUT"), "deny"),
        "optin" => (Some("OPTIN"), "permit"),
        "grant" => (None, "permit"),
        "deny" => (None, "deny"),
        "part2" => (Some("42CFRPart2"), "permit"),
        _ => panic!("unknown consent kind {kind}"),
    };
    if let Some(rule) = policy_rule {
        consent["policyRule"] = json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": rule}]});
    }
    let mut provision = json!({"type": effect});
    let mut period = serde_json::Map::new();
    for arg in args.split(',').filter(|a| !a.is_empty()) {
        let (key, value) = arg
            .split_once('=')
            .unwrap_or_else(|| panic!("{item}: {arg}"));
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
                provision["actor"] = json!(actors);
            }
            "labels" => {
                provision["securityLabel"] = json!(list()
                    .map(|l| json!({"system": ACT_CODE_SYSTEM, "code": l}))
                    .collect::<Vec<_>>())
            }
            "purposes" => {
                provision["purpose"] = json!(list()
                    .map(|p| json!({"system": PURPOSE_SYSTEM, "code": p}))
                    .collect::<Vec<_>>())
            }
            "data" => {
                provision["data"] = json!(list()
                    .map(|d| json!({"meaning": "instance", "reference": {"reference": d}}))
                    .collect::<Vec<_>>())
            }
            "from" => {
                period.insert("start".into(), json!(value));
            }
            "until" => {
                period.insert("end".into(), json!(value));
            }
            _ => panic!("{item}: unknown key {key}"),
        }
    }
    if !period.is_empty() {
        provision["period"] = Value::Object(period);
    }
    consent["provision"] = provision;
    consent
}

fn consents(column: &str) -> Vec<Consent> {
    tokens(column)
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let json = consent_json(item, &format!("c{}", i + 1));
            let consent = Consent::parse(&json).unwrap_or_else(|e| panic!("{item}: {e:?}"));
            // What the portal would write for it reads back the same.
            let written = consent.to_fhir().unwrap_or_else(|e| panic!("{item}: {e}"));
            assert_eq!(Consent::parse(&written).as_ref(), Ok(&consent), "{item}");
            consent
        })
        .collect()
}

fn request(row: &Row<'_>) -> Request {
    let recipient = match row.recipient {
        "patient" => Recipient {
            patient: Some("p1".into()),
            ..Recipient::default()
        },
        other => {
            let (org, practitioner) = match other.split_once('/') {
                Some((o, p)) => (o, Some(p.to_owned())),
                None => (other, None),
            };
            Recipient {
                organization: Some(org.to_owned()),
                practitioner,
                patient: None,
            }
        }
    };
    Request {
        purpose: Purpose::parse(row.purpose).unwrap_or_else(|| panic!("purpose {}", row.purpose)),
        recipient,
        relationship: match row.rel {
            "yes" => true,
            "no" => false,
            other => panic!("rel {other}"),
        },
        emergency_declared: tokens(row.flags).contains(&"emergency"),
    }
}

fn obligation_names(decision: &Decision) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = decision
        .obligations
        .iter()
        .map(|o| match o {
            Obligation::Redact => "redact",
            Obligation::AddLabel(c) if c.code == "NORDSCLCD" => "nordsclcd",
            Obligation::AddLabel(_) => "add-label",
            Obligation::AttachNotice { .. } => "notice",
            Obligation::NotifyPatient => "notify-patient",
            Obligation::NotifySource => "notify-source",
            Obligation::FlagBreakGlass => "flag",
        })
        .collect();
    names.sort_unstable();
    names
}

/// What is wrong with one row's decision, if anything.
fn check(row: &Row<'_>) -> Option<String> {
    let mut policy = Policy::connecticut();
    if tokens(row.flags).contains(&"opt-in") {
        policy.model = Model::OptIn;
    }
    let now_text = if row.now == "-" { DEFAULT_NOW } else { row.now };
    let now =
        OffsetDateTime::parse(now_text, &Rfc3339).unwrap_or_else(|e| panic!("now {now_text}: {e}"));
    let decision = policy.decide(&request(row), &data(row.data), &consents(row.consents), now);
    let reason_codes: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
    for (i, reason) in decision.reasons.iter().enumerate() {
        assert!(
            !decision.reasons[..i].contains(reason),
            "{}: {reason:?} repeated",
            row.name
        );
    }
    let mut problems = Vec::new();
    match row.expect.split_once(':') {
        None if row.expect == "permit" => {
            if !decision.permit {
                problems.push("expected permit, got deny".to_owned());
            }
        }
        Some(("deny", codes)) => {
            if decision.permit {
                problems.push("expected deny, got permit".to_owned());
            }
            for code in codes.split('+') {
                if !reason_codes.contains(&code) {
                    problems.push(format!("reason {code} missing"));
                }
            }
        }
        _ => panic!("expect {}", row.expect),
    }
    let mut expected: Vec<&str> = tokens(row.obligations);
    expected.sort_unstable();
    let got = obligation_names(&decision);
    if got != expected {
        problems.push(format!("obligations {got:?}, expected {expected:?}"));
    }
    let used: Vec<&str> = if row.used == "-" {
        Vec::new()
    } else {
        row.used.split('+').collect()
    };
    if decision.consents_used != used {
        problems.push(format!(
            "consents used {:?}, expected {used:?}",
            decision.consents_used
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "line {} {}: {} (reasons {reason_codes:?})",
            row.line,
            row.name,
            problems.join("; ")
        )
    })
}

#[test]
fn decision_table() {
    let rows = rows();
    assert!(
        rows.len() >= 60,
        "at least 60 scenarios, found {}",
        rows.len()
    );
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), rows.len(), "scenario names are unique");
    let failures: Vec<String> = rows.iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The table covers every purpose of use, every source kind and both answers.
#[test]
fn decision_table_covers_the_dimensions() {
    let rows = rows();
    for purpose in Purpose::ALL {
        assert!(
            rows.iter().any(|r| r.purpose == purpose.code()),
            "{purpose}"
        );
    }
    for needle in [
        "lic=LMFT",
        "lic=psychiatrist",
        "psych-fac",
        "family=",
        "SUD",
        "PSYTHPN",
        "HIV",
    ] {
        assert!(rows.iter().any(|r| r.data.contains(needle)), "{needle}");
    }
    for needle in [
        "optout(",
        "optin(",
        "grant(",
        "deny(",
        "part2(",
        "status=inactive",
        "until=",
        "from=",
    ] {
        assert!(rows.iter().any(|r| r.consents.contains(needle)), "{needle}");
    }
    assert!(rows.iter().any(|r| r.flags.contains("emergency")));
    assert!(rows.iter().any(|r| r.flags.contains("opt-in")));
    assert!(rows.iter().any(|r| r.now != "-"));
    assert!(rows.iter().any(|r| r.expect == "permit"));
    assert!(rows.iter().any(|r| r.expect.starts_with("deny")));
}
