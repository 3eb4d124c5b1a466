//! The policy decision: may this resource go to this requester, for this purpose, now, given the
//! patient's consents; and what must go with it.
//!
//! A policy is data ([`Policy::from_toml`]; the format is documented in the crate overview and in
//! the shipped `policy/connecticut.toml`, [`Policy::connecticut`]). It sorts data into categories
//! (a base category that holds everything, and categories selected by sensitivity label,
//! confidentiality, source licence type or psychiatric facility), and for each category and purpose of use says whether a
//! treatment relationship is needed, which of the patient's choices bind (the exchange-wide
//! opt-out/opt-in, restrictions), what consent or fact is required, and what obligations a
//! disclosure carries. A resource is disclosed only when every category it is in permits it.
//!
//! [`Policy::decide`] is pure: the caller gives the request's facts, the resource's labels and
//! source, the consents of the patient (and of the family members a family-therapy record names),
//! and the time. The participant that sent the data gets it back under the base category alone
//! (it holds it already; the opt-out still binds).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::codes::{
    Coding, Confidentiality, Licence, Purpose, Sensitivity, ACT_CODE_SYSTEM, NORDSCLCD,
};
use crate::consent::{Access, Consent, Effect, Kind, Recipient};
use crate::labels::{Labels, ResourceLabels, SourceFacts};

/// The shipped Connecticut policy.
pub const CONNECTICUT: &str = include_str!("../policy/connecticut.toml");

/// The exchange-wide model: whether a patient who recorded no choice is in (opt-out) or out (opt-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    OptOut,
    OptIn,
}

/// Which of the patient's choices bind a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Honours {
    /// The exchange-wide choice and every restriction in the patient's consents.
    All,
    /// The exchange-wide choice only.
    OptOut,
    /// Neither.
    None,
}

/// What must also hold for a rule to permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The patient was informed (the psychiatric informed flag).
    Informed,
    /// A consent of the patient permits this access.
    Grant,
    /// Every other patient the record names as a participant has a consent that permits it.
    Family,
    /// A 42 CFR Part 2 consent of the patient permits it.
    Part2Consent,
    /// The requester declared a medical emergency.
    Emergency,
}

/// What a decision obliges the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obligation {
    /// (A denial.) Withhold the resource, and every reference that would reveal it from what is
    /// disclosed ([`crate::redact::redact_references`]); count totals after withholding.
    Redact,
    /// Add this security label to the disclosed resource (NORDSCLCD for Part 2 data).
    AddLabel(Coding),
    /// Attach this notice to the disclosure (the 42 CFR 2.32 notice for Part 2 data).
    AttachNotice { name: String, text: String },
    /// Tell the patient (a notice they see with their disclosures).
    NotifyPatient,
    /// Tell the participant that sent the data (a message to it).
    NotifySource,
    /// Flag the disclosure in the audit trail as break-the-glass, for review.
    FlagBreakGlass,
}

/// One rule of a category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub purposes: Vec<Purpose>,
    pub permit: bool,
    pub relationship: bool,
    pub honours: Honours,
    pub requires: Vec<Requirement>,
    pub obligations: Vec<Obligation>,
}

/// Which resources a category holds: any one condition holding puts a resource in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    pub labels: Vec<Sensitivity>,
    /// Confidentiality codes (a source's V on data this crate finds no sensitivity in).
    pub confidentiality: Vec<Confidentiality>,
    pub licences: Vec<Licence>,
    pub psychiatric_facility: bool,
}

/// A category of data and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    /// None: every resource.
    pub when: Option<When>,
    pub rules: Vec<Rule>,
}

impl Category {
    /// Whether a resource with these labels from this source is in the category.
    pub fn holds(&self, labels: &Labels, source: &SourceFacts) -> bool {
        match &self.when {
            None => true,
            Some(w) => {
                labels.has_any(&w.labels)
                    || w.confidentiality.contains(&labels.confidentiality)
                    || source.licence.is_some_and(|l| w.licences.contains(&l))
                    || (w.psychiatric_facility && source.psychiatric_facility)
            }
        }
    }
}

/// A privacy policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub model: Model,
    pub categories: Vec<Category>,
    /// What public health receives whatever the patient chose ([`Policy::kept_for_public_health`]).
    pub reportable: Vec<Reportable>,
}

/// Data that the law routes to public health: kept when it arrives for a patient who opted out,
/// and kept by the consent purge, so that public health (purpose PUBHLTH) still receives it. A
/// resource is reportable when its type is listed and, if the entry names codes, some Coding it
/// carries (anywhere outside `meta`, as labelling reads them) matches one. Results are not
/// interpreted: a reportable test is kept whatever its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reportable {
    /// Unique; named in the logs' counts and the purge's report.
    pub name: String,
    pub resource_types: Vec<String>,
    /// None: every resource of the types.
    pub codes: Vec<CodeMatch>,
}

/// Codes of one system: exact codes and code prefixes (`A15` holds `A15.0`). Dots are ignored on
/// both sides, since ICD-10-CM codes travel with and without theirs (`A15.0`, `A150`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMatch {
    pub system: String,
    pub codes: Vec<String>,
    pub prefixes: Vec<String>,
}

impl CodeMatch {
    fn matches(&self, coding: &Coding) -> bool {
        if coding.system != self.system {
            return false;
        }
        let undotted = |s: &str| s.replace('.', "");
        let code = undotted(&coding.code);
        self.codes.iter().any(|c| undotted(c) == code)
            || self
                .prefixes
                .iter()
                .any(|p| code.starts_with(undotted(p).as_str()))
    }
}

