//! `Patient/$match` end to end through the repository: a participant's misspelt Patient finds the
//! stored one, a namesake born the same year is not certain, `count` and `onlyCertainMatches` are
//! honoured, the index follows creates, updates and deletes, a caller without a treatment
//! relationship learns nothing (its answer is the answer about nobody), the read is audited, and bad
//! input is a 4xx. Synthetic people only.

mod common;

use common::{client, participant, repo_enforcing, who, Fixture};
use exchange::access::{PurposeOfUse, Requester};
use exchange::participants::{Kind, Status};
use exchange::repository::{Error, MATCH_GRADE};
use serde_json::{json, Value};

const ALL: &str = "system/*.cruds";

fn person(given: &str, family: &str, gender: &str, birth: &str, line: &str, phone: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "gender": gender,
        "birthDate": birth,
        "address": [{ "use": "home", "line": [line], "city": "Hartford", "state": "CT", "postalCode": "06105" }],
        "telecom": [{ "system": "phone", "value": phone }],
    })
}

/// Margaret Quarrington as hospital A knows her.
fn margaret_as_sent() -> Value {
    person(
        "Margaret",
        "Quarrington",
        "female",
        "1962-04-17",
        "12 Elm Street",
        "860-555-0142",
    )
}

/// The same woman as another system sends her: a nickname, a typo in the family name, an
/// abbreviated street, no phone.
fn peggy() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{ "family": "Quarington", "given": ["Peggy"] }],
        "gender": "female",
        "birthDate": "1962-04-17",
        "address": [{ "line": ["12 Elm St"], "city": "Hartford", "postalCode": "06105" }],
    })
}

fn ask(patient: Value, only_certain: Option<bool>, count: Option<i64>) -> Value {
    let mut parameter = vec![json!({ "name": "resource", "resource": patient })];
    if let Some(b) = only_certain {
        parameter.push(json!({ "name": "onlyCertainMatches", "valueBoolean": b }));
    }
    if let Some(n) = count {
        parameter.push(json!({ "name": "count", "valueInteger": n }));
    }
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

/// Each entry's Patient id, grade and score.
fn matches(bundle: &Value) -> Vec<(String, String, f64)> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    assert_eq!(e["search"]["mode"], "match");
                    assert_eq!(e["search"]["extension"][0]["url"], MATCH_GRADE);
                    (
                        e["resource"]["id"].as_str().unwrap_or("").to_string(),
                        e["search"]["extension"][0]["valueCode"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        e["search"]["score"].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn create(repo: &exchange::repository::Repository, by: &Requester, patient: Value) -> String {
    repo.create(by, "Patient", patient, None)
        .await
        .expect("created")
        .resource
        .id
}

/// Hospital A's patients (Margaret, her twin, and a namesake born the same year), others loaded by the
/// exchange itself; answers (hospital A's client, Margaret's id, Robert's id).
async fn seed(repo: &Fixture) -> (Requester, String, String) {
    let a = participant(repo, "Hartford", Kind::Hospital, Status::Live).await;
    let ehr = client(&a, ALL, PurposeOfUse::Treat);
    let margaret = create(repo, &ehr, margaret_as_sent()).await;
    let robert = create(
        repo,
        &ehr,
        person(
            "Robert",
            "Quarrington",
            "male",
            "1962-09-02",
            "40 Oak Avenue",
            "860-555-0199",
        ),
    )
    .await;
    // Her twin sister: the same family name, birth date and address; never more than possible.
    create(
        repo,
        &ehr,
        person(
            "Martha",
            "Quarrington",
            "female",
            "1962-04-17",
            "12 Elm Street",
            "860-555-0143",
        ),
    )
    .await;
    let others = [
        ("Alice", "Brennan", "female", "1980-01-05"),
        ("Tomas", "Okafor", "male", "1975-11-30"),
        ("Linh", "Nguyen", "female", "1991-06-12"),
        ("David", "Smith", "male", "1962-04-17"),
        ("Sara", "Lindqvist", "female", "1958-03-03"),
    ];
    for (i, (given, family, gender, birth)) in others.into_iter().enumerate() {
        let line = format!("{} Main Street", 100 + i);
        let phone = format!("860-555-01{:02}", 10 + i);
        create(
            repo,
            &who(),
            person(given, family, gender, birth, &line, &phone),
        )
        .await;
    }
    (ehr, margaret, robert)
}

#[tokio::test]
async fn a_misspelt_nickname_finds_the_patient_and_a_namesake_is_not_certain() {
    let repo = repo_enforcing().await;
    let (ehr, margaret, robert) = seed(&repo).await;

    let bundle = repo
        .match_patients(&ehr, ask(peggy(), None, None), &[])
        .await
        .expect("matched");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let found = matches(&bundle);
    assert!(!found.is_empty(), "{bundle}");
    assert_eq!(found[0].0, margaret, "{found:?}");
    assert!(
        ["certain", "probable"].contains(&found[0].1.as_str()),
        "{found:?}"
    );
    assert!(found.windows(2).all(|w| w[0].2 >= w[1].2), "best first");
    assert!(found.iter().all(|f| (0.0..=1.0).contains(&f.2)));
    assert_eq!(bundle["total"], found.len());
    assert!(
        found
            .iter()
            .all(|(id, grade, _)| id != &robert || grade != "certain"),
        "{found:?}"
    );

    // Robert himself, as sent by another system, is not Margaret.
    let sent_robert = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Quarrington", "given": ["Bob"] }],
        "gender": "male",
        "birthDate": "1962-09-02",
    });
    let bundle = repo
        .match_patients(&ehr, ask(sent_robert, None, None), &[])
        .await
        .expect("matched");
    let found = matches(&bundle);
    assert_eq!(found.first().map(|f| f.0.as_str()), Some(robert.as_str()));
    assert!(found
        .iter()
        .all(|(id, grade, _)| id != &margaret || grade != "certain"));
}

#[tokio::test]
async fn count_and_only_certain_matches_are_honoured() {
    let repo = repo_enforcing().await;
    let (ehr, margaret, _) = seed(&repo).await;
    // Margaret exactly as stored: certain.
    let all = matches(
        &repo
            .match_patients(&ehr, ask(margaret_as_sent(), None, None), &[])
            .await
            .expect("matched"),
    );
    assert_eq!(all[0].0, margaret);
    assert_eq!(all[0].1, "certain", "{all:?}");
    assert!(
        all.iter().skip(1).all(|f| f.1 != "certain"),
        "her twin is not certain: {all:?}"
    );
    assert!(all.len() >= 2, "her twin is a possible match: {all:?}");

    let one = matches(
        &repo
            .match_patients(&ehr, ask(margaret_as_sent(), None, Some(1)), &[])
            .await
            .expect("matched"),
    );
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].0, margaret);

    let certain = matches(
        &repo
            .match_patients(&ehr, ask(margaret_as_sent(), Some(true), None), &[])
            .await
            .expect("matched"),
    );
    assert!(!certain.is_empty());
    assert!(certain.iter().all(|f| f.1 == "certain"), "{certain:?}");
    assert!(certain.len() < all.len());
}

