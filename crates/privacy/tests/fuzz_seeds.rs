//! The `privacy_*` fuzz targets on the stable toolchain: every seed and regression through the targets'
//! bodies (`fuzz/harness/privacy.rs`, shared with the targets), then a seeded randomized smoke run of
//! each. `cargo test -p privacy --test fuzz_seeds`.

#[path = "../../../fuzz/harness/privacy.rs"]
mod harness;
#[path = "../../../fuzz/harness/seeds.rs"]
mod seeds;

use seeds::{run_seeds, smoke};

const JSON_TOKENS: &[&[u8]] = &[
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"0",
    b"-1",
    b"1e400",
    b"\"\"",
    b"\"9999-12-31T23:59:59Z\"",
    b"\"0000-01-01\"",
    b"\"2026-02-30\"",
    b"\"deny\"",
    b"\"permit\"",
    b"\"provision\": {\"type\": \"deny\"},",
    b"\"coding\": [{\"system\": \"http://hl7.org/fhir/sid/icd-10-cm\", \"code\": \"F10.20\"}],",
    b"\"security\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-Confidentiality\", \"code\": \"V\"}],",
    b"\"reference\": \"Patient/p2\"",
];

const TOML_TOKENS: &[&[u8]] = &[
    b"\n",
    b"[[category]]\nname = \"x\"\n",
    b"[[category.rule]]\n",
    b"[category.when]\n",
    b"purposes = [\"TREAT\", \"ETREAT\", \"PUBHLTH\"]\n",
    b"requires = [\"part2-consent\", \"emergency\"]\n",
    b"honours = \"none\"\n",
    b"effect = \"deny\"\n",
    b"obligations = [\"add-label NORDSCLCD\", \"attach-notice part2\"]\n",
    b"labels = [\"SUD\", \"PSY\"]\n",
    b"\"\"",
    b"[]",
    b"= ",
];

#[test]
fn consent_seeds() {
    run_seeds("privacy_consent", harness::consent);
    // The synthetic seeds are consents the crate reads, so that the round trip is exercised.
    for (path, bytes) in seeds::inputs("privacy_consent") {
        if path.to_string_lossy().contains("synthetic") {
            let json = serde_json::from_slice(&bytes).expect("JSON seed");
            let parsed = privacy::consent::Consent::parse(&json);
            assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
        }
    }
}

#[test]
fn policy_seeds() {
    run_seeds("privacy_policy", harness::policy_toml);
    for (path, bytes) in seeds::inputs("privacy_policy") {
        let text = String::from_utf8(bytes).expect("UTF-8 seed");
        let policy = privacy::policy::Policy::from_toml(&text);
        assert!(policy.is_ok(), "{}: {policy:?}", path.display());
    }
}

#[test]
fn label_seeds() {
    run_seeds("privacy_labels", harness::label);
}

#[test]
fn consent_mutants_never_panic() {
    smoke("privacy_consent", harness::consent, 1, 3000, JSON_TOKENS);
}

#[test]
fn policy_mutants_never_panic() {
    smoke("privacy_policy", harness::policy_toml, 2, 1500, TOML_TOKENS);
}

#[test]
fn label_mutants_never_panic() {
    smoke("privacy_labels", harness::label, 3, 3000, JSON_TOKENS);
}
