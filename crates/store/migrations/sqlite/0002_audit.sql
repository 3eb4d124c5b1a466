-- nutmeg store schema, version 2 (SQLite): the audit log. Released migrations are never edited; add a new file instead.

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

-- No statement may change or remove a record. The store never tries; these refuse anyone else who
-- writes to the file with SQL (a determined attacker can drop them, which the hash chain then shows).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
