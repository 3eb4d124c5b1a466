//! The consent decision service, CDS Hooks style: `GET /cds-services` lists it, and
//! `POST /cds-services/patient-consent-consult` answers a participant that wants to check before
//! it sends or queries: the privacy policy's decision for it (its participant as recipient, its
//! token's purpose of use, its treatment relationship), the obligations a disclosure would carry,
//! and the consents the decision rests on. The caller authenticates as on the FHIR API; the
//! consult passes the decision point like a read of the Patient and is audited.
//!
//! The request is a CDS Hooks request whose `context` holds `patientId` (an id, `Patient/[id]`,
//! or a one-element array of either), optionally `purposeOfUse` (it must be the access token's:
//! a consult does not change the purpose a participant was granted) and `content` (a resource or
//! a Bundle of resources to be sent or asked for; labelled as intake would label them). The
//! answer has one card: `summary` `CONSENT_PERMIT` or `CONSENT_DENY`, and an `extension` with the
//! decision, the obligations, the consents used (`Consent/[id]`) and one decision per resource.
//!
//! A participant learns from a consult what a query would not tell it: whether the patient's
//! choices let it have data (that is what the consult is for). The reasons are given to operators
//! only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use exchange::access::{Principal, Role};
use serde_json::{json, Value};

use super::error::ApiError;
use super::rest::Who;
use super::Shared;

/// The service's id, as listed and routed.
pub const SERVICE_ID: &str = "patient-consent-consult";

/// `GET /cds-services`: the discovery document.
pub async fn discovery() -> Response {
    Json(json!({
        "services": [{
            "id": SERVICE_ID,
            "hook": SERVICE_ID,
            "title": "Patient consent consult",
            "description": "Whether the exchange's privacy policy and the patient's consents let the caller send or query data about a patient, for its purpose of use: the decision, its obligations and the consents used.",
            "usageRequirements": "Authenticate as on the FHIR API (a SMART Backend Services bearer token). context.patientId is required; context.content (a resource or a Bundle) is optional.",
        }]
    }))
    .into_response()
}

fn bad(text: impl Into<String>) -> ApiError {
    ApiError::bad_request(text)
}

fn patient_id(context: &Value) -> Result<String, ApiError> {
    let raw = match &context["patientId"] {
        Value::Array(items) if items.len() == 1 => items[0].clone(),
        Value::Array(_) => return Err(bad("context.patientId names one patient")),
        other => other.clone(),
    };
    let text = match &raw {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("value")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad("context.patientId: an id or Patient/[id]"))?,
        _ => return Err(bad("context.patientId is required")),
    };
    Ok(text.strip_prefix("Patient/").unwrap_or(&text).to_string())
}

fn content(context: &Value) -> Result<Vec<Value>, ApiError> {
    match &context["content"] {
        Value::Null => Ok(Vec::new()),
        Value::Object(o) if o.get("resourceType") == Some(&json!("Bundle")) => Ok(o
            .get("entry")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .collect()
            })
            .unwrap_or_default()),
        Value::Object(o) if o.get("resourceType").is_some_and(Value::is_string) => {
            Ok(vec![context["content"].clone()])
        }
        _ => Err(bad("context.content is a FHIR resource or a Bundle")),
    }
}

fn obligation(o: &privacy::policy::Obligation) -> Value {
    use privacy::policy::Obligation as O;
    match o {
        O::Redact => json!({"code": "redact"}),
        O::AddLabel(coding) => json!({"code": "add-label", "label": coding.to_json()}),
        O::AttachNotice { name, text } => {
            json!({"code": "attach-notice", "name": name, "text": text})
        }
        O::NotifyPatient => json!({"code": "notify-patient"}),
        O::NotifySource => json!({"code": "notify-source"}),
        O::FlagBreakGlass => json!({"code": "flag-break-glass"}),
    }
}

/// `POST /cds-services/patient-consent-consult`.
pub async fn consult(
    State(state): State<Shared>,
    Who(who): Who,
    body: axum::body::Bytes,
) -> Response {
    match answer(&state, who, &body).await {
        Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &Shared,
    mut who: exchange::access::Requester,
    body: &[u8],
) -> Result<Value, ApiError> {
    if body.len() > state.max_body {
        return Err(bad("the request is too large"));
    }
    let request: Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not a JSON object"))?;
    if request["hook"].as_str().is_some_and(|h| h != SERVICE_ID) {
        return Err(bad(format!("this service answers the {SERVICE_ID} hook")));
    }
    let context = &request["context"];
    if !context.is_object() {
        return Err(bad("context is required"));
    }
    let patient = patient_id(context)?;
    let content = content(context)?;
    if let Some(purposes) = context.get("purposeOfUse") {
        let asked: Vec<&str> = match purposes {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => return Err(bad("context.purposeOfUse: a code or a list of codes")),
        };
        if asked.iter().any(|p| *p != who.purpose.code()) {
            return Err(bad(
                "context.purposeOfUse must be the access token's purpose of use",
            ));
        }
    }
    if context["emergency"] == json!(true) {
        who.emergency_declared = true;
    }
    let operator = matches!(
        who.principal,
        Principal::System { .. }
            | Principal::User {
                role: Role::OperatorAdmin,
                ..
            }
    );
    let answer = state.repo.consent_consult(&who, &patient, &content).await?;
    let permit = answer.permit();
    let mut obligations: Vec<Value> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let mut each = Vec::new();
    for (reference, decision) in &answer.decisions {
        for o in &decision.obligations {
            let o = obligation(o);
            if !obligations.contains(&o) && (permit || o["code"] == "redact") {
                obligations.push(o);
            }
        }
        for id in &decision.consents_used {
            let id = format!("Consent/{id}");
            if !used.contains(&id) {
                used.push(id);
            }
        }
        let mut one = json!({
            "decision": if decision.permit { "permit" } else { "deny" },
            "obligations": decision.obligations.iter().map(obligation).collect::<Vec<_>>(),
            "consentsUsed": decision.consents_used.iter().map(|c| format!("Consent/{c}")).collect::<Vec<_>>(),
        });
        if let Some(reference) = reference {
            one["resource"] = json!(reference);
        }
        if operator {
            one["reasons"] = decision
                .reasons
                .iter()
                .map(|r| json!({"code": r.code(), "text": r.text()}))
                .collect();
        }
        each.push(one);
    }
    Ok(json!({
        "cards": [{
            "uuid": uuid::Uuid::new_v4().to_string(),
            "summary": if permit { "CONSENT_PERMIT" } else { "CONSENT_DENY" },
            "indicator": if permit { "info" } else { "warning" },
            "source": {"label": "nutmeg privacy policy"},
            "extension": {
                "decision": if permit { "permit" } else { "deny" },
                "obligations": obligations,
                "consentsUsed": used,
                "decisions": each,
            },
        }]
    }))
}
