//! The audit trail read back: operators search AuditEvents (`GET [base]/AuditEvent?...`), and a
//! patient gets their accounting of disclosures (`GET [base]/Patient/[id]/$disclosures`): every
//! disclosure of their data to a participant, with date, recipient, purpose and what was disclosed.
//!
//! Both look records up through the store's audit index (`store::Store::search_audit`), which the
//! exchange fills when it appends each record (`crate::audit::audit_index`), newest first, in pages
//! whose opaque cursor is the sequence number to continue below. Reading the audit trail is itself
//! audited, with the patients the records shown are about.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map, Value};
use store::{AuditQuery, AuditRecord};

use super::disclosure::Disclosed;
use super::support::{check_id, encode_query, invalid, parse_count, unreadable};
use super::{Error, Repository, Result};
use crate::access::{Interaction as Access, Principal, Reason, Requester, Role};
use crate::audit::{index, Interaction};
use fhir::search::datetime::{format_instant, parse_range};
use fhir::IssueType;

/// The parameters of `GET AuditEvent`, besides `date`, `_count` and `_page`, and the index name
/// each looks up, the most selective first. `participant` (the requesting participant's
/// Organization) and `purpose` are nutmeg's own.
const SEARCH_PARAMS: &[(&str, &str)] = &[
    ("patient", index::PATIENT),
    ("agent", index::AGENT),
    ("participant", index::PARTICIPANT),
    ("subtype", index::SUBTYPE),
    ("purpose", index::PURPOSE),
    ("outcome", index::OUTCOME),
];

/// What a request for a page of audit records asked for.
struct Page {
    query: AuditQuery,
    /// The parameters that shape the result, for the links (without `_page`).
    link_params: Vec<(String, String)>,
}

impl Repository {
    /// `GET [base]/AuditEvent?patient=&agent=&participant=&subtype=&purpose=&outcome=&date=&_count=&_page=`:
    /// the stored AuditEvents that match, newest first, as a `searchset` Bundle with a `next` link
    /// while there are more. Each parameter may be given once, with comma-separated alternatives
    /// (`subtype=read,search`); `date` twice (`date=ge2025-01-01&date=lt2025-02-01`). `patient` and
    /// `participant` take `Type/id` or `id`; the token parameters take `code` or `system|code`.
    /// An unknown parameter is a 400. Only operators and the exchange itself may search the trail;
    /// the search is recorded with the patients the records shown are about.
    pub async fn search_audit_events(
        &self,
        who: &Requester,
        params: &[(String, String)],
    ) -> Result<Value> {
        self.authorize(who, Access::Search, Some("AuditEvent"), Interaction::Search)
            .await?;
        let names: Vec<&str> = SEARCH_PARAMS.iter().map(|(p, _)| *p).collect();
        let mut page = self.page(params, &names)?;
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            let Some((_, key)) = SEARCH_PARAMS.iter().find(|(p, _)| p == name) else {
                continue;
            };
            if seen.contains(&name.as_str()) {
                return Err(invalid(
                    IssueType::NotSupported,
                    format!("{name}: give alternatives comma-separated in one parameter"),
                ));
            }
            seen.push(name);
            for alternative in value.split(',').map(str::trim) {
                let value = search_value(name, alternative)?;
                page.query.filters.push((key.to_string(), value));
            }
            page.link_params.push((name.clone(), value.clone()));
        }
        // The most selective name drives the lookup: a patient, else a client or user, else a
        // participant... (the order of SEARCH_PARAMS).
        page.query.filters.sort_by_key(|(name, _)| {
            SEARCH_PARAMS
                .iter()
                .position(|(_, key)| key == name)
                .unwrap_or(usize::MAX)
        });
        let (records, next) = self.records(&page.query).await?;

