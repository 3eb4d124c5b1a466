//! Consents as the source of truth: who records them, that each is effective at once (in this
//! process) and within a second (in another process on the same database), that the patient keeps
//! their own record and can opt back in, operators' and public health's exemptions, and the
//! obligations Part 2 data carries.

mod common;

use std::time::Duration;

use common::*;
use exchange::access::{DecisionPoint, Principal, PurposeOfUse, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::{Handling, Repository};
use serde_json::{json, Value};

fn user(role: Role, participant: Option<&str>, purpose: PurposeOfUse) -> Requester {
    Requester::new(
        "req-user",
        Principal::User {
            user_id: "user-1".into(),
            participant: participant.map(str::to_string),
            role,
        },
        purpose,
        true,
    )
}

fn patient_user(id: &str) -> Requester {
    user(
        Role::Patient {
            patient_id: id.into(),
        },
        None,
        PurposeOfUse::Patrqt,
    )
}

fn operator() -> Requester {
    user(Role::OperatorAdmin, None, PurposeOfUse::Hoperat)
}

fn choice(patient: &str, rule: &str, at: &str) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": at,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": rule}]},
    })
}

struct World {
    org_a: String,
    public_health: String,
}

async fn world(repo: &Repository) -> World {
    let fixture_who = who();
    let org_a = repo
        .add_participant(&fixture_who, &org("org-a", Kind::Clinic, "L-a"))
        .await
        .expect("org-a")
        .id;
    let public_health = repo
        .add_participant(&fixture_who, &org("dph", Kind::PublicHealth, "L-ph"))
        .await
        .expect("dph")
        .id;
    for id in [&org_a, &public_health] {
        for s in [Status::Onboarding, Status::Live] {
            repo.set_participant_status(&fixture_who, id, s)
                .await
                .expect("status");
        }
    }
    let mut p = patient("Doe", "MRN-1");
    p["id"] = json!("p1");
    repo.update(&fixture_who, "Patient", "p1", p, None)
        .await
        .expect("p1");
    let mut o = observation("p1");
    o["id"] = json!("o1");
    repo.update(&fixture_who, "Observation", "o1", o, None)
        .await
        .expect("o1");
    repo.update(
        &fixture_who,
        "Condition",
        "sud",
        json!({"resourceType": "Condition", "id": "sud",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
            "subject": {"reference": "Patient/p1"}}),
        None,
    )
    .await
    .expect("sud");
    repo.attest_treatment(&client(&org_a, "system/*.*", PurposeOfUse::Treat), "p1")
        .await
        .expect("attest");
    World {
        org_a,
        public_health,
    }
}

