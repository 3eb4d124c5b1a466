//! The exchange's certificate authority for its Direct domain: a self-signed root, address-bound
//! and domain-bound end-entity certificates, and signed CRLs.
//!
//! The authority keeps no state: which certificates exist and which are revoked is the store's
//! business; [`Authority::crl`] signs whatever list of revocations it is given. Time is always a
//! parameter (Unix seconds), so issuing is reproducible in tests.
//!
//! Profile, following the Direct Applicability Statement 1.2 and the DirectTrust certificate policy:
//!
//! - root: `basicConstraints` critical `CA:TRUE`, `keyUsage` critical `keyCertSign, cRLSign`,
//!   subject key identifier;
//! - end entity: `basicConstraints` critical `CA:FALSE`; `keyUsage` critical
//!   `digitalSignature, keyEncipherment` for RSA (one certificate both signs and receives
//!   RSA key transport) or `digitalSignature, keyAgreement` for ECDSA P-256 (ECDH for CMS
//!   key agreement), or only the signing or only the encryption half ([`KeyUse`]); the Direct address in `subjectAltName` as an `rfc822Name` (address-bound) or
//!   the Direct domain as a `dNSName` (domain-bound); subject and authority key identifiers; the
//!   CRL distribution point and the AIA `caIssuers` URL from the configuration; optional
//!   certificate policy OIDs;
//! - serial numbers are 159 random bits; signatures SHA-256.
//!
//! [`build_certificate`] is the profile without the policy checks, so tests can make the
//! certificates a validator must refuse (SHA-1, small keys, wildcards, expired).

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{
    X509Builder, X509CrlBuilder, X509Extension, X509NameBuilder, X509Ref, X509RevokedBuilder, X509,
};

/// Why the authority refused or failed to issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A Direct address that is not `local@domain` with a plain local part and domain.
    #[error("not a Direct address: {0:?}")]
    BadAddress(String),
    /// A domain that is not a plain DNS name (wildcards included).
    #[error("not a DNS domain name: {0:?}")]
    BadDomain(String),
    /// The address or domain is not in the authority's Direct domain.
    #[error("{name:?} is not in the authority's domain {domain:?}")]
    OutsideDomain {
        /// The name asked for.
        name: String,
        /// The authority's domain.
        domain: String,
    },
    /// An RSA key under 2048 bits, or an EC key not on P-256.
    #[error("key not allowed: {0}")]
    WeakKey(String),
    /// `not_after` is not after `not_before`, or a time out of range.
    #[error("bad validity period")]
    BadValidity,
    /// A configured URL that is not a plain `http://` or `https://` URL.
    #[error("bad URL in the configuration: {0:?}")]
    BadUrl(String),
    /// A configured policy identifier that is not a dotted OID.
    #[error("bad certificate policy OID: {0:?}")]
    BadOid(String),
    /// The certificate given as the authority's is not a CA certificate for its key.
    #[error("the certificate is not this authority's: {0}")]
    NotAuthority(&'static str),
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// Which key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with this many bits.
    Rsa(u32),
    /// ECDSA on NIST P-256.
    EcP256,
}

/// A fresh private key.
pub fn generate_key(spec: KeySpec) -> Result<PKey<Private>, CaError> {
    Ok(match spec {
        KeySpec::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?)?,
        KeySpec::EcP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)?
        }
    })
}

/// The validity period, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second the certificate is valid.
    pub not_before: i64,
    /// Last second the certificate is valid.
    pub not_after: i64,
}

impl Validity {
    /// From `now` for `days` days.
    pub fn days_from(now: i64, days: i64) -> Validity {
        Validity {
            not_before: now,
            not_after: now.saturating_add(days.saturating_mul(86_400)),
        }
    }
}

/// A name a certificate is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Address-bound: `subjectAltName` `rfc822Name`.
    Address(String),
    /// Domain-bound: `subjectAltName` `dNSName`.
    Domain(String),
}

/// The authority's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// The Direct domain, e.g. `direct.example.org`.
    pub domain: String,
    /// The organization named in subjects.
    pub organization: String,
    /// Where the CRL is published (`cRLDistributionPoints`), e.g. `http://hisp.example.org/crl/direct.crl`.
    pub crl_url: Option<String>,
    /// Where the issuing certificate is published (AIA `caIssuers`).
    pub ca_issuers_url: Option<String>,
    /// Certificate policy OIDs to assert in end-entity certificates.
    pub policy_oids: Vec<String>,
}

