//! Invitations: how a person whose account an operator made gets a password. An application
//! entered by an operator (`nutmeg admin application add`, `POST /api/applications`) makes the
//! applicant's account without one, and `nutmeg admin user add --invite` and
//! `nutmeg admin user invite LOGIN` do the same for any account (also to let someone who forgot
//! their password choose another). The operator gets a one-time link,
//! `BASE/portal/invite/SECRET`, to send its owner: `GET` shows whose account it is and a form,
//! `POST` (the form's double-submit CSRF token, the portal's password rules) sets the password,
//! takes the invitation, forgets failed sign-ins and ends the account's sessions; then the person
//! signs in as anyone does (with a second factor, if the account has one).
//!
//! The secret is 256 random bits; the store keeps only its SHA-256, so a copy of the database sets
//! nobody's password. A link works once, for [`INVITATION_SECONDS`], and only the newest of an
//! account's links works. A link that is unknown, taken, expired or replaced, or whose account is
//! disabled, gets one page (410) that says so without telling which; the log gets the account's
//! id, never the secret.

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use store::{NewInvitation, User, UserStatus};

use super::account::{self, same_token, session_hash};
use super::html::{cookie, escape, page, read_cookie, respond};
use super::{forbidden, internal, now, read_form, secure};
use crate::http::Shared;

/// How long an invitation link works: two weeks.
pub const INVITATION_SECONDS: i64 = 14 * 24 * 60 * 60;
/// The invitation form's double-submit cookie.
const INVITE_COOKIE: &str = "nutmeg_invite";
/// How long the form may wait before it is sent.
const FORM_SECONDS: i64 = 60 * 60;

/// A fresh invitation made at `now` (seconds): the link's secret (given to the operator, never
/// stored) and what the store keeps.
pub fn new_invitation(now: i64) -> anyhow::Result<(String, NewInvitation)> {
    let secret = account::random_token(32)?;
    let invitation = NewInvitation {
        token_hash: session_hash(&secret),
        created: now,
        expires: now.saturating_add(INVITATION_SECONDS),
    };
    Ok((secret, invitation))
}

/// The link an invitation's owner opens: the portal beside the FHIR base URL (the base without
/// its trailing `/fhir`, as for the token URL).
pub fn link(base_url: &str, secret: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let root = base.strip_suffix("/fhir").unwrap_or(base);
    format!("{root}/portal/invite/{secret}")
}

/// An invitation as `--json` and the API show it to the operator: the link and when it ends.
pub fn invitation_json(base_url: &str, secret: &str, expires: i64) -> Value {
    json!({
        "url": link(base_url, secret),
        "expires": expires_text(expires),
    })
}

