//! The CapabilityStatement (`GET /metadata`), generated from what the repository really supports:
//! every resource type with the interactions implemented, its search parameters from the generated
//! tables, the `_include`/`_revinclude` values they allow, and the operations (`Patient/$everything`,
//! `Patient/$disclosures`, `Patient/$match`); the audit trail (AuditEvent) with the search the exchange answers for it.

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
    /// The server's CapabilityStatement (built once; it depends on the tables, the base URL and
    /// whether access is enforced).
    pub fn capability_statement(&self) -> Value {
        self.capability
            .get_or_init(|| build(&self.config.base_url, self.gate.is_enforcing()))
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

/// What `Patient/$match` answers (see `Repository::match_patients`).
const MATCH_DOC: &str = "POST Patient/$match with a Parameters body (resource: a Patient; onlyCertainMatches; \
count): the Patients of the master patient index that may be the same person, scored by a Fellegi-Sunter model, \
best first, as a searchset Bundle with search.score and the match-grade extension (certain, probable, possible); \
only the Patients the caller may see, and the read is audited.";

/// What `Patient/[id]/$disclosures` answers (see `Repository::disclosures`).
const DISCLOSURES_DOC: &str = "GET Patient/[id]/$disclosures?date=&_count=&_page=: the patient's accounting of \
disclosures, every disclosure of the patient's data to a participant (a successful read, vread, search, history \
or operation by a participant's system or person), newest first, as a searchset Bundle of compact AuditEvents: \
recorded (the date), agent.who (the recipient Organization and its name), purposeOfEvent, subtype, and entity \
(the patient and each resource version disclosed); an emergency access (break-the-glass, purpose ETREAT) carries \
meta.tag https://nutmeg.example/fhir/CodeSystem/notice|break-the-glass and an outcomeDesc saying so. A patient \
may ask for their own only; operators for anyone.";

/// The audit trail is searched (by operators), never written through the API, and answers only
/// the parameters `Repository::search_audit_events` reads.
fn audit_trail(resource: &mut Value) {
    let official = |code: &str, kind: &str, doc: &str| {
        json!({
            "name": code,
            "definition": format!("http://hl7.org/fhir/SearchParameter/AuditEvent-{code}"),
            "type": kind,
            "documentation": doc,
        })
    };
    let own = |code: &str, kind: &str, doc: &str| json!({ "name": code, "type": kind, "documentation": doc });
    resource["interaction"] = json!([{ "code": "read" }, { "code": "search-type" }]);
    resource["documentation"] = json!(
        "The append-only, hash-chained audit trail: searched by operators, newest first (each parameter \
         once, comma-separated alternatives; date twice for a range); written only by the exchange."
    );
    for key in [
        "versioning",
        "readHistory",
        "updateCreate",
        "conditionalCreate",
        "conditionalRead",
        "conditionalUpdate",
        "conditionalDelete",
        "referencePolicy",
    ] {
        if let Some(fields) = resource.as_object_mut() {
            fields.remove(key);
        }
    }
    resource["searchInclude"] = json!([]);
    resource["searchRevInclude"] = json!([]);
    resource["searchParam"] = json!([
        official("patient", "reference", "A patient the request concerned: Patient/[id] or [id]"),
        official("agent", "token", "The requesting client's or user's id"),
        own("participant", "reference", "The requesting participant: Organization/[id] or [id]"),
        official("subtype", "token", "The interaction: read, vread, search, history, operation, create, update, patch, delete, batch, transaction"),
        own("purpose", "token", "The purpose of use: TREAT, HPAYMT, HOPERAT, PUBHLTH, ETREAT, PATRQT"),
        official("outcome", "token", "0 (success), 4 (refused or bad request), 8 (server failure)"),
        official("date", "date", "When the event was recorded (ge, gt, le, lt, eq)"),
    ]);
}

/// Why participants do not create data about patients by `PUT [type]/[id]`
/// (`Repository::refuses_update_create`).
const NO_UPDATE_CREATE_DOC: &str = "updateCreate is false: a participant's PUT [type]/[id] updates an \
existing resource it may see and never creates one (405 otherwise, the same answer whether the id is unused \
or names a resource withheld from it). Create with POST [type], or with a conditional update \
PUT [type]?identifier=[system]|[value] without an id in the body.";

/// `enforcing`: access is enforced, so participants do not create data about patients by update.
fn build(base_url: &str, enforcing: bool) -> Value {
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
            if enforcing && super::crud::is_patient_data_type(ty) {
                resource["updateCreate"] = json!(false);
                resource["documentation"] = json!(NO_UPDATE_CREATE_DOC);
            }
            if ty == "Patient" {
                resource["operation"] = json!([
                    {
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    },
                    {
                        "name": "disclosures",
                        "definition": format!("{base_url}/OperationDefinition/Patient-disclosures"),
                        "documentation": DISCLOSURES_DOC,
                    },
                    {
                        "name": "match",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                        "documentation": MATCH_DOC,
                    },
                ]);
            }
            if ty == "AuditEvent" {
                audit_trail(&mut resource);
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
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                },
                {
                    "name": "disclosures",
                    "definition": format!("{base_url}/OperationDefinition/Patient-disclosures"),
                    "documentation": DISCLOSURES_DOC,
                },
                {
                    "name": "match",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                    "documentation": MATCH_DOC,
                },
            ],
        }],
    })
}
