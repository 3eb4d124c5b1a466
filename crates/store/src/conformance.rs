//! The storage conformance suite: one set of behaviours every engine must show, run against SQLite
//! and PostgreSQL by the tests in `tests/`.
//!
//! Each behaviour is a public async function taking a fresh, empty [`Store`]; it panics (like any
//! test) when the engine misbehaves. [`for_each_conformance_test!`](crate::for_each_conformance_test)
//! names them all once, so each engine's test file runs the same list. The data is synthetic and
//! built by hand: index rows as the extractor would make them, queries as the parser would.

use fhir::search::{
    Clause, CompositePart, Include, IndexEntry, IndexValue, Predicate, Prefix, Query, SortKey,
    StringMatch, Test, TokenTest, TokenValue, Total, UriMatch,
};
use serde_json::Value;

use crate::{
    chain_hash, Appended, AuditCheck, AuditFault, AuditHash, AuditQuery, AuditRecord,
    CompartmentRequest, HistoryRequest, HistoryScope, NewAuditRecord, SearchOptions, SearchPage,
    Store, StoreError, Stored, Write, WriteOp,
};

/// Calls `$m!(name, name, ...)` with every behaviour of the suite, so that one list serves every engine.
#[macro_export]
macro_rules! for_each_conformance_test {
    ($m:ident) => {
        $m!(
            create_read_vread,
            conflict_on_stale_expect,
            batch_is_atomic,
            delete_keeps_history,
            history_scopes_since_at_and_paging,
            search_string,
            search_token,
            search_date_prefixes,
            search_number_and_quantity,
            search_reference_and_uri,
            search_chain,
            search_has,
            search_composite,
            sort_on_several_keys,
            paging_is_stable_across_inserts,
            paging_is_stable_across_updates_and_deletes,
            compartment_paging_is_stable,
            patients_come_with_versions,
            include_revinclude_iterate,
            compartment_lists_live_resources,
            total_counts_all_matches,
            search_across_types,
            bad_cursor_is_refused,
            audit_appends_form_a_chain,
            audit_concurrent_appends_form_one_chain,
            audit_commit_with_writes_is_atomic,
            audit_search_by_index,
            clients_register_read_list_revoke,
            jti_is_refused_until_it_expires,
            jti_concurrent_callers_get_one_true,
            token_key_is_made_once,
            accounts_add_find_list_disable,
            accounts_failed_attempts_and_locks,
            accounts_totp_step_is_taken_once,
            accounts_sessions_live_and_end,
            accounts_invitations_set_a_password_once,
            purge_removes_every_row,
            onboarding_applications_stored_and_found,
            onboarding_steps_once_and_on_the_path,
            onboarding_decisions_once_with_their_participant,
            onboarding_agreements_and_signatures,
            onboarding_facts_for_compliance,
        );
    };
}

/// 2023-11-14T22:13:20Z, the instant every test's history starts at.
pub const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

// ---- building writes and index rows ----------------------------------------------------------