impl Reportable {
    /// Whether the resource is reportable under this entry.
    pub fn holds(&self, resource: &Value) -> bool {
        let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
            return false;
        };
        self.resource_types.iter().any(|t| t == ty)
            && (self.codes.is_empty()
                || crate::labels::codings(resource)
                    .iter()
                    .any(|c| self.codes.iter().any(|m| m.matches(c))))
    }
}

/// A problem in a policy file, naming where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// `category[2].rule[0].requires[1]`, or `toml` when the file is not TOML.
    pub path: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    model: String,
    #[serde(default)]
    notices: BTreeMap<String, String>,
    #[serde(default)]
    category: Vec<RawCategory>,
    #[serde(default)]
    reportable: Vec<RawReportable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReportable {
    name: String,
    #[serde(default)]
    resource_types: Vec<String>,
    #[serde(default)]
    codes: Vec<RawCodes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodes {
    system: String,
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: String,
    when: Option<RawWhen>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    confidentiality: Vec<String>,
    #[serde(default)]
    licences: Vec<String>,
    #[serde(default)]
    psychiatric_facility: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    purposes: Vec<String>,
    effect: Option<String>,
    #[serde(default)]
    relationship: bool,
    honours: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    obligations: Vec<String>,
}

impl Policy {
    /// The shipped Connecticut policy. It is checked by the crate's tests; should it ever fail to
    /// parse, the policy denies everything (fails closed) rather than fail every request.
    pub fn connecticut() -> Policy {
        Policy::from_toml(CONNECTICUT).unwrap_or_else(|_| Policy {
            model: Model::OptIn,
            categories: vec![Category {
                name: "normal".into(),
                when: None,
                rules: Vec::new(),
            }],
            reportable: Vec::new(),
        })
    }

    /// Parses a policy file, reporting every problem.
    pub fn from_toml(text: &str) -> Result<Policy, Vec<PolicyError>> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            vec![PolicyError {
                path: "toml".into(),
                message: e.to_string(),
            }]
        })?;
        let mut errors = Vec::new();
        let mut fail = |path: String, message: String| errors.push(PolicyError { path, message });
        let model = match raw.model.as_str() {
            "opt-out" => Model::OptOut,
            "opt-in" => Model::OptIn,
            _ => {
                fail("model".into(), "must be opt-out or opt-in".into());
                Model::OptIn
            }
        };
        let mut categories: Vec<Category> = Vec::new();
        for (c, raw_category) in raw.category.into_iter().enumerate() {
            let at = format!("category[{c}]");
            if raw_category.name.trim().is_empty() {
                fail(format!("{at}.name"), "is required".into());
            }
            if categories.iter().any(|k| k.name == raw_category.name) {
                fail(
                    format!("{at}.name"),
                    format!("{:?} is used twice", raw_category.name),
                );
            }
            let when = raw_category.when.map(|w| {
                let mut when = When {
                    psychiatric_facility: w.psychiatric_facility,
                    ..When::default()
                };
                for (i, l) in w.labels.iter().enumerate() {
                    match Sensitivity::parse(l) {
                        Some(s) => when.labels.push(s),
                        None => fail(
                            format!("{at}.when.labels[{i}]"),
                            format!("unknown sensitivity code {l:?}"),
                        ),
                    }
                }
                for (i, l) in w.licences.iter().enumerate() {
                    match Licence::parse_loose(l) {
                        Some(s) => when.licences.push(s),
                        None => fail(
                            format!("{at}.when.licences[{i}]"),
                            format!("unknown licence type {l:?}"),
                        ),
                    }
                }
                for (i, c) in w.confidentiality.iter().enumerate() {
                    match Confidentiality::parse(c) {
                        Some(c) => when.confidentiality.push(c),
                        None => fail(
                            format!("{at}.when.confidentiality[{i}]"),
                            format!("unknown confidentiality code {c:?}"),
                        ),
                    }
                }
                if w.labels.is_empty()
                    && w.confidentiality.is_empty()
                    && w.licences.is_empty()
                    && !w.psychiatric_facility
                {
                    fail(
                        format!("{at}.when"),
                        "selects nothing: give labels, confidentiality, licences or psychiatric_facility".into(),
                    );
                }
                when
            });
            let mut rules = Vec::new();
            for (r, raw_rule) in raw_category.rule.into_iter().enumerate() {
                let at = format!("{at}.rule[{r}]");
                let mut purposes = Vec::new();
                for (i, p) in raw_rule.purposes.iter().enumerate() {
                    match Purpose::parse(p) {
                        Some(p) => purposes.push(p),
                        None => fail(
                            format!("{at}.purposes[{i}]"),
                            format!("unknown purpose of use {p:?}"),
                        ),
                    }
                }
                if raw_rule.purposes.is_empty() {
                    fail(
                        format!("{at}.purposes"),
                        "a rule names at least one purpose".into(),
                    );
                }
                let permit = match raw_rule.effect.as_deref() {
                    None | Some("permit") => true,
                    Some("deny") => false,
                    Some(_) => {
                        fail(format!("{at}.effect"), "must be permit or deny".into());
                        false
                    }
                };
                let honours = match raw_rule.honours.as_deref() {
                    None | Some("all") => Honours::All,
                    Some("opt-out") => Honours::OptOut,
                    Some("none") => Honours::None,
                    Some(_) => {
                        fail(
                            format!("{at}.honours"),
                            "must be all, opt-out or none".into(),
                        );
                        Honours::All
                    }
                };
                let mut requires = Vec::new();
                for (i, q) in raw_rule.requires.iter().enumerate() {
                    let q = match q.as_str() {
                        "informed" => Requirement::Informed,
                        "grant" => Requirement::Grant,
                        "family" => Requirement::Family,
                        "part2-consent" => Requirement::Part2Consent,
                        "emergency" => Requirement::Emergency,
                        _ => {
                            fail(
                                format!("{at}.requires[{i}]"),
                                format!("unknown requirement {q:?}"),
                            );
                            continue;
                        }
                    };
                    requires.push(q);
                }
                let mut obligations = Vec::new();
                for (i, o) in raw_rule.obligations.iter().enumerate() {
                    let parsed = match o.split_once(' ') {
                        Some(("add-label", code)) if !code.trim().is_empty() => {
                            let code = code.trim();
                            let display = (code == NORDSCLCD)
                                .then_some("no redisclosure without consent directive");
                            Some(Obligation::AddLabel(Coding::new(
                                ACT_CODE_SYSTEM,
                                code,
                                display,
                            )))
                        }
                        Some(("attach-notice", name)) => match raw.notices.get(name.trim()) {
                            Some(text) => Some(Obligation::AttachNotice {
                                name: name.trim().to_owned(),
                                text: text.clone(),
                            }),
                            None => {
                                fail(
                                    format!("{at}.obligations[{i}]"),
                                    format!("no notice {:?} under [notices]", name.trim()),
                                );
                                continue;
                            }
                        },
                        _ => match o.as_str() {
                            "notify-patient" => Some(Obligation::NotifyPatient),
                            "notify-source" => Some(Obligation::NotifySource),
                            "flag-break-glass" => Some(Obligation::FlagBreakGlass),
                            _ => None,
                        },
                    };
                    match parsed {
                        Some(o) => obligations.push(o),
                        None => fail(
                            format!("{at}.obligations[{i}]"),
                            format!("unknown obligation {o:?}"),
                        ),
                    }
                }
                if raw_rule.effect.as_deref() == Some("deny")
                    && (!requires.is_empty() || !obligations.is_empty() || raw_rule.relationship)
                {
                    fail(
                        at.clone(),
                        "a deny rule has no requirements or obligations".into(),
                    );
                }
                for (i, purpose) in purposes.iter().enumerate() {
                    if rules.iter().any(|r: &Rule| r.purposes.contains(purpose)) {
                        fail(
                            format!("{at}.purposes[{i}]"),
                            format!("{purpose} already has a rule in this category (the first one applies)"),
                        );
                    }
                }
                rules.push(Rule {
                    purposes,
                    permit,
                    relationship: raw_rule.relationship,
                    honours,
                    requires,
                    obligations,
                });
            }
            categories.push(Category {
                name: raw_category.name,
                when,
                rules,
            });
        }
        if !categories.iter().any(|c| c.when.is_none()) {
            fail(
                "category".into(),
                "one category without `when` holds every resource (the exchange-wide rules)".into(),
            );
        }
        let reportable = reportable_of(raw.reportable, &mut fail);
        if errors.is_empty() {
            Ok(Policy {
                model,
                categories,
                reportable,
            })
        } else {
            Err(errors)
        }
    }

    /// Decides one disclosure. `consents` are the consents of the patient and of the family
    /// members the record names (others are ignored); any order. Pure.
    pub fn decide(
        &self,
        request: &Request,
        data: &Data,
        consents: &[Consent],
        now: OffsetDateTime,
    ) -> Decision {
        let mine: Vec<&Consent> = consents
            .iter()
            .filter(|c| c.patient == data.patient)
            .collect();
        let access = Access {
            purpose: request.purpose,
            recipient: &request.recipient,
            relationship: request.relationship,
            labels: &data.labels,
            reference: data.reference.as_deref(),
            now,
        };
        let mut denied = Vec::new();
        let mut permitted = Vec::new();
        let mut obligations: Vec<Obligation> = Vec::new();
        let mut used: Vec<String> = Vec::new();
        let mut used_denying: Vec<String> = Vec::new();
        let mut any = false;
        let own = request.recipient.organization.is_some()
            && request.recipient.organization == data.source_participant;
        for category in self
            .categories
            .iter()
            .filter(|c| c.holds(&data.labels, &data.source))
            .filter(|c| !own || c.when.is_none())
        {
            any = true;
            let name = &category.name;
            let Some(rule) = category
                .rules
                .iter()
                .find(|r| r.purposes.contains(&request.purpose))
            else {
                denied.push(Reason::NoRule {
                    category: name.clone(),
                    purpose: request.purpose,
                });
                continue;
            };
            if !rule.permit {
                denied.push(Reason::RuleDenies {
                    category: name.clone(),
                    purpose: request.purpose,
                });
                continue;
            }
            let before = denied.len();
            let mut category_used = Vec::new();
            if rule.relationship && !request.relationship {
                denied.push(Reason::NoRelationship {
                    category: name.clone(),
                });
            }
            if rule.honours != Honours::None {
                let (participating, choice) = self.choice(&mine, now);
                match (participating, choice.and_then(|c| c.id.clone())) {
                    (true, id) => category_used.extend(id),
                    (false, id) => {
                        used_denying.extend(id);
                        // Out by a recorded choice, or by the opt-in model's default.
                        denied.push(if choice.is_some() {
                            Reason::OptedOut
                        } else {
                            Reason::NotOptedIn
                        });
                    }
                }
            }
            if rule.honours == Honours::All {
                for c in &mine {
                    if c.evaluate(&access) == Some(Effect::Deny) {
                        used_denying.extend(c.id.clone());
                        denied.push(Reason::Restricted {
                            consent: c.id.clone(),
                        });
                    }
                }
            }
            for requirement in &rule.requires {
                match requirement {
                    Requirement::Informed => match informed(&mine, now) {
                        Some(c) if c.informed == Some(true) => category_used.extend(c.id.clone()),
                        latest => {
                            used_denying.extend(latest.and_then(|c| c.id.clone()));
                            denied.push(Reason::NotInformed {
                                category: name.clone(),
                            });
                        }
                    },
                    Requirement::Grant | Requirement::Part2Consent => {
                        let part2 = *requirement == Requirement::Part2Consent;
                        match granted(&mine, &access, part2) {
                            Ok(ids) => category_used.extend(ids),
                            Err(restricting) => {
                                used_denying.extend(restricting.iter().cloned());
                                denied.push(if part2 {
                                    Reason::NoPart2Consent {
                                        category: name.clone(),
                                    }
                                } else {
                                    Reason::NoGrant {
                                        category: name.clone(),
                                    }
                                });
                            }
                        }
                    }
                    Requirement::Family => {
                        for member in data.family.iter().filter(|m| **m != data.patient) {
                            let theirs: Vec<&Consent> =
                                consents.iter().filter(|c| &c.patient == member).collect();
                            let participating =
                                rule.honours == Honours::None || self.choice(&theirs, now).0;
                            match granted(&theirs, &access, false) {
                                Ok(ids) if participating => category_used.extend(ids),
                                _ => denied.push(Reason::FamilyConsentMissing {
                                    category: name.clone(),
                                    member: member.clone(),
                                }),
                            }
                        }
                    }
                    Requirement::Emergency => {
                        if !request.emergency_declared {
                            denied.push(Reason::NoEmergencyDeclared {
                                category: name.clone(),
                            });
                        }
                    }
                }
            }
            if denied.len() == before {
                permitted.push(Reason::Permitted {
                    category: name.clone(),
                    purpose: request.purpose,
                });
                used.extend(category_used);
                for o in &rule.obligations {
                    if !obligations.contains(o) {
                        obligations.push(o.clone());
                    }
                }
            }
        }
        if !any {
            denied.push(Reason::NoRule {
                category: "(none)".into(),
                purpose: request.purpose,
            });
        }
        let dedup = |ids: Vec<String>| {
            let mut out: Vec<String> = Vec::new();
            for id in ids {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            out
        };
        // The same reason (an opt-out, a restriction) can come from several categories.
        let mut reasons: Vec<Reason> = Vec::new();
        for reason in denied {
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        if reasons.is_empty() {
            Decision {
                permit: true,
                obligations,
                consents_used: dedup(used),
                reasons: permitted,
            }
        } else {
            Decision {
                permit: false,
                obligations: vec![Obligation::Redact],
                consents_used: dedup(used_denying),
                reasons,
            }
        }
    }

    /// Whether a decision about data with these labels from this source could ask about family
    /// members (a category holding it has a rule that requires `family`).
    pub fn needs_family(&self, labels: &Labels, source: &SourceFacts) -> bool {
        self.categories
            .iter()
            .filter(|c| c.holds(labels, source))
            .flat_map(|c| &c.rules)
            .any(|r| r.requires.contains(&Requirement::Family))
    }

    /// Whether this stored resource (labelled, as [`crate::labels::apply`] leaves it) is kept for
    /// public health whatever the patient chose: it is reportable (the name of the first
    /// [`Reportable`] entry that holds it is returned), and every category it is in discloses it
    /// for public health (`PUBHLTH`) through an opt-out, needing nothing else: a permit rule that
    /// honours `none` without requirements. Data the policy never gives public health (Part 2
    /// records, psychotherapy notes under the shipped policy) is not kept for it.
    pub fn kept_for_public_health(&self, resource: &Value) -> Option<&str> {
        let entry = self.reportable.iter().find(|r| r.holds(resource))?;
        let found = crate::labels::ResourceLabels::from_resource(resource);
        let reaches = self
            .categories
            .iter()
            .filter(|c| c.holds(&found.labels, &found.source))
            .all(|c| {
                c.rules
                    .iter()
                    .find(|r| r.purposes.contains(&Purpose::Pubhlth))
                    .is_some_and(|r| {
                        r.permit && r.honours == Honours::None && r.requires.is_empty()
                    })
            });
        reaches.then_some(entry.name.as_str())
    }

    /// The patient's exchange-wide choice at `now`: whether they are in, and the consent that
    /// says so (none: the model's default). The latest choice in force wins; at the same instant
    /// an opt-out wins.
    pub fn choice<'c>(
        &self,
        consents: &[&'c Consent],
        now: OffsetDateTime,
    ) -> (bool, Option<&'c Consent>) {
        let latest = consents
            .iter()
            .copied()
            .filter(|c| c.in_force(now))
            .filter_map(|c| c.choice().map(|choice| (c, choice)))
            .max_by_key(|(c, choice)| (c.date_time, !choice));
        match latest {
            Some((c, choice)) => (choice, Some(c)),
            None => (self.model == Model::OptOut, None),
        }
    }
}

/// The `[[reportable]]` entries, each problem reported through `fail`.
fn reportable_of(
    raw: Vec<RawReportable>,
    fail: &mut impl FnMut(String, String),
) -> Vec<Reportable> {
    let mut out: Vec<Reportable> = Vec::new();
    for (n, entry) in raw.into_iter().enumerate() {
        let at = format!("reportable[{n}]");
        if entry.name.trim().is_empty() {
            fail(format!("{at}.name"), "is required".into());
        }
        if out.iter().any(|r| r.name == entry.name) {
            fail(
                format!("{at}.name"),
                format!("{:?} is used twice", entry.name),
            );
        }
        if entry.resource_types.is_empty() {
            fail(
                format!("{at}.resource_types"),
                "names at least one resource type".into(),
            );
        }
        for (i, t) in entry.resource_types.iter().enumerate() {
            let named = t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphabetic());
            if !named {
                fail(
                    format!("{at}.resource_types[{i}]"),
                    format!("{t:?} is not a FHIR resource type name"),
                );
            } else if t == "Patient" || t == "Consent" {
                fail(
                    format!("{at}.resource_types[{i}]"),
                    format!("{t} is always kept: name the reportable data"),
                );
            }
        }
        let mut codes = Vec::new();
        for (i, c) in entry.codes.into_iter().enumerate() {
            let at = format!("{at}.codes[{i}]");
            if c.system.trim().is_empty() {
                fail(format!("{at}.system"), "is required".into());
            }
            if c.codes.is_empty() && c.prefixes.is_empty() {
                fail(at.clone(), "give codes, prefixes or both".into());
            }
            if c.codes
                .iter()
                .chain(&c.prefixes)
                .any(|v| v.replace('.', "").trim().is_empty())
            {
                fail(
                    at.clone(),
                    "an empty code or prefix would hold every code".into(),
                );
            }
            codes.push(CodeMatch {
                system: c.system,
                codes: c.codes,
                prefixes: c.prefixes,
            });
        }
        out.push(Reportable {
            name: entry.name,
            resource_types: entry.resource_types,
            codes,
        });
    }
    out
}

