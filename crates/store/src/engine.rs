//! The engine-dispatching [`Store`]: the one type the exchange codes against. Each method forwards
//! to the engine the database URL chose; the engines behave the same (the conformance suite proves it).

use fhir::search::Query;

use crate::{
    Appended, AuditCheck, AuditQuery, AuditRecord, Client, ClientStatus, CompartmentRequest,
    Current, HistoryPage, HistoryRequest, NewAuditRecord, NewClient, RelationshipBasis, Result,
    SearchOptions, SearchPage, Stored, Write,
};

/// The store: one of the engines, chosen by the database URL. Cheap to clone (shares its pools).
#[derive(Clone, Debug)]
pub enum Store {
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::Postgres),
}

/// Calls the same method on whichever engine this is.
macro_rules! dispatch {
    ($self:ident, $engine:ident => $call:expr) => {
        match *$self {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref $engine) => $call,
            #[cfg(feature = "postgres")]
            Store::Postgres(ref $engine) => $call,
        }
    };
}

/// Runs one store operation and emits its timing as a `trace` event (target `store`, field
/// `elapsed_us`, message = the operation), which the server's metrics layer turns into a histogram.
macro_rules! timed {
    ($self:ident, $operation:literal, $call:expr) => {{
        let started = std::time::Instant::now();
        let out = $call;
        tracing::trace!(
            engine = $self.engine(),
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = out.is_ok(),
            $operation
        );
        out
    }};
}