fn json(ty: &str, id: &str, version: i64) -> String {
    format!(r#"{{"resourceType":"{ty}","id":"{id}","meta":{{"versionId":"{version}"}}}}"#)
}

/// A new version `version` of `ty/id` (expecting `version - 1`, or nothing for 1) with index rows.
pub fn put(ty: &str, id: &str, version: i64, index: Vec<IndexEntry>) -> Write {
    put_at(ty, id, version, T0 + version, index, Vec::new())
}

/// [`put`] with a time and compartments.
pub fn put_at(
    ty: &str,
    id: &str,
    version: i64,
    at: i64,
    index: Vec<IndexEntry>,
    compartments: Vec<&str>,
) -> Write {
    Write {
        resource_type: ty.to_string(),
        id: id.to_string(),
        version,
        expect: (version > 1).then_some(version - 1),
        last_updated: at,
        op: WriteOp::Put {
            json: json(ty, id, version),
            index,
            compartments: compartments.into_iter().map(str::to_string).collect(),
        },
    }
}

/// A deletion making version `version`.
pub fn delete(ty: &str, id: &str, version: i64, at: i64) -> Write {
    Write {
        resource_type: ty.to_string(),
        id: id.to_string(),
        version,
        expect: Some(version - 1),
        last_updated: at,
        op: WriteOp::Delete,
    }
}

fn entry(param: &'static str, value: IndexValue) -> IndexEntry {
    IndexEntry {
        param,
        value,
        composite: None,
    }
}

pub fn string(param: &'static str, exact: &str) -> IndexEntry {
    entry(
        param,
        IndexValue::String {
            normalized: exact.to_lowercase(),
            exact: exact.to_string(),
        },
    )
}

pub fn token(param: &'static str, system: Option<&str>, code: &str) -> IndexEntry {
    entry(
        param,
        IndexValue::Token(TokenValue {
            system: system.map(str::to_string),
            code: Some(code.to_string()),
            text: None,
        }),
    )
}

pub fn token_text(param: &'static str, code: &str, text: &str) -> IndexEntry {
    entry(
        param,
        IndexValue::Token(TokenValue {
            system: None,
            code: Some(code.to_string()),
            text: Some(text.to_string()),
        }),
    )
}

pub fn date(param: &'static str, low: i64, high: i64) -> IndexEntry {
    entry(param, IndexValue::Date { low, high })
}

pub fn number(param: &'static str, value: f64) -> IndexEntry {
    entry(
        param,
        IndexValue::Number {
            low: value,
            high: value,
        },
    )
}

pub fn quantity(param: &'static str, value: f64, system: &str, code: &str) -> IndexEntry {
    entry(
        param,
        IndexValue::Quantity {
            system: Some(system.to_string()),
            code: Some(code.to_string()),
            unit: Some(code.to_string()),
            low: value,
            high: value,
        },
    )
}

pub fn reference(param: &'static str, ty: &str, id: &str) -> IndexEntry {
    entry(
        param,
        IndexValue::Reference {
            target_type: Some(ty.to_string()),
            target_id: Some(id.to_string()),
            url: None,
            version: None,
        },
    )
}

pub fn uri(param: &'static str, value: &str) -> IndexEntry {
    entry(param, IndexValue::Uri(value.to_string()))
}

fn part(mut e: IndexEntry, group: u32, component: u8) -> IndexEntry {
    e.composite = Some(CompositePart { group, component });
    e
}

// ---- building queries ------------------------------------------------------------------------

pub fn index(param: &'static str, test: Test) -> Predicate {
    Predicate::Index { param, test }
}

/// A query on `ty` that ANDs `clauses`, each ORing its predicates.
pub fn query(ty: &'static str, clauses: Vec<Vec<Predicate>>) -> Query {
    Query {
        resource_type: Some(ty),
        clauses: clauses.into_iter().map(|any| Clause { any }).collect(),
        ..Query::default()
    }
}

fn code(code: &str) -> Test {
    Test::Token(TokenTest::Code {
        system: None,
        code: Some(code.to_string()),
    })
}

fn starts(value: &str) -> Test {
    Test::String {
        value: value.to_string(),
        mode: StringMatch::StartsWith,
    }
}

fn refers(ty: &str, id: &str) -> Test {
    Test::Reference {
        target_type: Some(ty.to_string()),
        target_id: Some(id.to_string()),
        url: None,
        version: None,
    }
}

fn options(count: usize) -> SearchOptions {
    SearchOptions {
        count,
        max_includes: 100,
    }
}

fn key(stored: &Stored) -> String {
    format!("{}/{}", stored.resource_type, stored.id)
}

fn keys(stored: &[Stored]) -> Vec<String> {
    stored.iter().map(key).collect()
}

async fn commit(store: &Store, writes: Vec<Write>) {
    if let Err(e) = store.commit(writes).await {
        panic!("commit failed: {e}");
    }
}

async fn search(store: &Store, query: &Query, options: &SearchOptions) -> SearchPage {
    match store.search(query, options).await {
        Ok(page) => page,
        Err(e) => panic!("search {query:?} failed: {e}"),
    }
}

/// Runs `query` and compares the matches with `expected` (`Type/id`): in order when the query sorts,
/// as sets otherwise.
async fn check(store: &Store, query: &Query, expected: &[&str]) {
    let page = search(store, query, &options(100)).await;
    let mut got = keys(&page.matches);
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    if query.sort.is_empty() {
        got.sort();
        expected.sort();
    }
    assert_eq!(got, expected, "query {query:?}");
}

fn same_json(a: &str, b: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    parse(a).is_some() && parse(a) == parse(b)
}

// ---- the behaviours --------------------------------------------------------------------------

/// Created resources read back as written; updates make new versions and old ones stay readable.
pub async fn create_read_vread(store: &Store) {
    commit(
        store,
        vec![put("Patient", "p1", 1, vec![string("name", "Smith")])],
    )
    .await;
    let v1 = store
        .read("Patient", "p1")
        .await
        .ok()
        .flatten()
        .expect("p1 is there");
    assert_eq!(
        (v1.version, v1.deleted, v1.last_updated),
        (1, false, T0 + 1)
    );
    assert!(
        same_json(&v1.json, &json("Patient", "p1", 1)),
        "{}",
        v1.json
    );
    assert!(
        v1.json.starts_with(r#"{"resourceType""#),
        "resourceType comes first: {}",
        v1.json
    );

    commit(
        store,
        vec![put("Patient", "p1", 2, vec![string("name", "Jones")])],
    )
    .await;
    let v2 = store
        .read("Patient", "p1")
        .await
        .ok()
        .flatten()
        .expect("p1 is there");
    assert_eq!(v2.version, 2);
    assert!(same_json(&v2.json, &json("Patient", "p1", 2)));
    let old = store
        .vread("Patient", "p1", 1)
        .await
        .ok()
        .flatten()
        .expect("version 1 kept");
    assert!(same_json(&old.json, &json("Patient", "p1", 1)));
    assert_eq!(store.vread("Patient", "p1", 3).await.ok().flatten(), None);
    assert_eq!(store.read("Patient", "nobody").await.ok().flatten(), None);
    assert_eq!(store.read("Observation", "p1").await.ok().flatten(), None);

    let current = store
        .current(&[
            ("Patient".into(), "p1".into()),
            ("Patient".into(), "nobody".into()),
        ])
        .await
        .expect("current");
    assert_eq!(current.len(), 2);
    assert_eq!(
        current[0].map(|c| (c.version, c.deleted, c.last_updated)),
        Some((2, false, T0 + 2))
    );
    assert_eq!(current[1], None);
    // The index follows the current version only.
    check(
        store,
        &query("Patient", vec![vec![index("name", starts("jones"))]]),
        &["Patient/p1"],
    )
    .await;
    check(
        store,
        &query("Patient", vec![vec![index("name", starts("smith"))]]),
        &[],
    )
    .await;
    assert!(store.health().await.is_ok());
}

fn is_conflict(result: crate::Result<()>, id: &str) -> bool {
    matches!(result, Err(StoreError::Conflict { id: ref got, .. }) if got == id)
}

/// A write whose expectation is stale, or a create of an existing id, is a conflict and changes nothing.
pub async fn conflict_on_stale_expect(store: &Store) {
    commit(store, vec![put("Patient", "p1", 1, vec![])]).await;
    commit(store, vec![put("Patient", "p1", 2, vec![])]).await;
    assert!(is_conflict(
        store.commit(vec![put("Patient", "p1", 1, vec![])]).await,
        "p1"
    ));
    let mut stale = put("Patient", "p1", 2, vec![]);
    stale.expect = Some(1);
    assert!(is_conflict(store.commit(vec![stale]).await, "p1"));
    assert!(is_conflict(
        store.commit(vec![put("Patient", "ghost", 2, vec![])]).await,
        "ghost"
    ));
    assert_eq!(
        store
            .read("Patient", "p1")
            .await
            .ok()
            .flatten()
            .map(|s| s.version),
        Some(2)
    );
    assert_eq!(store.read("Patient", "ghost").await.ok().flatten(), None);
}

/// A batch with one failed expectation writes nothing at all; a good batch writes everything,
/// including two versions of one resource.
pub async fn batch_is_atomic(store: &Store) {
    commit(
        store,
        vec![put(
            "Patient",
            "p1",
            1,
            vec![token("identifier", Some("urn:mrn"), "1")],
        )],
    )
    .await;
    let result = store
        .commit(vec![
            put(
                "Patient",
                "a",
                1,
                vec![token("identifier", Some("urn:mrn"), "1")],
            ),
            put("Observation", "b", 1, vec![]),
            put("Patient", "p1", 3, vec![]),
        ])
        .await;
    assert!(is_conflict(result, "p1"), "the stale write fails the batch");
    assert_eq!(store.read("Patient", "a").await.ok().flatten(), None);
    assert_eq!(store.read("Observation", "b").await.ok().flatten(), None);
    check(
        store,
        &query("Patient", vec![vec![index("identifier", code("1"))]]),
        &["Patient/p1"],
    )
    .await;

    commit(
        store,
        vec![
            put(
                "Patient",
                "a",
                1,
                vec![token("identifier", Some("urn:mrn"), "2")],
            ),
            put(
                "Patient",
                "a",
                2,
                vec![token("identifier", Some("urn:mrn"), "3")],
            ),
            put("Observation", "b", 1, vec![]),
            put(
                "Patient",
                "p1",
                2,
                vec![token("identifier", Some("urn:mrn"), "1")],
            ),
        ],
    )
    .await;
    assert_eq!(
        store
            .read("Patient", "a")
            .await
            .ok()
            .flatten()
            .map(|s| s.version),
        Some(2)
    );
    check(
        store,
        &query("Patient", vec![vec![index("identifier", code("3"))]]),
        &["Patient/a"],
    )
    .await;
    check(
        store,
        &query("Patient", vec![vec![index("identifier", code("2"))]]),
        &[],
    )
    .await;
}

/// A deletion is a tombstone version: read shows it, history keeps every version, search and
/// compartments forget the resource, and it can come back.
pub async fn delete_keeps_history(store: &Store) {
    commit(
        store,
        vec![put_at(
            "Observation",
            "o1",
            1,
            T0,
            vec![code_row("x")],
            vec!["p1"],
        )],
    )
    .await;
    commit(store, vec![delete("Observation", "o1", 2, T0 + 10)]).await;
    let tomb = store
        .read("Observation", "o1")
        .await
        .ok()
        .flatten()
        .expect("tombstone");
    assert_eq!(
        (
            tomb.version,
            tomb.deleted,
            tomb.json.as_str(),
            tomb.last_updated
        ),
        (2, true, "", T0 + 10)
    );
    assert!(store
        .vread("Observation", "o1", 1)
        .await
        .ok()
        .flatten()
        .is_some_and(|s| !s.deleted));
    check(
        store,
        &query("Observation", vec![vec![index("code", code("x"))]]),
        &[],
    )
    .await;
    check(store, &query("Observation", vec![]), &[]).await;
    let everything = store
        .compartment(&compartment_request("p1", 10))
        .await
        .expect("compartment");
    assert!(everything.matches.is_empty());
    let history = store
        .history(&history_request(
            HistoryScope::Instance("Observation".into(), "o1".into()),
            10,
        ))
        .await
        .expect("history");
    let versions: Vec<(i64, bool)> = history
        .entries
        .iter()
        .map(|s| (s.version, s.deleted))
        .collect();
    assert_eq!(versions, vec![(2, true), (1, false)]);
    assert_eq!(history.total, Some(2));
    // Deleting needs the current version too; a resource can be created again over its tombstone.
    assert!(is_conflict(
        store
            .commit(vec![delete("Observation", "o1", 2, T0 + 11)])
            .await,
        "o1"
    ));
    commit(
        store,
        vec![put_at(
            "Observation",
            "o1",
            3,
            T0 + 20,
            vec![code_row("x")],
            vec!["p1"],
        )],
    )
    .await;
    check(
        store,
        &query("Observation", vec![vec![index("code", code("x"))]]),
        &["Observation/o1"],
    )
    .await;
}

fn code_row(value: &str) -> IndexEntry {
    token("code", Some("http://loinc.org"), value)
}

fn history_request(scope: HistoryScope, count: usize) -> HistoryRequest {
    HistoryRequest {
        scope,
        since: None,
        at: None,
        count,
        cursor: None,
    }
}

fn compartment_request(patient: &str, count: usize) -> CompartmentRequest {
    CompartmentRequest {
        patient_ids: vec![patient.to_string()],
        linked: false,
        types: Vec::new(),
        since: None,
        count,
        cursor: None,
    }
}

fn versions(entries: &[Stored]) -> Vec<String> {
    entries
        .iter()
        .map(|s| format!("{}/{}/{}", s.resource_type, s.id, s.version))
        .collect()
}

/// History at instance, type and system level, newest first, with `_since`, `_at` and paging.
pub async fn history_scopes_since_at_and_paging(store: &Store) {
    commit(store, vec![put_at("Patient", "a", 1, T0, vec![], vec![])]).await;
    commit(
        store,
        vec![put_at("Observation", "o", 1, T0 + 1000, vec![], vec![])],
    )
    .await;
    commit(
        store,
        vec![put_at("Patient", "a", 2, T0 + 2000, vec![], vec![])],
    )
    .await;
    commit(store, vec![delete("Observation", "o", 2, T0 + 3000)]).await;

    let cases: Vec<(HistoryRequest, Vec<&str>)> = vec![
        (
            history_request(HistoryScope::System, 10),
            vec![
                "Observation/o/2",
                "Patient/a/2",
                "Observation/o/1",
                "Patient/a/1",
            ],
        ),
        (
            history_request(HistoryScope::Type("Patient".into()), 10),
            vec!["Patient/a/2", "Patient/a/1"],
        ),
        (
            history_request(HistoryScope::Instance("Observation".into(), "o".into()), 10),
            vec!["Observation/o/2", "Observation/o/1"],
        ),
        (
            HistoryRequest {
                since: Some(T0 + 1500),
                ..history_request(HistoryScope::System, 10)
            },
            vec!["Observation/o/2", "Patient/a/2"],
        ),
        (
            HistoryRequest {
                at: Some((T0 + 1500, T0 + 1500)),
                ..history_request(HistoryScope::System, 10)
            },
            vec!["Observation/o/1", "Patient/a/1"],
        ),
        (
            HistoryRequest {
                at: Some((T0 + 5000, T0 + 5000)),
                ..history_request(HistoryScope::Type("Observation".into()), 10)
            },
            vec!["Observation/o/2"],
        ),
        // A period: every version current at some point of it, also one replaced during it.
        (
            HistoryRequest {
                at: Some((T0 + 1500, T0 + 2500)),
                ..history_request(HistoryScope::System, 10)
            },
            vec!["Patient/a/2", "Observation/o/1", "Patient/a/1"],
        ),
        // A version replaced exactly at the start of the period was not current during it.
        (
            HistoryRequest {
                at: Some((T0 + 2000, T0 + 2999)),
                ..history_request(HistoryScope::Type("Patient".into()), 10)
            },
            vec!["Patient/a/2"],
        ),
    ];
    for (request, expected) in cases {
        let page = store.history(&request).await.expect("history");
        assert_eq!(versions(&page.entries), expected, "{request:?}");
        assert_eq!(page.next, None);
    }

    // Paging one version at a time walks the same list; a write in between does not disturb it.
    let mut request = history_request(HistoryScope::System, 1);
    let mut seen = Vec::new();
    for round in 0..10 {
        let page = store.history(&request).await.expect("history page");
        seen.extend(versions(&page.entries));
        if round == 0 {
            commit(
                store,
                vec![put_at("Patient", "late", 1, T0 + 9000, vec![], vec![])],
            )
            .await;
        }
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![
            "Observation/o/2",
            "Patient/a/2",
            "Observation/o/1",
            "Patient/a/1"
        ]
    );
    request.cursor = Some("not-a-cursor".into());
    assert!(matches!(
        store.history(&request).await,
        Err(StoreError::BadCursor)
    ));
}

/// String search: starts-with on the normalized form, `:exact`, `:contains` (with LIKE's special
/// characters taken literally).
pub async fn search_string(store: &Store) {
    commit(
        store,
        vec![
            put(
                "Patient",
                "smith",
                1,
                vec![string("name", "Smith"), string("name", "Anna")],
            ),
            put("Patient", "smithson", 1, vec![string("name", "Smithson")]),
            put("Patient", "pure", 1, vec![string("name", "100% pure_x")]),
        ],
    )
    .await;
    let s = |value: &str, mode| {
        query(
            "Patient",
            vec![vec![index(
                "name",
                Test::String {
                    value: value.into(),
                    mode,
                },
            )]],
        )
    };
    let cases: Vec<(Query, Vec<&str>)> = vec![
        (
            s("smi", StringMatch::StartsWith),
            vec!["Patient/smith", "Patient/smithson"],
        ),
        (
            s("smith", StringMatch::StartsWith),
            vec!["Patient/smith", "Patient/smithson"],
        ),
        (s("ann", StringMatch::StartsWith), vec!["Patient/smith"]),
        (s("mith", StringMatch::StartsWith), vec![]),
        (s("Smith", StringMatch::Exact), vec!["Patient/smith"]),
        (s("smith", StringMatch::Exact), vec![]),
        (s("hso", StringMatch::Contains), vec!["Patient/smithson"]),
        (s("0% p", StringMatch::Contains), vec!["Patient/pure"]),
        (s("e_x", StringMatch::Contains), vec!["Patient/pure"]),
        (s("h_o", StringMatch::Contains), vec![]),
        (s("%", StringMatch::Contains), vec!["Patient/pure"]),
    ];
    for (q, expected) in cases {
        check(store, &q, &expected).await;
    }
    // OR within a clause, AND across clauses.
    let either = query(
        "Patient",
        vec![vec![
            index("name", starts("ann")),
            index("name", starts("100")),
        ]],
    );
    check(store, &either, &["Patient/smith", "Patient/pure"]).await;
    let both = query(
        "Patient",
        vec![
            vec![index("name", starts("smi"))],
            vec![index("name", starts("ann"))],
        ],
    );
    check(store, &both, &["Patient/smith"]).await;
}

/// Token search: code, `system|code`, `|code`, `system|`, `:text`, `:of-type`, `:not`, `:missing`.
pub async fn search_token(store: &Store) {
    let of_type = entry(
        "identifier",
        IndexValue::IdentifierOfType {
            type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
            type_code: "MR".into(),
            value: "123".into(),
        },
    );
    commit(
        store,
        vec![
            put(
                "Observation",
                "loinc",
                1,
                vec![token("code", Some("http://loinc.org"), "1234"), of_type],
            ),
            put(
                "Observation",
                "snomed",
                1,
                vec![token("code", Some("http://snomed.info/sct"), "1234")],
            ),
            put("Observation", "bare", 1, vec![token("code", None, "1234")]),
            put(
                "Observation",
                "bp",
                1,
                vec![token_text("code", "85354-9", "blood pressure panel")],
            ),
            put("Observation", "none", 1, vec![]),
        ],
    )
    .await;
    let t = |system: Option<Option<&str>>, code: Option<&str>| {
        Test::Token(TokenTest::Code {
            system: system.map(|s| s.map(str::to_string)),
            code: code.map(str::to_string),
        })
    };
    let one = |p: Predicate| query("Observation", vec![vec![p]]);
    let cases: Vec<(Query, Vec<&str>)> = vec![
        (
            one(index("code", t(None, Some("1234")))),
            vec![
                "Observation/loinc",
                "Observation/snomed",
                "Observation/bare",
            ],
        ),
        (
            one(index(
                "code",
                t(Some(Some("http://loinc.org")), Some("1234")),
            )),
            vec!["Observation/loinc"],
        ),
        (
            one(index("code", t(Some(None), Some("1234")))),
            vec!["Observation/bare"],
        ),
        (
            one(index("code", t(Some(Some("http://snomed.info/sct")), None))),
            vec!["Observation/snomed"],
        ),
        (
            one(index("code", Test::Token(TokenTest::Text("blood".into())))),
            vec!["Observation/bp"],
        ),
        (
            one(index(
                "code",
                Test::Token(TokenTest::Text("pressure".into())),
            )),
            vec![],
        ),
        (
            one(index(
                "identifier",
                Test::Token(TokenTest::OfType {
                    type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                    type_code: "MR".into(),
                    value: "123".into(),
                }),
            )),
            vec!["Observation/loinc"],
        ),
        (
            one(index(
                "identifier",
                Test::Token(TokenTest::OfType {
                    type_system: None,
                    type_code: "DL".into(),
                    value: "123".into(),
                }),
            )),
            vec![],
        ),
        (
            one(Predicate::Not {
                param: "code",
                test: t(Some(Some("http://loinc.org")), Some("1234")),
            }),
            vec![
                "Observation/snomed",
                "Observation/bare",
                "Observation/bp",
                "Observation/none",
            ],
        ),
        (
            one(Predicate::Missing {
                param: "code",
                missing: true,
            }),
            vec!["Observation/none"],
        ),
        (
            one(Predicate::Missing {
                param: "code",
                missing: false,
            }),
            vec![
                "Observation/loinc",
                "Observation/snomed",
                "Observation/bare",
                "Observation/bp",
            ],
        ),
        (
            one(Predicate::Missing {
                param: "never-indexed",
                missing: true,
            }),
            vec![
                "Observation/loinc",
                "Observation/snomed",
                "Observation/bare",
                "Observation/bp",
                "Observation/none",
            ],
        ),
        (
            one(Predicate::Missing {
                param: "never-indexed",
                missing: false,
            }),
            vec![],
        ),
    ];
    for (q, expected) in cases {
        check(store, &q, &expected).await;
    }
}

/// 2024-03-01T00:00:00Z.
const MARCH_2024: i64 = 1_709_251_200_000;

/// Date search with every prefix, on points and periods, as FHIR defines them on ranges.
pub async fn search_date_prefixes(store: &Store) {
    let march_end = MARCH_2024 + 31 * DAY - 1;
    commit(
        store,
        vec![
            // A point in mid March; all of March; mid February to mid March; April 10th; January 2023.
            put(
                "Encounter",
                "point",
                1,
                vec![date("date", MARCH_2024 + 14 * DAY, MARCH_2024 + 14 * DAY)],
            ),
            put(
                "Encounter",
                "march",
                1,
                vec![date("date", MARCH_2024, march_end)],
            ),
            put(
                "Encounter",
                "straddle",
                1,
                vec![date("date", MARCH_2024 - 15 * DAY, MARCH_2024 + 14 * DAY)],
            ),
            put(
                "Encounter",
                "april",
                1,
                vec![date("date", march_end + 10 * DAY, march_end + 10 * DAY)],
            ),
            put(
                "Encounter",
                "old",
                1,
                vec![date("date", MARCH_2024 - 425 * DAY, MARCH_2024 - 425 * DAY)],
            ),
        ],
    )
    .await;
    let d = |prefix| {
        query(
            "Encounter",
            vec![vec![index(
                "date",
                Test::Date {
                    prefix,
                    low: MARCH_2024,
                    high: march_end,
                },
            )]],
        )
    };
    let cases: Vec<(Prefix, Vec<&str>)> = vec![
        (Prefix::Eq, vec!["point", "march"]),
        (Prefix::Ne, vec!["straddle", "april", "old"]),
        (Prefix::Gt, vec!["april"]),
        (Prefix::Lt, vec!["straddle", "old"]),
        (Prefix::Ge, vec!["point", "march", "april"]),
        (Prefix::Le, vec!["point", "march", "straddle", "old"]),
        (Prefix::Sa, vec!["april"]),
        (Prefix::Eb, vec!["old"]),
        (Prefix::Ap, vec!["point", "march", "straddle", "april"]),
    ];
    for (prefix, expected) in cases {
        let expected: Vec<String> = expected
            .iter()
            .map(|id| format!("Encounter/{id}"))
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check(store, &d(prefix), &expected).await;
    }
    // A range as two clauses: on or after March 10th and before March 20th.
    let ten = MARCH_2024 + 9 * DAY;
    let twenty = MARCH_2024 + 19 * DAY;
    let range = query(
        "Encounter",
        vec![
            vec![index(
                "date",
                Test::Date {
                    prefix: Prefix::Ge,
                    low: ten,
                    high: ten + DAY - 1,
                },
            )],
            vec![index(
                "date",
                Test::Date {
                    prefix: Prefix::Lt,
                    low: twenty,
                    high: twenty + DAY - 1,
                },
            )],
        ],
    );
    check(
        store,
        &range,
        &["Encounter/point", "Encounter/straddle", "Encounter/march"],
    )
    .await;
}

/// Number and quantity search with prefixes, implicit precision ranges and units.
pub async fn search_number_and_quantity(store: &Store) {
    commit(
        store,
        vec![
            put(
                "RiskAssessment",
                "five",
                1,
                vec![number("probability", 5.0)],
            ),
            put(
                "RiskAssessment",
                "ten",
                1,
                vec![number("probability", 10.0)],
            ),
            put(
                "RiskAssessment",
                "fifteen",
                1,
                vec![number("probability", 15.0)],
            ),
            put(
                "Observation",
                "mg",
                1,
                vec![quantity(
                    "value-quantity",
                    5.4,
                    "http://unitsofmeasure.org",
                    "mg",
                )],
            ),
            put(
                "Observation",
                "g",
                1,
                vec![quantity(
                    "value-quantity",
                    5.4,
                    "http://unitsofmeasure.org",
                    "g",
                )],
            ),
            put(
                "Observation",
                "big",
                1,
                vec![quantity(
                    "value-quantity",
                    70.0,
                    "http://unitsofmeasure.org",
                    "mg",
                )],
            ),
        ],
    )
    .await;
    // "10" searches [9.5, 10.5].
    let n = |prefix| {
        query(
            "RiskAssessment",
            vec![vec![index(
                "probability",
                Test::Number {
                    prefix,
                    low: 9.5,
                    high: 10.5,
                },
            )]],
        )
    };
    let cases: Vec<(Prefix, Vec<&str>)> = vec![
        (Prefix::Eq, vec!["ten"]),
        (Prefix::Ne, vec!["five", "fifteen"]),
        (Prefix::Gt, vec!["fifteen"]),
        (Prefix::Ge, vec!["ten", "fifteen"]),
        (Prefix::Lt, vec!["five"]),
        (Prefix::Le, vec!["five", "ten"]),
        (Prefix::Ap, vec!["ten"]),
    ];
    for (prefix, expected) in cases {
        let expected: Vec<String> = expected
            .iter()
            .map(|id| format!("RiskAssessment/{id}"))
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check(store, &n(prefix), &expected).await;
    }
    let q = |prefix, low, high, system: Option<&str>, code: Option<&str>| {
        query(
            "Observation",
            vec![vec![index(
                "value-quantity",
                Test::Quantity {
                    prefix,
                    low,
                    high,
                    system: system.map(str::to_string),
                    code: code.map(str::to_string),
                },
            )]],
        )
    };
    let ucum = Some("http://unitsofmeasure.org");
    check(
        store,
        &q(Prefix::Eq, 5.35, 5.45, ucum, Some("mg")),
        &["Observation/mg"],
    )
    .await;
    check(
        store,
        &q(Prefix::Eq, 5.35, 5.45, None, Some("g")),
        &["Observation/g"],
    )
    .await;
    check(
        store,
        &q(Prefix::Eq, 5.35, 5.45, None, None),
        &["Observation/mg", "Observation/g"],
    )
    .await;
    check(
        store,
        &q(Prefix::Gt, 4.5, 5.5, ucum, Some("mg")),
        &["Observation/big"],
    )
    .await;
    check(
        store,
        &q(Prefix::Le, 69.5, 70.5, None, Some("mg")),
        &["Observation/mg", "Observation/big"],
    )
    .await;
}

/// Reference search by type and id, by id alone and by absolute url; uri exact, `:below`, `:above`.
pub async fn search_reference_and_uri(store: &Store) {
    let external = entry(
        "subject",
        IndexValue::Reference {
            target_type: None,
            target_id: None,
            url: Some("http://other.org/fhir/Patient/9".into()),
            version: None,
        },
    );
    commit(
        store,
        vec![
            put(
                "Observation",
                "o1",
                1,
                vec![reference("subject", "Patient", "p1")],
            ),
            put(
                "Observation",
                "o2",
                1,
                vec![reference("subject", "Group", "p1")],
            ),
            put(
                "Observation",
                "o3",
                1,
                vec![reference("subject", "Patient", "p2")],
            ),
            put("Observation", "o4", 1, vec![external]),
            put(
                "ValueSet",
                "v1",
                1,
                vec![uri("url", "http://acme.org/fhir/ValueSet/a")],
            ),
            put(
                "ValueSet",
                "v2",
                1,
                vec![uri("url", "http://acme.org/fhir/ValueSet/b")],
            ),
            put("ValueSet", "v3", 1, vec![uri("url", "http://acme.org")]),
        ],
    )
    .await;
    let r = |ty: Option<&str>, id: Option<&str>, url: Option<&str>| {
        query(
            "Observation",
            vec![vec![index(
                "subject",
                Test::Reference {
                    target_type: ty.map(str::to_string),
                    target_id: id.map(str::to_string),
                    url: url.map(str::to_string),
                    version: None,
                },
            )]],
        )
    };
    check(
        store,
        &r(Some("Patient"), Some("p1"), None),
        &["Observation/o1"],
    )
    .await;
    check(
        store,
        &r(None, Some("p1"), None),
        &["Observation/o1", "Observation/o2"],
    )
    .await;
    check(
        store,
        &r(None, None, Some("http://other.org/fhir/Patient/9")),
        &["Observation/o4"],
    )
    .await;
    check(store, &r(Some("Patient"), Some("p3"), None), &[]).await;
    let u = |value: &str, mode| {
        query(
            "ValueSet",
            vec![vec![index(
                "url",
                Test::Uri {
                    value: value.into(),
                    mode,
                },
            )]],
        )
    };
    check(
        store,
        &u("http://acme.org/fhir/ValueSet/a", UriMatch::Exact),
        &["ValueSet/v1"],
    )
    .await;
    check(store, &u("http://acme.org/fhir", UriMatch::Exact), &[]).await;
    check(
        store,
        &u("http://acme.org/fhir", UriMatch::Below),
        &["ValueSet/v1", "ValueSet/v2"],
    )
    .await;
    check(
        store,
        &u("http://acme.org/fhir/ValueSet/b", UriMatch::Above),
        &["ValueSet/v2", "ValueSet/v3"],
    )
    .await;
}

/// Chained parameters, one and two levels deep; deleted targets do not count.
pub async fn search_chain(store: &Store) {
    commit(
        store,
        vec![
            put(
                "Organization",
                "acme",
                1,
                vec![string("name", "Acme Health")],
            ),
            put("Organization", "other", 1, vec![string("name", "Other")]),
            put(
                "Patient",
                "p1",
                1,
                vec![
                    string("name", "Smith"),
                    reference("organization", "Organization", "acme"),
                ],
            ),
            put(
                "Patient",
                "p2",
                1,
                vec![
                    string("name", "Jones"),
                    reference("organization", "Organization", "other"),
                ],
            ),
            put("Patient", "p3", 1, vec![string("name", "Smithers")]),
            put(
                "Observation",
                "o1",
                1,
                vec![reference("subject", "Patient", "p1")],
            ),
            put(
                "Observation",
                "o2",
                1,
                vec![reference("subject", "Patient", "p2")],
            ),
            put(
                "Observation",
                "o3",
                1,
                vec![reference("subject", "Patient", "p3")],
            ),
            put(
                "Observation",
                "o4",
                1,
                vec![reference("subject", "Group", "p1")],
            ),
        ],
    )
    .await;
    let chain = |inner: Predicate| {
        query(
            "Observation",
            vec![vec![Predicate::Chain {
                param: "subject",
                target_types: vec!["Patient"],
                inner: Box::new(inner),
            }]],
        )
    };
    check(
        store,
        &chain(index("name", starts("smith"))),
        &["Observation/o1", "Observation/o3"],
    )
    .await;
    check(
        store,
        &chain(index("name", starts("jones"))),
        &["Observation/o2"],
    )
    .await;
    let nested = chain(Predicate::Chain {
        param: "organization",
        target_types: vec!["Organization"],
        inner: Box::new(index("name", starts("acme"))),
    });
    check(store, &nested, &["Observation/o1"]).await;
    commit(store, vec![delete("Patient", "p3", 2, T0 + 50)]).await;
    check(
        store,
        &chain(index("name", starts("smith"))),
        &["Observation/o1"],
    )
    .await;
}

/// Reverse chaining (`_has`), also nested.
pub async fn search_has(store: &Store) {
    commit(
        store,
        vec![
            put("Patient", "p1", 1, vec![token("_id", None, "p1")]),
            put("Patient", "p2", 1, vec![token("_id", None, "p2")]),
            put("Patient", "p3", 1, vec![token("_id", None, "p3")]),
            put(
                "Observation",
                "o1",
                1,
                vec![reference("subject", "Patient", "p1"), code_row("bp")],
            ),
            put(
                "Observation",
                "o2",
                1,
                vec![reference("subject", "Patient", "p2"), code_row("hr")],
            ),
            put(
                "Observation",
                "o3",
                1,
                vec![reference("subject", "Group", "p3"), code_row("bp")],
            ),
            put(
                "Provenance",
                "v1",
                1,
                vec![
                    reference("target", "Observation", "o2"),
                    string("agent", "Dr Who"),
                ],
            ),
        ],
    )
    .await;
    let has = |inner: Predicate| {
        query(
            "Patient",
            vec![vec![Predicate::Has {
                source_type: "Observation",
                ref_param: "subject",
                inner: Box::new(inner),
            }]],
        )
    };
    check(store, &has(index("code", code("bp"))), &["Patient/p1"]).await;
    check(store, &has(index("code", code("xx"))), &[]).await;
    let nested = has(Predicate::Has {
        source_type: "Provenance",
        ref_param: "target",
        inner: Box::new(index("agent", starts("dr"))),
    });
    check(store, &nested, &["Patient/p2"]).await;
    // With a more selective clause beside it (which then drives the search).
    let id = |id: &str| index("_id", code(id));
    let mut both = has(index("code", code("bp")));
    both.clauses.push(Clause {
        any: vec![id("p1")],
    });
    check(store, &both, &["Patient/p1"]).await;
    let mut neither = has(index("code", code("bp")));
    neither.clauses.push(Clause {
        any: vec![id("p2")],
    });
    check(store, &neither, &[]).await;
}

/// A composite matches only when every component matches within the same item.
pub async fn search_composite(store: &Store) {
    let bp = |code: &str, value: f64, group: u32| {
        vec![
            part(
                token(
                    "component-code-value-quantity",
                    Some("http://loinc.org"),
                    code,
                ),
                group,
                0,
            ),
            part(
                quantity(
                    "component-code-value-quantity",
                    value,
                    "http://unitsofmeasure.org",
                    "mm[Hg]",
                ),
                group,
                1,
            ),
        ]
    };
    let mut rows = bp("systolic", 120.0, 0);
    rows.extend(bp("diastolic", 80.0, 1));
    commit(
        store,
        vec![
            put(
                "Observation",
                "bp",
                1,
                [rows, vec![code_row("panel")]].concat(),
            ),
            put(
                "Observation",
                "other",
                1,
                [bp("systolic", 80.0, 0), vec![code_row("panel")]].concat(),
            ),
        ],
    )
    .await;
    let composite = |c: &str, low: f64, high: f64| {
        query(
            "Observation",
            vec![vec![Predicate::Composite {
                param: "component-code-value-quantity",
                components: vec![
                    ("component-code", code(c)),
                    (
                        "component-value-quantity",
                        Test::Quantity {
                            prefix: Prefix::Eq,
                            low,
                            high,
                            system: None,
                            code: None,
                        },
                    ),
                ],
            }]],
        )
    };
    check(
        store,
        &composite("systolic", 119.5, 120.5),
        &["Observation/bp"],
    )
    .await;
    check(
        store,
        &composite("diastolic", 79.5, 80.5),
        &["Observation/bp"],
    )
    .await;
    check(
        store,
        &composite("systolic", 79.5, 80.5),
        &["Observation/other"],
    )
    .await;
    check(store, &composite("diastolic", 119.5, 120.5), &[]).await;
    // Beside a more selective clause (which then drives the search).
    let with_code = |mut q: Query| {
        q.clauses.push(Clause {
            any: vec![index("code", code("panel"))],
        });
        q
    };
    check(
        store,
        &with_code(composite("systolic", 119.5, 120.5)),
        &["Observation/bp"],
    )
    .await;
    check(store, &with_code(composite("diastolic", 119.5, 120.5)), &[]).await;
}

/// `_sort` on several keys, ascending and descending; resources without a value come last.
pub async fn sort_on_several_keys(store: &Store) {
    let p = |id: &str, family: Option<&str>, born: i64| {
        let mut rows = vec![date("birthdate", born, born + DAY - 1)];
        if let Some(family) = family {
            rows.push(string("family", family));
        }
        put("Patient", id, 1, rows)
    };
    commit(
        store,
        vec![
            p("b1", Some("Brown"), T0),
            p("a1", Some("Adams"), T0),
            p("a2", Some("Adams"), T0 + 5 * DAY),
            p("n1", None, T0 + 2 * DAY),
            p("c1", Some("Clark"), T0 - DAY),
        ],
    )
    .await;
    let sorted = |keys: Vec<(&'static str, bool)>| Query {
        sort: keys
            .into_iter()
            .map(|(param, descending)| SortKey { param, descending })
            .collect(),
        ..query("Patient", vec![])
    };
    check(
        store,
        &sorted(vec![("family", false), ("birthdate", true)]),
        &[
            "Patient/a2",
            "Patient/a1",
            "Patient/b1",
            "Patient/c1",
            "Patient/n1",
        ],
    )
    .await;
    check(
        store,
        &sorted(vec![("family", true), ("birthdate", false)]),
        &[
            "Patient/c1",
            "Patient/b1",
            "Patient/a1",
            "Patient/a2",
            "Patient/n1",
        ],
    )
    .await;
    check(
        store,
        &sorted(vec![("birthdate", false)]),
        &[
            "Patient/c1",
            "Patient/b1",
            "Patient/a1",
            "Patient/n1",
            "Patient/a2",
        ],
    )
    .await;
    // Paging through a sorted result one by one gives the same order, forwards and backwards.
    let q = sorted(vec![("family", false), ("birthdate", true)]);
    let (forward, backward) = walk(store, &q, 2).await;
    assert_eq!(
        forward,
        vec![
            "Patient/a2",
            "Patient/a1",
            "Patient/b1",
            "Patient/c1",
            "Patient/n1"
        ]
    );
    assert_eq!(backward, forward);
}

/// Follows `next` links to the end, then `previous` links back to the start; returns both walks in
/// forward order.
async fn walk(store: &Store, query: &Query, count: usize) -> (Vec<String>, Vec<String>) {
    let first = search(store, query, &options(count)).await;
    let (pages, back) = pages_from(store, query, first, count).await;
    (page_keys(&pages).concat(), back.concat())
}

/// From a first page, follows `next` links to the end and then `previous` links back to the start;
/// returns the pages as they came (forward, from the first), and the keys of each page read on the
/// way back (in forward order, ending with the last page), so that callers compare both walks.
async fn pages_from(
    store: &Store,
    query: &Query,
    first: SearchPage,
    count: usize,
) -> (Vec<SearchPage>, Vec<Vec<String>>) {
    let mut q = query.clone();
    let mut pages = vec![first];
    while let Some(next) = pages[pages.len() - 1].next.clone() {
        q.page = Some(next);
        pages.push(search(store, &q, &options(count)).await);
        assert!(pages.len() < 50, "paging does not end");
    }
    let mut back = vec![keys(&pages[pages.len() - 1].matches)];
    let mut previous = pages[pages.len() - 1].previous.clone();
    while let Some(cursor) = previous {
        q.page = Some(cursor);
        let page = search(store, &q, &options(count)).await;
        back.push(keys(&page.matches));
        previous = page.previous.clone();
        assert!(back.len() < 50, "paging back does not end");
    }
    back.reverse();
    (pages, back)
}

fn page_keys(pages: &[SearchPage]) -> Vec<Vec<String>> {
    pages.iter().map(|p| keys(&p.matches)).collect()
}

fn strings(groups: &[&[&str]]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Pages follow `next` and `previous` links, and resources created after the first page do not
/// shift or join the pages.
pub async fn paging_is_stable_across_inserts(store: &Store) {
    let ids: Vec<String> = (1..=7).map(|i| format!("p{i}")).collect();
    commit(
        store,
        ids.iter()
            .map(|id| put("Patient", id, 1, vec![string("name", "Same")]))
            .collect(),
    )
    .await;
    let q = query("Patient", vec![vec![index("name", starts("same"))]]);
    let first = search(store, &q, &options(3)).await;
    assert_eq!(
        keys(&first.matches),
        vec!["Patient/p1", "Patient/p2", "Patient/p3"]
    );
    assert_eq!(first.previous, None);
    commit(
        store,
        vec![
            put("Patient", "p0", 1, vec![string("name", "Same")]),
            put("Patient", "p8", 1, vec![string("name", "Same")]),
        ],
    )
    .await;
    let (pages, back) = pages_from(store, &q, first, 3).await;
    let expected = strings(&[
        &["Patient/p1", "Patient/p2", "Patient/p3"],
        &["Patient/p4", "Patient/p5", "Patient/p6"],
        &["Patient/p7"],
    ]);
    assert_eq!(page_keys(&pages), expected);
    assert_eq!(
        back, expected,
        "the previous links lead back through the same pages"
    );
    // A new search sees the new resources.
    let fresh = search(store, &q, &options(100)).await;
    assert_eq!(fresh.matches.len(), 9);
}

/// The pages after the first show the result set as it stood when the first page was read: a match
/// updated so that it no longer matches, or so that it sorts elsewhere, or deleted, keeps its place
/// and the version it had; a new search shows the change.
pub async fn paging_is_stable_across_updates_and_deletes(store: &Store) {
    let patient = |id: &str, version: i64, name: &str, family: &str| {
        put(
            "Patient",
            id,
            version,
            vec![string("name", name), string("family", family)],
        )
    };
    commit(
        store,
        (1..=7)
            .map(|i| patient(&format!("p{i}"), 1, "Same", &format!("F{i}")))
            .collect(),
    )
    .await;
    let mut q = query("Patient", vec![vec![index("name", starts("same"))]]);
    q.sort = vec![SortKey {
        param: "family",
        descending: false,
    }];
    let first = search(store, &q, &options(3)).await;
    assert_eq!(
        keys(&first.matches),
        vec!["Patient/p1", "Patient/p2", "Patient/p3"]
    );
    // Meanwhile: p2 (first page) stops matching, p4 gets a new version, p5 sorts last, p6 is deleted.
    commit(
        store,
        vec![
            patient("p2", 2, "Other", "F2"),
            patient("p4", 2, "Same", "F4"),
            patient("p5", 2, "Same", "Z5"),
            delete("Patient", "p6", 2, T0 + 10),
        ],
    )
    .await;
    let (pages, back) = pages_from(store, &q, first, 3).await;
    let expected = strings(&[
        &["Patient/p1", "Patient/p2", "Patient/p3"],
        &["Patient/p4", "Patient/p5", "Patient/p6"],
        &["Patient/p7"],
    ]);
    assert_eq!(
        page_keys(&pages),
        expected,
        "updated, deleted and no longer matching resources keep their place"
    );
    assert_eq!(
        back, expected,
        "the previous links lead back through the same pages"
    );
    let versions: Vec<i64> = pages[1].matches.iter().map(|s| s.version).collect();
    assert_eq!(versions, vec![1, 1, 1], "each as it was at the first page");
    // A new search sees the current state; a second update after it is seen by its own pages only.
    let fresh = search(store, &q, &options(100)).await;
    assert_eq!(
        keys(&fresh.matches),
        vec![
            "Patient/p1",
            "Patient/p3",
            "Patient/p4",
            "Patient/p7",
            "Patient/p5"
        ]
    );
    let fresh_first = search(store, &q, &options(2)).await;
    commit(store, vec![patient("p4", 3, "Gone", "F4")]).await;
    let mut fresh_next = q.clone();
    fresh_next.page = fresh_first.next.clone();
    let fresh_second = search(store, &fresh_next, &options(2)).await;
    assert_eq!(
        keys(&fresh_second.matches),
        vec!["Patient/p4", "Patient/p7"]
    );
    assert_eq!(fresh_second.matches[0].version, 2);
    // The index holds one current row per parameter for each live resource, whatever its history.
    let mut now = query("Patient", vec![vec![index("name", starts("gone"))]]);
    now.page = None;
    check(store, &now, &["Patient/p4"]).await;
    check(
        store,
        &query("Patient", vec![vec![index("family", starts("f4"))]]),
        &["Patient/p4"],
    )
    .await;
}

/// Paging through a compartment (`$everything`) is stable too: a resource deleted or moved to another
/// patient after the first page stays on its page.
pub async fn compartment_paging_is_stable(store: &Store) {
    commit(
        store,
        (1..=5)
            .map(|i| put_at("Observation", &format!("o{i}"), 1, T0, vec![], vec!["p1"]))
            .collect(),
    )
    .await;
    let first = store
        .compartment(&compartment_request("p1", 2))
        .await
        .expect("first page");
    let mut seen = keys(&first.matches);
    let shown: Vec<String> = seen.clone();
    // Delete one not yet shown and move another to p2.
    let hidden: Vec<String> = (1..=5)
        .map(|i| format!("Observation/o{i}"))
        .filter(|k| !shown.contains(k))
        .collect();
    let id = |k: &str| k.trim_start_matches("Observation/").to_string();
    commit(
        store,
        vec![
            delete("Observation", &id(&hidden[0]), 2, T0 + 10),
            put_at(
                "Observation",
                &id(&hidden[1]),
                2,
                T0 + 10,
                vec![],
                vec!["p2"],
            ),
        ],
    )
    .await;
    let mut request = compartment_request("p1", 2);
    request.cursor = first.next.clone();
    loop {
        let page = store.compartment(&request).await.expect("page");
        seen.extend(keys(&page.matches));
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
        assert!(seen.len() < 20, "paging does not end");
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=5)
            .map(|i| format!("Observation/o{i}"))
            .collect::<Vec<_>>()
    );
    let now = store
        .compartment(&compartment_request("p1", 10))
        .await
        .expect("now");
    assert_eq!(now.matches.len(), 3, "a new $everything sees the change");
}

/// Reads of current versions and search pages carry each version's patients (its compartment rows):
/// the ones written with that version, also on a later page read at the first page's snapshot; a
/// tombstone has none; vread and history leave them to the caller.
pub async fn patients_come_with_versions(store: &Store) {
    let obs = |id: &str, version: i64, patients: Vec<&str>| {
        put_at(
            "Observation",
            id,
            version,
            T0 + version,
            vec![token("code", Some("http://loinc.org"), "8867-4")],
            patients,
        )
    };
    commit(
        store,
        vec![
            obs("o1", 1, vec!["a"]),
            obs("o2", 1, vec!["a", "b"]),
            put("Practitioner", "x", 1, vec![]),
        ],
    )
    .await;
    let patients = |stored: &Stored| {
        stored.patients.clone().map(|mut p| {
            p.sort();
            p
        })
    };
    let ids = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let read = |ty: &'static str, id: &'static str| async move {
        store
            .read(ty, id)
            .await
            .ok()
            .flatten()
            .expect("it is there")
    };
    assert_eq!(patients(&read("Observation", "o1").await), ids(&["a"]));
    assert_eq!(patients(&read("Observation", "o2").await), ids(&["a", "b"]));
    assert_eq!(patients(&read("Practitioner", "x").await), Some(Vec::new()));

    let q = query("Observation", vec![vec![index("code", code("8867-4"))]]);
    let first = search(store, &q, &options(1)).await;
    assert_eq!(first.matches.len(), 1);
    let on_first = first.matches[0].id.clone();
    // Both move to other patients after the first page; the second page shows the other one as it
    // was, with the patients it had then. Two versions of o3 land in one commit.
    commit(
        store,
        vec![
            obs("o1", 2, vec!["c"]),
            obs("o2", 2, vec!["c"]),
            obs("o3", 1, vec!["a"]),
            obs("o3", 2, vec!["d"]),
        ],
    )
    .await;
    let mut next = q.clone();
    next.page = first.next.clone();
    let second = search(store, &next, &options(1)).await;
    assert_eq!(second.matches.len(), 1);
    let then = &second.matches[0];
    assert_ne!(then.id, on_first);
    assert_eq!(then.version, 1);
    let expected: &[&str] = if then.id == "o1" { &["a"] } else { &["a", "b"] };
    assert_eq!(patients(then), ids(expected));

    let now = search(store, &q, &options(10)).await;
    for stored in &now.matches {
        let expected = if stored.id == "o3" { "d" } else { "c" };
        assert_eq!(patients(stored), ids(&[expected]), "{}", stored.id);
    }
    assert_eq!(now.matches.len(), 3);

    let old = store
        .vread("Observation", "o2", 1)
        .await
        .ok()
        .flatten()
        .expect("version 1");
    assert_eq!(old.patients, None, "vread leaves them to the caller");
    commit(store, vec![delete("Observation", "o1", 3, T0 + 20)]).await;
    let gone = read("Observation", "o1").await;
    assert!(gone.deleted);
    assert_eq!(gone.patients, Some(Vec::new()));
}

/// `_include`, `_revinclude` and `:iterate`: included resources are distinct, never also matches,
/// and bounded by `max_includes`.
pub async fn include_revinclude_iterate(store: &Store) {
    commit(
        store,
        vec![
            put("Organization", "org", 1, vec![]),
            put(
                "Patient",
                "p1",
                1,
                vec![reference("organization", "Organization", "org")],
            ),
            put("Patient", "p2", 1, vec![token("_id", None, "p2")]),
            put(
                "Observation",
                "o1",
                1,
                vec![
                    code_row("x"),
                    reference("subject", "Patient", "p1"),
                    reference("has-member", "Observation", "o2"),
                ],
            ),
            put(
                "Observation",
                "o2",
                1,
                vec![code_row("x"), reference("subject", "Patient", "p1")],
            ),
            put(
                "Observation",
                "o3",
                1,
                vec![code_row("y"), reference("subject", "Patient", "p2")],
            ),
            put(
                "Provenance",
                "v1",
                1,
                vec![reference("target", "Observation", "o1")],
            ),
            put(
                "Provenance",
                "v2",
                1,
                vec![reference("target", "Observation", "o3")],
            ),
        ],
    )
    .await;
    let inc = |source_type, param, iterate| Include {
        source_type,
        param,
        target_type: None,
        iterate,
    };
    let q = |include: Vec<Include>, revinclude: Vec<Include>| Query {
        include,
        revinclude,
        ..query("Observation", vec![vec![index("code", code("x"))]])
    };
    let cases: Vec<(Query, Vec<&str>)> = vec![
        (
            q(vec![inc("Observation", "subject", false)], vec![]),
            vec!["Patient/p1"],
        ),
        (
            q(
                vec![
                    inc("Observation", "subject", false),
                    inc("Patient", "organization", false),
                ],
                vec![],
            ),
            vec!["Patient/p1"],
        ),
        (
            q(
                vec![
                    inc("Observation", "subject", false),
                    inc("Patient", "organization", true),
                ],
                vec![],
            ),
            vec!["Patient/p1", "Organization/org"],
        ),
        (
            q(vec![inc("Observation", "has-member", false)], vec![]),
            vec![],
        ),
        (
            q(vec![], vec![inc("Provenance", "target", false)]),
            vec!["Provenance/v1"],
        ),
        (
            q(
                vec![Include {
                    target_type: Some("Group"),
                    ..inc("Observation", "subject", false)
                }],
                vec![],
            ),
            vec![],
        ),
    ];
    for (query, expected) in cases {
        let page = search(store, &query, &options(10)).await;
        let mut got = keys(&page.included);
        got.sort();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(got, expected, "{query:?}");
        assert_eq!(page.matches.len(), 2);
    }
    // Revinclude of the Patient's observations, iterated to their provenance.
    let patients = Query {
        revinclude: vec![
            inc("Observation", "subject", false),
            inc("Provenance", "target", true),
        ],
        ..query("Patient", vec![vec![index("_id", code("p2"))]])
    };
    let page = search(store, &patients, &options(10)).await;
    let mut got = keys(&page.included);
    got.sort();
    assert_eq!(got, vec!["Observation/o3", "Provenance/v2"]);
    let bounded = search(
        store,
        &patients,
        &SearchOptions {
            count: 10,
            max_includes: 1,
        },
    )
    .await;
    assert_eq!(bounded.included.len(), 1);
}

/// A Patient's compartment: its live resources (not the Patient), by type and `_since`, paged.
pub async fn compartment_lists_live_resources(store: &Store) {
    commit(
        store,
        vec![
            put_at("Patient", "p1", 1, T0, vec![], vec!["p1"]),
            put_at("Observation", "o1", 1, T0, vec![], vec!["p1"]),
            put_at("Observation", "o2", 1, T0 + 100, vec![], vec!["p1"]),
            put_at("Encounter", "e1", 1, T0 + 200, vec![], vec!["p1"]),
            put_at("Observation", "o3", 1, T0, vec![], vec!["p2"]),
            put_at("Observation", "both", 1, T0, vec![], vec!["p1", "p2"]),
        ],
    )
    .await;
    let ids = |page: &SearchPage| {
        let mut k = keys(&page.matches);
        k.sort();
        k
    };
    let all = store
        .compartment(&compartment_request("p1", 10))
        .await
        .expect("compartment");
    assert_eq!(
        ids(&all),
        vec![
            "Encounter/e1",
            "Observation/both",
            "Observation/o1",
            "Observation/o2"
        ]
    );
    let typed = CompartmentRequest {
        types: vec!["Encounter".into()],
        ..compartment_request("p1", 10)
    };
    assert_eq!(
        ids(&store.compartment(&typed).await.expect("typed")),
        vec!["Encounter/e1"]
    );
    let since = CompartmentRequest {
        since: Some(T0 + 100),
        ..compartment_request("p1", 10)
    };
    assert_eq!(
        ids(&store.compartment(&since).await.expect("since")),
        vec!["Encounter/e1", "Observation/o2"]
    );
    // Paged two at a time.
    let paged = |mut request: CompartmentRequest| async move {
        let mut seen = Vec::new();
        loop {
            let page = store.compartment(&request).await.expect("page");
            assert!(page.matches.len() <= 2);
            seen.extend(keys(&page.matches));
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => break,
            }
        }
        seen.sort();
        seen
    };
    assert_eq!(paged(compartment_request("p1", 2)).await, ids(&all));
    // Two Patients' compartments at once (one person's records): each resource once, paged, and
    // neither Patient itself.
    let both = CompartmentRequest {
        patient_ids: vec!["p1".into(), "p2".into()],
        ..compartment_request("p1", 2)
    };
    assert_eq!(
        paged(both).await,
        vec![
            "Encounter/e1",
            "Observation/both",
            "Observation/o1",
            "Observation/o2",
            "Observation/o3"
        ]
    );
    commit(store, vec![delete("Observation", "o1", 2, T0 + 300)]).await;
    let after = store
        .compartment(&compartment_request("p1", 10))
        .await
        .expect("compartment");
    assert_eq!(
        ids(&after),
        vec!["Encounter/e1", "Observation/both", "Observation/o2"]
    );
}

/// `_total`: the number of all matches, whatever the page size, also with a page size of 0.
pub async fn total_counts_all_matches(store: &Store) {
    commit(
        store,
        (0..12)
            .map(|i| {
                put(
                    "Patient",
                    &format!("p{i}"),
                    1,
                    vec![string("name", if i % 3 == 0 { "Kim" } else { "Lee" })],
                )
            })
            .collect(),
    )
    .await;
    let q = Query {
        total: Total::Accurate,
        ..query("Patient", vec![vec![index("name", starts("lee"))]])
    };
    let page = search(store, &q, &options(5)).await;
    assert_eq!((page.matches.len(), page.total), (5, Some(8)));
    let count_only = search(store, &q, &options(0)).await;
    assert_eq!(
        (count_only.matches.len(), count_only.total, count_only.next),
        (0, Some(8), None)
    );
    let none = search(
        store,
        &Query {
            total: Total::None,
            ..q.clone()
        },
        &options(5),
    )
    .await;
    assert_eq!(none.total, None);
    let estimate = search(
        store,
        &Query {
            total: Total::Estimate,
            ..q
        },
        &options(5),
    )
    .await;
    assert!(estimate.total.is_some());
}

/// A search without a type spans every type.
pub async fn search_across_types(store: &Store) {
    commit(
        store,
        vec![
            put("Patient", "x", 1, vec![token("_id", None, "x")]),
            put("Observation", "x", 1, vec![token("_id", None, "x")]),
            put("Observation", "y", 1, vec![token("_id", None, "y")]),
        ],
    )
    .await;
    let q = Query {
        resource_type: None,
        ..query("Patient", vec![vec![index("_id", code("x"))]])
    };
    check(store, &q, &["Observation/x", "Patient/x"]).await;
    let everything = Query {
        resource_type: None,
        ..query("Patient", vec![])
    };
    check(
        store,
        &everything,
        &["Observation/x", "Observation/y", "Patient/x"],
    )
    .await;
}

/// Cursors that the store did not make, or made for another query, are refused.
pub async fn bad_cursor_is_refused(store: &Store) {
    commit(
        store,
        (0..3)
            .map(|i| put("Patient", &format!("p{i}"), 1, vec![string("name", "Kim")]))
            .collect(),
    )
    .await;
    let q = query("Patient", vec![vec![index("name", starts("kim"))]]);
    let page = search(store, &q, &options(1)).await;
    let next = page.next.expect("a next page");
    for cursor in ["garbage", "eyJ4IjoxfQ", ""] {
        let bad = Query {
            page: Some(cursor.to_string()),
            ..q.clone()
        };
        assert!(
            matches!(
                store.search(&bad, &options(1)).await,
                Err(StoreError::BadCursor)
            ),
            "{cursor}"
        );
    }
    let other = Query {
        page: Some(next.clone()),
        ..query("Patient", vec![vec![index("name", starts("ki"))]])
    };
    assert!(matches!(
        store.search(&other, &options(1)).await,
        Err(StoreError::BadCursor)
    ));
    let good = Query {
        page: Some(next),
        ..q
    };
    assert_eq!(search(store, &good, &options(1)).await.matches.len(), 1);
}

// ---- query plans -----------------------------------------------------------------------------

/// Fills a store with a few thousand resources shaped like the benchmark data (2,000 patients with
/// identifiers, family names and birth dates; 8,000 observations and 4,000 encounters that refer
/// to them), then updates the planner's statistics.
pub async fn plan_fixture(store: &Store) {
    fixture(store, 2000).await;
}

/// [`plan_fixture`] without planner statistics: the plans a server that never ran `ANALYZE` gets.
pub async fn plan_fixture_without_statistics(store: &Store) {
    load_fixture(store, 2000).await;
}

/// [`plan_fixture`] with `patients` patients (and seven resources per patient in all).
pub async fn fixture(store: &Store, patients: i64) {
    load_fixture(store, patients).await;
    store.analyze().await.expect("analyze");
}

async fn load_fixture(store: &Store, patients: i64) {
    let mut batch = Vec::new();
    for i in 0..patients {
        let p = format!("p{i}");
        let born = T0 - (i % 3650) * DAY;
        batch.push(put(
            "Patient",
            &p,
            1,
            vec![
                token("identifier", Some("urn:mrn"), &format!("mrn{i}")),
                string("family", &format!("Family{}", i % 500)),
                date("birthdate", born, born + DAY - 1),
            ],
        ));
        for j in 0..4_i64 {
            let at = T0 + (i * 4 + j) * 3_600_000;
            batch.push(put(
                "Observation",
                &format!("o{i}-{j}"),
                1,
                vec![
                    reference("subject", "Patient", &p),
                    token(
                        "code",
                        Some("http://loinc.org"),
                        &format!("c{}", (i + j) % 20),
                    ),
                    date("date", at, at),
                ],
            ));
        }
        for j in 0..2_i64 {
            let at = T0 + (i * 2 + j) * DAY;
            batch.push(put(
                "Encounter",
                &format!("e{i}-{j}"),
                1,
                vec![
                    reference("subject", "Patient", &p),
                    date("date", at, at + 3_600_000),
                ],
            ));
        }
        if batch.len() >= 700 {
            commit(store, std::mem::take(&mut batch)).await;
        }
    }
    commit(store, batch).await;
}

/// The selective searches of the benchmarks, by name, on the data of [`plan_fixture`].
pub fn selective_queries() -> Vec<(&'static str, Query)> {
    selective_queries_for(42)
}

/// The selective searches about patient `i` of [`fixture`].
pub fn selective_queries_for(i: i64) -> Vec<(&'static str, Query)> {
    let day = |n: i64| (T0 - n * DAY, T0 - n * DAY + DAY - 1);
    let (born_low, born_high) = day(i % 3650);
    let patient = format!("p{i}");
    let first_obs = T0 + i * 4 * 3_600_000;
    let token_sc = |system: &str, code: &str| {
        Test::Token(TokenTest::Code {
            system: Some(Some(system.to_string())),
            code: Some(code.to_string()),
        })
    };
    let date_test = |prefix, low, high| Test::Date { prefix, low, high };
    vec![
        (
            "Patient by identifier",
            query(
                "Patient",
                vec![vec![index(
                    "identifier",
                    token_sc("urn:mrn", &format!("mrn{i}")),
                )]],
            ),
        ),
        (
            "Patient by family name and birthdate",
            query(
                "Patient",
                vec![
                    vec![index("family", starts(&format!("family{}", i % 500)))],
                    vec![index(
                        "birthdate",
                        date_test(Prefix::Eq, born_low, born_high),
                    )],
                ],
            ),
        ),
        (
            "Observation by patient and code",
            query(
                "Observation",
                vec![
                    vec![index("subject", refers("Patient", &patient))],
                    vec![index(
                        "code",
                        token_sc("http://loinc.org", &format!("c{}", (i + 1) % 20)),
                    )],
                ],
            ),
        ),
        (
            "Observation by patient and date range",
            query(
                "Observation",
                vec![
                    vec![index("subject", refers("Patient", &patient))],
                    vec![index(
                        "date",
                        date_test(Prefix::Ge, first_obs - 15 * DAY, first_obs - 14 * DAY - 1),
                    )],
                    vec![index(
                        "date",
                        date_test(Prefix::Le, first_obs + 15 * DAY, first_obs + 16 * DAY - 1),
                    )],
                ],
            ),
        ),
        (
            "Encounter by patient sorted by date",
            Query {
                sort: vec![SortKey {
                    param: "date",
                    descending: true,
                }],
                ..query(
                    "Encounter",
                    vec![vec![index("subject", refers("Patient", &patient))]],
                )
            },
        ),
    ]
}

/// Latency of the selective searches on the data of [`fixture`] (with `patients` patients), from
/// `clients` concurrent tasks each running every query `rounds` times about random patients:
/// `(query, p50, p99)` in milliseconds.
pub async fn search_latency(
    store: &Store,
    patients: i64,
    clients: usize,
    rounds: usize,
) -> Vec<(&'static str, f64, f64)> {
    let names: Vec<&'static str> = selective_queries()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let rng = fastrand_seed(client as u64);
            let mut timings: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for round in 0..rounds {
                let patient = (rng.wrapping_mul(round as u64 + 1) % patients as u64) as i64;
                for (n, (_, query)) in selective_queries_for(patient).into_iter().enumerate() {
                    let started = std::time::Instant::now();
                    let page = search(
                        &store,
                        &query,
                        &SearchOptions {
                            count: 20,
                            max_includes: 0,
                        },
                    )
                    .await;
                    timings[n].push(started.elapsed().as_secs_f64() * 1000.0);
                    std::hint::black_box(page);
                }
            }
            timings
        }));
    }
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); 5];
    for task in tasks {
        for (n, t) in task.await.expect("client task").into_iter().enumerate() {
            all[n].extend(t);
        }
    }
    names
        .into_iter()
        .zip(all)
        .map(|(name, mut t)| {
            t.sort_by(f64::total_cmp);
            let at = |q: f64| t[((t.len() as f64 - 1.0) * q).round() as usize];
            (name, at(0.5), at(0.99))
        })
        .collect()
}

