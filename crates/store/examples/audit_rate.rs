//! Measures audit appends per second at 1 and 32 concurrent callers, each append one record that
//! is durable when it returns (group commit batches concurrent callers), and what an audit record
//! costs a write: commits of one small resource alone and with one record (`commit_with_audit`):
//!
//! ```text
//! cargo run --release -p store --example audit_rate                      # SQLite in a temporary directory
//! cargo run --release -p store --example audit_rate -- postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! On PostgreSQL the tables go into a fresh schema (`audit_rate_<pid>`), dropped at the end.

use std::time::{Duration, Instant};

use store::conformance::put;
use store::{AuditCheck, NewAuditRecord, Store};

/// How long each concurrency level runs.
const RUN: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let arg = std::env::args().nth(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, schema) = match arg.as_deref() {
        Some(pg) if pg.starts_with("postgres") => {
            let schema = format!("audit_rate_{}", std::process::id());
            let (client, connection) = tokio_postgres::connect(pg, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .expect("create schema");
            let sep = if pg.contains('?') { '&' } else { '?' };
            let url = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
            (url, Some((client, schema)))
        }
        Some(other) => (other.to_string(), None),
        None => (
            format!("sqlite://{}", dir.path().join("audit.db").display()),
            None,
        ),
    };
    let store = Store::open(&url).await.expect("open");
    for callers in [1_usize, 32] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..callers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (mut n, mut worst) = (0_u64, Duration::ZERO);
                while started.elapsed() < RUN {
                    let json = format!(
                        r#"{{"resourceType":"AuditEvent","type":{{"code":"rest"}},"subtype":[{{"code":"read"}}],"action":"R","recorded":"2026-11-28T23:00:00Z","outcome":"0","agent":[{{"who":{{"reference":"Device/client-{c}"}},"requestor":true}}],"source":{{"observer":{{"display":"nutmeg"}}}},"entity":[{{"what":{{"reference":"Patient/p{n}"}}}}]}}"#
                    );
                    let t = Instant::now();
                    store
                        .append_audit(vec![NewAuditRecord {
                            recorded: 1_800_000_000_000,
                            json,
                            index: read_index(c, n),
                        }])
                        .await
                        .expect("append");
                    worst = worst.max(t.elapsed());
                    n += 1;
                }
                (n, worst)
            }));
        }
        let (mut total, mut worst) = (0, Duration::ZERO);
        for task in tasks {
            let (n, w) = task.await.expect("task");
            total += n;
            worst = worst.max(w);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} {callers:>2} callers: {:>8.0} appends/s ({total} in {secs:.1} s, slowest {:.1} ms)",
            store.engine(),
            total as f64 / secs,
            worst.as_secs_f64() * 1e3
        );
    }
    for callers in [1_usize, 32] {
        for with_audit in [false, true] {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..callers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0_u64;
                    while started.elapsed() < RUN {
                        let write = put(
                            "Patient",
                            &format!("w{with_audit}-{callers}-{c}-{n}"),
                            1,
                            Vec::new(),
                        );
                        if with_audit {
                            let record = NewAuditRecord {
                                recorded: 1_800_000_000_000,
                                json: format!(
                                    r#"{{"resourceType":"AuditEvent","action":"C","n":{n}}}"#
                                ),
                                index: read_index(c, n),
                            };
                            store
                                .commit_with_audit(vec![write], vec![record])
                                .await
                                .expect("commit");
                        } else {
                            store.commit(vec![write]).await.expect("commit");
                        }
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("task");
            }
            println!(
                "{} {callers:>2} writers: {:>8.0} commits/s of one resource{}",
                store.engine(),
                total as f64 / started.elapsed().as_secs_f64(),
                if with_audit {
                    " with one audit record"
                } else {
                    ""
                }
            );
        }
    }
    let started = Instant::now();
    match store.verify_audit().await.expect("verify") {
        AuditCheck::Intact { count, .. } => println!(
            "verified {count} records in {:.2} s",
            started.elapsed().as_secs_f64()
        ),
        broken => panic!("{broken:?}"),
    }
    drop(store);
    if let Some((client, schema)) = schema {
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
    }
}

/// The index pairs the exchange gives a read's record: its patient, participant, client, outcome,
/// interaction and purpose.
fn read_index(caller: usize, n: u64) -> Vec<(String, String)> {
    [
        ("patient", format!("p{n}")),
        ("participant", format!("org-{caller}")),
        ("agent", format!("client-{caller}")),
        ("outcome", "0".to_string()),
        ("subtype", "read".to_string()),
        ("purpose", "TREAT".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}
