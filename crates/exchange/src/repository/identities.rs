//! Enterprise identities: every Patient from every source linked to one enterprise identity with a
//! stable id, kept in the store (`store::Store::mpi_link` and the rest), beside the in-memory index
//! of `Patient/$match`.
//!
//! Linking is incremental: after each Patient write lands ([`Repository::note_patients`]), the
//! Patient's matching record is scored, inside the store's locked transaction (one at a time across
//! every process on the database), against the linked Patients that share a blocking key with it.
//! It joins the identity of its best candidate graded `certain` (the auto-link threshold), or keeps
//! the identity it had alone, or starts a new one; candidates of other identities graded `probable`
//! (the review threshold) or better go to the operators' review queue. Operators' decisions are
//! hard constraints: a Patient an operator linked (`manual`) stays where it was put, one an
//! operator told apart from another is never put with it, and both hold through a batch rebuild.
//!
//! Operators ([`Repository::mpi_reviews`], [`Repository::mpi_decide`], [`Repository::mpi_history`])
//! go through the decision point (operators only) and are audited. [`Repository::same_person`] is
//! for the decision point: every Patient of one person. [`Repository::rebuild_identities`] relinks
//! everything in batch (`nutmeg mpi rebuild`).
//!
//! Scoring: the model stored with the identities (trained by the last rebuild on the store's own
//! Patients once there are [`MIN_TRAINING`](super::MIN_TRAINING) of them), else the built-in one
//! trained on a seeded synthetic population; every process scores with the same model.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};
use store::{
    LinkContext, LinkDecision, LinkOutcome, MpiRebuild, MpiRebuilt, MpiReviewItem, MpiSubject,
    SplitContext,
};

use super::disclosure::Disclosed;
use super::matching::{record_of, synthetic_model, PatientChange, MIN_TRAINING};
use super::support::{new_id, now_millis, parse_stored};
use super::{Error, Repository, Result};
use crate::access::{Interaction as Access, Principal, Reason, Requester};
use crate::audit::Interaction;
use fhir::{Issue, IssueType};

/// A batch rebuild trains on at most this many records (every k-th).
const TRAIN_SAMPLE: usize = 100_000;

/// Who did it, for the link history.
pub(crate) fn actor_of(who: &Requester) -> String {
    match &who.principal {
        Principal::System { name } => format!("system:{name}"),
        Principal::Client { client_id, .. } => format!("client:{client_id}"),
        Principal::User { user_id, .. } => format!("user:{user_id}"),
        Principal::Anonymous => "anonymous".to_string(),
    }
}

/// The model the identities are scored with, with the store's version of it.
#[derive(Default)]
pub(crate) struct LinkModel {
    cached: std::sync::Mutex<Option<(i64, Arc<mpi::Model>)>>,
}

/// Progress of a batch rebuild: the stage, done, and total (for a progress bar).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// What a batch rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub patients: usize,
    pub identities: usize,
    pub pairs_compared: usize,
    pub reviews: usize,
    /// Patients whose identity changed.
    pub moved: usize,
    pub trained_on: usize,
}

