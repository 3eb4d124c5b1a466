//! Connecting to the exchange in the portal (issue 7, sections 1-3): the public connection
//! application at `/portal/connect` (no account needed; CSRF by a double-submit cookie, as the
//! sign-in form), the applicant's pages under `/portal/applications` (their checklist with who did
//! each step and when, what is left, the agreements to sign, the signing page and a printable
//! receipt), and the operator's queue at `/portal/onboarding` with each application's page, where
//! steps are marked done and the path changed with a reason.
//!
//! Who sees what: the queue and the operator's actions need an operator-admin account; an
//! application's pages are shown to operators and to the account that applied, and answer every
//! other account exactly as an application that does not exist (404). Every form that changes
//! something carries the session's CSRF token; a form with problems is shown again with each
//! problem beside its field and everything typed kept (passwords excepted).

use std::collections::HashMap;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use exchange::onboarding::{
    Credential, Decision, NewAccount, Onboarding, OnboardingError, Submission, View,
};
use onboard::agreement::SignForm;
use onboard::application::{FieldError, Form, LICENCE_TYPES};
use onboard::catalog::Product;
use onboard::workflow::{Path, Step};
use store::{AgreementSignature, User};
use time::OffsetDateTime;

use super::account::{self, same_token, RoleCode};
use super::html::{cookie, escape, page, read_cookie, respond, see_other, see_other_to};
use super::{client_address, forbidden, internal, read_form, secure, signed_in};
use crate::http::Shared;

/// The connection form's double-submit cookie.
pub const CONNECT_COOKIE: &str = "nutmeg_connect";
/// How long a connection form may wait before it is sent (it is long).
const CONNECT_FORM_SECONDS: i64 = 4 * 60 * 60;

/// The form's fields, in the order shown, with their labels.
const TEXT_FIELDS: &[(&str, &str, &str)] = &[
    (
        "legal_name",
        "Legal name (a solo practitioner: your full name)",
        "organization",
    ),
    (
        "npi",
        "NPI (National Provider Identifier, 10 digits)",
        "numeric",
    ),
    ("licence_number", "State licence number", ""),
    (
        "licence_state",
        "Licensing state (two letters, e.g. CT)",
        "",
    ),
    ("address_line", "Practice street address", "street-address"),
    ("city", "City", "address-level2"),
    ("state", "State (two letters)", "address-level1"),
    ("postcode", "ZIP code", "postal-code"),
    (
        "ehr_other",
        "If \"other\": the EHR product's name and vendor",
        "",
    ),
    ("signer_name", "Authorized signer's full name", ""),
    (
        "signer_title",
        "Authorized signer's title",
        "organization-title",
    ),
    ("signer_email", "Authorized signer's email", "email"),
    ("contact_name", "Contact's name", "name"),
    (
        "contact_email",
        "Contact's email (your login to follow the application)",
        "email",
    ),
    ("contact_phone", "Contact's phone", "tel"),
];

fn now_instant() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The onboarding use cases over the server's repository and configured service levels.
fn onboarding(state: &Shared) -> &Onboarding {
    &state.onboarding
}

fn is_operator(user: &User) -> bool {
    RoleCode::parse(&user.role) == Some(RoleCode::OperatorAdmin)
}

fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            "<h1>Not found</h1>\n<p>There is no such page.</p>\n<p><a href=\"/portal\">Back</a></p>\n",
        ),
        &[],
    )
}

fn operators_only() -> Response {
    respond(
        StatusCode::FORBIDDEN,
        page(
            "Operators only",
            "<h1>Operators only</h1>\n<p>This page is for the exchange's operators.</p>\n\
             <p><a href=\"/portal\">Back</a></p>\n",
        ),
        &[],
    )
}

fn text(at_ms: i64) -> String {
    let at = exchange::onboarding::instant(at_ms);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn when(at: OffsetDateTime) -> String {
    text(exchange::onboarding::millis(at))
}

/// Errors by field.
fn by_field(errors: &[FieldError]) -> HashMap<&str, Vec<&str>> {
    let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in errors {
        map.entry(e.field.as_str())
            .or_default()
            .push(e.message.as_str());
    }
    map
}

/// The error paragraph beside a field (empty without one).
fn error_beside(errors: &HashMap<&str, Vec<&str>>, name: &str) -> String {
    match errors.get(name) {
        Some(messages) => format!(
            "<br><strong class=\"error\" id=\"{name}-error\" role=\"alert\">{}</strong>",
            escape(&messages.join("; "))
        ),
        None => String::new(),
    }
}

/// The value a form field had.
fn value<'a>(form: &'a Form, name: &str) -> &'a str {
    match name {
        "kind" => &form.kind,
        "legal_name" => &form.legal_name,
        "npi" => &form.npi,
        "licence_type" => &form.licence_type,
        "licence_number" => &form.licence_number,
        "licence_state" => &form.licence_state,
        "address_line" => &form.address_line,
        "city" => &form.city,
        "state" => &form.state,
        "postcode" => &form.postcode,
        "ehr" => &form.ehr,
        "ehr_other" => &form.ehr_other,
        "signer_name" => &form.signer_name,
        "signer_title" => &form.signer_title,
        "signer_email" => &form.signer_email,
        "contact_name" => &form.contact_name,
        "contact_email" => &form.contact_email,
        "contact_phone" => &form.contact_phone,
        _ => "",
    }
}

