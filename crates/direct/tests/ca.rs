//! The certificate authority and sealed keys, checked by the `openssl` command line.

mod common;

use common::*;
use direct::ca::{self, Authority, Binding, CaError, KeySpec, Validity};
use direct::keys::{self, Kek, KeyError};

fn text(dir: &Dir, name: &str, cert: &openssl::x509::X509) -> String {
    let path = dir.cert(name, cert);
    let path = path.to_str().expect("utf-8 path");
    String::from_utf8(cli_ok(&["x509", "-noout", "-text", "-in", path], b"")).expect("text")
}

#[test]
fn root_is_a_ca_certificate_for_the_domain() {
    let authority = authority(DOMAIN);
    let dir = Dir::new();
    let t = text(&dir, "root.pem", authority.certificate());
    assert!(t.contains("CN = direct.example.org Direct CA"), "{t}");
    assert!(t.contains("CA:TRUE"), "{t}");
    assert!(t.contains("Certificate Sign, CRL Sign"), "{t}");
    assert!(t.contains("sha256WithRSAEncryption"), "{t}");
    let root = dir.path("root.pem");
    let root = root.to_str().expect("path");
    let out = cli_ok(&["verify", "-CAfile", root, root], b"");
    assert!(String::from_utf8_lossy(&out).contains("OK"));
}

#[test]
fn address_bound_rsa_certificate_has_the_direct_profile() {
    let authority = authority(DOMAIN);
    let jane = party(&authority, "jane@direct.example.org", KeySpec::Rsa(2048));
    let dir = Dir::new();
    let t = text(&dir, "jane.pem", &jane.cert);
    for expected in [
        "email:jane@direct.example.org",
        "Digital Signature, Key Encipherment",
        "CA:FALSE",
        &format!("URI:{CRL_URL}"),
        &format!("CA Issuers - URI:{AIA_URL}"),
        "Policy: 1.3.6.1.4.1.41179.0.1.2",
        "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier",
        "sha256WithRSAEncryption",
        "Public-Key: (2048 bit)",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in\n{t}");
    }
    let root = dir.cert("root.pem", authority.certificate());
    let run = cli(
        &["verify", "-purpose", "smimesign", "-CAfile"],
        &[root, dir.path("jane.pem")],
        b"",
    );
    assert!(run.ok, "{}", run.stderr);
}

#[test]
fn domain_bound_ec_certificate_uses_key_agreement() {
    let authority = authority(DOMAIN);
    let key = ca::generate_key(KeySpec::EcP256).expect("key");
    let cert = authority
        .issue(
            &Binding::Domain(DOMAIN.to_owned()),
            &key,
            Validity::days_from(now(), 30),
        )
        .expect("issue");
    let dir = Dir::new();
    let t = text(&dir, "domain.pem", &cert);
    assert!(t.contains("DNS:direct.example.org"), "{t}");
    assert!(t.contains("Digital Signature, Key Agreement"), "{t}");
    assert!(t.contains("prime256v1"), "{t}");
    // Signed by the RSA root with SHA-256.
    assert!(
        t.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{t}"
    );
}

#[test]
fn serial_numbers_are_random_and_large() {
    let authority = authority(DOMAIN);
    let key = ca::generate_key(KeySpec::EcP256).expect("key");
    let serials: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            authority
                .issue(
                    &Binding::Address(format!("user{i}@direct.example.org")),
                    &key,
                    Validity::days_from(now(), 1),
                )
                .expect("issue")
                .serial_number()
                .to_bn()
                .expect("bn")
                .to_vec()
        })
        .collect();
    for (i, s) in serials.iter().enumerate() {
        assert!(s.len() >= 16, "serial too short: {} bytes", s.len());
        assert!(s.len() <= 20, "serial over 20 bytes");
        assert!(serials[i + 1..].iter().all(|t| t != s), "repeated serial");
    }
}

#[test]
fn the_authority_refuses_what_the_policy_forbids() {
    let authority = authority(DOMAIN);
    let good = ca::generate_key(KeySpec::EcP256).expect("key");
    let weak = ca::generate_key(KeySpec::Rsa(1024)).expect("key");
    let v = Validity::days_from(now(), 30);
    let check =
        |binding: Binding, key: &openssl::pkey::PKey<openssl::pkey::Private>, want: &str| {
            let got = authority.issue(&binding, key, v).expect_err("refused");
            assert!(format!("{got:?}").starts_with(want), "{binding:?}: {got:?}");
        };
    check(
        Binding::Address("jane@elsewhere.example.com".into()),
        &good,
        "OutsideDomain",
    );
    check(
        Binding::Domain("elsewhere.example.com".into()),
        &good,
        "OutsideDomain",
    );
    check(
        Binding::Domain("*.direct.example.org".into()),
        &good,
        "BadDomain",
    );
    check(
        Binding::Address("*@direct.example.org".into()),
        &good,
        "BadAddress",
    );
    check(
        Binding::Address("jane@@direct.example.org".into()),
        &good,
        "BadAddress",
    );
    check(
        Binding::Address("jane\r\n@direct.example.org".into()),
        &good,
        "BadAddress",
    );
    check(
        Binding::Address("jane@direct.example.org".into()),
        &weak,
        "WeakKey",
    );
    let backwards = Validity {
        not_before: now(),
        not_after: now() - 1,
    };
    assert!(matches!(
        authority.issue(&Binding::Domain(DOMAIN.into()), &good, backwards),
        Err(CaError::BadValidity)
    ));
    let mut bad_url = config(DOMAIN);
    bad_url.crl_url = Some("http://x.example.org/a,URI:http://evil".into());
    let other = Authority::from_parts(
        bad_url,
        authority.certificate().clone(),
        authority.key().to_owned_key(),
    )
    .expect("parts");
    assert!(matches!(
        other.issue(&Binding::Domain(DOMAIN.into()), &good, v),
        Err(CaError::BadUrl(_))
    ));
}

