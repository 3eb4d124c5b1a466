//! IHE PDQm (ITI-78) enterprise-wide patient search through the repository: each matching
//! Patient with the other records of its person and `seealso` links between them, the PDQm
//! parameters (the mother's maiden name, identifier domains), paging, bad input, what a
//! participant may see, the audit trail; and operators' `$ihe-pix` (a Patient is the patient
//! index's administrative data to them). Synthetic people only. Runs on SQLite, or on PostgreSQL
//! with `NUTMEG_TEST_EXCHANGE_ENGINE=postgres`.

mod common;

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use common::{client, link, link_params, params, participant, repo_enforcing, who, Fixture};
use exchange::access::{Principal, PurposeOfUse, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::{Error, MOTHERS_MAIDEN_NAME};
use serde_json::{json, Value};

const ALL: &str = "system/*.cruds";

fn person(given: &str, birth: &str, line: &str, phone: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{ "system": format!("urn:test:mrn:{}", &mrn[..1]), "value": mrn }],
        "name": [{ "use": "official", "family": "Quarrington", "given": [given] }],
        "gender": "female",
        "birthDate": birth,
        "address": [{ "use": "home", "line": [line], "city": "Hartford", "state": "CT", "postalCode": "06105" }],
        "telecom": [{ "system": "phone", "value": phone }],
    })
}

async fn create(repo: &Fixture, by: &Requester, patient: Value) -> String {
    repo.create(by, "Patient", patient, None)
        .await
        .expect("created")
        .resource
        .id
}

struct World {
    repo: Fixture,
    ehr_a: Requester,
    ehr_b: Requester,
    ops: Requester,
    /// Margaret at hospital A, the same Margaret at clinic B, her twin Louise at A.
    margaret: String,
    at_b: String,
    louise: String,
}

async fn seed() -> World {
    let repo = repo_enforcing().await;
    let a = participant(&repo, "Hartford", Kind::Hospital, Status::Live).await;
    let b = participant(&repo, "ElmClinic", Kind::Clinic, Status::Live).await;
    let operator = participant(&repo, "Exchange", Kind::ExchangeOperator, Status::Live).await;
    let ehr_a = client(&a, ALL, PurposeOfUse::Treat);
    let ehr_b = client(&b, ALL, PurposeOfUse::Treat);
    let ops = client(&operator, "system/*.rs", PurposeOfUse::Hoperat);
    let mut first = person(
        "Margaret",
        "1962-04-17",
        "12 Elm Street",
        "860-555-0142",
        "A-1042",
    );
    first["extension"] = json!([{ "url": MOTHERS_MAIDEN_NAME, "valueString": "Hale" }]);
    let margaret = create(&repo, &ehr_a, first).await;
    let at_b = create(
        &repo,
        &ehr_b,
        person(
            "Margaret",
            "1962-04-17",
            "12 Elm St",
            "860-555-0142",
            "B-77",
        ),
    )
    .await;
    let louise = create(
        &repo,
        &ehr_a,
        person(
            "Louise",
            "1962-04-17",
            "12 Elm Street",
            "860-555-0143",
            "A-5190",
        ),
    )
    .await;
    let mut same = vec![margaret.clone(), at_b.clone()];
    same.sort();
    assert_eq!(repo.same_person(&margaret).await.expect("same"), same);
    World {
        repo,
        ehr_a,
        ehr_b,
        ops,
        margaret,
        at_b,
        louise,
    }
}

