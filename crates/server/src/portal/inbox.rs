//! The web inbox: Direct secure messaging for a signed-in portal user who owns a Direct address
//! (a solo therapist with only a browser). Server-rendered, no scripts, a CSRF token on every form.
//!
//! - `GET /portal/inbox[?address=A&box=sent&before=C]`: the inbox (unread marked) or the sent list
//!   (each recipient's delivery status: queued, sent, processed, dispatched, failed), newest first,
//!   a page at a time;
//! - `GET /portal/inbox/messages/{id}`: one message: headers, text, attachments to download, the
//!   documents of an XDM package. Opening marks it read and, when its sender asked for
//!   final-destination delivery, queues the "dispatched" notification (once: the first opening);
//! - `.../parts/{n}` and `.../parts/{n}/docs/{k}`: an attachment or an XDM document, always as a
//!   download (`Content-Disposition: attachment`, the type kept only for a few inert types);
//! - `.../view`: a C-CDA document rendered safely (section titles and narrative, no active content),
//!   with a form to import it (`POST .../import`) as a DocumentReference for the patient it names,
//!   through the repository and the access decision point as this user (labelled on intake);
//! - `GET`/`POST /portal/inbox/compose[?reply=ID|forward=ID|to=A]`: write, reply, forward, with
//!   attachments (multipart upload within the HISP's message size), optionally as an XDM package;
//!   the message takes the same outbound path as SMTP mail (`Hisp::send`: queued durably, signed,
//!   encrypted for the recipient's trusted certificate at sending time);
//! - `GET /portal/inbox/sent/{row}`: a sent message and its status per recipient;
//! - `GET /portal/inbox/directory`: the address book from the provider directory.
//!
//! Who owns which address is decided in one place, `smtp::hisp::user_addresses` (bound by the
//! operator). A message, part or sent row of an address the user does not own is answered exactly
//! as one that does not exist. The log gets user ids and message ids, never contents or addresses.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use direct::mime::{self, ContentType, Entity};
use direct::xdm;
use exchange::access::Requester;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use store::{
    DeliveryStatus, DirectAddress, MailKind, MailMessage, Outbound, OutboundKind, Session, User,
};

use super::html::{download, escape, page, respond, see_other, see_other_to};
use super::multipart::{self, Field};
use super::{account, ccda, forbidden, internal, query_param, request_id, signed_in};
use crate::http::Shared;
use crate::smtp::hisp::{self, Hisp};

/// Messages per page of a list.
const PER_PAGE: usize = 25;
/// Address book entries shown at most.
const DIRECTORY_LIMIT: usize = 100;
/// The deepest MIME nesting followed.
const MAX_DEPTH: usize = 12;
/// Room in a compose form's body for its text fields and the form's own framing.
const FORM_SLACK: usize = 256 * 1024;

/// A signed-in user of the inbox.
struct Inbox {
    session: Session,
    user: User,
    addresses: Vec<DirectAddress>,
    hisp: Hisp,
}

impl Inbox {
    fn owns(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        self.addresses.iter().any(|a| a.address == address)
    }

    /// The address the request chose (`address=`), or the first.
    fn chosen(&self, parts: &Parts) -> &DirectAddress {
        let wanted = query_param(parts.uri.query(), "address").unwrap_or_default();
        self.addresses
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(wanted.trim()))
            .unwrap_or(&self.addresses[0])
    }
}

/// What a query value or path segment keeps unencoded (RFC 3986's unreserved characters).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            "<h1>Not found</h1>\n<p>There is no such message in your mailbox.</p>\n\
             <p><a href=\"/portal/inbox\">Back to your messages</a></p>\n",
        ),
        &[],
    )
}

fn notice(status: StatusCode, title: &str, text: &str) -> Response {
    respond(
        status,
        page(
            title,
            &format!(
                "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/portal\">Back</a></p>\n",
                escape(title),
                escape(text)
            ),
        ),
        &[],
    )
}

/// The user of a request, with their addresses; or the page to answer instead.
async fn inbox_user(state: &Shared, parts: &Parts) -> Result<Inbox, Response> {
    let (session, user) = match signed_in(state, parts).await? {
        Some(signed) => signed,
        None => return Err(see_other("/portal/sign-in", &[])),
    };
    let Some(hisp) = state.direct.clone() else {
        return Err(notice(
            StatusCode::NOT_FOUND,
            "Secure messaging is not available",
            "This exchange does not run Direct secure messaging.",
        ));
    };
    let addresses = hisp::user_addresses(state.repo.store(), &user.user_id)
        .await
        .map_err(internal)?;
    if addresses.is_empty() {
        return Err(notice(
            StatusCode::OK,
            "No Direct address",
            "Your account has no Direct address yet. The exchange's operator issues one and \
             binds it to your account; then your messages appear here.",
        ));
    }
    Ok(Inbox {
        session,
        user,
        addresses,
        hisp,
    })
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// The navigation every inbox page starts with.
fn nav(inbox: &Inbox, current: &DirectAddress) -> String {
    let a = enc(&current.address);
    let mut html = String::from("<nav aria-label=\"Messages\"><ul>\n");
    html.push_str(&format!(
        "<li><a href=\"/portal/inbox?address={a}\">Inbox</a></li>\n\
         <li><a href=\"/portal/inbox?address={a}&amp;box=sent\">Sent</a></li>\n\
         <li><a href=\"/portal/inbox/compose?from={a}\">Write a message</a></li>\n\
         <li><a href=\"/portal/inbox/directory?from={a}\">Address book</a></li>\n\
         <li><a href=\"/portal\">Your account</a></li>\n</ul></nav>\n"
    ));
    if inbox.addresses.len() > 1 {
        html.push_str("<p>Your addresses: ");
        let links: Vec<String> = inbox
            .addresses
            .iter()
            .map(|x| {
                if x.address == current.address {
                    format!("<strong>{}</strong>", escape(&x.address))
                } else {
                    format!(
                        "<a href=\"/portal/inbox?address={}\">{}</a>",
                        enc(&x.address),
                        escape(&x.address)
                    )
                }
            })
            .collect();
        html.push_str(&links.join(", "));
        html.push_str("</p>\n");
    }
    html
}

/// A `before` cursor: `time.id`.
fn cursor(parts: &Parts) -> Option<(i64, String)> {
    let text = query_param(parts.uri.query(), "before")?;
    let (t, id) = text.split_once('.')?;
    Some((t.parse().ok()?, id.to_string()))
}

fn status_label(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Queued => "queued (waiting to be sent)",
        DeliveryStatus::Sent => "sent (waiting for the recipient's system)",
        DeliveryStatus::Processed => "processed (received by the recipient's system)",
        DeliveryStatus::Dispatched => "dispatched (opened by the recipient)",
        DeliveryStatus::Failed => "failed",
    }
}

