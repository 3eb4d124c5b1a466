//! Trust anchors, trust bundles and the path validation of a Direct certificate.
//!
//! [`Validator::validate`] decides whether a signer's or recipient's certificate may be used for
//! an address, and says why not with a [`TrustError`]:
//!
//! 1. policy on the certificate itself: no wildcard names, an RSA key of at least 2048 bits (EC:
//!    P-256 or larger), a signature with SHA-256 or stronger (SHA-1 and MD5 refused; RSASSA-PSS,
//!    whose digest is in its parameters, is not read yet and so refused too), a key usage
//!    that allows the use asked for ([`Usage`]);
//! 2. the address binding: address-bound to exactly that address (`rfc822Name`), or domain-bound
//!    to its domain (`dNSName`); compared without regard to ASCII case;
//! 3. a path to one of the anchors (OpenSSL builds and checks it at the caller's `now`:
//!    signatures, validity, CA constraints); the same key and signature policy on every
//!    certificate of the path (the anchor's own self-signature excepted);
//! 4. revocation by the CRLs the caller supplies (fetching them is not this module's job): a
//!    certificate that names a CRL distribution point needs a current CRL from its issuer, signed
//!    by that issuer (or, with [`Revocation::Require`], every certificate of the path does).

use std::cmp::Ordering;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::Pkcs7;
use openssl::pkey::Id;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{CrlStatus, X509Crl, X509Ref, X509StoreContext, X509};

/// Why a certificate is not good for the use asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// A certificate of the path has expired.
    #[error("certificate {subject:?} has expired")]
    Expired {
        /// The subject's common name.
        subject: String,
    },
    /// A certificate of the path is not valid yet.
    #[error("certificate {subject:?} is not valid yet")]
    NotYetValid {
        /// The subject's common name.
        subject: String,
    },
    /// No path from the certificate to any trust anchor.
    #[error("certificate {subject:?} does not chain to a trust anchor")]
    UntrustedIssuer {
        /// The subject's common name of the certificate whose issuer was not found.
        subject: String,
    },
    /// A signature in the path does not verify.
    #[error("the signature on certificate {subject:?} does not verify")]
    BadSignature {
        /// The subject's common name.
        subject: String,
    },
    /// The certificate is listed as revoked in its issuer's CRL.
    #[error("certificate {subject:?} (serial {serial}) is revoked")]
    Revoked {
        /// The subject's common name.
        subject: String,
        /// The serial number in hexadecimal.
        serial: String,
    },
    /// A CRL is needed for the certificate and none from its issuer was supplied.
    #[error("no CRL from the issuer of {subject:?}")]
    CrlUnavailable {
        /// The subject's common name.
        subject: String,
    },
    /// The issuer's CRL is past its nextUpdate (or not yet issued at `now`).
    #[error("the CRL for {subject:?} is out of date")]
    CrlOutOfDate {
        /// The subject's common name.
        subject: String,
    },
    /// A CRL with the issuer's name is not signed by the issuer.
    #[error("the CRL for {subject:?} is not signed by its issuer")]
    CrlBadSignature {
        /// The subject's common name.
        subject: String,
    },
    /// An RSA key under the minimum (or an EC key under 256 bits, or another key type).
    #[error("certificate {subject:?} has a weak key: {key}")]
    WeakKey {
        /// The subject's common name.
        subject: String,
        /// The key, e.g. `RSA 1024 bits`.
        key: String,
    },
    /// Signed with a digest weaker than SHA-256.
    #[error("certificate {subject:?} is signed with {algorithm}, weaker than SHA-256")]
    WeakSignature {
        /// The subject's common name.
        subject: String,
        /// The signature algorithm's short name.
        algorithm: String,
    },
    /// A wildcard in a subject name or subject alternative name.
    #[error("certificate {subject:?} has a wildcard name {name:?}")]
    Wildcard {
        /// The subject's common name.
        subject: String,
        /// The wildcard name.
        name: String,
    },
    /// The certificate is not bound to the address (neither the address nor its domain).
    #[error("certificate {subject:?} is not bound to {address:?}")]
    NotBound {
        /// The subject's common name.
        subject: String,
        /// The address asked for.
        address: String,
    },
    /// The certificate's key usage or extended key usage does not allow the use asked for.
    #[error("certificate {subject:?} may not be used for {usage}")]
    WrongUsage {
        /// The subject's common name.
        subject: String,
        /// The use asked for.
        usage: Usage,
    },
    /// OpenSSL found another problem with the path.
    #[error("certificate {subject:?} is invalid: {reason}")]
    Invalid {
        /// The subject's common name.
        subject: String,
        /// OpenSSL's reason.
        reason: String,
    },
    /// A trust bundle that could not be read.
    #[error("unreadable trust bundle: {0}")]
    BadBundle(String),
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    Openssl(String),
}

