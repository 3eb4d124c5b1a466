//! The FHIR RESTful API handlers: each turns HTTP into a call of the repository and its answer (or
//! error) back into HTTP, with the FHIR headers (`ETag`, `Last-Modified`, `Location`) and the
//! client's preferences (`Prefer`, `_format`, `_pretty`).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use exchange::access::{Principal, PurposeOfUse, Requester};
use exchange::repository::{HistoryScope, ReadShape, Versioned, WriteOutcome};
use fhir::IssueType;
use serde_json::Value;

use super::error::ApiError;
use super::negotiate::{
    etag, fhir_json, http_date, if_match, read_body, read_json, Format, Prefer, Return, FORM_TYPES,
    JSON_TYPES, PATCH_TYPES,
};
use super::{RequestId, Shared};

type Answer = Result<Response, ApiError>;

/// The header (value `declared`) with which a break-the-glass (`ETREAT`) request declares a
/// medical emergency.
pub const EMERGENCY_HEADER: &str = "x-medical-emergency";

/// Who is asking: with an enforcing decision point, the SMART client a valid bearer token names
/// (401 with a `WWW-Authenticate` challenge when the token is missing, invalid, expired, or its
/// client was revoked since); with open access (`--auth none`), anonymous.
pub struct Who(pub Requester);

impl FromRequestParts<Shared> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let client_address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::serve::Peer>>()
            .map(|info| info.0 .0.ip());
        if !state.repo.decision_point().is_enforcing() {
            return Ok(Who(Requester::new(
                request_id,
                Principal::Anonymous,
                PurposeOfUse::Treat,
                false,
            )
            .with_client_address(client_address)));
        }
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("invalid"))
            .unwrap_or("");
        let bearer = state
            .smart
            .verify_bearer(authorization, crate::client::now())
            .map_err(|e| ApiError::unauthorized(e.to_string(), e.www_authenticate()))?;
        // A token outlives neither its client's revocation nor the client itself.
        let active = state
            .smart
            .client_active(state.repo.store(), &bearer.client_id)
            .await
            .map_err(|e| ApiError::internal(format!("reading the client: {e}")))?;
        if !active {
            let revoked = super::smart::BearerError::InvalidSignature;
            return Err(ApiError::unauthorized(
                "the access token's client is no longer registered",
                revoked.www_authenticate(),
            ));
        }
        // A break-the-glass request may declare a medical emergency (42 CFR 2.51): only then does
        // the privacy policy open substance-use records; the declaration is in the audit trail.
        let emergency_declared = bearer.purpose == PurposeOfUse::Etreat
            && parts
                .headers
                .get(EMERGENCY_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("declared"));
        let mut who = Requester::new(
            request_id,
            Principal::Client {
                client_id: bearer.client_id,
                participant: bearer.participant_id,
                scopes: bearer.scopes,
            },
            bearer.purpose,
            true,
        )
        .with_client_address(client_address);
        who.emergency_declared = emergency_declared;
        Ok(Who(who))
    }
}

/// The query's parameters, without the ones about the response format.
fn params(uri: &Uri) -> Vec<(String, String)> {
    exchange::repository::parse_query_string(uri.query().unwrap_or(""))
        .into_iter()
        .filter(|(name, _)| name != "_format" && name != "_pretty")
        .collect()
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request(format!("the {name} header is not text")))
        })
        .transpose()
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn version_headers(response: &mut Response, version: i64, last_updated: i64) {
    set(response, header::ETAG, &etag(version));
    set(response, header::LAST_MODIFIED, &http_date(last_updated));
}

/// A resource with its `ETag` and `Last-Modified`.
fn resource_response(status: StatusCode, resource: &Versioned, format: Format) -> Response {
    let mut response = fhir_json(status, &resource.resource, format.pretty);
    version_headers(&mut response, resource.version, resource.last_updated);
    response
}

/// The answer to a create, update or patch, shaped by `Prefer: return=`.
fn write_response(
    state: &Shared,
    outcome: WriteOutcome,
    prefer: Prefer,
    format: Format,
) -> Response {
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let resource = &outcome.resource;
    let mut response = match prefer.return_ {
        Return::Representation => fhir_json(status, &resource.resource, format.pretty),
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => fhir_json(
            status,
            &fhir::outcome::operation_outcome(&outcome.issues),
            format.pretty,
        ),
    };
    version_headers(&mut response, resource.version, resource.last_updated);
    if outcome.created {
        let location = format!(
            "{}/{}/{}/_history/{}",
            state.repo.config().base_url,
            resource.resource_type,
            resource.id,
            resource.version
        );
        set(&mut response, header::LOCATION, &location);
    }
    response
}

