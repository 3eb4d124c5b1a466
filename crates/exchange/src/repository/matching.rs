//! `Patient/$match` (FHIR R4): the master patient index's first interface. The repository holds
//! an in-memory [`mpi::Index`] of every current Patient, keyed by the Patient's id, with a
//! Fellegi-Sunter [`mpi::Model`]; a Patient sent by a caller is scored against the candidates its
//! blocking keys find, and the matches the decision point lets the caller see are answered as a
//! `searchset` Bundle with `search.score` and the match-grade extension.
//!
//! The index is built from the store (every Patient, read a page at a time through the store's
//! search) the first time it is needed, and kept current by the writes this process commits: a
//! Patient written is indexed again, a Patient deleted leaves (`Matcher::note`, called after the
//! write lands). Each entry remembers its version, so a late note never replaces a newer one.
//!
//! Training: the model is trained without labels on the indexed records themselves (u from seeded
//! random pairs, m and the prior by EM over the blocked candidate pairs; the seed is fixed, so the
//! same store gives the same model). With fewer than [`MIN_TRAINING`] Patients there is too little
//! to learn from (u estimated from a handful of pairs says nothing), and the `mpi` crate has no
//! built-in weights, so the model is trained once per process, in the same way, on a seeded
//! synthetic population from [`mpi::generate`]. The index is rebuilt and retrained from the store
//! when it has grown past [`MIN_TRAINING`] and to twice the records it was last trained on.
//!
//! Other processes on the same database: a match more than [`CATCH_UP`] (a second) after the
//! last one first reads the store's Patient history since the last catch-up, less [`SLACK_MS`]
//! (a write is stamped before it commits), and applies it; so another process's writes are seen
//! within a second, unless one took longer than the slack between its stamp and its commit (then
//! at the next rebuild). This index answers `$match` only; the enterprise identities, persisted
//! and shared by every process, are `identities`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};
use store::{HistoryRequest, HistoryScope, SearchOptions, Stored, Write, WriteOp};

use super::disclosure::Disclosed;
use super::support::{now_millis, parse_stored, validate};
use super::{Error, Repository, Result};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::{Issue, IssueType};

/// The URL of the FHIR match-grade extension on `Bundle.entry.search`.
pub const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

/// Below this many Patients the model is trained on a synthetic population instead.
pub const MIN_TRAINING: usize = 1000;

/// The seed of training and of the synthetic population: fixed, so that a store gives one model.
const SEED: u64 = 0x6e75_746d_6567;

/// Patients read from the store per page while building.
const LOAD_PAGE: usize = 1000;

/// How long the index trusts that it has every Patient write: after this, a match first reads the
/// store's Patient history for the writes of other processes (as the decision point trusts a
/// participant's status for a second).
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// How far back each catch-up reads again: a write is stamped before it commits, so one stamped
/// a little before the last catch-up may have committed after it.
const SLACK_MS: i64 = 10_000;

/// Identities in the synthetic training population (with their noisy duplicates and twins).
const SYNTHETIC_IDENTITIES: usize = 2000;

/// A Patient write that landed, for the index.
#[derive(Debug, Clone)]
pub(crate) enum PatientChange {
    Put {
        id: String,
        version: i64,
        json: String,
    },
    Delete {
        id: String,
        version: i64,
    },
}

impl PatientChange {
    /// The Patient writes of a batch.
    pub(crate) fn of(writes: &[Write]) -> Vec<PatientChange> {
        writes
            .iter()
            .filter(|w| w.resource_type == "Patient")
            .map(|w| match &w.op {
                WriteOp::Put { json, .. } => PatientChange::Put {
                    id: w.id.clone(),
                    version: w.version,
                    json: json.clone(),
                },
                WriteOp::Delete => PatientChange::Delete {
                    id: w.id.clone(),
                    version: w.version,
                },
            })
            .collect()
    }
}

