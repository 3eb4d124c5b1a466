//! Direct secure messaging's state: the Direct addresses the operator issued, certificates (ours
//! with sealed private keys, and outside parties'), trust anchors per local domain, mailboxes, and
//! the outbound queue with each message's delivery status. The store keeps what it is told; the
//! HISP (the server's `smtp` module) decides what to send and when.
//!
//! The queue survives restarts (it is a table) and is shared by every process that opens the
//! database: [`claim_outbound`] takes due rows under a lease in one statement (on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same row; on SQLite behind the
//! one writer), and a worker that dies leaves its rows to be taken again when the lease runs out.
//! Every change a worker makes to a row it claimed names itself as the lease owner, so a worker
//! whose lease ran out (and whose row another worker took) changes nothing.
//!
//! Times are milliseconds since the Unix epoch; message bytes are BLOB/BYTEA (base64 text before
//! migration 0013, still read on SQLite), other binary values (sealed keys) base64 text.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::exec::{Dialect, Exec, Val};
use crate::{Result, StoreError};

/// Whether an address still receives mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressStatus {
    Active,
    Revoked,
}

impl AddressStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressStatus::Active => "active",
            AddressStatus::Revoked => "revoked",
        }
    }
}

/// A Direct address issued to a practitioner or organization of the participant registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectAddress {
    /// Lower case, `local@domain`.
    pub address: String,
    pub domain: String,
    /// `practitioner` or `organization`.
    pub owner_kind: String,
    /// The Practitioner's or Organization's id.
    pub owner_id: String,
    pub display_name: String,
    pub status: AddressStatus,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// A certificate: ours (with its sealed private key) or an outside party's (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectCertificate {
    /// The issuer's name, as the caller identifies it (e.g. the hash of its DER name, in hex).
    pub issuer: String,
    /// The serial number in hex.
    pub serial: String,
    /// The address (address-bound) or domain (domain-bound) it is for, lower case.
    pub subject: String,
    pub cert_pem: String,
    /// The private key sealed under the key-encryption key (`direct::keys::seal`), for ours.
    pub sealed_key: Option<Vec<u8>>,
    pub not_after: i64,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// Which mail a trust anchor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorDirection {
    Inbound,
    Outbound,
}

impl AnchorDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorDirection::Inbound => "inbound",
            AnchorDirection::Outbound => "outbound",
        }
    }
}

/// A trust anchor of a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    pub domain: String,
    pub direction: AnchorDirection,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub cert_pem: String,
    pub added: i64,
}

/// What a mailbox entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A message from another party.
    Message,
    /// A disposition notification about something this mailbox sent.
    Notification,
    /// This HISP's report that something this mailbox sent could not be delivered.
    Dsn,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Message => "message",
            MailKind::Notification => "notification",
            MailKind::Dsn => "dsn",
        }
    }

    fn parse(text: &str) -> Result<MailKind> {
        Ok(match text {
            "message" => MailKind::Message,
            "notification" => MailKind::Notification,
            "dsn" => MailKind::Dsn,
            other => return Err(bad("mail kind", other)),
        })
    }
}

/// A message in a local mailbox, as the sender wrote it (decrypted and verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMessage {
    pub id: String,
    /// The local address whose mailbox this is.
    pub mailbox: String,
    pub kind: MailKind,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The RFC 5322 Message-ID, with its angle brackets.
    pub message_id: String,
    pub raw: Vec<u8>,
    pub received: i64,
    pub read: Option<i64>,
}

/// What an outbound row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    /// A message a local user sent.
    Message,
    /// A disposition notification this HISP sends (never answered with one).
    Mdn,
}

impl OutboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Message => "message",
            OutboundKind::Mdn => "mdn",
        }
    }
}

/// Where an outbound message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Processed,
    Dispatched,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Processed => "processed",
            DeliveryStatus::Dispatched => "dispatched",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<DeliveryStatus> {
        Ok(match text {
            "queued" => DeliveryStatus::Queued,
            "sent" => DeliveryStatus::Sent,
            "processed" => DeliveryStatus::Processed,
            "dispatched" => DeliveryStatus::Dispatched,
            "failed" => DeliveryStatus::Failed,
            other => return Err(bad("delivery status", other)),
        })
    }
}