#[tokio::test]
async fn the_index_follows_creates_updates_and_deletes() {
    let repo = repo_enforcing().await;
    let (ehr, margaret, _) = seed(&repo).await;
    let ids = |b: &Value| matches(b).into_iter().map(|f| f.0).collect::<Vec<_>>();
    // Built by this first match.
    let before = repo
        .match_patients(&ehr, ask(peggy(), None, None), &[])
        .await
        .expect("matched");
    assert!(ids(&before).contains(&margaret));

    // A new patient is found at once.
    let newcomer = person(
        "Ignatius",
        "Wojciechowski",
        "male",
        "2001-12-24",
        "7 Birch Road",
        "860-555-0177",
    );
    let id = create(&repo, &ehr, newcomer.clone()).await;
    let after = repo
        .match_patients(&ehr, ask(newcomer, None, None), &[])
        .await
        .expect("matched");
    assert_eq!(ids(&after).first(), Some(&id));

    // Margaret renamed (married) is found under her new name, no longer as Peggy Quarington.
    let mut renamed = margaret_as_sent();
    renamed["id"] = json!(margaret);
    renamed["name"][0]["family"] = json!("Featherstonehaugh");
    renamed["birthDate"] = json!("1962-04-18");
    renamed["address"] = json!([{ "use": "home", "line": ["3 Pine Court"], "city": "Mystic", "postalCode": "06355" }]);
    renamed.as_object_mut().map(|o| o.remove("telecom"));
    repo.update(&ehr, "Patient", &margaret, renamed.clone(), None)
        .await
        .expect("updated");
    let asked = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Featherstonehaugh", "given": ["Margaret"] }],
        "birthDate": "1962-04-18",
    });
    let by_new_name = repo
        .match_patients(&ehr, ask(asked.clone(), None, None), &[])
        .await
        .expect("matched");
    assert_eq!(ids(&by_new_name).first(), Some(&margaret));

    // Deleted: gone from the index.
    repo.delete(&ehr, "Patient", &margaret)
        .await
        .expect("deleted");
    let gone = repo
        .match_patients(&ehr, ask(asked, None, None), &[])
        .await
        .expect("matched");
    assert!(!ids(&gone).contains(&margaret), "{gone}");
}

