//! The patient index's enterprise identities on both engines: linking under the lock, operators'
//! decisions as hard constraints, the review queue, the history, and (PostgreSQL) two processes
//! linking records of one person at once. PostgreSQL runs when `NUTMEG_TEST_POSTGRES` is set.

use std::sync::atomic::{AtomicUsize, Ordering};

use store::{LinkDecision, MpiReviewItem, MpiSubject, SplitContext, Store, StoreError};

/// Deciding as the exchange would, simply: join the identity of the first candidate whose record
/// says "match" (the lowest id), unless an operator forbids it; review those whose record says
/// "review"; else the subject's own identity, or a new one.
fn decide(new_id: String, subject: &str) -> store::Decide {
    let matching = subject.contains("match");
    let reviewing = subject.contains("review");
    Box::new(move |ctx: store::LinkContext| {
        let forbidden: Vec<String> = ctx
            .constraints
            .iter()
            .filter(|c| !c.same)
            .filter_map(|c| c.other_identity.clone())
            .collect();
        if let Some(required) = ctx
            .constraints
            .iter()
            .find(|c| c.same)
            .and_then(|c| c.other_identity.clone())
        {
            return Ok(LinkDecision {
                identity_id: required,
                method: "manual".into(),
                score: None,
                reason: "operator".into(),
                reviews: vec![],
            });
        }
        let best = ctx.candidates.iter().find(|c| {
            matching && c.record.contains("match") && !forbidden.contains(&c.identity_id)
        });
        let reviews = ctx
            .candidates
            .iter()
            .filter(|c| reviewing || c.record.contains("review"))
            .map(|c| MpiReviewItem {
                candidate: c.patient_id.clone(),
                score: 0.5,
                grade: "probable".into(),
            })
            .collect();
        Ok(match best {
            Some(c) => LinkDecision {
                identity_id: c.identity_id.clone(),
                method: "auto".into(),
                score: Some(0.99),
                reason: format!("matches {}", c.patient_id),
                reviews,
            },
            None => LinkDecision {
                identity_id: match ctx.current {
                    Some(c) if c.others == 0 => c.identity_id,
                    _ => new_id,
                },
                method: "new".into(),
                score: None,
                reason: "no match".into(),
                reviews,
            },
        })
    })
}

fn subject(id: &str, record: &str, keys: &[i64]) -> MpiSubject {
    MpiSubject {
        patient_id: id.into(),
        record: record.into(),
        keys: keys.to_vec(),
        actor: "system".into(),
    }
}

async fn link(store: &Store, id: &str, record: &str, keys: &[i64]) -> String {
    store
        .mpi_link(
            subject(id, record, keys),
            1000,
            1,
            decide(format!("I-{id}"), record),
        )
        .await
        .expect("link")
        .identity_id
}

