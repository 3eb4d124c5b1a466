//! The Direct configuration file (`--direct-config FILE`, TOML):
//!
//! ```toml
//! domains = ["direct.example.org"]       # the local Direct domains (required)
//! hostname = "hisp.example.org"          # the SMTP greeting's name [default: the first domain]
//! kek_file = "/etc/nutmeg/direct.kek"    # the key-encryption key, 32 bytes in base64 (required)
//! max_message_size = "10MiB"
//! command_timeout_secs = 300
//! data_timeout_secs = 600
//! retry_base_secs = 60
//! retry_max_secs = 3600
//! max_attempts = 10
//! processed_timeout_secs = 3600
//! crls = ["/etc/nutmeg/partner.crl"]     # CRLs (DER or PEM) of issuers trusted for Direct
//! workers = 4                           # delivery workers per process
//! cache_ttl_secs = 30                    # keys, anchors, validated certificates kept in memory
//! tls_roots = "/etc/ssl/certs/ca-certificates.crt"  # PEM roots for outbound STARTTLS
//!                                        # [default: that file, when it exists]
//!
//! mx_port = 25                           # the SMTP port of mail hosts found by MX lookup
//! notice_address = "notices@direct.example.org"   # the exchange's own address: break-the-glass
//!                                        # notices also go from it to the source's Direct
//!                                        # addresses (issue it with `nutmeg admin direct address
//!                                        # add`) [default: none, notices are FHIR only]
//!
//! [dns]                                  # the resolver for certificate discovery and MX lookup
//! nameservers = ["127.0.0.1:53"]         # [default: the nameservers of /etc/resolv.conf]
//! timeout_secs = 5                       # per query and nameserver [default: resolv.conf's, or 5]
//! attempts = 2                           # rounds over the nameservers [default: resolv.conf's, or 2]
//!
//! [[routes]]                             # static routes; they win over MX lookup
//! domain = "other.example"
//! address = "mx.other.example:25"
//! tls = "opportunistic"                  # or "required" [default: opportunistic]
//! ```
//!
//! An outside recipient's certificate is the operator's (in the database) or else discovered by
//! DNS CERT and LDAP through `[dns]`; mail for an outside domain without a static route goes to
//! its MX hosts (STARTTLS opportunistic, verified against `tls_roots`).
//!
//! Trust anchors, certificates and keys are in the database (`nutmeg admin direct ...`).

use std::path::Path;
use std::time::Duration;

use direct::keys::Kek;
use openssl::x509::X509Crl;
use serde::Deserialize;

use super::dns::DnsConfig;
use super::hisp::{HispConfig, Route};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    domains: Vec<String>,
    hostname: Option<String>,
    kek_file: String,
    max_message_size: Option<String>,
    command_timeout_secs: Option<u64>,
    data_timeout_secs: Option<u64>,
    retry_base_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    max_attempts: Option<u32>,
    processed_timeout_secs: Option<u64>,
    cache_ttl_secs: Option<u64>,
    workers: Option<usize>,
    tls_roots: Option<String>,
    #[serde(default)]
    crls: Vec<String>,
    #[serde(default)]
    routes: Vec<RouteFile>,
    mx_port: Option<u16>,
    dns: Option<DnsFile>,
    notice_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsFile {
    nameservers: Option<Vec<String>>,
    timeout_secs: Option<u64>,
    attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    domain: String,
    address: String,
    #[serde(default)]
    tls: super::client::TlsPolicy,
}

/// The system's CA bundle, used for outbound STARTTLS when `tls_roots` is not set.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Reads the Direct configuration: the HISP's settings, its key-encryption key and CRLs.
pub fn load(path: &Path) -> anyhow::Result<(HispConfig, Kek, Vec<X509Crl>)> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Direct configuration {}", path.display()))?;
    let file: File = toml::from_str(&text)
        .with_context(|| format!("invalid Direct configuration {}", path.display()))?;
    anyhow::ensure!(!file.domains.is_empty(), "direct: no domains");
    for d in &file.domains {
        anyhow::ensure!(
            direct::ca::is_dns_name(d),
            "direct: '{d}' is not a domain name"
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let kek_path = base.join(&file.kek_file);
    let kek_text = std::fs::read_to_string(&kek_path)
        .with_context(|| format!("cannot read the key-encryption key {}", kek_path.display()))?;
    let kek = Kek::from_base64(kek_text.trim())
        .map_err(|e| anyhow::anyhow!("{}: {e}", kek_path.display()))?;
    let hostname = file.hostname.unwrap_or_else(|| file.domains[0].clone());
    let mut config = HispConfig::new(file.domains, &hostname);
    if let Some(size) = file.max_message_size {
        config.max_message_bytes = crate::config::parse_size(&size)
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("direct: max_message_size '{size}' is not a size"))?;
    }
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    config.command_timeout = secs(file.command_timeout_secs, config.command_timeout);
    config.data_timeout = secs(file.data_timeout_secs, config.data_timeout);
    config.retry_base = secs(file.retry_base_secs, config.retry_base);
    config.retry_max = secs(file.retry_max_secs, config.retry_max);
    config.processed_timeout = secs(file.processed_timeout_secs, config.processed_timeout);
    config.cache_ttl = secs(file.cache_ttl_secs, config.cache_ttl);
    if let Some(n) = file.workers {
        config.workers = n.clamp(1, 64);
    }
    config.tls_roots = match &file.tls_roots {
        Some(p) => Some(super::client::client_config(&base.join(p))?),
        None if Path::new(SYSTEM_ROOTS).exists() => {
            super::client::client_config(Path::new(SYSTEM_ROOTS)).ok()
        }
        None => None,
    };
    if let Some(n) = file.max_attempts {
        config.max_attempts = n.max(1);
    }
    config.routes = file
        .routes
        .into_iter()
        .map(|r| Route {
            domain: r.domain.to_ascii_lowercase(),
            address: r.address,
            tls: r.tls,
        })
        .collect();
    if let Some(port) = file.mx_port {
        anyhow::ensure!(port > 0, "direct: mx_port 0 is not a port");
        config.mx_port = port;
    }
    config.dns = Some(dns_config(file.dns)?);
    if let Some(address) = file.notice_address {
        let address = address.trim().to_ascii_lowercase();
        let local = store::domain_of(&address).is_some_and(|d| config.domains.contains(&d));
        anyhow::ensure!(
            local,
            "direct: notice_address '{address}' is not an address of a local Direct domain"
        );
        config.notice_address = Some(address);
    }
    let mut crls = Vec::new();
    for c in &file.crls {
        let p = base.join(c);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let crl = X509Crl::from_der(&bytes)
            .or_else(|_| X509Crl::from_pem(&bytes))
            .with_context(|| format!("{} is not a CRL", p.display()))?;
        crls.push(crl);
    }
    Ok((config, kek, crls))
}

