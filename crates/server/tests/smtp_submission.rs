//! SMTP submission and outbound STARTTLS, end to end over real sockets with real TLS: a portal
//! user who owns a Direct address sends with `swaks --tls --auth PLAIN` (and with a plain client
//! speaking the protocol over tokio-rustls) to nutmeg's submission listener; the message is sealed
//! and handed over, over STARTTLS verified against configured roots, to a second nutmeg (the
//! other HISP) whose STARTTLS listener takes it into the recipient's mailbox. The refusals: AUTH
//! before STARTTLS (538), a wrong password (535, counted toward the portal's lock, which then
//! refuses the right one too), MAIL before AUTH (530), someone else's address in MAIL FROM (553)
//! or in the From header (550); a next hop whose certificate the roots do not trust, and one that
//! does not offer STARTTLS when a route requires it, are not sent to.
//!
//! The swaks case says it skipped where `swaks` is missing.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;
use server::smtp::client::{client_config_with, TlsPolicy};
use server::smtp::hisp::{certificate_record, fingerprint, now_ms};
use server::smtp::{Hisp, HispConfig, Route};
use store::{AnchorDirection, DeliveryStatus, NewUser, Store, TrustAnchor};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const LOCAL: &str = "direct.nutmeg.test";
const REMOTE: &str = "other.test";
const CLINIC: &str = "clinic@direct.nutmeg.test";
const JANE: &str = "jane@direct.nutmeg.test";
const BOB: &str = "bob@other.test";
const LOGIN: &str = "clinic-front-desk";
const PASSWORD: &str = "correct horse battery staple 42";