/// `GET /portal/inbox`: the inbox or the sent list of one of the user's addresses.
pub async fn list(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let current = inbox.chosen(&parts).clone();
    let sent = query_param(parts.uri.query(), "box").as_deref() == Some("sent");
    let store = state.repo.store();
    let mut body = format!(
        "<h1>Secure messages for {}</h1>\n{}",
        escape(&current.address),
        nav(&inbox, &current)
    );
    let before = cursor(&parts);
    if sent {
        let rows = match store
            .sent_page(&current.address, before, PER_PAGE + 1)
            .await
        {
            Ok(rows) => rows,
            Err(e) => return internal(e),
        };
        let mut messages: Vec<Vec<Outbound>> = Vec::new();
        for row in rows {
            match messages.last_mut() {
                Some(last) if last[0].message_id == row.message_id => last.push(row),
                _ => messages.push(vec![row]),
            }
        }
        let more = messages.len() > PER_PAGE;
        messages.truncate(PER_PAGE);
        body.push_str("<h2>Sent</h2>\n");
        if messages.is_empty() {
            body.push_str("<p>You have not sent any message from this address.</p>\n");
        } else {
            body.push_str(
                "<table>\n<thead><tr><th scope=\"col\">To</th><th scope=\"col\">Subject</th>\
                 <th scope=\"col\">Sent</th><th scope=\"col\">Delivery</th></tr></thead>\n<tbody>\n",
            );
            for rows in &messages {
                let first = &rows[0];
                let to: Vec<String> = rows.iter().map(|r| escape(&r.recipient)).collect();
                let statuses: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {}",
                            escape(&r.recipient),
                            escape(status_label(r.status))
                        )
                    })
                    .collect();
                let subject = if first.subject.is_empty() {
                    "(no subject)"
                } else {
                    &first.subject
                };
                body.push_str(&format!(
                    "<tr><td>{}</td><td><a href=\"/portal/inbox/sent/{}\">{}</a></td><td>{}</td>\
                     <td>{}</td></tr>\n",
                    to.join("<br>"),
                    enc(&first.id),
                    escape(subject),
                    when(first.created),
                    statuses.join("<br>")
                ));
            }
            body.push_str("</tbody>\n</table>\n");
        }
        if more {
            if let Some(last) = messages.last().map(|m| &m[0]) {
                body.push_str(&format!(
                    "<p><a href=\"/portal/inbox?address={}&amp;box=sent&amp;before={}\">Older messages</a></p>\n",
                    enc(&current.address),
                    enc(&format!("{}.{}", last.created, last.message_id))
                ));
            }
        }
    } else {
        let mut entries = match store
            .mailbox_page(&current.address, before, PER_PAGE + 1)
            .await
        {
            Ok(entries) => entries,
            Err(e) => return internal(e),
        };
        let unread = match store.unread_mail(&current.address).await {
            Ok(n) => n,
            Err(e) => return internal(e),
        };
        let more = entries.len() > PER_PAGE;
        entries.truncate(PER_PAGE);
        body.push_str(&format!(
            "<h2>Inbox</h2>\n<p>{unread} unread {}.</p>\n",
            if unread == 1 { "message" } else { "messages" }
        ));
        if entries.is_empty() {
            body.push_str("<p>No messages yet.</p>\n");
        } else {
            body.push_str(
                "<table>\n<thead><tr><th scope=\"col\">From</th><th scope=\"col\">Subject</th>\
                 <th scope=\"col\">Received</th><th scope=\"col\">Status</th></tr></thead>\n<tbody>\n",
            );
            for m in &entries {
                let kind = match m.kind {
                    MailKind::Message => "",
                    MailKind::Notification => " (delivery notification)",
                    MailKind::Dsn => " (delivery failure)",
                };
                let subject = if m.subject.is_empty() {
                    "(no subject)"
                } else {
                    &m.subject
                };
                let link = format!(
                    "<a href=\"/portal/inbox/messages/{}\">{}</a>{}",
                    enc(&m.id),
                    escape(subject),
                    kind
                );
                let (link, status) = if m.read.is_none() {
                    (format!("<strong>{link}</strong>"), "Unread")
                } else {
                    (link, "Read")
                };
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{link}</td><td>{}</td><td>{status}</td></tr>\n",
                    escape(&m.sender),
                    when(m.received)
                ));
            }
            body.push_str("</tbody>\n</table>\n");
        }
        if more {
            if let Some(last) = entries.last() {
                body.push_str(&format!(
                    "<p><a href=\"/portal/inbox?address={}&amp;before={}\">Older messages</a></p>\n",
                    enc(&current.address),
                    enc(&format!("{}.{}", last.received, last.id))
                ));
            }
        }
    }
    respond(StatusCode::OK, page("Secure messages", &body), &[])
}

// --- reading -------------------------------------------------------------------------------

/// One leaf of a message's MIME tree.
struct Leaf {
    content_type: ContentType,
    filename: Option<String>,
    attachment: bool,
    data: Vec<u8>,
}

impl Leaf {
    fn name(&self, index: usize) -> String {
        self.filename
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment-{}", index + 1))
    }

    fn is_xdm(&self) -> bool {
        matches!(
            self.content_type.mime_type.as_str(),
            "application/zip" | "application/octet-stream" | "application/x-zip-compressed"
        ) && xdm::is_xdm(&self.data)
    }

    fn is_cda(&self) -> bool {
        let xml = self.content_type.mime_type.ends_with("xml")
            || self
                .filename
                .as_deref()
                .is_some_and(|n| n.to_ascii_lowercase().ends_with(".xml"));
        xml && ccda::looks_like_cda(&self.data)
    }
}

fn leaves_of(entity: &Entity<'_>, depth: usize, out: &mut Vec<Leaf>) {
    let content_type = entity.content_type();
    if content_type.mime_type.starts_with("multipart/") && depth < MAX_DEPTH {
        if let Ok(parts) = entity.parts() {
            for part in &parts {
                leaves_of(part, depth + 1, out);
            }
            return;
        }
    }
    let disposition = entity
        .header("Content-Disposition")
        .map(ContentType::parse_disposition)
        .unwrap_or_default();
    let filename = disposition
        .1
        .or_else(|| content_type.param("name").map(str::to_string));
    let data = if content_type.mime_type == "message/rfc822" {
        entity.body().to_vec()
    } else {
        entity
            .decoded_body()
            .unwrap_or_else(|_| entity.body().to_vec())
    };
    out.push(Leaf {
        content_type,
        filename,
        attachment: disposition.0,
        data,
    });
}

/// What `Content-Disposition` says: whether it is an attachment, and the file name.
trait Disposition {
    fn parse_disposition(value: &str) -> (bool, Option<String>);
}

impl Disposition for ContentType {
    fn parse_disposition(value: &str) -> (bool, Option<String>) {
        // `attachment; filename=...` read with the parameter parser of Content-Type.
        let parsed = ContentType::parse(&format!("x/{value}"));
        let attachment = parsed.mime_type.eq_ignore_ascii_case("x/attachment");
        (
            attachment,
            parsed.param("filename").map(|f| f.trim().to_string()),
        )
    }
}

/// A message read: its headers, its text and its other leaves (by leaf index).
struct Read {
    from: String,
    to: String,
    cc: String,
    date: String,
    subject: String,
    text: Option<String>,
    leaves: Vec<Leaf>,
    /// The leaf that is the text (not listed as an attachment).
    text_leaf: Option<usize>,
}

fn read_entity(raw: &[u8]) -> Read {
    let Ok(entity) = Entity::parse(raw) else {
        return Read {
            from: String::new(),
            to: String::new(),
            cc: String::new(),
            date: String::new(),
            subject: String::new(),
            text: Some(String::from_utf8_lossy(raw).into_owned()),
            leaves: Vec::new(),
            text_leaf: None,
        };
    };
    let header = |name: &str| entity.header(name).unwrap_or_default().trim().to_string();
    let mut leaves = Vec::new();
    leaves_of(&entity, 0, &mut leaves);
    let text_leaf = leaves
        .iter()
        .position(|l| l.content_type.mime_type == "text/plain" && !l.attachment);
    let text = text_leaf.map(|i| String::from_utf8_lossy(&leaves[i].data).into_owned());
    Read {
        from: header("From"),
        to: header("To"),
        cc: header("Cc"),
        date: header("Date"),
        subject: header("Subject"),
        text,
        leaves,
        text_leaf,
    }
}

