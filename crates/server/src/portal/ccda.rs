//! C-CDA documents in the web inbox: a safe server-side view (the document's title, the patient it
//! names, each section's title and narrative block) and what importing one needs (the patient's
//! identifiers and demographics, the document's type and time).
//!
//! The narrative block is rebuilt element by element from the CDA narrative schema's structural
//! elements only (paragraph, list, table, content, caption, br...), with every attribute dropped
//! and every text escaped: no link, image, style, script or reference to anything outside the page
//! can come through. DTDs are refused (no entity expansion) and the node count is bounded.

use roxmltree::{Document, Node, ParsingOptions};

use super::html::escape;

/// The HL7 v3 namespace every C-CDA element is in.
const V3: &str = "urn:hl7-org:v3";
/// The most XML nodes read from one document.
const MAX_NODES: u32 = 2_000_000;
/// How deep the narrative is followed (a deeper document is cut there).
const MAX_DEPTH: usize = 64;

/// Why a document cannot be shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CcdaError {
    #[error("the document is not UTF-8 text")]
    NotText,
    #[error("the document is not well-formed XML: {0}")]
    Xml(String),
    #[error("the document is not a CDA ClinicalDocument")]
    NotCda,
}

/// The patient a document names (`recordTarget/patientRole`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patient {
    /// `(root, extension)` of each `id` with both.
    pub ids: Vec<(String, String)>,
    pub given: Vec<String>,
    pub family: Option<String>,
    /// FHIR's administrative gender code.
    pub gender: Option<&'static str>,
    /// `YYYY-MM-DD` (or shorter), from `birthTime`.
    pub birth_date: Option<String>,
}

impl Patient {
    /// The name as one line.
    pub fn name(&self) -> String {
        let mut parts = self.given.clone();
        parts.extend(self.family.clone());
        parts.join(" ")
    }
}

/// A document read for the view and the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub title: String,
    /// The document's own id (`ClinicalDocument/id`) as a FHIR identifier's `(system, value)`.
    pub document_id: Option<(String, String)>,
    /// `(code, codeSystem OID, displayName)` of the document's type.
    pub code: Option<(String, String, String)>,
    /// The document's time as FHIR `instant`-ish text (`YYYY-MM-DD` at least), if readable.
    pub date: Option<String>,
    pub patient: Patient,
    /// Each section's title and its narrative as safe HTML.
    pub sections: Vec<(String, String)>,
}

/// Whether bytes look like a CDA document (cheap: for deciding whether to offer the view).
pub fn looks_like_cda(bytes: &[u8]) -> bool {
    let window = &bytes[..bytes.len().min(64 * 1024)];
    let has = |needle: &[u8]| window.windows(needle.len()).any(|w| w == needle);
    has(b"ClinicalDocument") && has(V3.as_bytes())
}

fn parse(bytes: &[u8]) -> Result<String, CcdaError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CcdaError::NotText)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text).to_string())
}

fn is(node: &Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(V3)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(c, name))
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| is(c, name))
}

