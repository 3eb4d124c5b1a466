//! Message disposition notifications as the Direct Implementation Guide for Delivery Notification
//! uses them (RFC 3798): building the "processed", "dispatched" and "failed" notifications a HISP
//! sends, reading the ones it receives, and the questions a HISP asks of a message first (did the
//! sender ask for final-destination delivery; is this itself a notification, which must never be
//! answered with one).
//!
//! [`build`] returns the notification's MIME entity (`multipart/report;
//! report-type=disposition-notification`); it travels like any other content, signed and
//! encrypted by [`crate::smime::seal`], with [`subject`] as its subject and no request for a
//! notification of its own.

use crate::mime::{self, ContentType, Entity, MimeError};

/// Why a notification could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdnError {
    /// The entity's MIME is broken.
    #[error("MIME: {0}")]
    Mime(#[from] MimeError),
    /// Not a `multipart/report; report-type=disposition-notification`.
    #[error("not a disposition notification")]
    NotNotification,
    /// No `message/disposition-notification` part, or it lacks a field the RFC requires.
    #[error("the notification has no {0} field")]
    Missing(&'static str),
    /// A `Disposition` field that does not read.
    #[error("unreadable Disposition field")]
    BadDisposition,
    /// A value to write contains a line break or control character.
    #[error("the {0} value has a control character")]
    BadValue(&'static str),
}

/// What happened to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Accepted by the receiving HISP (decrypted and trusted).
    Processed,
    /// Delivered to the recipient's inbox or opened there (final destination).
    Dispatched,
    /// Could not be delivered or processed.
    Failed,
    /// Another RFC 3798 disposition type (`displayed`, `deleted`), lower case.
    Other(String),
}

impl Disposition {
    fn as_str(&self) -> &str {
        match self {
            Disposition::Processed => "processed",
            Disposition::Dispatched => "dispatched",
            Disposition::Failed => "failed",
            Disposition::Other(other) => other,
        }
    }

    fn parse(value: &str) -> Disposition {
        match value.trim().to_ascii_lowercase().as_str() {
            "processed" => Disposition::Processed,
            "dispatched" => Disposition::Dispatched,
            "failed" => Disposition::Failed,
            other => Disposition::Other(other.to_owned()),
        }
    }
}

/// A notification to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification<'a> {
    /// What happened.
    pub disposition: Disposition,
    /// The `Message-ID` of the message this is about, with its angle brackets.
    pub original_message_id: &'a str,
    /// The recipient whose disposition this is (the Direct address at this HISP).
    pub final_recipient: &'a str,
    /// The domain of the HISP reporting (for `Reporting-UA`).
    pub reporting_domain: &'a str,
    /// Whether the sender asked for final-destination delivery: a `dispatched` notification then
    /// carries `X-DIRECT-FINAL-DESTINATION-DELIVERY`.
    pub final_destination_delivery: bool,
    /// For `failed`: why, in words for the sender (never patient data).
    pub failure: Option<&'a str>,
}

/// The subject for a notification about a message with `original_subject`.
pub fn subject(disposition: &Disposition, original_subject: &str) -> String {
    let label = match disposition {
        Disposition::Processed => "Processed",
        Disposition::Dispatched => "Dispatched",
        Disposition::Failed => "Failed",
        Disposition::Other(_) => "Disposition notification",
    };
    let original: String = original_subject
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    format!("{label}: {original}")
}

fn checked<'v>(name: &'static str, value: &'v str) -> Result<&'v str, MdnError> {
    if mime::is_safe_header_value(value) {
        Ok(value)
    } else {
        Err(MdnError::BadValue(name))
    }
}

