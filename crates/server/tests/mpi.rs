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

    // A clinic that sent data about B's record treats the person: it reads the hospital's record
    // of her, and her `$everything` there holds both records and its own Observation.
    let clinic = participant(data, "Elm Street Clinic", "clinic", &["onboarding", "live"]);
    let clinic_ehr = Client::register(data, &clinic).token(&server, REGISTERED, "TREAT");
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{}", ids[1]) },
    });
    let (status, created) = send(
        "POST",
        &format!("{base}/Observation"),
        &clinic_ehr,
        Some(&observation),
    );
    assert_eq!(status, 201, "{created}");
    let observation_id = created["id"].as_str().unwrap().to_string();
    let (status, everything) = send(
        "GET",
        &format!("{base}/Patient/{}/$everything", ids[0]),
        &clinic_ehr,
        None,
    );
    assert_eq!(status, 200, "{everything}");
    let shown = everything.to_string();
    for id in [&ids[0], &ids[1], &observation_id] {
        assert!(shown.contains(id.as_str()), "{id} in {everything}");
    }

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
    // Two people now: the clinic no longer sees the hospital's record.
    let hospital_record = format!("{base}/Patient/{}", ids[0]);
    let (status, _) = send("GET", &hospital_record, &clinic_ehr, None);
    assert_eq!(status, 404);

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
    // Linked by another process: the server sees it within a second or so.
    let mut status = 0;
    for _ in 0..50 {
        status = send("GET", &hospital_record, &clinic_ehr, None).0;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 200, "the clinic treats the person again");
}

fn post_form(url: &str, token: &str, form: &str) -> (u16, Value) {
    let mut response = agent()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", &format!("Bearer {token}"))
        .send(form)
        .expect("HTTP");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The `(id, [ids its seealso links name])` of each entry of a searchset.
fn linked(bundle: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let links = e["resource"]["link"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["type"] == "seealso")
                .filter_map(|l| l["other"]["reference"].as_str())
                .map(|r| r.trim_start_matches("Patient/").to_string())
                .collect();
            (
                e["resource"]["id"].as_str().unwrap_or("").to_string(),
                links,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn pdqm_pix_for_operators_and_the_declared_operations_over_http() {
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
    let clinic = participant(data, "Elm Clinic", "clinic", &["onboarding", "live"]);
    let operator = participant(
        data,
        "Nutmeg Operations",
        "exchange-operator",
        &["onboarding", "live"],
    );
    let ehr = Client::register(data, &hospital).token(&server, REGISTERED, "TREAT");
    let elm = Client::register(data, &clinic).token(&server, REGISTERED, "TREAT");
    let ops = Client::register(data, &operator).token(&server, REGISTERED, "HOPERAT");
    let (status, a) = send(
        "POST",
        &format!("{base}/Patient"),
        &ehr,
        Some(&margaret("A-1042", "12 Elm Street")),
    );
    assert_eq!(status, 201, "{a}");
    let (status, b) = send(
        "POST",
        &format!("{base}/Patient"),
        &elm,
        Some(&margaret("B-77", "12 Elm St")),
    );
    assert_eq!(status, 201, "{b}");
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );

    // PDQm: the hospital treats the person (it sent one of her records): both records, each
    // linked to the other. A clinic that treats neither finds nothing, not even in the total.
    let both = {
        let mut both = vec![(a.clone(), vec![b.clone()]), (b.clone(), vec![a.clone()])];
        both.sort();
        both
    };
    let search = format!("{base}/pdqm/Patient?family=Quarrington&birthdate=1962-04-17");
    let (status, bundle) = send("GET", &search, &ehr, None);
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 2, "{bundle}");
    assert_eq!(linked(&bundle), both);
    let westside = participant(data, "Westside Clinic", "clinic", &["onboarding", "live"]);
    let west = Client::register(data, &westside).token(&server, REGISTERED, "TREAT");
    let (status, bundle) = send("GET", &search, &west, None);
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 0, "{bundle}");
    // The operator sees the person too; by POST as well.
    let (status, bundle) = send(
        "GET",
        &format!("{base}/pdqm/Patient?identifier=urn:test:mrn:A%7CA-1042"),
        &ops,
        None,
    );
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(linked(&bundle), both);
    let (status, bundle) = post_form(
        &format!("{base}/pdqm/Patient/_search"),
        &ops,
        "given=Margaret&gender=female",
    );
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 2, "{bundle}");
    assert_eq!(linked(&bundle), both);
    let (status, patient) = send("GET", &format!("{base}/pdqm/Patient/{b}"), &ops, None);
    assert_eq!(status, 200, "{patient}");
    assert_eq!(
        patient["link"][0]["other"]["reference"],
        format!("Patient/{a}")
    );
    let (status, _) = send("GET", &format!("{base}/pdqm/Patient/{b}"), &west, None);
    assert_eq!(status, 404);
    let (status, outcome) = send("GET", &format!("{base}/pdqm/Patient?famly=Q"), &ehr, None);
    assert_eq!(
        (status, &outcome["resourceType"]),
        (400, &json!("OperationOutcome")),
        "{outcome}"
    );
    // ITI-119 at the PDQm base.
    let (status, matched) = send(
        "POST",
        &format!("{base}/pdqm/Patient/$match"),
        &ops,
        Some(&json!({
            "resourceType": "Parameters",
            "parameter": [{ "name": "resource", "resource": margaret("Z-1", "12 Elm Street") }],
        })),
    );
    assert_eq!(status, 200, "{matched}");
    assert!(matched.to_string().contains(&a), "{matched}");
    // The supplier declares itself (no token needed, like /metadata).
    let mut response = agent()
        .get(&format!("{base}/pdqm/metadata"))
        .call()
        .expect("HTTP");
    assert_eq!(response.status().as_u16(), 200);
    let cs: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        cs["instantiates"][0],
        "https://profiles.ihe.net/ITI/PDQm/CapabilityStatement/IHE.PDQm.PatientDemographicsSupplier"
    );

    // PIXm with an operator token: answered (a Patient is the patient index's administrative data
    // to operators), where it used to be a 404.
    let (status, pix) = send(
        "GET",
        &format!("{base}/Patient/$ihe-pix?sourceIdentifier=urn:test:mrn:A|A-1042"),
        &ops,
        None,
    );
    assert_eq!(status, 200, "{pix}");
    assert!(pix.to_string().contains("B-77"), "{pix}");
    assert!(pix.to_string().contains(&format!("Patient/{b}")), "{pix}");

    // Every operation the CapabilityStatement declares on Patient is one the server knows (by
    // type or by instance, by GET or POST: a known one answers anything but "no operation").
    let mut response = agent()
        .get(&format!("{base}/metadata"))
        .call()
        .expect("HTTP");
    let cs: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    let operations = patient["operation"].as_array().expect("operations");
    assert!(operations.len() >= 9, "{operations:?}");
    let unknown =
        |status: u16, answer: &Value| status == 404 && answer.to_string().contains("no operation");
    for operation in operations {
        let name = operation["name"].as_str().unwrap();
        let mut known = false;
        for url in [
            format!("{base}/Patient/${name}"),
            format!("{base}/Patient/{a}/${name}"),
        ] {
            let (status, answer) = send("GET", &url, &ops, None);
            known |= !unknown(status, &answer);
            let (status, answer) = send("POST", &url, &ops, Some(&json!({})));
            known |= !unknown(status, &answer);
        }
        assert!(known, "${name} is declared but not served");
    }
    let (status, answer) = send("GET", &format!("{base}/Patient/$nonsense"), &ops, None);
    assert!(unknown(status, &answer), "{status} {answer}");
}
