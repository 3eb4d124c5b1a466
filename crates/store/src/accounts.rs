//! Portal accounts and their sessions, with the SQL shared by both engines.
//!
//! The store keeps what it is given: the role as its code, the password as an argon2id PHC string,
//! the TOTP secret as text, a session by the SHA-256 of its cookie secret (never the secret), and
//! times as seconds since the Unix epoch. Checking passwords and codes, and deciding when an account
//! locks, is the caller's (the `auth` crate's and the portal's).
//!
//! What must hold between concurrent sign-ins (and processes) is decided by one statement each: a
//! failed attempt is counted by an `UPDATE ... SET n = n + 1 RETURNING n`, and a TOTP step is taken
//! only by an `UPDATE` whose `WHERE` requires it to be later than the last one taken, so of two
//! sign-ins with the same code exactly one succeeds. A login name is unique without regard to case:
//! the store folds it (Rust's `to_lowercase`, the same on both engines) into a unique column.

use crate::exec::{Exec, Val};
use crate::{Result, StoreError};

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    /// `active` or `disabled`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<UserStatus> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(StoreError::Database(format!(
                "users.status holds an unknown value '{other}'"
            ))),
        }
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles the schema accepts, as stored.
pub const USER_ROLES: &[&str] = &[
    "operator-admin",
    "participant-admin",
    "clinician",
    "staff",
    "patient",
];

/// An account to add. The caller makes the id (random), validates the role against the participant
/// or patient, hashes the password and makes the TOTP secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user_id: String,
    /// The login name as given; unique regardless of case.
    pub login: String,
    pub display_name: String,
    /// One of [`USER_ROLES`].
    pub role: String,
    pub participant_id: Option<String>,
    pub patient_id: Option<String>,
    /// The Practitioner (its resource id) the person is, for a clinician (migration 0012).
    pub practitioner_id: Option<String>,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// The TOTP secret as the caller encodes it, if the account has a second factor.
    pub totp_secret: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// A portal account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub participant_id: Option<String>,
    pub patient_id: Option<String>,
    /// The Practitioner (its resource id) the person is, if the operator linked one.
    pub practitioner_id: Option<String>,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    /// The TOTP step of the last code accepted.
    pub last_totp_step: Option<i64>,
    /// Failed sign-ins since the last successful one.
    pub failed_attempts: i64,
    /// Seconds since the Unix epoch until which sign-in is refused.
    pub locked_until: Option<i64>,
    pub created: i64,
    pub status: UserStatus,
}

/// Leaves the password hash and the TOTP secret out of debug output (and so out of logs).
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .field("participant_id", &self.participant_id)
            .field("totp", &self.totp_secret.is_some())
            .field("failed_attempts", &self.failed_attempts)
            .field("locked_until", &self.locked_until)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A portal session: the SHA-256 (hex) of its cookie secret, whose it is, its CSRF token, and its
/// times (seconds since the Unix epoch).
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub csrf: String,
    pub created: i64,
    /// The absolute end.
    pub expires: i64,
    pub last_seen: i64,
}

/// Leaves the CSRF token out of debug output.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

/// The key a login name is unique by.
pub fn login_key(login: &str) -> String {
    login.trim().to_lowercase()
}

const USER_COLUMNS: &str = "user_id, login, display_name, role, participant_id, patient_id, \
     password_hash, totp_secret, last_totp_step, failed_attempts, locked_until, created, status, \
     practitioner_id";

const SESSION_COLUMNS: &str = "id_hash, user_id, csrf, created, expires, last_seen";

fn optional_text(v: Val) -> Result<Option<String>> {
    match v {
        Val::Null => Ok(None),
        other => other.text().map(Some),
    }
}

fn optional_int(v: Val) -> Result<Option<i64>> {
    match v {
        Val::Null => Ok(None),
        other => other.int().map(Some),
    }
}

fn text_or_null(v: &Option<String>) -> Val {
    v.as_ref().map_or(Val::Null, |s| Val::Text(s.clone()))
}

fn user_from_row(row: Vec<Val>) -> Result<User> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(User {
        user_id: next().text()?,
        login: next().text()?,
        display_name: next().text()?,
        role: next().text()?,
        participant_id: optional_text(next())?,
        patient_id: optional_text(next())?,
        password_hash: next().text()?,
        totp_secret: optional_text(next())?,
        last_totp_step: optional_int(next())?,
        failed_attempts: next().int()?,
        locked_until: optional_int(next())?,
        created: next().int()?,
        status: UserStatus::parse(&next().text()?)?,
        practitioner_id: optional_text(next())?,
    })
}