/// Builds the notification's MIME entity: a human-readable part and the
/// `message/disposition-notification` part.
pub fn build(n: &Notification<'_>) -> Result<Vec<u8>, MdnError> {
    let id = checked("Original-Message-ID", n.original_message_id)?;
    let recipient = checked("Final-Recipient", n.final_recipient)?;
    let domain = checked("Reporting-UA", n.reporting_domain)?;
    let failure = n.failure.map(|f| checked("Failure", f)).transpose()?;
    let text = match n.disposition {
        Disposition::Processed => {
            "Your message was received and processed by the recipient's HISP."
        }
        Disposition::Dispatched => "Your message was delivered to the recipient.",
        Disposition::Failed => "Your message could not be delivered to the recipient.",
        Disposition::Other(_) => "A disposition notification about your message.",
    };
    let boundary = mime::new_boundary();
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(format!("Reporting-UA: {domain}; nutmeg\r\n").as_bytes());
    out.extend_from_slice(format!("Final-Recipient: rfc822;{recipient}\r\n").as_bytes());
    out.extend_from_slice(format!("Original-Message-ID: {id}\r\n").as_bytes());
    out.extend_from_slice(
        format!(
            "Disposition: automatic-action/MDN-sent-automatically;{}\r\n",
            n.disposition.as_str()
        )
        .as_bytes(),
    );
    if n.disposition == Disposition::Dispatched && n.final_destination_delivery {
        out.extend_from_slice(b"X-DIRECT-FINAL-DESTINATION-DELIVERY: \r\n");
    }
    if let Some(failure) = failure {
        out.extend_from_slice(format!("Failure: {failure}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// A notification read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What happened.
    pub disposition: Disposition,
    /// `automatic-action/MDN-sent-automatically` and the like, lower case.
    pub action_mode: String,
    /// The message this is about.
    pub original_message_id: Option<String>,
    /// The recipient, without an `rfc822;` address type.
    pub final_recipient: String,
    /// The `Reporting-UA` field as written.
    pub reporting_ua: Option<String>,
    /// Whether the notification says it answers a final-destination delivery request.
    pub final_destination_delivery: bool,
    /// The `Failure` or `Error` text, if any.
    pub failure: Option<String>,
}

fn is_report(ct: &ContentType, report_type: &str) -> bool {
    ct.is("multipart/report")
        && ct
            .param("report-type")
            .is_some_and(|t| t.eq_ignore_ascii_case(report_type))
}

/// Whether `entity` is a disposition or delivery status notification: something a HISP never
/// answers with a notification of its own.
pub fn is_notification(entity: &Entity<'_>) -> bool {
    let ct = entity.content_type();
    is_report(&ct, "disposition-notification") || is_report(&ct, "delivery-status")
}

/// Whether the message's headers ask for final-destination delivery notification
/// (`Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true`).
pub fn wants_final_delivery(message: &Entity<'_>) -> bool {
    message
        .headers()
        .iter()
        .filter(|h| {
            h.name
                .eq_ignore_ascii_case("Disposition-Notification-Options")
        })
        .flat_map(|h| h.value.split(';'))
        .filter_map(|option| option.split_once('='))
        .any(|(name, value)| {
            name.trim()
                .eq_ignore_ascii_case("X-DIRECT-FINAL-DESTINATION-DELIVERY")
                && value
                    .split(',')
                    .map(str::trim)
                    .any(|v| v.eq_ignore_ascii_case("true"))
        })
}

/// Reads a disposition notification (the decrypted, verified content of a message).
pub fn parse(raw: &[u8]) -> Result<Report, MdnError> {
    let entity = Entity::parse(raw)?;
    if !is_report(&entity.content_type(), "disposition-notification") {
        return Err(MdnError::NotNotification);
    }
    let parts = entity.parts()?;
    let part = parts
        .iter()
        .find(|p| p.content_type().is("message/disposition-notification"))
        .ok_or(MdnError::Missing("message/disposition-notification"))?;
    // The fields are the part's body; some senders (the reference implementation among them)
    // leave out the blank line, so they read as the part's own header fields.
    let body = part.decoded_body()?;
    let from_body;
    let fields: &[mime::Header] = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        from_body = Entity::parse(&body)?;
        from_body.headers()
    } else {
        part.headers()
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
    };
    let disposition = field("Disposition").ok_or(MdnError::Missing("Disposition"))?;
    let (mode, kind) = disposition
        .split_once(';')
        .ok_or(MdnError::BadDisposition)?;
    // `processed/error` carries modifiers after a slash.
    let kind = kind.split('/').next().unwrap_or("").trim();
    if kind.is_empty() {
        return Err(MdnError::BadDisposition);
    }
    let final_recipient = field("Final-Recipient").ok_or(MdnError::Missing("Final-Recipient"))?;
    let final_recipient = match final_recipient.split_once(';') {
        Some((_, address)) => address.trim().to_owned(),
        None => final_recipient.trim().to_owned(),
    };
    Ok(Report {
        disposition: Disposition::parse(kind),
        action_mode: mode.trim().to_ascii_lowercase(),
        original_message_id: field("Original-Message-ID"),
        final_recipient,
        reporting_ua: field("Reporting-UA"),
        final_destination_delivery: field("X-DIRECT-FINAL-DESTINATION-DELIVERY").is_some(),
        failure: field("Failure").or_else(|| field("Error")),
    })
}