/// The message `id` if it is in one of the user's mailboxes.
async fn owned_message(state: &Shared, inbox: &Inbox, id: &str) -> Result<MailMessage, Response> {
    match state.repo.store().mail_message(id).await {
        Ok(Some(m)) if inbox.owns(&m.mailbox) => Ok(m),
        Ok(_) => Err(not_found()),
        Err(e) => Err(internal(e)),
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.0} KB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// `GET /portal/inbox/messages/{id}`.
pub async fn message(
    State(state): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let stored = match owned_message(&state, &inbox, &id).await {
        Ok(m) => m,
        Err(response) => return response,
    };
    // Marks it read and, the first time, queues the dispatched notification if it was asked for.
    if let Err(e) = inbox.hisp.open_message(&stored.id).await {
        return internal(e);
    }
    tracing::info!(user_id = %inbox.user.user_id, message = %stored.id, "inbox: message opened");
    let read = read_entity(&stored.raw);
    let current = inbox
        .addresses
        .iter()
        .find(|a| a.address == stored.mailbox)
        .unwrap_or(&inbox.addresses[0]);
    let subject = if read.subject.is_empty() {
        stored.subject.clone()
    } else {
        read.subject.clone()
    };
    let mut body = format!(
        "{}<h1>{}</h1>\n<dl>\n<dt>From</dt><dd>{}</dd>\n<dt>To</dt><dd>{}</dd>\n",
        nav(&inbox, current),
        escape(if subject.is_empty() {
            "(no subject)"
        } else {
            &subject
        }),
        escape(if read.from.is_empty() {
            &stored.sender
        } else {
            &read.from
        }),
        escape(if read.to.is_empty() {
            &stored.mailbox
        } else {
            &read.to
        }),
    );
    if !read.cc.is_empty() {
        body.push_str(&format!("<dt>Cc</dt><dd>{}</dd>\n", escape(&read.cc)));
    }
    body.push_str(&format!(
        "<dt>Date</dt><dd>{}</dd>\n<dt>Received</dt><dd>{}</dd>\n</dl>\n",
        escape(&read.date),
        when(stored.received)
    ));
    match &read.text {
        Some(text) => body.push_str(&format!(
            "<h2>Message</h2>\n<pre style=\"white-space: pre-wrap\">{}</pre>\n",
            escape(text)
        )),
        None => body.push_str("<p>This message has no plain text; see its attachments.</p>\n"),
    }
    let base = format!("/portal/inbox/messages/{}", enc(&stored.id));
    let attachments: Vec<(usize, &Leaf)> = read
        .leaves
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != read.text_leaf)
        .collect();
    if !attachments.is_empty() {
        body.push_str("<h2>Attachments</h2>\n<ul>\n");
        for (i, leaf) in attachments {
            let name = leaf.name(i);
            body.push_str(&format!(
                "<li><a href=\"{base}/parts/{i}\" download>{}</a> ({}, {})",
                escape(&name),
                escape(&leaf.content_type.mime_type),
                size(leaf.data.len())
            ));
            if leaf.is_cda() {
                body.push_str(&format!(
                    " <a href=\"{base}/parts/{i}/view\">View this clinical document</a>"
                ));
            }
            if leaf.is_xdm() {
                match xdm::unpack(&leaf.data, xdm::Limits::default()) {
                    Ok(package) => {
                        body.push_str("\n<p>An XDM package with these documents:</p>\n<ul>\n");
                        for (k, doc) in documents(&package).iter().enumerate() {
                            body.push_str(&format!(
                                "<li><a href=\"{base}/parts/{i}/docs/{k}\" download>{}</a> ({}, {})",
                                escape(&doc.name),
                                escape(doc.media_type),
                                size(doc.content.len())
                            ));
                            if ccda::looks_like_cda(&doc.content) {
                                body.push_str(&format!(
                                    " <a href=\"{base}/parts/{i}/docs/{k}/view\">View this clinical document</a>"
                                ));
                            }
                            body.push_str("</li>\n");
                        }
                        body.push_str("</ul>\n");
                    }
                    Err(e) => body.push_str(&format!(
                        " (the XDM package cannot be opened: {})",
                        escape(&e.to_string())
                    )),
                }
            }
            body.push_str("</li>\n");
        }
        body.push_str("</ul>\n");
    }
    if stored.kind == MailKind::Message {
        body.push_str(&format!(
            "<p><a href=\"/portal/inbox/compose?reply={id}\">Reply</a> | \
             <a href=\"/portal/inbox/compose?forward={id}\">Forward</a></p>\n",
            id = enc(&stored.id)
        ));
    }
    respond(StatusCode::OK, page(&subject, &body), &[])
}

/// Every document of an XDM package, in submission-set order (as the message page numbers them).
fn documents(package: &xdm::Package) -> Vec<&xdm::Document> {
    package
        .submission_sets
        .iter()
        .flat_map(|s| s.documents.iter())
        .collect()
}

/// The bytes, type and name of leaf `n` (or of document `k` of the XDM package that leaf is).
fn part_of(raw: &[u8], n: usize, k: Option<usize>) -> Option<(Vec<u8>, String, String)> {
    let read = read_entity(raw);
    let leaf = read.leaves.get(n)?;
    match k {
        None => Some((
            leaf.data.clone(),
            leaf.content_type.mime_type.clone(),
            leaf.name(n),
        )),
        Some(k) => {
            let package = xdm::unpack(&leaf.data, xdm::Limits::default()).ok()?;
            let doc = documents(&package).get(k).copied()?.clone();
            let name = doc
                .name
                .rsplit('/')
                .next()
                .unwrap_or("document")
                .to_string();
            Some((doc.content, doc.media_type.to_string(), name))
        }
    }
}

async fn owned_part(
    state: &Shared,
    parts: &Parts,
    id: &str,
    n: usize,
    k: Option<usize>,
) -> Result<(Inbox, MailMessage, Vec<u8>, String, String), Response> {
    let inbox = inbox_user(state, parts).await?;
    let message = owned_message(state, &inbox, id).await?;
    let Some((bytes, media_type, name)) = part_of(&message.raw, n, k) else {
        return Err(not_found());
    };
    Ok((inbox, message, bytes, media_type, name))
}

/// `GET /portal/inbox/messages/{id}/parts/{n}`: an attachment, as a download.
pub async fn part(
    State(state): State<Shared>,
    Path((id, n)): Path<(String, usize)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    match owned_part(&state, &parts, &id, n, None).await {
        Ok((_, _, bytes, media_type, name)) => download(bytes, &media_type, &name),
        Err(response) => response,
    }
}

/// `GET /portal/inbox/messages/{id}/parts/{n}/docs/{k}`: a document of an XDM package.
pub async fn xdm_document(
    State(state): State<Shared>,
    Path((id, n, k)): Path<(String, usize, usize)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    match owned_part(&state, &parts, &id, n, Some(k)).await {
        Ok((_, _, bytes, media_type, name)) => download(bytes, &media_type, &name),
        Err(response) => response,
    }
}

/// `GET .../parts/{n}/view`: a C-CDA attachment, rendered.
pub async fn view(
    State(state): State<Shared>,
    Path((id, n)): Path<(String, usize)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    view_document(&state, &parts, &id, n, None, None).await
}

/// `GET .../parts/{n}/docs/{k}/view`: a C-CDA document of an XDM package, rendered.
pub async fn view_xdm(
    State(state): State<Shared>,
    Path((id, n, k)): Path<(String, usize, usize)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    view_document(&state, &parts, &id, n, Some(k), None).await
}

async fn view_document(
    state: &Shared,
    parts: &Parts,
    id: &str,
    n: usize,
    k: Option<usize>,
    message: Option<&str>,
) -> Response {
    let (inbox, stored, bytes, _, name) = match owned_part(state, parts, id, n, k).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let back = format!("/portal/inbox/messages/{}", enc(&stored.id));
    let summary = match ccda::read(&bytes) {
        Ok(summary) => summary,
        Err(e) => {
            return respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(
                    "Cannot show this document",
                    &format!(
                        "<h1>Cannot show this document</h1>\n<p>{} cannot be shown: {}. You can \
                         still download it.</p>\n<p><a href=\"{back}\">Back to the message</a></p>\n",
                        escape(&name),
                        escape(&e.to_string())
                    ),
                ),
                &[],
            )
        }
    };
    let mut body = format!(
        "<h1>{}</h1>\n<p>A clinical document ({}) attached to a message from {}. \
         Shown as text only: nothing in it runs or loads.</p>\n",
        escape(&summary.title),
        escape(&name),
        escape(&stored.sender)
    );
    if let Some(message) = message {
        body.push_str(&format!(
            "<p role=\"alert\"><strong>{}</strong></p>\n",
            escape(message)
        ));
    }
    body.push_str("<dl>\n");
    body.push_str(&format!(
        "<dt>Patient</dt><dd>{}</dd>\n",
        escape(&summary.patient.name())
    ));
    if let Some(birth) = &summary.patient.birth_date {
        body.push_str(&format!("<dt>Born</dt><dd>{}</dd>\n", escape(birth)));
    }
    if let Some(date) = &summary.date {
        body.push_str(&format!(
            "<dt>Document date</dt><dd>{}</dd>\n",
            escape(date)
        ));
    }
    body.push_str("</dl>\n");
    for (title, narrative) in &summary.sections {
        body.push_str(&format!(
            "<section>\n<h2>{}</h2>\n<div>{}</div>\n</section>\n",
            escape(title),
            narrative
        ));
    }
    let action = match k {
        None => format!("{back}/parts/{n}/import"),
        Some(k) => format!("{back}/parts/{n}/docs/{k}/import"),
    };
    body.push_str(&format!(
        "<h2>Add to the exchange (optional)</h2>\n<p>You never have to. If you choose to, the \
         exchange keeps this document as a record about {} (a DocumentReference), subject to the \
         patient's consent choices.</p>\n<form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <button type=\"submit\">Import this document into the exchange</button>\n</form>\n\
         <p><a href=\"{back}\">Back to the message</a></p>\n",
        escape(&summary.patient.name()),
        escape(&inbox.session.csrf)
    ));
    respond(StatusCode::OK, page(&summary.title, &body), &[])
}

/// `POST .../parts/{n}/import`.
pub async fn import(
    State(state): State<Shared>,
    Path((id, n)): Path<(String, usize)>,
    request: Request,
) -> Response {
    import_document(state, id, n, None, request).await
}

/// `POST .../parts/{n}/docs/{k}/import`.
pub async fn import_xdm(
    State(state): State<Shared>,
    Path((id, n, k)): Path<(String, usize, usize)>,
    request: Request,
) -> Response {
    import_document(state, id, n, Some(k), request).await
}

