-- nutmeg store schema, version 10 (PostgreSQL): connecting to the exchange (issue 7): connection
-- applications, their onboarding checklists and changes of path, agreement documents and their
-- electronic signatures. Released migrations are never edited; add a new file instead. Times are
-- milliseconds since the Unix epoch.

-- A connection application as checked by `onboard::application::Form::check` (the store keeps what
-- it is given). `kind` is the applicant (`organization` or `solo-practitioner`); `ehr_kind` says
-- whether `ehr_value` is a catalog product id (`catalog`), the name an applicant typed (`other`), or
-- empty (`none`); `path` the onboarding path now (`ehr` or `secure-messaging`; changed only with a
-- row in `onboarding_path_changes`). `participant_id` is the participant (Organization id) the
-- application created, NULL until it did (or when the registry refused, a duplicate);
-- `user_id` the applicant's portal account, NULL when entered by an operator without one.
CREATE TABLE onboarding_applications (
    application_id TEXT PRIMARY KEY,
    received BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('organization', 'solo-practitioner')),
    legal_name TEXT NOT NULL,
    npi TEXT NOT NULL,
    address_line TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    postcode TEXT NOT NULL,
    ehr_kind TEXT NOT NULL CHECK (ehr_kind IN ('catalog', 'other', 'none')),
    ehr_value TEXT NOT NULL,
    signer_name TEXT NOT NULL,
    signer_title TEXT NOT NULL,
    signer_email TEXT NOT NULL,
    contact_name TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    contact_phone TEXT NOT NULL,
    path TEXT NOT NULL CHECK (path IN ('ehr', 'secure-messaging')),
    participant_id TEXT,
    user_id TEXT REFERENCES users (user_id)
);
CREATE INDEX onboarding_applications_npi ON onboarding_applications (npi);
CREATE INDEX onboarding_applications_user ON onboarding_applications (user_id);
CREATE INDEX onboarding_applications_participant ON onboarding_applications (participant_id);

-- The state licences named on an application (type code, number as boards compare them, state),
-- in the order given.
CREATE TABLE onboarding_licences (
    application_id TEXT NOT NULL REFERENCES onboarding_applications (application_id),
    ordinal BIGINT NOT NULL,
    licence_type TEXT NOT NULL,
    number TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (application_id, ordinal)
);
CREATE INDEX onboarding_licences_number ON onboarding_licences (number, state, licence_type);

-- Each checklist step done (a step code of `onboard::workflow::Step`), who did it (a user id, or
-- `applicant`/`system` as the caller says) and when. A step is done once per application.
CREATE TABLE onboarding_steps (
    application_id TEXT NOT NULL REFERENCES onboarding_applications (application_id),
    step TEXT NOT NULL,
    done_by TEXT NOT NULL,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (application_id, step)
);

-- An operator's change of path, with the reason, numbered 1, 2, 3... per application.
CREATE TABLE onboarding_path_changes (
    application_id TEXT NOT NULL REFERENCES onboarding_applications (application_id),
    seq BIGINT NOT NULL,
    from_path TEXT NOT NULL,
    to_path TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (application_id, seq)
);

-- A published version of an agreement: its exact text, the SHA-256 (lowercase hex) of the text's
-- UTF-8 bytes as published, and the participant types that must sign it (`required_for`: codes
-- separated by commas, `*` for all). Versions are never replaced; a new one is a new row.
CREATE TABLE agreement_documents (
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    required_for TEXT NOT NULL,
    published BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (kind, version)
);

-- A signature of one version: the digest of the text the signer was shown, the typed name and
-- title, the consent to sign electronically (always 1: a signature without it is never stored),
-- the time, the client address, the signer's portal account and the application (and participant)
-- signed for.
CREATE TABLE agreement_signatures (
    signature_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    signer_name TEXT NOT NULL,
    signer_title TEXT NOT NULL,
    consented BIGINT NOT NULL CHECK (consented = 1),
    signed_at BIGINT NOT NULL,
    client_address TEXT NOT NULL,
    user_id TEXT,
    application_id TEXT NOT NULL REFERENCES onboarding_applications (application_id),
    participant_id TEXT,
    FOREIGN KEY (kind, version) REFERENCES agreement_documents (kind, version)
);
CREATE INDEX agreement_signatures_application ON agreement_signatures (application_id, signed_at);
