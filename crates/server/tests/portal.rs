//! The portal end to end: the real `nutmeg serve`, accounts added with `nutmeg admin user add`, and
//! a client that keeps cookies by hand (reads `Set-Cookie`, sends `Cookie`) and never follows
//! redirects, so every answer is seen as a browser would get it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::{hidden_csrf, Browser};
use common::{admin, fhir, json_of, nutmeg, Server};
use serde_json::{json, Value};
use server::client::now;

const REFUSED: &str = "The login, password or code is not right";

/// A hospital participant; answers its id.
fn participant(dir: &Path, name: &str, statuses: &[&str]) -> String {
    common::participant(dir, name, "hospital", statuses)
}

/// `nutmeg admin user add ARGS --password-file` with `password`.
fn add_user(dir: &Path, password: &str, args: &[&str]) -> std::process::Output {
    let file = dir.join("password.txt");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut all = vec!["user", "add", "--password-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = admin(dir, &all);
    std::fs::remove_file(&file).unwrap();
    output
}

fn refused_with(output: &std::process::Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected a refusal: {stderr}");
    assert!(stderr.contains(reason), "{reason:?} not in {stderr}");
}

#[test]
fn admin_user_add_checks_roles_links_and_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let org = participant(data, "Elm Street Clinic", &[]);
    let good = "correct horse battery staple";

    refused_with(
        &add_user(
            data,
            good,
            &["--login", "a", "--name", "A", "--role", "clinician"],
        ),
        "give --participant ID",
    );
    refused_with(
        &add_user(
            data,
            good,
            &[
                "--login",
                "a",
                "--name",
                "A",
                "--role",
                "clinician",
                "--participant",
                "nope",
            ],
        ),
        "no participant has the id nope",
    );
    refused_with(
        &add_user(
            data,
            good,
            &[
                "--login",
                "a",
                "--name",
                "A",
                "--role",
                "operator-admin",
                "--participant",
                &org,
            ],
        ),
        "leave out --participant",
    );
    refused_with(
        &add_user(
            data,
            good,
            &[
                "--login",
                "a",
                "--name",
                "A",
                "--role",
                "patient",
                "--patient",
                "nobody",
            ],
        ),
        "no Patient has the id nobody",
    );
    refused_with(
        &add_user(
            data,
            "short",
            &["--login", "a", "--name", "A", "--role", "operator-admin"],
        ),
        "at least 12 characters",
    );
    refused_with(
        &add_user(
            data,
            "my login is Alice.Smith!",
            &[
                "--login",
                "alice.smith",
                "--name",
                "A",
                "--role",
                "operator-admin",
            ],
        ),
        "must not contain the login name",
    );

    let added = json_of(&add_user(
        data,
        good,
        &[
            "--login",
            "Alice.Smith",
            "--name",
            "Alice Smith",
            "--role",
            "clinician",
            "--participant",
            &org,
            "--json",
        ],
    ));
    assert_eq!(added["login"], "Alice.Smith");
    assert_eq!(added["role"], "clinician");
    assert_eq!(added["participant"], *org);
    assert_eq!(added["status"], "active");
    assert!(added.get("totpUri").is_none());
    refused_with(
        &add_user(
            data,
            good,
            &[
                "--login",
                "alice.SMITH",
                "--name",
                "B",
                "--role",
                "operator-admin",
            ],
        ),
        "is taken",
    );

    // The password on stdin; a second factor printed once.
    let mut child = nutmeg()
        .arg("--data-dir")
        .arg(data)
        .args([
            "--log", "warn", "admin", "user", "add", "--login", "admin1", "--name", "Op",
        ])
        .args(["--role", "operator-admin", "--totp"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"operators keep the keys\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[1].starts_with("otpauth://totp/nutmeg:admin1?secret="),
        "{stdout}"
    );

    let listed = json_of(&admin(data, &["user", "list", "--json"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let totp: Vec<(&str, bool)> = listed
        .iter()
        .map(|u| (u["login"].as_str().unwrap(), u["totp"].as_bool().unwrap()))
        .collect();
    assert!(totp.contains(&("admin1", true)) && totp.contains(&("Alice.Smith", false)));
    let text = listed.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains("argon2"), "no password hash is printed");

    let disabled = json_of(&admin(data, &["user", "disable", "ADMIN1", "--json"]));
    assert_eq!(disabled["status"], "disabled");
    refused_with(&admin(data, &["user", "disable", "nobody"]), "no account");
}

#[test]
fn sign_in_shows_who_you_are_and_sign_out_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let org = participant(data, "Elm Street <Clinic>", &[]);
    let password = "correct horse battery staple";
    json_of(&add_user(
        data,
        password,
        &[
            "--login",
            "dr.oneil",
            "--name",
            "<script>alert(1)</script> Dr. O'Neil",
            "--role",
            "clinician",
            "--participant",
            &org,
            "--json",
        ],
    ));
    let server = Server::start(data, &[]);
    let mut browser = Browser::new(&server);

    let home = browser.get("/portal");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("You are not signed in"));
    assert!(home.body.contains("href=\"/portal/sign-in\""));

    // The sign-in form's token and its cookie.
    let form = browser.get("/portal/sign-in");
    assert_eq!(form.status, 200);
    let signin_cookie = &form.set_cookies[0];
    assert!(
        signin_cookie.starts_with("nutmeg_signin="),
        "{signin_cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/portal"] {
        assert!(signin_cookie.contains(attribute), "{signin_cookie}");
    }
    assert!(
        !signin_cookie.contains("Secure"),
        "plain loopback HTTP: {signin_cookie}"
    );

    // Without the token, or with another, the sign-in form is refused.
    let refused = browser.post(
        "/portal/sign-in",
        &[("login", "dr.oneil"), ("password", password)],
    );
    assert_eq!(refused.status, 403);
    let refused = browser.post(
        "/portal/sign-in",
        &[
            ("csrf", "forged"),
            ("login", "dr.oneil"),
            ("password", password),
        ],
    );
    assert_eq!(refused.status, 403);
    let mut cookieless = Browser::new(&server);
    let csrf = hidden_csrf(&form.body);
    let refused = cookieless.post(
        "/portal/sign-in",
        &[
            ("csrf", &csrf),
            ("login", "dr.oneil"),
            ("password", password),
        ],
    );
    assert_eq!(refused.status, 403, "the token without its cookie");
    assert!(cookieless.get("/portal").body.contains("not signed in"));

    // Signing in (the login in another case) sets the session cookie and goes home.
    let signed = browser.sign_in("Dr.ONeil", password, "");
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location.as_deref(), Some("/portal"));
    let session = signed
        .set_cookies
        .iter()
        .find(|c| c.starts_with("nutmeg_session="))
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/portal",
        "Max-Age=43200",
    ] {
        assert!(session.contains(attribute), "{session}");
    }
    let secret = browser.cookies["nutmeg_session"].clone();
    assert_eq!(secret.len(), 43, "256 random bits");

    let home = browser.get("/portal");
    assert_eq!(home.status, 200);
    assert_eq!(home.set_cookies, Vec::<String>::new());
    assert!(
        home.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; Dr. O&#39;Neil"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("<script>"), "{}", home.body);
    assert!(home.body.contains("Clinician"));
    assert!(
        home.body.contains("Elm Street &lt;Clinic&gt;"),
        "{}",
        home.body
    );
    assert!(
        !home.body.contains("/portal/disclosures"),
        "only for patients"
    );

    // The session's secret is not what the database keeps.
    let db = rusqlite::Connection::open(data.join("nutmeg.db")).unwrap();
    let kept: String = db
        .query_row("SELECT id_hash FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept.len(), 64);
    assert!(!kept.contains(&secret));

    // Signing out needs the session's token.
    let refused = browser.post("/portal/sign-out", &[]);
    assert_eq!(refused.status, 403);
    let refused = browser.post("/portal/sign-out", &[("csrf", "forged")]);
    assert_eq!(refused.status, 403);
    assert!(browser.get("/portal").body.contains("Signed in"));
    let csrf = hidden_csrf(&browser.get("/portal").body);
    let out = browser.post("/portal/sign-out", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert!(
        out.set_cookies[0].starts_with("nutmeg_session=;"),
        "{:?}",
        out.set_cookies
    );
    assert!(browser.get("/portal").body.contains("not signed in"));

    // The old cookie no longer works.
    let mut thief = Browser::new(&server);
    thief.cookies.insert("nutmeg_session".into(), secret);
    assert!(thief.get("/portal").body.contains("not signed in"));

    // Signing in again replaces the browser's session.
    assert_eq!(browser.sign_in("dr.oneil", password, "").status, 303);
    let first = browser.cookies["nutmeg_session"].clone();
    assert_eq!(browser.sign_in("dr.oneil", password, "").status, 303);
    assert_ne!(browser.cookies["nutmeg_session"], first);
    let mut old = Browser::new(&server);
    old.cookies.insert("nutmeg_session".into(), first);
    assert!(old.get("/portal").body.contains("not signed in"));
    let csrf = hidden_csrf(&browser.get("/portal").body);
    assert_eq!(
        browser.post("/portal/sign-out", &[("csrf", &csrf)]).status,
        303
    );

    // A session ends after 30 minutes without a request, and 12 hours after sign-in.
    let expire = |browser: &mut Browser, sql: &str| {
        assert_eq!(browser.sign_in("dr.oneil", password, "").status, 303);
        assert!(browser.get("/portal").body.contains("Signed in"));
        let hash: String = db
            .query_row(
                "SELECT id_hash FROM sessions ORDER BY created DESC, last_seen DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        db.execute(sql, rusqlite::params![now() as i64, hash])
            .unwrap();
        assert!(
            browser.get("/portal").body.contains("not signed in"),
            "{sql}"
        );
        let left: i64 = db
            .query_row(
                "SELECT count(*) FROM sessions WHERE id_hash = ?1",
                [&hash],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "an ended session is deleted");
    };
    expire(
        &mut browser,
        "UPDATE sessions SET last_seen = ?1 - 1800 WHERE id_hash = ?2",
    );
    expire(
        &mut browser,
        "UPDATE sessions SET expires = ?1, last_seen = ?1 WHERE id_hash = ?2",
    );

    // A disabled account is refused like a wrong password, and its sessions end.
    let signed = browser.sign_in("dr.oneil", password, "");
    assert_eq!(signed.status, 303);
    assert!(browser.get("/portal").body.contains("Signed in"));
    json_of(&admin(data, &["user", "disable", "dr.oneil", "--json"]));
    assert!(browser.get("/portal").body.contains("not signed in"));
    let refused = browser.sign_in("dr.oneil", password, "");
    assert_eq!(refused.status, 200);
    assert!(refused.body.contains(REFUSED));

    // Nothing secret in the log.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("portal sign-in"), "sign-ins are logged");
    for secret in [password, "dr.oneil", "O'Neil", &csrf] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn failures_look_alike_and_lock_the_account_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let password = "correct horse battery staple";
    let added = json_of(&add_user(
        data,
        password,
        &[
            "--login",
            "op",
            "--name",
            "Operator",
            "--role",
            "operator-admin",
            "--json",
        ],
    ));
    let user_id = added["userId"].as_str().unwrap().to_string();
    let server = Server::start(data, &[]);
    let mut browser = Browser::new(&server);

    // A wrong password and an unknown login: the same page, the same message.
    let wrong = browser.sign_in("op", "not the password at all", "");
    let unknown = browser.sign_in("nobody", "not the password at all", "");
    assert_eq!((wrong.status, unknown.status), (200, 200));
    assert!(wrong.body.contains(REFUSED));
    let strip = |body: &str, login: &str| {
        body.replace(&hidden_csrf(body), "TOKEN")
            .replace(&format!("value=\"{login}\""), "value=\"LOGIN\"")
    };
    assert_eq!(strip(&wrong.body, "op"), strip(&unknown.body, "nobody"));
    assert!(!browser.cookies.contains_key("nutmeg_session"));

    // Roughly the same time: the unknown login verifies a dummy hash.
    let time = |browser: &mut Browser, login: &str| {
        let form = browser.get("/portal/sign-in");
        let csrf = hidden_csrf(&form.body);
        let started = std::time::Instant::now();
        browser.post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("login", login),
                ("password", "wrong password here"),
            ],
        );
        started.elapsed()
    };
    let known = time(&mut browser, "op");
    let unknown = time(&mut browser, "nobody");
    let (fast, slow) = if known < unknown {
        (known, unknown)
    } else {
        (unknown, known)
    };
    assert!(
        slow < fast * 4 + Duration::from_millis(50),
        "known {known:?}, unknown {unknown:?}"
    );

    // Two failures so far: three more lock the account for a minute, even with the password.
    browser.sign_in("op", "still not the password", "");
    browser.sign_in("op", "still not the password", "");
    browser.sign_in("op", "still not the password", "");
    let db = rusqlite::Connection::open(data.join("nutmeg.db")).unwrap();
    let lock = || -> (i64, Option<i64>) {
        db.query_row(
            "SELECT failed_attempts, locked_until FROM users WHERE user_id = ?1",
            [&user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (failures, until) = lock();
    assert_eq!(failures, 5);
    let left = until.expect("locked") - now() as i64;
    assert!((55..=60).contains(&left), "locked for {left} s");
    let locked = browser.sign_in("op", password, "");
    assert_eq!(locked.status, 200);
    assert!(
        locked.body.contains(REFUSED),
        "locked: refused like a wrong password"
    );
    assert_eq!(lock().0, 5, "attempts while locked are not counted");

    // The minute passes (the lock is moved into the past); one more failure locks for two.
    db.execute(
        "UPDATE users SET locked_until = ?1 WHERE user_id = ?2",
        rusqlite::params![now() as i64 - 1, user_id],
    )
    .unwrap();
    browser.sign_in("op", "wrong once more", "");
    let (failures, until) = lock();
    assert_eq!(failures, 6);
    let left = until.expect("locked") - now() as i64;
    assert!((115..=120).contains(&left), "locked for {left} s");

    // After the lock, the password signs in and forgets the failures.
    db.execute(
        "UPDATE users SET locked_until = ?1 WHERE user_id = ?2",
        rusqlite::params![now() as i64 - 1, user_id],
    )
    .unwrap();
    let signed = browser.sign_in("op", password, "");
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(lock(), (0, None));
    assert!(browser.get("/portal").body.contains("Exchange operator"));
}

#[test]
fn cookies_are_secure_when_the_exchange_is_https() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Plain HTTP on loopback behind a TLS-terminating proxy whose public URL is https.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = nutmeg();
    command
        .args([
            "serve",
            "--log",
            "info",
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--base-url",
            "https://portal.example.org/fhir",
            "--data-dir",
        ])
        .arg(data);
    let mut server = Server::spawn(command, data.join("serve.log"));
    server.base = format!("http://127.0.0.1:{port}/fhir");
    let mut browser = Browser::new(&server);
    let form = browser.get("/portal/sign-in");
    assert_eq!(form.status, 200);
    assert!(
        form.set_cookies[0].ends_with("; Secure"),
        "{:?}",
        form.set_cookies
    );
}

/// RFC 4648 base32 (no padding), for the secret in an otpauth URI.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.chars() {
        buffer = (buffer << 5) | ALPHABET.find(c).expect("base32") as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn totp_is_required_and_a_code_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let password = "correct horse battery staple";
    let added = json_of(&add_user(
        data,
        password,
        &[
            "--login",
            "op",
            "--name",
            "Operator",
            "--role",
            "operator-admin",
            "--totp",
            "--json",
        ],
    ));
    let uri = added["totpUri"].as_str().unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = auth::TotpSecret::from_bytes(&base32_decode(secret)).unwrap();
    let server = Server::start(data, &[]);
    let mut browser = Browser::new(&server);

    for code in ["", "123", "abcdef"] {
        let refused = browser.sign_in("op", password, code);
        assert!(refused.body.contains(REFUSED), "code {code:?}");
    }
    let wrong = format!(
        "{:06}",
        (secret.code_at(now()).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    assert!(browser
        .sign_in("op", password, &wrong)
        .body
        .contains(REFUSED));

    let code = secret.code_at(now());
    let signed = browser.sign_in("op", password, &code);
    assert_eq!(signed.status, 303, "{}", signed.body);
    let csrf = hidden_csrf(&browser.get("/portal").body);
    assert_eq!(
        browser.post("/portal/sign-out", &[("csrf", &csrf)]).status,
        303
    );

    // The same code again, by the same browser or another: refused.
    let again = browser.sign_in("op", password, &code);
    assert_eq!(again.status, 200);
    assert!(again.body.contains(REFUSED));
    let mut other = Browser::new(&server);
    assert!(other.sign_in("op", password, &code).body.contains(REFUSED));
}

#[test]
fn a_patient_sees_their_own_accounting_of_disclosures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hospital = participant(data, "Hartford General", &["onboarding", "live"]);
    let system = common::Client::register(data, &hospital);
    let server = Server::start(data, &[]);
    let token = system.token(&server, common::REGISTERED, "TREAT");
    let base = server.base.clone();

    // The hospital sends two patients, then reads the first one back: a disclosure of hers.
    let mut ids = Vec::new();
    for family in ["Rivera", "Okafor"] {
        let (status, created) = fhir(
            "POST",
            &format!("{base}/Patient"),
            &token,
            Some(json!({ "resourceType": "Patient", "name": [{ "family": family }] })),
        );
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let (status, _) = fhir("GET", &format!("{base}/Patient/{}", ids[0]), &token, None);
    assert_eq!(status, 200);

    let password = "a long patient password";
    for (login, id) in [("rivera", &ids[0]), ("okafor", &ids[1])] {
        json_of(&add_user(
            data,
            password,
            &[
                "--login",
                login,
                "--name",
                login,
                "--role",
                "patient",
                "--patient",
                id,
                "--json",
            ],
        ));
    }

    let mut rivera = Browser::new(&server);
    assert_eq!(
        rivera.get("/portal/disclosures").location.as_deref(),
        Some("/portal/sign-in"),
        "signed out: to the sign-in page"
    );
    assert_eq!(rivera.sign_in("rivera", password, "").status, 303);
    let home = rivera.get("/portal");
    assert!(
        home.body.contains("href=\"/portal/disclosures\""),
        "{}",
        home.body
    );
    assert!(home.body.contains(&format!("Patient/{}", ids[0])));
    let page = rivera.get("/portal/disclosures");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<table>"), "{}", page.body);
    assert!(page.body.contains("Hartford General"), "{}", page.body);
    assert!(
        page.body.contains(&format!("Patient/{}", ids[0])),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&ids[1]), "only her own record");

    let mut okafor = Browser::new(&server);
    assert_eq!(okafor.sign_in("okafor", password, "").status, 303);
    let page = okafor.get("/portal/disclosures");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No participant has received your data"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&ids[0]));
    assert!(!page.body.contains("Hartford General"));

    // Not a patient: no accounting page.
    json_of(&add_user(
        data,
        password,
        &[
            "--login",
            "op",
            "--name",
            "Op",
            "--role",
            "operator-admin",
            "--json",
        ],
    ));
    let mut operator = Browser::new(&server);
    assert_eq!(operator.sign_in("op", password, "").status, 303);
    assert_eq!(
        operator.get("/portal/disclosures").location.as_deref(),
        Some("/portal")
    );
}

/// The `action` of the first form whose action contains `needle`.
fn form_action(html: &str, needle: &str) -> Option<String> {
    html.split("action=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
        .find(|action| action.contains(needle))
}

#[test]
fn a_patient_opts_out_and_back_in_and_gives_and_withdraws_a_permission_in_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sender = common::participant(
        data,
        "Harbor Recovery Center",
        "clinic",
        &["onboarding", "live"],
    );
    let recipient = common::participant(
        data,
        "Shoreline Family Medicine",
        "clinic",
        &["onboarding", "live"],
    );
    // Dr. Lena Park works at the family practice.
    common::import(
        data,
        "park.json",
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Practitioner", "id": "prac-park",
              "name": [{"given": ["Lena"], "family": "Park"}]},
             "request": {"method": "PUT", "url": "Practitioner/prac-park"}},
            {"resource": {"resourceType": "PractitionerRole", "id": "role-park", "active": true,
              "practitioner": {"reference": "Practitioner/prac-park"},
              "organization": {"reference": format!("Organization/{recipient}")}},
             "request": {"method": "PUT", "url": "PractitionerRole/role-park"}}
        ]})
        .to_string(),
    );
    let sender_client = common::Client::register(data, &sender);
    let recipient_client = common::Client::register(data, &recipient);
    let server = Server::start(data, &[]);
    let base = server.base.clone();
    let sending = sender_client.token(&server, common::REGISTERED, "TREAT");
    let reading = recipient_client.token(&server, common::REGISTERED, "TREAT");
    let recipient_value = format!("Organization/{recipient}");
    let recipient = recipient_value.as_str();

    // The treatment program sends the patient, an observation and a substance-use diagnosis.
    let (status, created) = fhir(
        "POST",
        &format!("{base}/Patient"),
        &sending,
        Some(
            json!({"resourceType": "Patient", "name": [{"family": "Rivera"}], "birthDate": "1980-02-02"}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let pid = created["id"].as_str().unwrap().to_string();
    let (status, observation) = fhir(
        "POST",
        &format!("{base}/Observation"),
        &sending,
        Some(json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")}})),
    );
    assert_eq!(status, 201, "{observation}");
    let oid = observation["id"].as_str().unwrap().to_string();
    let (status, condition) = fhir(
        "POST",
        &format!("{base}/Condition"),
        &sending,
        Some(json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
            "subject": {"reference": format!("Patient/{pid}")}})),
    );
    assert_eq!(status, 201, "{condition}");
    let cid = condition["id"].as_str().unwrap().to_string();
    // The family physician treats her too.
    let (status, body) = fhir(
        "POST",
        &format!("{base}/Patient/{pid}/$attest-treatment"),
        &reading,
        Some(json!({"resourceType": "Parameters"})),
    );
    assert!(status < 300, "{status} {body}");
    let reads = |path: &str| fhir("GET", &format!("{base}/{path}"), &reading, None);
    assert_eq!(reads(&format!("Observation/{oid}")).0, 200);
    assert_eq!(
        reads(&format!("Condition/{cid}")).0,
        404,
        "Part 2 data needs her consent"
    );

    let password = "a long patient password";
    for (login, id) in [("rivera", pid.as_str()), ("okafor", "someone-else")] {
        if login == "okafor" {
            let (status, other) = fhir(
                "POST",
                &format!("{base}/Patient"),
                &sending,
                Some(json!({"resourceType": "Patient", "name": [{"family": "Okafor"}]})),
            );
            assert_eq!(status, 201);
            let other = other["id"].as_str().unwrap().to_string();
            json_of(&add_user(
                data,
                password,
                &[
                    "--login",
                    login,
                    "--name",
                    "Okafor",
                    "--role",
                    "patient",
                    "--patient",
                    &other,
                    "--json",
                ],
            ));
        } else {
            json_of(&add_user(
                data,
                password,
                &[
                    "--login",
                    login,
                    "--name",
                    "Rosa Rivera",
                    "--role",
                    "patient",
                    "--patient",
                    id,
                    "--json",
                ],
            ));
        }
    }
    let mut rivera = Browser::new(&server);
    assert_eq!(
        rivera.get("/portal/privacy").location.as_deref(),
        Some("/portal/sign-in")
    );
    assert_eq!(rivera.sign_in("rivera", password, "").status, 303);
    assert!(rivera
        .get("/portal")
        .body
        .contains("href=\"/portal/privacy\""));
    let page = rivera.get("/portal/privacy");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You take part"), "{}", page.body);
    assert!(page.body.contains("You have given no permissions"));
    assert!(
        page.body.contains("Shoreline Family Medicine"),
        "recipients to choose from"
    );
    assert!(
        page.body.contains(
            "<option value=\"Practitioner/prac-park\">&nbsp;&nbsp;&nbsp;Lena Park, at Shoreline \
             Family Medicine (only them)</option>"
        ),
        "{}",
        page.body
    );
    // Providers are found by name (what the patient typed kept in the search box).
    let found = rivera.get("/portal/privacy?find=lena+PARK");
    assert!(
        found.body.contains("value=\"Practitioner/prac-park\""),
        "{}",
        found.body
    );
    assert!(found.body.contains("name=\"find\" value=\"lena PARK\""));
    let none = rivera.get("/portal/privacy?find=%3Cb%3Enobody");
    assert!(
        none.body
            .contains("No provider&#39;s name contains &quot;&lt;b&gt;nobody&quot;"),
        "{}",
        none.body
    );
    assert!(!none.body.contains("value=\"Practitioner/prac-park\""));
    let csrf = hidden_csrf(&page.body);

    // A permission with mistakes: each error beside its field, what was typed kept, nothing recorded.
    let wrong = rivera.post(
        "/portal/privacy/grants",
        &[
            ("csrf", &csrf),
            ("recipient", recipient),
            ("records", "part2"),
            ("until", "2020-01-01"),
            ("name", ""),
        ],
    );
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(wrong.body.contains("The date must be after today"));
    assert!(wrong.body.contains("Type your full name to sign"));
    assert!(wrong.body.contains("Tick the box to sign electronically"));
    assert!(
        wrong.body.contains("value=\"2020-01-01\""),
        "typed text kept"
    );
    assert!(wrong.body.contains("value=\"part2\" checked"));
    assert_eq!(reads(&format!("Condition/{cid}")).0, 404);
    // A forged form is refused.
    let forged = rivera.post(
        "/portal/privacy/grants",
        &[
            ("csrf", "forged"),
            ("recipient", recipient),
            ("records", "part2"),
            ("name", "Rosa Rivera"),
            ("sign", "yes"),
        ],
    );
    assert_eq!(forged.status, 403);
    assert_eq!(reads(&format!("Condition/{cid}")).0, 404);

    // Signed: the physician sees the Part 2 record at once, with its no-redisclosure label.
    let given = rivera.post(
        "/portal/privacy/grants",
        &[
            ("csrf", &csrf),
            ("recipient", recipient),
            ("records", "part2"),
            ("until", "2099-12-31"),
            ("name", "Rosa Rivera"),
            ("sign", "yes"),
        ],
    );
    assert_eq!(given.status, 303, "{}", given.body);
    let (status, disclosed) = reads(&format!("Condition/{cid}"));
    assert_eq!(status, 200, "{disclosed}");
    assert!(disclosed["meta"]["security"]
        .as_array()
        .is_some_and(|l| l.iter().any(|c| c["code"] == "NORDSCLCD")));
    let page = rivera.get("/portal/privacy?done=granted");
    assert!(
        page.body.contains("Your permission is recorded"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("Substance-use treatment records (42 CFR Part 2)"));
    assert!(page.body.contains("2099-12-31"));
    let withdraw = form_action(&page.body, "/withdraw").expect("a withdraw button");

    // Another patient cannot withdraw it.
    let mut okafor = Browser::new(&server);
    assert_eq!(okafor.sign_in("okafor", password, "").status, 303);
    let theirs = okafor.get("/portal/privacy");
    assert!(
        theirs.body.contains("You have given no permissions"),
        "{}",
        theirs.body
    );
    assert!(!theirs.body.contains("2099-12-31"));
    let other_csrf = hidden_csrf(&theirs.body);
    let attempt = okafor.post(&withdraw, &[("csrf", &other_csrf)]);
    assert_eq!(attempt.location.as_deref(), Some("/portal/privacy"));
    assert_eq!(reads(&format!("Condition/{cid}")).0, 200, "still in force");

    // Withdrawn: from now on, not disclosed.
    let withdrawn = rivera.post(&withdraw, &[("csrf", &csrf)]);
    assert_eq!(
        withdrawn.location.as_deref(),
        Some("/portal/privacy?done=withdrawn")
    );
    assert_eq!(reads(&format!("Condition/{cid}")).0, 404);
    assert!(rivera
        .get("/portal/privacy")
        .body
        .contains("You have given no permissions"));

    // A permission for Dr. Park alone: the practice's own system still may not read it.
    let to_park = rivera.post(
        "/portal/privacy/grants",
        &[
            ("csrf", &csrf),
            ("recipient", "Practitioner/prac-park"),
            ("records", "part2"),
            ("name", "Rosa Rivera"),
            ("sign", "yes"),
        ],
    );
    assert_eq!(to_park.status, 303, "{}", to_park.body);
    let page = rivera.get("/portal/privacy");
    assert!(page.body.contains("<td>Lena Park</td>"), "{}", page.body);
    assert_eq!(
        reads(&format!("Condition/{cid}")).0,
        404,
        "the practice is not Dr. Park"
    );
    let withdraw = form_action(&page.body, "/withdraw").expect("a withdraw button");
    assert_eq!(rivera.post(&withdraw, &[("csrf", &csrf)]).status, 303);

    // Opting out needs the box ticked; then she is as unknown as someone who never was.
    let unticked = rivera.post(
        "/portal/privacy/choice",
        &[("csrf", &csrf), ("choice", "opt-out")],
    );
    assert_eq!(unticked.status, 422);
    assert_eq!(reads(&format!("Observation/{oid}")).0, 200);
    let out = rivera.post(
        "/portal/privacy/choice",
        &[
            ("csrf", &csrf),
            ("choice", "opt-out"),
            ("understood", "yes"),
        ],
    );
    assert_eq!(
        out.location.as_deref(),
        Some("/portal/privacy?done=opted-out")
    );
    let known = reads(&format!("Observation/{oid}"));
    let never = reads("Observation/never-was");
    assert_eq!(known, never, "withheld like a record that never existed");
    let page = rivera.get("/portal/privacy");
    assert!(
        page.body.contains("You are opted out since"),
        "{}",
        page.body
    );
    assert!(page.body.contains("opted out</li>"));

    // And back in: the data, not yet purged, is there again.
    let back = rivera.post(
        "/portal/privacy/choice",
        &[("csrf", &csrf), ("choice", "opt-in"), ("understood", "yes")],
    );
    assert_eq!(
        back.location.as_deref(),
        Some("/portal/privacy?done=opted-in")
    );
    assert_eq!(reads(&format!("Observation/{oid}")).0, 200);
    assert!(rivera.get("/portal/privacy").body.contains("You take part"));

    // Not a patient: no privacy page.
    json_of(&add_user(
        data,
        password,
        &[
            "--login",
            "op",
            "--name",
            "Op",
            "--role",
            "operator-admin",
            "--json",
        ],
    ));
    let mut operator = Browser::new(&server);
    assert_eq!(operator.sign_in("op", password, "").status, 303);
    assert_eq!(
        operator.get("/portal/privacy").location.as_deref(),
        Some("/portal")
    );
}

#[test]
fn the_source_of_data_read_in_an_emergency_finds_the_notice_in_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let source = common::participant(
        data,
        "Riverside Counseling",
        "clinic",
        &["onboarding", "live"],
    );
    let er = common::participant(
        data,
        "County Emergency Department",
        "hospital",
        &["onboarding", "live"],
    );
    let other = common::participant(data, "Elm Street Clinic", "clinic", &["onboarding", "live"]);
    let source_client = common::Client::register(data, &source);
    let er_client = common::Client::register(data, &er);
    let server = Server::start(data, &[]);
    let base = server.base.clone();
    let sending = source_client.token(&server, common::REGISTERED, "TREAT");
    let (status, created) = fhir(
        "POST",
        &format!("{base}/Patient"),
        &sending,
        Some(json!({"resourceType": "Patient", "name": [{"family": "Lindqvist"}]})),
    );
    assert_eq!(status, 201, "{created}");
    let pid = created["id"].as_str().unwrap().to_string();
    let (status, observation) = fhir(
        "POST",
        &format!("{base}/Observation"),
        &sending,
        Some(json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")}})),
    );
    assert_eq!(status, 201, "{observation}");

    let password = "a long clinician password";
    for (login, participant) in [("counselor", &source), ("elsewhere", &other)] {
        json_of(&add_user(
            data,
            password,
            &[
                "--login",
                login,
                "--name",
                login,
                "--role",
                "clinician",
                "--participant",
                participant,
                "--json",
            ],
        ));
    }
    let mut counselor = Browser::new(&server);
    assert_eq!(counselor.sign_in("counselor", password, "").status, 303);
    assert!(counselor
        .get("/portal")
        .body
        .contains("Emergency access notices</a> (0)"));

    // The emergency department has no relationship with the patient: it breaks the glass.
    let emergency = er_client.token(&server, common::REGISTERED, "ETREAT");
    let (status, read) = fhir(
        "GET",
        &format!("{base}/Observation?subject=Patient/{pid}"),
        &emergency,
        None,
    );
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["entry"].as_array().map(Vec::len), Some(1), "{read}");

    let home = counselor.get("/portal");
    assert!(
        home.body.contains("Emergency access notices</a> (1)"),
        "{}",
        home.body
    );
    let page = counselor.get("/portal/notices");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Emergency access (break-the-glass)"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("Organization/{er}")),
        "who read it"
    );
    assert!(page.body.contains(&format!("Patient/{pid}")));
    assert!(page.body.contains("1 Observation"), "{}", page.body);

    // Another participant's clinician is told nothing about it.
    let mut elsewhere = Browser::new(&server);
    assert_eq!(elsewhere.sign_in("elsewhere", password, "").status, 303);
    let theirs = elsewhere.get("/portal/notices");
    assert!(
        theirs.body.contains("No emergency access to data you sent"),
        "{}",
        theirs.body
    );
    assert!(!theirs.body.contains(&pid));
}