async fn import_document(
    state: Shared,
    id: String,
    n: usize,
    k: Option<usize>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (inbox, stored, bytes, _, _) = match owned_part(&state, &parts, &id, n, k).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(form) = super::read_form(body).await else {
        return forbidden();
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !account::same_token(&inbox.session.csrf, sent) {
        return forbidden();
    }
    let refusal = match ccda::read(&bytes) {
        Err(e) => Err(format!("This document cannot be imported: {e}.")),
        Ok(summary) => match account::requester(&inbox.user, &request_id(&parts)) {
            None => Err("Your account cannot add records to the exchange.".to_string()),
            Some(who) => {
                let who = who.with_client_address(super::client_address(&parts));
                match import_ccda(&state, &who, &summary, &bytes).await {
                    Ok(outcome) => Ok(outcome),
                    Err(Refused::Internal(e)) => return internal(e),
                    Err(Refused::Said(why)) => Err(why),
                }
            }
        },
    };
    let outcome = match refusal {
        Ok(outcome) => outcome,
        Err(why) => return view_document(&state, &parts, &id, n, k, Some(&why)).await,
    };
    tracing::info!(user_id = %inbox.user.user_id, message = %stored.id, created = outcome.1, "inbox: document imported");
    let back = format!("/portal/inbox/messages/{}", enc(&stored.id));
    let what = if outcome.1 {
        "The document was added to the exchange"
    } else {
        "This document was already in the exchange; nothing was added"
    };
    respond(
        StatusCode::OK,
        page(
            "Document imported",
            &format!(
                "<h1>Document imported</h1>\n<p role=\"status\">{what} as DocumentReference/{} \
                 about the patient it names.</p>\n<p><a href=\"{back}\">Back to the message</a></p>\n",
                escape(&outcome.0)
            ),
        ),
        &[],
    )
}

enum Refused {
    Said(String),
    Internal(String),
}

fn refused(e: exchange::repository::Error, doing: &str) -> Refused {
    let status = e.status();
    if status >= 500 {
        return Refused::Internal(e.to_string());
    }
    Refused::Said(match status {
        401 | 403 => format!(
            "The exchange does not let your account {doing} (your organization may not be live \
             on the exchange yet). Nothing was imported."
        ),
        _ => format!("The exchange could not {doing}: the document's data was not accepted. Nothing was imported."),
    })
}

/// Finds the patient the document names (by the identifiers it gives; the exchange's own lookup,
/// which discloses nothing but the match), or adds them, then adds the DocumentReference, both as
/// the user. Answers the DocumentReference's id and whether it was created (an import of the same
/// document again finds the first by its identifier).
async fn import_ccda(
    state: &Shared,
    who: &Requester,
    summary: &ccda::Summary,
    bytes: &[u8],
) -> Result<(String, bool), Refused> {
    let repo = &state.repo;
    let system = Requester::system(who.request_id.clone());
    let mut patient_id: Option<String> = None;
    for (root, extension) in &summary.patient.ids {
        let params = vec![(
            "identifier".to_string(),
            format!("{}|{}", ccda::system_of(root), extension),
        )];
        let found = repo
            .search(&system, Some("Patient"), &params, Default::default())
            .await
            .map_err(|e| refused(e, "look the patient up"))?
            .to_value();
        let ids: Vec<String> = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["search"]["mode"] != "include" && e["resource"]["resourceType"] == "Patient"
            })
            .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
            .collect();
        if ids.len() == 1 {
            patient_id = ids.into_iter().next();
            break;
        }
        if ids.len() > 1 {
            return Err(Refused::Said(
                "More than one patient in the exchange has this document's identifier; the \
                 exchange's operator must resolve that first. Nothing was imported."
                    .to_string(),
            ));
        }
    }
    let patient_id = match patient_id {
        Some(id) => id,
        None => {
            if summary.patient.ids.is_empty() {
                return Err(Refused::Said(
                    "The document names no patient identifier, so it cannot be filed. Nothing \
                     was imported."
                        .to_string(),
                ));
            }
            let mut patient = json!({
                "resourceType": "Patient",
                "identifier": summary.patient.ids.iter().map(|(root, ext)| json!({
                    "system": ccda::system_of(root), "value": ext
                })).collect::<Vec<_>>(),
            });
            if !summary.patient.given.is_empty() || summary.patient.family.is_some() {
                let mut name = json!({});
                if let Some(family) = &summary.patient.family {
                    name["family"] = json!(family);
                }
                if !summary.patient.given.is_empty() {
                    name["given"] = json!(summary.patient.given);
                }
                patient["name"] = json!([name]);
            }
            if let Some(gender) = summary.patient.gender {
                patient["gender"] = json!(gender);
            }
            if let Some(birth) = &summary.patient.birth_date {
                patient["birthDate"] = json!(birth);
            }
            repo.create(who, "Patient", patient, None)
                .await
                .map_err(|e| refused(e, "add the patient"))?
                .resource
                .id
        }
    };
    let mut reference = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "date": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "description": summary.title,
        "content": [{
            "attachment": {
                "contentType": "application/xml",
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
                "title": summary.title,
            },
            "format": {
                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                "code": "urn:hl7-org:sdwg:ccda-structuredBody:2.1",
            },
        }],
    });
    if let Some((code, system, display)) = &summary.code {
        let system = if system == "2.16.840.1.113883.6.1" {
            "http://loinc.org".to_string()
        } else {
            ccda::system_of(system)
        };
        let mut coding = json!({ "system": system, "code": code });
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        reference["type"] = json!({ "coding": [coding] });
    }
    let mut if_none_exist = None;
    if let Some((system, value)) = &summary.document_id {
        reference["masterIdentifier"] = json!({ "system": system, "value": value });
        if_none_exist = Some(format!(
            "identifier={}|{}",
            enc_param(system),
            enc_param(value)
        ));
    }
    let outcome = repo
        .create(
            who,
            "DocumentReference",
            reference,
            if_none_exist.as_deref(),
        )
        .await
        .map_err(|e| refused(e, "add the document"))?;
    Ok((outcome.resource.id, outcome.created))
}

/// A search value as a query string carries it (`|`, `,` and `$` kept as FHIR means them).
fn enc_param(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

// --- sent ----------------------------------------------------------------------------------

/// `GET /portal/inbox/sent/{row}`: a sent message with its status per recipient.
pub async fn sent(
    State(state): State<Shared>,
    Path(row_id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let store = state.repo.store();
    let row = match store.outbound(&row_id).await {
        Ok(Some(row)) if row.kind == OutboundKind::Message && inbox.owns(&row.sender) => row,
        Ok(_) => return not_found(),
        Err(e) => return internal(e),
    };
    let rows: Vec<Outbound> = match store.outbound_by_message(&row.message_id).await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| r.sender == row.sender && r.kind == OutboundKind::Message)
            .collect(),
        Err(e) => return internal(e),
    };
    let current = inbox
        .addresses
        .iter()
        .find(|a| a.address == row.sender)
        .unwrap_or(&inbox.addresses[0]);
    let subject = if row.subject.is_empty() {
        "(no subject)".to_string()
    } else {
        row.subject.clone()
    };
    let mut body = format!(
        "{}<h1>{}</h1>\n<dl>\n<dt>From</dt><dd>{}</dd>\n<dt>Sent</dt><dd>{}</dd>\n</dl>\n\
         <h2>Delivery</h2>\n<table>\n<thead><tr><th scope=\"col\">To</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Updated</th><th scope=\"col\">Problem</th></tr></thead>\n<tbody>\n",
        nav(&inbox, current),
        escape(&subject),
        escape(&row.sender),
        when(row.created)
    );
    for r in &rows {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&r.recipient),
            escape(status_label(r.status)),
            when(r.updated),
            escape(r.last_error.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</tbody>\n</table>\n");
    let read = read_entity(&row.content);
    if let Some(text) = &read.text {
        body.push_str(&format!(
            "<h2>Message</h2>\n<pre style=\"white-space: pre-wrap\">{}</pre>\n",
            escape(text)
        ));
    }
    let names: Vec<String> = read
        .leaves
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != read.text_leaf)
        .map(|(i, l)| format!("<li>{} ({})</li>", escape(&l.name(i)), size(l.data.len())))
        .collect();
    if !names.is_empty() {
        body.push_str(&format!(
            "<h2>Attachments</h2>\n<ul>\n{}\n</ul>\n",
            names.join("\n")
        ));
    }
    respond(StatusCode::OK, page(&subject, &body), &[])
}

// --- compose -------------------------------------------------------------------------------

/// What the compose form holds (as typed, for redisplay), and the errors beside its fields.
#[derive(Default)]
struct Draft {
    from: String,
    to: String,
    subject: String,
    text: String,
    xdm: bool,
    /// The message whose attachments a forward carries.
    forward: String,
    /// The message a reply answers (its mailbox entry id): the reply carries `In-Reply-To` and
    /// `References`, so the other side's mail program threads them.
    reply: String,
    errors: HashMap<&'static str, String>,
}

