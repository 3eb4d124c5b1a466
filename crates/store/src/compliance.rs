//! The EHR compatibility catalog and the mandate's compliance roster (migration 0011), with the
//! SQL shared by both engines.
//!
//! The store keeps what it is given and decides nothing: product keys and request keys are the
//! caller's standardised names (`onboard::catalog::request_key`), statuses and capabilities their
//! codes, licence numbers as `onboard::application::licence_number` keeps them, and calendar days
//! as `YYYY-MM-DD`. Whether a licensee is compliant is `onboard::mandate::Mandate::evaluate`'s
//! decision, made above the store from what it reads here.
//!
//! A roster import is one transaction: the import's row and every licensee it lists (inserted, or
//! updated to point at this import), or nothing. The current roster of a state is the licensees
//! whose last import is that state's latest.

use crate::exec::{Exec, Val};
use crate::{Result, StoreError};

/// One product version in the EHR compatibility catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EhrProduct {
    pub product_id: String,
    /// The standardised "vendor product version", unique.
    pub product_key: String,
    pub vendor: String,
    pub product: String,
    pub version: Option<String>,
    pub onc_certification: Option<String>,
    /// Capability codes (`fhir-r4`, `ccda`, `hl7v2`, `direct`).
    pub capabilities: Vec<String>,
    /// `connected`, `compatible` or `not-yet-compatible`.
    pub status: String,
    pub created: i64,
    pub updated: i64,
}

/// A provider's request to add a product to the catalog or review one in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EhrRequest {
    pub request_id: String,
    /// `add` or `review`.
    pub kind: String,
    /// The standardised "vendor product" the request is counted under.
    pub request_key: String,
    /// The catalog's product, for a review.
    pub product_id: Option<String>,
    pub vendor: String,
    pub product: String,
    pub version: Option<String>,
    /// Who asked (a name) and how to reach them (an email address or telephone number).
    pub requester: String,
    pub contact: String,
    pub note: String,
    pub created: i64,
}

/// One import of a licensing board's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterImport {
    pub import_id: String,
    /// The board's state (two letters).
    pub state: String,
    /// Where it came from (the file's name).
    pub source: String,
    /// The SHA-256 (hex) of the file's bytes.
    pub sha256: String,
    /// Data rows in the file, and how many of them were refused.
    pub rows: i64,
    pub rejected: i64,
    pub imported: i64,
}

/// A licence: type code, number (as kept), state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LicenceKey {
    pub licence_type: String,
    pub licence_number: String,
    pub licence_state: String,
}

/// A licensee of a roster, with the import that last listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLicensee {
    pub licence: LicenceKey,
    pub import_id: String,
    /// The line of the board's file.
    pub line: i64,
    pub name: String,
    pub npi: Option<String>,
    pub status: String,
    pub address_line: String,
    pub city: String,
    pub postcode: String,
    pub county: String,
}

/// The operator's decision on whom a licensee is (overriding the automatic match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchDecision {
    pub licence: LicenceKey,
    /// The participant or application; `None`: nobody the exchange knows.
    pub participant: Option<String>,
    pub decided_by: String,
    pub reason: String,
    pub decided: i64,
}

/// An exemption the operator recorded for a licensee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseeExemption {
    pub licence: LicenceKey,
    /// The mandate's exemption id.
    pub exemption: String,
    /// `YYYY-MM-DD`.
    pub since: String,
    pub reason: String,
    pub recorded_by: String,
    pub recorded: i64,
}

const PRODUCT_COLUMNS: &str = "product_id, product_key, vendor, product, version, \
     onc_certification, capabilities, status, created, updated";
const REQUEST_COLUMNS: &str = "request_id, kind, request_key, product_id, vendor, product, \
     version, requester, contact, note, created";
const LICENSEE_COLUMNS: &str = "licence_type, licence_number, licence_state, import_id, line, \
     name, npi, status, address_line, city, postcode, county";
/// Licensees written per statement (12 parameters each, well inside both engines' limits).
const LICENSEES_PER_STATEMENT: usize = 200;

fn optional_text(v: Val) -> Result<Option<String>> {
    match v {
        Val::Null => Ok(None),
        other => other.text().map(Some),
    }
}

fn text_or_null(v: &Option<String>) -> Val {
    v.as_ref().map_or(Val::Null, |s| Val::Text(s.clone()))
}

fn text(s: &str) -> Val {
    Val::Text(s.to_string())
}

