//! Decoding one framed LDAPMessage from the server (RFC 4511 §4.1.1).
//!
//! The envelope (messageID, protocolOp tag, controls) and SearchResultEntry, the message that makes up
//! almost all of a refresh, are read by the zero-copy reader in [`crate::ber`]. Every other response is
//! decoded by `rasn` with the types below, which mirror rasn-ldap's but keep resultCode as a number:
//! rasn-ldap's closed enumeration cannot hold canceled (118) or e-syncRefreshRequired (4096).

use bytes::Bytes;
use rasn::prelude::*;
use rasn::types::Identifier;

use crate::ber::{Reader, Tlv, TAG_BOOLEAN, TAG_INTEGER, TAG_OCTET_STRING, TAG_SEQUENCE};
use crate::entry::AttributeList;
use crate::error::DecodeError;
use crate::sync::decode;
use crate::types::{LdapResult, MessageId, ResultCode};

/// protocolOp tag of BindResponse, [APPLICATION 1] constructed.
pub(crate) const OP_BIND_RESPONSE: u8 = 0x61;
/// protocolOp tag of SearchResultEntry, [APPLICATION 4] constructed.
pub(crate) const OP_SEARCH_ENTRY: u8 = 0x64;
/// protocolOp tag of SearchResultDone, [APPLICATION 5] constructed.
pub(crate) const OP_SEARCH_DONE: u8 = 0x65;
/// protocolOp tag of SearchResultReference, [APPLICATION 19] constructed.
pub(crate) const OP_SEARCH_REFERENCE: u8 = 0x73;
/// protocolOp tag of ExtendedResponse, [APPLICATION 24] constructed.
pub(crate) const OP_EXTENDED_RESPONSE: u8 = 0x78;
/// protocolOp tag of IntermediateResponse, [APPLICATION 25] constructed.
pub(crate) const OP_INTERMEDIATE_RESPONSE: u8 = 0x79;
/// Tag of the controls component, [0] constructed.
const TAG_CONTROLS: u8 = 0xa0;

/// A decoded server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerMessage {
    pub(crate) id: MessageId,
    pub(crate) op: ServerOp,
    /// The controls component, checked when the message was decoded.
    pub(crate) controls: Option<Tlv>,
    /// The whole message; control values are offsets into it.
    pub(crate) frame: Bytes,
}

/// The Sync State and Sync Done controls of a message, found in one pass without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SyncControls {
    /// How many Sync State Controls there were.
    pub(crate) state_count: usize,
    /// The value of the (last) Sync State Control.
    pub(crate) state: Option<Tlv>,
    /// The value of the Sync Done Control.
    pub(crate) done: Option<Tlv>,
}

impl ServerMessage {
    /// The message's controls as OID and value (RFC 4511 §4.1.11), in order.
    fn control_values(&self) -> impl Iterator<Item = (&[u8], Option<Tlv>)> {
        let reader = Reader::new(&self.frame);
        let mut r = self
            .controls
            .map(|controls| reader.inside(controls))
            .unwrap_or_else(|| Reader::new(&[]));
        // The controls were checked by decode_message, so reading them again cannot fail.
        std::iter::from_fn(move || {
            let control = r.read_any().ok()?;
            let mut c = r.inside(control);
            let oid = c.read_any().ok()?;
            if c.peek_tag() == Some(TAG_BOOLEAN) {
                let _ = c.read_any();
            }
            let value = c.read_optional(TAG_OCTET_STRING).ok().flatten();
            Some((reader.content(oid), value))
        })
    }

    /// The value of the (last) control with this OID, e.g. DirSync's response control.
    pub(crate) fn control(&self, oid: &[u8]) -> Option<Tlv> {
        self.control_values()
            .filter(|(o, _)| *o == oid)
            .last()
            .and_then(|(_, value)| value)
    }

    /// Finds the sync controls among the message's controls.
    pub(crate) fn sync_controls(&self, state_oid: &[u8], done_oid: &[u8]) -> SyncControls {
        let mut out = SyncControls::default();
        for (oid, value) in self.control_values() {
            if oid == state_oid {
                out.state_count += 1;
                out.state = value;
            } else if oid == done_oid {
                out.done = value;
            }
        }
        out
    }
}

