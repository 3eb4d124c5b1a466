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
        .map(|b| b.to_value())
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
            .map(|b| b.to_value())
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
        .map(|b| b.to_value())
        .expect("lenient search");
    let modes: Vec<String> = lenient["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(modes, vec!["match", "outcome"]);
    // The self link shows the search that was carried out: the ignored parameters are not in it;
    // a chain that some of its target types lack is still part of the search, and of the link.
    for (ty, query, expected) in [
        (
            "Patient",
            "family=Family&nonsense=1&gender:sideways=x&_count=5",
            "/Patient?family=Family&_count=5",
        ),
        (
            "Observation",
            "subject.name=Family&nonsense=1",
            "/Observation?subject.name=Family",
        ),
    ] {
        let bundle = repo
            .search(&who(), Some(ty), &params(query), Handling::Lenient)
            .await
            .map(|b| b.to_value())
            .expect("lenient search");
        let self_link = link(&bundle, "self").expect("self link");
        assert!(self_link.ends_with(expected), "{query}: {self_link}");
    }
    let strict = repo
        .search(
            &who(),
            Some("Patient"),
            &params("nonsense=1"),
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(strict.expect_err("strict").status(), 400);
    let malformed = repo
        .search(
            &who(),
            Some("Patient"),
            &params("birthdate=notadate"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(malformed.expect_err("malformed").status(), 400);
    let unknown_type = repo
        .search(&who(), Some("Nonsense"), &[], Handling::Lenient)
        .await
        .map(|b| b.to_value());
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
        .map(|b| b.to_value())
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
        .map(|b| b.to_value())
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
        .map(|b| b.to_value())
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
        .map(|b| b.to_value())
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
        .map(|b| b.to_value())
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
        .map(|b| b.to_value())
        .expect("_type");
    let got: Vec<String> = entries(&only).into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, vec![format!("Observation/{obs}")]);
    assert_eq!(
        repo.everything(&who(), "nobody", &[])
            .await
            .map(|b| b.to_value())
            .expect_err("absent")
            .status(),
        404
    );
}

async fn put(repo: &exchange::repository::Repository, resource: Value) {
    let ty = resource["resourceType"].as_str().expect("type").to_string();
    let id = resource["id"].as_str().expect("id").to_string();
    repo.update(&who(), &ty, &id, resource, None)
        .await
        .expect("put");
}

async fn search_keys(
    repo: &exchange::repository::Repository,
    ty: &str,
    query: &str,
) -> Vec<(String, String)> {
    let bundle = repo
        .search(&who(), Some(ty), &params(query), Handling::Strict)
        .await
        .map(|b| b.to_value())
        .unwrap_or_else(|e| panic!("{ty}?{query}: {:?}", e.issues()));
    entries(&bundle)
}

fn matches(keys: &[(String, String)]) -> Vec<String> {
    keys.iter()
        .filter(|(_, mode)| mode == "match")
        .map(|(k, _)| k.clone())
        .collect()
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

fn person(id: &str, family: &str, birth: &str, org: Option<&str>) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{ "family": family }],
        "birthDate": birth,
    });
    if let Some(org) = org {
        p["managingOrganization"] = json!({ "reference": format!("Organization/{org}") });
    }
    p
}

fn obs(id: &str, patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
        "subject": { "reference": format!("Patient/{patient}") },
    })
}

/// Organizations, patients managed by them, observations about the patients, and an organization
/// that is part of another.
async fn seed_graph(repo: &exchange::repository::Repository) {
    put(
        repo,
        json!({ "resourceType": "Organization", "id": "parent", "name": "Parent Trust" }),
    )
    .await;
    put(repo, json!({ "resourceType": "Organization", "id": "acme", "name": "Acme Clinic", "partOf": { "reference": "Organization/parent" } })).await;
    put(
        repo,
        json!({ "resourceType": "Organization", "id": "other", "name": "Other Clinic" }),
    )
    .await;
    put(repo, person("p1", "Smith", "1980-01-01", Some("acme"))).await;
    put(repo, person("p2", "Smith", "1990-01-01", Some("other"))).await;
    put(repo, person("p3", "Jones", "1985-06-01", Some("acme"))).await;
    put(repo, obs("o1", "p1", "1111-1")).await;
    put(repo, obs("o2", "p2", "1111-1")).await;
    put(repo, obs("o3", "p3", "2222-2")).await;
}

