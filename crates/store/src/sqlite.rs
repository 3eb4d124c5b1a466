//! The embedded SQLite engine: one file in WAL mode (`synchronous=NORMAL`), one writer connection
//! behind a mutex and a pool of reader connections, every call on tokio's blocking pool. At most
//! one read per CPU core runs at once ([`readers`], a FIFO semaphore), so every read reuses a pooled
//! connection with its prepared statements, however many clients wait, and waiting reads queue in
//! order instead of sharing the cores.
//!
//! Writers are serialised by the mutex (SQLite allows one writer at a time anyway); readers see the
//! last committed state without waiting for the writer.
//!
//! The audit log is a file beside the database ([`audit_log_of`]: `nutmeg.db` -> `nutmeg-audit.log`,
//! see `audit_file`): one group-commit thread appends each batch of records with one `write` and one
//! `fdatasync`, so a read's record is durable before its response goes out, at a fraction of what a
//! synced SQLite transaction of the record and its index rows cost. The searchable copy is a second
//! database file ([`audit_file_of`]: `nutmeg-audit.db`; a second in-memory database for a store in
//! memory, whose log is an unnamed temporary file) that holds where each record is in the log
//! (its number, time, hash, offset and length) and its index pairs, not its text: searches find
//! records there and read them from the log. It is filled from the log by a background thread in
//! large transactions and brought up to the log's end before every search or read of the log. It
//! is a file of its own because a commit to a file makes each of its reader connections drop its
//! page cache and memory map at its next transaction. A write's records are appended (durably)
//! inside the write's transaction, after its expectations held and before it commits: a crash or
//! a failed commit in between leaves a record of writes that did not land, never writes without
//! their record. Databases from before the split keep their records in the main file, and audit
//! databases from before the log file in their tables: they are written to the log file, once,
//! when it is created ([`settle_earlier_records`]). An
//! in-memory database (`sqlite::memory:`) is private to its connection, so there every call uses
//! the writer connection.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use fhir::search::{IndexEntry, IndexValue, Query};
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::accounts::{self, NewUser, Session, User, UserStatus};
use crate::audit::{self, Appender, RawRecord};
use crate::audit_file::{self, io_error, AuditFile, Boundary, FileRecord, Scanner};
use crate::clients::{self, Client, ClientStatus, NewClient};
use crate::exec::{block_ready, Dialect, Exec, Val};
use crate::relationships::{self, RelationshipBasis};
use crate::{
    migrate, query, Appended, AuditHash, AuditQuery, CompartmentRequest, Current, HistoryPage,
    HistoryRequest, NewAuditRecord, Result, SearchOptions, SearchPage, StoreError, Stored, Write,
    WriteOp,
};

/// Reader connections, and reads running at once: one per core (at least two). More readers than
/// cores only share the cores among more reads: at a million resources and 32 clients on two cores,
/// eight readers answered Observation by patient and code with a p99 of 31 ms, three with 21 ms and
/// two with 18 ms, at about the same throughput (BENCHMARKS.md).
fn readers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 32)
}
/// Page cache per connection, in KiB: the writer's is larger (index b-tree pages it updates).
const WRITER_CACHE_KIB: i64 = 32_000;
const READER_CACHE_KIB: i64 = 8_000;
/// Database pages are read through a memory map (up to SQLite's limit, 2 GiB by default) instead of
/// a `pread` system call and a copy per page missing from the page cache.
const MMAP_BYTES: i64 = 1 << 31;
/// The background checkpointer copies the WAL into the database this often, so that commits never
/// wait for a checkpoint's copying and `fsync`s; the writer's own automatic checkpoint is only a
/// safety net for a WAL that grew this large (in pages) anyway.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
const WAL_AUTOCHECKPOINT_PAGES: i64 = 50_000;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Real(f) => ValueRef::Real(*f),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// The SQLite engine. Cheap to clone.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
    audit: Appender,
}

struct Inner {
    /// `None` for an in-memory database.
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// The audit log's database ([`audit_file_of`] the main file, or a second in-memory one).
    audit: Db,
    /// Reads running at once, in either database.
    permits: Arc<tokio::sync::Semaphore>,
    /// A handle on the audit log file ([`audit_log_of`] the main file), for reading it.
    audit_log: File,
    /// How far into the log file the audit database's copy goes.
    audit_copied: AtomicU64,
}

/// The audit database's connections: its writer (the group-commit thread's, and a write commit's)
/// and pooled readers.
struct Db {
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// The audit database beside a main database file: `nutmeg.db` -> `nutmeg-audit.db` (a file without
/// an extension gets `-audit` appended): the searchable copy of the log file ([`audit_log_of`]).
pub fn audit_file_of(path: &std::path::Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-audit.{}", ext.to_string_lossy()),
        None => format!("{stem}-audit"),
    };
    path.with_file_name(name)
}

/// The audit log file beside a main database file: `nutmeg.db` -> `nutmeg-audit.log`. This file
/// is the log; the audit database beside it ([`audit_file_of`]) is its searchable copy, which can
/// be rebuilt from it. Back up all three.
pub fn audit_log_of(path: &Path) -> PathBuf {
    audit_file_of(path).with_extension("log")
}