/// The answer to a delete: 204, or 200 with an OperationOutcome when the client prefers one.
fn delete_response(
    version: Option<i64>,
    message: String,
    prefer: Prefer,
    format: Format,
) -> Response {
    let mut response = if prefer.return_ == Return::OperationOutcome {
        fhir_json(
            StatusCode::OK,
            &fhir::outcome::operation_outcome(&[fhir::Issue::information(
                IssueType::Informational,
                message,
            )]),
            format.pretty,
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if let Some(version) = version {
        set(&mut response, header::ETAG, &etag(version));
    }
    response
}

pub async fn metadata(State(state): State<Shared>, format: Format) -> Response {
    fhir_json(
        StatusCode::OK,
        &state.repo.capability_statement(),
        format.pretty,
    )
}

/// `GET [type]/[id]`; with `If-None-Match` naming the current version, 304 without a body.
pub async fn read(
    State(state): State<Shared>,
    Path((ty, id)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    if ty == "Patient" && id.starts_with('$') {
        return patient_type_operation_get(&state, &id, format, &who, &uri).await;
    }
    let shape = ReadShape::from_params(&params(&uri))?;
    if ty == "AuditEvent" {
        let event = state.repo.read_audit_event(&who, &id).await?;
        return Ok(fhir_json(
            StatusCode::OK,
            &shape.apply(event),
            format.pretty,
        ));
    }
    let mut resource = state.repo.read(&who, &ty, &id).await?;
    if not_modified(&headers, resource.version) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        version_headers(&mut response, resource.version, resource.last_updated);
        return Ok(response);
    }
    resource.resource = shape.apply(resource.resource);
    Ok(resource_response(StatusCode::OK, &resource, format))
}

/// Whether `If-None-Match` names `version` (or is `*`); weak and strong tags compare alike.
fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    let current = format!("\"{version}\"");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current)
}

pub async fn vread(
    State(state): State<Shared>,
    Path((ty, id, version)): Path<(String, String, String)>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    let version: i64 = version.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Value,
            "the version id must be a whole number",
        )
    })?;
    let shape = ReadShape::from_params(&params(&uri))?;
    let mut resource = state.repo.vread(&who, &ty, &id, version).await?;
    resource.resource = shape.apply(resource.resource);
    Ok(resource_response(StatusCode::OK, &resource, format))
}

pub async fn create(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let if_none_exist = header_text(&headers, "if-none-exist")?;
    let resource = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
    let outcome = state
        .repo
        .create(&who, &ty, resource, if_none_exist.as_deref())
        .await?;
    Ok(write_response(&state, outcome, prefer, format))
}

