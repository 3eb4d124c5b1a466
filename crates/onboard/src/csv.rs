//! RFC 4180 CSV: reading records with the line each starts on (so a bad row can be named), and
//! writing cells quoted where needed. Cells that a spreadsheet would run as a formula (starting
//! with `=`, `+`, `-`, `@`, a tab or a carriage return) are written with a leading apostrophe, so an
//! export opened by the licensing board cannot execute what a provider typed.

/// One record and the (1-based) line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub cells: Vec<String>,
}

/// A quote that never closed, with the line the cell began on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: a quoted cell is never closed")]
pub struct Unclosed {
    pub line: usize,
}

/// Every record of `text` (a byte-order mark and blank lines are skipped; `\r\n` and `\n` both end
/// a record). Unquoted cells are sliced from the text, not built a character at a time: a roster
/// has hundreds of thousands of them.
pub fn read(text: &str) -> Result<Vec<Record>, Unclosed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let b = text.as_bytes();
    // Delimiters are ASCII, so slicing at them never splits a UTF-8 character.
    let ends_cell =
        |i: usize| b[i] == b',' || b[i] == b'\n' || (b[i] == b'\r' && b.get(i + 1) == Some(&b'\n'));
    let mut records = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let start = line;
        let mut cells = Vec::new();
        loop {
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut cell = String::new();
                let mut from = i;
                loop {
                    if i >= b.len() {
                        return Err(Unclosed { line: start });
                    }
                    match b[i] {
                        b'"' if b.get(i + 1) == Some(&b'"') => {
                            cell.push_str(&text[from..=i]);
                            i += 2;
                            from = i;
                        }
                        b'"' => {
                            cell.push_str(&text[from..i]);
                            i += 1;
                            break;
                        }
                        b'\n' => {
                            line += 1;
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
                // Anything between the closing quote and the delimiter is kept, as spreadsheets do.
                let from = i;
                while i < b.len() && !ends_cell(i) {
                    i += 1;
                }
                cell.push_str(&text[from..i]);
                cells.push(cell);
            } else {
                let from = i;
                while i < b.len() && !ends_cell(i) {
                    i += 1;
                }
                cells.push(text[from..i].to_string());
            }
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            if i < b.len() && b[i] == b'\r' {
                i += 1;
            }
            if i < b.len() && b[i] == b'\n' {
                i += 1;
                line += 1;
            }
            break;
        }
        if !(cells.len() == 1 && cells[0].is_empty()) {
            records.push(Record { line: start, cells });
        }
    }
    Ok(records)
}

/// One cell as written: quoted when it holds a comma, quote or line break; defused when a
/// spreadsheet would read it as a formula.
pub fn cell(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    write_cell(&mut out, value);
    out
}

/// Appends [`cell`]`(value)` to `out`.
pub fn write_cell(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = value.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quoted {
        for c in value.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Appends one record (with `\r\n`, as RFC 4180 has it) to `out`.
pub fn write_record<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, value) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_cell(out, value.as_ref());
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(text: &str) -> Vec<Vec<String>> {
        read(text).unwrap().into_iter().map(|r| r.cells).collect()
    }

    #[test]
    fn quoting_round_trips() {
        let rows = [
            vec!["plain", "with, comma", "with \"quote\"", "two\nlines", ""],
            vec!["O'Brien", "", "x", "y", "z"],
        ];
        let mut out = String::new();
        for r in &rows {
            write_record(&mut out, r);
        }
        let back = cells(&out);
        assert_eq!(
            back,
            rows.map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        );
    }

    #[test]
    fn lines_are_counted_through_quoted_breaks_and_blank_lines_skipped() {
        let records = read("\u{feff}a,b\r\n\"x\ny\",z\n\nlast,1").unwrap();
        let lines: Vec<usize> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 5]);
        assert_eq!(records[1].cells, vec!["x\ny", "z"]);
    }

    #[test]
    fn an_unclosed_quote_names_its_line() {
        assert_eq!(read("a,b\nc,\"open\nmore"), Err(Unclosed { line: 2 }));
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("Jane"), "Jane");
    }
}
