//! A patient's privacy choices in the portal (`/portal/privacy`): their exchange-wide choice (take
//! part, or opt out and opt back in) with its history, the permissions they gave for their sensitive
//! records (to a participant, or to any provider treating them; sensitive records in general, or
//! substance-use treatment records under 42 CFR Part 2), a form to give one, and a button to
//! withdraw each.
//!
//! Everything is a FHIR Consent written through the repository as the patient (so the decision
//! point checks that it is theirs, the audit trail records it, and it takes effect at once, like a
//! consent recorded through the API). A permission carries what the patient signed: the text they
//! read, the name they typed, the time and the address they signed from, as the Consent's
//! `sourceAttachment` (text/plain). Withdrawing makes the Consent `inactive` (a new version: the
//! history keeps what was in force when). An opt-out is withdrawn by opting back in, a later choice.
//!
//! Every form carries the session's CSRF token; a form with errors is shown again with each error
//! beside its field and what was typed kept. The log gets the user id and what happened, never
//! the patient, the recipient or the text.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use exchange::access::Requester;
use exchange::participants::Status as ParticipantStatus;
use exchange::repository::Handling;
use privacy::consent::{Actor, Consent, Effect, Kind, Period, Provision, Status as ConsentStatus};
use serde_json::{json, Value};
use store::{Session, User};
use time::OffsetDateTime;

use super::account::{self, RoleCode};
use super::html::{escape, page, respond, see_other, see_other_to};
use super::{client_address, forbidden, internal, read_form, request_id, signed_in};
use crate::http::Shared;

/// The recipient value for any provider treating the patient.
const ANY: &str = "any";

/// A signed-in patient: their session, account, Patient id and requester.
struct Patient {
    session: Session,
    user: User,
    patient: String,
    who: Requester,
}

/// The signed-in patient of a request, or where to send anyone else.
async fn patient(state: &Shared, parts: &Parts) -> Result<Patient, Response> {
    let (session, user) = match signed_in(state, parts).await? {
        Some(signed) => signed,
        None => return Err(see_other("/portal/sign-in", &[])),
    };
    if RoleCode::parse(&user.role) != Some(RoleCode::Patient) {
        return Err(see_other("/portal", &[]));
    }
    let (Some(patient), Some(who)) = (
        user.patient_id.clone(),
        account::requester(&user, &request_id(parts)),
    ) else {
        return Err(see_other("/portal", &[]));
    };
    let who = who.with_client_address(client_address(parts));
    Ok(Patient {
        session,
        user,
        patient,
        who,
    })
}

/// The patient's privacy consents as stored (newest first), each with its parsed form; a Consent
/// the model cannot read is left out (it could not have been written here).
async fn consents_of(state: &Shared, p: &Patient) -> Result<Vec<(Value, Consent)>, Response> {
    let params = vec![
        ("patient".to_string(), format!("Patient/{}", p.patient)),
        ("_count".to_string(), "200".to_string()),
    ];
    let found = match state
        .repo
        .search(&p.who, Some("Consent"), &params, Handling::Strict)
        .await
    {
        Ok(found) => found.to_value(),
        Err(e) => return Err(internal(e)),
    };
    let mut out: Vec<(Value, Consent)> = found["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let json = e["resource"].clone();
            Consent::parse(&json).ok().map(|c| (json, c))
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.1.date_time));
    Ok(out)
}

/// Whether the patient takes part now, and the consent that says so (none: the exchange's default).
fn current_choice(state: &Shared, consents: &[(Value, Consent)]) -> (bool, Option<Consent>) {
    let refs: Vec<&Consent> = consents.iter().map(|(_, c)| c).collect();
    let now = OffsetDateTime::now_utc();
    let connecticut;
    let policy = match state.repo.decision_point().privacy() {
        Some(privacy) => &privacy.policy,
        None => {
            connecticut = privacy::policy::Policy::connecticut();
            &connecticut
        }
    };
    let (taking_part, by) = policy.choice(&refs, now);
    (taking_part, by.cloned())
}

