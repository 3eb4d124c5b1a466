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
    let operations: Vec<(&str, &str)> = patient["operation"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap_or(""),
                o["definition"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let own = |name: &str| format!("{}/OperationDefinition/Patient-{name}", common::BASE);
    assert_eq!(
        operations,
        [
            (
                "everything",
                "http://hl7.org/fhir/OperationDefinition/Patient-everything"
            ),
            ("disclosures", own("disclosures").as_str()),
            (
                "match",
                "http://hl7.org/fhir/OperationDefinition/Patient-match"
            ),
            (
                "ihe-pix",
                "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix"
            ),
            ("attest-treatment", own("attest-treatment").as_str()),
            ("mpi-review", own("mpi-review").as_str()),
            ("mpi-history", own("mpi-history").as_str()),
            ("mpi-link", own("mpi-link").as_str()),
            ("mpi-unlink", own("mpi-unlink").as_str()),
        ]
    );
    assert_eq!(cs["rest"][0]["operation"], patient["operation"]);
    // The exchange is a PIXm Manager (conditional update and delete, $ihe-pix) and says where its
    // PDQm supplier is.
    assert_eq!(
        cs["instantiates"],
        serde_json::json!([
            "https://profiles.ihe.net/ITI/PIXm/CapabilityStatement/IHE.PIXm.Manager"
        ])
    );
    assert!(cs["rest"][0]["documentation"]
        .as_str()
        .expect("documentation")
        .contains(&format!("{}/pdqm", common::BASE)));
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

#[tokio::test]
async fn the_pdqm_supplier_declares_itself_and_its_parameters() {
    let repo = repo().await;
    let cs = repo.pdqm_capability_statement();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(
        cs["instantiates"],
        serde_json::json!([
            "https://profiles.ihe.net/ITI/PDQm/CapabilityStatement/IHE.PDQm.PatientDemographicsSupplier"
        ])
    );
    assert_eq!(
        cs["implementation"]["url"],
        format!("{}/pdqm", common::BASE)
    );
    let resources = cs["rest"][0]["resource"].as_array().expect("resources");
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["type"], "Patient");
    let params: Vec<&str> = resources[0]["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // Every parameter ITI-78 requires of a supplier.
    for required in [
        "_id",
        "active",
        "family",
        "given",
        "identifier",
        "telecom",
        "birthdate",
        "address",
        "address-city",
        "address-country",
        "address-postalcode",
        "address-state",
        "gender",
        "mothersMaidenName",
    ] {
        assert!(params.contains(&required), "{required} in {params:?}");
    }
    let mmn = resources[0]["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mothersMaidenName")
        .unwrap();
    assert_eq!(
        mmn["definition"],
        "http://hl7.org/fhir/SearchParameter/patient-extensions-Patient-mothersMaidenName"
    );
    assert_eq!(
        resources[0]["operation"][0]["definition"],
        "https://profiles.ihe.net/ITI/PDQm/OperationDefinition/PDQmMatch"
    );
}
