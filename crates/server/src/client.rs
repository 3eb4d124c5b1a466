//! `nutmeg client`: what a SMART Backend Services client does, for integration engineers, the demo and
//! tests: make a key pair (`keygen`: a P-384 key for ES384 and its public JWKS), print the public JWKS
//! of a private key (`jwks`: RSA for RS384 or P-384 for ES384, PKCS#8 PEM), and get an access token
//! (`token`: sign a client assertion and POST it to the token endpoint).
//!
//! [`SigningKey`] is also the library the end-to-end tests sign their (good and forged) assertions
//! with. A key's `kid` is its RFC 7638 JWK thumbprint, so the same key always has the same `kid`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use clap::{Args, Subcommand};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{json, Value};

/// How long `client token` waits for the token endpoint, and the most of its answer it reads.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: u64 = 256 * 1024;

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Make a P-384 key pair for ES384: DIR/private-key.pem (PKCS#8, keep it secret) and
    /// DIR/jwks.json (the public JWKS to register with `nutmeg admin client add --jwks`).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the public JWKS of a private key (PKCS#8 PEM; RSA or P-384).
    Jwks {
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign a client assertion with the key and exchange it for an access token at the token URL;
    /// prints the access token (or the whole token response with --json).
    Token {
        #[arg(long)]
        client_id: String,
        /// The private key (PKCS#8 PEM; RSA signs RS384, P-384 signs ES384).
        #[arg(long)]
        key: PathBuf,
        /// The exchange's token endpoint, as its /.well-known/smart-configuration says.
        #[arg(long)]
        token_url: String,
        /// The scopes to ask for (space-separated).
        #[arg(long, default_value = "system/*.rs")]
        scope: String,
        /// The purpose of use: TREAT, HPAYMT, HOPERAT, PUBHLTH, ETREAT or PATRQT.
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `nutmeg client` command. Exit 1 when the token endpoint refuses.
pub async fn client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClientCommand::Keygen { out, json } => {
            let (key, pem) = SigningKey::generate_es384()?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let private = out.join("private-key.pem");
            write_private(&private, &pem)?;
            let public = out.join("jwks.json");
            std::fs::write(&public, format!("{:#}\n", key.jwks()))
                .with_context(|| format!("cannot write {}", public.display()))?;
            if json {
                println!(
                    "{}",
                    json!({ "kid": key.kid(), "alg": key.algorithm(), "privateKey": private, "jwks": public })
                );
            } else {
                println!("{}", private.display());
                println!("{}", public.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Jwks { key } => {
            println!("{:#}", SigningKey::from_file(&key)?.jwks());
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Token {
            client_id,
            key,
            token_url,
            scope,
            purpose,
            json,
        } => {
            let key = SigningKey::from_file(&key)?;
            let assertion = key.assertion(&client_id, &token_url, now());
            let mut form = vec![
                ("grant_type", "client_credentials".to_string()),
                (
                    "client_assertion_type",
                    auth::assertion::CLIENT_ASSERTION_TYPE.to_string(),
                ),
                ("client_assertion", assertion),
                ("scope", scope),
            ];
            if let Some(purpose) = purpose {
                form.push((auth::purpose::PARAMETER, purpose));
            }
            let (status, answer) =
                tokio::task::spawn_blocking(move || post_form(&token_url, &form)).await??;
            let body: Value = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
            if status != 200 {
                eprintln!("nutmeg: the token endpoint refused ({status}): {body}");
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!("{body}");
            } else {
                println!("{}", body["access_token"].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn write_private(path: &std::path::Path, pem: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    std::io::Write::write_all(&mut file, pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// POSTs a form and answers the status and the body (at most [`MAX_ANSWER`] bytes).
pub fn post_form(url: &str, form: &[(&str, String)]) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let body = form
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let mut response = agent
        .post(url)
        .content_type("application/x-www-form-urlencoded")
        .send(body)
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .context("cannot read the answer")?;
    Ok((status, text))
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A client's private key: signs client assertions (RS384 with RSA, ES384 with P-384).
pub struct SigningKey {
    pair: Pair,
    /// The public JWK (with `kid`, `alg` and `use`).
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid())
            .finish()
    }
}

impl SigningKey {
    /// A fresh P-384 key and its PKCS#8 PEM.
    pub fn generate_es384() -> anyhow::Result<(SigningKey, String)> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate a P-384 key"))?;
        let der = pkcs8.as_ref();
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        let encoded = STANDARD.encode(der);
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok((SigningKey::from_pkcs8(der)?, pem))
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<SigningKey> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        SigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
    }

    /// A PKCS#8 `PRIVATE KEY` PEM (as `openssl genpkey` writes it).
    pub fn from_pem(pem: &str) -> anyhow::Result<SigningKey> {
        let mut inside = false;
        let mut body = String::new();
        for line in pem.lines().map(str::trim) {
            if line == "-----BEGIN PRIVATE KEY-----" {
                inside = true;
            } else if line == "-----END PRIVATE KEY-----" {
                break;
            } else if inside {
                body.push_str(line);
            } else if line.starts_with("-----BEGIN") {
                bail!("expected a PKCS#8 PEM (BEGIN PRIVATE KEY), found {line}");
            }
        }
        if body.is_empty() {
            bail!("no PKCS#8 private key (BEGIN PRIVATE KEY) found");
        }
        let der = STANDARD
            .decode(body)
            .context("the PEM's body is not base64")?;
        SigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> anyhow::Result<SigningKey> {
        if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
            let public = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
            let (n, e) = (b64(&public.n), b64(&public.e));
            let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            let jwk = json!({
                "kty": "RSA", "n": n, "e": e,
                "kid": kid(&thumbprint), "alg": "RS384", "use": "sig",
            });
            return Ok(SigningKey {
                pair: Pair::Rsa(rsa),
                jwk,
            });
        }
        let rng = SystemRandom::new();
        let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
            .map_err(|e| anyhow::anyhow!("not an RSA or P-384 private key ({e})"))?;
        let point = ec.public_key().as_ref();
        let (x, y) = (b64(&point[1..49]), b64(&point[49..97]));
        let thumbprint = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jwk = json!({
            "kty": "EC", "crv": "P-384", "x": x, "y": y,
            "kid": kid(&thumbprint), "alg": "ES384", "use": "sig",
        });
        Ok(SigningKey {
            pair: Pair::Ec(ec),
            jwk,
        })
    }

    /// `RS384` or `ES384`.
    pub fn algorithm(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS384",
            Pair::Ec(_) => "ES384",
        }
    }

    pub fn kid(&self) -> &str {
        self.jwk["kid"].as_str().unwrap_or_default()
    }

    /// The public JWKS to register: `{"keys": [the public JWK]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// The standard assertion: `iss` = `sub` = the client id, `aud` the token URL, a fresh `jti`,
    /// `iat` now and `exp` four minutes on, signed with this key (header `alg`, `kid`, `typ`).
    pub fn assertion(&self, client_id: &str, token_url: &str, now: u64) -> String {
        self.sign(&self.header(), &assertion_claims(client_id, token_url, now))
    }

    /// The header this key signs with: `alg`, `kid`, `typ: JWT`.
    pub fn header(&self) -> Value {
        json!({ "alg": self.algorithm(), "kid": self.kid(), "typ": "JWT" })
    }

    /// A compact JWS of `claims` under `header` exactly as given (even a header that lies about
    /// the algorithm: tests need such forgeries), signed with this key's algorithm.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Rsa(rsa) => {
                let mut sig = vec![0; rsa.public().modulus_len()];
                rsa.sign(
                    &signature::RSA_PKCS1_SHA384,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map(|()| sig)
                .unwrap_or_default()
            }
            Pair::Ec(ec) => ec
                .sign(&rng, input.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// The claims of a client assertion made now, valid for four minutes.
pub fn assertion_claims(client_id: &str, token_url: &str, now: u64) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now,
        "exp": now + 240,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638: the base64url SHA-256 of the JWK's required members in lexicographic order.
fn kid(canonical: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_assertions_that_auth_verifies() {
        let (key, pem) = SigningKey::generate_es384().unwrap();
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.kid(), key.kid(), "the kid is the key's thumbprint");
        let jwks = auth::Jwks::parse(&key.jwks().to_string()).unwrap();
        let now = 1_800_000_000;
        let assertion = again.assertion("c1", "https://hie.example/auth/token", now);
        let expected = auth::Expected {
            client_id: "c1",
            token_url: "https://hie.example/auth/token",
            now,
        };
        let verified = auth::assertion::verify(&assertion, &jwks, &expected).unwrap();
        assert_eq!(verified.algorithm, auth::Algorithm::Es384);
    }

    #[test]
    fn pem_problems_are_named() {
        assert!(SigningKey::from_pem("nothing")
            .unwrap_err()
            .to_string()
            .contains("PKCS#8"));
        assert!(
            SigningKey::from_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n")
                .unwrap_err()
                .to_string()
                .contains("BEGIN RSA PRIVATE KEY")
        );
    }
}
