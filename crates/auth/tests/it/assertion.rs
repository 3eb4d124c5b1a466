//! SMART Backend Services client assertions: good RS384 and ES384 assertions pass, every attack fails with its
//! own error. The keys are the synthetic ones under `tests/keys/`.

use auth::assertion::{self, AssertionError, Expected, MAX_LIFETIME};
use auth::jwks::{Algorithm, Jwks, JwksError};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;
const CLIENT: &str = "client-1";
const TOKEN_URL: &str = "https://exchange.example.org/auth/token";

fn key_file(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn registered() -> Jwks {
    Jwks::parse(&key_file("jwks.json")).unwrap()
}

/// How a test assertion is signed.
enum Signer {
    /// RS384 (or RS256 when `sha256`) with a PKCS#8 key file.
    Rsa(&'static str, bool),
    /// ES384 with a PKCS#8 key file.
    P384(&'static str),
    /// HS256 with these bytes as the secret.
    Hmac(Vec<u8>),
    /// No signature at all.
    None,
}

fn sign(header: &Value, claims: &Value, signer: &Signer) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = SystemRandom::new();
    let sig = match signer {
        Signer::Rsa(file, sha256) => {
            let pair = RsaKeyPair::from_pkcs8(&pem_to_der(&key_file(file))).unwrap();
            let mut sig = vec![0; pair.public().modulus_len()];
            let padding = if *sha256 {
                &signature::RSA_PKCS1_SHA256
            } else {
                &signature::RSA_PKCS1_SHA384
            };
            pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                .unwrap();
            sig
        }
        Signer::P384(file) => {
            let der = pem_to_der(&key_file(file));
            let pair =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &der, &rng)
                    .unwrap();
            pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
        }
        Signer::Hmac(secret) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
        }
        Signer::None => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims() -> Value {
    json!({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": NOW + 240, "iat": NOW, "jti": "a1b2c3"})
}

/// The good claims with `changes` applied; a `null` value removes the claim.
fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn rs384(kid: &str) -> Value {
    json!({"alg": "RS384", "kid": kid, "typ": "JWT"})
}

fn es384(kid: &str) -> Value {
    json!({"alg": "ES384", "kid": kid, "typ": "JWT"})
}

fn check(name: &str, assertion: &str, expected: Result<(&str, u64), AssertionError>) {
    let got = assertion::verify(
        assertion,
        &registered(),
        &Expected {
            client_id: CLIENT,
            token_url: TOKEN_URL,
            now: NOW,
        },
    );
    match (&got, &expected) {
        (Ok(v), Ok((jti, exp))) => {
            assert_eq!(
                (v.client_id.as_str(), v.jti.as_str(), v.expires_at),
                (CLIENT, *jti, *exp),
                "{name}"
            );
        }
        (Err(e), Err(want)) => {
            assert_eq!(e, want, "{name}");
            assert_eq!(e.oauth_error(), "invalid_client");
            // The message goes into an OAuth error_description: printable ASCII without quote or backslash.
            let message = e.to_string();
            assert!(
                message
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{message}"
            );
        }
        _ => panic!("{name}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn good_assertions_are_accepted() {
    let exp = NOW + 240;
    check(
        "RS384 with RSA-2048",
        &sign(
            &rs384("rsa2048"),
            &claims(),
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Ok(("a1b2c3", exp)),
    );
    check(
        "RS384 with RSA-3072",
        &sign(
            &rs384("rsa3072"),
            &claims(),
            &Signer::Rsa("rsa3072.pem", false),
        ),
        Ok(("a1b2c3", exp)),
    );
    check(
        "ES384 with P-384",
        &sign(&es384("p384"), &claims(), &Signer::P384("p384.pem")),
        Ok(("a1b2c3", exp)),
    );
    let aud_array = claims_with(json!({"aud": ["https://other.example.org/token", TOKEN_URL]}));
    check(
        "aud as an array",
        &sign(
            &rs384("rsa2048"),
            &aud_array,
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Ok(("a1b2c3", exp)),
    );
    let edge = claims_with(json!({"exp": NOW + MAX_LIFETIME, "nbf": NOW + 60, "iat": NOW + 60}));
    check(
        "exp, nbf and iat at their limits",
        &sign(&es384("p384"), &edge, &Signer::P384("p384.pem")),
        Ok(("a1b2c3", NOW + 300)),
    );
    let fractional = claims_with(json!({"exp": (NOW + 100) as f64 + 0.75, "iat": null}));
    check(
        "fractional exp, no iat",
        &sign(&es384("p384"), &fractional, &Signer::P384("p384.pem")),
        Ok(("a1b2c3", NOW + 100)),
    );
}

#[test]
fn algorithm_attacks() {
    let good = claims();
    check(
        "alg none",
        &sign(
            &json!({"alg": "none", "kid": "rsa2048"}),
            &good,
            &Signer::None,
        ),
        Err(AssertionError::Unsigned),
    );
    check(
        "alg NONE",
        &sign(
            &json!({"alg": "NONE", "kid": "rsa2048"}),
            &good,
            &Signer::None,
        ),
        Err(AssertionError::Unsigned),
    );
    // The classic key-confusion attack: HMAC keyed with the public key the verifier holds.
    let jwks_text = key_file("jwks.json");
    let n = serde_json::from_str::<Value>(&jwks_text).unwrap()["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_owned();
    for secret in [URL_SAFE_NO_PAD.decode(n).unwrap(), jwks_text.into_bytes()] {
        check(
            "HS256 keyed with the RSA public key",
            &sign(
                &json!({"alg": "HS256", "kid": "rsa2048"}),
                &good,
                &Signer::Hmac(secret),
            ),
            Err(AssertionError::UnsupportedAlgorithm("HS256".into())),
        );
    }
    check(
        "RS256",
        &sign(
            &json!({"alg": "RS256", "kid": "rsa2048-rs256"}),
            &good,
            &Signer::Rsa("rsa2048.pem", true),
        ),
        Err(AssertionError::UnsupportedAlgorithm("RS256".into())),
    );
    check(
        "an alg that is not a plain name is not echoed",
        &sign(
            &json!({"alg": "RS384\"<script>", "kid": "rsa2048"}),
            &good,
            &Signer::None,
        ),
        Err(AssertionError::UnsupportedAlgorithm(
            "an unrecognised algorithm".into(),
        )),
    );
    check(
        "no alg",
        &sign(&json!({"kid": "rsa2048"}), &good, &Signer::None),
        Err(AssertionError::Malformed("its header has no alg")),
    );
    check(
        "crit header",
        &sign(
            &json!({"alg": "RS384", "kid": "rsa2048", "crit": ["exp"]}),
            &good,
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Err(AssertionError::CriticalHeader),
    );
}

#[test]
fn key_attacks() {
    let good = claims();
    check(
        "wrong RSA key under a registered kid",
        &sign(
            &rs384("rsa2048"),
            &good,
            &Signer::Rsa("rsa2048-unregistered.pem", false),
        ),
        Err(AssertionError::BadSignature),
    );
    check(
        "wrong P-384 key under a registered kid",
        &sign(
            &es384("p384"),
            &good,
            &Signer::P384("p384-unregistered.pem"),
        ),
        Err(AssertionError::BadSignature),
    );
    check(
        "a registered key under another key's kid",
        &sign(&rs384("rsa3072"), &good, &Signer::Rsa("rsa2048.pem", false)),
        Err(AssertionError::BadSignature),
    );
    check(
        "unknown kid",
        &sign(&rs384("nobody"), &good, &Signer::Rsa("rsa2048.pem", false)),
        Err(AssertionError::UnknownKid),
    );
    check(
        "no kid",
        &sign(
            &json!({"alg": "RS384"}),
            &good,
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Err(AssertionError::MissingKid),
    );
    check(
        "a key registered for encryption",
        &sign(
            &rs384("rsa2048-enc"),
            &good,
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Err(AssertionError::KeyNotUsable("RS384")),
    );
    check(
        "a key registered for RS256",
        &sign(
            &rs384("rsa2048-rs256"),
            &good,
            &Signer::Rsa("rsa2048.pem", false),
        ),
        Err(AssertionError::KeyNotUsable("RS384")),
    );
    check(
        "ES384 naming an RSA key",
        &sign(&es384("rsa2048"), &good, &Signer::P384("p384.pem")),
        Err(AssertionError::KeyNotUsable("ES384")),
    );
}

#[test]
fn tampered_and_malformed() {
    let assertion = sign(
        &rs384("rsa2048"),
        &claims(),
        &Signer::Rsa("rsa2048.pem", false),
    );
    let parts: Vec<&str> = assertion.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(claims_with(json!({"iss": "client-2", "sub": "client-2"})).to_string());
    check(
        "tampered payload",
        &format!("{}.{forged}.{}", parts[0], parts[2]),
        Err(AssertionError::BadSignature),
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    check(
        "tampered signature",
        &format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig)),
        Err(AssertionError::BadSignature),
    );
    check(
        "two parts",
        &format!("{}.{}", parts[0], parts[1]),
        Err(AssertionError::Malformed(
            "it does not have three dot-separated parts",
        )),
    );
    check(
        "four parts",
        &format!("{assertion}.x"),
        Err(AssertionError::Malformed(
            "it does not have three dot-separated parts",
        )),
    );
    check(
        "header not base64url",
        &format!("!!.{}.{}", parts[1], parts[2]),
        Err(AssertionError::Malformed(
            "its header is not base64url JSON",
        )),
    );
    check(
        "padded signature",
        &format!("{assertion}=="),
        Err(AssertionError::Malformed("its signature is not base64url")),
    );
    check(
        "huge",
        &"a".repeat(10_000),
        Err(AssertionError::Malformed("it is too long")),
    );
    check(
        "empty",
        "",
        Err(AssertionError::Malformed(
            "it does not have three dot-separated parts",
        )),
    );
}

#[test]
fn claim_attacks() {
    let es = |changes: Value| {
        sign(
            &es384("p384"),
            &claims_with(changes),
            &Signer::P384("p384.pem"),
        )
    };
    check(
        "expired",
        &es(json!({"exp": NOW - 1})),
        Err(AssertionError::Expired),
    );
    check(
        "expires now",
        &es(json!({"exp": NOW})),
        Err(AssertionError::Expired),
    );
    check(
        "exp more than 5 minutes ahead",
        &es(json!({"exp": NOW + MAX_LIFETIME + 1})),
        Err(AssertionError::ExpiryTooFar),
    );
    check(
        "exp a year ahead",
        &es(json!({"exp": NOW + 31_536_000})),
        Err(AssertionError::ExpiryTooFar),
    );
    check(
        "no exp",
        &es(json!({"exp": null})),
        Err(AssertionError::MissingClaim("exp")),
    );
    check(
        "exp as a string",
        &es(json!({"exp": "1800000100"})),
        Err(AssertionError::InvalidClaim("exp")),
    );
    check(
        "negative exp",
        &es(json!({"exp": -5})),
        Err(AssertionError::InvalidClaim("exp")),
    );
    check(
        "nbf in the future",
        &es(json!({"nbf": NOW + 61})),
        Err(AssertionError::NotYetValid),
    );
    check(
        "iat in the future",
        &es(json!({"iat": NOW + 61})),
        Err(AssertionError::IssuedInFuture),
    );
    check(
        "wrong aud",
        &es(json!({"aud": "https://evil.example.org/auth/token"})),
        Err(AssertionError::WrongAudience),
    );
    check(
        "aud with a trailing slash",
        &es(json!({"aud": format!("{TOKEN_URL}/")})),
        Err(AssertionError::WrongAudience),
    );
    check(
        "aud array without the token URL",
        &es(json!({"aud": ["https://evil.example.org/"]})),
        Err(AssertionError::WrongAudience),
    );
    check(
        "no aud",
        &es(json!({"aud": null})),
        Err(AssertionError::MissingClaim("aud")),
    );
    check(
        "iss differs from sub",
        &es(json!({"sub": "client-2"})),
        Err(AssertionError::SubjectMismatch),
    );
    check(
        "iss and sub another client",
        &es(json!({"iss": "client-2", "sub": "client-2"})),
        Err(AssertionError::WrongIssuer),
    );
    check(
        "no iss",
        &es(json!({"iss": null})),
        Err(AssertionError::MissingClaim("iss")),
    );
    check(
        "no sub",
        &es(json!({"sub": null})),
        Err(AssertionError::MissingClaim("sub")),
    );
    check(
        "no jti",
        &es(json!({"jti": null})),
        Err(AssertionError::MissingClaim("jti")),
    );
    check(
        "empty jti",
        &es(json!({"jti": ""})),
        Err(AssertionError::BadJti),
    );
    check(
        "jti a number",
        &es(json!({"jti": 7})),
        Err(AssertionError::InvalidClaim("jti")),
    );
    check(
        "jti too long",
        &es(json!({"jti": "j".repeat(256)})),
        Err(AssertionError::BadJti),
    );
}

#[test]
fn unverified_issuer_names_the_client_to_look_up() {
    let assertion = sign(
        &rs384("rsa2048"),
        &claims(),
        &Signer::Rsa("rsa2048.pem", false),
    );
    assert_eq!(
        assertion::unverified_issuer(&assertion),
        Ok(CLIENT.to_owned())
    );
    let no_iss = sign(
        &rs384("rsa2048"),
        &claims_with(json!({"iss": null})),
        &Signer::None,
    );
    assert_eq!(
        assertion::unverified_issuer(&no_iss),
        Err(AssertionError::MissingClaim("iss"))
    );
}

#[test]
fn jwks_registration() {
    let keys = registered();
    assert_eq!(keys.keys().len(), 5);
    assert!(
        keys.keys()
            .iter()
            .filter(|k| k.can_verify(Algorithm::Rs384))
            .count()
            == 2
    );
    assert!(Jwks::parse(&key_file("jwks-other.json")).is_ok());

    let check = |json: &str, expected: Result<usize, &str>| match (Jwks::parse(json), expected) {
        (Ok(set), Ok(n)) => assert_eq!(set.keys().len(), n, "{json}"),
        (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{json}: {e}"),
        (got, want) => panic!("{json}: got {got:?}, expected {want:?}"),
    };
    let p384 = serde_json::from_str::<Value>(&key_file("jwks.json")).unwrap()["keys"][2].clone();
    check(&json!({"keys": [p384]}).to_string(), Ok(1));
    // Key types this crate does not verify with are skipped, not refused.
    check(&json!({"keys": [p384, {"kty": "OKP", "crv": "Ed25519", "x": "AA"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}).to_string(), Ok(1));
    check(
        &json!({"keys": [{"kty": "oct", "k": "AAAA"}]}).to_string(),
        Err("no RSA or P-384 key"),
    );
    let mut encryption_only = p384.clone();
    encryption_only["use"] = json!("enc");
    check(
        &json!({"keys": [encryption_only]}).to_string(),
        Err("no RSA or P-384 key usable"),
    );
    check("not json", Err("not JSON"));
    check("{}", Err("no keys array"));
    let mut private = p384.clone();
    private["d"] = json!("AAAA");
    check(
        &json!({"keys": [private]}).to_string(),
        Err("key 0 holds private key material"),
    );
    let mut short_x = p384.clone();
    short_x["x"] = json!("AAAA");
    let mut no_y = p384.clone();
    no_y.as_object_mut().unwrap().remove("y");
    let small_rsa = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"});
    let problems =
        Jwks::parse(&json!({"keys": [short_x, p384, no_y, small_rsa]}).to_string()).unwrap_err();
    let JwksError::InvalidKeys(problems) = problems else {
        panic!("{problems:?}")
    };
    let indexes: Vec<usize> = problems.iter().map(|p| p.index).collect();
    assert_eq!(indexes, [0, 2, 3], "every broken key is reported");
    assert!(problems[2].reason.contains("shorter than 2048 bits"));
}
