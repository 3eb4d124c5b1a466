//! Fuzz target: a whole Direct message (`direct::mime`), parsed and walked part by part as a receiving HISP
//! reads it (headers, multiparts, decoded bodies, attached messages, XDM packages), must never panic.
#![no_main]

#[path = "../harness/direct.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::mime_message(data));
