//! `_summary` and `_elements`: the subsets of a resource a search may ask for.

use serde_json::{json, Value};

use fhir::search::Summary;
use fhir::{Issue, IssueType};

use super::Error;

/// The tag that marks a resource as a subset of what is stored.
const SUBSETTED: (&str, &str) = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "SUBSETTED",
);

/// Shapes a resource as `_summary` and `_elements` ask (`_summary=count` never gets here: it has no entries).
pub(crate) fn shape(resource: Value, summary: Option<Summary>, elements: &[String]) -> Value {
    match summary {
        Some(Summary::True) => keep(resource, is_summary),
        Some(Summary::Text) => keep(resource, |ty, name| {
            name == "text" || is_mandatory(ty, name)
        }),
        Some(Summary::Data) => keep(resource, |_, name| name != "text"),
        Some(Summary::False) | Some(Summary::Count) | None if !elements.is_empty() => {
            keep(resource, |ty, name| {
                elements.iter().any(|e| element_name(e) == name) || is_mandatory(ty, name)
            })
        }
        _ => resource,
    }
}

/// `_summary` (true, text, data, false) and `_elements` of a read or vread, checked before the read
/// is answered (also with 304): `_summary=count` belongs to searches (400); other parameters have no
/// meaning on a read and are ignored.
#[derive(Debug, Clone, Default)]
pub struct ReadShape {
    summary: Option<Summary>,
    elements: Vec<String>,
}

impl ReadShape {
    pub fn from_params(params: &[(String, String)]) -> Result<Self, Error> {
        let mut shape = ReadShape::default();
        let mut issues = Vec::new();
        for (name, value) in params {
            match name.as_str() {
                "_summary" => match value.as_str() {
                    "true" => shape.summary = Some(Summary::True),
                    "text" => shape.summary = Some(Summary::Text),
                    "data" => shape.summary = Some(Summary::Data),
                    "false" => shape.summary = Some(Summary::False),
                    "count" => issues.push(Issue::error(
                        IssueType::Invalid,
                        "_summary=count is for searches; a read returns one resource",
                    )),
                    _ => issues.push(Issue::error(
                        IssueType::Invalid,
                        "_summary: expected one of true, text, data, false",
                    )),
                },
                "_elements" => shape.elements.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        if issues.is_empty() {
            Ok(shape)
        } else {
            Err(Error::Invalid(issues))
        }
    }

    /// The resource as asked, tagged SUBSETTED when something was left out.
    pub fn apply(&self, resource: Value) -> Value {
        shape(resource, self.summary, &self.elements)
    }
}

/// `_elements=Patient.name` and `name` both name the top-level element `name`.
fn element_name(element: &str) -> &str {
    let element = element.trim();
    match element.split_once('.') {
        Some((_, rest)) => rest.split('.').next().unwrap_or(rest),
        None => element,
    }
}

/// Keeps `resourceType`, `id`, `meta` and the top-level elements `wanted` names, and tags the result
/// SUBSETTED when anything was left out.
fn keep(resource: Value, wanted: impl Fn(&str, &str) -> bool) -> Value {
    let Value::Object(obj) = resource else {
        return resource;
    };
    let ty = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let before = obj.len();
    let mut out: serde_json::Map<String, Value> = obj
        .into_iter()
        .filter(|(name, _)| {
            matches!(name.as_str(), "resourceType" | "id" | "meta")
                || wanted(&ty, declared_name(&ty, base_name(name)))
        })
        .collect();
    if out.len() < before {
        tag_subsetted(&mut out);
    }
    Value::Object(out)
}

/// The name an element is declared under: `deceasedBoolean` is `deceased` (`deceased[x]`).
fn declared_name<'a>(resource_type: &str, key: &'a str) -> &'a str {
    match fhir::definitions::type_def(resource_type).and_then(|def| def.element_for_key(key)) {
        Some((element, _)) if element.choice => &key[..element.name.len()],
        _ => key,
    }
}

/// `_birthDate` (a primitive's extensions) goes with `birthDate`.
fn base_name(name: &str) -> &str {
    name.strip_prefix('_').unwrap_or(name)
}

fn tag_subsetted(obj: &mut serde_json::Map<String, Value>) {
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            let present = tags
                .iter()
                .any(|t| t.get("code").and_then(Value::as_str) == Some(SUBSETTED.1));
            if !present {
                tags.push(json!({ "system": SUBSETTED.0, "code": SUBSETTED.1 }));
            }
        }
    }
}

/// Whether the top-level element `name` of `resource_type` is a summary element (`isSummary` in the
/// definitions). A choice element (`deceasedBoolean`) is one if its base name (`deceased`) is.
fn is_summary(resource_type: &str, name: &str) -> bool {
    let Some(def) = fhir::definitions::type_def(resource_type) else {
        return false;
    };
    def.element(name)
        .or_else(|| def.element_for_key(name).map(|(element, _)| element))
        .is_some_and(|element| element.summary)
}

/// Whether the top-level element `name` of `resource_type` is mandatory (min ≥ 1).
fn is_mandatory(resource_type: &str, name: &str) -> bool {
    fhir::definitions::type_def(resource_type)
        .and_then(|def| def.element_for_key(name))
        .is_some_and(|(element, _)| element.min >= 1)
}
