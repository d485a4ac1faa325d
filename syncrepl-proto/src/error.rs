//! The crate's error type: what the server did wrong, kept apart from what the caller did wrong.

use crate::types::MessageId;

/// Why bytes from the server could not be decoded (X.690 BER as restricted by RFC 4511 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An element claims more content than its enclosing element holds.
    #[error("truncated BER element")]
    Truncated,
    /// The indefinite length form, which RFC 4511 §5.1 forbids.
    #[error("indefinite BER length (forbidden by RFC 4511 §5.1)")]
    IndefiniteLength,
    /// A length that is reserved or does not fit in 64 bits.
    #[error("invalid BER length")]
    BadLength,
    /// A multi-octet tag, which LDAP never uses.
    #[error("unsupported BER tag {tag:#04x}")]
    UnsupportedTag {
        /// The identifier octet.
        tag: u8,
    },
    /// An element with a tag other than the one the grammar requires here.
    #[error("{what}: expected tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag {
        /// The element being decoded.
        what: &'static str,
        /// The tag the grammar requires.
        expected: u8,
        /// The tag that was sent.
        found: u8,
    },
    /// Bytes left over inside an element after its last component.
    #[error("{what}: trailing bytes")]
    TrailingBytes {
        /// The element being decoded.
        what: &'static str,
    },
    /// A BOOLEAN whose content is not exactly one octet.
    #[error("{what}: invalid BOOLEAN")]
    BadBoolean {
        /// The element being decoded.
        what: &'static str,
    },
    /// An INTEGER or ENUMERATED that is negative or does not fit.
    #[error("{what}: invalid INTEGER")]
    BadInteger {
        /// The element being decoded.
        what: &'static str,
    },
    /// An LDAPString that is not UTF-8 (RFC 4511 §4.1.2).
    #[error("{what}: not UTF-8")]
    InvalidUtf8 {
        /// The element being decoded.
        what: &'static str,
    },
    /// A value the grammar does not allow, e.g. an unknown sync state.
    #[error("{what}: value {value} out of range")]
    OutOfRange {
        /// The element being decoded.
        what: &'static str,
        /// The value that was sent.
        value: i64,
    },
    /// The generic ASN.1 decoder refused the element.
    #[error("{what}: {message}")]
    Asn1 {
        /// The element being decoded.
        what: &'static str,
        /// What the decoder said.
        message: String,
    },
}

impl DecodeError {
    /// Wraps an error from rasn's BER decoder.
    pub(crate) fn asn1(what: &'static str, err: impl std::fmt::Display) -> Self {
        DecodeError::Asn1 {
            what,
            message: err.to_string(),
        }
    }
}

