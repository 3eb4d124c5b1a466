//! The conformance corpus through the repository: every R4 example and US Core example that the
//! validator accepts (crates/fhir/tests/corpus.rs proves which those are) is stored with its own id
//! and read back equal to what was sent, apart from `meta`, whose versionId and lastUpdated are the
//! server's and whose security labels labelling on intake adds to. Reads `../shared/data`, which the product itself never does.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::{repo, who};
use fhir::outcome::Severity;
use serde_json::Value;

fn corpus_dirs() -> Option<Vec<PathBuf>> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let dirs = vec![shared.join("fhir-r4/examples"), shared.join("us-core")];
    dirs.iter().all(|d| d.is_dir()).then_some(dirs)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn without_meta(mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.remove("meta");
    }
    resource
}

/// JSON equality, with one allowance: a decimal written with an exponent (`1E-22`) may come back
/// written out (`0.0000000000000000000001`, as PostgreSQL's JSONB stores it) with the same value.
/// Every other number must come back exactly as written, so that precision (`1.00`) is kept.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (xs, ys) = (x.to_string(), y.to_string());
            xs == ys
                || ((xs.contains(['e', 'E']) || ys.contains(['e', 'E']))
                    && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn every_valid_example_is_stored_and_read_back_unchanged() {
    let Some(dirs) = corpus_dirs() else {
        // Written past the test harness's capture, so that a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: ../shared/data (the public test data) is not here"
        );
        return;
    };
    let repo = repo().await;
    let (mut stored, mut rejected_by_validator, mut failures) = (0, Vec::new(), Vec::new());
    for file in dirs.iter().flat_map(|d| json_files(d)) {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let sent: Value = serde_json::from_slice(&std::fs::read(&file).expect("read an example"))
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        if fhir::validate::validate_resource(&sent)
            .iter()
            .any(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
        {
            rejected_by_validator.push(name);
            continue;
        }
        let ty = sent["resourceType"]
            .as_str()
            .expect("a resourceType")
            .to_owned();
        let written = match sent["id"].as_str() {
            Some(id) => repo.update(&who(), &ty, id, sent.clone(), None).await,
            None => repo.create(&who(), &ty, sent.clone(), None).await,
        };
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!(
                    "{name}: write answered {}: {:?}",
                    e.status(),
                    e.issues()
                ));
                continue;
            }
        };
        let read = match repo.read(&who(), &ty, &written.resource.id).await {
            Ok(r) => r.resource,
            Err(e) => {
                failures.push(format!("{name}: read answered {}", e.status()));
                continue;
            }
        };
        let mut expected = without_meta(sent.clone());
        if sent.get("id").is_none() {
            expected["id"] = Value::String(written.resource.id.clone());
        }
        if !same(&without_meta(read.clone()), &expected) {
            failures.push(format!("{name}: read back differs from what was sent"));
            continue;
        }
        // What the client put in meta (profiles, tags, security labels) is kept.
        for key in ["profile", "tag"] {
            if !sent["meta"][key].is_null() && read["meta"][key] != sent["meta"][key] {
                failures.push(format!("{name}: meta.{key} was not kept"));
            }
        }
        // Every security label sent is kept, beside those labelling on intake adds (a clinical
        // resource always gets a confidentiality code).
        let stored_labels = read["meta"]["security"].as_array();
        for label in sent["meta"]["security"].as_array().into_iter().flatten() {
            if !stored_labels.is_some_and(|s| s.contains(label)) {
                failures.push(format!("{name}: meta.security {label} was not kept"));
            }
        }
        stored += 1;
    }
    println!(
        "{stored} examples stored and read back; the validator rejected {rejected_by_validator:?}"
    );
    assert!(
        failures.is_empty(),
        "{} examples failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The validator's own corpus test names each example it rejects and why; here only how many.
    assert!(
        rejected_by_validator.len() <= 10,
        "the validator rejects {} examples: {rejected_by_validator:?}",
        rejected_by_validator.len()
    );
    assert!(stored >= 900, "only {stored} examples were stored");
}
