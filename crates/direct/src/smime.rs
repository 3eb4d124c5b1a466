//! S/MIME for Direct: sign then encrypt what goes out, decrypt then verify what comes in.
//!
//! Outbound ([`seal`]): the content (a MIME entity, or the whole message wrapped as
//! `message/rfc822` per RFC 5751 §3.1) is canonicalized to CR LF, signed with SHA-256 as a
//! detached `multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256`, and that
//! entity encrypted as CMS EnvelopedData (AES-128-CBC by default, AES-256-CBC) or
//! AuthEnvelopedData (AES-128-GCM, AES-256-GCM) with RSA PKCS#1 v1.5 or RSAES-OAEP key transport
//! (ECDH key agreement for an EC recipient), in an RFC 5322 message whose body is `smime.p7m`.
//!
//! Inbound ([`open`]): parse, decrypt with whichever of the recipient keys the message was
//! encrypted for, verify the detached (or opaque) signature over the exact bytes received, refuse a
//! digest weaker than SHA-256, validate each signer's path with [`trust::Validator`] for the
//! From address, and return the inner message: the wrapped message itself, or the outer
//! headers with the signed entity.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;

use crate::ffi;
use crate::mime::{self, Entity, MimeError};
use crate::trust::{self, TrustError, Usage, Validator};

/// Why a message could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmimeError {
    /// The message's MIME structure is broken.
    #[error("MIME: {0}")]
    Mime(#[from] MimeError),
    /// Not exactly one From field with one plain address.
    #[error("no single usable From address")]
    NoFrom,
    /// A header value to write contains a line break or control character.
    #[error("header {0} has a control character")]
    BadHeader(String),
    /// No recipients to encrypt for.
    #[error("no recipients")]
    NoRecipients,
    /// The message is not `application/pkcs7-mime` enveloped data.
    #[error("not an encrypted S/MIME message (content type {0})")]
    NotEncrypted(String),
    /// The `smime.p7m` body is not CMS.
    #[error("the encrypted body is not readable CMS")]
    BadCms,
    /// None of the keys given is one the message was encrypted for (or it does not decrypt).
    #[error("the message was not encrypted for any of our keys, or does not decrypt")]
    NotForUs,
    /// The decrypted content is not signed.
    #[error("the decrypted content is not signed (content type {0})")]
    NotSigned(String),
    /// The signature does not verify over the content: tampered with, or not a signature.
    #[error("the signature does not verify over the content")]
    BadSignature,
    /// The signature uses a digest weaker than SHA-256.
    #[error("the signature uses a weak digest ({0})")]
    WeakDigest(String),
    /// The signature names no signer certificate this side can use.
    #[error("no signer certificate in the signature")]
    NoSigner,
    /// No signer's certificate is valid for the From address; the first signer's reason.
    #[error("signer not trusted: {0}")]
    Untrusted(#[from] TrustError),
    /// The wrapped message's From is not the outer From.
    #[error("the wrapped message's From does not match the envelope's From")]
    FromMismatch,
    /// OpenSSL failed while building a message.
    #[error("openssl: {0}")]
    Openssl(String),
}

impl From<openssl::error::ErrorStack> for SmimeError {
    fn from(e: openssl::error::ErrorStack) -> SmimeError {
        SmimeError::Openssl(e.to_string())
    }
}

/// The content encryption algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentCipher {
    /// AES-128-CBC, the Applicability Statement's default.
    #[default]
    Aes128Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// AES-128-GCM (CMS AuthEnvelopedData, RFC 5083/5084).
    Aes128Gcm,
    /// AES-256-GCM (CMS AuthEnvelopedData).
    Aes256Gcm,
}

impl ContentCipher {
    fn cipher(self) -> Cipher {
        match self {
            ContentCipher::Aes128Cbc => Cipher::aes_128_cbc(),
            ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
            ContentCipher::Aes128Gcm => Cipher::aes_128_gcm(),
            ContentCipher::Aes256Gcm => Cipher::aes_256_gcm(),
        }
    }

