//! Accuracy and speed on the FEBRL sets: FEBRL4 linkage (dataset4a x dataset4b) and FEBRL3 deduplication
//! (dataset3), read from `../shared/data/febrl`; with `--index N`, also the latency of matching one new record
//! against an index of N generated identities; with `--rebuild N`, the time to deduplicate about N generated
//! records from scratch. With `--json`, the FEBRL results are printed as one JSON object per set instead (read
//! by `scripts/mpi_peers.py`, which sets them beside the Python peers).
//!
//! `cargo run -p mpi --release --example febrl [-- --index 1000000] [--rebuild 1000000] [--json]`

#[path = "../tests/common/febrl.rs"]
mod febrl;

use std::time::Instant;

use mpi::{Blocking, Generator, GeneratorConfig, Index, Standardised, TrainingConfig};

/// Where the time of one pipeline goes, from a second pass over the same records (the same steps as
/// `febrl::run_linkage` and `febrl::run_dedup`, each timed alone): standardise, block, train, score (and the
/// one-to-one step or grouping).
fn stages(left: &febrl::Set, right: Option<&febrl::Set>) -> serde_json::Value {
    let mut clock = Instant::now();
    let mut lap = || {
        let seconds = clock.elapsed().as_secs_f64();
        clock = Instant::now();
        seconds
    };
    let l: Vec<Standardised> = left.records.iter().map(mpi::standardise).collect();
    let r: Vec<Standardised> = right
        .map(|s| s.records.iter().map(mpi::standardise).collect())
        .unwrap_or_default();
    let standardise = lap();
    let (r, pairs) = match right {
        Some(_) => {
            let pairs = Blocking::default().link_pairs(&l, &r);
            (r, pairs)
        }
        None => (Vec::new(), Blocking::default().dedup_pairs(&l)),
    };
    let other = if right.is_some() { &r } else { &l };
    let block = lap();
    let model = mpi::train(&l, other, &pairs, &TrainingConfig::default());
    let train = lap();
    let links = mpi::matches(&model, &l, other, &pairs);
    let answer = if right.is_some() {
        mpi::one_to_one(links).len()
    } else {
        mpi::cluster_pairs(&mpi::clusters(l.len(), &links)).len()
    };
    let score = lap();
    std::hint::black_box(answer);
    serde_json::json!({ "standardise": standardise, "block": block, "train": train, "score": score })
}

/// One set's results as a JSON line: the final answer, the links as scored, blocking, the time and, from a
/// second pass, where it goes.
fn report_json(set: &str, run: &febrl::Run, load_seconds: f64, stages: serde_json::Value) {
    let (a, p, b) = (&run.accuracy, &run.pairwise, &run.blocking);
    let value = serde_json::json!({
        "tool": "nutmeg",
        "set": set,
        "precision": a.precision,
        "recall": a.recall,
        "f1": a.f1,
        "links": a.predicted,
        "pairwise": { "precision": p.precision, "recall": p.recall, "f1": p.f1, "links": p.predicted },
        "pair_completeness": b.pair_completeness,
        "pairs_compared": b.candidate_pairs,
        "seconds": run.seconds,
        "load_seconds": load_seconds,
        "stages": stages,
    });
    println!("{value}");
}

fn report(name: &str, run: &febrl::Run) {
    let (a, b) = (&run.accuracy, &run.blocking);
    println!(
        "{name}: precision {:.4} recall {:.4} F1 {:.4} | pair completeness {:.4} reduction ratio {:.5} | \
         pairs compared {} of {} | links {} ({} true of {}) | {:.3} s",
        a.precision,
        a.recall,
        a.f1,
        b.pair_completeness,
        b.reduction_ratio,
        b.candidate_pairs,
        b.all_pairs,
        a.predicted,
        a.true_positives,
        a.true_pairs,
        run.seconds
    );
    let p = &run.pairwise;
    println!(
        "  pairwise, before one-to-one or clustering: precision {:.4} recall {:.4} F1 {:.4}",
        p.precision, p.recall, p.f1
    );
    if std::env::var_os("MPI_SHOW_MODEL").is_some() {
        println!("prior {:.6}", run.model.prior);
        for f in &run.model.fields {
            let m: Vec<String> = f.m.iter().map(|x| format!("{x:.4}")).collect();
            let u: Vec<String> = f.u.iter().map(|x| format!("{x:.6}")).collect();
            println!("  {:?}: m [{}] u [{}]", f.field, m.join(", "), u.join(", "));
        }
    }
}

