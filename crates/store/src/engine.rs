//! The engine-dispatching [`Store`]: the one type the exchange codes against. Each method forwards
//! to the engine the database URL chose; the engines behave the same (the conformance suite proves it).

use fhir::search::Query;

use crate::{
    Appended, AuditCheck, AuditQuery, AuditRecord, Client, ClientStatus, CompartmentRequest,
    Current, HistoryPage, HistoryRequest, NewAuditRecord, NewClient, NewUser, RelationshipBasis,
    Result, SearchOptions, SearchPage, Session, Stored, User, UserStatus, Write,
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

/// Runs a function over an `Exec` in one transaction: on SQLite an immediate transaction on
/// the writer, on PostgreSQL a transaction on a pooled connection; rolled back on an error.
macro_rules! in_transaction {
    ($self:ident, |$e:ident| $body:expr) => {
        match *$self {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref s) => {
                s.transaction(move |$e| crate::exec::block_ready($body))
                    .await
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(ref p) => {
                let mut client = p.client().await?;
                let tx = client.transaction().await.map_err(crate::postgres::db)?;
                let out = {
                    let $e = &mut crate::postgres::PgExec { client: &tx };
                    $body.await
                };
                match out {
                    Ok(value) => {
                        tx.commit().await.map_err(crate::postgres::db)?;
                        Ok(value)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
        }
    };
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
        timed!(
            self,
            "verify_audit",
            async {
                match self {
                    // On SQLite the log file is walked, then its searchable copy compared with it.
                    #[cfg(feature = "sqlite")]
                    Store::Sqlite(e) => e.verify_audit().await,
                    #[cfg(feature = "postgres")]
                    Store::Postgres(_) => crate::audit::verify(self).await,
                }
            }
            .await
        )
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

    /// Adds a portal account, active, without failed attempts; `StoreError::Conflict` if its id or
    /// its login (in any case) is taken.
    pub async fn add_user(&self, new: NewUser) -> Result<User> {
        dispatch!(self, e => e.add_user(new).await)
    }

    /// The account whose login is `login`, regardless of case, or `None`.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        timed!(
            self,
            "user_by_login",
            dispatch!(self, e => e.user_by_login(login).await)
        )
    }

    /// The account with this id, or `None`.
    pub async fn user(&self, user_id: &str) -> Result<Option<User>> {
        timed!(self, "user", dispatch!(self, e => e.user(user_id).await))
    }

    /// Every account, oldest first.
    pub async fn users(&self) -> Result<Vec<User>> {
        dispatch!(self, e => e.users().await)
    }

    /// Sets an account's status; `false` if there is no such account.
    pub async fn set_user_status(&self, user_id: &str, status: UserStatus) -> Result<bool> {
        dispatch!(self, e => e.set_user_status(user_id, status).await)
    }

    /// Replaces an account's password hash (a fresh hash after a sign-in with old parameters).
    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        dispatch!(self, e => e.set_password_hash(user_id, hash).await)
    }

    /// Adds an account without a password (its hash is [`crate::NO_PASSWORD`]) together with
    /// the invitation that lets its owner set one, in one transaction.
    pub async fn add_invited_user(
        &self,
        new: NewUser,
        invitation: crate::NewInvitation,
    ) -> Result<User> {
        in_transaction!(self, |e| crate::accounts::add_invited_user(
            e,
            new,
            &invitation
        ))
    }

    /// A new invitation to set the account's password; any it had not taken yet stop working.
    /// `false` if there is no such account.
    pub async fn invite_user(
        &self,
        user_id: &str,
        invitation: crate::NewInvitation,
    ) -> Result<bool> {
        let user_id = user_id.to_string();
        in_transaction!(self, |e| crate::accounts::invite(e, &user_id, &invitation))
    }

    /// The invitation whose secret hashes to `token_hash`, taken or not.
    pub async fn invitation(&self, token_hash: &str) -> Result<Option<crate::Invitation>> {
        let token_hash = token_hash.to_string();
        in_transaction!(self, |e| crate::accounts::invitation(e, &token_hash))
    }

    /// Takes an open invitation: the account's password becomes `password_hash`, its failures
    /// and lock are forgotten and its sessions end, all in one transaction. Answers the account's
    /// id, or `None` (nothing changed) for an invitation that is unknown, taken, expired or
    /// replaced, or whose account is disabled.
    pub async fn accept_invitation(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let token_hash = token_hash.to_string();
        let password_hash = password_hash.to_string();
        in_transaction!(self, |e| crate::accounts::accept_invitation(
            e,
            &token_hash,
            &password_hash,
            now
        ))
    }

    /// Counts one more failed sign-in and answers the count since the last reset, in one
    /// statement, so concurrent failures are all counted (0 if there is no such account).
    pub async fn record_failed_sign_in(&self, user_id: &str) -> Result<i64> {
        timed!(
            self,
            "record_failed_sign_in",
            dispatch!(self, e => e.record_failed_sign_in(user_id).await)
        )
    }

    /// Forgets an account's failed sign-ins and lifts its lock (after a successful sign-in).
    pub async fn reset_failed_sign_ins(&self, user_id: &str) -> Result<bool> {
        dispatch!(self, e => e.reset_failed_sign_ins(user_id).await)
    }

    /// Refuses sign-in to the account until `until` (seconds since the Unix epoch).
    pub async fn lock_user_until(&self, user_id: &str, until: i64) -> Result<bool> {
        dispatch!(self, e => e.lock_user_until(user_id, until).await)
    }

    /// Takes the TOTP step `step` for the account if it is later than the last step taken: `true`
    /// then, `false` if that step (or a later one) was already used. One statement decides, so of
    /// concurrent sign-ins with one code (in any number of processes) exactly one gets `true`.
    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool> {
        timed!(
            self,
            "use_totp_step",
            dispatch!(self, e => e.use_totp_step(user_id, step).await)
        )
    }

    /// Stores a new session; `StoreError::Conflict` if its id hash is taken.
    pub async fn create_session(&self, session: Session) -> Result<Session> {
        dispatch!(self, e => e.create_session(session).await)
    }

    /// The session whose cookie secret hashes to `id_hash`, expired or not, or `None`.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        timed!(
            self,
            "session",
            dispatch!(self, e => e.session(id_hash).await)
        )
    }

    /// Records a request of the session at `now`; `false` if there is no such session.
    pub async fn touch_session(&self, id_hash: &str, now: i64) -> Result<bool> {
        dispatch!(self, e => e.touch_session(id_hash, now).await)
    }

    /// Ends a session; `false` if there was no such session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        dispatch!(self, e => e.delete_session(id_hash).await)
    }

    /// Ends every session of an account (when it is disabled); answers how many there were.
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        dispatch!(self, e => e.delete_user_sessions(user_id).await)
    }

    /// Deletes the sessions past their absolute end (`expires <= now`) and those last seen before
    /// `idle_before`; answers how many.
    pub async fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        dispatch!(self, e => e.delete_expired_sessions(now, idle_before).await)
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

