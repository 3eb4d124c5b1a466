//! Small pieces the interactions share: ids, timestamps, `meta` stamping, turning a resource into a
//! store write, and query strings.

use serde_json::{Map, Value};
use store::{Stored, Write, WriteOp};

use super::{Error, Repository, Result, Versioned};
use crate::access::Requester;
use fhir::{Issue, IssueType};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// A fresh server-assigned id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `id` is a valid FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// 404 for a type this server does not know.
pub(crate) fn check_type(resource_type: &str) -> Result<()> {
    if fhir::definitions::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// 400 for an id that is not a FHIR id.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid(
            IssueType::Value,
            format!("'{id}' is not a valid resource id"),
        ))
    }
}

pub(crate) fn invalid(code: IssueType, diagnostics: impl Into<String>) -> Error {
    Error::Invalid(vec![Issue::error(code, diagnostics)])
}

/// The body must be a JSON object whose `resourceType` is the type of the URL.
pub(crate) fn check_body_type(body: &Value, resource_type: &str) -> Result<()> {
    match body.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(()),
        Some(t) => Err(Error::Invalid(vec![Issue::error(
            IssueType::Invalid,
            format!("resourceType '{t}' does not match the type in the URL ('{resource_type}')"),
        )
        .at(t.to_string())])),
        None => Err(invalid(
            IssueType::Structure,
            "the body is not a resource: resourceType is missing",
        )),
    }
}

