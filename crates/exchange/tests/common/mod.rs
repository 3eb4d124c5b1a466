//! Shared set-up for the repository tests: a fresh SQLite store in a temporary directory per test.

#![allow(dead_code)]
// Until the SQLite engine lands, `Store` has no values and the code after `open` is unreachable.
#![allow(unused_variables, unreachable_code)]

use exchange::access::{DecisionPoint, Requester};
use exchange::repository::{Repository, RepositoryConfig};
use serde_json::Value;

pub const BASE: &str = "http://nutmeg.test/fhir";

/// A repository over its own database; the directory goes when the fixture does.
pub struct Fixture {
    pub repo: Repository,
    _dir: tempfile::TempDir,
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

pub async fn repo_with(gate: DecisionPoint) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = store::Store::open(&url)
        .await
        .expect("open the SQLite store");
    let config = RepositoryConfig {
        base_url: BASE.to_string(),
        default_count: 10,
        max_count: 50,
    };
    Fixture {
        repo: Repository::new(store, config, gate),
        _dir: dir,
    }
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
