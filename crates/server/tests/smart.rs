//! SMART Backend Services end to end: the real `nutmeg` binary on a temporary database, a participant
//! and its clients registered with `nutmeg admin`, tokens asked for over HTTP as a client system
//! would (RS384 and ES384, a registered JWKS and a JWKS URL), and every attack on the token endpoint
//! refused with the OAuth error it deserves.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use server::client::{assertion_claims, now, post_form, SigningKey};

mod common;

use common::{admin, agent, json_of, nutmeg, set_status, Server};

const RSA_KEY: &str = include_str!("fixtures/smart-rsa-test-key.pem");
const SCOPES: &str = "system/Patient.rs system/Observation.rs";

/// A hospital participant in the given statuses (in order from applied); answers its id.
fn participant(dir: &Path, name: &str, statuses: &[&str]) -> String {
    common::participant(dir, name, "hospital", statuses)
}

/// Registers a client of `participant` with `key`'s public JWKS; answers its id.
fn register(dir: &Path, participant: &str, key: &SigningKey) -> String {
    let file = dir.join(format!("{}.jwks.json", key.kid()));
    std::fs::write(&file, key.jwks().to_string()).unwrap();
    let added = json_of(&admin(
        dir,
        &[
            "client",
            "add",
            "--participant",
            participant,
            "--jwks",
            file.to_str().unwrap(),
            "--scope",
            SCOPES,
            "--json",
        ],
    ));
    assert_eq!(added["status"], "active");
    assert_eq!(added["scope"], SCOPES);
    added["clientId"].as_str().unwrap().to_string()
}

