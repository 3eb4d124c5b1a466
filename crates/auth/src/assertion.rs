//! Verifying a SMART Backend Services client assertion: the `private_key_jwt` a client sends as
//! `client_assertion` to authenticate at the token endpoint (RFC 7523, SMART App Launch 2.x "Backend Services").
//!
//! Only RS384 and ES384 signatures are accepted, with a key of the client's registered JWKS chosen by the header's
//! `kid`. The claims are checked only after the signature: `iss` and `sub` are the client id, `aud` is the token
//! URL, `exp` has not passed and is at most [`MAX_LIFETIME`] ahead, `nbf` and `iat` (when present) are not later
//! than now plus [`CLOCK_SKEW`], and `jti` is present.
//!
//! Keys come only from the registration: `jwk`, `jku`, `x5u` and `x5c` headers are ignored, never fetched or
//! trusted, and a `crit` header is refused.
//!
//! **Replay is the caller's job.** A verified assertion returns its `jti` and `exp`; the caller must record the
//! pair (keyed by client id) in storage that all its processes share, keep it until `exp`, and refuse an
//! assertion whose `jti` it already holds. That storage is I/O, which this crate does not do.
//!
//! Every error's message is fit for an OAuth `invalid_client` `error_description`: it says what was wrong
//! without echoing the assertion, keys or claims (only a short, sanitised `alg` name).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::jwks::{Algorithm, Jwks, KeyMaterial};

/// The `client_assertion_type` a token request must carry with a client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live: `exp` at most this many seconds after now (SMART: five minutes).
pub const MAX_LIFETIME: u64 = 300;

/// How far the client's clock may run ahead of ours for `nbf` and `iat`. `exp` is compared without skew, both
/// ways, so an assertion never lives longer than [`MAX_LIFETIME`] by our clock.
pub const CLOCK_SKEW: u64 = 60;

/// Longer assertions are refused before any decoding; a real one is well under 2 KiB.
const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// The longest `jti` accepted, since the caller stores it.
const MAX_JTI_LEN: usize = 255;

/// What the assertion must match.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The client's id, which must be both `iss` and `sub`.
    pub client_id: &'a str,
    /// The token endpoint's URL, exactly as the exchange advertises it; `aud` must be (or contain) it.
    pub token_url: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
}

/// A verified assertion: what the caller needs to refuse its replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub client_id: String,
    pub jti: String,
    /// Seconds since the Unix epoch; keep the `jti` until then.
    pub expires_at: u64,
    pub algorithm: Algorithm,
}

/// Why an assertion was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AssertionError {
    #[error("the client assertion is not a JWT: {0}")]
    Malformed(&'static str),
    #[error("the client assertion is unsigned (alg none); sign it with RS384 or ES384")]
    Unsigned,
    #[error("the client assertion is signed with {0}; only RS384 and ES384 are accepted")]
    UnsupportedAlgorithm(String),
    #[error("the client assertion header has a crit member, which is not supported")]
    CriticalHeader,
    #[error("the client assertion header has no kid naming the signing key")]
    MissingKid,
    #[error("no key with the assertion's kid is registered for this client")]
    UnknownKid,
    #[error("the registered key with the assertion's kid may not verify {0} signatures (its kty, use, alg or key_ops)")]
    KeyNotUsable(&'static str),
    #[error("the client assertion's signature does not verify with the registered key")]
    BadSignature,
    #[error("the client assertion lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("the client assertion's {0} claim has the wrong type")]
    InvalidClaim(&'static str),
    #[error("the client assertion's iss is not this client's id")]
    WrongIssuer,
    #[error("the client assertion's sub differs from its iss")]
    SubjectMismatch,
    #[error("the client assertion's aud is not the token endpoint URL")]
    WrongAudience,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion's exp is more than 5 minutes in the future")]
    ExpiryTooFar,
    #[error("the client assertion is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the client assertion's iat is in the future")]
    IssuedInFuture,
    #[error("the client assertion's jti is empty or longer than 255 characters")]
    BadJti,
}

impl AssertionError {
    /// The OAuth 2 error code for the token response.
    pub fn oauth_error(&self) -> &'static str {
        "invalid_client"
    }
}

/// The decoded but unverified parts of a compact JWS.
struct Parts<'a> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn split(assertion: &str) -> Result<Parts<'_>, AssertionError> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(AssertionError::Malformed("it is too long"));
    }
    let mut pieces = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(AssertionError::Malformed(
            "it does not have three dot-separated parts",
        ));
    };
    let signing_input = &assertion[..header.len() + 1 + claims.len()];
    Ok(Parts {
        header: decode_object(header).ok_or(AssertionError::Malformed(
            "its header is not base64url JSON",
        ))?,
        claims: decode_object(claims).ok_or(AssertionError::Malformed(
            "its payload is not base64url JSON",
        ))?,
        signing_input,
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AssertionError::Malformed("its signature is not base64url"))?,
    })
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The assertion's `iss`, unverified: the client it claims to come from, so the caller can load that client's
/// JWKS before calling [`verify`]. Trust nothing about it until [`verify`] succeeds.
pub fn unverified_issuer(assertion: &str) -> Result<String, AssertionError> {
    let parts = split(assertion)?;
    match parts.claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(AssertionError::InvalidClaim("iss")),
        None => Err(AssertionError::MissingClaim("iss")),
    }
}

