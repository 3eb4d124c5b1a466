//! argon2id passwords. Real OWASP parameters are slow in a debug build, so only one hash uses them; the others
//! are cheap reference vectors, which also proves that hashes made with other parameters verify.

use auth::password::{self, PasswordError};

/// Argon2 reference-implementation test vectors (password `password`, salt `somesalt`, 256 KiB, 2 passes), as
/// the argon2 crate's known-answer tests list them: hashes made elsewhere, with other parameters.
const REFERENCE_ARGON2ID: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
const REFERENCE_ARGON2I: &str =
    "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8";

#[test]
fn hash_and_verify_with_owasp_parameters() {
    let stored = password::hash("correct horse battery staple").unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(
        password::verify("correct horse battery staple", &stored),
        Ok(true)
    );
    assert_eq!(
        password::verify("correct horse battery stapler", &stored),
        Ok(false)
    );
    assert!(!password::needs_rehash(&stored));
}

#[test]
fn verify_table() {
    let check = |password: &str, stored: &str, expected: Result<bool, PasswordError>| {
        assert_eq!(
            password::verify(password, stored),
            expected,
            "{password} {stored}"
        );
    };
    check("password", REFERENCE_ARGON2ID, Ok(true));
    check("password", REFERENCE_ARGON2I, Ok(true));
    check("password ", REFERENCE_ARGON2ID, Ok(false));
    check("Password", REFERENCE_ARGON2I, Ok(false));
    check("", REFERENCE_ARGON2ID, Ok(false));
    check(&"x".repeat(2000), REFERENCE_ARGON2ID, Ok(false));
    check("password", "", Err(PasswordError::BadStoredHash));
    check("password", "plaintext", Err(PasswordError::BadStoredHash));
    check(
        "password",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ",
        Ok(false),
    );
    // One character of the hash changed (the last one cannot be: its spare bits must stay zero).
    check(
        "password",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf66EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        Ok(false),
    );
}

#[test]
fn needs_rehash_table() {
    let check = |stored: &str, expected: bool| {
        assert_eq!(password::needs_rehash(stored), expected, "{stored}")
    };
    check(REFERENCE_ARGON2ID, true);
    check(REFERENCE_ARGON2I, true);
    check(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        false,
    );
    check(
        "$argon2id$v=19$m=19456,t=3,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        true,
    );
    check(
        "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        true,
    );
    check(
        "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        true,
    );
    check("$2b$12$abcdefghijklmnopqrstuv", true);
    check("garbage", true);
}

#[test]
fn hash_refuses_bad_input() {
    assert_eq!(
        password::hash_with_salt(&"x".repeat(1025), b"saltsaltsalt"),
        Err(PasswordError::TooLong)
    );
    assert_eq!(
        password::hash_with_salt("pw", b"short"),
        Err(PasswordError::Hashing)
    );
}