/// A large odd multiplier per client, so clients ask about different patients.
fn fastrand_seed(client: u64) -> u64 {
    (client + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

// ---- write throughput --------------------------------------------------------------------------

/// `n` new Observations (ids `{prefix}{i}`) shaped like the extractor's output for real ones: a
/// JSON body of about 1.5 kB, 25 index rows of every kind and two compartments. For throughput
/// measurements.
pub fn synthetic_observations(prefix: &str, n: usize) -> Vec<Write> {
    let filler = "x".repeat(1200);
    (0..n)
        .map(|i| {
            let id = format!("{prefix}{i}");
            let patient = format!("pat{}", i % 1000);
            let at = T0 + i as i64 * 1000;
            let mut index = vec![
                token("_id", None, &id),
                token("status", Some("http://hl7.org/fhir/observation-status"), "final"),
                token("category", Some("http://terminology.hl7.org/CodeSystem/observation-category"), "vital-signs"),
                token_text("code", &format!("{}", 8000 + i % 50), "heart rate"),
                token("code", Some("http://loinc.org"), &format!("{}", 8000 + i % 50)),
                token("combo-code", Some("http://loinc.org"), &format!("{}", 8000 + i % 50)),
                token("_security", Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"), "N"),
                reference("subject", "Patient", &patient),
                reference("patient", "Patient", &patient),
                reference("encounter", "Encounter", &format!("enc{}", i % 5000)),
                reference("performer", "Practitioner", &format!("pr{}", i % 100)),
                date("date", at, at),
                date("_lastUpdated", at, at),
                quantity("value-quantity", 60.0 + (i % 40) as f64, "http://unitsofmeasure.org", "/min"),
                quantity("combo-value-quantity", 60.0 + (i % 40) as f64, "http://unitsofmeasure.org", "/min"),
                uri("_profile", "http://hl7.org/fhir/StructureDefinition/heartrate"),
                string("_text", "heart rate observation"),
                token("identifier", Some("urn:obs"), &id),
            ];
            for (group, code) in ["8480-6", "8462-4"].iter().enumerate() {
                let group = group as u32;
                index.push(part(token("component-code-value-quantity", Some("http://loinc.org"), code), group, 0));
                index.push(part(
                    quantity("component-code-value-quantity", 80.0, "http://unitsofmeasure.org", "mm[Hg]"),
                    group,
                    1,
                ));
                index.push(token("component-code", Some("http://loinc.org"), code));
            }
            index.push(number("probability", 0.5));
            let json = format!(
                r#"{{"resourceType":"Observation","id":"{id}","meta":{{"versionId":"1"}},"status":"final","subject":{{"reference":"Patient/{patient}"}},"note":[{{"text":"{filler}"}}]}}"#
            );
            Write {
                resource_type: "Observation".to_string(),
                id,
                version: 1,
                expect: None,
                last_updated: at,
                op: WriteOp::Put { json, index, compartments: vec![patient.clone(), format!("{patient}-other")] },
            }
        })
        .collect()
}

/// Commits `total` synthetic Observations in batches of `batch` from `writers` concurrent tasks and
/// returns resources per second.
pub async fn write_throughput(store: &Store, total: usize, batch: usize, writers: usize) -> f64 {
    let started = std::time::Instant::now();
    let per_writer = total / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let writes = synthetic_observations(&format!("w{w}-"), per_writer);
            let mut writes = writes.into_iter().peekable();
            while writes.peek().is_some() {
                let chunk: Vec<Write> = writes.by_ref().take(batch).collect();
                commit(&store, chunk).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    (per_writer * writers) as f64 / started.elapsed().as_secs_f64()
}

// ---- the audit log ---------------------------------------------------------------------------

/// SQL run directly on the store's database, past the store, as someone with access to the database
/// would (the engine's test file provides it: the store itself offers no way to change the log).
pub trait RawSql {
    /// Runs `sql` (one or more statements); the database's message when it refuses.
    fn execute(&self, sql: &str) -> impl std::future::Future<Output = Result<(), String>>;
}

/// A synthetic AuditEvent; `n` makes it unique.
fn audit_event(n: i64) -> NewAuditRecord {
    NewAuditRecord {
        recorded: T0 + n,
        json: format!(r#"{{"resourceType":"AuditEvent","id":"ae{n}","outcome":"0"}}"#),
        index: Vec::new(),
    }
}

/// Every record of the log, read in small pages (so paging by `after_seq` is exercised).
async fn all_audit(store: &Store) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let page = store.audit_records(after, 7).await.expect("audit records");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn intact(store: &Store) -> (u64, AuditHash) {
    match store.verify_audit().await.expect("verify") {
        AuditCheck::Intact { count, head } => (count, head),
        broken => panic!("the chain should verify: {broken:?}"),
    }
}

/// Appends get consecutive numbers from 1, the records come back byte for byte with the hashes the
/// appends answered, each chained to the one before, and the chain verifies (also when empty).
pub async fn audit_appends_form_a_chain(store: &Store) {
    assert_eq!(
        intact(store).await,
        (0, AuditHash::ZERO),
        "an empty chain verifies"
    );
    assert_eq!(
        store.append_audit(Vec::new()).await.expect("nothing"),
        Vec::new()
    );
    // Text that JSONB would reformat: whitespace, key order, a decimal's trailing zero, non-ASCII.
    let odd = NewAuditRecord {
        recorded: T0,
        json: "{ \"resourceType\" : \"AuditEvent\",\n  \"z\": 1.50, \"a\": \"Zoë\" }".to_string(),
        index: Vec::new(),
    };
    let first = store
        .append_audit(vec![odd.clone()])
        .await
        .expect("append one");
    let more = store
        .append_audit(vec![audit_event(2), audit_event(3), audit_event(4)])
        .await
        .expect("append three");
    let appended: Vec<Appended> = first.into_iter().chain(more).collect();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let records = all_audit(store).await;
    let given = [odd, audit_event(2), audit_event(3), audit_event(4)];
    assert_eq!(records.len(), 4);
    let mut prev = AuditHash::ZERO;
    for ((record, given), appended) in records.iter().zip(&given).zip(&appended) {
        assert_eq!(record.json, given.json, "stored as given");
        assert_eq!(record.recorded, given.recorded);
        assert_eq!((record.seq, record.hash), (appended.seq, appended.hash));
        assert_eq!(
            record.prev_hash, prev,
            "record {} follows the one before",
            record.seq
        );
        assert_eq!(
            record.hash,
            chain_hash(&prev, record.seq, record.recorded, &record.json)
        );
        prev = record.hash;
    }
    let page = store.audit_records(2, 1).await.expect("one record");
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    assert!(store
        .audit_records(4, 10)
        .await
        .expect("past the end")
        .is_empty());
    assert_eq!(intact(store).await, (4, prev));
}

/// Many tasks appending at once (some with a write in the same commit) make one linear chain
/// without gaps; each caller's records are in it exactly once, at the numbers it was told, and the
/// records of one request are consecutive.
pub async fn audit_concurrent_appends_form_one_chain(store: &Store) {
    let (tasks, requests) = (32_i64, 8_i64);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut told = Vec::new();
            for i in 0..requests {
                // Every fourth request carries three records, which must land together.
                let n = if i % 4 == 3 { 3 } else { 1 };
                let records: Vec<NewAuditRecord> = (0..n)
                    .map(|k| audit_event(t * 1_000 + i * 10 + k))
                    .collect();
                let appended = if t % 8 == 0 && i % 2 == 0 {
                    let write = put("Patient", &format!("p{t}-{i}"), 1, Vec::new());
                    store.commit_with_audit(vec![write], records.clone()).await
                } else {
                    store.append_audit(records.clone()).await
                }
                .expect("append");
                assert_eq!(appended.len(), records.len());
                for pair in appended.windows(2) {
                    assert_eq!(
                        pair[1].seq,
                        pair[0].seq + 1,
                        "one request's records are consecutive"
                    );
                }
                told.extend(records.into_iter().zip(appended));
            }
            told
        }));
    }
    let mut told = Vec::new();
    for handle in handles {
        told.extend(handle.await.expect("task"));
    }
    told.sort_by_key(|(_, appended)| appended.seq);
    let total = told.len() as i64;
    assert_eq!(
        told.iter().map(|(_, a)| a.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "every record once, no gaps"
    );
    let records = all_audit(store).await;
    assert_eq!(records.len() as i64, total);
    for (record, (given, appended)) in records.iter().zip(&told) {
        assert_eq!((record.seq, record.hash), (appended.seq, appended.hash));
        assert_eq!(
            record.json, given.json,
            "record {} is the caller's",
            record.seq
        );
    }
    let head = records.last().map(|r| r.hash).expect("records");
    assert_eq!(intact(store).await, (total as u64, head));
}

/// A commit's writes and audit records land together or not at all: a conflicting batch leaves no
/// record behind, and the chain goes on without a gap.
pub async fn audit_commit_with_writes_is_atomic(store: &Store) {
    let appended = store
        .commit_with_audit(
            vec![put("Patient", "a", 1, Vec::new())],
            vec![audit_event(1), audit_event(2)],
        )
        .await
        .expect("commit with audit");
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(store.read("Patient", "a").await.expect("read").is_some());
    // Patient/a exists already: the batch conflicts, and neither b nor its audit record is written.
    let err = store
        .commit_with_audit(
            vec![
                put("Patient", "b", 1, Vec::new()),
                put("Patient", "a", 1, Vec::new()),
            ],
            vec![audit_event(3)],
        )
        .await
        .expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(store.read("Patient", "b").await.expect("read").is_none());
    assert_eq!(
        all_audit(store).await.len(),
        2,
        "the conflicting batch's record is not there"
    );
    let next = store
        .append_audit(vec![audit_event(4)])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 3, "no gap after a rolled-back batch");
    // Audit records alone through the commit path; a plain commit adds none.
    let alone = store
        .commit_with_audit(Vec::new(), vec![audit_event(5)])
        .await
        .expect("audit alone");
    assert_eq!(alone[0].seq, 4);
    store
        .commit(vec![put("Patient", "c", 1, Vec::new())])
        .await
        .expect("commit");
    let records = all_audit(store).await;
    assert_eq!(
        records.iter().map(|r| r.json.as_str()).collect::<Vec<_>>(),
        [1, 2, 4, 5]
            .map(|n| audit_event(n).json)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(intact(store).await, (4, alone[0].hash));
}

/// A synthetic AuditEvent `n` indexed by the given pairs.
fn indexed_event(n: i64, pairs: &[(&str, &str)]) -> NewAuditRecord {
    NewAuditRecord {
        index: pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        ..audit_event(n)
    }
}

/// The sequence numbers of the records a search answers, in order.
async fn audit_seqs(store: &Store, query: AuditQuery) -> Vec<i64> {
    store
        .search_audit(&query)
        .await
        .expect("search audit")
        .into_iter()
        .map(|r| r.seq)
        .collect()
}

fn audit_query(filters: &[(&str, &str)], limit: usize) -> AuditQuery {
    AuditQuery {
        filters: filters
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        limit,
        ..AuditQuery::default()
    }
}

/// Records are found by the index pairs they were appended with (by either append path, in the
/// record's transaction), newest first: every name must match, the values of one name are
/// alternatives; by time; in pages below a sequence number. A rolled-back commit leaves no index
/// rows, and the chain verifies as before.
pub async fn audit_search_by_index(store: &Store) {
    let read = |n, patient, outcome| {
        indexed_event(
            n,
            &[
                ("patient", patient),
                ("outcome", outcome),
                ("subtype", "read"),
                ("participant", "org-1"),
                // Given twice: kept once.
                ("patient", patient),
            ],
        )
    };
    // 1..=6 by the group-commit path, 7 with a write.
    store
        .append_audit(vec![
            read(1, "p1", "0"),
            read(2, "p2", "0"),
            read(3, "p1", "4"),
        ])
        .await
        .expect("append");
    store
        .append_audit(vec![
            indexed_event(
                4,
                &[("patient", "p1"), ("subtype", "search"), ("outcome", "0")],
            ),
            read(5, "p1", "0"),
            audit_event(6),
        ])
        .await
        .expect("append");
    store
        .commit_with_audit(
            vec![put("Patient", "p1", 1, Vec::new())],
            vec![indexed_event(
                7,
                &[("patient", "p1"), ("subtype", "create"), ("outcome", "0")],
            )],
        )
        .await
        .expect("commit with audit");
    // A conflicting commit: neither its record nor its index rows are written.
    store
        .commit_with_audit(
            vec![put("Patient", "p1", 1, Vec::new())],
            vec![indexed_event(8, &[("patient", "p1")])],
        )
        .await
        .expect_err("conflict");

    assert_eq!(
        audit_seqs(store, audit_query(&[("patient", "p1")], 100)).await,
        vec![7, 5, 4, 3, 1]
    );
    assert_eq!(
        audit_seqs(
            store,
            audit_query(&[("patient", "p1"), ("outcome", "0")], 100)
        )
        .await,
        vec![7, 5, 4, 1],
        "every name must match"
    );
    assert_eq!(
        audit_seqs(
            store,
            audit_query(
                &[
                    ("patient", "p1"),
                    ("subtype", "read"),
                    ("subtype", "search"),
                    ("outcome", "0")
                ],
                100
            )
        )
        .await,
        vec![5, 4, 1],
        "the values of one name are alternatives"
    );
    assert_eq!(
        audit_seqs(
            store,
            audit_query(
                &[("patient", "p2"), ("patient", "p1"), ("subtype", "read")],
                100
            )
        )
        .await,
        vec![5, 3, 2, 1],
        "several values of the first name"
    );
    assert!(
        audit_seqs(store, audit_query(&[("patient", "nobody")], 100))
            .await
            .is_empty()
    );
    assert!(audit_seqs(
        store,
        audit_query(&[("patient", "p1"), ("agent", "x")], 100)
    )
    .await
    .is_empty());
    // Without filters: the whole log, newest first.
    assert_eq!(
        audit_seqs(store, audit_query(&[], 100)).await,
        vec![7, 6, 5, 4, 3, 2, 1]
    );
    // By time (record n was recorded at T0 + n), with and without filters.
    let between = |filters: &[(&str, &str)], from, to| AuditQuery {
        recorded_from: from,
        recorded_to: to,
        ..audit_query(filters, 100)
    };
    assert_eq!(
        audit_seqs(
            store,
            between(&[("patient", "p1")], Some(T0 + 3), Some(T0 + 5))
        )
        .await,
        vec![5, 4, 3]
    );
    assert_eq!(
        audit_seqs(store, between(&[], Some(T0 + 6), None)).await,
        vec![7, 6]
    );
    assert_eq!(
        audit_seqs(store, between(&[], None, Some(T0 + 1))).await,
        vec![1]
    );
    // Pages of two, each below the last record of the page before.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = audit_seqs(
            store,
            AuditQuery {
                before_seq: before,
                ..audit_query(&[("patient", "p1")], 2)
            },
        )
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().copied();
        pages.push(page);
    }
    assert_eq!(pages, vec![vec![7, 5], vec![4, 3], vec![1]]);
    assert_eq!(
        audit_seqs(
            store,
            AuditQuery {
                before_seq: Some(4),
                ..audit_query(&[], 2)
            }
        )
        .await,
        vec![3, 2]
    );
    // The records come back whole.
    let found = store
        .search_audit(&audit_query(&[("patient", "p2")], 1))
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].json, audit_event(2).json);
    assert_eq!(found[0].recorded, T0 + 2);
    assert_eq!(
        Some(&found[0]),
        all_audit(store).await.get(1),
        "as audit_records answers it"
    );
    assert_eq!(intact(store).await.0, 7);
}