pub async fn update(
    State(state): State<Shared>,
    Path((ty, id)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let expected = if_match(&headers)?;
    let resource = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
    let outcome = state
        .repo
        .update(&who, &ty, &id, resource, expected)
        .await?;
    Ok(write_response(&state, outcome, prefer, format))
}

pub async fn conditional_update(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let params = params(&uri);
    if params.is_empty() {
        return Err(ApiError::bad_request(
            "a conditional update needs search parameters (PUT [type]?[search])",
        ));
    }
    let resource = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
    let outcome = state
        .repo
        .conditional_update(&who, &ty, &params, resource)
        .await?;
    Ok(write_response(&state, outcome, prefer, format))
}

pub async fn patch(
    State(state): State<Shared>,
    Path((ty, id)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let expected = if_match(&headers)?;
    let patch = read_json(&headers, body, state.max_body, PATCH_TYPES).await?;
    let outcome = state.repo.patch(&who, &ty, &id, patch, expected).await?;
    Ok(write_response(&state, outcome, prefer, format))
}

pub async fn delete(
    State(state): State<Shared>,
    Path((ty, id)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    headers: HeaderMap,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let version = state.repo.delete(&who, &ty, &id).await?;
    let message = match version {
        Some(_) => "Deleted".to_string(),
        None => "Nothing to delete".to_string(),
    };
    Ok(delete_response(version, message, prefer, format))
}

pub async fn conditional_delete(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let prefer = Prefer::from_headers(&headers)?;
    let params = params(&uri);
    if params.is_empty() {
        return Err(ApiError::bad_request(
            "a conditional delete needs search parameters (DELETE [type]?[search])",
        ));
    }
    let deleted = state.repo.conditional_delete(&who, &ty, &params).await?;
    Ok(delete_response(
        None,
        format!("Deleted {deleted} resource(s)"),
        prefer,
        format,
    ))
}

async fn history(
    state: &Shared,
    who: &Requester,
    scope: HistoryScope,
    uri: &Uri,
    format: Format,
) -> Answer {
    let bundle = state.repo.history(who, scope, &params(uri)).await?;
    Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
}

pub async fn history_instance(
    State(state): State<Shared>,
    Path((ty, id)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    history(&state, &who, HistoryScope::Instance(ty, id), &uri, format).await
}

pub async fn history_type(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    history(&state, &who, HistoryScope::Type(ty), &uri, format).await
}

pub async fn history_system(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    history(&state, &who, HistoryScope::System, &uri, format).await
}

async fn search(
    state: &Shared,
    who: &Requester,
    ty: Option<&str>,
    params: Vec<(String, String)>,
    headers: &HeaderMap,
    format: Format,
) -> Answer {
    let prefer = Prefer::from_headers(headers)?;
    if ty == Some("AuditEvent") {
        // The audit trail is its own store, searched by its own parameters (operators only).
        let bundle = state.repo.search_audit_events(who, &params).await?;
        return Ok(fhir_json(StatusCode::OK, &bundle, format.pretty));
    }
    let bundle = state.repo.search(who, ty, &params, prefer.handling).await?;
    Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
}

/// The parameters of a `_search` POST: the query string's and the form body's.
async fn form_params(
    state: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = read_body(headers, body, state.max_body, FORM_TYPES).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the form body is not UTF-8"))?;
    let mut all = params(uri);
    all.extend(
        exchange::repository::parse_query_string(text)
            .into_iter()
            .filter(|(name, _)| name != "_format" && name != "_pretty"),
    );
    Ok(all)
}

pub async fn search_type(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    search(&state, &who, Some(&ty), params(&uri), &headers, format).await
}

pub async fn search_type_post(
    State(state): State<Shared>,
    Path(ty): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let params = form_params(&state, &uri, &headers, body).await?;
    search(&state, &who, Some(&ty), params, &headers, format).await
}

pub async fn search_system(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    search(&state, &who, None, params(&uri), &headers, format).await
}

pub async fn search_system_post(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let params = form_params(&state, &uri, &headers, body).await?;
    search(&state, &who, None, params, &headers, format).await
}

/// `POST /fhir` with a batch or transaction Bundle.
pub async fn bundle(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bundle: Value = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
    let response = state.repo.bundle(&who, bundle).await?;
    Ok(fhir_json(StatusCode::OK, &response, format.pretty))
}

/// `GET /fhir/Patient/{id}/$everything`.
/// `GET [type]/[id]/$operation`: `Patient/[id]/$everything` and `Patient/[id]/$disclosures` (the
/// patient's accounting of disclosures).
pub async fn instance_operation(
    State(state): State<Shared>,
    Path((ty, id, operation)): Path<(String, String, String)>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    match (ty.as_str(), operation.as_str()) {
        ("Patient", "$everything") => {
            let bundle = state.repo.everything(&who, &id, &params(&uri)).await?;
            Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
        }
        ("Patient", "$disclosures") => {
            let bundle = state.repo.disclosures(&who, &id, &params(&uri)).await?;
            Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
        }
        ("Patient", "$attest-treatment") => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            "$attest-treatment is invoked with POST",
        )),
        _ => Err(unknown_operation(&ty, &operation)),
    }
}

/// `POST Patient/[id]/$attest-treatment`: the requester's participant attests a treatment
/// relationship with the patient (recorded and audited); answers an OperationOutcome.
pub async fn instance_operation_post(
    State(state): State<Shared>,
    Path((ty, id, operation)): Path<(String, String, String)>,
    format: Format,
    Who(who): Who,
) -> Answer {
    match (ty.as_str(), operation.as_str()) {
        ("Patient", "$attest-treatment") => {
            state.repo.attest_treatment(&who, &id).await?;
            let outcome = fhir::outcome::operation_outcome(&[fhir::Issue::information(
                IssueType::Informational,
                "The treatment relationship is recorded",
            )]);
            Ok(fhir_json(StatusCode::OK, &outcome, format.pretty))
        }
        ("Patient", "$everything" | "$disclosures") => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("{operation} is invoked with GET"),
        )),
        _ => Err(unknown_operation(&ty, &operation)),
    }
}

