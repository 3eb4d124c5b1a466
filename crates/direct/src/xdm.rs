//! IHE XDM packages: the zip a Direct message carries documents in (IHE ITI TF-1 §16, ITI TF-3 §4.3).
//!
//! A package holds `IHE_XDM/<SUBSET>/METADATA.XML` (the XDS submission set) beside the documents of
//! each submission set, with `INDEX.HTM` and `README.TXT` at its root. Senders differ in the details,
//! so [`unpack`] accepts the `IHE_XDM` folder under a top folder of the zip and any case in the names,
//! and skips hidden files (`.DS_Store`). It is bounded: at most [`Limits::max_entries`] entries and
//! [`Limits::max_total_bytes`] decompressed in all, counted as they are inflated (a zip's stated
//! sizes are not trusted), encrypted entries and names that climb out of the package refused.
//!
//! The metadata is returned as bytes for the caller to read as XML; this module does not interpret it.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Why a package could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdmError {
    /// Not a readable zip.
    #[error("not a readable zip: {0}")]
    NotZip(String),
    /// A zip without `IHE_XDM/<subset>/METADATA.XML`.
    #[error("not an XDM package: no IHE_XDM/<subset>/METADATA.XML")]
    NotXdm,
    /// More entries than the limit.
    #[error("more than {0} entries")]
    TooManyEntries(usize),
    /// More decompressed bytes than the limit (a zip bomb, or just too big).
    #[error("more than {0} bytes decompressed")]
    TooLarge(u64),
    /// A password-protected entry.
    #[error("encrypted entry {0:?}")]
    Encrypted(String),
    /// An entry name with `..`, an absolute path or a drive.
    #[error("unsafe entry name {0:?}")]
    UnsafeName(String),
    /// A document name that cannot be written into a package.
    #[error("bad document name {0:?}")]
    BadName(String),
    /// An entry that does not inflate (corrupt, or an unsupported method).
    #[error("entry {name:?} does not decompress: {reason}")]
    Corrupt {
        /// The entry.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Bounds on what [`unpack`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in the zip, folders included.
    pub max_entries: usize,
    /// Decompressed bytes in all.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 1_000,
            max_total_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One document of a submission set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The file name within its submission set, e.g. `DOC0001.XML`.
    pub name: String,
    /// A media type guessed from the name's extension (the metadata's `mimeType` is authoritative).
    pub media_type: &'static str,
    /// The bytes.
    pub content: Vec<u8>,
}

/// One submission set: `IHE_XDM/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionSet {
    /// The folder name, e.g. `SUBSET01`.
    pub name: String,
    /// `METADATA.XML` as it is.
    pub metadata: Vec<u8>,
    /// The other files of the folder (its subfolders included, as `sub/name`).
    pub documents: Vec<Document>,
}

/// An unpacked XDM package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Package {
    /// The submission sets, by folder name.
    pub submission_sets: Vec<SubmissionSet>,
    /// `INDEX.HTM`, if present.
    pub index_htm: Option<Vec<u8>>,
    /// `README.TXT`, if present.
    pub readme: Option<Vec<u8>>,
}

/// A media type from a file name's extension.
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "xml" => "text/xml",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "xsl" | "xslt" => "text/xsl",
        "json" => "application/json",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}

fn safe_name(name: &str) -> bool {
    !name.starts_with('/')
        && !name.starts_with('\\')
        && !name.contains(':')
        && !name.contains('\0')
        && name
            .split(['/', '\\'])
            .all(|segment| segment != ".." && segment != ".")
}

/// Whether `bytes` is a zip holding an XDM package (for attachments sent as
/// `application/octet-stream`).
pub fn is_xdm(bytes: &[u8]) -> bool {
    let Ok(archive) = ZipArchive::new(Cursor::new(bytes)) else {
        return false;
    };
    let found = archive.file_names().any(|n| metadata_folder(n).is_some());
    found
}

/// If `name` is `[prefix/]IHE_XDM/<subset>/METADATA.XML`, the prefix up to and including
/// `IHE_XDM/` and the subset's name.
fn metadata_folder(name: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = name.split('/').collect();
    let n = segments.len();
    if n >= 3
        && segments[n - 1].eq_ignore_ascii_case("METADATA.XML")
        && segments[n - 3].eq_ignore_ascii_case("IHE_XDM")
    {
        let root = segments[..n - 2].join("/") + "/";
        return Some((root, segments[n - 2].to_owned()));
    }
    None
}

