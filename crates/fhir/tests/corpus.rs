//! The conformance corpus: every official FHIR R4 example and every US Core 7.0.0 example is accepted by
//! the validator, except the few that the specification itself gets wrong, listed in [`ERRATA`] with the
//! element that is wrong and why. The examples are read from `../shared/data` (outside the repository);
//! without them the test says so and passes without checking anything.

use std::path::{Path, PathBuf};

use fhir::validate::validate_resource;
use serde_json::Value;

/// An example the specification publishes that does not conform to the specification itself.
struct Erratum {
    /// The file name, in `fhir-r4/examples/` or `us-core/`.
    file: &'static str,
    /// How many errors the validator reports for it; every one is at a location ending in `location`.
    errors: usize,
    location: &'static str,
    /// Which element is wrong, per which rule of the specification.
    reason: &'static str,
}

const ERRATA: &[Erratum] = &[
    Erratum {
        file: "Questionnaire-qs1.json",
        errors: 32,
        location: ".linkId",
        reason: "32 of its display items have no linkId, but Questionnaire.item.linkId is 1..1",
    },
    Erratum {
        file: "DeviceMetric-example.json",
        errors: 1,
        location: "DeviceMetric.parent.reference",
        reason: "parent is DeviceDefinition/dc102, but DeviceMetric.parent is Reference(Device)",
    },
    Erratum {
        file: "DeviceUseStatement-example.json",
        errors: 1,
        location: "DeviceUseStatement.reasonReference[0].reference",
        reason: "reasonReference is Procedure/example, but DeviceUseStatement.reasonReference is \
                 Reference(Condition | Observation | DiagnosticReport | DocumentReference | Media)",
    },
    Erratum {
        file: "MedicationRequest-medrx0301.json",
        errors: 1,
        location: "MedicationRequest.dispenseRequest.performer.reference",
        reason: "dispenseRequest.performer is Practitioner/f001, but MedicationRequest.dispenseRequest.performer \
                 is Reference(Organization)",
    },
    Erratum {
        file: "Observation-clinical-gender.json",
        errors: 1,
        location: "Observation.performer[0].reference",
        reason: "performer is Encounter/example, but Observation.performer is Reference(Practitioner | \
                 PractitionerRole | Organization | CareTeam | Patient | RelatedPerson)",
    },
    Erratum {
        file: "diagnosticreport-cbc.json",
        errors: 1,
        location: "DiagnosticReport.text.div",
        reason: "its text has a status but no div, but Narrative.div is 1..1 (US Core 7.0.0)",
    },
];

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    dir.is_dir().then_some(dir)
}

/// Validates every `.json` file of `dir`; returns how many resources were checked and the problems of the
/// files that are not errata (errata are checked to fail exactly as listed).
fn check_dir(dir: &Path, failures: &mut Vec<String>) -> usize {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut count = 0;
    for path in names {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("read example");
        let resource: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}: not JSON: {e}"));
                continue;
            }
        };
        if resource.get("resourceType").is_none() {
            // Not a resource (the corpus test counts resources only).
            continue;
        }
        count += 1;
        let errors: Vec<_> = validate_resource(&resource)
            .into_iter()
            .filter(|i| i.is_error())
            .collect();
        match ERRATA.iter().find(|e| e.file == file) {
            Some(erratum)
                if errors.len() == erratum.errors
                    && errors.iter().all(|i| {
                        i.expression
                            .first()
                            .is_some_and(|l| l.ends_with(erratum.location))
                    }) => {}
            Some(erratum) => failures.push(format!(
                "{file} is listed as an erratum ({}), expected {} errors at {}, but the validator reports {errors:#?}",
                erratum.reason, erratum.errors, erratum.location
            )),
            None if errors.is_empty() => {}
            None => failures.push(format!("{file}: {errors:#?}")),
        }
    }
    count
}

#[test]
fn every_official_example_is_accepted() {
    let Some(data) = data_dir() else {
        eprintln!(
            "SKIPPED: ../shared/data (the FHIR R4 and US Core examples) is not next to the repository"
        );
        return;
    };
    let mut failures = Vec::new();
    let r4 = check_dir(&data.join("fhir-r4/examples"), &mut failures);
    let us_core = check_dir(&data.join("us-core"), &mut failures);
    eprintln!(
        "validated {r4} R4 examples and {us_core} US Core examples; {} listed as errata of the specification",
        ERRATA.len()
    );
    assert!(
        failures.is_empty(),
        "{} examples fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!((r4, us_core), (706, 214));
}

/// The Synthea patients the benchmarks import (`../shared/data/synthea`, transaction bundles) are
/// accepted too: every resource of every bundle.
#[test]
fn every_synthea_resource_is_accepted() {
    use std::io::Read;
    let Some(data) = data_dir() else {
        eprintln!("SKIPPED: ../shared/data (the Synthea bundles) is not next to the repository");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("synthea"))
        .expect("synthea directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    let (mut resources, mut failures) = (0, Vec::new());
    for path in &files {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open bundle"))
            .read_to_string(&mut text)
            .expect("gunzip bundle");
        let bundle: Value = serde_json::from_str(&text).expect("bundle JSON");
        // The bundle as a whole (a transaction), which validates every entry's resource.
        let errors: Vec<_> = validate_resource(&bundle)
            .into_iter()
            .filter(|i| i.is_error())
            .collect();
        if !errors.is_empty() {
            failures.push(format!("{}: {errors:#?}", path.display()));
        }
        resources += bundle["entry"].as_array().map_or(0, Vec::len);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(resources, 45_720);
}

/// The decision point finds the patients a resource is about from its JSON text, parsing only the
/// elements the compartment looks at: on every official example (and every resource of the Synthea
/// bundles) that gives exactly the patients a full parse gives. A resource whose patients were
/// missed would look like directory data to the decision point.
#[test]
fn compartments_from_the_text_match_compartments_from_the_whole_resource() {
    use fhir::search::extract::{patient_compartments, patient_compartments_of_json};
    use std::io::Read;
    let Some(data) = data_dir() else {
        eprintln!("SKIPPED: ../shared/data (the FHIR R4 examples) is not next to the repository");
        return;
    };
    let mut resources: Vec<Value> = Vec::new();
    for dir in [data.join("fhir-r4/examples"), data.join("us-core")] {
        for entry in std::fs::read_dir(&dir).expect("examples") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&path).expect("read example");
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    if let Some(entries) = value["entry"].as_array() {
                        resources.extend(entries.iter().map(|e| e["resource"].clone()));
                    }
                    resources.push(value);
                }
            }
        }
    }
    for entry in std::fs::read_dir(data.join("synthea")).expect("synthea") {
        let path = entry.expect("directory entry").path();
        if path.to_string_lossy().ends_with(".json.gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("open bundle"))
                .read_to_string(&mut text)
                .expect("gunzip bundle");
            let bundle: Value = serde_json::from_str(&text).expect("bundle JSON");
            resources.extend(
                bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone()),
            );
        }
    }
    let mut with_patients = 0;
    for resource in resources.iter().filter(|r| r["resourceType"].is_string()) {
        let full = patient_compartments(resource);
        let partial = patient_compartments_of_json(&resource.to_string()).expect("a resource");
        assert_eq!(partial, full, "{}", resource["resourceType"]);
        with_patients += usize::from(!full.is_empty());
    }
    // 939 (the Synthea bundles refer to their patients by urn:uuid, which is in no compartment
    // until the server resolves it).
    assert!(with_patients >= 900, "{with_patients}");
}
