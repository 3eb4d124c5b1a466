//! Break-the-glass notices to the participants whose data was disclosed in an emergency.
//!
//! When a request for emergency treatment (`ETREAT`) lets data leave without the usual grounds,
//! every participant that sent some of that data (the sender intake recorded,
//! `privacy::labels::source_participant`) is told, once per request and patient: the exchange
//! writes a FHIR `Communication` addressed to the source's Organization (`recipient`), about the
//! patient (`subject`), with the requester (`about`), the time (`sent`), the purpose
//! (`reasonCode` ETREAT), the request id (`identifier`), and the types and counts of what was
//! disclosed (`payload`); no clinical content. It is tagged and categorised [`NOTICE_SYSTEM`]
//! `break-the-glass`, so a hospital's integration finds its notices with
//! `GET Communication?recipient=Organization/[own id]&category=[NOTICE_SYSTEM]|break-the-glass`
//! (or a subscription on the same criteria). The decision point shows a notice to its addressee,
//! the exchange's operators and tools, and nobody else ([`addressee`]). The requester's own data
//! (it sent it) raises no notice.
//!
//! Once the notices are written, the repository also hands each to its [`Outlet`], if the server
//! gave it one (`Repository::send_notices_to`): `nutmeg serve` with a Direct `notice_address`
//! sends the same words as a Direct message to the source's Direct addresses. The Communication
//! is the record; the message is a courtesy that a crash between the two can lose.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The exchange's code system of notices: `meta.tag` and `category` of the notices it writes.
pub const NOTICE_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/notice";
/// The code of a break-the-glass notice.
pub const BREAK_THE_GLASS: &str = "break-the-glass";
/// The identifier system of the request a notice is about (the X-Request-Id, as in the audit trail).
pub const REQUEST_ID_SYSTEM: &str = "https://nutmeg.example/fhir/sid/request-id";

/// What one emergency request disclosed of one source's data about one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    /// The source participant told (its Organization id).
    pub source: String,
    pub patient: String,
    /// The requesting participant (Organization id), if any, and the client or user that asked.
    pub requester: Option<String>,
    pub agent: Option<String>,
    /// When the data was disclosed (milliseconds since the Unix epoch).
    pub at: i64,
    pub request_id: String,
    pub emergency_declared: bool,
    /// Resource type -> how many were disclosed.
    pub counts: BTreeMap<String, usize>,
}

/// Where the repository hands each break-the-glass notice after it is written, for a second
/// channel to the source (the HISP's Direct message, `Repository::send_notices_to`).
pub type Outlet = tokio::sync::mpsc::Sender<BreakGlass>;

/// The subject of a notice sent as a message: no patient data (it may travel in the clear).
pub const MESSAGE_SUBJECT: &str = "Emergency access to data you sent (break-the-glass)";

/// The `Communication` that tells the source of an emergency disclosure.
pub fn break_glass_communication(notice: &BreakGlass) -> Value {
    let at = fhir::search::datetime::format_instant(notice.at);
    let text = break_glass_text(notice);
    let tag = json!({
        "system": NOTICE_SYSTEM,
        "code": BREAK_THE_GLASS,
        "display": "Emergency access (break-the-glass) notice",
    });
    let mut communication = json!({
        "resourceType": "Communication",
        "meta": { "tag": [tag.clone()] },
        "identifier": [{ "system": REQUEST_ID_SYSTEM, "value": notice.request_id }],
        "status": "completed",
        "category": [{ "coding": [tag] }],
        "subject": { "reference": format!("Patient/{}", notice.patient) },
        "sent": at,
        "recipient": [{ "reference": format!("Organization/{}", notice.source) }],
        "sender": { "display": "nutmeg health information exchange" },
        "reasonCode": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "ETREAT",
            "display": "Emergency Treatment",
        }] }],
        "payload": [{ "contentString": text }],
    });
    if let Some(org) = &notice.requester {
        communication["about"] = json!([{ "reference": format!("Organization/{org}") }]);
    }
    communication
}

/// The words of a notice: who received which types of the source's data about which patient,
/// when, for what, and the request id to quote; no clinical content. The Communication's payload
/// and the body of the Direct message both.
pub fn break_glass_text(notice: &BreakGlass) -> String {
    let at = fhir::search::datetime::format_instant(notice.at);
    let what: Vec<String> = notice
        .counts
        .iter()
        .map(|(ty, n)| format!("{n} {ty}"))
        .collect();
    let who = match (&notice.requester, &notice.agent) {
        (Some(org), Some(agent)) => format!("Organization/{org} (client or user {agent})"),
        (Some(org), None) => format!("Organization/{org}"),
        (None, Some(agent)) => format!("user {agent}"),
        (None, None) => "an unnamed requester".to_string(),
    };
    let mut text = format!(
        "Emergency access (break-the-glass): {who} received data you sent about Patient/{} at {at} \
         for emergency treatment (ETREAT): {}.",
        notice.patient,
        what.join(", ")
    );
    if notice.emergency_declared {
        text.push_str(" A medical emergency was declared (42 CFR 2.51).");
    }
    text.push_str(&format!(
        " Request id {}. The exchange's privacy officer reviews every emergency access.",
        notice.request_id
    ));
    text
}

/// The participant (Organization id) a notice of the exchange is addressed to, when the stored
/// JSON is one (a `Communication` tagged [`NOTICE_SYSTEM`]); `Some(None)` for a notice that names
/// no Organization (shown to nobody but operators).
pub fn addressee(resource_type: &str, json: &str) -> Option<Option<String>> {
    if resource_type != "Communication" || !json.contains(NOTICE_SYSTEM) {
        return None;
    }
    let resource: Value = serde_json::from_str(json).ok()?;
    let tagged = resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["system"] == NOTICE_SYSTEM));
    if !tagged {
        return None;
    }
    let recipient = resource["recipient"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r["reference"].as_str())
        .and_then(|r| r.strip_prefix("Organization/"))
        .map(str::to_string);
    Some(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_names_who_when_and_how_much_without_content() {
        let notice = BreakGlass {
            source: "riverside".into(),
            patient: "p1".into(),
            requester: Some("er-hospital".into()),
            agent: Some("ehr-7".into()),
            at: 1_764_374_400_000,
            request_id: "req-9".into(),
            emergency_declared: false,
            counts: [("Condition".to_string(), 1), ("Observation".to_string(), 3)].into(),
        };
        let c = break_glass_communication(&notice);
        assert_eq!(c["recipient"][0]["reference"], "Organization/riverside");
        assert_eq!(c["subject"]["reference"], "Patient/p1");
        assert_eq!(c["about"][0]["reference"], "Organization/er-hospital");
        assert_eq!(c["identifier"][0]["value"], "req-9");
        let text = c["payload"][0]["contentString"].as_str().unwrap();
        assert!(text.contains("1 Condition, 3 Observation"), "{text}");
        assert!(text.contains("2025-11-29T00:00:00"), "{text}");
        assert!(!text.contains("42 CFR"), "{text}");
        let issues = fhir::validate::validate_resource(&c);
        assert!(issues.iter().all(|i| !i.is_error()), "{issues:?}");
        assert_eq!(
            addressee("Communication", &c.to_string()),
            Some(Some("riverside".to_string()))
        );
        assert_eq!(addressee("Observation", &c.to_string()), None);
        assert_eq!(
            addressee("Communication", r#"{"resourceType":"Communication"}"#),
            None
        );
    }
}