/// What an answer says, without what differs between any two answers (its id and time).
fn substance(bundle: &Value) -> Value {
    let mut b = bundle.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    b
}

#[tokio::test]
async fn a_participant_without_a_relationship_learns_nothing() {
    let repo = repo_enforcing().await;
    let (_, margaret, _) = seed(&repo).await;
    let b = participant(&repo, "Mystic", Kind::Clinic, Status::Live).await;
    let stranger = client(&b, ALL, PurposeOfUse::Treat);

    let existing = repo
        .match_patients(&stranger, ask(margaret_as_sent(), None, None), &[])
        .await
        .expect("answered");
    let nobody = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Xanthopoulou", "given": ["Zephyrine"] }],
        "gender": "female",
        "birthDate": "1999-09-09",
    });
    let absent = repo
        .match_patients(&stranger, ask(nobody, None, None), &[])
        .await
        .expect("answered");
    assert!(matches(&existing).is_empty(), "{existing}");
    assert_eq!(substance(&existing), substance(&absent));
    assert_eq!(existing["total"], 0);

    // With a treatment relationship (attested), the same question finds her.
    repo.attest_treatment(&stranger, &margaret)
        .await
        .expect("attested");
    let now = repo
        .match_patients(&stranger, ask(margaret_as_sent(), None, None), &[])
        .await
        .expect("answered");
    assert_eq!(
        matches(&now).first().map(|f| f.0.as_str()),
        Some(margaret.as_str())
    );

    // Without a search scope on Patient the request itself is refused.
    let narrow = client(&b, "system/Observation.rs", PurposeOfUse::Treat);
    let refused = repo
        .match_patients(&narrow, ask(margaret_as_sent(), None, None), &[])
        .await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
}

