//! The generator's promises, checked from the outside: determinism per seed and per index, bundles
//! that a FHIR server can load (full URLs, requests, references that resolve), identifiers that are
//! clearly fake and unique, and distributions a demo or a benchmark can rely on.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;
use synth::{entry_count, Generator};

fn resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
}

fn of_type<'a>(bundle: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> {
    resources(bundle).filter(move |r| r["resourceType"] == ty)
}

/// Every `reference` string anywhere inside a value.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

fn codes(resource: &Value, element: &str) -> Vec<String> {
    resource[element]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

fn has_diagnosis(bundle: &Value, prefixes: &[&str]) -> bool {
    of_type(bundle, "Condition")
        .flat_map(|c| codes(c, "code"))
        .any(|code| prefixes.iter().any(|p| code.starts_with(p)))
}

fn has_medication(bundle: &Value, rxnorm: &[&str]) -> bool {
    of_type(bundle, "MedicationRequest")
        .flat_map(|m| codes(m, "medicationCodeableConcept"))
        .any(|code| rxnorm.contains(&code.as_str()))
}

#[test]
fn the_same_seed_gives_the_same_data_in_any_order() {
    let a = Generator::new(42);
    let b = Generator::new(42);
    assert_eq!(a.directory(), b.directory());
    let forwards: Vec<Value> = (0..20).map(|i| a.patient_bundle(i)).collect();
    let backwards: Vec<Value> = (0..20).rev().map(|i| b.patient_bundle(i)).collect();
    for (i, bundle) in forwards.iter().enumerate() {
        assert_eq!(bundle, &backwards[19 - i], "patient {i}");
    }
}

#[test]
fn different_seeds_and_indices_give_different_data() {
    let one = Generator::new(1);
    let two = Generator::new(2);
    assert_ne!(one.directory(), two.directory());
    assert_ne!(one.patient_bundle(0), two.patient_bundle(0));
    assert_ne!(one.patient_bundle(0), one.patient_bundle(1));
}

#[test]
fn bundles_are_transactions_whose_references_resolve() {
    let g = Generator::new(7);
    let directory = g.directory();
    let mut directory_ids = HashSet::new();
    for entry in directory["entry"].as_array().into_iter().flatten() {
        let r = &entry["resource"];
        let key = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or(""),
            r["id"].as_str().unwrap_or("")
        );
        assert_eq!(entry["request"]["method"], "PUT");
        assert_eq!(entry["request"]["url"], key.as_str());
        directory_ids.insert(key);
    }
    for kind in ["Organization", "Practitioner", "PractitionerRole"] {
        assert!(of_type(&directory, kind).count() >= 10, "{kind}");
    }

    for i in 0..50 {
        let bundle = g.patient_bundle(i);
        assert_eq!(bundle["type"], "transaction");
        let mut full_urls = HashSet::new();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let full_url = entry["fullUrl"].as_str().unwrap_or_default();
            assert!(
                full_url.starts_with("urn:uuid:") && full_url.len() == 45,
                "{full_url}"
            );
            assert!(
                full_urls.insert(full_url.to_owned()),
                "duplicate {full_url}"
            );
            let ty = entry["resource"]["resourceType"]
                .as_str()
                .unwrap_or_default();
            let request = &entry["request"];
            if ty == "Patient" {
                assert_eq!(request["method"], "PUT");
                let id = entry["resource"]["id"].as_str().unwrap_or_default();
                assert_eq!(request["url"], format!("Patient/{id}").as_str());
                assert_eq!(full_url, format!("urn:uuid:{id}"));
            } else {
                assert_eq!(request["method"], "POST");
                assert_eq!(request["url"], ty);
            }
        }
        let mut refs = Vec::new();
        references(&bundle, &mut refs);
        for r in refs {
            assert!(
                full_urls.contains(&r) || directory_ids.contains(&r),
                "patient {i}: dangling {r}"
            );
        }
    }
}

