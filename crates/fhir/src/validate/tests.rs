//! Bad (and good) resources with the issues the validator must report: location and issue code.

use serde_json::{json, Value};

use super::validate_resource;

/// Validates `resource` and compares the issues as `(location, code)` pairs, in the order found.
fn check(resource: Value, expected: &[(&str, &str)]) {
    let issues = validate_resource(&resource);
    let got: Vec<(String, &str)> = issues
        .iter()
        .map(|i| {
            (
                i.expression.first().cloned().unwrap_or_default(),
                i.code.code(),
            )
        })
        .collect();
    let want: Vec<(String, &str)> = expected.iter().map(|(l, c)| (l.to_string(), *c)).collect();
    assert_eq!(got, want, "{resource}\n{issues:#?}");
}

#[test]
fn valid_resources_have_no_issues() {
    check(
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"lastUpdated": "2024-01-02T03:04:05.678Z", "profile": ["http://example.org/p"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "identifier": [{"system": "urn:oid:1.2.3", "value": "123"}],
            "active": true,
            "name": [{"family": "Doe", "given": ["Jan", null], "_given": [null, {"extension": [{"url": "http://x", "valueString": "y"}]}]}],
            "gender": "female",
            "birthDate": "1970-01-01",
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T10:00:00+01:00"}]},
            "deceasedBoolean": false,
            "multipleBirthInteger": 2,
            "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
            "contact": [{"relationship": [{"text": "friend"}], "name": {"text": "A friend"}}],
            "managingOrganization": {"reference": "Organization/o1"},
            "generalPractitioner": [{"reference": "#pr"}, {"reference": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}],
            "link": [{"other": {"reference": "https://example.org/fhir/Patient/2/_history/3"}, "type": "seealso"}],
            "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Who"}]}]
        }),
        &[],
    );
    check(
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient?identifier=http://x|1"},
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            "component": [{"code": {"text": "c"}, "valueCodeableConcept": {"text": "v"}}]
        }),
        &[],
    );
}

#[test]
fn the_resource_itself() {
    check(json!([]), &[("", "structure")]);
    check(json!({"id": "x"}), &[("", "required")]);
    check(json!({"resourceType": "Patiënt"}), &[("", "not-supported")]);
    check(
        json!({"resourceType": "DomainResource"}),
        &[("", "not-supported")],
    );
    check(json!({"resourceType": 7}), &[("", "structure")]);
}

#[test]
fn unknown_elements_and_shapes() {
    check(
        json!({"resourceType": "Patient", "nickname": "x", "name": [{"family": "a", "middle": "b"}]}),
        &[
            ("Patient.name[0].middle", "structure"),
            ("Patient.nickname", "structure"),
        ],
    );
    check(
        json!({"resourceType": "Patient", "birthDate": ["1970"], "name": {"family": "a"}, "active": "true"}),
        &[
            ("Patient.active", "structure"),
            ("Patient.birthDate", "structure"),
            ("Patient.name", "structure"),
        ],
    );
    check(
        json!({"resourceType": "Patient", "name": [], "telecom": [{}], "gender": null, "address": [{"line": ["a", null]}]}),
        &[
            ("Patient.address[0].line[1]", "structure"),
            ("Patient.gender", "structure"),
            ("Patient.name", "structure"),
            ("Patient.telecom[0]", "structure"),
        ],
    );
    check(
        json!({"resourceType": "Patient", "deceasedString": "x"}),
        &[("Patient.deceasedString", "structure")],
    );
    check(
        json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}),
        &[("Patient.deceased.ofType(dateTime)", "structure")],
    );
    check(
        json!({"resourceType": "Patient", "_gender": "x"}),
        &[("Patient.gender", "structure")],
    );
    check(
        json!({"resourceType": "Patient", "_name": {"id": "a"}}),
        &[("Patient.name", "structure")],
    );
    check(
        json!({"resourceType": "Patient", "_birthDate": {"extension": [{"url": "http://x", "valueCode": "a"}], "foo": 1}}),
        &[("Patient.birthDate.foo", "structure")],
    );
}

