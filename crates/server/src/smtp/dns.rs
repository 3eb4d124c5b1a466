//! A small stub resolver for what Direct needs: CERT (RFC 4398 certificate discovery), SRV
//! (`_ldap._tcp`), MX and address lookups, sent to configured recursive nameservers (the
//! `[dns]` table of the Direct configuration, by default those of `/etc/resolv.conf`), so that
//! tests point it at a local authoritative server.
//!
//! The wire format (names, records, CERT/SRV/MX data, EDNS) is `hickory-proto`'s, without its
//! default features (no tokio runtime glue, no DNSSEC, no TLS/HTTPS/QUIC transports). The
//! exchange itself, a query over UDP retried over TCP when the answer comes back truncated (the
//! TC bit: a CERT answer with a certificate or two easily passes the UDP size), is the few dozen
//! lines below on tokio sockets. A whole resolver crate (`hickory-resolver`) was not taken: it
//! brings its own caching, connection pools, and system configuration handling that nutmeg does
//! not need (validated results are cached by the HISP itself), and it is many times the code.
//!
//! What the answers mean for delivery: a name that does not exist (NXDOMAIN) is a permanent
//! answer; a timeout, a server failure or a refusal by every nameserver is temporary (the queue
//! tries again later). No DNSSEC validation is done: certificates found are trusted only through
//! path validation to the sender's anchors, never because DNS returned them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP payload size advertised with EDNS (the size DNS flag day 2020 settled on).
const UDP_PAYLOAD: u16 = 1232;

/// Where and how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Recursive nameservers, asked in order.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer from one nameserver.
    pub timeout: Duration,
    /// Rounds over all nameservers before giving up.
    pub attempts: u32,
}

impl DnsConfig {
    /// `nameservers` with resolv.conf's defaults: 5 seconds, 2 attempts.
    pub fn new(nameservers: Vec<SocketAddr>) -> DnsConfig {
        DnsConfig {
            nameservers,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }

    /// The configuration `/etc/resolv.conf` gives (its `nameserver` lines on port 53, and
    /// `options timeout:N attempts:N`), with resolv.conf's defaults (5 s, 2 attempts).
    pub fn system() -> std::io::Result<DnsConfig> {
        Ok(Self::parse_resolv_conf(&std::fs::read_to_string(
            "/etc/resolv.conf",
        )?))
    }

    /// [`DnsConfig::system`] from the file's text.
    pub fn parse_resolv_conf(text: &str) -> DnsConfig {
        let mut config = DnsConfig::new(Vec::new());
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A link-local IPv6 address may carry a zone (`fe80::1%eth0`): not supported.
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        config.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) =
                            option.strip_prefix("timeout:").and_then(|n| n.parse().ok())
                        {
                            config.timeout = Duration::from_secs(n);
                        } else if let Some(n) = option
                            .strip_prefix("attempts:")
                            .and_then(|n| n.parse().ok())
                        {
                            config.attempts = n;
                        }
                    }
                }
                _ => {}
            }
        }
        if config.nameservers.is_empty() {
            // resolv.conf(5): with no nameserver line, the local machine's is used.
            config
                .nameservers
                .push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 53));
        }
        config
    }
}

/// Why a lookup did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN): permanent.
    #[error("{0} does not exist")]
    NoSuchName(String),
    /// No nameserver gave a usable answer in time: temporary.
    #[error("DNS lookup of {name} failed: {why}")]
    Temporary { name: String, why: String },
    /// The name cannot be asked for (a label too long, an empty label): permanent.
    #[error("{0} is not a name DNS can look up")]
    BadName(String),
}

impl DnsError {
    /// Whether trying again later may give another answer.
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsError::Temporary { .. })
    }
}

/// Asks the configured nameservers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Resolver {
    config: DnsConfig,
}