async fn sees(repo: &Repository, who: &Requester, ty: &str, id: &str) -> bool {
    match repo.read(who, ty, id).await {
        Ok(_) => true,
        Err(e) if e.status() == 404 => false,
        Err(e) => panic!("{ty}/{id}: {} {:?}", e.status(), e.issues()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_opts_out_in_the_portal_keeps_their_record_and_opts_back_in() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    let org_a = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    let me = patient_user("p1");
    assert!(sees(&repo, &org_a, "Observation", "o1").await);
    assert!(sees(&repo, &me, "Observation", "o1").await);

    let out = repo
        .create(
            &me,
            "Consent",
            choice("p1", "OPTOUT", "2026-01-10T09:00:00Z"),
            None,
        )
        .await
        .expect("the patient records their opt-out");
    // Effective for the very next request.
    assert!(!sees(&repo, &org_a, "Observation", "o1").await);
    assert!(!sees(&repo, &org_a, "Patient", "p1").await);
    assert!(!sees(&repo, &org_a, "Consent", &out.resource.id).await);
    // The patient still sees who they are and what they chose; their clinical record follows the
    // policy (PATRQT honours the opt-out).
    assert!(sees(&repo, &me, "Patient", "p1").await);
    assert!(sees(&repo, &me, "Consent", &out.resource.id).await);
    assert!(!sees(&repo, &me, "Observation", "o1").await);
    // Operators are not bound by the policy.
    assert!(sees(&repo, &operator(), "Observation", "o1").await);

    // Back in, later.
    repo.create(
        &me,
        "Consent",
        choice("p1", "OPTIN", "2026-02-10T09:00:00Z"),
        None,
    )
    .await
    .expect("opt back in");
    assert!(sees(&repo, &org_a, "Observation", "o1").await);
    assert!(sees(&repo, &me, "Observation", "o1").await);
    // The history of choices is kept.
    let history = repo
        .search(
            &me,
            Some("Consent"),
            &params("patient=p1"),
            Handling::Strict,
        )
        .await
        .expect("own consents")
        .to_value();
    assert_eq!(entries(&history).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_record_a_consent() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    let mut other = patient("Roe", "MRN-2");
    other["id"] = json!("p2");
    repo.update(&who(), "Patient", "p2", other, None)
        .await
        .expect("p2");
    let me = patient_user("p1");
    // Not for someone else, and nothing but consents.
    let refused = repo
        .create(
            &me,
            "Consent",
            choice("p2", "OPTOUT", "2026-01-10T09:00:00Z"),
            None,
        )
        .await
        .expect_err("another patient's consent");
    assert_eq!(refused.status(), 403);
    let refused = repo
        .create(&me, "Observation", observation("p1"), None)
        .await
        .expect_err("a patient writes consents only");
    assert_eq!(refused.status(), 403);
    // A participant on the patient's behalf; an unreadable restriction is refused with a 422
    // naming the element.
    let org_a = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    let mut bad = choice("p2", "OPTOUT", "2026-01-10T09:00:00Z");
    bad["provision"] = json!({"type": "deny", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
        "reference": {"reference": "Organization/x"}}]});
    let refused = repo
        .create(&org_a, "Consent", bad, None)
        .await
        .expect_err("unreadable");
    assert_eq!(refused.status(), 422);
    assert!(refused.outcome().to_string().contains("Consent.provision"));
    repo.create(
        &org_a,
        "Consent",
        choice("p1", "OPTOUT", "2026-01-10T09:00:00Z"),
        None,
    )
    .await
    .expect("recorded on the patient's behalf");
    assert!(!sees(&repo, &org_a, "Observation", "o1").await);
    // ... but nothing that opens access: a participant cannot grant itself the patient's records.
    let mut part2 = choice("p2", "42CFRPart2", "2026-01-10T09:00:00Z");
    part2["provision"] = json!({"type": "permit", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
        "reference": {"reference": format!("Organization/{}", w.org_a)}}]});
    let refused = repo
        .create(&org_a, "Consent", part2, None)
        .await
        .expect_err("a participant's grant to itself");
    assert_eq!(refused.status(), 403);
    let refused = repo
        .create(
            &org_a,
            "Consent",
            choice("p1", "OPTIN", "2026-03-10T09:00:00Z"),
            None,
        )
        .await
        .expect_err("a participant's opt-in over the patient's opt-out");
    assert_eq!(refused.status(), 403);
    // An operator records a paper form.
    repo.create(
        &operator(),
        "Consent",
        choice("p2", "OPTOUT", "2026-01-10T09:00:00Z"),
        None,
    )
    .await
    .expect("paper form");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_sees_an_opt_out_within_a_second() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    // A second process on the same database: its own decision point and caches.
    let other = Repository::new(
        repo.store().clone(),
        repo.config().clone(),
        DecisionPoint::enforcing(repo.store().clone()),
    );
    let org_a = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    assert!(sees(&other, &org_a, "Observation", "o1").await);
    repo.create(
        &operator(),
        "Consent",
        choice("p1", "OPTOUT", "2026-01-10T09:00:00Z"),
        None,
    )
    .await
    .expect("opt-out");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!sees(&other, &org_a, "Observation", "o1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_health_reporting_continues_through_an_opt_out_but_not_to_part_2_data() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    repo.create(
        &operator(),
        "Consent",
        choice("p1", "OPTOUT", "2026-01-10T09:00:00Z"),
        None,
    )
    .await
    .expect("opt-out");
    let dph = client(&w.public_health, "system/*.rs", PurposeOfUse::Pubhlth);
    assert!(sees(&repo, &dph, "Observation", "o1").await);
    assert!(!sees(&repo, &dph, "Condition", "sud").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_2_data_goes_out_with_its_label_and_notice_on_every_path() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    let org_a = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    assert!(!sees(&repo, &org_a, "Condition", "sud").await);
    let mut part2 = choice("p1", "42CFRPart2", "2026-01-10T09:00:00Z");
    part2["provision"] = json!({"type": "permit", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
        "reference": {"reference": format!("Organization/{}", w.org_a)}}]});
    repo.create(&operator(), "Consent", part2, None)
        .await
        .expect("part 2 consent");
    let carries = |r: &Value| {
        r["meta"]["security"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["code"] == "NORDSCLCD"))
            && r["meta"]["extension"][0]["valueString"]
                .as_str()
                .is_some_and(|t| t.contains("42 CFR part 2"))
    };
    let read = repo.read(&org_a, "Condition", "sud").await.expect("read");
    assert!(carries(&read.resource));
    let found = repo
        .search(
            &org_a,
            Some("Condition"),
            &params("patient=p1"),
            Handling::Strict,
        )
        .await
        .expect("search")
        .to_value();
    assert!(carries(&found["entry"][0]["resource"]));
    let everything = repo
        .everything(&org_a, "p1", &[])
        .await
        .expect("everything")
        .to_value();
    let sud = everything["entry"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["resource"]["id"] == "sud"))
        .expect("in $everything");
    assert!(carries(&sud["resource"]));
    let history = repo
        .history(
            &org_a,
            exchange::repository::HistoryScope::Instance("Condition".into(), "sud".into()),
            &[],
        )
        .await
        .expect("history");
    assert!(carries(&history["entry"][0]["resource"]));
    // Stored as it was sent: the label is the disclosure's, not the record's.
    let stored = repo.read(&who(), "Condition", "sud").await.expect("stored");
    assert!(!carries(&stored.resource));
}