/// The protocolOps a consumer can receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerOp {
    SearchEntry {
        dn: String,
        attributes: AttributeList,
    },
    SearchReference(Vec<String>),
    SearchDone(LdapResult),
    Bind {
        result: LdapResult,
        server_sasl_creds: Option<Bytes>,
    },
    Extended {
        result: LdapResult,
        name: Option<String>,
        value: Option<Bytes>,
    },
    Intermediate {
        name: Option<String>,
        value: Option<Bytes>,
    },
    /// Any other protocolOp tag: a request, or something no server should send a client.
    Other(u8),
}

impl ServerOp {
    /// The protocolOp's name in RFC 4511, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ServerOp::SearchEntry { .. } => "SearchResultEntry",
            ServerOp::SearchReference(_) => "SearchResultReference",
            ServerOp::SearchDone(_) => "SearchResultDone",
            ServerOp::Bind { .. } => "BindResponse",
            ServerOp::Extended { .. } => "ExtendedResponse",
            ServerOp::Intermediate { .. } => "IntermediateResponse",
            ServerOp::Other(_) => "unexpected protocolOp",
        }
    }
}

/// An LDAP resultCode with no closed set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireResultCode(pub(crate) u32);

impl AsnType for WireResultCode {
    const TAG: Tag = Tag::ENUMERATED;
}

impl Decode for WireResultCode {
    fn decode_with_tag_and_constraints<D: Decoder>(
        decoder: &mut D,
        tag: Tag,
        constraints: &Constraints,
    ) -> Result<Self, D::Error> {
        decoder
            .decode_integer::<u32>(tag, constraints)
            .map(WireResultCode)
    }
}

impl Encode for WireResultCode {
    fn encode_with_tag_and_constraints<'e, E: Encoder<'e>>(
        &self,
        encoder: &mut E,
        tag: Tag,
        constraints: &Constraints,
        identifier: Identifier,
    ) -> Result<(), E::Error> {
        encoder
            .encode_integer(tag, constraints, &self.0, identifier)
            .map(drop)
    }
}

/// BindResponse (RFC 4511 §4.2.2).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(tag(application, 1))]
pub(crate) struct WireBindResponse {
    pub(crate) result_code: WireResultCode,
    pub(crate) matched_dn: rasn_ldap::LdapString,
    pub(crate) diagnostic_message: rasn_ldap::LdapString,
    #[rasn(tag(3))]
    pub(crate) referral: Option<Vec<rasn_ldap::LdapString>>,
    #[rasn(tag(7))]
    pub(crate) server_sasl_creds: Option<OctetString>,
}

/// SearchResultDone (RFC 4511 §4.5.2): a bare LDAPResult.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(tag(application, 5))]
pub(crate) struct WireSearchResultDone {
    pub(crate) result_code: WireResultCode,
    pub(crate) matched_dn: rasn_ldap::LdapString,
    pub(crate) diagnostic_message: rasn_ldap::LdapString,
    #[rasn(tag(3))]
    pub(crate) referral: Option<Vec<rasn_ldap::LdapString>>,
}

/// ExtendedResponse (RFC 4511 §4.12), also used for unsolicited notifications.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(tag(application, 24))]
pub(crate) struct WireExtendedResponse {
    pub(crate) result_code: WireResultCode,
    pub(crate) matched_dn: rasn_ldap::LdapString,
    pub(crate) diagnostic_message: rasn_ldap::LdapString,
    #[rasn(tag(3))]
    pub(crate) referral: Option<Vec<rasn_ldap::LdapString>>,
    #[rasn(tag(10))]
    pub(crate) response_name: Option<OctetString>,
    #[rasn(tag(11))]
    pub(crate) response_value: Option<OctetString>,
}

fn ldap_result(
    code: WireResultCode,
    matched_dn: rasn_ldap::LdapString,
    diagnostic_message: rasn_ldap::LdapString,
    referral: Option<Vec<rasn_ldap::LdapString>>,
) -> LdapResult {
    LdapResult {
        code: ResultCode(code.0),
        matched_dn: matched_dn.0,
        diagnostic_message: diagnostic_message.0,
        referral: referral
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.0)
            .collect(),
    }
}

fn oid_text(raw: OctetString, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what })
}

