//! A participant's break-the-glass notices in the portal (`/portal/notices`): every emergency access
//! (`ETREAT`) to data the participant sent, newest first, as the exchange wrote it
//! (`exchange::notices`: who received how much of what, about which patient, when, and the request
//! id to quote to the exchange's privacy officer). A solo therapist with no EHR reads them here, where
//! they read their secure messages; a hospital's integration finds the same Communications through
//! FHIR. The page searches as the signed-in user, so the decision point shows each notice only to
//! its addressee; the portal's home page says how many there are.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use exchange::access::Requester;
use exchange::notices::{BREAK_THE_GLASS, NOTICE_SYSTEM};
use exchange::repository::Handling;
use serde_json::Value;
use store::User;

use super::account::{self, RoleCode};
use super::html::{escape, page, respond, see_other};
use super::{client_address, internal, request_id, signed_in};
use crate::http::Shared;

/// Notices shown on the page.
const PER_PAGE: usize = 100;

/// The search for the notices addressed to `participant`.
fn params(participant: &str, count: &str) -> Vec<(String, String)> {
    vec![
        (
            "recipient".to_string(),
            format!("Organization/{participant}"),
        ),
        (
            "category".to_string(),
            format!("{NOTICE_SYSTEM}|{BREAK_THE_GLASS}"),
        ),
        ("_sort".to_string(), "-sent".to_string()),
        ("_count".to_string(), count.to_string()),
    ]
}

/// A user of a participant who treats patients or runs the participant, as a requester.
fn reader(user: &User, parts: &Parts) -> Option<(String, Requester)> {
    let role = RoleCode::parse(&user.role)?;
    if !matches!(
        role,
        RoleCode::Clinician | RoleCode::Staff | RoleCode::ParticipantAdmin
    ) {
        return None;
    }
    let participant = user.participant_id.clone()?;
    let mut who = account::requester(user, &request_id(parts))?;
    // Notices are read to learn of emergency access to the participant's own patients' data.
    who.purpose = exchange::access::PurposeOfUse::Treat;
    Some((participant, who.with_client_address(client_address(parts))))
}

/// How many notices the user's participant has, for the home page (`None`: not a reader of them).
pub async fn count(state: &Shared, user: &User, parts: &Parts) -> Result<Option<u64>, Response> {
    let Some((participant, who)) = reader(user, parts) else {
        return Ok(None);
    };
    let mut query = params(&participant, "0");
    query.push(("_summary".to_string(), "count".to_string()));
    match state
        .repo
        .search(&who, Some("Communication"), &query, Handling::Strict)
        .await
    {
        Ok(found) => Ok(found.to_value()["total"].as_u64()),
        Err(e) if e.status() >= 500 => Err(internal(e)),
        Err(_) => Ok(None),
    }
}

/// `GET /portal/notices`.
pub async fn list(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match signed_in(&state, &parts).await {
        Ok(Some((_, user))) => user,
        Ok(None) => return see_other("/portal/sign-in", &[]),
        Err(response) => return response,
    };
    let Some((participant, who)) = reader(&user, &parts) else {
        return see_other("/portal", &[]);
    };
    let found = match state
        .repo
        .search(
            &who,
            Some("Communication"),
            &params(&participant, &PER_PAGE.to_string()),
            Handling::Strict,
        )
        .await
    {
        Ok(found) => found.to_value(),
        Err(e) if e.status() >= 500 => return internal(e),
        Err(_) => return see_other("/portal", &[]),
    };
    let notices: Vec<&Value> = found["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let mut body = String::from(
        "<h1>Emergency access notices</h1>\n<p>Each time a provider used emergency access \
         (break-the-glass) to see data your practice sent to the exchange, the exchange tells \
         you here, newest first. The patient is told too, and the exchange's privacy officer \
         reviews every emergency access; quote the request id if you have questions.</p>\n",
    );
    if notices.is_empty() {
        body.push_str("<p>No emergency access to data you sent.</p>\n");
    } else {
        body.push_str(
            "<table>\n<thead><tr><th>When</th><th>Patient</th><th>What happened</th></tr>\
             </thead>\n<tbody>\n",
        );
        for n in &notices {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(n["sent"].as_str().unwrap_or_default()),
                escape(n["subject"]["reference"].as_str().unwrap_or_default()),
                escape(
                    n["payload"][0]["contentString"]
                        .as_str()
                        .unwrap_or_default()
                ),
            ));
        }
        body.push_str("</tbody>\n</table>\n");
        if notices.len() == PER_PAGE {
            body.push_str(&format!(
                "<p>The {PER_PAGE} newest are shown; your system can read them all through \
                 FHIR (<code>Communication?recipient=Organization/{}&amp;category={}|{}</code>).\
                 </p>\n",
                escape(&participant),
                escape(NOTICE_SYSTEM),
                BREAK_THE_GLASS
            ));
        }
    }
    body.push_str("<p><a href=\"/portal\">Back</a></p>\n");
    respond(StatusCode::OK, page("Emergency access notices", &body), &[])
}
