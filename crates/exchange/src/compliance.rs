//! The mandate's compliance on real facts: the licensing board's roster read from the store, each
//! licensee matched to an application or registry participant (`onboard::roster::Matcher`, the
//! operator's decisions overriding it), the facts the mandate needs built from what the exchange
//! knows of them (the application's received date, its path, its secure-messaging test message)
//! and the exemptions the operator recorded, and `onboard::mandate::Mandate::evaluate` deciding
//! each status (through `onboard::compliance::report`). Also a provider's own lookup by licence
//! number and NPI, both required and both matching one licensee.
//!
//! Where the applicants come from: [`candidates`], the connection applications
//! (`Store::onboarding_facts`) and the registry's participants that no application describes.

use std::collections::{BTreeMap, HashMap};

use onboard::application::Licence;
use onboard::compliance::{months, over_time, Counts, Report};
use onboard::mandate::{Facts, Mandate, Must, Status};
use onboard::roster::{self, Licensee, Matched, MatchedBy, Matcher};
use onboard::{format_date, parse_date, Date};
use store::{LicenceKey, LicenseeExemption, MatchDecision, Store, StoreError, StoredLicensee};

use crate::access::Requester;
use crate::participants::{Kind, Participant};
use crate::repository::{Error, Repository};

/// What the exchange knows about one applicant (an application or a registry participant), for
/// matching licensees and for the mandate's facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// The participant's id, or the application's where it has no participant yet.
    pub id: String,
    pub legal_name: String,
    pub npi: Option<String>,
    pub licences: Vec<Licence>,
    pub address_line: String,
    pub postcode: String,
    /// When the application to connect was received.
    pub received: Option<Date>,
    /// `Some(true)`: the EHR path; `Some(false)`: the secure-messaging path; `None`: not known.
    pub ehr_path: Option<bool>,
    /// When a secure test message was exchanged (the secure-messaging path's step).
    pub test_message: Option<Date>,
    /// When the participant went live.
    pub live: Option<Date>,
    /// The catalog product (its id) the applicant uses, if any.
    pub ehr_product: Option<String>,
}

/// Everyone a licensee may be: every connection application (`Store::onboarding_facts`), under
/// its participant's id once it has one, and the registry's participants no application
/// describes (registered by hand, with no application dates on file).
pub async fn candidates(repo: &Repository) -> Result<Vec<Candidate>, Error> {
    let applications: Vec<Candidate> = repo
        .store()
        .onboarding_facts()
        .await?
        .iter()
        .map(application_candidate)
        .collect();
    let mut out = registry_candidates(repo).await?;
    out.retain(|p| applications.iter().all(|a| a.id != p.id));
    // Two applications of one participant (a re-application) are one candidate: the earliest
    // received counts, the steps of any.
    let mut merged: Vec<Candidate> = Vec::with_capacity(applications.len());
    for a in applications {
        match merged.iter_mut().find(|m| m.id == a.id) {
            Some(m) => {
                m.received = earliest(m.received, a.received);
                m.test_message = earliest(m.test_message, a.test_message);
                m.live = earliest(m.live, a.live);
                for l in a.licences {
                    if !m.licences.contains(&l) {
                        m.licences.push(l);
                    }
                }
            }
            None => merged.push(a),
        }
    }
    out.extend(merged);
    Ok(out)
}

fn earliest(a: Option<Date>, b: Option<Date>) -> Option<Date> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The UTC day of a time in milliseconds since the Unix epoch.
fn day_of(ms: i64) -> Option<Date> {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .map(|t| t.date())
}

/// An application as a candidate: its licences, NPI, name and address for matching; received,
/// path and the secure-messaging test message for the mandate's facts.
pub fn application_candidate(f: &store::OnboardingFacts) -> Candidate {
    Candidate {
        id: f
            .participant_id
            .clone()
            .unwrap_or_else(|| f.application_id.clone()),
        legal_name: f.legal_name.clone(),
        npi: (!f.npi.is_empty()).then(|| f.npi.clone()),
        licences: f
            .licences
            .iter()
            .map(|l| Licence {
                kind: l.licence_type.clone(),
                number: onboard::application::licence_number(&l.number),
                state: l.state.clone(),
            })
            .collect(),
        address_line: f.address_line.clone(),
        postcode: f.postcode.clone(),
        received: day_of(f.received),
        ehr_path: match f.path.as_str() {
            "ehr" => Some(true),
            "secure-messaging" => Some(false),
            _ => None,
        },
        test_message: f.test_message_exchanged.and_then(day_of),
        live: f.live.and_then(day_of),
        ehr_product: (f.ehr_kind == "catalog").then(|| f.ehr_value.clone()),
    }
}

