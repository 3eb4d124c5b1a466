//! The real `nutmeg` binary: configuration errors, `import`, `serve` (health, graceful shutdown on
//! SIGTERM with a request in flight) and `demo` (its printed URLs answer), driven as an operator
//! would, on free ports and temporary directories with synthetic fixtures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

/// A `nutmeg` command with no configuration leaking in from the environment, with open access
/// (these tests are about the FHIR API and the commands; crates/server/tests/access.rs tests
/// access over tokens).
fn nutmeg() -> Command {
    let mut command = Command::new(NUTMEG);
    for (name, _) in std::env::vars() {
        if name.starts_with("NUTMEG_") {
            command.env_remove(name);
        }
    }
    command.env("NUTMEG_AUTH", "none");
    command
}

/// A running server: its process, the base URL it printed, and the rest of its stdout.
struct Server {
    child: Child,
    base: String,
    lines: Vec<String>,
}

impl Server {
    fn start(command: Command) -> Server {
        Server::start_logging(command, Stdio::null())
    }

    fn start_logging(mut command: Command, log: impl Into<Stdio>) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
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
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("nutmeg listening on ") {
                        return Server {
                            child,
                            base: base.trim().to_string(),
                            lines,
                        };
                    }
                    lines.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nutmeg did not start listening; stdout so far: {lines:?}");
                }
            }
        }
    }

    fn root(&self) -> String {
        self.base.trim_end_matches("/fhir").to_string()
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; answers whether it exited successfully.
    fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("nutmeg did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
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
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, String) {
    let mut response = agent().get(url).call().expect("GET");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn get_json(url: &str) -> Value {
    let (status, text) = get(url);
    assert_eq!(status, 200, "{url}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn serve(dir: &Path) -> Server {
    let mut command = nutmeg();
    command.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
        "--log",
        "warn",
    ]);
    Server::start(command)
}

#[test]
fn every_configuration_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nutmeg.toml");
    std::fs::write(
        &file,
        "http = \"127.0.0.1:9999\"\ncolour = \"blue\"\nmax_count = 50\n",
    )
    .unwrap();
    let output = nutmeg()
        .args(["serve", "--config", file.to_str().unwrap()])
        .args(["--http", "not-an-address", "--database", "mysql://db/x"])
        .env("NUTMEG_LOG_FORMAT", "yaml")
        .env("NUTMEG_DEFAULT_COUNT", "100")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "unknown key 'colour'",
        "'not-an-address' is not a socket address",
        "unknown scheme 'mysql'",
        "log_format: 'yaml'",
        "default_count (100) is larger than max_count (50)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_flag_overrides_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nutmeg.toml");
    std::fs::write(&file, "http = \"bad-from-file\"\n").unwrap();
    // The environment's good value hides the file's bad one; the flag's bad value hides the
    // environment's good one.
    let ok = nutmeg()
        .args(["import", "--config", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .arg(dir.path().join("nothing-here"))
        .env("NUTMEG_HTTP", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_ne!(
        ok.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = nutmeg()
        .args([
            "import",
            "--config",
            file.to_str().unwrap(),
            "--http",
            "flag-bad",
        ])
        .arg(dir.path().join("nothing-here"))
        .env("NUTMEG_HTTP", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("'flag-bad'"));
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

fn patient(id: &str, family: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "name": [{ "family": family }] })
}

#[test]
fn import_loads_files_folders_ndjson_and_gzip_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let nested = data.join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    // A single resource.
    std::fs::write(
        data.join("one.json"),
        patient("imp-1", "Abernathy").to_string(),
    )
    .unwrap();
    // A transaction, gzip'd, in a sub-folder.
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "fullUrl": "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
          "resource": { "resourceType": "Patient", "name": [{ "family": "Bergstrom" }] },
          "request": { "method": "POST", "url": "Patient" } },
        { "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "height" },
                        "subject": { "reference": "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427" } },
          "request": { "method": "POST", "url": "Observation" } }
    ]});
    std::fs::write(nested.join("tx.json.gz"), gzip(&transaction.to_string())).unwrap();
    // A collection's entries.
    let collection = json!({ "resourceType": "Bundle", "type": "collection", "entry": [
        { "resource": patient("imp-2", "Castellanos") },
        { "resource": patient("imp-3", "Dimitrov") }
    ]});
    std::fs::write(data.join("collection.json"), collection.to_string()).unwrap();
    // NDJSON, gzip'd.
    let ndjson = format!(
        "{}\n{}\n\n",
        patient("imp-4", "Eriksen"),
        patient("imp-5", "Fontaine")
    );
    std::fs::write(data.join("bulk.ndjson.gz"), gzip(&ndjson)).unwrap();
    // Files that fail: broken JSON, an invalid resource, and a transaction with one bad entry
    // (whose good entry must not be stored).
    std::fs::write(
        nested.join("broken.json"),
        "{\"resourceType\": \"Patient\",",
    )
    .unwrap();
    std::fs::write(
        data.join("invalid.json"),
        json!({ "resourceType": "Patient", "id": "imp-bad", "birthDate": "last spring" })
            .to_string(),
    )
    .unwrap();
    let half_bad = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": patient("imp-6", "Gallagher"), "request": { "method": "PUT", "url": "Patient/imp-6" } },
        { "resource": { "resourceType": "Patient", "gender": "often" }, "request": { "method": "POST", "url": "Patient" } }
    ]});
    std::fs::write(data.join("half-bad.json"), half_bad.to_string()).unwrap();
    // NDJSON whose second line is invalid: its chunk is rejected whole.
    let bad_ndjson = format!(
        "{}\n{}\n",
        patient("imp-7", "Halvorsen"),
        json!({ "resourceType": "Patient", "id": "imp-8", "active": "yes" })
    );
    std::fs::write(nested.join("bad.ndjson"), bad_ndjson).unwrap();
    // A transaction whose conditional reference needs a practitioner from a file that sorts after it
    // (as Synthea's patient bundles need `practitionerInformation*.json`): loaded on the retry.
    let dependent = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Patient", "id": "imp-9", "name": [{ "family": "Ibarra" }],
                        "generalPractitioner": [{ "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999991" }] },
          "request": { "method": "PUT", "url": "Patient/imp-9" } }
    ]});
    std::fs::write(data.join("a-dependent.json"), dependent.to_string()).unwrap();
    let directory = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Practitioner", "id": "imp-prac",
                        "identifier": [{ "system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999991" }] },
          "request": { "method": "PUT", "url": "Practitioner/imp-prac" } }
    ]});
    std::fs::write(data.join("z-directory.json"), directory.to_string()).unwrap();
    // Not a FHIR file: skipped in a folder.
    std::fs::write(data.join("README.txt"), "notes").unwrap();

    let db = dir.path().join("db");
    let output = nutmeg()
        .args([
            "import",
            "--data-dir",
            db.to_str().unwrap(),
            "--log",
            "warn",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("imported 6 file(s), 4 failed; 9 resources"),
        "{stdout}"
    );
    for failed in ["broken.json", "invalid.json", "half-bad.json", "bad.ndjson"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("FAILED") && l.contains(failed)),
            "{failed} not reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(stderr.contains("lines 1-2"), "{stderr}");
    assert!(!stderr.contains("README"));

    let server = serve(&db);
    let count = |query: &str| get_json(&format!("{}/{query}", server.base))["total"].clone();
    assert_eq!(count("Patient?_summary=count"), json!(7));
    assert_eq!(
        get_json(&format!("{}/Patient/imp-9", server.base))["generalPractitioner"][0]["reference"],
        "Practitioner/imp-prac"
    );
    assert_eq!(count("Observation?_summary=count"), json!(1));
    assert_eq!(count("Patient?_id=imp-6,imp-7&_summary=count"), json!(0));
    assert_eq!(
        get_json(&format!("{}/Patient/imp-5", server.base))["name"][0]["family"],
        "Fontaine"
    );
}

