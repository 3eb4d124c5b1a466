//! Index extraction: the rows a resource gets for the searches users run, from the official R4 examples
//! and from small synthetic resources for the shapes the examples do not show.

use std::path::Path;

use fhir::search::datetime::parse_range;
use fhir::search::extract::{index_entries, patient_compartments};
use fhir::search::{CompositePart, IndexEntry, IndexValue, TokenValue};
use serde_json::{json, Value};

/// `../shared/data` (outside the repository), or `None` after saying that the test is skipped.
fn data_dir() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/data (the official examples) is missing");
        None
    }
}

/// An official R4 example, stamped; `None` (and the test skips) without the shared data.
fn example(name: &str) -> Option<Value> {
    let path = data_dir()?.join("fhir-r4/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut resource: Value = serde_json::from_str(&text).expect("example JSON");
    stamp(&mut resource);
    Some(resource)
}

/// What the repository does before extraction: `meta.lastUpdated` is always set.
fn stamp(resource: &mut Value) {
    resource["meta"]["lastUpdated"] = json!("2024-05-01T12:00:00.000Z");
}

fn rows(resource: &Value, param: &str) -> Vec<IndexValue> {
    index_entries(resource)
        .into_iter()
        .filter(|e| e.param == param && e.composite.is_none())
        .map(|e| e.value)
        .collect()
}

/// The rows of `param` are exactly `expected`, in any order.
fn check(resource: &Value, param: &str, expected: Vec<IndexValue>) {
    let mut got = rows(resource, param);
    let mut expected = expected;
    let key = |v: &IndexValue| format!("{v:?}");
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected, "rows of {param}");
}

fn string(exact: &str, normalized: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalized.into(),
        exact: exact.into(),
    }
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token(TokenValue {
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        text: text.map(str::to_string),
    })
}

fn date(value: &str) -> IndexValue {
    let (low, high) = parse_range(value).expect("valid date in the test");
    IndexValue::Date { low, high }
}

fn reference(
    ty: Option<&str>,
    id: Option<&str>,
    url: Option<&str>,
    version: Option<&str>,
) -> IndexValue {
    IndexValue::Reference {
        target_type: ty.map(str::to_string),
        target_id: id.map(str::to_string),
        url: url.map(str::to_string),
        version: version.map(str::to_string),
    }
}

fn quantity(value: f64, unit: &str, code: &str) -> IndexValue {
    IndexValue::Quantity {
        system: Some("http://unitsofmeasure.org".into()),
        code: Some(code.into()),
        unit: Some(unit.into()),
        low: value,
        high: value,
    }
}

#[test]
fn patient_example_is_found_by_identifier_name_birthdate_and_more() {
    let Some(patient) = example("Patient-example.json") else {
        return;
    };
    check(
        &patient,
        "identifier",
        vec![
            token(Some("urn:oid:1.2.36.146.595.217.0.1"), Some("12345"), None),
            IndexValue::IdentifierOfType {
                type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                type_code: "MR".into(),
                value: "12345".into(),
            },
        ],
    );
    check(
        &patient,
        "name",
        vec![
            string("Chalmers", "chalmers"),
            string("Peter", "peter"),
            string("James", "james"),
            string("Jim", "jim"),
            string("Windsor", "windsor"),
        ],
    );
    check(
        &patient,
        "family",
        vec![string("Chalmers", "chalmers"), string("Windsor", "windsor")],
    );
    check(&patient, "birthdate", vec![date("1974-12-25")]);
    check(&patient, "gender", vec![token(None, Some("male"), None)]);
    check(
        &patient,
        "phone",
        vec![
            token(Some("phone"), Some("(03) 5555 6473"), None),
            token(Some("phone"), Some("(03) 3410 5613"), None),
            token(Some("phone"), Some("(03) 5555 8834"), None),
        ],
    );
    check(
        &patient,
        "address-city",
        vec![string("PleasantVille", "pleasantville")],
    );
    check(&patient, "address-postalcode", vec![string("3999", "3999")]);
    check(
        &patient,
        "organization",
        vec![reference(Some("Organization"), Some("1"), None, None)],
    );
    check(&patient, "_id", vec![token(None, Some("example"), None)]);
    check(
        &patient,
        "_lastUpdated",
        vec![date("2024-05-01T12:00:00.000Z")],
    );
    assert_eq!(patient_compartments(&patient), vec!["example".to_string()]);
}

