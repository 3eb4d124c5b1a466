//! The generated tables against the official definitions they were generated from (read here from
//! `../shared/data/fhir-r4/definitions`, outside the repository; without them the test says so and checks
//! nothing). This checks the tables' content independently of the generator: every resource type and
//! data type with its elements, every search parameter for every base it names, the required bindings
//! and the Patient compartment.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use fhir::definitions::{self, ParamType, TypeKind, UNBOUNDED};
use serde_json::Value;

fn definitions_dir() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fhir-r4/definitions");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is missing, so the generated tables cannot be compared with the definitions",
            dir.display()
        );
        None
    }
}

fn load(dir: &Path, name: &str) -> Value {
    let file = std::fs::File::open(dir.join(name)).expect("open definitions");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip definitions");
    serde_json::from_str(&text).expect("parse definitions")
}

fn resources<'a>(bundle: &'a Value, resource_type: &'a str) -> impl Iterator<Item = &'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(move |r| r["resourceType"] == resource_type)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn all_1378_search_parameters_are_in_the_tables_for_every_base() {
    let Some(dir) = definitions_dir() else { return };
    let bundle = load(&dir, "search-parameters.json.gz");
    let params: Vec<&Value> = resources(&bundle, "SearchParameter").collect();
    assert_eq!(params.len(), 1378, "SearchParameters in the definitions");

    // The tables hold one row per (base, parameter): a parameter shared by several types (`clinical-patient`
    // has 32 bases) is listed under each, with its expression reduced to the part for that type.
    let mut rows = 0;
    let mut ids = BTreeSet::new();
    for p in &params {
        let id = p["id"].as_str().unwrap();
        let code = p["code"].as_str().unwrap();
        let kind = match p["type"].as_str().unwrap() {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            other => panic!("{id}: type {other}"),
        };
        let mut targets = strings(&p["target"]);
        targets.sort_unstable();
        for base in strings(&p["base"]) {
            let row = if base == "Resource" || base == "DomainResource" {
                definitions::common_search_params()
                    .iter()
                    .find(|r| r.code == code)
            } else {
                definitions::search_params(base)
                    .iter()
                    .find(|r| r.code == code)
            };
            let row = row.unwrap_or_else(|| panic!("{base}.{code} ({id}) is missing"));
            assert_eq!(row.id, id, "{base}.{code}");
            assert_eq!(row.kind, kind, "{base}.{code}");
            assert_eq!(row.targets, targets, "{base}.{code}");
            assert_eq!(row.comparators, strings(&p["comparator"]), "{base}.{code}");
            assert_eq!(
                row.components.len(),
                p["component"].as_array().map_or(0, Vec::len),
                "{base}.{code}"
            );
            let expression = p["expression"].as_str().unwrap_or_default();
            // The reduced expression is made of whole `|` parts of the official one.
            for part in row.expression.split(" | ") {
                assert!(
                    expression.contains(part),
                    "{base}.{code}: {part:?} is not part of {expression:?}"
                );
            }
            assert_eq!(
                row.expression.is_empty(),
                expression.is_empty(),
                "{base}.{code}"
            );
            rows += 1;
            ids.insert(id);
        }
    }
    let table_rows = definitions::common_search_params().len()
        + definitions::resource_types()
            .iter()
            .map(|t| definitions::search_params(t).len())
            .sum::<usize>();
    assert_eq!((ids.len(), rows), (1378, 1709));
    assert_eq!(
        table_rows, rows,
        "the tables hold a row that no definition gives"
    );
}

