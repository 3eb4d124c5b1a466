-- nutmeg store schema, version 8 (PostgreSQL): Direct secure messaging (the exchange as a HISP).
-- Released migrations are never edited; add a new file instead. Times are milliseconds since the
-- Unix epoch. Binary values (messages, sealed keys) are base64 text.

-- A Direct address the operator issued to a practitioner or organization of the participant
-- registry (`owner_kind` and `owner_id`: the Practitioner or Organization id). Kept lower case.
-- A revoked address receives nothing; the row stays, so the address is never issued again.
CREATE TABLE direct_addresses (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('practitioner', 'organization')),
    owner_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created BIGINT NOT NULL,
    revoked BIGINT
);
CREATE INDEX direct_addresses_domain ON direct_addresses (domain);

-- Certificates: address-bound (`subject` an address) or domain-bound (`subject` a domain), ours
-- with their private key sealed under the key-encryption key (`sealed_key`), or an outside
-- party's, known from configuration or discovery, without one. `serial` is the issuer's serial
-- in hex, unique with the issuer's name hash. `revoked` is when our CA revoked it (for its CRL).
CREATE TABLE direct_certificates (
    issuer TEXT NOT NULL,
    serial TEXT NOT NULL,
    subject TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    sealed_key TEXT,
    not_after BIGINT NOT NULL,
    created BIGINT NOT NULL,
    revoked BIGINT,
    PRIMARY KEY (issuer, serial)
);
CREATE INDEX direct_certificates_subject ON direct_certificates (subject);

-- Trust anchors per local domain, for mail received (`inbound`) or sent (`outbound`).
CREATE TABLE direct_anchors (
    domain TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    fingerprint TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    added BIGINT NOT NULL,
    PRIMARY KEY (domain, direction, fingerprint)
);

-- Mailboxes: what was delivered to a local address (decrypted and verified), newest last.
-- `kind` is `message`, `notification` (an MDN about something this address sent) or `dsn` (a
-- delivery failure this HISP reports to a local sender).
CREATE TABLE direct_messages (
    id TEXT PRIMARY KEY,
    mailbox TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'notification', 'dsn')),
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    raw TEXT NOT NULL,
    received BIGINT NOT NULL,
    read BIGINT
);
CREATE INDEX direct_messages_mailbox ON direct_messages (mailbox, received);

-- The outbound queue, one row per (message, recipient), and each row's delivery status:
-- `queued` (waiting, or being sent under a lease), `sent` (handed to the recipient's HISP),
-- `processed` / `dispatched` (its MDN came back), `failed`. A worker claims queued rows whose
-- `next_attempt` has come and whose lease (if any) has run out, by setting `lease_owner` and
-- `lease_until`; several processes sharing the database never take the same row (`FOR UPDATE
-- SKIP LOCKED`), and a crashed worker's rows are taken again when its lease expires. `content`
-- is the plain MIME entity to sign and encrypt at sending time.
CREATE TABLE direct_outbound (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'mdn')),
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'processed', 'dispatched', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX direct_outbound_due ON direct_outbound (next_attempt) WHERE status = 'queued';
CREATE INDEX direct_outbound_message ON direct_outbound (message_id, recipient);
CREATE INDEX direct_outbound_sent ON direct_outbound (updated) WHERE status = 'sent';
