//! SMART Backend Services at the HTTP edge: `/.well-known/smart-configuration`, the token endpoint
//! `/auth/token` (OAuth 2 `client_credentials` with a `private_key_jwt` client assertion), and
//! [`Smart::verify_bearer`], which checks the access tokens it issued on each FHIR request.
//!
//! The token endpoint, in order: the form's parameters; the client named by the assertion's `iss`
//! (registered and active); its JWKS (registered, or fetched from its `jwks_url`, cached for five
//! minutes and fetched again for an unknown `kid` at most every 30 seconds); the assertion
//! (`auth::assertion::verify`: RS384/ES384, `iss` = `sub` = the client id, `aud` =
//! [`Smart::token_url`], `exp` at most five minutes ahead); its `jti`, which the store refuses to
//! see twice until it expires, across processes; the client's participant, which must be live; the
//! requested scopes, each of which must be registered (`auth::grant`); then a signed access token of
//! five minutes with the client, participant, scopes and purpose of use.
//!
//! Errors are RFC 6749 section 5.2 JSON (`invalid_request`, `invalid_client` (401: unknown or
//! revoked client, an assertion that does not verify, a reused `jti`), `invalid_grant` (the
//! participant is not live), `invalid_scope`, `unsupported_grant_type`), each with an
//! `error_description` for the client's engineer; only a store failure is a 5xx. Neither the
//! assertion nor the token is ever logged.
//!
//! A refused request is in the audit trail as a failed login (`exchange::audit::token_refusal_record`:
//! the caller's address, the client it claimed to be, the error), appended before the answer; a
//! flood costs the trail one record per caller address, error and minute ([`RefusalThrottle`]),
//! the next record saying how many were folded into it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth::{AccessToken, Jwks, PurposeOfUse, ScopeSet, TokenError, TokenKey};
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use exchange::access::Requester;
use serde_json::{json, Value};
use store::{ClientKeys, ClientStatus, Store};

use super::{Internal, Shared};

/// How long an access token lives.
pub const TOKEN_LIFETIME: u64 = 300;
/// How long a JWKS fetched from a client's `jwks_url` is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// An assertion with a `kid` the cached set lacks fetches the set again (the client may have rotated
/// its key), but not sooner than this after the last fetch, so that forged assertions cannot make the
/// exchange hammer a client's JWKS host.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// A JWKS fetch gives up after this long, and reads at most this much.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BYTES: u64 = 256 * 1024;
/// JWKS URLs cached at most; past this the cache starts over.
const JWKS_CACHE_ENTRIES: usize = 1024;
/// The largest token request body read.
const MAX_FORM: usize = 64 * 1024;

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/auth/token";

/// The SMART pieces built once at start: the token key, the token URL, the JWKS cache.
pub struct Smart {
    key: TokenKey,
    token_url: String,
    jwks: JwksCache,
    /// Whether each client was active when last read, and when: trusted for [`CLIENT_TTL`].
    clients: Mutex<HashMap<String, (bool, Instant)>>,
    /// Which refused requests are recorded one by one.
    refusals: RefusalThrottle,
}

/// How long one caller's refused token requests of one kind are folded into one audit record.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// The most (caller, error) windows remembered at once; past it the expired ones are forgotten.
const REFUSAL_KEYS: usize = 10_000;

/// Decides which refused token requests the audit trail records one by one: the first of a
/// caller's refusals of one kind in a [`REFUSAL_WINDOW`], with how many of that kind went
/// unrecorded since its last record. Per process, in memory.
#[derive(Debug, Default)]
pub struct RefusalThrottle {
    windows: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl RefusalThrottle {
    /// `Some(n)`: record this refusal, `n` like it having gone unrecorded before it; `None`: it
    /// is only counted.
    pub fn admit(&self, caller: &str, error: &str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (caller.to_string(), error.to_string());
        if let Some((start, folded)) = windows.get_mut(&key) {
            if now.saturating_duration_since(*start) < REFUSAL_WINDOW {
                *folded += 1;
                return None;
            }
            let before = *folded;
            *start = now;
            *folded = 0;
            return Some(before);
        }
        if windows.len() >= REFUSAL_KEYS {
            windows.retain(|_, (start, _)| now.saturating_duration_since(*start) < REFUSAL_WINDOW);
            if windows.len() >= REFUSAL_KEYS {
                windows.clear();
            }
        }
        windows.insert(key, (now, 0));
        Some(0)
    }
}

/// How long a client's status, once read, is trusted: a revocation made by `nutmeg admin` stops the
/// client's tokens within this time.
pub const CLIENT_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Smart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smart")
            .field("token_url", &self.token_url)
            .finish()
    }
}