#[test]
fn every_resource_type_and_data_type_is_in_the_tables_with_its_elements() {
    let Some(dir) = definitions_dir() else { return };
    let value_sets_shipped: BTreeSet<&str> =
        definitions::value_sets().iter().map(|v| v.url).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut required_bindings = (0, 0);
    let mut left_out = Vec::new();
    for file in ["profiles-types.json.gz", "profiles-resources.json.gz"] {
        let bundle = load(&dir, file);
        for sd in resources(&bundle, "StructureDefinition") {
            let kind = match sd["kind"].as_str().unwrap() {
                "primitive-type" => TypeKind::Primitive,
                "complex-type" => TypeKind::Complex,
                "resource" => TypeKind::Resource,
                _ => continue, // the logical model of R4's `Definition` patterns
            };
            let name = sd["type"].as_str().unwrap();
            if sd["fhirVersion"] != "4.0.1" {
                // A later version's resource in the package: not R4, not in the tables.
                assert!(definitions::type_def(name).is_none(), "{name}");
                left_out.push(format!(
                    "{name} ({})",
                    sd["fhirVersion"].as_str().unwrap_or("?")
                ));
                continue;
            }
            if sd["derivation"] == "constraint" {
                // SimpleQuantity and MoneyQuantity are profiles of Quantity, not types.
                assert!(definitions::type_def(sd["id"].as_str().unwrap()).is_none());
                continue;
            }
            let td = definitions::type_def(name).unwrap_or_else(|| panic!("{name} is missing"));
            assert_eq!(td.kind, kind, "{name}");
            assert_eq!(td.is_abstract, sd["abstract"] == true, "{name}");
            if kind == TypeKind::Resource && sd["abstract"] == false {
                assert!(definitions::is_resource_type(name), "{name}");
            }
            *counts
                .entry(match kind {
                    TypeKind::Primitive => "primitive types",
                    TypeKind::Complex => "complex types",
                    TypeKind::Resource => {
                        "resource types (with the abstract Resource and DomainResource)"
                    }
                })
                .or_default() += 1;

            for el in sd["snapshot"]["element"].as_array().unwrap().iter().skip(1) {
                let path = el["path"].as_str().unwrap();
                let (parent, last) = path.rsplit_once('.').unwrap();
                if el.get("isModifier").is_none() {
                    // The package's own additions (see xtask): not R4, not in the tables.
                    let (el_name, _) = last.split_once('[').unwrap_or((last, ""));
                    assert!(
                        definitions::type_def(parent)
                            .and_then(|t| t.element(el_name))
                            .is_none(),
                        "{path}"
                    );
                    left_out.push(path.to_string());
                    continue;
                }
                if kind == TypeKind::Primitive && last == "value" {
                    continue;
                }
                let (el_name, choice) = match last.strip_suffix("[x]") {
                    Some(n) => (n, true),
                    None => (last, false),
                };
                let parent_def = definitions::type_def(parent)
                    .unwrap_or_else(|| panic!("{parent} (backbone element) is missing"));
                let e = parent_def
                    .element(el_name)
                    .unwrap_or_else(|| panic!("{path} is missing"));
                let max = match el["max"].as_str().unwrap() {
                    "*" => UNBOUNDED,
                    m => m.parse().unwrap(),
                };
                assert_eq!(
                    (u64::from(e.min), e.max, e.choice),
                    (el["min"].as_u64().unwrap(), max, choice),
                    "{path}"
                );
                if el.get("contentReference").is_none() && !e.types[0].contains('.') {
                    let official: BTreeSet<&str> = el["type"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["code"].as_str().unwrap())
                        .filter(|c| !c.starts_with("http://hl7.org/fhirpath/"))
                        .collect();
                    let ours: BTreeSet<&str> = e.types.iter().copied().collect();
                    // A resource's id is typed `id` in the tables although R4 types it as a string.
                    let resource_id = last == "id" && parent == name;
                    if !official.is_empty() && !resource_id {
                        assert_eq!(ours, official, "{path}");
                    }
                }
                let mut targets: Vec<&str> = el["type"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["code"] == "Reference")
                    .flat_map(|t| strings(&t["targetProfile"]))
                    .filter_map(|p| p.strip_prefix("http://hl7.org/fhir/StructureDefinition/"))
                    .filter(|t| definitions::is_resource_type(t) || *t == "Resource")
                    .collect();
                targets.sort_unstable();
                targets.dedup();
                if targets.contains(&"Resource") {
                    targets.clear();
                }
                assert_eq!(e.targets, targets, "{path}");
                assert_eq!(e.summary, el["isSummary"] == true, "{path}");
                if el["binding"]["strength"] == "required" {
                    let url = el["binding"]["valueSet"].as_str().unwrap();
                    let url = url.split('|').next().unwrap();
                    required_bindings.0 += 1;
                    if value_sets_shipped.contains(url) {
                        assert_eq!(e.binding, Some(url), "{path}");
                        required_bindings.1 += 1;
                    } else {
                        assert_eq!(e.binding, None, "{path}");
                    }
                }
            }
        }
    }
    eprintln!("{counts:?}; required bindings: {required_bindings:?} (all, checked)");
    // The definitions come as packaged by a FHIR server vendor, who added these; R4 has none of them.
    assert_eq!(
        left_out,
        [
            "Meta.project",
            "Meta.author",
            "Meta.onBehalfOf",
            "Meta.account",
            "Meta.accounts",
            "Meta.compartment",
            "Meta.deleted",
            "ObservationDefinition.publisher",
            "SubscriptionStatus (4.3.0)",
        ]
    );
    assert_eq!(
        definitions::resource_types().len(),
        146,
        "resource types of R4"
    );
    assert_eq!(counts["primitive types"], 20);
    // These elements have required bindings; most name value sets that ship in the definitions.
    assert_eq!(required_bindings, (366, 348));
}

#[test]
fn the_patient_compartment_is_the_official_one() {
    let Some(dir) = definitions_dir() else { return };
    let compartment = load(&dir, "compartmentdefinition-patient.json.gz");
    let mut members = 0;
    for r in compartment["resource"].as_array().unwrap() {
        let ty = r["code"].as_str().unwrap();
        let params = strings(&r["param"]);
        assert_eq!(definitions::patient_compartment_params(ty), params, "{ty}");
        for p in &params {
            assert!(
                definitions::search_param(ty, p).is_some(),
                "{ty}.{p} is in the compartment but not a search parameter"
            );
        }
        members += usize::from(!params.is_empty());
    }
    assert_eq!(members, 67, "resource types in the Patient compartment");
}
