//! The audit log as a file of its own (the SQLite engine's durable copy of the chain): records
//! appended with one `write` and one `fdatasync` per group commit, where a SQLite transaction
//! wrote WAL frames for the record and each of its index rows and synced the WAL (BENCHMARKS.md,
//! "What access control and the read audit cost").
//!
//! Each record is one header, a space, the AuditEvent text and a newline:
//!
//! ```text
//! {"seq":7,"recorded":1764500000000,"prev_hash":"<64 hex>","hash":"<64 hex>","index":[["patient","Patient/1"]],"bytes":1234} {"resourceType":"AuditEvent",...}
//! ```
//!
//! `bytes` is the length of the text that follows, so the text may hold anything (even a
//! newline) and a reader never guesses where it ends. The file is made longer ahead of the log,
//! 4 MiB of zeros at a time, so that a batch's `fdatasync` writes data blocks only: the log ends
//! at the first zero byte where a record would start (or at the end of the file). The hash is the chain's (see
//! [`crate::audit::chain_hash`]): it covers `seq`, `recorded`, the previous hash and the text, not
//! the `index` pairs, which are what the searchable copy is built from. A line of text per record
//! can be read with `less`, followed with `tail -f` and shipped as is.
//!
//! Appends take an exclusive `flock` on the file for the length of one batch, so several
//! processes on one database (the server and an operator's `nutmeg admin`) extend one chain: an
//! appender that finds a record where it left the log's end reads the records added since to learn
//! the head. A batch that could not be written whole is zeroed again before its callers hear of the
//! failure; if that or the sync fails, the file refuses further appends until it is opened again
//! (after a failed `fdatasync` the kernel may have dropped the pages it could not write).
//!
//! Opening the file reads it from a known record boundary (what the searchable copy holds) to its
//! end. A record cut short at the end (a crash during a batch that nobody was told had been
//! written) is moved aside to `<file>.torn-<unix seconds>` and zeroed; a damaged record followed
//! by what ends like whole records stops the open with an error that names its place, because a
//! log that silently lost records would be worse than a server that does not start.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::{self, Appended, AuditHash, AuditRecord, NewAuditRecord};
use crate::{Result, StoreError};

/// Bytes read from the file at a time while scanning it.
const READ_CHUNK: usize = 1 << 20;
/// The file is made longer ahead of the log in steps of this many bytes of zeros: an append
/// that makes a file longer makes its `fdatasync` write the file's metadata too, which on this
/// machine doubled what each cost (a quarter of a millisecond of wall time, 80-95 us of CPU,
/// against 50 us into blocks already there).
const ALLOCATE: u64 = 4 << 20;

/// A record's header, as written before its text.
#[derive(Serialize, Deserialize)]
struct Header<'a> {
    seq: i64,
    recorded: i64,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(default)]
    index: Vec<(String, String)>,
    bytes: usize,
}

/// A record read back from the file, before anything is trusted (its fields as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRecord {
    pub seq: i64,
    pub recorded: i64,
    pub prev_hash: String,
    pub hash: String,
    pub index: Vec<(String, String)>,
    pub json: String,
    /// Where the record starts in the file, and where the next one does.
    pub offset: u64,
    pub end: u64,
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug)]
enum Parsed {
    /// A whole record and the bytes it took.
    Record(Box<FileRecord>, usize),
    /// The buffer ends inside a record.
    Incomplete,
    /// The bytes are not a record.
    Malformed,
    /// A zero byte where a record would start: the end of the log in a file made longer ahead of it.
    End,
}

/// Appends one record's line to `out`.
fn encode(out: &mut Vec<u8>, record: &AuditRecord, index: &[(String, String)]) {
    encode_fields(
        out,
        record.seq,
        record.recorded,
        &record.prev_hash.to_hex(),
        &record.hash.to_hex(),
        index,
        &record.json,
    );
}

/// Appends a line of these fields, as given (a record copied from elsewhere keeps its hashes
/// as they were, well formed or not).
fn encode_fields(
    out: &mut Vec<u8>,
    seq: i64,
    recorded: i64,
    prev_hash: &str,
    hash: &str,
    index: &[(String, String)],
    json: &str,
) {
    let header = Header {
        seq,
        recorded,
        prev_hash: Cow::Borrowed(prev_hash),
        hash: Cow::Borrowed(hash),
        index: index.to_vec(),
        bytes: json.len(),
    };
    // Serialising these fields into memory cannot fail.
    serde_json::to_writer(&mut *out, &header).expect("an audit header serialises");
    out.push(b' ');
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
}

