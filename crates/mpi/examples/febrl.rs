//! Accuracy and speed on the FEBRL sets: FEBRL4 linkage (dataset4a x dataset4b) and FEBRL3 deduplication
//! (dataset3), read from `../shared/data/febrl`. `cargo run -p mpi --release --example febrl`

#[path = "../tests/common/febrl.rs"]
mod febrl;

fn report(name: &str, run: &febrl::Run) {
    let (a, b) = (&run.accuracy, &run.blocking);
    println!(
        "{name}: precision {:.4} recall {:.4} F1 {:.4} | pair completeness {:.4} reduction ratio {:.5} | \
         pairs compared {} of {} | links {} ({} true of {}) | {:.3} s",
        a.precision, a.recall, a.f1, b.pair_completeness, b.reduction_ratio, b.candidate_pairs, b.all_pairs,
        a.predicted, a.true_positives, a.true_pairs, run.seconds
    );
    if std::env::var_os("MPI_SHOW_MODEL").is_some() {
        println!("prior {:.6}", run.model.prior);
        for f in &run.model.fields {
            let m: Vec<String> = f.m.iter().map(|x| format!("{x:.4}")).collect();
            let u: Vec<String> = f.u.iter().map(|x| format!("{x:.6}")).collect();
            println!("  {:?}: m [{}] u [{}]", f.field, m.join(", "), u.join(", "));
        }
    }
}

fn main() {
    let (Some(a), Some(b), Some(d3)) = (
        febrl::load("dataset4a.csv"),
        febrl::load("dataset4b.csv"),
        febrl::load("dataset3.csv"),
    ) else {
        eprintln!("FEBRL data not found under {}", febrl::dir().display());
        std::process::exit(1);
    };
    report(
        "FEBRL4 linkage (5,000 x 5,000)",
        &febrl::run_linkage(&a, &b),
    );
    report("FEBRL3 deduplication (5,000)", &febrl::run_dedup(&d3));
}
