//! Types and their elements (`TYPES`) and the expanded value sets of required bindings (`VALUE_SETS`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use anyhow::{bail, Result};
use serde_json::Value;

use super::{
    entries, header, is_specification_element, lit, str_slice, structure_definitions, Definitions,
    Files,
};

struct TypeRow {
    kind: &'static str,
    base: String,
    is_abstract: bool,
    elements: Vec<ElementRow>,
}

struct ElementRow {
    name: String,
    types: Vec<String>,
    min: u64,
    max: Option<u64>,
    choice: bool,
    binding: Option<String>,
    /// The resource types a Reference may point at (empty: any resource).
    targets: Vec<String>,
    /// Whether the element is part of the summary (`_summary=true`).
    summary: bool,
}

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

pub fn render(defs: &Definitions, files: &mut Files) -> Result<()> {
    let mut types: BTreeMap<String, TypeRow> = BTreeMap::new();
    let mut required: BTreeSet<String> = BTreeSet::new();
    for sd in structure_definitions(&defs.types).chain(structure_definitions(&defs.resources)) {
        let kind = match sd["kind"].as_str() {
            Some("primitive-type") => "Primitive",
            Some("complex-type") => "Complex",
            Some("resource") => "Resource",
            _ => continue,
        };
        // Profiles (SimpleQuantity, MoneyQuantity) constrain a type rather than define one.
        if sd["derivation"] == "constraint" {
            continue;
        }
        let name = sd["type"].as_str().unwrap_or_default().to_string();
        let base = sd["baseDefinition"]
            .as_str()
            .and_then(|b| b.rsplit('/').next())
            .unwrap_or_default();
        let is_abstract = sd["abstract"] == true;
        add_structure(
            sd,
            &name,
            kind,
            base,
            is_abstract,
            &mut types,
            &mut required,
        )?;
    }

    let expander = Expander::new(defs);
    let mut expanded: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for url in &required {
        match expander.expand(url, 0) {
            Some(systems) if !systems.is_empty() => {
                expanded.insert(url.clone(), systems);
            }
            _ => skipped.push(url.clone()),
        }
    }
    eprintln!(
        "required bindings: {} value sets, {} expanded, {} not expandable offline (left unchecked)",
        required.len(),
        expanded.len(),
        skipped.len()
    );

    let mut out = header("profiles-types, profiles-resources");
    out.push_str("use crate::definitions::{ElementDef, TypeDef, TypeKind, UNBOUNDED};\n\n");
    out.push_str(
        "#[allow(clippy::too_many_arguments)]\nconst fn e(name: &'static str, types: &'static [&'static str], min: u32, max: u32, choice: bool, binding: Option<&'static str>, targets: &'static [&'static str], summary: bool) -> ElementDef {\n    ElementDef { name, types, min, max, choice, binding, targets, summary }\n}\n\n",
    );
    let resource_types: BTreeSet<String> = types
        .iter()
        .filter(|(_, t)| t.kind == "Resource")
        .map(|(name, _)| name.clone())
        .collect();
    writeln!(out, "pub static TYPES: &[TypeDef] = &[")?;
    for (name, t) in &mut types {
        t.elements.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = t.elements.windows(2).find(|w| w[0].name == w[1].name) {
            bail!("{name} defines {} twice", w[0].name);
        }
        writeln!(
            out,
            "    TypeDef {{ name: {}, kind: TypeKind::{}, base: {}, is_abstract: {}, elements: &[",
            lit(name),
            t.kind,
            lit(&t.base),
            t.is_abstract
        )?;
        for el in &t.elements {
            let max = match el.max {
                None => "UNBOUNDED".to_string(),
                Some(m) => m.to_string(),
            };
            let binding = match &el.binding {
                Some(url) if expanded.contains_key(url) => format!("Some({})", lit(url)),
                _ => "None".to_string(),
            };
            // Targets the definitions name that are not R4 resource types (the package's own) are dropped.
            let targets: Vec<&String> = el
                .targets
                .iter()
                .filter(|t| resource_types.contains(*t))
                .collect();
            writeln!(
                out,
                "        e({}, {}, {}, {max}, {}, {binding}, {}, {}),",
                lit(&el.name),
                str_slice(&el.types),
                el.min,
                el.choice,
                str_slice(&targets),
                el.summary
            )?;
        }
        writeln!(out, "    ] }},")?;
    }
    writeln!(out, "];")?;
    files.insert("types.rs".into(), out);

    let mut out = header("valuesets, v3-codesystems");
    writeln!(
        out,
        "//! {} value sets of required bindings, expanded; {} more cannot be expanded offline and are left unchecked:",
        expanded.len(),
        skipped.len()
    )?;
    for url in &skipped {
        writeln!(out, "//! - {url}")?;
    }
    out.push_str("\nuse crate::definitions::ValueSet;\n\n");
    writeln!(out, "pub static VALUE_SETS: &[ValueSet] = &[")?;
    for (url, systems) in &expanded {
        writeln!(out, "    ValueSet {{ url: {}, systems: &[", lit(url))?;
        for (system, codes) in systems {
            let codes: Vec<&String> = codes.iter().collect();
            writeln!(out, "        ({}, {}),", lit(system), str_slice(&codes))?;
        }
        writeln!(out, "    ] }},")?;
    }
    writeln!(out, "];")?;
    files.insert("value_sets.rs".into(), out);
    Ok(())
}

