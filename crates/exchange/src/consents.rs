//! The consent state: every patient's current patient-privacy Consents, as the decision point needs
//! them for every resource it is about to disclose.
//!
//! Consent resources written through the FHIR API (by an operator, by the patient in the portal,
//! or by a participant on the patient's behalf) are the source of truth; this is a per-process
//! copy of the current version of each, parsed ([`privacy::consent::Consent`]) and grouped by
//! patient, so that deciding about a resource costs a hash lookup, not a query.
//!
//! **Why an in-memory copy and not a store table or a per-patient cache.** A patient-privacy
//! Consent is rare (the opt-out model: most patients record nothing), small, and read for every
//! resource disclosed; a per-patient cache would ask the store once per patient per request (a
//! search page of 50 Observations about 50 patients: 50 queries) and keep asking about the many
//! patients who have no consent. Here the whole set is loaded once (a search of current Consents)
//! and then kept current:
//!
//! - **Writes of this process** mark it stale the moment they land ([`ConsentRegistry::changed`],
//!   called by the repository after a batch with a Consent commits), so the next decision reads
//!   them first: a consent recorded here is effective for the very next request.
//! - **Writes of other processes** (another server on the same database, `nutmeg admin`) are read
//!   from the store's Consent history since the last look, less [`SLACK_MS`] (a write is stamped
//!   before it commits), at most once per [`CONSENT_TTL`] (one second, as the participant-status
//!   cache): they hold within a second. One indexed history query per second per process, whatever
//!   the traffic.
//!
//! **Consent follows the person.** A patient's data is decided with the privacy consents of every
//! Patient linked to the same enterprise identity (`repository::identities`), as if each were the
//! patient's own: an opt-out recorded against one source's Patient covers every record linked to
//! it, and the person's latest choice, on whichever record, wins. The links are not looked up per
//! decision: with the consents, the registry keeps a map from every Patient linked to a Patient
//! that has a privacy consent to those consenting Patients ([`store::Store::mpi_persons_of`], one
//! query per 500 consenting Patients), rebuilt when the set of consenting Patients changes or the
//! link history grew ([`store::Store::mpi_history_head`], one cheap query per catch-up). A link
//! made in this process marks the state stale ([`ConsentRegistry::changed`]), so it holds for the
//! next request; one made by another process within [`CONSENT_TTL`], like a Consent write there.
//! With no privacy consent at all, nothing of the index is read.
//!
//! A stored Consent of another scope (treatment, research) is not a privacy consent and is
//! ignored. A stored patient-privacy Consent that does not parse (the API refuses such writes by
//! participants, patients and operators with a 422; the exchange's own tools, an import of another
//! system's data, may store one) counts as an opt-out of the patient it names: a restriction
//! that cannot be read must not be ignored (fail closed).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use privacy::consent::{Consent, Kind, Provision, Status, SCOPE_SYSTEM};
use serde_json::Value;
use store::{HistoryRequest, HistoryScope, SearchOptions, Store, Stored};

/// How long the consent state, once brought up to date, is trusted before the store's Consent
/// history is read again (the writes of other processes).
pub const CONSENT_TTL: Duration = crate::access::STATUS_TTL;

/// How far back each catch-up reads again: a write is stamped before it commits.
pub const SLACK_MS: i64 = 10_000;

/// Consents read from the store per page.
const PAGE: usize = 1000;

/// Every patient's current patient-privacy Consents, kept current (see the module documentation).
#[derive(Default)]
pub struct ConsentRegistry {
    state: RwLock<State>,
    /// Set when a Consent write of this process landed (or on start): read the store first.
    stale: AtomicBool,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    /// When the store was last read.
    checked: Option<Instant>,
    /// The `_since` of the next catch-up (milliseconds).
    caught_up: i64,
    /// Each Consent's current version, and the patient its privacy consent is about (none when it
    /// is deleted or not a privacy consent).
    by_id: HashMap<String, (i64, Option<String>)>,
    by_patient: HashMap<String, BTreeMap<String, Arc<Consent>>>,
    /// For each Patient linked to a Patient with privacy consents: those Patients (itself not
    /// included). Built from the identities as they were at `links_head`.
    persons: HashMap<String, Vec<String>>,
    /// The link history head the person map was built at, and the consenting Patients it was
    /// built for (`None`: never built).
    links_head: Option<(i64, Vec<String>)>,
}

