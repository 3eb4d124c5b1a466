//! The compliance report on a generated roster of 100,000 licensees in several states of progress:
//! read from the board's CSV, matched to participants, evaluated, and checked line by line against
//! Connecticut's rules worked out independently by the generator; the CSV export reads back.

mod common;

use onboard::compliance::{report, to_csv};
use onboard::mandate::{Mandate, Status};
use onboard::roster::{self, Matched, Matcher};
use time::macros::date;

#[test]
fn a_hundred_thousand_licensees_get_the_statuses_the_rules_give() {
    let as_of = date!(2023 - 09 - 01);
    let g = common::generate(100_000, as_of, 0x5eed);
    let (licensees, errors) = roster::read(&g.csv, "CT").unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(licensees.len(), 100_000);
    let matcher = Matcher::new(&g.candidates);
    let matched: Vec<Matched> = licensees.iter().map(|l| matcher.find(l)).collect();
    let expected_matches = g.facts.iter().filter(|f| f.applied.is_some()).count();
    let found = matched
        .iter()
        .filter(|m| matches!(m, Matched::One { .. }))
        .count();
    assert_eq!(
        found, expected_matches,
        "every applicant is found by licence"
    );

    let mandate = Mandate::connecticut();
    let r = report(&mandate, &licensees, &matched, &g.facts, as_of);
    let active: Vec<usize> = (0..g.active.len()).filter(|i| g.active[*i]).collect();
    assert_eq!(r.lines.len(), active.len());
    assert_eq!(r.inactive, g.active.len() - active.len());
    let mut states = std::collections::BTreeMap::new();
    for (line, i) in r.lines.iter().zip(&active) {
        let (code, overdue) = g.expected[*i];
        assert_eq!(line.status.code(), code, "line {}", line.licensee.line);
        if let Status::NotYetCompliant { overdue: o, .. } = line.status {
            assert_eq!(o, overdue, "line {}", line.licensee.line);
        }
        *states.entry(code).or_insert(0) += 1;
    }
    // The generator covers every state.
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(
        r.totals.overdue > 0 && r.totals.pending == 0,
        "after both deadlines nobody is merely pending"
    );
    assert_eq!(r.totals.total(), active.len());
    assert_eq!(
        r.by_type.values().map(|c| c.total()).sum::<usize>(),
        active.len()
    );
    assert_eq!(
        r.by_county.values().map(|c| c.total()).sum::<usize>(),
        active.len()
    );

    let text = to_csv(&r);
    let rows = onboard::csv::read(&text).unwrap();
    assert_eq!(rows.len(), active.len() + 1);
    for (row, line) in rows[1..].iter().zip(&r.lines) {
        assert_eq!(row.cells[1], line.licensee.licence.number);
        assert_eq!(row.cells[6], line.status.code());
    }
}