/// The consent that says whether the patient was informed: the latest in force that carries the
/// flag (yes or no).
fn informed<'c>(consents: &[&'c Consent], now: OffsetDateTime) -> Option<&'c Consent> {
    consents
        .iter()
        .copied()
        .filter(|c| c.in_force(now) && c.informed.is_some())
        .max_by_key(|c| c.date_time)
}

/// Whether the consents grant this access: some consent (a Part 2 one, if `part2`) permits it and
/// none denies it (deny overrides). Ok with the permitting consents' ids, or Err with the denying
/// ones'.
fn granted(
    consents: &[&Consent],
    access: &Access<'_>,
    part2: bool,
) -> Result<Vec<String>, Vec<String>> {
    let mut permits = Vec::new();
    let mut denies = Vec::new();
    let mut permitted = false;
    for c in consents {
        match c.evaluate(access) {
            Some(Effect::Deny) => denies.extend(c.id.clone()),
            Some(Effect::Permit) if !part2 || c.kind == Kind::Part2 => {
                permitted = true;
                permits.extend(c.id.clone());
            }
            _ => {}
        }
    }
    if permitted && denies.is_empty() {
        Ok(permits)
    } else {
        Err(denies)
    }
}

/// The request's facts, as the decision needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub purpose: Purpose,
    pub recipient: Recipient,
    /// Whether the recipient's participant has a treatment relationship with the patient.
    pub relationship: bool,
    /// Whether the requester declared a medical emergency (42 CFR 2.51) with a break-the-glass
    /// request.
    pub emergency_declared: bool,
}

