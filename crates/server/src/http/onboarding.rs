//! The connection applications as JSON, for scripts and the operator's systems (issue 7): the same
//! checks as the portal's form and `nutmeg admin application`, through [`exchange::onboarding`].
//!
//! - `POST /api/applications`: an application (the form's fields as a JSON object, snake_case
//!   names); 201 with the application, or 422 with an OperationOutcome naming each field
//!   (`issue.expression`). Operators only (the bulk entry of section 1). The applicant's portal
//!   account (login: the contact's email) is made without a password; the answer's `invitation`
//!   holds the one-time link (`url`, `expires`) to send them to choose one (`noAccount` says why
//!   none was made, when the email is already a login).
//! - `GET /api/applications`, `GET /api/applications/{id}`: the queue and one application, with
//!   their checklist, next step, overdue step, duplicates and agreements to sign.
//! - `POST /api/applications/{id}/steps` `{"step": "package-sent"}`,
//!   `POST /api/applications/{id}/path` `{"path": "ehr", "reason": "..."}` and, for an
//!   application without a participant, `POST /api/applications/{id}/decision`
//!   `{"decision": "distinct" | "existing" | "duplicate", "participant": ID (existing),
//!   "duplicateOf": APPLICATION (duplicate), "reason": "..."}`.
//!
//! Every route needs an operator's bearer token (a live exchange-operator participant's client;
//! with `--auth none`, anyone): anyone else gets a 403.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use exchange::onboarding::{Decision, OnboardingError, View};
use fhir::{Issue, IssueType};
use onboard::application::Form;
use onboard::workflow::{Path, Step};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::rest::Who;
use super::{ApiError, Shared};

fn time_text(ms: i64) -> String {
    exchange::onboarding::instant(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An application as JSON (the API's and `nutmeg admin application show --json`'s shape).
pub fn view_json(view: &View) -> Value {
    let d = &view.record.data;
    json!({
        "id": d.application_id,
        "received": time_text(d.received),
        "kind": d.kind,
        "legalName": d.legal_name,
        "npi": d.npi,
        "licences": d.licences.iter().map(|l| json!({
            "type": l.licence_type, "number": l.number, "state": l.state,
        })).collect::<Vec<_>>(),
        "address": {
            "line": d.address_line, "city": d.city, "state": d.state, "postcode": d.postcode,
        },
        "ehr": { "kind": d.ehr_kind, "value": d.ehr_value },
        "signer": { "name": d.signer_name, "title": d.signer_title, "email": d.signer_email },
        "contact": { "name": d.contact_name, "email": d.contact_email, "phone": d.contact_phone },
        "path": d.path,
        "participant": d.participant_id,
        "decision": view.record.decision.as_ref().map(|d| json!({
            "decision": d.decision,
            "duplicateOf": d.duplicate_of,
            "participant": d.participant_id,
            "by": d.by,
            "at": time_text(d.at),
            "reason": d.reason,
        })),
        "user": d.user_id,
        "participantType": view.participant_type,
        "steps": view.record.steps.iter().map(|s| json!({
            "step": s.step, "by": s.by, "at": time_text(s.at),
        })).collect::<Vec<_>>(),
        "pathChanges": view.record.path_changes.iter().map(|c| json!({
            "from": c.from, "to": c.to, "by": c.by, "at": time_text(c.at), "reason": c.reason,
        })).collect::<Vec<_>>(),
        "next": view.next.map(Step::code),
        "overdue": view.overdue.as_ref().map(|o| json!({
            "step": o.step.code(),
            "due": time_text(exchange::onboarding::millis(o.due)),
        })),
        "duplicates": view.duplicates.iter().map(|dup| json!({
            "application": dup.application, "by": dup.by,
        })).collect::<Vec<_>>(),
        "mustSign": view.must_sign.iter().map(|u| json!({
            "kind": u.kind, "version": u.version, "signedBefore": u.signed_before,
        })).collect::<Vec<_>>(),
        "signatures": view.signatures.iter().map(|s| json!({
            "id": s.signature_id,
            "kind": s.kind,
            "version": s.version,
            "sha256": s.sha256,
            "signerName": s.signer_name,
            "signerTitle": s.signer_title,
            "consentedElectronically": s.consented_electronically,
            "at": time_text(s.signed_at),
            "clientAddress": s.client_address,
        })).collect::<Vec<_>>(),
    })
}

fn ok(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The API's answer to a refusal or failure.
fn refused(error: OnboardingError) -> ApiError {
    let (status, code) = match &error {
        OnboardingError::Invalid(errors) => {
            return ApiError::with_issues(
                StatusCode::UNPROCESSABLE_ENTITY,
                errors
                    .iter()
                    .map(|e| {
                        Issue::error(IssueType::Invalid, format!("{}: {}", e.field, e.message))
                            .at(e.field.clone())
                    })
                    .collect(),
            )
        }
        OnboardingError::NotFound(_) => (StatusCode::NOT_FOUND, IssueType::NotFound),
        OnboardingError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule),
        OnboardingError::Conflict(_) => (StatusCode::CONFLICT, IssueType::Conflict),
        OnboardingError::Registry(_) | OnboardingError::Store(_) => {
            return ApiError::internal(error.to_string())
        }
    };
    ApiError::new(status, code, error.to_string())
}

/// Refuses anyone but an operator.
async fn operator(state: &Shared, who: &Who) -> Result<(), ApiError> {
    let allowed = state
        .repo
        .decision_point()
        .is_operator(&who.0)
        .await
        .map_err(|e| ApiError::internal(format!("deciding the requester: {e}")))?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "the onboarding API is for the exchange's operators",
        ))
    }
}

