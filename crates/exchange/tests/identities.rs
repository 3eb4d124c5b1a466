//! Enterprise identities end to end through the repository: every Patient written is linked to an
//! identity (a duplicate from another source to the same one, a twin to her own), the decision
//! point's `same_person`, operators' review queue, link and unlink (hard constraints that later
//! writes and a batch rebuild keep, each in the link history with who and why), operators only,
//! and a deleted Patient leaving. Synthetic people only. Runs on SQLite, or on PostgreSQL with
//! `NUTMEG_TEST_EXCHANGE_ENGINE=postgres`.

mod common;

use common::{client, participant, repo_enforcing, who, Fixture};
use exchange::access::{Principal, PurposeOfUse, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::Error;
use serde_json::{json, Value};

const ALL: &str = "system/*.cruds";

fn person(given: &str, family: &str, birth: &str, line: &str, phone: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        // Each source's medical record numbers: the system is the source's.
        "identifier": [{ "system": format!("urn:test:mrn:{}", &mrn[..1]), "value": mrn }],
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "gender": "female",
        "birthDate": birth,
        "address": [{ "use": "home", "line": [line], "city": "Hartford", "state": "CT", "postalCode": "06105" }],
        "telecom": [{ "system": "phone", "value": phone }],
    })
}

fn operator() -> Requester {
    Requester::new(
        "req-op",
        Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        true,
    )
}

async fn create(repo: &Fixture, by: &Requester, patient: Value) -> String {
    repo.create(by, "Patient", patient, None)
        .await
        .expect("created")
        .resource
        .id
}

fn decision(a: &str, b: &str, reason: &str) -> Value {
    json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "patient-a", "valueReference": { "reference": format!("Patient/{a}") } },
            { "name": "patient-b", "valueString": b },
            { "name": "reason", "valueString": reason },
        ],
    })
}

/// The parameter values of one part of a Parameters resource, by name.
fn part<'a>(parts: &'a Value, name: &str) -> Option<&'a Value> {
    parts["part"].as_array()?.iter().find(|p| p["name"] == name)
}

/// Margaret at hospital A, the same Margaret at clinic B (another MRN), her twin Louise, and
/// someone else; answers (A's client, margaret, margaret at B, martha, other).
async fn seed(repo: &Fixture) -> (Requester, String, String, String, String) {
    let a = participant(repo, "Hartford", Kind::Hospital, Status::Live).await;
    let b = participant(repo, "ElmClinic", Kind::Hospital, Status::Live).await;
    let ehr_a = client(&a, ALL, PurposeOfUse::Treat);
    let ehr_b = client(&b, ALL, PurposeOfUse::Treat);
    let margaret = create(
        repo,
        &ehr_a,
        person(
            "Margaret",
            "Quarrington",
            "1962-04-17",
            "12 Elm Street",
            "860-555-0142",
            "A-1042",
        ),
    )
    .await;
    let at_b = create(
        repo,
        &ehr_b,
        person(
            "Margaret",
            "Quarrington",
            "1962-04-17",
            "12 Elm St",
            "860-555-0142",
            "B-77",
        ),
    )
    .await;
    let martha = create(
        repo,
        &ehr_a,
        person(
            "Louise",
            "Quarrington",
            "1962-04-17",
            "12 Elm Street",
            "860-555-0143",
            "A-5190",
        ),
    )
    .await;
    let other = create(
        repo,
        &who(),
        person(
            "Tomas",
            "Okafor",
            "1975-11-30",
            "40 Oak Avenue",
            "860-555-0199",
            "A-3377",
        ),
    )
    .await;
    (ehr_a, margaret, at_b, martha, other)
}

/// A clinic's heart-rate Observations about Margaret's record there and about her twin:
/// (Margaret's, the twin's).
async fn observations_from_another_clinic(
    repo: &Fixture,
    at_b: &str,
    twin: &str,
) -> (String, String) {
    let b = participant(repo, "ElmClinic2", Kind::Clinic, Status::Live).await;
    let ehr_b = client(&b, ALL, PurposeOfUse::Treat);
    let mut ids = Vec::new();
    for patient in [at_b, twin] {
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
            "subject": { "reference": format!("Patient/{patient}") },
        });
        let created = repo
            .create(&ehr_b, "Observation", observation, None)
            .await
            .expect("the clinic's Observation");
        ids.push(created.resource.id);
    }
    (ids[0].clone(), ids[1].clone())
}

