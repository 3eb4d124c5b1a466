//! Connecting to the exchange end to end (issue 7, sections 1-3 and 6): the real `nutmeg serve`,
//! the public application form posted with its double-submit CSRF token, the applicant and the
//! operator each with their own browser (cookies kept by hand, redirects not followed), the
//! onboarding checklist on both paths to live, agreements published with `nutmeg admin agreement`
//! and signed in the portal, verification after the database was edited, the JSON API with bearer
//! tokens, and `nutmeg admin application` for bulk entry. The secure-messaging path, invitations and
//! the operator's decisions run again on PostgreSQL when `NUTMEG_TEST_POSTGRES` is set (a schema of
//! their own each; said on stderr when skipped).

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::{hidden, Answer, Browser};
use common::{admin, json_of, Client, Server};
use serde_json::{json, Value};

/// What the connection tests add to the shared browser.
impl Browser {
    /// Signs in (without a second factor) and checks that it worked.
    fn enter(&mut self, login: &str, password: &str) {
        let answer = self.sign_in(login, password, "");
        assert_eq!(answer.status, 303, "sign-in of {login}: {}", answer.body);
    }

    /// Opens `page`, takes its CSRF token, and posts `form` with it to `action`.
    fn submit(&mut self, page: &str, action: &str, form: &[(&str, &str)]) -> Answer {
        let shown = self.get(page);
        assert_eq!(shown.status, 200, "{page}: {}", shown.body);
        let csrf = hidden(&shown.body, "csrf");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(form);
        self.post(action, &all)
    }
}

const PASSWORD: &str = "correct horse battery staple";

/// A solo therapist's application as the form sends it.
fn solo_form(
    npi: &'static str,
    licence: &'static str,
    email: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("kind", "solo-practitioner"),
        ("legal_name", "Jane Q. Doe, LMFT"),
        ("npi", npi),
        ("licence_type", "lmft"),
        ("licence_number", licence),
        ("licence_state", "ct"),
        ("address_line", "12 Main Street"),
        ("city", "Hartford"),
        ("state", "CT"),
        ("postcode", "06103"),
        ("ehr", "none"),
        ("ehr_other", ""),
        ("signer_name", "Jane Q. Doe"),
        ("signer_title", "Owner"),
        ("signer_email", email),
        ("contact_name", "Jane Q. Doe"),
        ("contact_email", email),
        ("contact_phone", "(860) 555-0100"),
        ("password", PASSWORD),
        ("password_again", PASSWORD),
    ]
}

/// A clinic's application with an EHR the catalog does not list.
fn clinic_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("kind", "organization"),
        ("legal_name", "Elm Street Clinic LLC"),
        ("npi", "2234567891"),
        ("licence_type", "clinic"),
        ("licence_number", "CL-0042"),
        ("licence_state", "CT"),
        ("address_line", "1 Elm Street"),
        ("city", "New Haven"),
        ("state", "CT"),
        ("postcode", "06510-1234"),
        ("ehr", "other"),
        ("ehr_other", "Acme EHR 12 (FHIR R4)"),
        ("signer_name", "Pat Smith"),
        ("signer_title", "Chief Executive"),
        ("signer_email", "pat@elm.example.org"),
        ("contact_name", "Lee Jones"),
        ("contact_email", "lee@elm.example.org"),
        ("contact_phone", "203 555 0199"),
        ("password", PASSWORD),
        ("password_again", PASSWORD),
    ]
}

/// Sends the public form (opening it first for the double-submit token); answers the answer.
fn apply(browser: &mut Browser, form: &[(&str, &str)]) -> Answer {
    browser.submit("/portal/connect", "/portal/connect", form)
}

/// The application reference the confirmation page shows.
fn reference(body: &str) -> String {
    let start = body.find("<strong>app-").expect("a reference") + "<strong>".len();
    body[start..].split('<').next().unwrap().to_string()
}

