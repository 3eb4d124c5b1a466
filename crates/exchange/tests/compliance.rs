//! The compliance report through the store, on both engines: a generated roster in several states
//! of progress (no application; applied on the EHR path, on time or late; on the secure-messaging
//! path with or without a test message; exempt; applied after the report's day; inactive) is
//! imported with `Store::import_roster`, exemptions recorded in the store, the applicants given as
//! candidates, and every line of the report checked against Connecticut's rules worked out here by
//! hand. Also the provider's lookup (right pair, wrong pair, licence number alone) and, ignored by
//! default, the time of the report and its CSV at 100,000 licensees
//! (`cargo test --release -p exchange --test compliance -- --ignored --nocapture`).
//!
//! PostgreSQL runs when `NUTMEG_TEST_POSTGRES` names a database (each test in a fresh schema);
//! otherwise it says it skipped and passes.

use std::sync::atomic::{AtomicUsize, Ordering};

use exchange::compliance::{explain, Candidate, Roster};
use onboard::application::Licence;
use onboard::mandate::Mandate;
use onboard::{format_date, Date};
use store::{LicenceKey, LicenseeExemption, RosterImport, Store, StoredLicensee};
use time::macros::date;

const TYPES: &[&str] = &["lmft", "lcsw", "physician", "hospital", "laboratory", "lpc"];
const COUNTIES: &[&str] = &["Hartford", "New Haven", "Fairfield", "Tolland"];

/// A valid NPI from a serial number (the Luhn check digit over 80840 and the first nine).
fn npi(serial: usize) -> String {
    let first: Vec<u32> = format!("1{:08}", serial % 100_000_000)
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let check = onboard::npi::check_digit(&first);
    format!(
        "{}{check}",
        first.iter().map(|d| d.to_string()).collect::<String>()
    )
}