fn placeholders(e: &impl Exec, from: usize, n: usize) -> String {
    let d = e.dialect();
    (from..from + n)
        .map(|i| d.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

fn product_from_row(row: Vec<Val>) -> Result<EhrProduct> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(EhrProduct {
        product_id: next().text()?,
        product_key: next().text()?,
        vendor: next().text()?,
        product: next().text()?,
        version: optional_text(next())?,
        onc_certification: optional_text(next())?,
        capabilities: next()
            .text()?
            .split(' ')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        status: next().text()?,
        created: next().int()?,
        updated: next().int()?,
    })
}

fn product_args(p: &EhrProduct) -> Vec<Val> {
    vec![
        text(&p.product_id),
        text(&p.product_key),
        text(&p.vendor),
        text(&p.product),
        text_or_null(&p.version),
        text_or_null(&p.onc_certification),
        Val::Text(p.capabilities.join(" ")),
        text(&p.status),
        Val::Int(p.created),
        Val::Int(p.updated),
    ]
}

/// Adds a product; `StoreError::Conflict` if its id or key is taken.
pub(crate) async fn add_product(e: &mut impl Exec, p: &EhrProduct) -> Result<()> {
    let sql = format!(
        "INSERT INTO ehr_products ({PRODUCT_COLUMNS}) VALUES ({}) ON CONFLICT DO NOTHING \
         RETURNING product_id",
        placeholders(e, 1, 10)
    );
    if e.rows(&sql, &product_args(p)).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "ehr product".into(),
            id: p.product_key.clone(),
        });
    }
    Ok(())
}

/// Adds the products whose key is new and updates the others (keeping their id and creation
/// time); answers (added, updated). Meant to run in one transaction.
pub(crate) async fn import_products(
    e: &mut impl Exec,
    products: &[EhrProduct],
) -> Result<(usize, usize)> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO ehr_products ({PRODUCT_COLUMNS}) VALUES ({}) ON CONFLICT (product_key) DO \
         UPDATE SET vendor = excluded.vendor, product = excluded.product, version = \
         excluded.version, onc_certification = excluded.onc_certification, capabilities = \
         excluded.capabilities, status = excluded.status, updated = excluded.updated \
         RETURNING product_id",
        placeholders(e, 1, 10)
    );
    let exists = format!(
        "SELECT product_id FROM ehr_products WHERE product_key = {}",
        d.placeholder(1)
    );
    let (mut added, mut updated) = (0, 0);
    for p in products {
        let was = !e.rows(&exists, &[text(&p.product_key)]).await?.is_empty();
        e.rows(&sql, &product_args(p)).await?;
        if was {
            updated += 1;
        } else {
            added += 1;
        }
    }
    Ok((added, updated))
}

pub(crate) async fn products(e: &mut impl Exec) -> Result<Vec<EhrProduct>> {
    let sql =
        format!("SELECT {PRODUCT_COLUMNS} FROM ehr_products ORDER BY vendor, product, version");
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(product_from_row)
        .collect()
}

pub(crate) async fn set_product_status(
    e: &mut impl Exec,
    product_id: &str,
    status: &str,
    now: i64,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE ehr_products SET status = {}, updated = {} WHERE product_id = {} RETURNING product_id",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    Ok(!e
        .rows(&sql, &[text(status), Val::Int(now), text(product_id)])
        .await?
        .is_empty())
}

pub(crate) async fn add_request(e: &mut impl Exec, r: &EhrRequest) -> Result<()> {
    let sql = format!(
        "INSERT INTO ehr_requests ({REQUEST_COLUMNS}) VALUES ({}) ON CONFLICT DO NOTHING \
         RETURNING request_id",
        placeholders(e, 1, 11)
    );
    let args = [
        text(&r.request_id),
        text(&r.kind),
        text(&r.request_key),
        text_or_null(&r.product_id),
        text(&r.vendor),
        text(&r.product),
        text_or_null(&r.version),
        text(&r.requester),
        text(&r.contact),
        text(&r.note),
        Val::Int(r.created),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "ehr request".into(),
            id: r.request_id.clone(),
        });
    }
    Ok(())
}

pub(crate) async fn requests(e: &mut impl Exec) -> Result<Vec<EhrRequest>> {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM ehr_requests ORDER BY created, request_id");
    let rows = e.rows(&sql, &[]).await?;
    rows.into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            Ok(EhrRequest {
                request_id: next().text()?,
                kind: next().text()?,
                request_key: next().text()?,
                product_id: optional_text(next())?,
                vendor: next().text()?,
                product: next().text()?,
                version: optional_text(next())?,
                requester: next().text()?,
                contact: next().text()?,
                note: next().text()?,
                created: next().int()?,
            })
        })
        .collect()
}