/// Who a request acts as, in the checklist's record.
fn actor(who: &Who) -> String {
    match &who.0.principal {
        exchange::access::Principal::Client { client_id, .. } => format!("client {client_id}"),
        exchange::access::Principal::User { user_id, .. } => format!("user {user_id}"),
        exchange::access::Principal::System { name } => name.clone(),
        exchange::access::Principal::Anonymous => "api".to_string(),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body is not the JSON object expected: {e}"))
    })
}

/// `POST /api/applications`.
pub async fn create(
    State(state): State<Shared>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let form: Form = json_body(&body)?;
    let (invite, submission) =
        crate::connect_admin::invited_submission(form, actor(&who), OffsetDateTime::now_utc())
            .map_err(|e| ApiError::internal(e.to_string()))?;
    let applied = state
        .onboarding
        .apply(submission, OffsetDateTime::now_utc())
        .await
        .map_err(refused)?;
    let view = state
        .onboarding
        .view(
            &applied.record.data.application_id,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(refused)?;
    let mut body = view_json(&view);
    body["noParticipant"] = json!(applied.no_participant);
    crate::connect_admin::add_invitation(
        &mut body,
        &applied,
        &state.repo.config().base_url,
        &invite,
        false,
    );
    Ok(ok(StatusCode::CREATED, body))
}

/// `GET /api/applications`.
pub async fn list(State(state): State<Shared>, who: Who) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let views = state
        .onboarding
        .queue(OffsetDateTime::now_utc())
        .await
        .map_err(refused)?;
    Ok(ok(
        StatusCode::OK,
        Value::Array(views.iter().map(view_json).collect()),
    ))
}

/// `GET /api/applications/{id}`.
pub async fn show(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    who: Who,
) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let view = state
        .onboarding
        .view(&id, OffsetDateTime::now_utc())
        .await
        .map_err(refused)?;
    Ok(ok(StatusCode::OK, view_json(&view)))
}

#[derive(serde::Deserialize)]
struct StepBody {
    step: String,
}

/// `POST /api/applications/{id}/steps`.
pub async fn step(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let body: StepBody = json_body(&body)?;
    let step = Step::parse(body.step.trim()).ok_or_else(|| {
        refused(OnboardingError::Invalid(vec![
            onboard::application::FieldError {
                field: "step".into(),
                message: format!("'{}' is not a checklist step", body.step),
            },
        ]))
    })?;
    let view = state
        .onboarding
        .complete_step(&id, step, &actor(&who), OffsetDateTime::now_utc())
        .await
        .map_err(refused)?;
    Ok(ok(StatusCode::OK, view_json(&view)))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecisionBody {
    decision: String,
    #[serde(default)]
    participant: String,
    #[serde(default)]
    duplicate_of: String,
    #[serde(default)]
    reason: String,
}

/// `POST /api/applications/{id}/decision`.
pub async fn decide(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let body: DecisionBody = json_body(&body)?;
    let decision = Decision::from_parts(&body.decision, &body.participant, &body.duplicate_of)
        .map_err(refused)?;
    let view = state
        .onboarding
        .decide(
            &id,
            decision,
            &actor(&who),
            &body.reason,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(refused)?;
    Ok(ok(StatusCode::OK, view_json(&view)))
}

#[derive(serde::Deserialize)]
struct PathBody {
    path: String,
    #[serde(default)]
    reason: String,
}

/// `POST /api/applications/{id}/path`.
pub async fn path(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&state, &who).await?;
    let body: PathBody = json_body(&body)?;
    let path = Path::parse(body.path.trim()).ok_or_else(|| {
        refused(OnboardingError::Invalid(vec![
            onboard::application::FieldError {
                field: "path".into(),
                message: format!("'{}' is not a path (ehr or secure-messaging)", body.path),
            },
        ]))
    })?;
    let view = state
        .onboarding
        .change_path(
            &id,
            path,
            &actor(&who),
            &body.reason,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(refused)?;
    Ok(ok(StatusCode::OK, view_json(&view)))
}
