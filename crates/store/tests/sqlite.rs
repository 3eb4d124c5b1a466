//! The conformance suite on SQLite (a fresh database file in a temporary directory per test), and
//! the query plans of the selective searches.
#![cfg(feature = "sqlite")]

use store::conformance::{self, put};
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

/// SQL on the database file through a connection of its own, past the store.
struct Raw(std::sync::Mutex<rusqlite::Connection>);

impl Raw {
    /// A connection to the audit database (the tests that use `Raw` tamper with the audit log).
    fn open(db: &TestDb) -> Raw {
        let file = store::audit_file_of(&db._dir.path().join("test.db"));
        assert!(file.ends_with("test-audit.db"), "{}", file.display());
        let conn = rusqlite::Connection::open(file).expect("open file");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        Raw(std::sync::Mutex::new(conn))
    }
}

impl conformance::RawSql for Raw {
    async fn execute(&self, sql: &str) -> Result<(), String> {
        let conn = self.0.lock().expect("connection");
        conn.execute_batch(sql).map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_refuses_update_and_delete() {
    let db = fresh().await;
    conformance::audit_log_refuses_update_and_delete(&db.store, &Raw::open(&db)).await;
}

// `conformance::audit_failed_batch_fails_every_caller` makes the database fail under the store;
// on SQLite records are appended to the log file, not the database: `audit_file`'s unit tests
// make the file fail (a batch that cannot be written is refused, and so is every later one).

/// The searchable copy in the audit database is guarded and checked as the log is on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_named() {
    for case in 0..conformance::AUDIT_TAMPERING_CASES {
        let db = fresh().await;
        conformance::audit_tampering_is_named(&db.store, &Raw::open(&db), case).await;
    }
}

/// The records of a fresh store's log file, one line each (their texts hold no newline).
fn log_lines(db: &TestDb) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let path = store::audit_log_of(&db._dir.path().join("test.db"));
    let mut bytes = std::fs::read(&path).expect("read the log file");
    // (The zeros the file is made longer with, ahead of the log, are not records.)
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    bytes.truncate(end);
    let lines = bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    (path, lines)
}

/// A line's header (as JSON) and its text.
fn split_line(line: &[u8]) -> (serde_json::Value, String) {
    let text = std::str::from_utf8(line).expect("utf-8");
    let at = text.find("} ").expect("header end") + 1;
    let header = serde_json::from_str(&text[..at]).expect("header");
    (header, text[at + 1..].trim_end_matches('\n').to_string())
}

/// The numbers of the audit records indexed by `patient`, newest first.
async fn records_of_patient(store: &Store, patient: &str) -> Vec<i64> {
    let query = store::AuditQuery {
        filters: vec![("patient".to_string(), patient.to_string())],
        limit: 10,
        ..Default::default()
    };
    let found = store.search_audit(&query).await.expect("search");
    found.iter().map(|r| r.seq).collect()
}

fn audit_record(n: i64) -> store::NewAuditRecord {
    store::NewAuditRecord {
        recorded: conformance::T0 + n,
        json: format!(r#"{{"resourceType":"AuditEvent","id":"ae{n}"}}"#),
        index: vec![("patient".to_string(), format!("p{n}"))],
    }
}

/// The log file is the log: when its records are changed, removed or garbled (the searchable
/// copy left as it was), or its chain recomputed after a change so that it holds together,
/// verify names the first record concerned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_file_tampering_is_named() {
    use store::{AuditCheck, AuditFault, AuditHash};
    type Edit = fn(&mut Vec<Vec<u8>>);
    let cases: Vec<(&str, Edit, u64, AuditFault)> = vec![
        (
            "a record's text changed",
            |lines| {
                let line = String::from_utf8(lines[2].clone()).unwrap();
                lines[2] = line.replace("ae3", "ae9").into_bytes();
            },
            2,
            AuditFault::Changed { seq: 3 },
        ),
        (
            "a record removed",
            |lines| {
                lines.remove(3);
            },
            3,
            AuditFault::Removed { first: 4, last: 4 },
        ),
        (
            "the first record removed",
            |lines| {
                lines.remove(0);
            },
            0,
            AuditFault::Removed { first: 1, last: 1 },
        ),
        (
            "the last two records cut off",
            |lines| lines.truncate(4),
            4,
            AuditFault::Removed { first: 5, last: 6 },
        ),
        (
            "a record garbled",
            |lines| lines[3] = b"not a record at all\n".to_vec(),
            3,
            AuditFault::Changed { seq: 4 },
        ),
        (
            "a record changed and the chain recomputed from it on",
            |lines| {
                let mut prev = None;
                for line in lines.iter_mut().skip(2) {
                    let (mut header, text) = split_line(line);
                    let text = text.replace("ae", "xx");
                    let prev_hash = prev.unwrap_or_else(|| {
                        AuditHash::from_hex(header["prev_hash"].as_str().unwrap()).unwrap()
                    });
                    let hash = store::chain_hash(
                        &prev_hash,
                        header["seq"].as_i64().unwrap(),
                        header["recorded"].as_i64().unwrap(),
                        &text,
                    );
                    header["prev_hash"] = prev_hash.to_hex().into();
                    header["hash"] = hash.to_hex().into();
                    header["bytes"] = text.len().into();
                    *line = format!("{header} {text}\n").into_bytes();
                    prev = Some(hash);
                }
            },
            2,
            AuditFault::Changed { seq: 3 },
        ),
    ];
    for (what, edit, verified, fault) in cases {
        let db = fresh().await;
        db.store
            .append_audit((1..=6).map(audit_record).collect())
            .await
            .expect("append");
        // The copy is made when the log is read.
        assert_eq!(db.store.audit_records(0, 10).await.expect("read").len(), 6);
        assert!(matches!(
            db.store.verify_audit().await.expect("verify"),
            AuditCheck::Intact { count: 6, .. }
        ));
        let (path, mut lines) = log_lines(&db);
        assert_eq!(lines.len(), 6, "one line per record");
        edit(&mut lines);
        std::fs::write(&path, lines.concat()).expect("write the log file");
        conformance::assert_audit_broken(&db.store, what, verified, fault).await;
    }
}