impl From<openssl::error::ErrorStack> for TrustError {
    fn from(e: openssl::error::ErrorStack) -> TrustError {
        TrustError::Openssl(e.to_string())
    }
}

/// The common name of a certificate's subject, for messages.
pub fn subject_cn(cert: &X509Ref) -> String {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_else(|| "(no common name)".to_owned())
}

/// A set of trust anchors: for one domain's inbound or outbound mail, or one trust bundle.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    certs: Vec<X509>,
}

impl Anchors {
    /// No anchors.
    pub fn new() -> Anchors {
        Anchors::default()
    }

    /// Adds one anchor (an anchor already present is not added twice).
    pub fn add(&mut self, cert: X509) {
        let der = cert.to_der().ok();
        if der.is_some() && self.certs.iter().any(|c| c.to_der().ok() == der) {
            return;
        }
        self.certs.push(cert);
    }

    /// Adds every certificate of a bundle: PEM certificates, a PEM or DER PKCS#7 certs-only
    /// bundle (`.p7b`, `.p7c`), or one DER certificate. Returns how many were read.
    pub fn add_bundle(&mut self, bytes: &[u8]) -> Result<usize, TrustError> {
        let certs = read_bundle(bytes)?;
        let n = certs.len();
        for c in certs {
            self.add(c);
        }
        Ok(n)
    }

    /// The anchors.
    pub fn certificates(&self) -> &[X509] {
        &self.certs
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

fn starts_with_pem(bytes: &[u8], label: &str) -> bool {
    let trimmed = bytes.trim_ascii_start();
    trimmed.starts_with(format!("-----BEGIN {label}-----").as_bytes())
}

/// Reads the certificates of a trust bundle (see [`Anchors::add_bundle`]).
pub fn read_bundle(bytes: &[u8]) -> Result<Vec<X509>, TrustError> {
    if starts_with_pem(bytes, "PKCS7") {
        let p7 = Pkcs7::from_pem(bytes)
            .map_err(|_| TrustError::BadBundle("not a PEM PKCS#7 bundle".to_owned()))?;
        return pkcs7_certificates(&p7);
    }
    if starts_with_pem(bytes, "CERTIFICATE") || starts_with_pem(bytes, "TRUSTED CERTIFICATE") {
        let certs = X509::stack_from_pem(bytes)
            .map_err(|_| TrustError::BadBundle("unreadable PEM certificates".to_owned()))?;
        if certs.is_empty() {
            return Err(TrustError::BadBundle("no certificates".to_owned()));
        }
        return Ok(certs);
    }
    if let Ok(p7) = Pkcs7::from_der(bytes) {
        return pkcs7_certificates(&p7);
    }
    X509::from_der(bytes)
        .map(|c| vec![c])
        .map_err(|_| TrustError::BadBundle("neither PEM, PKCS#7 nor a DER certificate".to_owned()))
}

fn pkcs7_certificates(p7: &Pkcs7) -> Result<Vec<X509>, TrustError> {
    let certs: Vec<X509> = p7
        .signed()
        .and_then(|s| s.certificates())
        .map(|stack| stack.iter().map(|c| c.to_owned()).collect())
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(TrustError::BadBundle(
            "the PKCS#7 bundle holds no certificates".to_owned(),
        ));
    }
    Ok(certs)
}

/// The names a certificate is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    /// `rfc822Name` entries: addresses.
    pub addresses: Vec<String>,
    /// `dNSName` entries: domains.
    pub domains: Vec<String>,
}

