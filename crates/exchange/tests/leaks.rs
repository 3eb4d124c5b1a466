//! The leak suite: an opted-out patient must be indistinguishable from one the exchange has never
//! heard of, on every read path, for every kind of credential.
//!
//! Two patients with the same name and birth date: `ghost-x` was registered, has clinical data
//! (a normal Observation, a substance-use Condition, a psychiatric note, an LMFT's record) that
//! org-a could see, and then opted out; `ghost-y` never existed. Every request is made once about
//! each (ids, the MRN and the Observation id differ; names and dates are the same), and the
//! responses, normalised (the searchset's own id and timestamp, fresh ids of created resources,
//! the variant's ids replaced by placeholders), must be equal byte for byte. A visible patient
//! with data of its own is there too, so that searches return something. The paths include the
//! patient index's: `Patient/$match`, IHE PDQm's search and retrieve, and PIXm's `$ihe-pix`.
//!
//! Runs on SQLite, and on PostgreSQL with `NUTMEG_TEST_EXCHANGE_ENGINE=postgres` and
//! `NUTMEG_TEST_POSTGRES` (the common fixture).

mod common;

use common::*;
use exchange::access::{Principal, PurposeOfUse, Requester, Role};
use exchange::participants::{Kind, Status};
use exchange::repository::{Handling, HistoryScope};
use serde_json::{json, Value};

/// One side of the comparison.
struct Variant {
    patient: &'static str,
    mrn: &'static str,
    obs: &'static str,
}

const GHOST: Variant = Variant {
    patient: "ghost-x",
    mrn: "MRN-GX",
    obs: "ghost-obs-x",
};
const NEVER: Variant = Variant {
    patient: "ghost-y",
    mrn: "MRN-GY",
    obs: "ghost-obs-y",
};

fn ghost_patient(v: &Variant) -> Value {
    json!({
        "resourceType": "Patient", "id": v.patient,
        "identifier": [{"system": "http://example.org/mrn", "value": v.mrn}],
        "name": [{"family": "Ghostly", "given": ["Casper"]}],
        "gender": "male", "birthDate": "1981-02-03",
        "telecom": [{"system": "phone", "value": "860-555-0199"}],
    })
}

fn obs(id: &str, patient: &str, identifier: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "identifier": [{"system": "http://example.org/obs", "value": identifier}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 72, "unit": "/min"},
    })
}

fn operator() -> Requester {
    Requester::new(
        "req-operator",
        Principal::User {
            user_id: "op-1".into(),
            participant: None,
            role: Role::OperatorAdmin,
        },
        PurposeOfUse::Hoperat,
        true,
    )
}

fn opt_out(patient: &str) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-01-10T09:00:00Z",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
    })
}

struct World {
    repo: Fixture,
    org_a: String,
    org_b: String,
}

/// The exchange with the opted-out patient planted (and seen by org-a before the opt-out).
async fn plant() -> World {
    let world = plant_before_opt_out().await;
    world
        .repo
        .create(&operator(), "Consent", opt_out(GHOST.patient), None)
        .await
        .expect("opt-out recorded");
    world
}

