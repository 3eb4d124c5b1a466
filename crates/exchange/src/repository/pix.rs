//! IHE PIXm (ITI-83, `GET Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=...]`):
//! identifier cross-referencing across the enterprise identity. The Patients holding the source
//! identifier are looked up; every Patient linked to the same enterprise identity is a
//! cross-reference, and its identifiers (those of the target systems, if any are named) and its
//! reference are answered as `targetIdentifier` and `targetId` in a Parameters resource.
//!
//! Through the decision point and audited: the request is authorised as a Patient search, each
//! Patient (the source ones too) passes `decide` before anything about it is answered, and the
//! read is recorded with the patients disclosed. A Patient the caller may not see (withheld, an
//! opted-out person) is never answered and never hinted at: a source identifier only such
//! Patients hold is answered exactly as one nobody holds (404), and a cross-reference the caller
//! may not see is simply absent.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::disclosure::Disclosed;
use super::support::parse_stored;
use super::{Error, Repository, Result};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::{Issue, IssueType};

/// At most this many Patients hold one source identifier (more is a data problem, not a query).
const MAX_SOURCES: usize = 50;

impl Repository {
    /// `GET Patient/$ihe-pix` (see the module's documentation).
    pub async fn pix_query(&self, who: &Requester, params: &[(String, String)]) -> Result<Value> {
        self.authorize(who, Access::Search, Some("Patient"), Interaction::Operation)
            .await?;
        let mut source = None;
        let mut targets: BTreeSet<String> = BTreeSet::new();
        for (name, value) in params {
            match name.as_str() {
                "sourceIdentifier" if source.is_none() => {
                    let (system, value) = value.split_once('|').unwrap_or(("", value));
                    if system.is_empty() || value.is_empty() {
                        return Err(invalid("sourceIdentifier must be system|value, both given"));
                    }
                    source = Some((system.to_string(), value.to_string()));
                }
                "sourceIdentifier" => return Err(invalid("sourceIdentifier is given once")),
                "targetSystem" => targets.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "_format" => {}
                _ => return Err(invalid(&format!("unknown parameter '{name}'"))),
            }
        }
        let Some((system, value)) = source else {
            return Err(invalid("sourceIdentifier is required"));
        };

        // The Patients holding the source identifier, as the caller may see them.
        let identifier = format!("{}|{}", escape(&system), escape(&value));
        let mut query = fhir::search::parse::parse(
            Some("Patient"),
            &[("identifier".to_string(), identifier)],
            false,
        )
        .map_err(Error::Invalid)?
        .query;
        query.count = Some(MAX_SOURCES);
        let options = store::SearchOptions {
            count: MAX_SOURCES,
            max_includes: 0,
        };
        let page = self.store.search(&query, &options).await?;
        let mut disclosed = Disclosed::new();
        let mut sources = Vec::new();
        for stored in &page.matches {
            if !stored.deleted && self.admit(who, stored, &mut disclosed).await? {
                sources.push(stored.id.clone());
            }
        }
        let audit_query = Some(format!(
            "Patient/$ihe-pix?sourceIdentifier={system}|{value}{}",
            if targets.is_empty() {
                String::new()
            } else {
                format!(
                    "&targetSystem={}",
                    targets.iter().cloned().collect::<Vec<_>>().join(",")
                )
            }
        ));
        if sources.is_empty() {
            self.record_disclosure(who, Interaction::Operation, audit_query, disclosed)
                .await?;
            return Err(Error::NotFound);
        }

        // Every Patient of the same person(s), each as the caller may see it.
        let mut linked = BTreeSet::new();
        for id in &sources {
            linked.extend(self.same_person(id).await?);
        }
        let mut parameters = Vec::new();
        let mut seen_identifiers = BTreeSet::new();
        for id in &linked {
            let Some(stored) = self.store.read("Patient", id).await? else {
                continue;
            };
            if stored.deleted {
                continue;
            }
            let visible = sources.contains(id) || self.admit(who, &stored, &mut disclosed).await?;
            if !visible {
                continue;
            }
            let patient = parse_stored(&stored)?;
            let mut answered = false;
            for identifier in patient["identifier"].as_array().into_iter().flatten() {
                let (Some(s), Some(v)) =
                    (identifier["system"].as_str(), identifier["value"].as_str())
                else {
                    continue;
                };
                if (s == system && v == value) || (!targets.is_empty() && !targets.contains(s)) {
                    continue;
                }
                answered = true;
                if seen_identifiers.insert((s.to_string(), v.to_string())) {
                    parameters.push(json!({
                        "name": "targetIdentifier",
                        "valueIdentifier": { "system": s, "value": v },
                    }));
                }
            }
            if targets.is_empty() || answered {
                parameters.push(json!({
                    "name": "targetId",
                    "valueReference": { "reference": format!("Patient/{id}") },
                }));
            }
        }
        self.record_disclosure(who, Interaction::Operation, audit_query, disclosed)
            .await?;
        Ok(json!({ "resourceType": "Parameters", "parameter": parameters }))
    }
}

fn invalid(message: &str) -> Error {
    Error::Invalid(vec![Issue::error(IssueType::Invalid, message)])
}

/// A token search value's part with `|`, `,` and `$` escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(',', "\\,")
        .replace('$', "\\$")
}