/// Writes records kept before the log had a file (the searchable copy's, in order, each with its
/// index pairs) to a new, empty log file at `path`, synced; answers the boundary after the last.
pub(crate) fn write_earlier(
    path: &Path,
    records: impl Iterator<Item = Result<(FileRecord, Vec<(String, String)>)>>,
) -> Result<Boundary> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    if file.metadata().map_err(io_error)?.len() != 0 {
        return Err(StoreError::Open(format!(
            "{} already holds audit records, and so does the audit database beside it: move \
             one of them aside",
            path.display()
        )));
    }
    let mut at = Boundary::START;
    let mut buf = Vec::new();
    for item in records {
        let (r, index) = item?;
        encode_fields(
            &mut buf,
            r.seq,
            r.recorded,
            &r.prev_hash,
            &r.hash,
            &index,
            &r.json,
        );
        at = Boundary {
            seq: r.seq,
            hash: AuditHash::from_hex(&r.hash).unwrap_or(AuditHash::ZERO),
            offset: at.offset + buf.len() as u64,
        };
        file.write_all(&buf).map_err(io_error)?;
        buf.clear();
    }
    file.sync_all().map_err(io_error)?;
    Ok(at)
}

/// The record at the start of `buf`, which starts at `offset` in the file.
fn parse(buf: &[u8], offset: u64) -> Parsed {
    match buf.first() {
        None => return Parsed::Incomplete,
        Some(0) => return Parsed::End,
        Some(_) => {}
    }
    let mut headers = serde_json::Deserializer::from_slice(buf).into_iter::<Header<'_>>();
    let header = match headers.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) if e.is_eof() => return Parsed::Incomplete,
        _ => return Parsed::Malformed,
    };
    let start = headers.byte_offset() + 1;
    let Some(stop) = start.checked_add(header.bytes) else {
        return Parsed::Malformed;
    };
    if buf.len() <= stop {
        // Whatever there is must at least be the start of a record.
        return match buf.get(start - 1) {
            None | Some(b' ') => Parsed::Incomplete,
            Some(_) => Parsed::Malformed,
        };
    }
    if buf[start - 1] != b' ' || buf[stop] != b'\n' {
        return Parsed::Malformed;
    }
    let Ok(json) = std::str::from_utf8(&buf[start..stop]) else {
        return Parsed::Malformed;
    };
    let taken = stop + 1;
    Parsed::Record(
        Box::new(FileRecord {
            seq: header.seq,
            recorded: header.recorded,
            prev_hash: header.prev_hash.into_owned(),
            hash: header.hash.into_owned(),
            index: header.index,
            json: json.to_string(),
            offset,
            end: offset + taken as u64,
        }),
        taken,
    )
}

/// The whole record a line of `length` bytes at `offset` holds (where the searchable copy places
/// one), or `None` if there is none: the file is shorter, or those bytes are not one record.
pub(crate) fn record_at(file: &File, offset: u64, length: u64) -> Result<Option<FileRecord>> {
    // The place comes from a database anyone with the file can edit: read only what the file has.
    let size = file.metadata().map_err(io_error)?.len();
    let Some(len) = usize::try_from(length)
        .ok()
        .filter(|_| offset.checked_add(length).is_some_and(|end| end <= size))
    else {
        return Ok(None);
    };
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset).map_err(io_error)?;
    Ok(match parse(&buf, offset) {
        Parsed::Record(record, taken) if taken == len => Some(*record),
        _ => None,
    })
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The file ends inside a record that starts at this offset.
    Torn(u64),
    /// The bytes at this offset are not a record.
    Damaged(u64),
}

/// Reads records in order from a byte offset (a record boundary), a chunk at a time.
pub(crate) struct Scanner {
    file: File,
    /// The file offset of `buf[0]`.
    at: u64,
    buf: Vec<u8>,
    /// How far `buf` has been consumed.
    used: usize,
    eof: bool,
    /// Past the last record of a file made longer ahead of its log.
    ended: bool,
    stopped: Option<Stop>,
}

