//! The mandate as data: who must do what by when, and who is exempt, read from a TOML file
//! (`mandates/connecticut.toml` is Connecticut's, the default). [`Mandate::evaluate`] is the one
//! place a licensee's status is decided: from the facts known about them (licence type, whether
//! their EHR can connect, when they applied, when they could send and receive secure messages, the
//! exemptions that hold) as of a day.

use serde::{Deserialize, Serialize};

use crate::{format_date, parse_date, Date};

/// Connecticut's mandate, shipped as the default.
pub const CONNECTICUT: &str = include_str!("../mandates/connecticut.toml");

/// What a requirement asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Must {
    /// An application to connect, received.
    Apply,
    /// Able to send and receive secure messages (a Direct address issued and a test message
    /// exchanged).
    SecureMessaging,
    /// Either of them (the licensee's EHR is not known).
    ApplyOrSecureMessaging,
}

impl Must {
    pub fn code(self) -> &'static str {
        match self {
            Must::Apply => "apply",
            Must::SecureMessaging => "secure-messaging",
            Must::ApplyOrSecureMessaging => "apply-or-secure-messaging",
        }
    }

    /// What is missing, in words a provider reads.
    pub fn missing(self) -> &'static str {
        match self {
            Must::Apply => "apply to connect to the exchange",
            Must::SecureMessaging => {
                "be able to send and receive secure messages: apply, sign the agreements, receive a Direct \
                 address and exchange a test message"
            }
            Must::ApplyOrSecureMessaging => {
                "apply to connect to the exchange (if your EHR can connect) or be able to send and receive \
                 secure messages through it (if it cannot)"
            }
        }
    }
}

/// Which EHRs a requirement applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EhrCondition {
    Any,
    Capable,
    NotCapable,
}

/// One requirement of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub licence_types: Vec<String>,
    pub ehr: EhrCondition,
    pub must: Must,
    /// The deadline, `YYYY-MM-DD`, inclusive.
    pub by: String,
    #[serde(skip)]
    deadline: Option<Date>,
}

impl Requirement {
    pub fn deadline(&self) -> Date {
        self.deadline
            .expect("a loaded mandate's deadlines are parsed")
    }

    fn covers(&self, licence_type: &str) -> bool {
        self.licence_types
            .iter()
            .any(|t| t == "*" || t == licence_type)
    }
}

/// One exemption of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    pub id: String,
    pub description: String,
}

/// A mandate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mandate {
    pub name: String,
    #[serde(rename = "requirement", default)]
    pub requirements: Vec<Requirement>,
    #[serde(rename = "exemption", default)]
    pub exemptions: Vec<Exemption>,
}

/// Every problem of a mandate file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the mandate file has {} problem(s): {}", .0.len(), .0.join("; "))]
pub struct MandateError(pub Vec<String>);

impl Mandate {
    /// Connecticut's.
    pub fn connecticut() -> Mandate {
        Mandate::parse(CONNECTICUT).expect("the shipped mandate is valid")
    }