trait ToOwnedKey {
    fn to_owned_key(&self) -> openssl::pkey::PKey<openssl::pkey::Private>;
}

impl ToOwnedKey for openssl::pkey::PKeyRef<openssl::pkey::Private> {
    fn to_owned_key(&self) -> openssl::pkey::PKey<openssl::pkey::Private> {
        openssl::pkey::PKey::private_key_from_der(&self.private_key_to_der().expect("der"))
            .expect("key")
    }
}

#[test]
fn from_parts_refuses_a_key_that_is_not_the_roots() {
    let authority = authority(DOMAIN);
    let other = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
    assert!(matches!(
        Authority::from_parts(config(DOMAIN), authority.certificate().clone(), other),
        Err(CaError::NotAuthority(_))
    ));
}

#[test]
fn the_crl_is_signed_and_lists_the_revoked_serials() {
    let authority = authority(DOMAIN);
    let jane = party(&authority, "jane@direct.example.org", KeySpec::Rsa(2048));
    let john = party(&authority, "john@direct.example.org", KeySpec::EcP256);
    let crl = crl(&authority, &[&jane.cert]);
    let dir = Dir::new();
    let root = dir.cert("root.pem", authority.certificate());
    let crl_path = dir.write("crl.pem", &crl.to_pem().expect("pem"));
    dir.write("crl.der", &crl.to_der().expect("der"));

    let run = cli(
        &["crl", "-inform", "DER", "-noout", "-text", "-CAfile"],
        &[root.clone(), "-in".into(), dir.path("crl.der")],
        b"",
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("verify OK"), "{}", run.stderr);
    let t = String::from_utf8_lossy(&run.stdout);
    assert!(t.contains("X509v3 CRL Number"), "{t}");
    let serial = jane
        .cert
        .serial_number()
        .to_bn()
        .expect("bn")
        .to_hex_str()
        .expect("hex")
        .to_string();
    assert!(
        t.replace(':', "")
            .to_uppercase()
            .contains(&serial.to_uppercase()),
        "{t}"
    );

    dir.cert("jane.pem", &jane.cert);
    dir.cert("john.pem", &john.cert);
    let revoked = cli(
        &["verify", "-crl_check", "-CRLfile"],
        &[
            crl_path.clone(),
            "-CAfile".into(),
            root.clone(),
            dir.path("jane.pem"),
        ],
        b"",
    );
    assert!(!revoked.ok);
    assert!(
        String::from_utf8_lossy(&revoked.stdout).contains("revoked")
            || revoked.stderr.contains("revoked"),
        "{}",
        revoked.stderr
    );
    let fine = cli(
        &["verify", "-crl_check", "-CRLfile"],
        &[crl_path, "-CAfile".into(), root, dir.path("john.pem")],
        b"",
    );
    assert!(fine.ok, "{}", fine.stderr);
}

#[test]
fn an_empty_crl_is_valid() {
    let authority = authority(DOMAIN);
    let der = authority.crl(&[], now(), now() + DAY, 7).expect("crl");
    let crl = openssl::x509::X509Crl::from_der(&der).expect("parse");
    assert!(crl.get_revoked().is_none_or(|r| r.is_empty()));
    assert!(crl
        .verify(&authority.certificate().public_key().expect("pub"))
        .expect("verify"));
    assert!(matches!(
        authority.crl(&[], now(), now(), 8),
        Err(CaError::BadValidity)
    ));
}

#[test]
fn sealed_keys_open_only_with_the_same_kek_and_label() {
    let kek = Kek::from_base64(&Kek::generate_base64().expect("kek")).expect("kek");
    let other = Kek::from_bytes(&[7u8; 32]).expect("kek");
    for spec in [KeySpec::Rsa(2048), KeySpec::EcP256] {
        let key = ca::generate_key(spec).expect("key");
        let sealed = keys::seal(&kek, "jane@direct.example.org", &key).expect("seal");
        let der = key.private_key_to_pkcs8().expect("der");
        assert!(
            !sealed.windows(32).any(|w| der.windows(32).any(|d| d == w)),
            "plaintext key material in the sealed bytes"
        );
        let opened = keys::open(&kek, "jane@direct.example.org", &sealed).expect("open");
        assert!(opened.public_eq(&key));

        assert!(matches!(
            keys::open(&other, "jane@direct.example.org", &sealed),
            Err(KeyError::Unseal)
        ));
        assert!(matches!(
            keys::open(&kek, "john@direct.example.org", &sealed),
            Err(KeyError::Unseal)
        ));
        for i in [0, 5, sealed.len() / 2, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(matches!(
                keys::open(&kek, "jane@direct.example.org", &tampered),
                Err(KeyError::Unseal)
            ));
        }
        assert!(matches!(
            keys::open(&kek, "jane@direct.example.org", &sealed[..10]),
            Err(KeyError::Unseal)
        ));
        assert!(matches!(
            keys::open(&kek, "jane@direct.example.org", b""),
            Err(KeyError::Unseal)
        ));
    }
    assert!(matches!(Kek::from_bytes(&[0u8; 16]), Err(KeyError::BadKek)));
    assert!(matches!(
        Kek::from_base64("not base64!"),
        Err(KeyError::BadKek)
    ));
    assert_eq!(format!("{:?}", other), "Kek(..)");
}