#[tokio::test]
async fn sort_on_several_keys() {
    let repo = repo().await;
    seed_graph(&repo).await;
    let got = matches(&search_keys(&repo, "Patient", "_sort=family,-birthdate").await);
    assert_eq!(got, vec!["Patient/p3", "Patient/p2", "Patient/p1"]);
    let got = matches(&search_keys(&repo, "Patient", "_sort=-family,birthdate").await);
    assert_eq!(got, vec!["Patient/p1", "Patient/p2", "Patient/p3"]);
    let bad = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_sort=nonsense"),
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(bad.expect_err("unknown sort key").status(), 400);
}

#[tokio::test]
async fn total_none_estimate_and_accurate() {
    let repo = repo().await;
    seed_graph(&repo).await;
    let total = |query: &'static str| {
        let repo = &repo;
        async move {
            repo.search(&who(), Some("Patient"), &params(query), Handling::Strict)
                .await
                .map(|b| b.to_value())
                .expect("search")
                .get("total")
                .and_then(Value::as_u64)
        }
    };
    assert_eq!(
        total("family=Smith&_total=accurate&_count=1").await,
        Some(2)
    );
    assert_eq!(total("family=Smith&_total=none").await, None);
    let estimate = total("family=Smith&_total=estimate&_count=1").await;
    assert!(estimate.is_some_and(|n| n >= 1), "{estimate:?}");
    let bad = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_total=maybe"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(bad.expect_err("bad _total").status(), 400);
}

#[tokio::test]
async fn chains_of_several_levels_and_nested_has() {
    let repo = repo().await;
    seed_graph(&repo).await;
    // One level and two levels of chaining.
    let got = matches(&search_keys(&repo, "Observation", "subject:Patient.family=Smith").await);
    assert_eq!(sorted(got), vec!["Observation/o1", "Observation/o2"]);
    let got = matches(
        &search_keys(
            &repo,
            "Observation",
            "subject:Patient.organization.name=Acme",
        )
        .await,
    );
    assert_eq!(sorted(got), vec!["Observation/o1", "Observation/o3"]);
    let got = matches(
        &search_keys(
            &repo,
            "Observation",
            "subject:Patient.organization.partof.name=Parent",
        )
        .await,
    );
    assert_eq!(sorted(got), vec!["Observation/o1", "Observation/o3"]);
    // Reverse chaining, and reverse chaining nested in reverse chaining.
    let got = matches(&search_keys(&repo, "Patient", "_has:Observation:subject:code=1111-1").await);
    assert_eq!(sorted(got), vec!["Patient/p1", "Patient/p2"]);
    let got = matches(
        &search_keys(
            &repo,
            "Organization",
            "_has:Patient:organization:_has:Observation:subject:code=2222-2",
        )
        .await,
    );
    assert_eq!(got, vec!["Organization/acme"]);
    // A chain ANDed with a plain parameter.
    let got = matches(
        &search_keys(
            &repo,
            "Observation",
            "subject:Patient.family=Smith&code=1111-1",
        )
        .await,
    );
    assert_eq!(sorted(got), vec!["Observation/o1", "Observation/o2"]);
}

#[tokio::test]
async fn includes_iterate_and_wildcards() {
    let repo = repo().await;
    seed_graph(&repo).await;
    let keys = search_keys(
        &repo,
        "Observation",
        "_id=o1&_include=Observation:subject&_include:iterate=Patient:organization",
    )
    .await;
    let included: Vec<String> = keys
        .iter()
        .filter(|(_, m)| m == "include")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(matches(&keys), vec!["Observation/o1"]);
    assert_eq!(sorted(included), vec!["Organization/acme", "Patient/p1"]);
    // Without :iterate the organization is not reached.
    let keys = search_keys(
        &repo,
        "Observation",
        "_id=o1&_include=Observation:subject&_include=Patient:organization",
    )
    .await;
    assert!(
        !keys.iter().any(|(k, _)| k == "Organization/acme"),
        "{keys:?}"
    );
    // `*` includes every reference parameter's targets.
    let keys = search_keys(&repo, "Patient", "_id=p1&_include=*").await;
    assert!(
        keys.contains(&("Organization/acme".to_string(), "include".to_string())),
        "{keys:?}"
    );
    // `*` on _revinclude: everything that refers to the match.
    let keys = search_keys(&repo, "Patient", "_id=p1&_revinclude=*").await;
    assert!(
        keys.contains(&("Observation/o1".to_string(), "include".to_string())),
        "{keys:?}"
    );
    // Reverse includes, iterated: the organization's patients and their observations.
    let keys = search_keys(
        &repo,
        "Organization",
        "_id=acme&_revinclude=Patient:organization&_revinclude:iterate=Observation:subject",
    )
    .await;
    let included: Vec<String> = keys
        .iter()
        .filter(|(_, m)| m == "include")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        sorted(included),
        vec![
            "Observation/o1",
            "Observation/o3",
            "Patient/p1",
            "Patient/p3"
        ]
    );
    let bad = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_include=Patient:nonsense"),
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value());
    assert!(bad.is_err_and(|e| e.status() == 400));
}

