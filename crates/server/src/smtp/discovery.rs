//! Finding an outside Direct recipient's certificates and mail servers, as the Direct
//! Applicability Statement (1.2, section 5) and the ONC/DirectTrust testing tool expect:
//!
//! - DNS CERT records (RFC 4398) of type PKIX (1), an X.509 certificate in DER, at the
//!   address-bound name (the local part as one label in front of the domain, see
//!   [`dns::address_name`]) and at the domain-bound name (the domain). Type IPKIX (4, a URL of
//!   the certificate) is not fetched: such a record is skipped and logged, since it would have
//!   nutmeg fetch whatever URL a DNS answer names (other types, PGP and the rest, are skipped).
//! - LDAP (the Applicability Statement's second method): the servers of `_ldap._tcp.<domain>`
//!   SRV records in RFC 2782 order (priority, then weighted random choice), the base DNs of the
//!   first server that answers (its root DSE's `namingContexts`), and the entries with
//!   `mail=<address>`: their `userSMIMECertificate` and `userCertificate;binary` values (a DER
//!   certificate or a PKCS#7 bundle). Anonymous, in the clear (no StartTLS): what a certificate
//!   is worth is decided by path validation, not by how it was fetched.
//! - MX records for outbound delivery (RFC 5321 section 5.1): the mail hosts in preference order,
//!   the domain itself when it has none (the implicit MX), none for a null MX (RFC 7505).
//!
//! Nothing found here is trusted for being found: the HISP validates every certificate against
//! the sending domain's anchors and CRLs and its binding to the address or domain before it
//! encrypts to it (`hisp::Hisp::recipient_certificates`).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::rdata::cert::CertType;
use hickory_proto::rr::{Name, RData, RecordType};

use super::dns::{self, DnsError, Resolver};

/// What one discovery step found: certificates (DER, PKCS#7 or PEM, as published), or why
/// nothing.
pub type Found = Result<Vec<Vec<u8>>, DnsError>;

/// The certificates published in CERT records at `name`: PKIX records only.
pub async fn cert_records(resolver: &Resolver, name: &Name) -> Found {
    let mut out = Vec::new();
    for data in resolver.lookup(name, RecordType::CERT).await? {
        let RData::CERT(cert) = data else { continue };
        match cert.cert_type() {
            CertType::PKIX => out.push(cert.cert_data()),
            CertType::IPKIX => {
                tracing::info!(%name, "direct: a CERT record names a URL (IPKIX); fetching it is not done")
            }
            other => tracing::debug!(%name, ?other, "direct: a CERT record of another type"),
        }
    }
    Ok(out)
}

/// One SRV record's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: Name,
}

/// Orders SRV targets as RFC 2782 says a client tries them: lowest priority first; within one
/// priority, repeatedly a weighted random choice among those left (weight 0 entries first in the
/// running sum, so they are chosen only when the draw is 0 or they are all that is left).
/// `random(n)` must answer a uniform number in `0..=n`. A lone target of `.` means the service
/// is decidedly not offered: no targets.
pub fn order_srv(
    mut records: Vec<SrvTarget>,
    mut random: impl FnMut(u32) -> u32,
) -> Vec<SrvTarget> {
    if records.len() == 1 && records[0].target.is_root() {
        return Vec::new();
    }
    records.retain(|r| !r.target.is_root());
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        rest = tail;
        let mut group: Vec<SrvTarget> = group.to_vec();
        // Zero weights at the beginning (the RFC's arrangement before the draw).
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let draw = random(total).min(total);
            let mut running = 0u32;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(group.remove(index));
        }
    }
    out
}

/// The LDAP servers of `domain` (`_ldap._tcp.<domain>` SRV records) in the order to try them.
/// No records, or no such name: none.
pub async fn ldap_servers(resolver: &Resolver, domain: &str) -> Result<Vec<SrvTarget>, DnsError> {
    let name = dns::domain_name(&format!("_ldap._tcp.{domain}"))?;
    let records = match resolver.lookup(&name, RecordType::SRV).await {
        Err(DnsError::NoSuchName(_)) => return Ok(Vec::new()),
        other => other?,
    };
    let records = records
        .into_iter()
        .filter_map(|d| match d {
            RData::SRV(s) => Some(SrvTarget {
                priority: s.priority(),
                weight: s.weight(),
                port: s.port(),
                target: s.target().clone(),
            }),
            _ => None,
        })
        .collect();
    Ok(order_srv(records, |n| fastrand::u32(0..=n)))
}

