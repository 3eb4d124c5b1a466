//! The `direct_*` fuzz targets on the stable toolchain: every seed and regression through the targets'
//! bodies (`fuzz/harness/direct.rs`, shared with the targets), then a seeded randomized smoke run of
//! each. `cargo test -p direct --test fuzz_seeds`.

#[path = "../../../fuzz/harness/direct.rs"]
mod harness;
#[path = "../../../fuzz/harness/seeds.rs"]
mod seeds;

use seeds::{run_seeds, smoke};

const MIME_TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\r\n ",
    b"--",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n",
    b"Content-Type: message/disposition-notification\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"\r\n--b\r\n",
    b"\r\n--b--\r\n",
    b"=\r\n",
    b"=0",
    b"Disposition: automatic-action/MDN-sent-automatically;",
    b"processed/error",
    b"X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true",
    b"<a@b>",
];

const ZIP_TOKENS: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"IHE_XDM/",
    b"METADATA.XML",
    b"../",
    b"/",
    b"\xff\xff\xff\xff",
    b"\0\0\0\0",
];

const PEM_TOKENS: &[&[u8]] = &[
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"-----BEGIN PKCS7-----\n",
    b"-----END PKCS7-----\n",
    b"\x30\x82",
    b"\x30\x80",
];

#[test]
fn mime_seeds() {
    run_seeds("direct_mime", harness::mime_message);
}

#[test]
fn mdn_seeds() {
    run_seeds("direct_mdn", harness::mdn_report);
    // The committed MDN seeds are notifications the crate reads, so that mutants start deep in
    // the parser.
    for (path, bytes) in seeds::inputs("direct_mdn") {
        let parsed = direct::mdn::parse(&bytes);
        assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
    }
}

#[test]
fn xdm_seeds() {
    run_seeds("direct_xdm", harness::xdm_package);
    for (path, bytes) in seeds::inputs("direct_xdm") {
        let unpacked = direct::xdm::unpack(&bytes, direct::xdm::Limits::default());
        assert!(unpacked.is_ok(), "{}: {unpacked:?}", path.display());
    }
}

#[test]
fn trust_seeds() {
    run_seeds("direct_trust", harness::trust_bundle);
    for (path, bytes) in seeds::inputs("direct_trust") {
        assert!(
            direct::trust::read_bundle(&bytes).is_ok(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn mime_mutants_never_panic() {
    smoke("direct_mime", harness::mime_message, 1, 3000, MIME_TOKENS);
}

#[test]
fn mdn_mutants_never_panic() {
    smoke("direct_mdn", harness::mdn_report, 2, 3000, MIME_TOKENS);
}

#[test]
fn xdm_mutants_never_panic() {
    smoke("direct_xdm", harness::xdm_package, 3, 2000, ZIP_TOKENS);
}

#[test]
fn trust_mutants_never_panic() {
    smoke("direct_trust", harness::trust_bundle, 4, 2000, PEM_TOKENS);
}
