//! Private keys at rest: sealed under the key-encryption key (KEK) from the configuration.
//!
//! A sealed key is `NMK1 || nonce (12 bytes) || AES-256-GCM(PKCS#8 DER) || tag (16 bytes)`. The
//! caller's label (for instance the address or the certificate's serial) is authenticated with
//! it, so a sealed key copied into another record does not open there. A wrong KEK, a wrong label
//! and any changed byte all fail the same way: [`KeyError::Unseal`].

use base64::Engine as _;
use openssl::pkey::{PKey, PKeyRef, Private};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 4] = b"NMK1";

/// Why a key could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The KEK is not 32 bytes (or not base64 of 32 bytes).
    #[error("the key-encryption key must be 32 bytes (base64 in the configuration)")]
    BadKek,
    /// The sealed bytes are not a sealed key, or the KEK or label is wrong, or they were changed.
    #[error("the sealed key does not open with this key-encryption key and label")]
    Unseal,
    /// The operating system's random generator failed.
    #[error("no randomness available for a nonce")]
    Random,
    /// OpenSSL could not encode or decode the key.
    #[error("private key encoding: {0}")]
    Encoding(#[from] openssl::error::ErrorStack),
}

/// The key-encryption key. Its `Debug` never shows the key.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A KEK from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::BadKek);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::BadKek)?;
        Ok(Kek(LessSafeKey::new(key)))
    }

    /// A KEK from standard base64 of 32 bytes, as the configuration holds it.
    pub fn from_base64(text: &str) -> Result<Kek, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::BadKek)?;
        Kek::from_bytes(&bytes)
    }

    /// A fresh random KEK as base64, for `nutmeg admin` to print once.
    pub fn generate_base64() -> Result<String, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

fn aad(label: &str) -> Vec<u8> {
    let mut aad = b"nutmeg direct private key v1\0".to_vec();
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// Seals `key` (RSA or EC) under `kek`, bound to `label`.
pub fn seal(kek: &Kek, label: &str, key: &PKeyRef<Private>) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Random)?;
    let mut buf = key.private_key_to_pkcs8()?;
    let sealed = kek.0.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(label)),
        &mut buf,
    );
    if sealed.is_err() {
        buf.fill(0);
        return Err(KeyError::Unseal);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + buf.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens a key sealed by [`seal`] with the same KEK and label.
pub fn open(kek: &Kek, label: &str, sealed: &[u8]) -> Result<PKey<Private>, KeyError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(KeyError::Unseal)?;
    if rest.len() < NONCE_LEN {
        return Err(KeyError::Unseal);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unseal)?;
    let mut buf = ciphertext.to_vec();
    let result = match kek.0.open_in_place(nonce, Aad::from(aad(label)), &mut buf) {
        Ok(der) => PKey::private_key_from_pkcs8(der).map_err(KeyError::from),
        Err(_) => Err(KeyError::Unseal),
    };
    buf.fill(0);
    result
}
