//! Access control end to end: the real `nutmeg serve` with SMART tokens, participants and clients
//! registered with `nutmeg admin`, and an access matrix (participant status x scopes x purpose of
//! use x treatment relationship x resource type x interaction) with the expected answer per row,
//! asked over HTTP. Then what changes while a token is still valid: a suspension and a revocation.

mod common;

use std::collections::HashMap;

use common::{admin, agent, json_of, participant, set_status, Client, Server, REGISTERED};
use serde_json::{json, Value};

/// One row of the access matrix: participant, scopes, purpose of use, method, request, the status
/// expected and, for a search, how many matches.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    u16,
    Option<usize>,
);

struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
    let agent = agent();
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(url);
            if let Some(token) = token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            request.call()
        }
        (_, Some(body)) => {
            let mut request = agent
                .post(url)
                .header("Content-Type", "application/fhir+json");
            if let Some(token) = token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            request.send(body.to_string())
        }
        _ => panic!("unsupported request"),
    };
    let mut response = response.expect("HTTP");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        challenge,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn observation(patient: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{patient}") },
        "valueQuantity": { "value": 64, "unit": "/min" },
    })
}

/// The ids of the matches of a searchset.
fn matches(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_access_matrix_holds_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start(data, &[]);
    let base = server.base.clone();

    let hospital = participant(
        data,
        "Hartford General",
        "hospital",
        &["onboarding", "live"],
    );
    let clinic = participant(data, "Elm Street Clinic", "clinic", &["onboarding", "live"]);
    let health = participant(data, "State DPH", "public-health", &["onboarding", "live"]);
    let onboarding = participant(data, "New Valley Clinic", "clinic", &["onboarding"]);
    let clients: HashMap<&str, Client> = [
        ("hospital", Client::register(data, &hospital)),
        ("clinic", Client::register(data, &clinic)),
        ("health", Client::register(data, &health)),
        ("onboarding", Client::register(data, &onboarding)),
    ]
    .into_iter()
    .collect();

    // The hospital sends a patient and an observation: it now treats the patient; nobody else does.
    let sender = clients["hospital"].token(&server, REGISTERED, "TREAT");
    let created = call(
        "POST",
        &format!("{base}/Patient"),
        Some(&sender),
        Some(&json!({ "resourceType": "Patient", "name": [{ "family": "Okafor" }] })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let patient = created.body["id"].as_str().unwrap().to_string();
    let created = call(
        "POST",
        &format!("{base}/Observation"),
        Some(&sender),
        Some(&observation(&patient)),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let obs = created.body["id"].as_str().unwrap().to_string();

    // participant x scopes x purpose x request -> status, and for searches the matches expected.
    let read_obs = format!("Observation/{obs}");
    let read_patient = format!("Patient/{patient}");
    let search_obs = format!("Observation?patient={patient}");
    let directory = format!("Organization?_id={hospital}");
    let disclosures = format!("Patient/{patient}/$disclosures");
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // who         scopes                    purpose    method  request        status  matches
        ("hospital",   "system/*.rs",            "TREAT",   "GET",  &read_obs,      200, None),
        ("hospital",   "system/*.rs",            "TREAT",   "GET",  &read_patient,  200, None),
        ("hospital",   "system/*.rs",            "TREAT",   "GET",  &search_obs,    200, Some(1)),
        ("hospital",   "system/Patient.rs",      "TREAT",   "GET",  &read_obs,      403, None),
        ("hospital",   "system/Patient.rs",      "TREAT",   "GET",  &search_obs,    403, None),
        ("hospital",   "system/Observation.r",   "TREAT",   "GET",  &search_obs,    403, None),
        ("hospital",   "system/*.rs",            "TREAT",   "POST", "Observation",  403, None),
        ("hospital",   "system/Observation.c",   "TREAT",   "POST", "Observation",  201, None),
        ("hospital",   "system/*.rs",            "TREAT",   "GET",  "AuditEvent",   403, None),
        ("hospital",   "system/*.cruds",         "TREAT",   "POST", "AuditEvent",   403, None),
        ("hospital",   "system/*.rs",            "PUBHLTH", "GET",  &read_obs,      403, None),
        ("clinic",     "system/*.rs",            "TREAT",   "GET",  &read_obs,      404, None),
        ("clinic",     "system/*.rs",            "TREAT",   "GET",  &read_patient,  404, None),
        ("clinic",     "system/*.rs",            "TREAT",   "GET",  &search_obs,    200, Some(0)),
        ("clinic",     "system/*.rs",            "TREAT",   "GET",  "Patient?family=Okafor", 200, Some(0)),
        ("clinic",     "system/*.rs",            "ETREAT",  "GET",  &read_obs,      200, None),
        ("clinic",     "system/*.rs",            "ETREAT",  "GET",  &search_obs,    200, Some(2)),
        ("clinic",     "system/*.rs",            "TREAT",   "GET",  &directory,     200, Some(1)),
        ("health",     "system/*.rs",            "PUBHLTH", "GET",  &read_obs,      200, None),
        ("health",     "system/*.rs",            "TREAT",   "GET",  &read_obs,      404, None),
        ("onboarding", "system/*.rs",            "TREAT",   "GET",  &read_obs,      403, None),
        ("onboarding", "system/*.rs",            "ETREAT",  "GET",  &read_obs,      403, None),
        ("onboarding", "system/*.cruds",         "TREAT",   "POST", "Observation",  403, None),
        ("onboarding", "system/*.rs",            "TREAT",   "GET",  &directory,     200, Some(1)),
        ("hospital",   "system/*.rs",            "TREAT",   "GET",  &disclosures,   403, None),
    ];
    let mut tokens: HashMap<(&str, &str, &str), String> = HashMap::new();
    for (index, &(who, scopes, purpose, method, request, status, expected)) in
        rows.iter().enumerate()
    {
        let token = tokens
            .entry((who, scopes, purpose))
            .or_insert_with(|| clients[who].token(&server, scopes, purpose))
            .clone();
        let url = format!("{base}/{request}");
        let body = match request {
            "Observation" => Some(observation(&patient)),
            "AuditEvent" => Some(json!({ "resourceType": "AuditEvent" })),
            _ => None,
        };
        let answer = call(method, &url, Some(&token), body.as_ref());
        let row = format!("row {index}: {who} {scopes} {purpose} {method} {request}");
        assert_eq!(answer.status, status, "{row}: {}", answer.body);
        if status >= 400 {
            assert_eq!(answer.body["resourceType"], "OperationOutcome", "{row}");
        }
        if status == 403 {
            assert_eq!(answer.body["issue"][0]["code"], "forbidden", "{row}");
        }
        if let Some(expected) = expected {
            assert_eq!(
                matches(&answer.body).len(),
                expected,
                "{row}: {}",
                answer.body
            );
        }
    }

    // The clinic attests that it treats the patient: from then on it sees the record.
    let clinic_token = clients["clinic"].token(&server, "system/*.rs", "TREAT");
    let attested = call(
        "POST",
        &format!("{base}/Patient/{patient}/$attest-treatment"),
        Some(&clinic_token),
        Some(&json!({})),
    );
    assert_eq!(attested.status, 200, "{}", attested.body);
    assert_eq!(
        call(
            "GET",
            &format!("{base}/{read_obs}"),
            Some(&clinic_token),
            None
        )
        .status,
        200
    );

    // Without a token, or with a bad one: 401 with a challenge. The CapabilityStatement and the
    // SMART configuration need none.
    let missing = call("GET", &format!("{base}/{read_obs}"), None, None);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.challenge.as_deref(),
        Some(r#"Bearer realm="nutmeg""#)
    );
    assert_eq!(missing.body["issue"][0]["code"], "login");
    let forged = call(
        "GET",
        &format!("{base}/{read_obs}"),
        Some("nt1.e30.AAAA"),
        None,
    );
    assert_eq!(forged.status, 401);
    assert!(forged
        .challenge
        .is_some_and(|c| c.contains(r#"error="invalid_token""#)));
    assert_eq!(
        call("GET", &format!("{base}/metadata"), None, None).status,
        200
    );
    assert_eq!(
        call(
            "GET",
            &format!("{}/.well-known/smart-configuration", server.root()),
            None,
            None
        )
        .status,
        200
    );

    // Every request above is in the audit trail, and the chain verifies.
    let verified = json_of(&admin(data, &["audit", "verify", "--json"]));
    assert_eq!(verified["intact"], true, "{verified}");
    assert!(
        verified["records"].as_u64().unwrap() >= rows.len() as u64,
        "{verified}"
    );
}

/// Asks until the answer has `status` (a change made by another process holds within a second:
/// each server process trusts a participant's or client's status for that long).
fn eventually(status: u16, ask: impl Fn() -> Answer) -> Answer {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = ask();
        if answer.status == status || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_suspension_or_a_revocation_holds_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start(data, &[]);
    let base = server.base.clone();
    let hospital = participant(
        data,
        "Hartford General",
        "hospital",
        &["onboarding", "live"],
    );
    let client = Client::register(data, &hospital);
    let token = client.token(&server, REGISTERED, "TREAT");
    let url = format!("{base}/Patient");
    let patient = json!({ "resourceType": "Patient", "name": [{ "family": "Reyes" }] });
    assert_eq!(call("POST", &url, Some(&token), Some(&patient)).status, 201);

    set_status(data, &hospital, "suspended");
    let suspended_at = std::time::Instant::now();
    let refused = eventually(403, || call("POST", &url, Some(&token), Some(&patient)));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(suspended_at.elapsed() < std::time::Duration::from_secs(3));
    assert!(refused.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("suspended"));
    set_status(data, &hospital, "live");
    let back = eventually(201, || call("POST", &url, Some(&token), Some(&patient)));
    assert_eq!(back.status, 201, "{}", back.body);

    let revoked = admin(data, &["client", "revoke", &client.id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let refused = eventually(401, || {
        call("GET", &format!("{base}/Patient"), Some(&token), None)
    });
    assert_eq!(refused.status, 401);
    assert!(refused
        .challenge
        .is_some_and(|c| c.contains("invalid_token")));
}

#[test]
fn the_demo_hands_out_a_client_whose_token_opens_the_urls_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = common::nutmeg();
    command
        .args([
            "demo",
            "--patients",
            "3",
            "--seed",
            "7",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--log", "warn", "--data-dir"])
        .arg(dir.path());
    let demo = Server::spawn(command, dir.path().join("demo.log"));
    // The printed token command, run as printed (without the shell around it).
    let token_line = demo
        .lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("TOKEN=$(nutmeg "))
        .unwrap_or_else(|| panic!("no token command in {:?}", demo.lines));
    // Its arguments are separated by single spaces; the scope is quoted for the shell.
    let args: Vec<String> = token_line
        .trim_end_matches(')')
        .split(' ')
        .map(|a| a.trim_matches('\'').to_string())
        .collect();
    let output = common::nutmeg()
        .args(&args)
        .output()
        .expect("nutmeg client token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let urls: Vec<String> = demo
        .lines
        .iter()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("curl -H \"Authorization: Bearer $TOKEN\" '")
        })
        .map(|rest| rest.trim_end_matches('\'').to_string())
        .collect();
    assert_eq!(urls.len(), 4, "{:?}", demo.lines);
    for url in &urls {
        assert_eq!(
            call("GET", url, None, None).status,
            if url.ends_with("/metadata") { 200 } else { 401 }
        );
        let answer = call("GET", url, Some(&token), None);
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
        if answer.body["resourceType"] == "Bundle" {
            assert!(
                !matches(&answer.body).is_empty(),
                "{url} found nothing: {}",
                answer.body
            );
        }
    }
}
