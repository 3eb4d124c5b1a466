//! The audit log: an append-only, hash-chained list of records (AuditEvent JSON text, as the
//! exchange hands it over), its group-commit appender, and the verification that walks the chain.
//!
//! Each record has a sequence number (1, 2, 3... without gaps, in commit order), the instant it was
//! recorded (milliseconds since the Unix epoch, given by the caller: the exchange writes the same
//! instant into the AuditEvent's `recorded`, so the two agree), the JSON text byte for byte, the
//! previous record's hash (32 zero bytes for the first) and its own hash, SHA-256 over
//!
//! ```text
//! "nutmeg-audit-v1" || previous hash (32 bytes) || seq (i64, 8 bytes big-endian)
//!   || recorded (i64, 8 bytes big-endian) || length of json (u64, 8 bytes big-endian) || json bytes
//! ```
//!
//! Every field has a fixed width or a length in front, so no two records encode alike; the tag
//! names the encoding, so a later one can be told apart. Hashes are stored as lowercase hex.
//!
//! What the chain proves: a record changed in place, removed, inserted, renumbered or moved after it
//! was written breaks the chain at that record, and [`verify`] names it. What it cannot prove alone:
//! that records were not cut off the end, or that someone with write access to the database did not
//! recompute every hash after the point they changed; for that, keep the head ([`AuditCheck::Intact`])
//! somewhere else and compare.
//!
//! The index: each record may come with `(name, value)` pairs that the exchange derives from its
//! AuditEvent (the patients it names, the requesting participant, the outcome...), stored in
//! `audit_index` in the same transaction as the record (on SQLite, whose log is a file, in the
//! record's line and copied with it: see `audit_file`), so that [`crate::Store::search_audit`]
//! finds records without reading the log. The hash chain covers the AuditEvent JSON, not the
//! index: [`verify`] does not check it. The index is derived data, as trustworthy as the database's
//! triggers (which refuse UPDATE and DELETE on it as on the log); the exchange can rebuild and
//! compare it from the JSON, which the chain does cover.

use std::future::Future;

use ring::digest;
use tokio::sync::{mpsc, oneshot};

use crate::exec::{Exec, Val};
use crate::{Result, StoreError};

/// The domain tag in front of every hashed record (see the module documentation).
const TAG: &[u8] = b"nutmeg-audit-v1";
/// Records read per statement while verifying: memory stays bounded however long the chain is.
const VERIFY_CHUNK: usize = 1_000;
/// How long the writer thread waits for more callers before a batch when the batch before it had
/// more than one record (callers arrive together): each `fdatasync` costs this machine some
/// 50-350 us of CPU, so larger batches under load cost less per record. On an audited search
/// load at 32 clients, 1 ms took 8-19% off the server's CPU per request, with more requests
/// answered and about the same p99 (BENCHMARKS.md). A lone caller never waits.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(1);
/// The most records one group commit writes (a single request larger than this is still written
/// whole, in one transaction).
const MAX_BATCH: usize = 1_024;

/// A SHA-256 hash of an audit record; shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHash(pub [u8; 32]);

impl AuditHash {
    /// The previous hash of the first record.
    pub const ZERO: AuditHash = AuditHash([0; 32]);

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<AuditHash> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(AuditHash(out))
    }

    /// 64 lowercase hex digits (without the formatting machinery: every appended record's line
    /// carries two).
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }
}

impl std::fmt::Display for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditHash({self})")
    }
}

/// A record to append: when it was recorded, the AuditEvent JSON text, stored as given, and what to
/// find it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    /// Milliseconds since the Unix epoch, UTC, as the caller recorded it (not checked for order).
    pub recorded: i64,
    pub json: String,
    /// `(name, value)` pairs to search the record by (the store does not interpret them; a pair
    /// given twice is kept once). Not covered by the hash chain.
    pub index: Vec<(String, String)>,
}

/// A search of the audit log by its index, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// `(name, value)` pairs a record must have been indexed with: every name must match, and
    /// several values given for one name match any of them. The first name's pairs drive the
    /// lookup, so put the most selective first (a patient rather than an outcome).
    pub filters: Vec<(String, String)>,
    /// Only records with `recorded` at or after this instant (milliseconds since the Unix epoch).
    pub recorded_from: Option<i64>,
    /// Only records with `recorded` at or before this instant.
    pub recorded_to: Option<i64>,
    /// Only records numbered below this one: the next page of a newest-first walk starts below
    /// the last record of the page before.
    pub before_seq: Option<i64>,
    /// The most records to answer.
    pub limit: usize,
}

/// Where an appended record landed in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: AuditHash,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub recorded: i64,
    pub json: String,
    pub prev_hash: AuditHash,
    pub hash: AuditHash,
}

