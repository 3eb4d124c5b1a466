//! Fuzz target: a trust bundle (PEM, PKCS#7, DER) imported as anchors (`direct::trust`) must never panic.
#![no_main]

#[path = "../harness/direct.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::trust_bundle(data));