/// The form from a posted body (a missing field is empty, so the checks name it).
pub fn form_of(fields: &HashMap<String, String>) -> Form {
    let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
    Form {
        kind: get("kind"),
        legal_name: get("legal_name"),
        npi: get("npi"),
        licence_type: get("licence_type"),
        licence_number: get("licence_number"),
        licence_state: get("licence_state"),
        address_line: get("address_line"),
        city: get("city"),
        state: get("state"),
        postcode: get("postcode"),
        ehr: get("ehr"),
        ehr_other: get("ehr_other"),
        signer_name: get("signer_name"),
        signer_title: get("signer_title"),
        signer_email: get("signer_email"),
        contact_name: get("contact_name"),
        contact_email: get("contact_email"),
        contact_phone: get("contact_phone"),
    }
}

/// The connection form, with what was typed and the problems beside their fields, and a fresh
/// double-submit token (and its cookie).
fn connect_page(
    state: &Shared,
    status: StatusCode,
    form: &Form,
    errors: &[FieldError],
    catalog: &[Product],
) -> Response {
    let token = match account::random_token(32) {
        Ok(token) => token,
        Err(e) => return internal(e),
    };
    let map = by_field(errors);
    let mut body = String::from(
        "<h1>Apply to connect to the exchange</h1>\n<p>State law asks every licensed provider to \
         apply to connect (if their EHR can) or to be able to send and receive secure messages \
         through the exchange (if it cannot). Fill in this form once for your organization or \
         solo practice; you get an account to follow your application.</p>\n",
    );
    if !errors.is_empty() {
        body.push_str(&format!(
            "<p role=\"alert\"><strong>The form has {} problem{}: see the notes beside the \
             fields below. Nothing was sent yet.</strong></p>\n",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/connect\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(&token)
    ));
    // Who applies.
    body.push_str("<fieldset><legend>Who applies</legend>\n");
    for (code, label) in [
        (
            "organization",
            "An organization (hospital, lab, clinic, group practice)",
        ),
        ("solo-practitioner", "A solo practitioner"),
    ] {
        let checked = if form.kind == code { " checked" } else { "" };
        body.push_str(&format!(
            "<label><input type=\"radio\" name=\"kind\" value=\"{code}\"{checked}> {label}</label><br>\n"
        ));
    }
    body.push_str(&error_beside(&map, "kind"));
    body.push_str("</fieldset>\n");
    let text_field = |body: &mut String, name: &str| {
        if let Some((_, label, autocomplete)) = TEXT_FIELDS.iter().find(|(n, _, _)| *n == name) {
            let extra = match *autocomplete {
                "" => String::new(),
                "numeric" => " inputmode=\"numeric\"".to_string(),
                a => format!(" autocomplete=\"{a}\""),
            };
            body.push_str(&format!(
                "<p><label>{label}<br><input name=\"{name}\" value=\"{value}\" \
                 maxlength=\"{max}\"{extra}></label>{error}</p>\n",
                label = escape(label),
                value = escape(value(form, name)),
                max = onboard::application::MAX_FIELD,
                error = error_beside(&map, name),
            ));
        }
    };
    text_field(&mut body, "legal_name");
    text_field(&mut body, "npi");
    // The licence.
    body.push_str("<p><label>State licence type<br><select name=\"licence_type\">\n");
    body.push_str("<option value=\"\">(choose)</option>\n");
    for t in LICENCE_TYPES {
        let selected = if form.licence_type == t.code {
            " selected"
        } else {
            ""
        };
        body.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>\n",
            t.code,
            escape(t.label)
        ));
    }
    body.push_str(&format!(
        "</select></label>{}</p>\n",
        error_beside(&map, "licence_type")
    ));
    for name in [
        "licence_number",
        "licence_state",
        "address_line",
        "city",
        "state",
        "postcode",
    ] {
        text_field(&mut body, name);
    }
    // The EHR, from the catalog.
    body.push_str("<p><label>Your EHR product<br><select name=\"ehr\">\n");
    body.push_str("<option value=\"\">(choose)</option>\n");
    for p in catalog {
        let selected = if form.ehr == p.id { " selected" } else { "" };
        body.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>\n",
            escape(&p.id),
            escape(&p.name())
        ));
    }
    for (code, label) in [
        ("other", "Other (not listed: name it below)"),
        ("none", "None: we keep no electronic health record"),
    ] {
        let selected = if form.ehr == code { " selected" } else { "" };
        body.push_str(&format!(
            "<option value=\"{code}\"{selected}>{label}</option>\n"
        ));
    }
    body.push_str(&format!(
        "</select></label>{}</p>\n",
        error_beside(&map, "ehr")
    ));
    for name in [
        "ehr_other",
        "signer_name",
        "signer_title",
        "signer_email",
        "contact_name",
        "contact_email",
        "contact_phone",
    ] {
        text_field(&mut body, name);
    }
    body.push_str(&format!(
        "<fieldset><legend>Your account (to follow the application; your login is the contact's \
         email)</legend>\n\
         <p><label>Password (at least {min} characters)<br><input name=\"password\" \
         type=\"password\" autocomplete=\"new-password\"></label>{e1}</p>\n\
         <p><label>Password again<br><input name=\"password_again\" type=\"password\" \
         autocomplete=\"new-password\"></label>{e2}</p>\n</fieldset>\n\
         <p><button type=\"submit\">Send the application</button></p>\n</form>\n",
        min = account::MIN_PASSWORD_CHARS,
        e1 = error_beside(&map, "password"),
        e2 = error_beside(&map, "password_again"),
    ));
    respond(
        status,
        page("Apply to connect", &body),
        &[cookie(
            CONNECT_COOKIE,
            &token,
            CONNECT_FORM_SECONDS,
            secure(state),
        )],
    )
}

