//! Delivery notifications: built, sealed, read back (here and by `openssl cms`), and the
//! reference implementation's notifications read.

mod common;

use common::*;
use direct::ca::KeySpec;
use direct::mdn::{self, Disposition, MdnError, Notification};
use direct::mime::Entity;
use direct::smime::{self, Outgoing, SealOptions, Signer};
use direct::trust::{Anchors, Validator};

fn notification(disposition: Disposition) -> Notification<'static> {
    Notification {
        disposition,
        original_message_id: "<1234.synthetic@direct.example.org>",
        final_recipient: "bob@direct.example.org",
        reporting_domain: "direct.example.org",
        final_destination_delivery: true,
        failure: None,
    }
}

#[test]
fn notifications_read_back_as_built() {
    for disposition in [
        Disposition::Processed,
        Disposition::Dispatched,
        Disposition::Failed,
    ] {
        let mut n = notification(disposition.clone());
        if disposition == Disposition::Failed {
            n.failure = Some("the recipient's certificate is revoked");
        }
        let entity = mdn::build(&n).expect("build");
        let parsed = Entity::parse(&entity).expect("entity");
        assert!(mdn::is_notification(&parsed));
        let report = mdn::parse(&entity).expect("parse");
        assert_eq!(report.disposition, disposition);
        assert_eq!(
            report.action_mode,
            "automatic-action/mdn-sent-automatically"
        );
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<1234.synthetic@direct.example.org>")
        );
        assert_eq!(report.final_recipient, "bob@direct.example.org");
        assert_eq!(
            report.reporting_ua.as_deref(),
            Some("direct.example.org; nutmeg")
        );
        assert_eq!(
            report.final_destination_delivery,
            disposition == Disposition::Dispatched
        );
        assert_eq!(report.failure.is_some(), disposition == Disposition::Failed);
    }
    assert_eq!(
        mdn::subject(&Disposition::Processed, "Referral\r\nBcc: x"),
        "Processed: ReferralBcc: x"
    );
    let mut bad = notification(Disposition::Processed);
    bad.original_message_id = "<a>\r\nBcc: eve@example.com";
    assert_eq!(
        mdn::build(&bad),
        Err(MdnError::BadValue("Original-Message-ID"))
    );
}

#[test]
fn a_sealed_notification_opens_here_and_with_the_command_line() {
    let authority = authority(DOMAIN);
    let bob = party(&authority, "bob@direct.example.org", KeySpec::Rsa(2048));
    let jane = party(&authority, "jane@direct.example.org", KeySpec::Rsa(2048));
    let entity = mdn::build(&notification(Disposition::Processed)).expect("build");
    let subject = mdn::subject(&Disposition::Processed, "Referral");
    let to = vec![jane.address.clone()];
    let sealed = smime::seal(
        &Outgoing {
            from: &bob.address,
            to: &to,
            subject: &subject,
            message_id: "<mdn.1@direct.example.org>",
            date: "Sun, 29 Nov 2026 04:00:00 +0000",
            extra_headers: &[],
            content: &entity,
        },
        &Signer {
            cert: &bob.cert,
            key: &bob.key,
            chain: &[],
        },
        std::slice::from_ref(&jane.cert),
        SealOptions::default(),
    )
    .expect("seal");
    assert!(!String::from_utf8_lossy(&sealed).contains("Disposition-Notification-To"));

    let mut anchors = Anchors::new();
    anchors.add(authority.certificate().clone());
    let crls = vec![crl(&authority, &[])];
    let v = Validator::new(&anchors, &crls, now());
    let opened = smime::open(&sealed, &[jane.recipient_key()], &v).expect("open");
    let inner = Entity::parse(&opened.message).expect("message");
    assert!(mdn::is_notification(&inner));
    let report = mdn::parse(&opened.message).expect("report");
    assert_eq!(report.disposition, Disposition::Processed);

    let dir = Dir::new();
    let path = dir.write("mdn.eml", &sealed);
    let decrypted = cli(
        &["cms", "-decrypt", "-recip"],
        &[
            dir.cert("jane.pem", &jane.cert),
            "-inkey".into(),
            dir.key("jane.key", &jane.key),
            "-in".into(),
            path,
        ],
        b"",
    );
    assert!(decrypted.ok, "{}", decrypted.stderr);
    let signed = dir.write("signed.eml", &decrypted.stdout);
    let verified = cli(
        &["cms", "-verify", "-CAfile"],
        &[
            dir.cert("root.pem", authority.certificate()),
            "-in".into(),
            signed,
        ],
        b"",
    );
    assert!(verified.ok, "{}", verified.stderr);
    assert!(String::from_utf8_lossy(&verified.stdout)
        .contains("Disposition: automatic-action/MDN-sent-automatically;processed"));
}

