//! The PostgreSQL engine: resources as JSONB, a connection pool (deadpool), the shared query builder
//! in [`Dialect::Postgres`], and a write path that is safe across processes.
//!
//! Concurrency: a batch is one transaction (READ COMMITTED). It first locks the rows of every
//! existing resource it touches (`SELECT ... FOR UPDATE`, in rid order so that two batches never
//! wait on each other in a cycle; a deadlock that remains, between batches creating the same new
//! ids in opposite orders, is reported as a conflict), checks every expectation against what it locked, and creates
//! new resources with `INSERT ... ON CONFLICT DO NOTHING`: a resource created by someone else in
//! the meantime makes the batch fail with [`StoreError::Conflict`]. Two writers of one resource,
//! in one process or in two, therefore never both succeed: the second waits for the first's row
//! lock, then sees the version the first wrote.
//!
//! Audit records are appended under an advisory lock of their own (taken after the commit lock by a
//! batch that carries records, and alone by the group-commit task), which makes the chain linear
//! across processes: each append reads the head and extends it before the next may.
//!
//! Migrations run in one transaction under an advisory lock keyed by the schema, so processes that
//! start at once apply them once.
//!
//! The URL is a libpq-style `postgres://` URL (tokio-postgres syntax, including `options=-c
//! search_path=...`); one extra parameter, `pool_size=N`, sets the pool's size (default 16).

use std::collections::HashMap;
use std::str::FromStr;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use fhir::search::{IndexEntry, IndexValue, Query, Total};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls, Row};

use crate::accounts::{self, NewUser, Session, User, UserStatus};
use crate::audit::{self, Appender, RawRecord};
use crate::clients::{self, Client, ClientStatus, NewClient};
use crate::exec::{Dialect, Exec, Val};
use crate::relationships::{self, RelationshipBasis};
use crate::{
    migrate, query, Appended, AuditHash, AuditQuery, CompartmentRequest, Current, HistoryPage,
    HistoryRequest, NewAuditRecord, Result, SearchOptions, SearchPage, StoreError, Stored, Write,
    WriteOp,
};

/// Connections in the pool unless the URL says `pool_size=N`.
const DEFAULT_POOL_SIZE: usize = 16;
/// Prepared statements kept per connection before the cache is emptied (search SQL varies with
/// the query's shape, so the cache would otherwise grow without bound).
const MAX_CACHED_STATEMENTS: usize = 512;
/// The first key of the migration advisory lock ("nutm"); the second is a hash of the schema.
const LOCK_NAMESPACE: i32 = 0x6e75_746d;
/// The first key of the commit advisory lock ("nutc"); the second is a hash of the schema.
const COMMIT_NAMESPACE: i32 = 0x6e75_7463;
/// The first key of the audit advisory lock ("nuta"); the second is a hash of the schema.
const AUDIT_NAMESPACE: i32 = 0x6e75_7461;

/// The PostgreSQL engine. Cheap to clone (shares its pool).
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    audit: Appender,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("pool_size", &self.pool.status().max_size)
            .finish()
    }
}

pub(crate) fn db(error: tokio_postgres::Error) -> StoreError {
    // The server's message names tables and constraints, never values.
    match error.as_db_error() {
        Some(e) => StoreError::Database(format!("{} ({})", e.message(), e.code().code())),
        None => StoreError::Database(error.to_string()),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Database(format!("connection pool: {error}"))
}

/// Splits our own `pool_size` parameter off the URL.
fn split_url(url: &str) -> Result<(String, usize)> {
    let Some((base, params)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_POOL_SIZE));
    };
    let mut size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size", value)) => {
                size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        StoreError::Open(format!(
                            "pool_size must be a positive number, not '{value}'"
                        ))
                    })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, size))
}

