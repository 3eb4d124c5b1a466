//! Fuzz target: any UTF-8 text, to `privacy::policy::Policy::from_toml`, must never panic; a policy that
//! loads decides a labelled resource for every purpose of use.
#![no_main]

#[path = "../harness/privacy.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::policy_toml(data));
