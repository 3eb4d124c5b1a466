//! Fuzz target: the search query parser must never panic, whatever query string it is given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line picks the resource type; the rest is `name=value` pairs separated by '&'.
    let (ty, query) = text.split_once('\n').unwrap_or(("Patient", text));
    let params: Vec<(String, String)> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect();
    let ty = if ty.is_empty() { None } else { Some(ty) };
    for strict in [false, true] {
        let _ = fhir::search::parse::parse(ty, &params, strict);
    }
});
