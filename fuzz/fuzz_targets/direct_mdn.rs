//! Fuzz target: a delivery notification read back (`direct::mdn::parse`) must never panic.
#![no_main]

#[path = "../harness/direct.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::mdn_report(data));
