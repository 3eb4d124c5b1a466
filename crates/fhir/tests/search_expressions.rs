//! Every FHIRPath expression of every R4 search parameter parses with the engine, and evaluates without
//! an error on every official R4 and US Core example of its type (and on the resources inside the
//! examples' Bundles and `contained`), with the product's type model. The examples are read from
//! `../shared/data`; without them only the parsing is checked, and the test says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fhir::definitions::{self, ParamType, SearchParam};
use fhir::model::MODEL;
use fhirpath::Expression;
use serde_json::Value;

/// Every (resource type, parameter) row of the tables with its parsed expression and components.
struct Compiled {
    param: &'static SearchParam,
    expression: Expression,
    components: Vec<Expression>,
}

fn compile_all() -> BTreeMap<&'static str, Vec<Compiled>> {
    let mut out = BTreeMap::new();
    let mut failures = Vec::new();
    let mut functions = BTreeSet::new();
    for ty in definitions::resource_types() {
        let mut compiled = Vec::new();
        for param in definitions::search_params(ty)
            .iter()
            .chain(definitions::common_search_params())
        {
            if param.expression.is_empty() {
                continue;
            }
            let mut parse = |source: &str| match fhirpath::parse(source) {
                Ok(e) => Some(e),
                Err(e) => {
                    failures.push(format!("{ty}.{} `{source}`: {e}", param.code));
                    None
                }
            };
            let expression = parse(param.expression);
            let components: Vec<Option<Expression>> = param
                .components
                .iter()
                .map(|c| parse(c.expression))
                .collect();
            for source in std::iter::once(param.expression)
                .chain(param.components.iter().map(|c| c.expression))
            {
                functions.extend(called_functions(source));
            }
            if let (Some(expression), Some(components)) = (
                expression,
                components.into_iter().collect::<Option<Vec<_>>>(),
            ) {
                compiled.push(Compiled {
                    param,
                    expression,
                    components,
                });
            }
        }
        out.insert(*ty, compiled);
    }
    assert!(
        failures.is_empty(),
        "expressions that do not parse:\n{}",
        failures.join("\n")
    );
    let unsupported: Vec<&String> = functions
        .iter()
        .filter(|f| !fhirpath::SUPPORTED_FUNCTIONS.contains(&f.as_str()))
        .collect();
    assert!(
        unsupported.is_empty(),
        "functions the engine lacks: {unsupported:?}"
    );
    eprintln!("the search parameter expressions call {functions:?}");
    out
}

/// The functions an expression calls: identifiers followed by `(`.
fn called_functions(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            in_string = !in_string;
        }
        if !in_string
            && c.is_ascii_alphabetic()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if bytes.get(i) == Some(&b'(') {
                out.push(expr[start..i].to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn every_search_parameter_expression_parses() {
    let compiled = compile_all();
    let rows: usize = compiled.values().map(Vec::len).sum();
    // 1,709 rows, less the three whose R4 definition has no expression (`_text`, `_content`, `_query`)
    // times the 146 types that share each.
    assert_eq!(rows, 146 * 6 + (1709 - 9));
}

/// The resources of an example: itself, its contained resources and its Bundle entries' resources.
fn resources_in<'a>(resource: &'a Value, out: &mut Vec<&'a Value>) {
    if resource
        .get("resourceType")
        .and_then(Value::as_str)
        .is_none()
    {
        return;
    }
    out.push(resource);
    for contained in resource["contained"].as_array().into_iter().flatten() {
        resources_in(contained, out);
    }
    for entry in resource["entry"].as_array().into_iter().flatten() {
        resources_in(&entry["resource"], out);
    }
}

#[test]
fn every_search_parameter_expression_evaluates_on_the_examples() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !data.is_dir() {
        eprintln!("SKIPPED: ../shared/data (the R4 and US Core examples) is missing");
        return;
    }
    let compiled = compile_all();
    let mut examples = Vec::new();
    for dir in ["fhir-r4/examples", "us-core"] {
        let mut paths: Vec<_> = std::fs::read_dir(data.join(dir))
            .expect("examples directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("read example");
            examples.push(serde_json::from_str::<Value>(&text).expect("example JSON"));
        }
    }
    let mut failures = Vec::new();
    let (mut resources, mut evaluations, mut with_values) = (0, 0, 0);
    let mut params_with_values: BTreeSet<(&str, &str)> = BTreeSet::new();
    for example in &examples {
        let mut all = Vec::new();
        resources_in(example, &mut all);
        for resource in all {
            resources += 1;
            let ty = resource["resourceType"].as_str().unwrap_or_default();
            for c in compiled.get(ty).into_iter().flatten() {
                evaluations += 1;
                let items = match c.expression.evaluate(resource, &MODEL) {
                    Ok(items) => items,
                    Err(e) => {
                        failures.push(format!("{ty}.{} on {}: {e}", c.param.code, resource["id"]));
                        continue;
                    }
                };
                if !items.is_empty() {
                    with_values += 1;
                    params_with_values.insert((ty, c.param.code));
                }
                if c.param.kind != ParamType::Composite {
                    continue;
                }
                for item in &items {
                    let fhirpath::Item::Node { value, .. } = item else {
                        failures.push(format!(
                            "{ty}.{}: a composite selected {item:?}",
                            c.param.code
                        ));
                        continue;
                    };
                    for component in &c.components {
                        if let Err(e) = component.evaluate(value, &MODEL) {
                            failures.push(format!(
                                "{ty}.{} component `{}` on {}: {e}",
                                c.param.code,
                                component.source(),
                                resource["id"]
                            ));
                        }
                    }
                }
            }
            // Index extraction runs the same expressions on every write: it must not panic.
            let _ = fhir::search::extract::index_entries(resource);
        }
    }
    eprintln!(
        "{resources} resources: {evaluations} evaluations of search parameter expressions without an error, \
         {with_values} with values; {} (type, parameter) pairs found values in the examples",
        params_with_values.len()
    );
    assert!(
        failures.is_empty(),
        "{} evaluation errors:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The examples exercise most parameters of the types they cover (a floor, so that a regression that
    // makes expressions silently select nothing fails).
    assert!(
        params_with_values.len() >= 1397,
        "{}",
        params_with_values.len()
    );
}
