//! The requests a consumer sends, encoded with rasn-ldap (RFC 4511 §4, RFC 4533 §2.2, RFC 3909, RFC 4532).

use rasn::types::OctetString;
use rasn_ldap::{
    AbandonRequest, AuthenticationChoice, BindRequest, Control, ExtendedRequest, LdapMessage,
    ProtocolOp, SaslCredentials, SearchRequest, SearchRequestDerefAliases, SearchRequestScope,
    UnbindRequest,
};

use crate::dirsync::Dialect;
use crate::error::Error;
use crate::filter::parse_filter;
use crate::sync::{self, SyncRequestValue, SYNC_REQUEST_OID};
use crate::types::{Cookie, MessageId, SyncMode};

/// OID of the StartTLS extended operation (RFC 4511 §4.14.1).
pub const START_TLS_OID: &str = "1.3.6.1.4.1.1466.20037";
/// OID of the Cancel extended operation (RFC 3909 §2).
pub const CANCEL_OID: &str = "1.3.6.1.1.8";
/// OID of the Who am I? extended operation (RFC 4532 §2).
pub const WHO_AM_I_OID: &str = "1.3.6.1.4.1.4203.1.11.3";
/// OID of the Notice of Disconnection unsolicited notification (RFC 4511 §4.4.1).
pub const NOTICE_OF_DISCONNECTION_OID: &str = "1.3.6.1.4.1.1466.20036";

/// How far below the base a search looks (RFC 4511 §4.5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Only the base entry.
    Base,
    /// The entries immediately below the base.
    One,
    /// The base and everything below it.
    #[default]
    Subtree,
}

/// Whether aliases are dereferenced (RFC 4511 §4.5.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DerefAliases {
    /// neverDerefAliases, the usual choice for replication.
    #[default]
    Never,
    /// derefInSearching.
    InSearching,
    /// derefFindingBaseObj.
    FindingBase,
    /// derefAlways.
    Always,
}

/// A search with the Sync Request Control: what to mirror and how (RFC 4533 §2.2, §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The search base DN.
    pub base: String,
    /// The search scope.
    pub scope: Scope,
    /// The filter in RFC 4515 string form.
    pub filter: String,
    /// Attributes to return; empty means all user attributes, `+` adds operational ones.
    pub attributes: Vec<String>,
    /// refreshOnly (poll) or refreshAndPersist (listen).
    pub mode: SyncMode,
    /// The cookie of the last sync, to get only what changed since.
    pub cookie: Option<Cookie>,
    /// Ask for a full refresh instead of e-syncRefreshRequired when the cookie is too old.
    pub reload_hint: bool,
    /// Mark the control critical, so that a server without syncprov fails the search with
    /// unavailableCriticalExtension instead of running a plain search. True by default.
    pub critical: bool,
    /// The sizeLimit (0: none requested).
    pub size_limit: u32,
    /// The timeLimit in seconds (0: none requested).
    pub time_limit: u32,
    /// Alias dereferencing.
    pub deref_aliases: DerefAliases,
    /// RFC 4533, or Active Directory's DirSync with change notification; the base, scope and
    /// filter above then apply on the consumer's side, and the cookie is DirSync's.
    pub dialect: Dialect,
}

impl SyncRequest {
    /// A sync search of the whole subtree under `base`, every entry, all user attributes.
    pub fn new(base: impl Into<String>, mode: SyncMode) -> SyncRequest {
        SyncRequest {
            base: base.into(),
            scope: Scope::Subtree,
            filter: "(objectClass=*)".into(),
            attributes: Vec::new(),
            mode,
            cookie: None,
            reload_hint: false,
            critical: true,
            size_limit: 0,
            time_limit: 0,
            deref_aliases: DerefAliases::Never,
            dialect: Dialect::Rfc4533,
        }
    }
}

pub(crate) fn oid(text: &str) -> OctetString {
    OctetString::from(text.as_bytes().to_vec())
}

