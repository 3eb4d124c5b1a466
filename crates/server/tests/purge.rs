//! `nutmeg admin consent purge`: the real binary on a temporary database. Data imported for a
//! patient who opted out stays through the window, a dry run only reports, the run removes it
//! (counts per patient, never content), the audit chain still verifies, and a second run finds
//! nothing. And `nutmeg serve` runs the same purge on its own, every `--purge-interval` seconds.

mod common;

use std::process::{Command, Output};

use serde_json::{json, Value};

const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

fn nutmeg(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(NUTMEG);
    for (name, _) in std::env::vars() {
        if name.starts_with("NUTMEG_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["--log", "warn"])
        .args(args)
        .output()
        .expect("run nutmeg")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document on stdout")
}

fn put(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

#[test]
fn the_purge_command_removes_an_opted_out_patients_data_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        put(json!({"resourceType": "Patient", "id": "cli-p", "name": [{"family": "Vale"}], "birthDate": "1960-03-03"})),
        put(json!({"resourceType": "Observation", "id": "cli-o", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/cli-p"}})),
        put(json!({"resourceType": "Patient", "id": "cli-keep", "name": [{"family": "Stay"}]})),
        put(json!({"resourceType": "Consent", "id": "cli-c", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/cli-p"},
            "dateTime": "2026-01-09T10:00:00Z",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}})),
    ]});
    let file = dir.join("bundle.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let imported = nutmeg(dir, &["import", file.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let purge = |args: &[&str]| {
        let mut all = vec!["admin", "consent", "purge", "--json"];
        all.extend_from_slice(args);
        json_of(&nutmeg(dir, &all))
    };

    let early = purge(&["--now", "2026-01-15T10:00:00Z"]);
    assert_eq!(early["persons"][0]["patients"], json!(["cli-p"]));
    assert_eq!(early["persons"][0]["is_due"], false);
    assert_eq!(early["persons"][0]["due"], "2026-01-16T10:00:00Z");

    let dry = purge(&["--now", "2026-01-16T10:00:01Z", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["persons"][0]["resources"],
        json!({"Observation": 1, "Patient": 1})
    );

    let done = purge(&["--now", "2026-01-16T10:00:01Z"]);
    assert_eq!(
        done["persons"][0]["resources"],
        json!({"Observation": 1, "Patient": 1})
    );
    assert_eq!(done["persons"][0]["versions"], 2);
    let text = done.to_string();
    assert!(!text.contains("Vale") && !text.contains("cli-o"), "{text}");

    let again = purge(&["--now", "2026-01-16T10:00:01Z"]);
    assert_eq!(again["persons"][0]["resources"], json!({}));

    // A readable report too.
    let plain = nutmeg(
        dir,
        &["admin", "consent", "purge", "--now", "2026-01-16T10:00:01Z"],
    );
    let plain = String::from_utf8_lossy(&plain.stdout).to_string();
    assert!(plain.contains("patients cli-p"), "{plain}");
    assert!(plain.contains("purged 0 resources in all"), "{plain}");

    let verified = json_of(&nutmeg(dir, &["admin", "audit", "verify", "--json"]));
    assert_eq!(verified["intact"], true);

    let bad = nutmeg(dir, &["admin", "consent", "purge", "--now", "next tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
}

#[test]
fn the_server_purges_on_its_own_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Opted out in January: the five business days are long past.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        put(json!({"resourceType": "Patient", "id": "srv-p", "name": [{"family": "Quarrington"}]})),
        put(json!({"resourceType": "Observation", "id": "srv-o", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/srv-p"}})),
        put(json!({"resourceType": "Patient", "id": "srv-keep", "name": [{"family": "Stay"}]})),
        put(json!({"resourceType": "Consent", "id": "srv-c", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/srv-p"},
            "dateTime": "2026-01-09T10:00:00Z",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}})),
    ]});
    let file = dir.join("bundle.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let imported = nutmeg(dir, &["import", file.to_str().unwrap()]);
    assert!(imported.status.success());
    let due = || {
        json_of(&nutmeg(
            dir,
            &["admin", "consent", "purge", "--json", "--dry-run"],
        ))
    };
    assert_eq!(
        due()["persons"][0]["resources"],
        json!({"Observation": 1, "Patient": 1}),
        "due, not yet purged"
    );

    let server = common::Server::start(dir, &["--purge-interval", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if due()["persons"][0]["resources"] == json!({}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not purge within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    drop(server);
    let verified = json_of(&nutmeg(dir, &["admin", "audit", "verify", "--json"]));
    assert_eq!(verified["intact"], true);
    // The log says a purge ran, and nothing about the patient.
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("purge"), "{log}");
    assert!(
        !log.contains("Quarrington") && !log.contains("srv-p"),
        "{log}"
    );
    // The other patient is untouched.
    let db = rusqlite::Connection::open(dir.join("nutmeg.db")).unwrap();
    let kept: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM resources WHERE id = 'srv-keep'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1);
    let gone: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM resources WHERE id IN ('srv-p', 'srv-o')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(gone, 0);
}