/// The index and its model, once built.
struct Built {
    index: mpi::Index,
    model: mpi::Model,
    /// The version each id was indexed at (or deleted at), so that changes apply in version order.
    versions: HashMap<String, i64>,
    /// Records the model was trained on (0: the synthetic population).
    trained_on: usize,
    /// Patient versions last updated from this instant on (ms) are read again at the next catch-up.
    caught_up: i64,
    /// When the store's Patient history was last read.
    checked: std::time::Instant,
}

impl Built {
    fn apply(&mut self, change: PatientChange) {
        let (id, version) = match &change {
            PatientChange::Put { id, version, .. } | PatientChange::Delete { id, version } => {
                (id, *version)
            }
        };
        if self.versions.get(id).is_some_and(|&known| known >= version) {
            return;
        }
        match change {
            PatientChange::Put { id, version, json } => {
                let Ok(patient) = serde_json::from_str::<Value>(&json) else {
                    return;
                };
                self.index.insert(id.clone(), &record_of(&patient));
                self.versions.insert(id, version);
            }
            PatientChange::Delete { id, version } => {
                self.index.remove(&id);
                self.versions.insert(id, version);
            }
        }
    }

    fn needs_retraining(&self) -> bool {
        let n = self.index.len();
        n >= MIN_TRAINING && n >= 2 * self.trained_on
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Never built: changes are dropped (the build reads them from the store).
    Unbuilt,
    /// Being built, or built: changes wait here for the next match to apply them.
    Kept,
}

struct Pending {
    phase: Phase,
    changes: Vec<PatientChange>,
}

/// The patient index of one repository (shared by its clones).
pub(crate) struct Matcher {
    built: tokio::sync::RwLock<Option<Built>>,
    pending: Mutex<Pending>,
    /// The model the enterprise identities are linked with (`identities`).
    pub(crate) link_model: super::identities::LinkModel,
}

impl Default for Matcher {
    fn default() -> Self {
        // The built-in model takes seconds to train (more in a debug build on a busy machine):
        // start now, on a thread of its own, so the first Patient write (which links with it
        // until a rebuild stores a model) or match does not wait for all of it.
        static WARMING: std::sync::Once = std::sync::Once::new();
        WARMING.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("mpi-model".into())
                .spawn(|| {
                    synthetic_model();
                });
        });
        Matcher {
            built: tokio::sync::RwLock::new(None),
            pending: Mutex::new(Pending {
                phase: Phase::Unbuilt,
                changes: Vec::new(),
            }),
            link_model: Default::default(),
        }
    }
}

impl Matcher {
    /// Notes Patient writes that have landed; the next match applies them.
    pub(crate) fn note(&self, changes: Vec<PatientChange>) {
        if changes.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.phase == Phase::Kept {
            pending.changes.extend(changes);
        }
    }

    /// Whether the index has been asked for and no change waits to be applied.
    fn nothing_pending(&self) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.phase == Phase::Kept && pending.changes.is_empty()
    }

    fn take_pending(&self) -> Vec<PatientChange> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.phase = Phase::Kept;
        std::mem::take(&mut pending.changes)
    }
}

/// What a `$match` asks.
#[derive(Debug)]
struct MatchRequest {
    patient: Value,
    only_certain: bool,
    count: Option<usize>,
}