/// The statements that switch the append-only triggers off, as an attacker with database access would.
fn disable_triggers(store: &Store) -> &'static str {
    match store.engine() {
        "sqlite" => "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;",
        _ => "ALTER TABLE audit_log DISABLE TRIGGER USER",
    }
}

/// The database itself refuses UPDATE and DELETE of audit records (and TRUNCATE where there is one),
/// and the chain still verifies after the attempts.
pub async fn audit_log_refuses_update_and_delete(store: &Store, sql: &impl RawSql) {
    store
        .append_audit(vec![
            indexed_event(1, &[("patient", "p1")]),
            indexed_event(2, &[("patient", "p2")]),
        ])
        .await
        .expect("append");
    let mut attempts = vec![
        "UPDATE audit_log SET recorded = 0 WHERE seq = 1",
        "UPDATE audit_log SET seq = seq + 10",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_log",
        "UPDATE audit_index SET value = 'p3' WHERE seq = 1",
        "DELETE FROM audit_index WHERE seq = 2",
        "DELETE FROM audit_index",
    ];
    if store.engine() == "postgres" {
        attempts.push("TRUNCATE audit_log");
        attempts.push("TRUNCATE audit_index");
    }
    // (On SQLite the log file is the log and these tables its searchable copy, made when the
    // log is read: the triggers guard the copy.)
    assert_eq!(all_audit(store).await.len(), 2);
    for attempt in attempts {
        let refused = sql.execute(attempt).await.expect_err(attempt);
        assert!(refused.contains("append-only"), "{attempt}: {refused}");
    }
    // Appending is what the table is for.
    let forged = match store.engine() {
        // (SQLite's copy places a record in the log file: this row places none)
        "sqlite" => "INSERT INTO audit_log (seq, recorded, hash, file_offset, length) VALUES (3, 0, 'y', 0, 1)",
        _ => "INSERT INTO audit_log (seq, recorded, json, prev_hash, hash) VALUES (3, 0, '{}', 'x', 'y')",
    };
    sql.execute(forged).await.expect("inserts are not refused");
    assert!(matches!(
        store.verify_audit().await.expect("verify"),
        AuditCheck::Broken {
            verified: 2,
            fault: AuditFault::Changed { seq: 3 }
        }
    ));
}

