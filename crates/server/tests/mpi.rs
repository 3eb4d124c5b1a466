//! The master patient index's operations end to end: the real `nutmeg serve` with SMART tokens and
//! the `nutmeg mpi` / `nutmeg admin mpi` commands on the same database. Patients a hospital posts
//! are linked to enterprise identities; an operator's token reads the link history and unlinks;
//! a participant's token is refused; `nutmeg mpi rebuild` keeps the operator's decision; PIXm
//! cross-references the identifiers. Synthetic people only.

mod common;

use common::{admin, agent, json_of, nutmeg, participant, Client, Server, REGISTERED};
use serde_json::{json, Value};

fn send(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let request = agent();
    let mut response = match body {
        Some(body) => request
            .post(url)
            .header("Content-Type", "application/fhir+json")
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
        None if method == "GET" => request
            .get(url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
        None => panic!("{method} without a body"),
    }
    .expect("HTTP");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn margaret(mrn: &str, line: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{ "system": format!("urn:test:mrn:{}", &mrn[..1]), "value": mrn }],
        "name": [{ "use": "official", "family": "Quarrington", "given": ["Margaret"] }],
        "gender": "female",
        "birthDate": "1962-04-17",
        "address": [{ "use": "home", "line": [line], "city": "Hartford", "state": "CT", "postalCode": "06105" }],
        "telecom": [{ "system": "phone", "value": "860-555-0142" }],
    })
}

fn mpi(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    nutmeg()
        .arg("--data-dir")
        .arg(dir)
        .args(["--log", "warn", "mpi"])
        .args(args)
        .output()
        .expect("run nutmeg")
}

fn lines(output: &std::process::Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn identities_over_http_and_the_command_line() {
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
    let operator = participant(
        data,
        "Nutmeg Operations",
        "exchange-operator",
        &["onboarding", "live"],
    );
    let ehr = Client::register(data, &hospital).token(&server, REGISTERED, "TREAT");
    let ops = Client::register(data, &operator).token(&server, REGISTERED, "HOPERAT");

    let mut ids = Vec::new();
    for (mrn, line) in [("A-1042", "12 Elm Street"), ("B-77", "12 Elm St")] {
        let (status, created) = send(
            "POST",
            &format!("{base}/Patient"),
            &ehr,
            Some(&margaret(mrn, line)),
        );
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let mut both = ids.clone();
    both.sort();
    // Linked as they were written: one person.
    assert_eq!(lines(&admin(data, &["mpi", "same-person", &ids[0]])), both);

    // The link history and review queue are for operators only.
    let (status, _) = send("GET", &format!("{base}/Patient/$mpi-history"), &ehr, None);
    assert_eq!(status, 403);
    let (status, history) = send(
        "GET",
        &format!("{base}/Patient/$mpi-history?patient={}", ids[1]),
        &ops,
        None,
    );
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["parameter"][0]["part"][2]["valueCode"], "link",
        "{history}"
    );
    let (status, queue) = send("GET", &format!("{base}/Patient/$mpi-review"), &ops, None);
    assert_eq!(
        (status, &queue["resourceType"]),
        (200, &json!("Parameters")),
        "{queue}"
    );

    // PIXm: the MRN at A cross-references the MRN at B (the hospital sent both).
    let (status, pix) = send(
        "GET",
        &format!("{base}/Patient/$ihe-pix?sourceIdentifier=urn:test:mrn:A|A-1042"),
        &ehr,
        None,
    );
    assert_eq!(status, 200, "{pix}");
    assert!(pix.to_string().contains("B-77"), "{pix}");

    // A participant may not unlink; an operator may, with a reason.
    let unlink = json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "patient-a", "valueReference": { "reference": format!("Patient/{}", ids[0]) } },
            { "name": "patient-b", "valueReference": { "reference": format!("Patient/{}", ids[1]) } },
            { "name": "reason", "valueString": "different people, confirmed by the clinic" },
        ],
    });
    let (status, _) = send(
        "POST",
        &format!("{base}/Patient/$mpi-unlink"),
        &ehr,
        Some(&unlink),
    );
    assert_eq!(status, 403);
    let (status, answer) = send(
        "POST",
        &format!("{base}/Patient/$mpi-unlink"),
        &ops,
        Some(&unlink),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        lines(&admin(data, &["mpi", "same-person", &ids[0]])),
        vec![ids[0].clone()]
    );

    // The batch rebuild keeps the operator's decision.
    let report = json_of(&mpi(data, &["rebuild", "--json"]));
    assert_eq!(report["patients"], 2, "{report}");
    assert_eq!(
        lines(&mpi(data, &["same-person", &ids[1]])),
        vec![ids[1].clone()]
    );
    let history = json_of(&mpi(data, &["history", "--patient", &ids[0], "--json"]));
    assert!(
        history
            .to_string()
            .contains("different people, confirmed by the clinic"),
        "{history}"
    );

    // Link them again from the command line: one person.
    let linked = mpi(
        data,
        &["link", &ids[0], &ids[1], "--reason", "the clinic was wrong"],
    );
    assert!(
        linked.status.success(),
        "{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    assert_eq!(lines(&mpi(data, &["same-person", &ids[1]])), both);
}
