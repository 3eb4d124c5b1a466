//! Batch and transaction bundles.
//!
//! A transaction is atomic: every entry is checked and validated first, then the targets are
//! resolved in the order the specification prescribes (DELETE, POST, PUT/PATCH, GET/HEAD), `urn:uuid`
//! full URLs and conditional references are replaced by the assigned `Type/id` everywhere in the
//! bundle's resources, and every write goes to the store in one `commit`. Any bad entry fails the
//! whole bundle with an OperationOutcome that names the entry; nothing is stored. A lost race with
//! another writer retries the whole transaction a few times before answering 409.
//!
//! A batch runs each entry on its own, through the same use cases as the single interactions, and
//! reports each entry's failure in its own response.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde_json::{json, Value};
use store::{HistoryScope, StoreError, Write};

use super::labelling::Staged;
use super::support::{
    check_body_type, check_id, check_type, delete_write, etag, is_valid_id, new_id, now_millis,
    parse_query_string, stamp, validate, versioned,
};
use super::{Error, Handling, Repository, Result};
use crate::access::Requester;
use fhir::search::datetime::format_instant;
use fhir::{Issue, IssueType};

/// How often a transaction that lost a race is run again before answering 409.
const TRANSACTION_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    // The order of the variants is the order a transaction processes its entries in.
    Delete,
    Post,
    Put,
    Patch,
    Get,
    Head,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// A request URL relative to the base: its path segments and its query, if it has one.
#[derive(Debug, Clone)]
struct Url {
    segments: Vec<String>,
    query: Option<Vec<(String, String)>>,
}

