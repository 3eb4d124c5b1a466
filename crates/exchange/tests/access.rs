//! The decision point: a resource it denies never leaves the repository, and a client cannot tell
//! it from one that does not exist (read, vread, search matches and includes, totals, history,
//! `$everything`).

mod common;

use std::sync::Arc;

use common::{entries, params, patient, repo_with, who};
use exchange::access::{Decision, DecisionPoint, Reason};
use exchange::repository::{Handling, HistoryScope};
use serde_json::json;

/// Denies every version of the Observation with id `secret`.
fn deny_secret() -> DecisionPoint {
    DecisionPoint::new().with_rule(Arc::new(|_, subject| {
        let stored = subject.stored;
        if stored.resource_type == "Observation" && stored.id == "secret" {
            Decision::deny(Reason::Rule("test rule".into()))
        } else {
            Decision::PERMIT
        }
    }))
}

fn observation(id: &str, patient_id: &str) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "1234-5" }] },
        "subject": { "reference": format!("Patient/{patient_id}") },
    })
}

#[tokio::test]
async fn a_denied_resource_is_withheld_everywhere() {
    let repo = repo_with(deny_secret()).await;
    let pid = repo
        .create(&who(), "Patient", patient("Gate", "1"), None)
        .await
        .expect("patient")
        .resource
        .id;
    repo.update(
        &who(),
        "Observation",
        "secret",
        observation("secret", &pid),
        None,
    )
    .await
    .expect("secret");
    repo.update(
        &who(),
        "Observation",
        "open",
        observation("open", &pid),
        None,
    )
    .await
    .expect("open");

    // read and vread: 404, the same as an id that never existed.
    let denied = repo
        .read(&who(), "Observation", "secret")
        .await
        .expect_err("denied");
    let absent = repo
        .read(&who(), "Observation", "never-existed")
        .await
        .expect_err("absent");
    assert_eq!(
        (denied.status(), denied.outcome()),
        (absent.status(), absent.outcome())
    );
    assert_eq!(
        repo.vread(&who(), "Observation", "secret", 1)
            .await
            .expect_err("vread")
            .status(),
        404
    );
    assert!(repo.read(&who(), "Observation", "open").await.is_ok());

    // search: not a match, not counted.
    let bundle = repo
        .search(
            &who(),
            Some("Observation"),
            &params("code=1234-5&_total=accurate"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("search");
    assert_eq!(
        entries(&bundle),
        vec![("Observation/open".to_string(), "match".to_string())]
    );
    assert_eq!(bundle["total"], 1);
    // Totals count only what may be seen, on every page and with _summary=count.
    for query in [
        "_summary=count",
        "_count=1&_total=accurate&_sort=-_id",
        "_count=1&_total=accurate&_sort=_id",
        "_count=0&_total=accurate",
    ] {
        let bundle = repo
            .search(
                &who(),
                Some("Observation"),
                &params(query),
                Handling::Strict,
            )
            .await
            .map(|b| b.to_value())
            .expect("search");
        assert_eq!(bundle["total"], 1, "{query}");
    }
    let history = repo
        .history(
            &who(),
            HistoryScope::Type("Observation".into()),
            &params("_count=1"),
        )
        .await
        .expect("history");
    if let Some(total) = history.get("total") {
        assert_eq!(total, 1, "history total");
    }

    // search: not included either.
    let bundle = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_revinclude=Observation:subject"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("revinclude");
    let got: Vec<String> = entries(&bundle).into_iter().map(|(k, _)| k).collect();
    assert!(got.contains(&"Observation/open".to_string()), "{got:?}");
    assert!(!got.contains(&"Observation/secret".to_string()), "{got:?}");

    // history, at every level: the instance history of the secret is the 404 of an absent id.
    let denied = repo
        .history(
            &who(),
            HistoryScope::Instance("Observation".into(), "secret".into()),
            &[],
        )
        .await
        .expect_err("instance history of the secret");
    let absent = repo
        .history(
            &who(),
            HistoryScope::Instance("Observation".into(), "never-existed".into()),
            &[],
        )
        .await
        .expect_err("instance history of an absent id");
    assert_eq!(
        (denied.status(), denied.outcome()),
        (absent.status(), absent.outcome())
    );
    assert_eq!(denied.status(), 404);
    for scope in [
        HistoryScope::Type("Observation".into()),
        HistoryScope::System,
    ] {
        let history = repo
            .history(&who(), scope.clone(), &[])
            .await
            .expect("history");
        let text = history.to_string();
        assert!(
            !text.contains("Observation/secret"),
            "{scope:?} discloses the secret"
        );
    }

    // $everything.
    let everything = repo
        .everything(&who(), &pid, &[])
        .await
        .map(|b| b.to_value())
        .expect("everything");
    let got: Vec<String> = entries(&everything).into_iter().map(|(k, _)| k).collect();
    assert!(got.contains(&"Observation/open".to_string()), "{got:?}");
    assert!(!got.contains(&"Observation/secret".to_string()), "{got:?}");

    // A batch GET of the secret is a 404 too.
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{ "request": { "method": "GET", "url": "Observation/secret" } }],
    });
    let response = repo.bundle(&who(), batch).await.expect("batch");
    assert_eq!(response["entry"][0]["response"]["status"], "404 Not Found");
}

