//! IHE XDM packages: the ETT's and the reference implementation's unpack; ours unpack and read
//! with Python's zipfile as the independent peer.

mod common;

use common::*;
use direct::xdm::{self, Limits, XdmError};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A file of `../shared/data/direct`, or `None` (the test skips) where that is not there.
fn read(rel: &str) -> Option<Vec<u8>> {
    let dir = shared_direct()?;
    Some(std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

#[test]
fn every_shared_package_unpacks() {
    // (file, the document in SUBSET01)
    let cases = [
        ("ett/BadXHTML.zip", "TOC_A.XML"),
        ("ett/C32_Sample1_in_XDM.zip", "C32_1.XML"),
        ("ett/C32_Sample2_in_XDM.zip", "C32_2.XML"),
        ("ett/CCDA_Ambulatory_in_XDM.zip", "CCDAAMB.XML"),
        ("ett/CCDA_Ambulatory_in_XDM_old.zip", "CCDAAMB.XML"),
        ("ett/CCDA_Inpatient_in_XDM.zip", "CCDA_IN.XML"),
        ("ett/CCR_Sample1_in_XDM.zip", "CCR_1.XML"),
        ("ett/CCR_Sample2_in_XDM.zip", "CCR_2.XML"),
        ("ett/ToC_Ambulatory.zip", "TOC_A.XML"),
        ("ett/ToC_XDM_Full_Metadata.zip", "TOC.XML"),
        ("ett/ToC_XDM_Limited_Metadata.zip", "TOC.XML"),
        ("ett/XDM_FULL.ZIP", "CCDAAMB.XML"),
        ("ett/XDM_LIM.ZIP", "CCDAAMB.XML"),
    ];
    for (file, document) in cases {
        let Some(bytes) = read(file) else {
            return;
        };
        assert!(xdm::is_xdm(&bytes), "{file}");
        let package =
            xdm::unpack(&bytes, Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(package.submission_sets.len(), 1, "{file}");
        let set = &package.submission_sets[0];
        assert_eq!(set.name, "SUBSET01");
        assert!(contains(&set.metadata, b"SubmitObjectsRequest"), "{file}");
        let names: Vec<&str> = set.documents.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [document],
            "{file}: .DS_Store skipped, METADATA.XML apart"
        );
        let doc = &set.documents[0];
        assert_eq!(doc.media_type, "text/xml");
        assert!(
            contains(&doc.content, b"ClinicalDocument")
                || contains(&doc.content, b"ContinuityOfCareRecord"),
            "{file}: not a clinical document"
        );
        assert!(
            package.index_htm.is_some() && package.readme.is_some(),
            "{file}"
        );
    }
    // The reference implementation's: under a top folder, lower-case names, a stylesheet beside.
    let Some(sample) = read("ri-xd/samplexdm.zip") else {
        return;
    };
    let package = xdm::unpack(&sample, Limits::default()).expect("samplexdm");
    let set = &package.submission_sets[0];
    let mut names: Vec<(&str, &str)> = set
        .documents
        .iter()
        .map(|d| (d.name.as_str(), d.media_type))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [("CCD.xsl", "text/xsl"), ("Document01.xml", "text/xml")]
    );
    assert!(!set.metadata.is_empty());
    assert!(package.index_htm.is_some() && package.readme.is_some());
}

#[test]
fn what_is_not_an_xdm_package_is_refused() {
    assert!(matches!(
        xdm::unpack(b"not a zip", Limits::default()),
        Err(XdmError::NotZip(_))
    ));
    assert!(!xdm::is_xdm(b"not a zip"));
    let no_metadata = {
        let dir = Dir::new();
        let file = dir.write("a.txt", b"hello");
        let zip = dir.path("plain.zip");
        // Python's zipfile writes a zip without IHE_XDM.
        let status = std::process::Command::new("python3")
            .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1],'w'); z.write(sys.argv[2],'docs/a.txt'); z.close()"])
            .arg(&zip)
            .arg(&file)
            .status()
            .expect("python3");
        assert!(status.success());
        std::fs::read(zip).expect("zip")
    };
    assert!(!xdm::is_xdm(&no_metadata));
    assert_eq!(
        xdm::unpack(&no_metadata, Limits::default()),
        Err(XdmError::NotXdm)
    );
    let Some(bytes) = read("ett/XDM_FULL.ZIP") else {
        return;
    };
    for end in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(xdm::unpack(&bytes[..end], Limits::default()).is_err());
    }
}

