//! The portal's HTML and HTTP plumbing: one [`escape`] for everything interpolated into a page, the
//! page frame, the response headers every page carries, cookies (reading a request's, writing the
//! portal's with its attributes) and `application/x-www-form-urlencoded` forms.

use std::collections::HashMap;

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every path the portal's cookies are sent to.
pub const COOKIE_PATH: &str = "/portal";

/// Text made safe for HTML element content and for quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` and `body` as given (the caller escaped what it interpolated into
/// `body`; the title is escaped here).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} - nutmeg</title>\n</head>\n<body>\n\
         <header><p><a href=\"/portal\">nutmeg portal</a></p></header>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        title = escape(title)
    )
}

/// A page as a response, with `cookies` set, never cached, framed or given scripts.
pub fn respond(status: StatusCode, html: String, cookies: &[String]) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    set_cookies(headers, cookies);
    response
}

/// `303 See Other` to `location` (a path of ours), with `cookies` set.
pub fn see_other(location: &'static str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(location));
    secure_headers(headers);
    set_cookies(headers, cookies);
    response
}

/// `303 See Other` to a path of ours built at run time (a path that is not a valid header value
/// goes to `/portal`).
pub fn see_other_to(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    let value = HeaderValue::from_str(location)
        .ok()
        .filter(|_| location.starts_with("/portal"))
        .unwrap_or(HeaderValue::from_static("/portal"));
    headers.insert(header::LOCATION, value);
    secure_headers(headers);
    response
}

/// A download: `bytes` as an attachment named `filename`, never shown inline. The type is the
/// declared one only when it is in a short list of types browsers do not run; everything else is
/// `application/octet-stream`.
pub fn download(bytes: Vec<u8>, declared_type: &str, filename: &str) -> Response {
    const SAFE: &[&str] = &[
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/tiff",
        "text/plain",
        "application/zip",
    ];
    let declared = declared_type.trim().to_ascii_lowercase();
    let content_type = if SAFE.contains(&declared.as_str()) {
        declared
    } else {
        "application/octet-stream".to_string()
    };
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ascii = if ascii.trim().is_empty() {
        "attachment".to_string()
    } else {
        ascii
    };
    let encoded =
        percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn set_cookies(headers: &mut HeaderMap, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// A `Set-Cookie` value for the portal: `HttpOnly`, `SameSite=Strict`, `Path=/portal`, `Secure`
/// when the exchange is served over HTTPS; `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// The value of the request's cookie `name` (the first, if sent twice).
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().to_string())
}

/// An `application/x-www-form-urlencoded` body; `None` if it is not UTF-8 (before or after
/// decoding). A name given twice keeps its first value.
pub fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut form = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .ok()
        };
        form.entry(decode(name)?).or_insert(decode(value)?);
    }
    Some(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("Zoë O'Neil"), "Zoë O&#39;Neil");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn pages_escape_their_title() {
        let html = page("<b>", "<p>body</p>");
        assert!(html.contains("<title>&lt;b&gt; - nutmeg</title>"));
        assert!(html.contains("<p>body</p>"));
    }

    #[test]
    fn cookies_carry_their_attributes() {
        assert_eq!(
            cookie("s", "v", 60, false),
            "s=v; Path=/portal; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(cookie("s", "v", 60, true).ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b = 2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3=3"));
        assert_eq!(read_cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(read_cookie(&headers, "c").as_deref(), Some("3=3"));
        assert_eq!(read_cookie(&headers, "d"), None);
    }

    #[test]
    fn forms_decode() {
        let form = parse_form(b"login=a%40b&password=x+y%2Bz&empty=&bare&login=second").unwrap();
        assert_eq!(form["login"], "a@b");
        assert_eq!(form["password"], "x y+z");
        assert_eq!(form["empty"], "");
        assert_eq!(form["bare"], "");
        assert!(parse_form(b"a=%ff").is_none());
        assert!(parse_form(&[0xff]).is_none());
    }
}