/// The data's facts: whose it is, what it is, its labels and source, and the family members it
/// names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Data {
    /// The patient's id.
    pub patient: String,
    /// `Type/id`, when known (matched against consents' `provision.data`).
    pub reference: Option<String>,
    pub labels: Labels,
    pub source: SourceFacts,
    /// Other patients the record names as participants (family or couple therapy).
    pub family: Vec<String>,
    /// The participant (Organization id) that sent the data, as intake recorded it in `meta.tag`
    /// ([`crate::labels::source_participant`]). It gets its own data back under the base
    /// category's rules only: the consent categories govern disclosure to others.
    pub source_participant: Option<String>,
}

impl Data {
    /// The facts of a stored resource about `patient`: its labels and source as labelling wrote
    /// them, its reference, and its family members ([`family_members`]).
    pub fn from_resource(resource: &Value, patient: &str) -> Data {
        let ResourceLabels { labels, source } = ResourceLabels::from_resource(resource);
        let reference = match (
            resource.get("resourceType").and_then(Value::as_str),
            resource.get("id").and_then(Value::as_str),
        ) {
            (Some(t), Some(id)) => Some(format!("{t}/{id}")),
            _ => None,
        };
        Data {
            patient: patient.to_owned(),
            reference,
            labels,
            source,
            family: family_members(resource, patient),
            source_participant: crate::labels::source_participant(resource),
        }
    }