/// The outcome of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    /// Every record is in place. `head` is the last record's hash ([`AuditHash::ZERO`] when the log
    /// is empty); kept elsewhere, it shows later that nothing was cut off the end.
    Intact { count: u64, head: AuditHash },
    /// The first problem found; the `verified` records before it are intact.
    Broken { verified: u64, fault: AuditFault },
}

/// What is wrong at the first record where the chain breaks. Each names the record(s) concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFault {
    /// Record `seq`'s hash does not match its content (or a stored field is malformed): it was
    /// changed after it was written, or written by someone other than the store.
    Changed { seq: i64 },
    /// Records `first` to `last` are missing: the chain goes from `first - 1` to `last + 1`.
    Removed { first: i64, last: i64 },
    /// Record `seq` was inserted: it carries a number the store never gives (zero or less, or past
    /// a gap while chained to the record before), or the record after it is chained past it to the
    /// one before it.
    Inserted { seq: i64 },
    /// Record `seq` is not chained to the record before it. `chained_to` names the record it is
    /// chained to when that is in the log (records were reordered); `None` means no record in the
    /// log has the hash it names: the record before it was replaced (changed, with its hash
    /// recomputed) or removed and the rest renumbered, or record `seq` itself was forged.
    Unlinked { seq: i64, chained_to: Option<i64> },
}

impl std::fmt::Display for AuditFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            AuditFault::Changed { seq } => write!(
                f,
                "audit record {seq} was changed: its hash does not match its content"
            ),
            AuditFault::Removed { first, last } if first == last => {
                write!(f, "audit record {first} was removed")
            }
            AuditFault::Removed { first, last } => {
                write!(f, "audit records {first} to {last} were removed")
            }
            AuditFault::Inserted { seq } => write!(f, "audit record {seq} was inserted"),
            AuditFault::Unlinked {
                seq,
                chained_to: Some(other),
            } => write!(
                f,
                "audit record {seq} is out of order: it follows record {other}, not record {}",
                seq - 1
            ),
            AuditFault::Unlinked {
                seq,
                chained_to: None,
            } if seq <= 1 => write!(
                f,
                "audit record {seq} does not start the chain: the record it was chained to is not in the log \
                 (records before it were removed, or it was forged)"
            ),
            AuditFault::Unlinked {
                seq,
                chained_to: None,
            } => write!(
                f,
                "audit record {seq} does not follow record {}: the record it was chained to is not in the log \
                 (record {} was replaced or removed, or record {seq} was forged)",
                seq - 1,
                seq - 1
            ),
        }
    }
}

impl std::fmt::Display for AuditCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditCheck::Intact { count, head } => {
                write!(f, "the audit log is intact: {count} records, head {head}")
            }
            AuditCheck::Broken { verified, fault } => write!(
                f,
                "the audit log is broken: {fault} (the {verified} records before it are intact)"
            ),
        }
    }
}

/// The hash of a record with these fields (the encoding is in the module documentation).
pub fn chain_hash(prev: &AuditHash, seq: i64, recorded: i64, json: &str) -> AuditHash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(TAG);
    ctx.update(&prev.0);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&recorded.to_be_bytes());
    ctx.update(&(json.len() as u64).to_be_bytes());
    ctx.update(json.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    AuditHash(out)
}

/// Numbers and hashes `records` after the chain's head `(seq, hash)`: the rows to insert.
pub(crate) fn extend(head: (i64, AuditHash), records: &[NewAuditRecord]) -> Vec<AuditRecord> {
    let (mut seq, mut prev) = head;
    records
        .iter()
        .map(|r| {
            seq += 1;
            let hash = chain_hash(&prev, seq, r.recorded, &r.json);
            let record = AuditRecord {
                seq,
                recorded: r.recorded,
                json: r.json.clone(),
                prev_hash: prev,
                hash,
            };
            prev = hash;
            record
        })
        .collect()
}

/// Where each appended record landed, for its caller.
pub(crate) fn appended(rows: &[AuditRecord]) -> Vec<Appended> {
    rows.iter()
        .map(|r| Appended {
            seq: r.seq,
            hash: r.hash,
        })
        .collect()
}

/// The head of the chain from its last row `(seq, hash text)`, or the start of an empty chain.
pub(crate) fn head(last: Option<(i64, String)>) -> Result<(i64, AuditHash)> {
    match last {
        None => Ok((0, AuditHash::ZERO)),
        Some((seq, hex)) => AuditHash::from_hex(&hex).map(|h| (seq, h)).ok_or_else(|| {
            StoreError::Database(format!("audit record {seq} has a malformed hash"))
        }),
    }
}

/// The index rows of appended records, `(name, value, seq)`, each pair once per record.
pub(crate) fn index_rows(
    rows: &[AuditRecord],
    records: &[NewAuditRecord],
) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for (row, record) in rows.iter().zip(records) {
        let mut pairs: Vec<&(String, String)> = record.index.iter().collect();
        pairs.sort();
        pairs.dedup();
        out.extend(
            pairs
                .into_iter()
                .map(|(name, value)| (name.clone(), value.clone(), row.seq)),
        );
    }
    out
}

