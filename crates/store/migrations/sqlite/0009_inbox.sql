-- nutmeg store schema, version 9 (SQLite): the web inbox. Released migrations are never edited;
-- add a new file instead. Times are milliseconds since the Unix epoch.

-- Which portal accounts (`users`) read and send as which Direct address. An address issued to a
-- solo therapist has one user; an organization's address may have several (the practice's staff).
-- Bound by the operator (`nutmeg admin direct address bind ADDRESS --user LOGIN`); the web inbox
-- and SMTP submission both ask `Store::user_direct_addresses`. A revoked address stays bound but
-- neither receives nor sends.
CREATE TABLE direct_address_users (
    address TEXT NOT NULL REFERENCES direct_addresses (address),
    user_id TEXT NOT NULL REFERENCES users (user_id),
    added INTEGER NOT NULL,
    PRIMARY KEY (address, user_id)
);
CREATE INDEX direct_address_users_user ON direct_address_users (user_id);

-- A sender's outgoing messages, newest first (the inbox's "sent" list).
CREATE INDEX direct_outbound_sender ON direct_outbound (sender, created);