/// Decodes exactly one LDAPMessage; `frame` must hold nothing else.
pub(crate) fn decode_message(frame: Bytes) -> Result<ServerMessage, DecodeError> {
    let mut top = Reader::new(&frame);
    let envelope = top.read(TAG_SEQUENCE, "LDAPMessage")?;
    top.finish("frame")?;
    let mut r = top.inside(envelope);
    let id = r.read_u32(TAG_INTEGER, "LDAPMessage.messageID")?;
    if id > i32::MAX as u32 {
        return Err(DecodeError::OutOfRange {
            what: "LDAPMessage.messageID",
            value: i64::from(id),
        });
    }
    let op_start = r.position();
    let op = r.read_any()?;
    let controls = r.read_optional(TAG_CONTROLS)?;
    if let Some(c) = controls {
        check_controls(&r.inside(c))?;
    }
    r.finish("LDAPMessage")?;
    let op_bytes = || frame.slice(op_start..op.end);
    let op = match op.tag {
        OP_SEARCH_ENTRY => read_search_entry(&frame, &r.inside(op))?,
        OP_SEARCH_DONE => {
            let d: WireSearchResultDone = decode(&op_bytes(), "SearchResultDone")?;
            ServerOp::SearchDone(ldap_result(
                d.result_code,
                d.matched_dn,
                d.diagnostic_message,
                d.referral,
            ))
        }
        OP_BIND_RESPONSE => {
            let b: WireBindResponse = decode(&op_bytes(), "BindResponse")?;
            ServerOp::Bind {
                server_sasl_creds: b.server_sasl_creds.map(Bytes::from),
                result: ldap_result(
                    b.result_code,
                    b.matched_dn,
                    b.diagnostic_message,
                    b.referral,
                ),
            }
        }
        OP_EXTENDED_RESPONSE => {
            let e: WireExtendedResponse = decode(&op_bytes(), "ExtendedResponse")?;
            ServerOp::Extended {
                name: e
                    .response_name
                    .map(|n| oid_text(n, "ExtendedResponse.responseName"))
                    .transpose()?,
                value: e.response_value.map(Bytes::from),
                result: ldap_result(
                    e.result_code,
                    e.matched_dn,
                    e.diagnostic_message,
                    e.referral,
                ),
            }
        }
        OP_INTERMEDIATE_RESPONSE => {
            let i: rasn_ldap::IntermediateResponse = decode(&op_bytes(), "IntermediateResponse")?;
            ServerOp::Intermediate {
                name: i
                    .response_name
                    .map(|n| oid_text(n, "IntermediateResponse.responseName"))
                    .transpose()?,
                value: i.response_value.map(Bytes::from),
            }
        }
        OP_SEARCH_REFERENCE => {
            let refs: rasn_ldap::SearchResultReference =
                decode(&op_bytes(), "SearchResultReference")?;
            ServerOp::SearchReference(refs.0.into_iter().map(|u| u.0).collect())
        }
        other => ServerOp::Other(other),
    };
    Ok(ServerMessage {
        id,
        op,
        controls,
        frame,
    })
}

fn read_search_entry(frame: &Bytes, r: &Reader<'_>) -> Result<ServerOp, DecodeError> {
    let mut r = r.clone();
    let dn = r.read(TAG_OCTET_STRING, "SearchResultEntry.objectName")?;
    let dn = std::str::from_utf8(r.content(dn))
        .map_err(|_| DecodeError::InvalidUtf8 {
            what: "SearchResultEntry.objectName",
        })?
        .to_owned();
    let attrs = r.read(TAG_SEQUENCE, "SearchResultEntry.attributes")?;
    r.finish("SearchResultEntry")?;
    let attributes = AttributeList::from_ber(frame.slice(attrs.start..attrs.end))?;
    Ok(ServerOp::SearchEntry { dn, attributes })
}

/// Checks the Controls of a message (RFC 4511 §4.1.11) without keeping them.
fn check_controls(r: &Reader<'_>) -> Result<(), DecodeError> {
    let mut r = r.clone();
    while !r.is_empty() {
        let control = r.read(TAG_SEQUENCE, "Control")?;
        let mut c = r.inside(control);
        c.read(TAG_OCTET_STRING, "Control.controlType")?;
        if c.peek_tag() == Some(TAG_BOOLEAN) {
            c.read_bool(TAG_BOOLEAN, "Control.criticality")?;
        }
        c.read_optional(TAG_OCTET_STRING)?;
        c.finish("Control")?;
    }
    Ok(())
}