#[tokio::test]
async fn summary_text_and_data() {
    let repo = repo().await;
    let mut p = person("t1", "Texty", "1970-01-01", None);
    p["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Texty</div>" });
    p["deceasedBoolean"] = json!(false);
    p["maritalStatus"] = json!({ "text": "single" });
    put(&repo, p).await;
    let one = |query: &'static str| {
        let repo = &repo;
        async move {
            let bundle = repo
                .search(&who(), Some("Patient"), &params(query), Handling::Strict)
                .await
                .map(|b| b.to_value())
                .expect("search");
            bundle["entry"][0]["resource"].clone()
        }
    };
    let text = one("_summary=text").await;
    assert!(text.get("text").is_some(), "{text}");
    assert!(text.get("name").is_none(), "{text}");
    assert!(text.get("id").is_some());
    let data = one("_summary=data").await;
    assert!(data.get("text").is_none(), "{data}");
    assert!(data.get("maritalStatus").is_some(), "{data}");
    let summary = one("_summary=true").await;
    assert_eq!(
        summary["deceasedBoolean"], false,
        "a choice summary element: {summary}"
    );
    assert!(summary.get("maritalStatus").is_none(), "{summary}");
    let full = one("_summary=false").await;
    assert!(full.get("maritalStatus").is_some() && full.get("text").is_some());
    let elements = one("_elements=deceased,maritalStatus").await;
    assert!(elements.get("deceasedBoolean").is_some() && elements.get("maritalStatus").is_some());
    assert!(elements.get("name").is_none(), "{elements}");
    let bad = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_summary=most"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(bad.expect_err("bad _summary").status(), 400);
}

#[tokio::test]
async fn paging_links_stay_stable_while_others_write() {
    let repo = repo().await;
    let ids = seed_patients(&repo, 6).await;
    let first = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_count=2&_sort=family"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("first page");
    let mut seen: Vec<String> = matches(&entries(&first));
    let next = link(&first, "next").expect("next");
    // Others write between the pages: a patient that sorts first and one that sorts last.
    repo.create(&who(), "Patient", patient("AAAA", "new-1"), None)
        .await
        .expect("create");
    repo.create(&who(), "Patient", patient("ZZZZ", "new-2"), None)
        .await
        .expect("create");
    let mut url = Some(next);
    let mut pages = 1;
    let mut previous = None;
    while let Some(u) = url {
        let page = repo
            .search(&who(), Some("Patient"), &link_params(&u), Handling::Lenient)
            .await
            .map(|b| b.to_value())
            .expect("page");
        seen.extend(matches(&entries(&page)));
        if pages == 1 {
            previous = link(&page, "previous");
        }
        url = link(&page, "next");
        pages += 1;
        assert!(pages < 10);
    }
    let mut expected: Vec<String> = ids.iter().map(|id| format!("Patient/{id}")).collect();
    expected.sort();
    assert_eq!(
        sorted(seen.clone()),
        expected,
        "every original patient exactly once"
    );
    // The previous link of the second page leads back to the first page.
    let back = repo
        .search(
            &who(),
            Some("Patient"),
            &link_params(&previous.expect("previous link")),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value())
        .expect("previous page");
    assert_eq!(matches(&entries(&back)), seen[..2].to_vec());
    // A paging link is bound to its query: used with another query, or mangled, it is a 400.
    let cursor = link_params(&link(&first, "next").expect("next"))
        .into_iter()
        .find(|(n, _)| n == "_page")
        .expect("_page")
        .1;
    let other = repo
        .search(
            &who(),
            Some("Patient"),
            &[("family".into(), "X".into()), ("_page".into(), cursor)],
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(other.expect_err("foreign cursor").status(), 400);
    let mangled = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_page=garbage"),
            Handling::Lenient,
        )
        .await
        .map(|b| b.to_value());
    assert_eq!(mangled.expect_err("mangled cursor").status(), 400);
}