/// [`plant`] without the opt-out: the ghost's data, seen by org-a.
async fn plant_before_opt_out() -> World {
    let repo = repo_enforcing().await;
    let org_a = participant(&repo, "org-a", Kind::Clinic, Status::Live).await;
    let org_b = participant(&repo, "org-b", Kind::Clinic, Status::Live).await;
    let system = who();
    repo.update(
        &system,
        "Patient",
        GHOST.patient,
        ghost_patient(&GHOST),
        None,
    )
    .await
    .expect("ghost");
    let mut visible = patient("Visible", "MRN-V");
    visible["id"] = json!("visible-z");
    repo.update(&system, "Patient", "visible-z", visible, None)
        .await
        .expect("visible");
    repo.update(
        &system,
        "Observation",
        "visible-obs",
        obs("visible-obs", "visible-z", "OBS-V"),
        None,
    )
    .await
    .expect("visible obs");
    let mut normal = obs(GHOST.obs, GHOST.patient, "OBS-GX");
    normal["identifier"] = json!([
        {"system": "http://example.org/obs", "value": "OBS-GX"},
        {"system": "http://example.org/obs", "value": "OBS-GX-C"},
        {"system": "http://example.org/obs", "value": "OBS-GX-U"},
        {"system": "http://example.org/obs", "value": "OBS-GX-D"},
    ]);
    repo.update(&system, "Observation", GHOST.obs, normal, None)
        .await
        .expect("normal");
    // Sensitive records: substance use (ICD-10 F11), a psychiatric note (labelled by its source),
    // an LMFT's record (the source's licence).
    repo.update(
        &system,
        "Condition",
        "ghost-sud",
        json!({"resourceType": "Condition", "id": "ghost-sud",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
            "subject": {"reference": format!("Patient/{}", GHOST.patient)}}),
        None,
    )
    .await
    .expect("sud");
    let mut psy = obs("ghost-psy", GHOST.patient, "OBS-GX-PSY");
    psy["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]});
    repo.update(&system, "Observation", "ghost-psy", psy, None)
        .await
        .expect("psy");
    let mut lmft = obs("ghost-lmft", GHOST.patient, "OBS-GX-LMFT");
    lmft["meta"] = json!({"tag": [{"system": "https://nutmeg.example/fhir/CodeSystem/licence-type", "code": "LMFT"}]});
    repo.update(&system, "Observation", "ghost-lmft", lmft, None)
        .await
        .expect("lmft");
    let treat = client(&org_a, "system/*.rs", PurposeOfUse::Treat);
    for p in [GHOST.patient, "visible-z"] {
        repo.attest_treatment(&treat, p).await.expect("attest");
    }
    // Before the opt-out, org-a sees the ghost: the suite below is not vacuous.
    repo.read(&treat, "Patient", GHOST.patient)
        .await
        .expect("seen before the opt-out");
    repo.read(&treat, "Observation", GHOST.obs)
        .await
        .expect("seen before the opt-out");
    World { repo, org_a, org_b }
}

/// Every kind of credential but the exchange's own tools, operators, and public health (exempt
/// by policy; see `public_health_reporting_continues`).
fn credentials(w: &World) -> Vec<(&'static str, Requester)> {
    let user = |role: Role, participant: Option<&str>, purpose| {
        Requester::new(
            "req-user",
            Principal::User {
                user_id: "user-1".into(),
                participant: participant.map(str::to_string),
                role,
            },
            purpose,
            true,
        )
    };
    let mut emergency = client(&w.org_a, "system/*.rs", PurposeOfUse::Etreat);
    emergency.emergency_declared = true;
    vec![
        (
            "org-a TREAT",
            client(&w.org_a, "system/*.*", PurposeOfUse::Treat),
        ),
        (
            "org-a HPAYMT",
            client(&w.org_a, "system/*.rs", PurposeOfUse::Hpaymt),
        ),
        (
            "org-a ETREAT",
            client(&w.org_a, "system/*.rs", PurposeOfUse::Etreat),
        ),
        ("org-a ETREAT emergency", emergency),
        (
            "org-b TREAT",
            client(&w.org_b, "system/*.*", PurposeOfUse::Treat),
        ),
        (
            "org-a clinician",
            user(Role::Clinician, Some(&w.org_a), PurposeOfUse::Treat),
        ),
        (
            "org-a staff",
            user(Role::Staff, Some(&w.org_a), PurposeOfUse::Treat),
        ),
        (
            "org-a admin",
            user(Role::ParticipantAdmin, Some(&w.org_a), PurposeOfUse::Treat),
        ),
        (
            "another patient",
            user(
                Role::Patient {
                    patient_id: "visible-z".into(),
                },
                None,
                PurposeOfUse::Patrqt,
            ),
        ),
        (
            "anonymous",
            Requester::new("req-anon", Principal::Anonymous, PurposeOfUse::Treat, false),
        ),
    ]
}

/// A response as text, normalised: searchset and history Bundles lose their own id and
/// timestamp, server-assigned ids (UUIDs) become `<uuid>`, and the variant's ids become
/// placeholders.
fn normalise(v: &Variant, answer: Result<Value, exchange::repository::Error>) -> String {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(o) => {
                if o.get("resourceType") == Some(&json!("Bundle")) {
                    o.remove("id");
                    o.remove("meta");
                }
                for (_, child) in o.iter_mut() {
                    strip(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = match answer {
        Ok(mut value) => {
            strip(&mut value);
            format!("ok {value}")
        }
        Err(e) => format!("{} {}", e.status(), e.outcome()),
    };
    let text = text
        .replace(v.patient, "<PATIENT>")
        .replace(v.mrn, "<MRN>")
        .replace(v.obs, "<OBS>")
        .replace(&v.mrn.replace("MRN-", "OBS-"), "<OBSID>");
    uuids_out(&text)
}

fn uuids_out(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let shape = [8, 4, 4, 4, 12];
    'outer: while i < bytes.len() {
        let mut j = i;
        let mut ok = true;
        for (k, n) in shape.iter().enumerate() {
            for _ in 0..*n {
                if j >= bytes.len() || !bytes[j].is_ascii_hexdigit() {
                    ok = false;
                    break;
                }
                j += 1;
            }
            if !ok {
                break;
            }
            if k < 4 {
                if j >= bytes.len() || bytes[j] != b'-' {
                    ok = false;
                    break;
                }
                j += 1;
            }
        }
        if ok {
            out.push_str("<uuid>");
            i = j;
            continue 'outer;
        }
        out.push(text[i..].chars().next().unwrap_or(' '));
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// Follows a searchset's `next` links, collecting every page.
async fn all_pages(
    repo: &Fixture,
    who: &Requester,
    ty: Option<&str>,
    query: &str,
) -> Result<Value, exchange::repository::Error> {
    let mut pages = Vec::new();
    let mut params = params(query);
    loop {
        let page = repo
            .search(who, ty, &params, Handling::Strict)
            .await?
            .to_value();
        let next = link(&page, "next");
        pages.push(page);
        match next {
            Some(url) if pages.len() < 20 => params = link_params(&url),
            _ => break,
        }
    }
    Ok(Value::Array(pages))
}

/// Every read path, about `v`, as `who`: (what, normalised answer).
async fn reads(repo: &Fixture, who: &Requester, v: &Variant) -> Vec<(String, String)> {
    let p = v.patient;
    let mut out = Vec::new();
    macro_rules! probe {
        ($name:expr, $e:expr) => {{
            let answer = $e.await;
            out.push(($name.to_string(), normalise(v, answer)));
        }};
    }
    let ok =
        |r: exchange::repository::Result<exchange::repository::Versioned>| r.map(|v| v.resource);
    probe!("read Patient", async {
        ok(repo.read(who, "Patient", p).await)
    });
    probe!("vread Patient", async {
        ok(repo.vread(who, "Patient", p, 1).await)
    });
    probe!("read Observation", async {
        ok(repo.read(who, "Observation", v.obs).await)
    });
    probe!("vread Observation", async {
        ok(repo.vread(who, "Observation", v.obs, 1).await)
    });
    let searches: Vec<(Option<&str>, String)> = vec![
        (Some("Patient"), format!("_id={p}")),
        (Some("Patient"), "family=Ghostly".into()),
        (Some("Patient"), "name=Ghostly&birthdate=1981-02-03".into()),
        (Some("Patient"), format!("identifier={}", v.mrn)),
        (Some("Patient"), "telecom=860-555-0199".into()),
        (Some("Patient"), "family=Ghostly&_summary=count".into()),
        (Some("Patient"), "_summary=count".into()),
        (Some("Patient"), "_total=accurate&_count=1".into()),
        (Some("Patient"), "gender=male&_total=accurate".into()),
        (Some("Observation"), format!("subject=Patient/{p}")),
        (Some("Observation"), format!("patient={p}&_total=accurate")),
        (Some("Observation"), "code=8867-4&_total=accurate".into()),
        (Some("Observation"), "code=8867-4&_summary=count".into()),
        (Some("Observation"), "subject:Patient.family=Ghostly".into()),
        (
            Some("Observation"),
            format!("subject:Patient.identifier={}", v.mrn),
        ),
        (
            Some("Observation"),
            "_include=Observation:subject&_total=accurate".into(),
        ),
        (
            Some("Observation"),
            format!("identifier={}", v.mrn.replace("MRN-", "OBS-")),
        ),
        (Some("Condition"), "code=F11.20".into()),
        (
            Some("Condition"),
            format!("subject=Patient/{p}&_summary=count"),
        ),
        (
            Some("Patient"),
            format!("_id={p}&_revinclude=Observation:subject"),
        ),
        (
            Some("Patient"),
            "_revinclude=Observation:subject&_revinclude=Consent:patient".into(),
        ),
        (
            Some("Patient"),
            "_has:Observation:subject:code=8867-4".into(),
        ),
        (
            Some("Patient"),
            "_has:Observation:subject:code=8867-4&_summary=count".into(),
        ),
        (
            Some("Patient"),
            format!(
                "_has:Observation:subject:identifier={}",
                v.mrn.replace("MRN-", "OBS-")
            ),
        ),
        (Some("Consent"), format!("patient={p}")),
        (Some("Consent"), "_total=accurate".into()),
        (None, "_count=2&_total=accurate".into()),
        (Some("Observation"), "_count=1&_total=accurate".into()),
        (Some("Patient"), "_count=1&_sort=family".into()),
    ];
    for (ty, query) in searches {
        let name = format!("search {}?{query}", ty.unwrap_or(""));
        probe!(name, all_pages(repo, who, ty, &query));
    }
    probe!(
        "history Patient instance",
        repo.history(who, HistoryScope::Instance("Patient".into(), p.into()), &[])
    );
    probe!(
        "history Observation instance",
        repo.history(
            who,
            HistoryScope::Instance("Observation".into(), v.obs.into()),
            &[]
        )
    );
    probe!(
        "history Observation type",
        repo.history(
            who,
            HistoryScope::Type("Observation".into()),
            &params("_count=2")
        )
    );
    probe!(
        "history Consent type",
        repo.history(who, HistoryScope::Type("Consent".into()), &[])
    );
    probe!(
        "history system",
        repo.history(who, HistoryScope::System, &params("_count=50"))
    );
    probe!("$everything", async {
        repo.everything(who, p, &[]).await.map(|s| s.to_value())
    });
    let mut body = ghost_patient(v);
    body.as_object_mut().map(|o| o.remove("id"));
    probe!(
        "Patient/$match",
        repo.match_patients(who, json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": body}]}), &[])
    );
    // The patient index's interfaces: IHE PDQm's enterprise-wide search and retrieve, and PIXm.
    for query in [
        format!("_id={p}"),
        "family=Ghostly".to_string(),
        "family=Ghostly&given=Casper&birthdate=1981-02-03".to_string(),
        format!("identifier={}", v.mrn),
        format!("identifier=http://example.org/mrn|{}", v.mrn),
        "identifier=http://example.org/mrn|".to_string(),
        "telecom=860-555-0199".to_string(),
        "gender=male".to_string(),
        "family=Ghostly&_count=1".to_string(),
        "birthdate=1970-01-01".to_string(),
    ] {
        probe!(format!("PDQm Patient?{query}"), async {
            repo.pdqm_search(who, &params(&query)).await
        });
    }
    probe!("PDQm Patient read", repo.pdqm_read(who, p));
    probe!(
        "Patient/$ihe-pix",
        repo.pix_query(
            who,
            &params(&format!(
                "sourceIdentifier=http://example.org/mrn|{}",
                v.mrn
            ))
        )
    );
    probe!(
        "batch of reads",
        repo.bundle(
            who,
            json!({"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": format!("Patient/{p}")}},
                {"request": {"method": "GET", "url": format!("Observation?subject=Patient/{p}")}},
                {"request": {"method": "GET", "url": format!("Observation/{}", v.obs)}},
            ]})
        )
    );
    out
}

/// A resource just written, without the instant it was written at.
fn fresh(mut resource: Value) -> Value {
    if let Some(meta) = resource["meta"].as_object_mut() {
        meta.remove("lastUpdated");
    }
    resource
}

/// Write probes that could reveal a withheld resource by how they answer.
async fn writes(repo: &Fixture, who: &Requester, v: &Variant) -> Vec<(String, String)> {
    let p = v.patient;
    let id = v.mrn.replace("MRN-", "OBS-");
    let mut out = Vec::new();
    let body = obs("unused", p, &format!("{id}-C"));
    let mut body = body;
    body.as_object_mut().map(|o| o.remove("id"));
    let answer = repo
        .create(
            who,
            "Observation",
            body.clone(),
            Some(&format!("identifier={id}-C")),
        )
        .await
        .map(|o| json!({"status": o.status(), "resource": fresh(o.resource.resource)}));
    out.push(("conditional create".to_string(), normalise(v, answer)));
    let answer = repo
        .conditional_update(
            who,
            "Observation",
            &params(&format!("identifier={id}-U")),
            body.clone(),
        )
        .await
        .map(|o| json!({"status": o.status(), "resource": fresh(o.resource.resource)}));
    out.push(("conditional update".to_string(), normalise(v, answer)));
    let answer = repo
        .conditional_delete(who, "Observation", &params(&format!("identifier={id}-D")))
        .await
        .map(|n| json!(n));
    out.push(("conditional delete".to_string(), normalise(v, answer)));
    let answer = repo
        .patch(
            who,
            "Observation",
            v.obs,
            json!([{"op": "replace", "path": "/status", "value": "amended"}]),
            None,
        )
        .await
        .map(|o| json!({"status": o.status()}));
    out.push(("patch".to_string(), normalise(v, answer)));
    let answer = repo
        .delete_if_match(who, "Observation", v.obs, Some(1))
        .await
        .map(|n| json!(n));
    out.push(("delete If-Match".to_string(), normalise(v, answer)));
    let answer = repo
        .delete(who, "Observation", v.obs)
        .await
        .map(|n| json!(n));
    out.push(("delete".to_string(), normalise(v, answer)));
    out
}

/// An update by id of a withheld resource used to answer 404 where the same update of an id nobody
/// used created it (201): a participant that knew (or guessed) the id of a withheld resource
/// learned that it existed. Participants no longer create data about patients by update: both
/// answer 405, naming POST and conditional update as the ways to create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_by_id_does_not_reveal_an_opted_out_patient() {
    let world = plant().await;
    let who = client(&world.org_a, "system/*.*", PurposeOfUse::Treat);
    let answer = |v: &'static Variant| {
        let repo = &world.repo;
        let who = &who;
        async move {
            let answer = repo
                .update(
                    who,
                    "Observation",
                    v.obs,
                    obs(v.obs, v.patient, "OBS-PUT"),
                    None,
                )
                .await
                .map(|o| json!({"status": o.status(), "resource": fresh(o.resource.resource)}));
            normalise(v, answer)
        }
    };
    let never = answer(&NEVER).await;
    assert!(never.starts_with("405 "), "{never}");
    assert!(never.contains("POST Observation"), "{never}");
    assert_eq!(answer(&GHOST).await, never);
}

fn compare(
    credential: &str,
    x: &[(String, String)],
    y: &[(String, String)],
    leaks: &mut Vec<String>,
) {
    for ((what, a), (_, b)) in x.iter().zip(y) {
        if a != b {
            leaks.push(format!(
                "{credential}: {what}:\n  opted out: {a}\n  never existed: {b}"
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_patient_is_indistinguishable_from_one_never_heard_of() {
    let world = plant().await;
    let mut leaks = Vec::new();
    let mut probes = 0;
    for (name, who) in credentials(&world) {
        let x = reads(&world.repo, &who, &GHOST).await;
        let y = reads(&world.repo, &who, &NEVER).await;
        probes += x.len();
        compare(name, &x, &y, &mut leaks);
    }
    assert!(probes > 300, "{probes} probes");
    // Not vacuous: org-a sees the visible patient and its data on the same paths.
    let org_a = client(&world.org_a, "system/*.rs", PurposeOfUse::Treat);
    let seen = reads(&world.repo, &org_a, &GHOST).await;
    let shown = |what: &str| {
        seen.iter()
            .find(|(w, _)| w == what)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    assert!(shown("search Observation?code=8867-4&_total=accurate").contains("visible-obs"));
    assert!(shown("search Patient?_summary=count").contains("\"total\":1"));
    assert!(shown("history system").contains("visible-z"));
    assert!(shown("PDQm Patient?birthdate=1970-01-01").contains("visible-z"));
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_do_not_reveal_an_opted_out_patient() {
    let mut leaks = Vec::new();
    let names: Vec<&'static str> = {
        let world = plant().await;
        credentials(&world).into_iter().map(|(n, _)| n).collect()
    };
    for name in names {
        // A fresh exchange per credential: what one credential creates must not change what the
        // next one's conditions match.
        let world = plant().await;
        let who = credentials(&world)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| w)
            .expect("credential");
        let x = writes(&world.repo, &who, &GHOST).await;
        let y = writes(&world.repo, &who, &NEVER).await;
        compare(name, &x, &y, &mut leaks);
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Every read path from every credential: the ghost answered exactly as the patient never heard
/// of. Answers the leaks found (empty: none).
async fn leaks_of_the_ghost(world: &World) -> Vec<String> {
    let mut leaks = Vec::new();
    for (name, who) in credentials(world) {
        let x = reads(&world.repo, &who, &GHOST).await;
        let y = reads(&world.repo, &who, &NEVER).await;
        compare(name, &x, &y, &mut leaks);
    }
    leaks
}

fn mpi_decision(a: &str, b: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient-a", "valueString": a},
        {"name": "patient-b", "valueString": b},
        {"name": "reason", "valueString": "the patient showed both cards"},
    ]})
}

/// Consent follows the person (the patient index issue): the opt-out is recorded against source
/// A's record of the person (`ghost-a`), never against the ghost's own. Unlinked, it does not
/// cover the ghost; once an operator links the two, the ghost is indistinguishable from a patient
/// never heard of on every path for every credential, at once; after the operator unlinks them,
/// both sides stay out (the exchange recorded a copy of the opt-out against the ghost, pointing
/// at the original); the ghost opting back in makes its data visible again while source A's
/// record, still opted out, stays hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_follows_the_person_across_linked_records() {
    let world = plant_before_opt_out().await;
    let repo = &world.repo;
    let system = who();
    // Source A's record: spelled and dated differently enough that the index does not link it.
    repo.update(
        &system,
        "Patient",
        "ghost-a",
        json!({"resourceType": "Patient", "id": "ghost-a",
            "identifier": [{"system": "http://example.org/mrn-a", "value": "A-7"}],
            "name": [{"family": "Spectre", "given": ["Kaspar"]}],
            "gender": "male", "birthDate": "1979-11-30"}),
        None,
    )
    .await
    .expect("source A's record");
    repo.update(
        &system,
        "Observation",
        "ghost-a-obs",
        obs("ghost-a-obs", "ghost-a", "OBS-GA"),
        None,
    )
    .await
    .expect("source A's observation");
    let treat = client(&world.org_a, "system/*.rs", PurposeOfUse::Treat);
    repo.attest_treatment(&treat, "ghost-a")
        .await
        .expect("attest");
    let opt_out_a = repo
        .create(&operator(), "Consent", opt_out("ghost-a"), None)
        .await
        .expect("opt-out against source A's record")
        .resource
        .id;
    assert_ne!(
        repo.identity_of("ghost-a").await.expect("identity"),
        repo.identity_of(GHOST.patient).await.expect("identity"),
        "the index must not have linked them by itself"
    );
    // Not (yet) the same person: the ghost's data is visible, source A's is not.
    repo.read(&treat, "Observation", GHOST.obs)
        .await
        .expect("visible while unlinked");
    assert_eq!(
        repo.read(&treat, "Observation", "ghost-a-obs")
            .await
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(404)
    );

    // Linked later: the opt-out covers the ghost at once, on every path.
    repo.mpi_decide(&operator(), true, &mpi_decision("ghost-a", GHOST.patient))
        .await
        .expect("link");
    let leaks = leaks_of_the_ghost(&world).await;
    assert!(
        leaks.is_empty(),
        "linked: {} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // Unlinked: both sides keep the opt-out until the patient says otherwise.
    repo.mpi_decide(&operator(), false, &mpi_decision("ghost-a", GHOST.patient))
        .await
        .expect("unlink");
    assert_ne!(
        repo.identity_of("ghost-a").await.expect("identity"),
        repo.identity_of(GHOST.patient).await.expect("identity"),
    );
    let leaks = leaks_of_the_ghost(&world).await;
    assert!(
        leaks.is_empty(),
        "unlinked: {} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    assert_eq!(
        repo.read(&treat, "Observation", "ghost-a-obs")
            .await
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(404)
    );
    let copies = repo
        .search(
            &operator(),
            Some("Consent"),
            &params(&format!("patient={}", GHOST.patient)),
            Handling::Strict,
        )
        .await
        .expect("consents")
        .to_value();
    let copies: Vec<&Value> = copies["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["resource"]).collect())
        .unwrap_or_default();
    assert_eq!(copies.len(), 1, "one copy recorded against the ghost");
    assert_eq!(
        copies[0]["sourceReference"]["reference"],
        json!(format!("Consent/{opt_out_a}"))
    );
    assert_eq!(copies[0]["policyRule"]["coding"][0]["code"], "OPTOUT");

    // The ghost opts back in: its data is visible again; source A's record stays out.
    let mut opt_in = opt_out(GHOST.patient);
    opt_in["dateTime"] = json!("2026-02-01T09:00:00Z");
    opt_in["policyRule"]["coding"][0]["code"] = json!("OPTIN");
    repo.create(&operator(), "Consent", opt_in, None)
        .await
        .expect("opt back in");
    repo.read(&treat, "Observation", GHOST.obs)
        .await
        .expect("visible after opting back in");
    repo.read(&treat, "Patient", GHOST.patient)
        .await
        .expect("visible after opting back in");
    assert_eq!(
        repo.read(&treat, "Observation", "ghost-a-obs")
            .await
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(404)
    );
}

/// While linked, the person's latest choice wins whichever record it was recorded against: an
/// opt-in on the ghost's record after an opt-out on source A's makes both visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_persons_latest_choice_wins_across_linked_records() {
    let world = plant_before_opt_out().await;
    let repo = &world.repo;
    repo.update(
        &who(),
        "Patient",
        "ghost-a",
        json!({"resourceType": "Patient", "id": "ghost-a",
            "name": [{"family": "Spectre", "given": ["Kaspar"]}],
            "gender": "male", "birthDate": "1979-11-30"}),
        None,
    )
    .await
    .expect("source A's record");
    repo.mpi_decide(&operator(), true, &mpi_decision("ghost-a", GHOST.patient))
        .await
        .expect("link");
    repo.create(&operator(), "Consent", opt_out("ghost-a"), None)
        .await
        .expect("opt-out");
    let treat = client(&world.org_a, "system/*.rs", PurposeOfUse::Treat);
    assert_eq!(
        repo.read(&treat, "Observation", GHOST.obs)
            .await
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(404)
    );
    let mut opt_in = opt_out(GHOST.patient);
    opt_in["dateTime"] = json!("2026-02-01T09:00:00Z");
    opt_in["policyRule"]["coding"][0]["code"] = json!("OPTIN");
    repo.create(&operator(), "Consent", opt_in, None)
        .await
        .expect("opt back in");
    repo.read(&treat, "Observation", GHOST.obs)
        .await
        .expect("visible: the latest choice is in");
}