fn date(at: OffsetDateTime) -> String {
    let d = at.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Someone a patient may name in a permission: a live participant, or a practitioner joined to
/// one (then the permission reaches that practitioner only, not the rest of the organization).
struct Recipient {
    /// The form value: `Organization/ID` or `Practitioner/ID`.
    value: String,
    label: String,
    actor: Actor,
}

/// Up to this many providers are listed to choose from; past it the patient finds them by name.
const LISTED: usize = 50;

/// The providers a page offers to choose from, and a note for the patient: all of them when they
/// are few; otherwise those whose name (the practitioner's or the participant's) contains `find`,
/// regardless of case, at most [`LISTED`]; and always the one already chosen.
fn offered<'r>(
    all: &'r [Recipient],
    find: &str,
    chosen: &str,
) -> (Vec<&'r Recipient>, Option<String>) {
    let find = find.trim().to_lowercase();
    let (mut shown, note): (Vec<&Recipient>, Option<String>) = if find.is_empty() {
        if all.len() <= LISTED {
            (all.iter().collect(), None)
        } else {
            (
                Vec::new(),
                Some(format!(
                    "The exchange has {} providers to choose from: find the one you want by name.",
                    all.len()
                )),
            )
        }
    } else {
        let matching: Vec<&Recipient> = all
            .iter()
            .filter(|r| r.label.to_lowercase().contains(&find))
            .collect();
        let note = match matching.len() {
            0 => Some(format!("No provider's name contains \"{}\".", find)),
            n if n > LISTED => Some(format!(
                "{n} providers match \"{find}\"; the first {LISTED} are listed: type more of \
                 the name."
            )),
            _ => None,
        };
        (matching.into_iter().take(LISTED).collect(), note)
    };
    if !shown.iter().any(|r| r.value == chosen) {
        if let Some(r) = all.iter().find(|r| r.value == chosen) {
            shown.insert(0, r);
        }
    }
    (shown, note)
}

/// Live participants by name, each followed by its practitioners (a solo practice is its
/// practitioner, so only the practice is listed).
///
/// A page that will list none of them (more than [`LISTED`] participants and nothing searched
/// for: `complete` false) gets the participants without their practitioners, which are what costs
/// (a query per ten participants).
async fn recipients(state: &Shared, complete: bool) -> Result<Vec<Recipient>, Response> {
    let system = Requester::system("portal-privacy");
    let participants = state
        .repo
        .participants(&system, Some(ParticipantStatus::Live))
        .await
        .map_err(internal)?;
    if !complete && participants.len() > LISTED {
        return Ok(participants
            .into_iter()
            .map(|p| Recipient {
                value: format!("Organization/{}", p.id),
                label: p.name.clone(),
                actor: Actor::Organization(p.id),
            })
            .collect());
    }
    let ids: Vec<String> = participants
        .iter()
        .filter(|p| p.kind != Some(exchange::participants::Kind::SoloPractice))
        .map(|p| p.id.clone())
        .collect();
    let mut practitioners = exchange::participants::practitioners_of_all(state.repo.store(), &ids)
        .await
        .map_err(internal)?;
    let mut out = Vec::new();
    for p in participants {
        let solo = p.kind == Some(exchange::participants::Kind::SoloPractice);
        out.push(Recipient {
            value: format!("Organization/{}", p.id),
            label: p.name.clone(),
            actor: Actor::Organization(p.id.clone()),
        });
        if solo {
            continue;
        }
        let mut named: Vec<Recipient> = practitioners
            .remove(&p.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, json)| Recipient {
                value: format!("Practitioner/{id}"),
                label: format!(
                    "{}, at {} (only them)",
                    practitioner_name(&json, &id),
                    p.name
                ),
                actor: Actor::Practitioner(id),
            })
            .collect();
        named.sort_by(|a, b| a.label.cmp(&b.label));
        out.extend(named);
    }
    Ok(out)
}