struct Generated {
    licensees: Vec<StoredLicensee>,
    candidates: Vec<Candidate>,
    exemptions: Vec<LicenseeExemption>,
    /// Per licensee: `None` if inactive, else the expected (status code, overdue).
    expected: Vec<Option<(&'static str, bool)>>,
}

fn day(offset: usize) -> Date {
    date!(2021 - 06 - 01) + time::Duration::days(offset as i64)
}

/// Connecticut's rules, by hand.
fn expect(
    kind: &str,
    path: Option<bool>,
    applied: Option<Date>,
    messaging: Option<Date>,
    exempt: Option<Date>,
    as_of: Date,
) -> (&'static str, bool) {
    if exempt.is_some_and(|d| d <= as_of) {
        return ("exempt", false);
    }
    let facility = kind == "hospital" || kind == "laboratory";
    let deadline = if facility {
        date!(2022 - 05 - 03)
    } else {
        date!(2023 - 05 - 03)
    };
    let applied = applied.is_some_and(|d| d <= as_of);
    let messaging = messaging.is_some_and(|d| d <= as_of);
    let done = if facility {
        applied
    } else {
        match path {
            Some(true) => applied,
            Some(false) => messaging,
            None => applied || messaging,
        }
    };
    if done {
        ("compliant", false)
    } else {
        ("not-yet-compliant", as_of > deadline)
    }
}

fn generate(n: usize, as_of: Date) -> Generated {
    let mut g = Generated {
        licensees: Vec::with_capacity(n),
        candidates: Vec::new(),
        exemptions: Vec::new(),
        expected: Vec::with_capacity(n),
    };
    for i in 0..n {
        let kind = TYPES[i % TYPES.len()];
        let number = format!("{}{:07}", kind[..2].to_ascii_uppercase(), i);
        let active = i % 13 != 0;
        let key = LicenceKey {
            licence_type: kind.into(),
            licence_number: number.clone(),
            licence_state: "CT".into(),
        };
        g.licensees.push(StoredLicensee {
            licence: key.clone(),
            import_id: String::new(),
            line: i as i64 + 2,
            name: format!("Person{i} Given"),
            npi: Some(npi(i)),
            status: if active { "active" } else { "expired" }.into(),
            address_line: format!("{} Main Street", i % 997),
            city: "Town".into(),
            postcode: format!("06{:03}", i % 1000),
            county: COUNTIES[i % COUNTIES.len()].into(),
        });
        // The state of progress.
        let progress = (i / TYPES.len()) % 8;
        let (path, applied, messaging, exempt) = match progress {
            0 => (None, None, None, None),
            1 => (Some(true), Some(day(i % 300)), None, None),
            2 => (Some(true), Some(day(700 + i % 100)), None, None),
            3 => (
                Some(false),
                Some(day(i % 300)),
                Some(day(350 + i % 300)),
                None,
            ),
            4 => (Some(false), Some(day(i % 300)), None, None),
            5 => (None, None, None, Some(day(i % 500))),
            6 => (Some(true), Some(day(2000)), None, None),
            _ => (Some(false), Some(day(100)), Some(day(900)), None),
        };
        if applied.is_some() {
            g.candidates.push(Candidate {
                id: format!("app-{i}"),
                legal_name: format!("Given Person{i}"),
                npi: Some(npi(i)),
                licences: vec![Licence {
                    kind: kind.into(),
                    number: number.clone(),
                    state: "CT".into(),
                }],
                received: applied,
                ehr_path: path,
                test_message: messaging,
                ..Candidate::default()
            });
        }
        if let Some(since) = exempt {
            g.exemptions.push(LicenseeExemption {
                licence: key,
                exemption: "no-patient-records".into(),
                since: format_date(since),
                reason: "retired from practice".into(),
                recorded_by: "test".into(),
                recorded: 1,
            });
        }
        g.expected
            .push(active.then(|| expect(kind, path, applied, messaging, exempt, as_of)));
    }
    g
}

async fn load(store: &Store, g: &Generated) {
    store
        .import_roster(
            RosterImport {
                import_id: "import-1".into(),
                state: "CT".into(),
                source: "generated.csv".into(),
                sha256: "0".repeat(64),
                rows: g.licensees.len() as i64,
                rejected: 0,
                imported: 1,
            },
            g.licensees.clone(),
        )
        .await
        .unwrap();
    for x in &g.exemptions {
        assert!(store.add_licensee_exemption(x.clone()).await.unwrap());
    }
}

async fn report_matches_the_rules(store: &Store) {
    let mandate = Mandate::connecticut();
    let g = generate(3_000, date!(2023 - 09 - 01));
    load(store, &g).await;
    for as_of in [
        date!(2022 - 01 - 01),
        date!(2023 - 03 - 01),
        date!(2023 - 09 - 01),
    ] {
        // The expectations on this day.
        let g_day = generate(3_000, as_of);
        let roster = Roster::load(store, g.candidates.clone()).await.unwrap();
        assert_eq!(roster.licensees.len(), 3_000);
        let report = roster.report(&mandate, as_of);
        let active: Vec<usize> = (0..3_000)
            .filter(|i| g_day.expected[*i].is_some())
            .collect();
        assert_eq!(report.lines.len(), active.len());
        assert_eq!(report.inactive, 3_000 - active.len());
        let mut seen = std::collections::BTreeMap::new();
        for (line, i) in report.lines.iter().zip(&active) {
            let (code, overdue) = g_day.expected[*i].unwrap();
            assert_eq!(
                line.status.code(),
                code,
                "{} on {as_of}: {:?}",
                line.licensee.licence.number,
                line.status
            );
            if let onboard::mandate::Status::NotYetCompliant { overdue: o, .. } = line.status {
                assert_eq!(o, overdue, "{}", line.licensee.licence.number);
            }
            *seen.entry((code, overdue)).or_insert(0) += 1;
        }
        let totals = &report.totals;
        assert_eq!(
            totals.compliant,
            seen.get(&("compliant", false)).copied().unwrap_or(0)
        );
        assert_eq!(
            totals.exempt,
            seen.get(&("exempt", false)).copied().unwrap_or(0)
        );
        assert_eq!(
            totals.overdue,
            seen.get(&("not-yet-compliant", true)).copied().unwrap_or(0)
        );
        assert_eq!(
            totals.pending,
            seen.get(&("not-yet-compliant", false))
                .copied()
                .unwrap_or(0)
        );
        assert_eq!(
            report.by_type.values().map(|c| c.total()).sum::<usize>(),
            active.len()
        );
        assert_eq!(report.by_county.len(), COUNTIES.len());
        if as_of == date!(2023 - 09 - 01) {
            assert!(totals.compliant > 0 && totals.overdue > 0 && totals.exempt > 0);
            // The CSV reads back line for line.
            let csv = onboard::compliance::to_csv(&report);
            let rows = onboard::csv::read(&csv).unwrap();
            assert_eq!(rows.len(), active.len() + 1);
            for (row, line) in rows[1..].iter().zip(&report.lines) {
                assert_eq!(row.cells[1], line.licensee.licence.number);
                assert_eq!(row.cells[6], line.status.code());
            }
        }
        if as_of == date!(2023 - 03 - 01) {
            assert!(
                totals.pending > 0,
                "before the providers' deadline some are pending"
            );
        }
    }
}

async fn lookup_needs_both_numbers(store: &Store) {
    let mandate = Mandate::connecticut();
    let g = generate(3_000, date!(2023 - 09 - 01));
    let as_of = date!(2023 - 09 - 01);
    // Licensee 7 (lcsw, applied on the EHR path on time).
    let l = &g.licensees[7];
    let right = Roster::lookup(
        store,
        g.candidates.clone(),
        &l.licence.licence_number.to_lowercase(),
        l.npi.as_deref().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(right.licensees.len(), 1);
    let e = explain(&right, 0, &mandate, as_of);
    assert!(e.status.starts_with("Compliant"), "{e:?}");
    assert!(
        e.done[0].contains("application to connect was received"),
        "{e:?}"
    );
    assert!(e.left.starts_with("Nothing"), "{e:?}");
    // Someone else's NPI with this licence number, or no NPI: nobody.
    let other = g.licensees[8].npi.clone().unwrap();
    for npi in [other.as_str(), ""] {
        let wrong = Roster::lookup(store, g.candidates.clone(), &l.licence.licence_number, npi)
            .await
            .unwrap();
        assert!(wrong.licensees.is_empty(), "{npi}");
    }
    // A licensee with nothing done past the deadline is told what is left.
    let nothing = &g.licensees[0];
    let r = Roster::lookup(
        store,
        g.candidates.clone(),
        &nothing.licence.licence_number,
        nothing.npi.as_deref().unwrap(),
    )
    .await
    .unwrap();
    let e = explain(&r, 0, &mandate, as_of);
    assert!(e.left.contains("has passed"), "{e:?}");
}

/// The facts come from connection applications stored by the onboarding store layer: the
/// received day, the path, and the secure-messaging test message step.
async fn applications_give_the_facts(store: &Store) {
    let mandate = Mandate::connecticut();
    let ms = |d: Date| d.with_hms(15, 0, 0).unwrap().assume_utc().unix_timestamp() * 1000;
    let licensee = |number: &str, name: &str, line: &str, serial: usize| StoredLicensee {
        licence: LicenceKey {
            licence_type: "lmft".into(),
            licence_number: number.into(),
            licence_state: "RI".into(),
        },
        import_id: String::new(),
        line: 2,
        name: name.into(),
        npi: Some(npi(serial)),
        status: "active".into(),
        address_line: line.into(),
        city: "Providence".into(),
        postcode: "02903".into(),
        county: "Providence".into(),
    };
    store
        .import_roster(
            RosterImport {
                import_id: "ri-1".into(),
                state: "RI".into(),
                source: "ri.csv".into(),
                sha256: "1".repeat(64),
                rows: 3,
                rejected: 0,
                imported: 5,
            },
            vec![
                licensee("RILMFT9", "Rhoda Island", "1 Benefit St", 900_001),
                licensee("RILMFT10", "Roger Williams", "7 Thayer Street", 900_002),
                licensee("RILMFT11", "Nobody Applied", "9 Hope St", 900_003),
            ],
        )
        .await
        .unwrap();
    let application = |id: &str,
                       name: &str,
                       npi_: String,
                       number: &str,
                       line: &str,
                       path: &str,
                       received: Date| {
        store::ApplicationData {
            application_id: id.into(),
            received: ms(received),
            kind: "solo-practitioner".into(),
            legal_name: name.into(),
            npi: npi_,
            licences: vec![store::LicenceRecord {
                licence_type: "lmft".into(),
                number: number.into(),
                state: "RI".into(),
            }],
            address_line: line.into(),
            city: "Providence".into(),
            state: "RI".into(),
            postcode: "02903".into(),
            ehr_kind: "none".into(),
            ehr_value: String::new(),
            signer_name: name.into(),
            signer_title: "Owner".into(),
            signer_email: "x@example.org".into(),
            contact_name: name.into(),
            contact_email: "x@example.org".into(),
            contact_phone: String::new(),
            path: path.into(),
            participant_id: None,
            user_id: None,
        }
    };
    store
        .add_application(
            application(
                "app-rhoda",
                "Rhoda Island",
                npi(900_001),
                "ri-lmft-9",
                "1 Benefit St",
                "secure-messaging",
                date!(2023 - 01 - 05),
            ),
            "applicant",
        )
        .await
        .unwrap();
    store
        .record_step(
            "app-rhoda",
            "secure-messaging",
            store::StepRecord {
                step: "test-message-exchanged".into(),
                by: "system".into(),
                at: ms(date!(2023 - 02 - 10)),
            },
        )
        .await
        .unwrap();
    // Roger applied under another licence number and NPI: found by name and address.
    store
        .add_application(
            application(
                "app-roger",
                "Williams, Roger",
                npi(900_009),
                "OTHER-1",
                "7 Thayer St",
                "ehr",
                date!(2023 - 04 - 01),
            ),
            "applicant",
        )
        .await
        .unwrap();
    let candidates: Vec<Candidate> = store
        .onboarding_facts()
        .await
        .unwrap()
        .iter()
        .map(exchange::compliance::application_candidate)
        .collect();
    let roster = Roster::load(store, candidates).await.unwrap();
    let report = roster.report(&mandate, date!(2023 - 06 - 01));
    let line = |number: &str| {
        report
            .lines
            .iter()
            .find(|l| l.licensee.licence.number == number)
            .unwrap()
    };
    let rhoda = line("RILMFT9");
    assert_eq!(
        rhoda.status,
        onboard::mandate::Status::Compliant {
            requirement: "providers-without-a-capable-ehr".into(),
            done_on: date!(2023 - 02 - 10),
            deadline: date!(2023 - 05 - 03),
            late: false,
        }
    );
    let roger = line("RILMFT10");
    assert!(matches!(
        roger.matched,
        onboard::roster::Matched::One { participant, by: onboard::roster::MatchedBy::NameAndAddress } if participant == "app-roger"
    ));
    assert_eq!(roger.status.code(), "compliant");
    assert_eq!(line("RILMFT11").status.code(), "not-yet-compliant");
    // Before the test message, Rhoda had applied but was not yet compliant.
    let earlier = roster.report(&mandate, date!(2023 - 02 - 01));
    let rhoda = earlier
        .lines
        .iter()
        .find(|l| l.licensee.licence.number == "RILMFT9")
        .unwrap();
    assert_eq!(rhoda.status.code(), "not-yet-compliant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_report_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    report_matches_the_rules(&store).await;
    lookup_needs_both_numbers(&store).await;
    applications_give_the_facts(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_report_and_lookup() {
    let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") else {
        eprintln!("skipped: NUTMEG_TEST_POSTGRES not set");
        return;
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "nutmeg_compliance_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{base}{sep}options=-c%20search_path%3D{name}"))
        .await
        .unwrap();
    report_matches_the_rules(&store).await;
    lookup_needs_both_numbers(&store).await;
    applications_give_the_facts(&store).await;
    drop(store);
    client
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .unwrap();
}

/// Issue 7's number: the report and its CSV for 100,000 licensees in at most 2 seconds, timed
/// over the whole path an operator's request takes (the store read, matching, evaluation, CSV).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn report_of_a_hundred_thousand_licensees() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let as_of = date!(2023 - 09 - 01);
    let g = generate(100_000, as_of);
    let t = std::time::Instant::now();
    load(&store, &g).await;
    println!(
        "import of 100,000 licensees: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mandate = Mandate::connecticut();
    for run in 1..=3 {
        let t = std::time::Instant::now();
        let roster = Roster::load(&store, g.candidates.clone()).await.unwrap();
        let read = t.elapsed();
        let report = roster.report(&mandate, as_of);
        let csv = onboard::compliance::to_csv(&report);
        let total = t.elapsed();
        println!(
            "run {run}: store read and matching {:.0} ms, report and CSV ({} KB) {:.0} ms, total {:.0} ms",
            read.as_secs_f64() * 1e3,
            csv.len() / 1024,
            (total - read).as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        assert_eq!(report.lines.len() + report.inactive, 100_000);
    }
}