/// `In-Reply-To` and `References` (RFC 5322 section 3.6.4) for a reply to `original`, as header
/// lines to put before the reply's own; none when the original had no usable Message-ID.
fn threading_headers(original: &MailMessage) -> String {
    let id = original.message_id.trim();
    let one_id =
        |v: &str| v.starts_with('<') && v.ends_with('>') && !v.contains(char::is_whitespace);
    if !one_id(id) || !mime::is_safe_header_value(id) {
        return String::new();
    }
    let earlier = Entity::parse(&original.raw)
        .ok()
        .and_then(|e| e.header("References").map(str::to_string))
        .unwrap_or_default();
    let mut references: Vec<&str> = earlier
        .split_whitespace()
        .filter(|r| one_id(r) && *r != id)
        .collect();
    // The newest few are what threading needs; a long chain is cut from the front.
    if references.len() > 20 {
        references.drain(..references.len() - 20);
    }
    references.push(id);
    format!(
        "In-Reply-To: {id}\r\nReferences: {}\r\n",
        references.join(" ")
    )
}

/// The names of the forwarded message's attachments, for the form.
fn forwarded_names(raw: &[u8]) -> Vec<String> {
    let read = read_entity(raw);
    read.leaves
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != read.text_leaf)
        .map(|(i, l)| l.name(i))
        .collect()
}

fn compose_page(
    inbox: &Inbox,
    draft: &Draft,
    forwarded: &[String],
    max_bytes: usize,
    status: StatusCode,
) -> Response {
    let current = inbox
        .addresses
        .iter()
        .find(|a| a.address == draft.from)
        .unwrap_or(&inbox.addresses[0]);
    let error = |field: &str| {
        draft
            .errors
            .get(field)
            .map(|e| {
                format!(
                    "<br><strong id=\"{field}-error\" role=\"alert\">{}</strong>",
                    escape(e)
                )
            })
            .unwrap_or_default()
    };
    let described = |field: &str| {
        if draft.errors.contains_key(field) {
            format!(" aria-invalid=\"true\" aria-describedby=\"{field}-error\"")
        } else {
            String::new()
        }
    };
    let mut body = format!("{}<h1>Write a secure message</h1>\n", nav(inbox, current));
    if !draft.errors.is_empty() {
        body.push_str(
            "<p role=\"alert\"><strong>The message was not sent. Please correct what is marked \
             below.</strong></p>\n",
        );
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/portal/inbox/compose\" enctype=\"multipart/form-data\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"forward\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"reply\" value=\"{}\">\n",
        escape(&inbox.session.csrf),
        escape(&draft.forward),
        escape(&draft.reply)
    ));
    if inbox.addresses.len() > 1 {
        body.push_str("<p><label>From<br><select name=\"from\">\n");
        for a in &inbox.addresses {
            let selected = if a.address == current.address {
                " selected"
            } else {
                ""
            };
            body.push_str(&format!(
                "<option value=\"{0}\"{selected}>{0}</option>\n",
                escape(&a.address)
            ));
        }
        body.push_str(&format!("</select></label>{}</p>\n", error("from")));
    } else {
        body.push_str(&format!(
            "<p>From: {0}<input type=\"hidden\" name=\"from\" value=\"{0}\">{1}</p>\n",
            escape(&current.address),
            error("from")
        ));
    }
    body.push_str(&format!(
        "<p><label>To (Direct addresses, separated by commas)<br>\
         <input name=\"to\" value=\"{}\" size=\"60\" required{}></label>{}<br>\
         <a href=\"/portal/inbox/directory?from={}\">Find an address in the address book</a></p>\n",
        escape(&draft.to),
        described("to"),
        error("to"),
        enc(&current.address)
    ));
    body.push_str(&format!(
        "<p><label>Subject<br><input name=\"subject\" value=\"{}\" size=\"60\" maxlength=\"200\"{}>\
         </label>{}</p>\n",
        escape(&draft.subject),
        described("subject"),
        error("subject")
    ));
    body.push_str(&format!(
        "<p><label>Message<br><textarea name=\"body\" rows=\"14\" cols=\"72\"{}>{}</textarea>\
         </label>{}</p>\n",
        described("body"),
        escape(&draft.text),
        error("body")
    ));
    if !forwarded.is_empty() {
        body.push_str("<p>Forwarded with the original's attachments:</p>\n<ul>\n");
        for name in forwarded {
            body.push_str(&format!("<li>{}</li>\n", escape(name)));
        }
        body.push_str("</ul>\n");
    }
    body.push_str(&format!(
        "<p><label>Attach files (at most {} in all)<br>\
         <input type=\"file\" name=\"attachment\" multiple{}></label>{}</p>\n\
         <p><label><input type=\"checkbox\" name=\"xdm\" value=\"1\"{}> Send the attached \
         documents as an XDM package (for receivers that file documents automatically)</label>{}</p>\n\
         <p><button type=\"submit\">Send securely</button></p>\n</form>\n",
        size(max_bytes),
        described("attachment"),
        error("attachment"),
        if draft.xdm { " checked" } else { "" },
        error("xdm")
    ));
    respond(status, page("Write a secure message", &body), &[])
}

/// The largest attachments (in all) a message may carry: base64 grows them by a third, and the
/// text and headers need room, within the HISP's message size.
fn max_attachments(hisp: &Hisp) -> usize {
    (hisp.config().max_message_bytes / 4 * 3).saturating_sub(64 * 1024)
}

/// `GET /portal/inbox/compose[?from=A&to=B&reply=ID&forward=ID]`.
pub async fn compose_form(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let query = parts.uri.query();
    let mut draft = Draft {
        from: inbox.chosen(&parts).address.clone(),
        to: query_param(query, "to").unwrap_or_default(),
        ..Draft::default()
    };
    let mut forwarded = Vec::new();
    let reply = query_param(query, "reply");
    let forward = query_param(query, "forward");
    if let Some(id) = reply.as_deref().or(forward.as_deref()) {
        let original = match owned_message(&state, &inbox, id).await {
            Ok(m) => m,
            Err(response) => return response,
        };
        let read = read_entity(&original.raw);
        let subject = if read.subject.is_empty() {
            original.subject.clone()
        } else {
            read.subject.clone()
        };
        let text = read.text.clone().unwrap_or_default();
        draft.from = original.mailbox.clone();
        if reply.is_some() {
            draft.reply = original.id.clone();
            draft.to = original.sender.clone();
            draft.subject = if subject.to_ascii_lowercase().starts_with("re:") {
                subject
            } else {
                format!("Re: {subject}")
            };
            let quoted: Vec<String> = text.lines().map(|l| format!("> {l}")).collect();
            draft.text = format!(
                "\n\nOn {}, {} wrote:\n{}\n",
                when(original.received),
                original.sender,
                quoted.join("\n")
            );
        } else {
            draft.subject = format!("Fwd: {subject}");
            draft.text = format!(
                "\n\n---------- Forwarded message ----------\nFrom: {}\nDate: {}\nSubject: {}\n\n{}\n",
                original.sender,
                when(original.received),
                subject,
                text
            );
            draft.forward = original.id.clone();
            forwarded = forwarded_names(&original.raw);
        }
    }
    let max = max_attachments(&inbox.hisp);
    compose_page(&inbox, &draft, &forwarded, max, StatusCode::OK)
}

/// A file name made plain for MIME headers and XDM (letters, digits, `.`, `_`, `-`).
fn plain_name(name: &str, fallback: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let plain: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let plain = plain.trim_start_matches('.').to_string();
    if plain.is_empty() || plain.len() > 100 {
        fallback.to_string()
    } else {
        plain
    }
}

/// A declared content type if it is a plain `type/subtype`, else `application/octet-stream`.
fn plain_type(declared: Option<&str>) -> String {
    let t = declared
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match t.split_once('/') {
        Some((a, b)) if token(a) && token(b) => t.to_ascii_lowercase(),
        _ => "application/octet-stream".to_string(),
    }
}

