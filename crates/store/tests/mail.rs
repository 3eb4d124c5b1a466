//! Direct secure messaging's tables on both engines: addresses, certificates, anchors, mailboxes,
//! and the outbound queue (claims under a lease, settling, disposition notifications, expiry of
//! unconfirmed messages, and disjoint claims by concurrent workers in separate pools).
//!
//! PostgreSQL runs when `NUTMEG_TEST_POSTGRES` names a database (each test in a fresh schema);
//! otherwise those tests say they skipped and pass.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use store::{
    AddressStatus, AnchorDirection, DeliveryStatus, DirectCertificate, MailKind, MailMessage,
    Outbound, OutboundKind, Settle, Store, StoreError, TrustAnchor,
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
        url: format!("sqlite://{}", dir.path().join("mail.db").display()),
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
        "nutmeg_mail_{}_{}_{}",
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

fn item(id: &str, recipient: &str, message_id: &str, due: i64) -> Outbound {
    Outbound {
        id: id.to_string(),
        kind: OutboundKind::Message,
        sender: "jane@direct.example.org".to_string(),
        recipient: recipient.to_string(),
        message_id: message_id.to_string(),
        subject: "Referral".to_string(),
        content: b"Content-Type: text/plain\r\n\r\nhello\r\n".to_vec(),
        status: DeliveryStatus::Queued,
        attempts: 0,
        next_attempt: due,
        last_error: None,
        created: due,
        updated: due,
    }
}

async fn addresses_certificates_anchors(store: &Store) {
    let a = store
        .add_direct_address(
            "Jane.Doe@Direct.Example.org",
            "practitioner",
            "p1",
            "Jane Doe",
            10,
        )
        .await
        .expect("add");
    assert_eq!(a.address, "jane.doe@direct.example.org");
    assert_eq!(a.domain, "direct.example.org");
    assert!(matches!(
        store
            .add_direct_address("jane.doe@direct.example.org", "practitioner", "p2", "X", 11)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store
        .add_direct_address("not-an-address", "practitioner", "p2", "X", 11)
        .await
        .is_err());
    store
        .add_direct_address(
            "clinic@direct.example.org",
            "organization",
            "o1",
            "Clinic",
            12,
        )
        .await
        .expect("add");
    let cert = DirectCertificate {
        issuer: "ca1".into(),
        serial: "0a".into(),
        subject: "jane.doe@direct.example.org".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----".into(),
        sealed_key: Some(vec![0, 1, 2, 255]),
        not_after: 1000,
        created: 10,
        revoked: None,
    };
    store
        .add_direct_certificate(cert.clone())
        .await
        .expect("cert");
    let outside = DirectCertificate {
        issuer: "ca2".into(),
        serial: "01".into(),
        subject: "other.example".into(),
        sealed_key: None,
        ..cert.clone()
    };
    store
        .add_direct_certificate(outside.clone())
        .await
        .expect("cert");
    assert_eq!(
        store
            .direct_certificates("JANE.DOE@direct.example.org")
            .await
            .unwrap(),
        vec![cert.clone()]
    );
    assert_eq!(
        store.direct_certificates("other.example").await.unwrap(),
        vec![outside]
    );

    assert!(store
        .revoke_direct_address("jane.doe@direct.example.org", 20)
        .await
        .unwrap());
    assert!(!store
        .revoke_direct_address("jane.doe@direct.example.org", 21)
        .await
        .unwrap());
    assert!(!store
        .revoke_direct_address("nobody@direct.example.org", 21)
        .await
        .unwrap());
    let jane = store
        .direct_address("jane.doe@direct.example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (jane.status, jane.revoked),
        (AddressStatus::Revoked, Some(20))
    );
    assert!(store
        .direct_certificates("jane.doe@direct.example.org")
        .await
        .unwrap()
        .is_empty());
    let revoked = store.revoked_direct_certificates("ca1").await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].revoked, Some(20));
    let all = store.direct_addresses().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(store
        .direct_address("nobody@x.org")
        .await
        .unwrap()
        .is_none());

    let anchor = TrustAnchor {
        domain: "direct.example.org".into(),
        direction: AnchorDirection::Inbound,
        fingerprint: "AB12".into(),
        cert_pem: "pem".into(),
        added: 5,
    };
    assert!(store.add_trust_anchor(anchor.clone()).await.unwrap());
    assert!(!store.add_trust_anchor(anchor.clone()).await.unwrap());
    let got = store
        .trust_anchors("direct.example.org", AnchorDirection::Inbound)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fingerprint, "ab12");
    assert!(store
        .trust_anchors("direct.example.org", AnchorDirection::Outbound)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .remove_trust_anchor("direct.example.org", AnchorDirection::Inbound, "ab12")
        .await
        .unwrap());
    assert!(store
        .trust_anchors("direct.example.org", AnchorDirection::Inbound)
        .await
        .unwrap()
        .is_empty());
}

