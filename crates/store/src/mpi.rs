//! The master patient index's enterprise identities: which identity every indexed Patient is
//! linked to, the blocking keys that find its candidates, operators' decisions (hard constraints),
//! the review queue and the link history. The store never scores: the exchange hands it a
//! function that decides, and the store runs it inside one transaction, after taking the index's
//! lock (PostgreSQL: a transaction-scoped advisory lock, so processes sharing the database link one
//! record at a time and each sees every link committed before; SQLite: its single writer), so
//! that two records of one new person written at once in two processes never start two identities.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::exec::{Dialect, Exec, Val};
use crate::{Result, StoreError};

/// At most this many values are bound in one `IN (...)` list.
const CHUNK: usize = 500;

/// The advisory lock of the patient index (PostgreSQL), keyed by this and the schema.
const LOCK_NAMESPACE: i32 = 0x6d70_6930; // "mpi0"

/// A Patient to link: its id, its matching record (opaque JSON, the exchange's), its blocking keys.
#[derive(Debug, Clone)]
pub struct MpiSubject {
    pub patient_id: String,
    pub record: String,
    pub keys: Vec<i64>,
    /// Who wrote the Patient (for the link history).
    pub actor: String,
}

/// A Patient sharing a blocking key with the subject, and its identity.
#[derive(Debug, Clone)]
pub struct MpiCandidate {
    pub patient_id: String,
    pub identity_id: String,
    pub record: String,
}

/// An operator's decision about the subject and another Patient, with that Patient's identity now.
#[derive(Debug, Clone)]
pub struct MpiConstraint {
    pub other: String,
    /// True: the same person; false: not the same person.
    pub same: bool,
    pub other_identity: Option<String>,
}

/// Where the subject is linked now.
#[derive(Debug, Clone)]
pub struct MpiCurrent {
    pub identity_id: String,
    pub method: String,
    /// How many other Patients share that identity.
    pub others: usize,
}

/// What the deciding function is given (read inside the locked transaction).
#[derive(Debug, Clone)]
pub struct LinkContext {
    pub current: Option<MpiCurrent>,
    /// Every linked Patient that shares a blocking key with the subject (buckets larger than
    /// `max_bucket` left out), the subject itself excluded.
    pub candidates: Vec<MpiCandidate>,
    pub constraints: Vec<MpiConstraint>,
    /// Patients linked, the subject included once linked.
    pub population: usize,
    pub model_version: i64,
}

/// A pair for an operator to review.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiReviewItem {
    pub candidate: String,
    pub score: f64,
    pub grade: String,
}

/// What the deciding function chose.
#[derive(Debug, Clone)]
pub struct LinkDecision {
    /// The identity (existing, or new: the exchange makes the id).
    pub identity_id: String,
    /// `auto`, `new` or `manual`.
    pub method: String,
    pub score: Option<f64>,
    pub reason: String,
    pub reviews: Vec<MpiReviewItem>,
}

/// The deciding function of [`crate::Store::mpi_link`]: an error message refuses the link.
pub type Decide = Box<dyn FnOnce(LinkContext) -> std::result::Result<LinkDecision, String> + Send>;

/// What splitting an identity is given: its members with their records and the operators'
/// decisions among them (`(a, b, same)`).
#[derive(Debug, Clone)]
pub struct SplitContext {
    pub identity_id: String,
    pub members: Vec<(String, String)>,
    pub decisions: Vec<(String, String, bool)>,
}

/// The splitting function of [`crate::Store::mpi_unlink`]: the members grouped into identities
/// (each group with its identity id: one of them may keep the old one).
pub type Split =
    Box<dyn FnOnce(SplitContext) -> std::result::Result<Vec<(String, Vec<String>)>, String> + Send>;

/// The result of linking one Patient.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOutcome {
    pub identity_id: String,
    pub previous: Option<String>,
    pub method: String,
    pub reviews: usize,
}

/// A pair in the review queue, with the identities of both sides now.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiReview {
    pub patient_a: String,
    pub patient_b: String,
    pub identity_a: Option<String>,
    pub identity_b: Option<String>,
    pub score: f64,
    pub grade: String,
    pub created: i64,
}

/// One change in the link history.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiHistoryEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    /// `new`, `link`, `move`, `merge`, `split`, `decide`, `remove` or `rebuild`.
    pub action: String,
    pub patient_id: String,
    pub identity_id: Option<String>,
    pub previous_identity: Option<String>,
    pub reason: String,
}

/// One Patient's link as a batch rebuild decided it.
#[derive(Debug, Clone)]
pub struct MpiRebuilt {
    pub patient_id: String,
    pub identity_id: String,
    pub method: String,
    pub score: Option<f64>,
    pub record: String,
    pub keys: Vec<i64>,
}

/// What a batch rebuild starts from: every link now and every operator decision.
#[derive(Debug, Clone, Default)]
pub struct MpiSnapshot {
    /// `(patient, identity)`.
    pub links: Vec<(String, String)>,
    /// `(a, b, same)`.
    pub decisions: Vec<(String, String, bool)>,
}