/// The registry's participants as candidates: their NPI, their licence (a hospital's or
/// laboratory's under that licence type) and name. The registry keeps no application dates, so
/// these carry none: a licensee matched only to one is not compliant until an application is
/// on file.
pub async fn registry_candidates(repo: &Repository) -> Result<Vec<Candidate>, Error> {
    let who = Requester::system("compliance");
    Ok(repo
        .participants(&who, None)
        .await?
        .iter()
        .map(candidate_of)
        .collect())
}

fn candidate_of(p: &Participant) -> Candidate {
    let kind = match p.kind {
        Some(Kind::Hospital) => Some("hospital"),
        Some(Kind::Lab) => Some("laboratory"),
        Some(Kind::Clinic) => Some("clinic"),
        _ => None,
    };
    Candidate {
        id: p.id.clone(),
        legal_name: p.name.clone(),
        npi: p.npi.clone(),
        licences: match (&p.licence, kind) {
            (Some(l), Some(kind)) => vec![Licence {
                kind: kind.to_string(),
                number: onboard::application::licence_number(&l.number),
                state: l.state.clone(),
            }],
            _ => Vec::new(),
        },
        ehr_product: p.ehr.clone(),
        ..Candidate::default()
    }
}

/// The roster as the report sees it: licensee `i` is `licensees[i]`, stored under `keys[i]`,
/// matched as `matched[i]`, with the facts `facts[i]`.
#[derive(Debug, Default)]
pub struct Roster {
    pub keys: Vec<LicenceKey>,
    pub licensees: Vec<Licensee>,
    pub matched: Vec<Matched>,
    pub facts: Vec<Facts>,
    /// The import each licensee came from.
    pub imports: Vec<String>,
    /// The exemptions recorded for each licensee.
    pub exemptions: Vec<Vec<LicenseeExemption>>,
    /// The operator's decision on each licensee's match, if any.
    pub decisions: Vec<Option<MatchDecision>>,
    /// The candidates, by id.
    pub candidates: HashMap<String, Candidate>,
}

/// A stored licensee as the pure core reads them.
pub fn licensee_of(l: &StoredLicensee) -> Licensee {
    Licensee {
        line: usize::try_from(l.line).unwrap_or(0),
        name: l.name.clone(),
        licence: Licence {
            kind: l.licence.licence_type.clone(),
            number: l.licence.licence_number.clone(),
            state: l.licence.licence_state.clone(),
        },
        npi: l.npi.clone(),
        status: l.status.clone(),
        address_line: l.address_line.clone(),
        city: l.city.clone(),
        postcode: l.postcode.clone(),
        county: l.county.clone(),
    }
}

impl Roster {
    /// The whole current roster from the store, matched against `candidates`.
    pub async fn load(store: &Store, candidates: Vec<Candidate>) -> Result<Roster, StoreError> {
        let stored = store.licensees().await?;
        let decisions = store.licensee_match_decisions().await?;
        let exemptions = store.licensee_exemptions().await?;
        Ok(Roster::build(stored, candidates, decisions, exemptions))
    }

    /// The licensees who hold `licence_number` and whose NPI is `npi` (both required: a licence
    /// number alone finds nobody), matched against `candidates`.
    pub async fn lookup(
        store: &Store,
        candidates: Vec<Candidate>,
        licence_number: &str,
        npi: &str,
    ) -> Result<Roster, StoreError> {
        let number = onboard::application::licence_number(licence_number);
        let npi: String = npi.chars().filter(|c| !c.is_whitespace()).collect();
        if number.is_empty() || npi.is_empty() {
            return Ok(Roster::default());
        }
        let stored: Vec<StoredLicensee> = store
            .licensees_by_number(&number)
            .await?
            .into_iter()
            .filter(|l| l.npi.as_deref() == Some(npi.as_str()))
            .collect();
        if stored.is_empty() {
            return Ok(Roster::default());
        }
        let keys: Vec<&LicenceKey> = stored.iter().map(|l| &l.licence).collect();
        let decisions = store
            .licensee_match_decisions()
            .await?
            .into_iter()
            .filter(|d| keys.contains(&&d.licence))
            .collect();
        let exemptions = store
            .licensee_exemptions()
            .await?
            .into_iter()
            .filter(|x| keys.contains(&&x.licence))
            .collect();
        Ok(Roster::build(stored, candidates, decisions, exemptions))
    }

