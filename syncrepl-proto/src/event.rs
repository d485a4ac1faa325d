//! What a [`Session`](crate::Session) reports: the outcome of each request, the content of the
//! sync search (RFC 4533 §3.2–§3.4), and what the server says unasked.

use bytes::Bytes;

use crate::dirsync::DirSyncEntry;
use crate::entry::SyncEntry;
use crate::root_dse::RootDse;
use crate::types::{Cookie, EntryUuid, LdapResult};

/// Which phase of a refresh a Sync Info Message or Sync Done Control ended (RFC 4533 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshPhase {
    /// The present phase: every entry neither sent nor presented since the refresh began is gone.
    Present,
    /// The delete phase: deletions were sent explicitly.
    Delete,
}

/// The outcome of a bind (RFC 4511 §4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindResult {
    /// success, invalidCredentials (49), saslBindInProgress (14), …
    pub result: LdapResult,
    /// The server's SASL credentials, for multi-step mechanisms.
    pub server_sasl_creds: Option<Bytes>,
}

/// What the session reports, in the order the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A bind completed, successfully or not.
    BindResult(BindResult),
    /// StartTLS succeeded: the caller must now run a TLS handshake on the connection and carry all
    /// further bytes through it (RFC 4511 §4.14.2).
    TlsReady,
    /// The server refused StartTLS; the connection is still in cleartext.
    StartTlsRefused(LdapResult),
    /// The answer to Who am I? (RFC 4532): the authorization identity, e.g. `dn:cn=reader,…`, or
    /// empty for anonymous.
    WhoAmI {
        /// The result.
        result: LdapResult,
        /// The authzId, when the result is success.
        authz_id: Option<String>,
    },
    /// The root DSE (RFC 4512 §5.1), read by
    /// [`Session::read_root_dse`](crate::Session::read_root_dse).
    RootDse {
        /// What it holds (empty if the server returned no entry).
        root_dse: Box<RootDse>,
        /// How the read ended.
        result: LdapResult,
    },
    /// An entry with its sync state (RFC 4533 §3.2).
    Entry(SyncEntry),
    /// An object a DirSync pass reported (Active Directory,
    /// [`Dialect::ActiveDirectory`](crate::Dialect::ActiveDirectory)).
    DirSyncEntry(DirSyncEntry),
    /// A Sync Info syncIdSet: many entryUUIDs at once, deleted if `refresh_deletes`, else present.
    SyncIdSet {
        /// The entryUUIDs.
        uuids: Vec<EntryUuid>,
        /// TRUE: these entries are deleted; FALSE: they are present.
        refresh_deletes: bool,
        /// A cookie covering the set, if sent.
        cookie: Option<Cookie>,
    },
    /// A phase of the refresh ended and another follows (a Sync Info refreshPresent or refreshDelete
    /// with refreshDone FALSE).
    RefreshPhaseDone {
        /// The phase that ended.
        phase: RefreshPhase,
        /// A cookie, if sent.
        cookie: Option<Cookie>,
    },
    /// The refresh is complete: in refreshOnly the search ended with a Sync Done Control; in
    /// refreshAndPersist a Sync Info with refreshDone TRUE arrived and the persist stage begins.
    RefreshComplete {
        /// The phase that ended with it. [`RefreshPhase::Present`] means every entry not sent or
        /// presented during this refresh must be deleted.
        phase: RefreshPhase,
        /// The cookie for the next sync.
        cookie: Option<Cookie>,
        /// Whether the persist stage follows.
        persist: bool,
    },
    /// A Sync Info newcookie message.
    NewCookie(Cookie),
    /// The server cannot sync from the cookie sent (e-syncRefreshRequired, RFC 4533 §3.5): drop the
    /// cookie and refresh again. The search has ended.
    RefreshRequired {
        /// The result as sent.
        result: LdapResult,
        /// A cookie from the Sync Done Control, if any.
        cookie: Option<Cookie>,
    },
    /// The search ended because it was cancelled (canceled, RFC 3909).
    Cancelled,
    /// The server refused a Cancel request (noSuchOperation, tooLate, cannotCancel).
    CancelFailed(LdapResult),
    /// The cancelled search did not end within the cancel timeout, so it was abandoned and an unbind
    /// queued; the session is closed.
    CancelTimedOut,
    /// The sync search ended with a result other than the ones above (e.g. noSuchObject,
    /// insufficientAccessRights, unavailableCriticalExtension from a server without syncprov).
    SearchDone {
        /// The result.
        result: LdapResult,
        /// A cookie from the Sync Done Control, if any.
        cookie: Option<Cookie>,
    },
    /// A SearchResultReference (continuation references, RFC 4511 §4.5.3).
    Referral {
        /// The URIs.
        uris: Vec<String>,
    },
    /// The server's Notice of Disconnection (RFC 4511 §4.4.1): it is closing the connection.
    Disconnect(LdapResult),
    /// An unsolicited notification other than Notice of Disconnection.
    Unsolicited {
        /// Its responseName.
        name: Option<String>,
        /// Its result.
        result: LdapResult,
    },
}

/// The events that carry the content of a sync search (RFC 4533 §3.2–§3.4): entries with their
/// sync state, syncIdSets, the ends of refresh phases and new cookies. A mirror applies these and
/// nothing else; the enum is exhaustive on purpose, so that a kind added here is a compile error
/// wherever content is applied instead of an event dropped in silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentEvent {
    /// An entry with its sync state (RFC 4533 §3.2).
    Entry(SyncEntry),
    /// An object a DirSync pass reported: the changed attributes only, or its tombstone.
    DirSyncEntry(DirSyncEntry),
    /// A syncIdSet: deleted entryUUIDs if `refresh_deletes`, else present ones (§2.5).
    SyncIdSet {
        /// The entryUUIDs.
        uuids: Vec<EntryUuid>,
        /// TRUE: these entries are deleted; FALSE: they are present.
        refresh_deletes: bool,
        /// A cookie covering the set, if sent.
        cookie: Option<Cookie>,
    },
    /// A phase of the refresh ended and another follows.
    RefreshPhaseDone {
        /// The phase that ended.
        phase: RefreshPhase,
        /// A cookie, if sent.
        cookie: Option<Cookie>,
    },
    /// The refresh is complete (§3.3.1, §3.3.2).
    RefreshComplete {
        /// The phase that ended with it.
        phase: RefreshPhase,
        /// The cookie for the next sync.
        cookie: Option<Cookie>,
        /// Whether the persist stage follows.
        persist: bool,
    },
    /// A Sync Info newcookie message (§2.5).
    NewCookie(Cookie),
}

impl Event {
    /// This event as content to apply to a mirror, or the event itself if it is about the
    /// connection or the search rather than its content.
    pub fn into_content(self) -> Result<ContentEvent, Event> {
        Ok(match self {
            Event::Entry(entry) => ContentEvent::Entry(entry),
            Event::DirSyncEntry(entry) => ContentEvent::DirSyncEntry(entry),
            Event::SyncIdSet {
                uuids,
                refresh_deletes,
                cookie,
            } => ContentEvent::SyncIdSet {
                uuids,
                refresh_deletes,
                cookie,
            },
            Event::RefreshPhaseDone { phase, cookie } => {
                ContentEvent::RefreshPhaseDone { phase, cookie }
            }
            Event::RefreshComplete {
                phase,
                cookie,
                persist,
            } => ContentEvent::RefreshComplete {
                phase,
                cookie,
                persist,
            },
            Event::NewCookie(cookie) => ContentEvent::NewCookie(cookie),
            other => return Err(other),
        })
    }
}
