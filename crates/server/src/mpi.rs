//! `nutmeg mpi` (also `nutmeg admin mpi`): the master patient index's enterprise identities for
//! operators on the command line. `rebuild` relinks every Patient in batch with a progress bar on
//! stderr, keeping every operator decision; `reviews` lists the possible matches waiting; `link`
//! and `unlink` record an operator's decision (with a reason, kept in the link history); `history`
//! shows the link history; `same-person` the Patients of one person. Each prints a readable
//! summary, or with `--json` the FHIR Parameters the HTTP operations answer. A refused request
//! prints its reasons on stderr and exits with 1.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use exchange::access::Requester;
use exchange::repository::Repository;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::config::Config;
use crate::serve::open_repository;

#[derive(Args, Debug)]
pub struct MpiArgs {
    #[command(subcommand)]
    pub command: MpiCommand,
}

#[derive(Subcommand, Debug)]
pub enum MpiCommand {
    /// Relink every Patient in batch (retraining the model on them), keeping operators' decisions.
    Rebuild {
        #[arg(long)]
        json: bool,
    },
    /// The possible matches waiting for an operator, best first.
    Reviews {
        #[arg(long, default_value_t = 50)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
    /// Record that two Patients are one person (their identities merge).
    Link {
        a: String,
        b: String,
        /// Why (kept in the link history).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Record that two Patients are not one person (a shared identity splits on both sides).
    Unlink {
        a: String,
        b: String,
        /// Why (kept in the link history).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// The link history, newest first, of a Patient or an identity (or all of it).
    History {
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long, default_value_t = 50)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
    /// The ids of every Patient linked to the same person as this one.
    SamePerson { patient: String },
}

/// Runs an `mpi` command against the configured database.
pub async fn mpi(config: &Config, args: MpiArgs) -> anyhow::Result<ExitCode> {
    let repo = open_repository(config, &config.base_url_for(config.http)).await?;
    run(&repo, args.command).await
}

/// Runs an `mpi` command with a repository already open.
pub async fn run(repo: &Repository, command: MpiCommand) -> anyhow::Result<ExitCode> {
    let who = Requester::system("admin");
    let answer = match command {
        MpiCommand::Rebuild { json } => {
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{msg:>13} [{bar:40}] {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let report = repo
                .rebuild_identities("system:admin", &|stage: &str, done: u64, total: u64| {
                    bar.set_message(stage.to_string());
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            bar.finish_and_clear();
            let report = match report {
                Ok(report) => report,
                Err(e) => return refused(e),
            };
            if json {
                println!(
                    "{}",
                    json!({
                        "patients": report.patients,
                        "identities": report.identities,
                        "pairsCompared": report.pairs_compared,
                        "reviews": report.reviews,
                        "moved": report.moved,
                        "trainedOn": report.trained_on,
                    })
                );
            } else {
                println!(
                    "{} Patients, {} identities, {} pairs compared, {} to review, {} moved{}",
                    report.patients,
                    report.identities,
                    report.pairs_compared,
                    report.reviews,
                    report.moved,
                    if report.trained_on > 0 {
                        format!(", model trained on {}", report.trained_on)
                    } else {
                        ", built-in model".to_string()
                    }
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        MpiCommand::Reviews { count, json } => repo
            .mpi_reviews(&who, &[("_count".into(), count.to_string())])
            .await
            .map(|v| (v, json)),
        MpiCommand::Link { a, b, reason, json } => repo
            .mpi_decide(&who, true, &decision(&a, &b, &reason))
            .await
            .map(|v| (v, json)),
        MpiCommand::Unlink { a, b, reason, json } => repo
            .mpi_decide(&who, false, &decision(&a, &b, &reason))
            .await
            .map(|v| (v, json)),
        MpiCommand::History {
            patient,
            identity,
            count,
            json,
        } => {
            let mut params = vec![("_count".to_string(), count.to_string())];
            params.extend(patient.map(|p| ("patient".to_string(), p)));
            params.extend(identity.map(|i| ("identity".to_string(), i)));
            repo.mpi_history(&who, &params).await.map(|v| (v, json))
        }
        MpiCommand::SamePerson { patient } => match repo.same_person(&patient).await {
            Ok(ids) => {
                for id in ids {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => return refused(e),
        },
    };
    match answer {
        Ok((value, true)) => println!("{value}"),
        Ok((value, false)) => print_parameters(&value),
        Err(e) => return refused(e),
    }
    Ok(ExitCode::SUCCESS)
}

fn decision(a: &str, b: &str, reason: &str) -> Value {
    json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "patient-a", "valueString": a },
            { "name": "patient-b", "valueString": b },
            { "name": "reason", "valueString": reason },
        ],
    })
}

/// One line per parameter (its parts tab-separated as `name=value`).
fn print_parameters(value: &Value) {
    let text = |v: &Value| -> String {
        for key in [
            "valueString",
            "valueCode",
            "valueInstant",
            "valueDecimal",
            "valueBoolean",
        ] {
            if let Some(x) = v.get(key) {
                return x.as_str().map_or_else(|| x.to_string(), str::to_string);
            }
        }
        v["valueReference"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for p in value["parameter"].as_array().into_iter().flatten() {
        match p["part"].as_array() {
            Some(parts) => println!(
                "{}",
                parts
                    .iter()
                    .map(|q| format!("{}={}", q["name"].as_str().unwrap_or(""), text(q)))
                    .collect::<Vec<_>>()
                    .join("\t")
            ),
            None => println!("{}={}", p["name"].as_str().unwrap_or(""), text(p)),
        }
    }
}

fn refused(e: exchange::repository::Error) -> anyhow::Result<ExitCode> {
    if e.status() >= 500 {
        return Err(anyhow::anyhow!("{e}"));
    }
    eprintln!("nutmeg: refused ({}):", e.status());
    for issue in e.issues() {
        eprintln!("  - {}", issue.diagnostics);
    }
    Ok(ExitCode::FAILURE)
}
