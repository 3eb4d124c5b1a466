//! Shared scaffolding for the tests that run the `nutmeg` binary: a command with no configuration
//! from the environment, a running server, the admin commands, and an HTTP agent; and the real
//! peers of Direct discovery: an authoritative DNS server ([`dns`]) and a throwaway slapd
//! ([`slapd`]).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod browser;

/// `nutmeg admin application add` arguments of a solo practitioner without an EHR (the secure-messaging
/// path): Sam Lee, LCSW, Stamford.
pub const SAM_LEE_APPLICATION: &[&str] = &[
    "--kind",
    "solo-practitioner",
    "--legal-name",
    "Sam Lee",
    "--npi",
    "1987654328",
    "--licence-type",
    "lcsw",
    "--licence-number",
    "LCSW 77",
    "--licence-state",
    "CT",
    "--address-line",
    "3 Oak Road",
    "--city",
    "Stamford",
    "--state",
    "CT",
    "--postcode",
    "06901",
    "--ehr",
    "none",
    "--signer-name",
    "Sam Lee",
    "--signer-title",
    "Owner",
    "--signer-email",
    "sam@lee.example.org",
    "--contact-name",
    "Sam Lee",
    "--contact-email",
    "sam@lee.example.org",
    "--contact-phone",
    "860-555-0111",
];
pub mod dns;
pub mod slapd;

use serde_json::Value;
use server::client::{now, post_form, SigningKey};

pub const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

/// A `nutmeg` command with no configuration leaking in from the environment.
pub fn nutmeg() -> Command {
    let mut command = Command::new(NUTMEG);
    for (name, _) in std::env::vars() {
        if name.starts_with("NUTMEG_") {
            command.env_remove(name);
        }
    }
    command
}

/// The file in a test's data directory that names its database, when it is not the directory's
/// SQLite file: [`on_postgres`] writes it, and [`admin`], [`import`] and [`Server::start`] pass it
/// on as `--database`.
const DATABASE_FILE: &str = "database-url";

/// `--database URL` when the data directory names its database (see [`DATABASE_FILE`]).
pub fn database_args(dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(dir.join(DATABASE_FILE)) {
        Ok(url) => vec!["--database".to_string(), url.trim().to_string()],
        Err(_) => Vec::new(),
    }
}

/// A PostgreSQL schema of its own for one test, dropped (with everything in it) when this is
/// dropped, also after a failed assertion.
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    /// A fresh schema in the database at `base`, named after `label`, this process and the time.
    pub fn create(base: &str, label: &str) -> PgSchema {
        let name = format!(
            "nutmeg_{}_{}_{}",
            label
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect::<String>()
                .to_ascii_lowercase(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        psql(base, &format!("CREATE SCHEMA {name}"));
        PgSchema {
            base: base.to_string(),
            name,
        }
    }

    /// The database URL that puts every table in this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        psql(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs one statement with `psql`.
pub fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql failed: {sql}");
}

/// Points the data directory `dir` at a fresh PostgreSQL schema when `NUTMEG_TEST_POSTGRES` is
/// set (e.g. `postgres://postgres@127.0.0.1:5432/test`): every command and server the test runs
/// over `dir` then uses it. `None`, said on stderr, without it.
pub fn on_postgres(dir: &Path, test: &str) -> Option<PgSchema> {
    let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") else {
        // Past the test harness's output capture, so that a plain `cargo test` shows it.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test} on PostgreSQL: NUTMEG_TEST_POSTGRES not set"
        );
        return None;
    };
    let schema = PgSchema::create(&base, test);
    std::fs::write(dir.join(DATABASE_FILE), schema.url()).unwrap();
    Some(schema)
}

/// Runs `test` over a fresh data directory pointed at a PostgreSQL schema of its own (see
/// [`on_postgres`]; skipped, and said, without `NUTMEG_TEST_POSTGRES`), and checks that it did run
/// there: no SQLite file was made.
pub fn run_on_postgres(name: &str, test: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(_schema) = on_postgres(dir.path(), name) {
        test(dir.path());
        assert!(
            !dir.path().join("nutmeg.db").exists(),
            "{name} ran on PostgreSQL"
        );
    }
}

/// `nutmeg serve` (or `demo`) on a free loopback port, its log in a file.
pub struct Server {
    pub child: Child,
    /// The FHIR base URL it printed.
    pub base: String,
    /// What it printed before it listened.
    pub lines: Vec<String>,
    pub log: PathBuf,
}

