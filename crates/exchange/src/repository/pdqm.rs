//! IHE PDQm (ITI-78, Mobile Patient Demographics Query): enterprise-wide patient search.
//!
//! The PDQm supplier's base is `[fhir base]/pdqm`: `GET [base]/pdqm/Patient?...` (and `POST
//! .../Patient/_search` with a form body) searches every participant's Patients by the PDQm
//! parameters (`_id`, `active`, `family`, `given`, `identifier`, `telecom`, `birthdate`, `address`,
//! `address-city`, `-country`, `-postalcode`, `-state`, `gender`, `mothersMaidenName`; also `name`,
//! `phone` and `email`; `:exact` on the string ones; `_count` and `_page`), and
//! `GET [base]/pdqm/Patient/[id]` retrieves one. Any other parameter is refused (400) rather than
//! ignored, so that a misspelt criterion never widens a demographics query.
//!
//! What an MPI answers: each Patient that matches (`search.mode = match`, `Bundle.total` counts
//! them) comes with the other source records of the same enterprise identity (`include`), and every
//! Patient returned carries a `link` of type `seealso` to each other record of its person that is
//! in the answer. The source records stay as their sources sent them (their own `link`s kept);
//! no merged "golden" record is made up. When the consumer names identifier domains
//! (`identifier=system|`, PDQm's "which domains are returned"), the Patients returned keep only
//! identifiers of those domains.
//!
//! Through the decision point and audited: the request is authorised as a Patient search, every
//! Patient (match or linked record) passes `decide` before anything about it is answered, links
//! point only at Patients in the answer, the total counts only what the caller may see, and the
//! read is recorded with the patients disclosed. An opted-out person is answered exactly as one
//! nobody ever registered.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use store::{SearchOptions, Stored};

use super::disclosure::Disclosed;
use super::support::{check_id, encode_query, new_id, now_millis, parse_stored};
use super::{Error, Repository, Result};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::{Issue, IssueType};

/// The extension PDQm's `mothersMaidenName` searches (FHIR's `patient-mothersMaidenName`).
pub const MOTHERS_MAIDEN_NAME: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";

/// The search parameters the PDQm supplier answers (besides `mothersMaidenName`, which the
/// repository's search does not index and is filtered here).
pub const PDQM_PARAMS: &[&str] = &[
    "_id",
    "active",
    "family",
    "given",
    "name",
    "identifier",
    "telecom",
    "phone",
    "email",
    "birthdate",
    "address",
    "address-city",
    "address-country",
    "address-postalcode",
    "address-state",
    "gender",
];

/// The page size used to count the matches a caller may see.
const TOTAL_PAGE: usize = 500;

/// A PDQm query taken apart: what the store searches, what is filtered here, which identifier
/// domains the answer keeps.
struct Request {
    /// Parameters for the repository's search (PDQm's, `_count`, `_page`).
    store_params: Vec<(String, String)>,
    /// `mothersMaidenName` criteria, ANDed; each a list of ORed (value, exact).
    maiden: Vec<Vec<(String, bool)>>,
    /// Identifier systems named without a value (`identifier=system|`).
    domains: BTreeSet<String>,
}