/// A signature digest for [`build_certificate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256, what the authority uses.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-1: never issued by the authority; here so tests can make what validators refuse.
    Sha1,
}

impl Digest {
    fn md(self) -> MessageDigest {
        match self {
            Digest::Sha256 => MessageDigest::sha256(),
            Digest::Sha384 => MessageDigest::sha384(),
            Digest::Sha1 => MessageDigest::sha1(),
        }
    }
}

/// What an end-entity key is for. Direct allows one certificate for both or one for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyUse {
    /// Signing and encryption: `digitalSignature` with `keyEncipherment` (RSA) or
    /// `keyAgreement` (EC).
    #[default]
    Dual,
    /// Signing only: `digitalSignature`.
    Signing,
    /// Encryption only: `keyEncipherment` (RSA) or `keyAgreement` (EC).
    Encryption,
}

/// What [`build_certificate`] makes: the profile with every choice open.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name.
    pub common_name: String,
    /// Subject organization.
    pub organization: Option<String>,
    /// Names for `subjectAltName`.
    pub bindings: Vec<Binding>,
    /// A CA certificate (root or intermediate) rather than an end entity.
    pub is_ca: bool,
    /// For an end entity, what its key is for.
    pub key_use: KeyUse,
    /// Validity period.
    pub validity: Validity,
    /// The signature digest (SHA-256 in production; SHA-1 only to test its refusal).
    pub digest: Digest,
    /// CRL distribution point URL.
    pub crl_url: Option<String>,
    /// AIA `caIssuers` URL.
    pub ca_issuers_url: Option<String>,
    /// Certificate policy OIDs.
    pub policy_oids: Vec<String>,
}

/// A random positive serial number of 159 bits (RFC 5280 allows 20 octets).
fn random_serial() -> Result<Asn1Integer, CaError> {
    let mut bn = BigNum::new()?;
    bn.rand(159, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

fn check_url(url: &str) -> Result<(), CaError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() < 2048
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"');
    if ok {
        Ok(())
    } else {
        Err(CaError::BadUrl(url.to_owned()))
    }
}

fn check_oid(oid: &str) -> Result<(), CaError> {
    let ok = oid.split('.').count() >= 2
        && oid
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(CaError::BadOid(oid.to_owned()))
    }
}