/// The portal account of the patient whose record is `patient_id`.
fn patient_account(patient_id: &str) -> Requester {
    Requester::new(
        "req-patient",
        Principal::User {
            user_id: format!("u-{patient_id}"),
            participant: None,
            role: Role::Patient {
                patient_id: patient_id.to_string(),
            },
        },
        PurposeOfUse::Patrqt,
        true,
    )
}

/// The accounting of disclosures is the person's: a disclosure of what clinic B sent about
/// Margaret (under B's own Patient record) is in the accounting Margaret's account (linked to
/// hospital A's record) reads; her twin's is not.
#[tokio::test]
async fn the_accounting_of_disclosures_covers_every_record_of_the_person() {
    let repo = repo_enforcing().await;
    let (_, margaret, at_b, martha, _) = seed(&repo).await;
    let (at_b_obs, twin_obs) = observations_from_another_clinic(&repo, &at_b, &martha).await;
    let c = participant(&repo, "Westside", Kind::Clinic, Status::Live).await;
    let ehr_c = client(&c, ALL, PurposeOfUse::Treat);
    for (patient, id) in [(&at_b, &at_b_obs), (&martha, &twin_obs)] {
        repo.attest_treatment(&ehr_c, patient)
            .await
            .expect("attest");
        repo.read(&ehr_c, "Observation", id).await.expect("read");
    }
    let margaret_herself = patient_account(&margaret);
    let accounting = repo
        .disclosures(&margaret_herself, &margaret, &[])
        .await
        .expect("accounting");
    let what: Vec<String> = accounting["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .flat_map(|e| {
            e["resource"]["entity"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_string))
        .collect();
    assert!(
        what.iter()
            .any(|r| r.starts_with(&format!("Observation/{at_b_obs}/"))),
        "B's record is hers: {what:?}"
    );
    assert!(what.contains(&format!("Patient/{at_b}")), "{what:?}");
    assert!(
        !what
            .iter()
            .any(|r| r.contains(&twin_obs) || r.contains(&martha)),
        "not her twin's: {what:?}"
    );
}

/// The `Type/id` of every entry of the patient's `$everything` as `who` gets it.
async fn everything_refs(repo: &Fixture, who: &Requester, patient: &str) -> Vec<String> {
    let bundle = repo
        .everything(who, patient, &[])
        .await
        .expect("everything")
        .to_value();
    common::entries(&bundle)
        .into_iter()
        .map(|(r, _)| r)
        .collect()
}

/// The next request of the same requester.
fn again(who: &Requester) -> Requester {
    Requester::new("req-again", who.principal.clone(), who.purpose, true)
}