/// One entry of a transaction after the checks that need no store.
#[derive(Debug)]
struct Planned {
    index: usize,
    full_url: Option<String>,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Create {
        ty: String,
        resource: Value,
        if_none_exist: Option<Vec<(String, String)>>,
    },
    Update {
        ty: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    UpdateIf {
        ty: String,
        params: Vec<(String, String)>,
        resource: Value,
    },
    Patch {
        ty: String,
        id: String,
        patch: json_patch::Patch,
        if_match: Option<i64>,
    },
    Delete {
        ty: String,
        id: String,
        if_match: Option<i64>,
    },
    DeleteIf {
        ty: String,
        params: Vec<(String, String)>,
    },
    Read {
        url: String,
    },
}

impl Action {
    fn method(&self) -> Method {
        match self {
            Action::Create { .. } => Method::Post,
            Action::Update { .. } | Action::UpdateIf { .. } => Method::Put,
            Action::Patch { .. } => Method::Patch,
            Action::Delete { .. } | Action::DeleteIf { .. } => Method::Delete,
            Action::Read { .. } => Method::Get,
        }
    }
}

/// What a transaction entry resolved to before the store is asked for current versions.
#[derive(Debug, Clone)]
enum Target {
    /// A new resource with a server-assigned id.
    New { ty: String, id: String },
    /// A write to an existing or explicitly named resource (update, patch, delete).
    Existing { ty: String, id: String },
    /// A conditional create that matched: nothing is written.
    Matched {
        ty: String,
        id: String,
        version: i64,
        last_updated: i64,
    },
    /// Nothing to do (a conditional delete without a match).
    Nothing,
    /// A read, done after the writes.
    Read,
}

/// The response of one entry.
#[derive(Debug, Clone)]
struct Done {
    status: &'static str,
    ty: String,
    id: String,
    version: i64,
    last_updated: i64,
}

impl Repository {
    /// `POST /` with a `batch` or `transaction` Bundle; answers the `batch-response` or
    /// `transaction-response` Bundle.
    pub async fn bundle(&self, who: &Requester, body: Value) -> Result<Value> {
        if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::Invalid(vec![Issue::error(
                IssueType::Invalid,
                "the body of a POST to the base is not a Bundle",
            )]));
        }
        let kind = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Value::Object(mut obj) = body else {
            return Err(Error::Invalid(vec![Issue::error(
                IssueType::Structure,
                "the body is not a JSON object",
            )]));
        };
        let entries = match obj.remove("entry") {
            Some(Value::Array(entries)) => entries,
            None => Vec::new(),
            Some(_) => {
                return Err(Error::Invalid(vec![Issue::error(
                    IssueType::Structure,
                    "Bundle.entry must be an array",
                )
                .at("Bundle.entry")]))
            }
        };
        match kind.as_str() {
            "transaction" => self.transaction(who, entries).await,
            "batch" => Ok(self.batch(who, entries).await),
            other => Err(Error::Invalid(vec![Issue::error(
                IssueType::Value,
                format!(
                    "Bundle.type must be 'transaction' or 'batch' to be processed, not '{other}'"
                ),
            )
            .at("Bundle.type")])),
        }
    }

    async fn transaction(&self, who: &Requester, entries: Vec<Value>) -> Result<Value> {
        let started = std::time::Instant::now();
        let count = entries.len();
        let mut issues = Vec::new();
        let mut planned = Vec::with_capacity(count);
        for (index, entry) in entries.into_iter().enumerate() {
            match self.plan(index, entry) {
                Ok(p) => planned.push(p),
                Err(mut found) => issues.append(&mut found),
            }
        }
        if !issues.is_empty() {
            return Err(Error::Invalid(issues));
        }
        check_duplicates(&planned)?;
        // Every write entry is authorized before anything is read or written: one refused entry
        // refuses the whole transaction (reads are checked as they run, after the commit).
        for p in &planned {
            use crate::access::Interaction as Access;
            let (interaction, ty) = match &p.action {
                Action::Create { ty, .. } => (Access::Create, ty),
                Action::Update { ty, .. } | Action::UpdateIf { ty, .. } => (Access::Update, ty),
                Action::Patch { ty, .. } => (Access::Update, ty),
                Action::Delete { ty, .. } | Action::DeleteIf { ty, .. } => (Access::Delete, ty),
                Action::Read { .. } => continue,
            };
            self.authorize(
                who,
                interaction,
                Some(ty),
                crate::audit::Interaction::Transaction,
            )
            .await
            .map_err(|error| Error::Entry {
                index: p.index,
                error: Box::new(error),
            })?;
        }
        // A bundle of plain creates (the usual import) cannot lose a race: its ids are new. Its
        // resources can then be moved into the writes instead of copied for a possible retry.
        let consume = planned.iter().all(|p| {
            matches!(
                p.action,
                Action::Create {
                    if_none_exist: None,
                    ..
                } | Action::Read { .. }
            )
        });
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_transaction(who, &mut planned, consume).await {
                Err(Error::Store(StoreError::Conflict { .. })) if consume => {
                    return Err(Error::Conflict)
                }
                Err(Error::Store(StoreError::Conflict { .. })) => {
                    tracing::debug!(request_id = %who.request_id, attempt, "transaction lost a race; retrying");
                    continue;
                }
                Err(e) => return Err(e),
                Ok(response) => {
                    tracing::debug!(
                        request_id = %who.request_id,
                        entries = count,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "transaction"
                    );
                    return Ok(response);
                }
            }
        }
        Err(Error::Conflict)
    }

    /// Checks one transaction entry and validates its resource: every problem found, each named by
    /// its place in the bundle.
    fn plan(&self, index: usize, mut entry: Value) -> Result<Planned, Vec<Issue>> {
        let at = |path: &str| format!("Bundle.entry[{index}]{path}");
        let fail = |code: IssueType, path: &str, msg: String| {
            vec![Issue::error(code, format!("Bundle.entry[{index}]: {msg}")).at(at(path))]
        };
        let full_url = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string);
        let request = entry.get("request").cloned().unwrap_or(Value::Null);
        let method_name = request.get("method").and_then(Value::as_str).unwrap_or("");
        let Some(method) = Method::parse(method_name) else {
            return Err(fail(
                IssueType::Required,
                ".request.method",
                format!("unknown or missing request method '{method_name}'"),
            ));
        };
        let Some(url_text) = request.get("url").and_then(Value::as_str) else {
            return Err(fail(
                IssueType::Required,
                ".request.url",
                "the request url is missing".into(),
            ));
        };
        let url = self.split_url(url_text);
        let if_match = match request.get("ifMatch").and_then(Value::as_str) {
            Some(tag) => Some(parse_etag(tag).ok_or_else(|| {
                fail(
                    IssueType::Value,
                    ".request.ifMatch",
                    format!("'{tag}' is not a version ETag"),
                )
            })?),
            None => None,
        };
        let resource = entry.as_object_mut().and_then(|e| e.remove("resource"));
        let target_type = || -> Result<String, Vec<Issue>> {
            let ty = url.segments.first().cloned().unwrap_or_default();
            if check_type(&ty).is_err() {
                return Err(fail(
                    IssueType::NotSupported,
                    ".request.url",
                    format!("'{ty}' is not a resource type"),
                ));
            }
            Ok(ty)
        };
        let needs_resource = |resource: Option<Value>, ty: &str| -> Result<Value, Vec<Issue>> {
            let Some(resource) = resource else {
                return Err(fail(
                    IssueType::Required,
                    ".resource",
                    format!("a {method_name} entry needs a resource"),
                ));
            };
            if let Err(e) = check_body_type(&resource, ty) {
                return Err(rebase(index, e.issues()));
            }
            if let Err(e) = validate(&resource) {
                return Err(rebase(index, e.issues()));
            }
            Ok(resource)
        };
        let action = match method {
            Method::Post => {
                let ty = target_type()?;
                if url.segments.len() != 1 || url.query.is_some() {
                    return Err(fail(
                        IssueType::Invalid,
                        ".request.url",
                        "a POST entry's url is the resource type".into(),
                    ));
                }
                let resource = needs_resource(resource, &ty)?;
                let if_none_exist = request
                    .get("ifNoneExist")
                    .and_then(Value::as_str)
                    .map(parse_query_string);
                Action::Create {
                    ty,
                    resource,
                    if_none_exist,
                }
            }
            Method::Put | Method::Delete | Method::Patch => {
                let ty = target_type()?;
                let conditional = url.query.clone();
                match (url.segments.len(), conditional) {
                    (2, None) => {
                        let id = url.segments[1].clone();
                        if !is_valid_id(&id) {
                            return Err(fail(
                                IssueType::Value,
                                ".request.url",
                                format!("'{id}' is not a valid id"),
                            ));
                        }
                        match method {
                            Method::Put => {
                                let resource = needs_resource(resource, &ty)?;
                                if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                                    return Err(fail(
                                        IssueType::Invalid,
                                        ".resource.id",
                                        "the resource's id must be the id in the request url"
                                            .into(),
                                    ));
                                }
                                Action::Update {
                                    ty,
                                    id,
                                    resource,
                                    if_match,
                                }
                            }
                            Method::Patch => {
                                let patch = patch_document(resource)
                                    .map_err(|msg| fail(IssueType::Invalid, ".resource", msg))?;
                                Action::Patch {
                                    ty,
                                    id,
                                    patch,
                                    if_match,
                                }
                            }
                            _ => Action::Delete { ty, id, if_match },
                        }
                    }
                    (1, Some(params)) if method == Method::Put => {
                        let resource = needs_resource(resource, &ty)?;
                        Action::UpdateIf {
                            ty,
                            params,
                            resource,
                        }
                    }
                    (1, Some(params)) if method == Method::Delete => {
                        Action::DeleteIf { ty, params }
                    }
                    _ => {
                        return Err(fail(
                            IssueType::Invalid,
                            ".request.url",
                            format!("unsupported url for {method_name}: '{url_text}'"),
                        ))
                    }
                }
            }
            Method::Get | Method::Head => {
                // A read that cannot succeed whatever the writes do fails the transaction before
                // anything is written (reads run after the commit).
                if let Err(e) = self.check_read_url(&url) {
                    return Err(e
                        .issues()
                        .into_iter()
                        .map(|mut issue| {
                            issue.diagnostics =
                                format!("Bundle.entry[{index}]: {}", issue.diagnostics);
                            issue.expression = vec![at(".request.url")];
                            issue
                        })
                        .collect());
                }
                Action::Read {
                    url: url_text.to_string(),
                }
            }
        };
        Ok(Planned {
            index,
            full_url,
            action,
        })
    }

    /// One run of a transaction against the current state of the store.
    /// With `consume`, the resources are moved out of `planned`: there is no second attempt.
    async fn try_transaction(
        &self,
        who: &Requester,
        planned: &mut [Planned],
        consume: bool,
    ) -> Result<Value> {
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| planned[i].action.method().rank());

        // Resolve every entry's target, in processing order, and the full URLs they answer to.
        let mut targets: Vec<Target> = vec![Target::Nothing; planned.len()];
        let mut ids: HashMap<String, String> = HashMap::new();
        for &i in &order {
            let p = &planned[i];
            let entry_err = |error: Error| Error::Entry {
                index: p.index,
                error: Box::new(error),
            };
            let target = match &p.action {
                Action::Create {
                    ty,
                    if_none_exist: Some(params),
                    ..
                } => {
                    match self
                        .match_condition(who, ty, params, "ifNoneExist")
                        .await
                        .map_err(entry_err)?
                    {
                        Some(found) => Target::Matched {
                            ty: ty.clone(),
                            id: found.id,
                            version: found.version,
                            last_updated: found.last_updated,
                        },
                        None => Target::New {
                            ty: ty.clone(),
                            id: new_id(),
                        },
                    }
                }
                Action::Create { ty, .. } => Target::New {
                    ty: ty.clone(),
                    id: new_id(),
                },
                Action::Update { ty, id, .. }
                | Action::Patch { ty, id, .. }
                | Action::Delete { ty, id, .. } => Target::Existing {
                    ty: ty.clone(),
                    id: id.clone(),
                },
                Action::UpdateIf {
                    ty,
                    params,
                    resource,
                } => {
                    let body_id = resource.get("id").and_then(Value::as_str);
                    match self
                        .match_condition(who, ty, params, "conditional update")
                        .await
                        .map_err(entry_err)?
                    {
                        Some(found) => {
                            if body_id.is_some_and(|b| b != found.id) {
                                return Err(entry_err(Error::Invalid(vec![Issue::error(
                                    IssueType::Invalid,
                                    "the resource's id is not the id of the resource the condition matched",
                                )])));
                            }
                            Target::Existing {
                                ty: ty.clone(),
                                id: found.id,
                            }
                        }
                        None => match body_id {
                            Some(id) => Target::Existing {
                                ty: ty.clone(),
                                id: id.to_string(),
                            },
                            None => Target::New {
                                ty: ty.clone(),
                                id: new_id(),
                            },
                        },
                    }
                }
                Action::DeleteIf { ty, params } => {
                    match self
                        .match_condition(who, ty, params, "conditional delete")
                        .await
                        .map_err(entry_err)?
                    {
                        Some(found) => Target::Existing {
                            ty: ty.clone(),
                            id: found.id,
                        },
                        None => Target::Nothing,
                    }
                }
                Action::Read { .. } => Target::Read,
            };
            if let (
                Some(full_url),
                Target::New { ty, id }
                | Target::Existing { ty, id }
                | Target::Matched { ty, id, .. },
            ) = (&p.full_url, &target)
            {
                if !matches!(p.action, Action::Delete { .. } | Action::DeleteIf { .. }) {
                    ids.insert(full_url.clone(), format!("{ty}/{id}"));
                }
            }
            targets[i] = target;
        }
        check_resolved_duplicates(planned, &targets)?;
        self.check_reads(who, planned, &targets).await?;

        // One question to the store for the current version of every resource written by name.
        let mut keys = Vec::new();
        let mut key_of = vec![usize::MAX; planned.len()];
        for (i, target) in targets.iter().enumerate() {
            if let Target::Existing { ty, id } = target {
                key_of[i] = keys.len();
                keys.push((ty.clone(), id.clone()));
            }
        }
        let current = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.current(&keys).await?
        };

        let mut owned: Vec<Option<Value>> = Vec::new();
        if consume {
            owned = planned
                .iter_mut()
                .map(|p| match &mut p.action {
                    Action::Create { resource, .. } => Some(std::mem::take(resource)),
                    _ => None,
                })
                .collect();
        }
        let planned: &[Planned] = planned;

        let now = now_millis();
        // Deletes as they come (`Some`), and a `None` where the next staged resource goes, so that
        // the writes keep the processing order once the staged ones are labelled.
        let mut writes: Vec<Option<Write>> = Vec::with_capacity(planned.len());
        let mut staged: Vec<Staged> = Vec::new();
        let mut done: Vec<Option<Done>> = vec![None; planned.len()];
        for &i in &order {
            let p = &planned[i];
            let entry_err = |error: Error| Error::Entry {
                index: p.index,
                error: Box::new(error),
            };
            let cur = if key_of[i] == usize::MAX {
                None
            } else {
                current.get(key_of[i]).copied().flatten()
            };
            match (&p.action, &targets[i]) {
                (
                    _,
                    Target::Matched {
                        ty,
                        id,
                        version,
                        last_updated,
                    },
                ) => {
                    done[i] = Some(Done {
                        status: "200 OK",
                        ty: ty.clone(),
                        id: id.clone(),
                        version: *version,
                        last_updated: *last_updated,
                    });
                }
                (_, Target::Nothing) => {
                    done[i] = Some(Done {
                        status: "204 No Content",
                        ty: String::new(),
                        id: String::new(),
                        version: 0,
                        last_updated: now,
                    });
                }
                (_, Target::Read) => {}
                (Action::Delete { .. } | Action::DeleteIf { .. }, Target::Existing { ty, id }) => {
                    done[i] = Some(Done {
                        status: "204 No Content",
                        ty: String::new(),
                        id: String::new(),
                        version: 0,
                        last_updated: now,
                    });
                    // A withheld resource is answered as an absent one: nothing is deleted.
                    let visible = self.visible(who, ty, id).await?;
                    if let Action::Delete {
                        if_match: Some(expected),
                        ..
                    } = &p.action
                    {
                        let live = cur
                            .filter(|c| !c.deleted && visible)
                            .map(|c| c.version)
                            .unwrap_or(0);
                        if *expected != live {
                            return Err(entry_err(Error::PreconditionFailed { current: live }));
                        }
                    }
                    if let Some(c) = cur.filter(|c| !c.deleted && visible) {
                        writes.push(Some(delete_write(ty, id, c.version, now)));
                        done[i] = Some(Done {
                            status: "204 No Content",
                            ty: ty.clone(),
                            id: id.clone(),
                            version: c.version + 1,
                            last_updated: now,
                        });
                    }
                }
                (
                    Action::Create { resource, .. }
                    | Action::UpdateIf { resource, .. }
                    | Action::Update { resource, .. },
                    target,
                ) => {
                    let (ty, id) = match target {
                        Target::New { ty, id } => (ty, id),
                        Target::Existing { ty, id } => {
                            // As `PUT [type]/[id]` answers: a withheld resource is not changed,
                            // and participants do not create data about patients by update.
                            self.check_writable(who, ty, id).await.map_err(entry_err)?;
                            (ty, id)
                        }
                        _ => continue,
                    };
                    if let Action::Update {
                        if_match: Some(expected),
                        ..
                    } = &p.action
                    {
                        let actual = cur.map(|c| c.version).unwrap_or(0);
                        if *expected != actual {
                            return Err(entry_err(Error::PreconditionFailed { current: actual }));
                        }
                    }
                    let (version, expect) = match cur {
                        Some(c) => (c.version + 1, Some(c.version)),
                        None => (1, None),
                    };
                    let created = cur.is_none_or(|c| c.deleted);
                    let mut resource = match owned.get_mut(i).and_then(Option::take) {
                        Some(resource) => resource,
                        None => resource.clone(),
                    };
                    self.resolve_references(who, &mut resource, &mut ids, p.index)
                        .await?;
                    stamp(&mut resource, id, version, now);
                    writes.push(None);
                    staged.push(Staged {
                        resource_type: ty.clone(),
                        id: id.clone(),
                        version,
                        expect,
                        last_updated: now,
                        replaces_live: !created,
                        resource,
                    });
                    let status = if created { "201 Created" } else { "200 OK" };
                    done[i] = Some(Done {
                        status,
                        ty: ty.clone(),
                        id: id.clone(),
                        version,
                        last_updated: now,
                    });
                }
                (
                    Action::Patch {
                        patch, if_match, ..
                    },
                    Target::Existing { ty, id },
                ) => {
                    let Some(c) = cur else {
                        return Err(entry_err(Error::NotFound));
                    };
                    if c.deleted {
                        return Err(entry_err(Error::Gone {
                            version: c.version,
                            last_updated: c.last_updated,
                        }));
                    }
                    if if_match.is_some_and(|v| v != c.version) {
                        return Err(entry_err(Error::PreconditionFailed { current: c.version }));
                    }
                    let stored = self
                        .store
                        .vread(ty, id, c.version)
                        .await?
                        .ok_or_else(|| entry_err(Error::NotFound))?;
                    if !self.gate.decide(who, &stored).await?.is_permit() {
                        return Err(entry_err(Error::NotFound));
                    }
                    let mut resource = versioned(&stored)?.resource;
                    json_patch::patch(&mut resource, patch).map_err(|e| {
                        entry_err(Error::Unprocessable(vec![Issue::error(
                            IssueType::Processing,
                            format!("the patch does not apply: {e}"),
                        )]))
                    })?;
                    if resource.get("resourceType").and_then(Value::as_str) != Some(ty.as_str())
                        || resource.get("id").and_then(Value::as_str) != Some(id.as_str())
                    {
                        return Err(entry_err(Error::Unprocessable(vec![Issue::error(
                            IssueType::Invalid,
                            "a patch may not change the resource's type or id",
                        )])));
                    }
                    validate(&resource).map_err(|e| Error::Invalid(rebase(p.index, e.issues())))?;
                    self.resolve_references(who, &mut resource, &mut ids, p.index)
                        .await?;
                    stamp(&mut resource, id, c.version + 1, now);
                    writes.push(None);
                    staged.push(Staged {
                        resource_type: ty.clone(),
                        id: id.clone(),
                        version: c.version + 1,
                        expect: Some(c.version),
                        last_updated: now,
                        replaces_live: true,
                        resource,
                    });
                    done[i] = Some(Done {
                        status: "200 OK",
                        ty: ty.clone(),
                        id: id.clone(),
                        version: c.version + 1,
                        last_updated: now,
                    });
                }
                _ => {}
            }
        }
        let mut sealed = self.seal(who, &mut staged).await?.into_iter();
        let writes: Vec<Write> = writes
            .into_iter()
            .filter_map(|w| w.or_else(|| sealed.next()))
            .collect();
        let written = writes.len();
        if !writes.is_empty() {
            self.commit_audited(who, crate::audit::Interaction::Transaction, writes)
                .await?;
        }
        tracing::debug!(request_id = %who.request_id, written, "transaction committed");

        // Reads come last and see the transaction's writes.
        let mut responses: Vec<Value> = vec![Value::Null; planned.len()];
        for &i in &order {
            let p = &planned[i];
            responses[i] = match (&p.action, &done[i]) {
                (Action::Read { url }, _) => self.read_entry(who, url).await,
                (_, Some(d)) => self.done_entry(d),
                (_, None) => json!({ "response": { "status": "200 OK" } }),
            };
        }
        Ok(json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "transaction-response",
            "entry": responses,
        }))
    }

    /// Reads of single resources run after the commit; one that will fail (the resource is absent,
    /// deleted or withheld, and no entry of this transaction writes it) fails the transaction now,
    /// before anything is written.
    async fn check_reads(
        &self,
        who: &Requester,
        planned: &[Planned],
        targets: &[Target],
    ) -> Result<()> {
        let written: HashSet<(&str, &str)> = targets
            .iter()
            .filter_map(|t| match t {
                Target::New { ty, id } | Target::Existing { ty, id } => {
                    Some((ty.as_str(), id.as_str()))
                }
                _ => None,
            })
            .collect();
        for p in planned {
            let Action::Read { url } = &p.action else {
                continue;
            };
            let url = self.split_url(url);
            let seg: Vec<&str> = url.segments.iter().map(String::as_str).collect();
            let (ty, id, version) = match seg.as_slice() {
                [ty, id] if *ty != "_history" && *id != "_history" => (*ty, *id, None),
                ["Patient", id, "$everything"] => ("Patient", *id, None),
                [ty, id, "_history", v] => (*ty, *id, v.parse::<i64>().ok()),
                _ => continue,
            };
            if written.contains(&(ty, id)) {
                continue;
            }
            let stored = match version {
                Some(v) => self.store.vread(ty, id, v).await?,
                None => self.store.read(ty, id).await?,
            };
            let failure = match stored {
                None => Some(Error::NotFound),
                Some(s) if !self.gate.decide(who, &s).await?.is_permit() => Some(Error::NotFound),
                Some(s) if s.deleted => Some(Error::Gone {
                    version: s.version,
                    last_updated: s.last_updated,
                }),
                Some(_) => None,
            };
            if let Some(error) = failure {
                return Err(Error::Entry {
                    index: p.index,
                    error: Box::new(error),
                });
            }
        }
        Ok(())
    }

    /// Rewrites the references of one entry's resource: full URLs of the bundle's entries and
    /// conditional references, each of which must match exactly one resource.
    async fn resolve_references(
        &self,
        who: &Requester,
        resource: &mut Value,
        ids: &mut HashMap<String, String>,
        index: usize,
    ) -> Result<()> {
        let mut unresolved = Vec::new();
        let rewritten = rewrite_references(resource, ids, &mut unresolved);
        if unresolved.is_empty() {
            return revalidate(resource, rewritten, index);
        }
        let entry_err = |error: Error| Error::Entry {
            index,
            error: Box::new(error),
        };
        for reference in unresolved {
            let (ty, query) = reference
                .split_once('?')
                .unwrap_or((reference.as_str(), ""));
            if check_type(ty).is_err() {
                return Err(entry_err(Error::Invalid(vec![Issue::error(
                    IssueType::Invalid,
                    format!("conditional reference '{reference}' does not name a resource type"),
                )])));
            }
            let params = parse_query_string(query);
            match self
                .match_condition(who, ty, &params, "conditional reference")
                .await
                .map_err(entry_err)?
            {
                Some(found) => {
                    ids.insert(reference.clone(), format!("{ty}/{}", found.id));
                }
                None => {
                    return Err(entry_err(Error::Invalid(vec![Issue::error(
                        IssueType::NotFound,
                        format!("conditional reference '{reference}' matches no resource"),
                    )])))
                }
            }
        }
        let rewritten = rewritten + rewrite_references(resource, ids, &mut Vec::new());
        revalidate(resource, rewritten, index)
    }

    fn done_entry(&self, d: &Done) -> Value {
        if d.id.is_empty() {
            return json!({ "response": { "status": d.status } });
        }
        let mut response = json!({ "status": d.status });
        if d.status != "204 No Content" {
            response["location"] = json!(format!("{}/{}/_history/{}", d.ty, d.id, d.version));
        }
        response["etag"] = json!(etag(d.version));
        response["lastModified"] = json!(format_instant(d.last_updated));
        if d.status == "204 No Content" {
            return json!({ "response": response });
        }
        json!({ "fullUrl": self.full_url(&d.ty, &d.id), "response": response })
    }

    /// A batch: each entry on its own, in the order given, through the single interactions.
    async fn batch(&self, who: &Requester, entries: Vec<Value>) -> Value {
        let mut responses = Vec::with_capacity(entries.len());
        for mut entry in entries {
            let response = match self.batch_entry(who, &mut entry).await {
                Ok(response) => response,
                Err(e) => error_entry(&e),
            };
            responses.push(response);
        }
        json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "batch-response",
            "entry": responses,
        })
    }

    async fn batch_entry(&self, who: &Requester, entry: &mut Value) -> Result<Value> {
        let request = entry.get("request").cloned().unwrap_or(Value::Null);
        let method_name = request.get("method").and_then(Value::as_str).unwrap_or("");
        let method = Method::parse(method_name).ok_or_else(|| {
            Error::Invalid(vec![Issue::error(
                IssueType::Required,
                format!("unknown or missing request method '{method_name}'"),
            )])
        })?;
        let url_text = request.get("url").and_then(Value::as_str).ok_or_else(|| {
            Error::Invalid(vec![Issue::error(
                IssueType::Required,
                "the request url is missing",
            )])
        })?;
        if matches!(method, Method::Get | Method::Head) {
            return Ok(self.read_entry(who, url_text).await);
        }
        let url = self.split_url(url_text);
        let if_match = match request.get("ifMatch").and_then(Value::as_str) {
            Some(tag) => Some(parse_etag(tag).ok_or_else(|| {
                Error::Invalid(vec![Issue::error(
                    IssueType::Value,
                    format!("'{tag}' is not a version ETag"),
                )])
            })?),
            None => None,
        };
        let resource = entry.as_object_mut().and_then(|e| e.remove("resource"));
        let need = |resource: Option<Value>| {
            resource.ok_or_else(|| {
                Error::Invalid(vec![Issue::error(
                    IssueType::Required,
                    format!("a {method_name} entry needs a resource"),
                )])
            })
        };
        let ty = url.segments.first().cloned().unwrap_or_default();
        let outcome = match (method, url.segments.len(), url.query) {
            (Method::Post, 1, None) => {
                let if_none_exist = request.get("ifNoneExist").and_then(Value::as_str);
                self.create(who, &ty, need(resource)?, if_none_exist)
                    .await?
            }
            (Method::Put, 2, None) => {
                self.update(who, &ty, &url.segments[1], need(resource)?, if_match)
                    .await?
            }
            (Method::Put, 1, Some(params)) => {
                self.conditional_update(who, &ty, &params, need(resource)?)
                    .await?
            }
            (Method::Patch, 2, None) => {
                let patch = patch_document(resource)
                    .map_err(|msg| Error::Invalid(vec![Issue::error(IssueType::Invalid, msg)]))?;
                let patch = serde_json::to_value(patch).unwrap_or(Value::Null);
                self.patch(who, &ty, &url.segments[1], patch, if_match)
                    .await?
            }
            (Method::Delete, 2, None) => {
                self.delete_if_match(who, &ty, &url.segments[1], if_match)
                    .await?;
                return Ok(json!({ "response": { "status": "204 No Content" } }));
            }
            (Method::Delete, 1, Some(params)) => {
                self.conditional_delete(who, &ty, &params).await?;
                return Ok(json!({ "response": { "status": "204 No Content" } }));
            }
            _ => {
                return Err(Error::Invalid(vec![Issue::error(
                    IssueType::Invalid,
                    format!("unsupported url for {method_name}: '{url_text}'"),
                )]))
            }
        };
        let v = &outcome.resource;
        let status = if outcome.created {
            "201 Created"
        } else {
            "200 OK"
        };
        Ok(self.done_entry(&Done {
            status,
            ty: v.resource_type.clone(),
            id: v.id.clone(),
            version: v.version,
            last_updated: v.last_updated,
        }))
    }

    /// A GET entry of a batch or transaction: read, vread, history, search, `$everything`. Failures
    /// are the entry's own response.
    async fn read_entry(&self, who: &Requester, url_text: &str) -> Value {
        match self.get(who, url_text).await {
            Ok(entry) => entry,
            Err(e) => error_entry(&e),
        }
    }

    async fn get(&self, who: &Requester, url_text: &str) -> Result<Value> {
        let url = self.split_url(url_text);
        let params = url.query.clone().unwrap_or_default();
        let seg: Vec<&str> = url.segments.iter().map(String::as_str).collect();
        let bundle =
            |resource: Value| json!({ "resource": resource, "response": { "status": "200 OK" } });
        let one = |v: super::Versioned| {
            json!({
                "fullUrl": self.full_url(&v.resource_type, &v.id),
                "resource": v.resource,
                "response": {
                    "status": "200 OK",
                    "etag": etag(v.version),
                    "lastModified": format_instant(v.last_updated),
                },
            })
        };
        match seg.as_slice() {
            [] => Ok(bundle(
                self.search(who, None, &params, Handling::Lenient)
                    .await?
                    .to_value(),
            )),
            ["metadata"] => Ok(bundle(self.capability_statement())),
            ["_history"] => Ok(bundle(
                self.history(who, HistoryScope::System, &params).await?,
            )),
            [ty] => Ok(bundle(
                self.search(who, Some(ty), &params, Handling::Lenient)
                    .await?
                    .to_value(),
            )),
            [ty, "_history"] => Ok(bundle(
                self.history(who, HistoryScope::Type(ty.to_string()), &params)
                    .await?,
            )),
            ["Patient", id, "$everything"] => {
                Ok(bundle(self.everything(who, id, &params).await?.to_value()))
            }
            [ty, id] => Ok(one(self.read(who, ty, id).await?)),
            [ty, id, "_history"] => {
                check_type(ty)?;
                check_id(id)?;
                let scope = HistoryScope::Instance(ty.to_string(), id.to_string());
                Ok(bundle(self.history(who, scope, &params).await?))
            }
            [ty, id, "_history", version] => {
                let version = version.parse::<i64>().map_err(|_| Error::NotFound)?;
                Ok(one(self.vread(who, ty, id, version).await?))
            }
            _ => Err(Error::NotSupported(format!(
                "unsupported request url '{url_text}'"
            ))),
        }
    }

    /// The checks of a GET entry's url that need no store: a url this server answers, known types,
    /// valid ids and versions, and well-formed parameters.
    fn check_read_url(&self, url: &Url) -> Result<()> {
        let params = url.query.clone().unwrap_or_default();
        let seg: Vec<&str> = url.segments.iter().map(String::as_str).collect();
        let check_type = |ty: &str| -> Result<()> {
            check_type(ty).map_err(|_| {
                Error::Invalid(vec![Issue::error(
                    IssueType::NotSupported,
                    format!("'{ty}' is not a resource type"),
                )])
            })
        };
        let search = |ty: Option<&str>| -> Result<()> {
            fhir::search::parse::parse(ty, &params, false)
                .map(|_| ())
                .map_err(Error::Invalid)
        };
        let history = || -> Result<()> {
            for (name, value) in &params {
                match name.as_str() {
                    "_since" | "_at" => {
                        super::support::parse_instant_param(name, value)?;
                    }
                    "_count" => {
                        super::support::parse_count(name, value)?;
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        match seg.as_slice() {
            [] => search(None),
            ["metadata"] => Ok(()),
            ["_history"] => history(),
            [ty] => {
                check_type(ty)?;
                search(Some(ty))
            }
            [ty, "_history"] => {
                check_type(ty)?;
                history()
            }
            ["Patient", id, "$everything"] => check_id(id),
            [ty, id] => {
                check_type(ty)?;
                check_id(id)
            }
            [ty, id, "_history"] => {
                check_type(ty)?;
                check_id(id)?;
                history()
            }
            [ty, id, "_history", version] => {
                check_type(ty)?;
                check_id(id)?;
                version.parse::<i64>().map(|_| ()).map_err(|_| {
                    Error::Invalid(vec![Issue::error(
                        IssueType::Value,
                        format!("'{version}' is not a version number"),
                    )])
                })
            }
            _ => Err(Error::NotSupported("unsupported request url".to_string())),
        }
    }

    /// Splits a request url (relative, or absolute under this server's base) into path segments and query.
    fn split_url(&self, url: &str) -> Url {
        let base = self.config.base_url.trim_end_matches('/');
        let relative = url.strip_prefix(base).unwrap_or(url);
        let (path, query) = match relative.split_once('?') {
            Some((path, query)) => (path, Some(parse_query_string(query))),
            None => (relative, None),
        };
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Url { segments, query }
    }
}

/// Checks a resource again once references to other entries (which name no type before they are
/// resolved, so validation could not check them) have become `Type/id`: each reference may only
/// point at the types its element allows. Only the references are walked, not the whole validation.
fn revalidate(resource: &Value, rewritten: usize, index: usize) -> Result<()> {
    if rewritten == 0 {
        return Ok(());
    }
    let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
        return Ok(());
    };
    let mut issues = Vec::new();
    let mut path = Vec::new();
    check_targets(resource, ty, &mut path, &mut |path, message| {
        let mut at = format!("Bundle.entry[{index}].resource");
        for (key, i) in path {
            at.push('.');
            at.push_str(key);
            if let Some(i) = i {
                at.push_str(&format!("[{i}]"));
            }
        }
        at.push_str(".reference");
        issues.push(Issue::error(IssueType::Value, message).at(at));
    });
    if issues.is_empty() {
        Ok(())
    } else {
        Err(Error::Entry {
            index,
            error: Box::new(Error::Invalid(issues)),
        })
    }
}

/// Where [`check_targets`] is: the element names (and array positions) from the resource down.
type TargetPath<'a> = Vec<(&'a str, Option<usize>)>;

/// Walks `value`, an object of type `ty`, and reports every relative reference (`Type/id`) whose
/// type its element does not allow.
fn check_targets<'a>(
    value: &'a Value,
    ty: &str,
    path: &mut TargetPath<'a>,
    report: &mut dyn FnMut(&TargetPath<'a>, String),
) {
    let (Some(obj), Some(def)) = (value.as_object(), fhir::definitions::type_def(ty)) else {
        return;
    };
    for (key, child) in obj {
        if !(child.is_object() || child.is_array()) {
            continue;
        }
        let Some((element, child_ty)) = def.element_for_key(key) else {
            continue;
        };
        let mut visit = |i: Option<usize>, item: &'a Value, path: &mut TargetPath<'a>| {
            if !item.is_object() {
                return;
            }
            path.push((key.as_str(), i));
            let item_ty = if child_ty == "Resource" {
                item.get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            } else {
                child_ty
            };
            if item_ty == "Reference" && !element.targets.is_empty() {
                if let Some(target) = item
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(relative_type)
                {
                    if !element
                        .targets
                        .iter()
                        .any(|t| fhir::definitions::is_a(target, t))
                    {
                        let message = format!(
                            "a reference here points at {}, not {target}",
                            element.targets.join(" or ")
                        );
                        report(path, message);
                    }
                }
            }
            check_targets(item, item_ty, path, report);
            path.pop();
        };
        match child {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    visit(Some(i), item, path);
                }
            }
            item => visit(None, item, path),
        }
    }
}

