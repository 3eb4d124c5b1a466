-- nutmeg store schema, version 6 (SQLite): portal accounts and their sessions. Released migrations
-- are never edited; add a new file instead.

-- A person who signs in to the portal. `login_key` is the login name folded to lower case by the
-- store (so `Alice` and `alice` are one login on both engines); `login` is as given. `role` is one of
-- the five portal roles; a participant's user names its participant (its Organization's id), a
-- patient the Patient the operator linked after identity proofing. `password_hash` is an argon2id
-- PHC string; `totp_secret` the second factor's secret (hex), or NULL without one; `last_totp_step`
-- the step of the last code accepted (a code of that step or earlier is refused). Times are seconds
-- since the Unix epoch.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    login TEXT NOT NULL,
    login_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator-admin', 'participant-admin', 'clinician', 'staff', 'patient')),
    participant_id TEXT,
    patient_id TEXT,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    last_totp_step INTEGER,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled'))
);

-- A signed-in portal session. The cookie holds a random secret; only its SHA-256 (hex) is kept
-- here, so a copy of the database signs nobody in. `csrf` is the session's form token; `expires`
-- the absolute end, `last_seen` the last request (for the idle limit), in seconds since the epoch.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    csrf TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires);
