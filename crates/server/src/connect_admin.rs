//! `nutmeg admin application` and `nutmeg admin agreement`: connection applications and agreements
//! from the command line, for bulk entry and scripts, through the same use cases as the portal and
//! the API (`exchange::onboarding`). A refusal (a bad field, a bad CSV row, a step out of order, a
//! version not newer) prints every reason on stderr and exits 1, having stored nothing;
//! `agreement verify` exits 1 naming each signature whose document no longer hashes to what was
//! signed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use exchange::onboarding::{
    Applied, Credential, Decision, NewAccount, NewDocument, Onboarding, OnboardingError, Submission,
};
use onboard::application::{FieldError, Form};
use onboard::workflow::{Path, Step};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::http::onboarding::view_json;

#[derive(Subcommand, Debug)]
pub enum ApplicationCommand {
    /// Enter an application (the public form's fields as flags), or many from a CSV file whose
    /// header names the fields (`--csv`): every bad row is named and nothing is stored unless
    /// every row is good. Each applicant gets a portal account (login: the contact's email)
    /// without a password, and the command prints the one-time link (valid for two weeks) to send
    /// them to choose one; a contact whose email is already a login gets none (said).
    Add(Box<ApplicationArgs>),
    /// List the applications (the operator's queue), oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one application: its checklist, duplicates and agreements to sign.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark a checklist step done (it must be the path's next step).
    Step {
        id: String,
        /// application-received, package-sent, agreements-signed, endpoints-registered,
        /// test-messages-passed, direct-address-issued, test-message-exchanged, live.
        step: String,
        /// Who did it, as the checklist records it [default: admin].
        #[arg(long, default_value = "admin")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Decide about an application that has no participant (it looked like one on file, or the
    /// registry refused it), with a reason: --distinct (another applicant: register its
    /// participant), --existing PARTICIPANT (one already registered: the application and the
    /// applicant's account join it) or --duplicate-of APPLICATION (the same applicant: close it).
    /// Until then no step can be taken on it; a decision is not changed.
    Decide {
        id: String,
        #[arg(long)]
        distinct: bool,
        #[arg(long)]
        existing: Option<String>,
        #[arg(long)]
        duplicate_of: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "admin")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Move an application to the other path, with a reason.
    Path {
        id: String,
        /// `ehr` or `secure-messaging`.
        path: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "admin")]
        by: String,
        #[arg(long)]
        json: bool,
    },
}

/// The form's fields as flags (each optional here, so that a missing one is named with the
/// others rather than by clap alone).
#[derive(Args, Debug, Default)]
pub struct ApplicationArgs {
    /// A CSV file of applications (header: kind,legal_name,npi,licence_type,licence_number,
    /// licence_state,address_line,city,state,postcode,ehr,ehr_other,signer_name,signer_title,
    /// signer_email,contact_name,contact_email,contact_phone).
    #[arg(long, conflicts_with_all = ["kind", "legal_name", "npi"])]
    pub csv: Option<PathBuf>,
    /// `organization` or `solo-practitioner`.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub legal_name: Option<String>,
    #[arg(long)]
    pub npi: Option<String>,
    /// A licence type code (lmft, lcsw, physician, hospital...).
    #[arg(long)]
    pub licence_type: Option<String>,
    #[arg(long)]
    pub licence_number: Option<String>,
    #[arg(long)]
    pub licence_state: Option<String>,
    #[arg(long)]
    pub address_line: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub postcode: Option<String>,
    /// A catalog product id, `other` or `none`.
    #[arg(long)]
    pub ehr: Option<String>,
    #[arg(long)]
    pub ehr_other: Option<String>,
    #[arg(long)]
    pub signer_name: Option<String>,
    #[arg(long)]
    pub signer_title: Option<String>,
    #[arg(long)]
    pub signer_email: Option<String>,
    #[arg(long)]
    pub contact_name: Option<String>,
    #[arg(long)]
    pub contact_email: Option<String>,
    #[arg(long)]
    pub contact_phone: Option<String>,
    /// Who entered it, as the checklist records it [default: admin].
    #[arg(long, default_value = "admin")]
    pub by: String,
    #[arg(long)]
    pub json: bool,
}

