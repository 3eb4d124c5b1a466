//! The consent purge in the binary: `nutmeg admin consent purge` (one run, now or at `--now`,
//! optionally a dry run), and the periodic run inside `nutmeg serve` (every `purge_interval`
//! seconds, with the configured window). The job itself is `exchange::purge`; several processes
//! sharing one PostgreSQL database may each run it (a resource is removed, and recorded, once).

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use exchange::purge::{Purge, PurgeReport};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Delete the clinical data of every patient opted out longer than the window (the
    /// configured purge_window_days, in business days), keeping their Consents and the audit
    /// trail. Prints what was (or would be) purged: counts per patient, never content.
    Purge {
        /// Decide as of this instant (RFC 3339, e.g. 2026-01-16T10:00:00Z) instead of now.
        #[arg(long, value_parser = parse_instant)]
        now: Option<OffsetDateTime>,
        /// Only say what would be purged.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| "expected an RFC 3339 instant such as 2026-01-16T10:00:00Z".to_string())
}

/// The purge over the repository's store with its decision point's policy (Connecticut's when it
/// enforces none).
pub fn job(repo: &exchange::repository::Repository, config: &Config) -> Purge {
    let policy = repo
        .decision_point()
        .privacy()
        .map(|p| p.policy.clone())
        .unwrap_or_else(privacy::policy::Policy::connecticut);
    Purge::new(repo.store().clone(), policy, config.purge_window_days)
}

/// `nutmeg admin consent ...`.
pub async fn run(
    repo: &exchange::repository::Repository,
    config: &Config,
    command: ConsentCommand,
) -> anyhow::Result<ExitCode> {
    let ConsentCommand::Purge { now, dry_run, json } = command;
    let now = now.unwrap_or_else(OffsetDateTime::now_utc);
    let report = job(repo, config).run(now, dry_run).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &PurgeReport) {
    let verb = if report.dry_run {
        "would purge"
    } else {
        "purged"
    };
    println!(
        "consent purge at {} (window {} business days{})",
        report.now,
        report.window_days,
        if report.dry_run { ", dry run" } else { "" }
    );
    if report.persons.is_empty() {
        println!("no patient is opted out");
    }
    for person in &report.persons {
        let patients = person.patients.join(",");
        if !person.is_due {
            println!(
                "patients {patients}: opted out {}, due {}: nothing yet",
                person.opted_out, person.due
            );
            continue;
        }
        let counts: Vec<String> = person
            .resources
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let total: u64 = person.resources.values().sum();
        let versions = if report.dry_run {
            String::new()
        } else {
            format!(", {} versions", person.versions)
        };
        let kept: Vec<String> = person
            .kept_for_public_health
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let kept = if kept.is_empty() {
            String::new()
        } else {
            format!("; kept for public health: {}", kept.join(", "))
        };
        println!(
            "patients {patients}: opted out {}, due {}: {verb} {total} resources ({}){versions}{kept}",
            person.opted_out,
            person.due,
            if counts.is_empty() {
                "none left".to_string()
            } else {
                counts.join(", ")
            }
        );
    }
    println!("{verb} {} resources in all", report.resources());
}

/// Runs the purge every `interval` until the process ends; a failed run is logged (no patient
/// data) and retried at the next tick.
pub fn spawn_periodic(purge: Purge, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The first run a minute after start-up (not during it), then every `interval`.
        let first = tokio::time::Instant::now() + interval.min(Duration::from_secs(60));
        let mut ticks = tokio::time::interval_at(first, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match purge.run(OffsetDateTime::now_utc(), false).await {
                Ok(report) => {
                    let resources = report.resources();
                    if resources > 0 {
                        tracing::info!(resources, "consent purge run");
                    } else {
                        tracing::debug!("consent purge run: nothing to remove");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "consent purge run failed"),
            }
        }
    })
}
