//! Real deletion, for the consent purge: every version, index row and compartment row of the
//! resources given, gone in one transaction, with the audit records of what went.
//!
//! Everything else in the store keeps history (a delete writes a tombstone; replaced index rows
//! stay valid for the snapshots that read them). A patient who opted out of the exchange is owed
//! more: after the policy window their clinical data must not be held at all, so here the rows
//! themselves are removed and the resource looks like one that never existed. The audit log is
//! not touched (its triggers refuse it anyway): the records of past disclosures stay, and the
//! purge adds its own.
//!
//! Concurrency: on PostgreSQL the transaction first locks the `resources` rows it removes
//! (`FOR UPDATE`, in `rid` order, as a write batch does, so a purge and a write never wait on each
//! other in a cycle); a second purge of the same resources running at once waits for the first,
//! then finds nothing left, removes nothing and records nothing. On SQLite the single writer
//! serialises them. The audit records are made by the caller from what was actually removed, inside
//! the transaction, so the trail never claims a deletion that another process did.

use crate::exec::{Dialect, Exec, Val};
use crate::{NewAuditRecord, Result};

/// At most this many values are bound in one `IN (...)` list.
const CHUNK: usize = 500;

/// The tables whose rows belong to one resource (by `rid`), children before `resources`.
const ROW_TABLES: &[&str] = &[
    "idx_string",
    "idx_token",
    "idx_token_type",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
    "compartment",
    "versions",
];

/// One resource removed by [`crate::Store::purge`]: its type, id and how many versions (the
/// tombstone of a deletion included) it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub resource_type: String,
    pub id: String,
    pub versions: u64,
}

/// Makes the audit records of a purge from what it removed (called inside the transaction; an
/// empty list appends nothing).
pub type PurgeAudit = Box<dyn FnOnce(&[Purged]) -> Vec<NewAuditRecord> + Send>;

fn ph(e: &impl Exec, n: usize) -> String {
    e.dialect().placeholder(n)
}

fn list(e: &impl Exec, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| ph(e, i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every resource that is, or in any version was, in the compartment of one of `patients` (the
/// compartment rows of replaced versions are kept, so a resource that left the compartment or was
/// deleted is found too), and those Patients themselves, as `(type, id)`, sorted, without
/// `except_types`.
pub(crate) async fn compartment_members(
    e: &mut impl Exec,
    patients: &[String],
    except_types: &[String],
) -> Result<Vec<(String, String)>> {
    let mut found = std::collections::BTreeSet::new();
    for chunk in patients.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().map(|p| Val::Text(p.clone())).collect();
        let sql = format!(
            "SELECT DISTINCT r.type, r.id FROM compartment c JOIN resources r ON r.rid = c.rid \
             WHERE c.patient_id IN ({})",
            list(e, 1, chunk.len())
        );
        for row in e.rows(&sql, &args).await? {
            let mut row = row.into_iter();
            if let (Some(t), Some(id)) = (row.next(), row.next()) {
                found.insert((t.text()?, id.text()?));
            }
        }
        let sql = format!(
            "SELECT type, id FROM resources WHERE type = 'Patient' AND id IN ({})",
            list(e, 1, chunk.len())
        );
        for row in e.rows(&sql, &args).await? {
            let mut row = row.into_iter();
            if let (Some(t), Some(id)) = (row.next(), row.next()) {
                found.insert((t.text()?, id.text()?));
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|(t, _)| !except_types.contains(t))
        .collect())
}

/// Removes every row of `targets` (those that exist) inside the caller's transaction and appends
/// nothing itself: answers what was removed. PostgreSQL rows are locked first, in `rid` order.
pub(crate) async fn remove(e: &mut impl Exec, targets: &[(String, String)]) -> Result<Vec<Purged>> {
    let mut found: Vec<(i64, String, String)> = Vec::new();
    for (t, id) in targets {
        let sql = format!(
            "SELECT rid FROM resources WHERE type = {} AND id = {}",
            ph(e, 1),
            ph(e, 2)
        );
        let rows = e
            .rows(&sql, &[Val::Text(t.clone()), Val::Text(id.clone())])
            .await?;
        if let Some(rid) = rows.into_iter().next().and_then(|r| r.into_iter().next()) {
            found.push((rid.int()?, t.clone(), id.clone()));
        }
    }
    found.sort();
    found.dedup();
    let mut purged = Vec::new();
    for chunk in found.chunks(CHUNK) {
        let rids: Vec<Val> = chunk.iter().map(|(rid, _, _)| Val::Int(*rid)).collect();
        let ids = list(e, 1, chunk.len());
        // Locked (PostgreSQL) and read again: a purge that ran meanwhile removed some already.
        let lock = match e.dialect() {
            Dialect::Postgres => " ORDER BY rid FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let present: std::collections::HashSet<i64> = e
            .rows(
                &format!("SELECT rid FROM resources WHERE rid IN ({ids}){lock}"),
                &rids,
            )
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(|v| v.int())
            .collect::<Result<_>>()?;
        let mut versions: std::collections::HashMap<i64, u64> = std::collections::HashMap::new();
        for row in e
            .rows(
                &format!("SELECT rid, COUNT(*) FROM versions WHERE rid IN ({ids}) GROUP BY rid"),
                &rids,
            )
            .await?
        {
            let mut row = row.into_iter();
            if let (Some(rid), Some(n)) = (row.next(), row.next()) {
                versions.insert(rid.int()?, n.int()?.max(0) as u64);
            }
        }
        for table in ROW_TABLES {
            e.rows(&format!("DELETE FROM {table} WHERE rid IN ({ids})"), &rids)
                .await?;
        }
        e.rows(
            &format!("DELETE FROM resources WHERE rid IN ({ids})"),
            &rids,
        )
        .await?;
        for (rid, t, id) in chunk {
            if present.contains(rid) {
                purged.push(Purged {
                    resource_type: t.clone(),
                    id: id.clone(),
                    versions: versions.get(rid).copied().unwrap_or(0),
                });
            }
        }
    }
    Ok(purged)
}
