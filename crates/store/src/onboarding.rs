//! Connecting to the exchange (issue 7), with the SQL shared by both engines: connection
//! applications (the form as checked by `onboard::application`, its licences, the participant it
//! created and the applicant's portal account), each application's checklist steps done and its
//! changes of path, the agreement documents operators publish and the electronic signatures of
//! them, and [`OnboardingFacts`], the one read the compliance report is built on.
//!
//! The store keeps what it is given: step and path codes are `onboard::workflow`'s, licence types
//! `onboard::application`'s, digests the caller's SHA-256 of the exact text. Whether a step may be
//! taken, and whether a signature is valid, is the caller's (`onboard` decides, `exchange` asks).
//! What must hold between concurrent callers is decided by the database: an application id, a
//! step of an application, an agreement version and a signature id are each stored once (a second
//! is `StoreError::Conflict`), a step is recorded only while the application is on the path the
//! caller saw, and a change of path only from the path the caller saw (one statement each).
//! Times are milliseconds since the Unix epoch.

use std::collections::HashMap;

use crate::exec::{Exec, Val};
use crate::{Result, StoreError};

/// One state licence named on an application.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LicenceRecord {
    /// A licence type code (`onboard::application::LICENCE_TYPES`).
    pub licence_type: String,
    /// As boards compare them: upper case, without spaces or dashes.
    pub number: String,
    /// Two letters.
    pub state: String,
}

/// A connection application as stored: the checked form, when it was received, the path it is on,
/// and what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationData {
    /// Made by the caller (unique).
    pub application_id: String,
    /// Milliseconds since the Unix epoch.
    pub received: i64,
    /// `organization` or `solo-practitioner`.
    pub kind: String,
    pub legal_name: String,
    /// Ten digits, check digit valid.
    pub npi: String,
    /// In the order given (at least one).
    pub licences: Vec<LicenceRecord>,
    pub address_line: String,
    pub city: String,
    pub state: String,
    pub postcode: String,
    /// `catalog` (then `ehr_value` is the catalog product id), `other` (the product's name as
    /// typed) or `none` (`ehr_value` empty).
    pub ehr_kind: String,
    pub ehr_value: String,
    pub signer_name: String,
    pub signer_title: String,
    pub signer_email: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    /// `ehr` or `secure-messaging`: the path now.
    pub path: String,
    /// The participant (Organization id) the application created, if it did.
    pub participant_id: Option<String>,
    /// The applicant's portal account, if they have one.
    pub user_id: Option<String>,
}

/// A checklist step done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// An `onboard::workflow::Step` code (`application-received`, `package-sent`...).
    pub step: String,
    /// A user id, or what the caller names (`applicant`, `system`, an operator's login at the CLI).
    pub by: String,
    pub at: i64,
}

/// An operator's change of path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChangeRecord {
    /// 1, 2, 3... per application.
    pub seq: i64,
    pub from: String,
    pub to: String,
    pub by: String,
    pub at: i64,
    pub reason: String,
}

/// The operator's decision about an application without a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// `distinct`, `existing` or `duplicate`.
    pub decision: String,
    /// The application this one repeats (`duplicate`).
    pub duplicate_of: Option<String>,
    /// The participant the application joined (`existing`) or had registered (`distinct`).
    pub participant_id: Option<String>,
    pub by: String,
    pub at: i64,
    pub reason: String,
}

/// An application with its checklist: the steps done (in the order done), the changes of path
/// (in order), and the operator's decision if one was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRecord {
    pub data: ApplicationData,
    pub steps: Vec<StepRecord>,
    pub path_changes: Vec<PathChangeRecord>,
    pub decision: Option<DecisionRecord>,
}

/// One published version of an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementDocument {
    /// `participation`, `baa`, `dsa`, or another the operator names.
    pub kind: String,
    /// 1, 2, 3... per kind.
    pub version: i64,
    pub title: String,
    /// The exact text signers read.
    pub text: String,
    /// The SHA-256 of `text` as published (lowercase hex).
    pub sha256: String,
    /// Participant type codes (`hospital`, `solo-practice`...), `*` for all. No commas inside.
    pub required_for: Vec<String>,
    pub published: i64,
    /// Who published it.
    pub published_by: String,
}