#[test]
fn cardinality() {
    check(
        json!({"resourceType": "Observation", "status": "final"}),
        &[("Observation.code", "required")],
    );
    check(
        json!({"resourceType": "Observation", "code": {"text": "x"}, "_status": {"extension": [{"url": "http://x", "valueBoolean": true}]}}),
        &[],
    );
    check(
        json!({"resourceType": "Patient", "link": [{"type": "seealso"}], "extension": [{"valueString": "x"}]}),
        &[
            ("Patient.extension[0].url", "required"),
            ("Patient.link[0].other", "required"),
        ],
    );
}

#[test]
fn primitive_formats() {
    check(
        json!({
            "resourceType": "Patient",
            "id": "not valid!",
            "birthDate": "1970-02-30",
            "active": 1,
            "multipleBirthInteger": 2.5,
            "name": [{"family": "", "given": ["  "]}],
            "photo": [{"data": "not base64", "size": -1, "url": "http://a b", "creation": "2020-01-01T10:00:00"}],
            "communication": [{"language": {"text": "nl"}, "preferred": "yes"}]
        }),
        &[
            ("Patient.active", "structure"),
            ("Patient.birthDate", "value"),
            ("Patient.communication[0].preferred", "structure"),
            ("Patient.id", "value"),
            ("Patient.multipleBirth.ofType(integer)", "value"),
            ("Patient.name[0].family", "value"),
            ("Patient.name[0].given[0]", "value"),
            ("Patient.photo[0].creation", "value"),
            ("Patient.photo[0].data", "value"),
            ("Patient.photo[0].size", "value"),
            ("Patient.photo[0].url", "value"),
        ],
    );
    check(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "issued": "2020-01-01", "valueInteger": 2147483648_i64}),
        &[
            ("Observation.issued", "value"),
            ("Observation.value.ofType(integer)", "value"),
        ],
    );
}

#[test]
fn required_bindings() {
    check(
        json!({
            "resourceType": "Patient",
            "gender": "f",
            "telecom": [{"system": "pager", "value": "1"}, {"system": "carrier-pigeon", "value": "2"}]
        }),
        &[
            ("Patient.gender", "code-invalid"),
            ("Patient.telecom[1].system", "code-invalid"),
        ],
    );
    check(
        json!({"resourceType": "Observation", "status": "done", "code": {"text": "x"}}),
        &[("Observation.status", "code-invalid")],
    );
}

#[test]
fn references() {
    let with = |reference: &str| json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": reference}});
    for good in [
        "Patient/1",
        "Patient/1/_history/2",
        "http://example.org/fhir/Patient/1",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        "urn:oid:1.2.3.4",
        "Patient?identifier=x",
    ] {
        check(with(good), &[]);
    }
    for bad in [
        "Patient",
        "Patient/",
        "Nobody/1",
        "Patient/1/_history",
        "Patient/a b",
        "urn:uuid:xyz",
        "#a/b",
        "Patient/1/x/2",
    ] {
        check(with(bad), &[("Observation.subject.reference", "value")]);
    }
}

#[test]
fn contained_and_bundled_resources_are_validated() {
    check(
        json!({
            "resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "name": ""}, {"resourceType": "Nothing"}, {"name": "x"}]
        }),
        &[
            ("Patient.contained[0].name", "value"),
            ("Patient.contained[1]", "not-supported"),
            ("Patient.contained[2]", "required"),
        ],
    );
    check(
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}, {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}]
        }),
        &[("Bundle.entry[0].resource.gender", "code-invalid")],
    );
}

#[test]
fn no_type_has_more_elements_than_the_validator_tracks() {
    assert!(crate::definitions::types()
        .iter()
        .all(|t| t.elements.len() <= 256));
}

