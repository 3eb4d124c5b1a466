//! Search, history and `$everything` Bundles against a real SQLite store.

mod common;

use common::{entries, link, link_params, params, patient, repo, who};
use exchange::repository::{Handling, HistoryScope};
use serde_json::{json, Value};

async fn seed_patients(repo: &exchange::repository::Repository, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let outcome = repo
            .create(
                &who(),
                "Patient",
                patient(&format!("Family{i:02}"), &i.to_string()),
                None,
            )
            .await;
        ids.push(outcome.expect("create").resource.id);
    }
    ids
}

fn observation(patient_id: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
        "subject": { "reference": format!("Patient/{patient_id}") },
        "performer": [{ "reference": "Practitioner/doc" }],
        "effectiveDateTime": "2024-03-05",
    })
}

#[tokio::test]
async fn searchset_with_paging_links_and_total() {
    let repo = repo().await;
    let ids = seed_patients(&repo, 5).await;
    let bundle = repo
        .search(
            &who(),
            Some("Patient"),
            &params("family=Family&_count=2&_total=accurate"),
            Handling::Lenient,
        )
        .await
        .expect("search");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 5);
    let first = entries(&bundle);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(_, mode)| mode == "match"));
    let full_url = bundle["entry"][0]["fullUrl"].as_str().expect("fullUrl");
    assert!(
        full_url.starts_with("http://nutmeg.test/fhir/Patient/"),
        "{full_url}"
    );
    let self_link = link(&bundle, "self").expect("self link");
    assert!(
        self_link.starts_with("http://nutmeg.test/fhir/Patient?"),
        "{self_link}"
    );

    // Follow the next links to the end: every patient exactly once.
    let mut seen: Vec<String> = first.into_iter().map(|(k, _)| k).collect();
    let mut next = link(&bundle, "next");
    let mut pages = 1;
    while let Some(url) = next {
        let page = repo
            .search(
                &who(),
                Some("Patient"),
                &link_params(&url),
                Handling::Lenient,
            )
            .await
            .expect("next page");
        seen.extend(entries(&page).into_iter().map(|(k, _)| k));
        next = link(&page, "next");
        pages += 1;
        assert!(pages < 10, "paging ends");
    }
    seen.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("Patient/{id}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn unknown_parameters_lenient_and_strict() {
    let repo = repo().await;
    seed_patients(&repo, 1).await;
    let lenient = repo
        .search(
            &who(),
            Some("Patient"),
            &params("nonsense=1"),
            Handling::Lenient,
        )
        .await
        .expect("lenient search");
    let modes: Vec<String> = lenient["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(modes, vec!["match", "outcome"]);
    let strict = repo
        .search(
            &who(),
            Some("Patient"),
            &params("nonsense=1"),
            Handling::Strict,
        )
        .await;
    assert_eq!(strict.expect_err("strict").status(), 400);
    let malformed = repo
        .search(
            &who(),
            Some("Patient"),
            &params("birthdate=notadate"),
            Handling::Lenient,
        )
        .await;
    assert_eq!(malformed.expect_err("malformed").status(), 400);
    let unknown_type = repo
        .search(&who(), Some("Nonsense"), &[], Handling::Lenient)
        .await;
    assert_eq!(unknown_type.expect_err("unknown type").status(), 404);
}

#[tokio::test]
async fn summary_count_and_elements() {
    let repo = repo().await;
    seed_patients(&repo, 3).await;
    let count = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_summary=count"),
            Handling::Lenient,
        )
        .await
        .expect("count");
    assert_eq!(count["total"], 3);
    assert!(count.get("entry").is_none());

    let elements = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_elements=gender"),
            Handling::Lenient,
        )
        .await
        .expect("elements");
    let resource = &elements["entry"][0]["resource"];
    assert_eq!(resource["gender"], "female");
    assert!(resource.get("name").is_none(), "{resource}");
    assert!(resource.get("id").is_some());
    let tags = resource["meta"]["tag"].as_array().expect("tags");
    assert!(tags.iter().any(|t| t["code"] == "SUBSETTED"));

    let summary = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_summary=true"),
            Handling::Lenient,
        )
        .await
        .expect("summary");
    let resource = &summary["entry"][0]["resource"];
    assert!(
        resource.get("name").is_some(),
        "name is a summary element of Patient: {resource}"
    );
    assert!(resource.get("text").is_none());
}

