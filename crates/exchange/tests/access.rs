//! The decision point: a resource it denies never leaves the repository, and a client cannot tell
//! it from one that does not exist (read, vread, search matches and includes, totals, history,
//! `$everything`).

mod common;

use std::sync::Arc;

use common::{entries, params, patient, repo_with, who};
use exchange::access::{Decision, DecisionPoint};
use exchange::repository::{Handling, HistoryScope};
use serde_json::json;

/// Denies every version of the Observation with id `secret`.
fn deny_secret() -> DecisionPoint {
    DecisionPoint::with_rule(Arc::new(|_, stored| {
        if stored.resource_type == "Observation" && stored.id == "secret" {
            Decision::Deny {
                reason: "test rule".into(),
            }
        } else {
            Decision::Permit
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
        .expect("search");
    assert_eq!(
        entries(&bundle),
        vec![("Observation/open".to_string(), "match".to_string())]
    );
    assert_eq!(bundle["total"], 1);

    // search: not included either.
    let bundle = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_revinclude=Observation:subject"),
            Handling::Lenient,
        )
        .await
        .expect("revinclude");
    let got: Vec<String> = entries(&bundle).into_iter().map(|(k, _)| k).collect();
    assert!(got.contains(&"Observation/open".to_string()), "{got:?}");
    assert!(!got.contains(&"Observation/secret".to_string()), "{got:?}");

    // history, at every level.
    for scope in [
        HistoryScope::Instance("Observation".into(), "secret".into()),
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