    fn is_aead(self) -> bool {
        matches!(self, ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm)
    }
}

/// How the content key reaches an RSA recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyTransport {
    /// RSA PKCS#1 v1.5.
    #[default]
    RsaPkcs1,
    /// RSAES-OAEP with SHA-256 (where the recipient's policy asks for it).
    RsaOaep,
}

/// How to seal a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SealOptions {
    /// Content encryption.
    pub cipher: ContentCipher,
    /// RSA key transport.
    pub key_transport: KeyTransport,
    /// Wrap the whole message as `message/rfc822` (RFC 5751 §3.1) so its headers are protected.
    pub wrap: bool,
}

/// The signer: certificate, key, and the certificates of its path to include.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    /// The signer's certificate.
    pub cert: &'a X509,
    /// Its private key.
    pub key: &'a PKeyRef<Private>,
    /// Intermediate certificates to carry in the signature.
    pub chain: &'a [X509],
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("subject", &trust::subject_cn(self.cert))
            .finish_non_exhaustive()
    }
}

/// A message to seal.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The sender's Direct address (From).
    pub from: &'a str,
    /// The recipients' addresses (To).
    pub to: &'a [String],
    /// Subject (ASCII; encode others as RFC 2047 words before).
    pub subject: &'a str,
    /// Message-ID, with its angle brackets.
    pub message_id: &'a str,
    /// Date, in RFC 5322 form.
    pub date: &'a str,
    /// Further header fields for the message (e.g. `Disposition-Notification-Options`).
    pub extra_headers: &'a [(String, String)],
    /// The content: a MIME entity, its Content-* headers, a blank line, and its body.
    pub content: &'a [u8],
}