impl Repository {
    /// `POST Patient/$match`: `body` is a Parameters resource (`resource`, `onlyCertainMatches`,
    /// `count`) or a bare Patient (with `onlyCertainMatches` and `count` in `params`, the query).
    /// Answers a `searchset` Bundle of the Patients the caller may see, best first.
    pub async fn match_patients(
        &self,
        who: &Requester,
        body: Value,
        params: &[(String, String)],
    ) -> Result<Value> {
        self.authorize(who, Access::Search, Some("Patient"), Interaction::Operation)
            .await?;
        let request = parse_request(body, params)?;
        validate(&request.patient)?;
        let record = record_of(&request.patient);
        if is_blank(&record) {
            return Err(Error::Unprocessable(vec![Issue::error(
                IssueType::Required,
                "the Patient has nothing to match on: give a name, birth date, identifier, telecom or address",
            )]));
        }
        let count = request
            .count
            .unwrap_or(self.config.default_count)
            .min(self.config.max_count);

        let started = std::time::Instant::now();
        let candidates = self.matches_of(&record).await?;
        let considered = candidates.len();
        let mut disclosed = Disclosed::new();
        let mut entries = Vec::new();
        for found in candidates {
            if entries.len() >= count {
                break;
            }
            if request.only_certain && found.grade != mpi::Grade::Certain {
                continue;
            }
            let Some(stored) = self.store.read("Patient", &found.id).await? else {
                continue;
            };
            if stored.deleted || !self.admit(who, &stored, &mut disclosed).await? {
                continue;
            }
            entries.push(self.match_entry(&stored, &found)?);
        }
        tracing::debug!(
            request_id = %who.request_id,
            candidates = considered,
            shown = entries.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "patient match"
        );
        let mut query = format!("Patient/$match?count={count}");
        if request.only_certain {
            query.push_str("&onlyCertainMatches=true");
        }
        self.record_disclosure(who, Interaction::Operation, Some(query), disclosed)
            .await?;
        Ok(json!({
            "resourceType": "Bundle",
            "id": super::support::new_id(),
            "meta": { "lastUpdated": fhir::search::datetime::format_instant(now_millis()) },
            "type": "searchset",
            "total": entries.len(),
            "link": [{ "relation": "self", "url": format!("{}/Patient/$match", self.config.base_url) }],
            "entry": entries,
        }))
    }

    fn match_entry(&self, stored: &Stored, found: &mpi::Match) -> Result<Value> {
        // Four decimals say all a score can; the rest is noise of the arithmetic.
        let score = (found.score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
        Ok(json!({
            "fullUrl": self.full_url("Patient", &stored.id),
            "resource": parse_stored(stored)?,
            "search": {
                "extension": [{ "url": MATCH_GRADE, "valueCode": found.grade.code() }],
                "mode": "match",
                "score": score,
            },
        }))
    }

    /// The index's matches for `record`, best first, after building the index (or bringing it up
    /// to date with the writes noted since).
    async fn matches_of(&self, record: &mpi::Record) -> Result<Vec<mpi::Match>> {
        let matcher = &self.matcher;
        let current = matcher.nothing_pending()
            && matcher
                .built
                .read()
                .await
                .as_ref()
                .is_some_and(|b| !b.needs_retraining() && b.checked.elapsed() < CATCH_UP);
        if !current {
            let mut built = matcher.built.write().await;
            // From here on, changes are kept for this build to apply.
            let changes = matcher.take_pending();
            if let Some(b) = built.as_mut() {
                changes.into_iter().for_each(|c| b.apply(c));
                if b.checked.elapsed() >= CATCH_UP {
                    self.catch_up(b).await?;
                }
            }
            if built.as_ref().is_none_or(Built::needs_retraining) {
                // A failed build leaves the index as it was (or unbuilt), for the next match to retry.
                let mut fresh = self.build_index().await?;
                matcher
                    .take_pending()
                    .into_iter()
                    .for_each(|c| fresh.apply(c));
                *built = Some(fresh);
            }
        }
        let built = matcher.built.read().await;
        Ok(built
            .as_ref()
            .map(|b| b.index.match_record(record, &b.model))
            .unwrap_or_default())
    }

    /// Applies the Patient versions the store's history holds since the last catch-up (less the
    /// slack): the writes of other processes on the same database.
    async fn catch_up(&self, built: &mut Built) -> Result<()> {
        let mark = now_millis() - SLACK_MS;
        let mut request = HistoryRequest {
            scope: HistoryScope::Type("Patient".to_string()),
            since: Some(built.caught_up),
            at: None,
            count: LOAD_PAGE,
            cursor: None,
        };
        loop {
            let page = self.store.history(&request).await?;
            for stored in page.entries {
                built.apply(if stored.deleted {
                    PatientChange::Delete {
                        id: stored.id,
                        version: stored.version,
                    }
                } else {
                    PatientChange::Put {
                        id: stored.id,
                        version: stored.version,
                        json: stored.json,
                    }
                });
            }
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => break,
            }
        }
        built.caught_up = built.caught_up.max(mark);
        built.checked = std::time::Instant::now();
        Ok(())
    }

