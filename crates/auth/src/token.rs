//! The exchange's own access tokens: short-lived bearer tokens that say which client of which participant may do
//! what and why, signed with a secret only the exchange holds.
//!
//! A token is `nt1.<payload>.<mac>`: the payload is base64url JSON, the MAC is HMAC-SHA256 over `nt1.<payload>`.
//! The MAC is checked first and in constant time (ring's `hmac::verify`), so nothing of a forged token is parsed.
//! Tokens are self-contained, so a process verifies them without storage; revoking one before expiry needs the
//! caller to keep a deny list of token ids, which is why tokens should live minutes, not hours.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::purpose::PurposeOfUse;
use crate::scope::ScopeSet;

/// The token format's version prefix, so a later format can be told apart.
const PREFIX: &str = "nt1.";

/// Tokens longer than this are refused before any work.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The shortest signing key accepted: 256 bits, the HMAC-SHA256 output size.
pub const MIN_KEY_LEN: usize = 32;

/// The exchange's token signing key. The caller keeps the secret (configuration or a secret store) and shares it
/// between its processes.
pub struct TokenKey(hmac::Key);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Result<TokenKey, TokenError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(TokenError::KeyTooShort);
        }
        Ok(TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    /// Unique per token (the caller makes it, for example a UUID), for audit and revocation.
    pub id: String,
    pub client_id: String,
    /// The participant the client belongs to.
    pub participant_id: String,
    pub scopes: ScopeSet,
    pub purpose: PurposeOfUse,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    /// Seconds since the Unix epoch; the token is valid while now is before this.
    pub expires_at: u64,
}

/// The signed payload; short names keep the bearer header small.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    jti: String,
    cid: String,
    pid: String,
    scope: String,
    pou: String,
    iat: u64,
    exp: u64,
}

impl AccessToken {
    /// A token issued at `now` that lives `lifetime` seconds.
    pub fn new(
        id: String,
        client_id: String,
        participant_id: String,
        scopes: ScopeSet,
        purpose: PurposeOfUse,
        now: u64,
        lifetime: u64,
    ) -> AccessToken {
        AccessToken {
            id,
            client_id,
            participant_id,
            scopes,
            purpose,
            issued_at: now,
            expires_at: now.saturating_add(lifetime),
        }
    }

    /// The signed token string.
    pub fn encode(&self, key: &TokenKey) -> String {
        let payload = Payload {
            jti: self.id.clone(),
            cid: self.client_id.clone(),
            pid: self.participant_id.clone(),
            scope: self.scopes.to_string(),
            pou: self.purpose.code().to_owned(),
            iat: self.issued_at,
            exp: self.expires_at,
        };
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let mut token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(&key.0, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        token
    }

    /// Verifies a token string and returns what it says, if it is genuine and not expired at `now`.
    pub fn decode(token: &str, key: &TokenKey, now: u64) -> Result<AccessToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, tag) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let signed = &token[..PREFIX.len() + payload.len()];
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&key.0, signed.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now >= payload.exp {
            return Err(TokenError::Expired);
        }
        Ok(AccessToken {
            id: payload.jti,
            client_id: payload.cid,
            participant_id: payload.pid,
            scopes: ScopeSet::parse(&payload.scope).map_err(|_| TokenError::Malformed)?,
            purpose: payload.pou.parse().map_err(|_| TokenError::Malformed)?,
            issued_at: payload.iat,
            expires_at: payload.exp,
        })
    }

    /// Seconds left at `now`: the `expires_in` of a token response.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    /// The token endpoint's successful answer (RFC 6749 section 5.1) for this token, `encoded` by
    /// [`AccessToken::encode`]: `access_token`, `token_type` `bearer`, `expires_in` and the granted `scope`.
    pub fn response(&self, encoded: &str, now: u64) -> serde_json::Value {
        serde_json::json!({
            "access_token": encoded,
            "token_type": "bearer",
            "expires_in": self.expires_in(now),
            "scope": self.scopes.to_string(),
        })
    }
}

/// Why a token was refused. At the FHIR API each is a 401 with `WWW-Authenticate: Bearer error="invalid_token"`
/// (except [`TokenError::KeyTooShort`], a configuration error).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token signing key must be at least 32 bytes")]
    KeyTooShort,
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token's signature is not valid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
}
