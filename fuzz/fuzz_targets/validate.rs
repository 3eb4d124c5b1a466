//! Fuzz target: the resource validator must never panic, whatever JSON it is given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = fhir::validate::validate_resource(&value);
    }
});