impl Repository {
    /// The model linking scores with: the store's (parsed once per version), or the built-in one.
    async fn link_model(&self) -> Result<Arc<mpi::Model>> {
        let (json, version) = self.store.mpi_model().await?;
        let cache = &self.matcher.link_model;
        if let Some((v, model)) = cache
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if *v == version {
                return Ok(model.clone());
            }
        }
        let model = match json {
            Some(json) => Arc::new(mpi::Model::from_json(&json).map_err(|e| {
                Error::Store(store::StoreError::Database(format!(
                    "the stored patient index model does not parse: {e}"
                )))
            })?),
            // Off the async workers: the first call may wait for its training.
            None => Arc::new(
                tokio::task::spawn_blocking(|| synthetic_model().clone())
                    .await
                    .map_err(|e| {
                        Error::Store(store::StoreError::Database(format!(
                            "the built-in patient index model failed: {e}"
                        )))
                    })?,
            ),
        };
        *cache.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, model.clone()));
        Ok(model)
    }

    /// After Patient writes landed: the `$match` index takes them, and each is linked to its
    /// enterprise identity (a deleted one leaves). A failure to link is logged, not returned: the
    /// write has landed, and `nutmeg mpi rebuild` links whatever was missed.
    pub(crate) async fn note_patients(&self, who: &Requester, changes: Vec<PatientChange>) {
        if changes.is_empty() {
            return;
        }
        let actor = actor_of(who);
        for change in &changes {
            let outcome = match change {
                PatientChange::Put { id, json, .. } => match serde_json::from_str::<Value>(json) {
                    Ok(patient) => self.link_patient(&actor, id, &patient).await.map(|out| {
                        // A record alone in a new identity links nobody: no consent moves.
                        let alone = out.previous.is_none() && out.method == "new";
                        if !alone && out.previous.as_deref() != Some(out.identity_id.as_str()) {
                            self.identities_changed();
                        }
                    }),
                    Err(_) => Ok(()),
                },
                PatientChange::Delete { id, .. } => self
                    .store
                    .mpi_remove(id, &actor, now_millis())
                    .await
                    .map(|removed| {
                        if removed {
                            self.identities_changed();
                        }
                    })
                    .map_err(Error::from),
            };
            if let Err(e) = outcome {
                tracing::warn!(request_id = %who.request_id, error = %e, "linking a Patient to its identity failed");
            }
        }
        self.matcher.note(changes);
    }

    /// Links one Patient (as it is now) to its enterprise identity and answers where it went.
    pub async fn link_patient(
        &self,
        actor: &str,
        id: &str,
        patient: &Value,
    ) -> Result<LinkOutcome> {
        let model = self.link_model().await?;
        let record = record_of(patient);
        let standardised = mpi::standardise(&record);
        let blocking = mpi::Blocking::default();
        let mut keys = Vec::new();
        blocking.record_keys(&standardised, &mut keys);
        let subject = MpiSubject {
            patient_id: id.to_string(),
            record: serde_json::to_string(&record).unwrap_or_default(),
            keys: keys.into_iter().map(|k| k as i64).collect(),
            actor: actor.to_string(),
        };
        let fresh = new_id();
        let decide: store::Decide =
            Box::new(move |ctx| Ok(decide(&model, &standardised, ctx, fresh)));
        Ok(self
            .store
            .mpi_link(subject, blocking.max_bucket, now_millis(), decide)
            .await?)
    }

    /// An identity changed in this process: consent follows the person, so the consent state reads
    /// the identities again before the next decision (only when some patient has a consent).
    fn identities_changed(&self) {
        self.gate.identities_changed();
        if let Some(privacy) = self.gate.privacy() {
            if !privacy.consents.is_empty() {
                privacy.consents.changed();
            }
        }
    }

    /// The person's exchange-wide choice when it is an opt-out: every Patient linked with
    /// `patient_id` and the opt-out Consent in force that decides it (the latest choice among
    /// their privacy consents). `None` when the person takes part or the gate enforces no policy.
    async fn person_opt_out(
        &self,
        patient_id: &str,
    ) -> Result<Option<(Vec<String>, privacy::consent::Consent)>> {
        let Some(privacy) = self.gate.privacy() else {
            return Ok(None);
        };
        privacy.consents.refresh(&self.store).await?;
        let members = self.store.mpi_same_person(patient_id).await?;
        let consents: Vec<_> = members
            .iter()
            .flat_map(|m| privacy.consents.of(m))
            .collect();
        let refs: Vec<&privacy::consent::Consent> = consents.iter().map(|c| c.as_ref()).collect();
        let (participating, choice) = privacy.policy.choice(&refs, (privacy.clock)());
        Ok(match choice {
            Some(c) if !participating => Some((members, c.clone())),
            _ => None,
        })
    }

    /// After an unlink split a person that had opted out: each former member whose new identity
    /// no longer carries the opt-out gets a copy of it, recorded against its own Patient by the
    /// exchange (an audited write; `sourceReference` names the original), so both sides stay out
    /// until the patient says otherwise. Answers the copies' ids.
    async fn keep_opt_out(
        &self,
        members: &[String],
        opt_out: &privacy::consent::Consent,
    ) -> Result<Vec<String>> {
        let Some(privacy) = self.gate.privacy() else {
            return Ok(Vec::new());
        };
        let now = (privacy.clock)();
        let system = Requester::system("mpi-unlink");
        let mut copies = Vec::new();
        for member in members {
            let side = self.store.mpi_same_person(member).await?;
            let consents: Vec<_> = side.iter().flat_map(|m| privacy.consents.of(m)).collect();
            let refs: Vec<&privacy::consent::Consent> =
                consents.iter().map(|c| c.as_ref()).collect();
            if !privacy.policy.choice(&refs, now).0 {
                continue;
            }
            let mut copy = opt_out.clone();
            copy.id = None;
            copy.patient = member.clone();
            let Ok(mut json) = copy.to_fhir() else {
                continue;
            };
            if let Some(original) = &opt_out.id {
                json["sourceReference"] = json!({ "reference": format!("Consent/{original}") });
            }
            let written = self.create(&system, "Consent", json, None).await?;
            copies.push(written.resource.id);
        }
        if !copies.is_empty() {
            privacy.consents.changed();
        }
        Ok(copies)
    }

    /// For the decision point: the ids of every Patient linked to the same enterprise identity as
    /// `patient_id`, itself included, sorted (just `[patient_id]` when it is not linked). Consent
    /// follows the person: an opt-out recorded against any of them covers them all. No access
    /// check and no audit: this is the decision point's own lookup, never an answer to a caller.
    pub async fn same_person(&self, patient_id: &str) -> Result<Vec<String>> {
        Ok(self.store.mpi_same_person(patient_id).await?)
    }

    /// The enterprise identity a Patient is linked to, if any (no access check: for the exchange's
    /// own use, like [`Repository::same_person`]).
    pub async fn identity_of(&self, patient_id: &str) -> Result<Option<String>> {
        Ok(self.store.mpi_identity(patient_id).await?)
    }

    /// Operators only (through the decision point; a refusal is audited).
    async fn operators_only(&self, who: &Requester, access: Access) -> Result<()> {
        self.authorize(who, access, Some("Patient"), Interaction::Operation)
            .await?;
        if !self.gate.is_operator(who).await? {
            let reasons = vec![Reason::Role];
            self.record_refusal(who, Interaction::Operation, &reasons)
                .await?;
            return Err(Error::Forbidden(reasons));
        }
        Ok(())
    }

    /// `GET Patient/$mpi-review[?_count=]`: the review queue (operators only), best score first, as
    /// a Parameters resource with one `review` part per pair (`patient-a`, `patient-b` as
    /// references, `identity-a`, `identity-b`, `score`, `grade`). Audited with the patients named.
    pub async fn mpi_reviews(&self, who: &Requester, params: &[(String, String)]) -> Result<Value> {
        self.operators_only(who, Access::Search).await?;
        let mut limit = self.config.default_count;
        for (name, value) in params {
            match name.as_str() {
                "_count" => match value.parse::<usize>() {
                    Ok(n) if n >= 1 => limit = n.min(self.config.max_count),
                    _ => return Err(invalid("_count must be a whole number of 1 or more")),
                },
                _ => return Err(invalid(&format!("unknown parameter '{name}'"))),
            }
        }
        let reviews = self.store.mpi_reviews(limit).await?;
        let mut patients = BTreeSet::new();
        let parts: Vec<Value> = reviews
            .iter()
            .map(|r| {
                patients.insert(r.patient_a.clone());
                patients.insert(r.patient_b.clone());
                let mut part = vec![
                    json!({ "name": "patient-a", "valueReference": { "reference": format!("Patient/{}", r.patient_a) } }),
                    json!({ "name": "patient-b", "valueReference": { "reference": format!("Patient/{}", r.patient_b) } }),
                ];
                for (name, identity) in [("identity-a", &r.identity_a), ("identity-b", &r.identity_b)] {
                    if let Some(identity) = identity {
                        part.push(json!({ "name": name, "valueString": identity }));
                    }
                }
                part.push(json!({ "name": "score", "valueDecimal": round(r.score) }));
                part.push(json!({ "name": "grade", "valueCode": r.grade }));
                json!({ "name": "review", "part": part })
            })
            .collect();
        self.record_disclosure(
            who,
            Interaction::Operation,
            Some(format!("Patient/$mpi-review?_count={limit}")),
            Disclosed::of(Vec::new(), patients),
        )
        .await?;
        Ok(json!({ "resourceType": "Parameters", "parameter": parts }))
    }

    /// `POST Patient/$mpi-link` or `Patient/$mpi-unlink` (operators only): a Parameters resource
    /// with `patient-a` and `patient-b` (references or ids) and a `reason` (required). Link: the two
    /// are one person (their identities merge; refused with 409 if an operator told members of them
    /// apart before). Unlink: they are not (if they share an identity, its members are regrouped on
    /// both sides by their scores, every operator decision kept). The decision is a hard constraint
    /// on later linking, kept in the link history with who made it and why, and audited.
    pub async fn mpi_decide(&self, who: &Requester, link: bool, body: &Value) -> Result<Value> {
        self.operators_only(who, Access::Update).await?;
        let (a, b, reason) = decision_input(body)?;
        for id in [&a, &b] {
            match self.store.read("Patient", id).await? {
                Some(stored) if !stored.deleted => {}
                _ => {
                    return Err(Error::Unprocessable(vec![Issue::error(
                        IssueType::NotFound,
                        format!("there is no Patient/{id}"),
                    )]))
                }
            }
            if self.store.mpi_identity(id).await?.is_none() {
                // Written before the identities existed (or its linking failed): link it now.
                let stored = self
                    .store
                    .read("Patient", id)
                    .await?
                    .ok_or(Error::NotFound)?;
                self.link_patient(&actor_of(who), id, &parse_stored(&stored)?)
                    .await?;
            }
        }
        let actor = actor_of(who);
        let now = now_millis();
        // Consent follows the person: an opt-out that covered both sides keeps covering both.
        let opted_out = if link {
            None
        } else {
            self.person_opt_out(&a).await?
        };
        let changed = if link {
            self.store.mpi_merge(&a, &b, &actor, &reason, now).await
        } else {
            let model = self.link_model().await?;
            let fresh = new_id();
            let split: store::Split = Box::new(move |ctx| split(&model, ctx, &fresh));
            self.store
                .mpi_unlink(&a, &b, &actor, &reason, now, split)
                .await
        };
        let changed = match changed {
            Ok(changed) => changed,
            Err(store::StoreError::Conflict { .. }) => {
                return Err(Error::Unprocessable(vec![Issue::error(
                    IssueType::BusinessRule,
                    "an earlier operator decision about these Patients' identities contradicts this one; undo it first",
                )]))
            }
            Err(e) => return Err(e.into()),
        };
        self.identities_changed();
        if let (true, Some((members, opt_out))) = (changed, &opted_out) {
            self.keep_opt_out(members, opt_out).await?;
        }
        let operation = if link { "$mpi-link" } else { "$mpi-unlink" };
        self.record_disclosure(
            who,
            Interaction::Operation,
            Some(format!("Patient/{operation}?patient-a={a}&patient-b={b}")),
            Disclosed::of(Vec::new(), [a.clone(), b.clone()]),
        )
        .await?;
        let identity_a = self.store.mpi_identity(&a).await?.unwrap_or_default();
        let identity_b = self.store.mpi_identity(&b).await?.unwrap_or_default();
        Ok(json!({
            "resourceType": "Parameters",
            "parameter": [
                { "name": "identity-a", "valueString": identity_a },
                { "name": "identity-b", "valueString": identity_b },
                { "name": "changed", "valueBoolean": changed },
            ],
        }))
    }

    /// `GET Patient/$mpi-history?patient=&identity=&_count=` (operators only): the link history,
    /// newest first, as a Parameters resource with one `entry` part per change.
    pub async fn mpi_history(&self, who: &Requester, params: &[(String, String)]) -> Result<Value> {
        self.operators_only(who, Access::Search).await?;
        let (mut patient, mut identity, mut limit) = (None, None, self.config.default_count);
        for (name, value) in params {
            match name.as_str() {
                "patient" => {
                    patient = Some(value.strip_prefix("Patient/").unwrap_or(value).to_string())
                }
                "identity" => identity = Some(value.clone()),
                "_count" => match value.parse::<usize>() {
                    Ok(n) if n >= 1 => limit = n.min(self.config.max_count),
                    _ => return Err(invalid("_count must be a whole number of 1 or more")),
                },
                _ => return Err(invalid(&format!("unknown parameter '{name}'"))),
            }
        }
        let entries = self
            .store
            .mpi_history(patient.as_deref(), identity.as_deref(), limit)
            .await?;
        let mut patients = BTreeSet::new();
        let parts: Vec<Value> = entries
            .iter()
            .map(|h| {
                patients.insert(h.patient_id.clone());
                let mut part = vec![
                    json!({ "name": "at", "valueInstant": fhir::search::datetime::format_instant(h.at) }),
                    json!({ "name": "actor", "valueString": h.actor }),
                    json!({ "name": "action", "valueCode": h.action }),
                    json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{}", h.patient_id) } }),
                ];
                if let Some(i) = &h.identity_id {
                    part.push(json!({ "name": "identity", "valueString": i }));
                }
                if let Some(i) = &h.previous_identity {
                    part.push(json!({ "name": "previous-identity", "valueString": i }));
                }
                part.push(json!({ "name": "reason", "valueString": h.reason }));
                json!({ "name": "entry", "part": part })
            })
            .collect();
        self.record_disclosure(
            who,
            Interaction::Operation,
            Some("Patient/$mpi-history".to_string()),
            Disclosed::of(Vec::new(), patients),
        )
        .await?;
        Ok(json!({ "resourceType": "Parameters", "parameter": parts }))
    }

    /// Relinks every current Patient in batch: retrains the model on them (on a sample of at most
    /// 100,000; with fewer than
    /// [`MIN_TRAINING`] the built-in model), scores the blocked pairs, groups them keeping every
    /// operator decision, keeps each identity's id where most of its members were, and stores it
    /// all in one transaction. `progress` hears of each stage.
    pub async fn rebuild_identities(
        &self,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RebuildReport> {
        let started = std::time::Instant::now();
        let mut query = fhir::search::parse::parse(Some("Patient"), &[], false)
            .map_err(Error::Invalid)?
            .query;
        // Counted once, on the first page.
        query.total = fhir::search::Total::Accurate;
        let options = store::SearchOptions {
            count: 1000,
            max_includes: 0,
        };
        let mut ids = Vec::new();
        let mut records = Vec::new();
        let mut total = 0u64;
        loop {
            let page = self.store.search(&query, &options).await?;
            if let Some(t) = page.total {
                total = t;
            }
            query.total = fhir::search::Total::None;
            for stored in &page.matches {
                if stored.deleted {
                    continue;
                }
                ids.push(stored.id.clone());
                records.push(record_of(&parse_stored(stored)?));
            }
            progress("reading", ids.len() as u64, total.max(ids.len() as u64));
            match page.next {
                Some(next) => query.page = Some(next),
                None => break,
            }
        }
        let snapshot = self.store.mpi_snapshot().await?;
        let fallback = self.link_model().await?;
        let reporter = |stage: &str, done: u64, total: u64| progress(stage, done, total);
        let plan = || plan_rebuild(&ids, &records, &snapshot, &fallback, &reporter);
        // CPU for a while: off the async workers where the runtime has others to run on.
        let planned = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(plan)
        } else {
            plan()
        }
        .map_err(|e| Error::Unprocessable(vec![Issue::error(IssueType::BusinessRule, e)]))?;
        let report = RebuildReport {
            patients: ids.len(),
            identities: planned.identities,
            pairs_compared: planned.pairs,
            reviews: planned.rebuild.reviews.len(),
            moved: planned.moved,
            trained_on: planned.trained_on,
        };
        progress("saving", 0, 1);
        let mut rebuild = planned.rebuild;
        rebuild.actor = actor.to_string();
        rebuild.reason = "batch rebuild".to_string();
        self.store.mpi_apply_rebuild(rebuild, now_millis()).await?;
        self.identities_changed();
        progress("saving", 1, 1);
        tracing::info!(
            patients = report.patients,
            identities = report.identities,
            pairs = report.pairs_compared,
            reviews = report.reviews,
            moved = report.moved,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "patient identities rebuilt"
        );
        Ok(report)
    }
}