#[test]
fn codes_nested_in_a_code_system_hierarchy_are_in_its_value_set() {
    // `corrected` sits under `amended` in observation-status, `relapse` under `active` in condition-clinical,
    // `maiden` under `old` in name-use.
    check(
        json!({"resourceType": "Observation", "status": "corrected", "code": {"text": "x"}}),
        &[],
    );
    check(
        json!({
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "relapse"}]}
        }),
        &[],
    );
    check(
        json!({"resourceType": "Patient", "name": [{"use": "maiden", "family": "X"}]}),
        &[],
    );
    check(
        json!({"resourceType": "Patient", "name": [{"use": "married", "family": "X"}]}),
        &[("Patient.name[0].use", "code-invalid")],
    );
}

#[test]
fn codeable_concepts_under_required_bindings() {
    let condition = |clinical_status: Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": clinical_status});
    let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    // A translation from another system next to a code of the value set is fine.
    check(
        condition(
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}, {"system": system, "code": "active"}]}),
        ),
        &[],
    );
    // A wrong code of the value set's own system.
    check(
        condition(json!({"coding": [{"system": system, "code": "gone"}]})),
        &[
            ("Condition.clinicalStatus", "code-invalid"),
            ("Condition.clinicalStatus.coding[0].code", "code-invalid"),
        ],
    );
    // Nothing from the value set at all: only text, or only another system.
    check(
        condition(json!({"text": "active"})),
        &[("Condition.clinicalStatus", "code-invalid")],
    );
    check(
        condition(json!({"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}]})),
        &[("Condition.clinicalStatus", "code-invalid")],
    );
}

#[test]
fn contained_resources_follow_the_rules_for_contained_resources() {
    check(
        json!({
            "resourceType": "Patient",
            "contained": [{
                "resourceType": "Organization",
                "id": "o",
                "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00Z", "security": [{"code": "R"}]},
                "contained": [{"resourceType": "Organization", "id": "p"}]
            }]
        }),
        &[
            ("Patient.contained[0].contained", "invariant"),
            ("Patient.contained[0].meta.lastUpdated", "invariant"),
            ("Patient.contained[0].meta.security", "invariant"),
            ("Patient.contained[0].meta.versionId", "invariant"),
        ],
    );
}

#[test]
fn choice_elements_take_only_their_types_with_the_exact_suffix() {
    check(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valuestring": "a", "valueReference": {"reference": "Patient/1"}}),
        &[
            ("Observation.valueReference", "structure"),
            ("Observation.valuestring", "structure"),
        ],
    );
    check(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "value": "a"}),
        &[("Observation.value", "structure")],
    );
    // Primitive extensions of a choice element carry its full name.
    check(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "_valueString": {"extension": [{"url": "http://x", "valueCode": "masked"}]}}),
        &[],
    );
}

#[test]
fn deep_nesting_stops_with_an_issue_instead_of_overflowing_the_stack() {
    // Extensions within extensions, far deeper than any real resource (and than serde_json parses).
    let mut extension = json!({"url": "http://x", "valueString": "leaf"});
    for _ in 0..500 {
        extension = json!({"url": "http://x", "extension": [extension]});
    }
    let issues = validate_resource(&json!({"resourceType": "Patient", "extension": [extension]}));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].code.code(), "too-long");
    // The location names every level up to the cut.
    let location = &issues[0].expression[0];
    assert_eq!(
        location.matches(".extension[0]").count(),
        super::MAX_DEPTH,
        "{location}"
    );
}

#[test]
fn strings_over_one_megabyte_are_rejected() {
    check(
        json!({"resourceType": "Patient", "name": [{"text": "x".repeat(1024 * 1024 + 1)}]}),
        &[("Patient.name[0].text", "value")],
    );
    check(
        json!({"resourceType": "Patient", "name": [{"text": "x".repeat(1024 * 1024)}]}),
        &[],
    );
}

