//! The mandate's compliance in the portal.
//!
//! Operators only (the role is checked on every route): `GET /portal/compliance[?as_of=DATE]`
//! (counts by licence type and by county, the chart of compliance over time as inline SVG, the
//! ambiguous matches the operator must decide, each with its form: `POST /portal/compliance/match`),
//! `GET /portal/compliance/chart.svg` (the chart
//! alone, `image/svg+xml` under a sandboxing CSP, no scripts), `GET /portal/compliance/licensees`
//! (the per-licensee list, filtered and paged: compliant, not yet compliant and what is missing,
//! exempt and why, with the dates that decided it), and `GET /portal/compliance/report.csv` (the
//! licensing board's CSV, a download).
//!
//! Public (no sign-in): `GET`/`POST /portal/compliance/lookup`, a provider's own status by licence
//! number and NPI. Both are required and must belong to the same licensee of the current roster;
//! any other combination is answered "not found", the same page whatever was wrong, so a licence
//! number alone reveals nothing. The form is posted (the numbers stay out of URLs and logs) with a
//! double-submit token.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use exchange::compliance::{self as comp, Roster};
use onboard::application::FieldError;
use onboard::mandate::{Kind, Status};
use onboard::roster::Matched;
use onboard::{format_date, parse_date, Date};

use super::ehr::{error_for, form_token, form_token_ok, operator, text_field};
use super::html::{escape, page, respond};
use super::{internal, read_form};
use crate::http::Shared;

/// Licensees per page of the operator's list.
const PER_PAGE: usize = 100;

fn query_of(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .and_then(|q| super::html::parse_form(q.as_bytes()))
        .unwrap_or_default()
}

/// The day asked for (`as_of`), today if none; `Err` with a message for a bad one.
fn as_of(query: &HashMap<String, String>) -> Result<Date, String> {
    match query
        .get("as_of")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => Ok(crate::compliance::today()),
        Some(text) => parse_date(text).ok_or_else(|| {
            format!(
                "“{}” is not a date: use YYYY-MM-DD",
                text.chars().take(40).collect::<String>()
            )
        }),
    }
}

async fn load(state: &Shared) -> Result<Roster, Response> {
    let candidates = comp::candidates(&state.repo).await.map_err(internal)?;
    Roster::load(state.repo.store(), candidates)
        .await
        .map_err(internal)
}

fn counts_row(name: &str, c: &onboard::compliance::Counts) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        escape(name),
        c.compliant,
        c.pending,
        c.overdue,
        c.exempt,
        c.total()
    )
}