impl Postgres {
    /// Connects, and creates or migrates the schema (in the first schema of the `search_path`).
    pub(crate) async fn open(url: &str) -> Result<Postgres> {
        let (url, size) = split_url(url)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {e}")))?;
        // Statements are prepared once per connection and reused, and PostgreSQL would soon plan
        // them once for all values ("generic plans"): a search by patient and a common code would
        // then be driven by the code. Plan every execution for its values instead.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_string(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Open(format!("connection pool: {e}")))?;
        let writer = pool.clone();
        let audit = Appender::spawn(move |records| {
            let pool = writer.clone();
            async move { append_alone(&pool, &records).await }
        });
        let store = Postgres { pool, audit };
        store.migrate().await.map_err(|e| match e {
            StoreError::Open(m) => StoreError::Open(m),
            other => StoreError::Open(other.to_string()),
        })?;
        Ok(store)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        let client = self.pool.get().await.map_err(pool_error)?;
        if client.statement_cache.size() > MAX_CACHED_STATEMENTS {
            client.statement_cache.clear();
        }
        Ok(client)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
            &[&LOCK_NAMESPACE],
        )
        .await
        .map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
        let applied: Vec<(i64, String)> = tx
            .query(
                "SELECT version, checksum FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for migration in migrate::pending(migrate::POSTGRES, &applied)? {
            tx.batch_execute(migration.sql).await.map_err(db)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &migration.checksum()],
            )
            .await
            .map_err(db)?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied postgres migration"
            );
        }
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn health(&self) -> Result<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(db)?;
        Ok(())
    }

    pub(crate) async fn current(&self, keys: &[(String, String)]) -> Result<Vec<Option<Current>>> {
        let client = self.client().await?;
        query::current(&mut PgExec { client: &client }, keys).await
    }

    pub(crate) async fn read_current(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Stored>> {
        let client = self.client().await?;
        query::read(&mut PgExec { client: &client }, resource_type, id).await
    }

    pub(crate) async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Stored>> {
        let client = self.client().await?;
        query::vread(&mut PgExec { client: &client }, resource_type, id, version).await
    }

    pub(crate) async fn search(&self, q: &Query, options: &SearchOptions) -> Result<SearchPage> {
        let mut client = self.client().await?;
        // The page is one statement (with its snapshot bound); a total or includes read more
        // statements that must agree with it, so those run in one read-only snapshot.
        if q.total == Total::None && q.include.is_empty() && q.revinclude.is_empty() {
            return query::search(&mut PgExec { client: &client }, q, options).await;
        }
        let tx = read_tx(&mut client).await?;
        query::search(&mut PgExec { client: &tx }, q, options).await
    }

    pub(crate) async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let mut client = self.client().await?;
        let tx = read_tx(&mut client).await?;
        query::history(&mut PgExec { client: &tx }, request).await
    }

    pub(crate) async fn compartment(&self, request: &CompartmentRequest) -> Result<SearchPage> {
        let client = self.client().await?;
        query::compartment(&mut PgExec { client: &client }, request).await
    }

    /// The plan of the statement that selects a search's page (for tests and BENCHMARKS.md).
    pub(crate) async fn explain(&self, q: &Query, options: &SearchOptions) -> Result<Vec<String>> {
        let client = self.client().await?;
        query::explain(&mut PgExec { client: &client }, q, options).await
    }

    /// Updates the planner's statistics.
    pub(crate) async fn analyze(&self) -> Result<()> {
        let client = self.client().await?;
        client.batch_execute("ANALYZE").await.map_err(db)
    }

    /// Runs one statement in a read-only transaction and returns its rows as text. For tests and
    /// diagnostics only. Read-only as on SQLite, so that no store method changes data past the write
    /// path (the audit log in particular: not even switching its triggers off).
    pub(crate) async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        // A second statement could end the read-only transaction and run outside it.
        if sql.trim_end().trim_end_matches(';').contains(';') {
            return Err(StoreError::Database(
                "query_rows runs one statement".to_string(),
            ));
        }
        let mut client = self.client().await?;
        let tx = read_tx(&mut client).await?;
        let messages = tx.simple_query(sql).await.map_err(db)?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default().to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    pub(crate) async fn commit_with_audit(
        &self,
        writes: Vec<Write>,
        audit: Vec<NewAuditRecord>,
    ) -> Result<Vec<Appended>> {
        if writes.is_empty() {
            return append_alone(&self.pool, &audit).await;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let applied = match commit(&tx, &writes).await {
            Ok(()) => append_audit(&tx, &audit).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(appended) => {
                tx.commit().await.map_err(|e| concurrency(e, &writes))?;
                Ok(appended)
            }
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly to free the row locks now.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    pub(crate) async fn append_audit(&self, records: Vec<NewAuditRecord>) -> Result<Vec<Appended>> {
        self.audit.append(records).await
    }

    pub(crate) async fn compartment_members(
        &self,
        patients: Vec<String>,
        except: Vec<String>,
    ) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        crate::purge::compartment_members(&mut PgExec { client: &client }, &patients, &except).await
    }

    /// One transaction: the rows locked and removed, then the audit records appended under the
    /// audit lock, then the commit.
    pub(crate) async fn purge(
        &self,
        targets: Vec<(String, String)>,
        make_audit: crate::PurgeAudit,
    ) -> Result<Vec<crate::Purged>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let out = async {
            let purged = crate::purge::remove(&mut PgExec { client: &tx }, &targets).await?;
            append_audit(&tx, &make_audit(&purged)).await?;
            Ok::<_, StoreError>(purged)
        }
        .await;
        match out {
            Ok(purged) => {
                tx.commit().await.map_err(db)?;
                Ok(purged)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    pub(crate) async fn audit_raw(&self, after: i64, limit: usize) -> Result<Vec<RawRecord>> {
        let client = self.client().await?;
        audit::raw_records(&mut PgExec { client: &client }, after, limit).await
    }

    pub(crate) async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<RawRecord>> {
        let client = self.client().await?;
        audit::search(&mut PgExec { client: &client }, query).await
    }

    pub(crate) async fn audit_seq_of_hash(&self, hash: AuditHash) -> Result<Option<i64>> {
        let client = self.client().await?;
        audit::seq_of_hash(&mut PgExec { client: &client }, &hash).await
    }

    pub(crate) async fn register_client(&self, new: NewClient) -> Result<Client> {
        let client = self.client().await?;
        clients::register(&mut PgExec { client: &client }, new).await
    }

    pub(crate) async fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        let client = self.client().await?;
        clients::client(&mut PgExec { client: &client }, client_id).await
    }

    pub(crate) async fn clients(&self) -> Result<Vec<Client>> {
        let client = self.client().await?;
        clients::clients(&mut PgExec { client: &client }).await
    }

    pub(crate) async fn set_client_status(
        &self,
        client_id: &str,
        status: ClientStatus,
    ) -> Result<bool> {
        let client = self.client().await?;
        clients::set_status(&mut PgExec { client: &client }, client_id, status).await
    }

    /// Each statement commits alone (autocommit): the insert's primary key decides between
    /// concurrent callers, in this process or another.
    pub(crate) async fn remember_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        let client = self.client().await?;
        clients::remember_jti(
            &mut PgExec { client: &client },
            client_id,
            jti,
            expires_at,
            now,
        )
        .await
    }

    pub(crate) async fn token_key(&self) -> Result<Vec<u8>> {
        let client = self.client().await?;
        clients::token_key(&mut PgExec { client: &client }).await
    }

    pub(crate) async fn add_user(&self, new: NewUser) -> Result<User> {
        let client = self.client().await?;
        accounts::add_user(&mut PgExec { client: &client }, new).await
    }

    pub(crate) async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        accounts::user_by_login(&mut PgExec { client: &client }, login).await
    }

    pub(crate) async fn user(&self, user_id: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        accounts::user(&mut PgExec { client: &client }, user_id).await
    }

    pub(crate) async fn users(&self) -> Result<Vec<User>> {
        let client = self.client().await?;
        accounts::users(&mut PgExec { client: &client }).await
    }

    pub(crate) async fn set_user_status(&self, user_id: &str, status: UserStatus) -> Result<bool> {
        let client = self.client().await?;
        accounts::set_user_status(&mut PgExec { client: &client }, user_id, status).await
    }

    pub(crate) async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        let client = self.client().await?;
        accounts::set_password_hash(&mut PgExec { client: &client }, user_id, hash).await
    }

    pub(crate) async fn record_failed_sign_in(&self, user_id: &str) -> Result<i64> {
        let client = self.client().await?;
        accounts::record_failed_sign_in(&mut PgExec { client: &client }, user_id).await
    }

    pub(crate) async fn reset_failed_sign_ins(&self, user_id: &str) -> Result<bool> {
        let client = self.client().await?;
        accounts::reset_failed_sign_ins(&mut PgExec { client: &client }, user_id).await
    }

    pub(crate) async fn lock_user_until(&self, user_id: &str, until: i64) -> Result<bool> {
        let client = self.client().await?;
        accounts::lock_user_until(&mut PgExec { client: &client }, user_id, until).await
    }

    pub(crate) async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool> {
        let client = self.client().await?;
        accounts::use_totp_step(&mut PgExec { client: &client }, user_id, step).await
    }

    pub(crate) async fn create_session(&self, session: Session) -> Result<Session> {
        let client = self.client().await?;
        accounts::create_session(&mut PgExec { client: &client }, session).await
    }

    pub(crate) async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let client = self.client().await?;
        accounts::session(&mut PgExec { client: &client }, id_hash).await
    }

    pub(crate) async fn touch_session(&self, id_hash: &str, now: i64) -> Result<bool> {
        let client = self.client().await?;
        accounts::touch_session(&mut PgExec { client: &client }, id_hash, now).await
    }

    pub(crate) async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let client = self.client().await?;
        accounts::delete_session(&mut PgExec { client: &client }, id_hash).await
    }

    pub(crate) async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let client = self.client().await?;
        accounts::delete_user_sessions(&mut PgExec { client: &client }, user_id).await
    }

    pub(crate) async fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        let client = self.client().await?;
        accounts::delete_expired_sessions(&mut PgExec { client: &client }, now, idle_before).await
    }

    pub(crate) async fn record_relationships(
        &self,
        participant_id: &str,
        basis: RelationshipBasis,
        patients: &[String],
        recorded: i64,
    ) -> Result<()> {
        let client = self.client().await?;
        relationships::record(
            &mut PgExec { client: &client },
            participant_id,
            basis,
            patients,
            recorded,
        )
        .await
    }

    /// Runs a multi-statement onboarding write in a transaction of its own.
    pub(crate) async fn onboarding_tx(
        &self,
        op: crate::onboarding::Tx,
    ) -> Result<crate::onboarding::TxOut> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        match crate::onboarding::run_tx(&mut PgExec { client: &tx }, op).await {
            Ok(out) => {
                tx.commit().await.map_err(db)?;
                Ok(out)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Runs a patient index operation: a write in a transaction of its own (which takes the
    /// index's advisory lock first), a read on a plain connection.
    pub(crate) async fn mpi(&self, op: crate::mpi::Op) -> Result<crate::mpi::Out> {
        let mut client = self.client().await?;
        if op.writes() {
            let tx = client.transaction().await.map_err(db)?;
            let out = crate::mpi::run(&mut PgExec { client: &tx }, op).await;
            match out {
                Ok(out) => {
                    tx.commit().await.map_err(db)?;
                    Ok(out)
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        } else {
            crate::mpi::run(&mut PgExec { client: &client }, op).await
        }
    }

    pub(crate) async fn relationships(
        &self,
        participant_id: &str,
        patients: &[String],
    ) -> Result<Vec<String>> {
        let client = self.client().await?;
        relationships::related(&mut PgExec { client: &client }, participant_id, patients).await
    }
}

/// Appends audit records in a transaction of their own (the group-commit task's batches).
async fn append_alone(pool: &Pool, records: &[NewAuditRecord]) -> Result<Vec<Appended>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db)?;
    let appended = append_audit(&tx, records).await?;
    tx.commit().await.map_err(db)?;
    Ok(appended)
}

/// Appends audit records after the chain's head inside `tx`. The audit lock, held until `tx` ends,
/// makes the head read here the head when `tx` commits. A batch with writes takes it last (after its
/// row locks and the commit lock), so it is held only for this insert and the commit.
async fn append_audit(
    tx: &deadpool_postgres::Transaction<'_>,
    records: &[NewAuditRecord],
) -> Result<Vec<Appended>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
        &[&AUDIT_NAMESPACE],
    )
    .await
    .map_err(db)?;
    let last = tx
        .query_opt(audit::HEAD_SQL, &[])
        .await
        .map_err(db)?
        .map(|row| Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
        .map_err(db)?;
    let rows = audit::extend(audit::head(last)?, records);
    let insert = tx
        .prepare_cached(
            "INSERT INTO audit_log (seq, recorded, json, prev_hash, hash) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[])",
        )
        .await
        .map_err(db)?;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let recorded: Vec<i64> = rows.iter().map(|r| r.recorded).collect();
    let json: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
    let prev: Vec<String> = rows.iter().map(|r| r.prev_hash.to_hex()).collect();
    let hash: Vec<String> = rows.iter().map(|r| r.hash.to_hex()).collect();
    tx.execute(&insert, &[&seqs, &recorded, &json, &prev, &hash])
        .await
        .map_err(db)?;
    let index = audit::index_rows(&rows, records);
    if !index.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO audit_index (name, value, seq) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])",
            )
            .await
            .map_err(db)?;
        let names: Vec<&str> = index.iter().map(|(n, _, _)| n.as_str()).collect();
        let values: Vec<&str> = index.iter().map(|(_, v, _)| v.as_str()).collect();
        let seqs: Vec<i64> = index.iter().map(|(_, _, s)| *s).collect();
        tx.execute(&insert, &[&names, &values, &seqs])
            .await
            .map_err(db)?;
    }
    Ok(audit::appended(&rows))
}