/// A row of the outbound queue: one message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub id: String,
    pub kind: OutboundKind,
    pub sender: String,
    pub recipient: String,
    /// The RFC 5322 Message-ID the message goes out with (MDNs come back naming it).
    pub message_id: String,
    pub subject: String,
    /// The plain MIME entity (or, for an MDN, the `multipart/report`) to sign and encrypt. Read
    /// by claims, `outbound` and `outbound_by_message`; empty in the rows a status change answers.
    pub content: Vec<u8>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    pub created: i64,
    pub updated: i64,
}

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Database(format!("unexpected {what} '{value}' in the database"))
}

fn b64(bytes: &[u8]) -> Val {
    Val::Text(STANDARD.encode(bytes))
}

/// Message bytes as stored: BYTEA or a BLOB, or (written before migration 0013, on SQLite)
/// base64 text.
fn bytes_of(v: Val) -> Result<Vec<u8>> {
    match v {
        Val::Bytes(b) => Ok(b),
        Val::Null => Ok(Vec::new()),
        text => unb64(text),
    }
}

fn unb64(v: Val) -> Result<Vec<u8>> {
    STANDARD
        .decode(v.text()?)
        .map_err(|e| StoreError::Database(format!("stored base64 does not decode: {e}")))
}

fn opt_int(v: &Val) -> Result<Option<i64>> {
    match v {
        Val::Null => Ok(None),
        other => other.int().map(Some),
    }
}

fn opt_text(v: Val) -> Result<Option<String>> {
    match v {
        Val::Null => Ok(None),
        other => other.text().map(Some),
    }
}

fn text_or_null(v: &Option<String>) -> Val {
    v.as_ref().map_or(Val::Null, |s| Val::Text(s.clone()))
}

/// `p1, p2, ..., pn` in the engine's style.
fn params(d: Dialect, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| d.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The domain of an address (lower case), or an error for something that is not one.
pub fn domain_of(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

// --- addresses -------------------------------------------------------------------------------

const ADDRESS_COLUMNS: &str =
    "address, domain, owner_kind, owner_id, display_name, status, created, revoked";

fn address_row(row: Vec<Val>) -> Result<DirectAddress> {
    let mut it = row.into_iter();
    let mut next = || it.next().unwrap_or(Val::Null);
    let address = next().text()?;
    let domain = next().text()?;
    let owner_kind = next().text()?;
    let owner_id = next().text()?;
    let display_name = next().text()?;
    let status = match next().text()?.as_str() {
        "active" => AddressStatus::Active,
        "revoked" => AddressStatus::Revoked,
        other => return Err(bad("address status", other)),
    };
    let created = next().int()?;
    let revoked = opt_int(&next())?;
    Ok(DirectAddress {
        address,
        domain,
        owner_kind,
        owner_id,
        display_name,
        status,
        created,
        revoked,
    })
}

/// Adds an active address; `StoreError::Conflict` if it was ever issued (revoked ones included).
pub(crate) async fn add_address(
    e: &mut impl Exec,
    address: &str,
    owner_kind: &str,
    owner_id: &str,
    display_name: &str,
    created: i64,
) -> Result<DirectAddress> {
    let address = address.trim().to_ascii_lowercase();
    let domain = domain_of(&address)
        .ok_or_else(|| StoreError::Unsupported(format!("'{address}' is not a mail address")))?;
    if owner_kind != "practitioner" && owner_kind != "organization" {
        return Err(StoreError::Unsupported(format!(
            "owner kind '{owner_kind}' is neither practitioner nor organization"
        )));
    }
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO direct_addresses ({ADDRESS_COLUMNS}) VALUES ({}, 'active', {}, NULL) \
         ON CONFLICT DO NOTHING RETURNING address",
        params(d, 1, 5),
        d.placeholder(6)
    );
    let args = [
        Val::Text(address.clone()),
        Val::Text(domain.clone()),
        Val::Text(owner_kind.to_string()),
        Val::Text(owner_id.to_string()),
        Val::Text(display_name.to_string()),
        Val::Int(created),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "direct address".to_string(),
            id: address,
        });
    }
    Ok(DirectAddress {
        address,
        domain,
        owner_kind: owner_kind.to_string(),
        owner_id: owner_id.to_string(),
        display_name: display_name.to_string(),
        status: AddressStatus::Active,
        created,
        revoked: None,
    })
}

pub(crate) async fn address(e: &mut impl Exec, address: &str) -> Result<Option<DirectAddress>> {
    let sql = format!(
        "SELECT {ADDRESS_COLUMNS} FROM direct_addresses WHERE address = {}",
        e.dialect().placeholder(1)
    );
    let rows = e
        .rows(&sql, &[Val::Text(address.trim().to_ascii_lowercase())])
        .await?;
    rows.into_iter().next().map(address_row).transpose()
}

