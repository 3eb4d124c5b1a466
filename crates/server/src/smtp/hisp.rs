//! The HISP's use cases, without the wire: which recipients are ours, what happens to a message
//! that arrived (decrypt, verify, validate the signer, deliver to mailboxes, queue the processed
//! notification, or record a notification about something we sent), and what happens to what
//! goes out (queue it; at sending time sign for the sender and encrypt for the recipient's trusted
//! certificate, hand it over by SMTP to the recipient's route, retry with back-off, and tell the
//! sender when it finally fails). The SMTP listener ([`super::server`]) and the delivery worker
//! ([`super::worker`]) only call these.
//!
//! An outside recipient's certificate is the one the store holds (from the operator), or else the
//! one discovered by DNS CERT (address-bound, then domain-bound) or LDAP ([`super::discovery`]),
//! whichever validates first; either way it must validate against the sending domain's outbound
//! anchors and the CRLs, and be bound to the recipient. Mail for an outside domain goes by its
//! static route if the configuration has one, else by MX lookup. Without a resolver
//! (`HispConfig::dns` unset) there is neither discovery nor MX lookup.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use direct::keys::{self, Kek};
use direct::mdn::{self, Disposition, Notification};
use direct::mime::{self, Entity};
use direct::smime::{self, Outgoing, RecipientKey, SealOptions, Signer, SmimeError};
use direct::trust::{Anchors, TrustError, Usage, Validator};
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Crl, X509};
use store::{
    AddressStatus, AnchorDirection, DeliveryStatus, DirectCertificate, MailKind, MailMessage,
    Outbound, OutboundKind, Settle, Store,
};

use super::client::{self, Delivery, Hop, TlsPolicy};
use super::discovery;
use super::dns::{self, DnsConfig, DnsError, Resolver};

/// A static route: mail for `domain` goes to the SMTP server at `address` (`host:port`), over
/// STARTTLS as `tls` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domain: String,
    pub address: String,
    pub tls: TlsPolicy,
}

impl Route {
    /// A route with opportunistic TLS.
    pub fn new(domain: &str, address: &str) -> Route {
        Route {
            domain: domain.to_ascii_lowercase(),
            address: address.to_string(),
            tls: TlsPolicy::Opportunistic,
        }
    }
}

/// What the HISP needs to know.
#[derive(Debug, Clone)]
pub struct HispConfig {
    /// The local Direct domains (lower case): mail is accepted for these only.
    pub domains: Vec<String>,
    /// This server's name in SMTP greetings and EHLO.
    pub hostname: String,
    /// The largest message accepted (the SMTP SIZE), in bytes.
    pub max_message_bytes: usize,
    /// Recipients per message.
    pub max_recipients: usize,
    /// How long the listener waits for a command, and for each line of a message's data.
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Outbound routes by recipient domain (these win over MX lookup).
    pub routes: Vec<Route>,
    /// Where DNS questions go (certificate discovery, SRV for LDAP, MX); `None`: no discovery
    /// and no MX lookup, only stored certificates and static routes.
    pub dns: Option<DnsConfig>,
    /// The SMTP port of mail hosts found by MX lookup (25; tests use another).
    pub mx_port: u16,
    /// The first retry's delay; each next one doubles, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a message fails for good.
    pub max_attempts: u32,
    /// How long a sent message may wait for its processed notification before its sender is told
    /// that delivery failed.
    pub processed_timeout: Duration,
    /// How the worker seals what it sends.
    pub seal: SealOptions,
    /// How long a worker holds a claimed row before another may take it.
    pub lease: Duration,
    /// Delivery workers per process (each claims its own batches, so one slow hand-over does
    /// not hold up the rest).
    pub workers: usize,
    /// Connect and reply timeout of outbound SMTP.
    pub client_timeout: Duration,
    /// The roots outbound STARTTLS verifies next hops against (`None`: none configured, so a
    /// next hop that offers STARTTLS cannot be verified and is not sent to).
    pub tls_roots: Option<Arc<rustls::ClientConfig>>,
    /// How long unsealed keys, trust anchors and validated recipient certificates are kept in
    /// memory between messages: a revoked certificate, a removed anchor or a new key takes effect
    /// within this time (`Hisp::forget` at once).
    pub cache_ttl: Duration,
    /// The exchange's own local address that break-the-glass notices are sent from
    /// (`super::notices`); `None`: notices stay FHIR Communications only.
    pub notice_address: Option<String>,
}

impl HispConfig {
    /// Defaults for `domains`: 10 MiB messages, 5-minute command and 10-minute data timeouts,
    /// retries from a minute doubling to an hour over 10 attempts, one hour for the processed
    /// notification, AES-128-CBC with the message wrapped.
    pub fn new(domains: Vec<String>, hostname: &str) -> HispConfig {
        HispConfig {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            hostname: hostname.to_string(),
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            routes: Vec::new(),
            dns: None,
            mx_port: 25,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_attempts: 10,
            processed_timeout: Duration::from_secs(3600),
            seal: SealOptions {
                wrap: true,
                ..SealOptions::default()
            },
            lease: Duration::from_secs(120),
            workers: 4,
            client_timeout: Duration::from_secs(60),
            tls_roots: None,
            cache_ttl: Duration::from_secs(30),
            notice_address: None,
        }
    }
}

/// Why an inbound message is refused: the SMTP reply says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `554` for a permanent refusal, `451` for a local problem worth retrying.
    pub code: u16,
    /// The enhanced status code, e.g. `5.7.1`.
    pub status: &'static str,
    pub text: String,
}

/// What became of an accepted inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The mailbox entries made, one per recipient.
    pub ids: Vec<String>,
    /// Whether it was a notification about something we sent (no notification answers it).
    pub notification: bool,
}

