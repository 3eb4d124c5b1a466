//! The inbound SMTP listener (RFC 5321 ESMTP): EHLO/HELO, MAIL (with SIZE and BODY), RCPT, DATA,
//! RSET, NOOP, VRFY, QUIT and STARTTLS (RFC 3207, with the HTTPS certificate through rustls);
//! PIPELINING (replies are written when the client's pipelined commands are all read), SIZE,
//! 8BITMIME and ENHANCEDSTATUSCODES. It only speaks the wire: which recipients exist and what an
//! accepted message becomes is [`Hisp`]'s.
//!
//! Mail is accepted only for active addresses of the local Direct domains: a recipient elsewhere
//! is refused at RCPT (550 5.7.1, never relayed), an unknown local one too (550 5.1.1). Commands
//! wait at most the command timeout, each line of data the data timeout (then 421 and the
//! connection closes); a message over the size limit is read to its end and refused (552); a
//! client with too many bad commands is disconnected (421). After STARTTLS whatever the client
//! pipelined behind it is refused (the connection closes), and the session starts over.
//!
//! The same listener serves submission ([`Mode::Submission`], `--submission`): AUTH PLAIN is
//! offered and accepted only after STARTTLS (538 before), MAIL needs a signed-in user (530) and an
//! address they own (553), recipients may be anywhere, and an accepted message is queued for
//! sealing and delivery ([`super::submission`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::hisp::{Hisp, RecipientCheck};
use super::submission::{self, Auth};

/// Connections served at once; more are told to come back later.
const MAX_CONNECTIONS: usize = 256;
/// Longest command line accepted (RFC 5321 asks for 512 at least).
const MAX_COMMAND: usize = 2048;
/// Longest line of message data (RFC 5321's limit is 1000 with CR LF; be lenient).
const MAX_DATA_LINE: usize = 64 * 1024;
/// Bad commands before the connection is closed.
const MAX_ERRORS: u32 = 10;
/// How long the TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from other HISPs for local addresses (port 25 style).
    Relay,
    /// Mail from signed-in local users to anywhere (port 587 style).
    Submission,
}

/// Anything a session can run over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The TLS configuration for STARTTLS: the HTTPS server's certificate and key, without ALPN.
pub fn starttls_config(https: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = https.clone();
    config.alpn_protocols.clear();
    Arc::new(config)
}

/// Serves SMTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hisp: Hisp,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_mode(listener, hisp, tls, Mode::Relay, shutdown).await
}

/// Serves SMTP in `mode` on `listener` until `shutdown` completes.
pub async fn serve_mode(
    listener: TcpListener,
    hisp: Hisp,
    tls: Option<Arc<ServerConfig>>,
    mode: Mode,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "smtp: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (hisp, tls) = (hisp.clone(), tls.clone());
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut session = Session::new(hisp, tls, mode, Box::new(tcp));
                    if let Err(e) = session.run().await {
                        tracing::debug!(%peer, error = %e, "smtp: session ended");
                    }
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let mut tcp = tcp;
                    let _ = tcp
                        .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                        .await;
                });
            }
        }
    }
}

/// A line as read: complete, too long (read to its end and dropped), or the end of input.
enum Line {
    Ok,
    TooLong,
    Eof,
}

async fn read_line(
    conn: &mut BufReader<Box<dyn Io>>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = conn.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Ok
            });
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&available[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        conn.consume(take);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Ok });
        }
    }
}

/// One line of a message's DATA (with its line end) added to `message` without its stuffed dot,
/// unless the message is past `max` bytes (then it is dropped and `too_big` set). `true` for the
/// line of one dot that ends the data.
fn data_line(line: &[u8], message: &mut Vec<u8>, too_big: &mut bool, max: usize) -> bool {
    if line == b".\r\n" || line == b".\n" {
        return true;
    }
    let body = line.strip_prefix(b".").unwrap_or(line);
    if message.len() + body.len() > max {
        *too_big = true;
        *message = Vec::new();
    }
    if !*too_big {
        message.extend_from_slice(body);
    }
    false
}