/// A signature of one agreement version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementSignature {
    /// Made by the caller (unique).
    pub signature_id: String,
    pub kind: String,
    pub version: i64,
    /// The digest of the text the signer was shown.
    pub sha256: String,
    pub signer_name: String,
    pub signer_title: String,
    /// Always true for a stored signature (the table refuses one without the consent).
    pub consented_electronically: bool,
    pub signed_at: i64,
    pub client_address: String,
    /// The signer's portal account, if they signed in the portal.
    pub user_id: Option<String>,
    pub application_id: String,
    pub participant_id: Option<String>,
}

/// What the compliance report needs to know of one application. The shape is kept stable (new
/// fields are only ever added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingFacts {
    pub application_id: String,
    pub participant_id: Option<String>,
    /// `organization` or `solo-practitioner`.
    pub kind: String,
    pub legal_name: String,
    pub npi: String,
    pub licences: Vec<LicenceRecord>,
    pub address_line: String,
    pub city: String,
    pub postcode: String,
    /// When the application was received (milliseconds since the Unix epoch).
    pub received: i64,
    /// `ehr` or `secure-messaging`.
    pub path: String,
    /// `catalog`, `other` or `none`, and the product id or name (see [`ApplicationData`]).
    pub ehr_kind: String,
    pub ehr_value: String,
    /// When the secure-messaging path's `test-message-exchanged` step was done.
    pub test_message_exchanged: Option<i64>,
    /// When the EHR path's `live` step was done.
    pub live: Option<i64>,
    /// When `agreements-signed` was done.
    pub agreements_signed: Option<i64>,
}

const APPLICATION_COLUMNS: &str = "application_id, received, kind, legal_name, npi, \
     address_line, city, state, postcode, ehr_kind, ehr_value, signer_name, signer_title, \
     signer_email, contact_name, contact_email, contact_phone, path, participant_id, user_id";

const DOCUMENT_COLUMNS: &str =
    "kind, version, title, body, sha256, required_for, published, published_by";

const SIGNATURE_COLUMNS: &str = "signature_id, kind, version, sha256, signer_name, \
     signer_title, consented, signed_at, client_address, user_id, application_id, participant_id";

fn optional_text(v: Val) -> Result<Option<String>> {
    match v {
        Val::Null => Ok(None),
        other => other.text().map(Some),
    }
}

fn optional_int(v: Val) -> Result<Option<i64>> {
    match v {
        Val::Null => Ok(None),
        other => other.int().map(Some),
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

fn conflict(what: &str, id: &str) -> StoreError {
    StoreError::Conflict {
        resource_type: what.to_string(),
        id: id.to_string(),
    }
}

fn application_from_row(row: Vec<Val>) -> Result<ApplicationData> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(ApplicationData {
        application_id: next().text()?,
        received: next().int()?,
        kind: next().text()?,
        legal_name: next().text()?,
        npi: next().text()?,
        licences: Vec::new(),
        address_line: next().text()?,
        city: next().text()?,
        state: next().text()?,
        postcode: next().text()?,
        ehr_kind: next().text()?,
        ehr_value: next().text()?,
        signer_name: next().text()?,
        signer_title: next().text()?,
        signer_email: next().text()?,
        contact_name: next().text()?,
        contact_email: next().text()?,
        contact_phone: next().text()?,
        path: next().text()?,
        participant_id: optional_text(next())?,
        user_id: optional_text(next())?,
    })
}

fn document_from_row(row: Vec<Val>) -> Result<AgreementDocument> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(AgreementDocument {
        kind: next().text()?,
        version: next().int()?,
        title: next().text()?,
        text: next().text()?,
        sha256: next().text()?,
        required_for: next()
            .text()?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        published: next().int()?,
        published_by: next().text()?,
    })
}

