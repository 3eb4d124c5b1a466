//! TOTP second factor (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30-second steps, the parameters every
//! authenticator app supports.
//!
//! A code is accepted within one step either side of now (clock drift and typing time). [`TotpSecret::verify`]
//! returns the step that matched: the caller stores it with the account and passes it back next time, and a code
//! of that step or an earlier one is refused, so an observed code cannot be replayed.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::hmac;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Secret length made by [`TotpSecret::generate`]: 160 bits, RFC 4226's recommendation and SHA-1's output size.
pub const SECRET_LEN: usize = 20;
/// The shortest secret accepted (RFC 4226: at least 128 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// A TOTP shared secret. The caller stores the bytes (encrypted at rest) with the account.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A secret of caller-supplied random bytes (at least [`MIN_SECRET_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<TotpSecret, TotpError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(TotpError::SecretTooShort);
        }
        Ok(TotpSecret(bytes.to_vec()))
    }

    /// A new secret of [`SECRET_LEN`] bytes from the operating system's random number generator.
    pub fn generate() -> Result<TotpSecret, TotpError> {
        let mut bytes = vec![0u8; SECRET_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| TotpError::Random)?;
        Ok(TotpSecret(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in unpadded RFC 4648 base32, as authenticator apps take it.
    pub fn base32(&self) -> String {
        base32(&self.0)
    }

    /// The `otpauth://totp/` URI an authenticator app scans from a QR code (Key Uri Format): the label is
    /// `issuer:account`, each part percent-encoded so a colon, space or ampersand in them cannot change the URI's
    /// meaning, with the issuer repeated as a parameter as the format recommends.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            issuer = escape(issuer),
            account = escape(account),
            secret = self.base32(),
        )
    }

    /// The step of a Unix time.
    pub fn step_at(unix_time: u64) -> u64 {
        unix_time / STEP
    }

    /// The code for a step.
    pub fn code_at_step(&self, step: u64) -> String {
        format!(
            "{:0width$}",
            hotp(&self.0, step, DIGITS),
            width = DIGITS as usize
        )
    }

    /// The code at a Unix time.
    pub fn code_at(&self, unix_time: u64) -> String {
        self.code_at_step(Self::step_at(unix_time))
    }

    /// Checks a code typed at `now` against the steps one either side of now. `last_used_step` is the step the
    /// account last signed in with (from an earlier call); codes of that step or before are refused as reused.
    /// Returns the matched step, for the caller to store as the new `last_used_step`.
    pub fn verify(
        &self,
        code: &str,
        now: u64,
        last_used_step: Option<u64>,
    ) -> Result<u64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let current = Self::step_at(now);
        let (mut fresh, mut reused) = (None, false);
        // Every candidate is computed and compared without early exit, so timing says nothing about which matched.
        for step in current.saturating_sub(1)..=current.saturating_add(1) {
            if constant_time_eq(self.code_at_step(step).as_bytes(), code.as_bytes()) {
                if last_used_step.is_some_and(|last| step <= last) {
                    reused = true;
                } else if fresh.is_none() {
                    fresh = Some(step);
                }
            }
        }
        match (fresh, reused) {
            (Some(step), _) => Ok(step),
            (None, true) => Err(TotpError::Reused),
            (None, false) => Err(TotpError::Mismatch),
        }
    }
}

/// RFC 4226 HOTP with HMAC-SHA1 and dynamic truncation, as a number below `10^digits`.
fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // SHA-1 is what TOTP apps use; as an HMAC it is not affected by SHA-1's collision weakness.
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 4648 base32 without padding. Twenty lines here rather than a dependency for one encoder.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Everything but unreserved URI characters is percent-encoded (RFC 3986 section 2.3).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escape(s: &str) -> String {
    utf8_percent_encode(s, LABEL).to_string()
}

/// Why a TOTP secret could not be made or a code was refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum TotpError {
    #[error("a TOTP secret must be at least 16 bytes")]
    SecretTooShort,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the code must be 6 digits")]
    Malformed,
    #[error("the code is not valid")]
    Mismatch,
    #[error("the code was already used")]
    Reused,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the 8-digit codes, which the 6-digit ones are the last 6 digits of.
    #[test]
    fn rfc6238_appendix_b_eight_digits() {
        let secret = b"12345678901234567890";
        let check = |time: u64, expected: u32| {
            assert_eq!(hotp(secret, time / STEP, 8), expected, "T = {time}")
        };
        check(59, 94287082);
        check(1111111109, 7081804);
        check(1111111111, 14050471);
        check(1234567890, 89005924);
        check(2000000000, 69279037);
        check(20000000000, 65353130);
    }

    /// RFC 4648 section 10 vectors.
    #[test]
    fn base32_rfc4648() {
        let check =
            |input: &str, expected: &str| assert_eq!(base32(input.as_bytes()), expected, "{input}");
        check("", "");
        check("f", "MY");
        check("fo", "MZXQ");
        check("foo", "MZXW6");
        check("foob", "MZXW6YQ");
        check("fooba", "MZXW6YTB");
        check("foobar", "MZXW6YTBOI");
    }
}
