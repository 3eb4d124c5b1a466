//! S/MIME end to end: our messages through `openssl cms`, `openssl cms` messages through ours,
//! and the refusals a HISP owes the Edge Testing Tool.

mod common;

use common::*;
use direct::ca::{self, Authority, Binding, Digest, KeySpec, Validity};
use direct::smime::{
    self, ContentCipher, KeyTransport, Opened, Outgoing, SealOptions, Signer, SmimeError,
};
use direct::trust::{Anchors, TrustError, Validator};
use openssl::x509::X509Crl;

const JANE: &str = "jane@direct.example.org";
const BOB: &str = "bob@direct.example.org";
const CONTENT: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\nthe referral for a synthetic patient is attached.\r\n";

struct Scene {
    authority: Authority,
    anchors: Anchors,
    crls: Vec<X509Crl>,
    jane: Party,
    bob: Party,
}

fn scene() -> Scene {
    let authority = authority(DOMAIN);
    let mut anchors = Anchors::new();
    anchors.add(authority.certificate().clone());
    let crls = vec![crl(&authority, &[])];
    let jane = party(&authority, JANE, KeySpec::Rsa(2048));
    let bob = party(&authority, BOB, KeySpec::Rsa(2048));
    Scene {
        authority,
        anchors,
        crls,
        jane,
        bob,
    }
}

fn to_bob() -> Vec<String> {
    vec![BOB.to_owned()]
}

fn outgoing<'a>(from: &'a str, to: &'a [String], content: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        from,
        to,
        subject: "Referral",
        message_id: "<1234.synthetic@direct.example.org>",
        date: "Sun, 29 Nov 2026 04:00:00 +0000",
        extra_headers: &[],
        content,
    }
}

fn seal_as(s: &Scene, signer: &Party, from: &str, options: SealOptions) -> Vec<u8> {
    let to = to_bob();
    smime::seal(
        &outgoing(from, &to, CONTENT),
        &Signer {
            cert: &signer.cert,
            key: &signer.key,
            chain: &[],
        },
        std::slice::from_ref(&s.bob.cert),
        options,
    )
    .expect("seal")
}

