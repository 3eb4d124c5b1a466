//! `nutmeg-bench`: measures a FHIR R4 server from the outside, over plain HTTP, so that nutmeg and any
//! other server (Helios HFS, for BENCHMARKS.md) are measured the same way: transaction-bundle import
//! from files or from the synthetic generator, and closed-loop search latency at several concurrencies.

mod http;
mod load;
mod search;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "nutmeg-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Posts every bundle of a folder (`*.json`, `*.json.gz`) as a transaction: the `*Information*`
    /// bundles first, one at a time, then the rest with several concurrent clients.
    Import {
        /// The server's FHIR base URL, e.g. http://127.0.0.1:8080/fhir.
        #[arg(long)]
        base: String,
        #[arg(long, default_value = "../shared/data/synthea")]
        dir: PathBuf,
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Posts the synthetic generator's directory, then its patient bundles, as transactions.
    Generate {
        #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
        base: String,
        #[arg(long, default_value_t = 100)]
        patients: u64,
        /// Load about this many resources instead of `--patients` (e.g. 1000000).
        #[arg(long)]
        resources: Option<u64>,
        /// The index of the first patient (to continue an earlier load).
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Mean encounters per patient (about ten resources each).
        #[arg(long, default_value_t = synth::DEFAULT_MEAN_ENCOUNTERS)]
        encounters: u32,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Only generate and serialize, without a server: measures the generator.
        #[arg(long)]
        dry_run: bool,
    },
    /// Runs the six searches of BENCHMARKS.md for `--duration` each at each concurrency and prints
    /// p50/p99 latency and requests/s as a Markdown table.
    Search {
        #[arg(long)]
        base: String,
        /// Concurrent closed-loop clients, one run per value.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        clients: Vec<usize>,
        #[arg(long, default_value = "20s", value_parser = stats::parse_duration)]
        duration: Duration,
        /// Unmeasured run before each measurement (warms caches and connections).
        #[arg(long, default_value = "2s", value_parser = stats::parse_duration)]
        warmup: Duration,
        /// How many patients to sample from the server for query values.
        #[arg(long, default_value_t = 100)]
        sample: usize,
        /// Only these queries (1-6), e.g. `--only 1,6`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<usize>,
        /// Query values: read from this file if it exists, else sampled and written to it, so that
        /// two servers with the same data get the same questions.
        #[arg(long)]
        values: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Import { base, dir, clients } => load::import(&base, &dir, clients),
        Command::Generate {
            base,
            patients,
            resources,
            first,
            seed,
            encounters,
            clients,
            dry_run,
        } => {
            let generator = synth::Generator::new(seed).with_mean_encounters(encounters);
            let patients = match resources {
                Some(r) => generator.patients_for_resources(r),
                None => patients,
            };
            load::generate(&base, &generator, first..first + patients, clients, dry_run)
        }
        Command::Search {
            base,
            clients,
            duration,
            warmup,
            sample,
            only,
            values,
        } => search::run(
            &base,
            &clients,
            duration,
            warmup,
            sample,
            &only,
            values.as_deref(),
        ),
    }
}
