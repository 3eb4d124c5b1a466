//! Every write lands together with the AuditEvent that records it (one transaction): what was
//! written, about which patients, by whom; a write that fails leaves no record.

mod common;

use common::{patient, repo, who};
use serde_json::{json, Value};

/// The audit trail so far, as AuditEvent JSON, oldest first.
async fn trail(repo: &exchange::repository::Repository) -> Vec<Value> {
    repo.store()
        .audit_records(0, 1000)
        .await
        .expect("audit records")
        .into_iter()
        .map(|r| serde_json::from_str(&r.json).expect("AuditEvent JSON"))
        .collect()
}

/// The `what` references of an AuditEvent's entities.
fn whats(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn writes_are_recorded_with_their_versions_and_patients() {
    let repo = repo().await;
    let pid = repo
        .create(&who(), "Patient", patient("Okafor", "mrn-1"), None)
        .await
        .unwrap()
        .resource
        .id;
    let observation = json!({
        "resourceType": "Observation", "status": "final",
        "code": { "text": "weight" },
        "subject": { "reference": format!("Patient/{pid}") },
    });
    let oid = repo
        .create(&who(), "Observation", observation.clone(), None)
        .await
        .unwrap()
        .resource
        .id;
    let mut updated = observation.clone();
    updated["id"] = json!(oid);
    updated["status"] = json!("amended");
    repo.update(&who(), "Observation", &oid, updated.clone(), Some(1))
        .await
        .unwrap();

    // A write that fails (a stale If-Match) leaves no record.
    let stale = repo
        .update(&who(), "Observation", &oid, updated, Some(1))
        .await;
    assert_eq!(stale.expect_err("stale").status(), 412);

    let events = trail(&repo).await;
    assert_eq!(events.len(), 3);
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["C", "C", "U"]);
    assert_eq!(
        whats(&events[1]),
        [
            format!("Patient/{pid}"),
            format!("Observation/{oid}/_history/1")
        ]
    );
    assert_eq!(
        whats(&events[2]),
        [
            format!("Patient/{pid}"),
            format!("Observation/{oid}/_history/2")
        ]
    );
    assert_eq!(events[2]["agent"][2]["who"]["display"], "nutmeg test");
    assert_eq!(events[2]["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(
        events[2]["entity"][0]["what"]["identifier"]["value"],
        who().request_id
    );

    repo.delete(&who(), "Patient", &pid).await.unwrap();
    let events = trail(&repo).await;
    assert_eq!(events[3]["action"], "D");
    assert_eq!(
        whats(&events[3]),
        [format!("Patient/{pid}")],
        "a deleted Patient is named once, as the patient"
    );
    assert!(matches!(
        repo.store().verify_audit().await.unwrap(),
        store::AuditCheck::Intact { count: 4, .. }
    ));
}

#[tokio::test]
async fn a_transaction_is_one_record_and_a_failed_one_none() {
    let repo = repo().await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000a1",
              "resource": patient("Lindqvist", "mrn-2"),
              "request": { "method": "POST", "url": "Patient" } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "bp" },
                            "subject": { "reference": "urn:uuid:00000000-0000-4000-8000-0000000000a1" } },
              "request": { "method": "POST", "url": "Observation" } },
        ],
    });
    repo.bundle(&who(), bundle.clone()).await.unwrap();
    let events = trail(&repo).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["subtype"][0]["code"], "transaction");
    let named = whats(&events[0]);
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named[0].starts_with("Patient/") && named[1].starts_with("Observation/"));

    // An entry that fails rolls the whole transaction back, record included.
    let mut failing = bundle;
    failing["entry"][1]["request"] =
        json!({ "method": "PUT", "url": "Observation/x", "ifMatch": "W/\"9\"" });
    failing["entry"][1]["resource"]["id"] = json!("x");
    assert!(repo.bundle(&who(), failing).await.is_err());
    assert_eq!(trail(&repo).await.len(), 1);
}
