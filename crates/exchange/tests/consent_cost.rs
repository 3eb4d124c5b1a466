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