pub(crate) async fn addresses(e: &mut impl Exec) -> Result<Vec<DirectAddress>> {
    let sql = format!("SELECT {ADDRESS_COLUMNS} FROM direct_addresses ORDER BY created, address");
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(address_row)
        .collect()
}

/// Revokes an active address and its certificates; `false` if there is no such active address.
pub(crate) async fn revoke_address(e: &mut impl Exec, address: &str, at: i64) -> Result<bool> {
    let d = e.dialect();
    let address = address.trim().to_ascii_lowercase();
    let sql = format!(
        "UPDATE direct_addresses SET status = 'revoked', revoked = {} \
         WHERE address = {} AND status = 'active' RETURNING address",
        d.placeholder(1),
        d.placeholder(2)
    );
    let done = !e
        .rows(&sql, &[Val::Int(at), Val::Text(address.clone())])
        .await?
        .is_empty();
    if done {
        let sql = format!(
            "UPDATE direct_certificates SET revoked = {} WHERE subject = {} AND revoked IS NULL",
            d.placeholder(1),
            d.placeholder(2)
        );
        e.rows(&sql, &[Val::Int(at), Val::Text(address)]).await?;
    }
    Ok(done)
}

// --- certificates ----------------------------------------------------------------------------

const CERT_COLUMNS: &str =
    "issuer, serial, subject, cert_pem, sealed_key, not_after, created, revoked";

fn cert_row(row: Vec<Val>) -> Result<DirectCertificate> {
    let mut it = row.into_iter();
    let mut next = || it.next().unwrap_or(Val::Null);
    Ok(DirectCertificate {
        issuer: next().text()?,
        serial: next().text()?,
        subject: next().text()?,
        cert_pem: next().text()?,
        sealed_key: match next() {
            Val::Null => None,
            v => Some(unb64(v)?),
        },
        not_after: next().int()?,
        created: next().int()?,
        revoked: opt_int(&next())?,
    })
}

/// Stores a certificate (replacing one with the same issuer and serial, which is the same one).
pub(crate) async fn add_certificate(e: &mut impl Exec, cert: &DirectCertificate) -> Result<()> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO direct_certificates ({CERT_COLUMNS}) VALUES ({}) \
         ON CONFLICT (issuer, serial) DO UPDATE SET subject = excluded.subject, \
         cert_pem = excluded.cert_pem, sealed_key = excluded.sealed_key, \
         not_after = excluded.not_after",
        params(d, 1, 8)
    );
    let args = [
        Val::Text(cert.issuer.clone()),
        Val::Text(cert.serial.clone()),
        Val::Text(cert.subject.trim().to_ascii_lowercase()),
        Val::Text(cert.cert_pem.clone()),
        cert.sealed_key.as_deref().map_or(Val::Null, b64),
        Val::Int(cert.not_after),
        Val::Int(cert.created),
        cert.revoked.map_or(Val::Null, Val::Int),
    ];
    e.rows(&sql, &args).await?;
    Ok(())
}

/// The unrevoked certificates for `subject` (an address or a domain), newest first.
pub(crate) async fn certificates(
    e: &mut impl Exec,
    subject: &str,
) -> Result<Vec<DirectCertificate>> {
    let sql = format!(
        "SELECT {CERT_COLUMNS} FROM direct_certificates WHERE subject = {} AND revoked IS NULL \
         ORDER BY created DESC, serial",
        e.dialect().placeholder(1)
    );
    e.rows(&sql, &[Val::Text(subject.trim().to_ascii_lowercase())])
        .await?
        .into_iter()
        .map(cert_row)
        .collect()
}

/// The revoked certificates of `issuer` (for its CRL), oldest revocation first.
pub(crate) async fn revoked_certificates(
    e: &mut impl Exec,
    issuer: &str,
) -> Result<Vec<DirectCertificate>> {
    let sql = format!(
        "SELECT {CERT_COLUMNS} FROM direct_certificates WHERE issuer = {} AND revoked IS NOT NULL \
         ORDER BY revoked, serial",
        e.dialect().placeholder(1)
    );
    e.rows(&sql, &[Val::Text(issuer.to_string())])
        .await?
        .into_iter()
        .map(cert_row)
        .collect()
}

// --- trust anchors ---------------------------------------------------------------------------

