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
//!
//! Each append's record is padded to `AUDIT_JSON_BYTES` (default 2,000: about what the exchange
//! writes for a search that disclosed one resource) and indexed by a patient drawn from 100,000 (so
//! the index rows land on random pages, as a busy exchange's do). The process's CPU time per append
//! (user + system, from `/proc/self/stat`) is printed beside the rate: on a machine whose cores are
//! all busy it is what an append costs everything else; on SQLite a second figure adds the copy
//! into the searchable audit database, made off the append's path. `AUDIT_ONLY=1` skips the commits.

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
    let size: usize = std::env::var("AUDIT_JSON_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    for callers in [1_usize, 32] {
        let cpu = cpu_seconds();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..callers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (mut n, mut worst) = (0_u64, Duration::ZERO);
                while started.elapsed() < RUN {
                    let patient = fastrand::u32(..100_000);
                    let mut json = format!(
                        r#"{{"resourceType":"AuditEvent","type":{{"code":"rest"}},"subtype":[{{"code":"read"}}],"action":"R","recorded":"2026-11-28T23:00:00Z","outcome":"0","agent":[{{"who":{{"reference":"Device/client-{c}"}},"requestor":true}}],"source":{{"observer":{{"display":"nutmeg"}}}},"entity":[{{"what":{{"reference":"Patient/p{patient}"}}}}],"pad":""#
                    );
                    json.extend(std::iter::repeat_n('x', size.saturating_sub(json.len() + 2)));
                    json.push_str("\"}");
                    let t = Instant::now();
                    store
                        .append_audit(vec![NewAuditRecord {
                            recorded: 1_800_000_000_000,
                            json,
                            index: read_index(c, u64::from(patient)),
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
        let run_cpu = cpu_seconds() - cpu;
        // On SQLite the searchable copy is made off the append's path; reading the log finishes
        // it, so that its cost is counted too.
        store.audit_records(i64::MAX - 1, 1).await.expect("read");
        let cpu = cpu_seconds() - cpu;
        println!(
            "{} {callers:>2} callers: {:>8.0} appends/s ({total} in {secs:.1} s, slowest {:.1} ms), \
             {:.1} us of CPU per append, {:.1} with its searchable copy",
            store.engine(),
            total as f64 / secs,
            worst.as_secs_f64() * 1e3,
            run_cpu * 1e6 / total as f64,
            cpu * 1e6 / total as f64
        );
    }
    let commits = if std::env::var_os("AUDIT_ONLY").is_some() {
        &[][..]
    } else {
        &[1_usize, 32][..]
    };
    for &callers in commits {
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

/// User and system CPU time of this process so far (Linux: `/proc/self/stat`, in clock ticks of
/// 1/100 s, which is what Linux reports there on every common platform).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th after ')'.
    (tick(11) + tick(12)) / 100.0
}

/// The index pairs the exchange gives a read's record: its patient (and its disclosure to the
/// participant), participant, client, outcome, interaction and purpose.
fn read_index(caller: usize, n: u64) -> Vec<(String, String)> {
    let pairs = std::env::var("AUDIT_PAIRS").unwrap_or_default();
    [
        ("patient", format!("p{n}")),
        ("disclosure", format!("p{n}")),
        ("participant", format!("org-{caller}")),
        ("agent", format!("client-{caller}")),
        ("outcome", "0".to_string()),
        ("subtype", "read".to_string()),
        ("purpose", "TREAT".to_string()),
    ]
    .into_iter()
    .filter(|(name, _)| match pairs.as_str() {
        "none" => false,
        "no-disclosure" => *name != "disclosure",
        "no-patient" => *name != "disclosure" && *name != "patient",
        _ => true,
    })
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}
