-- nutmeg store schema, version 5 (PostgreSQL): the audit log's index. Released migrations are never edited; add a new file instead.

-- The (name, value) pairs each audit record is found by, as the exchange chose them (a patient, the
-- requesting participant, the outcome...), written in the record's transaction. The primary key
-- serves a lookup by (name, value) in seq order, newest first by reading it backwards. The hash
-- chain does not cover these rows: they are derived from the records' JSON, which it does.
-- Records appended before this migration have no rows here.
CREATE TABLE audit_index (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (name, value, seq)
);

-- Searches by time alone.
CREATE INDEX audit_log_recorded ON audit_log (recorded);

-- Like the log itself, the index only grows.
CREATE FUNCTION audit_index_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_index is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_index_no_update_delete BEFORE UPDATE OR DELETE ON audit_index
    FOR EACH ROW EXECUTE FUNCTION audit_index_refuse();
CREATE TRIGGER audit_index_no_truncate BEFORE TRUNCATE ON audit_index
    FOR EACH STATEMENT EXECUTE FUNCTION audit_index_refuse();