/// Linking, review, same-person, remove, operators' link and unlink, and the history.
async fn identities(store: &Store) {
    assert_eq!(link(store, "p1", "match", &[1, 2]).await, "I-p1");
    assert_eq!(link(store, "p2", "match", &[2, 3]).await, "I-p1");
    assert_eq!(link(store, "p3", "review", &[3]).await, "I-p3");
    assert_eq!(link(store, "p4", "none", &[9]).await, "I-p4");
    // p2 shares key 3 with p3 (a "review" record): a review item.
    let reviews = store.mpi_reviews(10).await.expect("reviews");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(
        (reviews[0].patient_a.as_str(), reviews[0].patient_b.as_str()),
        ("p2", "p3")
    );
    assert_eq!(reviews[0].identity_b.as_deref(), Some("I-p3"));
    assert_eq!(
        store.mpi_same_person("p2").await.expect("same"),
        vec!["p1", "p2"]
    );
    assert_eq!(
        store.mpi_same_person("nobody").await.expect("same"),
        vec!["nobody"]
    );
    assert_eq!(
        store.mpi_identity("p4").await.expect("identity").as_deref(),
        Some("I-p4")
    );
    // Relinking a record whose identity it keeps changes nothing in the history.
    assert_eq!(link(store, "p2", "match", &[2, 3]).await, "I-p1");
    let history = store
        .mpi_history(Some("p2"), None, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].action, "link");

    // An operator: p3 and p4 are one person (p4's identity joins p3's), p3 and p1 are one person.
    assert!(store
        .mpi_merge("p3", "p4", "op-1", "same SSN on paper", 5)
        .await
        .expect("merge"));
    assert_eq!(
        store.mpi_same_person("p4").await.expect("same"),
        vec!["p3", "p4"]
    );
    assert!(store
        .mpi_merge("p1", "p3", "op-1", "called the patient", 6)
        .await
        .expect("merge"));
    assert_eq!(
        store.mpi_same_person("p4").await.expect("same"),
        vec!["p1", "p2", "p3", "p4"]
    );
    assert!(
        store.mpi_reviews(10).await.expect("reviews").is_empty(),
        "settled"
    );

    // p1 and p3 are not one person after all: refused while p1 = p3 stands? No: the later
    // decision replaces the earlier one about the same pair; the identity splits in two.
    let split: store::Split = Box::new(|ctx: SplitContext| {
        assert_eq!(ctx.members.len(), 4);
        // p1 keeps the identity with p2; p3 with p4 get one of their own.
        Ok(vec![
            (ctx.identity_id.clone(), vec!["p1".into(), "p2".into()]),
            ("I-split".into(), vec!["p3".into(), "p4".into()]),
        ])
    });
    assert!(store
        .mpi_unlink("p1", "p3", "op-2", "different mothers' names", 7, split)
        .await
        .expect("unlink"));
    assert_eq!(
        store.mpi_same_person("p3").await.expect("same"),
        vec!["p3", "p4"]
    );
    assert_eq!(
        store.mpi_same_person("p2").await.expect("same"),
        vec!["p1", "p2"]
    );
    // Many at once, for the consent state's map of persons: each asked Patient with every Patient
    // of its identity; an unlinked one has none. The history head moved with every change.
    let mut pairs = store
        .mpi_persons_of(&["p2".into(), "p4".into(), "nobody".into()])
        .await
        .expect("persons of");
    pairs.sort();
    let expected: Vec<(String, String)> = [("p2", "p1"), ("p2", "p2"), ("p4", "p3"), ("p4", "p4")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(pairs, expected);
    let head = store.mpi_history_head().await.expect("head");
    let all = store.mpi_history(None, None, 1000).await.expect("history");
    assert_eq!(head, all.iter().map(|h| h.seq).max().unwrap_or(0));
    assert!(head > 0);
    let history = store
        .mpi_history(None, Some("I-split"), 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history.iter().all(|h| h.action == "split"
        && h.actor == "op-2"
        && h.reason == "different mothers' names"
        && h.previous_identity.as_deref() == Some("I-p1")));

    // A split that breaks a decision (here the one being made) is refused, and changes nothing.
    let bad: store::Split = Box::new(|ctx: SplitContext| {
        Ok(vec![(
            ctx.identity_id.clone(),
            vec!["p3".into(), "p4".into()],
        )])
    });
    assert!(store
        .mpi_unlink("p3", "p4", "op", "x", 8, bad)
        .await
        .is_err());
    assert_eq!(
        store.mpi_same_person("p3").await.expect("same"),
        vec!["p3", "p4"]
    );

    // The decisions hold later: p3 relinked as a "match" sharing a key with p1 stays with p4
    // (operator: p3 = p4), and a new record may not be put with an identity it was told apart from.
    assert_eq!(link(store, "p3", "match", &[1, 3]).await, "I-split");
    let refused = store
        .mpi_link(
            subject("p1", "match", &[1]),
            1000,
            9,
            Box::new(|_| {
                Ok(LinkDecision {
                    identity_id: "I-split".into(),
                    method: "auto".into(),
                    score: None,
                    reason: "wrong".into(),
                    reviews: vec![],
                })
            }),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.mpi_identity("p1").await.expect("identity").as_deref(),
        Some("I-p1")
    );

    // A deleted Patient leaves; the history says so.
    assert!(store.mpi_remove("p2", "system", 10).await.expect("remove"));
    assert!(!store.mpi_remove("p2", "system", 10).await.expect("remove"));
    assert_eq!(store.mpi_same_person("p1").await.expect("same"), vec!["p1"]);
    assert_eq!(
        store
            .mpi_history(Some("p2"), None, 1)
            .await
            .expect("history")[0]
            .action,
        "remove"
    );

    // A batch rebuild replaces the links, keeps decisions, stores its model.
    let snapshot = store.mpi_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.links.len(), 3);
    assert_eq!(snapshot.decisions.len(), 2);
    let rebuilt = |id: &str, identity: &str| store::MpiRebuilt {
        patient_id: id.into(),
        identity_id: identity.into(),
        method: "auto".into(),
        score: None,
        record: "none".into(),
        keys: vec![42],
    };
    store
        .mpi_apply_rebuild(
            store::MpiRebuild {
                model: Some("{}".into()),
                links: vec![
                    rebuilt("p1", "I-p1"),
                    rebuilt("p3", "I-split"),
                    rebuilt("p4", "I-p4"),
                ],
                reviews: vec![("p4".into(), "p1".into(), 0.6, "probable".into())],
                actor: "op".into(),
                reason: "nightly".into(),
            },
            11,
        )
        .await
        .expect("rebuild");
    assert_eq!(
        store.mpi_model().await.expect("model"),
        (Some("{}".into()), 1)
    );
    assert_eq!(store.mpi_same_person("p4").await.expect("same"), vec!["p4"]);
    assert_eq!(store.mpi_reviews(5).await.expect("reviews").len(), 1);
    let h = store
        .mpi_history(Some("p4"), None, 1)
        .await
        .expect("history");
    assert_eq!(
        (h[0].action.as_str(), h[0].identity_id.as_deref()),
        ("rebuild", Some("I-p4"))
    );
    // Keys were rebuilt too: a new record sharing key 42 sees all three.
    let seen = store
        .mpi_link(
            subject("p5", "none", &[42]),
            1000,
            12,
            Box::new(|ctx| {
                assert_eq!(ctx.candidates.len(), 3);
                assert_eq!(ctx.population, 4);
                Ok(LinkDecision {
                    identity_id: "I-p5".into(),
                    method: "new".into(),
                    score: None,
                    reason: "alone".into(),
                    reviews: vec![],
                })
            }),
        )
        .await
        .expect("link");
    assert_eq!(seen.identity_id, "I-p5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::open(&url).await.expect("open");
    identities(&store).await;
}