fn open(s: &Scene, raw: &[u8]) -> Result<Opened, SmimeError> {
    let v = Validator::new(&s.anchors, &s.crls, now());
    smime::open(raw, &[s.bob.recipient_key()], &v)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn all_options() -> Vec<SealOptions> {
    let mut out = Vec::new();
    for cipher in [
        ContentCipher::Aes128Cbc,
        ContentCipher::Aes256Cbc,
        ContentCipher::Aes128Gcm,
        ContentCipher::Aes256Gcm,
    ] {
        for key_transport in [KeyTransport::RsaPkcs1, KeyTransport::RsaOaep] {
            for wrap in [false, true] {
                out.push(SealOptions {
                    cipher,
                    key_transport,
                    wrap,
                });
            }
        }
    }
    out
}

#[test]
fn sealed_messages_open_with_every_option() {
    let s = scene();
    for options in all_options() {
        let sealed = seal_as(&s, &s.jane, JANE, options);
        assert!(contains(
            &sealed,
            b"Content-Type: application/pkcs7-mime; smime-type="
        ));
        assert!(contains(&sealed, b"name=smime.p7m"));
        assert!(!contains(&sealed, b"synthetic patient"), "plaintext leaked");
        let opened = open(&s, &sealed).unwrap_or_else(|e| panic!("{options:?}: {e}"));
        assert_eq!(opened.from, JANE);
        assert_eq!(opened.wrapped, options.wrap);
        assert!(contains(
            &opened.message,
            b"the referral for a synthetic patient"
        ));
        assert!(
            contains(&opened.message, b"Subject: Referral\r\n"),
            "{options:?}"
        );
        assert!(contains(
            &opened.message,
            b"From: jane@direct.example.org\r\n"
        ));
        assert_eq!(
            opened.signer.to_der().ok(),
            s.jane.cert.to_der().ok(),
            "{options:?}"
        );
    }
}

#[test]
fn ec_senders_and_recipients_work_too() {
    let s = scene();
    let alice = party(&s.authority, "alice@direct.example.org", KeySpec::EcP256);
    let carol = party(&s.authority, "carol@direct.example.org", KeySpec::EcP256);
    let to = vec![carol.address.clone()];
    let sealed = smime::seal(
        &outgoing(&alice.address, &to, CONTENT),
        &Signer {
            cert: &alice.cert,
            key: &alice.key,
            chain: &[],
        },
        std::slice::from_ref(&carol.cert),
        SealOptions::default(),
    )
    .expect("seal");
    let v = Validator::new(&s.anchors, &s.crls, now());
    let opened = smime::open(&sealed, &[carol.recipient_key()], &v).expect("open");
    assert_eq!(opened.from, alice.address);
    // OAEP is for RSA recipients: asking for it with an EC recipient is an error, not a panic.
    let err = smime::seal(
        &outgoing(&alice.address, &to, CONTENT),
        &Signer {
            cert: &alice.cert,
            key: &alice.key,
            chain: &[],
        },
        std::slice::from_ref(&carol.cert),
        SealOptions {
            key_transport: KeyTransport::RsaOaep,
            ..SealOptions::default()
        },
    );
    assert!(matches!(err, Err(SmimeError::Openssl(_))), "{err:?}");
}

#[test]
fn several_recipients_each_decrypt() {
    let s = scene();
    let carol = party(&s.authority, "carol@direct.example.org", KeySpec::Rsa(3072));
    let to = vec![BOB.to_owned(), carol.address.clone()];
    let sealed = smime::seal(
        &outgoing(JANE, &to, CONTENT),
        &Signer {
            cert: &s.jane.cert,
            key: &s.jane.key,
            chain: &[],
        },
        &[s.bob.cert.clone(), carol.cert.clone()],
        SealOptions::default(),
    )
    .expect("seal");
    let v = Validator::new(&s.anchors, &s.crls, now());
    assert!(smime::open(&sealed, &[s.bob.recipient_key()], &v).is_ok());
    assert!(smime::open(&sealed, &[carol.recipient_key()], &v).is_ok());
}

#[test]
fn the_openssl_command_line_decrypts_and_verifies_what_we_send() {
    let s = scene();
    let dir = Dir::new();
    let root = dir.cert("root.pem", s.authority.certificate());
    let bob_cert = dir.cert("bob.pem", &s.bob.cert);
    let bob_key = dir.key("bob.key", &s.bob.key);
    for options in all_options() {
        let sealed = seal_as(&s, &s.jane, JANE, options);
        let sealed_path = dir.write("sealed.eml", &sealed);
        let decrypted = cli(
            &["cms", "-decrypt", "-recip"],
            &[
                bob_cert.clone(),
                "-inkey".into(),
                bob_key.clone(),
                "-in".into(),
                sealed_path,
            ],
            b"",
        );
        assert!(decrypted.ok, "{options:?}: {}", decrypted.stderr);
        let signed = String::from_utf8_lossy(&decrypted.stdout).into_owned();
        assert!(signed.contains("multipart/signed"), "{signed}");
        assert!(signed.contains("micalg=sha-256"), "{signed}");
        let signed_path = dir.write("signed.eml", &decrypted.stdout);
        let verified = cli(
            &["cms", "-verify", "-CAfile"],
            &[root.clone(), "-in".into(), signed_path],
            b"",
        );
        assert!(verified.ok, "{options:?}: {}", verified.stderr);
        assert!(verified.stderr.contains("Verification successful"));
        let content = &verified.stdout;
        assert!(contains(content, b"the referral for a synthetic patient"));
        if options.wrap {
            assert!(contains(content, b"Content-Type: message/rfc822"));
            assert!(contains(content, b"Subject: Referral"));
        } else {
            assert_eq!(content.as_slice(), CONTENT);
        }
        // The recipient info says what it should.
        let printed = cli(
            &["cms", "-cmsout", "-print", "-inform", "SMIME", "-in"],
            &[dir.path("sealed.eml")],
            b"",
        );
        assert!(printed.ok, "{}", printed.stderr);
        let printed = String::from_utf8_lossy(&printed.stdout);
        let want_key = match options.key_transport {
            KeyTransport::RsaPkcs1 => "rsaEncryption",
            KeyTransport::RsaOaep => "rsaesOaep",
        };
        assert!(printed.contains(want_key), "{options:?}: {printed}");
        if options.key_transport == KeyTransport::RsaOaep {
            // OAEP with SHA-256 as the hash and in MGF1, not the SHA-1 defaults; the outer
            // structure names no other digest.
            assert!(
                printed.matches("sha256").count() >= 2 && !printed.contains("sha1"),
                "{printed}"
            );
        }
        let want_cipher = match options.cipher {
            ContentCipher::Aes128Cbc => "aes-128-cbc",
            ContentCipher::Aes256Cbc => "aes-256-cbc",
            ContentCipher::Aes128Gcm => "aes-128-gcm",
            ContentCipher::Aes256Gcm => "aes-256-gcm",
        };
        assert!(printed.contains(want_cipher), "{options:?}: {printed}");
    }
}

/// Builds a message with the command line: sign as `signer`, then encrypt to Bob.
fn cli_message(
    dir: &Dir,
    s: &Scene,
    signer: &Party,
    content: &[u8],
    encrypt_args: &[&str],
    digest: &str,
) -> Vec<u8> {
    let content_path = dir.write("content.txt", content);
    let signer_cert = dir.cert("signer.pem", &signer.cert);
    let signer_key = dir.key("signer.key", &signer.key);
    let bob_cert = dir.cert("bob.pem", &s.bob.cert);
    let signed = cli(
        &["cms", "-sign", "-md", digest, "-signer"],
        &[
            signer_cert,
            "-inkey".into(),
            signer_key,
            "-in".into(),
            content_path,
        ],
        b"",
    );
    assert!(signed.ok, "{}", signed.stderr);
    let signed_path = dir.write("signed.eml", &signed.stdout);
    let mut args = vec![
        "cms", "-encrypt", "-from", JANE, "-to", BOB, "-subject", "Referral",
    ];
    args.extend_from_slice(encrypt_args);
    args.push("-in");
    let encrypted = cli(&args, &[signed_path, "-recip".into(), bob_cert], b"");
    assert!(encrypted.ok, "{}", encrypted.stderr);
    encrypted.stdout
}

fn wrapped_content() -> Vec<u8> {
    let mut c = b"Content-Type: message/rfc822\r\n\r\nFrom: jane@direct.example.org\r\nTo: bob@direct.example.org\r\nSubject: Referral\r\nMIME-Version: 1.0\r\n".to_vec();
    c.extend_from_slice(CONTENT);
    c
}

#[test]
fn messages_the_openssl_command_line_builds_are_accepted() {
    let s = scene();
    let dir = Dir::new();
    let cases: &[(&[&str], bool)] = &[
        (&["-aes128"], false),
        (&["-aes128"], true),
        (&["-aes256"], false),
        (&["-aes-256-gcm"], false),
        (&["-aes-128-gcm"], true),
    ];
    for (args, wrap) in cases {
        let content = if *wrap {
            wrapped_content()
        } else {
            CONTENT.to_vec()
        };
        let raw = cli_message(&dir, &s, &s.jane, &content, args, "sha256");
        let opened = open(&s, &raw).unwrap_or_else(|e| panic!("{args:?} wrap {wrap}: {e}"));
        assert_eq!(opened.wrapped, *wrap);
        assert!(contains(
            &opened.message,
            b"the referral for a synthetic patient"
        ));
    }
}

#[test]
fn oaep_and_gcm_messages_from_the_command_line_are_accepted() {
    let s = scene();
    let dir = Dir::new();
    for (cipher, wrap) in [
        ("-aes-256-gcm", false),
        ("-aes-256-gcm", true),
        ("-aes128", false),
    ] {
        let content = if wrap {
            wrapped_content()
        } else {
            CONTENT.to_vec()
        };
        let content_path = dir.write("content.txt", &content);
        let jane_cert = dir.cert("jane.pem", &s.jane.cert);
        let jane_key = dir.key("jane.key", &s.jane.key);
        let bob_cert = dir.cert("bob.pem", &s.bob.cert);
        let signed = cli(
            &["cms", "-sign", "-md", "sha256", "-signer"],
            &[
                jane_cert,
                "-inkey".into(),
                jane_key,
                "-in".into(),
                content_path,
            ],
            b"",
        );
        assert!(signed.ok, "{}", signed.stderr);
        let signed_path = dir.write("signed.eml", &signed.stdout);
        let encrypted = cli(
            &[
                "cms", "-encrypt", cipher, "-from", JANE, "-to", BOB, "-subject", "Referral", "-in",
            ],
            &[
                signed_path,
                "-recip".into(),
                bob_cert,
                "-keyopt".into(),
                "rsa_padding_mode:oaep".into(),
            ],
            b"",
        );
        assert!(encrypted.ok, "{}", encrypted.stderr);
        let opened = open(&s, &encrypted.stdout).unwrap_or_else(|e| panic!("{cipher} {wrap}: {e}"));
        assert_eq!(opened.wrapped, wrap);
        assert!(contains(
            &opened.message,
            b"the referral for a synthetic patient"
        ));
    }
}

fn untrusted(result: Result<Opened, SmimeError>) -> String {
    match result {
        Err(SmimeError::Untrusted(e)) => format!("{e:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        other => format!("not an Untrusted refusal: {other:?}"),
    }
}

#[test]
fn the_edge_testing_tool_certificate_cases_are_refused() {
    let s = scene();
    let valid = Validity::days_from(now() - DAY, 30);
    let rsa = |bits| ca::generate_key(KeySpec::Rsa(bits)).expect("key");
    let address = || vec![Binding::Address(JANE.into())];
    let other_anchor = authority(DOMAIN);
    let revoked = party(&s.authority, JANE, KeySpec::Rsa(2048));
    let cases: Vec<(&str, Party, &str)> = vec![
        (
            "expired",
            odd_party(
                &s.authority,
                JANE,
                address(),
                rsa(2048),
                Digest::Sha256,
                Validity {
                    not_before: now() - 30 * DAY,
                    not_after: now() - DAY,
                },
            ),
            "Expired",
        ),
        (
            "other trust anchor",
            party(&other_anchor, JANE, KeySpec::Rsa(2048)),
            "UntrustedIssuer",
        ),
        (
            "wildcard",
            odd_party(
                &s.authority,
                JANE,
                vec![Binding::Domain("*.direct.example.org".into())],
                rsa(2048),
                Digest::Sha256,
                valid,
            ),
            "Wildcard",
        ),
        (
            "under 2048 bits",
            odd_party(
                &s.authority,
                JANE,
                address(),
                rsa(1024),
                Digest::Sha256,
                valid,
            ),
            "WeakKey",
        ),
        (
            "SHA-1 certificate",
            odd_party(
                &s.authority,
                JANE,
                address(),
                rsa(2048),
                Digest::Sha1,
                valid,
            ),
            "WeakSignature",
        ),
        ("revoked", revoked, "Revoked"),
        (
            "another address",
            party(&s.authority, "john@direct.example.org", KeySpec::Rsa(2048)),
            "NotBound",
        ),
        (
            "encryption-only certificate",
            {
                let key = ca::generate_key(KeySpec::Rsa(2048)).expect("key");
                let cert = s
                    .authority
                    .issue_for(
                        &Binding::Address(JANE.into()),
                        &key,
                        valid,
                        direct::ca::KeyUse::Encryption,
                    )
                    .expect("issue");
                Party {
                    address: JANE.into(),
                    cert,
                    key,
                }
            },
            "WrongUsage",
        ),
    ];
    let mut s = s;
    let revoked_cert = cases[5].1.cert.clone();
    s.crls = vec![crl(&s.authority, &[&revoked_cert])];
    for (name, signer, expected) in &cases {
        let sealed = seal_as(&s, signer, JANE, SealOptions::default());
        assert_eq!(untrusted(open(&s, &sealed)), *expected, "{name}");
    }
    // No CRL to check the signer against.
    s.crls.clear();
    let sealed = seal_as(&s, &s.jane, JANE, SealOptions::default());
    assert_eq!(untrusted(open(&s, &sealed)), "CrlUnavailable");
}

#[test]
fn from_must_match_the_signer() {
    let s = scene();
    // Jane signs, but the message claims to be from Mallory.
    let sealed = seal_as(
        &s,
        &s.jane,
        "mallory@direct.example.org",
        SealOptions::default(),
    );
    assert!(matches!(
        open(&s, &sealed),
        Err(SmimeError::Untrusted(TrustError::NotBound { .. }))
    ));
    let sealed = seal_as(
        &s,
        &s.jane,
        "Jane Doe <JANE@direct.example.org>",
        SealOptions::default(),
    );
    assert_eq!(
        open(&s, &sealed).expect("display name, other case").from,
        "JANE@direct.example.org"
    );

    // Two From fields: which one a reader sees is anyone's guess, so neither is trusted.
    let sealed = seal_as(&s, &s.jane, JANE, SealOptions::default());
    let mut doubled = b"From: mallory@direct.example.org\r\n".to_vec();
    doubled.extend_from_slice(&sealed);
    assert_eq!(
        open(&s, &doubled).expect_err("two From"),
        SmimeError::NoFrom
    );

    // Wrapped: the inner From must be the outer From.
    let mut inner = b"Content-Type: message/rfc822\r\n\r\nFrom: mallory@direct.example.org\r\nTo: bob@direct.example.org\r\nSubject: x\r\n".to_vec();
    inner.extend_from_slice(CONTENT);
    let signed = smime::sign(
        &inner,
        &Signer {
            cert: &s.jane.cert,
            key: &s.jane.key,
            chain: &[],
        },
    )
    .expect("sign");
    let encrypted = smime::encrypt(
        &signed,
        std::slice::from_ref(&s.bob.cert),
        ContentCipher::Aes128Cbc,
        KeyTransport::RsaPkcs1,
    )
    .expect("encrypt");
    let mut raw =
        b"From: jane@direct.example.org\r\nTo: bob@direct.example.org\r\nMIME-Version: 1.0\r\n"
            .to_vec();
    raw.extend_from_slice(&encrypted);
    assert_eq!(
        open(&s, &raw).expect_err("refused"),
        SmimeError::FromMismatch
    );
}

fn frame(encrypted: &[u8]) -> Vec<u8> {
    let mut raw = b"From: jane@direct.example.org\r\nTo: bob@direct.example.org\r\nSubject: Referral\r\nMIME-Version: 1.0\r\n".to_vec();
    raw.extend_from_slice(encrypted);
    raw
}

#[test]
fn a_tampered_body_is_refused() {
    let s = scene();
    let signer = Signer {
        cert: &s.jane.cert,
        key: &s.jane.key,
        chain: &[],
    };
    let signed = smime::sign(CONTENT, &signer).expect("sign");
    let text = String::from_utf8(signed).expect("ascii");
    let tampered = text.replace("synthetic patient", "synthetic patienT");
    assert_ne!(text, tampered);
    for body in [text.as_str(), tampered.as_str()] {
        let encrypted = smime::encrypt(
            body.as_bytes(),
            std::slice::from_ref(&s.bob.cert),
            ContentCipher::Aes128Cbc,
            KeyTransport::RsaPkcs1,
        )
        .expect("encrypt");
        let result = open(&s, &frame(&encrypted));
        if body == text {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert_eq!(result.expect_err("tampered"), SmimeError::BadSignature);
        }
    }
    // A changed byte in the ciphertext does not decrypt (GCM) or does not verify (CBC).
    for cipher in [ContentCipher::Aes128Cbc, ContentCipher::Aes256Gcm] {
        let encrypted = smime::encrypt(
            text.as_bytes(),
            std::slice::from_ref(&s.bob.cert),
            cipher,
            KeyTransport::RsaPkcs1,
        )
        .expect("encrypt");
        let entity = direct::mime::Entity::parse(&encrypted).expect("entity");
        let mut der = entity.decoded_body().expect("der");
        let at = der.len() - 40;
        der[at] ^= 0x55;
        let mut rebuilt = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        rebuilt.extend(direct::mime::encode_base64_lines(&der));
        let err = open(&s, &frame(&rebuilt)).expect_err("refused");
        assert!(
            matches!(
                err,
                SmimeError::NotForUs
                    | SmimeError::BadSignature
                    | SmimeError::Mime(_)
                    | SmimeError::NotSigned(_)
            ),
            "{cipher:?}: {err:?}"
        );
    }
}

#[test]
fn a_sha1_signature_is_refused() {
    let s = scene();
    let dir = Dir::new();
    let raw = cli_message(&dir, &s, &s.jane, CONTENT, &["-aes128"], "sha1");
    assert!(
        matches!(open(&s, &raw), Err(SmimeError::WeakDigest(_))),
        "{:?}",
        open(&s, &raw)
    );
}

#[test]
fn messages_not_for_us_or_not_protected_are_refused() {
    let s = scene();
    let john = party(&s.authority, "john@direct.example.org", KeySpec::Rsa(2048));
    let to = vec![john.address.clone()];
    let for_john = smime::seal(
        &outgoing(JANE, &to, CONTENT),
        &Signer {
            cert: &s.jane.cert,
            key: &s.jane.key,
            chain: &[],
        },
        std::slice::from_ref(&john.cert),
        SealOptions::default(),
    )
    .expect("seal");
    assert_eq!(
        open(&s, &for_john).expect_err("not ours"),
        SmimeError::NotForUs
    );

    let mut plain = frame(b"");
    plain.extend_from_slice(CONTENT);
    assert!(matches!(open(&s, &plain), Err(SmimeError::NotEncrypted(_))));

    let unsigned = smime::encrypt(
        CONTENT,
        std::slice::from_ref(&s.bob.cert),
        ContentCipher::Aes128Cbc,
        KeyTransport::RsaPkcs1,
    )
    .expect("encrypt");
    assert!(matches!(
        open(&s, &frame(&unsigned)),
        Err(SmimeError::NotSigned(_))
    ));

    let garbage = frame(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA$$$$\r\n");
    assert!(matches!(open(&s, &garbage), Err(SmimeError::Mime(_))));
    let not_cms = frame(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n");
    assert_eq!(open(&s, &not_cms).expect_err("not cms"), SmimeError::BadCms);
    let no_from = b"To: bob@direct.example.org\r\n\r\nhi\r\n";
    assert_eq!(open(&s, no_from).expect_err("no from"), SmimeError::NoFrom);
    for junk in [
        &b""[..],
        b"\r\n",
        b"::::",
        b"From: <>\r\n\r\n",
        &[0xff, 0xfe, 0x00, b'\n', b' '],
    ] {
        assert!(open(&s, junk).is_err());
    }
}

#[test]
fn header_injection_is_refused() {
    let s = scene();
    let to = to_bob();
    let mut msg = outgoing(JANE, &to, CONTENT);
    msg.subject = "Hi\r\nBcc: eve@example.com";
    let err = smime::seal(
        &msg,
        &Signer {
            cert: &s.jane.cert,
            key: &s.jane.key,
            chain: &[],
        },
        std::slice::from_ref(&s.bob.cert),
        SealOptions::default(),
    )
    .expect_err("refused");
    assert_eq!(err, SmimeError::BadHeader("Subject".into()));
}

#[test]
fn opaque_signed_messages_from_the_command_line_are_accepted() {
    let s = scene();
    let dir = Dir::new();
    let content = dir.write("content.txt", CONTENT);
    let jane_cert = dir.cert("jane.pem", &s.jane.cert);
    let jane_key = dir.key("jane.key", &s.jane.key);
    let bob_cert = dir.cert("bob.pem", &s.bob.cert);
    let signed = cli(
        &["cms", "-sign", "-nodetach", "-md", "sha256", "-signer"],
        &[jane_cert, "-inkey".into(), jane_key, "-in".into(), content],
        b"",
    );
    assert!(signed.ok, "{}", signed.stderr);
    assert!(contains(&signed.stdout, b"smime-type=signed-data"));
    let signed_path = dir.write("signed.eml", &signed.stdout);
    let encrypted = cli(
        &[
            "cms", "-encrypt", "-aes128", "-from", JANE, "-to", BOB, "-subject", "Referral", "-in",
        ],
        &[signed_path, "-recip".into(), bob_cert],
        b"",
    );
    assert!(encrypted.ok, "{}", encrypted.stderr);
    let opened = open(&s, &encrypted.stdout).expect("opaque signed");
    assert!(contains(
        &opened.message,
        b"the referral for a synthetic patient"
    ));
    assert!(!opened.wrapped);
}