#[tokio::test]
async fn history_since_at_and_count_at_every_level() {
    let repo = repo().await;
    put(&repo, person("h1", "One", "1970-01-01", None)).await;
    put(&repo, person("h2", "Two", "1970-01-01", None)).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let middle = repo
        .read(&who(), "Patient", "h2")
        .await
        .expect("read")
        .last_updated
        + 10;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut changed = person("h1", "One-changed", "1970-01-01", None);
    changed["active"] = json!(true);
    put(&repo, changed).await;
    put(
        &repo,
        json!({ "resourceType": "Organization", "id": "h-org", "name": "Org" }),
    )
    .await;
    let instant = fhir::search::datetime::format_instant(middle);

    let versions = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{}/{}",
                            e["fullUrl"]
                                .as_str()
                                .unwrap_or("")
                                .rsplit('/')
                                .next()
                                .unwrap_or(""),
                            e["response"]["etag"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let history = |scope: HistoryScope, query: String| {
        let repo = &repo;
        async move {
            repo.history(&who(), scope, &params(&query))
                .await
                .expect("history")
        }
    };
    let instance = || HistoryScope::Instance("Patient".into(), "h1".into());
    let ty = || HistoryScope::Type("Patient".into());

    // _since: only versions written at or after the instant.
    assert_eq!(
        versions(&history(instance(), format!("_since={instant}")).await),
        vec!["h1/W/\"2\""]
    );
    assert_eq!(
        versions(&history(ty(), format!("_since={instant}")).await),
        vec!["h1/W/\"2\""]
    );
    assert_eq!(
        sorted(versions(
            &history(HistoryScope::System, format!("_since={instant}")).await
        )),
        vec!["h-org/W/\"1\"", "h1/W/\"2\""]
    );
    // _at: the versions current at the instant.
    assert_eq!(
        versions(&history(instance(), format!("_at={instant}")).await),
        vec!["h1/W/\"1\""]
    );
    assert_eq!(
        sorted(versions(&history(ty(), format!("_at={instant}")).await)),
        vec!["h1/W/\"1\"", "h2/W/\"1\""]
    );
    assert_eq!(
        sorted(versions(
            &history(HistoryScope::System, format!("_at={instant}")).await
        )),
        vec!["h1/W/\"1\"", "h2/W/\"1\""]
    );
    // _count, and its next link, at every level.
    for scope in [instance(), ty(), HistoryScope::System] {
        let all = versions(&history(scope.clone(), String::new()).await);
        let first = history(scope.clone(), "_count=1".into()).await;
        let mut seen = versions(&first);
        assert_eq!(seen.len(), 1, "{scope:?}");
        let mut next = link(&first, "next");
        while let Some(url) = next {
            let page = repo
                .history(&who(), scope.clone(), &link_params(&url))
                .await
                .expect("next page");
            seen.extend(versions(&page));
            next = link(&page, "next");
            assert!(seen.len() <= all.len(), "{scope:?}");
        }
        assert_eq!(seen, all, "{scope:?}");
    }
    for bad in ["_at=soon", "_count=-1", "_since=2024-13-01"] {
        let err = repo
            .history(&who(), HistoryScope::System, &params(bad))
            .await
            .expect_err(bad);
        assert_eq!(err.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn everything_since_type_and_paging() {
    let repo = repo().await;
    put(&repo, person("e1", "Every", "1970-01-01", None)).await;
    for i in 0..5 {
        put(&repo, obs(&format!("eo{i}"), "e1", "1111-1")).await;
    }
    put(&repo, json!({ "resourceType": "Condition", "id": "ec", "subject": { "reference": "Patient/e1" } })).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = fhir::search::datetime::format_instant(
        repo.read(&who(), "Condition", "ec")
            .await
            .expect("read")
            .last_updated
            + 10,
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    put(&repo, obs("eo-late", "e1", "2222-2")).await;

    // _since: only what changed since (the Patient did not).
    let since = repo
        .everything(&who(), "e1", &params(&format!("_since={cut}")))
        .await
        .map(|b| b.to_value())
        .expect("_since");
    assert_eq!(matches(&entries(&since)), vec!["Observation/eo-late"]);
    // _type with several types.
    let typed = repo
        .everything(&who(), "e1", &params("_type=Patient,Condition"))
        .await
        .map(|b| b.to_value())
        .expect("_type");
    assert_eq!(
        sorted(matches(&entries(&typed))),
        vec!["Condition/ec", "Patient/e1"]
    );
    // _count pages through everything exactly once.
    let first = repo
        .everything(&who(), "e1", &params("_count=3"))
        .await
        .map(|b| b.to_value())
        .expect("first page");
    let mut seen = matches(&entries(&first));
    let mut next = link(&first, "next");
    while let Some(url) = next {
        let page = repo
            .everything(&who(), "e1", &link_params(&url))
            .await
            .map(|b| b.to_value())
            .expect("page");
        seen.extend(matches(&entries(&page)));
        next = link(&page, "next");
        assert!(seen.len() < 20);
    }
    let mut expected: Vec<String> = (0..5).map(|i| format!("Observation/eo{i}")).collect();
    expected.extend([
        "Observation/eo-late".to_string(),
        "Condition/ec".to_string(),
        "Patient/e1".to_string(),
    ]);
    assert_eq!(sorted(seen), sorted(expected));
    for bad in ["_since=later", "_type=Nonsense", "_count=x"] {
        let err = repo
            .everything(&who(), "e1", &params(bad))
            .await
            .map(|b| b.to_value())
            .expect_err(bad);
        assert_eq!(err.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn malformed_values_are_400_in_every_handling() {
    let repo = repo().await;
    seed_patients(&repo, 1).await;
    for query in [
        "birthdate=xx2020",
        "birthdate=ge2020-02-30",
        "_count=many",
        "_lastUpdated=yesterday",
    ] {
        for handling in [Handling::Lenient, Handling::Strict] {
            let got = repo
                .search(&who(), Some("Patient"), &params(query), handling)
                .await
                .map(|b| b.to_value());
            let err = got.expect_err(query);
            assert_eq!(err.status(), 400, "{query} {handling:?}");
            assert!(!err.issues().is_empty());
        }
    }
    // Unknown parameters and modifiers: reported in lenient mode, 400 in strict mode.
    for query in [
        "nonsense=1",
        "family:sideways=x",
        "general-practitioner:Nonsense=1",
        "_has:Nonsense:subject:code=1",
    ] {
        let lenient = repo
            .search(&who(), Some("Patient"), &params(query), Handling::Lenient)
            .await
            .map(|b| b.to_value())
            .unwrap_or_else(|e| panic!("{query}: {:?}", e.issues()));
        let outcome = lenient["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["search"]["mode"] == "outcome")
            .unwrap_or_else(|| panic!("{query}: no outcome entry"));
        assert_eq!(outcome["resource"]["resourceType"], "OperationOutcome");
        let strict = repo
            .search(&who(), Some("Patient"), &params(query), Handling::Strict)
            .await
            .map(|b| b.to_value());
        assert_eq!(strict.expect_err(query).status(), 400, "{query}");
    }
}

#[tokio::test]
async fn unknown_parameters_of_history_and_everything() {
    let repo = repo().await;
    put(&repo, person("u1", "Unknown", "1970-01-01", None)).await;
    let lenient = repo
        .everything(&who(), "u1", &params("_format=json&nonsense=1"))
        .await
        .map(|b| b.to_value())
        .expect("lenient $everything");
    let modes: Vec<String> = entries(&lenient).into_iter().map(|(_, m)| m).collect();
    assert_eq!(modes, vec!["match", "outcome"]);
    let strict = repo
        .everything_with(&who(), "u1", &params("nonsense=1"), Handling::Strict)
        .await
        .map(|b| b.to_value());
    assert_eq!(strict.expect_err("strict").status(), 400);
    assert!(repo
        .everything_with(
            &who(),
            "u1",
            &params("_count=5&_pretty=true"),
            Handling::Strict
        )
        .await
        .map(|b| b.to_value())
        .is_ok());

    let history = repo
        .history(&who(), HistoryScope::System, &params("nonsense=1&_count=3"))
        .await
        .expect("lenient history");
    let self_link = link(&history, "self").expect("self link");
    assert!(self_link.ends_with("/_history?_count=3"), "{self_link}");
    let strict = repo
        .history_with(
            &who(),
            HistoryScope::System,
            &params("nonsense=1"),
            Handling::Strict,
        )
        .await;
    assert_eq!(strict.expect_err("strict").status(), 400);
    assert!(repo
        .history_with(
            &who(),
            HistoryScope::System,
            &params("_count=2&_since=2020"),
            Handling::Strict
        )
        .await
        .is_ok());
}

#[tokio::test]
async fn count_is_capped_and_zero_gives_only_the_total() {
    let repo = repo().await;
    seed_patients(&repo, 55).await;
    let capped = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_count=1000"),
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value())
        .expect("capped");
    assert_eq!(entries(&capped).len(), 50, "max_count is 50");
    assert!(link(&capped, "next").is_some());
    let zero = repo
        .search(
            &who(),
            Some("Patient"),
            &params("_count=0&_total=accurate"),
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value())
        .expect("zero");
    assert_eq!(zero["total"], 55);
    assert!(zero.get("entry").is_none(), "{zero}");
}

/// Searches that are well formed but too big for one query (thousands of OR values or repeated
/// parameters), and values no database can hold (NUL and other control characters), are refused
/// with a 4xx and an outcome that says why, never a store error (5xx). Moderately large ones work.
#[tokio::test]
async fn oversized_and_odd_searches_are_4xx() {
    let repo = repo().await;
    let ids = seed_patients(&repo, 2).await;
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("id{i}"))
            .chain(ids.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    };
    // Up to the limits (fhir::search::MAX_VALUES, MAX_PARAMS), they work.
    let ok = repo
        .search(
            &who(),
            Some("Patient"),
            &[("_id".to_string(), many(998))],
            Handling::Strict,
        )
        .await
        .map(|b| b.to_value())
        .expect("1,000 ids");
    assert_eq!(entries(&ok).len(), 2);
    let repeated: Vec<(String, String)> = (0..100)
        .map(|_| ("family".to_string(), "Family".to_string()))
        .collect();
    let ok = repo
        .search(&who(), Some("Patient"), &repeated, Handling::Strict)
        .await
        .map(|b| b.to_value())
        .expect("100 parameters");
    assert_eq!(entries(&ok).len(), 2);
    let chains: Vec<(String, String)> = (0..100)
        .map(|i| {
            (
                "general-practitioner:Practitioner.name".to_string(),
                format!("n{i},m{i},o{i},p{i},q{i},r{i},s{i},t{i},u{i},v{i}"),
            )
        })
        .collect();
    assert!(repo
        .search(&who(), Some("Patient"), &chains, Handling::Strict)
        .await
        .map(|b| b.to_value())
        .expect("100 chains of 10 values")
        .is_object());

    let too_many_values = vec![("_id".to_string(), many(5000))];
    let too_many_params: Vec<(String, String)> = (0..2000)
        .map(|i| ("family".to_string(), format!("F{i}")))
        .collect();
    let chains: Vec<(String, String)> = (0..300)
        .map(|i| {
            (
                "general-practitioner:Practitioner.name".to_string(),
                format!("n{i}"),
            )
        })
        .collect();
    let cases = [
        ("5,000 OR values", too_many_values),
        ("2,000 repeated parameters", too_many_params),
        ("300 chains", chains),
        ("NUL in a string", params("family=Fam%00ily")),
        ("NUL in a token", params("identifier=urn:x%7C1%002")),
        ("NUL in an id", params("_id=a%00b")),
        ("a control character", params("family=%01")),
    ];
    for (what, query) in cases {
        for handling in [Handling::Lenient, Handling::Strict] {
            let err = repo
                .search(&who(), Some("Patient"), &query, handling)
                .await
                .map(|b| b.to_value())
                .expect_err(what);
            assert_eq!(err.status(), 400, "{what}: {:?}", err.issues());
            assert!(!err.issues().is_empty(), "{what}");
        }
    }
    // The same limits hold for $everything's and history's parameters.
    let err = repo
        .everything(&who(), &ids[0], &params("_type=Observation%00"))
        .await
        .map(|b| b.to_value())
        .expect_err("NUL in _type");
    assert_eq!(err.status(), 400);
}
