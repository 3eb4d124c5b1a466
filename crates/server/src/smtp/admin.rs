//! `nutmeg admin direct ...`: the operator's Direct commands (with `--direct-config` for the
//! domains and the key-encryption key):
//!
//! - `ca init --domain D`: the domain's certificate authority (RSA-2048 root, its key sealed in the
//!   database), which becomes an inbound and outbound trust anchor of the domain;
//! - `address add --address A (--practitioner ID | --organization ID) --name N`: issues the address
//!   to a Practitioner or Organization of the registry, with an address-bound certificate (its key
//!   sealed), `--user LOGIN` also binding it to a portal account; `address revoke A`; `address
//!   list`; `address bind A --user LOGIN` and `address unbind A --user LOGIN`: which portal
//!   accounts read and send as the address in the web inbox (see `hisp::user_addresses`);
//! - `anchor add --domain D --direction inbound|outbound|both FILE`: trust anchors from a PEM or
//!   PKCS#7 bundle;
//! - `crl --domain D --out FILE`: the domain's CRL (DER) listing the revoked certificates.
//!
//! A refused request prints why on stderr and exits with 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::{self, Kek};
use serde_json::json;
use store::{AddressStatus, AnchorDirection, Store, TrustAnchor};

use super::hisp::{certificate_record, fingerprint, issuer_id, key_label, now_ms};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum DirectCommand {
    /// The certificate authority of a local Direct domain.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Direct addresses of practitioners and organizations.
    #[command(subcommand)]
    Address(AddressCommand),
    /// Trust anchors of a local domain.
    #[command(subcommand)]
    Anchor(AnchorCommand),
    /// Write a local domain's CRL (DER).
    Crl {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create the domain's root (once).
    Init {
        #[arg(long)]
        domain: String,
        /// The CRL distribution point put in the certificates it issues.
        #[arg(long)]
        crl_url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AddressCommand {
    /// Issue an address with its certificate.
    Add(AddArgs),
    /// Revoke an address and its certificates.
    Revoke { address: String },
    /// Every address issued.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Let a portal account read and send as the address (the web inbox).
    Bind {
        address: String,
        /// The portal account's login.
        #[arg(long)]
        user: String,
    },
    /// Stop a portal account from using the address.
    Unbind {
        address: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(long)]
    pub address: String,
    /// The Practitioner's id in the registry.
    #[arg(
        long,
        conflicts_with = "organization",
        required_unless_present = "organization"
    )]
    pub practitioner: Option<String>,
    /// The Organization's id in the registry.
    #[arg(long)]
    pub organization: Option<String>,
    /// The name shown for the address.
    #[arg(long)]
    pub name: String,
    /// Certificate validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Also bind the address to this portal account (its login).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AnchorCommand {
    /// Add the certificates of a PEM or PKCS#7 bundle as anchors.
    Add {
        #[arg(long)]
        domain: String,
        #[arg(long, value_enum)]
        direction: DirectionArg,
        file: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DirectionArg {
    Inbound,
    Outbound,
    Both,
}

/// Where a domain's CA is kept among the certificates.
fn ca_subject(domain: &str) -> String {
    format!("ca:{}", domain.to_ascii_lowercase())
}

fn refuse(why: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("nutmeg: refused: {why}");
    Ok(ExitCode::FAILURE)
}

async fn authority(store: &Store, kek: &Kek, domain: &str) -> anyhow::Result<Option<Authority>> {
    let Some(record) = store
        .direct_certificates(&ca_subject(domain))
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let cert = openssl::x509::X509::from_pem(record.cert_pem.as_bytes())?;
    let sealed = record
        .sealed_key
        .ok_or_else(|| anyhow::anyhow!("the CA of {domain} has no key"))?;
    let key = keys::open(kek, &key_label(&record.issuer, &record.serial), &sealed)?;
    let config = CaConfig {
        domain: domain.to_string(),
        organization: domain.to_string(),
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    Ok(Some(Authority::from_parts(config, cert, key)?))
}

/// Runs `nutmeg admin direct ...`.
pub async fn run(
    config: &Config,
    repo: &exchange::repository::Repository,
    command: DirectCommand,
) -> anyhow::Result<ExitCode> {
    let store = repo.store();
    let Some(path) = &config.direct_config else {
        return refuse(
            "Direct commands need --direct-config (the domains and the key-encryption key)",
        );
    };
    let (hisp, kek, _) = super::config::load(path)?;
    let local = |d: &str| hisp.domains.iter().any(|x| x.eq_ignore_ascii_case(d));
    let now = now_ms();
    match command {
        DirectCommand::Ca(CaCommand::Init { domain, crl_url }) => {
            if !local(&domain) {
                return refuse(format!("{domain} is not a local Direct domain"));
            }
            if authority(store, &kek, &domain).await?.is_some() {
                return refuse(format!("{domain} already has a CA"));
            }
            let key = ca::generate_key(KeySpec::Rsa(2048))?;
            let ca_config = CaConfig {
                domain: domain.clone(),
                organization: domain.clone(),
                crl_url,
                ca_issuers_url: None,
                policy_oids: Vec::new(),
            };
            let root =
                Authority::create_root(ca_config, key, Validity::days_from(now / 1000, 3650))?;
            let cert = root.certificate().clone();
            let key = root.key().to_owned();
            let record = certificate_record(&cert, &ca_subject(&domain), Some((&kek, &key)), now)?;
            store.add_direct_certificate(record).await?;
            for direction in [AnchorDirection::Inbound, AnchorDirection::Outbound] {
                store
                    .add_trust_anchor(TrustAnchor {
                        domain: domain.to_ascii_lowercase(),
                        direction,
                        fingerprint: fingerprint(&cert)?,
                        cert_pem: String::from_utf8(cert.to_pem()?)?,
                        added: now,
                    })
                    .await?;
            }
            println!("CA of {domain} created: SHA-256 {}", fingerprint(&cert)?);
            Ok(ExitCode::SUCCESS)
        }
        DirectCommand::Address(AddressCommand::Add(add)) => {
            let address = add.address.trim().to_ascii_lowercase();
            let Some((_, domain)) = ca::split_address(&address) else {
                return refuse(format!("'{address}' is not a Direct address"));
            };
            let domain = domain.to_string();
            if !local(&domain) {
                return refuse(format!("{domain} is not a local Direct domain"));
            }
            let user = match &add.user {
                Some(login) => match store.user_by_login(login).await? {
                    Some(u) => Some(u),
                    None => return refuse(format!("no portal account '{login}'")),
                },
                None => None,
            };
            let (kind, resource, id) = match (&add.practitioner, &add.organization) {
                (Some(id), _) => ("practitioner", "Practitioner", id.clone()),
                (None, Some(id)) => ("organization", "Organization", id.clone()),
                (None, None) => return refuse("--practitioner or --organization is needed"),
            };
            match store.read(resource, &id).await? {
                Some(r) if !r.deleted => {}
                _ => return refuse(format!("no {resource}/{id} in the registry")),
            }
            let Some(ca) = authority(store, &kek, &domain).await? else {
                return refuse(format!(
                    "{domain} has no CA yet (nutmeg admin direct ca init)"
                ));
            };
            let key = ca::generate_key(KeySpec::Rsa(2048))?;
            let cert = ca.issue(
                &Binding::Address(address.clone()),
                &key,
                Validity::days_from(now / 1000, add.days.max(1)),
            )?;
            let issued = match store
                .add_direct_address(&address, kind, &id, &add.name, now)
                .await
            {
                Ok(a) => a,
                Err(store::StoreError::Conflict { .. }) => {
                    return refuse(format!("{address} was already issued"))
                }
                Err(e) => return Err(e.into()),
            };
            store
                .add_direct_certificate(certificate_record(
                    &cert,
                    &address,
                    Some((&kek, &key)),
                    now,
                )?)
                .await?;
            if let Some(user) = &user {
                store
                    .bind_direct_address(&address, &user.user_id, now)
                    .await?;
            }
            // The participant's connection application, if it waits for its address, moves on.
            let participants =
                exchange::participants::participants_of_owner(store, kind, &id).await?;
            let onboarding =
                exchange::onboarding::Onboarding::new(repo.clone(), config.service_levels.clone());
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
            let mut moved = Vec::new();
            for participant in &participants {
                match onboarding
                    .direct_address_issued(participant, "nutmeg admin direct", at)
                    .await
                {
                    Ok(done) => moved.extend(done),
                    // The address stands; the operator records the step by hand.
                    Err(e) => eprintln!(
                        "nutmeg: {address} is issued, but the application of participant \
                         {participant} was not moved on: {e}"
                    ),
                }
            }
            if add.json {
                println!(
                    "{}",
                    json!({"address": issued.address, "owner": format!("{resource}/{id}"),
                           "certificate": String::from_utf8(cert.to_pem()?)?,
                           "applications": moved})
                );
            } else {
                println!(
                    "{} issued to {resource}/{id} ({})",
                    issued.address, issued.display_name
                );
                for application in &moved {
                    println!("application {application}: direct-address-issued done");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectCommand::Address(AddressCommand::Revoke { address }) => {
            if store.revoke_direct_address(&address, now).await? {
                println!("{address} revoked, with its certificates");
                Ok(ExitCode::SUCCESS)
            } else {
                refuse(format!("no active address {address}"))
            }
        }
        DirectCommand::Address(AddressCommand::Bind { address, user }) => {
            let Some(account) = store.user_by_login(&user).await? else {
                return refuse(format!("no portal account '{user}'"));
            };
            match store.direct_address(&address).await? {
                Some(a) if a.status == AddressStatus::Active => {}
                Some(_) => return refuse(format!("{address} is revoked")),
                None => return refuse(format!("no address {address} was issued")),
            }
            if store
                .bind_direct_address(&address, &account.user_id, now)
                .await?
            {
                println!("{address} bound to {}", account.login);
            } else {
                println!("{address} was already bound to {}", account.login);
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectCommand::Address(AddressCommand::Unbind { address, user }) => {
            let Some(account) = store.user_by_login(&user).await? else {
                return refuse(format!("no portal account '{user}'"));
            };
            if store
                .unbind_direct_address(&address, &account.user_id)
                .await?
            {
                println!("{address} no longer bound to {}", account.login);
                Ok(ExitCode::SUCCESS)
            } else {
                refuse(format!("{address} is not bound to {}", account.login))
            }
        }
        DirectCommand::Address(AddressCommand::List { json }) => {
            let all = store.direct_addresses().await?;
            if json {
                let list: Vec<_> = all
                    .iter()
                    .map(|a| {
                        json!({"address": a.address, "owner_kind": a.owner_kind, "owner_id": a.owner_id,
                               "name": a.display_name, "status": a.status.as_str()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for a in &all {
                    let status = if a.status == AddressStatus::Active {
                        ""
                    } else {
                        " (revoked)"
                    };
                    println!(
                        "{}  {} {}  {}{status}",
                        a.address, a.owner_kind, a.owner_id, a.display_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectCommand::Anchor(AnchorCommand::Add {
            domain,
            direction,
            file,
        }) => {
            if !local(&domain) {
                return refuse(format!("{domain} is not a local Direct domain"));
            }
            let bytes = std::fs::read(&file)?;
            let certs = match direct::trust::read_bundle(&bytes) {
                Ok(c) => c,
                Err(e) => return refuse(format!("{}: {e}", file.display())),
            };
            let directions: &[AnchorDirection] = match direction {
                DirectionArg::Inbound => &[AnchorDirection::Inbound],
                DirectionArg::Outbound => &[AnchorDirection::Outbound],
                DirectionArg::Both => &[AnchorDirection::Inbound, AnchorDirection::Outbound],
            };
            let mut added = 0;
            for cert in &certs {
                for d in directions {
                    added += usize::from(
                        store
                            .add_trust_anchor(TrustAnchor {
                                domain: domain.to_ascii_lowercase(),
                                direction: *d,
                                fingerprint: fingerprint(cert)?,
                                cert_pem: String::from_utf8(cert.to_pem()?)?,
                                added: now,
                            })
                            .await?,
                    );
                }
            }
            println!(
                "{added} anchors added to {domain} ({} certificates read)",
                certs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        DirectCommand::Crl { domain, out } => {
            let Some(ca) = authority(store, &kek, &domain).await? else {
                return refuse(format!("{domain} has no CA"));
            };
            let issuer = issuer_id(ca.certificate());
            let revoked: Vec<ca::Revocation> = store
                .revoked_direct_certificates(&issuer)
                .await?
                .into_iter()
                .filter(|c| !c.subject.starts_with("ca:"))
                .filter_map(|c| {
                    let serial = openssl::bn::BigNum::from_hex_str(&c.serial).ok()?.to_vec();
                    Some(ca::Revocation {
                        serial,
                        revoked_at: c.revoked? / 1000,
                    })
                })
                .collect();
            let secs = now / 1000;
            let der = ca.crl(&revoked, secs, secs + 7 * 86_400, secs as u64)?;
            std::fs::write(&out, der)?;
            println!(
                "{}: CRL of {domain} with {} revoked certificates",
                out.display(),
                revoked.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
