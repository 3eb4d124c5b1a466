//! Search parameters and the Patient compartment: `RESOURCE_TYPES`, `SEARCH_PARAMS`,
//! `COMMON_SEARCH_PARAMS`, `PATIENT_COMPARTMENT`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use anyhow::{bail, Result};
use serde_json::Value;

use super::{entries, header, lit, str_slice, structure_definitions, Definitions, Files};

/// The resource types that can have instances (the abstract `Resource` and `DomainResource` are left out), sorted.
pub fn resource_types(defs: &Definitions) -> Vec<String> {
    let mut types: Vec<String> = structure_definitions(&defs.resources)
        .filter(|sd| {
            sd["kind"] == "resource"
                && sd["abstract"] == false
                && sd["derivation"] == "specialization"
        })
        .filter_map(|sd| sd["type"].as_str().map(str::to_string))
        .collect();
    types.sort();
    types
}

pub fn render(defs: &Definitions, files: &mut Files) -> Result<()> {
    let types = resource_types(defs);
    let mut out = header("profiles-resources");
    writeln!(out, "pub static RESOURCE_TYPES: &[&str] = &[")?;
    for ty in &types {
        writeln!(out, "    {},", lit(ty))?;
    }
    writeln!(out, "];")?;
    files.insert("resource_types.rs".into(), out);

    files.insert(
        "search_params.rs".into(),
        render_search_params(defs, &types)?,
    );
    files.insert("compartment.rs".into(), render_compartment(defs)?);
    Ok(())
}

fn render_search_params(defs: &Definitions, types: &[String]) -> Result<String> {
    let params: Vec<&Value> = entries(&defs.search)
        .filter(|r| r["resourceType"] == "SearchParameter")
        .collect();
    let code_by_url: HashMap<&str, &str> = params
        .iter()
        .filter_map(|p| Some((p["url"].as_str()?, p["code"].as_str()?)))
        .collect();

    let mut by_type: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let mut common: Vec<(String, String)> = Vec::new();
    for p in &params {
        let code = p["code"].as_str().unwrap_or_default();
        let expression = p["expression"].as_str().unwrap_or_default();
        let bases: Vec<&str> = p["base"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for &base in &bases {
            if base == "Resource" || base == "DomainResource" {
                common.push((code.to_string(), render_param(p, expression, &code_by_url)?));
                continue;
            }
            if types.binary_search_by(|t| t.as_str().cmp(base)).is_err() {
                bail!("search parameter {code} has unknown base {base}");
            }
            let reduced = reduce_expression(expression, base, &bases);
            if reduced.is_empty() && !expression.is_empty() {
                bail!("search parameter {code}: no part of {expression:?} applies to {base}");
            }
            by_type
                .entry(base)
                .or_default()
                .push((code.to_string(), render_param(p, &reduced, &code_by_url)?));
        }
    }

    let mut out = header("search-parameters");
    out.push_str("use crate::definitions::{Component, ParamType, SearchParam};\n\n");
    for (ty, mods) in MODIFIERS {
        writeln!(
            out,
            "const M_{}: &[&str] = {};",
            ty.to_uppercase(),
            str_slice(mods)
        )?;
    }
    writeln!(
        out,
        "const COMPARATORS: &[&str] = {};",
        str_slice(&COMPARATORS)
    )?;
    out.push('\n');

    common.sort();
    writeln!(out, "pub static COMMON_SEARCH_PARAMS: &[SearchParam] = &[")?;
    for (_, p) in &common {
        writeln!(out, "    {p},")?;
    }
    writeln!(out, "];\n")?;

    writeln!(
        out,
        "pub static SEARCH_PARAMS: &[(&str, &[SearchParam])] = &["
    )?;
    for (ty, mut list) in by_type {
        list.sort();
        writeln!(out, "    ({}, &[", lit(ty))?;
        if let Some(w) = list.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!("{ty} has two search parameters with code {}", w[0].0);
        }
        for (_, p) in list {
            writeln!(out, "        {p},")?;
        }
        writeln!(out, "    ]),")?;
    }
    writeln!(out, "];")?;
    Ok(out)
}

/// Modifiers by parameter type. The R4 SearchParameter resources list none, so these follow the
/// modifiers table of the R4 search page (`:missing` applies to every type).
const MODIFIERS: [(&str, &[&str]); 9] = [
    ("number", &["missing"]),
    ("date", &["missing"]),
    ("string", &["contains", "exact", "missing"]),
    (
        "token",
        &[
            "above", "below", "in", "missing", "not", "not-in", "of-type", "text",
        ],
    ),
    (
        "reference",
        &["above", "below", "identifier", "missing", "type"],
    ),
    ("composite", &["missing"]),
    ("quantity", &["missing"]),
    ("uri", &["above", "below", "missing"]),
    ("special", &[]),
];

const COMPARATORS: [&str; 9] = ["eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap"];

