//! Consent end to end over HTTP against the running binary: a participant records a patient's
//! opt-out through the FHIR API, after which the patient is withheld like one never heard of; the
//! CDS Hooks style consent decision service (`GET /cds-services`,
//! `POST /cds-services/patient-consent-consult`) answers the decision, its obligations and the
//! consents used.

mod common;

use common::{agent, participant, Client, Server};
use serde_json::{json, Value};

fn call(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let agent = agent();
    let auth = format!("Bearer {token}");
    let response = match body {
        None if method == "GET" => agent.get(url).header("Authorization", &auth).call(),
        Some(body) if method == "POST" => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        Some(body) => agent
            .put(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/fhir+json")
            .send(body.to_string()),
        None => panic!("unsupported"),
    };
    let mut response = response.expect("HTTP");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn consult(server: &Server, token: &str, patient: &str, content: Option<Value>) -> (u16, Value) {
    let mut context = json!({"patientId": patient});
    if let Some(content) = content {
        context["content"] = content;
    }
    call(
        "POST",
        &format!("{}/cds-services/patient-consent-consult", server.root()),
        token,
        Some(
            &json!({"hook": "patient-consent-consult", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": context}),
        ),
    )
}

#[test]
fn an_opt_out_recorded_over_http_holds_and_the_consult_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start(data, &[]);
    let base = server.base.clone();
    let clinic = participant(data, "Elm Street Clinic", "clinic", &["onboarding", "live"]);
    let client = Client::register(data, &clinic);
    let token = client.token(&server, "system/*.cruds", "TREAT");

    let (status, services) = call(
        "GET",
        &format!("{}/cds-services", server.root()),
        &token,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(services["services"][0]["id"], "patient-consent-consult");

    // A participant creates with POST (update-as-create is the exchange's tools' only).
    let patient = json!({"resourceType": "Patient", "id": "pc1", "name": [{"family": "Quill"}], "birthDate": "1975-05-05"});
    let (status, refused) = call(
        "PUT",
        &format!("{base}/Patient/pc1"),
        &token,
        Some(&patient),
    );
    assert_eq!(status, 405, "{refused}");
    assert!(refused["issue"][0]["diagnostics"]
        .as_str()
        .is_some_and(|d| d.contains("POST Patient")));
    let (status, created) = call("POST", &format!("{base}/Patient"), &token, Some(&patient));
    assert_eq!(status, 201, "{created}");
    let pid = created["id"].as_str().expect("id").to_string();
    let sud = json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
        "subject": {"reference": format!("Patient/{pid}")}});
    let (status, _) = call("POST", &format!("{base}/Condition"), &token, Some(&sud));
    assert_eq!(status, 201);

    // Normal data: permitted (the clinic sent data about the patient: a treatment relationship).
    let (status, answer) = consult(&server, &token, &format!("Patient/{pid}"), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["cards"][0]["summary"], "CONSENT_PERMIT");
    // Part 2 data: no Part 2 consent, denied; reasons are for operators only.
    let (_, answer) = consult(&server, &token, &pid, Some(sud.clone()));
    assert_eq!(answer["cards"][0]["extension"]["decision"], "deny");
    assert!(answer["cards"][0]["extension"]["decisions"][0]["reasons"].is_null());

    // The patient opts out; the clinic records it on their behalf.
    let opt_out = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")}, "dateTime": "2026-01-10T09:00:00Z",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}});
    let (status, body) = call("POST", &format!("{base}/Consent"), &token, Some(&opt_out));
    assert_eq!(status, 201, "{body}");
    let consent_id = body["id"].as_str().expect("id").to_string();

    // The consult denies, and answers exactly as for a patient never heard of: it names no
    // consent and does not say that she opted out (or that the exchange knows her).
    let (status, answer) = consult(&server, &token, &pid, None);
    assert_eq!(status, 200);
    assert_eq!(answer["cards"][0]["summary"], "CONSENT_DENY", "{answer}");
    let (status, never) = consult(&server, &token, "never-was", None);
    assert_eq!(status, 200);
    // (each card has a fresh uuid)
    let without_uuid = |mut a: Value| {
        a["cards"][0]["uuid"] = Value::Null;
        a
    };
    assert_eq!(without_uuid(answer.clone()), without_uuid(never));
    assert!(!answer.to_string().contains(&consent_id), "{answer}");

    // Withheld like a patient never heard of.
    let (known, known_body) = call("GET", &format!("{base}/Patient/{pid}"), &token, None);
    let (never, never_body) = call("GET", &format!("{base}/Patient/never-was"), &token, None);
    assert_eq!((known, &known_body), (never, &never_body));
    let (_, found) = call(
        "GET",
        &format!("{base}/Patient?family=Quill&_summary=count"),
        &token,
        None,
    );
    assert_eq!(found["total"], 0);

    // A consult that claims another purpose than the token's is refused.
    let (status, _) = call(
        "POST",
        &format!("{}/cds-services/patient-consent-consult", server.root()),
        &token,
        Some(
            &json!({"hook": "patient-consent-consult", "context": {"patientId": pid, "purposeOfUse": ["PUBHLTH"]}}),
        ),
    );
    assert_eq!(status, 400);
}
