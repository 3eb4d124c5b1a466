//! Two `nutmeg serve` processes on one PostgreSQL schema are one consistent exchange: writes go
//! through both at once, conflicting `If-Match` updates of one resource have exactly one winner (the
//! other gets 412 or 409), and both servers then read the same results.
//!
//! Runs when `NUTMEG_TEST_POSTGRES` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`); each
//! run makes a fresh schema with `psql` and drops it at the end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

mod common;

use common::PgSchema;

const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(database: &str) -> Server {
        let mut child = Command::new(NUTMEG)
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--database",
                database,
                "--auth",
                "none",
            ])
            .env_remove("NUTMEG_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nutmeg");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("nutmeg listening on ") {
                        return Server {
                            child,
                            base: base.trim().to_string(),
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nutmeg did not start");
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (u16, Value) {
    let agent = agent();
    let mut response = match body {
        Some(body) => {
            let mut request = match method {
                "PUT" => agent.put(url),
                _ => agent.post(url),
            }
            .header("content-type", "application/fhir+json");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body.to_string())
        }
        None => agent.get(url).call(),
    }
    .expect("HTTP request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn patient(family: &str) -> Value {
    json!({ "resourceType": "Patient", "name": [{ "family": family }] })
}

#[test]
fn two_servers_on_one_postgres_are_one_exchange() {
    let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") else {
        // Past the test harness's output capture, so that a plain `cargo test` shows it.
        {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped: NUTMEG_TEST_POSTGRES not set");
        }
        return;
    };
    let schema = PgSchema::create(&base, "two servers");
    let url = schema.url();
    // Both start at once: the migrations must be applied once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start(&url));
        let b = s.spawn(|| Server::start(&url));
        (a.join().unwrap(), b.join().unwrap())
    });
    let servers = [&a.base, &b.base];

    // Concurrent creates through both servers.
    std::thread::scope(|s| {
        for (n, base) in servers.iter().enumerate() {
            for t in 0..2 {
                s.spawn(move || {
                    for i in 0..10 {
                        let family = format!("Concurrent{n}x{t}x{i}");
                        let (status, body) = send(
                            "POST",
                            &format!("{base}/Patient"),
                            &[],
                            Some(&patient(&family)),
                        );
                        assert_eq!(status, 201, "{body}");
                    }
                });
            }
        }
    });

    // Conflicting updates of one resource: for each round, both servers update version n at once.
    let (status, created) = send(
        "PUT",
        &format!("{}/Patient/contested", a.base),
        &[],
        Some(&json!({
            "resourceType": "Patient", "id": "contested", "name": [{ "family": "Start" }]
        })),
    );
    assert_eq!(status, 201, "{created}");
    for round in 1..=5 {
        let etag = format!("W/\"{round}\"");
        let outcomes: Vec<(u16, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(n, base)| {
                    let etag = etag.clone();
                    s.spawn(move || {
                        let body = json!({
                            "resourceType": "Patient", "id": "contested",
                            "name": [{ "family": format!("Round{round}Server{n}") }]
                        });
                        send(
                            "PUT",
                            &format!("{base}/Patient/contested"),
                            &[("if-match", etag.as_str())],
                            Some(&body),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = outcomes.iter().filter(|(s, _)| *s == 200).count();
        let losers = outcomes
            .iter()
            .filter(|(s, body)| {
                (*s == 412 || *s == 409) && body["resourceType"] == "OperationOutcome"
            })
            .count();
        assert_eq!((winners, losers), (1, 1), "round {round}: {outcomes:?}");
    }

    // Both servers read the same results.
    let read = |base: &str| send("GET", &format!("{base}/Patient/contested"), &[], None);
    let (sa, ra) = read(&a.base);
    let (sb, rb) = read(&b.base);
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(ra, rb);
    assert_eq!(ra["meta"]["versionId"], "6");
    for query in [
        "Patient?_summary=count",
        "Patient?family=Concurrent1&_summary=count",
    ] {
        let (_, ta) = send("GET", &format!("{}/{query}", a.base), &[], None);
        let (_, tb) = send("GET", &format!("{}/{query}", b.base), &[], None);
        assert_eq!(ta["total"], tb["total"], "{query}");
    }
    let (_, all) = send(
        "GET",
        &format!("{}/Patient?_summary=count", b.base),
        &[],
        None,
    );
    assert_eq!(all["total"], json!(41));
    let (_, history) = send(
        "GET",
        &format!("{}/Patient/contested/_history", b.base),
        &[],
        None,
    );
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(6));
}