impl std::fmt::Debug for ConsentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("ConsentRegistry")
            .field("loaded", &state.loaded)
            .field("patients", &state.by_patient.len())
            .finish_non_exhaustive()
    }
}

impl ConsentRegistry {
    /// Marks the state stale: a Consent write of this process just landed.
    pub fn changed(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The current privacy consents of `patient` (after [`ConsentRegistry::refresh`]).
    pub fn of(&self, patient: &str) -> Vec<Arc<Consent>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .by_patient
            .get(patient)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The Patients linked to `patient`'s enterprise identity that have privacy consents of their
    /// own (`patient` itself not included; after [`ConsentRegistry::refresh`]).
    pub fn linked(&self, patient: &str) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.persons.get(patient).cloned().unwrap_or_default()
    }

    /// The privacy consents of `patient` as a person: its own, and those of every Patient linked
    /// to the same enterprise identity, each as if recorded against `patient` (the policy reads
    /// only a patient's own; the latest choice among them wins, restrictions all apply).
    pub fn of_person(&self, patient: &str) -> Vec<Consent> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Consent> = Vec::new();
        let own = state.by_patient.get(patient);
        out.extend(
            own.into_iter()
                .flat_map(|m| m.values())
                .map(|c| (**c).clone()),
        );
        for other in state.persons.get(patient).into_iter().flatten() {
            for c in state
                .by_patient
                .get(other)
                .into_iter()
                .flat_map(|m| m.values())
            {
                let mut c = (**c).clone();
                c.patient = patient.to_string();
                out.push(c);
            }
        }
        out
    }

    /// The consents a decision about `patient`'s data rests on: the patient's own and those of
    /// each family member a family-therapy record names, each as a person
    /// ([`ConsentRegistry::of_person`]: consent follows the person).
    pub fn for_decision(&self, patient: &str, family: &[String]) -> Vec<Consent> {
        std::iter::once(patient)
            .chain(family.iter().map(String::as_str))
            .flat_map(|p| self.of_person(p))
            .collect()
    }

    /// Every Patient that has privacy consents of its own, sorted.
    pub fn consenting(&self) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = state.by_patient.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether any patient has a consent recorded at all (nothing to look up otherwise).
    pub fn is_empty(&self) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.by_patient.is_empty()
    }

    /// Brings the state up to date when it is stale or older than [`CONSENT_TTL`].
    pub async fn refresh(&self, store: &Store) -> Result<(), store::StoreError> {
        if self.is_fresh() {
            return Ok(());
        }
        let _one = self.refreshing.lock().await;
        if self.is_fresh() {
            return Ok(());
        }
        // Cleared before reading, so that a write landing during the read marks it stale again.
        self.stale.store(false, Ordering::SeqCst);
        let mark = now_millis() - SLACK_MS;
        let (loaded, since) = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            (state.loaded, state.caught_up)
        };
        let result = if loaded {
            self.catch_up(store, since).await
        } else {
            self.load(store).await
        };
        if let Err(e) = result {
            self.stale.store(true, Ordering::SeqCst);
            return Err(e);
        }
        if let Err(e) = self.link_persons(store).await {
            self.stale.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.loaded = true;
        state.caught_up = state.caught_up.max(mark);
        state.checked = Some(Instant::now());
        Ok(())
    }

    /// Rebuilds the person map when the consenting Patients or the identities changed since it
    /// was built (see the module documentation).
    async fn link_persons(&self, store: &Store) -> Result<(), store::StoreError> {
        let consenting = self.consenting();
        if consenting.is_empty() {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.persons.clear();
            state.links_head = None;
            return Ok(());
        }
        let head = store.mpi_history_head().await?;
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if state.links_head.as_ref() == Some(&(head, consenting.clone())) {
                return Ok(());
            }
        }
        let pairs = store.mpi_persons_of(&consenting).await?;
        let mut persons: HashMap<String, Vec<String>> = HashMap::new();
        for (consenting, linked) in pairs {
            if consenting != linked {
                persons.entry(linked).or_default().push(consenting);
            }
        }
        for list in persons.values_mut() {
            list.sort();
            list.dedup();
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.persons = persons;
        state.links_head = Some((head, consenting));
        Ok(())
    }

    fn is_fresh(&self) -> bool {
        if self.stale.load(Ordering::SeqCst) {
            return false;
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.loaded && state.checked.is_some_and(|at| at.elapsed() < CONSENT_TTL)
    }

    async fn load(&self, store: &Store) -> Result<(), store::StoreError> {
        let mut query = fhir::search::parse::parse(Some("Consent"), &[], false)
            .map_err(|_| store::StoreError::Database("the Consent search did not parse".into()))?
            .query;
        let options = SearchOptions {
            count: PAGE,
            max_includes: 0,
        };
        loop {
            let page = store.search(&query, &options).await?;
            for stored in &page.matches {
                self.apply(stored);
            }
            match page.next {
                Some(next) => query.page = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn catch_up(&self, store: &Store, since: i64) -> Result<(), store::StoreError> {
        let mut request = HistoryRequest {
            scope: HistoryScope::Type("Consent".to_string()),
            since: Some(since),
            at: None,
            count: PAGE,
            cursor: None,
        };
        loop {
            let page = store.history(&request).await?;
            for stored in &page.entries {
                self.apply(stored);
            }
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Takes one stored Consent version, unless a newer one of it is known.
    fn apply(&self, stored: &Stored) {
        let parsed = if stored.deleted {
            None
        } else {
            privacy_consent(&stored.id, &stored.json)
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some((known, _)) = state.by_id.get(&stored.id) {
            if *known >= stored.version {
                return;
            }
        }
        if let Some((_, Some(patient))) = state.by_id.get(&stored.id).cloned() {
            if let Some(m) = state.by_patient.get_mut(&patient) {
                m.remove(&stored.id);
                if m.is_empty() {
                    state.by_patient.remove(&patient);
                }
            }
        }
        let patient = parsed.as_ref().map(|c| c.patient.clone());
        state
            .by_id
            .insert(stored.id.clone(), (stored.version, patient.clone()));
        if let (Some(consent), Some(patient)) = (parsed, patient) {
            state
                .by_patient
                .entry(patient)
                .or_default()
                .insert(stored.id.clone(), Arc::new(consent));
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether a Consent is a patient-privacy one (its scope says so).
pub fn is_privacy_consent(consent: &Value) -> bool {
    consent["scope"]["coding"]
        .as_array()
        .is_some_and(|codings| {
            codings
                .iter()
                .any(|c| c["system"] == SCOPE_SYSTEM && c["code"] == "patient-privacy")
        })
}

/// The patient a Consent names (`Consent.patient`, `Patient/[id]`).
pub fn consent_patient(consent: &Value) -> Option<String> {
    let reference = consent["patient"]["reference"].as_str()?;
    let id = reference.strip_prefix("Patient/")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
}

/// A stored Consent as the policy sees it: `None` for one that is not a privacy consent; a
/// privacy consent that does not parse but names its patient and is active is an opt-out of that
/// patient (fail closed).
fn privacy_consent(id: &str, json: &str) -> Option<Consent> {
    let value: Value = serde_json::from_str(json).ok()?;
    if !is_privacy_consent(&value) {
        return None;
    }
    match Consent::parse(&value) {
        Ok(mut consent) => {
            consent.id = Some(id.to_string());
            Some(consent)
        }
        Err(_) => {
            let patient = consent_patient(&value)?;
            if value["status"] != "active" {
                return None;
            }
            tracing::warn!(
                consent = id,
                "a stored privacy Consent does not parse: counted as an opt-out"
            );
            Some(Consent {
                id: Some(id.to_string()),
                status: Status::Active,
                patient,
                date_time: time::OffsetDateTime::UNIX_EPOCH,
                kind: Kind::OptOut,
                informed: None,
                provision: Provision::everything(privacy::consent::Effect::Deny),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(id: &str, version: i64, json: Value, deleted: bool) -> Stored {
        Stored {
            resource_type: "Consent".into(),
            id: id.into(),
            version,
            last_updated: 0,
            deleted,
            json: json.to_string(),
            patients: None,
        }
    }

    fn opt_out(patient: &str) -> Value {
        json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient}")},
            "dateTime": "2026-01-10T09:00:00Z",
            "policyRule": {"coding": [{"system": privacy::codes::ACT_CODE_SYSTEM, "code": "OPTOUT"}]}})
    }

    #[test]
    fn versions_move_forward_and_a_consent_can_move_between_patients() {
        let registry = ConsentRegistry::default();
        registry.apply(&stored("c1", 1, opt_out("p1"), false));
        assert_eq!(registry.of("p1").len(), 1);
        assert_eq!(registry.of("p1")[0].id.as_deref(), Some("c1"));
        // An older version read late changes nothing.
        registry.apply(&stored("c1", 2, opt_out("p2"), false));
        registry.apply(&stored("c1", 1, opt_out("p1"), false));
        assert!(registry.of("p1").is_empty());
        assert_eq!(registry.of("p2").len(), 1);
        registry.apply(&stored("c1", 3, json!({}), true));
        assert!(registry.of("p2").is_empty());
        assert!(registry.is_empty());
    }

    #[test]
    fn consents_follow_the_person_through_the_person_map() {
        let registry = ConsentRegistry::default();
        registry.apply(&stored("c1", 1, opt_out("a"), false));
        assert!(registry.for_decision("b", &[]).is_empty(), "not linked yet");
        {
            let mut state = registry.state.write().unwrap();
            state.persons.insert("b".into(), vec!["a".into()]);
        }
        let consents = registry.for_decision("b", &[]);
        assert_eq!(consents.len(), 1);
        assert_eq!(consents[0].patient, "b", "as if recorded against b");
        assert_eq!(consents[0].kind, Kind::OptOut);
        assert_eq!(registry.of("b").len(), 0, "b has none of its own");
        assert_eq!(registry.linked("b"), vec!["a".to_string()]);
        // A family member's person counts too.
        assert_eq!(registry.for_decision("z", &["b".into()]).len(), 1);
    }

    #[test]
    fn other_scopes_are_ignored_and_unreadable_privacy_consents_fail_closed() {
        let registry = ConsentRegistry::default();
        let mut research = opt_out("p1");
        research["scope"]["coding"][0]["code"] = json!("research");
        registry.apply(&stored("c1", 1, research, false));
        assert!(registry.of("p1").is_empty());
        let mut broken = opt_out("p1");
        broken["dateTime"] = json!("not a date");
        registry.apply(&stored("c2", 1, broken, false));
        let consents = registry.of("p1");
        assert_eq!(consents.len(), 1);
        assert_eq!(consents[0].kind, Kind::OptOut);
    }
}

/// The answer of a consent consult (`POST /cds-services/patient-consent-consult`): the policy's
/// decision about each resource asked about (or about a plain resource, when none was given).
#[derive(Debug, Clone)]
pub struct ConsultAnswer {
    /// `Type/id` of each resource asked about (none for the plain resource), with its decision.
    pub decisions: Vec<(Option<String>, privacy::policy::Decision)>,
}

impl ConsultAnswer {
    /// Permit only when every decision permits.
    pub fn permit(&self) -> bool {
        self.decisions.iter().all(|(_, d)| d.permit)
    }
}