    /// Reads every current Patient from the store and builds the index and its model.
    async fn build_index(&self) -> Result<Built> {
        let started = std::time::Instant::now();
        let mark = now_millis() - SLACK_MS;
        let mut query = fhir::search::parse::parse(Some("Patient"), &[], false)
            .map_err(Error::Invalid)?
            .query;
        let options = SearchOptions {
            count: LOAD_PAGE,
            max_includes: 0,
        };
        let mut loaded: Vec<(String, i64, mpi::Record)> = Vec::new();
        loop {
            let page = self.store.search(&query, &options).await?;
            for stored in &page.matches {
                if stored.deleted {
                    continue;
                }
                let patient = parse_stored(stored)?;
                loaded.push((stored.id.clone(), stored.version, record_of(&patient)));
            }
            match page.next {
                Some(next) => query.page = Some(next),
                None => break,
            }
        }
        let mut built = tokio::task::spawn_blocking(move || build(loaded))
            .await
            .map_err(|e| {
                Error::Store(store::StoreError::Database(format!(
                    "building the patient index failed: {e}"
                )))
            })?;
        built.caught_up = mark;
        tracing::info!(
            records = built.index.len(),
            trained_on = built.trained_on,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "patient index built"
        );
        Ok(built)
    }
}

/// Standardises, trains and indexes (CPU only).
fn build(loaded: Vec<(String, i64, mpi::Record)>) -> Built {
    let records: Vec<mpi::Standardised> =
        loaded.iter().map(|(_, _, r)| mpi::standardise(r)).collect();
    let (model, trained_on) = if records.len() >= MIN_TRAINING {
        (train(&records), records.len())
    } else {
        (synthetic_model().clone(), 0)
    };
    let mut index = mpi::Index::new(mpi::Blocking::default());
    let mut versions = HashMap::with_capacity(loaded.len());
    for ((id, version, _), record) in loaded.into_iter().zip(records) {
        index.insert_standardised(id.clone(), record);
        versions.insert(id, version);
    }
    Built {
        index,
        model,
        versions,
        trained_on,
        caught_up: i64::MAX,
        checked: std::time::Instant::now(),
    }
}

/// A model trained without labels on `records` (deduplication: the records against themselves).
pub(crate) fn train(records: &[mpi::Standardised]) -> mpi::Model {
    let pairs = mpi::Blocking::default().dedup_pairs(records);
    let config = mpi::TrainingConfig {
        seed: SEED,
        ..mpi::TrainingConfig::default()
    };
    mpi::train(records, records, &pairs, &config)
}

/// The model for a store with too few Patients to learn from: trained once per process on a
/// seeded synthetic population with noisy duplicates and twins.
pub(crate) fn synthetic_model() -> &'static mpi::Model {
    static MODEL: OnceLock<mpi::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let population = mpi::generate(&mpi::GeneratorConfig {
            seed: SEED,
            identities: SYNTHETIC_IDENTITIES,
            ..mpi::GeneratorConfig::default()
        });
        let records: Vec<mpi::Standardised> =
            population.records.iter().map(mpi::standardise).collect();
        train(&records)
    })
}

