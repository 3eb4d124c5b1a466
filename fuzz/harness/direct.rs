//! The bodies of the `direct` crate's fuzz targets, in one file that both the targets
//! (`fuzz/fuzz_targets/direct_*.rs`) and the stable-toolchain test `crates/direct/tests/fuzz_seeds.rs`
//! include with `#[path]`, so that the seeds run through exactly what the fuzzer runs.
//! Each body must not panic, whatever bytes it is given; the asserts are invariants the crate promises.
#![allow(dead_code)]

use direct::mime::{self, Entity};
use direct::xdm::{self, Limits};
use direct::{mdn, trust};

/// How deep [`mime_message`] follows multiparts and attached messages: deeper than any real
/// Direct message (signed inside encrypted inside a message with an attached message).
const MAX_DEPTH: usize = 12;

/// A whole message as a receiving HISP reads it: the headers it routes and answers by, then every
/// part, decoded, with attached messages and XDM packages opened.
pub fn mime_message(data: &[u8]) {
    if let Ok(message) = Entity::parse(data) {
        let _ = mdn::is_notification(&message);
        let _ = mdn::wants_final_delivery(&message);
        for name in ["From", "To", "Cc", "Disposition-Notification-To"] {
            if let Some(value) = message.header(name) {
                let _ = mime::address_of(value);
            }
        }
        walk(&message, 0);
    }
}

fn walk(entity: &Entity<'_>, depth: usize) {
    assert!(entity.body().len() <= entity.raw().len());
    for h in entity.headers() {
        let _ = mime::is_safe_header_value(&h.value);
    }
    let ct = entity.content_type();
    let _ = ct.param("boundary");
    if depth >= MAX_DEPTH {
        return;
    }
    if ct.mime_type.starts_with("multipart/") {
        // What a signature covers: the first part's exact bytes, canonicalized.
        if let Ok(parts) = entity.parts() {
            for part in &parts {
                let _ = mime::canonicalize(part.raw());
                walk(part, depth + 1);
            }
        }
        return;
    }
    let Ok(body) = entity.decoded_body() else {
        return;
    };
    if ct.is("message/rfc822") {
        if let Ok(inner) = Entity::parse(&body) {
            walk(&inner, depth + 1);
        }
    } else if xdm::is_xdm(&body) {
        xdm_package_with(&body, SMALL);
    }
}

/// Limits small enough that the fuzzer reaches them.
const SMALL: Limits = Limits {
    max_entries: 8,
    max_total_bytes: 16 * 1024,
};

/// A disposition notification read back.
pub fn mdn_report(data: &[u8]) {
    if let Ok(report) = mdn::parse(data) {
        let _ = mdn::subject(&report.disposition, "Re: something");
    }
}

/// An XDM package unpacked within the crate's default limits and within small ones; what comes out
/// never exceeds them.
pub fn xdm_package(data: &[u8]) {
    let _ = xdm::is_xdm(data);
    xdm_package_with(data, Limits::default());
    xdm_package_with(data, SMALL);
}

fn xdm_package_with(data: &[u8], limits: Limits) {
    let Ok(package) = xdm::unpack(data, limits) else {
        return;
    };
    let mut total = package.index_htm.as_ref().map_or(0, Vec::len)
        + package.readme.as_ref().map_or(0, Vec::len);
    let mut files = 0;
    for set in &package.submission_sets {
        assert!(
            !set.name.is_empty() && !set.name.contains(".."),
            "{:?}",
            set.name
        );
        total += set.metadata.len();
        files += 1 + set.documents.len();
        for doc in &set.documents {
            assert!(!doc.name.contains(".."), "{:?}", doc.name);
            assert_eq!(doc.media_type, xdm::media_type_of(&doc.name));
            total += doc.content.len();
        }
    }
    assert!(
        files <= limits.max_entries,
        "{files} files, limit {}",
        limits.max_entries
    );
    assert!(
        total as u64 <= limits.max_total_bytes,
        "{total} bytes, limit {}",
        limits.max_total_bytes
    );
}

/// A trust bundle (PEM certificates, PEM or DER PKCS#7, one DER certificate) imported as anchors,
/// and what the validator reads from each certificate.
pub fn trust_bundle(data: &[u8]) {
    let mut anchors = trust::Anchors::new();
    if let Ok(n) = anchors.add_bundle(data) {
        assert!(n > 0);
        for cert in anchors.certificates() {
            let _ = trust::subject_cn(cert);
            let _ = trust::bindings(cert);
            let _ = trust::is_bound_to(cert, "someone@direct.example.org");
        }
    }
}