impl Request {
    fn parse(params: &[(String, String)]) -> Result<Request> {
        let mut request = Request {
            store_params: Vec::new(),
            maiden: Vec::new(),
            domains: BTreeSet::new(),
        };
        let mut issues = Vec::new();
        let mut criteria = 0;
        for (name, value) in params {
            let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
            match base {
                "mothersMaidenName" => {
                    let exact = match modifier {
                        "" => false,
                        "exact" => true,
                        _ => {
                            issues.push(problem(format!(
                                "mothersMaidenName takes no modifier but :exact (got :{modifier})"
                            )));
                            continue;
                        }
                    };
                    let values: Vec<(String, bool)> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| (v.to_string(), exact))
                        .collect();
                    if values.is_empty() {
                        issues.push(problem("mothersMaidenName needs a value".into()));
                        continue;
                    }
                    request.maiden.push(values);
                    criteria += 1;
                }
                _ if PDQM_PARAMS.contains(&base) => {
                    if base == "identifier" {
                        for alternative in value.split(',') {
                            if let Some(system) = alternative.strip_suffix('|') {
                                if !system.is_empty() && !system.contains('|') {
                                    request.domains.insert(system.to_string());
                                }
                            }
                        }
                    }
                    request.store_params.push((name.clone(), value.clone()));
                    criteria += 1;
                }
                "_count" | "_page" if modifier.is_empty() => {
                    request.store_params.push((name.clone(), value.clone()));
                }
                _ => issues.push(problem(format!(
                    "'{name}' is not a parameter of the PDQm patient search (it answers {}, \
                     mothersMaidenName, _count and _page)",
                    PDQM_PARAMS.join(", ")
                ))),
            }
        }
        if issues.is_empty() && criteria == 0 {
            issues.push(problem(
                "a PDQm query needs at least one demographic criterion".into(),
            ));
        }
        if issues.is_empty() {
            Ok(request)
        } else {
            Err(Error::Invalid(issues))
        }
    }

    /// Whether a stored Patient meets the criteria filtered here (the mother's maiden name: the
    /// string search's starts-with on the normal form, or `:exact`).
    fn keeps(&self, stored: &Stored) -> Result<bool> {
        if self.maiden.is_empty() {
            return Ok(true);
        }
        let patient = parse_stored(stored)?;
        let names: Vec<&str> = patient["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["url"] == MOTHERS_MAIDEN_NAME)
            .filter_map(|e| e["valueString"].as_str())
            .collect();
        Ok(self.maiden.iter().all(|alternatives| {
            alternatives.iter().any(|(wanted, exact)| {
                names.iter().any(|name| {
                    if *exact {
                        name == wanted
                    } else {
                        fhir::search::normalize::normalize(name)
                            .starts_with(&fhir::search::normalize::normalize(wanted))
                    }
                })
            })
        }))
    }
}

fn problem(message: String) -> Issue {
    Issue::error(IssueType::Invalid, message)
}

/// One Patient of the answer.
struct Shown {
    stored: Stored,
    mode: &'static str,
    /// The enterprise identity's records (the person's Patients), itself included.
    person: Vec<String>,
}

