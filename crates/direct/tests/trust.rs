//! Path validation: the certificate cases of the ONC Edge Testing Tool, made with our CA.

mod common;

use common::*;
use direct::ca::{self, Authority, Binding, CertSpec, Digest, KeySpec, KeyUse, Validity};
use direct::trust::{self, Anchors, Policy, Revocation, TrustError, Usage, Validator};
use openssl::x509::{X509Crl, X509};

const JANE: &str = "jane@direct.example.org";

struct World {
    authority: Authority,
    anchors: Anchors,
    crls: Vec<X509Crl>,
}

fn world() -> World {
    let authority = authority(DOMAIN);
    let mut anchors = Anchors::new();
    anchors.add(authority.certificate().clone());
    let crls = vec![crl(&authority, &[])];
    World {
        authority,
        anchors,
        crls,
    }
}

/// The name of the error's variant, or "ok".
fn outcome(result: Result<Vec<X509>, TrustError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn check(w: &World, cert: &X509, address: Option<&str>, expected: &str) {
    let v = Validator::new(&w.anchors, &w.crls, now());
    let got = v.validate(cert, &[], address);
    let shown = format!("{got:?}");
    assert_eq!(outcome(got), expected, "{shown}");
}

fn rsa(bits: u32) -> openssl::pkey::PKey<openssl::pkey::Private> {
    ca::generate_key(KeySpec::Rsa(bits)).expect("key")
}

#[test]
fn good_certificates_are_bound_to_their_address_or_domain() {
    let w = world();
    let jane = party(&w.authority, JANE, KeySpec::Rsa(2048));
    check(&w, &jane.cert, Some(JANE), "ok");
    check(&w, &jane.cert, Some("JANE@Direct.Example.org"), "ok");
    check(&w, &jane.cert, None, "ok");
    check(&w, &jane.cert, Some("john@direct.example.org"), "NotBound");
    check(
        &w,
        &jane.cert,
        Some("jane@direct.example.org.evil.com"),
        "NotBound",
    );

    let key = ca::generate_key(KeySpec::EcP256).expect("key");
    let domain = w
        .authority
        .issue(
            &Binding::Domain(DOMAIN.into()),
            &key,
            Validity::days_from(now() - DAY, 30),
        )
        .expect("issue");
    check(&w, &domain, Some(JANE), "ok");
    check(&w, &domain, Some("anyone@direct.example.org"), "ok");
    check(&w, &domain, Some("jane@sub.direct.example.org"), "NotBound");
    check(&w, &domain, Some("jane@example.org"), "NotBound");
    check(&w, &domain, Some("not an address"), "NotBound");

    let path = Validator::new(&w.anchors, &w.crls, now())
        .validate(&jane.cert, &[], Some(JANE))
        .expect("valid");
    assert_eq!(path.len(), 2);
    assert_eq!(
        path[1].to_der().ok(),
        w.authority.certificate().to_der().ok()
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let w = world();
    let expired = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address(JANE.into())],
        rsa(2048),
        Digest::Sha256,
        Validity {
            not_before: now() - 30 * DAY,
            not_after: now() - DAY,
        },
    );
    check(&w, &expired.cert, Some(JANE), "Expired");
    let future = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address(JANE.into())],
        rsa(2048),
        Digest::Sha256,
        Validity {
            not_before: now() + DAY,
            not_after: now() + 30 * DAY,
        },
    );
    check(&w, &future.cert, Some(JANE), "NotYetValid");
}

#[test]
fn a_certificate_from_another_trust_anchor_is_refused() {
    let w = world();
    let other = authority(DOMAIN);
    let mallory = party(&other, JANE, KeySpec::Rsa(2048));
    check(&w, &mallory.cert, Some(JANE), "UntrustedIssuer");
    // Carrying the other root along as an "intermediate" does not make it an anchor.
    let v = Validator::new(&w.anchors, &w.crls, now());
    let got = v.validate(&mallory.cert, &[other.certificate().clone()], Some(JANE));
    assert_eq!(outcome(got), "UntrustedIssuer");
    // A self-signed end entity.
    let key = rsa(2048);
    let spec = CertSpec {
        common_name: JANE.into(),
        organization: None,
        bindings: vec![Binding::Address(JANE.into())],
        is_ca: false,
        key_use: KeyUse::Dual,
        validity: Validity::days_from(now() - DAY, 30),
        digest: Digest::Sha256,
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let selfsigned = ca::build_certificate(&spec, &key, None, Some(&key)).expect("build");
    check(&w, &selfsigned, Some(JANE), "UntrustedIssuer");
}

#[test]
fn wildcard_names_are_refused() {
    let w = world();
    let wild = odd_party(
        &w.authority,
        "*.direct.example.org",
        vec![Binding::Domain("*.direct.example.org".into())],
        rsa(2048),
        Digest::Sha256,
        Validity::days_from(now() - DAY, 30),
    );
    check(&w, &wild.cert, Some(JANE), "Wildcard");
    check(&w, &wild.cert, None, "Wildcard");
    let wild_address = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address("*@direct.example.org".into())],
        rsa(2048),
        Digest::Sha256,
        Validity::days_from(now() - DAY, 30),
    );
    check(&w, &wild_address.cert, Some(JANE), "Wildcard");
}