/// A fresh PostgreSQL schema's URL, or `None` without `NUTMEG_TEST_POSTGRES`.
fn postgres_schema() -> Option<(String, String)> {
    let base = std::env::var("NUTMEG_TEST_POSTGRES").ok()?;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "nutmeg_mpi_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        fastrand::u32(..)
    );
    psql(&base, &format!("CREATE SCHEMA {name}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    Some((
        format!("{base}{sep}options=-c%20search_path%3D{name}"),
        name,
    ))
}

fn psql(base: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args([base, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("psql");
    assert!(status.success(), "psql {sql}");
}

struct Dropped(String);

impl Drop for Dropped {
    fn drop(&mut self) {
        if let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") {
            psql(&base, &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identities_on_postgres() {
    let Some((url, name)) = postgres_schema() else {
        eprintln!("skipped: NUTMEG_TEST_POSTGRES not set");
        return;
    };
    let _dropped = Dropped(name);
    let store = Store::open(&url).await.expect("open");
    identities(&store).await;
}

/// Two stores (two processes' pools) link 40 records of one person at once: the lock makes each
/// see the links committed before it, so they all end in one identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_linking_on_postgres_makes_one_identity() {
    let Some((url, name)) = postgres_schema() else {
        eprintln!("skipped: NUTMEG_TEST_POSTGRES not set");
        return;
    };
    let _dropped = Dropped(name);
    let one = Store::open(&url).await.expect("open");
    let two = Store::open(&url).await.expect("open");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let id = format!("p{i:02}");
            link(&store, &id, "match", &[7]).await
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let same = one.mpi_same_person("p00").await.expect("same");
    assert_eq!(same.len(), 40, "{same:?}");
    let history = two.mpi_history(None, None, 100).await.expect("history");
    assert_eq!(
        history.iter().filter(|h| h.action == "new").count(),
        1,
        "{history:?}"
    );
}
