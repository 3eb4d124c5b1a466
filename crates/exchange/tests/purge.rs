//! The consent purge end to end on the repository: an opted-out person's clinical data (every
//! record linked to them) is kept through the window and gone from the database after it, the
//! Consents and the audit trail stay, the chain verifies, a second run does nothing, and re-opting
//! in starts empty while new data is kept.
//!
//! Runs on SQLite, and on PostgreSQL with `NUTMEG_TEST_EXCHANGE_ENGINE=postgres` and
//! `NUTMEG_TEST_POSTGRES` (the common fixture).

mod common;

use common::*;
use exchange::access::{Principal, PurposeOfUse, Requester, Role};
use exchange::purge::{Purge, PurgeReport, DEFAULT_WINDOW_DAYS};
use serde_json::{json, Value};
use store::AuditCheck;
use time::macros::datetime;

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

/// A patient-privacy choice of `patient` at `when`: `OPTOUT` or `OPTIN`.
fn choice(patient: &str, code: &str, when: &str) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": when,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}]},
    })
}

fn named_patient(id: &str, family: &str, birth: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": ["Ivy"]}],
        "gender": "female", "birthDate": birth})
}

fn obs_of(id: &str, patient: &str) -> Value {
    let mut o = observation(patient);
    o["id"] = json!(id);
    o
}

async fn rows(repo: &Fixture, sql: &str) -> Vec<Vec<String>> {
    repo.store().query_rows(sql).await.expect(sql)
}

async fn count(repo: &Fixture, sql: &str) -> i64 {
    rows(repo, sql).await[0][0].parse().expect("a count")
}

/// Every `(type, id)` in the resources table, sorted.
async fn resources(repo: &Fixture) -> Vec<(String, String)> {
    rows(repo, "SELECT type, id FROM resources ORDER BY type, id")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

fn person<'r>(report: &'r PurgeReport, patient: &str) -> &'r exchange::purge::PersonPurge {
    report
        .persons
        .iter()
        .find(|p| p.patients.iter().any(|x| x == patient))
        .expect("the person is in the report")
}

/// Source A's and source B's records of one person (linked by an operator), with data on both
/// (several versions, a deleted one, a condition), another patient's data beside them, and the
/// opt-out recorded against source A's record on Friday 2026-01-09 10:00 UTC.
async fn plant(repo: &Fixture) -> String {
    let system = who();
    for (id, family, birth) in [
        ("pa", "Quill", "1975-04-05"),
        ("pb", "Quil", "1957-05-04"),
        ("keep", "Other", "1990-01-01"),
    ] {
        repo.update(
            &system,
            "Patient",
            id,
            named_patient(id, family, birth),
            None,
        )
        .await
        .expect("patient");
    }
    for (id, patient) in [
        ("oa", "pa"),
        ("ob", "pb"),
        ("od", "pa"),
        ("keep-obs", "keep"),
    ] {
        repo.update(&system, "Observation", id, obs_of(id, patient), None)
            .await
            .expect("observation");
    }
    let mut again = obs_of("oa", "pa");
    again["valueQuantity"]["value"] = json!(80);
    repo.update(&system, "Observation", "oa", again, None)
        .await
        .expect("second version");
    repo.delete(&system, "Observation", "od")
        .await
        .expect("deleted");
    repo.update(
        &system,
        "Condition",
        "cb",
        json!({"resourceType": "Condition", "id": "cb",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
            "subject": {"reference": "Patient/pb"}}),
        None,
    )
    .await
    .expect("condition");
    repo.mpi_decide(
        &operator(),
        true,
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient-a", "valueString": "pa"},
            {"name": "patient-b", "valueString": "pb"},
            {"name": "reason", "valueString": "same person, two sources"}]}),
    )
    .await
    .expect("linked");
    repo.create(
        &operator(),
        "Consent",
        choice("pa", "OPTOUT", "2026-01-09T10:00:00Z"),
        None,
    )
    .await
    .expect("opt-out")
    .resource
    .id
}