/// Page cache of the audit database's writer, the copier's connection, in KiB.
const AUDIT_COPY_CACHE_KIB: i64 = 128_000;
/// Records copied from the log file into the audit database per transaction.
const COPY_BATCH: usize = 20_000;
/// How often the background copier looks for records to copy. Searches of the log copy what is
/// missing first, so this only bounds how much such a search finds to do.
const COPY_EVERY: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves it usable: SQLite rolls back an open transaction
    // when the next one begins, and every call here starts its own.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect(path: &std::path::Path, cache_kib: i64) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -{cache_kib}; PRAGMA foreign_keys = OFF; \
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; PRAGMA journal_size_limit = 67108864; \
         PRAGMA mmap_size = {MMAP_BYTES};"
    ))?;
    // The query planner stability guarantee: a plan never depends on the values bound to a
    // statement. Without it SQLite prepared our cached search statements again on every execution
    // (`sqlite3Reprepare`: its planner had looked at a bound value, which marks a statement for
    // re-planning when the bindings change): 12% of the CPU of a search load at a million
    // resources. The plan tests check the plans this gives.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Checkpoints the WAL in the background (PASSIVE: never blocks readers or the writer) until the
/// store is dropped.
fn spawn_checkpointer(path: PathBuf, store: Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".to_string()).spawn(move || {
        let conn = match connect(&path, 2_000) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "sqlite checkpointer could not connect; the writer checkpoints");
                return;
            }
        };
        while store.strong_count() > 0 {
            std::thread::sleep(CHECKPOINT_EVERY);
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "sqlite checkpoint failed");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no sqlite checkpointer thread; the writer checkpoints");
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Database(format!("sqlite task failed: {e}")))?
}

