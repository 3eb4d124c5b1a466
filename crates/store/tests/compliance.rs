//! The EHR catalog's and the compliance roster's tables on both engines (migration 0011): products
//! added, imported (added or updated by key, in one transaction) and given a status; requests
//! tracked; roster imports stored whole or not at all, the current roster being each state's latest
//! import; licensees found by number; operators' match decisions and exemptions.
//!
//! PostgreSQL runs when `NUTMEG_TEST_POSTGRES` names a database (each test in a fresh schema);
//! otherwise those tests say they skipped and pass.

use std::sync::atomic::{AtomicUsize, Ordering};

use store::{
    EhrProduct, EhrRequest, LicenceKey, LicenseeExemption, MatchDecision, RosterImport, Store,
    StoreError, StoredLicensee,
};

struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((base, name)) = self.schema.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
    }
}

fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    Db {
        url: format!("sqlite://{}", dir.path().join("compliance.db").display()),
        _dir: Some(dir),
        schema: None,
    }
}

async fn postgres() -> Option<Db> {
    let Ok(base) = std::env::var("NUTMEG_TEST_POSTGRES") else {
        eprintln!("skipped: NUTMEG_TEST_POSTGRES not set");
        return None;
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "nutmeg_compliance_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        fastrand::u32(..)
    );
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(Db {
        url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
        _dir: None,
        schema: Some((base, name)),
    })
}

fn product(id: &str, key: &str, status: &str) -> EhrProduct {
    EhrProduct {
        product_id: id.into(),
        product_key: key.into(),
        vendor: key.split(' ').next().unwrap_or_default().into(),
        product: key.into(),
        version: None,
        onc_certification: Some(format!("15.04.04.{id}")),
        capabilities: vec!["fhir-r4".into(), "direct".into()],
        status: status.into(),
        created: 1,
        updated: 1,
    }
}

fn key(number: &str) -> LicenceKey {
    LicenceKey {
        licence_type: "lmft".into(),
        licence_number: number.into(),
        licence_state: "CT".into(),
    }
}

fn licensee(number: &str, line: i64, npi: Option<&str>) -> StoredLicensee {
    StoredLicensee {
        licence: key(number),
        import_id: String::new(),
        line,
        name: format!("Therapist {number}"),
        npi: npi.map(str::to_string),
        status: "active".into(),
        address_line: "1 Main St".into(),
        city: "Hartford".into(),
        postcode: "06103".into(),
        county: "Hartford".into(),
    }
}

fn import(id: &str, state: &str, at: i64) -> RosterImport {
    RosterImport {
        import_id: id.into(),
        state: state.into(),
        source: "roster.csv".into(),
        sha256: "00".repeat(32),
        rows: 3,
        rejected: 0,
        imported: at,
    }
}

async fn catalog(store: &Store) {
    store
        .add_ehr_product(product("a", "acme ehr", "connected"))
        .await
        .unwrap();
    let twice = store
        .add_ehr_product(product("b", "acme ehr", "compatible"))
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict { .. })),
        "{twice:?}"
    );
    let (added, updated) = store
        .import_ehr_products(vec![
            product("c", "zenith one", "not-yet-compatible"),
            product("d", "acme ehr", "compatible"),
        ])
        .await
        .unwrap();
    assert_eq!((added, updated), (1, 1));
    let all = store.ehr_products().await.unwrap();
    assert_eq!(all.len(), 2);
    let acme = all.iter().find(|p| p.product_key == "acme ehr").unwrap();
    assert_eq!(acme.product_id, "a", "an update keeps the id");
    assert_eq!(acme.status, "compatible");
    assert_eq!(acme.capabilities, vec!["fhir-r4", "direct"]);
    assert!(store
        .set_ehr_product_status("c", "compatible", 9)
        .await
        .unwrap());
    assert!(!store
        .set_ehr_product_status("nope", "compatible", 9)
        .await
        .unwrap());
    // A status the schema does not know is refused by the database, and nothing changes.
    assert!(store.set_ehr_product_status("c", "maybe", 9).await.is_err());
    // An import that fails part-way stores nothing.
    let failed = store
        .import_ehr_products(vec![
            product("e", "new one", "connected"),
            product("f", "new two", "bogus"),
        ])
        .await;
    assert!(failed.is_err());
    assert_eq!(store.ehr_products().await.unwrap().len(), 2);

    for (i, k) in ["zenith one", "zenith one", "acme ehr"].iter().enumerate() {
        store
            .add_ehr_request(EhrRequest {
                request_id: format!("r{i}"),
                kind: if i == 2 {
                    "review".into()
                } else {
                    "add".into()
                },
                request_key: k.to_string(),
                product_id: (i == 2).then(|| "a".to_string()),
                vendor: "v".into(),
                product: "p".into(),
                version: None,
                requester: "Jane".into(),
                contact: "jane@example.org".into(),
                note: String::new(),
                created: i as i64,
            })
            .await
            .unwrap();
    }
    let requests = store.ehr_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].product_id.as_deref(), Some("a"));
}