#[test]
fn serve_answers_health_and_finishes_an_in_flight_request_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let (status, body) = get(&format!("{}/healthz", server.root()));
    assert_eq!(status, 200, "{body}");
    // The store's own timings reach /metrics, by operation.
    get(&format!("{}/fhir/Patient/never-written", server.root()));
    get(&format!("{}/fhir/Patient?family=Nobody", server.root()));
    let metrics = get(&format!("{}/metrics", server.root())).1;
    for operation in ["read", "search"] {
        let line =
            format!("nutmeg_store_operation_duration_seconds_count{{operation=\"{operation}\"}} 1");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }

    // Start a create whose body is still arriving when SIGTERM comes.
    let body = patient("late-1", "Hallström").to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let address = server.root().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "PUT /fhir/Patient/late-1 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    // Wait until the server is handling it (this /metrics request is the other one in flight).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&format!("{}/metrics", server.root()))
        .1
        .contains("nutmeg_http_requests_in_flight 2")
    {
        assert!(Instant::now() < deadline, "the PUT never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server must wait for the request in flight"
    );
    stream.write_all(rest).unwrap();
    stream.flush().unwrap();
    let mut response = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        server.wait(Duration::from_secs(20)),
        "clean exit after SIGTERM"
    );

    // The write is there after a restart.
    let server = serve(dir.path());
    assert_eq!(
        get_json(&format!("{}/Patient/late-1", server.base))["id"],
        "late-1"
    );
}

