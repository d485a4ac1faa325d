//! A small zero-copy BER reader for the messages on the hot path.
//!
//! LDAP (RFC 4511 §5.1) uses a restricted BER: definite lengths only and single-byte tags for everything
//! a server sends us. This reader walks tag-length-value triples over a borrowed slice and hands out
//! offsets, so that callers can cut `bytes::Bytes` views of the frame instead of copying values.

use crate::error::DecodeError;

/// Universal tag of BOOLEAN.
pub(crate) const TAG_BOOLEAN: u8 = 0x01;
/// Universal tag of INTEGER.
pub(crate) const TAG_INTEGER: u8 = 0x02;
/// Universal tag of OCTET STRING.
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
/// Universal tag of ENUMERATED.
pub(crate) const TAG_ENUMERATED: u8 = 0x0a;
/// Universal constructed tag of SEQUENCE / SEQUENCE OF.
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// Universal constructed tag of SET / SET OF.
pub(crate) const TAG_SET: u8 = 0x31;

/// The decoded length header of a BER element: its tag, where its content starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The identifier octet (class, constructed bit and tag number).
    pub(crate) tag: u8,
    /// Number of octets taken by the identifier and the length.
    pub(crate) header_len: usize,
    /// Number of content octets.
    pub(crate) content_len: u64,
}

/// Outcome of looking at the start of a buffer that may hold only part of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// The header is complete.
    Header(Header),
    /// More bytes are needed to read the header.
    Incomplete,
}

/// Reads the identifier and length octets at the start of `buf` (RFC 4511 §5.1, X.690 §8.1).
///
/// Non-minimal long-form lengths (`84 00 00 01 23`) are accepted, as BER allows and slapd sends them;
/// the indefinite form (`80`) and the reserved `ff` are refused. Multi-octet tags never occur in LDAP
/// and are refused too.
pub(crate) fn peek_header(buf: &[u8]) -> Result<Peek, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Ok(Peek::Incomplete);
    };
    if tag & 0x1f == 0x1f {
        return Err(DecodeError::UnsupportedTag { tag });
    }
    let Some(&first) = buf.get(1) else {
        return Ok(Peek::Incomplete);
    };
    if first < 0x80 {
        return Ok(Peek::Header(Header {
            tag,
            header_len: 2,
            content_len: u64::from(first),
        }));
    }
    if first == 0x80 {
        return Err(DecodeError::IndefiniteLength);
    }
    if first == 0xff {
        return Err(DecodeError::BadLength);
    }
    let count = usize::from(first & 0x7f);
    let Some(octets) = buf.get(2..2 + count) else {
        return Ok(Peek::Incomplete);
    };
    let mut len: u64 = 0;
    for &b in octets {
        len = len
            .checked_mul(256)
            .and_then(|l| l.checked_add(u64::from(b)))
            .ok_or(DecodeError::BadLength)?;
    }
    Ok(Peek::Header(Header {
        tag,
        header_len: 2 + count,
        content_len: len,
    }))
}

/// A cursor over BER elements in a borrowed buffer; positions are offsets into `base`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    base: &'a [u8],
    pos: usize,
    end: usize,
}

/// One element read by [`Reader`]: its tag and the offsets of its content within the base buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv {
    pub(crate) tag: u8,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `base`.
    pub(crate) fn new(base: &'a [u8]) -> Self {
        Reader {
            base,
            pos: 0,
            end: base.len(),
        }
    }

    /// A reader over the content of `tlv`, with offsets still relative to the same base.
    pub(crate) fn inside(&self, tlv: Tlv) -> Reader<'a> {
        Reader {
            base: self.base,
            pos: tlv.start,
            end: tlv.end,
        }
    }

    /// The offset of the next element within the base buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Whether every element has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        if self.pos < self.end {
            self.base.get(self.pos).copied()
        } else {
            None
        }
    }

    /// Reads the next element, whatever its tag.
    pub(crate) fn read_any(&mut self) -> Result<Tlv, DecodeError> {
        let rest = self.base.get(self.pos..self.end).unwrap_or(&[]);
        let header = match peek_header(rest)? {
            Peek::Header(h) => h,
            Peek::Incomplete => return Err(DecodeError::Truncated),
        };
        let start = self.pos + header.header_len;
        let len = usize::try_from(header.content_len).map_err(|_| DecodeError::Truncated)?;
        let end = start.checked_add(len).ok_or(DecodeError::Truncated)?;
        if end > self.end {
            return Err(DecodeError::Truncated);
        }
        self.pos = end;
        Ok(Tlv {
            tag: header.tag,
            start,
            end,
        })
    }

    /// Reads the next element and checks its tag.
    pub(crate) fn read(&mut self, tag: u8, what: &'static str) -> Result<Tlv, DecodeError> {
        let tlv = self.read_any()?;
        if tlv.tag != tag {
            return Err(DecodeError::UnexpectedTag {
                what,
                expected: tag,
                found: tlv.tag,
            });
        }
        Ok(tlv)
    }

    /// Reads the next element if it has `tag`, leaving the cursor alone otherwise.
    pub(crate) fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv>, DecodeError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The content octets of `tlv`.
    pub(crate) fn content(&self, tlv: Tlv) -> &'a [u8] {
        self.base.get(tlv.start..tlv.end).unwrap_or(&[])
    }

    /// Fails unless every element has been read.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { what })
        }
    }

    /// Reads a BOOLEAN (any non-zero octet is TRUE, as BER allows).
    pub(crate) fn read_bool(&mut self, tag: u8, what: &'static str) -> Result<bool, DecodeError> {
        let tlv = self.read(tag, what)?;
        match self.content(tlv) {
            [b] => Ok(*b != 0),
            _ => Err(DecodeError::BadBoolean { what }),
        }
    }

    /// Reads a non-negative INTEGER or ENUMERATED that fits in 32 bits.
    pub(crate) fn read_u32(&mut self, tag: u8, what: &'static str) -> Result<u32, DecodeError> {
        let tlv = self.read(tag, what)?;
        decode_u32(self.content(tlv)).ok_or(DecodeError::BadInteger { what })
    }
}

