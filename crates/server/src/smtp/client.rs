//! Outbound SMTP: hands one sealed message for one recipient to another HISP's server (EHLO,
//! STARTTLS when offered, MAIL, RCPT, DATA with dot-stuffing), and says whether it was accepted,
//! refused for good (a 5xx reply) or is worth trying again (a 4xx reply, a connection, TLS or
//! timeout failure).
//!
//! Connections are kept: after a message the connection goes back to a [`Pool`] keyed by the
//! next hop, and the next message to that hop reuses it (RSET first, which also shows it is
//! still alive; a dead one is replaced by a new connection at once). Idle connections are closed
//! after [`IDLE`].
//!
//! TLS ([`TlsPolicy`], per route): `opportunistic` (the default) upgrades with STARTTLS whenever
//! the peer offers it and sends in the clear only to a peer that does not; `required` refuses to
//! send to a peer that does not offer it. Either way the peer's certificate is verified against
//! the configured roots for the route's host name: a failed verification is a failed attempt
//! (retried, then reported), never a silent fall back to plain text. The content is S/MIME
//! signed and encrypted regardless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a connection may sit idle in the pool.
pub const IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per next hop.
const MAX_IDLE_PER_HOP: usize = 16;

/// What the other server did with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// Refused for good (5xx), with the reply.
    Permanent(String),
    /// Worth another attempt (4xx, connection failure, timeout), with why.
    Transient(String),
}

/// Whether a route's connections must be encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// STARTTLS when the peer offers it (verified); plain text when it does not.
    #[default]
    Opportunistic,
    /// STARTTLS or nothing.
    Required,
}

/// Where and how to hand a message over.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    /// `host:port` (or `ip:port`).
    pub address: &'a str,
    /// The name STARTTLS verifies the peer's certificate against, when it is not the host of
    /// `address` (a mail host found by MX lookup, reached at one of its addresses).
    pub name: Option<&'a str>,
    pub tls: TlsPolicy,
    /// Verifies the peer's certificate; `None` when no roots are configured (then a peer that
    /// offers STARTTLS cannot be verified, and the attempt fails).
    pub roots: Option<&'a Arc<rustls::ClientConfig>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

/// Open connections to next hops, idle between messages.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<(Instant, Conn)>>>,
}