/// `GET /portal/connect`: the empty form.
pub async fn connect_form(State(state): State<Shared>) -> Response {
    let catalog = match onboarding(&state).catalog().await {
        Ok(catalog) => catalog,
        Err(e) => return internal(e),
    };
    connect_page(&state, StatusCode::OK, &Form::default(), &[], &catalog)
}

/// `POST /portal/connect`: checks everything at once; on success stores the application, registers
/// the participant and makes the account, and says what happens next.
pub async fn connect(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(fields) = read_form(body).await else {
        return forbidden();
    };
    let expected = read_cookie(&parts.headers, CONNECT_COOKIE).unwrap_or_default();
    let sent = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !same_token(&expected, sent) {
        return forbidden();
    }
    if let Some(refused) = super::limit::applications().refusal(super::client_address(&parts)) {
        return refused;
    }
    let form = form_of(&fields);
    let onboarding = onboarding(&state);
    let catalog = match onboarding.catalog().await {
        Ok(catalog) => catalog,
        Err(e) => return internal(e),
    };
    let password = fields.get("password").cloned().unwrap_or_default();
    let again = fields.get("password_again").cloned().unwrap_or_default();
    let login = form.contact_email.trim().to_string();
    let mut password_errors: Vec<FieldError> = account::password_problems(&password, &login)
        .into_iter()
        .map(|message| FieldError {
            field: "password".into(),
            message,
        })
        .collect();
    if password != again {
        password_errors.push(FieldError {
            field: "password_again".into(),
            message: "the two passwords differ".into(),
        });
    }
    // The form's own problems are shown with the password's, all at once.
    let mut form_errors = match form.check(&catalog) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    if !password_errors.is_empty() {
        form_errors.extend(password_errors);
        return connect_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form,
            &form_errors,
            &catalog,
        );
    }
    let hash = match super::hash_password(password).await {
        Ok(hash) => hash,
        Err(response) => return response,
    };
    let user_id = match crate::admin::new_client_id() {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    let submission = Submission {
        account: Some(NewAccount {
            user_id,
            login,
            display_name: form.contact_name.trim().to_string(),
            credential: Credential::Password(hash),
        }),
        form: form.clone(),
        received_by: "applicant".to_string(),
    };
    let applied = match onboarding.apply(submission, now_instant()).await {
        Ok(applied) => applied,
        Err(OnboardingError::Invalid(errors)) => {
            return connect_page(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                &catalog,
            )
        }
        Err(e) => return internal(e),
    };
    let data = &applied.record.data;
    tracing::info!(
        application = %data.application_id,
        duplicates = applied.duplicates.len(),
        "connection application received"
    );
    let path = Path::parse(&data.path).unwrap_or(Path::SecureMessaging);
    let steps: Vec<String> = path
        .steps()
        .iter()
        .map(|s| format!("<li>{}</li>", escape(s.label())))
        .collect();
    let body = format!(
        "<h1>Application received</h1>\n<p>Thank you. Your application's reference is \
         <strong>{id}</strong>.</p>\n<h2>What happens next</h2>\n<p>Your practice is on the \
         <strong>{path}</strong> path. These are its steps; the exchange's onboarding team \
         sends you the onboarding package, and your authorized signer, {signer}, then signs the \
         agreements in the portal:</p>\n<ol>\n{steps}\n</ol>\n<p>Sign in with your email \
         ({login}) and the password you chose to follow each step and to sign: \
         <a href=\"/portal/sign-in\">Sign in</a>.</p>\n",
        id = escape(&data.application_id),
        path = escape(path_label(path)),
        signer = escape(&data.signer_name),
        steps = steps.join("\n"),
        login = escape(&data.contact_email),
    );
    respond(
        StatusCode::CREATED,
        page("Application received", &body),
        &[cookie(CONNECT_COOKIE, "", 0, secure(&state))],
    )
}

fn path_label(path: Path) -> &'static str {
    match path {
        Path::Ehr => "EHR (connect your EHR's interface)",
        Path::SecureMessaging => "secure messaging (a Direct address and a web inbox)",
    }
}

/// The signed-in user, or the response that sends them to sign in.
async fn user_of(
    state: &Shared,
    parts: &axum::http::request::Parts,
) -> Result<(store::Session, User), Response> {
    match signed_in(state, parts).await {
        Ok(Some(signed)) => Ok(signed),
        Ok(None) => Err(see_other("/portal/sign-in", &[])),
        Err(response) => Err(response),
    }
}

