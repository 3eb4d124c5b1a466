//! History at instance, type and system level: `_since`, `_at`, `_count`, `_page`, answered as a
//! `history` Bundle whose entries carry the request and response that made each version.

use serde_json::{json, Value};
use store::{HistoryRequest, HistoryScope};

use super::disclosure::Disclosed;
use super::support::{check_id, check_type, etag, parse_count, parse_instant_param, parse_stored};
use super::{Error, Handling, Repository, Result};
use crate::access::{Interaction as Access, Requester};
use crate::audit::Interaction;
use fhir::search::datetime::format_instant;

impl Repository {
    /// `GET [type]/[id]/_history`, `GET [type]/_history`, `GET /_history`. Versions newest first;
    /// each passes the decision point (withheld versions are left out).
    pub async fn history(
        &self,
        who: &Requester,
        scope: HistoryScope,
        params: &[(String, String)],
    ) -> Result<Value> {
        self.history_with(who, scope, params, Handling::Lenient)
            .await
    }

    /// [`Repository::history`] with a choice of handling for parameters history does not know:
    /// ignored (lenient; a history Bundle has no place to report them) or 400 (strict).
    pub async fn history_with(
        &self,
        who: &Requester,
        scope: HistoryScope,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Value> {
        const KNOWN: &[&str] = &["_since", "_at", "_count", "_page"];
        let resource_type = match &scope {
            HistoryScope::System => None,
            HistoryScope::Type(ty) | HistoryScope::Instance(ty, _) => Some(ty.as_str()),
        };
        if let Some(ty) = resource_type {
            check_type(ty)?;
        }
        self.authorize(who, Access::History, resource_type, Interaction::History)
            .await?;
        super::search::unknown_params(params, KNOWN, handling)?;
        // The links name the history as it was read: without the parameters it ignored.
        let params: Vec<(String, String)> = params
            .iter()
            .filter(|(name, _)| KNOWN.contains(&name.as_str()))
            .cloned()
            .collect();
        let params = params.as_slice();
        let path = match &scope {
            HistoryScope::System => format!("{}/_history", self.config.base_url),
            HistoryScope::Type(ty) => {
                check_type(ty)?;
                format!("{}/{ty}/_history", self.config.base_url)
            }
            HistoryScope::Instance(ty, id) => {
                check_type(ty)?;
                check_id(id)?;
                // An id that never existed, and a resource withheld from `who`, are both 404.
                match self.store.read(ty, id).await? {
                    Some(current) if self.gate.decide(who, &current).await?.is_permit() => {}
                    _ => return Err(Error::NotFound),
                }
                format!("{}/{ty}/{id}/_history", self.config.base_url)
            }
        };
        let mut request = HistoryRequest {
            scope,
            since: None,
            at: None,
            count: self.page_size(None),
            cursor: None,
        };
        for (name, value) in params {
            match name.as_str() {
                "_since" => request.since = Some(parse_instant_param("_since", value)?.0),
                "_at" => request.at = Some(parse_instant_param("_at", value)?),
                "_count" => request.count = self.page_size(Some(parse_count("_count", value)?)),
                "_page" => request.cursor = Some(value.clone()),
                _ => {}
            }
        }
        let page = self.store.history(&request).await?;
        let request = HistoryRequest {
            cursor: None,
            ..request
        };
        let mut entries = Vec::with_capacity(page.entries.len());
        let mut withheld = 0u64;
        let mut disclosed = Disclosed::new();
        for stored in &page.entries {
            if !self.admit(who, stored, &mut disclosed).await? {
                withheld += 1;
                continue;
            }
            let url = format!("{}/{}", stored.resource_type, stored.id);
            let mut entry = json!({ "fullUrl": self.full_url(&stored.resource_type, &stored.id) });
            let (method, request_url, status) = if stored.deleted {
                ("DELETE", url, "204 No Content")
            } else if stored.version == 1 {
                ("POST", stored.resource_type.clone(), "201 Created")
            } else {
                ("PUT", url, "200 OK")
            };
            if !stored.deleted {
                let mut resource = parse_stored(stored)?;
                disclosed.oblige(stored, &mut resource);
                entry["resource"] = resource;
            }
            entry["request"] = json!({ "method": method, "url": request_url });
            entry["response"] = json!({
                "status": status,
                "etag": etag(stored.version),
                "lastModified": format_instant(stored.last_updated),
            });
            entries.push(entry);
        }
        let links = self.links(&path, params, page.next.as_deref(), None);
        let mut bundle = json!({
            "resourceType": "Bundle",
            "id": super::support::new_id(),
            "type": "history",
        });
        let total = match page.total {
            Some(_) if !self.gate.permits_everything(who) => {
                Some(self.visible_history_total(who, &request).await?)
            }
            total => total.map(|t| t.saturating_sub(withheld)),
        };
        if let Some(total) = total {
            bundle["total"] = json!(total);
        }
        bundle["link"] = Value::Array(links);
        if !entries.is_empty() {
            bundle["entry"] = Value::Array(entries);
        }
        let query = path
            .strip_prefix(&self.config.base_url)
            .unwrap_or(&path)
            .trim_start_matches('/')
            .to_string();
        let query = if params.is_empty() {
            query
        } else {
            format!("{query}?{}", super::support::encode_query(params))
        };
        self.record_disclosure(who, Interaction::History, Some(query), disclosed)
            .await?;
        Ok(bundle)
    }

    /// The number of versions `who` may see in the whole history (see `visible_total`).
    async fn visible_history_total(
        &self,
        who: &Requester,
        request: &HistoryRequest,
    ) -> Result<u64> {
        let mut request = HistoryRequest {
            count: 500,
            cursor: None,
            ..request.clone()
        };
        let mut total = 0u64;
        loop {
            let page = self.store.history(&request).await?;
            for stored in &page.entries {
                if self.gate.decide(who, stored).await?.is_permit() {
                    total += 1;
                }
            }
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => return Ok(total),
            }
        }
    }
}
