//! The HTTP adapter: the FHIR REST API under `/fhir`, `/healthz`, `/metrics` and SMART Backend
//! Services (`smart`: `/.well-known/smart-configuration` and the token endpoint), as one axum
//! [`Router`] built by [`app`]. Every request gets a request id (the client's `x-request-id` if it is
//! sensible, otherwise a fresh one), is logged by route template (never its query string, which
//! may hold patient names) and counted in the metrics; every error is an OperationOutcome; a panic
//! in a handler becomes a 500 that shows nothing of its cause.

mod cds;
mod error;
pub mod negotiate;
pub mod onboarding;
mod panic;
mod rest;
pub mod smart;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use exchange::repository::Repository;
use fhir::IssueType;

pub use error::{ApiError, Internal};

use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub repo: Repository,
    pub metrics: Metrics,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The token endpoint's key, URL and JWKS cache; checks bearer tokens.
    pub smart: Arc<smart::Smart>,
    /// Direct messaging (the web inbox sends and opens through it), when the server runs with a
    /// Direct configuration.
    pub direct: Option<crate::smtp::Hisp>,
    /// Connecting to the exchange: applications, the onboarding checklist, agreements (with the
    /// configured service levels).
    pub onboarding: exchange::onboarding::Onboarding,
    /// The mandate the compliance pages apply (the configuration's `mandate`).
    pub mandate: Arc<onboard::mandate::Mandate>,
}

pub type Shared = Arc<AppState>;

