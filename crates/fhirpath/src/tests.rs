//! Unit tests over a tiny hand-written model: each case is an expression, a resource and the
//! expected result, written as the items' display forms.

use serde_json::{json, Value};

use crate::{parse, Item, Model};

/// A few FHIR types, enough to exercise typing, choice elements, backbone elements and polymorphism.
struct TinyModel;

const ELEMENTS: &[(&str, &str, &str)] = &[
    ("Patient", "id", "id"),
    ("Patient", "active", "boolean"),
    ("Patient", "birthDate", "date"),
    ("Patient", "name", "HumanName"),
    ("Patient", "telecom", "ContactPoint"),
    ("Patient", "contact", "Patient.contact"),
    ("Patient", "managingOrganization", "Reference"),
    ("Patient", "generalPractitioner", "Reference"),
    ("Patient", "extension", "Extension"),
    ("Patient", "contained", "Resource"),
    ("Patient.contact", "name", "HumanName"),
    ("Patient.contact", "telecom", "ContactPoint"),
    ("HumanName", "family", "string"),
    ("HumanName", "given", "string"),
    ("HumanName", "use", "code"),
    ("ContactPoint", "system", "code"),
    ("ContactPoint", "value", "string"),
    ("Observation", "id", "id"),
    ("Observation", "status", "code"),
    ("Observation", "code", "CodeableConcept"),
    ("Observation", "subject", "Reference"),
    ("Observation", "component", "Observation.component"),
    ("Observation.component", "code", "CodeableConcept"),
    ("CodeableConcept", "coding", "Coding"),
    ("CodeableConcept", "text", "string"),
    ("Coding", "system", "uri"),
    ("Coding", "code", "code"),
    ("Reference", "reference", "string"),
    ("Reference", "type", "uri"),
    ("Quantity", "value", "decimal"),
    ("Quantity", "unit", "string"),
    ("Quantity", "code", "code"),
    ("Quantity", "system", "uri"),
    ("Extension", "url", "uri"),
    ("Element", "extension", "Extension"),
    ("Bundle", "entry", "Bundle.entry"),
    ("Bundle.entry", "fullUrl", "uri"),
    ("Bundle.entry", "resource", "Resource"),
];

const TYPES: &[&str] = &[
    "Age",
    "Bundle",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "DomainResource",
    "Element",
    "Extension",
    "HumanName",
    "Observation",
    "Organization",
    "Patient",
    "Period",
    "Quantity",
    "Reference",
    "Resource",
    "boolean",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "integer",
    "string",
    "uri",
];

impl Model for TinyModel {
    fn child_type(&self, parent: &str, element: &str) -> Option<&'static str> {
        // Age inherits its elements from Quantity.
        let parent = if parent == "Age" { "Quantity" } else { parent };
        ELEMENTS
            .iter()
            .find(|(p, e, _)| *p == parent && *e == element)
            .map(|(_, _, t)| *t)
            .or_else(|| {
                // Every primitive and data type has `extension` (as Element does).
                (element == "extension").then_some("Extension")
            })
    }

    fn is_a(&self, ty: &str, ancestor: &str) -> bool {
        let parent = |t: &str| match t {
            "Patient" | "Observation" | "Organization" | "Practitioner" => Some("DomainResource"),
            "DomainResource" | "Bundle" => Some("Resource"),
            "Age" => Some("Quantity"),
            _ => None,
        };
        let mut t = Some(ty);
        while let Some(x) = t {
            if x == ancestor {
                return true;
            }
            t = parent(x);
        }
        false
    }

    fn is_resource_type(&self, name: &str) -> bool {
        matches!(
            name,
            "Patient" | "Observation" | "Bundle" | "Practitioner" | "Organization"
        )
    }

    fn type_name(&self, name: &str) -> Option<&'static str> {
        TYPES
            .iter()
            .find(|t| **t == name)
            .copied()
            .or(if name == "Practitioner" {
                Some("Practitioner")
            } else {
                None
            })
    }
}