/// The searchable copy can be thrown away: opened without it, the store makes it again from the
/// log file, and searches and verify find every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_copy_is_rebuilt_from_the_log_file() {
    let db = fresh().await;
    let url = format!("sqlite://{}", db._dir.path().join("test.db").display());
    db.store
        .append_audit((1..=5).map(audit_record).collect())
        .await
        .expect("append");
    drop(db.store);
    let copy = store::audit_file_of(&db._dir.path().join("test.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    let store = Store::open(&url).await.expect("reopen");
    assert_eq!(records_of_patient(&store, "p4").await, vec![4]);
    let next = store
        .append_audit(vec![audit_record(6)])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 6);
    assert_eq!(
        store.verify_audit().await.expect("verify"),
        store::AuditCheck::Intact {
            count: 6,
            head: next[0].hash
        }
    );
}

/// A record appended by another store on the same files (another process: `nutmeg admin`
/// beside the server) continues the one chain, and this store's searches find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_append_one_audit_chain() {
    let db = fresh().await;
    let url = format!("sqlite://{}", db._dir.path().join("test.db").display());
    let other = Store::open(&url).await.expect("second store");
    let mut seqs = Vec::new();
    for n in 1..=6 {
        let store = if n % 2 == 0 { &db.store } else { &other };
        seqs.push(
            store
                .append_audit(vec![audit_record(n)])
                .await
                .expect("append")[0]
                .seq,
        );
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        records_of_patient(&db.store, "p5").await.len(),
        1,
        "the other store's record is found here"
    );
    for store in [&db.store, &other] {
        assert!(matches!(
            store.verify_audit().await.expect("verify"),
            store::AuditCheck::Intact { count: 6, .. }
        ));
    }
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    assert_eq!(store.engine(), "sqlite");
    conformance::create_read_vread(&store).await;
    // The group-commit task also serves a store on a single-threaded runtime.
    conformance::audit_appends_form_a_chain(&store).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_refuses_edited_migrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("test.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.expect("open");
    store
        .commit(vec![put("Patient", "p1", 1, vec![])])
        .await
        .expect("commit");
    drop(store);
    let store = Store::open(&url).await.expect("reopen");
    assert!(
        store.read("Patient", "p1").await.expect("read").is_some(),
        "data survives reopening"
    );
    drop(store);
    // Pretend the released migration was edited after it was applied: its recorded checksum no
    // longer matches the one built in. (`query_rows` is read-only, so go to the file directly.)
    let conn = rusqlite::Connection::open(&path).expect("open file");
    let changed = conn
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            [],
        )
        .expect("update checksum");
    assert_eq!(changed, 1, "migration 1 is recorded");
    drop(conn);
    let err = Store::open(&url).await.expect_err("refuses to start");
    assert!(err.to_string().contains("was changed"), "{err}");
}

#[tokio::test]
async fn unknown_scheme_is_an_open_error() {
    let err = Store::open("mysql://localhost/x")
        .await
        .expect_err("no engine");
    assert!(err.to_string().contains("mysql"), "{err}");
}

/// The selective searches of the benchmarks are index lookups: every index table is searched
/// through an index (or its primary key), never scanned, and so is `resources`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_searches_use_indexes() {
    let db = fresh().await;
    // First as a server that never ran ANALYZE plans them, then with statistics.
    conformance::plan_fixture_without_statistics(&db.store).await;
    check_plans(&db.store, "without statistics").await;
    db.store.analyze().await.expect("analyze");
    check_plans(&db.store, "with statistics").await;
}