/// The type of a relative reference `Type/id` (or `Type/id/_history/n`).
fn relative_type(reference: &str) -> Option<&str> {
    let (ty, rest) = reference.split_once('/')?;
    (fhir::definitions::is_resource_type(ty) && !rest.is_empty()).then_some(ty)
}

/// `W/"3"`, `"3"` or `3` → 3.
fn parse_etag(tag: &str) -> Option<i64> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.trim_matches('"').parse().ok()
}

/// The JSON Patch document of a PATCH entry: a Binary whose data is the base64 of the patch.
fn patch_document(resource: Option<Value>) -> Result<json_patch::Patch, String> {
    let resource =
        resource.ok_or("a PATCH entry needs a Binary resource holding the JSON Patch")?;
    let patch = match resource.get("resourceType").and_then(Value::as_str) {
        Some("Binary") => {
            let data = resource
                .get("data")
                .and_then(Value::as_str)
                .ok_or("the Binary has no data")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("the Binary's data is not base64: {e}"))?;
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| format!("the Binary's data is not JSON: {e}"))?
        }
        Some("Parameters") => {
            return Err("FHIRPath Patch is not supported; use JSON Patch in a Binary".into())
        }
        _ => return Err("a PATCH entry needs a Binary resource holding the JSON Patch".into()),
    };
    serde_json::from_value(patch).map_err(|e| format!("not a JSON Patch document: {e}"))
}