/// A token request with this assertion; `extra` adds or replaces parameters.
fn request(url: &str, assertion: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "client_credentials".into()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        ("client_assertion", assertion.into()),
        ("scope", "system/Patient.rs".into()),
    ];
    for (name, value) in extra {
        form.retain(|(n, _)| n != name);
        form.push((name, value.to_string()));
    }
    let (status, text) = post_form(url, &form).expect("POST the token request");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"));
    (status, body)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn clients_get_tokens_with_rs384_and_es384_and_the_configuration_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let org = participant(dir, "Hartford General", &["onboarding", "live"]);
    let ec = SigningKey::generate_es384().unwrap().0;
    let rsa = SigningKey::from_pem(RSA_KEY).unwrap();
    assert_eq!((ec.algorithm(), rsa.algorithm()), ("ES384", "RS384"));
    let ec_client = register(dir, &org, &ec);
    let rsa_client = register(dir, &org, &rsa);
    let server = Server::start(dir, &[]);

    let mut response = agent()
        .get(format!("{}/.well-known/smart-configuration", server.root()))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let config: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(config["token_endpoint"], server.token_url());
    assert_eq!(
        config["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    for capability in [
        "client-confidential-asymmetric",
        "permission-v1",
        "permission-v2",
    ] {
        assert!(
            config["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!(capability)),
            "{capability}"
        );
    }

    let url = server.token_url();
    let mut issued = Vec::new();
    for (client, key) in [(&ec_client, &ec), (&rsa_client, &rsa)] {
        let (status, body) = request(&url, &key.assertion(client, &url, now()), &[]);
        assert_eq!(status, 200, "{}: {body}", key.algorithm());
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["scope"], "system/Patient.rs");
        let expires_in = body["expires_in"].as_u64().unwrap();
        assert!((290..=300).contains(&expires_in), "{expires_in}");
        issued.push((
            client.clone(),
            body["access_token"].as_str().unwrap().to_string(),
        ));
    }
    // The purpose of use and v1 scopes, through `nutmeg client token` as an engineer would.
    let key_file = dir.join("rsa.pem");
    std::fs::write(&key_file, RSA_KEY).unwrap();
    let output = nutmeg()
        .args(["client", "token", "--client-id", &rsa_client, "--key"])
        .arg(&key_file)
        .args([
            "--token-url",
            &url,
            "--scope",
            "system/Observation.rs system/Patient.rs",
        ])
        .args(["--purpose", "HOPERAT", "--json"])
        .output()
        .unwrap();
    let body = json_of(&output);
    assert_eq!(body["scope"], "system/Observation.rs system/Patient.rs");
    let hoperat = body["access_token"].as_str().unwrap().to_string();

    // The tokens verify with the database's key, as the FHIR API will check them.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let smart = runtime.block_on(async {
        let store = store::Store::open(&format!("sqlite://{}", dir.join("nutmeg.db").display()))
            .await
            .unwrap();
        server::http::smart::Smart::open(&store, &server.base)
            .await
            .unwrap()
    });
    for (client, token) in &issued {
        let bearer = smart
            .verify_bearer(&format!("Bearer {token}"), now())
            .unwrap();
        assert_eq!(&bearer.client_id, client);
        assert_eq!(bearer.participant_id, org);
        assert_eq!(bearer.purpose, auth::PurposeOfUse::Treat, "the default");
        assert!(bearer
            .scopes
            .permits(auth::Context::System, "Patient", auth::Interaction::Search));
        assert!(!bearer.scopes.permits(
            auth::Context::System,
            "Observation",
            auth::Interaction::Read
        ));
    }
    let bearer = smart
        .verify_bearer(&format!("Bearer {hoperat}"), now())
        .unwrap();
    assert_eq!(bearer.purpose, auth::PurposeOfUse::Hoperat);

    // An operator's token: every registered scope unless narrowed, checked the same way.
    let operator = json_of(&admin(
        dir,
        &[
            "token",
            "--client",
            &ec_client,
            "--purpose",
            "PUBHLTH",
            "--json",
        ],
    ));
    assert_eq!(operator["scope"], SCOPES);
    let bearer = smart
        .verify_bearer(
            &format!("Bearer {}", operator["access_token"].as_str().unwrap()),
            now(),
        )
        .unwrap();
    assert_eq!(
        (bearer.client_id.as_str(), bearer.purpose),
        (ec_client.as_str(), auth::PurposeOfUse::Pubhlth)
    );
    let narrowed = admin(
        dir,
        &[
            "token",
            "--client",
            &ec_client,
            "--scope",
            "system/Observation.rs",
        ],
    );
    let narrowed = String::from_utf8(narrowed.stdout).unwrap();
    let bearer = smart
        .verify_bearer(&format!("Bearer {}", narrowed.trim()), now())
        .unwrap();
    assert_eq!(bearer.scopes.to_string(), "system/Observation.rs");
    for (args, says) in [
        (vec!["--client", "nobody"], "no client"),
        (
            vec!["--client", &ec_client, "--scope", "system/Encounter.rs"],
            "not registered",
        ),
        (
            vec!["--client", &ec_client, "--purpose", "SALES"],
            "purpose_of_use",
        ),
    ] {
        let output = admin(dir, &[&["token"][..], &args].concat());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(smart
        .verify_bearer(&format!("Bearer {hoperat}"), now() + 301)
        .is_err());

    // Every issuance is in the audit trail (the token's id, never the token): the two at the
    // token endpoint with the caller's address, the HOPERAT one, and the operator's three.
    let (logins, by_code) = runtime.block_on(async {
        let store = store::Store::open(&format!("sqlite://{}", dir.join("nutmeg.db").display()))
            .await
            .unwrap();
        let search = |subtype: &str| store::AuditQuery {
            filters: vec![("subtype".into(), subtype.into())],
            limit: 100,
            ..Default::default()
        };
        (
            store.search_audit(&search("login")).await.unwrap(),
            store.search_audit(&search("110122")).await.unwrap().len(),
        )
    });
    assert_eq!(by_code, logins.len());
    let events: Vec<Value> = logins
        .iter()
        .map(|r| serde_json::from_str(&r.json).unwrap())
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    let by = |via: &str, client: &str| {
        events
            .iter()
            .filter(|e| {
                e["outcomeDesc"].as_str().is_some_and(|d| d.contains(via))
                    && e["agent"].as_array().unwrap().iter().any(|a| {
                        a["requestor"] == true && a["who"]["identifier"]["value"] == client
                    })
            })
            .count()
    };
    assert_eq!(by("token endpoint", &rsa_client), 2);
    assert_eq!(by("token endpoint", &ec_client), 1);
    assert_eq!(by("nutmeg admin token", &ec_client), 2);
    for e in &events {
        assert_eq!(e["subtype"][0]["code"], "110122");
        let text = e.to_string();
        for (_, token) in &issued {
            assert!(!text.contains(token.as_str()));
        }
    }
    assert!(events
        .iter()
        .any(|e| e["agent"][0]["network"]["address"] == "127.0.0.1"));

    // Neither assertions nor tokens are logged.
    drop(server);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("access token issued"), "{log}");
    for (_, token) in &issued {
        assert!(!log.contains(token.as_str()));
        assert!(!log.contains(&token[..20]));
    }
}