const PURGED: [(&str, &str); 6] = [
    ("Condition", "cb"),
    ("Observation", "oa"),
    ("Observation", "ob"),
    ("Observation", "od"),
    ("Patient", "pa"),
    ("Patient", "pb"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_persons_data_is_purged_after_the_window_and_only_then() {
    let repo = repo_enforcing().await;
    let consent = plant(&repo).await;
    let store = repo.store().clone();
    let before = resources(&repo).await;
    for key in PURGED {
        let key = (key.0.to_string(), key.1.to_string());
        assert!(before.contains(&key), "{key:?} planted");
    }
    let audit_before = store.audit_records(0, 100_000).await.expect("audit").len();
    let purge = Purge::new(
        store.clone(),
        privacy::policy::Policy::connecticut(),
        DEFAULT_WINDOW_DAYS,
    );

    // Four business days later (Thursday): nothing is removed, and the report says when.
    let report = purge
        .run(datetime!(2026-01-15 10:00 UTC), false)
        .await
        .expect("run");
    let p = person(&report, "pa");
    assert_eq!(p.patients, vec!["pa".to_string(), "pb".to_string()]);
    assert_eq!(p.consent.as_deref(), Some(consent.as_str()));
    assert!(!p.is_due);
    assert_eq!(p.due, "2026-01-16T10:00:00Z");
    assert!(p.resources.is_empty());
    assert_eq!(resources(&repo).await, before);

    // Past the window, a dry run says what would go and removes nothing.
    let after_window = datetime!(2026-01-16 10:00:01 UTC);
    let dry = purge.run(after_window, true).await.expect("dry run");
    let p = person(&dry, "pb");
    assert!(p.is_due);
    let expected: std::collections::BTreeMap<String, u64> = [
        ("Condition".to_string(), 1),
        ("Observation".to_string(), 3),
        ("Patient".to_string(), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(p.resources, expected);
    assert_eq!(resources(&repo).await, before);

    // The run: every record of the person is gone from the database, all versions and rows.
    let report = purge.run(after_window, false).await.expect("purge");
    let p = person(&report, "pa");
    assert_eq!(p.resources, expected);
    assert_eq!(
        p.versions, 8,
        "oa 2, od 2 (with the tombstone), ob, cb, pa, pb 1 each"
    );
    let after = resources(&repo).await;
    for key in PURGED {
        let key = (key.0.to_string(), key.1.to_string());
        assert!(!after.contains(&key), "{key:?} is gone");
    }
    for kept in [
        ("Patient", "keep"),
        ("Observation", "keep-obs"),
        ("Consent", consent.as_str()),
    ] {
        let key = (kept.0.to_string(), kept.1.to_string());
        assert!(after.contains(&key), "{key:?} is kept");
    }
    for table in [
        "versions",
        "compartment",
        "idx_string",
        "idx_token",
        "idx_token_type",
        "idx_date",
        "idx_number",
        "idx_quantity",
        "idx_reference",
        "idx_uri",
    ] {
        let orphans = count(
            &repo,
            &format!(
                "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.rid = t.rid)"
            ),
        )
        .await;
        assert_eq!(orphans, 0, "no row of {table} outlives its resource");
    }
    assert_eq!(
        count(
            &repo,
            "SELECT COUNT(*) FROM versions WHERE type <> 'Consent' AND \
             (CAST(json AS TEXT) LIKE '%Patient/pa%' OR CAST(json AS TEXT) LIKE '%Patient/pb%' \
              OR CAST(json AS TEXT) LIKE '%Quill%' OR CAST(json AS TEXT) LIKE '%Quil\"%')"
        )
        .await,
        0,
        "no stored version but the Consent's names the person"
    );
    assert_eq!(
        count(
            &repo,
            "SELECT COUNT(*) FROM compartment c JOIN resources r ON r.rid = c.rid \
             WHERE c.patient_id IN ('pa', 'pb') AND r.type <> 'Consent'"
        )
        .await,
        0
    );
    // Read as the operator: as if never there (404, not 410).
    for (ty, id) in PURGED {
        let err = repo
            .read(&operator(), ty, id)
            .await
            .expect_err("purged resources are not found");
        assert_eq!(err.status(), 404, "{ty}/{id}");
    }
    repo.read(&operator(), "Observation", "keep-obs")
        .await
        .expect("the other patient's data stays");
    repo.read(&operator(), "Consent", &consent)
        .await
        .expect("the Consent stays");

    // The audit trail kept everything it had, gained one record of the purge, and verifies.
    let audit = store.audit_records(0, 100_000).await.expect("audit");
    assert!(audit.len() > audit_before);
    let purges: Vec<&store::AuditRecord> = audit
        .iter()
        .filter(|r| r.json.contains("consent purge"))
        .collect();
    assert_eq!(purges.len(), 1);
    let record = &purges[0].json;
    assert!(record.contains(
        "consent purge: 6 resources (Condition 1, Observation 3, Patient 2), 8 versions"
    ));
    assert!(record.contains("system:consent-purge"));
    assert!(!record.contains("Quill") && !record.contains("\"oa\""));
    match store.verify_audit().await.expect("verify") {
        AuditCheck::Intact { count, .. } => assert_eq!(count as usize, audit.len()),
        broken => panic!("the chain must verify after the purge: {broken:?}"),
    }

    // Again, and at once from a second job: nothing left, nothing recorded.
    let other = Purge::new(
        store.clone(),
        privacy::policy::Policy::connecticut(),
        DEFAULT_WINDOW_DAYS,
    );
    let (one, two) = tokio::join!(
        purge.run(after_window, false),
        other.run(after_window, false)
    );
    assert_eq!(one.expect("again").resources(), 0);
    assert_eq!(two.expect("concurrently").resources(), 0);
    assert_eq!(
        store.audit_records(0, 100_000).await.expect("audit").len(),
        audit.len()
    );

    // The person opts back in on source B's record: nothing comes back, and what arrives now is
    // kept by later runs.
    repo.create(
        &operator(),
        "Consent",
        choice("pb", "OPTIN", "2026-02-02T09:00:00Z"),
        None,
    )
    .await
    .expect("opt back in");
    for (ty, id) in PURGED {
        assert_eq!(
            repo.read(&operator(), ty, id)
                .await
                .map(|_| ())
                .map_err(|e| e.status()),
            Err(404),
            "{ty}/{id} is not restored"
        );
    }
    let system = who();
    repo.update(
        &system,
        "Patient",
        "pb",
        named_patient("pb", "Quil", "1957-05-04"),
        None,
    )
    .await
    .expect("source B sends the patient again");
    repo.update(&system, "Observation", "ob2", obs_of("ob2", "pb"), None)
        .await
        .expect("new data");
    let later = purge
        .run(datetime!(2026-06-01 12:00 UTC), false)
        .await
        .expect("a later run");
    assert_eq!(later.resources(), 0);
    assert!(
        later.persons.is_empty(),
        "the person takes part again: {later:?}"
    );
    let pb = repo
        .read(&operator(), "Patient", "pb")
        .await
        .expect("new data kept");
    assert_eq!(pb.version, 1, "a fresh start, not the purged history");
    repo.read(&operator(), "Observation", "ob2")
        .await
        .expect("new data kept");
}

/// Data that arrives for a person still opted out after a purge is removed by the next run.
/// What the policy routes to public health stays through the purge, with the Patient it is about;
/// the rest of the person's data goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reportable_data_and_its_patient_stay_through_the_purge() {
    let repo = repo_enforcing().await;
    plant(&repo).await;
    let system = who();
    repo.update(
        &system,
        "Immunization",
        "shot",
        json!({"resourceType": "Immunization", "id": "shot", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
            "patient": {"reference": "Patient/pb"}, "occurrenceDateTime": "2026-01-05"}),
        None,
    )
    .await
    .expect("immunization");
    // A reportable condition that was deleted is not reportable any more: it goes.
    repo.update(
        &system,
        "Condition",
        "gone-tb",
        json!({"resourceType": "Condition", "id": "gone-tb",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "A15.0"}]},
            "subject": {"reference": "Patient/pa"}}),
        None,
    )
    .await
    .expect("condition");
    repo.delete(&system, "Condition", "gone-tb")
        .await
        .expect("deleted");
    let purge = Purge::new(
        repo.store().clone(),
        privacy::policy::Policy::connecticut(),
        DEFAULT_WINDOW_DAYS,
    );
    let at = datetime!(2026-01-20 08:00 UTC);
    let dry = purge.run(at, true).await.expect("dry run");
    let kept: std::collections::BTreeMap<String, u64> =
        [("Immunization".to_string(), 1), ("Patient".to_string(), 1)]
            .into_iter()
            .collect();
    assert_eq!(person(&dry, "pa").kept_for_public_health, kept);
    let report = purge.run(at, false).await.expect("purge");
    let p = person(&report, "pa");
    assert_eq!(p.kept_for_public_health, kept);
    let removed: std::collections::BTreeMap<String, u64> = [
        ("Condition".to_string(), 2),
        ("Observation".to_string(), 3),
        ("Patient".to_string(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(p.resources, removed);
    let after = resources(&repo).await;
    for key in [("Immunization", "shot"), ("Patient", "pb")] {
        assert!(
            after.contains(&(key.0.to_string(), key.1.to_string())),
            "{key:?} stays for public health"
        );
    }
    for key in [
        ("Patient", "pa"),
        ("Condition", "cb"),
        ("Condition", "gone-tb"),
        ("Observation", "ob"),
    ] {
        assert!(
            !after.contains(&(key.0.to_string(), key.1.to_string())),
            "{key:?} is purged"
        );
    }
    // A second run removes nothing and keeps the same.
    let again = purge.run(at, false).await.expect("again");
    assert_eq!(again.resources(), 0);
    assert_eq!(person(&again, "pa").kept_for_public_health, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_arriving_after_a_purge_for_a_person_still_out_goes_at_the_next_run() {
    let repo = repo_enforcing().await;
    plant(&repo).await;
    let purge = Purge::new(
        repo.store().clone(),
        privacy::policy::Policy::connecticut(),
        DEFAULT_WINDOW_DAYS,
    );
    let at = datetime!(2026-01-20 08:00 UTC);
    assert_eq!(purge.run(at, false).await.expect("purge").resources(), 6);
    repo.update(&who(), "Observation", "late", obs_of("late", "pa"), None)
        .await
        .expect("late data");
    let next = purge.run(at, false).await.expect("next run");
    assert_eq!(next.resources(), 1);
    assert!(repo
        .store()
        .read("Observation", "late")
        .await
        .expect("read")
        .is_none());
}
