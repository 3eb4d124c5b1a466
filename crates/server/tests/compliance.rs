//! Issue 7's catalog and compliance end to end: the real `nutmeg` binary, its admin commands
//! (`catalog`, `roster`, `compliance`) with good and bad input, and the portal as a browser sees
//! it: the public EHR catalog and its request form (double-submit CSRF, errors beside fields,
//! nothing typed lost), the operators' pages (refused to everyone else), the CSV and the chart,
//! and the public self-lookup by licence number and NPI (right pair, wrong pair, licence alone).

mod common;

use std::path::Path;

use common::browser::{hidden_csrf, Browser};
use common::{admin, json_of, Server};

/// `nutmeg admin user add ARGS --password-file` with `password`.
fn add_user(dir: &Path, password: &str, args: &[&str]) {
    let file = dir.join("password.txt");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut all = vec!["user", "add", "--password-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = admin(dir, &all);
    std::fs::remove_file(&file).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn refused_with(output: &std::process::Output, reasons: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected a refusal: {stderr}");
    for reason in reasons {
        assert!(stderr.contains(reason), "{reason:?} not in {stderr}");
    }
}

const PASSWORD: &str = "correct horse battery staple";

/// A valid NPI from a serial number.
fn npi(serial: u32) -> String {
    let first: Vec<u32> = format!("1{serial:08}")
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let check = onboard::npi::check_digit(&first);
    format!(
        "{}{check}",
        first.iter().map(|d| d.to_string()).collect::<String>()
    )
}

#[test]
fn catalog_commands_take_good_input_and_refuse_bad() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let acme = json_of(&admin(
        dir,
        &[
            "catalog",
            "add",
            "--vendor",
            "Acme",
            "--product",
            "Acme EHR",
            "--version",
            "22",
            "--onc-certification",
            "15.04.04.2891.Acme.22.01.1.220101",
            "--capabilities",
            "fhir-r4,ccda",
            "--status",
            "connected",
            "--json",
        ],
    ));
    assert_eq!(acme["status"], "connected");
    assert_eq!(acme["capabilities"], serde_json::json!(["fhir-r4", "ccda"]));
    // The same product again, however typed, and bad fields: refused, every reason named.
    refused_with(
        &admin(
            dir,
            &[
                "catalog",
                "add",
                "--vendor",
                "ACME",
                "--product",
                "acme ehr!",
                "--version",
                "22",
                "--status",
                "compatible",
            ],
        ),
        &["already lists"],
    );
    refused_with(
        &admin(
            dir,
            &[
                "catalog",
                "add",
                "--vendor",
                "",
                "--product",
                "X",
                "--capabilities",
                "telepathy",
                "--status",
                "maybe",
            ],
        ),
        &[
            "vendor:",
            "unknown capability `telepathy`",
            "unknown status `maybe`",
        ],
    );
    let id = acme["id"].as_str().unwrap();
    refused_with(
        &admin(dir, &["catalog", "set-status", id, "great"]),
        &["unknown status"],
    );
    refused_with(
        &admin(dir, &["catalog", "set-status", "nope", "compatible"]),
        &["no product"],
    );
    let moved = json_of(&admin(
        dir,
        &["catalog", "set-status", id, "compatible", "--json"],
    ));
    assert_eq!(moved["status"], "compatible");
    // An import with bad rows stores nothing.
    let file = dir.join("catalog.csv");
    std::fs::write(
        &file,
        "vendor,product,version,onc_certification,capabilities,status\n\
         Zenith,One,,,direct,not-yet-compatible\n\
         ,Nameless,,,,connected\n\
         Bright,Notes,3,,fhir-r4;hl7v2,wonderful\n",
    )
    .unwrap();
    refused_with(
        &admin(dir, &["catalog", "import", file.to_str().unwrap()]),
        &["line 3: vendor", "line 4: status", "nothing was stored"],
    );
    let listed = json_of(&admin(dir, &["catalog", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    std::fs::write(
        &file,
        "vendor,product,version,onc_certification,capabilities,status\n\
         Zenith,One,,,direct,not-yet-compatible\n\
         Acme,Acme EHR,22,,fhir-r4,connected\n",
    )
    .unwrap();
    let imported = json_of(&admin(
        dir,
        &["catalog", "import", file.to_str().unwrap(), "--json"],
    ));
    assert_eq!(imported, serde_json::json!({ "added": 1, "updated": 1 }));
    let found = json_of(&admin(
        dir,
        &["catalog", "list", "--search", "zen", "--json"],
    ));
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["status"], "not-yet-compatible");
    refused_with(
        &admin(dir, &["catalog", "import", "/nonexistent.csv"]),
        &["cannot read"],
    );
}

const ROSTER_HEADER: &str =
    "Name,License Type,License Number,NPI,Status,Address,City,State,Zip,County\n";

#[test]
fn roster_import_names_bad_rows_and_stores_nothing_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let file = dir.join("roster.csv");
    std::fs::write(
        &file,
        format!(
            "{ROSTER_HEADER}\
             \"Doe, Jane\",LMFT,LMFT.001,{},Active,1 Elm St,Hartford,CT,06103,Hartford\n\
             ,Astrologer,,123,,,,,,\n\
             Sam Roe,LCSW,LCSW 2,,Active,2 Oak St,New Haven,,06510,New Haven\n\
             Sam Again,LCSW,LCSW-2,,Active,2 Oak St,New Haven,,06510,New Haven\n",
            npi(1)
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    refused_with(
        &admin(dir, &["roster", "import", path, "--state", "Connecticut"]),
        &["--state"],
    );
    refused_with(
        &admin(dir, &["roster", "import", path, "--state", "CT"]),
        &[
            "line 3:",
            "no name",
            "unknown licence type `Astrologer`",
            "line 5: the same licence as line 4",
            "nothing was stored",
            "--skip-bad-rows",
        ],
    );
    assert_eq!(
        json_of(&admin(dir, &["roster", "imports", "--json"])),
        serde_json::json!([])
    );
    let stored = json_of(&admin(
        dir,
        &[
            "roster",
            "import",
            path,
            "--state",
            "ct",
            "--skip-bad-rows",
            "--json",
        ],
    ));
    assert_eq!(stored["stored"], 2);
    assert_eq!(stored["rejected"], 2);
    let imports = json_of(&admin(dir, &["roster", "imports", "--json"]));
    assert_eq!(imports[0]["rows"], 4);
    assert_eq!(imports[0]["state"], "CT");
    // A header without the columns needed, and a file that is not text.
    std::fs::write(&file, "Name,Status\nx,active\n").unwrap();
    refused_with(
        &admin(dir, &["roster", "import", path, "--state", "CT"]),
        &["no column for"],
    );
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    refused_with(
        &admin(dir, &["roster", "import", path, "--state", "CT"]),
        &["not UTF-8"],
    );

    // Exemptions: the mandate's ids only, a real date, a reason, a licensee on the roster.
    let licence = [
        "--licence-type",
        "lmft",
        "--licence-number",
        "lmft.001",
        "--state",
        "CT",
    ];
    let mut exempt = vec!["roster", "exempt"];
    exempt.extend_from_slice(&licence);
    let mut bad = exempt.clone();
    bad.extend_from_slice(&[
        "--exemption",
        "on-holiday",
        "--since",
        "2023-02-30",
        "--reason",
        " ",
    ]);
    refused_with(
        &admin(dir, &bad),
        &["no exemption `on-holiday`", "--since", "--reason"],
    );
    let mut good = exempt.clone();
    good.extend_from_slice(&[
        "--exemption",
        "employee-of-a-connected-organization",
        "--since",
        "2022-01-01",
        "--reason",
        "works at Hartford General",
        "--json",
    ]);
    json_of(&admin(dir, &good));
    refused_with(&admin(dir, &good), &["already recorded"]);
    let mut nobody = vec![
        "roster",
        "exempt",
        "--licence-type",
        "lmft",
        "--licence-number",
        "X9",
        "--state",
        "CT",
    ];
    nobody.extend_from_slice(&[
        "--exemption",
        "no-patient-records",
        "--since",
        "2022-01-01",
        "--reason",
        "r",
    ]);
    refused_with(&admin(dir, &nobody), &["no licensee"]);
    let mut matched = vec!["roster", "match"];
    matched.extend_from_slice(&licence);
    matched.extend_from_slice(&["--participant", "nobody-such", "--reason", "x"]);
    refused_with(&admin(dir, &matched), &["no participant or application"]);

    let report = json_of(&admin(
        dir,
        &["compliance", "report", "--as-of", "2023-06-01", "--json"],
    ));
    assert_eq!(report["totals"]["exempt"], 1);
    assert_eq!(report["totals"]["notYetCompliant"], 1);
    assert_eq!(report["byLicenceType"]["lcsw"]["overdue"], 1);
    refused_with(
        &admin(dir, &["compliance", "report", "--as-of", "yesterday"]),
        &["--as-of"],
    );
    let csv = dir.join("out.csv");
    json_of(&admin(
        dir,
        &[
            "compliance",
            "report",
            "--as-of",
            "2023-06-01",
            "--csv",
            csv.to_str().unwrap(),
            "--json",
        ],
    ));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("licence_type,licence_number"), "{text}");
    assert!(text.contains("LMFT.001,CT"), "{text}");
    assert!(
        text.contains("employee-of-a-connected-organization"),
        "{text}"
    );
}

#[test]
fn the_portal_catalog_requests_compliance_pages_and_self_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    json_of(&admin(
        dir,
        &[
            "catalog",
            "add",
            "--vendor",
            "Acme",
            "--product",
            "Acme EHR",
            "--capabilities",
            "fhir-r4",
            "--status",
            "connected",
            "--json",
        ],
    ));
    let zenith = json_of(&admin(
        dir,
        &[
            "catalog",
            "add",
            "--vendor",
            "Zenith",
            "--product",
            "<b>One</b>",
            "--status",
            "not-yet-compatible",
            "--json",
        ],
    ));
    // A hospital in the registry, found by its licence; a therapist found by nobody.
    let hospital = json_of(&admin(
        dir,
        &[
            "participant",
            "add",
            "--name",
            "Hartford General",
            "--kind",
            "hospital",
            "--npi",
            &npi(7),
            "--licence",
            "CT:HOSP-1",
            "--json",
        ],
    ));
    let roster = dir.join("roster.csv");
    std::fs::write(
        &roster,
        format!(
            "{ROSTER_HEADER}\
             Hartford General,Hospital,HOSP-1,{},Active,80 Seymour St,Hartford,CT,06102,Hartford\n\
             \"Doe, Jane\",LMFT,LMFT.001,{},Active,1 Elm St,Hartford,CT,06103,Hartford\n",
            npi(7),
            npi(1)
        ),
    )
    .unwrap();
    json_of(&admin(
        dir,
        &[
            "roster",
            "import",
            roster.to_str().unwrap(),
            "--state",
            "CT",
            "--json",
        ],
    ));
    add_user(
        dir,
        PASSWORD,
        &[
            "--login",
            "op",
            "--name",
            "Operator",
            "--role",
            "operator-admin",
        ],
    );
    add_user(
        dir,
        PASSWORD,
        &[
            "--login",
            "doc",
            "--name",
            "Doctor",
            "--role",
            "clinician",
            "--participant",
            hospital["id"].as_str().unwrap(),
        ],
    );
    let server = Server::start(dir, &[]);

    // The public catalog answers in plain words, escaped.
    let mut public = Browser::new(&server);
    let page = public.get("/portal/ehr?q=acme");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Acme Acme EHR"), "{}", page.body);
    assert!(
        page.body.contains("already connects to the exchange"),
        "{}",
        page.body
    );
    let page = public.get("/portal/ehr?q=zenith");
    assert!(page.body.contains("&lt;b&gt;One&lt;/b&gt;") && !page.body.contains("<b>One</b>"));
    assert!(
        page.body.contains("cannot connect to the exchange yet"),
        "{}",
        page.body
    );
    let page = public.get("/portal/ehr?q=nothing+like+it");
    assert!(page.body.contains("Not in the catalog"), "{}", page.body);
    assert!(page.body.contains("send and receive"), "{}", page.body);

    // The request form: without its token refused; bad input redisplayed with everything kept.
    let form = public.get(&format!(
        "/portal/ehr/request?product={}",
        zenith["id"].as_str().unwrap()
    ));
    assert_eq!(form.status, 200);
    let csrf = hidden_csrf(&form.body);
    let refused = public.post(
        "/portal/ehr/request",
        &[("csrf", "forged"), ("kind", "add")],
    );
    assert_eq!(refused.status, 403);
    let bad = public.post(
        "/portal/ehr/request",
        &[
            ("csrf", &csrf),
            ("kind", "add"),
            ("vendor", "Bright <Health>"),
            ("product", ""),
            ("requester", "Jane Doe"),
            ("contact", "nope"),
            ("note", "we use it daily"),
        ],
    );
    assert_eq!(bad.status, 422);
    assert!(
        bad.body.contains("value=\"Bright &lt;Health&gt;\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("value=\"Jane Doe\""));
    assert!(bad.body.contains("we use it daily"));
    assert!(bad.body.contains("id=\"product-error\""), "{}", bad.body);
    assert!(bad.body.contains("id=\"contact-error\""), "{}", bad.body);
    for (vendor, product) in [("Bright", "Notes"), ("bright", "NOTES!"), ("Zenith", "x")] {
        let form = public.get("/portal/ehr/request");
        let csrf = hidden_csrf(&form.body);
        let sent = public.post(
            "/portal/ehr/request",
            &[
                ("csrf", &csrf),
                ("kind", "add"),
                ("vendor", vendor),
                ("product", product),
                ("requester", "Jane"),
                ("contact", "jane@example.org"),
            ],
        );
        assert_eq!(sent.status, 200, "{}", sent.body);
        assert!(sent.body.contains("is recorded"));
    }
    let form = public.get("/portal/ehr/request");
    let csrf = hidden_csrf(&form.body);
    let review = public.post(
        "/portal/ehr/request",
        &[
            ("csrf", &csrf),
            ("kind", "review"),
            ("product_id", zenith["id"].as_str().unwrap()),
            ("requester", "Sam"),
            ("contact", "860-555-0100"),
        ],
    );
    assert_eq!(review.status, 200, "{}", review.body);

    // Operators' pages refuse the public and other roles.
    for path in [
        "/portal/ehr/requests",
        "/portal/compliance",
        "/portal/compliance/licensees",
        "/portal/compliance/report.csv",
        "/portal/compliance/chart.svg",
    ] {
        let anonymous = public.get(path);
        assert_eq!(anonymous.status, 303, "{path}");
        assert_eq!(anonymous.location.as_deref(), Some("/portal/sign-in"));
    }
    let mut doctor = Browser::new(&server);
    assert_eq!(doctor.sign_in("doc", PASSWORD, "").status, 303);
    for path in [
        "/portal/ehr/requests",
        "/portal/compliance",
        "/portal/compliance/licensees",
        "/portal/compliance/report.csv",
        "/portal/compliance/chart.svg",
    ] {
        let other = doctor.get(path);
        assert_eq!(other.status, 403, "{path}");
        assert!(!other.body.contains("HOSP1"), "{path}");
    }
    let mut op = Browser::new(&server);
    assert_eq!(op.sign_in("op", PASSWORD, "").status, 303);
    let tally = op.get("/portal/ehr/requests");
    assert_eq!(tally.status, 200);
    // The two spellings are one product, shown as one of them.
    let bright = ["<td>Bright Notes</td>", "<td>bright NOTES!</td>"]
        .iter()
        .any(|name| {
            tally.body.contains(&format!(
                "{name}<td>Not in the catalog</td><td>2</td><td>2</td><td>0</td>"
            ))
        });
    assert!(bright, "{}", tally.body);
    assert!(
        tally.body.contains("<td>1</td><td>0</td><td>1</td>"),
        "{}",
        tally.body
    );

    let overview = op.get("/portal/compliance?as_of=2023-06-01");
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains("<svg"), "{}", overview.body);
    assert!(!overview.body.contains("<script"));
    assert!(
        overview.body.contains("2 active licensees"),
        "{}",
        overview.body
    );
    assert_eq!(op.get("/portal/compliance?as_of=someday").status, 400);
    let list = op.get("/portal/compliance/licensees?as_of=2023-06-01&status=overdue");
    assert_eq!(list.status, 200);
    // The hospital is registered but has no application dated on file, so it is overdue, as is Jane.
    assert!(
        list.body.contains("HOSP1") && list.body.contains("LMFT.001"),
        "{}",
        list.body
    );
    assert!(list.body.contains("by licence"), "{}", list.body);
    assert_eq!(
        op.get("/portal/compliance/licensees?status=sleeping")
            .status,
        400
    );
    let csv = op.get_raw("/portal/compliance/report.csv?as_of=2023-06-01");
    assert_eq!(csv.0, 200);
    assert_eq!(
        csv.1.get("content-type").map(String::as_str),
        Some("text/csv; charset=utf-8")
    );
    assert!(csv.1["content-disposition"].starts_with("attachment"));
    assert!(csv.2.starts_with("licence_type,"), "{}", csv.2);
    let svg = op.get_raw("/portal/compliance/chart.svg");
    assert_eq!(
        svg.1.get("content-type").map(String::as_str),
        Some("image/svg+xml; charset=utf-8")
    );
    assert!(svg.1["content-security-policy"].contains("sandbox"));
    assert!(svg.2.starts_with("<svg") && !svg.2.contains("<script"));

    // The public lookup: the right pair answers in plain words.
    let form = public.get("/portal/compliance/lookup");
    assert_eq!(form.status, 200);
    let csrf = hidden_csrf(&form.body);
    let jane_npi = npi(1);
    let right = public.post(
        "/portal/compliance/lookup",
        &[("csrf", &csrf), ("licence", "lmft.001"), ("npi", &jane_npi)],
    );
    assert_eq!(right.status, 200);
    assert!(
        right.body.contains("What the law asks of you"),
        "{}",
        right.body
    );
    assert!(
        right.body.contains("no application to connect from you"),
        "{}",
        right.body
    );
    assert!(right.body.contains("What is left"), "{}", right.body);
    // The wrong pair (someone else's NPI) and an unknown number: "not found", nothing else.
    let csrf = hidden_csrf(&right.body);
    let wrong = public.post(
        "/portal/compliance/lookup",
        &[("csrf", &csrf), ("licence", "LMFT.001"), ("npi", &npi(7))],
    );
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("Not found"), "{}", wrong.body);
    assert!(
        !wrong.body.contains("Doe") && !wrong.body.contains("Hartford General"),
        "{}",
        wrong.body
    );
    // The licence number alone (or the NPI alone) is not enough: the missing field is named.
    let csrf = hidden_csrf(&wrong.body);
    let alone = public.post(
        "/portal/compliance/lookup",
        &[("csrf", &csrf), ("licence", "LMFT.001"), ("npi", "")],
    );
    assert_eq!(alone.status, 422);
    assert!(
        alone.body.contains("give your NPI") && !alone.body.contains("Doe"),
        "{}",
        alone.body
    );
    assert!(
        alone.body.contains("value=\"LMFT.001\""),
        "nothing typed is lost"
    );
    let csrf = hidden_csrf(&alone.body);
    let npi_alone = public.post(
        "/portal/compliance/lookup",
        &[("csrf", &csrf), ("licence", ""), ("npi", &jane_npi)],
    );
    assert_eq!(npi_alone.status, 422);
    assert!(npi_alone.body.contains("give your licence number") && !npi_alone.body.contains("Doe"));
    let csrf = hidden_csrf(&npi_alone.body);
    let bad_npi = public.post(
        "/portal/compliance/lookup",
        &[
            ("csrf", &csrf),
            ("licence", "LMFT.001"),
            ("npi", "1234567890"),
        ],
    );
    assert_eq!(bad_npi.status, 422);
    assert!(
        bad_npi.body.contains("this is not an NPI"),
        "{}",
        bad_npi.body
    );
    let forged = public.post(
        "/portal/compliance/lookup",
        &[
            ("csrf", "forged"),
            ("licence", "LMFT.001"),
            ("npi", &jane_npi),
        ],
    );
    assert_eq!(forged.status, 403);
    assert!(!forged.body.contains("Doe"));

    // A script that tries pairs is stopped: 30 lookups per address in ten minutes (five were
    // made above), then 429, even for the right pair.
    let mut csrf = hidden_csrf(&bad_npi.body);
    let mut tried = 5;
    let refused = loop {
        let answer = public.post(
            "/portal/compliance/lookup",
            &[("csrf", &csrf), ("licence", "LMFT.999"), ("npi", &jane_npi)],
        );
        if answer.status == 429 {
            break answer;
        }
        tried += 1;
        assert!(tried <= 30, "still answering after {tried} lookups");
        csrf = hidden_csrf(&answer.body);
    };
    assert_eq!(tried, 30, "the limit is 30");
    assert!(refused.body.contains("Too many requests"));
    let right = public.post(
        "/portal/compliance/lookup",
        &[("csrf", &csrf), ("licence", "LMFT.001"), ("npi", &jane_npi)],
    );
    assert_eq!(right.status, 429);
    assert!(!right.body.contains("Doe"));
}