/// Real deletion for the consent purge (see `purge.rs`).
impl Store {
    /// Every resource that is, or in any version was, in the Patient compartment of one of
    /// `patients`, and those Patients themselves, as `(type, id)`, sorted; none of `except_types`.
    pub async fn compartment_members(
        &self,
        patients: &[String],
        except_types: &[String],
    ) -> Result<Vec<(String, String)>> {
        let (patients, except) = (patients.to_vec(), except_types.to_vec());
        timed!(
            self,
            "compartment_members",
            dispatch!(self, e => e.compartment_members(patients, except).await)
        )
    }

    /// Removes every version, index row and compartment row of each of `targets` that exists, in
    /// one transaction, together with the audit records `audit` makes from what was removed
    /// (nothing removed, nothing recorded unless `audit` says otherwise). Answers what was removed.
    /// Safe to run concurrently, in one process or several: a resource is removed, and counted,
    /// by one of them.
    pub async fn purge(
        &self,
        targets: Vec<(String, String)>,
        audit: crate::PurgeAudit,
    ) -> Result<Vec<crate::Purged>> {
        timed!(
            self,
            "purge",
            dispatch!(self, e => e.purge(targets, audit).await)
        )
    }
}

/// The master patient index's enterprise identities (see `mpi.rs`): every write runs in one
/// transaction under the index's lock (shared by every process on a PostgreSQL database).
impl Store {
    async fn mpi(&self, op: crate::mpi::Op) -> Result<crate::mpi::Out> {
        dispatch!(self, e => e.mpi(op).await)
    }

    /// Links one Patient: reads its current link, its candidates (linked Patients sharing one of
    /// `subject.keys`, from buckets of at most `max_bucket`) and the operators' decisions about
    /// it, asks `decide`, and stores the link, the Patient's record and keys, its review items (those
    /// it had are replaced) and, if its identity changed, a history entry. `Conflict` if `decide`
    /// chose an identity an operator's decision forbids.
    pub async fn mpi_link(
        &self,
        subject: crate::MpiSubject,
        max_bucket: usize,
        now: i64,
        decide: crate::Decide,
    ) -> Result<crate::LinkOutcome> {
        let op = crate::mpi::Op::Link {
            subject,
            max_bucket,
            now,
            decide,
        };
        match timed!(self, "mpi_link", self.mpi(op).await)? {
            crate::mpi::Out::Linked(out) => Ok(out),
            other => Err(unexpected(other)),
        }
    }

