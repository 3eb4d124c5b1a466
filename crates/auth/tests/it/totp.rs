//! TOTP: RFC 6238 appendix B vectors (6-digit), the one-step window, replay refusal, the otpauth URI.

use auth::totp::{TotpError, TotpSecret};

/// The RFC 6238 SHA-1 seed.
fn rfc_secret() -> TotpSecret {
    TotpSecret::from_bytes(b"12345678901234567890").unwrap()
}

#[test]
fn rfc6238_appendix_b() {
    // The appendix gives 8 digits; a 6-digit code is their last 6.
    let check =
        |time: u64, expected: &str| assert_eq!(rfc_secret().code_at(time), expected, "T = {time}");
    check(59, "287082");
    check(1111111109, "081804");
    check(1111111111, "050471");
    check(1234567890, "005924");
    check(2000000000, "279037");
    check(20000000000, "353130");
}

#[test]
fn verify_window_and_replay() {
    let secret = rfc_secret();
    let now = 1_111_111_111; // step 37037037, 1 s into the step
    let step = now / 30;
    let check = |code: String, last: Option<u64>, expected: Result<u64, TotpError>| {
        assert_eq!(secret.verify(&code, now, last), expected, "{code} {last:?}");
    };
    check(secret.code_at_step(step), None, Ok(step));
    check(secret.code_at_step(step - 1), None, Ok(step - 1));
    check(secret.code_at_step(step + 1), None, Ok(step + 1));
    check(
        secret.code_at_step(step - 2),
        None,
        Err(TotpError::Mismatch),
    );
    check(
        secret.code_at_step(step + 2),
        None,
        Err(TotpError::Mismatch),
    );
    check(format!(" {} ", secret.code_at_step(step)), None, Ok(step));
    // The caller stores the matched step; the same code, or an older one, is then refused.
    check(
        secret.code_at_step(step),
        Some(step),
        Err(TotpError::Reused),
    );
    check(
        secret.code_at_step(step - 1),
        Some(step),
        Err(TotpError::Reused),
    );
    check(secret.code_at_step(step + 1), Some(step), Ok(step + 1));
    check(secret.code_at_step(step), Some(step - 1), Ok(step));
    check("12345".into(), None, Err(TotpError::Malformed));
    check("1234567".into(), None, Err(TotpError::Malformed));
    check("12a456".into(), None, Err(TotpError::Malformed));
    check(String::new(), None, Err(TotpError::Malformed));
}

#[test]
fn secrets() {
    assert_eq!(
        TotpSecret::from_bytes(&[1; 15]).unwrap_err(),
        TotpError::SecretTooShort
    );
    let a = TotpSecret::generate().unwrap();
    let b = TotpSecret::generate().unwrap();
    assert_eq!(a.as_bytes().len(), 20);
    assert_ne!(a, b);
    assert_eq!(a.base32().len(), 32);
    assert_eq!(
        format!("{a:?}"),
        "TotpSecret(..)",
        "Debug must not show the secret"
    );
    assert_eq!(rfc_secret().base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}

#[test]
fn otpauth_uri_escapes_issuer_and_account() {
    let check = |issuer: &str, account: &str, expected: &str| {
        assert_eq!(rfc_secret().otpauth_uri(issuer, account), expected);
    };
    check(
        "nutmeg",
        "alice@example.org",
        "otpauth://totp/nutmeg:alice%40example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=nutmeg&algorithm=SHA1&digits=6&period=30",
    );
    check(
        "State HIE: Test",
        "a&b=c?d/e",
        "otpauth://totp/State%20HIE%3A%20Test:a%26b%3Dc%3Fd%2Fe?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=State%20HIE%3A%20Test&algorithm=SHA1&digits=6&period=30",
    );
}