/// The subject alternative names of `cert`.
pub fn bindings(cert: &X509Ref) -> Bindings {
    let mut out = Bindings::default();
    if let Some(names) = cert.subject_alt_names() {
        for name in names.iter() {
            if let Some(email) = name.email() {
                out.addresses.push(email.to_owned());
            } else if let Some(dns) = name.dnsname() {
                out.domains.push(dns.to_owned());
            }
        }
    }
    out
}

/// Whether `cert` is bound to `address`: address-bound to exactly it or domain-bound to its
/// domain (ASCII case ignored). Wildcards never match.
pub fn is_bound_to(cert: &X509Ref, address: &str) -> bool {
    let address = address.trim();
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let b = bindings(cert);
    b.addresses
        .iter()
        .any(|a| !a.contains('*') && a.eq_ignore_ascii_case(address))
        || b.domains
            .iter()
            .any(|d| !d.contains('*') && d.eq_ignore_ascii_case(domain))
}

/// What a certificate is to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Signing messages: `keyUsage` (when present) must allow `digitalSignature` or
    /// `nonRepudiation`.
    Signing,
    /// Encrypting to it: `keyUsage` (when present) must allow `keyEncipherment` for an RSA key
    /// (key transport) or `keyAgreement` for an EC key (ECDH).
    Encryption,
    /// No particular use (path and policy only).
    Any,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Usage::Signing => "signing",
            Usage::Encryption => "encryption",
            Usage::Any => "any use",
        })
    }
}

/// How revocation is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revocation {
    /// A certificate that names a CRL distribution point needs a CRL from its issuer; one that
    /// names none is taken as not revocable by CRL.
    #[default]
    WhenListed,
    /// Every certificate of the path but the anchor needs a CRL from its issuer.
    Require,
}

/// What the validator requires beyond a path to an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The smallest RSA modulus accepted, in bits.
    pub min_rsa_bits: u32,
    /// How revocation is checked.
    pub revocation: Revocation,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            min_rsa_bits: 2048,
            revocation: Revocation::WhenListed,
        }
    }
}

/// Validates certificates against anchors and CRLs at one moment.
pub struct Validator<'a> {
    anchors: &'a Anchors,
    crls: &'a [X509Crl],
    now: i64,
    policy: Policy,
}

