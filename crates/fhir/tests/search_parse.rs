//! The search query parser: what a query string means, as the typed query the store runs, and which
//! problems come back to the caller.

use fhir::search::datetime::parse_range;
use fhir::search::parse::{parse, Parsed};
use fhir::search::{
    Clause, Include, Predicate, Prefix, Query, SortKey, StringMatch, Summary, Test, TokenTest,
    Total, UriMatch,
};
use fhir::{Issue, Severity};

/// Splits `a=b&c=d` into decoded pairs (values in these tests are written already decoded).
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect()
}

fn parsed(ty: &str, query: &str) -> Parsed {
    match parse(Some(ty), &pairs(query), true) {
        Ok(parsed) => parsed,
        Err(issues) => panic!("{ty}?{query}: {issues:#?}"),
    }
}

/// `query` on `ty` gives exactly these clauses (ANDed; each ORs its predicates), with no issue.
fn check(ty: &str, query: &str, expected: Vec<Clause>) {
    let parsed = parsed(ty, query);
    assert_eq!(parsed.query.clauses, expected, "{ty}?{query}");
    assert_eq!(parsed.warnings, Vec::<Issue>::new(), "{ty}?{query}");
}

/// `query` on `ty` is one clause with one predicate.
fn check1(ty: &str, query: &str, expected: Predicate) {
    check(
        ty,
        query,
        vec![Clause {
            any: vec![expected],
        }],
    );
}

/// `query` is rejected, under lenient handling too, with one error naming each of `names`.
fn check_errors(ty: Option<&str>, query: &str, names: &[&str]) {
    for strict in [false, true] {
        let issues = match parse(ty, &pairs(query), strict) {
            Ok(parsed) => panic!("{query}: accepted as {:?}", parsed.query),
            Err(issues) => issues,
        };
        let errors: Vec<&Issue> = issues.iter().filter(|i| i.is_error()).collect();
        assert_eq!(errors.len(), names.len(), "{query}: {issues:#?}");
        for (issue, name) in errors.iter().zip(names) {
            assert!(
                issue.diagnostics.contains(name),
                "{query}: '{}' does not name {name}",
                issue.diagnostics
            );
        }
    }
}

fn index(param: &'static str, test: Test) -> Predicate {
    Predicate::Index { param, test }
}

fn any(predicates: Vec<Predicate>) -> Clause {
    Clause { any: predicates }
}

fn date(prefix: Prefix, value: &str) -> Test {
    let (low, high) = parse_range(value).expect("a valid date in the test");
    Test::Date { prefix, low, high }
}

fn starts(value: &str) -> Test {
    Test::String {
        value: value.to_string(),
        mode: StringMatch::StartsWith,
    }
}

fn code(system: Option<Option<&str>>, code: Option<&str>) -> Test {
    Test::Token(TokenTest::Code {
        system: system.map(|s| s.map(str::to_string)),
        code: code.map(str::to_string),
    })
}

fn reference(target_type: Option<&str>, id: Option<&str>, url: Option<&str>) -> Test {
    Test::Reference {
        target_type: target_type.map(str::to_string),
        target_id: id.map(str::to_string),
        url: url.map(str::to_string),
        version: None,
    }
}

#[test]
fn dates_with_every_prefix_cover_the_written_precision() {
    check1(
        "Patient",
        "birthdate=ge2020-01",
        index("birthdate", date(Prefix::Ge, "2020-01")),
    );
    check1(
        "Patient",
        "birthdate=2020-01-02",
        index("birthdate", date(Prefix::Eq, "2020-01-02")),
    );
    for (prefix, written) in [
        (Prefix::Eq, "eq"),
        (Prefix::Ne, "ne"),
        (Prefix::Gt, "gt"),
        (Prefix::Lt, "lt"),
        (Prefix::Ge, "ge"),
        (Prefix::Le, "le"),
        (Prefix::Sa, "sa"),
        (Prefix::Eb, "eb"),
        (Prefix::Ap, "ap"),
    ] {
        let query = format!("date={written}2024-03-05T10:00:00+01:00");
        check1(
            "Observation",
            &query,
            index("date", date(prefix, "2024-03-05T10:00:00+01:00")),
        );
    }
    // A `+` that was not percent-encoded arrives as a space.
    check1(
        "Observation",
        "date=lt2024-03-05T10:00:00 01:00",
        index("date", date(Prefix::Lt, "2024-03-05T10:00:00+01:00")),
    );
    check1(
        "Patient",
        "_lastUpdated=gt2024-01-01",
        index("_lastUpdated", date(Prefix::Gt, "2024-01-01")),
    );
}