fn invalid(message: &str) -> Error {
    Error::Invalid(vec![Issue::error(IssueType::Invalid, message)])
}

fn round(score: f64) -> f64 {
    (score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}

/// `patient-a`, `patient-b` (ids, from references or strings) and `reason`.
fn decision_input(body: &Value) -> Result<(String, String, String)> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(invalid("the body must be a Parameters resource"));
    }
    let get = |name: &str| -> Option<String> {
        body["parameter"].as_array()?.iter().find_map(|p| {
            if p["name"].as_str() != Some(name) {
                return None;
            }
            p["valueReference"]["reference"]
                .as_str()
                .or_else(|| p["valueString"].as_str())
                .or_else(|| p["valueId"].as_str())
                .map(|s| s.strip_prefix("Patient/").unwrap_or(s).trim().to_string())
        })
    };
    let (Some(a), Some(b)) = (get("patient-a"), get("patient-b")) else {
        return Err(invalid("patient-a and patient-b are required"));
    };
    let reason = get("reason").unwrap_or_default();
    if reason.is_empty() {
        return Err(invalid(
            "a reason is required (it is kept in the link history)",
        ));
    }
    if a == b || !super::support::is_valid_id(&a) || !super::support::is_valid_id(&b) {
        return Err(invalid("patient-a and patient-b must be two Patient ids"));
    }
    Ok((a, b, reason))
}