/// A Practitioner's name as people write it (its `text`, else given names and family name).
fn practitioner_name(practitioner: &Value, id: &str) -> String {
    let name = &practitioner["name"][0];
    let text = name["text"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            let given: Vec<&str> = name["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{} {}",
                given.join(" "),
                name["family"].as_str().unwrap_or_default()
            )
        });
    match text.trim() {
        "" => format!("Practitioner/{id}"),
        named => named.to_string(),
    }
}

/// How an actor reads on the page.
async fn actor_text(state: &Shared, actor: &Actor) -> String {
    let system = Requester::system("portal-privacy");
    match actor {
        Actor::AnyTreatingProvider => "any provider treating you".to_string(),
        Actor::Organization(id) => match state.repo.participant(&system, id).await {
            Ok(p) => p.name,
            Err(_) => format!("Organization/{id}"),
        },
        Actor::Practitioner(id) => match state.repo.read(&system, "Practitioner", id).await {
            Ok(found) => practitioner_name(&found.resource, id),
            Err(_) => format!("Practitioner/{id}"),
        },
        Actor::Patient(id) => format!("Patient/{id}"),
    }
}

/// What the patient typed into the permission form, and what was wrong with it.
#[derive(Default)]
struct GrantForm {
    recipient: String,
    records: String,
    until: String,
    name: String,
    /// What the patient searched the providers for (`?find=`).
    find: String,
    errors: HashMap<&'static str, String>,
}

/// `GET /portal/privacy`.
pub async fn show(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let p = match patient(&state, &parts).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let done = super::query_param(parts.uri.query(), "done");
    let find = super::query_param(parts.uri.query(), "find").unwrap_or_default();
    let form = GrantForm {
        find: find.chars().take(100).collect(),
        ..GrantForm::default()
    };
    render(&state, &p, done.as_deref(), &form, StatusCode::OK).await
}