/// The statement that reads the chain's head under the engine's append lock.
pub(crate) const HEAD_SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

// ---- reading and verifying -------------------------------------------------------------------

/// A row as stored, before anything is trusted: a tampered row may hold anything.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    seq: i64,
    recorded: Option<i64>,
    json: String,
    prev_hash: String,
    hash: String,
}

/// The columns of `audit_log` where it holds the records themselves (PostgreSQL), as
/// [`raw_row`] reads them. SQLite's copy holds each record's place in the log file instead.
pub(crate) const RECORD_COLUMNS: &[&str] = &["seq", "recorded", "json", "prev_hash", "hash"];

/// Up to `limit` rows with `seq > after`, in order.
pub(crate) async fn raw_records(
    e: &mut impl Exec,
    after: i64,
    limit: usize,
) -> Result<Vec<RawRecord>> {
    let rows = rows_after(e, RECORD_COLUMNS, after, limit).await?;
    rows.into_iter().map(raw_row).collect()
}

/// `columns` of up to `limit` rows of `audit_log` with `seq > after`, in order.
pub(crate) async fn rows_after(
    e: &mut impl Exec,
    columns: &[&str],
    after: i64,
    limit: usize,
) -> Result<Vec<Vec<Val>>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT {} FROM audit_log WHERE seq > {} ORDER BY seq LIMIT {}",
        columns.join(", "),
        d.placeholder(1),
        d.placeholder(2)
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    e.rows(&sql, &[Val::Int(after), Val::Int(limit)]).await
}

/// A row's leading `seq, recorded`: the number, and the time if it is an integer (anything else,
/// in a tampered row on SQLite, shows as changed).
pub(crate) fn seq_and_time(row: &mut impl Iterator<Item = Val>) -> Result<(i64, Option<i64>)> {
    let seq = row.next().unwrap_or(Val::Null).int()?;
    let recorded = match row.next() {
        Some(Val::Int(i)) => Some(i),
        _ => None,
    };
    Ok((seq, recorded))
}

/// A row of `seq, recorded, json, prev_hash, hash`, as stored.
fn raw_row(row: Vec<Val>) -> Result<RawRecord> {
    let mut row = row.into_iter();
    let (seq, recorded) = seq_and_time(&mut row)?;
    let mut next = || row.next().unwrap_or(Val::Null);
    // Text as stored; anything else (a tampered row on SQLite) shows as changed.
    let text = |v: Val| match v {
        Val::Text(s) => s,
        _ => String::new(),
    };
    Ok(RawRecord {
        seq,
        recorded,
        json: text(next()),
        prev_hash: text(next()),
        hash: text(next()),
    })
}

/// The records matching `query`, newest first (see [`AuditQuery`]).
///
/// With filters, the first name's rows of `audit_index` (primary key name, value, seq) are read
/// backwards from `before_seq`, so a page costs as many index lookups as it has candidates; every
/// other name is an index probe per candidate. Without filters the log is read backwards by seq.
pub(crate) async fn search(e: &mut impl Exec, query: &AuditQuery) -> Result<Vec<RawRecord>> {
    let rows = search_rows(e, query, RECORD_COLUMNS).await?;
    rows.into_iter().map(raw_row).collect()
}