fn session_from_row(row: Vec<Val>) -> Result<Session> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(Session {
        id_hash: next().text()?,
        user_id: next().text()?,
        csrf: next().text()?,
        created: next().int()?,
        expires: next().int()?,
        last_seen: next().int()?,
    })
}

fn placeholders(e: &impl Exec, n: usize) -> String {
    let d = e.dialect();
    (1..=n)
        .map(|i| d.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts the account; a taken id or login (in any case) is a conflict.
pub(crate) async fn add_user(e: &mut impl Exec, new: NewUser) -> Result<User> {
    if !USER_ROLES.contains(&new.role.as_str()) {
        return Err(StoreError::Database(format!(
            "'{}' is not a portal role",
            new.role
        )));
    }
    let sql = format!(
        "INSERT INTO users (user_id, login, login_key, display_name, role, participant_id, \
         patient_id, password_hash, totp_secret, failed_attempts, created, status, practitioner_id) \
         VALUES ({}, 0, {}, 'active', {}) ON CONFLICT DO NOTHING RETURNING user_id",
        placeholders(e, 9),
        e.dialect().placeholder(10),
        e.dialect().placeholder(11)
    );
    let args = [
        Val::Text(new.user_id.clone()),
        Val::Text(new.login.clone()),
        Val::Text(login_key(&new.login)),
        Val::Text(new.display_name.clone()),
        Val::Text(new.role.clone()),
        text_or_null(&new.participant_id),
        text_or_null(&new.patient_id),
        Val::Text(new.password_hash.clone()),
        text_or_null(&new.totp_secret),
        Val::Int(new.created),
        text_or_null(&new.practitioner_id),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "user".to_string(),
            id: new.login,
        });
    }
    Ok(User {
        user_id: new.user_id,
        login: new.login,
        display_name: new.display_name,
        role: new.role,
        participant_id: new.participant_id,
        patient_id: new.patient_id,
        practitioner_id: new.practitioner_id,
        password_hash: new.password_hash,
        totp_secret: new.totp_secret,
        last_totp_step: None,
        failed_attempts: 0,
        locked_until: None,
        created: new.created,
        status: UserStatus::Active,
    })
}

pub(crate) async fn user_by_login(e: &mut impl Exec, login: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE login_key = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(login_key(login))]).await?;
    rows.into_iter().next().map(user_from_row).transpose()
}

pub(crate) async fn user(e: &mut impl Exec, user_id: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE user_id = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(user_id.to_string())]).await?;
    rows.into_iter().next().map(user_from_row).transpose()
}

pub(crate) async fn users(e: &mut impl Exec) -> Result<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created, login_key");
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(user_from_row)
        .collect()
}

/// Runs an `UPDATE ... RETURNING` and tells whether it touched a row.
async fn update(e: &mut impl Exec, sql: &str, args: &[Val]) -> Result<bool> {
    Ok(!e.rows(sql, args).await?.is_empty())
}

pub(crate) async fn set_user_status(
    e: &mut impl Exec,
    user_id: &str,
    status: UserStatus,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE users SET status = {} WHERE user_id = {} RETURNING user_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(status.as_str().to_string()),
        Val::Text(user_id.to_string()),
    ];
    update(e, &sql, &args).await
}

pub(crate) async fn set_password_hash(
    e: &mut impl Exec,
    user_id: &str,
    hash: &str,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE users SET password_hash = {} WHERE user_id = {} RETURNING user_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [Val::Text(hash.to_string()), Val::Text(user_id.to_string())];
    update(e, &sql, &args).await
}

/// Makes `participant_id` the participant of an account that has none; `false` if the account
/// does not exist or has one.
pub(crate) async fn join_participant(
    e: &mut impl Exec,
    user_id: &str,
    participant_id: &str,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE users SET participant_id = {} WHERE user_id = {} AND participant_id IS NULL \
         RETURNING user_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(participant_id.to_string()),
        Val::Text(user_id.to_string()),
    ];
    update(e, &sql, &args).await
}

