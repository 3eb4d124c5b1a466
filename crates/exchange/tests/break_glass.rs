//! Break-the-glass, the sender recorded at intake, audited privacy denials, and update-as-create:
//!
//! - an emergency (`ETREAT`) disclosure is marked as such in the patient's accounting, and every
//!   participant whose data left is told once per request (a Communication addressed to it, seen by
//!   it and operators only, with no clinical content);
//! - a participant's write records it as the sender (a `meta.tag`), whatever it claims, and the
//!   first sender stays;
//! - what the privacy policy withholds is in the operators' audit trail with the policy's reasons,
//!   never in the patient's accounting or the answer;
//! - participants do not create data about patients by `PUT [type]/[id]` (405, naming POST and
//!   conditional update), the exchange's tools and operators still do, and the
//!   CapabilityStatement says so.
//!
//! Runs on SQLite, and on PostgreSQL with `NUTMEG_TEST_EXCHANGE_ENGINE=postgres` and
//! `NUTMEG_TEST_POSTGRES` (the common fixture).

mod common;

use common::*;
use exchange::access::{Principal, PurposeOfUse, Requester, Role};
use exchange::notices::{BREAK_THE_GLASS, NOTICE_SYSTEM};
use exchange::participants::{Kind, Status};
use exchange::repository::Handling;
use privacy::codes::SOURCE_PARTICIPANT_SYSTEM;
use serde_json::{json, Value};

const ALL: &str = "system/*.cruds";

fn operator() -> Requester {
    Requester::new(
        "req-operator",
        Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        true,
    )
}

fn patient_user(patient_id: &str) -> Requester {
    Requester::new(
        "req-patient",
        Principal::User {
            user_id: format!("user-{patient_id}"),
            participant: None,
            role: Role::Patient {
                patient_id: patient_id.to_string(),
            },
        },
        PurposeOfUse::Patrqt,
        true,
    )
}

fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn sender_of(resource: &Value) -> Option<String> {
    privacy::labels::source_participant(resource)
}

/// The break-the-glass notices `who` finds addressed to `org`.
async fn notices(repo: &Fixture, who: &Requester, org: &str) -> Vec<Value> {
    let found = repo
        .search(
            who,
            Some("Communication"),
            &params(&format!(
                "recipient=Organization/{org}&category={NOTICE_SYSTEM}|{BREAK_THE_GLASS}"
            )),
            Handling::Strict,
        )
        .await
        .expect("search notices")
        .to_value();
    resources(&found)
}

struct World {
    repo: Fixture,
    p1: String,
    /// A hospital that sent three Observations and a Condition about p1.
    hospital: String,
    /// An emergency department with no relationship to p1.
    er: String,
    /// A clinic with a treatment relationship to p1 (attested).
    clinic: String,
}