/// A batch rebuild's result, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct MpiRebuild {
    /// The model it trained (JSON), or `None` to keep the one stored.
    pub model: Option<String>,
    pub links: Vec<MpiRebuilt>,
    /// `(a, b, score, grade)`.
    pub reviews: Vec<(String, String, f64, String)>,
    pub actor: String,
    pub reason: String,
}

/// The MPI's operations, run by [`run`] in one transaction (writes) or read transaction.
pub(crate) enum Op {
    Link {
        subject: MpiSubject,
        max_bucket: usize,
        now: i64,
        decide: Decide,
    },
    Remove {
        patient_id: String,
        actor: String,
        now: i64,
    },
    Merge {
        a: String,
        b: String,
        actor: String,
        reason: String,
        now: i64,
    },
    Unlink {
        a: String,
        b: String,
        actor: String,
        reason: String,
        now: i64,
        split: Split,
    },
    SamePerson(String),
    /// Every `(asked, linked)` pair: for each asked Patient, the Patients linked to its identity.
    PersonsOf(Vec<String>),
    /// The greatest link history sequence number (0 when empty): changes when any identity does.
    HistoryHead,
    IdentityOf(String),
    Reviews {
        limit: usize,
    },
    History {
        patient_id: Option<String>,
        identity_id: Option<String>,
        limit: usize,
    },
    Model,
    Snapshot,
    Rebuild {
        rebuild: MpiRebuild,
        now: i64,
    },
}

impl Op {
    /// Whether the operation writes (and so takes the lock, in a transaction of its own).
    pub(crate) fn writes(&self) -> bool {
        matches!(
            self,
            Op::Link { .. }
                | Op::Remove { .. }
                | Op::Merge { .. }
                | Op::Unlink { .. }
                | Op::Rebuild { .. }
        )
    }
}

/// What an [`Op`] answers.
#[derive(Debug)]
pub(crate) enum Out {
    Linked(LinkOutcome),
    Done(bool),
    Ids(Vec<String>),
    Pairs(Vec<(String, String)>),
    Head(i64),
    Identity(Option<String>),
    Reviews(Vec<MpiReview>),
    History(Vec<MpiHistoryEntry>),
    Model(Option<String>, i64),
    Snapshot(MpiSnapshot),
}

/// Runs one operation on `e`, which is inside a transaction (for writes) the engine commits after.
pub(crate) async fn run(e: &mut impl Exec, op: Op) -> Result<Out> {
    if op.writes() && e.dialect() == Dialect::Postgres {
        e.rows(
            "SELECT 1 FROM pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
            &[Val::Int(i64::from(LOCK_NAMESPACE))],
        )
        .await?;
    }
    match op {
        Op::Link {
            subject,
            max_bucket,
            now,
            decide,
        } => link(e, subject, max_bucket, now, decide)
            .await
            .map(Out::Linked),
        Op::Remove {
            patient_id,
            actor,
            now,
        } => remove(e, &patient_id, &actor, now).await.map(Out::Done),
        Op::Merge {
            a,
            b,
            actor,
            reason,
            now,
        } => merge(e, &a, &b, &actor, &reason, now).await.map(Out::Done),
        Op::Unlink {
            a,
            b,
            actor,
            reason,
            now,
            split,
        } => unlink(e, &a, &b, &actor, &reason, now, split)
            .await
            .map(Out::Done),
        Op::SamePerson(id) => same_person(e, &id).await.map(Out::Ids),
        Op::PersonsOf(ids) => persons_of(e, &ids).await.map(Out::Pairs),
        Op::HistoryHead => {
            let rows = e
                .rows("SELECT COALESCE(MAX(seq), 0) FROM mpi_history", &[])
                .await?;
            let head = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .map(|v| v.int())
                .transpose()?
                .unwrap_or(0);
            Ok(Out::Head(head))
        }
        Op::IdentityOf(id) => identity_of(e, &id).await.map(Out::Identity),
        Op::Reviews { limit } => reviews(e, limit).await.map(Out::Reviews),
        Op::History {
            patient_id,
            identity_id,
            limit,
        } => history(e, patient_id.as_deref(), identity_id.as_deref(), limit)
            .await
            .map(Out::History),
        Op::Model => {
            let rows = e
                .rows(
                    "SELECT model, model_version FROM mpi_state WHERE id = 1",
                    &[],
                )
                .await?;
            let mut row = rows.into_iter().next().unwrap_or_default().into_iter();
            let model = match row.next() {
                Some(Val::Text(s)) => Some(s),
                _ => None,
            };
            let version = row.next().map(|v| v.int()).transpose()?.unwrap_or(0);
            Ok(Out::Model(model, version))
        }
        Op::Snapshot => snapshot(e).await.map(Out::Snapshot),
        Op::Rebuild { rebuild, now } => apply_rebuild(e, rebuild, now).await.map(Out::Done),
    }
}

