-- nutmeg audit database schema, version 2 (SQLite). Released migrations are never edited; add a new file instead.
--
-- From version 2 the audit log's durable copy is a file beside this database (nutmeg-audit.log; its
-- format is in src/audit_file.rs): a read's record is synced there, with one write and one
-- fdatasync per group commit, before the read answers. `audit_log` and `audit_index` here become the
-- searchable copy, filled from the file in large batches off the request's path (and brought up to
-- the file's end before every search of the log). This row says how far the copy goes: the last
-- record copied, its hash, and the file offset where the record after it starts.
CREATE TABLE audit_copied (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    file_offset INTEGER NOT NULL
);
