//! Direct messaging over SMTP with real peers: messages built by the `openssl cms` command line
//! (sign then encrypt, wrapped and unwrapped, CBC and GCM) and sent by `swaks` and by a plain SMTP
//! client over a TCP stream to nutmeg's listener land in the right mailbox and are answered with
//! a processed notification that the `openssl` command line decrypts and verifies; what nutmeg
//! sends reaches a test SMTP sink and decrypts and verifies there; refusals (unknown recipients,
//! relaying, size, bad commands, bad signatures, untrusted signers) get their reply codes; failed
//! deliveries are retried and then reported to the sender; notifications that come back move a
//! message's status forward.
//!
//! Needs the `openssl` command line; the swaks cases say they skipped where `swaks` is missing.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;
use direct::mdn::{self, Disposition, Notification};
use direct::smime::{self, Outgoing, SealOptions, Signer};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use server::smtp::hisp::{certificate_record, fingerprint, now_ms};
use server::smtp::{Hisp, HispConfig, Route};
use store::{AnchorDirection, DeliveryStatus, MailKind, Store, TrustAnchor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const LOCAL: &str = "direct.nutmeg.test";
const REMOTE: &str = "other.test";
const JANE: &str = "jane@direct.nutmeg.test";
const BOB: &str = "bob@other.test";

fn now() -> i64 {
    now_ms() / 1000
}

fn authority(domain: &str) -> Authority {
    let config = CaConfig {
        domain: domain.to_string(),
        organization: format!("CA of {domain}"),
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let key = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
    Authority::create_root(config, key, Validity::days_from(now() - 86_400, 3650)).expect("root")
}

struct Party {
    address: String,
    cert: X509,
    key: PKey<Private>,
}

fn party(ca: &Authority, address: &str) -> Party {
    let key = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
    let cert = ca
        .issue(
            &Binding::Address(address.to_string()),
            &key,
            Validity::days_from(now() - 86_400, 365),
        )
        .expect("issue");
    Party {
        address: address.to_string(),
        cert,
        key,
    }
}

/// A test SMTP server standing for the other HISP: accepts (or refuses at RCPT with `rcpt_reply`)
/// and hands each message it accepted to `received`.
struct Sink {
    address: SocketAddr,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    rcpt_reply: Arc<Mutex<String>>,
}

async fn sink() -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, received) = mpsc::unbounded_channel();
    let rcpt_reply = Arc::new(Mutex::new("250 2.1.5 OK".to_string()));
    let reply = rcpt_reply.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tx, reply) = (tx.clone(), reply.clone());
            tokio::spawn(async move {
                let mut conn = BufReader::new(tcp);
                let mut rcpt = String::new();
                conn.get_mut().write_all(b"220 sink ESMTP\r\n").await.ok()?;
                loop {
                    let mut line = String::new();
                    if conn.read_line(&mut line).await.ok()? == 0 {
                        return Some(());
                    }
                    let upper = line.to_ascii_uppercase();
                    let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        "250 sink".to_string()
                    } else if upper.starts_with("MAIL") {
                        "250 OK".to_string()
                    } else if upper.starts_with("RCPT") {
                        rcpt = line[8..].trim().trim_matches(['<', '>']).to_string();
                        reply.lock().unwrap().clone()
                    } else if upper.starts_with("DATA") {
                        conn.get_mut().write_all(b"354 go\r\n").await.ok()?;
                        let mut data = Vec::new();
                        loop {
                            let mut l = Vec::new();
                            if conn.read_until(b'\n', &mut l).await.ok()? == 0 {
                                return Some(());
                            }
                            if l == b".\r\n" {
                                break;
                            }
                            data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                        }
                        tx.send((rcpt.clone(), data)).ok()?;
                        "250 OK".to_string()
                    } else if upper.starts_with("QUIT") {
                        conn.get_mut().write_all(b"221 bye\r\n").await.ok()?;
                        return Some(());
                    } else {
                        "250 OK".to_string()
                    };
                    conn.get_mut()
                        .write_all(format!("{answer}\r\n").as_bytes())
                        .await
                        .ok()?;
                }
            });
        }
    });
    Sink {
        address,
        received,
        rcpt_reply,
    }
}

