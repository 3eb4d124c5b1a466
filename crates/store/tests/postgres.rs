//! The conformance suite on PostgreSQL, plus what only a server database has to show: two pools
//! (two processes) writing one resource at once, migrations applied once by processes that start
//! together, and the query plans of the selective searches.
//!
//! Runs when `NUTMEG_TEST_POSTGRES` names a database (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! otherwise every test prints that it was skipped and passes. Each test works in its own freshly
//! created schema (via `options=-c search_path=...` in the URL), dropped at the end, so tests run in
//! parallel.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicUsize, Ordering};

use store::conformance::{self, put, string};
use store::{AuditCheck, NewAuditRecord, SearchOptions, Store, StoreError, Write};

const SKIPPED: &str = "skipped: NUTMEG_TEST_POSTGRES not set";

/// A schema of its own, dropped (with everything in it) when this is dropped, even after a panic.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// A new empty schema, or `None` (after saying so) when no database is configured.
    async fn create() -> Option<Schema> {
        let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") else {
            // Past the test harness's output capture, so that a plain `cargo test` shows it.
            {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{SKIPPED}");
            }
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "nutmeg_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            fastrand::u32(..)
        );
        let client = connect(&base).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        Some(Schema { base, name })
    }

    /// The database URL with this schema as the search path.
    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // A thread of its own: this may run inside (or after the panic of) a test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = connect(&base).await;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A store on a fresh schema.
struct TestDb {
    store: Store,
    schema: Schema,
}

async fn fresh() -> Option<TestDb> {
    let schema = Schema::create().await?;
    let store = Store::open(&schema.url()).await.expect("open postgres");
    assert_eq!(store.engine(), "postgres");
    Some(TestDb { store, schema })
}

macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = fresh().await else { return };
                conformance::$name(&db.store).await;
            }
        )*
    };
}

store::for_each_conformance_test!(postgres_tests);

/// SQL on the test's schema through a connection of its own, past the store.
struct Raw(tokio_postgres::Client);

