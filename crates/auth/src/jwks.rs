//! A client's registered JSON Web Key Set (RFC 7517): the public keys its client assertions may be signed with.
//! Only the key types the exchange verifies are kept (RSA and EC P-384); other keys in the set are skipped, since
//! a set may hold keys for other uses. A key that claims a supported type but is broken, or that holds private
//! material, makes the whole set invalid, so a registration mistake shows at registration, not at first use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// A signature algorithm the exchange accepts for client assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl Algorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs384 => "RS384",
            Algorithm::Es384 => "ES384",
        }
    }
}

/// The public key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyMaterial {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `0x04 || x || y`, as ring takes it.
    P384 { point: Vec<u8> },
}

/// One usable public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    use_: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    pub(crate) material: KeyMaterial,
}

impl Jwk {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may verify `alg` signatures: the key type fits the algorithm, `use` (if given) is `sig`,
    /// `alg` (if given) is `alg`, and `key_ops` (if given) includes `verify`.
    pub fn can_verify(&self, alg: Algorithm) -> bool {
        let type_fits = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Algorithm::Rs384)
                | (KeyMaterial::P384 { .. }, Algorithm::Es384)
        );
        type_fits
            && self.use_.as_deref().is_none_or(|u| u == "sig")
            && self.alg.as_deref().is_none_or(|a| a == alg.name())
            && self
                .key_ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|op| op == "verify"))
    }
}

/// The usable keys of a registered JWKS.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document, reporting every broken key.
    pub fn parse(json: &str) -> Result<Jwks, JwksError> {
        let value: Value = serde_json::from_str(json).map_err(|_| JwksError::NotJson)?;
        let Some(keys) = value.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::NoKeysArray);
        };
        let mut usable = Vec::new();
        let mut problems = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            match parse_key(key) {
                Ok(Some(jwk)) => usable.push(jwk),
                Ok(None) => {}
                Err(reason) => problems.push(KeyProblem { index, reason }),
            }
        }
        if !problems.is_empty() {
            return Err(JwksError::InvalidKeys(problems));
        }
        // A set whose keys are all for encryption or other algorithms would register fine and then refuse every
        // assertion; better to say so now.
        let can_sign = usable
            .iter()
            .any(|k| k.can_verify(Algorithm::Rs384) || k.can_verify(Algorithm::Es384));
        if !can_sign {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks { keys: usable })
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

/// `Ok(None)` for a key of a type this crate does not verify with.
fn parse_key(key: &Value) -> Result<Option<Jwk>, &'static str> {
    let text = |name: &str| -> Result<Option<String>, &'static str> {
        match key.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err("has a member that should be a string but is not"),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, &'static str> {
        let s = text(name)?.ok_or("lacks a required member (n and e for RSA, x and y for EC)")?;
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "has a member that is not unpadded base64url")
    };
    if !key.is_object() {
        return Err("is not a JSON object");
    }
    // Private members of RSA and EC keys (RFC 7518 section 6): a client registering these has leaked its key.
    if ["d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .any(|m| key.get(m).is_some())
    {
        return Err("holds private key material; register only the public key");
    }
    let key_ops = match key.get("key_ops") {
        None => None,
        Some(Value::Array(ops)) => Some(
            ops.iter()
                .map(|op| op.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("has key_ops that are not all strings")?,
        ),
        Some(_) => return Err("has key_ops that are not an array"),
    };
    let material = match text("kty")?.as_deref() {
        Some("RSA") => {
            let n = strip_leading_zeros(bytes("n")?);
            let e = strip_leading_zeros(bytes("e")?);
            if n.len() < 256 {
                return Err("is an RSA key shorter than 2048 bits");
            }
            if e.is_empty() {
                return Err("is an RSA key with a zero exponent");
            }
            KeyMaterial::Rsa { n, e }
        }
        Some("EC") => {
            if text("crv")?.as_deref() != Some("P-384") {
                return Ok(None);
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 48 || y.len() != 48 {
                return Err("is a P-384 key whose x or y is not 48 bytes");
            }
            let mut point = Vec::with_capacity(97);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::P384 { point }
        }
        Some(_) => return Ok(None),
        None => return Err("has no kty"),
    };
    Ok(Some(Jwk {
        kid: text("kid")?,
        use_: text("use")?,
        alg: text("alg")?,
        key_ops,
        material,
    }))
}

/// base64url big integers should have no leading zero bytes, but some encoders add one; ring wants none.
fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

/// Why a JWKS cannot be registered.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JwksError {
    #[error("the JWKS is not JSON")]
    NotJson,
    #[error("the JWKS has no keys array")]
    NoKeysArray,
    #[error("the JWKS has no RSA or P-384 key usable for RS384 or ES384 signatures")]
    NoUsableKey,
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidKeys(Vec<KeyProblem>),
}

/// One broken key of a JWKS, by its position in the `keys` array.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("key {index} {reason}")]
pub struct KeyProblem {
    pub index: usize,
    pub reason: &'static str,
}
