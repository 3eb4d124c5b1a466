//! The FHIR REST API in-process: every interaction, its headers, and every kind of bad input, which
//! must answer a 4xx with an OperationOutcome (never a 5xx or a panic).

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use server::config::Config;
use server::http::{app_with, AppState};
use server::metrics::Metrics;
use tower::ServiceExt;

const BASE: &str = "http://nutmeg.test/fhir";

struct App {
    router: Router,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn is_outcome(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("application/fhir+json"))
            && self.json()["resourceType"] == "OperationOutcome"
    }
}

async fn start() -> App {
    start_with(|_| {}, Router::new()).await
}

async fn start_with(tweak: impl FnOnce(&mut Config), extra: Router<server::http::Shared>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config::for_database(format!("sqlite://{}", dir.path().join("api.db").display()));
    config.base_url = Some(BASE.into());
    tweak(&mut config);
    let repo = server::serve::open_repository(&config, BASE).await.unwrap();
    let smart = server::http::smart::Smart::open(repo.store(), BASE)
        .await
        .unwrap();
    let state = AppState {
        onboarding: exchange::onboarding::Onboarding::new(repo.clone(), Default::default()),
        repo,
        metrics: Metrics::new(),
        max_body: config.max_body,
        smart: std::sync::Arc::new(smart),
        direct: None,
        mandate: config.mandate.clone(),
    };
    App {
        router: app_with(state, extra),
        _dir: dir,
    }
}