/// `POST /portal/inbox/compose`: checks the form, builds the MIME entity, queues it.
pub async fn compose(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let max = max_attachments(&inbox.hisp);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = multipart::boundary(content_type) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Not sent",
            "The form did not arrive as a file upload form. Go back and send it from the \
             compose page.",
        );
    };
    let bytes = match axum::body::to_bytes(body, max + FORM_SLACK).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                page(
                    "Not sent: too large",
                    &format!(
                        "<h1>Not sent: the attachments are too large</h1>\n<p>A message may \
                         carry at most {} of attachments in all. Go back (your browser keeps \
                         what you typed), remove or shrink some attachments, and send again.</p>\n\
                         <p><a href=\"/portal/inbox/compose\">Write a message</a></p>\n",
                        size(max)
                    ),
                ),
                &[],
            )
        }
    };
    let Some(fields) = multipart::parse(&bytes, &boundary) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Not sent",
            "The form could not be read. Go back and send it again.",
        );
    };
    let value = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name && f.filename.is_none())
            .map(|f| f.text().to_string())
            .unwrap_or_default()
    };
    if !account::same_token(&inbox.session.csrf, &value("csrf")) {
        return forbidden();
    }
    let mut draft = Draft {
        from: value("from").trim().to_ascii_lowercase(),
        to: value("to"),
        subject: value("subject"),
        text: value("body"),
        xdm: !value("xdm").is_empty(),
        forward: value("forward"),
        reply: value("reply"),
        errors: HashMap::new(),
    };
    let uploads: Vec<&Field> = fields
        .iter()
        .filter(|f| f.name == "attachment" && f.filename.as_deref().is_some_and(|n| !n.is_empty()))
        .collect();

    // The original a forward carries the attachments of.
    let mut forwarded: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut forwarded_list = Vec::new();
    if !draft.forward.is_empty() {
        let original = match owned_message(&state, &inbox, &draft.forward).await {
            Ok(m) => m,
            Err(response) => return response,
        };
        forwarded_list = forwarded_names(&original.raw);
        let read = read_entity(&original.raw);
        for (i, leaf) in read.leaves.iter().enumerate() {
            if Some(i) != read.text_leaf {
                forwarded.push((
                    plain_name(&leaf.name(i), &format!("attachment-{}", i + 1)),
                    leaf.content_type.mime_type.clone(),
                    leaf.data.clone(),
                ));
            }
        }
    }

    if !inbox.owns(&draft.from) {
        draft
            .errors
            .insert("from", "Choose one of your own addresses.".to_string());
    }
    let mut recipients: Vec<String> = Vec::new();
    for piece in draft.to.split([',', ';', '\n']) {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        match mime::address_of(piece) {
            Some(a) => {
                let a = a.to_ascii_lowercase();
                if !recipients.contains(&a) {
                    recipients.push(a);
                }
            }
            None => {
                draft.errors.insert(
                    "to",
                    format!("\"{piece}\" is not a Direct address (name@example.org)."),
                );
                break;
            }
        }
    }
    if recipients.is_empty() && !draft.errors.contains_key("to") {
        draft.errors.insert(
            "to",
            "Write at least one recipient's Direct address.".to_string(),
        );
    }
    if recipients.len() > inbox.hisp.config().max_recipients {
        draft.errors.insert(
            "to",
            format!(
                "At most {} recipients per message.",
                inbox.hisp.config().max_recipients
            ),
        );
    }
    if !draft.errors.contains_key("to") && !draft.errors.contains_key("from") {
        for r in &recipients {
            match inbox.hisp.check_reachable(&draft.from, r).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    draft.errors.insert("to", why);
                    break;
                }
                Err(e) => return internal(e),
            }
        }
    }
    let subject = draft.subject.trim().to_string();
    if !mime::is_safe_header_value(&subject) || subject.chars().count() > 200 {
        draft.errors.insert(
            "subject",
            "The subject must be one line of at most 200 characters.".to_string(),
        );
    }
    if draft.text.trim().is_empty() && uploads.is_empty() && forwarded.is_empty() {
        draft
            .errors
            .insert("body", "Write a message or attach a file.".to_string());
    }
    let total: usize = uploads.iter().map(|f| f.data.len()).sum::<usize>()
        + forwarded.iter().map(|f| f.2.len()).sum::<usize>();
    if total > max {
        draft.errors.insert(
            "attachment",
            format!(
                "The attachments are {} in all; a message may carry at most {}. Choose smaller \
                 files.",
                size(total),
                size(max)
            ),
        );
    }
    if draft.xdm && uploads.is_empty() && forwarded.is_empty() {
        draft.errors.insert(
            "xdm",
            "Attach the document to send as an XDM package.".to_string(),
        );
    }
    if !draft.errors.is_empty() {
        if !uploads.is_empty() {
            draft.errors.entry("attachment").or_insert_with(|| {
                "Please choose your files again (browsers do not keep them).".to_string()
            });
        }
        return compose_page(
            &inbox,
            &draft,
            &forwarded_list,
            max,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }

    let mut files: Vec<(String, String, Vec<u8>)> = forwarded;
    for (i, f) in uploads.iter().enumerate() {
        files.push((
            plain_name(
                f.filename.as_deref().unwrap_or_default(),
                &format!("file-{}", i + 1),
            ),
            plain_type(f.content_type.as_deref()),
            f.data.clone(),
        ));
    }
    if draft.xdm {
        match pack_xdm(&draft.from, &recipients, &subject, &files) {
            Ok(zip) => files = vec![("XDM.ZIP".to_string(), "application/zip".to_string(), zip)],
            Err(e) => {
                draft
                    .errors
                    .insert("xdm", format!("The XDM package could not be made: {e}."));
                return compose_page(
                    &inbox,
                    &draft,
                    &forwarded_list,
                    max,
                    StatusCode::UNPROCESSABLE_ENTITY,
                );
            }
        }
    }
    let mut content = build_entity(&draft.text, &files);
    if !draft.reply.is_empty() {
        let original = match owned_message(&state, &inbox, &draft.reply).await {
            Ok(m) => m,
            Err(response) => return response,
        };
        content = [threading_headers(&original).into_bytes(), content].concat();
    }
    let message_id = match inbox
        .hisp
        .send(&draft.from, &recipients, &subject, &content)
        .await
    {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    tracing::info!(user_id = %inbox.user.user_id, recipients = recipients.len(), attachments = files.len(), "inbox: message queued");
    match state.repo.store().outbound_by_message(&message_id).await {
        Ok(rows) => match rows.first() {
            Some(row) => see_other_to(&format!("/portal/inbox/sent/{}", enc(&row.id))),
            None => see_other_to(&format!(
                "/portal/inbox?address={}&box=sent",
                enc(&draft.from)
            )),
        },
        Err(e) => internal(e),
    }
}

/// Text as a MIME body: 7bit when it is short-lined ASCII, base64 otherwise; lines end in CRLF.
fn text_part(text: &str) -> String {
    let normal = text.replace("\r\n", "\n").replace('\r', "\n");
    let crlf = normal.replace('\n', "\r\n");
    if crlf.is_ascii() && crlf.lines().all(|l| l.len() <= 900) {
        format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{crlf}")
    } else {
        format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            String::from_utf8_lossy(&mime::encode_base64_lines(crlf.as_bytes()))
        )
    }
}