/// A treatment relationship is with the person: hospital A, which sent Margaret's record, reads
/// what another clinic sent about her under that clinic's own Patient record, and her
/// `$everything` at A is the person's record (both Patients, both sources' data), never her
/// twin's. A clinic with no relationship sees none of it, and once an operator unlinks the two
/// records, A no longer sees the other clinic's. Margaret herself, signed in as A's record, reads
/// what the other clinic sent about her until the unlink, too.
#[tokio::test]
async fn a_treatment_relationship_and_everything_follow_the_person() {
    let repo = repo_enforcing().await;
    let (ehr_a, margaret, at_b, martha, _) = seed(&repo).await;
    let (at_b_obs, twin_obs) = observations_from_another_clinic(&repo, &at_b, &martha).await;
    let margaret_herself = patient_account(&margaret);

    // Hospital A treats Margaret (it sent her record): B's data about her is hers.
    repo.read(&ehr_a, "Observation", &at_b_obs)
        .await
        .expect("A reads what B sent about the same person");
    repo.read(&ehr_a, "Patient", &at_b)
        .await
        .expect("and B's record of her");
    repo.read(&margaret_herself, "Observation", &at_b_obs)
        .await
        .expect("as does Margaret herself");
    // Her twin is not her: A has a relationship with the twin of its own (it sent her record),
    // but the patient account is Margaret's.
    let twin = repo.read(&margaret_herself, "Observation", &twin_obs).await;
    assert!(matches!(twin, Err(Error::NotFound)), "{twin:?}");
    let refs = everything_refs(&repo, &ehr_a, &margaret).await;
    for expected in [
        format!("Patient/{margaret}"),
        format!("Patient/{at_b}"),
        format!("Observation/{at_b_obs}"),
    ] {
        assert!(refs.contains(&expected), "{expected} in {refs:?}");
    }
    assert!(
        !refs
            .iter()
            .any(|r| r.contains(&martha) || r.contains(&twin_obs)),
        "never the twin's: {refs:?}"
    );

    // A clinic that treats neither record sees nothing of either.
    let c = participant(&repo, "Westside", Kind::Clinic, Status::Live).await;
    let ehr_c = client(&c, ALL, PurposeOfUse::Treat);
    let refused = repo.read(&ehr_c, "Observation", &at_b_obs).await;
    assert!(matches!(refused, Err(Error::NotFound)), "{refused:?}");
    let refused = repo.everything(&ehr_c, &margaret, &[]).await;
    assert!(matches!(refused, Err(Error::NotFound)), "{refused:?}");

    // An operator decides they are two people: what the link gave is taken back at once.
    repo.mpi_decide(
        &operator(),
        false,
        &decision(&margaret, &at_b, "different mothers' maiden names"),
    )
    .await
    .expect("unlinked");
    // New requests (a request remembers the relationships it found while it lasts).
    let ehr_a = again(&ehr_a);
    let margaret_herself = again(&margaret_herself);
    let gone = repo.read(&ehr_a, "Observation", &at_b_obs).await;
    assert!(matches!(gone, Err(Error::NotFound)), "{gone:?}");
    let gone = repo.read(&margaret_herself, "Observation", &at_b_obs).await;
    assert!(matches!(gone, Err(Error::NotFound)), "{gone:?}");
    let refs = everything_refs(&repo, &ehr_a, &margaret).await;
    assert!(refs.contains(&format!("Patient/{margaret}")), "{refs:?}");
    assert!(
        !refs
            .iter()
            .any(|r| r.contains(&at_b) || r.contains(&at_b_obs)),
        "B's records are someone else's now: {refs:?}"
    );
}

#[tokio::test]
async fn every_patient_is_linked_and_a_duplicate_from_another_source_shares_the_identity() {
    let repo = repo_enforcing().await;
    let (_, margaret, at_b, martha, other) = seed(&repo).await;
    let mut same = vec![margaret.clone(), at_b.clone()];
    same.sort();
    assert_eq!(repo.same_person(&margaret).await.expect("same"), same);
    assert_eq!(repo.same_person(&at_b).await.expect("same"), same);
    // The twin and the stranger are people of their own.
    assert_eq!(
        repo.same_person(&martha).await.expect("same"),
        vec![martha.clone()]
    );
    assert_eq!(
        repo.same_person(&other).await.expect("same"),
        vec![other.clone()]
    );
    // An id nobody linked is just itself.
    assert_eq!(
        repo.same_person("nobody").await.expect("same"),
        vec!["nobody"]
    );
    let identity = repo
        .identity_of(&margaret)
        .await
        .expect("identity")
        .expect("linked");
    assert_eq!(
        repo.identity_of(&at_b).await.expect("identity"),
        Some(identity.clone())
    );

    // The history says who linked each and why.
    let history = repo
        .mpi_history(&operator(), &[("patient".into(), at_b.clone())])
        .await
        .expect("history");
    let entry = &history["parameter"][0];
    assert_eq!(part(entry, "action").expect("action")["valueCode"], "link");
    assert!(part(entry, "actor").expect("actor")["valueString"]
        .as_str()
        .is_some_and(|a| a.starts_with("client:")));
    assert!(part(entry, "reason").expect("reason")["valueString"]
        .as_str()
        .is_some_and(|r| r.contains("certain match")));

    // An update that keeps the identity changes nothing; a deleted Patient leaves it.
    repo.update(
        &who(),
        "Patient",
        &at_b,
        {
            let mut p = person(
                "Margaret",
                "Quarrington",
                "1962-04-17",
                "12 Elm St",
                "860-555-0142",
                "B-77",
            );
            p["id"] = json!(at_b);
            p
        },
        None,
    )
    .await
    .expect("updated");
    assert_eq!(
        repo.identity_of(&at_b).await.expect("identity"),
        Some(identity)
    );
    repo.delete(&who(), "Patient", &at_b)
        .await
        .expect("deleted");
    assert_eq!(
        repo.same_person(&margaret).await.expect("same"),
        vec![margaret.clone()]
    );
    assert_eq!(repo.identity_of(&at_b).await.expect("identity"), None);
}