/// A read-only snapshot. It is never committed: dropping it sends a `ROLLBACK` without waiting for
/// the answer (the connection's next statement queues behind it), which saves a round trip.
async fn read_tx(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)
}

/// Runs shared queries on one connection or transaction.
pub(crate) struct PgExec<'c, C: GenericClient> {
    pub(crate) client: &'c C,
}

impl<C: GenericClient> Exec for PgExec<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>> {
        let statement = self.client.prepare_cached(sql).await.map_err(db)?;
        let types = statement.params();
        if types.len() != args.len() {
            return Err(StoreError::Database(format!(
                "statement has {} parameters, {} given",
                types.len(),
                args.len()
            )));
        }
        let bound = args
            .iter()
            .zip(types)
            .map(|(v, t)| bind(v, t))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&statement, &refs).await.map_err(db)?;
        rows.iter().map(row_values).collect()
    }
}

/// A [`Val`] as the Rust value of the parameter type the server inferred.
fn bind(value: &Val, ty: &Type) -> Result<Box<dyn ToSql + Sync + Send>> {
    let mismatch = || StoreError::Database(format!("cannot bind {value:?} as {ty}"));
    Ok(match (value, ty) {
        (Val::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Val::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (Val::Null, t) if *t == Type::FLOAT8 => Box::new(None::<f64>),
        (Val::Null, _) => Box::new(None::<String>),
        (Val::Int(i), t) if *t == Type::INT8 => Box::new(*i),
        (Val::Int(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(*i).map_err(|_| mismatch())?)
        }
        (Val::Int(i), t) if *t == Type::FLOAT8 => Box::new(*i as f64),
        (Val::Int(i), t) if *t == Type::TEXT || *t == Type::VARCHAR => Box::new(i.to_string()),
        (Val::Real(f), t) if *t == Type::FLOAT8 => Box::new(*f),
        (Val::Real(f), t) if *t == Type::FLOAT4 => Box::new(*f as f32),
        (Val::Real(f), t) if *t == Type::TEXT => Box::new(f.to_string()),
        (Val::Text(s), t)
            if *t == Type::TEXT
                || *t == Type::VARCHAR
                || *t == Type::NAME
                || *t == Type::BPCHAR =>
        {
            Box::new(s.clone())
        }
        (Val::Bytes(b), t) if *t == Type::BYTEA => Box::new(b.clone()),
        (Val::Text(s), t) if *t == Type::INT8 => {
            Box::new(s.parse::<i64>().map_err(|_| mismatch())?)
        }
        (Val::Text(s), t) if *t == Type::FLOAT8 => {
            Box::new(s.parse::<f64>().map_err(|_| mismatch())?)
        }
        _ => return Err(mismatch()),
    })
}

fn row_values(row: &Row) -> Result<Vec<Val>> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let t = column.type_();
        let bad = |e: tokio_postgres::Error| {
            StoreError::Database(format!("column {}: {e}", column.name()))
        };
        let value = if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Val::Int)
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| Val::Int(i64::from(v)))
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| Val::Int(i64::from(v)))
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|v| Val::Int(i64::from(v)))
        } else if *t == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)
                .map_err(bad)?
                .map(Val::Real)
        } else if *t == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)
                .map_err(bad)?
                .map(|v| Val::Real(f64::from(v)))
        } else if *t == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)
                .map_err(bad)?
                .map(Val::Bytes)
        } else if *t == Type::JSONB || *t == Type::JSON {
            row.try_get::<_, Option<serde_json::Value>>(i)
                .map_err(bad)?
                .map(|v| Val::Text(v.to_string()))
        } else {
            row.try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Val::Text)
        };
        out.push(value.unwrap_or(Val::Null));
    }
    Ok(out)
}