async fn render(
    state: &Shared,
    p: &Patient,
    done: Option<&str>,
    form: &GrantForm,
    status: StatusCode,
) -> Response {
    let consents = match consents_of(state, p).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    // The chosen one must be found among them when the form comes back with an error.
    let complete = !form.find.trim().is_empty() || !form.recipient.is_empty();
    let recipients = match recipients(state, complete).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let (taking_part, by) = current_choice(state, &consents);
    let csrf = escape(&p.session.csrf);
    let mut body = String::from("<h1>Your privacy choices</h1>\n");
    let confirmation = match done {
        Some("opted-out") => Some(
            "You have opted out. From now on no participant can see your records through the exchange.",
        ),
        Some("opted-in") => Some("You take part in the exchange again."),
        Some("granted") => Some("Your permission is recorded and in force now."),
        Some("withdrawn") => Some("The permission is withdrawn, from now on."),
        _ => None,
    };
    if let Some(text) = confirmation {
        body.push_str(&format!("<p role=\"status\"><strong>{text}</strong></p>\n"));
    }

    body.push_str("<h2>Taking part in the exchange</h2>\n");
    if taking_part {
        body.push_str(
            "<p>You take part: providers who treat you can see your records through the \
             exchange, under the state's rules and the permissions below.</p>\n",
        );
        body.push_str(&format!(
            "<form method=\"post\" action=\"/portal/privacy/choice\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <input type=\"hidden\" name=\"choice\" value=\"opt-out\">\n\
             <p>If you opt out, no participant can see anything about you through the exchange, \
             and after a few business days the exchange deletes the records it holds about you. \
             You can opt back in at any time, but deleted records do not come back. Messages \
             your providers send each other directly, and reports the law requires to public \
             health, are not affected.</p>\n\
             <p><label><input type=\"checkbox\" name=\"understood\" value=\"yes\" required> \
             I understand</label>{}</p>\n\
             <p><button type=\"submit\">Opt out of the exchange</button></p>\n</form>\n",
            error_text(form.errors.get("understood"))
        ));
    } else {
        let since = by
            .as_ref()
            .map(|c| format!(" since {}", date(c.date_time)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<p>You are opted out{since}: no participant can see your records through the \
             exchange.</p>\n\
             <form method=\"post\" action=\"/portal/privacy/choice\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <input type=\"hidden\" name=\"choice\" value=\"opt-in\">\n\
             <p><label><input type=\"checkbox\" name=\"understood\" value=\"yes\" required> \
             I want providers who treat me to see my records through the exchange again\
             </label>{}</p>\n\
             <p><button type=\"submit\">Opt back in</button></p>\n</form>\n",
            error_text(form.errors.get("understood"))
        ));
    }
    let choices: Vec<&Consent> = consents
        .iter()
        .map(|(_, c)| c)
        .filter(|c| c.choice().is_some())
        .collect();
    if !choices.is_empty() {
        body.push_str("<h3>Your choices so far</h3>\n<ul>\n");
        for c in choices {
            let what = if c.choice() == Some(true) {
                "took part"
            } else {
                "opted out"
            };
            body.push_str(&format!("<li>{}: {what}</li>\n", date(c.date_time)));
        }
        body.push_str("</ul>\n");
    }

    body.push_str(
        "<h2>Permissions for your sensitive records</h2>\n<p>Records of mental health \
         care, therapy, substance-use treatment, HIV and similar care are shared only as the \
         state's rules allow, or with your permission.</p>\n",
    );
    let now = OffsetDateTime::now_utc();
    let permissions: Vec<&(Value, Consent)> = consents
        .iter()
        .filter(|(_, c)| matches!(c.kind, Kind::Grant | Kind::Part2) && c.choice().is_none())
        .filter(|(_, c)| c.status == ConsentStatus::Active && c.in_force(now))
        .collect();
    if permissions.is_empty() {
        body.push_str("<p>You have given no permissions.</p>\n");
    } else {
        body.push_str(
            "<table>\n<thead><tr><th>Given</th><th>To</th><th>Which records</th>\
             <th>Until</th><th></th></tr></thead>\n<tbody>\n",
        );
        for (json, c) in permissions {
            let mut to = Vec::new();
            for actor in &c.provision.actors {
                to.push(escape(&actor_text(state, actor).await));
            }
            let allows = if c.provision.effect == Effect::Permit {
                ""
            } else {
                "Refused to: "
            };
            let records = if c.kind == Kind::Part2 {
                "Substance-use treatment records (42 CFR Part 2)"
            } else {
                "Sensitive records"
            };
            let until = c
                .provision
                .period
                .and_then(|p| p.end)
                .map(|end| date(end - time::Duration::nanoseconds(1)))
                .unwrap_or_else(|| "until you withdraw it".to_string());
            let id = json["id"].as_str().unwrap_or_default();
            body.push_str(&format!(
                "<tr><td>{}</td><td>{allows}{}</td><td>{records}</td><td>{}</td><td>\
                 <form method=\"post\" action=\"/portal/privacy/consents/{}/withdraw\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\">Withdraw</button></form></td></tr>\n",
                date(c.date_time),
                to.join(", "),
                escape(&until),
                escape(id),
            ));
        }
        body.push_str("</tbody>\n</table>\n");
    }

    let (shown, note) = offered(&recipients, &form.find, &form.recipient);
    body.push_str(&format!(
        "<h3>Give a permission</h3>\n<form method=\"get\" action=\"/portal/privacy\">\n\
         <p><label>Find a provider by name<br><input name=\"find\" value=\"{}\" \
         maxlength=\"100\"></label> <button type=\"submit\">Find</button></p>\n</form>\n{}",
        escape(&form.find),
        note.map(|n| format!("<p role=\"status\">{}</p>\n", escape(&n)))
            .unwrap_or_default(),
    ));
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/privacy/grants\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <p><label>Who may see them<br><select name=\"recipient\">\n{}</select></label>{}</p>\n\
         <fieldset><legend>Which records</legend>\n\
         <p><label><input type=\"radio\" name=\"records\" value=\"sensitive\"{}> My sensitive \
         records (mental health, therapy, HIV and similar care) for my treatment</label></p>\n\
         <p><label><input type=\"radio\" name=\"records\" value=\"part2\"{}> My substance-use \
         treatment records, protected by federal law (42 CFR Part 2), for my treatment</label>\
         </p>{}\n</fieldset>\n\
         <p><label>Until (optional, YYYY-MM-DD)<br><input name=\"until\" value=\"{}\" \
         inputmode=\"numeric\" maxlength=\"10\"></label>{}</p>\n\
         <p><label>Type your full name to sign<br><input name=\"name\" value=\"{}\" \
         maxlength=\"200\" autocomplete=\"name\"></label>{}</p>\n\
         <p><label><input type=\"checkbox\" name=\"sign\" value=\"yes\"> I sign this permission \
         electronically, and I know I can withdraw it here at any time</label>{}</p>\n\
         <p><button type=\"submit\">Give this permission</button></p>\n</form>\n\
         <p><a href=\"/portal/disclosures\">Who has seen your record</a> \
         &middot; <a href=\"/portal\">Back</a></p>\n",
        recipient_options(&shown, &form.recipient),
        error_text(form.errors.get("recipient")),
        checked(form.records != "part2"),
        checked(form.records == "part2"),
        error_text(form.errors.get("records")),
        escape(&form.until),
        error_text(form.errors.get("until")),
        escape(&form.name),
        error_text(form.errors.get("name")),
        error_text(form.errors.get("sign")),
    ));
    respond(status, page("Your privacy choices", &body), &[])
}

