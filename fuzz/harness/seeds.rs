//! The fuzz targets' inputs as plain tests, for the crates' stable-toolchain tests
//! (`crates/*/tests/fuzz_seeds.rs` include this file with `#[path]`): every committed seed
//! (`fuzz/seeds/<target>/`) and every input that once crashed a target (`fuzz/regressions/<target>/`)
//! through the target's body, then a quick randomized smoke run: the seeds mutated byte-wise by a seeded
//! generator, so that a machine without a nightly toolchain and cargo-fuzz still tries inputs no one wrote.
#![allow(dead_code)]

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every seed and regression of a target, sorted by path.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("read input");
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

/// The public samples beside the project (`../shared/data`, when it is there) that suit a target:
/// read at test time, never copied into the repository.
pub fn public_samples(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let (dir, suffix) = match target {
        "direct_mime" | "direct_mdn" => ("direct/ri-agent/org/nhindirect/stagent", ".txt"),
        "direct_xdm" => ("direct/ett", ".zip"),
        "direct_trust" => ("direct/ri-agent/certs", ".der"),
        "privacy_consent" => ("fhir-r4/examples", ".json"),
        _ => return Vec::new(),
    };
    let Ok(entries) = std::fs::read_dir(shared.join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(suffix) && (target != "privacy_consent" || name.starts_with("Consent-"))
        })
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    out.sort();
    out
}

/// Runs every seed and regression, and the public samples that suit the target, through `body`,
/// each within two seconds.
pub fn run_seeds(target: &str, body: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    let inputs: Vec<_> = inputs.into_iter().chain(public_samples(target)).collect();
    for (path, bytes) in &inputs {
        let start = Instant::now();
        body(bytes);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{} took {took:?}",
            path.display()
        );
    }
}

/// Runs `iterations` mutants of the seeds through `body` (deterministic for a given `seed`). A mutant
/// that panics is written to the temporary directory, named in the failure, for `fuzz/regressions/`.
pub fn smoke(target: &str, body: fn(&[u8]), seed: u64, iterations: usize, tokens: &[&[u8]]) {
    let inputs: Vec<Vec<u8>> = inputs(target)
        .into_iter()
        .chain(public_samples(target))
        .map(|(_, b)| b)
        .collect();
    assert!(!inputs.is_empty(), "no seeds for {target}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..iterations {
        let mut data = inputs[rng.usize(..inputs.len())].clone();
        for _ in 0..rng.usize(1..=8) {
            mutate(&mut rng, &mut data, &inputs, tokens);
        }
        if panic::catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            let path = std::env::temp_dir().join(format!("nutmeg-fuzz-{target}-{seed}-{i}.bin"));
            std::fs::write(&path, &data).expect("write the crashing input");
            panic!(
                "{target}: mutant {i} panicked; input written to {}",
                path.display()
            );
        }
    }
}

/// One mutation, libFuzzer style: a bit flipped, a byte set, inserted or removed, a range removed
/// or duplicated, a token inserted, or a piece of another seed spliced in.
fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>, inputs: &[Vec<u8>], tokens: &[&[u8]]) {
    const INTERESTING: &[u8] = b"\0\r\n \t-:;=\"'{}[],.\\/0129AZaz\x7f\x80\xff";
    let len = data.len();
    match rng.u8(..8) {
        0 if len > 0 => {
            let i = rng.usize(..len);
            data[i] ^= 1 << rng.u8(..8);
        }
        1 if len > 0 => {
            let i = rng.usize(..len);
            data[i] = INTERESTING[rng.usize(..INTERESTING.len())];
        }
        2 => {
            let i = rng.usize(..=len);
            data.insert(i, rng.u8(..));
        }
        3 if len > 0 => {
            let start = rng.usize(..len);
            let end = (start + rng.usize(1..=64)).min(len);
            data.drain(start..end);
        }
        4 if len > 0 => {
            let start = rng.usize(..len);
            let end = (start + rng.usize(1..=256)).min(len);
            let piece = data[start..end].to_vec();
            let at = rng.usize(..=len);
            data.splice(at..at, piece);
        }
        5 if !tokens.is_empty() => {
            let token = tokens[rng.usize(..tokens.len())];
            let at = rng.usize(..=len);
            data.splice(at..at, token.iter().copied());
        }
        6 => {
            let other = &inputs[rng.usize(..inputs.len())];
            if !other.is_empty() {
                let start = rng.usize(..other.len());
                let end = (start + rng.usize(1..=512)).min(other.len());
                let at = rng.usize(..=len);
                let cut = (at + rng.usize(..=64)).min(len);
                data.splice(at..cut, other[start..end].iter().copied());
            }
        }
        _ if len > 0 => {
            // Truncation: parsers meet cut-off input all the time.
            data.truncate(rng.usize(..len));
        }
        _ => data.push(rng.u8(..)),
    }
}