async fn mailboxes(store: &Store) {
    let raw: Vec<u8> = (0..=255u8).collect();
    for (i, id) in ["m1", "m2"].iter().enumerate() {
        store
            .deliver_mail(MailMessage {
                id: id.to_string(),
                mailbox: "Jane@direct.example.org".into(),
                kind: MailKind::Message,
                sender: "bob@other.example".into(),
                recipients: vec![
                    "jane@direct.example.org".into(),
                    "x@direct.example.org".into(),
                ],
                subject: "Hi".into(),
                message_id: format!("<{id}@other.example>"),
                raw: raw.clone(),
                received: 100 + i as i64,
                read: None,
            })
            .await
            .expect("deliver");
    }
    let list = store.mailbox("jane@direct.example.org", 10).await.unwrap();
    assert_eq!(
        list.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2", "m1"]
    );
    assert_eq!(list[0].raw, raw);
    assert_eq!(list[0].recipients.len(), 2);
    assert_eq!(
        store
            .mailbox("jane@direct.example.org", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.mark_mail_read("m1", 200).await.unwrap());
    assert!(!store.mark_mail_read("m1", 300).await.unwrap());
    assert_eq!(
        store.mail_message("m1").await.unwrap().unwrap().read,
        Some(200)
    );
    assert!(store.mail_message("nope").await.unwrap().is_none());

    // A message and the notifications answering it land together or not at all.
    let received = |id: &str| MailMessage {
        id: id.to_string(),
        mailbox: "jane@direct.example.org".into(),
        kind: MailKind::Message,
        sender: "bob@other.example".into(),
        recipients: vec!["jane@direct.example.org".into()],
        subject: "Hi".into(),
        message_id: format!("<{id}@other.example>"),
        raw: b"hello".to_vec(),
        received: 150,
        read: None,
    };
    // (a notification from another address, never due, so the queue below does not see it)
    let notification = || Outbound {
        kind: OutboundKind::Mdn,
        sender: "x@direct.example.org".into(),
        next_attempt: i64::MAX / 4,
        ..item("n1", "bob@other.example", "<m3@other.example>", 150)
    };
    let clash = store
        .deliver_mail_and_queue(vec![received("m3")], vec![notification(), notification()])
        .await;
    assert!(clash.is_err(), "{clash:?}");
    assert!(store.mail_message("m3").await.unwrap().is_none());
    assert!(store.outbound("n1").await.unwrap().is_none());
    store
        .deliver_mail_and_queue(vec![received("m3")], vec![notification()])
        .await
        .expect("delivered and queued");
    assert!(store.mail_message("m3").await.unwrap().is_some());
    assert!(store.outbound("n1").await.unwrap().is_some());
}

async fn queue(store: &Store) {
    store
        .enqueue_outbound(vec![
            item("o1", "Bob@other.example", "<a@x>", 1000),
            item("o2", "carol@other.example", "<a@x>", 1000),
            item("o3", "dave@other.example", "<b@x>", 5000),
        ])
        .await
        .expect("enqueue");
    // Only what is due.
    let claimed = store.claim_outbound("w1", 2000, 62_000, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["o1", "o2"]
    );
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].recipient, "bob@other.example");
    // Leased rows are not claimed again until the lease runs out.
    assert!(store
        .claim_outbound("w2", 3000, 63_000, 10)
        .await
        .unwrap()
        .is_empty());
    // w1 sends o1; o2 to retry later.
    assert!(store
        .settle_outbound("o1", "w1", 3000, Settle::Sent)
        .await
        .unwrap());
    assert!(store
        .settle_outbound(
            "o2",
            "w1",
            3000,
            Settle::Retry {
                at: 10_000,
                error: "451 busy".into()
            }
        )
        .await
        .unwrap());
    // Not w2's to settle, and not twice.
    assert!(!store
        .settle_outbound("o1", "w2", 3000, Settle::Sent)
        .await
        .unwrap());
    let o2 = store.outbound("o2").await.unwrap().unwrap();
    assert_eq!(
        (o2.status, o2.next_attempt),
        (DeliveryStatus::Queued, 10_000)
    );
    assert_eq!(o2.last_error.as_deref(), Some("451 busy"));
    // At 6000 only o3 is due.
    let claimed = store.claim_outbound("w2", 6000, 7000, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["o3"]
    );
    // w2 dies; after its lease (7000) w3 takes o3 again, and w2's late settle changes nothing.
    let claimed = store.claim_outbound("w3", 7000, 70_000, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|o| (o.id.as_str(), o.attempts))
            .collect::<Vec<_>>(),
        [("o3", 2)]
    );
    assert!(!store
        .settle_outbound("o3", "w2", 7100, Settle::Sent)
        .await
        .unwrap());
    assert!(store
        .settle_outbound(
            "o3",
            "w3",
            7100,
            Settle::Failed {
                error: "550 no such user".into()
            }
        )
        .await
        .unwrap());
    assert_eq!(
        store.outbound("o3").await.unwrap().unwrap().status,
        DeliveryStatus::Failed
    );

    // Jane has received mail (above) but nothing she sent is confirmed yet.
    assert!(!store
        .direct_exchanged("jane@direct.example.org")
        .await
        .unwrap());
    // Disposition notifications move o1 forward, never back.
    let moved = store
        .outbound_disposition(
            "<a@x>",
            "BOB@other.example",
            DeliveryStatus::Processed,
            None,
            8000,
        )
        .await
        .unwrap();
    assert_eq!(moved.map(|o| o.status), Some(DeliveryStatus::Processed));
    // Now she has exchanged a message each way; Bob's address is not one of ours that received.
    assert!(store
        .direct_exchanged("Jane@direct.example.org")
        .await
        .unwrap());
    assert!(!store.direct_exchanged("bob@other.example").await.unwrap());
    assert!(store
        .outbound_disposition(
            "<a@x>",
            "bob@other.example",
            DeliveryStatus::Processed,
            None,
            8001
        )
        .await
        .unwrap()
        .is_none());
    assert!(store
        .outbound_disposition(
            "<a@x>",
            "bob@other.example",
            DeliveryStatus::Dispatched,
            None,
            8002
        )
        .await
        .unwrap()
        .is_some());
    assert!(store
        .outbound_disposition(
            "<a@x>",
            "bob@other.example",
            DeliveryStatus::Failed,
            Some("x"),
            8003
        )
        .await
        .unwrap()
        .is_none());
    let rows = store.outbound_by_message("<a@x>").await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|o| (o.recipient.as_str(), o.status))
            .collect::<Vec<_>>(),
        [
            ("bob@other.example", DeliveryStatus::Dispatched),
            ("carol@other.example", DeliveryStatus::Queued)
        ]
    );

    // o2 is sent at 11000 and never confirmed: expired once, at the deadline.
    let claimed = store
        .claim_outbound("w1", 11_000, 20_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store
        .settle_outbound("o2", "w1", 11_000, Settle::Sent)
        .await
        .unwrap());
    assert!(store
        .expire_unconfirmed_outbound(10_999, 50_000, 10)
        .await
        .unwrap()
        .is_empty());
    let expired = store
        .expire_unconfirmed_outbound(11_000, 50_000, 10)
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["o2"]
    );
    assert_eq!(expired[0].status, DeliveryStatus::Failed);
    assert!(store
        .expire_unconfirmed_outbound(11_000, 50_001, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Two stores on one database (two processes' pools) claim concurrently: every row exactly once.
async fn concurrent_claims(url: &str) {
    let a = Store::open(url).await.expect("open");
    let b = Store::open(url).await.expect("open");
    let items: Vec<Outbound> = (0..200)
        .map(|i| {
            item(
                &format!("c{i:03}"),
                "x@other.example",
                &format!("<c{i}@x>"),
                1,
            )
        })
        .collect();
    a.enqueue_outbound(items).await.expect("enqueue");
    let worker = |store: Store, name: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_outbound(name, 10, 1_000_000, 7)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    break;
                }
                for o in got {
                    assert!(store
                        .settle_outbound(&o.id, name, 11, Settle::Sent)
                        .await
                        .unwrap());
                    mine.push(o.id);
                }
            }
            mine
        })
    };
    let handles = vec![
        worker(a.clone(), "a1"),
        worker(a.clone(), "a2"),
        worker(b.clone(), "b1"),
        worker(b.clone(), "b2"),
    ];
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("worker"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every row claimed once");
    assert_eq!(unique.len(), 200);
}

