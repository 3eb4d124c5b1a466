//! Test scaffolding: a Direct domain's PKI made with the crate's own CA, parties with keys, and
//! the `openssl` command line as the real peer.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use direct::ca::{self, Authority, Binding, CaConfig, CertSpec, Digest, KeySpec, KeyUse, Validity};
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Crl, X509};

pub const DOMAIN: &str = "direct.example.org";
pub const CRL_URL: &str = "http://hisp.example.org/crl/direct.example.org.crl";
pub const AIA_URL: &str = "http://hisp.example.org/ca/direct.example.org.cer";
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds (the CLI checks validity against the wall clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn config(domain: &str) -> CaConfig {
    CaConfig {
        domain: domain.to_owned(),
        organization: "Nutmeg Test HISP".to_owned(),
        crl_url: Some(CRL_URL.to_owned()),
        ca_issuers_url: Some(AIA_URL.to_owned()),
        policy_oids: vec!["1.3.6.1.4.1.41179.0.1.2".to_owned()],
    }
}

pub fn authority(domain: &str) -> Authority {
    let key = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
    Authority::create_root(config(domain), key, Validity::days_from(now() - DAY, 3650))
        .expect("root")
}

/// Someone with a Direct address, a certificate and its key.
pub struct Party {
    pub address: String,
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Party {
    pub fn recipient_key(&self) -> (X509, PKey<Private>) {
        (self.cert.clone(), self.key.clone())
    }
}

pub fn party(authority: &Authority, address: &str, spec: KeySpec) -> Party {
    let key = ca::generate_key(spec).expect("key");
    let cert = authority
        .issue(
            &Binding::Address(address.to_owned()),
            &key,
            Validity::days_from(now() - DAY, 365),
        )
        .expect("issue");
    Party {
        address: address.to_owned(),
        cert,
        key,
    }
}

/// A certificate outside the authority's policy (for the refusal cases), signed by its root.
pub fn odd_party(
    authority: &Authority,
    address: &str,
    bindings: Vec<Binding>,
    key: PKey<Private>,
    digest: Digest,
    validity: Validity,
) -> Party {
    let spec = CertSpec {
        common_name: address.to_owned(),
        organization: Some("Nutmeg Test HISP".to_owned()),
        bindings,
        is_ca: false,
        key_use: KeyUse::Dual,
        validity,
        digest,
        crl_url: Some(CRL_URL.to_owned()),
        ca_issuers_url: Some(AIA_URL.to_owned()),
        policy_oids: Vec::new(),
    };
    let cert = ca::build_certificate(
        &spec,
        &key,
        Some((authority.certificate(), authority.key())),
        None,
    )
    .expect("build");
    Party {
        address: address.to_owned(),
        cert,
        key,
    }
}

pub fn crl(authority: &Authority, revoked: &[&X509]) -> X509Crl {
    let list: Vec<ca::Revocation> = revoked
        .iter()
        .map(|c| ca::Revocation {
            serial: c.serial_number().to_bn().expect("bn").to_vec(),
            revoked_at: now() - 60,
        })
        .collect();
    let der = authority
        .crl(&list, now() - 3600, now() + 7 * DAY, 1)
        .expect("crl");
    X509Crl::from_der(&der).expect("parse crl")
}

/// A temporary directory with helpers to write files for the CLI.
pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
    pub fn cert(&self, name: &str, cert: &X509) -> PathBuf {
        self.write(name, &cert.to_pem().expect("pem"))
    }
    pub fn key(&self, name: &str, key: &PKey<Private>) -> PathBuf {
        self.write(name, &key.private_key_to_pem_pkcs8().expect("pem"))
    }
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read")
    }
}

/// What one run of the `openssl` command printed.
pub struct Run {
    pub ok: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `openssl ARGS` (the real peer), feeding `stdin`.
pub fn cli<P: AsRef<Path>>(args: &[&str], files: &[P], stdin: &[u8]) -> Run {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for f in files {
        cmd.arg(f.as_ref());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command line is needed for these tests (apt-get install openssl)");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("stdin");
    }
    let out = child.wait_with_output().expect("openssl ran");
    Run {
        ok: out.status.success(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl` that must succeed; returns stdout.
pub fn cli_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let run = cli::<&str>(args, &[], stdin);
    assert!(run.ok, "openssl {args:?} failed: {}", run.stderr);
    run.stdout
}

/// `../shared/data/direct` beside the repository (tests only; the product never reads it), or
/// `None`, saying that the test skips, where it is not there.
pub fn shared_direct() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/direct");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/data/direct (the public Direct samples) is not next to the repository");
        None
    }
}
