//! What the privacy policy costs a search, measured roughly: the same searches by a participant
//! with a treatment relationship, through an enforcing decision point with and without the
//! policy, alternated. Ignored by default (timing, not correctness):
//! `cargo test --release -p exchange --test consent_cost -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use exchange::access::{DecisionPoint, PurposeOfUse};
use exchange::participants::{Kind, Status};
use exchange::repository::{Handling, Repository};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn what_the_policy_costs_a_search() {
    let repo = repo_enforcing().await;
    let org = participant(&repo, "org-a", Kind::Clinic, Status::Live).await;
    let who_ = client(&org, "system/*.*", PurposeOfUse::Treat);
    let system = who();
    let mut patients = Vec::new();
    for i in 0..200 {
        let p = repo
            .create(
                &system,
                "Patient",
                patient(&format!("Family{i}"), &format!("MRN-{i}")),
                None,
            )
            .await
            .expect("patient");
        patients.push(p.resource.id.clone());
        for _ in 0..5 {
            repo.create(&system, "Observation", observation(&p.resource.id), None)
                .await
                .expect("obs");
        }
    }
    for p in &patients {
        repo.attest_treatment(&who_, p).await.expect("attest");
    }
    let without = Repository::new(
        repo.store().clone(),
        repo.config().clone(),
        DecisionPoint::enforcing(repo.store().clone()).without_privacy(),
    );
    let query = params("code=8867-4&_count=50");
    let mut times = [Vec::new(), Vec::new()];
    let both: [&Repository; 2] = [&repo.repo, &without];
    for round in 0..40 {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let started = Instant::now();
            let found = both[k]
                .search(&who_, Some("Observation"), &query, Handling::Strict)
                .await
                .expect("search");
            times[k].push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(entries(&found.to_value()).len(), 50);
        }
    }
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    eprintln!(
        "search of 50 Observations (200 patients): median with policy {:.2} ms, without {:.2} ms",
        times[0][times[0].len() / 2],
        times[1][times[1].len() / 2]
    );
}