impl App {
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        let has_type = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !has_type {
            request = request.header("content-type", "application/fhir+json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call("GET", uri, &[], "").await
    }

    async fn create(&self, resource: Value) -> (String, Answer) {
        let ty = resource["resourceType"].as_str().unwrap().to_string();
        let answer = self
            .call("POST", &format!("/fhir/{ty}"), &[], &resource.to_string())
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        let id = answer.json()["id"].as_str().unwrap().to_string();
        (id, answer)
    }
}

fn patient(family: &str) -> Value {
    json!({ "resourceType": "Patient", "name": [{ "family": family, "given": ["Alex"] }], "birthDate": "1980-05-01" })
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or(""),
                        e["resource"]["id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn metadata_is_a_capability_statement() {
    let app = start().await;
    let answer = app.get("/fhir/metadata").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    assert_eq!(answer.json()["resourceType"], "CapabilityStatement");
}

#[tokio::test]
async fn create_read_vread_with_version_headers() {
    let app = start().await;
    let (id, created) = app.create(patient("Okafor")).await;
    assert_eq!(created.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(
        created.header("location"),
        Some(format!("{BASE}/Patient/{id}/_history/1"))
    );
    assert!(created.header("last-modified").unwrap().ends_with(" GMT"));

    let read = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
    assert!(read.header("last-modified").is_some());
    assert_eq!(read.json()["name"][0]["family"], "Okafor");

    let unchanged = app
        .call(
            "GET",
            &format!("/fhir/Patient/{id}"),
            &[("if-none-match", "W/\"1\"")],
            "",
        )
        .await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.text.is_empty());
    let changed = app
        .call(
            "GET",
            &format!("/fhir/Patient/{id}"),
            &[("if-none-match", "W/\"0\"")],
            "",
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);

    let vread = app.get(&format!("/fhir/Patient/{id}/_history/1")).await;
    assert_eq!(vread.status, StatusCode::OK);
    assert_eq!(vread.json()["meta"]["versionId"], "1");
    let missing = app.get(&format!("/fhir/Patient/{id}/_history/9")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.is_outcome());
}

/// `_summary` and `_elements` shape a read and a vread as they shape search results.
#[tokio::test]
async fn read_with_summary_and_elements() {
    let app = start().await;
    let mut resource = patient("Summers");
    resource["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Summers</div>" });
    resource["maritalStatus"] = json!({ "text": "married" });
    let (id, _) = app.create(resource).await;
    let subsetted = |v: &Value| {
        v["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
    };

    let summary = app.get(&format!("/fhir/Patient/{id}?_summary=true")).await;
    assert_eq!(summary.status, StatusCode::OK);
    let body = summary.json();
    assert_eq!(body["name"][0]["family"], "Summers");
    assert_eq!(body["birthDate"], "1980-05-01");
    assert!(body.get("text").is_none() && body.get("maritalStatus").is_none());
    assert!(subsetted(&body));

    let elements = app
        .get(&format!(
            "/fhir/Patient/{id}/_history/1?_elements=maritalStatus"
        ))
        .await;
    let body = elements.json();
    assert_eq!(body["maritalStatus"]["text"], "married");
    assert!(body.get("name").is_none() && body.get("birthDate").is_none());
    assert_eq!(body["id"], id.as_str());
    assert!(subsetted(&body));

    let text = app
        .get(&format!("/fhir/Patient/{id}?_summary=text"))
        .await
        .json();
    assert!(text.get("text").is_some() && text.get("name").is_none());

    let whole = app
        .get(&format!("/fhir/Patient/{id}?_summary=false"))
        .await
        .json();
    assert!(whole.get("text").is_some() && whole.get("maritalStatus").is_some());
    assert!(!subsetted(&whole));

    let count = app.get(&format!("/fhir/Patient/{id}?_summary=count")).await;
    assert_eq!(count.status, StatusCode::BAD_REQUEST);
    assert!(count.is_outcome());
    let bad = app.get(&format!("/fhir/Patient/{id}?_summary=maybe")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Checked before a conditional read is answered, too: a bad request is not "not modified".
    let conditional = app
        .call(
            "GET",
            &format!("/fhir/Patient/{id}?_summary=maybe"),
            &[("if-none-match", "W/\"1\"")],
            "",
        )
        .await;
    assert_eq!(conditional.status, StatusCode::BAD_REQUEST);
    assert!(conditional.is_outcome());
}

#[tokio::test]
async fn update_with_if_match_and_update_as_create() {
    let app = start().await;
    let (id, _) = app.create(patient("Lindqvist")).await;
    let mut body = patient("Lindqvist-Berg");
    body["id"] = json!(id);
    let uri = format!("/fhir/Patient/{id}");
    let updated = app
        .call("PUT", &uri, &[("if-match", "W/\"1\"")], &body.to_string())
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.header("etag").as_deref(), Some("W/\"2\""));

    let stale = app
        .call("PUT", &uri, &[("if-match", "W/\"1\"")], &body.to_string())
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.is_outcome());

    let mut fresh = patient("Nakamura");
    fresh["id"] = json!("chosen-by-client");
    let created = app
        .call(
            "PUT",
            "/fhir/Patient/chosen-by-client",
            &[],
            &fresh.to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.header("location").as_deref(),
        Some(format!("{BASE}/Patient/chosen-by-client/_history/1").as_str())
    );
}

#[tokio::test]
async fn conditional_create_update_and_delete() {
    let app = start().await;
    let mut body = patient("Haddad");
    body["identifier"] = json!([{ "system": "urn:test:mrn", "value": "77" }]);
    let condition = [("if-none-exist", "identifier=urn:test:mrn|77")];
    let first = app
        .call("POST", "/fhir/Patient", &condition, &body.to_string())
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let second = app
        .call("POST", "/fhir/Patient", &condition, &body.to_string())
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json()["id"], first.json()["id"]);

    body["gender"] = json!("female");
    let updated = app
        .call(
            "PUT",
            "/fhir/Patient?identifier=urn:test:mrn%7C77",
            &[],
            &body.to_string(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.json()["gender"], "female");
    assert_eq!(updated.json()["id"], first.json()["id"]);

    let deleted = app
        .call(
            "DELETE",
            "/fhir/Patient?identifier=urn:test:mrn%7C77",
            &[],
            "",
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.status);
    let id = first.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}")).await.status,
        StatusCode::GONE
    );

    let unconditional = app.call("DELETE", "/fhir/Patient", &[], "").await;
    assert_eq!(unconditional.status, StatusCode::BAD_REQUEST);
    assert!(unconditional.is_outcome());
}