/// The world with `p1` opted out (recorded by an operator), and org-a's treatment client.
async fn p1_opted_out() -> (Fixture, World, Requester) {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    let org_a = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    repo.create(
        &operator(),
        "Consent",
        choice("p1", "OPTOUT", "2026-01-10T09:00:00Z"),
        None,
    )
    .await
    .expect("opt-out");
    (repo, w, org_a)
}

/// What the policy routes to public health arrives for an opted-out patient and is kept, for
/// public health's eyes only: an immunization and a notifiable condition sent for treatment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reportable_data_for_an_opted_out_patient_is_kept_for_public_health_only() {
    let (repo, w, org_a) = p1_opted_out().await;
    let shot = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
        "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2026-01-12"});
    let tb = json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "A15.0"}]},
        "subject": {"reference": "Patient/p1"}});
    let depression = json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F32.9"}]},
        "subject": {"reference": "Patient/p1"}});
    let mut sent = Vec::new();
    for resource in [shot, tb, depression] {
        let ty = resource["resourceType"].as_str().expect("type").to_string();
        let answer = repo
            .create(&org_a, &ty, resource, None)
            .await
            .expect("acknowledged");
        assert_eq!(answer.status(), 201, "the sender is answered alike");
        sent.push((ty, answer.resource.id));
    }
    let dph = client(&w.public_health, "system/*.rs", PurposeOfUse::Pubhlth);
    let stored = |i: usize| {
        let store = repo.store().clone();
        let (ty, id) = sent[i].clone();
        async move { store.read(&ty, &id).await.expect("read").is_some() }
    };
    // The immunization and the tuberculosis are kept, and public health receives them...
    for i in [0, 1] {
        assert!(stored(i).await, "{:?} is kept", sent[i]);
        assert!(sees(&repo, &dph, &sent[i].0, &sent[i].1).await);
        // ...while the treating clinic that sent them sees nothing.
        assert!(!sees(&repo, &org_a, &sent[i].0, &sent[i].1).await);
    }
    let found = repo
        .search(
            &dph,
            Some("Immunization"),
            &params("patient=p1"),
            Handling::Strict,
        )
        .await
        .expect("public health searches")
        .to_value();
    assert_eq!(entries(&found).len(), 1, "{found}");
    let found = repo
        .search(
            &org_a,
            Some("Condition"),
            &params("patient=p1&code=A15.0"),
            Handling::Strict,
        )
        .await
        .expect("the clinic searches")
        .to_value();
    assert!(entries(&found).is_empty(), "{found}");
    // The depression is not reportable: not kept.
    assert!(!stored(2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_arriving_for_an_opted_out_patient_is_acknowledged_and_not_kept() {
    let (repo, w, org_a) = p1_opted_out().await;
    let sent = repo
        .create(&org_a, "Observation", observation("p1"), None)
        .await
        .expect("acknowledged");
    assert_eq!(sent.status(), 201);
    // Not kept: not even an operator finds it.
    assert!(!sees(&repo, &operator(), "Observation", &sent.resource.id).await);
    // Public-health reporting is kept (the policy routes it on).
    let dph = client(&w.public_health, "system/*.*", PurposeOfUse::Pubhlth);
    let reported = repo
        .create(&dph, "Observation", observation("p1"), None)
        .await
        .expect("reported");
    assert!(sees(&repo, &operator(), "Observation", &reported.resource.id).await);
    // Back in: data is kept again.
    repo.create(
        &operator(),
        "Consent",
        choice("p1", "OPTIN", "2026-02-10T09:00:00Z"),
        None,
    )
    .await
    .expect("opt-in");
    let sent = repo
        .create(&org_a, "Observation", observation("p1"), None)
        .await
        .expect("kept");
    assert!(sees(&repo, &org_a, "Observation", &sent.resource.id).await);
}

/// A clinician's account of `participant`, linked to `practitioner` (as `nutmeg admin user add
/// --practitioner` records it).
async fn clinician_account(
    repo: &Repository,
    user_id: &str,
    participant: &str,
    practitioner: Option<&str>,
) -> Requester {
    repo.store()
        .add_user(store::NewUser {
            user_id: user_id.into(),
            login: format!("{user_id}@example.org"),
            display_name: "A Clinician".into(),
            role: "clinician".into(),
            participant_id: Some(participant.into()),
            patient_id: None,
            practitioner_id: practitioner.map(str::to_string),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            totp_secret: None,
            created: 0,
        })
        .await
        .expect("account");
    Requester::new(
        format!("req-{user_id}"),
        Principal::User {
            user_id: user_id.into(),
            participant: Some(participant.into()),
            role: Role::Clinician,
        },
        PurposeOfUse::Treat,
        true,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_naming_a_practitioner_reaches_that_practitioner_and_nobody_else() {
    let repo = repo_enforcing().await;
    let w = world(&repo).await;
    let system = who();
    // A solo practice (its practitioner is the practice) with a treatment relationship.
    let solo = repo
        .add_participant(&system, &solo_therapist("L-solo"))
        .await
        .expect("solo practice")
        .id;
    for s in [Status::Onboarding, Status::Live] {
        repo.set_participant_status(&system, &solo, s)
            .await
            .expect("status");
    }
    let solo_client = client(&solo, "system/*.*", PurposeOfUse::Treat);
    repo.attest_treatment(&solo_client, "p1")
        .await
        .expect("attest");
    let joined = exchange::participants::practitioners_of(repo.store(), &solo)
        .await
        .expect("the solo practice's practitioner");
    assert_eq!(joined.len(), 1, "a solo practice has its one practitioner");
    let solo_practitioner = joined[0].0.clone();
    // Dr Named works at org-a: a Practitioner joined to org-a by an active PractitionerRole.
    repo.update(
        &system,
        "Practitioner",
        "dr-named",
        json!({"resourceType": "Practitioner", "id": "dr-named", "name": [{"family": "Named"}]}),
        None,
    )
    .await
    .expect("practitioner");
    repo.create(
        &system,
        "PractitionerRole",
        json!({"resourceType": "PractitionerRole", "active": true,
            "practitioner": {"reference": "Practitioner/dr-named"},
            "organization": {"reference": format!("Organization/{}", w.org_a)}}),
        None,
    )
    .await
    .expect("role");
    let named = clinician_account(&repo, "u-named", &w.org_a, Some("dr-named")).await;
    let colleague = clinician_account(&repo, "u-colleague", &w.org_a, None).await;
    // An account of org-a that claims the solo practice's practitioner (not joined to org-a).
    let claimant = clinician_account(&repo, "u-claimant", &w.org_a, Some(&solo_practitioner)).await;
    let org_a_system = client(&w.org_a, "system/*.*", PurposeOfUse::Treat);
    for r in [&named, &colleague, &claimant, &org_a_system, &solo_client] {
        assert!(
            !sees(&repo, r, "Condition", "sud").await,
            "Part 2 data without a consent"
        );
    }

    // The patient's Part 2 consent names Dr Named: they see it, their colleagues and their
    // organization's systems do not.
    let consent_for = |practitioner: &str| {
        let mut c = choice("p1", "42CFRPart2", "2026-01-10T09:00:00Z");
        c["provision"] = json!({"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": format!("Practitioner/{practitioner}")}}]});
        c
    };
    repo.create(&operator(), "Consent", consent_for("dr-named"), None)
        .await
        .expect("consent naming Dr Named");
    assert!(sees(&repo, &named, "Condition", "sud").await);
    for r in [&colleague, &claimant, &org_a_system, &solo_client] {
        assert!(!sees(&repo, r, "Condition", "sud").await);
    }

    // A consent naming the solo practitioner reaches their practice's system, and still not the
    // org-a account that claims them.
    repo.create(
        &operator(),
        "Consent",
        consent_for(&solo_practitioner),
        None,
    )
    .await
    .expect("consent naming the solo practitioner");
    assert!(sees(&repo, &solo_client, "Condition", "sud").await);
    assert!(!sees(&repo, &claimant, "Condition", "sud").await);
    assert!(!sees(&repo, &colleague, "Condition", "sud").await);
}
