//! A minimal blocking FHIR client over ureq: one per thread, so that each closed-loop client keeps its
//! own keep-alive connection. Any status is returned as data; only transport failures are errors.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A shell command that prints a bearer token (for example `nutmeg client token ...`); with it,
/// every request carries `Authorization: Bearer`. Run again when its token is this old (the
/// exchange's tokens live five minutes).
pub const TOKEN_COMMAND: &str = "NUTMEG_BENCH_TOKEN_COMMAND";
const TOKEN_REFRESH: Duration = Duration::from_secs(240);

static TOKEN: OnceLock<Mutex<Option<(String, Instant)>>> = OnceLock::new();

/// The current bearer token, if the environment names a command that makes one.
fn bearer() -> Result<Option<String>> {
    let Ok(command) = std::env::var(TOKEN_COMMAND) else {
        return Ok(None);
    };
    let mut current = TOKEN
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((token, made)) = current.as_ref() {
        if made.elapsed() < TOKEN_REFRESH {
            return Ok(Some(token.clone()));
        }
    }
    let output = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .with_context(|| format!("running {TOKEN_COMMAND}"))?;
    if !output.status.success() {
        bail!(
            "{TOKEN_COMMAND} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let token = String::from_utf8(output.stdout)?.trim().to_string();
    *current = Some((token.clone(), Instant::now()));
    Ok(Some(token))
}

/// Largest response body read (a big `$everything` page or a transaction response).
const BODY_LIMIT: u64 = 512 * 1024 * 1024;

pub struct Client {
    agent: ureq::Agent,
    base: String,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first OperationOutcome diagnostics (or the start of the body), to say why a request failed.
    pub fn reason(&self) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_str(&self.body).ok();
        let issue = parsed.as_ref().and_then(|v| v["issue"].get(0)).cloned();
        let text = match issue {
            Some(i) => format!(
                "{} {}",
                i["diagnostics"]
                    .as_str()
                    .or(i["details"]["text"].as_str())
                    .unwrap_or(""),
                i["expression"]
                    .get(0)
                    .and_then(|e| e.as_str())
                    .unwrap_or("")
            ),
            None => self.body.clone(),
        };
        text.chars().take(300).collect()
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .max_idle_connections_per_host(4)
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// GET a path relative to the base (`Patient?name=x`) or an absolute URL (a paging link).
    pub fn get(&self, path: &str) -> Result<Reply> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path)
        };
        let mut request = self
            .agent
            .get(&url)
            .header("Accept", "application/fhir+json");
        if let Some(token) = bearer()? {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()?;
        Ok(Reply { status, body })
    }

    /// POST a batch or transaction Bundle to the base.
    pub fn post_bundle(&self, body: &[u8]) -> Result<Reply> {
        let mut request = self
            .agent
            .post(&self.base)
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json")
            .header("Prefer", "return=minimal");
        if let Some(token) = bearer()? {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request
            .send(body)
            .with_context(|| format!("POST {}", self.base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()?;
        Ok(Reply { status, body })
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub use synth::encode;

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_query_values() {
        for (input, expected) in [
            ("Smith", "Smith"),
            ("http://loinc.org|8867-4", "http%3A%2F%2Floinc.org%7C8867-4"),
            ("Jiménez", "Jim%C3%A9nez"),
            ("O'Brien Jr", "O%27Brien%20Jr"),
        ] {
            assert_eq!(encode(input), expected);
        }
    }
}