/// Adds an anchor; `false` if the domain already had it for that direction.
pub(crate) async fn add_anchor(e: &mut impl Exec, anchor: &TrustAnchor) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO direct_anchors (domain, direction, fingerprint, cert_pem, added) \
         VALUES ({}) ON CONFLICT DO NOTHING RETURNING fingerprint",
        params(d, 1, 5)
    );
    let args = [
        Val::Text(anchor.domain.trim().to_ascii_lowercase()),
        Val::Text(anchor.direction.as_str().to_string()),
        Val::Text(anchor.fingerprint.to_ascii_lowercase()),
        Val::Text(anchor.cert_pem.clone()),
        Val::Int(anchor.added),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

pub(crate) async fn remove_anchor(
    e: &mut impl Exec,
    domain: &str,
    direction: AnchorDirection,
    fingerprint: &str,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "DELETE FROM direct_anchors WHERE domain = {} AND direction = {} AND fingerprint = {} \
         RETURNING fingerprint",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    let args = [
        Val::Text(domain.trim().to_ascii_lowercase()),
        Val::Text(direction.as_str().to_string()),
        Val::Text(fingerprint.to_ascii_lowercase()),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

pub(crate) async fn anchors(
    e: &mut impl Exec,
    domain: &str,
    direction: AnchorDirection,
) -> Result<Vec<TrustAnchor>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT domain, fingerprint, cert_pem, added FROM direct_anchors \
         WHERE domain = {} AND direction = {} ORDER BY added, fingerprint",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(domain.trim().to_ascii_lowercase()),
        Val::Text(direction.as_str().to_string()),
    ];
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            let mut next = || it.next().unwrap_or(Val::Null);
            Ok(TrustAnchor {
                domain: next().text()?,
                direction,
                fingerprint: next().text()?,
                cert_pem: next().text()?,
                added: next().int()?,
            })
        })
        .collect()
}

// --- mailboxes -------------------------------------------------------------------------------

const MESSAGE_COLUMNS: &str =
    "id, mailbox, kind, sender, recipients, subject, message_id, raw, received, read";

fn message_row(row: Vec<Val>) -> Result<MailMessage> {
    let mut it = row.into_iter();
    let mut next = || it.next().unwrap_or(Val::Null);
    Ok(MailMessage {
        id: next().text()?,
        mailbox: next().text()?,
        kind: MailKind::parse(&next().text()?)?,
        sender: next().text()?,
        recipients: next()
            .text()?
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        subject: next().text()?,
        message_id: next().text()?,
        raw: bytes_of(next())?,
        received: next().int()?,
        read: opt_int(&next())?,
    })
}

pub(crate) async fn deliver(e: &mut impl Exec, m: &MailMessage) -> Result<()> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO direct_messages ({MESSAGE_COLUMNS}) VALUES ({})",
        params(d, 1, 10)
    );
    let args = [
        Val::Text(m.id.clone()),
        Val::Text(m.mailbox.to_ascii_lowercase()),
        Val::Text(m.kind.as_str().to_string()),
        Val::Text(m.sender.clone()),
        Val::Text(m.recipients.join("\n")),
        Val::Text(m.subject.clone()),
        Val::Text(m.message_id.clone()),
        Val::Bytes(m.raw.clone()),
        Val::Int(m.received),
        m.read.map_or(Val::Null, Val::Int),
    ];
    e.rows(&sql, &args).await?;
    Ok(())
}

/// Mailbox entries and the outbound rows that answer them (the caller's transaction).
pub(crate) async fn deliver_and_queue(
    e: &mut impl Exec,
    messages: &[MailMessage],
    notifications: &[Outbound],
) -> Result<()> {
    for m in messages {
        deliver(e, m).await?;
    }
    enqueue(e, notifications).await
}

/// The newest `limit` entries of a mailbox, newest first.
pub(crate) async fn mailbox(
    e: &mut impl Exec,
    mailbox: &str,
    limit: usize,
) -> Result<Vec<MailMessage>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM direct_messages WHERE mailbox = {} \
         ORDER BY received DESC, id DESC LIMIT {}",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(mailbox.trim().to_ascii_lowercase()),
        Val::Int(limit as i64),
    ];
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .map(message_row)
        .collect()
}

pub(crate) async fn message(e: &mut impl Exec, id: &str) -> Result<Option<MailMessage>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM direct_messages WHERE id = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(id.to_string())]).await?;
    rows.into_iter().next().map(message_row).transpose()
}