impl Sqlite {
    /// Opens `target` (a file path, or `:memory:`), creating and migrating it as needed.
    pub(crate) async fn open(target: &str) -> Result<Sqlite> {
        let target = target.to_string();
        let inner = blocking(move || {
            let (path, mut writer) = if target == ":memory:" || target.is_empty() {
                let conn =
                    Connection::open_in_memory().map_err(|e| StoreError::Open(e.to_string()))?;
                (None, conn)
            } else {
                let path = PathBuf::from(&target);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
                }
                let conn = connect(&path, WRITER_CACHE_KIB)
                    .map_err(|e| StoreError::Open(format!("{target}: {e}")))?;
                (Some(path), conn)
            };
            writer.set_prepared_statement_cache_capacity(128);
            let opening = |e: StoreError| match e {
                StoreError::Open(m) => StoreError::Open(m),
                other => StoreError::Open(other.to_string()),
            };
            migrate(&mut writer, migrate::SQLITE).map_err(opening)?;
            let audit_path = path.as_deref().map(audit_file_of);
            let mut audit_writer = match &audit_path {
                None => {
                    Connection::open_in_memory().map_err(|e| StoreError::Open(e.to_string()))?
                }
                Some(file) => connect(file, WRITER_CACHE_KIB)
                    .map_err(|e| StoreError::Open(format!("{}: {e}", file.display())))?,
            };
            migrate(&mut audit_writer, migrate::SQLITE_AUDIT).map_err(opening)?;
            // The copier's transactions hold up to 20,000 records' places and index rows, which
            // land on pages all over the index: with a cache smaller than those, SQLite spills
            // pages to the WAL in the middle of each one (and writes them again at its end).
            audit_writer
                .pragma_update(None, "cache_size", -AUDIT_COPY_CACHE_KIB)
                .map_err(|e| StoreError::Open(e.to_string()))?;
            let log_path = path.as_deref().map(audit_log_of);
            let log = open_audit_log(&mut audit_writer, path.as_deref(), log_path.as_deref())
                .map_err(opening)?;
            let audit_log = log.reader().map_err(opening)?;
            // A copy made from the start (deleted, or dropped by audit migration 3) takes a
            // while on a large log, before the store opens: say so.
            let building = copied_boundary(&audit_writer).map_err(opening)?.is_none()
                && audit_file::record_starts_at(&audit_log, 0).map_err(opening)?;
            if building {
                tracing::info!("building the audit log's searchable copy from the log file");
            }
            let copied = copy_audit_records(&mut audit_writer, &audit_log).map_err(opening)?;
            if building {
                let records = copied_boundary(&audit_writer)
                    .map_err(opening)?
                    .map_or(0, |b| b.seq);
                tracing::info!(records, "audit log's searchable copy built");
            }
            let inner = Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                audit: Db {
                    path: audit_path,
                    writer: Mutex::new(audit_writer),
                    readers: Mutex::new(Vec::new()),
                },
                permits: Arc::new(tokio::sync::Semaphore::new(readers())),
                audit_log,
                audit_copied: AtomicU64::new(copied),
            });
            for file in [&inner.path, &inner.audit.path].into_iter().flatten() {
                spawn_checkpointer(file.clone(), Arc::downgrade(&inner));
            }
            spawn_audit_copier(Arc::downgrade(&inner));
            Ok((inner, log))
        })
        .await?;
        let (inner, mut log) = inner;
        // The group-commit thread owns the log file's appender; it ends with the last clone of
        // this store.
        let audit = Appender::spawn_thread("sqlite-audit", move |records| log.append(records))
            .map_err(|e| StoreError::Open(format!("no audit writer thread: {e}")))?;
        Ok(Sqlite { inner, audit })
    }

    /// Brings the audit database's copy up to the end of the log file (nothing to do, and no
    /// blocking call, when it is there already).
    pub(crate) async fn copy_audit(&self) -> Result<()> {
        if !self.inner.audit_behind()? {
            return Ok(());
        }
        let inner = self.inner.clone();
        blocking(move || inner.copy_audit()).await
    }

    /// Walks the log file's chain, then compares the searchable copy with it (brought up to date
    /// first): each row of the copy must place the record of its number, with its time and hash,
    /// where the file holds it. The file may hold records appended since the copy was read.
    pub(crate) async fn verify_audit(&self) -> Result<audit::AuditCheck> {
        self.copy_audit().await?;
        let inner = self.inner.clone();
        blocking(move || {
            let reader = inner.audit_log.try_clone().map_err(io_error)?;
            let file = block_ready(audit::verify(&audit_file::FileChain::new(reader)?))?;
            if matches!(file, audit::AuditCheck::Broken { .. }) {
                return Ok(file);
            }
            let conn = lock(&inner.audit.writer);
            match compare_copy(&conn, &inner.audit_log)? {
                Some(broken) => Ok(broken),
                None => Ok(file),
            }
        })
        .await
    }

    /// Runs `f` on a reader connection inside one read transaction (one consistent snapshot).
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.read_in(false, f).await
    }

    /// [`Sqlite::read`] in the audit database.
    async fn read_audit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.read_in(true, f).await
    }

    async fn read_in<T: Send + 'static>(
        &self,
        audit: bool,
        f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database("sqlite reader pool closed".to_string()))?;
        blocking(move || {
            let _permit = permit;
            let (path, writer, readers) = if audit {
                (&inner.audit.path, &inner.audit.writer, &inner.audit.readers)
            } else {
                (&inner.path, &inner.writer, &inner.readers)
            };
            let Some(path) = path else {
                let conn = lock(writer);
                return in_read_tx(&conn, f);
            };
            let pooled = lock(readers).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(path, READER_CACHE_KIB)?,
            };
            let out = in_read_tx(&conn, f);
            lock(readers).push(conn);
            out
        })
        .await
    }

    /// Runs `f` on the writer connection, outside any transaction (each statement commits alone).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || {
            f(&mut SqliteExec {
                conn: &lock(&inner.writer),
            })
        })
        .await
    }

    /// Runs `f` in one immediate transaction on the writer: committed if it answers `Ok`, rolled
    /// back otherwise.
    pub(crate) async fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&mut SqliteExec { conn: &tx })?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn register_client(&self, new: NewClient) -> Result<Client> {
        self.write(move |e| block_ready(clients::register(e, new)))
            .await
    }

    pub(crate) async fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        let client_id = client_id.to_string();
        self.read(move |e| block_ready(clients::client(e, &client_id)))
            .await
    }

    pub(crate) async fn clients(&self) -> Result<Vec<Client>> {
        self.read(|e| block_ready(clients::clients(e))).await
    }

    pub(crate) async fn set_client_status(
        &self,
        client_id: &str,
        status: ClientStatus,
    ) -> Result<bool> {
        let client_id = client_id.to_string();
        self.write(move |e| block_ready(clients::set_status(e, &client_id, status)))
            .await
    }

    pub(crate) async fn remember_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        let (client_id, jti) = (client_id.to_string(), jti.to_string());
        self.write(move |e| {
            block_ready(clients::remember_jti(e, &client_id, &jti, expires_at, now))
        })
        .await
    }

    pub(crate) async fn token_key(&self) -> Result<Vec<u8>> {
        self.write(|e| block_ready(clients::token_key(e))).await
    }

    pub(crate) async fn add_user(&self, new: NewUser) -> Result<User> {
        self.write(move |e| block_ready(accounts::add_user(e, new)))
            .await
    }

    pub(crate) async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = login.to_string();
        self.read(move |e| block_ready(accounts::user_by_login(e, &login)))
            .await
    }

    pub(crate) async fn user(&self, user_id: &str) -> Result<Option<User>> {
        let user_id = user_id.to_string();
        self.read(move |e| block_ready(accounts::user(e, &user_id)))
            .await
    }

    pub(crate) async fn users(&self) -> Result<Vec<User>> {
        self.read(|e| block_ready(accounts::users(e))).await
    }

    pub(crate) async fn set_user_status(&self, user_id: &str, status: UserStatus) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::set_user_status(e, &user_id, status)))
            .await
    }

    pub(crate) async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        let (user_id, hash) = (user_id.to_string(), hash.to_string());
        self.write(move |e| block_ready(accounts::set_password_hash(e, &user_id, &hash)))
            .await
    }

    pub(crate) async fn record_failed_sign_in(&self, user_id: &str) -> Result<i64> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::record_failed_sign_in(e, &user_id)))
            .await
    }

    pub(crate) async fn reset_failed_sign_ins(&self, user_id: &str) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::reset_failed_sign_ins(e, &user_id)))
            .await
    }

    pub(crate) async fn lock_user_until(&self, user_id: &str, until: i64) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::lock_user_until(e, &user_id, until)))
            .await
    }

    pub(crate) async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::use_totp_step(e, &user_id, step)))
            .await
    }

    pub(crate) async fn create_session(&self, session: Session) -> Result<Session> {
        self.write(move |e| block_ready(accounts::create_session(e, session)))
            .await
    }

    pub(crate) async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let id_hash = id_hash.to_string();
        self.read(move |e| block_ready(accounts::session(e, &id_hash)))
            .await
    }

    pub(crate) async fn touch_session(&self, id_hash: &str, now: i64) -> Result<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |e| block_ready(accounts::touch_session(e, &id_hash, now)))
            .await
    }

    pub(crate) async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |e| block_ready(accounts::delete_session(e, &id_hash)))
            .await
    }

    pub(crate) async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let user_id = user_id.to_string();
        self.write(move |e| block_ready(accounts::delete_user_sessions(e, &user_id)))
            .await
    }

    pub(crate) async fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        self.write(move |e| block_ready(accounts::delete_expired_sessions(e, now, idle_before)))
            .await
    }

    pub(crate) async fn record_relationships(
        &self,
        participant_id: &str,
        basis: RelationshipBasis,
        patients: &[String],
        recorded: i64,
    ) -> Result<()> {
        let (participant_id, patients) = (participant_id.to_string(), patients.to_vec());
        self.write(move |e| {
            block_ready(relationships::record(
                e,
                &participant_id,
                basis,
                &patients,
                recorded,
            ))
        })
        .await
    }

    /// Runs a multi-statement onboarding write in one immediate transaction on the writer.
    pub(crate) async fn onboarding_tx(
        &self,
        op: crate::onboarding::Tx,
    ) -> Result<crate::onboarding::TxOut> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = block_ready(crate::onboarding::run_tx(&mut SqliteExec { conn: &tx }, op))?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Runs a patient index operation: a write in one transaction on the writer (SQLite's single
    /// writer is the index's lock), a read in a read transaction.
    pub(crate) async fn mpi(&self, op: crate::mpi::Op) -> Result<crate::mpi::Out> {
        if op.writes() {
            let inner = self.inner.clone();
            blocking(move || {
                let mut conn = lock(&inner.writer);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = block_ready(crate::mpi::run(&mut SqliteExec { conn: &tx }, op))?;
                tx.commit()?;
                Ok(out)
            })
            .await
        } else {
            self.read(move |e| block_ready(crate::mpi::run(e, op)))
                .await
        }
    }

    pub(crate) async fn relationships(
        &self,
        participant_id: &str,
        patients: &[String],
    ) -> Result<Vec<String>> {
        let (participant_id, patients) = (participant_id.to_string(), patients.to_vec());
        self.read(move |e| block_ready(relationships::related(e, &participant_id, &patients)))
            .await
    }

    pub(crate) async fn health(&self) -> Result<()> {
        self.read(|e| block_ready(e.rows("SELECT 1", &[])).map(|_| ()))
            .await
    }

    pub(crate) async fn current(&self, keys: &[(String, String)]) -> Result<Vec<Option<Current>>> {
        let keys = keys.to_vec();
        self.read(move |e| block_ready(query::current(e, &keys)))
            .await
    }

    pub(crate) async fn read_current(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Stored>> {
        let (ty, id) = (resource_type.to_string(), id.to_string());
        self.read(move |e| block_ready(query::read(e, &ty, &id)))
            .await
    }

    pub(crate) async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Stored>> {
        let (ty, id) = (resource_type.to_string(), id.to_string());
        self.read(move |e| block_ready(query::vread(e, &ty, &id, version)))
            .await
    }

    pub(crate) async fn search(&self, q: &Query, options: &SearchOptions) -> Result<SearchPage> {
        let (q, options) = (q.clone(), options.clone());
        self.read(move |e| block_ready(query::search(e, &q, &options)))
            .await
    }

    pub(crate) async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let request = request.clone();
        self.read(move |e| block_ready(query::history(e, &request)))
            .await
    }

    pub(crate) async fn compartment(&self, request: &CompartmentRequest) -> Result<SearchPage> {
        let request = request.clone();
        self.read(move |e| block_ready(query::compartment(e, &request)))
            .await
    }

    pub(crate) async fn commit_with_audit(
        &self,
        writes: Vec<Write>,
        audit: Vec<NewAuditRecord>,
    ) -> Result<Vec<Appended>> {
        if writes.is_empty() {
            return self.audit.append(audit).await;
        }
        let inner = self.inner.clone();
        let appender = self.audit.clone();
        blocking(move || {
            let mut conn = lock(&inner.writer);
            commit(&mut conn, &writes, audit, &appender)
        })
        .await
    }

    pub(crate) async fn append_audit(&self, records: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        self.audit.append(records).await
    }

    pub(crate) async fn compartment_members(
        &self,
        patients: Vec<String>,
        except: Vec<String>,
    ) -> Result<Vec<(String, String)>> {
        self.read(move |e| block_ready(crate::purge::compartment_members(e, &patients, &except)))
            .await
    }

    /// One immediate transaction on the writer; the audit records are appended durably inside
    /// it, before it commits (as a write's are).
    pub(crate) async fn purge(
        &self,
        targets: Vec<(String, String)>,
        make_audit: crate::PurgeAudit,
    ) -> Result<Vec<crate::Purged>> {
        let inner = self.inner.clone();
        let appender = self.audit.clone();
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let purged = block_ready(crate::purge::remove(
                &mut SqliteExec { conn: &tx },
                &targets,
            ))?;
            let records = make_audit(&purged);
            if !records.is_empty() {
                appender.append_blocking(records)?;
            }
            tx.commit()?;
            Ok(purged)
        })
        .await
    }

    pub(crate) async fn audit_raw(&self, after: i64, limit: usize) -> Result<Vec<RawRecord>> {
        self.copy_audit().await?;
        let inner = self.inner.clone();
        self.read_audit(move |e| placed_records_after(e, &inner.audit_log, after, limit))
            .await
    }

    pub(crate) async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<RawRecord>> {
        self.copy_audit().await?;
        let query = query.clone();
        let inner = self.inner.clone();
        self.read_audit(move |e| {
            let rows = block_ready(audit::search_rows(e, &query, PLACE_COLUMNS))?;
            rows.into_iter()
                .map(|row| placed_record(&inner.audit_log, row))
                .collect()
        })
        .await
    }

    pub(crate) async fn audit_seq_of_hash(&self, hash: AuditHash) -> Result<Option<i64>> {
        self.copy_audit().await?;
        self.read_audit(move |e| block_ready(audit::seq_of_hash(e, &hash)))
            .await
    }

    pub(crate) async fn explain(&self, q: &Query, options: &SearchOptions) -> Result<Vec<String>> {
        let (q, options) = (q.clone(), options.clone());
        self.read(move |e| block_ready(query::explain(e, &q, &options)))
            .await
    }

    /// Updates the planner's statistics, on the writer connection.
    pub(crate) async fn analyze(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || Ok(lock(&inner.writer).execute_batch("ANALYZE")?)).await
    }

    /// Runs `sql` on a reader inside a read transaction that is rolled back (for the query-plan tests).
    #[doc(hidden)]
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let sql = sql.to_string();
        self.read(move |e| {
            let rows = block_ready(e.rows(&sql, &[]))?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|v| match v {
                            Val::Null => String::new(),
                            Val::Int(i) => i.to_string(),
                            Val::Real(f) => f.to_string(),
                            Val::Text(s) => s,
                            Val::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                        })
                        .collect()
                })
                .collect())
        })
        .await
    }
}

