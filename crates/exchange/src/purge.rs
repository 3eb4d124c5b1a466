//! The consent purge: after a patient opts out of the exchange, their clinical data is deleted once
//! the policy window has passed (Connecticut: five business days), keeping the Consent resources
//! and the audit trail.
//!
//! What a run does, at the instant `now` it is given (the caller's clock: `nutmeg serve` passes the
//! wall clock, `nutmeg admin consent purge --now` and the tests any instant):
//!
//! 1. Reads every current patient-privacy Consent ([`ConsentRegistry`], its own copy, loaded from
//!    the store) and groups the Patients that have one into persons: every Patient linked to the
//!    same enterprise identity ([`store::Store::mpi_persons_of`]). Consent follows the person, as at
//!    the decision point.
//! 2. For each person, the policy's exchange-wide choice among all their consents
//!    ([`privacy::policy::Policy::choice`]: the latest in force wins). A person who takes part is
//!    left alone; a person opted out is due at the opt-out's `dateTime` plus the window in business
//!    days ([`add_business_days`]: Monday to Friday, UTC, no holidays).
//! 3. For each person due: every resource that is or ever was in the Patient compartment of any of
//!    their Patients, and those Patients themselves, except Consents
//!    ([`store::Store::compartment_members`]), is removed with all its versions and index rows in
//!    one transaction ([`store::Store::purge`]), which also appends the purge's AuditEvent (the
//!    exchange as agent, subtype `delete`, the patients, and counts per resource type; no content,
//!    no resource ids), made from what was actually removed.
//!
//! Idempotent and safe to run at once in several processes: a second run (or a concurrent one)
//! finds nothing left, removes nothing and records nothing. Data arriving for the person after a
//! run is removed by the next (they are still opted out). After the person opts back in, nothing
//! is removed any more, and nothing purged comes back: they start empty.
//!
//! Not removed: the Consents; the audit trail (append-only); the enterprise identities' links and
//! matching records (the index needs them so that the opt-out keeps following the person to
//! records that arrive later from other sources); treatment relationships (who may see, not what).
//! A resource about several patients (a family-therapy record) is in each one's compartment and is
//! removed with the opted-out patient's data. Data the policy routes to public health
//! ([`Policy::kept_for_public_health`]: reportable data, such as an immunization or a notifiable
//! condition, that public health receives through an opt-out) is kept, every version of it, with
//! the Patients it is about; while the person is out only public health sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use privacy::consent::Consent;
use privacy::policy::Policy;
use serde::Serialize;
use store::{Store, StoreError};
use time::{Duration, OffsetDateTime, Weekday};

use crate::audit::{AuditFacts, Interaction, Outcome, Requestor};
use crate::consents::ConsentRegistry;

/// The window when the configuration names none: five business days, as in Connecticut.
pub const DEFAULT_WINDOW_DAYS: u32 = 5;

/// The agent the purge's AuditEvents name.
pub const AGENT: &str = "system:consent-purge";