        let mut disclosed_patients = BTreeSet::new();
        let mut resources = Vec::with_capacity(records.len());
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            let event = stored_event(record)?;
            disclosed_patients.extend(patients_of(&event));
            resources.push(("AuditEvent".to_string(), record.seq.to_string(), 1));
            entries.push(self.entry(record.seq, event));
        }
        let path = format!("{}/AuditEvent", self.config.base_url);
        let bundle = searchset(&path, &page.link_params, params, next, entries);
        self.record_disclosure(
            who,
            Interaction::Search,
            Some(format!("AuditEvent?{}", encode_query(params))),
            Disclosed::of(resources, disclosed_patients),
        )
        .await?;
        Ok(bundle)
    }

    /// `GET [base]/AuditEvent/[id]`: one stored AuditEvent by its sequence number (the `id` the
    /// search answers), for operators and the exchange itself; 404 if there is none. Recorded
    /// like a search.
    pub async fn read_audit_event(&self, who: &Requester, id: &str) -> Result<Value> {
        check_id(id)?;
        self.authorize(who, Access::Read, Some("AuditEvent"), Interaction::Read)
            .await?;
        let seq = match id.parse::<i64>() {
            Ok(seq) if seq > 0 => seq,
            _ => return Err(Error::NotFound),
        };
        let record = self
            .store
            .audit_records(seq - 1, 1)
            .await?
            .into_iter()
            .find(|r| r.seq == seq)
            .ok_or(Error::NotFound)?;
        let event = stored_event(&record)?;
        self.record_disclosure(
            who,
            Interaction::Read,
            None,
            Disclosed::of(
                vec![("AuditEvent".to_string(), id.to_string(), 1)],
                patients_of(&event),
            ),
        )
        .await?;
        Ok(event)
    }

    /// `GET [base]/Patient/[id]/$disclosures?date=&_count=&_page=`: the patient's accounting of
    /// disclosures. Every disclosure of the patient's data to a participant (a successful read,
    /// vread, search, history or operation by a participant's system or person that let at least
    /// one resource about the patient leave; see [`crate::audit::is_disclosure`]), newest first, as
    /// a `searchset` Bundle of compact AuditEvents: `recorded` (the date), the requestor agent
    /// (`who.reference` the participant's Organization and `who.display` its name: the
    /// recipient), `purposeOfEvent`, `subtype` (the interaction), for emergency access
    /// (break-the-glass, purpose `ETREAT`) a `meta.tag` `break-the-glass` in
    /// [`crate::notices::NOTICE_SYSTEM`] and the `outcomeDesc` saying so, and `entity` (the
    /// patient, and each resource version disclosed that is
    /// about the patient or no patient). The patient is the person: every source's Patient record
    /// the patient index links to `[id]` counts as theirs. The request id, network addresses and
    /// query are left out. Writes, refusals and the exchange's own tools' reads are not listed.
    ///
    /// A patient may ask for their own only (another id answers 404, as if absent); operators and
    /// the exchange itself for anyone; everyone else is refused (403). The request is recorded in
    /// the audit trail.
    pub async fn disclosures(
        &self,
        who: &Requester,
        patient_id: &str,
        params: &[(String, String)],
    ) -> Result<Value> {
        check_id(patient_id)?;
        // An open decision point (tools, tests, a server without access control) permits it as
        // it permits everything else.
        let refused = match &who.principal {
            _ if self.gate.permits_everything(who) => None,
            Principal::System { .. }
            | Principal::User {
                role: Role::OperatorAdmin,
                ..
            } => None,
            Principal::User {
                role: Role::Patient { patient_id: own },
                ..
            } if own == patient_id => None,
            Principal::User {
                role: Role::Patient { .. },
                ..
            } => Some(Reason::NotOwnRecord),
            Principal::Anonymous => Some(Reason::Unauthenticated),
            _ => Some(Reason::Role),
        };
        if let Some(reason) = refused {
            let reasons = vec![reason];
            self.record_refusal(who, Interaction::Operation, &reasons)
                .await?;
            return Err(if reasons == [Reason::NotOwnRecord] {
                Error::NotFound
            } else {
                Error::Forbidden(reasons)
            });
        }
        if self.store.read("Patient", patient_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let mut page = self.page(params, &[])?;
        // The person's, not one record's: every source's Patient the patient index links to this
        // one, so that what another source sent about them and disclosed is accounted for too.
        let person = self.same_person(patient_id).await?;
        for member in &person {
            page.query
                .filters
                .push((index::DISCLOSURE.to_string(), member.clone()));
        }
        let (records, next) = self.records(&page.query).await?;

        let mut names: HashMap<String, Option<String>> = HashMap::new();
        let mut resources = Vec::with_capacity(records.len());
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            let event = stored_event(record)?;
            let summary = self.accounted(&person, &event, &mut names).await?;
            resources.push(("AuditEvent".to_string(), record.seq.to_string(), 1));
            entries.push(self.entry(record.seq, summary));
        }
        let path = format!("{}/Patient/{patient_id}/$disclosures", self.config.base_url);
        let bundle = searchset(&path, &page.link_params, params, next, entries);
        self.record_disclosure(
            who,
            Interaction::Operation,
            Some(format!(
                "Patient/{patient_id}/$disclosures?{}",
                encode_query(params)
            )),
            Disclosed::of(resources, [patient_id.to_string()]),
        )
        .await?;
        Ok(bundle)
    }

    /// The time range (`date`), page size and cursor of a request; every other parameter not in
    /// `more` (which the caller reads) is a 400.
    fn page(&self, params: &[(String, String)], more: &[&str]) -> Result<Page> {
        let mut query = AuditQuery {
            limit: self.config.default_count.min(self.config.max_count),
            ..AuditQuery::default()
        };
        let mut link_params = Vec::new();
        let mut unknown = Vec::new();
        for (name, value) in params {
            match name.as_str() {
                "date" => {
                    let (from, to) = date_bounds(value)?;
                    if let Some(from) = from {
                        query.recorded_from =
                            Some(query.recorded_from.map_or(from, |f| f.max(from)));
                    }
                    if let Some(to) = to {
                        query.recorded_to = Some(query.recorded_to.map_or(to, |t| t.min(to)));
                    }
                    link_params.push((name.clone(), value.clone()));
                }
                "_count" => {
                    query.limit = parse_count("_count", value)?.min(self.config.max_count);
                    link_params.push((name.clone(), value.clone()));
                }
                "_page" => {
                    let before = value
                        .parse::<i64>()
                        .map_err(|_| Error::Store(store::StoreError::BadCursor))?;
                    query.before_seq = Some(before);
                }
                "_format" | "_pretty" => {}
                _ if more.contains(&name.as_str()) => {}
                _ => unknown.push(name.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::Invalid(
                unknown
                    .into_iter()
                    .map(|name| {
                        fhir::Issue::error(
                            IssueType::NotSupported,
                            format!("{name}: not a parameter of this interaction"),
                        )
                    })
                    .collect(),
            ));
        }
        Ok(Page { query, link_params })
    }

    /// A page of records and, if there are more, the cursor of the next page.
    async fn records(&self, query: &AuditQuery) -> Result<(Vec<AuditRecord>, Option<String>)> {
        if query.limit == 0 {
            return Ok((Vec::new(), None));
        }
        let query = AuditQuery {
            limit: query.limit + 1,
            ..query.clone()
        };
        let mut records = self.store.search_audit(&query).await?;
        if query.filters.iter().any(|(name, _)| name == index::PATIENT) {
            // A patient whose data a record disclosed is indexed as a `disclosure` only (see
            // `index::PATIENT`): look that name up too and merge, newest first. Each lookup
            // answers its newest `limit + 1` below the cursor, so the merge's are the union's.
            let disclosed = AuditQuery {
                filters: query
                    .filters
                    .iter()
                    .map(|(name, value)| {
                        let name = if name == index::PATIENT {
                            index::DISCLOSURE
                        } else {
                            name.as_str()
                        };
                        (name.to_string(), value.clone())
                    })
                    .collect(),
                ..query.clone()
            };
            records.extend(self.store.search_audit(&disclosed).await?);
            records.sort_by_key(|r| std::cmp::Reverse(r.seq));
            records.dedup_by_key(|r| r.seq);
            records.truncate(query.limit);
        }
        let next = if records.len() >= query.limit {
            records.truncate(query.limit - 1);
            records.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok((records, next))
    }

    /// The searchset entry of an AuditEvent.
    fn entry(&self, seq: i64, event: Value) -> Value {
        json!({
            "fullUrl": format!("{}/AuditEvent/{seq}", self.config.base_url),
            "resource": event,
            "search": { "mode": "match" },
        })
    }

    /// The compact AuditEvent of a disclosure for the patient's accounting: when, to whom, why,
    /// and which of the patient's resources (see [`Repository::disclosures`]).
    async fn accounted(
        &self,
        person: &[String],
        event: &Value,
        names: &mut HashMap<String, Option<String>>,
    ) -> Result<Value> {
        let mut out = Map::new();
        for key in [
            "resourceType",
            "id",
            "meta",
            "type",
            "subtype",
            "action",
            "recorded",
            "outcome",
            "outcomeDesc",
            "purposeOfEvent",
        ] {
            if let Some(value) = event.get(key) {
                out.insert(key.to_string(), value.clone());
            }
        }
        let mut requestor = event["agent"]
            .as_array()
            .and_then(|agents| agents.iter().find(|a| a["requestor"] == true))
            .cloned()
            .unwrap_or_else(|| json!({ "requestor": true }));
        let participant = requestor["who"]["reference"].as_str().map(str::to_string);
        let mut who = Map::new();
        if let Some(reference) = &participant {
            who.insert("reference".into(), json!(reference));
            let id = reference.strip_prefix("Organization/").unwrap_or(reference);
            if let Some(name) = self.organization_name(id, names).await? {
                who.insert("display".into(), json!(name));
            }
        }
        requestor["who"] = Value::Object(who);
        if let Some(agent) = requestor.as_object_mut() {
            agent.remove("network");
        }
        out.insert("agent".into(), json!([requestor]));
        if let Some(source) = event.get("source") {
            out.insert("source".into(), source.clone());
        }
        let theirs = |reference: &str| {
            reference
                .strip_prefix("Patient/")
                .is_some_and(|id| person.iter().any(|p| p == id))
        };
        let entities = event["entity"].as_array().cloned().unwrap_or_default();
        // A record about someone else too does not say which resource is whose.
        let others = patients_of(event).iter().any(|p| !person.contains(p));
        let mut kept = Vec::new();
        for entity in entities {
            let role = entity["role"]["code"].as_str().unwrap_or("");
            let reference = entity["what"]["reference"].as_str().unwrap_or("");
            match role {
                "1" if theirs(reference) => kept.push(entity),
                "4" if !others || self.about(reference, person).await? => kept.push(entity),
                _ => {}
            }
        }
        out.insert("entity".into(), Value::Array(kept));
        // Emergency access is marked as such: a tag a program can look for, and the reason in
        // words (the patient is told of every break-the-glass disclosure this way).
        let emergency = event["purposeOfEvent"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .any(|c| c["code"] == "ETREAT");
        if emergency {
            let meta = out.entry("meta").or_insert_with(|| json!({}));
            meta["tag"] = json!([{
                "system": crate::notices::NOTICE_SYSTEM,
                "code": crate::notices::BREAK_THE_GLASS,
                "display": "Emergency access (break-the-glass)",
            }]);
            out.entry("outcomeDesc").or_insert_with(|| {
                json!("emergency access (ETREAT) without a treatment relationship")
            });
        }
        Ok(Value::Object(out))
    }

    /// Whether the version `Type/id/_history/n` is about the person (one of their Patients) or
    /// about no patient (a record that names several patients does not say which resource is
    /// whose).
    async fn about(&self, reference: &str, person: &[String]) -> Result<bool> {
        let parts: Vec<&str> = reference.split('/').collect();
        let [ty, id, "_history", version] = parts.as_slice() else {
            return Ok(false);
        };
        let Ok(version) = version.parse::<i64>() else {
            return Ok(false);
        };
        let Some(stored) = self.store.vread(ty, id, version).await? else {
            return Ok(false);
        };
        if stored.deleted {
            return Ok(false);
        }
        let resource: Value =
            serde_json::from_str(&stored.json).map_err(|e| unreadable(&stored, e))?;
        let patients = fhir::search::extract::patient_compartments(&resource);
        Ok(patients.is_empty() || patients.iter().any(|p| person.contains(p)))
    }

    /// A participant's name, looked up once per request.
    async fn organization_name(
        &self,
        id: &str,
        names: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<String>> {
        if let Some(name) = names.get(id) {
            return Ok(name.clone());
        }
        let name = match self.store.read("Organization", id).await? {
            Some(stored) if !stored.deleted => serde_json::from_str::<Value>(&stored.json)
                .ok()
                .and_then(|org| org["name"].as_str().map(str::to_string)),
            _ => None,
        };
        names.insert(id.to_string(), name.clone());
        Ok(name)
    }
}

/// A stored record as the AuditEvent the trail answers: its sequence number as `id`, and
/// `meta.lastUpdated` the instant it was recorded.
fn stored_event(record: &AuditRecord) -> Result<Value> {
    let parsed: Value = serde_json::from_str(&record.json).map_err(|e| {
        Error::Store(store::StoreError::Database(format!(
            "audit record {} does not parse: {e}",
            record.seq
        )))
    })?;
    let Value::Object(fields) = parsed else {
        return Err(Error::Store(store::StoreError::Database(format!(
            "audit record {} is not an object",
            record.seq
        ))));
    };
    let mut event = Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("id".into(), json!(record.seq.to_string()));
    event.insert(
        "meta".into(),
        json!({ "versionId": "1", "lastUpdated": format_instant(record.recorded) }),
    );
    for (key, value) in fields {
        if !matches!(key.as_str(), "resourceType" | "id" | "meta") {
            event.insert(key, value);
        }
    }
    Ok(Value::Object(event))
}

/// The ids of the patients an AuditEvent names as its patients.
fn patients_of(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["role"]["code"] == "1")
        .filter_map(|e| e["what"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect()
}

/// The index value one alternative of a search parameter looks up.
fn search_value(name: &str, value: &str) -> Result<String> {
    let value = match name {
        "patient" => value.strip_prefix("Patient/").unwrap_or(value),
        "participant" => value.strip_prefix("Organization/").unwrap_or(value),
        "subtype" | "purpose" | "outcome" => value.rsplit_once('|').map_or(value, |(_, c)| c),
        _ => value,
    };
    if value.is_empty() {
        return Err(invalid(
            IssueType::Value,
            format!("{name}: a value is needed"),
        ));
    }
    Ok(value.to_string())
}

/// The instants (inclusive) a `date` parameter bounds `recorded` by: `ge`, `gt`, `le`, `lt`, `eq`
/// or no prefix (within the date given).
fn date_bounds(value: &str) -> Result<(Option<i64>, Option<i64>)> {
    let (prefix, date) = match value.get(..2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let bad = || {
        invalid(
            IssueType::Value,
            format!("date: '{value}' is not a date with ge, gt, le, lt or eq"),
        )
    };
    let (low, high) = parse_range(date).ok_or_else(bad)?;
    Ok(match prefix {
        "eq" => (Some(low), Some(high)),
        "ge" => (Some(low), None),
        "gt" => (Some(high + 1), None),
        "le" => (None, Some(high)),
        "lt" => (None, Some(low - 1)),
        _ => return Err(bad()),
    })
}

/// The `searchset` Bundle of a page: `self` names the request as made, `next` continues below the
/// page's last record.
fn searchset(
    path: &str,
    link_params: &[(String, String)],
    params: &[(String, String)],
    next: Option<String>,
    entries: Vec<Value>,
) -> Value {
    let url = |cursor: Option<&str>| {
        let mut params = link_params.to_vec();
        if let Some(cursor) = cursor {
            params.push(("_page".to_string(), cursor.to_string()));
        }
        if params.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", encode_query(&params))
        }
    };
    let current = params
        .iter()
        .find(|(n, _)| n == "_page")
        .map(|(_, v)| v.as_str());
    let mut links = vec![json!({ "relation": "self", "url": url(current) })];
    if let Some(next) = &next {
        links.push(json!({ "relation": "next", "url": url(Some(next)) }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": super::support::new_id(),
        "meta": { "lastUpdated": format_instant(super::support::now_millis()) },
        "type": "searchset",
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_bound_the_time_recorded() {
        let (low, high) = parse_range("2025-11-29").unwrap();
        assert_eq!(date_bounds("2025-11-29").unwrap(), (Some(low), Some(high)));
        assert_eq!(date_bounds("ge2025-11-29").unwrap(), (Some(low), None));
        assert_eq!(date_bounds("gt2025-11-29").unwrap(), (Some(high + 1), None));
        assert_eq!(date_bounds("le2025-11-29").unwrap(), (None, Some(high)));
        assert_eq!(date_bounds("lt2025-11-29").unwrap(), (None, Some(low - 1)));
        for bad in ["ne2025-11-29", "sa2025", "yesterday", ""] {
            assert_eq!(date_bounds(bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn values_are_ids_and_codes() {
        assert_eq!(search_value("patient", "Patient/p1").unwrap(), "p1");
        assert_eq!(search_value("patient", "p1").unwrap(), "p1");
        assert_eq!(search_value("participant", "Organization/o").unwrap(), "o");
        assert_eq!(
            search_value("subtype", "http://hl7.org/fhir/restful-interaction|read").unwrap(),
            "read"
        );
        assert_eq!(search_value("outcome", "0").unwrap(), "0");
        assert!(search_value("agent", "").is_err());
    }
}