/// The resolver's configuration: the `[dns]` table over `/etc/resolv.conf`'s.
fn dns_config(file: Option<DnsFile>) -> anyhow::Result<DnsConfig> {
    use anyhow::Context as _;
    let file = file.unwrap_or(DnsFile {
        nameservers: None,
        timeout_secs: None,
        attempts: None,
    });
    let mut config = match &file.nameservers {
        // Given nameservers need nothing from resolv.conf (which may not exist).
        Some(_) => DnsConfig::new(Vec::new()),
        None => DnsConfig::system().context("direct: cannot read /etc/resolv.conf for [dns]")?,
    };
    if let Some(list) = file.nameservers {
        anyhow::ensure!(!list.is_empty(), "direct: [dns] nameservers is empty");
        let mut servers = Vec::new();
        for n in &list {
            let server = n
                .parse::<std::net::SocketAddr>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .map_err(|_| {
                    anyhow::anyhow!("direct: [dns] nameserver '{n}' is not an ip:port (or ip)")
                })?;
            servers.push(server);
        }
        config.nameservers = servers;
    }
    if let Some(secs) = file.timeout_secs {
        anyhow::ensure!(secs > 0, "direct: [dns] timeout_secs must be at least 1");
        config.timeout = Duration::from_secs(secs);
    }
    if let Some(n) = file.attempts {
        config.attempts = n.clamp(1, 10);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<HispConfig> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("kek"), Kek::generate_base64()?)?;
        let path = dir.path().join("direct.toml");
        std::fs::write(&path, text)?;
        Ok(load(&path)?.0)
    }

    const BASE: &str = "domains = [\"direct.example.org\"]\nkek_file = \"kek\"\n";

    #[test]
    fn the_notice_address_is_one_of_ours() {
        let config = load_text(&format!(
            "{BASE}notice_address = \"Notices@Direct.Example.org\"\n"
        ))
        .expect("a local address");
        assert_eq!(
            config.notice_address.as_deref(),
            Some("notices@direct.example.org")
        );
        assert!(load_text(BASE).expect("none").notice_address.is_none());
        for bad in ["notices@elsewhere.example", "not an address"] {
            let e = load_text(&format!("{BASE}notice_address = \"{bad}\"\n")).expect_err("refused");
            assert!(e.to_string().contains("notice_address"), "{e}");
        }
    }

    #[test]
    fn the_dns_table_and_mx_port_configure_discovery_and_mx_lookup() {
        let config = load_text(&format!(
            "{BASE}mx_port = 2525\n[dns]\nnameservers = [\"127.0.0.1:5353\", \"::1\"]\n\
             timeout_secs = 2\nattempts = 3\n"
        ))
        .unwrap();
        assert_eq!(config.mx_port, 2525);
        let dns = config.dns.unwrap();
        assert_eq!(
            dns.nameservers,
            vec![
                "127.0.0.1:5353".parse::<std::net::SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(dns.timeout, Duration::from_secs(2));
        assert_eq!(dns.attempts, 3);
    }

    #[test]
    fn without_a_dns_table_the_system_resolver_and_port_25_are_used() {
        let config = load_text(BASE).unwrap();
        assert_eq!(config.mx_port, 25);
        if let Ok(system) = DnsConfig::system() {
            assert_eq!(config.dns.unwrap(), system);
        }
    }

    #[test]
    fn bad_dns_settings_are_refused_with_what_is_wrong() {
        for (text, want) in [
            (
                "[dns]\nnameservers = [\"resolver.example\"]\n",
                "is not an ip:port",
            ),
            ("[dns]\nnameservers = []\n", "nameservers is empty"),
            (
                "[dns]\nnameservers = [\"127.0.0.1\"]\ntimeout_secs = 0\n",
                "timeout_secs",
            ),
            ("mx_port = 0\n", "mx_port"),
            ("[dns]\nservers = [\"127.0.0.1\"]\n", "unknown field"),
        ] {
            let e = load_text(&format!("{BASE}{text}")).unwrap_err();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }
}
