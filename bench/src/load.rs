//! Loading a server: transaction bundles from files (Synthea) or from the synthetic generator, posted
//! by several closed-loop clients. The clock runs from the first request to the last response, so
//! the rate counts what the server stored, not how fast files were read.

use std::fs;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;

use crate::http::Client;

/// What one load did.
#[derive(Default)]
struct Tally {
    bundles: AtomicU64,
    resources: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, name: &str, resources: usize, reply: Result<crate::http::Reply>) {
        match reply {
            Ok(r) if r.ok() => {
                self.bundles.fetch_add(1, Ordering::Relaxed);
                self.resources
                    .fetch_add(resources as u64, Ordering::Relaxed);
            }
            Ok(r) => self.fail(format!("{name}: HTTP {} {}", r.status, r.reason())),
            Err(e) => self.fail(format!("{name}: {e:#}")),
        }
    }

    fn fail(&self, message: String) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }

    /// Prints the summary line BENCHMARKS.md quotes; an error if anything failed.
    fn report(&self, what: &str, clients: usize, elapsed: Duration) -> Result<()> {
        let resources = self.resources.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        println!(
            "{what}: {} bundles, {resources} resources in {seconds:.1} s with {clients} clients: {:.0} resources/s",
            self.bundles.load(Ordering::Relaxed),
            resources as f64 / seconds.max(1e-9)
        );
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for failure in failures.iter().take(20) {
            eprintln!("failed: {failure}");
        }
        if !failures.is_empty() {
            bail!("{} bundles failed", failures.len());
        }
        Ok(())
    }
}

/// A bundle ready to post: its name (for errors), its bytes and how many resources it holds.
struct Prepared {
    name: String,
    body: Vec<u8>,
    resources: usize,
}

fn read_bundle(path: &Path) -> Result<Prepared> {
    let mut bytes = Vec::new();
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes)?;
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)?;
    }
    let bundle: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Prepared {
        name: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        resources: synth::entry_count(&bundle),
        body: bytes,
    })
}

/// Posts `bundles` with `clients` threads taking the next one from a shared counter.
fn post_all(client_base: &str, bundles: &[Prepared], clients: usize, tally: &Tally) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                let client = Client::new(client_base);
                while let Some(bundle) = bundles.get(next.fetch_add(1, Ordering::Relaxed)) {
                    tally.record(
                        &bundle.name,
                        bundle.resources,
                        client.post_bundle(&bundle.body),
                    );
                }
            });
        }
    });
}

/// Imports a folder of transaction bundles: the `*Information*` bundles first, one at a time (the
/// others refer to them), then the rest with `clients` concurrent clients. Files are read and
/// decompressed before the clock starts.
pub fn import(base: &str, dir: &Path, clients: usize) -> Result<()> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".json.gz")
        })
        .collect();
    paths.sort();
    let (first, rest): (Vec<PathBuf>, Vec<PathBuf>) = paths
        .into_iter()
        .partition(|p| p.to_string_lossy().contains("Information"));
    let first: Vec<Prepared> = first
        .iter()
        .map(|p| read_bundle(p))
        .collect::<Result<_>>()?;
    let rest: Vec<Prepared> = rest.iter().map(|p| read_bundle(p)).collect::<Result<_>>()?;
    let total: usize = first.iter().chain(&rest).map(|b| b.resources).sum();
    eprintln!(
        "{} bundles, {total} resources read from {}",
        first.len() + rest.len(),
        dir.display()
    );

    let tally = Tally::default();
    let started = Instant::now();
    post_all(base, &first, 1, &tally);
    post_all(base, &rest, clients, &tally);
    tally.report("import", clients, started.elapsed())
}

/// Posts the generator's directory, then the patient bundles of `patients`, with `clients` threads
/// that generate as they go. `dry_run` only generates and serializes (the generator's own rate).
pub fn generate(
    base: &str,
    generator: &synth::Generator,
    patients: Range<u64>,
    clients: usize,
    dry_run: bool,
) -> Result<()> {
    let tally = Tally::default();
    let started = Instant::now();
    let participant = std::env::var(crate::http::TOKEN_COMMAND).is_ok();
    let post = |client: &Option<Client>, name: String, mut bundle: serde_json::Value| {
        if participant {
            synth::as_participant(&mut bundle);
        }
        let body = serde_json::to_vec(&bundle).expect("a generated bundle serializes");
        let resources = synth::entry_count(&bundle);
        match client {
            Some(c) => tally.record(&name, resources, c.post_bundle(&body)),
            None => tally.record(
                &name,
                resources,
                Ok(crate::http::Reply {
                    status: 200,
                    body: String::new(),
                }),
            ),
        }
    };
    let client = (!dry_run).then(|| Client::new(base));
    if patients.start == 0 {
        post(&client, "directory".into(), generator.directory());
    }
    let next = AtomicU64::new(patients.start);
    let progress_every = ((patients.end - patients.start) / 20).max(1);
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                let client = (!dry_run).then(|| Client::new(base));
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= patients.end {
                        break;
                    }
                    post(
                        &client,
                        format!("patient {index}"),
                        generator.patient_bundle(index),
                    );
                    if (index - patients.start + 1).is_multiple_of(progress_every) {
                        eprintln!(
                            "{} patients, {} resources, {:.0} s",
                            index - patients.start + 1,
                            tally.resources.load(Ordering::Relaxed),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    tally.report(
        if dry_run {
            "generate (dry run)"
        } else {
            "generate"
        },
        clients,
        started.elapsed(),
    )
}