/// Stores an import and its licensees (meant to run in one transaction): new licences are
/// inserted, known ones updated to this import's row.
pub(crate) async fn import_roster(
    e: &mut impl Exec,
    import: &RosterImport,
    licensees: &[StoredLicensee],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO roster_imports (import_id, state, source, sha256, row_count, rejected, \
         imported) VALUES ({}) ON CONFLICT DO NOTHING RETURNING import_id",
        placeholders(e, 1, 7)
    );
    let args = [
        text(&import.import_id),
        text(&import.state),
        text(&import.source),
        text(&import.sha256),
        Val::Int(import.rows),
        Val::Int(import.rejected),
        Val::Int(import.imported),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "roster import".into(),
            id: import.import_id.clone(),
        });
    }
    for chunk in licensees.chunks(LICENSEES_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(e, 1 + i * 12, 12)))
            .collect();
        let sql = format!(
            "INSERT INTO licensees ({LICENSEE_COLUMNS}) VALUES {} ON CONFLICT (licence_type, \
             licence_number, licence_state) DO UPDATE SET import_id = excluded.import_id, line = \
             excluded.line, name = excluded.name, npi = excluded.npi, status = excluded.status, \
             address_line = excluded.address_line, city = excluded.city, postcode = \
             excluded.postcode, county = excluded.county",
            values.join(", ")
        );
        let mut args = Vec::with_capacity(chunk.len() * 12);
        for l in chunk {
            args.extend([
                text(&l.licence.licence_type),
                text(&l.licence.licence_number),
                text(&l.licence.licence_state),
                text(&import.import_id),
                Val::Int(l.line),
                text(&l.name),
                text_or_null(&l.npi),
                text(&l.status),
                text(&l.address_line),
                text(&l.city),
                text(&l.postcode),
                text(&l.county),
            ]);
        }
        e.rows(&sql, &args).await?;
    }
    Ok(())
}

pub(crate) async fn roster_imports(e: &mut impl Exec) -> Result<Vec<RosterImport>> {
    let rows = e
        .rows(
            "SELECT import_id, state, source, sha256, row_count, rejected, imported \
             FROM roster_imports ORDER BY imported, import_id",
            &[],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            Ok(RosterImport {
                import_id: next().text()?,
                state: next().text()?,
                source: next().text()?,
                sha256: next().text()?,
                rows: next().int()?,
                rejected: next().int()?,
                imported: next().int()?,
            })
        })
        .collect()
}

fn licensee_from_row(row: Vec<Val>) -> Result<StoredLicensee> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(StoredLicensee {
        licence: LicenceKey {
            licence_type: next().text()?,
            licence_number: next().text()?,
            licence_state: next().text()?,
        },
        import_id: next().text()?,
        line: next().int()?,
        name: next().text()?,
        npi: optional_text(next())?,
        status: next().text()?,
        address_line: next().text()?,
        city: next().text()?,
        postcode: next().text()?,
        county: next().text()?,
    })
}

/// The latest import of each state, by time (then id).
const LATEST_IMPORTS: &str = "SELECT r.import_id FROM roster_imports r WHERE NOT EXISTS \
     (SELECT 1 FROM roster_imports s WHERE s.state = r.state AND (s.imported > r.imported OR \
     (s.imported = r.imported AND s.import_id > r.import_id)))";

/// The current roster: every licensee of each state's latest import, by state then line.
pub(crate) async fn licensees(e: &mut impl Exec) -> Result<Vec<StoredLicensee>> {
    let sql = format!(
        "SELECT {LICENSEE_COLUMNS} FROM licensees WHERE import_id IN ({LATEST_IMPORTS}) \
         ORDER BY import_id, line"
    );
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(licensee_from_row)
        .collect()
}

/// The current roster's licensees with this licence number (any type or state).
pub(crate) async fn licensees_by_number(
    e: &mut impl Exec,
    number: &str,
) -> Result<Vec<StoredLicensee>> {
    let sql = format!(
        "SELECT {LICENSEE_COLUMNS} FROM licensees WHERE licence_number = {} AND import_id IN \
         ({LATEST_IMPORTS}) ORDER BY licence_state, licence_type",
        e.dialect().placeholder(1)
    );
    e.rows(&sql, &[text(number)])
        .await?
        .into_iter()
        .map(licensee_from_row)
        .collect()
}

