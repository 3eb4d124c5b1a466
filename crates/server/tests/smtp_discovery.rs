//! Direct certificate discovery and MX routing with real peers: an authoritative DNS server on
//! loopback (UDP and TCP, `common::dns`) publishes CERT, MX, SRV and address records, a throwaway
//! `slapd` (`common::slapd`) publishes certificates over LDAP, and a test SMTP sink stands for the
//! other HISP. nutmeg is never given the recipients' certificates: it finds them, validates them
//! against the sending domain's anchors, encrypts to them, and hands the message to the MX host;
//! the `openssl cms` command line then decrypts and verifies what the sink received. Certificates
//! that fail validation are not used (the sender is told, as when none is found); a domain that
//! does not exist fails for good (so does a null MX); a DNS timeout, during discovery or MX
//! lookup, and an LDAP server that is down are retried with the queue's back-off.
//!
//! Needs the `openssl` command line; the LDAP case says it skipped where `slapd` is missing.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;
use hickory_proto::rr::Name;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use server::smtp::dns::DnsConfig;
use server::smtp::hisp::{certificate_record, fingerprint, now_ms};
use server::smtp::{Hisp, HispConfig, Route};
use store::{AnchorDirection, DeliveryStatus, MailKind, Store, TrustAnchor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use common::dns::{name, DnsServer};

const LOCAL: &str = "direct.nutmeg.test";
const JANE: &str = "jane@direct.nutmeg.test";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const CONTENT: &[u8] =
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nPlease see Mr. Smith on Monday.\r\n";

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
    // From well in the past, so that an expired certificate can be issued under it.
    Authority::create_root(
        config,
        key,
        Validity::days_from(now() - 1000 * 86_400, 3650),
    )
    .expect("root")
}

/// A certificate and its key.
struct Party {
    cert: X509,
    key: PKey<Private>,
}

fn issue(ca: &Authority, binding: Binding, validity: Validity) -> Party {
    let key = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
    let cert = ca.issue(&binding, &key, validity).expect("issue");
    Party { cert, key }
}

fn valid() -> Validity {
    Validity::days_from(now() - 86_400, 365)
}

fn expired() -> Validity {
    Validity::days_from(now() - 400 * 86_400, 30)
}

fn address(a: &str) -> Binding {
    Binding::Address(a.to_string())
}

/// The CERT owner name of an address: its local part as one label in front of the domain
/// (written independently of nutmeg's mapping, so that the two must agree on the wire).
fn address_bound(local: &str, domain: &str) -> Name {
    let mut labels: Vec<&[u8]> = vec![local.as_bytes()];
    labels.extend(domain.split('.').map(str::as_bytes));
    Name::from_labels(labels).unwrap()
}

/// A test SMTP server standing for the other HISP's MX host: accepts everything and hands each
/// message (with its recipient) to `received`.
struct Sink {
    address: SocketAddr,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

async fn sink() -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
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
                    if upper.starts_with("RCPT") {
                        rcpt = line[8..].trim().trim_matches(['<', '>']).to_string();
                    }
                    if upper.starts_with("DATA") {
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
                    }
                    conn.get_mut().write_all(b"250 OK\r\n").await.ok()?;
                }
            });
        }
    });
    Sink { address, received }
}

impl Sink {
    async fn next(&mut self) -> (String, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(30), self.received.recv())
            .await
            .expect("the MX host received a message in time")
            .expect("sink open")
    }
}

struct Fixture {
    hisp: Hisp,
    store: Store,
    dns: DnsServer,
    sink: Sink,
    local_ca: Authority,
    /// The other HISP's CA: anchored for outbound mail from the local domain.
    remote_ca: Authority,
    kek: Kek,
    dir: tempfile::TempDir,
    _running: server::smtp::Running,
}