#[tokio::test]
async fn the_match_is_audited_with_the_patients_disclosed() {
    let repo = repo_enforcing().await;
    let (ehr, margaret, _) = seed(&repo).await;
    repo.match_patients(&ehr, ask(peggy(), None, Some(5)), &[])
        .await
        .expect("matched");
    let records = repo.store().audit_records(0, 10_000).await.expect("trail");
    let last: Value = serde_json::from_str(&records.last().expect("a record").json).expect("json");
    assert_eq!(last["subtype"][0]["code"], "operation", "{last}");
    assert_eq!(last["action"], "E");
    let entities = last["entity"].as_array().expect("entities");
    let query = entities
        .iter()
        .find_map(|e| e["query"].as_str())
        .expect("the query");
    use base64::Engine as _;
    let query = base64::engine::general_purpose::STANDARD
        .decode(query)
        .expect("base64");
    assert_eq!(query, b"Patient/$match?count=5");
    let reference = format!("Patient/{margaret}");
    assert!(
        entities.iter().any(|e| e["what"]["reference"] == reference),
        "{last}"
    );
    // The Patient sent is not in the trail: only what was disclosed.
    assert!(!last.to_string().contains("Quarington"));
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_every_problem() {
    let repo = repo_enforcing().await;
    let (ehr, _, _) = seed(&repo).await;
    let cases = [
        json!({ "resourceType": "Parameters", "parameter": [] }),
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "resource", "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "x" } } }] }),
        ask(
            json!({ "resourceType": "Patient", "birthDate": "the seventeenth" }),
            None,
            None,
        ),
        ask(
            json!({ "resourceType": "Patient", "gender": "female" }),
            None,
            None,
        ),
        ask(peggy(), None, Some(0)),
        json!({ "resourceType": "Observation" }),
        json!("Patient"),
    ];
    for body in cases {
        let error = repo
            .match_patients(&ehr, body.clone(), &[])
            .await
            .expect_err("refused");
        assert!((400..500).contains(&error.status()), "{body}: {error:?}");
        let outcome = error.outcome();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(!outcome["issue"].as_array().expect("issues").is_empty());
    }
}

/// A FHIR Patient from a generated record (every empty value left out).
fn patient_of(r: &mpi::Record) -> Value {
    let s = mpi::standardise(r);
    let mut p = json!({ "resourceType": "Patient" });
    let given: Vec<&String> = r.given_names.iter().filter(|g| !g.is_empty()).collect();
    let mut name = json!({});
    if !r.family_name.is_empty() {
        name["family"] = json!(r.family_name);
    }
    if !given.is_empty() {
        name["given"] = json!(given);
    }
    if name.as_object().is_some_and(|n| !n.is_empty()) {
        p["name"] = json!([name]);
    }
    if s.birth.len() == 8 {
        p["birthDate"] = json!(format!(
            "{}-{}-{}",
            &s.birth[..4],
            &s.birth[4..6],
            &s.birth[6..]
        ));
    }
    match s.sex.as_str() {
        "m" => p["gender"] = json!("male"),
        "f" => p["gender"] = json!("female"),
        _ => {}
    }
    let lines: Vec<&String> = r.address_lines.iter().filter(|l| !l.is_empty()).collect();
    let mut address = json!({});
    for (key, value) in [
        ("city", &r.city),
        ("state", &r.state),
        ("postalCode", &r.postcode),
    ] {
        if !value.is_empty() {
            address[key] = json!(value);
        }
    }
    if !lines.is_empty() {
        address["line"] = json!(lines);
    }
    if address.as_object().is_some_and(|a| !a.is_empty()) {
        p["address"] = json!([address]);
    }
    let mut telecom = Vec::new();
    if !r.phone.is_empty() {
        telecom.push(json!({ "system": "phone", "value": r.phone }));
    }
    if !r.email.is_empty() {
        telecom.push(json!({ "system": "email", "value": r.email }));
    }
    if !telecom.is_empty() {
        p["telecom"] = json!(telecom);
    }
    let identifiers: Vec<Value> = r
        .identifiers
        .iter()
        .filter(|i| !i.system.is_empty() && !i.value.is_empty())
        .map(|i| json!({ "system": i.system, "value": i.value }))
        .collect();
    if !identifiers.is_empty() {
        p["identifier"] = json!(identifiers);
    }
    p
}

/// With more than `MIN_TRAINING` Patients the model is trained on the store's own (read in pages),
/// and noisy copies of stored people still find them first.
#[tokio::test]
async fn trained_on_the_store_noisy_copies_find_their_person() {
    let repo = repo_enforcing().await;
    let mut generator = mpi::Generator::new(7);
    let people: Vec<mpi::Record> = (0..exchange::repository::MIN_TRAINING + 50)
        .map(|_| generator.identity(0.5))
        .collect();
    let entries: Vec<Value> = people
        .iter()
        .map(|r| json!({ "resource": patient_of(r), "request": { "method": "POST", "url": "Patient" } }))
        .collect();
    let response = repo
        .bundle(
            &who(),
            json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }),
        )
        .await
        .expect("loaded");
    let ids: Vec<String> = response["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let location = e["response"]["location"].as_str().expect("location");
            location.split('/').nth(1).expect("id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), people.len());

    // Found first, and graded a match (certain or probable) unless the copy lost too much.
    let (mut first, mut graded, tried) = (0, 0, 20);
    for k in 0..tried {
        let i = k * 50;
        let copy = generator.noisy_copy(&people[i]);
        let sent = patient_of(&copy);
        let Ok(bundle) = repo
            .match_patients(&who(), ask(sent, None, Some(3)), &[])
            .await
        else {
            continue; // a copy left with nothing to match on
        };
        let found = matches(&bundle);
        if let Some(top) = found.first().filter(|f| f.0 == ids[i]) {
            first += 1;
            if top.1 == "certain" || top.1 == "probable" {
                graded += 1;
            }
        }
    }
    assert!(first >= 19, "{first} of {tried} noisy copies found first");
    assert!(
        graded >= 15,
        "{graded} of {tried} noisy copies graded a match"
    );
}

/// Another process on the same database (another repository over the same store): its Patient
/// writes are in the index within a second.
#[tokio::test]
async fn another_process_writes_are_caught_up() {
    let repo = repo_enforcing().await;
    let (ehr, _, _) = seed(&repo).await;
    let other = exchange::repository::Repository::new(
        repo.store().clone(),
        repo.config().clone(),
        exchange::access::DecisionPoint::enforcing(repo.store().clone()),
    );
    // Built here first.
    repo.match_patients(&ehr, ask(peggy(), None, None), &[])
        .await
        .expect("matched");
    let newcomer = person(
        "Ignatius",
        "Wojciechowski",
        "male",
        "2001-12-24",
        "7 Birch Road",
        "860-555-0177",
    );
    let id = create(&other, &ehr, newcomer.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let found = matches(
        &repo
            .match_patients(&ehr, ask(newcomer.clone(), None, None), &[])
            .await
            .expect("matched"),
    );
    assert_eq!(found.first().map(|f| f.0.as_str()), Some(id.as_str()));

    other.delete(&ehr, "Patient", &id).await.expect("deleted");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let found = matches(
        &repo
            .match_patients(&ehr, ask(newcomer, None, None), &[])
            .await
            .expect("matched"),
    );
    assert!(found.iter().all(|f| f.0 != id), "{found:?}");
}
