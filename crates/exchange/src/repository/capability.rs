//! The CapabilityStatement (`GET /metadata`), generated from what the repository really supports:
//! every resource type with the interactions implemented, its search parameters from the generated
//! tables, the `_include`/`_revinclude` values they allow, and the operations.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Repository;
use fhir::definitions::{self, ParamType};

const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];
const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "search-system", "history-system"];

impl Repository {
    /// The server's CapabilityStatement (built once; it depends on the tables and the base URL only).
    pub fn capability_statement(&self) -> Value {
        self.capability
            .get_or_init(|| build(&self.config.base_url))
            .clone()
    }
}

fn param_type(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Number => "number",
        ParamType::Date => "date",
        ParamType::String => "string",
        ParamType::Token => "token",
        ParamType::Reference => "reference",
        ParamType::Composite => "composite",
        ParamType::Quantity => "quantity",
        ParamType::Uri => "uri",
        ParamType::Special => "special",
    }
}

fn search_param_json(p: &definitions::SearchParam) -> Value {
    json!({
        "name": p.code,
        "definition": format!("http://hl7.org/fhir/SearchParameter/{}", p.id),
        "type": param_type(p.kind),
    })
}

fn build(base_url: &str) -> Value {
    let types = definitions::resource_types();
    // Who refers to whom: for `_revinclude` on a type, every reference parameter that may point at it.
    let mut revinclude: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for &source in types {
        for p in definitions::search_params(source)
            .iter()
            .filter(|p| p.kind == ParamType::Reference)
        {
            for &target in p.targets {
                revinclude
                    .entry(target)
                    .or_default()
                    .push(format!("{source}:{}", p.code));
            }
        }
    }
    let resources: Vec<Value> = types
        .iter()
        .map(|&ty| {
            let own = definitions::search_params(ty);
            let mut include: Vec<String> =
                own.iter().filter(|p| p.kind == ParamType::Reference).map(|p| format!("{ty}:{}", p.code)).collect();
            if !include.is_empty() {
                include.push("*".to_string());
            }
            let mut rev = revinclude.get(ty).cloned().unwrap_or_default();
            rev.sort();
            rev.dedup();
            let mut resource = json!({
                "type": ty,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{ty}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({ "code": code })).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical", "local"],
                "searchInclude": include,
                "searchRevInclude": rev,
                "searchParam": own.iter().map(search_param_json).collect::<Vec<_>>(),
            });
            if ty == "Patient" {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }]);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir::search::datetime::format_instant(super::support::now_millis()),
        "publisher": "nutmeg",
        "kind": "instance",
        "software": { "name": "nutmeg", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "nutmeg health information exchange", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|code| json!({ "code": code })).collect::<Vec<_>>(),
            "searchParam": definitions::common_search_params().iter().map(search_param_json).collect::<Vec<_>>(),
            "operation": [{
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            }],
        }],
    })
}