impl Pool {
    fn take(&self, address: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(address)?;
        while let Some((since, conn)) = list.pop() {
            if since.elapsed() < IDLE {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, address: &str, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(address.to_string()).or_default();
        list.retain(|(since, _)| since.elapsed() < IDLE);
        if list.len() < MAX_IDLE_PER_HOP {
            list.push((Instant::now(), conn));
        }
    }

    /// Idle connections held (for tests and metrics).
    pub fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// Reads one (possibly multi-line) reply: its code and its text.
async fn reply(conn: &mut Conn, timeout: Duration) -> Result<(u16, String), String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(timeout, conn.read_line(&mut line))
            .await
            .map_err(|_| "timed out waiting for a reply".to_string())?
            .map_err(|e| format!("connection failed: {e}"))?;
        if n == 0 {
            return Err("connection closed".to_string());
        }
        if line.len() > 4096 {
            return Err("reply line too long".to_string());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {}", line.trim_end()))?;
        text.push_str(line.trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
}

async fn write(conn: &mut Conn, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    let io = conn.get_mut();
    tokio::time::timeout(timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    .map_err(|_| "timed out writing".to_string())?
    .map_err(|e| format!("connection failed: {e}"))
}

async fn command(conn: &mut Conn, line: &str, timeout: Duration) -> Result<(u16, String), String> {
    write(conn, line.as_bytes(), timeout).await?;
    reply(conn, timeout).await
}

/// The message's lines with CR LF endings, dot-stuffed, ending with `.` alone.
pub fn data_block(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', message).map(|i| i + 1);
    let lines = ends.chain((!message.is_empty()).then_some(message.len()));
    for end in lines {
        if end <= start {
            continue;
        }
        let line = &message[start..end];
        start = end;
        let body = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn classify(step: &str, (code, text): (u16, String)) -> Delivery {
    let text = text.replace('\n', " ");
    if code >= 500 {
        Delivery::Permanent(format!("{step}: {text}"))
    } else {
        Delivery::Transient(format!("{step}: {text}"))
    }
}

/// Whether an EHLO reply lists `keyword`.
fn offers(ehlo: &str, keyword: &str) -> bool {
    ehlo.lines().skip(1).any(|l| {
        l.get(4..)
            .and_then(|k| k.split_whitespace().next())
            .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    })
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Sends `message` from `sender` to `recipient` through `hop`, over a pooled connection when
/// there is one.
pub async fn send(
    pool: &Pool,
    hop: &Hop<'_>,
    hostname: &str,
    sender: &str,
    recipient: &str,
    message: &[u8],
    timeout: Duration,
) -> Delivery {
    let mut reused = pool.take(hop.address);
    if let Some(conn) = reused.as_mut() {
        // A connection that has gone away is no failure of this message: open a new one.
        if !matches!(command(conn, "RSET\r\n", timeout).await, Ok((250, _))) {
            reused = None;
        }
    }
    let mut conn = match reused {
        Some(conn) => conn,
        None => match open(hop, hostname, timeout).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(refused)) => return refused,
            Err(why) => return Delivery::Transient(why),
        },
    };
    match transaction(&mut conn, sender, recipient, message, timeout).await {
        Ok(delivery) => {
            // The server answered every step: the connection is in step and may carry more.
            pool.put(hop.address, conn);
            delivery
        }
        Err(why) => Delivery::Transient(why),
    }
}

/// Connects, reads the greeting, says EHLO (HELO for an old server), and upgrades with STARTTLS
/// as the hop's policy asks. `Ok(Err(_))` for a refusal in a reply.
async fn open(
    hop: &Hop<'_>,
    hostname: &str,
    timeout: Duration,
) -> Result<Result<Conn, Delivery>, String> {
    let address = hop.address;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| format!("timed out connecting to {address}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut conn: Conn = BufReader::new(Box::new(tcp));
    let greeting = reply(&mut conn, timeout).await?;
    if greeting.0 != 220 {
        return Ok(Err(classify("greeting", greeting)));
    }
    let ehlo = command(&mut conn, &format!("EHLO {hostname}\r\n"), timeout).await?;
    if ehlo.0 != 250 {
        if hop.tls == TlsPolicy::Required {
            return Err(format!(
                "{address} does not speak ESMTP, and TLS is required"
            ));
        }
        let helo = command(&mut conn, &format!("HELO {hostname}\r\n"), timeout).await?;
        if helo.0 != 250 {
            return Ok(Err(classify("HELO", helo)));
        }
        return Ok(Ok(conn));
    }
    if !offers(&ehlo.1, "STARTTLS") {
        if hop.tls == TlsPolicy::Required {
            return Err(format!(
                "{address} does not offer STARTTLS, and TLS is required"
            ));
        }
        return Ok(Ok(conn));
    }
    let Some(roots) = hop.roots else {
        return Err(format!(
            "{address} offers STARTTLS but no TLS roots are configured to verify it"
        ));
    };
    let start = command(&mut conn, "STARTTLS\r\n", timeout).await?;
    if start.0 != 220 {
        if hop.tls == TlsPolicy::Required {
            return Ok(Err(classify("STARTTLS", start)));
        }
        return Ok(Ok(conn));
    }
    let name = hop.name.unwrap_or_else(|| host_of(address));
    let name = ServerName::try_from(name.trim_end_matches('.').to_string())
        .map_err(|_| format!("{address}: not a host name to verify TLS against"))?;
    let tcp = conn.into_inner();
    let stream = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(roots.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS handshake with {address} timed out"))?
    .map_err(|e| format!("TLS with {address} failed: {e}"))?;
    let mut conn: Conn = BufReader::new(Box::new(stream));
    // The session starts over under TLS (RFC 3207).
    let ehlo = command(&mut conn, &format!("EHLO {hostname}\r\n"), timeout).await?;
    if ehlo.0 != 250 {
        return Ok(Err(classify("EHLO after STARTTLS", ehlo)));
    }
    Ok(Ok(conn))
}

/// One mail transaction on an open, greeted connection. `Err` when the connection failed (it is
/// then out of step and must not be reused).
async fn transaction(
    conn: &mut Conn,
    sender: &str,
    recipient: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<Delivery, String> {
    let mail = command(
        conn,
        &format!("MAIL FROM:<{sender}> SIZE={}\r\n", message.len()),
        timeout,
    )
    .await?;
    if mail.0 != 250 {
        return Ok(classify("MAIL", mail));
    }
    let rcpt = command(conn, &format!("RCPT TO:<{recipient}>\r\n"), timeout).await?;
    if rcpt.0 != 250 && rcpt.0 != 251 {
        return Ok(classify("RCPT", rcpt));
    }
    let data = command(conn, "DATA\r\n", timeout).await?;
    if data.0 != 354 {
        return Ok(classify("DATA", data));
    }
    write(conn, &data_block(message), timeout).await?;
    let done = reply(conn, timeout).await?;
    if done.0 == 250 {
        Ok(Delivery::Accepted)
    } else {
        Ok(classify("end of data", done))
    }
}

/// The TLS client configuration for outbound STARTTLS: the certificates of the PEM file at
/// `roots` as the only trusted roots.
pub fn client_config(roots: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(roots)
        .with_context(|| format!("cannot read TLS roots from {}", roots.display()))?
    {
        let cert = cert.with_context(|| format!("{} is not PEM certificates", roots.display()))?;
        store
            .add(cert)
            .with_context(|| format!("an unusable root certificate in {}", roots.display()))?;
    }
    anyhow::ensure!(
        !store.is_empty(),
        "{} holds no certificates",
        roots.display()
    );
    Ok(Arc::new(client_config_with(store)))
}

/// A TLS client configuration trusting exactly `roots`.
pub fn client_config_with(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::data_block;

    #[test]
    fn a_data_block_has_crlf_lines_stuffed_dots_and_the_end_marker() {
        assert_eq!(data_block(b""), b".\r\n");
        assert_eq!(data_block(b"a\r\nb\r\n"), b"a\r\nb\r\n.\r\n");
        // Bare LF becomes CR LF; a last line without its end gets one.
        assert_eq!(data_block(b"a\nb"), b"a\r\nb\r\n.\r\n");
        // A line that starts with a dot gets a second one, wherever it is.
        assert_eq!(
            data_block(b".\r\nx.y\r\n..z\r\n."),
            b"..\r\nx.y\r\n...z\r\n..\r\n.\r\n"
        );
        assert_eq!(data_block(b"\n\n"), b"\r\n\r\n.\r\n");
    }
}