/// The incremental decision for one Patient (see the module's documentation).
pub(crate) fn decide(
    model: &mpi::Model,
    subject: &mpi::Standardised,
    ctx: LinkContext,
    fresh: String,
) -> LinkDecision {
    let prior = model.prior_for(ctx.population);
    let forbidden: BTreeSet<&str> = ctx
        .constraints
        .iter()
        .filter(|c| !c.same)
        .filter_map(|c| c.other_identity.as_deref())
        .collect();
    let told_apart: BTreeSet<&str> = ctx
        .constraints
        .iter()
        .filter(|c| !c.same)
        .map(|c| c.other.as_str())
        .collect();
    // The best candidate of each identity, and the identities holding a match that its source
    // numbered as another person (never joined without an operator).
    let mut best: BTreeMap<&str, (f64, mpi::Grade, &str)> = BTreeMap::new();
    let mut numbered: BTreeSet<&str> = BTreeSet::new();
    for c in &ctx.candidates {
        let Ok(record) = serde_json::from_str::<mpi::Record>(&c.record) else {
            continue;
        };
        let other = mpi::standardise(&record);
        let score = model.score_with_prior(subject, &other, prior);
        if score.grade == mpi::Grade::CertainlyNot {
            continue;
        }
        if score.grade.is_match() && numbered_apart(subject, &other) {
            numbered.insert(c.identity_id.as_str());
        }
        let entry = best.entry(c.identity_id.as_str()).or_insert((
            score.probability,
            score.grade,
            c.patient_id.as_str(),
        ));
        if score.probability > entry.0 {
            *entry = (score.probability, score.grade, c.patient_id.as_str());
        }
    }
    let mut ranked: Vec<(&str, (f64, mpi::Grade, &str))> = best
        .iter()
        .map(|(i, &(p, grade, with))| {
            let grade = if grade == mpi::Grade::Certain && numbered.contains(i) {
                mpi::Grade::Probable
            } else {
                grade
            };
            (*i, (p, grade, with))
        })
        .collect();
    ranked.sort_by(|x, y| y.1 .0.total_cmp(&x.1 .0).then(x.0.cmp(y.0)));

    let required = ctx
        .constraints
        .iter()
        .find(|c| c.same && c.other_identity.is_some());
    let sticky = ctx
        .current
        .as_ref()
        .filter(|c| c.method == "manual" && !forbidden.contains(c.identity_id.as_str()));
    let (identity_id, method, score, reason) = if let Some(c) = required {
        (
            c.other_identity.clone().unwrap_or_default(),
            "manual",
            None,
            format!("an operator linked it to Patient/{}", c.other),
        )
    } else if let Some(current) = sticky {
        (
            current.identity_id.clone(),
            "manual",
            None,
            "kept where an operator put it".to_string(),
        )
    } else if let Some((identity, (p, _, with))) = ranked
        .iter()
        .find(|(i, (_, g, _))| *g == mpi::Grade::Certain && !forbidden.contains(i))
    {
        (
            identity.to_string(),
            "auto",
            Some(*p),
            format!("certain match with Patient/{with} (score {:.4})", round(*p)),
        )
    } else {
        let keep = ctx
            .current
            .as_ref()
            .filter(|c| c.others == 0 && !forbidden.contains(c.identity_id.as_str()));
        (
            keep.map_or(fresh, |c| c.identity_id.clone()),
            "new",
            None,
            if best
                .iter()
                .any(|(i, b)| b.1 == mpi::Grade::Certain && numbered.contains(i))
            {
                "no certain match: the best one carries another number in one of the same \
                 identifier systems, so it waits for review"
                    .to_string()
            } else {
                "no certain match".to_string()
            },
        )
    };
    let reviews = ranked
        .iter()
        .filter(|(i, (_, g, with))| {
            *i != identity_id
                && g.is_match()
                && !forbidden.contains(i)
                && !told_apart.contains(with)
        })
        .map(|(_, (p, g, with))| MpiReviewItem {
            candidate: with.to_string(),
            score: round(*p),
            grade: g.code().to_string(),
        })
        .collect();
    LinkDecision {
        identity_id,
        method: method.to_string(),
        score,
        reason,
        reviews,
    }
}

