//! Labelling on intake: every clinical resource written through the repository is stored with its
//! `meta.security` (from its codes, its source's licence, the labels the source sent, and what
//! derived resources point at), and the labels are searchable with `_security`.

mod common;

use common::{client, entries, params, participant, patient, repo_enforcing, who, Fixture};
use exchange::access::{PurposeOfUse, Requester};
use exchange::participants::{Kind, LicenceType, Status};
use exchange::repository::Handling;
use serde_json::{json, Value};

const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const LICENCE_TAG: &str = "https://nutmeg.example/fhir/CodeSystem/licence-type";

/// The stored labels of a resource, as `system-name|code` strings in stored order ("conf|R",
/// "act|MH"); other systems by their URL.
fn labels(resource: &Value) -> Vec<String> {
    resource["meta"]["security"]
        .as_array()
        .map(|codings| {
            codings
                .iter()
                .map(|c| {
                    let system = match c["system"].as_str().unwrap_or("") {
                        ACT => "act",
                        CONFIDENTIALITY => "conf",
                        other => other,
                    };
                    format!("{system}|{}", c["code"].as_str().unwrap_or(""))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check(resource: &Value, expected: &[&str]) {
    assert_eq!(labels(resource), expected, "{}", resource["meta"]);
}

fn condition(patient_id: &str, icd10: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd10 }] },
    })
}

async fn stored(repo: &Fixture, ty: &str, id: &str) -> Value {
    repo.read(&who(), ty, id).await.expect("read").resource
}

async fn new_patient(repo: &Fixture) -> String {
    repo.create(&who(), "Patient", patient("Labelled", "mrn-1"), None)
        .await
        .expect("patient")
        .resource
        .id
}

async fn create(repo: &Fixture, as_who: &Requester, body: Value) -> (String, Value) {
    let ty = body["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let written = repo.create(as_who, &ty, body, None).await.expect("create");
    let id = written.resource.id.clone();
    // What the write answers is what was stored.
    assert_eq!(written.resource.resource, stored(repo, &ty, &id).await);
    (id, written.resource.resource)
}

#[tokio::test]
async fn a_depression_diagnosis_is_mental_health_and_restricted() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (_, c) = create(&repo, &who(), condition(&p, "F32.9")).await;
    check(&c, &["conf|R", "act|MH", "act|BH"]);
}

#[tokio::test]
async fn opioid_dependence_is_part_2_and_very_restricted() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (_, c) = create(&repo, &who(), condition(&p, "F11.20")).await;
    check(&c, &["conf|V", "act|MH", "act|BH", "act|ETH", "act|SUD"]);
}

#[tokio::test]
async fn a_normal_heart_rate_is_normal() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (_, o) = create(&repo, &who(), common::observation(&p)).await;
    check(&o, &["conf|N"]);
}

#[tokio::test]
async fn a_patient_and_the_directory_keep_what_the_source_sent() {
    let repo = repo_enforcing().await;
    let (_, plain) = create(&repo, &who(), patient("Plain", "mrn-2")).await;
    assert!(plain["meta"].get("security").is_none(), "{}", plain["meta"]);
    let mut restricted = patient("Restricted", "mrn-3");
    restricted["meta"] = json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] });
    let (_, restricted) = create(&repo, &who(), restricted).await;
    check(&restricted, &["conf|R"]);
    let (_, org) = create(
        &repo,
        &who(),
        json!({ "resourceType": "Organization", "name": "Detox Clinic" }),
    )
    .await;
    assert!(org["meta"].get("security").is_none(), "{}", org["meta"]);
}

