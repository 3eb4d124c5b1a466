//! Just enough DER to lift the certificates out of a CMS SignedData before OpenSSL parses it.
//!
//! OpenSSL 3.0 (Debian 12's, which nutmeg links) decodes every certificate's public key through
//! its provider decoders, which costs about 0.3 ms of CPU per certificate: more than the RSA
//! operation that verifies the signature. A signed message carries its signer's certificate, and
//! the same signer sends the same bytes message after message, so [`split_certificates`] hands the
//! caller those bytes apart from the rest, to be parsed once per distinct certificate. Anything
//! this reader does not follow (indefinite lengths, long tags, other certificate choices) answers
//! `None`, and the caller parses the whole structure as before.

/// The DER of the content-type OID `id-signedData` (1.2.840.113549.1.7.2).
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// One element: its tag, its content, and the whole of it (header and content).
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads the element at the start of `input`; `None` for a long tag, an indefinite or oversized
/// length, or too few bytes.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let bytes = rest.get(..n)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        }
        _ => return None,
    };
    let content = rest.get(..len)?;
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            content,
            whole: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// The elements of a constructed element's content, in order; `None` if one does not read.
fn elements(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read(content)?;
        out.push(tlv);
        content = rest;
    }
    Some(out)
}

/// Appends an element of `tag` whose content is `parts` joined (the length in its shortest form).
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// A SignedData taken apart: the ContentInfo without its `certificates`, and each certificate's DER.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    pub without_certificates: Vec<u8>,
    pub certificates: Vec<&'a [u8]>,
}

/// Splits a DER ContentInfo holding a SignedData into the same ContentInfo without its
/// `certificates` field and the certificates it held. `None` when `der` is not that, is not
/// plain DER, carries no certificates, or carries something other than X.509 certificates.
pub(crate) fn split_certificates(der: &[u8]) -> Option<Split<'_>> {
    let (info, rest) = read(der)?;
    if info.tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let [oid, explicit] = elements(info.content)?.try_into().ok()?;
    if oid.tag != 0x06 || oid.content != SIGNED_DATA || explicit.tag != 0xa0 {
        return None;
    }
    let [signed] = elements(explicit.content)?.try_into().ok()?;
    if signed.tag != 0x30 {
        return None;
    }
    let fields = elements(signed.content)?;
    // SignedData: version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos.
    let at = fields.iter().position(|f| f.tag == 0xa0)?;
    if at != 3 {
        return None;
    }
    let certificates = elements(fields[at].content)?;
    if certificates.is_empty() || certificates.iter().any(|c| c.tag != 0x30) {
        return None;
    }
    let kept: Vec<&[u8]> = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, f)| f.whole)
        .collect();
    let mut signed_data = Vec::with_capacity(signed.content.len());
    write(&mut signed_data, 0x30, &kept);
    let mut inner = Vec::with_capacity(signed_data.len() + 8);
    write(&mut inner, 0xa0, &[&signed_data]);
    let mut without_certificates = Vec::with_capacity(inner.len() + 32);
    write(&mut without_certificates, 0x30, &[oid.whole, &inner]);
    Some(Split {
        without_certificates,
        certificates: certificates.iter().map(|c| c.whole).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, tag, parts);
        out
    }

    fn oid() -> Vec<u8> {
        element(0x06, &[SIGNED_DATA])
    }

    fn content_info(fields: &[&[u8]]) -> Vec<u8> {
        let signed = element(0x30, fields);
        element(0x30, &[&oid(), &element(0xa0, &[&signed])])
    }

    #[test]
    fn lengths_are_written_in_the_shortest_form_and_read_back() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 200_000] {
            let content = vec![7u8; len];
            let der = element(0x04, &[&content]);
            let (tlv, rest) = read(&der).unwrap();
            assert_eq!((tlv.tag, tlv.content.len(), rest.len()), (0x04, len, 0));
            assert_eq!(tlv.whole, &der[..]);
        }
        assert_eq!(element(0x04, &[&[1u8; 128]])[..3], [0x04, 0x81, 0x80]);
    }

    #[test]
    fn certificates_come_out_and_every_other_field_stays_in_order() {
        let version = element(0x02, &[&[1]]);
        let digests = element(0x31, &[]);
        let encap = element(0x30, &[&element(0x06, &[&[1, 2, 3]])]);
        let cert_a = element(0x30, &[&[0xaa; 300]]);
        let cert_b = element(0x30, &[&[0xbb; 20]]);
        let certs = element(0xa0, &[&cert_a, &cert_b]);
        let signers = element(0x31, &[&element(0x30, &[&[5; 200]])]);
        let der = content_info(&[&version, &digests, &encap, &certs, &signers]);
        let split = split_certificates(&der).unwrap();
        assert_eq!(split.certificates, vec![&cert_a[..], &cert_b[..]]);
        assert_eq!(
            split.without_certificates,
            content_info(&[&version, &digests, &encap, &signers])
        );
    }

    #[test]
    fn what_it_does_not_follow_is_left_whole() {
        let version = element(0x02, &[&[1]]);
        let cert = element(0x30, &[&[0xaa; 10]]);
        let signers = element(0x31, &[]);
        // No certificates: nothing to split.
        assert_eq!(
            split_certificates(&content_info(&[&version, &version, &version, &signers])),
            None
        );
        // An attribute certificate among them ([1] choice).
        let odd = element(0xa0, &[&cert, &element(0xa1, &[&[1]])]);
        assert_eq!(
            split_certificates(&content_info(&[
                &version, &version, &version, &odd, &signers
            ])),
            None
        );
        // Indefinite length (BER), as streaming encoders write it.
        let mut ber = vec![0x30, 0x80];
        ber.extend_from_slice(&oid());
        ber.extend_from_slice(&[0, 0]);
        assert_eq!(split_certificates(&ber), None);
        // Another content type, trailing bytes, truncation.
        let certs = element(0xa0, &[&cert]);
        let good = content_info(&[&version, &version, &version, &certs, &signers]);
        assert!(split_certificates(&good).is_some());
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(split_certificates(&trailing), None);
        assert_eq!(split_certificates(&good[..good.len() - 1]), None);
        let enveloped = element(
            0x30,
            &[
                &element(
                    0x06,
                    &[&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03]],
                ),
                &element(0xa0, &[&element(0x30, &[&version, &certs])]),
            ],
        );
        assert_eq!(split_certificates(&enveloped), None);
    }
}
