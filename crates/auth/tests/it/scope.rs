//! SMART scopes: parsing both forms, what a set permits, and granting against a registration.

use auth::scope::{
    grant, Access, Context, Form, GrantError, Interaction, Permissions, Scope, ScopeSet,
};

use Context::{Patient, System, User};
use Interaction::{Create, Delete, History, Read, Search, Update, Vread};

/// Parses one scope and compares what it means: `Ok((context, type or None for *, v2 letters, form,
/// restriction))`, `Ok` of `None` for a non-resource scope, or `Err(reason fragment)`.
type Meaning = Option<(
    Context,
    Option<&'static str>,
    &'static str,
    Form,
    Option<&'static str>,
)>;

fn check(text: &str, expected: Result<Meaning, &str>) {
    let got = Scope::parse(text);
    match (got, expected) {
        (Ok(scope), Ok(meaning)) => {
            assert_eq!(scope.as_str(), text);
            let got = scope.resource().map(|r| {
                (
                    r.context(),
                    r.resource_type(),
                    r.permissions().letters(),
                    r.form(),
                    r.restriction(),
                )
            });
            let want = meaning.map(|(c, t, l, f, q)| (c, t, l.to_owned(), f, q));
            assert_eq!(got, want, "{text}");
        }
        (Err(e), Err(fragment)) => {
            assert!(
                e.to_string().contains(fragment),
                "{text}: {e} should say {fragment}"
            )
        }
        (got, want) => panic!("{text}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn parse_v1() {
    check(
        "system/Patient.read",
        Ok(Some((System, Some("Patient"), "rs", Form::V1, None))),
    );
    check(
        "system/*.write",
        Ok(Some((System, None, "cud", Form::V1, None))),
    );
    check(
        "system/Observation.*",
        Ok(Some((System, Some("Observation"), "cruds", Form::V1, None))),
    );
    check(
        "user/Encounter.read",
        Ok(Some((User, Some("Encounter"), "rs", Form::V1, None))),
    );
    check(
        "patient/*.*",
        Ok(Some((Patient, None, "cruds", Form::V1, None))),
    );
}

#[test]
fn parse_v2() {
    check(
        "system/Patient.rs",
        Ok(Some((System, Some("Patient"), "rs", Form::V2, None))),
    );
    check(
        "system/*.cruds",
        Ok(Some((System, None, "cruds", Form::V2, None))),
    );
    check(
        "patient/Observation.r",
        Ok(Some((Patient, Some("Observation"), "r", Form::V2, None))),
    );
    check(
        "user/Condition.cud",
        Ok(Some((User, Some("Condition"), "cud", Form::V2, None))),
    );
    check(
        "system/Observation.rs?category=laboratory",
        Ok(Some((
            System,
            Some("Observation"),
            "rs",
            Form::V2,
            Some("category=laboratory"),
        ))),
    );
    check(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&status=final",
        Ok(Some((
            Patient,
            Some("Observation"),
            "rs",
            Form::V2,
            Some("category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&status=final"),
        ))),
    );
}

#[test]
fn parse_non_resource_scopes() {
    for text in [
        "openid",
        "fhirUser",
        "launch",
        "launch/patient",
        "offline_access",
        "online_access",
    ] {
        check(text, Ok(None));
    }
}

#[test]
fn parse_malformed() {
    check("", Err("character"));
    check("system/Patient.read\t", Err("character"));
    check("system/Patient.\"rs\"", Err("character"));
    check("bogus", Err("neither a resource scope"));
    check("admin/Patient.read", Err("unknown context"));
    check("System/Patient.read", Err("unknown context"));
    check("system/Patient", Err("no permissions"));
    check("system/patient.read", Err("resource type"));
    check("system/.read", Err("resource type"));
    check("system/Pat-ient.read", Err("resource type"));
    check("system/Patient.", Err("permissions"));
    check("system/Patient.sr", Err("permissions"));
    check("system/Patient.rr", Err("permissions"));
    check("system/Patient.x", Err("permissions"));
    check("system/Patient.Read", Err("permissions"));
    check("system/Patient.read.rs", Err("permissions"));
    check("system/Patient.read?category=x", Err("only v2"));
    check("system/Patient.rs?", Err("name=value"));
    check("system/Patient.rs?=x", Err("name=value"));
    check("system/Patient.rs?a=b&c", Err("name=value"));
}

#[test]
fn parse_reports_every_malformed_scope() {
    let err =
        ScopeSet::parse("system/Patient.read bogus system/Observation.rs admin/*.read system/X.zz")
            .unwrap_err();
    let bad: Vec<&str> = err.0.iter().map(|e| e.scope.as_str()).collect();
    assert_eq!(bad, ["bogus", "admin/*.read", "system/X.zz"]);
    let message = err.to_string();
    assert!(
        message.contains("bogus")
            && message.contains("admin/*.read")
            && message.contains("system/X.zz")
    );
}

#[test]
fn parse_set_drops_duplicates_and_extra_spaces() {
    let set = ScopeSet::parse("  system/Patient.rs   system/Patient.rs system/Observation.read ")
        .unwrap();
    assert_eq!(set.to_string(), "system/Patient.rs system/Observation.read");
    assert_eq!(set.len(), 2);
    assert!(ScopeSet::parse("").unwrap().is_empty());
}

/// One permission row: scopes, context, resource type, interaction, expected answer (`None` = denied,
/// `Some(vec![])` = full, `Some(restrictions)` = restricted).
fn access(
    scopes: &str,
    context: Context,
    resource_type: &str,
    interaction: Interaction,
    expected: Option<Vec<&str>>,
) {
    let set = ScopeSet::parse(scopes).unwrap();
    let want = match expected {
        None => Access::Denied,
        Some(r) if r.is_empty() => Access::Full,
        Some(r) => Access::Restricted(r),
    };
    let got = set.access(context, resource_type, interaction);
    assert_eq!(
        got, want,
        "{scopes} {context:?} {resource_type} {interaction:?}"
    );
    assert_eq!(
        set.permits(context, resource_type, interaction),
        want == Access::Full
    );
}

#[test]
fn permissions_v1() {
    let full = Some(vec![]);
    access("system/Patient.read", System, "Patient", Read, full.clone());
    access(
        "system/Patient.read",
        System,
        "Patient",
        Vread,
        full.clone(),
    );
    access(
        "system/Patient.read",
        System,
        "Patient",
        History,
        full.clone(),
    );
    access(
        "system/Patient.read",
        System,
        "Patient",
        Search,
        full.clone(),
    );
    access("system/Patient.read", System, "Patient", Create, None);
    access("system/Patient.read", System, "Patient", Update, None);
    access("system/Patient.read", System, "Patient", Delete, None);
    access("system/Patient.read", System, "Observation", Read, None);
    access("system/Patient.read", Patient, "Patient", Read, None);
    access("system/Patient.read", User, "Patient", Read, None);
    access(
        "system/*.write",
        System,
        "Observation",
        Create,
        full.clone(),
    );
    access(
        "system/*.write",
        System,
        "Observation",
        Update,
        full.clone(),
    );
    access(
        "system/*.write",
        System,
        "Observation",
        Delete,
        full.clone(),
    );
    access("system/*.write", System, "Observation", Read, None);
    access("system/*.write", System, "Observation", Search, None);
    access(
        "system/Observation.*",
        System,
        "Observation",
        Delete,
        full.clone(),
    );
    access(
        "system/Observation.*",
        System,
        "Observation",
        Search,
        full.clone(),
    );
    access("system/Observation.*", System, "Condition", Search, None);
    access("patient/*.read", Patient, "Condition", Read, full.clone());
    access("patient/*.read", System, "Condition", Read, None);
    access("user/Encounter.read", User, "Encounter", Search, full);
    access("openid fhirUser", System, "Patient", Read, None);
}

#[test]
fn permissions_v2() {
    let full = Some(vec![]);
    access("system/Patient.rs", System, "Patient", Read, full.clone());
    access(
        "system/Patient.rs",
        System,
        "Patient",
        History,
        full.clone(),
    );
    access("system/Patient.rs", System, "Patient", Search, full.clone());
    access("system/Patient.rs", System, "Patient", Update, None);
    access("system/Patient.r", System, "Patient", Search, None);
    access("system/Patient.s", System, "Patient", Read, None);
    access("system/Patient.s", System, "Patient", Vread, None);
    access("system/*.cruds", System, "Basic", Create, full.clone());
    access("system/*.cruds", System, "Basic", Delete, full.clone());
    access("system/*.c", System, "Basic", Create, full.clone());
    access("system/*.c", System, "Basic", Update, None);
    access(
        "system/Patient.u system/Patient.d",
        System,
        "Patient",
        Delete,
        full.clone(),
    );
    access(
        "system/Patient.u system/Patient.d",
        System,
        "Patient",
        Create,
        None,
    );
    // v1 and v2 mixed in one set.
    access(
        "system/Patient.read system/Observation.cu",
        System,
        "Observation",
        Update,
        full.clone(),
    );
    access(
        "system/Patient.read system/Observation.cu",
        System,
        "Patient",
        Update,
        None,
    );
}

#[test]
fn permissions_with_restrictions() {
    let full = Some(vec![]);
    access(
        "system/Observation.rs?category=laboratory",
        System,
        "Observation",
        Search,
        Some(vec!["category=laboratory"]),
    );
    access(
        "system/Observation.rs?category=laboratory system/Observation.rs?category=vital-signs",
        System,
        "Observation",
        Read,
        Some(vec!["category=laboratory", "category=vital-signs"]),
    );
    // An unrestricted scope that allows the interaction wins over restricted ones.
    access(
        "system/Observation.rs?category=laboratory system/Observation.r",
        System,
        "Observation",
        Read,
        full,
    );
    access(
        "system/Observation.rs?category=laboratory",
        System,
        "Observation",
        Create,
        None,
    );
    access(
        "system/Observation.rs?category=laboratory",
        System,
        "Condition",
        Search,
        None,
    );
}

#[test]
fn permissions_letters() {
    assert_eq!(Permissions::V1_READ.letters(), "rs");
    assert_eq!(Permissions::V1_WRITE.letters(), "cud");
    assert_eq!(Permissions::ALL.letters(), "cruds");
    assert!(Permissions::ALL.contains(Permissions::V1_WRITE));
    assert!(!Permissions::V1_READ.contains(Permissions::CREATE));
}

/// One grant row: requested, registered, expected granted string or error message fragment.
fn granting(requested: &str, registered: &str, expected: Result<&str, &str>) {
    let registered = ScopeSet::parse(registered).unwrap();
    match (grant(requested, &registered), expected) {
        (Ok(set), Ok(want)) => assert_eq!(set.to_string(), want, "{requested}"),
        (Err(e), Err(fragment)) => {
            assert_eq!(e.oauth_error(), "invalid_scope");
            assert!(
                e.to_string().contains(fragment),
                "{requested}: {e} should say {fragment}"
            );
        }
        (got, want) => panic!("{requested}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn grant_table() {
    let registered = "system/Patient.read system/Observation.rs system/Encounter.cruds";
    granting("system/Patient.read", registered, Ok("system/Patient.read"));
    granting("system/Patient.rs", registered, Ok("system/Patient.rs"));
    granting("system/Patient.r", registered, Ok("system/Patient.r"));
    granting(
        "system/Observation.read",
        registered,
        Ok("system/Observation.read"),
    );
    granting("system/Encounter.*", registered, Ok("system/Encounter.*"));
    granting(
        "system/Encounter.write  system/Patient.s",
        registered,
        Ok("system/Encounter.write system/Patient.s"),
    );
    granting(
        "system/Observation.rs?category=laboratory",
        registered,
        Ok("system/Observation.rs?category=laboratory"),
    );
    granting(
        "system/Patient.write",
        registered,
        Err("not registered for this client: system/Patient.write"),
    );
    granting("system/*.read", registered, Err("system/*.read"));
    granting("user/Patient.read", registered, Err("user/Patient.read"));
    granting(
        "system/Patient.rs system/Condition.rs system/Observation.c",
        registered,
        Err("scopes not registered for this client: system/Condition.rs system/Observation.c"),
    );
    granting("system/Patient.rs bogus", registered, Err("bogus"));
    granting("", registered, Err("no scope was requested"));
    granting("   ", registered, Err("no scope was requested"));
    granting("openid", registered, Err("openid"));
    granting("openid", "openid system/*.read", Ok("openid"));
}

#[test]
fn grant_unions_registered_scopes() {
    granting(
        "system/Patient.rs",
        "system/Patient.r system/Patient.s",
        Ok("system/Patient.rs"),
    );
    granting(
        "system/Patient.cruds",
        "system/Patient.read system/*.write",
        Ok("system/Patient.cruds"),
    );
    granting(
        "system/Patient.cruds",
        "system/Patient.read system/Observation.write",
        Err("system/Patient.cruds"),
    );
}

#[test]
fn grant_restrictions() {
    let restricted = "system/Observation.rs?category=laboratory";
    granting(restricted, restricted, Ok(restricted));
    // A registration restricted to laboratory results cannot grant all observations or another category.
    granting(
        "system/Observation.rs",
        restricted,
        Err("system/Observation.rs"),
    );
    granting(
        "system/Observation.rs?category=vital-signs",
        restricted,
        Err("category=vital-signs"),
    );
}

#[test]
fn grant_error_is_fit_for_error_description() {
    let registered = ScopeSet::parse("system/Patient.read").unwrap();
    let long = format!("system/{}.read", "A".repeat(200));
    let err = grant(&long, &registered).unwrap_err();
    let message = err.to_string();
    assert!(message.len() < 200, "{message}");
    assert!(message
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
    assert!(matches!(err, GrantError::NotRegistered(_)));
}
