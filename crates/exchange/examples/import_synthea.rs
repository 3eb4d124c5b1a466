//! Loads Synthea transaction bundles straight through the repository (no HTTP) and reports
//! resources per second: the repository's share of the import benchmark.
//!
//! `cargo run --release -p exchange --example import_synthea -- DIR [LIMIT] [CLIENTS]`
//! (DIR is `../shared/data/synthea`; the two `*Information*` bundles are loaded first.)

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use exchange::access::{DecisionPoint, Requester};
use exchange::repository::{Repository, RepositoryConfig};

fn load(path: &std::path::Path) -> serde_json::Value {
    let file = std::fs::File::open(path).expect("open");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("../shared/data/synthea"),
    );
    let limit: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort_by_key(|p| (!p.to_string_lossy().contains("Information"), p.clone()));
    files.truncate(limit);

    let tmp = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let store = store::Store::open(&url).await.expect("open store");
    let config = RepositoryConfig {
        base_url: "http://localhost/fhir".into(),
        default_count: 20,
        max_count: 100,
    };
    let repo = Arc::new(Repository::new(store, config, DecisionPoint::new()));

    // Read and parse every file first: the clock measures the repository and the store only.
    let (first, rest): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| p.to_string_lossy().contains("Information"));
    let first: Vec<serde_json::Value> = first.iter().map(|p| load(p)).collect();
    let bundles: Vec<serde_json::Value> = rest.iter().map(|p| load(p)).collect();
    let total: usize = first
        .iter()
        .chain(bundles.iter())
        .map(|b| b["entry"].as_array().map(Vec::len).unwrap_or(0))
        .sum();

    let started = Instant::now();
    for bundle in first {
        repo.bundle(&Requester::system("bench"), bundle)
            .await
            .expect("directory bundle");
    }
    let queue = Arc::new(std::sync::Mutex::new(bundles));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let repo = repo.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some(bundle) = next else { break };
                if let Err(e) = repo.bundle(&Requester::system("bench"), bundle).await {
                    eprintln!("bundle failed: {e} {}", e.outcome());
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} resources in {secs:.2}s: {:.0} resources/s with {clients} clients",
        total as f64 / secs
    );
}