/// What a valid access token says about the request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    /// The token's own id (for the audit trail).
    pub token_id: String,
    pub client_id: String,
    /// The participant (its Organization's id) the client acts for.
    pub participant_id: String,
    pub scopes: ScopeSet,
    pub purpose: PurposeOfUse,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a request's bearer token was refused: a 401 with [`BearerError::www_authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("an access token is required (Authorization: Bearer ...)")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    #[error("the access token is not valid")]
    InvalidSignature,
    #[error("the access token has expired")]
    Expired,
}

impl BearerError {
    /// The `WWW-Authenticate` value of the 401 (RFC 6750 section 3): without an error code when no
    /// token was sent, `invalid_token` otherwise.
    pub fn www_authenticate(self) -> String {
        match self {
            BearerError::Missing => r#"Bearer realm="nutmeg""#.to_string(),
            other => format!(
                r#"Bearer realm="nutmeg", error="invalid_token", error_description="{other}""#
            ),
        }
    }
}

/// The token URL for a FHIR base URL: the base without its trailing `/fhir`, then `/auth/token`.
pub fn token_url_for(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let root = base.strip_suffix("/fhir").unwrap_or(base);
    format!("{root}{TOKEN_PATH}")
}

impl Smart {
    /// With a signing key (at least 32 bytes) and the FHIR base URL the server advertises.
    pub fn new(key: &[u8], base_url: &str) -> Result<Smart, TokenError> {
        Ok(Smart {
            key: TokenKey::new(key)?,
            token_url: token_url_for(base_url),
            jwks: JwksCache::default(),
            clients: Mutex::default(),
            refusals: RefusalThrottle::default(),
        })
    }

    /// With the database's token key (made on first use, shared by every process of the exchange).
    pub async fn open(store: &Store, base_url: &str) -> anyhow::Result<Smart> {
        let key = store.token_key().await?;
        Ok(Smart::new(&key, base_url)?)
    }

    /// Whether the client is registered and active, as the store said at most [`CLIENT_TTL`] ago.
    pub async fn client_active(&self, store: &Store, client_id: &str) -> store::Result<bool> {
        {
            let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((active, at)) = clients.get(client_id) {
                if at.elapsed() < CLIENT_TTL {
                    return Ok(*active);
                }
            }
        }
        let active = store
            .client(client_id)
            .await?
            .is_some_and(|c| c.status == ClientStatus::Active);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= 10_000 {
            clients.retain(|_, (_, at)| at.elapsed() < CLIENT_TTL);
        }
        clients.insert(client_id.to_string(), (active, Instant::now()));
        Ok(active)
    }

