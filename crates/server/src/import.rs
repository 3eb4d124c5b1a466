//! `nutmeg import PATH...`: loads FHIR JSON (a resource or a Bundle) and NDJSON files, each
//! optionally gzip-compressed, and folders of them (recursively), straight through the repository.
//!
//! Units of loading: a batch or transaction Bundle is one transaction (whole or not at all); the
//! entries of any other Bundle that is a container (collection, searchset, history) are one
//! transaction; a single resource (including a document or message Bundle) is one; an NDJSON file
//! goes in transactions of [`NDJSON_CHUNK`] lines and stops at its first failing chunk. A file that
//! fails is reported with the reason (the OperationOutcome's diagnostics) and the rest go on.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use exchange::access::Requester;
use exchange::repository::Repository;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::config::Config;
use crate::demo::diagnostics;
use crate::serve::open_repository;

/// Lines of NDJSON per transaction.
pub const NDJSON_CHUNK: usize = 1000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files_ok: usize,
    pub failed: usize,
    pub resources: usize,
}

pub async fn import(config: &Config, paths: &[PathBuf]) -> anyhow::Result<Summary> {
    let base_url = config.base_url_for(config.http);
    let repo = open_repository(config, &base_url).await?;
    let mut files = Vec::new();
    let mut summary = Summary::default();
    for path in paths {
        if let Err(e) = collect(path, true, &mut files) {
            eprintln!("FAILED {}: {e}", path.display());
            summary.failed += 1;
        }
    }
    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:30}] {pos}/{len} files, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let who = Requester::system("import");
    // A file that loaded nothing may depend on one that comes later (a Synthea patient bundle's
    // conditional references to the practitioners of `practitionerInformation*.json`): such files are
    // tried once more after all the others, and only then reported.
    let mut retry = Vec::new();
    for (pass, list) in [(0, files), (1, Vec::new())] {
        let list = if pass == 0 {
            list
        } else {
            std::mem::take(&mut retry)
        };
        for file in list {
            match import_file(&repo, &who, &file).await {
                Ok(n) => {
                    summary.files_ok += 1;
                    summary.resources += n;
                    progress.inc(1);
                }
                Err((0, _)) if pass == 0 => retry.push(file),
                Err((loaded, reason)) => {
                    summary.failed += 1;
                    summary.resources += loaded;
                    progress.suspend(|| eprintln!("FAILED {}: {reason}", file.display()));
                    progress.inc(1);
                }
            }
            let rate = summary.resources as f64 / started.elapsed().as_secs_f64().max(0.001);
            progress.set_message(format!(
                "{} resources, {rate:.0} resources/s",
                summary.resources
            ));
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "imported {} file(s), {} failed; {} resources in {elapsed:.1} s ({:.0} resources/s)",
        summary.files_ok,
        summary.failed,
        summary.resources,
        summary.resources as f64 / elapsed.max(0.001)
    );
    Ok(summary)
}

/// Whether a file name is one import reads when it finds it in a folder.
fn importable(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".json") || name.ends_with(".ndjson") || name.ends_with(".jsonl")
}

/// Adds `path` (a file, or the importable files under a folder, sorted) to `files`.
fn collect(path: &Path, explicit: bool, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for child in children {
            collect(&child, false, files)?;
        }
    } else if explicit || importable(path) {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads a file, gunzipping it if it is gzip.
fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("not valid gzip'd UTF-8: {e}"))?;
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
    }
}

fn is_ndjson(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".ndjson") || name.ends_with(".jsonl")
}

/// Loads one file; answers the resources loaded, or those loaded before the failure and why.
async fn import_file(
    repo: &Repository,
    who: &Requester,
    path: &Path,
) -> Result<usize, (usize, String)> {
    let text = read_text(path).map_err(|e| (0, e))?;
    if is_ndjson(path) {
        return import_ndjson(repo, who, &text).await;
    }
    let value: Value =
        serde_json::from_str(&text).map_err(|e| (0, format!("not valid JSON: {e}")))?;
    let (transaction, count) = as_transaction(value).map_err(|e| (0, e))?;
    commit(repo, who, transaction).await.map_err(|e| (0, e))?;
    Ok(count)
}

async fn import_ndjson(
    repo: &Repository,
    who: &Requester,
    text: &str,
) -> Result<usize, (usize, String)> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    let mut loaded = 0;
    for chunk in lines.chunks(NDJSON_CHUNK) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (number, line) in chunk {
            let resource: Value = serde_json::from_str(line)
                .map_err(|e| (loaded, format!("line {}: not valid JSON: {e}", number + 1)))?;
            let entry = entry_for(resource, None)
                .map_err(|e| (loaded, format!("line {}: {e}", number + 1)))?;
            entries.push(entry);
        }
        let (first, last) = (chunk[0].0 + 1, chunk[chunk.len() - 1].0 + 1);
        let count = entries.len();
        commit(repo, who, transaction(entries))
            .await
            .map_err(|e| (loaded, format!("lines {first}-{last}: {e}")))?;
        loaded += count;
    }
    Ok(loaded)
}

async fn commit(repo: &Repository, who: &Requester, bundle: Value) -> Result<(), String> {
    repo.bundle(who, bundle)
        .await
        .map(|_| ())
        .map_err(|e| diagnostics(&e))
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// The transaction that loads a parsed file, and how many resources it holds.
fn as_transaction(value: Value) -> Result<(Value, usize), String> {
    let kind = if value["resourceType"] == "Bundle" {
        value["type"].as_str().unwrap_or("").to_string()
    } else {
        String::new()
    };
    match kind.as_str() {
        "transaction" | "batch" => {
            let mut bundle = value;
            // A batch is loaded whole or not at all, like a transaction.
            bundle["type"] = json!("transaction");
            let count = synth::entry_count(&bundle);
            Ok((bundle, count))
        }
        "collection" | "searchset" | "history" => {
            let mut entries = Vec::new();
            if let Some(list) = value["entry"].as_array() {
                for (i, entry) in list.iter().enumerate() {
                    // A searchset's OperationOutcome about the search is not data.
                    if entry["search"]["mode"] == "outcome" {
                        continue;
                    }
                    let Some(resource) = entry.get("resource") else {
                        continue;
                    };
                    let full_url = entry["fullUrl"].as_str().map(str::to_string);
                    entries.push(
                        entry_for(resource.clone(), full_url)
                            .map_err(|e| format!("Bundle.entry[{i}]: {e}"))?,
                    );
                }
            }
            let count = entries.len();
            Ok((transaction(entries), count))
        }
        _ => Ok((transaction(vec![entry_for(value, None)?]), 1)),
    }
}

/// A transaction entry that stores `resource`: a PUT when it has an id (so ids and references
/// between files survive), a POST otherwise.
fn entry_for(resource: Value, full_url: Option<String>) -> Result<Value, String> {
    let ty = resource["resourceType"]
        .as_str()
        .ok_or("not a FHIR resource: resourceType is missing")?
        .to_string();
    let request = match resource["id"].as_str() {
        Some(id) => json!({ "method": "PUT", "url": format!("{ty}/{id}") }),
        None => json!({ "method": "POST", "url": ty }),
    };
    let mut entry = json!({ "resource": resource, "request": request });
    if let Some(url) = full_url {
        entry["fullUrl"] = json!(url);
    }
    Ok(entry)
}