/// Two records that carry values in one identifier system and no value in common (two charts at
/// one source, two social security numbers): whoever assigned them numbered two people, so the
/// exchange never joins them on its own, directly or through a third record; an operator may,
/// from the review queue.
pub(crate) fn numbered_apart(a: &mpi::Standardised, b: &mpi::Standardised) -> bool {
    let level = mpi::compare::identifier(a, b);
    level != mpi::MISSING && level < 3
}

/// Groups `n` records: operators' `same` pairs first, then `links` best first, never joining two
/// groups an operator's `different` pair separates, nor (for `links` only) two groups a `numbered`
/// pair separates. An error if the operators' decisions contradict each other. Answers each
/// record's group (the index of its first member).
pub(crate) fn group(
    n: usize,
    same: &[(usize, usize)],
    different: &[(usize, usize)],
    numbered: &[(usize, usize)],
    links: &mut [(usize, usize, f64)],
) -> std::result::Result<Vec<usize>, String> {
    let mut parent: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut apart: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(a, b) in different {
        apart.entry(a).or_default().push(b);
        apart.entry(b).or_default().push(a);
    }
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut join =
        |parent: &mut Vec<usize>, apart: &HashMap<usize, Vec<usize>>, a: usize, b: usize| -> bool {
            let (ra, rb) = (find(parent, a), find(parent, b));
            if ra == rb {
                return true;
            }
            let (small, large) = if members[ra].len() < members[rb].len() {
                (ra, rb)
            } else {
                (rb, ra)
            };
            for &m in &members[small] {
                if let Some(others) = apart.get(&m) {
                    for &o in others {
                        if find(parent, o) == large {
                            return false;
                        }
                    }
                }
            }
            let moved = std::mem::take(&mut members[small]);
            members[large].extend(moved);
            parent[small] = large;
            true
        };
    for &(a, b) in same {
        if !join(&mut parent, &apart, a, b) {
            return Err("the operators' decisions contradict each other".to_string());
        }
    }
    for &(a, b) in numbered {
        apart.entry(a).or_default().push(b);
        apart.entry(b).or_default().push(a);
    }
    links.sort_by(|x, y| y.2.total_cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
    for &(a, b, _) in links.iter() {
        join(&mut parent, &apart, a, b);
    }
    // Each group named by its first (lowest) member.
    let mut first = HashMap::new();
    Ok((0..n)
        .map(|i| {
            let root = find(&mut parent, i);
            *first.entry(root).or_insert(i)
        })
        .collect())
}

/// Regroups the members of an identity after an operator told two of them apart: pairs graded
/// certain join, every operator decision kept. The largest group keeps the identity's id (on a
/// tie, the one with the lowest Patient id); the others get new ones.
fn split(
    model: &mpi::Model,
    ctx: SplitContext,
    fresh: &str,
) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let n = ctx.members.len();
    let at: HashMap<&str, usize> = ctx
        .members
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let records: Vec<mpi::Standardised> = ctx
        .members
        .iter()
        .map(|(_, r)| mpi::standardise(&serde_json::from_str::<mpi::Record>(r).unwrap_or_default()))
        .collect();
    let prior = model.prior_for(n.max(2));
    let mut links = Vec::new();
    let mut numbered = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let s = model.score_with_prior(&records[i], &records[j], prior);
            if s.grade.is_match() && numbered_apart(&records[i], &records[j]) {
                numbered.push((i, j));
            } else if s.grade == mpi::Grade::Certain {
                links.push((i, j, s.probability));
            }
        }
    }
    let pairs = |same: bool| -> Vec<(usize, usize)> {
        ctx.decisions
            .iter()
            .filter(|d| d.2 == same)
            .filter_map(|(a, b, _)| Some((*at.get(a.as_str())?, *at.get(b.as_str())?)))
            .collect()
    };
    let groups = group(n, &pairs(true), &pairs(false), &numbered, &mut links)?;
    let mut by_group: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, g) in groups.into_iter().enumerate() {
        by_group
            .entry(g)
            .or_default()
            .push(ctx.members[i].0.clone());
    }
    let mut out: Vec<Vec<String>> = by_group.into_values().collect();
    out.sort_by(|x, y| y.len().cmp(&x.len()).then(x[0].cmp(&y[0])));
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(k, members)| {
            let id = if k == 0 {
                ctx.identity_id.clone()
            } else {
                format!("{fresh}-{k}")
            };
            (id, members)
        })
        .collect())
}

