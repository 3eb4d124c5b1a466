//! Batch and transaction bundles against a real SQLite store, and a real Synthea patient loaded as a
//! transaction.

mod common;

use std::io::{Read, Write};

use common::{params, patient, repo, who};
use exchange::repository::{Error, Handling};
use serde_json::{json, Value};

fn transaction(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn post(full_url: &str, resource: Value) -> Value {
    let ty = resource["resourceType"].as_str().unwrap_or("").to_string();
    json!({ "fullUrl": full_url, "resource": resource, "request": { "method": "POST", "url": ty } })
}

fn observation_for(reference: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "1234-5" }] },
        "subject": { "reference": reference },
        "focus": [{ "reference": reference }],
        "extension": [{ "url": "http://example.org/x", "valueReference": { "reference": reference } }],
    })
}

async fn count(repo: &exchange::repository::Repository, ty: &str) -> u64 {
    let bundle = repo
        .search(
            &who(),
            Some(ty),
            &params("_summary=count"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("count");
    bundle["total"].as_u64().unwrap_or(u64::MAX)
}

/// `Type/id` from a response's `location` (`Type/id/_history/n`).
fn location(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().expect("location");
    location
        .split("/_history")
        .next()
        .unwrap_or(location)
        .to_string()
}

#[tokio::test]
async fn transaction_resolves_urn_uuids_everywhere() {
    let repo = repo().await;
    let bundle = transaction(vec![
        post(
            "urn:uuid:11111111-1111-4111-8111-111111111111",
            observation_for("urn:uuid:22222222-2222-4222-8222-222222222222"),
        ),
        post(
            "urn:uuid:22222222-2222-4222-8222-222222222222",
            patient("Txn", "1"),
        ),
    ]);
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created");
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
    }
    let obs_key = location(&entries[0]);
    let patient_key = location(&entries[1]);
    assert!(patient_key.starts_with("Patient/"));
    let (_, obs_id) = obs_key.split_once('/').expect("Type/id");
    let obs = repo
        .read(&who(), "Observation", obs_id)
        .await
        .expect("read back")
        .resource;
    assert_eq!(obs["subject"]["reference"], patient_key.as_str());
    assert_eq!(obs["focus"][0]["reference"], patient_key.as_str());
    assert_eq!(
        obs["extension"][0]["valueReference"]["reference"],
        patient_key.as_str()
    );
}

#[tokio::test]
async fn a_bad_entry_fails_the_whole_transaction() {
    let repo = repo().await;
    let mut bad = patient("Bad", "2");
    bad["birthDate"] = json!("not-a-date");
    let bundle = transaction(vec![
        post("urn:uuid:a", patient("Good", "1")),
        post("urn:uuid:b", bad),
    ]);
    let err = repo.bundle(&who(), bundle).await.expect_err("rejected");
    assert_eq!(err.status(), 400);
    let issues = err.issues();
    assert!(
        issues.iter().any(|i| i
            .expression
            .iter()
            .any(|e| e.starts_with("Bundle.entry[1].resource.birthDate"))),
        "{issues:?}"
    );
    assert_eq!(count(&repo, "Patient").await, 0, "nothing was stored");

    // A version conflict on one entry also rejects the whole bundle.
    let mut existing = patient("Existing", "3");
    existing["id"] = json!("existing");
    repo.update(&who(), "Patient", "existing", existing.clone(), None)
        .await
        .expect("seed");
    let bundle = transaction(vec![
        post("urn:uuid:c", patient("New", "4")),
        json!({ "resource": existing, "request": { "method": "PUT", "url": "Patient/existing", "ifMatch": "W/\"5\"" } }),
    ]);
    let err = repo.bundle(&who(), bundle).await.expect_err("stale");
    assert_eq!(err.status(), 412);
    assert_eq!(count(&repo, "Patient").await, 1);
}

#[tokio::test]
async fn processing_order_conditional_references_and_reads() {
    let repo = repo().await;
    let mut keep = patient("Keep", "k1");
    keep["id"] = json!("keep");
    repo.update(&who(), "Patient", "keep", keep, None)
        .await
        .expect("seed");
    let mut gone = patient("Gone", "g1");
    gone["id"] = json!("gone");
    repo.update(&who(), "Patient", "gone", gone, None)
        .await
        .expect("seed");

    let mut put = patient("Put", "p1");
    put["id"] = json!("put");
    let bundle = transaction(vec![
        // Listed first, processed last: it sees the transaction's writes.
        json!({ "request": { "method": "GET", "url": "Patient?identifier=http://example.org/mrn|p1" } }),
        json!({ "resource": put, "request": { "method": "PUT", "url": "Patient/put" } }),
        post(
            "urn:uuid:obs",
            observation_for("Patient?identifier=http://example.org/mrn|k1"),
        ),
        json!({ "request": { "method": "DELETE", "url": "Patient/gone" } }),
        json!({
            "resource": patient("Keep", "k1"),
            "request": { "method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://example.org/mrn|k1" },
        }),
    ]);
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    let entries = response["entry"].as_array().expect("entries");
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        vec![
            "200 OK",
            "201 Created",
            "201 Created",
            "204 No Content",
            "200 OK"
        ]
    );
    assert_eq!(
        entries[0]["resource"]["total"].as_u64().or(Some(1)),
        Some(1)
    );
    assert_eq!(entries[0]["resource"]["entry"][0]["resource"]["id"], "put");
    assert_eq!(location(&entries[4]), "Patient/keep");
    let obs_key = location(&entries[2]);
    let obs = repo
        .read(
            &who(),
            "Observation",
            obs_key.split_once('/').expect("key").1,
        )
        .await
        .expect("obs")
        .resource;
    assert_eq!(obs["subject"]["reference"], "Patient/keep");
    assert_eq!(
        repo.read(&who(), "Patient", "gone")
            .await
            .expect_err("deleted")
            .status(),
        410
    );

    // A conditional reference without a match fails the transaction.
    let bundle = transaction(vec![post(
        "urn:uuid:x",
        observation_for("Patient?identifier=http://example.org/mrn|none"),
    )]);
    let err = repo.bundle(&who(), bundle).await.expect_err("no match");
    assert!(matches!(err, Error::Entry { index: 0, .. }), "{err:?}");
    assert_eq!(err.status(), 400);
}

