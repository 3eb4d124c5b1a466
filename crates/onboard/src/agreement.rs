//! Agreements and electronic signatures. The operator publishes versions of each agreement
//! (participation agreement, business associate terms, data sharing agreement), each identified by
//! the SHA-256 of its exact text and required of some participant types. A signer reads the exact
//! text and signs it: typed name and title, an explicit consent to sign electronically, the time,
//! the client's address and the digest of the version signed are kept. A new version marks who
//! must sign again; [`verify`] recomputes every signed document's digest, so a document edited
//! after it was signed is caught.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One published version of an agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// `participation`, `baa`, `dsa`, or another the operator names.
    pub kind: String,
    /// 1, 2, 3... per kind.
    pub version: u32,
    pub title: String,
    /// The exact text signers read.
    pub text: String,
    /// The participant types that must sign it (`hospital`, `solo-practice`...; `*` for all).
    pub required_for: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub published: OffsetDateTime,
}

impl Document {
    /// The SHA-256 of the exact text, lowercase hex.
    pub fn digest(&self) -> String {
        digest(&self.text)
    }

    pub fn required_of(&self, participant_type: &str) -> bool {
        self.required_for
            .iter()
            .any(|t| t == "*" || t == participant_type)
    }
}

/// The SHA-256 of `text`'s UTF-8 bytes, lowercase hex.
pub fn digest(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A signature of one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub kind: String,
    pub version: u32,
    /// The digest of the text the signer was shown.
    pub sha256: String,
    pub signer_name: String,
    pub signer_title: String,
    /// The signer ticked "I agree to sign electronically" (a signature is refused without it).
    pub consented_electronically: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub client_address: String,
}

/// What the signer submits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignForm {
    pub typed_name: String,
    pub title: String,
    /// The checkbox's value: `yes` when ticked.
    pub consent: String,
    /// The digest of the version the page showed (so a version published meanwhile is not signed
    /// unseen).
    pub sha256: String,
}

/// Why a signature was refused, per field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignError {
    pub field: String,
    pub message: String,
}

/// Signs `document` for the authorized signer named on the application: the typed name must be
/// theirs (case and spacing aside), a title given, the consent ticked, and the page's digest that
/// of this version.
pub fn sign(
    document: &Document,
    form: &SignForm,
    authorized_signer: &str,
    at: OffsetDateTime,
    client_address: &str,
) -> Result<Signature, Vec<SignError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(SignError {
            field: field.into(),
            message: message.into(),
        })
    };
    let squash = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    if form.typed_name.trim().is_empty() {
        fail("typed_name", "type your full name to sign");
    } else if squash(&form.typed_name) != squash(authorized_signer) {
        fail(
            "typed_name",
            "only the authorized signer named on the application may sign; type that name exactly",
        );
    }
    if form.title.trim().is_empty() {
        fail("title", "your title is required");
    }
    if form.consent != "yes" {
        fail("consent", "tick the box to agree to sign electronically");
    }
    let expected = document.digest();
    if form.sha256 != expected {
        fail(
            "sha256",
            "the agreement changed since the page was shown; read the current version and sign again",
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Signature {
        kind: document.kind.clone(),
        version: document.version,
        sha256: expected,
        signer_name: form
            .typed_name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        signer_title: form.title.trim().to_string(),
        consented_electronically: true,
        at,
        client_address: client_address.to_string(),
    })
}

/// The latest version of each kind.
pub fn latest(documents: &[Document]) -> Vec<&Document> {
    let mut out: Vec<&Document> = Vec::new();
    for d in documents {
        match out.iter_mut().find(|o| o.kind == d.kind) {
            Some(o) if o.version < d.version => *o = d,
            Some(_) => {}
            None => out.push(d),
        }
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind));
    out
}

/// An agreement a participant must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsigned {
    pub kind: String,
    pub version: u32,
    /// The version they signed before, when a new one replaced it.
    pub signed_before: Option<u32>,
}

/// The latest agreements of their participant type that `signatures` do not cover.
pub fn must_sign(
    participant_type: &str,
    documents: &[Document],
    signatures: &[Signature],
) -> Vec<Unsigned> {
    latest(documents)
        .into_iter()
        .filter(|d| d.required_of(participant_type))
        .filter_map(|d| {
            let signed: Vec<u32> = signatures
                .iter()
                .filter(|s| s.kind == d.kind)
                .map(|s| s.version)
                .collect();
            (!signed.contains(&d.version)).then(|| Unsigned {
                kind: d.kind.clone(),
                version: d.version,
                signed_before: signed.into_iter().max(),
            })
        })
        .collect()
}