/// The certificates the LDAP servers of `address`'s domain publish for it: the first server
/// (in SRV order) that answers decides. `Err` temporary when servers exist but none answered.
pub async fn ldap_certificates(resolver: &Resolver, address: &str, timeout: Duration) -> Found {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return Ok(Vec::new());
    };
    let servers = ldap_servers(resolver, domain).await?;
    let mut why = None;
    for server in servers {
        let ips = match resolver.addresses(&server.target).await {
            Ok(ips) => ips,
            Err(e) => {
                why = Some(e.to_string());
                continue;
            }
        };
        for ip in ips {
            let at = SocketAddr::new(ip, server.port);
            let query = ldap_query(at, address.to_string(), timeout);
            // The LDAP client panics on some malformed answers: a server's bad answer must
            // not take the delivery task down with it.
            match tokio::spawn(query).await {
                Ok(Ok(found)) => return Ok(found),
                Ok(Err(e)) => why = Some(format!("LDAP server {at}: {e}")),
                Err(_) => why = Some(format!("LDAP server {at}: an unreadable answer")),
            }
        }
    }
    match why {
        Some(why) => Err(DnsError::Temporary {
            name: format!("the LDAP servers of {domain}"),
            why,
        }),
        None => Ok(Vec::new()),
    }
}

/// Asks one LDAP server for the certificates of the entries with `mail=<address>` under each of
/// its naming contexts.
async fn ldap_query(
    at: SocketAddr,
    address: String,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ldap3::LdapError> {
    use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
    const ATTRIBUTES: [&str; 3] = [
        "userSMIMECertificate",
        "userCertificate;binary",
        "userCertificate",
    ];
    let url = match at {
        SocketAddr::V4(a) => format!("ldap://{a}"),
        SocketAddr::V6(a) => format!("ldap://[{}]:{}", a.ip(), a.port()),
    };
    let settings = LdapConnSettings::new().set_conn_timeout(timeout);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url).await?;
    ldap3::drive!(conn);
    ldap.with_timeout(timeout);
    let (root, _) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["namingContexts"])
        .await?
        .success()?;
    let contexts: Vec<String> = root
        .into_iter()
        .flat_map(|e| SearchEntry::construct(e).attrs)
        .filter(|(name, _)| name.eq_ignore_ascii_case("namingContexts"))
        .flat_map(|(_, values)| values)
        .collect();
    let filter = format!("(mail={})", ldap3::ldap_escape(address.as_str()));
    let mut out = Vec::new();
    for base in contexts {
        ldap.with_timeout(timeout);
        let (entries, _) = ldap
            .search(&base, Scope::Subtree, &filter, ATTRIBUTES.to_vec())
            .await?
            .success()?;
        for entry in entries {
            let entry = SearchEntry::construct(entry);
            // Servers name attributes as their schema spells them (and with the `;binary`
            // option as asked): compare the base name without case. A value that happens to be
            // valid UTF-8 lands among the text attributes.
            let wanted = |name: &str| {
                let base = name.split(';').next().unwrap_or(name);
                base.eq_ignore_ascii_case("userSMIMECertificate")
                    || base.eq_ignore_ascii_case("userCertificate")
            };
            for (name, values) in entry.bin_attrs {
                if wanted(&name) {
                    out.extend(values);
                }
            }
            for (name, values) in entry.attrs {
                if wanted(&name) {
                    out.extend(values.into_iter().map(String::into_bytes));
                }
            }
        }
    }
    let _ = ldap.unbind().await;
    Ok(out)
}