#[test]
fn observation_with_a_quantity() {
    let Some(observation) = example("Observation-example.json") else {
        return;
    };
    check(
        &observation,
        "value-quantity",
        vec![quantity(185.0, "lbs", "[lb_av]")],
    );
    check(
        &observation,
        "subject",
        vec![reference(Some("Patient"), Some("example"), None, None)],
    );
    check(
        &observation,
        "patient",
        vec![reference(Some("Patient"), Some("example"), None, None)],
    );
    check(&observation, "date", vec![date("2016-03-28")]);
    check(
        &observation,
        "status",
        vec![token(None, Some("final"), None)],
    );
    check(
        &observation,
        "code",
        vec![
            token(
                Some("http://loinc.org"),
                Some("29463-7"),
                Some("body weight"),
            ),
            token(
                Some("http://loinc.org"),
                Some("3141-9"),
                Some("body weight measured"),
            ),
            token(
                Some("http://snomed.info/sct"),
                Some("27113001"),
                Some("body weight"),
            ),
            token(
                Some("http://acme.org/devices/clinical-codes"),
                Some("body-weight"),
                Some("body weight"),
            ),
        ],
    );
    assert_eq!(
        patient_compartments(&observation),
        vec!["example".to_string()]
    );
}

#[test]
fn blood_pressure_components_pair_code_and_value() {
    let Some(observation) = example("Observation-blood-pressure.json") else {
        return;
    };
    let parts: Vec<IndexEntry> = index_entries(&observation)
        .into_iter()
        .filter(|e| e.param == "component-code-value-quantity")
        .collect();
    let part = |group, component| -> Vec<&IndexValue> {
        parts
            .iter()
            .filter(|e| e.composite == Some(CompositePart { group, component }))
            .map(|e| &e.value)
            .collect()
    };
    assert!(part(0, 0).contains(&&token(
        Some("http://loinc.org"),
        Some("8480-6"),
        Some("systolic blood pressure")
    )));
    assert_eq!(part(0, 1), vec![&quantity(107.0, "mmHg", "mm[Hg]")]);
    assert_eq!(
        part(1, 0),
        vec![&token(
            Some("http://loinc.org"),
            Some("8462-4"),
            Some("diastolic blood pressure")
        )]
    );
    assert_eq!(part(1, 1), vec![&quantity(60.0, "mmHg", "mm[Hg]")]);
    assert!(parts
        .iter()
        .all(|e| e.composite.is_some_and(|p| p.group < 2)));
    // The panel itself has no value, so `code-value-quantity` (over the Observation) has no group.
    assert!(index_entries(&observation)
        .iter()
        .all(|e| e.param != "code-value-quantity"));
    // The concept's own text is searchable with `:text`.
    assert!(rows(&observation, "code").contains(&token(
        None,
        None,
        Some("blood pressure systolic diastolic")
    )));
}

#[test]
fn references_in_every_form() {
    let mut observation = json!({
        "resourceType": "Observation",
        "id": "refs",
        "status": "final",
        "code": { "text": "x" },
        "subject": { "reference": "http://ehr.example/fhir/Patient/42" },
        "performer": [
            { "reference": "Practitioner/7/_history/3" },
            { "reference": "#contained-one" },
            { "reference": "urn:uuid:0b7a4e57-8d6c-4c2a-9a43-0e4d3f8c2a11" },
            { "identifier": { "system": "http://npi.example", "value": "999" } }
        ],
        "hasMember": [{ "reference": "Observation/other" }]
    });
    stamp(&mut observation);
    check(
        &observation,
        "subject",
        vec![reference(
            Some("Patient"),
            Some("42"),
            Some("http://ehr.example/fhir/Patient/42"),
            None,
        )],
    );
    check(
        &observation,
        "performer",
        vec![
            reference(Some("Practitioner"), Some("7"), None, None),
            reference(
                None,
                None,
                Some("urn:uuid:0b7a4e57-8d6c-4c2a-9a43-0e4d3f8c2a11"),
                None,
            ),
            token(Some("http://npi.example"), Some("999"), None),
        ],
    );
    assert_eq!(patient_compartments(&observation), vec!["42".to_string()]);

    let mut response = json!({
        "resourceType": "QuestionnaireResponse",
        "id": "qr",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/phq9|1.0"
    });
    stamp(&mut response);
    check(
        &response,
        "questionnaire",
        vec![reference(
            Some("Questionnaire"),
            Some("phq9"),
            Some("http://example.org/Questionnaire/phq9"),
            Some("1.0"),
        )],
    );
}