#[tokio::test]
async fn operators_link_and_unlink_and_their_decisions_hold() {
    let repo = repo_enforcing().await;
    let (ehr_a, margaret, at_b, martha, other) = seed(&repo).await;

    // Only operators: a participant's client is refused (and the refusal audited).
    let before = repo
        .store()
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .len();
    for refused in [
        repo.mpi_reviews(&ehr_a, &[]).await.err(),
        repo.mpi_decide(&ehr_a, true, &decision(&margaret, &other, "x"))
            .await
            .err(),
        repo.mpi_history(&ehr_a, &[]).await.err(),
    ] {
        assert!(matches!(refused, Some(Error::Forbidden(_))), "{refused:?}");
    }
    let after = repo
        .store()
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .len();
    assert_eq!(after, before + 3);

    // A reason is required.
    let no_reason = repo
        .mpi_decide(&operator(), true, &decision(&margaret, &other, ""))
        .await;
    assert!(matches!(no_reason, Err(Error::Invalid(_))), "{no_reason:?}");

    // Unlink Margaret at B from Margaret at A: their identity splits, and the operator's decision
    // is in both histories.
    let answer = repo
        .mpi_decide(
            &operator(),
            false,
            &decision(&margaret, &at_b, "different mothers' maiden names"),
        )
        .await
        .expect("unlinked");
    assert_eq!(answer["parameter"][2]["valueBoolean"], true, "{answer}");
    assert_eq!(
        repo.same_person(&margaret).await.expect("same"),
        vec![margaret.clone()]
    );
    assert_eq!(
        repo.same_person(&at_b).await.expect("same"),
        vec![at_b.clone()]
    );
    // One side keeps the identity's id, the other moves to a new one.
    let history = repo.mpi_history(&operator(), &[]).await.expect("history");
    let split = history["parameter"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| part(e, "action").is_some_and(|a| a["valueCode"] == "split"))
        .expect("a split entry")
        .clone();
    assert_eq!(
        part(&split, "actor").expect("actor")["valueString"],
        "user:op-1"
    );
    assert_eq!(
        part(&split, "reason").expect("reason")["valueString"],
        "different mothers' maiden names"
    );

    // A later write of the same record does not join them again.
    let mut again = person(
        "Margaret",
        "Quarrington",
        "1962-04-17",
        "12 Elm St",
        "860-555-0142",
        "B-77",
    );
    again["id"] = json!(at_b);
    repo.update(&who(), "Patient", &at_b, again, None)
        .await
        .expect("updated");
    assert_eq!(
        repo.same_person(&at_b).await.expect("same"),
        vec![at_b.clone()]
    );

    // Link Martha to Margaret (an operator knows better than the twin guard), then the batch
    // rebuild: both decisions hold.
    repo.mpi_decide(
        &operator(),
        true,
        &decision(&margaret, &martha, "same person, records merged on paper"),
    )
    .await
    .expect("linked");
    let mut both = vec![margaret.clone(), martha.clone()];
    both.sort();
    assert_eq!(repo.same_person(&margaret).await.expect("same"), both);
    // Linking what an operator told apart is refused.
    let refused = repo
        .mpi_decide(&operator(), true, &decision(&martha, &at_b, "?"))
        .await;
    assert!(
        matches!(refused, Err(Error::Unprocessable(_))),
        "{refused:?}"
    );

    let stages = std::sync::Mutex::new(Vec::new());
    let report = repo
        .rebuild_identities("system:test", &|stage: &str, _: u64, _: u64| {
            stages.lock().expect("lock").push(stage.to_string())
        })
        .await
        .expect("rebuilt");
    assert_eq!(report.patients, 4);
    assert!(stages.lock().expect("lock").iter().any(|s| s == "scoring"));
    assert_eq!(repo.same_person(&margaret).await.expect("same"), both);
    assert_eq!(
        repo.same_person(&at_b).await.expect("same"),
        vec![at_b.clone()]
    );
    assert_eq!(
        repo.same_person(&other).await.expect("same"),
        vec![other.clone()]
    );
    // Identities keep their ids through a rebuild.
    let identity = repo.identity_of(&martha).await.expect("identity");
    repo.rebuild_identities("system:test", &|_: &str, _: u64, _: u64| {})
        .await
        .expect("rebuilt");
    assert_eq!(repo.identity_of(&martha).await.expect("identity"), identity);
}