/// [`search`]: `columns` of the matching rows of `audit_log`, newest first.
pub(crate) async fn search_rows(
    e: &mut impl Exec,
    query: &AuditQuery,
    columns: &[&str],
) -> Result<Vec<Vec<Val>>> {
    let d = e.dialect();
    let mut args: Vec<Val> = Vec::new();
    let bind = |args: &mut Vec<Val>, v: Val| {
        args.push(v);
        d.placeholder(args.len())
    };
    // The filters by name, in the order their names first appear.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, value) in &query.filters {
        match groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => {
                if !values.contains(&value.as_str()) {
                    values.push(value)
                }
            }
            None => groups.push((name, vec![value])),
        }
    }
    let mut conditions: Vec<String> = Vec::new();
    let mut from = "audit_log l".to_string();
    let mut order = "l.seq";
    let mut rest = groups.as_slice();
    if let Some(((name, values), others)) = groups.split_first() {
        rest = others;
        let n = bind(&mut args, Val::Text(name.to_string()));
        if let [value] = values.as_slice() {
            // One value: walk that (name, value)'s rows backwards in key order, and stop at the limit.
            let v = bind(&mut args, Val::Text(value.to_string()));
            from = "audit_index d JOIN audit_log l ON l.seq = d.seq".to_string();
            conditions.push(format!("d.name = {n} AND d.value = {v}"));
            order = "d.seq";
        } else {
            let vs: Vec<String> = values
                .iter()
                .map(|v| bind(&mut args, Val::Text(v.to_string())))
                .collect();
            conditions.push(format!(
                "l.seq IN (SELECT seq FROM audit_index WHERE name = {n} AND value IN ({}))",
                vs.join(", ")
            ));
        }
    }
    for (name, values) in rest {
        let n = bind(&mut args, Val::Text(name.to_string()));
        let vs: Vec<String> = values
            .iter()
            .map(|v| bind(&mut args, Val::Text(v.to_string())))
            .collect();
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM audit_index i WHERE i.name = {n} AND i.value IN ({}) AND i.seq = l.seq)",
            vs.join(", ")
        ));
    }
    if let Some(before) = query.before_seq {
        let b = bind(&mut args, Val::Int(before));
        conditions.push(format!("{order} < {b}"));
    }
    if let Some(from_ms) = query.recorded_from {
        let p = bind(&mut args, Val::Int(from_ms));
        conditions.push(format!("l.recorded >= {p}"));
    }
    if let Some(to_ms) = query.recorded_to {
        let p = bind(&mut args, Val::Int(to_ms));
        conditions.push(format!("l.recorded <= {p}"));
    }
    let limit = bind(
        &mut args,
        Val::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)),
    );
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let columns: Vec<String> = columns.iter().map(|c| format!("l.{c}")).collect();
    let sql = format!(
        "SELECT {} FROM {from}{filter} ORDER BY {order} DESC LIMIT {limit}",
        columns.join(", ")
    );
    e.rows(&sql, &args).await
}

/// The record whose hash is `hash`, if any (read only when the chain breaks, so the scan it may
/// take does not matter).
pub(crate) async fn seq_of_hash(e: &mut impl Exec, hash: &AuditHash) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT seq FROM audit_log WHERE hash = {} ORDER BY seq LIMIT 1",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[Val::Text(hash.to_hex())]).await?;
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .map(|v| v.int())
        .transpose()
}

impl RawRecord {
    /// A record as some other medium holds it (the SQLite engine's log file).
    #[cfg(feature = "sqlite")]
    pub(crate) fn new(
        seq: i64,
        recorded: Option<i64>,
        json: String,
        prev_hash: String,
        hash: String,
    ) -> RawRecord {
        RawRecord {
            seq,
            recorded,
            json,
            prev_hash,
            hash,
        }
    }

    /// The record, if every stored field is well formed and its hash matches its content.
    fn checked(self) -> Option<AuditRecord> {
        let record = AuditRecord {
            seq: self.seq,
            recorded: self.recorded?,
            prev_hash: AuditHash::from_hex(&self.prev_hash)?,
            hash: AuditHash::from_hex(&self.hash)?,
            json: self.json,
        };
        let expected = chain_hash(&record.prev_hash, record.seq, record.recorded, &record.json);
        (expected == record.hash).then_some(record)
    }

    /// The record for [`crate::Store::audit_records`]: well formed, hash not checked.
    pub(crate) fn parsed(self) -> Result<AuditRecord> {
        let seq = self.seq;
        let bad =
            |what: &str| StoreError::Database(format!("audit record {seq} has a malformed {what}"));
        Ok(AuditRecord {
            seq,
            recorded: self.recorded.ok_or_else(|| bad("time"))?,
            prev_hash: AuditHash::from_hex(&self.prev_hash).ok_or_else(|| bad("previous hash"))?,
            hash: AuditHash::from_hex(&self.hash).ok_or_else(|| bad("hash"))?,
            json: self.json,
        })
    }
}

/// What the walk needs from an engine: chunks of rows in order, and a record found by its hash.
pub(crate) trait ChainSource {
    fn chunk(&self, after: i64, limit: usize) -> impl Future<Output = Result<Vec<RawRecord>>>;
    fn find(&self, hash: AuditHash) -> impl Future<Output = Result<Option<i64>>>;
}

/// One step of the walk.
enum Step {
    Next,
    Fault(AuditFault),
    /// The record is not chained to the one before; where its previous hash points decides the fault.
    Unlinked {
        seq: i64,
        prev: AuditHash,
    },
}

/// The walk's state: the last intact record and the hash of the one before it.
struct Walk {
    count: u64,
    last: (i64, AuditHash),
}

impl Walk {
    fn step(&mut self, raw: RawRecord) -> Step {
        let seq = raw.seq;
        let (last_seq, last_hash) = self.last;
        let expected = last_seq + 1;
        // Checked in this order so that the fault names the record that was tampered with: a
        // forged record chained in properly, with the rest renumbered, shows at the next record as
        // a link past it (and that record's own hash, over its old number, would also fail).
        let prev = AuditHash::from_hex(&raw.prev_hash);
        if seq != expected {
            return Step::Fault(if seq > expected && prev != Some(last_hash) {
                AuditFault::Removed {
                    first: expected,
                    last: seq - 1,
                }
            } else {
                AuditFault::Inserted { seq }
            });
        }
        match prev {
            Some(prev) if prev != last_hash => return Step::Unlinked { seq, prev },
            _ => {}
        }
        let Some(record) = raw.checked() else {
            return Step::Fault(AuditFault::Changed { seq });
        };
        self.count += 1;
        self.last = (record.seq, record.hash);
        Step::Next
    }
}