/// How a result item reads in the expectations: literals as FHIRPath writes them, nodes as their
/// JSON with the type (`string:Peter`, `HumanName:{...}`).
fn show(item: &Item) -> String {
    match item {
        Item::Node { value, ty } => {
            let v = match value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            format!("{}:{v}", ty.unwrap_or("?"))
        }
        Item::Boolean(b) => b.to_string(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => format!("{d}"),
        Item::String(s) => format!("'{s}'"),
        Item::Date(d) | Item::DateTime(d) => format!("@{d}"),
        Item::Time(t) => format!("@T{t}"),
        Item::Quantity { value, unit } => format!("{value} '{unit}'"),
    }
}

fn check(expr: &str, resource: &Value, expected: &[&str]) {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let result = parsed
        .evaluate(resource, &TinyModel)
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    let got: Vec<String> = result.iter().map(show).collect();
    assert_eq!(got, expected, "{expr}");
}

fn check_eval_error(expr: &str, resource: &Value) {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert!(
        parsed.evaluate(resource, &TinyModel).is_err(),
        "{expr} should fail to evaluate"
    );
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "active": true,
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://example.org/time", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "telecom": [
            {"system": "phone", "value": "(03) 5555 6473"},
            {"system": "email", "value": "p@example.org"}
        ],
        "contact": [{"name": {"family": "du Marché"}}],
        "managingOrganization": {"reference": "Organization/1"},
        "generalPractitioner": [
            {"reference": "Practitioner/7"},
            {"reference": "http://example.org/fhir/Patient/9/_history/2"},
            {"reference": "urn:uuid:5b9b6d1c-0000-4000-8000-000000000001", "type": "Patient"},
            {"reference": "#c1"}
        ],
        "contained": [{"resourceType": "Practitioner", "id": "c1"}],
        "extension": [
            {"url": "http://example.org/race", "valueCodeableConcept": {"text": "x"}},
            {"url": "http://example.org/flag", "valueBoolean": false}
        ]
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
        "valueQuantity": {"value": 185, "unit": "lbs", "code": "[lb_av]", "system": "http://unitsofmeasure.org"},
        "effectiveDateTime": "2016-03-28T12:00:00+01:00",
        "component": [
            {"code": {"text": "a"}, "valueString": "hello"},
            {"code": {"text": "b"}, "valueAge": {"value": 4, "unit": "a"}}
        ]
    })
}

#[test]
fn paths_and_resource_type_filter() {
    let p = patient();
    check(
        "Patient.name.given",
        &p,
        &["string:Peter", "string:James", "string:Jim"],
    );
    check("name.family", &p, &["string:Chalmers"]);
    check("Patient.birthDate", &p, &["date:1974-12-25"]);
    check("Patient.contact.name.family", &p, &["string:du Marché"]);
    check("Patient.contact.exists()", &p, &["true"]);
    check("Observation.status", &p, &[]);
    check("Patient.name.given1", &p, &[]);
    check("%resource.id", &p, &["id:p1"]);
    check("%context.active", &p, &["boolean:true"]);
    check("Patient.name[1].given", &p, &["string:Jim"]);
    check("Patient.name.given[3]", &p, &[]);
    check("Patient.contained.id", &p, &["?:c1"]);
}

#[test]
fn choice_elements_take_their_type_from_the_key() {
    let o = observation();
    check("Observation.value.unit", &o, &["string:lbs"]);
    check("Observation.value is Quantity", &o, &["true"]);
    check(
        "Observation.value.ofType(Quantity).value",
        &o,
        &["decimal:185"],
    );
    check("Observation.value.ofType(string)", &o, &[]);
    check(
        "Observation.effective.ofType(dateTime)",
        &o,
        &["dateTime:2016-03-28T12:00:00+01:00"],
    );
    check(
        "Observation.component.value.ofType(string)",
        &o,
        &["string:hello"],
    );
    // Polymorphism: an Age is a Quantity.
    check(
        "Observation.component.value.ofType(Quantity).value",
        &o,
        &["decimal:4"],
    );
    check(
        "Observation.component[1].value.as(Age).unit",
        &o,
        &["string:a"],
    );
    check_eval_error("Observation.component.value.as(Age)", &o);
    check("Observation.valueQuantity.code", &o, &["code:[lb_av]"]);
    check("(Observation.value as Quantity).value > 180", &o, &["true"]);
    check("Observation.value = 185 '[lb_av]'", &o, &["true"]);
}