/// Marks a message read at `at` (the first time only); `true` if this call marked it.
pub(crate) async fn mark_read(e: &mut impl Exec, id: &str, at: i64) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE direct_messages SET read = {} WHERE id = {} AND read IS NULL RETURNING id",
        d.placeholder(1),
        d.placeholder(2)
    );
    Ok(!e
        .rows(&sql, &[Val::Int(at), Val::Text(id.to_string())])
        .await?
        .is_empty())
}

// --- the outbound queue ----------------------------------------------------------------------

const OUTBOUND_COLUMNS: &str =
    "id, kind, sender, recipient, message_id, subject, content, status, \
     attempts, next_attempt, last_error, created, updated";

fn outbound_row(row: Vec<Val>) -> Result<Outbound> {
    let mut it = row.into_iter();
    let mut next = || it.next().unwrap_or(Val::Null);
    Ok(Outbound {
        id: next().text()?,
        kind: match next().text()?.as_str() {
            "message" => OutboundKind::Message,
            "mdn" => OutboundKind::Mdn,
            other => return Err(bad("outbound kind", other)),
        },
        sender: next().text()?,
        recipient: next().text()?,
        message_id: next().text()?,
        subject: next().text()?,
        content: unb64(next())?,
        status: DeliveryStatus::parse(&next().text()?)?,
        attempts: next().int()?,
        next_attempt: next().int()?,
        last_error: opt_text(next())?,
        created: next().int()?,
        updated: next().int()?,
    })
}

/// Reads the content of `rows` from its own table (migration 0013), where the row has one.
async fn fill_content(e: &mut impl Exec, rows: &mut [Outbound]) -> Result<()> {
    for chunk in rows.chunks_mut(500) {
        let d = e.dialect();
        let list: Vec<String> = (1..=chunk.len()).map(|i| d.placeholder(i)).collect();
        let sql = format!(
            "SELECT id, content FROM direct_outbound_content WHERE id IN ({})",
            list.join(", ")
        );
        let args: Vec<Val> = chunk.iter().map(|o| Val::Text(o.id.clone())).collect();
        let mut found: HashMap<String, Vec<u8>> = HashMap::new();
        for row in e.rows(&sql, &args).await? {
            let mut it = row.into_iter();
            let id = it.next().unwrap_or(Val::Null).text()?;
            found.insert(id, bytes_of(it.next().unwrap_or(Val::Null))?);
        }
        for o in chunk.iter_mut() {
            if let Some(content) = found.remove(&o.id) {
                o.content = content;
            }
        }
    }
    Ok(())
}

/// Queues rows (status `queued`, due at their `next_attempt`), each row's content in its own
/// table (written once; the row's status changes never touch it).
pub(crate) async fn enqueue(e: &mut impl Exec, items: &[Outbound]) -> Result<()> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO direct_outbound ({OUTBOUND_COLUMNS}) VALUES ({})",
        params(d, 1, 13)
    );
    let content_sql = format!(
        "INSERT INTO direct_outbound_content (id, content) VALUES ({}, {})",
        d.placeholder(1),
        d.placeholder(2)
    );
    for o in items {
        e.rows(
            &content_sql,
            &[Val::Text(o.id.clone()), Val::Bytes(o.content.clone())],
        )
        .await?;
        let args = [
            Val::Text(o.id.clone()),
            Val::Text(o.kind.as_str().to_string()),
            Val::Text(o.sender.clone()),
            Val::Text(o.recipient.to_ascii_lowercase()),
            Val::Text(o.message_id.clone()),
            Val::Text(o.subject.clone()),
            Val::Text(String::new()),
            Val::Text(DeliveryStatus::Queued.as_str().to_string()),
            Val::Int(0),
            Val::Int(o.next_attempt),
            text_or_null(&o.last_error),
            Val::Int(o.created),
            Val::Int(o.created),
        ];
        e.rows(&sql, &args).await?;
    }
    Ok(())
}