fn counts_table(
    caption: &str,
    rows: &std::collections::BTreeMap<String, onboard::compliance::Counts>,
) -> String {
    let mut out = format!(
        "<table>\n<caption>{}</caption>\n<thead><tr><th></th><th>Compliant</th><th>Not yet \
         (before the deadline)</th><th>Not yet (past the deadline)</th><th>Exempt</th>\
         <th>Active licensees</th></tr></thead>\n<tbody>\n",
        escape(caption)
    );
    for (k, c) in rows {
        out.push_str(&counts_row(k, c));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn bad_date(message: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        page(
            "Compliance",
            &format!(
                "<h1>Compliance</h1>\n<p role=\"alert\"><strong>{}</strong></p>\n\
                 <p><a href=\"/portal/compliance\">Today's report</a></p>\n",
                escape(message)
            ),
        ),
        &[],
    )
}

/// `GET /portal/compliance[?as_of=DATE]`: operators only.
pub async fn overview(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = operator(&state, &parts).await {
        return response;
    }
    let csrf = match super::signed_in(&state, &parts).await {
        Ok(Some((session, _))) => session.csrf,
        Ok(None) => return super::html::see_other("/portal/sign-in", &[]),
        Err(response) => return response,
    };
    let query = query_of(&parts);
    let day = match as_of(&query) {
        Ok(d) => d,
        Err(m) => return bad_date(&m),
    };
    let roster = match load(&state).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let mandate = &state.mandate;
    let report = roster.report(mandate, day);
    let t = &report.totals;
    let d = escape(&format_date(day));
    let mut body = format!(
        "<h1>Compliance with the {name} mandate</h1>\n\
         <form method=\"get\" action=\"/portal/compliance\"><p><label for=\"as_of\">As of</label> \
         <input id=\"as_of\" name=\"as_of\" value=\"{d}\"> <button type=\"submit\">Show</button>\
         </p></form>\n\
         <p>{total} active licensees on the roster: <strong>{compliant} compliant</strong>, \
         {pending} not yet compliant before their deadline, <strong>{overdue} past their \
         deadline</strong>, {exempt} exempt, {nr} not required. {inactive} inactive licences \
         are left out.</p>\n\
         <p><a href=\"/portal/compliance/licensees?as_of={d}\">Every licensee</a> · \
         <a href=\"/portal/compliance/licensees?as_of={d}&amp;status=overdue\">Past the deadline</a> · \
         <a href=\"/portal/compliance/report.csv?as_of={d}\">CSV for the licensing board</a> · \
         <a href=\"/portal/compliance/chart.svg?as_of={d}\">Chart (SVG)</a></p>\n",
        name = escape(&mandate.name),
        total = t.total(),
        compliant = t.compliant,
        pending = t.pending,
        overdue = t.overdue,
        exempt = t.exempt,
        nr = t.not_required,
        inactive = report.inactive,
    );
    let series = roster.over_time(mandate, day);
    body.push_str(&format!(
        "<figure>\n{}</figure>\n",
        onboard::compliance::svg_chart(
            &series,
            &format!("Compliance over time ({})", mandate.name)
        )
    ));
    body.push_str(&counts_table("By licence type", &report.by_type));
    body.push_str(&counts_table("By county", &report.by_county));
    let ambiguous = roster.ambiguous();
    body.push_str(&format!(
        "<h2>Matches to decide ({})</h2>\n",
        ambiguous.len()
    ));
    if ambiguous.is_empty() {
        body.push_str("<p>Every licensee matched one applicant or none.</p>\n");
    } else {
        body.push_str(
            "<p>These licensees fit several applicants equally. Choose the one each licensee \
             is, or none of them, and say why (also <code>nutmeg admin roster match</code>). \
             The decision holds over later matching.</p>\n<table>\n<thead><tr><th>Licence\
             </th><th>Name</th><th>Matched by</th><th>Candidates</th><th>Decide</th></tr>\
             </thead>\n<tbody>\n",
        );
        for (i, candidates, by) in ambiguous.iter().take(500) {
            let l = &roster.licensees[*i];
            let names: Vec<String> = candidates
                .iter()
                .map(|c| {
                    let name = roster
                        .candidates
                        .get(c)
                        .map(|c| c.legal_name.as_str())
                        .unwrap_or("?");
                    format!("{} ({})", escape(name), escape(c))
                })
                .collect();
            let options: String = candidates
                .iter()
                .map(|c| format!("<option value=\"{0}\">{0}</option>", escape(c)))
                .collect();
            body.push_str(&format!(
                "<tr><td>{kind} {state} {number}</td><td>{name}</td><td>{by}</td><td>{names}</td>\
                 <td><form method=\"post\" action=\"/portal/compliance/match\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"licence_type\" value=\"{kind}\">\
                 <input type=\"hidden\" name=\"licence_number\" value=\"{number}\">\
                 <input type=\"hidden\" name=\"state\" value=\"{state}\">\
                 <select name=\"participant\">{options}<option value=\"none\">none of them\
                 </option></select> <input name=\"reason\" placeholder=\"why\" required \
                 maxlength=\"500\"> <button type=\"submit\">Decide</button></form></td></tr>\n",
                kind = escape(&l.licence.kind),
                state = escape(&l.licence.state),
                number = escape(&l.licence.number),
                name = escape(&l.name),
                by = by.code(),
                names = names.join("<br>"),
                csrf = escape(&csrf),
            ));
        }
        body.push_str("</tbody>\n</table>\n");
    }
    respond(StatusCode::OK, page("Compliance", &body), &[])
}

/// `POST /portal/compliance/match`: an operator decides which applicant a licensee is (or none);
/// the decision, with who and why, holds over the matcher.
pub async fn decide_match(State(state): State<Shared>, request: Request) -> Response {
    let (_, user, form) = match super::connect::operator_post(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let licence = store::LicenceKey {
        licence_type: field("licence_type"),
        licence_number: field("licence_number"),
        licence_state: field("state"),
    };
    let reason: String = field("reason").chars().take(500).collect();
    let participant = match field("participant").as_str() {
        "none" => None,
        other => Some(other.to_string()),
    };
    let mut problems = Vec::new();
    if reason.is_empty() {
        problems.push("say why you decided this".to_string());
    }
    if let Some(p) = &participant {
        match comp::candidates(&state.repo).await {
            Ok(all) if all.iter().any(|c| &c.id == p) => {}
            Ok(_) => problems.push("choose one of the candidates, or none of them".to_string()),
            Err(e) => return internal(e),
        }
    }
    if problems.is_empty() {
        let decided = state
            .repo
            .store()
            .decide_licensee_match(store::MatchDecision {
                licence,
                participant,
                decided_by: user.login.clone(),
                reason,
                decided: i64::try_from(crate::client::now())
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000),
            })
            .await;
        match decided {
            Ok(true) => {
                tracing::info!(user_id = %user.user_id, "operator decided a roster match");
                return super::html::see_other("/portal/compliance", &[]);
            }
            Ok(false) => problems.push("no licensee of the roster has this licence".to_string()),
            Err(e) => return internal(e),
        }
    }
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    respond(
        StatusCode::UNPROCESSABLE_ENTITY,
        page(
            "Match not decided",
            &format!(
                "<h1>Match not decided</h1>\n<ul role=\"alert\">{items}</ul>\n\
                 <p><a href=\"/portal/compliance\">Back to the report</a></p>\n"
            ),
        ),
        &[],
    )
}

/// `GET /portal/compliance/chart.svg[?as_of=DATE]`: operators only.
pub async fn chart(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = operator(&state, &parts).await {
        return response;
    }
    let day = match as_of(&query_of(&parts)) {
        Ok(d) => d,
        Err(m) => return bad_date(&m),
    };
    let roster = match load(&state).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let series = roster.over_time(&state.mandate, day);
    let svg = onboard::compliance::svg_chart(
        &series,
        &format!("Compliance over time ({})", state.mandate.name),
    );
    let mut response = (StatusCode::OK, svg).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /portal/compliance/report.csv[?as_of=DATE]`: operators only.
pub async fn report_csv(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = operator(&state, &parts).await {
        return response;
    }
    let day = match as_of(&query_of(&parts)) {
        Ok(d) => d,
        Err(m) => return bad_date(&m),
    };
    let roster = match load(&state).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let report = roster.report(&state.mandate, day);
    let csv = onboard::compliance::to_csv(&report);
    let mut response = (StatusCode::OK, csv).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"compliance-{}.csv\"",
        format_date(day)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn status_words(status: &Status) -> (&'static str, String) {
    match status {
        Status::Compliant {
            done_on,
            deadline,
            late,
            ..
        } => (
            "Compliant",
            format!(
                "done {}{}, deadline {}",
                format_date(*done_on),
                if *late { " (late)" } else { "" },
                format_date(*deadline)
            ),
        ),
        Status::NotYetCompliant {
            must,
            deadline,
            overdue,
            ..
        } => (
            if *overdue {
                "Not yet compliant (past the deadline)"
            } else {
                "Not yet compliant"
            },
            format!(
                "missing: {}; deadline {}",
                must.missing(),
                format_date(*deadline)
            ),
        ),
        Status::Exempt { exemption, since } => (
            "Exempt",
            format!("{} since {}", exemption, format_date(*since)),
        ),
        Status::NotRequired => ("Not required", String::new()),
    }
}

/// `GET /portal/compliance/licensees[?as_of&status&type&county&q&page]`: operators only.
pub async fn licensees(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = operator(&state, &parts).await {
        return response;
    }
    let query = query_of(&parts);
    let day = match as_of(&query) {
        Ok(d) => d,
        Err(m) => return bad_date(&m),
    };
    let wanted = query.get("status").map(String::as_str).unwrap_or("");
    let kind_filter =
        match wanted {
            "" | "all" => None,
            "compliant" => Some(vec![Kind::Compliant]),
            "not-yet-compliant" => Some(vec![Kind::Pending, Kind::Overdue]),
            "overdue" => Some(vec![Kind::Overdue]),
            "exempt" => Some(vec![Kind::Exempt]),
            "not-required" => Some(vec![Kind::NotRequired]),
            _ => return bad_date(
                "unknown status: use compliant, not-yet-compliant, overdue, exempt or not-required",
            ),
        };
    let licence_type = query.get("type").map(|s| s.trim()).unwrap_or("");
    let county = query.get("county").map(|s| s.trim()).unwrap_or("");
    let page_no: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let roster = match load(&state).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let mandate = &state.mandate;
    let report = roster.report(mandate, day);
    let lines: Vec<_> = report
        .lines
        .iter()
        .filter(|l| {
            kind_filter
                .as_ref()
                .is_none_or(|k| k.contains(&l.status.kind()))
        })
        .filter(|l| licence_type.is_empty() || l.licensee.licence.kind == licence_type)
        .filter(|l| county.is_empty() || l.licensee.county.eq_ignore_ascii_case(county))
        .collect();
    let pages = lines.len().div_ceil(PER_PAGE).max(1);
    let mut body = format!(
        "<h1>Licensees as of {}</h1>\n<p>{} licensee(s){}. Page {} of {}.</p>\n<table>\n\
         <thead><tr><th>Licence</th><th>Name</th><th>County</th><th>Status</th><th>What decided \
         it</th><th>Matched to</th></tr></thead>\n<tbody>\n",
        escape(&format_date(day)),
        lines.len(),
        if wanted.is_empty() {
            String::new()
        } else {
            format!(" with status {}", escape(wanted))
        },
        page_no.min(pages),
        pages
    );
    for line in lines.iter().skip((page_no - 1) * PER_PAGE).take(PER_PAGE) {
        let l = line.licensee;
        let (status, detail) = status_words(&line.status);
        let detail = match &line.status {
            Status::Exempt { exemption, .. } => {
                let why = mandate
                    .exemption(exemption)
                    .map(|e| e.description.as_str())
                    .unwrap_or("");
                format!("{detail}: {why}")
            }
            _ => detail,
        };
        let matched = match line.matched {
            Matched::One { participant, by } => {
                format!("{} (by {})", escape(participant), by.code())
            }
            Matched::Ambiguous { participants, .. } => {
                format!("ambiguous: {} candidates", participants.len())
            }
            Matched::None => "nobody".to_string(),
        };
        body.push_str(&format!(
            "<tr><td>{} {} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&l.licence.kind),
            escape(&l.licence.state),
            escape(&l.licence.number),
            escape(&l.name),
            escape(&l.county),
            status,
            escape(&detail),
            matched
        ));
    }
    body.push_str("</tbody>\n</table>\n");
    let link = |p: usize| {
        format!(
            "/portal/compliance/licensees?as_of={}&amp;status={}&amp;type={}&amp;county={}&amp;page={p}",
            escape(&format_date(day)),
            escape(&encode(wanted)),
            escape(&encode(licence_type)),
            escape(&encode(county))
        )
    };
    if page_no > 1 {
        body.push_str(&format!(
            "<p><a href=\"{}\">Previous page</a></p>\n",
            link(page_no - 1)
        ));
    }
    if page_no < pages {
        body.push_str(&format!(
            "<p><a href=\"{}\">Next page</a></p>\n",
            link(page_no + 1)
        ));
    }
    body.push_str("<p><a href=\"/portal/compliance\">Back to the report</a></p>\n");
    respond(StatusCode::OK, page("Licensees", &body), &[])
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The lookup form, with what was typed kept and errors beside the fields.
fn lookup_page(
    state: &Shared,
    licence: &str,
    npi: &str,
    errors: &[FieldError],
    answer: &str,
    status: StatusCode,
) -> Response {
    let (token, set) = match form_token(state) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let mut body = String::from(
        "<h1>Am I compliant?</h1>\n<p>The law asks every licensed provider either to apply to \
         connect to the exchange or to be able to send and receive secure messages through it. \
         Enter your state licence number and your NPI to see what it asks of you, what you have \
         done and what is left. Both must be yours: they are checked together.</p>\n",
    );
    body.push_str(answer);
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/compliance/lookup\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(&token)
    ));
    body.push_str(&text_field(
        "Licence number",
        "licence",
        licence,
        error_for(errors, "licence"),
        "As on your licence, for example LMFT.001234.",
    ));
    body.push_str(&text_field(
        "NPI",
        "npi",
        npi,
        error_for(errors, "npi"),
        "Your ten-digit National Provider Identifier.",
    ));
    body.push_str(
        "<p><button type=\"submit\">Look up</button></p>\n</form>\n\
         <p><a href=\"/portal/ehr\">Is my EHR compatible?</a></p>\n",
    );
    respond(status, page("Am I compliant?", &body), &[set])
}

/// `GET /portal/compliance/lookup`: public.
pub async fn lookup_form(State(state): State<Shared>) -> Response {
    lookup_page(&state, "", "", &[], "", StatusCode::OK)
}

/// `POST /portal/compliance/lookup`: public.
pub async fn lookup(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = read_form(body).await else {
        return super::forbidden();
    };
    if !form_token_ok(&parts, &form) {
        return super::forbidden();
    }
    if let Some(refused) = super::limit::lookups().refusal(super::client_address(&parts)) {
        return refused;
    }
    let licence: String = form
        .get("licence")
        .map(|s| s.trim().chars().take(100).collect())
        .unwrap_or_default();
    let npi: String = form
        .get("npi")
        .map(|s| s.trim().chars().take(100).collect())
        .unwrap_or_default();
    let mut errors = Vec::new();
    if onboard::application::licence_number(&licence).is_empty() {
        errors.push(FieldError {
            field: "licence".into(),
            message: "give your licence number".into(),
        });
    }
    if npi.is_empty() {
        errors.push(FieldError {
            field: "npi".into(),
            message: "give your NPI".into(),
        });
    } else if let Err(e) = onboard::npi::check(&npi) {
        errors.push(FieldError {
            field: "npi".into(),
            message: format!("this is not an NPI: {e}"),
        });
    }
    if !errors.is_empty() {
        return lookup_page(
            &state,
            &licence,
            &npi,
            &errors,
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let candidates = match comp::candidates(&state.repo).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let npi_digits = onboard::npi::check(&npi)
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    let roster = match Roster::lookup(state.repo.store(), candidates, &licence, &npi_digits).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    if roster.licensees.is_empty() {
        tracing::info!("compliance lookup: not found");
        let answer = "<section role=\"status\"><h2>Not found</h2>\n<p>No licensee on the \
             licensing board's roster has both this licence number and this NPI. Check both \
             and try again; if they are right, your board may not have sent the exchange its \
             latest roster yet.</p></section>\n";
        return lookup_page(&state, &licence, &npi, &[], answer, StatusCode::OK);
    }
    tracing::info!(
        licensees = roster.licensees.len(),
        "compliance lookup: found"
    );
    let day = crate::compliance::today();
    let mut answer = String::new();
    for i in 0..roster.licensees.len() {
        let l = &roster.licensees[i];
        let e = comp::explain(&roster, i, &state.mandate, day);
        let kind = onboard::application::licence_type(&l.licence.kind)
            .map(|t| t.label)
            .unwrap_or(l.licence.kind.as_str());
        answer.push_str(&format!(
            "<section role=\"status\"><h2>{name}: {kind}, licence {state} {number}</h2>\n\
             <p><strong>{status}</strong></p>\n<h3>What the law asks of you</h3>\n<p>{asks}</p>\n\
             <h3>What you have done</h3>\n<ul>\n{done}</ul>\n<h3>What is left</h3>\n<p>{left}</p>\n\
             </section>\n",
            name = escape(&l.name),
            kind = escape(kind),
            state = escape(&l.licence.state),
            number = escape(&l.licence.number),
            status = escape(&e.status),
            asks = escape(&e.asks),
            done = e
                .done
                .iter()
                .map(|d| format!("<li>{}</li>\n", escape(d)))
                .collect::<String>(),
            left = escape(&e.left),
        ));
    }
    lookup_page(&state, &licence, &npi, &[], &answer, StatusCode::OK)
}
