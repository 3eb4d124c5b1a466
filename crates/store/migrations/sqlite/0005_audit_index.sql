-- nutmeg store schema, version 5 (SQLite): the audit log's index. Released migrations are never edited; add a new file instead.

-- The (name, value) pairs each audit record is found by, as the exchange chose them (a patient, the
-- requesting participant, the outcome...), written in the record's transaction. The primary key
-- serves a lookup by (name, value) in seq order, newest first by reading it backwards. The hash
-- chain does not cover these rows: they are derived from the records' JSON, which it does.
-- Records appended before this migration have no rows here.
CREATE TABLE audit_index (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (name, value, seq)
) WITHOUT ROWID;

-- Searches by time alone.
CREATE INDEX audit_log_recorded ON audit_log (recorded);

-- Like the log itself, the index only grows.
CREATE TRIGGER audit_index_no_update BEFORE UPDATE ON audit_index
BEGIN
    SELECT RAISE(ABORT, 'audit_index is append-only');
END;
CREATE TRIGGER audit_index_no_delete BEFORE DELETE ON audit_index
BEGIN
    SELECT RAISE(ABORT, 'audit_index is append-only');
END;
