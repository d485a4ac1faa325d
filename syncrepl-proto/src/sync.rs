//! The RFC 4533 controls and intermediate message values, as ASN.1 types for `rasn`.
//!
//! rasn-ldap has none of these, so they are defined here from RFC 4533 §2. The module of RFC 4533 uses
//! IMPLICIT TAGS, as LDAP does. Components with a DEFAULT (reloadHint FALSE, refreshDone TRUE,
//! refreshDeletes FALSE) are left out when encoding the default and accepted both left out and explicit
//! when decoding.

use rasn::prelude::*;

use crate::ber::{Reader, TAG_ENUMERATED, TAG_OCTET_STRING, TAG_SEQUENCE};
use crate::error::{DecodeError, Violation};
use crate::types::{Cookie, EntryUuid, SyncMode, SyncState};

/// OID of the Sync Request Control (RFC 4533 §2.2).
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// OID of the Sync State Control (RFC 4533 §2.3).
pub const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// OID of the Sync Done Control (RFC 4533 §2.4).
pub const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// OID of the Sync Info Message, an intermediate response (RFC 4533 §2.5).
pub const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";

/// The mode component of syncRequestValue.
#[derive(AsnType, Encode, Decode, Debug, Clone, Copy, PartialEq, Eq)]
#[rasn(enumerated)]
pub enum RequestMode {
    /// refreshOnly (1).
    RefreshOnly = 1,
    /// refreshAndPersist (3).
    RefreshAndPersist = 3,
}

impl From<SyncMode> for RequestMode {
    fn from(mode: SyncMode) -> Self {
        match mode {
            SyncMode::RefreshOnly => RequestMode::RefreshOnly,
            SyncMode::RefreshAndPersist => RequestMode::RefreshAndPersist,
        }
    }
}

/// syncRequestValue, the value of the Sync Request Control (RFC 4533 §2.2).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncRequestValue {
    /// refreshOnly or refreshAndPersist.
    pub mode: RequestMode,
    /// The cookie of the last sync, if any.
    pub cookie: Option<OctetString>,
    /// Asks the server to send a full refresh rather than e-syncRefreshRequired.
    #[rasn(default)]
    pub reload_hint: bool,
}

/// The state component of syncStateValue.
#[derive(AsnType, Encode, Decode, Debug, Clone, Copy, PartialEq, Eq)]
#[rasn(enumerated)]
pub enum StateEnum {
    /// present (0).
    Present = 0,
    /// add (1).
    Add = 1,
    /// modify (2).
    Modify = 2,
    /// delete (3).
    Delete = 3,
}

impl From<StateEnum> for SyncState {
    fn from(state: StateEnum) -> Self {
        match state {
            StateEnum::Present => SyncState::Present,
            StateEnum::Add => SyncState::Add,
            StateEnum::Modify => SyncState::Modify,
            StateEnum::Delete => SyncState::Delete,
        }
    }
}

impl From<SyncState> for StateEnum {
    fn from(state: SyncState) -> Self {
        match state {
            SyncState::Present => StateEnum::Present,
            SyncState::Add => StateEnum::Add,
            SyncState::Modify => StateEnum::Modify,
            SyncState::Delete => StateEnum::Delete,
        }
    }
}

/// syncStateValue, the value of the Sync State Control on every entry (RFC 4533 §2.3).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncStateValue {
    /// present, add, modify or delete.
    pub state: StateEnum,
    /// The entry's entryUUID, 16 octets.
    pub entry_uuid: OctetString,
    /// A cookie, if the server chose to send one with this entry.
    pub cookie: Option<OctetString>,
}

/// syncDoneValue, the value of the Sync Done Control on the SearchResultDone (RFC 4533 §2.4).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncDoneValue {
    /// The cookie to use for the next sync.
    pub cookie: Option<OctetString>,
    /// TRUE: the refresh used the delete phase; FALSE: the present phase, so every entry not
    /// presented must be deleted.
    #[rasn(default)]
    pub refresh_deletes: bool,
}

fn default_true() -> bool {
    true
}

/// The refreshDelete and refreshPresent choices of syncInfoValue.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct RefreshPhaseValue {
    /// A cookie covering the phase, if sent.
    pub cookie: Option<OctetString>,
    /// TRUE (the default) when the refresh stage is over.
    #[rasn(default = "default_true")]
    pub refresh_done: bool,
}

/// The syncIdSet choice of syncInfoValue: many entryUUIDs in one message.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncIdSetValue {
    /// A cookie covering the set, if sent.
    pub cookie: Option<OctetString>,
    /// TRUE: the entries were deleted; FALSE: they are present.
    #[rasn(default)]
    pub refresh_deletes: bool,
    /// The entryUUIDs, 16 octets each.
    pub sync_uuids: SetOf<OctetString>,
}

