//! Schema migrations: the SQL files under `migrations/`, embedded in the binary, applied in order and
//! recorded with a checksum. A migration once applied is never edited: the store refuses to start if
//! an applied migration's checksum no longer matches the file it was built with.

use crate::exec::fnv1a;
use crate::{Result, StoreError};

#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub(crate) fn checksum(&self) -> String {
        format!("{:016x}", fnv1a(self.sql.as_bytes()))
    }
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: include_str!("../migrations/sqlite/0002_audit.sql"),
    },
    Migration {
        version: 3,
        name: "clients",
        sql: include_str!("../migrations/sqlite/0003_clients.sql"),
    },
    Migration {
        version: 4,
        name: "relationships",
        sql: include_str!("../migrations/sqlite/0004_relationships.sql"),
    },
    Migration {
        version: 5,
        name: "audit_index",
        sql: include_str!("../migrations/sqlite/0005_audit_index.sql"),
    },
    Migration {
        version: 6,
        name: "accounts",
        sql: include_str!("../migrations/sqlite/0006_accounts.sql"),
    },
    Migration {
        version: 7,
        name: "mpi",
        sql: include_str!("../migrations/sqlite/0007_mpi.sql"),
    },
    Migration {
        version: 8,
        name: "direct",
        sql: include_str!("../migrations/sqlite/0008_direct.sql"),
    },
    Migration {
        version: 9,
        name: "inbox",
        sql: include_str!("../migrations/sqlite/0009_inbox.sql"),
    },
    Migration {
        version: 10,
        name: "onboarding",
        sql: include_str!("../migrations/sqlite/0010_onboarding.sql"),
    },
    Migration {
        version: 11,
        name: "compliance",
        sql: include_str!("../migrations/sqlite/0011_compliance.sql"),
    },
    Migration {
        version: 12,
        name: "user_practitioner",
        sql: include_str!("../migrations/sqlite/0012_user_practitioner.sql"),
    },
    Migration {
        version: 13,
        name: "outbound_content",
        sql: include_str!("../migrations/sqlite/0013_outbound_content.sql"),
    },
    Migration {
        version: 14,
        name: "invitations",
        sql: include_str!("../migrations/sqlite/0014_invitations.sql"),
    },
    Migration {
        version: 15,
        name: "application_decisions",
        sql: include_str!("../migrations/sqlite/0015_application_decisions.sql"),
    },
];

/// The SQLite audit database's own migrations (the audit log is a file of its own there).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_AUDIT: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit",
        sql: include_str!("../migrations/sqlite-audit/0001_audit.sql"),
    },
    Migration {
        version: 2,
        name: "audit_file",
        sql: include_str!("../migrations/sqlite-audit/0002_audit_file.sql"),
    },
    Migration {
        version: 3,
        name: "audit_places",
        sql: include_str!("../migrations/sqlite-audit/0003_audit_places.sql"),
    },
];

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: include_str!("../migrations/postgres/0002_audit.sql"),
    },
    Migration {
        version: 3,
        name: "clients",
        sql: include_str!("../migrations/postgres/0003_clients.sql"),
    },
    Migration {
        version: 4,
        name: "relationships",
        sql: include_str!("../migrations/postgres/0004_relationships.sql"),
    },
    Migration {
        version: 5,
        name: "audit_index",
        sql: include_str!("../migrations/postgres/0005_audit_index.sql"),
    },
    Migration {
        version: 6,
        name: "accounts",
        sql: include_str!("../migrations/postgres/0006_accounts.sql"),
    },
    Migration {
        version: 7,
        name: "mpi",
        sql: include_str!("../migrations/postgres/0007_mpi.sql"),
    },
    Migration {
        version: 8,
        name: "direct",
        sql: include_str!("../migrations/postgres/0008_direct.sql"),
    },
    Migration {
        version: 9,
        name: "inbox",
        sql: include_str!("../migrations/postgres/0009_inbox.sql"),
    },
    Migration {
        version: 10,
        name: "onboarding",
        sql: include_str!("../migrations/postgres/0010_onboarding.sql"),
    },
    Migration {
        version: 11,
        name: "compliance",
        sql: include_str!("../migrations/postgres/0011_compliance.sql"),
    },
    Migration {
        version: 12,
        name: "user_practitioner",
        sql: include_str!("../migrations/postgres/0012_user_practitioner.sql"),
    },
    Migration {
        version: 13,
        name: "outbound_content",
        sql: include_str!("../migrations/postgres/0013_outbound_content.sql"),
    },
    Migration {
        version: 14,
        name: "invitations",
        sql: include_str!("../migrations/postgres/0014_invitations.sql"),
    },
    Migration {
        version: 15,
        name: "application_decisions",
        sql: include_str!("../migrations/postgres/0015_application_decisions.sql"),
    },
];

/// The migrations still to apply, given those already applied as `(version, checksum)`; an error if
/// an applied one was changed or is unknown to this build.
pub(crate) fn pending<'m>(
    all: &'m [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'m Migration>> {
    let mut problems = Vec::new();
    for (version, checksum) in applied {
        match all.iter().find(|m| m.version == *version) {
            Some(m) if m.checksum() == *checksum => {}
            Some(m) => problems.push(format!(
                "migration {version} ({}) was changed after it was applied (checksum {checksum}, now {})",
                m.name,
                m.checksum()
            )),
            None => problems.push(format!("migration {version} is applied but unknown to this version of nutmeg")),
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Open(problems.join("; ")));
    }
    Ok(all
        .iter()
        .filter(|m| applied.iter().all(|(v, _)| *v != m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "CREATE TABLE b (x INTEGER);",
        },
    ];

    fn check(applied: &[(i64, &str)], expected: std::result::Result<Vec<i64>, &str>) {
        let applied: Vec<(i64, String)> =
            applied.iter().map(|(v, c)| (*v, c.to_string())).collect();
        let got = pending(ALL, &applied).map(|p| p.iter().map(|m| m.version).collect::<Vec<_>>());
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected),
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn applies_what_is_missing_and_refuses_edited_migrations() {
        let one = ALL[0].checksum();
        check(&[], Ok(vec![1, 2]));
        check(&[(1, &one)], Ok(vec![2]));
        check(&[(1, "0000000000000000")], Err("was changed"));
        check(&[(1, &one), (7, "x")], Err("unknown"));
    }
}