#[test]
fn every_attack_on_the_token_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let org = participant(dir, "Hartford General", &["onboarding", "live"]);
    let key = SigningKey::generate_es384().unwrap().0;
    let client = register(dir, &org, &key);
    let rsa = SigningKey::from_pem(RSA_KEY).unwrap();
    let rsa_client = register(dir, &org, &rsa);
    let revoked = register(dir, &org, &key);
    let revoked_out = admin(dir, &["client", "revoke", &revoked, "--json"]);
    assert_eq!(json_of(&revoked_out)["status"], "revoked");
    let suspended_org = participant(
        dir,
        "Suspended Clinic",
        &["onboarding", "live", "suspended"],
    );
    let of_suspended = register(dir, &suspended_org, &key);
    let applied_org = participant(dir, "New Lab", &[]);
    let of_applied = register(dir, &applied_org, &key);
    let server = Server::start(dir, &[]);
    let url = server.token_url();
    let log_path = server.log.clone();

    let now = now();
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = assertion_claims(&client, &url, now);
        f(&mut c);
        c
    };
    let signed = |f: &dyn Fn(&mut Value)| key.sign(&key.header(), &claims(f));
    let unchanged = |_: &mut Value| {};

    // Forgeries of the signature.
    let input = |header: Value| {
        format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims(&unchanged).to_string().as_bytes())
        )
    };
    let alg_none = format!(
        "{}.",
        input(json!({ "alg": "none", "kid": key.kid(), "typ": "JWT" }))
    );
    let hs256 = {
        // The classic confusion: HMAC keyed with the public key the verifier holds.
        let input = input(json!({ "alg": "HS256", "kid": key.kid(), "typ": "JWT" }));
        let secret =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.jwks().to_string().as_bytes());
        format!(
            "{input}.{}",
            b64(ring::hmac::sign(&secret, input.as_bytes()).as_ref())
        )
    };
    let stranger = SigningKey::generate_es384().unwrap().0;
    let wrong_key = stranger.sign(&key.header(), &claims(&unchanged));
    let rsa_with_ec_kid = rsa.sign(
        &json!({ "alg": "RS384", "kid": key.kid(), "typ": "JWT" }),
        &assertion_claims(&client, &url, now),
    );
    let of = |who: &str| key.sign(&key.header(), &assertion_claims(who, &url, now));

    struct Case {
        name: &'static str,
        assertion: String,
        extra: Vec<(&'static str, String)>,
        status: u16,
        error: &'static str,
        says: &'static str,
    }
    let case = |name, assertion: String, status, error, says| Case {
        name,
        assertion,
        extra: Vec::new(),
        status,
        error,
        says,
    };
    let ok = || signed(&unchanged);
    let mut cases = vec![
        case("alg none", alg_none, 401, "invalid_client", "unsigned"),
        case(
            "HS256 with the public key",
            hs256,
            401,
            "invalid_client",
            "HS256",
        ),
        case(
            "a wrong key",
            wrong_key,
            401,
            "invalid_client",
            "does not verify",
        ),
        case(
            "an RSA key under an EC kid",
            rsa_with_ec_kid,
            401,
            "invalid_client",
            "may not verify",
        ),
        case(
            "expired",
            signed(&|c| {
                c["iat"] = json!(now - 600);
                c["exp"] = json!(now - 300);
            }),
            401,
            "invalid_client",
            "expired",
        ),
        case(
            "not valid yet",
            signed(&|c| c["nbf"] = json!(now + 200)),
            401,
            "invalid_client",
            "not valid yet",
        ),
        case(
            "issued in the future",
            signed(&|c| c["iat"] = json!(now + 200)),
            401,
            "invalid_client",
            "iat",
        ),
        case(
            "exp more than 5 minutes ahead",
            signed(&|c| c["exp"] = json!(now + 600)),
            401,
            "invalid_client",
            "5 minutes",
        ),
        case(
            "a wrong aud",
            signed(&|c| c["aud"] = json!("https://elsewhere.example/auth/token")),
            401,
            "invalid_client",
            "aud",
        ),
        case(
            "the FHIR base as aud",
            signed(&|c| c["aud"] = json!(server.base)),
            401,
            "invalid_client",
            "aud",
        ),
        case(
            "sub differs from iss",
            signed(&|c| c["sub"] = json!("someone-else")),
            401,
            "invalid_client",
            "sub",
        ),
        case(
            "an unknown client",
            of("nobody"),
            401,
            "invalid_client",
            "no client",
        ),
        case(
            "a revoked client",
            of(&revoked),
            401,
            "invalid_client",
            "revoked",
        ),
        case(
            "a suspended participant",
            of(&of_suspended),
            400,
            "invalid_grant",
            "suspended",
        ),
        case(
            "a participant that only applied",
            of(&of_applied),
            400,
            "invalid_grant",
            "applied",
        ),
        case(
            "not a JWT",
            "not-a-jwt".into(),
            401,
            "invalid_client",
            "not a JWT",
        ),
    ];
    let mut with = |name, extra: Vec<(&'static str, &str)>, status, error, says| {
        cases.push(Case {
            name,
            assertion: ok(),
            extra: extra.into_iter().map(|(n, v)| (n, v.to_string())).collect(),
            status,
            error,
            says,
        })
    };
    with(
        "a scope not registered",
        vec![("scope", "system/Patient.rs system/Encounter.rs")],
        400,
        "invalid_scope",
        "Encounter",
    );
    with(
        "a broader scope than registered",
        vec![("scope", "system/*.rs")],
        400,
        "invalid_scope",
        "not registered",
    );
    with(
        "no scope",
        vec![("scope", "")],
        400,
        "invalid_request",
        "scope",
    );
    with(
        "another grant type",
        vec![("grant_type", "password")],
        400,
        "unsupported_grant_type",
        "client_credentials",
    );
    with(
        "no assertion type",
        vec![("client_assertion_type", "")],
        400,
        "invalid_request",
        "client_assertion_type",
    );
    with(
        "an unknown purpose of use",
        vec![("purpose_of_use", "MARKETING")],
        400,
        "invalid_request",
        "purpose_of_use",
    );
    with(
        "no assertion",
        vec![("client_assertion", "")],
        400,
        "invalid_request",
        "client_assertion",
    );

    for case in &cases {
        let extra: Vec<(&str, &str)> = case.extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = request(&url, &case.assertion, &extra);
        assert_eq!(
            (status, body["error"].as_str().unwrap_or_default()),
            (case.status, case.error),
            "{}: {body}",
            case.name
        );
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(case.says),
            "{}: {description:?} should say {:?}",
            case.name,
            case.says
        );
    }

    // A jti is good once, for whichever key signs it.
    let assertion = signed(&unchanged);
    assert_eq!(request(&url, &assertion, &[]).0, 200);
    let (status, body) = request(&url, &assertion, &[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(body["error_description"].as_str().unwrap().contains("jti"));
    let mut reused = assertion_claims(&rsa_client, &url, now);
    reused["jti"] = json!("rsa-once");
    let first = rsa.sign(&rsa.header(), &reused);
    let again = rsa.sign(&rsa.header(), &reused);
    assert_eq!(request(&url, &first, &[]).0, 200);
    assert_eq!(
        request(&url, &again, &[]).0,
        401,
        "a re-signed jti is a replay too"
    );
    // The same assertion sent eight times at once: one token.
    let burst = signed(&unchanged);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..8)
            .map(|_| s.spawn(|| request(&url, &burst, &[]).0))
            .collect();
        sends.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );

    // A participant suspended after its client registered gets no more tokens; reinstated, it does.
    set_status(dir, &org, "suspended");
    let (status, body) = request(&url, &signed(&unchanged), &[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    set_status(dir, &org, "live");
    assert_eq!(request(&url, &signed(&unchanged), &[]).0, 200);

    // Not a form at all, and the headers of every answer.
    let mut response = agent()
        .post(&url)
        .content_type("application/json")
        .send(r#"{"grant_type":"client_credentials"}"#)
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request");

    drop(server);
    let log = std::fs::read_to_string(log_path).unwrap();
    for case in &cases {
        if case.assertion.len() > 20 {
            assert!(!log.contains(&case.assertion), "{} was logged", case.name);
        }
    }
    assert!(
        !log.contains(" 500 ") && !log.contains("status=500"),
        "{log}"
    );

    // Every kind of refusal is in the audit trail as a failed login from this address, once per
    // kind in the minute (the rest folded into the next record), with no assertion in it.
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = store::Store::open(&format!("sqlite://{}", dir.join("nutmeg.db").display()))
            .await
            .unwrap();
        store
            .search_audit(&store::AuditQuery {
                filters: vec![
                    ("subtype".into(), "login".into()),
                    ("outcome".into(), "4".into()),
                ],
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
    });
    let events: Vec<Value> = refused
        .iter()
        .map(|r| serde_json::from_str(&r.json).unwrap())
        .collect();
    let kinds: std::collections::BTreeSet<String> = events
        .iter()
        .map(|e| {
            let said = e["outcomeDesc"].as_str().unwrap();
            assert!(said.starts_with("token request refused: "), "{said}");
            said["token request refused: ".len()..]
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.len(), events.len(), "one per kind: {events:?}");
    for kind in ["invalid_request", "invalid_client", "invalid_grant"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    assert!(events
        .iter()
        .all(|e| e["agent"][0]["network"]["address"] == "127.0.0.1"));
    let registered = [&client, &rsa_client, &revoked, &of_suspended, &of_applied];
    assert!(
        events.iter().any(
            |e| e["agent"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["requestor"] == true
                    && registered
                        .iter()
                        .any(|c| a["who"]["identifier"]["value"] == c.as_str()))
        ),
        "the client a refusal claimed is named: {events:?}"
    );
    for e in &events {
        let text = e.to_string();
        for case in &cases {
            if case.assertion.len() > 20 {
                assert!(!text.contains(&case.assertion), "{} was audited", case.name);
            }
        }
    }
}

/// Serves `body` as `/jwks.json` on a loopback port; counts the requests.
fn serve_jwks(body: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, count)
}

#[test]
fn a_jwks_url_is_fetched_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let org = participant(dir, "Hartford General", &["onboarding", "live"]);
    let key = SigningKey::generate_es384().unwrap().0;
    let (jwks_url, fetches) = serve_jwks(key.jwks().to_string());
    let added = json_of(&admin(
        dir,
        &[
            "client",
            "add",
            "--participant",
            &org,
            "--jwks-url",
            &jwks_url,
            "--scope",
            SCOPES,
            "--json",
        ],
    ));
    assert_eq!(added["jwksUrl"], jwks_url);
    let client = added["clientId"].as_str().unwrap().to_string();
    let server = Server::start(dir, &[]);
    let url = server.token_url();
    for _ in 0..3 {
        let (status, body) = request(&url, &key.assertion(&client, &url, now()), &[]);
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
    let stranger = SigningKey::generate_es384().unwrap().0;
    let (status, body) = request(&url, &stranger.assertion(&client, &url, now()), &[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "an unknown kid fetches the set again only if it is 30 s old: forgeries cannot hammer the host"
    );
}

#[test]
fn admin_client_checks_what_it_registers_and_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let org = participant(dir, "Hartford General", &[]);
    let keygen = nutmeg()
        .args(["client", "keygen", "--json", "--out"])
        .arg(dir.join("keys"))
        .output()
        .unwrap();
    let made = json_of(&keygen);
    assert_eq!(made["alg"], "ES384");
    let jwks = made["jwks"].as_str().unwrap().to_string();
    let private = made["privateKey"].as_str().unwrap().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    let printed = nutmeg()
        .args(["client", "jwks", "--key", &private])
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    assert_eq!(
        printed, written,
        "jwks of the private key is the public JWKS"
    );
    assert_eq!(written["keys"][0]["kid"], made["kid"]);

    let refused = |args: &[&str], says: &str| {
        let output = admin(dir, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    let leaked = dir.join("leaked.jwks");
    let mut private_jwk = written.clone();
    private_jwk["keys"][0]["d"] = json!("AAAA");
    std::fs::write(&leaked, private_jwk.to_string()).unwrap();
    let hs = dir.join("hs.jwks");
    std::fs::write(&hs, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    let add = ["client", "add", "--participant"];
    refused(
        &[
            &add[..],
            &[&org, "--jwks", leaked.to_str().unwrap(), "--scope", SCOPES],
        ]
        .concat(),
        "private key material",
    );
    refused(
        &[
            &add[..],
            &[&org, "--jwks", hs.to_str().unwrap(), "--scope", SCOPES],
        ]
        .concat(),
        "RS384 or ES384",
    );
    refused(
        &[&add[..], &["nobody", "--jwks", &jwks, "--scope", SCOPES]].concat(),
        "no participant",
    );
    refused(
        &[
            &add[..],
            &[
                &org,
                "--jwks",
                &jwks,
                "--scope",
                "system/Patient.write-everything",
            ],
        ]
        .concat(),
        "Patient.write-everything",
    );
    refused(
        &[
            &add[..],
            &[
                &org,
                "--jwks",
                &jwks,
                "--scope",
                "system/Patient.rs patient/*.rs openid",
            ],
        ]
        .concat(),
        "system/ scopes only, not patient/*.rs openid",
    );
    refused(
        &[
            &add[..],
            &[
                &org,
                "--jwks-url",
                "http://jwks.example/keys",
                "--scope",
                SCOPES,
            ],
        ]
        .concat(),
        "https",
    );
    refused(&["client", "revoke", "nobody"], "no client");
    assert_eq!(
        json_of(&admin(dir, &["client", "list", "--json"])),
        json!([])
    );

    let first = admin(
        dir,
        &[&add[..], &[&org, "--jwks", &jwks, "--scope", SCOPES]].concat(),
    );
    assert!(first.status.success());
    let first = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert!(
        first.len() >= 20
            && first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let second = json_of(&admin(
        dir,
        &[
            &add[..],
            &[
                &org,
                "--jwks",
                &jwks,
                "--scope",
                "system/Patient.read",
                "--json",
            ],
        ]
        .concat(),
    ));
    assert_ne!(second["clientId"], json!(first));
    assert_eq!(second["jwks"], written);
    json_of(&admin(dir, &["client", "revoke", &first, "--json"]));
    let listed = json_of(&admin(dir, &["client", "list", "--json"]));
    let statuses: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["clientId"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(statuses.contains(&(first.as_str(), "revoked")));
    assert!(statuses.contains(&(second["clientId"].as_str().unwrap(), "active")));
}
