//! Shared set-up for the repository tests: a fresh SQLite store in a temporary directory per test.

#![allow(dead_code)]

use auth::scope::ScopeSet;
use exchange::access::{DecisionPoint, Principal, PurposeOfUse, Requester};
use exchange::participants::{Kind, Licence, LicenceType, NewParticipant, NewPractitioner, Status};
use exchange::repository::{Repository, RepositoryConfig};
use serde_json::Value;

pub const BASE: &str = "http://nutmeg.test/fhir";

/// A repository over its own database; the database goes when the fixture does.
pub struct Fixture {
    pub repo: Repository,
    _dir: tempfile::TempDir,
    _schema: Option<Schema>,
}

impl std::ops::Deref for Fixture {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        &self.repo
    }
}

pub async fn repo() -> Fixture {
    repo_with(DecisionPoint::new()).await
}

/// A repository on SQLite in a temporary directory, or, with `NUTMEG_TEST_EXCHANGE_ENGINE=postgres`
/// and `NUTMEG_TEST_POSTGRES` set, on a PostgreSQL schema of its own: the same tests for both engines.
pub async fn repo_with(gate: DecisionPoint) -> Fixture {
    repo_gated(|_| gate).await
}

/// A repository whose decision point applies the exchange's rules.
pub async fn repo_enforcing() -> Fixture {
    repo_gated(|store| DecisionPoint::enforcing(store.clone())).await
}

/// A repository whose decision point is made from its store.
pub async fn repo_gated(gate: impl FnOnce(&store::Store) -> DecisionPoint) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let schema = match std::env::var("NUTMEG_TEST_EXCHANGE_ENGINE").as_deref() {
        Ok("postgres") => Some(Schema::create().await),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("NUTMEG_TEST_EXCHANGE_ENGINE={other}: expected sqlite or postgres"),
    };
    let url = match &schema {
        Some(schema) => schema.url(),
        None => format!("sqlite://{}", dir.path().join("t.db").display()),
    };
    let store = store::Store::open(&url).await.expect("open the store");
    let config = RepositoryConfig {
        base_url: BASE.to_string(),
        default_count: 10,
        max_count: 50,
    };
    Fixture {
        repo: Repository::new(store.clone(), config, gate(&store)),
        _dir: dir,
        _schema: schema,
    }
}

/// A PostgreSQL schema of its own, dropped with everything in it when this is dropped.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    async fn create() -> Schema {
        let base = std::env::var("NUTMEG_TEST_POSTGRES")
            .expect("NUTMEG_TEST_EXCHANGE_ENGINE=postgres needs NUTMEG_TEST_POSTGRES");
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "nutmeg_exchange_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let client = connect(&base).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        Schema { base, name }
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        // The application name lets the drop end this schema's sessions first: a session whose
        // read-only transaction's ROLLBACK was still queued when the test ended holds locks that
        // DROP SCHEMA would wait for.
        format!(
            "{}{sep}options=-c%20search_path%3D{name}&application_name={name}",
            self.base,
            name = self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // A thread of its own: this runs inside (or after the panic of) a test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                connect(&base)
                    .await
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = '{name}' AND pid <> pg_backend_pid(); \
                         SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

pub fn who() -> Requester {
    Requester::system("test")
}

pub fn params(query: &str) -> Vec<(String, String)> {
    exchange::repository::parse_query_string(query)
}

/// The `Type/id` of each entry of a searchset, in order, with its search mode.
pub fn entries(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let r = &e["resource"];
                    let key = format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap_or(""),
                        r["id"].as_str().unwrap_or("")
                    );
                    (key, e["search"]["mode"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}

/// The query parameters of a link this server wrote.
pub fn link_params(url: &str) -> Vec<(String, String)> {
    params(url.split_once('?').map(|(_, q)| q).unwrap_or(""))
}

pub fn patient(family: &str, identifier: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{ "system": "http://example.org/mrn", "value": identifier }],
        "name": [{ "family": family, "given": ["Test"] }],
        "gender": "female",
        "birthDate": "1970-01-01",
    })
}

/// A participant's registration: an organization of `kind` with a Connecticut licence.
pub fn org(name: &str, kind: Kind, licence: &str) -> NewParticipant {
    NewParticipant {
        name: name.to_string(),
        kind,
        npi: None,
        tax_id: None,
        licence: Some(Licence {
            state: "CT".to_string(),
            number: licence.to_string(),
        }),
        ehr: Some("Epic".to_string()),
        practitioner: None,
    }
}

/// A solo practice's registration: Jane Doe, LMFT, Connecticut licence `licence`.
pub fn solo_therapist(licence: &str) -> NewParticipant {
    NewParticipant {
        name: "Riverside Family Therapy".to_string(),
        kind: Kind::SoloPractice,
        npi: None,
        tax_id: None,
        licence: None,
        ehr: None,
        practitioner: Some(NewPractitioner {
            given: "Jane".to_string(),
            family: "Doe".to_string(),
            npi: Some("1245319599".to_string()),
            licence_type: LicenceType::Lmft,
            licence: Licence {
                state: "CT".to_string(),
                number: licence.to_string(),
            },
        }),
    }
}

/// Registers a participant and moves it to `status`; answers its id.
pub async fn participant(repo: &Fixture, name: &str, kind: Kind, status: Status) -> String {
    let added = repo
        .add_participant(&who(), &org(name, kind, &format!("L-{name}")))
        .await
        .expect("registered");
    let path: &[Status] = match status {
        Status::Applied => &[],
        Status::Onboarding => &[Status::Onboarding],
        Status::Live => &[Status::Onboarding, Status::Live],
        Status::Suspended => &[Status::Onboarding, Status::Live, Status::Suspended],
    };
    for next in path {
        repo.set_participant_status(&who(), &added.id, *next)
            .await
            .expect("status");
    }
    added.id
}

pub fn client(participant: &str, scopes: &str, purpose: PurposeOfUse) -> Requester {
    Requester::new(
        "req-test",
        Principal::Client {
            client_id: format!("client-of-{participant}"),
            participant: participant.to_string(),
            scopes: ScopeSet::parse(scopes).expect("scopes"),
        },
        purpose,
        true,
    )
}

/// A heart-rate Observation about the patient.
pub fn observation(patient_id: &str) -> Value {
    serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{patient_id}") },
        "valueQuantity": { "value": 72, "unit": "/min" },
    })
}