    /// Reads a mandate file; every problem at once.
    pub fn parse(text: &str) -> Result<Mandate, MandateError> {
        let mut mandate: Mandate =
            toml::from_str(text).map_err(|e| MandateError(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for r in &mut mandate.requirements {
            if !ids.insert(r.id.clone()) {
                problems.push(format!("requirement id `{}` is used twice", r.id));
            }
            r.deadline = parse_date(&r.by);
            if r.deadline.is_none() {
                problems.push(format!(
                    "requirement `{}`: `by` must be YYYY-MM-DD, not `{}`",
                    r.id, r.by
                ));
            }
            if r.licence_types.is_empty() {
                problems.push(format!("requirement `{}` lists no licence types", r.id));
            }
            for t in &r.licence_types {
                if t != "*" && crate::application::licence_type(t).is_none() {
                    problems.push(format!(
                        "requirement `{}`: unknown licence type `{t}`",
                        r.id
                    ));
                }
            }
        }
        for e in &mandate.exemptions {
            if !ids.insert(e.id.clone()) {
                problems.push(format!("exemption id `{}` is used twice", e.id));
            }
        }
        if problems.is_empty() {
            Ok(mandate)
        } else {
            Err(MandateError(problems))
        }
    }

    pub fn exemption(&self, id: &str) -> Option<&Exemption> {
        self.exemptions.iter().find(|e| e.id == id)
    }

    /// The requirement that applies to a licence type and an EHR capability (`None`: not known),
    /// and what it asks: with the EHR unknown, the requirements for capable and not-capable EHRs
    /// together ask for either, by the earlier deadline.
    pub fn requirement_for(
        &self,
        licence_type: &str,
        ehr_capable: Option<bool>,
    ) -> Option<(&Requirement, Must, Date)> {
        let applies = |r: &&Requirement, capable: bool| {
            r.covers(licence_type)
                && match r.ehr {
                    EhrCondition::Any => true,
                    EhrCondition::Capable => capable,
                    EhrCondition::NotCapable => !capable,
                }
        };
        match ehr_capable {
            Some(capable) => self
                .requirements
                .iter()
                .find(|r| applies(r, capable))
                .map(|r| (r, r.must, r.deadline())),
            None => {
                let yes = self.requirements.iter().find(|r| applies(r, true));
                let no = self.requirements.iter().find(|r| applies(r, false));
                match (yes, no) {
                    (Some(a), Some(b)) if a.id == b.id => Some((a, a.must, a.deadline())),
                    (Some(a), Some(b)) => {
                        let first = if b.deadline() < a.deadline() { b } else { a };
                        let must = if a.must == b.must {
                            a.must
                        } else {
                            Must::ApplyOrSecureMessaging
                        };
                        Some((first, must, a.deadline().min(b.deadline())))
                    }
                    (Some(r), None) | (None, Some(r)) => Some((r, r.must, r.deadline())),
                    (None, None) => None,
                }
            }
        }
    }

    /// The dates on which a licensee's status can change, worked out once from the facts: enough
    /// to classify them on any day without looking at the facts again (the chart over time asks
    /// for every month).
    pub fn timeline(&self, facts: &Facts) -> Timeline {
        let exempt = facts
            .exemptions
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| self.exemption(id).is_some())
            .min_by_key(|(_, (_, since))| *since)
            .map(|(i, (_, since))| (*since, i));
        let Some((requirement, must, deadline)) =
            self.requirement_for(&facts.licence_type, facts.ehr_capable)
        else {
            return Timeline {
                exempt,
                required: None,
            };
        };
        let done = match must {
            Must::Apply => facts.applied,
            Must::SecureMessaging => facts.secure_messaging,
            Must::ApplyOrSecureMessaging => match (facts.applied, facts.secure_messaging) {
                (Some(a), Some(m)) => Some(a.min(m)),
                (a, m) => a.or(m),
            },
        };
        let index = self
            .requirements
            .iter()
            .position(|r| r.id == requirement.id)
            .unwrap_or(0);
        Timeline {
            exempt,
            required: Some(Required {
                requirement: index,
                must,
                deadline,
                done,
            }),
        }
    }

    /// A licensee's status on `as_of`, from the facts known (events after `as_of` do not count).
    pub fn evaluate(&self, facts: &Facts, as_of: Date) -> Status {
        let timeline = self.timeline(facts);
        match timeline.at(as_of) {
            Kind::Exempt => {
                let (since, i) = timeline.exempt.expect("exempt has a date");
                Status::Exempt {
                    exemption: facts.exemptions[i].0.clone(),
                    since,
                }
            }
            Kind::NotRequired => Status::NotRequired,
            kind => {
                let r = timeline.required.expect("a requirement applies");
                let requirement = self.requirements[r.requirement].id.clone();
                match (kind, r.done) {
                    (Kind::Compliant, Some(on)) => Status::Compliant {
                        requirement,
                        done_on: on,
                        deadline: r.deadline,
                        late: on > r.deadline,
                    },
                    _ => Status::NotYetCompliant {
                        requirement,
                        must: r.must,
                        deadline: r.deadline,
                        overdue: kind == Kind::Overdue,
                    },
                }
            }
        }
    }
}

/// A licensee's status without its details, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Compliant,
    /// Not yet compliant, deadline not passed.
    Pending,
    /// Not yet compliant, deadline passed.
    Overdue,
    Exempt,
    NotRequired,
}