/// Moves the issues of a resource's validation to its place in the bundle:
/// `Patient.name[0]` → `Bundle.entry[3].resource.name[0]`.
fn rebase(index: usize, issues: Vec<Issue>) -> Vec<Issue> {
    let prefix = format!("Bundle.entry[{index}].resource");
    issues
        .into_iter()
        .map(|mut issue| {
            issue.expression = if issue.expression.is_empty() {
                vec![prefix.clone()]
            } else {
                issue
                    .expression
                    .iter()
                    .map(|e| match e.find(['.', '[']) {
                        Some(pos) => format!("{prefix}{}", &e[pos..]),
                        None => prefix.clone(),
                    })
                    .collect()
            };
            issue
        })
        .collect()
}

/// A transaction may touch each resource once.
fn check_duplicates(planned: &[Planned]) -> Result<()> {
    let mut seen = HashSet::new();
    for p in planned {
        let key = match &p.action {
            Action::Update { ty, id, .. }
            | Action::Patch { ty, id, .. }
            | Action::Delete { ty, id, .. } => (ty, id),
            _ => continue,
        };
        if !seen.insert(key) {
            return Err(duplicate(p.index, key.0, key.1));
        }
    }
    Ok(())
}

fn check_resolved_duplicates(planned: &[Planned], targets: &[Target]) -> Result<()> {
    let mut seen = HashSet::new();
    for (p, target) in planned.iter().zip(targets) {
        if let Target::Existing { ty, id } | Target::New { ty, id } = target {
            if !seen.insert((ty, id)) {
                return Err(duplicate(p.index, ty, id));
            }
        }
    }
    Ok(())
}