impl ApplicationArgs {
    fn form(&self) -> Form {
        let get = |v: &Option<String>| v.clone().unwrap_or_default();
        Form {
            kind: get(&self.kind),
            legal_name: get(&self.legal_name),
            npi: get(&self.npi),
            licence_type: get(&self.licence_type),
            licence_number: get(&self.licence_number),
            licence_state: get(&self.licence_state),
            address_line: get(&self.address_line),
            city: get(&self.city),
            state: get(&self.state),
            postcode: get(&self.postcode),
            ehr: get(&self.ehr),
            ehr_other: get(&self.ehr_other),
            signer_name: get(&self.signer_name),
            signer_title: get(&self.signer_title),
            signer_email: get(&self.signer_email),
            contact_name: get(&self.contact_name),
            contact_email: get(&self.contact_email),
            contact_phone: get(&self.contact_phone),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AgreementCommand {
    /// Publish a version of an agreement from a text file (its exact bytes, UTF-8).
    Publish {
        /// participation, baa, dsa, or another kind.
        #[arg(long)]
        kind: String,
        /// A whole number greater than every published version of this kind.
        #[arg(long)]
        version: i64,
        /// The file holding the exact text.
        #[arg(long)]
        file: PathBuf,
        /// The participant types that must sign it, separated by commas (hospital, lab, clinic,
        /// group-practice, solo-practice, public-health, exchange-operator), or `*` for all.
        #[arg(long)]
        required_for: String,
        /// The title signers see [default: from the kind].
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every published version.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Recompute the SHA-256 of every agreement version and of every signed one: exit 1 naming
    /// each signature whose document is missing or no longer the text that was signed.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// CLI field names: the form's, as flags.
fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

fn refuse(lines: &[String]) -> ExitCode {
    eprintln!("nutmeg: refused:");
    for line in lines {
        eprintln!("  - {line}");
    }
    ExitCode::FAILURE
}

fn problems(errors: &[FieldError], name: impl Fn(&str) -> String) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{}: {}", name(&e.field), e.message))
        .collect()
}

/// A refusal's lines, or the error of a failure of ours.
fn refused(error: OnboardingError) -> anyhow::Result<ExitCode> {
    if error.is_internal() {
        return Err(anyhow::anyhow!("{error}"));
    }
    Ok(match error {
        OnboardingError::Invalid(errors) => refuse(&problems(&errors, flag)),
        other => refuse(&[other.to_string()]),
    })
}

fn print_view(view: &exchange::onboarding::View, json: bool) {
    if json {
        println!("{}", view_json(view));
        return;
    }
    let d = &view.record.data;
    println!(
        "{}\t{}\t{}\tnpi {}\tpath {}\tnext {}{}",
        d.application_id,
        d.legal_name,
        d.kind,
        d.npi,
        d.path,
        view.next.map(Step::code).unwrap_or("finished"),
        if view.overdue.is_some() {
            "\tOVERDUE"
        } else {
            ""
        }
    );
}

fn print_detail(view: &exchange::onboarding::View) {
    print_view(view, false);
    let d = &view.record.data;
    println!(
        "  participant\t{}",
        d.participant_id.as_deref().unwrap_or("-")
    );
    for s in &view.record.steps {
        println!("  done\t{}\tby {}\tat {}", s.step, s.by, view_time(s.at));
    }
    for c in &view.record.path_changes {
        println!(
            "  path\t{} -> {}\tby {}\tat {}\t{}",
            c.from,
            c.to,
            c.by,
            view_time(c.at),
            c.reason
        );
    }
    if let Some(o) = &view.overdue {
        println!(
            "  overdue\t{}\tdue {}",
            o.step.code(),
            view_time(exchange::onboarding::millis(o.due))
        );
    }
    if let Some(d) = &view.record.decision {
        let what = match (&d.duplicate_of, &d.participant_id) {
            (Some(other), _) => format!("duplicate of {other}: closed"),
            (None, Some(participant)) => format!("{} participant {participant}", d.decision),
            (None, None) => d.decision.clone(),
        };
        println!(
            "  decided\t{what}\tby {}\tat {}\t{}",
            d.by,
            view_time(d.at),
            d.reason
        );
    }
    for dup in &view.duplicates {
        println!(
            "  duplicate\t{}\tsame {}",
            dup.application,
            dup.by.join(" and ")
        );
    }
    for u in &view.must_sign {
        println!("  to sign\t{} version {}", u.kind, u.version);
    }
    for s in &view.signatures {
        println!(
            "  signed\t{} version {}\tby {}\tat {}\t{}",
            s.kind,
            s.version,
            s.signer_name,
            view_time(s.signed_at),
            s.signature_id
        );
    }
}

fn view_time(ms: i64) -> String {
    exchange::onboarding::instant(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads applications from a CSV file: the header names the form's fields; every row is checked
/// before anything is stored, and each bad row named by its line.
fn read_csv(path: &std::path::Path) -> Result<Vec<(usize, Form)>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let records =
        onboard::csv::read(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let Some((header, rows)) = records.split_first() else {
        return Err(vec![format!("{}: the file is empty", path.display())]);
    };
    let known = Form::default();
    let names: Vec<String> = header.cells.iter().map(|c| c.trim().to_string()).collect();
    let mut problems = Vec::new();
    for n in &names {
        let probe = serde_json::to_value(&known).unwrap_or(Value::Null);
        if probe.get(n).is_none() {
            problems.push(format!(
                "line {}: '{n}' is not a field of the application",
                header.line
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if rows.is_empty() {
        return Err(vec![format!(
            "{}: no applications after the header",
            path.display()
        )]);
    }
    let mut forms = Vec::new();
    for row in rows {
        if row.cells.len() != names.len() {
            problems.push(format!(
                "line {}: {} cells, the header has {}",
                row.line,
                row.cells.len(),
                names.len()
            ));
            continue;
        }
        let object: serde_json::Map<String, Value> = names
            .iter()
            .cloned()
            .zip(row.cells.iter().map(|c| Value::String(c.clone())))
            .collect();
        match serde_json::from_value::<Form>(Value::Object(object)) {
            Ok(form) => forms.push((row.line, form)),
            Err(e) => problems.push(format!("line {}: {e}", row.line)),
        }
    }
    if problems.is_empty() {
        Ok(forms)
    } else {
        Err(problems)
    }
}

/// The link's secret of an invitation made with an entered application, and when it ends.
pub struct Invite {
    pub secret: String,
    pub expires: i64,
}

/// An application an operator entered, with the applicant's account to be made without a
/// password: its invitation (for the link) and the submission.
pub fn invited_submission(
    form: Form,
    received_by: String,
    now: OffsetDateTime,
) -> anyhow::Result<(Invite, Submission)> {
    let (secret, invitation) = crate::portal::invite::new_invitation(now.unix_timestamp())?;
    let invite = Invite {
        secret,
        expires: invitation.expires,
    };
    let account = NewAccount {
        user_id: crate::admin::new_client_id()?,
        login: form.contact_email.trim().to_string(),
        display_name: form.contact_name.trim().to_string(),
        credential: Credential::Invitation(invitation),
    };
    Ok((
        invite,
        Submission {
            form,
            account: Some(account),
            received_by,
        },
    ))
}

/// Adds to an entered application's JSON the link its applicant chooses a password with (when an
/// account was made; why not, when none was), and prints them when `print`.
pub fn add_invitation(
    value: &mut Value,
    applied: &Applied,
    base_url: &str,
    invite: &Invite,
    print: bool,
) {
    if applied.record.data.user_id.is_some() {
        let invitation =
            crate::portal::invite::invitation_json(base_url, &invite.secret, invite.expires);
        if print {
            println!(
                "  account {}: send its owner this link to choose a password (works once, \
                 until {}): {}",
                applied.record.data.contact_email,
                invitation["expires"].as_str().unwrap_or_default(),
                invitation["url"].as_str().unwrap_or_default(),
            );
        }
        value["invitation"] = invitation;
    } else if let Some(why) = &applied.no_account {
        if print {
            println!("  no portal account made: {why}");
        }
    }
    value["noAccount"] = json!(applied.no_account);
}

/// `nutmeg admin application ...`.
pub async fn application(
    onboarding: &Onboarding,
    base_url: &str,
    command: ApplicationCommand,
) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    match command {
        ApplicationCommand::Add(args) => {
            let forms = match &args.csv {
                Some(path) => match read_csv(path) {
                    Ok(forms) => forms,
                    Err(problems) => return Ok(refuse(&problems)),
                },
                None => vec![(0, args.form())],
            };
            // Every row is checked before the first is stored: a bad file stores nothing.
            let catalog = onboarding
                .catalog()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Rows that look like each other or like applications on file are stored and shown
            // as duplicates (never merged), as on the form.
            let mut bad = Vec::new();
            for (line, form) in &forms {
                let name = |field: &str| match line {
                    0 => flag(field),
                    n => format!("line {n}: {field}"),
                };
                if let Err(errors) = onboarding.precheck(form, &catalog) {
                    bad.extend(problems(&errors, name));
                }
            }
            if !bad.is_empty() {
                return Ok(refuse(&bad));
            }
            let mut out = Vec::new();
            for (_, form) in forms {
                let (invite, submission) = invited_submission(form, args.by.clone(), now)?;
                let applied = match onboarding.apply(submission, now).await {
                    Ok(applied) => applied,
                    Err(e) => return refused(e),
                };
                let view = match onboarding
                    .view(&applied.record.data.application_id, now)
                    .await
                {
                    Ok(view) => view,
                    Err(e) => return refused(e),
                };
                if !args.json {
                    print_view(&view, false);
                    if let Some(why) = &applied.no_participant {
                        println!("  no participant registered: {why}");
                    }
                }
                let mut value = view_json(&view);
                value["noParticipant"] = json!(applied.no_participant);
                add_invitation(&mut value, &applied, base_url, &invite, !args.json);
                out.push(value);
            }
            if args.json {
                if args.csv.is_some() {
                    println!("{}", Value::Array(out));
                } else if let Some(one) = out.into_iter().next() {
                    println!("{one}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApplicationCommand::List { json } => {
            let views = match onboarding.queue(now).await {
                Ok(views) => views,
                Err(e) => return refused(e),
            };
            if json {
                println!("{}", Value::Array(views.iter().map(view_json).collect()));
            } else {
                for v in &views {
                    print_view(v, false);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApplicationCommand::Show { id, json } => match onboarding.view(&id, now).await {
            Ok(view) => {
                if json {
                    print_view(&view, true);
                } else {
                    print_detail(&view);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e),
        },
        ApplicationCommand::Step { id, step, by, json } => {
            let Some(step) = Step::parse(step.trim()) else {
                let codes: Vec<&str> = Step::ALL.iter().map(|s| s.code()).collect();
                return Ok(refuse(&[format!(
                    "'{step}' is not a checklist step ({})",
                    codes.join(", ")
                )]));
            };
            match onboarding.complete_step(&id, step, &by, now).await {
                Ok(view) => {
                    print_view(&view, json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
        ApplicationCommand::Decide {
            id,
            distinct,
            existing,
            duplicate_of,
            reason,
            by,
            json,
        } => {
            let given = [distinct, existing.is_some(), duplicate_of.is_some()]
                .into_iter()
                .filter(|g| *g)
                .count();
            if given != 1 {
                return Ok(refuse(&[
                    "give one decision: --distinct, --existing PARTICIPANT or --duplicate-of \
                     APPLICATION"
                        .to_string(),
                ]));
            }
            let code = if distinct {
                "distinct"
            } else if existing.is_some() {
                "existing"
            } else {
                "duplicate"
            };
            let decision = match Decision::from_parts(
                code,
                existing.as_deref().unwrap_or_default(),
                duplicate_of.as_deref().unwrap_or_default(),
            ) {
                Ok(decision) => decision,
                Err(e) => return refused(e),
            };
            match onboarding.decide(&id, decision, &by, &reason, now).await {
                Ok(view) => {
                    if json {
                        print_view(&view, true);
                    } else {
                        print_detail(&view);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
        ApplicationCommand::Path {
            id,
            path,
            reason,
            by,
            json,
        } => {
            let Some(path) = Path::parse(path.trim()) else {
                return Ok(refuse(&[format!(
                    "'{path}' is not a path (ehr or secure-messaging)"
                )]));
            };
            match onboarding.change_path(&id, path, &by, &reason, now).await {
                Ok(view) => {
                    print_view(&view, json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
    }
}

fn default_title(kind: &str) -> String {
    match kind {
        "participation" => "Participation agreement".to_string(),
        "baa" => "Business associate terms".to_string(),
        "dsa" => "Data sharing agreement".to_string(),
        other => other.to_string(),
    }
}

fn document_json(d: &store::AgreementDocument) -> Value {
    json!({
        "kind": d.kind,
        "version": d.version,
        "title": d.title,
        "sha256": d.sha256,
        "requiredFor": d.required_for,
        "published": view_time(d.published),
        "publishedBy": d.published_by,
    })
}

/// `nutmeg admin agreement ...`.
pub async fn agreement(
    onboarding: &Onboarding,
    command: AgreementCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        AgreementCommand::Publish {
            kind,
            version,
            file,
            required_for,
            title,
            json,
        } => {
            let text = match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        return Ok(refuse(&[format!(
                            "--file: {} is not UTF-8 text",
                            file.display()
                        )]))
                    }
                },
                Err(e) => {
                    return Ok(refuse(&[format!(
                        "--file: cannot read {}: {e}",
                        file.display()
                    )]))
                }
            };
            let new = NewDocument {
                title: title.unwrap_or_else(|| default_title(&kind)),
                kind,
                version,
                text,
                required_for: required_for
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
                published_by: "admin".to_string(),
            };
            match onboarding.publish(new, OffsetDateTime::now_utc()).await {
                Ok(d) => {
                    if json {
                        println!("{}", document_json(&d));
                    } else {
                        println!("{}\tversion {}\tsha256 {}", d.kind, d.version, d.sha256);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
        AgreementCommand::List { json } => {
            let documents = match onboarding.documents().await {
                Ok(d) => d,
                Err(e) => return refused(e),
            };
            if json {
                println!(
                    "{}",
                    Value::Array(documents.iter().map(document_json).collect())
                );
            } else {
                for d in &documents {
                    println!(
                        "{}\tversion {}\t{}\trequired for {}\tsha256 {}",
                        d.kind,
                        d.version,
                        d.title,
                        d.required_for.join(","),
                        d.sha256
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgreementCommand::Verify { json } => {
            let verified = match onboarding.verify().await {
                Ok(v) => v,
                Err(e) => return refused(e),
            };
            if json {
                println!(
                    "{}",
                    json!({
                        "documents": verified.documents,
                        "signatures": verified.signatures,
                        "ok": verified.findings.is_empty(),
                        "findings": verified.findings.iter().map(|f| json!({
                            "signature": f.signature_id,
                            "application": f.application_id,
                            "message": f.message,
                        })).collect::<Vec<_>>(),
                    })
                );
            }
            if verified.findings.is_empty() {
                if !json {
                    println!(
                        "ok: {} agreement versions, {} signatures: every signed text is the one signed",
                        verified.documents, verified.signatures
                    );
                }
                Ok(ExitCode::SUCCESS)
            } else {
                if !json {
                    eprintln!(
                        "nutmeg: agreement verification failed ({} finding{}):",
                        verified.findings.len(),
                        if verified.findings.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    );
                    for f in &verified.findings {
                        eprintln!("  - {f}");
                    }
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