impl Scanner {
    pub(crate) fn new(file: File, offset: u64) -> Scanner {
        Scanner {
            file,
            at: offset,
            buf: Vec::new(),
            used: 0,
            eof: false,
            ended: false,
            stopped: None,
        }
    }

    /// The next record, or `None` at the end of the file or where it stops being records (then
    /// [`Scanner::stopped`] says which).
    pub(crate) fn next_record(&mut self) -> Result<Option<FileRecord>> {
        if self.stopped.is_some() || self.ended {
            return Ok(None);
        }
        loop {
            let offset = self.at + self.used as u64;
            match parse(&self.buf[self.used..], offset) {
                Parsed::Record(record, taken) => {
                    self.used += taken;
                    return Ok(Some(*record));
                }
                Parsed::Malformed => {
                    self.stopped = Some(Stop::Damaged(offset));
                    return Ok(None);
                }
                Parsed::End => {
                    self.ended = true;
                    return Ok(None);
                }
                Parsed::Incomplete if self.eof => {
                    if self.used < self.buf.len() {
                        self.stopped = Some(Stop::Torn(offset));
                    }
                    return Ok(None);
                }
                Parsed::Incomplete => self.fill()?,
            }
        }
    }

    /// Reads more of the file behind what is left in the buffer.
    fn fill(&mut self) -> Result<()> {
        self.buf.drain(..self.used);
        self.at += self.used as u64;
        self.used = 0;
        let have = self.buf.len();
        // A record longer than a chunk grows the buffer to hold it.
        let want = READ_CHUNK.max(have * 2);
        self.buf.resize(have + want, 0);
        let n = self
            .file
            .read_at(&mut self.buf[have..], self.at + have as u64)
            .map_err(io_error)?;
        self.buf.truncate(have + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// The offset of the next record: past the last one read.
    pub(crate) fn position(&self) -> u64 {
        self.at + self.used as u64
    }

    /// Where the scan stopped short of the end of the file, if it did.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.stopped
    }
}

/// A known record boundary: the record numbered `seq` (0 for none) with hash `hash` ends at
/// `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub seq: i64,
    pub hash: AuditHash,
    pub offset: u64,
}

impl Boundary {
    pub(crate) const START: Boundary = Boundary {
        seq: 0,
        hash: AuditHash::ZERO,
        offset: 0,
    };
}

/// The appending side of the log file.
pub(crate) struct AuditFile {
    file: File,
    path: Option<PathBuf>,
    /// The last record this appender knows of, and where the log ends after it.
    head: Boundary,
    /// The file's length: zeros from the log's end to here, written ahead of the log.
    allocated: u64,
    /// `fdatasync` after every batch (not for a store in memory, which does not outlive its process).
    sync: bool,
    /// Set when the file's state is no longer known (see the module documentation).
    failed: Option<String>,
}

impl std::fmt::Debug for AuditFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFile")
            .field("path", &self.path)
            .field("head", &self.head)
            .finish()
    }
}

