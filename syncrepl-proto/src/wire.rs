//! Encoders for what a server sends, for tests and simulated servers (a consumer never needs them).

use rasn::types::OctetString;

use crate::entry::AttributeList;
use crate::message::{
    WireBindResponse, WireExtendedResponse, WireResultCode, WireSearchResultDone,
};
use crate::request::NOTICE_OF_DISCONNECTION_OID;
use crate::sync::{self, StateEnum, SyncDoneValue, SyncInfoValue, SyncStateValue};
use crate::types::{Cookie, EntryUuid, MessageId, ResultCode, SyncState};
use crate::{ber, sync::SYNC_DONE_OID, sync::SYNC_INFO_OID, sync::SYNC_STATE_OID};

/// Wraps a protocolOp's encoding and optional controls in an LDAPMessage.
fn message(id: MessageId, op: &[u8], controls: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    ber::write_tlv(&mut body, ber::TAG_INTEGER, &integer(id));
    body.extend_from_slice(op);
    if !controls.is_empty() {
        let mut list = Vec::new();
        for (oid, value) in controls {
            let mut control = Vec::new();
            ber::write_tlv(&mut control, ber::TAG_OCTET_STRING, oid.as_bytes());
            ber::write_tlv(&mut control, ber::TAG_OCTET_STRING, value);
            ber::write_tlv(&mut list, ber::TAG_SEQUENCE, &control);
        }
        ber::write_tlv(&mut body, 0xa0, &list);
    }
    let mut out = Vec::new();
    ber::write_tlv(&mut out, ber::TAG_SEQUENCE, &body);
    out
}

fn integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut out = bytes[skip..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

fn text(s: &str) -> rasn_ldap::LdapString {
    rasn_ldap::LdapString(s.to_owned())
}

/// A BindResponse with this result code.
pub fn bind_response(id: MessageId, code: ResultCode, diagnostic: &str) -> Vec<u8> {
    let op = sync::encode(&WireBindResponse {
        result_code: WireResultCode(code.0),
        matched_dn: text(""),
        diagnostic_message: text(diagnostic),
        referral: None,
        server_sasl_creds: None,
    });
    message(id, &op, &[])
}

/// A SearchResultEntry with a Sync State Control.
pub fn sync_entry(
    id: MessageId,
    dn: &str,
    attributes: &AttributeList,
    state: SyncState,
    uuid: EntryUuid,
    cookie: Option<&Cookie>,
) -> Vec<u8> {
    let control = sync::encode(&SyncStateValue {
        state: StateEnum::from(state),
        entry_uuid: OctetString::from(uuid.as_bytes().to_vec()),
        cookie: cookie.map(|c| OctetString::from(c.0.clone())),
    });
    search_entry(id, dn, attributes, &[(SYNC_STATE_OID, control)])
}

/// A SearchResultEntry with any controls (OID and value), e.g. none, two, or a malformed one.
pub fn search_entry(
    id: MessageId,
    dn: &str,
    attributes: &AttributeList,
    controls: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let mut content = Vec::new();
    ber::write_tlv(&mut content, ber::TAG_OCTET_STRING, dn.as_bytes());
    ber::write_tlv(&mut content, ber::TAG_SEQUENCE, attributes.as_ber());
    let mut op = Vec::new();
    ber::write_tlv(&mut op, 0x64, &content);
    message(id, &op, controls)
}

/// A SearchResultDone, with a Sync Done Control when `done` is given.
pub fn search_done(
    id: MessageId,
    code: ResultCode,
    diagnostic: &str,
    done: Option<(Option<&Cookie>, bool)>,
) -> Vec<u8> {
    let op = sync::encode(&WireSearchResultDone {
        result_code: WireResultCode(code.0),
        matched_dn: text(""),
        diagnostic_message: text(diagnostic),
        referral: None,
    });
    let controls: Vec<(&str, Vec<u8>)> = done
        .map(|(cookie, refresh_deletes)| {
            (
                SYNC_DONE_OID,
                sync::encode(&SyncDoneValue {
                    cookie: cookie.map(|c| OctetString::from(c.0.clone())),
                    refresh_deletes,
                }),
            )
        })
        .into_iter()
        .collect();
    message(id, &op, &controls)
}

/// A SearchResultDone ending a DirSync pass, with the DirSync response control (MS-ADTS
/// §3.1.1.3.4.1.3): `more` is the flag that more data is waiting.
pub fn dirsync_done(id: MessageId, code: ResultCode, more: bool, cookie: &[u8]) -> Vec<u8> {
    let op = sync::encode(&WireSearchResultDone {
        result_code: WireResultCode(code.0),
        matched_dn: text(""),
        diagnostic_message: text(""),
        referral: None,
    });
    let value = sync::encode(&crate::dirsync::DirSyncValue {
        flags: i64::from(more),
        max_bytes: 0,
        cookie: OctetString::from(cookie.to_vec()),
    });
    message(id, &op, &[(crate::dirsync::DIRSYNC_OID, value)])
}

/// A Sync Info Message (an IntermediateResponse).
pub fn sync_info(id: MessageId, value: &SyncInfoValue) -> Vec<u8> {
    intermediate(id, Some(SYNC_INFO_OID), Some(&sync::encode(value)))
}

/// An IntermediateResponse with any name and value.
pub fn intermediate(id: MessageId, name: Option<&str>, value: Option<&[u8]>) -> Vec<u8> {
    let op = sync::encode(&rasn_ldap::IntermediateResponse {
        response_name: name.map(|n| OctetString::from(n.as_bytes().to_vec())),
        response_value: value.map(|v| OctetString::from(v.to_vec())),
    });
    message(id, &op, &[])
}

/// An ExtendedResponse (StartTLS, Who am I?, Cancel, or an unsolicited notification with id 0).
pub fn extended_response(
    id: MessageId,
    code: ResultCode,
    name: Option<&str>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let op = sync::encode(&WireExtendedResponse {
        result_code: WireResultCode(code.0),
        matched_dn: text(""),
        diagnostic_message: text(""),
        referral: None,
        response_name: name.map(|n| OctetString::from(n.as_bytes().to_vec())),
        response_value: value.map(|v| OctetString::from(v.to_vec())),
    });
    message(id, &op, &[])
}

/// The Notice of Disconnection (RFC 4511 §4.4.1).
pub fn notice_of_disconnection(code: ResultCode) -> Vec<u8> {
    extended_response(0, code, Some(NOTICE_OF_DISCONNECTION_OID), None)
}