fn in_read_tx<T>(conn: &Connection, f: impl FnOnce(&mut SqliteExec<'_>) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction()?;
    let out = f(&mut SqliteExec { conn: &tx });
    drop(tx);
    out
}

/// Runs shared queries on one SQLite connection.
pub(crate) struct SqliteExec<'c> {
    conn: &'c Connection,
}

impl Exec for SqliteExec<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Real(v) => Val::Real(v),
                    ValueRef::Text(v) => Val::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Val::Bytes(v.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

fn migrate(conn: &mut Connection, migrations: &[migrate::Migration]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL)",
    )?;
    let applied: Vec<(i64, String)> = tx
        .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for migration in migrate::pending(migrations, &applied)? {
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, migration.checksum()],
        )?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied sqlite migration"
        );
    }
    tx.commit()?;
    Ok(())
}

fn conflict(write: &Write) -> StoreError {
    StoreError::Conflict {
        resource_type: write.resource_type.clone(),
        id: write.id.clone(),
    }
}

/// Applies a batch of writes in one immediate transaction and, before it commits, appends their
/// audit records to the audit database (through the group commit, so durably); any failed
/// expectation rolls the writes back and appends nothing. A record is thus committed before the
/// writes it records: a crash, or a failure of the main file's commit, between the two leaves a
/// record of writes that did not land, never writes without their record.
fn commit(
    conn: &mut Connection,
    writes: &[Write],
    records: Vec<NewAuditRecord>,
    audit: &Appender,
) -> Result<Vec<Appended>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    apply(&tx, writes)?;
    let appended = audit.append_blocking(records)?;
    tx.commit()?;
    Ok(appended)
}