fn conflict(write: &Write) -> StoreError {
    StoreError::Conflict {
        resource_type: write.resource_type.clone(),
        id: write.id.clone(),
    }
}

/// Errors that mean "another writer got there first": a deadlock or serialization failure between
/// two batches, or a unique key taken concurrently. Anything else is a database error.
fn concurrency(error: tokio_postgres::Error, writes: &[Write]) -> StoreError {
    let code = error.code();
    let lost = code == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        || code == Some(&SqlState::UNIQUE_VIOLATION);
    match (lost, writes.first()) {
        (true, Some(first)) => conflict(first),
        _ => db(error),
    }
}

type Key = (String, String);

/// The state a batch leaves one resource in.
struct Final<'w> {
    version: i64,
    last_updated: i64,
    deleted: bool,
    /// The last write of the resource in the batch (its index rows are the ones kept).
    write: &'w Write,
}

/// Column arrays for one multi-row insert per index table.
#[derive(Default)]
struct Rows {
    v_rid: Vec<i64>,
    v_version: Vec<i64>,
    v_last_updated: Vec<i64>,
    v_deleted: Vec<i64>,
    v_json: Vec<Option<String>>,
    v_type: Vec<String>,
    s: StringCols,
    t: Cols8,
    tt: Cols8,
    d: RangeCols<i64>,
    n: RangeCols<f64>,
    q: QuantityCols,
    r: ReferenceCols,
    u: UriCols,
    c: (Vec<i64>, Vec<String>),
}