#[tokio::test]
async fn batch_entries_succeed_and_fail_independently() {
    let repo = repo().await;
    let mut bad = patient("Bad", "2");
    bad["birthDate"] = json!("not-a-date");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            { "resource": patient("Good", "1"), "request": { "method": "POST", "url": "Patient" } },
            { "resource": bad, "request": { "method": "POST", "url": "Patient" } },
            { "request": { "method": "GET", "url": "Patient/absent" } },
            { "request": { "method": "DELETE", "url": "Patient/absent" } },
        ],
    });
    let response = repo.bundle(&who(), bundle).await.expect("batch");
    assert_eq!(response["type"], "batch-response");
    let entries = response["entry"].as_array().expect("entries");
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        vec![
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "204 No Content"
        ]
    );
    assert_eq!(
        entries[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(count(&repo, "Patient").await, 1);
}

#[tokio::test]
async fn a_synthea_patient_loads_as_one_transaction() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/synthea/Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json.gz"
    );
    let Ok(file) = std::fs::File::open(path) else {
        // Written past the test harness's capture, so that a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: ../shared/data/synthea (the public test data) is not next to the repository"
        );
        return;
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip");
    let bundle: Value = serde_json::from_str(&text).expect("JSON");
    let sent = bundle["entry"].as_array().expect("entries").len();

    let repo = repo().await;
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), sent);
    assert!(entries
        .iter()
        .all(|e| e["response"]["status"] == "201 Created"));

    let patient_key = location(&entries[0]);
    assert!(patient_key.starts_with("Patient/"), "{patient_key}");
    let patient_id = patient_key.split_once('/').expect("key").1;
    let patient = repo
        .read(&who(), "Patient", patient_id)
        .await
        .expect("patient")
        .resource;
    assert_eq!(patient["name"][0]["family"], "Hoeger");

    // Every Observation's subject now points at the stored Patient.
    let observations = repo
        .search(
            &who(),
            Some("Observation"),
            &params(&format!("subject={patient_key}&_total=accurate")),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("observations");
    assert!(observations["total"].as_u64().unwrap_or(0) > 0);
    for entry in observations["entry"].as_array().expect("entries") {
        assert_eq!(
            entry["resource"]["subject"]["reference"],
            patient_key.as_str()
        );
    }
    let everything = repo
        .everything(&who(), patient_id, &params("_count=50"))
        .await
        .map(|b| b.to_value())
        .expect("everything");
    assert!(everything["entry"].as_array().map(Vec::len).unwrap_or(0) > 10);
}

