//! Labelling on intake: every clinical resource a write stores carries its `meta.security`.
//!
//! Every create, update, patch, conditional create or update, and transaction or batch entry
//! stages its resources as [`Staged`] and turns them into store writes through
//! [`Repository::seal`], the one place labels are applied (`privacy::labels`):
//!
//! - **What is labelled.** Clinical resources: those in some Patient's compartment, and those
//!   derived from other resources (a Provenance of a Condition is in no compartment), other than
//!   a Patient itself (a Patient's own codes, its language or marital status, say nothing sensitive
//!   about the record, and labelling the person would withhold who they are from every search).
//!   A Patient, the directory (Organization, Practitioner, PractitionerRole, Endpoint, Location,
//!   HealthcareService) and resources outside any compartment keep the labels the source sent,
//!   as sent.
//! - **From what.** The codes the resource carries (the rule table), the labels the source sent
//!   (kept, never lowered), and the source ([`SourceFacts`]): for a participant, the licence type
//!   of a solo practice's practitioner, read from the registry and trusted for [`SOURCE_TTL`];
//!   the exchange's own tools and anonymous development writes have no registry entry, so the
//!   source tags they send (`meta.tag`, as an import of labelled data carries them) are kept,
//!   while a participant's are replaced by what the registry says.
//! - **Who sent it.** The participant whose system or person writes a labelled resource is
//!   recorded as its sender, a `meta.tag` in `privacy::codes::SOURCE_PARTICIPANT_SYSTEM` whose
//!   code is the participant's Organization id (what the policy's own-data rule and the
//!   break-the-glass notice to the source read). A participant's own claim there is replaced; the
//!   exchange's own tools keep the tag they send (an import of data labelled elsewhere). The first
//!   sender stays through later versions, whoever writes them. A Patient and the directory are not
//!   tagged: who sent a Patient would tell every reader which (perhaps behavioral-health)
//!   participant treats the person.
//! - **Across versions.** A new version's labels are computed from its content and what the
//!   source sent with it, together with the labels (and source) of the version it replaces: labels
//!   never go down, so an update or patch that does not send them back keeps them. Lowering them
//!   takes a delete and a new create.
//! - **Derived resources.** A DocumentReference, Provenance, Composition, DiagnosticReport or List
//!   also takes the labels of what it points at ([`privacy::labels::derived_from`]): the stored
//!   `meta.security` of those resources, or, for entries of the same transaction, the labels
//!   computed for them.
//!
//! Psychiatric facilities: a participant of kind `psychiatric-facility` in the registry is one
//! (`SourceFacts::psychiatric_facility`), so everything it sends is PSY, as what psychiatrists send
//! is through their licence. The kind is read with the licence and trusted as long.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use privacy::codes::Licence;
use privacy::labels::{self, Labels, SourceFacts};
use serde::Deserialize;
use serde_json::Value;
use store::{Write, WriteOp};

use super::{Error, Repository, Result};
use crate::access::{is_directory, Principal, Requester};
use crate::participants::{participant_of, Kind, LicenceType, LICENCE_TYPE_SYSTEM};

/// How long a participant's source facts (its practitioner's licence type), once read, are
/// trusted by every write of this process; a registry change made through this process holds at
/// once.
pub const SOURCE_TTL: Duration = crate::access::STATUS_TTL;

/// A resource about to be written, stamped with its id, version and `meta`.
#[derive(Debug)]
pub(crate) struct Staged {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// The version it replaces (`None` for a new resource).
    pub expect: Option<i64>,
    pub last_updated: i64,
    /// Whether the version replaced is live (so that its labels carry over).
    pub replaces_live: bool,
    pub resource: Value,
}

/// Participants' source facts remembered between writes, each for [`SOURCE_TTL`].
#[derive(Default)]
pub(crate) struct SourceCache {
    map: Mutex<HashMap<String, (SourceFacts, Instant)>>,
}

impl SourceCache {
    fn get(&self, participant: &str) -> Option<SourceFacts> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(participant)
            .filter(|(_, at)| at.elapsed() < SOURCE_TTL)
            .map(|(facts, _)| *facts)
    }

    fn remember(&self, participant: &str, facts: SourceFacts) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < SOURCE_TTL);
        }
        map.insert(participant.to_string(), (facts, Instant::now()));
    }

    /// Forgets everything: a registry resource was written here.
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Only `meta` of a stored version: what carries over to the next version.
#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    meta: Value,
}

/// Whether a resource is labelled: clinical data (in some Patient's compartment) and what derives
/// from data (a Provenance of a Condition is in no compartment), but not a Patient or the
/// directory.
fn is_labelled(resource_type: &str, compartments: &[String], resource: &Value) -> bool {
    resource_type != "Patient"
        && !is_directory(resource_type)
        && (!compartments.is_empty() || !labels::derived_from(resource).is_empty())
}

