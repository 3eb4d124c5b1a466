//! The Direct Project Java reference implementation's sample messages (../shared/data/direct).

mod common;

use common::*;
use direct::mime::{self, Entity};
use direct::smime::{self, SmimeError};
use direct::trust::{self, Anchors, TrustError, Validator};
use openssl::cms::CmsContentInfo;
use openssl::pkey::PKey;
use openssl::x509::{X509Crl, X509};

fn samples() -> Option<Vec<(String, Vec<u8>)>> {
    let dir = shared_direct()?.join("ri-agent/org/nhindirect/stagent");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    Some(out)
}

/// Walks an entity: multiparts into their parts, message/rfc822 into the message, every leaf
/// decoded, every CMS body parsed. Returns the number of leaves.
fn walk(entity: &Entity<'_>, depth: usize) -> Result<usize, String> {
    if depth > 20 {
        return Err("too deep".into());
    }
    let ct = entity.content_type();
    if ct.mime_type.starts_with("multipart/") {
        let mut n = 0;
        for part in entity
            .parts()
            .map_err(|e| format!("{}: {e}", ct.mime_type))?
        {
            n += walk(&part, depth + 1)?;
        }
        return Ok(n);
    }
    let body = entity
        .decoded_body()
        .map_err(|e| format!("{}: {e}", ct.mime_type))?;
    if ct.is("message/rfc822") {
        let inner = Entity::parse(&body).map_err(|e| e.to_string())?;
        return walk(&inner, depth + 1);
    }
    if ct.is("application/pkcs7-mime")
        || ct.is("application/x-pkcs7-mime")
        || ct.is("application/pkcs7-signature")
    {
        CmsContentInfo::from_der(&body).map_err(|e| format!("{}: CMS: {e}", ct.mime_type))?;
    }
    Ok(1)
}

#[test]
fn every_reference_sample_message_parses() {
    let Some(samples) = samples() else {
        return;
    };
    assert!(samples.len() >= 19, "only {} samples", samples.len());
    for (name, bytes) in &samples {
        if name == "msgSig.txt" {
            // A bare base64 SignedData, no headers.
            let der = mime::decode_base64(bytes).expect("base64");
            CmsContentInfo::from_der(&der).expect("signed data");
            continue;
        }
        let entity = Entity::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let leaves = walk(&entity, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(leaves >= 1, "{name}");
        assert!(
            entity.header("From").and_then(mime::address_of).is_some(),
            "{name}: From {:?}",
            entity.header("From")
        );
    }
}

#[test]
fn encrypted_samples_for_others_are_refused_as_not_ours() {
    let authority = authority(DOMAIN);
    let us = party(
        &authority,
        "bob@direct.example.org",
        direct::ca::KeySpec::Rsa(2048),
    );
    let anchors = Anchors::new();
    let crls: Vec<X509Crl> = Vec::new();
    let v = Validator::new(&anchors, &crls, now());
    let mut encrypted = 0;
    let Some(samples) = samples() else {
        return;
    };
    for (name, bytes) in samples {
        let Ok(entity) = Entity::parse(&bytes) else {
            continue;
        };
        let ct = entity.content_type();
        if ct.is("application/pkcs7-mime") || ct.is("application/x-pkcs7-mime") {
            encrypted += 1;
            let got = smime::open(&bytes, &[us.recipient_key()], &v);
            assert_eq!(got.expect_err(&name), SmimeError::NotForUs, "{name}");
        } else {
            assert!(
                matches!(
                    smime::open(&bytes, &[us.recipient_key()], &v),
                    Err(SmimeError::NotEncrypted(_))
                ),
                "{name}"
            );
        }
    }
    assert!(encrypted >= 6, "{encrypted}");
}

/// The reference implementation's message to ryan@securehealthemail.com (wrapped, signed with
/// SHA-256 by gm2552, whose certificate its CA signed with SHA-1): it decrypts with ryan's key
/// and its signature verifies, and then Direct's policy refuses the SHA-1 certificate.
#[test]
fn a_reference_implementation_message_decrypts_verifies_and_meets_the_sha1_rule() {
    let Some(shared) = shared_direct() else {
        return;
    };
    let certs = shared.join("ri-agent/certs");
    let read = |name: &str| std::fs::read(certs.join(name)).expect(name);
    let ryan = X509::from_der(&read("ryan.der")).expect("cert");
    let key = PKey::private_key_from_der(&read("ryanKey.der")).expect("key");
    let mut anchors = Anchors::new();
    anchors
        .add_bundle(&read("secureHealthEmailCACert.der"))
        .expect("anchor");
    let crls: Vec<X509Crl> = Vec::new();
    let v = Validator::new(&anchors, &crls, now());
    for sample in ["EncryptedMessage2.txt", "EncAttachment.txt"] {
        let raw = std::fs::read(shared.join("ri-agent/org/nhindirect/stagent").join(sample))
            .expect("sample");
        let got = smime::open(&raw, &[(ryan.clone(), key.clone())], &v);
        match got {
            Err(SmimeError::Untrusted(TrustError::WeakSignature { subject, algorithm })) => {
                assert_eq!(subject, "Greg Meyer", "{sample}");
                assert_eq!(algorithm, "RSA-SHA1", "{sample}");
            }
            other => panic!("{sample}: {other:?}"),
        }
    }
    // The anchor really is the signer's issuer: with the SHA-1 rule aside, the path exists.
    let signer_issuer = X509::from_der(&read("secureHealthEmailCACert.der")).expect("ca");
    assert_eq!(trust::subject_cn(&signer_issuer), "SimpleInterop");
}