fn status_of(entry: &Value) -> &str {
    entry["response"]["status"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_late_failure_undoes_every_earlier_entry() {
    let repo = repo().await;
    let mut keep = patient("Keep", "k1");
    keep["id"] = json!("keep");
    repo.update(&who(), "Patient", "keep", keep.clone(), None)
        .await
        .expect("seed");
    let mut gone = patient("Gone", "g1");
    gone["id"] = json!("gone");
    repo.update(&who(), "Patient", "gone", gone, None)
        .await
        .expect("seed");
    let mut changed = keep.clone();
    changed["active"] = json!(true);
    // Processed first: the DELETE, then the POSTs, then the PUT; the last POST has a conditional
    // reference that matches nothing, so everything is rejected.
    let bundle = transaction(vec![
        post("urn:uuid:new", patient("New", "n1")),
        json!({ "resource": changed, "request": { "method": "PUT", "url": "Patient/keep" } }),
        json!({ "request": { "method": "DELETE", "url": "Patient?identifier=http://example.org/mrn|g1" } }),
        post(
            "urn:uuid:obs",
            observation_for("Patient?identifier=http://example.org/mrn|nobody"),
        ),
    ]);
    let err = repo.bundle(&who(), bundle).await.expect_err("rejected");
    assert!(matches!(err, Error::Entry { index: 3, .. }), "{err:?}");
    assert_eq!(err.status(), 400);
    let outcome = err.outcome();
    assert!(
        outcome.to_string().contains("Bundle.entry[3]"),
        "the outcome names the entry: {outcome}"
    );
    let keep = repo
        .read(&who(), "Patient", "keep")
        .await
        .expect("still there");
    assert_eq!(keep.version, 1, "not updated");
    let gone = repo
        .read(&who(), "Patient", "gone")
        .await
        .expect("still there");
    assert_eq!(gone.version, 1, "not deleted");
    assert_eq!(count(&repo, "Patient").await, 2);
    assert_eq!(count(&repo, "Observation").await, 0);
}

#[tokio::test]
async fn transaction_conditions_and_duplicates() {
    let repo = repo().await;
    for i in 0..2 {
        repo.create(&who(), "Patient", patient("Twin", &format!("t{i}")), None)
            .await
            .expect("seed");
    }
    // ifNoneExist with several matches: 412 for the whole transaction.
    let bundle = transaction(vec![
        post("urn:uuid:a", patient("A", "a")),
        json!({
            "resource": patient("Twin", "t9"),
            "request": { "method": "POST", "url": "Patient", "ifNoneExist": "family=Twin" },
        }),
    ]);
    let err = repo.bundle(&who(), bundle).await.expect_err("several");
    assert_eq!(err.status(), 412);
    assert!(matches!(err, Error::Entry { index: 1, .. }), "{err:?}");
    assert_eq!(count(&repo, "Patient").await, 2);

    // The same resource twice: 400.
    let mut x = patient("X", "x");
    x["id"] = json!("x");
    let bundle = transaction(vec![
        json!({ "resource": x.clone(), "request": { "method": "PUT", "url": "Patient/x" } }),
        json!({ "request": { "method": "DELETE", "url": "Patient/x" } }),
    ]);
    assert_eq!(
        repo.bundle(&who(), bundle)
            .await
            .expect_err("duplicate")
            .status(),
        400
    );

    // A conditional update inside a transaction, referred to by its fullUrl.
    let bundle = transaction(vec![
        json!({
            "fullUrl": "urn:uuid:0f0f0f0f-0000-4000-8000-000000000000",
            "resource": patient("Twin-updated", "t0"),
            "request": { "method": "PUT", "url": "Patient?identifier=http://example.org/mrn|t0" },
        }),
        post(
            "urn:uuid:obs",
            observation_for("urn:uuid:0f0f0f0f-0000-4000-8000-000000000000"),
        ),
    ]);
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(status_of(&entries[0]), "200 OK");
    let twin = location(&entries[0]);
    let obs = location(&entries[1]);
    let obs = repo
        .read(&who(), "Observation", obs.split_once('/').expect("key").1)
        .await
        .expect("obs")
        .resource;
    assert_eq!(obs["subject"]["reference"], twin.as_str());
    assert_eq!(count(&repo, "Patient").await, 2);
}

#[tokio::test]
async fn bundles_that_cannot_be_processed_are_400() {
    let repo = repo().await;
    let cases = vec![
        json!({ "resourceType": "Patient" }),
        json!({ "resourceType": "Bundle", "type": "collection", "entry": [] }),
        json!({ "resourceType": "Bundle", "entry": [] }),
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": {} }),
        transaction(vec![
            json!({ "request": { "method": "FETCH", "url": "Patient" } }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "POST" }, "resource": patient("A", "1") }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "POST", "url": "Patient" } }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "POST", "url": "Nonsense" }, "resource": patient("A", "1") }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "PUT", "url": "Patient/a$b" }, "resource": patient("A", "1") }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "PUT", "url": "Patient/other" }, "resource": { "resourceType": "Patient", "id": "mine" } }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "PUT", "url": "Patient/a", "ifMatch": "yesterday" }, "resource": { "resourceType": "Patient", "id": "a" } }),
        ]),
        transaction(vec![
            json!({ "request": { "method": "PATCH", "url": "Patient/a" }, "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json", "data": "bm90IGpzb24=" } }),
        ]),
        transaction(vec![json!("not an entry")]),
    ];
    for (i, bundle) in cases.into_iter().enumerate() {
        let err = repo.bundle(&who(), bundle).await.expect_err("rejected");
        assert_eq!(err.status(), 400, "case {i}: {err:?}");
        assert!(!err.issues().is_empty(), "case {i}");
    }
    assert_eq!(count(&repo, "Patient").await, 0);
}

