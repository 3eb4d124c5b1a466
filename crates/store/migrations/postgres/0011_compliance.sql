-- nutmeg store schema, version 11 (PostgreSQL): the EHR compatibility catalog and the mandate's
-- compliance roster (issue 7, sections 4 and 5). Released migrations are never edited; add a new
-- file instead. Times are milliseconds since the Unix epoch; calendar days are `YYYY-MM-DD` text.

-- The EHR compatibility catalog: one row per product version. `product_key` is the caller's
-- standardised "vendor product version" (`onboard::catalog::request_key` plus the version), so that
-- one product is not listed twice however it is typed. `capabilities` are the codes
-- (`fhir-r4 ccda hl7v2 direct`) separated by spaces.
CREATE TABLE ehr_products (
    product_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL UNIQUE,
    vendor TEXT NOT NULL,
    product TEXT NOT NULL,
    version TEXT,
    onc_certification TEXT,
    capabilities TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('connected', 'compatible', 'not-yet-compatible')),
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);

-- Providers' requests to add a product to the catalog or to review one in it. Counted per
-- `request_key` (`onboard::catalog::request_key(vendor, product)`), so the operator sees which
-- vendors to press. Only ever added to.
CREATE TABLE ehr_requests (
    request_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('add', 'review')),
    request_key TEXT NOT NULL,
    product_id TEXT REFERENCES ehr_products (product_id),
    vendor TEXT NOT NULL,
    product TEXT NOT NULL,
    version TEXT,
    requester TEXT NOT NULL,
    contact TEXT NOT NULL,
    note TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX ehr_requests_key ON ehr_requests (request_key);

-- Each import of a licensing board's roster (`nutmeg admin roster import FILE --state XX`).
CREATE TABLE roster_imports (
    import_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    imported BIGINT NOT NULL
);
CREATE INDEX roster_imports_state ON roster_imports (state, imported);

-- Licensees, one row per licence (type, number as `onboard::application::licence_number` keeps
-- it, state), with the import that last listed them. The current roster of a state is the
-- licensees of its latest import; a licence a later import no longer lists stays, with its older
-- import, out of the report.
CREATE TABLE licensees (
    licence_type TEXT NOT NULL,
    licence_number TEXT NOT NULL,
    licence_state TEXT NOT NULL,
    import_id TEXT NOT NULL REFERENCES roster_imports (import_id),
    line BIGINT NOT NULL,
    name TEXT NOT NULL,
    npi TEXT,
    status TEXT NOT NULL,
    address_line TEXT NOT NULL,
    city TEXT NOT NULL,
    postcode TEXT NOT NULL,
    county TEXT NOT NULL,
    PRIMARY KEY (licence_type, licence_number, licence_state)
);
CREATE INDEX licensees_import ON licensees (import_id, line);
CREATE INDEX licensees_number ON licensees (licence_number);

-- The operator's decision on a licensee's match (an ambiguous one, or a correction): the
-- participant or application they are, or none (`participant` NULL). Overrides the automatic match.
CREATE TABLE licensee_matches (
    licence_type TEXT NOT NULL,
    licence_number TEXT NOT NULL,
    licence_state TEXT NOT NULL,
    participant TEXT,
    decided_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    decided BIGINT NOT NULL,
    PRIMARY KEY (licence_type, licence_number, licence_state)
);

-- Exemptions the operator records per licensee: the mandate's exemption id, since when, and why.
CREATE TABLE licensee_exemptions (
    licence_type TEXT NOT NULL,
    licence_number TEXT NOT NULL,
    licence_state TEXT NOT NULL,
    exemption TEXT NOT NULL,
    since TEXT NOT NULL,
    reason TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded BIGINT NOT NULL,
    PRIMARY KEY (licence_type, licence_number, licence_state, exemption)
);