/// When an invitation ends, as RFC 3339.
pub fn expires_text(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A secret as [`account::random_token`] makes them (43 URL-safe characters); anything else is
/// not looked up.
fn well_formed(secret: &str) -> bool {
    secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The page for every link that cannot be used.
fn gone() -> Response {
    respond(
        StatusCode::GONE,
        page(
            "Invitation not valid",
            "<h1>This invitation link cannot be used</h1>\n<p>It was already used, it expired, \
             a newer link was sent, or the account is closed. Ask the exchange's operator for a \
             new link; if you have set your password, <a href=\"/portal/sign-in\">sign in</a>.\
             </p>\n",
        ),
        &[],
    )
}

/// The account an open invitation sets the password of, or `None`.
async fn invited(state: &Shared, secret: &str) -> Result<Option<User>, Response> {
    if !well_formed(secret) {
        return Ok(None);
    }
    let store = state.repo.store();
    let Some(invitation) = store
        .invitation(&session_hash(secret))
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    if !invitation.open_at(now()) {
        return Ok(None);
    }
    let user = store.user(&invitation.user_id).await.map_err(internal)?;
    Ok(user.filter(|u| u.status == UserStatus::Active))
}

/// The form, with a fresh double-submit token and the problems of a refused attempt.
fn form_page(
    state: &Shared,
    status: StatusCode,
    secret: &str,
    user: &User,
    problems: &[String],
) -> Response {
    let token = match account::random_token(32) {
        Ok(token) => token,
        Err(e) => return internal(e),
    };
    let problems = if problems.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = problems
            .iter()
            .map(|p| format!("<li>{}</li>", escape(p)))
            .collect();
        format!(
            "<div role=\"alert\"><p><strong>The password was not set:</strong></p>\n<ul>\n{}\n\
             </ul></div>\n",
            items.join("\n")
        )
    };
    let body = format!(
        "<h1>Choose your password</h1>\n<p>The exchange made a portal account for \
         <strong>{name}</strong>. Your login is <strong>{login}</strong>. Choose a password to \
         sign in with; this link then stops working.</p>\n{problems}\
         <form method=\"post\" action=\"/portal/invite/{secret}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
         <input type=\"hidden\" name=\"login\" value=\"{login}\" autocomplete=\"username\">\n\
         <p><label>Password (at least {min} characters)<br><input name=\"password\" \
         type=\"password\" autocomplete=\"new-password\" required></label></p>\n\
         <p><label>Password again<br><input name=\"password_again\" type=\"password\" \
         autocomplete=\"new-password\" required></label></p>\n\
         <p><button type=\"submit\">Set my password</button></p>\n</form>\n",
        name = escape(&user.display_name),
        login = escape(&user.login),
        secret = escape(secret),
        token = escape(&token),
        min = account::MIN_PASSWORD_CHARS,
    );
    respond(
        status,
        page("Choose your password", &body),
        &[cookie(INVITE_COOKIE, &token, FORM_SECONDS, secure(state))],
    )
}

/// `GET /portal/invite/{secret}`.
pub async fn show(State(state): State<Shared>, UrlPath(secret): UrlPath<String>) -> Response {
    match invited(&state, &secret).await {
        Ok(Some(user)) => form_page(&state, StatusCode::OK, &secret, &user, &[]),
        Ok(None) => gone(),
        Err(response) => response,
    }
}

/// `POST /portal/invite/{secret}`: sets the password and takes the invitation.
pub async fn accept(
    State(state): State<Shared>,
    UrlPath(secret): UrlPath<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = read_form(body).await else {
        return forbidden();
    };
    let expected = read_cookie(&parts.headers, INVITE_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !same_token(&expected, sent) {
        return forbidden();
    }
    let user = match invited(&state, &secret).await {
        Ok(Some(user)) => user,
        Ok(None) => return gone(),
        Err(response) => return response,
    };
    let password = form.get("password").cloned().unwrap_or_default();
    let again = form.get("password_again").cloned().unwrap_or_default();
    let mut problems = account::password_problems(&password, &user.login);
    if password != again {
        problems.push("the two passwords differ".to_string());
    }
    if !problems.is_empty() {
        return form_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &secret,
            &user,
            &problems,
        );
    }
    let hash = match super::hash_password(password).await {
        Ok(hash) => hash,
        Err(response) => return response,
    };
    let taken = state
        .repo
        .store()
        .accept_invitation(&session_hash(&secret), &hash, now())
        .await;
    match taken {
        Ok(Some(user_id)) => {
            tracing::info!(user_id = %user_id, "portal password set from an invitation");
            respond(
                StatusCode::OK,
                page(
                    "Password set",
                    &format!(
                        "<h1>Your password is set</h1>\n<p>Sign in with your login, \
                         <strong>{}</strong>, and the password you chose.</p>\n\
                         <p><a href=\"/portal/sign-in\">Sign in</a></p>\n",
                        escape(&user.login)
                    ),
                ),
                &[cookie(INVITE_COOKIE, "", 0, secure(&state))],
            )
        }
        // Taken by another request meanwhile, or the account was disabled.
        Ok(None) => gone(),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_hold_a_fresh_secret_and_the_store_keeps_its_hash() {
        let (a, invitation) = super::new_invitation(1_000).unwrap();
        let (b, _) = super::new_invitation(1_000).unwrap();
        assert_ne!(a, b);
        assert!(super::well_formed(&a), "{a}");
        assert_ne!(invitation.token_hash, a);
        assert_eq!(invitation.token_hash, super::session_hash(&a));
        assert_eq!(invitation.expires, 1_000 + super::INVITATION_SECONDS);
        for base in [
            "https://hie.example/fhir",
            "https://hie.example/fhir/",
            "https://hie.example",
        ] {
            assert_eq!(
                super::link(base, &a),
                format!("https://hie.example/portal/invite/{a}")
            );
        }
        assert!(!super::well_formed("short"));
        assert!(!super::well_formed(&format!("{}/", &a[..42])));
        assert_eq!(super::expires_text(0), "1970-01-01T00:00:00Z");
    }
}