fn ph(e: &impl Exec, n: usize) -> String {
    e.dialect().placeholder(n)
}

/// `(?, ?, ...)`: the placeholders of one row of a multi-row INSERT, `n` values after the first
/// `base` arguments.
fn row_of(e: &impl Exec, base: usize, n: usize) -> String {
    let placeholders: Vec<String> = (1..=n).map(|i| ph(e, base + i)).collect();
    format!("({})", placeholders.join(", "))
}

fn opt_text(v: Val) -> Option<String> {
    match v {
        Val::Text(s) => Some(s),
        _ => None,
    }
}

fn real(v: &Val) -> Option<f64> {
    match v {
        Val::Real(f) => Some(*f),
        Val::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

async fn current_link(e: &mut impl Exec, patient_id: &str) -> Result<Option<(String, String)>> {
    let sql = format!(
        "SELECT identity_id, method FROM mpi_links WHERE patient_id = {}",
        ph(e, 1)
    );
    let rows = e.rows(&sql, &[Val::Text(patient_id.to_string())]).await?;
    match rows.into_iter().next() {
        Some(row) => {
            let mut row = row.into_iter();
            let identity = row.next().map(Val::text).transpose()?.unwrap_or_default();
            let method = row.next().map(Val::text).transpose()?.unwrap_or_default();
            Ok(Some((identity, method)))
        }
        None => Ok(None),
    }
}

async fn members(e: &mut impl Exec, identity_id: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT patient_id FROM mpi_links WHERE identity_id = {} ORDER BY patient_id",
        ph(e, 1)
    );
    e.rows(&sql, &[Val::Text(identity_id.to_string())])
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .map(Val::text)
        .collect()
}

#[allow(clippy::too_many_arguments)] // one history row's columns
async fn history_row(
    e: &mut impl Exec,
    at: i64,
    actor: &str,
    action: &str,
    patient_id: &str,
    identity: Option<&str>,
    previous: Option<&str>,
    reason: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO mpi_history (at, actor, action, patient_id, identity_id, previous_identity, reason) \
         VALUES ({}, {}, {}, {}, {}, {}, {})",
        ph(e, 1),
        ph(e, 2),
        ph(e, 3),
        ph(e, 4),
        ph(e, 5),
        ph(e, 6),
        ph(e, 7)
    );
    let text = |s: Option<&str>| s.map_or(Val::Null, |s| Val::Text(s.to_string()));
    e.rows(
        &sql,
        &[
            Val::Int(at),
            Val::Text(actor.to_string()),
            Val::Text(action.to_string()),
            Val::Text(patient_id.to_string()),
            text(identity),
            text(previous),
            Val::Text(reason.to_string()),
        ],
    )
    .await?;
    Ok(())
}

async fn set_identity(
    e: &mut impl Exec,
    patient_id: &str,
    identity: &str,
    method: &str,
    now: i64,
) -> Result<()> {
    let sql = format!(
        "UPDATE mpi_links SET identity_id = {}, method = {}, updated = {} WHERE patient_id = {}",
        ph(e, 1),
        ph(e, 2),
        ph(e, 3),
        ph(e, 4)
    );
    e.rows(
        &sql,
        &[
            Val::Text(identity.to_string()),
            Val::Text(method.to_string()),
            Val::Int(now),
            Val::Text(patient_id.to_string()),
        ],
    )
    .await?;
    Ok(())
}

async fn bump_population(e: &mut impl Exec, by: i64) -> Result<()> {
    let sql = format!(
        "UPDATE mpi_state SET population = population + {} WHERE id = 1",
        ph(e, 1)
    );
    e.rows(&sql, &[Val::Int(by)]).await?;
    Ok(())
}

/// Replaces a Patient's record and keys (inserting its link row if `identity` is new to it).
#[allow(clippy::too_many_arguments)] // one link row's columns
async fn put_link(
    e: &mut impl Exec,
    patient_id: &str,
    identity: &str,
    method: &str,
    score: Option<f64>,
    record: &str,
    keys: &[i64],
    now: i64,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO mpi_links (patient_id, identity_id, method, score, record, updated) \
         VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6}) \
         ON CONFLICT (patient_id) DO UPDATE SET identity_id = {p2}, method = {p3}, score = {p4}, \
         record = {p5}, updated = {p6}",
        p1 = ph(e, 1),
        p2 = ph(e, 2),
        p3 = ph(e, 3),
        p4 = ph(e, 4),
        p5 = ph(e, 5),
        p6 = ph(e, 6)
    );
    e.rows(
        &sql,
        &[
            Val::Text(patient_id.to_string()),
            Val::Text(identity.to_string()),
            Val::Text(method.to_string()),
            score.map_or(Val::Null, Val::Real),
            Val::Text(record.to_string()),
            Val::Int(now),
        ],
    )
    .await?;
    let sql = format!("DELETE FROM mpi_keys WHERE patient_id = {}", ph(e, 1));
    e.rows(&sql, &[Val::Text(patient_id.to_string())]).await?;
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(CHUNK) {
        let mut args = vec![Val::Text(patient_id.to_string())];
        let values: Vec<String> = chunk
            .iter()
            .map(|k| {
                args.push(Val::Int(*k));
                format!("({}, {})", ph(e, args.len()), ph(e, 1))
            })
            .collect();
        let sql = format!(
            "INSERT INTO mpi_keys (key, patient_id) VALUES {}",
            values.join(", ")
        );
        e.rows(&sql, &args).await?;
    }
    Ok(())
}

