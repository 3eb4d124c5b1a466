//! `nutmeg admin participant`: the real binary on a temporary database, as a set-up script would use
//! it (`--json` output parsed, exit codes checked).

use std::process::{Command, Output};

use serde_json::Value;

const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

/// Runs `nutmeg --data-dir DIR admin participant ARGS...` with no configuration from the environment.
fn admin(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(NUTMEG);
    for (name, _) in std::env::vars() {
        if name.starts_with("NUTMEG_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["--log", "warn", "admin", "participant"])
        .args(args)
        .output()
        .expect("run nutmeg")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document on stdout")
}

#[test]
fn participants_are_added_listed_shown_and_moved_along_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let hospital = json(&admin(
        dir,
        &[
            "add",
            "--name",
            "Hartford General",
            "--kind",
            "hospital",
            "--npi",
            "1234567893",
            "--tax-id",
            "06-1234567",
            "--licence",
            "ct:HOSP-77",
            "--ehr",
            "Epic",
            "--json",
        ],
    ));
    assert_eq!(hospital["status"], "applied");
    assert_eq!(hospital["kind"], "hospital");
    assert_eq!(hospital["licence"]["state"], "CT");
    let id = hospital["id"].as_str().unwrap();

    let therapist = json(&admin(
        dir,
        &[
            "add",
            "--name",
            "Riverside Family Therapy",
            "--kind",
            "solo-practice",
            "--practitioner-given",
            "Jane",
            "--practitioner-family",
            "Doe",
            "--licence-type",
            "lmft",
            "--practitioner-licence",
            "CT:LMFT.001234",
            "--json",
        ],
    ));
    assert_eq!(therapist["kind"], "solo-practice");
    // Its practitioner, whom a clinician's account can be linked to; another participant's
    // account cannot claim them.
    let shown = json(&admin(
        dir,
        &["show", therapist["id"].as_str().unwrap(), "--json"],
    ));
    let practitioner = shown["practitioners"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(shown["practitioners"][0]["name"][0]["family"], "Doe");
    let password = dir.join("password.txt");
    std::fs::write(&password, "a long clinician password\n").unwrap();
    let user_add = |login: &str, participant: &str| {
        let mut command = Command::new(NUTMEG);
        for (name, _) in std::env::vars() {
            if name.starts_with("NUTMEG_") {
                command.env_remove(name);
            }
        }
        command.arg("--data-dir").arg(dir).args([
            "--log",
            "warn",
            "admin",
            "user",
            "add",
            "--password-file",
            password.to_str().unwrap(),
            "--login",
            login,
            "--name",
            "Jane Doe",
            "--role",
            "clinician",
            "--participant",
            participant,
            "--practitioner",
            &practitioner,
            "--json",
        ]);
        command.output().expect("run nutmeg")
    };
    let linked = json(&user_add("jane", therapist["id"].as_str().unwrap()));
    assert_eq!(linked["practitioner"], practitioner.as_str());
    let refused = user_add("impostor", id);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not joined to participant"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let moved = json(&admin(dir, &["set-status", id, "onboarding", "--json"]));
    assert_eq!(moved["status"], "onboarding");
    let refused = admin(dir, &["set-status", id, "applied"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("onboarding cannot become applied"));

    let listed = json(&admin(dir, &["list", "--json"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Hartford General", "Riverside Family Therapy"]);
    let onboarding = json(&admin(dir, &["list", "--status", "onboarding", "--json"]));
    assert_eq!(onboarding.as_array().unwrap().len(), 1);
    let endpoint = json(&admin(
        dir,
        &[
            "add-endpoint",
            id,
            "--kind",
            "mllp",
            "--address",
            "mllp://interface.example.org:2575",
            "--json",
        ],
    ));
    let shown = json(&admin(dir, &["show", id, "--json"]));
    assert_eq!(shown["status"], "onboarding");
    assert_eq!(shown["endpoints"][0]["id"], endpoint["id"]);
    assert_eq!(shown["endpoints"][0]["kind"], "hl7v2-mllp");
    assert_eq!(
        shown["endpoints"][0]["address"],
        "mllp://interface.example.org:2575"
    );
    let bad = admin(
        dir,
        &["add-endpoint", id, "--kind", "fhir", "--address", "ftp://x"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("https://"));

    // The readable form: one line per participant.
    let text = admin(dir, &["list"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("onboarding") && text.contains("Hartford General"));
}

#[test]
fn a_refused_registration_says_why_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = admin(
        dir.path(),
        &[
            "add",
            "--name",
            "Bad Clinic",
            "--kind",
            "clinic",
            "--npi",
            "1234567890",
            "--licence",
            "ZZ:1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("npi: not a valid NPI"), "{err}");
    assert!(err.contains("licence: the state must be"), "{err}");
    let unknown = admin(dir.path(), &["show", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(1));
    // A malformed licence is a usage error (clap), exit 2.
    let usage = admin(
        dir.path(),
        &["add", "--name", "X", "--kind", "lab", "--licence", "CT-1"],
    );
    assert_eq!(usage.status.code(), Some(2));
}

/// Appends `n` synthetic audit records to the database in `dir` through the store.
fn append_audit(dir: &std::path::Path, n: usize) {
    let url = format!("sqlite://{}", dir.join("nutmeg.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = store::Store::open(&url).await.unwrap();
        let records = (0..n)
            .map(|i| store::NewAuditRecord {
                recorded: 1_700_000_000_000 + i as i64,
                json: format!(r#"{{"resourceType":"AuditEvent","id":"a{i}"}}"#),
                index: Vec::new(),
            })
            .collect();
        store.append_audit(records).await.unwrap();
    });
}

#[test]
fn audit_verify_names_the_first_record_that_was_tampered_with() {
    let dir = tempfile::tempdir().unwrap();
    let audit = |json: bool| {
        let mut command = Command::new(NUTMEG);
        command
            .env_remove("NUTMEG_DATABASE")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--log", "warn", "admin", "audit", "verify"]);
        if json {
            command.arg("--json");
        }
        command.output().expect("run nutmeg")
    };
    // An empty trail verifies.
    let empty = json(&audit(true));
    assert_eq!(
        (empty["intact"].clone(), empty["records"].clone()),
        (true.into(), 0.into())
    );

    append_audit(dir.path(), 5);
    let intact = json(&audit(true));
    assert_eq!(intact["records"], 5);
    assert_eq!(intact["head"].as_str().unwrap().len(), 64);

    // An attacker with the files edits record 3 in the log (on SQLite a file of its own).
    let log = dir.path().join("nutmeg-audit.log");
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(text.matches(r#""id":"a2""#).count(), 1);
    std::fs::write(&log, text.replace(r#""id":"a2""#, r#""id":"zz""#)).unwrap();
    let broken = audit(true);
    assert_eq!(broken.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(verdict["intact"], false);
    assert_eq!(verdict["record"], 3);
    assert_eq!(verdict["verified"], 2);
    let text = audit(false);
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stdout).contains("audit record 3 was changed"));
}

#[test]
fn audit_verify_with_a_head_kept_earlier_sees_records_cut_off_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let verify = |args: &[&str]| {
        Command::new(NUTMEG)
            .env_remove("NUTMEG_DATABASE")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--log", "warn", "admin", "audit", "verify", "--json"])
            .args(args)
            .output()
            .expect("run nutmeg")
    };
    append_audit(dir.path(), 3);
    let kept = json(&verify(&[]))["head"].as_str().unwrap().to_string();
    append_audit(dir.path(), 2);
    let later = json(&verify(&[]))["head"].as_str().unwrap().to_string();
    let still = json(&verify(&["--expect-head", &kept]));
    assert_eq!(still["expectedHeadRecord"], 3);

    // Cutting records off the end of the log file, and of its searchable copy, leaves a chain
    // that verifies on its own...
    let log = dir.path().join("nutmeg-audit.log");
    let bytes = std::fs::read(&log).unwrap();
    let kept: usize = bytes
        .split_inclusive(|b| *b == b'\n')
        .take(3)
        .map(<[u8]>::len)
        .sum();
    let third =
        std::str::from_utf8(bytes.split_inclusive(|b| *b == b'\n').nth(2).unwrap()).unwrap();
    let header: Value = serde_json::from_str(&third[..third.find("} ").unwrap() + 1]).unwrap();
    let kept_head = header["hash"].as_str().unwrap().to_string();
    std::fs::write(&log, &bytes[..kept]).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("nutmeg-audit.db")).unwrap();
    db.execute_batch(&format!(
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq > 3; \
         UPDATE audit_copied SET seq = 3, hash = '{kept_head}', file_offset = {kept};"
    ))
    .unwrap();
    assert_eq!(json(&verify(&[]))["records"], 3);
    // ...but not the head kept before the cut.
    let cut = verify(&["--expect-head", &later]);
    assert_eq!(cut.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&cut.stdout).unwrap();
    assert_eq!(verdict["intact"], false);
    assert_eq!(verdict["expectedHeadRecord"], Value::Null);
    let bad = verify(&["--expect-head", "not-a-hash"]);
    assert_eq!(bad.status.code(), Some(2));
}