#[test]
fn periods_timings_ranges_money_and_comparators() {
    let mut encounter = json!({
        "resourceType": "Encounter", "id": "e", "status": "in-progress", "class": { "code": "AMB" },
        "period": { "start": "2024-03-05T10:00:00Z" }
    });
    stamp(&mut encounter);
    let (low, _) = parse_range("2024-03-05T10:00:00Z").expect("valid");
    check(
        &encounter,
        "date",
        vec![IndexValue::Date {
            low,
            high: i64::MAX,
        }],
    );

    let mut plan = json!({
        "resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
        "subject": { "reference": "Patient/p1" },
        "activity": [{ "detail": { "status": "scheduled", "scheduledTiming": {
            "event": ["2024-03-07", "2024-03-01T08:00:00Z"],
            "repeat": { "boundsPeriod": { "start": "2024-02-20", "end": "2024-03-10" } }
        } } }]
    });
    stamp(&mut plan);
    let (low, _) = parse_range("2024-02-20").expect("valid");
    let (_, high) = parse_range("2024-03-10").expect("valid");
    check(&plan, "activity-date", vec![IndexValue::Date { low, high }]);

    let mut risk = json!({
        "resourceType": "RiskAssessment", "id": "r", "status": "final", "subject": { "reference": "Patient/p1" },
        "prediction": [{ "probabilityDecimal": 0.25 }, { "probabilityRange": { "low": { "value": 0.1 }, "high": { "value": 0.3 } } }]
    });
    stamp(&mut risk);
    check(
        &risk,
        "probability",
        vec![
            IndexValue::Number {
                low: 0.25,
                high: 0.25,
            },
            IndexValue::Number {
                low: 0.1,
                high: 0.3,
            },
        ],
    );

    let mut invoice = json!({
        "resourceType": "Invoice", "id": "i", "status": "issued",
        "totalGross": { "value": 120.5, "currency": "EUR" }
    });
    stamp(&mut invoice);
    check(
        &invoice,
        "totalgross",
        vec![IndexValue::Quantity {
            system: Some("urn:iso:std:iso:4217".into()),
            code: Some("EUR".into()),
            unit: None,
            low: 120.5,
            high: 120.5,
        }],
    );

    let mut below = json!({
        "resourceType": "Observation", "id": "lt", "status": "final", "code": { "text": "x" },
        "valueQuantity": { "value": 5, "comparator": "<", "system": "http://unitsofmeasure.org", "code": "mg" }
    });
    stamp(&mut below);
    check(
        &below,
        "value-quantity",
        vec![IndexValue::Quantity {
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("mg".into()),
            unit: None,
            low: f64::MIN,
            high: 5.0,
        }],
    );
}

#[test]
fn meta_gives_tags_profiles_security_and_source() {
    let mut patient = json!({
        "resourceType": "Patient", "id": "m",
        "meta": {
            "tag": [{ "system": "http://example.org/tags", "code": "vip", "display": "Very Important" }],
            "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R" }],
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "source": "http://ehr.example/feed"
        }
    });
    stamp(&mut patient);
    check(
        &patient,
        "_tag",
        vec![token(
            Some("http://example.org/tags"),
            Some("vip"),
            Some("very important"),
        )],
    );
    check(
        &patient,
        "_security",
        vec![token(
            Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
            Some("R"),
            None,
        )],
    );
    check(
        &patient,
        "_profile",
        vec![IndexValue::Uri(
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient".into(),
        )],
    );
    check(
        &patient,
        "_source",
        vec![IndexValue::Uri("http://ehr.example/feed".into())],
    );
}