impl Resolver {
    pub fn new(config: DnsConfig) -> Resolver {
        Resolver { config }
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// The records of `rtype` at `name` (an empty list when the name exists without them).
    /// CNAMEs the recursive server followed are skipped: only records of `rtype` are answered.
    pub async fn lookup(&self, name: &Name, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let shown = name.to_string();
        let mut why = String::from("no nameservers configured");
        for _ in 0..self.config.attempts.max(1) {
            for server in &self.config.nameservers {
                match self.exchange(*server, name, rtype).await {
                    Ok(answer) => match answer.response_code() {
                        ResponseCode::NoError => {
                            return Ok(answer
                                .answers()
                                .iter()
                                .filter(|r| r.record_type() == rtype)
                                .map(|r: &Record| r.data().clone())
                                .collect())
                        }
                        ResponseCode::NXDomain => return Err(DnsError::NoSuchName(shown)),
                        code => why = format!("{server} answered {code}"),
                    },
                    Err(e) => why = format!("{server}: {e}"),
                }
            }
        }
        Err(DnsError::Temporary { name: shown, why })
    }

    /// The IPv4 and IPv6 addresses of `host` (A, then AAAA).
    pub async fn addresses(&self, host: &Name) -> Result<Vec<IpAddr>, DnsError> {
        let mut out = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            for data in self.lookup(host, rtype).await? {
                match data {
                    RData::A(a) => out.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// One query to one server: UDP, then TCP if the answer was truncated.
    async fn exchange(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message, String> {
        let id = fastrand::u16(..);
        let mut query = Message::new();
        query
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD);
        query.set_edns(edns);
        let bytes = query.to_vec().map_err(|e| e.to_string())?;
        let answer =
            tokio::time::timeout(self.config.timeout, udp(server, &bytes, id, name, rtype))
                .await
                .map_err(|_| "timed out".to_string())??;
        if !answer.truncated() {
            return Ok(answer);
        }
        let answer = tokio::time::timeout(self.config.timeout, tcp(server, &bytes))
            .await
            .map_err(|_| "timed out over TCP".to_string())??;
        check(&answer, id, name, rtype)?;
        Ok(answer)
    }
}

/// Whether `answer` answers our query (its id and question): anything else is ignored.
fn check(answer: &Message, id: u16, name: &Name, rtype: RecordType) -> Result<(), String> {
    let same = answer.id() == id
        && answer.message_type() == MessageType::Response
        && answer
            .queries()
            .first()
            .is_some_and(|q| q.query_type() == rtype && q.name() == name);
    if same {
        Ok(())
    } else {
        Err("an answer to another question".to_string())
    }
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() {
        (IpAddr::from([0, 0, 0, 0]), 0).into()
    } else {
        (IpAddr::from([0u16; 8]), 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // A stray or forged datagram (wrong id or question) is dropped; the real answer may
        // still come before the timeout.
        if let Ok(answer) = Message::from_vec(&buf[..n]) {
            if check(&answer, id, name, rtype).is_ok() {
                return Ok(answer);
            }
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| e.to_string())
}

/// The DNS name of a domain given as text (`other.example`), fully qualified.
pub fn domain_name(domain: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(domain.trim_end_matches('.'))
        .map_err(|_| DnsError::BadName(domain.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The name RFC 4398 (section 3.3) and the Direct Applicability Statement give an address's
/// certificate: the whole local part as one label in front of the domain, so that
/// `john.doe@example.org` is the three labels `john.doe`, `example`, `org` (written
/// `john\.doe.example.org.`), never `john` under `doe.example.org`. Other characters a local part
/// may hold (`+`, `_`, `'`, ...) are taken as they are; DNS labels are 8-bit clean. `None` for a
/// local part that cannot be one label (empty, over 63 octets, or quoted).
pub fn address_name(address: &str) -> Option<Name> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || local.len() > 63 || local.starts_with('"') {
        return None;
    }
    let domain = domain_name(domain).ok()?;
    let mut labels: Vec<&[u8]> = vec![local.as_bytes()];
    labels.extend(domain.iter());
    Name::from_labels(labels).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &Name) -> Vec<String> {
        name.iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn an_address_maps_to_its_local_part_as_one_label() {
        let name = address_name("john.doe@Example.org").unwrap();
        assert_eq!(labels(&name), ["john.doe", "Example", "org"]);
        assert_eq!(name.to_string(), "john\\.doe.Example.org.");
        let name = address_name("a+b_c'd@direct.other.test").unwrap();
        assert_eq!(labels(&name), ["a+b_c'd", "direct", "other", "test"]);
        assert!(name.is_fqdn());
        let name = address_name("bob@other.test").unwrap();
        assert_eq!(name.to_ascii(), "bob.other.test.");
    }

    #[test]
    fn local_parts_that_cannot_be_a_label_have_no_address_bound_name() {
        assert!(address_name("@other.test").is_none());
        assert!(address_name("nobody").is_none());
        assert!(address_name(&format!("{}@other.test", "x".repeat(64))).is_none());
        assert!(address_name(&format!("{}@other.test", "x".repeat(63))).is_some());
        assert!(address_name("\"john doe\"@other.test").is_none());
        assert!(address_name("bob@bad..domain").is_none());
    }

    #[test]
    fn resolv_conf_gives_nameservers_timeout_and_attempts() {
        let config = DnsConfig::parse_resolv_conf(
            "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver ::1\n\
             nameserver fe80::1%eth0\noptions ndots:1 timeout:3 attempts:4\n",
        );
        assert_eq!(
            config.nameservers,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.attempts, 4);
        let none = DnsConfig::parse_resolv_conf("");
        assert_eq!(none.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
    }
}
