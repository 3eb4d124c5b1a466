//! The exchange's access rules at the decision point, through the repository: scopes, participant
//! status, treatment relationships (sent data, care team, attestation), break-the-glass, public
//! health, operators and patients; and the audit trail of reads and refusals.

mod common;

use common::{client, observation, params, participant, patient, repo_enforcing, who, Fixture};
use exchange::access::{Principal, PurposeOfUse, Reason, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::{Error, Handling, HistoryScope};
use serde_json::{json, Value};

const ALL: &str = "system/*.cruds";

/// A patient and an observation loaded by the exchange itself (no participant is related).
async fn seed(repo: &Fixture) -> (String, String) {
    seed_person(repo, "Seed", "s-1").await
}

/// A Patient (`family`, medical record number `mrn`) with one Observation: (Patient id,
/// Observation id).
async fn seed_person(repo: &Fixture, family: &str, mrn: &str) -> (String, String) {
    let pid = repo
        .create(&who(), "Patient", patient(family, mrn), None)
        .await
        .expect("patient")
        .resource
        .id;
    let oid = repo
        .create(&who(), "Observation", observation(&pid), None)
        .await
        .expect("observation")
        .resource
        .id;
    (pid, oid)
}

async fn search_ids(repo: &Fixture, who: &Requester, ty: &str, query: &str) -> Vec<String> {
    let bundle = repo
        .search(who, Some(ty), &params(query), Handling::Lenient)
        .await
        .expect("search")
        .to_value();
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn forbidden(result: Result<impl std::fmt::Debug, Error>) -> Vec<Reason> {
    match result {
        Err(Error::Forbidden(reasons)) => reasons,
        other => panic!("expected 403, got {other:?}"),
    }
}

/// The AuditEvents recorded so far, as JSON.
async fn audit_events(repo: &Fixture) -> Vec<Value> {
    repo.store()
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| serde_json::from_str(&r.json).expect("json"))
        .collect()
}

#[tokio::test]
async fn without_a_relationship_nothing_about_the_patient_is_seen() {
    let repo = repo_enforcing().await;
    let (pid, oid) = seed(&repo).await;
    let hartford = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let ehr = client(&hartford, ALL, PurposeOfUse::Treat);

    // Unrelated: every path looks as if the patient did not exist.
    let absent = repo
        .read(&ehr, "Patient", "never-was")
        .await
        .expect_err("absent");
    let denied = repo.read(&ehr, "Patient", &pid).await.expect_err("denied");
    assert_eq!(
        (denied.status(), denied.outcome()),
        (absent.status(), absent.outcome())
    );
    assert_eq!(
        repo.read(&ehr, "Observation", &oid)
            .await
            .expect_err("obs")
            .status(),
        404
    );
    assert!(
        search_ids(&repo, &ehr, "Observation", &format!("patient={pid}"))
            .await
            .is_empty()
    );
    assert!(search_ids(&repo, &ehr, "Patient", "family=Seed")
        .await
        .is_empty());
    let count = repo
        .search(
            &ehr,
            Some("Observation"),
            &params("_summary=count"),
            Handling::Lenient,
        )
        .await
        .expect("count")
        .to_value();
    assert_eq!(count["total"], 0);
    assert_eq!(
        repo.everything(&ehr, &pid, &[])
            .await
            .expect_err("everything")
            .status(),
        404
    );
    let history = repo
        .history(&ehr, HistoryScope::Type("Observation".into()), &[])
        .await
        .expect("history");
    assert!(history.get("entry").is_none(), "{history}");

    // The directory is visible all the same.
    assert_eq!(
        search_ids(&repo, &ehr, "Organization", &format!("_id={hartford}")).await,
        vec![hartford.clone()]
    );
}

#[tokio::test]
async fn sending_data_about_a_patient_makes_a_relationship() {
    let repo = repo_enforcing().await;
    let (pid, oid) = seed(&repo).await;
    let hartford = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let other = participant(&repo, "Other", Kind::Clinic, Status::Live).await;
    let ehr = client(&hartford, ALL, PurposeOfUse::Treat);

    repo.create(&ehr, "Observation", observation(&pid), None)
        .await
        .expect("sent");
    // Now the whole record of the patient is Hartford's to see, including what others sent.
    assert_eq!(
        repo.read(&ehr, "Patient", &pid).await.expect("read").id,
        pid
    );
    assert!(repo.read(&ehr, "Observation", &oid).await.is_ok());
    assert_eq!(
        search_ids(&repo, &ehr, "Observation", &format!("patient={pid}"))
            .await
            .len(),
        2
    );
    // A fresh request of the same client (nothing remembered) still sees it: it is in the store.
    let again = client(&hartford, ALL, PurposeOfUse::Treat);
    assert!(repo.read(&again, "Observation", &oid).await.is_ok());
    // Another participant still sees nothing.
    let stranger = client(&other, ALL, PurposeOfUse::Treat);
    assert_eq!(
        repo.read(&stranger, "Observation", &oid)
            .await
            .expect_err("other")
            .status(),
        404
    );
}

#[tokio::test]
async fn care_team_and_attestation_make_relationships_and_are_audited() {
    let repo = repo_enforcing().await;
    let (pid, oid) = seed(&repo).await;
    let clinic = participant(&repo, "Clinic", Kind::Clinic, Status::Live).await;
    let therapist = participant(&repo, "Therapy", Kind::GroupPractice, Status::Live).await;

    let team = json!({
        "resourceType": "CareTeam",
        "status": "active",
        "subject": { "reference": format!("Patient/{pid}") },
        "participant": [{ "member": { "reference": format!("Organization/{clinic}") } }],
    });
    repo.create(&who(), "CareTeam", team, None)
        .await
        .expect("care team");
    let clinic_ehr = client(&clinic, ALL, PurposeOfUse::Treat);
    assert!(repo.read(&clinic_ehr, "Observation", &oid).await.is_ok());

    let ehr = client(&therapist, ALL, PurposeOfUse::Treat);
    assert!(repo.read(&ehr, "Observation", &oid).await.is_err());
    repo.attest_treatment(&ehr, &pid).await.expect("attested");
    assert!(repo.read(&ehr, "Observation", &oid).await.is_ok());
    let events = audit_events(&repo).await;
    let attested = events
        .iter()
        .find(|e| e["outcomeDesc"] == "treatment relationship attested")
        .expect("the attestation is audited");
    assert!(attested.to_string().contains(&format!("Patient/{pid}")));
    assert!(attested
        .to_string()
        .contains(&format!("Organization/{therapist}")));
    // Attesting for a patient who does not exist is 404 and records nothing of the kind.
    assert_eq!(
        repo.attest_treatment(&ehr, "nobody")
            .await
            .expect_err("nobody")
            .status(),
        404
    );
}

#[tokio::test]
async fn break_the_glass_is_permitted_and_flagged() {
    let repo = repo_enforcing().await;
    let (pid, oid) = seed(&repo).await;
    let er = participant(&repo, "Emergency", Kind::Hospital, Status::Live).await;
    let ehr = client(&er, ALL, PurposeOfUse::Etreat);
    assert!(repo.read(&ehr, "Observation", &oid).await.is_ok());
    let events = audit_events(&repo).await;
    let read = events.last().expect("recorded");
    assert_eq!(read["subtype"][0]["code"], "read");
    assert_eq!(read["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    assert!(read["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.contains("emergency")));
    assert!(read.to_string().contains(&format!("Patient/{pid}")));
}

#[tokio::test]
async fn scopes_status_and_purpose_refuse_requests_with_a_reason() {
    let repo = repo_enforcing().await;
    let (pid, _) = seed(&repo).await;
    let live = participant(&repo, "Live", Kind::Hospital, Status::Live).await;
    let onboarding = participant(&repo, "New", Kind::Clinic, Status::Onboarding).await;
    let suspended = participant(&repo, "Bad", Kind::Clinic, Status::Suspended).await;

    let patients_only = client(&live, "system/Patient.rs", PurposeOfUse::Treat);
    let reasons = forbidden(
        repo.search(
            &patients_only,
            Some("Observation"),
            &params(""),
            Handling::Lenient,
        )
        .await,
    );
    assert_eq!(reasons[0].code(), "scope");
    assert_eq!(
        forbidden(
            repo.create(&patients_only, "Patient", patient("X", "x"), None)
                .await
        )[0]
        .code(),
        "scope"
    );

    for id in [&onboarding, &suspended] {
        let ehr = client(id, ALL, PurposeOfUse::Treat);
        let reasons = forbidden(repo.read(&ehr, "Patient", &pid).await);
        assert_eq!(reasons[0].code(), "participant-status");
        assert_eq!(
            forbidden(
                repo.create(&ehr, "Observation", observation(&pid), None)
                    .await
            )[0]
            .code(),
            "participant-status"
        );
        // The directory stays open to them.
        assert_eq!(
            search_ids(&repo, &ehr, "Organization", &format!("_id={id}")).await,
            vec![id.clone()]
        );
    }

    let unknown = client("no-such-org", ALL, PurposeOfUse::Treat);
    assert_eq!(
        forbidden(repo.read(&unknown, "Patient", &pid).await)[0].code(),
        "unknown-participant"
    );

    let hospital_for_public_health = client(&live, ALL, PurposeOfUse::Pubhlth);
    assert_eq!(
        forbidden(
            repo.read(&hospital_for_public_health, "Patient", &pid)
                .await
        )[0]
        .code(),
        "purpose-of-use"
    );

    // Nobody writes the audit trail through the API.
    let event = json!({ "resourceType": "AuditEvent" });
    assert_eq!(
        forbidden(
            repo.create(
                &client(&live, ALL, PurposeOfUse::Treat),
                "AuditEvent",
                event,
                None
            )
            .await
        )[0]
        .code(),
        "audit-trail-read-only"
    );

    // Every refusal is in the audit trail, with its reason and no patient.
    let refusals: Vec<Value> = audit_events(&repo)
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "4")
        .collect();
    assert!(refusals.len() >= 8, "{}", refusals.len());
    assert!(refusals.iter().all(|e| e["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.starts_with("refused: "))));
}

#[tokio::test]
async fn public_health_sees_data_for_public_health() {
    let repo = repo_enforcing().await;
    let (_, oid) = seed(&repo).await;
    let agency = participant(&repo, "DPH", Kind::PublicHealth, Status::Live).await;
    let dph = client(&agency, ALL, PurposeOfUse::Pubhlth);
    assert!(repo.read(&dph, "Observation", &oid).await.is_ok());
}

#[tokio::test]
async fn patients_see_their_own_record_and_operators_need_a_purpose() {
    let repo = repo_enforcing().await;
    let (pid, oid) = seed(&repo).await;
    // Someone else (another chart number: never the same person without an operator).
    let (other_pid, other_oid) = seed_person(&repo, "Other", "s-2").await;
    let me = Requester::new(
        "req-portal",
        Principal::User {
            user_id: "pat".into(),
            participant: None,
            role: Role::Patient {
                patient_id: pid.clone(),
            },
        },
        PurposeOfUse::Patrqt,
        true,
    );
    assert!(repo.read(&me, "Observation", &oid).await.is_ok());
    assert!(repo.read(&me, "Patient", &pid).await.is_ok());
    assert_eq!(
        repo.read(&me, "Observation", &other_oid)
            .await
            .expect_err("other")
            .status(),
        404
    );
    assert_eq!(
        repo.read(&me, "Patient", &other_pid)
            .await
            .expect_err("other")
            .status(),
        404
    );
    assert_eq!(
        forbidden(
            repo.create(&me, "Observation", observation(&pid), None)
                .await
        )[0]
        .code(),
        "role"
    );

    let operator = |stated| {
        Requester::new(
            "req-op",
            Principal::User {
                user_id: "op".into(),
                participant: None,
                role: Role::OperatorAdmin,
            },
            PurposeOfUse::Hoperat,
            stated,
        )
    };
    assert_eq!(
        forbidden(repo.read(&operator(false), "Observation", &oid).await)[0].code(),
        "no-stated-purpose"
    );
    assert!(repo
        .read(&operator(true), "Observation", &oid)
        .await
        .is_ok());
    assert!(search_ids(&repo, &operator(false), "AuditEvent", "")
        .await
        .is_empty());
}

#[tokio::test]
async fn every_read_is_recorded_before_it_is_answered() {
    let repo = repo_enforcing().await;
    let (pid, _) = seed(&repo).await;
    let hartford = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let ehr = client(&hartford, ALL, PurposeOfUse::Treat);
    let sent = repo
        .create(&ehr, "Observation", observation(&pid), None)
        .await
        .expect("sent")
        .resource;
    let before = audit_events(&repo).await.len();
    let shown = search_ids(&repo, &ehr, "Observation", &format!("patient={pid}")).await;
    assert_eq!(shown.len(), 2);
    let events = audit_events(&repo).await;
    assert_eq!(events.len(), before + 1);
    let search = events.last().unwrap();
    assert_eq!(search["subtype"][0]["code"], "search");
    assert_eq!(search["outcome"], "0");
    let text = search.to_string();
    assert!(text.contains(&format!("Patient/{pid}")));
    for id in &shown {
        assert!(
            text.contains(&format!("Observation/{id}/_history/")),
            "{id}"
        );
    }
    assert!(text.contains(&format!("Organization/{hartford}")));
    assert!(text.contains(&sent.id));

    repo.history(
        &ehr,
        HistoryScope::Instance("Observation".into(), sent.id.clone()),
        &[],
    )
    .await
    .expect("history");
    repo.everything(&ehr, &pid, &[]).await.expect("everything");
    let events = audit_events(&repo).await;
    let kinds: Vec<&str> = events[before + 1..]
        .iter()
        .map(|e| e["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["history", "operation"]);

    // A conditional create answered with the match it found discloses that match: recorded.
    let found = repo
        .create(
            &ehr,
            "Patient",
            patient("Seed", "s-1"),
            Some("identifier=http://example.org/mrn|s-1"),
        )
        .await
        .expect("conditional create");
    assert!(!found.created);
    assert_eq!(found.resource.id, pid);
    let events = audit_events(&repo).await;
    let last = events.last().unwrap();
    assert_eq!(last["subtype"][0]["code"], "search");
    assert!(last.to_string().contains(&format!("Patient/{pid}")));
    assert!(matches!(
        repo.store().verify_audit().await.expect("verify"),
        store::AuditCheck::Intact { count, .. } if count == events.len() as u64
    ));
}

#[tokio::test]
async fn only_operators_change_participant_records() {
    let repo = repo_enforcing().await;
    let onboarding = participant(&repo, "Eager", Kind::Clinic, Status::Onboarding).await;
    let live = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let operator = participant(&repo, "Exchange", Kind::ExchangeOperator, Status::Live).await;
    let ehr = client(&live, ALL, PurposeOfUse::Treat);

    // A participant's system may not promote a participant (itself or another) to live, rewrite
    // one, delete one, or make a new one.
    let mut org = repo
        .read(&who(), "Organization", &onboarding)
        .await
        .expect("org")
        .resource;
    for tag in org["meta"]["tag"].as_array_mut().unwrap() {
        if tag["system"] == exchange::participants::STATUS_SYSTEM {
            tag["code"] = json!("live");
        }
    }
    for id in [&onboarding, &live] {
        let mut body = org.clone();
        body["id"] = json!(id);
        assert_eq!(
            forbidden(repo.update(&ehr, "Organization", id, body, None).await)[0].code(),
            "participant-record"
        );
    }
    assert_eq!(
        forbidden(repo.delete(&ehr, "Organization", &live).await)[0].code(),
        "participant-record"
    );
    let mut forged = org.clone();
    forged.as_object_mut().unwrap().remove("id");
    assert_eq!(
        forbidden(repo.create(&ehr, "Organization", forged, None).await)[0].code(),
        "participant-record"
    );
    let unchanged = repo
        .participant(&who(), &onboarding)
        .await
        .expect("participant");
    assert_eq!(unchanged.status, Status::Onboarding);

    // The Organizations an EHR sends with its data are its to send.
    let plain = json!({ "resourceType": "Organization", "name": "Lab Partner Inc" });
    assert!(repo.create(&ehr, "Organization", plain, None).await.is_ok());

    // An operator token may, and reads the audit trail.
    let ops = client(&operator, ALL, PurposeOfUse::Hoperat);
    let mut body = org.clone();
    body["id"] = json!(onboarding);
    repo.update(&ops, "Organization", &onboarding, body, None)
        .await
        .expect("the operator changes a participant record");
    assert_eq!(
        repo.participant(&who(), &onboarding)
            .await
            .expect("participant")
            .status,
        Status::Live
    );
    // Even an operator moves a participant only along the workflow, and a new participant starts
    // as applied.
    let mut back = repo
        .read(&who(), "Organization", &onboarding)
        .await
        .expect("org")
        .resource;
    for tag in back["meta"]["tag"].as_array_mut().unwrap() {
        if tag["system"] == exchange::participants::STATUS_SYSTEM {
            tag["code"] = json!("applied");
        }
    }
    let refused = repo
        .update(&ops, "Organization", &onboarding, back.clone(), None)
        .await
        .expect_err("live -> applied");
    assert_eq!(refused.status(), 422);
    assert!(refused.issues()[0]
        .diagnostics
        .contains("from live to applied"));
    let mut born_live = org.clone();
    born_live.as_object_mut().unwrap().remove("id");
    assert_eq!(
        repo.create(&ops, "Organization", born_live, None)
            .await
            .expect_err("a new participant that is live already")
            .status(),
        422
    );
    assert!(repo.search_audit_events(&ops, &[]).await.is_ok());
    assert_eq!(
        forbidden(repo.search_audit_events(&ehr, &[]).await)[0].code(),
        "role"
    );
}