    /// The same facts from a stored resource's JSON text, cheaply: only `resourceType`, `id` and
    /// `meta.security`/`meta.tag` are built, the text is read only until the three were seen
    /// ([`head_of`]), and the whole resource is parsed for its family members only when `policy`
    /// could ask about them ([`Policy::needs_family`]).
    pub fn from_json_text(
        text: &str,
        patient: &str,
        policy: &Policy,
    ) -> Result<Data, serde_json::Error> {
        let head = head_of(text)?;
        let (security, tags) = match &head.meta {
            Some(meta) => (
                crate::labels::codings_in(meta.security.as_ref()),
                crate::labels::codings_in(meta.tag.as_ref()),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let labels = crate::labels::Labels::from_codings(security);
        let source = crate::labels::SourceFacts::from_tags(&tags);
        let source_participant = crate::labels::source_participant_in(&tags);
        let family = if policy.needs_family(&labels, &source) {
            family_members(&serde_json::from_str::<Value>(text)?, patient)
        } else {
            Vec::new()
        };
        Ok(Data {
            patient: patient.to_owned(),
            reference: head
                .resource_type
                .zip(head.id)
                .map(|(t, id)| format!("{t}/{id}")),
            labels,
            source,
            family,
            source_participant,
        })
    }
}

/// What [`Data::from_json_text`] reads of a resource's JSON text.
#[derive(Default)]
struct Head {
    resource_type: Option<String>,
    id: Option<String>,
    meta: Option<Meta>,
}

/// The labels and tags of `meta` (the rest of it is scanned, not kept).
#[derive(Deserialize)]
struct Meta {
    security: Option<Value>,
    tag: Option<Value>,
}

/// `resourceType`, `id` and `meta` of a resource's JSON text. The text is read until all three
/// were seen: the exchange's repository stores them first, so the rest of a stored resource,
/// nearly all of it, is not scanned. A text that breaks off before them is an error, as is one
/// that ends badly when they are not all there.
fn head_of(text: &str) -> Result<Head, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    #[derive(Deserialize)]
    #[serde(field_identifier)]
    enum Key {
        #[serde(rename = "resourceType")]
        ResourceType,
        #[serde(rename = "id")]
        Id,
        #[serde(rename = "meta")]
        Meta,
        #[serde(other)]
        Other,
    }

    /// Where the visitor leaves the head, and whether it stopped before the object's end.
    struct Slot(Option<(Head, bool)>);

    struct Seed<'s>(&'s mut Slot);

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(HeadVisitor(self.0))
        }
    }

    struct HeadVisitor<'s>(&'s mut Slot);

    impl<'de> Visitor<'de> for HeadVisitor<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a resource (a JSON object)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut head = Head::default();
            let mut seen = [false; 3];
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::ResourceType => {
                        head.resource_type = map.next_value()?;
                        seen[0] = true;
                    }
                    Key::Id => {
                        head.id = map.next_value()?;
                        seen[1] = true;
                    }
                    Key::Meta => {
                        head.meta = map.next_value()?;
                        seen[2] = true;
                    }
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if seen == [true; 3] {
                    // The rest is not read: serde_json then reports the object unfinished,
                    // which `head_of` expects.
                    self.0 .0 = Some((head, true));
                    return Ok(());
                }
            }
            self.0 .0 = Some((head, false));
            Ok(())
        }
    }

    let mut slot = Slot(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Seed(&mut slot).deserialize(&mut de);
    match (slot.0, read) {
        (Some((head, true)), _) => Ok(head),
        (Some((head, false)), Ok(())) => de.end().map(|()| head),
        (_, Err(e)) => Err(e),
        (None, Ok(())) => Err(serde::de::Error::custom("no resource read")),
    }
}