/// Whether an address may receive mail here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientCheck {
    /// An active address of a local domain.
    Local,
    /// A local domain, but no such active address.
    Unknown,
    /// Not a local domain: relaying is refused.
    Relay,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The label a private key is sealed under: its certificate's issuer and serial.
pub fn key_label(issuer: &str, serial: &str) -> String {
    format!("direct-key/{issuer}/{serial}")
}

/// How the store names a certificate's issuer: the OpenSSL hash of its issuer name, hex.
pub fn issuer_id(cert: &X509) -> String {
    format!("{:08x}", cert.issuer_name_hash())
}

fn serial_hex(cert: &X509) -> anyhow::Result<String> {
    Ok(cert
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_ascii_lowercase())
}

fn unix_of(time: &openssl::asn1::Asn1TimeRef) -> anyhow::Result<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0)?;
    let diff = epoch.diff(time)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// The store's record of a certificate for `subject` (an address or domain), with its private key
/// sealed under `kek` when it is ours.
pub fn certificate_record(
    cert: &X509,
    subject: &str,
    key: Option<(&Kek, &PKey<Private>)>,
    now: i64,
) -> anyhow::Result<DirectCertificate> {
    let issuer = issuer_id(cert);
    let serial = serial_hex(cert)?;
    let sealed_key = match key {
        Some((kek, key)) => Some(keys::seal(kek, &key_label(&issuer, &serial), key)?),
        None => None,
    };
    Ok(DirectCertificate {
        not_after: unix_of(cert.not_after())? * 1000,
        cert_pem: String::from_utf8(cert.to_pem()?)?,
        issuer,
        serial,
        subject: subject.to_ascii_lowercase(),
        sealed_key,
        created: now,
        revoked: None,
    })
}

/// The SHA-256 fingerprint of a certificate, hex (how anchors are named).
pub fn fingerprint(cert: &X509) -> anyhow::Result<String> {
    let digest = cert.digest(openssl::hash::MessageDigest::sha256())?;
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// An entry of a [`Caches`] map, good until `until`.
struct Cached<T> {
    until: Instant,
    value: Arc<T>,
}

/// Entries a cache holds at most; past it, expired entries are dropped, then all.
const CACHE_ENTRIES: usize = 10_000;

/// What the HISP keeps between messages so that per-message work is only the message's: our
/// unsealed, parsed keys by subject; trust anchors by (domain, direction); the recipient
/// certificates that validated for encryption by (sender's domain, recipient), never past the
/// earliest notAfter among them. Every entry lives at most `cache_ttl`: a certificate revoked or
/// an anchor removed in the store (by this process or another) stops being used within that
/// time. The CRLs are the configuration's, fixed for the process's life. Empty answers are not
/// kept, so a certificate or anchor just added is used at once.
#[derive(Default)]
struct Caches {
    keys: CacheMap<String, Vec<RecipientKey>>,
    anchors: CacheMap<(String, &'static str), Anchors>,
    recipients: CacheMap<(String, String), Vec<X509>>,
}

type CacheMap<K, T> = Mutex<HashMap<K, Cached<T>>>;

fn cache_get<K: Eq + Hash, T>(map: &CacheMap<K, T>, key: &K) -> Option<Arc<T>> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(key)
        .filter(|c| c.until > Instant::now())
        .map(|c| c.value.clone())
}

fn cache_put<K: Eq + Hash, T>(map: &CacheMap<K, T>, key: K, value: Arc<T>, until: Instant) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= CACHE_ENTRIES {
        let now = Instant::now();
        map.retain(|_, c| c.until > now);
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
    }
    map.insert(key, Cached { until, value });
}

/// Which Direct addresses a portal user reads and sends as: the active addresses the operator bound
/// to the account (`nutmeg admin direct address bind ADDRESS --user LOGIN`, or `address add ...
/// --user LOGIN`; kept in the store's `direct_address_users`), and none for an account that is not
/// active. An address issued to a practitioner or organization is not anyone's until it is bound:
/// an organization's address may be bound to several accounts (its staff), a person's to one.
/// The one place this is decided: the web inbox and SMTP submission both ask here.
pub async fn user_addresses(
    store: &Store,
    user_id: &str,
) -> anyhow::Result<Vec<store::DirectAddress>> {
    match store.user(user_id).await? {
        Some(user) if user.status == store::UserStatus::Active => {}
        _ => return Ok(Vec::new()),
    }
    Ok(store
        .user_direct_addresses(user_id)
        .await?
        .into_iter()
        .filter(|a| a.status == AddressStatus::Active)
        .collect())
}

/// Whether a portal user may read and send as `address` (see [`user_addresses`]).
pub async fn user_owns_address(
    store: &Store,
    user_id: &str,
    address: &str,
) -> anyhow::Result<bool> {
    let address = address.trim().to_ascii_lowercase();
    Ok(user_addresses(store, user_id)
        .await?
        .iter()
        .any(|a| a.address == address))
}

/// The HISP: the store, the configuration and the key-encryption key. Cheap to clone.
#[derive(Clone)]
pub struct Hisp {
    store: Store,
    config: Arc<HispConfig>,
    kek: Arc<Kek>,
    /// CRLs of the issuers this side trusts (from the configuration).
    crls: Arc<Vec<X509Crl>>,
    /// Woken when something is queued.
    wake: Arc<tokio::sync::Notify>,
    caches: Arc<Caches>,
    /// Open SMTP connections to next hops, idle between messages.
    pool: Arc<client::Pool>,
    /// Asks DNS for certificates, LDAP servers and mail hosts (when configured).
    resolver: Option<Resolver>,
    /// Told when an address has exchanged its test messages (see [`Hisp::with_onboarding`]).
    onboarding: Option<exchange::onboarding::Onboarding>,
    /// Addresses that have exchanged their test messages and whose participants have no
    /// application left unfinished: nothing more to tell about them (in this process).
    settled: Arc<Mutex<HashSet<String>>>,
}

