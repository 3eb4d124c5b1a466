//! Runs the decision table `tests/decision_table.txt` (its header documents the columns) against
//! the shipped Connecticut policy through `privacy::scenarios`: each scenario's data is labelled on
//! intake, its consents are parsed from FHIR Consent resources (and written back and read again as
//! the portal would), and the decision is compared with the expected outcome, reason codes,
//! obligations and consents used. Every failing row is reported at once.

use privacy::codes::{Licence, Purpose};
use privacy::consent::Consent;
use privacy::policy::{Data, Model, Policy};
use privacy::scenarios::{self, Scenario, DECISION_TABLE};

fn scenarios() -> Vec<Scenario> {
    scenarios::parse(DECISION_TABLE).unwrap_or_else(|errors| panic!("{}", errors.join("\n")))
}

#[test]
fn decision_table() {
    let scenarios = scenarios();
    assert!(
        scenarios.len() >= 60,
        "at least 60 scenarios, found {}",
        scenarios.len()
    );
    let policy = Policy::connecticut();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        for consent in &scenario.consents {
            let parsed =
                Consent::parse(consent).unwrap_or_else(|e| panic!("{}: {e:?}", scenario.name));
            let written = parsed
                .to_fhir()
                .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
            assert_eq!(
                Consent::parse(&written).as_ref(),
                Ok(&parsed),
                "{}",
                scenario.name
            );
        }
        let decision = scenario
            .run(&policy)
            .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        // The cheap reading of stored JSON text sees the same facts.
        let mut stored = scenario.resource.clone();
        let labels = privacy::labels::label(&stored, &scenario.source);
        privacy::labels::apply(&mut stored, &labels, &scenario.source);
        let mut from_text = Data::from_json_text(&stored.to_string(), scenarios::PATIENT, &policy)
            .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        from_text.source_participant = scenario.source_participant.clone();
        let mut expected = scenario.data();
        if !policy.needs_family(&expected.labels, &expected.source) {
            expected.family.clear();
        }
        assert_eq!(from_text, expected, "{}", scenario.name);
        for (i, reason) in decision.reasons.iter().enumerate() {
            assert!(
                !decision.reasons[..i].contains(reason),
                "{}: {reason:?} repeated",
                scenario.name
            );
        }
        let problems = scenario.check(&decision);
        if !problems.is_empty() {
            failures.push(format!(
                "line {} {}: {}",
                scenario.line,
                scenario.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}

/// The table covers every purpose of use, every kind of source, every kind of consent, both models,
/// timing and both answers.
#[test]
fn decision_table_covers_the_dimensions() {
    let scenarios = scenarios();
    let any = |f: &dyn Fn(&Scenario) -> bool| scenarios.iter().any(f);
    for purpose in Purpose::ALL {
        assert!(any(&|s| s.request.purpose == *purpose), "{purpose}");
    }
    for licence in [
        Licence::Lmft,
        Licence::Psychiatrist,
        Licence::Lcsw,
        Licence::Physician,
    ] {
        assert!(any(&|s| s.source.licence == Some(licence)), "{licence}");
    }
    assert!(any(&|s| s.source.psychiatric_facility));
    assert!(any(&|s| !s.data().family.is_empty()));
    assert!(any(&|s| s.source_participant.is_some()));
    for label in ["SUD", "PSYTHPN", "HIV", "SDV"] {
        assert!(
            any(&|s| s
                .data()
                .labels
                .sensitivity
                .iter()
                .any(|l| l.code() == label)),
            "{label}"
        );
    }
    for needle in [
        "optout(",
        "optin(",
        "grant(",
        "deny(",
        "part2(",
        "status=inactive",
        "until=",
        "from=",
        "informed=yes",
        "patient=p2",
    ] {
        assert!(any(&|s| s.row.contains(needle)), "{needle}");
    }
    assert!(any(&|s| s.request.emergency_declared));
    assert!(any(&|s| s.model == Model::OptIn));
    assert!(any(&|s| !s.request.relationship) && any(&|s| s.request.relationship));
    assert!(any(&|s| s.expect.permit) && any(&|s| !s.expect.permit));
}
