-- nutmeg store schema, version 2 (PostgreSQL): the audit log. Released migrations are never edited; add a new file instead.

-- The append-only, hash-chained audit log (see src/audit.rs for the hash). `seq` is 1, 2, 3... in
-- commit order, assigned by the store under the audit advisory lock (not a sequence: those leave
-- gaps when a transaction rolls back). `json` is TEXT, not JSONB, because the hash covers the
-- AuditEvent text exactly as the exchange gave it; the hashes are lowercase hex.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    recorded BIGINT NOT NULL,
    json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- No statement may change or remove a record. The store never tries; these refuse anyone else with
-- SQL access (a superuser can disable them, which the hash chain then shows).
CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