#[test]
fn serve_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    assert_eq!(get(&format!("{}/metadata", server.base)).0, 200);
    server.signal("-INT");
    assert!(
        server.wait(Duration::from_secs(20)),
        "clean exit after Ctrl-C"
    );
}

#[test]
fn logs_name_routes_and_request_ids_but_never_contents_or_search_values() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("nutmeg.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = nutmeg();
    command.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--log",
        "trace",
        "--log-format",
        "json",
    ]);
    command.arg("--data-dir").arg(dir.path());
    let mut server = Server::start_logging(command, log);
    let agent = agent();
    let created = agent
        .post(&format!("{}/Patient", server.base))
        .header("content-type", "application/fhir+json")
        .header("x-request-id", "trace-me-42")
        .send(patient("logged-1", "Quixotically").to_string())
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let (status, _) = get(&format!(
        "{}/Patient?family=Quixotically&birthdate=1871-04-09",
        server.base
    ));
    assert_eq!(status, 200);
    let (status, _) = get(&format!(
        "{}/Patient?family=Quixotically&birthdate=18x71-04-09",
        server.base
    ));
    assert_eq!(status, 400);
    server.terminate();
    assert!(server.wait(Duration::from_secs(20)));

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("Quixotically"), "a name reached the log");
    // (A date, not a bare number, which a timestamp or an id in the log could contain by chance.)
    assert!(
        !text.contains("1871-04-09"),
        "a search value reached the log"
    );
    assert!(
        !text.contains("18x71"),
        "a bad search value reached the log"
    );
    let requests: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 3, "{text}");
    let create = &requests[0]["fields"];
    assert_eq!(create["request_id"], "trace-me-42");
    assert_eq!(create["route"], "/fhir/{type}");
    assert_eq!(create["interaction"], "create");
    assert_eq!(create["status"], 201);
    assert!(create["latency_ms"].as_f64().is_some());
    assert_eq!(requests[2]["fields"]["status"], 400);
}

#[test]
fn demo_serves_the_urls_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = nutmeg();
    command.args([
        "demo",
        "--patients",
        "3",
        "--seed",
        "7",
        "--http",
        "127.0.0.1:0",
        "--log",
        "warn",
    ]);
    command.arg("--data-dir").arg(dir.path());
    let mut server = Server::start(command);
    let urls: Vec<String> = server
        .lines
        .iter()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("http")
                .map(|rest| format!("http{rest}"))
        })
        .collect();
    assert_eq!(urls.len(), 4, "{:?}", server.lines);
    for url in &urls {
        let answer = get_json(url);
        if answer["resourceType"] == "Bundle" {
            assert!(
                answer["entry"].as_array().is_some_and(|e| !e.is_empty()),
                "{url} found nothing"
            );
        }
    }
    server.terminate();
    assert!(server.wait(Duration::from_secs(20)));

    // A second demo in the same place refuses to overwrite the data.
    let output = nutmeg()
        .args(["demo", "--patients", "1", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
}