/// Copies the audit records (and their index rows) a database written before the audit log had a
/// database of its own keeps in its main file into the audit database's `audit_earlier` tables
/// (from where [`settle_earlier_records`] writes them to the new log file). The main file's
/// records stay (its triggers refuse deletion) and are no longer read.
fn adopt_earlier_records(audit: &mut Connection, main: &std::path::Path) -> Result<()> {
    let empty: bool =
        audit.query_row("SELECT NOT EXISTS (SELECT 1 FROM audit_earlier)", [], |r| {
            r.get(0)
        })?;
    if !empty {
        return Ok(());
    }
    audit.execute("ATTACH DATABASE ?1 AS earlier", [main.to_string_lossy()])?;
    let copied = (|| {
        let has_log: bool = audit.query_row(
            "SELECT EXISTS (SELECT 1 FROM earlier.sqlite_master WHERE type = 'table' AND name = 'audit_log')",
            [],
            |r| r.get(0),
        )?;
        if !has_log {
            return Ok(0);
        }
        let tx = audit.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT INTO audit_earlier (seq, recorded, json, prev_hash, hash) \
             SELECT seq, recorded, json, prev_hash, hash FROM earlier.audit_log ORDER BY seq",
            [],
        )?;
        let has_index: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM earlier.sqlite_master WHERE type = 'table' AND name = 'audit_index')",
            [],
            |r| r.get(0),
        )?;
        if has_index {
            tx.execute(
                "INSERT INTO audit_earlier_index (name, value, seq) SELECT name, value, seq FROM earlier.audit_index",
                [],
            )?;
        }
        tx.commit()?;
        Ok::<usize, StoreError>(n)
    })();
    audit.execute("DETACH DATABASE earlier", [])?;
    let copied = copied?;
    if copied > 0 {
        tracing::info!(
            records = copied,
            "audit records moved to the audit database"
        );
    }
    Ok(())
}

