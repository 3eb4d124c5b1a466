//! The bodies of the `privacy` crate's fuzz targets, in one file that both the targets
//! (`fuzz/fuzz_targets/privacy_*.rs`) and the stable-toolchain test `crates/privacy/tests/fuzz_seeds.rs`
//! include with `#[path]`, so that the seeds run through exactly what the fuzzer runs.
//! Each body must not panic, whatever bytes it is given; the asserts are invariants the crate promises.
#![allow(dead_code)]

use privacy::codes::{Licence, Purpose};
use privacy::consent::{Access, Consent, Recipient};
use privacy::labels::{self, Labels, ResourceLabels, SourceFacts};
use privacy::policy::{self, Data, Policy, Request};
use serde_json::Value;
use time::OffsetDateTime;

/// A fixed `now`: the bodies are deterministic.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a valid instant")
}

fn recipient() -> Recipient {
    Recipient {
        organization: Some("org-a".into()),
        practitioner: Some("pr-1".into()),
        patient: None,
    }
}

/// Bytes as JSON, as a FHIR Consent: every refusal names at least one element; every Consent that
/// parses is written back (`to_fhir`) and reads back equal, and can be evaluated.
pub fn consent(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match Consent::parse(&json) {
        Ok(consent) => {
            if let Ok(written) = consent.to_fhir() {
                let again = Consent::parse(&written);
                assert_eq!(again.as_ref(), Ok(&consent), "written back as {written}");
            }
            let _ = consent.in_force(now());
            let _ = consent.choice();
            let recipient = recipient();
            let labels = Labels::default();
            for purpose in Purpose::ALL {
                let access = Access {
                    purpose: *purpose,
                    recipient: &recipient,
                    relationship: true,
                    labels: &labels,
                    reference: Some("Observation/o1"),
                    now: now(),
                };
                let _ = consent.evaluate(&access);
            }
        }
        Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
    }
}

/// Text as a policy file; a policy that loads decides a labelled resource for every purpose.
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_toml(text) {
        Ok(policy) => {
            let mut data = Data {
                patient: "p1".into(),
                reference: Some("Observation/o1".into()),
                labels: Labels::of(privacy::codes::Sensitivity::ALL.iter().copied()),
                source: SourceFacts {
                    licence: Licence::ALL.first().copied(),
                    psychiatric_facility: true,
                },
                family: vec!["p2".into()],
                source_participant: None,
            };
            for with_labels in [true, false] {
                if !with_labels {
                    data.labels = Labels::default();
                    data.source = SourceFacts::default();
                }
                for purpose in Purpose::ALL {
                    for emergency_declared in [false, true] {
                        let request = Request {
                            purpose: *purpose,
                            recipient: recipient(),
                            relationship: true,
                            emergency_declared,
                        };
                        let _ = policy.decide(&request, &data, &[], now());
                    }
                }
            }
        }
        Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
    }
}

/// Bytes as JSON, as a resource arriving from a source: labelled, the labels written into it and
/// read back, and labelled again: labels are never lowered.
pub fn label(data: &[u8]) {
    let Ok(resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = labels::codings(&resource);
    let _ = labels::derived_from(&resource);
    let _ = policy::family_members(&resource, "p1");
    let _ = Data::from_resource(&resource, "p1");
    let sent = SourceFacts::from_resource(&resource);
    let sources = [
        sent,
        SourceFacts::default(),
        SourceFacts {
            licence: Licence::ALL.last().copied(),
            psychiatric_facility: true,
        },
    ];
    for source in sources {
        let labels = labels::label(&resource, &source);
        let mut stored = resource.clone();
        labels::apply(&mut stored, &labels, &source);
        if stored.is_object() {
            let read = ResourceLabels::from_resource(&stored);
            assert_eq!(
                read.labels.confidentiality, labels.confidentiality,
                "{stored}"
            );
            assert_eq!(read.labels.sensitivity, labels.sensitivity, "{stored}");
            let again = labels::label(&stored, &source);
            assert!(again.confidentiality >= labels.confidentiality, "{stored}");
            assert!(
                again.sensitivity.is_superset(&labels.sensitivity),
                "{stored}"
            );
            let _ = labels::derived(&again, &[labels.clone(), Labels::default()]);
        }
    }
}