/// When a group commit fails, every caller whose records were in it gets the error and none of
/// their records is written; appends work again once the database does.
pub async fn audit_failed_batch_fails_every_caller(store: &Store, sql: &impl RawSql) {
    store
        .append_audit(vec![audit_event(1)])
        .await
        .expect("append");
    // The table goes away under the store (as if the database failed), then comes back.
    sql.execute("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await
        .expect("rename away");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.append_audit(vec![audit_event(100 + n)]).await
        }));
    }
    for task in tasks {
        let outcome = task.await.expect("task");
        assert!(
            matches!(outcome, Err(StoreError::Database(_))),
            "{outcome:?}"
        );
    }
    // Writes whose record cannot be appended do not land either.
    let err = store
        .commit_with_audit(
            vec![put("Patient", "unrecorded", 1, Vec::new())],
            vec![audit_event(200)],
        )
        .await
        .expect_err("no record, no write");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert!(
        store
            .read("Patient", "unrecorded")
            .await
            .expect("read")
            .is_none(),
        "a write without its audit record"
    );
    sql.execute("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await
        .expect("rename back");
    let next = store
        .append_audit(vec![audit_event(2)])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 2, "the failed batches left nothing behind");
    assert_eq!(intact(store).await, (2, next[0].hash));
}

