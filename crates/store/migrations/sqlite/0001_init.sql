-- nutmeg store schema, version 1 (SQLite). Released migrations are never edited; add a new file instead.

-- One row per logical resource: its current version. `rid` is the rowid, so "type, then rid" order
-- comes from the index on `type` (SQLite appends the rowid to every index).
CREATE TABLE resources (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE UNIQUE INDEX resources_type_id ON resources(type, id);
CREATE INDEX resources_type_rid ON resources(type, deleted);

-- Every version ever written. `seq` (the rowid) only grows because versions are never deleted: it is
-- the global order of history.
CREATE TABLE versions (
    seq INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE UNIQUE INDEX versions_rid_version ON versions(rid, version);
-- Type-level history, newest first, without reading every version of the type.
CREATE INDEX versions_type_seq ON versions(type, seq);

-- Index rows of the live versions of resources, each valid over an interval of the commit sequence:
-- from `from_seq` (the commit that wrote the version) until `to_seq` (the commit that replaced or
-- deleted it; NULL while current). Current searches read `to_seq IS NULL`; later pages of a search
-- read the rows valid at the sequence number their first page saw, so that updates and deletions
-- meanwhile neither move nor drop a match. `to_seq` ends every lookup index, so current searches
-- skip replaced rows inside the index. Replaced rows are kept (a pruner may later delete those whose
-- `to_seq` is older than any paging cursor still honoured); nothing prunes them yet.
-- `n` numbers a version's rows so that (rid, from_seq, n) is a primary key: the tables are clustered by rid
-- (cheap replacement on update) without a rowid b-tree.
-- `grp` and `comp` are set on the rows of composite parameters only.
CREATE TABLE idx_string (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    normalized TEXT NOT NULL, exact TEXT NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_string_lookup ON idx_string(param, normalized, rid, to_seq);

CREATE TABLE idx_token (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_token_lookup ON idx_token(param, code, system, rid, to_seq);

CREATE TABLE idx_token_type (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    type_system TEXT, type_code TEXT NOT NULL, value TEXT NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_token_type_lookup ON idx_token_type(param, value, type_code, rid, to_seq);

CREATE TABLE idx_date (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_date_lookup ON idx_date(param, low, high, rid, to_seq);

CREATE TABLE idx_number (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    low REAL NOT NULL, high REAL NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_number_lookup ON idx_number(param, low, high, rid, to_seq);

CREATE TABLE idx_quantity (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, unit TEXT, low REAL NOT NULL, high REAL NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_quantity_lookup ON idx_quantity(param, low, high, rid, to_seq);

CREATE TABLE idx_reference (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT, version TEXT, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_reference_lookup ON idx_reference(param, target_id, target_type, rid, to_seq);
-- Chains, `_has` and includes always name the parameter, so the lookup index serves their joins too.
-- Most references are relative: the url index holds only the absolute ones.
CREATE INDEX idx_reference_url ON idx_reference(param, url, to_seq) WHERE url IS NOT NULL;

CREATE TABLE idx_uri (
    rid INTEGER NOT NULL, n INTEGER NOT NULL, param TEXT NOT NULL,
    uri TEXT NOT NULL, grp INTEGER, comp INTEGER,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, n)
) WITHOUT ROWID;
CREATE INDEX idx_uri_lookup ON idx_uri(param, uri, rid, to_seq);

-- The Patients whose compartment a live resource version is in, valid over the same interval as
-- its index rows.
CREATE TABLE compartment (
    rid INTEGER NOT NULL, patient_id TEXT NOT NULL,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    PRIMARY KEY (rid, from_seq, patient_id)
) WITHOUT ROWID;
CREATE INDEX compartment_patient ON compartment(patient_id, rid, to_seq);