#[test]
fn strings_are_folded_unless_exact() {
    check1("Patient", "name=Müller", index("name", starts("muller")));
    check1(
        "Patient",
        "family=O'Brien",
        index("family", starts("o brien")),
    );
    check1(
        "Patient",
        "name:exact=Müller",
        index(
            "name",
            Test::String {
                value: "Müller".into(),
                mode: StringMatch::Exact,
            },
        ),
    );
    check1(
        "Patient",
        "name:contains=ALM",
        index(
            "name",
            Test::String {
                value: "alm".into(),
                mode: StringMatch::Contains,
            },
        ),
    );
    check1(
        "Patient",
        "address-city=São Paulo",
        index("address-city", starts("sao paulo")),
    );
}

#[test]
fn tokens_by_system_and_code() {
    check1(
        "Patient",
        "gender=male",
        index("gender", code(None, Some("male"))),
    );
    check1(
        "Patient",
        "identifier=http://hospital.example/mrn|12345",
        index(
            "identifier",
            code(Some(Some("http://hospital.example/mrn")), Some("12345")),
        ),
    );
    check1(
        "Patient",
        "identifier=|12345",
        index("identifier", code(Some(None), Some("12345"))),
    );
    check1(
        "Patient",
        "identifier=http://hospital.example/mrn|",
        index(
            "identifier",
            code(Some(Some("http://hospital.example/mrn")), None),
        ),
    );
    check1(
        "Observation",
        "code:text=Blood  Pressure",
        index(
            "code",
            Test::Token(TokenTest::Text("blood pressure".into())),
        ),
    );
    check1(
        "Patient",
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
        index(
            "identifier",
            Test::Token(TokenTest::OfType {
                type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                type_code: "MR".into(),
                value: "12345".into(),
            }),
        ),
    );
    check1(
        "Patient",
        "gender:missing=true",
        Predicate::Missing {
            param: "gender",
            missing: true,
        },
    );
    check1(
        "Patient",
        "active=true",
        index("active", code(None, Some("true"))),
    );
    check1("Patient", "_id=abc", index("_id", code(None, Some("abc"))));
    check1(
        "Patient",
        "_tag=http://example.org/tags|vip",
        index(
            "_tag",
            code(Some(Some("http://example.org/tags")), Some("vip")),
        ),
    );
    check1(
        "Patient",
        "_security=R",
        index("_security", code(None, Some("R"))),
    );
}

#[test]
fn not_excludes_every_value() {
    // `gender:not=male,female` is neither male nor female: one clause per value.
    check(
        "Patient",
        "gender:not=male,female",
        vec![
            any(vec![Predicate::Not {
                param: "gender",
                test: code(None, Some("male")),
            }]),
            any(vec![Predicate::Not {
                param: "gender",
                test: code(None, Some("female")),
            }]),
        ],
    );
}