/// How many cases [`audit_tampering_is_named`] has.
pub const AUDIT_TAMPERING_CASES: usize = 8;

/// After a record is changed, removed or inserted directly in the database (triggers off), verify
/// names it: case number `case` (of [`AUDIT_TAMPERING_CASES`]), on a chain of six records (the
/// table is emptied first; where the database is not the whole log, as on SQLite, whose log is a
/// file, give each case a fresh store).
pub async fn audit_tampering_is_named(store: &Store, sql: &impl RawSql, case: usize) {
    sql.execute(disable_triggers(store))
        .await
        .expect("disable triggers");
    // On SQLite the database holds the searchable copy of the log file: where each record is,
    // not its text. A forged text can only be written to the file, whose tampering
    // `tests/sqlite.rs` covers; the cases that forge one apply to PostgreSQL.
    let sqlite = store.engine() == "sqlite";
    // A record with its own hash computed correctly, chained to `prev`: a careful forgery.
    let forged = |seq: i64, prev: &AuditHash| {
        let json = r#"{"resourceType":"AuditEvent","id":"forged"}"#;
        let hash = chain_hash(prev, seq, T0, json);
        format!(
            "INSERT INTO audit_log (seq, recorded, json, prev_hash, hash) VALUES ({seq}, {T0}, '{json}', '{prev}', '{hash}')"
        )
    };
    // What the attacker does (given the intact records), how many records still verify, the fault.
    type Tamper = Box<dyn Fn(&[AuditRecord]) -> Vec<String>>;
    let cases: Vec<(&str, Tamper, u64, AuditFault)> = vec![
        (
            "a record's JSON changed (on SQLite, where the copy finds it)",
            Box::new(move |_: &[AuditRecord]| {
                vec![if sqlite {
                    "UPDATE audit_log SET file_offset = file_offset + 1 WHERE seq = 3".to_string()
                } else {
                    r#"UPDATE audit_log SET json = '{"resourceType":"AuditEvent","id":"ae3","outcome":"8"}' WHERE seq = 3"#.to_string()
                }]
            }),
            2,
            AuditFault::Changed { seq: 3 },
        ),
        (
            "a record's time changed",
            Box::new(|_: &[AuditRecord]| {
                vec!["UPDATE audit_log SET recorded = recorded + 1 WHERE seq = 5".to_string()]
            }),
            4,
            AuditFault::Changed { seq: 5 },
        ),
        (
            "a record deleted",
            Box::new(|_: &[AuditRecord]| vec!["DELETE FROM audit_log WHERE seq = 4".to_string()]),
            3,
            AuditFault::Removed { first: 4, last: 4 },
        ),
        (
            "the first record deleted",
            Box::new(|_: &[AuditRecord]| vec!["DELETE FROM audit_log WHERE seq = 1".to_string()]),
            0,
            AuditFault::Removed { first: 1, last: 1 },
        ),
        (
            "a forged record inserted in the middle, the rest moved up",
            Box::new(move |records: &[AuditRecord]| {
                vec![
                    "UPDATE audit_log SET seq = -seq WHERE seq >= 3".to_string(),
                    "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0".to_string(),
                    forged(3, &records[1].hash),
                ]
            }),
            3,
            AuditFault::Inserted { seq: 3 },
        ),
        (
            "a forged record appended with a made-up previous hash",
            Box::new(move |_: &[AuditRecord]| vec![forged(7, &AuditHash([7; 32]))]),
            6,
            AuditFault::Unlinked {
                seq: 7,
                chained_to: None,
            },
        ),
        (
            "a forged record numbered before the first",
            Box::new(move |_: &[AuditRecord]| vec![forged(0, &AuditHash::ZERO)]),
            0,
            AuditFault::Inserted { seq: 0 },
        ),
        (
            "two records swapped",
            Box::new(|_: &[AuditRecord]| {
                vec![
                    "UPDATE audit_log SET seq = -2 WHERE seq = 2".to_string(),
                    "UPDATE audit_log SET seq = 2 WHERE seq = 5".to_string(),
                    "UPDATE audit_log SET seq = 5 WHERE seq = -2".to_string(),
                ]
            }),
            1,
            AuditFault::Unlinked {
                seq: 2,
                chained_to: Some(4),
            },
        ),
    ];
    assert_eq!(cases.len(), AUDIT_TAMPERING_CASES);
    if let Some((what, tamper, verified, fault)) = cases.into_iter().nth(case) {
        if sqlite && what.starts_with("a forged record") {
            return;
        }
        // SQLite's copy is compared row by row with the file's intact chain: the row numbered 2
        // is not where record 2 is.
        let (verified, fault) = if sqlite && what == "two records swapped" {
            (1, AuditFault::Changed { seq: 2 })
        } else {
            (verified, fault)
        };
        sql.execute("DELETE FROM audit_log")
            .await
            .expect("empty the log");
        let events: Vec<NewAuditRecord> = (1..=6).map(audit_event).collect();
        store.append_audit(events).await.expect("append");
        let records = all_audit(store).await;
        assert_eq!(intact(store).await.0, 6, "{what}: intact before");
        for statement in tamper(&records) {
            sql.execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{what}: {statement}: {e}"));
        }
        assert_audit_broken(store, what, verified, fault).await;
    }
}

/// Verify finds the log broken at `fault` after `verified` intact records, and what the operator
/// reads names the record (`what` says what was done to it).
pub async fn assert_audit_broken(store: &Store, what: &str, verified: u64, fault: AuditFault) {
    let got = store.verify_audit().await.expect("verify");
    assert_eq!(
        got,
        AuditCheck::Broken {
            verified,
            fault: fault.clone()
        },
        "{what}"
    );
    let named = match &fault {
        AuditFault::Changed { seq }
        | AuditFault::Inserted { seq }
        | AuditFault::Unlinked { seq, .. } => *seq,
        AuditFault::Removed { first, .. } => *first,
    };
    let said = fault.to_string();
    assert!(
        said.contains(&format!("record {named} ")) || said.contains(&format!("records {named} ")),
        "{what}: {fault}"
    );
}

// ---- SMART clients, assertion ids, the token key ---------------------------------------------

fn new_client(
    id: &str,
    participant: &str,
    keys: crate::ClientKeys,
    created: i64,
) -> crate::NewClient {
    crate::NewClient {
        client_id: id.to_string(),
        participant_id: participant.to_string(),
        keys,
        scopes: "system/Patient.rs system/Observation.rs".to_string(),
        created,
    }
}

/// A registered client reads back as given and active (with a JWKS or a JWKS URL), a taken id is a
/// conflict, the list is oldest first, and revoking (or reactivating) changes only that client.
pub async fn clients_register_read_list_revoke(store: &Store) {
    use crate::{ClientKeys, ClientStatus};
    assert_eq!(store.clients().await.expect("none"), Vec::new());
    assert_eq!(store.client("c1").await.expect("absent"), None);
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-384","kid":"k1","x":"AA","y":"BB"}]}"#;
    let first = store
        .register_client(new_client(
            "c1",
            "org-1",
            ClientKeys::Jwks(jwks.into()),
            100,
        ))
        .await
        .expect("register c1");
    assert_eq!(first.status, ClientStatus::Active);
    assert_eq!(first.keys, ClientKeys::Jwks(jwks.into()));
    let url = ClientKeys::JwksUrl("https://ehr.example/jwks.json".into());
    let second = store
        .register_client(new_client("c2", "org-2", url.clone(), 50))
        .await
        .expect("register c2");
    assert_eq!(store.client("c1").await.expect("read"), Some(first.clone()));
    assert_eq!(
        store.client("c2").await.expect("read"),
        Some(second.clone())
    );
    let taken = store
        .register_client(new_client("c1", "org-9", url, 200))
        .await
        .expect_err("the id is taken");
    assert!(
        matches!(taken, StoreError::Conflict { ref id, .. } if id == "c1"),
        "{taken:?}"
    );
    assert_eq!(
        store.client("c1").await.expect("read"),
        Some(first.clone()),
        "a refused registration changes nothing"
    );
    assert_eq!(
        store.clients().await.expect("list"),
        vec![second.clone(), first.clone()],
        "oldest first"
    );
    assert!(store
        .set_client_status("c1", ClientStatus::Revoked)
        .await
        .expect("revoke"));
    assert!(!store
        .set_client_status("nobody", ClientStatus::Revoked)
        .await
        .expect("unknown"));
    let revoked = store.client("c1").await.expect("read").expect("c1");
    assert_eq!(revoked.status, ClientStatus::Revoked);
    assert_eq!(
        store.client("c2").await.expect("read"),
        Some(second),
        "only c1 changed"
    );
    assert!(store
        .set_client_status("c1", ClientStatus::Active)
        .await
        .expect("reactivate"));
    assert_eq!(store.client("c1").await.expect("read"), Some(first));
}

/// A `jti` is accepted once per client until it expires; the same `jti` of another client is its
/// own; once expired it may be used again; and many expired ids are pruned without harm.
pub async fn jti_is_refused_until_it_expires(store: &Store) {
    let now = 1_800_000_000_u64;
    assert!(store
        .remember_jti("c1", "j1", now + 300, now)
        .await
        .expect("first"));
    assert!(!store
        .remember_jti("c1", "j1", now + 300, now)
        .await
        .expect("replay"));
    assert!(
        !store
            .remember_jti("c1", "j1", now + 600, now + 299)
            .await
            .expect("replay late"),
        "refused until it expires, whatever the new expiry says"
    );
    assert!(store
        .remember_jti("c2", "j1", now + 300, now)
        .await
        .expect("other client"));
    assert!(
        store
            .remember_jti("c1", "j1", now + 600, now + 300)
            .await
            .expect("after expiry"),
        "an expired jti no longer says anything"
    );
    assert!(!store
        .remember_jti("c1", "j1", now + 600, now + 301)
        .await
        .expect("replay again"));
    // Enough calls that pruning runs at least once on the way, with old and new ids mixed.
    for i in 0..200_u64 {
        let jti = format!("bulk-{i}");
        assert!(store
            .remember_jti("c3", &jti, now + i, now)
            .await
            .expect("bulk"));
    }
    let later = now + 100;
    for i in 0..200_u64 {
        let jti = format!("bulk-{i}");
        let fresh = store
            .remember_jti("c3", &jti, later + 300, later)
            .await
            .expect("bulk again");
        assert_eq!(
            fresh,
            i <= 100,
            "bulk-{i} expired at {} (now {later})",
            now + i
        );
    }
    assert!(!store
        .remember_jti("c1", "j1", now + 600, now + 400)
        .await
        .expect("kept"));
}

/// Many callers offering the same `jti` at once: exactly one is told it is new, every round.
pub async fn jti_concurrent_callers_get_one_true(store: &Store) {
    jti_race(std::slice::from_ref(store), 20).await;
}

/// Offers the same jti from `callers` tasks per round, spread over `stores`; asserts one winner.
pub async fn jti_race(stores: &[Store], rounds: usize) {
    let now = 1_800_000_000_u64;
    let callers = 8;
    for round in 0..rounds {
        let jti = format!("race-{round}");
        let mut tasks = Vec::new();
        for c in 0..callers {
            let store = stores[c % stores.len()].clone();
            let jti = jti.clone();
            tasks.push(tokio::spawn(async move {
                store.remember_jti("racer", &jti, now + 300, now).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            if task.await.expect("task").expect("remember") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one caller wins {jti}");
    }
}

/// The token key is 32 bytes, made on the first call and the same on every later one, also when
/// many ask at once on a fresh database.
pub async fn token_key_is_made_once(store: &Store) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.token_key().await }));
    }
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.expect("task").expect("token key"));
    }
    assert_eq!(keys[0].len(), 32);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every caller sees one key"
    );
    assert_ne!(keys[0], vec![0; 32]);
    assert_eq!(store.token_key().await.expect("again"), keys[0]);
}

/// Two stores on one database (two processes): one key between them, and one winner per `jti`.
pub async fn clients_shared_between_stores(a: &Store, b: &Store) {
    let (ka, kb) = tokio::join!(a.token_key(), b.token_key());
    assert_eq!(ka.expect("a"), kb.expect("b"), "one key for the database");
    jti_race(&[a.clone(), b.clone()], 20).await;
    a.register_client(new_client(
        "shared",
        "org-1",
        crate::ClientKeys::JwksUrl("https://x.example/jwks".into()),
        1,
    ))
    .await
    .expect("register");
    assert!(b.client("shared").await.expect("read").is_some());
}

// ---- portal accounts and sessions ------------------------------------------------------------

fn new_user(id: &str, login: &str, role: &str, created: i64) -> crate::NewUser {
    crate::NewUser {
        user_id: id.to_string(),
        login: login.to_string(),
        display_name: format!("User {id}"),
        role: role.to_string(),
        participant_id: (role != "patient" && role != "operator-admin").then(|| "org-1".into()),
        patient_id: (role == "patient").then(|| "pat-1".into()),
        practitioner_id: None,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_string(),
        totp_secret: (role == "patient").then(|| "00112233445566778899aabbccddeeff".into()),
        created,
    }
}

/// An account reads back as given and active, by id and by login in any case; a login taken in
/// another case (or a taken id) is a conflict; the list is oldest first; disabling changes only it.
pub async fn accounts_add_find_list_disable(store: &Store) {
    assert_eq!(store.users().await.expect("none"), Vec::new());
    assert_eq!(store.user_by_login("alice").await.expect("absent"), None);
    let alice = store
        .add_user(crate::NewUser {
            practitioner_id: Some("pr-alice".into()),
            ..new_user("u1", "Alice.Smith", "clinician", 100)
        })
        .await
        .expect("add");
    assert_eq!(alice.status, crate::UserStatus::Active);
    assert_eq!(alice.practitioner_id.as_deref(), Some("pr-alice"));
    assert_eq!((alice.failed_attempts, alice.locked_until), (0, None));
    let bob = store
        .add_user(new_user("u2", "bob", "patient", 50))
        .await
        .expect("add");
    assert_eq!(store.user("u1").await.expect("read"), Some(alice.clone()));
    assert_eq!(
        store.user_by_login("ALICE.smith").await.expect("read"),
        Some(alice.clone()),
        "a login is found regardless of case"
    );
    assert_eq!(bob.patient_id.as_deref(), Some("pat-1"));
    assert_eq!(bob.practitioner_id, None);
    assert!(bob.totp_secret.is_some());
    for taken in [
        new_user("u3", "alice.SMITH", "staff", 200),
        new_user("u1", "carol", "staff", 200),
    ] {
        assert!(
            matches!(
                store.add_user(taken.clone()).await,
                Err(StoreError::Conflict { .. })
            ),
            "{} / {} is taken",
            taken.user_id,
            taken.login
        );
    }
    assert_eq!(
        store.users().await.expect("list"),
        vec![bob.clone(), alice.clone()]
    );
    assert!(store
        .set_user_status("u1", crate::UserStatus::Disabled)
        .await
        .expect("disable"));
    assert!(!store
        .set_user_status("nobody", crate::UserStatus::Disabled)
        .await
        .expect("unknown"));
    assert_eq!(
        store.user("u1").await.expect("read").map(|u| u.status),
        Some(crate::UserStatus::Disabled)
    );
    assert_eq!(store.user("u2").await.expect("read"), Some(bob));
    assert!(store.set_password_hash("u1", "$new").await.expect("rehash"));
    assert_eq!(
        store
            .user("u1")
            .await
            .expect("read")
            .map(|u| u.password_hash),
        Some("$new".to_string())
    );
}