async fn world() -> World {
    let repo = repo_enforcing().await;
    let hospital = participant(&repo, "hospital", Kind::Hospital, Status::Live).await;
    let er = participant(&repo, "er", Kind::Hospital, Status::Live).await;
    let clinic = participant(&repo, "clinic", Kind::Clinic, Status::Live).await;
    let p1 = repo
        .create(&who(), "Patient", patient("Glass", "MRN-BG"), None)
        .await
        .expect("patient")
        .resource
        .id;
    let ehr = client(&hospital, ALL, PurposeOfUse::Treat);
    for _ in 0..3 {
        repo.create(&ehr, "Observation", observation(&p1), None)
            .await
            .expect("observation");
    }
    let condition = json!({
        "resourceType": "Condition",
        "subject": {"reference": format!("Patient/{p1}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    });
    repo.create(&ehr, "Condition", condition, None)
        .await
        .expect("condition");
    repo.attest_treatment(&client(&clinic, ALL, PurposeOfUse::Treat), &p1)
        .await
        .expect("attested");
    World {
        repo,
        p1,
        hospital,
        er,
        clinic,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_access_tells_the_patient_and_each_source_once() {
    let w = world().await;
    let repo = &w.repo;
    let er = client(&w.er, ALL, PurposeOfUse::Etreat);
    let everything = repo
        .everything(&er, &w.p1, &[])
        .await
        .expect("break the glass")
        .to_value();
    let got = resources(&everything);
    assert_eq!(got.len(), 5, "the Patient, three Observations, a Condition");

    // The source: one notice for the request, addressed to it, with counts and no content.
    let hospital = client(&w.hospital, ALL, PurposeOfUse::Treat);
    let told = notices(repo, &hospital, &w.hospital).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let notice = &told[0];
    assert_eq!(notice["subject"]["reference"], format!("Patient/{}", w.p1));
    assert_eq!(
        notice["about"][0]["reference"],
        format!("Organization/{}", w.er)
    );
    assert_eq!(notice["reasonCode"][0]["coding"][0]["code"], "ETREAT");
    let text = notice["payload"][0]["contentString"]
        .as_str()
        .expect("text");
    assert!(text.contains("1 Condition, 3 Observation"), "{text}");
    assert!(text.contains("client-of-"), "{text}");
    assert!(
        !text.contains("38341003") && !text.contains("8867-4"),
        "{text}"
    );

    // Nobody else sees it: not the requester, not another treating clinic, not the patient.
    assert!(notices(repo, &er, &w.hospital).await.is_empty());
    let clinic = client(&w.clinic, ALL, PurposeOfUse::Treat);
    assert!(notices(repo, &clinic, &w.hospital).await.is_empty());
    let own = patient_user(&w.p1);
    assert!(notices(repo, &own, &w.hospital).await.is_empty());
    let id = notice["id"].as_str().expect("id");
    assert_eq!(
        repo.read(&clinic, "Communication", id)
            .await
            .expect_err("not the clinic's")
            .status(),
        404
    );
    assert_eq!(notices(repo, &operator(), &w.hospital).await.len(), 1);

    // A second emergency request is a second notice; a plain treatment read is none.
    repo.search(
        &er,
        Some("Observation"),
        &params(&format!("subject=Patient/{}", w.p1)),
        Handling::Strict,
    )
    .await
    .expect("search");
    repo.search(
        &clinic,
        Some("Observation"),
        &params(&format!("subject=Patient/{}", w.p1)),
        Handling::Strict,
    )
    .await
    .expect("search");
    let told = notices(repo, &hospital, &w.hospital).await;
    assert_eq!(told.len(), 2);
    assert!(told.iter().any(|n| n["payload"][0]["contentString"]
        .as_str()
        .is_some_and(|t| t.contains(": 3 Observation."))));

    // The patient: the emergency access, marked as such, in their accounting.
    let accounting = repo
        .disclosures(&own, &w.p1, &[])
        .await
        .expect("accounting");
    let events = resources(&accounting);
    let emergency: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["meta"]["tag"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["code"] == BREAK_THE_GLASS))
        })
        .collect();
    assert_eq!(emergency.len(), 2, "{events:?}");
    for e in &emergency {
        assert_eq!(
            e["agent"][0]["who"]["reference"],
            format!("Organization/{}", w.er)
        );
        assert!(e["outcomeDesc"]
            .as_str()
            .is_some_and(|d| d.contains("emergency access")));
        assert!(e["recorded"].is_string());
    }
    let what: Vec<&str> = emergency[1]["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect();
    assert_eq!(what.len(), 5, "the patient and four resources: {what:?}");
    // The clinic's plain search is listed, not marked.
    let plain: Vec<&Value> = events
        .iter()
        .filter(|e| e["agent"][0]["who"]["reference"] == format!("Organization/{}", w.clinic))
        .collect();
    assert_eq!(plain.len(), 1);
    assert!(plain[0]["meta"]["tag"].is_null(), "{:?}", plain[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requesters_own_data_raises_no_notice() {
    let w = world().await;
    let repo = &w.repo;
    let hospital = client(&w.hospital, ALL, PurposeOfUse::Etreat);
    repo.everything(&hospital, &w.p1, &[])
        .await
        .expect("own data in an emergency");
    let treat = client(&w.hospital, ALL, PurposeOfUse::Treat);
    assert!(notices(repo, &treat, &w.hospital).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_records_the_sending_participant_and_keeps_the_first() {
    let w = world().await;
    let repo = &w.repo;
    let mut forged = observation(&w.p1);
    forged["meta"] = json!({"tag": [{"system": SOURCE_PARTICIPANT_SYSTEM, "code": w.er}]});
    let clinic = client(&w.clinic, ALL, PurposeOfUse::Treat);
    let sent = repo
        .create(&clinic, "Observation", forged, None)
        .await
        .expect("sent");
    assert_eq!(sender_of(&sent.resource.resource), Some(w.clinic.clone()));
    let stored = repo
        .read(&who(), "Observation", &sent.resource.id)
        .await
        .expect("read");
    assert_eq!(sender_of(&stored.resource), Some(w.clinic.clone()));

    // Another participant's update (it may see the resource) keeps the first sender.
    let hospital = client(&w.hospital, ALL, PurposeOfUse::Treat);
    let mut changed = stored.resource.clone();
    changed["valueQuantity"]["value"] = json!(80);
    if let Some(body) = changed.as_object_mut() {
        body.remove("meta");
    }
    let updated = repo
        .update(&hospital, "Observation", &sent.resource.id, changed, None)
        .await
        .expect("updated");
    assert_eq!(
        sender_of(&updated.resource.resource),
        Some(w.clinic.clone())
    );

    // The exchange's own import keeps the sender the data arrived with; a Patient is not tagged.
    let mut imported = observation(&w.p1);
    imported["meta"] = json!({"tag": [{"system": SOURCE_PARTICIPANT_SYSTEM, "code": w.er}]});
    let imported = repo
        .create(&who(), "Observation", imported, None)
        .await
        .expect("imported");
    assert_eq!(sender_of(&imported.resource.resource), Some(w.er.clone()));
    let p2 = repo
        .create(&clinic, "Patient", patient("Sent", "MRN-S"), None)
        .await
        .expect("patient");
    assert_eq!(sender_of(&p2.resource.resource), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_denials_are_audited_with_their_reasons_for_operators_only() {
    let w = world().await;
    let repo = &w.repo;
    let clinic = client(&w.clinic, ALL, PurposeOfUse::Treat);
    let o = repo
        .search(
            &clinic,
            Some("Observation"),
            &params(&format!("subject=Patient/{}", w.p1)),
            Handling::Strict,
        )
        .await
        .expect("before")
        .to_value();
    let one = resources(&o)[0]["id"].as_str().expect("id").to_string();
    let opt_out = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{}", w.p1)},
        "dateTime": "2026-01-10T09:00:00Z",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
    });
    repo.create(&operator(), "Consent", opt_out, None)
        .await
        .expect("opted out");

    // The requester sees nothing, and no reason.
    let err = repo
        .read(&clinic, "Observation", &one)
        .await
        .expect_err("withheld");
    assert_eq!(err.status(), 404);
    assert!(!err.outcome().to_string().contains("opted"));
    let found = repo
        .search(
            &clinic,
            Some("Observation"),
            &params(&format!("subject=Patient/{}", w.p1)),
            Handling::Strict,
        )
        .await
        .expect("after")
        .to_value();
    assert!(resources(&found).is_empty());
    assert!(!found.to_string().contains("opted"));

    // The operators' trail: the search names the three withheld versions, each with the
    // policy's reason; the read's record (written without holding up the 404) too.
    let withheld_in = |event: &Value| -> Vec<(String, String)> {
        event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["role"]["code"] == "withheld")
            .map(|e| {
                (
                    e["what"]["reference"].as_str().unwrap_or("").to_string(),
                    e["detail"][0]["valueString"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };
    let mut events = Vec::new();
    for _ in 0..100 {
        let trail = repo
            .search_audit_events(&operator(), &params(&format!("patient={}", w.p1)))
            .await
            .expect("operators' search");
        events = resources(&trail);
        if events.iter().filter(|e| !withheld_in(e).is_empty()).count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let denials: Vec<Vec<(String, String)>> = events
        .iter()
        .map(withheld_in)
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(denials.len(), 2, "{events:#?}");
    // The search (three Observations) and the read (one), in whichever order they landed.
    let mut sizes: Vec<usize> = denials.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1, 3], "{denials:?}");
    let single = denials.iter().find(|d| d.len() == 1).expect("the read");
    assert!(single[0]
        .0
        .starts_with(&format!("Observation/{one}/_history/")));
    for (_, reasons) in denials.iter().flatten() {
        assert_eq!(reasons, "opted-out");
    }
    let read = events
        .iter()
        .find(|e| withheld_in(e).len() == 1)
        .expect("the read's record");
    assert_eq!(read["outcome"], "4");
    assert_eq!(read["subtype"][0]["code"], "read");

    // The patient's accounting lists no withheld resource.
    let accounting = repo
        .disclosures(&operator(), &w.p1, &[])
        .await
        .expect("accounting")
        .to_string();
    assert!(!accounting.contains("withheld"), "{accounting}");
    assert!(!accounting.contains("opted-out"), "{accounting}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_create_data_about_patients_by_post_not_by_update() {
    let w = world().await;
    let repo = &w.repo;
    let clinic = client(&w.clinic, ALL, PurposeOfUse::Treat);
    let mut body = observation(&w.p1);
    body["id"] = json!("chosen-id");
    let refused = repo
        .update(&clinic, "Observation", "chosen-id", body.clone(), None)
        .await
        .expect_err("no update-as-create");
    assert_eq!(refused.status(), 405);
    let text = refused.outcome().to_string();
    assert!(
        text.contains("POST Observation") && text.contains("conditional update"),
        "{text}"
    );
    // The same in a transaction.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "PUT", "url": "Observation/chosen-id"}},
    ]});
    let refused = repo
        .bundle(&clinic, transaction)
        .await
        .expect_err("no update-as-create in a transaction");
    assert_eq!(refused.status(), 405);
    // A conditional update without an id creates, and then updates what it matched.
    let mut conditional = observation(&w.p1);
    conditional["identifier"] = json!([{"system": "http://example.org/obs", "value": "X-1"}]);
    let condition = params("identifier=http://example.org/obs|X-1");
    let created = repo
        .conditional_update(&clinic, "Observation", &condition, conditional.clone())
        .await
        .expect("conditional create");
    assert_eq!(created.status(), 201);
    let again = repo
        .conditional_update(&clinic, "Observation", &condition, conditional)
        .await
        .expect("conditional update");
    assert_eq!(again.status(), 200);
    assert_eq!(again.resource.id, created.resource.id);
    // An update of what exists and is visible works as before.
    let mut current = again.resource.resource.clone();
    current["status"] = json!("amended");
    repo.update(&clinic, "Observation", &created.resource.id, current, None)
        .await
        .expect("update");
    // The directory is not patient data: a participant may publish it under ids it chooses.
    let practitioner = json!({"resourceType": "Practitioner", "id": "dr-chosen",
        "name": [{"family": "Chosen"}]});
    assert_eq!(
        repo.update(&clinic, "Practitioner", "dr-chosen", practitioner, None)
            .await
            .expect("directory")
            .status(),
        201
    );
    // The exchange's tools and its operators still create by update.
    let mut imported = observation(&w.p1);
    imported["id"] = json!("imported-id");
    assert_eq!(
        repo.update(&who(), "Observation", "imported-id", imported, None)
            .await
            .expect("import")
            .status(),
        201
    );
    let operator = Requester::new(
        "req-operator",
        Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        true,
    );
    let mut paper = observation(&w.p1);
    paper["id"] = json!("paper-id");
    assert_eq!(
        repo.update(&operator, "Observation", "paper-id", paper, None)
            .await
            .expect("operator")
            .status(),
        201
    );
    // And the CapabilityStatement says which types.
    let capability = repo.capability_statement();
    let of = |ty: &str| {
        capability["rest"][0]["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["type"] == ty)
            .cloned()
            .expect("listed")
    };
    assert_eq!(of("Observation")["updateCreate"], false);
    assert_eq!(of("Patient")["updateCreate"], false);
    assert_eq!(of("Practitioner")["updateCreate"], true);
}