async fn delete_reviews_of(e: &mut impl Exec, patient_id: &str) -> Result<()> {
    let sql = format!(
        "DELETE FROM mpi_reviews WHERE patient_a = {p} OR patient_b = {p}",
        p = ph(e, 1)
    );
    e.rows(&sql, &[Val::Text(patient_id.to_string())]).await?;
    Ok(())
}

async fn add_review(
    e: &mut impl Exec,
    a: &str,
    b: &str,
    score: f64,
    grade: &str,
    now: i64,
) -> Result<()> {
    let (a, b) = ordered(a, b);
    let sql = format!(
        "INSERT INTO mpi_reviews (patient_a, patient_b, score, grade, created) \
         VALUES ({}, {}, {}, {}, {}) ON CONFLICT (patient_a, patient_b) DO UPDATE SET score = {}, grade = {}",
        ph(e, 1),
        ph(e, 2),
        ph(e, 3),
        ph(e, 4),
        ph(e, 5),
        ph(e, 3),
        ph(e, 4)
    );
    e.rows(
        &sql,
        &[
            Val::Text(a.to_string()),
            Val::Text(b.to_string()),
            Val::Real(score),
            Val::Text(grade.to_string()),
            Val::Int(now),
        ],
    )
    .await?;
    Ok(())
}

/// The operators' decisions about `patient_id`: `(other, same)`.
async fn decisions_of(e: &mut impl Exec, patient_id: &str) -> Result<Vec<(String, bool)>> {
    let sql = format!(
        "SELECT patient_b, same FROM mpi_decisions WHERE patient_a = {p} \
         UNION ALL SELECT patient_a, same FROM mpi_decisions WHERE patient_b = {p}",
        p = ph(e, 1)
    );
    let mut out = Vec::new();
    for row in e.rows(&sql, &[Val::Text(patient_id.to_string())]).await? {
        let mut row = row.into_iter();
        let other = row.next().map(Val::text).transpose()?.unwrap_or_default();
        let same = row.next().map(|v| v.int()).transpose()?.unwrap_or(0) == 1;
        out.push((other, same));
    }
    Ok(out)
}