#[test]
fn every_official_example_extracts_without_panicking() {
    let Some(data) = data_dir() else {
        return;
    };
    let dir = data.join("fhir-r4/examples");
    let mut count = 0;
    let mut rows_total = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("dir entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(mut resource) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        stamp(&mut resource);
        rows_total += index_entries(&resource).len();
        let _ = patient_compartments(&resource);
        count += 1;
    }
    assert!(count > 700, "{count} examples");
    // Every example has at least `_id` and `_lastUpdated`; most have many more.
    assert!(
        rows_total > count * 10,
        "{rows_total} rows for {count} examples"
    );
}

/// The Synthea bundles' resources, with `meta.lastUpdated` set: the first `limit` patient files.
fn synthea(limit: usize) -> Option<Vec<Value>> {
    use std::io::Read;
    let dir = data_dir()?.join("synthea");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("synthea folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    let mut resources = Vec::new();
    for path in files.into_iter().take(limit) {
        let mut text = String::new();
        let file = std::fs::File::open(&path).expect("bundle file");
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .expect("gzip");
        let bundle: Value = serde_json::from_str(&text).expect("bundle JSON");
        // As the repository does for a transaction: `urn:uuid` references become `Type/id`.
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let local: std::collections::HashMap<String, String> = entries
            .iter()
            .filter_map(|e| {
                let r = &e["resource"];
                Some((
                    e["fullUrl"].as_str()?.to_string(),
                    format!("{}/{}", r["resourceType"].as_str()?, r["id"].as_str()?),
                ))
            })
            .collect();
        for entry in entries {
            let mut resource = entry["resource"].clone();
            rewrite_references(&mut resource, &local);
            stamp(&mut resource);
            resources.push(resource);
        }
    }
    Some(resources)
}

fn rewrite_references(value: &mut Value, local: &std::collections::HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                match v {
                    Value::String(s) if key == "reference" => {
                        if let Some(relative) = local.get(s.as_str()) {
                            *s = relative.clone();
                        }
                    }
                    _ => rewrite_references(v, local),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, local)),
        _ => {}
    }
}

/// Synthea resources get the rows their searches need; prints the extraction rate. Runs on a few
/// bundles by default; `SEARCH_EXTRACT_BENCH=1 cargo test --release -p fhir --test search_extract
/// synthea -- --nocapture` runs every bundle and is the number to compare with the write-path target.
#[test]
fn synthea_extraction_rate() {
    let all = std::env::var_os("SEARCH_EXTRACT_BENCH").is_some();
    let Some(resources) = synthea(if all { usize::MAX } else { 4 }) else {
        return;
    };
    assert!(resources.len() > 100, "{} resources", resources.len());
    let start = std::time::Instant::now();
    let mut rows = 0;
    let mut compartments = 0;
    for resource in &resources {
        let entries = index_entries(resource);
        let ty = resource["resourceType"].as_str().unwrap_or_default();
        let has = |param: &str| entries.iter().any(|e| e.param == param);
        assert!(has("_id") && has("_lastUpdated"), "{ty}");
        if matches!(
            ty,
            "Observation" | "Condition" | "Encounter" | "Procedure" | "MedicationRequest"
        ) {
            assert!(
                has("patient") && has("code") || ty == "Encounter" && has("patient"),
                "{ty} rows: {entries:?}"
            );
        }
        rows += entries.len();
        compartments += patient_compartments(resource).len();
    }
    let elapsed = start.elapsed();
    println!(
        "extracted {} resources ({rows} rows, {compartments} compartment links) in {elapsed:?}: {:.0} resources/s",
        resources.len(),
        resources.len() as f64 / elapsed.as_secs_f64()
    );
}