/// rid, n, param, normalized, exact, grp, comp.
type StringCols = (
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
);
/// rid, n, param, low, high, grp, comp (idx_date and idx_number).
type RangeCols<T> = (
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
    Vec<T>,
    Vec<T>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
);
/// rid, n, param, uri, grp, comp.
type UriCols = (
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
    Vec<String>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
);

/// rid, n, param, three optional texts, grp, comp (idx_token and idx_token_type).
type Cols8 = (
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
);

#[derive(Default)]
struct QuantityCols {
    rid: Vec<i64>,
    n: Vec<i64>,
    param: Vec<String>,
    system: Vec<Option<String>>,
    code: Vec<Option<String>>,
    unit: Vec<Option<String>>,
    low: Vec<f64>,
    high: Vec<f64>,
    grp: Vec<Option<i64>>,
    comp: Vec<Option<i64>>,
}

#[derive(Default)]
struct ReferenceCols {
    rid: Vec<i64>,
    n: Vec<i64>,
    param: Vec<String>,
    target_type: Vec<Option<String>>,
    target_id: Vec<Option<String>>,
    url: Vec<Option<String>>,
    version: Vec<Option<String>>,
    grp: Vec<Option<i64>>,
    comp: Vec<Option<i64>>,
}

impl Rows {
    fn index(&mut self, rid: i64, entries: &[IndexEntry]) {
        for (n, entry) in entries.iter().enumerate() {
            let n = n as i64;
            let (grp, comp) = match entry.composite {
                Some(part) => (Some(i64::from(part.group)), Some(i64::from(part.component))),
                None => (None, None),
            };
            let p = entry.param.to_string();
            match &entry.value {
                IndexValue::String { normalized, exact } => {
                    let s = &mut self.s;
                    s.0.push(rid);
                    s.1.push(n);
                    s.2.push(p);
                    s.3.push(normalized.clone());
                    s.4.push(exact.clone());
                    s.5.push(grp);
                    s.6.push(comp);
                }
                IndexValue::Token(token) => {
                    let t = &mut self.t;
                    t.0.push(rid);
                    t.1.push(n);
                    t.2.push(p);
                    t.3.push(token.system.clone());
                    t.4.push(token.code.clone());
                    t.5.push(token.text.clone());
                    t.6.push(grp);
                    t.7.push(comp);
                }
                IndexValue::IdentifierOfType {
                    type_system,
                    type_code,
                    value,
                } => {
                    let t = &mut self.tt;
                    t.0.push(rid);
                    t.1.push(n);
                    t.2.push(p);
                    t.3.push(type_system.clone());
                    t.4.push(Some(type_code.clone()));
                    t.5.push(Some(value.clone()));
                    t.6.push(grp);
                    t.7.push(comp);
                }
                IndexValue::Date { low, high } => {
                    let d = &mut self.d;
                    d.0.push(rid);
                    d.1.push(n);
                    d.2.push(p);
                    d.3.push(*low);
                    d.4.push(*high);
                    d.5.push(grp);
                    d.6.push(comp);
                }
                IndexValue::Number { low, high } => {
                    let d = &mut self.n;
                    d.0.push(rid);
                    d.1.push(n);
                    d.2.push(p);
                    d.3.push(*low);
                    d.4.push(*high);
                    d.5.push(grp);
                    d.6.push(comp);
                }
                IndexValue::Quantity {
                    system,
                    code,
                    unit,
                    low,
                    high,
                } => {
                    let q = &mut self.q;
                    q.rid.push(rid);
                    q.n.push(n);
                    q.param.push(p);
                    q.system.push(system.clone());
                    q.code.push(code.clone());
                    q.unit.push(unit.clone());
                    q.low.push(*low);
                    q.high.push(*high);
                    q.grp.push(grp);
                    q.comp.push(comp);
                }
                IndexValue::Reference {
                    target_type,
                    target_id,
                    url,
                    version,
                } => {
                    let r = &mut self.r;
                    r.rid.push(rid);
                    r.n.push(n);
                    r.param.push(p);
                    r.target_type.push(target_type.clone());
                    r.target_id.push(target_id.clone());
                    r.url.push(url.clone());
                    r.version.push(version.clone());
                    r.grp.push(grp);
                    r.comp.push(comp);
                }
                IndexValue::Uri(uri) => {
                    let u = &mut self.u;
                    u.0.push(rid);
                    u.1.push(n);
                    u.2.push(p);
                    u.3.push(uri.clone());
                    u.4.push(grp);
                    u.5.push(comp);
                }
            }
        }
    }
}

