//! The repository's side of consents: the checks a Consent write passes before it commits, and
//! the consent consult of the CDS Hooks service.

use privacy::consent::Consent;
use serde_json::Value;

use super::disclosure::Disclosed;
use crate::consents::{consent_patient, is_privacy_consent};

impl crate::repository::Repository {
    /// Before a batch of writes commits: every patient-privacy Consent in it must parse (a 422
    /// naming each bad element otherwise: a restriction the policy cannot read must not be
    /// stored), and a patient (portal) writes only Consents about themselves.
    pub(crate) async fn check_consent_writes(
        &self,
        who: &crate::access::Requester,
        interaction: crate::audit::Interaction,
        writes: &[store::Write],
    ) -> crate::repository::Result<()> {
        use crate::access::{Principal, Reason, Role};
        use crate::repository::Error;
        // The exchange's own tools (an import of another system's data) and open access are not
        // held to this: what they store that does not parse counts as an opt-out when read.
        if !self.gate.is_enforcing() || matches!(who.principal, Principal::System { .. }) {
            return Ok(());
        }
        for write in writes {
            let patient_id = match &who.principal {
                Principal::User {
                    role: Role::Patient { patient_id },
                    ..
                } => Some(patient_id),
                _ => None,
            };
            if write.resource_type != "Consent" {
                if patient_id.is_some() {
                    let reasons = vec![Reason::Role];
                    self.record_refusal(who, interaction, &reasons).await?;
                    return Err(Error::Forbidden(reasons));
                }
                continue;
            }
            let store::WriteOp::Put { json, .. } = &write.op else {
                if patient_id.is_some() {
                    let reasons = vec![Reason::Role];
                    self.record_refusal(who, interaction, &reasons).await?;
                    return Err(Error::Forbidden(reasons));
                }
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            if !is_privacy_consent(&value) {
                if patient_id.is_some() {
                    return Err(Error::Unprocessable(vec![fhir::Issue::error(
                        fhir::IssueType::BusinessRule,
                        "a patient records patient-privacy consents only",
                    )
                    .at("Consent.scope")]));
                }
                continue;
            }
            let parsed = Consent::parse(&value);
            if let Ok(consent) = &parsed {
                // A participant records, on the patient's behalf, only what restricts: an opt-out
                // or a restriction. What opens access (an opt-in, a grant, a Part 2 consent, the
                // psychiatric informed flag) is the patient's own act or an operator's (a signed
                // paper form): otherwise a participant could grant itself a patient's records.
                let participant = patient_id.is_none() && !self.gate.is_operator(who).await?;
                if participant && !only_restricts(consent) {
                    let reasons = vec![Reason::Rule(
                        "A participant records only opt-outs and restrictions; opt-ins, grants and Part 2 consents are recorded by the patient or an operator".into(),
                    )];
                    self.record_refusal(who, interaction, &reasons).await?;
                    return Err(Error::Forbidden(reasons));
                }
            }
            if let Err(errors) = parsed {
                return Err(Error::Unprocessable(
                    errors
                        .into_iter()
                        .map(|e| fhir::Issue::error(fhir::IssueType::Invalid, e.message).at(e.path))
                        .collect(),
                ));
            }
            if let Some(own) = patient_id {
                if consent_patient(&value).as_deref() != Some(own.as_str()) {
                    let reasons = vec![Reason::NotOwnRecord];
                    self.record_refusal(who, interaction, &reasons).await?;
                    return Err(Error::Forbidden(reasons));
                }
            }
        }
        Ok(())
    }
}

impl crate::repository::Repository {
    /// The consent consult: may the requester send or query `content` (resources; none for plain
    /// data) about `patient`, for its purpose of use? The request passes the decision point like a
    /// read of the Patient (403 naming the rule otherwise), and is audited as an operation about
    /// the patient.
    pub async fn consent_consult(
        &self,
        who: &crate::access::Requester,
        patient: &str,
        content: &[Value],
    ) -> crate::repository::Result<crate::consents::ConsultAnswer> {
        super::support::check_id(patient)?;
        self.authorize(
            who,
            crate::access::Interaction::Read,
            Some("Patient"),
            crate::audit::Interaction::Operation,
        )
        .await?;
        let plain = serde_json::json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "any"}, "subject": {"reference": format!("Patient/{patient}")}});
        let asked: Vec<&Value> = if content.is_empty() {
            vec![&plain]
        } else {
            content.iter().collect()
        };
        let mut decisions = Vec::new();
        for resource in asked {
            let reference = match (resource["resourceType"].as_str(), resource["id"].as_str()) {
                (Some(t), Some(id)) if !content.is_empty() => Some(format!("{t}/{id}")),
                _ => None,
            };
            let decision = match self.gate.consult(who, patient, resource).await? {
                Some(d) => d,
                None => privacy::policy::Decision {
                    permit: true,
                    obligations: Vec::new(),
                    consents_used: Vec::new(),
                    reasons: Vec::new(),
                },
            };
            decisions.push((reference, decision));
        }
        let disclosed = Disclosed::of(Vec::new(), [patient.to_string()]);
        self.record_disclosure(
            who,
            crate::audit::Interaction::Operation,
            Some(format!("Patient/{patient}/$consent-consult")),
            disclosed,
        )
        .await?;
        Ok(crate::consents::ConsultAnswer { decisions })
    }
}