    /// Matches and facts for `stored`, given the operator's decisions and exemptions.
    pub fn build(
        stored: Vec<StoredLicensee>,
        candidates: Vec<Candidate>,
        decisions: Vec<MatchDecision>,
        exemptions: Vec<LicenseeExemption>,
    ) -> Roster {
        let pure: Vec<roster::Candidate> = candidates
            .iter()
            .map(|c| roster::Candidate {
                id: c.id.clone(),
                name: c.legal_name.clone(),
                npi: c.npi.clone(),
                licences: c.licences.clone(),
                address_line: c.address_line.clone(),
                postcode: c.postcode.clone(),
            })
            .collect();
        let matcher = Matcher::new(&pure);
        let mut decided: HashMap<LicenceKey, MatchDecision> = decisions
            .into_iter()
            .map(|d| (d.licence.clone(), d))
            .collect();
        let mut exempt: HashMap<LicenceKey, Vec<LicenseeExemption>> = HashMap::new();
        for x in exemptions {
            exempt.entry(x.licence.clone()).or_default().push(x);
        }
        let candidates: HashMap<String, Candidate> =
            candidates.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut out = Roster {
            candidates,
            ..Roster::default()
        };
        for s in stored {
            let licensee = licensee_of(&s);
            let decision = decided.remove(&s.licence);
            let matched = match &decision {
                Some(MatchDecision {
                    participant: Some(p),
                    ..
                }) => Matched::One {
                    participant: p.clone(),
                    by: MatchedBy::Operator,
                },
                Some(_) => Matched::None,
                None => matcher.find(&licensee),
            };
            let exemptions = exempt.remove(&s.licence).unwrap_or_default();
            let mut facts = Facts {
                licence_type: licensee.licence.kind.clone(),
                exemptions: exemptions
                    .iter()
                    .filter_map(|x| parse_date(&x.since).map(|d| (x.exemption.clone(), d)))
                    .collect(),
                ..Facts::default()
            };
            if let Matched::One { participant, .. } = &matched {
                if let Some(c) = out.candidates.get(participant) {
                    facts.ehr_capable = c.ehr_path;
                    facts.applied = c.received;
                    facts.secure_messaging = c.test_message;
                }
            }
            out.keys.push(s.licence);
            out.imports.push(s.import_id);
            out.licensees.push(licensee);
            out.matched.push(matched);
            out.facts.push(facts);
            out.exemptions.push(exemptions);
            out.decisions.push(decision);
        }
        out
    }

    /// The report on `as_of` (`onboard::compliance::report`).
    pub fn report<'a>(&'a self, mandate: &Mandate, as_of: Date) -> Report<'a> {
        onboard::compliance::report(mandate, &self.licensees, &self.matched, &self.facts, as_of)
    }

    /// The counts on the first of each month from a year before the mandate's first deadline
    /// (at most ten years back) to `as_of`.
    pub fn over_time(&self, mandate: &Mandate, as_of: Date) -> Vec<(Date, Counts)> {
        let first = mandate
            .requirements
            .iter()
            .map(|r| r.deadline())
            .min()
            .unwrap_or(as_of);
        let from = first
            .replace_year(first.year() - 1)
            .unwrap_or(first)
            .max(as_of.replace_year(as_of.year() - 10).unwrap_or(as_of))
            .min(as_of);
        over_time(mandate, &self.licensees, &self.facts, &months(from, as_of))
    }

    /// The licensees whose match is ambiguous (and the operator has not decided), with the
    /// candidates they fit and by which rule.
    pub fn ambiguous(&self) -> Vec<(usize, &[String], MatchedBy)> {
        self.matched
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m {
                Matched::Ambiguous { participants, by } => Some((i, participants.as_slice(), *by)),
                _ => None,
            })
            .collect()
    }
}

/// What a provider reads about themselves: what the law asks, what they have done, what is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    pub asks: String,
    pub done: Vec<String>,
    pub left: String,
    pub status: String,
}