#[tokio::test]
async fn includes_are_marked() {
    let repo = repo().await;
    let ids = seed_patients(&repo, 1).await;
    repo.create(&who(), "Observation", observation(&ids[0], "1234-5"), None)
        .await
        .expect("observation");
    let bundle = repo
        .search(
            &who(),
            Some("Observation"),
            &params("code=1234-5&_include=Observation:subject"),
            Handling::Lenient,
        )
        .await
        .expect("search");
    let got = entries(&bundle);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(format!("Patient/{}", ids[0]), "include".to_string())));
}

#[tokio::test]
async fn history_lists_every_version_with_request_and_response() {
    let repo = repo().await;
    let created = repo
        .create(&who(), "Patient", patient("H", "1"), None)
        .await
        .expect("create")
        .resource;
    let mut body = created.resource.clone();
    body["active"] = json!(true);
    repo.update(&who(), "Patient", &created.id, body, None)
        .await
        .expect("update");
    repo.delete(&who(), "Patient", &created.id)
        .await
        .expect("delete");

    let scope = HistoryScope::Instance("Patient".into(), created.id.clone());
    let history = repo.history(&who(), scope, &[]).await.expect("history");
    assert_eq!(history["type"], "history");
    let got: Vec<(String, String, bool)> = history["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["request"]["method"].as_str().unwrap_or("").to_string(),
                e["response"]["etag"].as_str().unwrap_or("").to_string(),
                e.get("resource").is_some(),
            )
        })
        .collect();
    let expected = vec![
        ("DELETE".to_string(), "W/\"3\"".to_string(), false),
        ("PUT".to_string(), "W/\"2\"".to_string(), true),
        ("POST".to_string(), "W/\"1\"".to_string(), true),
    ];
    assert_eq!(got, expected);

    let type_history = repo
        .history(
            &who(),
            HistoryScope::Type("Patient".into()),
            &params("_count=1"),
        )
        .await;
    let type_history = type_history.expect("type history");
    assert_eq!(type_history["entry"].as_array().map(Vec::len), Some(1));
    assert!(link(&type_history, "next").is_some());
    let bad = repo
        .history(&who(), HistoryScope::System, &params("_since=yesterday"))
        .await;
    assert_eq!(bad.expect_err("bad _since").status(), 400);
}

#[tokio::test]
async fn everything_has_the_patient_its_compartment_and_what_they_refer_to() {
    let repo = repo().await;
    let ids = seed_patients(&repo, 2).await;
    let mut doc =
        json!({ "resourceType": "Practitioner", "id": "doc", "name": [{ "family": "Doc" }] });
    repo.update(&who(), "Practitioner", "doc", doc.take(), None)
        .await
        .expect("practitioner");
    let obs = repo
        .create(&who(), "Observation", observation(&ids[0], "1"), None)
        .await
        .expect("obs")
        .resource
        .id;
    repo.create(&who(), "Observation", observation(&ids[1], "1"), None)
        .await
        .expect("other patient's obs");

    let bundle = repo
        .everything(&who(), &ids[0], &[])
        .await
        .expect("everything");
    let mut got: Vec<String> = entries(&bundle).into_iter().map(|(k, _)| k).collect();
    got.sort();
    let mut expected = vec![
        format!("Patient/{}", ids[0]),
        format!("Observation/{obs}"),
        "Practitioner/doc".to_string(),
    ];
    expected.sort();
    assert_eq!(got, expected);

    let only = repo
        .everything(&who(), &ids[0], &params("_type=Observation"))
        .await
        .expect("_type");
    let got: Vec<String> = entries(&only).into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, vec![format!("Observation/{obs}")]);
    assert_eq!(
        repo.everything(&who(), "nobody", &[])
            .await
            .expect_err("absent")
            .status(),
        404
    );
}