impl std::fmt::Debug for Validator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("anchors", &self.anchors.certificates().len())
            .field("crls", &self.crls.len())
            .field("now", &self.now)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<'a> Validator<'a> {
    /// A validator with the default [`Policy`].
    pub fn new(anchors: &'a Anchors, crls: &'a [X509Crl], now: i64) -> Validator<'a> {
        Validator {
            anchors,
            crls,
            now,
            policy: Policy::default(),
        }
    }

    /// The same validator with another policy.
    pub fn with_policy(mut self, policy: Policy) -> Validator<'a> {
        self.policy = policy;
        self
    }

    /// Validates `cert` for `address` (or for no particular address with `None`), with
    /// `intermediates` as untrusted helpers for building the path (for instance the certificates
    /// a signature carries). Returns the path, the certificate first and the anchor last.
    pub fn validate(
        &self,
        cert: &X509Ref,
        intermediates: &[X509],
        address: Option<&str>,
    ) -> Result<Vec<X509>, TrustError> {
        self.validate_for(cert, intermediates, address, Usage::Any)
    }

    /// [`Validator::validate`] for a use: a signer's certificate with [`Usage::Signing`], a
    /// recipient's before encrypting to it with [`Usage::Encryption`]. An extended key usage,
    /// when present, must include `emailProtection` (or `anyExtendedKeyUsage`).
    pub fn validate_for(
        &self,
        cert: &X509Ref,
        intermediates: &[X509],
        address: Option<&str>,
        usage: Usage,
    ) -> Result<Vec<X509>, TrustError> {
        let subject = subject_cn(cert);
        check_wildcards(cert, &subject)?;
        check_usage(cert, &subject, usage)?;
        check_key(cert, &subject, self.policy.min_rsa_bits)?;
        check_signature_algorithm(cert, &subject)?;
        if let Some(address) = address {
            if !is_bound_to(cert, address) {
                return Err(TrustError::NotBound {
                    subject,
                    address: address.to_owned(),
                });
            }
        }
        let chain = self.build_path(cert, intermediates)?;
        for (i, c) in chain.iter().enumerate().skip(1) {
            let s = subject_cn(c);
            check_key(c, &s, self.policy.min_rsa_bits)?;
            if i + 1 < chain.len() {
                check_signature_algorithm(c, &s)?;
            }
        }
        for pair in chain.windows(2) {
            if let [c, issuer] = pair {
                self.check_revocation(c, issuer)?;
            }
        }
        Ok(chain)
    }

    fn build_path(&self, cert: &X509Ref, intermediates: &[X509]) -> Result<Vec<X509>, TrustError> {
        let mut store = X509StoreBuilder::new()?;
        for anchor in self.anchors.certificates() {
            store.add_cert(anchor.clone())?;
        }
        let mut param = X509VerifyParam::new()?;
        param.set_time(self.now as _);
        // An anchor may be an intermediate (a trust bundle often holds those), not only a root.
        param.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
        store.set_param(&param)?;
        let store = store.build();
        let mut untrusted = Stack::new()?;
        for c in intermediates {
            untrusted.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        let outcome = ctx.init(&store, cert, &untrusted, |ctx| {
            if ctx.verify_cert()? {
                let chain: Vec<X509> = ctx
                    .chain()
                    .map(|s| s.iter().map(|c| c.to_owned()).collect())
                    .unwrap_or_default();
                Ok(Ok(chain))
            } else {
                let subject = ctx
                    .current_cert()
                    .map(subject_cn)
                    .unwrap_or_else(|| subject_cn(cert));
                Ok(Err((ctx.error(), subject)))
            }
        })?;
        match outcome {
            Ok(chain) if !chain.is_empty() => Ok(chain),
            Ok(_) => Err(TrustError::UntrustedIssuer {
                subject: subject_cn(cert),
            }),
            Err((error, subject)) => Err(match error.as_raw() {
                openssl_sys::X509_V_ERR_CERT_HAS_EXPIRED => TrustError::Expired { subject },
                openssl_sys::X509_V_ERR_CERT_NOT_YET_VALID => TrustError::NotYetValid { subject },
                openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
                | openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                | openssl_sys::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
                | openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
                | openssl_sys::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => {
                    TrustError::UntrustedIssuer { subject }
                }
                openssl_sys::X509_V_ERR_CERT_SIGNATURE_FAILURE => {
                    TrustError::BadSignature { subject }
                }
                _ => TrustError::Invalid {
                    subject,
                    reason: error.error_string().to_owned(),
                },
            }),
        }
    }

    fn check_revocation(&self, cert: &X509, issuer: &X509) -> Result<(), TrustError> {
        let subject = subject_cn(cert);
        let issuer_key = issuer.public_key()?;
        let mut named = false;
        // Of the issuer's CRLs (the caller may hold an old one beside the current one), the
        // most recently issued that the issuer signed.
        let mut crl: Option<&X509Crl> = None;
        for candidate in self.crls {
            let same = candidate
                .issuer_name()
                .try_cmp(issuer.subject_name())
                .map(|o| o == Ordering::Equal)
                .unwrap_or(false);
            if !same {
                continue;
            }
            named = true;
            if !candidate.verify(&issuer_key).unwrap_or(false) {
                continue;
            }
            let newer = crl.is_none_or(|best| candidate.last_update() > best.last_update());
            if newer {
                crl = Some(candidate);
            }
        }
        let Some(crl) = crl else {
            if named {
                return Err(TrustError::CrlBadSignature { subject });
            }
            let listed = cert.crl_distribution_points().is_some();
            return match (self.policy.revocation, listed) {
                (Revocation::WhenListed, false) => Ok(()),
                _ => Err(TrustError::CrlUnavailable { subject }),
            };
        };
        let now = openssl::asn1::Asn1Time::from_unix(self.now as _)?;
        let current = crl.last_update() <= now && crl.next_update().is_none_or(|next| next >= now);
        if !current {
            return Err(TrustError::CrlOutOfDate { subject });
        }
        match crl.get_by_cert(cert) {
            CrlStatus::NotRevoked | CrlStatus::RemoveFromCrl(_) => Ok(()),
            CrlStatus::Revoked(_) => Err(TrustError::Revoked {
                subject,
                serial: cert
                    .serial_number()
                    .to_bn()
                    .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
                    .unwrap_or_default(),
            }),
        }
    }
}