/// Conditional interactions see only what the requester may see: a withheld match neither answers
/// a conditional create, nor counts towards "several matches", nor can be updated, patched or
/// deleted.
#[tokio::test]
async fn conditions_and_writes_do_not_reveal_a_denied_resource() {
    let repo = repo_with(deny_secret()).await;
    let pid = repo
        .create(&who(), "Patient", patient("Gate", "1"), None)
        .await
        .expect("patient")
        .resource
        .id;
    let mut secret = observation("secret", &pid);
    secret["identifier"] = json!([{ "system": "http://example.org/obs", "value": "s" }]);
    repo.update(&who(), "Observation", "secret", secret.clone(), None)
        .await
        .expect("secret");
    let mut open = observation("open", &pid);
    open["identifier"] = json!([{ "system": "http://example.org/obs", "value": "o" }]);
    repo.update(&who(), "Observation", "open", open, None)
        .await
        .expect("open");

    // If-None-Exist matching only the secret: no visible match, so a new resource is created
    // (the secret is neither returned nor reported as a match).
    let mut body = observation("ignored", &pid);
    body.as_object_mut().expect("object").remove("id");
    let created = repo
        .create(
            &who(),
            "Observation",
            body.clone(),
            Some("identifier=http://example.org/obs|s"),
        )
        .await
        .expect("conditional create");
    assert!(created.created);
    assert_ne!(created.resource.id, "secret");

    // A condition matching the secret and one visible resource matches one resource, not several.
    let matched = repo
        .create(
            &who(),
            "Observation",
            body.clone(),
            Some("identifier=http://example.org/obs|s,http://example.org/obs|o"),
        )
        .await
        .expect("one visible match");
    assert!(!matched.created);
    assert_eq!(matched.resource.id, "open");

    // The secret cannot be changed through any door; a delete answers as for an absent resource.
    let mut changed = secret.clone();
    changed["status"] = json!("amended");
    let update = repo
        .update(&who(), "Observation", "secret", changed, None)
        .await
        .expect_err("update of the secret");
    assert_eq!(update.status(), 404);
    let patch = repo
        .patch(
            &who(),
            "Observation",
            "secret",
            json!([{ "op": "replace", "path": "/status", "value": "amended" }]),
            None,
        )
        .await
        .expect_err("patch of the secret");
    assert_eq!(patch.status(), 404);
    assert_eq!(
        repo.delete(&who(), "Observation", "secret")
            .await
            .expect("delete answers as for an absent id"),
        None
    );
    assert_eq!(
        repo.conditional_delete(
            &who(),
            "Observation",
            &params("identifier=http://example.org/obs|s")
        )
        .await
        .expect("conditional delete"),
        0
    );
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{ "request": { "method": "DELETE", "url": "Observation/secret" } }],
    });
    repo.bundle(&who(), transaction).await.expect("transaction");

    // The secret is untouched: version 1, still stored (seen through a permissive repository).
    let stored = repo
        .store()
        .read("Observation", "secret")
        .await
        .expect("store read")
        .expect("still there");
    assert_eq!((stored.version, stored.deleted), (1, false));
}

