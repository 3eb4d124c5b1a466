//! The two onboarding paths and their checklists. The law gives an applicant whose EHR can connect
//! the EHR path (apply, sign, build and test the interface, go live) and one without the
//! secure-messaging path (sign, receive a Direct address, exchange a test message, done). The
//! catalog decides the default path; an operator may change it, with a reason that is kept. Steps
//! are taken in order, each with who did it and when; a step not done within its service level
//! after the step before it is overdue.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::application::Ehr;
use crate::catalog::Product;

/// An onboarding path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    Ehr,
    SecureMessaging,
}

impl Path {
    pub fn code(self) -> &'static str {
        match self {
            Path::Ehr => "ehr",
            Path::SecureMessaging => "secure-messaging",
        }
    }

    pub fn parse(code: &str) -> Option<Path> {
        match code {
            "ehr" => Some(Path::Ehr),
            "secure-messaging" => Some(Path::SecureMessaging),
            _ => None,
        }
    }

    /// The path's steps, in the order they are taken.
    pub fn steps(self) -> &'static [Step] {
        match self {
            Path::Ehr => &[
                Step::ApplicationReceived,
                Step::PackageSent,
                Step::AgreementsSigned,
                Step::EndpointsRegistered,
                Step::TestMessagesPassed,
                Step::Live,
            ],
            Path::SecureMessaging => &[
                Step::ApplicationReceived,
                Step::PackageSent,
                Step::AgreementsSigned,
                Step::DirectAddressIssued,
                Step::TestMessageExchanged,
            ],
        }
    }
}

/// A step of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    ApplicationReceived,
    PackageSent,
    AgreementsSigned,
    EndpointsRegistered,
    TestMessagesPassed,
    DirectAddressIssued,
    TestMessageExchanged,
    Live,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::ApplicationReceived,
        Step::PackageSent,
        Step::AgreementsSigned,
        Step::EndpointsRegistered,
        Step::TestMessagesPassed,
        Step::DirectAddressIssued,
        Step::TestMessageExchanged,
        Step::Live,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Step::ApplicationReceived => "application-received",
            Step::PackageSent => "package-sent",
            Step::AgreementsSigned => "agreements-signed",
            Step::EndpointsRegistered => "endpoints-registered",
            Step::TestMessagesPassed => "test-messages-passed",
            Step::DirectAddressIssued => "direct-address-issued",
            Step::TestMessageExchanged => "test-message-exchanged",
            Step::Live => "live",
        }
    }

    pub fn parse(code: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            Step::ApplicationReceived => "Application received",
            Step::PackageSent => "Onboarding package sent",
            Step::AgreementsSigned => "Agreements signed",
            Step::EndpointsRegistered => "Interface endpoints registered",
            Step::TestMessagesPassed => "Test messages passed",
            Step::DirectAddressIssued => "Direct address issued",
            Step::TestMessageExchanged => "Test message exchanged",
            Step::Live => "Live",
        }
    }
}

/// The default path: the EHR path when the applicant's product is in the catalog and can connect.
pub fn default_path(ehr: &Ehr, catalog: &[Product]) -> Path {
    match ehr {
        Ehr::Catalog(id) if catalog.iter().any(|p| &p.id == id && p.can_connect()) => Path::Ehr,
        _ => Path::SecureMessaging,
    }
}

/// A step done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub step: Step,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An operator's change of path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChange {
    pub from: Path,
    pub to: Path,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: String,
}

/// Why a step or a change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{} is not a step of the {} path", .0.label(), .1.code())]
    NotOnPath(Step, Path),
    #[error("{} is already done", .0.label())]
    AlreadyDone(Step),
    #[error("{} comes first", .0.label())]
    OutOfOrder(Step),
    #[error("the path is already {}", .0.code())]
    SamePath(Path),
    #[error("a change of path needs a reason")]
    NoReason,
    #[error("a step cannot be recorded before the step it follows")]
    BeforePrevious,
}

/// One application's checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checklist {
    pub path: Path,
    pub done: Vec<Done>,
    #[serde(default)]
    pub changes: Vec<PathChange>,
}