#[test]
fn keys_under_2048_bits_are_refused() {
    let w = world();
    let small = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address(JANE.into())],
        rsa(1024),
        Digest::Sha256,
        Validity::days_from(now() - DAY, 30),
    );
    check(&w, &small.cert, Some(JANE), "WeakKey");
    let err = Validator::new(&w.anchors, &w.crls, now())
        .validate(&small.cert, &[], Some(JANE))
        .expect_err("refused");
    assert!(err.to_string().contains("RSA 1024 bits"), "{err}");
}

#[test]
fn sha1_signatures_are_refused() {
    let w = world();
    let sha1 = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address(JANE.into())],
        rsa(2048),
        Digest::Sha1,
        Validity::days_from(now() - DAY, 30),
    );
    check(&w, &sha1.cert, Some(JANE), "WeakSignature");
    let sha384 = odd_party(
        &w.authority,
        JANE,
        vec![Binding::Address(JANE.into())],
        rsa(2048),
        Digest::Sha384,
        Validity::days_from(now() - DAY, 30),
    );
    check(&w, &sha384.cert, Some(JANE), "ok");
}

#[test]
fn revocation_is_checked_against_the_crls_given() {
    let mut w = world();
    let jane = party(&w.authority, JANE, KeySpec::Rsa(2048));
    let john = party(&w.authority, "john@direct.example.org", KeySpec::EcP256);
    w.crls = vec![crl(&w.authority, &[&jane.cert])];
    check(&w, &jane.cert, Some(JANE), "Revoked");
    check(&w, &john.cert, Some("john@direct.example.org"), "ok");

    // No CRL at all for a certificate that names a distribution point.
    w.crls = Vec::new();
    check(
        &w,
        &john.cert,
        Some("john@direct.example.org"),
        "CrlUnavailable",
    );

    // A CRL past its nextUpdate.
    let der = w
        .authority
        .crl(&[], now() - 10 * DAY, now() - DAY, 2)
        .expect("crl");
    w.crls = vec![X509Crl::from_der(&der).expect("crl")];
    check(
        &w,
        &john.cert,
        Some("john@direct.example.org"),
        "CrlOutOfDate",
    );

    // An old CRL beside the current one: the newest decides, whichever order they come in.
    let old = w
        .authority
        .crl(&[], now() - 10 * DAY, now() - DAY, 2)
        .expect("crl");
    let current = crl(&w.authority, &[&john.cert]).to_der().expect("der");
    let parse = |der: &[u8]| X509Crl::from_der(der).expect("crl");
    for (first, second) in [(&old, &current), (&current, &old)] {
        w.crls = vec![parse(first), parse(second)];
        check(&w, &john.cert, Some("john@direct.example.org"), "Revoked");
    }

    // A CRL with the issuer's name but another key (an impostor CA of the same name).
    let impostor = authority(DOMAIN);
    w.crls = vec![crl(&impostor, &[])];
    check(
        &w,
        &john.cert,
        Some("john@direct.example.org"),
        "CrlBadSignature",
    );
}