/// Counts a failed sign-in and answers the count (0 if there is no such account).
pub(crate) async fn record_failed_sign_in(e: &mut impl Exec, user_id: &str) -> Result<i64> {
    let sql = format!(
        "UPDATE users SET failed_attempts = failed_attempts + 1 WHERE user_id = {} \
         RETURNING failed_attempts",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(user_id.to_string())]).await?;
    match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
        Some(count) => count.int(),
        None => Ok(0),
    }
}

/// Forgets the failed sign-ins and any lock.
pub(crate) async fn reset_failed_sign_ins(e: &mut impl Exec, user_id: &str) -> Result<bool> {
    let sql = format!(
        "UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE user_id = {} \
         RETURNING user_id",
        e.dialect().placeholder(1)
    );
    update(e, &sql, &[Val::Text(user_id.to_string())]).await
}

pub(crate) async fn lock_user_until(e: &mut impl Exec, user_id: &str, until: i64) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE users SET locked_until = {} WHERE user_id = {} RETURNING user_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    update(e, &sql, &[Val::Int(until), Val::Text(user_id.to_string())]).await
}

/// Takes a TOTP step only if it is later than the last one taken.
pub(crate) async fn use_totp_step(e: &mut impl Exec, user_id: &str, step: i64) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE users SET last_totp_step = {p1} WHERE user_id = {p2} \
         AND (last_totp_step IS NULL OR last_totp_step < {p1}) RETURNING user_id",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2)
    );
    update(e, &sql, &[Val::Int(step), Val::Text(user_id.to_string())]).await
}

pub(crate) async fn create_session(e: &mut impl Exec, session: Session) -> Result<Session> {
    let sql = format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({}) \
         ON CONFLICT (id_hash) DO NOTHING RETURNING id_hash",
        placeholders(e, 6)
    );
    let args = [
        Val::Text(session.id_hash.clone()),
        Val::Text(session.user_id.clone()),
        Val::Text(session.csrf.clone()),
        Val::Int(session.created),
        Val::Int(session.expires),
        Val::Int(session.last_seen),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "session".to_string(),
            id: "(a session id)".to_string(),
        });
    }
    Ok(session)
}

pub(crate) async fn session(e: &mut impl Exec, id_hash: &str) -> Result<Option<Session>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(id_hash.to_string())]).await?;
    rows.into_iter().next().map(session_from_row).transpose()
}

pub(crate) async fn touch_session(e: &mut impl Exec, id_hash: &str, now: i64) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE sessions SET last_seen = {} WHERE id_hash = {} RETURNING id_hash",
        d.placeholder(1),
        d.placeholder(2)
    );
    update(e, &sql, &[Val::Int(now), Val::Text(id_hash.to_string())]).await
}

pub(crate) async fn delete_session(e: &mut impl Exec, id_hash: &str) -> Result<bool> {
    let sql = format!(
        "DELETE FROM sessions WHERE id_hash = {} RETURNING id_hash",
        e.dialect().placeholder(1)
    );
    update(e, &sql, &[Val::Text(id_hash.to_string())]).await
}

/// Deletes every session of an account; answers how many there were.
pub(crate) async fn delete_user_sessions(e: &mut impl Exec, user_id: &str) -> Result<u64> {
    let sql = format!(
        "DELETE FROM sessions WHERE user_id = {} RETURNING id_hash",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(user_id.to_string())]).await?;
    Ok(rows.len() as u64)
}

/// Deletes the sessions past their absolute end (`expires <= now`) or idle since before
/// `idle_before`; answers how many.
pub(crate) async fn delete_expired_sessions(
    e: &mut impl Exec,
    now: i64,
    idle_before: i64,
) -> Result<u64> {
    let d = e.dialect();
    let sql = format!(
        "DELETE FROM sessions WHERE expires <= {} OR last_seen < {} RETURNING id_hash",
        d.placeholder(1),
        d.placeholder(2)
    );
    let rows = e
        .rows(&sql, &[Val::Int(now), Val::Int(idle_before)])
        .await?;
    Ok(rows.len() as u64)
}

/// The password hash of an account that has none yet (it was made with an invitation): no
/// argon2id PHC string equals it and none verifies against it, so nobody signs in with it.
pub const NO_PASSWORD: &str = "!";

/// An invitation to set an account's password, as the caller makes it: the SHA-256 (hex) of the
/// link's secret and its times (seconds since the Unix epoch).
#[derive(Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub token_hash: String,
    pub created: i64,
    pub expires: i64,
}