/// Chains and `_has` look through references; a withheld resource must not decide whether
/// something matches (that would reveal what the withheld resource holds).
#[tokio::test]
async fn chains_and_has_do_not_look_through_a_denied_resource() {
    let repo = repo_with(deny_secret()).await;
    let pid = repo
        .create(&who(), "Patient", patient("Gate", "1"), None)
        .await
        .expect("patient")
        .resource
        .id;
    let mut secret = observation("secret", &pid);
    secret["code"]["coding"][0]["code"] = json!("9999-9");
    secret["performer"] = json!([{ "reference": "Practitioner/only-via-secret" }]);
    repo.update(
        &who(),
        "Practitioner",
        "only-via-secret",
        json!({ "resourceType": "Practitioner", "id": "only-via-secret" }),
        None,
    )
    .await
    .expect("practitioner");
    repo.update(&who(), "Observation", "secret", secret, None)
        .await
        .expect("secret");
    repo.update(
        &who(),
        "Observation",
        "open",
        observation("open", &pid),
        None,
    )
    .await
    .expect("open");
    for (id, result) in [("dr-secret", "secret"), ("dr-open", "open")] {
        let report = json!({
            "resourceType": "DiagnosticReport",
            "id": id,
            "status": "final",
            "code": { "text": "panel" },
            "subject": { "reference": format!("Patient/{pid}") },
            "result": [{ "reference": format!("Observation/{result}") }],
        });
        repo.update(&who(), "DiagnosticReport", id, report, None)
            .await
            .expect("report");
    }
    let search = |ty: &'static str, query: &'static str| {
        let repo = &repo;
        async move {
            let bundle = repo
                .search(&who(), Some(ty), &params(query), Handling::Strict)
                .await
                .map(|b| b.to_value())
                .expect("search");
            let keys: Vec<String> = entries(&bundle)
                .into_iter()
                .filter(|(_, mode)| mode == "match")
                .map(|(k, _)| k)
                .collect();
            (keys, bundle["total"].clone())
        }
    };
    // Reverse chaining through the secret: no match, and no count.
    let (keys, total) = search(
        "Patient",
        "_has:Observation:subject:code=9999-9&_total=accurate",
    )
    .await;
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(total, 0);
    // Through the visible observation it still works.
    let (keys, _) = search("Patient", "_has:Observation:subject:code=1234-5").await;
    assert_eq!(keys, vec![format!("Patient/{pid}")]);
    // Forward chaining through the secret: no match.
    let (keys, total) = search(
        "DiagnosticReport",
        "result:Observation.code=9999-9&_total=accurate",
    )
    .await;
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(total, 0);
    let (keys, _) = search("DiagnosticReport", "result:Observation.code=1234-5").await;
    assert_eq!(keys, vec!["DiagnosticReport/dr-open".to_string()]);
    // Nested: patients with a report whose result (the secret) has the code.
    let (keys, _) = search(
        "Patient",
        "_has:DiagnosticReport:subject:result:Observation.code=9999-9",
    )
    .await;
    assert!(keys.is_empty(), "{keys:?}");
    // Includes reached only through the secret (a withheld match, or a withheld step of an
    // :iterate chain) are left out.
    for (ty, query) in [
        (
            "Observation",
            "code=9999-9,1234-5&_include=Observation:performer",
        ),
        (
            "DiagnosticReport",
            "_id=dr-secret&_include=DiagnosticReport:result&_include:iterate=Observation:performer",
        ),
    ] {
        let bundle = repo
            .search(&who(), Some(ty), &params(query), Handling::Strict)
            .await
            .map(|b| b.to_value())
            .expect("search");
        let keys: Vec<String> = entries(&bundle).into_iter().map(|(k, _)| k).collect();
        assert!(!keys.is_empty(), "{query}");
        assert!(
            !keys
                .iter()
                .any(|k| k == "Observation/secret" || k == "Practitioner/only-via-secret"),
            "{query}: {keys:?}"
        );
    }
    // A chain in a conditional create does not match through the secret either.
    let report = json!({
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": { "text": "panel" },
    });
    let outcome = repo
        .create(
            &who(),
            "DiagnosticReport",
            report,
            Some("result:Observation.code=9999-9"),
        )
        .await
        .expect("conditional create");
    assert!(outcome.created);
}