/// Whether `name` is a plain DNS name: labels of letters, digits and hyphens, at least two labels.
pub fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits a Direct address into local part and domain, or `None` if it is not a plain one.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-/=?^_`{|}~.".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    (local_ok && is_dns_name(domain)).then_some((local, domain))
}

/// Builds and signs a certificate for `subject_key` with `spec`, signed by `issuer` (certificate
/// and key) or self-signed when `issuer` is `None`. No policy is applied: see [`Authority::issue`].
pub fn build_certificate<T: HasPublic>(
    spec: &CertSpec,
    subject_key: &PKeyRef<T>,
    issuer: Option<(&X509Ref, &PKeyRef<Private>)>,
    self_key: Option<&PKeyRef<Private>>,
) -> Result<X509, CaError> {
    if spec.validity.not_after <= spec.validity.not_before {
        return Err(CaError::BadValidity);
    }
    for url in spec.crl_url.iter().chain(spec.ca_issuers_url.iter()) {
        check_url(url)?;
    }
    for oid in &spec.policy_oids {
        check_oid(oid)?;
    }
    let mut name = X509NameBuilder::new()?;
    if let Some(org) = &spec.organization {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, org)?;
    }
    name.append_entry_by_nid(Nid::COMMONNAME, &spec.common_name)?;
    let name = name.build();

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = random_serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    match issuer {
        Some((cert, _)) => b.set_issuer_name(cert.subject_name())?,
        None => b.set_issuer_name(&name)?,
    }
    let not_before =
        Asn1Time::from_unix(spec.validity.not_before).map_err(|_| CaError::BadValidity)?;
    let not_after =
        Asn1Time::from_unix(spec.validity.not_after).map_err(|_| CaError::BadValidity)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.set_pubkey(subject_key)?;

    let mut bc = BasicConstraints::new();
    bc.critical();
    if spec.is_ca {
        bc.ca();
    }
    b.append_extension(bc.build()?)?;

    let mut ku = KeyUsage::new();
    ku.critical();
    if spec.is_ca {
        ku.key_cert_sign().crl_sign();
    } else {
        if spec.key_use != KeyUse::Encryption {
            ku.digital_signature();
        }
        if spec.key_use != KeyUse::Signing {
            if subject_key.id() == Id::EC {
                ku.key_agreement();
            } else {
                ku.key_encipherment();
            }
        }
    }
    b.append_extension(ku.build()?)?;

    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer.map(|i| i.0), None))?;
    b.append_extension(ski)?;
    if let Some((issuer_cert, _)) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(issuer_cert), None))?;
        b.append_extension(aki)?;
    }

    if !spec.bindings.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for binding in &spec.bindings {
            match binding {
                Binding::Address(a) => san.email(a),
                Binding::Domain(d) => san.dns(d),
            };
        }
        let san = san.build(&b.x509v3_context(issuer.map(|i| i.0), None))?;
        b.append_extension(san)?;
    }

    // The conf-string forms below are the only way the crate offers for these extensions; the
    // strings are checked above (no commas or quotes) so a configured value cannot inject more.
    #[allow(deprecated)]
    {
        if let Some(url) = &spec.crl_url {
            let ext = X509Extension::new_nid(
                None,
                None,
                Nid::CRL_DISTRIBUTION_POINTS,
                &format!("URI:{url}"),
            )?;
            b.append_extension(ext)?;
        }
        if let Some(url) = &spec.ca_issuers_url {
            let ext = X509Extension::new_nid(
                None,
                None,
                Nid::INFO_ACCESS,
                &format!("caIssuers;URI:{url}"),
            )?;
            b.append_extension(ext)?;
        }
    }
    if !spec.policy_oids.is_empty() {
        // certificatePolicies has no conf-string form without a config database: DER by hand.
        let mut infos = Vec::new();
        for oid in &spec.policy_oids {
            let obj = Asn1Object::from_str(oid).map_err(|_| CaError::BadOid(oid.clone()))?;
            infos.extend(der_tlv(0x30, &der_tlv(0x06, obj.as_slice())));
        }
        let value = Asn1OctetString::new_from_bytes(&der_tlv(0x30, &infos))?;
        let oid = Asn1Object::from_str("2.5.29.32")?;
        b.append_extension(X509Extension::new_from_der(&oid, false, &value)?)?;
    }

    let signing_key = match (issuer, self_key) {
        (Some((_, key)), _) => key,
        (None, Some(key)) => key,
        (None, None) => {
            return Err(CaError::NotAuthority(
                "a self-signed certificate needs its own private key",
            ))
        }
    };
    b.sign(signing_key, spec.digest.md())?;
    Ok(b.build())
}

/// One DER tag-length-value.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    crate::der::write(&mut out, tag, &[content]);
    out
}

/// One revoked certificate for a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
}

/// The Direct domain's certificate authority: its root certificate and key.
pub struct Authority {
    config: CaConfig,
    cert: X509,
    key: PKey<Private>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("domain", &self.config.domain)
            .finish_non_exhaustive()
    }
}

fn check_key<T: HasPublic>(key: &PKeyRef<T>) -> Result<(), CaError> {
    match key.id() {
        Id::RSA if key.bits() >= 2048 => Ok(()),
        Id::RSA => Err(CaError::WeakKey(format!("RSA {} bits", key.bits()))),
        Id::EC => {
            let curve = key.ec_key()?.group().curve_name();
            if curve == Some(Nid::X9_62_PRIME256V1) {
                Ok(())
            } else {
                Err(CaError::WeakKey("EC key not on P-256".to_owned()))
            }
        }
        _ => Err(CaError::WeakKey("neither RSA nor EC".to_owned())),
    }
}

impl Authority {
    /// Creates the domain's self-signed root with `key`.
    pub fn create_root(
        config: CaConfig,
        key: PKey<Private>,
        validity: Validity,
    ) -> Result<Authority, CaError> {
        if !is_dns_name(&config.domain) {
            return Err(CaError::BadDomain(config.domain.clone()));
        }
        check_key(&key)?;
        let spec = CertSpec {
            common_name: format!("{} Direct CA", config.domain),
            organization: Some(config.organization.clone()),
            bindings: Vec::new(),
            is_ca: true,
            key_use: KeyUse::Dual,
            validity,
            digest: Digest::Sha256,
            crl_url: None,
            ca_issuers_url: None,
            policy_oids: Vec::new(),
        };
        let cert = build_certificate(&spec, &key, None, Some(&key))?;
        Ok(Authority { config, cert, key })
    }

    /// An authority from its stored root certificate and (opened) key.
    pub fn from_parts(
        config: CaConfig,
        cert: X509,
        key: PKey<Private>,
    ) -> Result<Authority, CaError> {
        if !cert.public_key()?.public_eq(&key) {
            return Err(CaError::NotAuthority(
                "the key does not match the certificate",
            ));
        }
        Ok(Authority { config, cert, key })
    }

    /// The root certificate (the trust anchor others import).
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The root's private key.
    pub fn key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// The configuration.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// Issues an end-entity certificate for `key`, bound to an address or the domain itself.
    /// The address's domain (or the domain) must be the authority's; RSA keys need 2048 bits,
    /// EC keys P-256.
    pub fn issue<T: HasPublic>(
        &self,
        binding: &Binding,
        key: &PKeyRef<T>,
        validity: Validity,
    ) -> Result<X509, CaError> {
        self.issue_for(binding, key, validity, KeyUse::Dual)
    }

    /// [`Authority::issue`] for a signing-only or encryption-only certificate.
    pub fn issue_for<T: HasPublic>(
        &self,
        binding: &Binding,
        key: &PKeyRef<T>,
        validity: Validity,
        key_use: KeyUse,
    ) -> Result<X509, CaError> {
        let (cn, domain) = match binding {
            Binding::Address(address) => {
                let (_, domain) =
                    split_address(address).ok_or_else(|| CaError::BadAddress(address.clone()))?;
                (address.clone(), domain)
            }
            Binding::Domain(domain) => {
                if !is_dns_name(domain) {
                    return Err(CaError::BadDomain(domain.clone()));
                }
                (domain.clone(), domain.as_str())
            }
        };
        if !domain.eq_ignore_ascii_case(&self.config.domain) {
            return Err(CaError::OutsideDomain {
                name: cn,
                domain: self.config.domain.clone(),
            });
        }
        check_key(key)?;
        let spec = CertSpec {
            common_name: cn,
            organization: Some(self.config.organization.clone()),
            bindings: vec![binding.clone()],
            is_ca: false,
            key_use,
            validity,
            digest: Digest::Sha256,
            crl_url: self.config.crl_url.clone(),
            ca_issuers_url: self.config.ca_issuers_url.clone(),
            policy_oids: self.config.policy_oids.clone(),
        };
        build_certificate(&spec, key, Some((&self.cert, &self.key)), None)
    }

    /// A signed CRL (DER) listing `revoked`, issued at `this_update`, next due at `next_update`,
    /// with CRL number `number` (which the caller increases with each CRL it publishes).
    pub fn crl(
        &self,
        revoked: &[Revocation],
        this_update: i64,
        next_update: i64,
        number: u64,
    ) -> Result<Vec<u8>, CaError> {
        if next_update <= this_update {
            return Err(CaError::BadValidity);
        }
        let mut b = X509CrlBuilder::new()?;
        b.set_issuer_name(self.cert.subject_name())?;
        let this = Asn1Time::from_unix(this_update).map_err(|_| CaError::BadValidity)?;
        let next = Asn1Time::from_unix(next_update).map_err(|_| CaError::BadValidity)?;
        b.set_last_update(&this)?;
        b.set_next_update(&next)?;
        let ctx_builder = X509Builder::new()?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&ctx_builder.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(aki)?;
        b.append_extension(CrlNumber::new(BigNum::from_dec_str(&number.to_string())?)?.build()?)?;
        for r in revoked {
            let mut entry = X509RevokedBuilder::new()?;
            let serial = BigNum::from_slice(&r.serial)?.to_asn1_integer()?;
            let at = Asn1Time::from_unix(r.revoked_at).map_err(|_| CaError::BadValidity)?;
            entry.set_serial_number(&serial)?;
            entry.set_revocation_date(&at)?;
            b.add_revoked(entry.build())?;
        }
        b.sort()?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(b.build()?.to_der()?)
    }
}