/// Why a queued row could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// It never can be (no key to sign with, no trusted certificate for the recipient).
    Permanent(String),
    /// Not now (certificate discovery hit a DNS timeout or an unreachable LDAP server).
    Temporary(String),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Permanent(why) | SealError::Temporary(why) => f.write_str(why),
        }
    }
}

impl std::fmt::Debug for Hisp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hisp")
            .field("domains", &self.config.domains)
            .finish()
    }
}

fn refusal(code: u16, status: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        status,
        text: text.into(),
    }
}

fn local_problem(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "direct: local failure while receiving");
    refusal(451, "4.3.0", "local error, try again later")
}

/// The SMTP reply for a message that does not open. Says what failed, never what it held.
fn refusal_for(e: &SmimeError) -> Refusal {
    match e {
        SmimeError::Mime(_) | SmimeError::NoFrom | SmimeError::BadHeader(_) => {
            refusal(554, "5.6.0", format!("message not acceptable: {e}"))
        }
        SmimeError::NotEncrypted(_) | SmimeError::BadCms | SmimeError::NotForUs => {
            refusal(554, "5.7.5", format!("cryptographic failure: {e}"))
        }
        SmimeError::Untrusted(TrustError::Revoked { .. }) => {
            refusal(554, "5.7.1", format!("signer revoked: {e}"))
        }
        _ => refusal(554, "5.7.1", format!("security failure: {e}")),
    }
}

fn header_of(entity: &Entity<'_>, name: &str) -> String {
    entity
        .header(name)
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// An RFC 5322 date for now.
fn rfc5322_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string())
}

impl Hisp {
    pub fn new(store: Store, config: HispConfig, kek: Kek, crls: Vec<X509Crl>) -> Hisp {
        let resolver = config.dns.clone().map(Resolver::new);
        Hisp {
            resolver,
            store,
            config: Arc::new(config),
            kek: Arc::new(kek),
            crls: Arc::new(crls),
            wake: Arc::new(tokio::sync::Notify::new()),
            caches: Arc::default(),
            pool: Arc::default(),
            onboarding: None,
            settled: Arc::default(),
        }
    }

    /// Completes the `test-message-exchanged` step of a participant's connection application on
    /// its own: once one of the participant's addresses has received a message and sent one that
    /// its recipient confirmed (processed or dispatched), whichever comes last.
    pub fn with_onboarding(mut self, onboarding: exchange::onboarding::Onboarding) -> Hisp {
        self.onboarding = Some(onboarding);
        self
    }

    /// After `address` received a message or had one confirmed: if it has now done both, each
    /// application of its owner's participants waiting for the test message moves on. A failure
    /// here is logged, never returned: the message itself was handled.
    async fn note_exchange(&self, address: &str) {
        let Some(onboarding) = &self.onboarding else {
            return;
        };
        if self
            .settled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(address)
        {
            return;
        }
        let outcome = async {
            if !self.store.direct_exchanged(address).await? {
                return Ok(Vec::new());
            }
            let Some(owner) = self.store.direct_address(address).await? else {
                return Ok(Vec::new());
            };
            let participants = exchange::participants::participants_of_owner(
                &self.store,
                &owner.owner_kind,
                &owner.owner_id,
            )
            .await?;
            let at = time::OffsetDateTime::now_utc();
            let by = format!("direct: {address}");
            let mut moved = Vec::new();
            let mut waiting = false;
            for participant in &participants {
                moved.extend(
                    onboarding
                        .direct_message_exchanged(participant, &by, at)
                        .await?,
                );
                waiting |= onboarding.unfinished(participant, at).await?;
            }
            if !waiting {
                // A busy address's every message need not ask again.
                self.settled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(address.to_string());
            }
            anyhow::Ok(moved)
        }
        .await;
        match outcome {
            Ok(moved) => {
                for application in moved {
                    tracing::info!(%application, "direct: test message exchanged, application moved on");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "direct: could not record the test message exchange")
            }
        }
    }

    /// Drops what is cached between messages (keys, anchors, validated certificates), so that a
    /// change in the store takes effect at once in this process.
    pub fn forget(&self) {
        for clear in [
            &|c: &Caches| c.keys.lock().unwrap_or_else(|p| p.into_inner()).clear(),
            &|c: &Caches| c.anchors.lock().unwrap_or_else(|p| p.into_inner()).clear(),
            &|c: &Caches| {
                c.recipients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear()
            },
        ] as [&dyn Fn(&Caches); 3]
        {
            clear(&self.caches);
        }
    }

    pub fn config(&self) -> &HispConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn wake(&self) -> &tokio::sync::Notify {
        &self.wake
    }

    /// Whether `domain` is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.config
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether `address` may receive mail here.
    pub async fn check_recipient(&self, address: &str) -> Result<RecipientCheck, Refusal> {
        let Some(domain) = store::domain_of(address) else {
            return Ok(RecipientCheck::Unknown);
        };
        if !self.is_local_domain(&domain) {
            return Ok(RecipientCheck::Relay);
        }
        match self
            .store
            .direct_address(address)
            .await
            .map_err(local_problem)?
        {
            Some(a) if a.status == AddressStatus::Active => Ok(RecipientCheck::Local),
            _ => Ok(RecipientCheck::Unknown),
        }
    }