/// Licensee `i`'s status in plain words (for the provider's own lookup and the operator's list).
pub fn explain(roster: &Roster, i: usize, mandate: &Mandate, as_of: Date) -> Explained {
    let l = &roster.licensees[i];
    let facts = &roster.facts[i];
    let status = mandate.evaluate(facts, as_of);
    let asks = if !l.active() {
        format!(
            "The licensing board lists your licence as {}; the mandate applies to active licences.",
            l.status
        )
    } else {
        match mandate.requirement_for(&l.licence.kind, facts.ehr_capable) {
            Some((r, must, deadline)) => {
                let what = if must == Must::ApplyOrSecureMessaging || r.description.is_empty() {
                    format!("to {}", must.missing())
                } else {
                    format!("this: {}", r.description.trim_end_matches('.'))
                };
                format!("The law asks you {what}, by {}.", format_date(deadline))
            }
            None => "The mandate asks nothing of your licence type.".to_string(),
        }
    };
    let mut done = Vec::new();
    match &roster.matched[i] {
        Matched::One { participant, .. } => match roster.candidates.get(participant) {
            Some(c) => {
                match c.received {
                    Some(d) => done.push(format!(
                        "Your application to connect was received on {}.",
                        format_date(d)
                    )),
                    None => done.push(
                        "You are registered with the exchange, but it has no application to \
                         connect from you on file."
                            .to_string(),
                    ),
                }
                match c.ehr_path {
                    Some(true) => done.push("You are on the EHR path.".to_string()),
                    Some(false) => done.push("You are on the secure-messaging path.".to_string()),
                    None => {}
                }
                if let Some(d) = c.test_message {
                    done.push(format!(
                        "You sent and received a secure test message on {}.",
                        format_date(d)
                    ));
                }
                if let Some(d) = c.live {
                    done.push(format!("You went live on {}.", format_date(d)));
                }
            }
            None => done.push(
                "The exchange matched your licence to an application it no longer holds; \
                 please contact the exchange."
                    .to_string(),
            ),
        },
        Matched::Ambiguous { .. } => done.push(
            "The exchange is still checking which application is yours; it will decide shortly."
                .to_string(),
        ),
        Matched::None => done.push("The exchange has no application to connect from you.".into()),
    }
    for x in &roster.exemptions[i] {
        let why = mandate
            .exemption(&x.exemption)
            .map(|e| e.description.clone())
            .unwrap_or_else(|| x.exemption.clone());
        done.push(format!("Exemption recorded since {}: you {why}.", x.since));
    }
    let left = match &status {
        Status::NotYetCompliant {
            must,
            deadline,
            overdue,
            ..
        } => {
            if *overdue {
                format!(
                    "You still need to {}. The deadline of {} has passed: do it now.",
                    must.missing(),
                    format_date(*deadline)
                )
            } else {
                format!(
                    "You still need to {}, by {}.",
                    must.missing(),
                    format_date(*deadline)
                )
            }
        }
        _ => "Nothing: the mandate asks nothing more of you.".to_string(),
    };
    let status = if l.active() {
        status.explain(mandate)
    } else {
        "Not counted: your licence is not active.".to_string()
    };
    Explained {
        asks,
        done,
        left,
        status,
    }
}