/// Applies `writes` inside the open transaction `tx`.
fn apply(tx: &rusqlite::Transaction<'_>, writes: &[Write]) -> Result<()> {
    for write in writes {
        let current = tx
            .prepare_cached(
                "SELECT rid, version, deleted FROM resources WHERE type = ?1 AND id = ?2",
            )?
            .query_row(params![write.resource_type, write.id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)? != 0,
                ))
            })
            .optional()?;
        match (current, write.expect) {
            (None, None) => {}
            (Some((_, version, _)), Some(expect)) if version == expect => {}
            _ => return Err(conflict(write)),
        }
        let deleted = matches!(write.op, WriteOp::Delete);
        let rid = match current {
            None => {
                tx.prepare_cached(
                    "INSERT INTO resources (type, id, version, last_updated, deleted) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![write.resource_type, write.id, write.version, write.last_updated, deleted])?;
                tx.last_insert_rowid()
            }
            Some((rid, _, _)) => {
                tx.prepare_cached(
                    "UPDATE resources SET version = ?2, last_updated = ?3, deleted = ?4 WHERE rid = ?1",
                )?
                .execute(params![rid, write.version, write.last_updated, deleted])?;
                rid
            }
        };
        let json = match &write.op {
            WriteOp::Put { json, .. } => json.as_str(),
            WriteOp::Delete => "",
        };
        tx.prepare_cached(
            "INSERT INTO versions (rid, type, version, last_updated, deleted, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![rid, write.resource_type, write.version, write.last_updated, deleted, json])?;
        // The version's sequence number is the commit sequence number of its index rows: writers
        // are serialised, so it grows in commit order.
        let seq = tx.last_insert_rowid();
        if matches!(current, Some((_, _, false))) {
            close_index(tx, rid, seq)?;
        }
        if let WriteOp::Put {
            index,
            compartments,
            ..
        } = &write.op
        {
            insert_index(tx, rid, seq, index)?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO compartment (rid, patient_id, from_seq) VALUES (?1, ?2, ?3)",
            )?;
            for patient in compartments {
                stmt.execute(params![rid, patient, seq])?;
            }
        }
    }
    Ok(())
}

impl Inner {
    /// Whether the log file holds records the audit database's copy does not.
    fn audit_behind(&self) -> Result<bool> {
        audit_file::record_starts_at(&self.audit_log, self.audit_copied.load(Ordering::Acquire))
    }

    /// Copies what the log file holds past the audit database's copy into it (a blocking call).
    fn copy_audit(&self) -> Result<()> {
        let mut conn = lock(&self.audit.writer);
        let to = copy_audit_records(&mut conn, &self.audit_log)?;
        self.audit_copied.fetch_max(to, Ordering::AcqRel);
        Ok(())
    }
}