#[tokio::test]
async fn patch_and_conditional_create_in_bundles() {
    use base64::Engine as _;
    let repo = repo().await;
    let mut p = patient("Patchy", "p1");
    p["id"] = json!("patchy");
    repo.update(&who(), "Patient", "patchy", p, None)
        .await
        .expect("seed");
    let patch = json!([{ "op": "replace", "path": "/name/0/family", "value": "Patched" }]);
    let data = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    let bundle = transaction(vec![json!({
        "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json", "data": data },
        "request": { "method": "PATCH", "url": "Patient/patchy", "ifMatch": "W/\"1\"" },
    })]);
    let response = repo.bundle(&who(), bundle).await.expect("patch");
    assert_eq!(status_of(&response["entry"][0]), "200 OK");
    let read = repo.read(&who(), "Patient", "patchy").await.expect("read");
    assert_eq!(read.resource["name"][0]["family"], "Patched");
    assert_eq!(read.version, 2);

    // In a batch, a conditional create that matches answers 200 with the existing resource.
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": patient("Patchy", "p1"),
                "request": { "method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://example.org/mrn|p1" },
            },
            { "request": { "method": "GET", "url": "Patient/patchy/_history/1" } },
            { "request": { "method": "GET", "url": "Patient?_id=patchy&_total=accurate" } },
        ],
    });
    let response = repo.bundle(&who(), batch).await.expect("batch");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(status_of(&entries[0]), "200 OK");
    assert_eq!(location(&entries[0]), "Patient/patchy");
    assert_eq!(entries[1]["resource"]["name"][0]["family"], "Patchy");
    assert_eq!(entries[2]["resource"]["total"], 1);
    assert_eq!(count(&repo, "Patient").await, 1);
}

