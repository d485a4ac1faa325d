//! Active Directory's dialect: the DirSync control (`1.2.840.113556.1.4.841`, MS-ADTS §3.1.1.3.4.1.3)
//! for "what changed since this cookie", and change notification (`1.2.840.113556.1.4.528`,
//! MS-ADTS §3.1.1.3.4.1.9) as the trigger of live passes.
//!
//! A DirSync search only runs from a naming-context root, ignores its scope and returns, for an
//! object that changed, only the attributes that changed. The session runs it as one sync: in
//! refreshAndPersist it first opens a change-notification search over the naming context (so that
//! nothing changed after the pass started goes unnoticed), then runs DirSync passes — the first
//! one is the refresh, every later one is started by a notification and carries the delta since
//! the previous pass's cookie. What the entries mean (the merge, the base, scope and filter of the
//! user's search, tombstones) is the mirror's business; the session only checks the wire.

use bytes::Bytes;
use rasn::prelude::*;
use rasn_ldap::{Control, SearchRequestScope};

use crate::entry::AttributeList;
use crate::error::{Error, Violation};
use crate::message::{ServerMessage, ServerOp};
use crate::request::{oid, search};
use crate::sync;
use crate::types::{Cookie, EntryUuid, LdapResult, MessageId, ResultCode, SyncMode};

/// OID of the DirSync control (MS-ADTS §3.1.1.3.4.1.3).
pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// OID of the change-notification control (MS-ADTS §3.1.1.3.4.1.9).
pub const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";
/// OID of the show-deleted control (MS-ADTS §3.1.1.3.4.1.14): lets notifications report deletes.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// The flags of a DirSync request (MS-ADTS §3.1.1.3.4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirSyncFlags(pub u32);

impl DirSyncFlags {
    /// LDAP_DIRSYNC_OBJECT_SECURITY: return only what the caller may read, without the
    /// "Replicating Directory Changes" right; deletes are then never reported.
    pub const OBJECT_SECURITY: u32 = 0x1;
    /// LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER: parents before children.
    pub const ANCESTORS_FIRST_ORDER: u32 = 0x800;
    /// LDAP_DIRSYNC_PUBLIC_DATA_ONLY: no secret attributes.
    pub const PUBLIC_DATA_ONLY: u32 = 0x2000;
    /// LDAP_DIRSYNC_INCREMENTAL_VALUES: multi-valued attributes as added (`;range=1-1`) and
    /// removed (`;range=0-0`) values instead of the whole value set.
    pub const INCREMENTAL_VALUES: u32 = 0x8000_0000;

    /// What the mirror asks for by default: incremental values (the order of objects does not
    /// matter to it, so not parents first, which costs the server a sort).
    pub const DEFAULT: DirSyncFlags = DirSyncFlags(Self::INCREMENTAL_VALUES);
}

impl Default for DirSyncFlags {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which protocol a sync search speaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// LDAP Content Synchronization (RFC 4533): OpenLDAP, 389 Directory Server.
    #[default]
    Rfc4533,
    /// Active Directory's DirSync plus change notification, from the naming context that holds the
    /// search base (DirSync refuses any other base).
    ActiveDirectory {
        /// The naming-context root the DirSync and notification searches run from.
        naming_context: String,
        /// The DirSync flags.
        flags: DirSyncFlags,
    },
}

/// An object reported by a DirSync pass: its objectGUID, its DN now, and the attributes that changed
/// (all of them for a new object or a full pass). An attribute with no values was removed; with
/// [`DirSyncFlags::INCREMENTAL_VALUES`], `attr;range=1-1` holds added and `attr;range=0-0` removed
/// values. A deleted object arrives as its tombstone (`isDeleted: TRUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSyncEntry {
    /// The objectGUID, held so that its [`Display`](std::fmt::Display) is the Microsoft string form
    /// (the first three fields of the 16 raw octets byte-swapped; see [`object_guid`]).
    pub object_guid: EntryUuid,
    /// The DN as the server wrote it.
    pub dn: String,
    /// The attributes sent, objectGUID and instanceType included.
    pub attributes: AttributeList,
}

