//! The MIME that S/MIME needs: entities with their exact raw bytes, headers, content types,
//! multipart splitting, base64 and quoted-printable bodies, and the few builders `smime` uses.
//!
//! Every parsed entity keeps the slice of the input it came from, because a detached signature
//! covers the first part of a `multipart/signed` byte for byte. Parsing never allocates copies of
//! bodies until asked to decode them, accepts bare LF line ends (messages saved on Unix) as well
//! as CRLF, and returns a [`MimeError`] rather than panicking on anything.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// At most this many header fields in one entity.
const MAX_HEADERS: usize = 1000;
/// At most this many parts in one multipart.
const MAX_PARTS: usize = 10_000;

/// What is wrong with a MIME entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    /// A header line that is neither `Name: value` nor a continuation.
    #[error("header line {line} is not a header field")]
    BadHeader {
        /// Line number, from 1.
        line: usize,
    },
    /// More header fields than the limit.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// A multipart entity without a `boundary` parameter.
    #[error("multipart without a boundary")]
    NoBoundary,
    /// A multipart entity whose body has no delimiter line.
    #[error("multipart body has no parts")]
    NoParts,
    /// More parts than the limit.
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
    /// A base64 body that does not decode.
    #[error("bad base64 body")]
    BadBase64,
    /// A Content-Transfer-Encoding this parser does not know.
    #[error("unknown Content-Transfer-Encoding {0:?}")]
    UnknownEncoding(String),
}

/// One header field, unfolded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as written.
    pub name: String,
    /// The value, unfolded (line breaks removed) and trimmed.
    pub value: String,
}

/// A parsed `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower case.
    pub mime_type: String,
    /// Parameters, names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// Parses a Content-Type value; an empty or unreadable one is `text/plain` (RFC 2045 §5.2).
    pub fn parse(value: &str) -> ContentType {
        let mut pieces = split_params(value).into_iter();
        let mime_type = pieces
            .next()
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| t.contains('/'))
            .unwrap_or_else(|| "text/plain".to_owned());
        let params = pieces
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
            })
            .collect();
        ContentType { mime_type, params }
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is `type/subtype` (compare in lower case).
    pub fn is(&self, mime_type: &str) -> bool {
        self.mime_type == mime_type
    }
}

/// Splits on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => value.to_owned(),
    }
}

/// A MIME entity (a whole message or one part) over the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    raw: &'a [u8],
    headers: Vec<Header>,
    body: &'a [u8],
}

/// Splits off one line: (line without its CR LF or LF, rest after the line break).
fn next_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &bytes[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &bytes[i + 1..])
        }
        None => (bytes, &[]),
    }
}

impl<'a> Entity<'a> {
    /// Parses the header block and finds the body. An input without a blank line is all headers.
    pub fn parse(raw: &'a [u8]) -> Result<Entity<'a>, MimeError> {
        let mut headers: Vec<Header> = Vec::new();
        let mut rest = raw;
        let mut line_no = 0;
        let body = loop {
            if rest.is_empty() {
                break &raw[raw.len()..];
            }
            let (line, after) = next_line(rest);
            line_no += 1;
            if line.is_empty() {
                break after;
            }
            let text = String::from_utf8_lossy(line);
            // Whitespace before the first field is a stray indent (saved fixtures have it), not
            // a continuation of nothing; JavaMail reads such messages too.
            let text = if headers.is_empty() {
                std::borrow::Cow::Owned(text.trim_start().to_owned())
            } else {
                text
            };
            let folded = !headers.is_empty() && (line[0] == b' ' || line[0] == b'\t');
            if folded {
                match headers.last_mut() {
                    Some(h) => {
                        h.value.push_str(&text);
                    }
                    None => return Err(MimeError::BadHeader { line: line_no }),
                }
            } else {
                let Some((name, value)) = text.split_once(':') else {
                    return Err(MimeError::BadHeader { line: line_no });
                };
                let name = name.trim_end();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(MimeError::BadHeader { line: line_no });
                }
                if headers.len() >= MAX_HEADERS {
                    return Err(MimeError::TooManyHeaders);
                }
                headers.push(Header {
                    name: name.to_owned(),
                    value: value.to_owned(),
                });
            }
            rest = after;
        };
        for h in &mut headers {
            h.value = h.value.trim().to_owned();
        }
        Ok(Entity { raw, headers, body })
    }

    /// The bytes this entity was parsed from, headers and body.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The header fields in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first value of a header field (name compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The Content-Type (`text/plain` when absent).
    pub fn content_type(&self) -> ContentType {
        ContentType::parse(self.header("Content-Type").unwrap_or(""))
    }