impl conformance::RawSql for Raw {
    async fn execute(&self, sql: &str) -> Result<(), String> {
        self.0
            .batch_execute(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_refuses_update_and_delete() {
    let Some(db) = fresh().await else { return };
    let raw = Raw(connect(&db.schema.url()).await);
    conformance::audit_log_refuses_update_and_delete(&db.store, &raw).await;
    // Nor can the store's diagnostic statement runner switch the triggers off.
    for sql in [
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DELETE FROM audit_log",
        "SELECT 1; ALTER TABLE audit_log DISABLE TRIGGER USER",
        "COMMIT; ALTER TABLE audit_log DISABLE TRIGGER USER",
    ] {
        assert!(db.store.query_rows(sql).await.is_err(), "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failed_batch_fails_every_caller() {
    let Some(db) = fresh().await else { return };
    let raw = Raw(connect(&db.schema.url()).await);
    conformance::audit_failed_batch_fails_every_caller(&db.store, &raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_named() {
    let Some(db) = fresh().await else { return };
    let raw = Raw(connect(&db.schema.url()).await);
    for case in 0..conformance::AUDIT_TAMPERING_CASES {
        conformance::audit_tampering_is_named(&db.store, &raw, case).await;
    }
}

/// Two stores with separate pools (two processes, each with its own group-commit task) append at
/// once, with and without writes: one chain, no gaps, every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_append_one_chain() {
    let Some(db) = fresh().await else { return };
    let other = Store::open(&db.schema.url()).await.expect("second pool");
    let mut tasks = Vec::new();
    for t in 0..16_i64 {
        let store = if t % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10_i64 {
                let record = NewAuditRecord {
                    recorded: conformance::T0,
                    json: format!(r#"{{"task":{t},"request":{i}}}"#),
                    index: vec![("task".to_string(), t.to_string())],
                };
                let appended = if i % 3 == 0 {
                    let write = update(&format!("p{t}-{i}"), 1, "Kim");
                    store.commit_with_audit(vec![write], vec![record]).await
                } else {
                    store.append_audit(vec![record]).await
                }
                .expect("append");
                seqs.push(appended[0].seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.expect("task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=160).collect::<Vec<i64>>());
    assert!(matches!(
        other.verify_audit().await.expect("verify"),
        AuditCheck::Intact { count: 160, .. }
    ));
}

fn update(id: &str, version: i64, name: &str) -> Write {
    put("Patient", id, version, vec![string("name", name)])
}

/// Two stores with separate pools (as two `nutmeg serve` processes would have) update the same
/// resources at once: each time exactly one wins and the other gets a conflict, and no version is
/// lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_conflicting_updates_have_one_winner() {
    let Some(db) = fresh().await else { return };
    let other = Store::open(&db.schema.url()).await.expect("second pool");
    let rounds = 30;
    // Creating one id from both: one create wins.
    for i in 0..rounds {
        let id = format!("new{i}");
        let (a, b) = tokio::join!(
            db.store.commit(vec![update(&id, 1, "A")]),
            other.commit(vec![update(&id, 1, "B")])
        );
        assert_one_winner(&a, &b, &id);
    }
    // Updating one version from both: one update wins; the loser's retry on the new version works.
    db.store
        .commit(vec![update("shared", 1, "start")])
        .await
        .expect("create");
    for round in 0..rounds {
        let version = round + 2;
        let a = db.store.clone();
        let b = other.clone();
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { a.commit(vec![update("shared", version, "A")]).await }),
            tokio::spawn(async move { b.commit(vec![update("shared", version, "B")]).await })
        );
        let (ra, rb) = (ra.expect("task"), rb.expect("task"));
        assert_one_winner(&ra, &rb, "shared");
    }
    let current = other
        .read("Patient", "shared")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(current.version, rounds + 1);
    let history = db
        .store
        .history(&store::HistoryRequest {
            scope: store::HistoryScope::Instance("Patient".into(), "shared".into()),
            since: None,
            at: None,
            count: 100,
            cursor: None,
        })
        .await
        .expect("history");
    let versions: Vec<i64> = history.entries.iter().map(|s| s.version).collect();
    assert_eq!(
        versions,
        (1..=rounds + 1).rev().collect::<Vec<_>>(),
        "every version once"
    );
    // The index holds exactly one current row for the resource.
    let count: Vec<Vec<String>> = db
        .store
        .query_rows("SELECT COUNT(*) FROM idx_string s JOIN resources r ON r.rid = s.rid WHERE r.id = 'shared' AND s.to_seq IS NULL")
        .await
        .expect("count");
    assert_eq!(count, vec![vec!["1".to_string()]]);
}

fn assert_one_winner(a: &store::Result<()>, b: &store::Result<()>, id: &str) {
    let lost =
        |r: &store::Result<()>| matches!(r, Err(StoreError::Conflict { id: got, .. }) if got == id);
    let won = |r: &store::Result<()>| r.is_ok();
    assert!(
        (won(a) && lost(b)) || (lost(a) && won(b)),
        "exactly one of two writers wins: {a:?} / {b:?}"
    );
}

/// Two batches over the same resources in opposite orders never deadlock into a database error:
/// one wins, the other is a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossing_batches_conflict_instead_of_failing() {
    let Some(db) = fresh().await else { return };
    let other = Store::open(&db.schema.url()).await.expect("second pool");
    for round in 0..20 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        db.store
            .commit(vec![update(&x, 1, "x"), update(&y, 1, "y")])
            .await
            .expect("create");
        let (a, b) = (db.store.clone(), other.clone());
        let (x2, y2) = (x.clone(), y.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move {
                a.commit(vec![update(&x2, 2, "A"), update(&y2, 2, "A")])
                    .await
            }),
            tokio::spawn(
                async move { b.commit(vec![update(&y, 2, "B"), update(&x, 2, "B")]).await }
            )
        );
        let (ra, rb) = (ra.expect("task"), rb.expect("task"));
        let conflict = |r: &store::Result<()>| matches!(r, Err(StoreError::Conflict { .. }));
        assert!(
            (ra.is_ok() && conflict(&rb)) || (conflict(&ra) && rb.is_ok()),
            "{ra:?} / {rb:?}"
        );
    }
}

/// Reopening keeps the data; processes starting at once migrate once; a migration edited after it
/// was applied stops the store from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_and_edited_ones_are_refused() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let url = schema.url();
    let opened = futures_join_all(&url, 4).await;
    for result in &opened {
        assert!(result.is_ok(), "every concurrent open succeeds: {result:?}");
    }
    drop(opened);
    let store = Store::open(&url).await.expect("open");
    store
        .commit(vec![update("p1", 1, "Kim")])
        .await
        .expect("commit");
    drop(store);
    let store = Store::open(&url).await.expect("reopen");
    assert!(
        store.read("Patient", "p1").await.expect("read").is_some(),
        "data survives reopening"
    );
    let applied = store
        .query_rows("SELECT version, name FROM schema_migrations ORDER BY version")
        .await
        .expect("rows");
    assert_eq!(
        applied,
        vec![
            vec!["1".to_string(), "init".to_string()],
            vec!["2".to_string(), "audit".to_string()],
            vec!["3".to_string(), "clients".to_string()],
            vec!["4".to_string(), "relationships".to_string()],
            vec!["5".to_string(), "audit_index".to_string()],
            vec!["6".to_string(), "accounts".to_string()],
            vec!["7".to_string(), "mpi".to_string()],
            vec!["8".to_string(), "direct".to_string()],
            vec!["9".to_string(), "inbox".to_string()],
            vec!["10".to_string(), "onboarding".to_string()],
            vec!["11".to_string(), "compliance".to_string()],
            vec!["12".to_string(), "user_practitioner".to_string()],
            vec!["13".to_string(), "outbound_content".to_string()],
            vec!["14".to_string(), "invitations".to_string()],
            vec!["15".to_string(), "application_decisions".to_string()],
        ],
        "applied once"
    );
    // The URL's own options are kept, and every statement is planned for its values.
    let show = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .query_rows(&format!("SHOW {name}"))
                .await
                .expect("show")
        }
    };
    assert_eq!(show("search_path").await, vec![vec![schema.name.clone()]]);
    assert_eq!(
        show("plan_cache_mode").await,
        vec![vec!["force_custom_plan".to_string()]]
    );
    drop(store);
    let client = connect(&url).await;
    let changed = client
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            &[],
        )
        .await
        .expect("edit checksum");
    assert_eq!(changed, 1);
    let err = Store::open(&url).await.expect_err("refuses to start");
    assert!(err.to_string().contains("was changed"), "{err}");
}

/// Opens `n` stores on `url` at the same time.
async fn futures_join_all(url: &str, n: usize) -> Vec<store::Result<Store>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn bad_urls_are_open_errors() {
    if std::env::var("NUTMEG_TEST_POSTGRES").is_err() {
        // Past the test harness's output capture, so that a plain `cargo test` shows it.
        {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{SKIPPED}");
        }
        return;
    }
    let err = Store::open("postgres://postgres@127.0.0.1:5432/test?pool_size=zero")
        .await
        .expect_err("bad pool size");
    assert!(err.to_string().contains("pool_size"), "{err}");
    let err = Store::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, StoreError::Open(_)), "{err}");
}

