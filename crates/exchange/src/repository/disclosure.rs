//! Where the repository meets the decision point: the request-level check every interaction makes
//! first, the per-resource check of everything about to leave, and the AuditEvent of every read,
//! appended (durably) before the answer is returned, so no disclosure goes unrecorded. Refusals are
//! recorded too.

use std::collections::{BTreeMap, BTreeSet};

use store::{RelationshipBasis, Stored, Write, WriteOp};

use super::labelling::Staged;
use super::support::now_millis;
use super::{Error, Repository, Result};
use crate::access::{Ask, Decision, Interaction as AccessInteraction, Obligation, Principal};
use crate::access::{Reason, Requester};
use crate::audit::{AuditFacts, Interaction, Outcome, Withheld};
use crate::participants::{Status, STATUS_SYSTEM};

/// What one read request disclosed: each version, and the patients they are about.
#[derive(Debug, Default)]
pub(crate) struct Disclosed {
    resources: Vec<(String, String, i64)>,
    patients: BTreeSet<String>,
    emergency: bool,
    /// What the policy obliges each disclosed version to carry (labels, notices), when anything.
    obliged: Vec<((String, String, i64), Vec<Obligation>)>,
    /// What the privacy policy withheld, with its reasons (for the operators' audit trail).
    withheld: Vec<Withheld>,
    /// Emergency access: (source participant, patient) -> resource type -> how many, for the
    /// notices to the sources.
    break_glass: BTreeMap<(String, String), BTreeMap<String, usize>>,
}

impl Disclosed {
    pub(crate) fn new() -> Self {
        Disclosed::default()
    }

    /// What a request disclosed, known as a whole (the audit trail's own records shown).
    pub(crate) fn of(
        resources: Vec<(String, String, i64)>,
        patients: impl IntoIterator<Item = String>,
    ) -> Self {
        Disclosed {
            resources,
            patients: patients.into_iter().collect(),
            ..Disclosed::default()
        }
    }

    /// Whether the privacy policy withheld anything from the request.
    pub(crate) fn withheld_any(&self) -> bool {
        !self.withheld.is_empty()
    }

    /// Applies what the policy obliged `stored` to carry to its disclosed JSON: security labels
    /// (NORDSCLCD on Part 2 data) in `meta.security`, notices (the 42 CFR 2.32 text) as a
    /// `meta.extension` [`DISCLOSURE_NOTICE`]. Whether anything was changed.
    pub(crate) fn oblige(&self, stored: &Stored, resource: &mut serde_json::Value) -> bool {
        let Some((_, obligations)) = self.obliged.iter().find(|((t, i, v), _)| {
            *t == stored.resource_type && *i == stored.id && *v == stored.version
        }) else {
            return false;
        };
        apply_obligations(resource, obligations);
        true
    }

    /// Whether `stored` must carry anything added when disclosed.
    pub(crate) fn is_obliged(&self, stored: &Stored) -> bool {
        self.obliged.iter().any(|((t, i, v), _)| {
            *t == stored.resource_type && *i == stored.id && *v == stored.version
        })
    }
}

/// The `meta.extension` that carries a notice the policy attaches to disclosed data
/// (`valueString`; the notice's name in a nested `name` extension).
pub const DISCLOSURE_NOTICE: &str =
    "https://nutmeg.example/fhir/StructureDefinition/disclosure-notice";

/// Adds the labels and notices of `obligations` to a disclosed resource.
pub(crate) fn apply_obligations(resource: &mut serde_json::Value, obligations: &[Obligation]) {
    use serde_json::{json, Value};
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    for obligation in obligations {
        match obligation {
            Obligation::AddLabel(coding) => {
                let security = meta.entry("security").or_insert_with(|| json!([]));
                if let Value::Array(labels) = security {
                    let present = labels.iter().any(|l| {
                        l["system"] == coding.system.as_str() && l["code"] == coding.code.as_str()
                    });
                    if !present {
                        labels.push(coding.to_json());
                    }
                }
            }
            Obligation::AttachNotice { name, text } => {
                let extensions = meta.entry("extension").or_insert_with(|| json!([]));
                if let Value::Array(extensions) = extensions {
                    if !extensions
                        .iter()
                        .any(|e| e["url"] == DISCLOSURE_NOTICE && e["valueString"] == text.as_str())
                    {
                        extensions.push(json!({
                            "url": DISCLOSURE_NOTICE,
                            "valueString": text,
                            "extension": [{"url": "name", "valueCode": name}],
                        }));
                    }
                }
            }
            _ => {}
        }
    }
}