async fn link(
    e: &mut impl Exec,
    subject: MpiSubject,
    max_bucket: usize,
    now: i64,
    decide: Decide,
) -> Result<LinkOutcome> {
    let id = subject.patient_id.clone();
    let current = match current_link(e, &id).await? {
        Some((identity_id, method)) => {
            let others = members(e, &identity_id)
                .await?
                .into_iter()
                .filter(|m| *m != id)
                .count();
            Some(MpiCurrent {
                identity_id,
                method,
                others,
            })
        }
        None => None,
    };
    // Candidates: Patients sharing a key, leaving out buckets that are too large.
    let mut keys = subject.keys.clone();
    keys.sort_unstable();
    keys.dedup();
    // Each key's bucket is counted only up to one past the limit: a common key (a frequent
    // surname's code and a birth year) has a bucket of many thousands, and counting it whole
    // would walk all of it for every link.
    let mut usable = Vec::new();
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM mpi_keys WHERE key = {} LIMIT {}) AS bucket",
        ph(e, 1),
        ph(e, 2)
    );
    for key in &keys {
        let rows = e
            .rows(&sql, &[Val::Int(*key), Val::Int(max_bucket as i64 + 1)])
            .await?;
        let size = match rows.first().and_then(|r| r.first()) {
            Some(v) => v.int()?,
            None => 0,
        };
        if size as usize <= max_bucket {
            usable.push(*key);
        }
    }
    let mut candidates = Vec::new();
    let mut seen = BTreeSet::new();
    for chunk in usable.chunks(CHUNK) {
        let mut args = vec![Val::Text(id.clone())];
        let list: Vec<String> = chunk
            .iter()
            .map(|k| {
                args.push(Val::Int(*k));
                ph(e, args.len())
            })
            .collect();
        let sql = format!(
            "SELECT l.patient_id, l.identity_id, l.record FROM mpi_keys k \
             JOIN mpi_links l ON l.patient_id = k.patient_id \
             WHERE k.key IN ({}) AND k.patient_id <> {} ORDER BY l.patient_id",
            list.join(", "),
            ph(e, 1)
        );
        for row in e.rows(&sql, &args).await? {
            let mut row = row.into_iter();
            let patient_id = row.next().map(Val::text).transpose()?.unwrap_or_default();
            let identity_id = row.next().map(Val::text).transpose()?.unwrap_or_default();
            let record = row.next().map(Val::text).transpose()?.unwrap_or_default();
            if seen.insert(patient_id.clone()) {
                candidates.push(MpiCandidate {
                    patient_id,
                    identity_id,
                    record,
                });
            }
        }
    }
    candidates.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
    let mut constraints = Vec::new();
    for (other, same) in decisions_of(e, &id).await? {
        let other_identity = current_link(e, &other).await?.map(|(i, _)| i);
        constraints.push(MpiConstraint {
            other,
            same,
            other_identity,
        });
    }
    let (model_version, population) = {
        let rows = e
            .rows(
                "SELECT model_version, population FROM mpi_state WHERE id = 1",
                &[],
            )
            .await?;
        let row = rows.into_iter().next().unwrap_or_default();
        (
            row.first().map(Val::int).transpose()?.unwrap_or(0),
            row.get(1).map(Val::int).transpose()?.unwrap_or(0),
        )
    };
    let was_linked = current.is_some();
    let previous = current.as_ref().map(|c| c.identity_id.clone());
    let population = population as usize + usize::from(!was_linked);
    let forbidden: BTreeSet<String> = constraints
        .iter()
        .filter(|c| !c.same)
        .filter_map(|c| c.other_identity.clone())
        .collect();
    let decision = decide(LinkContext {
        current,
        candidates,
        constraints,
        population,
        model_version,
    })
    .map_err(StoreError::Database)?;
    if forbidden.contains(&decision.identity_id) {
        return Err(StoreError::Conflict {
            resource_type: "Patient".to_string(),
            id,
        });
    }
    put_link(
        e,
        &id,
        &decision.identity_id,
        &decision.method,
        decision.score,
        &subject.record,
        &keys,
        now,
    )
    .await?;
    if !was_linked {
        bump_population(e, 1).await?;
    }
    delete_reviews_of(e, &id).await?;
    for r in &decision.reviews {
        add_review(e, &id, &r.candidate, r.score, &r.grade, now).await?;
    }
    if previous.as_deref() != Some(decision.identity_id.as_str()) {
        let action = match (&previous, decision.method.as_str()) {
            (None, "new") => "new",
            (None, _) => "link",
            (Some(_), _) => "move",
        };
        history_row(
            e,
            now,
            &subject.actor,
            action,
            &id,
            Some(&decision.identity_id),
            previous.as_deref(),
            &decision.reason,
        )
        .await?;
    }
    Ok(LinkOutcome {
        identity_id: decision.identity_id,
        previous,
        method: decision.method,
        reviews: decision.reviews.len(),
    })
}

async fn remove(e: &mut impl Exec, patient_id: &str, actor: &str, now: i64) -> Result<bool> {
    let Some((identity, _)) = current_link(e, patient_id).await? else {
        return Ok(false);
    };
    let p = ph(e, 1);
    let arg = [Val::Text(patient_id.to_string())];
    e.rows(
        &format!("DELETE FROM mpi_links WHERE patient_id = {p}"),
        &arg,
    )
    .await?;
    e.rows(
        &format!("DELETE FROM mpi_keys WHERE patient_id = {p}"),
        &arg,
    )
    .await?;
    delete_reviews_of(e, patient_id).await?;
    bump_population(e, -1).await?;
    history_row(
        e,
        now,
        actor,
        "remove",
        patient_id,
        None,
        Some(&identity),
        "the Patient was deleted",
    )
    .await?;
    Ok(true)
}

async fn record_decision(
    e: &mut impl Exec,
    a: &str,
    b: &str,
    same: bool,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let (a, b) = ordered(a, b);
    let sql = format!(
        "INSERT INTO mpi_decisions (patient_a, patient_b, same, actor, reason, decided) \
         VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6}) ON CONFLICT (patient_a, patient_b) \
         DO UPDATE SET same = {p3}, actor = {p4}, reason = {p5}, decided = {p6}",
        p1 = ph(e, 1),
        p2 = ph(e, 2),
        p3 = ph(e, 3),
        p4 = ph(e, 4),
        p5 = ph(e, 5),
        p6 = ph(e, 6)
    );
    e.rows(
        &sql,
        &[
            Val::Text(a.to_string()),
            Val::Text(b.to_string()),
            Val::Int(i64::from(same)),
            Val::Text(actor.to_string()),
            Val::Text(reason.to_string()),
            Val::Int(now),
        ],
    )
    .await?;
    let sql = format!(
        "DELETE FROM mpi_reviews WHERE patient_a = {} AND patient_b = {}",
        ph(e, 1),
        ph(e, 2)
    );
    e.rows(&sql, &[Val::Text(a.to_string()), Val::Text(b.to_string())])
        .await?;
    Ok(())
}

fn not_linked(id: &str) -> StoreError {
    StoreError::Conflict {
        resource_type: "Patient".to_string(),
        id: id.to_string(),
    }
}

