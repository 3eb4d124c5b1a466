//! The conformance suite on SQLite (a fresh database file in a temporary directory per test), and
//! the query plans of the selective searches.
#![cfg(feature = "sqlite")]

use store::conformance::{self, put, string, token, date, reference};
use store::Store;

/// A fresh SQLite store in its own temporary directory (removed when dropped).
struct TestDb {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fresh() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::open(&url).await.expect("open sqlite");
    TestDb { store, _dir: dir }
}

macro_rules! sqlite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = fresh().await;
                conformance::$name(&db.store).await;
            }
        )*
    };
}

store::for_each_conformance_test!(sqlite_tests);

#[tokio::test]
async fn in_memory_database_works() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    assert_eq!(store.engine(), "sqlite");
    conformance::create_read_vread(&store).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_refuses_edited_migrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::open(&url).await.expect("open");
    store.commit(vec![put("Patient", "p1", 1, vec![])]).await.expect("commit");
    drop(store);
    let store = Store::open(&url).await.expect("reopen");
    assert!(store.read("Patient", "p1").await.expect("read").is_some());
    store
        .query_rows("SELECT 1")
        .await
        .expect("query");
    drop(store);
    // Pretend the released migration was edited after it was applied.
    let conn = tempfile_sqlite_update(&dir.path().join("test.db"));
    assert!(conn, "updated the checksum");
    let err = Store::open(&url).await.expect_err("refuses to start");
    assert!(err.to_string().contains("was changed"), "{err}");
}

/// Changes the recorded checksum of migration 1 with the store's own diagnostic access.
fn tempfile_sqlite_update(path: &std::path::Path) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = Store::open(&format!("sqlite://{}", path.display())).await.expect("open");
        store.query_rows("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1").await.is_ok()
    })
}

#[tokio::test]
async fn unknown_scheme_is_an_open_error() {
    let err = Store::open("mysql://localhost/x").await.expect_err("no engine");
    assert!(err.to_string().contains("mysql"), "{err}");
}

/// Selective searches are index lookups, not scans of the big tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_searches_use_indexes() {
    let db = fresh().await;
    let mut writes = Vec::new();
    for i in 0..2000 {
        let id = format!("o{i}");
        writes.push(put(
            "Observation",
            &id,
            1,
            vec![
                token("code", Some("http://loinc.org"), &format!("c{}", i % 50)),
                string("name", &format!("Name{i}")),
                reference("subject", "Patient", &format!("p{}", i % 100)),
                date("date", conformance::T0 + i64::from(i) * 60_000, conformance::T0 + i64::from(i) * 60_000),
            ],
        ));
    }
    db.store.commit(writes).await.expect("commit");
    db.store.query_rows("ANALYZE").await.expect("analyze");
    for (what, sql) in [
        ("token by code", "SELECT r.rid FROM resources r WHERE r.deleted = 0 AND r.type = 'Observation' AND r.rid IN (SELECT i.rid FROM idx_token i WHERE i.param = 'code' AND i.code = 'c7' AND i.system = 'http://loinc.org') ORDER BY r.rid LIMIT 21"),
        ("string by prefix", "SELECT r.rid FROM resources r WHERE r.deleted = 0 AND r.type = 'Observation' AND r.rid IN (SELECT i.rid FROM idx_string i WHERE i.param = 'name' AND i.normalized >= 'name12' AND i.normalized < 'name12\u{10FFFF}') ORDER BY r.rid LIMIT 21"),
        ("reference by target", "SELECT r.rid FROM resources r WHERE r.deleted = 0 AND r.type = 'Observation' AND r.rid IN (SELECT i.rid FROM idx_reference i WHERE i.param = 'subject' AND i.target_type = 'Patient' AND i.target_id = 'p5') ORDER BY r.rid LIMIT 21"),
        ("date range", &format!("SELECT r.rid FROM resources r WHERE r.deleted = 0 AND r.type = 'Observation' AND r.rid IN (SELECT i.rid FROM idx_date i WHERE i.param = 'date' AND i.low >= {lo} AND i.low <= {hi} AND i.high <= {hi}) ORDER BY r.rid LIMIT 21", lo = conformance::T0, hi = conformance::T0 + 600_000)),
    ] {
        let plan = db.store.query_rows(&format!("EXPLAIN QUERY PLAN {sql}")).await.expect("plan");
        let details: Vec<String> = plan.iter().filter_map(|row| row.last().cloned()).collect();
        let text = details.join("\n");
        println!("{what}:\n{text}\n");
        assert!(text.contains("USING") && text.contains("INDEX"), "{what} uses an index:\n{text}");
        for line in &details {
            let scans_table = line.starts_with("SCAN ") && !line.contains("INDEX") && !line.contains("LIST SUBQUERY");
            assert!(!scans_table, "{what} scans a table: {line}\n{text}");
        }
    }
}