/// Adds a structure definition's type and its backbone elements (named by path) to `types`.
fn add_structure(
    sd: &Value,
    name: &str,
    kind: &'static str,
    base: &str,
    is_abstract: bool,
    types: &mut BTreeMap<String, TypeRow>,
    required: &mut BTreeSet<String>,
) -> Result<()> {
    let elements: Vec<&Value> = sd["snapshot"]["element"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let paths: Vec<&str> = elements
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default())
        .collect();
    let has_children = |path: &str| {
        paths.iter().any(|p| {
            p.len() > path.len() + 1 && p.starts_with(path) && p.as_bytes()[path.len()] == b'.'
        })
    };
    types.insert(
        name.to_string(),
        TypeRow {
            kind,
            base: base.to_string(),
            is_abstract,
            elements: Vec::new(),
        },
    );
    for el in elements.iter().skip(1) {
        if !is_specification_element(el) {
            continue;
        }
        let path = el["path"].as_str().unwrap_or_default();
        let Some((parent, last)) = path.rsplit_once('.') else {
            continue;
        };
        // A primitive's `value` is the JSON primitive itself, not an element.
        if kind == "Primitive" && last == "value" {
            continue;
        }
        let (el_name, choice) = match last.strip_suffix("[x]") {
            Some(n) => (n.to_string(), true),
            None => (last.to_string(), false),
        };
        let mut el_types: Vec<String> = Vec::new();
        let mut targets: Vec<String> = Vec::new();
        if let Some(reference) = el["contentReference"].as_str() {
            el_types.push(reference.trim_start_matches('#').to_string());
        } else if has_children(path) {
            el_types.push(path.to_string());
            let code = el["type"][0]["code"].as_str().unwrap_or("BackboneElement");
            types.insert(
                path.to_string(),
                TypeRow {
                    kind: "Complex",
                    base: code.to_string(),
                    is_abstract: false,
                    elements: Vec::new(),
                },
            );
        } else {
            for t in el["type"].as_array().into_iter().flatten() {
                let code = t["code"].as_str().unwrap_or_default();
                let code = if code.starts_with("http://hl7.org/fhirpath/System.") {
                    let ext = t["extension"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["url"] == FHIR_TYPE_EXT);
                    ext.and_then(|e| e["valueUrl"].as_str()).unwrap_or("string")
                } else {
                    code
                };
                // Resource ids are `id`s, although R4 types the element as a plain string.
                let code = if kind == "Resource" && parent == name && el_name == "id" {
                    "id"
                } else {
                    code
                };
                if !el_types.iter().any(|t| t == code) {
                    el_types.push(code.to_string());
                }
                if code == "Reference" {
                    let profiles: Vec<&str> = t["targetProfile"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.as_str()?.rsplit('/').next())
                        .collect();
                    // No target profile, or `Resource`: any resource.
                    if !profiles.contains(&"Resource") {
                        targets.extend(profiles.iter().map(|p| p.to_string()));
                    }
                }
            }
        }
        if el_types.is_empty() {
            bail!("{path} has no type");
        }
        let binding = if el["binding"]["strength"] == "required" {
            el["binding"]["valueSet"]
                .as_str()
                .map(|u| u.split('|').next().unwrap_or(u).to_string())
        } else {
            None
        };
        if let Some(url) = &binding {
            required.insert(url.clone());
        }
        let max = match el["max"].as_str() {
            Some("*") => None,
            Some(m) => Some(m.parse()?),
            None => bail!("{path} has no max"),
        };
        let row = ElementRow {
            name: el_name,
            types: el_types,
            min: el["min"].as_u64().unwrap_or(0),
            max,
            choice,
            binding,
            targets: {
                targets.sort();
                targets.dedup();
                targets
            },
            summary: el["isSummary"] == true,
        };
        match types.get_mut(parent) {
            Some(t) => t.elements.push(row),
            None => bail!("{path}: parent {parent} is not a type"),
        }
    }
    Ok(())
}