/// A batch rebuild, planned (CPU only).
struct Planned {
    rebuild: MpiRebuild,
    identities: usize,
    pairs: usize,
    moved: usize,
    trained_on: usize,
}

fn plan_rebuild(
    ids: &[String],
    records: &[mpi::Record],
    snapshot: &store::MpiSnapshot,
    fallback: &mpi::Model,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> std::result::Result<Planned, String> {
    let n = ids.len();
    progress("standardising", 0, n as u64);
    let standardised: Vec<mpi::Standardised> = records.iter().map(mpi::standardise).collect();
    progress("standardising", n as u64, n as u64);
    let blocking = mpi::Blocking::default();
    let (model, trained_on) = if n >= MIN_TRAINING {
        // On a sample of at most TRAIN_SAMPLE records: as accurate as all of them on the engine's
        // measurements, far faster, and EM over all the pairs of a large set drifts
        // (BENCHMARKS.md, the master patient index's batch rebuild).
        progress("training", 0, 1);
        let step = n.div_ceil(TRAIN_SAMPLE);
        let sample: Vec<mpi::Standardised> = standardised.iter().step_by(step).cloned().collect();
        let trained = super::matching::train(&sample);
        progress("training", 1, 1);
        (Some(trained), sample.len())
    } else {
        (None, 0)
    };
    let scoring = model.as_ref().unwrap_or(fallback);
    let pairs = blocking.dedup_pairs(&standardised);
    let prior = scoring.prior_for(n);
    let mut links = Vec::new();
    let mut numbered = Vec::new();
    let mut reviews = Vec::new();
    let step = (pairs.len() / 100).max(1);
    for (k, &(i, j)) in pairs.iter().enumerate() {
        if k % step == 0 {
            progress("scoring", k as u64, pairs.len() as u64);
        }
        let (a, b) = (&standardised[i as usize], &standardised[j as usize]);
        let s = scoring.score_with_prior(a, b, prior);
        let (i, j) = (i as usize, j as usize);
        match s.grade {
            mpi::Grade::Certain | mpi::Grade::Probable if numbered_apart(a, b) => {
                numbered.push((i, j));
                reviews.push((i, j, s.probability, mpi::Grade::Probable));
            }
            mpi::Grade::Certain => links.push((i, j, s.probability)),
            mpi::Grade::Probable => reviews.push((i, j, s.probability, s.grade)),
            _ => {}
        }
    }
    progress("scoring", pairs.len() as u64, pairs.len() as u64);
    let at: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let decided = |same: bool| -> Vec<(usize, usize)> {
        snapshot
            .decisions
            .iter()
            .filter(|d| d.2 == same)
            .filter_map(|(a, b, _)| Some((*at.get(a.as_str())?, *at.get(b.as_str())?)))
            .collect()
    };
    let (same, different) = (decided(true), decided(false));
    let manual: BTreeSet<usize> = same.iter().flat_map(|&(a, b)| [a, b]).collect();
    let told_apart: BTreeSet<(usize, usize)> = different
        .iter()
        .map(|&(a, b)| (a.min(b), a.max(b)))
        .collect();
    progress("grouping", 0, 1);
    let groups = group(n, &same, &different, &numbered, &mut links)?;
    progress("grouping", 1, 1);

    // Identity ids: each old id goes to the group holding most of its members.
    let old: HashMap<&str, &str> = snapshot
        .links
        .iter()
        .map(|(p, i)| (p.as_str(), i.as_str()))
        .collect();
    let mut overlap: HashMap<(usize, &str), usize> = HashMap::new();
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for (i, &g) in groups.iter().enumerate() {
        *sizes.entry(g).or_default() += 1;
        if let Some(identity) = old.get(ids[i].as_str()) {
            *overlap.entry((g, identity)).or_default() += 1;
        }
    }
    let mut claims: Vec<((usize, &str), usize)> = overlap.into_iter().collect();
    claims.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let mut name: HashMap<usize, String> = HashMap::new();
    let mut taken = BTreeSet::new();
    for ((g, identity), _) in claims {
        if !name.contains_key(&g) && taken.insert(identity) {
            name.insert(g, identity.to_string());
        }
    }
    let mut moved = 0;
    let mut out = Vec::with_capacity(n);
    for (i, &g) in groups.iter().enumerate() {
        let identity = name.entry(g).or_insert_with(new_id).clone();
        if old.get(ids[i].as_str()) != Some(&identity.as_str()) {
            moved += 1;
        }
        let mut keys = Vec::new();
        blocking.record_keys(&standardised[i], &mut keys);
        let method = if manual.contains(&i) {
            "manual"
        } else if sizes[&g] > 1 {
            "auto"
        } else {
            "new"
        };
        out.push(MpiRebuilt {
            patient_id: ids[i].clone(),
            identity_id: identity,
            method: method.to_string(),
            score: None,
            record: serde_json::to_string(&records[i]).unwrap_or_default(),
            keys: keys.into_iter().map(|k| k as i64).collect(),
        });
    }
    let review_items = reviews
        .into_iter()
        .filter(|&(i, j, _, _)| {
            groups[i] != groups[j] && !told_apart.contains(&(i.min(j), i.max(j)))
        })
        .map(|(i, j, p, g)| {
            (
                ids[i].clone(),
                ids[j].clone(),
                round(p),
                g.code().to_string(),
            )
        })
        .collect();
    Ok(Planned {
        identities: sizes.len(),
        pairs: pairs.len(),
        moved,
        trained_on,
        rebuild: MpiRebuild {
            model: model.map(|m| m.to_json()),
            links: out,
            reviews: review_items,
            actor: String::new(),
            reason: String::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measurement, not a check (ignored; BENCHMARKS.md): `MPI_BENCH_RECORDS` (default 1,000,000)
    /// generated identities stored as linked Patients (on SQLite in a temporary directory, or on
    /// `MPI_BENCH_DATABASE`), then 1,000 noisy copies linked one by one through the store (the
    /// candidates read from the keys table, scored, the link written, under the lock), and the
    /// batch rebuild of the whole set planned (standardise, block, train on a sample, score,
    /// group) and stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn linking_against_a_million_identities() {
        let n: usize = std::env::var("MPI_BENCH_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tempfile::tempdir().expect("temp dir");
        let url = std::env::var("MPI_BENCH_DATABASE")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
        let store = store::Store::open(&url).await.expect("open");
        let mut generator = mpi::Generator::new(42);
        let started = std::time::Instant::now();
        let records: Vec<mpi::Record> = (0..n).map(|_| generator.identity(0.7)).collect();
        let blocking = mpi::Blocking::default();
        let links: Vec<MpiRebuilt> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut keys = Vec::new();
                blocking.record_keys(&mpi::standardise(r), &mut keys);
                MpiRebuilt {
                    patient_id: format!("p{i}"),
                    identity_id: format!("I{i}"),
                    method: "new".into(),
                    score: None,
                    record: serde_json::to_string(r).unwrap_or_default(),
                    keys: keys.into_iter().map(|k| k as i64).collect(),
                }
            })
            .collect();
        let generated = started.elapsed();
        let started = std::time::Instant::now();
        store
            .mpi_apply_rebuild(
                MpiRebuild {
                    model: None,
                    links,
                    reviews: Vec::new(),
                    actor: "bench".into(),
                    reason: "load".into(),
                },
                1,
            )
            .await
            .expect("load");
        eprintln!(
            "{n} identities generated in {:.1} s, stored in {:.1} s ({})",
            generated.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            store.engine()
        );
        let model = std::sync::Arc::new(synthetic_model().clone());
        let mut times = Vec::new();
        let (mut linked, mut right) = (0, 0);
        for q in 0..1000 {
            let k = (q * 7919) % n;
            let copy = generator.noisy_copy(&records[k]);
            let standardised = mpi::standardise(&copy);
            let mut keys = Vec::new();
            blocking.record_keys(&standardised, &mut keys);
            let subject = MpiSubject {
                patient_id: format!("q{q}"),
                record: serde_json::to_string(&copy).unwrap_or_default(),
                keys: keys.into_iter().map(|k| k as i64).collect(),
                actor: "bench".into(),
            };
            let m = model.clone();
            let decide: store::Decide =
                Box::new(move |ctx| Ok(decide(&m, &standardised, ctx, format!("N{q}"))));
            let t = std::time::Instant::now();
            let out = store
                .mpi_link(subject, blocking.max_bucket, 2, decide)
                .await
                .expect("link");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if out.method == "auto" {
                linked += 1;
                right += usize::from(out.identity_id == format!("I{k}"));
            }
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "linking one record against {n}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {linked} of 1000 auto-linked, {right} to the right identity",
            times[500],
            times[989],
            times[999]
        );

        // The batch rebuild of the same set (reading the Patients from the store aside).
        let started = std::time::Instant::now();
        let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let snapshot = store.mpi_snapshot().await.expect("snapshot");
        let read = started.elapsed();
        let fallback = synthetic_model().clone();
        let planned = tokio::task::block_in_place(|| {
            plan_rebuild(
                &ids,
                &records,
                &snapshot,
                &fallback,
                &|_: &str, _: u64, _: u64| {},
            )
        })
        .expect("planned");
        let planning = started.elapsed() - read;
        let (identities, pairs, moved) = (planned.identities, planned.pairs, planned.moved);
        // Printed before the store, so that a store that fails (a full disk) loses nothing measured.
        eprintln!(
            "rebuild of {n}: snapshot {:.1} s, plan {:.1} s ({pairs} pairs, {identities} identities, {moved} moved)",
            read.as_secs_f64(),
            planning.as_secs_f64(),
        );
        let t = std::time::Instant::now();
        store
            .mpi_apply_rebuild(planned.rebuild, 3)
            .await
            .expect("stored");
        eprintln!("rebuild of {n}: store {:.1} s", t.elapsed().as_secs_f64());
    }

    #[test]
    fn grouping_keeps_the_operators_decisions() {
        // 0-1 and 1-2 score high, but an operator told 0 and 2 apart: 1 goes with 0 (the better
        // link), 2 stays alone.
        let mut links = vec![(0, 1, 0.99), (1, 2, 0.98)];
        let groups = group(3, &[], &[(0, 2)], &[], &mut links).expect("groups");
        assert_eq!(groups, vec![0, 0, 2]);
        // An operator's same pair joins whatever the scores say.
        let groups = group(3, &[(0, 2)], &[], &[], &mut []).expect("groups");
        assert_eq!(groups, vec![0, 1, 0]);
        // Contradicting decisions are refused.
        assert!(group(3, &[(0, 1), (1, 2)], &[(0, 2)], &[], &mut []).is_err());
    }

    #[test]
    fn two_numbers_of_one_system_keep_records_apart_unless_an_operator_joins_them() {
        // 0 and 2 are two charts at one source; 1 (another source) scores high with both.
        let mut links = vec![(0, 1, 0.99), (1, 2, 0.98)];
        let groups = group(3, &[], &[], &[(0, 2)], &mut links).expect("groups");
        assert_eq!(groups, vec![0, 0, 2]);
        // An operator who says they are one person is obeyed: the numbers bind links, not people.
        let groups = group(3, &[(0, 2)], &[], &[(0, 2)], &mut links).expect("groups");
        assert_eq!(groups, vec![0, 0, 0]);
    }

    #[test]
    fn numbered_apart_means_a_shared_system_and_no_shared_value() {
        let rec = |ids: &[(&str, &str)]| {
            mpi::standardise(&mpi::Record {
                identifiers: ids
                    .iter()
                    .map(|(s, v)| mpi::Identifier::new(*s, *v))
                    .collect(),
                ..Default::default()
            })
        };
        let a = rec(&[("urn:mrn:a", "A-1042"), ("ssn", "123-45-6789")]);
        // Another chart at the same source, even one digit away.
        assert!(numbered_apart(&a, &rec(&[("urn:mrn:a", "A-1043")])));
        // The same social security number settles it, whatever the charts say.
        assert!(!numbered_apart(
            &a,
            &rec(&[("urn:mrn:a", "A-2001"), ("ssn", "123456789")])
        ));
        // Another source's number, or none, says nothing.
        assert!(!numbered_apart(&a, &rec(&[("urn:mrn:b", "B-77")])));
        assert!(!numbered_apart(&a, &rec(&[])));
    }
}