/// nutmeg with Jane's address and key, the local and remote CAs as outbound anchors, no
/// certificate of anyone outside, a resolver asking only the test DNS server, and the MX port
/// set to the sink's. The zone has `other.test` with its MX host `mx.other.test` at loopback.
async fn fixture(tweak: impl FnOnce(&mut HispConfig, &Sink)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("n.db").display()))
        .await
        .unwrap();
    let local_ca = authority(LOCAL);
    let remote_ca = authority("other.test");
    let jane = issue(&local_ca, address(JANE), valid());
    let kek_text = Kek::generate_base64().unwrap();
    let kek = Kek::from_base64(&kek_text).unwrap();
    let t = now_ms();
    store
        .add_direct_address(JANE, "practitioner", "prac-1", "Jane Doe", t)
        .await
        .unwrap();
    store
        .add_direct_certificate(
            certificate_record(&jane.cert, JANE, Some((&kek, &jane.key)), t).unwrap(),
        )
        .await
        .unwrap();
    for ca in [&remote_ca, &local_ca] {
        store
            .add_trust_anchor(TrustAnchor {
                domain: LOCAL.to_string(),
                direction: AnchorDirection::Outbound,
                fingerprint: fingerprint(ca.certificate()).unwrap(),
                cert_pem: String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap(),
                added: t,
            })
            .await
            .unwrap();
    }
    let dns = DnsServer::start().await;
    dns.mx("other.test", 10, "mx.other.test");
    dns.address("mx.other.test", LOOPBACK);
    let sink = sink().await;
    let mut config = HispConfig::new(vec![LOCAL.to_string()], "hisp.nutmeg.test");
    config.dns = Some(DnsConfig {
        nameservers: vec![dns.address],
        timeout: Duration::from_millis(300),
        attempts: 1,
    });
    config.mx_port = sink.address.port();
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(400);
    config.max_attempts = 3;
    config.client_timeout = Duration::from_secs(5);
    tweak(&mut config, &sink);
    let hisp = Hisp::new(
        store.clone(),
        config,
        Kek::from_base64(&kek_text).unwrap(),
        Vec::new(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = server::smtp::spawn(listener, hisp.clone(), None).unwrap();
    Fixture {
        hisp,
        store,
        dns,
        sink,
        local_ca,
        remote_ca,
        kek,
        dir,
        _running: running,
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

impl Fixture {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Decrypts with `party`'s key and verifies against the local CA with the `openssl cms`
    /// command line; answers the signed content.
    fn cli_open(&self, message: &[u8], party: &Party) -> String {
        let m = self.write("in.eml", message);
        let c = self.write("me.pem", &party.cert.to_pem().unwrap());
        let k = self.write("me.key", &party.key.private_key_to_pem_pkcs8().unwrap());
        let a = self.write("anchor.pem", &self.local_ca.certificate().to_pem().unwrap());
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
        let opened = openssl(&[
            "cms".as_ref(),
            "-verify".as_ref(),
            "-in".as_ref(),
            s.as_os_str(),
            "-CAfile".as_ref(),
            a.as_os_str(),
            "-purpose".as_ref(),
            "any".as_ref(),
        ]);
        String::from_utf8_lossy(&opened).into_owned()
    }

    async fn send(&self, to: &str, subject: &str) -> String {
        self.hisp
            .send(JANE, &[to.to_string()], subject, CONTENT)
            .await
            .unwrap()
    }

    async fn status(&self, message_id: &str, want: DeliveryStatus) -> store::Outbound {
        for _ in 0..400 {
            let rows = self.store.outbound_by_message(message_id).await.unwrap();
            if let Some(row) = rows.into_iter().find(|r| r.status == want) {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows = self.store.outbound_by_message(message_id).await.unwrap();
        panic!("{message_id} never reached {want:?}: {rows:?}");
    }

    /// Waits until Jane's mailbox holds `n` delivery failure reports; answers them.
    async fn failure_reports(&self, n: usize) -> Vec<store::MailMessage> {
        for _ in 0..300 {
            let got: Vec<_> = self
                .store
                .mailbox(JANE, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.kind == MailKind::Dsn)
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Jane never got {n} delivery failure reports");
    }

    /// A CA for another HISP's `domain` (a CA issues for its own domain only), anchored for
    /// outbound mail from the local domain.
    async fn anchored_ca(&self, domain: &str) -> Authority {
        let ca = authority(domain);
        self.store
            .add_trust_anchor(TrustAnchor {
                domain: LOCAL.to_string(),
                direction: AnchorDirection::Outbound,
                fingerprint: fingerprint(ca.certificate()).unwrap(),
                cert_pem: String::from_utf8(ca.certificate().to_pem().unwrap()).unwrap(),
                added: now_ms(),
            })
            .await
            .unwrap();
        ca
    }

    /// Stores a certificate for an outside address as the operator would (so that only routing
    /// is discovered).
    async fn known(&self, subject: &str) {
        let domain = subject.rsplit_once('@').unwrap().1;
        let ca = self.anchored_ca(domain).await;
        let party = issue(&ca, address(subject), valid());
        self.store
            .add_direct_certificate(
                certificate_record(&party.cert, subject, None, now_ms()).unwrap(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_bound_cert_record_over_tcp_encrypts_mail_that_goes_to_the_mx_host() {
    let mut f = fixture(|_, _| {}).await;
    let to = "bob.smith@other.test";
    let bob = issue(&f.remote_ca, address(to), valid());
    let old = issue(&f.remote_ca, address(to), expired());
    // Two certificates at the address-bound name: too large for one UDP answer.
    let at = address_bound("bob.smith", "other.test");
    f.dns.cert(&at, &old.cert.to_der().unwrap());
    f.dns.cert(&at, &bob.cert.to_der().unwrap());
    // A domain-bound certificate too, which the address-bound one takes precedence over.
    let domain = issue(&f.remote_ca, Binding::Domain("other.test".into()), valid());
    f.dns
        .cert(&name("other.test"), &domain.cert.to_der().unwrap());

    let id = f.send(to, "Referral").await;
    let (rcpt, sealed) = f.sink.next().await;
    assert_eq!(rcpt, to);
    assert!(
        !String::from_utf8_lossy(&sealed).contains("Mr. Smith"),
        "encrypted"
    );
    let opened = f.cli_open(&sealed, &bob);
    assert!(opened.contains("Mr. Smith"), "{opened}");
    assert!(opened.contains("Subject: Referral"), "{opened}");
    f.status(&id, DeliveryStatus::Sent).await;
    assert!(
        f.dns.tcp_queries() >= 1,
        "the truncated CERT answer was asked again over TCP"
    );
    assert!(f.dns.udp_queries() >= 3, "CERT, MX and A over UDP");
    let _ = &f.kek;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_bound_cert_record_is_used_when_the_address_has_none_and_the_domain_is_its_own_mx()
{
    let mut f = fixture(|_, _| {}).await;
    let to = "alice@plain.test";
    let plain_ca = f.anchored_ca("plain.test").await;
    let domain = issue(&plain_ca, Binding::Domain("plain.test".into()), valid());
    f.dns
        .cert(&name("plain.test"), &domain.cert.to_der().unwrap());
    // No MX: the domain's own address is its mail host (RFC 5321's implicit MX).
    f.dns.address("plain.test", LOOPBACK);

    let id = f.send(to, "Lab results").await;
    let (rcpt, sealed) = f.sink.next().await;
    assert_eq!(rcpt, to);
    let opened = f.cli_open(&sealed, &domain);
    assert!(opened.contains("Mr. Smith"), "{opened}");
    f.status(&id, DeliveryStatus::Sent).await;
    assert_eq!(f.dns.tcp_queries(), 0, "small answers stay on UDP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_route_wins_over_mx() {
    let mut routed = sink().await;
    let routed_address = routed.address;
    let mut f = fixture(move |c, _| {
        c.routes = vec![Route::new("other.test", &routed_address.to_string())];
    })
    .await;
    let to = "bob@other.test";
    let bob = issue(&f.remote_ca, address(to), valid());
    f.dns.cert(
        &address_bound("bob", "other.test"),
        &bob.cert.to_der().unwrap(),
    );
    let id = f.send(to, "Routed").await;
    let (rcpt, sealed) = routed.next().await;
    assert_eq!(rcpt, to);
    assert!(f.cli_open(&sealed, &bob).contains("Mr. Smith"));
    f.status(&id, DeliveryStatus::Sent).await;
    assert!(
        f.sink.received.try_recv().is_err(),
        "the MX host got nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovered_certificates_that_fail_validation_are_not_used() {
    let mut f = fixture(|_, _| {}).await;
    // A CA for the same domain that the sending domain does not anchor.
    let rogue_ca = authority("other.test");
    let cases = [
        // Expired.
        (
            "frank",
            issue(&f.remote_ca, address("frank@other.test"), expired()),
        ),
        // Issued under a CA the sending domain does not anchor.
        (
            "grace",
            issue(&rogue_ca, address("grace@other.test"), valid()),
        ),
        // Bound to another address.
        (
            "heidi",
            issue(&f.remote_ca, address("mallory@other.test"), valid()),
        ),
    ];
    let mut ids = Vec::new();
    for (local, party) in &cases {
        f.dns.cert(
            &address_bound(local, "other.test"),
            &party.cert.to_der().unwrap(),
        );
        let to = format!("{local}@other.test");
        let id = f.send(&to, "Discharge summary").await;
        ids.push((to, id));
    }
    for (to, id) in &ids {
        let failed = f.status(id, DeliveryStatus::Failed).await;
        assert_eq!(failed.attempts, 1, "{to}: not retried");
        let error = failed.last_error.unwrap();
        assert!(
            error.contains(&format!("no trusted certificate for {to}")),
            "{to}: {error}"
        );
    }
    let reports = f.failure_reports(3).await;
    for (to, _) in &ids {
        assert!(
            reports
                .iter()
                .any(|r| String::from_utf8_lossy(&r.raw).contains(to.as_str())),
            "Jane was told about {to}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.sink.received.try_recv().is_err(), "nothing was sent");

    // The same person, once the address's right certificate is published, is reached.
    f.dns.remove(&address_bound("grace", "other.test"));
    let grace = issue(&f.remote_ca, address("grace@other.test"), valid());
    f.dns.cert(
        &address_bound("grace", "other.test"),
        &grace.cert.to_der().unwrap(),
    );
    let id = f.send("grace@other.test", "Again").await;
    let (_, sealed) = f.sink.next().await;
    assert!(f.cli_open(&sealed, &grace).contains("Mr. Smith"));
    f.status(&id, DeliveryStatus::Sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_that_does_not_exist_fails_at_once_and_a_dns_timeout_is_retried() {
    let f = fixture(|_, _| {}).await;
    // Certificates known from the operator, so that routing is what is looked up.
    f.known("ivan@gone.test").await;
    f.known("judy@slow.test").await;
    f.known("kim@nullmx.test").await;
    f.known("olga@noaddress.test").await;
    // The domain exists (it has a record of another type) but has neither MX nor address.
    f.dns.cert(&name("noaddress.test"), b"not used");
    f.dns.ignore("slow.test");
    f.dns.mx("nullmx.test", 0, ".");

    let gone = f.send("ivan@gone.test", "a").await;
    let slow = f.send("judy@slow.test", "b").await;
    let null = f.send("kim@nullmx.test", "c").await;
    let no_address = f.send("olga@noaddress.test", "g").await;
    // Nobody publishes anything for this one, in DNS or LDAP: no certificate, for good.
    let unknown = f.send("lena@nowhere.test", "d").await;
    // Certificate discovery itself times out: retried too.
    f.dns.ignore("slow2.test");
    let slow2 = f.send("mia@slow2.test", "e").await;
    // The domain's only LDAP server is down: temporary as well.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    f.dns.srv(
        "_ldap._tcp.ldapdown.test",
        0,
        0,
        down_port,
        "ldap.ldapdown.test",
    );
    f.dns.address("ldap.ldapdown.test", LOOPBACK);
    let ldap_down = f.send("nina@ldapdown.test", "f").await;

    let failed = f.status(&gone, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1, "NXDOMAIN is permanent");
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("gone.test. does not exist"),
        "{failed:?}"
    );
    let failed = f.status(&null, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    assert!(failed
        .last_error
        .as_deref()
        .unwrap()
        .contains("accepts no mail"));
    let failed = f.status(&no_address, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1, "no MX and no address is permanent");
    assert!(failed
        .last_error
        .as_deref()
        .unwrap()
        .contains("no address for the mail hosts of noaddress.test"));
    let failed = f.status(&unknown, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    assert!(failed
        .last_error
        .as_deref()
        .unwrap()
        .contains("no trusted certificate for lena@nowhere.test"));
    for (id, why) in [
        (&slow, "timed out"),
        (&slow2, "timed out"),
        (&ldap_down, "LDAP server 127.0.0.1"),
    ] {
        let failed = f.status(id, DeliveryStatus::Failed).await;
        assert_eq!(failed.attempts, 3, "temporary: {failed:?}");
        let error = failed.last_error.unwrap();
        assert!(error.contains("gave up after 3 attempts"), "{error}");
        assert!(error.contains(why), "{error}");
    }
    f.failure_reports(7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ldap_found_by_srv_gives_the_certificate_when_dns_cert_has_none() {
    let mut f = fixture(|_, _| {}).await;
    let carol_address = "carol@ldap.test";
    let erin_address = "erin@ldap.test";
    let ldap_ca = f.anchored_ca("ldap.test").await;
    let carol = issue(&ldap_ca, address(carol_address), valid());
    let erin = issue(&ldap_ca, address(erin_address), valid());
    let expired_erin = issue(&ldap_ca, address(erin_address), expired());
    // Erin's userSMIMECertificate is a PKCS#7 bundle (made by the openssl command line) holding
    // an expired certificate and the good one.
    let certs = f.write(
        "erin.pem",
        &[
            expired_erin.cert.to_pem().unwrap(),
            erin.cert.to_pem().unwrap(),
        ]
        .concat(),
    );
    let p7 = openssl(&[
        "crl2pkcs7".as_ref(),
        "-nocrl".as_ref(),
        "-certfile".as_ref(),
        certs.as_os_str(),
        "-outform".as_ref(),
        "DER".as_ref(),
    ]);
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ldif = format!(
        "dn: dc=ldap,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: ldap\ndc: ldap\n\n\
         dn: cn=Carol,dc=ldap,dc=test\nobjectClass: inetOrgPerson\ncn: Carol\nsn: C\nmail: {carol_address}\n\
         userCertificate;binary:: {}\n\n\
         dn: cn=Erin,dc=ldap,dc=test\nobjectClass: inetOrgPerson\ncn: Erin\nsn: E\nmail: {erin_address}\n\
         userSMIMECertificate:: {}\n",
        b64(&carol.cert.to_der().unwrap()),
        b64(&p7),
    );
    let Some(slapd) = common::slapd::Slapd::start("dc=ldap,dc=test", &ldif) else {
        eprintln!("skipped: slapd is not installed (apt-get install slapd ldap-utils)");
        return;
    };
    // The preferred server (priority 0) is down; the next priority is slapd.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    f.dns
        .srv("_ldap._tcp.ldap.test", 0, 10, down_port, "down.ldap.test");
    f.dns
        .srv("_ldap._tcp.ldap.test", 10, 5, slapd.port, "ldap.ldap.test");
    f.dns.address("down.ldap.test", LOOPBACK);
    f.dns.address("ldap.ldap.test", LOOPBACK);
    f.dns.mx("ldap.test", 5, "mx.other.test");

    for (to, party) in [(carol_address, &carol), (erin_address, &erin)] {
        let id = f.send(to, "By LDAP").await;
        let (rcpt, sealed) = f.sink.next().await;
        assert_eq!(rcpt, to);
        let opened = f.cli_open(&sealed, party);
        assert!(opened.contains("Mr. Smith"), "{to}: {opened}");
        f.status(&id, DeliveryStatus::Sent).await;
    }

    // Someone the directory has no certificate for: failed for good, reported.
    let id = f.send("nobody@ldap.test", "x").await;
    let failed = f.status(&id, DeliveryStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    assert!(failed
        .last_error
        .unwrap()
        .contains("no trusted certificate for nobody@ldap.test"));
}