/// syncInfoValue, the value of the Sync Info Message (RFC 4533 §2.5).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice)]
pub enum SyncInfoValue {
    /// newcookie `[0]`: a new cookie, nothing else.
    #[rasn(tag(context, 0))]
    NewCookie(OctetString),
    /// refreshDelete `[1]`: the end of a delete phase.
    #[rasn(tag(context, 1))]
    RefreshDelete(RefreshPhaseValue),
    /// refreshPresent `[2]`: the end of a present phase.
    #[rasn(tag(context, 2))]
    RefreshPresent(RefreshPhaseValue),
    /// syncIdSet `[3]`: a set of present or deleted entryUUIDs.
    #[rasn(tag(context, 3))]
    SyncIdSet(SyncIdSetValue),
}

/// Encodes a value with BER. The types of this module have no constraints that a value could
/// break, so encoding cannot fail; if it ever did, an empty value must not go on the wire.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    rasn::ber::encode(value).expect("the sync types have no constraints a value could break")
}

/// Decodes one value that must fill `input` exactly.
pub fn decode<T: Decode>(input: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let (value, rest) =
        rasn::ber::decode_with_remainder::<T>(input).map_err(|e| DecodeError::asn1(what, e))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes { what })
    }
}

/// The Sync State Control value as the hot path reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncStateFields {
    pub(crate) state: SyncState,
    pub(crate) entry_uuid: EntryUuid,
    pub(crate) cookie: Option<Cookie>,
}

/// Why a Sync State Control value was refused: bad BER, or a rule of RFC 4533 broken.
#[derive(Debug)]
pub(crate) enum SyncStateError {
    Decode(DecodeError),
    Violation(Violation),
}

impl From<DecodeError> for SyncStateError {
    fn from(e: DecodeError) -> Self {
        SyncStateError::Decode(e)
    }
}