#[tokio::test]
async fn what_the_source_labelled_very_restricted_stays_so() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let mut o = common::observation(&p);
    o["meta"] = json!({ "security": [{ "system": CONFIDENTIALITY, "code": "V" }] });
    let (id, o) = create(&repo, &who(), o).await;
    check(&o, &["conf|V"]);

    // An update that does not send the labels back keeps them: labels never go down.
    let mut changed = common::observation(&p);
    changed["id"] = json!(id);
    changed["valueQuantity"]["value"] = json!(80);
    let updated = repo
        .update(&who(), "Observation", &id, changed, None)
        .await
        .expect("update");
    check(&updated.resource.resource, &["conf|V"]);
    check(&stored(&repo, "Observation", &id).await, &["conf|V"]);

    // Nor does a patch that leaves them alone, or one that removes them.
    let patched = repo
        .patch(
            &who(),
            "Observation",
            &id,
            json!([{ "op": "remove", "path": "/meta/security" }]),
            None,
        )
        .await
        .expect("patch");
    check(&patched.resource.resource, &["conf|V"]);

    // Lowering them takes a delete: a resource created again starts from what is sent.
    repo.delete(&who(), "Observation", &id)
        .await
        .expect("delete");
    let mut again = common::observation(&p);
    again["id"] = json!(id);
    let recreated = repo
        .update(&who(), "Observation", &id, again, None)
        .await
        .expect("update as create");
    assert!(recreated.created);
    check(&recreated.resource.resource, &["conf|N"]);
}

#[tokio::test]
async fn batch_entries_are_labelled_each_on_its_own() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let response = repo
        .bundle(
            &who(),
            json!({
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": condition(&p, "F32.9"),
                        "request": { "method": "POST", "url": "Condition" },
                    },
                    {
                        "resource": condition(&p, "F11.20"),
                        "request": { "method": "POST", "url": "Condition" },
                    },
                ],
            }),
        )
        .await
        .expect("batch");
    let mut found = Vec::new();
    for entry in response["entry"].as_array().expect("entries") {
        let location = entry["response"]["location"].as_str().expect("location");
        let id = location.split('/').rev().nth(2).expect("id");
        found.push(labels(&stored(&repo, "Condition", id).await));
    }
    assert_eq!(
        found,
        [
            vec!["conf|R", "act|MH", "act|BH"],
            vec!["conf|V", "act|MH", "act|BH", "act|ETH", "act|SUD"],
        ]
    );
}

#[tokio::test]
async fn labels_from_codes_survive_an_update_that_does_not_send_them() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (id, _) = create(&repo, &who(), condition(&p, "F32.9")).await;
    let mut body = condition(&p, "F32.9");
    body["id"] = json!(id);
    body["clinicalStatus"] = json!({ "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "remission"
    }] });
    let updated = repo
        .update(&who(), "Condition", &id, body, None)
        .await
        .expect("update");
    assert_eq!(updated.resource.version, 2);
    check(&updated.resource.resource, &["conf|R", "act|MH", "act|BH"]);
    check(
        &stored(&repo, "Condition", &id).await,
        &["conf|R", "act|MH", "act|BH"],
    );
}

