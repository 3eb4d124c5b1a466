//! Consent and behavioral-health privacy, the pure core: what a resource is labelled on intake,
//! what a patient consented to, and whether a disclosure may happen and with what obligations.
//! No I/O: the caller reads and stores, and `now` is always a parameter.
//!
//! - [`labels`]: the `meta.security` a resource is stored with: a confidentiality code (N, R, V)
//!   and HL7 v3 ActCode sensitivity codes (PSY, MH, BH, ETH, SUD, HIV, STD, SDV, SEX, GDIS,
//!   PSYTHPN) from every Coding it carries (the rule table `rules/labels.toml`), from its source
//!   (the sending practitioner's licence type, a psychiatric facility) and from the labels the
//!   source sent (kept; the confidentiality is never lowered). Derived resources take the union.
//! - [`consent`]: FHIR Consent (scope `patient-privacy`) parsed into the exchange-wide opt-out or
//!   opt-in choice, the psychiatric "informed" flag, patient-specific grants and restrictions, and
//!   42 CFR Part 2 consents. Every problem is reported with the element it is in
//!   ([`consent::ConsentError::path`]), ready for an OperationOutcome (422).
//! - [`policy`]: the policy as data (TOML) and [`policy::Policy::decide`].
//! - [`redact`]: what a withheld resource leaves behind: references to it removed from what is
//!   disclosed.
//! - [`scenarios`]: the decision table (`tests/decision_table.txt`) as data, for the tests here and
//!   for end-to-end tests that run the same scenarios through the server.
//!
//! # The policy file
//!
//! ```toml
//! model = "opt-out"                 # or "opt-in": the choice of a patient who recorded none
//!
//! [notices]                         # texts that obligations attach, by name
//! part2 = "This record which has been disclosed to you is protected by ..."
//!
//! [[category]]                      # a category without `when` holds every resource
//! name = "normal"
//! [[category.rule]]
//! purposes = ["TREAT", "HPAYMT", "HOPERAT"]
//! relationship = true               # a treatment relationship is needed (default false)
//! [[category.rule]]
//! purposes = ["PUBHLTH"]
//! honours = "none"                  # all (default) | opt-out | none: which patient choices bind
//! [[category.rule]]
//! purposes = ["ETREAT"]
//! honours = "opt-out"
//! obligations = ["flag-break-glass", "notify-patient", "notify-source"]
//!
//! [[category]]
//! name = "part2"
//! [category.when]                   # any one of: labels, confidentiality, licences,
//!                                   # psychiatric_facility = true
//! labels = ["SUD", "ETH"]
//! [[category.rule]]
//! purposes = ["TREAT", "HPAYMT", "HOPERAT"]
//! requires = ["part2-consent"]      # informed | grant | family | part2-consent | emergency
//! obligations = ["add-label NORDSCLCD", "attach-notice part2"]
//! [[category.rule]]
//! purposes = ["PUBHLTH"]
//! effect = "deny"                   # a purpose no rule names is denied too
//!
//! [[reportable]]                    # what the law routes to public health: kept through an
//! name = "immunizations"            # opt-out (at intake and by the purge) for PUBHLTH only
//! resource_types = ["Immunization"]
//! [[reportable]]
//! name = "reportable-conditions"
//! resource_types = ["Condition", "Observation"]
//! [[reportable.codes]]              # optional; any Coding the resource carries may match
//! system = "http://hl7.org/fhir/sid/icd-10-cm"
//! prefixes = ["A15", "B20"]         # and/or codes = [...]
//! ```
//!
//! A resource is in the base category and in every category whose `when` matches it; for each, the
//! rule naming the request's purpose applies (one per purpose; none is a denial); the resource is disclosed only when every one
//! permits, with all their obligations. Deny overrides: a patient's restriction that covers the
//! access denies it wherever the rule honours `all`, whatever grant also covers it. The shipped
//! Connecticut policy, `policy/connecticut.toml`, documents every key and is the default
//! ([`policy::Policy::connecticut`]).
//!
//! # Use
//!
//! ```
//! use privacy::codes::{Licence, Purpose};
//! use privacy::consent::{Consent, Recipient};
//! use privacy::labels::{self, SourceFacts};
//! use privacy::policy::{Data, Policy, Request};
//! use serde_json::json;
//! use time::macros::datetime;
//!
//! // Intake: label what an LMFT sends, and store it with the labels.
//! let mut note = json!({"resourceType": "Observation", "id": "o1", "status": "final",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "34864-9"}]},
//!     "subject": {"reference": "Patient/p1"}});
//! let source = SourceFacts { licence: Some(Licence::Lmft), psychiatric_facility: false };
//! let labels = labels::label(&note, &source);
//! labels::apply(&mut note, &labels, &source);
//!
//! // The patient's written consent naming org-a.
//! let consent = Consent::parse(&json!({"resourceType": "Consent", "id": "c1", "status": "active",
//!     "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
//!                           "code": "patient-privacy"}]},
//!     "patient": {"reference": "Patient/p1"}, "dateTime": "2026-01-10T09:00:00Z",
//!     "provision": {"type": "permit", "actor": [{"reference": {"reference": "Organization/org-a"}}]}}))
//!     .map_err(|e| format!("{e:?}"))?;
//!
//! // Query: org-a asks for treatment.
//! let request = Request {
//!     purpose: Purpose::Treat,
//!     recipient: Recipient { organization: Some("org-a".into()), ..Recipient::default() },
//!     relationship: true,
//!     emergency_declared: false,
//! };
//! let policy = Policy::connecticut();
//! let now = datetime!(2026-06-01 12:00 UTC);
//! let decision = policy.decide(&request, &Data::from_resource(&note, "p1"), &[consent], now);
//! assert!(decision.permit);
//! assert_eq!(decision.consents_used, ["c1"]);
//! let no_consent = policy.decide(&request, &Data::from_resource(&note, "p1"), &[], now);
//! assert!(!no_consent.permit);
//! # Ok::<(), String>(())
//! ```

pub mod codes;
pub mod consent;
pub mod labels;
pub mod policy;
pub mod redact;
pub mod scenarios;