/// Claims up to `limit` queued rows that are due at `now` and not leased by a live lease, for
/// `owner` until `lease_until`, counting one more attempt on each; answers them (attempts
/// included). On PostgreSQL the rows are locked with `SKIP LOCKED`, so concurrent claims (in any
/// number of processes) take disjoint rows; on SQLite the single writer does the same.
pub(crate) async fn claim(
    e: &mut impl Exec,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<Outbound>> {
    let d = e.dialect();
    let lock = match d {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "UPDATE direct_outbound SET lease_owner = {p1}, lease_until = {p2}, \
         attempts = attempts + 1, updated = {p3} \
         WHERE id IN (SELECT id FROM direct_outbound WHERE status = 'queued' \
         AND next_attempt <= {p3} AND (lease_until IS NULL OR lease_until <= {p3}) \
         ORDER BY next_attempt, id LIMIT {p4}{lock}) \
         RETURNING {OUTBOUND_COLUMNS}",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
    );
    let args = [
        Val::Text(owner.to_string()),
        Val::Int(lease_until),
        Val::Int(now),
        Val::Int(limit as i64),
    ];
    let mut rows = e
        .rows(&sql, &args)
        .await?
        .into_iter()
        .map(outbound_row)
        .collect::<Result<Vec<_>>>()?;
    rows.sort_by(|a, b| a.next_attempt.cmp(&b.next_attempt).then(a.id.cmp(&b.id)));
    fill_content(e, &mut rows).await?;
    Ok(rows)
}

/// What became of a claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Handed over: status `sent`.
    Sent,
    /// Try again at this time (the lease is given up).
    Retry { at: i64, error: String },
    /// Given up: status `failed`.
    Failed { error: String },
}

