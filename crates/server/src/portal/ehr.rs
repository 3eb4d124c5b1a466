//! The EHR compatibility catalog in the portal: `GET /portal/ehr[?q=WORDS]`, public, answers "is
//! my EHR compatible, and what do I do if it is not?" in plain words (each product's status with
//! the advice for it, from `onboard::catalog`); `GET`/`POST /portal/ehr/request`, public, a
//! provider's request to add a product or to review one (CSRF by a double-submit cookie, as the
//! sign-in form, since no session exists; errors beside each field, nothing typed lost); and
//! `GET /portal/ehr/requests`, operators only, the requests counted per product with the
//! participants using each.
//!
//! Also the small helpers the portal's public forms share: [`form_token`] and [`form_token_ok`].

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::catalog::{self, RequestForm};
use onboard::application::FieldError;
use onboard::catalog::{Product, Status};

use super::account::{same_token, RoleCode};
use super::html::{cookie, escape, page, read_cookie, respond};
use super::{internal, read_form, secure, signed_in};
use crate::http::Shared;

/// The double-submit cookie of the portal's public forms (other than sign-in).
pub const FORM_COOKIE: &str = "nutmeg_form";
/// How long a public form may wait before it is sent.
const FORM_SECONDS: i64 = 2 * 60 * 60;

/// A fresh token for a public form and the cookie that carries it.
pub fn form_token(state: &Shared) -> anyhow::Result<(String, String)> {
    let token = super::account::random_token(32)?;
    let set = cookie(FORM_COOKIE, &token, FORM_SECONDS, secure(state));
    Ok((token, set))
}

/// Whether a public form's token equals its cookie's.
pub fn form_token_ok(parts: &Parts, form: &HashMap<String, String>) -> bool {
    let expected = read_cookie(&parts.headers, FORM_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    !expected.is_empty() && same_token(&expected, sent)
}

/// The message beside a field, if it has one.
pub fn error_for<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}

/// A labelled text input with its value kept and its error beside it.
pub fn text_field(label: &str, name: &str, value: &str, error: Option<&str>, hint: &str) -> String {
    let error_html = error
        .map(|m| {
            format!(
                " <strong class=\"error\" id=\"{name}-error\">{}</strong>",
                escape(m)
            )
        })
        .unwrap_or_default();
    let described = if error.is_some() {
        format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\"")
    } else {
        String::new()
    };
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("<br><small>{}</small>", escape(hint))
    };
    format!(
        "<p><label for=\"{name}\">{label}</label>{error_html}{hint}<br>\
         <input id=\"{name}\" name=\"{name}\" value=\"{value}\"{described}></p>\n",
        label = escape(label),
        value = escape(value),
    )
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Connected => "Connected",
        Status::Compatible => "Compatible",
        Status::NotYetCompatible => "Not yet compatible",
    }
}

fn query_of(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .and_then(|q| super::html::parse_form(q.as_bytes()))
        .unwrap_or_default()
}

