-- nutmeg audit database schema, version 3 (SQLite). Released migrations are never edited; add a new file instead.
--
-- From version 3 the searchable copy keeps where each record is in the log file (nutmeg-audit.log),
-- not its text: a search finds the records' places here and reads them from the file, so the
-- AuditEvent text is written to disk once (the copy had doubled the bytes written per read, and the
-- checkpoints that followed). The tables of versions 1 and 2 are renamed: what they hold is either
-- a copy the file already has (version 2) or, in a database from before the log had a file (version
-- 1), the records themselves; the store writes those to a new file if there is none, then drops the
-- renamed tables, and builds the new copy from the file.
DROP TRIGGER audit_log_no_update;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_index_no_update;
DROP TRIGGER audit_index_no_delete;
DROP INDEX audit_log_recorded;
ALTER TABLE audit_log RENAME TO audit_earlier;
ALTER TABLE audit_index RENAME TO audit_earlier_index;
ALTER TABLE audit_copied RENAME TO audit_earlier_copied;

-- One row per record of the log file, in commit order: its number, time and hash as the file's
-- header gives them, and the bytes of its line (header, text and newline) in the file.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    recorded INTEGER NOT NULL,
    hash TEXT NOT NULL,
    file_offset INTEGER NOT NULL,
    length INTEGER NOT NULL
);
CREATE INDEX audit_log_recorded ON audit_log (recorded);

-- The (name, value) pairs each record is found by, from the record's header in the file.
CREATE TABLE audit_index (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (name, value, seq)
) WITHOUT ROWID;

-- How far the copy goes: the last record copied, its hash, and the file offset where the record
-- after it starts.
CREATE TABLE audit_copied (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    file_offset INTEGER NOT NULL
);

-- As before: no statement may change or remove a row of the copy (`nutmeg admin audit verify`
-- compares it with the file all the same).
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