/// Walks the whole chain in chunks and returns its head or the first fault.
pub(crate) async fn verify(source: &impl ChainSource) -> Result<AuditCheck> {
    let mut walk = Walk {
        count: 0,
        last: (0, AuditHash::ZERO),
    };
    // From the very bottom: a record numbered zero or less is not the store's, and must be seen.
    let mut after = i64::MIN;
    loop {
        let chunk = source.chunk(after, VERIFY_CHUNK).await?;
        let done = chunk.len() < VERIFY_CHUNK;
        for raw in chunk {
            let fault = match walk.step(raw) {
                Step::Next => continue,
                Step::Fault(fault) => fault,
                Step::Unlinked { seq, prev } => match source.find(prev).await? {
                    Some(found) if found == seq - 2 => AuditFault::Inserted { seq: seq - 1 },
                    found => AuditFault::Unlinked {
                        seq,
                        chained_to: found,
                    },
                },
            };
            return Ok(AuditCheck::Broken {
                verified: walk.count,
                fault,
            });
        }
        after = walk.last.0;
        if done {
            return Ok(AuditCheck::Intact {
                count: walk.count,
                head: walk.last.1,
            });
        }
    }
}

// ---- group commit ----------------------------------------------------------------------------

/// One caller's records and where to send their outcome.
struct Request {
    records: Vec<NewAuditRecord>,
    reply: oneshot::Sender<Result<Vec<Appended>>>,
}

/// The requests one transaction writes: the first and whatever else is queued, up to
/// [`MAX_BATCH`] records.
struct Batch {
    records: Vec<NewAuditRecord>,
    shares: Vec<(usize, oneshot::Sender<Result<Vec<Appended>>>)>,
}

impl Batch {
    fn gather(first: Request, mut more: impl FnMut() -> Option<Request>) -> Batch {
        let mut requests = vec![first];
        let mut total = requests[0].records.len();
        while total < MAX_BATCH {
            match more() {
                Some(request) => {
                    total += request.records.len();
                    requests.push(request);
                }
                None => break,
            }
        }
        let mut records = Vec::with_capacity(total);
        let mut shares = Vec::with_capacity(requests.len());
        for request in requests {
            shares.push((request.records.len(), request.reply));
            records.extend(request.records);
        }
        Batch { records, shares }
    }

    /// Answers each caller with its records' places, or every caller with the batch's failure.
    fn settle(self, total: usize, outcome: Result<Vec<Appended>>) {
        match outcome {
            Ok(appended) if appended.len() == total => {
                let mut appended = appended.into_iter();
                for (n, reply) in self.shares {
                    // A caller that gave up still has its record written; nothing to tell it.
                    let _ = reply.send(Ok(appended.by_ref().take(n).collect()));
                }
            }
            outcome => {
                let message = match outcome {
                    Err(e) => e.to_string(),
                    Ok(appended) => format!(
                        "audit batch of {total} records answered {} positions",
                        appended.len()
                    ),
                };
                tracing::warn!(records = total, callers = self.shares.len(), error = %message, "audit batch failed");
                for (_, reply) in self.shares {
                    let _ = reply.send(Err(StoreError::Database(message.clone())));
                }
            }
        }
    }
}

/// The group-commit queue: callers' records go to one writer, which writes everything queued
/// since its last transaction as one transaction and answers each caller once that is committed.
/// Durability costs one commit per batch instead of one per record, and the chain stays linear
/// because one writer writes it (in each process; processes sharing a PostgreSQL database
/// serialise on a lock).
///
/// The writer is a tokio task for an engine whose writes are asynchronous (PostgreSQL), or a
/// thread of its own for one whose writes are blocking calls (SQLite): there a caller's record
/// reaches the thread that writes it with one wake-up and its answer comes back with another,
/// where a task would hand each batch to the blocking pool and back.
///
/// The queue is unbounded because every queued request has a caller waiting for its answer:
/// it holds at most one request per waiting caller.
#[derive(Clone)]
pub(crate) struct Appender {
    queue: Queue,
}