/// The message's MIME entity: the text alone, or `multipart/mixed` with the files.
fn build_entity(text: &str, files: &[(String, String, Vec<u8>)]) -> Vec<u8> {
    if files.is_empty() {
        return text_part(text).into_bytes();
    }
    let boundary = mime::new_boundary();
    let mut out = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
    out.push_str(&format!("--{boundary}\r\n{}", text_part(text)));
    for (name, media_type, data) in files {
        out.push_str(&format!(
            "\r\n--{boundary}\r\nContent-Type: {media_type}; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        out.push_str(&String::from_utf8_lossy(&mime::encode_base64_lines(data)));
    }
    out.push_str(&format!("\r\n--{boundary}--\r\n"));
    out.into_bytes()
}

/// Hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One submission set of the files as an IHE XDM package, with the XDS metadata (ebRS 3.0
/// `SubmitObjectsRequest`: a document entry per file with its hash, size and type; the submission
/// set with its author and intended recipients).
fn pack_xdm(
    sender: &str,
    recipients: &[String],
    title: &str,
    files: &[(String, String, Vec<u8>)],
) -> anyhow::Result<Vec<u8>> {
    let mut names: Vec<String> = Vec::new();
    for (name, _, _) in files {
        let mut candidate = name.clone();
        let mut n = 2;
        while names.iter().any(|x| x.eq_ignore_ascii_case(&candidate)) {
            candidate = format!("{n}_{name}");
            n += 1;
        }
        names.push(candidate);
    }
    let now = time::OffsetDateTime::now_utc();
    let submitted = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let x = |s: &str| escape(s);
    let slot = |name: &str, values: &[String]| {
        let values: String = values
            .iter()
            .map(|v| format!("<rim:Value>{}</rim:Value>", x(v)))
            .collect();
        format!("<rim:Slot name=\"{name}\"><rim:ValueList>{values}</rim:ValueList></rim:Slot>")
    };
    let mut objects = String::new();
    let set_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let set_unique = format!("2.25.{}", uuid::Uuid::new_v4().as_u128());
    for ((_, media_type, data), name) in files.iter().zip(&names) {
        let entry = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let digest = openssl::hash::hash(openssl::hash::MessageDigest::sha1(), data)?;
        objects.push_str(&format!(
            "<rim:ExtrinsicObject id=\"{entry}\" mimeType=\"{mt}\" \
             objectType=\"urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1\">\
             {created}{hash}{size}{uri}\
             <rim:Name><rim:LocalizedString value=\"{nm}\"/></rim:Name>\
             <rim:ExternalIdentifier id=\"urn:uuid:{e1}\" registryObject=\"{entry}\" \
             identificationScheme=\"urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab\" \
             value=\"2.25.{u}\"><rim:Name><rim:LocalizedString value=\"XDSDocumentEntry.uniqueId\"/></rim:Name></rim:ExternalIdentifier>\
             </rim:ExtrinsicObject>\
             <rim:Association id=\"urn:uuid:{a}\" associationType=\"urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember\" \
             sourceObject=\"{set_id}\" targetObject=\"{entry}\">{status}</rim:Association>",
            mt = x(media_type),
            created = slot("creationTime", std::slice::from_ref(&submitted)),
            hash = slot("hash", &[hex(&digest)]),
            size = slot("size", &[data.len().to_string()]),
            uri = slot("URI", std::slice::from_ref(name)),
            nm = x(name),
            e1 = uuid::Uuid::new_v4(),
            u = uuid::Uuid::new_v4().as_u128(),
            a = uuid::Uuid::new_v4(),
            status = slot("SubmissionSetStatus", &["Original".to_string()]),
        ));
    }
    let intended: Vec<String> = recipients
        .iter()
        .map(|r| format!("||^^Internet^{r}"))
        .collect();
    let metadata = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <lcm:SubmitObjectsRequest xmlns:lcm=\"urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0\" \
         xmlns:rim=\"urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0\"><rim:RegistryObjectList>\
         <rim:RegistryPackage id=\"{set_id}\">{time}{intended}\
         <rim:Name><rim:LocalizedString value=\"{title}\"/></rim:Name>\
         <rim:Classification id=\"urn:uuid:{c1}\" classifiedObject=\"{set_id}\" \
         classificationScheme=\"urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d\" nodeRepresentation=\"\">\
         {author}</rim:Classification>\
         <rim:ExternalIdentifier id=\"urn:uuid:{e1}\" registryObject=\"{set_id}\" \
         identificationScheme=\"urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8\" value=\"{set_unique}\">\
         <rim:Name><rim:LocalizedString value=\"XDSSubmissionSet.uniqueId\"/></rim:Name></rim:ExternalIdentifier>\
         <rim:ExternalIdentifier id=\"urn:uuid:{e2}\" registryObject=\"{set_id}\" \
         identificationScheme=\"urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832\" value=\"2.25\">\
         <rim:Name><rim:LocalizedString value=\"XDSSubmissionSet.sourceId\"/></rim:Name></rim:ExternalIdentifier>\
         </rim:RegistryPackage>\
         <rim:Classification id=\"urn:uuid:{c2}\" classifiedObject=\"{set_id}\" \
         classificationNode=\"urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd\"/>\
         {objects}</rim:RegistryObjectList></lcm:SubmitObjectsRequest>\n",
        time = slot("submissionTime", std::slice::from_ref(&submitted)),
        intended = slot("intendedRecipient", &intended),
        title = x(title),
        c1 = uuid::Uuid::new_v4(),
        author = slot("authorTelecommunication", &[format!("^^Internet^{sender}")]),
        e1 = uuid::Uuid::new_v4(),
        e2 = uuid::Uuid::new_v4(),
        c2 = uuid::Uuid::new_v4(),
    );
    let documents: Vec<(&str, &[u8])> = names
        .iter()
        .zip(files)
        .map(|(n, (_, _, d))| (n.as_str(), d.as_slice()))
        .collect();
    Ok(xdm::pack(metadata.as_bytes(), &documents, sender)?)
}

// --- the address book ----------------------------------------------------------------------

/// One address book entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    address: String,
    name: String,
    organization: String,
    specialty: String,
    city: String,
}