/// What verification found wrong with one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The version signed is no longer stored.
    DocumentMissing { kind: String, version: u32 },
    /// The stored text's digest is not the one signed: it was edited after signing.
    DocumentChanged {
        kind: String,
        version: u32,
        signed: String,
        now: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::DocumentMissing { kind, version } => {
                write!(f, "{kind} version {version} was signed but is no longer stored")
            }
            Finding::DocumentChanged {
                kind,
                version,
                signed,
                now,
            } => write!(
                f,
                "{kind} version {version} was changed after it was signed (signed SHA-256 {signed}, stored text now {now})"
            ),
        }
    }
}

/// Recomputes the digest of every signed version from its stored text; one finding per signature
/// whose document is missing or no longer the text signed.
pub fn verify(documents: &[Document], signatures: &[Signature]) -> Vec<Finding> {
    signatures
        .iter()
        .filter_map(|s| {
            let Some(d) = documents
                .iter()
                .find(|d| d.kind == s.kind && d.version == s.version)
            else {
                return Some(Finding::DocumentMissing {
                    kind: s.kind.clone(),
                    version: s.version,
                });
            };
            let now = d.digest();
            (now != s.sha256).then(|| Finding::DocumentChanged {
                kind: s.kind.clone(),
                version: s.version,
                signed: s.sha256.clone(),
                now,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn doc(kind: &str, version: u32, text: &str, required_for: &[&str]) -> Document {
        Document {
            kind: kind.into(),
            version,
            title: format!("{kind} v{version}"),
            text: text.into(),
            required_for: required_for.iter().map(|s| s.to_string()).collect(),
            published: datetime!(2023-01-01 0:00 UTC),
        }
    }

    fn form(d: &Document) -> SignForm {
        SignForm {
            typed_name: "  jane   DOE ".into(),
            title: "Owner".into(),
            consent: "yes".into(),
            sha256: d.digest(),
        }
    }

    #[test]
    fn the_digest_is_sha256_of_the_exact_text() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(digest("abc"), digest("abc "));
    }

    #[test]
    fn a_signature_records_what_was_signed() {
        let d = doc("participation", 1, "The participant agrees...", &["*"]);
        let at = datetime!(2023-02-01 10:00 UTC);
        let s = sign(&d, &form(&d), "Jane Doe", at, "192.0.2.7").unwrap();
        assert_eq!(s.sha256, d.digest());
        assert_eq!(s.signer_name, "jane DOE");
        assert!(s.consented_electronically);
        assert_eq!((s.at, s.client_address.as_str()), (at, "192.0.2.7"));
    }

    #[test]
    fn a_signature_is_refused_with_every_reason() {
        let d = doc("participation", 1, "text", &["*"]);
        let bad = SignForm {
            typed_name: "Someone Else".into(),
            title: "".into(),
            consent: "".into(),
            sha256: digest("an older text"),
        };
        let errors = sign(&d, &bad, "Jane Doe", datetime!(2023-02-01 10:00 UTC), "x").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["typed_name", "title", "consent", "sha256"]);
    }

    #[test]
    fn a_new_version_must_be_signed_again() {
        let v1 = doc("participation", 1, "v1", &["*"]);
        let baa = doc("baa", 1, "baa", &["hospital"]);
        let at = datetime!(2023-02-01 10:00 UTC);
        let signed = vec![sign(&v1, &form(&v1), "Jane Doe", at, "x").unwrap()];
        assert_eq!(
            must_sign("solo-practice", &[v1.clone(), baa.clone()], &signed),
            vec![]
        );
        let hospital = must_sign("hospital", &[v1.clone(), baa.clone()], &signed);
        assert_eq!(hospital.len(), 1);
        assert_eq!(hospital[0].kind, "baa");
        let v2 = doc("participation", 2, "v2", &["*"]);
        let again = must_sign("solo-practice", &[v1, v2, baa], &signed);
        assert_eq!(
            again,
            vec![Unsigned {
                kind: "participation".into(),
                version: 2,
                signed_before: Some(1)
            }]
        );
    }

    #[test]
    fn an_edit_after_signing_is_caught() {
        let d = doc("dsa", 3, "The data sharing terms.", &["*"]);
        let s = sign(
            &d,
            &form(&d),
            "Jane Doe",
            datetime!(2023-02-01 10:00 UTC),
            "x",
        )
        .unwrap();
        assert!(verify(std::slice::from_ref(&d), std::slice::from_ref(&s)).is_empty());
        let mut edited = d.clone();
        edited.text.push_str(" Except on Sundays.");
        let found = verify(&[edited], std::slice::from_ref(&s));
        assert!(matches!(
            &found[..],
            [Finding::DocumentChanged { version: 3, .. }]
        ));
        assert!(found[0].to_string().contains("changed after it was signed"));
        assert_eq!(
            verify(&[], &[s]),
            vec![Finding::DocumentMissing {
                kind: "dsa".into(),
                version: 3
            }]
        );
    }
}