    /// Our certificates and keys for `subject` (an address or a domain), unsealed once per
    /// `cache_ttl`.
    async fn our_keys(&self, subject: &str) -> anyhow::Result<Arc<Vec<RecipientKey>>> {
        if let Some(keys) = cache_get(&self.caches.keys, &subject.to_string()) {
            return Ok(keys);
        }
        let mut out = Vec::new();
        for c in self.store.direct_certificates(subject).await? {
            let Some(sealed) = &c.sealed_key else {
                continue;
            };
            let cert = X509::from_pem(c.cert_pem.as_bytes())?;
            let key = keys::open(&self.kek, &key_label(&c.issuer, &c.serial), sealed)?;
            out.push((cert, key));
        }
        let out = Arc::new(out);
        if !out.is_empty() {
            let until = Instant::now() + self.config.cache_ttl;
            cache_put(&self.caches.keys, subject.to_string(), out.clone(), until);
        }
        Ok(out)
    }

    async fn anchors(
        &self,
        domain: &str,
        direction: AnchorDirection,
    ) -> anyhow::Result<Arc<Anchors>> {
        let key = (domain.to_string(), direction.as_str());
        if let Some(anchors) = cache_get(&self.caches.anchors, &key) {
            return Ok(anchors);
        }
        let mut anchors = Anchors::new();
        let stored = self.store.trust_anchors(domain, direction).await?;
        for a in &stored {
            anchors.add(X509::from_pem(a.cert_pem.as_bytes())?);
        }
        let anchors = Arc::new(anchors);
        if !stored.is_empty() {
            let until = Instant::now() + self.config.cache_ttl;
            cache_put(&self.caches.anchors, key, anchors.clone(), until);
        }
        Ok(anchors)
    }

    /// Receives a message the SMTP listener accepted for `recipients` (all local and active):
    /// decrypts it with their keys (address-bound, then their domains'), verifies it and validates
    /// its signer against the inbound anchors of the recipients' domain for its From address,
    /// then delivers it to each recipient's mailbox and queues a signed and encrypted processed
    /// notification from each to the sender. A notification (MDN or DSN) about something we sent
    /// updates that message's status and is delivered, never answered.
    pub async fn receive(&self, recipients: &[String], raw: Vec<u8>) -> Result<Received, Refusal> {
        let recipients: Vec<String> = recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
        let Some(first) = recipients.first() else {
            return Err(refusal(554, "5.5.1", "no valid recipients"));
        };
        let domain = store::domain_of(first).unwrap_or_default();
        let anchors = self
            .anchors(&domain, AnchorDirection::Inbound)
            .await
            .map_err(local_problem)?;
        // The recipients' own keys first; their domains' keys (looked up only then) if the
        // message was encrypted for none of those.
        let raw = Arc::new(raw);
        let keys = self.keys_of(&recipients).await?;
        let mut opened = self.open(&raw, keys, &anchors).await?;
        if matches!(opened, Err(SmimeError::NotForUs)) {
            let mut domains: Vec<String> = recipients
                .iter()
                .filter_map(|r| store::domain_of(r))
                .collect();
            domains.dedup();
            let keys = self.keys_of(&domains).await?;
            opened = self.open(&raw, keys, &anchors).await?;
        }
        drop(raw);
        let opened = opened.map_err(|e| {
            tracing::info!(error = %e, "direct: inbound message refused");
            refusal_for(&e)
        })?;

        let entity = Entity::parse(&opened.message)
            .map_err(|e| refusal(554, "5.6.0", format!("message not acceptable: {e}")))?;
        let message_id = header_of(&entity, "Message-ID");
        let subject = header_of(&entity, "Subject");
        let now = now_ms();
        let notification = mdn::is_notification(&entity);
        if notification {
            self.record_notification(&opened.message, &opened.from, now)
                .await
                .map_err(local_problem)?;
        }
        let final_delivery = mdn::wants_final_delivery(&entity);
        let mut ids = Vec::new();
        let mut delivered = Vec::new();
        let mut mdns = Vec::new();
        for r in &recipients {
            let id = uuid::Uuid::new_v4().to_string();
            delivered.push(MailMessage {
                id: id.clone(),
                mailbox: r.clone(),
                kind: if notification {
                    MailKind::Notification
                } else {
                    MailKind::Message
                },
                sender: opened.from.clone(),
                recipients: recipients.clone(),
                subject: subject.clone(),
                message_id: message_id.clone(),
                raw: opened.message.clone(),
                received: now,
                read: None,
            });
            ids.push(id);
            if !notification && !message_id.is_empty() {
                let content = mdn::build(&Notification {
                    disposition: Disposition::Processed,
                    original_message_id: &message_id,
                    final_recipient: r,
                    reporting_domain: &domain,
                    final_destination_delivery: final_delivery,
                    failure: None,
                })
                .map_err(|e| refusal(554, "5.6.0", format!("message not acceptable: {e}")))?;
                mdns.push(self.outbound_row(
                    OutboundKind::Mdn,
                    r,
                    &opened.from,
                    &mdn::subject(&Disposition::Processed, &subject),
                    content,
                    now,
                ));
            }
        }
        // The mailboxes and the processed notifications in one transaction, before the 250.
        self.store
            .deliver_mail_and_queue(delivered, mdns)
            .await
            .map_err(local_problem)?;
        self.wake.notify_one();
        if !notification {
            for r in &recipients {
                self.note_exchange(r).await;
            }
        }
        Ok(Received { ids, notification })
    }

    /// Our keys for each of `subjects` (addresses or domains), in order.
    async fn keys_of(&self, subjects: &[String]) -> Result<Vec<RecipientKey>, Refusal> {
        let mut keys = Vec::new();
        for subject in subjects {
            keys.extend(
                self.our_keys(subject)
                    .await
                    .map_err(local_problem)?
                    .iter()
                    .cloned(),
            );
        }
        Ok(keys)
    }