fn authority(domain: &str) -> Authority {
    let config = CaConfig {
        domain: domain.to_string(),
        organization: format!("CA of {domain}"),
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    Authority::create_root(
        config,
        key,
        Validity::days_from(now_ms() / 1000 - 86_400, 3650),
    )
    .unwrap()
}

async fn anchor(store: &Store, domain: &str, direction: AnchorDirection, ca: &Authority) {
    store
        .add_trust_anchor(TrustAnchor {
            domain: domain.to_string(),
            direction,
            fingerprint: fingerprint(ca.certificate()).unwrap(),
            cert_pem: String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap(),
            added: now_ms(),
        })
        .await
        .unwrap();
}

/// A certificate for `address` from `ca`, stored in `store` with its key when `ours`.
async fn issue(store: &Store, ca: &Authority, kek: &Kek, address: &str, ours: bool) -> String {
    let key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let validity = Validity::days_from(now_ms() / 1000 - 86_400, 365);
    let cert = ca
        .issue(&Binding::Address(address.to_string()), &key, validity)
        .unwrap();
    let record = certificate_record(&cert, address, ours.then_some((kek, &key)), now_ms()).unwrap();
    store.add_direct_certificate(record).await.unwrap();
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

/// A TLS certificate for `localhost`, the server side and a client configuration trusting it.
struct TlsPair {
    server: Arc<rustls::ServerConfig>,
    trusting: Arc<rustls::ClientConfig>,
}

fn tls_pair(dir: &std::path::Path, name: &str) -> TlsPair {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let tls = server::tls::load(&cert, &key).expect("tls");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    TlsPair {
        server: server::smtp::server::starttls_config(&tls.server),
        trusting: Arc::new(client_config_with(roots)),
    }
}

/// Two HISPs: ours (LOCAL, with the submission listener) and the other (REMOTE, its SMTP
/// listener offering STARTTLS), each on its own database.
struct Pair {
    ours: Hisp,
    theirs: Hisp,
    submission: SocketAddr,
    _running: Vec<server::smtp::Running>,
    _dirs: Vec<tempfile::TempDir>,
    tls: TlsPair,
    /// The fingerprint of the other side's CA, our outbound anchor.
    their_anchor: String,
    /// Our CA and key-encryption key, to issue more addresses.
    local_ca: Authority,
    our_kek: String,
    /// The connection applications on our side (our HISP tells them of test messages).
    onboarding: exchange::onboarding::Onboarding,
}

/// How long our HISP keeps keys, anchors and validated certificates in these tests.
const CACHE_TTL: Duration = Duration::from_millis(500);

async fn pair(route_tls: TlsPolicy, starttls: bool, trust_theirs: bool) -> Pair {
    pair_with(route_tls, starttls, trust_theirs, CACHE_TTL).await
}

async fn pair_with(
    route_tls: TlsPolicy,
    starttls: bool,
    trust_theirs: bool,
    cache_ttl: Duration,
) -> Pair {
    let (our_dir, their_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |d: &tempfile::TempDir| format!("sqlite://{}", d.path().join("n.db").display());
    let ours = Store::open(&open(&our_dir)).await.unwrap();
    let theirs = Store::open(&open(&their_dir)).await.unwrap();
    let (local_ca, remote_ca) = (authority(LOCAL), authority(REMOTE));
    let our_kek_base64 = Kek::generate_base64().unwrap();
    let our_kek = Kek::from_base64(&our_kek_base64).unwrap();
    let their_kek = Kek::from_base64(&Kek::generate_base64().unwrap()).unwrap();
    let t = now_ms();

    // Ours: the clinic's address (issued to its organization, the user's participant), Jane's
    // (issued to a practitioner), Bob's certificate, and the other side's CA as an anchor.
    ours.add_direct_address(CLINIC, "organization", "org-1", "Clinic", t)
        .await
        .unwrap();
    ours.add_direct_address(JANE, "practitioner", "prac-1", "Jane", t)
        .await
        .unwrap();
    let clinic_pem = issue(&ours, &local_ca, &our_kek, CLINIC, true).await;
    issue(&ours, &local_ca, &our_kek, JANE, true).await;
    let bob_pem = issue(&theirs, &remote_ca, &their_kek, BOB, true).await;
    ours.add_direct_certificate(
        certificate_record(
            &openssl::x509::X509::from_pem(bob_pem.as_bytes()).unwrap(),
            BOB,
            None,
            t,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    anchor(&ours, LOCAL, AnchorDirection::Outbound, &remote_ca).await;
    anchor(&ours, LOCAL, AnchorDirection::Inbound, &remote_ca).await;
    // Theirs: Bob, the clinic's certificate, our CA as an anchor.
    theirs
        .add_direct_address(BOB, "practitioner", "prac-b", "Bob", t)
        .await
        .unwrap();
    theirs
        .add_direct_certificate(
            certificate_record(
                &openssl::x509::X509::from_pem(clinic_pem.as_bytes()).unwrap(),
                CLINIC,
                None,
                t,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    anchor(&theirs, REMOTE, AnchorDirection::Inbound, &local_ca).await;
    anchor(&theirs, REMOTE, AnchorDirection::Outbound, &local_ca).await;

    // The portal user of participant org-1.
    ours.add_user(NewUser {
        user_id: "u-1".into(),
        login: LOGIN.into(),
        display_name: "Front desk".into(),
        role: "clinician".into(),
        participant_id: Some("org-1".into()),
        patient_id: None,
        practitioner_id: None,
        password_hash: auth::password::hash(PASSWORD).unwrap(),
        totp_secret: None,
        created: now_ms() / 1000,
    })
    .await
    .unwrap();
    // The operator binds the clinic's address to the account (`nutmeg admin direct address bind`):
    // an address is nobody's until it is bound, even to a user of the organization it was issued to.
    assert!(ours.bind_direct_address(CLINIC, "u-1", t).await.unwrap());

    let tls = tls_pair(our_dir.path(), "ours");
    let their_tls = tls_pair(their_dir.path(), "theirs");
    let their_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let their_port = their_listener.local_addr().unwrap().port();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let our_port = listener.local_addr().unwrap().port();
    let mut their_config = HispConfig::new(vec![REMOTE.to_string()], "hisp.other.test");
    their_config.client_timeout = Duration::from_secs(5);
    // Their notifications (and messages) come back to our listener.
    let mut back = Route::new(LOCAL, &format!("localhost:{our_port}"));
    back.tls = TlsPolicy::Opportunistic;
    their_config.routes = vec![back];
    their_config.tls_roots = Some(tls.trusting.clone());
    let theirs_hisp = Hisp::new(theirs, their_config, their_kek, Vec::new());
    let their_running = server::smtp::spawn(
        their_listener,
        theirs_hisp.clone(),
        starttls.then(|| their_tls.server.clone()),
    )
    .unwrap();

    let mut config = HispConfig::new(vec![LOCAL.to_string()], "hisp.nutmeg.test");
    let mut route = Route::new(REMOTE, &format!("localhost:{their_port}"));
    route.tls = route_tls;
    config.routes = vec![route];
    config.tls_roots = Some(if trust_theirs {
        their_tls.trusting.clone()
    } else {
        tls.trusting.clone()
    });
    config.retry_base = Duration::from_millis(200);
    config.retry_max = Duration::from_millis(200);
    config.max_attempts = 100;
    config.client_timeout = Duration::from_secs(5);
    config.cache_ttl = cache_ttl;
    let repo = exchange::repository::Repository::new(
        ours.clone(),
        exchange::repository::RepositoryConfig {
            base_url: "http://localhost/fhir".into(),
            default_count: 10,
            max_count: 50,
        },
        exchange::access::DecisionPoint::enforcing(ours.clone()),
    );
    let onboarding = exchange::onboarding::Onboarding::new(repo, Default::default());
    let ours_hisp =
        Hisp::new(ours, config, our_kek, Vec::new()).with_onboarding(onboarding.clone());
    let mut running =
        server::smtp::spawn(listener, ours_hisp.clone(), Some(tls.server.clone())).unwrap();
    let submission = server::smtp::spawn_submission(
        &running,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ours_hisp.clone(),
        Some(tls.server.clone()),
    )
    .unwrap();
    running.submission = Some(submission);
    Pair {
        ours: ours_hisp,
        theirs: theirs_hisp,
        submission,
        _running: vec![running, their_running],
        _dirs: vec![our_dir, their_dir],
        tls,
        their_anchor: fingerprint(remote_ca.certificate()).unwrap(),
        local_ca,
        our_kek: our_kek_base64,
        onboarding,
    }
}

impl Pair {
    /// Waits until `address`'s mailbox at the other HISP holds a message.
    async fn bob_gets(&self) -> store::MailMessage {
        for _ in 0..400 {
            let got = self.theirs.store().mailbox(BOB, 10).await.unwrap();
            if let Some(m) = got.into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Bob's mailbox stayed empty");
    }

    /// Waits until the message `id` has been tried and answers its row.
    async fn tried(&self, id: &str) -> store::Outbound {
        for _ in 0..400 {
            let rows = self.ours.store().outbound_by_message(id).await.unwrap();
            if let Some(r) = rows.into_iter().find(|r| r.last_error.is_some()) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} was never tried");
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A submission client speaking the protocol line by line.
struct Client {
    conn: BufReader<Box<dyn Io>>,
}

impl Client {
    async fn connect(address: SocketAddr) -> (Client, String) {
        let tcp = TcpStream::connect(address).await.unwrap();
        let mut c = Client {
            conn: BufReader::new(Box::new(tcp)),
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.conn
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// STARTTLS, trusting `config`, and EHLO again.
    async fn starttls(self, config: &Arc<rustls::ClientConfig>) -> Client {
        let mut c = self;
        assert!(c.cmd("STARTTLS").await.starts_with("220"));
        let io = c.conn.into_inner();
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                io,
            )
            .await
            .expect("TLS handshake");
        let mut c = Client {
            conn: BufReader::new(Box::new(stream)),
        };
        let ehlo = c.cmd("EHLO mua.example").await;
        assert!(
            ehlo.contains("250-AUTH PLAIN") || ehlo.contains("250 AUTH PLAIN"),
            "{ehlo}"
        );
        c
    }
}

fn plain(login: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"))
}

fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or("")
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <mua-1@mua.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         Bob, the referral letter follows next week.\r\n.\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submission_refuses_auth_in_the_clear_wrong_passwords_and_other_senders() {
    let p = pair(TlsPolicy::Required, true, true).await;
    let (mut c, greeting) = Client::connect(p.submission).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = c.cmd("EHLO mua.example").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("AUTH"),
        "no AUTH offered in the clear: {ehlo}"
    );
    // AUTH before STARTTLS: refused, and the password is not looked at.
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain(LOGIN, PASSWORD)))
        .await;
    assert_eq!(code(&r), "538", "{r}");
    let r = c.cmd(&format!("MAIL FROM:<{CLINIC}>")).await;
    assert_eq!(code(&r), "530", "{r}");

    let mut c = c.starttls(&p.tls.trusting).await;
    let r = c.cmd(&format!("MAIL FROM:<{CLINIC}>")).await;
    assert_eq!(code(&r), "530", "MAIL before AUTH: {r}");
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain(LOGIN, "wrong")))
        .await;
    assert_eq!(code(&r), "535", "{r}");
    let user = p.ours.store().user_by_login(LOGIN).await.unwrap().unwrap();
    assert_eq!(user.failed_attempts, 1, "counted as the portal counts");
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain("nobody", PASSWORD)))
        .await;
    assert_eq!(code(&r), "535", "{r}");
    let r = c.cmd("AUTH PLAIN not-base64!").await;
    assert_eq!(code(&r), "501", "{r}");
    // The challenge form, with the right password.
    let r = c.cmd("AUTH PLAIN").await;
    assert!(r.starts_with("334"), "{r}");
    let r = c.cmd(&plain(LOGIN, PASSWORD)).await;
    assert_eq!(code(&r), "235", "{r}");
    let user = p.ours.store().user_by_login(LOGIN).await.unwrap().unwrap();
    assert_eq!(user.failed_attempts, 0, "a success resets the count");

    // Someone else's address (Jane's, issued to a practitioner, not to this user's participant).
    let r = c.cmd(&format!("MAIL FROM:<{JANE}>")).await;
    assert_eq!(code(&r), "553", "{r}");
    let r = c.cmd("MAIL FROM:<>").await;
    assert_eq!(code(&r), "553", "{r}");
    // Its own address in the envelope, someone else's in the From header.
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{CLINIC}>")).await), "250");
    assert_eq!(code(&c.cmd(&format!("RCPT TO:<{BOB}>")).await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    let r = c.cmd(message(JANE, BOB, "Forged").trim_end()).await;
    assert_eq!(code(&r), "550", "{r}");
    // And properly: queued, sealed, handed over by STARTTLS, in Bob's mailbox at the other HISP.
    assert_eq!(code(&c.cmd(&format!("MAIL FROM:<{CLINIC}>")).await), "250");
    assert_eq!(code(&c.cmd(&format!("RCPT TO:<{BOB}>")).await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    let r = c.cmd(message(CLINIC, BOB, "Referral").trim_end()).await;
    assert_eq!(code(&r), "250", "{r}");
    let got = p.bob_gets().await;
    assert_eq!(got.sender, CLINIC);
    assert_eq!(got.subject, "Referral");
    let text = String::from_utf8_lossy(&got.raw);
    assert!(text.contains("the referral letter follows"), "{text}");
    assert_eq!(code(&c.cmd("QUIT").await), "221");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submission_failures_lock_the_portal_account() {
    let p = pair(TlsPolicy::Opportunistic, true, true).await;
    let (mut c, _) = Client::connect(p.submission).await;
    c.cmd("EHLO mua.example").await;
    let mut c = c.starttls(&p.tls.trusting).await;
    for _ in 0..server::portal::account::LOCK_AFTER {
        let r = c
            .cmd(&format!("AUTH PLAIN {}", plain(LOGIN, "guess")))
            .await;
        assert_eq!(code(&r), "535", "{r}");
    }
    let user = p.ours.store().user_by_login(LOGIN).await.unwrap().unwrap();
    assert!(user.locked_until.is_some(), "locked as the portal locks");
    let (mut c, _) = Client::connect(p.submission).await;
    c.cmd("EHLO mua.example").await;
    let mut c = c.starttls(&p.tls.trusting).await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain(LOGIN, PASSWORD)))
        .await;
    assert_eq!(
        code(&r),
        "535",
        "the right password is refused while locked: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaks_submits_with_starttls_and_auth_plain() {
    if Command::new("swaks").arg("--version").output().is_err() {
        println!("SKIPPED: swaks is not installed");
        return;
    }
    let p = pair(TlsPolicy::Opportunistic, true, true).await;
    let server = p.submission.to_string();
    let swaks = |password: &str, from: &str| {
        Command::new("swaks")
            .args([
                "--server",
                &server,
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                LOGIN,
                "--auth-password",
                password,
                "--from",
                from,
                "--to",
                BOB,
                "--h-Subject",
                "Referral by swaks",
                "--body",
                "Bob, see the attached plan.",
                "--timeout",
                "20",
            ])
            .output()
            .unwrap()
    };
    let wrong = swaks("wrong", CLINIC);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("535"));
    let other = swaks(PASSWORD, JANE);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stdout).contains("553"));
    let out = swaks(PASSWORD, CLINIC);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("235"), "{log}");
    let got = p.bob_gets().await;
    assert_eq!(got.sender, CLINIC);
    assert_eq!(got.subject, "Referral by swaks");
    assert!(String::from_utf8_lossy(&got.raw).contains("see the attached plan"));
}

/// Sends one message from the clinic to Bob through the web inbox's path and answers its id.
async fn send(p: &Pair) -> String {
    p.ours
        .send(
            CLINIC,
            &[BOB.to_string()],
            "Referral",
            b"Content-Type: text/plain\r\n\r\nHello Bob.\r\n",
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_starttls_verifies_the_next_hop_and_reuses_the_connection() {
    let p = pair(TlsPolicy::Required, true, true).await;
    send(&p).await;
    p.bob_gets().await;
    let id = send(&p).await;
    for _ in 0..400 {
        if p.theirs.store().mailbox(BOB, 10).await.unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.theirs.store().mailbox(BOB, 10).await.unwrap().len(), 2);
    let rows = p.ours.store().outbound_by_message(&id).await.unwrap();
    assert!(
        rows.iter().all(|r| r.status != DeliveryStatus::Queued),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_starttls_refuses_an_untrusted_certificate() {
    // Our roots trust only our own certificate, not theirs.
    let p = pair(TlsPolicy::Opportunistic, true, false).await;
    let id = send(&p).await;
    let row = p.tried(&id).await;
    assert_eq!(
        row.status,
        DeliveryStatus::Queued,
        "retried, not sent in the clear"
    );
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("TLS"), "{error}");
    assert!(p.theirs.store().mailbox(BOB, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_tls_required_refuses_a_peer_without_starttls() {
    let p = pair(TlsPolicy::Required, false, true).await;
    let id = send(&p).await;
    let row = p.tried(&id).await;
    assert_eq!(row.status, DeliveryStatus::Queued);
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("does not offer STARTTLS"), "{error}");
    assert!(p.theirs.store().mailbox(BOB, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_opportunistic_sends_in_the_clear_to_a_peer_without_starttls() {
    let p = pair(TlsPolicy::Opportunistic, false, true).await;
    send(&p).await;
    p.bob_gets().await;
}

/// Waits until Bob's mailbox at the other HISP holds `n` messages.
async fn bob_holds(p: &Pair, n: usize) {
    for _ in 0..400 {
        if p.theirs.store().mailbox(BOB, 10).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Bob's mailbox never held {n} messages");
}

/// Waits until the message `id` failed for good and answers why.
async fn failed(p: &Pair, id: &str) -> String {
    for _ in 0..400 {
        let rows = p.ours.store().outbound_by_message(id).await.unwrap();
        if let Some(r) = rows
            .into_iter()
            .find(|r| r.status == DeliveryStatus::Failed)
        {
            return r.last_error.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_anchor_stops_outbound_mail_once_the_cache_expires() {
    let p = pair(TlsPolicy::Opportunistic, true, true).await;
    send(&p).await;
    bob_holds(&p, 1).await;
    // The operator stops trusting the other side: Bob's certificate no longer validates.
    assert!(p
        .ours
        .store()
        .remove_trust_anchor(LOCAL, AnchorDirection::Outbound, &p.their_anchor)
        .await
        .unwrap());
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
    let id = send(&p).await;
    let why = failed(&p, &id).await;
    assert!(why.contains("no trusted certificate"), "{why}");
    assert_eq!(p.theirs.store().mailbox(BOB, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forget_makes_a_removed_anchor_take_effect_at_once() {
    // Kept for an hour: only `forget` can make the change count within this test.
    let p = pair_with(
        TlsPolicy::Opportunistic,
        true,
        true,
        Duration::from_secs(3600),
    )
    .await;
    send(&p).await;
    bob_holds(&p, 1).await;
    p.ours
        .store()
        .remove_trust_anchor(LOCAL, AnchorDirection::Outbound, &p.their_anchor)
        .await
        .unwrap();
    p.ours.forget();
    let id = send(&p).await;
    let why = failed(&p, &id).await;
    assert!(why.contains("no trusted certificate"), "{why}");
}

/// A solo practitioner without an EHR on the secure-messaging path: once their address has
/// received a message from another HISP and sent one there that came back processed, the last
/// step is done on its own (by the address) and the participant is live; receiving alone is not
/// enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exchanging_a_test_message_each_way_completes_the_secure_messaging_path() {
    use onboard::workflow::Step;
    const SAM: &str = "sam.lee@direct.nutmeg.test";
    let p = pair(TlsPolicy::Opportunistic, true, true).await;
    let now = time::OffsetDateTime::now_utc();
    let form = onboard::application::Form {
        kind: "solo-practitioner".into(),
        legal_name: "Sam Lee".into(),
        npi: "1987654328".into(),
        licence_type: "lcsw".into(),
        licence_number: "LCSW 77".into(),
        licence_state: "CT".into(),
        address_line: "3 Oak Road".into(),
        city: "Stamford".into(),
        state: "CT".into(),
        postcode: "06901".into(),
        ehr: "none".into(),
        signer_name: "Sam Lee".into(),
        signer_title: "Owner".into(),
        signer_email: "sam@lee.example.org".into(),
        contact_name: "Sam Lee".into(),
        contact_email: "sam@lee.example.org".into(),
        contact_phone: "860-555-0111".into(),
        ..Default::default()
    };
    let applied = p
        .onboarding
        .apply(
            exchange::onboarding::Submission {
                form,
                account: None,
                received_by: "olive".into(),
            },
            now,
        )
        .await
        .unwrap();
    let id = applied.record.data.application_id.clone();
    let participant = applied.record.data.participant_id.clone().unwrap();
    assert_eq!(applied.record.data.path, "secure-messaging");
    for step in [Step::PackageSent, Step::AgreementsSigned] {
        p.onboarding
            .complete_step(&id, step, "olive", now)
            .await
            .unwrap();
    }
    // Sam's address, issued to the practice; the other HISP learns its certificate.
    let ours = p.ours.store();
    ours.add_direct_address(SAM, "organization", &participant, "Sam Lee", now_ms())
        .await
        .unwrap();
    let kek = Kek::from_base64(&p.our_kek).unwrap();
    let sam_pem = issue(ours, &p.local_ca, &kek, SAM, true).await;
    p.theirs
        .store()
        .add_direct_certificate(
            certificate_record(
                &openssl::x509::X509::from_pem(sam_pem.as_bytes()).unwrap(),
                SAM,
                None,
                now_ms(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let moved = p
        .onboarding
        .direct_address_issued(&participant, "olive", now)
        .await
        .unwrap();
    assert_eq!(moved, vec![id.clone()]);
    let next = |p: &Pair| {
        let (onboarding, id) = (p.onboarding.clone(), id.clone());
        async move {
            onboarding
                .view(&id, time::OffsetDateTime::now_utc())
                .await
                .unwrap()
                .next
        }
    };

    // Bob writes to Sam: received, but Sam has sent nothing yet.
    p.theirs
        .send(
            BOB,
            &[SAM.to_string()],
            "Test from Bob",
            b"Content-Type: text/plain\r\n\r\nCan you read this?\r\n",
        )
        .await
        .unwrap();
    let mut received = false;
    for _ in 0..400 {
        if !ours.mailbox(SAM, 10).await.unwrap().is_empty() {
            received = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(received, "Sam's mailbox stayed empty");
    assert_eq!(next(&p).await, Some(Step::TestMessageExchanged));

    // Sam answers; Bob's HISP confirms it processed: the step is done, by Sam's address.
    let sent = p
        .ours
        .send(
            SAM,
            &[BOB.to_string()],
            "Re: Test from Bob",
            b"Content-Type: text/plain\r\n\r\nYes.\r\n",
        )
        .await
        .unwrap();
    let mut done = None;
    for _ in 0..400 {
        if next(&p).await.is_none() {
            done = Some(p.onboarding.view(&id, now).await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = done.expect("the test message step was never done");
    let step = view
        .checklist
        .done
        .iter()
        .find(|d| d.step == Step::TestMessageExchanged)
        .unwrap();
    assert_eq!(step.by, format!("direct: {SAM}"));
    let rows = ours.outbound_by_message(&sent).await.unwrap();
    assert_eq!(rows[0].status, DeliveryStatus::Processed);
    let org = ours
        .read("Organization", &participant)
        .await
        .unwrap()
        .unwrap();
    assert!(org.json.contains("\"live\""), "{}", org.json);
}