type Expansion = BTreeMap<String, BTreeSet<String>>;

/// Expands value sets from the ValueSet and CodeSystem resources of the definitions, where that needs
/// nothing else: includes of whole complete code systems (with their concept hierarchies), of listed
/// concepts, of `is-a`/`descendent-of`/`is-not-a` filters on such code systems, and of other such value
/// sets; excludes of the same kinds. Anything else (an external code system, another filter) makes the value
/// set unexpandable, and its binding is left unchecked.
struct Expander<'a> {
    value_sets: HashMap<&'a str, &'a Value>,
    code_systems: HashMap<&'a str, &'a Value>,
}

impl<'a> Expander<'a> {
    fn new(defs: &'a Definitions) -> Self {
        Self::from_resources(entries(&defs.value_sets).chain(entries(&defs.v3)))
    }

    fn from_resources(resources: impl Iterator<Item = &'a Value>) -> Self {
        let mut value_sets = HashMap::new();
        let mut code_systems = HashMap::new();
        for r in resources {
            let Some(url) = r["url"].as_str() else {
                continue;
            };
            match r["resourceType"].as_str() {
                Some("ValueSet") => {
                    value_sets.insert(url, r);
                }
                Some("CodeSystem") => {
                    code_systems.insert(url, r);
                }
                _ => {}
            }
        }
        Expander {
            value_sets,
            code_systems,
        }
    }

    fn expand(&self, url: &str, depth: usize) -> Option<Expansion> {
        if depth > 8 {
            return None;
        }
        let vs = self.value_sets.get(url)?;
        let mut out = Expansion::new();
        for include in vs["compose"]["include"].as_array()? {
            for (system, codes) in self.conceptset(include, depth)? {
                out.entry(system).or_default().extend(codes);
            }
        }
        for exclude in vs["compose"]["exclude"].as_array().into_iter().flatten() {
            for (system, codes) in self.conceptset(exclude, depth)? {
                if let Some(kept) = out.get_mut(&system) {
                    kept.retain(|c| !codes.contains(c));
                }
            }
        }
        out.retain(|_, codes| !codes.is_empty());
        Some(out)
    }

    /// The codes of one `compose.include` or `compose.exclude`: those of a code system (all, listed, or
    /// filtered), intersected with those of the value sets it names.
    fn conceptset(&self, set: &Value, depth: usize) -> Option<Expansion> {
        let mut from_system: Option<Expansion> = None;
        if let Some(system) = set["system"].as_str() {
            let mut codes = BTreeSet::new();
            if let Some(concepts) = set["concept"].as_array() {
                codes.extend(
                    concepts
                        .iter()
                        .filter_map(|c| c["code"].as_str().map(str::to_string)),
                );
            } else {
                let cs = self.code_systems.get(system)?;
                if cs["content"] != "complete" {
                    return None;
                }
                collect_concepts(&cs["concept"], &mut codes);
                for filter in set["filter"].as_array().into_iter().flatten() {
                    let property = filter["property"].as_str()?;
                    let value = filter["value"].as_str()?;
                    if property != "concept" {
                        return None;
                    }
                    let subtree = find_concept(&cs["concept"], value).map(|c| {
                        let mut below = BTreeSet::new();
                        collect_concepts(&c["concept"], &mut below);
                        below
                    });
                    let subtree = subtree.unwrap_or_default();
                    match filter["op"].as_str()? {
                        "is-a" => codes.retain(|c| c == value || subtree.contains(c)),
                        "descendent-of" => codes.retain(|c| subtree.contains(c)),
                        "is-not-a" => codes.retain(|c| c != value && !subtree.contains(c)),
                        _ => return None,
                    }
                }
            }
            from_system = Some(Expansion::from([(system.to_string(), codes)]));
        } else if set.get("filter").is_some() || set.get("concept").is_some() {
            return None;
        }
        let mut result = from_system;
        for other in set["valueSet"].as_array().into_iter().flatten() {
            let other = self.expand(other.as_str()?.split('|').next()?, depth + 1)?;
            result = Some(match result {
                None => other,
                // Both a system and value sets: the codes in all of them.
                Some(mut so_far) => {
                    so_far.retain(|system, codes| match other.get(system) {
                        Some(theirs) => {
                            codes.retain(|c| theirs.contains(c));
                            true
                        }
                        None => false,
                    });
                    so_far
                }
            });
        }
        result
    }
}