impl Store {
    /// Opens (creating and migrating as needed) `sqlite://PATH`, `sqlite::memory:` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store> {
        #[cfg(feature = "sqlite")]
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let target = rest.strip_prefix("//").unwrap_or(rest);
            return Ok(Store::Sqlite(crate::sqlite::Sqlite::open(target).await?));
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(crate::postgres::Postgres::open(url).await?));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(crate::StoreError::Open(format!(
            "no engine for database URLs of scheme '{scheme}'"
        )))
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    pub fn engine(&self) -> &'static str {
        match *self {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn health(&self) -> Result<()> {
        dispatch!(self, e => e.health().await)
    }

    /// The current version of each `(type, id)`, in order; `None` for one that never existed.
    pub async fn current(&self, keys: &[(String, String)]) -> Result<Vec<Option<Current>>> {
        timed!(self, "current", dispatch!(self, e => e.current(keys).await))
    }

    /// The current version (a tombstone if deleted), or `None` if it never existed.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Stored>> {
        timed!(
            self,
            "read",
            dispatch!(self, e => e.read_current(resource_type, id).await)
        )
    }

    /// One version, or `None`.
    pub async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Stored>> {
        timed!(
            self,
            "vread",
            dispatch!(self, e => e.vread(resource_type, id, version).await)
        )
    }

    /// Applies every write atomically, or none (`StoreError::Conflict` if an expectation fails).
    pub async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let count = writes.len();
        let started = std::time::Instant::now();
        let out = dispatch!(self, e => e.commit_with_audit(writes, Vec::new()).await).map(|_| ());
        tracing::trace!(
            engine = self.engine(),
            writes = count,
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = out.is_ok(),
            "commit"
        );
        out
    }

    /// Applies every write and appends the audit records in one transaction: all of it, or none
    /// (a conflicting write leaves no audit record behind). Returns where each record landed. The
    /// records are exactly as durable as the writes (on SQLite, `synchronous=NORMAL`: a crash of
    /// the machine may lose a recent commit, its writes and its records together); without writes
    /// this is [`Store::append_audit`] without the grouping, synced as that is.
    pub async fn commit_with_audit(
        &self,
        writes: Vec<Write>,
        audit: Vec<NewAuditRecord>,
    ) -> Result<Vec<Appended>> {
        let (count, records) = (writes.len(), audit.len());
        let started = std::time::Instant::now();
        let out = dispatch!(self, e => e.commit_with_audit(writes, audit).await);
        tracing::trace!(
            engine = self.engine(),
            writes = count,
            audit = records,
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = out.is_ok(),
            "commit"
        );
        out
    }

    /// Appends audit records (together, in order) to the chain and returns each one's sequence
    /// number and hash once they are durable. Concurrent callers' records share a transaction
    /// (group commit); if it fails, every one of them gets the error and none was written.
    pub async fn append_audit(&self, records: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        timed!(
            self,
            "append_audit",
            dispatch!(self, e => e.append_audit(records).await)
        )
    }

    /// Up to `limit` audit records with sequence numbers after `after_seq`, in order (0 starts at
    /// the beginning). Records are returned as stored; [`Store::verify_audit`] checks them.
    pub async fn audit_records(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let raw = timed!(
            self,
            "audit_records",
            dispatch!(self, e => e.audit_raw(after_seq, limit).await)
        )?;
        raw.into_iter().map(|r| r.parsed()).collect()
    }

    /// The audit records that match `query` by their index pairs and time, newest first (at most
    /// `query.limit`). Records are returned as stored; [`Store::verify_audit`] checks them (it does
    /// not check the index, which is derived from the records' JSON by the exchange).
    pub async fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let raw = timed!(
            self,
            "search_audit",
            dispatch!(self, e => e.audit_search(query).await)
        )?;
        raw.into_iter().map(|r| r.parsed()).collect()
    }

    /// Walks the whole audit chain, a chunk at a time, and answers its length and head, or the
    /// first record where it breaks.
    pub async fn verify_audit(&self) -> Result<AuditCheck> {
        timed!(self, "verify_audit", crate::audit::verify(self).await)
    }

    /// The sequence number of the audit record whose hash is `hash`, if the log holds it. With a
    /// head hash kept outside the database, this tells that nothing was cut off the log's end since.
    pub async fn audit_seq_of(&self, hash: crate::AuditHash) -> Result<Option<i64>> {
        dispatch!(self, e => e.audit_seq_of_hash(hash).await)
    }

    /// Registers a SMART Backend Services client, active from now on; `StoreError::Conflict` if
    /// its id is taken.
    pub async fn register_client(&self, new: NewClient) -> Result<Client> {
        dispatch!(self, e => e.register_client(new).await)
    }

    /// The client with this id, active or revoked, or `None`.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>> {
        timed!(
            self,
            "client",
            dispatch!(self, e => e.find_client(client_id).await)
        )
    }

    /// Every registered client, oldest first.
    pub async fn clients(&self) -> Result<Vec<Client>> {
        dispatch!(self, e => e.clients().await)
    }

    /// Sets a client's status; `false` if there is no such client.
    pub async fn set_client_status(&self, client_id: &str, status: ClientStatus) -> Result<bool> {
        dispatch!(self, e => e.set_client_status(client_id, status).await)
    }

    /// Records that `client_id` used the assertion id `jti`, valid until `expires_at` (seconds
    /// since the Unix epoch). `true` if it is new (or its earlier use has expired by `now`), `false`
    /// if it was already used and has not expired: a replay. One statement decides, on the table's
    /// primary key, so of any number of concurrent callers (in any number of processes) exactly one
    /// gets `true`. Expired ids are deleted now and then.
    pub async fn remember_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        timed!(
            self,
            "remember_jti",
            dispatch!(self, e => e.remember_jti(client_id, jti, expires_at, now).await)
        )
    }

    /// The exchange's access-token signing key: 32 random bytes made on the first call against
    /// this database and the same ever after, in every process that opens it.
    pub async fn token_key(&self) -> Result<Vec<u8>> {
        dispatch!(self, e => e.token_key().await)
    }

    /// Records that the participant is related to each of `patients` on `basis` (at `recorded`,
    /// milliseconds since the Unix epoch). Recording a relationship again changes nothing.
    pub async fn record_treatment_relationships(
        &self,
        participant_id: &str,
        basis: RelationshipBasis,
        patients: &[String],
        recorded: i64,
    ) -> Result<()> {
        if patients.is_empty() {
            return Ok(());
        }
        timed!(
            self,
            "record_relationships",
            dispatch!(self, e => e.record_relationships(participant_id, basis, patients, recorded).await)
        )
    }

    /// Those of `patients` the participant has a treatment relationship with, on any basis.
    pub async fn treatment_relationships(
        &self,
        participant_id: &str,
        patients: &[String],
    ) -> Result<Vec<String>> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        timed!(
            self,
            "relationships",
            dispatch!(self, e => e.relationships(participant_id, patients).await)
        )
    }

    /// Executes a search over current, live resources.
    pub async fn search(&self, query: &Query, options: &SearchOptions) -> Result<SearchPage> {
        timed!(
            self,
            "search",
            dispatch!(self, e => e.search(query, options).await)
        )
    }

    /// Lists versions, newest first.
    pub async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        timed!(
            self,
            "history",
            dispatch!(self, e => e.history(request).await)
        )
    }

    /// The live resources in a Patient's compartment (not the Patient itself), for `$everything`.
    pub async fn compartment(&self, request: &CompartmentRequest) -> Result<SearchPage> {
        timed!(
            self,
            "compartment",
            dispatch!(self, e => e.compartment(request).await)
        )
    }

    /// The database's plan for the statement that selects a search's page: SQLite's `EXPLAIN QUERY
    /// PLAN` (one line per node, indented by depth) or PostgreSQL's `EXPLAIN`. For tests and
    /// BENCHMARKS.md; not part of the interface the exchange uses.
    #[doc(hidden)]
    pub async fn explain(&self, query: &Query, options: &SearchOptions) -> Result<Vec<String>> {
        dispatch!(self, e => e.explain(query, options).await)
    }

    /// Updates the query planner's statistics (`ANALYZE`).
    #[doc(hidden)]
    pub async fn analyze(&self) -> Result<()> {
        dispatch!(self, e => e.analyze().await)
    }

    /// Runs a read-only SQL statement and returns its rows as text. For tests and diagnostics (query
    /// plans); not part of the interface the exchange uses.
    #[doc(hidden)]
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        dispatch!(self, e => e.query_rows(sql).await)
    }
}

impl crate::audit::ChainSource for Store {
    async fn chunk(&self, after: i64, limit: usize) -> Result<Vec<crate::audit::RawRecord>> {
        dispatch!(self, e => e.audit_raw(after, limit).await)
    }

    async fn find(&self, hash: crate::AuditHash) -> Result<Option<i64>> {
        dispatch!(self, e => e.audit_seq_of_hash(hash).await)
    }
}