pub(crate) fn encode_message(out: &mut Vec<u8>, message: &LdapMessage) -> Result<(), Error> {
    let bytes = rasn::ber::encode(message).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// BindRequest with simple authentication (RFC 4511 §4.2); an empty DN and password bind anonymously.
pub(crate) fn bind_simple(
    out: &mut Vec<u8>,
    id: MessageId,
    dn: &str,
    password: &[u8],
) -> Result<(), Error> {
    let auth = AuthenticationChoice::Simple(OctetString::from(password.to_vec()));
    let op = ProtocolOp::BindRequest(BindRequest::new(3, dn.into(), auth));
    encode_message(out, &LdapMessage::new(id, op))
}

/// BindRequest with SASL authentication (RFC 4511 §4.2, RFC 4513 §5.2), e.g. EXTERNAL.
pub(crate) fn bind_sasl(
    out: &mut Vec<u8>,
    id: MessageId,
    mechanism: &str,
    credentials: Option<&[u8]>,
) -> Result<(), Error> {
    let creds = SaslCredentials::new(
        mechanism.into(),
        credentials.map(|c| OctetString::from(c.to_vec())),
    );
    let op = ProtocolOp::BindRequest(BindRequest::new(
        3,
        "".into(),
        AuthenticationChoice::Sasl(creds),
    ));
    encode_message(out, &LdapMessage::new(id, op))
}

/// An ExtendedRequest with the given OID and value.
pub(crate) fn extended(
    out: &mut Vec<u8>,
    id: MessageId,
    name: &str,
    value: Option<Vec<u8>>,
) -> Result<(), Error> {
    let op = ProtocolOp::ExtendedReq(ExtendedRequest {
        request_name: oid(name),
        request_value: value.map(OctetString::from),
    });
    encode_message(out, &LdapMessage::new(id, op))
}

/// The Cancel request value: `SEQUENCE { cancelID MessageID }` (RFC 3909 §2).
pub(crate) fn cancel_value(target: MessageId) -> Vec<u8> {
    #[derive(rasn::AsnType, rasn::Encode)]
    struct CancelRequestValue {
        cancel_id: u32,
    }
    sync::encode(&CancelRequestValue { cancel_id: target })
}

/// AbandonRequest (RFC 4511 §4.11).
pub(crate) fn abandon(out: &mut Vec<u8>, id: MessageId, target: MessageId) -> Result<(), Error> {
    let op = ProtocolOp::AbandonRequest(AbandonRequest(target));
    encode_message(out, &LdapMessage::new(id, op))
}

/// UnbindRequest (RFC 4511 §4.3).
pub(crate) fn unbind(out: &mut Vec<u8>, id: MessageId) -> Result<(), Error> {
    encode_message(
        out,
        &LdapMessage::new(id, ProtocolOp::UnbindRequest(UnbindRequest)),
    )
}

/// A SearchRequest without the sync control: the root DSE read, the DirSync and notification
/// searches.
pub(crate) fn search<'a>(
    out: &mut Vec<u8>,
    id: MessageId,
    base: &str,
    scope: SearchRequestScope,
    filter: &str,
    attributes: impl Iterator<Item = &'a str>,
    controls: Vec<Control>,
) -> Result<(), Error> {
    let request = SearchRequest::new(
        base.into(),
        scope,
        SearchRequestDerefAliases::NeverDerefAliases,
        0,
        0,
        false,
        parse_filter(filter)?,
        attributes.map(Into::into).collect(),
    );
    let mut message = LdapMessage::new(id, ProtocolOp::SearchRequest(request));
    if !controls.is_empty() {
        message.controls = Some(controls);
    }
    encode_message(out, &message)
}

