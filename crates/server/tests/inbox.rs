//! The web inbox end to end: the real `nutmeg serve --direct-config --smtp`, the operator's
//! commands (`admin direct address add --user`, `address bind`), a browser that keeps cookies by
//! hand and never follows redirects, another HISP's user (Bob) who sends with the `openssl cms`
//! command line over SMTP and receives at a test SMTP sink, where what nutmeg sends is decrypted and
//! verified with `openssl cms`.
//!
//! Jane (a therapist, clinician of a live solo practice) reads Bob's message (which asked for
//! final-destination delivery: one "dispatched" notification however often she opens it), downloads
//! its attachments (never inline), views the C-CDA and imports it (once), replies with an
//! attachment, sends a document as an XDM package, forwards to Mallory (another user of the
//! exchange, who never sees Jane's mailbox), uses the address book; every form's bad input gets its
//! error with what was typed kept. A counselor whose data an emergency department read under
//! break-the-glass finds the exchange's notice in the inbox. The C-CDA sample of `../shared/data/direct/ett` is used when
//! present (a synthetic document otherwise).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::{admin, nutmeg, Server};
use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;
use direct::mime::Entity;

const DOMAIN: &str = "direct.nutmeg.test";
const JANE: &str = "jane@direct.nutmeg.test";
const MALLORY: &str = "mallory@direct.nutmeg.test";
const BOB: &str = "bob@other.test";
const PASSWORD: &str = "correct horse battery staple";

const SYNTHETIC_CDA: &str = r#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
 <id root="2.16.840.1.113883.19.5.99999.1" extension="doc-1"/>
 <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summary of episode note"/>
 <title>Synthetic Summary</title>
 <effectiveTime value="20240102"/>
 <recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="555001"/>
  <patient><name><given>Testy</given><family>Synthetic</family></name>
  <administrativeGenderCode code="F"/><birthTime value="19800101"/></patient>
 </patientRole></recordTarget>
 <component><structuredBody><component><section><title>ALLERGIES, ADVERSE REACTIONS, ALERTS</title>
  <text><paragraph>No known allergies</paragraph></text></section></component></structuredBody></component>
</ClinicalDocument>
"#;

// --- the browser ---------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn location(&self) -> String {
        self.headers.get("location").cloned().unwrap_or_default()
    }
}

struct Browser {
    root: String,
    agent: ureq::Agent,
    cookies: HashMap<String, String>,
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser {
            root: server.root(),
            agent: Browser::agent(),
            cookies: HashMap::new(),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    /// New connections from here on (the cookies stay), as a browser opens after the server
    /// closed one mid-upload: a pooled connection the server has dropped would fail the next request.
    fn reconnect(&mut self) {
        self.agent = Browser::agent();
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn answer(
        &mut self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Answer {
        let mut response = response.expect("HTTP");
        for line in response.headers().get_all("set-cookie") {
            let line = line.to_str().unwrap();
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn get(&mut self, path: &str) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.root));
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        let response = request.call();
        self.answer(response)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .agent
            .post(format!("{}{path}", self.root))
            .content_type("application/x-www-form-urlencoded");
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        let response = request.send(body);
        self.answer(response)
    }

    /// A `multipart/form-data` POST: text fields, then files `(field, file name, type, bytes)`.
    fn post_multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &str, &[u8])],
    ) -> Answer {
        let response = self.multipart(path, fields, files);
        self.answer(response)
    }

    fn multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &str, &[u8])],
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let boundary = "----nutmegtestboundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        for (name, filename, media_type, data) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: {media_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut request = self
            .agent
            .post(format!("{}{path}", self.root))
            .content_type(&format!("multipart/form-data; boundary={boundary}"));
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        request.send(&body[..])
    }

    fn sign_in(&mut self, login: &str) {
        let form = self.get("/portal/sign-in");
        let csrf = hidden(&form.text(), "csrf");
        let answer = self.post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("login", login),
                ("password", PASSWORD),
                ("code", ""),
            ],
        );
        assert_eq!(answer.status, 303, "{}", answer.text());
        assert_eq!(answer.location(), "/portal");
    }
}

