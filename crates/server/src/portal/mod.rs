//! The portal for people, server-rendered HTML without scripts or outside assets: `GET /portal`
//! (who you are), `GET`/`POST /portal/sign-in`, `POST /portal/sign-out`, and for a patient
//! `GET /portal/disclosures` (their accounting of disclosures) and `/portal/privacy` (their choice
//! to take part or opt out, and their permissions for sensitive records: [`privacy`]); for a
//! participant's users the break-the-glass notices about data they sent (`/portal/notices`:
//! [`notices`]); for a user who owns a Direct address the web inbox under `/portal/inbox`
//! ([`inbox`]); connecting to the exchange
//! ([`connect`]): the public application form `/portal/connect`, the applicant's pages under
//! `/portal/applications`, and the operator's queue `/portal/onboarding`; the public EHR
//! compatibility catalog at `/portal/ehr` with its request form, and the operators' tally of
//! requests ([`ehr`]); the mandate's compliance pages for operators and the providers' public
//! self-lookup under `/portal/compliance` ([`compliance`]); the one-time links with which a person
//! whose account an operator made chooses a password, `/portal/invite/{secret}` ([`invite`]).
//! Later pages build on the session this sets up.
//!
//! Sign-in: the login (any case), the argon2id password and, for an account with a second factor,
//! a TOTP code whose step the store takes once ([`store::Store::use_totp_step`]), so a code works
//! once. A wrong login, a wrong password or code, a locked account and a disabled one all get the
//! same page with the same message, and each verifies a password hash (a dummy one for an unknown
//! login), so neither the answer nor its timing tells which. After [`account::LOCK_AFTER`] failures
//! in a row the account locks for a minute, doubling with each further failure up to an hour.
//!
//! Sessions: a 256-bit random secret in the cookie `nutmeg_session` (`HttpOnly`, `SameSite=Strict`,
//! `Path=/portal`, `Secure` when the exchange's base URL is https); the store keeps only its
//! SHA-256. A session ends after 30 minutes without a request, 12 hours after sign-in, or at
//! sign-out. CSRF: every form that changes something carries the session's token, compared in
//! constant time; the sign-in form, shown before any session exists, carries a token that must equal
//! the one in the `nutmeg_signin` cookie (double submit). A form without the right token is a 403.
//!
//! The log gets user ids, never logins, passwords, codes, cookies or patient data.

pub mod account;
pub mod ccda;
pub mod compliance;
pub mod connect;
pub mod ehr;
pub mod html;
pub mod inbox;
pub mod invite;
pub mod limit;
pub mod multipart;
pub mod notices;
pub mod privacy;

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::access::Requester;
use serde_json::Value;
use store::{Session, User, UserStatus};

use crate::http::{RequestId, Shared};
use account::{same_token, session_hash, RoleCode};
use html::{cookie, escape, page, read_cookie, respond, see_other};

/// The session cookie.
pub const SESSION_COOKIE: &str = "nutmeg_session";
/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "nutmeg_signin";
/// A session ends this long after its last request...
pub const IDLE_SECONDS: i64 = 30 * 60;
/// ...and this long after sign-in, whatever happens.
pub const ABSOLUTE_SECONDS: i64 = 12 * 60 * 60;
/// How long a sign-in form may wait before it is sent.
const SIGN_IN_FORM_SECONDS: i64 = 60 * 60;
/// The largest form read.
const MAX_FORM: usize = 16 * 1024;
/// Disclosures shown per page.
const DISCLOSURES_PER_PAGE: &str = "50";
/// What every refused sign-in is told.
const REFUSED: &str = "The login, password or code is not right, or the account cannot sign in \
     right now. Check them and try again; after several failures the account is locked for a while.";

fn now() -> i64 {
    i64::try_from(crate::client::now()).unwrap_or(i64::MAX)
}

fn request_id(parts: &Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

fn client_address(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::serve::Peer>>()
        .map(|info| info.0 .0.ip())
}

/// Whether cookies must be `Secure`: the exchange is served over HTTPS.
fn secure(state: &Shared) -> bool {
    state.repo.config().base_url.starts_with("https://")
}

/// A failure of ours (the store, randomness): a 500 that shows nothing, its cause for the log.
fn internal(cause: impl std::fmt::Display) -> Response {
    let mut response = respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Something went wrong",
            "<h1>Something went wrong</h1>\n<p>Please try again later.</p>\n",
        ),
        &[],
    );
    response
        .extensions_mut()
        .insert(crate::http::Internal(cause.to_string()));
    response
}