#[tokio::test]
async fn json_patch() {
    let app = start().await;
    let (id, _) = app.create(patient("Moreau")).await;
    let uri = format!("/fhir/Patient/{id}");
    let patch =
        json!([{ "op": "replace", "path": "/birthDate", "value": "1981-06-02" }]).to_string();
    let patched = app
        .call(
            "PATCH",
            &uri,
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", "W/\"1\""),
            ],
            &patch,
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json()["birthDate"], "1981-06-02");
    assert_eq!(patched.header("etag").as_deref(), Some("W/\"2\""));

    let wrong_type = app
        .call(
            "PATCH",
            &uri,
            &[("content-type", "application/fhir+json")],
            &patch,
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(wrong_type.is_outcome());
}

#[tokio::test]
async fn delete_keeps_history_and_reads_410() {
    let app = start().await;
    let (id, _) = app.create(patient("Ivanova")).await;
    let uri = format!("/fhir/Patient/{id}");
    let deleted = app.call("DELETE", &uri, &[], "").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get(&uri).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert!(gone.is_outcome());
    let history = app.get(&format!("{uri}/_history")).await;
    assert_eq!(history.status, StatusCode::OK);
    let bundle = history.json();
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
}

#[tokio::test]
async fn history_at_every_level() {
    let app = start().await;
    for family in ["Adeyemi", "Baptiste", "Castillo"] {
        app.create(patient(family)).await;
    }
    let (obs, _) = app
        .create(json!({ "resourceType": "Observation", "status": "final", "code": { "text": "pulse" } }))
        .await;
    let by_type = app.get("/fhir/Patient/_history").await.json();
    assert_eq!(by_type["entry"].as_array().unwrap().len(), 3);
    let system = app.get("/fhir/_history?_count=2").await.json();
    assert_eq!(system["entry"].as_array().unwrap().len(), 2);
    assert!(system["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));
    let since = app
        .get("/fhir/_history?_since=2999-01-01T00:00:00Z")
        .await
        .json();
    assert!(since["entry"].as_array().is_none_or(Vec::is_empty));
    let instance = app.get(&format!("/fhir/Observation/{obs}/_history")).await;
    assert_eq!(instance.json()["entry"].as_array().unwrap().len(), 1);
    let bad = app.get("/fhir/_history?_since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.is_outcome());
}

#[tokio::test]
async fn search_by_get_and_post_and_handling() {
    let app = start().await;
    let (wanted, _) = app.create(patient("Fitzgerald")).await;
    app.create(patient("Gonzaga")).await;
    let found = app.get("/fhir/Patient?family=fitz").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(ids(&found.json()), vec![format!("Patient/{wanted}")]);

    let posted = app
        .call(
            "POST",
            "/fhir/Patient/_search",
            &[("content-type", "application/x-www-form-urlencoded")],
            "family=Fitzgerald",
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text);
    assert_eq!(ids(&posted.json()), vec![format!("Patient/{wanted}")]);

    let lenient = app.get("/fhir/Patient?family=Fitzgerald&shoe-size=9").await;
    assert_eq!(lenient.status, StatusCode::OK);
    let entries = lenient.json()["entry"].as_array().unwrap().clone();
    assert!(entries
        .iter()
        .any(|e| e["resource"]["resourceType"] == "OperationOutcome"));

    let strict = app
        .call(
            "GET",
            "/fhir/Patient?family=Fitzgerald&shoe-size=9",
            &[("prefer", "handling=strict")],
            "",
        )
        .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert!(strict.is_outcome());
}

#[tokio::test]
async fn transaction_is_atomic_and_batch_reports_each_entry() {
    let app = start().await;
    let good = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:7f1b2a9e-0000-4000-8000-000000000001", "resource": patient("Kowalski"),
              "request": { "method": "POST", "url": "Patient" } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "weight" },
                            "subject": { "reference": "urn:uuid:7f1b2a9e-0000-4000-8000-000000000001" } },
              "request": { "method": "POST", "url": "Observation" } }
        ]
    });
    let answer = app.call("POST", "/fhir", &[], &good.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["type"], "transaction-response");

    let bad = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": patient("Nowak"), "request": { "method": "POST", "url": "Patient" } },
            { "resource": { "resourceType": "Patient", "birthDate": "not-a-date" },
              "request": { "method": "POST", "url": "Patient" } }
        ]
    });
    let rejected = app.call("POST", "/fhir", &[], &bad.to_string()).await;
    assert!(rejected.status.is_client_error(), "{}", rejected.status);
    assert!(rejected.is_outcome());
    let nowak = app.get("/fhir/Patient?family=Nowak").await.json();
    assert!(
        ids(&nowak).is_empty(),
        "nothing of a rejected transaction is stored"
    );

    let mut batch = bad.clone();
    batch["type"] = json!("batch");
    let answer = app.call("POST", "/fhir", &[], &batch.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let entries = answer.json()["entry"].as_array().unwrap().clone();
    assert!(entries[0]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("201"));
    assert!(entries[1]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("4"));
}

