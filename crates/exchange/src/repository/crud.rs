//! The instance interactions: read, vread, create (and conditional create), update (update-as-create,
//! `If-Match`, conditional update), JSON Patch, delete and conditional delete.

use serde_json::Value;
use store::{SearchOptions, StoreError, Stored};

use super::disclosure::Disclosed;
use super::labelling::Staged;
use super::support::{
    check_body_type, check_id, check_type, delete_write, invalid, new_id, now_millis,
    parse_query_string, stamp, validate, versioned,
};
use super::{Error, Repository, Result, Versioned, WriteOutcome};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::{Issue, IssueType};

/// How often a write that lost a race without `If-Match` is retried before answering 409.
pub(crate) const WRITE_ATTEMPTS: usize = 5;

impl Repository {
    /// `GET [type]/[id]`: 404 for an unknown type or id (or one the decision point withholds), 410
    /// for a deleted resource.
    pub async fn read(&self, who: &Requester, resource_type: &str, id: &str) -> Result<Versioned> {
        check_type(resource_type)?;
        check_id(id)?;
        self.authorize(who, Access::Read, Some(resource_type), Interaction::Read)
            .await?;
        let stored = self
            .store
            .read(resource_type, id)
            .await?
            .ok_or(Error::NotFound)?;
        self.disclose(who, &stored, Some(Interaction::Read)).await
    }

    /// `GET [type]/[id]/_history/[version]`.
    pub async fn vread(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Versioned> {
        check_type(resource_type)?;
        check_id(id)?;
        self.authorize(who, Access::Vread, Some(resource_type), Interaction::Vread)
            .await?;
        let stored = self
            .store
            .vread(resource_type, id, version)
            .await?
            .ok_or(Error::NotFound)?;
        self.disclose(who, &stored, Some(Interaction::Vread)).await
    }

    /// The one place a single stored version becomes an answer: tombstones are 410, withheld
    /// resources are indistinguishable from absent ones. A disclosure is recorded as `audit_as`
    /// before it is answered (`None` when the caller records it, as a patch does with its write).
    async fn disclose(
        &self,
        who: &Requester,
        stored: &Stored,
        audit_as: Option<Interaction>,
    ) -> Result<Versioned> {
        let mut disclosed = Disclosed::new();
        if !self.admit(who, stored, &mut disclosed).await? {
            if let Some(interaction) = audit_as.filter(|_| disclosed.withheld_any()) {
                self.record_withheld(who, interaction, disclosed);
            }
            return Err(Error::NotFound);
        }
        if stored.deleted {
            return Err(Error::Gone {
                version: stored.version,
                last_updated: stored.last_updated,
            });
        }
        let mut answer = versioned(stored)?;
        disclosed.oblige(stored, &mut answer.resource);
        if let Some(interaction) = audit_as {
            self.record_disclosure(who, interaction, None, disclosed)
                .await?;
        }
        Ok(answer)
    }

    /// `POST [type]`, with `If-None-Exist` for a conditional create: no match creates, one match
    /// answers it (200, `created: false`), several are 412.
    pub async fn create(
        &self,
        who: &Requester,
        resource_type: &str,
        mut body: Value,
        if_none_exist: Option<&str>,
    ) -> Result<WriteOutcome> {
        check_type(resource_type)?;
        check_body_type(&body, resource_type)?;
        self.authorize(
            who,
            Access::Create,
            Some(resource_type),
            Interaction::Create,
        )
        .await?;
        let issues = validate(&body)?;
        if let Some(condition) = if_none_exist {
            let params = parse_query_string(condition);
            if let Some(existing) = self
                .match_condition(who, resource_type, &params, "If-None-Exist")
                .await?
            {
                // Answering with the match discloses it: recorded as the search it was.
                let mut disclosed = Disclosed::new();
                if !self.admit(who, &existing, &mut disclosed).await? {
                    return Err(Error::NotFound);
                }
                let mut resource = versioned(&existing)?;
                disclosed.oblige(&existing, &mut resource.resource);
                self.record_disclosure(
                    who,
                    Interaction::Search,
                    Some(format!("{resource_type}?{condition}")),
                    disclosed,
                )
                .await?;
                return Ok(WriteOutcome {
                    created: false,
                    resource,
                    issues: Vec::new(),
                });
            }
        }
        // The server assigns the id: a client's id in a create is ignored.
        let id = new_id();
        let now = now_millis();
        stamp(&mut body, &id, 1, now);
        let (write, body) = self
            .seal_one(
                who,
                Staged {
                    resource_type: resource_type.to_string(),
                    id: id.clone(),
                    version: 1,
                    expect: None,
                    last_updated: now,
                    replaces_live: false,
                    resource: body,
                },
            )
            .await?;
        self.commit_audited(who, crate::audit::Interaction::Create, vec![write])
            .await?;
        tracing::debug!(request_id = %who.request_id, resource_type, "created");
        Ok(WriteOutcome {
            created: true,
            resource: Versioned {
                resource_type: resource_type.to_string(),
                id,
                version: 1,
                last_updated: now,
                resource: body,
            },
            issues,
        })
    }

    /// `PUT [type]/[id]`: the body's id must equal the URL's; an absent (or deleted) resource is
    /// created with that id. With `If-Match` a version that is not current is 412; without it, a
    /// write that loses a race is retried on the new current version.
    pub async fn update(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        check_type(resource_type)?;
        check_id(id)?;
        check_body_type(&body, resource_type)?;
        match body.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(body_id) => {
                return Err(Error::Invalid(vec![Issue::error(
                    IssueType::Invalid,
                    format!(
                    "the id in the body ('{body_id}') does not match the id in the URL ('{id}')"
                ),
                )
                .at(format!("{resource_type}.id"))]))
            }
            None => {
                return Err(Error::Invalid(vec![Issue::error(
                    IssueType::Required,
                    "an update needs the id in the body",
                )
                .at(format!("{resource_type}.id"))]))
            }
        }
        self.authorize(
            who,
            Access::Update,
            Some(resource_type),
            Interaction::Update,
        )
        .await?;
        let issues = validate(&body)?;
        self.check_writable(who, resource_type, id).await?;
        let interaction = crate::audit::Interaction::Update;
        self.write_version(who, interaction, resource_type, id, body, if_match, issues)
            .await
    }

