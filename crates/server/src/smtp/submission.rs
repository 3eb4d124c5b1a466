//! SMTP submission (RFC 6409, `nutmeg serve --submission ADDR`) for portal users who own a Direct
//! address and prefer a mail client to the web inbox: AUTH PLAIN (RFC 4954) only after STARTTLS,
//! checked with the portal's argon2id password and the portal's lockout rules
//! ([`crate::portal::check_credentials`], shared, so failures here count toward the same lock);
//! the envelope sender and the From header must be an address the user owns ([`may_send_as`]); the
//! message then takes the same outbound path as the web inbox's ([`Hisp::send`]: queued durably,
//! signed and encrypted by the delivery worker, handed over). The wire is [`super::server`]'s.
//!
//! Accounts with a TOTP secret cannot use submission (a mail client has no place for a one-time
//! code); they are refused before their password is looked at, so nothing is counted or learnt.

use base64::Engine as _;
use direct::mime::{self, Entity};
use store::{Store, User};

use super::hisp::{now_ms, Hisp, Refusal};
use crate::portal;

/// What an AUTH PLAIN exchange came to.
#[derive(Debug)]
pub enum Auth {
    /// Signed in.
    Accepted(Box<User>),
    /// Wrong login or password, a locked or disabled account: one answer for all (535).
    Refused,
    /// The response is not `authzid NUL authcid NUL password` in base64 (501).
    Malformed,
    /// The account signs in with a one-time code, which SMTP cannot carry (535 with a reason).
    NeedsCode,
}

/// Whether `user` may send as `address`: the one rule the web inbox also applies
/// ([`super::hisp::user_owns_address`]: the active addresses an operator bound to the account).
/// Patients' accounts own no address.
pub async fn may_send_as(store: &Store, user: &User, address: &str) -> anyhow::Result<bool> {
    if user.patient_id.is_some() {
        return Ok(false);
    }
    super::hisp::user_owns_address(store, &user.user_id, address).await
}

/// Checks an AUTH PLAIN response (base64 of `authzid NUL authcid NUL password`); the
/// authorization identity, when given, must be the login.
pub async fn authenticate(store: &Store, response: &str) -> anyhow::Result<Auth> {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(response.trim()) else {
        return Ok(Auth::Malformed);
    };
    let fields: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    let [authzid, login, password] = fields.as_slice() else {
        return Ok(Auth::Malformed);
    };
    let (Ok(authzid), Ok(login), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(login),
        std::str::from_utf8(password),
    ) else {
        return Ok(Auth::Malformed);
    };
    if login.is_empty() || (!authzid.is_empty() && authzid != login) {
        return Ok(Auth::Refused);
    }
    let Some(user) = store.user_by_login(login).await? else {
        portal::verify_password(password.to_string(), None).await;
        tracing::info!("smtp submission: AUTH refused: no such login");
        return Ok(Auth::Refused);
    };
    if user.totp_secret.is_some() {
        tracing::info!(user_id = %user.user_id, "smtp submission: AUTH refused: the account uses a one-time code");
        return Ok(Auth::NeedsCode);
    }
    let now = now_ms() / 1000;
    match portal::check_credentials(store, &user, password.to_string(), "", now).await? {
        Ok(()) => {
            tracing::info!(user_id = %user.user_id, "smtp submission: AUTH accepted");
            Ok(Auth::Accepted(Box::new(user)))
        }
        Err(why) => {
            tracing::info!(user_id = %user.user_id, reason = ?why, "smtp submission: AUTH refused");
            Ok(Auth::Refused)
        }
    }
}

fn refusal(code: u16, status: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        status,
        text: text.into(),
    }
}

/// Queues a submitted message from `from` (already checked: the user's own) to `recipients`:
/// its From header must name `from`; its Subject and its content (Content-Type,
/// Content-Transfer-Encoding, the body) go out, signed and encrypted, through [`Hisp::send`].
/// Answers the Message-ID it goes out with.
pub async fn submit(
    hisp: &Hisp,
    from: &str,
    recipients: &[String],
    raw: &[u8],
) -> Result<String, Refusal> {
    let entity = Entity::parse(raw)
        .map_err(|e| refusal(554, "5.6.0", format!("message not acceptable: {e}")))?;
    let header_from = entity.header("From").and_then(mime::address_of);
    if !header_from.is_some_and(|a| a.eq_ignore_ascii_case(from)) {
        return Err(refusal(
            550,
            "5.7.1",
            "the From header must be the address you send as",
        ));
    }
    let subject = entity.header("Subject").unwrap_or_default();
    if !mime::is_safe_header_value(subject) {
        return Err(refusal(554, "5.6.0", "the Subject has a control character"));
    }
    let body = entity.body();
    let mut content = Vec::with_capacity(body.len() + 256);
    let content_type = entity
        .header("Content-Type")
        .unwrap_or("text/plain; charset=us-ascii");
    for (name, value) in [
        ("Content-Type", Some(content_type)),
        (
            "Content-Transfer-Encoding",
            entity.header("Content-Transfer-Encoding"),
        ),
    ] {
        if let Some(value) = value {
            if !mime::is_safe_header_value(value) {
                return Err(refusal(554, "5.6.0", format!("bad {name} header")));
            }
            content.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    content.extend_from_slice(b"\r\n");
    content.extend_from_slice(body);
    hisp.send(from, recipients, subject, &content)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "smtp submission: could not queue");
            refusal(451, "4.3.0", "local error, try again later")
        })
}