/// `<address>` after `FROM:` / `TO:` and the parameters after it. `None` for bad syntax.
fn parse_path<'a>(rest: &'a str, prefix: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = rest[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    // A source route (`@a,@b:user@c`) is allowed by RFC 5321 and ignored.
    let path = path.rsplit_once(':').map_or(path, |(_, p)| p);
    let params = rest[end + 1..].split_whitespace().collect();
    Some((path, params))
}

fn is_address(a: &str) -> bool {
    store::domain_of(a).is_some()
        && a.len() <= 254
        && a.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

struct Session {
    hisp: Hisp,
    tls: Option<Arc<ServerConfig>>,
    mode: Mode,
    /// The signed-in user (submission).
    user: Option<Box<store::User>>,
    conn: BufReader<Box<dyn Io>>,
    out: Vec<u8>,
    secure: bool,
    greeted: bool,
    mail_from: Option<String>,
    recipients: Vec<String>,
    errors: u32,
}

/// What to do after a command.
enum Next {
    Continue,
    Close,
}

impl Session {
    fn new(hisp: Hisp, tls: Option<Arc<ServerConfig>>, mode: Mode, io: Box<dyn Io>) -> Session {
        Session {
            hisp,
            tls,
            mode,
            user: None,
            conn: BufReader::new(io),
            out: Vec::new(),
            secure: false,
            greeted: false,
            mail_from: None,
            recipients: Vec::new(),
            errors: 0,
        }
    }

    /// Queues a reply; writes what is queued unless more pipelined commands are already waiting
    /// (or `force`).
    async fn reply(&mut self, text: &str, force: bool) -> std::io::Result<()> {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        if force || self.conn.buffer().is_empty() {
            let out = std::mem::take(&mut self.out);
            let io = self.conn.get_mut();
            io.write_all(&out).await?;
            io.flush().await?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let hostname = self.hisp.config().hostname.clone();
        self.reply(&format!("220 {hostname} ESMTP nutmeg"), true)
            .await?;
        let mut line = Vec::new();
        loop {
            let timeout = self.hisp.config().command_timeout;
            let read =
                tokio::time::timeout(timeout, read_line(&mut self.conn, &mut line, MAX_COMMAND))
                    .await;
            let next = match read {
                Err(_) => {
                    self.reply("421 4.4.2 Timeout, closing connection", true)
                        .await?;
                    Next::Close
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(Line::Eof)) => Next::Close,
                Ok(Ok(Line::TooLong)) => self.error("500 5.5.6 Line too long").await?,
                Ok(Ok(Line::Ok)) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']).to_string();
                    self.command(&text).await?
                }
            };
            if let Next::Close = next {
                return Ok(());
            }
        }
    }

    /// Replies with an error and counts it; closes after too many.
    async fn error(&mut self, text: &str) -> std::io::Result<Next> {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            self.reply("421 4.7.0 Too many errors, closing connection", true)
                .await?;
            return Ok(Next::Close);
        }
        self.reply(text, false).await?;
        Ok(Next::Continue)
    }

    async fn command(&mut self, text: &str) -> anyhow::Result<Next> {
        let (verb, rest) = match text.split_once(' ') {
            Some((v, r)) => (v.to_ascii_uppercase(), r.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let config = self.hisp.config().clone();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Ok(self.error("501 5.5.4 Syntax: EHLO hostname").await?);
                }
                self.reset();
                self.greeted = true;
                if verb == "HELO" {
                    self.reply(&format!("250 {} Hello {rest}", config.hostname), false)
                        .await?;
                } else {
                    let mut lines = vec![
                        format!("{} Hello {rest}", config.hostname),
                        "PIPELINING".to_string(),
                        format!("SIZE {}", config.max_message_bytes),
                        "8BITMIME".to_string(),
                        "ENHANCEDSTATUSCODES".to_string(),
                    ];
                    if self.tls.is_some() && !self.secure {
                        lines.push("STARTTLS".to_string());
                    }
                    if self.mode == Mode::Submission && self.secure {
                        lines.push("AUTH PLAIN".to_string());
                    }
                    let last = lines.len() - 1;
                    let reply: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                        .collect();
                    self.reply(&reply.join("\r\n"), false).await?;
                }
            }
            "MAIL" => {
                if !self.greeted {
                    return Ok(self.error("503 5.5.1 Send EHLO first").await?);
                }
                if self.mail_from.is_some() {
                    return Ok(self.error("503 5.5.1 Nested MAIL command").await?);
                }
                let Some((path, params)) = parse_path(rest, "FROM:") else {
                    return Ok(self.error("501 5.5.4 Syntax: MAIL FROM:<address>").await?);
                };
                if !path.is_empty() && !is_address(path) {
                    return Ok(self.error("553 5.1.7 Bad sender address syntax").await?);
                }
                if self.mode == Mode::Submission {
                    let Some(user) = &self.user else {
                        return Ok(self.error("530 5.7.0 Authentication required").await?);
                    };
                    match submission::may_send_as(self.hisp.store(), user, path).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(user_id = %user.user_id, "smtp submission: sender refused: not the user's address");
                            return Ok(self.error("553 5.7.1 Sender address is not yours").await?);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "smtp submission: local failure");
                            self.reply("451 4.3.0 Local error, try again later", false)
                                .await?;
                            return Ok(Next::Continue);
                        }
                    }
                }
                for p in params {
                    let (name, value) = p.split_once('=').unwrap_or((p, ""));
                    match name.to_ascii_uppercase().as_str() {
                        "SIZE" => match value.parse::<u64>() {
                            Ok(n) if n > config.max_message_bytes as u64 => {
                                self.reply(
                                    "552 5.3.4 Message size exceeds fixed maximum message size",
                                    false,
                                )
                                .await?;
                                return Ok(Next::Continue);
                            }
                            Ok(_) => {}
                            Err(_) => {
                                return Ok(self.error("501 5.5.4 Bad SIZE parameter").await?)
                            }
                        },
                        "BODY"
                            if value.eq_ignore_ascii_case("7BIT")
                                || value.eq_ignore_ascii_case("8BITMIME") => {}
                        _ => {
                            return Ok(self
                                .error("555 5.5.4 MAIL parameter not recognized")
                                .await?)
                        }
                    }
                }
                self.mail_from = Some(path.to_string());
                self.reply("250 2.1.0 Sender OK", false).await?;
            }
            "RCPT" => {
                if self.mail_from.is_none() {
                    return Ok(self.error("503 5.5.1 Need MAIL before RCPT").await?);
                }
                let Some((path, params)) = parse_path(rest, "TO:") else {
                    return Ok(self.error("501 5.5.4 Syntax: RCPT TO:<address>").await?);
                };
                if !params.is_empty() {
                    return Ok(self
                        .error("555 5.5.4 RCPT parameters not recognized")
                        .await?);
                }
                if !is_address(path) {
                    return Ok(self.error("501 5.1.3 Bad recipient address syntax").await?);
                }
                if self.recipients.len() >= config.max_recipients {
                    self.reply("452 4.5.3 Too many recipients", false).await?;
                    return Ok(Next::Continue);
                }
                match self.hisp.check_recipient(path).await {
                    Ok(RecipientCheck::Relay) if self.mode == Mode::Submission => {
                        // A signed-in user's mail goes anywhere: it is sealed and routed.
                        self.recipients.push(path.to_ascii_lowercase());
                        self.reply("250 2.1.5 Recipient OK", false).await?;
                    }
                    Ok(RecipientCheck::Local) => {
                        self.recipients.push(path.to_ascii_lowercase());
                        self.reply("250 2.1.5 Recipient OK", false).await?;
                    }
                    Ok(RecipientCheck::Unknown) => {
                        self.reply("550 5.1.1 No such recipient here", false)
                            .await?;
                    }
                    Ok(RecipientCheck::Relay) => {
                        self.reply("550 5.7.1 Relaying denied", false).await?;
                    }
                    Err(r) => {
                        self.reply(&format!("{} {} {}", r.code, r.status, r.text), false)
                            .await?;
                    }
                }
            }
            "DATA" => {
                if !rest.is_empty() {
                    return Ok(self.error("501 5.5.4 DATA takes no arguments").await?);
                }
                if self.mail_from.is_none() {
                    return Ok(self.error("503 5.5.1 Need MAIL command").await?);
                }
                if self.recipients.is_empty() {
                    return Ok(self.error("554 5.5.1 No valid recipients").await?);
                }
                self.reply("354 End data with <CR><LF>.<CR><LF>", true)
                    .await?;
                let Some(message) = self.read_data(&config).await? else {
                    return Ok(Next::Close);
                };
                let recipients = std::mem::take(&mut self.recipients);
                let from = self.mail_from.take().unwrap_or_default();
                self.reset();
                match message {
                    None => {
                        self.reply(
                            "552 5.3.4 Message size exceeds fixed maximum message size",
                            false,
                        )
                        .await?;
                    }
                    Some(raw) if self.mode == Mode::Submission => {
                        match submission::submit(&self.hisp, &from, &recipients, &raw).await {
                            Ok(id) => {
                                self.reply(&format!("250 2.0.0 Queued as {id}"), false)
                                    .await?
                            }
                            Err(r) => {
                                self.reply(&format!("{} {} {}", r.code, r.status, r.text), false)
                                    .await?
                            }
                        }
                    }
                    Some(raw) => match self.hisp.receive(&recipients, raw).await {
                        Ok(_) => self.reply("250 2.0.0 Message accepted", false).await?,
                        Err(r) => {
                            self.reply(&format!("{} {} {}", r.code, r.status, r.text), false)
                                .await?
                        }
                    },
                }
            }
            "AUTH" => return self.auth(rest).await,
            "RSET" => {
                self.reset();
                self.reply("250 2.0.0 OK", false).await?;
            }
            "NOOP" => self.reply("250 2.0.0 OK", false).await?,
            "VRFY" => {
                self.reply("252 2.5.0 Cannot VRFY user, but will accept message", false)
                    .await?
            }
            "QUIT" => {
                self.reply("221 2.0.0 Bye", true).await?;
                return Ok(Next::Close);
            }
            "STARTTLS" => {
                let Some(tls) = self.tls.clone().filter(|_| !self.secure) else {
                    return Ok(self.error("502 5.5.1 STARTTLS not available").await?);
                };
                if !rest.is_empty() {
                    return Ok(self.error("501 5.5.4 STARTTLS takes no arguments").await?);
                }
                self.reply("220 2.0.0 Ready to start TLS", true).await?;
                if !self.conn.buffer().is_empty() {
                    // Commands pipelined behind STARTTLS were sent in the clear: refuse them.
                    return Ok(Next::Close);
                }
                let io = std::mem::replace(
                    &mut self.conn,
                    BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>),
                )
                .into_inner();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
                    .await
                    .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
                self.conn = BufReader::new(Box::new(stream));
                self.secure = true;
                self.greeted = false;
                self.reset();
            }
            "" => {
                return Ok(self
                    .error("500 5.5.2 Syntax error, command unrecognized")
                    .await?)
            }
            _ => return Ok(self.error("502 5.5.2 Command not recognized").await?),
        }
        Ok(Next::Continue)
    }

    /// `AUTH PLAIN [initial-response]` (RFC 4954), on a submission listener after STARTTLS.
    async fn auth(&mut self, rest: &str) -> anyhow::Result<Next> {
        if self.mode != Mode::Submission {
            return Ok(self.error("502 5.5.2 Command not recognized").await?);
        }
        if !self.secure {
            return Ok(self
                .error("538 5.7.11 Encryption required for requested authentication mechanism")
                .await?);
        }
        if !self.greeted {
            return Ok(self.error("503 5.5.1 Send EHLO first").await?);
        }
        if self.user.is_some() || self.mail_from.is_some() {
            return Ok(self.error("503 5.5.1 Already authenticated").await?);
        }
        let (mechanism, initial) = match rest.split_once(' ') {
            Some((m, i)) => (m, Some(i.trim().to_string())),
            None => (rest, None),
        };
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return Ok(self
                .error("504 5.5.4 Unrecognized authentication type")
                .await?);
        }
        let response = match initial {
            Some(i) if i != "=" => i,
            Some(_) => String::new(),
            None => {
                self.reply("334 ", true).await?;
                let mut line = Vec::new();
                let timeout = self.hisp.config().command_timeout;
                match tokio::time::timeout(
                    timeout,
                    read_line(&mut self.conn, &mut line, MAX_COMMAND),
                )
                .await
                {
                    Ok(Ok(Line::Ok)) => {}
                    Ok(Ok(Line::TooLong)) => {
                        return Ok(self
                            .error("500 5.5.6 Authentication exchange line is too long")
                            .await?)
                    }
                    Ok(Ok(Line::Eof)) => return Ok(Next::Close),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        self.reply("421 4.4.2 Timeout, closing connection", true)
                            .await?;
                        return Ok(Next::Close);
                    }
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']);
                if text == "*" {
                    return Ok(self.error("501 5.7.0 Authentication cancelled").await?);
                }
                text.to_string()
            }
        };
        match submission::authenticate(self.hisp.store(), &response).await {
            Ok(Auth::Accepted(user)) => {
                self.user = Some(user);
                self.reply("235 2.7.0 Authentication successful", false)
                    .await?;
                Ok(Next::Continue)
            }
            Ok(Auth::Refused) => Ok(self
                .error("535 5.7.8 Authentication credentials invalid")
                .await?),
            Ok(Auth::NeedsCode) => Ok(self
                .error("535 5.7.8 This account signs in with a one-time code; use the web inbox")
                .await?),
            Ok(Auth::Malformed) => Ok(self
                .error("501 5.5.2 Cannot decode the AUTH PLAIN response")
                .await?),
            Err(e) => {
                tracing::error!(error = %e, "smtp submission: local failure during AUTH");
                self.reply("454 4.7.0 Temporary authentication failure", false)
                    .await?;
                Ok(Next::Continue)
            }
        }
    }

    /// Reads the message after 354: `Some(Some(bytes))`, `Some(None)` when it was over the size
    /// limit (read to its end and dropped), `None` when the connection ended or timed out.
    async fn read_data(
        &mut self,
        config: &super::hisp::HispConfig,
    ) -> anyhow::Result<Option<Option<Vec<u8>>>> {
        let mut message = Vec::new();
        let mut too_big = false;
        let mut line = Vec::new();
        loop {
            // The complete lines already read are taken without waiting, and so without a timer
            // each: most of a message arrives that way, a buffer at a time.
            loop {
                let buffered = self.conn.buffer();
                let Some(end) = memchr::memchr(b'\n', buffered).filter(|&i| i < MAX_DATA_LINE)
                else {
                    break;
                };
                let last = data_line(
                    &buffered[..=end],
                    &mut message,
                    &mut too_big,
                    config.max_message_bytes,
                );
                self.conn.consume(end + 1);
                if last {
                    return Ok(Some(if too_big { None } else { Some(message) }));
                }
            }
            let read = tokio::time::timeout(
                config.data_timeout,
                read_line(&mut self.conn, &mut line, MAX_DATA_LINE),
            )
            .await;
            match read {
                Err(_) => {
                    self.reply(
                        "421 4.4.2 Timeout waiting for data, closing connection",
                        true,
                    )
                    .await?;
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(Line::Eof)) => return Ok(None),
                Ok(Ok(Line::TooLong)) => too_big = true,
                Ok(Ok(Line::Ok)) => {
                    if data_line(&line, &mut message, &mut too_big, config.max_message_bytes) {
                        return Ok(Some(if too_big { None } else { Some(message) }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::data_line;

    #[test]
    fn data_lines_lose_their_stuffed_dot_end_at_a_lone_dot_and_stop_at_the_limit() {
        let (mut message, mut too_big) = (Vec::new(), false);
        for line in [&b"Subject: x\r\n"[..], b"..leading dot\r\n", b".\r\n"] {
            if data_line(line, &mut message, &mut too_big, 100) {
                break;
            }
        }
        assert_eq!(message, b"Subject: x\r\n.leading dot\r\n");
        assert!(!too_big);
        // Past the limit: dropped, and reading goes on to the end.
        let (mut message, mut too_big) = (Vec::new(), false);
        assert!(!data_line(b"0123456789\r\n", &mut message, &mut too_big, 8));
        assert!(too_big && message.is_empty());
        assert!(!data_line(b"more\r\n", &mut message, &mut too_big, 8));
        assert!(message.is_empty());
        assert!(data_line(b".\n", &mut message, &mut too_big, 8));
    }
}