#[test]
fn certificates_without_a_distribution_point_need_a_crl_only_when_required() {
    let w = world();
    let key = rsa(2048);
    let spec = CertSpec {
        common_name: JANE.into(),
        organization: None,
        bindings: vec![Binding::Address(JANE.into())],
        is_ca: false,
        key_use: KeyUse::Dual,
        validity: Validity::days_from(now() - DAY, 30),
        digest: Digest::Sha256,
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let cert = ca::build_certificate(
        &spec,
        &key,
        Some((w.authority.certificate(), w.authority.key())),
        None,
    )
    .expect("build");
    let no_crls: Vec<X509Crl> = Vec::new();
    let lenient = Validator::new(&w.anchors, &no_crls, now());
    assert!(lenient.validate(&cert, &[], Some(JANE)).is_ok());
    let strict = Validator::new(&w.anchors, &no_crls, now()).with_policy(Policy {
        revocation: Revocation::Require,
        ..Policy::default()
    });
    assert_eq!(
        outcome(strict.validate(&cert, &[], Some(JANE))),
        "CrlUnavailable"
    );
}

#[test]
fn paths_through_an_intermediate_and_intermediate_anchors() {
    let w = world();
    let ikey = rsa(2048);
    let ispec = CertSpec {
        common_name: "Nutmeg Test Issuing CA".into(),
        organization: Some("Nutmeg Test HISP".into()),
        bindings: Vec::new(),
        is_ca: true,
        key_use: KeyUse::Dual,
        validity: Validity::days_from(now() - DAY, 365),
        digest: Digest::Sha256,
        crl_url: Some(CRL_URL.into()),
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let intermediate = ca::build_certificate(
        &ispec,
        &ikey,
        Some((w.authority.certificate(), w.authority.key())),
        None,
    )
    .expect("intermediate");
    let leaf_key = rsa(2048);
    let lspec = CertSpec {
        common_name: JANE.into(),
        organization: None,
        bindings: vec![Binding::Address(JANE.into())],
        is_ca: false,
        key_use: KeyUse::Dual,
        validity: Validity::days_from(now() - DAY, 30),
        digest: Digest::Sha256,
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let leaf =
        ca::build_certificate(&lspec, &leaf_key, Some((&intermediate, &ikey)), None).expect("leaf");
    let v = Validator::new(&w.anchors, &w.crls, now());
    assert_eq!(
        outcome(v.validate(&leaf, &[], Some(JANE))),
        "UntrustedIssuer"
    );
    let path = v
        .validate(&leaf, std::slice::from_ref(&intermediate), Some(JANE))
        .expect("valid through the intermediate");
    assert_eq!(path.len(), 3);

    // The intermediate is revoked in the root's CRL.
    let revoked = vec![crl(&w.authority, &[&intermediate])];
    let v = Validator::new(&w.anchors, &revoked, now());
    let err = v
        .validate(&leaf, std::slice::from_ref(&intermediate), Some(JANE))
        .expect_err("revoked");
    assert!(
        matches!(err, TrustError::Revoked { ref subject, .. } if subject == "Nutmeg Test Issuing CA"),
        "{err:?}"
    );

    // A trust bundle may hold the intermediate itself as the anchor.
    let mut anchors = Anchors::new();
    anchors.add(intermediate);
    let none: Vec<X509Crl> = Vec::new();
    let v = Validator::new(&anchors, &none, now());
    assert_eq!(v.validate(&leaf, &[], Some(JANE)).expect("valid").len(), 2);
}

#[test]
fn bundles_are_read_from_pem_and_pkcs7() {
    let a = authority(DOMAIN);
    let b = authority("direct.other.example.com");
    let dir = Dir::new();
    let pa = dir.cert("a.pem", a.certificate());
    let pb = dir.cert("b.pem", b.certificate());
    let mut pem = a.certificate().to_pem().expect("pem");
    pem.extend(b.certificate().to_pem().expect("pem"));

    let mut anchors = Anchors::new();
    assert_eq!(anchors.add_bundle(&pem).expect("pem bundle"), 2);
    assert_eq!(anchors.certificates().len(), 2);
    // The same anchors again add nothing.
    anchors.add_bundle(&pem).expect("again");
    assert_eq!(anchors.certificates().len(), 2);

    for outform in ["DER", "PEM"] {
        let run = cli(
            &["crl2pkcs7", "-nocrl", "-outform", outform, "-certfile"],
            &[pa.clone(), "-certfile".into(), pb.clone()],
            b"",
        );
        assert!(run.ok, "{}", run.stderr);
        let certs = trust::read_bundle(&run.stdout).expect("p7b");
        assert_eq!(certs.len(), 2, "{outform}");
    }
    let der = a.certificate().to_der().expect("der");
    assert_eq!(trust::read_bundle(&der).expect("der").len(), 1);

    for junk in [
        &b""[..],
        b"hello",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----\n",
        &der[..40],
    ] {
        assert!(
            matches!(trust::read_bundle(junk), Err(TrustError::BadBundle(_))),
            "{junk:?}"
        );
    }
}

#[test]
fn the_ett_and_reference_implementation_certificates_read() {
    let Some(shared) = shared_direct() else {
        return;
    };
    let ett = std::fs::read(shared.join("ett/certs/testCert.pem")).expect("ett cert");
    assert_eq!(trust::read_bundle(&ett).expect("pem").len(), 1);
    let ett_der = std::fs::read(shared.join("ett/certs/testCert.der")).expect("ett der");
    assert_eq!(trust::read_bundle(&ett_der).expect("der").len(), 1);
    let p7b = std::fs::read(shared.join("ri-agent/certs/cmsRandomizer.p7b")).expect("p7b");
    let got = trust::read_bundle(&p7b);
    // The RI's file is a signed CMS blob; whatever it holds, reading it must not panic.
    let _ = got;
    let mut read = 0;
    for entry in std::fs::read_dir(shared.join("ri-agent/certs")).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "der" || e == "cer") {
            let bytes = std::fs::read(&path).expect("read");
            if let Ok(certs) = trust::read_bundle(&bytes) {
                for c in certs {
                    let _ = trust::bindings(&c);
                    let _ = trust::subject_cn(&c);
                }
                read += 1;
            }
        }
    }
    assert!(read >= 40, "only {read} RI certificates read");
}

#[test]
fn key_usage_decides_what_a_certificate_is_good_for() {
    let w = world();
    let v = Validator::new(&w.anchors, &w.crls, now());
    let valid = Validity::days_from(now() - DAY, 30);
    let issue = |spec: KeySpec, key_use: KeyUse| {
        let key = ca::generate_key(spec).expect("key");
        w.authority
            .issue_for(&Binding::Address(JANE.into()), &key, valid, key_use)
            .expect("issue")
    };
    let usage = |cert: &X509, usage: Usage| outcome(v.validate_for(cert, &[], Some(JANE), usage));
    for spec in [KeySpec::Rsa(2048), KeySpec::EcP256] {
        let dual = issue(spec, KeyUse::Dual);
        let signing = issue(spec, KeyUse::Signing);
        let encryption = issue(spec, KeyUse::Encryption);
        assert_eq!(usage(&dual, Usage::Signing), "ok", "{spec:?}");
        assert_eq!(usage(&dual, Usage::Encryption), "ok", "{spec:?}");
        assert_eq!(usage(&signing, Usage::Signing), "ok", "{spec:?}");
        assert_eq!(usage(&signing, Usage::Encryption), "WrongUsage", "{spec:?}");
        assert_eq!(usage(&encryption, Usage::Encryption), "ok", "{spec:?}");
        assert_eq!(usage(&encryption, Usage::Signing), "WrongUsage", "{spec:?}");
        assert_eq!(usage(&encryption, Usage::Any), "ok", "{spec:?}");
    }
    // An extended key usage without emailProtection (a TLS server certificate) signs no mail.
    let dir = Dir::new();
    let root = dir.cert("root.pem", w.authority.certificate());
    let root_key = dir.key("root.key", &ca_key(&w.authority));
    let key = dir.key(
        "tls.key",
        &ca::generate_key(KeySpec::Rsa(2048)).expect("key"),
    );
    let ext = dir.write(
        "ext.cnf",
        b"subjectAltName=email:jane@direct.example.org\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    let csr = cli(
        &[
            "req",
            "-new",
            "-subj",
            "/CN=jane@direct.example.org",
            "-key",
        ],
        &[key],
        b"",
    );
    assert!(csr.ok, "{}", csr.stderr);
    let csr_path = dir.write("tls.csr", &csr.stdout);
    let cert = cli(
        &["x509", "-req", "-days", "30", "-sha256", "-CA"],
        &[
            root,
            "-CAkey".into(),
            root_key,
            "-extfile".into(),
            ext,
            "-in".into(),
            csr_path,
        ],
        b"",
    );
    assert!(cert.ok, "{}", cert.stderr);
    let tls = X509::from_pem(&cert.stdout).expect("pem");
    let none: Vec<X509Crl> = Vec::new();
    let v = Validator::new(&w.anchors, &none, now());
    assert_eq!(
        outcome(v.validate_for(&tls, &[], Some(JANE), Usage::Signing)),
        "WrongUsage"
    );
    assert_eq!(
        outcome(v.validate_for(&tls, &[], Some(JANE), Usage::Any)),
        "ok"
    );
}

fn ca_key(authority: &Authority) -> openssl::pkey::PKey<openssl::pkey::Private> {
    openssl::pkey::PKey::private_key_from_der(&authority.key().private_key_to_der().expect("der"))
        .expect("key")
}
