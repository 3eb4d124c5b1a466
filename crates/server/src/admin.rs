//! `nutmeg admin`: operator commands that work directly on the database, as `createuser` does for
//! PostgreSQL, for setting up an exchange by hand or from scripts (participants, SMART Backend
//! Services clients, portal accounts) and for checking
//! it (the audit trail's hash chain). Each prints a readable summary, or
//! with `--json` one JSON document on stdout. A refused request (invalid input, a duplicate, a
//! move the workflow does not allow, an unknown id) prints its reasons on stderr and exits with 1.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use exchange::access::Requester;
use exchange::participants::{
    EndpointKind, Kind, Licence, LicenceType, NewParticipant, NewPractitioner, Participant, Status,
};
use exchange::repository::Error;
use serde_json::{json, Value};
use store::{
    AuditCheck, AuditFault, AuditHash, Client, ClientKeys, ClientStatus, NewClient, NewUser, User,
    UserStatus,
};

use crate::config::Config;
use crate::portal::account::{self, RoleCode};
use crate::serve::open_repository;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Participants: the organizations and solo practices connected to the exchange.
    #[command(subcommand)]
    Participant(ParticipantCommand),
    /// Connection applications: bulk entry, the onboarding checklist, changes of path.
    #[command(subcommand)]
    Application(crate::connect_admin::ApplicationCommand),
    /// Agreements: publish versions, list them, verify every signature.
    #[command(subcommand)]
    Agreement(crate::connect_admin::AgreementCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// SMART Backend Services clients: the systems of participants that get access tokens.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Portal accounts: operators, participants' people, and patients.
    #[command(subcommand)]
    User(UserCommand),
    /// Patients' consents: the purge of opted-out patients' data.
    #[command(subcommand)]
    Consent(crate::purge::ConsentCommand),
    /// The master patient index (the same commands as `nutmeg mpi`).
    #[command(subcommand)]
    Mpi(crate::mpi::MpiCommand),
    /// Direct secure messaging: the domains' CAs, addresses, trust anchors, CRLs (needs
    /// --direct-config).
    #[command(subcommand)]
    Direct(crate::smtp::admin::DirectCommand),
    /// The EHR compatibility catalog: products, their status, providers' requests.
    #[command(subcommand)]
    Catalog(crate::compliance::CatalogCommand),
    /// The licensing board's roster: imports, ambiguous matches, operators' decisions,
    /// exemptions.
    #[command(subcommand)]
    Roster(crate::compliance::RosterCommand),
    /// The mandate's compliance report.
    #[command(subcommand)]
    Compliance(crate::compliance::ComplianceCommand),
    /// Print an access token for a client, for operators' scripts: the same checks and the same
    /// five-minute token as the token endpoint, without a client assertion.
    Token {
        /// The client's id.
        #[arg(long)]
        client: String,
        /// The scopes to grant (each must be registered); all the registered ones if not given.
        #[arg(long)]
        scope: Option<String>,
        /// The purpose of use: TREAT (the default), HPAYMT, HOPERAT, PUBHLTH, ETREAT or PATRQT.
        #[arg(long)]
        purpose: Option<String>,
        /// Print the whole token response as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register a client of a participant with its public keys and the scopes it may ask for;
    /// prints the new client id.
    Add {
        /// The participant's id (its Organization's id).
        #[arg(long)]
        participant: String,
        /// A file with the client's public JWKS (RS384 or ES384 keys).
        #[arg(
            long,
            required_unless_present = "jwks_url",
            conflicts_with = "jwks_url"
        )]
        jwks: Option<std::path::PathBuf>,
        /// Where the exchange fetches the client's public JWKS (https; http only on loopback).
        #[arg(long)]
        jwks_url: Option<String>,
        /// The scopes the client may be granted, space-separated (`system/Patient.rs`, v1 or v2).
        #[arg(long)]
        scope: String,
        #[arg(long)]
        json: bool,
    },
    /// List the clients, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client: it gets no more tokens (those already issued expire within 5 minutes).
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a portal account; prints its id (and, with --totp, the otpauth:// URI of its second
    /// factor, shown this once). The password is read from --password-file or from stdin, or,
    /// with --invite, the account has none until its owner opens the printed one-time link.
    Add {
        /// The login name (unique regardless of case).
        #[arg(long)]
        login: String,
        /// The name the portal shows.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The participant (its Organization's id) of a participant-admin, clinician or staff.
        #[arg(long)]
        participant: Option<String>,
        /// The Patient a patient's account is linked to, after identity proofing.
        #[arg(long)]
        patient: Option<String>,
        /// The Practitioner (its id in the provider directory) the person is, joined to the
        /// participant by an active PractitionerRole: consents that name the practitioner then
        /// reach this account.
        #[arg(long)]
        practitioner: Option<String>,
        /// A file holding the password (one trailing newline is ignored); stdin if not given.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// No password: print a one-time link (valid for two weeks) for the account's owner to
        /// choose one.
        #[arg(long, conflicts_with = "password_file")]
        invite: bool,
        /// Give the account a TOTP second factor.
        #[arg(long)]
        totp: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the accounts, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print a new one-time link (valid for two weeks) with which the account's owner chooses a
    /// password (a new account's owner, or one who forgot theirs); the account's earlier links
    /// stop working, and its current password works until the link is used.
    Invite {
        /// The login name.
        login: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: it can no longer sign in, and its sessions end now.
    Disable {
        /// The login name.
        login: String,
        #[arg(long)]
        json: bool,
    },
}

/// The portal roles.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    OperatorAdmin,
    ParticipantAdmin,
    Clinician,
    Staff,
    Patient,
}

impl From<RoleArg> for RoleCode {
    fn from(value: RoleArg) -> RoleCode {
        match value {
            RoleArg::OperatorAdmin => RoleCode::OperatorAdmin,
            RoleArg::ParticipantAdmin => RoleCode::ParticipantAdmin,
            RoleArg::Clinician => RoleCode::Clinician,
            RoleArg::Staff => RoleCode::Staff,
            RoleArg::Patient => RoleCode::Patient,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole hash chain: exit 0 if every record is in place, 1 naming the first record
    /// that was changed, removed, inserted or moved.
    Verify {
        /// A head hash printed by an earlier verify and kept outside the database: the log must
        /// still hold that record, or records were cut off its end (or the chain was rewritten).
        #[arg(long, value_parser = parse_head)]
        expect_head: Option<AuditHash>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_head(text: &str) -> Result<AuditHash, String> {
    AuditHash::from_hex(text.trim())
        .ok_or_else(|| "expected the 64 hexadecimal digits of a head hash".to_string())
}

#[derive(Subcommand, Debug)]
pub enum ParticipantCommand {
    /// Register a participant (status: applied).
    Add(Box<AddArgs>),
    /// List participants in name order.
    List {
        /// Only participants in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long)]
        json: bool,
    },
    /// Show one participant.
    Show {
        /// The participant's id (its Organization's id).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Register one of a participant's endpoints: its FHIR base URL, Direct address or MLLP feed.
    AddEndpoint {
        /// The participant's id.
        id: String,
        #[arg(long, value_enum)]
        kind: EndpointKindArg,
        /// `https://...`, `user@domain` (Direct) or `mllp://host:port`.
        #[arg(long)]
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a participant along the workflow: applied -> onboarding -> live; suspended from any
    /// status; from suspended back to onboarding or live.
    SetStatus {
        id: String,
        #[arg(value_enum)]
        status: StatusArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The legal name.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The organization's NPI (ten digits with a check digit).
    #[arg(long)]
    pub npi: Option<String>,
    /// The tax id (EIN), as 06-1234567.
    #[arg(long)]
    pub tax_id: Option<String>,
    /// The organization's state licence, as STATE:NUMBER (CT:HOSP-1234).
    #[arg(long, value_parser = parse_licence)]
    pub licence: Option<Licence>,
    /// The EHR product it uses.
    #[arg(long)]
    pub ehr: Option<String>,
    /// For a solo practice: the practitioner's given name.
    #[arg(long, requires_all = ["practitioner_family", "practitioner_licence", "licence_type"])]
    pub practitioner_given: Option<String>,
    /// For a solo practice: the practitioner's family name.
    #[arg(long, requires = "practitioner_given")]
    pub practitioner_family: Option<String>,
    /// For a solo practice: the practitioner's NPI.
    #[arg(long, requires = "practitioner_given")]
    pub practitioner_npi: Option<String>,
    /// For a solo practice: the practitioner's licence type.
    #[arg(long, value_enum, requires = "practitioner_given")]
    pub licence_type: Option<LicenceTypeArg>,
    /// For a solo practice: the practitioner's licence, as STATE:NUMBER.
    #[arg(long, value_parser = parse_licence, requires = "practitioner_given")]
    pub practitioner_licence: Option<Licence>,
    #[arg(long)]
    pub json: bool,
}

/// Mirrors a closed code set of the registry as a clap value enum.
macro_rules! value_enum {
    ($name:ident => $target:ident { $($variant:ident),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, ValueEnum)]
        pub enum $name { $($variant,)+ }

        impl From<$name> for $target {
            fn from(value: $name) -> $target {
                match value { $($name::$variant => $target::$variant,)+ }
            }
        }
    };
}

value_enum!(StatusArg => Status { Applied, Onboarding, Live, Suspended });
value_enum!(EndpointKindArg => EndpointKind { Fhir, Direct, Mllp });
value_enum!(KindArg => Kind {
    Hospital, Lab, Clinic, PsychiatricFacility, GroupPractice, SoloPractice, PublicHealth,
    ExchangeOperator
});
value_enum!(LicenceTypeArg => LicenceType {
    Lmft, Lcsw, Lpc, Ladc, Psychologist, Psychiatrist, Physician, NursePractitioner,
    RegisteredNurse, PhysicianAssistant, Pharmacist, Other
});

fn parse_licence(text: &str) -> Result<Licence, String> {
    let (state, number) = text
        .split_once(':')
        .ok_or_else(|| "expected STATE:NUMBER, for example CT:LMFT.001234".to_string())?;
    Ok(Licence {
        state: state.trim().to_ascii_uppercase(),
        number: number.trim().to_string(),
    })
}

/// Runs an admin command against the configured database.
pub async fn admin(config: &Config, args: AdminArgs) -> anyhow::Result<ExitCode> {
    let repo = open_repository(config, &config.base_url_for(config.http)).await?;
    let who = Requester::system("admin");
    let command = match args.command {
        AdminCommand::Participant(command) => command,
        AdminCommand::Client(command) => return client(&repo, &who, command).await,
        AdminCommand::Application(command) => {
            let onboarding =
                exchange::onboarding::Onboarding::new(repo.clone(), config.service_levels.clone());
            return crate::connect_admin::application(
                &onboarding,
                &repo.config().base_url,
                command,
            )
            .await;
        }
        AdminCommand::Agreement(command) => {
            let onboarding =
                exchange::onboarding::Onboarding::new(repo.clone(), config.service_levels.clone());
            return crate::connect_admin::agreement(&onboarding, command).await;
        }
        AdminCommand::User(command) => return user(&repo, &who, command).await,
        AdminCommand::Mpi(command) => return crate::mpi::run(&repo, command).await,
        AdminCommand::Catalog(command) => return crate::compliance::catalog(&repo, command).await,
        AdminCommand::Roster(command) => {
            return crate::compliance::roster(&repo, config, command).await
        }
        AdminCommand::Compliance(command) => {
            return crate::compliance::compliance(&repo, config, command).await
        }
        AdminCommand::Consent(command) => return crate::purge::run(&repo, config, command).await,
        AdminCommand::Direct(command) => {
            return crate::smtp::admin::run(config, &repo, command).await
        }
        AdminCommand::Token {
            client,
            scope,
            purpose,
            json,
        } => {
            let base_url = config.base_url_for(config.http);
            return token(&repo, &who, &base_url, &client, scope, purpose, json).await;
        }
        AdminCommand::Audit(AuditCommand::Verify { expect_head, json }) => {
            return verify_audit(repo.store(), expect_head, json).await
        }
    };
    let (result, json) = match command {
        ParticipantCommand::Add(add) => {
            let json = add.json;
            (
                repo.add_participant(&who, &new_participant(*add)).await,
                json,
            )
        }
        ParticipantCommand::List { status, json } => {
            let listed = repo.participants(&who, status.map(Status::from)).await;
            return Ok(match listed {
                Ok(all) => {
                    if json {
                        let all: Vec<Value> = all.iter().map(participant_json).collect();
                        println!("{}", Value::Array(all));
                    } else {
                        for p in &all {
                            println!("{}", summary(p));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => refused(e)?,
            });
        }
        ParticipantCommand::Show { id, json } => {
            let shown = match repo.participant(&who, &id).await {
                Ok(p) => repo.participant_endpoints(&who, &id).await.map(|e| (p, e)),
                Err(e) => Err(e),
            };
            return Ok(match shown {
                Ok((p, endpoints)) => {
                    let endpoints: Vec<Value> = endpoints
                        .iter()
                        .map(|(id, kind, address)| {
                            json!({ "id": id, "kind": kind.code(), "address": address })
                        })
                        .collect();
                    // The practitioners joined to it (the ids `user add --practitioner` takes).
                    let practitioners: Vec<Value> =
                        exchange::participants::practitioners_of(repo.store(), &id)
                            .await?
                            .iter()
                            .map(|(id, json)| json!({ "id": id, "name": json["name"] }))
                            .collect();
                    if json {
                        let mut value = participant_json(&p);
                        value["endpoints"] = Value::Array(endpoints);
                        value["practitioners"] = Value::Array(practitioners);
                        println!("{value}");
                    } else {
                        println!("{}", summary(&p));
                        for e in &endpoints {
                            println!("  endpoint\t{}\t{}\t{}", e["id"], e["kind"], e["address"]);
                        }
                        for pr in &practitioners {
                            println!("  practitioner\t{}", pr["id"].as_str().unwrap_or_default());
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => refused(e)?,
            });
        }
        ParticipantCommand::AddEndpoint {
            id,
            kind,
            address,
            json,
        } => {
            let added = repo
                .add_participant_endpoint(&who, &id, kind.into(), &address)
                .await;
            return Ok(match added {
                Ok(endpoint) => {
                    if json {
                        println!("{}", json!({ "id": endpoint, "participant": id }));
                    } else {
                        println!("{endpoint}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => refused(e)?,
            });
        }
        ParticipantCommand::SetStatus { id, status, json } => (
            repo.set_participant_status(&who, &id, status.into()).await,
            json,
        ),
    };
    Ok(match result {
        Ok(p) => {
            if json {
                println!("{}", participant_json(&p));
            } else {
                println!("{}", summary(&p));
            }
            ExitCode::SUCCESS
        }
        Err(e) => refused(e)?,
    })
}

fn new_participant(add: AddArgs) -> NewParticipant {
    let practitioner = match (add.practitioner_given, add.practitioner_family) {
        (Some(given), Some(family)) => Some(NewPractitioner {
            given,
            family,
            npi: add.practitioner_npi,
            licence_type: add
                .licence_type
                .map(Into::into)
                .unwrap_or(LicenceType::Other),
            licence: add.practitioner_licence.unwrap_or(Licence {
                state: String::new(),
                number: String::new(),
            }),
        }),
        _ => None,
    };
    NewParticipant {
        name: add.name,
        kind: add.kind.into(),
        npi: add.npi,
        tax_id: add.tax_id,
        licence: add.licence,
        ehr: add.ehr,
        practitioner,
    }
}

/// A refusal (4xx) is printed with its reasons and is exit code 1; a store failure is an error.
fn refused(e: Error) -> anyhow::Result<ExitCode> {
    if e.status() >= 500 {
        return Err(anyhow::anyhow!("{e}"));
    }
    eprintln!("nutmeg: refused ({}):", e.status());
    for issue in e.issues() {
        eprintln!("  - {}", issue.diagnostics);
    }
    Ok(ExitCode::FAILURE)
}

fn summary(p: &Participant) -> String {
    let kind = p.kind.map(|k| k.code()).unwrap_or("-");
    let npi = p.npi.as_deref().unwrap_or("-");
    format!("{}\t{}\t{kind}\tnpi {npi}\t{}", p.id, p.status, p.name)
}

fn participant_json(p: &Participant) -> Value {
    json!({
        "id": p.id,
        "version": p.version,
        "name": p.name,
        "kind": p.kind.map(Kind::code),
        "status": p.status.code(),
        "npi": p.npi,
        "taxId": p.tax_id,
        "licence": p.licence.as_ref().map(|l| json!({ "state": l.state, "number": l.number })),
        "ehr": p.ehr,
    })
}

/// `admin audit verify`: the verdict on stdout (one line, or JSON), exit 1 if the chain is broken.
async fn verify_audit(
    store: &store::Store,
    expect_head: Option<AuditHash>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let check = store.verify_audit().await?;
    // Where the head kept from an earlier run stands in the log now (only asked of an intact log).
    let earlier = match (&check, expect_head) {
        (AuditCheck::Intact { .. }, Some(head)) => Some((head, store.audit_seq_of(head).await?)),
        _ => None,
    };
    let lost = matches!(earlier, Some((_, None)));
    if json {
        let mut value = match &check {
            AuditCheck::Intact { count, head } => {
                json!({ "intact": !lost, "records": count, "head": head.to_hex() })
            }
            AuditCheck::Broken { verified, fault } => json!({
                "intact": false,
                "verified": verified,
                "fault": fault.to_string(),
                "record": fault_record(fault),
            }),
        };
        if let Some((_, seq)) = earlier {
            value["expectedHeadRecord"] = json!(seq);
        }
        println!("{value}");
    } else {
        println!("{check}");
        match earlier {
            Some((_, Some(seq))) => println!("the head kept earlier is record {seq}"),
            Some((head, None)) => println!(
                "the head kept earlier ({head}) is not in the log: records were cut off its end, \
                 or the chain was rewritten"
            ),
            None => {}
        }
    }
    Ok(match check {
        AuditCheck::Intact { .. } if !lost => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// The sequence number of the first record a fault names.
fn fault_record(fault: &AuditFault) -> i64 {
    match *fault {
        AuditFault::Changed { seq }
        | AuditFault::Inserted { seq }
        | AuditFault::Unlinked { seq, .. } => seq,
        AuditFault::Removed { first, .. } => first,
    }
}

/// `admin client add|list|revoke`.
async fn client(
    repo: &exchange::repository::Repository,
    who: &Requester,
    command: ClientCommand,
) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    match command {
        ClientCommand::Add {
            participant,
            jwks,
            jwks_url,
            scope,
            json,
        } => {
            let mut problems = Vec::new();
            let keys = match (jwks, jwks_url) {
                (Some(path), _) => match std::fs::read_to_string(&path) {
                    Ok(text) => match auth::Jwks::parse(&text) {
                        Ok(_) => Some(ClientKeys::Jwks(text)),
                        Err(e) => {
                            problems.push(format!("{}: {e}", path.display()));
                            None
                        }
                    },
                    Err(e) => {
                        problems.push(format!("cannot read {}: {e}", path.display()));
                        None
                    }
                },
                (None, Some(url)) => match check_jwks_url(&url) {
                    Ok(()) => Some(ClientKeys::JwksUrl(url)),
                    Err(e) => {
                        problems.push(e);
                        None
                    }
                },
                (None, None) => {
                    problems.push("give --jwks FILE or --jwks-url URL".to_string());
                    None
                }
            };
            match auth::ScopeSet::parse(&scope) {
                Ok(scopes) if scopes.is_empty() => problems.push("--scope names no scope".into()),
                Ok(scopes) => {
                    // A backend service acts as itself: no patient or user is in its context.
                    let other: Vec<&str> = scopes
                        .iter()
                        .filter(|s| {
                            s.resource()
                                .is_none_or(|r| r.context() != auth::Context::System)
                        })
                        .map(|s| s.as_str())
                        .collect();
                    if !other.is_empty() {
                        problems.push(format!(
                            "a backend services client is registered with system/ scopes only, not {}",
                            other.join(" ")
                        ));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
            match repo.participant(who, &participant).await {
                Ok(_) => {}
                Err(e) if e.status() >= 500 => return Err(anyhow::anyhow!("{e}")),
                Err(_) => problems.push(format!("no participant has the id {participant}")),
            }
            let Some(keys) = keys.filter(|_| problems.is_empty()) else {
                eprintln!("nutmeg: refused:");
                for problem in problems {
                    eprintln!("  - {problem}");
                }
                return Ok(ExitCode::FAILURE);
            };
            let registered = store
                .register_client(NewClient {
                    client_id: new_client_id()?,
                    participant_id: participant,
                    keys,
                    scopes: scope.split_whitespace().collect::<Vec<_>>().join(" "),
                    created: crate::client::now() as i64,
                })
                .await?;
            if json {
                println!("{}", client_json(&registered));
            } else {
                println!("{}", registered.client_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::List { json } => {
            let all = store.clients().await?;
            if json {
                println!("{}", Value::Array(all.iter().map(client_json).collect()));
            } else {
                for c in &all {
                    println!(
                        "{}\t{}\t{}\t{}",
                        c.client_id, c.status, c.participant_id, c.scopes
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Revoke { id, json } => {
            if !store.set_client_status(&id, ClientStatus::Revoked).await? {
                eprintln!("nutmeg: refused: no client has the id {id}");
                return Ok(ExitCode::FAILURE);
            }
            let revoked = store.client(&id).await?;
            match (json, revoked) {
                (true, Some(c)) => println!("{}", client_json(&c)),
                _ => println!("{id}\trevoked"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `admin token`: a token for an active client of a live participant, with registered scopes.
async fn token(
    repo: &exchange::repository::Repository,
    who: &Requester,
    base_url: &str,
    client_id: &str,
    scope: Option<String>,
    purpose: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    let refuse = |why: String| {
        eprintln!("nutmeg: refused: {why}");
        Ok(ExitCode::FAILURE)
    };
    let Some(client) = store.client(client_id).await? else {
        return refuse(format!("no client has the id {client_id}"));
    };
    if client.status != ClientStatus::Active {
        return refuse(format!("client {client_id} is revoked"));
    }
    let participant = match repo.participant(who, &client.participant_id).await {
        Ok(p) => p,
        Err(e) if e.status() >= 500 => return Err(anyhow::anyhow!("{e}")),
        Err(_) => return refuse(format!("no participant {}", client.participant_id)),
    };
    if !participant.status.may_hold_tokens() {
        return refuse(format!(
            "participant {} is {}; only onboarding and live participants receive tokens",
            participant.id, participant.status
        ));
    }
    let purpose = match auth::PurposeOfUse::from_parameter(purpose.as_deref()) {
        Ok(p) => p,
        Err(e) => return refuse(e.to_string()),
    };
    let registered = auth::ScopeSet::parse(&client.scopes)
        .map_err(|e| anyhow::anyhow!("client {client_id}'s registered scopes: {e}"))?;
    let granted = match auth::grant(scope.as_deref().unwrap_or(&client.scopes), &registered) {
        Ok(granted) => granted,
        Err(e) => return refuse(e.to_string()),
    };
    let smart = crate::http::smart::Smart::open(store, base_url).await?;
    let now = crate::client::now();
    let (token, encoded) = smart.issue(
        &client.client_id,
        &client.participant_id,
        granted,
        purpose,
        now,
    );
    crate::http::smart::record_issuance(store, &token, None, "nutmeg admin token", base_url)
        .await?;
    tracing::info!(
        client = %client.client_id,
        participant = %client.participant_id,
        purpose = %purpose,
        token_id = %token.id,
        "access token issued to an operator"
    );
    if json {
        println!("{}", token.response(&encoded, now));
    } else {
        println!("{encoded}");
    }
    Ok(ExitCode::SUCCESS)
}

/// 144 random bits, base64url: a client id that cannot be guessed and needs no escaping. It never
/// starts with `-` or `_`, so that it is never taken for an option when it is pasted after a flag
/// (`--client-id -7x...`).
pub(crate) fn new_client_id() -> anyhow::Result<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let random = ring::rand::SystemRandom::new();
    loop {
        let mut bytes = [0u8; 18];
        random
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness for a client id"))?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Ok(id);
        }
    }
}

/// A JWKS URL must be https, or http to a loopback host (for tests and local set-ups).
fn check_jwks_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .map(|authority| authority.rsplit_once(':').map_or(authority, |(h, _)| h));
    match host {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        _ => Err(format!(
            "--jwks-url must be an https URL (http only to a loopback host): {url}"
        )),
    }
}

fn client_json(c: &Client) -> Value {
    let mut value = json!({
        "clientId": c.client_id,
        "participant": c.participant_id,
        "scope": c.scopes,
        "status": c.status.as_str(),
        "created": c.created,
    });
    match &c.keys {
        ClientKeys::Jwks(text) => {
            value["jwks"] = serde_json::from_str(text).unwrap_or(Value::String(text.clone()))
        }
        ClientKeys::JwksUrl(url) => value["jwksUrl"] = json!(url),
    }
    value
}

/// `admin user add|list|invite|disable`.
async fn user(
    repo: &exchange::repository::Repository,
    who: &Requester,
    command: UserCommand,
) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    match command {
        UserCommand::Add {
            login,
            name,
            role,
            participant,
            patient,
            practitioner,
            password_file,
            invite,
            totp,
            json,
        } => {
            let role = RoleCode::from(role);
            let login = login.trim().to_string();
            let name = name.trim().to_string();
            let mut problems = account::login_problems(&login);
            if name.is_empty() {
                problems.push("--name is empty".to_string());
            }
            problems.extend(account::link_problems(
                role,
                participant.as_deref(),
                patient.as_deref(),
            ));
            if let Some(id) = participant.as_deref() {
                match repo.participant(who, id).await {
                    Ok(_) => {}
                    Err(e) if e.status() >= 500 => return Err(anyhow::anyhow!("{e}")),
                    Err(_) => problems.push(format!("no participant has the id {id}")),
                }
            }
            if let Some(id) = practitioner.as_deref() {
                match participant.as_deref() {
                    Some(org) if repo.participant(who, org).await.is_ok() => {
                        let joined = exchange::participants::practitioners_of(store, org).await?;
                        if !joined.iter().any(|(j, _)| j == id) {
                            problems.push(format!(
                                "Practitioner/{id} is not joined to participant {org} by an \
                                 active PractitionerRole"
                            ));
                        }
                    }
                    Some(_) => {}
                    None => problems.push(
                        "--practitioner needs --participant: the practitioner's participant"
                            .to_string(),
                    ),
                }
            }
            if let Some(id) = patient.as_deref() {
                match store.read("Patient", id).await? {
                    Some(stored) if !stored.deleted => {}
                    _ => problems.push(format!("no Patient has the id {id}")),
                }
            }
            let password = if invite {
                String::new()
            } else {
                match read_password(password_file.as_deref()) {
                    Ok(password) => {
                        problems.extend(account::password_problems(&password, &login));
                        password
                    }
                    Err(e) => {
                        problems.push(e);
                        String::new()
                    }
                }
            };
            if !problems.is_empty() {
                eprintln!("nutmeg: refused:");
                for problem in problems {
                    eprintln!("  - {problem}");
                }
                return Ok(ExitCode::FAILURE);
            }
            let hash = if invite {
                store::NO_PASSWORD.to_string()
            } else {
                tokio::task::spawn_blocking(move || auth::password::hash(&password))
                    .await?
                    .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
            };
            let secret = if totp {
                Some(
                    auth::TotpSecret::generate()
                        .map_err(|e| anyhow::anyhow!("cannot make a TOTP secret: {e}"))?,
                )
            } else {
                None
            };
            let now = crate::client::now() as i64;
            let invitation = if invite {
                Some(crate::portal::invite::new_invitation(now)?)
            } else {
                None
            };
            let new = NewUser {
                user_id: new_client_id()?,
                login: login.clone(),
                display_name: name,
                role: role.code().to_string(),
                participant_id: participant,
                patient_id: patient,
                practitioner_id: practitioner,
                password_hash: hash,
                totp_secret: secret.as_ref().map(|s| account::hex(s.as_bytes())),
                created: now,
            };
            let added = match &invitation {
                Some((_, invitation)) => store.add_invited_user(new, invitation.clone()).await,
                None => store.add_user(new).await,
            };
            let added = match added {
                Ok(user) => user,
                Err(store::StoreError::Conflict { .. }) => {
                    eprintln!("nutmeg: refused: the login {login} is taken");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            let uri = secret.map(|s| s.otpauth_uri("nutmeg", &added.login));
            tracing::info!(user_id = %added.user_id, role = %added.role, "portal account added");
            let base_url = &repo.config().base_url;
            let link = invitation.as_ref().map(|(secret, invitation)| {
                crate::portal::invite::invitation_json(base_url, secret, invitation.expires)
            });
            if json {
                let mut value = user_json(&added);
                if let Some(uri) = &uri {
                    value["totpUri"] = json!(uri);
                }
                if let Some(link) = link {
                    value["invitation"] = link;
                }
                println!("{value}");
            } else {
                println!("{}", added.user_id);
                if let Some(link) = &link {
                    print_invitation(link);
                }
                if let Some(uri) = &uri {
                    println!("{uri}");
                    eprintln!(
                        "nutmeg: the line above is the account's TOTP secret, shown only now: \
                         give it to its owner's authenticator app (as a QR code) and nobody else"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::List { json } => {
            let all = store.users().await?;
            if json {
                println!("{}", Value::Array(all.iter().map(user_json).collect()));
            } else {
                for u in &all {
                    let link = u
                        .participant_id
                        .as_deref()
                        .map(|p| format!("participant {p}"))
                        .or_else(|| u.patient_id.as_deref().map(|p| format!("Patient/{p}")))
                        .unwrap_or_else(|| "-".to_string());
                    println!(
                        "{}\t{}\t{}\t{}\t{link}\t{}",
                        u.user_id, u.login, u.status, u.role, u.display_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Invite { login, json } => {
            let Some(found) = store.user_by_login(&login).await? else {
                eprintln!("nutmeg: refused: no account has the login {login}");
                return Ok(ExitCode::FAILURE);
            };
            if found.status != UserStatus::Active {
                eprintln!("nutmeg: refused: the account {login} is disabled");
                return Ok(ExitCode::FAILURE);
            }
            let (secret, invitation) =
                crate::portal::invite::new_invitation(crate::client::now() as i64)?;
            let expires = invitation.expires;
            store.invite_user(&found.user_id, invitation).await?;
            tracing::info!(user_id = %found.user_id, "portal invitation made");
            let link =
                crate::portal::invite::invitation_json(&repo.config().base_url, &secret, expires);
            if json {
                let mut value = user_json(&found);
                value["invitation"] = link;
                println!("{value}");
            } else {
                print_invitation(&link);
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Disable { login, json } => {
            let Some(found) = store.user_by_login(&login).await? else {
                eprintln!("nutmeg: refused: no account has the login {login}");
                return Ok(ExitCode::FAILURE);
            };
            store
                .set_user_status(&found.user_id, UserStatus::Disabled)
                .await?;
            let ended = store.delete_user_sessions(&found.user_id).await?;
            tracing::info!(user_id = %found.user_id, sessions_ended = ended, "portal account disabled");
            match (json, store.user(&found.user_id).await?) {
                (true, Some(u)) => println!("{}", user_json(&u)),
                _ => println!("{}\tdisabled", found.login),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An invitation's link for the operator to send, on stdout, and what to do with it on stderr.
fn print_invitation(link: &Value) {
    println!("{}", link["url"].as_str().unwrap_or_default());
    eprintln!(
        "nutmeg: send the link above to the account's owner, and nobody else: it sets the \
         account's password once, until {}",
        link["expires"].as_str().unwrap_or_default()
    );
}

/// The password from a file (without one trailing newline) or from stdin (its first line).
fn read_password(file: Option<&std::path::Path>) -> Result<String, String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            line
        }
    };
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err("no password given (--password-file FILE, or on stdin)".to_string());
    }
    Ok(password.to_string())
}

/// An account as `--json` prints it: never its password hash or TOTP secret.
fn user_json(u: &User) -> Value {
    json!({
        "userId": u.user_id,
        "login": u.login,
        "name": u.display_name,
        "role": u.role,
        "participant": u.participant_id,
        "patient": u.patient_id,
        "practitioner": u.practitioner_id,
        "totp": u.totp_secret.is_some(),
        "status": u.status.as_str(),
        "created": u.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client id pasted after `--client-id` must never read as an option, and never repeat.
    #[test]
    fn client_ids_never_start_like_an_option() {
        let ids: std::collections::HashSet<String> =
            (0..2_000).map(|_| new_client_id().unwrap()).collect();
        assert_eq!(ids.len(), 2_000);
        for id in &ids {
            assert_eq!(id.len(), 24, "{id}");
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
        }
    }
}