fn forbidden() -> Response {
    respond(
        StatusCode::FORBIDDEN,
        page(
            "Refused",
            "<h1>Refused</h1>\n<p>This form has expired or did not come from this portal. \
             Go back, reload the page and try again.</p>\n",
        ),
        &[],
    )
}

/// The signed-in user of a request, if its session cookie names a live session of an active
/// account; the session is touched. A session past its limits is deleted.
async fn signed_in(state: &Shared, parts: &Parts) -> Result<Option<(Session, User)>, Response> {
    let Some(secret) = read_cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let store = state.repo.store();
    let hash = session_hash(&secret);
    let Some(session) = store.session(&hash).await.map_err(internal)? else {
        return Ok(None);
    };
    let now = now();
    let live = now < session.expires && now < session.last_seen.saturating_add(IDLE_SECONDS);
    let user = if live {
        store.user(&session.user_id).await.map_err(internal)?
    } else {
        None
    };
    match user {
        Some(user) if user.status == UserStatus::Active => {
            store.touch_session(&hash, now).await.map_err(internal)?;
            Ok(Some((session, user)))
        }
        _ => {
            store.delete_session(&hash).await.map_err(internal)?;
            Ok(None)
        }
    }
}

/// `GET /portal`: who you are, or a link to sign in.
pub async fn home(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (session, user) = match signed_in(&state, &parts).await {
        Ok(Some(signed)) => signed,
        Ok(None) => {
            return respond(
                StatusCode::OK,
                page(
                    "Portal",
                    "<h1>nutmeg portal</h1>\n<p>You are not signed in.</p>\n\
                     <p><a href=\"/portal/sign-in\">Sign in</a></p>\n\
                     <p>A provider? <a href=\"/portal/connect\">Apply to connect to the \
                     exchange</a></p>\n",
                ),
                &[],
            )
        }
        Err(response) => return response,
    };
    let role = RoleCode::parse(&user.role);
    let label: &str = match role {
        Some(role) => role.label(),
        None => &user.role,
    };
    let mut body = format!(
        "<h1>Signed in</h1>\n<dl>\n<dt>Name</dt><dd>{name}</dd>\n<dt>Login</dt><dd>{login}</dd>\n\
         <dt>Role</dt><dd>{role}</dd>\n",
        name = escape(&user.display_name),
        login = escape(&user.login),
        role = escape(label),
    );
    if let Some(participant) = &user.participant_id {
        let who = Requester::system(request_id(&parts));
        let name = match state.repo.participant(&who, participant).await {
            Ok(p) => format!("{} ({})", escape(&p.name), escape(participant)),
            Err(e) if e.status() >= 500 => return internal(e),
            Err(_) => escape(participant),
        };
        body.push_str(&format!("<dt>Participant</dt><dd>{name}</dd>\n"));
    }
    if let Some(patient) = &user.patient_id {
        body.push_str(&format!(
            "<dt>Your record</dt><dd>Patient/{}</dd>\n",
            escape(patient)
        ));
    }
    body.push_str("</dl>\n");
    if state.direct.is_some() {
        match crate::smtp::hisp::user_addresses(state.repo.store(), &user.user_id).await {
            Ok(addresses) if !addresses.is_empty() => {
                let mut unread = 0;
                for a in &addresses {
                    unread += match state.repo.store().unread_mail(&a.address).await {
                        Ok(n) => n,
                        Err(e) => return internal(e),
                    };
                }
                body.push_str(&format!(
                    "<p><a href=\"/portal/inbox\">Secure messages</a> ({unread} unread)</p>\n"
                ));
            }
            Ok(_) => {}
            Err(e) => return internal(e),
        }
    }
    match notices::count(&state, &user, &parts).await {
        Ok(Some(n)) => body.push_str(&format!(
            "<p><a href=\"/portal/notices\">Emergency access notices</a> ({n})</p>\n"
        )),
        Ok(None) => {}
        Err(response) => return response,
    }
    if role == Some(RoleCode::OperatorAdmin) {
        body.push_str("<p><a href=\"/portal/onboarding\">Onboarding queue</a></p>\n");
    }
    match state.repo.store().applications_of_user(&user.user_id).await {
        Ok(applications) if !applications.is_empty() => body
            .push_str("<p><a href=\"/portal/applications\">Your application to connect</a></p>\n"),
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    if role == Some(RoleCode::Patient) {
        body.push_str(
            "<p><a href=\"/portal/privacy\">Your privacy choices: take part or opt out, \
             and permissions for your sensitive records</a></p>\n\
             <p><a href=\"/portal/disclosures\">Who has seen your record \
             (accounting of disclosures)</a></p>\n",
        );
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/sign-out\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <button type=\"submit\">Sign out</button>\n</form>\n",
        escape(&session.csrf)
    ));
    respond(StatusCode::OK, page("Portal", &body), &[])
}

