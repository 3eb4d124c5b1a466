//! Redaction: what a withheld resource leaves behind in the resources that are disclosed.
//!
//! A denied resource is withheld whole (the caller leaves it out of the result and computes totals
//! after). The resources that do leave must not reveal it either: [`redact_references`] removes
//! every reference to a withheld resource, with its `display`:
//!
//! - a reference in a list (`Provenance.target`, `DiagnosticReport.result`, `reasonReference`) is
//!   removed from the list;
//! - a list element that holds a withheld reference directly (a backbone element such as
//!   `Encounter.diagnosis` with its `condition`, or `Provenance.entity` with its `what`) is removed
//!   whole, so that no rank, role or date of the hidden item remains;
//! - any other reference (`Encounter.partOf`) is removed from its element;
//! - a list left empty is removed (FHIR has no empty arrays);
//! - the narrative (`text`) is removed whenever anything was, since it may describe what was hidden.
//!
//! Nothing is marked as redacted: a marker (a data-absent-reason of `masked`) would itself tell that
//! something sensitive exists. The result can miss an element FHIR requires (a Provenance with no
//! target left); the caller may withhold such a resource too.

use serde_json::Value;

use crate::consent::relative_reference;

/// Removes from `resource` (and the resources inside it) every reference to a resource that
/// `withheld` says is withheld, given its relative reference (`Type/id`). Returns how many
/// references were removed.
pub fn redact_references(resource: &mut Value, withheld: &dyn Fn(&str) -> bool) -> usize {
    let mut removed = 0;
    prune(resource, withheld, &mut removed);
    if removed > 0 {
        drop_narratives(resource);
    }
    removed
}

/// Whether `value` is a Reference to a withheld resource.
fn is_withheld(value: &Value, withheld: &dyn Fn(&str) -> bool) -> bool {
    value
        .get("reference")
        .and_then(Value::as_str)
        .and_then(relative_reference)
        .is_some_and(|r| withheld(&r))
}

/// Whether `value` is a backbone element (an object that is not a resource) with a property whose
/// value is a withheld Reference.
fn holds_withheld(value: &Value, withheld: &dyn Fn(&str) -> bool) -> bool {
    value.as_object().is_some_and(|o| {
        !o.contains_key("resourceType") && o.values().any(|v| is_withheld(v, withheld))
    })
}

fn prune(value: &mut Value, withheld: &dyn Fn(&str) -> bool, removed: &mut usize) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let Some(child) = object.get_mut(&key) else {
            continue;
        };
        if is_withheld(child, withheld) {
            object.remove(&key);
            *removed += 1;
            continue;
        }
        match child {
            Value::Array(items) => {
                let before = items.len();
                items.retain(|item| {
                    !(is_withheld(item, withheld) || holds_withheld(item, withheld))
                });
                *removed += before - items.len();
                for item in items.iter_mut() {
                    prune(item, withheld, removed);
                }
                if items.is_empty() && before > 0 {
                    object.remove(&key);
                }
            }
            Value::Object(_) => prune(child, withheld, removed),
            _ => {}
        }
    }
}

/// Removes `text` from the resource and every resource inside it.
fn drop_narratives(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.get("resourceType").is_some_and(Value::is_string) {
                object.remove("text");
            }
            for child in object.values_mut() {
                drop_narratives(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_narratives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hidden(r: &str) -> bool {
        r == "Condition/sud" || r == "Observation/o9"
    }

    #[test]
    fn references_to_withheld_resources_are_removed() {
        let mut encounter = json!({
            "resourceType": "Encounter", "id": "e1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Alcohol dependence</div>"},
            "subject": {"reference": "Patient/p1"},
            "partOf": {"reference": "https://x.example/fhir/Condition/sud/_history/2", "display": "Alcohol dependence"},
            "diagnosis": [
                {"condition": {"reference": "Condition/sud", "display": "Alcohol dependence"}, "rank": 1},
                {"condition": {"reference": "Condition/flu"}, "rank": 2}
            ],
            "reasonReference": [{"reference": "Observation/o9"}],
            "contained": [{"resourceType": "Basic", "text": {"status": "generated", "div": "<div/>"},
                           "subject": {"reference": "#x"},
                           "author": {"reference": "Condition/sud"}}]
        });
        let removed = redact_references(&mut encounter, &hidden);
        assert_eq!(removed, 4);
        assert_eq!(
            encounter,
            json!({
                "resourceType": "Encounter", "id": "e1",
                "subject": {"reference": "Patient/p1"},
                "diagnosis": [{"condition": {"reference": "Condition/flu"}, "rank": 2}],
                "contained": [{"resourceType": "Basic", "subject": {"reference": "#x"}}]
            })
        );
    }

    #[test]
    fn nothing_withheld_changes_nothing() {
        let original = json!({"resourceType": "Provenance", "text": {"status": "generated", "div": "<div/>"},
            "target": [{"reference": "Condition/flu"}],
            "entity": [{"role": "source", "what": {"reference": "DocumentReference/d1"}}]});
        let mut copy = original.clone();
        assert_eq!(redact_references(&mut copy, &hidden), 0);
        assert_eq!(copy, original);
        let mut provenance = json!({"resourceType": "Provenance",
            "target": [{"reference": "Condition/sud"}, {"reference": "Condition/flu"}],
            "entity": [{"role": "source", "what": {"reference": "Observation/o9"}}]});
        assert_eq!(redact_references(&mut provenance, &hidden), 2);
        assert_eq!(
            provenance,
            json!({"resourceType": "Provenance", "target": [{"reference": "Condition/flu"}]})
        );
        let mut odd = json!([1, {"reference": 5}, "Condition/sud"]);
        assert_eq!(redact_references(&mut odd, &hidden), 0);
    }
}