/// Every code of a concept list, with the codes nested under each (a code system's hierarchy).
fn collect_concepts(concepts: &Value, codes: &mut BTreeSet<String>) {
    for c in concepts.as_array().into_iter().flatten() {
        if let Some(code) = c["code"].as_str() {
            codes.insert(code.to_string());
        }
        collect_concepts(&c["concept"], codes);
    }
}

/// The concept with `code`, anywhere in the hierarchy.
fn find_concept<'v>(concepts: &'v Value, code: &str) -> Option<&'v Value> {
    concepts.as_array()?.iter().find_map(|c| {
        if c["code"] == code {
            Some(c)
        } else {
            find_concept(&c["concept"], code)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn codes(e: &Expansion, system: &str) -> Vec<String> {
        e.get(system).into_iter().flatten().cloned().collect()
    }

    #[test]
    fn value_sets_expand_hierarchies_filters_and_excludes() {
        let resources = [
            json!({"resourceType": "CodeSystem", "url": "http://cs", "content": "complete", "concept": [
                {"code": "a", "concept": [{"code": "a1", "concept": [{"code": "a1x"}]}, {"code": "a2"}]},
                {"code": "b"}
            ]}),
            json!({"resourceType": "CodeSystem", "url": "http://partial", "content": "fragment", "concept": [{"code": "z"}]}),
            json!({"resourceType": "ValueSet", "url": "http://vs/all", "compose": {"include": [{"system": "http://cs"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://vs/not-a1", "compose": {
                "include": [{"system": "http://cs"}],
                "exclude": [{"system": "http://cs", "filter": [{"property": "concept", "op": "is-a", "value": "a1"}]}, {"system": "http://other", "concept": [{"code": "q"}]}]
            }}),
            json!({"resourceType": "ValueSet", "url": "http://vs/below-a", "compose": {"include": [
                {"system": "http://cs", "filter": [{"property": "concept", "op": "descendent-of", "value": "a"}]}
            ]}}),
            json!({"resourceType": "ValueSet", "url": "http://vs/listed", "compose": {
                "include": [{"system": "http://cs", "concept": [{"code": "b"}, {"code": "a2"}]}, {"valueSet": ["http://vs/below-a|4.0.1"]}],
                "exclude": [{"system": "http://cs", "concept": [{"code": "a1x"}]}]
            }}),
            json!({"resourceType": "ValueSet", "url": "http://vs/both", "compose": {"include": [
                {"system": "http://cs", "concept": [{"code": "a1"}, {"code": "b"}], "valueSet": ["http://vs/below-a"]}
            ]}}),
            json!({"resourceType": "ValueSet", "url": "http://vs/fragment", "compose": {"include": [{"system": "http://partial"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://vs/regex", "compose": {"include": [
                {"system": "http://cs", "filter": [{"property": "concept", "op": "regex", "value": "a.*"}]}
            ]}}),
        ];
        let expander = Expander::from_resources(resources.iter());
        let expand = |url| codes(&expander.expand(url, 0).unwrap(), "http://cs");
        assert_eq!(expand("http://vs/all"), ["a", "a1", "a1x", "a2", "b"]);
        assert_eq!(expand("http://vs/not-a1"), ["a", "a2", "b"]);
        assert_eq!(expand("http://vs/below-a"), ["a1", "a1x", "a2"]);
        assert_eq!(expand("http://vs/listed"), ["a1", "a2", "b"]);
        assert_eq!(expand("http://vs/both"), ["a1"]);
        assert!(expander.expand("http://vs/fragment", 0).is_none());
        assert!(expander.expand("http://vs/regex", 0).is_none());
        assert!(expander.expand("http://vs/missing", 0).is_none());
    }
}