/// Reads a syncStateValue without allocating (slapd sends `30 15 0a 01 STATE 04 10` + 16 octets).
///
/// `frame` is the whole message, so the cookie can be a zero-copy slice of it.
pub(crate) fn read_sync_state(
    frame: &bytes::Bytes,
    value: crate::ber::Tlv,
) -> Result<SyncStateFields, SyncStateError> {
    let outer = Reader::new(frame).inside(value);
    let mut outer = outer;
    let seq = outer.read(TAG_SEQUENCE, "syncStateValue")?;
    outer.finish("Sync State Control value")?;
    let mut r = outer.inside(seq);
    let state = r.read_u32(TAG_ENUMERATED, "syncStateValue.state")?;
    let state = SyncState::from_wire(state).ok_or(DecodeError::OutOfRange {
        what: "syncStateValue.state",
        value: i64::from(state),
    })?;
    let uuid = r.read(TAG_OCTET_STRING, "syncStateValue.entryUUID")?;
    let uuid_bytes = r.content(uuid);
    let entry_uuid = EntryUuid::from_slice(uuid_bytes).ok_or(SyncStateError::Violation(
        Violation::BadUuidLength {
            len: uuid_bytes.len(),
        },
    ))?;
    let cookie = r
        .read_optional(TAG_OCTET_STRING)?
        .map(|c| Cookie(frame.slice(c.start..c.end)));
    r.finish("syncStateValue")?;
    Ok(SyncStateFields {
        state,
        entry_uuid,
        cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| {
                let text = std::str::from_utf8(p).expect("ascii");
                u8::from_str_radix(text, 16).expect("hex digit")
            })
            .collect()
    }

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(value: &T, wire: &str) {
        assert_eq!(encode(value), hex(wire), "encoding of {value:?}");
        assert_eq!(decode::<T>(&hex(wire), "test").as_ref(), Ok(value));
    }

    #[test]
    fn sync_request_value() {
        round_trip(
            &SyncRequestValue {
                mode: RequestMode::RefreshOnly,
                cookie: None,
                reload_hint: false,
            },
            "30 03 0a 01 01",
        );
        round_trip(
            &SyncRequestValue {
                mode: RequestMode::RefreshAndPersist,
                cookie: Some(OctetString::from_static(b"rid=000")),
                reload_hint: true,
            },
            "30 0f 0a 01 03 04 07 726964 3d 303030 01 01 ff",
        );
        let explicit_default = decode::<SyncRequestValue>(&hex("30 06 0a 01 01 01 01 00"), "t");
        assert_eq!(
            explicit_default,
            Ok(SyncRequestValue {
                mode: RequestMode::RefreshOnly,
                cookie: None,
                reload_hint: false
            })
        );
        assert!(decode::<SyncRequestValue>(&hex("30 03 0a 01 02"), "t").is_err());
    }

    #[test]
    fn sync_state_value() {
        let uuid = "00112233445566778899aabbccddeeff";
        let wire = format!("30 15 0a 01 01 04 10 {uuid}");
        let value = SyncStateValue {
            state: StateEnum::Add,
            entry_uuid: OctetString::from(hex(uuid)),
            cookie: None,
        };
        round_trip(&value, &wire);
        let with_cookie = SyncStateValue {
            cookie: Some(OctetString::from_static(b"c")),
            ..value
        };
        round_trip(
            &with_cookie,
            &format!("30 18 0a 01 01 04 10 {uuid} 04 01 63"),
        );
    }

    #[test]
    fn hot_path_sync_state_agrees() {
        let uuid = "00112233445566778899aabbccddeeff";
        for (wire, state, cookie) in [
            (
                format!("30 15 0a 01 00 04 10 {uuid}"),
                SyncState::Present,
                None,
            ),
            (
                format!("30 15 0a 01 03 04 10 {uuid}"),
                SyncState::Delete,
                None,
            ),
            (
                format!("30 18 0a 01 02 04 10 {uuid} 04 01 63"),
                SyncState::Modify,
                Some(b"c".as_slice()),
            ),
            (
                format!("30 84 00 00 00 15 0a 01 01 04 10 {uuid}"),
                SyncState::Add,
                None,
            ),
        ] {
            let frame = bytes::Bytes::from(hex(&wire));
            let tlv = crate::ber::Tlv {
                tag: 0x04,
                start: 0,
                end: frame.len(),
            };
            let fields = read_sync_state(&frame, tlv).expect("valid literal");
            assert_eq!(fields.state, state);
            assert_eq!(fields.entry_uuid.0.to_vec(), hex(uuid));
            assert_eq!(fields.cookie.as_ref().map(|c| c.as_bytes()), cookie);
            let oracle = decode::<SyncStateValue>(&frame, "oracle").expect("rasn agrees");
            assert_eq!(SyncState::from(oracle.state), state);
        }
        for bad in [
            "30 14 0a 01 01 04 0f 00112233445566778899aabbccddee",
            "30 15 0a 01 04 04 10 00112233445566778899aabbccddeeff",
            "30 17 0a 01 01 04 10 00112233445566778899aabbccddeeff 01 00",
            "30 03 0a 01 01",
        ] {
            let frame = bytes::Bytes::from(hex(bad));
            let tlv = crate::ber::Tlv {
                tag: 0x04,
                start: 0,
                end: frame.len(),
            };
            assert!(read_sync_state(&frame, tlv).is_err(), "{bad}");
        }
    }

    #[test]
    fn sync_done_value() {
        round_trip(
            &SyncDoneValue {
                cookie: None,
                refresh_deletes: false,
            },
            "30 00",
        );
        round_trip(
            &SyncDoneValue {
                cookie: Some(OctetString::from_static(b"ab")),
                refresh_deletes: true,
            },
            "30 07 04 02 6162 01 01 ff",
        );
        assert_eq!(
            decode::<SyncDoneValue>(&hex("30 03 01 01 00"), "t"),
            Ok(SyncDoneValue {
                cookie: None,
                refresh_deletes: false
            })
        );
    }

    #[test]
    fn sync_info_value_every_choice() {
        round_trip(
            &SyncInfoValue::NewCookie(OctetString::from_static(b"ab")),
            "80 02 6162",
        );
        round_trip(
            &SyncInfoValue::RefreshDelete(RefreshPhaseValue {
                cookie: None,
                refresh_done: true,
            }),
            "a1 00",
        );
        round_trip(
            &SyncInfoValue::RefreshPresent(RefreshPhaseValue {
                cookie: Some(OctetString::from_static(b"ab")),
                refresh_done: false,
            }),
            "a2 07 04 02 6162 01 01 00",
        );
        assert_eq!(
            decode::<SyncInfoValue>(&hex("a1 03 01 01 ff"), "t"),
            Ok(SyncInfoValue::RefreshDelete(RefreshPhaseValue {
                cookie: None,
                refresh_done: true
            }))
        );
        let uuid = "00112233445566778899aabbccddeeff";
        round_trip(
            &SyncInfoValue::SyncIdSet(SyncIdSetValue {
                cookie: None,
                refresh_deletes: true,
                sync_uuids: SetOf::from_vec(vec![OctetString::from(hex(uuid))]),
            }),
            &format!("a3 17 01 01 ff 31 12 04 10 {uuid}"),
        );
        assert_eq!(
            decode::<SyncInfoValue>(&hex(&format!("a3 17 01 01 00 31 12 04 10 {uuid}")), "t"),
            Ok(SyncInfoValue::SyncIdSet(SyncIdSetValue {
                cookie: None,
                refresh_deletes: false,
                sync_uuids: SetOf::from_vec(vec![OctetString::from(hex(uuid))]),
            }))
        );
        assert!(decode::<SyncInfoValue>(&hex("84 00"), "t").is_err());
        assert!(decode::<SyncInfoValue>(&hex("80 02 6162 00"), "t").is_err());
    }
}