fn duplicate(index: usize, ty: &str, id: &str) -> Error {
    Error::Entry {
        index,
        error: Box::new(Error::Invalid(vec![Issue::error(
            IssueType::Duplicate,
            format!("the transaction touches {ty}/{id} more than once"),
        )])),
    }
}

/// A failed batch entry, or a failed read of a transaction.
fn error_entry(error: &Error) -> Value {
    json!({
        "response": {
            "status": status_line(error.status()),
            "outcome": error.outcome(),
        }
    })
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    };
    format!("{status} {reason}")
}

/// Replaces every `reference` that names a bundle entry's full URL (or a resolved conditional
/// reference) with the `Type/id` assigned to it, and collects the conditional references
/// (`Type?search`) not resolved yet.
fn rewrite_references(
    value: &mut Value,
    ids: &HashMap<String, String>,
    unresolved: &mut Vec<String>,
) -> usize {
    let mut rewritten = 0;
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                if key == "reference" {
                    if let Value::String(reference) = v {
                        if let Some(resolved) = ids.get(reference.as_str()) {
                            *reference = resolved.clone();
                            rewritten += 1;
                        } else if is_conditional_reference(reference)
                            && !unresolved.contains(reference)
                        {
                            unresolved.push(reference.clone());
                        }
                    }
                } else if v.is_object() || v.is_array() {
                    rewritten += rewrite_references(v, ids, unresolved);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if item.is_object() || item.is_array() {
                    rewritten += rewrite_references(item, ids, unresolved);
                }
            }
        }
        _ => {}
    }
    rewritten
}