/// SearchRequest with the Sync Request Control (RFC 4533 §2.2).
pub(crate) fn sync_search(
    out: &mut Vec<u8>,
    id: MessageId,
    request: &SyncRequest,
) -> Result<(), Error> {
    let filter = parse_filter(&request.filter)?;
    let scope = match request.scope {
        Scope::Base => SearchRequestScope::BaseObject,
        Scope::One => SearchRequestScope::SingleLevel,
        Scope::Subtree => SearchRequestScope::WholeSubtree,
    };
    let deref = match request.deref_aliases {
        DerefAliases::Never => SearchRequestDerefAliases::NeverDerefAliases,
        DerefAliases::InSearching => SearchRequestDerefAliases::DerefInSearching,
        DerefAliases::FindingBase => SearchRequestDerefAliases::DerefFindingBaseObj,
        DerefAliases::Always => SearchRequestDerefAliases::DerefAlways,
    };
    let search = SearchRequest::new(
        request.base.as_str().into(),
        scope,
        deref,
        request.size_limit,
        request.time_limit,
        false,
        filter,
        request
            .attributes
            .iter()
            .map(|a| a.as_str().into())
            .collect(),
    );
    let value = SyncRequestValue {
        mode: request.mode.into(),
        cookie: request
            .cookie
            .as_ref()
            .map(|c| OctetString::from(c.0.clone())),
        reload_hint: request.reload_hint,
    };
    let control = Control::new(
        oid(SYNC_REQUEST_OID),
        request.critical,
        Some(OctetString::from(sync::encode(&value))),
    );
    let mut message = LdapMessage::new(id, ProtocolOp::SearchRequest(search));
    message.controls = Some(vec![control]);
    encode_message(out, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_literals() {
        let mut out = Vec::new();
        bind_simple(&mut out, 1, "cn=a", b"pw").expect("encodes");
        assert_eq!(
            out,
            [
                0x30, 0x12, 0x02, 0x01, 0x01, 0x60, 0x0d, 0x02, 0x01, 0x03, 0x04, 0x04, b'c', b'n',
                b'=', b'a', 0x80, 0x02, b'p', b'w'
            ]
        );
        out.clear();
        bind_sasl(&mut out, 2, "EXTERNAL", None).expect("encodes");
        assert_eq!(
            out,
            [
                0x30, 0x16, 0x02, 0x01, 0x02, 0x60, 0x11, 0x02, 0x01, 0x03, 0x04, 0x00, 0xa3, 0x0a,
                0x04, 0x08, b'E', b'X', b'T', b'E', b'R', b'N', b'A', b'L'
            ]
        );
        out.clear();
        abandon(&mut out, 5, 3).expect("encodes");
        assert_eq!(out, [0x30, 0x06, 0x02, 0x01, 0x05, 0x50, 0x01, 0x03]);
        out.clear();
        unbind(&mut out, 6).expect("encodes");
        assert_eq!(out, [0x30, 0x05, 0x02, 0x01, 0x06, 0x42, 0x00]);
        out.clear();
        extended(&mut out, 7, CANCEL_OID, Some(cancel_value(3))).expect("encodes");
        let mut expected = vec![0x30, 0x19, 0x02, 0x01, 0x07, 0x77, 0x14, 0x80, 0x0b];
        expected.extend_from_slice(CANCEL_OID.as_bytes());
        expected.extend_from_slice(&[0x81, 0x05, 0x30, 0x03, 0x02, 0x01, 0x03]);
        assert_eq!(out, expected);
    }

    #[test]
    fn sync_search_matches_captured_request() {
        let mut request = SyncRequest::new("dc=example,dc=com", SyncMode::RefreshOnly);
        request.attributes = vec!["*".into(), "+".into()];
        let mut out = Vec::new();
        sync_search(&mut out, 2, &request).expect("encodes");
        let decoded: LdapMessage = rasn::ber::decode(&out).expect("rasn-ldap decodes it");
        let ProtocolOp::SearchRequest(search) = decoded.protocol_op else {
            panic!("not a search");
        };
        assert_eq!(search.base_object.0, "dc=example,dc=com");
        let controls = decoded.controls.expect("has the sync control");
        assert_eq!(controls.len(), 1);
        assert_eq!(
            controls[0].control_type.as_ref(),
            SYNC_REQUEST_OID.as_bytes()
        );
        assert!(controls[0].criticality);
        assert_eq!(
            controls[0].control_value.as_deref(),
            Some([0x30, 0x03, 0x0a, 0x01, 0x01].as_slice())
        );
        request.filter = "(uid=".into();
        assert!(matches!(
            sync_search(&mut out, 3, &request),
            Err(Error::InvalidFilter(_))
        ));
    }
}