fn signature_from_row(row: Vec<Val>) -> Result<AgreementSignature> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Val::Null);
    Ok(AgreementSignature {
        signature_id: next().text()?,
        kind: next().text()?,
        version: next().int()?,
        sha256: next().text()?,
        signer_name: next().text()?,
        signer_title: next().text()?,
        consented_electronically: next().int()? == 1,
        signed_at: next().int()?,
        client_address: next().text()?,
        user_id: optional_text(next())?,
        application_id: next().text()?,
        participant_id: optional_text(next())?,
    })
}

/// The write operations that take more than one statement, each run by the engine in one
/// transaction.
#[derive(Debug)]
pub(crate) enum Tx {
    AddApplication {
        data: Box<ApplicationData>,
        received_by: String,
    },
    ChangePath {
        application_id: String,
        from: String,
        to: String,
        by: String,
        at: i64,
        reason: String,
    },
}

#[derive(Debug)]
pub(crate) enum TxOut {
    Added(Box<ApplicationRecord>),
    Changed(PathChangeRecord),
}

/// Runs one multi-statement write on `e`, which is inside a transaction the engine commits after
/// (and rolls back on an error).
pub(crate) async fn run_tx(e: &mut impl Exec, tx: Tx) -> Result<TxOut> {
    match tx {
        Tx::AddApplication { data, received_by } => add_application(e, *data, &received_by)
            .await
            .map(|r| TxOut::Added(Box::new(r))),
        Tx::ChangePath {
            application_id,
            from,
            to,
            by,
            at,
            reason,
        } => change_path(e, &application_id, &from, &to, &by, at, &reason)
            .await
            .map(TxOut::Changed),
    }
}

/// Inserts the application, its licences and its first step (`application-received`, at
/// `received`, by `received_by`); `Conflict` if the id is taken.
async fn add_application(
    e: &mut impl Exec,
    data: ApplicationData,
    received_by: &str,
) -> Result<ApplicationRecord> {
    if data.licences.is_empty() {
        return Err(StoreError::Database(
            "an application names at least one licence".to_string(),
        ));
    }
    let sql = format!(
        "INSERT INTO onboarding_applications ({APPLICATION_COLUMNS}) VALUES ({}) \
         ON CONFLICT DO NOTHING RETURNING application_id",
        placeholders(e, 1, 20)
    );
    let args = [
        text(&data.application_id),
        Val::Int(data.received),
        text(&data.kind),
        text(&data.legal_name),
        text(&data.npi),
        text(&data.address_line),
        text(&data.city),
        text(&data.state),
        text(&data.postcode),
        text(&data.ehr_kind),
        text(&data.ehr_value),
        text(&data.signer_name),
        text(&data.signer_title),
        text(&data.signer_email),
        text(&data.contact_name),
        text(&data.contact_email),
        text(&data.contact_phone),
        text(&data.path),
        text_or_null(&data.participant_id),
        text_or_null(&data.user_id),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(conflict("application", &data.application_id));
    }
    let sql = format!(
        "INSERT INTO onboarding_licences (application_id, ordinal, licence_type, number, state) \
         VALUES ({})",
        placeholders(e, 1, 5)
    );
    for (i, l) in data.licences.iter().enumerate() {
        let args = [
            text(&data.application_id),
            Val::Int(i as i64),
            text(&l.licence_type),
            text(&l.number),
            text(&l.state),
        ];
        e.rows(&sql, &args).await?;
    }
    let step = StepRecord {
        step: "application-received".to_string(),
        by: received_by.to_string(),
        at: data.received,
    };
    let sql = format!(
        "INSERT INTO onboarding_steps (application_id, step, done_by, done_at) VALUES ({})",
        placeholders(e, 1, 4)
    );
    e.rows(
        &sql,
        &[
            text(&data.application_id),
            text(&step.step),
            text(&step.by),
            Val::Int(step.at),
        ],
    )
    .await?;
    Ok(ApplicationRecord {
        data,
        steps: vec![step],
        path_changes: Vec::new(),
        decision: None,
    })
}