impl AuditFile {
    /// Opens (creating) the log at `path` and reads it from `from`, a boundary the caller knows
    /// (from its searchable copy), to its end: a torn last record is moved aside and zeroed.
    pub(crate) fn open(path: &Path, from: Boundary) -> Result<AuditFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        let mut log = AuditFile {
            file,
            path: Some(path.to_path_buf()),
            head: from,
            allocated: 0,
            sync: true,
            failed: None,
        };
        log.file.lock().map_err(io_error)?;
        let opened = log.recover();
        let unlocked = log.file.unlock().map_err(io_error);
        opened.and(unlocked)?;
        Ok(log)
    }

    /// A log in an unnamed temporary file (for a store in memory): removed from the directory as
    /// soon as it is made, gone when the store is.
    pub(crate) fn temporary() -> Result<AuditFile> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "nutmeg-audit-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        let _ = std::fs::remove_file(&path);
        Ok(AuditFile {
            file,
            path: None,
            head: Boundary::START,
            allocated: 0,
            sync: false,
            failed: None,
        })
    }

    /// A second handle on the same file, for reading it.
    pub(crate) fn reader(&self) -> Result<File> {
        self.file.try_clone().map_err(io_error)
    }

    /// Reads from the known head to the end of the log (under the lock): the head becomes the
    /// last record there. What follows the log's end must be zeros: a record cut short there (or
    /// stray bytes past a zero) is moved aside and zeroed; bytes that end like whole records after
    /// a damaged one are damage, an error.
    fn recover(&mut self) -> Result<()> {
        let len = self.file.metadata().map_err(io_error)?.len();
        self.allocated = len;
        if len < self.head.offset {
            return Err(StoreError::Database(format!(
                "the audit log {} is {len} bytes long, but record {} ended at byte {}: it was cut \
                 short or replaced; restore it from a backup",
                self.describe(),
                self.head.seq,
                self.head.offset
            )));
        }
        let mut scanner = Scanner::new(self.reader()?, self.head.offset);
        while let Some(record) = scanner.next_record()? {
            let hash = AuditHash::from_hex(&record.hash).ok_or_else(|| {
                StoreError::Database(format!(
                    "the audit log {} has a malformed hash in record {} (byte {})",
                    self.describe(),
                    record.seq,
                    record.offset
                ))
            })?;
            self.head = Boundary {
                seq: record.seq,
                hash,
                offset: record.end,
            };
        }
        let end = self.head.offset;
        let Some(last) = self.last_nonzero(end, len)? else {
            return Ok(());
        };
        let mut byte = [0u8; 1];
        self.file.read_exact_at(&mut byte, last).map_err(io_error)?;
        if matches!(scanner.stopped(), Some(Stop::Damaged(_))) && byte[0] == b'\n' {
            return Err(StoreError::Database(format!(
                "the audit log {} is damaged at byte {end}, after record {}: check it with \
                 `nutmeg admin audit verify` on a copy, and restore it from a backup",
                self.describe(),
                self.head.seq
            )));
        }
        self.cut_torn(end, last + 1)
    }

    /// The offset of the last byte in `from..to` that is not zero.
    fn last_nonzero(&self, from: u64, to: u64) -> Result<Option<u64>> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut at = from;
        let mut last = None;
        while at < to {
            let want = usize::try_from(to - at)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            let n = self.file.read_at(&mut buf[..want], at).map_err(io_error)?;
            if n == 0 {
                break;
            }
            if let Some(p) = buf[..n].iter().rposition(|b| *b != 0) {
                last = Some(at + p as u64);
            }
            at += n as u64;
        }
        Ok(last)
    }

    /// Moves the bytes from `at` to `until` (a batch a crash cut short) to a file beside the log
    /// and zeroes them in the log.
    fn cut_torn(&mut self, at: u64, until: u64) -> Result<()> {
        let mut tail = vec![0; (until - at) as usize];
        self.file.read_exact_at(&mut tail, at).map_err(io_error)?;
        if let Some(path) = &self.path {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut aside = path.clone().into_os_string();
            aside.push(format!(".torn-{secs}"));
            let aside = PathBuf::from(aside);
            std::fs::write(&aside, &tail)
                .map_err(|e| StoreError::Open(format!("{}: {e}", aside.display())))?;
            tracing::warn!(
                bytes = tail.len(),
                after_record = self.head.seq,
                kept_in = %aside.display(),
                "the audit log ended inside a record (a batch cut short by a crash); moved it aside"
            );
        }
        self.zero(at, until)?;
        if self.sync {
            self.file.sync_all().map_err(io_error)?;
        }
        Ok(())
    }

    /// Writes zeros from `from` to `to`.
    fn zero(&self, from: u64, to: u64) -> Result<()> {
        let zeros = vec![0u8; READ_CHUNK];
        let mut at = from;
        while at < to {
            let n = usize::try_from(to - at)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            self.file.write_all_at(&zeros[..n], at).map_err(io_error)?;
            at += n as u64;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "(in memory)".to_string(),
        }
    }

    /// The last record, and where the file ends after it, as this appender last saw them.
    #[cfg(test)]
    fn head(&self) -> Boundary {
        self.head
    }

    /// Appends `records` after the chain's head with one write and one sync, under the file's
    /// lock; answers where each landed.
    pub(crate) fn append(&mut self, records: &[NewAuditRecord]) -> Result<Vec<Appended>> {
        if let Some(failed) = &self.failed {
            return Err(StoreError::Database(failed.clone()));
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.file.lock().map_err(io_error)?;
        let out = self.append_locked(records);
        let unlocked = self.file.unlock().map_err(io_error);
        let out = out?;
        unlocked?;
        Ok(out)
    }

    fn append_locked(&mut self, records: &[NewAuditRecord]) -> Result<Vec<Appended>> {
        // Another process may have appended since this one last did: then the log does not end
        // (with a zero byte, or the end of the file) where this appender left it.
        let len = self.file.metadata().map_err(io_error)?.len();
        let moved = len < self.head.offset || record_starts_at(&self.file, self.head.offset)?;
        if moved {
            self.recover()?;
        }
        self.allocated = self.allocated.max(len);
        let rows = audit::extend((self.head.seq, self.head.hash), records);
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.json.len() + 400).sum());
        for (row, record) in rows.iter().zip(records) {
            let mut pairs = record.index.clone();
            pairs.sort();
            pairs.dedup();
            encode(&mut buf, row, &pairs);
        }
        let at = self.head.offset;
        let end = at + buf.len() as u64;
        if end > self.allocated {
            self.allocate(end)?;
        }
        let written = self.file.write_all_at(&buf, at);
        let synced = match &written {
            Ok(()) if self.sync => self.file.sync_data(),
            _ => Ok(()),
        };
        if let Some(e) = written.as_ref().err().or(synced.as_ref().err()) {
            // Nobody will be told these records were written: zero them again. After a failed
            // sync, or if they cannot be zeroed, the file's state is unknown: refuse every later
            // append rather than chain onto it.
            let undone = self.zero(at, end);
            let message = format!(
                "the audit log {} could not be written: {e}",
                self.describe()
            );
            if undone.is_err() || synced.is_err() {
                self.failed = Some(format!("{message}; appends stop until nutmeg is restarted"));
            }
            return Err(StoreError::Database(message));
        }
        let last = rows.last().expect("records is not empty");
        self.head = Boundary {
            seq: last.seq,
            hash: last.hash,
            offset: end,
        };
        Ok(audit::appended(&rows))
    }
}

