//! What the shared query code ([`crate::query`]) needs from an engine: its SQL dialect and a way to
//! run one statement. Both engines implement [`Exec`]; SQLite's implementation never waits, so the
//! shared async code runs to completion inside a blocking task with [`block_ready`].

use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::{Result, StoreError};

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Bytes: a BLOB on SQLite, BYTEA on PostgreSQL.
    Bytes(Vec<u8>),
}

impl Val {
    pub(crate) fn int(&self) -> Result<i64> {
        match self {
            Val::Int(i) => Ok(*i),
            other => Err(StoreError::Database(format!(
                "expected an integer column, got {other:?}"
            ))),
        }
    }

    pub(crate) fn text(self) -> Result<String> {
        match self {
            Val::Text(s) => Ok(s),
            Val::Null => Ok(String::new()),
            // (SQLite may hand back a BLOB where text was written by other means)
            Val::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => Err(StoreError::Database(format!(
                "expected a text column, got {other:?}"
            ))),
        }
    }
}

/// The differences between the engines' SQL that the shared builder has to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `n`th (1-based) bind parameter. Numbered on both engines, so text and arguments may be
    /// assembled in any order.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The stored resource JSON as text (`''` for a tombstone).
    ///
    /// SQLite returns the text as written. PostgreSQL's JSONB keeps the content but orders keys by
    /// length, which would put `resourceType` after `id` and `meta`; it is moved back to the front,
    /// where FHIR JSON conventionally has it.
    pub(crate) fn json_column(self, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{alias}.json"),
            Dialect::Postgres => format!(
                "CASE WHEN {a}.json IS NULL THEN '' \
                 WHEN jsonb_typeof({a}.json -> 'resourceType') = 'string' AND ({a}.json - 'resourceType') <> '{{}}'::jsonb \
                 THEN '{{\"resourceType\": ' || ({a}.json -> 'resourceType')::text || ', ' || substr(({a}.json - 'resourceType')::text, 2) \
                 ELSE {a}.json::text END",
                a = alias
            ),
        }
    }
}

/// Runs statements on one connection (or transaction) of an engine.
pub(crate) trait Exec {
    fn dialect(&self) -> Dialect;

    /// Runs `sql` with `args` bound to its numbered placeholders and returns every row.
    async fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>>;
}

/// Drives a future whose I/O is all synchronous (SQLite's [`Exec`]) to completion on this thread.
pub(crate) fn block_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // Not expected: the SQLite executor never returns Pending. Be a polite spin if it ever does.
        std::thread::yield_now();
    }
}

/// A stable 64-bit FNV-1a hash (for migration checksums and binding cursors to their query).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