/// Moves the application from `from` to `to` and records the change; `Conflict` if it is not on
/// `from` (someone changed it meanwhile, or there is no such application).
async fn change_path(
    e: &mut impl Exec,
    application_id: &str,
    from: &str,
    to: &str,
    by: &str,
    at: i64,
    reason: &str,
) -> Result<PathChangeRecord> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE onboarding_applications SET path = {} WHERE application_id = {} AND path = {} \
         RETURNING application_id",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    if e.rows(&sql, &[text(to), text(application_id), text(from)])
        .await?
        .is_empty()
    {
        return Err(conflict("application", application_id));
    }
    // The update above holds the application's row, so the numbering cannot race.
    let sql = format!(
        "INSERT INTO onboarding_path_changes \
         (application_id, seq, from_path, to_path, changed_by, changed_at, reason) \
         SELECT {p1}, COALESCE(MAX(seq), 0) + 1, {p2}, {p3}, {p4}, CAST({p5} AS BIGINT), {p6} \
         FROM onboarding_path_changes WHERE application_id = {p1} RETURNING seq",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
        p5 = d.placeholder(5),
        p6 = d.placeholder(6),
    );
    let rows = e
        .rows(
            &sql,
            &[
                text(application_id),
                text(from),
                text(to),
                text(by),
                Val::Int(at),
                text(reason),
            ],
        )
        .await?;
    let seq = rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .ok_or_else(|| StoreError::Database("no path change numbered".to_string()))?
        .int()?;
    Ok(PathChangeRecord {
        seq,
        from: from.to_string(),
        to: to.to_string(),
        by: by.to_string(),
        at,
        reason: reason.to_string(),
    })
}

/// Sets the participant and the portal account an application created (those given; the others
/// are kept). `false` if there is no such application.
pub(crate) async fn link_application(
    e: &mut impl Exec,
    application_id: &str,
    participant_id: Option<&str>,
    user_id: Option<&str>,
) -> Result<bool> {
    let d = e.dialect();
    let sql = format!(
        "UPDATE onboarding_applications SET participant_id = COALESCE({}, participant_id), \
         user_id = COALESCE({}, user_id) WHERE application_id = {} RETURNING application_id",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3)
    );
    let args = [
        participant_id.map_or(Val::Null, text),
        user_id.map_or(Val::Null, text),
        text(application_id),
    ];
    Ok(!e.rows(&sql, &args).await?.is_empty())
}

/// Records a step done, only while the application is on `path`; `Conflict` if the step was
/// already done, the application is on another path, or there is no such application.
pub(crate) async fn record_step(
    e: &mut impl Exec,
    application_id: &str,
    path: &str,
    step: &StepRecord,
) -> Result<()> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO onboarding_steps (application_id, step, done_by, done_at) \
         SELECT application_id, {p2}, {p3}, CAST({p4} AS BIGINT) FROM onboarding_applications \
         WHERE application_id = {p1} AND path = {p5} \
         ON CONFLICT DO NOTHING RETURNING step",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
        p5 = d.placeholder(5),
    );
    let args = [
        text(application_id),
        text(&step.step),
        text(&step.by),
        Val::Int(step.at),
        text(path),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(conflict("application step", application_id));
    }
    Ok(())
}

/// Which applications a read loads.
#[derive(Debug, Clone)]
pub(crate) enum Which {
    All,
    One(String),
    OfUser(String),
    OfParticipant(String),
    /// Those with this NPI or one of these licences (type, number and state).
    Like(String, Vec<LicenceRecord>),
}