#[test]
fn the_reference_implementations_notifications_read() {
    let Some(shared) = shared_direct() else {
        return;
    };
    let dir = shared.join("ri-agent/org/nhindirect/stagent");
    for (file, recipient) in [
        ("MDNMessage.txt", "externUser1@starugh-stateline.com"),
        (
            "MDNMessageNonCanonicalized.txt",
            "llindsey@messaging.cernerdemos.com",
        ),
    ] {
        let raw = std::fs::read(dir.join(file)).expect(file);
        let report = mdn::parse(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(report.disposition, Disposition::Processed, "{file}");
        assert_eq!(report.final_recipient, recipient, "{file}");
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<9501051053.aa04167@IETF.CNR I.Reston.VA.US>"),
            "{file}"
        );
        assert!(mdn::is_notification(&Entity::parse(&raw).expect("entity")));
    }
    // Fields without the blank line before them read as the part's headers; this one has no
    // Final-Recipient, which RFC 3798 requires.
    let raw = std::fs::read(dir.join("MDNResponse.txt")).expect("MDNResponse");
    let err = mdn::parse(&raw).expect_err("no Final-Recipient in this one");
    assert_eq!(err, MdnError::Missing("Final-Recipient"));
    let dsn = std::fs::read(dir.join("DSNMessage.txt")).expect("DSN");
    let dsn_entity = Entity::parse(&dsn).expect("entity");
    assert!(
        mdn::is_notification(&dsn_entity),
        "a DSN is never answered either"
    );
    assert_eq!(mdn::parse(&dsn), Err(MdnError::NotNotification));
    let plain = std::fs::read(dir.join("MessageWithAttachment.txt")).expect("plain");
    assert!(!mdn::is_notification(
        &Entity::parse(&plain).expect("entity")
    ));
}

#[test]
fn final_destination_delivery_requests() {
    for (headers, expected) in [
        ("Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n", true),
        ("disposition-notification-options: x-direct-final-destination-delivery = optional, TRUE\r\n", true),
        ("Disposition-Notification-Options: signed-receipt-protocol=optional,pkcs7-signature; X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n", true),
        ("Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,false\r\n", false),
        ("Disposition-Notification-To: jane@direct.example.org\r\n", false),
        ("", false),
    ] {
        let raw = format!("From: jane@direct.example.org\r\n{headers}\r\nbody");
        let entity = Entity::parse(raw.as_bytes()).expect("entity");
        assert_eq!(mdn::wants_final_delivery(&entity), expected, "{headers:?}");
    }
}

#[test]
fn broken_notifications_are_typed_errors() {
    let cases: &[(&str, MdnError)] = &[
        ("Content-Type: text/plain\r\n\r\nhi", MdnError::NotNotification),
        (
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n",
            MdnError::Missing("message/disposition-notification"),
        ),
        (
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\nContent-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822;a@b.org\r\n--b--\r\n",
            MdnError::Missing("Disposition"),
        ),
        (
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\nContent-Type: message/disposition-notification\r\n\r\nDisposition: processed\r\nFinal-Recipient: a@b.org\r\n--b--\r\n",
            MdnError::BadDisposition,
        ),
    ];
    for (raw, expected) in cases {
        assert_eq!(
            mdn::parse(raw.as_bytes()).as_ref().err(),
            Some(expected),
            "{raw:?}"
        );
    }
}

#[test]
fn fields_written_as_the_parts_headers_read() {
    let raw = "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b\r\nContent-Type: message/disposition-notification\r\nDisposition: automatic-action/MDN-sent-automatically;dispatched\r\nFinal-Recipient: rfc822; bob@direct.example.org\r\nOriginal-Message-ID: <1@x.org>\r\nX-DIRECT-FINAL-DESTINATION-DELIVERY:\r\n--b--\r\n";
    let report = mdn::parse(raw.as_bytes()).expect("report");
    assert_eq!(report.disposition, Disposition::Dispatched);
    assert_eq!(report.final_recipient, "bob@direct.example.org");
    assert!(report.final_destination_delivery);
}