/// A rule of RFC 4511 or RFC 4533 that the server broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A response to a message id we never sent or that has already completed.
    #[error("response to unknown message id {id}")]
    UnknownMessageId {
        /// The message id the server used.
        id: MessageId,
    },
    /// A response whose kind does not answer the request with that id.
    #[error("message id {id}: unexpected {found} in answer to {request}")]
    UnexpectedResponse {
        /// The message id.
        id: MessageId,
        /// What we asked.
        request: &'static str,
        /// What came back.
        found: &'static str,
    },
    /// A protocolOp a server never sends (a request, or an unknown application tag).
    #[error("unexpected protocolOp tag {tag:#04x}")]
    UnexpectedOperation {
        /// The protocolOp tag.
        tag: u8,
    },
    /// RFC 4533 §2.3: every entry of a sync search carries exactly one Sync State Control.
    #[error("entry {dn:?} has {count} Sync State Controls (exactly one is required)")]
    SyncStateControlCount {
        /// The entry's DN.
        dn: String,
        /// How many there were.
        count: usize,
    },
    /// RFC 4533 §2.1: a syncUUID is exactly 16 octets.
    #[error("syncUUID of {len} octets (must be 16)")]
    BadUuidLength {
        /// The length that was sent.
        len: usize,
    },
    /// RFC 4533 §3.4: the present state is only used in the refresh stage.
    #[error("entry {dn:?} with state present during the persist stage")]
    PresentInPersist {
        /// The entry's DN.
        dn: String,
    },
    /// A Sync Info Message that the current stage does not allow.
    #[error("{message} is not allowed {stage}")]
    SyncInfoNotAllowed {
        /// The syncInfo choice.
        message: &'static str,
        /// Where it arrived.
        stage: &'static str,
    },
    /// An intermediate response that is not a Sync Info Message.
    #[error("intermediate response {name:?} is not a Sync Info Message")]
    UnknownIntermediate {
        /// Its responseName.
        name: Option<String>,
    },
    /// Bytes arrived after a successful StartTLS response but before TLS was set up (RFC 4511 §4.14.2).
    #[error("cleartext bytes after the StartTLS response")]
    DataAfterStartTls,
    /// A Who am I? response whose value is not an authzId (RFC 4532 §2.2).
    #[error("malformed Who am I? response")]
    BadWhoAmI,
    /// An entry of a DirSync pass without exactly one objectGUID of 16 octets (MS-ADTS
    /// §3.1.1.3.4.1.3: every object carries it).
    #[error("DirSync entry {dn:?} has no single 16-octet objectGUID (found {len:?} octets)")]
    BadObjectGuid {
        /// The entry's DN.
        dn: String,
        /// The length of the value found, if there was one value.
        len: Option<usize>,
    },
    /// A successful DirSync search without the DirSync response control, which carries the cookie.
    #[error("DirSync search ended without the DirSync response control")]
    MissingDirSyncControl,
}

/// Everything that can go wrong in a [`Session`](crate::Session).
///
/// Errors caused by the server ([`Error::MessageTooLarge`], [`Error::Decode`], [`Error::Protocol`]) and
/// [`Error::Timeout`] are fatal and sticky: every later call returns the same error. Errors caused by the
/// caller ([`Error::Busy`], [`Error::InvalidState`], [`Error::InvalidRequest`],
/// [`Error::InvalidFilter`]) leave the session as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server announced a message larger than the configured maximum; nothing was allocated for it.
    #[error("server message of {length} octets exceeds the limit of {max}")]
    MessageTooLarge {
        /// The announced length, header included.
        length: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A message from the server is not valid BER or not a valid LDAP message.
    #[error("malformed message from the server: {0}")]
    Decode(#[from] DecodeError),
    /// The server broke a rule of the protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(#[from] Violation),
    /// A request got no answer in time.
    #[error("{operation} got no response in time")]
    Timeout {
        /// The request that timed out.
        operation: &'static str,
    },
    /// The connection was closed: after an unbind, a notice of disconnection, or a fatal error.
    #[error("the session is closed")]
    Closed,
    /// The call must wait for an outstanding request (RFC 4511 §4.2.1 and §4.14.1 forbid sending
    /// anything while a bind or StartTLS is in progress).
    #[error("cannot send {operation} while {pending} is in progress")]
    Busy {
        /// What the caller tried to send.
        operation: &'static str,
        /// What is outstanding.
        pending: &'static str,
    },
    /// The call makes no sense in the session's current state.
    #[error("cannot {operation}: {reason}")]
    InvalidState {
        /// What the caller tried to do.
        operation: &'static str,
        /// Why it cannot be done now.
        reason: &'static str,
    },
    /// The request the caller built cannot be encoded.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The search filter is not an RFC 4515 filter.
    #[error("invalid search filter: {0}")]
    InvalidFilter(#[from] crate::filter::FilterError),
}

impl Error {
    /// Whether this error ends the session (it came from the server or the clock, not the caller).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::MessageTooLarge { .. }
                | Error::Decode(_)
                | Error::Protocol(_)
                | Error::Timeout { .. }
                | Error::Closed
        )
    }
}