/// The values of the `<option>`s of the first `<select name="participant">`.
fn participant_options(html: &str) -> Vec<String> {
    let Some(start) = html.find("<select name=\"participant\">") else {
        return Vec::new();
    };
    let select = &html[start..];
    let select = &select[..select.find("</select>").unwrap_or(select.len())];
    select
        .split("<option value=\"")
        .skip(1)
        .map(|o| o.split('"').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn an_operator_decides_an_ambiguous_match_in_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Two applications from "Sam Roe" at one address, neither by the roster's licence or NPI.
    for (n, licence) in [(21, "LCSW 21"), (22, "LCSW 22")] {
        json_of(&admin(
            dir,
            &[
                "application",
                "add",
                "--json",
                "--kind",
                "solo-practitioner",
                "--legal-name",
                "Sam Roe",
                "--npi",
                &npi(n),
                "--licence-type",
                "lcsw",
                "--licence-number",
                licence,
                "--licence-state",
                "CT",
                "--address-line",
                "1 Elm Street",
                "--city",
                "New Haven",
                "--state",
                "CT",
                "--postcode",
                "06510",
                "--ehr",
                "none",
                "--signer-name",
                "Sam Roe",
                "--signer-title",
                "Owner",
                "--signer-email",
                "sam@roe.example.org",
                "--contact-name",
                "Sam Roe",
                "--contact-email",
                "sam@roe.example.org",
                "--contact-phone",
                "203-555-0100",
            ],
        ));
    }
    let roster = dir.join("roster.csv");
    std::fs::write(
        &roster,
        format!(
            "{ROSTER_HEADER}\"Roe, Sam\",LCSW,LCSW 23,,Active,1 Elm Street,New Haven,CT,06510,New Haven\n"
        ),
    )
    .unwrap();
    json_of(&admin(
        dir,
        &[
            "roster",
            "import",
            roster.to_str().unwrap(),
            "--state",
            "CT",
            "--json",
        ],
    ));
    add_user(
        dir,
        PASSWORD,
        &[
            "--login",
            "op",
            "--name",
            "Operator",
            "--role",
            "operator-admin",
        ],
    );
    let server = Server::start(dir, &[]);
    let mut op = Browser::new(&server);
    assert_eq!(op.sign_in("op", PASSWORD, "").status, 303);
    let overview = op.get("/portal/compliance");
    assert!(
        overview.body.contains("Matches to decide (1)"),
        "{}",
        overview.body
    );
    let options = participant_options(&overview.body);
    assert_eq!(options.len(), 3, "two candidates and none: {options:?}");
    assert_eq!(options[2], "none");
    let csrf = hidden_csrf(&overview.body);
    let hidden = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let at = overview.body.find(&marker).expect("the field") + marker.len();
        overview.body[at..].split('"').next().unwrap().to_string()
    };
    let (kind, number, state) = (
        hidden("licence_type"),
        hidden("licence_number"),
        hidden("state"),
    );
    let licence = [
        ("licence_type", kind.as_str()),
        ("licence_number", number.as_str()),
        ("state", state.as_str()),
    ];
    let decide = |op: &mut Browser, participant: &str, reason: &str, csrf: &str| {
        let mut form = vec![
            ("csrf", csrf),
            ("participant", participant),
            ("reason", reason),
        ];
        form.extend_from_slice(&licence);
        op.post("/portal/compliance/match", &form)
    };

    // Without a reason, for someone who is no candidate, or with a forged token: refused.
    let unexplained = decide(&mut op, &options[0], " ", &csrf);
    assert_eq!(unexplained.status, 422);
    assert!(unexplained.body.contains("say why"), "{}", unexplained.body);
    let stranger = decide(&mut op, "somebody-else", "a guess", &csrf);
    assert_eq!(stranger.status, 422);
    assert!(stranger.body.contains("choose one of the candidates"));
    assert_eq!(decide(&mut op, &options[0], "x", "forged").status, 403);
    assert!(op
        .get("/portal/compliance")
        .body
        .contains("Matches to decide (1)"));

    // Decided: no longer ambiguous, and the licensee counts as that applicant's.
    let decided = decide(
        &mut op,
        &options[1],
        "the board confirmed the licence by phone",
        &csrf,
    );
    assert_eq!(decided.status, 303, "{}", decided.body);
    assert_eq!(decided.location.as_deref(), Some("/portal/compliance"));
    let after = op.get("/portal/compliance");
    assert!(
        after.body.contains("Matches to decide (0)"),
        "{}",
        after.body
    );
    let list = op.get("/portal/compliance/licensees");
    assert!(list.body.contains(&number), "{}", list.body);
    assert!(list.body.contains("operator"), "{}", list.body);
}