impl Repository {
    /// `GET [base]/pdqm/Patient?...` (see the module's documentation): a searchset Bundle.
    pub async fn pdqm_search(&self, who: &Requester, params: &[(String, String)]) -> Result<Value> {
        self.authorize(who, Access::Search, Some("Patient"), Interaction::Search)
            .await?;
        let request = Request::parse(params)?;
        let parsed = fhir::search::parse::parse(Some("Patient"), &request.store_params, true)
            .map_err(Error::Invalid)?;
        let query = parsed.query;
        let count = self.page_size(query.count);
        let page = self
            .store
            .search(
                &query,
                &SearchOptions {
                    count,
                    max_includes: 0,
                },
            )
            .await?;
        let mut disclosed = Disclosed::new();
        let mut matched = Vec::new();
        for stored in page.matches {
            if !stored.deleted
                && request.keeps(&stored)?
                && self.admit(who, &stored, &mut disclosed).await?
            {
                matched.push(stored);
            }
        }
        let entries = self
            .with_persons(who, matched, &request, &mut disclosed)
            .await?;
        let total = self.pdqm_total(who, &query, &request).await?;
        let path = format!("{}/pdqm/Patient", self.config.base_url);
        let links = self.links(
            &path,
            params,
            page.next.as_deref(),
            page.previous.as_deref(),
        );
        self.record_disclosure(
            who,
            Interaction::Search,
            Some(format!("pdqm/Patient?{}", encode_query(params))),
            disclosed,
        )
        .await?;
        Ok(json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": { "lastUpdated": fhir::search::datetime::format_instant(now_millis()) },
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": entries,
        }))
    }

    /// `GET [base]/pdqm/Patient/[id]` (ITI-78's retrieve): the Patient with its `seealso` links to
    /// the other records of its person that the caller may see; 404 when it does not exist or the
    /// caller may not see it.
    pub async fn pdqm_read(&self, who: &Requester, id: &str) -> Result<Value> {
        check_id(id)?;
        self.authorize(who, Access::Read, Some("Patient"), Interaction::Read)
            .await?;
        let mut disclosed = Disclosed::new();
        let found = match self.store.read("Patient", id).await? {
            Some(stored) if !stored.deleted && self.admit(who, &stored, &mut disclosed).await? => {
                Some(stored)
            }
            _ => None,
        };
        let request = Request {
            store_params: Vec::new(),
            maiden: Vec::new(),
            domains: BTreeSet::new(),
        };
        let answer = match found {
            Some(stored) => {
                let mut shown = self
                    .with_persons(who, vec![stored], &request, &mut disclosed)
                    .await?;
                // Only the Patient asked for: its person's other records are referred to.
                Some(shown.swap_remove(0)["resource"].take())
            }
            None => None,
        };
        self.record_disclosure(
            who,
            Interaction::Read,
            Some(format!("pdqm/Patient/{id}")),
            disclosed,
        )
        .await?;
        answer.ok_or(Error::NotFound)
    }

    /// The entries of the answer: each match, then the other records of its person the caller may
    /// see (once each), every Patient with `seealso` links to the others of its person shown.
    async fn with_persons(
        &self,
        who: &Requester,
        matched: Vec<Stored>,
        request: &Request,
        disclosed: &mut Disclosed,
    ) -> Result<Vec<Value>> {
        let matched_ids: BTreeSet<String> = matched.iter().map(|s| s.id.clone()).collect();
        let mut placed: BTreeSet<String> = matched_ids.clone();
        let mut shown: Vec<Shown> = Vec::new();
        for stored in matched {
            let person = self.same_person(&stored.id).await?;
            let others: Vec<String> = person
                .iter()
                .filter(|id| !placed.contains(*id))
                .cloned()
                .collect();
            shown.push(Shown {
                stored,
                mode: "match",
                person: person.clone(),
            });
            for other in others {
                placed.insert(other.clone());
                let Some(stored) = self.store.read("Patient", &other).await? else {
                    continue;
                };
                if !stored.deleted && self.admit(who, &stored, disclosed).await? {
                    shown.push(Shown {
                        stored,
                        mode: "include",
                        person: person.clone(),
                    });
                }
            }
        }
        let visible: BTreeSet<&str> = shown.iter().map(|s| s.stored.id.as_str()).collect();
        let mut entries = Vec::with_capacity(shown.len());
        for s in &shown {
            let mut patient = parse_stored(&s.stored)?;
            disclosed.oblige(&s.stored, &mut patient);
            if !request.domains.is_empty() {
                if let Some(identifiers) = patient["identifier"].as_array_mut() {
                    identifiers.retain(|i| {
                        i["system"]
                            .as_str()
                            .is_some_and(|system| request.domains.contains(system))
                    });
                }
            }
            let linked: Vec<&String> = s
                .person
                .iter()
                .filter(|id| **id != s.stored.id && visible.contains(id.as_str()))
                .collect();
            if !linked.is_empty() {
                let links = patient
                    .as_object_mut()
                    .map(|o| o.entry("link").or_insert_with(|| json!([])));
                if let Some(Value::Array(links)) = links {
                    for id in linked {
                        let reference = format!("Patient/{id}");
                        if !links.iter().any(|l| l["other"]["reference"] == reference) {
                            links.push(json!({
                                "other": { "reference": reference },
                                "type": "seealso",
                            }));
                        }
                    }
                }
            }
            entries.push(json!({
                "fullUrl": self.full_url("Patient", &s.stored.id),
                "resource": patient,
                "search": { "mode": s.mode },
            }));
        }
        Ok(entries)
    }

    /// How many Patients match that the caller may see (every page of the result passes the
    /// decision point, so that the total never counts, and so reveals, a withheld Patient).
    async fn pdqm_total(
        &self,
        who: &Requester,
        query: &fhir::search::Query,
        request: &Request,
    ) -> Result<u64> {
        let mut query = query.clone();
        query.sort.clear();
        query.page = None;
        let options = SearchOptions {
            count: TOTAL_PAGE,
            max_includes: 0,
        };
        let mut total = 0u64;
        loop {
            let page = self.store.search(&query, &options).await?;
            for stored in &page.matches {
                if !stored.deleted
                    && request.keeps(stored)?
                    && self.gate.decide(who, stored).await?.is_permit()
                {
                    total += 1;
                }
            }
            match page.next {
                Some(next) => query.page = Some(next),
                None => return Ok(total),
            }
        }
    }
}
