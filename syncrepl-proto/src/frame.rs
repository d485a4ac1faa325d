//! LDAP framing (RFC 4511 §5.1): where one LDAPMessage ends in a receive buffer.

use crate::ber::{peek_header, Peek, TAG_SEQUENCE};
use crate::error::{DecodeError, Error};

/// What the start of a receive buffer holds (see [`message_length`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete LDAPMessage of this many bytes, header included.
    Complete(usize),
    /// Not all of it yet; its total length once the header is known.
    Partial(Option<usize>),
}

/// Finds the LDAPMessage at the start of `buf` (RFC 4511 §5.1): a SEQUENCE with a definite length
/// of at most `max` bytes in all. A message announcing more is refused as soon as its header is
/// seen, before anything is allocated for it.
pub fn message_length(buf: &[u8], max: usize) -> Result<Frame, Error> {
    let header = match peek_header(buf)? {
        Peek::Incomplete => return Ok(Frame::Partial(None)),
        Peek::Header(h) => h,
    };
    if header.tag != TAG_SEQUENCE {
        return Err(DecodeError::UnexpectedTag {
            what: "LDAPMessage",
            expected: TAG_SEQUENCE,
            found: header.tag,
        }
        .into());
    }
    let total = header.content_len.saturating_add(header.header_len as u64);
    if total > max as u64 {
        return Err(Error::MessageTooLarge { length: total, max });
    }
    let total = total as usize;
    Ok(if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Partial(Some(total))
    })
}