#[tokio::test]
async fn resolved_references_must_point_at_allowed_types() {
    let repo = repo().await;
    let patient_url = "urn:uuid:33333333-3333-4333-8333-333333333333";
    let mut obs = observation_for(patient_url);
    // Observation.hasMember may refer to Observations, QuestionnaireResponses and
    // MolecularSequences, not to a Patient: only known once the urn:uuid is resolved.
    obs["hasMember"] = json!([{ "reference": patient_url }]);
    let bundle = transaction(vec![
        post("urn:uuid:44444444-4444-4444-8444-444444444444", obs),
        post(patient_url, patient("Target", "t1")),
    ]);
    let err = repo
        .bundle(&who(), bundle)
        .await
        .expect_err("wrong target type");
    assert_eq!(err.status(), 400);
    assert!(matches!(err, Error::Entry { index: 0, .. }), "{err:?}");
    assert!(
        err.issues().iter().any(|i| i
            .expression
            .iter()
            .any(|e| e.starts_with("Bundle.entry[0].resource.hasMember"))),
        "{:?}",
        err.issues()
    );
    assert_eq!(count(&repo, "Patient").await, 0);
}

#[tokio::test]
async fn a_read_that_cannot_succeed_fails_the_transaction_before_any_write() {
    let repo = repo().await;
    for url in [
        "Nonsense/1",
        "Patient?birthdate=notadate",
        "Patient/a$b",
        "Patient/x/_history/latest",
        "_history?_since=whenever",
        "Patient/x/$nonsense/more/segments",
    ] {
        let bundle = transaction(vec![
            post(
                "urn:uuid:55555555-5555-4555-8555-555555555555",
                patient("W", "w"),
            ),
            json!({ "request": { "method": "GET", "url": url } }),
        ]);
        let err = repo.bundle(&who(), bundle).await.expect_err(url);
        assert_eq!(err.status(), 400, "{url}");
        assert!(
            err.issues()
                .iter()
                .any(|i| i.expression == vec!["Bundle.entry[1].request.url".to_string()]),
            "{url}: {:?}",
            err.issues()
        );
    }
    assert_eq!(count(&repo, "Patient").await, 0);
}

#[tokio::test]
async fn a_read_of_an_absent_resource_fails_the_transaction() {
    let repo = repo().await;
    let mut gone = patient("Gone", "g");
    gone["id"] = json!("gone");
    repo.update(&who(), "Patient", "gone", gone, None)
        .await
        .expect("seed");
    repo.delete(&who(), "Patient", "gone")
        .await
        .expect("delete");
    for (url, status) in [
        ("Patient/absent", 404),
        ("Patient/gone", 410),
        ("Patient/gone/_history/9", 404),
        ("Patient/absent/$everything", 404),
    ] {
        let bundle = transaction(vec![
            post(
                "urn:uuid:66666666-6666-4666-8666-666666666666",
                patient("W", "w"),
            ),
            json!({ "request": { "method": "GET", "url": url } }),
        ]);
        let err = repo.bundle(&who(), bundle).await.expect_err(url);
        assert_eq!(err.status(), status, "{url}");
        assert!(
            matches!(err, Error::Entry { index: 1, .. }),
            "{url}: {err:?}"
        );
    }
    assert_eq!(count(&repo, "Patient").await, 0);
    // A read of what the transaction itself writes is fine, and sees the write.
    let mut made = patient("Made", "m");
    made["id"] = json!("made");
    let bundle = transaction(vec![
        json!({ "request": { "method": "GET", "url": "Patient/made" } }),
        json!({ "resource": made, "request": { "method": "PUT", "url": "Patient/made" } }),
    ]);
    let response = repo.bundle(&who(), bundle).await.expect("transaction");
    assert_eq!(
        response["entry"][0]["resource"]["name"][0]["family"],
        "Made"
    );
    assert_eq!(status_of(&response["entry"][1]), "201 Created");
}