/// The `WHERE` of the applications `which` names (over `onboarding_applications` as `a`), and its
/// arguments.
fn filter(e: &impl Exec, which: &Which) -> (String, Vec<Val>) {
    let d = e.dialect();
    match which {
        Which::All => (String::new(), Vec::new()),
        Which::One(id) => (
            format!("WHERE a.application_id = {}", d.placeholder(1)),
            vec![text(id)],
        ),
        Which::OfUser(id) => (
            format!("WHERE a.user_id = {}", d.placeholder(1)),
            vec![text(id)],
        ),
        Which::OfParticipant(id) => (
            format!("WHERE a.participant_id = {}", d.placeholder(1)),
            vec![text(id)],
        ),
        Which::Like(npi, licences) => {
            let mut args = vec![text(npi)];
            let mut ors = vec![format!("a.npi = {}", d.placeholder(1))];
            for l in licences {
                let n = args.len();
                ors.push(format!(
                    "a.application_id IN (SELECT application_id FROM onboarding_licences \
                     WHERE number = {} AND state = {} AND licence_type = {})",
                    d.placeholder(n + 1),
                    d.placeholder(n + 2),
                    d.placeholder(n + 3)
                ));
                args.extend([text(&l.number), text(&l.state), text(&l.licence_type)]);
            }
            (format!("WHERE {}", ors.join(" OR ")), args)
        }
    }
}

/// The applications `which` names, oldest first, each with its licences, steps and path changes.
pub(crate) async fn applications(
    e: &mut impl Exec,
    which: &Which,
) -> Result<Vec<ApplicationRecord>> {
    let (filter, args) = filter(e, which);
    let columns = APPLICATION_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM onboarding_applications a {filter} \
         ORDER BY a.received, a.application_id"
    );
    let mut records: Vec<ApplicationRecord> = e
        .rows(&sql, &args)
        .await?
        .into_iter()
        .map(|row| {
            Ok(ApplicationRecord {
                data: application_from_row(row)?,
                steps: Vec::new(),
                path_changes: Vec::new(),
                decision: None,
            })
        })
        .collect::<Result<_>>()?;
    if records.is_empty() {
        return Ok(records);
    }
    let index: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.data.application_id.clone(), i))
        .collect();
    let scope = |table: &str| {
        format!("{table}.application_id IN (SELECT a.application_id FROM onboarding_applications a {filter})")
    };
    let sql = format!(
        "SELECT onboarding_licences.application_id, licence_type, number, state \
         FROM onboarding_licences WHERE {} \
         ORDER BY onboarding_licences.application_id, ordinal",
        scope("onboarding_licences")
    );
    for row in e.rows(&sql, &args).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let id = next().text()?;
        let licence = LicenceRecord {
            licence_type: next().text()?,
            number: next().text()?,
            state: next().text()?,
        };
        if let Some(&i) = index.get(&id) {
            records[i].data.licences.push(licence);
        }
    }
    let sql = format!(
        "SELECT onboarding_steps.application_id, step, done_by, done_at FROM onboarding_steps \
         WHERE {} ORDER BY done_at, step",
        scope("onboarding_steps")
    );
    for row in e.rows(&sql, &args).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let id = next().text()?;
        let step = StepRecord {
            step: next().text()?,
            by: next().text()?,
            at: next().int()?,
        };
        if let Some(&i) = index.get(&id) {
            records[i].steps.push(step);
        }
    }
    let sql = format!(
        "SELECT onboarding_path_changes.application_id, seq, from_path, to_path, changed_by, \
         changed_at, reason FROM onboarding_path_changes WHERE {} \
         ORDER BY onboarding_path_changes.application_id, seq",
        scope("onboarding_path_changes")
    );
    for row in e.rows(&sql, &args).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let id = next().text()?;
        let change = PathChangeRecord {
            seq: next().int()?,
            from: next().text()?,
            to: next().text()?,
            by: next().text()?,
            at: next().int()?,
            reason: next().text()?,
        };
        if let Some(&i) = index.get(&id) {
            records[i].path_changes.push(change);
        }
    }
    let sql = format!(
        "SELECT onboarding_decisions.application_id, decision, duplicate_of, participant_id, \
         decided_by, decided_at, reason FROM onboarding_decisions WHERE {}",
        scope("onboarding_decisions")
    );
    for row in e.rows(&sql, &args).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let id = next().text()?;
        let decision = DecisionRecord {
            decision: next().text()?,
            duplicate_of: optional_text(next())?,
            participant_id: optional_text(next())?,
            by: next().text()?,
            at: next().int()?,
            reason: next().text()?,
        };
        if let Some(&i) = index.get(&id) {
            records[i].decision = Some(decision);
        }
    }
    Ok(records)
}