/// An operator's link: `a` and `b` are one person. `b`'s identity joins `a`'s (every member);
/// refused (`Conflict`) if an operator said before that a member of one is not a member of the
/// other (a decision about `a` and `b` themselves is replaced by this one).
async fn merge(
    e: &mut impl Exec,
    a: &str,
    b: &str,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let (ia, _) = current_link(e, a).await?.ok_or_else(|| not_linked(a))?;
    let (ib, _) = current_link(e, b).await?.ok_or_else(|| not_linked(b))?;
    if ia != ib {
        let left = members(e, &ia).await?;
        let right: BTreeSet<String> = members(e, &ib).await?.into_iter().collect();
        for m in &left {
            for (other, same) in decisions_of(e, m).await? {
                // This decision replaces an earlier one about the same pair.
                let this_pair = ordered(m, &other) == ordered(a, b);
                if !same && !this_pair && right.contains(&other) {
                    return Err(not_linked(&other));
                }
            }
        }
        for m in &right {
            set_identity(e, m, &ia, "manual", now).await?;
            history_row(e, now, actor, "merge", m, Some(&ia), Some(&ib), reason).await?;
            // Reviews between the two sides are settled.
            for l in &left {
                let (x, y) = ordered(l, m);
                let sql = format!(
                    "DELETE FROM mpi_reviews WHERE patient_a = {} AND patient_b = {}",
                    ph(e, 1),
                    ph(e, 2)
                );
                e.rows(&sql, &[Val::Text(x.to_string()), Val::Text(y.to_string())])
                    .await?;
            }
        }
    }
    set_identity(e, a, &ia, "manual", now).await?;
    record_decision(e, a, b, true, actor, reason, now).await?;
    history_row(
        e,
        now,
        actor,
        "decide",
        a,
        Some(&ia),
        None,
        &format!("same person as {b}: {reason}"),
    )
    .await?;
    Ok(ia != ib)
}

/// An operator's unlink: `a` and `b` are not one person. If they share an identity, its members
/// are regrouped by `split` (which must keep the operators' decisions) and those that move are
/// recorded.
async fn unlink(
    e: &mut impl Exec,
    a: &str,
    b: &str,
    actor: &str,
    reason: &str,
    now: i64,
    split: Split,
) -> Result<bool> {
    let (ia, _) = current_link(e, a).await?.ok_or_else(|| not_linked(a))?;
    let (ib, _) = current_link(e, b).await?.ok_or_else(|| not_linked(b))?;
    record_decision(e, a, b, false, actor, reason, now).await?;
    history_row(
        e,
        now,
        actor,
        "decide",
        a,
        Some(&ia),
        None,
        &format!("not the same person as {b}: {reason}"),
    )
    .await?;
    if ia != ib {
        return Ok(false);
    }
    let ids = members(e, &ia).await?;
    let mut records = Vec::with_capacity(ids.len());
    let mut decisions = Vec::new();
    let set: BTreeSet<&String> = ids.iter().collect();
    for m in &ids {
        let sql = format!(
            "SELECT record FROM mpi_links WHERE patient_id = {}",
            ph(e, 1)
        );
        let record = e
            .rows(&sql, &[Val::Text(m.clone())])
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .map(Val::text)
            .transpose()?
            .unwrap_or_default();
        records.push((m.clone(), record));
        for (other, same) in decisions_of(e, m).await? {
            if m < &other && set.contains(&other) {
                decisions.push((m.clone(), other, same));
            }
        }
    }
    let groups = split(SplitContext {
        identity_id: ia.clone(),
        members: records,
        decisions: decisions.clone(),
    })
    .map_err(StoreError::Database)?;
    // Check the grouping: every member once, and no decision broken.
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (g, (_, ms)) in groups.iter().enumerate() {
        for m in ms {
            if group_of.insert(m.as_str(), g).is_some() || !set.contains(m) {
                return Err(StoreError::Database(format!("the split put {m} wrongly")));
            }
        }
    }
    if group_of.len() != ids.len()
        || decisions
            .iter()
            .any(|(x, y, same)| (group_of.get(x.as_str()) == group_of.get(y.as_str())) != *same)
    {
        return Err(not_linked(a));
    }
    for (identity, ms) in &groups {
        for m in ms {
            if *identity != ia {
                set_identity(e, m, identity, "manual", now).await?;
                history_row(e, now, actor, "split", m, Some(identity), Some(&ia), reason).await?;
            }
        }
    }
    Ok(true)
}

async fn identity_of(e: &mut impl Exec, patient_id: &str) -> Result<Option<String>> {
    Ok(current_link(e, patient_id).await?.map(|(i, _)| i))
}