/// What [`Mandate::timeline`] works out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The earliest exemption the mandate knows: since when, and which of the facts' exemptions.
    exempt: Option<(Date, usize)>,
    required: Option<Required>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Required {
    requirement: usize,
    must: Must,
    deadline: Date,
    /// When what the requirement asks was done.
    done: Option<Date>,
}

impl Timeline {
    /// The status on `day`.
    pub fn at(&self, day: Date) -> Kind {
        if self.exempt.is_some_and(|(since, _)| since <= day) {
            return Kind::Exempt;
        }
        match &self.required {
            None => Kind::NotRequired,
            Some(r) if r.done.is_some_and(|d| d <= day) => Kind::Compliant,
            Some(r) if day > r.deadline => Kind::Overdue,
            Some(_) => Kind::Pending,
        }
    }
}

/// What is known about one licensee.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub licence_type: String,
    /// Whether their EHR can connect (`None`: not known: they have not applied).
    pub ehr_capable: Option<bool>,
    /// When their application to connect was received.
    pub applied: Option<Date>,
    /// When they could first send and receive secure messages (a test message exchanged).
    pub secure_messaging: Option<Date>,
    /// Exemptions that hold, by id, since when.
    pub exemptions: Vec<(String, Date)>,
}

/// A licensee's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Compliant {
        requirement: String,
        done_on: Date,
        deadline: Date,
        /// Done after the deadline (compliant now, but late).
        late: bool,
    },
    NotYetCompliant {
        requirement: String,
        must: Must,
        deadline: Date,
        /// The deadline has passed.
        overdue: bool,
    },
    Exempt {
        exemption: String,
        since: Date,
    },
    /// No requirement covers their licence type.
    NotRequired,
}

impl Status {
    pub fn kind(&self) -> Kind {
        match self {
            Status::Compliant { .. } => Kind::Compliant,
            Status::NotYetCompliant { overdue: false, .. } => Kind::Pending,
            Status::NotYetCompliant { overdue: true, .. } => Kind::Overdue,
            Status::Exempt { .. } => Kind::Exempt,
            Status::NotRequired => Kind::NotRequired,
        }
    }