fn render_param(p: &Value, expression: &str, code_by_url: &HashMap<&str, &str>) -> Result<String> {
    let code = p["code"].as_str().unwrap_or_default();
    let kind = p["type"].as_str().unwrap_or_default();
    let variant = match kind {
        "number" => "Number",
        "date" => "Date",
        "string" => "String",
        "token" => "Token",
        "reference" => "Reference",
        "composite" => "Composite",
        "quantity" => "Quantity",
        "uri" => "Uri",
        "special" => "Special",
        other => bail!("search parameter {code} has unknown type {other}"),
    };
    let mut targets: Vec<&str> = p["target"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    targets.sort();
    let comparators: Vec<&str> = p["comparator"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let comparators = if comparators.is_empty() {
        "&[]".to_string()
    } else if comparators == COMPARATORS {
        "COMPARATORS".to_string()
    } else {
        str_slice(&comparators)
    };
    let mut components = Vec::new();
    for c in p["component"].as_array().into_iter().flatten() {
        let url = c["definition"].as_str().unwrap_or_default();
        let Some(param) = code_by_url.get(url) else {
            bail!("search parameter {code}: component {url} is not a known search parameter");
        };
        let expr = c["expression"].as_str().unwrap_or_default();
        components.push(format!(
            "Component {{ param: {}, expression: {} }}",
            lit(param),
            lit(expr)
        ));
    }
    Ok(format!(
        "SearchParam {{ code: {}, id: {}, kind: ParamType::{variant}, expression: {}, targets: {}, modifiers: M_{}, comparators: {comparators}, components: &[{}] }}",
        lit(code),
        lit(p["id"].as_str().unwrap_or_default()),
        lit(expression),
        str_slice(&targets),
        kind.to_uppercase(),
        components.join(", "),
    ))
}

/// The top-level `|` parts of `expression` that apply to `resource_type`, joined again with ` | `.
/// Parentheses, `where(...)` arguments and string literals may contain `|` too, so the split only
/// happens outside them. A part that names none of the parameter's `bases` is relative to the resource
/// (R4's InsurancePlan `name | alias`) and is kept.
pub fn reduce_expression(expression: &str, resource_type: &str, bases: &[&str]) -> String {
    let kept: Vec<&str> = split_union(expression)
        .into_iter()
        .filter(|p| {
            starts_with_type(p, resource_type) || !bases.iter().any(|b| starts_with_type(p, b))
        })
        .collect();
    kept.join(" | ")
}

/// Splits at `|` outside parentheses, brackets and string literals; parts are trimmed.
pub fn split_union(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in expression.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' => in_string = true,
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '|' if depth == 0 => {
                parts.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expression[start..].trim());
    parts
}

fn starts_with_type(part: &str, resource_type: &str) -> bool {
    let rest = part.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    match rest.strip_prefix(resource_type) {
        Some(after) => after.is_empty() || after.starts_with(['.', ' ', ')']),
        None => false,
    }
}

fn render_compartment(defs: &Definitions) -> Result<String> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for r in defs.compartment["resource"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let params: Vec<String> = r["param"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if let (Some(code), false) = (r["code"].as_str(), params.is_empty()) {
            rows.push((code.to_string(), params));
        }
    }
    rows.sort();
    let mut out = header("compartmentdefinition-patient");
    writeln!(
        out,
        "pub static PATIENT_COMPARTMENT: &[(&str, &[&str])] = &["
    )?;
    for (ty, params) in rows {
        writeln!(out, "    ({}, {}),", lit(&ty), str_slice(&params))?;
    }
    writeln!(out, "];")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expression: &str, ty: &str, expected: &str) {
        let bases = [
            "Patient",
            "Person",
            "Medication",
            "MedicationRequest",
            "Observation",
            "Other",
            "Account",
            "A",
            "B",
        ];
        assert_eq!(
            reduce_expression(expression, ty, &bases),
            expected,
            "{expression} for {ty}"
        );
    }

    #[test]
    fn reduces_expressions_to_the_parts_of_one_type() {
        check(
            "Patient.birthDate | Person.birthDate",
            "Patient",
            "Patient.birthDate",
        );
        check(
            "Medication.code | MedicationRequest.code",
            "Medication",
            "Medication.code",
        );
        check(
            "Medication.code | MedicationRequest.code",
            "MedicationRequest",
            "MedicationRequest.code",
        );
        check(
            "(Observation.value as Quantity) | (Other.value as Quantity)",
            "Observation",
            "(Observation.value as Quantity)",
        );
        check(
            "Account.subject.where(resolve() is Patient | resolve() is Group) | Other.x",
            "Account",
            "Account.subject.where(resolve() is Patient | resolve() is Group)",
        );
        check("(A.x | A.y) | B.z", "A", "(A.x | A.y)");
        check(
            "A.x.where(code = 'a|b') | B.y",
            "A",
            "A.x.where(code = 'a|b')",
        );
        check("Observation", "Observation", "Observation");
        check("name | alias", "InsurancePlan", "name | alias");
    }
}
