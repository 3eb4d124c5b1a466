-- nutmeg store schema, version 1 (PostgreSQL). Released migrations are never edited; add a new file instead.

-- One row per logical resource: its current version. Text columns use the "C" collation so that
-- ordering is by code point: starts-with searches are index range scans.
CREATE TABLE resources (
    rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL
);
CREATE UNIQUE INDEX resources_type_id ON resources(type, id);
CREATE INDEX resources_type_rid ON resources(type, deleted, rid);

-- Every version ever written. `seq` only grows: it is the global order of history. `json` is NULL
-- for a deletion (a tombstone version).
CREATE TABLE versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid BIGINT NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    json JSONB
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
-- `n` numbers a version's rows so that (rid, from_seq, n) is a primary key, whose index serves
-- the replacement of a resource's rows on update.
-- `grp` and `comp` are set on the rows of composite parameters only.
CREATE TABLE idx_string (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    normalized TEXT COLLATE "C" NOT NULL, exact TEXT COLLATE "C" NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_string_lookup ON idx_string(param, normalized, rid, to_seq);

CREATE TABLE idx_token (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C", code TEXT COLLATE "C", text TEXT COLLATE "C", grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_token_lookup ON idx_token(param, code, system, rid, to_seq);

CREATE TABLE idx_token_type (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    type_system TEXT COLLATE "C", type_code TEXT COLLATE "C" NOT NULL, value TEXT COLLATE "C" NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_token_type_lookup ON idx_token_type(param, value, type_code, rid, to_seq);

CREATE TABLE idx_date (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    low BIGINT NOT NULL, high BIGINT NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_date_lookup ON idx_date(param, low, high, rid, to_seq);

CREATE TABLE idx_number (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_number_lookup ON idx_number(param, low, high, rid, to_seq);

CREATE TABLE idx_quantity (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C", code TEXT COLLATE "C", unit TEXT COLLATE "C", low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_quantity_lookup ON idx_quantity(param, low, high, rid, to_seq);

CREATE TABLE idx_reference (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C", target_id TEXT COLLATE "C", url TEXT COLLATE "C", version TEXT COLLATE "C", grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_reference_lookup ON idx_reference(param, target_id, target_type, rid, to_seq);
-- Chains, `_has` and includes always name the parameter, so the lookup index serves their joins too.
-- Most references are relative: the url index holds only the absolute ones.
CREATE INDEX idx_reference_url ON idx_reference(param, url, to_seq) WHERE url IS NOT NULL;

CREATE TABLE idx_uri (
    rid BIGINT NOT NULL, n BIGINT NOT NULL, param TEXT COLLATE "C" NOT NULL,
    uri TEXT COLLATE "C" NOT NULL, grp BIGINT, comp BIGINT,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, n)
);
CREATE INDEX idx_uri_lookup ON idx_uri(param, uri, rid, to_seq);

-- The Patients whose compartment a live resource version is in, valid over the same interval as
-- its index rows.
CREATE TABLE compartment (
    rid BIGINT NOT NULL, patient_id TEXT COLLATE "C" NOT NULL,
    from_seq BIGINT NOT NULL, to_seq BIGINT,
    PRIMARY KEY (rid, from_seq, patient_id)
);
CREATE INDEX compartment_patient ON compartment(patient_id, rid, to_seq);