/// `(id, mode, the ids its seealso links name)` of each entry, in order.
fn shown(bundle: &Value) -> Vec<(String, String, BTreeSet<String>)> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let links = e["resource"]["link"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["type"] == "seealso")
                .filter_map(|l| l["other"]["reference"].as_str())
                .filter_map(|r| r.strip_prefix("Patient/"))
                .map(str::to_string)
                .collect();
            (
                e["resource"]["id"].as_str().unwrap_or("").to_string(),
                e["search"]["mode"].as_str().unwrap_or("").to_string(),
                links,
            )
        })
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn pdqm_answers_each_person_with_their_records_and_links() {
    let w = seed().await;
    let search = |query: &str| {
        let (repo, params) = (&w.repo, params(query));
        async move { repo.pdqm_search(&who(), &params).await }
    };

    // By demographics: the three records match; the two Margarets are one person and say so.
    let bundle = search("family=Quarrington&birthdate=1962-04-17")
        .await
        .expect("answered");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 3, "{bundle}");
    let answer = shown(&bundle);
    assert_eq!(answer.len(), 3, "{bundle}");
    for (id, mode, links) in &answer {
        assert_eq!(mode, "match");
        let expected = if *id == w.margaret {
            set(&[&w.at_b])
        } else if *id == w.at_b {
            set(&[&w.margaret])
        } else {
            assert_eq!(*id, w.louise);
            BTreeSet::new()
        };
        assert_eq!(*links, expected, "{id}: {bundle}");
    }

    // By A's identifier: Margaret at A matches, her record at B comes with her.
    let bundle = search("identifier=urn:test:mrn:A|A-1042")
        .await
        .expect("answered");
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(
        shown(&bundle),
        vec![
            (w.margaret.clone(), "match".into(), set(&[&w.at_b])),
            (w.at_b.clone(), "include".into(), set(&[&w.margaret])),
        ]
    );
    assert!(link(&bundle, "self")
        .expect("self")
        .contains("/pdqm/Patient?identifier="));

    // Which domains are returned: only B's identifiers, on every Patient of the answer.
    let bundle = search("given=Margaret&identifier=urn:test:mrn:B|")
        .await
        .expect("answered");
    assert_eq!(bundle["total"], 1, "{bundle}");
    let text = bundle.to_string();
    assert!(
        text.contains("B-77") && !text.contains("A-1042"),
        "{bundle}"
    );
    assert_eq!(shown(&bundle).len(), 2, "{bundle}");

    // The mother's maiden name: starts-with on the normal form, or exact.
    for (query, total) in [
        ("mothersMaidenName=hal", 1),
        ("mothersMaidenName:exact=Hale", 1),
        ("mothersMaidenName:exact=hale", 0),
        ("mothersMaidenName=Smith,Hale&given=Margaret", 1),
        ("mothersMaidenName=Hale&given=Louise", 0),
    ] {
        let bundle = search(query).await.expect("answered");
        assert_eq!(bundle["total"], total, "{query}: {bundle}");
        if total == 1 {
            assert_eq!(shown(&bundle)[0].0, w.margaret, "{query}");
        } else {
            assert!(bundle["entry"].as_array().is_none_or(|e| e.is_empty()));
        }
    }

    // Other PDQm parameters, and :exact.
    for (query, total) in [
        ("telecom=860-555-0143", 1),
        ("address-postalcode=06105&gender=female", 3),
        ("family:exact=quarrington", 0),
        ("family:exact=Quarrington&given=Louise", 1),
        (&format!("_id={}", w.at_b), 1),
        ("active=true", 0),
    ] {
        let bundle = search(query).await.expect("answered");
        assert_eq!(bundle["total"], total, "{query}: {bundle}");
    }

    // Paging: one match a page, every page naming the PDQm base.
    let first = search("family=Quarrington&_count=1")
        .await
        .expect("answered");
    assert_eq!(first["total"], 3);
    let mut seen: Vec<String> = Vec::new();
    let mut page = first;
    for _ in 0..5 {
        seen.extend(
            shown(&page)
                .into_iter()
                .filter(|s| s.1 == "match")
                .map(|s| s.0),
        );
        match link(&page, "next") {
            Some(next) => {
                assert!(next.contains("/pdqm/Patient?"), "{next}");
                page = w
                    .repo
                    .pdqm_search(&who(), &link_params(&next))
                    .await
                    .expect("next page");
            }
            None => break,
        }
    }
    seen.sort();
    let mut all = vec![w.margaret.clone(), w.at_b.clone(), w.louise.clone()];
    all.sort();
    assert_eq!(seen, all);

    // Bad input is a 400 naming the problem; nothing is searched without a criterion.
    for query in [
        "famly=Quarrington",
        "",
        "_count=5",
        "family=Quarrington&_include=Patient:organization",
        "mothersMaidenName:contains=Ha",
        "birthdate=yesterday",
    ] {
        let refused = search(query).await;
        assert!(
            matches!(refused, Err(Error::Invalid(_))),
            "{query}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn pdqm_shows_a_participant_only_what_it_may_see_and_is_audited() {
    let w = seed().await;
    // Hospital A treats Margaret (a treatment relationship is with the person, so clinic B's
    // record of her too) and Louise: all three, Margaret's two records linked to each other.
    let bundle = w
        .repo
        .pdqm_search(&w.ehr_a, &params("family=Quarrington"))
        .await
        .expect("answered");
    assert_eq!(bundle["total"], 3, "{bundle}");
    for (id, _, links) in shown(&bundle) {
        let expected = if id == w.margaret {
            set(&[&w.at_b])
        } else if id == w.at_b {
            set(&[&w.margaret])
        } else {
            BTreeSet::new()
        };
        assert_eq!(links, expected, "{id}: {bundle}");
    }
    // Clinic B treats Margaret only: Louise is neither answered nor counted.
    let bundle = w
        .repo
        .pdqm_search(&w.ehr_b, &params("family=Quarrington"))
        .await
        .expect("answered");
    assert_eq!(bundle["total"], 2, "{bundle}");
    assert!(!bundle.to_string().contains(&w.louise), "{bundle}");
    // B sees both of Margaret's records, linked (and nothing of Louise).
    let bundle = w
        .repo
        .pdqm_search(&w.ehr_b, &params("given=Margaret"))
        .await
        .expect("answered");
    let mut ids: Vec<String> = shown(&bundle).into_iter().map(|s| s.0).collect();
    ids.sort();
    let mut both = vec![w.margaret.clone(), w.at_b.clone()];
    both.sort();
    assert_eq!(ids, both, "{bundle}");
    assert!(!bundle.to_string().contains(&w.louise));

    // The retrieve: A's Margaret for B, with the link to B's own record; Louise is a 404 to B.
    let margaret = w.repo.pdqm_read(&w.ehr_b, &w.margaret).await.expect("read");
    assert_eq!(margaret["id"], w.margaret.as_str());
    assert_eq!(
        margaret["link"][0]["other"]["reference"],
        format!("Patient/{}", w.at_b)
    );
    let hidden = w.repo.pdqm_read(&w.ehr_b, &w.louise).await;
    assert!(matches!(hidden, Err(Error::NotFound)), "{hidden:?}");
    let unknown = w.repo.pdqm_read(&w.ehr_b, "no-such-patient").await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");

    // Every search is recorded with what it disclosed.
    let events: Vec<Value> = w
        .repo
        .store()
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| serde_json::from_str(&r.json).expect("json"))
        .collect();
    let searched = events
        .iter()
        .rev()
        .find(|e| {
            e.to_string()
                .contains(&STANDARD.encode("pdqm/Patient?given=Margaret"))
        })
        .expect("the PDQm search is audited");
    let text = searched.to_string();
    assert!(
        text.contains(&format!("Patient/{}", w.margaret))
            && text.contains(&format!("Patient/{}", w.at_b)),
        "{searched}"
    );

    // Unauthenticated: refused.
    let anonymous = Requester::new("req-anon", Principal::Anonymous, PurposeOfUse::Treat, false);
    let refused = w
        .repo
        .pdqm_search(&anonymous, &params("family=Quarrington"))
        .await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
}