#[test]
fn where_exists_and_boolean_logic() {
    let p = patient();
    check(
        "Patient.telecom.where(system='email').value",
        &p,
        &["string:p@example.org"],
    );
    check("Patient.telecom.where(system='fax')", &p, &[]);
    check(
        "Patient.name.where(use = 'usual').given.first()",
        &p,
        &["string:Jim"],
    );
    check("Patient.name.exists(family.exists())", &p, &["true"]);
    check("Patient.name.all(given.exists())", &p, &["true"]);
    check("Patient.name.all(family.exists())", &p, &["false"]);
    check("Patient.active and Patient.name.exists()", &p, &["true"]);
    check(
        "Patient.deceased.exists() and Patient.deceased != false",
        &p,
        &["false"],
    );
    check("Patient.deceased != false", &p, &[]);
    check("{} or true", &p, &["true"]);
    check("{} and true", &p, &[]);
    check("false implies {}", &p, &["true"]);
    check("(true xor false).not()", &p, &["false"]);
    check("Patient.name.count() = 2", &p, &["true"]);
    check("Patient.name.empty()", &p, &["false"]);
    check("iif(Patient.active, 'yes', 'no')", &p, &["'yes'"]);
    check(
        "Patient.name.select(given.first())",
        &p,
        &["string:Peter", "string:Jim"],
    );
    check("Patient.name.given.last()", &p, &["string:Jim"]);
    check(
        "Patient.name.given.where($this.startsWith('J')).count()",
        &p,
        &["2"],
    );
    check(
        "Patient.name.given.where($index = 1)",
        &p,
        &["string:James"],
    );
}

#[test]
fn unions_equality_and_membership() {
    let p = patient();
    check(
        "(Patient.name.given | Patient.name.given).count()",
        &p,
        &["3"],
    );
    check("(1 | 2 | 1)", &p, &["1", "2"]);
    check("'Jim' in Patient.name.given", &p, &["true"]);
    check("Patient.name.given contains 'Bob'", &p, &["false"]);
    check("Patient.name.given.distinct().count()", &p, &["3"]);
    check("'ABC' ~ 'abc'", &p, &["true"]);
    check("'ABC' = 'abc'", &p, &["false"]);
    check("Patient.name.family = 'Chalmers'", &p, &["true"]);
    check("Patient.birthDate = @1974-12-25", &p, &["true"]);
    check("Patient.birthDate < @1975", &p, &["true"]);
    check("Patient.birthDate = @1974", &p, &[]);
    check(
        "@2012-04-15T10:00:00Z = @2012-04-15T12:00:00+02:00",
        &p,
        &["true"],
    );
    check("@2012-04-15 = @2012-04-15T10:00", &p, &[]);
    check("@T10:30 < @T11:00", &p, &["true"]);
    check("1 '1' = 1 '1'", &p, &["true"]);
    check("4 days = 4 'd'", &p, &["true"]);
}

#[test]
fn references_resolve_to_typed_items() {
    let p = patient();
    check(
        "Patient.managingOrganization.resolve() is Patient",
        &p,
        &["false"],
    );
    check(
        "Patient.generalPractitioner.where(resolve() is Patient).reference",
        &p,
        &[
            "string:http://example.org/fhir/Patient/9/_history/2",
            "string:urn:uuid:5b9b6d1c-0000-4000-8000-000000000001",
        ],
    );
    check(
        "Patient.generalPractitioner.resolve().ofType(Practitioner).count()",
        &p,
        &["2"],
    );
    // A contained reference resolves to the contained resource itself.
    check(
        "Patient.generalPractitioner.where(reference = '#c1').resolve().id",
        &p,
        &["?:c1"],
    );
    let bundle = json!({
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "a", "active": true}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:1"}}}
        ]
    });
    check(
        "Bundle.entry.resource.ofType(Observation).subject.resolve().active",
        &bundle,
        &["boolean:true"],
    );
    check("Bundle.entry[0].resource is Patient", &bundle, &["true"]);
}

