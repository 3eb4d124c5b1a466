//! Fuzz target: the FHIRPath engine must never panic, whatever expression it is given: parse it and, if
//! it parses, evaluate it against a small Patient with the R4 model.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

static PATIENT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2024-01-02T03:04:05.678Z", "tag": [{"system": "http://x", "code": "t"}]},
        "extension": [{"url": "http://x/e", "valueDecimal": 1.5}],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "123"}],
        "active": true,
        "name": [{"use": "official", "family": "Doe", "given": ["Jan", "Piet"]}, {"given": ["J"]}],
        "telecom": [{"system": "phone", "value": "555"}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://x/t", "valueTime": "10:00:00"}]},
        "deceasedDateTime": "2020-02-29T10:00:00+01:00",
        "multipleBirthInteger": 2,
        "contact": [{"name": {"family": "Roe"}, "period": {"start": "2001"}}],
        "generalPractitioner": [{"reference": "#pr"}, {"reference": "Practitioner/9"}],
        "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Who"}]}]
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expression) = fhirpath::parse(text) {
        let _ = expression.evaluate(&PATIENT, &fhir::model::MODEL);
    }
});
