//! `nutmeg admin direct` and `nutmeg serve --direct-config --smtp` through the binary: the
//! operator creates the domain's CA, issues an address to a Practitioner of the registry (and is
//! refused one for nobody, or twice), trusts another HISP's CA, and a message built by the
//! `openssl cms` command line and sent with `swaks` is accepted; after the address is revoked,
//! mail to it is refused at RCPT; the CRL lists the revoked certificate.

mod common;

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::Command;

use common::{nutmeg, Server};
use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;

const JANE: &str = "jane@direct.nutmeg.test";
const BOB: &str = "bob@other.test";

fn run(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    nutmeg()
        .arg("--data-dir")
        .arg(dir)
        .arg("--direct-config")
        .arg(config)
        .args(["--log", "warn"])
        .args(args)
        .output()
        .expect("run nutmeg")
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

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn swaks(port: u16, to: &str, message: &Path) -> Option<String> {
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            BOB,
            "--to",
            to,
        ])
        .arg("--data")
        .arg(message)
        .output();
    match out {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(_) => {
            eprintln!("SKIPPED: swaks is not installed");
            None
        }
    }
}

#[test]
fn operators_issue_and_revoke_addresses_and_the_binary_serves_smtp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("kek"), Kek::generate_base64().unwrap()).unwrap();
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("direct.toml");
    std::fs::write(
        &config,
        "domains = [\"direct.nutmeg.test\"]\nhostname = \"hisp.nutmeg.test\"\nkek_file = \"kek\"\n",
    )
    .unwrap();

    // Without the configuration: refused.
    let out = common::admin(dir, &["direct", "address", "list"]);
    assert_eq!(out.status.code(), Some(1));

    ok(&run(
        dir,
        &config,
        &[
            "admin",
            "direct",
            "ca",
            "init",
            "--domain",
            "direct.nutmeg.test",
        ],
    ));
    let again = run(
        dir,
        &config,
        &[
            "admin",
            "direct",
            "ca",
            "init",
            "--domain",
            "direct.nutmeg.test",
        ],
    );
    assert_eq!(again.status.code(), Some(1), "one CA per domain");
    let elsewhere = run(
        dir,
        &config,
        &["admin", "direct", "ca", "init", "--domain", "other.test"],
    );
    assert_eq!(elsewhere.status.code(), Some(1), "not a local domain");

    // The registry has Practitioner/prac-1.
    common::import(
        dir,
        "prac.json",
        r#"{"resourceType":"Practitioner","id":"prac-1","name":[{"family":"Doe","given":["Jane"]}]}"#,
    );
    let add = |who: &str| {
        run(
            dir,
            &config,
            &[
                "admin",
                "direct",
                "address",
                "add",
                "--address",
                JANE,
                "--practitioner",
                who,
                "--name",
                "Jane Doe",
                "--json",
            ],
        )
    };
    assert_eq!(add("nobody").status.code(), Some(1), "not in the registry");
    let issued: serde_json::Value = serde_json::from_str(&ok(&add("prac-1"))).unwrap();
    assert_eq!(add("prac-1").status.code(), Some(1), "issued once");
    assert_eq!(issued["owner"], "Practitioner/prac-1");
    let jane_cert = issued["certificate"].as_str().unwrap().to_string();
    std::fs::write(dir.join("jane.pem"), &jane_cert).unwrap();
    let list = ok(&run(
        dir,
        &config,
        &["admin", "direct", "address", "list", "--json"],
    ));
    assert!(list.contains(JANE) && list.contains("\"active\""), "{list}");

    // Bob's HISP and its CA, trusted for the domain.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let bob_ca = Authority::create_root(
        CaConfig {
            domain: "other.test".into(),
            organization: "Other".into(),
            crl_url: None,
            ca_issuers_url: None,
            policy_oids: Vec::new(),
        },
        ca::generate_key(KeySpec::Rsa(2048)).unwrap(),
        Validity::days_from(now - 86_400, 365),
    )
    .unwrap();
    let bob_key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let bob = bob_ca
        .issue(
            &Binding::Address(BOB.into()),
            &bob_key,
            Validity::days_from(now - 86_400, 365),
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
    let anchors = ok(&run(
        dir,
        &config,
        &[
            "admin",
            "direct",
            "anchor",
            "add",
            "--domain",
            "direct.nutmeg.test",
            "--direction",
            "both",
            dir.join("bobca.pem").to_str().unwrap(),
        ],
    ));
    assert!(anchors.starts_with("2 anchors added"), "{anchors}");

    // The server with its SMTP listener.
    let _server = Server::start(
        dir,
        &[
            "--direct-config",
            config.to_str().unwrap(),
            "--smtp",
            &format!("127.0.0.1:{port}"),
        ],
    );
    std::fs::write(
        dir.join("content.eml"),
        "Content-Type: text/plain\r\n\r\nHello Jane\r\n",
    )
    .unwrap();
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
    std::fs::write(dir.join("signed.eml"), signed).unwrap();
    let mut message = b"Message-ID: <admin-1@other.test>\r\n".to_vec();
    message.extend(openssl(&[
        "cms",
        "-encrypt",
        "-aes128",
        "-from",
        BOB,
        "-to",
        JANE,
        "-subject",
        "Hi",
        "-in",
        &p("signed.eml"),
        &p("jane.pem"),
    ]));
    std::fs::write(dir.join("message.eml"), message).unwrap();
    let Some(transcript) = swaks(port, JANE, &dir.join("message.eml")) else {
        return;
    };
    assert!(
        transcript.contains("<-  250 2.0.0 Message accepted"),
        "{transcript}"
    );

    // Revoked: refused at RCPT; the CRL lists its certificate.
    let revoked = ok(&run(
        dir,
        &config,
        &["admin", "direct", "address", "revoke", JANE],
    ));
    assert!(revoked.contains("revoked"));
    let transcript = swaks(port, JANE, &dir.join("message.eml")).unwrap();
    assert!(transcript.contains("<** 550 5.1.1"), "{transcript}");
    ok(&run(
        dir,
        &config,
        &[
            "admin",
            "direct",
            "crl",
            "--domain",
            "direct.nutmeg.test",
            "--out",
            &p("domain.crl"),
        ],
    ));
    let crl = String::from_utf8(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("domain.crl"),
        "-noout",
        "-text",
    ]))
    .unwrap();
    let serial = String::from_utf8(openssl(&[
        "x509",
        "-in",
        &p("jane.pem"),
        "-noout",
        "-serial",
    ]))
    .unwrap();
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_uppercase();
    assert!(
        crl.to_ascii_uppercase().contains(&serial),
        "{crl} lacks {serial}"
    );
}