#[test]
fn references_point_at_the_types_the_element_allows() {
    let observation = |subject: Value| json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": subject});
    // Observation.subject is Reference(Patient | Group | Device | Location).
    for good in [
        json!({"reference": "Patient/1"}),
        json!({"reference": "Group/1/_history/2"}),
        json!({"reference": "https://example.org/fhir/Device/d1"}),
        json!({"reference": "Location?identifier=x"}),
        json!({"reference": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}),
        json!({"type": "Patient", "identifier": {"value": "1"}}),
        // An absolute URL whose end is not Type/id says nothing about the type.
        json!({"reference": "https://example.org/records/Medication"}),
    ] {
        check(observation(good), &[]);
    }
    check(
        observation(json!({"reference": "Medication/1"})),
        &[("Observation.subject.reference", "value")],
    );
    check(
        observation(json!({"reference": "https://example.org/fhir/Practitioner/p/_history/1"})),
        &[("Observation.subject.reference", "value")],
    );
    check(
        observation(json!({"type": "Practitioner", "display": "Dr X"})),
        &[("Observation.subject.type", "value")],
    );
    // Reference(Any) takes any resource type.
    check(
        json!({"resourceType": "Provenance", "target": [{"reference": "Medication/1"}], "recorded": "2024-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/1"}}]}),
        &[],
    );
}

#[test]
fn elements_the_definitions_package_adds_are_not_r4() {
    // meta.author and friends come from the package the definitions were taken from, not from R4.
    check(
        json!({"resourceType": "Patient", "meta": {"author": {"reference": "Practitioner/1"}, "project": "x"}}),
        &[
            ("Patient.meta.author", "structure"),
            ("Patient.meta.project", "structure"),
        ],
    );
    check(
        json!({"resourceType": "SubscriptionStatus", "status": "active", "type": "heartbeat", "subscription": {"reference": "Subscription/1"}}),
        &[("", "not-supported")],
    );
}

#[test]
fn issues_come_in_document_order_of_their_indexes() {
    let names: Vec<Value> = (0..12)
        .map(|i| {
            if i % 5 == 0 {
                json!({"family": ""})
            } else {
                json!({"family": "x"})
            }
        })
        .collect();
    check(
        json!({"resourceType": "Patient", "name": names, "active": "yes"}),
        &[
            ("Patient.active", "structure"),
            ("Patient.name[0].family", "value"),
            ("Patient.name[5].family", "value"),
            ("Patient.name[10].family", "value"),
        ],
    );
}

#[test]
fn an_extension_has_a_value_or_nested_extensions() {
    check(
        json!({"resourceType": "Patient", "extension": [
            {"url": "http://x/a", "valueString": "ok"},
            {"url": "http://x/b", "extension": [{"url": "c", "valueCode": "ok"}]},
            {"url": "http://x/d"},
            {"url": "http://x/e", "valueString": "v", "extension": [{"url": "f", "valueCode": "x"}]}
        ]}),
        &[
            ("Patient.extension[2]", "invariant"),
            ("Patient.extension[3]", "invariant"),
        ],
    );
}

#[test]
fn local_references_name_a_contained_resource_of_the_right_type() {
    let observation = |reference: &str| {
        json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": reference},
            "performer": [{"reference": "#pr"}],
            "contained": [
                {"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "#pr"}, {"reference": "#"}]},
                {"resourceType": "Practitioner", "id": "pr"}
            ]
        })
    };
    check(observation("#p1"), &[]);
    check(
        observation("#nobody"),
        &[("Observation.subject.reference", "invariant")],
    );
    // Observation.subject may not be a Practitioner, contained or not.
    check(
        observation("#pr"),
        &[("Observation.subject.reference", "value")],
    );
    // A Bundle entry's local references are to its own contained resources.
    check(
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "generalPractitioner": [{"reference": "#o"}], "contained": [{"resourceType": "Organization", "id": "o"}]}},
            {"resource": {"resourceType": "Patient", "generalPractitioner": [{"reference": "#o"}]}}
        ]}),
        &[(
            "Bundle.entry[1].resource.generalPractitioner[0].reference",
            "invariant",
        )],
    );
}
