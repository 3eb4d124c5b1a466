//! Accuracy on the FEBRL sets, against floors just below what the `febrl` example measured (FEBRL4 F1 0.9979,
//! FEBRL3 F1 0.9974; see BENCHMARKS.md). The pipeline is deterministic, so a drop below a floor is a change in
//! behaviour, not noise.
//! Skipped, with a message, when `../shared/data/febrl` is absent.

mod common;

use common::febrl;

#[test]
fn febrl4_linkage_f1_stays_above_its_floor() {
    let (Some(a), Some(b)) = (febrl::load("dataset4a.csv"), febrl::load("dataset4b.csv")) else {
        eprintln!(
            "skipped: FEBRL data not found under {}",
            febrl::dir().display()
        );
        return;
    };
    assert_eq!(febrl::link_truth(&a, &b).len(), 5000);
    let run = febrl::run_linkage(&a, &b);
    assert!(
        run.blocking.pair_completeness >= 0.9995,
        "pair completeness {}",
        run.blocking.pair_completeness
    );
    assert!(
        run.accuracy.f1 >= 0.9975,
        "F1 {} (precision {}, recall {})",
        run.accuracy.f1,
        run.accuracy.precision,
        run.accuracy.recall
    );
}

#[test]
fn febrl3_deduplication_f1_stays_above_its_floor() {
    let Some(set) = febrl::load("dataset3.csv") else {
        eprintln!(
            "skipped: FEBRL data not found under {}",
            febrl::dir().display()
        );
        return;
    };
    assert_eq!(febrl::dedup_truth(&set).len(), 6538);
    let run = febrl::run_dedup(&set);
    assert!(
        run.blocking.pair_completeness >= 0.995,
        "pair completeness {}",
        run.blocking.pair_completeness
    );
    assert!(
        run.accuracy.f1 >= 0.997,
        "F1 {} (precision {}, recall {})",
        run.accuracy.f1,
        run.accuracy.precision,
        run.accuracy.recall
    );
}