/// The value of a hidden field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The first `href` starting with `prefix`.
fn link(html: &str, prefix: &str) -> String {
    let marker = format!("href=\"{prefix}");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no link {prefix} in {html}"))
        + "href=\"".len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

// --- Bob's side: openssl and an SMTP sink ----------------------------------------------------

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A test SMTP server standing for Bob's HISP: every message it accepts goes to the channel.
fn sink() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let _ = writer.write_all(b"220 sink ESMTP\r\n");
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("DATA") {
                        let _ = writer.write_all(b"354 go\r\n");
                        let mut data = Vec::new();
                        loop {
                            let mut l = Vec::new();
                            if reader.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                                return;
                            }
                            if l == b".\r\n" {
                                break;
                            }
                            data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                        }
                        let _ = tx.send(data);
                        let _ = writer.write_all(b"250 OK\r\n");
                    } else if upper.starts_with("QUIT") {
                        let _ = writer.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        let _ = writer.write_all(b"250 OK\r\n");
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Sends `message` to nutmeg's SMTP port as Bob's HISP would; answers the last reply.
fn smtp_send(port: u16, from: &str, to: &str, message: &[u8]) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = || loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    reply();
    for command in [
        "EHLO other.test\r\n".to_string(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{to}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        writer.write_all(command.as_bytes()).unwrap();
        let answer = reply();
        assert!(
            answer.starts_with('2') || answer.starts_with('3'),
            "{command}: {answer}"
        );
    }
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            writer.write_all(b".").unwrap();
        }
        writer.write_all(line).unwrap();
    }
    if !message.ends_with(b"\n") {
        writer.write_all(b"\r\n").unwrap();
    }
    writer.write_all(b".\r\n").unwrap();
    let answer = reply();
    writer.write_all(b"QUIT\r\n").unwrap();
    answer
}

/// What Bob's HISP received, decrypted with Bob's key and verified against the exchange's CA with
/// the `openssl` command line: the content as signed.
fn open_at_bob(dir: &Path, sealed: &[u8]) -> Vec<u8> {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(dir.join("sealed.eml"), sealed).unwrap();
    let signed = openssl(&[
        "cms",
        "-decrypt",
        "-recip",
        &p("bob.pem"),
        "-inkey",
        &p("bob.key"),
        "-in",
        &p("sealed.eml"),
    ]);
    std::fs::write(dir.join("signed.eml"), &signed).unwrap();
    openssl(&[
        "cms",
        "-verify",
        "-CAfile",
        &p("localca.pem"),
        "-in",
        &p("signed.eml"),
    ])
}

/// The next message at the sink, opened, within a minute.
fn next_at_bob(dir: &Path, rx: &mpsc::Receiver<Vec<u8>>) -> String {
    let sealed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Bob's HISP received a message in time");
    String::from_utf8_lossy(&open_at_bob(dir, &sealed)).into_owned()
}

fn is_dispatched(text: &str) -> bool {
    text.contains("multipart/report") && text.contains("MDN-sent-automatically;dispatched")
}

fn is_processed(text: &str) -> bool {
    text.contains("multipart/report") && text.contains("MDN-sent-automatically;processed")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn direct(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    nutmeg()
        .arg("--data-dir")
        .arg(dir)
        .arg("--direct-config")
        .arg(config)
        .args(["--log", "warn", "admin", "direct"])
        .args(args)
        .output()
        .expect("run nutmeg")
}

fn add_user(dir: &Path, login: &str, name: &str, participant: &str) {
    let file = dir.join("password.txt");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    ok(&admin(
        dir,
        &[
            "user",
            "add",
            "--password-file",
            file.to_str().unwrap(),
            "--login",
            login,
            "--name",
            name,
            "--role",
            "clinician",
            "--participant",
            participant,
        ],
    ));
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The C-CDA sample (or the synthetic one) and the section title it has.
fn sample_cda() -> (Vec<u8>, &'static str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/direct/ett/CCDA_Ambulatory.xml");
    match std::fs::read(&path) {
        Ok(bytes) => (bytes, "ALLERGIES, ADVERSE REACTIONS, ALERTS"),
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is absent; a synthetic C-CDA stands in",
                path.display()
            );
            (
                SYNTHETIC_CDA.as_bytes().to_vec(),
                "ALLERGIES, ADVERSE REACTIONS, ALERTS",
            )
        }
    }
}