impl crate::repository::Repository {
    /// Data that arrives for an opted-out patient is acknowledged and not kept: of a batch of
    /// writes by a participant (its systems and people), the new versions of clinical resources in
    /// the compartment of a patient who has opted out (a recorded choice in force now; under the
    /// opt-in model, not having opted in yet does not drop data) are dropped before the commit; the sender's answer is the same
    /// as if they had been kept. Kept: deletions, Patients (so that later data finds its patient)
    /// and Consents (the patient may opt back in), what the exchange's own tools and operators
    /// write, what is sent for public health (purpose `PUBHLTH`), and what the policy routes to
    /// public health (`Policy::kept_for_public_health`: reportable data, such as an immunization
    /// or a notifiable condition, that public health receives through an opt-out; no one else
    /// sees it while the patient is out).
    pub(crate) async fn not_kept_for_opted_out(
        &self,
        who: &crate::access::Requester,
        writes: Vec<store::Write>,
    ) -> crate::repository::Result<Vec<store::Write>> {
        use crate::access::{Principal, PurposeOfUse, Role};
        let bound = match &who.principal {
            Principal::Client { .. } => true,
            Principal::User { role, .. } => matches!(role, Role::Clinician | Role::Staff),
            Principal::System { .. } | Principal::Anonymous => false,
        };
        let Some(privacy) = self.gate.privacy() else {
            return Ok(writes);
        };
        if !bound || who.purpose == PurposeOfUse::Pubhlth || self.gate.is_operator(who).await? {
            return Ok(writes);
        }
        let about = |w: &store::Write| match &w.op {
            store::WriteOp::Put { compartments, .. }
                if w.resource_type != "Patient" && w.resource_type != "Consent" =>
            {
                Some(compartments.clone())
            }
            _ => None,
        };
        if !writes
            .iter()
            .any(|w| about(w).is_some_and(|c| !c.is_empty()))
        {
            return Ok(writes);
        }
        privacy.consents.refresh(&self.store).await?;
        let now = (privacy.clock)();
        let mut out = Vec::with_capacity(writes.len());
        let mut dropped = 0usize;
        let mut reportable = 0usize;
        for write in writes {
            let out_of_exchange = about(&write).is_some_and(|patients| {
                patients.iter().any(|p| {
                    let consents = privacy.consents.of(p);
                    let refs: Vec<&Consent> = consents.iter().map(|c| &**c).collect();
                    // A recorded opt-out (not the opt-in model's default).
                    matches!(privacy.policy.choice(&refs, now), (false, Some(_)))
                })
            });
            if !out_of_exchange {
                out.push(write);
            } else if kept_for_public_health(&privacy.policy, &write) {
                reportable += 1;
                out.push(write);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 || reportable > 0 {
            tracing::info!(
                request_id = %who.request_id,
                dropped,
                kept_for_public_health = reportable,
                "data for opted-out patients acknowledged and not kept, except what public health receives"
            );
        }
        Ok(out)
    }
}

/// Whether the policy routes this new version (labelled, as sealed) to public health.
fn kept_for_public_health(policy: &privacy::policy::Policy, write: &store::Write) -> bool {
    if policy.reportable.is_empty() {
        return false;
    }
    match &write.op {
        store::WriteOp::Put { json, .. } => serde_json::from_str::<serde_json::Value>(json)
            .is_ok_and(|resource| policy.kept_for_public_health(&resource).is_some()),
        store::WriteOp::Delete => false,
    }
}

/// Whether a consent only takes access away: an opt-out or a patient-specific consent whose every
/// provision denies, without the psychiatric informed flag.
fn only_restricts(consent: &Consent) -> bool {
    use privacy::consent::{Effect, Kind, Provision};
    fn all_deny(p: &Provision) -> bool {
        p.effect == Effect::Deny && p.provisions.iter().all(all_deny)
    }
    consent.informed.is_none()
        && matches!(consent.kind, Kind::OptOut | Kind::Grant)
        && all_deny(&consent.provision)
}