/// Copies the log file's records in the background, every [`COPY_EVERY`], in transactions of up
/// to [`COPY_BATCH`] records, so that the copy's random index pages are shared by many records
/// and searches of the log seldom have much to copy first. Ends with the store.
fn spawn_audit_copier(store: Weak<Inner>) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-audit-copy".to_string())
        .spawn(move || loop {
            std::thread::sleep(COPY_EVERY);
            let Some(inner) = store.upgrade() else {
                return;
            };
            match inner.audit_behind() {
                Ok(false) => {}
                Ok(true) => {
                    if let Err(e) = inner.copy_audit() {
                        tracing::warn!(error = %e, "copying the audit log into its database failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the audit log file cannot be read"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no audit copier thread; searches of the log copy it");
    }
}

/// The last record the audit database's copy holds and where the file goes on after it (`None`
/// before the copy has ever been made from a file).
fn copied_boundary(conn: &Connection) -> Result<Option<Boundary>> {
    let row = conn
        .prepare_cached("SELECT seq, hash, file_offset FROM audit_copied WHERE one = 1")?
        .query_row([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    row.map(|(seq, hash, offset)| {
        let (seq, hash) = audit::head(Some((seq, hash)))?;
        Ok(Boundary {
            seq,
            hash,
            offset: u64::try_from(offset).unwrap_or(0),
        })
    })
    .transpose()
}

/// Opens the audit log file (a temporary one for a store in memory), from where the audit
/// database's copy ends, once the records of earlier versions are settled.
fn open_audit_log(
    conn: &mut Connection,
    main: Option<&Path>,
    log: Option<&Path>,
) -> Result<AuditFile> {
    settle_earlier_records(conn, main.zip(log))?;
    let Some(path) = log else {
        return AuditFile::temporary();
    };
    AuditFile::open(path, copied_boundary(conn)?.unwrap_or(Boundary::START))
}

/// The tables of audit database versions 1 and 2 (`audit_earlier`, renamed by version 3): a copy
/// the log file already holds (`audit_earlier_copied` says how far), or, from before the log had
/// a file, the records themselves (or, older still, records in the main database, `main`): those
/// are written to the new log file (`log`). Then the tables are dropped; the copy is rebuilt from
/// the file.
fn settle_earlier_records(conn: &mut Connection, files: Option<(&Path, &Path)>) -> Result<()> {
    let earlier: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_earlier')",
        [],
        |r| r.get(0),
    )?;
    if !earlier {
        return Ok(());
    }
    if let Some((main, log)) = files {
        let in_file: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM audit_earlier_copied)",
            [],
            |r| r.get(0),
        )?;
        if !in_file {
            adopt_earlier_records(conn, main)?;
            let any: bool =
                conn.query_row("SELECT EXISTS (SELECT 1 FROM audit_earlier)", [], |r| {
                    r.get(0)
                })?;
            if any {
                let at = write_earlier_records(conn, log)?;
                tracing::info!(
                    records = at.seq,
                    "audit records written to the audit log file"
                );
            }
        }
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE; DROP TABLE IF EXISTS audit_earlier; \
         DROP TABLE IF EXISTS audit_earlier_index; DROP TABLE IF EXISTS audit_earlier_copied; COMMIT;",
    )?;
    Ok(())
}

/// Writes every record of the audit database's `audit_earlier`, with its index pairs, to a new
/// log file at `path`.
fn write_earlier_records(conn: &Connection, path: &Path) -> Result<Boundary> {
    let mut records = conn
        .prepare("SELECT seq, recorded, json, prev_hash, hash FROM audit_earlier ORDER BY seq")?;
    let mut pairs =
        conn.prepare("SELECT seq, name, value FROM audit_earlier_index ORDER BY seq")?;
    let mut records = records.query([])?;
    let mut pairs = pairs.query([])?;
    let mut pending: Option<(i64, String, String)> = None;
    let mut next_pair = move || -> rusqlite::Result<Option<(i64, String, String)>> {
        match pairs.next()? {
            Some(row) => Ok(Some((row.get(0)?, row.get(1)?, row.get(2)?))),
            None => Ok(None),
        }
    };
    let rows = std::iter::from_fn(|| {
        let row = match records.next() {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(e) => return Some(Err(StoreError::from(e))),
        };
        let item = (|| {
            let record = FileRecord {
                seq: row.get(0)?,
                recorded: row.get(1)?,
                json: row.get(2)?,
                prev_hash: row.get(3)?,
                hash: row.get(4)?,
                index: Vec::new(),
                offset: 0,
                end: 0,
            };
            let mut index = Vec::new();
            loop {
                let pair = match pending.take() {
                    Some(pair) => Some(pair),
                    None => next_pair()?,
                };
                match pair {
                    Some((seq, name, value)) if seq == record.seq => index.push((name, value)),
                    Some((seq, name, value)) if seq < record.seq => {
                        let _ = (name, value);
                    }
                    other => {
                        pending = other;
                        break;
                    }
                }
            }
            Ok::<_, rusqlite::Error>((record, index))
        })();
        Some(item.map_err(StoreError::from))
    });
    audit_file::write_earlier(path, rows)
}

fn set_copied(conn: &Connection, at: &Boundary) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_copied (one, seq, hash, file_offset) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
         file_offset = excluded.file_offset",
    )?
    .execute(params![
        at.seq,
        at.hash.to_hex(),
        i64::try_from(at.offset).unwrap_or(i64::MAX)
    ])?;
    Ok(())
}

/// Copies the places of the records the log file holds past the copy's end into `audit_log`, and
/// their index pairs into `audit_index`,
/// in transactions of at most [`COPY_BATCH`] records; answers the file offset the copy reaches.
/// The copy stops at a record that does not follow the one before it (a damaged or altered file:
/// `verify` names it) and at a record still being written.
fn copy_audit_records(conn: &mut Connection, log: &File) -> Result<u64> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from = copied_boundary(&tx)?.unwrap_or(Boundary::START);
        let mut scanner = Scanner::new(log.try_clone().map_err(io_error)?, from.offset);
        let mut last = from;
        let mut copied = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_log (seq, recorded, hash, file_offset, length) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut index = tx.prepare_cached(
                "INSERT OR IGNORE INTO audit_index (name, value, seq) VALUES (?1, ?2, ?3)",
            )?;
            while copied < COPY_BATCH {
                let Some(r) = scanner.next_record()? else {
                    if let Some(audit_file::Stop::Damaged(at)) = scanner.stopped() {
                        warn_stopped(at, last.seq);
                    }
                    break;
                };
                let hash = AuditHash::from_hex(&r.hash);
                let Some(hash) = hash.filter(|_| {
                    r.seq == last.seq + 1 && AuditHash::from_hex(&r.prev_hash) == Some(last.hash)
                }) else {
                    warn_stopped(r.offset, last.seq);
                    break;
                };
                let (offset, length) = (place(r.offset), place(r.end - r.offset));
                insert.execute(params![r.seq, r.recorded, r.hash, offset, length])?;
                for (name, value) in &r.index {
                    index.execute(params![name, value, r.seq])?;
                }
                last = Boundary {
                    seq: r.seq,
                    hash,
                    offset: r.end,
                };
                copied += 1;
            }
        }
        if copied > 0 {
            set_copied(&tx, &last)?;
        }
        tx.commit()?;
        if copied < COPY_BATCH {
            return Ok(last.offset);
        }
    }
}

/// The first row of the audit database's copy that does not place the log file's record of its
/// number as the file holds it (the file's chain is intact), if any.
fn compare_copy(conn: &Connection, log: &File) -> Result<Option<audit::AuditCheck>> {
    let mut e = SqliteExec { conn };
    let mut scanner = Scanner::new(log.try_clone().map_err(io_error)?, 0);
    let (mut after, mut verified) = (i64::MIN, 0);
    loop {
        let rows = block_ready(audit::rows_after(&mut e, PLACE_COLUMNS, after, 1_000))?;
        let done = rows.len() < 1_000;
        for row in rows {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            let seq = next().int()?;
            let (recorded, hash, offset, length) = (next(), next(), next(), next());
            let fault = match scanner.next_record()? {
                // The file ends before the copy does: records were cut off its end, if the row
                // places one past it; a row placing one inside it is not the file's.
                None if matches!(offset, Val::Int(o) if o >= place(scanner.position())) => {
                    let last: i64 =
                        conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))?;
                    audit::AuditFault::Removed { first: seq, last }
                }
                None => audit::AuditFault::Changed { seq },
                Some(r) if r.seq < seq => audit::AuditFault::Removed {
                    first: r.seq,
                    last: seq - 1,
                },
                Some(r) if r.seq > seq => audit::AuditFault::Inserted { seq },
                Some(r)
                    if recorded != Val::Int(r.recorded)
                        || !matches!(&hash, Val::Text(h) if *h == r.hash)
                        || offset != Val::Int(place(r.offset))
                        || length != Val::Int(place(r.end - r.offset)) =>
                {
                    audit::AuditFault::Changed { seq }
                }
                Some(_) => {
                    verified += 1;
                    after = seq;
                    continue;
                }
            };
            return Ok(Some(audit::AuditCheck::Broken { verified, fault }));
        }
        if done {
            return Ok(None);
        }
    }
}