fn check_wildcards(cert: &X509Ref, subject: &str) -> Result<(), TrustError> {
    let b = bindings(cert);
    let cn = subject_cn(cert);
    let names = b.addresses.iter().chain(b.domains.iter()).chain(Some(&cn));
    for name in names {
        if name.contains('*') {
            return Err(TrustError::Wildcard {
                subject: subject.to_owned(),
                name: name.clone(),
            });
        }
    }
    Ok(())
}

fn check_usage(cert: &X509Ref, subject: &str, usage: Usage) -> Result<(), TrustError> {
    use openssl::x509::{X509ExtendedKeyUsage as Xku, X509KeyUsage as Ku};
    if usage == Usage::Any {
        return Ok(());
    }
    let wrong = || TrustError::WrongUsage {
        subject: subject.to_owned(),
        usage,
    };
    if let Some(ku) = cert.key_usage() {
        let allowed = match usage {
            Usage::Signing => ku.intersects(Ku::DIGITAL_SIGNATURE | Ku::NON_REPUDIATION),
            Usage::Encryption => match cert.public_key()?.id() {
                Id::EC => ku.contains(Ku::KEY_AGREEMENT),
                _ => ku.contains(Ku::KEY_ENCIPHERMENT),
            },
            Usage::Any => true,
        };
        if !allowed {
            return Err(wrong());
        }
    }
    if let Some(eku) = cert.extended_key_usage() {
        if !eku.intersects(Xku::SMIME | Xku::ANYEKU) {
            return Err(wrong());
        }
    }
    Ok(())
}

fn check_key(cert: &X509Ref, subject: &str, min_rsa_bits: u32) -> Result<(), TrustError> {
    let key = cert.public_key()?;
    let weak = |key: String| TrustError::WeakKey {
        subject: subject.to_owned(),
        key,
    };
    match key.id() {
        Id::RSA if key.bits() >= min_rsa_bits => Ok(()),
        Id::RSA => Err(weak(format!("RSA {} bits", key.bits()))),
        Id::EC if key.bits() >= 256 => Ok(()),
        Id::EC => Err(weak(format!("EC {} bits", key.bits()))),
        _ => Err(weak("neither RSA nor EC".to_owned())),
    }
}

/// Signature digests accepted: SHA-256 and stronger.
fn strong_digest(nid: Nid) -> bool {
    [
        MessageDigest::sha256().type_(),
        MessageDigest::sha384().type_(),
        MessageDigest::sha512().type_(),
    ]
    .contains(&nid)
}

fn check_signature_algorithm(cert: &X509Ref, subject: &str) -> Result<(), TrustError> {
    let nid = cert.signature_algorithm().object().nid();
    let digest = nid.signature_algorithms().map(|a| a.digest);
    if digest.is_some_and(strong_digest) {
        return Ok(());
    }
    Err(TrustError::WeakSignature {
        subject: subject.to_owned(),
        algorithm: nid
            .short_name()
            .map(str::to_owned)
            .unwrap_or_else(|_| cert.signature_algorithm().object().to_string()),
    })
}

/// Whether a CMS signer's digest algorithm is SHA-256 or stronger.
pub(crate) fn is_strong_digest(nid: Nid) -> bool {
    strong_digest(nid)
}