/// `GET /portal/ehr[?q=WORDS]`.
pub async fn catalog_page(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = query_of(&parts);
    let q: String = query
        .get("q")
        .map(|q| q.trim().chars().take(catalog::MAX_FIELD).collect())
        .unwrap_or_default();
    let products = match catalog::products(state.repo.store()).await {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let mut body = format!(
        "<h1>Is my EHR compatible?</h1>\n\
         <p>The law asks every licensed provider either to apply to connect to the exchange (if \
         their electronic health record system can connect) or to be able to send and receive \
         secure messages through it (if it cannot). Look up your EHR to see which applies to \
         you.</p>\n\
         <form method=\"get\" action=\"/portal/ehr\">\n<p><label for=\"q\">Your EHR's vendor, \
         product or ONC certification id</label><br>\n<input id=\"q\" name=\"q\" value=\"{}\">\n\
         <button type=\"submit\">Search</button></p>\n</form>\n",
        escape(&q)
    );
    let found = onboard::catalog::search(&products, &q);
    if found.is_empty() {
        body.push_str(&format!(
            "<h2>Not in the catalog</h2>\n<p>No product in the catalog matches \
             &ldquo;{}&rdquo;. That does not mean it cannot connect: the exchange has not \
             reviewed it yet. <a href=\"/portal/ehr/request\">Ask for your EHR to be added</a>, \
             and in the meantime you meet the law by being able to send and receive secure \
             messages: apply to connect, sign the agreements, and the exchange issues you a \
             Direct address and a web inbox.</p>\n",
            escape(&q)
        ));
    } else {
        if !q.is_empty() {
            body.push_str(&format!(
                "<p>{} product(s) match &ldquo;{}&rdquo;.</p>\n",
                found.len(),
                escape(&q)
            ));
        }
        body.push_str("<ul class=\"products\">\n");
        for p in found {
            body.push_str(&product_item(p));
        }
        body.push_str("</ul>\n");
        body.push_str(
            "<p>Not listed, or listed wrongly? <a href=\"/portal/ehr/request\">Ask for your EHR \
             to be added or reviewed</a>.</p>\n",
        );
    }
    respond(StatusCode::OK, page("Is my EHR compatible?", &body), &[])
}

fn product_item(p: &Product) -> String {
    let caps: Vec<&str> = p.capabilities.iter().map(|c| c.label()).collect();
    format!(
        "<li><h2>{name}</h2>\n<p><strong>{status}</strong>. {advice}</p>\n<p>Exchanges: {caps}.\
         {onc}</p>\n<p><a href=\"/portal/ehr/request?product={id}\">Ask for a review of this \
         product</a></p></li>\n",
        name = escape(&p.name()),
        status = status_label(p.status),
        advice = escape(p.status.advice()),
        caps = if caps.is_empty() {
            "nothing the exchange has tested yet".to_string()
        } else {
            escape(&caps.join(", "))
        },
        onc = p
            .onc_certification
            .as_ref()
            .map(|c| format!(" ONC certification: {}.", escape(c)))
            .unwrap_or_default(),
        id = escape(&p.id),
    )
}

/// The request form with `values` kept and `errors` beside their fields.
fn request_page(
    state: &Shared,
    products: &[Product],
    values: &RequestForm,
    errors: &[FieldError],
    status: StatusCode,
) -> Response {
    let (token, set) = match form_token(state) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let mut body = String::from(
        "<h1>Ask for your EHR to be added or reviewed</h1>\n<p>The exchange counts every \
         request per product, so it knows which vendors to press. We will contact you about \
         yours.</p>\n",
    );
    if !errors.is_empty() {
        body.push_str(
            "<p role=\"alert\"><strong>Please correct the fields marked below; everything you \
             typed is kept.</strong></p>\n",
        );
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/ehr/request\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(&token)
    ));
    let kind_error = error_for(errors, "kind")
        .map(|m| format!(" <strong class=\"error\">{}</strong>", escape(m)))
        .unwrap_or_default();
    let checked = |k: &str| if values.kind == k { " checked" } else { "" };
    body.push_str(&format!(
        "<fieldset><legend>What do you ask?</legend>{kind_error}\n\
         <p><label><input type=\"radio\" name=\"kind\" value=\"add\"{}> Add my EHR to the \
         catalog</label></p>\n<p><label><input type=\"radio\" name=\"kind\" value=\"review\"{}> \
         Review a product already listed</label></p>\n</fieldset>\n",
        checked("add"),
        checked("review")
    ));
    let product_error = error_for(errors, "product_id")
        .map(|m| format!(" <strong class=\"error\">{}</strong>", escape(m)))
        .unwrap_or_default();
    body.push_str(&format!(
        "<p><label for=\"product_id\">Product to review</label>{product_error}<br>\n\
         <select id=\"product_id\" name=\"product_id\">\n<option value=\"\">(choose one, for a \
         review)</option>\n"
    ));
    for p in products {
        let selected = if p.id == values.product_id {
            " selected"
        } else {
            ""
        };
        body.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>\n",
            escape(&p.id),
            escape(&p.name())
        ));
    }
    if !values.product_id.is_empty() && !products.iter().any(|p| p.id == values.product_id) {
        // Kept as sent, so a redisplay loses nothing, but it matches no product.
        body.push_str(&format!(
            "<option value=\"{}\" selected>(not in the catalog)</option>\n",
            escape(&values.product_id)
        ));
    }
    body.push_str("</select></p>\n");
    body.push_str("<p>To add a product, name it:</p>\n");
    body.push_str(&text_field(
        "Vendor",
        "vendor",
        &values.vendor,
        error_for(errors, "vendor"),
        "",
    ));
    body.push_str(&text_field(
        "Product",
        "product",
        &values.product,
        error_for(errors, "product"),
        "",
    ));
    body.push_str(&text_field(
        "Version (if you know it)",
        "version",
        &values.version,
        error_for(errors, "version"),
        "",
    ));
    body.push_str(&text_field(
        "Your name",
        "requester",
        &values.requester,
        error_for(errors, "requester"),
        "",
    ));
    body.push_str(&text_field(
        "Email address or telephone number",
        "contact",
        &values.contact,
        error_for(errors, "contact"),
        "So that we can tell you what we found.",
    ));
    let note_error = error_for(errors, "note")
        .map(|m| format!(" <strong class=\"error\">{}</strong>", escape(m)))
        .unwrap_or_default();
    body.push_str(&format!(
        "<p><label for=\"note\">Anything we should know</label>{note_error}<br>\n\
         <textarea id=\"note\" name=\"note\" rows=\"4\" cols=\"60\">{}</textarea></p>\n\
         <p><button type=\"submit\">Send the request</button></p>\n</form>\n\
         <p><a href=\"/portal/ehr\">Back to the catalog</a></p>\n",
        escape(&values.note)
    ));
    respond(status, page("Ask for your EHR", &body), &[set])
}