/// The sign-in page with a fresh double-submit token (and its cookie), and a message if any.
fn sign_in_page(state: &Shared, message: Option<&str>, login: &str) -> Response {
    let token = match account::random_token(32) {
        Ok(token) => token,
        Err(e) => return internal(e),
    };
    let message = message
        .map(|m| format!("<p role=\"alert\"><strong>{}</strong></p>\n", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>\n{message}<form method=\"post\" action=\"/portal/sign-in\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
         <p><label>Login<br><input name=\"login\" value=\"{login}\" autocomplete=\"username\" \
         required></label></p>\n\
         <p><label>Password<br><input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label></p>\n\
         <p><label>Code from your authenticator app (if your account has one)<br>\
         <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         maxlength=\"6\"></label></p>\n\
         <p><button type=\"submit\">Sign in</button></p>\n</form>\n",
        token = escape(&token),
        login = escape(login),
    );
    respond(
        StatusCode::OK,
        page("Sign in", &body),
        &[cookie(
            SIGN_IN_COOKIE,
            &token,
            SIGN_IN_FORM_SECONDS,
            secure(state),
        )],
    )
}

/// `GET /portal/sign-in`.
pub async fn sign_in_form(State(state): State<Shared>) -> Response {
    sign_in_page(&state, None, "")
}

/// A hash to verify passwords against when the login is unknown, so that the answer takes as
/// long as for a known one.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| auth::password::hash("nutmeg portal: no such account").ok())
        .as_deref()
}

/// Verifies a password on the blocking pool (argon2id takes tens of milliseconds of CPU).
/// Whether `password` matches `stored` (argon2id, off the async threads); with `None`, the same
/// work against a dummy hash, so that an unknown login takes as long as a known one.
pub async fn verify_password(password: String, stored: Option<String>) -> bool {
    let verified = tokio::task::spawn_blocking(move || {
        let stored: &str = match &stored {
            Some(stored) => stored,
            None => dummy_hash()?,
        };
        auth::password::verify(&password, stored).ok()
    })
    .await;
    matches!(verified, Ok(Some(true)))
}

/// Why a sign-in was refused, for the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Password,
    Code,
    Locked,
    Disabled,
}

/// `POST /portal/sign-in`.
pub async fn sign_in(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = read_form(body).await else {
        return forbidden();
    };
    let expected = read_cookie(&parts.headers, SIGN_IN_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !same_token(&expected, sent) {
        return forbidden();
    }
    let login = form.get("login").map(|l| l.trim()).unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let code = form.get("code").map(|c| c.trim()).unwrap_or_default();
    let store = state.repo.store();
    let now = now();

    let user = if login.is_empty() {
        None
    } else {
        match store.user_by_login(login).await {
            Ok(user) => user,
            Err(e) => return internal(e),
        }
    };
    let Some(user) = user else {
        verify_password(password, None).await;
        tracing::info!("portal sign-in refused: no such login");
        return sign_in_page(&state, Some(REFUSED), login);
    };
    match check(&state, &user, password, code, now).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => {
            tracing::info!(user_id = %user.user_id, reason = ?refusal, "portal sign-in refused");
            return sign_in_page(&state, Some(REFUSED), login);
        }
        Err(response) => return response,
    }
    // A session this browser held before (perhaps another person's) ends with this sign-in.
    if let Some(previous) = read_cookie(&parts.headers, SESSION_COOKIE) {
        if let Err(e) = store.delete_session(&session_hash(&previous)).await {
            return internal(e);
        }
    }
    match start_session(&state, &user, now).await {
        Ok(response) => {
            tracing::info!(user_id = %user.user_id, role = %user.role, "portal sign-in");
            response
        }
        Err(response) => response,
    }
}

