-- nutmeg store schema, version 14 (postgres): invitations to set a portal account's password. Released
-- migrations are never edited; add a new file instead. An operator who enters an application (CLI,
-- API) or adds an account without a password gives its owner a one-time link instead; the link holds
-- a random secret, and only its SHA-256 (hex) is kept here, so a copy of the database sets nobody's
-- password. `expires` ends it; `used` is when it was taken (NULL: not yet), and a taken, expired
-- or replaced invitation sets nothing. Times are seconds since the Unix epoch.
CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    used BIGINT
);
CREATE INDEX invitations_user ON invitations (user_id);