impl Sink {
    async fn next(&mut self) -> (String, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(30), self.received.recv())
            .await
            .expect("the sink received a message in time")
            .expect("sink open")
    }
}

struct Fixture {
    hisp: Hisp,
    store: Store,
    smtp: SocketAddr,
    sink: Sink,
    local_ca: Authority,
    remote_ca: Authority,
    jane: Party,
    bob: Party,
    dir: tempfile::TempDir,
    kek: String,
    running: Option<server::smtp::Running>,
}

async fn fixture(tweak: impl FnOnce(&mut HispConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("n.db").display()))
        .await
        .unwrap();
    fixture_on(store, dir, tweak).await
}

async fn fixture_on(
    store: Store,
    dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut HispConfig),
) -> Fixture {
    let local_ca = authority(LOCAL);
    let remote_ca = authority(REMOTE);
    let jane = party(&local_ca, JANE);
    let bob = party(&remote_ca, BOB);
    let kek_text = Kek::generate_base64().unwrap();
    let kek = Kek::from_base64(&kek_text).unwrap();
    let t = now_ms();
    store
        .add_direct_address(JANE, "practitioner", "prac-1", "Jane Doe", t)
        .await
        .unwrap();
    store
        .add_direct_address(
            "clinic@direct.nutmeg.test",
            "organization",
            "org-1",
            "Clinic",
            t,
        )
        .await
        .unwrap();
    store
        .add_direct_certificate(
            certificate_record(&jane.cert, JANE, Some((&kek, &jane.key)), t).unwrap(),
        )
        .await
        .unwrap();
    // The clinic has a domain-bound certificate only.
    let domain_key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let domain_cert = local_ca
        .issue(
            &Binding::Domain(LOCAL.to_string()),
            &domain_key,
            Validity::days_from(now() - 86_400, 365),
        )
        .unwrap();
    store
        .add_direct_certificate(
            certificate_record(&domain_cert, LOCAL, Some((&kek, &domain_key)), t).unwrap(),
        )
        .await
        .unwrap();
    store
        .add_direct_certificate(certificate_record(&bob.cert, BOB, None, t).unwrap())
        .await
        .unwrap();
    for direction in [AnchorDirection::Inbound, AnchorDirection::Outbound] {
        for ca in [&remote_ca, &local_ca] {
            store
                .add_trust_anchor(TrustAnchor {
                    domain: LOCAL.to_string(),
                    direction,
                    fingerprint: fingerprint(ca.certificate()).unwrap(),
                    cert_pem: String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap(),
                    added: t,
                })
                .await
                .unwrap();
        }
    }
    let sink = sink().await;
    let mut config = HispConfig::new(vec![LOCAL.to_string()], "hisp.nutmeg.test");
    config.routes = vec![Route::new(REMOTE, &sink.address.to_string())];
    config.max_message_bytes = 2 * 1024 * 1024;
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(400);
    config.max_attempts = 3;
    config.client_timeout = Duration::from_secs(5);
    tweak(&mut config);
    let hisp = Hisp::new(store.clone(), config, kek, Vec::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp = listener.local_addr().unwrap();
    let running = server::smtp::spawn(listener, hisp.clone(), None).unwrap();
    Fixture {
        hisp,
        store,
        smtp,
        sink,
        local_ca,
        remote_ca,
        jane,
        bob,
        dir,
        kek: kek_text,
        running: Some(running),
    }
}

impl Fixture {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn pem(&self, name: &str, cert: &X509) -> PathBuf {
        self.write(name, &cert.to_pem().unwrap())
    }

    fn key(&self, name: &str, key: &PKey<Private>) -> PathBuf {
        self.write(name, &key.private_key_to_pem_pkcs8().unwrap())
    }

    /// A message as another HISP's user builds it with the `openssl cms` command line: `content`
    /// signed by `signer` (SHA-256), then encrypted to `recipient` with `cipher`.
    fn cli_message(
        &self,
        signer: &Party,
        recipient: &X509,
        to: &str,
        content: &[u8],
        cipher: &str,
        message_id: &str,
    ) -> Vec<u8> {
        let content_path = self.write("content.eml", content);
        let signer_cert = self.pem("signer.pem", &signer.cert);
        let signer_key = self.key("signer.key", &signer.key);
        let recipient_cert = self.pem("recipient.pem", recipient);
        let signed = openssl(&[
            "cms".as_ref(),
            "-sign".as_ref(),
            "-md".as_ref(),
            "sha256".as_ref(),
            "-signer".as_ref(),
            signer_cert.as_os_str(),
            "-inkey".as_ref(),
            signer_key.as_os_str(),
            "-in".as_ref(),
            content_path.as_os_str(),
        ]);
        let signed_path = self.write("signed.eml", &signed);
        let encrypted = openssl(&[
            "cms".as_ref(),
            "-encrypt".as_ref(),
            cipher.as_ref(),
            "-from".as_ref(),
            signer.address.as_ref(),
            "-to".as_ref(),
            to.as_ref(),
            "-subject".as_ref(),
            "Referral".as_ref(),
            "-in".as_ref(),
            signed_path.as_os_str(),
            recipient_cert.as_os_str(),
        ]);
        let mut out =
            format!("Message-ID: {message_id}\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\n")
                .into_bytes();
        out.extend_from_slice(&encrypted);
        out
    }

    /// Decrypts with `key` and verifies against `anchor` with the `openssl cms` command line;
    /// answers the signed content.
    fn cli_open(&self, message: &[u8], cert: &X509, key: &PKey<Private>, anchor: &X509) -> Vec<u8> {
        let m = self.write("in.eml", message);
        let c = self.pem("me.pem", cert);
        let k = self.key("me.key", key);
        let a = self.pem("anchor.pem", anchor);
        let signed = openssl(&[
            "cms".as_ref(),
            "-decrypt".as_ref(),
            "-in".as_ref(),
            m.as_os_str(),
            "-recip".as_ref(),
            c.as_os_str(),
            "-inkey".as_ref(),
            k.as_os_str(),
        ]);
        let s = self.write("signed-in.eml", &signed);
        openssl(&[
            "cms".as_ref(),
            "-verify".as_ref(),
            "-in".as_ref(),
            s.as_os_str(),
            "-CAfile".as_ref(),
            a.as_os_str(),
            "-purpose".as_ref(),
            "any".as_ref(),
        ])
    }

    /// Waits until Jane's mailbox holds `n` entries.
    async fn mailbox(&self, address: &str, n: usize) -> Vec<store::MailMessage> {
        for _ in 0..300 {
            let got = self.store.mailbox(address, 100).await.unwrap();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{address}'s mailbox never held {n} entries");
    }

    async fn status(&self, message_id: &str, want: DeliveryStatus) -> store::Outbound {
        for _ in 0..300 {
            let rows = self.store.outbound_by_message(message_id).await.unwrap();
            if let Some(row) = rows.into_iter().find(|r| r.status == want) {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows = self.store.outbound_by_message(message_id).await.unwrap();
        panic!("{message_id} never reached {want:?}: {rows:?}");
    }
}

fn openssl(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line is needed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const CONTENT: &[u8] =
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nJane, please see Mr. Smith on Monday.\r\n";

fn wrapped(from: &str, to: &str, message_id: &str) -> Vec<u8> {
    let mut c = format!(
        "Content-Type: message/rfc822\r\n\r\nFrom: {from}\r\nTo: {to}\r\nSubject: Referral\r\nMessage-ID: {message_id}\r\nDate: Sun, 29 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    )
    .into_bytes();
    c.extend_from_slice(CONTENT);
    c
}

/// A plain SMTP client over a TCP stream (or, after STARTTLS, TLS over it).
struct Client<S = TcpStream> {
    conn: BufReader<S>,
}

impl Client<TcpStream> {
    async fn connect(address: SocketAddr) -> (Client, String) {
        let tcp = TcpStream::connect(address).await.unwrap();
        let mut c = Client {
            conn: BufReader::new(tcp),
        };
        let greeting = c.reply().await;
        (c, greeting)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.conn.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.get_mut().write_all(bytes).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// MAIL, RCPT, DATA and the message: the final reply.
    async fn mail(&mut self, from: &str, to: &str, message: &[u8]) -> String {
        assert!(self
            .cmd(&format!("MAIL FROM:<{from}>"))
            .await
            .starts_with("250"));
        let r = self.cmd(&format!("RCPT TO:<{to}>")).await;
        assert!(r.starts_with("250"), "{r}");
        assert!(self.cmd("DATA").await.starts_with("354"));
        self.send(&server::smtp::client::data_block(message)).await;
        self.reply().await
    }
}

fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or(reply)
}

/// `swaks` sending `message` to `to`; answers its transcript and whether it succeeded.
fn swaks(server: SocketAddr, from: &str, to: &str, message: &[u8]) -> Option<(bool, String)> {
    if Command::new("swaks").arg("--version").output().is_err() {
        eprintln!("SKIPPED: swaks is not installed (apt-get install swaks)");
        return None;
    }
    let mut child = Command::new("swaks")
        .args(["--server", &server.to_string(), "--from", from, "--to", to])
        .args(["--data", "-", "--pipeline", "--timeout", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start swaks");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openssl_built_messages_sent_by_swaks_land_in_the_mailbox_and_are_answered() {
    let mut f = fixture(|_| {}).await;
    let cases: &[(&str, bool)] = &[
        ("-aes128", false),
        ("-aes128", true),
        ("-aes-256-gcm", true),
    ];
    for (i, (cipher, wrap)) in cases.iter().enumerate() {
        let id = format!("<swaks-{i}@other.test>");
        let content = if *wrap {
            wrapped(BOB, JANE, &id)
        } else {
            CONTENT.to_vec()
        };
        let message = f.cli_message(&f.bob, &f.jane.cert, JANE, &content, cipher, &id);
        let smtp = f.smtp;
        let Some((ok, transcript)) =
            tokio::task::spawn_blocking(move || swaks(smtp, BOB, JANE, &message))
                .await
                .unwrap()
        else {
            return;
        };
        assert!(ok, "{cipher} wrap={wrap}: {transcript}");
        assert!(
            transcript.contains("<** 250") || transcript.contains("<-  250 2.0.0"),
            "{transcript}"
        );
        let inbox = f.mailbox(JANE, i + 1).await;
        let got = &inbox[0];
        assert_eq!(got.sender, BOB);
        assert_eq!(got.kind, MailKind::Message);
        assert_eq!(got.message_id, id);
        let text = String::from_utf8_lossy(&got.raw);
        assert!(text.contains("please see Mr. Smith"), "{text}");

        // The processed notification goes to Bob's HISP, and Bob can open it.
        let (rcpt, mdn_message) = f.sink.next().await;
        assert_eq!(rcpt, BOB);
        let opened = f.cli_open(
            &mdn_message,
            &f.bob.cert,
            &f.bob.key,
            f.local_ca.certificate(),
        );
        let report = String::from_utf8_lossy(&opened);
        assert!(report.contains("disposition-notification"), "{report}");
        assert!(
            report.contains(&format!("Original-Message-ID: {id}")),
            "{report}"
        );
        assert!(report.contains("processed"), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_client_with_pipelining_delivers_and_refusals_have_their_codes() {
    let f = fixture(|c| c.max_message_bytes = 64 * 1024).await;
    let (mut c, greeting) = Client::connect(f.smtp).await;
    assert!(greeting.starts_with("220 hisp.nutmeg.test"), "{greeting}");

    // Order of commands.
    assert_eq!(code(&c.cmd("MAIL FROM:<bob@other.test>").await), "503");
    let ehlo = c.cmd("EHLO client.other.test").await;
    for ext in [
        "PIPELINING",
        "SIZE 65536",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured: {ehlo}");
    assert_eq!(
        code(&c.cmd("RCPT TO:<jane@direct.nutmeg.test>").await),
        "503"
    );
    assert_eq!(code(&c.cmd("DATA").await), "503");
    assert_eq!(code(&c.cmd("FROBNICATE").await), "502");
    assert_eq!(code(&c.cmd("MAIL FROM:bob").await), "501");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@other.test> FOO=BAR").await),
        "555"
    );
    assert_eq!(
        code(&c.cmd(&format!("NOOP {}", "x".repeat(3000))).await),
        "500"
    );
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert_eq!(code(&c.cmd("STARTTLS").await), "502");

    // Size announced too large.
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@other.test> SIZE=99999999").await),
        "552"
    );
    // Never a relay; unknown local recipients refused.
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@other.test> BODY=8BITMIME").await),
        "250"
    );
    let relay = c.cmd("RCPT TO:<someone@elsewhere.test>").await;
    assert!(relay.starts_with("550 5.7.1"), "{relay}");
    let unknown = c.cmd("RCPT TO:<nobody@direct.nutmeg.test>").await;
    assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
    assert!(
        c.cmd("DATA").await.starts_with("554"),
        "no valid recipients"
    );
    assert_eq!(code(&c.cmd("RSET").await), "250");

    // A message over the limit is read to its end and refused.
    assert_eq!(code(&c.cmd("MAIL FROM:<bob@other.test>").await), "250");
    assert_eq!(
        code(&c.cmd("RCPT TO:<Jane@Direct.Nutmeg.Test>").await),
        "250"
    );
    assert_eq!(code(&c.cmd("DATA").await), "354");
    let big = vec![b'a'; 70]
        .into_iter()
        .chain(*b"\r\n")
        .cycle()
        .take(100 * 1024)
        .collect::<Vec<u8>>();
    c.send(&server::smtp::client::data_block(&big)).await;
    assert!(c.reply().await.starts_with("552 5.3.4"));

    // Pipelined: every command in one write, the replies in order.
    let id = "<pipelined@other.test>";
    let message = f.cli_message(
        &f.bob,
        &f.jane.cert,
        JANE,
        &wrapped(BOB, JANE, id),
        "-aes128",
        id,
    );
    let mut batch = b"RSET\r\nMAIL FROM:<bob@other.test>\r\nRCPT TO:<nobody@direct.nutmeg.test>\r\nRCPT TO:<jane@direct.nutmeg.test>\r\nDATA\r\n".to_vec();
    c.send(&batch).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(code(&c.reply().await).to_string());
    }
    assert_eq!(codes, ["250", "250", "550", "250", "354"]);
    batch = server::smtp::client::data_block(&message);
    batch.extend_from_slice(b"NOOP\r\n");
    c.send(&batch).await;
    let done = c.reply().await;
    assert!(done.starts_with("250 2.0.0"), "{done}");
    assert_eq!(code(&c.reply().await), "250");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    let inbox = f.mailbox(JANE, 1).await;
    assert_eq!(inbox[0].message_id, id);

    // The domain-bound certificate decrypts mail to the clinic.
    let (mut c, _) = Client::connect(f.smtp).await;
    c.cmd("EHLO client.other.test").await;
    let id = "<clinic@other.test>";
    let domain_cert = X509::from_pem(
        f.store.direct_certificates(LOCAL).await.unwrap()[0]
            .cert_pem
            .as_bytes(),
    )
    .unwrap();
    let message = f.cli_message(
        &f.bob,
        &domain_cert,
        "clinic@direct.nutmeg.test",
        CONTENT,
        "-aes256",
        id,
    );
    let r = c.mail(BOB, "clinic@direct.nutmeg.test", &message).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(
        f.mailbox("clinic@direct.nutmeg.test", 1).await[0].message_id,
        id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_signatures_untrusted_signers_and_plain_mail_are_refused() {
    let f = fixture(|_| {}).await;
    let (mut c, _) = Client::connect(f.smtp).await;
    c.cmd("EHLO client.other.test").await;

    // Not encrypted at all.
    let plain =
        b"From: bob@other.test\r\nTo: jane@direct.nutmeg.test\r\nSubject: hi\r\n\r\nhello\r\n";
    let r = c.mail(BOB, JANE, plain).await;
    assert!(r.starts_with("554 5.7.5"), "{r}");

    // Signed by a certificate of a CA nobody trusts.
    let stranger_ca = authority(REMOTE);
    let mallory = party(&stranger_ca, BOB);
    let m = f.cli_message(
        &mallory,
        &f.jane.cert,
        JANE,
        CONTENT,
        "-aes128",
        "<m1@other.test>",
    );
    let r = c.mail(BOB, JANE, &m).await;
    assert!(r.starts_with("554 5.7.1"), "{r}");
    assert!(r.contains("not trusted"), "{r}");

    // Signed by Bob but claiming to be from someone else (the signer is bound to From).
    let carol = Party {
        address: "carol@other.test".into(),
        cert: f.bob.cert.clone(),
        key: f.bob.key.clone(),
    };
    let m = f.cli_message(
        &carol,
        &f.jane.cert,
        JANE,
        CONTENT,
        "-aes128",
        "<m2@other.test>",
    );
    let r = c.mail("carol@other.test", JANE, &m).await;
    assert!(r.starts_with("554 5.7.1"), "{r}");

    // Tampered: the signed content changed after signing (inside the encryption).
    let signer_cert = f.pem("signer.pem", &f.bob.cert);
    let signer_key = f.key("signer.key", &f.bob.key);
    let content = f.write("c.eml", CONTENT);
    let signed = openssl(&[
        "cms".as_ref(),
        "-sign".as_ref(),
        "-md".as_ref(),
        "sha256".as_ref(),
        "-signer".as_ref(),
        signer_cert.as_os_str(),
        "-inkey".as_ref(),
        signer_key.as_os_str(),
        "-in".as_ref(),
        content.as_os_str(),
    ]);
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Monday", "Friday");
    let t = f.write("t.eml", tampered.as_bytes());
    let jane_cert = f.pem("jane.pem", &f.jane.cert);
    let encrypted = openssl(&[
        "cms".as_ref(),
        "-encrypt".as_ref(),
        "-aes128".as_ref(),
        "-from".as_ref(),
        BOB.as_ref(),
        "-to".as_ref(),
        JANE.as_ref(),
        "-subject".as_ref(),
        "x".as_ref(),
        "-in".as_ref(),
        t.as_os_str(),
        jane_cert.as_os_str(),
    ]);
    let r = c.mail(BOB, JANE, &encrypted).await;
    assert!(r.starts_with("554 5.7.1"), "{r}");
    assert!(r.contains("signature"), "{r}");

    // Encrypted for someone else.
    let m = f.cli_message(
        &f.bob,
        &f.bob.cert,
        JANE,
        CONTENT,
        "-aes128",
        "<m3@other.test>",
    );
    let r = c.mail(BOB, JANE, &m).await;
    assert!(r.starts_with("554 5.7.5"), "{r}");

    // The connection is still usable, and nothing was delivered.
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert!(f.store.mailbox(JANE, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_mail_decrypts_and_verifies_with_openssl_and_mdns_update_its_status() {
    let mut f = fixture(|_| {}).await;
    let id = f
        .hisp
        .send(JANE, &[BOB.to_string()], "Discharge summary", CONTENT)
        .await
        .unwrap();
    let (rcpt, sealed) = f.sink.next().await;
    assert_eq!(rcpt, BOB);
    let text = String::from_utf8_lossy(&sealed);
    assert!(text.contains("application/pkcs7-mime"), "{text}");
    assert!(!text.contains("Mr. Smith"), "encrypted");
    let opened = f.cli_open(&sealed, &f.bob.cert, &f.bob.key, f.local_ca.certificate());
    let opened = String::from_utf8_lossy(&opened);
    assert!(opened.contains("Mr. Smith"), "{opened}");
    assert!(
        opened.contains("Subject: Discharge summary"),
        "wrapped: {opened}"
    );
    let sent = f.status(&id, DeliveryStatus::Sent).await;
    assert_eq!(sent.attempts, 1);

    // Bob's HISP answers with a processed, then a dispatched notification.
    for (disposition, want) in [
        (Disposition::Processed, DeliveryStatus::Processed),
        (Disposition::Dispatched, DeliveryStatus::Dispatched),
    ] {
        let report = mdn::build(&Notification {
            disposition: disposition.clone(),
            original_message_id: &id,
            final_recipient: BOB,
            reporting_domain: REMOTE,
            final_destination_delivery: true,
            failure: None,
        })
        .unwrap();
        let mdn_id = format!("<mdn-{}@other.test>", uuid::Uuid::new_v4());
        let to = [JANE.to_string()];
        let message = smime::seal(
            &Outgoing {
                from: BOB,
                to: &to,
                subject: "Processed",
                message_id: &mdn_id,
                date: "Sun, 29 Nov 2026 08:00:00 +0000",
                extra_headers: &[],
                content: &report,
            },
            &Signer {
                cert: &f.bob.cert,
                key: &f.bob.key,
                chain: &[],
            },
            &[f.jane.cert.clone()],
            SealOptions::default(),
        )
        .unwrap();
        let (mut c, _) = Client::connect(f.smtp).await;
        c.cmd("EHLO other.test").await;
        let r = c.mail(BOB, JANE, &message).await;
        assert!(r.starts_with("250"), "{r}");
        f.status(&id, want).await;
    }
    // Notifications are delivered to the sender's mailbox and never answered.
    let inbox = f.mailbox(JANE, 2).await;
    assert!(inbox.iter().all(|m| m.kind == MailKind::Notification));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        f.sink.received.try_recv().is_err(),
        "no notification answers a notification"
    );
    let _ = &f.remote_ca;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_and_unreachable_deliveries_are_retried_then_reported_to_the_sender() {
    let f = fixture(|_| {}).await;
    // A permanent refusal: failed at once, reported to Jane.
    *f.sink.rcpt_reply.lock().unwrap() = "550 5.1.1 no such user".to_string();
    let id = f
        .hisp
        .send(JANE, &[BOB.to_string()], "Lab results", CONTENT)
        .await
        .unwrap();
    let failed = f.status(&id, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    assert!(
        failed.last_error.unwrap().contains("550"),
        "the reply is kept"
    );
    let inbox = f.mailbox(JANE, 1).await;
    assert_eq!(inbox[0].kind, MailKind::Dsn);
    assert!(String::from_utf8_lossy(&inbox[0].raw).contains("delivery-status"));

    // A transient refusal: retried with back-off, then given up after max_attempts.
    *f.sink.rcpt_reply.lock().unwrap() = "451 4.3.0 try later".to_string();
    let id = f
        .hisp
        .send(JANE, &[BOB.to_string()], "Lab results 2", CONTENT)
        .await
        .unwrap();
    let failed = f.status(&id, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 3);
    assert!(failed
        .last_error
        .unwrap()
        .contains("gave up after 3 attempts"));
    f.mailbox(JANE, 2).await;

    // No certificate for the recipient, and no route: failed without an attempt to send.
    let id = f
        .hisp
        .send(JANE, &["nobody@nowhere.test".to_string()], "x", CONTENT)
        .await
        .unwrap();
    let failed = f.status(&id, DeliveryStatus::Failed).await;
    assert!(failed
        .last_error
        .unwrap()
        .contains("no trusted certificate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_a_restart_and_mail_between_local_addresses_stays_local() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("n.db").display());
    // Queued while no worker runs (as if the process stopped before sending).
    // A short lease: if the stopping worker claimed the row before it saw the stop (it is told
    // through a task, and a wake-up for the new row can win the race), the row is free again
    // soon, as a crashed process's rows are.
    let store = Store::open(&url).await.unwrap();
    let mut f = fixture_on(store, dir, |c| {
        c.routes.clear();
        c.lease = Duration::from_secs(2);
    })
    .await;
    drop(f.running.take());
    let id = f
        .hisp
        .send(
            JANE,
            &["clinic@direct.nutmeg.test".to_string()],
            "Note",
            CONTENT,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        f.store.outbound_by_message(&id).await.unwrap()[0].status,
        DeliveryStatus::Queued
    );
    // A new process (store, HISP and worker) on the same database sends it.
    let store = Store::open(&url).await.unwrap();
    let hisp = Hisp::new(
        store.clone(),
        f.hisp.config().clone(),
        Kek::from_base64(&f.kek).unwrap(),
        Vec::new(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _running = server::smtp::spawn(listener, hisp, None).unwrap();
    let inbox = f.mailbox("clinic@direct.nutmeg.test", 1).await;
    assert_eq!(inbox[0].message_id, id);
    assert_eq!(inbox[0].sender, JANE);
    // Jane's processed notification comes back locally too.
    f.status(&id, DeliveryStatus::Processed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_upgrades_the_session_and_refuses_commands_pipelined_behind_it() {
    let f = fixture(|_| {}).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = f.write("tls.pem", certified.cert.pem().as_bytes());
    let key = f.write("tls.key", certified.key_pair.serialize_pem().as_bytes());
    let tls = server::tls::load(&cert, &key).expect("tls");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _running = server::smtp::spawn(
        listener,
        f.hisp.clone(),
        Some(server::smtp::server::starttls_config(&tls.server)),
    )
    .unwrap();

    // Commands sent in the clear behind STARTTLS end the connection.
    let (mut c, _) = Client::connect(address).await;
    assert!(c
        .cmd("EHLO client.other.test")
        .await
        .contains("250 STARTTLS"));
    c.send(b"STARTTLS\r\nRCPT TO:<jane@direct.nutmeg.test>\r\n")
        .await;
    assert!(c.reply().await.starts_with("220"));
    assert_eq!(c.reply().await, "", "closed");

    // A proper upgrade: the session starts over, encrypted.
    let (mut c, _) = Client::connect(address).await;
    c.cmd("EHLO client.other.test").await;
    assert!(c.cmd("STARTTLS").await.starts_with("220 2.0.0"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = c.conn.into_inner();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let mut c = Client {
        conn: BufReader::new(stream),
    };
    assert_eq!(
        code(&c.cmd("MAIL FROM:<bob@other.test>").await),
        "503",
        "EHLO again first"
    );
    let ehlo = c.cmd("EHLO client.other.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(code(&c.cmd("STARTTLS").await), "502");
    let id = "<tls@other.test>";
    let m = f.cli_message(
        &f.bob,
        &f.jane.cert,
        JANE,
        &wrapped(BOB, JANE, id),
        "-aes128",
        id,
    );
    let r = c.mail(BOB, JANE, &m).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(f.mailbox(JANE, 1).await[0].message_id, id);
}
