//! SMART Backend Services clients, the client assertion ids (`jti`) already used, and the exchange's
//! own secrets, with the SQL shared by both engines.
//!
//! The store keeps what it is given: the registered JWKS as text, the scope string, the times as
//! seconds since the Unix epoch. Parsing and checking them is the caller's (the `auth` crate's).
//!
//! Two operations must hold across processes, so both rest on a primary key, not on a read that a
//! write then trusts: [`Store::remember_jti`](crate::Store::remember_jti) inserts the `jti` and
//! learns from the insert whether it was new, and [`Store::token_key`](crate::Store::token_key)
//! inserts a fresh key only if none exists and then reads whichever key won.

use std::sync::atomic::{AtomicU64, Ordering};

use ring::rand::SecureRandom as _;

use crate::exec::{Exec, Val};
use crate::{Result, StoreError};

/// Whether a client may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientStatus {
    Active,
    Revoked,
}

impl ClientStatus {
    /// `active` or `revoked`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Result<ClientStatus> {
        match s {
            "active" => Ok(ClientStatus::Active),
            "revoked" => Ok(ClientStatus::Revoked),
            other => Err(StoreError::Database(format!(
                "clients.status holds an unknown value '{other}'"
            ))),
        }
    }
}

impl std::fmt::Display for ClientStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a client's public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    /// The JWKS document as registered.
    Jwks(String),
    /// A URL the exchange fetches the JWKS from.
    JwksUrl(String),
}

/// A client to register. The caller makes the id (random, URL-safe) and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub client_id: String,
    pub participant_id: String,
    pub keys: ClientKeys,
    /// The registered scopes, space-separated, as the caller validated them.
    pub scopes: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub participant_id: String,
    pub keys: ClientKeys,
    pub scopes: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub status: ClientStatus,
}

/// The name of the access-token signing key in the `secrets` table.
const TOKEN_KEY: &str = "token_key";
/// The length of a fresh token key, in bytes.
const TOKEN_KEY_LEN: usize = 32;
/// Expired `jti` rows are deleted on one call of [`remember_jti`] in this many (and on the first).
const PRUNE_EVERY: u64 = 64;

static JTI_CALLS: AtomicU64 = AtomicU64::new(0);

const COLUMNS: &str = "client_id, participant_id, jwks, jwks_url, scopes, created, status";

fn client_from_row(row: Vec<Val>) -> Result<Client> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    let client_id = next().text()?;
    let participant_id = next().text()?;
    let (jwks, jwks_url) = (next(), next());
    let keys = match (jwks, jwks_url) {
        (Val::Text(jwks), _) => ClientKeys::Jwks(jwks),
        (_, Val::Text(url)) => ClientKeys::JwksUrl(url),
        _ => {
            return Err(StoreError::Database(format!(
                "client {client_id} has neither jwks nor jwks_url"
            )))
        }
    };
    Ok(Client {
        client_id,
        participant_id,
        keys,
        scopes: next().text()?,
        created: next().int()?,
        status: ClientStatus::parse(&next().text()?)?,
    })
}

pub(crate) async fn register(e: &mut impl Exec, new: NewClient) -> Result<Client> {
    let d = e.dialect();
    let p = |n| d.placeholder(n);
    let (jwks, jwks_url) = match &new.keys {
        ClientKeys::Jwks(jwks) => (Val::Text(jwks.clone()), Val::Null),
        ClientKeys::JwksUrl(url) => (Val::Null, Val::Text(url.clone())),
    };
    let sql = format!(
        "INSERT INTO clients ({COLUMNS}) VALUES ({}, {}, {}, {}, {}, {}, 'active') \
         ON CONFLICT (client_id) DO NOTHING RETURNING client_id",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    );
    let args = [
        Val::Text(new.client_id.clone()),
        Val::Text(new.participant_id.clone()),
        jwks,
        jwks_url,
        Val::Text(new.scopes.clone()),
        Val::Int(new.created),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "client".to_string(),
            id: new.client_id,
        });
    }
    Ok(Client {
        client_id: new.client_id,
        participant_id: new.participant_id,
        keys: new.keys,
        scopes: new.scopes,
        created: new.created,
        status: ClientStatus::Active,
    })
}