#[test]
fn references_by_id_type_url_and_identifier() {
    check1(
        "Observation",
        "subject=Patient/123",
        index("subject", reference(Some("Patient"), Some("123"), None)),
    );
    check1(
        "Observation",
        "subject=Patient/123/_history/2",
        index("subject", reference(Some("Patient"), Some("123"), None)),
    );
    // Observation.subject may point at several types, so a bare id is any of them.
    check1(
        "Observation",
        "subject=123",
        index("subject", reference(None, Some("123"), None)),
    );
    // Observation.patient points at Patients only.
    check1(
        "Observation",
        "patient=123",
        index("patient", reference(Some("Patient"), Some("123"), None)),
    );
    check1(
        "Observation",
        "subject:Patient=123",
        index("subject", reference(Some("Patient"), Some("123"), None)),
    );
    check1(
        "Observation",
        "subject=http://other.example/fhir/Patient/9",
        index(
            "subject",
            reference(None, None, Some("http://other.example/fhir/Patient/9")),
        ),
    );
    check1(
        "Observation",
        "subject=urn:uuid:0b7a4e57-8d6c-4c2a-9a43-0e4d3f8c2a11",
        index(
            "subject",
            reference(
                None,
                None,
                Some("urn:uuid:0b7a4e57-8d6c-4c2a-9a43-0e4d3f8c2a11"),
            ),
        ),
    );
    check1(
        "Observation",
        "subject:identifier=http://hospital.example/mrn|12345",
        index(
            "subject",
            Test::ReferenceIdentifier(TokenTest::Code {
                system: Some(Some("http://hospital.example/mrn".into())),
                code: Some("12345".into()),
            }),
        ),
    );
    check1(
        "Patient",
        "general-practitioner:missing=false",
        Predicate::Missing {
            param: "general-practitioner",
            missing: false,
        },
    );
    check1(
        "QuestionnaireResponse",
        "questionnaire=http://example.org/Questionnaire/phq9|1.0",
        index(
            "questionnaire",
            Test::Reference {
                target_type: None,
                target_id: None,
                url: Some("http://example.org/Questionnaire/phq9".into()),
                version: Some("1.0".into()),
            },
        ),
    );
}

#[test]
fn quantities_numbers_and_uris() {
    check1(
        "Observation",
        "value-quantity=gt5.4|http://unitsofmeasure.org|mg",
        index(
            "value-quantity",
            Test::Quantity {
                prefix: Prefix::Gt,
                low: 5.35,
                high: 5.45,
                system: Some("http://unitsofmeasure.org".into()),
                code: Some("mg".into()),
            },
        ),
    );
    check1(
        "Observation",
        "value-quantity=5.4||mg",
        index(
            "value-quantity",
            Test::Quantity {
                prefix: Prefix::Eq,
                low: 5.35,
                high: 5.45,
                system: None,
                code: Some("mg".into()),
            },
        ),
    );
    check1(
        "Observation",
        "value-quantity=le100",
        index(
            "value-quantity",
            Test::Quantity {
                prefix: Prefix::Le,
                low: 99.5,
                high: 100.5,
                system: None,
                code: None,
            },
        ),
    );
    check1(
        "RiskAssessment",
        "probability=gt0.8",
        index(
            "probability",
            Test::Number {
                prefix: Prefix::Gt,
                low: 0.75,
                high: 0.85,
            },
        ),
    );
    check1(
        "ValueSet",
        "url:below=http://hl7.org/fhir/ValueSet",
        index(
            "url",
            Test::Uri {
                value: "http://hl7.org/fhir/ValueSet".into(),
                mode: UriMatch::Below,
            },
        ),
    );
    check1(
        "ValueSet",
        "url:above=http://hl7.org/fhir/ValueSet/x/y",
        index(
            "url",
            Test::Uri {
                value: "http://hl7.org/fhir/ValueSet/x/y".into(),
                mode: UriMatch::Above,
            },
        ),
    );
    check1(
        "Patient",
        "_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
        index(
            "_profile",
            Test::Uri {
                value: "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient".into(),
                mode: UriMatch::Exact,
            },
        ),
    );
    check1(
        "Patient",
        "_source=http://ehr.example/feed",
        index(
            "_source",
            Test::Uri {
                value: "http://ehr.example/feed".into(),
                mode: UriMatch::Exact,
            },
        ),
    );
}

#[test]
fn composites_pair_their_components() {
    check1(
        "Observation",
        "code-value-quantity=http://loinc.org|8480-6$gt100",
        Predicate::Composite {
            param: "code-value-quantity",
            components: vec![
                ("code", code(Some(Some("http://loinc.org")), Some("8480-6"))),
                (
                    "value-quantity",
                    Test::Quantity {
                        prefix: Prefix::Gt,
                        low: 99.5,
                        high: 100.5,
                        system: None,
                        code: None,
                    },
                ),
            ],
        },
    );
}

