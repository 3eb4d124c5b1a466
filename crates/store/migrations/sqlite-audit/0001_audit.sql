-- nutmeg audit database schema, version 1 (SQLite). Released migrations are never edited; add a new file instead.
--
-- On SQLite the audit log lives in a database file of its own beside the resources' (nutmeg.db ->
-- nutmeg-audit.db): every read appends a record, and a commit to the resources' file would make
-- every reader connection drop its page cache and memory map at its next transaction. The tables are
-- those of the main file's migrations 2 and 5, which stay there for records written before.

-- The append-only, hash-chained audit log (see src/audit.rs for the hash). `seq` is the rowid: 1, 2,
-- 3... in commit order, assigned by the store under the single writer; it can only hold integers.
-- `json` is the AuditEvent text exactly as the exchange gave it; the hashes are lowercase hex.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    recorded INTEGER NOT NULL,
    json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_recorded ON audit_log (recorded);

-- The (name, value) pairs each record is found by, as the exchange chose them, written in the
-- record's transaction. The chain does not cover these rows: they are derived from the records'
-- JSON, which it does.
CREATE TABLE audit_index (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (name, value, seq)
) WITHOUT ROWID;

-- No statement may change or remove a record or an index row. The store never tries; these refuse
-- anyone else who writes to the file with SQL (a determined attacker can drop them, which the hash
-- chain then shows).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_index_no_update BEFORE UPDATE ON audit_index
BEGIN
    SELECT RAISE(ABORT, 'audit_index is append-only');
END;
CREATE TRIGGER audit_index_no_delete BEFORE DELETE ON audit_index
BEGIN
    SELECT RAISE(ABORT, 'audit_index is append-only');
END;