fn first_city(resource: &Value) -> String {
    resource["address"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| a["city"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn human_name(resource: &Value) -> String {
    let Some(name) = resource["name"].as_array().and_then(|n| n.first()) else {
        return resource["name"].as_str().unwrap_or_default().to_string();
    };
    if let Some(text) = name["text"].as_str() {
        return text.to_string();
    }
    let mut parts: Vec<String> = name["prefix"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    parts.extend(
        name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_string)),
    );
    parts.extend(name["family"].as_str().map(str::to_string));
    parts.join(" ")
}

fn concept_text(concepts: &Value) -> String {
    concepts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c["text"].as_str().or_else(|| {
                c["coding"]
                    .as_array()
                    .and_then(|cs| cs.iter().find_map(|x| x["display"].as_str()))
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The directory's entries: every active address the exchange issued, with its holder's name,
/// organization, specialty and city from the registry (Practitioner, PractitionerRole,
/// Organization), then the outside Direct addresses the directory's Endpoints carry. Read as the
/// exchange (the directory is not patient data).
async fn directory(state: &Shared, request_id: &str) -> anyhow::Result<Vec<Entry>> {
    let repo = &state.repo;
    let read = |ty: &'static str, id: String| {
        let system = Requester::system(request_id);
        async move { repo.read(&system, ty, &id).await.ok().map(|v| v.resource) }
    };
    let search = |ty: &'static str, params: Vec<(String, String)>| {
        let system = Requester::system(request_id);
        async move {
            repo.search(&system, Some(ty), &params, Default::default())
                .await
                .map(|s| {
                    s.to_value()["entry"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| e["resource"].clone())
                        .filter(|r| r["resourceType"] == ty)
                        .collect::<Vec<Value>>()
                })
                .unwrap_or_default()
        }
    };
    let mut entries = Vec::new();
    for a in repo.store().direct_addresses().await? {
        if a.status != store::AddressStatus::Active {
            continue;
        }
        let mut entry = Entry {
            address: a.address.clone(),
            name: a.display_name.clone(),
            ..Entry::default()
        };
        if a.owner_kind == "practitioner" {
            if let Some(p) = read("Practitioner", a.owner_id.clone()).await {
                let name = human_name(&p);
                if !name.is_empty() {
                    entry.name = name;
                }
                entry.city = first_city(&p);
            }
            let roles = search(
                "PractitionerRole",
                vec![(
                    "practitioner".to_string(),
                    format!("Practitioner/{}", a.owner_id),
                )],
            )
            .await;
            let mut specialties = Vec::new();
            let mut organizations = Vec::new();
            for role in &roles {
                let s = concept_text(&role["specialty"]);
                if !s.is_empty() {
                    specialties.push(s);
                }
                if let Some(org) = role["organization"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Organization/"))
                {
                    if let Some(o) = read("Organization", org.to_string()).await {
                        organizations.push(o["name"].as_str().unwrap_or_default().to_string());
                        if entry.city.is_empty() {
                            entry.city = first_city(&o);
                        }
                    }
                }
            }
            entry.specialty = specialties.join(", ");
            entry.organization = organizations.join(", ");
        } else if let Some(o) = read("Organization", a.owner_id.clone()).await {
            entry.organization = o["name"].as_str().unwrap_or_default().to_string();
            entry.city = first_city(&o);
        }
        entries.push(entry);
    }
    for endpoint in search(
        "Endpoint",
        vec![("connection-type".to_string(), "direct-project".to_string())],
    )
    .await
    {
        let Some(address) = endpoint["address"]
            .as_str()
            .map(|a| a.strip_prefix("mailto:").unwrap_or(a).to_ascii_lowercase())
            .filter(|a| mime::address_of(a).is_some())
        else {
            continue;
        };
        if entries.iter().any(|e| e.address == address) {
            continue;
        }
        let mut entry = Entry {
            address,
            name: endpoint["name"].as_str().unwrap_or_default().to_string(),
            ..Entry::default()
        };
        if let Some(org) = endpoint["managingOrganization"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Organization/"))
        {
            if let Some(o) = read("Organization", org.to_string()).await {
                entry.organization = o["name"].as_str().unwrap_or_default().to_string();
                entry.city = first_city(&o);
            }
        }
        entries.push(entry);
    }
    entries.sort_by_key(|e| e.name.to_lowercase());
    Ok(entries)
}

/// Whether an entry matches every term given (case-insensitive substrings).
fn matches(entry: &Entry, terms: &[(&str, String)]) -> bool {
    terms.iter().all(|(field, term)| {
        let term = term.trim().to_lowercase();
        if term.is_empty() {
            return true;
        }
        let value = match *field {
            "name" => format!("{} {}", entry.name, entry.address),
            "organization" => entry.organization.clone(),
            "specialty" => entry.specialty.clone(),
            _ => entry.city.clone(),
        };
        value.to_lowercase().contains(&term)
    })
}

/// `GET /portal/inbox/directory[?name=&organization=&specialty=&city=&from=]`.
pub async fn address_book(State(state): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let inbox = match inbox_user(&state, &parts).await {
        Ok(inbox) => inbox,
        Err(response) => return response,
    };
    let query = parts.uri.query();
    let from = query_param(query, "from").unwrap_or_default();
    let current = inbox
        .addresses
        .iter()
        .find(|a| a.address.eq_ignore_ascii_case(&from))
        .unwrap_or(&inbox.addresses[0])
        .clone();
    let terms: Vec<(&str, String)> = ["name", "organization", "specialty", "city"]
        .into_iter()
        .map(|f| (f, query_param(query, f).unwrap_or_default()))
        .collect();
    let mut body = format!(
        "{}<h1>Address book</h1>\n<p>Providers with Direct addresses in the exchange's \
         directory. Choose one to write to them.</p>\n\
         <form method=\"get\" action=\"/portal/inbox/directory\" role=\"search\">\n\
         <input type=\"hidden\" name=\"from\" value=\"{}\">\n",
        nav(&inbox, &current),
        escape(&current.address)
    );
    for (field, value) in &terms {
        let label = match *field {
            "name" => "Name",
            "organization" => "Organization",
            "specialty" => "Specialty",
            _ => "City",
        };
        if value.chars().count() > 100 {
            return notice(
                StatusCode::BAD_REQUEST,
                "Search too long",
                "Each search term may be at most 100 characters.",
            );
        }
        body.push_str(&format!(
            "<p><label>{label}<br><input name=\"{field}\" value=\"{}\"></label></p>\n",
            escape(value)
        ));
    }
    body.push_str("<p><button type=\"submit\">Search</button></p>\n</form>\n");
    let entries = match directory(&state, &request_id(&parts)).await {
        Ok(entries) => entries,
        Err(e) => return internal(e),
    };
    let found: Vec<&Entry> = entries.iter().filter(|e| matches(e, &terms)).collect();
    if found.is_empty() {
        body.push_str("<p>No provider matches.</p>\n");
    } else {
        body.push_str(&format!(
            "<p>{} found{}.</p>\n<table>\n<thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">Organization</th><th scope=\"col\">Specialty</th>\
             <th scope=\"col\">City</th><th scope=\"col\">Direct address</th></tr></thead>\n<tbody>\n",
            found.len(),
            if found.len() > DIRECTORY_LIMIT {
                format!(", the first {DIRECTORY_LIMIT} shown; narrow the search")
            } else {
                String::new()
            }
        ));
        for e in found.iter().take(DIRECTORY_LIMIT) {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/portal/inbox/compose?from={}&amp;to={}\">Write to {}</a></td></tr>\n",
                escape(&e.name),
                escape(&e.organization),
                escape(&e.specialty),
                escape(&e.city),
                enc(&current.address),
                enc(&e.address),
                escape(&e.address)
            ));
        }
        body.push_str("</tbody>\n</table>\n");
    }
    respond(StatusCode::OK, page("Address book", &body), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_names_the_message_it_answers_and_keeps_the_thread() {
        let original = |message_id: &str, raw: &[u8]| MailMessage {
            id: "m".into(),
            mailbox: "jane@direct.test".into(),
            kind: store::MailKind::Message,
            sender: "bob@other.test".into(),
            recipients: vec!["jane@direct.test".into()],
            subject: "Re: Hi".into(),
            message_id: message_id.into(),
            raw: raw.to_vec(),
            received: 0,
            read: None,
        };
        let raw = b"From: bob@other.test\r\nReferences: <a@x> bad <b@x>\r\n\
Content-Type: text/plain\r\n\r\nHi\r\n";
        assert_eq!(
            threading_headers(&original("<c@x>", raw)),
            "In-Reply-To: <c@x>\r\nReferences: <a@x> <b@x> <c@x>\r\n"
        );
        // No usable Message-ID: nothing to thread by, and nothing injected.
        assert_eq!(threading_headers(&original("", raw)), "");
        assert_eq!(threading_headers(&original("<c@x>\r\nBcc: eve@x", raw)), "");
    }

    #[test]
    fn messages_are_read_into_text_and_attachments() {
        let raw = b"From: Bob <bob@other.test>\r\nTo: jane@direct.test\r\nSubject: Hi\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
Hello <Jane>\r\n--b1\r\nContent-Type: text/html; name=\"x.html\"\r\nContent-Disposition: attachment; \
filename=\"evil.html\"\r\nContent-Transfer-Encoding: base64\r\n\r\nPHNjcmlwdD4=\r\n--b1--\r\n";
        let read = read_entity(raw);
        assert_eq!(read.from, "Bob <bob@other.test>");
        assert_eq!(read.text.as_deref(), Some("Hello <Jane>"));
        assert_eq!(read.leaves.len(), 2);
        assert_eq!(read.text_leaf, Some(0));
        assert_eq!(read.leaves[1].name(1), "evil.html");
        assert!(read.leaves[1].attachment);
        assert_eq!(read.leaves[1].data, b"<script>");
        let (bytes, ty, name) = part_of(raw, 1, None).unwrap();
        assert_eq!(
            (bytes.as_slice(), ty.as_str(), name.as_str()),
            (&b"<script>"[..], "text/html", "evil.html")
        );
        assert!(part_of(raw, 2, None).is_none());
    }

    #[test]
    fn built_messages_read_back() {
        let files = vec![(
            "a.pdf".to_string(),
            "application/pdf".to_string(),
            b"%PDF-1.4 \x00\xff".to_vec(),
        )];
        let entity = build_entity("Dear Bob,\nsee attached.\n", &files);
        let read = read_entity(&entity);
        assert_eq!(read.text.as_deref(), Some("Dear Bob,\r\nsee attached.\r\n"));
        assert_eq!(read.leaves[1].data, b"%PDF-1.4 \x00\xff");
        let plain = build_entity("Zoë\n", &[]);
        assert_eq!(read_entity(&plain).text.as_deref(), Some("Zoë\r\n"));
    }

    #[test]
    fn names_and_types_are_made_plain() {
        assert_eq!(plain_name("C:\\x\\Report (1).pdf", "f"), "Report__1_.pdf");
        assert_eq!(plain_name("../..", "f"), "f");
        assert_eq!(plain_name("a\"b\r\n.txt", "f"), "a_b__.txt");
        assert_eq!(plain_type(Some("application/pdf")), "application/pdf");
        assert_eq!(
            plain_type(Some("text/html\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(plain_type(None), "application/octet-stream");
    }

    #[test]
    fn xdm_packages_unpack_with_their_documents() {
        let files = vec![
            (
                "ccd.xml".to_string(),
                "text/xml".to_string(),
                b"<ClinicalDocument/>".to_vec(),
            ),
            (
                "ccd.xml".to_string(),
                "text/xml".to_string(),
                b"<x/>".to_vec(),
            ),
        ];
        let zip = pack_xdm(
            "jane@direct.test",
            &["bob@other.test".to_string()],
            "T & <t>",
            &files,
        )
        .unwrap();
        assert!(xdm::is_xdm(&zip));
        let package = xdm::unpack(&zip, xdm::Limits::default()).unwrap();
        let docs = documents(&package);
        assert_eq!(docs.len(), 2);
        let metadata = String::from_utf8(package.submission_sets[0].metadata.clone()).unwrap();
        assert!(metadata.contains("T &amp; &lt;t&gt;"), "{metadata}");
        assert!(metadata.contains("^^Internet^bob@other.test"));
        assert!(
            roxmltree::Document::parse(&metadata).is_ok(),
            "well-formed metadata"
        );
    }

    #[test]
    fn the_directory_filters_on_every_term() {
        let e = Entry {
            address: "jane@direct.test".into(),
            name: "Jane Doe".into(),
            organization: "Hope Clinic".into(),
            specialty: "Family therapy".into(),
            city: "Hartford".into(),
        };
        let t = |f: &'static str, v: &str| (f, v.to_string());
        assert!(matches(&e, &[t("name", "jane"), t("city", "HART")]));
        assert!(matches(&e, &[t("name", "direct.test")]));
        assert!(!matches(&e, &[t("specialty", "surgery")]));
        assert!(matches(&e, &[t("organization", "")]));
    }
}