pub(crate) async fn client(e: &mut impl Exec, client_id: &str) -> Result<Option<Client>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM clients WHERE client_id = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(client_id.to_string())]).await?;
    rows.into_iter().next().map(client_from_row).transpose()
}

pub(crate) async fn clients(e: &mut impl Exec) -> Result<Vec<Client>> {
    let sql = format!("SELECT {COLUMNS} FROM clients ORDER BY created, client_id");
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(client_from_row)
        .collect()
}

pub(crate) async fn set_status(
    e: &mut impl Exec,
    client_id: &str,
    status: ClientStatus,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE clients SET status = {} WHERE client_id = {} RETURNING client_id",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(status.as_str().to_string()),
        Val::Text(client_id.to_string()),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// Seconds as the database's signed integer (times past year 292 billion are clamped).
fn seconds(t: u64) -> Val {
    Val::Int(i64::try_from(t).unwrap_or(i64::MAX))
}

/// One statement decides: a new `jti` is inserted, an expired one (not yet pruned) is renewed, and a
/// live one is left alone and returns no row. Concurrent callers serialise on the primary key.
pub(crate) async fn remember_jti(
    e: &mut impl Exec,
    client_id: &str,
    jti: &str,
    expires_at: u64,
    now: u64,
) -> Result<bool> {
    let d = e.dialect();
    let p = |n| d.placeholder(n);
    if JTI_CALLS
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(PRUNE_EVERY)
    {
        let prune = format!("DELETE FROM client_jti WHERE expires_at <= {}", p(1));
        e.rows(&prune, &[seconds(now)]).await?;
    }
    let sql = format!(
        "INSERT INTO client_jti (client_id, jti, expires_at) VALUES ({}, {}, {}) \
         ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE client_jti.expires_at <= {} RETURNING expires_at",
        p(1),
        p(2),
        p(3),
        p(4)
    );
    let args = [
        Val::Text(client_id.to_string()),
        Val::Text(jti.to_string()),
        seconds(expires_at),
        seconds(now),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// Makes a key and offers it; the first offer of any process wins, and every caller reads the winner.
pub(crate) async fn token_key(e: &mut impl Exec) -> Result<Vec<u8>> {
    let d = e.dialect();
    let select = format!(
        "SELECT value FROM secrets WHERE name = {}",
        d.placeholder(1)
    );
    let name = [Val::Text(TOKEN_KEY.to_string())];
    if let Some(key) = e.rows(&select, &name).await?.into_iter().next() {
        return decode_key(key);
    }
    let mut fresh = [0u8; TOKEN_KEY_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut fresh)
        .map_err(|_| StoreError::Database("no randomness for the token key".to_string()))?;
    let insert = format!(
        "INSERT INTO secrets (name, value) VALUES ({}, {}) ON CONFLICT (name) DO NOTHING",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [Val::Text(TOKEN_KEY.to_string()), Val::Text(hex(&fresh))];
    e.rows(&insert, &args).await?;
    match e.rows(&select, &name).await?.into_iter().next() {
        Some(key) => decode_key(key),
        None => Err(StoreError::Database(
            "the token key vanished after it was stored".to_string(),
        )),
    }
}

fn decode_key(row: Vec<Val>) -> Result<Vec<u8>> {
    let text = row.into_iter().next().unwrap_or(Val::Null).text()?;
    unhex(&text)
        .filter(|k| k.len() >= TOKEN_KEY_LEN)
        .ok_or_else(|| StoreError::Database("the stored token key is not 32+ bytes of hex".into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::hex(&bytes), "0001abff");
        assert_eq!(super::unhex("0001abff").as_deref(), Some(&bytes[..]));
        assert_eq!(super::unhex("0g"), None);
        assert_eq!(super::unhex("abc"), None);
    }
}