/// With a few thousand rows and fresh statistics, the selective searches of the benchmarks read the
/// index tables through their indexes, never sequentially.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_searches_use_indexes() {
    let Some(db) = fresh().await else { return };
    conformance::plan_fixture(&db.store).await;
    let options = SearchOptions {
        count: 20,
        max_includes: 0,
    };
    for (what, query) in conformance::selective_queries() {
        let plan = db.store.explain(&query, &options).await.expect("explain");
        let text = plan.join("\n");
        println!("{what}:\n{text}\n");
        let index_scan_of_idx = plan.iter().any(|line| {
            (line.contains("Index Scan")
                || line.contains("Index Only Scan")
                || line.contains("Bitmap Index Scan"))
                && line.contains(" on idx_")
        });
        assert!(
            index_scan_of_idx,
            "{what} reads an index table through an index:\n{text}"
        );
        for line in &plan {
            assert!(
                !line.contains("Seq Scan on idx_"),
                "{what} scans an index table: {line}\n{text}"
            );
            assert!(
                !line.contains("Seq Scan on resources"),
                "{what} scans resources: {line}\n{text}"
            );
        }
        let page = db.store.search(&query, &options).await.expect("search");
        assert!(!page.matches.is_empty(), "{what} finds something");
    }
}

/// Write throughput of the store alone (no HTTP, no validation); run with
/// `cargo test --release -p store --test postgres write_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn write_throughput() {
    let Some(db) = fresh().await else { return };
    let batch = std::env::var("NUTMEG_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rate = conformance::write_throughput(&db.store, 40_000, batch, 4).await;
    println!("postgres: {rate:.0} resources/s (batches of {batch}, 4 writers, 25 index rows each)");
}

/// Search latency of the selective searches on a larger database; run with
/// `NUTMEG_BENCH_PATIENTS=30000 cargo test --release -p store --test postgres search_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn search_latency() {
    let Some(db) = fresh().await else { return };
    let patients = std::env::var("NUTMEG_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let started = std::time::Instant::now();
    conformance::fixture(&db.store, patients).await;
    println!(
        "postgres: loaded {} resources in {:.1} s",
        patients * 7,
        started.elapsed().as_secs_f64()
    );
    for clients in [1, 32] {
        for (name, p50, p99) in conformance::search_latency(&db.store, patients, clients, 50).await
        {
            println!(
                "postgres {clients:>2} clients: {name:<40} p50 {p50:>6.2} ms  p99 {p99:>6.2} ms"
            );
        }
    }
}

/// Loads the benchmark fixture into the schema of `NUTMEG_BENCH_URL` and keeps it (to study plans
/// by hand): `NUTMEG_BENCH_URL='postgres://...?options=-c%20search_path%3Dbench' cargo test ... -- --ignored load_fixture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a tool, not a check"]
async fn load_fixture() {
    let Ok(url) = std::env::var("NUTMEG_BENCH_URL") else {
        println!("skipped: NUTMEG_BENCH_URL not set");
        return;
    };
    let patients = std::env::var("NUTMEG_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let store = Store::open(&url).await.expect("open");
    conformance::fixture(&store, patients).await;
    for (what, query) in conformance::selective_queries_for(1234) {
        let plan = store
            .explain(
                &query,
                &SearchOptions {
                    count: 20,
                    max_includes: 0,
                },
            )
            .await
            .expect("explain");
        println!("{what}:\n{}\n", plan.join("\n"));
    }
}

/// Two stores with separate pools (two processes) share the token key and refuse each other's jti.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_share_clients_jti_and_token_key() {
    let Some(db) = fresh().await else { return };
    let other = Store::open(&db.schema.url()).await.expect("second pool");
    conformance::clients_shared_between_stores(&db.store, &other).await;
}

/// Two pools (two processes) purging one patient's data at once: each resource removed once, one
/// audit record per purge that removed something.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_purge_at_once() {
    let Some(db) = fresh().await else { return };
    let other = Store::open(&db.schema.url()).await.expect("second pool");
    conformance::purge_race(&db.store, &other).await;
}