fn header(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), SmimeError> {
    if !mime::is_safe_header_value(value)
        || name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
    {
        return Err(SmimeError::BadHeader(name.to_owned()));
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

fn message_headers(out: &mut Vec<u8>, msg: &Outgoing<'_>) -> Result<(), SmimeError> {
    header(out, "From", msg.from)?;
    header(out, "To", &msg.to.join(", "))?;
    header(out, "Subject", msg.subject)?;
    header(out, "Date", msg.date)?;
    header(out, "Message-ID", msg.message_id)?;
    for (name, value) in msg.extra_headers {
        header(out, name, value)?;
    }
    header(out, "MIME-Version", "1.0")
}

/// Signs `entity` (canonicalized to CR LF first) and returns the `multipart/signed` entity.
pub fn sign(entity: &[u8], signer: &Signer<'_>) -> Result<Vec<u8>, SmimeError> {
    let content = mime::canonical(entity);
    let mut chain = Stack::new()?;
    for c in signer.chain {
        chain.push(c.clone())?;
    }
    let cms = CmsContentInfo::sign(
        Some(signer.cert),
        Some(signer.key),
        Some(&chain),
        Some(content.as_ref()),
        CMSOptions::DETACHED | CMSOptions::BINARY,
    )?;
    let signature = cms.to_der()?;
    let boundary = mime::new_boundary();
    let mut out = Vec::with_capacity(content.len() + signature.len() * 2 + 512);
    header(
        &mut out,
        "Content-Type",
        &format!(
            "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"{boundary}\""
        ),
    )?;
    out.extend_from_slice(b"\r\nThis is an S/MIME signed message.\r\n\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&content);
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
    header(
        &mut out,
        "Content-Type",
        "application/pkcs7-signature; name=smime.p7s",
    )?;
    header(&mut out, "Content-Transfer-Encoding", "base64")?;
    header(
        &mut out,
        "Content-Disposition",
        "attachment; filename=smime.p7s",
    )?;
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&mime::encode_base64_lines(&signature));
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

/// Encrypts `entity` for `recipients` and returns the `application/pkcs7-mime` entity
/// (its headers and base64 body).
pub fn encrypt(
    entity: &[u8],
    recipients: &[X509],
    cipher: ContentCipher,
    key_transport: KeyTransport,
) -> Result<Vec<u8>, SmimeError> {
    if recipients.is_empty() {
        return Err(SmimeError::NoRecipients);
    }
    let content = mime::canonical(entity);
    let cms = match key_transport {
        KeyTransport::RsaOaep => ffi::encrypt_oaep(recipients, &content, cipher.cipher())?,
        KeyTransport::RsaPkcs1 => {
            let mut certs = Stack::new()?;
            for c in recipients {
                certs.push(c.clone())?;
            }
            CmsContentInfo::encrypt(&certs, &content, cipher.cipher(), CMSOptions::BINARY)?
        }
    };
    let der = cms.to_der()?;
    let smime_type = if cipher.is_aead() {
        "authEnveloped-data"
    } else {
        "enveloped-data"
    };
    let mut out = Vec::with_capacity(der.len() * 4 / 3 + der.len() / 38 + 256);
    header(
        &mut out,
        "Content-Type",
        &format!("application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m"),
    )?;
    header(&mut out, "Content-Transfer-Encoding", "base64")?;
    header(
        &mut out,
        "Content-Disposition",
        "attachment; filename=smime.p7m",
    )?;
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&mime::encode_base64_lines(&der));
    Ok(out)
}

/// Signs, encrypts and frames `msg` as a complete RFC 5322 message for `recipients`. The
/// recipients' certificates are the caller's to validate first (with
/// [`Validator::validate_for`] and [`Usage::Encryption`] for each address).
pub fn seal(
    msg: &Outgoing<'_>,
    signer: &Signer<'_>,
    recipients: &[X509],
    options: SealOptions,
) -> Result<Vec<u8>, SmimeError> {
    let content = if options.wrap {
        let mut inner = Vec::with_capacity(msg.content.len() + 512);
        message_headers(&mut inner, msg)?;
        inner.extend_from_slice(msg.content);
        let mut wrapped = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
        wrapped.extend_from_slice(&inner);
        wrapped
    } else {
        msg.content.to_vec()
    };
    let signed = sign(&content, signer)?;
    let encrypted = encrypt(&signed, recipients, options.cipher, options.key_transport)?;
    let mut out = Vec::with_capacity(encrypted.len() + 512);
    message_headers(&mut out, msg)?;
    out.extend_from_slice(&encrypted);
    Ok(out)
}

/// Parses a CMS SignedData (DER) and the certificates it carries. Each distinct certificate is
/// parsed once per process (see [`crate::der`]: OpenSSL 3.0 takes longer to parse a certificate
/// than to verify a signature); a SignedData that is not plain DER is parsed whole.
fn parse_signed(der: &[u8]) -> Result<(CmsContentInfo, Vec<X509>), SmimeError> {
    if let Some(split) = crate::der::split_certificates(der) {
        let cms = CmsContentInfo::from_der(&split.without_certificates)
            .map_err(|_| SmimeError::BadSignature)?;
        let certificates = split
            .certificates
            .iter()
            .map(|c| parsed_certificate(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| SmimeError::BadSignature)?;
        return Ok((cms, certificates));
    }
    let cms = CmsContentInfo::from_der(der).map_err(|_| SmimeError::BadSignature)?;
    let certificates = ffi::certificates(&cms);
    Ok((cms, certificates))
}

/// How many parsed certificates [`parsed_certificate`] keeps; past that it starts again.
const PARSED_CERTIFICATES: usize = 1024;

/// The certificate whose DER is `der`, parsed, from the process's cache of the ones seen. The
/// cache is keyed by the exact bytes, so a certificate is only ever the parse of itself; trust
/// is decided afresh for every message by the validator.
fn parsed_certificate(der: &[u8]) -> Result<X509, openssl::error::ErrorStack> {
    static PARSED: LazyLock<Mutex<HashMap<Vec<u8>, X509>>> = LazyLock::new(Default::default);
    let lock = || {
        PARSED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(cert) = lock().get(der) {
        return Ok(cert.clone());
    }
    let cert = X509::from_der(der)?;
    let mut parsed = lock();
    if parsed.len() >= PARSED_CERTIFICATES {
        parsed.clear();
    }
    parsed.insert(der.to_vec(), cert.clone());
    Ok(cert)
}

/// A message that decrypted, verified and passed its signer's trust checks.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The message as the sender wrote it: the wrapped message, or the outer header fields
    /// (without Content-* and MIME-Version) followed by the signed entity.
    pub message: Vec<u8>,
    /// The From address the signer was bound to.
    pub from: String,
    /// The signer's certificate.
    pub signer: X509,
    /// Whether the message was wrapped (`message/rfc822`).
    pub wrapped: bool,
}

/// A recipient's certificate and private key.
pub type RecipientKey = (X509, PKey<Private>);

fn is_pkcs7_mime(ct: &mime::ContentType) -> bool {
    ct.is("application/pkcs7-mime") || ct.is("application/x-pkcs7-mime")
}

/// The one address of the one From field: a message with two From fields, or a From with two
/// addresses, could show a reader another sender than the one the signature is bound to.
fn single_from(entity: &Entity<'_>) -> Result<String, SmimeError> {
    let mut froms = entity
        .headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("From"));
    match (froms.next(), froms.next()) {
        (Some(from), None) => mime::address_of(&from.value).ok_or(SmimeError::NoFrom),
        _ => Err(SmimeError::NoFrom),
    }
}

/// Decrypts and verifies an inbound message with `keys` (the local recipients' certificates and
/// keys) and `validator` (the trust anchors and CRLs for inbound mail).
pub fn open(
    raw: &[u8],
    keys: &[RecipientKey],
    validator: &Validator<'_>,
) -> Result<Opened, SmimeError> {
    let outer = Entity::parse(raw)?;
    let from = single_from(&outer)?;
    let ct = outer.content_type();
    let smime_type = ct.param("smime-type").map(str::to_ascii_lowercase);
    let enveloped = matches!(
        smime_type.as_deref(),
        None | Some("enveloped-data") | Some("authenveloped-data")
    );
    if !is_pkcs7_mime(&ct) || !enveloped {
        return Err(SmimeError::NotEncrypted(ct.mime_type));
    }
    let der = outer.decoded_body()?;
    let cms = CmsContentInfo::from_der(&der).map_err(|_| SmimeError::BadCms)?;
    // The content is no longer than its ciphertext, which is less than the whole DER.
    let plaintext = keys
        .iter()
        .find_map(|(cert, key)| ffi::decrypt(&cms, key, cert, der.len()).ok())
        .ok_or(SmimeError::NotForUs)?;

    let signed = Entity::parse(&plaintext)?;
    let sct = signed.content_type();
    let (content, signature) = if sct.is("multipart/signed") {
        let parts = signed.parts()?;
        let [content, sig] = parts.as_slice() else {
            return Err(SmimeError::NotSigned(sct.mime_type));
        };
        (mime::canonical(content.raw()), Some(sig.decoded_body()?))
    } else if is_pkcs7_mime(&sct)
        && sct
            .param("smime-type")
            .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"))
    {
        (Cow::Owned(signed.decoded_body()?), None)
    } else {
        return Err(SmimeError::NotSigned(sct.mime_type));
    };

    // Detached: `content` is what was signed; opaque: it is the SignedData, and the content comes
    // out of the verification.
    let ((mut sig_cms, carried), detached) = match signature {
        Some(sig) => (parse_signed(&sig)?, Some(content)),
        None => (parse_signed(&content)?, None),
    };
    let mut carried_stack = Stack::new()?;
    for c in &carried {
        carried_stack.push(c.clone())?;
    }
    // A detached signature's content is in hand already, so only an opaque one is copied out.
    let flags = CMSOptions::NO_SIGNER_CERT_VERIFY | CMSOptions::BINARY;
    let mut verified_content = Vec::new();
    match detached.as_deref() {
        Some(content) => ffi::verify_detached(&sig_cms, &carried_stack, content, flags),
        None => sig_cms.verify(
            Some(&carried_stack),
            None,
            None,
            Some(&mut verified_content),
            flags,
        ),
    }
    .map_err(|_| SmimeError::BadSignature)?;
    if let Some(weak) = ffi::signer_digests(&sig_cms)
        .into_iter()
        .find(|nid| !trust::is_strong_digest(*nid))
    {
        return Err(SmimeError::WeakDigest(
            weak.short_name().unwrap_or("unknown").to_owned(),
        ));
    }
    let signers = ffi::signers(&sig_cms).map_err(|_| SmimeError::NoSigner)?;
    let mut first_error = None;
    let mut trusted = None;
    for signer in signers {
        match validator.validate_for(&signer, &carried, Some(&from), Usage::Signing) {
            Ok(_) => {
                trusted = Some(signer);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let signer = match (trusted, first_error) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(SmimeError::Untrusted(e)),
        (None, None) => return Err(SmimeError::NoSigner),
    };

    let content = detached.unwrap_or(Cow::Owned(verified_content));
    let entity = Entity::parse(&content)?;
    if entity.content_type().is("message/rfc822") {
        let inner = entity.body();
        let inner_from = single_from(&Entity::parse(inner)?)?;
        if !inner_from.eq_ignore_ascii_case(&from) {
            return Err(SmimeError::FromMismatch);
        }
        return Ok(Opened {
            message: inner.to_vec(),
            from,
            signer,
            wrapped: true,
        });
    }
    let mut message = Vec::with_capacity(content.len() + 512);
    for h in outer.headers() {
        let name = h.name.to_ascii_lowercase();
        if name.starts_with("content-") || name == "mime-version" {
            continue;
        }
        message.extend_from_slice(h.name.as_bytes());
        message.extend_from_slice(b": ");
        message.extend_from_slice(h.value.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(&content);
    Ok(Opened {
        message,
        from,
        signer,
        wrapped: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
    use foreign_types::ForeignTypeRef;

    #[test]
    fn signatures_openssl_writes_are_split_so_each_certificate_is_parsed_once() {
        let config = CaConfig {
            domain: "split.test".to_owned(),
            organization: "Split".to_owned(),
            crl_url: None,
            ca_issuers_url: None,
            policy_oids: Vec::new(),
        };
        let validity = Validity::days_from(1_700_000_000, 3650);
        let root = Authority::create_root(
            config,
            ca::generate_key(KeySpec::Rsa(2048)).unwrap(),
            validity,
        )
        .unwrap();
        let key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
        let cert = root
            .issue(&Binding::Address("a@split.test".into()), &key, validity)
            .unwrap();
        let chain = [root.certificate().clone()];
        let signed = sign(
            b"Content-Type: text/plain\r\n\r\nhello\r\n",
            &Signer {
                cert: &cert,
                key: &key,
                chain: &chain,
            },
        )
        .unwrap();
        let entity = Entity::parse(&signed).unwrap();
        let signature = entity.parts().unwrap()[1].decoded_body().unwrap();

        let split = crate::der::split_certificates(&signature).expect("OpenSSL writes DER");
        let mut carried: Vec<Vec<u8>> = split.certificates.iter().map(|c| c.to_vec()).collect();
        let mut expected = vec![cert.to_der().unwrap(), chain[0].to_der().unwrap()];
        carried.sort();
        expected.sort();
        assert_eq!(carried, expected);

        let (cms, certificates) = parse_signed(&signature).unwrap();
        assert!(
            ffi::certificates(&cms).is_empty(),
            "parsed without its certificates"
        );
        let mut parsed: Vec<Vec<u8>> = certificates.iter().map(|c| c.to_der().unwrap()).collect();
        parsed.sort();
        assert_eq!(parsed, expected);
        // The second parse of the same bytes is the first one's certificate.
        let (_, again) = parse_signed(&signature).unwrap();
        let pointers = |certs: &[X509]| {
            let mut p: Vec<usize> = certs.iter().map(|c| c.as_ref().as_ptr() as usize).collect();
            p.sort();
            p
        };
        assert_eq!(pointers(&again), pointers(&certificates));
    }
}