/// `nutmeg admin user add` of an operator.
fn operator(dir: &Path, login: &str) {
    let file = dir.join("operator-password.txt");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let output = admin(
        dir,
        &[
            "user",
            "add",
            "--login",
            login,
            "--name",
            "Olive Operator",
            "--role",
            "operator-admin",
            "--password-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn publish(dir: &Path, kind: &str, version: &str, text: &str, required_for: &str) -> Value {
    let file = dir.join(format!("{kind}-{version}.txt"));
    std::fs::write(&file, text).unwrap();
    json_of(&admin(
        dir,
        &[
            "agreement",
            "publish",
            "--kind",
            kind,
            "--version",
            version,
            "--file",
            file.to_str().unwrap(),
            "--required-for",
            required_for,
            "--json",
        ],
    ))
}

fn show(dir: &Path, id: &str) -> Value {
    json_of(&admin(dir, &["application", "show", id, "--json"]))
}

fn participant_status(dir: &Path, id: &str) -> String {
    json_of(&admin(dir, &["participant", "show", id, "--json"]))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn steps(view: &Value) -> Vec<String> {
    view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

/// The operator marks `step` done on the application's page.
fn mark(operator: &mut Browser, id: &str, step: &str) -> Answer {
    operator.submit(
        &format!("/portal/applications/{id}"),
        &format!("/portal/applications/{id}/step"),
        &[("step", step)],
    )
}

fn refused_with(output: &std::process::Output, reasons: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected a refusal: {stderr}");
    for reason in reasons {
        assert!(stderr.contains(reason), "{reason:?} not in {stderr}");
    }
}

/// The applicant signs `kind` version `version` on its page; answers the receipt's path.
fn sign(applicant: &mut Browser, id: &str, kind: &str, version: u32, name: &str) -> String {
    let page = format!("/portal/applications/{id}/agreements/{kind}/{version}");
    let shown = applicant.get(&page);
    let sha = hidden(&shown.body, "sha256");
    let signed = applicant.submit(
        &page,
        &page,
        &[
            ("sha256", &sha),
            ("typed_name", name),
            ("title", "Owner"),
            ("consent", "yes"),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    signed.location.unwrap()
}

#[test]
fn secure_messaging_path_from_the_public_form_to_live() {
    let dir = tempfile::tempdir().unwrap();
    secure_messaging_path_from_the_public_form_to_live_in(dir.path());
}

/// The same on PostgreSQL.
#[test]
fn secure_messaging_path_from_the_public_form_to_live_on_postgres() {
    common::run_on_postgres(
        "secure_messaging_pat",
        secure_messaging_path_from_the_public_form_to_live_in,
    );
}

fn secure_messaging_path_from_the_public_form_to_live_in(data: &Path) {
    let participation =
        "The participant agrees to the exchange's policies.\n  Section 2: privacy.\n";
    publish(data, "participation", "1", participation, "*");
    operator(data, "olive");
    let server = Server::start(data, &[]);

    // The form, a mistake in it, and the form again with everything typed kept.
    let mut applicant = Browser::new(&server);
    let mut form = solo_form("1234567890", "LMFT.001234", "jane@doe.example.org");
    form.retain(|(n, _)| *n != "city");
    form.iter_mut()
        .filter(|(n, _)| *n == "password_again")
        .for_each(|f| f.1 = "a different password!");
    let refused = apply(&mut applicant, &form);
    assert_eq!(refused.status, 422, "{}", refused.body);
    for (field, message) in [
        ("npi", "last digit does not match"),
        ("city", "the city is required"),
        ("password_again", "the two passwords differ"),
    ] {
        let at = refused
            .body
            .find(&format!("id=\"{field}-error\""))
            .unwrap_or_else(|| panic!("no error beside {field}: {}", refused.body));
        assert!(
            refused.body[at..].contains(message),
            "{field}: {message} in {}",
            &refused.body[at..at + 200]
        );
    }
    assert!(refused.body.contains("value=\"Jane Q. Doe, LMFT\""));
    assert!(refused.body.contains("value=\"LMFT.001234\""));
    assert!(refused.body.contains("<option value=\"lmft\" selected>"));
    assert!(
        !refused.body.contains(PASSWORD),
        "a password is never shown back"
    );
    assert!(json_of(&admin(data, &["application", "list", "--json"]))
        .as_array()
        .unwrap()
        .is_empty());

    let accepted = apply(
        &mut applicant,
        &solo_form("1234567893", "LMFT.001234", "jane@doe.example.org"),
    );
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    assert!(accepted.body.contains("What happens next"));
    assert!(accepted.body.contains("secure messaging"));
    let id = reference(&accepted.body);
    let view = show(data, &id);
    assert_eq!(view["path"], "secure-messaging");
    assert_eq!(view["licences"][0]["number"], "LMFT.001234");
    assert_eq!(steps(&view), vec!["application-received"]);
    assert_eq!(view["steps"][0]["by"], "applicant");
    let participant = view["participant"].as_str().unwrap().to_string();
    assert_eq!(participant_status(data, &participant), "applied");
    assert_eq!(view["mustSign"][0]["kind"], "participation");

    // The applicant follows it.
    applicant.enter("jane@doe.example.org", PASSWORD);
    let mine = applicant.get("/portal/applications");
    assert!(mine.body.contains(&id), "{}", mine.body);
    let page = applicant.get(&format!("/portal/applications/{id}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("Application received</td><td>applicant</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Left to do: Onboarding package sent"));
    assert!(page.body.contains("participation version 1"));
    assert!(
        !page.body.contains("Mark a step done"),
        "no operator actions for the applicant"
    );

    // The operator's queue and the first step.
    let mut olive = Browser::new(&server);
    olive.enter("olive", PASSWORD);
    let queue = olive.get("/portal/onboarding");
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains(&id) && queue.body.contains("Onboarding package sent"));
    let early = mark(&mut olive, &id, "agreements-signed");
    assert_eq!(early.status, 422);
    assert!(
        early.body.contains("agreements are not all signed yet"),
        "{}",
        early.body
    );
    let sent = mark(&mut olive, &id, "package-sent");
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(participant_status(data, &participant), "onboarding");

    // Signing: a wrong name and no consent are named, what was typed is kept.
    let agreement = format!("/portal/applications/{id}/agreements/participation/1");
    let shown = applicant.get(&agreement);
    assert!(shown.body.contains("Section 2: privacy."));
    let sha = hidden(&shown.body, "sha256");
    let bad = applicant.submit(
        &agreement,
        &agreement,
        &[
            ("sha256", &sha),
            ("typed_name", "Someone Else"),
            ("title", "Owner"),
        ],
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("id=\"typed_name-error\""));
    assert!(bad.body.contains("id=\"consent-error\""));
    assert!(bad.body.contains("value=\"Someone Else\""));
    assert!(bad.body.contains("value=\"Owner\""));
    let receipt_path = sign(&mut applicant, &id, "participation", 1, "jane q.  doe");
    let receipt = applicant.get(&receipt_path);
    assert_eq!(receipt.status, 200);
    for expected in [
        sha.as_str(),
        "jane q. doe",
        "Owner",
        "yes, given",
        "127.0.0.1",
        "Section 2: privacy.",
    ] {
        assert!(
            receipt.body.contains(expected),
            "{expected} in {}",
            receipt.body
        );
    }
    let view = show(data, &id);
    assert_eq!(
        steps(&view),
        vec!["application-received", "package-sent", "agreements-signed"],
        "the last signature completes the step"
    );
    assert!(view["mustSign"].as_array().unwrap().is_empty());

    for step in ["direct-address-issued", "test-message-exchanged"] {
        let done = mark(&mut olive, &id, step);
        assert_eq!(done.status, 303, "{step}: {}", done.body);
    }
    assert_eq!(participant_status(data, &participant), "live");
    let page = applicant.get(&format!("/portal/applications/{id}"));
    assert!(page.body.contains("Every step is done."));
    assert!(page
        .body
        .contains("Test message exchanged</td><td>olive</td>"));

    // A new version: who signed must sign again.
    publish(data, "participation", "2", "Version 2 of the terms.", "*");
    let view = show(data, &id);
    assert_eq!(view["mustSign"][0]["version"], 2);
    assert_eq!(view["mustSign"][0]["signedBefore"], 1);
    let page = applicant.get(&format!("/portal/applications/{id}"));
    assert!(
        page.body.contains("version 1 was signed before"),
        "{}",
        page.body
    );
    // The digest of the version shown is checked: a form showing another text is refused.
    let v2 = format!("/portal/applications/{id}/agreements/participation/2");
    let signed_as = |sha: &str| {
        vec![
            ("sha256".to_string(), sha.to_string()),
            ("typed_name".to_string(), "Jane Q. Doe".to_string()),
            ("title".to_string(), "Owner".to_string()),
            ("consent".to_string(), "yes".to_string()),
        ]
    };
    let form = signed_as(&sha);
    let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let stale = applicant.submit(&v2, &v2, &form);
    assert_eq!(stale.status, 422);
    assert!(
        stale
            .body
            .contains("the agreement changed since the page was shown"),
        "{}",
        stale.body
    );
    // (posted with the token of the page still showing a form: version 1's shows none now)
    let again = applicant.submit(&v2, &agreement, &form);
    assert_eq!(again.status, 422, "version 1 is no longer the one to sign");
    assert!(again
        .body
        .contains("is not one this application must sign now"));
    assert_eq!(show(data, &id)["signatures"].as_array().unwrap().len(), 1);
}

#[test]
fn ehr_path_from_the_public_form_to_live_with_a_change_of_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    publish(
        data,
        "baa",
        "1",
        "Business associate terms.",
        "clinic,hospital",
    );
    publish(data, "dsa", "1", "Data sharing terms.", "solo-practice");
    operator(data, "olive");
    let server = Server::start(data, &[]);
    let mut applicant = Browser::new(&server);
    let accepted = apply(&mut applicant, &clinic_form());
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let id = reference(&accepted.body);
    let view = show(data, &id);
    assert_eq!(view["participantType"], "clinic");
    assert_eq!(
        view["ehr"],
        json!({ "kind": "other", "value": "Acme EHR 12 (FHIR R4)" })
    );
    assert_eq!(
        view["mustSign"].as_array().unwrap().len(),
        1,
        "only the agreements required of clinics: {view}"
    );
    let participant = view["participant"].as_str().unwrap().to_string();

    // Without a catalog entry the default is secure messaging; the operator moves it, with a
    // reason (refused without one, and the reason typed is kept).
    let mut olive = Browser::new(&server);
    olive.enter("olive", PASSWORD);
    let page = format!("/portal/applications/{id}");
    let path = format!("/portal/applications/{id}/path");
    let no_reason = olive.submit(&page, &path, &[("path", "ehr"), ("reason", "   ")]);
    assert_eq!(no_reason.status, 422);
    assert!(
        no_reason.body.contains("a change of path needs a reason"),
        "{}",
        no_reason.body
    );
    let moved = olive.submit(
        &page,
        &path,
        &[
            ("path", "ehr"),
            ("reason", "Acme 12 passed the FHIR interface tests"),
        ],
    );
    assert_eq!(moved.status, 303, "{}", moved.body);
    let view = show(data, &id);
    assert_eq!(view["path"], "ehr");
    assert_eq!(
        view["pathChanges"][0]["reason"],
        "Acme 12 passed the FHIR interface tests"
    );
    assert_eq!(view["pathChanges"][0]["by"], "olive");

    assert_eq!(mark(&mut olive, &id, "package-sent").status, 303);
    let out_of_order = mark(&mut olive, &id, "live");
    assert_eq!(out_of_order.status, 422);
    assert!(
        out_of_order.body.contains("comes first"),
        "{}",
        out_of_order.body
    );
    applicant.enter("lee@elm.example.org", PASSWORD);
    sign(&mut applicant, &id, "baa", 1, "Pat Smith");
    for step in ["endpoints-registered", "test-messages-passed"] {
        assert_eq!(mark(&mut olive, &id, step).status, 303, "{step}");
        assert_eq!(participant_status(data, &participant), "onboarding");
    }
    assert_eq!(mark(&mut olive, &id, "live").status, 303);
    assert_eq!(participant_status(data, &participant), "live");
    let view = show(data, &id);
    assert_eq!(
        steps(&view),
        vec![
            "application-received",
            "package-sent",
            "agreements-signed",
            "endpoints-registered",
            "test-messages-passed",
            "live"
        ]
    );
    assert_eq!(view["next"], Value::Null);
}

#[test]
fn both_paths_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let add = |extra: &[&str]| {
        let mut args = vec!["application", "add", "--json"];
        args.extend_from_slice(extra);
        admin(data, &args)
    };
    let mut solo = common::SAM_LEE_APPLICATION.to_vec();
    solo.extend_from_slice(&["--by", "bulk-import"]);
    let solo = json_of(&add(&solo));
    let sm = solo["id"].as_str().unwrap().to_string();
    assert_eq!(solo["path"], "secure-messaging");
    assert_eq!(solo["steps"][0]["by"], "bulk-import");
    assert!(
        solo["user"].is_string(),
        "the applicant has an account: {solo}"
    );
    assert!(
        solo["invitation"]["url"]
            .as_str()
            .unwrap()
            .contains("/portal/invite/"),
        "{solo}"
    );
    let csv = data.join("applications.csv");
    std::fs::write(
        &csv,
        "kind,legal_name,npi,licence_type,licence_number,licence_state,address_line,city,state,postcode,ehr,ehr_other,signer_name,signer_title,signer_email,contact_name,contact_email,contact_phone\n\
         organization,\"Harbor Hospital, Inc.\",2876543218,hospital,H-1,CT,9 Harbor Way,New London,CT,06320,other,Epic,Ann Poe,CEO,ann@harbor.example.org,Bo Ray,bo@harbor.example.org,860 555 0122\n",
    )
    .unwrap();
    let bulk = json_of(&add(&["--csv", csv.to_str().unwrap()]));
    let ehr = bulk[0]["id"].as_str().unwrap().to_string();
    let hospital = bulk[0]["participant"].as_str().unwrap().to_string();
    assert_eq!(bulk[0]["legalName"], "Harbor Hospital, Inc.");

    let step = |id: &str, step: &str| admin(data, &["application", "step", id, step, "--json"]);
    refused_with(
        &admin(data, &["application", "path", &ehr, "ehr", "--reason", " "]),
        &["--reason: a change of path needs a reason"],
    );
    json_of(&admin(
        data,
        &[
            "application",
            "path",
            &ehr,
            "ehr",
            "--reason",
            "Epic is connected",
            "--json",
        ],
    ));
    refused_with(
        &step(&ehr, "endpoints-registered"),
        &["Onboarding package sent comes first"],
    );
    refused_with(
        &step(&ehr, "direct-address-issued"),
        &["is not a step of the ehr path"],
    );
    for s in [
        "package-sent",
        "agreements-signed",
        "endpoints-registered",
        "test-messages-passed",
        "live",
    ] {
        json_of(&step(&ehr, s));
    }
    assert_eq!(participant_status(data, &hospital), "live");
    for s in [
        "package-sent",
        "agreements-signed",
        "direct-address-issued",
        "test-message-exchanged",
    ] {
        json_of(&step(&sm, s));
    }
    let solo_participant = show(data, &sm)["participant"].as_str().unwrap().to_string();
    assert_eq!(participant_status(data, &solo_participant), "live");
    refused_with(
        &step(&sm, "live"),
        &["is not a step of the secure-messaging path"],
    );
    let listed = admin(data, &["application", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&sm) && text.contains(&ehr) && text.contains("finished"),
        "{text}"
    );
}

#[test]
fn an_agreement_edited_in_the_database_after_signing_is_caught_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    publish(data, "participation", "1", "The original terms.", "*");
    publish(data, "baa", "1", "Unsigned terms.", "hospital");
    let server = Server::start(data, &[]);
    let mut applicant = Browser::new(&server);
    let id = reference(
        &apply(
            &mut applicant,
            &solo_form("1112223338", "LMFT9", "kim@x.example.org"),
        )
        .body,
    );
    applicant.enter("kim@x.example.org", PASSWORD);
    sign(&mut applicant, &id, "participation", 1, "Jane Q. Doe");
    let signature = show(data, &id)["signatures"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let fine = admin(data, &["agreement", "verify"]);
    assert!(
        fine.status.success(),
        "{}",
        String::from_utf8_lossy(&fine.stderr)
    );
    assert!(String::from_utf8_lossy(&fine.stdout).contains("1 signatures"));

    let db = rusqlite::Connection::open(data.join("nutmeg.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE agreement_documents SET body = body || ' Except on Sundays.' WHERE kind = 'participation'",
        [],
    )
    .unwrap();
    let caught = admin(data, &["agreement", "verify"]);
    refused_with(
        &caught,
        &[
            &signature,
            &id,
            "participation version 1 was changed after it was signed",
        ],
    );
    let json = admin(data, &["agreement", "verify", "--json"]);
    assert!(!json.status.success());
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["signature"] == *signature.as_str()));
}

#[test]
fn bad_input_on_every_form_and_command_is_named_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    // The CLI: every missing or bad flag named at once.
    let missing = admin(
        data,
        &[
            "application",
            "add",
            "--kind",
            "solo-practitioner",
            "--npi",
            "1234567890",
        ],
    );
    refused_with(
        &missing,
        &[
            "--npi: ",
            "last digit does not match",
            "--legal-name: the legal name is required",
            "--contact-phone",
        ],
    );
    // A CSV with one bad row among good ones: the row is named, nothing is stored.
    let csv = data.join("bad.csv");
    std::fs::write(
        &csv,
        "kind,legal_name,npi,licence_type,licence_number,licence_state,address_line,city,state,postcode,ehr,ehr_other,signer_name,signer_title,signer_email,contact_name,contact_email,contact_phone\n\
         organization,Good Clinic,2111222339,clinic,C1,CT,1 A St,Hartford,CT,06103,none,,A B,CEO,a@b.example.org,A B,a@b.example.org,8605550100\n\
         organization,Bad Clinic,2111222330,clinic,C2,XX,1 A St,Hartford,CT,0610,none,,A B,CEO,a@b.example.org,A B,not-an-email,8605550100\n",
    )
    .unwrap();
    refused_with(
        &admin(
            data,
            &["application", "add", "--csv", csv.to_str().unwrap()],
        ),
        &[
            "line 3: npi",
            "line 3: licence_state",
            "line 3: postcode",
            "line 3: contact_email",
        ],
    );
    std::fs::write(&csv, "kind,legal_name,shoe_size\n").unwrap();
    refused_with(
        &admin(
            data,
            &["application", "add", "--csv", csv.to_str().unwrap()],
        ),
        &["'shoe_size' is not a field"],
    );
    assert!(json_of(&admin(data, &["application", "list", "--json"]))
        .as_array()
        .unwrap()
        .is_empty());
    refused_with(
        &admin(data, &["application", "show", "app-nope"]),
        &["no application has the id app-nope"],
    );
    refused_with(
        &admin(data, &["application", "step", "app-nope", "sideways"]),
        &["'sideways' is not a checklist step"],
    );
    refused_with(
        &admin(
            data,
            &["application", "path", "app-nope", "ehr", "--reason", "x"],
        ),
        &["no application has the id app-nope"],
    );

    // Agreements: bad flags, a missing file, a version not newer.
    let file = data.join("terms.txt");
    std::fs::write(&file, "Terms.").unwrap();
    refused_with(
        &admin(
            data,
            &[
                "agreement",
                "publish",
                "--kind",
                "Bad Kind",
                "--version",
                "0",
                "--file",
                file.to_str().unwrap(),
                "--required-for",
                "dentists",
            ],
        ),
        &[
            "--kind: 1-40 lowercase",
            "--version: a version is a whole number from 1",
            "--required-for: dentists is not a participant type",
        ],
    );
    refused_with(
        &admin(
            data,
            &[
                "agreement",
                "publish",
                "--kind",
                "dsa",
                "--version",
                "1",
                "--file",
                "/nonexistent/terms.txt",
                "--required-for",
                "*",
            ],
        ),
        &["--file: cannot read /nonexistent/terms.txt"],
    );
    publish(data, "dsa", "2", "Terms.", "*");
    refused_with(
        &admin(
            data,
            &[
                "agreement",
                "publish",
                "--kind",
                "dsa",
                "--version",
                "1",
                "--file",
                file.to_str().unwrap(),
                "--required-for",
                "*",
            ],
        ),
        &["dsa version 2 is published already; a new version is numbered 3"],
    );
    assert_eq!(
        json_of(&admin(data, &["agreement", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The form: without its double-submit token, refused; a taken login is named and kept.
    let server = Server::start(data, &[]);
    let mut browser = Browser::new(&server);
    let form = solo_form("1234567893", "LMFT1", "jane@doe.example.org");
    let no_token = browser.post("/portal/connect", &form);
    assert_eq!(no_token.status, 403);
    assert_eq!(apply(&mut browser, &form).status, 201);
    let mut other = Browser::new(&server);
    let again = apply(
        &mut other,
        &solo_form("1987654328", "LMFT2", "jane@doe.example.org"),
    );
    assert_eq!(again.status, 422);
    assert!(
        again.body.contains("id=\"contact_email-error\""),
        "{}",
        again.body
    );
    assert!(again.body.contains("value=\"LMFT2\""));
    let short = solo_form("1987654328", "LMFT2", "sam@doe.example.org")
        .into_iter()
        .map(|(n, v)| {
            if n.starts_with("password") {
                (n, "short")
            } else {
                (n, v)
            }
        })
        .collect::<Vec<_>>();
    let weak = apply(&mut other, &short);
    assert_eq!(weak.status, 422);
    assert!(weak.body.contains("id=\"password-error\""));
    assert_eq!(
        json_of(&admin(data, &["application", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A duplicate (the same NPI) is stored, shown to the operator, and not registered again.
    let mut third = Browser::new(&server);
    let duplicate = apply(
        &mut third,
        &solo_form("1234567893", "LMFT3", "kim@doe.example.org"),
    );
    assert_eq!(duplicate.status, 201);
    let dup = show(data, &reference(&duplicate.body));
    let first = json_of(&admin(data, &["application", "list", "--json"]))[0]["id"].clone();
    assert_eq!(
        dup["duplicates"],
        json!([{ "application": first, "by": ["npi"] }])
    );
    assert_eq!(dup["participant"], Value::Null);

    // The API: a 422 naming each field.
    let answer = common::agent()
        .post(format!("{}/api/applications", server.root()))
        .header("content-type", "application/json")
        .send(json!({ "kind": "organization", "npi": "12" }).to_string())
        .unwrap();
    assert_eq!(answer.status(), 401, "a token is needed");
}

#[test]
fn the_queue_is_for_operators_and_an_application_for_its_applicant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    operator(data, "olive");
    let exchange = common::participant(
        data,
        "The Exchange",
        "exchange-operator",
        &["onboarding", "live"],
    );
    let operator_client = Client::register(data, &exchange);
    let clinic = common::participant(data, "Other Clinic", "clinic", &["onboarding", "live"]);
    let clinic_client = Client::register(data, &clinic);
    // The package is due at once: every new application is overdue in the queue.
    let server = Server::start(data, &["--service-levels", "package-sent=0,live=5"]);

    let mut jane = Browser::new(&server);
    let jane_id = reference(
        &apply(
            &mut jane,
            &solo_form("1234567893", "LMFT1", "jane@doe.example.org"),
        )
        .body,
    );
    let mut lee = Browser::new(&server);
    let lee_id = reference(&apply(&mut lee, &clinic_form()).body);
    jane.enter("jane@doe.example.org", PASSWORD);
    lee.enter("lee@elm.example.org", PASSWORD);

    let queue = jane.get("/portal/onboarding");
    assert_eq!(queue.status, 403);
    assert!(!queue.body.contains(&lee_id));
    let theirs = jane.get(&format!("/portal/applications/{lee_id}"));
    let nothing = jane.get("/portal/applications/app-000000000000");
    assert_eq!((theirs.status, nothing.status), (404, 404));
    assert_eq!(
        theirs.body, nothing.body,
        "another's application answers as none"
    );
    assert!(!jane.get("/portal/applications").body.contains(&lee_id));
    // An applicant cannot take the operator's actions on their own application either.
    let own = format!("/portal/applications/{jane_id}");
    // (the session's token from the home page's sign-out form: the applicant's page has no form)
    let step = jane.submit(
        "/portal",
        &format!("{own}/step"),
        &[("step", "package-sent")],
    );
    assert_eq!(step.status, 403);
    assert_eq!(show(data, &jane_id)["steps"].as_array().unwrap().len(), 1);
    let mut olive = Browser::new(&server);
    olive.enter("olive", PASSWORD);
    let queue = olive.get("/portal/onboarding");
    assert!(queue.body.contains(&jane_id) && queue.body.contains(&lee_id));
    assert!(
        queue.body.contains("2 applications, 2 overdue."),
        "{}",
        queue.body
    );
    assert!(queue
        .body
        .contains("<strong class=\"overdue\">OVERDUE</strong>: due"));
    let page = olive.get(&format!("/portal/applications/{jane_id}"));
    assert!(page.body.contains("OVERDUE</strong> (due"), "{}", page.body);
    // With the default levels (10 days for the package) nothing is overdue yet.
    let listed = admin(data, &["application", "list", "--json"]);
    assert!(json_of(&listed)
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["overdue"].is_null()));
    let bad_levels = admin(
        data,
        &[
            "--service-levels",
            "package-sent=soon",
            "application",
            "list",
        ],
    );
    assert_eq!(bad_levels.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_levels.stderr).contains("service_levels: 'package-sent=soon'")
    );

    // The API: operators' tokens only.
    let api = format!("{}/api/applications", server.root());
    let get = |token: &str| {
        let mut response = common::agent()
            .get(&api)
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let participant_token = clinic_client.token(&server, "system/Organization.rs", "TREAT");
    assert_eq!(get(&participant_token).0, 403);
    let operator_token = operator_client.token(&server, "system/Organization.rs", "HOPERAT");
    let (status, body) = get(&operator_token);
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);

    let post = |body: Value| {
        let mut response = common::agent()
            .post(&api)
            .header("authorization", &format!("Bearer {operator_token}"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str::<Value>(&response.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };
    let (status, outcome) =
        post(json!({ "kind": "organization", "npi": "2234567890", "legal_name": "X" }));
    assert_eq!(status, 422, "{outcome}");
    let fields: Vec<&str> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    for field in [
        "npi",
        "licence_type",
        "city",
        "signer_email",
        "contact_phone",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let mut good: serde_json::Map<String, Value> = clinic_form()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("password"))
        .map(|(n, v)| (n.to_string(), Value::String(v.to_string())))
        .collect();
    good.insert("npi".into(), json!("2111222339"));
    good.insert("licence_number".into(), json!("CL-77"));
    let (status, created) = post(Value::Object(good.clone()));
    assert_eq!(status, 201, "{created}");
    // Lee's email is already the login of the account Lee made on the form: no second account.
    assert_eq!(created["user"], Value::Null, "{created}");
    assert_eq!(created["invitation"], Value::Null, "{created}");
    assert!(
        created["noAccount"]
            .as_str()
            .unwrap()
            .contains("already uses the contact's email"),
        "{created}"
    );
    good.insert("npi".into(), json!("2111222347"));
    good.insert("licence_number".into(), json!("CL-78"));
    good.insert("contact_email".into(), json!("ops@elm.example.org"));
    let (status, second) = post(Value::Object(good));
    assert_eq!(status, 201, "{second}");
    assert!(second["user"].is_string(), "{second}");
    let url = second["invitation"]["url"].as_str().unwrap();
    assert!(url.contains("/portal/invite/"), "{second}");
    let mut ops = Browser::new(&server);
    let shown = ops.get(&url[url.find("/portal/invite/").unwrap()..]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("ops@elm.example.org"), "{}", shown.body);
    assert_eq!(
        created["steps"][0]["by"],
        format!("client {}", operator_client.id)
    );
    let step = common::agent()
        .post(format!("{api}/{}/steps", created["id"].as_str().unwrap()))
        .header("authorization", &format!("Bearer {operator_token}"))
        .header("content-type", "application/json")
        .send(json!({ "step": "live" }).to_string())
        .unwrap();
    assert_eq!(step.status(), 422);
    let path = |body: Value| {
        let mut response = common::agent()
            .post(format!("{api}/{}/path", created["id"].as_str().unwrap()))
            .header("authorization", &format!("Bearer {operator_token}"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    };
    let (status, outcome) = path(json!({ "path": "ehr" }));
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "reason");
    let (status, moved) = path(json!({ "path": "ehr", "reason": "Acme passed the tests" }));
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["path"], "ehr");
    assert_eq!(moved["pathChanges"][0]["reason"], "Acme passed the tests");
}

/// An application without a participant (it looked like one on file, or the registry refused it)
/// takes no step until an operator decides, with a reason, once: closed as a duplicate of the
/// application it repeats (on the portal), joined to the participant already registered (CLI: the
/// applicant's account joins too), or registered as another applicant (API).
#[test]
fn an_application_without_a_participant_waits_for_the_operators_decision() {
    let dir = tempfile::tempdir().unwrap();
    an_application_without_a_participant_waits_for_the_operators_decision_in(dir.path());
}

/// The same on PostgreSQL.
#[test]
fn an_application_without_a_participant_waits_for_the_operators_decision_on_postgres() {
    common::run_on_postgres(
        "an_application_witho",
        an_application_without_a_participant_waits_for_the_operators_decision_in,
    );
}

fn an_application_without_a_participant_waits_for_the_operators_decision_in(data: &Path) {
    operator(data, "olive");
    let exchange = common::participant(
        data,
        "The Exchange",
        "exchange-operator",
        &["onboarding", "live"],
    );
    let operator_client = Client::register(data, &exchange);
    let server = Server::start(data, &[]);
    let mut jane = Browser::new(&server);
    let first = reference(
        &apply(
            &mut jane,
            &solo_form("1234567893", "LMFT1", "jane@doe.example.org"),
        )
        .body,
    );
    let mut kim = Browser::new(&server);
    let dup = reference(
        &apply(
            &mut kim,
            &solo_form("1234567893", "LMFT3", "kim@doe.example.org"),
        )
        .body,
    );
    let step = |id: &str, step: &str| admin(data, &["application", "step", id, step, "--json"]);
    refused_with(
        &step(&dup, "package-sent"),
        &["it has no participant", &first],
    );

    // On the portal: closed as a duplicate of the first.
    let mut olive = Browser::new(&server);
    olive.enter("olive", PASSWORD);
    let page = format!("/portal/applications/{dup}");
    let action = format!("{page}/decision");
    let shown = olive.get(&page);
    assert!(
        shown.body.contains("no step can be taken"),
        "{}",
        shown.body
    );
    let no_reason = olive.submit(
        &page,
        &action,
        &[
            ("decision", "duplicate"),
            ("duplicate_of", &first),
            ("reason", " "),
        ],
    );
    assert_eq!(no_reason.status, 422);
    assert!(no_reason.body.contains("a decision needs a reason"));
    let unrelated = olive.submit(
        &page,
        &action,
        &[
            ("decision", "duplicate"),
            ("duplicate_of", "app-000000000000"),
            ("reason", "same person"),
        ],
    );
    assert_eq!(unrelated.status, 422);
    assert!(unrelated
        .body
        .contains("is not an application like this one"));
    let closed = olive.submit(
        &page,
        &action,
        &[
            ("decision", "duplicate"),
            ("duplicate_of", &first),
            ("reason", "Jane applied twice; Kim is her office manager"),
        ],
    );
    assert_eq!(closed.status, 303, "{}", closed.body);
    let shown = olive.get(&page);
    assert!(
        shown.body.contains("Closed: it repeats application"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("office manager"));
    assert!(!shown
        .body
        .contains("action=\"/portal/applications/{dup}/step\""));
    let view = show(data, &dup);
    assert_eq!(view["decision"]["decision"], "duplicate");
    assert_eq!(view["decision"]["duplicateOf"], first.as_str());
    assert_eq!(view["decision"]["by"], "olive");
    assert_eq!(
        (view["next"].clone(), view["overdue"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(olive
        .get("/portal/onboarding")
        .body
        .contains("closed (a duplicate)"));
    refused_with(&step(&dup, "package-sent"), &["closed as a duplicate of"]);
    refused_with(
        &admin(
            data,
            &[
                "application",
                "decide",
                &dup,
                "--distinct",
                "--reason",
                "changed my mind",
            ],
        ),
        &["decided already"],
    );
    refused_with(
        &admin(
            data,
            &[
                "application",
                "decide",
                &first,
                "--distinct",
                "--reason",
                "x",
            ],
        ),
        &["it has its participant"],
    );

    // At the CLI: an applicant registered before the portal existed.
    let hospital = json_of(&admin(
        data,
        &[
            "participant",
            "add",
            "--name",
            "Harbor Hospital, Inc.",
            "--kind",
            "hospital",
            "--npi",
            "2876543218",
            "--json",
        ],
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = data.join("applications.csv");
    std::fs::write(
        &csv,
        "kind,legal_name,npi,licence_type,licence_number,licence_state,address_line,city,state,postcode,ehr,ehr_other,signer_name,signer_title,signer_email,contact_name,contact_email,contact_phone\n\
         organization,\"Harbor Hospital, Inc.\",2876543218,hospital,H-1,CT,9 Harbor Way,New London,CT,06320,other,Epic,Ann Poe,CEO,ann@harbor.example.org,Bo Ray,bo@harbor.example.org,860 555 0122\n",
    )
    .unwrap();
    let entered = json_of(&admin(
        data,
        &[
            "application",
            "add",
            "--csv",
            csv.to_str().unwrap(),
            "--json",
        ],
    ));
    let harbor = entered[0]["id"].as_str().unwrap().to_string();
    assert!(
        entered[0]["noParticipant"]
            .as_str()
            .unwrap()
            .contains("registry refused"),
        "{entered}"
    );
    refused_with(&step(&harbor, "package-sent"), &["registry refused it"]);
    refused_with(
        &admin(data, &["application", "decide", &harbor, "--reason", "x"]),
        &["give one decision"],
    );
    refused_with(
        &admin(
            data,
            &[
                "application",
                "decide",
                &harbor,
                "--existing",
                "nope",
                "--reason",
                "x",
            ],
        ),
        &["no participant has the id 'nope'"],
    );
    let joined = json_of(&admin(
        data,
        &[
            "application",
            "decide",
            &harbor,
            "--existing",
            &hospital,
            "--reason",
            "registered by the operator in 2022",
            "--json",
        ],
    ));
    assert_eq!(joined["participant"], hospital.as_str());
    assert_eq!(joined["decision"]["decision"], "existing");
    let users = json_of(&admin(data, &["user", "list", "--json"]));
    let bo = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "bo@harbor.example.org")
        .expect("the applicant's account");
    assert_eq!(
        bo["participant"],
        hospital.as_str(),
        "the account joined it"
    );
    json_of(&step(&harbor, "package-sent"));
    assert_eq!(participant_status(data, &hospital), "onboarding");

    // Through the API: the same licence, another NPI: another applicant.
    let operator_token = operator_client.token(&server, "system/Organization.rs", "HOPERAT");
    let api = format!("{}/api/applications", server.root());
    let post = |path: &str, body: Value| {
        let mut response = common::agent()
            .post(format!("{api}{path}"))
            .header("authorization", &format!("Bearer {operator_token}"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str::<Value>(&text).unwrap())
    };
    let mut form: serde_json::Map<String, Value> =
        solo_form("1245319599", "LMFT1", "ray@doe.example.org")
            .into_iter()
            .filter(|(n, _)| !n.starts_with("password"))
            .map(|(n, v)| (n.to_string(), Value::String(v.to_string())))
            .collect();
    form.insert("legal_name".into(), json!("Ray Doe"));
    let (status, ray) = post("", Value::Object(form));
    assert_eq!(status, 201, "{ray}");
    assert_eq!(ray["duplicates"][0]["by"], json!(["licence"]), "{ray}");
    let ray_id = ray["id"].as_str().unwrap().to_string();
    let (status, outcome) = post(
        &format!("/{ray_id}/decision"),
        json!({ "decision": "merge", "reason": "x" }),
    );
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "decision");
    // Another applicant whose identifiers are registered already: the registry says so.
    let (status, outcome) = post(
        &format!("/{ray_id}/decision"),
        json!({ "decision": "distinct", "reason": "another therapist" }),
    );
    assert_eq!(status, 422, "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("is already registered"),
        "{outcome}"
    );
    assert_eq!(
        show(data, &ray_id)["decision"],
        Value::Null,
        "nothing decided"
    );
    // Kim's closed application registered nothing, so an applicant with its licence is another
    // applicant the registry takes.
    let mut form: serde_json::Map<String, Value> =
        solo_form("1333333338", "LMFT3", "lee@doe.example.org")
            .into_iter()
            .filter(|(n, _)| !n.starts_with("password"))
            .map(|(n, v)| (n.to_string(), Value::String(v.to_string())))
            .collect();
    form.insert("legal_name".into(), json!("Lee Park"));
    let (status, lee) = post("", Value::Object(form));
    assert_eq!(status, 201, "{lee}");
    assert_eq!(lee["duplicates"][0]["application"], dup.as_str(), "{lee}");
    let lee_id = lee["id"].as_str().unwrap().to_string();
    let (status, decided) = post(
        &format!("/{lee_id}/decision"),
        json!({ "decision": "distinct", "reason": "Kim's application was closed; Lee holds LMFT3" }),
    );
    assert_eq!(status, 200, "{decided}");
    let participant = decided["participant"]
        .as_str()
        .expect("registered")
        .to_string();
    assert_eq!(participant_status(data, &participant), "applied");
    assert_eq!(decided["decision"]["participant"], participant.as_str());
    assert_eq!(
        decided["decision"]["by"],
        format!("client {}", operator_client.id)
    );
    let users = json_of(&admin(data, &["user", "list", "--json"]));
    let lee_account = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "lee@doe.example.org")
        .expect("Lee's account");
    assert_eq!(lee_account["participant"], participant.as_str());
}

/// The path of an invitation link (the CLI's base URL is not the test server's).
fn invitation_path(value: &Value) -> String {
    let url = value["invitation"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("an invitation in {value}"));
    url[url.find("/portal/invite/").unwrap()..].to_string()
}

/// Opens an invitation link and sends its form with `password` twice.
fn choose_password(browser: &mut Browser, link: &str, password: &str, again: &str) -> Answer {
    browser.submit(
        link,
        link,
        &[("password", password), ("password_again", again)],
    )
}

/// An application an operator enters makes its applicant's account without a password; the
/// printed link lets the applicant choose one, once, and then follow and sign their application.
/// `admin user invite` sends a new link (the older stops working), `admin user add --invite` makes
/// any account that way, and a used, replaced or made-up link gets one page that says only that it
/// cannot be used.
#[test]
fn an_entered_application_invites_its_applicant_to_choose_a_password() {
    let dir = tempfile::tempdir().unwrap();
    an_entered_application_invites_its_applicant_to_choose_a_password_in(dir.path());
}

/// The same on PostgreSQL.
#[test]
fn an_entered_application_invites_its_applicant_to_choose_a_password_on_postgres() {
    common::run_on_postgres(
        "an_entered_applicati",
        an_entered_application_invites_its_applicant_to_choose_a_password_in,
    );
}

fn an_entered_application_invites_its_applicant_to_choose_a_password_in(data: &Path) {
    let mut args = vec!["application", "add", "--json"];
    args.extend_from_slice(common::SAM_LEE_APPLICATION);
    let entered = json_of(&admin(data, &args));
    let id = entered["id"].as_str().unwrap().to_string();
    assert!(entered["invitation"]["expires"].is_string(), "{entered}");
    let link = invitation_path(&entered);
    let text = admin(data, &["user", "list"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("sam@lee.example.org"),
        "the account is listed"
    );
    let server = Server::start(data, &[]);

    let mut sam = Browser::new(&server);
    // No password works before the link is used, not even an empty one.
    for password in ["", "!", PASSWORD] {
        assert_eq!(
            sam.sign_in("sam@lee.example.org", password, "").status,
            200,
            "refused with {password:?}"
        );
    }
    let shown = sam.get(&link);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("Sam Lee") && shown.body.contains("sam@lee.example.org"));
    // Without the form's token: refused, nothing set.
    let forged = sam.post(
        &link,
        &[
            ("csrf", "x"),
            ("password", PASSWORD),
            ("password_again", PASSWORD),
        ],
    );
    assert_eq!(forged.status, 403);
    let short = choose_password(&mut sam, &link, "short", "short");
    assert_eq!(short.status, 422, "{}", short.body);
    assert!(short.body.contains("at least"), "{}", short.body);
    let differ = choose_password(&mut sam, &link, PASSWORD, "another horse battery staple");
    assert_eq!(differ.status, 422);
    assert!(differ.body.contains("the two passwords differ"));
    let set = choose_password(&mut sam, &link, PASSWORD, PASSWORD);
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body.contains("Your password is set"), "{}", set.body);
    sam.enter("sam@lee.example.org", PASSWORD);
    assert!(sam
        .get("/portal")
        .body
        .contains("Your application to connect"));
    assert!(sam.get("/portal/applications").body.contains(&id));

    // A used link, and a made-up one, get the same page.
    let mut other = Browser::new(&server);
    let used = other.get(&link);
    assert_eq!(used.status, 410);
    let made_up = other.get("/portal/invite/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let malformed = other.get("/portal/invite/..%2F..%2Fetc");
    assert_eq!((made_up.status, malformed.status), (410, 410));
    assert!(used.body.contains("cannot be used"), "{}", used.body);
    assert_eq!(used.body, made_up.body);
    assert_eq!(used.body, malformed.body);

    // A new link for a forgotten password: the one before it stops working; using it ends the
    // account's sessions and replaces the password.
    let first = json_of(&admin(
        data,
        &["user", "invite", "sam@lee.example.org", "--json"],
    ));
    let second = json_of(&admin(
        data,
        &["user", "invite", "sam@lee.example.org", "--json"],
    ));
    let (first, second) = (invitation_path(&first), invitation_path(&second));
    assert_ne!(first, second);
    assert_eq!(other.get(&first).status, 410);
    let fresh = "a brand new horse staple";
    assert_eq!(
        choose_password(&mut other, &second, fresh, fresh).status,
        200
    );
    assert_eq!(sam.get("/portal/applications").status, 303, "signed out");
    assert_eq!(sam.sign_in("sam@lee.example.org", PASSWORD, "").status, 200);
    sam.enter("sam@lee.example.org", fresh);
    refused_with(
        &admin(data, &["user", "invite", "nobody@x.example"]),
        &["no account has the login nobody@x.example"],
    );

    // Any account can be made with an invitation instead of a password.
    let added = admin(
        data,
        &[
            "user",
            "add",
            "--login",
            "olive",
            "--name",
            "Olive Operator",
            "--role",
            "operator-admin",
            "--invite",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let stdout = String::from_utf8_lossy(&added.stdout);
    let url = stdout.lines().nth(1).expect("the link after the id");
    let link = &url[url.find("/portal/invite/").unwrap()..];
    let mut olive = Browser::new(&server);
    assert_eq!(choose_password(&mut olive, link, fresh, fresh).status, 200);
    olive.enter("olive", fresh);
    assert!(olive.get("/portal/onboarding").body.contains(&id));
    // A disabled account's link sets nothing.
    let link = invitation_path(&json_of(&admin(
        data,
        &["user", "invite", "olive", "--json"],
    )));
    json_of(&admin(data, &["user", "disable", "olive", "--json"]));
    assert_eq!(other.get(&link).status, 410);
    // The server's log names routes, never a link's secret.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("/portal/invite/{secret}"),
        "the requests were logged"
    );
    for path in [&second, &first] {
        let secret = path.trim_start_matches("/portal/invite/");
        assert!(!log.contains(secret), "a secret in the log");
    }
}

/// The form offers the EHR compatibility catalog (what operators keep with `admin catalog`), and a
/// product that can connect starts its applicant on the EHR path; one not yet compatible, on the
/// secure-messaging path.
#[test]
fn a_catalog_product_that_can_connect_starts_the_ehr_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let add = |product: &str, status: &str| -> String {
        let added = json_of(&admin(
            data,
            &[
                "catalog",
                "add",
                "--vendor",
                "Acme",
                "--product",
                product,
                "--version",
                "12",
                "--capabilities",
                "fhir-r4,ccda",
                "--status",
                status,
                "--json",
            ],
        ));
        added["id"].as_str().expect("a product id").to_string()
    };
    let capable = add("Acme EHR", "compatible");
    let not_yet = add("Acme Lite", "not-yet-compatible");
    let server = Server::start(data, &[]);

    let mut browser = Browser::new(&server);
    let form = browser.get("/portal/connect");
    assert!(
        form.body.contains(&format!(
            "<option value=\"{capable}\">Acme Acme EHR 12</option>"
        )),
        "{}",
        form.body
    );
    let clinic: Vec<(&str, &str)> = clinic_form()
        .into_iter()
        .map(|(name, value)| match name {
            "ehr" => (name, capable.as_str()),
            "ehr_other" => (name, ""),
            _ => (name, value),
        })
        .collect();
    let accepted = apply(&mut browser, &clinic);
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let view = show(data, &reference(&accepted.body));
    assert_eq!(view["ehr"], json!({ "kind": "catalog", "value": capable }));
    assert_eq!(view["path"], "ehr");

    let solo: Vec<(&str, &str)> = solo_form("1234567893", "LMFT.0099", "jane@doe.example.org")
        .into_iter()
        .map(|(name, value)| match name {
            "ehr" => (name, not_yet.as_str()),
            _ => (name, value),
        })
        .collect();
    let mut other = Browser::new(&server);
    let accepted = apply(&mut other, &solo);
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let view = show(data, &reference(&accepted.body));
    assert_eq!(view["path"], "secure-messaging");
}