/// `nutmeg serve` with the Direct configuration and an SMTP listener on a free port.
fn serve_direct(dir: &Path, config: &Path) -> Server {
    let smtp_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Server::start(
        dir,
        &[
            "--direct-config",
            config.to_str().unwrap(),
            "--smtp",
            &format!("127.0.0.1:{smtp_port}"),
        ],
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_therapist_reads_replies_imports_and_forwards_in_the_web_inbox() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (sink_port, at_bob) = sink();
    std::fs::write(dir.join("kek"), Kek::generate_base64().unwrap()).unwrap();
    let smtp_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The resolver asks a local DNS server with no zone: every outside domain without a static
    // route does not exist.
    // (On a runtime of its own whose worker threads serve it for the whole test.)
    let dns_runtime = tokio::runtime::Runtime::new().unwrap();
    let dns = dns_runtime.block_on(common::dns::DnsServer::start());
    let config = dir.join("direct.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"{DOMAIN}\"]\nhostname = \"hisp.nutmeg.test\"\nkek_file = \"kek\"\n\
             max_message_size = \"600KiB\"\n\n[dns]\nnameservers = [\"{dns}\"]\n\n\
             [[routes]]\ndomain = \"other.test\"\naddress = \"127.0.0.1:{sink_port}\"\n",
            dns = dns.address
        ),
    )
    .unwrap();

    // The registry: Jane's solo practice (live), her Practitioner and role, Mallory, Bob's hospital
    // with his Direct endpoint.
    let practice = common::participant(
        dir,
        "Hope Family Therapy",
        "clinic",
        &["onboarding", "live"],
    );
    common::import(
        dir,
        "directory.json",
        &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Practitioner", "id": "prac-jane",
              "name": [{"given": ["Jane"], "family": "Doe"}], "address": [{"city": "Hartford"}]},
             "request": {"method": "PUT", "url": "Practitioner/prac-jane"}},
            {"resource": {"resourceType": "PractitionerRole", "id": "role-jane",
              "practitioner": {"reference": "Practitioner/prac-jane"},
              "organization": {"reference": format!("Organization/{practice}")},
              "specialty": [{"text": "Marriage and family therapy"}]},
             "request": {"method": "PUT", "url": "PractitionerRole/role-jane"}},
            {"resource": {"resourceType": "Practitioner", "id": "prac-mallory",
              "name": [{"given": ["Mallory"], "family": "Malone"}]},
             "request": {"method": "PUT", "url": "Practitioner/prac-mallory"}},
            {"resource": {"resourceType": "Organization", "id": "org-other", "name": "Other Hospital",
              "address": [{"city": "New Haven"}]},
             "request": {"method": "PUT", "url": "Organization/org-other"}},
            {"resource": {"resourceType": "Endpoint", "id": "ep-bob", "status": "active",
              "name": "Bob Builder",
              "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "direct-project"},
              "managingOrganization": {"reference": "Organization/org-other"},
              "payloadType": [{"text": "any"}], "address": format!("mailto:{BOB}")},
             "request": {"method": "PUT", "url": "Endpoint/ep-bob"}}
        ]})
        .to_string(),
    );
    add_user(dir, "jane", "Jane Doe", &practice);
    add_user(dir, "mallory", "Mallory Malone", &practice);

    // The operator: the domain's CA, Jane's address bound at issuance, Mallory's bound after.
    ok(&direct(dir, &config, &["ca", "init", "--domain", DOMAIN]));
    let issued = ok(&direct(
        dir,
        &config,
        &[
            "address",
            "add",
            "--address",
            JANE,
            "--practitioner",
            "prac-jane",
            "--name",
            "Jane Doe",
            "--user",
            "jane",
            "--json",
        ],
    ));
    assert!(issued.contains("Practitioner/prac-jane"), "{issued}");
    ok(&direct(
        dir,
        &config,
        &[
            "address",
            "add",
            "--address",
            MALLORY,
            "--practitioner",
            "prac-mallory",
            "--name",
            "Mallory",
        ],
    ));
    let refused = direct(
        dir,
        &config,
        &["address", "bind", MALLORY, "--user", "nobody"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no portal account"));
    let refused = direct(
        dir,
        &config,
        &[
            "address",
            "bind",
            "x@direct.nutmeg.test",
            "--user",
            "mallory",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(ok(&direct(
        dir,
        &config,
        &["address", "bind", MALLORY, "--user", "mallory"]
    ))
    .contains("bound"));

    // Bob's HISP: its CA trusted both ways; Bob's certificate known to the exchange.
    let bob_ca = Authority::create_root(
        CaConfig {
            domain: "other.test".into(),
            organization: "Other".into(),
            crl_url: None,
            ca_issuers_url: None,
            policy_oids: Vec::new(),
        },
        ca::generate_key(KeySpec::Rsa(2048)).unwrap(),
        Validity::days_from(now() - 86_400, 365),
    )
    .unwrap();
    let bob_key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let bob = bob_ca
        .issue(
            &Binding::Address(BOB.into()),
            &bob_key,
            Validity::days_from(now() - 86_400, 365),
        )
        .unwrap();
    std::fs::write(
        dir.join("bobca.pem"),
        bob_ca.certificate().to_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("bob.pem"), bob.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("bob.key"),
        bob_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    ok(&direct(
        dir,
        &config,
        &[
            "anchor",
            "add",
            "--domain",
            DOMAIN,
            "--direction",
            "both",
            dir.join("bobca.pem").to_str().unwrap(),
        ],
    ));
    let db = format!("sqlite://{}", dir.join("nutmeg.db").display());
    let rt = runtime();
    let (jane_pem, local_ca) = rt.block_on(async {
        let store = store::Store::open(&db).await.unwrap();
        store
            .add_direct_certificate(
                server::smtp::hisp::certificate_record(
                    &bob,
                    BOB,
                    None,
                    server::smtp::hisp::now_ms(),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let jane = store
            .direct_certificates(JANE)
            .await
            .unwrap()
            .remove(0)
            .cert_pem;
        let ca = store
            .direct_certificates(&format!("ca:{DOMAIN}"))
            .await
            .unwrap()
            .remove(0)
            .cert_pem;
        (jane, ca)
    });
    std::fs::write(dir.join("jane.pem"), jane_pem).unwrap();
    std::fs::write(dir.join("localca.pem"), local_ca).unwrap();

    let server = Server::start(
        dir,
        &[
            "--direct-config",
            config.to_str().unwrap(),
            "--smtp",
            &format!("127.0.0.1:{smtp_port}"),
        ],
    );

    // Bob writes to Jane, asking for final-destination delivery, with a C-CDA and an HTML file.
    let (cda, section) = sample_cda();
    let content = [
        b"Content-Type: multipart/mixed; boundary=\"bob1\"\r\n\r\n--bob1\r\n\
Content-Type: text/plain\r\n\r\nPlease see the attached summary for our shared client.\r\n\
--bob1\r\nContent-Type: text/xml; name=\"summary.xml\"\r\nContent-Disposition: attachment; filename=\"summary.xml\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec(),
        direct::mime::encode_base64_lines(&cda),
        b"\r\n--bob1\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=\"note.html\"\r\n\r\n\
<html><script>alert('x')</script></html>\r\n--bob1--\r\n"
            .to_vec(),
    ]
    .concat();
    std::fs::write(dir.join("content.eml"), &content).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let signed = openssl(&[
        "cms",
        "-sign",
        "-md",
        "sha256",
        "-signer",
        &p("bob.pem"),
        "-inkey",
        &p("bob.key"),
        "-in",
        &p("content.eml"),
    ]);
    std::fs::write(dir.join("bobsigned.eml"), signed).unwrap();
    let mut message = b"Message-ID: <inbox-1@other.test>\r\n\
Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
        .to_vec();
    message.extend(openssl(&[
        "cms",
        "-encrypt",
        "-aes128",
        "-from",
        BOB,
        "-to",
        JANE,
        "-subject",
        "Shared client <summary>",
        "-in",
        &p("bobsigned.eml"),
        &p("jane.pem"),
    ]));
    let reply = smtp_send(smtp_port, BOB, JANE, &message);
    assert!(reply.starts_with("250"), "{reply}");
    let processed = next_at_bob(dir, &at_bob);
    assert!(
        is_processed(&processed),
        "the processed notification first: {processed}"
    );

    // Mallory signs in: her inbox is empty, Jane's message is not hers to see.
    let mut mallory = Browser::new(&server);
    mallory.sign_in("mallory");
    let hers = mallory.get("/portal/inbox");
    assert_eq!(hers.status, 200);
    assert!(hers.text().contains("No messages yet"), "{}", hers.text());
    assert!(!hers.text().contains("Shared client"));

    // Jane: the portal says she has one unread message; the inbox lists it, escaped, unread.
    let mut jane = Browser::new(&server);
    let unsigned = jane.get("/portal/inbox");
    assert_eq!(
        (unsigned.status, unsigned.location()),
        (303, "/portal/sign-in".to_string())
    );
    jane.sign_in("jane");
    let home = jane.get("/portal").text();
    assert!(home.contains("Secure messages</a> (1 unread)"), "{home}");
    let inbox = jane.get("/portal/inbox").text();
    assert!(inbox.contains("Shared client &lt;summary&gt;"), "{inbox}");
    assert!(inbox.contains("Unread") && inbox.contains(BOB), "{inbox}");
    assert!(inbox.contains("1 unread message."), "{inbox}");
    let message_path = link(&inbox, "/portal/inbox/messages/");
    let message_id = message_path.rsplit('/').next().unwrap().to_string();

    // Another user asking for it, or its parts, is told it does not exist.
    assert_eq!(mallory.get(&message_path).status, 404);
    assert_eq!(mallory.get(&format!("{message_path}/parts/1")).status, 404);
    assert_eq!(
        mallory
            .get(&format!("/portal/inbox/compose?reply={message_id}"))
            .status,
        404
    );

    // Reading: headers, text, attachments; opening twice sends one dispatched notification.
    let page = jane.get(&message_path);
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(page.contains("Please see the attached summary"), "{page}");
    assert!(
        page.contains("summary.xml") && page.contains("note.html"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert"),
        "attachment HTML is never inline"
    );
    assert!(page.contains("View this clinical document"), "{page}");
    assert_eq!(jane.get(&message_path).status, 200);
    let inbox = jane.get("/portal/inbox").text();
    assert!(
        inbox.contains("0 unread messages.") && inbox.contains("Read"),
        "{inbox}"
    );

    // Downloads are attachments, never rendered: HTML comes as octet-stream in a sandbox.
    let html = jane.get(&format!("{message_path}/parts/2"));
    assert_eq!(html.status, 200);
    assert_eq!(html.headers["content-type"], "application/octet-stream");
    assert!(html.headers["content-disposition"].starts_with("attachment; filename=\"note.html\""));
    assert!(html.headers["content-security-policy"].contains("sandbox"));
    assert!(html.text().contains("<script>"));
    let xml = jane.get(&format!("{message_path}/parts/1"));
    assert_eq!(xml.body, cda, "the attachment downloads byte for byte");
    assert_eq!(jane.get(&format!("{message_path}/parts/9")).status, 404);

    // The C-CDA view: sections as text, an optional import that files it once.
    let view = jane.get(&format!("{message_path}/parts/1/view"));
    assert_eq!(view.status, 200);
    let view = view.text();
    assert!(view.contains(section), "{view}");
    assert!(
        !view.contains("<script") && !view.contains("xml-stylesheet"),
        "{view}"
    );
    let csrf = hidden(&view, "csrf");
    let bad = jane.post(
        &format!("{message_path}/parts/1/import"),
        &[("csrf", "wrong")],
    );
    assert_eq!(bad.status, 403);
    assert_eq!(
        mallory
            .post(&format!("{message_path}/parts/1/import"), &[("csrf", "x")])
            .status,
        404
    );
    let not_cda = jane.get(&format!("{message_path}/parts/2/view"));
    assert_eq!(not_cda.status, 422);
    assert!(not_cda.text().contains("cannot be shown"));
    let imported = jane.post(
        &format!("{message_path}/parts/1/import"),
        &[("csrf", &csrf)],
    );
    assert_eq!(imported.status, 200, "{}", imported.text());
    let text = imported.text();
    assert!(
        text.contains("The document was added to the exchange"),
        "{text}"
    );
    let document = text
        .split("DocumentReference/")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let again = jane
        .post(
            &format!("{message_path}/parts/1/import"),
            &[("csrf", &csrf)],
        )
        .text();
    assert!(again.contains("already in the exchange"), "{again}");
    assert!(
        again.contains(&format!("DocumentReference/{document}")),
        "{again}"
    );
    let stored = rt.block_on(async {
        let store = store::Store::open(&db).await.unwrap();
        store
            .read("DocumentReference", &document)
            .await
            .unwrap()
            .unwrap()
    });
    let stored: serde_json::Value = serde_json::from_str(&stored.json).unwrap();
    assert!(
        stored["meta"]["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "labelled on intake: {stored}"
    );
    assert!(stored["subject"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("Patient/"));
    assert!(stored["content"][0]["attachment"]["data"]
        .as_str()
        .is_some());

    // Reply with an attachment: the form comes filled in; bad input is refused beside its field
    // with everything typed kept.
    let form = jane
        .get(&format!("/portal/inbox/compose?reply={message_id}"))
        .text();
    assert!(
        form.contains(&format!("name=\"to\" value=\"{BOB}\"")),
        "{form}"
    );
    assert!(form.contains("Re: Shared client &lt;summary&gt;"), "{form}");
    assert!(
        form.contains("&gt; Please see the attached summary"),
        "{form}"
    );
    let csrf = hidden(&form, "csrf");
    let subject = "Re: Shared client <summary>";
    let typed = "Thank you, Bob.\nI will see them Tuesday.";
    let fields = |to: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("from", JANE.to_string()),
            ("to", to.to_string()),
            ("subject", subject.to_string()),
            ("body", typed.to_string()),
            ("forward", String::new()),
            ("reply", hidden(&form, "reply")),
        ]
    };
    let send = |b: &mut Browser, fields: &[(&str, String)], files: &[(&str, &str, &str, &[u8])]| {
        let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        b.post_multipart("/portal/inbox/compose", &f, files)
    };
    for (to, error) in [
        ("not an address", "is not a Direct address"),
        ("", "Write at least one recipient"),
        ("carol@nowhere.test", "has no route to nowhere.test"),
        (
            "ghost@direct.nutmeg.test",
            "is not an address of this exchange",
        ),
    ] {
        let refused = send(&mut jane, &fields(to), &[]);
        assert_eq!(refused.status, 422, "{to}");
        let t = refused.text();
        assert!(t.contains(error), "{to}: {t}");
        assert!(t.contains("id=\"to-error\" role=\"alert\""), "{t}");
        assert!(
            t.contains("Thank you, Bob.\nI will see them Tuesday."),
            "the text is kept: {t}"
        );
        assert!(
            t.contains("value=\"Re: Shared client &lt;summary&gt;\""),
            "the subject is kept: {t}"
        );
    }
    let mut bad_subject = fields(BOB);
    bad_subject[3].1 = "two\rlines".to_string();
    let t = send(&mut jane, &bad_subject, &[]).text();
    assert!(t.contains("The subject must be one line"), "{t}");
    let big = vec![b'x'; 500 * 1024];
    let too_big = send(
        &mut jane,
        &fields(BOB),
        &[("attachment", "big.bin", "application/octet-stream", &big)],
    );
    assert_eq!(too_big.status, 422);
    let t = too_big.text();
    assert!(
        t.contains("a message may carry at most") && t.contains("Thank you, Bob."),
        "{t}"
    );
    // Past what the server reads at all: a 413 page, unless the server's closing the connection
    // mid-upload reaches this client first.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let huge_fields = fields(BOB);
    let f: Vec<(&str, &str)> = huge_fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Ok(response) = jane.multipart(
        "/portal/inbox/compose",
        &f,
        &[("attachment", "huge.bin", "application/octet-stream", &huge)],
    ) {
        let t = jane.answer(Ok(response));
        assert_eq!(t.status, 413);
        assert!(t.text().contains("too large"));
    }
    jane.reconnect();
    let mut forged = fields(BOB);
    forged[0].1 = "forged".to_string();
    assert_eq!(send(&mut jane, &forged, &[]).status, 403);
    let mut not_mine = fields(BOB);
    not_mine[1].1 = MALLORY.to_string();
    assert!(send(&mut jane, &not_mine, &[])
        .text()
        .contains("Choose one of your own addresses"));
    let mut xdm_without = fields(BOB);
    xdm_without.push(("xdm", "1".to_string()));
    assert!(send(&mut jane, &xdm_without, &[])
        .text()
        .contains("Attach the document to send as an XDM package"));

    let sent = send(
        &mut jane,
        &fields(BOB),
        &[("attachment", "plan.txt", "text/plain", b"Session plan\r\n")],
    );
    assert_eq!(sent.status, 303, "{}", sent.text());
    let sent_path = sent.location();
    assert!(sent_path.starts_with("/portal/inbox/sent/"), "{sent_path}");
    // At Bob's: first the dispatched notification (once), then the reply, both opening with openssl.
    let mut dispatched = 0;
    let reply_at_bob = loop {
        let next = next_at_bob(dir, &at_bob);
        if is_dispatched(&next) {
            dispatched += 1;
            continue;
        }
        break next;
    };
    assert_eq!(
        dispatched, 1,
        "one dispatched notification for two openings"
    );
    assert!(reply_at_bob.contains("Thank you, Bob."), "{reply_at_bob}");
    // Threaded for Bob's mail program: it answers his message.
    assert!(
        reply_at_bob.contains("In-Reply-To: <inbox-1@other.test>\r\n")
            && reply_at_bob.contains("References: <inbox-1@other.test>\r\n"),
        "{reply_at_bob}"
    );
    assert!(
        reply_at_bob.contains("filename=\"plan.txt\""),
        "{reply_at_bob}"
    );
    let sent_page = jane.get(&sent_path).text();
    assert!(
        sent_page.contains(BOB) && sent_page.contains("plan.txt"),
        "{sent_page}"
    );
    assert!(
        sent_page.contains("sent (waiting") || sent_page.contains("queued"),
        "a status is shown: {sent_page}"
    );
    assert_eq!(mallory.get(&sent_path).status, 404);
    let sent_list = jane
        .get(&format!("/portal/inbox?address={}&box=sent", encode(JANE)))
        .text();
    assert!(
        sent_list.contains("Re: Shared client &lt;summary&gt;"),
        "{sent_list}"
    );

    // A document as an XDM package: it unpacks at Bob's with the document inside.
    let mut xdm_fields = fields(BOB);
    xdm_fields[3].1 = "Summary as XDM".into();
    xdm_fields.push(("xdm", "1".to_string()));
    let sent = send(
        &mut jane,
        &xdm_fields,
        &[("attachment", "summary.xml", "text/xml", &cda)],
    );
    assert_eq!(sent.status, 303, "{}", sent.text());
    let opened = loop {
        let sealed = at_bob
            .recv_timeout(Duration::from_secs(60))
            .expect("the XDM message");
        let opened = open_at_bob(dir, &sealed);
        if !is_dispatched(&String::from_utf8_lossy(&opened)) {
            break opened;
        }
    };
    let outer = Entity::parse(&opened).unwrap();
    let entity = if outer.content_type().is("message/rfc822") {
        Entity::parse(outer.body()).unwrap()
    } else {
        outer
    };
    let zip = entity
        .parts()
        .unwrap()
        .into_iter()
        .find(|p| p.content_type().is("application/zip"))
        .expect("a zip part")
        .decoded_body()
        .unwrap();
    let package = direct::xdm::unpack(&zip, direct::xdm::Limits::default()).unwrap();
    assert_eq!(package.submission_sets[0].documents[0].content, cda);

    // Forward to Mallory (a local address): she gets it with the attachments; Jane's box stays hers.
    let form = jane
        .get(&format!("/portal/inbox/compose?forward={message_id}"))
        .text();
    assert!(
        form.contains("Fwd: Shared client") && form.contains("summary.xml"),
        "{form}"
    );
    let mut forward = fields(MALLORY);
    forward[3].1 = "Fwd: Shared client".into();
    forward[5].1 = hidden(&form, "forward");
    assert_eq!(forward[5].1, message_id);
    let sent = send(&mut jane, &forward, &[]);
    assert_eq!(sent.status, 303, "{}", sent.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let hers = loop {
        let page = mallory.get("/portal/inbox").text();
        if page.contains("Fwd: Shared client") || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(hers.contains("Fwd: Shared client"), "{hers}");
    let hers_path = link(&hers, "/portal/inbox/messages/");
    let forwarded = mallory.get(&hers_path).text();
    assert!(
        forwarded.contains("summary.xml") && forwarded.contains("note.html"),
        "{forwarded}"
    );
    assert_eq!(
        jane.get(&hers_path).status,
        404,
        "Mallory's mail is not Jane's"
    );
    // Mallory opened it: Jane's sent message moves to dispatched (the notification came back).
    let forward_path = sent.location();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = jane.get(&forward_path).text();
        if page.contains("dispatched (opened by the recipient)") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never dispatched: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The address book: search by specialty, city, name; a choice fills the To field.
    let book = jane
        .get("/portal/inbox/directory?specialty=family+therapy")
        .text();
    assert!(
        book.contains("Jane Doe") && book.contains("Hope Family Therapy"),
        "{book}"
    );
    assert!(!book.contains("Bob Builder"), "{book}");
    let book = jane.get("/portal/inbox/directory?city=new+haven").text();
    assert!(
        book.contains("Bob Builder") && book.contains("Other Hospital"),
        "{book}"
    );
    // The row's "Write to" link (not the navigation's "Write a message").
    let at = book.find("&amp;to=").expect("a Write to link");
    let start = book[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let write = book[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let form = jane.get(&write).text();
    assert!(
        form.contains(&format!("name=\"to\" value=\"{BOB}\"")),
        "{form}"
    );
    assert!(jane
        .get("/portal/inbox/directory?name=zzzz")
        .text()
        .contains("No provider matches"));
    assert!(jane
        .get("/portal/inbox/directory?organization=hope")
        .text()
        .contains("Jane Doe"));
    assert_eq!(
        jane.get(&format!("/portal/inbox/directory?name={}", "x".repeat(101)))
            .status,
        400
    );
}

#[test]
fn an_account_without_an_address_is_told_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("kek"), Kek::generate_base64().unwrap()).unwrap();
    let config = dir.join("direct.toml");
    std::fs::write(
        &config,
        format!("domains = [\"{DOMAIN}\"]\nkek_file = \"kek\"\n"),
    )
    .unwrap();
    let practice = common::participant(dir, "Solo", "clinic", &[]);
    add_user(dir, "sam", "Sam", &practice);
    let server = serve_direct(dir, &config);
    let mut sam = Browser::new(&server);
    sam.sign_in("sam");
    let page = sam.get("/portal/inbox").text();
    assert!(
        page.contains("Your account has no Direct address yet"),
        "{page}"
    );
    assert!(!sam.get("/portal").text().contains("Secure messages"));
    assert_eq!(sam.get("/portal/inbox/messages/anything").status, 200);
}

/// Break-the-glass: the source of the data is told by Direct too, from the exchange's
/// `notice_address`, in the inbox of its Organization's address; the emergency department, whose
/// own data raises no notice, gets nothing.
#[test]
fn the_source_of_an_emergency_read_is_told_in_its_inbox() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("kek"), Kek::generate_base64().unwrap()).unwrap();
    let config = dir.join("direct.toml");
    let notices = format!("notices@{DOMAIN}");
    let riverside = format!("riverside@{DOMAIN}");
    let county = format!("county@{DOMAIN}");
    std::fs::write(
        &config,
        format!("domains = [\"{DOMAIN}\"]\nkek_file = \"kek\"\nnotice_address = \"{notices}\"\n"),
    )
    .unwrap();
    let source = common::participant(
        dir,
        "Riverside Counseling",
        "clinic",
        &["onboarding", "live"],
    );
    let er = common::participant(
        dir,
        "County Emergency Department",
        "hospital",
        &["onboarding", "live"],
    );
    let operator = common::participant(dir, "The Exchange", "exchange-operator", &[]);
    add_user(dir, "casey", "Casey Counselor", &source);
    add_user(dir, "erin", "Erin Emergency", &er);
    ok(&direct(dir, &config, &["ca", "init", "--domain", DOMAIN]));
    for (address, owner, name, user) in [
        (&notices, &operator, "Exchange notices", None),
        (&riverside, &source, "Riverside Counseling", Some("casey")),
        (&county, &er, "County Emergency Department", Some("erin")),
    ] {
        let mut args = vec![
            "address",
            "add",
            "--address",
            address,
            "--organization",
            owner,
            "--name",
            name,
        ];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        ok(&direct(dir, &config, &args));
    }
    let source_client = common::Client::register(dir, &source);
    let er_client = common::Client::register(dir, &er);
    let server = serve_direct(dir, &config);
    let base = server.base.clone();
    let sending = source_client.token(&server, common::REGISTERED, "TREAT");
    let (status, patient) = common::fhir(
        "POST",
        &format!("{base}/Patient"),
        &sending,
        Some(serde_json::json!({"resourceType": "Patient", "name": [{"family": "Lindqvist"}]})),
    );
    assert_eq!(status, 201, "{patient}");
    let pid = patient["id"].as_str().unwrap().to_string();
    let (status, created) = common::fhir(
        "POST",
        &format!("{base}/Observation"),
        &sending,
        Some(
            serde_json::json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")}}),
        ),
    );
    assert_eq!(status, 201, "{created}");

    let emergency = er_client.token(&server, common::REGISTERED, "ETREAT");
    let (status, read) = common::fhir(
        "GET",
        &format!("{base}/Observation?subject=Patient/{pid}"),
        &emergency,
        None,
    );
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["entry"].as_array().map(Vec::len), Some(1), "{read}");

    // The message arrives through the queue (signed, encrypted, delivered to the local mailbox).
    let mut casey = Browser::new(&server);
    casey.sign_in("casey");
    let subject = "Emergency access to data you sent (break-the-glass)";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let inbox = loop {
        let page = casey.get("/portal/inbox").text();
        if page.contains(subject) || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(inbox.contains(subject), "{inbox}");
    assert!(inbox.contains(&notices), "from the exchange: {inbox}");
    assert!(
        !inbox.contains(&pid),
        "no patient data in the list: {inbox}"
    );
    let message = casey.get(&link(&inbox, "/portal/inbox/messages/")).text();
    assert!(
        message.contains("Emergency access (break-the-glass)"),
        "{message}"
    );
    assert!(message.contains(&format!("Organization/{er}")), "{message}");
    assert!(message.contains(&format!("Patient/{pid}")), "{message}");
    assert!(message.contains("1 Observation"), "{message}");

    // The emergency department read its own nothing: no notice for it.
    let mut erin = Browser::new(&server);
    erin.sign_in("erin");
    let theirs = erin.get("/portal/inbox").text();
    assert!(theirs.contains("No messages yet"), "{theirs}");
}