/// The file's records for [`audit::verify`]: read in order, whatever `after` says (the walk asks
/// for the records after the last one it was given). Where the file stops being records, the
/// walk is given an empty record numbered next, which it names as changed; a record cut short
/// at the very end is a batch being written (by this or another process) and ends the walk.
pub(crate) struct FileChain {
    file: File,
    scanner: std::sync::Mutex<(Scanner, i64, bool)>,
}

impl FileChain {
    /// A walk of `file` from its first record.
    pub(crate) fn new(file: File) -> Result<FileChain> {
        let scanner = Scanner::new(file.try_clone().map_err(io_error)?, 0);
        Ok(FileChain {
            file,
            scanner: std::sync::Mutex::new((scanner, 0, false)),
        })
    }
}

impl audit::ChainSource for FileChain {
    async fn chunk(&self, _after: i64, limit: usize) -> Result<Vec<audit::RawRecord>> {
        let mut guard = self.scanner.lock().unwrap_or_else(|p| p.into_inner());
        let (scanner, last, reported) = &mut *guard;
        let mut out = Vec::new();
        while out.len() < limit {
            match scanner.next_record()? {
                Some(r) => {
                    *last = r.seq;
                    out.push(audit::RawRecord::new(
                        r.seq,
                        Some(r.recorded),
                        r.json,
                        r.prev_hash,
                        r.hash,
                    ));
                }
                None => {
                    if let (Some(Stop::Damaged(_)), false) = (scanner.stopped(), *reported) {
                        *reported = true;
                        out.push(audit::RawRecord::new(
                            *last + 1,
                            None,
                            String::new(),
                            String::new(),
                            String::new(),
                        ));
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn find(&self, hash: AuditHash) -> Result<Option<i64>> {
        let hex = hash.to_hex();
        let mut scanner = Scanner::new(self.file.try_clone().map_err(io_error)?, 0);
        while let Some(r) = scanner.next_record()? {
            if r.hash == hex {
                return Ok(Some(r.seq));
            }
        }
        Ok(None)
    }
}

impl AuditFile {
    /// Makes the file at least `needed` bytes long, in steps of [`ALLOCATE`], by writing zeros
    /// (blocks really allocated, not a hole) and syncing them with the file's new length: the
    /// batches that follow change only data blocks, so their `fdatasync` writes no metadata.
    fn allocate(&mut self, needed: u64) -> Result<()> {
        let to = needed.div_ceil(ALLOCATE) * ALLOCATE;
        let out = self.zero(self.allocated, to).and_then(|()| {
            if self.sync {
                self.file.sync_all().map_err(io_error)
            } else {
                Ok(())
            }
        });
        if let Err(e) = out {
            // Whatever was written is zeros past the log's end: harmless, but not counted on.
            let _ = self.file.set_len(self.allocated);
            return Err(e);
        }
        self.allocated = to;
        Ok(())
    }
}

/// Whether a record starts at `offset` in `file`: the log goes on there (not a zero byte written
/// ahead of it, nor the end of the file).
pub(crate) fn record_starts_at(file: &File, offset: u64) -> Result<bool> {
    let mut byte = [0u8; 1];
    let n = file.read_at(&mut byte, offset).map_err(io_error)?;
    Ok(n == 1 && byte[0] != 0)
}

pub(crate) fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Database(format!("audit log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64, json: &str) -> NewAuditRecord {
        NewAuditRecord {
            recorded: 1_800_000_000_000 + n,
            json: json.to_string(),
            index: vec![
                ("patient".to_string(), format!("p{n}")),
                ("outcome".to_string(), "0".to_string()),
                ("patient".to_string(), format!("p{n}")),
            ],
        }
    }

    fn all(file: &AuditFile) -> (Vec<FileRecord>, Option<Stop>) {
        let mut scanner = Scanner::new(file.reader().unwrap(), 0);
        let mut out = Vec::new();
        while let Some(r) = scanner.next_record().unwrap() {
            out.push(r);
        }
        (out, scanner.stopped())
    }

    #[test]
    fn records_round_trip_whatever_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = AuditFile::open(&path, Boundary::START).unwrap();
        let texts = [
            r#"{"resourceType":"AuditEvent","id":"1"}"#,
            "two\nlines } {\"bytes\":1}",
            "",
            "ünïcödé",
        ];
        let records: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| record(i as i64, t))
            .collect();
        let appended = log.append(&records[..2]).unwrap();
        let more = log.append(&records[2..]).unwrap();
        assert_eq!(
            appended
                .iter()
                .chain(&more)
                .map(|a| a.seq)
                .collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let (read, stopped) = all(&log);
        assert_eq!(stopped, None);
        assert_eq!(read.len(), 4);
        let mut prev = AuditHash::ZERO;
        for (i, r) in read.iter().enumerate() {
            assert_eq!(r.json, texts[i]);
            assert_eq!(r.seq, i as i64 + 1);
            assert_eq!(r.prev_hash, prev.to_hex());
            let hash = audit::chain_hash(&prev, r.seq, r.recorded, &r.json);
            assert_eq!(r.hash, hash.to_hex());
            // Pairs are kept once each, sorted.
            assert_eq!(
                r.index,
                vec![
                    ("outcome".to_string(), "0".to_string()),
                    ("patient".to_string(), format!("p{i}")),
                ]
            );
            prev = hash;
        }
        // Zeros follow the last record, to a length made ahead of the log.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64 % ALLOCATE, 0);
        assert!(bytes[read[3].end as usize..].iter().all(|b| *b == 0));
        // Reopened, the chain goes on from its head.
        drop(log);
        let mut log = AuditFile::open(&path, Boundary::START).unwrap();
        assert_eq!(log.head().seq, 4);
        assert_eq!(log.append(&[record(9, "x")]).unwrap()[0].seq, 5);
    }

    #[test]
    fn two_appenders_on_one_file_extend_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut a = AuditFile::open(&path, Boundary::START).unwrap();
        let mut b = AuditFile::open(&path, Boundary::START).unwrap();
        for n in 0..10 {
            let log = if n % 3 == 0 { &mut a } else { &mut b };
            assert_eq!(log.append(&[record(n, "{}")]).unwrap()[0].seq, n + 1);
        }
        let (read, stopped) = all(&a);
        assert_eq!((read.len(), stopped), (10, None));
        for pair in read.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
    }

    #[test]
    fn a_torn_last_record_is_moved_aside_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = AuditFile::open(&path, Boundary::START).unwrap();
        log.append(&[record(1, "{}"), record(2, "{}")]).unwrap();
        let whole = log.head();
        drop(log);
        // A crash in the middle of the next batch's write.
        let mut bytes = Vec::new();
        encode(
            &mut bytes,
            &audit::extend((whole.seq, whole.hash), &[record(3, "{\"x\":1}")])[0],
            &[],
        );
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&bytes[..bytes.len() - 5], whole.offset)
            .unwrap();
        drop(f);
        let mut log = AuditFile::open(&path, Boundary::START).unwrap();
        assert_eq!(log.head(), whole);
        let after = std::fs::read(&path).unwrap();
        assert!(after[whole.offset as usize..].iter().all(|b| *b == 0));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("a.log.torn-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
        assert_eq!(kept, &bytes[..bytes.len() - 5]);
        assert_eq!(log.append(&[record(4, "{}")]).unwrap()[0].seq, 3);
        assert_eq!(all(&log).1, None);
    }

    #[test]
    fn a_damaged_record_stops_the_open_and_names_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = AuditFile::open(&path, Boundary::START).unwrap();
        log.append(&[record(1, "{}"), record(2, "{}"), record(3, "{}")])
            .unwrap();
        let (read, _) = all(&log);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = read[1].offset as usize;
        bytes[at] = b'#';
        std::fs::write(&path, &bytes).unwrap();
        let err = AuditFile::open(&path, Boundary::START)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("damaged at byte {at}, after record 1")),
            "{err}"
        );
        // From a boundary past the damage (the searchable copy's), it opens.
        let past = Boundary {
            seq: 3,
            hash: AuditHash::from_hex(&read[2].hash).unwrap(),
            offset: read[2].end,
        };
        assert_eq!(AuditFile::open(&path, past).unwrap().head(), past);
        // A file shorter than a boundary known to be in it was cut.
        let err = AuditFile::open(
            &path,
            Boundary {
                offset: bytes.len() as u64 + 10,
                ..past
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cut short or replaced"), "{err}");
    }

    #[test]
    fn a_batch_that_cannot_be_written_fails_and_so_does_every_later_one() {
        // Every write to /dev/full fails (ENOSPC), and it cannot be cut back either.
        let Ok(file) = OpenOptions::new().read(true).append(true).open("/dev/full") else {
            eprintln!("SKIPPED: no /dev/full here");
            return;
        };
        let mut log = AuditFile {
            file: file.try_clone().unwrap(),
            path: Some(PathBuf::from("/dev/full")),
            head: Boundary::START,
            allocated: 0,
            sync: true,
            failed: None,
        };
        // Making the file longer fails first: nothing of the log was touched, later appends may try.
        let err = log.append(&[record(1, "{}")]).unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert!(log.failed.is_none());
        // Space there, but the write fails.
        log.allocated = u64::MAX;
        let err = log.append(&[record(1, "{}")]).unwrap_err().to_string();
        assert!(err.contains("could not be written"), "{err}");
        let again = log.append(&[record(2, "{}")]).unwrap_err().to_string();
        assert!(
            again.contains("appends stop until nutmeg is restarted"),
            "{again}"
        );
        assert_eq!(log.head, Boundary::START, "nothing counted as written");
    }

    #[test]
    fn parse_tells_incomplete_from_malformed() {
        let mut bytes = Vec::new();
        let row = &audit::extend((0, AuditHash::ZERO), &[record(1, "abc")])[0];
        encode(&mut bytes, row, &[]);
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse(&bytes[..cut], 0), Parsed::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(matches!(parse(&bytes, 0), Parsed::Record(_, n) if n == bytes.len()));
        let mut wrong_length = bytes.clone();
        let n = wrong_length.len();
        wrong_length[n - 1] = b'x';
        wrong_length.push(b'\n');
        assert!(matches!(parse(&wrong_length, 0), Parsed::Malformed));
        assert!(matches!(parse(b"not a record\n", 0), Parsed::Malformed));
    }
}