/// All the text under a node, whitespace collapsed.
fn text_of(node: Node<'_, '_>) -> String {
    let joined: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYYMMDD...` as `YYYY-MM-DD` (or `YYYY-MM`, `YYYY`).
fn date_of(value: &str) -> Option<String> {
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.len() {
        n if n >= 8 => Some(format!(
            "{}-{}-{}",
            &digits[..4],
            &digits[4..6],
            &digits[6..8]
        )),
        6 | 7 => Some(format!("{}-{}", &digits[..4], &digits[4..6])),
        4 | 5 => Some(digits[..4].to_string()),
        _ => None,
    }
}

/// An II root as a URI: `urn:oid:` for an OID, `urn:uuid:` for a UUID, as is otherwise.
pub fn system_of(root: &str) -> String {
    let root = root.trim();
    if !root.is_empty() && root.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("urn:oid:{root}")
    } else if root.len() == 36 && root.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        format!("urn:uuid:{}", root.to_ascii_lowercase())
    } else {
        root.to_string()
    }
}

/// Reads a document for the view and the import.
pub fn read(bytes: &[u8]) -> Result<Summary, CcdaError> {
    let text = parse(bytes)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc =
        Document::parse_with_options(&text, options).map_err(|e| CcdaError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if !is(&root, "ClinicalDocument") {
        return Err(CcdaError::NotCda);
    }
    let title = child(root, "title")
        .map(text_of)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Clinical document".to_string());
    let document_id = child(root, "id").and_then(|id| {
        let root = id.attribute("root")?.trim();
        if root.is_empty() {
            return None;
        }
        Some(match id.attribute("extension").map(str::trim) {
            Some(ext) if !ext.is_empty() => (system_of(root), ext.to_string()),
            _ => ("urn:ietf:rfc:3986".to_string(), system_of(root)),
        })
    });
    let code = child(root, "code").and_then(|c| {
        Some((
            c.attribute("code")?.to_string(),
            c.attribute("codeSystem").unwrap_or_default().to_string(),
            c.attribute("displayName").unwrap_or_default().to_string(),
        ))
    });
    let date = child(root, "effectiveTime")
        .and_then(|t| t.attribute("value"))
        .and_then(date_of);
    let mut patient = Patient::default();
    if let Some(role) = child(root, "recordTarget").and_then(|r| child(r, "patientRole")) {
        for id in children(role, "id") {
            if let (Some(r), Some(e)) = (id.attribute("root"), id.attribute("extension")) {
                if !r.trim().is_empty() && !e.trim().is_empty() {
                    patient
                        .ids
                        .push((r.trim().to_string(), e.trim().to_string()));
                }
            }
        }
        if let Some(p) = child(role, "patient") {
            if let Some(name) = child(p, "name") {
                patient.given = children(name, "given")
                    .map(text_of)
                    .filter(|g| !g.is_empty())
                    .collect();
                patient.family = child(name, "family").map(text_of).filter(|f| !f.is_empty());
            }
            patient.gender = child(p, "administrativeGenderCode")
                .and_then(|g| g.attribute("code"))
                .and_then(|c| match c {
                    "F" => Some("female"),
                    "M" => Some("male"),
                    "UN" => Some("other"),
                    _ => None,
                });
            patient.birth_date = child(p, "birthTime")
                .and_then(|b| b.attribute("value"))
                .and_then(date_of);
        }
    }
    let mut sections = Vec::new();
    if let Some(body) = child(root, "component").and_then(|c| child(c, "structuredBody")) {
        for component in children(body, "component") {
            if let Some(section) = child(component, "section") {
                collect_sections(section, 0, &mut sections);
            }
        }
    } else if let Some(body) = child(root, "component").and_then(|c| child(c, "nonXMLBody")) {
        sections.push((
            "Attached document".to_string(),
            "<p>This document's body is not structured text; download it to read it.</p>"
                .to_string(),
        ));
        let _ = body;
    }
    Ok(Summary {
        title,
        document_id,
        code,
        date,
        patient,
        sections,
    })
}

/// A section, then its subsections (`component/section`), in order.
fn collect_sections(section: Node<'_, '_>, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > MAX_DEPTH {
        return;
    }
    let title = child(section, "title")
        .map(text_of)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "(untitled section)".to_string());
    let narrative = child(section, "text")
        .map(|t| {
            let mut html = String::new();
            narrative(t, 0, &mut html);
            html
        })
        .unwrap_or_default();
    out.push((title, narrative));
    for component in children(section, "component") {
        if let Some(sub) = child(component, "section") {
            collect_sections(sub, depth + 1, out);
        }
    }
}

/// The HTML element a narrative element becomes (attributes never carried over), or `None` to keep
/// only its content.
fn html_element(name: &str) -> Option<&'static str> {
    Some(match name {
        "paragraph" => "p",
        "list" => "ul",
        "item" => "li",
        "table" => "table",
        "thead" => "thead",
        "tbody" => "tbody",
        "tfoot" => "tfoot",
        "tr" => "tr",
        "th" => "th",
        "td" => "td",
        "caption" => "caption",
        "sub" => "sub",
        "sup" => "sup",
        "content" => "span",
        "footnote" => "small",
        _ => return None,
    })
}

/// The narrative block under `node` as safe HTML into `out`.
fn narrative(node: Node<'_, '_>, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        return;
    }
    for c in node.children() {
        if c.is_text() {
            out.push_str(&escape(c.text().unwrap_or_default()));
            continue;
        }
        if !c.is_element() || c.tag_name().namespace() != Some(V3) {
            continue;
        }
        let name = c.tag_name().name();
        match name {
            "br" => out.push_str("<br>"),
            // An image or object is never fetched or shown.
            "renderMultiMedia" => out.push_str("[multimedia not shown]"),
            "list" if c.attribute("listType") == Some("ordered") => {
                out.push_str("<ol>");
                narrative(c, depth + 1, out);
                out.push_str("</ol>");
            }
            // Table parts that hold no content of their own.
            "col" | "colgroup" | "footnoteRef" => {}
            _ => match html_element(name) {
                Some(tag) => {
                    out.push('<');
                    out.push_str(tag);
                    out.push('>');
                    narrative(c, depth + 1, out);
                    out.push_str("</");
                    out.push_str(tag);
                    out.push('>');
                }
                // `linkHtml` and anything unknown: the text only.
                None => narrative(c, depth + 1, out),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:x="urn:other">
 <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summary"/>
 <title>Visit &amp; summary</title>
 <effectiveTime value="20240102120000-0500"/>
 <recordTarget><patientRole>
  <id root="2.16.840.1.113883.19.5" extension="998991"/><id root="1.2" nullFlavor="UNK"/>
  <patient><name><given>Eve</given><given>Ann</given><family>Everywoman</family></name>
   <administrativeGenderCode code="F"/><birthTime value="19750501"/></patient>
 </patientRole></recordTarget>
 <component><structuredBody>
  <component><section><title>Allergies</title>
   <text><paragraph onclick="x()">Penicillin <content styleCode="Bold">rash</content></paragraph>
    <table border="1"><thead><tr><th>Drug</th></tr></thead><tbody><tr><td>&lt;script&gt;alert(1)&lt;/script&gt;</td></tr></tbody></table>
    <linkHtml href="javascript:alert(1)">link text</linkHtml><renderMultiMedia referencedObject="i1"/>
    <x:script>evil()</x:script><list listType="ordered"><item>one</item></list></text>
   <component><section><title>Sub</title><text>nested</text></section></component>
  </section></component>
 </structuredBody></component>
</ClinicalDocument>"#;

    #[test]
    fn reads_the_header_and_renders_only_safe_markup() {
        assert!(looks_like_cda(DOC.as_bytes()));
        let s = read(DOC.as_bytes()).unwrap();
        assert_eq!(s.title, "Visit & summary");
        assert_eq!(s.date.as_deref(), Some("2024-01-02"));
        assert_eq!(s.code.as_ref().unwrap().0, "34133-9");
        assert_eq!(
            s.patient.ids,
            [("2.16.840.1.113883.19.5".into(), "998991".into())]
        );
        assert_eq!(s.patient.name(), "Eve Ann Everywoman");
        assert_eq!(s.patient.gender, Some("female"));
        assert_eq!(s.patient.birth_date.as_deref(), Some("1975-05-01"));
        assert_eq!(s.sections.len(), 2);
        let (title, html) = &s.sections[0];
        assert_eq!(title, "Allergies");
        assert!(
            html.contains("<p>Penicillin <span>rash</span></p>"),
            "{html}"
        );
        assert!(
            html.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
            "{html}"
        );
        assert!(
            html.contains("link text") && !html.contains("javascript"),
            "{html}"
        );
        assert!(
            !html.contains("evil") && !html.contains("onclick"),
            "{html}"
        );
        assert!(html.contains("<ol><li>one</li></ol>"), "{html}");
        assert_eq!(s.sections[1], ("Sub".to_string(), "nested".to_string()));
    }

    #[test]
    fn refuses_what_is_not_a_cda_document() {
        assert_eq!(read(b"\xff\xfe"), Err(CcdaError::NotText));
        assert!(matches!(read(b"<a>"), Err(CcdaError::Xml(_))));
        assert_eq!(read(b"<a xmlns='urn:hl7-org:v3'/>"), Err(CcdaError::NotCda));
        let dtd = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e \"x\">]><ClinicalDocument xmlns=\"urn:hl7-org:v3\">&e;</ClinicalDocument>";
        assert!(matches!(read(dtd.as_bytes()), Err(CcdaError::Xml(_))));
    }

    #[test]
    fn every_sample_document_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/direct/ett");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: {} is absent", dir.display());
            return;
        };
        let mut read_ok = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.to_string_lossy().contains("CCDA")
                || path.extension().is_none_or(|e| e != "xml")
            {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let s = read(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!s.sections.is_empty(), "{}", path.display());
            assert!(!s.patient.ids.is_empty(), "{}", path.display());
            read_ok += 1;
        }
        assert!(read_ok >= 2, "the C-CDA samples were read");
    }
}
