-- nutmeg store schema, version 7 (sqlite): the master patient index's enterprise identities. Released
-- migrations are never edited; add a new file instead. The exchange decides (it scores records and
-- chooses identities); the store keeps what it decided, under one lock so that processes sharing a
-- database link one record at a time.

-- Every indexed Patient and the enterprise identity it is linked to. `method` is how it got there:
-- 'auto' (scored), 'new' (nothing matched: an identity of its own) or 'manual' (an operator's
-- decision holds it there). `record` is the exchange's matching record of the Patient (JSON), kept
-- so that candidates are scored without reading their resources. Times are ms since the epoch.
CREATE TABLE mpi_links (
    patient_id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('auto', 'new', 'manual')),
    score REAL,
    record TEXT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX mpi_links_identity ON mpi_links (identity_id);

-- The blocking keys of each linked Patient (hashed by the exchange), to find candidates.
CREATE TABLE mpi_keys (
    key BIGINT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (key, patient_id)
) WITHOUT ROWID;
CREATE INDEX mpi_keys_patient ON mpi_keys (patient_id);

-- Operators' decisions about a pair of Patients (patient_a < patient_b): the same person or not.
-- Hard constraints: no later linking, incremental or in batch, goes against them.
CREATE TABLE mpi_decisions (
    patient_a TEXT NOT NULL,
    patient_b TEXT NOT NULL,
    same BIGINT NOT NULL CHECK (same IN (0, 1)),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    decided BIGINT NOT NULL,
    PRIMARY KEY (patient_a, patient_b)
) WITHOUT ROWID;
CREATE INDEX mpi_decisions_b ON mpi_decisions (patient_b);

-- Possible matches waiting for an operator (patient_a < patient_b): pairs scored above the review
-- threshold whose Patients are linked to different identities.
CREATE TABLE mpi_reviews (
    patient_a TEXT NOT NULL,
    patient_b TEXT NOT NULL,
    score REAL NOT NULL,
    grade TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (patient_a, patient_b)
) WITHOUT ROWID;
CREATE INDEX mpi_reviews_b ON mpi_reviews (patient_b);

-- Every change of a Patient's identity: who (an operator's id, or 'system'), when, why.
CREATE TABLE mpi_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    identity_id TEXT,
    previous_identity TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX mpi_history_patient ON mpi_history (patient_id, seq);
CREATE INDEX mpi_history_identity ON mpi_history (identity_id, seq);

-- One row: the model the linking scores with (JSON; NULL: the exchange's built-in one), its
-- version (bumped when it is replaced), and how many Patients are linked (the model's prior is
-- scaled to it).
CREATE TABLE mpi_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    model TEXT,
    model_version BIGINT NOT NULL,
    population BIGINT NOT NULL
);
INSERT INTO mpi_state (id, model, model_version, population) VALUES (1, NULL, 0, 0);
