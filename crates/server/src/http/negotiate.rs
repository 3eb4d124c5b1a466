//! The HTTP edges of FHIR: content negotiation (`Accept`, `_format`, `_pretty`), the `Prefer`
//! header, `If-Match`, reading a request body under the size limit, and writing FHIR JSON.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use serde_json::Value;

use super::error::ApiError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The JSON media types a body may have; `application/json-patch+json` only for PATCH.
pub const JSON_TYPES: &[&str] = &["application/fhir+json", "application/json"];
pub const PATCH_TYPES: &[&str] = &["application/json-patch+json"];
pub const FORM_TYPES: &[&str] = &["application/x-www-form-urlencoded"];

/// How the client wants the answer: always JSON (XML is 406), pretty or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    pub pretty: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let params = exchange::repository::parse_query_string(parts.uri.query().unwrap_or(""));
        let mut pretty = false;
        let mut format_given = false;
        for (name, value) in &params {
            match name.as_str() {
                "_format" => {
                    format_given = true;
                    if !json_format(value) {
                        return Err(not_acceptable());
                    }
                }
                "_pretty" => match value.as_str() {
                    "true" => pretty = true,
                    "false" => pretty = false,
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            IssueType::Value,
                            "_pretty must be 'true' or 'false'",
                        ))
                    }
                },
                _ => {}
            }
        }
        // `_format` overrides `Accept` (browsers send XML types in it).
        if !format_given {
            if let Some(accept) = parts.headers.get(header::ACCEPT) {
                let accept = accept.to_str().unwrap_or("");
                if !accept.trim().is_empty() && !accepts_json(accept) {
                    return Err(not_acceptable());
                }
            }
        }
        Ok(Format { pretty })
    }
}

fn not_acceptable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        IssueType::NotSupported,
        "this server answers in JSON only (application/fhir+json)",
    )
}

fn json_format(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
    )
}

/// Whether an `Accept` header admits JSON: a JSON type, `*/*` or `application/*` with a
/// non-zero quality.
fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused
            && matches!(
                media.as_str(),
                "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/fhir+json"
                    | "application/json+fhir"
            )
    })
}

/// What the `Prefer` header asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub return_: Return,
    pub handling: exchange::repository::Handling,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Result<Prefer, ApiError> {
        let mut prefer = Prefer::default();
        for value in headers.get_all("prefer") {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("the Prefer header is not text"))?;
            for item in text.split([',', ';']) {
                let (key, value) = match item.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim().trim_matches('"')),
                    None => (item.trim(), ""),
                };
                match (key, value) {
                    ("return", "minimal") => prefer.return_ = Return::Minimal,
                    ("return", "representation") => prefer.return_ = Return::Representation,
                    ("return", "OperationOutcome") => prefer.return_ = Return::OperationOutcome,
                    ("handling", "strict") => {
                        prefer.handling = exchange::repository::Handling::Strict
                    }
                    ("handling", "lenient") => {
                        prefer.handling = exchange::repository::Handling::Lenient
                    }
                    // Unknown values and other preferences are hints we may ignore (RFC 7240).
                    _ => {}
                }
            }
        }
        Ok(prefer)
    }
}

/// The version an `If-Match` header names (`W/"3"` or `"3"`), if there is one.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    match bare.parse::<i64>() {
        Ok(version) if version > 0 => Ok(Some(version)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Value,
            "If-Match must name a version as an ETag, like W/\"3\"",
        )),
    }
}

/// The media type of the request body (lower case, without parameters), if it has one.
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Reads the whole body under `limit` bytes (before and after gzip decoding): 415 for a media type
/// not in `allowed` (a body without one is taken as the first allowed type) or an encoding other
/// than gzip, 413 over the limit.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    allowed: &[&str],
) -> Result<axum::body::Bytes, ApiError> {
    if let Some(media) = content_type(headers) {
        if !allowed.contains(&media.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                format!(
                    "unsupported Content-Type '{media}'; send {}",
                    allowed.join(" or ")
                ),
            ));
        }
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let over = std::error::Error::source(&e)
                .map(|s| s.to_string().contains("length limit"))
                .unwrap_or(false)
                || e.to_string().contains("length limit");
            return if over {
                Err(too_large())
            } else {
                Err(ApiError::bad_request("the request body could not be read"))
            };
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(bytes),
        Some("gzip" | "x-gzip") => {
            // The limit holds for the decompressed body too (no zip bombs).
            let mut out = Vec::new();
            let mut decoder = std::io::Read::take(
                flate2::read::MultiGzDecoder::new(&bytes[..]),
                limit as u64 + 1,
            );
            std::io::Read::read_to_end(&mut decoder, &mut out)
                .map_err(|_| ApiError::bad_request("the request body is not valid gzip"))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out.into())
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("unsupported Content-Encoding '{other}'; send gzip or none"),
        )),
    }
}

/// Reads and parses a JSON body. Malformed or too deeply nested JSON is a 400 that says where.
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    allowed: &[&str],
) -> Result<Value, ApiError> {
    let bytes = read_body(headers, body, limit, allowed).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            "the request body is empty",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde_json's messages name the problem and its position, never the content.
        let what = if e.to_string().contains("recursion limit") {
            format!(
                "the JSON is nested too deeply (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            format!("the body is not valid JSON: {e}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Structure, what)
    })
}

/// A FHIR JSON response.
pub fn fhir_json(status: StatusCode, body: &impl serde::Serialize, pretty: bool) -> Response {
    let text = if pretty {
        // Through a value, so that stored text spliced into a searchset is indented too.
        serde_json::to_value(body).and_then(|value| serde_json::to_string_pretty(&value))
    } else {
        serde_json::to_string(body)
    }
    .unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        text,
    )
        .into_response()
}

/// An RFC 7231 HTTP date (`Tue, 15 Nov 1994 08:12:31 GMT`) from milliseconds since the epoch.
pub fn http_date(millis: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert!(accepts_json("application/fhir+json"));
        assert!(accepts_json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!accepts_json("application/fhir+xml"));
        assert!(!accepts_json("application/json;q=0, application/xml"));
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784_887_151_000), "Tue, 15 Nov 1994 08:12:31 GMT");
    }
}