#[tokio::test]
async fn patient_everything() {
    let app = start().await;
    let (id, _) = app.create(patient("Osei")).await;
    app.create(
        json!({ "resourceType": "Observation", "status": "final", "code": { "text": "bp" },
                       "subject": { "reference": format!("Patient/{id}") } }),
    )
    .await;
    let answer = app.get(&format!("/fhir/Patient/{id}/$everything")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let found = ids(&answer.json());
    assert!(found.contains(&format!("Patient/{id}")));
    assert_eq!(found.len(), 2, "{found:?}");
    let other_type = app
        .get(&format!("/fhir/Observation/{id}/$everything"))
        .await;
    assert_eq!(other_type.status, StatusCode::NOT_FOUND);
    assert!(other_type.is_outcome());
}

#[tokio::test]
async fn prefer_return() {
    let app = start().await;
    let body = patient("Svensson").to_string();
    let minimal = app
        .call(
            "POST",
            "/fhir/Patient",
            &[("prefer", "return=minimal")],
            &body,
        )
        .await;
    assert_eq!(minimal.status, StatusCode::CREATED);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let outcome = app
        .call(
            "POST",
            "/fhir/Patient",
            &[("prefer", "return=OperationOutcome")],
            &body,
        )
        .await;
    assert_eq!(outcome.status, StatusCode::CREATED);
    assert!(outcome.is_outcome());
}

#[tokio::test]
async fn format_and_pretty() {
    let app = start().await;
    let pretty = app.get("/fhir/metadata?_format=json&_pretty=true").await;
    assert_eq!(pretty.status, StatusCode::OK);
    assert!(pretty.text.contains("\n  \"resourceType\""));
    let plain = app
        .get("/fhir/metadata?_format=application/fhir%2Bjson")
        .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(!plain.text.contains('\n'));
    let browser = app
        .call(
            "GET",
            "/fhir/metadata",
            &[(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )],
            "",
        )
        .await;
    assert_eq!(browser.status, StatusCode::OK);

    // A searchset carries the stored resources as they were written (1.50 stays 1.50), compact by
    // default and indented all the way down with _pretty=true.
    let observation = json!({
        "resourceType": "Observation", "status": "final",
        "code": { "text": "weight" },
        "valueQuantity": { "value": 1.50, "unit": "kg" },
    });
    let (id, _) = app
        .create(serde_json::from_str(&observation.to_string().replace("1.5", "1.50")).unwrap())
        .await;
    let compact = app.get("/fhir/Observation?code:text=weight").await;
    assert_eq!(compact.status, StatusCode::OK, "{}", compact.text);
    assert!(!compact.text.contains('\n'));
    assert!(compact.text.contains("\"value\":1.50"), "{}", compact.text);
    let pretty = app
        .get("/fhir/Observation?code:text=weight&_pretty=true")
        .await;
    assert_eq!(pretty.status, StatusCode::OK);
    assert!(
        pretty.text.contains("\n          \"value\": 1.50"),
        "{}",
        pretty.text
    );
    let (compact, pretty) = (compact.json(), pretty.json());
    assert_eq!(ids(&compact), vec![format!("Observation/{id}")]);
    assert_eq!(compact["entry"], pretty["entry"]);
    assert_eq!(compact["entry"][0]["search"]["mode"], "match");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = start().await;
    let given = app
        .call("GET", "/fhir/metadata", &[("x-request-id", "abc-123")], "")
        .await;
    assert_eq!(given.header("x-request-id").as_deref(), Some("abc-123"));
    let made = app.get("/fhir/metadata").await;
    assert_eq!(made.header("x-request-id").unwrap().len(), 36);
    let unsafe_id = app
        .call("GET", "/fhir/metadata", &[("x-request-id", "<script>")], "")
        .await;
    assert_ne!(
        unsafe_id.header("x-request-id").as_deref(),
        Some("<script>")
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let app = start().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    app.create(patient("Metrics")).await;
    app.get("/fhir/Patient/nope").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics
        .text
        .contains("nutmeg_http_requests_total{interaction=\"create\",status=\"2xx\"} 1"));
    assert!(metrics
        .text
        .contains("nutmeg_http_requests_total{interaction=\"read\",status=\"4xx\"} 1"));
    assert!(metrics
        .text
        .contains("nutmeg_http_request_duration_seconds_count{interaction=\"create\"} 1"));
    assert!(metrics
        .text
        .contains("nutmeg_store_operation_duration_seconds_count{operation=\"health\"} 1"));
    if cfg!(target_os = "linux") {
        let peak = metrics
            .text
            .lines()
            .find_map(|l| l.strip_prefix("nutmeg_process_peak_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("peak memory gauge");
        assert!(peak > 1 << 20, "{peak}");
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_outcome_that_says_nothing() {
    let boom: Router<server::http::Shared> = Router::new().route(
        "/boom",
        get(|| async {
            if std::hint::black_box(true) {
                panic!("secret patient name Zebedee");
            }
            "unreachable"
        }),
    );
    let app = start_with(|_| {}, boom).await;
    let answer = app.get("/boom").await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer.is_outcome());
    assert!(!answer.text.contains("Zebedee"));
    // The server goes on.
    assert_eq!(app.get("/fhir/metadata").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = start_with(|c| c.max_body = 1024, Router::new()).await;
    let mut big = patient("Large");
    big["name"][0]["given"] = json!(vec!["Wilhelmina"; 200]);
    let answer = app
        .call("POST", "/fhir/Patient", &[], &big.to_string())
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.is_outcome());
    let small = app
        .call("POST", "/fhir/Patient", &[], &patient("Small").to_string())
        .await;
    assert_eq!(small.status, StatusCode::CREATED);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_request_bodies_are_read_within_the_limit() {
    let app = start_with(|c| c.max_body = 4096, Router::new()).await;
    let send = |body: Vec<u8>, encoding: &'static str| {
        let router = app.router.clone();
        async move {
            let request = Request::builder()
                .method("POST")
                .uri("/fhir/Patient")
                .header("content-type", "application/fhir+json")
                .header("content-encoding", encoding)
                .body(Body::from(body))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, body) = send(gzip(patient("Zipped").to_string().as_bytes()), "gzip").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"][0]["family"], "Zipped");

    // Small on the wire, over the limit once inflated.
    let mut bomb = patient("Bomb");
    bomb["name"][0]["given"] = json!(vec!["Bartholomew"; 2000]);
    let (status, body) = send(gzip(bomb.to_string().as_bytes()), "gzip").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["resourceType"], "OperationOutcome");

    let (status, body) = send(b"not gzip".to_vec(), "gzip").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["resourceType"], "OperationOutcome");
    let (status, body) = send(patient("Brotli").to_string().into_bytes(), "br").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["resourceType"], "OperationOutcome");
}

/// Every kind of bad input: the status, and an OperationOutcome body.
#[tokio::test]
async fn bad_input_is_a_4xx_outcome() {
    let app = start().await;
    let (id, _) = app.create(patient("Existing")).await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_resource = format!(
        "{{\"resourceType\":\"Patient\",\"extension\":{}}}",
        "[{\"extension\":".repeat(200) + &"]}".repeat(200)
    );
    let patient_body = patient("Bad").to_string();
    let mismatched =
        json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" } })
            .to_string();
    let invalid =
        json!({ "resourceType": "Patient", "gender": "sometimes", "shoeSize": 9 }).to_string();
    let wrong_id = {
        let mut p = patient("Other");
        p["id"] = json!("someone-else");
        p.to_string()
    };
    let item_uri = format!("/fhir/Patient/{id}");
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/fhir/Patient".into(),
            vec![],
            "{\"resourceType\": \"Patient\",".into(),
            400,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![],
            "not json at all".into(),
            400,
        ),
        ("POST", "/fhir/Patient".into(), vec![], deep.clone(), 400),
        ("POST", "/fhir/Patient".into(), vec![], deep_resource, 400),
        ("POST", "/fhir".into(), vec![], deep, 400),
        ("POST", "/fhir/Patient".into(), vec![], "".into(), 400),
        ("POST", "/fhir/Patient".into(), vec![], "[1,2]".into(), 400),
        ("POST", "/fhir/Patient".into(), vec![], mismatched, 400),
        ("POST", "/fhir/Patient".into(), vec![], invalid, 400),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", "application/xml")],
            "<Patient/>".into(),
            415,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", "text/plain")],
            patient_body.clone(),
            415,
        ),
        (
            "GET",
            "/fhir/Patient".into(),
            vec![("accept", "application/fhir+xml")],
            "".into(),
            406,
        ),
        (
            "GET",
            "/fhir/metadata?_format=xml".into(),
            vec![],
            "".into(),
            406,
        ),
        (
            "GET",
            "/fhir/metadata?_pretty=maybe".into(),
            vec![],
            "".into(),
            400,
        ),
        ("GET", "/fhir/Spaceship/1".into(), vec![], "".into(), 404),
        ("GET", "/fhir/Spaceship".into(), vec![], "".into(), 404),
        (
            "POST",
            "/fhir/Spaceship".into(),
            vec![],
            "{\"resourceType\":\"Spaceship\"}".into(),
            404,
        ),
        ("GET", "/nowhere".into(), vec![], "".into(), 404),
        (
            "GET",
            "/fhir/Patient/a/b/c/d".into(),
            vec![],
            "".into(),
            404,
        ),
        ("DELETE", "/fhir/metadata".into(), vec![], "".into(), 405),
        ("PATCH", "/fhir/Patient".into(), vec![], "".into(), 405),
        (
            "GET",
            "/fhir/Patient/not_a_valid_id!".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            format!("/fhir/Patient/{}", "x".repeat(65)),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient/missing".into(),
            vec![],
            "".into(),
            404,
        ),
        (
            "GET",
            format!("{item_uri}/_history/one"),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient?birthdate=1980-13-45".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient?birthdate=xx1980".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Observation?value-quantity=abc".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient?_count=-1".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient?_page=garbage".into(),
            vec![],
            "".into(),
            400,
        ),
        (
            "PUT",
            item_uri.clone(),
            vec![("if-match", "yesterday")],
            patient_body.clone(),
            400,
        ),
        (
            "PUT",
            item_uri.clone(),
            vec![("if-match", "W/\"7\"")],
            {
                let mut p = patient("Stale");
                p["id"] = json!(id);
                p.to_string()
            },
            412,
        ),
        ("PUT", item_uri.clone(), vec![], wrong_id, 400),
        ("POST", "/fhir".into(), vec![], patient_body.clone(), 400),
        (
            "POST",
            "/fhir".into(),
            vec![],
            "{\"resourceType\":\"Bundle\",\"type\":\"collection\"}".into(),
            400,
        ),
        (
            "POST",
            "/fhir/Patient/_search".into(),
            vec![("content-type", "application/json")],
            "{}".into(),
            415,
        ),
        (
            "PATCH",
            item_uri.clone(),
            vec![("content-type", "application/json-patch+json")],
            "{\"op\":1}".into(),
            400,
        ),
        (
            "GET",
            "/fhir/Patient/missing/$everything".into(),
            vec![],
            "".into(),
            404,
        ),
    ];
    for (method, uri, headers, body, expected) in cases {
        let answer = app.call(method, &uri, &headers, &body).await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!(
            answer.status.as_u16(),
            expected,
            "{method} {uri} {headers:?} {shown}: {}",
            answer.text
        );
        assert!(
            answer.is_outcome(),
            "{method} {uri}: not an OperationOutcome: {}",
            answer.text
        );
    }
}