#[tokio::test]
async fn operators_cross_reference_identifiers_but_see_no_other_clinical_data_by_it() {
    let w = seed().await;
    let pix = |who: Requester| {
        let repo = &w.repo;
        async move {
            repo.pix_query(&who, &params("sourceIdentifier=urn:test:mrn:A|A-1042"))
                .await
        }
    };
    // An operator token (a live exchange-operator participant's system), with no treatment
    // relationship: the patient index's cross-references are its to see.
    let answer = pix(w.ops.clone()).await.expect("answered");
    let text = answer.to_string();
    assert!(text.contains("B-77"), "{answer}");
    assert!(
        text.contains(&format!("Patient/{}", w.margaret)),
        "{answer}"
    );
    assert!(text.contains(&format!("Patient/{}", w.at_b)), "{answer}");
    // And an operator's portal account, whatever its purpose.
    let portal = Requester::new(
        "req-op",
        Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        false,
    );
    let answer = pix(portal.clone()).await.expect("answered");
    assert!(answer.to_string().contains("B-77"), "{answer}");
    // PDQm likewise.
    let bundle = w
        .repo
        .pdqm_search(&w.ops, &params("family=Quarrington"))
        .await
        .expect("answered");
    assert_eq!(bundle["total"], 3, "{bundle}");

    // Other clinical data stays clinical: an Observation about Margaret is not the operator
    // token's by this rule, nor the portal operator's without a stated purpose.
    let observation = w
        .repo
        .create(
            &w.ehr_a,
            "Observation",
            common::observation(&w.margaret),
            None,
        )
        .await
        .expect("observation")
        .resource
        .id;
    let read = w.repo.read(&w.ops, "Observation", &observation).await;
    assert!(matches!(read, Err(Error::NotFound)), "{read:?}");
    let read = w.repo.read(&portal, "Observation", &observation).await;
    assert!(matches!(read, Err(Error::Forbidden(_))), "{read:?}");
    // A participant that is not the operator and treats neither record gets no more than before.
    let c = participant(&w.repo, "Westside", Kind::Clinic, Status::Live).await;
    let answer = pix(client(&c, ALL, PurposeOfUse::Treat)).await;
    assert!(matches!(answer, Err(Error::NotFound)), "{answer:?}");
}