impl Checklist {
    /// A new checklist whose application was received `at`, recorded by `by`.
    pub fn new(path: Path, by: &str, at: OffsetDateTime) -> Checklist {
        Checklist {
            path,
            done: vec![Done {
                step: Step::ApplicationReceived,
                by: by.to_string(),
                at,
            }],
            changes: Vec::new(),
        }
    }

    /// When `step` was done, if it was.
    pub fn done_at(&self, step: Step) -> Option<OffsetDateTime> {
        self.done.iter().find(|d| d.step == step).map(|d| d.at)
    }

    /// The first step of the path not yet done (none: the path is finished).
    pub fn next(&self) -> Option<Step> {
        self.path
            .steps()
            .iter()
            .copied()
            .find(|s| self.done_at(*s).is_none())
    }

    /// When the path's last step was done.
    pub fn finished(&self) -> Option<OffsetDateTime> {
        let last = *self.path.steps().last()?;
        self.next().is_none().then(|| self.done_at(last)).flatten()
    }

    /// Records `step` as done by `by` at `at`: it must be the next step of the path, and not
    /// earlier than the step before it.
    pub fn complete(
        &mut self,
        step: Step,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<(), WorkflowError> {
        if !self.path.steps().contains(&step) {
            return Err(WorkflowError::NotOnPath(step, self.path));
        }
        if self.done_at(step).is_some() {
            return Err(WorkflowError::AlreadyDone(step));
        }
        match self.next() {
            Some(next) if next != step => return Err(WorkflowError::OutOfOrder(next)),
            _ => {}
        }
        if let Some(previous) = self.previous_done(step) {
            if at < previous {
                return Err(WorkflowError::BeforePrevious);
            }
        }
        self.done.push(Done {
            step,
            by: by.to_string(),
            at,
        });
        Ok(())
    }

    /// Moves the application to the other path. Steps the two paths share stay done; the others
    /// stay in the record but no longer count.
    pub fn change_path(
        &mut self,
        to: Path,
        by: &str,
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<(), WorkflowError> {
        if to == self.path {
            return Err(WorkflowError::SamePath(to));
        }
        if reason.trim().is_empty() {
            return Err(WorkflowError::NoReason);
        }
        self.changes.push(PathChange {
            from: self.path,
            to,
            by: by.to_string(),
            at,
            reason: reason.trim().to_string(),
        });
        self.path = to;
        Ok(())
    }

    fn previous_done(&self, step: Step) -> Option<OffsetDateTime> {
        let steps = self.path.steps();
        let i = steps.iter().position(|s| *s == step)?;
        i.checked_sub(1).and_then(|p| self.done_at(steps[p]))
    }

    /// The next step when it is past its service level at `now`: it was due `levels` days after
    /// the step before it was done.
    pub fn overdue(&self, levels: &ServiceLevels, now: OffsetDateTime) -> Option<Overdue> {
        let step = self.next()?;
        let since = self.previous_done(step)?;
        let days = levels.days(step)?;
        let due = since + Duration::days(i64::from(days));
        (now > due).then_some(Overdue { step, due })
    }
}

/// A step past its service level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    pub step: Step,
    pub due: OffsetDateTime,
}

/// Days allowed for each step after the step before it (a step without one is never overdue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceLevels(pub BTreeMap<String, u32>);

impl Default for ServiceLevels {
    /// The onboarding package within 10 days of the application; the rest as the exchange's
    /// onboarding team plans them.
    fn default() -> Self {
        ServiceLevels(
            [
                (Step::PackageSent, 10),
                (Step::AgreementsSigned, 30),
                (Step::EndpointsRegistered, 60),
                (Step::TestMessagesPassed, 60),
                (Step::Live, 30),
                (Step::DirectAddressIssued, 5),
                (Step::TestMessageExchanged, 14),
            ]
            .into_iter()
            .map(|(s, d)| (s.code().to_string(), d))
            .collect(),
        )
    }
}

impl ServiceLevels {
    pub fn days(&self, step: Step) -> Option<u32> {
        self.0.get(step.code()).copied()
    }