/// The review pairs of the operators' queue, each as its two Patient ids.
async fn queued_pairs(repo: &Fixture) -> Vec<(String, String)> {
    let queue = repo.mpi_reviews(&operator(), &[]).await.expect("reviews");
    queue["parameter"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let id = |name: &str| {
                part(r, name).expect("patient")["valueReference"]["reference"]
                    .as_str()
                    .expect("reference")
                    .trim_start_matches("Patient/")
                    .to_string()
            };
            (id("patient-a"), id("patient-b"))
        })
        .collect()
}

#[tokio::test]
async fn a_second_chart_at_one_source_waits_for_review_instead_of_joining_the_first() {
    let repo = repo_enforcing().await;
    let (ehr_a, margaret, at_b, _, _) = seed(&repo).await;
    // Hospital A opens a second chart for someone with Margaret's name, birth date, address and
    // phone: the demographics say certain, but A numbered her as another person, so the exchange
    // does not join them on its own, neither with A's first chart nor through B's record.
    let second = create(
        &repo,
        &ehr_a,
        person(
            "Margaret",
            "Quarrington",
            "1962-04-17",
            "12 Elm Street",
            "860-555-0142",
            "A-1043",
        ),
    )
    .await;
    let mut first = vec![margaret.clone(), at_b.clone()];
    first.sort();
    assert_eq!(repo.same_person(&margaret).await.expect("same"), first);
    assert_eq!(
        repo.same_person(&second).await.expect("same"),
        vec![second.clone()]
    );
    let waiting = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .any(|(a, b)| (a == &second || b == &second) && first.iter().any(|f| f == a || f == b))
    };
    assert!(waiting(&queued_pairs(&repo).await));
    let history = repo
        .mpi_history(&operator(), &[("patient".into(), second.clone())])
        .await
        .expect("history");
    assert!(
        part(&history["parameter"][0], "reason").expect("reason")["valueString"]
            .as_str()
            .is_some_and(|r| r.contains("waits for review"))
    );

    // A batch rebuild keeps them apart and the pair in the queue.
    repo.rebuild_identities("system:test", &|_: &str, _: u64, _: u64| {})
        .await
        .expect("rebuilt");
    assert_eq!(repo.same_person(&margaret).await.expect("same"), first);
    assert_eq!(
        repo.same_person(&second).await.expect("same"),
        vec![second.clone()]
    );
    assert!(waiting(&queued_pairs(&repo).await));

    // The operator, who found the charts were one person's, links them: that holds.
    repo.mpi_decide(
        &operator(),
        true,
        &decision(&second, &margaret, "duplicate chart at hospital A"),
    )
    .await
    .expect("linked");
    let mut all = vec![margaret.clone(), at_b.clone(), second.clone()];
    all.sort();
    assert_eq!(repo.same_person(&second).await.expect("same"), all);
    repo.rebuild_identities("system:test", &|_: &str, _: u64, _: u64| {})
        .await
        .expect("rebuilt");
    assert_eq!(repo.same_person(&second).await.expect("same"), all);
}