/// The objectGUID's 16 octets as the wire carries them, turned into the order whose RFC 4122 text
/// is the Microsoft string form (`{3,2,1,0}-{5,4}-{7,6}-{8..}`), so that the mirror's UUID shows
/// as AD tools show the GUID.
pub fn object_guid(raw: [u8; 16]) -> EntryUuid {
    let mut out = raw;
    out[..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    EntryUuid(out)
}

/// The wire octets of an objectGUID held by [`object_guid`] (the swap is its own inverse).
pub fn object_guid_octets(guid: &EntryUuid) -> [u8; 16] {
    object_guid(guid.0).0
}

/// The DirSync request and response value: `SEQUENCE { flags INTEGER, maxBytes INTEGER, cookie
/// OCTET STRING }`. The flags travel as a 32-bit signed integer (incremental values is the sign
/// bit); in the response a non-zero flags value means more data is waiting.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirSyncValue {
    pub(crate) flags: i64,
    pub(crate) max_bytes: i64,
    pub(crate) cookie: OctetString,
}

/// The attribute list of the DirSync passes for a search of `attributes` with `filter`, applied on
/// the consumer's side: what was asked for, plus what applying the filter to later partial updates,
/// seeing renames and recognising tombstones needs (objectClass, isDeleted, name, the filter's
/// attributes). All user attributes (`*`, or none named) already hold them.
pub(crate) fn dirsync_attributes(attributes: &[String], filter: &str) -> Vec<String> {
    if attributes.is_empty() || attributes.iter().any(|a| a == "*") {
        return attributes.to_vec();
    }
    let mut out = attributes.to_vec();
    let mut add = |name: &str| {
        if !out.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            out.push(name.to_owned());
        }
    };
    add("objectClass");
    add("isDeleted");
    // DirSync returns an object only when a listed attribute changed: a rename or move changes
    // `name` (the RDN's value), which a list without it would never show.
    add("name");
    if let Ok(filter) = crate::filter::SearchFilter::parse(filter) {
        for name in filter.attributes() {
            add(name);
        }
    }
    out
}

/// What one sync over DirSync asks for.
#[derive(Debug, Clone)]
pub(crate) struct AdRequest {
    pub(crate) naming_context: String,
    pub(crate) flags: DirSyncFlags,
    pub(crate) attributes: Vec<String>,
    pub(crate) mode: SyncMode,
}

/// What a message for one of the AD searches meant.
#[derive(Debug)]
pub(crate) enum AdOutcome {
    /// Nothing for the caller beyond the events already queued.
    Continue,
    /// The sync is over, with this event if it ended otherwise than by completing a refreshOnly
    /// sync.
    Ended(Option<crate::event::Event>),
}

/// A sync over DirSync: the notification search (refreshAndPersist) and the pass in flight.
#[derive(Debug, Clone)]
pub(crate) struct AdSync {
    request: AdRequest,
    /// The latest cookie, sent with the next pass.
    cookie: Option<Cookie>,
    /// Whether the pass in flight was sent a cookie (result 12 then means a cookie the server
    /// cannot use rather than a server without DirSync).
    pass_had_cookie: bool,
    pass: Option<MessageId>,
    notification: Option<MessageId>,
    /// The refresh (the first pass and its continuations) is over: later passes are the persist
    /// stage.
    refreshed: bool,
    /// Whether the refresh started without a cookie, i.e. is the whole content.
    full: bool,
    /// A notification arrived while a pass was in flight: run another one after it.
    again: bool,
}