/// One exchange of `patients` patients with five heart-rate Observations each, loaded by the
/// exchange, and a participant that attested a relationship with every one. With `private`, a
/// fifth of the patients opted out and a fifth of the Observations carry a sensitivity label the
/// source sent (PSY, SUD or V in turn), with no consent that opens them.
async fn world(
    patients: usize,
    private: bool,
) -> (Fixture, exchange::access::Requester, Vec<String>) {
    let repo = repo_enforcing().await;
    let org = participant(&repo, "org-a", Kind::Clinic, Status::Live).await;
    let who_ = client(&org, "system/*.*", PurposeOfUse::Treat);
    let operator = exchange::access::Requester::new(
        "req-operator",
        exchange::access::Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: exchange::access::Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        true,
    );
    let labels = ["PSY", "SUD", "V"];
    let mut observations = Vec::new();
    for i in 0..patients {
        // Different people: consent follows the person, so patients the index would link (the
        // same given name and birth date, family names a digit apart) would share one opt-out.
        let mut person = patient(&format!("Family{i}"), &format!("MRN-{i}"));
        person["birthDate"] = format!(
            "{}-{:02}-{:02}",
            1930 + i % 70,
            1 + i % 12,
            1 + (i / 12) % 28
        )
        .into();
        let given = ["Ada", "Ben", "Cy", "Dee", "Eve", "Fay", "Gus"][i % 7];
        person["name"][0]["given"] = serde_json::json!([given]);
        let mut entries = vec![serde_json::json!({
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
            "resource": person,
            "request": {"method": "POST", "url": "Patient"},
        })];
        for k in 0..5 {
            let mut obs = observation("x");
            obs["subject"]["reference"] = "urn:uuid:00000000-0000-4000-8000-000000000001".into();
            let n = i * 5 + k;
            if private && n % 5 == 2 {
                let code = labels[(n / 5) % 3];
                let system = if code == "V" {
                    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
                } else {
                    "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                };
                obs["meta"] = serde_json::json!({"security": [{"system": system, "code": code}]});
            }
            entries.push(serde_json::json!({
                "resource": obs, "request": {"method": "POST", "url": "Observation"},
            }));
        }
        let response = repo
            .bundle(
                &who(),
                serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            )
            .await
            .expect("a patient's bundle");
        let locations: Vec<String> = response["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["response"]["location"].as_str())
            .map(|l| l.split('/').take(2).collect::<Vec<_>>().join("/"))
            .collect();
        let patient_id = locations[0].trim_start_matches("Patient/").to_string();
        observations.extend(
            locations[1..]
                .iter()
                .map(|l| l.trim_start_matches("Observation/").to_string()),
        );
        repo.attest_treatment(&who_, &patient_id)
            .await
            .expect("attest");
        if private && i % 5 == 1 {
            let consent = serde_json::json!({
                "resourceType": "Consent", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": format!("Patient/{patient_id}")},
                "dateTime": "2026-01-10T09:00:00Z",
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            });
            repo.create(&operator, "Consent", consent, None)
                .await
                .expect("opt-out");
        }
    }
    (repo, who_, observations)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `decide` over every Observation and a search page, in an exchange where a fifth of the
/// patients opted out and a fifth of the resources are labelled sensitive, beside one with
/// neither; each with the policy and without it (the access rules alone). Release build:
/// `NUTMEG_COST_PATIENTS=2000 cargo test --release -p exchange --test consent_cost -- --ignored --nocapture what_enforcement_costs_with_opt_outs_and_labels`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn what_enforcement_costs_with_opt_outs_and_labels() {
    let patients: usize = std::env::var("NUTMEG_COST_PATIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    for private in [false, true] {
        let started = Instant::now();
        let (repo, who_, observations) = world(patients, private).await;
        let loaded = started.elapsed().as_secs_f64();
        let mut stored = Vec::with_capacity(observations.len());
        for id in &observations {
            stored.push(
                repo.store()
                    .read("Observation", id)
                    .await
                    .expect("read")
                    .expect("stored"),
            );
        }
        let gates = [
            (
                "with the policy",
                DecisionPoint::enforcing(repo.store().clone()),
            ),
            (
                "access rules only",
                DecisionPoint::enforcing(repo.store().clone()).without_privacy(),
            ),
        ];
        let world_name = if private {
            "20% opted out, 20% labelled"
        } else {
            "no consents, no labels"
        };
        eprintln!(
            "{world_name}: {patients} patients, {} Observations (loaded in {loaded:.0} s)",
            stored.len()
        );
        let mut decided = Vec::new();
        for (_, gate) in &gates {
            // Warm: the consent state loaded, relationships remembered.
            let mut permitted = 0;
            for s in &stored {
                permitted += usize::from(gate.decide(&who_, s).await.expect("decide").is_permit());
            }
            let mut per = Vec::new();
            // More rounds (`NUTMEG_COST_ROUNDS`) make a profile of the decision stand out.
            let rounds: usize = std::env::var("NUTMEG_COST_ROUNDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(5);
            for _ in 0..rounds {
                let started = Instant::now();
                for s in &stored {
                    gate.decide(&who_, s).await.expect("decide");
                }
                per.push(started.elapsed().as_secs_f64() * 1e6 / stored.len() as f64);
            }
            decided.push((permitted, median(per)));
        }
        // The searches of the two decision points alternate (which goes first swaps each round),
        // so that a slow spell of the machine falls on both.
        let repos: Vec<Repository> = gates
            .iter()
            .map(|(_, gate)| {
                Repository::new(repo.store().clone(), repo.config().clone(), gate.clone())
            })
            .collect();
        let query = params("code=8867-4&_count=50");
        let searches: usize = std::env::var("NUTMEG_COST_SEARCHES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        let mut times = [Vec::new(), Vec::new()];
        let mut shown = [0, 0];
        for round in 0..searches {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let started = Instant::now();
                let found = repos[k]
                    .search(&who_, Some("Observation"), &query, Handling::Strict)
                    .await
                    .expect("search");
                times[k].push(started.elapsed().as_secs_f64() * 1000.0);
                // A page of 50 matches, less what the policy withheld from it.
                shown[k] = entries(&found.to_value()).len();
                assert!(shown[k] > 0 && shown[k] <= 50, "{}", shown[k]);
            }
        }
        let medians = [median(times[0].clone()), median(times[1].clone())];
        for (k, (name, _)) in gates.iter().enumerate() {
            eprintln!(
                "  {name}: decide {:.2} us per resource ({} of {} permitted); \
                 search (_count=50, {} shown): median {:.3} ms",
                decided[k].1,
                decided[k].0,
                stored.len(),
                shown[k],
                medians[k]
            );
        }
        eprintln!(
            "  search with / without the policy: {:.2} ({searches} searches each, alternated)",
            medians[0] / medians[1]
        );
    }
}