/// Records the operator's decision about an application and, for `distinct` and `existing`, sets
/// its participant (which it must not have yet), in one statement each inside the caller's
/// transaction. `Conflict` if it was decided already, has a participant, or does not exist.
pub(crate) async fn decide_application(
    e: &mut impl Exec,
    application_id: &str,
    decision: &DecisionRecord,
) -> Result<()> {
    let d = e.dialect();
    let sql = format!(
        "INSERT INTO onboarding_decisions (application_id, decision, duplicate_of, \
         participant_id, decided_by, decided_at, reason) \
         SELECT application_id, {p2}, {p3}, {p4}, {p5}, CAST({p6} AS BIGINT), {p7} \
         FROM onboarding_applications WHERE application_id = {p1} AND participant_id IS NULL \
         ON CONFLICT DO NOTHING RETURNING application_id",
        p1 = d.placeholder(1),
        p2 = d.placeholder(2),
        p3 = d.placeholder(3),
        p4 = d.placeholder(4),
        p5 = d.placeholder(5),
        p6 = d.placeholder(6),
        p7 = d.placeholder(7),
    );
    let args = [
        text(application_id),
        text(&decision.decision),
        text_or_null(&decision.duplicate_of),
        text_or_null(&decision.participant_id),
        text(&decision.by),
        Val::Int(decision.at),
        text(&decision.reason),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(conflict("application decision", application_id));
    }
    if let Some(participant) = &decision.participant_id {
        link_application(e, application_id, Some(participant), None).await?;
    }
    Ok(())
}

/// Every application's facts for the compliance report, oldest first.
pub(crate) async fn facts(e: &mut impl Exec) -> Result<Vec<OnboardingFacts>> {
    let sql = "SELECT a.application_id, a.participant_id, a.kind, a.legal_name, a.npi, \
         a.address_line, a.city, a.postcode, a.received, a.path, a.ehr_kind, a.ehr_value, \
         (SELECT done_at FROM onboarding_steps s WHERE s.application_id = a.application_id \
          AND s.step = 'test-message-exchanged'), \
         (SELECT done_at FROM onboarding_steps s WHERE s.application_id = a.application_id \
          AND s.step = 'live'), \
         (SELECT done_at FROM onboarding_steps s WHERE s.application_id = a.application_id \
          AND s.step = 'agreements-signed') \
         FROM onboarding_applications a ORDER BY a.received, a.application_id";
    let mut facts = Vec::new();
    let mut index = HashMap::new();
    for row in e.rows(sql, &[]).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let f = OnboardingFacts {
            application_id: next().text()?,
            participant_id: optional_text(next())?,
            kind: next().text()?,
            legal_name: next().text()?,
            npi: next().text()?,
            licences: Vec::new(),
            address_line: next().text()?,
            city: next().text()?,
            postcode: next().text()?,
            received: next().int()?,
            path: next().text()?,
            ehr_kind: next().text()?,
            ehr_value: next().text()?,
            test_message_exchanged: optional_int(next())?,
            live: optional_int(next())?,
            agreements_signed: optional_int(next())?,
        };
        index.insert(f.application_id.clone(), facts.len());
        facts.push(f);
    }
    let sql = "SELECT application_id, licence_type, number, state FROM onboarding_licences \
         ORDER BY application_id, ordinal";
    for row in e.rows(sql, &[]).await? {
        let mut row = row.into_iter();
        let mut next = || row.next().unwrap_or(Val::Null);
        let id = next().text()?;
        let licence = LicenceRecord {
            licence_type: next().text()?,
            number: next().text()?,
            state: next().text()?,
        };
        if let Some(&i) = index.get(&id) {
            facts[i].licences.push(licence);
        }
    }
    Ok(facts)
}