/// The application `id` if `user` may see it: operators every one, an applicant their own;
/// anyone else gets the answer for one that does not exist.
async fn visible(state: &Shared, user: &User, id: &str) -> Result<View, Response> {
    match onboarding(state).view(id, now_instant()).await {
        Ok(view) => {
            if is_operator(user) || view.record.data.user_id.as_deref() == Some(&user.user_id) {
                Ok(view)
            } else {
                Err(not_found())
            }
        }
        Err(OnboardingError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /portal/applications`: the applications the signed-in account follows.
pub async fn mine(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let views = match onboarding(&state)
        .of_user(&user.user_id, now_instant())
        .await
    {
        Ok(views) => views,
        Err(e) => return internal(e),
    };
    let mut body = String::from("<h1>Your applications to connect</h1>\n");
    if views.is_empty() {
        body.push_str(
            "<p>This account has no application. <a href=\"/portal/connect\">Apply to \
             connect</a>.</p>\n",
        );
    } else {
        body.push_str("<ul>\n");
        for v in &views {
            body.push_str(&format!(
                "<li><a href=\"/portal/applications/{id}\">{id}</a>: {name}, next: {next}</li>\n",
                id = escape(v.id()),
                name = escape(&v.record.data.legal_name),
                next = escape(v.next.map(Step::label).unwrap_or("nothing: finished")),
            ));
        }
        body.push_str("</ul>\n");
    }
    body.push_str("<p><a href=\"/portal\">Back</a></p>\n");
    respond(StatusCode::OK, page("Your applications", &body), &[])
}

/// `GET /portal/onboarding`: the operator's queue, with each application's path, next step,
/// whether it is overdue, duplicates and agreements still to sign.
pub async fn queue(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if !is_operator(&user) {
        return operators_only();
    }
    let views = match onboarding(&state).queue(now_instant()).await {
        Ok(views) => views,
        Err(e) => return internal(e),
    };
    let overdue = views.iter().filter(|v| v.overdue.is_some()).count();
    let mut body = format!(
        "<h1>Onboarding queue</h1>\n<p>{} application{}, {overdue} overdue.</p>\n",
        views.len(),
        if views.len() == 1 { "" } else { "s" }
    );
    body.push_str(
        "<table>\n<thead><tr><th>Application</th><th>Applicant</th><th>Received</th>\
         <th>Path</th><th>Next step</th><th>Overdue</th><th>Duplicates</th><th>To sign</th>\
         </tr></thead>\n<tbody>\n",
    );
    for v in &views {
        let data = &v.record.data;
        let overdue = match &v.overdue {
            Some(o) => format!(
                "<strong class=\"overdue\">OVERDUE</strong>: due {}",
                escape(&when(o.due))
            ),
            None => String::new(),
        };
        let duplicates: Vec<String> = v
            .duplicates
            .iter()
            .map(|d| {
                format!(
                    "<a href=\"/portal/applications/{id}\">{id}</a> (same {by})",
                    id = escape(&d.application),
                    by = escape(&d.by.join(" and "))
                )
            })
            .collect();
        let to_sign: Vec<String> = v
            .must_sign
            .iter()
            .map(|u| escape(&format!("{} v{}", u.kind, u.version)))
            .collect();
        body.push_str(&format!(
            "<tr><td><a href=\"/portal/applications/{id}\">{id}</a></td><td>{name}</td>\
             <td>{received}</td><td>{path}</td><td>{next}</td><td>{overdue}</td><td>{dups}</td>\
             <td>{sign}</td></tr>\n",
            id = escape(v.id()),
            name = escape(&data.legal_name),
            received = escape(&text(data.received)),
            path = escape(&data.path),
            next = escape(match v.next {
                Some(step) => step.label(),
                None if v.closed() => "closed (a duplicate)",
                None => "finished",
            }),
            dups = duplicates.join("<br>"),
            sign = to_sign.join(", "),
        ));
    }
    body.push_str("</tbody>\n</table>\n<p><a href=\"/portal\">Back</a></p>\n");
    respond(StatusCode::OK, page("Onboarding queue", &body), &[])
}

/// An application's page, with `notice` (an error beside the operator's forms) and the reason
/// the operator typed (kept when a change of path is refused).
fn application_page(
    status: StatusCode,
    view: &View,
    user: &User,
    csrf: &str,
    notice: Option<(&str, &str)>,
    reason: &str,
) -> Response {
    let data = &view.record.data;
    let operator = is_operator(user);
    let mut body = format!(
        "<h1>Application {id}</h1>\n<dl>\n<dt>Applicant</dt><dd>{name} ({kind})</dd>\n\
         <dt>NPI</dt><dd>{npi}</dd>\n<dt>Licences</dt><dd>{licences}</dd>\n\
         <dt>Practice address</dt><dd>{line}, {city}, {state} {postcode}</dd>\n\
         <dt>EHR</dt><dd>{ehr}</dd>\n<dt>Authorized signer</dt><dd>{signer}, {title} \
         ({signer_email})</dd>\n<dt>Contact</dt><dd>{contact} ({contact_email}, {phone})</dd>\n\
         <dt>Received</dt><dd>{received}</dd>\n<dt>Participant</dt><dd>{participant}</dd>\n\
         <dt>Path</dt><dd>{path}</dd>\n</dl>\n",
        id = escape(&data.application_id),
        name = escape(&data.legal_name),
        kind = escape(&data.kind),
        npi = escape(&data.npi),
        licences = data
            .licences
            .iter()
            .map(|l| escape(&format!("{} {} ({})", l.licence_type, l.number, l.state)))
            .collect::<Vec<_>>()
            .join(", "),
        line = escape(&data.address_line),
        city = escape(&data.city),
        state = escape(&data.state),
        postcode = escape(&data.postcode),
        ehr = escape(&match data.ehr_kind.as_str() {
            "none" => "none".to_string(),
            other => format!("{other}: {}", data.ehr_value),
        }),
        signer = escape(&data.signer_name),
        title = escape(&data.signer_title),
        signer_email = escape(&data.signer_email),
        contact = escape(&data.contact_name),
        contact_email = escape(&data.contact_email),
        phone = escape(&data.contact_phone),
        received = escape(&text(data.received)),
        participant = escape(data.participant_id.as_deref().unwrap_or(
            if view.record.decision.is_some() {
                "none (closed as a duplicate)"
            } else {
                "none registered yet: the operator decides"
            }
        )),
        path = escape(path_label(view.checklist.path)),
    );
    if let Some(d) = &view.record.decision {
        let what = match (&d.duplicate_of, &d.participant_id) {
            (Some(other), _) => format!(
                "Closed: it repeats application <a href=\"/portal/applications/{o}\">{o}</a>.",
                o = escape(other)
            ),
            (None, Some(p)) if d.decision == "existing" => format!(
                "It belongs to participant {}, already registered.",
                escape(p)
            ),
            (None, Some(p)) => format!("Another applicant: participant {} registered.", escape(p)),
            (None, None) => escape(&d.decision),
        };
        body.push_str(&format!(
            "<h2>Decision</h2>\n<p>{what}</p>\n<p>Decided by {by} on {at}: {reason}</p>\n",
            by = escape(&d.by),
            at = escape(&text(d.at)),
            reason = escape(&d.reason),
        ));
    }
    if operator && !view.duplicates.is_empty() {
        body.push_str(
            "<h2>Possible duplicates</h2>\n<p>Not merged: decide which is right.</p>\n<ul>\n",
        );
        for d in &view.duplicates {
            body.push_str(&format!(
                "<li><a href=\"/portal/applications/{id}\">{id}</a>: the same {by}</li>\n",
                id = escape(&d.application),
                by = escape(&d.by.join(" and "))
            ));
        }
        body.push_str("</ul>\n");
    }
    body.push_str(
        "<h2>Checklist</h2>\n<table>\n<thead><tr><th>Step</th><th>Done by</th><th>When</th>\
         </tr></thead>\n<tbody>\n",
    );
    for step in view.checklist.path.steps() {
        let done = view.checklist.done.iter().find(|d| d.step == *step);
        let (by, at) = match done {
            Some(d) => (escape(&d.by), escape(&when(d.at))),
            None => {
                let late = view.overdue.as_ref().filter(|o| o.step == *step).map(|o| {
                    format!(
                        "<strong class=\"overdue\">OVERDUE</strong> (due {})",
                        escape(&when(o.due))
                    )
                });
                ("not yet".to_string(), late.unwrap_or_default())
            }
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{by}</td><td>{at}</td></tr>\n",
            escape(step.label())
        ));
    }
    body.push_str("</tbody>\n</table>\n");
    match view.next {
        Some(next) => body.push_str(&format!(
            "<p>Left to do: {}.</p>\n",
            escape(
                &view
                    .checklist
                    .path
                    .steps()
                    .iter()
                    .skip_while(|s| **s != next)
                    .map(|s| s.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        )),
        None if view.closed() => {
            body.push_str("<p>No step is left: the application was closed.</p>\n")
        }
        None => body.push_str("<p>Every step is done.</p>\n"),
    }
    if !view.checklist.changes.is_empty() {
        body.push_str("<h2>Changes of path</h2>\n<ul>\n");
        for c in &view.checklist.changes {
            body.push_str(&format!(
                "<li>{when}: {from} to {to} by {by}: {reason}</li>\n",
                when = escape(&when(c.at)),
                from = c.from.code(),
                to = c.to.code(),
                by = escape(&c.by),
                reason = escape(&c.reason)
            ));
        }
        body.push_str("</ul>\n");
    }
    body.push_str("<h2>Agreements</h2>\n");
    if view.must_sign.is_empty() {
        body.push_str("<p>Nothing to sign now.</p>\n");
    } else {
        body.push_str("<p>To sign by the authorized signer:</p>\n<ul>\n");
        for u in &view.must_sign {
            let again = match u.signed_before {
                Some(v) => format!(" (a new version: version {v} was signed before)"),
                None => String::new(),
            };
            body.push_str(&format!(
                "<li><a href=\"/portal/applications/{id}/agreements/{kind}/{version}\">{kind} \
                 version {version}</a>{again}</li>\n",
                id = escape(&data.application_id),
                kind = escape(&u.kind),
                version = u.version,
            ));
        }
        body.push_str("</ul>\n");
    }
    if !view.signatures.is_empty() {
        body.push_str("<p>Signed:</p>\n<ul>\n");
        for s in &view.signatures {
            body.push_str(&format!(
                "<li><a href=\"/portal/applications/{id}/signatures/{sig}\">{kind} version \
                 {version}</a>, signed by {name} on {at}</li>\n",
                id = escape(&data.application_id),
                sig = escape(&s.signature_id),
                kind = escape(&s.kind),
                version = s.version,
                name = escape(&s.signer_name),
                at = escape(&text(s.signed_at)),
            ));
        }
        body.push_str("</ul>\n");
    }
    if operator {
        let error = |form: &str| match notice {
            Some((f, message)) if f == form => format!(
                "<p role=\"alert\"><strong class=\"error\">{}</strong></p>\n",
                escape(message)
            ),
            _ => String::new(),
        };
        let id = escape(&data.application_id);
        if data.participant_id.is_none() && view.record.decision.is_none() {
            let options: Vec<String> = view
                .duplicates
                .iter()
                .map(|d| {
                    format!(
                        "<option value=\"{a}\">{a}</option>",
                        a = escape(&d.application)
                    )
                })
                .collect();
            body.push_str(&format!(
                "<h2>Decide</h2>\n<p>This application has no participant: no step can be taken \
                 until you decide who the applicant is.</p>\n{err}<form method=\"post\" \
                 action=\"/portal/applications/{id}/decision\">\n\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
                 <p><label><input type=\"radio\" name=\"decision\" value=\"distinct\"> \
                 Another applicant: register its participant</label></p>\n\
                 <p><label><input type=\"radio\" name=\"decision\" value=\"existing\"> \
                 Already registered as participant</label> <input name=\"participant\" \
                 aria-label=\"Participant id\"> (the applicant's account joins it)</p>\n\
                 <p><label><input type=\"radio\" name=\"decision\" value=\"duplicate\"> \
                 The same applicant as</label> <select name=\"duplicate_of\" \
                 aria-label=\"Application\"><option value=\"\"></option>{options}</select> \
                 (close this one)</p>\n\
                 <p><label>Reason (kept with the decision)<br><textarea name=\"reason\" \
                 rows=\"3\" cols=\"60\"></textarea></label></p>\n\
                 <p><button type=\"submit\">Decide</button></p>\n</form>\n",
                err = error("decision"),
                csrf = escape(csrf),
                options = options.join(""),
            ));
        }
        if let Some(next) = view.next {
            body.push_str(&format!(
                "<h2>Mark a step done</h2>\n{err}<form method=\"post\" \
                 action=\"/portal/applications/{id}/step\">\n\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
                 <p><label>Step<br><select name=\"step\">\n",
                err = error("step"),
                csrf = escape(csrf),
            ));
            for s in view
                .checklist
                .path
                .steps()
                .iter()
                .filter(|s| view.checklist.done_at(**s).is_none())
            {
                let selected = if *s == next { " selected" } else { "" };
                body.push_str(&format!(
                    "<option value=\"{}\"{selected}>{}</option>\n",
                    s.code(),
                    escape(s.label())
                ));
            }
            body.push_str(
                "</select></label></p>\n<p><button type=\"submit\">Mark done</button></p>\n</form>\n",
            );
        }
        let other = match view.checklist.path {
            Path::Ehr => Path::SecureMessaging,
            Path::SecureMessaging => Path::Ehr,
        };
        body.push_str(&format!(
            "<h2>Change the path</h2>\n{err}<form method=\"post\" \
             action=\"/portal/applications/{id}/path\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <input type=\"hidden\" name=\"path\" value=\"{to}\">\n\
             <p>Move to the {label} path.</p>\n\
             <p><label>Reason (kept with the change)<br><textarea name=\"reason\" rows=\"3\" \
             cols=\"60\">{reason}</textarea></label></p>\n\
             <p><button type=\"submit\">Change the path</button></p>\n</form>\n\
             <p><a href=\"/portal/onboarding\">Back to the queue</a></p>\n",
            err = error("path"),
            csrf = escape(csrf),
            to = other.code(),
            label = escape(path_label(other)),
            reason = escape(reason),
        ));
    } else {
        body.push_str("<p><a href=\"/portal/applications\">Back</a></p>\n");
    }
    respond(status, page("Application", &body), &[])
}

/// `GET /portal/applications/{id}`.
pub async fn show(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (session, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    match visible(&state, &user, &id).await {
        Ok(view) => application_page(StatusCode::OK, &view, &user, &session.csrf, None, ""),
        Err(response) => response,
    }
}

/// The signed-in operator and the posted form (its CSRF token checked), or the answer.
pub(crate) async fn operator_post(
    state: &Shared,
    request: Request,
) -> Result<(store::Session, User, HashMap<String, String>), Response> {
    let (parts, body) = request.into_parts();
    let (session, user) = user_of(state, &parts).await?;
    let Some(form) = read_form(body).await else {
        return Err(forbidden());
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !same_token(&session.csrf, sent) {
        return Err(forbidden());
    }
    if !is_operator(&user) {
        return Err(operators_only());
    }
    Ok((session, user, form))
}

/// `POST /portal/applications/{id}/step`: an operator marks a step done.
pub async fn step(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let (session, user, form) = match operator_post(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let code = form.get("step").map(|s| s.trim()).unwrap_or_default();
    let done = match Step::parse(code) {
        None => Err(OnboardingError::Refused(format!(
            "'{code}' is not a step of the checklist"
        ))),
        Some(step) => {
            onboarding(&state)
                .complete_step(&id, step, &user.login, now_instant())
                .await
        }
    };
    if done.is_ok() {
        tracing::info!(user_id = %user.user_id, application = %id, step = %code, "onboarding step done");
    }
    operator_outcome(&state, &session, &user, &id, done, "step", "").await
}

/// `POST /portal/applications/{id}/path`: an operator changes the path, with a reason.
pub async fn change_path(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let (session, user, form) = match operator_post(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let code = form.get("path").map(|s| s.trim()).unwrap_or_default();
    let reason = form.get("reason").cloned().unwrap_or_default();
    let changed = match Path::parse(code) {
        None => Err(OnboardingError::Refused(format!(
            "'{code}' is not a path (ehr or secure-messaging)"
        ))),
        Some(path) => {
            onboarding(&state)
                .change_path(&id, path, &user.login, &reason, now_instant())
                .await
        }
    };
    if changed.is_ok() {
        tracing::info!(user_id = %user.user_id, application = %id, path = %code, "onboarding path changed");
    }
    operator_outcome(&state, &session, &user, &id, changed, "path", &reason).await
}

/// `POST /portal/applications/{id}/decision`: an operator decides about an application without a
/// participant.
pub async fn decide(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let (session, user, form) = match operator_post(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let decided =
        match Decision::from_parts(get("decision"), get("participant"), get("duplicate_of")) {
            Ok(decision) => {
                onboarding(&state)
                    .decide(&id, decision, &user.login, get("reason"), now_instant())
                    .await
            }
            Err(e) => Err(e),
        };
    if decided.is_ok() {
        tracing::info!(user_id = %user.user_id, application = %id, "onboarding decision");
    }
    operator_outcome(&state, &session, &user, &id, decided, "decision", "").await
}

/// The answer to an operator's form on an application's page: back to the page when it was done;
/// else the page again with the refusal beside the form `form` (and `reason` as typed).
async fn operator_outcome(
    state: &Shared,
    session: &store::Session,
    user: &User,
    id: &str,
    outcome: Result<View, OnboardingError>,
    form: &str,
    reason: &str,
) -> Response {
    let message = match outcome {
        Ok(_) => return see_other_to(&format!("/portal/applications/{id}")),
        Err(OnboardingError::NotFound(_)) => return not_found(),
        Err(e) if e.is_internal() => return internal(e),
        Err(OnboardingError::Invalid(errors)) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => e.to_string(),
    };
    match visible(state, user, id).await {
        Ok(view) => application_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &view,
            user,
            &session.csrf,
            Some((form, &message)),
            reason,
        ),
        Err(response) => response,
    }
}

/// The signing page: the exact text, and the form (typed name, title, consent, the digest of the
/// version shown), with what was typed and the problems beside their fields.
#[allow(clippy::too_many_arguments)]
fn agreement_page(
    status: StatusCode,
    view: &View,
    document: &store::AgreementDocument,
    user: &User,
    csrf: &str,
    form: &SignForm,
    errors: &[FieldError],
) -> Response {
    let map = by_field(errors);
    let id = escape(view.id());
    let due = view
        .must_sign
        .iter()
        .any(|u| u.kind == document.kind && i64::from(u.version) == document.version);
    let mut body = format!(
        "<h1>{title}</h1>\n<p>{kind}, version {version}, published {published}. SHA-256 of \
         this text: <code>{sha}</code>.</p>\n<pre>{text}</pre>\n",
        title = escape(&document.title),
        kind = escape(&document.kind),
        version = document.version,
        published = escape(&text(document.published)),
        sha = escape(&onboard::agreement::digest(&document.text)),
        text = escape(&document.text),
    );
    let applicant = view.record.data.user_id.as_deref() == Some(user.user_id.as_str());
    if due && applicant {
        body.push_str(&format!(
            "<h2>Sign</h2>\n<p>Only the authorized signer named on the application, {signer}, \
             may sign.</p>\n{sha_error}<form method=\"post\" \
             action=\"/portal/applications/{id}/agreements/{kind}/{version}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <input type=\"hidden\" name=\"sha256\" value=\"{sha}\">\n\
             <p><label>Your full name, typed<br><input name=\"typed_name\" value=\"{name}\" \
             maxlength=\"200\"></label>{e_name}</p>\n\
             <p><label>Your title<br><input name=\"title\" value=\"{title}\" \
             maxlength=\"200\"></label>{e_title}</p>\n\
             <p><label><input type=\"checkbox\" name=\"consent\" value=\"yes\"{checked}> I agree \
             to sign this agreement electronically, and that my typed name is my \
             signature.</label>{e_consent}</p>\n\
             <p><button type=\"submit\">Sign</button></p>\n</form>\n",
            signer = escape(&view.record.data.signer_name),
            sha_error = error_beside(&map, "sha256"),
            kind = escape(&document.kind),
            version = document.version,
            csrf = escape(csrf),
            sha = escape(&onboard::agreement::digest(&document.text)),
            name = escape(&form.typed_name),
            title = escape(&form.title),
            checked = if form.consent == "yes" {
                " checked"
            } else {
                ""
            },
            e_name = error_beside(&map, "typed_name"),
            e_title = error_beside(&map, "title"),
            e_consent = error_beside(&map, "consent"),
        ));
    } else if !errors.is_empty() {
        body.push_str(&error_beside(&map, "sha256"));
    }
    body.push_str(&format!(
        "<p><a href=\"/portal/applications/{id}\">Back to the application</a></p>\n"
    ));
    respond(status, page(&document.title, &body), &[])
}

/// `GET /portal/applications/{id}/agreements/{kind}/{version}`.
pub async fn agreement_form(
    State(state): State<Shared>,
    UrlPath((id, kind, version)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (session, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let view = match visible(&state, &user, &id).await {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Ok(version) = version.parse::<i64>() else {
        return not_found();
    };
    let document = match onboarding(&state).document(&kind, version).await {
        Ok(d) => d,
        Err(OnboardingError::NotFound(_)) => return not_found(),
        Err(e) => return internal(e),
    };
    agreement_page(
        StatusCode::OK,
        &view,
        &document,
        &user,
        &session.csrf,
        &SignForm::default(),
        &[],
    )
}

/// `POST /portal/applications/{id}/agreements/{kind}/{version}`: the applicant's signer signs.
pub async fn sign(
    State(state): State<Shared>,
    UrlPath((id, kind, version)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let Some(fields) = read_form(body).await else {
        return forbidden();
    };
    let sent = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if !same_token(&session.csrf, sent) {
        return forbidden();
    }
    let view = match visible(&state, &user, &id).await {
        Ok(view) => view,
        Err(response) => return response,
    };
    // Operators read the agreements; only the applicant's account signs.
    if view.record.data.user_id.as_deref() != Some(user.user_id.as_str()) {
        return respond(
            StatusCode::FORBIDDEN,
            page(
                "Refused",
                "<h1>Refused</h1>\n<p>Only the applicant's account signs its agreements.</p>\n",
            ),
            &[],
        );
    }
    let Ok(version) = version.parse::<i64>() else {
        return not_found();
    };
    let document = match onboarding(&state).document(&kind, version).await {
        Ok(d) => d,
        Err(OnboardingError::NotFound(_)) => return not_found(),
        Err(e) => return internal(e),
    };
    let form = SignForm {
        typed_name: fields.get("typed_name").cloned().unwrap_or_default(),
        title: fields.get("title").cloned().unwrap_or_default(),
        consent: fields.get("consent").cloned().unwrap_or_default(),
        sha256: fields.get("sha256").cloned().unwrap_or_default(),
    };
    let address = client_address(&parts)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    match onboarding(&state)
        .sign(
            &id,
            &kind,
            version,
            &form,
            Some(&user.user_id),
            &address,
            now_instant(),
        )
        .await
    {
        Ok(signature) => {
            tracing::info!(user_id = %user.user_id, application = %id, kind = %kind, version, "agreement signed");
            see_other_to(&format!(
                "/portal/applications/{id}/signatures/{}",
                signature.signature_id
            ))
        }
        Err(OnboardingError::Invalid(errors)) => agreement_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &view,
            &document,
            &user,
            &session.csrf,
            &form,
            &errors,
        ),
        Err(OnboardingError::NotFound(_)) => not_found(),
        Err(e) => internal(e),
    }
}

/// `GET /portal/applications/{id}/signatures/{signature}`: the printable receipt.
pub async fn receipt(
    State(state): State<Shared>,
    UrlPath((id, signature)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (_, user) = match user_of(&state, &parts).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let view = match visible(&state, &user, &id).await {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(s) = view.signatures.iter().find(|s| s.signature_id == signature) else {
        return not_found();
    };
    let document = match onboarding(&state).document(&s.kind, s.version).await {
        Ok(d) => Some(d),
        Err(OnboardingError::NotFound(_)) => None,
        Err(e) => return internal(e),
    };
    respond(
        StatusCode::OK,
        page(
            "Signature receipt",
            &receipt_body(&view, s, document.as_ref()),
        ),
        &[],
    )
}

fn receipt_body(
    view: &View,
    s: &AgreementSignature,
    document: Option<&store::AgreementDocument>,
) -> String {
    let data = &view.record.data;
    let title = document
        .map(|d| d.title.as_str())
        .unwrap_or("(no longer stored)");
    format!(
        "<h1>Signature receipt</h1>\n<p>Keep or print this page (your browser's Print).</p>\n\
         <dl>\n<dt>Agreement</dt><dd>{title} ({kind}, version {version})</dd>\n\
         <dt>SHA-256 of the exact text signed</dt><dd><code>{sha}</code></dd>\n\
         <dt>Signed by (typed name)</dt><dd>{name}</dd>\n<dt>Title</dt><dd>{signer_title}</dd>\n\
         <dt>Consent to sign electronically</dt><dd>{consent}</dd>\n\
         <dt>Signed at (UTC)</dt><dd>{at}</dd>\n<dt>From the address</dt><dd>{address}</dd>\n\
         <dt>For</dt><dd>{legal} (application {id}{participant})</dd>\n\
         <dt>Signature id</dt><dd>{sig}</dd>\n</dl>\n\
         <p>The exchange can verify at any time that the text it keeps is the one signed \
         (<code>nutmeg admin agreement verify</code>).</p>\n{text}\
         <p><a href=\"/portal/applications/{id}\">Back to the application</a></p>\n",
        kind = escape(&s.kind),
        version = s.version,
        sha = escape(&s.sha256),
        name = escape(&s.signer_name),
        signer_title = escape(&s.signer_title),
        consent = if s.consented_electronically {
            "yes, given"
        } else {
            "no"
        },
        at = escape(&text(s.signed_at)),
        address = escape(&s.client_address),
        legal = escape(&data.legal_name),
        id = escape(&data.application_id),
        participant = data
            .participant_id
            .as_deref()
            .map(|p| format!(", participant {}", escape(p)))
            .unwrap_or_default(),
        sig = escape(&s.signature_id),
        title = escape(title),
        text = document
            .map(|d| format!("<h2>The text signed</h2>\n<pre>{}</pre>\n", escape(&d.text)))
            .unwrap_or_default(),
    )
}
