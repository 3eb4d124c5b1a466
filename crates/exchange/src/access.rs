//! The single access decision point. Everything the repository is about to disclose passes through
//! [`DecisionPoint::decide`], which sees who is asking, why, and what is about to leave.

use std::sync::Arc;

use store::Stored;

/// Why the caller wants the data: HL7 PurposeOfUse codes (TREAT, ETREAT, HPAYMT, HOPERAT, PUBHLTH, PATRQT...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeOfUse(pub String);

/// Who is asking and why. Built by the adapter for every request; carries the request id for the log.
#[derive(Debug, Clone)]
pub struct Requester {
    pub request_id: String,
    /// The authenticated principal; `None` until the access issue adds authentication.
    pub principal: Option<String>,
    pub purpose: PurposeOfUse,
}

impl Requester {
    /// A requester for local tools (import, demo seeding) acting as the system itself.
    pub fn system(request_id: impl Into<String>) -> Self {
        Requester {
            request_id: request_id.into(),
            principal: None,
            purpose: PurposeOfUse("TREAT".into()),
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