fn key_args(k: &LicenceKey) -> [Val; 3] {
    [
        text(&k.licence_type),
        text(&k.licence_number),
        text(&k.licence_state),
    ]
}

/// Records (or replaces) the operator's decision on a licensee's match; `false` if the store
/// holds no such licensee.
pub(crate) async fn decide_match(e: &mut impl Exec, m: &MatchDecision) -> Result<bool> {
    if !licensee_exists(e, &m.licence).await? {
        return Ok(false);
    }
    let sql = format!(
        "INSERT INTO licensee_matches (licence_type, licence_number, licence_state, participant, \
         decided_by, reason, decided) VALUES ({}) ON CONFLICT (licence_type, licence_number, \
         licence_state) DO UPDATE SET participant = excluded.participant, decided_by = \
         excluded.decided_by, reason = excluded.reason, decided = excluded.decided",
        placeholders(e, 1, 7)
    );
    let mut args = key_args(&m.licence).to_vec();
    args.extend([
        text_or_null(&m.participant),
        text(&m.decided_by),
        text(&m.reason),
        Val::Int(m.decided),
    ]);
    e.rows(&sql, &args).await?;
    Ok(true)
}

async fn licensee_exists(e: &mut impl Exec, k: &LicenceKey) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "SELECT 1 FROM licensees WHERE licence_type = {} AND licence_number = {} AND \
         licence_state = {}",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    Ok(!e.rows(&sql, &key_args(k)).await?.is_empty())
}

pub(crate) async fn match_decisions(e: &mut impl Exec) -> Result<Vec<MatchDecision>> {
    let rows = e
        .rows(
            "SELECT licence_type, licence_number, licence_state, participant, decided_by, reason, \
             decided FROM licensee_matches ORDER BY decided",
            &[],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            Ok(MatchDecision {
                licence: LicenceKey {
                    licence_type: next().text()?,
                    licence_number: next().text()?,
                    licence_state: next().text()?,
                },
                participant: optional_text(next())?,
                decided_by: next().text()?,
                reason: next().text()?,
                decided: next().int()?,
            })
        })
        .collect()
}

/// Records an exemption; `Ok(false)` if there is no such licensee, `StoreError::Conflict` if the
/// same exemption is already recorded for them.
pub(crate) async fn add_exemption(e: &mut impl Exec, x: &LicenseeExemption) -> Result<bool> {
    if !licensee_exists(e, &x.licence).await? {
        return Ok(false);
    }
    let sql = format!(
        "INSERT INTO licensee_exemptions (licence_type, licence_number, licence_state, exemption, \
         since, reason, recorded_by, recorded) VALUES ({}) ON CONFLICT DO NOTHING \
         RETURNING exemption",
        placeholders(e, 1, 8)
    );
    let mut args = key_args(&x.licence).to_vec();
    args.extend([
        text(&x.exemption),
        text(&x.since),
        text(&x.reason),
        text(&x.recorded_by),
        Val::Int(x.recorded),
    ]);
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(StoreError::Conflict {
            resource_type: "licensee exemption".into(),
            id: format!("{} {}", x.licence.licence_number, x.exemption),
        });
    }
    Ok(true)
}

/// Removes an exemption; `false` if it was not recorded.
pub(crate) async fn remove_exemption(
    e: &mut impl Exec,
    k: &LicenceKey,
    exemption: &str,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "DELETE FROM licensee_exemptions WHERE licence_type = {} AND licence_number = {} AND \
         licence_state = {} AND exemption = {} RETURNING exemption",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(4)
    );
    let mut args = key_args(k).to_vec();
    args.push(text(exemption));
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

pub(crate) async fn exemptions(e: &mut impl Exec) -> Result<Vec<LicenseeExemption>> {
    let rows = e
        .rows(
            "SELECT licence_type, licence_number, licence_state, exemption, since, reason, \
             recorded_by, recorded FROM licensee_exemptions ORDER BY recorded",
            &[],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(Val::Null);
            Ok(LicenseeExemption {
                licence: LicenceKey {
                    licence_type: next().text()?,
                    licence_number: next().text()?,
                    licence_state: next().text()?,
                },
                exemption: next().text()?,
                since: next().text()?,
                reason: next().text()?,
                recorded_by: next().text()?,
                recorded: next().int()?,
            })
        })
        .collect()
}