/// How many candidates use each catalog product (by id), for the catalog's tally.
pub fn product_usage(candidates: &[Candidate]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in candidates.iter().filter_map(|c| c.ehr_product.as_deref()) {
        *out.entry(id.to_string()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn stored(
        kind: &str,
        number: &str,
        name: &str,
        npi: Option<&str>,
        line: &str,
    ) -> StoredLicensee {
        StoredLicensee {
            licence: LicenceKey {
                licence_type: kind.into(),
                licence_number: number.into(),
                licence_state: "CT".into(),
            },
            import_id: "i1".into(),
            line: 2,
            name: name.into(),
            npi: npi.map(str::to_string),
            status: "active".into(),
            address_line: line.into(),
            city: "Hartford".into(),
            postcode: "06103".into(),
            county: "Hartford".into(),
        }
    }

    fn applicant(
        id: &str,
        name: &str,
        npi: Option<&str>,
        licence: Option<(&str, &str)>,
        line: &str,
    ) -> Candidate {
        Candidate {
            id: id.into(),
            legal_name: name.into(),
            npi: npi.map(str::to_string),
            licences: licence
                .map(|(kind, number)| {
                    vec![Licence {
                        kind: kind.into(),
                        number: number.into(),
                        state: "CT".into(),
                    }]
                })
                .unwrap_or_default(),
            address_line: line.into(),
            postcode: "06103".into(),
            received: Some(date!(2023 - 01 - 10)),
            ehr_path: Some(false),
            test_message: Some(date!(2023 - 02 - 01)),
            ..Candidate::default()
        }
    }

    #[test]
    fn licensees_are_matched_by_licence_npi_name_and_address_and_the_operator_decides_the_rest() {
        let licensees = vec![
            stored("lmft", "LMFT1", "Jane Doe", None, "1 Elm St"),
            stored("lcsw", "LCSW2", "Sam Roe", Some("1234567893"), ""),
            stored("lpc", "LPC3", "Ann Poe", None, "12 Main Street"),
            stored("lpc", "LPC4", "Twin Two", None, "5 Oak Ave"),
            stored("lpc", "LPC5", "Nobody Known", None, "9 Pine Rd"),
            stored("lpc", "LPC6", "Twin Two", None, "5 Oak Ave"),
        ];
        let candidates = vec![
            applicant("a-jane", "Someone Else", None, Some(("lmft", "lmft-1")), ""),
            applicant("a-sam", "Samuel", Some("1234567893"), None, ""),
            applicant("a-ann", "Doe-less, Poe Ann", None, None, "12 Main St"),
            applicant("a-ann-2", "Ann Poe", None, None, "12 Main St."),
            applicant("a-twin-1", "Twin Two", None, None, "5 Oak Avenue"),
            applicant("a-twin-2", "Two Twin", None, None, "5 Oak Ave"),
        ];
        let decisions = vec![MatchDecision {
            licence: licensees[5].licence.clone(),
            participant: Some("a-twin-2".into()),
            decided_by: "op".into(),
            reason: "checked by phone".into(),
            decided: 1,
        }];
        let exemptions = vec![LicenseeExemption {
            licence: licensees[4].licence.clone(),
            exemption: "employee-of-a-connected-organization".into(),
            since: "2022-01-01".into(),
            reason: "works for Hartford General".into(),
            recorded_by: "op".into(),
            recorded: 1,
        }];
        let roster = Roster::build(licensees, candidates, decisions, exemptions);
        let one = |i: usize| match &roster.matched[i] {
            Matched::One { participant, by } => (participant.as_str(), by.code()),
            other => panic!("{i}: {other:?}"),
        };
        assert_eq!(one(0), ("a-jane", "licence"));
        assert_eq!(one(1), ("a-sam", "npi"));
        assert_eq!(one(2), ("a-ann-2", "name-and-address"));
        assert!(
            matches!(&roster.matched[3], Matched::Ambiguous { participants, by: MatchedBy::NameAndAddress } if participants.len() == 2)
        );
        assert_eq!(roster.matched[4], Matched::None);
        assert_eq!(one(5), ("a-twin-2", "operator"));
        assert_eq!(roster.ambiguous().len(), 1);
        // The facts come from the matched application and the recorded exemptions.
        assert_eq!(roster.facts[1].applied, Some(date!(2023 - 01 - 10)));
        assert_eq!(roster.facts[1].ehr_capable, Some(false));
        assert_eq!(
            roster.facts[1].secure_messaging,
            Some(date!(2023 - 02 - 01))
        );
        assert_eq!(
            roster.facts[3].applied, None,
            "ambiguous: no facts borrowed"
        );
        let mandate = Mandate::connecticut();
        let report = roster.report(&mandate, date!(2023 - 06 - 01));
        let codes: Vec<&str> = report.lines.iter().map(|l| l.status.code()).collect();
        assert_eq!(
            codes,
            vec![
                "compliant",
                "compliant",
                "compliant",
                "not-yet-compliant",
                "exempt",
                "compliant"
            ]
        );
        let e = explain(&roster, 4, &mandate, date!(2023 - 06 - 01));
        assert!(
            e.status.contains("organization connected to the exchange"),
            "{e:?}"
        );
        assert!(
            e.done.iter().any(|d| d.contains("since 2022-01-01")),
            "{e:?}"
        );
        let e = explain(&roster, 3, &mandate, date!(2023 - 06 - 01));
        assert!(e.left.contains("has passed"), "{e:?}");
        assert!(e.done[0].contains("still checking"), "{e:?}");
    }
}
