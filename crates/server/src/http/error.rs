//! The HTTP adapter's error: a status and the issues of the OperationOutcome that answers it. It
//! never shows internals to the client; a failure's cause travels to the request log in a response
//! extension ([`Internal`]) where the request id is known.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use exchange::repository;
use fhir::{Issue, IssueType};

use super::negotiate::fhir_json;

/// Why a request failed with a 5xx, for the log only (never PHI: it names types, ids and causes).
#[derive(Debug, Clone)]
pub struct Internal(pub String);

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    internal: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        ApiError {
            status,
            issues: vec![Issue::error(code, diagnostics)],
            internal: None,
            challenge: None,
        }
    }

    /// 401: no valid credentials; `challenge` is the `WWW-Authenticate` value.
    pub fn unauthorized(diagnostics: impl Into<String>, challenge: String) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..ApiError::new(StatusCode::UNAUTHORIZED, IssueType::Login, diagnostics)
        }
    }

    /// `status` with every one of `issues` (a form's problems, each at its field).
    pub fn with_issues(status: StatusCode, issues: Vec<Issue>) -> Self {
        ApiError {
            status,
            issues,
            internal: None,
            challenge: None,
        }
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    /// A failure of the server itself: the client learns only that it happened.
    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            issues: vec![Issue::error(
                IssueType::Exception,
                "Internal server error; the request id identifies it in the server's log",
            )],
            internal: Some(cause.into()),
            challenge: None,
        }
    }
}

impl From<repository::Error> for ApiError {
    fn from(error: repository::Error) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let internal = status.is_server_error().then(|| error.to_string());
        ApiError {
            status,
            issues: error.issues(),
            internal,
            challenge: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = fhir::outcome::operation_outcome(&self.issues);
        let mut response = fhir_json(self.status, &body, false);
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(Internal(cause));
        }
        if let Some(challenge) = self.challenge.and_then(|c| c.parse().ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