/// The request id of the request being handled, for the log and the requester.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// The application with `extra` routes behind the same middleware (request ids, logging, metrics,
/// panic catching): for tests.
pub fn app_with(state: AppState, extra: Router<Shared>) -> Router {
    let state = Arc::new(state);
    extra
        .route("/cds-services", get(cds::discovery))
        .route("/cds-services/patient-consent-consult", post(cds::consult))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/.well-known/smart-configuration",
            get(smart::configuration),
        )
        .route(smart::TOKEN_PATH, post(smart::token))
        .route("/portal", get(crate::portal::home))
        .route(
            "/portal/sign-in",
            get(crate::portal::sign_in_form).post(crate::portal::sign_in),
        )
        .route("/portal/sign-out", post(crate::portal::sign_out))
        .route(
            "/portal/invite/{secret}",
            get(crate::portal::invite::show).post(crate::portal::invite::accept),
        )
        .route("/portal/disclosures", get(crate::portal::disclosures))
        .route("/portal/privacy", get(crate::portal::privacy::show))
        .route("/portal/notices", get(crate::portal::notices::list))
        .route(
            "/portal/privacy/choice",
            post(crate::portal::privacy::choice),
        )
        .route(
            "/portal/privacy/grants",
            post(crate::portal::privacy::grant),
        )
        .route(
            "/portal/privacy/consents/{id}/withdraw",
            post(crate::portal::privacy::withdraw),
        )
        .route(
            "/portal/connect",
            get(crate::portal::connect::connect_form).post(crate::portal::connect::connect),
        )
        .route("/portal/applications", get(crate::portal::connect::mine))
        .route(
            "/portal/applications/{id}",
            get(crate::portal::connect::show),
        )
        .route(
            "/portal/applications/{id}/step",
            post(crate::portal::connect::step),
        )
        .route(
            "/portal/applications/{id}/path",
            post(crate::portal::connect::change_path),
        )
        .route(
            "/portal/applications/{id}/decision",
            post(crate::portal::connect::decide),
        )
        .route(
            "/portal/applications/{id}/agreements/{kind}/{version}",
            get(crate::portal::connect::agreement_form).post(crate::portal::connect::sign),
        )
        .route(
            "/portal/applications/{id}/signatures/{signature}",
            get(crate::portal::connect::receipt),
        )
        .route("/portal/onboarding", get(crate::portal::connect::queue))
        .route(
            "/api/applications",
            get(onboarding::list).post(onboarding::create),
        )
        .route("/api/applications/{id}", get(onboarding::show))
        .route("/api/applications/{id}/steps", post(onboarding::step))
        .route("/api/applications/{id}/path", post(onboarding::path))
        .route("/api/applications/{id}/decision", post(onboarding::decide))
        .route("/portal/ehr", get(crate::portal::ehr::catalog_page))
        .route(
            "/portal/ehr/request",
            get(crate::portal::ehr::request_form).post(crate::portal::ehr::request_post),
        )
        .route(
            "/portal/ehr/requests",
            get(crate::portal::ehr::requests_page),
        )
        .route(
            "/portal/compliance",
            get(crate::portal::compliance::overview),
        )
        .route(
            "/portal/compliance/match",
            post(crate::portal::compliance::decide_match),
        )
        .route(
            "/portal/compliance/chart.svg",
            get(crate::portal::compliance::chart),
        )
        .route(
            "/portal/compliance/report.csv",
            get(crate::portal::compliance::report_csv),
        )
        .route(
            "/portal/compliance/licensees",
            get(crate::portal::compliance::licensees),
        )
        .route(
            "/portal/compliance/lookup",
            get(crate::portal::compliance::lookup_form).post(crate::portal::compliance::lookup),
        )
        .route("/portal/inbox", get(crate::portal::inbox::list))
        .route(
            "/portal/inbox/compose",
            get(crate::portal::inbox::compose_form).post(crate::portal::inbox::compose),
        )
        .route(
            "/portal/inbox/directory",
            get(crate::portal::inbox::address_book),
        )
        .route("/portal/inbox/sent/{row}", get(crate::portal::inbox::sent))
        .route(
            "/portal/inbox/messages/{id}",
            get(crate::portal::inbox::message),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}",
            get(crate::portal::inbox::part),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}/view",
            get(crate::portal::inbox::view),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}/import",
            post(crate::portal::inbox::import),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}/docs/{k}",
            get(crate::portal::inbox::xdm_document),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}/docs/{k}/view",
            get(crate::portal::inbox::view_xdm),
        )
        .route(
            "/portal/inbox/messages/{id}/parts/{n}/docs/{k}/import",
            post(crate::portal::inbox::import_xdm),
        )
        .route("/fhir", get(rest::search_system).post(rest::bundle))
        .route("/fhir/", get(rest::search_system).post(rest::bundle))
        .route("/fhir/metadata", get(rest::metadata))
        .route("/fhir/_history", get(rest::history_system))
        .route("/fhir/_search", post(rest::search_system_post))
        .route("/fhir/pdqm/metadata", get(rest::pdqm_metadata))
        .route("/fhir/pdqm/Patient", get(rest::pdqm_search))
        .route("/fhir/pdqm/Patient/_search", post(rest::pdqm_search_post))
        .route(
            "/fhir/pdqm/Patient/{id}",
            get(rest::pdqm_read).post(rest::pdqm_operation_post),
        )
        .route(
            "/fhir/{type}",
            get(rest::search_type)
                .post(rest::create)
                .put(rest::conditional_update)
                .delete(rest::conditional_delete),
        )
        .route("/fhir/{type}/_search", post(rest::search_type_post))
        .route("/fhir/{type}/_history", get(rest::history_type))
        .route(
            "/fhir/{type}/{id}",
            get(rest::read)
                .post(rest::type_operation_post)
                .put(rest::update)
                .patch(rest::patch)
                .delete(rest::delete),
        )
        .route("/fhir/{type}/{id}/_history", get(rest::history_instance))
        .route("/fhir/{type}/{id}/_history/{version}", get(rest::vread))
        .route(
            "/fhir/{type}/{id}/{operation}",
            get(rest::instance_operation).post(rest::instance_operation_post),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(panic::catch_panic))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        "this method is not allowed on this endpoint",
    )
}