#[derive(Clone)]
enum Queue {
    Task(mpsc::UnboundedSender<Request>),
    Thread(std::sync::mpsc::Sender<Request>),
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

impl Appender {
    /// Starts the writer task on the current tokio runtime. `write` appends a batch atomically and
    /// returns where each record landed, in order. The task ends when every `Appender` is dropped.
    pub(crate) fn spawn<W, F>(mut write: W) -> Appender
    where
        W: FnMut(Vec<NewAuditRecord>) -> F + Send + 'static,
        F: Future<Output = Result<Vec<Appended>>> + Send + 'static,
    {
        let (queue, mut requests) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = requests.recv().await {
                let mut batch = Batch::gather(first, || requests.try_recv().ok());
                let records = std::mem::take(&mut batch.records);
                let total = records.len();
                // A task of its own, so that a panic while writing fails this batch's callers and
                // not every later append.
                let outcome = match tokio::spawn(write(records)).await {
                    Ok(outcome) => outcome,
                    Err(e) => Err(StoreError::Database(format!("audit batch failed: {e}"))),
                };
                batch.settle(total, outcome);
            }
        });
        Appender {
            queue: Queue::Task(queue),
        }
    }

    /// Starts the writer on a thread of its own named `name`; `write` appends a batch atomically
    /// (a blocking call) and returns where each record landed, in order. The thread ends when
    /// every `Appender` is dropped.
    pub(crate) fn spawn_thread<W>(name: &str, mut write: W) -> std::io::Result<Appender>
    where
        W: FnMut(&[NewAuditRecord]) -> Result<Vec<Appended>> + Send + 'static,
    {
        let (queue, requests) = std::sync::mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut previous = 0;
                while let Ok(first) = requests.recv() {
                    // Callers are arriving together: let the next ones join this batch.
                    if previous > 1 {
                        std::thread::sleep(COMMIT_DELAY);
                    }
                    let batch = Batch::gather(first, || requests.try_recv().ok());
                    previous = batch.records.len();
                    let total = batch.records.len();
                    // A panic while writing fails this batch's callers, not every later append.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        write(&batch.records)
                    }))
                    .unwrap_or_else(|_| {
                        Err(StoreError::Database(
                            "audit batch failed: the writer panicked".to_string(),
                        ))
                    });
                    batch.settle(total, outcome);
                }
            })?;
        Ok(Appender {
            queue: Queue::Thread(queue),
        })
    }

    /// [`Appender::append`] from a thread that may block (never from a task on the runtime):
    /// a write's commit, which holds the main database's writer while its records are appended.
    pub(crate) fn append_blocking(&self, records: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        match self.enqueue(records)? {
            Some(answer) => answer.blocking_recv().map_err(|_| stopped())?,
            None => Ok(Vec::new()),
        }
    }

    /// Appends `records` (together, in order) with the next group commit.
    pub(crate) async fn append(&self, records: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        match self.enqueue(records)? {
            Some(answer) => answer.await.map_err(|_| stopped())?,
            None => Ok(Vec::new()),
        }
    }

    /// Queues `records` for the writer; where its answer will come (none for no records).
    fn enqueue(
        &self,
        records: Vec<NewAuditRecord>,
    ) -> Result<Option<oneshot::Receiver<Result<Vec<Appended>>>>> {
        if records.is_empty() {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let request = Request { records, reply };
        let sent = match &self.queue {
            Queue::Task(queue) => queue.send(request).is_ok(),
            Queue::Thread(queue) => queue.send(request).is_ok(),
        };
        if sent {
            Ok(Some(answer))
        } else {
            Err(stopped())
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the audit writer stopped".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` records as the store would write it.
    fn chain(n: i64) -> Vec<AuditRecord> {
        let records: Vec<NewAuditRecord> = (1..=n)
            .map(|i| NewAuditRecord {
                recorded: 1_700_000_000_000 + i,
                json: format!(r#"{{"resourceType":"AuditEvent","id":"a{i}"}}"#),
                index: Vec::new(),
            })
            .collect();
        extend((0, AuditHash::ZERO), &records)
    }

    fn raw(r: &AuditRecord) -> RawRecord {
        RawRecord {
            seq: r.seq,
            recorded: Some(r.recorded),
            json: r.json.clone(),
            prev_hash: r.prev_hash.to_hex(),
            hash: r.hash.to_hex(),
        }
    }

    /// Rows in memory, as an engine would return them (in order of `seq`).
    struct Rows(Vec<RawRecord>);

    impl ChainSource for Rows {
        async fn chunk(&self, after: i64, limit: usize) -> Result<Vec<RawRecord>> {
            let mut rows: Vec<RawRecord> =
                self.0.iter().filter(|r| r.seq > after).cloned().collect();
            rows.sort_by_key(|r| r.seq);
            rows.truncate(limit);
            Ok(rows)
        }

        async fn find(&self, hash: AuditHash) -> Result<Option<i64>> {
            Ok(self
                .0
                .iter()
                .filter(|r| r.hash == hash.to_hex())
                .map(|r| r.seq)
                .min())
        }
    }

    fn check(rows: Vec<RawRecord>, expected: AuditCheck) {
        let got = crate::exec::block_ready(verify(&Rows(rows))).expect("verify");
        assert_eq!(got, expected);
    }

    fn broken(verified: u64, fault: AuditFault) -> AuditCheck {
        AuditCheck::Broken { verified, fault }
    }

    #[test]
    fn the_encoding_is_pinned() {
        // SHA-256 of "nutmeg-audit-v1", 32 zero bytes, seq 1, recorded 2 and length 2 (each 8 bytes
        // big-endian), then "{}"; the same as `sha256sum` gives for those bytes written by hand:
        // (printf 'nutmeg-audit-v1'; head -c 32 /dev/zero;
        //  printf '\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0\2{}') | sha256sum
        let hash = chain_hash(&AuditHash::ZERO, 1, 2, "{}");
        assert_eq!(hash.to_hex(), PINNED);
        assert_eq!(AuditHash::from_hex(PINNED), Some(hash));
        assert_eq!(AuditHash::from_hex(&PINNED.to_uppercase()), Some(hash));
        assert_eq!(AuditHash::from_hex("00"), None);
        assert_eq!(AuditHash::from_hex(&"g".repeat(64)), None);
        // Every field counts.
        assert_ne!(chain_hash(&hash, 1, 2, "{}"), hash);
        assert_ne!(chain_hash(&AuditHash::ZERO, 2, 2, "{}"), hash);
        assert_ne!(chain_hash(&AuditHash::ZERO, 1, 3, "{}"), hash);
        assert_ne!(chain_hash(&AuditHash::ZERO, 1, 2, "{ }"), hash);
    }

    const PINNED: &str = "977dd31cabed8d90b447dd613dcc9c8d2f908e2e95429f628730179b38faa965";

    #[test]
    fn intact_chains_verify() {
        check(
            Vec::new(),
            AuditCheck::Intact {
                count: 0,
                head: AuditHash::ZERO,
            },
        );
        // Longer than a chunk, so the walk crosses chunk boundaries.
        let records = chain(2_500);
        let head = records.last().map(|r| r.hash).expect("records");
        check(
            records.iter().map(raw).collect(),
            AuditCheck::Intact { count: 2_500, head },
        );
    }

    #[test]
    fn tampering_is_named() {
        let records = chain(6);
        let rows = || records.iter().map(raw).collect::<Vec<_>>();
        let without = |seq: i64| {
            rows()
                .into_iter()
                .filter(|r| r.seq != seq)
                .collect::<Vec<_>>()
        };

        // Content changed in place.
        let mut changed = rows();
        changed[2].json = r#"{"resourceType":"AuditEvent","id":"forged"}"#.to_string();
        check(changed, broken(2, AuditFault::Changed { seq: 3 }));
        let mut changed = rows();
        changed[3].recorded = Some(0);
        check(changed, broken(3, AuditFault::Changed { seq: 4 }));
        let mut malformed = rows();
        malformed[1].hash = "not a hash".to_string();
        check(malformed, broken(1, AuditFault::Changed { seq: 2 }));

        // Removed: in the middle, at the start, several.
        check(
            without(3),
            broken(2, AuditFault::Removed { first: 3, last: 3 }),
        );
        check(
            without(1),
            broken(0, AuditFault::Removed { first: 1, last: 1 }),
        );
        let two_gone: Vec<_> = rows()
            .into_iter()
            .filter(|r| r.seq != 3 && r.seq != 4)
            .collect();
        check(
            two_gone,
            broken(2, AuditFault::Removed { first: 3, last: 4 }),
        );

        // Removed and the rest renumbered with recomputed hashes: record 3 now names a record that is
        // not there.
        let mut renumbered: Vec<AuditRecord> =
            records.iter().filter(|r| r.seq != 3).cloned().collect();
        for r in renumbered.iter_mut().filter(|r| r.seq > 3) {
            r.seq -= 1;
            r.hash = chain_hash(&r.prev_hash, r.seq, r.recorded, &r.json);
        }
        check(
            renumbered.iter().map(raw).collect(),
            broken(
                2,
                AuditFault::Unlinked {
                    seq: 3,
                    chained_to: None,
                },
            ),
        );

        // Replaced: record 3 changed and its hash recomputed; record 4 no longer follows it.
        let mut replaced = records.clone();
        replaced[2].json = "{}".to_string();
        replaced[2].hash = chain_hash(&replaced[2].prev_hash, 3, replaced[2].recorded, "{}");
        check(
            replaced.iter().map(raw).collect(),
            broken(
                3,
                AuditFault::Unlinked {
                    seq: 4,
                    chained_to: None,
                },
            ),
        );

        // Inserted: a forged record 3, properly chained to record 2, the rest moved up by one.
        let mut inserted = records.clone();
        for r in inserted.iter_mut().filter(|r| r.seq >= 3) {
            r.seq += 1;
        }
        let forged_prev = records[1].hash;
        inserted.push(AuditRecord {
            seq: 3,
            recorded: 1,
            json: "{}".to_string(),
            prev_hash: forged_prev,
            hash: chain_hash(&forged_prev, 3, 1, "{}"),
        });
        check(
            inserted.iter().map(raw).collect(),
            broken(3, AuditFault::Inserted { seq: 3 }),
        );

        // Inserted with a number the store never gives.
        let mut zero = rows();
        zero.push(raw(&AuditRecord {
            seq: 0,
            recorded: 1,
            json: "{}".to_string(),
            prev_hash: AuditHash::ZERO,
            hash: chain_hash(&AuditHash::ZERO, 0, 1, "{}"),
        }));
        check(zero, broken(0, AuditFault::Inserted { seq: 0 }));
        let head = records[5].hash;
        let mut past_gap = rows();
        past_gap.push(raw(&AuditRecord {
            seq: 9,
            recorded: 1,
            json: "{}".to_string(),
            prev_hash: head,
            hash: chain_hash(&head, 9, 1, "{}"),
        }));
        check(past_gap, broken(6, AuditFault::Inserted { seq: 9 }));

        // Forged at the end with a made-up previous hash.
        let mut forged = rows();
        let made_up = AuditHash([7; 32]);
        forged.push(raw(&AuditRecord {
            seq: 7,
            recorded: 1,
            json: "{}".to_string(),
            prev_hash: made_up,
            hash: chain_hash(&made_up, 7, 1, "{}"),
        }));
        check(
            forged,
            broken(
                6,
                AuditFault::Unlinked {
                    seq: 7,
                    chained_to: None,
                },
            ),
        );

        // Reordered: records 3 and 4 swap numbers.
        let mut swapped = rows();
        swapped[2].seq = 4;
        swapped[3].seq = 3;
        check(
            swapped,
            broken(
                2,
                AuditFault::Unlinked {
                    seq: 3,
                    chained_to: Some(4),
                },
            ),
        );
    }

    #[test]
    fn faults_read_as_sentences() {
        let cases = [
            (
                AuditFault::Changed { seq: 3 },
                "audit record 3 was changed: its hash does not match its content",
            ),
            (
                AuditFault::Removed { first: 3, last: 3 },
                "audit record 3 was removed",
            ),
            (
                AuditFault::Removed { first: 3, last: 5 },
                "audit records 3 to 5 were removed",
            ),
            (
                AuditFault::Inserted { seq: 4 },
                "audit record 4 was inserted",
            ),
            (
                AuditFault::Unlinked {
                    seq: 3,
                    chained_to: Some(4),
                },
                "audit record 3 is out of order: it follows record 4, not record 2",
            ),
            (
                AuditFault::Unlinked { seq: 7, chained_to: None },
                "audit record 7 does not follow record 6: the record it was chained to is not in the log \
                 (record 6 was replaced or removed, or record 7 was forged)",
            ),
            (
                AuditFault::Unlinked { seq: 1, chained_to: None },
                "audit record 1 does not start the chain: the record it was chained to is not in the log \
                 (records before it were removed, or it was forged)",
            ),
        ];
        for (fault, expected) in cases {
            assert_eq!(fault.to_string(), expected);
        }
        assert_eq!(
            AuditCheck::Intact {
                count: 0,
                head: AuditHash::ZERO
            }
            .to_string(),
            format!(
                "the audit log is intact: 0 records, head {}",
                "0".repeat(64)
            )
        );
        assert_eq!(
            broken(2, AuditFault::Inserted { seq: 3 }).to_string(),
            "the audit log is broken: audit record 3 was inserted (the 2 records before it are intact)"
        );
    }

    #[test]
    fn extend_continues_the_head() {
        let records = chain(3);
        let more = extend(
            (3, records[2].hash),
            &[NewAuditRecord {
                recorded: 9,
                json: "{}".to_string(),
                index: vec![
                    ("patient".to_string(), "p1".to_string()),
                    ("outcome".to_string(), "0".to_string()),
                    ("patient".to_string(), "p1".to_string()),
                ],
            }],
        );
        assert_eq!(more[0].seq, 4);
        assert_eq!(more[0].prev_hash, records[2].hash);
        let given = [NewAuditRecord {
            recorded: 9,
            json: "{}".to_string(),
            index: vec![
                ("patient".to_string(), "p1".to_string()),
                ("outcome".to_string(), "0".to_string()),
                ("patient".to_string(), "p1".to_string()),
            ],
        }];
        assert_eq!(
            index_rows(&more, &given),
            vec![
                ("outcome".to_string(), "0".to_string(), 4),
                ("patient".to_string(), "p1".to_string(), 4),
            ],
            "each pair once"
        );
        assert_eq!(head(None).expect("empty"), (0, AuditHash::ZERO));
        assert!(head(Some((1, "x".to_string()))).is_err());
    }
}