/// Records the outcome of a claimed row; `false` if `owner` no longer holds it (its lease ran
/// out and another worker took it), in which case nothing changed.
pub(crate) async fn settle(
    e: &mut impl Exec,
    id: &str,
    owner: &str,
    now: i64,
    outcome: &Settle,
) -> Result<bool> {
    let d = e.dialect();
    let (status, next, error) = match outcome {
        Settle::Sent => (DeliveryStatus::Sent, Val::Null, Val::Null),
        Settle::Retry { at, error } => (
            DeliveryStatus::Queued,
            Val::Int(*at),
            Val::Text(error.clone()),
        ),
        Settle::Failed { error } => (DeliveryStatus::Failed, Val::Null, Val::Text(error.clone())),
    };
    let sql = format!(
        "UPDATE direct_outbound SET status = {p1}, next_attempt = COALESCE({p2}, next_attempt), \
         last_error = COALESCE({p3}, last_error), lease_owner = NULL, lease_until = NULL, \
         updated = {p4} WHERE id = {p5} AND lease_owner = {p6} AND status = 'queued' RETURNING id",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
        p5 = d.placeholder(5),
        p6 = d.placeholder(6),
    );
    let args = [
        Val::Text(status.as_str().to_string()),
        next,
        error,
        Val::Int(now),
        Val::Text(id.to_string()),
        Val::Text(owner.to_string()),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// Records a disposition notification for the message `message_id` to `recipient`: moves its row
/// forward (`sent` or `queued` to `processed`, any of those to `dispatched`; `failed` from
/// anything but `dispatched`), never back. Answers the row if it changed.
pub(crate) async fn disposition(
    e: &mut impl Exec,
    message_id: &str,
    recipient: &str,
    status: DeliveryStatus,
    error: Option<&str>,
    now: i64,
) -> Result<Option<Outbound>> {
    let from: &[&str] = match status {
        DeliveryStatus::Processed => &["queued", "sent"],
        DeliveryStatus::Dispatched => &["queued", "sent", "processed"],
        DeliveryStatus::Failed => &["queued", "sent", "processed"],
        DeliveryStatus::Queued | DeliveryStatus::Sent => return Ok(None),
    };
    let d = e.dialect();
    let list = from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE direct_outbound SET status = {p1}, last_error = COALESCE({p2}, last_error), \
         lease_owner = NULL, lease_until = NULL, updated = {p3} \
         WHERE message_id = {p4} AND recipient = {p5} AND kind = 'message' AND status IN ({list}) \
         RETURNING {OUTBOUND_COLUMNS}",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
        p5 = d.placeholder(5),
    );
    let args = [
        Val::Text(status.as_str().to_string()),
        error.map_or(Val::Null, |s| Val::Text(s.to_string())),
        Val::Int(now),
        Val::Text(message_id.to_string()),
        Val::Text(recipient.trim().to_ascii_lowercase()),
    ];
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .next()
        .map(outbound_row)
        .transpose()
}

/// Messages (not MDNs) sent at or before `sent_before` whose processed notification never came:
/// marked `failed` ("no processed notification") and answered, at most `limit`, so that each is
/// reported to its sender once, by whichever process marks it.
pub(crate) async fn expire_unconfirmed(
    e: &mut impl Exec,
    sent_before: i64,
    now: i64,
    limit: usize,
) -> Result<Vec<Outbound>> {
    let d = e.dialect();
    let lock = match d {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "UPDATE direct_outbound SET status = 'failed', \
         last_error = 'no processed notification arrived in time', updated = {p1} \
         WHERE id IN (SELECT id FROM direct_outbound WHERE status = 'sent' AND kind = 'message' \
         AND updated <= {p2} ORDER BY updated LIMIT {p3}{lock}) RETURNING {OUTBOUND_COLUMNS}",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
    );
    e.rows(
        &sql,
        &[Val::Int(now), Val::Int(sent_before), Val::Int(limit as i64)],
    )
    .await?
    .into_iter()
    .map(outbound_row)
    .collect()
}

pub(crate) async fn outbound(e: &mut impl Exec, id: &str) -> Result<Option<Outbound>> {
    let sql = format!(
        "SELECT {OUTBOUND_COLUMNS} FROM direct_outbound WHERE id = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(id.to_string())]).await?;
    let mut rows = rows
        .into_iter()
        .take(1)
        .map(outbound_row)
        .collect::<Result<Vec<_>>>()?;
    fill_content(e, &mut rows).await?;
    Ok(rows.pop())
}

/// The rows of one outgoing message (every recipient), by its Message-ID.
pub(crate) async fn outbound_by_message(
    e: &mut impl Exec,
    message_id: &str,
) -> Result<Vec<Outbound>> {
    let sql = format!(
        "SELECT {OUTBOUND_COLUMNS} FROM direct_outbound WHERE message_id = {} ORDER BY recipient, id",
        e.dialect().placeholder(1)
    );
    let mut rows = e
        .rows(&sql, &[Val::Text(message_id.to_string())])
        .await?
        .into_iter()
        .map(outbound_row)
        .collect::<Result<Vec<_>>>()?;
    fill_content(e, &mut rows).await?;
    Ok(rows)
}

// --- the web inbox ---------------------------------------------------------------------------

/// Binds a portal account to an address; `true` if it was not bound already. `Unsupported` if
/// either does not exist (the operator named something unknown).
pub(crate) async fn bind_address(
    e: &mut impl Exec,
    address: &str,
    user_id: &str,
    at: i64,
) -> Result<bool> {
    let d = e.dialect();
    let address = address.trim().to_ascii_lowercase();
    let known = format!(
        "SELECT address FROM direct_addresses WHERE address = {}",
        d.placeholder(1)
    );
    if e.rows(&known, &[Val::Text(address.clone())])
        .await?
        .is_empty()
    {
        return Err(StoreError::Unsupported(format!(
            "no Direct address '{address}' was issued"
        )));
    }
    let user = format!(
        "SELECT user_id FROM users WHERE user_id = {}",
        d.placeholder(1)
    );
    if e.rows(&user, &[Val::Text(user_id.to_string())])
        .await?
        .is_empty()
    {
        return Err(StoreError::Unsupported(format!(
            "no portal account '{user_id}'"
        )));
    }
    let sql = format!(
        "INSERT INTO direct_address_users (address, user_id, added) VALUES ({}) \
         ON CONFLICT DO NOTHING RETURNING address",
        params(d, 1, 3)
    );
    let args = [
        Val::Text(address),
        Val::Text(user_id.to_string()),
        Val::Int(at),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// Removes a binding; `true` if there was one.
pub(crate) async fn unbind_address(
    e: &mut impl Exec,
    address: &str,
    user_id: &str,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "DELETE FROM direct_address_users WHERE address = {} AND user_id = {} RETURNING address",
        d.placeholder(1),
        d.placeholder(2)
    );
    let args = [
        Val::Text(address.trim().to_ascii_lowercase()),
        Val::Text(user_id.to_string()),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// The addresses bound to a portal account (active and revoked), in address order.
pub(crate) async fn user_addresses(e: &mut impl Exec, user_id: &str) -> Result<Vec<DirectAddress>> {
    let columns = ADDRESS_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM direct_addresses a JOIN direct_address_users u \
         ON u.address = a.address WHERE u.user_id = {} ORDER BY a.address",
        e.dialect().placeholder(1)
    );
    e.rows(&sql, &[Val::Text(user_id.to_string())])
        .await?
        .into_iter()
        .map(address_row)
        .collect()
}

/// The portal accounts bound to an address, in id order.
pub(crate) async fn address_users(e: &mut impl Exec, address: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT user_id FROM direct_address_users WHERE address = {} ORDER BY user_id",
        e.dialect().placeholder(1)
    );
    e.rows(&sql, &[Val::Text(address.trim().to_ascii_lowercase())])
        .await?
        .into_iter()
        .map(|row| row.into_iter().next().unwrap_or(Val::Null).text())
        .collect()
}

/// A page of a mailbox, newest first: at most `limit` entries older than `before` (a
/// `(received, id)` of the previous page's last entry), without their raw bytes (`raw` empty).
pub(crate) async fn mailbox_page(
    e: &mut impl Exec,
    mailbox: &str,
    before: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<MailMessage>> {
    let d = e.dialect();
    let columns = MESSAGE_COLUMNS.replace("raw", "'' AS raw");
    let mut args = vec![Val::Text(mailbox.trim().to_ascii_lowercase())];
    let after = match before {
        Some((received, id)) => {
            args.push(Val::Int(received));
            args.push(Val::Text(id));
            format!(
                " AND (received < {p2} OR (received = {p2} AND id < {p3}))",
                p2 = d.placeholder(2),
                p3 = d.placeholder(3)
            )
        }
        None => String::new(),
    };
    args.push(Val::Int(limit as i64));
    let sql = format!(
        "SELECT {columns} FROM direct_messages WHERE mailbox = {}{after} \
         ORDER BY received DESC, id DESC LIMIT {}",
        d.placeholder(1),
        d.placeholder(args.len())
    );
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .map(message_row)
        .collect()
}

/// How many entries of a mailbox are unread.
pub(crate) async fn unread_count(e: &mut impl Exec, mailbox: &str) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM direct_messages WHERE mailbox = {} AND read IS NULL",
        e.dialect().placeholder(1)
    );
    let rows = e
        .rows(&sql, &[Val::Text(mailbox.trim().to_ascii_lowercase())])
        .await?;
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or(Val::Int(0))
        .int()
}

/// Whether `address` has both received a message (not a notification) and sent one that its
/// recipient confirmed (`processed` or `dispatched`): a test message exchanged each way.
pub(crate) async fn exchanged(e: &mut impl Exec, address: &str) -> Result<bool> {
    let p = e.dialect().placeholder(1);
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM direct_messages \
         WHERE mailbox = {p} AND kind = 'message' LIMIT 1) AS r), \
         (SELECT COUNT(*) FROM (SELECT 1 FROM direct_outbound WHERE sender = {p} \
         AND kind = 'message' AND status IN ('processed', 'dispatched') LIMIT 1) AS s)"
    );
    let rows = e
        .rows(&sql, &[Val::Text(address.trim().to_ascii_lowercase())])
        .await?;
    let row = rows.into_iter().next().unwrap_or_default();
    let count = |i: usize| row.get(i).map(Val::int).transpose().map(|n| n.unwrap_or(0));
    Ok(count(0)? > 0 && count(1)? > 0)
}

