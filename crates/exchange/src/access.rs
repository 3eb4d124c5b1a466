//! The single access decision point. Everything the repository is about to disclose passes through
//! [`DecisionPoint::decide`], which sees who is asking, why, and what is about to leave.

use std::sync::Arc;

use store::Stored;

pub use auth::purpose::PurposeOfUse;
use auth::scope::ScopeSet;

/// A portal user's role. A patient's account is linked to one Patient by the operator after
/// identity proofing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    OperatorAdmin,
    ParticipantAdmin,
    Clinician,
    Staff,
    Patient { patient_id: String },
}

/// Who is asking, as authenticated by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The exchange itself: local commands (import, demo, admin) and internal jobs.
    System { name: String },
    /// A system authenticated with SMART Backend Services, acting for a participant (its
    /// Organization's id), with the scopes its token was granted.
    Client {
        client_id: String,
        participant: String,
        scopes: ScopeSet,
    },
    /// A person signed in to the portal: a participant's user, an operator, or a patient.
    User {
        user_id: String,
        participant: Option<String>,
        role: Role,
    },
    /// Nobody has authenticated. Until the HTTP adapter checks tokens, every API request is this.
    Anonymous,
}

impl Principal {
    /// The participant (Organization id) the principal acts for, if any.
    pub fn participant(&self) -> Option<&str> {
        match self {
            Principal::Client { participant, .. } => Some(participant),
            Principal::User { participant, .. } => participant.as_deref(),
            Principal::System { .. } | Principal::Anonymous => None,
        }
    }
}

/// Who is asking, why, and from where. Built by the adapter for every request; carries the request
/// id for the log and the audit trail.
#[derive(Debug, Clone)]
pub struct Requester {
    pub request_id: String,
    pub principal: Principal,
    pub purpose: PurposeOfUse,
    /// The client's network address, when the request came over the network.
    pub client_address: Option<std::net::IpAddr>,
}

impl Requester {
    /// A requester for local tools (import, demo seeding, admin commands) acting as the system
    /// itself, for treatment.
    pub fn system(request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        Requester {
            principal: Principal::System {
                name: request_id.clone(),
            },
            request_id,
            purpose: PurposeOfUse::Treat,
            client_address: None,
        }
    }

    /// The requestor of this request's AuditEvent.
    pub fn audit_requestor(&self) -> crate::audit::Requestor {
        let participant = self
            .principal
            .participant()
            .map(|id| format!("Organization/{id}"));
        match &self.principal {
            Principal::System { name } => crate::audit::Requestor {
                participant,
                id: None,
                display: Some(format!("nutmeg {name}")),
            },
            Principal::Client { client_id, .. } => crate::audit::Requestor {
                participant,
                id: Some(client_id.clone()),
                display: None,
            },
            Principal::User { user_id, .. } => crate::audit::Requestor {
                participant,
                id: Some(user_id.clone()),
                display: None,
            },
            Principal::Anonymous => crate::audit::Requestor {
                participant,
                id: None,
                display: Some("unauthenticated".into()),
            },
        }
    }
}

/// The outcome for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit,
    /// Withhold the resource; the reason is for the audit trail, never shown to the caller.
    Deny {
        reason: String,
    },
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit)
    }
}

/// A rule the decision point applies to every resource about to be disclosed.
pub type Rule = Arc<dyn Fn(&Requester, &Stored) -> Decision + Send + Sync>;

/// The decision point. Without a rule it permits everything; the access and consent issues give it
/// rules, and every read path already goes through it.
#[derive(Clone, Default)]
pub struct DecisionPoint {
    rule: Option<Rule>,
}

impl std::fmt::Debug for DecisionPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionPoint")
            .field("rule", &self.rule.as_ref().map(|_| "<rule>"))
            .finish()
    }
}

impl DecisionPoint {
    /// A decision point that permits everything.
    pub fn new() -> Self {
        DecisionPoint::default()
    }

    /// A decision point that asks `rule` about every resource (tests use it to deny one resource and
    /// show that it never leaves the repository).
    pub fn with_rule(rule: Rule) -> Self {
        DecisionPoint { rule: Some(rule) }
    }

    /// Whether this decision point permits everything (it has no rule), so callers may skip work
    /// that only matters when something is withheld.
    pub fn permits_everything(&self) -> bool {
        self.rule.is_none()
    }

    pub fn decide(&self, who: &Requester, resource: &Stored) -> Decision {
        match &self.rule {
            Some(rule) => rule(who, resource),
            None => Decision::Permit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_is_named_in_the_audit_trail() {
        let mut who = Requester::system("import");
        assert_eq!(who.principal.participant(), None);
        assert_eq!(
            who.audit_requestor().display.as_deref(),
            Some("nutmeg import")
        );
        who.principal = Principal::Client {
            client_id: "ehr-7".into(),
            participant: "hartford".into(),
            scopes: ScopeSet::parse("system/Patient.rs").unwrap(),
        };
        let requestor = who.audit_requestor();
        assert_eq!(
            requestor.participant.as_deref(),
            Some("Organization/hartford")
        );
        assert_eq!(requestor.id.as_deref(), Some("ehr-7"));
        who.principal = Principal::User {
            user_id: "pat-1".into(),
            participant: None,
            role: Role::Patient {
                patient_id: "p1".into(),
            },
        };
        assert_eq!(who.audit_requestor().participant, None);
        assert_eq!(who.audit_requestor().id.as_deref(), Some("pat-1"));
        who.principal = Principal::Anonymous;
        assert_eq!(
            who.audit_requestor().display.as_deref(),
            Some("unauthenticated")
        );
    }
}
