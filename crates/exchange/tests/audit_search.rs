//! The audit trail read back: operators search AuditEvents by patient, date and the rest, in
//! pages; nobody else may; a patient's accounting of disclosures lists exactly the disclosures of
//! their data to participants (date, recipient, purpose, what), and only to that patient.

mod common;

use common::{
    client, link, link_params, observation, params, patient, repo_enforcing, who, Fixture,
};
use exchange::access::{Principal, PurposeOfUse, Reason, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::{Error, Handling};
use serde_json::Value;

const ALL: &str = "system/*.cruds";

/// Registers a live hospital; answers its id.
async fn participant(repo: &Fixture, name: &str) -> String {
    common::participant(repo, name, Kind::Hospital, Status::Live).await
}

fn operator() -> Requester {
    Requester::new(
        "req-operator",
        Principal::User {
            user_id: "operator-1".into(),
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
        PurposeOfUse::Treat,
        true,
    )
}

async fn create(repo: &Fixture, who: &Requester, ty: &str, body: Value) -> String {
    repo.create(who, ty, body, None)
        .await
        .expect("created")
        .resource
        .id
}

/// The resources of a Bundle's entries, in order.
fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn ids(bundle: &Value) -> Vec<i64> {
    resources(bundle)
        .iter()
        .map(|r| r["id"].as_str().expect("id").parse().expect("a number"))
        .collect()
}

/// The resource is valid R4 by the repository's own validator.
fn valid(resource: &Value) {
    let issues = fhir::validate::validate_resource(resource);
    assert!(
        issues
            .iter()
            .all(|i| i.severity != fhir::outcome::Severity::Error),
        "{issues:?}"
    );
}

/// Every `what` reference of an AuditEvent's entities.
fn whats(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

fn names_patient(event: &Value, pid: &str) -> bool {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["role"]["code"] == "1" && e["what"]["reference"] == format!("Patient/{pid}"))
}

/// The story every test starts from: two patients loaded by the exchange; Hartford sends an
/// observation about p1 (a write), reads and searches p1's data (disclosures), reads p2's data
/// without a relationship (nothing disclosed), is refused a type outside its scopes; an emergency
/// department reads p1's data with break-the-glass; after attesting p2, Hartford searches across
/// both patients (one disclosure about both).
struct Story {
    repo: Fixture,
    p1: String,
    p2: String,
    hartford: String,
    er: String,
    /// p1's observations: loaded, and sent by Hartford.
    o1: String,
    sent: String,
    o2: String,
}

async fn story() -> Story {
    let repo = repo_enforcing().await;
    let p1 = create(&repo, &who(), "Patient", patient("One", "mrn-1")).await;
    let p2 = create(&repo, &who(), "Patient", patient("Two", "mrn-2")).await;
    let o1 = create(&repo, &who(), "Observation", observation(&p1)).await;
    let o2 = create(&repo, &who(), "Observation", observation(&p2)).await;
    let hartford = participant(&repo, "Hartford").await;
    let er = participant(&repo, "Emergency").await;
    let ehr = client(&hartford, ALL, PurposeOfUse::Treat);

    let sent = create(&repo, &ehr, "Observation", observation(&p1)).await;
    repo.read(&ehr, "Observation", &o1).await.expect("read");
    let found = repo
        .search(
            &ehr,
            Some("Observation"),
            &params(&format!("patient={p1}")),
            Handling::Lenient,
        )
        .await
        .expect("search");
    assert_eq!(found.len(), 2);
    assert_eq!(
        repo.read(&ehr, "Observation", &o2)
            .await
            .expect_err("unrelated")
            .status(),
        404
    );
    let narrow = client(&hartford, "system/Patient.rs", PurposeOfUse::Treat);
    assert_eq!(
        repo.read(&narrow, "Observation", &o1)
            .await
            .expect_err("scope")
            .status(),
        403
    );
    let er_ehr = client(&er, ALL, PurposeOfUse::Etreat);
    repo.read(&er_ehr, "Observation", &o1)
        .await
        .expect("break the glass");
    repo.attest_treatment(&ehr, &p2).await.expect("attested");
    let both = repo
        .search(
            &ehr,
            Some("Observation"),
            &params(&format!("patient={p1},{p2}")),
            Handling::Lenient,
        )
        .await
        .expect("search both");
    assert_eq!(both.len(), 3);
    Story {
        repo,
        p1,
        p2,
        hartford,
        er,
        o1,
        sent,
        o2,
    }
}

/// The sequence numbers of the records naming the patient, up to `upto`, newest first, read
/// straight from the trail.
async fn about(repo: &Fixture, pid: &str, upto: i64) -> Vec<i64> {
    let all = repo.store().audit_records(0, 10_000).await.expect("trail");
    all.iter()
        .rev()
        .filter(|r| r.seq <= upto)
        .filter(|r| names_patient(&serde_json::from_str(&r.json).unwrap(), pid))
        .map(|r| r.seq)
        .collect()
}

async fn audit_search(repo: &Fixture, who: &Requester, query: &str) -> Result<Value, Error> {
    repo.search_audit_events(who, &params(query)).await
}

#[tokio::test]
async fn operators_find_a_patients_events_by_patient_and_date() {
    let s = story().await;
    let repo = &s.repo;
    let all = repo.store().audit_records(0, 10_000).await.expect("trail");
    let today = fhir::search::datetime::format_instant(all[0].recorded)[..10].to_string();
    for query in [
        format!("patient=Patient/{}", s.p1),
        format!("patient={}&date=ge{today}&date=le2999", s.p1),
        format!("patient={}&date={today}&_count=50", s.p1),
    ] {
        // Each search is recorded too, about the patients of what it showed: count them in.
        let about_p1 = about(repo, &s.p1, i64::MAX).await;
        assert!(about_p1.len() >= 6, "{about_p1:?}");
        let bundle = audit_search(repo, &operator(), &query).await.expect(&query);
        assert_eq!(bundle["type"], "searchset");
        assert_eq!(ids(&bundle), about_p1, "{query}: newest first");
        for event in resources(&bundle) {
            valid(&event);
            assert_eq!(event["resourceType"], "AuditEvent");
            assert!(names_patient(&event, &s.p1), "{event}");
            assert!(event["meta"]["lastUpdated"].is_string());
        }
        assert_eq!(link(&bundle, "next"), None);
    }
    let none = audit_search(repo, &operator(), &format!("patient={}&date=lt2000", s.p1))
        .await
        .expect("old");
    assert!(none.get("entry").is_none(), "{none}");

    // The other parameters narrow it down.
    let reads = audit_search(
        repo,
        &operator(),
        &format!(
            "patient={}&subtype=read&outcome=0&participant=Organization/{}",
            s.p1, s.hartford
        ),
    )
    .await
    .expect("reads");
    let reads = resources(&reads);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(
        whats(&reads[0]),
        vec![
            format!("Patient/{}", s.p1),
            format!("Observation/{}/_history/1", s.o1)
        ]
    );
    let emergency = audit_search(
        repo,
        &operator(),
        &format!(
            "purpose=ETREAT&agent=client-of-{}&subtype=http://hl7.org/fhir/restful-interaction|read,search",
            s.er
        ),
    )
    .await
    .expect("emergency");
    assert_eq!(resources(&emergency).len(), 1);
    let refused = audit_search(repo, &operator(), "outcome=4")
        .await
        .expect("refusals");
    assert!(resources(&refused)
        .iter()
        .all(|e| e["outcomeDesc"].as_str().unwrap().starts_with("refused")));
    assert!(!resources(&refused).is_empty());

    // Reading the trail is recorded, with the patients of the records shown.
    let last = repo
        .store()
        .audit_records(0, 10_000)
        .await
        .expect("trail")
        .pop()
        .expect("last");
    let last: Value = serde_json::from_str(&last.json).unwrap();
    assert_eq!(last["subtype"][0]["code"], "search");
    assert_eq!(last["agent"][2]["who"]["identifier"]["value"], "operator-1");

    // Bad requests.
    for query in [
        "name=x",
        "patient=a&patient=b",
        "date=sa2020",
        "_count=many",
        "_page=x",
    ] {
        let error = audit_search(repo, &operator(), query)
            .await
            .expect_err(query);
        assert_eq!(error.status(), 400, "{query}");
        assert_eq!(error.outcome()["resourceType"], "OperationOutcome");
    }
    // The exchange's own tools may search too.
    assert!(audit_search(repo, &who(), "outcome=0").await.is_ok());

    // Each AuditEvent can be read by the id the search answered.
    let first = audit_search(repo, &operator(), &format!("patient={}&_count=1", s.p1))
        .await
        .expect("first");
    let event = &resources(&first)[0];
    let id = event["id"].as_str().unwrap();
    assert_eq!(
        &repo.read_audit_event(&operator(), id).await.expect("read"),
        event
    );
    for absent in ["0", "999999", "x"] {
        assert_eq!(
            repo.read_audit_event(&operator(), absent)
                .await
                .expect_err(absent)
                .status(),
            404
        );
    }
    let ehr = client(&s.hartford, ALL, PurposeOfUse::Treat);
    assert_eq!(
        repo.read_audit_event(&ehr, id)
            .await
            .expect_err("client")
            .status(),
        403
    );
}

#[tokio::test]
async fn nobody_but_operators_searches_the_trail() {
    let s = story().await;
    let repo = &s.repo;
    let ehr = client(&s.hartford, ALL, PurposeOfUse::Treat);
    for requester in [ehr, patient_user(&s.p1)] {
        match audit_search(repo, &requester, &format!("patient={}", s.p1)).await {
            Err(Error::Forbidden(reasons)) => assert_eq!(reasons, vec![Reason::Role]),
            other => panic!("expected 403, got {other:?}"),
        }
    }
    let anonymous = Requester::new("req-anon", Principal::Anonymous, PurposeOfUse::Treat, false);
    assert_eq!(
        audit_search(repo, &anonymous, "")
            .await
            .expect_err("anonymous")
            .status(),
        403
    );
}

#[tokio::test]
async fn pages_follow_next_links_without_gaps() {
    let s = story().await;
    let repo = &s.repo;
    let mut query = params(&format!("patient={}&_count=2", s.p1));
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let page = repo
            .search_audit_events(&operator(), &query)
            .await
            .expect("page");
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        walked.extend(page_ids);
        pages += 1;
        match link(&page, "next") {
            Some(next) => {
                assert!(next.starts_with(&format!("{}/AuditEvent?", common::BASE)));
                query = link_params(&next);
            }
            None => break,
        }
    }
    // Each page is itself recorded (newer records), which does not disturb the walk below them.
    let expected = about(repo, &s.p1, walked[0]).await;
    assert!(expected.len() >= 6);
    assert_eq!(walked, expected);
    assert_eq!(pages, expected.len().div_ceil(2));
}

#[tokio::test]
async fn a_patient_sees_exactly_the_disclosures_of_their_data() {
    let s = story().await;
    let repo = &s.repo;
    let accounting = repo
        .disclosures(&patient_user(&s.p1), &s.p1, &[])
        .await
        .expect("accounting");
    assert_eq!(accounting["resourceType"], "Bundle");
    assert_eq!(accounting["type"], "searchset");
    let events = resources(&accounting);
    // Newest first: the search across both patients, the emergency read, Hartford's search and
    // its read. Not the write, the refusal, the empty read of p2's data, nor the attestation.
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["subtype"][0]["code"].as_str().unwrap().to_string(),
                e["agent"][0]["who"]["reference"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["purposeOfEvent"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let hartford = format!("Organization/{}", s.hartford);
    let er = format!("Organization/{}", s.er);
    let row = |subtype: &str, to: &str, purpose: &str| {
        (subtype.to_string(), to.to_string(), purpose.to_string())
    };
    assert_eq!(
        summary,
        vec![
            row("search", &hartford, "TREAT"),
            row("read", &er, "ETREAT"),
            row("search", &hartford, "TREAT"),
            row("read", &hartford, "TREAT"),
        ]
    );
    let ids = ids(&accounting);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    for event in &events {
        valid(event);
        assert!(event["recorded"].as_str().is_some_and(|r| r.len() >= 20));
        assert_eq!(event["outcome"], "0");
        assert!(names_patient(event, &s.p1));
        assert!(!names_patient(event, &s.p2), "{event}");
        // Nothing of how the request was made: no addresses, request id or query.
        let text = event.to_string();
        assert!(!text.contains("req-client"), "{text}");
        assert!(!text.contains("\"query\""), "{text}");
        assert_eq!(event["agent"].as_array().unwrap().len(), 1);
    }
    assert_eq!(events[0]["agent"][0]["who"]["display"], "Hartford");
    assert_eq!(events[1]["agent"][0]["who"]["display"], "Emergency");
    assert!(events[1]["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.contains("emergency")));
    let observations = |event: &Value| {
        let mut refs: Vec<String> = whats(event)
            .into_iter()
            .filter(|r| r.starts_with("Observation/"))
            .collect();
        refs.sort();
        refs
    };
    let mut p1_observations = vec![
        format!("Observation/{}/_history/1", s.o1),
        format!("Observation/{}/_history/1", s.sent),
    ];
    p1_observations.sort();
    // The search about both patients shows only p1's observations.
    assert_eq!(observations(&events[0]), p1_observations);
    assert!(!events[0].to_string().contains(&s.o2));
    assert_eq!(
        observations(&events[1]),
        vec![format!("Observation/{}/_history/1", s.o1)]
    );
    assert_eq!(observations(&events[2]), p1_observations);

    // p2's accounting has the one search about both (with p2's observation only).
    let other = repo
        .disclosures(&patient_user(&s.p2), &s.p2, &[])
        .await
        .expect("p2's accounting");
    let other = resources(&other);
    assert_eq!(other.len(), 1);
    assert_eq!(
        observations(&other[0]),
        vec![format!("Observation/{}/_history/1", s.o2)]
    );

    // Operators and the exchange see the same; paging works here too.
    let by_operator = repo
        .disclosures(&operator(), &s.p1, &params("_count=3"))
        .await
        .expect("operator");
    assert_eq!(resources(&by_operator).len(), 3);
    let next = link(&by_operator, "next").expect("a next page");
    assert!(next.contains(&format!("Patient/{}/$disclosures?", s.p1)));
    let rest = repo
        .disclosures(&who(), &s.p1, &link_params(&next))
        .await
        .expect("next page");
    assert_eq!(resources(&rest).len(), 1);
    assert_eq!(link(&rest, "next"), None);
    let dated = repo
        .disclosures(&operator(), &s.p1, &params("date=lt2000-01-01"))
        .await
        .expect("dated");
    assert!(dated.get("entry").is_none());
    assert_eq!(
        repo.disclosures(&operator(), &s.p1, &params("patient=x"))
            .await
            .expect_err("unknown parameter")
            .status(),
        400
    );

    // The accounting request is itself recorded, about the patient.
    let mine = repo
        .search_audit_events(
            &operator(),
            &params(&format!("patient={}&agent=user-{}", s.p1, s.p1)),
        )
        .await
        .expect("the patient's requests");
    let mine = resources(&mine);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["subtype"][0]["code"], "operation");
}

#[tokio::test]
async fn another_patients_accounting_is_absent_and_others_are_refused() {
    let s = story().await;
    let repo = &s.repo;
    assert_eq!(
        repo.disclosures(&patient_user(&s.p1), &s.p2, &[])
            .await
            .expect_err("someone else's")
            .status(),
        404
    );
    assert_eq!(
        repo.disclosures(&operator(), "never-was", &[])
            .await
            .expect_err("absent")
            .status(),
        404
    );
    let ehr = client(&s.hartford, ALL, PurposeOfUse::Treat);
    let clinician = Requester::new(
        "req-clinician",
        Principal::User {
            user_id: "dr-1".into(),
            participant: Some(s.hartford.clone()),
            role: Role::Clinician,
        },
        PurposeOfUse::Treat,
        true,
    );
    for requester in [ehr, clinician] {
        match repo.disclosures(&requester, &s.p1, &[]).await {
            Err(Error::Forbidden(reasons)) => assert_eq!(reasons, vec![Reason::Role]),
            other => panic!("expected 403, got {other:?}"),
        }
    }
    // The refusals are recorded.
    let refused = repo
        .search_audit_events(&operator(), &params("outcome=4&subtype=operation"))
        .await
        .expect("refusals");
    assert_eq!(resources(&refused).len(), 3);
}

/// Without access control (an open decision point) the accounting is open like everything else.
#[tokio::test]
async fn an_open_decision_point_permits_the_accounting() {
    let repo = common::repo().await;
    let pid = create(&repo, &who(), "Patient", patient("Open", "mrn-o")).await;
    let anonymous = Requester::new("req-anon", Principal::Anonymous, PurposeOfUse::Treat, false);
    let accounting = repo
        .disclosures(&anonymous, &pid, &[])
        .await
        .expect("accounting");
    assert!(accounting.get("entry").is_none());
    assert!(repo
        .search_audit_events(&anonymous, &params(&format!("patient={pid}")))
        .await
        .is_ok());
}
