//! No input makes the crate panic: every element of a rich Consent and of a labelled resource is
//! replaced in turn by values of every JSON kind, and the mutants are parsed, labelled and decided;
//! every Consent that parses is written back (`Consent::to_fhir`) and reads back the same.
//! (A deterministic stand-in for a fuzz target until the fuzz workspace has one.)

use privacy::codes::Purpose;
use privacy::consent::{Consent, Recipient};
use privacy::labels::{self, SourceFacts};
use privacy::policy::{Data, Policy, Request};
use serde_json::{json, Value};
use time::macros::datetime;

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value) -> Vec<Vec<Step>> {
    let mut out = vec![Vec::new()];
    let mut stack = vec![(value, Vec::new())];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::Object(o) => {
                for (k, child) in o {
                    let mut p = path.clone();
                    p.push(Step::Key(k.clone()));
                    out.push(p.clone());
                    stack.push((child, p));
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(Step::Index(i));
                    out.push(p.clone());
                    stack.push((child, p));
                }
            }
            _ => {}
        }
    }
    out
}

fn at<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut v = value;
    for step in path {
        v = match step {
            Step::Key(k) => v.get_mut(k.as_str())?,
            Step::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

fn replacements() -> Vec<Value> {
    let mut deep = json!("x");
    for _ in 0..60 {
        deep =
            json!({"type": "deny", "provision": [deep], "reference": {"reference": "Patient/p3"}});
    }
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("x"),
        json!("Patient/"),
        json!("/_history/"),
        json!("9999-12-31T23:59:59.999999999Z"),
        json!("2026-02-30"),
        json!("-"),
        json!("é"),
        json!([]),
        json!({}),
        json!([null]),
        json!({"system": 1, "code": []}),
        json!({"reference": "Patient/p2"}),
        deep,
    ]
}

fn mutants(seed: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for path in paths(seed) {
        for replacement in replacements() {
            let mut mutant = seed.clone();
            if let Some(slot) = at(&mut mutant, &path) {
                *slot = replacement;
                out.push(mutant);
            }
        }
    }
    out
}

fn rich_consent() -> Value {
    json!({
        "resourceType": "Consent", "id": "c1", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2026-01-10T09:00:00Z",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "42CFRPart2"}]},
        "policy": [{"uri": "https://www.ecfr.gov/current/title-42/chapter-I/subchapter-A/part-2"}],
        "extension": [{"url": "https://nutmeg.example/fhir/StructureDefinition/psychiatric-informed", "valueBoolean": true}],
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01", "end": "2026-12-31T23:59:59Z"},
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "actor": [
                {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                 "reference": {"reference": "Organization/org-a"}},
                {"reference": {"identifier": {"system": "https://nutmeg.example/fhir/sid/consent-actor", "value": "any-treating-provider"}}}
            ],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
            "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}],
            "provision": [{"type": "deny", "actor": [{"reference": {"reference": "Practitioner/pr-9"}}]}]
        }
    })
}

fn rich_resource() -> Value {
    json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"},
                               {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                 "tag": [{"system": "https://nutmeg.example/fhir/CodeSystem/licence-type", "code": "LMFT"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F10.20", "display": "Alcohol dependence"}]},
        "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Medication", "code": {"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1819", "display": "buprenorphine"}]}}],
        "extension": [{"url": "x", "participant": [{"actor": {"reference": "Patient/p2"}}]}]
    })
}

#[test]
fn mutated_consents_never_panic() {
    let policy = Policy::connecticut();
    let data = Data::from_resource(&rich_resource(), "p1");
    let request = Request {
        purpose: Purpose::Treat,
        recipient: Recipient {
            organization: Some("org-a".into()),
            ..Recipient::default()
        },
        relationship: true,
        emergency_declared: false,
    };
    let mut parsed = 0;
    let mut refused = 0;
    for mutant in mutants(&rich_consent()) {
        match Consent::parse(&mutant) {
            Ok(consent) => {
                parsed += 1;
                if let Ok(written) = consent.to_fhir() {
                    assert_eq!(Consent::parse(&written).as_ref(), Ok(&consent), "{written}");
                }
                let _ = policy.decide(&request, &data, &[consent], datetime!(2026-06-01 12:00 UTC));
            }
            Err(errors) => {
                refused += 1;
                assert!(!errors.is_empty());
                assert!(
                    errors.iter().all(|e| e.path.starts_with("Consent")),
                    "{errors:?}"
                );
            }
        }
    }
    assert!(
        parsed > 0 && refused > 0,
        "{parsed} parsed, {refused} refused"
    );
}

#[test]
fn mutated_resources_never_panic() {
    let policy = Policy::connecticut();
    let consent = Consent::parse(&rich_consent()).expect("the seed parses");
    let request = Request {
        purpose: Purpose::Etreat,
        recipient: Recipient::default(),
        relationship: false,
        emergency_declared: true,
    };
    for mutant in mutants(&rich_resource()) {
        let source = SourceFacts::from_resource(&mutant);
        let labels = labels::label(&mutant, &source);
        let mut stored = mutant.clone();
        labels::apply(&mut stored, &labels, &source);
        let data = Data::from_resource(&stored, "p1");
        let _ = Data::from_json_text(&stored.to_string(), "p1", &policy);
        privacy::redact::redact_references(&mut stored, &|r| {
            r == "Patient/p2" || r == "Patient/p3"
        });
        let _ = policy.decide(
            &request,
            &data,
            std::slice::from_ref(&consent),
            datetime!(2026-06-01 12:00 UTC),
        );
    }
}