/// The web inbox's reads: who is bound to which address, mailbox and sent pages.
async fn inbox(store: &Store) {
    store
        .add_direct_address(
            "inbox@direct.example.org",
            "practitioner",
            "p9",
            "In Box",
            1,
        )
        .await
        .unwrap();
    store
        .add_user(store::NewUser {
            user_id: "u-inbox".into(),
            login: "inbox".into(),
            display_name: "In Box".into(),
            role: "clinician".into(),
            participant_id: None,
            patient_id: None,
            practitioner_id: None,
            password_hash: "x".into(),
            totp_secret: None,
            created: 1,
        })
        .await
        .unwrap();
    assert!(store
        .bind_direct_address("Inbox@direct.example.org", "u-inbox", 5)
        .await
        .unwrap());
    assert!(!store
        .bind_direct_address("inbox@direct.example.org", "u-inbox", 6)
        .await
        .unwrap());
    assert!(matches!(
        store
            .bind_direct_address("nobody@direct.example.org", "u-inbox", 6)
            .await,
        Err(StoreError::Unsupported(_))
    ));
    assert!(matches!(
        store
            .bind_direct_address("inbox@direct.example.org", "u-none", 6)
            .await,
        Err(StoreError::Unsupported(_))
    ));
    let bound = store.user_direct_addresses("u-inbox").await.unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].address, "inbox@direct.example.org");
    assert!(store
        .user_direct_addresses("u-none")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .direct_address_users("inbox@direct.example.org")
            .await
            .unwrap(),
        ["u-inbox"]
    );

    for i in 0..5i64 {
        store
            .deliver_mail(MailMessage {
                id: format!("i{i}"),
                mailbox: "inbox@direct.example.org".into(),
                kind: MailKind::Message,
                sender: "bob@other.example".into(),
                recipients: vec!["inbox@direct.example.org".into()],
                subject: format!("n{i}"),
                message_id: format!("<i{i}@other.example>"),
                raw: b"big".to_vec(),
                // Two share a time: the id breaks the tie.
                received: 1000 + i.min(3),
                read: None,
            })
            .await
            .unwrap();
    }
    store.mark_mail_read("i0", 2000).await.unwrap();
    assert_eq!(
        store.unread_mail("inbox@direct.example.org").await.unwrap(),
        4
    );
    let first = store
        .mailbox_page("inbox@direct.example.org", None, 2)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["i4", "i3"]
    );
    assert!(first[0].raw.is_empty(), "a page leaves the bytes out");
    let last = &first[1];
    let second = store
        .mailbox_page(
            "inbox@direct.example.org",
            Some((last.received, last.id.clone())),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["i2", "i1", "i0"]
    );
    assert_eq!(second[2].read, Some(2000));
    assert!(store
        .mailbox_page("other@direct.example.org", None, 10)
        .await
        .unwrap()
        .is_empty());

    let mut rows = Vec::new();
    for (n, recipients) in [(1, 2), (2, 1), (3, 3)] {
        for r in 0..recipients {
            let mut row = item(
                &format!("s{n}-{r}"),
                &format!("r{r}@other.example"),
                &format!("<s{n}@x>"),
                n,
            );
            row.sender = "inbox@direct.example.org".into();
            row.created = 100 * n;
            rows.push(row);
        }
    }
    let mut mdn = item("s-mdn", "bob@other.example", "<mdn@x>", 1);
    mdn.kind = OutboundKind::Mdn;
    mdn.sender = "inbox@direct.example.org".into();
    mdn.created = 900;
    rows.push(mdn);
    store.enqueue_outbound(rows).await.unwrap();
    let page = store
        .sent_page("inbox@direct.example.org", None, 2)
        .await
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        ["s3-0", "s3-1", "s3-2", "s2-0"],
        "notifications are not listed"
    );
    assert!(page[0].content.is_empty());
    let older = store
        .sent_page(
            "inbox@direct.example.org",
            Some((page[3].created, page[3].message_id.clone())),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["s1-0", "s1-1"]
    );
    assert!(store
        .unbind_direct_address("inbox@direct.example.org", "u-inbox")
        .await
        .unwrap());
    assert!(!store
        .unbind_direct_address("inbox@direct.example.org", "u-inbox")
        .await
        .unwrap());
    assert!(store
        .user_direct_addresses("u-inbox")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mail() {
    let db = sqlite();
    let store = Store::open(&db.url).await.expect("open");
    addresses_certificates_anchors(&store).await;
    mailboxes(&store).await;
    queue(&store).await;
    inbox(&store).await;
}

/// Message bytes written before migration 0013 (base64 text, in the row or moved by the
/// migration into the content table) read back as the bytes they were, beside new ones (BLOBs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_message_bytes_written_as_base64_before_migration_13() {
    use base64::Engine as _;
    let db = sqlite();
    let store = Store::open(&db.url).await.expect("open");
    let raw: Vec<u8> = (0..=255u8).collect();
    store
        .enqueue_outbound(vec![item("new", "bob@other.example", "<new@x>", 1)])
        .await
        .unwrap();
    let path = db.url.trim_start_matches("sqlite://").to_string();
    let old = base64::engine::general_purpose::STANDARD.encode(&raw);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO direct_messages (id, mailbox, kind, sender, recipients, subject, message_id, \
         raw, received) VALUES ('old', 'jane@direct.example.org', 'message', 'bob@other.example', \
         'jane@direct.example.org', 'Hi', '<old@x>', ?1, 1)",
        [&old],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO direct_outbound (id, kind, sender, recipient, message_id, subject, content, \
         status, attempts, next_attempt, created, updated) VALUES ('was', 'message', \
         'jane@direct.example.org', 'bob@other.example', '<was@x>', 'Hi', '', 'queued', 0, 1, 1, 1)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO direct_outbound_content (id, content) VALUES ('was', ?1)",
        [&old],
    )
    .unwrap();
    let blob: String = conn
        .query_row(
            "SELECT typeof(content) FROM direct_outbound_content WHERE id = 'new'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(blob, "blob", "new bytes are stored as bytes");
    drop(conn);
    assert_eq!(store.mail_message("old").await.unwrap().unwrap().raw, raw);
    assert_eq!(store.outbound("was").await.unwrap().unwrap().content, raw);
    assert_eq!(
        store.outbound("new").await.unwrap().unwrap().content,
        item("new", "bob@other.example", "<new@x>", 1).content
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queue_survives_reopening_and_concurrent_claims() {
    let db = sqlite();
    {
        let store = Store::open(&db.url).await.expect("open");
        store
            .enqueue_outbound(vec![item("r1", "x@other.example", "<r@x>", 1)])
            .await
            .unwrap();
    }
    let store = Store::open(&db.url).await.expect("reopen");
    assert_eq!(store.claim_outbound("w", 5, 10, 5).await.unwrap().len(), 1);
    drop(store);
    let db = sqlite();
    concurrent_claims(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mail() {
    let Some(db) = postgres().await else { return };
    let store = Store::open(&db.url).await.expect("open");
    addresses_certificates_anchors(&store).await;
    mailboxes(&store).await;
    queue(&store).await;
    inbox(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claims_are_disjoint() {
    let Some(db) = postgres().await else { return };
    concurrent_claims(&db.url).await;
}