/// Leaves the token's hash out of debug output.
impl std::fmt::Debug for NewInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewInvitation")
            .field("created", &self.created)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// An invitation as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    pub token_hash: String,
    pub user_id: String,
    pub created: i64,
    pub expires: i64,
    /// When it was taken, if it was.
    pub used: Option<i64>,
}

/// Leaves the token's hash out of debug output.
impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("user_id", &self.user_id)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl Invitation {
    /// Whether it can still be taken at `now`.
    pub fn open_at(&self, now: i64) -> bool {
        self.used.is_none() && now < self.expires
    }
}

/// Stores a new invitation for the account, replacing any it had not taken yet (the newest link
/// is the only one that works). `false` if there is no such account.
pub(crate) async fn invite(
    e: &mut impl Exec,
    user_id: &str,
    invitation: &NewInvitation,
) -> Result<bool> {
    let d = e.dialect();
    let exists = format!(
        "SELECT user_id FROM users WHERE user_id = {}",
        d.placeholder(1)
    );
    if e.rows(&exists, &[Val::Text(user_id.to_string())])
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    let replace = format!(
        "DELETE FROM invitations WHERE user_id = {} AND used IS NULL RETURNING token_hash",
        d.placeholder(1)
    );
    e.rows(&replace, &[Val::Text(user_id.to_string())]).await?;
    let sql = format!(
        "INSERT INTO invitations (token_hash, user_id, created, expires) VALUES ({}) \
         ON CONFLICT (token_hash) DO NOTHING RETURNING token_hash",
        placeholders(e, 4)
    );
    let args = [
        Val::Text(invitation.token_hash.clone()),
        Val::Text(user_id.to_string()),
        Val::Int(invitation.created),
        Val::Int(invitation.expires),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "invitation".to_string(),
            id: "(an invitation)".to_string(),
        });
    }
    Ok(true)
}

/// Adds an account that has no password yet with its invitation.
pub(crate) async fn add_invited_user(
    e: &mut impl Exec,
    mut new: NewUser,
    invitation: &NewInvitation,
) -> Result<User> {
    new.password_hash = NO_PASSWORD.to_string();
    let user = add_user(e, new).await?;
    invite(e, &user.user_id, invitation).await?;
    Ok(user)
}

pub(crate) async fn invitation(e: &mut impl Exec, token_hash: &str) -> Result<Option<Invitation>> {
    let sql = format!(
        "SELECT token_hash, user_id, created, expires, used FROM invitations \
         WHERE token_hash = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(token_hash.to_string())]).await?;
    rows.into_iter()
        .next()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            Ok(Invitation {
                token_hash: next().text()?,
                user_id: next().text()?,
                created: next().int()?,
                expires: next().int()?,
                used: optional_int(next())?,
            })
        })
        .transpose()
}

/// Takes an open invitation of an active account at `now`: the account's password becomes
/// `password_hash`, its failed sign-ins and lock are forgotten and its sessions end. Answers the
/// account's id, or `None` (and changes nothing) when the invitation is unknown, taken, expired or
/// replaced, or the account is disabled. The caller runs it in one transaction; of two concurrent
/// takers exactly one gets the account (the `UPDATE`'s `WHERE` decides).
pub(crate) async fn accept_invitation(
    e: &mut impl Exec,
    token_hash: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<String>> {
    let d = e.dialect();
    let take = format!(
        "UPDATE invitations SET used = {p1} WHERE token_hash = {p2} AND used IS NULL \
         AND expires > {p1} AND user_id IN (SELECT user_id FROM users WHERE status = 'active') \
         RETURNING user_id",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2)
    );
    let rows = e
        .rows(&take, &[Val::Int(now), Val::Text(token_hash.to_string())])
        .await?;
    let Some(user_id) = rows.into_iter().next().and_then(|r| r.into_iter().next()) else {
        return Ok(None);
    };
    let user_id = user_id.text()?;
    let set = format!(
        "UPDATE users SET password_hash = {}, failed_attempts = 0, locked_until = NULL \
         WHERE user_id = {} RETURNING user_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(password_hash.to_string()),
        Val::Text(user_id.clone()),
    ];
    update(e, &set, &args).await?;
    delete_user_sessions(e, &user_id).await?;
    Ok(Some(user_id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn login_keys_fold_case_and_trim() {
        assert_eq!(super::login_key(" Alice.Smith "), "alice.smith");
        assert_eq!(super::login_key("ÉLISE"), "élise");
    }
}
