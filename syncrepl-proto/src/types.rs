//! Values shared by requests, events and the mirror: entryUUIDs, cookies, sync states and LDAP results.

use std::fmt;

use bytes::Bytes;

/// An LDAP message id (RFC 4511 §4.1.1.1); 0 is reserved for unsolicited notifications.
pub type MessageId = u32;

/// An entry's entryUUID as carried in the Sync State Control: 16 raw octets (RFC 4533 §2.1, RFC 4530).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryUuid(pub [u8; 16]);

impl EntryUuid {
    /// Takes a syncUUID from the wire, which must be exactly 16 octets.
    pub fn from_slice(raw: &[u8]) -> Option<EntryUuid> {
        <[u8; 16]>::try_from(raw).ok().map(EntryUuid)
    }

    /// The 16 raw octets.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for EntryUuid {
    /// The RFC 4122 text form, as slapd shows entryUUID: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 36];
        let mut at = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                text[at] = b'-';
                at += 1;
            }
            text[at] = HEX[usize::from(b >> 4)];
            text[at + 1] = HEX[usize::from(b & 0x0f)];
            at += 2;
        }
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for EntryUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryUuid({self})")
    }
}

impl std::str::FromStr for EntryUuid {
    type Err = ParseUuidError;

    /// Parses the RFC 4122 text form (hyphens optional, case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        let mut nibbles = s.bytes().filter(|&c| c != b'-');
        for byte in &mut out {
            let hi = nibbles.next().and_then(hex_value).ok_or(ParseUuidError)?;
            let lo = nibbles.next().and_then(hex_value).ok_or(ParseUuidError)?;
            *byte = hi << 4 | lo;
        }
        if nibbles.next().is_some() {
            return Err(ParseUuidError);
        }
        Ok(EntryUuid(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// The text did not hold 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID (expected 32 hexadecimal digits)")]
pub struct ParseUuidError;

/// A syncCookie: opaque server state that lets the next sync resume where this one stopped (RFC 4533 §2.1).
///
/// The client stores it and sends it back. Only slapd's is read, to keep the CSN of every
/// serverID in multi-provider replication ([`Cookie::merge`], [`SlapdCookie`](crate::SlapdCookie));
/// every other server's stays opaque.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cookie(pub Bytes);

impl Cookie {
    /// The raw octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for Cookie {
    fn from(raw: &[u8]) -> Self {
        Cookie(Bytes::copy_from_slice(raw))
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({self})")
    }
}

impl fmt::Display for Cookie {
    /// Printable cookies (slapd's `rid=000,csn=…`) as text, others escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

/// The state an entry is reported in by the Sync State Control (RFC 4533 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// The entry is unchanged and still in the content (refresh present phase only).
    Present,
    /// The entry was added to the content.
    Add,
    /// The entry was changed (attributes or DN).
    Modify,
    /// The entry left the content.
    Delete,
}

impl SyncState {
    /// The ENUMERATED value on the wire.
    pub fn to_wire(self) -> u32 {
        match self {
            SyncState::Present => 0,
            SyncState::Add => 1,
            SyncState::Modify => 2,
            SyncState::Delete => 3,
        }
    }

    /// The state for an ENUMERATED value from the wire.
    pub fn from_wire(value: u32) -> Option<SyncState> {
        Some(match value {
            0 => SyncState::Present,
            1 => SyncState::Add,
            2 => SyncState::Modify,
            3 => SyncState::Delete,
            _ => return None,
        })
    }
}

/// The mode of a sync search (RFC 4533 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Poll: one refresh, ended by a SearchResultDone with a Sync Done Control.
    RefreshOnly,
    /// Listen: a refresh, then the persist stage streaming changes until cancelled.
    RefreshAndPersist,
}

/// An LDAP resultCode (RFC 4511 §4.1.9, Appendix A), kept as a number so that codes from extensions
/// (RFC 3909's canceled, RFC 4533's e-syncRefreshRequired) are never lost.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultCode(pub u32);

impl ResultCode {
    /// success (0).
    pub const SUCCESS: ResultCode = ResultCode(0);
    /// operationsError (1).
    pub const OPERATIONS_ERROR: ResultCode = ResultCode(1);
    /// protocolError (2).
    pub const PROTOCOL_ERROR: ResultCode = ResultCode(2);
    /// sizeLimitExceeded (4).
    pub const SIZE_LIMIT_EXCEEDED: ResultCode = ResultCode(4);
    /// referral (10).
    pub const REFERRAL: ResultCode = ResultCode(10);
    /// unavailableCriticalExtension (12): the server does not support a critical control, e.g. no syncprov.
    pub const UNAVAILABLE_CRITICAL_EXTENSION: ResultCode = ResultCode(12);
    /// confidentialityRequired (13): the operation needs a stronger connection (TLS or a SASL
    /// layer), e.g. slapd's `security ssf=56`.
    pub const CONFIDENTIALITY_REQUIRED: ResultCode = ResultCode(13);
    /// saslBindInProgress (14).
    pub const SASL_BIND_IN_PROGRESS: ResultCode = ResultCode(14);
    /// noSuchObject (32).
    pub const NO_SUCH_OBJECT: ResultCode = ResultCode(32);
    /// invalidCredentials (49).
    pub const INVALID_CREDENTIALS: ResultCode = ResultCode(49);
    /// insufficientAccessRights (50).
    pub const INSUFFICIENT_ACCESS_RIGHTS: ResultCode = ResultCode(50);
    /// busy (51).
    pub const BUSY: ResultCode = ResultCode(51);
    /// unavailable (52).
    pub const UNAVAILABLE: ResultCode = ResultCode(52);
    /// unwillingToPerform (53).
    pub const UNWILLING_TO_PERFORM: ResultCode = ResultCode(53);
    /// other (80).
    pub const OTHER: ResultCode = ResultCode(80);
    /// canceled (118), RFC 3909: the operation was cancelled.
    pub const CANCELED: ResultCode = ResultCode(118);
    /// noSuchOperation (119), RFC 3909.
    pub const NO_SUCH_OPERATION: ResultCode = ResultCode(119);
    /// tooLate (120), RFC 3909.
    pub const TOO_LATE: ResultCode = ResultCode(120);
    /// cannotCancel (121), RFC 3909.
    pub const CANNOT_CANCEL: ResultCode = ResultCode(121);
    /// e-syncRefreshRequired (4096), RFC 4533 §2.5.2: the cookie is too old, a full reload is needed.
    pub const SYNC_REFRESH_REQUIRED: ResultCode = ResultCode(4096);

    /// The name RFC 4511 (or the extension defining it) gives this code, if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "success",
            1 => "operationsError",
            2 => "protocolError",
            3 => "timeLimitExceeded",
            4 => "sizeLimitExceeded",
            7 => "authMethodNotSupported",
            8 => "strongerAuthRequired",
            10 => "referral",
            11 => "adminLimitExceeded",
            12 => "unavailableCriticalExtension",
            13 => "confidentialityRequired",
            14 => "saslBindInProgress",
            16 => "noSuchAttribute",
            17 => "undefinedAttributeType",
            18 => "inappropriateMatching",
            19 => "constraintViolation",
            21 => "invalidAttributeSyntax",
            32 => "noSuchObject",
            34 => "invalidDNSyntax",
            48 => "inappropriateAuthentication",
            49 => "invalidCredentials",
            50 => "insufficientAccessRights",
            51 => "busy",
            52 => "unavailable",
            53 => "unwillingToPerform",
            54 => "loopDetect",
            80 => "other",
            118 => "canceled",
            119 => "noSuchOperation",
            120 => "tooLate",
            121 => "cannotCancel",
            4096 => "e-syncRefreshRequired",
            _ => return None,
        })
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "result code {}", self.0),
        }
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The LDAPResult of a response (RFC 4511 §4.1.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapResult {
    /// The resultCode.
    pub code: ResultCode,
    /// The matchedDN (for noSuchObject, the closest existing ancestor).
    pub matched_dn: String,
    /// The server's diagnosticMessage, often the most useful part of an error.
    pub diagnostic_message: String,
    /// Referral URIs, when the code is referral.
    pub referral: Vec<String>,
}

impl LdapResult {
    /// Whether the code is success.
    pub fn is_success(&self) -> bool {
        self.code == ResultCode::SUCCESS
    }
}

impl fmt::Display for LdapResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.diagnostic_message.is_empty() {
            write!(f, ": {}", self.diagnostic_message)?;
        }
        if !self.matched_dn.is_empty() {
            write!(f, " (matched DN {:?})", self.matched_dn)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trip() {
        let uuid = EntryUuid([
            0x4f, 0x3b, 0x1c, 0x70, 0x0a, 0x1e, 0x10, 0x3d, 0x8b, 0x9c, 0x1b, 0x6e, 0x5a, 0x55,
            0x38, 0x2d,
        ]);
        let text = uuid.to_string();
        assert_eq!(text, "4f3b1c70-0a1e-103d-8b9c-1b6e5a55382d");
        assert_eq!(text.parse::<EntryUuid>(), Ok(uuid));
        assert_eq!(text.to_uppercase().parse::<EntryUuid>(), Ok(uuid));
        assert_eq!("4f3b1c70".parse::<EntryUuid>(), Err(ParseUuidError));
        assert_eq!(
            format!("{text}00").parse::<EntryUuid>(),
            Err(ParseUuidError)
        );
        assert_eq!(EntryUuid::from_slice(&[0; 15]), None);
    }

    #[test]
    fn result_code_names() {
        assert_eq!(
            ResultCode::SYNC_REFRESH_REQUIRED.to_string(),
            "e-syncRefreshRequired (4096)"
        );
        assert_eq!(ResultCode(9999).to_string(), "result code 9999");
        assert_eq!(
            ResultCode::INVALID_CREDENTIALS.to_string(),
            "invalidCredentials (49)"
        );
    }

    #[test]
    fn sync_state_wire_values() {
        for v in 0..4 {
            let state = SyncState::from_wire(v).expect("defined state");
            assert_eq!(state.to_wire(), v);
        }
        assert_eq!(SyncState::from_wire(4), None);
    }
}
