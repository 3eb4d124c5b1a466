//! Fuzz target: any bytes that parse as JSON, to `privacy::consent::Consent::parse`, must never panic;
//! a Consent that parses is written back (`to_fhir`) and must read back equal.
#![no_main]

#[path = "../harness/privacy.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::consent(data));
