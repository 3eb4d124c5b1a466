//! `POST /fhir/Patient/$match` end to end: the real `nutmeg serve` with SMART tokens. A hospital's
//! patient is found from a misspelt nickname; a clinic without a treatment relationship gets the
//! answer it would get about nobody; bad bodies are 4xx OperationOutcomes; the CapabilityStatement
//! lists the operation. Synthetic people only.

mod common;

use common::{agent, participant, Client, Server, REGISTERED};
use serde_json::{json, Value};

fn post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut response = agent()
        .post(url)
        .header("Content-Type", "application/fhir+json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(body.to_string())
        .expect("HTTP");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ask(patient: Value, count: Option<i64>) -> Value {
    let mut parameter = vec![json!({ "name": "resource", "resource": patient })];
    if let Some(n) = count {
        parameter.push(json!({ "name": "count", "valueInteger": n }));
    }
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

/// An answer without what differs between any two (its id and time).
fn substance(bundle: &Value) -> Value {
    let mut b = bundle.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    b
}

#[test]
fn patient_match_over_http() {
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
    let sender = Client::register(data, &hospital).token(&server, REGISTERED, "TREAT");
    let stranger = Client::register(data, &clinic).token(&server, REGISTERED, "TREAT");

    let mut ids = Vec::new();
    for (given, family, gender, birth) in [
        ("Margaret", "Quarrington", "female", "1962-04-17"),
        ("Robert", "Quarrington", "male", "1962-09-02"),
        ("Alice", "Brennan", "female", "1980-01-05"),
    ] {
        let (status, created) = post(
            &format!("{base}/Patient"),
            &sender,
            &json!({
                "resourceType": "Patient",
                "name": [{ "family": family, "given": [given] }],
                "gender": gender,
                "birthDate": birth,
                "address": [{ "line": ["12 Elm Street"], "city": "Hartford", "postalCode": "06105" }],
            }),
        );
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let peggy = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Quarington", "given": ["Peggy"] }],
        "gender": "female",
        "birthDate": "1962-04-17",
    });
    let url = format!("{base}/Patient/$match");

    let (status, bundle) = post(&url, &sender, &ask(peggy.clone(), Some(5)));
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["type"], "searchset");
    let first = &bundle["entry"][0];
    assert_eq!(first["resource"]["id"], ids[0].as_str(), "{bundle}");
    assert_eq!(first["search"]["mode"], "match");
    let grade = first["search"]["extension"][0]["valueCode"]
        .as_str()
        .unwrap_or_default();
    assert!(["certain", "probable"].contains(&grade), "{bundle}");
    assert_eq!(
        first["search"]["extension"][0]["url"],
        "http://hl7.org/fhir/StructureDefinition/match-grade"
    );

    // The clinic does not treat her: the answer is the one about nobody.
    let (status, hidden) = post(&url, &stranger, &ask(peggy, Some(5)));
    assert_eq!(status, 200, "{hidden}");
    let nobody = json!({
        "resourceType": "Patient",
        "name": [{ "family": "Xanthopoulou", "given": ["Zephyrine"] }],
        "birthDate": "1999-09-09",
    });
    let (status, absent) = post(&url, &stranger, &ask(nobody, Some(5)));
    assert_eq!(status, 200);
    assert_eq!(substance(&hidden), substance(&absent));
    assert_eq!(hidden["total"], 0);

    // Bad bodies are 4xx with an OperationOutcome.
    for body in [
        json!({ "resourceType": "Parameters" }),
        json!({ "resourceType": "Observation" }),
        ask(
            json!({ "resourceType": "Patient", "birthDate": "someday" }),
            None,
        ),
    ] {
        let (status, outcome) = post(&url, &sender, &body);
        assert!((400..500).contains(&status), "{body}: {status}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    let (status, _) = post(&format!("{base}/Patient/$nothing"), &sender, &json!({}));
    assert_eq!(status, 404);

    let mut response = agent().get(&format!("{base}/metadata")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("OperationDefinition/Patient-match"));
}
