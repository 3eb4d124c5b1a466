//! The CapabilityStatement says what the repository really supports.

mod common;

use common::repo;

#[tokio::test]
async fn capability_statement_lists_types_parameters_and_operations() {
    let repo = repo().await;
    let cs = repo.capability_statement();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().expect("resources");
    assert_eq!(resources.len(), fhir::definitions::resource_types().len());
    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient");
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for expected in ["birthdate", "family", "identifier", "name"] {
        assert!(params.contains(&expected), "{expected} in {params:?}");
    }
    assert_eq!(patient["operation"][0]["name"], "everything");
    assert_eq!(patient["operation"][1]["name"], "disclosures");
    assert_eq!(patient["operation"][2]["name"], "match");
    assert_eq!(
        patient["operation"][2]["definition"],
        "http://hl7.org/fhir/OperationDefinition/Patient-match"
    );
    let audit = resources
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent");
    assert_eq!(
        audit["interaction"],
        serde_json::json!([{ "code": "read" }, { "code": "search-type" }])
    );
    let audit_params: Vec<&str> = audit["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        audit_params,
        [
            "patient",
            "agent",
            "participant",
            "subtype",
            "purpose",
            "outcome",
            "date"
        ]
    );
    let revinclude: Vec<&str> = patient["searchRevInclude"]
        .as_array()
        .expect("revinclude")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        revinclude.contains(&"Observation:subject"),
        "{revinclude:?}"
    );
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .expect("interactions")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(interactions.contains(&"patch") && interactions.contains(&"history-instance"));
}