#[tokio::test]
async fn what_a_marriage_and_family_therapist_sends_is_behavioral_health() {
    let repo = repo_enforcing().await;
    let practice = repo
        .add_participant(&who(), &common::solo_therapist("LMFT-0042"))
        .await
        .expect("registered")
        .id;
    for next in [Status::Onboarding, Status::Live] {
        repo.set_participant_status(&who(), &practice, next)
            .await
            .expect("status");
    }
    let therapist = client(&practice, "system/*.cruds", PurposeOfUse::Treat);
    let p = new_patient(&repo).await;

    // A heart rate says nothing sensitive by its codes; its source does.
    let mut o = common::observation(&p);
    // A participant cannot claim another source: the registry says who it is.
    o["meta"] = json!({ "tag": [{ "system": LICENCE_TAG, "code": "physician" }] });
    let (id, o) = create(&repo, &therapist, o).await;
    check(&o, &["conf|R", "act|BH"]);
    let tags: Vec<&str> = o["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["system"] == LICENCE_TAG)
        .filter_map(|t| t["code"].as_str())
        .collect();
    assert_eq!(tags, ["LMFT"]);

    // The exchange's own tools updating it later keep the source and its labels.
    let mut body = common::observation(&p);
    body["id"] = json!(id);
    let updated = repo
        .update(&who(), "Observation", &id, body, None)
        .await
        .expect("update");
    check(&updated.resource.resource, &["conf|R", "act|BH"]);
    assert_eq!(
        updated.resource.resource["meta"]["tag"][0]["code"], "LMFT",
        "{}",
        updated.resource.resource["meta"]
    );

    // A hospital's writes are labelled from their codes only.
    let hospital = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let hospital = client(&hospital, "system/*.cruds", PurposeOfUse::Treat);
    let (_, o) = create(&repo, &hospital, common::observation(&p)).await;
    check(&o, &["conf|N"]);
}

/// A live solo practice whose practitioner holds `licence_type`; answers its client.
async fn solo_practice(
    repo: &Fixture,
    licence_type: LicenceType,
    number: &str,
) -> (String, Requester) {
    let mut practice = common::solo_therapist("LMFT-0042");
    if let Some(p) = practice.practitioner.as_mut() {
        p.npi = None;
        p.licence_type = licence_type;
        p.licence.number = number.to_string();
    }
    let id = repo
        .add_participant(&who(), &practice)
        .await
        .expect("registered")
        .id;
    for next in [Status::Onboarding, Status::Live] {
        repo.set_participant_status(&who(), &id, next)
            .await
            .expect("status");
    }
    let client = client(&id, "system/*.cruds", PurposeOfUse::Treat);
    (id, client)
}

#[tokio::test]
async fn each_licence_type_labels_what_its_practice_sends() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let cases: &[(LicenceType, &[&str])] = &[
        (LicenceType::Lcsw, &["conf|R", "act|BH"]),
        (LicenceType::Lpc, &["conf|R", "act|BH"]),
        (LicenceType::Ladc, &["conf|R", "act|BH"]),
        (LicenceType::Psychologist, &["conf|R", "act|BH"]),
        (LicenceType::Psychiatrist, &["conf|R", "act|PSY", "act|BH"]),
        (LicenceType::Physician, &["conf|N"]),
        (LicenceType::NursePractitioner, &["conf|N"]),
    ];
    for (n, (licence_type, expected)) in cases.iter().enumerate() {
        let (_, sender) = solo_practice(&repo, *licence_type, &format!("SOLO-{n}")).await;
        let (_, o) = create(&repo, &sender, common::observation(&p)).await;
        assert_eq!(labels(&o), *expected, "{licence_type:?}");
    }
}

#[tokio::test]
async fn a_licence_changed_in_the_registry_holds_at_once() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (practice, sender) = solo_practice(&repo, LicenceType::Physician, "SOLO-1").await;
    let (_, o) = create(&repo, &sender, common::observation(&p)).await;
    check(&o, &["conf|N"]);

    // The operator corrects the practitioner's licence type: a psychiatrist.
    let roles = repo
        .search(
            &who(),
            Some("PractitionerRole"),
            &params(&format!("organization=Organization/{practice}")),
            Handling::Strict,
        )
        .await
        .expect("search")
        .to_value();
    let practitioner = roles["entry"][0]["resource"]["practitioner"]["reference"]
        .as_str()
        .expect("a practitioner")
        .trim_start_matches("Practitioner/")
        .to_string();
    let mut record = stored(&repo, "Practitioner", &practitioner).await;
    record["qualification"][0]["code"]["coding"][0]["code"] = json!("psychiatrist");
    repo.update(&who(), "Practitioner", &practitioner, record, None)
        .await
        .expect("update");

    let (_, o) = create(&repo, &sender, common::observation(&p)).await;
    check(&o, &["conf|R", "act|PSY", "act|BH"]);
}