    /// A resource the decision point withholds from `who` cannot be changed by `who` either. For
    /// data about patients (a Patient, or a type of the Patient compartment) a participant's
    /// system or person may not create by update either ([`Repository::refuses_update_create`]):
    /// an absent, deleted or withheld id all answer 405 alike, so that a PUT cannot tell whether
    /// a withheld resource exists. Otherwise a withheld resource answers 404, as a read would, and
    /// absent and deleted ones are writable (update-as-create).
    pub(crate) async fn check_writable(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
    ) -> Result<()> {
        if self.gate.permits_everything(who) {
            return Ok(());
        }
        let visible_live = match self.store.read(resource_type, id).await? {
            Some(stored) if !stored.deleted => {
                if self.gate.decide(who, &stored).await?.is_permit() {
                    return Ok(());
                }
                false
            }
            _ => true,
        };
        if self.refuses_update_create(who, resource_type).await? {
            Err(Error::UpdateCreate {
                resource_type: resource_type.to_string(),
            })
        } else if visible_live {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// Whether `who` may not create a `resource_type` by update (`PUT [type]/[id]` of an id not
    /// in use): participants' systems and people (SMART clients, portal users) writing data about
    /// patients. The exchange's own tools (import, the demo) and its operators may; so may
    /// everyone with open access (`--auth none`), and for the directory and other types that
    /// hold no patient's data, where nothing is withheld by the privacy policy.
    pub(crate) async fn refuses_update_create(
        &self,
        who: &Requester,
        resource_type: &str,
    ) -> Result<bool> {
        Ok(self.gate.is_enforcing()
            && is_patient_data_type(resource_type)
            && !self.gate.is_operator(who).await?)
    }

    /// Whether `who` may see the current version of `resource_type/id` (absent and deleted ones
    /// count as visible: there is nothing to hide).
    pub(crate) async fn visible(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
    ) -> Result<bool> {
        if self.gate.permits_everything(who) {
            return Ok(true);
        }
        Ok(match self.store.read(resource_type, id).await? {
            Some(stored) if !stored.deleted => self.gate.decide(who, &stored).await?.is_permit(),
            _ => true,
        })
    }

    /// Writes `body` as the next version of `resource_type/id` under optimistic concurrency.
    #[allow(clippy::too_many_arguments)]
    async fn write_version(
        &self,
        who: &Requester,
        // What the request was (update or patch); an update that creates is recorded as a create.
        interaction: crate::audit::Interaction,
        resource_type: &str,
        id: &str,
        mut body: Value,
        if_match: Option<i64>,
        issues: Vec<Issue>,
    ) -> Result<WriteOutcome> {
        let key = [(resource_type.to_string(), id.to_string())];
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.current(&key).await?.into_iter().next().flatten();
            if let Some(expected) = if_match {
                let now_at = current.map(|c| c.version).unwrap_or(0);
                if now_at != expected {
                    return Err(Error::PreconditionFailed { current: now_at });
                }
            }
            let (version, expect) = match current {
                Some(c) => (c.version + 1, Some(c.version)),
                None => (1, None),
            };
            let created = current.is_none_or(|c| c.deleted);
            let now = now_millis();
            stamp(&mut body, id, version, now);
            let (write, labelled) = self
                .seal_one(
                    who,
                    Staged {
                        resource_type: resource_type.to_string(),
                        id: id.to_string(),
                        version,
                        expect,
                        last_updated: now,
                        replaces_live: !created,
                        resource: body,
                    },
                )
                .await?;
            // A retry after a lost race starts from this: labels only grow.
            body = labelled;
            let interaction = if created {
                crate::audit::Interaction::Create
            } else {
                interaction
            };
            match self.commit_audited(who, interaction, vec![write]).await {
                Ok(()) => {
                    return Ok(WriteOutcome {
                        created,
                        resource: Versioned {
                            resource_type: resource_type.to_string(),
                            id: id.to_string(),
                            version,
                            last_updated: now,
                            resource: body,
                        },
                        issues,
                    })
                }
                Err(Error::Store(StoreError::Conflict { .. })) if if_match.is_some() => {
                    let current = self.store.current(&key).await?.into_iter().next().flatten();
                    return Err(Error::PreconditionFailed {
                        current: current.map(|c| c.version).unwrap_or(0),
                    });
                }
                Err(Error::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// `PUT [type]?[search]`: no match creates (with the body's id if it has one), one match is
    /// updated (the body's id, if any, must be that match's), several are 412.
    pub async fn conditional_update(
        &self,
        who: &Requester,
        resource_type: &str,
        params: &[(String, String)],
        body: Value,
    ) -> Result<WriteOutcome> {
        check_type(resource_type)?;
        check_body_type(&body, resource_type)?;
        let body_id = body.get("id").and_then(Value::as_str).map(str::to_string);
        match self
            .match_condition(who, resource_type, params, "conditional update")
            .await?
        {
            Some(existing) => {
                if body_id.as_deref().is_some_and(|b| b != existing.id) {
                    return Err(Error::Invalid(vec![Issue::error(
                        IssueType::Invalid,
                        "the id in the body is not the id of the resource the condition matched",
                    )
                    .at(format!("{resource_type}.id"))]));
                }
                let mut body = body;
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("id".into(), Value::String(existing.id.clone()));
                }
                self.update(who, resource_type, &existing.id.clone(), body, None)
                    .await
            }
            None => match body_id {
                Some(id) => self.update(who, resource_type, &id, body, None).await,
                None => self.create(who, resource_type, body, None).await,
            },
        }
    }

    /// `PATCH [type]/[id]` with a JSON Patch (RFC 6902) document; the result is validated and written
    /// as a new version. The patch may not change `resourceType` or `id`.
    pub async fn patch(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
        patch: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome> {
        check_type(resource_type)?;
        check_id(id)?;
        self.authorize(who, Access::Update, Some(resource_type), Interaction::Patch)
            .await?;
        let operations: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
            invalid(
                IssueType::Structure,
                format!("not a JSON Patch document: {e}"),
            )
        })?;
        let mut last_conflict = Error::Conflict;
        for _ in 0..WRITE_ATTEMPTS {
            let stored = self
                .store
                .read(resource_type, id)
                .await?
                .ok_or(Error::NotFound)?;
            let current = self.disclose(who, &stored, None).await?;
            if let Some(expected) = if_match {
                if expected != current.version {
                    return Err(Error::PreconditionFailed {
                        current: current.version,
                    });
                }
            }
            let mut resource = current.resource;
            json_patch::patch(&mut resource, &operations).map_err(|e| {
                Error::Unprocessable(vec![Issue::error(
                    IssueType::Processing,
                    format!("the patch does not apply: {e}"),
                )])
            })?;
            if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type)
                || resource.get("id").and_then(Value::as_str) != Some(id)
            {
                return Err(Error::Unprocessable(vec![Issue::error(
                    IssueType::Invalid,
                    "a patch may not change the resource's type or id",
                )]));
            }
            let issues = validate(&resource)?;
            match self
                .write_version(
                    who,
                    crate::audit::Interaction::Patch,
                    resource_type,
                    id,
                    resource,
                    Some(current.version),
                    issues,
                )
                .await
            {
                Err(Error::PreconditionFailed { .. }) if if_match.is_none() => {
                    last_conflict = Error::Conflict;
                    continue;
                }
                other => return other,
            }
        }
        Err(last_conflict)
    }

    /// `DELETE [type]/[id]`: writes a tombstone. Deleting an absent or already deleted resource
    /// succeeds and writes nothing. Answers the tombstone's version if one was written.
    pub async fn delete(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<i64>> {
        self.delete_if_match(who, resource_type, id, None).await
    }

    /// `DELETE [type]/[id]` with `If-Match`: the delete happens only if the current version is
    /// `if_match` (412 otherwise, also for an absent, deleted or withheld resource, whose current
    /// live version counts as 0). Without `if_match` it is [`Repository::delete`].
    pub async fn delete_if_match(
        &self,
        who: &Requester,
        resource_type: &str,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<Option<i64>> {
        check_type(resource_type)?;
        check_id(id)?;
        self.authorize(
            who,
            Access::Delete,
            Some(resource_type),
            Interaction::Delete,
        )
        .await?;
        let key = [(resource_type.to_string(), id.to_string())];
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.current(&key).await?.into_iter().next().flatten();
            // A withheld resource is answered as an absent one: nothing is deleted.
            let live = match current.filter(|c| !c.deleted) {
                Some(c) if self.visible(who, resource_type, id).await? => Some(c),
                _ => None,
            };
            if let Some(expected) = if_match {
                let now_at = live.map(|c| c.version).unwrap_or(0);
                if now_at != expected {
                    return Err(Error::PreconditionFailed { current: now_at });
                }
            }
            let Some(current) = live else {
                return Ok(None);
            };
            let write = delete_write(resource_type, id, current.version, now_millis());
            match self
                .commit_audited(who, crate::audit::Interaction::Delete, vec![write])
                .await
            {
                Ok(()) => {
                    tracing::debug!(request_id = %who.request_id, resource_type, "deleted");
                    return Ok(Some(current.version + 1));
                }
                Err(Error::Store(StoreError::Conflict { .. })) if if_match.is_some() => {
                    let current = self.store.current(&key).await?.into_iter().next().flatten();
                    return Err(Error::PreconditionFailed {
                        current: current
                            .filter(|c| !c.deleted)
                            .map(|c| c.version)
                            .unwrap_or(0),
                    });
                }
                Err(Error::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// `DELETE [type]?[search]`: deletes the one match (none is a success that deletes nothing);
    /// several matches are 412. Answers how many resources were deleted.
    pub async fn conditional_delete(
        &self,
        who: &Requester,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<usize> {
        check_type(resource_type)?;
        match self
            .match_condition(who, resource_type, params, "conditional delete")
            .await?
        {
            Some(existing) => Ok(usize::from(
                self.delete(who, resource_type, &existing.id)
                    .await?
                    .is_some(),
            )),
            None => Ok(0),
        }
    }

    /// Evaluates the search condition of a conditional interaction: `None` for no match, the match
    /// for one, 412 for several. Conditions are parsed strictly: an ignored parameter would widen the
    /// condition and make it match resources it should not. Only resources the decision point lets
    /// `who` see count as matches, so a condition never reveals that a withheld resource exists.
    pub(crate) async fn match_condition(
        &self,
        who: &Requester,
        resource_type: &str,
        params: &[(String, String)],
        what: &str,
    ) -> Result<Option<Stored>> {
        let params: Vec<(String, String)> = params
            .iter()
            .filter(|(n, _)| !is_result_param(n))
            .cloned()
            .collect();
        if params.is_empty() {
            return Err(invalid(
                IssueType::Invalid,
                format!("the {what} condition is empty"),
            ));
        }
        let parsed = fhir::search::parse::parse(Some(resource_type), &params, true)
            .map_err(Error::Invalid)?;
        let mut query = parsed.query;
        query.total = fhir::search::Total::None;
        let open = self.gate.permits_everything(who);
        let options = SearchOptions {
            count: if open { 2 } else { 20 },
            max_includes: 0,
        };
        let mut found: Option<Stored> = None;
        loop {
            let page = self.store.search(&query, &options).await?;
            for stored in page.matches {
                if !open
                    && (!self.gate.decide(who, &stored).await?.is_permit()
                        || !self.still_matches(who, &query, &stored).await?)
                {
                    continue;
                }
                if found.is_some() {
                    return Err(Error::MultipleMatches);
                }
                found = Some(stored);
            }
            match page.next {
                Some(next) if !open => query.page = Some(next),
                _ => return Ok(found),
            }
        }
    }
}

/// Parameters that shape a result rather than select resources; they mean nothing in a condition.
fn is_result_param(name: &str) -> bool {
    matches!(
        name,
        "_count"
            | "_sort"
            | "_include"
            | "_revinclude"
            | "_summary"
            | "_elements"
            | "_total"
            | "_format"
            | "_pretty"
            | "_page"
    ) || name.starts_with("_include:")
        || name.starts_with("_revinclude:")
}

/// Whether resources of this type hold data about patients: a Patient, or a type of the Patient
/// compartment (what the privacy policy may withhold).
pub(crate) fn is_patient_data_type(resource_type: &str) -> bool {
    resource_type == "Patient"
        || !fhir::definitions::patient_compartment_params(resource_type).is_empty()
}