async fn check_plans(store: &store::Store, stats: &str) {
    let db = store;
    let options = store::SearchOptions {
        count: 20,
        max_includes: 0,
    };
    for (what, query) in conformance::selective_queries() {
        let what = format!("{what} ({stats})");
        let plan = db.explain(&query, &options).await.expect("explain");
        let text = plan.join("\n");
        println!("{what}:\n{text}\n");
        assert!(
            text.contains("USING INDEX") || text.contains("USING COVERING INDEX"),
            "{what} uses an index:\n{text}"
        );
        for line in &plan {
            let line = line.trim();
            let scan = line.starts_with("SCAN ") && !line.starts_with("SCAN CONSTANT ROW");
            // A scan of the page's own derived table (the sort keys of the rows found) is fine.
            let derived = line == "SCAN t";
            assert!(!scan || derived, "{what} scans a table: {line}\n{text}");
            // A lookup index sought by the parameter alone reads every row of the parameter (a
            // probe by rid that should have used the primary key: 500 ms at a million resources).
            assert!(
                !line.contains("_lookup (param=?)"),
                "{what} reads every row of a parameter: {line}\n{text}"
            );
        }
        // And the plan is the one that runs: the search answers.
        let page = db.search(&query, &options).await.expect("search");
        assert!(!page.matches.is_empty(), "{what} finds something");
    }
}

/// Write throughput of the store alone (no HTTP, no validation); run with
/// `cargo test --release -p store --test sqlite write_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn write_throughput() {
    let db = fresh().await;
    let batch = std::env::var("NUTMEG_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rate = conformance::write_throughput(&db.store, 40_000, batch, 4).await;
    println!("sqlite: {rate:.0} resources/s (batches of {batch}, 4 writers, 25 index rows each)");
}

/// Search latency of the selective searches on a larger database; run with
/// `NUTMEG_BENCH_PATIENTS=30000 cargo test --release -p store --test sqlite search_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn search_latency() {
    let db = fresh().await;
    let patients = std::env::var("NUTMEG_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let started = std::time::Instant::now();
    conformance::fixture(&db.store, patients).await;
    println!(
        "sqlite: loaded {} resources in {:.1} s",
        patients * 7,
        started.elapsed().as_secs_f64()
    );
    for clients in [1, 32] {
        for (name, p50, p99) in conformance::search_latency(&db.store, patients, clients, 50).await
        {
            println!(
                "sqlite {clients:>2} clients: {name:<40} p50 {p50:>6.2} ms  p99 {p99:>6.2} ms"
            );
        }
    }
}

/// Two stores on one file (two processes) share the token key and refuse each other's jti.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_share_clients_jti_and_token_key() {
    let db = fresh().await;
    let url = format!("sqlite://{}", db._dir.path().join("test.db").display());
    let other = Store::open(&url).await.expect("second store");
    conformance::clients_shared_between_stores(&db.store, &other).await;
}

/// A database written before the audit log had a file of its own keeps its records in the main
/// file; opened now, they move to the audit database and the log file once, the chain intact, and
/// new records follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_audit_records_move_to_the_audit_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("nutmeg.db");
    let url = format!("sqlite://{}", main.display());
    let record = |n: i64| store::NewAuditRecord {
        recorded: conformance::T0 + n,
        json: format!(r#"{{"resourceType":"AuditEvent","id":"a{n}"}}"#),
        index: vec![("patient".to_string(), format!("p{n}"))],
    };
    // Three records as this version writes them, then laid out as the earlier version kept them:
    // in the main file's audit tables (migrations 2 and 5), with no audit file.
    let store = Store::open(&url).await.expect("open");
    store
        .append_audit((1..=3).map(record).collect())
        .await
        .expect("append");
    let records = store.audit_records(0, 10).await.expect("read");
    assert_eq!(records.len(), 3);
    drop(store);
    let audit = store::audit_file_of(&main);
    let conn = rusqlite::Connection::open(&main).expect("open main file");
    write_records_as_kept(&conn, &records);
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", audit.display()));
    }
    std::fs::remove_file(store::audit_log_of(&main)).expect("no log file then");

    // Opened now, they move to the audit database and from there to a new log file.
    let store = Store::open(&url).await.expect("reopen");
    let next = store
        .append_audit(vec![record(4)])
        .await
        .expect("append after");
    assert_eq!(
        next[0].seq, 4,
        "the chain continues after the moved records"
    );
    match store.verify_audit().await.expect("verify") {
        store::AuditCheck::Intact { count, head } => {
            assert_eq!((count, head), (4, next[0].hash));
        }
        broken => panic!("{broken:?}"),
    }
    let found = store
        .search_audit(&store::AuditQuery {
            filters: vec![("patient".to_string(), "p2".to_string())],
            recorded_from: None,
            recorded_to: None,
            before_seq: None,
            limit: 10,
        })
        .await
        .expect("search");
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2],
        "their index rows moved too"
    );
    drop(store);
    // Opening again copies nothing twice.
    let store = Store::open(&url).await.expect("reopen again");
    assert!(matches!(
        store.verify_audit().await.expect("verify"),
        store::AuditCheck::Intact { count: 4, .. }
    ));
}