/// A file offset or length as SQLite stores it.
fn place(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of the audit database's copy, as [`placed_record`] reads them.
const PLACE_COLUMNS: &[&str] = &["seq", "recorded", "hash", "file_offset", "length"];

/// Up to `limit` records of the copy with `seq > after`, in order, read from the log file.
fn placed_records_after(
    e: &mut SqliteExec<'_>,
    log: &File,
    after: i64,
    limit: usize,
) -> Result<Vec<RawRecord>> {
    let rows = block_ready(audit::rows_after(e, PLACE_COLUMNS, after, limit))?;
    rows.into_iter()
        .map(|row| placed_record(log, row))
        .collect()
}

/// The record a row of the copy places in the log file: its number, time and hash as the copy
/// holds them, its text and previous hash as the file does (the hash covers the number and time,
/// so a row moved to another record's place never checks). A row that does not place a whole
/// record gives one without text or previous hash, which no check passes: verify names it changed.
fn placed_record(log: &File, row: Vec<Val>) -> Result<RawRecord> {
    let mut row = row.into_iter();
    let (seq, recorded) = audit::seq_and_time(&mut row)?;
    let mut next = || row.next().unwrap_or(Val::Null);
    let hash = next().text().unwrap_or_default();
    let (offset, length) = (next().int().unwrap_or(-1), next().int().unwrap_or(-1));
    let found = match (u64::try_from(offset), u64::try_from(length)) {
        (Ok(offset), Ok(length)) => audit_file::record_at(log, offset, length)?,
        _ => None,
    };
    Ok(match found {
        Some(r) => RawRecord::new(seq, recorded, r.json, r.prev_hash, hash),
        None => RawRecord::new(seq, recorded, String::new(), String::new(), hash),
    })
}

/// Says once per place that the copy cannot go past a record of the log file.
fn warn_stopped(at: u64, after: i64) {
    static WARNED: AtomicU64 = AtomicU64::new(u64::MAX);
    if WARNED.swap(at, Ordering::Relaxed) != at {
        tracing::warn!(
            byte = at,
            after_record = after,
            "the audit log file does not go on as a chain here: its copy stops; run `nutmeg admin audit verify`"
        );
    }
}

/// Ends the validity of a resource's current index and compartment rows at commit `seq` (they stay
/// for the later pages of searches begun before it).
fn close_index(conn: &Connection, rid: i64, seq: i64) -> Result<()> {
    for table in query::Table::ALL
        .iter()
        .map(|t| t.name())
        .chain(["compartment"])
    {
        conn.prepare_cached(&format!(
            "UPDATE {table} SET to_seq = ?2 WHERE rid = ?1 AND to_seq IS NULL"
        ))?
        .execute([rid, seq])?;
    }
    Ok(())
}

fn insert_index(conn: &Connection, rid: i64, seq: i64, entries: &[IndexEntry]) -> Result<()> {
    for (n, entry) in entries.iter().enumerate() {
        let n = n as i64;
        let (grp, comp) = match entry.composite {
            Some(part) => (Some(i64::from(part.group)), Some(i64::from(part.component))),
            None => (None, None),
        };
        let p = entry.param;
        match &entry.value {
            IndexValue::String { normalized, exact } => conn
                .prepare_cached(
                    "INSERT INTO idx_string (rid, n, param, normalized, exact, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![rid, n, p, normalized, exact, grp, comp, seq])?,
            IndexValue::Token(token) => conn
                .prepare_cached(
                    "INSERT INTO idx_token (rid, n, param, system, code, text, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![rid, n, p, token.system, token.code, token.text, grp, comp, seq])?,
            IndexValue::IdentifierOfType { type_system, type_code, value } => conn
                .prepare_cached(
                    "INSERT INTO idx_token_type (rid, n, param, type_system, type_code, value, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![rid, n, p, type_system, type_code, value, grp, comp, seq])?,
            IndexValue::Date { low, high } => conn
                .prepare_cached(
                    "INSERT INTO idx_date (rid, n, param, low, high, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![rid, n, p, low, high, grp, comp, seq])?,
            IndexValue::Number { low, high } => conn
                .prepare_cached(
                    "INSERT INTO idx_number (rid, n, param, low, high, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![rid, n, p, low, high, grp, comp, seq])?,
            IndexValue::Quantity { system, code, unit, low, high } => conn
                .prepare_cached(
                    "INSERT INTO idx_quantity (rid, n, param, system, code, unit, low, high, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![rid, n, p, system, code, unit, low, high, grp, comp, seq])?,
            IndexValue::Reference { target_type, target_id, url, version } => conn
                .prepare_cached(
                    "INSERT INTO idx_reference (rid, n, param, target_type, target_id, url, version, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![rid, n, p, target_type, target_id, url, version, grp, comp, seq])?,
            IndexValue::Uri(uri) => conn
                .prepare_cached("INSERT INTO idx_uri (rid, n, param, uri, grp, comp, from_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
                .execute(params![rid, n, p, uri, grp, comp, seq])?,
        };
    }
    Ok(())
}