    /// Opens `raw` with `keys` on the blocking pool (S/MIME is CPU work); with no keys, it was
    /// not for us, without looking.
    async fn open(
        &self,
        raw: &Arc<Vec<u8>>,
        keys: Vec<RecipientKey>,
        anchors: &Arc<Anchors>,
    ) -> Result<Result<smime::Opened, SmimeError>, Refusal> {
        if keys.is_empty() {
            return Ok(Err(SmimeError::NotForUs));
        }
        let (raw, anchors, crls) = (raw.clone(), anchors.clone(), self.crls.clone());
        let now = now_ms() / 1000;
        tokio::task::spawn_blocking(move || {
            let validator = Validator::new(&anchors, &crls, now);
            smime::open(&raw, &keys, &validator)
        })
        .await
        .map_err(local_problem)
    }

    /// Updates the status of what we sent from a disposition notification that arrived.
    async fn record_notification(
        &self,
        message: &[u8],
        from: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        let Ok(report) = mdn::parse(message) else {
            // A DSN (delivery-status) or an unreadable report: delivered, not interpreted.
            return Ok(());
        };
        let status = match report.disposition {
            Disposition::Processed => DeliveryStatus::Processed,
            Disposition::Dispatched => DeliveryStatus::Dispatched,
            Disposition::Failed => DeliveryStatus::Failed,
            Disposition::Other(_) => return Ok(()),
        };
        let Some(original) = report.original_message_id.as_deref() else {
            return Ok(());
        };
        // Only the recipient may report on its message: the signer is bound to From, so From
        // (not the Final-Recipient field, which the sender writes) names whose status changes.
        if !report.final_recipient.is_empty() && !report.final_recipient.eq_ignore_ascii_case(from)
        {
            tracing::info!(from, final_recipient = %report.final_recipient, "direct: notification names another recipient than its signer");
        }
        let recipient = from.to_string();
        let changed = self
            .store
            .outbound_disposition(
                original.trim(),
                &recipient,
                status,
                report.failure.as_deref(),
                now,
            )
            .await?;
        match changed {
            Some(row) if row.status == DeliveryStatus::Failed => {
                self.report_failure(&row, report.failure.as_deref().unwrap_or("delivery failed"))
                    .await?;
            }
            Some(row) if row.kind == OutboundKind::Message => self.note_exchange(&row.sender).await,
            _ => {}
        }
        Ok(())
    }

    fn outbound_row(
        &self,
        kind: OutboundKind,
        from: &str,
        to: &str,
        subject: &str,
        content: Vec<u8>,
        now: i64,
    ) -> Outbound {
        let domain = store::domain_of(from).unwrap_or_else(|| self.config.hostname.clone());
        Outbound {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            sender: from.to_string(),
            recipient: to.to_ascii_lowercase(),
            message_id: format!("<{}@{domain}>", uuid::Uuid::new_v4()),
            subject: subject.to_string(),
            content,
            status: DeliveryStatus::Queued,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            created: now,
            updated: now,
        }
    }

    /// Queues a message from the local address `from` to each of `to`; `content` is its MIME
    /// entity (Content-Type, blank line, body). Answers the Message-ID it will go out with.
    pub async fn send(
        &self,
        from: &str,
        to: &[String],
        subject: &str,
        content: &[u8],
    ) -> anyhow::Result<String> {
        anyhow::ensure!(!to.is_empty(), "no recipients");
        anyhow::ensure!(
            mime::is_safe_header_value(subject),
            "the subject has a control character"
        );
        let now = now_ms();
        let mut rows: Vec<Outbound> = to
            .iter()
            .map(|r| {
                self.outbound_row(
                    OutboundKind::Message,
                    from,
                    r,
                    subject,
                    content.to_vec(),
                    now,
                )
            })
            .collect();
        let message_id = rows[0].message_id.clone();
        for row in &mut rows {
            row.message_id = message_id.clone();
        }
        self.store.enqueue_outbound(rows).await?;
        self.wake.notify_one();
        Ok(message_id)
    }

    /// Whether a message from the local address `sender` can go to `recipient` now: a local
    /// recipient must be an active address of ours, an outside one needs a static route (or a
    /// resolver for MX lookup) and a certificate trusted for the sender's domain, stored or
    /// discovered. `Err` says why not, for the person writing.
    pub async fn check_reachable(
        &self,
        sender: &str,
        recipient: &str,
    ) -> anyhow::Result<Result<(), String>> {
        let Some(domain) = store::domain_of(recipient) else {
            return Ok(Err(format!("{recipient} is not a Direct address.")));
        };
        if self.is_local_domain(&domain) {
            return Ok(match self.check_recipient(recipient).await {
                Ok(RecipientCheck::Local) => Ok(()),
                Ok(_) => Err(format!("{recipient} is not an address of this exchange.")),
                Err(r) => anyhow::bail!(r.text),
            });
        }
        let routed = self
            .config
            .routes
            .iter()
            .any(|r| r.domain.eq_ignore_ascii_case(&domain));
        if !routed {
            let Some(resolver) = &self.resolver else {
                return Ok(Err(format!(
                    "The exchange has no route to {domain} yet; ask the exchange's operator."
                )));
            };
            match discovery::mail_hosts(resolver, &domain).await {
                Ok(hosts) if hosts.is_empty() => {
                    return Ok(Err(format!("{domain} does not accept mail.")))
                }
                Ok(_) => {}
                // A DNS timeout: the queue tries again, and tells the sender if it never can.
                Err(e) if e.is_temporary() => {}
                Err(_) => {
                    return Ok(Err(format!(
                        "The exchange has no route to {domain}: the domain does not exist."
                    )))
                }
            }
        }
        match self.recipient_certificates(sender, recipient).await {
            Ok(certs) if certs.is_empty() => Ok(Err(format!(
                "No trusted certificate is known for {recipient}; ask the exchange's operator."
            ))),
            Ok(_) => Ok(Ok(())),
            // Discovery could not finish now: the queue tries again, and tells the sender if
            // it never can.
            Err(e) if is_temporary(&e) => Ok(Ok(())),
            Err(e) => Err(e),
        }
    }

