//! Fuzz target: any bytes that parse as JSON, labelled (`privacy::labels::label`) and the labels written
//! in (`apply`) and read back, must never panic, and labelling again never lowers the labels.
#![no_main]

#[path = "../harness/privacy.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::label(data));