/// Decodes the two's-complement content of a non-negative INTEGER that fits in 32 bits.
pub(crate) fn decode_u32(content: &[u8]) -> Option<u32> {
    let (&first, _) = content.split_first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in content {
        value = value.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    u32::try_from(value).ok()
}

/// Appends a BER length in the shortest form.
pub(crate) fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push(0x80 | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends a complete element with the given tag and content.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    write_length(out, content.len());
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(
            peek_header(&[0x30, 0x05]),
            Ok(Peek::Header(Header {
                tag: 0x30,
                header_len: 2,
                content_len: 5
            }))
        );
        assert_eq!(
            peek_header(&[0x30, 0x84, 0, 0, 1, 0x23]),
            Ok(Peek::Header(Header {
                tag: 0x30,
                header_len: 6,
                content_len: 0x123
            }))
        );
        assert_eq!(peek_header(&[0x30, 0x84, 0, 0]), Ok(Peek::Incomplete));
        assert_eq!(peek_header(&[0x30]), Ok(Peek::Incomplete));
        assert_eq!(peek_header(&[]), Ok(Peek::Incomplete));
    }

    #[test]
    fn refuses_indefinite_and_reserved_lengths() {
        assert_eq!(
            peek_header(&[0x30, 0x80]),
            Err(DecodeError::IndefiniteLength)
        );
        assert_eq!(peek_header(&[0x30, 0xff]), Err(DecodeError::BadLength));
        assert_eq!(
            peek_header(&[0x1f, 0x01]),
            Err(DecodeError::UnsupportedTag { tag: 0x1f })
        );
        let huge = [0x30, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(peek_header(&huge), Err(DecodeError::BadLength));
    }

    #[test]
    fn reader_walks_and_checks() {
        let buf = [0x30, 0x06, 0x02, 0x01, 0x07, 0x01, 0x01, 0xff];
        let mut r = Reader::new(&buf);
        let seq = r.read(TAG_SEQUENCE, "seq").expect("valid literal");
        let mut inner = r.inside(seq);
        assert_eq!(inner.read_u32(TAG_INTEGER, "int"), Ok(7));
        assert_eq!(inner.read_bool(TAG_BOOLEAN, "bool"), Ok(true));
        assert!(inner.finish("seq").is_ok());
        assert!(r.finish("outer").is_ok());

        let truncated = [0x30, 0x06, 0x02, 0x01];
        assert_eq!(
            Reader::new(&truncated).read_any(),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn integers() {
        assert_eq!(decode_u32(&[0x00]), Some(0));
        assert_eq!(decode_u32(&[0x00, 0xff]), Some(255));
        assert_eq!(decode_u32(&[0x7f, 0xff, 0xff, 0xff]), Some(0x7fff_ffff));
        assert_eq!(decode_u32(&[0x00, 0xff, 0xff, 0xff, 0xff]), Some(u32::MAX));
        assert_eq!(decode_u32(&[0x80]), None);
        assert_eq!(decode_u32(&[]), None);
        assert_eq!(decode_u32(&[0x01, 0, 0, 0, 0]), None);
    }

    #[test]
    fn lengths_round_trip() {
        for len in [
            0usize,
            1,
            0x7f,
            0x80,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            16 << 20,
        ] {
            let mut out = vec![0x04];
            write_length(&mut out, len);
            match peek_header(&out) {
                Ok(Peek::Header(h)) => {
                    assert_eq!(h.content_len, len as u64);
                    assert_eq!(h.header_len, out.len());
                }
                other => panic!("{len}: {other:?}"),
            }
        }
    }
}
