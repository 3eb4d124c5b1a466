//! The instance interactions against a real SQLite store: read, vread, create, update, patch, delete
//! and their conditional forms, with the statuses a client would see.

mod common;

use common::{params, patient, repo, who};
use exchange::repository::Error;
use serde_json::json;

fn status<T: std::fmt::Debug>(result: Result<T, Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

#[tokio::test]
async fn create_read_update_vread_delete() {
    let repo = repo().await;
    let mut body = patient("Alpha", "1");
    body["id"] = json!("client-chosen");
    let created = repo
        .create(&who(), "Patient", body, None)
        .await
        .expect("create");
    assert!(created.created);
    let id = created.resource.id.clone();
    assert_ne!(id, "client-chosen", "the server assigns the id on create");
    assert_eq!(created.resource.version, 1);
    assert_eq!(created.resource.resource["meta"]["versionId"], "1");
    assert!(created.resource.resource["meta"]["lastUpdated"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));

    let read = repo.read(&who(), "Patient", &id).await.expect("read");
    assert_eq!(read.resource["name"][0]["family"], "Alpha");
    assert_eq!(read.version, 1);

    let mut changed = read.resource.clone();
    changed["name"][0]["family"] = json!("Beta");
    let updated = repo
        .update(&who(), "Patient", &id, changed, Some(1))
        .await
        .expect("update");
    assert!(!updated.created);
    assert_eq!(updated.resource.version, 2);
    assert_eq!(
        repo.read(&who(), "Patient", &id)
            .await
            .expect("read")
            .resource["name"][0]["family"],
        "Beta"
    );
    assert_eq!(
        repo.vread(&who(), "Patient", &id, 1)
            .await
            .expect("vread")
            .resource["name"][0]["family"],
        "Alpha"
    );
    assert_eq!(status(repo.vread(&who(), "Patient", &id, 9).await), 404);

    assert_eq!(
        repo.delete(&who(), "Patient", &id).await.expect("delete"),
        Some(3)
    );
    assert_eq!(status(repo.read(&who(), "Patient", &id).await), 410);
    // Deleting again, or deleting what never existed, succeeds without writing.
    assert_eq!(
        repo.delete(&who(), "Patient", &id)
            .await
            .expect("delete again"),
        None
    );
    assert_eq!(
        repo.delete(&who(), "Patient", "never-was")
            .await
            .expect("delete absent"),
        None
    );
    // The history keeps the old versions.
    assert_eq!(
        repo.vread(&who(), "Patient", &id, 2)
            .await
            .expect("vread")
            .resource["name"][0]["family"],
        "Beta"
    );
}

#[tokio::test]
async fn statuses_of_bad_requests() {
    let repo = repo().await;
    let id = repo
        .create(&who(), "Patient", patient("A", "1"), None)
        .await
        .expect("create")
        .resource
        .id;
    let mut other_id = patient("A", "1");
    other_id["id"] = json!("someone-else");
    let current = repo
        .read(&who(), "Patient", &id)
        .await
        .expect("read")
        .resource;
    let cases: Vec<(&str, u16)> = vec![
        (
            "read of an unknown type",
            status(repo.read(&who(), "NoSuchType", "1").await),
        ),
        (
            "read of an unknown id",
            status(repo.read(&who(), "Patient", "nope").await),
        ),
        (
            "read of a malformed id",
            status(repo.read(&who(), "Patient", "a/b$").await),
        ),
        (
            "create with the wrong resourceType",
            status(
                repo.create(&who(), "Observation", patient("A", "2"), None)
                    .await,
            ),
        ),
        (
            "create of a non-resource",
            status(repo.create(&who(), "Patient", json!([1, 2]), None).await),
        ),
        (
            "update with another id in the body",
            status(repo.update(&who(), "Patient", &id, other_id, None).await),
        ),
        (
            "update without an id in the body",
            status(
                repo.update(&who(), "Patient", &id, patient("A", "1"), None)
                    .await,
            ),
        ),
        (
            "update with a stale If-Match",
            status(
                repo.update(&who(), "Patient", &id, current.clone(), Some(7))
                    .await,
            ),
        ),
        (
            "patch that does not apply",
            status(
                repo.patch(
                    &who(),
                    "Patient",
                    &id,
                    json!([{"op": "remove", "path": "/nothing"}]),
                    None,
                )
                .await,
            ),
        ),
        (
            "patch that is not a patch",
            status(
                repo.patch(&who(), "Patient", &id, json!({"op": "x"}), None)
                    .await,
            ),
        ),
        (
            "patch that changes the id",
            status(
                repo.patch(
                    &who(),
                    "Patient",
                    &id,
                    json!([{"op": "replace", "path": "/id", "value": "x"}]),
                    None,
                )
                .await,
            ),
        ),
        (
            "patch of an absent resource",
            status(
                repo.patch(&who(), "Patient", "absent", json!([]), None)
                    .await,
            ),
        ),
    ];
    let expected = [404, 404, 400, 400, 400, 400, 400, 412, 422, 400, 422, 404];
    for ((what, got), want) in cases.iter().zip(expected) {
        assert_eq!(*got, want, "{what}");
    }
    // Nothing above changed the resource.
    assert_eq!(
        repo.read(&who(), "Patient", &id)
            .await
            .expect("read")
            .version,
        1
    );
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_every_issue() {
    let repo = repo().await;
    let body = json!({ "resourceType": "Patient", "birthDate": "not-a-date", "gender": "sometimes", "unknownElement": 1 });
    let err = repo
        .create(&who(), "Patient", body, None)
        .await
        .expect_err("invalid");
    assert_eq!(err.status(), 400);
    let Error::Invalid(issues) = &err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert!(issues.len() >= 3, "every problem is reported: {issues:?}");
}

#[tokio::test]
async fn update_as_create_and_if_match() {
    let repo = repo().await;
    let mut body = patient("Chosen", "9");
    body["id"] = json!("chosen-id");
    let outcome = repo
        .update(&who(), "Patient", "chosen-id", body.clone(), None)
        .await
        .expect("update as create");
    assert!(outcome.created);
    assert_eq!(outcome.resource.version, 1);
    let second = repo
        .update(&who(), "Patient", "chosen-id", body.clone(), Some(1))
        .await
        .expect("update");
    assert_eq!(second.resource.version, 2);
    let stale = repo
        .update(&who(), "Patient", "chosen-id", body.clone(), Some(1))
        .await
        .expect_err("stale");
    assert!(
        matches!(stale, Error::PreconditionFailed { current: 2 }),
        "{stale:?}"
    );
    // A deleted resource is re-created by an update.
    repo.delete(&who(), "Patient", "chosen-id")
        .await
        .expect("delete");
    let again = repo
        .update(&who(), "Patient", "chosen-id", body, None)
        .await
        .expect("re-create");
    assert!(again.created);
    assert_eq!(again.resource.version, 4);
}

#[tokio::test]
async fn json_patch_writes_a_new_version() {
    let repo = repo().await;
    let id = repo
        .create(&who(), "Patient", patient("Before", "1"), None)
        .await
        .expect("create")
        .resource
        .id;
    let patch = json!([
        { "op": "replace", "path": "/name/0/family", "value": "After" },
        { "op": "add", "path": "/active", "value": true },
    ]);
    let outcome = repo
        .patch(&who(), "Patient", &id, patch, Some(1))
        .await
        .expect("patch");
    assert_eq!(outcome.resource.version, 2);
    let read = repo.read(&who(), "Patient", &id).await.expect("read");
    assert_eq!(read.resource["name"][0]["family"], "After");
    assert_eq!(read.resource["active"], true);
    // A patch that makes the resource invalid is refused.
    let bad = json!([{ "op": "replace", "path": "/birthDate", "value": "yesterday" }]);
    assert_eq!(
        status(repo.patch(&who(), "Patient", &id, bad, None).await),
        400
    );
}

#[tokio::test]
async fn conditional_create_update_delete() {
    let repo = repo().await;
    let first = repo
        .create(
            &who(),
            "Patient",
            patient("Cond", "100"),
            Some("identifier=http://example.org/mrn|100"),
        )
        .await;
    let first = first.expect("no match: created");
    assert!(first.created);
    let again = repo
        .create(
            &who(),
            "Patient",
            patient("Cond", "100"),
            Some("identifier=http://example.org/mrn|100"),
        )
        .await;
    let again = again.expect("one match: answered");
    assert!(!again.created);
    assert_eq!(again.resource.id, first.resource.id);

    repo.create(&who(), "Patient", patient("Cond", "200"), None)
        .await
        .expect("create");
    let many = repo
        .create(
            &who(),
            "Patient",
            patient("Cond", "300"),
            Some("family=Cond"),
        )
        .await;
    assert_eq!(status(many), 412, "several matches");

    // Conditional update: one match updates it, none creates.
    let mut body = patient("Cond-updated", "100");
    let updated = repo
        .conditional_update(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|100"),
            body.clone(),
        )
        .await
        .expect("conditional update");
    assert!(!updated.created);
    assert_eq!(updated.resource.id, first.resource.id);
    assert_eq!(updated.resource.version, 2);
    body["identifier"][0]["value"] = json!("400");
    let created = repo
        .conditional_update(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|400"),
            body,
        )
        .await
        .expect("conditional update creates");
    assert!(created.created);
    assert_eq!(
        status(
            repo.conditional_update(&who(), "Patient", &params("family=Cond"), patient("X", "1"))
                .await
        ),
        412
    );

    // Conditional delete.
    let deleted = repo
        .conditional_delete(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|400"),
        )
        .await
        .expect("conditional delete");
    assert_eq!(deleted, 1);
    assert_eq!(
        status(repo.read(&who(), "Patient", &created.resource.id).await),
        410
    );
    let none = repo
        .conditional_delete(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|999"),
        )
        .await;
    assert_eq!(none.expect("no match is fine"), 0);
}

#[tokio::test]
async fn conditional_edge_cases() {
    let repo = repo().await;
    for i in 0..2 {
        repo.create(&who(), "Patient", patient("Twin", &format!("t{i}")), None)
            .await
            .expect("create");
    }
    // Several matches: 412 for a conditional delete too, and nothing is deleted.
    let many = repo
        .conditional_delete(&who(), "Patient", &params("family=Twin"))
        .await;
    let many = many.expect_err("several matches");
    assert!(matches!(many, Error::MultipleMatches), "{many:?}");
    assert_eq!(many.status(), 412);
    assert_eq!(many.outcome()["issue"][0]["code"], "multiple-matches");
    // One match whose id differs from the body's id: 400, nothing written.
    let mut body = patient("Twin", "t0");
    body["id"] = json!("not-the-match");
    let err = repo
        .conditional_update(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|t0"),
            body.clone(),
        )
        .await
        .expect_err("id mismatch");
    assert_eq!(err.status(), 400);
    // No match and an id in the body: update-as-create with that id.
    let created = repo
        .conditional_update(
            &who(),
            "Patient",
            &params("identifier=http://example.org/mrn|nobody"),
            body,
        )
        .await
        .expect("conditional update creates with the body's id");
    assert!(created.created);
    assert_eq!(created.resource.id, "not-the-match");
    // Conditions that are empty, malformed or use unknown parameters are 400: a condition that
    // ignored a parameter would match more than the client meant.
    for condition in ["", "_count=5", "birthdate=notadate", "nonsense=1"] {
        let create = repo
            .create(&who(), "Patient", patient("X", "x"), Some(condition))
            .await;
        assert_eq!(status(create), 400, "If-None-Exist: {condition:?}");
        let update = repo
            .conditional_update(&who(), "Patient", &params(condition), patient("X", "x"))
            .await;
        assert_eq!(status(update), 400, "conditional update: {condition:?}");
        let delete = repo
            .conditional_delete(&who(), "Patient", &params(condition))
            .await;
        assert_eq!(status(delete), 400, "conditional delete: {condition:?}");
    }
    // If-Match against a resource that does not exist is a stale version as well.
    let mut absent = patient("Absent", "a");
    absent["id"] = json!("absent");
    let err = repo
        .update(&who(), "Patient", "absent", absent, Some(1))
        .await
        .expect_err("If-Match on an absent resource");
    assert!(
        matches!(err, Error::PreconditionFailed { current: 0 }),
        "{err:?}"
    );
    assert_eq!(status(repo.read(&who(), "Patient", "absent").await), 404);
}

#[tokio::test]
async fn prefer_return_and_handling() {
    use exchange::repository::{Handling, Return};
    assert_eq!(Return::from_prefer(None), Return::Representation);
    assert_eq!(Return::from_prefer(Some("return=minimal")), Return::Minimal);
    assert_eq!(
        Return::from_prefer(Some("handling=strict, return=OperationOutcome")),
        Return::OperationOutcome
    );
    assert_eq!(
        Return::from_prefer(Some("return=representation")),
        Return::Representation
    );
    assert_eq!(
        Return::from_prefer(Some("return=bogus")),
        Return::Representation
    );
    assert_eq!(
        Handling::from_prefer(Some("handling=strict")),
        Handling::Strict
    );
    assert_eq!(
        Handling::from_prefer(Some("return=minimal; handling=strict")),
        Handling::Strict
    );
    assert_eq!(
        Handling::from_prefer(Some("handling=lenient")),
        Handling::Lenient
    );
    assert_eq!(Handling::from_prefer(None), Handling::Lenient);

    let repo = repo().await;
    let created = repo
        .create(&who(), "Patient", patient("Prefer", "1"), None)
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert!(created.body(Return::Minimal).is_none());
    let representation = created.body(Return::Representation).expect("body");
    assert_eq!(representation["id"], created.resource.id.as_str());
    let outcome = created.body(Return::OperationOutcome).expect("outcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");
    let v = &created.resource;
    assert_eq!(v.etag(), "W/\"1\"");
    assert_eq!(
        v.location("http://nutmeg.test/fhir/"),
        format!("http://nutmeg.test/fhir/Patient/{}/_history/1", v.id)
    );
    assert_eq!(
        v.last_modified(),
        v.resource["meta"]["lastUpdated"]
            .as_str()
            .expect("lastUpdated")
    );
    let mut body = v.resource.clone();
    body["active"] = json!(true);
    let updated = repo
        .update(&who(), "Patient", &v.id, body, Some(1))
        .await
        .expect("update");
    assert_eq!(updated.status(), 200);
}

#[tokio::test]
async fn delete_with_if_match() {
    let repo = repo().await;
    let id = repo
        .create(&who(), "Patient", patient("Del", "1"), None)
        .await
        .expect("create")
        .resource
        .id;
    let stale = repo
        .delete_if_match(&who(), "Patient", &id, Some(2))
        .await
        .expect_err("stale");
    assert!(
        matches!(stale, Error::PreconditionFailed { current: 1 }),
        "{stale:?}"
    );
    assert_eq!(
        repo.read(&who(), "Patient", &id)
            .await
            .expect("still there")
            .version,
        1
    );
    assert_eq!(
        repo.delete_if_match(&who(), "Patient", &id, Some(1))
            .await
            .expect("delete"),
        Some(2)
    );
    // Once deleted, no live version matches any If-Match.
    assert_eq!(
        status(repo.delete_if_match(&who(), "Patient", &id, Some(2)).await),
        412
    );
    // In a transaction, a stale ifMatch on a DELETE rejects the whole bundle.
    let mut keep = patient("Keep", "2");
    keep["id"] = json!("keep");
    repo.update(&who(), "Patient", "keep", keep, None)
        .await
        .expect("seed");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            { "request": { "method": "DELETE", "url": "Patient/keep", "ifMatch": "W/\"7\"" } },
            { "resource": patient("New", "3"), "request": { "method": "POST", "url": "Patient" } },
        ],
    });
    let err = repo.bundle(&who(), bundle).await.expect_err("stale delete");
    assert_eq!(err.status(), 412);
    assert!(matches!(err, Error::Entry { index: 0, .. }), "{err:?}");
    assert_eq!(status(repo.read(&who(), "Patient", "keep").await), 200);
}

/// Decimals keep their precision: `1.50` and `0.0100` come back as written, not as `1.5` and
/// `0.01` (FHIR gives trailing zeros meaning), on both engines.
#[tokio::test]
async fn decimals_keep_their_precision() {
    let repo = repo().await;
    // The precision lives in the text a client sends (json! would make 1.50 a float).
    let sent: serde_json::Value = serde_json::from_str(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "precision"},
            "component": [
              {"code": {"text": "a"}, "valueQuantity": {"value": 1.50, "unit": "g"}},
              {"code": {"text": "b"}, "valueQuantity": {"value": 0.0100, "unit": "g"}},
              {"code": {"text": "c"}, "valueInteger": 2147483647}
            ]}"#,
    )
    .expect("json");
    let created = repo
        .create(&who(), "Observation", sent, None)
        .await
        .expect("create");
    let read = repo
        .read(&who(), "Observation", &created.resource.id)
        .await
        .expect("read")
        .resource;
    let component = |i: usize| &read["component"][i];
    assert_eq!(component(0)["valueQuantity"]["value"].to_string(), "1.50");
    assert_eq!(component(1)["valueQuantity"]["value"].to_string(), "0.0100");
    assert_eq!(component(2)["valueInteger"].to_string(), "2147483647");
}