/// The extension that names a therapy session's participants on any resource, as nested
/// extensions `participant` with a `valueReference` (valid FHIR on a resource that has no
/// participant element of its own, an Observation of a family session).
pub const SESSION_PARTICIPANTS: &str =
    "https://nutmeg.example/fhir/StructureDefinition/session-participants";

/// The patients other than `patient` that a resource names as participants: every `Patient/[id]`
/// reference inside any `participant` element (Appointment.participant.actor, an Encounter or
/// CarePlan participant extension, ...) or inside a [`SESSION_PARTICIPANTS`] extension, in order,
/// without repeats.
pub fn family_members(resource: &Value, patient: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stack = vec![(resource, false)];
    while let Some((value, inside)) = stack.pop() {
        match value {
            Value::Object(object) => {
                let inside = inside
                    || object.get("url").and_then(Value::as_str) == Some(SESSION_PARTICIPANTS);
                if inside {
                    if let Some(reference) = object.get("reference").and_then(Value::as_str) {
                        let reference = reference.split("/_history/").next().unwrap_or(reference);
                        let mut parts = reference.rsplit('/');
                        if let (Some(id), Some("Patient")) = (parts.next(), parts.next()) {
                            if !id.is_empty() && id != patient && !out.iter().any(|o| o == id) {
                                out.push(id.to_owned());
                            }
                        }
                    }
                }
                for (key, child) in object.iter().rev() {
                    stack.push((child, inside || key == "participant"));
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev().map(|i| (i, inside))),
            _ => {}
        }
    }
    out
}

/// Why a decision went the way it did, per category. For the audit trail and the log (ids of
/// consents and patients, never clinical content); not shown to the requester of a withheld resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The category's rule permitted the purpose.
    Permitted {
        category: String,
        purpose: Purpose,
    },
    /// No rule of the category names the purpose.
    NoRule {
        category: String,
        purpose: Purpose,
    },
    /// The category's rule for the purpose is a deny rule.
    RuleDenies {
        category: String,
        purpose: Purpose,
    },
    NoRelationship {
        category: String,
    },
    /// The patient opted out of the exchange.
    OptedOut,
    /// The exchange is opt-in and the patient has not opted in.
    NotOptedIn,
    /// A consent of the patient restricts this access (deny overrides).
    Restricted {
        consent: Option<String>,
    },
    /// The patient was not informed that psychiatric records are shared.
    NotInformed {
        category: String,
    },
    /// No consent of the patient grants this access.
    NoGrant {
        category: String,
    },
    /// A family member named in the record has not consented (or opted out).
    FamilyConsentMissing {
        category: String,
        member: String,
    },
    /// No 42 CFR Part 2 consent grants this access.
    NoPart2Consent {
        category: String,
    },
    /// Break-the-glass on Part 2 data without a declared medical emergency.
    NoEmergencyDeclared {
        category: String,
    },
}