#[test]
fn limits_hold_against_what_the_zip_claims() {
    let Some(bytes) = read("ett/XDM_FULL.ZIP") else {
        return;
    };
    let tight = Limits {
        max_entries: 1_000,
        max_total_bytes: 10_000,
    };
    assert_eq!(xdm::unpack(&bytes, tight), Err(XdmError::TooLarge(10_000)));
    let few = Limits {
        max_entries: 3,
        max_total_bytes: 1 << 30,
    };
    assert_eq!(xdm::unpack(&bytes, few), Err(XdmError::TooManyEntries(3)));

    // A bomb: 50 MB of zeros deflates to about 50 KB; the limit stops it while inflating.
    let metadata = b"<?xml version=\"1.0\"?><SubmitObjectsRequest/>";
    let zeros = vec![0u8; 50 * 1024 * 1024];
    let bomb = xdm::pack(metadata, &[("ZEROS.BIN", &zeros)], "test").expect("pack");
    assert!(bomb.len() < 1024 * 1024);
    assert_eq!(
        xdm::unpack(
            &bomb,
            Limits {
                max_entries: 100,
                max_total_bytes: 1024 * 1024
            }
        ),
        Err(XdmError::TooLarge(1024 * 1024))
    );
}

#[test]
fn packages_we_make_unpack_here_and_in_python() {
    let metadata = b"<?xml version=\"1.0\"?><SubmitObjectsRequest/>";
    let Some(ccd) = read("ri-xd/sampleccd.xml") else {
        return;
    };
    let pdf = b"%PDF-1.4 synthetic".to_vec();
    let bytes = xdm::pack(
        metadata,
        &[("DOC0001.XML", &ccd), ("DOC0002.PDF", &pdf)],
        "jane@direct.example.org",
    )
    .expect("pack");
    let package = xdm::unpack(&bytes, Limits::default()).expect("unpack");
    let set = &package.submission_sets[0];
    assert_eq!(set.metadata, metadata);
    assert_eq!(set.documents.len(), 2);
    assert_eq!(set.documents[0].content, ccd);
    assert_eq!(set.documents[1].media_type, "application/pdf");
    let index = String::from_utf8(package.index_htm.expect("index")).expect("utf-8");
    assert!(index.contains("IHE_XDM/SUBSET01/DOC0001.XML"), "{index}");

    let dir = Dir::new();
    let path = dir.write("ours.zip", &bytes);
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(sorted(z.namelist()))"])
        .arg(&path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("'IHE_XDM/SUBSET01/METADATA.XML'")
            && listing.contains("'INDEX.HTM'")
            && listing.contains("'README.TXT'"),
        "{listing}"
    );

    for bad in [
        "../evil.xml",
        "a/b.xml",
        "",
        "METADATA.XML",
        ".hidden",
        "a b.xml",
    ] {
        assert_eq!(
            xdm::pack(metadata, &[(bad, b"x")], "x"),
            Err(XdmError::BadName(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn entries_that_climb_out_are_refused() {
    let dir = Dir::new();
    let zip = dir.path("evil.zip");
    let status = std::process::Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1],'w'); z.writestr('IHE_XDM/SUBSET01/METADATA.XML','<x/>'); z.writestr('IHE_XDM/SUBSET01/../../../etc/passwd','x'); z.close()"])
        .arg(&zip)
        .status()
        .expect("python3");
    assert!(status.success());
    let bytes = std::fs::read(zip).expect("zip");
    assert!(matches!(
        xdm::unpack(&bytes, Limits::default()),
        Err(XdmError::UnsafeName(_))
    ));
}