/// Failed sign-ins are counted one by one, also when many fail at once; a lock is kept until
/// reset, and a reset forgets both.
pub async fn accounts_failed_attempts_and_locks(store: &Store) {
    store
        .add_user(new_user("u1", "alice", "clinician", 1))
        .await
        .expect("add");
    assert_eq!(store.record_failed_sign_in("u1").await.expect("fail"), 1);
    assert_eq!(store.record_failed_sign_in("u1").await.expect("fail"), 2);
    assert_eq!(
        store.record_failed_sign_in("nobody").await.expect("none"),
        0
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.record_failed_sign_in("u1").await
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("task").expect("fail"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (3..=10).collect::<Vec<i64>>(),
        "each failure counted once"
    );
    assert!(store.lock_user_until("u1", 5_000).await.expect("lock"));
    let locked = store.user("u1").await.expect("read").expect("u1");
    assert_eq!(
        (locked.failed_attempts, locked.locked_until),
        (10, Some(5_000))
    );
    assert!(store.reset_failed_sign_ins("u1").await.expect("reset"));
    let reset = store.user("u1").await.expect("read").expect("u1");
    assert_eq!((reset.failed_attempts, reset.locked_until), (0, None));
    assert_eq!(store.record_failed_sign_in("u1").await.expect("fail"), 1);
}

/// A TOTP step is taken once, and never one at or before the last taken; of many sign-ins with one
/// code at once, exactly one takes it.
pub async fn accounts_totp_step_is_taken_once(store: &Store) {
    store
        .add_user(new_user("u1", "alice", "patient", 1))
        .await
        .expect("add");
    assert!(store.use_totp_step("u1", 1000).await.expect("first"));
    assert!(!store.use_totp_step("u1", 1000).await.expect("again"));
    assert!(!store.use_totp_step("u1", 999).await.expect("earlier"));
    assert!(store.use_totp_step("u1", 1001).await.expect("later"));
    assert_eq!(
        store
            .user("u1")
            .await
            .expect("read")
            .and_then(|u| u.last_totp_step),
        Some(1001)
    );
    assert!(!store.use_totp_step("nobody", 5).await.expect("unknown"));
    for round in 0..10_i64 {
        let step = 2000 + round;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.use_totp_step("u1", step).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            if task.await.expect("task").expect("use") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "step {step}: exactly one sign-in takes it");
    }
}

/// Sessions read back by their id hash, are touched, end one by one, by account, and by age.
pub async fn accounts_sessions_live_and_end(store: &Store) {
    for (id, login) in [("u1", "alice"), ("u2", "bob")] {
        store
            .add_user(new_user(id, login, "staff", 1))
            .await
            .expect("add");
    }
    let session = |hash: &str, user: &str, created: i64| crate::Session {
        id_hash: hash.to_string(),
        user_id: user.to_string(),
        csrf: format!("csrf-{hash}"),
        created,
        expires: created + 43_200,
        last_seen: created,
    };
    let first = store
        .create_session(session("h1", "u1", 10_000))
        .await
        .expect("create");
    assert!(matches!(
        store.create_session(session("h1", "u2", 10_000)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.session("h1").await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(store.session("nope").await.expect("read"), None);
    assert!(store.touch_session("h1", 10_500).await.expect("touch"));
    assert!(!store.touch_session("nope", 10_500).await.expect("touch"));
    assert_eq!(
        store
            .session("h1")
            .await
            .expect("read")
            .map(|s| s.last_seen),
        Some(10_500)
    );
    store
        .create_session(session("h2", "u1", 10_000))
        .await
        .expect("create");
    store
        .create_session(session("h3", "u2", 10_000))
        .await
        .expect("create");
    store
        .create_session(session("h4", "u2", 0))
        .await
        .expect("create");
    assert!(store.delete_session("h2").await.expect("delete"));
    assert!(!store.delete_session("h2").await.expect("again"));
    assert_eq!(store.session("h2").await.expect("read"), None);
    // h4 is past its absolute end; h3 idle since 10 000; h1 seen at 10 500.
    assert_eq!(
        store
            .delete_expired_sessions(43_300, 10_100)
            .await
            .expect("expire"),
        2
    );
    assert_eq!(
        store.session("h1").await.expect("read").map(|s| s.user_id),
        Some("u1".into())
    );
    assert_eq!(store.session("h3").await.expect("read"), None);
    assert_eq!(store.session("h4").await.expect("read"), None);
    store
        .create_session(session("h5", "u1", 10_000))
        .await
        .expect("create");
    assert_eq!(store.delete_user_sessions("u1").await.expect("by user"), 2);
    assert_eq!(store.session("h1").await.expect("read"), None);
}

/// An account made with an invitation has no password until the invitation is taken; it is taken
/// once, not after it expired or was replaced, not for a disabled account, and taking it sets the
/// password, forgets failures and ends the account's sessions.
pub async fn accounts_invitations_set_a_password_once(store: &Store) {
    let invitation = |hash: &str, created: i64| crate::NewInvitation {
        token_hash: hash.to_string(),
        created,
        expires: created + 1_000,
    };
    let mut new = new_user("u1", "alice", "participant-admin", 100);
    new.password_hash = "$would-be-ignored".to_string();
    let alice = store
        .add_invited_user(new, invitation("t1", 100))
        .await
        .expect("add");
    assert_eq!(alice.password_hash, crate::NO_PASSWORD);
    assert_eq!(
        store
            .user("u1")
            .await
            .expect("read")
            .map(|u| u.password_hash),
        Some(crate::NO_PASSWORD.to_string())
    );
    // A taken login rolls the invitation back with the account.
    assert!(matches!(
        store
            .add_invited_user(
                new_user("u2", "ALICE", "staff", 100),
                invitation("t-other", 100)
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.invitation("t-other").await.expect("read"), None);
    let found = store.invitation("t1").await.expect("read").expect("stored");
    assert_eq!((found.user_id.as_str(), found.expires), ("u1", 1_100));
    assert!(found.open_at(1_099) && !found.open_at(1_100));
    // Expired: nothing changes.
    assert_eq!(
        store
            .accept_invitation("t1", "$late", 1_100)
            .await
            .expect("late"),
        None
    );
    // A newer invitation replaces the one not taken.
    assert!(store
        .invite_user("u1", invitation("t2", 200))
        .await
        .expect("again"));
    assert!(!store
        .invite_user("nobody", invitation("t3", 200))
        .await
        .expect("unknown"));
    assert_eq!(store.invitation("t1").await.expect("read"), None);
    assert_eq!(
        store
            .accept_invitation("t1", "$old", 300)
            .await
            .expect("old"),
        None
    );
    store.record_failed_sign_in("u1").await.expect("fail");
    store.lock_user_until("u1", 10_000).await.expect("lock");
    store
        .create_session(crate::Session {
            id_hash: "s1".to_string(),
            user_id: "u1".to_string(),
            csrf: "c".to_string(),
            created: 250,
            expires: 10_000,
            last_seen: 250,
        })
        .await
        .expect("session");
    assert_eq!(
        store
            .accept_invitation("t2", "$set", 300)
            .await
            .expect("take"),
        Some("u1".to_string())
    );
    let user = store.user("u1").await.expect("read").expect("there");
    assert_eq!(user.password_hash, "$set");
    assert_eq!((user.failed_attempts, user.locked_until), (0, None));
    assert_eq!(store.session("s1").await.expect("read"), None);
    assert_eq!(
        store
            .invitation("t2")
            .await
            .expect("read")
            .and_then(|i| i.used),
        Some(300)
    );
    assert_eq!(
        store
            .accept_invitation("t2", "$again", 301)
            .await
            .expect("twice"),
        None,
        "an invitation is taken once"
    );
    // A disabled account's invitation sets nothing.
    assert!(store
        .invite_user("u1", invitation("t4", 400))
        .await
        .expect("again"));
    store
        .set_user_status("u1", crate::UserStatus::Disabled)
        .await
        .expect("disable");
    assert_eq!(
        store
            .accept_invitation("t4", "$x", 500)
            .await
            .expect("disabled"),
        None
    );
    assert_eq!(
        store
            .user("u1")
            .await
            .expect("read")
            .map(|u| u.password_hash),
        Some("$set".to_string())
    );
}

// ---- real deletion (the consent purge) --------------------------------------------------------

/// The audit record a purge makes of what it removed (none when nothing was).
fn purge_audit(tag: &'static str) -> crate::PurgeAudit {
    Box::new(move |purged: &[crate::Purged]| {
        if purged.is_empty() {
            return Vec::new();
        }
        let versions: u64 = purged.iter().map(|p| p.versions).sum();
        vec![NewAuditRecord {
            recorded: T0 + 1_000,
            json: format!(
                r#"{{"resourceType":"AuditEvent","id":"{tag}","outcomeDesc":"purged {} resources, {versions} versions"}}"#,
                purged.len()
            ),
            index: vec![("subtype".to_string(), "purge".to_string())],
        }]
    })
}

/// Rows of `table` that belong to no resource any more, and rows of every table in total.
async fn orphans_and_rows(store: &Store) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let mut orphans = Vec::new();
    let mut totals = Vec::new();
    for table in [
        "idx_string",
        "idx_token",
        "idx_token_type",
        "idx_date",
        "idx_number",
        "idx_quantity",
        "idx_reference",
        "idx_uri",
        "compartment",
        "versions",
    ] {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.rid = t.rid)"
        );
        let n = store.query_rows(&sql).await.expect("count orphans");
        orphans.push((table.to_string(), n[0][0].clone()));
        let n = store
            .query_rows(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count rows");
        totals.push((table.to_string(), n[0][0].clone()));
    }
    (orphans, totals)
}

/// A purge removes every version, index row and compartment row of the resources it is given, in
/// one transaction with the audit record made from what went; the resources then look as if they
/// never existed (read, vread, history, search, compartment), what was not given stays, the audit
/// chain still verifies, and a second purge removes and records nothing. `compartment_members`
/// finds what was ever in a patient's compartment (a deleted resource, one that moved to another
/// patient) and the Patient itself, without the types excepted.
pub async fn purge_removes_every_row(store: &Store) {
    commit(
        store,
        vec![
            put_at(
                "Patient",
                "p1",
                1,
                T0,
                vec![string("name", "Ada")],
                vec!["p1"],
            ),
            put_at(
                "Patient",
                "p2",
                1,
                T0,
                vec![string("name", "Bo")],
                vec!["p2"],
            ),
            put_at("Observation", "o1", 1, T0, vec![code_row("x")], vec!["p1"]),
            put_at("Observation", "o2", 1, T0, vec![code_row("x")], vec!["p1"]),
            put_at("Observation", "o3", 1, T0, vec![code_row("x")], vec!["p2"]),
            put_at(
                "Observation",
                "o4",
                1,
                T0,
                vec![code_row("x")],
                vec!["p1", "p2"],
            ),
            put_at("Observation", "o5", 1, T0, vec![code_row("x")], vec!["p1"]),
            put_at("Consent", "c1", 1, T0, vec![code_row("optout")], vec!["p1"]),
        ],
    )
    .await;
    commit(
        store,
        vec![
            put_at(
                "Observation",
                "o1",
                2,
                T0 + 5,
                vec![code_row("y")],
                vec!["p1"],
            ),
            delete("Observation", "o2", 2, T0 + 5),
            put_at(
                "Observation",
                "o5",
                2,
                T0 + 5,
                vec![code_row("x")],
                vec!["p2"],
            ),
        ],
    )
    .await;
    store
        .append_audit(vec![audit_event(1)])
        .await
        .expect("audit");
    let members = store
        .compartment_members(&["p1".to_string()], &["Consent".to_string()])
        .await
        .expect("members");
    let expected: Vec<(String, String)> = [
        ("Observation", "o1"),
        ("Observation", "o2"),
        ("Observation", "o4"),
        ("Observation", "o5"),
        ("Patient", "p1"),
    ]
    .iter()
    .map(|(t, i)| (t.to_string(), i.to_string()))
    .collect();
    assert_eq!(members, expected);
    let mut with_unknown = members.clone();
    with_unknown.push(("Observation".to_string(), "never".to_string()));
    let purged = store
        .purge(with_unknown, purge_audit("purge1"))
        .await
        .expect("purge");
    let got: Vec<(String, String, u64)> = purged
        .iter()
        .map(|p| (p.resource_type.clone(), p.id.clone(), p.versions))
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Observation".to_string(), "o1".to_string(), 2),
            ("Observation".to_string(), "o2".to_string(), 2),
            ("Observation".to_string(), "o4".to_string(), 1),
            ("Observation".to_string(), "o5".to_string(), 2),
            ("Patient".to_string(), "p1".to_string(), 1),
        ]
    );
    for (ty, id) in &expected {
        assert!(
            store.read(ty, id).await.expect("read").is_none(),
            "{ty}/{id}"
        );
        assert!(
            store.vread(ty, id, 1).await.expect("vread").is_none(),
            "{ty}/{id}"
        );
        let history = store
            .history(&history_request(
                HistoryScope::Instance(ty.clone(), id.clone()),
                10,
            ))
            .await
            .expect("history");
        assert!(history.entries.is_empty(), "{ty}/{id}");
    }
    check(
        store,
        &query("Observation", vec![vec![index("code", code("x"))]]),
        &["Observation/o3"],
    )
    .await;
    check(
        store,
        &query("Observation", vec![vec![index("code", code("y"))]]),
        &[],
    )
    .await;
    let left = store
        .compartment(&compartment_request("p1", 10))
        .await
        .expect("compartment");
    assert_eq!(keys(&left.matches), vec!["Consent/c1".to_string()]);
    let type_history = store
        .history(&history_request(
            HistoryScope::Type("Observation".into()),
            50,
        ))
        .await
        .expect("type history");
    let ids: Vec<&str> = type_history.entries.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["o3"],
        "nothing of the purged in the type's history"
    );
    // Straight from the tables: no row of any purged resource is left, and only the rows of
    // Patient/p2, Observation/o3 and Consent/c1 remain.
    let (orphans, totals) = orphans_and_rows(store).await;
    assert!(orphans.iter().all(|(_, n)| n == "0"), "{orphans:?}");
    let resources = store
        .query_rows("SELECT type, id FROM resources ORDER BY type, id")
        .await
        .expect("resources");
    assert_eq!(
        resources,
        vec![
            vec!["Consent".to_string(), "c1".to_string()],
            vec!["Observation".to_string(), "o3".to_string()],
            vec!["Patient".to_string(), "p2".to_string()],
        ]
    );
    let versions = totals
        .iter()
        .find(|(t, _)| t == "versions")
        .map(|(_, n)| n.as_str());
    assert_eq!(versions, Some("3"));
    let compartment = totals
        .iter()
        .find(|(t, _)| t == "compartment")
        .map(|(_, n)| n.as_str());
    assert_eq!(compartment, Some("3"), "c1's, o3's and p2's rows");
    // The purge's record is in the chain, after the earlier one, and the chain verifies.
    let records = all_audit(store).await;
    assert_eq!(records.len(), 2);
    assert!(records[1].json.contains("purged 5 resources, 8 versions"));
    assert_eq!(intact(store).await.0, 2);
    // Again: nothing left to remove, nothing recorded.
    let again = store
        .purge(expected.clone(), purge_audit("purge2"))
        .await
        .expect("purge again");
    assert!(again.is_empty());
    assert_eq!(all_audit(store).await.len(), 2);
    // An id purged may be used again: it starts afresh at version 1.
    commit(
        store,
        vec![put_at(
            "Observation",
            "o1",
            1,
            T0 + 9,
            vec![code_row("z")],
            vec!["p1"],
        )],
    )
    .await;
    assert_eq!(
        store
            .read("Observation", "o1")
            .await
            .expect("read")
            .map(|s| s.version),
        Some(1)
    );
}