#[tokio::test]
async fn a_probable_match_waits_in_the_review_queue() {
    let repo = repo_enforcing().await;
    let (ehr_a, margaret, ..) = seed(&repo).await;
    // Peggy: a nickname, a typo in the family name, no phone, no identifier in common: sent to
    // review or linked, never a new person without a trace.
    let peggy = create(
        &repo,
        &ehr_a,
        json!({
            "resourceType": "Patient",
            "name": [{ "family": "Quarington", "given": ["Peggy"] }],
            "gender": "female",
            "birthDate": "1962-04-17",
            "address": [{ "line": ["12 Elm St"], "city": "Hartford", "postalCode": "06105" }],
        }),
    )
    .await;
    let linked = repo
        .same_person(&peggy)
        .await
        .expect("same")
        .contains(&margaret);
    let queue = repo.mpi_reviews(&operator(), &[]).await.expect("reviews");
    let queued = queue["parameter"]
        .as_array()
        .expect("reviews")
        .iter()
        .any(|r| {
            let refs: Vec<&str> = ["patient-a", "patient-b"]
                .iter()
                .filter_map(|n| part(r, n)?["valueReference"]["reference"].as_str())
                .collect();
            refs.contains(&format!("Patient/{peggy}").as_str())
        });
    assert!(linked || queued, "{queue}");
    if queued {
        // The operator links them: the queue forgets the pair.
        repo.mpi_decide(
            &operator(),
            true,
            &decision(&peggy, &margaret, "confirmed by phone"),
        )
        .await
        .expect("linked");
        assert!(repo
            .same_person(&peggy)
            .await
            .expect("same")
            .contains(&margaret));
        let queue = repo.mpi_reviews(&operator(), &[]).await.expect("reviews");
        assert!(!queue.to_string().contains(&peggy), "{queue}");
    }
}

#[tokio::test]
async fn pix_cross_references_the_identifiers_of_one_person_and_hides_what_the_caller_may_not_see()
{
    let repo = repo_enforcing().await;
    let (ehr_a, margaret, at_b, martha, _) = seed(&repo).await;
    let pix = |who: Requester, query: &'static str| {
        let repo = &repo;
        async move {
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            repo.pix_query(&who, &params).await
        }
    };
    // The exchange (or an operator) asks for Margaret's MRN at A: her MRN at B and both Patients.
    let answer = pix(who(), "sourceIdentifier=urn:test:mrn:A|A-1042")
        .await
        .expect("answered");
    let text = answer.to_string();
    assert!(text.contains("B-77"), "{answer}");
    assert!(text.contains(&format!("Patient/{margaret}")), "{answer}");
    assert!(text.contains(&format!("Patient/{at_b}")), "{answer}");
    assert!(
        !text.contains("A-1042\""),
        "the source identifier is not answered: {answer}"
    );
    assert!(
        !text.contains(&martha),
        "the twin is another person: {answer}"
    );
    // Only the target system named.
    let answer = pix(
        who(),
        "sourceIdentifier=urn:test:mrn:A|A-1042&targetSystem=urn:test:mrn:B",
    )
    .await
    .expect("answered");
    let parameters = answer["parameter"].as_array().expect("parameters");
    assert_eq!(parameters.len(), 2, "{answer}");
    assert_eq!(parameters[0]["valueIdentifier"]["value"], "B-77");
    assert_eq!(
        parameters[1]["valueReference"]["reference"],
        format!("Patient/{at_b}")
    );

    // Hospital A treats Margaret (it sent her record), and a treatment relationship is with the
    // person: it gets B's record of her too.
    let answer = pix(ehr_a.clone(), "sourceIdentifier=urn:test:mrn:A|A-1042")
        .await
        .expect("answered");
    let text = answer.to_string();
    assert!(text.contains("B-77") && text.contains(&at_b), "{answer}");
    assert!(text.contains(&format!("Patient/{margaret}")), "{answer}");
    // A clinic that treats neither learns from either identifier exactly what an identifier
    // nobody holds tells: 404.
    let c = participant(&repo, "Westside", Kind::Clinic, Status::Live).await;
    let ehr_c = client(&c, ALL, PurposeOfUse::Treat);
    for source in [
        "sourceIdentifier=urn:test:mrn:A|A-1042",
        "sourceIdentifier=urn:test:mrn:B|B-77",
        "sourceIdentifier=urn:test:mrn:A|nope",
    ] {
        let hidden = pix(ehr_c.clone(), source).await;
        assert!(
            matches!(hidden, Err(Error::NotFound)),
            "{source}: {hidden:?}"
        );
    }
    // Bad input is a 400.
    let bad = pix(ehr_a, "sourceIdentifier=A-1042").await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
}