#[test]
fn or_and_and_escaping() {
    check(
        "Patient",
        "gender=male,female",
        vec![any(vec![
            index("gender", code(None, Some("male"))),
            index("gender", code(None, Some("female"))),
        ])],
    );
    check(
        "Patient",
        "birthdate=ge2000&birthdate=lt2010",
        vec![
            any(vec![index("birthdate", date(Prefix::Ge, "2000"))]),
            any(vec![index("birthdate", date(Prefix::Lt, "2010"))]),
        ],
    );
    let exact = |v: &str| {
        index(
            "name",
            Test::String {
                value: v.into(),
                mode: StringMatch::Exact,
            },
        )
    };
    check(
        "Patient",
        r"name:exact=a\,b,c\\,d\$e\|f",
        vec![any(vec![exact("a,b"), exact(r"c\"), exact("d$e|f")])],
    );
    check1(
        "Patient",
        r"identifier=http://x\|y|1\,2",
        index("identifier", code(Some(Some("http://x|y")), Some("1,2"))),
    );
}

#[test]
fn chains_follow_references_through_several_levels() {
    check1(
        "Observation",
        "subject:Patient.name=peter",
        Predicate::Chain {
            param: "subject",
            target_types: vec!["Patient"],
            inner: Box::new(index("name", starts("peter"))),
        },
    );
    check1(
        "Observation",
        "subject:Patient.organization.name=Acme",
        Predicate::Chain {
            param: "subject",
            target_types: vec!["Patient"],
            inner: Box::new(Predicate::Chain {
                param: "organization",
                target_types: vec!["Organization"],
                inner: Box::new(index("name", starts("acme"))),
            }),
        },
    );
    // Without a type, every target type that has the inner parameter (Observation.subject can be a
    // Patient, Group, Device or Location; Patients and Locations have `name`).
    check1(
        "Observation",
        "subject.name=peter",
        Predicate::Chain {
            param: "subject",
            target_types: vec!["Location", "Patient"],
            inner: Box::new(index("name", starts("peter"))),
        },
    );
    check1(
        "Encounter",
        "patient.birthdate=ge1990",
        Predicate::Chain {
            param: "patient",
            target_types: vec!["Patient"],
            inner: Box::new(index("birthdate", date(Prefix::Ge, "1990"))),
        },
    );
}

#[test]
fn reverse_chains_nest() {
    check1(
        "Patient",
        "_has:Observation:patient:code=1234-5",
        Predicate::Has {
            source_type: "Observation",
            ref_param: "patient",
            inner: Box::new(index("code", code(None, Some("1234-5")))),
        },
    );
    check1(
        "Patient",
        "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/7",
        Predicate::Has {
            source_type: "Observation",
            ref_param: "patient",
            inner: Box::new(Predicate::Has {
                source_type: "Provenance",
                ref_param: "target",
                inner: Box::new(index(
                    "agent",
                    reference(Some("Practitioner"), Some("7"), None),
                )),
            }),
        },
    );
}

#[test]
fn result_parameters() {
    let q = parsed(
        "Observation",
        "_sort=-date,code&_count=10&_total=accurate&_summary=count&_elements=id, status&_page=opaque-cursor&_format=json&_pretty=true",
    );
    assert_eq!(
        q.query,
        Query {
            resource_type: Some("Observation"),
            sort: vec![
                SortKey {
                    param: "date",
                    descending: true
                },
                SortKey {
                    param: "code",
                    descending: false
                }
            ],
            count: Some(10),
            total: Total::Accurate,
            summary: Some(Summary::Count),
            elements: vec!["id".into(), "status".into()],
            page: Some("opaque-cursor".into()),
            ..Query::default()
        }
    );
    assert!(q.warnings.is_empty());
    assert_eq!(parsed("Patient", "_count=0").query.count, Some(0));
}

#[test]
fn includes_and_revincludes() {
    let include = |source_type, param, target_type, iterate| Include {
        source_type,
        param,
        target_type,
        iterate,
    };
    let q = parsed(
        "Observation",
        "_include=Observation:subject&_include=Observation:subject:Patient&_include:iterate=Patient:general-practitioner&_revinclude=Provenance:target",
    )
    .query;
    assert_eq!(
        q.include,
        vec![
            include("Observation", "subject", None, false),
            include("Observation", "subject", Some("Patient"), false),
            include("Patient", "general-practitioner", None, true),
        ]
    );
    assert_eq!(
        q.revinclude,
        vec![include("Provenance", "target", None, false)]
    );

    // `*` is every reference parameter of the searched type.
    let q = parsed("Observation", "_include=*").query;
    assert!(q
        .include
        .contains(&include("Observation", "subject", None, false)));
    assert!(q
        .include
        .contains(&include("Observation", "performer", None, false)));
    assert!(q.include.iter().all(|i| i.source_type == "Observation"));
    // And for `_revinclude`, every reference parameter of any type that can point here.
    let q = parsed("Patient", "_revinclude=*").query;
    assert!(q
        .revinclude
        .contains(&include("Observation", "subject", Some("Patient"), false)));
    assert!(q
        .revinclude
        .contains(&include("Encounter", "patient", Some("Patient"), false)));
}

#[test]
fn searches_across_all_types_take_common_parameters() {
    let q = match parse(None, &pairs("_id=1,2&_lastUpdated=ge2024"), true) {
        Ok(parsed) => parsed.query,
        Err(issues) => panic!("{issues:#?}"),
    };
    assert_eq!(q.resource_type, None);
    assert_eq!(q.clauses.len(), 2);
    check_errors(None, "_sort=birthdate", &["birthdate"]);
}

#[test]
fn unknown_parameters_and_modifiers_are_warnings_when_lenient_and_errors_when_strict() {
    for query in [
        "nonsense=1",
        "name:nonsense=x",
        "birthdate:exact=2020",
        "gender:in=http://hl7.org/fhir/ValueSet/administrative-gender",
        "_has:Observation:nonsense:code=1",
        "_has:NoSuchType:patient:code=1",
        "general-practitioner.nonsense=1",
        "_include=Patient:nonsense",
        "_text=cancer",
        "_filter=name eq x",
        "_contained=true",
    ] {
        let lenient = parse(Some("Patient"), &pairs(query), false);
        let warnings = match lenient {
            Ok(parsed) => {
                assert!(
                    parsed.query.clauses.is_empty(),
                    "{query}: {:?}",
                    parsed.query
                );
                parsed.warnings
            }
            Err(issues) => panic!("{query}: rejected under lenient handling: {issues:#?}"),
        };
        assert_eq!(warnings.len(), 1, "{query}: {warnings:#?}");
        assert_eq!(warnings[0].severity, Severity::Warning, "{query}");
        let strict = parse(Some("Patient"), &pairs(query), true);
        match strict {
            Err(issues) => assert!(issues.iter().any(Issue::is_error), "{query}"),
            Ok(parsed) => panic!(
                "{query}: accepted under strict handling: {:?}",
                parsed.query
            ),
        }
    }
    // What is known still applies next to what is ignored.
    let parsed = parse(Some("Patient"), &pairs("nonsense=1&gender=male"), false).expect("lenient");
    assert_eq!(
        parsed.query.clauses,
        vec![any(vec![index("gender", code(None, Some("male")))])]
    );
    assert!(parsed.warnings[0].diagnostics.contains("nonsense"));
}

#[test]
fn malformed_values_are_errors_and_all_are_reported() {
    check_errors(Some("Patient"), "birthdate=2020-13-01", &["birthdate"]);
    check_errors(Some("Patient"), "birthdate=xx2020", &["birthdate"]);
    check_errors(Some("Patient"), "birthdate=2020-02-30", &["birthdate"]);
    check_errors(Some("RiskAssessment"), "probability=high", &["probability"]);
    check_errors(Some("RiskAssessment"), "probability=gt", &["probability"]);
    check_errors(Some("Patient"), "_count=-1", &["_count"]);
    check_errors(Some("Patient"), "_count=ten", &["_count"]);
    check_errors(Some("Patient"), "_sort=nonsense", &["nonsense"]);
    check_errors(Some("Patient"), "_total=maybe", &["_total"]);
    check_errors(Some("Patient"), "_summary=maybe", &["_summary"]);
    check_errors(Some("Patient"), "gender:missing=perhaps", &["gender"]);
    check_errors(Some("Patient"), "identifier=a|b|c", &["identifier"]);
    check_errors(Some("Patient"), "identifier:of-type=a|b", &["identifier"]);
    check_errors(Some("Observation"), "subject=Patient/", &["subject"]);
    check_errors(Some("Observation"), "subject=Nonsense/1", &["subject"]);
    check_errors(
        Some("Observation"),
        "value-quantity=abc|x|y",
        &["value-quantity"],
    );
    check_errors(
        Some("Observation"),
        "code-value-quantity=http://loinc.org|8480-6",
        &["code-value-quantity"],
    );
    check_errors(Some("Patient"), "_include=nonsense", &["_include"]);
    check_errors(Some("Patient"), "_has:Observation", &["_has"]);
    // Every problem at once, each naming its parameter.
    check_errors(
        Some("Patient"),
        "birthdate=2020-13&_count=x&gender:missing=maybe&_sort=nonsense",
        &["birthdate", "_count", "gender", "nonsense"],
    );
    // An unknown type is always an error.
    assert!(parse(Some("Nonsense"), &pairs("_id=1"), false).is_err());
}

/// A tiny deterministic generator (xorshift64*), so the test needs no dependency and always runs the same.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_arbitrary_input() {
    const PIECES: &[&str] = &[
        "_has:",
        "Observation",
        "Patient",
        ":",
        ".",
        ",",
        "|",
        "$",
        "\\",
        "=",
        "&",
        "-",
        "+",
        " ",
        "é",
        "💥",
        "ge",
        "eb",
        "sa",
        "2024",
        "-13",
        "-02-30",
        "T24:00",
        "Z",
        "+14:00",
        "1e400",
        "1.",
        "NaN",
        "*",
        "_include",
        "_revinclude",
        ":iterate",
        "_sort",
        "_count",
        "_elements",
        "_summary",
        "_total",
        "name",
        "subject",
        "code-value-quantity",
        "value-quantity",
        "identifier",
        "of-type",
        "missing",
        "not",
        "text",
        "exact",
        "below",
        "above",
        "birthdate",
        "general-practitioner",
        "organization",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "urn:uuid:",
        "http://x/",
        "/_history/",
        "\u{0}",
        "%",
        "?",
        "#",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let types = [
        Some("Patient"),
        Some("Observation"),
        Some("Encounter"),
        None,
    ];
    for _ in 0..4000 {
        let mut params = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let mut name = String::new();
            let mut value = String::new();
            for _ in 0..rng.below(6) {
                name.push_str(PIECES[rng.below(PIECES.len())]);
            }
            for _ in 0..rng.below(8) {
                value.push_str(PIECES[rng.below(PIECES.len())]);
            }
            params.push((name, value));
        }
        let ty = types[rng.below(types.len())];
        for strict in [false, true] {
            let _ = parse(ty, &params, strict);
        }
    }
}

/// Long chains through parameters that can point at almost any type (Task.subject refers to 145 types, 46
/// of which have a `subject` of their own) must not make the parser try every path: they are refused as
/// too costly, quickly; naming the type at each link keeps them cheap.
#[test]
fn long_chains_are_refused_quickly() {
    let too_costly = |links: usize, step: &str| {
        let name = vec![step; links].join(".") + ".name";
        let start = std::time::Instant::now();
        let result = parse(Some("Task"), &[(name, "x".to_string())], false);
        let elapsed = start.elapsed();
        assert!(elapsed.as_millis() < 500, "{links} links took {elapsed:?}");
        match result {
            Err(issues) => issues.iter().any(|i| i.code.code() == "too-costly"),
            Ok(_) => false,
        }
    };
    assert!(!too_costly(1, "subject"));
    assert!(too_costly(3, "subject"));
    assert!(too_costly(7, "subject:Task"));
    assert!(too_costly(40, "subject"));
    assert!(!too_costly(6, "subject:Task"));
    // _has steps count as links too.
    let has = "_has:Task:subject:".repeat(8) + "status";
    assert!(parse(Some("Task"), &[(has, "x".to_string())], false).is_err());
}