/// `/healthz`: 200 when the store answers, 503 otherwise.
async fn healthz(State(state): State<Shared>) -> Response {
    let started = Instant::now();
    let health = state.repo.store().health().await;
    state.metrics.store("health", started.elapsed());
    let engine = state.repo.store().engine();
    match health {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"status\":\"ok\",\"store\":\"{engine}\"}}"),
        )
            .into_response(),
        Err(e) => {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Exception,
                "the store does not answer",
            )
            .into_response();
            response
                .extensions_mut()
                .insert(Internal(format!("health check failed: {e}")));
            response
        }
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Gives the request its id, then logs and counts it by route template and interaction. An error
/// answered without an OperationOutcome (a rejection inside axum) gets one here.
async fn observe(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.start();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let interaction = interaction(&method, route.as_deref());

    let mut response = next.run(request).await;

    let status = response.status();
    if status.as_u16() >= 400 && !keeps_its_body(&response) {
        let extensions = std::mem::take(response.extensions_mut());
        let code = if status.is_server_error() {
            IssueType::Exception
        } else {
            IssueType::Invalid
        };
        let reason = status.canonical_reason().unwrap_or("request failed");
        response = ApiError::new(status, code, reason).into_response();
        response.extensions_mut().extend(extensions);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let elapsed = started.elapsed();
    state.metrics.request(interaction, status.as_u16(), elapsed);
    let route = route.as_deref().unwrap_or("unmatched");
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    match response.extensions().get::<Internal>() {
        Some(Internal(cause)) => tracing::error!(
            request_id = %id, %method, route, interaction, status = status.as_u16(), latency_ms, cause = %cause,
            "request failed"
        ),
        None => tracing::info!(
            request_id = %id, %method, route, interaction, status = status.as_u16(), latency_ms,
            "request"
        ),
    }
    response
}

/// An OperationOutcome, the JSON error of the OAuth token endpoint (which must stay OAuth's), or a
/// portal page (HTML, which a person reads).
fn keeps_its_body(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/fhir+json")
                || v.starts_with("application/json")
                || v.starts_with("text/html")
        })
}

/// The client's `x-request-id` when it is a short token, otherwise a fresh UUID.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The FHIR interaction a request is, from its method and route template.
pub fn interaction(method: &Method, route: Option<&str>) -> &'static str {
    let Some(route) = route else {
        return "unknown";
    };
    match (method.as_str(), route) {
        (_, "/healthz") => "health",
        (_, "/metrics") => "metrics",
        ("GET", "/.well-known/smart-configuration") => "smart-configuration",
        ("POST", "/auth/token") => "token",
        (_, route) if route.starts_with("/portal") => "portal",
        (_, route) if route.starts_with("/api/applications") => "onboarding",
        ("GET", "/fhir/metadata") => "capabilities",
        ("GET", "/fhir" | "/fhir/") | ("POST", "/fhir/_search") => "search-system",
        ("POST", "/fhir" | "/fhir/") => "batch-transaction",
        ("GET", "/fhir/_history") => "history-system",
        ("GET", "/fhir/{type}") | ("POST", "/fhir/{type}/_search") => "search-type",
        ("POST", "/fhir/{type}") => "create",
        ("PUT", "/fhir/{type}") => "conditional-update",
        ("DELETE", "/fhir/{type}") => "conditional-delete",
        ("GET", "/fhir/{type}/_history") => "history-type",
        ("GET", "/fhir/{type}/{id}") => "read",
        ("PUT", "/fhir/{type}/{id}") => "update",
        ("PATCH", "/fhir/{type}/{id}") => "patch",
        ("DELETE", "/fhir/{type}/{id}") => "delete",
        ("GET", "/fhir/{type}/{id}/_history") => "history-instance",
        ("GET", "/fhir/{type}/{id}/_history/{version}") => "vread",
        (_, "/fhir/{type}/{id}/{operation}") => "operation",
        _ => "unknown",
    }
}