    /// The token endpoint's URL: what a client assertion's `aud` must be.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) at `now` (seconds since the Unix
    /// epoch). An empty value is [`BearerError::Missing`].
    pub fn verify_bearer(&self, authorization: &str, now: u64) -> Result<Bearer, BearerError> {
        let value = authorization.trim();
        if value.is_empty() {
            return Err(BearerError::Missing);
        }
        let (scheme, token) = value.split_once(' ').ok_or(BearerError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Malformed);
        }
        let token = AccessToken::decode(token.trim(), &self.key, now).map_err(|e| match e {
            TokenError::Expired => BearerError::Expired,
            TokenError::BadSignature => BearerError::InvalidSignature,
            TokenError::Malformed | TokenError::KeyTooShort => BearerError::Malformed,
        })?;
        Ok(Bearer {
            token_id: token.id,
            client_id: token.client_id,
            participant_id: token.participant_id,
            scopes: token.scopes,
            purpose: token.purpose,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
        })
    }

    /// Signs an access token for a client of a participant (what the token endpoint answers with).
    pub fn issue(
        &self,
        client_id: &str,
        participant_id: &str,
        scopes: ScopeSet,
        purpose: PurposeOfUse,
        now: u64,
    ) -> (AccessToken, String) {
        let token = AccessToken::new(
            uuid::Uuid::new_v4().to_string(),
            client_id.to_string(),
            participant_id.to_string(),
            scopes,
            purpose,
            now,
            TOKEN_LIFETIME,
        );
        let encoded = token.encode(&self.key);
        (token, encoded)
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `GET /.well-known/smart-configuration`.
pub async fn configuration(State(state): State<Shared>) -> Response {
    let body = json!({
        "token_endpoint": state.smart.token_url(),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.rs", "system/*.cruds", "system/*.read", "system/*.write", "system/*.*",
            "system/Patient.rs", "system/Observation.rs"
        ],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "purpose_of_use_parameter": auth::purpose::PARAMETER,
        "purpose_of_use_supported": PurposeOfUse::ALL.iter().map(|p| p.code()).collect::<Vec<_>>(),
    });
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=3600"),
        )],
        Json(body),
    )
        .into_response()
}

/// An RFC 6749 section 5.2 error answer.
#[derive(Debug)]
struct OAuthError {
    error: &'static str,
    description: String,
    /// For the log only (a store failure).
    internal: Option<String>,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            description: description.into(),
            internal: None,
        }
    }

    fn server(cause: impl std::fmt::Display) -> OAuthError {
        OAuthError {
            error: "server_error",
            description: "the exchange could not answer; try again later".to_string(),
            internal: Some(cause.to_string()),
        }
    }

    fn status(&self) -> StatusCode {
        match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (status, no_store(), Json(body)).into_response();
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(Internal(cause));
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// `POST /auth/token`.
pub async fn token(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let address = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::serve::Peer>>()
        .map(|info| info.0 .0.ip().to_string());
    let Ok(body) = axum::body::to_bytes(body, MAX_FORM + 1).await else {
        return OAuthError::new("invalid_request", "the token request is too large")
            .into_response();
    };
    let mut seen = Claimed::default();
    match issue_token(&state, &parts.headers, &body, address.clone(), &mut seen).await {
        Ok(answer) => (StatusCode::OK, no_store(), Json(answer)).into_response(),
        Err(e) => {
            tracing::info!(error = e.error, "token request refused");
            if e.internal.is_none() {
                record_refusal(&state, &e, seen, address).await;
            }
            e.into_response()
        }
    }
}

/// Who a token request claimed to be, as far as it got.
#[derive(Debug, Default)]
struct Claimed {
    /// The assertion's issuer, when it reads as a client id (unverified).
    client: Option<String>,
    /// That client's participant, when the client is registered.
    participant: Option<String>,
}

/// Appends the audit record of a refused token request, unless [`RefusalThrottle`] folds it into
/// the next one. A failure to append is logged; the refusal is answered all the same.
async fn record_refusal(
    state: &super::AppState,
    refusal: &OAuthError,
    claimed: Claimed,
    address: Option<String>,
) {
    let caller = address.as_deref().unwrap_or("unknown");
    let Some(not_recorded_before) =
        state
            .smart
            .refusals
            .admit(caller, refusal.error, Instant::now())
    else {
        return;
    };
    let record = exchange::audit::token_refusal_record(&exchange::audit::TokenRefusal {
        recorded: i64::try_from(now())
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
        error: refusal.error.to_string(),
        description: refusal.description.clone(),
        claimed_client: claimed.client,
        participant: claimed.participant,
        client_address: address,
        not_recorded_before,
        server: state.repo.config().base_url.clone(),
    });
    if let Err(e) = state.repo.store().append_audit(vec![record]).await {
        tracing::error!(error = %e, "a refused token request could not be audited");
    }
}

/// Whether an unverified issuer reads as a client id (what `admin client add` makes), so that it
/// may be named in the audit trail.
fn client_id_like(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

async fn issue_token(
    state: &super::AppState,
    headers: &HeaderMap,
    body: &[u8],
    client_address: Option<String>,
    seen: &mut Claimed,
) -> Result<Value, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_type != Some(true) {
        return Err(OAuthError::new(
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM {
        return Err(OAuthError::new(
            "invalid_request",
            "the token request is too large",
        ));
    }
    let form = parse_form(body).map_err(|e| OAuthError::new("invalid_request", e))?;
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    match param("grant_type") {
        None => return Err(OAuthError::new("invalid_request", "grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ))
        }
    }
    if param("client_assertion_type") != Some(auth::assertion::CLIENT_ASSERTION_TYPE) {
        return Err(OAuthError::new(
            "invalid_request",
            format!(
                "client_assertion_type must be {}",
                auth::assertion::CLIENT_ASSERTION_TYPE
            ),
        ));
    }
    let assertion = param("client_assertion")
        .ok_or_else(|| OAuthError::new("invalid_request", "client_assertion is required"))?;
    let requested =
        param("scope").ok_or_else(|| OAuthError::new("invalid_request", "scope is required"))?;
    let purpose = PurposeOfUse::from_parameter(param(auth::purpose::PARAMETER))
        .map_err(|e| OAuthError::new("invalid_request", e.to_string()))?;

    let invalid_client = |e: auth::AssertionError| OAuthError::new(e.oauth_error(), e.to_string());
    let client_id = auth::assertion::unverified_issuer(assertion).map_err(invalid_client)?;
    if client_id_like(&client_id) {
        seen.client = Some(client_id.clone());
    }
    let store = state.repo.store();
    let client = store
        .client(&client_id)
        .await
        .map_err(OAuthError::server)?
        .ok_or_else(|| OAuthError::new("invalid_client", "no client is registered with this id"))?;
    seen.participant = Some(client.participant_id.clone());
    if client.status != ClientStatus::Active {
        return Err(OAuthError::new(
            "invalid_client",
            "this client's registration is revoked",
        ));
    }
    let smart = &state.smart;
    let now = now();
    let expected = auth::Expected {
        client_id: &client.client_id,
        token_url: &smart.token_url,
        now,
    };
    let verified = match &client.keys {
        ClientKeys::Jwks(text) => {
            // Registration checked it; a set that no longer parses is the exchange's problem.
            let jwks = Jwks::parse(text).map_err(|e| {
                OAuthError::server(format!(
                    "client {}'s registered JWKS: {e}",
                    client.client_id
                ))
            })?;
            auth::assertion::verify(assertion, &jwks, &expected).map_err(invalid_client)?
        }
        ClientKeys::JwksUrl(url) => {
            let (jwks, fresh) = smart.jwks.get(url, false).await.map_err(|e| {
                OAuthError::new("invalid_client", format!("the client's JWKS URL: {e}"))
            })?;
            match auth::assertion::verify(assertion, &jwks, &expected) {
                // A key rotated since the set was cached: fetch it again (at most every 30 s).
                Err(auth::AssertionError::UnknownKid) if !fresh => {
                    let (jwks, _) = smart.jwks.get(url, true).await.map_err(|e| {
                        OAuthError::new("invalid_client", format!("the client's JWKS URL: {e}"))
                    })?;
                    auth::assertion::verify(assertion, &jwks, &expected).map_err(invalid_client)?
                }
                other => other.map_err(invalid_client)?,
            }
        }
    };
    let first_use = store
        .remember_jti(&verified.client_id, &verified.jti, verified.expires_at, now)
        .await
        .map_err(OAuthError::server)?;
    if !first_use {
        return Err(OAuthError::new(
            "invalid_client",
            "the client assertion's jti was used before; make a new assertion for each request",
        ));
    }
    let participant = match state
        .repo
        .participant(&Requester::system("smart"), &client.participant_id)
        .await
    {
        Ok(p) => p,
        Err(e) if e.status() >= 500 => return Err(OAuthError::server(e)),
        Err(_) => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the client's participant is not registered",
            ))
        }
    };
    if !participant.status.may_hold_tokens() {
        return Err(OAuthError::new(
            "invalid_grant",
            format!(
                "the client's participant is {}; only onboarding and live participants receive tokens",
                participant.status
            ),
        ));
    }
    let registered = ScopeSet::parse(&client.scopes).map_err(|e| {
        OAuthError::server(format!(
            "client {}'s registered scopes: {e}",
            client.client_id
        ))
    })?;
    let granted = auth::grant(requested, &registered)
        .map_err(|e| OAuthError::new(e.oauth_error(), e.to_string()))?;
    let (token, encoded) = smart.issue(
        &client.client_id,
        &client.participant_id,
        granted,
        purpose,
        now,
    );
    // Recorded in the audit trail before the token leaves.
    record_issuance(
        state.repo.store(),
        &token,
        client_address,
        "token endpoint",
        &state.repo.config().base_url,
    )
    .await
    .map_err(OAuthError::server)?;
    tracing::info!(
        client = %client.client_id,
        participant = %client.participant_id,
        purpose = %purpose,
        token_id = %token.id,
        "access token issued"
    );
    Ok(token.response(&encoded, now))
}

/// Appends the audit record of an issued token (see `exchange::audit::issuance_record`), durably.
pub async fn record_issuance(
    store: &store::Store,
    token: &auth::AccessToken,
    client_address: Option<String>,
    via: &str,
    server: &str,
) -> Result<(), store::StoreError> {
    let record = exchange::audit::issuance_record(&exchange::audit::Issuance {
        recorded: token.issued_at as i64 * 1000,
        client_id: token.client_id.clone(),
        participant: token.participant_id.clone(),
        purpose: token.purpose.code().to_string(),
        scopes: token.scopes.to_string(),
        token_id: token.id.clone(),
        client_address,
        via: via.to_string(),
        server: server.to_string(),
    });
    store.append_audit(vec![record]).await.map(|_| ())
}

/// An `application/x-www-form-urlencoded` body; a parameter given twice is refused (RFC 6749
/// section 3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_string())?;
    let mut form = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the form is not UTF-8 once decoded".to_string())
        };
        let name = decode(name)?;
        if form.insert(name.clone(), decode(value)?).is_some() {
            let shown: String = name.chars().take(40).collect();
            return Err(format!("the parameter {shown} is given more than once"));
        }
    }
    Ok(form)
}

/// JWKS documents fetched from clients' `jwks_url`s, each kept for [`JWKS_TTL`].
#[derive(Default)]
struct JwksCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Jwks>)>>,
}

impl JwksCache {
    /// The set at `url` and whether it was fetched just now: from the cache while younger than
    /// [`JWKS_TTL`], or with `refresh` while younger than [`JWKS_MIN_REFRESH`].
    async fn get(&self, url: &str, refresh: bool) -> Result<(Arc<Jwks>, bool), String> {
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((fetched, jwks)) = entries.get(url) {
                let limit = if refresh { JWKS_MIN_REFRESH } else { JWKS_TTL };
                if fetched.elapsed() < limit {
                    return Ok((jwks.clone(), false));
                }
            }
        }
        let owned = url.to_string();
        let text = tokio::task::spawn_blocking(move || fetch(&owned))
            .await
            .map_err(|_| "the fetch failed".to_string())??;
        let jwks = Arc::new(Jwks::parse(&text).map_err(|e| e.to_string())?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= JWKS_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(url.to_string(), (Instant::now(), jwks.clone()));
        Ok((jwks, true))
    }
}

/// GETs a JWKS: no redirects, [`JWKS_TIMEOUT`], at most [`JWKS_MAX_BYTES`].
fn fetch(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(JWKS_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(|_| "it could not be fetched".to_string())?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("fetching it answered {status}"));
    }
    response
        .body_mut()
        .with_config()
        .limit(JWKS_MAX_BYTES)
        .read_to_string()
        .map_err(|_| "its answer could not be read (or is larger than 256 KiB)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smart() -> Smart {
        Smart::new(&[7; 32], "https://hie.example.org/fhir").unwrap()
    }

    #[test]
    fn the_token_url_is_beside_the_fhir_base() {
        assert_eq!(
            token_url_for("https://hie.example.org/fhir"),
            "https://hie.example.org/auth/token"
        );
        assert_eq!(
            token_url_for("http://127.0.0.1:8080/fhir/"),
            "http://127.0.0.1:8080/auth/token"
        );
        assert_eq!(
            token_url_for("https://hie.example.org"),
            "https://hie.example.org/auth/token"
        );
    }

    #[test]
    fn verify_bearer_accepts_issued_tokens_and_refuses_tampered_and_expired_ones() {
        let smart = smart();
        let now = 1_800_000_000;
        let scopes = ScopeSet::parse("system/Patient.rs").unwrap();
        let (_, token) = smart.issue("c1", "org-1", scopes.clone(), PurposeOfUse::Hoperat, now);
        let bearer = smart
            .verify_bearer(&format!("Bearer {token}"), now + 10)
            .unwrap();
        assert_eq!(bearer.client_id, "c1");
        assert_eq!(bearer.participant_id, "org-1");
        assert_eq!(bearer.scopes, scopes);
        assert_eq!(bearer.purpose, PurposeOfUse::Hoperat);
        assert_eq!(bearer.expires_at, now + TOKEN_LIFETIME);
        assert!(smart
            .verify_bearer(&format!("bearer  {token} "), now)
            .is_ok());

        let check = |header: &str, at: u64, expected: BearerError| {
            assert_eq!(smart.verify_bearer(header, at), Err(expected), "{header}");
        };
        check("", now, BearerError::Missing);
        check("   ", now, BearerError::Missing);
        check(&format!("Basic {token}"), now, BearerError::Malformed);
        check(&token, now, BearerError::Malformed);
        check("Bearer nonsense", now, BearerError::Malformed);
        check(
            &format!("Bearer {token}"),
            now + TOKEN_LIFETIME,
            BearerError::Expired,
        );
        // Another payload under the same MAC, and the MAC of another key.
        let (payload, mac) = token.rsplit_once('.').unwrap();
        let (_, other) = smart.issue("c2", "org-1", scopes.clone(), PurposeOfUse::Treat, now);
        let (other_payload, _) = other.rsplit_once('.').unwrap();
        check(
            &format!("Bearer {other_payload}.{mac}"),
            now,
            BearerError::InvalidSignature,
        );
        let stranger = Smart::new(&[8; 32], "https://hie.example.org/fhir").unwrap();
        let (_, foreign) = stranger.issue("c1", "org-1", scopes, PurposeOfUse::Treat, now);
        check(
            &format!("Bearer {foreign}"),
            now,
            BearerError::InvalidSignature,
        );
        assert!(payload.starts_with("nt1."));
        assert!(BearerError::Expired
            .www_authenticate()
            .contains(r#"error="invalid_token""#));
        assert!(!BearerError::Missing.www_authenticate().contains("error="));
    }

    #[test]
    fn refusals_are_recorded_once_per_caller_kind_and_minute_and_the_rest_counted() {
        let throttle = RefusalThrottle::default();
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(throttle.admit("10.0.0.1", "invalid_client", t0), Some(0));
        for s in 1..=5 {
            assert_eq!(throttle.admit("10.0.0.1", "invalid_client", later(s)), None);
        }
        // Another kind, another caller: recorded at once.
        assert_eq!(
            throttle.admit("10.0.0.1", "invalid_grant", later(2)),
            Some(0)
        );
        assert_eq!(
            throttle.admit("10.0.0.2", "invalid_client", later(2)),
            Some(0)
        );
        // A minute on: recorded, saying five went unrecorded; then counting starts again.
        assert_eq!(
            throttle.admit("10.0.0.1", "invalid_client", later(60)),
            Some(5)
        );
        assert_eq!(
            throttle.admit("10.0.0.1", "invalid_client", later(61)),
            None
        );
        assert_eq!(
            throttle.admit("10.0.0.1", "invalid_client", later(125)),
            Some(1)
        );
    }

    #[test]
    fn forms_are_decoded_and_repeated_parameters_refused() {
        let form = parse_form(b"a=1&b=x+y%2Bz&c=&d").unwrap();
        assert_eq!(form["a"], "1");
        assert_eq!(form["b"], "x y+z");
        assert_eq!(form["c"], "");
        assert_eq!(form["d"], "");
        assert!(parse_form(b"a=1&a=2")
            .unwrap_err()
            .contains("more than once"));
        assert!(parse_form(b"a=%FF").is_err());
    }
}