async fn same_person(e: &mut impl Exec, patient_id: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT l.patient_id FROM mpi_links l JOIN mpi_links s ON s.identity_id = l.identity_id \
         WHERE s.patient_id = {} ORDER BY l.patient_id",
        ph(e, 1)
    );
    let ids: Vec<String> = e
        .rows(&sql, &[Val::Text(patient_id.to_string())])
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .map(Val::text)
        .collect::<Result<_>>()?;
    Ok(if ids.is_empty() {
        vec![patient_id.to_string()]
    } else {
        ids
    })
}

/// For each of `ids` that is linked, every Patient linked to the same identity (itself included),
/// as `(asked, linked)` pairs; an unlinked one has none.
pub(crate) async fn persons_of(e: &mut impl Exec, ids: &[String]) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| ph(e, i)).collect();
        let sql = format!(
            "SELECT s.patient_id, l.patient_id FROM mpi_links l JOIN mpi_links s ON s.identity_id = l.identity_id \
             WHERE s.patient_id IN ({})",
            list.join(", ")
        );
        let args: Vec<Val> = chunk.iter().map(|id| Val::Text(id.clone())).collect();
        for row in e.rows(&sql, &args).await? {
            let mut row = row.into_iter();
            let (Some(asked), Some(linked)) = (row.next(), row.next()) else {
                continue;
            };
            pairs.push((asked.text()?, linked.text()?));
        }
    }
    Ok(pairs)
}

async fn reviews(e: &mut impl Exec, limit: usize) -> Result<Vec<MpiReview>> {
    let sql = format!(
        "SELECT r.patient_a, r.patient_b, la.identity_id, lb.identity_id, r.score, r.grade, r.created \
         FROM mpi_reviews r LEFT JOIN mpi_links la ON la.patient_id = r.patient_a \
         LEFT JOIN mpi_links lb ON lb.patient_id = r.patient_b \
         ORDER BY r.score DESC, r.patient_a, r.patient_b LIMIT {}",
        ph(e, 1)
    );
    let mut out = Vec::new();
    for row in e.rows(&sql, &[Val::Int(limit as i64)]).await? {
        let score = real(&row[4]).unwrap_or(0.0);
        let created = row[6].int()?;
        let mut row = row.into_iter();
        out.push(MpiReview {
            patient_a: row.next().map(Val::text).transpose()?.unwrap_or_default(),
            patient_b: row.next().map(Val::text).transpose()?.unwrap_or_default(),
            identity_a: row.next().and_then(opt_text),
            identity_b: row.next().and_then(opt_text),
            score,
            grade: row.nth(1).map(Val::text).transpose()?.unwrap_or_default(),
            created,
        });
    }
    Ok(out)
}

async fn history(
    e: &mut impl Exec,
    patient_id: Option<&str>,
    identity_id: Option<&str>,
    limit: usize,
) -> Result<Vec<MpiHistoryEntry>> {
    let mut args = vec![Val::Int(limit as i64)];
    let mut filter = Vec::new();
    if let Some(p) = patient_id {
        args.push(Val::Text(p.to_string()));
        filter.push(format!("patient_id = {}", ph(e, args.len())));
    }
    if let Some(i) = identity_id {
        args.push(Val::Text(i.to_string()));
        let n = ph(e, args.len());
        filter.push(format!("(identity_id = {n} OR previous_identity = {n})"));
    }
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filter.join(" AND "))
    };
    let sql = format!(
        "SELECT seq, at, actor, action, patient_id, identity_id, previous_identity, reason \
         FROM mpi_history {filter} ORDER BY seq DESC LIMIT {}",
        ph(e, 1)
    );
    let mut out = Vec::new();
    for row in e.rows(&sql, &args).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        out.push(MpiHistoryEntry {
            seq: next().int()?,
            at: next().int()?,
            actor: next().text()?,
            action: next().text()?,
            patient_id: next().text()?,
            identity_id: opt_text(next()),
            previous_identity: opt_text(next()),
            reason: next().text()?,
        });
    }
    Ok(out)
}

async fn snapshot(e: &mut impl Exec) -> Result<MpiSnapshot> {
    let mut out = MpiSnapshot::default();
    for row in e
        .rows(
            "SELECT patient_id, identity_id FROM mpi_links ORDER BY patient_id",
            &[],
        )
        .await?
    {
        let mut row = row.into_iter();
        out.links.push((
            row.next().map(Val::text).transpose()?.unwrap_or_default(),
            row.next().map(Val::text).transpose()?.unwrap_or_default(),
        ));
    }
    for row in e
        .rows(
            "SELECT patient_a, patient_b, same FROM mpi_decisions ORDER BY patient_a, patient_b",
            &[],
        )
        .await?
    {
        let mut row = row.into_iter();
        out.decisions.push((
            row.next().map(Val::text).transpose()?.unwrap_or_default(),
            row.next().map(Val::text).transpose()?.unwrap_or_default(),
            row.next().map(|v| v.int()).transpose()?.unwrap_or(0) == 1,
        ));
    }
    Ok(out)
}