/// `POST [type]/$operation` (the route of `[type]/[id]`, whose `id` is then the operation):
/// `Patient/$match`, with a Parameters body (or a bare Patient), and operators' `Patient/$mpi-link`
/// and `Patient/$mpi-unlink` (Parameters with `patient-a`, `patient-b` and `reason`).
pub async fn type_operation_post(
    State(state): State<Shared>,
    Path((ty, operation)): Path<(String, String)>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    match (ty.as_str(), operation.as_str()) {
        ("Patient", "$match") => {
            let body: Value = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
            let bundle = state.repo.match_patients(&who, body, &params(&uri)).await?;
            Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
        }
        ("Patient", "$mpi-link" | "$mpi-unlink") => {
            let body: Value = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
            let link = operation == "$mpi-link";
            let answer = state.repo.mpi_decide(&who, link, &body).await?;
            Ok(fhir_json(StatusCode::OK, &answer, format.pretty))
        }
        ("Patient", "$mpi-review" | "$mpi-history" | "$ihe-pix") => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("{operation} is invoked with GET"),
        )),
        _ if operation.starts_with('$') => Err(unknown_operation(&ty, &operation)),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            "this method is not allowed on this endpoint",
        )),
    }
}

/// `GET Patient/$operation` (the route of `[type]/[id]`): the master patient index's operations,
/// for operators `$mpi-review` (the review queue) and `$mpi-history` (the link history), and IHE
/// PIXm's `$ihe-pix` (identifier cross-referencing across the enterprise identity).
async fn patient_type_operation_get(
    state: &Shared,
    operation: &str,
    format: Format,
    who: &Requester,
    uri: &Uri,
) -> Answer {
    let params = params(uri);
    let answer = match operation {
        "$mpi-review" => state.repo.mpi_reviews(who, &params).await?,
        "$mpi-history" => state.repo.mpi_history(who, &params).await?,
        "$ihe-pix" => state.repo.pix_query(who, &params).await?,
        "$match" | "$mpi-link" | "$mpi-unlink" => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                IssueType::NotSupported,
                format!("{operation} is invoked with POST"),
            ))
        }
        _ => return Err(unknown_operation("Patient", operation)),
    };
    Ok(fhir_json(StatusCode::OK, &answer, format.pretty))
}

fn unknown_operation(ty: &str, operation: &str) -> ApiError {
    if operation.starts_with('$') {
        ApiError::not_found(format!("no operation {operation} on {ty}"))
    } else {
        ApiError::not_found("Unknown path")
    }
}

/// `GET /fhir/pdqm/metadata`: the CapabilityStatement of the IHE PDQm Patient Demographics
/// Supplier whose base is `/fhir/pdqm`.
pub async fn pdqm_metadata(State(state): State<Shared>, format: Format) -> Response {
    fhir_json(
        StatusCode::OK,
        &state.repo.pdqm_capability_statement(),
        format.pretty,
    )
}

/// `GET /fhir/pdqm/Patient?...`: IHE PDQm (ITI-78) enterprise-wide patient search.
pub async fn pdqm_search(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    uri: Uri,
) -> Answer {
    let bundle = state.repo.pdqm_search(&who, &params(&uri)).await?;
    Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
}

/// `POST /fhir/pdqm/Patient/_search` with a form body: the same search.
pub async fn pdqm_search_post(
    State(state): State<Shared>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let params = form_params(&state, &uri, &headers, body).await?;
    let bundle = state.repo.pdqm_search(&who, &params).await?;
    Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
}

/// `GET /fhir/pdqm/Patient/{id}`: PDQm's retrieve, the Patient with its person's `seealso` links.
pub async fn pdqm_read(
    State(state): State<Shared>,
    Path(id): Path<String>,
    format: Format,
    Who(who): Who,
) -> Answer {
    let patient = state.repo.pdqm_read(&who, &id).await?;
    Ok(fhir_json(StatusCode::OK, &patient, format.pretty))
}

/// `POST /fhir/pdqm/Patient/$match`: PDQm's Patient Demographics Match (ITI-119), the exchange's
/// `Patient/$match`.
pub async fn pdqm_operation_post(
    State(state): State<Shared>,
    Path(operation): Path<String>,
    format: Format,
    Who(who): Who,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if operation != "$match" {
        return Err(unknown_operation("Patient", &operation));
    }
    let body: Value = read_json(&headers, body, state.max_body, JSON_TYPES).await?;
    let bundle = state.repo.match_patients(&who, body, &params(&uri)).await?;
    Ok(fhir_json(StatusCode::OK, &bundle, format.pretty))
}