/// Checks a sign-in of a known account, counting failures and locking it after too many.
async fn check(
    state: &Shared,
    user: &User,
    password: String,
    code: &str,
    now: i64,
) -> Result<Result<(), Refusal>, Response> {
    check_credentials(state.repo.store(), user, password, code, now)
        .await
        .map_err(internal)
}

/// Checks the password (and the TOTP code, when the account has a secret) of a known account at
/// `now` (seconds), counting a failure and locking the account after too many
/// ([`account::lockout_seconds`]): the one rule the portal's sign-in and SMTP submission
/// (`smtp::submission`) share. `Err` for a local failure (the store).
pub async fn check_credentials(
    store: &store::Store,
    user: &User,
    password: String,
    code: &str,
    now: i64,
) -> anyhow::Result<Result<(), Refusal>> {
    let password_ok = verify_password(password.clone(), Some(user.password_hash.clone())).await;
    if user.status != UserStatus::Active {
        return Ok(Err(Refusal::Disabled));
    }
    if user.locked_until.is_some_and(|until| now < until) {
        return Ok(Err(Refusal::Locked));
    }
    let refusal = if !password_ok {
        Some(Refusal::Password)
    } else if let Some(secret) = &user.totp_secret {
        let secret = account::unhex(secret).and_then(|b| auth::TotpSecret::from_bytes(&b).ok());
        let Some(secret) = secret else {
            anyhow::bail!("user {}'s TOTP secret cannot be read", user.user_id);
        };
        let last = user.last_totp_step.and_then(|s| u64::try_from(s).ok());
        let step = secret
            .verify(code, u64::try_from(now).unwrap_or(0), last)
            .ok()
            .and_then(|step| i64::try_from(step).ok());
        let taken = match step {
            Some(step) => store.use_totp_step(&user.user_id, step).await?,
            None => false,
        };
        (!taken).then_some(Refusal::Code)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let failures = store.record_failed_sign_in(&user.user_id).await?;
        if let Some(seconds) = account::lockout_seconds(failures) {
            store
                .lock_user_until(&user.user_id, now.saturating_add(seconds))
                .await?;
            tracing::warn!(
                user_id = %user.user_id,
                failures,
                locked_seconds = seconds,
                "portal account locked after failed sign-ins"
            );
        }
        return Ok(Err(refusal));
    }
    if user.failed_attempts > 0 || user.locked_until.is_some() {
        store.reset_failed_sign_ins(&user.user_id).await?;
    }
    if auth::password::needs_rehash(&user.password_hash) {
        // A hash made with older parameters is replaced now that the password is at hand.
        let fresh = tokio::task::spawn_blocking(move || auth::password::hash(&password)).await;
        if let Ok(Ok(fresh)) = fresh {
            store.set_password_hash(&user.user_id, &fresh).await?;
            tracing::info!(user_id = %user.user_id, "portal password hash renewed");
        }
    }
    Ok(Ok(()))
}

/// A new session for `user`: stored by its hash, its cookie set, the sign-in cookie removed.
async fn start_session(state: &Shared, user: &User, now: i64) -> Result<Response, Response> {
    let store = state.repo.store();
    let secret = account::random_token(32).map_err(internal)?;
    let csrf = account::random_token(32).map_err(internal)?;
    store
        .delete_expired_sessions(now, now - IDLE_SECONDS)
        .await
        .map_err(internal)?;
    store
        .create_session(Session {
            id_hash: session_hash(&secret),
            user_id: user.user_id.clone(),
            csrf,
            created: now,
            expires: now + ABSOLUTE_SECONDS,
            last_seen: now,
        })
        .await
        .map_err(internal)?;
    let secure = secure(state);
    Ok(see_other(
        "/portal",
        &[
            cookie(SESSION_COOKIE, &secret, ABSOLUTE_SECONDS, secure),
            cookie(SIGN_IN_COOKIE, "", 0, secure),
        ],
    ))
}