    /// The body as it is encoded.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The body with its Content-Transfer-Encoding undone.
    pub fn decoded_body(&self) -> Result<Vec<u8>, MimeError> {
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => decode_base64(self.body),
            "quoted-printable" => Ok(decode_quoted_printable(self.body)),
            "7bit" | "8bit" | "binary" | "" => Ok(self.body.to_vec()),
            other => Err(MimeError::UnknownEncoding(other.to_owned())),
        }
    }

    /// The parts of a multipart entity, each over its exact bytes (without the line break that
    /// belongs to the next delimiter). A body without its closing delimiter ends its last part.
    pub fn parts(&self) -> Result<Vec<Entity<'a>>, MimeError> {
        let ct = self.content_type();
        let boundary = ct.param("boundary").ok_or(MimeError::NoBoundary)?;
        if boundary.is_empty() {
            return Err(MimeError::NoBoundary);
        }
        let delimiter = format!("--{boundary}");
        let delimiter = delimiter.as_bytes();
        let body = self.body;
        let mut parts = Vec::new();
        let mut start: Option<usize> = None;
        // Only the lines that start with the delimiter matter: find those, not every line.
        let finder = memchr::memmem::Finder::new(delimiter);
        let mut search = 0;
        while let Some(pos) = body.get(search..).and_then(|b| finder.find(b)) {
            let pos = search + pos;
            let line_end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i);
            search = line_end + 1;
            if pos > 0 && body[pos - 1] != b'\n' {
                continue;
            }
            let line = &body[pos..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(rest) = line.strip_prefix(delimiter) {
                let close = rest.starts_with(b"--");
                let tail = if close { &rest[2..] } else { rest };
                if tail.iter().all(|&b| b == b' ' || b == b'\t') {
                    if let Some(s) = start {
                        let mut end = pos;
                        if end > s && body[end - 1] == b'\n' {
                            end -= 1;
                            if end > s && body[end - 1] == b'\r' {
                                end -= 1;
                            }
                        }
                        if parts.len() >= MAX_PARTS {
                            return Err(MimeError::TooManyParts);
                        }
                        parts.push(Entity::parse(&body[s..end])?);
                    }
                    if close {
                        return if parts.is_empty() {
                            Err(MimeError::NoParts)
                        } else {
                            Ok(parts)
                        };
                    }
                    start = Some((line_end + 1).min(body.len()));
                }
            }
        }
        // No closing delimiter: many real messages (the reference implementation's MDNs and
        // DSNs among them) end that way, so the last part runs to the end of the body.
        match start {
            None => Err(MimeError::NoParts),
            Some(s) => {
                if parts.len() >= MAX_PARTS {
                    return Err(MimeError::TooManyParts);
                }
                parts.push(Entity::parse(&body[s..])?);
                Ok(parts)
            }
        }
    }
}

/// Base64 as mail carries it: whitespace and line breaks ignored, padding optional.
pub fn decode_base64(encoded: &[u8]) -> Result<Vec<u8>, MimeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    // Line by line: mail's base64 comes in lines of 76, so whole lines are copied at once and
    // only a line with whitespace inside is filtered byte by byte.
    let mut compact = Vec::with_capacity(encoded.len());
    let mut rest = encoded;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // ASCII whitespace is space, tab, CR, LF (not in a line) and form feed.
        let spaced = memchr::memchr3(b' ', b'\t', b'\r', line).is_some()
            || memchr::memchr(0x0c, line).is_some();
        if spaced {
            compact.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
        } else {
            compact.extend_from_slice(line);
        }
    }
    LENIENT.decode(compact).map_err(|_| MimeError::BadBase64)
}

/// Base64 in lines of 76 characters, each ended by CR LF.
pub fn encode_base64_lines(data: &[u8]) -> Vec<u8> {
    // 57 bytes are exactly one line of 76 characters: each line is encoded in place, with no
    // copy of the whole text in between.
    let mut out = vec![0u8; data.len().div_ceil(57) * 78];
    let mut n = 0;
    for chunk in data.chunks(57) {
        n += base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut out[n..n + 76])
            .expect("76 characters hold 57 bytes");
        out[n..n + 2].copy_from_slice(b"\r\n");
        n += 2;
    }
    out.truncate(n);
    out
}

/// Quoted-printable decoding (RFC 2045 §6.7); a malformed escape is kept as written.
pub fn decode_quoted_printable(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &encoded[i + 1..];
        if rest.starts_with(b"\r\n") {
            i += 3;
        } else if rest.starts_with(b"\n") {
            i += 2;
        } else if let Some(v) = rest
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

/// The bytes with every line ended by CR LF (bare LF and bare CR become CR LF), as S/MIME
/// signs them (RFC 5751 §3.1.1).
pub fn canonicalize(bytes: &[u8]) -> Vec<u8> {
    canonical(bytes).into_owned()
}

/// [`canonicalize`] without a copy when the bytes are canonical already.
pub(crate) fn canonical(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let is_canonical = {
        let mut ok = true;
        let mut i = 0;
        while let Some(at) = memchr::memchr2(b'\r', b'\n', &bytes[i..]) {
            let at = i + at;
            if bytes[at] == b'\n' || bytes.get(at + 1) != Some(&b'\n') {
                ok = false;
                break;
            }
            i = at + 2;
        }
        ok
    };
    if is_canonical {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut i = 0;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', &bytes[i..]) {
        let at = i + at;
        out.extend_from_slice(&bytes[i..at]);
        out.extend_from_slice(b"\r\n");
        i = if bytes[at] == b'\r' && bytes.get(at + 1) == Some(&b'\n') {
            at + 2
        } else {
            at + 1
        };
    }
    out.extend_from_slice(&bytes[i..]);
    std::borrow::Cow::Owned(out)
}

/// The address in a From or To value: `Name <local@domain>` or a bare `local@domain`;
/// `None` when there is no single plain address.
pub fn address_of(value: &str) -> Option<String> {
    let candidate = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        (None, None) => value,
        _ => return None,
    };
    let candidate = candidate.trim();
    let (local, domain) = candidate.rsplit_once('@')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\"\\".contains(&b))
    };
    (plain(local) && plain(domain)).then(|| candidate.to_owned())
}

/// A random MIME boundary.
pub fn new_boundary() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 18];
    // A boundary needs to be unlikely in the content, not secret: on the (never seen) failure of
    // the system generator the fixed fallback is still a valid boundary.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    format!(
        "----=_nutmeg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Whether a header value may be written as is: no CR, LF or other control characters.
pub fn is_safe_header_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}