/// Validates a resource: every issue comes back as a 400 if any is an error; otherwise the warnings.
pub(crate) fn validate(resource: &Value) -> Result<Vec<Issue>> {
    let issues = fhir::validate::validate_resource(resource);
    if issues.iter().any(Issue::is_error) {
        Err(Error::Invalid(issues))
    } else {
        Ok(issues)
    }
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta` (tags, profiles,
/// security labels, source), and puts `resourceType`, `id` and `meta` first, as FHIR's JSON shows
/// them: a reader of the stored text that needs only those (the privacy policy's facts,
/// `privacy::policy::Data::from_json_text`) stops there.
pub(crate) fn stamp(resource: &mut Value, id: &str, version: i64, last_updated: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    obj.insert("id".into(), Value::String(id.to_string()));
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(fhir::search::datetime::format_instant(last_updated)),
        );
    }
    let mut front: [Option<Value>; 3] = [None, None, None];
    let mut rest = Map::with_capacity(obj.len());
    for (key, value) in std::mem::take(obj) {
        match key.as_str() {
            "resourceType" => front[0] = Some(value),
            "id" => front[1] = Some(value),
            "meta" => front[2] = Some(value),
            _ => {
                rest.insert(key, value);
            }
        }
    }
    for (key, value) in ["resourceType", "id", "meta"].into_iter().zip(front) {
        if let Some(value) = value {
            obj.insert(key.to_string(), value);
        }
    }
    obj.extend(rest);
}

pub(crate) fn delete_write(
    resource_type: &str,
    id: &str,
    current: i64,
    last_updated: i64,
) -> Write {
    Write {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version: current + 1,
        expect: Some(current),
        last_updated,
        op: WriteOp::Delete,
    }
}

/// A stored version as the repository answers it. A version whose JSON does not parse is a store
/// failure (the repository only ever stores what it serialised).
pub(crate) fn versioned(stored: &Stored) -> Result<Versioned> {
    Ok(Versioned {
        resource_type: stored.resource_type.clone(),
        id: stored.id.clone(),
        version: stored.version,
        last_updated: stored.last_updated,
        resource: parse_stored(stored)?,
    })
}

pub(crate) fn parse_stored(stored: &Stored) -> Result<Value> {
    serde_json::from_str(&stored.json).map_err(|e| unreadable(stored, e))
}

/// The error for stored JSON that does not parse: the database holds something it should not.
pub(crate) fn unreadable(stored: &Stored, e: serde_json::Error) -> Error {
    Error::Store(store::StoreError::Database(format!(
        "stored JSON of {}/{} version {} does not parse: {e}",
        stored.resource_type, stored.id, stored.version
    )))
}

/// The weak ETag of a version: `W/"3"`.
pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Decodes an `application/x-www-form-urlencoded` query string (`a=1&b=x%7Cy`) into name/value pairs
/// in order. A leading `?` is skipped; malformed escapes are kept as written.
pub fn parse_query_string(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes name/value pairs as a query string for the links this server writes.
pub(crate) fn encode_query(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode_into(name, &mut out);
        out.push('=');
        percent_encode_into(value, &mut out);
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'~' | b':' | b',' | b'|' | b'/' | b'$'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Parses a `_since`/`_at` style instant parameter into the range it covers.
pub(crate) fn parse_instant_param(name: &str, value: &str) -> Result<(i64, i64)> {
    fhir::search::datetime::parse_range(value).ok_or_else(|| {
        invalid(
            IssueType::Value,
            format!("{name}: '{value}' is not a valid date or instant"),
        )
    })
}

/// Parses a non-negative count parameter.
pub(crate) fn parse_count(name: &str, value: &str) -> Result<usize> {
    value.trim().parse::<usize>().map_err(|_| {
        invalid(
            IssueType::Value,
            format!("{name}: '{value}' is not a number"),
        )
    })
}

impl Repository {
    /// Commits `writes` together with the AuditEvent that records them, in one transaction: a write
    /// that lands is always recorded, and a record never names a write that did not land.
    pub(crate) async fn commit_audited(
        &self,
        who: &Requester,
        interaction: crate::audit::Interaction,
        writes: Vec<Write>,
    ) -> Result<()> {
        self.check_participant_records(who, interaction, &writes)
            .await?;
        self.check_consent_writes(who, interaction, &writes).await?;
        let writes = self.not_kept_for_opted_out(who, writes).await?;
        let consents = writes.iter().any(|w| w.resource_type == "Consent");
        let record = audit_record(who, interaction, &self.config.base_url, &writes);
        let learned = super::disclosure::Relationships::of(who, &writes);
        let organizations: Vec<String> = writes
            .iter()
            .filter(|w| w.resource_type == "Organization")
            .map(|w| w.id.clone())
            .collect();
        let writes_registry = writes.iter().any(|w| {
            matches!(
                w.resource_type.as_str(),
                "Organization" | "Practitioner" | "PractitionerRole"
            )
        });
        self.store.commit_with_audit(writes, vec![record]).await?;
        if consents {
            self.gate.consents_changed();
        }
        for id in &organizations {
            self.gate.forget_participant(id);
        }
        if writes_registry {
            self.sources.clear();
        }
        if !learned.is_empty() {
            self.note_relationships(who, learned).await?;
        }
        Ok(())
    }
}

/// The audit record of a successful write: each version written, and the patients whose
/// compartments they are in (a deleted Patient names itself).
fn audit_record(
    who: &Requester,
    interaction: crate::audit::Interaction,
    server: &str,
    writes: &[Write],
) -> store::NewAuditRecord {
    let mut patients: Vec<String> = Vec::new();
    for write in writes {
        match &write.op {
            WriteOp::Put { compartments, .. } => patients.extend(compartments.iter().cloned()),
            WriteOp::Delete if write.resource_type == "Patient" => patients.push(write.id.clone()),
            WriteOp::Delete => {}
        }
    }
    patients.sort();
    patients.dedup();
    let recorded = now_millis();
    let facts = crate::audit::AuditFacts {
        recorded,
        interaction,
        outcome: crate::audit::Outcome::Success,
        request_id: who.request_id.clone(),
        requestor: who.audit_requestor(),
        client_address: who.client_address.map(|a| a.to_string()),
        purpose: who.purpose.code().to_string(),
        server: server.to_string(),
        query: None,
        patients,
        resources: writes
            .iter()
            .map(|w| (w.resource_type.clone(), w.id.clone(), w.version))
            .collect(),
        outcome_desc: None,
        withheld: Vec::new(),
    };
    crate::audit::audit_record(&facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_resource_starts_with_its_type_id_and_meta_and_keeps_the_rest_in_order() {
        let mut resource = serde_json::json!({
            "status": "final",
            "resourceType": "Observation",
            "code": { "text": "x" },
            "meta": { "security": [{ "system": "s", "code": "R" }] },
            "subject": { "reference": "Patient/p" },
        });
        stamp(&mut resource, "o1", 3, 0);
        let keys: Vec<&str> = resource
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["resourceType", "id", "meta", "status", "code", "subject"]
        );
        assert_eq!(resource["meta"]["versionId"], "3");
        assert_eq!(resource["meta"]["security"][0]["code"], "R");
        let text = serde_json::to_string(&resource).unwrap();
        assert!(
            text.starts_with(r#"{"resourceType":"Observation","id":"o1","meta":{"#),
            "{text}"
        );
    }

    fn check(query: &str, expected: &[(&str, &str)]) {
        let got = parse_query_string(query);
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, expected, "{query}");
    }

    #[test]
    fn query_strings_decode() {
        check(
            "identifier=http%3A%2F%2Fx%7C1&name=a+b",
            &[("identifier", "http://x|1"), ("name", "a b")],
        );
        check("?a=1&&b", &[("a", "1"), ("b", "")]);
        check("bad=%zz%4", &[("bad", "%zz%4")]);
        check("utf=%C3%A9", &[("utf", "é")]);
    }

    #[test]
    fn encoded_links_decode_back() {
        let params = vec![
            ("name".to_string(), "a b&c=é".to_string()),
            ("_page".to_string(), "x/y+z".to_string()),
        ];
        assert_eq!(parse_query_string(&encode_query(&params)), params);
    }

    #[test]
    fn ids() {
        for (id, ok) in [
            ("abc-1.2", true),
            ("", false),
            ("a/b", false),
            (&"x".repeat(65), false),
            (&"x".repeat(64), true),
        ] {
            assert_eq!(is_valid_id(id), ok, "{id}");
        }
    }
}