#[tokio::test]
async fn a_transaction_labels_its_entries_and_what_derives_from_them() {
    let repo = repo_enforcing().await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000001",
                "resource": patient("Bundled", "mrn-9"),
                "request": { "method": "POST", "url": "Patient" },
            },
            {
                // Before the Condition it lists: labels come from the whole bundle, in any order.
                "fullUrl": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000004",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "subject": { "reference": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000001" },
                    "entry": [{ "item": {
                        "reference": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000002"
                    } }],
                },
                "request": { "method": "POST", "url": "List" },
            },
            {
                "fullUrl": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Condition",
                    "subject": { "reference": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000001" },
                    "code": { "coding": [{
                        "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"
                    }] },
                },
                "request": { "method": "POST", "url": "Condition" },
            },
            {
                "fullUrl": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
                    "subject": { "reference": "urn:uuid:8d0c3c8e-0000-4000-8000-000000000001" },
                    "valueQuantity": { "value": 72, "unit": "/min" },
                },
                "request": { "method": "POST", "url": "Observation" },
            },
        ],
    });
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    let location = |i: usize| {
        let location = response["entry"][i]["response"]["location"]
            .as_str()
            .expect("location")
            .to_string();
        let parts: Vec<&str> = location.split('/').collect();
        let n = parts.len();
        (parts[n - 4].to_string(), parts[n - 3].to_string())
    };
    let (ty, id) = location(0);
    assert!(stored(&repo, &ty, &id).await["meta"]
        .get("security")
        .is_none());
    let (ty, id) = location(2);
    assert_eq!(ty, "Condition");
    check(
        &stored(&repo, &ty, &id).await,
        &["conf|V", "act|MH", "act|BH", "act|ETH", "act|SUD"],
    );
    let (ty, id) = location(1);
    assert_eq!(ty, "List");
    check(
        &stored(&repo, &ty, &id).await,
        &["conf|V", "act|MH", "act|BH", "act|ETH", "act|SUD"],
    );
    let (ty, id) = location(3);
    check(&stored(&repo, &ty, &id).await, &["conf|N"]);
}

#[tokio::test]
async fn derived_resources_take_the_stored_labels_of_what_they_point_at() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (c, _) = create(&repo, &who(), condition(&p, "F32.9")).await;
    let (o, _) = create(&repo, &who(), common::observation(&p)).await;
    let (_, provenance) = create(
        &repo,
        &who(),
        json!({
            "resourceType": "Provenance",
            "target": [{ "reference": format!("Condition/{c}") }],
            "recorded": "2026-01-02T03:04:05Z",
            "agent": [{ "who": { "display": "Intake" } }],
        }),
    )
    .await;
    check(&provenance, &["conf|R", "act|MH", "act|BH"]);
    let (_, report) = create(
        &repo,
        &who(),
        json!({
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": { "text": "Vitals" },
            "subject": { "reference": format!("Patient/{p}") },
            "result": [{ "reference": format!("Observation/{o}") }],
        }),
    )
    .await;
    check(&report, &["conf|N"]);
}

#[tokio::test]
async fn labels_are_searchable() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let (depression, _) = create(&repo, &who(), condition(&p, "F32.9")).await;
    let (opioids, _) = create(&repo, &who(), condition(&p, "F11.20")).await;
    let (_, _) = create(&repo, &who(), condition(&p, "I10")).await;
    let search = |query: &'static str| {
        let repo = &repo;
        async move {
            let found = repo
                .search(&who(), Some("Condition"), &params(query), Handling::Strict)
                .await
                .expect("search")
                .to_value();
            let mut ids: Vec<String> = entries(&found)
                .into_iter()
                .map(|(key, _)| key.trim_start_matches("Condition/").to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![depression.clone(), opioids.clone()];
    both.sort();
    assert_eq!(
        search("_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|MH").await,
        both
    );
    assert_eq!(
        search("_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|SUD").await,
        [opioids]
    );
    assert_eq!(
        search("_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N")
            .await
            .len(),
        1
    );
}

/// Everything a psychiatric facility sends is psychiatric data (Conn. Gen. Stat. 52-146d), whatever
/// its codes: PSY and BH, restricted, and the facility recorded as the source. Another hospital
/// treating the patient does not get it while the patient has not been informed.
#[tokio::test]
async fn what_a_psychiatric_facility_sends_is_psychiatric() {
    let repo = repo_enforcing().await;
    let p = new_patient(&repo).await;
    let facility = participant(&repo, "Cedarcrest", Kind::PsychiatricFacility, Status::Live).await;
    let facility = client(&facility, "system/*.cruds", PurposeOfUse::Treat);
    let (id, o) = create(&repo, &facility, common::observation(&p)).await;
    check(&o, &["conf|R", "act|PSY", "act|BH"]);
    let hospital = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let hospital = client(&hospital, "system/*.cruds", PurposeOfUse::Treat);
    let (_, own) = create(&repo, &hospital, common::observation(&p)).await;
    check(&own, &["conf|N"]);
    let read = repo.read(&hospital, "Observation", &id).await;
    assert!(
        matches!(read, Err(exchange::repository::Error::NotFound)),
        "{read:?}"
    );
}
