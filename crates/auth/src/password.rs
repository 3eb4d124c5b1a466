//! Portal passwords: argon2id hashes stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! New hashes use OWASP's recommended argon2id parameters (19 MiB of memory, 2 passes, 1 lane; Password Storage
//! Cheat Sheet). Verification reads the parameters from the stored string, so hashes made with other parameters
//! still verify; [`needs_rehash`] tells the caller to store a fresh hash after the next successful sign-in.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

/// OWASP's argon2id memory cost, in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// OWASP's argon2id pass count.
pub const PASSES: u32 = 2;
/// OWASP's argon2id parallelism.
pub const LANES: u32 = 1;
/// The salt length, in bytes (the PHC recommendation).
pub const SALT_LEN: usize = 16;

/// Passwords longer than this are refused before hashing, so a huge one cannot be used to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;

fn hasher() -> Argon2<'static> {
    // The constants are within argon2's bounds, so this cannot fail.
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt from the operating system.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| PasswordError::Random)?;
    hash_with_salt(password, &salt)
}

/// Hashes a password with a caller-supplied salt (at least 8 random bytes, unique per hash).
pub fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let hash = hasher()
        .hash_password_with_salt(password.as_bytes(), salt)
        .map_err(|_| PasswordError::Hashing)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string. Any argon2 variant and parameters are accepted. A stored
/// string that cannot be parsed is an error, not a mismatch, so the caller can log a damaged record.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::BadStoredHash)?;
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(PasswordError::BadStoredHash),
    }
}

/// Whether a stored hash should be replaced by a fresh [`hash`] of the password (after a successful
/// [`verify`]): it is not argon2id version 19, its parameters are not the current ones, or it cannot be parsed.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let current = parsed.algorithm.as_str() == "argon2id"
        && parsed.version == Some(0x13)
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == MEMORY_KIB
                && p.t_cost() == PASSES
                && p.p_cost() == LANES
                && p.output_len()
                    .is_none_or(|len| len == Params::DEFAULT_OUTPUT_LEN)
        });
    !current
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password is longer than 1024 bytes")]
    TooLong,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("argon2 could not hash the password (salt too short or too long?)")]
    Hashing,
    #[error("the stored password hash is not a valid argon2 PHC string")]
    BadStoredHash,
}