impl Repository {
    /// Labels the clinical resources among `staged` (in place) and makes every one's store
    /// write, in order: its JSON, index rows and compartments.
    pub(crate) async fn seal(&self, who: &Requester, staged: &mut [Staged]) -> Result<Vec<Write>> {
        let compartments: Vec<Vec<String>> = staged
            .iter()
            .map(|s| fhir::search::extract::patient_compartments(&s.resource))
            .collect();
        let labelled: Vec<usize> = (0..staged.len())
            .filter(|&i| {
                let s = &staged[i];
                is_labelled(&s.resource_type, &compartments[i], &s.resource)
            })
            .collect();
        if !labelled.is_empty() {
            self.label_staged(who, staged, &labelled).await?;
        }
        staged
            .iter()
            .zip(compartments)
            .map(|(s, compartments)| {
                let json = serde_json::to_string(&s.resource)
                    .map_err(|e| Error::Store(store::StoreError::Database(e.to_string())))?;
                let index = fhir::search::extract::index_entries(&s.resource);
                Ok(Write {
                    resource_type: s.resource_type.clone(),
                    id: s.id.clone(),
                    version: s.version,
                    expect: s.expect,
                    last_updated: s.last_updated,
                    op: WriteOp::Put {
                        json,
                        index,
                        compartments,
                    },
                })
            })
            .collect()
    }

    /// [`Repository::seal`] for one resource: answers its write and the resource as labelled.
    pub(crate) async fn seal_one(&self, who: &Requester, staged: Staged) -> Result<(Write, Value)> {
        let mut staged = [staged];
        let write = self.seal(who, &mut staged).await?.pop();
        let [staged] = staged;
        let write = write
            .ok_or_else(|| Error::Store(store::StoreError::Database("no write was made".into())))?;
        Ok((write, staged.resource))
    }