/// Verifies a client assertion against the client's registered keys and the expected claims.
pub fn verify(
    assertion: &str,
    jwks: &Jwks,
    expected: &Expected<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    let parts = split(assertion)?;
    let algorithm = header_algorithm(&parts.header)?;
    if parts.header.contains_key("crit") {
        return Err(AssertionError::CriticalHeader);
    }
    let kid = match parts.header.get("kid") {
        Some(Value::String(kid)) => kid,
        _ => return Err(AssertionError::MissingKid),
    };
    let named: Vec<_> = jwks
        .keys()
        .iter()
        .filter(|k| k.kid() == Some(kid.as_str()))
        .collect();
    if named.is_empty() {
        return Err(AssertionError::UnknownKid);
    }
    let usable: Vec<_> = named
        .into_iter()
        .filter(|k| k.can_verify(algorithm))
        .collect();
    if usable.is_empty() {
        return Err(AssertionError::KeyNotUsable(algorithm.name()));
    }
    // Kids should be unique, but a set may repeat one during rotation: any usable key with the kid will do.
    let message = parts.signing_input.as_bytes();
    if !usable
        .iter()
        .any(|key| signature_verifies(&key.material, message, &parts.signature))
    {
        return Err(AssertionError::BadSignature);
    }
    check_claims(&parts.claims, expected, algorithm)
}

fn header_algorithm(header: &Map<String, Value>) -> Result<Algorithm, AssertionError> {
    match header.get("alg") {
        Some(Value::String(alg)) => match alg.as_str() {
            "RS384" => Ok(Algorithm::Rs384),
            "ES384" => Ok(Algorithm::Es384),
            _ if alg.eq_ignore_ascii_case("none") => Err(AssertionError::Unsigned),
            other => Err(AssertionError::UnsupportedAlgorithm(sanitise_alg(other))),
        },
        Some(_) => Err(AssertionError::Malformed("its alg is not a string")),
        None => Err(AssertionError::Malformed("its header has no alg")),
    }
}

/// An `alg` is echoed in the error, so keep it short and plain.
fn sanitise_alg(alg: &str) -> String {
    let plain = alg.len() <= 16
        && alg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        alg.to_owned()
    } else {
        "an unrecognised algorithm".to_owned()
    }
}

fn signature_verifies(key: &KeyMaterial, message: &[u8], sig: &[u8]) -> bool {
    match key {
        KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA384, message, sig)
            .is_ok(),
        KeyMaterial::P384 { point } => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message, sig)
                .is_ok()
        }
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
    algorithm: Algorithm,
) -> Result<VerifiedAssertion, AssertionError> {
    let string = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(AssertionError::InvalidClaim(name)),
        None => Err(AssertionError::MissingClaim(name)),
    };
    let iss = string("iss")?;
    if iss != expected.client_id {
        return Err(AssertionError::WrongIssuer);
    }
    if string("sub")? != iss {
        return Err(AssertionError::SubjectMismatch);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected.token_url,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected.token_url)),
        Some(_) => return Err(AssertionError::InvalidClaim("aud")),
        None => return Err(AssertionError::MissingClaim("aud")),
    };
    if !audience_ok {
        return Err(AssertionError::WrongAudience);
    }
    let now = expected.now;
    let exp = numeric_date(claims, "exp")?.ok_or(AssertionError::MissingClaim("exp"))?;
    if exp <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now.saturating_add(MAX_LIFETIME) {
        return Err(AssertionError::ExpiryTooFar);
    }
    let latest = now.saturating_add(CLOCK_SKEW);
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > latest) {
        return Err(AssertionError::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| iat > latest) {
        return Err(AssertionError::IssuedInFuture);
    }
    let jti = string("jti")?;
    if jti.is_empty() || jti.chars().count() > MAX_JTI_LEN {
        return Err(AssertionError::BadJti);
    }
    Ok(VerifiedAssertion {
        client_id: iss.to_owned(),
        jti: jti.to_owned(),
        expires_at: exp,
        algorithm,
    })
}

/// A NumericDate claim (RFC 7519: seconds since the epoch, possibly fractional), rounded down.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, AssertionError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(secs) = n.as_u64() {
                return Ok(Some(secs));
            }
            match n.as_f64() {
                // The upper bound keeps the cast exact and far beyond any real date.
                Some(f) if f.is_finite() && (0.0..1e15).contains(&f) => Ok(Some(f.floor() as u64)),
                _ => Err(AssertionError::InvalidClaim(name)),
            }
        }
        Some(_) => Err(AssertionError::InvalidClaim(name)),
    }
}