impl AdSync {
    /// Starts the sync: the notification search first in refreshAndPersist, then the first pass.
    pub(crate) fn start(
        request: AdRequest,
        cookie: Option<Cookie>,
        out: &mut Vec<u8>,
        mut next_id: impl FnMut() -> MessageId,
    ) -> Result<AdSync, Error> {
        let mut sync = AdSync {
            full: cookie.is_none(),
            request,
            cookie,
            pass_had_cookie: false,
            pass: None,
            notification: None,
            refreshed: false,
            again: false,
        };
        if sync.request.mode == SyncMode::RefreshAndPersist {
            let id = next_id();
            let controls = vec![
                Control::new(oid(NOTIFICATION_OID), true, None),
                Control::new(oid(SHOW_DELETED_OID), true, None),
            ];
            search(
                out,
                id,
                &sync.request.naming_context,
                SearchRequestScope::WholeSubtree,
                "(objectClass=*)",
                ["objectGUID"].into_iter(),
                controls,
            )?;
            sync.notification = Some(id);
        }
        sync.start_pass(out, next_id())?;
        Ok(sync)
    }

    fn start_pass(&mut self, out: &mut Vec<u8>, id: MessageId) -> Result<(), Error> {
        let value = DirSyncValue {
            flags: i64::from(self.request.flags.0 as i32),
            max_bytes: 0,
            cookie: self
                .cookie
                .as_ref()
                .map(|c| OctetString::from(c.0.clone()))
                .unwrap_or_default(),
        };
        let control = Control::new(
            oid(DIRSYNC_OID),
            true,
            Some(OctetString::from(sync::encode(&value))),
        );
        search(
            out,
            id,
            &self.request.naming_context,
            SearchRequestScope::WholeSubtree,
            "(objectClass=*)",
            self.request.attributes.iter().map(String::as_str),
            vec![control],
        )?;
        self.pass_had_cookie = self.cookie.is_some();
        self.pass = Some(id);
        self.again = false;
        Ok(())
    }

    /// Whether `id` is one of this sync's searches.
    pub(crate) fn owns(&self, id: MessageId) -> bool {
        self.pass == Some(id) || self.notification == Some(id)
    }

    /// Whether the refresh is over.
    pub(crate) fn persisting(&self) -> bool {
        self.refreshed
    }

    /// A search of this sync that can be abandoned, the pass first.
    pub(crate) fn searches(&self) -> impl Iterator<Item = MessageId> {
        self.pass.into_iter().chain(self.notification)
    }

    /// Handles one message of the sync's searches, queueing content events through `push`.
    pub(crate) fn message(
        &mut self,
        message: ServerMessage,
        out: &mut Vec<u8>,
        mut next_id: impl FnMut() -> MessageId,
        mut push: impl FnMut(crate::event::Event),
    ) -> Result<AdOutcome, Error> {
        use crate::event::{Event, RefreshPhase};
        if self.notification == Some(message.id) {
            return self.notified(message, out, next_id);
        }
        let done = message.control(DIRSYNC_OID.as_bytes());
        let ServerMessage { id, op, frame, .. } = message;
        match op {
            ServerOp::SearchEntry { dn, attributes } => {
                let guid = entry_guid(&dn, &attributes)?;
                push(Event::DirSyncEntry(DirSyncEntry {
                    object_guid: guid,
                    dn,
                    attributes,
                }));
                Ok(AdOutcome::Continue)
            }
            ServerOp::SearchReference(uris) => {
                push(Event::Referral { uris });
                Ok(AdOutcome::Continue)
            }
            ServerOp::SearchDone(result) => {
                self.pass = None;
                if !result.is_success() {
                    return Ok(AdOutcome::Ended(Some(self.failed(result))));
                }
                let Some(value) = done else {
                    return Err(Violation::MissingDirSyncControl.into());
                };
                let raw = frame.slice(value.start..value.end);
                let value: DirSyncValue = sync::decode(&raw, "DirSync response value")?;
                let more = value.flags != 0;
                let cookie = Cookie(Bytes::from(value.cookie));
                self.cookie = Some(cookie.clone());
                if more {
                    push(Event::NewCookie(cookie));
                    self.start_pass(out, next_id())?;
                    return Ok(AdOutcome::Continue);
                }
                if self.refreshed {
                    push(Event::NewCookie(cookie));
                } else {
                    self.refreshed = true;
                    let persist = self.request.mode == SyncMode::RefreshAndPersist;
                    let phase = if self.full {
                        RefreshPhase::Present
                    } else {
                        RefreshPhase::Delete
                    };
                    push(Event::RefreshComplete {
                        phase,
                        cookie: Some(cookie),
                        persist,
                    });
                    if !persist {
                        return Ok(AdOutcome::Ended(None));
                    }
                }
                if self.again {
                    self.start_pass(out, next_id())?;
                }
                Ok(AdOutcome::Continue)
            }
            other => Err(Violation::UnexpectedResponse {
                id,
                request: "DirSync search",
                found: other.name(),
            }
            .into()),
        }
    }

