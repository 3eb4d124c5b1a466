//! `multipart/form-data` bodies (RFC 7578) as browsers send them: the compose form's fields and
//! uploaded files. A pure function over bytes already read within the caller's size limit; a
//! body it cannot read is `None` (the caller answers with an error page, not a panic).

/// One field of a form: its name, the file name (for an upload), the declared type, the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

impl Field {
    /// The value as text (a field that is not UTF-8 reads as empty).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.data).unwrap_or_default()
    }
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = from;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                let at = i + p;
                if &haystack[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// A `name="value"` parameter of a `Content-Disposition` value (quoted or not; `\"` unescaped).
fn param(value: &str, name: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Each parameter follows a `;`.
        let semi = value[i..].find(';')? + i;
        let rest = value[semi + 1..].trim_start();
        let start = value.len() - rest.len();
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (v, used) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, 1 + end)
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), end)
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(v);
        }
        i = start + eq + 1 + used;
    }
    None
}

/// The fields of a body with this boundary, in order; `None` if it is not a well-formed form.
pub fn parse(body: &[u8], boundary: &str) -> Option<Vec<Field>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = find(body, delimiter, 0)?;
    let mut fields = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Some(fields);
        }
        let headers_start = if body.get(after..after + 2) == Some(b"\r\n") {
            after + 2
        } else {
            return None;
        };
        let headers_end = find(body, b"\r\n\r\n", headers_start)?;
        let headers = std::str::from_utf8(&body[headers_start..headers_end]).ok()?;
        let data_start = headers_end + 4;
        let mut next_delimiter = Vec::with_capacity(delimiter.len() + 2);
        next_delimiter.extend_from_slice(b"\r\n");
        next_delimiter.extend_from_slice(delimiter);
        let data_end = find(body, &next_delimiter, data_start)?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                name = param(value, "name");
                filename = param(value, "filename");
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_string());
            }
        }
        fields.push(Field {
            name: name?,
            filename,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\na@b.c\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"na\\\"me; x.pdf\"\r\n\
Content-Type: application/pdf\r\n\r\n%PDF\r\n--Xy\r\n\x00\xff\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n\r\n\r\n--XyZ--\r\n";
        let fields = parse(body, "XyZ").unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].name, "to");
        assert_eq!(fields[0].text(), "a@b.c");
        assert_eq!(fields[1].filename.as_deref(), Some("na\"me; x.pdf"));
        assert_eq!(fields[1].content_type.as_deref(), Some("application/pdf"));
        assert_eq!(fields[1].data, b"%PDF\r\n--Xy\r\n\x00\xff");
        assert_eq!(fields[2].filename.as_deref(), Some(""));
        assert!(fields[2].data.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_form() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert!(parse(b"no delimiter", "b").is_none());
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunterminated",
            "b"
        )
        .is_none());
        assert!(parse(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b").is_none());
        assert_eq!(parse(b"--b--\r\n", "b").unwrap(), vec![]);
    }
}