/// `Patient?identifier=x|y`: a type, then a search.
fn is_conditional_reference(reference: &str) -> bool {
    reference
        .split_once('?')
        .is_some_and(|(ty, _)| !ty.is_empty() && !ty.contains('/') && !ty.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        for (tag, expected) in [
            ("W/\"3\"", Some(3)),
            ("\"12\"", Some(12)),
            ("7", Some(7)),
            ("W/\"x\"", None),
        ] {
            assert_eq!(parse_etag(tag), expected, "{tag}");
        }
    }

    #[test]
    fn validation_issues_move_into_the_bundle() {
        let issues = vec![
            Issue::error(IssueType::Value, "bad").at("Patient.birthDate"),
            Issue::error(IssueType::Value, "bad").at("Patient.name[0].given[1]"),
            Issue::error(IssueType::Value, "bad").at("Patient"),
        ];
        let got: Vec<Vec<String>> = rebase(3, issues)
            .into_iter()
            .map(|i| i.expression)
            .collect();
        assert_eq!(
            got,
            vec![
                vec!["Bundle.entry[3].resource.birthDate".to_string()],
                vec!["Bundle.entry[3].resource.name[0].given[1]".to_string()],
                vec!["Bundle.entry[3].resource".to_string()],
            ]
        );
    }

    #[test]
    fn references_are_rewritten_everywhere() {
        let ids: HashMap<String, String> = [("urn:uuid:a".to_string(), "Patient/1".to_string())]
            .into_iter()
            .collect();
        let mut resource = json!({
            "resourceType": "Observation",
            "subject": { "reference": "urn:uuid:a" },
            "extension": [{ "url": "x", "valueReference": { "reference": "urn:uuid:a" } }],
            "performer": [{ "reference": "urn:uuid:unknown" }],
            "note": [{ "text": "urn:uuid:a" }],
            "focus": [{ "reference": "Patient?identifier=x" }, { "reference": "http://other/fhir/Patient?x=1" }],
        });
        let mut unresolved = Vec::new();
        rewrite_references(&mut resource, &ids, &mut unresolved);
        assert_eq!(unresolved, vec!["Patient?identifier=x".to_string()]);
        assert_eq!(resource["subject"]["reference"], "Patient/1");
        assert_eq!(
            resource["extension"][0]["valueReference"]["reference"],
            "Patient/1"
        );
        assert_eq!(resource["performer"][0]["reference"], "urn:uuid:unknown");
        assert_eq!(resource["note"][0]["text"], "urn:uuid:a");
    }
}
