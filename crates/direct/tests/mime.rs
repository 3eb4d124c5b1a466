//! The MIME parser: data-driven cases, and no panic on any cut or mangled input.

use direct::mime::{self, ContentType, Entity, MimeError};

/// Parses `input` and describes it: `type/subtype[part, part...]` with each leaf's decoded body.
fn describe(input: &[u8]) -> Result<String, MimeError> {
    fn go(e: &Entity<'_>) -> Result<String, MimeError> {
        let ct = e.content_type();
        if ct.mime_type.starts_with("multipart/") {
            let parts: Result<Vec<String>, MimeError> = e.parts()?.iter().map(go).collect();
            return Ok(format!("{}[{}]", ct.mime_type, parts?.join(", ")));
        }
        Ok(format!(
            "{}={:?}",
            ct.mime_type,
            String::from_utf8_lossy(&e.decoded_body()?)
        ))
    }
    go(&Entity::parse(input)?)
}

fn check(input: &str, expected: Result<&str, MimeError>) {
    assert_eq!(
        describe(input.as_bytes()),
        expected.map(str::to_owned),
        "{input:?}"
    );
}

#[test]
fn entities() {
    check("Subject: x\r\n\r\nhello", Ok("text/plain=\"hello\""));
    check("Subject: x\n\nhello\n", Ok("text/plain=\"hello\\n\""));
    check("Subject: only headers\r\n", Ok("text/plain=\"\""));
    check("", Ok("text/plain=\"\""));
    check(
        "Content-Type: text/html;\r\n charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8\r\nL2I+\r\n",
        Ok("text/html=\"<b>hi</b>\""),
    );
    check(
        "Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc",
        Ok("text/plain=\"a=bc\""),
    );
    check(
        "Content-Type: multipart/mixed; boundary=\"b;1\"\r\n\r\npreamble\r\n--b;1\r\n\r\none\r\n--b;1\r\nContent-Type: text/csv\r\n\r\ntwo\r\n\r\n--b;1--\r\nepilogue",
        Ok("multipart/mixed[text/plain=\"one\", text/csv=\"two\\r\\n\"]"),
    );
    check(
        "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\na\n--i\n\nb\n--i--\n--o--\n",
        Ok("multipart/mixed[multipart/alternative[text/plain=\"a\", text/plain=\"b\"]]"),
    );
    // A line that only starts like the delimiter is content.
    check(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx\r\n--b--",
        Ok("multipart/mixed[text/plain=\"--bx\"]"),
    );
}

#[test]
fn refusals() {
    check(
        "no colon here\r\n\r\n",
        Err(MimeError::BadHeader { line: 1 }),
    );
    check(
        " continuation first\r\n\r\n",
        Err(MimeError::BadHeader { line: 1 }),
    );
    check(
        "Content-Type: multipart/mixed\r\n\r\n--x\r\n",
        Err(MimeError::NoBoundary),
    );
    check(
        "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n",
        Err(MimeError::NoBoundary),
    );
    check(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\nnothing",
        Err(MimeError::NoParts),
    );
    check(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nopen",
        Ok("multipart/mixed[text/plain=\"open\"]"),
    );
    check(
        "Content-Transfer-Encoding: base64\r\n\r\n!!!!",
        Err(MimeError::BadBase64),
    );
    check(
        "Content-Transfer-Encoding: x-uuencode\r\n\r\nx",
        Err(MimeError::UnknownEncoding("x-uuencode".into())),
    );
}

#[test]
fn content_types() {
    let ct =
        ContentType::parse("Application/PKCS7-MIME; smime-type=enveloped-data; name=\"smime.p7m\"");
    assert_eq!(ct.mime_type, "application/pkcs7-mime");
    assert_eq!(ct.param("SMIME-TYPE"), Some("enveloped-data"));
    assert_eq!(ct.param("name"), Some("smime.p7m"));
    let ct = ContentType::parse("multipart/signed; boundary=\"a\\\"b; c\"; micalg=sha-256");
    assert_eq!(ct.param("boundary"), Some("a\"b; c"));
    assert_eq!(ct.param("micalg"), Some("sha-256"));
    assert_eq!(ContentType::parse("").mime_type, "text/plain");
    assert_eq!(ContentType::parse("garbage").mime_type, "text/plain");
}

#[test]
fn addresses() {
    for (value, expected) in [
        ("jane@direct.example.org", Some("jane@direct.example.org")),
        (
            "\"Doe, Jane\" <jane@direct.example.org>",
            Some("jane@direct.example.org"),
        ),
        (
            "Jane <jane@direct.example.org> ",
            Some("jane@direct.example.org"),
        ),
        ("<>", None),
        ("Jane <jane@direct.example.org", None),
        ("two@a.org, three@b.org", None),
        ("no address", None),
    ] {
        assert_eq!(mime::address_of(value).as_deref(), expected, "{value:?}");
    }
}

#[test]
fn canonical_line_ends() {
    assert_eq!(mime::canonicalize(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    assert_eq!(mime::canonicalize(b""), b"");
    assert_eq!(mime::canonicalize(b"\r\r\n\n"), b"\r\n\r\n\r\n");
    assert_eq!(mime::canonicalize(b"a\r\nb\r\n"), b"a\r\nb\r\n");
    assert_eq!(mime::canonicalize(b"a\r"), b"a\r\n");
    assert_eq!(
        mime::decode_base64(b" aGVs\r\nbG 8=\r\n\r\n").expect("spaces"),
        b"hello"
    );
    let long = vec![b'x'; 200];
    let encoded = mime::encode_base64_lines(&long);
    assert!(encoded.split(|&b| b == b'\n').all(|l| l.len() <= 77));
    assert_eq!(mime::decode_base64(&encoded).expect("round trip"), long);
    // Lines of 76 characters ended by CR LF, the last one shorter and padded, at every length
    // around a line's 57 bytes.
    assert_eq!(mime::encode_base64_lines(b""), b"");
    assert_eq!(mime::encode_base64_lines(b"hello"), b"aGVsbG8=\r\n");
    for len in [1usize, 56, 57, 58, 113, 114, 115, 1000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = mime::encode_base64_lines(&data);
        let lines: Vec<&[u8]> = encoded.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), len.div_ceil(57), "{len}");
        for (i, line) in lines.iter().enumerate() {
            assert!(line.ends_with(b"\r\n"));
            if i + 1 < lines.len() {
                assert_eq!(line.len(), 78);
            }
        }
        assert_eq!(mime::decode_base64(&encoded).expect("round trip"), data);
    }
}

/// Every prefix of a nested message, and every single-byte change to it, parses or fails with
/// an error: never a panic.
#[test]
fn cut_and_mangled_input_never_panics() {
    let message = b"From: a@b.org\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/signed; boundary=i; protocol=\"application/pkcs7-signature\"\r\n\r\n--i\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--i\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=4=\r\n--i--\r\n--o--\r\n";
    for end in 0..=message.len() {
        let _ = describe(&message[..end]);
    }
    for i in 0..message.len() {
        for replacement in [b'\r', b'\n', b'-', b'=', b'"', 0xff, b':', b' '] {
            let mut mangled = message.to_vec();
            mangled[i] = replacement;
            let _ = describe(&mangled);
        }
    }
}