async fn roster(store: &Store) {
    assert!(store.licensees().await.unwrap().is_empty());
    store
        .import_roster(
            import("i1", "CT", 10),
            vec![
                licensee("A1", 2, Some("1234567893")),
                licensee("A2", 3, None),
                licensee("A3", 4, None),
            ],
        )
        .await
        .unwrap();
    let current = store.licensees().await.unwrap();
    assert_eq!(current.len(), 3);
    assert_eq!(current[0].import_id, "i1");
    assert_eq!(current[0].npi.as_deref(), Some("1234567893"));
    // Many rows go in several statements, in one transaction.
    let many: Vec<StoredLicensee> = (0..450)
        .map(|i| {
            let mut l = licensee(&format!("M{i}"), i + 2, None);
            l.licence.licence_state = "MA".into();
            l
        })
        .collect();
    store
        .import_roster(import("ma", "MA", 11), many)
        .await
        .unwrap();
    assert_eq!(store.licensees().await.unwrap().len(), 453);
    // A later import of CT replaces CT's roster; A3 is no longer listed, A2 is updated.
    let mut a2 = licensee("A2", 2, Some("1245319599"));
    a2.status = "expired".into();
    store
        .import_roster(
            import("i2", "CT", 20),
            vec![a2, licensee("A1", 3, Some("1234567893"))],
        )
        .await
        .unwrap();
    let ct: Vec<StoredLicensee> = store
        .licensees()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.licence.licence_state == "CT")
        .collect();
    assert_eq!(ct.len(), 2);
    assert!(ct.iter().all(|l| l.import_id == "i2"));
    assert_eq!(ct[0].status, "expired");
    // A failed import (its id taken) stores nothing.
    let again = store
        .import_roster(import("i2", "CT", 30), vec![licensee("A9", 2, None)])
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert!(store.licensees_by_number("A9").await.unwrap().is_empty());
    assert_eq!(store.roster_imports().await.unwrap().len(), 3);
    // By number: only the current roster.
    assert_eq!(store.licensees_by_number("A1").await.unwrap().len(), 1);
    assert!(store.licensees_by_number("A3").await.unwrap().is_empty());

    let decision = MatchDecision {
        licence: key("A1"),
        participant: Some("org-1".into()),
        decided_by: "admin".into(),
        reason: "same practice".into(),
        decided: 5,
    };
    assert!(store.decide_licensee_match(decision.clone()).await.unwrap());
    let mut changed = decision.clone();
    changed.participant = None;
    changed.decided = 6;
    assert!(store.decide_licensee_match(changed).await.unwrap());
    let decisions = store.licensee_match_decisions().await.unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].participant, None);
    let mut unknown = decision;
    unknown.licence = key("ZZ");
    assert!(!store.decide_licensee_match(unknown).await.unwrap());

    let exemption = LicenseeExemption {
        licence: key("A1"),
        exemption: "no-patient-records".into(),
        since: "2023-01-01".into(),
        reason: "teaches only".into(),
        recorded_by: "admin".into(),
        recorded: 7,
    };
    assert!(store
        .add_licensee_exemption(exemption.clone())
        .await
        .unwrap());
    let twice = store.add_licensee_exemption(exemption.clone()).await;
    assert!(
        matches!(twice, Err(StoreError::Conflict { .. })),
        "{twice:?}"
    );
    let mut nobody = exemption.clone();
    nobody.licence = key("ZZ");
    assert!(!store.add_licensee_exemption(nobody).await.unwrap());
    assert_eq!(store.licensee_exemptions().await.unwrap().len(), 1);
    assert!(store
        .remove_licensee_exemption(&key("A1"), "no-patient-records")
        .await
        .unwrap());
    assert!(!store
        .remove_licensee_exemption(&key("A1"), "no-patient-records")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_catalog_and_roster() {
    let db = sqlite();
    let store = Store::open(&db.url).await.expect("open");
    catalog(&store).await;
    roster(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_catalog_and_roster() {
    let Some(db) = postgres().await else { return };
    let store = Store::open(&db.url).await.expect("open");
    catalog(&store).await;
    roster(&store).await;
}