    /// Every key that is not a step's code.
    pub fn unknown_steps(&self) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| Step::parse(k).is_none())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Capability, Status};
    use time::macros::datetime;

    #[test]
    fn the_catalog_decides_the_default_path() {
        let catalog = vec![
            Product {
                id: "fhir".into(),
                vendor: "A".into(),
                product: "B".into(),
                version: None,
                onc_certification: None,
                capabilities: vec![Capability::FhirR4],
                status: Status::Compatible,
            },
            Product {
                id: "old".into(),
                vendor: "C".into(),
                product: "D".into(),
                version: None,
                onc_certification: None,
                capabilities: vec![Capability::FhirR4],
                status: Status::NotYetCompatible,
            },
        ];
        assert_eq!(
            default_path(&Ehr::Catalog("fhir".into()), &catalog),
            Path::Ehr
        );
        assert_eq!(
            default_path(&Ehr::Catalog("old".into()), &catalog),
            Path::SecureMessaging
        );
        assert_eq!(
            default_path(&Ehr::Other("X".into()), &catalog),
            Path::SecureMessaging
        );
        assert_eq!(default_path(&Ehr::None, &catalog), Path::SecureMessaging);
    }

    #[test]
    fn steps_are_taken_in_order_and_the_path_finishes() {
        let t0 = datetime!(2023-01-02 09:00 UTC);
        let mut c = Checklist::new(Path::SecureMessaging, "applicant", t0);
        assert_eq!(c.next(), Some(Step::PackageSent));
        assert_eq!(
            c.complete(Step::AgreementsSigned, "op", t0),
            Err(WorkflowError::OutOfOrder(Step::PackageSent))
        );
        assert_eq!(
            c.complete(Step::Live, "op", t0),
            Err(WorkflowError::NotOnPath(Step::Live, Path::SecureMessaging))
        );
        assert_eq!(
            c.complete(Step::PackageSent, "op", t0 - Duration::days(1)),
            Err(WorkflowError::BeforePrevious)
        );
        for (i, step) in [
            Step::PackageSent,
            Step::AgreementsSigned,
            Step::DirectAddressIssued,
            Step::TestMessageExchanged,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(c.finished(), None);
            c.complete(step, "op", t0 + Duration::days(i as i64 + 1))
                .unwrap();
        }
        assert_eq!(c.finished(), Some(t0 + Duration::days(4)));
        assert_eq!(
            c.complete(Step::PackageSent, "op", t0),
            Err(WorkflowError::AlreadyDone(Step::PackageSent))
        );
    }

    #[test]
    fn a_change_of_path_keeps_shared_steps_and_needs_a_reason() {
        let t0 = datetime!(2023-01-02 09:00 UTC);
        let mut c = Checklist::new(Path::SecureMessaging, "applicant", t0);
        c.complete(Step::PackageSent, "op", t0).unwrap();
        assert_eq!(
            c.change_path(Path::Ehr, "op", t0, " "),
            Err(WorkflowError::NoReason)
        );
        assert_eq!(
            c.change_path(Path::SecureMessaging, "op", t0, "x"),
            Err(WorkflowError::SamePath(Path::SecureMessaging))
        );
        c.change_path(Path::Ehr, "op", t0, "the vendor shipped a FHIR interface")
            .unwrap();
        assert_eq!(c.next(), Some(Step::AgreementsSigned));
        assert_eq!(c.changes[0].reason, "the vendor shipped a FHIR interface");
    }

    #[test]
    fn the_package_is_overdue_after_ten_days() {
        let t0 = datetime!(2023-03-01 12:00 UTC);
        let c = Checklist::new(Path::Ehr, "applicant", t0);
        let levels = ServiceLevels::default();
        assert_eq!(c.overdue(&levels, t0 + Duration::days(10)), None);
        let late = c
            .overdue(&levels, t0 + Duration::days(10) + Duration::minutes(1))
            .unwrap();
        assert_eq!(late.step, Step::PackageSent);
        assert_eq!(late.due, t0 + Duration::days(10));
        let none = ServiceLevels(BTreeMap::new());
        assert_eq!(c.overdue(&none, t0 + Duration::days(400)), None);
    }
}