/// An applicant on the secure-messaging path waits for their Direct address; issuing it to their
/// participant records the step (by `nutmeg admin direct`), and only when it is the next one.
#[test]
fn issuing_an_applicants_address_moves_their_application_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("kek"), Kek::generate_base64().unwrap()).unwrap();
    let config = dir.join("direct.toml");
    std::fs::write(
        &config,
        "domains = [\"direct.nutmeg.test\"]\nhostname = \"hisp.nutmeg.test\"\nkek_file = \"kek\"\n",
    )
    .unwrap();
    ok(&run(
        dir,
        &config,
        &[
            "admin",
            "direct",
            "ca",
            "init",
            "--domain",
            "direct.nutmeg.test",
        ],
    ));
    let json = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_str(&ok(out)).expect("JSON")
    };
    let mut add = vec!["admin", "application", "add", "--json"];
    add.extend_from_slice(common::SAM_LEE_APPLICATION);
    let applied = json(&run(dir, &config, &add));
    let id = applied["id"].as_str().unwrap().to_string();
    let participant = applied["participant"].as_str().unwrap().to_string();
    assert_eq!(applied["path"], "secure-messaging");
    let issue = |local: &str| {
        json(&run(
            dir,
            &config,
            &[
                "admin",
                "direct",
                "address",
                "add",
                "--address",
                &format!("{local}@direct.nutmeg.test"),
                "--organization",
                &participant,
                "--name",
                "Sam Lee",
                "--json",
            ],
        ))
    };
    let done = |step: &str| -> Option<String> {
        let shown = json(&run(
            dir,
            &config,
            &["admin", "application", "show", &id, "--json"],
        ));
        shown["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .map(|s| s["by"].as_str().unwrap_or_default().to_string())
    };

    // Too early (the package is not sent yet): the address is issued, the checklist waits.
    let early = issue("sam.early");
    assert_eq!(early["applications"], serde_json::json!([]));
    assert_eq!(done("direct-address-issued"), None);

    for step in ["package-sent", "agreements-signed"] {
        json(&run(
            dir,
            &config,
            &["admin", "application", "step", &id, step, "--json"],
        ));
    }
    let issued = issue("sam.lee");
    assert_eq!(issued["applications"], serde_json::json!([id.clone()]));
    assert_eq!(
        done("direct-address-issued").as_deref(),
        Some("nutmeg admin direct")
    );
    // Past it: another address moves nothing.
    assert_eq!(issue("sam.second")["applications"], serde_json::json!([]));
}