    /// Marks a mailbox entry read; if its sender asked for final-destination delivery, queues the
    /// dispatched notification (once).
    pub async fn open_message(&self, id: &str) -> anyhow::Result<Option<MailMessage>> {
        let Some(message) = self.store.mail_message(id).await? else {
            return Ok(None);
        };
        if self.store.mark_mail_read(id, now_ms()).await? && message.kind == MailKind::Message {
            let entity = Entity::parse(&message.raw)?;
            if mdn::wants_final_delivery(&entity) && !message.message_id.is_empty() {
                let domain = store::domain_of(&message.mailbox).unwrap_or_default();
                let content = mdn::build(&Notification {
                    disposition: Disposition::Dispatched,
                    original_message_id: &message.message_id,
                    final_recipient: &message.mailbox,
                    reporting_domain: &domain,
                    final_destination_delivery: true,
                    failure: None,
                })?;
                let row = self.outbound_row(
                    OutboundKind::Mdn,
                    &message.mailbox,
                    &message.sender,
                    &mdn::subject(&Disposition::Dispatched, &message.subject),
                    content,
                    now_ms(),
                );
                self.store.enqueue_outbound(vec![row]).await?;
                self.wake.notify_one();
            }
        }
        Ok(Some(message))
    }

    /// Tells a local sender, in their mailbox, that a message could not be delivered (the
    /// delivery status notification for mail this HISP sends). Notifications are never reported.
    async fn report_failure(&self, row: &Outbound, why: &str) -> anyhow::Result<()> {
        if row.kind != OutboundKind::Message {
            tracing::warn!(recipient = %row.recipient, error = why, "direct: a notification could not be delivered");
            return Ok(());
        }
        let domain = store::domain_of(&row.sender).unwrap_or_default();
        let boundary = mime::new_boundary();
        let why: String = why.chars().filter(|c| !c.is_control()).collect();
        let raw = format!(
            "From: MAILER-DAEMON@{domain}\r\nTo: {sender}\r\nSubject: Delivery failed: {subject}\r\n\
             Date: {date}\r\nMessage-ID: <{id}@{domain}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
             Your message {mid} to {rcpt} could not be delivered: {why}\r\n\
             --{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns;{host}\r\n\r\nFinal-Recipient: rfc822;{rcpt}\r\nAction: failed\r\n\
             Status: 5.0.0\r\nDiagnostic-Code: smtp;{why}\r\n\r\n--{boundary}--\r\n",
            sender = row.sender,
            subject = row.subject,
            date = rfc5322_now(),
            id = uuid::Uuid::new_v4(),
            mid = row.message_id,
            rcpt = row.recipient,
            host = self.config.hostname,
        );
        self.store
            .deliver_mail(MailMessage {
                id: uuid::Uuid::new_v4().to_string(),
                mailbox: row.sender.clone(),
                kind: MailKind::Dsn,
                sender: format!("MAILER-DAEMON@{domain}"),
                recipients: vec![row.sender.clone()],
                subject: format!("Delivery failed: {}", row.subject),
                message_id: String::new(),
                raw: raw.into_bytes(),
                received: now_ms(),
                read: None,
            })
            .await?;
        Ok(())
    }

    /// The recipient's certificates that validate for encryption against the sender's domain's
    /// outbound anchors, validated once per `cache_ttl` (and never used past their notAfter).
    async fn recipient_certificates(
        &self,
        sender: &str,
        recipient: &str,
    ) -> anyhow::Result<Arc<Vec<X509>>> {
        let sender_domain = store::domain_of(sender).unwrap_or_default();
        let key = (sender_domain.clone(), recipient.to_ascii_lowercase());
        if let Some(certs) = cache_get(&self.caches.recipients, &key) {
            return Ok(certs);
        }
        let anchors = self
            .anchors(&sender_domain, AnchorDirection::Outbound)
            .await?;
        let mut candidates = self.store.direct_certificates(recipient).await?;
        if candidates.is_empty() {
            if let Some(d) = store::domain_of(recipient) {
                candidates = self.store.direct_certificates(&d).await?;
            }
        }
        let now = now_ms();
        let validator = Validator::new(&anchors, &self.crls, now / 1000);
        let mut stored = Vec::new();
        for c in candidates {
            stored.push(X509::from_pem(c.cert_pem.as_bytes())?);
        }
        let mut out = usable(&validator, recipient, "store", &stored);
        let outside = store::domain_of(recipient).is_some_and(|d| !self.is_local_domain(&d));
        if out.is_empty() && outside {
            if let Some(resolver) = &self.resolver {
                out = self.discover(resolver, &validator, recipient).await?;
            }
        }
        let mut until = Instant::now() + self.config.cache_ttl;
        for cert in &out {
            let left = unix_of(cert.not_after())? * 1000 - now;
            until = until.min(Instant::now() + Duration::from_millis(left.max(0) as u64));
        }
        let out = Arc::new(out);
        if !out.is_empty() {
            cache_put(&self.caches.recipients, key, out.clone(), until);
        }
        Ok(out)
    }

    /// Discovers `recipient`'s certificates (see [`super::discovery`]): DNS CERT at the
    /// address-bound name, then at the domain-bound name, then LDAP; the first step with a
    /// certificate that `validator` accepts for encryption to `recipient` wins. A step that finds
    /// nothing (no such name, no records, nothing valid) passes to the next; a temporary failure
    /// stops the search with an error (a later step must not stand in for an earlier one that
    /// could not be asked).
    async fn discover(
        &self,
        resolver: &Resolver,
        validator: &Validator<'_>,
        recipient: &str,
    ) -> anyhow::Result<Vec<X509>> {
        let domain = store::domain_of(recipient).unwrap_or_default();
        let steps = [
            ("DNS CERT (address-bound)", dns::address_name(recipient)),
            ("DNS CERT (domain-bound)", dns::domain_name(&domain).ok()),
        ];
        for (source, name) in steps {
            let Some(name) = name else { continue };
            match discovery::cert_records(resolver, &name).await {
                Ok(found) => {
                    let valid = usable(validator, recipient, source, &read_found(&found));
                    if !valid.is_empty() {
                        return Ok(valid);
                    }
                }
                Err(e) if e.is_temporary() => return Err(e.into()),
                Err(_) => {}
            }
        }
        let found =
            discovery::ldap_certificates(resolver, recipient, self.config.client_timeout).await?;
        Ok(usable(validator, recipient, "LDAP", &read_found(&found)))
    }

    /// Signs and encrypts one queued row for its recipient. `Err` says why not, and whether it
    /// can never be sent (no key to sign with, no trusted certificate for the recipient) or
    /// not now (certificate discovery could not finish, the database did not answer).
    pub async fn seal(&self, row: &Outbound) -> Result<Vec<u8>, SealError> {
        let classify = |e: anyhow::Error| {
            if is_temporary(&e) {
                SealError::Temporary(format!("reading our keys: {e}"))
            } else {
                SealError::Permanent(e.to_string())
            }
        };
        let mut signers = self.our_keys(&row.sender).await.map_err(classify)?;
        if signers.is_empty() {
            if let Some(d) = store::domain_of(&row.sender) {
                signers = self.our_keys(&d).await.map_err(classify)?;
            }
        }
        let Some((cert, key)) = signers.first().cloned() else {
            return Err(SealError::Permanent(format!(
                "no certificate and key to sign for {}",
                row.sender
            )));
        };
        let recipients = self
            .recipient_certificates(&row.sender, &row.recipient)
            .await
            .map_err(|e| {
                if is_temporary(&e) {
                    SealError::Temporary(format!("certificate discovery: {e}"))
                } else {
                    SealError::Permanent(e.to_string())
                }
            })?;
        if recipients.is_empty() {
            return Err(SealError::Permanent(format!(
                "no trusted certificate for {}",
                row.recipient
            )));
        }
        let row = row.clone();
        let options = self.config.seal;
        tokio::task::spawn_blocking(move || {
            let to = [row.recipient.clone()];
            let extra: Vec<(String, String)> = if row.kind == OutboundKind::Message {
                vec![(
                    "Disposition-Notification-Options".to_string(),
                    "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true".to_string(),
                )]
            } else {
                Vec::new()
            };
            let outgoing = Outgoing {
                from: &row.sender,
                to: &to,
                subject: &row.subject,
                message_id: &row.message_id,
                date: &rfc5322_now(),
                extra_headers: &extra,
                content: &row.content,
            };
            let signer = Signer {
                cert: &cert,
                key: &key,
                chain: &[],
            };
            smime::seal(&outgoing, &signer, &recipients, options)
                .map_err(|e| SealError::Permanent(e.to_string()))
        })
        .await
        .map_err(|e| SealError::Permanent(e.to_string()))?
    }

    /// The delay before attempt `attempts + 1`.
    fn backoff(&self, attempts: i64) -> Duration {
        let factor = 1u32 << attempts.clamp(0, 20) as u32;
        self.config
            .retry_base
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    /// Delivers one claimed row: seal, hand over (to a local mailbox if the recipient is ours, or
    /// by SMTP to its route), and settle it.
    async fn deliver(&self, owner: &str, row: Outbound) -> anyhow::Result<()> {
        let delivery = match self.seal(&row).await {
            Err(SealError::Permanent(why)) => Delivery::Permanent(why),
            Err(SealError::Temporary(why)) => Delivery::Transient(why),
            Ok(sealed) => self.hand_over(&row, sealed).await,
        };
        let outcome = match delivery {
            Delivery::Accepted => Settle::Sent,
            Delivery::Permanent(why) => Settle::Failed { error: why },
            Delivery::Transient(why) if row.attempts >= i64::from(self.config.max_attempts) => {
                Settle::Failed {
                    error: format!("gave up after {} attempts: {why}", row.attempts),
                }
            }
            Delivery::Transient(why) => Settle::Retry {
                at: now_ms() + self.backoff(row.attempts - 1).as_millis() as i64,
                error: why,
            },
        };
        tracing::debug!(id = %row.id, ?outcome, "direct: outbound settled");
        let failed = match &outcome {
            Settle::Failed { error } => Some(error.clone()),
            _ => None,
        };
        if self
            .store
            .settle_outbound(&row.id, owner, now_ms(), outcome)
            .await?
        {
            if let Some(why) = failed {
                self.report_failure(&row, &why).await?;
            }
        }
        Ok(())
    }

    async fn hand_over(&self, row: &Outbound, sealed: Vec<u8>) -> Delivery {
        let domain = store::domain_of(&row.recipient).unwrap_or_default();
        if let Some(route) = self
            .config
            .routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(&domain))
        {
            let hop = Hop {
                address: &route.address,
                name: None,
                tls: route.tls,
                roots: self.config.tls_roots.as_ref(),
            };
            return client::send(
                &self.pool,
                &hop,
                &self.config.hostname,
                &row.sender,
                &row.recipient,
                &sealed,
                self.config.client_timeout,
            )
            .await;
        }
        if self.is_local_domain(&domain) {
            // Between two addresses of ours: the same path as mail from outside.
            return match self.check_recipient(&row.recipient).await {
                Ok(RecipientCheck::Local) => {
                    match Box::pin(self.receive(std::slice::from_ref(&row.recipient), sealed)).await
                    {
                        Ok(_) => Delivery::Accepted,
                        Err(r) if r.code >= 500 => Delivery::Permanent(r.text),
                        Err(r) => Delivery::Transient(r.text),
                    }
                }
                Ok(_) => Delivery::Permanent(format!("no such address: {}", row.recipient)),
                Err(r) => Delivery::Transient(r.text),
            };
        }
        match &self.resolver {
            Some(resolver) => self.send_by_mx(resolver, &domain, row, &sealed).await,
            None => Delivery::Permanent(format!(
                "no route to {domain} (no static route, and no DNS configured for MX lookup)"
            )),
        }
    }

    /// Hands a message to the mail hosts of `domain` (MX lookup), each address of each host in
    /// turn until one takes or refuses it. A domain that does not exist, takes no mail (null MX),
    /// or whose hosts have no address is a permanent failure; a DNS timeout or hosts that could
    /// not be reached are temporary.
    async fn send_by_mx(
        &self,
        resolver: &Resolver,
        domain: &str,
        row: &Outbound,
        sealed: &[u8],
    ) -> Delivery {
        let hosts = match discovery::mail_hosts(resolver, domain).await {
            Ok(hosts) => hosts,
            Err(e) if e.is_temporary() => return Delivery::Transient(e.to_string()),
            Err(e) => return Delivery::Permanent(format!("no route to {domain}: {e}")),
        };
        if hosts.is_empty() {
            return Delivery::Permanent(format!("{domain} accepts no mail (null MX)"));
        }
        let mut transient: Option<String> = None;
        for host in &hosts {
            let ips = match resolver.addresses(host).await {
                Ok(ips) => ips,
                Err(e) => {
                    if e.is_temporary() {
                        transient = Some(e.to_string());
                    }
                    continue;
                }
            };
            let name = host.to_ascii();
            let name = name.trim_end_matches('.');
            for ip in ips {
                let address = std::net::SocketAddr::new(ip, self.config.mx_port).to_string();
                let hop = Hop {
                    address: &address,
                    name: Some(name),
                    tls: TlsPolicy::Opportunistic,
                    roots: self.config.tls_roots.as_ref(),
                };
                match client::send(
                    &self.pool,
                    &hop,
                    &self.config.hostname,
                    &row.sender,
                    &row.recipient,
                    sealed,
                    self.config.client_timeout,
                )
                .await
                {
                    Delivery::Transient(why) => transient = Some(format!("{name}: {why}")),
                    done => return done,
                }
            }
        }
        match transient {
            Some(why) => Delivery::Transient(why),
            None => Delivery::Permanent(format!("no address for the mail hosts of {domain}")),
        }
    }

    /// One pass of the delivery worker: claims due rows as `owner`, delivers them, and expires
    /// sent messages whose processed notification is overdue. Answers how many rows it handled.
    pub async fn run_once(&self, owner: &str, batch: usize) -> anyhow::Result<usize> {
        let now = now_ms();
        let rows = self
            .store
            .claim_outbound(
                owner,
                now,
                now + self.config.lease.as_millis() as i64,
                batch,
            )
            .await?;
        let count = rows.len();
        let mut tasks = tokio::task::JoinSet::new();
        for row in rows {
            let hisp = self.clone();
            let owner = owner.to_string();
            tasks.spawn(async move { hisp.deliver(&owner, row).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "direct: delivery failed"),
                Err(e) => tracing::warn!(error = %e, "direct: delivery task failed"),
            }
        }
        let overdue = self
            .store
            .expire_unconfirmed_outbound(
                now - self.config.processed_timeout.as_millis() as i64,
                now,
                batch,
            )
            .await?;
        for row in &overdue {
            self.report_failure(row, "no processed notification arrived in time")
                .await?;
        }
        Ok(count)
    }
}

/// Whether an error from certificate lookup is a temporary DNS or LDAP failure.
/// Whether a failure is of the moment rather than of the message: a DNS timeout or server failure,
/// or the database not answering (reading our keys or the trust anchors); the row is retried later
/// instead of failing for good.
fn is_temporary(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DnsError>()
        .is_some_and(DnsError::is_temporary)
        || e.downcast_ref::<store::StoreError>().is_some()
}

/// The certificates of what discovery found (DER, PKCS#7 or PEM each); unreadable values are
/// skipped.
fn read_found(found: &[Vec<u8>]) -> Vec<X509> {
    let mut out = Vec::new();
    for bytes in found {
        match direct::trust::read_bundle(bytes) {
            Ok(certs) => out.extend(certs),
            Err(e) => tracing::info!(error = %e, "direct: a discovered value is not a certificate"),
        }
    }
    out
}

/// The certificates among `certs` that `validator` accepts for encrypting to `recipient`; the
/// others are logged with why (`source` says where they came from) and skipped.
fn usable(validator: &Validator<'_>, recipient: &str, source: &str, certs: &[X509]) -> Vec<X509> {
    let mut out = Vec::new();
    for (i, cert) in certs.iter().enumerate() {
        // The others found with it may be the intermediates of its path.
        let others: Vec<X509> = certs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c.clone())
            .collect();
        match validator.validate_for(cert, &others, Some(recipient), Usage::Encryption) {
            Ok(_) => out.push(cert.clone()),
            Err(e) => {
                tracing::info!(recipient, source, error = %e, "direct: recipient certificate not trusted")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row whose keys could not be read because the database failed is retried, not failed
    /// for good with a failure notice to its sender.
    #[test]
    fn the_database_failing_is_of_the_moment_and_a_missing_key_is_not() {
        let locked: anyhow::Error = store::StoreError::Database("database is locked".into()).into();
        assert!(is_temporary(&locked));
        assert!(!is_temporary(&anyhow::anyhow!(
            "no certificate and key to sign"
        )));
    }
}