impl Server {
    /// Starts `nutmeg serve` over the data directory `dir` with `args` added and waits until it
    /// listens.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        let mut command = nutmeg();
        command
            .args(["serve", "--http", "127.0.0.1:0", "--log", "info"])
            .arg("--data-dir")
            .arg(dir)
            .args(database_args(dir))
            .args(args);
        Server::spawn(command, dir.join("serve.log"))
    }

    /// Runs `command` (a `serve` or `demo`), its stderr to `log`, until it says where it listens.
    pub fn spawn(mut command: Command, log: PathBuf) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
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
        let deadline = Instant::now() + Duration::from_secs(300);
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
                            log,
                        };
                    }
                    lines.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nutmeg did not start listening: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// The server's root (the base URL without `/fhir`).
    pub fn root(&self) -> String {
        self.base.trim_end_matches("/fhir").to_string()
    }

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.root())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nutmeg --data-dir DIR admin ARGS...`.
pub fn admin(dir: &Path, args: &[&str]) -> Output {
    nutmeg()
        .arg("--data-dir")
        .arg(dir)
        .args(database_args(dir))
        .args(["--log", "warn", "admin"])
        .args(args)
        .output()
        .expect("run nutmeg")
}

/// The one JSON document a successful command printed.
pub fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document on stdout")
}

/// An HTTP agent that answers every status instead of failing on 4xx and 5xx.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `nutmeg admin participant add` of `kind`, moved through `statuses` (from applied); answers its id.
pub fn participant(dir: &Path, name: &str, kind: &str, statuses: &[&str]) -> String {
    let added = json_of(&admin(
        dir,
        &[
            "participant",
            "add",
            "--name",
            name,
            "--kind",
            kind,
            "--json",
        ],
    ));
    let id = added["id"].as_str().unwrap().to_string();
    for status in statuses {
        set_status(dir, &id, status);
    }
    id
}

/// `nutmeg admin participant set-status`, checked.
pub fn set_status(dir: &Path, id: &str, status: &str) {
    let moved = json_of(&admin(
        dir,
        &["participant", "set-status", id, status, "--json"],
    ));
    assert_eq!(moved["status"], *status);
}

/// What every test client is registered for; each token asks for a part of it.
pub const REGISTERED: &str = "system/*.cruds";

/// A client system of a participant, with its own key.
pub struct Client {
    pub id: String,
    pub key: SigningKey,
}

impl Client {
    pub fn register(dir: &Path, participant: &str) -> Client {
        let (key, _) = SigningKey::generate_es384().expect("key");
        let file = dir.join(format!("{}.jwks.json", key.kid()));
        std::fs::write(&file, key.jwks().to_string()).unwrap();
        let added = json_of(&admin(
            dir,
            &[
                "client",
                "add",
                "--participant",
                participant,
                "--jwks",
                file.to_str().unwrap(),
                "--scope",
                REGISTERED,
                "--json",
            ],
        ));
        Client {
            id: added["clientId"].as_str().unwrap().to_string(),
            key,
        }
    }

    /// An access token for `scope` and `purpose`, as a client system gets one.
    pub fn token(&self, server: &Server, scope: &str, purpose: &str) -> String {
        let url = server.token_url();
        let form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            (
                "client_assertion",
                self.key.assertion(&self.id, &url, now()),
            ),
            ("scope", scope.into()),
            ("purpose_of_use", purpose.into()),
        ];
        let (status, text) = post_form(&url, &form).expect("token request");
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

/// Imports a FHIR resource or Bundle (JSON text) into the database of `dir` with `nutmeg import`.
pub fn import(dir: &Path, name: &str, json: &str) {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    let out = nutmeg()
        .arg("--data-dir")
        .arg(dir)
        .args(database_args(dir))
        .args(["--log", "warn", "import"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A FHIR request with a bearer token: POST with `body`, or GET without; the status and the
/// JSON answer (`Null` when it is not JSON).
pub fn fhir(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let response = match body {
        Some(body) => agent
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/fhir+json")
            .send(body.to_string()),
        None => {
            assert_eq!(method, "GET");
            agent
                .get(url)
                .header("Authorization", &format!("Bearer {token}"))
                .call()
        }
    };
    let mut response = response.expect("HTTP");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