impl Reason {
    /// A short code for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Permitted { .. } => "permitted",
            Reason::NoRule { .. } => "purpose-not-allowed",
            Reason::RuleDenies { .. } => "rule-denies",
            Reason::NoRelationship { .. } => "no-treatment-relationship",
            Reason::OptedOut => "opted-out",
            Reason::NotOptedIn => "not-opted-in",
            Reason::Restricted { .. } => "restricted-by-consent",
            Reason::NotInformed { .. } => "not-informed",
            Reason::NoGrant { .. } => "no-consent",
            Reason::FamilyConsentMissing { .. } => "family-consent-missing",
            Reason::NoPart2Consent { .. } => "no-part2-consent",
            Reason::NoEmergencyDeclared { .. } => "no-emergency-declared",
        }
    }

    /// A sentence for the audit trail.
    pub fn text(&self) -> String {
        match self {
            Reason::Permitted { category, purpose } => {
                format!("{category} data may be disclosed for {purpose}")
            }
            Reason::NoRule { category, purpose } | Reason::RuleDenies { category, purpose } => {
                format!("{category} data is not disclosed for {purpose}")
            }
            Reason::NoRelationship { category } => {
                format!("{category} data needs a treatment relationship")
            }
            Reason::OptedOut => "The patient opted out of the exchange".into(),
            Reason::NotOptedIn => "The patient has not opted in to the exchange".into(),
            Reason::Restricted { consent } => match consent {
                Some(id) => format!("Consent/{id} restricts this disclosure"),
                None => "A consent restricts this disclosure".into(),
            },
            Reason::NotInformed { category } => {
                format!("{category} data needs the patient to have been informed")
            }
            Reason::NoGrant { category } => {
                format!("{category} data needs the patient's written consent naming the recipient")
            }
            Reason::FamilyConsentMissing { category, member } => {
                format!("{category} data names Patient/{member}, who has not consented")
            }
            Reason::NoPart2Consent { category } => {
                format!("{category} data needs a 42 CFR Part 2 consent")
            }
            Reason::NoEmergencyDeclared { category } => {
                format!("{category} data is disclosed in an emergency only when a medical emergency is declared")
            }
        }
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub permit: bool,
    /// For a permit, what the disclosure must carry or cause; for a denial, [`Obligation::Redact`].
    pub obligations: Vec<Obligation>,
    /// The ids of the consents the decision rests on: for a permit, those that allowed it (the
    /// exchange-wide choice, the informed flag, grants); for a denial, those that refused it.
    pub consents_used: Vec<String>,
    /// One reason per category (permits) or per failed condition (denials).
    pub reasons: Vec<Reason>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_head_is_read_up_to_meta_and_no_further() {
        let labelled = r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"2",
            "security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}],
            "tag":[{"system":"x","code":"y"}]},"status":"final"}"#;
        let head = head_of(labelled).expect("read");
        assert_eq!(
            (head.resource_type.as_deref(), head.id.as_deref()),
            (Some("Observation"), Some("o1"))
        );
        let meta = head.meta.expect("meta");
        assert_eq!(crate::labels::codings_in(meta.security.as_ref()).len(), 1);
        // What follows meta is not read: a broken tail does not matter...
        let tail = labelled.replace(r#""status":"final"}"#, r#""status":"fin"#);
        assert!(head_of(&tail).is_ok());
        // ...but it does when meta is not reached, or is last and the text ends badly.
        assert!(head_of(r#"{"resourceType":"Observation","id":"o1","status":"fin"#).is_err());
        assert!(head_of(r#"{"resourceType":"Observation","id":"o1"} trailing"#).is_err());
        assert!(head_of("[1, 2]").is_err());
        // In any order, with escapes in the keys it skips.
        let late = r#"{"status":"final","a\"b":{"c":[1,{"d":null}]},"id":"o2","meta":{},"resourceType":"Observation"}"#;
        let head = head_of(late).expect("read");
        assert_eq!(head.id.as_deref(), Some("o2"));
        let none = head_of(r#"{"resourceType":"Patient"}"#).expect("no meta");
        assert!(none.meta.is_none() && none.id.is_none());
    }

    #[test]
    fn connecticut_parses() {
        let policy = Policy::from_toml(CONNECTICUT).expect("the shipped policy parses");
        assert_eq!(policy.model, Model::OptOut);
        let names: Vec<&str> = policy.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "normal",
                "psychiatric",
                "marriage-and-family-therapy",
                "part2",
                "psychotherapy-notes",
                "very-restricted"
            ]
        );
        assert_eq!(Policy::connecticut(), policy);
        let part2 = &policy.categories[3].rules[0];
        assert!(
            matches!(&part2.obligations[1], Obligation::AttachNotice { text, .. } if text.starts_with("This record which has been disclosed to you is protected by Federal confidentiality rules (42 CFR part 2). These rules"))
        );
    }

    #[test]
    fn reportable_data_is_kept_for_public_health_unless_the_policy_never_gives_it() {
        let policy = Policy::connecticut();
        let names: Vec<&str> = policy.reportable.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["immunizations", "reportable-conditions"]);
        let condition = |system: &str, code: &str, security: Value, tag: Value| {
            json!({"resourceType": "Condition",
                "meta": {"security": security, "tag": tag},
                "code": {"coding": [{"system": system, "code": code}]},
                "subject": {"reference": "Patient/p1"}})
        };
        let icd = "http://hl7.org/fhir/sid/icd-10-cm";
        let none = json!([]);
        // Every Immunization, whatever it carries.
        let shot = json!({"resourceType": "Immunization", "status": "completed",
            "patient": {"reference": "Patient/p1"}});
        assert_eq!(policy.kept_for_public_health(&shot), Some("immunizations"));
        // A condition by prefix (tuberculosis A15.0), by exact SNOMED CT code, a lab by LOINC.
        let tb = condition(icd, "A15.0", none.clone(), none.clone());
        assert_eq!(
            policy.kept_for_public_health(&tb),
            Some("reportable-conditions")
        );
        let measles = condition(
            "http://snomed.info/sct",
            "14189004",
            none.clone(),
            none.clone(),
        );
        assert!(policy.kept_for_public_health(&measles).is_some());
        let lead = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "5671-3"}]},
            "subject": {"reference": "Patient/p1"}});
        assert!(policy.kept_for_public_health(&lead).is_some());
        // ICD-10-CM without its dot, against a dotted prefix (A04.3, E. coli).
        assert!(policy
            .kept_for_public_health(&condition(icd, "A043", none.clone(), none.clone()))
            .is_some());
        assert!(policy
            .kept_for_public_health(&condition(icd, "A150", none.clone(), none.clone()))
            .is_some());
        // Not reportable: another code, a code in another system, a prefix of a listed prefix,
        // a type the entry does not name.
        assert!(policy
            .kept_for_public_health(&condition(icd, "F32.9", none.clone(), none.clone()))
            .is_none());
        assert!(policy
            .kept_for_public_health(&condition(
                "http://snomed.info/sct",
                "A15.0",
                none.clone(),
                none.clone()
            ))
            .is_none());
        assert!(policy
            .kept_for_public_health(&condition(icd, "A0", none.clone(), none.clone()))
            .is_none());
        let mut procedure = tb.clone();
        procedure["resourceType"] = json!("Procedure");
        assert!(policy.kept_for_public_health(&procedure).is_none());
        // Reportable HIV data is kept (normal data for public health under this policy)...
        let hiv = condition(
            icd,
            "B20",
            json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"},
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]),
            none.clone(),
        );
        assert!(policy.kept_for_public_health(&hiv).is_some());
        // ...but hepatitis C in a Part 2 record is not: public health never receives it here.
        let part2 = condition(
            icd,
            "B18.2",
            json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"}]),
            none.clone(),
        );
        assert!(policy.kept_for_public_health(&part2).is_none());
        let from_counselor = condition(
            icd,
            "B18.2",
            none.clone(),
            json!([{"system": crate::codes::LICENCE_TYPE_SYSTEM, "code": "LADC"}]),
        );
        assert!(policy.kept_for_public_health(&from_counselor).is_none());
    }

    #[test]
    fn reportable_entries_are_checked() {
        let base = "model = \"opt-out\"\n[[category]]\nname = \"normal\"\n";
        let errors = Policy::from_toml(&format!(
            "{base}
            [[reportable]]
            name = \"a\"
            resource_types = [\"Immunization\", \"Patient\", \"obs\"]
            [[reportable]]
            name = \"a\"
            [[reportable.codes]]
            system = \"\"
            [[reportable.codes]]
            system = \"http://loinc.org\"
            prefixes = [\".\"]
            "
        ))
        .expect_err("bad entries");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "reportable[0].resource_types[1]",
                "reportable[0].resource_types[2]",
                "reportable[1].name",
                "reportable[1].resource_types",
                "reportable[1].codes[0].system",
                "reportable[1].codes[0]",
                "reportable[1].codes[1]",
            ]
        );
        // Without entries nothing is kept for public health.
        let plain = Policy::from_toml(base).expect("a policy without reportable data");
        let shot = json!({"resourceType": "Immunization"});
        assert!(plain.kept_for_public_health(&shot).is_none());
    }

    #[test]
    fn every_problem_is_named() {
        let text = r#"
            model = "maybe"
            [notices]
            a = "x"
            [[category]]
            name = "x"
            [category.when]
            labels = ["NOPE"]
            licences = ["wizard"]
            [[category.rule]]
            purposes = ["TREAT", "FUN"]
            effect = "perhaps"
            honours = "some"
            requires = ["luck"]
            obligations = ["attach-notice b", "dance", "add-label NORDSCLCD"]
            [[category.rule]]
            purposes = []
            effect = "deny"
            requires = ["grant"]
            [[category.rule]]
            purposes = ["TREAT"]
            [[category]]
            name = "x"
            [category.when]
        "#;
        let errors = Policy::from_toml(text).expect_err("bad");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "model",
                "category[0].when.labels[0]",
                "category[0].when.licences[0]",
                "category[0].rule[0].purposes[1]",
                "category[0].rule[0].effect",
                "category[0].rule[0].honours",
                "category[0].rule[0].requires[0]",
                "category[0].rule[0].obligations[0]",
                "category[0].rule[0].obligations[1]",
                "category[0].rule[1].purposes",
                "category[0].rule[1]",
                "category[0].rule[2].purposes[0]",
                "category[1].name",
                "category[1].when",
                "category",
            ]
        );
        assert_eq!(
            Policy::from_toml("model = ").map_err(|e| e[0].path.clone()),
            Err("toml".to_owned())
        );
    }

    #[test]
    fn family_members_are_patients_named_as_participants() {
        let appointment = json!({"resourceType": "Appointment", "id": "a1", "participant": [
            {"actor": {"reference": "Patient/p1"}},
            {"actor": {"reference": "Patient/p2"}},
            {"actor": {"reference": "Practitioner/t1"}},
            {"actor": {"reference": "https://x.example/fhir/Patient/p3/_history/1"}},
            {"actor": {"reference": "Patient/p2"}}
        ], "subject": {"reference": "Patient/p9"}});
        assert_eq!(family_members(&appointment, "p1"), ["p2", "p3"]);
        let encounter =
            json!({"resourceType": "Encounter", "subject": {"reference": "Patient/p1"}});
        assert!(family_members(&encounter, "p1").is_empty());
        let data = Data::from_resource(&appointment, "p1");
        assert_eq!(data.reference.as_deref(), Some("Appointment/a1"));
        assert_eq!(data.family, ["p2", "p3"]);
    }
}
