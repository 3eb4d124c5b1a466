//! The operator's commands for the EHR compatibility catalog, the licensing board's roster and the
//! mandate's compliance report: `nutmeg admin catalog add|list|set-status|import|requests`,
//! `nutmeg admin roster import|imports|ambiguous|match|exempt|unexempt`, and
//! `nutmeg admin compliance report`. Each prints a readable summary, or with `--json` one JSON
//! document; a refused request prints every reason on stderr and exits with 1, storing nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use exchange::catalog::{self, ProductForm};
use exchange::compliance::{self as comp, Roster};
use exchange::repository::Repository;
use onboard::application::FieldError;
use onboard::mandate::Status;
use onboard::roster::Matched;
use onboard::{format_date, parse_date, Date};
use serde_json::{json, Value};
use store::{
    LicenceKey, LicenseeExemption, MatchDecision, RosterImport, StoreError, StoredLicensee,
};

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Add a product to the EHR compatibility catalog; prints its id.
    Add {
        #[arg(long)]
        vendor: String,
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: Option<String>,
        /// The ONC Certified Health IT Product List id.
        #[arg(long)]
        onc_certification: Option<String>,
        /// What it can exchange: fhir-r4, ccda, hl7v2, direct (comma separated).
        #[arg(long, default_value = "")]
        capabilities: String,
        /// connected, compatible or not-yet-compatible.
        #[arg(long)]
        status: String,
        #[arg(long)]
        json: bool,
    },
    /// List the catalog (connected first), or the products matching --search.
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a product's status.
    SetStatus {
        /// The product's id.
        id: String,
        /// connected, compatible or not-yet-compatible.
        status: String,
        #[arg(long)]
        json: bool,
    },
    /// Add or update (by vendor, product and version) every product of a CSV file with the header
    /// vendor,product,version,onc_certification,capabilities,status; a file with any bad row
    /// stores nothing.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Providers' requests to add or review products, counted per product (most asked first),
    /// with the participants using each.
    Requests {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RosterCommand {
    /// Import a licensing board's roster (CSV: name, licence type, licence number, NPI, status,
    /// address, city, state, zip, county). Every bad row is named; a file with bad rows stores
    /// nothing unless --skip-bad-rows, which stores the good rows and records how many were left
    /// out.
    Import {
        file: PathBuf,
        /// The board's state (two letters), for rows that give none.
        #[arg(long)]
        state: String,
        /// Store the good rows of a file that has bad ones.
        #[arg(long)]
        skip_bad_rows: bool,
        #[arg(long)]
        json: bool,
    },
    /// The imports, oldest first.
    Imports {
        #[arg(long)]
        json: bool,
    },
    /// Licensees who fit several applicants equally: the operator decides with `roster match`.
    Ambiguous {
        #[arg(long)]
        json: bool,
    },
    /// Decide whom a licensee is: a participant or application id, or --none.
    Match {
        #[command(flatten)]
        licence: LicenceArgs,
        #[arg(long, required_unless_present = "none", conflicts_with = "none")]
        participant: Option<String>,
        /// The licensee is none of the exchange's applicants.
        #[arg(long)]
        none: bool,
        /// Why (kept with the decision).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Record an exemption of the mandate for a licensee (its id from the mandate, since when,
    /// why), e.g. employee-of-a-connected-organization.
    Exempt {
        #[command(flatten)]
        licence: LicenceArgs,
        #[arg(long)]
        exemption: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        since: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an exemption recorded by mistake.
    Unexempt {
        #[command(flatten)]
        licence: LicenceArgs,
        #[arg(long)]
        exemption: String,
        #[arg(long)]
        json: bool,
    },
}

/// A licensee's licence on the command line.
#[derive(clap::Args, Debug)]
pub struct LicenceArgs {
    /// The licence type code (lmft, lcsw, physician, hospital...).
    #[arg(long)]
    pub licence_type: String,
    #[arg(long)]
    pub licence_number: String,
    /// Two letters.
    #[arg(long)]
    pub state: String,
}

impl LicenceArgs {
    fn key(&self) -> LicenceKey {
        LicenceKey {
            licence_type: onboard::roster::licence_type_code(&self.licence_type)
                .unwrap_or(self.licence_type.trim())
                .to_string(),
            licence_number: onboard::application::licence_number(&self.licence_number),
            licence_state: self.state.trim().to_ascii_uppercase(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ComplianceCommand {
    /// The compliance report on a day: counts by licence type and county, and with --csv the
    /// licensing board's file (one line per active licensee).
    Report {
        /// YYYY-MM-DD [default: today].
        #[arg(long)]
        as_of: Option<String>,
        /// Write the board's CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

/// Today (UTC).
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Prints refusals on stderr; exit code 1.
fn refuse(reasons: &[String]) -> ExitCode {
    eprintln!("nutmeg: refused:");
    for r in reasons {
        eprintln!("  - {r}");
    }
    ExitCode::FAILURE
}

fn field_reasons(errors: &[FieldError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field.replace('_', "-"), e.message))
        .collect()
}

fn product_json(p: &onboard::catalog::Product) -> Value {
    json!({
        "id": p.id,
        "vendor": p.vendor,
        "product": p.product,
        "version": p.version,
        "oncCertification": p.onc_certification,
        "capabilities": p.capabilities.iter().map(|c| c.code()).collect::<Vec<_>>(),
        "status": p.status.code(),
    })
}

fn product_line(p: &onboard::catalog::Product) -> String {
    let caps: Vec<&str> = p.capabilities.iter().map(|c| c.code()).collect();
    format!(
        "{}\t{}\t{}\t{}\tonc {}",
        p.id,
        p.status.code(),
        p.name(),
        if caps.is_empty() {
            "-".to_string()
        } else {
            caps.join(",")
        },
        p.onc_certification.as_deref().unwrap_or("-")
    )
}

/// `nutmeg admin catalog ...`.
pub async fn catalog(repo: &Repository, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    match command {
        CatalogCommand::Add {
            vendor,
            product,
            version,
            onc_certification,
            capabilities,
            status,
            json,
        } => {
            let form = ProductForm {
                vendor,
                product,
                version: version.unwrap_or_default(),
                onc_certification: onc_certification.unwrap_or_default(),
                capabilities,
                status,
            };
            let p = match form.check(&new_id(), now_ms()) {
                Ok(p) => p,
                Err(errors) => return Ok(refuse(&field_reasons(&errors))),
            };
            match store.add_ehr_product(p.clone()).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => {
                    return Ok(refuse(&[format!(
                        "the catalog already lists {} (vendor, product and version); change its \
                         status with `catalog set-status`",
                        catalog::product_of(&p).name()
                    )]))
                }
                Err(e) => return Err(e.into()),
            }
            let p = catalog::product_of(&p);
            if json {
                println!("{}", product_json(&p));
            } else {
                println!("{}", p.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::List { search, json } => {
            let all = catalog::products(store).await?;
            let shown = onboard::catalog::search(&all, search.as_deref().unwrap_or(""));
            if json {
                println!(
                    "{}",
                    Value::Array(shown.iter().map(|p| product_json(p)).collect())
                );
            } else {
                for p in shown {
                    println!("{}", product_line(p));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::SetStatus { id, status, json } => {
            let Some(status) = onboard::catalog::Status::parse(status.trim()) else {
                return Ok(refuse(&[format!(
                    "status: unknown status `{status}`: use connected, compatible or not-yet-compatible"
                )]));
            };
            if !store
                .set_ehr_product_status(&id, status.code(), now_ms())
                .await?
            {
                return Ok(refuse(&[format!(
                    "no product with id `{id}` in the catalog"
                )]));
            }
            let all = catalog::products(store).await?;
            let p = all.iter().find(|p| p.id == id);
            match (p, json) {
                (Some(p), true) => println!("{}", product_json(p)),
                (Some(p), false) => println!("{}", product_line(p)),
                _ => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Import { file, json } => {
            let text = match read_text(&file) {
                Ok(text) => text,
                Err(reason) => return Ok(refuse(&[reason])),
            };
            let products = match catalog::read_import(&text, now_ms(), new_id) {
                Ok(products) => products,
                Err(problems) => {
                    let mut reasons: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    reasons.push(format!(
                        "nothing was stored from {}: correct the rows above and import it again",
                        file.display()
                    ));
                    return Ok(refuse(&reasons));
                }
            };
            let (added, updated) = store.import_ehr_products(products).await?;
            if json {
                println!("{}", json!({ "added": added, "updated": updated }));
            } else {
                println!("{added} added, {updated} updated");
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Requests { json } => {
            let all = catalog::products(store).await?;
            let requests = store.ehr_requests().await?;
            let candidates = comp::candidates(repo).await?;
            let usage = comp::product_usage(&candidates);
            let tally = catalog::tally(&all, &requests, &usage);
            if json {
                let lines: Vec<Value> = tally
                    .iter()
                    .map(|t| {
                        json!({
                            "key": t.key,
                            "name": t.asked_as,
                            "inCatalog": !t.products.is_empty(),
                            "status": t.products.first().map(|p| p.status.code()),
                            "requests": t.requests,
                            "addRequests": t.add_requests,
                            "reviewRequests": t.review_requests,
                            "participants": t.participants,
                        })
                    })
                    .collect();
                println!("{}", Value::Array(lines));
            } else {
                for t in &tally {
                    let status = t
                        .products
                        .first()
                        .map(|p| p.status.code())
                        .unwrap_or("not in the catalog");
                    println!(
                        "{}\t{} requests ({} add, {} review)\t{} participants\t{}",
                        t.asked_as,
                        t.requests,
                        t.add_requests,
                        t.review_requests,
                        t.participants,
                        status
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_text(file: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", file.display()))
}

/// The licensees of a board's file ready to store, or every bad row. A licence listed twice is a
/// bad row (the later one).
pub fn roster_rows(
    text: &str,
    state: &str,
) -> Result<(Vec<StoredLicensee>, Vec<onboard::roster::RowError>), onboard::roster::RowError> {
    let (licensees, mut errors) = onboard::roster::read(text, state)?;
    let mut seen = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(licensees.len());
    for l in licensees {
        let key = LicenceKey {
            licence_type: l.licence.kind.clone(),
            licence_number: l.licence.number.clone(),
            licence_state: l.licence.state.clone(),
        };
        if let Some(first) = seen.insert(key.clone(), l.line) {
            errors.push(onboard::roster::RowError {
                line: l.line,
                message: format!("the same licence as line {first}"),
            });
            continue;
        }
        rows.push(StoredLicensee {
            licence: key,
            import_id: String::new(),
            line: i64::try_from(l.line).unwrap_or(i64::MAX),
            name: l.name,
            npi: l.npi,
            status: l.status,
            address_line: l.address_line,
            city: l.city,
            postcode: l.postcode,
            county: l.county,
        });
    }
    errors.sort_by_key(|e| e.line);
    Ok((rows, errors))
}

fn valid_state(state: &str) -> bool {
    state.len() == 2 && state.bytes().all(|b| b.is_ascii_alphabetic())
}

/// `nutmeg admin roster ...`.
pub async fn roster(
    repo: &Repository,
    config: &Config,
    command: RosterCommand,
) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    match command {
        RosterCommand::Import {
            file,
            state,
            skip_bad_rows,
            json,
        } => {
            let state = state.trim().to_ascii_uppercase();
            if !valid_state(&state) {
                return Ok(refuse(&[format!(
                    "--state: `{state}` is not a two-letter state code"
                )]));
            }
            let bytes = match std::fs::read(&file) {
                Ok(bytes) => bytes,
                Err(e) => return Ok(refuse(&[format!("cannot read {}: {e}", file.display())])),
            };
            let Ok(text) = String::from_utf8(bytes.clone()) else {
                return Ok(refuse(&[format!("{} is not UTF-8 text", file.display())]));
            };
            let (rows, errors) = match roster_rows(&text, &state) {
                Ok(read) => read,
                Err(e) => {
                    return Ok(refuse(&[
                        e.to_string(),
                        format!("nothing was stored from {}", file.display()),
                    ]))
                }
            };
            if !errors.is_empty() && !skip_bad_rows {
                let mut reasons: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                reasons.push(format!(
                    "nothing was stored from {}: {} bad row(s) of {}. Correct them and import \
                     again, or run again with --skip-bad-rows to store the {} good row(s)",
                    file.display(),
                    errors.len(),
                    errors.len() + rows.len(),
                    rows.len()
                ));
                return Ok(refuse(&reasons));
            }
            if rows.is_empty() {
                return Ok(refuse(&[format!(
                    "{} lists no licensee: nothing was stored",
                    file.display()
                )]));
            }
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let import = RosterImport {
                import_id: new_id(),
                state,
                source: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
                rows: i64::try_from(rows.len() + errors.len()).unwrap_or(i64::MAX),
                rejected: i64::try_from(errors.len()).unwrap_or(i64::MAX),
                imported: now_ms(),
            };
            let stored = rows.len();
            store.import_roster(import.clone(), rows).await?;
            for e in &errors {
                eprintln!("nutmeg: left out {e}");
            }
            if json {
                println!(
                    "{}",
                    json!({
                        "import": import.import_id,
                        "state": import.state,
                        "stored": stored,
                        "rejected": errors.len(),
                        "sha256": import.sha256,
                    })
                );
            } else {
                println!(
                    "{}\t{} licensees stored, {} rows left out",
                    import.import_id,
                    stored,
                    errors.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RosterCommand::Imports { json } => {
            let imports = store.roster_imports().await?;
            if json {
                let all: Vec<Value> = imports
                    .iter()
                    .map(|i| {
                        json!({
                            "import": i.import_id, "state": i.state, "source": i.source,
                            "sha256": i.sha256, "rows": i.rows, "rejected": i.rejected,
                            "imported": i.imported,
                        })
                    })
                    .collect();
                println!("{}", Value::Array(all));
            } else {
                for i in &imports {
                    println!(
                        "{}\t{}\t{}\t{} rows, {} left out",
                        i.import_id, i.state, i.source, i.rows, i.rejected
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RosterCommand::Ambiguous { json } => {
            let roster = Roster::load(store, comp::candidates(repo).await?).await?;
            let list: Vec<Value> = roster
                .ambiguous()
                .iter()
                .map(|(i, participants, by)| {
                    let l = &roster.licensees[*i];
                    json!({
                        "licenceType": l.licence.kind,
                        "licenceNumber": l.licence.number,
                        "state": l.licence.state,
                        "name": l.name,
                        "npi": l.npi,
                        "by": by.code(),
                        "candidates": participants.iter().map(|p| {
                            let c = roster.candidates.get(p);
                            json!({ "id": p, "name": c.map(|c| c.legal_name.clone()) })
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if json {
                println!("{}", Value::Array(list));
            } else {
                for a in &list {
                    let names: Vec<String> = a["candidates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            format!(
                                "{} ({})",
                                c["id"].as_str().unwrap_or_default(),
                                c["name"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    println!(
                        "{} {} {}\t{}\tby {}\t{}",
                        a["licenceType"].as_str().unwrap_or_default(),
                        a["state"].as_str().unwrap_or_default(),
                        a["licenceNumber"].as_str().unwrap_or_default(),
                        a["name"].as_str().unwrap_or_default(),
                        a["by"].as_str().unwrap_or_default(),
                        names.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RosterCommand::Match {
            licence,
            participant,
            none,
            reason,
            json,
        } => {
            let key = licence.key();
            let participant = if none { None } else { participant };
            if reason.trim().is_empty() {
                return Ok(refuse(&["--reason: say why".to_string()]));
            }
            if let Some(p) = &participant {
                let candidates = comp::candidates(repo).await?;
                if !candidates.iter().any(|c| &c.id == p) {
                    return Ok(refuse(&[format!(
                        "--participant: no participant or application `{p}`"
                    )]));
                }
            }
            let decided = store
                .decide_licensee_match(MatchDecision {
                    licence: key.clone(),
                    participant: participant.clone(),
                    decided_by: "admin".into(),
                    reason: reason.trim().to_string(),
                    decided: now_ms(),
                })
                .await?;
            if !decided {
                return Ok(refuse(&[no_licensee(&key)]));
            }
            if json {
                println!(
                    "{}",
                    json!({ "licenceNumber": key.licence_number, "participant": participant })
                );
            } else {
                println!(
                    "{} {} {}\t{}",
                    key.licence_type,
                    key.licence_state,
                    key.licence_number,
                    participant.as_deref().unwrap_or("(none)")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RosterCommand::Exempt {
            licence,
            exemption,
            since,
            reason,
            json,
        } => {
            let key = licence.key();
            let mut reasons = Vec::new();
            let mandate = &config.mandate;
            if mandate.exemption(exemption.trim()).is_none() {
                let known: Vec<&str> = mandate.exemptions.iter().map(|e| e.id.as_str()).collect();
                reasons.push(format!(
                    "--exemption: the mandate has no exemption `{exemption}` (it has: {})",
                    known.join(", ")
                ));
            }
            let since_date = parse_date(&since);
            if since_date.is_none() {
                reasons.push(format!("--since: `{since}` is not a date YYYY-MM-DD"));
            }
            if reason.trim().is_empty() {
                reasons.push("--reason: say why".to_string());
            }
            if !reasons.is_empty() {
                return Ok(refuse(&reasons));
            }
            let added = store
                .add_licensee_exemption(LicenseeExemption {
                    licence: key.clone(),
                    exemption: exemption.trim().to_string(),
                    since: since_date.map(format_date).unwrap_or_default(),
                    reason: reason.trim().to_string(),
                    recorded_by: "admin".into(),
                    recorded: now_ms(),
                })
                .await;
            match added {
                Ok(true) => {}
                Ok(false) => return Ok(refuse(&[no_licensee(&key)])),
                Err(StoreError::Conflict { .. }) => {
                    return Ok(refuse(&[format!(
                        "the exemption `{exemption}` is already recorded for this licensee"
                    )]))
                }
                Err(e) => return Err(e.into()),
            }
            if json {
                println!(
                    "{}",
                    json!({ "licenceNumber": key.licence_number, "exemption": exemption.trim(), "since": since.trim() })
                );
            } else {
                println!(
                    "{} {} {}\texempt ({}) since {}",
                    key.licence_type,
                    key.licence_state,
                    key.licence_number,
                    exemption.trim(),
                    since.trim()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RosterCommand::Unexempt {
            licence,
            exemption,
            json,
        } => {
            let key = licence.key();
            if !store
                .remove_licensee_exemption(&key, exemption.trim())
                .await?
            {
                return Ok(refuse(&[format!(
                    "no exemption `{exemption}` is recorded for {} {} {}",
                    key.licence_type, key.licence_state, key.licence_number
                )]));
            }
            if json {
                println!("{}", json!({ "removed": true }));
            } else {
                println!("removed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn no_licensee(key: &LicenceKey) -> String {
    format!(
        "no licensee {} {} {} on any imported roster",
        key.licence_type, key.licence_state, key.licence_number
    )
}

/// The report's counts as JSON.
pub fn counts_json(c: &onboard::compliance::Counts) -> Value {
    json!({
        "compliant": c.compliant,
        "notYetCompliant": c.pending + c.overdue,
        "overdue": c.overdue,
        "exempt": c.exempt,
        "notRequired": c.not_required,
        "total": c.total(),
    })
}

/// `nutmeg admin compliance ...`.
pub async fn compliance(
    repo: &Repository,
    config: &Config,
    command: ComplianceCommand,
) -> anyhow::Result<ExitCode> {
    let ComplianceCommand::Report { as_of, csv, json } = command;
    let as_of = match as_of.as_deref() {
        None => today(),
        Some(text) => match parse_date(text) {
            Some(d) => d,
            None => {
                return Ok(refuse(&[format!(
                    "--as-of: `{text}` is not a date YYYY-MM-DD"
                )]))
            }
        },
    };
    let roster = Roster::load(repo.store(), comp::candidates(repo).await?).await?;
    let mandate = &config.mandate;
    let report = roster.report(mandate, as_of);
    if let Some(path) = &csv {
        let text = onboard::compliance::to_csv(&report);
        if let Err(e) = std::fs::write(path, text) {
            return Ok(refuse(&[format!("cannot write {}: {e}", path.display())]));
        }
    }
    let ambiguous = report
        .lines
        .iter()
        .filter(|l| matches!(l.matched, Matched::Ambiguous { .. }))
        .count();
    if json {
        let by = |m: &std::collections::BTreeMap<String, onboard::compliance::Counts>| {
            m.iter()
                .map(|(k, c)| (k.clone(), counts_json(c)))
                .collect::<serde_json::Map<String, Value>>()
        };
        println!(
            "{}",
            json!({
                "mandate": mandate.name,
                "asOf": format_date(as_of),
                "totals": counts_json(&report.totals),
                "byLicenceType": by(&report.by_type),
                "byCounty": by(&report.by_county),
                "inactive": report.inactive,
                "ambiguous": ambiguous,
                "csv": csv.as_ref().map(|p| p.display().to_string()),
            })
        );
    } else {
        let t = &report.totals;
        println!(
            "{} mandate as of {}: {} active licensees: {} compliant, {} not yet compliant ({} past \
             the deadline), {} exempt, {} not required; {} inactive left out; {} ambiguous matches",
            mandate.name,
            format_date(as_of),
            t.total(),
            t.compliant,
            t.pending + t.overdue,
            t.overdue,
            t.exempt,
            t.not_required,
            report.inactive,
            ambiguous
        );
        for (kind, c) in &report.by_type {
            println!(
                "type\t{kind}\t{} compliant\t{} not yet\t{} exempt",
                c.compliant,
                c.pending + c.overdue,
                c.exempt
            );
        }
        for (county, c) in &report.by_county {
            println!(
                "county\t{county}\t{} compliant\t{} not yet\t{} exempt",
                c.compliant,
                c.pending + c.overdue,
                c.exempt
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A status's code and its deciding date, for tables.
pub fn decided_on(status: &Status) -> String {
    match status {
        Status::Compliant { done_on, .. } => format_date(*done_on),
        Status::Exempt { since, .. } => format_date(*since),
        Status::NotYetCompliant { deadline, .. } => format!("due {}", format_date(*deadline)),
        Status::NotRequired => String::new(),
    }
}
