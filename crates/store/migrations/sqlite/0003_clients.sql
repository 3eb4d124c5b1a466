-- nutmeg store schema, version 3 (SQLite): SMART Backend Services clients, the assertion ids they
-- used, and the exchange's secrets. Released migrations are never edited; add a new file instead.

-- A registered client system of a participant. Exactly one of `jwks` (the JWKS document as given)
-- and `jwks_url` is set; `scopes` is the registered scope string; `created` is seconds since the
-- Unix epoch; `status` is 'active' or 'revoked'.
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    participant_id TEXT NOT NULL,
    jwks TEXT,
    jwks_url TEXT,
    scopes TEXT NOT NULL,
    created INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked'))
);

-- The `jti` of each client assertion accepted, kept until the assertion expires (seconds since the
-- Unix epoch), so that none is accepted twice; the primary key makes the check atomic.
CREATE TABLE client_jti (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_jti_expires ON client_jti (expires_at);

-- Secrets the exchange makes for itself (the access-token signing key), shared by its processes.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