#[test]
fn extensions_on_elements_and_primitives() {
    let p = patient();
    check(
        "Patient.extension('http://example.org/flag').value",
        &p,
        &["boolean:false"],
    );
    check(
        "Patient.extension.where(url = 'http://example.org/race').value.text",
        &p,
        &["string:x"],
    );
    check(
        "Patient.birthDate.extension('http://example.org/time').value",
        &p,
        &["dateTime:1974-12-25T14:35:45-05:00"],
    );
    check("Patient.birthDate.hasValue()", &p, &["true"]);
    check("Patient.name.hasValue()", &p, &["false"]);
    let only_extension = json!({
        "resourceType": "Patient",
        "_birthDate": {"extension": [{"url": "http://example.org/absent", "valueBoolean": true}]}
    });
    check("Patient.birthDate.exists()", &only_extension, &["true"]);
    check("Patient.birthDate.hasValue()", &only_extension, &["false"]);
    check(
        "Patient.birthDate.extension.url",
        &only_extension,
        &["uri:http://example.org/absent"],
    );
}

#[test]
fn strings_numbers_and_conversions() {
    let p = patient();
    check("Patient.name.family.upper()", &p, &["'CHALMERS'"]);
    check("Patient.name.family.substring(1, 3)", &p, &["'hal'"]);
    check("Patient.name.family.length()", &p, &["8"]);
    check("Patient.name.family.matches('^Ch.*s$')", &p, &["true"]);
    check("Patient.name.family.replace('Ch', 'W')", &p, &["'Walmers'"]);
    check("Patient.name.family.contains('alm')", &p, &["true"]);
    check("Patient.name.family.indexOf('m')", &p, &["4"]);
    check("'a,b'.split(',').join('-')", &p, &["'a-b'"]);
    check("'12'.toInteger() + 1", &p, &["13"]);
    check("5 div 2", &p, &["2"]);
    check("5 mod 2", &p, &["1"]);
    check("7 / 2", &p, &["3.5"]);
    check("0.1 + 0.2 = 0.3", &p, &["true"]);
    check("-(3 * 2)", &p, &["-6"]);
    check("(1.5).toString()", &p, &["'1.5'"]);
    check("Patient.active.toString()", &p, &["'true'"]);
    check("'abc' & {} & 'd'", &p, &["'abcd'"]);
    check("2.5.round()", &p, &["3"]);
    check("16.sqrt()", &p, &["4"]);
    check("@2024-01-31 + 1 month", &p, &["@2024-02-29"]);
    check(
        "@2024-01-01T10:00:00Z - 90 minutes",
        &p,
        &["@2024-01-01T08:30:00Z"],
    );
}

#[test]
fn tree_navigation() {
    let p = json!({"resourceType": "Patient", "name": [{"family": "A", "given": ["B"]}], "active": false});
    check("Patient.children().count()", &p, &["2"]);
    check(
        "Patient.descendants().ofType(string)",
        &p,
        &["string:A", "string:B"],
    );
    check("Patient.name.children()", &p, &["string:A", "string:B"]);
    check("Patient.name.repeat(given)", &p, &["string:B"]);
}

#[test]
fn evaluation_errors() {
    let p = patient();
    check_eval_error("Patient.name.single()", &p);
    check_eval_error("(1 | 2).not()", &p);
    check_eval_error("Patient.telecom.startsWith('x')", &p);
    check_eval_error("Patient.name.given < 'x'", &p);
    check_eval_error("Patient.gender.as(string1)", &p);
    check_eval_error("'a' - 'b'", &p);
}

#[test]
fn parse_errors_carry_a_position() {
    let cases: &[(&str, usize, &str)] = &[
        ("Patient.name.", 13, "expected an identifier"),
        (
            "Patient.name.frobnicate()",
            13,
            "unknown function 'frobnicate'",
        ),
        ("where(a, b)", 0, "where() takes 1 argument(s), 2 given"),
        ("2 + 2 /* not finished", 6, "unterminated comment"),
        ("name.given = 'Peter", 13, "unterminated string"),
        ("(1 + 2", 6, "expected ')'"),
        ("1 2", 2, "unexpected number 2"),
        ("%nope", 0, "unknown variable %nope"),
        ("x.matches('(')", 2, "invalid regular expression"),
    ];
    for (expr, position, message) in cases {
        let e = parse(expr).expect_err(expr);
        assert_eq!(e.position, *position, "{expr}: {e}");
        assert!(e.message.contains(message), "{expr}: {e}");
    }
}