impl Repository {
    /// The request-level decision. A refusal is recorded in the audit trail and answers 403.
    pub(crate) async fn authorize(
        &self,
        who: &Requester,
        interaction: AccessInteraction,
        resource_type: Option<&str>,
        audit_as: Interaction,
    ) -> Result<()> {
        match self
            .gate
            .authorize(who, Ask::new(interaction, resource_type))
            .await?
        {
            Decision::Permit { .. } => Ok(()),
            Decision::Deny { reasons } => {
                self.record_refusal(who, audit_as, &reasons).await?;
                tracing::info!(
                    request_id = %who.request_id,
                    reasons = %codes(&reasons),
                    "refused by the decision point"
                );
                Err(Error::Forbidden(reasons))
            }
        }
    }

    /// Participant records (Organizations that carry a participant status) are created, changed and
    /// deleted by operators only: otherwise a participant could promote itself to live or rewrite
    /// another participant. Other directory resources (the Organizations and Practitioners an EHR
    /// sends with its data) are not affected. A refusal is audited and answers 403.
    pub(crate) async fn check_participant_records(
        &self,
        who: &Requester,
        interaction: Interaction,
        writes: &[Write],
    ) -> Result<()> {
        let mut touched = false;
        let mut moves: Vec<(Option<Status>, Status)> = Vec::new();
        for write in writes.iter().filter(|w| w.resource_type == "Organization") {
            let new = match &write.op {
                WriteOp::Put { json, .. } => record_status(json),
                WriteOp::Delete => None,
            };
            let mut old = None;
            if write.expect.is_some() {
                if let Some(current) = self.store.read("Organization", &write.id).await? {
                    old = (!current.deleted)
                        .then(|| record_status(&current.json))
                        .flatten();
                }
            }
            touched |= new.is_some() || old.is_some();
            if let Some(new) = new {
                moves.push((old, new));
            }
        }
        if touched && !self.gate.is_operator(who).await? {
            let reasons = vec![Reason::ParticipantRecord];
            self.record_refusal(who, interaction, &reasons).await?;
            return Err(Error::Forbidden(reasons));
        }
        // A participant's status moves only along the workflow, however it is written (the admin
        // command and an operator token's FHIR update alike); a new participant starts as applied.
        for (old, new) in moves {
            let allowed = match old {
                Some(old) => old == new || old.may_become(new),
                None => new == Status::Applied,
            };
            if !allowed {
                let from = old.map_or("no participant".to_string(), |s| s.code().to_string());
                return Err(Error::Unprocessable(vec![fhir::Issue::error(
                    fhir::IssueType::BusinessRule,
                    format!(
                        "a participant's status cannot move from {from} to {}",
                        new.code()
                    ),
                )]));
            }
        }
        Ok(())
    }

