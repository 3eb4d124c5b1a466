//! The CapabilityStatement (`GET /metadata`), generated from what the repository really supports:
//! every resource type with the interactions implemented, its search parameters from the generated
//! tables, the `_include`/`_revinclude` values they allow, and the operations on Patient (FHIR's
//! `$everything` and `$match`, IHE PIXm's `$ihe-pix`, the exchange's own `$disclosures`,
//! `$attest-treatment` and the patient index's `$mpi-review`, `$mpi-history`, `$mpi-link`,
//! `$mpi-unlink`, each with its OperationDefinition canonical: FHIR's or IHE's where they define
//! one, the exchange's base otherwise); the audit trail (AuditEvent) with the search the exchange
//! answers for it. The exchange instantiates IHE PIXm's Manager; the IHE PDQm supplier has a base of
//! its own (`[base]/pdqm`) and its own CapabilityStatement ([`Repository::pdqm_capability_statement`]).

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

/// IHE PIXm's Patient Identifier Cross-reference Manager, which the exchange instantiates.
pub const PIXM_MANAGER: &str =
    "https://profiles.ihe.net/ITI/PIXm/CapabilityStatement/IHE.PIXm.Manager";
/// IHE PIXm's `$ihe-pix` (ITI-83).
pub const PIXM_OPERATION: &str =
    "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix";
/// IHE PDQm's Patient Demographics Supplier, which `[base]/pdqm` instantiates.
pub const PDQM_SUPPLIER: &str =
    "https://profiles.ihe.net/ITI/PDQm/CapabilityStatement/IHE.PDQm.PatientDemographicsSupplier";
/// IHE PDQm's `$match` (ITI-119).
pub const PDQM_MATCH: &str = "https://profiles.ihe.net/ITI/PDQm/OperationDefinition/PDQmMatch";

const PIX_DOC: &str = "GET Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=...]: IHE PIXm (ITI-83), \
the identifiers (targetIdentifier) and Patients (targetId) of every record linked to the same enterprise identity \
as the Patients holding the source identifier, as a Parameters resource; only Patients the caller may see, a \
source identifier only withheld Patients hold answers 404 like an unknown one; audited.";

const ATTEST_DOC: &str =
    "POST Patient/[id]/$attest-treatment: the requester's participant attests a treatment \
relationship with the patient (recorded and audited); answers an OperationOutcome.";

const MPI_REVIEW_DOC: &str = "GET Patient/$mpi-review[?_count=]: the master patient index's review queue (operators \
only), best score first, as Parameters (patient-a, patient-b, identity-a, identity-b, score, grade); audited.";

const MPI_HISTORY_DOC: &str =
    "GET Patient/$mpi-history[?patient=&_count=]: the link history (operators only), who \
linked or unlinked what, when and why, newest first, as Parameters; audited.";

const MPI_DECIDE_DOC: &str = "POST Patient/$mpi-link and Patient/$mpi-unlink with Parameters (patient-a, patient-b \
as references, reason): an operator's decision that two Patients are (or are not) the same person, a hard \
constraint that later linking and rebuilds keep (unlinking regroups both sides); operators only, audited.";

/// The operations on Patient, with their OperationDefinition canonicals.
fn patient_operations(base_url: &str) -> Value {
    let own = |name: &str, doc: &str| {
        json!({
            "name": name,
            "definition": format!("{base_url}/OperationDefinition/Patient-{name}"),
            "documentation": doc,
        })
    };
    json!([
        {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        },
        own("disclosures", DISCLOSURES_DOC),
        {
            "name": "match",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
            "documentation": MATCH_DOC,
        },
        {
            "name": "ihe-pix",
            "definition": PIXM_OPERATION,
            "documentation": PIX_DOC,
        },
        own("attest-treatment", ATTEST_DOC),
        own("mpi-review", MPI_REVIEW_DOC),
        own("mpi-history", MPI_HISTORY_DOC),
        own("mpi-link", MPI_DECIDE_DOC),
        own("mpi-unlink", MPI_DECIDE_DOC),
    ])
}

impl Repository {
    /// The CapabilityStatement of the IHE PDQm Patient Demographics Supplier at `[base]/pdqm`:
    /// Patient read and search by the PDQm parameters, and `$match` (ITI-119).
    pub fn pdqm_capability_statement(&self) -> Value {
        let base_url = &self.config.base_url;
        let mut params: Vec<Value> = super::pdqm::PDQM_PARAMS
            .iter()
            .map(|&code| {
                let found = definitions::search_params("Patient")
                    .iter()
                    .chain(definitions::common_search_params())
                    .find(|p| p.code == code);
                match found {
                    Some(p) => search_param_json(p),
                    None => json!({ "name": code, "type": "string" }),
                }
            })
            .collect();
        params.push(json!({
            "name": "mothersMaidenName",
            "definition": "http://hl7.org/fhir/SearchParameter/patient-extensions-Patient-mothersMaidenName",
            "type": "string",
            "documentation": format!("The mother's maiden name ({}): starts-with on the normal form, or :exact", super::pdqm::MOTHERS_MAIDEN_NAME),
        }));
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": fhir::search::datetime::format_instant(super::support::now_millis()),
            "publisher": "nutmeg",
            "kind": "instance",
            "instantiates": [PDQM_SUPPLIER],
            "software": { "name": "nutmeg", "version": env!("CARGO_PKG_VERSION") },
            "implementation": {
                "description": "nutmeg health information exchange: IHE PDQm enterprise-wide patient search",
                "url": format!("{base_url}/pdqm"),
            },
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [{
                "mode": "server",
                "documentation": "Mobile Patient Demographics Query [ITI-78]: every matching Patient \
                    (search.mode match) with the other records of the same enterprise identity (include), \
                    each Patient linked to the others of its person (link.type seealso); only Patients the \
                    caller may see, audited. Any parameter not listed is refused (400). Patient Demographics \
                    Match [ITI-119]: Patient/$match.",
                "resource": [{
                    "type": "Patient",
                    "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": params,
                    "operation": [{
                        "name": "match",
                        "definition": PDQM_MATCH,
                        "documentation": MATCH_DOC,
                    }],
                }],
            }],
        })
    }
}

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
                resource["operation"] = patient_operations(base_url);
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
        "instantiates": [PIXM_MANAGER],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "The exchange's FHIR R4 repository, an IHE PIXm Patient Identifier Cross-reference Manager \
                 (Patient/$ihe-pix). Its IHE PDQm Patient Demographics Supplier, enterprise-wide patient \
                 search, has its own base: {base_url}/pdqm (CapabilityStatement at {base_url}/pdqm/metadata)."
            ),
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|code| json!({ "code": code })).collect::<Vec<_>>(),
            "searchParam": definitions::common_search_params().iter().map(search_param_json).collect::<Vec<_>>(),
            "operation": patient_operations(base_url),
        }],
    })
}