/// Where mail for `domain` goes, in the order to try: the MX hosts by preference (hosts of
/// equal preference in random order, RFC 5321 section 5.1), or the domain itself when it has
/// no MX records (the implicit MX). `Err(NoSuchName)` for a domain that does not exist;
/// `Ok(vec![])` for a null MX (the domain takes no mail).
pub async fn mail_hosts(resolver: &Resolver, domain: &str) -> Result<Vec<Name>, DnsError> {
    let name = dns::domain_name(domain)?;
    let mut mx: Vec<(u16, u32, Name)> = resolver
        .lookup(&name, RecordType::MX)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            RData::MX(m) => Some((m.preference(), fastrand::u32(..), m.exchange().clone())),
            _ => None,
        })
        .collect();
    if mx.is_empty() {
        return Ok(vec![name]);
    }
    if mx.len() == 1 && mx[0].2.is_root() {
        return Ok(Vec::new());
    }
    mx.sort_by_key(|(preference, tie, _)| (*preference, *tie));
    Ok(mx
        .into_iter()
        .map(|(_, _, host)| host)
        .filter(|h| !h.is_root())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 389,
            target: Name::from_ascii(target).unwrap(),
        }
    }

    fn targets(list: &[SrvTarget]) -> Vec<String> {
        list.iter().map(|s| s.target.to_ascii()).collect()
    }

    /// A random source that answers `draws` in turn, and records the totals it was asked for.
    fn scripted(
        draws: &[u32],
    ) -> (
        impl FnMut(u32) -> u32 + '_,
        std::rc::Rc<std::cell::RefCell<Vec<u32>>>,
    ) {
        let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let record = asked.clone();
        let mut next = draws.iter();
        (
            move |n| {
                record.borrow_mut().push(n);
                *next.next().expect("a draw")
            },
            asked,
        )
    }

    #[test]
    fn srv_targets_go_by_priority_then_by_weighted_draw() {
        let records = vec![
            srv(20, 0, "backup."),
            srv(10, 60, "a."),
            srv(10, 30, "b."),
            srv(10, 10, "c."),
        ];
        // Priority 10: weights 60, 30, 10 (total 100). Draw 70: 60 < 70 <= 90, so b; then a and
        // c are left (total 70), draw 65: past a's 60, so c; then a alone (draw 0 of 60).
        let (random, asked) = scripted(&[70, 65, 0, 0]);
        let ordered = order_srv(records.clone(), random);
        assert_eq!(targets(&ordered), ["b.", "c.", "a.", "backup."]);
        assert_eq!(*asked.borrow(), [100, 70, 60, 0]);
        // Draw 0 and 60 take a first (its running sum reaches them), 61 does not.
        let (random, _) = scripted(&[0, 0, 0, 0]);
        assert_eq!(targets(&order_srv(records.clone(), random))[0], "a.");
        let (random, _) = scripted(&[60, 0, 0, 0]);
        assert_eq!(targets(&order_srv(records.clone(), random))[0], "a.");
        let (random, _) = scripted(&[61, 0, 0, 0]);
        assert_eq!(targets(&order_srv(records, random))[0], "b.");
    }

    #[test]
    fn zero_weight_targets_are_chosen_only_by_a_zero_draw_or_when_alone() {
        let records = vec![srv(1, 0, "zero."), srv(1, 5, "five.")];
        let (random, _) = scripted(&[0, 0]);
        assert_eq!(
            targets(&order_srv(records.clone(), random)),
            ["zero.", "five."]
        );
        let (random, _) = scripted(&[1, 0]);
        assert_eq!(targets(&order_srv(records, random)), ["five.", "zero."]);
    }

    #[test]
    fn a_lone_dot_target_means_no_service() {
        let (random, _) = scripted(&[]);
        assert!(order_srv(vec![srv(0, 0, ".")], random).is_empty());
        let (random, _) = scripted(&[]);
        assert!(order_srv(Vec::new(), random).is_empty());
    }

    #[test]
    fn the_real_random_source_keeps_priorities_and_every_target() {
        let records = vec![srv(2, 1, "c."), srv(1, 1, "a."), srv(1, 1, "b.")];
        for _ in 0..50 {
            let ordered = order_srv(records.clone(), |n| fastrand::u32(0..=n));
            let names = targets(&ordered);
            assert_eq!(names.len(), 3);
            assert_eq!(names[2], "c.");
        }
    }
}