    /// `compliant`, `not-yet-compliant`, `exempt` or `not-required`.
    pub fn code(&self) -> &'static str {
        match self {
            Status::Compliant { .. } => "compliant",
            Status::NotYetCompliant { .. } => "not-yet-compliant",
            Status::Exempt { .. } => "exempt",
            Status::NotRequired => "not-required",
        }
    }

    /// The status in plain words, with the dates that decided it.
    pub fn explain(&self, mandate: &Mandate) -> String {
        match self {
            Status::Compliant {
                done_on,
                deadline,
                late,
                requirement,
            } => {
                let what = mandate
                    .requirements
                    .iter()
                    .find(|r| &r.id == requirement)
                    .map(|r| r.must)
                    .unwrap_or(Must::Apply);
                let done = match what {
                    Must::SecureMessaging => "could send and receive secure messages",
                    _ => "applied to connect",
                };
                if *late {
                    format!(
                        "Compliant: you {done} on {}, after the deadline of {}.",
                        format_date(*done_on),
                        format_date(*deadline)
                    )
                } else {
                    format!(
                        "Compliant: you {done} on {}, by the deadline of {}.",
                        format_date(*done_on),
                        format_date(*deadline)
                    )
                }
            }
            Status::NotYetCompliant {
                must,
                deadline,
                overdue,
                ..
            } => {
                if *overdue {
                    format!(
                        "Not yet compliant: the law asked you to {} by {}. That date has passed; do it now.",
                        must.missing(),
                        format_date(*deadline)
                    )
                } else {
                    format!(
                        "Not yet compliant: the law asks you to {} by {}.",
                        must.missing(),
                        format_date(*deadline)
                    )
                }
            }
            Status::Exempt { exemption, since } => {
                let why = mandate
                    .exemption(exemption)
                    .map(|e| e.description.as_str())
                    .unwrap_or(exemption.as_str());
                format!("Exempt since {}: you {why}.", format_date(*since))
            }
            Status::NotRequired => "The mandate asks nothing of your licence type.".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn facts(licence_type: &str, capable: Option<bool>) -> Facts {
        Facts {
            licence_type: licence_type.into(),
            ehr_capable: capable,
            ..Facts::default()
        }
    }

    #[test]
    fn connecticuts_deadlines() {
        let m = Mandate::connecticut();
        let (r, must, by) = m.requirement_for("hospital", Some(false)).unwrap();
        assert_eq!(
            (r.id.as_str(), must, by),
            (
                "hospitals-and-laboratories",
                Must::Apply,
                date!(2022 - 05 - 03)
            )
        );
        let (_, must, by) = m.requirement_for("lmft", Some(true)).unwrap();
        assert_eq!((must, by), (Must::Apply, date!(2023 - 05 - 03)));
        let (_, must, _) = m.requirement_for("lmft", Some(false)).unwrap();
        assert_eq!(must, Must::SecureMessaging);
        let (_, must, _) = m.requirement_for("lcsw", None).unwrap();
        assert_eq!(must, Must::ApplyOrSecureMessaging);
        let (_, must, _) = m.requirement_for("laboratory", None).unwrap();
        assert_eq!(must, Must::Apply);
    }

    #[test]
    fn statuses_and_the_dates_that_decide_them() {
        let m = Mandate::connecticut();
        let mut f = facts("lmft", Some(false));
        let early = m.evaluate(&f, date!(2023 - 01 - 01));
        assert!(matches!(
            early,
            Status::NotYetCompliant {
                overdue: false,
                must: Must::SecureMessaging,
                ..
            }
        ));
        assert!(m
            .evaluate(&f, date!(2023 - 05 - 04))
            .explain(&m)
            .contains("has passed"));
        f.applied = Some(date!(2023 - 02 - 01));
        // Applying is not enough without an EHR: the test message is what counts.
        assert_eq!(
            m.evaluate(&f, date!(2023 - 06 - 01)).code(),
            "not-yet-compliant"
        );
        f.secure_messaging = Some(date!(2023 - 06 - 10));
        assert_eq!(
            m.evaluate(&f, date!(2023 - 06 - 09)).code(),
            "not-yet-compliant"
        );
        let late = m.evaluate(&f, date!(2023 - 06 - 10));
        assert!(matches!(late, Status::Compliant { late: true, .. }));
        assert!(late
            .explain(&m)
            .contains("after the deadline of 2023-05-03"));
        f.exemptions = vec![("no-patient-records".into(), date!(2023 - 03 - 01))];
        let exempt = m.evaluate(&f, date!(2023 - 06 - 10));
        assert_eq!(exempt.code(), "exempt");
        assert!(exempt.explain(&m).contains("keeps no patient records"));
        // An exemption the mandate does not know is ignored.
        f.exemptions = vec![("made-up".into(), date!(2023 - 03 - 01))];
        assert_eq!(m.evaluate(&f, date!(2023 - 06 - 10)).code(), "compliant");
    }

    #[test]
    fn a_bad_file_names_every_problem() {
        let bad = r#"
            name = "X"
            [[requirement]]
            id = "a"
            licence_types = ["wizard"]
            ehr = "any"
            must = "apply"
            by = "2023-13-01"
            [[requirement]]
            id = "a"
            licence_types = []
            ehr = "any"
            must = "apply"
            by = "2023-01-01"
        "#;
        let e = Mandate::parse(bad).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        assert!(Mandate::parse("name = 1").is_err());
        assert!(Mandate::parse("name = \"X\"\nsurprise = 1").is_err());
    }
}
