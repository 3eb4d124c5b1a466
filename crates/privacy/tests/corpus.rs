//! The crate against public FHIR data (`../shared/data`, which the product never reads): every
//! official R4 example and US Core example is labelled without a panic, labelling is stable when
//! repeated on its own output, and the official Consent examples parse or are refused naming the
//! element, as documented in `privacy::consent`. Skipped when the data is not next to the repository.

use std::path::{Path, PathBuf};

use privacy::consent::{Consent, Kind};
use privacy::labels::{self, Labels, SourceFacts};
use privacy::policy::{Data, Policy};
use serde_json::Value;

fn shared(folder: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(folder);
    if path.is_dir() {
        Some(path)
    } else {
        eprintln!("skipped: ../shared/data/{folder} (the public test data) is not here");
        None
    }
}

fn resources(folder: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                out.push((
                    path.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    value,
                ));
            }
        }
    }
    out
}

#[test]
fn every_example_is_labelled_and_labelling_is_stable() {
    let policy = Policy::connecticut();
    let mut total = 0;
    let mut sensitive = Vec::new();
    for folder in ["fhir-r4/examples", "us-core"] {
        let Some(folder) = shared(folder) else { return };
        for (name, resource) in resources(&folder) {
            total += 1;
            let source = SourceFacts::default();
            let first = labels::label(&resource, &source);
            let mut stored = resource.clone();
            labels::apply(&mut stored, &first, &source);
            let again = labels::label(&stored, &source);
            assert_eq!(
                again, first,
                "{name}: labelling its own output changes nothing"
            );
            assert_eq!(Labels::from_security(&stored), first, "{name}: read back");
            let from_text = Data::from_json_text(&stored.to_string(), "example", &policy)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(from_text.labels, first, "{name}: read from text");
            if !first.sensitivity.is_empty() {
                let codes: Vec<&str> = first.sensitivity.iter().map(|s| s.code()).collect();
                sensitive.push(format!("{name}: {}", codes.join(" ")));
            }
        }
    }
    assert!(total > 900, "{total} examples");
    eprintln!(
        "{} of {total} examples labelled sensitive:\n{}",
        sensitive.len(),
        sensitive.join("\n")
    );
    // Some examples carry codes from the rule table.
    assert!(!sensitive.is_empty());
    // Most do not: labelling does not make everything sensitive.
    assert!(
        sensitive.len() * 10 < total,
        "{} of {total}",
        sensitive.len()
    );
}

#[test]
fn official_consent_examples() {
    let Some(folder) = shared("fhir-r4/examples") else {
        return;
    };
    let mut seen = 0;
    for (name, consent) in resources(&folder) {
        if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            continue;
        }
        seen += 1;
        let result = Consent::parse(&consent);
        let id = name
            .trim_start_matches("Consent-consent-example-")
            .trim_end_matches(".json");
        match (id, &result) {
            // Exchange-wide choices (with a period) and a choice with a nested permit.
            ("basic" | "notTime" | "smartonfhir", Ok(c)) => assert_eq!(c.kind, Kind::OptIn, "{id}"),
            // A restriction: deny to Organization/f001.
            ("notOrg", Ok(c)) => assert_eq!(c.kind, Kind::Grant, "{id}"),
            // Custodian actors and untyped conditional provisions are refused, naming the element.
            ("Out" | "Emergency" | "grantor" | "notAuthor", Err(errors)) => {
                assert!(
                    errors
                        .iter()
                        .any(|e| e.path == "Consent.provision.actor[0].role"),
                    "{id}: {errors:?}"
                )
            }
            ("notThem" | "pkb" | "signature" | "notThis", Err(errors)) => {
                assert!(
                    errors.iter().any(|e| e.path.ends_with(".type")),
                    "{id}: {errors:?}"
                )
            }
            _ => panic!("{id}: unexpected {result:?}"),
        }
    }
    assert_eq!(seen, 12);
}