/// Reads the operation's input: every problem found, as 400 issues.
fn parse_request(body: Value, params: &[(String, String)]) -> Result<MatchRequest> {
    let mut issues = Vec::new();
    let mut patient = None;
    let mut only_certain = None;
    let mut count = None;
    match body.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => {
            let parameters = body
                .get("parameter")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, p) in parameters.into_iter().enumerate() {
                let at = format!("Parameters.parameter[{i}]");
                match p.get("name").and_then(Value::as_str) {
                    Some("resource") => match p.get("resource") {
                        Some(r) if patient.is_none() => patient = Some(r.clone()),
                        Some(_) => issues.push(issue(&at, "resource is given more than once")),
                        None => issues.push(issue(&at, "resource needs a resource")),
                    },
                    Some("onlyCertainMatches") => match p.get("valueBoolean") {
                        Some(Value::Bool(b)) => only_certain = Some(*b),
                        _ => issues.push(issue(&at, "onlyCertainMatches needs a valueBoolean")),
                    },
                    Some("count") => match p.get("valueInteger").and_then(Value::as_i64) {
                        Some(n) if n >= 1 => count = Some(n as usize),
                        _ => issues.push(issue(&at, "count needs a valueInteger of 1 or more")),
                    },
                    Some(other) => issues.push(issue(&at, &format!("unknown parameter '{other}'"))),
                    None => issues.push(issue(&at, "a parameter needs a name")),
                }
            }
        }
        Some("Patient") => patient = Some(body),
        _ => issues.push(issue(
            "Parameters",
            "the body must be a Parameters resource (or a Patient)",
        )),
    }
    for (name, value) in params {
        match name.as_str() {
            "onlyCertainMatches" => match value.as_str() {
                "true" => only_certain = only_certain.or(Some(true)),
                "false" => only_certain = only_certain.or(Some(false)),
                _ => issues.push(issue(name, "onlyCertainMatches must be true or false")),
            },
            "count" => match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => count = count.or(Some(n)),
                _ => issues.push(issue(name, "count must be a whole number of 1 or more")),
            },
            _ => issues.push(issue(name, &format!("unknown parameter '{name}'"))),
        }
    }
    match &patient {
        Some(p) if p.get("resourceType").and_then(Value::as_str) == Some("Patient") => {}
        Some(_) => issues.push(issue(
            "Parameters.parameter",
            "the resource parameter must be a Patient",
        )),
        None if issues.is_empty() => issues.push(issue(
            "Parameters.parameter",
            "the resource parameter (a Patient) is required",
        )),
        None => {}
    }
    match patient {
        Some(patient) if issues.is_empty() => Ok(MatchRequest {
            patient,
            only_certain: only_certain.unwrap_or(false),
            count,
        }),
        _ => Err(Error::Invalid(issues)),
    }
}

fn issue(at: &str, diagnostics: &str) -> Issue {
    let mut issue = Issue::error(IssueType::Invalid, diagnostics);
    issue.expression.push(at.to_string());
    issue
}

/// Whether a record holds nothing to compare.
fn is_blank(r: &mpi::Record) -> bool {
    r.given_names.is_empty()
        && r.family_name.is_empty()
        && r.birth_date.is_empty()
        && r.address_lines.is_empty()
        && r.postcode.is_empty()
        && r.phone.is_empty()
        && r.email.is_empty()
        && r.identifiers.is_empty()
}