/// `start` plus `days` business days (Monday to Friday, in UTC; no holidays): each day added that
/// lands on a weekday counts. Five business days after a Friday 10:00 is the next Friday 10:00;
/// after a Saturday, the Friday after next Monday.
pub fn add_business_days(start: OffsetDateTime, days: u32) -> OffsetDateTime {
    let mut at = start;
    let mut left = days;
    while left > 0 {
        at += Duration::days(1);
        if !matches!(at.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    at
}

/// One opted-out person in a run: the Patients (every record linked to the identity), the opt-out
/// that decides, when the purge is due, and what was (or, in a dry run, would be) removed.
#[derive(Debug, Clone, Serialize)]
pub struct PersonPurge {
    /// Every Patient id of the person, sorted.
    pub patients: Vec<String>,
    /// The Consent whose opt-out decides (its id).
    pub consent: Option<String>,
    /// The opt-out's effective time (RFC 3339).
    pub opted_out: String,
    /// When the purge is due (RFC 3339).
    pub due: String,
    /// Whether `now` is past `due`.
    pub is_due: bool,
    /// Resources removed (or to be removed) per resource type.
    pub resources: BTreeMap<String, u64>,
    /// Versions removed (0 in a dry run: counted only when removed).
    pub versions: u64,
    /// Resources kept because the policy routes them to public health, per resource type, with
    /// the Patients they are about ([`Policy::kept_for_public_health`]).
    pub kept_for_public_health: BTreeMap<String, u64>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    /// The instant the run decided at (RFC 3339).
    pub now: String,
    pub dry_run: bool,
    /// The window in business days.
    pub window_days: u32,
    /// Every opted-out person, due or not, in order of their first Patient id.
    pub persons: Vec<PersonPurge>,
}

impl PurgeReport {
    /// Resources removed (or to be removed) in all.
    pub fn resources(&self) -> u64 {
        self.persons.iter().flat_map(|p| p.resources.values()).sum()
    }
}

/// The purge job (see the module documentation). Cheap to keep: the consent state is caught up,
/// not reloaded, between runs.
pub struct Purge {
    store: Store,
    policy: Policy,
    window_days: u32,
    consents: ConsentRegistry,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Purge {
    /// A purge over `store` deciding with `policy`, `window_days` business days after an opt-out.
    pub fn new(store: Store, policy: Policy, window_days: u32) -> Self {
        Purge {
            store,
            policy,
            window_days,
            consents: ConsentRegistry::default(),
        }
    }

    /// One run at `now`; with `dry_run`, only what would be removed.
    pub async fn run(&self, now: OffsetDateTime, dry_run: bool) -> Result<PurgeReport, StoreError> {
        self.consents.changed();
        self.consents.refresh(&self.store).await?;
        let consenting = self.consents.consenting();
        let mut report = PurgeReport {
            now: rfc3339(now),
            dry_run,
            window_days: self.window_days,
            persons: Vec::new(),
        };
        if consenting.is_empty() {
            return Ok(report);
        }
        for patients in self.persons(&consenting).await? {
            let own: Vec<Consent> = patients
                .iter()
                .flat_map(|p| self.consents.of(p))
                .map(|c| (*c).clone())
                .collect();
            let refs: Vec<&Consent> = own.iter().collect();
            let (participating, choice) = self.policy.choice(&refs, now);
            let Some(choice) = choice.filter(|_| !participating) else {
                continue;
            };
            let due = add_business_days(choice.date_time, self.window_days);
            let mut person = PersonPurge {
                patients: patients.iter().cloned().collect(),
                consent: choice.id.clone(),
                opted_out: rfc3339(choice.date_time),
                due: rfc3339(due),
                is_due: now >= due,
                resources: BTreeMap::new(),
                versions: 0,
                kept_for_public_health: BTreeMap::new(),
            };
            if person.is_due {
                self.purge_person(&mut person, now, dry_run).await?;
            }
            report.persons.push(person);
        }
        Ok(report)
    }

    /// The Patients with privacy consents grouped into persons (with every Patient linked to
    /// them), each sorted, in order.
    async fn persons(&self, consenting: &[String]) -> Result<Vec<BTreeSet<String>>, StoreError> {
        // Union-find over the pairs: a person's Patients are one identity's members.
        let mut group_of: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<BTreeSet<String>> = Vec::new();
        for p in consenting {
            group_of.insert(p.clone(), groups.len());
            groups.push(BTreeSet::from([p.clone()]));
        }
        for (asked, linked) in self.store.mpi_persons_of(consenting).await? {
            let a = group_of[&asked];
            match group_of.get(&linked).copied() {
                Some(b) if b != a => {
                    let moved = std::mem::take(&mut groups[b]);
                    for m in &moved {
                        group_of.insert(m.clone(), a);
                    }
                    groups[a].extend(moved);
                }
                Some(_) => {}
                None => {
                    group_of.insert(linked.clone(), a);
                    groups[a].insert(linked);
                }
            }
        }
        let mut persons: Vec<BTreeSet<String>> =
            groups.into_iter().filter(|g| !g.is_empty()).collect();
        persons.sort();
        Ok(persons)
    }

    async fn purge_person(
        &self,
        person: &mut PersonPurge,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Result<(), StoreError> {
        let targets = self
            .store
            .compartment_members(&person.patients, &["Consent".to_string()])
            .await?;
        let targets = self.except_reportable(person, targets).await?;
        if dry_run {
            for (ty, _) in &targets {
                *person.resources.entry(ty.clone()).or_default() += 1;
            }
            return Ok(());
        }
        let patients = person.patients.clone();
        let consent = person.consent.clone();
        let kept = person.kept_for_public_health.clone();
        let recorded = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let audit: store::PurgeAudit = Box::new(move |purged: &[store::Purged]| {
            if purged.is_empty() {
                return Vec::new();
            }
            vec![crate::audit::audit_record(&purge_facts(
                recorded, &patients, consent, purged, &kept,
            ))]
        });
        let purged = self.store.purge(targets, audit).await?;
        for p in &purged {
            *person.resources.entry(p.resource_type.clone()).or_default() += 1;
            person.versions += p.versions;
        }
        if !purged.is_empty() {
            tracing::info!(
                resources = purged.len(),
                versions = person.versions,
                "consent purge removed an opted-out person's data"
            );
        }
        Ok(())
    }
}

impl Purge {
    /// `targets` without what the policy routes to public health (the current version of a
    /// reportable resource that public health receives through an opt-out) and without the
    /// Patients such a resource is about, which public health needs to act on it. Counted in
    /// `person.kept_for_public_health`. Only resources of the types the policy's reportable
    /// entries name are read.
    async fn except_reportable(
        &self,
        person: &mut PersonPurge,
        targets: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let reportable_type = |ty: &str| {
            self.policy
                .reportable
                .iter()
                .any(|r| r.resource_types.iter().any(|t| t == ty))
        };
        let mut kept: BTreeSet<(String, String)> = BTreeSet::new();
        let mut their_patients: BTreeSet<String> = BTreeSet::new();
        for (ty, id) in targets.iter().filter(|(ty, _)| reportable_type(ty)) {
            let Some(stored) = self.store.read(ty, id).await? else {
                continue;
            };
            if stored.deleted {
                continue;
            }
            let Ok(resource) = serde_json::from_str::<serde_json::Value>(&stored.json) else {
                continue;
            };
            if self.policy.kept_for_public_health(&resource).is_none() {
                continue;
            }
            let patients = stored
                .patients
                .unwrap_or_else(|| fhir::search::extract::patient_compartments(&resource));
            their_patients.extend(patients);
            *person.kept_for_public_health.entry(ty.clone()).or_default() += 1;
            kept.insert((ty.clone(), id.clone()));
        }
        if kept.is_empty() {
            return Ok(targets);
        }
        for patient in &their_patients {
            if targets.iter().any(|(t, i)| t == "Patient" && i == patient) {
                *person
                    .kept_for_public_health
                    .entry("Patient".into())
                    .or_default() += 1;
                kept.insert(("Patient".into(), patient.clone()));
            }
        }
        Ok(targets
            .into_iter()
            .filter(|target| !kept.contains(target))
            .collect())
    }
}

/// The AuditEvent facts of one person's purge: the exchange deleted, for these patients, so many
/// resources (per type) and versions, and kept so many for public health. No resource ids and no
/// content.
fn purge_facts(
    recorded: i64,
    patients: &[String],
    consent: Option<String>,
    purged: &[store::Purged],
    kept: &BTreeMap<String, u64>,
) -> AuditFacts {
    let mut per_type: BTreeMap<&str, u64> = BTreeMap::new();
    let mut versions = 0;
    for p in purged {
        *per_type.entry(p.resource_type.as_str()).or_default() += 1;
        versions += p.versions;
    }
    let counts: Vec<String> = per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    AuditFacts {
        recorded,
        interaction: Interaction::Delete,
        outcome: Outcome::Success,
        request_id: "consent-purge".to_string(),
        requestor: Requestor {
            participant: None,
            id: Some(AGENT.to_string()),
            display: Some("nutmeg consent purge".to_string()),
        },
        client_address: None,
        purpose: "HOPERAT".to_string(),
        server: "nutmeg".to_string(),
        query: consent.map(|c| format!("opt-out Consent/{c}")),
        patients: patients.to_vec(),
        resources: Vec::new(),
        withheld: Vec::new(),
        outcome_desc: Some(format!(
            "consent purge: {} resources ({}), {versions} versions{}",
            purged.len(),
            counts.join(", "),
            if kept.is_empty() {
                String::new()
            } else {
                let kept: Vec<String> = kept.iter().map(|(t, n)| format!("{t} {n}")).collect();
                format!("; kept for public health: {}", kept.join(", "))
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn business_days_skip_weekends() {
        // 2026-01-09 is a Friday.
        let friday = datetime!(2026-01-09 10:00 UTC);
        assert_eq!(
            add_business_days(friday, 5),
            datetime!(2026-01-16 10:00 UTC)
        );
        assert_eq!(
            add_business_days(friday, 1),
            datetime!(2026-01-12 10:00 UTC)
        );
        assert_eq!(add_business_days(friday, 0), friday);
        let saturday = datetime!(2026-01-10 09:00 UTC);
        assert_eq!(
            add_business_days(saturday, 5),
            datetime!(2026-01-16 09:00 UTC)
        );
        let wednesday = datetime!(2026-01-14 23:59 UTC);
        assert_eq!(
            add_business_days(wednesday, 4),
            datetime!(2026-01-20 23:59 UTC)
        );
    }

    #[test]
    fn the_audit_record_names_counts_not_content() {
        let purged = vec![
            store::Purged {
                resource_type: "Observation".into(),
                id: "secret-obs".into(),
                versions: 2,
            },
            store::Purged {
                resource_type: "Patient".into(),
                id: "p1".into(),
                versions: 1,
            },
        ];
        let facts = purge_facts(
            1,
            &["p1".into()],
            Some("c1".into()),
            &purged,
            &BTreeMap::new(),
        );
        let text = crate::audit::audit_event_text(&facts);
        assert!(
            text.contains("consent purge: 2 resources (Observation 1, Patient 1), 3 versions\"")
        );
        let kept = BTreeMap::from([("Immunization".to_string(), 2)]);
        let facts = purge_facts(1, &["p1".into()], None, &purged, &kept);
        assert!(crate::audit::audit_event_text(&facts)
            .contains("3 versions; kept for public health: Immunization 2"));
        assert!(!text.contains("secret-obs"));
        let index = crate::audit::audit_index(&facts);
        assert!(index.contains(&("patient".to_string(), "p1".to_string())));
        assert!(index.contains(&("subtype".to_string(), "delete".to_string())));
    }
}