/// Hashes a new password (argon2id) on the blocking pool; a failure is a 500.
async fn hash_password(password: String) -> Result<String, Response> {
    match tokio::task::spawn_blocking(move || auth::password::hash(&password)).await {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

async fn read_form(body: Body) -> Option<std::collections::HashMap<String, String>> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.ok()?;
    html::parse_form(&bytes)
}

/// `POST /portal/sign-out`: ends the session (its form must carry the session's token).
pub async fn sign_out(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (session, user) = match signed_in(&state, &parts).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return see_other("/portal", &[]),
        Err(response) => return response,
    };
    let Some(form) = read_form(body).await else {
        return forbidden();
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !same_token(&session.csrf, sent) {
        return forbidden();
    }
    if let Err(e) = state.repo.store().delete_session(&session.id_hash).await {
        return internal(e);
    }
    tracing::info!(user_id = %user.user_id, "portal sign-out");
    see_other("/portal", &[cookie(SESSION_COOKIE, "", 0, secure(&state))])
}

/// `GET /portal/disclosures[?page=N]`: a patient's accounting of disclosures, newest first.
pub async fn disclosures(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match signed_in(&state, &parts).await {
        Ok(Some((_, user))) => user,
        Ok(None) => return see_other("/portal/sign-in", &[]),
        Err(response) => return response,
    };
    let (Some(patient), Some(who)) = (
        user.patient_id.clone(),
        account::requester(&user, &request_id(&parts)),
    ) else {
        return see_other("/portal", &[]);
    };
    if RoleCode::parse(&user.role) != Some(RoleCode::Patient) {
        return see_other("/portal", &[]);
    }
    let who = who.with_client_address(client_address(&parts));
    let mut params = vec![("_count".to_string(), DISCLOSURES_PER_PAGE.to_string())];
    if let Some(page) = query_param(parts.uri.query(), "page").filter(|p| is_cursor(p)) {
        params.push(("_page".to_string(), page));
    }
    let bundle = match state.repo.disclosures(&who, &patient, &params).await {
        Ok(bundle) => bundle,
        Err(e) if e.status() >= 500 => return internal(e),
        Err(_) => {
            return respond(
                StatusCode::OK,
                page(
                    "Who has seen your record",
                    "<h1>Who has seen your record</h1>\n<p>Your account is not linked to a \
                     record the exchange holds. Please contact the exchange's operator.</p>\n",
                ),
                &[],
            )
        }
    };
    respond(
        StatusCode::OK,
        page("Who has seen your record", &disclosures_body(&bundle)),
        &[],
    )
}

/// A cursor as the repository makes them: a sequence number.
fn is_cursor(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    html::parse_form(query?.as_bytes())?.remove(name)
}

/// The accounting as a table: when, who, why, what they did, and which of the patient's resources.
fn disclosures_body(bundle: &Value) -> String {
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut body = String::from(
        "<h1>Who has seen your record</h1>\n<p>Every time a participant of the exchange \
         received your data, newest first.</p>\n",
    );
    if entries.is_empty() {
        body.push_str("<p>No participant has received your data through the exchange.</p>\n");
    } else {
        body.push_str(
            "<table>\n<thead><tr><th>Date</th><th>Recipient</th><th>Purpose</th>\
             <th>Action</th><th>What</th></tr></thead>\n<tbody>\n",
        );
        for entry in &entries {
            body.push_str(&row(&entry["resource"]));
        }
        body.push_str("</tbody>\n</table>\n");
    }
    let next = bundle["link"].as_array().and_then(|links| {
        links
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .and_then(|url| query_param(url.split_once('?').map(|(_, q)| q), "_page"))
            .filter(|p| is_cursor(p))
    });
    if let Some(next) = next {
        body.push_str(&format!(
            "<p><a href=\"/portal/disclosures?page={}\">Older</a></p>\n",
            escape(&next)
        ));
    }
    body.push_str("<p><a href=\"/portal\">Back</a></p>\n");
    body
}

/// One disclosure's row.
fn row(event: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let codings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                // `purposeOfEvent` holds CodeableConcepts, `subtype` Codings.
                let codings = c["coding"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![c.clone()]);
                codings.into_iter().map(|c| {
                    c["display"]
                        .as_str()
                        .or(c["code"].as_str())
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .filter(|s| !s.is_empty())
            .collect()
    };
    let recipient = &event["agent"][0]["who"];
    let recipient = recipient["display"]
        .as_str()
        .or(recipient["reference"].as_str())
        .unwrap_or("(unknown)");
    let what: Vec<String> = event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str())
        .map(escape)
        .collect();
    // Emergency access (break-the-glass) is said in words, not left to a purpose code.
    let emergency = event["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["code"] == "break-the-glass");
    let mut purpose = escape(&codings(&event["purposeOfEvent"]).join(", "));
    if emergency {
        purpose = format!(
            "<strong>Emergency access (break-the-glass)</strong>: {purpose}. {}. \
             The exchange's privacy officer reviews every emergency access, and the \
             providers who sent the data were told.",
            escape(
                event["outcomeDesc"]
                    .as_str()
                    .unwrap_or("without a treatment relationship")
            )
        );
    }
    format!(
        "<tr{class}><td>{date}</td><td>{recipient}</td><td>{purpose}</td><td>{action}</td>\
         <td>{what}</td></tr>\n",
        class = if emergency {
            " class=\"emergency\""
        } else {
            ""
        },
        date = escape(&text(&event["recorded"])),
        recipient = escape(recipient),
        action = escape(&codings(&event["subtype"]).join(", ")),
        what = what.join("<br>"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn disclosure_rows_escape_everything() {
        let event = json!({
            "recorded": "2026-01-02T03:04:05Z",
            "agent": [{ "who": { "reference": "Organization/o1", "display": "<b>Evil</b> & Co" } }],
            "purposeOfEvent": [{ "coding": [{ "code": "TREAT", "display": "treatment" }] }],
            "subtype": [{ "code": "read" }],
            "entity": [{ "what": { "reference": "Patient/p1\"><script>" } }],
        });
        let row = super::row(&event);
        assert!(row.contains("&lt;b&gt;Evil&lt;/b&gt; &amp; Co"), "{row}");
        assert!(row.contains("<td>treatment</td><td>read</td>"), "{row}");
        assert!(row.contains("Patient/p1&quot;&gt;&lt;script&gt;"), "{row}");
        assert!(!row.contains("<script>"));
    }

    #[test]
    fn emergency_access_is_said_in_words() {
        let event = json!({
            "meta": { "tag": [{ "system": "https://nutmeg.example/fhir/CodeSystem/notice", "code": "break-the-glass" }] },
            "recorded": "2026-01-02T03:04:05Z",
            "outcomeDesc": "emergency access (ETREAT) without a treatment relationship",
            "agent": [{ "who": { "reference": "Organization/o1", "display": "ER Hospital" } }],
            "purposeOfEvent": [{ "coding": [{ "code": "ETREAT" }] }],
            "subtype": [{ "code": "operation" }],
            "entity": [],
        });
        let row = super::row(&event);
        assert!(row.contains("class=\"emergency\""), "{row}");
        assert!(
            row.contains("<strong>Emergency access (break-the-glass)</strong>"),
            "{row}"
        );
        assert!(row.contains("without a treatment relationship"), "{row}");
        let plain = super::row(&json!({ "purposeOfEvent": [{ "coding": [{ "code": "TREAT" }] }] }));
        assert!(!plain.contains("Emergency"), "{plain}");
    }

    #[test]
    fn the_next_page_is_a_number() {
        let bundle = json!({
            "entry": [],
            "link": [{ "relation": "next", "url": "https://x/fhir/Patient/p/$disclosures?_count=50&_page=41" }],
        });
        let body = super::disclosures_body(&bundle);
        assert!(body.contains("/portal/disclosures?page=41"), "{body}");
        assert!(body.contains("No participant has received your data"));
        assert!(super::is_cursor("123"));
        assert!(!super::is_cursor("12a"));
        assert!(!super::is_cursor(""));
    }
}
