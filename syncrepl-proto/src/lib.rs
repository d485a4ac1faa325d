//! A sans-IO consumer of LDAP Content Synchronization (RFC 4533, "syncrepl").
//!
//! This crate is a fully deterministic implementation of the protocol logic, with no networking code
//! and no timestamps from the OS: bytes from the server go in through [`Session::handle_input`],
//! requests come out of [`Session::poll_transmit`] and what happened comes out of
//! [`Session::poll_event`] as typed [`Event`]s. Anything timed takes `now` as an argument. A runtime
//! (such as `syncrepl-mio`) owns the socket, the TLS session and the clock.
//!
//! Everything the server sends is checked: BER framing with a size limit before any allocation
//! (RFC 4511 §5.1), the LDAP message grammar, and the rules RFC 4533 sets for the server. No input can
//! make it panic; a broken rule is a typed, sticky [`Error`].
//!
//! Active Directory does not speak RFC 4533; with [`Dialect::ActiveDirectory`] the same session runs
//! its DirSync control (MS-ADTS §3.1.1.3.4.1.3) in passes started by change notification, and
//! reports the objects as [`Event::DirSyncEntry`] beside the same refresh and cookie events; what
//! they mean for a mirror (merges, tombstones, the base and filter applied on the consumer's side)
//! is `syncrepl-state`'s. [`Session::read_root_dse`] tells which dialect a server speaks.
//!
//! Entries, which make up nearly all of a refresh, are read by a small zero-copy BER reader:
//! attribute values stay slices of the received frame ([`AttributeList`]). Everything else is decoded
//! with `rasn` and `rasn-ldap`.
#![forbid(unsafe_code)]

mod ber;
mod cookie;
mod dirsync;
mod entry;
mod error;
mod event;
mod filter;
mod frame;
mod message;
mod request;
mod root_dse;
pub mod sasl;
mod session;
#[cfg(feature = "test-util")]
pub mod sync;
// Without `test-util` the ASN.1 vocabulary of RFC 4533 is private, and what only the
// encoders of `wire` build goes unused.
#[cfg(not(feature = "test-util"))]
#[allow(unreachable_pub, dead_code)]
mod sync;
mod types;
#[cfg(feature = "test-util")]
pub mod wire;

pub use cookie::{Csn, SlapdCookie};
pub use dirsync::{
    object_guid, object_guid_octets, Dialect, DirSyncEntry, DirSyncFlags, DIRSYNC_OID,
    NOTIFICATION_OID, SHOW_DELETED_OID,
};
pub use entry::{Attribute, AttributeList, Attributes, SyncEntry, Values};
pub use error::{DecodeError, Error, Violation};
pub use event::{BindResult, ContentEvent, Event, RefreshPhase};
pub use filter::{check_filter, FilterError, SearchFilter};
pub use frame::{message_length, Frame};
pub use request::{
    DerefAliases, Scope, SyncRequest, CANCEL_OID, NOTICE_OF_DISCONNECTION_OID, START_TLS_OID,
    WHO_AM_I_OID,
};
pub use root_dse::RootDse;
pub use session::{Session, SessionConfig, Stage};
pub use types::{
    Cookie, EntryUuid, LdapResult, MessageId, ParseUuidError, ResultCode, SyncMode, SyncState,
};