/// Two purges of the same resources at once (through `a` and `b`: two pools of one database on
/// PostgreSQL, as two processes would be) remove each resource once between them, and exactly
/// one audit record per purge that removed something; the chain verifies.
pub async fn purge_race(a: &Store, b: &Store) {
    let mut writes = vec![put_at("Patient", "p", 1, T0, Vec::new(), vec!["p"])];
    for i in 0..40 {
        writes.push(put_at(
            "Observation",
            &format!("o{i}"),
            1,
            T0,
            vec![code_row("x")],
            vec!["p"],
        ));
    }
    commit(a, writes).await;
    let targets = a
        .compartment_members(&["p".to_string()], &[])
        .await
        .expect("members");
    assert_eq!(targets.len(), 41);
    let (one, two) = tokio::join!(
        a.purge(targets.clone(), purge_audit("race-a")),
        b.purge(targets.clone(), purge_audit("race-b")),
    );
    let (one, two) = (one.expect("purge a"), two.expect("purge b"));
    assert_eq!(one.len() + two.len(), 41, "each resource removed once");
    let records = all_audit(a).await;
    let expected = usize::from(!one.is_empty()) + usize::from(!two.is_empty());
    assert_eq!(records.len(), expected);
    assert_eq!(intact(a).await.0, expected as u64);
    let (orphans, totals) = orphans_and_rows(a).await;
    assert!(orphans.iter().all(|(_, n)| n == "0"), "{orphans:?}");
    assert!(totals.iter().all(|(_, n)| n == "0"), "{totals:?}");
}

// ---- connecting to the exchange (issue 7) ------------------------------------------------------

fn licence(kind: &str, number: &str, state: &str) -> crate::LicenceRecord {
    crate::LicenceRecord {
        licence_type: kind.to_string(),
        number: number.to_string(),
        state: state.to_string(),
    }
}

/// A synthetic application received at `received`.
pub fn application(id: &str, npi: &str, number: &str, received: i64) -> crate::ApplicationData {
    crate::ApplicationData {
        application_id: id.to_string(),
        received,
        kind: "solo-practitioner".to_string(),
        legal_name: format!("Practice {id}"),
        npi: npi.to_string(),
        licences: vec![licence("lmft", number, "CT")],
        address_line: "12 Main Street".to_string(),
        city: "Hartford".to_string(),
        state: "CT".to_string(),
        postcode: "06103".to_string(),
        ehr_kind: "none".to_string(),
        ehr_value: String::new(),
        signer_name: "Jane Doe".to_string(),
        signer_title: "Owner".to_string(),
        signer_email: "jane@example.org".to_string(),
        contact_name: "Jane Doe".to_string(),
        contact_email: "jane@example.org".to_string(),
        contact_phone: "8605550100".to_string(),
        path: "secure-messaging".to_string(),
        participant_id: None,
        user_id: None,
    }
}

fn step(step: &str, by: &str, at: i64) -> crate::StepRecord {
    crate::StepRecord {
        step: step.to_string(),
        by: by.to_string(),
        at,
    }
}

fn ids(records: &[crate::ApplicationRecord]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.data.application_id.as_str())
        .collect()
}

/// Applications come back as stored, with their licences and first step; an id is stored once;
/// duplicates are found by NPI or by licence (type, number and state); the participant and the
/// portal account are linked after.
pub async fn onboarding_applications_stored_and_found(store: &Store) {
    assert!(store.applications().await.expect("none").is_empty());
    let mut a1 = application("app-1", "1234567893", "LMFT001234", T0 + 20);
    a1.licences.push(licence("lpc", "LPC77", "NY"));
    let added = store
        .add_application(a1.clone(), "applicant")
        .await
        .expect("add");
    assert_eq!(added.data, a1);
    assert_eq!(
        added.steps,
        vec![step("application-received", "applicant", T0 + 20)]
    );
    let read = store
        .application("app-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read, added, "read back as stored, licences in order");
    assert!(matches!(
        store
            .add_application(application("app-1", "1", "2", T0), "x")
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let mut none = application("app-0", "1", "2", T0);
    none.licences.clear();
    assert!(store.add_application(none, "x").await.is_err());
    store
        .add_application(
            application("app-2", "1999999999", "LMFT009999", T0 + 10),
            "op",
        )
        .await
        .expect("add");
    store
        .add_application(application("app-3", "1888888888", "LPC77", T0 + 30), "op")
        .await
        .expect("add");
    assert_eq!(
        ids(&store.applications().await.expect("all")),
        vec!["app-2", "app-1", "app-3"]
    );
    assert_eq!(store.application("app-9").await.expect("read"), None);

    let like = |npi: &'static str, licences: Vec<crate::LicenceRecord>| {
        let store = store.clone();
        async move {
            let found = store.applications_like(npi, &licences).await.expect("like");
            ids(&found)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(like("1234567893", vec![]).await, vec!["app-1"]);
    assert_eq!(
        like("1000000004", vec![licence("lpc", "LPC77", "NY")]).await,
        vec!["app-1"],
        "the same licence in another state or of another type is another licence"
    );
    assert_eq!(
        like("1999999999", vec![licence("lmft", "LMFT001234", "CT")]).await,
        vec!["app-2", "app-1"]
    );
    assert!(
        like("1000000004", vec![licence("lpc", "LPC77", "CT")])
            .await
            .is_empty(),
        "app-1 holds LPC77 in NY, app-3 an lmft LPC77"
    );
    assert_eq!(
        like("1000000004", vec![licence("lmft", "LPC77", "CT")]).await,
        vec!["app-3"]
    );

    store
        .add_user(crate::NewUser {
            user_id: "u1".into(),
            login: "jane@example.org".into(),
            display_name: "Jane Doe".into(),
            role: "participant-admin".into(),
            participant_id: Some("org-1".into()),
            patient_id: None,
            practitioner_id: None,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            totp_secret: None,
            created: 1,
        })
        .await
        .expect("user");
    assert!(store
        .link_application("app-1", Some("org-1"), None)
        .await
        .expect("link"));
    assert!(store
        .link_application("app-1", None, Some("u1"))
        .await
        .expect("link"));
    assert!(!store
        .link_application("app-9", Some("x"), None)
        .await
        .expect("link"));
    let linked = store
        .application("app-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(linked.data.participant_id.as_deref(), Some("org-1"));
    assert_eq!(
        linked.data.user_id.as_deref(),
        Some("u1"),
        "a None keeps what is stored"
    );
    assert_eq!(
        ids(&store.applications_of_user("u1").await.expect("mine")),
        vec!["app-1"]
    );
    assert!(store
        .applications_of_user("u2")
        .await
        .expect("none")
        .is_empty());
    assert_eq!(
        ids(&store
            .applications_of_participant("org-1")
            .await
            .expect("of")),
        vec!["app-1"]
    );
}

/// A step is stored once, only while the application is on the path the caller saw; a change of
/// path happens only from the path the caller saw, numbered per application; of two concurrent
/// callers recording one step, exactly one succeeds.
/// An operator's decision about an application without a participant is kept once, with who,
/// when and why; one that names a participant links the application and joins the applicant's
/// account (if it has no participant); an application with a participant, or unknown, is refused.
pub async fn onboarding_decisions_once_with_their_participant(store: &Store) {
    for (id, npi) in [
        ("app-1", "1234567893"),
        ("app-2", "1234567893"),
        ("app-3", "1245319599"),
    ] {
        store
            .add_application(application(id, npi, "A1", T0), "applicant")
            .await
            .expect("add");
    }
    store
        .add_user(new_user("u2", "kim", "participant-admin", 1))
        .await
        .expect("user");
    let mut without = new_user("u3", "lee", "participant-admin", 1);
    without.participant_id = None;
    store.add_user(without).await.expect("user");
    store
        .link_application("app-1", Some("org-1"), None)
        .await
        .expect("link");
    let decision =
        |decision: &str, of: Option<&str>, participant: Option<&str>| crate::DecisionRecord {
            decision: decision.to_string(),
            duplicate_of: of.map(str::to_string),
            participant_id: participant.map(str::to_string),
            by: "olive".to_string(),
            at: T0 + 50,
            reason: "checked with the board".to_string(),
        };
    let closed = decision("duplicate", Some("app-1"), None);
    store
        .decide_application("app-2", closed.clone(), Some("u2"))
        .await
        .expect("decide");
    let read = store
        .application("app-2")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(read.decision, Some(closed));
    assert_eq!(read.data.participant_id, None);
    for (id, d) in [
        ("app-2", decision("distinct", None, Some("org-9"))),
        ("app-1", decision("existing", None, Some("org-9"))),
        ("app-9", decision("distinct", None, Some("org-9"))),
    ] {
        assert!(
            matches!(
                store.decide_application(id, d, None).await,
                Err(StoreError::Conflict { .. })
            ),
            "{id} cannot be decided"
        );
    }
    assert_eq!(
        store
            .application("app-1")
            .await
            .expect("read")
            .and_then(|r| r.data.participant_id),
        Some("org-1".to_string()),
        "a refused decision changed nothing"
    );
    // An account with a participant keeps it; one without joins the decided participant.
    let existing = decision("existing", None, Some("org-7"));
    store
        .decide_application("app-3", existing.clone(), Some("u3"))
        .await
        .expect("decide");
    let read = store
        .application("app-3")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(read.data.participant_id.as_deref(), Some("org-7"));
    assert_eq!(read.decision, Some(existing));
    assert_eq!(
        store
            .user("u3")
            .await
            .expect("read")
            .and_then(|u| u.participant_id),
        Some("org-7".to_string())
    );
    assert_eq!(
        store
            .user("u2")
            .await
            .expect("read")
            .and_then(|u| u.participant_id),
        Some("org-1".to_string())
    );
}

pub async fn onboarding_steps_once_and_on_the_path(store: &Store) {
    store
        .add_application(application("app-1", "1234567893", "A1", T0), "applicant")
        .await
        .expect("add");
    store
        .record_step(
            "app-1",
            "secure-messaging",
            step("package-sent", "op", T0 + 5),
        )
        .await
        .expect("step");
    for (id, path, s) in [
        ("app-1", "secure-messaging", "package-sent"),
        ("app-1", "ehr", "agreements-signed"),
        ("app-9", "secure-messaging", "package-sent"),
    ] {
        assert!(
            matches!(
                store.record_step(id, path, step(s, "op", T0 + 6)).await,
                Err(StoreError::Conflict { .. })
            ),
            "{id} {path} {s}"
        );
    }
    assert!(matches!(
        store
            .change_path("app-1", "ehr", "secure-messaging", "op", T0 + 7, "r")
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let first = store
        .change_path(
            "app-1",
            "secure-messaging",
            "ehr",
            "op",
            T0 + 7,
            "the vendor connects",
        )
        .await
        .expect("change");
    assert_eq!(
        (first.seq, first.reason.as_str()),
        (1, "the vendor connects")
    );
    let second = store
        .change_path("app-1", "ehr", "secure-messaging", "op2", T0 + 8, "back")
        .await
        .expect("change");
    assert_eq!(second.seq, 2);
    assert!(matches!(
        store
            .change_path("app-9", "ehr", "secure-messaging", "op", T0, "r")
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let (a, b) = tokio::join!(
        store.record_step(
            "app-1",
            "secure-messaging",
            step("agreements-signed", "a", T0 + 9)
        ),
        store.record_step(
            "app-1",
            "secure-messaging",
            step("agreements-signed", "b", T0 + 9)
        ),
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    let read = store
        .application("app-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read.data.path, "secure-messaging");
    let steps: Vec<&str> = read.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        vec!["application-received", "package-sent", "agreements-signed"]
    );
    assert_eq!(read.steps[1], step("package-sent", "op", T0 + 5));
    assert_eq!(read.path_changes, vec![first, second]);
}

fn document(kind: &str, version: i64, text: &str) -> crate::AgreementDocument {
    crate::AgreementDocument {
        kind: kind.to_string(),
        version,
        title: format!("{kind} v{version}"),
        text: text.to_string(),
        sha256: format!("{:064x}", version),
        required_for: vec!["hospital".to_string(), "solo-practice".to_string()],
        published: T0 + version,
        published_by: "op".to_string(),
    }
}

/// Versions are published once and read back exactly (the text's bytes, trailing spaces and all);
/// signatures are stored once, only with the consent to sign electronically, and found by
/// application.
pub async fn onboarding_agreements_and_signatures(store: &Store) {
    let v1 = document(
        "participation",
        1,
        "The participant agrees.\r\n  Ünïcode  \n",
    );
    store.publish_agreement(v1.clone()).await.expect("publish");
    assert!(matches!(
        store
            .publish_agreement(document("participation", 1, "other"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let mut bad = document("baa", 1, "x");
    bad.required_for = vec!["a,b".to_string()];
    assert!(store.publish_agreement(bad).await.is_err());
    let v2 = document("participation", 2, "The participant agrees, v2.");
    let baa = document("baa", 1, "Business associate terms.");
    store.publish_agreement(v2.clone()).await.expect("publish");
    store.publish_agreement(baa.clone()).await.expect("publish");
    assert_eq!(
        store.agreements().await.expect("list"),
        vec![baa.clone(), v1.clone(), v2.clone()]
    );
    assert_eq!(
        store.agreement("participation", 1).await.expect("one"),
        Some(v1.clone())
    );
    assert_eq!(
        store.agreement("participation", 3).await.expect("none"),
        None
    );

    store
        .add_application(application("app-1", "1234567893", "A1", T0), "applicant")
        .await
        .expect("add");
    store
        .add_application(application("app-2", "1999999999", "A2", T0), "applicant")
        .await
        .expect("add");
    let signature = |id: &str, app: &str, at: i64| crate::AgreementSignature {
        signature_id: id.to_string(),
        kind: "participation".to_string(),
        version: 1,
        sha256: v1.sha256.clone(),
        signer_name: "Jane Doe".to_string(),
        signer_title: "Owner".to_string(),
        consented_electronically: true,
        signed_at: at,
        client_address: "192.0.2.7".to_string(),
        user_id: None,
        application_id: app.to_string(),
        participant_id: Some("org-1".to_string()),
    };
    let s1 = store
        .add_signature(signature("s1", "app-1", T0 + 50))
        .await
        .expect("sign");
    let s2 = store
        .add_signature(signature("s2", "app-2", T0 + 40))
        .await
        .expect("sign");
    assert!(matches!(
        store.add_signature(signature("s1", "app-2", T0)).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut unconsented = signature("s3", "app-1", T0);
    unconsented.consented_electronically = false;
    assert!(store.add_signature(unconsented).await.is_err());
    assert_eq!(
        store.signatures(Some("app-1")).await.expect("of"),
        vec![s1.clone()]
    );
    assert_eq!(
        store.signatures(None).await.expect("all"),
        vec![s2, s1.clone()]
    );
    assert_eq!(store.signature("s1").await.expect("one"), Some(s1));
    assert_eq!(store.signature("s3").await.expect("none"), None);
}

/// The compliance report's read: every application with its licences and the times of the steps
/// that decide compliance.
pub async fn onboarding_facts_for_compliance(store: &Store) {
    assert!(store.onboarding_facts().await.expect("none").is_empty());
    let mut sm = application("app-sm", "1234567893", "LMFT1", T0);
    sm.participant_id = Some("org-1".to_string());
    store.add_application(sm, "applicant").await.expect("add");
    let mut ehr = application("app-ehr", "1999999999", "H1", T0 + 1);
    ehr.kind = "organization".to_string();
    ehr.path = "ehr".to_string();
    ehr.ehr_kind = "catalog".to_string();
    ehr.ehr_value = "acme-ehr".to_string();
    ehr.licences = vec![
        licence("hospital", "H1", "CT"),
        licence("laboratory", "L1", "CT"),
    ];
    store.add_application(ehr, "op").await.expect("add");
    for (s, at) in [
        ("package-sent", 1),
        ("agreements-signed", 2),
        ("direct-address-issued", 3),
        ("test-message-exchanged", 4),
    ] {
        store
            .record_step("app-sm", "secure-messaging", step(s, "op", T0 + at * DAY))
            .await
            .expect("step");
    }
    for (s, at) in [
        ("package-sent", 1),
        ("agreements-signed", 2),
        ("endpoints-registered", 3),
        ("test-messages-passed", 4),
        ("live", 5),
    ] {
        store
            .record_step("app-ehr", "ehr", step(s, "op", T0 + at * DAY))
            .await
            .expect("step");
    }
    let facts = store.onboarding_facts().await.expect("facts");
    assert_eq!(facts.len(), 2);
    let (sm, ehr) = (&facts[0], &facts[1]);
    assert_eq!(
        (
            sm.application_id.as_str(),
            sm.participant_id.as_deref(),
            sm.path.as_str()
        ),
        ("app-sm", Some("org-1"), "secure-messaging")
    );
    assert_eq!(sm.received, T0);
    assert_eq!(sm.test_message_exchanged, Some(T0 + 4 * DAY));
    assert_eq!(sm.live, None);
    assert_eq!(sm.agreements_signed, Some(T0 + 2 * DAY));
    assert_eq!(sm.licences, vec![licence("lmft", "LMFT1", "CT")]);
    assert_eq!(
        (sm.address_line.as_str(), sm.postcode.as_str()),
        ("12 Main Street", "06103")
    );
    assert_eq!(ehr.kind, "organization");
    assert_eq!(
        (ehr.ehr_kind.as_str(), ehr.ehr_value.as_str()),
        ("catalog", "acme-ehr")
    );
    assert_eq!(ehr.live, Some(T0 + 5 * DAY));
    assert_eq!(ehr.test_message_exchanged, None);
    assert_eq!(ehr.licences.len(), 2);
    assert_eq!(ehr.participant_id, None);
}
