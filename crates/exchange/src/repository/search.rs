//! Search (`GET [type]?...`, `GET /?...`) and `Patient/$everything`: parse, ask the store, pass every
//! match and include through the decision point, and build the `searchset` Bundle with its links.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::{CompartmentRequest, SearchOptions, Stored};

use super::disclosure::Disclosed;
use super::elements::shape;
use super::support::{
    check_id, check_type, encode_query, parse_count, parse_instant_param, parse_stored, unreadable,
};
use super::verify::looks_through_references;
use super::{Error, Handling, Repository, Result};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::search::{Summary, Total};
use fhir::Issue;

/// How many resources `_include`/`_revinclude` may add to one page at most.
const MAX_INCLUDES: usize = 1000;

/// The page size used to count the matches a requester may see.
const TOTAL_PAGE: usize = 500;

impl Repository {
    /// A search on one type (`ty = Some`) or across all types. Answers a `searchset` Bundle.
    pub async fn search(
        &self,
        who: &Requester,
        resource_type: Option<&str>,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Searchset> {
        if let Some(ty) = resource_type {
            check_type(ty)?;
        }
        self.authorize(who, Access::Search, resource_type, Interaction::Search)
            .await?;
        let parsed =
            fhir::search::parse::parse(resource_type, params, handling == Handling::Strict)
                .map_err(Error::Invalid)?;
        let mut query = parsed.query;
        let count_only = query.summary == Some(Summary::Count);
        if count_only {
            query.total = Total::Accurate;
        }
        let count = if count_only {
            0
        } else {
            self.page_size(query.count)
        };
        let started = std::time::Instant::now();
        let page = self
            .store
            .search(
                &query,
                &SearchOptions {
                    count,
                    max_includes: MAX_INCLUDES,
                },
            )
            .await?;

        let mut entries = Vec::with_capacity(page.matches.len() + page.included.len());
        let mut withheld = 0u64;
        let mut disclosed = Disclosed::new();
        if !count_only {
            let gated = !self.gate.permits_everything(who);
            let recheck = gated && looks_through_references(&query);
            let mut shown: Vec<&Stored> = Vec::with_capacity(page.matches.len());
            for stored in &page.matches {
                if recheck && !self.still_matches(who, &query, stored).await? {
                    withheld += 1;
                    continue;
                }
                let entry = self
                    .entry_for(
                        who,
                        stored,
                        "match",
                        query.summary,
                        &query.elements,
                        &mut disclosed,
                    )
                    .await?;
                match entry {
                    Some(entry) => {
                        entries.push(entry);
                        shown.push(stored);
                    }
                    None => withheld += 1,
                }
            }
            // An include is shown only if it is permitted and reachable from a shown match
            // through permitted resources: nothing withheld leaks through what it refers to.
            let mut permitted: Vec<&Stored> = Vec::with_capacity(page.included.len());
            for stored in &page.included {
                if !gated || self.gate.decide(who, stored).await?.is_permit() {
                    permitted.push(stored);
                }
            }
            // (Without includes there is nothing to trace, and the matches need not be parsed.)
            let included = if gated && !permitted.is_empty() {
                reachable(&shown, permitted)?
            } else {
                permitted
            };
            for stored in included {
                let entry = self
                    .entry_for(
                        who,
                        stored,
                        "include",
                        query.summary,
                        &query.elements,
                        &mut disclosed,
                    )
                    .await?;
                if let Some(entry) = entry {
                    entries.push(entry);
                }
            }
        }
        if handling == Handling::Lenient && !parsed.warnings.is_empty() {
            entries.push(outcome_entry(&parsed.warnings));
        }
        tracing::debug!(
            request_id = %who.request_id,
            resource_type = resource_type.unwrap_or("*"),
            matches = page.matches.len(),
            included = page.included.len(),
            withheld,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "search"
        );
        let path = match resource_type {
            Some(ty) => format!("{}/{ty}", self.config.base_url),
            None => self.config.base_url.clone(),
        };
        // The links name the search as it was carried out: without the parameters it ignored.
        let used: Vec<(String, String)> = params
            .iter()
            .enumerate()
            .filter(|(i, _)| !parsed.ignored.contains(i))
            .map(|(_, p)| p.clone())
            .collect();
        let links = self.links(&path, &used, page.next.as_deref(), page.previous.as_deref());
        let total = match page.total {
            Some(_) if !self.gate.permits_everything(who) => {
                Some(self.visible_total(who, &query).await?)
            }
            total => total.map(|t| t.saturating_sub(withheld)),
        };
        self.record_disclosure(
            who,
            Interaction::Search,
            Some(search_query(resource_type, params)),
            disclosed,
        )
        .await?;
        Ok(searchset(total, links, entries))
    }

    /// The number of matches `who` may see: every match of the whole result passes the decision
    /// point, so that a total never counts (and so reveals) a withheld resource. Only needed when
    /// the decision point has a rule.
    async fn visible_total(&self, who: &Requester, query: &fhir::search::Query) -> Result<u64> {
        let mut query = query.clone();
        query.include.clear();
        query.revinclude.clear();
        query.sort.clear();
        query.total = Total::None;
        query.page = None;
        query.summary = None;
        query.elements.clear();
        let options = SearchOptions {
            count: TOTAL_PAGE,
            max_includes: 0,
        };
        let mut total = 0u64;
        loop {
            let page = self.store.search(&query, &options).await?;
            let recheck = looks_through_references(&query);
            for stored in &page.matches {
                if self.gate.decide(who, stored).await?.is_permit()
                    && (!recheck || self.still_matches(who, &query, stored).await?)
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

    /// `GET Patient/[id]/$everything` with `_since`, `_type`, `_count` and `_page`: the Patient (on
    /// the first page), the other Patients linked to the same enterprise identity and the resources
    /// in all their compartments, and the resources those refer to that are not in any Patient's
    /// compartment (practitioners, organizations, locations, medications...). The person's record,
    /// not one source's: each resource still passes the decision point.
    pub async fn everything(
        &self,
        who: &Requester,
        patient_id: &str,
        params: &[(String, String)],
    ) -> Result<Searchset> {
        self.everything_with(who, patient_id, params, Handling::Lenient)
            .await
    }

    /// [`Repository::everything`] with a choice of handling for parameters the operation does not
    /// know: reported in an OperationOutcome entry (lenient) or 400 (strict).
    pub async fn everything_with(
        &self,
        who: &Requester,
        patient_id: &str,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Searchset> {
        check_id(patient_id)?;
        self.authorize(who, Access::Read, Some("Patient"), Interaction::Operation)
            .await?;
        let unknown = unknown_params(params, &["_since", "_type", "_count", "_page"], handling)?;
        let mut since = None;
        let mut types = Vec::new();
        let mut count = None;
        let mut cursor = None;
        for (name, value) in params {
            match name.as_str() {
                "_since" => since = Some(parse_instant_param("_since", value)?.0),
                "_type" => {
                    for ty in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        check_type(ty).map_err(|_| {
                            super::support::invalid(
                                fhir::IssueType::Value,
                                format!("_type: unknown resource type '{ty}'"),
                            )
                        })?;
                        types.push(ty.to_string());
                    }
                }
                "_count" => count = Some(parse_count("_count", value)?),
                "_page" => cursor = Some(value.clone()),
                _ => {}
            }
        }
        // The Patient itself: 404/410 (or withheld) ends the operation.
        let patient = self
            .store
            .read("Patient", patient_id)
            .await?
            .ok_or(Error::NotFound)?;
        if !self.gate.decide(who, &patient).await?.is_permit() {
            return Err(Error::NotFound);
        }
        if patient.deleted {
            return Err(Error::Gone {
                version: patient.version,
                last_updated: patient.last_updated,
            });
        }
        let count = self.page_size(count);
        // The person's record (consent and treatment relationships follow the person, and so does
        // what the exchange has about them): the other Patients linked to this one and every
        // compartment at once, each resource through the decision point like the rest.
        let request = CompartmentRequest {
            patient_ids: vec![patient_id.to_string()],
            linked: true,
            types: types.clone(),
            since,
            count,
            cursor: cursor.clone(),
        };
        let page = self.store.compartment(&request).await?;

        let mut entries = Vec::with_capacity(page.matches.len() + 1);
        let mut disclosed = Disclosed::new();
        let wants = |ty: &str| types.is_empty() || types.iter().any(|t| t == ty);
        if cursor.is_none() && wants("Patient") && since.is_none_or(|s| patient.last_updated >= s) {
            let entry = self
                .entry_for(who, &patient, "match", None, &[], &mut disclosed)
                .await?;
            if let Some(entry) = entry {
                entries.push(entry);
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut referenced = Vec::new();
        for stored in page.matches.iter().chain(page.included.iter()) {
            seen.insert((stored.resource_type.clone(), stored.id.clone()));
        }
        for stored in page.matches.iter().chain(page.included.iter()) {
            let entry = self
                .entry_for(who, stored, "match", None, &[], &mut disclosed)
                .await?;
            let Some(entry) = entry else {
                continue;
            };
            collect_outside_references(&parse_stored(stored)?, &mut |ty, id| {
                if wants(ty) && seen.insert((ty.to_string(), id.to_string())) {
                    referenced.push((ty.to_string(), id.to_string()));
                }
            });
            entries.push(entry);
        }
        for (ty, id) in referenced {
            if let Some(stored) = self.store.read(&ty, &id).await? {
                if stored.deleted {
                    continue;
                }
                let entry = self
                    .entry_for(who, &stored, "include", None, &[], &mut disclosed)
                    .await?;
                if let Some(entry) = entry {
                    entries.push(entry);
                }
            }
        }
        if !unknown.is_empty() {
            entries.push(outcome_entry(&unknown));
        }
        let operation = format!("Patient/{patient_id}/$everything");
        let query = if params.is_empty() {
            operation.clone()
        } else {
            format!("{operation}?{}", encode_query(params))
        };
        self.record_disclosure(who, Interaction::Operation, Some(query), disclosed)
            .await?;
        let path = format!("{}/{operation}", self.config.base_url);
        let links = self.links(
            &path,
            params,
            page.next.as_deref(),
            page.previous.as_deref(),
        );
        Ok(searchset(None, links, entries))
    }

    /// `_count` after the server's default and maximum.
    pub(crate) fn page_size(&self, asked: Option<usize>) -> usize {
        asked
            .unwrap_or(self.config.default_count)
            .min(self.config.max_count)
    }

    /// The Bundle entry for a stored resource, or `None` if the decision point withholds it; a
    /// resource shown is noted in `disclosed`. A resource shown whole keeps its stored text (see
    /// [`Searchset`]).
    pub(crate) async fn entry_for(
        &self,
        who: &Requester,
        stored: &Stored,
        mode: &'static str,
        summary: Option<Summary>,
        elements: &[String],
        disclosed: &mut Disclosed,
    ) -> Result<Option<Entry>> {
        if !self.admit(who, stored, disclosed).await? {
            return Ok(None);
        }
        let whole = matches!(summary, None | Some(Summary::False)) && elements.is_empty();
        let resource = if disclosed.is_obliged(stored) {
            let mut resource = parse_stored(stored)?;
            disclosed.oblige(stored, &mut resource);
            if whole {
                Shown::Shaped(resource)
            } else {
                Shown::Shaped(shape(resource, summary, elements))
            }
        } else if whole {
            Shown::Stored(
                RawValue::from_string(stored.json.clone()).map_err(|e| unreadable(stored, e))?,
            )
        } else {
            Shown::Shaped(shape(parse_stored(stored)?, summary, elements))
        };
        Ok(Some(Entry {
            full_url: Some(self.full_url(&stored.resource_type, &stored.id)),
            resource,
            mode,
        }))
    }

    pub(crate) fn full_url(&self, resource_type: &str, id: &str) -> String {
        format!("{}/{resource_type}/{id}", self.config.base_url)
    }

    /// `self`, `next` and `previous` links: the request's own parameters with `_page` set to the cursor.
    pub(crate) fn links(
        &self,
        path: &str,
        params: &[(String, String)],
        next: Option<&str>,
        previous: Option<&str>,
    ) -> Vec<Value> {
        let base: Vec<(String, String)> = params
            .iter()
            .filter(|(n, _)| n != "_page")
            .cloned()
            .collect();
        let url = |cursor: Option<&str>| {
            let mut params = base.clone();
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
        if let Some(next) = next {
            links.push(json!({ "relation": "next", "url": url(Some(next)) }));
        }
        if let Some(previous) = previous {
            links.push(json!({ "relation": "previous", "url": url(Some(previous)) }));
        }
        links
    }
}

pub(crate) fn searchset(total: Option<u64>, links: Vec<Value>, entries: Vec<Entry>) -> Searchset {
    let mut head = json!({
        "resourceType": "Bundle",
        "id": super::support::new_id(),
        "meta": { "lastUpdated": fhir::search::datetime::format_instant(super::support::now_millis()) },
        "type": "searchset",
    });
    if let Some(total) = total {
        head["total"] = json!(total);
    }
    head["link"] = Value::Array(links);
    Searchset { head, entries }
}

/// A `searchset` Bundle as search and `$everything` answer it. A resource shown whole is written
/// out as the text the store holds, without being parsed into a tree and serialised again (twenty
/// times for a default page); serialise it with serde (`serde_json::to_writer`) or turn it into a
/// [`Value`].
#[derive(Debug, Clone)]
pub struct Searchset {
    /// Everything but the entries: `resourceType`, `id`, `meta`, `type`, `total`, `link`.
    head: Value,
    entries: Vec<Entry>,
}

/// One entry of a [`Searchset`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    full_url: Option<String>,
    resource: Shown,
    /// `search.mode`: match, include or outcome.
    mode: &'static str,
}

/// The resource of an entry: the stored text as it is, or a shaped (or built) resource.
#[derive(Debug, Clone)]
enum Shown {
    Stored(Box<RawValue>),
    Shaped(Value),
}

impl Searchset {
    /// The Bundle as a JSON value (a batch response embeds it; tests look into it).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a searchset serialises: its parts are JSON already")
    }

    /// How many entries the Bundle has (matches, includes and an outcome).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for Searchset {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let head = self.head.as_object().expect("the head is an object");
        let mut map = serializer.serialize_map(Some(head.len() + 1))?;
        for (name, value) in head {
            map.serialize_entry(name, value)?;
        }
        if !self.entries.is_empty() {
            map.serialize_entry("entry", &self.entries)?;
        }
        map.end()
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(full_url) = &self.full_url {
            map.serialize_entry("fullUrl", full_url)?;
        }
        match &self.resource {
            Shown::Stored(raw) => map.serialize_entry("resource", raw)?,
            Shown::Shaped(value) => map.serialize_entry("resource", value)?,
        }
        map.serialize_entry("search", &Mode(self.mode))?;
        map.end()
    }
}

/// `{"mode": ...}`, the `search` element of an entry.
struct Mode(&'static str);

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("mode", self.0)?;
        map.end()
    }
}

/// The parameters of an operation that are not in `known` (nor `_format`/`_pretty`): warnings to
/// report (lenient), or a 400 (strict).
pub(crate) fn unknown_params(
    params: &[(String, String)],
    known: &[&str],
    handling: Handling,
) -> Result<Vec<Issue>> {
    let unknown: Vec<&str> = params
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !known.contains(name) && !matches!(*name, "_format" | "_pretty"))
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let diagnostics = |name: &str| format!("{name}: not a parameter of this interaction; ignored");
    match handling {
        Handling::Strict => Err(Error::Invalid(
            unknown
                .iter()
                .map(|name| {
                    Issue::error(
                        fhir::IssueType::NotSupported,
                        format!("{name}: not a parameter of this interaction"),
                    )
                })
                .collect(),
        )),
        Handling::Lenient => Ok(unknown
            .iter()
            .map(|name| Issue::warning(fhir::IssueType::NotSupported, diagnostics(name)))
            .collect()),
    }
}

/// The entry that reports ignored parameters and other warnings (`search.mode = outcome`).
pub(crate) fn outcome_entry(issues: &[Issue]) -> Entry {
    Entry {
        full_url: None,
        resource: Shown::Shaped(fhir::outcome::operation_outcome(issues)),
        mode: "outcome",
    }
}

/// The included resources that can be reached from the shown matches through shown resources only,
/// following references either way (`_include` forwards, `_revinclude` backwards). An include that
/// the store found through a withheld match or a withheld resource of an `:iterate` chain would
/// tell what that resource refers to, so it is left out.
fn reachable<'a>(matches: &[&'a Stored], included: Vec<&'a Stored>) -> Result<Vec<&'a Stored>> {
    let key = |s: &Stored| format!("{}/{}", s.resource_type, s.id);
    let mut reached: std::collections::HashSet<String> = matches.iter().map(|s| key(s)).collect();
    // What each shown resource refers to.
    let mut refers: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for stored in matches.iter().chain(included.iter()) {
        let mut targets = std::collections::HashSet::new();
        collect_references(&parse_stored(stored)?, &mut targets);
        refers.insert(key(stored), targets);
    }
    let order = included.clone();
    let mut pending: Vec<&Stored> = included;
    loop {
        let before = pending.len();
        pending.retain(|candidate| {
            let k = key(candidate);
            let forward = reached
                .iter()
                .any(|r| refers.get(r).is_some_and(|t| t.contains(&k)));
            let backward = refers
                .get(&k)
                .is_some_and(|t| t.iter().any(|r| reached.contains(r)));
            if forward || backward {
                reached.insert(k);
                false
            } else {
                true
            }
        });
        if pending.len() == before {
            break;
        }
    }
    let left_out: std::collections::HashSet<String> = pending.iter().map(|s| key(s)).collect();
    Ok(order
        .into_iter()
        .filter(|s| !left_out.contains(&key(s)))
        .collect())
}

/// Every relative reference (`Type/id`, with any `_history` part dropped) in a resource.
fn collect_references(value: &Value, out: &mut std::collections::HashSet<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) => {
                        let parts = r.split('/').collect::<Vec<_>>();
                        // `.../Type/id` or `.../Type/id/_history/n`.
                        let (ty, id) = match parts.as_slice() {
                            [.., ty, id, "_history", _] => (*ty, *id),
                            [.., ty, id] => (*ty, *id),
                            _ => continue,
                        };
                        out.insert(format!("{ty}/{id}"));
                    }
                    _ => collect_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// Calls `found` for every relative reference (`Type/id`) in `resource` whose type is not in the
/// Patient compartment (those are `$everything`'s extra resources).
fn collect_outside_references(resource: &Value, found: &mut impl FnMut(&str, &str)) {
    match resource {
        Value::Object(obj) => {
            for (key, value) in obj {
                if key == "reference" {
                    if let Some((ty, id)) = value.as_str().and_then(|r| r.split_once('/')) {
                        if !id.contains('/')
                            && ty != "Patient"
                            && fhir::definitions::is_resource_type(ty)
                            && fhir::definitions::patient_compartment_params(ty).is_empty()
                            && super::support::is_valid_id(id)
                        {
                            found(ty, id);
                        }
                    }
                } else {
                    collect_outside_references(value, found);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_outside_references(v, found)),
        _ => {}
    }
}

/// The search as the audit trail records it: `Type?params` (or `?params` across all types).
fn search_query(resource_type: Option<&str>, params: &[(String, String)]) -> String {
    format!("{}?{}", resource_type.unwrap_or(""), encode_query(params))
}