/// The matching record of a FHIR Patient: its current name (official, else usual, else the first
/// not marked old), birth date, gender, home address, first phone and email, and every identifier
/// with a system (an identifier without one cannot be told apart from another source's).
pub(crate) fn record_of(patient: &Value) -> mpi::Record {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let texts = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_use = |items: Option<&Vec<Value>>, preferred: &[&str]| -> Option<Value> {
        let items = items?;
        let used = |u: &str| items.iter().find(|i| i["use"].as_str() == Some(u));
        preferred
            .iter()
            .find_map(|u| used(u))
            .or_else(|| {
                items
                    .iter()
                    .find(|i| !matches!(i["use"].as_str(), Some("old" | "maiden")))
            })
            .or_else(|| items.first())
            .cloned()
    };
    let mut record = mpi::Record::default();
    if let Some(name) = by_use(patient["name"].as_array(), &["official", "usual"]) {
        record.given_names = texts(&name["given"]);
        record.family_name = text(&name["family"]);
        if record.given_names.is_empty() && record.family_name.is_empty() {
            // Only the text: the last word is taken for the family name.
            let words: Vec<String> = text(&name["text"])
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if let Some((family, given)) = words.split_last() {
                record.family_name = family.clone();
                record.given_names = given.to_vec();
            }
        }
    }
    record.birth_date = text(&patient["birthDate"]);
    record.sex = text(&patient["gender"]);
    if let Some(address) = by_use(patient["address"].as_array(), &["home"]) {
        record.address_lines = texts(&address["line"]);
        record.city = text(&address["city"]);
        record.state = text(&address["state"]);
        record.postcode = text(&address["postalCode"]);
    }
    if let Some(telecom) = patient["telecom"].as_array() {
        let first = |system: &str| {
            telecom
                .iter()
                .find(|t| t["system"].as_str() == Some(system))
                .map(|t| text(&t["value"]))
                .unwrap_or_default()
        };
        record.phone = first("phone");
        record.email = first("email");
    }
    if let Some(identifiers) = patient["identifier"].as_array() {
        record.identifiers = identifiers
            .iter()
            .filter_map(|i| {
                let (system, value) = (i["system"].as_str()?, i["value"].as_str()?);
                (!system.is_empty() && !value.is_empty())
                    .then(|| mpi::Identifier::new(system, value))
            })
            .collect();
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_becomes_a_record() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": "urn:mrn:a", "value": "123" }, { "value": "no-system" }],
            "name": [
                { "use": "old", "family": "Quill", "given": ["Ann"] },
                { "use": "official", "family": "Marsh", "given": ["Ann", "B"] },
            ],
            "gender": "female",
            "birthDate": "1970-02-03",
            "address": [{ "use": "home", "line": ["1 Elm St"], "city": "Hartford", "state": "CT", "postalCode": "06101" }],
            "telecom": [{ "system": "email", "value": "a@example.org" }, { "system": "phone", "value": "860-555-0100" }],
        });
        let r = record_of(&patient);
        assert_eq!(r.family_name, "Marsh");
        assert_eq!(r.given_names, vec!["Ann", "B"]);
        assert_eq!(r.birth_date, "1970-02-03");
        assert_eq!(r.postcode, "06101");
        assert_eq!(r.phone, "860-555-0100");
        assert_eq!(r.email, "a@example.org");
        assert_eq!(
            r.identifiers,
            vec![mpi::Identifier::new("urn:mrn:a", "123")]
        );
        assert!(is_blank(&record_of(&json!({ "resourceType": "Patient" }))));
    }

    #[test]
    fn every_problem_of_the_input_is_named() {
        let body = json!({
            "resourceType": "Parameters",
            "parameter": [
                { "name": "resource", "resource": { "resourceType": "Observation" } },
                { "name": "count", "valueInteger": 0 },
                { "name": "onlyCertainMatches", "valueString": "yes" },
            ],
        });
        let Err(Error::Invalid(issues)) = parse_request(body, &[]) else {
            panic!("accepted");
        };
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(parse_request(json!({ "resourceType": "Parameters" }), &[]).is_err());
        assert!(parse_request(json!([1]), &[]).is_err());
        let ok = parse_request(
            json!({ "resourceType": "Patient" }),
            &[("count".into(), "2".into())],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.count, Some(2));
        assert!(!ok.only_certain);
    }

    #[test]
    fn the_synthetic_model_grades_a_nickname_as_a_match() {
        let model = synthetic_model();
        let stored = mpi::standardise(&mpi::Record {
            given_names: vec!["William".into()],
            family_name: "Quarrington".into(),
            birth_date: "1961-07-04".into(),
            sex: "male".into(),
            postcode: "06105".into(),
            ..Default::default()
        });
        let sent = mpi::standardise(&mpi::Record {
            given_names: vec!["Bill".into()],
            family_name: "Quarington".into(),
            birth_date: "1961-07-04".into(),
            sex: "male".into(),
            postcode: "06105".into(),
            ..Default::default()
        });
        let score = model.score_with_prior(&sent, &stored, model.prior_for(10));
        assert!(score.grade.is_match(), "{score:?}");
    }
}