    async fn label_staged(
        &self,
        who: &Requester,
        staged: &mut [Staged],
        labelled: &[usize],
    ) -> Result<()> {
        let registry = self.source_facts(who).await?;
        let sender = who.principal.participant();
        // Each labelled resource's own labels and source: content, what the source sent, and what
        // the version it replaces carried; and the participant recorded as its sender.
        let mut own: Vec<(Labels, SourceFacts)> = Vec::with_capacity(labelled.len());
        let mut senders: Vec<Option<String>> = Vec::with_capacity(labelled.len());
        for &i in labelled {
            let s = &staged[i];
            let mut source = match registry {
                Some(facts) => facts,
                None => SourceFacts::from_resource(&s.resource),
            };
            let mut previous = Labels::default();
            let mut first_sender = None;
            if s.replaces_live {
                if let Some(meta) = self.stored_meta(&s.resource_type, &s.id).await? {
                    previous = Labels::from_security(&meta);
                    // A source recorded earlier stays recorded.
                    let before = SourceFacts::from_resource(&meta);
                    source.licence = source.licence.or(before.licence);
                    source.psychiatric_facility |= before.psychiatric_facility;
                    first_sender = labels::source_participant(&meta);
                }
            }
            let labels = labels::derived(&labels::label(&s.resource, &source), &[previous]);
            own.push((labels, source));
            // The participant that first sent the resource stays its sender (an update by another
            // does not make the data theirs); a participant's claim in `meta.tag` is never taken.
            senders.push(first_sender.or_else(|| sender.map(str::to_string)));
        }

        // Derived resources take the labels of what they point at: entries of this write first,
        // then what is stored. Labels only grow, so repeating until nothing changes ends.
        let key = |s: &Staged| format!("{}/{}", s.resource_type, s.id);
        let staged_keys: HashSet<String> = staged.iter().map(key).collect();
        let mut current: HashMap<String, Labels> = labelled
            .iter()
            .zip(&own)
            .map(|(&i, (labels, _))| (key(&staged[i]), labels.clone()))
            .collect();
        let sources: Vec<Vec<String>> = labelled
            .iter()
            .map(|&i| labels::derived_from(&staged[i].resource))
            .collect();
        let mut stored: HashMap<String, Labels> = HashMap::new();
        for reference in sources.iter().flatten() {
            if staged_keys.contains(reference) || stored.contains_key(reference) {
                continue;
            }
            let Some((ty, id)) = reference.split_once('/') else {
                continue;
            };
            if let Some(meta) = self.stored_meta(ty, id).await? {
                stored.insert(reference.clone(), Labels::from_security(&meta));
            }
        }
        for _ in 0..=labelled.len() {
            let mut changed = false;
            for (n, &i) in labelled.iter().enumerate() {
                if sources[n].is_empty() {
                    continue;
                }
                let parts: Vec<Labels> = sources[n]
                    .iter()
                    .filter_map(|r| current.get(r).or_else(|| stored.get(r)).cloned())
                    .collect();
                let next = labels::derived(&own[n].0, &parts);
                let k = key(&staged[i]);
                if current.get(&k) != Some(&next) {
                    current.insert(k, next);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (n, &i) in labelled.iter().enumerate() {
            let k = key(&staged[i]);
            let labels = current.get(&k).unwrap_or(&own[n].0);
            labels::apply(&mut staged[i].resource, labels, &own[n].1);
            if let Some(sender) = &senders[n] {
                labels::set_source_participant(&mut staged[i].resource, sender);
            }
        }
        Ok(())
    }

    /// The `meta` of the live current version of `resource_type/id`, if there is one.
    async fn stored_meta(&self, resource_type: &str, id: &str) -> Result<Option<Value>> {
        let Some(stored) = self.store.read(resource_type, id).await? else {
            return Ok(None);
        };
        if stored.deleted {
            return Ok(None);
        }
        let meta: MetaOnly = serde_json::from_str(&stored.json)
            .map_err(|e| super::support::unreadable(&stored, e))?;
        Ok(Some(serde_json::json!({ "meta": meta.meta })))
    }

    /// The source facts of `who`'s participant from the registry (`None` when `who` acts for no
    /// participant: the exchange's tools, anonymous development access).
    async fn source_facts(&self, who: &Requester) -> Result<Option<SourceFacts>> {
        let participant = match &who.principal {
            Principal::Client { participant, .. } => participant.as_str(),
            Principal::User {
                participant: Some(participant),
                ..
            } => participant.as_str(),
            _ => return Ok(None),
        };
        if let Some(facts) = self.sources.get(participant) {
            return Ok(Some(facts));
        }
        let facts = self.registry_facts(participant).await?;
        self.sources.remember(participant, facts);
        Ok(Some(facts))
    }

    /// What the registry says about a participant as a source: a psychiatric facility (its kind),
    /// or for a solo practice its practitioner's licence type (joined to its Organization by a
    /// PractitionerRole); no licence for other participants, whose many practitioners send through
    /// one system.
    async fn registry_facts(&self, participant: &str) -> Result<SourceFacts> {
        let mut facts = SourceFacts {
            licence: None,
            psychiatric_facility: false,
        };
        let Some(org) = self.store.read("Organization", participant).await? else {
            return Ok(facts);
        };
        if org.deleted {
            return Ok(facts);
        }
        let org_json: Value =
            serde_json::from_str(&org.json).map_err(|e| super::support::unreadable(&org, e))?;
        let kind = participant_of(&org.id, org.version, &org_json).and_then(|p| p.kind);
        facts.psychiatric_facility = kind == Some(Kind::PsychiatricFacility);
        if kind != Some(Kind::SoloPractice) {
            return Ok(facts);
        }
        for (_, json) in crate::participants::practitioners_of(&self.store, participant).await? {
            if let Some(licence) = licence_of(&json) {
                facts.licence = Some(licence);
                break;
            }
        }
        Ok(facts)
    }
}

/// A Practitioner's licence type (its `qualification.code` in the exchange's licence-type system).
fn licence_of(practitioner: &Value) -> Option<Licence> {
    practitioner["qualification"]
        .as_array()?
        .iter()
        .flat_map(|q| q["code"]["coding"].as_array().into_iter().flatten())
        .filter(|c| c["system"] == LICENCE_TYPE_SYSTEM)
        .find_map(|c| c["code"].as_str().and_then(LicenceType::parse_loose))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_licence_type_converts() {
        for l in LicenceType::ALL {
            let practitioner = serde_json::json!({"qualification": [{"code": {"coding": [
                {"system": LICENCE_TYPE_SYSTEM, "code": l.code()}]}}]});
            let converted = licence_of(&practitioner).expect("converts");
            assert_eq!(converted.code(), l.code());
            assert_eq!(converted.is_behavioral_health(), l.is_behavioral_health());
        }
    }

    #[test]
    fn patients_and_the_directory_are_not_labelled() {
        let about = vec!["p1".to_string()];
        let plain = serde_json::json!({});
        assert!(is_labelled("Condition", &about, &plain));
        assert!(!is_labelled("Patient", &about, &plain));
        assert!(!is_labelled("Practitioner", &about, &plain));
        assert!(!is_labelled("Condition", &[], &plain));
        let provenance = serde_json::json!({"resourceType": "Provenance",
            "target": [{"reference": "Condition/c1"}]});
        assert!(is_labelled("Provenance", &[], &provenance));
    }
}