/// Trains on a generated deduplication set, fills an index with `n` generated identities, then matches noisy
/// copies of indexed identities one at a time.
fn index_latency(n: usize) {
    let start = Instant::now();
    let sample = mpi::generate(&GeneratorConfig {
        seed: 41,
        identities: 20_000,
        ..GeneratorConfig::default()
    });
    let records: Vec<Standardised> = sample.records.iter().map(mpi::standardise).collect();
    let pairs = Blocking::default().dedup_pairs(&records);
    let model = mpi::train(&records, &records, &pairs, &TrainingConfig::default());
    println!(
        "model trained on {} generated records in {:.1} s",
        records.len(),
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let mut generator = Generator::new(42);
    let mut index = Index::new(Blocking::default());
    let mut kept = Vec::new();
    for k in 0..n {
        let identity = generator.identity(0.7);
        index.insert(format!("p{k}"), &identity);
        if k % (n / 1000).max(1) == 0 {
            kept.push((k, identity));
        }
    }
    println!(
        "index of {} identities built in {:.1} s",
        index.len(),
        start.elapsed().as_secs_f64()
    );

    let mut latencies = Vec::new();
    let (mut first, mut linked, mut wrong, mut candidates) = (0, 0, 0, 0usize);
    for (k, identity) in &kept {
        let copy = generator.noisy_copy(identity);
        let start = Instant::now();
        let matches = index.match_record(&copy, &model);
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        candidates += index.candidates(&copy).len();
        if matches
            .iter()
            .any(|m| m.id != format!("p{k}") && m.grade.is_match())
        {
            wrong += 1;
        }
        if matches.first().is_some_and(|m| m.id == format!("p{k}")) {
            first += 1;
            if matches[0].grade.is_match() {
                linked += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "match one record against {} identities ({} queries, noisy copies of indexed identities): \
         p50 {:.2} ms p99 {:.2} ms max {:.2} ms | mean candidates {:.0} | original ranked first {} and linked {} | another identity linked {}",
        index.len(),
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
        candidates as f64 / latencies.len() as f64,
        first,
        linked,
        wrong
    );
}

/// A batch rebuild: deduplicates about `n` generated records (identities with noisy duplicates and twins) from
/// scratch: standardise, block, train, score, group.
fn rebuild(n: usize) {
    let set = mpi::generate(&GeneratorConfig {
        seed: 43,
        identities: n / 2,
        ..GeneratorConfig::default()
    });
    let start = Instant::now();
    let records: Vec<Standardised> = set.records.iter().map(mpi::standardise).collect();
    let standardised = start.elapsed().as_secs_f64();
    let pairs = Blocking::default().dedup_pairs(&records);
    let blocked = start.elapsed().as_secs_f64();
    // Trained on a sample of at most 100,000 records (MPI_TRAIN_SAMPLE to change it): as accurate here as
    // training on everything, and far faster.
    let cap: usize = std::env::var("MPI_TRAIN_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let step = records.len().div_ceil(cap);
    let sample: Vec<Standardised> = records.iter().step_by(step).cloned().collect();
    let sample_pairs = Blocking::default().dedup_pairs(&sample);
    let model = mpi::train(&sample, &sample, &sample_pairs, &TrainingConfig::default());
    let trained = start.elapsed().as_secs_f64();
    if std::env::var_os("MPI_SHOW_MODEL").is_some() {
        println!("prior {:.3e}", model.prior);
        for f in &model.fields {
            let m: Vec<String> = f.m.iter().map(|x| format!("{x:.4}")).collect();
            let u: Vec<String> = f.u.iter().map(|x| format!("{x:.6}")).collect();
            println!("  {:?}: m [{}] u [{}]", f.field, m.join(", "), u.join(", "));
        }
    }
    let links = mpi::matches(&model, &records, &records, &pairs);
    let clusters = mpi::clusters(records.len(), &links);
    let seconds = start.elapsed().as_secs_f64();
    let precision = links
        .iter()
        .filter(|l| set.person[l.left as usize] == set.person[l.right as usize])
        .count() as f64
        / links.len().max(1) as f64;
    let mut people: Vec<u32> = set.person.clone();
    people.sort_unstable();
    people.dedup();
    let mut sizes = std::collections::HashMap::new();
    for c in &clusters {
        *sizes.entry(*c).or_insert(0usize) += 1;
    }
    let largest = sizes.values().copied().max().unwrap_or(0);
    println!(
        "rebuild of {} generated records ({} people): {:.1} s (standardise {:.1} s, block {:.1} s, train on {} {:.1} s, \
         score and group {:.1} s) | {} pairs compared | {} links, precision {:.4} | {} identities, the largest of {} records",
        records.len(),
        people.len(),
        seconds,
        standardised,
        blocked - standardised,
        sample.len(),
        trained - blocked,
        seconds - trained,
        pairs.len(),
        links.len(),
        precision,
        sizes.len(),
        largest
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index_size = args
        .iter()
        .position(|a| a == "--index")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let json = args.iter().any(|a| a == "--json");
    let start = Instant::now();
    let sets = (
        febrl::load("dataset4a.csv"),
        febrl::load("dataset4b.csv"),
        febrl::load("dataset3.csv"),
    );
    // Reading and parsing the three CSV files, kept out of each set's time.
    let load_seconds = start.elapsed().as_secs_f64();
    match sets {
        (Some(a), Some(b), Some(d3)) if json => {
            let run = febrl::run_linkage(&a, &b);
            report_json("febrl4", &run, load_seconds, stages(&a, Some(&b)));
            let run = febrl::run_dedup(&d3);
            report_json("febrl3", &run, load_seconds, stages(&d3, None));
        }
        (Some(a), Some(b), Some(d3)) => {
            report(
                "FEBRL4 linkage (5,000 x 5,000)",
                &febrl::run_linkage(&a, &b),
            );
            report("FEBRL3 deduplication (5,000)", &febrl::run_dedup(&d3));
        }
        _ => eprintln!("FEBRL data not found under {}", febrl::dir().display()),
    }
    if let Some(n) = index_size {
        index_latency(n);
    }
    let rebuild_size = args
        .iter()
        .position(|a| a == "--rebuild")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    if let Some(n) = rebuild_size {
        rebuild(n);
    }
}