#[test]
fn expressions_are_shareable_between_threads() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<crate::Expression>();
}

#[test]
fn encodings_and_escapes() {
    let p = json!({"resourceType": "Patient"});
    check("'héllo?>'.encode('base64')", &p, &["'aMOpbGxvPz4='"]);
    check("'héllo?>'.encode('urlbase64')", &p, &["'aMOpbGxvPz4='"]);
    check("'??>'.encode('base64')", &p, &["'Pz8+'"]);
    check("'??>'.encode('urlbase64')", &p, &["'Pz8-'"]);
    check("'a'.encode('base64').decode('base64')", &p, &["'a'"]);
    check("'ab'.encode('hex')", &p, &["'6162'"]);
    check("'6162'.decode('hex')", &p, &["'ab'"]);
    // Not valid in the encoding, or not UTF-8 once decoded, or an unknown encoding: empty.
    check("'zz'.decode('hex')", &p, &[]);
    check("'616'.decode('hex')", &p, &[]);
    check("'/w=='.decode('base64')", &p, &[]);
    check("'a$b='.decode('base64')", &p, &[]);
    check("'a'.encode('rot13')", &p, &[]);
    check(
        "'<a href=\"x\">&</a>'.escape('html')",
        &p,
        &["'&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;'"],
    );
    check(
        "'&lt;&#65;&#x42;&bogus;&'.unescape('html')",
        &p,
        &["'<AB&bogus;&'"],
    );
    check("'a\\nb'.escape('json')", &p, &["'a\\nb'"]);
    check("'\\\\u00e9\\\\t'.unescape('json')", &p, &["'é\t'"]);
    check("'trailing\\\\'.unescape('json')", &p, &[]);
}

#[test]
fn sort_by_keys_ascending_and_descending() {
    let p = json!({"resourceType": "Patient"});
    check("(3 | 1 | 2).sort()", &p, &["1", "2", "3"]);
    check("(3 | 1 | 2).sort(-$this)", &p, &["3", "2", "1"]);
    check("('b' | 'a' | 'c').sort(-$this)", &p, &["'c'", "'b'", "'a'"]);
    // A second key breaks ties of the first; items without the key come last.
    check(
        "Patient.name.sort(family, -given.first()).select(given.first())",
        &json!({"resourceType": "Patient", "name": [
            {"family": "B", "given": ["x"]},
            {"given": ["none"]},
            {"family": "A", "given": ["a"]},
            {"family": "A", "given": ["b"]}
        ]}),
        &["string:b", "string:a", "string:x", "string:none"],
    );
    check_eval_error("(1 | 'a').sort()", &p);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Parenthesised, negated, nested calls, long `.step` chains and operator chains: each level nests the
    // tree one deeper, which the parser, the evaluator and dropping the tree all follow recursively.
    let p = json!({"resourceType": "Patient"});
    for depth in [40, 63, 64, 65, 250, 10_000] {
        let parens = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        let unary = format!("{}1", "-".repeat(depth));
        let calls = format!("{}1{}", "iif(true, ".repeat(depth), ")".repeat(depth));
        let dots = format!("Patient{}", ".where(true)".repeat(depth));
        let sums = format!("1{}", " + 1".repeat(depth));
        for expr in [parens, unary, calls, dots, sums] {
            match parse(&expr) {
                Ok(e) => {
                    assert!(depth < 64, "{depth}: {expr:.40}");
                    let _ = e.evaluate(&p, &TinyModel);
                }
                Err(e) => {
                    assert!(depth > 60, "{depth}: {expr:.40}: {e}");
                    assert!(e.message.contains("too deeply"), "{e}");
                }
            }
        }
    }
}

#[test]
fn integer_overflow_is_empty_not_a_panic() {
    let p = json!({"resourceType": "Patient"});
    let min = "(-9223372036854775807 - 1)";
    check(&format!("{min}.abs()"), &p, &[]);
    check(&format!("-{min}"), &p, &[]);
    check(&format!("{min} - 1"), &p, &[]);
    check("9223372036854775807 + 1", &p, &[]);
    check(&format!("{min} div -1"), &p, &[]);
    check("(-5).abs()", &p, &["5"]);
}
