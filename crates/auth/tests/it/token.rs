//! The exchange's access tokens: round trip, tampering, expiry, wrong key, malformed input.

use auth::purpose::PurposeOfUse;
use auth::scope::{Context, Interaction, ScopeSet};
use auth::token::{AccessToken, TokenError, TokenKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const NOW: u64 = 1_800_000_000;

fn key() -> TokenKey {
    TokenKey::new(b"an exchange secret of 32 bytes!!").unwrap()
}

fn token() -> AccessToken {
    AccessToken::new(
        "tok-1".into(),
        "client-1".into(),
        "org-7".into(),
        ScopeSet::parse("system/Patient.rs system/Observation.read").unwrap(),
        PurposeOfUse::Etreat,
        NOW,
        300,
    )
}

fn check(name: &str, encoded: &str, now: u64, expected: Result<AccessToken, TokenError>) {
    assert_eq!(
        AccessToken::decode(encoded, &key(), now),
        expected,
        "{name}"
    );
}

#[test]
fn round_trip() {
    let original = token();
    let encoded = original.encode(&key());
    assert!(encoded.starts_with("nt1."));
    check("fresh", &encoded, NOW, Ok(original.clone()));
    check(
        "a second before expiry",
        &encoded,
        NOW + 299,
        Ok(original.clone()),
    );
    let decoded = AccessToken::decode(&encoded, &key(), NOW).unwrap();
    assert!(decoded
        .scopes
        .permits(Context::System, "Patient", Interaction::Search));
    assert!(!decoded
        .scopes
        .permits(Context::System, "Patient", Interaction::Create));
    assert_eq!(decoded.purpose, PurposeOfUse::Etreat);
    assert_eq!(decoded.expires_in(NOW + 100), 200);
}

#[test]
fn token_response() {
    let token = token();
    let encoded = token.encode(&key());
    let response = token.response(&encoded, NOW + 60);
    assert_eq!(
        response,
        serde_json::json!({
            "access_token": encoded,
            "token_type": "bearer",
            "expires_in": 240,
            "scope": "system/Patient.rs system/Observation.read",
        })
    );
}

#[test]
fn expired() {
    let encoded = token().encode(&key());
    check("at expiry", &encoded, NOW + 300, Err(TokenError::Expired));
    check(
        "long after",
        &encoded,
        NOW + 100_000,
        Err(TokenError::Expired),
    );
}

#[test]
fn wrong_key() {
    let other = TokenKey::new(b"another secret, also of 32 bytes").unwrap();
    check(
        "signed with another key",
        &token().encode(&other),
        NOW,
        Err(TokenError::BadSignature),
    );
}

#[test]
fn tampered() {
    let encoded = token().encode(&key());
    let (signed, tag) = encoded.rsplit_once('.').unwrap();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&signed[4..]).unwrap()).unwrap();
    for (from, to) in [
        ("org-7", "org-8"),
        ("system/Patient.rs", "system/Patient.cruds"),
        ("ETREAT", "TREAT"),
    ] {
        let forged = URL_SAFE_NO_PAD.encode(payload.replace(from, to));
        check(
            from,
            &format!("nt1.{forged}.{tag}"),
            NOW,
            Err(TokenError::BadSignature),
        );
    }
    let mut mac = URL_SAFE_NO_PAD.decode(tag).unwrap();
    mac[0] ^= 0x80;
    check(
        "flipped MAC bit",
        &format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&mac)),
        NOW,
        Err(TokenError::BadSignature),
    );
    check(
        "truncated MAC",
        &format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&mac[..16])),
        NOW,
        Err(TokenError::BadSignature),
    );
    check(
        "no MAC",
        &format!("{signed}."),
        NOW,
        Err(TokenError::BadSignature),
    );
}

#[test]
fn malformed() {
    let encoded = token().encode(&key());
    for (name, text) in [
        ("empty", String::new()),
        ("prefix only", "nt1.".to_owned()),
        ("no MAC part", "nt1.abc".to_owned()),
        ("other prefix", encoded.replacen("nt1.", "nt2.", 1)),
        ("a JWT", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned()),
        ("MAC not base64url", format!("{encoded}!")),
        ("huge", format!("nt1.{}", "A".repeat(10_000))),
    ] {
        check(name, &text, NOW, Err(TokenError::Malformed));
    }
}

#[test]
fn key_length() {
    assert_eq!(
        TokenKey::new(&[7; 31]).unwrap_err(),
        TokenError::KeyTooShort
    );
    assert!(TokenKey::new(&[7; 32]).is_ok());
    assert_eq!(format!("{:?}", key()), "TokenKey(..)");
}