/// `GET /portal/ehr/request[?product=ID]`.
pub async fn request_form(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let products = match catalog::products(state.repo.store()).await {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let query = query_of(&parts);
    let mut values = RequestForm::default();
    if let Some(id) = query.get("product") {
        if products.iter().any(|p| &p.id == id) {
            values.kind = "review".into();
            values.product_id = id.clone();
        }
    }
    request_page(&state, &products, &values, &[], StatusCode::OK)
}

/// `POST /portal/ehr/request`.
pub async fn request_post(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = read_form(body).await else {
        return super::forbidden();
    };
    if !form_token_ok(&parts, &form) {
        return super::forbidden();
    }
    if let Some(refused) = super::limit::catalog_requests().refusal(super::client_address(&parts)) {
        return refused;
    }
    let get = |name: &str| form.get(name).cloned().unwrap_or_default();
    let values = RequestForm {
        kind: get("kind"),
        product_id: get("product_id"),
        vendor: get("vendor"),
        product: get("product"),
        version: get("version"),
        requester: get("requester"),
        contact: get("contact"),
        note: get("note"),
    };
    let store = state.repo.store();
    let products = match catalog::products(store).await {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX);
    let request = match values.check(&products, &id, now) {
        Ok(r) => r,
        Err(errors) => {
            return request_page(
                &state,
                &products,
                &values,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    let (vendor, product) = (request.vendor.clone(), request.product.clone());
    if let Err(e) = store.add_ehr_request(request).await {
        return internal(e);
    }
    tracing::info!(kind = %values.kind.trim(), "EHR catalog request recorded");
    let body = format!(
        "<h1>Thank you</h1>\n<p>Your request about {} {} is recorded (reference {}). The \
         exchange reviews requests by how many providers ask for each product.</p>\n\
         <p>Until your EHR can connect, you meet the law by being able to send and receive \
         secure messages through the exchange.</p>\n<p><a href=\"/portal/ehr\">Back to the \
         catalog</a></p>\n",
        escape(&vendor),
        escape(&product),
        escape(&id)
    );
    respond(
        StatusCode::OK,
        page("Request recorded", &body),
        &[cookie(FORM_COOKIE, "", 0, secure(&state))],
    )
}

/// The signed-in operator of a request, or the response that refuses everyone else: a sign-in
/// link for nobody, 403 for another role.
pub async fn operator(state: &Shared, parts: &Parts) -> Result<store::User, Response> {
    match signed_in(state, parts).await? {
        Some((_, user)) if RoleCode::parse(&user.role) == Some(RoleCode::OperatorAdmin) => Ok(user),
        Some(_) => Err(respond(
            StatusCode::FORBIDDEN,
            page(
                "Operators only",
                "<h1>Operators only</h1>\n<p>This page is for the exchange's operators.</p>\n",
            ),
            &[],
        )),
        None => Err(super::html::see_other("/portal/sign-in", &[])),
    }
}

/// `GET /portal/ehr/requests`: operators only.
pub async fn requests_page(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = operator(&state, &parts).await {
        return response;
    }
    let store = state.repo.store();
    let (products, requests) = match (catalog::products(store).await, store.ehr_requests().await) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let candidates = match exchange::compliance::candidates(&state.repo).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let usage = exchange::compliance::product_usage(&candidates);
    let tally = catalog::tally(&products, &requests, &usage);
    let mut body = format!(
        "<h1>EHR requests per product</h1>\n<p>{} request(s) from providers, most asked-for \
         product first.</p>\n<table>\n<thead><tr><th>Product</th><th>Catalog status</th>\
         <th>Requests</th><th>To add</th><th>To review</th><th>Participants using it</th></tr>\
         </thead>\n<tbody>\n",
        requests.len()
    );
    for t in &tally {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&t.asked_as),
            t.products
                .first()
                .map(|p| status_label(p.status))
                .unwrap_or("Not in the catalog"),
            t.requests,
            t.add_requests,
            t.review_requests,
            t.participants
        ));
    }
    body.push_str("</tbody>\n</table>\n<p><a href=\"/portal\">Back</a></p>\n");
    respond(StatusCode::OK, page("EHR requests", &body), &[])
}