/// Unpacks an XDM package within `limits`.
pub fn unpack(bytes: &[u8], limits: Limits) -> Result<Package, XdmError> {
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| XdmError::NotZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(XdmError::TooManyEntries(limits.max_entries));
    }
    // The folder holding IHE_XDM (e.g. "" or "samplexdm/"), from the first METADATA.XML.
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    let ihe_root = names
        .iter()
        .find_map(|n| metadata_folder(n).map(|(root, _)| root))
        .ok_or(XdmError::NotXdm)?;
    let package_root = ihe_root
        .get(..ihe_root.len().saturating_sub("IHE_XDM/".len()))
        .unwrap_or("")
        .to_owned();

    let mut package = Package::default();
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| XdmError::NotZip(e.to_string()))?;
        let name = entry.name().to_owned();
        if !safe_name(&name) {
            return Err(XdmError::UnsafeName(name));
        }
        if entry.is_dir() {
            continue;
        }
        if entry.encrypted() {
            return Err(XdmError::Encrypted(name));
        }
        let Some(within) = name.get(package_root.len()..).filter(|_| {
            name.get(..package_root.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(&package_root))
        }) else {
            continue;
        };
        let file_name = within.rsplit('/').next().unwrap_or(within);
        if file_name.starts_with('.') || file_name.is_empty() {
            continue;
        }
        let remaining = limits.max_total_bytes.saturating_sub(total);
        let mut content = Vec::new();
        (&mut entry)
            .take(remaining.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|e| XdmError::Corrupt {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        total = total.saturating_add(content.len() as u64);
        if total > limits.max_total_bytes {
            return Err(XdmError::TooLarge(limits.max_total_bytes));
        }

        let segments: Vec<&str> = within.split('/').collect();
        match segments.as_slice() {
            [top] if top.eq_ignore_ascii_case("INDEX.HTM") => package.index_htm = Some(content),
            [top] if top.eq_ignore_ascii_case("README.TXT") => package.readme = Some(content),
            [ihe, subset, rest @ ..] if ihe.eq_ignore_ascii_case("IHE_XDM") && !rest.is_empty() => {
                let set = match package
                    .submission_sets
                    .iter()
                    .position(|s| s.name == *subset)
                {
                    Some(i) => &mut package.submission_sets[i],
                    None => {
                        package.submission_sets.push(SubmissionSet {
                            name: (*subset).to_owned(),
                            metadata: Vec::new(),
                            documents: Vec::new(),
                        });
                        let last = package.submission_sets.len() - 1;
                        &mut package.submission_sets[last]
                    }
                };
                let doc_name = rest.join("/");
                if rest.len() == 1 && doc_name.eq_ignore_ascii_case("METADATA.XML") {
                    set.metadata = content;
                } else {
                    set.documents.push(Document {
                        media_type: media_type_of(&doc_name),
                        name: doc_name,
                        content,
                    });
                }
            }
            _ => {}
        }
    }
    package.submission_sets.retain(|s| !s.metadata.is_empty());
    package.submission_sets.sort_by(|a, b| a.name.cmp(&b.name));
    if package.submission_sets.is_empty() {
        return Err(XdmError::NotXdm);
    }
    Ok(package)
}

/// Packs one submission set (`IHE_XDM/SUBSET01/`) with the caller's `METADATA.XML` and documents,
/// and the `INDEX.HTM` and `README.TXT` the profile asks for. Document names must be plain file
/// names (ITI TF-3 §4.3 asks for 8.3 names; that is the caller's choice).
pub fn pack(
    metadata: &[u8],
    documents: &[(&str, &[u8])],
    sender: &str,
) -> Result<Vec<u8>, XdmError> {
    let zip_err = |e: zip::result::ZipError| XdmError::NotZip(e.to_string());
    let io_err = |e: std::io::Error| XdmError::NotZip(e.to_string());
    for (name, _) in documents {
        let plain = !name.is_empty()
            && !name.eq_ignore_ascii_case("METADATA.XML")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.starts_with('.');
        if !plain {
            return Err(XdmError::BadName((*name).to_owned()));
        }
    }
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.add_directory("IHE_XDM/", options).map_err(zip_err)?;
    zip.add_directory("IHE_XDM/SUBSET01/", options)
        .map_err(zip_err)?;
    zip.start_file("IHE_XDM/SUBSET01/METADATA.XML", options)
        .map_err(zip_err)?;
    zip.write_all(metadata).map_err(io_err)?;
    let mut links = String::new();
    for (name, content) in documents {
        zip.start_file(format!("IHE_XDM/SUBSET01/{name}"), options)
            .map_err(zip_err)?;
        zip.write_all(content).map_err(io_err)?;
        links.push_str(&format!(
            "<li><a href=\"IHE_XDM/SUBSET01/{name}\">{name}</a></li>\r\n"
        ));
    }
    let sender: String = sender
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !"<>&\"".contains(*c))
        .collect();
    zip.start_file("INDEX.HTM", options).map_err(zip_err)?;
    zip.write_all(
        format!(
            "<html><head><title>XDM package</title></head><body>\r\n<p>Documents sent by {sender}:</p>\r\n<ul>\r\n{links}</ul>\r\n</body></html>\r\n"
        )
        .as_bytes(),
    )
    .map_err(io_err)?;
    zip.start_file("README.TXT", options).map_err(zip_err)?;
    zip.write_all(
        format!(
            "This IHE XDM package was made by nutmeg for {sender}.\r\nThe documents are in IHE_XDM/SUBSET01, described by METADATA.XML.\r\n"
        )
        .as_bytes(),
    )
    .map_err(io_err)?;
    let cursor = zip.finish().map_err(zip_err)?;
    Ok(cursor.into_inner())
}