/// Writes every version, index row and compartment row of a batch in one statement.
const INSERT_ALL: &str = "\
WITH v AS (INSERT INTO versions (rid, type, version, last_updated, deleted, json) \
  SELECT u.rid, u.type, u.version, u.last_updated, u.deleted, u.json::jsonb \
  FROM unnest($1::int8[], $70::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[]) WITH ORDINALITY AS u(rid, type, version, last_updated, deleted, json, ord) \
  ORDER BY u.ord), \
s AS (INSERT INTO idx_string (rid, n, param, normalized, exact, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[])), \
t AS (INSERT INTO idx_token (rid, n, param, system, code, text, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($13::int8[], $14::int8[], $15::text[], $16::text[], $17::text[], $18::text[], $19::int8[], $20::int8[])), \
tt AS (INSERT INTO idx_token_type (rid, n, param, type_system, type_code, value, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($21::int8[], $22::int8[], $23::text[], $24::text[], $25::text[], $26::text[], $27::int8[], $28::int8[])), \
d AS (INSERT INTO idx_date (rid, n, param, low, high, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($29::int8[], $30::int8[], $31::text[], $32::int8[], $33::int8[], $34::int8[], $35::int8[])), \
n AS (INSERT INTO idx_number (rid, n, param, low, high, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($36::int8[], $37::int8[], $38::text[], $39::float8[], $40::float8[], $41::int8[], $42::int8[])), \
q AS (INSERT INTO idx_quantity (rid, n, param, system, code, unit, low, high, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($43::int8[], $44::int8[], $45::text[], $46::text[], $47::text[], $48::text[], $49::float8[], $50::float8[], $51::int8[], $52::int8[])), \
r AS (INSERT INTO idx_reference (rid, n, param, target_type, target_id, url, version, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($53::int8[], $54::int8[], $55::text[], $56::text[], $57::text[], $58::text[], $59::text[], $60::int8[], $61::int8[])), \
u AS (INSERT INTO idx_uri (rid, n, param, uri, grp, comp, from_seq) \
  SELECT *, $71::int8 FROM unnest($62::int8[], $63::int8[], $64::text[], $65::text[], $66::int8[], $67::int8[])), \
c AS (INSERT INTO compartment (rid, patient_id, from_seq) \
  SELECT DISTINCT *, $71::int8 FROM unnest($68::int8[], $69::text[]) ON CONFLICT DO NOTHING) \
SELECT 1";