/// Writes `records` (indexed by `patient` p<seq>) into `audit_log` and `audit_index` tables as the
/// versions before the log file kept them: the record itself in each row.
fn write_records_as_kept(conn: &rusqlite::Connection, records: &[store::AuditRecord]) {
    for r in records {
        conn.execute(
            "INSERT INTO audit_log (seq, recorded, json, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![r.seq, r.recorded, r.json, r.prev_hash.to_hex(), r.hash.to_hex()],
        )
        .expect("insert a record");
        conn.execute(
            "INSERT INTO audit_index (name, value, seq) VALUES ('patient', ?1, ?2)",
            rusqlite::params![format!("p{}", r.seq), r.seq],
        )
        .expect("insert its index row");
    }
}

/// An audit database of version 2 (its copy of the log file held each record's text) is upgraded
/// on open: the old copy is dropped, the new one (the records' places in the file) built from the
/// file; searches, reads and verify find every record, and the chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_audit_copy_is_replaced_by_places() {
    let db = fresh().await;
    let main = db._dir.path().join("test.db");
    let url = format!("sqlite://{}", main.display());
    db.store
        .append_audit((1..=4).map(audit_record).collect())
        .await
        .expect("append");
    let records = db.store.audit_records(0, 10).await.expect("read");
    assert_eq!(records.len(), 4);
    // The audit database laid out as version 2 left it: its tables, and a copy of the file's four
    // records, text and all, with how far the copy went.
    let (_, lines) = log_lines(&db);
    drop(db.store);
    let end: usize = lines.iter().map(Vec::len).sum();
    let conn = rusqlite::Connection::open(store::audit_file_of(&main)).expect("open audit db");
    conn.execute_batch(&format!(
        "DROP TABLE audit_log; DROP TABLE audit_index; DROP TABLE audit_copied; \
         DELETE FROM schema_migrations WHERE version = 3; {} {}",
        include_str!("../migrations/sqlite-audit/0001_audit.sql"),
        include_str!("../migrations/sqlite-audit/0002_audit_file.sql"),
    ))
    .expect("version 2 tables");
    write_records_as_kept(&conn, &records);
    conn.execute(
        "INSERT INTO audit_copied (one, seq, hash, file_offset) VALUES (1, 4, ?1, ?2)",
        rusqlite::params![records[3].hash.to_hex(), end as i64],
    )
    .expect("how far it went");
    drop(conn);

    let store = Store::open(&url).await.expect("open version 2");
    assert_eq!(records_of_patient(&store, "p3").await, vec![3]);
    assert_eq!(store.audit_records(0, 10).await.expect("read"), records);
    let next = store
        .append_audit(vec![audit_record(5)])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 5);
    assert_eq!(
        store.verify_audit().await.expect("verify"),
        store::AuditCheck::Intact {
            count: 5,
            head: next[0].hash
        }
    );
    let conn = rusqlite::Connection::open(store::audit_file_of(&main)).expect("open audit db");
    let earlier: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'audit_earlier%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(earlier, 0, "the old copy is gone");
}

/// Two purges of one patient's data at once on one database remove each resource once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_twice_at_once() {
    let db = fresh().await;
    conformance::purge_race(&db.store, &db.store.clone()).await;
}

/// Verify on a store that goes on appending (a live server) finds the log intact: records the
/// file gained after the copy was walked are not a difference between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_records_are_appended() {
    let db = fresh().await;
    db.store
        .append_audit((1..=20).map(audit_record).collect())
        .await
        .expect("append");
    let appender = {
        let store = db.store.clone();
        tokio::spawn(async move {
            for n in 21..=400 {
                store
                    .append_audit(vec![audit_record(n)])
                    .await
                    .expect("append");
            }
        })
    };
    let mut checks = 0;
    while !appender.is_finished() {
        match db.store.verify_audit().await.expect("verify") {
            store::AuditCheck::Intact { count, .. } => assert!(count >= 20),
            broken => panic!("{broken:?}"),
        }
        checks += 1;
    }
    appender.await.expect("appender");
    assert!(checks > 0);
    assert!(matches!(
        db.store.verify_audit().await.expect("verify"),
        store::AuditCheck::Intact { count: 400, .. }
    ));
}
