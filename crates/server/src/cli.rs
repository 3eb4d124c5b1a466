//! The command line: `nutmeg serve`, `nutmeg demo`, `nutmeg import`, `nutmeg admin`, `nutmeg
//! client`, `nutmeg mpi`, with the shared settings of [`crate::config`]. Exit codes: 0 success, 1 failure (an
//! import with failed files, a refused admin command, a refused token request), 2 invalid
//! configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Settings};
use crate::metrics::Metrics;

#[derive(Parser, Debug)]
#[command(
    name = "nutmeg",
    version,
    about = "A health information exchange on FHIR R4"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the FHIR API, /healthz and /metrics.
    Serve,
    /// Fill a fresh SQLite database in the data directory with synthetic patients, then serve it.
    Demo(DemoArgs),
    /// Load FHIR JSON or NDJSON files (optionally .gz) and folders of them into the database.
    Import(ImportArgs),
    /// Operator commands on the database (participants, SMART clients, the audit trail).
    Admin(crate::admin::AdminArgs),
    /// What a SMART Backend Services client does: make a key pair, get an access token.
    Client(crate::client::ClientArgs),
    /// The master patient index's enterprise identities: rebuild, review queue, link, unlink, history.
    Mpi(crate::mpi::MpiArgs),
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The generator's seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many patients to generate.
    #[arg(long, default_value_t = 25)]
    pub patients: u64,
    /// Replace the demo database if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files and folders (searched recursively for .json, .ndjson and their .gz).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.settings.load() {
        Ok(config) => config,
        Err(e) => {
            eprint!("nutmeg: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Demo(_)) && cli.settings.database.is_some() {
        eprintln!("nutmeg: note: demo always makes a fresh SQLite database in --data-dir; --database is ignored");
    }
    let metrics = Metrics::new();
    crate::telemetry::init(&config, &metrics);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nutmeg: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, config, metrics));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nutmeg: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config, metrics: Metrics) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => crate::serve::serve(config, metrics)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => crate::demo::demo(config, metrics, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Admin(args) => crate::admin::admin(&config, args).await,
        Command::Client(args) => crate::client::client(args).await,
        Command::Mpi(args) => crate::mpi::mpi(&config, args).await,
        Command::Import(args) => {
            let summary = crate::import::import(&config, &args.paths).await?;
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
