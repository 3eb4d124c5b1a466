//! Closed-loop search latency: each client sends its next request as soon as the last one answered,
//! for a fixed time, cycling through query values sampled from the data. The values are saved to a
//! file so that two servers holding the same data are asked exactly the same questions.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::http::{encode, Client};
use crate::stats::{ms, percentile};

/// Query values taken from one patient's record.
struct Sample {
    id: String,
    /// `system|value` of the patient's first identifier.
    identifier: Option<String>,
    family: Option<String>,
    birthdate: Option<String>,
    /// `system|code` of one of the patient's observations, and the year it was made.
    observation: Option<(String, i32)>,
}

/// The six searches of BENCHMARKS.md, as relative URLs for one sample (`None` when the sample lacks
/// the values a search needs).
type MakeUrl = fn(&Sample) -> Option<String>;

const QUERIES: [(&str, MakeUrl); 6] = [
    ("Patient by identifier", |s| {
        Some(format!(
            "Patient?identifier={}",
            encode(s.identifier.as_ref()?)
        ))
    }),
    ("Patient by family name and birthdate", |s| {
        Some(format!(
            "Patient?family={}&birthdate={}",
            encode(s.family.as_ref()?),
            encode(s.birthdate.as_ref()?)
        ))
    }),
    ("Observation by patient and code", |s| {
        let (code, _) = s.observation.as_ref()?;
        Some(format!(
            "Observation?patient=Patient/{}&code={}",
            s.id,
            encode(code)
        ))
    }),
    ("Observation by patient and date range", |s| {
        let (_, year) = s.observation.as_ref()?;
        Some(format!(
            "Observation?patient=Patient/{}&date=ge{year}-01-01&date=lt{}-01-01",
            s.id,
            year + 1
        ))
    }),
    ("Encounter by patient sorted by date", |s| {
        Some(format!("Encounter?patient=Patient/{}&_sort=-date", s.id))
    }),
    ("Patient $everything", |s| {
        Some(format!("Patient/{}/$everything", s.id))
    }),
];

pub fn run(
    base: &str,
    clients: &[usize],
    duration: Duration,
    warmup: Duration,
    sample: usize,
    only: &[usize],
    values: Option<&Path>,
) -> Result<()> {
    let client = Client::new(base);
    let samples = match values {
        Some(path) if path.exists() => load_samples(path)?,
        _ => {
            let samples = sample_values(&client, sample)?;
            if let Some(path) = values {
                save_samples(path, &samples)?;
            }
            samples
        }
    };
    eprintln!("{} patients sampled", samples.len());

    println!("| query | clients | requests | errors | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (number, (name, make)) in QUERIES.iter().enumerate() {
        if !only.is_empty() && !only.contains(&(number + 1)) {
            continue;
        }
        let urls: Vec<String> = samples.iter().filter_map(make).collect();
        if urls.is_empty() {
            eprintln!("{name}: no sampled patient has the values it needs; skipped");
            continue;
        }
        for &n in clients {
            closed_loop(base, &urls, n, warmup);
            let (mut latencies, errors, elapsed, first_error) =
                closed_loop(base, &urls, n, duration);
            latencies.sort_unstable();
            println!(
                "| {name} | {n} | {} | {errors} | {:.0} | {} | {} |",
                latencies.len(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0)),
            );
            if let Some(e) = first_error {
                eprintln!("{name}: first error: {e}");
            }
        }
    }
    Ok(())
}

/// Runs `clients` threads for `duration`, each cycling through `urls` from its own offset. Returns
/// every latency, the number of non-2xx answers, the time taken and the first error's reason.
fn closed_loop(
    base: &str,
    urls: &[String],
    clients: usize,
    duration: Duration,
) -> (Vec<Duration>, usize, Duration, Option<String>) {
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, usize, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|t| {
                scope.spawn(move || {
                    let client = Client::new(base);
                    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
                    let mut i = t * urls.len() / clients.max(1);
                    while started.elapsed() < duration {
                        let url = &urls[i % urls.len()];
                        i += 1;
                        let sent = Instant::now();
                        match client.get(url) {
                            Ok(reply) if reply.ok() => latencies.push(sent.elapsed()),
                            Ok(reply) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| {
                                    format!("{url}: HTTP {} {}", reply.status, reply.reason())
                                });
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| format!("{url}: {e:#}"));
                            }
                        }
                    }
                    (latencies, errors, first_error)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for (latencies, e, first) in results {
        all.extend(latencies);
        errors += e;
        first_error = first_error.or(first);
    }
    (all, errors, elapsed, first_error)
}

/// Takes `count` patients from the server and, for each, one of their observations.
fn sample_values(client: &Client, count: usize) -> Result<Vec<Sample>> {
    let reply = client.get(&format!("Patient?_count={count}"))?;
    if !reply.ok() {
        bail!(
            "sampling patients: HTTP {} {}",
            reply.status,
            reply.reason()
        );
    }
    let bundle: Value = serde_json::from_str(&reply.body).context("sampling patients")?;
    let mut samples = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let patient = &entry["resource"];
        if patient["resourceType"] != "Patient" {
            continue;
        }
        let Some(id) = patient["id"].as_str() else {
            continue;
        };
        let identifier = patient["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|i| {
                Some(format!(
                    "{}|{}",
                    i["system"].as_str()?,
                    i["value"].as_str()?
                ))
            });
        let observation = client
            .get(&format!("Observation?patient=Patient/{id}&_count=1"))
            .ok()
            .filter(|r| r.ok())
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|b| {
                let obs = b["entry"].get(0)?["resource"].clone();
                let coding = obs["code"]["coding"].get(0)?;
                let code = format!(
                    "{}|{}",
                    coding["system"].as_str()?,
                    coding["code"].as_str()?
                );
                let when = obs["effectiveDateTime"]
                    .as_str()
                    .or(obs["effectivePeriod"]["start"].as_str())?;
                Some((code, when.get(..4)?.parse().ok()?))
            });
        samples.push(Sample {
            id: id.to_owned(),
            identifier,
            family: patient["name"][0]["family"].as_str().map(str::to_owned),
            birthdate: patient["birthDate"].as_str().map(str::to_owned),
            observation,
        });
    }
    if samples.is_empty() {
        bail!("the server holds no patients to sample");
    }
    Ok(samples)
}

fn save_samples(path: &Path, samples: &[Sample]) -> Result<()> {
    let rows: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "identifier": s.identifier, "family": s.family, "birthdate": s.birthdate,
                "observation": s.observation.as_ref().map(|(c, y)| json!({ "code": c, "year": y })),
            })
        })
        .collect();
    std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn load_samples(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<Value> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let text_of = |v: &Value| v.as_str().map(str::to_owned);
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Sample {
                id: text_of(&r["id"])?,
                identifier: text_of(&r["identifier"]),
                family: text_of(&r["family"]),
                birthdate: text_of(&r["birthdate"]),
                observation: r["observation"]["code"].as_str().and_then(|c| {
                    Some((
                        c.to_owned(),
                        i32::try_from(r["observation"]["year"].as_i64()?).ok()?,
                    ))
                }),
            })
        })
        .collect())
}