/// Replaces every link with a batch rebuild's (the links of Patients it did not see go), keeps
/// the operators' decisions, replaces the review queue, and records each Patient whose identity
/// changed.
async fn apply_rebuild(e: &mut impl Exec, rebuild: MpiRebuild, now: i64) -> Result<bool> {
    let before: BTreeMap<String, String> = snapshot(e).await?.links.into_iter().collect();
    e.rows("DELETE FROM mpi_keys", &[]).await?;
    e.rows("DELETE FROM mpi_links", &[]).await?;
    e.rows("DELETE FROM mpi_reviews", &[]).await?;
    let mut seen = BTreeSet::new();
    for chunk in rebuild.links.chunks(CHUNK / 6) {
        let mut args = Vec::new();
        let mut values = Vec::new();
        for l in chunk {
            seen.insert(l.patient_id.clone());
            let base = args.len();
            args.push(Val::Text(l.patient_id.clone()));
            args.push(Val::Text(l.identity_id.clone()));
            args.push(Val::Text(l.method.clone()));
            args.push(l.score.map_or(Val::Null, Val::Real));
            args.push(Val::Text(l.record.clone()));
            args.push(Val::Int(now));
            values.push(row_of(e, base, 6));
        }
        if values.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO mpi_links (patient_id, identity_id, method, score, record, updated) VALUES {}",
            values.join(", ")
        );
        e.rows(&sql, &args).await?;
    }
    let mut pairs: Vec<(i64, &str)> = Vec::new();
    for l in &rebuild.links {
        let mut keys = l.keys.clone();
        keys.sort_unstable();
        keys.dedup();
        pairs.extend(keys.into_iter().map(|k| (k, l.patient_id.as_str())));
    }
    for chunk in pairs.chunks(CHUNK / 2) {
        let mut args = Vec::new();
        let values: Vec<String> = chunk
            .iter()
            .map(|(k, p)| {
                args.push(Val::Int(*k));
                args.push(Val::Text(p.to_string()));
                format!("({}, {})", ph(e, args.len() - 1), ph(e, args.len()))
            })
            .collect();
        let sql = format!(
            "INSERT INTO mpi_keys (key, patient_id) VALUES {}",
            values.join(", ")
        );
        e.rows(&sql, &args).await?;
    }
    for chunk in rebuild.reviews.chunks(CHUNK / 5) {
        let mut args = Vec::new();
        let mut values = Vec::new();
        for (a, b, score, grade) in chunk {
            let (a, b) = ordered(a, b);
            let base = args.len();
            args.push(Val::Text(a.to_string()));
            args.push(Val::Text(b.to_string()));
            args.push(Val::Real(*score));
            args.push(Val::Text(grade.clone()));
            args.push(Val::Int(now));
            values.push(row_of(e, base, 5));
        }
        if values.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO mpi_reviews (patient_a, patient_b, score, grade, created) VALUES {} \
             ON CONFLICT (patient_a, patient_b) DO NOTHING",
            values.join(", ")
        );
        e.rows(&sql, &args).await?;
    }
    // (action, patient, identity, previous)
    let mut changes: Vec<(&str, &str, Option<&str>, Option<&str>)> = Vec::new();
    for l in &rebuild.links {
        let previous = before.get(&l.patient_id);
        if previous != Some(&l.identity_id) {
            changes.push((
                "rebuild",
                &l.patient_id,
                Some(&l.identity_id),
                previous.map(String::as_str),
            ));
        }
    }
    for (patient, identity) in &before {
        if !seen.contains(patient) {
            changes.push(("remove", patient, None, Some(identity)));
        }
    }
    let text = |s: Option<&str>| s.map_or(Val::Null, |s| Val::Text(s.to_string()));
    for chunk in changes.chunks(CHUNK / 7) {
        let mut args = Vec::new();
        let mut values = Vec::new();
        for (action, patient, identity, previous) in chunk {
            let base = args.len();
            args.push(Val::Int(now));
            args.push(Val::Text(rebuild.actor.clone()));
            args.push(Val::Text(action.to_string()));
            args.push(Val::Text(patient.to_string()));
            args.push(text(*identity));
            args.push(text(*previous));
            args.push(Val::Text(rebuild.reason.clone()));
            values.push(row_of(e, base, 7));
        }
        let sql = format!(
            "INSERT INTO mpi_history (at, actor, action, patient_id, identity_id, previous_identity, reason) \
             VALUES {}",
            values.join(", ")
        );
        e.rows(&sql, &args).await?;
    }
    let sql = match rebuild.model {
        Some(_) => format!(
            "UPDATE mpi_state SET population = {}, model = {}, model_version = model_version + 1 WHERE id = 1",
            ph(e, 1),
            ph(e, 2)
        ),
        None => format!("UPDATE mpi_state SET population = {} WHERE id = 1", ph(e, 1)),
    };
    let mut args = vec![Val::Int(seen.len() as i64)];
    if let Some(model) = rebuild.model {
        args.push(Val::Text(model));
    }
    e.rows(&sql, &args).await?;
    Ok(true)
}
