//! The fuzz targets' inputs as plain tests, so that a machine without a nightly toolchain still runs them:
//! every committed seed (`fuzz/seeds/<target>/`) and every input that once crashed a target
//! (`fuzz/regressions/<target>/`) goes through the same calls as the target, which must not panic and must
//! finish quickly. The harnesses mirror `fuzz/fuzz_targets/*.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("read input");
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

/// `fuzz/fuzz_targets/validate.rs`.
fn validate(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = fhir::validate::validate_resource(&value);
    }
}

/// `fuzz/fuzz_targets/search_parse.rs`.
fn search_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ty, query) = text.split_once('\n').unwrap_or(("Patient", text));
    let params: Vec<(String, String)> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect();
    let ty = if ty.is_empty() { None } else { Some(ty) };
    for strict in [false, true] {
        let _ = fhir::search::parse::parse(ty, &params, strict);
    }
}

/// `fuzz/fuzz_targets/fhirpath.rs` (with a smaller resource: what matters is that nothing panics).
fn fhirpath_expression(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let patient = serde_json::json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"use": "official", "family": "Doe", "given": ["Jan", "Piet"]}],
        "birthDate": "1970-01-01",
        "multipleBirthInteger": 2,
        "generalPractitioner": [{"reference": "#pr"}],
        "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Who"}]}]
    });
    if let Ok(expression) = fhirpath::parse(text) {
        let _ = expression.evaluate(&patient, &fhir::model::MODEL);
    }
}

fn run(target: &str, harness: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    for (path, bytes) in &inputs {
        let start = Instant::now();
        harness(bytes);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{} took {:?}",
            path.display(),
            start.elapsed()
        );
    }
    eprintln!("{target}: {} inputs", inputs.len());
}

#[test]
fn validate_seeds_and_regressions() {
    run("validate", validate);
}

#[test]
fn search_parse_seeds_and_regressions() {
    run("search_parse", search_parse);
}

#[test]
fn fhirpath_seeds_and_regressions() {
    run("fhirpath", fhirpath_expression);
    // The seeds are expressions the engine supports, so that the fuzzer starts deep inside it.
    for (path, bytes) in inputs("fhirpath") {
        if !path.to_string_lossy().contains("regressions") {
            let text = String::from_utf8(bytes).expect("UTF-8 seed");
            assert!(fhirpath::parse(&text).is_ok(), "{}: {text}", path.display());
        }
    }
}

/// The seeds are valid resources, so that the fuzzer starts from inputs that go deep into the validator.
#[test]
fn validate_seeds_are_valid_resources() {
    for (path, bytes) in inputs("validate") {
        if path.to_string_lossy().contains("regressions") {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("seed JSON");
        let issues = fhir::validate::validate_resource(&value);
        assert!(issues.is_empty(), "{}: {issues:#?}", path.display());
    }
}
