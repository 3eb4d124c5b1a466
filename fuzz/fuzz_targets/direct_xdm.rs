//! Fuzz target: an XDM zip unpacked (`direct::xdm::unpack`) within the crate's default limits and within
//! small ones must never panic, and what comes out never exceeds the limits.
#![no_main]

#[path = "../harness/direct.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::xdm_package(data));