const CLEAR_INDEX: &str = "\
WITH s AS (UPDATE idx_string SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
t AS (UPDATE idx_token SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
tt AS (UPDATE idx_token_type SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
d AS (UPDATE idx_date SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
n AS (UPDATE idx_number SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
q AS (UPDATE idx_quantity SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
r AS (UPDATE idx_reference SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
u AS (UPDATE idx_uri SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL), \
c AS (UPDATE compartment SET to_seq = $2 WHERE rid = ANY($1) AND to_seq IS NULL) \
SELECT 1";

/// Applies a batch inside the open transaction `tx`.
async fn commit(tx: &deadpool_postgres::Transaction<'_>, writes: &[Write]) -> Result<()> {
    let lost = |e| concurrency(e, writes);
    // The distinct resources, in first-appearance order.
    let mut keys: Vec<Key> = Vec::new();
    let mut seen: HashMap<Key, usize> = HashMap::new();
    for w in writes {
        let key = (w.resource_type.clone(), w.id.clone());
        if !seen.contains_key(&key) {
            seen.insert(key.clone(), keys.len());
            keys.push(key);
        }
    }

    // Lock the existing ones (in rid order) and read their current state.
    let lock = tx
        .prepare_cached(
            "SELECT r.type, r.id, r.rid, r.version, r.deleted FROM resources r \
             JOIN unnest($1::text[], $2::text[]) AS k(type, id) ON r.type = k.type AND r.id = k.id \
             ORDER BY r.rid FOR UPDATE OF r",
        )
        .await
        .map_err(db)?;
    let types: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let mut existing: HashMap<Key, (i64, i64, bool)> = HashMap::new();
    for row in tx.query(&lock, &[&types, &ids]).await.map_err(lost)? {
        let key: Key = (row.get(0), row.get(1));
        existing.insert(key, (row.get(2), row.get(3), row.get::<_, i64>(4) != 0));
    }

    // Check every expectation in order, as if the writes were applied one by one.
    let mut state: HashMap<&Key, Final<'_>> = HashMap::new();
    for w in writes {
        let key = &keys[seen[&(w.resource_type.clone(), w.id.clone())]];
        let current = match state.get(key) {
            Some(f) => Some(f.version),
            None => existing.get(key).map(|e| e.1),
        };
        match (current, w.expect) {
            (None, None) => {}
            (Some(version), Some(expect)) if version == expect => {}
            _ => return Err(conflict(w)),
        }
        let deleted = matches!(w.op, WriteOp::Delete);
        state.insert(
            key,
            Final {
                version: w.version,
                last_updated: w.last_updated,
                deleted,
                write: w,
            },
        );
    }

    // Create the new resources; one that someone else created meanwhile is a conflict.
    let mut rids: HashMap<&Key, i64> = HashMap::new();
    // In batch order, so that rids (the order of unsorted results) follow it as on SQLite. Two
    // batches creating the same new ids in opposite orders can deadlock; PostgreSQL then aborts
    // one of them, which is reported as the conflict it is.
    let fresh: Vec<&Key> = keys.iter().filter(|k| !existing.contains_key(*k)).collect();
    if !fresh.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO resources (type, id, version, last_updated, deleted) \
                 SELECT u.type, u.id, u.version, u.last_updated, u.deleted \
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) \
                 WITH ORDINALITY AS u(type, id, version, last_updated, deleted, ord) ORDER BY u.ord \
                 ON CONFLICT (type, id) DO NOTHING RETURNING type, id, rid",
            )
            .await
            .map_err(db)?;
        let f = |k: &&Key| &state[*k];
        let types: Vec<&str> = fresh.iter().map(|k| k.0.as_str()).collect();
        let ids: Vec<&str> = fresh.iter().map(|k| k.1.as_str()).collect();
        let versions: Vec<i64> = fresh.iter().map(|k| f(k).version).collect();
        let times: Vec<i64> = fresh.iter().map(|k| f(k).last_updated).collect();
        let deleted: Vec<i64> = fresh.iter().map(|k| i64::from(f(k).deleted)).collect();
        let mut created: HashMap<Key, i64> = HashMap::new();
        for row in tx
            .query(&insert, &[&types, &ids, &versions, &times, &deleted])
            .await
            .map_err(lost)?
        {
            created.insert((row.get(0), row.get(1)), row.get(2));
        }
        for key in &fresh {
            match created.get(*key) {
                Some(rid) => {
                    rids.insert(key, *rid);
                }
                None => return Err(conflict(state[*key].write)),
            }
        }
    }

    // From here on, batches commit one at a time (an advisory lock held until the transaction ends),
    // and this one takes a commit sequence number greater than that of every batch committed before
    // it: the validity of index rows (`from_seq`, `to_seq`) then follows commit order, as paging
    // snapshots need (a snapshot is the greatest `versions.seq` it sees). Row locks were all taken
    // above, so no batch waits for this lock while holding one that the lock's holder needs.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
        &[&COMMIT_NAMESPACE],
    )
    .await
    .map_err(lost)?;
    let seq: i64 = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('versions', 'seq'))",
            &[],
        )
        .await
        .map_err(lost)?
        .get(0);

    // Move the existing ones to their new current version; end the validity of the index rows of
    // live ones (they stay for the later pages of searches begun before).
    let mut updated: Vec<(&Key, i64)> = Vec::new();
    let mut live: Vec<i64> = Vec::new();
    for key in &keys {
        if let Some((rid, _, deleted)) = existing.get(key) {
            rids.insert(key, *rid);
            updated.push((key, *rid));
            if !deleted {
                live.push(*rid);
            }
        }
    }
    if !updated.is_empty() {
        let update = tx
            .prepare_cached(
                "UPDATE resources r SET version = u.version, last_updated = u.last_updated, deleted = u.deleted \
                 FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) AS u(rid, version, last_updated, deleted) \
                 WHERE r.rid = u.rid",
            )
            .await
            .map_err(db)?;
        let ids: Vec<i64> = updated.iter().map(|u| u.1).collect();
        let versions: Vec<i64> = updated.iter().map(|u| state[u.0].version).collect();
        let times: Vec<i64> = updated.iter().map(|u| state[u.0].last_updated).collect();
        let deleted: Vec<i64> = updated
            .iter()
            .map(|u| i64::from(state[u.0].deleted))
            .collect();
        tx.execute(&update, &[&ids, &versions, &times, &deleted])
            .await
            .map_err(lost)?;
    }
    if !live.is_empty() {
        let clear = tx.prepare_cached(CLEAR_INDEX).await.map_err(db)?;
        tx.execute(&clear, &[&live, &seq]).await.map_err(lost)?;
    }

    // Every version in order; the index and compartment rows of each resource's final version.
    let mut rows = Rows::default();
    for w in writes {
        let rid = rids[&keys[seen[&(w.resource_type.clone(), w.id.clone())]]];
        rows.v_rid.push(rid);
        rows.v_type.push(w.resource_type.clone());
        rows.v_version.push(w.version);
        rows.v_last_updated.push(w.last_updated);
        rows.v_deleted
            .push(i64::from(matches!(w.op, WriteOp::Delete)));
        rows.v_json.push(match &w.op {
            WriteOp::Put { json, .. } => Some(json.clone()),
            WriteOp::Delete => None,
        });
    }
    for key in &keys {
        let last = &state[key];
        if let WriteOp::Put {
            index,
            compartments,
            ..
        } = &last.write.op
        {
            let rid = rids[key];
            rows.index(rid, index);
            for patient in compartments {
                rows.c.0.push(rid);
                rows.c.1.push(patient.clone());
            }
        }
    }
    let insert = tx.prepare_cached(INSERT_ALL).await.map_err(db)?;
    let (s, t, tt, d, n, q, r, u, c) = (
        &rows.s, &rows.t, &rows.tt, &rows.d, &rows.n, &rows.q, &rows.r, &rows.u, &rows.c,
    );
    let params: [&(dyn ToSql + Sync); 71] = [
        &rows.v_rid,
        &rows.v_version,
        &rows.v_last_updated,
        &rows.v_deleted,
        &rows.v_json,
        &s.0,
        &s.1,
        &s.2,
        &s.3,
        &s.4,
        &s.5,
        &s.6,
        &t.0,
        &t.1,
        &t.2,
        &t.3,
        &t.4,
        &t.5,
        &t.6,
        &t.7,
        &tt.0,
        &tt.1,
        &tt.2,
        &tt.3,
        &tt.4,
        &tt.5,
        &tt.6,
        &tt.7,
        &d.0,
        &d.1,
        &d.2,
        &d.3,
        &d.4,
        &d.5,
        &d.6,
        &n.0,
        &n.1,
        &n.2,
        &n.3,
        &n.4,
        &n.5,
        &n.6,
        &q.rid,
        &q.n,
        &q.param,
        &q.system,
        &q.code,
        &q.unit,
        &q.low,
        &q.high,
        &q.grp,
        &q.comp,
        &r.rid,
        &r.n,
        &r.param,
        &r.target_type,
        &r.target_id,
        &r.url,
        &r.version,
        &r.grp,
        &r.comp,
        &u.0,
        &u.1,
        &u.2,
        &u.3,
        &u.4,
        &u.5,
        &c.0,
        &c.1,
        &rows.v_type,
        &seq,
    ];
    tx.query(&insert, &params).await.map_err(lost)?;
    Ok(())
}