/// Publishes a version; `Conflict` if that kind and version exist.
pub(crate) async fn publish_agreement(
    e: &mut impl Exec,
    doc: AgreementDocument,
) -> Result<AgreementDocument> {
    if doc
        .required_for
        .iter()
        .any(|t| t.contains(',') || t.is_empty())
    {
        return Err(StoreError::Database(
            "a participant type code is not empty and has no comma".to_string(),
        ));
    }
    let sql = format!(
        "INSERT INTO agreement_documents ({DOCUMENT_COLUMNS}) VALUES ({}) \
         ON CONFLICT DO NOTHING RETURNING kind",
        placeholders(e, 1, 8)
    );
    let args = [
        text(&doc.kind),
        Val::Int(doc.version),
        text(&doc.title),
        text(&doc.text),
        text(&doc.sha256),
        Val::Text(doc.required_for.join(",")),
        Val::Int(doc.published),
        text(&doc.published_by),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(conflict(
            "agreement",
            &format!("{} version {}", doc.kind, doc.version),
        ));
    }
    Ok(doc)
}

/// Every version of every agreement, by kind then version.
pub(crate) async fn agreements(e: &mut impl Exec) -> Result<Vec<AgreementDocument>> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM agreement_documents ORDER BY kind, version");
    e.rows(&sql, &[])
        .await?
        .into_iter()
        .map(document_from_row)
        .collect()
}

pub(crate) async fn agreement(
    e: &mut impl Exec,
    kind: &str,
    version: i64,
) -> Result<Option<AgreementDocument>> {
    let d = e.dialect();
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} FROM agreement_documents WHERE kind = {} AND version = {}",
        d.placeholder(1),
        d.placeholder(2)
    );
    let rows = e.rows(&sql, &[text(kind), Val::Int(version)]).await?;
    rows.into_iter().next().map(document_from_row).transpose()
}

/// Stores a signature; `Conflict` if its id is taken. The document version must exist (the
/// caller checked the digest against it).
pub(crate) async fn add_signature(
    e: &mut impl Exec,
    sig: AgreementSignature,
) -> Result<AgreementSignature> {
    if !sig.consented_electronically {
        return Err(StoreError::Database(
            "a signature without the consent to sign electronically is never stored".to_string(),
        ));
    }
    let sql = format!(
        "INSERT INTO agreement_signatures ({SIGNATURE_COLUMNS}) VALUES ({}) \
         ON CONFLICT DO NOTHING RETURNING signature_id",
        placeholders(e, 1, 12)
    );
    let args = [
        text(&sig.signature_id),
        text(&sig.kind),
        Val::Int(sig.version),
        text(&sig.sha256),
        text(&sig.signer_name),
        text(&sig.signer_title),
        Val::Int(1),
        Val::Int(sig.signed_at),
        text(&sig.client_address),
        text_or_null(&sig.user_id),
        text(&sig.application_id),
        text_or_null(&sig.participant_id),
    ];
    if e.rows(&sql, &args).await?.is_empty() {
        return Err(conflict("signature", &sig.signature_id));
    }
    Ok(sig)
}

/// The signatures of one application (or of all, with `None`), oldest first.
pub(crate) async fn signatures(
    e: &mut impl Exec,
    application_id: Option<&str>,
) -> Result<Vec<AgreementSignature>> {
    let (sql, args) = match application_id {
        Some(id) => (
            format!(
                "SELECT {SIGNATURE_COLUMNS} FROM agreement_signatures WHERE application_id = {} \
                 ORDER BY signed_at, signature_id",
                e.dialect().placeholder(1)
            ),
            vec![text(id)],
        ),
        None => (
            format!(
                "SELECT {SIGNATURE_COLUMNS} FROM agreement_signatures \
                 ORDER BY signed_at, signature_id"
            ),
            Vec::new(),
        ),
    };
    e.rows(&sql, &args)
        .await?
        .into_iter()
        .map(signature_from_row)
        .collect()
}

pub(crate) async fn signature(
    e: &mut impl Exec,
    signature_id: &str,
) -> Result<Option<AgreementSignature>> {
    let sql = format!(
        "SELECT {SIGNATURE_COLUMNS} FROM agreement_signatures WHERE signature_id = {}",
        e.dialect().placeholder(1)
    );
    let rows = e.rows(&sql, &[text(signature_id)]).await?;
    rows.into_iter().next().map(signature_from_row).transpose()
}