#[test]
fn identifiers_are_fake_and_unique() {
    let g = Generator::new(3);
    let mut mrns = HashSet::new();
    for i in 0..2_000 {
        let bundle = g.patient_bundle(i);
        let patient = of_type(&bundle, "Patient")
            .next()
            .cloned()
            .unwrap_or_default();
        let value = |system: &str| {
            patient["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|id| id["system"] == system)
                .and_then(|id| id["value"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let ssn = value("http://hl7.org/fhir/sid/us-ssn");
        assert!(
            ssn.len() == 9 && ssn.starts_with('9') && ssn.bytes().all(|b| b.is_ascii_digit()),
            "{ssn}"
        );
        assert!(
            mrns.insert(value("https://synth.nutmeg.example/fhir/sid/mrn")),
            "duplicate MRN at {i}"
        );
        for telecom in patient["telecom"].as_array().into_iter().flatten() {
            let v = telecom["value"].as_str().unwrap_or_default();
            match telecom["system"].as_str() {
                Some("phone") => assert!(v.contains("-555-01"), "{v}"),
                Some("email") => assert!(
                    v.ends_with(".example.com")
                        || v.ends_with("@example.com")
                        || v.ends_with("@example.org")
                        || v.ends_with("@example.net"),
                    "{v}"
                ),
                other => panic!("unexpected telecom {other:?}"),
            }
        }
    }
    let directory = g.directory();
    for r in resources(&directory).filter(|r| r["resourceType"] != "PractitionerRole") {
        let npi = r["identifier"][0]["value"].as_str().unwrap_or_default();
        assert_eq!(
            r["identifier"][0]["system"],
            "http://hl7.org/fhir/sid/us-npi"
        );
        assert_eq!(npi.len(), 10, "{npi}");
    }
}

#[test]
fn the_directory_has_behavioral_health_licences() {
    let directory = Generator::new(5).directory();
    let licences: BTreeSet<String> = of_type(&directory, "Practitioner")
        .filter_map(|p| {
            p["qualification"][0]["code"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for expected in ["LMFT", "LCSW", "PhD", "LADC", "MD"] {
        assert!(
            licences.contains(expected),
            "{expected} missing from {licences:?}"
        );
    }
    let psychiatrists = of_type(&directory, "PractitionerRole")
        .filter(|r| r["specialty"][0]["coding"][0]["code"] == "2084P0800X")
        .count();
    assert!(psychiatrists >= 1);
}

/// Share of the bundles for which `test` holds.
fn share(bundles: &[Value], test: impl Fn(&Value) -> bool) -> f64 {
    bundles.iter().filter(|b| test(b)).count() as f64 / bundles.len() as f64
}

#[test]
fn distributions_are_realistic() {
    let g = Generator::new(11);
    let bundles: Vec<Value> = (0..600).map(|i| g.patient_bundle(i)).collect();
    let g = &bundles[..];
    // (what, share found, lowest plausible, highest plausible)
    let checks = [
        (
            "mental-health diagnosis",
            share(g, |b| has_diagnosis(b, &["F2", "F3", "F4", "F9"])),
            0.1,
            0.5,
        ),
        (
            "depression",
            share(g, |b| has_diagnosis(b, &["F32", "F33"])),
            0.05,
            0.3,
        ),
        (
            "anxiety",
            share(g, |b| has_diagnosis(b, &["F41.1"])),
            0.03,
            0.2,
        ),
        (
            "PTSD",
            share(g, |b| has_diagnosis(b, &["F43.1"])),
            0.01,
            0.12,
        ),
        (
            "substance use other than tobacco",
            share(g, |b| {
                has_diagnosis(b, &["F10", "F11", "F12", "F14", "F15", "F19"])
            }),
            0.05,
            0.3,
        ),
        (
            "opioid dependence",
            share(g, |b| has_diagnosis(b, &["F11"])),
            0.005,
            0.08,
        ),
        (
            "buprenorphine or methadone",
            share(g, |b| has_medication(b, &["1010600", "864706"])),
            0.002,
            0.08,
        ),
        (
            "no behavioural or substance-use diagnosis",
            share(g, |b| !has_diagnosis(b, &["F"])),
            0.4,
            0.85,
        ),
        (
            "hypertension",
            share(g, |b| has_diagnosis(b, &["I10"])),
            0.1,
            0.45,
        ),
        (
            "an allergy",
            share(g, |b| of_type(b, "AllergyIntolerance").next().is_some()),
            0.15,
            0.45,
        ),
        (
            "a child",
            share(g, |b| {
                of_type(b, "Patient")
                    .any(|p| p["birthDate"].as_str().is_some_and(|d| d > "2007-07"))
            }),
            0.1,
            0.35,
        ),
    ];
    for (what, found, low, high) in checks {
        assert!(
            (low..=high).contains(&found),
            "{what}: {found:.3} not in {low}..{high}"
        );
    }
}

#[test]
fn observations_are_coded_and_spread_over_years() {
    let g = Generator::new(13);
    let mut years = BTreeSet::new();
    let mut loinc = BTreeSet::new();
    let mut with_components = 0;
    for i in 0..100 {
        let bundle = g.patient_bundle(i);
        for o in of_type(&bundle, "Observation") {
            assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
            loinc.extend(codes(o, "code"));
            if let Some(t) = o["effectiveDateTime"].as_str() {
                years.insert(t[..4].to_owned());
            }
            if let Some(q) = o.get("valueQuantity") {
                assert_eq!(q["system"], "http://unitsofmeasure.org");
                assert!(q["value"].is_number() && q["code"].is_string(), "{q}");
            }
            if o.get("component").is_some() {
                with_components += 1;
            }
        }
    }
    assert!(years.len() >= 10, "{years:?}");
    for code in [
        "8867-4", "85354-9", "29463-7", "39156-5", "2339-0", "44261-6",
    ] {
        assert!(loinc.contains(code), "no {code}");
    }
    assert!(with_components > 100);
}

#[test]
fn the_size_is_configurable() {
    let standard = Generator::new(17);
    let avg = standard.resources_per_patient_avg();
    assert!((80.0..=120.0).contains(&avg), "{avg}");
    let million = standard.patients_for_resources(1_000_000);
    assert!((8_000..=12_500).contains(&million), "{million}");
    let larger = Generator::new(17)
        .with_mean_encounters(20)
        .resources_per_patient_avg();
    assert!(larger > avg * 1.7, "{larger} vs {avg}");
    assert!(entry_count(&standard.directory()) >= 50);
}