    /// Takes a deleted Patient out of the index (its link, keys and review items; the operators'
    /// decisions about it stay). `false` if it was not linked.
    pub async fn mpi_remove(&self, patient_id: &str, actor: &str, now: i64) -> Result<bool> {
        let op = crate::mpi::Op::Remove {
            patient_id: patient_id.to_string(),
            actor: actor.to_string(),
            now,
        };
        match self.mpi(op).await? {
            crate::mpi::Out::Done(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// An operator's decision that `a` and `b` are one person: kept as a hard constraint, and
    /// `b`'s identity (all of it) joins `a`'s. `true` if identities were merged; `Conflict` if
    /// either is not linked or an earlier decision says a member of one is not one of the other.
    pub async fn mpi_merge(
        &self,
        a: &str,
        b: &str,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let op = crate::mpi::Op::Merge {
            a: a.to_string(),
            b: b.to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            now,
        };
        match self.mpi(op).await? {
            crate::mpi::Out::Done(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// An operator's decision that `a` and `b` are not one person: kept as a hard constraint; if
    /// they share an identity, `split` regroups its members (checked against every decision among
    /// them) and each that moves is recorded. `true` if the identity was split; `Conflict` if
    /// either is not linked or the decisions cannot all hold.
    pub async fn mpi_unlink(
        &self,
        a: &str,
        b: &str,
        actor: &str,
        reason: &str,
        now: i64,
        split: crate::Split,
    ) -> Result<bool> {
        let op = crate::mpi::Op::Unlink {
            a: a.to_string(),
            b: b.to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            now,
            split,
        };
        match self.mpi(op).await? {
            crate::mpi::Out::Done(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// The ids of every Patient linked to the same enterprise identity as `patient_id`, itself
    /// included, sorted; just `[patient_id]` if it is not linked.
    pub async fn mpi_same_person(&self, patient_id: &str) -> Result<Vec<String>> {
        match timed!(
            self,
            "mpi_same_person",
            self.mpi(crate::mpi::Op::SamePerson(patient_id.to_string()))
                .await
        )? {
            crate::mpi::Out::Ids(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }

    /// For each of `patient_ids` that is linked, every Patient linked to the same enterprise
    /// identity (itself included), as `(asked, linked)` pairs, in no particular order; an unlinked
    /// Patient has no pair. One query per 500 ids (the consent state's map of persons).
    pub async fn mpi_persons_of(&self, patient_ids: &[String]) -> Result<Vec<(String, String)>> {
        match timed!(
            self,
            "mpi_persons_of",
            self.mpi(crate::mpi::Op::PersonsOf(patient_ids.to_vec()))
                .await
        )? {
            crate::mpi::Out::Pairs(pairs) => Ok(pairs),
            other => Err(unexpected(other)),
        }
    }

    /// The link history's greatest sequence number (0 while it is empty): it grows whenever any
    /// Patient's identity changes (a link, a merge, an unlink, a removal, a rebuild), so a reader
    /// that remembers it knows cheaply whether identities changed since.
    pub async fn mpi_history_head(&self) -> Result<i64> {
        match self.mpi(crate::mpi::Op::HistoryHead).await? {
            crate::mpi::Out::Head(head) => Ok(head),
            other => Err(unexpected(other)),
        }
    }

    /// The enterprise identity `patient_id` is linked to, if any.
    pub async fn mpi_identity(&self, patient_id: &str) -> Result<Option<String>> {
        match self
            .mpi(crate::mpi::Op::IdentityOf(patient_id.to_string()))
            .await?
        {
            crate::mpi::Out::Identity(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// The review queue, best score first (at most `limit`).
    pub async fn mpi_reviews(&self, limit: usize) -> Result<Vec<crate::MpiReview>> {
        match self.mpi(crate::mpi::Op::Reviews { limit }).await? {
            crate::mpi::Out::Reviews(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// The link history, newest first (at most `limit`), of one Patient and/or one identity (into
    /// or out of it), or all of it.
    pub async fn mpi_history(
        &self,
        patient_id: Option<&str>,
        identity_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::MpiHistoryEntry>> {
        let op = crate::mpi::Op::History {
            patient_id: patient_id.map(str::to_string),
            identity_id: identity_id.map(str::to_string),
            limit,
        };
        match self.mpi(op).await? {
            crate::mpi::Out::History(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    /// The model the linking scores with (JSON; `None`: the exchange's built-in one) and its version.
    pub async fn mpi_model(&self) -> Result<(Option<String>, i64)> {
        match self.mpi(crate::mpi::Op::Model).await? {
            crate::mpi::Out::Model(m, v) => Ok((m, v)),
            other => Err(unexpected(other)),
        }
    }

    /// Every link and every operator decision, for a batch rebuild.
    pub async fn mpi_snapshot(&self) -> Result<crate::MpiSnapshot> {
        match self.mpi(crate::mpi::Op::Snapshot).await? {
            crate::mpi::Out::Snapshot(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces every link, key and review item with a batch rebuild's in one transaction (the
    /// operators' decisions stay), records each Patient whose identity changed, and stores the
    /// rebuild's model if it has one.
    pub async fn mpi_apply_rebuild(&self, rebuild: crate::MpiRebuild, now: i64) -> Result<()> {
        match self.mpi(crate::mpi::Op::Rebuild { rebuild, now }).await? {
            crate::mpi::Out::Done(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(out: crate::mpi::Out) -> crate::StoreError {
    crate::StoreError::Database(format!("unexpected patient index answer {out:?}"))
}

/// Runs a `crate::mail` function on the engine: on SQLite on the writer connection (`write`) or a
/// reader, on PostgreSQL on a pooled connection (each statement commits alone).
macro_rules! mail {
    ($self:ident, $write:literal, |$e:ident| $body:expr) => {
        match *$self {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref s) => {
                if $write {
                    s.write(move |$e| crate::exec::block_ready($body)).await
                } else {
                    s.read(move |$e| crate::exec::block_ready($body)).await
                }
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(ref p) => {
                let client = p.client().await?;
                let $e = &mut crate::postgres::PgExec { client: &client };
                $body.await
            }
        }
    };
}

/// Direct secure messaging (`crate::mail`): addresses, certificates, trust anchors, mailboxes and
/// the outbound queue. Times are milliseconds since the Unix epoch.
impl Store {
    /// Issues a Direct address (kept lower case) to a practitioner or organization;
    /// `StoreError::Conflict` if it was ever issued, revoked ones included.
    pub async fn add_direct_address(
        &self,
        address: &str,
        owner_kind: &str,
        owner_id: &str,
        display_name: &str,
        created: i64,
    ) -> Result<crate::DirectAddress> {
        let (a, k, o, n) = (
            address.to_string(),
            owner_kind.to_string(),
            owner_id.to_string(),
            display_name.to_string(),
        );
        mail!(self, true, |e| crate::mail::add_address(
            e, &a, &k, &o, &n, created
        ))
    }

    /// The address (active or revoked), or `None`.
    pub async fn direct_address(&self, address: &str) -> Result<Option<crate::DirectAddress>> {
        let a = address.to_string();
        timed!(
            self,
            "direct_address",
            mail!(self, false, |e| crate::mail::address(e, &a))
        )
    }

    /// Every address ever issued, oldest first.
    pub async fn direct_addresses(&self) -> Result<Vec<crate::DirectAddress>> {
        mail!(self, false, |e| crate::mail::addresses(e))
    }

    /// Revokes an active address and every certificate bound to it; `false` if there was none.
    pub async fn revoke_direct_address(&self, address: &str, at: i64) -> Result<bool> {
        let a = address.to_string();
        mail!(self, true, |e| crate::mail::revoke_address(e, &a, at))
    }

    /// Stores a certificate (ours with its sealed key, or an outside party's).
    pub async fn add_direct_certificate(&self, cert: crate::DirectCertificate) -> Result<()> {
        mail!(self, true, |e| crate::mail::add_certificate(e, &cert))
    }

    /// The unrevoked certificates for an address or a domain, newest first.
    pub async fn direct_certificates(
        &self,
        subject: &str,
    ) -> Result<Vec<crate::DirectCertificate>> {
        let s = subject.to_string();
        timed!(
            self,
            "direct_certificates",
            mail!(self, false, |e| crate::mail::certificates(e, &s))
        )
    }

    /// The revoked certificates of an issuer, for its CRL.
    pub async fn revoked_direct_certificates(
        &self,
        issuer: &str,
    ) -> Result<Vec<crate::DirectCertificate>> {
        let i = issuer.to_string();
        mail!(self, false, |e| crate::mail::revoked_certificates(e, &i))
    }

    /// Adds a trust anchor to a local domain; `false` if it was there already.
    pub async fn add_trust_anchor(&self, anchor: crate::TrustAnchor) -> Result<bool> {
        mail!(self, true, |e| crate::mail::add_anchor(e, &anchor))
    }

    /// Removes a trust anchor; `false` if there was no such anchor.
    pub async fn remove_trust_anchor(
        &self,
        domain: &str,
        direction: crate::AnchorDirection,
        fingerprint: &str,
    ) -> Result<bool> {
        let (d, f) = (domain.to_string(), fingerprint.to_string());
        mail!(self, true, |e| crate::mail::remove_anchor(
            e, &d, direction, &f
        ))
    }

    /// A local domain's trust anchors for one direction, oldest first.
    pub async fn trust_anchors(
        &self,
        domain: &str,
        direction: crate::AnchorDirection,
    ) -> Result<Vec<crate::TrustAnchor>> {
        let d = domain.to_string();
        timed!(
            self,
            "trust_anchors",
            mail!(self, false, |e| crate::mail::anchors(e, &d, direction))
        )
    }

    /// Puts a message in a mailbox.
    pub async fn deliver_mail(&self, message: crate::MailMessage) -> Result<()> {
        timed!(
            self,
            "deliver_mail",
            mail!(self, true, |e| crate::mail::deliver(e, &message))
        )
    }

    /// The newest `limit` entries of a mailbox, newest first.
    pub async fn mailbox(&self, mailbox: &str, limit: usize) -> Result<Vec<crate::MailMessage>> {
        let m = mailbox.to_string();
        mail!(self, false, |e| crate::mail::mailbox(e, &m, limit))
    }

    /// One mailbox entry by id, or `None`.
    pub async fn mail_message(&self, id: &str) -> Result<Option<crate::MailMessage>> {
        let i = id.to_string();
        mail!(self, false, |e| crate::mail::message(e, &i))
    }

    /// Marks a mailbox entry read (the first time only); `true` if this call marked it.
    pub async fn mark_mail_read(&self, id: &str, at: i64) -> Result<bool> {
        let i = id.to_string();
        mail!(self, true, |e| crate::mail::mark_read(e, &i, at))
    }

    /// Binds a portal account to a Direct address (the web inbox and SMTP submission let it read
    /// and send as that address); `true` if it was not bound already. `StoreError::Unsupported`
    /// if the address was never issued or the account does not exist.
    pub async fn bind_direct_address(&self, address: &str, user_id: &str, at: i64) -> Result<bool> {
        let (a, u) = (address.to_string(), user_id.to_string());
        mail!(self, true, |e| crate::mail::bind_address(e, &a, &u, at))
    }

    /// Removes a binding; `true` if there was one.
    pub async fn unbind_direct_address(&self, address: &str, user_id: &str) -> Result<bool> {
        let (a, u) = (address.to_string(), user_id.to_string());
        mail!(self, true, |e| crate::mail::unbind_address(e, &a, &u))
    }

    /// The Direct addresses bound to a portal account (active and revoked), in address order.
    /// The one answer to "which addresses may this user read and send as" is
    /// `server::smtp::hisp::user_addresses`, which keeps the active ones.
    pub async fn user_direct_addresses(&self, user_id: &str) -> Result<Vec<crate::DirectAddress>> {
        let u = user_id.to_string();
        timed!(
            self,
            "user_direct_addresses",
            mail!(self, false, |e| crate::mail::user_addresses(e, &u))
        )
    }

    /// The portal accounts bound to a Direct address, in id order.
    pub async fn direct_address_users(&self, address: &str) -> Result<Vec<String>> {
        let a = address.to_string();
        mail!(self, false, |e| crate::mail::address_users(e, &a))
    }

    /// A page of a mailbox, newest first: at most `limit` entries older than `before` (the
    /// `(received, id)` of the previous page's last entry), without their bytes (`raw` empty).
    pub async fn mailbox_page(
        &self,
        mailbox: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<crate::MailMessage>> {
        let m = mailbox.to_string();
        timed!(
            self,
            "mailbox_page",
            mail!(self, false, |e| crate::mail::mailbox_page(
                e, &m, before, limit
            ))
        )
    }

    /// How many entries of a mailbox are unread.
    pub async fn unread_mail(&self, mailbox: &str) -> Result<i64> {
        let m = mailbox.to_string();
        mail!(self, false, |e| crate::mail::unread_count(e, &m))
    }

    /// Whether `address` has received a message and sent one its recipient confirmed.
    pub async fn direct_exchanged(&self, address: &str) -> Result<bool> {
        let a = address.to_string();
        mail!(self, false, |e| crate::mail::exchanged(e, &a))
    }

    /// A page of the messages `sender` sent, newest first: the outbound rows (one per recipient,
    /// `content` empty) of at most `limit` messages older than `before` (the `(created,
    /// message_id)` of the previous page's last message), a message's rows together.
    pub async fn sent_page(
        &self,
        sender: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<crate::Outbound>> {
        let s = sender.to_string();
        timed!(
            self,
            "sent_page",
            mail!(self, false, |e| crate::mail::sent_page(
                e, &s, before, limit
            ))
        )
    }

    /// Claims up to `limit` due rows for `owner` until `lease_until` (one more attempt each).
    /// Concurrent claims, in any number of processes, take disjoint rows.
    pub async fn claim_outbound(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<crate::Outbound>> {
        let o = owner.to_string();
        timed!(
            self,
            "claim_outbound",
            mail!(self, true, |e| crate::mail::claim(
                e,
                &o,
                now,
                lease_until,
                limit
            ))
        )
    }

    /// Records what became of a claimed row; `false` if `owner` no longer held it.
    pub async fn settle_outbound(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        outcome: crate::Settle,
    ) -> Result<bool> {
        let (i, o) = (id.to_string(), owner.to_string());
        timed!(
            self,
            "settle_outbound",
            mail!(self, true, |e| crate::mail::settle(
                e, &i, &o, now, &outcome
            ))
        )
    }

    /// Records a disposition for the message `message_id` to `recipient` (never moving its status
    /// back); answers the row if it changed.
    pub async fn outbound_disposition(
        &self,
        message_id: &str,
        recipient: &str,
        status: crate::DeliveryStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<Option<crate::Outbound>> {
        let (m, r, er) = (
            message_id.to_string(),
            recipient.to_string(),
            error.map(str::to_string),
        );
        mail!(self, true, |e| crate::mail::disposition(
            e,
            &m,
            &r,
            status,
            er.as_deref(),
            now
        ))
    }

    /// Marks `failed` (and answers) up to `limit` messages sent at or before `sent_before` whose
    /// processed notification never came; each is answered to exactly one caller.
    pub async fn expire_unconfirmed_outbound(
        &self,
        sent_before: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<crate::Outbound>> {
        mail!(self, true, |e| crate::mail::expire_unconfirmed(
            e,
            sent_before,
            now,
            limit
        ))
    }

    /// One outbound row, or `None`.
    pub async fn outbound(&self, id: &str) -> Result<Option<crate::Outbound>> {
        let i = id.to_string();
        mail!(self, false, |e| crate::mail::outbound(e, &i))
    }

    /// The outbound rows (one per recipient) of the message with this Message-ID.
    pub async fn outbound_by_message(&self, message_id: &str) -> Result<Vec<crate::Outbound>> {
        let m = message_id.to_string();
        mail!(self, false, |e| crate::mail::outbound_by_message(e, &m))
    }
}

/// The Direct writes that must land together or not at all.
impl Store {
    /// Queues outbound rows (status `queued`, due at their `next_attempt`), all or none.
    pub async fn enqueue_outbound(&self, items: Vec<crate::Outbound>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        timed!(
            self,
            "enqueue_outbound",
            in_transaction!(self, |e| crate::mail::enqueue(e, &items))
        )
    }

    /// Puts a received message in its recipients' mailboxes and queues the notifications that
    /// answer it, in one transaction: a crash never leaves a delivered message without its
    /// processed notification, nor a notification for a message nobody has.
    pub async fn deliver_mail_and_queue(
        &self,
        messages: Vec<crate::MailMessage>,
        notifications: Vec<crate::Outbound>,
    ) -> Result<()> {
        timed!(
            self,
            "deliver_mail",
            in_transaction!(self, |e| crate::mail::deliver_and_queue(
                e,
                &messages,
                &notifications
            ))
        )
    }
}

/// The EHR compatibility catalog and the compliance roster (`crate::compliance`, migration 0011).
/// Times are milliseconds since the Unix epoch.
impl Store {
    /// Adds a catalog product; `StoreError::Conflict` if its id or its key (the same vendor,
    /// product and version) is taken.
    pub async fn add_ehr_product(&self, product: crate::EhrProduct) -> Result<()> {
        mail!(self, true, |e| crate::compliance::add_product(e, &product))
    }

    /// Adds or updates (by key) every product, in one transaction; answers (added, updated).
    pub async fn import_ehr_products(
        &self,
        products: Vec<crate::EhrProduct>,
    ) -> Result<(usize, usize)> {
        in_transaction!(self, |e| crate::compliance::import_products(e, &products))
    }

    /// Every catalog product, by vendor, product and version.
    pub async fn ehr_products(&self) -> Result<Vec<crate::EhrProduct>> {
        timed!(
            self,
            "ehr_products",
            mail!(self, false, |e| crate::compliance::products(e))
        )
    }

    /// Sets a product's status; `false` if there is no such product.
    pub async fn set_ehr_product_status(
        &self,
        product_id: &str,
        status: &str,
        now: i64,
    ) -> Result<bool> {
        let (i, s) = (product_id.to_string(), status.to_string());
        mail!(self, true, |e| crate::compliance::set_product_status(
            e, &i, &s, now
        ))
    }

    /// Records a provider's request to add or review a product.
    pub async fn add_ehr_request(&self, request: crate::EhrRequest) -> Result<()> {
        mail!(self, true, |e| crate::compliance::add_request(e, &request))
    }

    /// Every request, oldest first.
    pub async fn ehr_requests(&self) -> Result<Vec<crate::EhrRequest>> {
        mail!(self, false, |e| crate::compliance::requests(e))
    }

    /// Stores a roster import and every licensee it lists in one transaction (nothing on an
    /// error); `StoreError::Conflict` if the import id is taken.
    pub async fn import_roster(
        &self,
        import: crate::RosterImport,
        licensees: Vec<crate::StoredLicensee>,
    ) -> Result<()> {
        timed!(
            self,
            "import_roster",
            in_transaction!(self, |e| crate::compliance::import_roster(
                e, &import, &licensees
            ))
        )
    }

    /// Every roster import, oldest first.
    pub async fn roster_imports(&self) -> Result<Vec<crate::RosterImport>> {
        mail!(self, false, |e| crate::compliance::roster_imports(e))
    }

    /// The current roster: the licensees of each state's latest import, in file order.
    pub async fn licensees(&self) -> Result<Vec<crate::StoredLicensee>> {
        timed!(
            self,
            "licensees",
            mail!(self, false, |e| crate::compliance::licensees(e))
        )
    }

    /// The current roster's licensees holding this licence number (as kept: upper case, letters
    /// and digits).
    pub async fn licensees_by_number(&self, number: &str) -> Result<Vec<crate::StoredLicensee>> {
        let n = number.to_string();
        timed!(
            self,
            "licensees_by_number",
            mail!(self, false, |e| crate::compliance::licensees_by_number(
                e, &n
            ))
        )
    }

    /// Records (or replaces) the operator's decision on whom a licensee is; `false` if there is
    /// no such licensee.
    pub async fn decide_licensee_match(&self, decision: crate::MatchDecision) -> Result<bool> {
        mail!(self, true, |e| crate::compliance::decide_match(
            e, &decision
        ))
    }

    /// Every match decision, oldest first.
    pub async fn licensee_match_decisions(&self) -> Result<Vec<crate::MatchDecision>> {
        mail!(self, false, |e| crate::compliance::match_decisions(e))
    }

    /// Records an exemption; `false` if there is no such licensee, `StoreError::Conflict` if it
    /// is already recorded.
    pub async fn add_licensee_exemption(
        &self,
        exemption: crate::LicenseeExemption,
    ) -> Result<bool> {
        mail!(self, true, |e| crate::compliance::add_exemption(
            e, &exemption
        ))
    }

    /// Removes an exemption; `false` if it was not recorded.
    pub async fn remove_licensee_exemption(
        &self,
        licence: &crate::LicenceKey,
        exemption: &str,
    ) -> Result<bool> {
        let (k, x) = (licence.clone(), exemption.to_string());
        mail!(self, true, |e| crate::compliance::remove_exemption(
            e, &k, &x
        ))
    }

    /// Every recorded exemption, oldest first.
    pub async fn licensee_exemptions(&self) -> Result<Vec<crate::LicenseeExemption>> {
        mail!(self, false, |e| crate::compliance::exemptions(e))
    }
}

fn unexpected_onboarding(out: crate::onboarding::TxOut) -> crate::StoreError {
    crate::StoreError::Database(format!("unexpected onboarding answer {out:?}"))
}

/// Connecting to the exchange (`crate::onboarding`): connection applications, their checklists and
/// changes of path, agreement versions and signatures. Times are milliseconds since the Unix
/// epoch. Whether a step or a signature is allowed is the caller's to decide (`onboard`); the
/// store keeps each once.
impl Store {
    async fn onboarding_tx(&self, op: crate::onboarding::Tx) -> Result<crate::onboarding::TxOut> {
        dispatch!(self, e => e.onboarding_tx(op).await)
    }

    /// Stores an application with its licences (at least one) and its first step,
    /// `application-received` done by `received_by` at `data.received`, in one transaction.
    /// `StoreError::Conflict` if its id is taken.
    pub async fn add_application(
        &self,
        data: crate::ApplicationData,
        received_by: &str,
    ) -> Result<crate::ApplicationRecord> {
        let op = crate::onboarding::Tx::AddApplication {
            data: Box::new(data),
            received_by: received_by.to_string(),
        };
        match timed!(self, "add_application", self.onboarding_tx(op).await)? {
            crate::onboarding::TxOut::Added(record) => Ok(*record),
            other => Err(unexpected_onboarding(other)),
        }
    }

    /// Sets the participant and/or the portal account an application created (a `None` keeps
    /// what is stored). `false` if there is no such application.
    pub async fn link_application(
        &self,
        application_id: &str,
        participant_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<bool> {
        let (a, p, u) = (
            application_id.to_string(),
            participant_id.map(str::to_string),
            user_id.map(str::to_string),
        );
        mail!(self, true, |e| crate::onboarding::link_application(
            e,
            &a,
            p.as_deref(),
            u.as_deref()
        ))
    }

    /// Records the operator's decision about an application without a participant and, when it
    /// names one, makes that its participant; and, when `user` is given, makes the participant
    /// that portal account's (if it has none): all in one transaction. `StoreError::Conflict` if
    /// the application was decided already, has a participant, or does not exist.
    pub async fn decide_application(
        &self,
        application_id: &str,
        decision: crate::DecisionRecord,
        user: Option<&str>,
    ) -> Result<()> {
        let application_id = application_id.to_string();
        let user = user.map(str::to_string);
        in_transaction!(self, |e| async {
            crate::onboarding::decide_application(e, &application_id, &decision).await?;
            if let (Some(user), Some(participant)) = (&user, &decision.participant_id) {
                crate::accounts::join_participant(e, user, participant).await?;
            }
            Ok(())
        })
    }

    /// One application with its licences, steps and changes of path, or `None`.
    pub async fn application(
        &self,
        application_id: &str,
    ) -> Result<Option<crate::ApplicationRecord>> {
        let which = crate::onboarding::Which::One(application_id.to_string());
        let found = mail!(self, false, |e| crate::onboarding::applications(e, &which))?;
        Ok(found.into_iter().next())
    }

    /// Every application, oldest first (by received time, then id).
    pub async fn applications(&self) -> Result<Vec<crate::ApplicationRecord>> {
        let which = crate::onboarding::Which::All;
        timed!(
            self,
            "applications",
            mail!(self, false, |e| crate::onboarding::applications(e, &which))
        )
    }

    /// The applications whose portal account is `user_id`, oldest first.
    pub async fn applications_of_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<crate::ApplicationRecord>> {
        let which = crate::onboarding::Which::OfUser(user_id.to_string());
        mail!(self, false, |e| crate::onboarding::applications(e, &which))
    }

    /// The applications that created participant `participant_id`, oldest first.
    pub async fn applications_of_participant(
        &self,
        participant_id: &str,
    ) -> Result<Vec<crate::ApplicationRecord>> {
        let which = crate::onboarding::Which::OfParticipant(participant_id.to_string());
        mail!(self, false, |e| crate::onboarding::applications(e, &which))
    }

    /// The applications with NPI `npi` or naming one of `licences` (the same type, number and
    /// state), oldest first: the candidates for `onboard::application::duplicates`.
    pub async fn applications_like(
        &self,
        npi: &str,
        licences: &[crate::LicenceRecord],
    ) -> Result<Vec<crate::ApplicationRecord>> {
        let which = crate::onboarding::Which::Like(npi.to_string(), licences.to_vec());
        mail!(self, false, |e| crate::onboarding::applications(e, &which))
    }

    /// Records a checklist step done, only while the application is on `path`.
    /// `StoreError::Conflict` if the step was already done, the application is on another path,
    /// or there is no such application.
    pub async fn record_step(
        &self,
        application_id: &str,
        path: &str,
        step: crate::StepRecord,
    ) -> Result<()> {
        let (a, p) = (application_id.to_string(), path.to_string());
        mail!(self, true, |e| crate::onboarding::record_step(
            e, &a, &p, &step
        ))
    }

    /// Moves an application from path `from` to `to` and records the change (numbered per
    /// application) with who, when and why, in one transaction. `StoreError::Conflict` if the
    /// application is not on `from` (or does not exist).
    pub async fn change_path(
        &self,
        application_id: &str,
        from: &str,
        to: &str,
        by: &str,
        at: i64,
        reason: &str,
    ) -> Result<crate::PathChangeRecord> {
        let op = crate::onboarding::Tx::ChangePath {
            application_id: application_id.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            by: by.to_string(),
            at,
            reason: reason.to_string(),
        };
        match self.onboarding_tx(op).await? {
            crate::onboarding::TxOut::Changed(change) => Ok(change),
            other => Err(unexpected_onboarding(other)),
        }
    }

    /// What the compliance report needs of every application, oldest first (see
    /// [`crate::OnboardingFacts`]; its shape only ever grows).
    pub async fn onboarding_facts(&self) -> Result<Vec<crate::OnboardingFacts>> {
        timed!(
            self,
            "onboarding_facts",
            mail!(self, false, |e| crate::onboarding::facts(e))
        )
    }

    /// Publishes an agreement version (its text and digest as given). `StoreError::Conflict` if
    /// that kind and version exist.
    pub async fn publish_agreement(
        &self,
        document: crate::AgreementDocument,
    ) -> Result<crate::AgreementDocument> {
        mail!(self, true, |e| crate::onboarding::publish_agreement(
            e, document
        ))
    }

    /// Every version of every agreement, by kind, then version.
    pub async fn agreements(&self) -> Result<Vec<crate::AgreementDocument>> {
        mail!(self, false, |e| crate::onboarding::agreements(e))
    }

    /// One agreement version, or `None`.
    pub async fn agreement(
        &self,
        kind: &str,
        version: i64,
    ) -> Result<Option<crate::AgreementDocument>> {
        let k = kind.to_string();
        mail!(self, false, |e| crate::onboarding::agreement(
            e, &k, version
        ))
    }

    /// Stores a signature (with the consent to sign electronically; one without it is refused).
    /// `StoreError::Conflict` if its id is taken.
    pub async fn add_signature(
        &self,
        signature: crate::AgreementSignature,
    ) -> Result<crate::AgreementSignature> {
        mail!(self, true, |e| crate::onboarding::add_signature(
            e, signature
        ))
    }

    /// The signatures for one application, or every signature with `None`; oldest first.
    pub async fn signatures(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<crate::AgreementSignature>> {
        let a = application_id.map(str::to_string);
        mail!(self, false, |e| crate::onboarding::signatures(
            e,
            a.as_deref()
        ))
    }

    /// One signature, or `None`.
    pub async fn signature(&self, signature_id: &str) -> Result<Option<crate::AgreementSignature>> {
        let s = signature_id.to_string();
        mail!(self, false, |e| crate::onboarding::signature(e, &s))
    }
}