fn checked(yes: bool) -> &'static str {
    if yes {
        " checked"
    } else {
        ""
    }
}

fn error_text(error: Option<&String>) -> String {
    error
        .map(|e| format!(" <strong role=\"alert\">{}</strong>", escape(e)))
        .unwrap_or_default()
}

fn recipient_options(recipients: &[&Recipient], chosen: &str) -> String {
    let mut out = format!(
        "<option value=\"{ANY}\"{}>Any provider treating me</option>\n",
        if chosen == ANY || chosen.is_empty() {
            " selected"
        } else {
            ""
        }
    );
    for r in recipients {
        out.push_str(&format!(
            "<option value=\"{}\"{}>{}{}</option>\n",
            escape(&r.value),
            if chosen == r.value { " selected" } else { "" },
            if matches!(r.actor, Actor::Practitioner(_)) {
                "&nbsp;&nbsp;&nbsp;"
            } else {
                ""
            },
            escape(&r.label)
        ));
    }
    out
}

/// Reads the form and checks its token: the form, or the 403.
async fn checked_form(
    body: axum::body::Body,
    session: &Session,
) -> Result<HashMap<String, String>, Response> {
    let Some(form) = read_form(body).await else {
        return Err(forbidden());
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !account::same_token(&session.csrf, sent) {
        return Err(forbidden());
    }
    Ok(form)
}

/// A patient's posted form: the request's parts, the patient and the form (its token checked).
async fn posted(
    state: &Shared,
    request: Request,
) -> Result<(Parts, Patient, HashMap<String, String>), Response> {
    let (parts, body) = request.into_parts();
    let p = patient(state, &parts).await?;
    let form = checked_form(body, &p.session).await?;
    Ok((parts, p, form))
}

/// `POST /portal/privacy/choice`: opt out, or opt back in.
pub async fn choice(State(state): State<Shared>, request: Request) -> Response {
    let (_, p, form) = match posted(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let kind = match form.get("choice").map(String::as_str) {
        Some("opt-out") => Kind::OptOut,
        Some("opt-in") => Kind::OptIn,
        _ => return see_other("/portal/privacy", &[]),
    };
    if form.get("understood").map(String::as_str) != Some("yes") {
        let mut again = GrantForm::default();
        again.errors.insert(
            "understood",
            "Tick the box to say you understand what this does.".to_string(),
        );
        return render(&state, &p, None, &again, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let effect = if kind == Kind::OptOut {
        Effect::Deny
    } else {
        Effect::Permit
    };
    let consent = Consent {
        id: None,
        status: ConsentStatus::Active,
        patient: p.patient.clone(),
        date_time: OffsetDateTime::now_utc(),
        kind,
        informed: None,
        provision: Provision::everything(effect),
    };
    let json = match consent.to_fhir() {
        Ok(json) => json,
        Err(e) => return internal(e),
    };
    if let Err(e) = state.repo.create(&p.who, "Consent", json, None).await {
        return internal(e);
    }
    let done = if kind == Kind::OptOut {
        "opted-out"
    } else {
        "opted-in"
    };
    tracing::info!(user_id = %p.user.user_id, choice = done, "patient recorded their choice in the portal");
    see_other_to(&format!("/portal/privacy?done={done}"))
}

/// `POST /portal/privacy/grants`: a permission, signed.
pub async fn grant(State(state): State<Shared>, request: Request) -> Response {
    let (parts, p, form) = match posted(&state, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut typed = GrantForm {
        recipient: field("recipient"),
        records: field("records"),
        until: field("until"),
        name: field("name"),
        find: String::new(),
        errors: HashMap::new(),
    };
    let recipients = match recipients(&state, true).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let actor = if typed.recipient == ANY || typed.recipient.is_empty() {
        Some(Actor::AnyTreatingProvider)
    } else if let Some(r) = recipients.iter().find(|r| r.value == typed.recipient) {
        Some(r.actor.clone())
    } else {
        typed
            .errors
            .insert("recipient", "Choose a provider from the list.".to_string());
        None
    };
    let kind = match typed.records.as_str() {
        "sensitive" | "" => Kind::Grant,
        "part2" => Kind::Part2,
        _ => {
            typed
                .errors
                .insert("records", "Choose which records.".to_string());
            Kind::Grant
        }
    };
    let now = OffsetDateTime::now_utc();
    let end = if typed.until.is_empty() {
        None
    } else {
        match parse_date(&typed.until) {
            Some(day) if day > now.date() => {
                day.next_day().map(|next| next.midnight().assume_utc())
            }
            Some(_) => {
                typed
                    .errors
                    .insert("until", "The date must be after today.".to_string());
                None
            }
            None => {
                typed.errors.insert(
                    "until",
                    "Write the date as YYYY-MM-DD, for example 2027-06-30.".to_string(),
                );
                None
            }
        }
    };
    if typed.name.is_empty() {
        typed
            .errors
            .insert("name", "Type your full name to sign.".to_string());
    } else if typed.name.chars().count() > 200 || typed.name.chars().any(char::is_control) {
        typed.errors.insert(
            "name",
            "Type your name as plain text of at most 200 characters.".to_string(),
        );
    }
    if form.get("sign").map(String::as_str) != Some("yes") {
        typed
            .errors
            .insert("sign", "Tick the box to sign electronically.".to_string());
    }
    let Some(actor) = actor.filter(|_| typed.errors.is_empty()) else {
        return render(&state, &p, None, &typed, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let to = actor_text(&state, &actor).await;
    let mut provision = Provision::everything(Effect::Permit);
    provision.actors = vec![actor];
    provision.purposes = vec!["TREAT".to_string()];
    provision.period = Some(Period {
        start: Some(now),
        end,
    });
    let consent = Consent {
        id: None,
        status: ConsentStatus::Active,
        patient: p.patient.clone(),
        date_time: now,
        kind,
        informed: None,
        provision,
    };
    let mut json = match consent.to_fhir() {
        Ok(json) => json,
        Err(e) => return internal(e),
    };
    let records = if kind == Kind::Part2 {
        "my substance-use treatment records, protected by federal law (42 CFR Part 2)"
    } else {
        "my sensitive records (mental health, therapy, HIV and similar care)"
    };
    let until = end
        .map(|e| format!("until {}", date(e - time::Duration::nanoseconds(1))))
        .unwrap_or_else(|| "until I withdraw it".to_string());
    let signed_at = match now.format(&time::format_description::well_known::Rfc3339) {
        Ok(text) => text,
        Err(e) => return internal(e),
    };
    let from = client_address(&parts)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let text = format!(
        "I allow {to} to see {records} through the exchange, for my treatment, {until}.\n\
         I know I can withdraw this permission at any time in the exchange's portal.\n\n\
         Signed electronically by: {}\nAt: {signed_at}\nFrom address: {from}\n\
         Portal account: {}\n",
        typed.name, p.user.user_id
    );
    json["sourceAttachment"] = json!({
        "contentType": "text/plain; charset=utf-8",
        "language": "en",
        "title": "Permission signed in the exchange's portal",
        "creation": signed_at,
        "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
    });
    if let Err(e) = state.repo.create(&p.who, "Consent", json, None).await {
        if e.status() < 500 {
            typed.errors.insert(
                "sign",
                "The exchange could not record this permission. Check it and try again."
                    .to_string(),
            );
            return render(&state, &p, None, &typed, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        return internal(e);
    }
    tracing::info!(user_id = %p.user.user_id, "patient gave a permission in the portal");
    see_other("/portal/privacy?done=granted", &[])
}

fn parse_date(text: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).ok()
}

/// `POST /portal/privacy/consents/{id}/withdraw`: one of the patient's permissions ends now.
pub async fn withdraw(
    State(state): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let p = match patient(&state, &parts).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    if let Err(response) = checked_form(body, &p.session).await {
        return response;
    }
    // Only the patient's own permissions: anything else reads as not there.
    let current = match state.repo.read(&p.who, "Consent", &id).await {
        Ok(current) => current,
        Err(e) if e.status() >= 500 => return internal(e),
        Err(_) => return see_other("/portal/privacy", &[]),
    };
    let Ok(parsed) = Consent::parse(&current.resource) else {
        return see_other("/portal/privacy", &[]);
    };
    if parsed.patient != p.patient
        || parsed.choice().is_some()
        || !matches!(parsed.kind, Kind::Grant | Kind::Part2)
    {
        return see_other("/portal/privacy", &[]);
    }
    if parsed.status == ConsentStatus::Active {
        let mut json = current.resource.clone();
        json["status"] = json!("inactive");
        if let Err(e) = state
            .repo
            .update(&p.who, "Consent", &id, json, Some(current.version))
            .await
        {
            if e.status() >= 500 {
                return internal(e);
            }
            return see_other("/portal/privacy", &[]);
        }
        tracing::info!(user_id = %p.user.user_id, "patient withdrew a permission in the portal");
    }
    see_other("/portal/privacy?done=withdrawn", &[])
}

#[cfg(test)]
mod offered_tests {
    use super::*;

    fn recipient(i: usize) -> Recipient {
        Recipient {
            value: format!("Organization/o{i}"),
            label: format!("Clinic {i:03}"),
            actor: Actor::Organization(format!("o{i}")),
        }
    }

    #[test]
    fn few_providers_are_all_listed_and_many_are_found_by_name() {
        let few: Vec<Recipient> = (0..LISTED).map(recipient).collect();
        assert_eq!(offered(&few, "", "").0.len(), LISTED);
        let many: Vec<Recipient> = (0..500).map(recipient).collect();
        let (shown, note) = offered(&many, "", "");
        assert!(shown.is_empty());
        assert_eq!(
            note.as_deref(),
            Some("The exchange has 500 providers to choose from: find the one you want by name.")
        );
        // The one already chosen stays, whatever else is listed.
        let (shown, _) = offered(&many, "", "Organization/o7");
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].value, "Organization/o7");
        let (shown, note) = offered(&many, " clinic 12", "");
        let labels: Vec<&str> = shown.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels.len(), 10, "{labels:?}");
        assert!(labels.iter().all(|l| l.starts_with("Clinic 12")));
        assert_eq!(note, None);
        let (shown, note) = offered(&many, "CLINIC", "");
        assert_eq!(shown.len(), LISTED);
        assert!(note.unwrap().contains("500 providers match"));
        let (shown, note) = offered(&many, "dentist", "");
        assert!(shown.is_empty());
        assert!(note.unwrap().contains("No provider's name contains"));
    }
}
