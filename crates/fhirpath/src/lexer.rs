//! The FHIRPath tokenizer: turns source text into tokens that carry their byte offset, skipping
//! whitespace and comments.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A plain identifier or keyword (`name`, `and`, `true`).
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Delimited(String),
    Str(String),
    /// An integer or decimal literal, as written.
    Number(String),
    /// `@2024-01-02`, `@2024-01-02T10:00Z`, `@T10:00`: the text after `@`.
    DateTime(String),
    /// `%resource`, `%'vs-x'`: the name after `%`.
    Env(String),
    /// `$this`, `$index`, `$total`: the name after `$`.
    Special(String),
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const PUNCTS: [&str; 21] = [
    "!=", "!~", "<=", ">=", ".", "(", ")", "[", "]", "{", "}", ",", "|", "+", "-", "*", "/", "&",
    "=", "~", "<",
];

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, message: String| ParseError {
        position: pos,
        message,
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if src[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if src[i..].starts_with("/*") {
            match src[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => return Err(err(i, "unterminated comment".into())),
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].to_string()),
                pos: start,
            });
        } else if c == b'`' {
            let (s, next) = quoted(src, i, b'`')?;
            out.push(Token {
                tok: Tok::Delimited(s),
                pos: start,
            });
            i = next;
        } else if c == b'\'' {
            let (s, next) = quoted(src, i, b'\'')?;
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
            i = next;
        } else if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Token {
                tok: Tok::Number(src[start..i].to_string()),
                pos: start,
            });
        } else if c == b'@' {
            let end = datetime_end(bytes, i + 1);
            if end == i + 1 {
                return Err(err(i, "'@' must start a date, dateTime or time".into()));
            }
            out.push(Token {
                tok: Tok::DateTime(src[i + 1..end].to_string()),
                pos: start,
            });
            i = end;
        } else if c == b'%' {
            i += 1;
            let name = match bytes.get(i) {
                Some(b'`') | Some(b'\'') => {
                    let (s, next) = quoted(src, i, bytes[i])?;
                    i = next;
                    s
                }
                _ => {
                    let s = i;
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || bytes[i] == b'_'
                            || bytes[i] == b'-')
                    {
                        i += 1;
                    }
                    src[s..i].to_string()
                }
            };
            if name.is_empty() {
                return Err(err(start, "'%' must be followed by a variable name".into()));
            }
            out.push(Token {
                tok: Tok::Env(name),
                pos: start,
            });
        } else if c == b'$' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Special(src[start + 1..i].to_string()),
                pos: start,
            });
        } else if c == b'>' {
            // `>` is kept apart from PUNCTS so that `>=` wins over `>`.
            if bytes.get(i + 1) == Some(&b'=') {
                out.push(Token {
                    tok: Tok::Punct(">="),
                    pos: start,
                });
                i += 2;
            } else {
                out.push(Token {
                    tok: Tok::Punct(">"),
                    pos: start,
                });
                i += 1;
            }
        } else if let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            out.push(Token {
                tok: Tok::Punct(p),
                pos: start,
            });
            i += p.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(err(i, format!("unexpected character '{ch}'")));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

/// Reads a quoted string or delimited identifier starting at `start` (the opening quote), with
/// FHIRPath escapes; returns the text and the offset after the closing quote.
fn quoted(src: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        let at = start + 1 + off;
        if ch as u32 == quote as u32 {
            return Ok((out, at + 1));
        }
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let Some((_, esc)) = chars.next() else { break };
        match esc {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) if hex.len() == 4 => out.push(c),
                    _ => {
                        return Err(ParseError {
                            position: at,
                            message: "invalid \\u escape".into(),
                        })
                    }
                }
            }
            other => out.push(other),
        }
    }
    Err(ParseError {
        position: start,
        message: "unterminated string".into(),
    })
}

/// The end of a date/time literal body starting at `i` (just after `@`).
fn datetime_end(b: &[u8], mut i: usize) -> usize {
    let digits =
        |i: usize, n: usize| i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit);
    let time = |mut i: usize| -> usize {
        if !digits(i, 2) {
            return i;
        }
        i += 2;
        for _ in 0..2 {
            if b.get(i) == Some(&b':') && digits(i + 1, 2) {
                i += 3;
            } else {
                return i;
            }
        }
        if b.get(i) == Some(&b'.') && digits(i + 1, 1) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        i
    };
    if b.get(i) == Some(&b'T') {
        return time(i + 1);
    }
    if !digits(i, 4) {
        return i;
    }
    i += 4;
    for _ in 0..2 {
        if b.get(i) == Some(&b'-') && digits(i + 1, 2) {
            i += 3;
        } else {
            break;
        }
    }
    if b.get(i) == Some(&b'T') {
        i = time(i + 1);
        if b.get(i) == Some(&b'Z') {
            i += 1;
        } else if matches!(b.get(i), Some(b'+') | Some(b'-'))
            && digits(i + 1, 2)
            && b.get(i + 3) == Some(&b':')
            && digits(i + 4, 2)
        {
            i += 6;
        }
    }
    i
}