    fn notified(
        &mut self,
        message: ServerMessage,
        out: &mut Vec<u8>,
        mut next_id: impl FnMut() -> MessageId,
    ) -> Result<AdOutcome, Error> {
        match message.op {
            ServerOp::SearchEntry { .. } | ServerOp::SearchReference(_) => {
                if self.pass.is_some() {
                    self.again = true;
                } else if self.refreshed {
                    self.start_pass(out, next_id())?;
                }
                Ok(AdOutcome::Continue)
            }
            ServerOp::SearchDone(result) => {
                self.notification = None;
                Ok(AdOutcome::Ended(Some(crate::event::Event::SearchDone {
                    result,
                    cookie: None,
                })))
            }
            other => Err(Violation::UnexpectedResponse {
                id: message.id,
                request: "change-notification search",
                found: other.name(),
            }
            .into()),
        }
    }

    /// The event for a pass that failed: a cookie the server cannot use (unavailableCriticalExtension
    /// after a cookie was sent, as Samba and AD answer a stale or foreign cookie) asks for a full
    /// reload, like RFC 4533's e-syncRefreshRequired; anything else ends the search.
    fn failed(&self, result: LdapResult) -> crate::event::Event {
        if result.code == ResultCode::UNAVAILABLE_CRITICAL_EXTENSION && self.pass_had_cookie {
            crate::event::Event::RefreshRequired {
                result,
                cookie: None,
            }
        } else {
            crate::event::Event::SearchDone {
                result,
                cookie: None,
            }
        }
    }
}

/// The objectGUID of an entry of a DirSync pass: exactly one value of 16 octets (AD adds it to
/// every entry whatever the attribute list).
fn entry_guid(dn: &str, attributes: &AttributeList) -> Result<EntryUuid, Violation> {
    let mut values = attributes
        .get("objectGUID")
        .ok_or_else(|| Violation::BadObjectGuid {
            dn: dn.to_owned(),
            len: None,
        })?;
    let first = values.next().ok_or_else(|| Violation::BadObjectGuid {
        dn: dn.to_owned(),
        len: Some(0),
    })?;
    let raw = <[u8; 16]>::try_from(first).map_err(|_| Violation::BadObjectGuid {
        dn: dn.to_owned(),
        len: Some(first.len()),
    })?;
    if values.next().is_some() {
        return Err(Violation::BadObjectGuid {
            dn: dn.to_owned(),
            len: None,
        });
    }
    Ok(object_guid(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_string_form_is_microsofts() {
        // objectGUID:: 3HtWeR2IxESyXxQ5LTntcw== from the Samba capture.
        let raw = [
            0xdc, 0x7b, 0x56, 0x79, 0x1d, 0x88, 0xc4, 0x44, 0xb2, 0x5f, 0x14, 0x39, 0x2d, 0x39,
            0xed, 0x73,
        ];
        let guid = object_guid(raw);
        assert_eq!(guid.to_string(), "79567bdc-881d-44c4-b25f-14392d39ed73");
        assert_eq!(object_guid_octets(&guid), raw);
    }

    #[test]
    fn request_value_matches_the_capture() {
        let value = DirSyncValue {
            flags: i64::from(DirSyncFlags::INCREMENTAL_VALUES as i32),
            max_bytes: 0,
            cookie: OctetString::default(),
        };
        assert_eq!(
            sync::encode(&value),
            [0x30, 0x0b, 0x02, 0x04, 0x80, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00]
        );
    }
}