    /// Asks the decision point about `stored`; if permitted, notes it as disclosed.
    pub(crate) async fn admit(
        &self,
        who: &Requester,
        stored: &Stored,
        disclosed: &mut Disclosed,
    ) -> Result<bool> {
        let (decision, patients) = self.gate.judge(who, stored).await?;
        if !decision.is_permit() {
            tracing::debug!(
                request_id = %who.request_id,
                resource_type = %stored.resource_type,
                reasons = %codes(decision.reasons()),
                "withheld by the decision point"
            );
            let policy: Vec<String> = decision
                .reasons()
                .iter()
                .filter_map(|r| match r {
                    Reason::Privacy(codes) => Some(codes.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect();
            if !policy.is_empty() {
                disclosed.withheld.push(Withheld {
                    resource: (
                        stored.resource_type.clone(),
                        stored.id.clone(),
                        stored.version,
                    ),
                    patients,
                    reasons: policy,
                });
            }
            return Ok(false);
        }
        let obligations = decision.obligations();
        if obligations.contains(&Obligation::FlagEmergencyAccess)
            || obligations.contains(&Obligation::NotifySource)
        {
            disclosed.emergency = true;
            if !stored.deleted && !patients.is_empty() {
                let source = serde_json::from_str::<serde_json::Value>(&stored.json)
                    .ok()
                    .and_then(|r| privacy::labels::source_participant(&r));
                // The requester's own data raises no notice.
                if let Some(source) =
                    source.filter(|s| Some(s.as_str()) != who.principal.participant())
                {
                    for patient in &patients {
                        *disclosed
                            .break_glass
                            .entry((source.clone(), patient.clone()))
                            .or_default()
                            .entry(stored.resource_type.clone())
                            .or_default() += 1;
                    }
                }
            }
        }
        let carried: Vec<Obligation> = decision
            .obligations()
            .iter()
            .filter(|o| matches!(o, Obligation::AddLabel(_) | Obligation::AttachNotice { .. }))
            .cloned()
            .collect();
        if !carried.is_empty() && !stored.deleted {
            disclosed.obliged.push((
                (
                    stored.resource_type.clone(),
                    stored.id.clone(),
                    stored.version,
                ),
                carried,
            ));
        }
        disclosed.resources.push((
            stored.resource_type.clone(),
            stored.id.clone(),
            stored.version,
        ));
        disclosed.patients.extend(patients);
        Ok(true)
    }

    /// Appends the AuditEvent of a read (read, vread, search, history, an operation) and waits
    /// until it is durable. `query` is the request's query string, if any.
    pub(crate) async fn record_disclosure(
        &self,
        who: &Requester,
        interaction: Interaction,
        query: Option<String>,
        disclosed: Disclosed,
    ) -> Result<()> {
        // The exchange's own tools are not audited, and neither is open access (`--auth none`,
        // loopback only, for development and benchmarks), where nobody is identified.
        if matches!(who.principal, Principal::System { .. }) || !self.gate.is_enforcing() {
            return Ok(());
        }
        let outcome_desc = disclosed.emergency.then(|| {
            let mut desc = "emergency access (ETREAT) without a treatment relationship".to_string();
            if who.emergency_declared {
                desc.push_str("; medical emergency declared (42 CFR 2.51)");
            }
            desc
        });
        // The sources are told before the data leaves (a notice that cannot be written fails the
        // request: nothing is disclosed untold).
        if !disclosed.break_glass.is_empty() {
            self.notify_sources(who, &disclosed.break_glass).await?;
        }
        let facts = self.facts(who, interaction, Outcome::Success, query, outcome_desc);
        let facts = AuditFacts {
            patients: disclosed.patients.into_iter().collect(),
            resources: disclosed.resources,
            withheld: disclosed.withheld,
            ..facts
        };
        self.append(facts).await
    }

    /// Appends the AuditEvent of a read of one resource that the privacy policy withheld (answered
    /// 404, as an absent one): outcome 4, and the policy's reasons in the withheld entity, for
    /// operators. It is not waited for (nothing was disclosed), so that the 404 comes as fast as
    /// the one of an id never used, which writes no record; a failure is logged.
    pub(crate) fn record_withheld(
        &self,
        who: &Requester,
        interaction: Interaction,
        disclosed: Disclosed,
    ) {
        if matches!(who.principal, Principal::System { .. })
            || !self.gate.is_enforcing()
            || disclosed.withheld.is_empty()
        {
            return;
        }
        let facts = self.facts(
            who,
            interaction,
            Outcome::MinorFailure,
            None,
            Some("withheld by the privacy policy".to_string()),
        );
        let record = crate::audit::audit_record(&AuditFacts {
            withheld: disclosed.withheld,
            ..facts
        });
        let store = self.store.clone();
        let request_id = who.request_id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(vec![record]).await {
                tracing::error!(%request_id, error = %e, "the audit record of a withheld read failed");
            }
        });
    }

    /// Writes one break-the-glass notice per source participant and patient of an emergency
    /// request ([`crate::notices`]), as the exchange, in one commit.
    async fn notify_sources(
        &self,
        who: &Requester,
        break_glass: &BTreeMap<(String, String), BTreeMap<String, usize>>,
    ) -> Result<()> {
        let exchange = Requester::new(
            who.request_id.clone(),
            Principal::System {
                name: "break-the-glass notice".into(),
            },
            crate::access::PurposeOfUse::Hoperat,
            true,
        );
        let agent = who.audit_requestor().id;
        let at = now_millis();
        let mut writes = Vec::with_capacity(break_glass.len());
        let mut told = Vec::with_capacity(break_glass.len());
        for ((source, patient), counts) in break_glass {
            let notice = crate::notices::BreakGlass {
                source: source.clone(),
                patient: patient.clone(),
                requester: who.principal.participant().map(str::to_string),
                agent: agent.clone(),
                at,
                request_id: who.request_id.clone(),
                emergency_declared: who.emergency_declared,
                counts: counts.clone(),
            };
            let mut body = crate::notices::break_glass_communication(&notice);
            told.push(notice);
            super::support::validate(&body)?;
            let id = super::support::new_id();
            super::support::stamp(&mut body, &id, 1, at);
            let (write, _) = self
                .seal_one(
                    &exchange,
                    Staged {
                        resource_type: "Communication".to_string(),
                        id,
                        version: 1,
                        expect: None,
                        last_updated: at,
                        replaces_live: false,
                        resource: body,
                    },
                )
                .await?;
            writes.push(write);
        }
        let notices = writes.len();
        self.commit_audited(&exchange, Interaction::Create, writes)
            .await?;
        if let Some(outlet) = self.notice_outlet.get() {
            for notice in told {
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                    outlet.try_send(notice)
                {
                    tracing::warn!(
                        request_id = %who.request_id,
                        "a break-the-glass notice was written but not sent on: its outlet is full"
                    );
                }
            }
        }
        tracing::info!(
            request_id = %who.request_id,
            notices,
            "break-the-glass notices written to the sources"
        );
        Ok(())
    }

    /// Appends the AuditEvent of a refused request.
    pub(crate) async fn record_refusal(
        &self,
        who: &Requester,
        interaction: Interaction,
        reasons: &[Reason],
    ) -> Result<()> {
        let desc = format!("refused: {}", codes(reasons));
        let facts = self.facts(who, interaction, Outcome::MinorFailure, None, Some(desc));
        self.append(facts).await
    }

    fn facts(
        &self,
        who: &Requester,
        interaction: Interaction,
        outcome: Outcome,
        query: Option<String>,
        outcome_desc: Option<String>,
    ) -> AuditFacts {
        AuditFacts {
            recorded: now_millis(),
            interaction,
            outcome,
            request_id: who.request_id.clone(),
            requestor: who.audit_requestor(),
            client_address: who.client_address.map(|a| a.to_string()),
            purpose: who.purpose.code().to_string(),
            server: self.config.base_url.clone(),
            query,
            patients: Vec::new(),
            resources: Vec::new(),
            outcome_desc,
            withheld: Vec::new(),
        }
    }

    async fn append(&self, facts: AuditFacts) -> Result<()> {
        self.store
            .append_audit(vec![crate::audit::audit_record(&facts)])
            .await?;
        Ok(())
    }

    /// After a write by a participant's system or person has landed: the participant now has a
    /// treatment relationship with every patient the written resources are about, and every
    /// participant a written CareTeam names is on that patient's care team. The patient index
    /// (`Patient/$match`) takes the Patients written, and each is linked to its enterprise identity.
    pub(crate) async fn note_relationships(
        &self,
        who: &Requester,
        mut learned: Relationships,
    ) -> std::result::Result<(), store::StoreError> {
        self.note_patients(who, std::mem::take(&mut learned.patient_changes))
            .await;
        let now = now_millis();
        for (org, patients) in &learned.care_teams {
            self.store
                .record_treatment_relationships(org, RelationshipBasis::CareTeam, patients, now)
                .await?;
        }
        if let Some(participant) = who.principal.participant() {
            self.store
                .record_treatment_relationships(
                    participant,
                    RelationshipBasis::SentData,
                    &learned.patients,
                    now,
                )
                .await?;
            self.gate.note_related(who, &learned.patients);
        }
        Ok(())
    }

    /// `POST Patient/[id]/$attest-treatment`: the requester's participant attests that it has a
    /// treatment relationship with the patient. The attestation is recorded (and audited, with the
    /// requester and purpose) and holds from then on.
    pub async fn attest_treatment(&self, who: &Requester, patient_id: &str) -> Result<()> {
        super::support::check_id(patient_id)?;
        self.authorize(
            who,
            AccessInteraction::Read,
            Some("Patient"),
            Interaction::Operation,
        )
        .await?;
        let Some(participant) = who.principal.participant() else {
            let reasons = vec![Reason::UnknownParticipant];
            self.record_refusal(who, Interaction::Operation, &reasons)
                .await?;
            return Err(Error::Forbidden(reasons));
        };
        let patient = self.store.read("Patient", patient_id).await?;
        if patient.is_none_or(|p| p.deleted) {
            return Err(Error::NotFound);
        }
        let patients = vec![patient_id.to_string()];
        self.store
            .record_treatment_relationships(
                participant,
                RelationshipBasis::Attested,
                &patients,
                now_millis(),
            )
            .await?;
        self.gate.note_related(who, &patients);
        let facts = self.facts(
            who,
            Interaction::Operation,
            Outcome::Success,
            Some(format!("Patient/{patient_id}/$attest-treatment")),
            Some("treatment relationship attested".to_string()),
        );
        self.append(AuditFacts { patients, ..facts }).await
    }
}

/// The treatment relationships a batch of writes establishes, worked out before it is committed
/// and recorded after; and the Patients it writes, for the patient index.
#[derive(Debug, Default)]
pub(crate) struct Relationships {
    patients: Vec<String>,
    care_teams: Vec<(String, Vec<String>)>,
    patient_changes: Vec<super::matching::PatientChange>,
}

impl Relationships {
    /// What `who` writing `writes` establishes: nothing for the exchange's own tools except what
    /// CareTeams say.
    pub(crate) fn of(who: &Requester, writes: &[Write]) -> Relationships {
        let mut learned = Relationships::default();
        let mut patients: BTreeSet<String> = BTreeSet::new();
        for write in writes {
            let WriteOp::Put {
                compartments, json, ..
            } = &write.op
            else {
                continue;
            };
            if who.principal.participant().is_some() {
                patients.extend(compartments.iter().cloned());
            }
            if write.resource_type == "CareTeam" && !compartments.is_empty() {
                for org in care_team_organizations(json) {
                    learned.care_teams.push((org, compartments.clone()));
                }
            }
        }
        learned.patients = patients.into_iter().collect();
        learned.patient_changes = super::matching::PatientChange::of(writes);
        learned
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patients.is_empty() && self.care_teams.is_empty() && self.patient_changes.is_empty()
    }
}

/// The participant status an Organization's JSON carries in its tags, if it is a participant record.
fn record_status(json: &str) -> Option<Status> {
    if !json.contains(STATUS_SYSTEM) {
        return None;
    }
    let org: serde_json::Value = serde_json::from_str(json).ok()?;
    org["meta"]["tag"].as_array()?.iter().find_map(|t| {
        (t["system"] == STATUS_SYSTEM)
            .then(|| t["code"].as_str().and_then(Status::parse))
            .flatten()
    })
}

/// The reason codes of a denial, comma-separated, for the log and the audit trail.
fn codes(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(Reason::code)
        .collect::<Vec<_>>()
        .join(",")
}

/// The Organizations a CareTeam names as its members, the organizations they act for, or its
/// managing organization (their ids).
fn care_team_organizations(json: &str) -> Vec<String> {
    let Ok(team) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut refs: Vec<&serde_json::Value> = Vec::new();
    if let Some(members) = team["participant"].as_array() {
        for member in members {
            refs.push(&member["member"]);
            refs.push(&member["onBehalfOf"]);
        }
    }
    if let Some(managing) = team["managingOrganization"].as_array() {
        refs.extend(managing.iter());
    }
    let mut orgs: Vec<String> = refs
        .into_iter()
        .filter_map(|r| r["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Organization/"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
        .collect();
    orgs.sort();
    orgs.dedup();
    orgs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_care_team_names_its_organizations() {
        let team = serde_json::json!({
            "resourceType": "CareTeam",
            "participant": [
                { "member": { "reference": "Organization/clinic-1" } },
                { "member": { "reference": "Practitioner/p" }, "onBehalfOf": { "reference": "Organization/hosp" } },
            ],
            "managingOrganization": [{ "reference": "Organization/clinic-1" }],
        });
        assert_eq!(
            care_team_organizations(&team.to_string()),
            vec!["clinic-1".to_string(), "hosp".to_string()]
        );
    }
}
