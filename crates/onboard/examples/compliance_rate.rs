//! How long the compliance report and its CSV take for a roster of 100,000 licensees (issue 7's
//! target: at most 2 seconds), from the board's CSV text to the export, each stage timed:
//! `cargo run --release -p onboard --example compliance_rate [N]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use onboard::compliance::{months, over_time, report, svg_chart, to_csv};
use onboard::mandate::Mandate;
use onboard::roster::{self, Matcher};
use time::macros::date;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let as_of = date!(2023 - 09 - 01);
    let g = common::generate(n, as_of, 0x5eed);
    let mandate = Mandate::connecticut();
    for run in 1..=3 {
        let t = Instant::now();
        let (licensees, _) = roster::read(&g.csv, "CT").unwrap();
        let read = t.elapsed();
        let t = Instant::now();
        let matcher = Matcher::new(&g.candidates);
        let matched: Vec<_> = licensees.iter().map(|l| matcher.find(l)).collect();
        let matching = t.elapsed();
        let t = Instant::now();
        let r = report(&mandate, &licensees, &matched, &g.facts, as_of);
        let evaluated = t.elapsed();
        let t = Instant::now();
        let csv = to_csv(&r);
        let exported = t.elapsed();
        let t = Instant::now();
        let days = months(date!(2021 - 01 - 01), as_of);
        let svg = svg_chart(
            &over_time(&mandate, &licensees, &g.facts, &days),
            "Compliance",
        );
        let charted = t.elapsed();
        let total = read + matching + evaluated + exported;
        println!(
            "run {run}: {n} licensees: roster read {:.0} ms, matched {:.0} ms, report {:.0} ms, CSV {:.0} ms ({} KB); \
             report and CSV from the roster {:.0} ms; chart of {} months {:.0} ms ({} bytes)",
            read.as_secs_f64() * 1e3,
            matching.as_secs_f64() * 1e3,
            evaluated.as_secs_f64() * 1e3,
            exported.as_secs_f64() * 1e3,
            csv.len() / 1024,
            total.as_secs_f64() * 1e3,
            days.len(),
            charted.as_secs_f64() * 1e3,
            svg.len()
        );
    }
}