/// A page of what `sender` sent (messages, not notifications), newest first: the rows (one per
/// recipient, `content` empty) of at most `limit` messages created before `before` (a `(created,
/// message_id)` of the previous page's last message), grouped by message in page order.
pub(crate) async fn sent_page(
    e: &mut impl Exec,
    sender: &str,
    before: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<Outbound>> {
    let d = e.dialect();
    let mut args = vec![Val::Text(sender.trim().to_ascii_lowercase())];
    let after = match before {
        Some((created, id)) => {
            args.push(Val::Int(created));
            args.push(Val::Text(id));
            format!(
                " AND (created < {p2} OR (created = {p2} AND message_id < {p3}))",
                p2 = d.placeholder(2),
                p3 = d.placeholder(3)
            )
        }
        None => String::new(),
    };
    args.push(Val::Int(limit as i64));
    // Every row of one message has the same `created`, so a message is never cut in two.
    let pick = format!(
        "SELECT DISTINCT created, message_id FROM direct_outbound \
         WHERE sender = {} AND kind = 'message'{after} \
         ORDER BY created DESC, message_id DESC LIMIT {}",
        d.placeholder(1),
        d.placeholder(args.len())
    );
    let columns = OUTBOUND_COLUMNS.replace("content", "'' AS content");
    let sql = format!(
        "SELECT {columns} FROM direct_outbound WHERE sender = {} AND kind = 'message' \
         AND message_id IN (SELECT message_id FROM ({pick}) page) \
         ORDER BY created DESC, message_id DESC, recipient",
        d.placeholder(1)
    );
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .map(outbound_row)
        .collect()
}
