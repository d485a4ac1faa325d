//! The local mirror of an LDAP directory kept by RFC 4533 Content Synchronization, and the
//! change stream it emits.
//!
//! A [`Mirror`] holds every entry a sync search can see, keyed by entryUUID with a DN index that
//! compares DNs the LDAP way. It applies the content events of `syncrepl-proto` — present and
//! delete phases, syncIdSets, renames, e-syncRefreshRequired — and turns what really changed into
//! [`Change`] values (add; modify, with its per-attribute delta and any rename; delete), each with
//! a sequence number, computed once and carried as they are to every consumer.
//!
//! It lives in memory ([`Mirror::in_memory`]) or in a state directory ([`Mirror::open`]) as an
//! append-only, checksummed log that survives `kill -9` and power loss. The log is also the
//! outbox of the change stream: a change is logged with its number before it is handed to the
//! [`Consumer`], a cookie is committed only once the consumer acknowledged every change it covers,
//! and the changes not acknowledged are handed out again, the same, by the next run
//! ([`Consumer`] states the guarantee, [`Mirror`] what is committed when, [`log`] the format). No
//! password or other credential is ever written.
#![forbid(unsafe_code)]

mod change;
mod clock;
mod consumer;
mod dn;
mod entries;
mod error;
mod filter;
pub mod log;
mod mirror;
mod outbox;
mod rebuild;
mod seq;
mod store;

use std::fmt;

use syncrepl_proto::{AttributeList, Scope, SyncRequest};

pub use change::{diff, AttributeChange, Change, ChangeKind};
pub use clock::{Clock, SystemClock};
pub use consumer::{Consumer, ConsumerError, FnConsumer};
pub use dn::{NormalizedDn, CASE_EXACT};
pub use entries::Entries;
pub use error::Error;
pub use filter::matches;
pub use log::{FsyncPolicy, Lock, LogFile, LogIo, StdIo};
pub use mirror::{Delivered, DeliveryError, Mirror, OpenOptions, Status, BATCH_BYTES};

/// An entry of the mirror: its DN and its attributes (owned, about their size on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The DN as the server last wrote it.
    pub dn: String,
    /// The attributes.
    pub attributes: AttributeList,
}

/// The search a state belongs to: a state opened for another search is refused unless reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSpec {
    /// The base DN.
    pub base: String,
    /// The scope.
    pub scope: Scope,
    /// The filter, as given.
    pub filter: String,
    /// The attributes asked for.
    pub attributes: Vec<String>,
}

impl SearchSpec {
    /// The search part of a sync request.
    pub fn from_request(request: &SyncRequest) -> SearchSpec {
        SearchSpec {
            base: request.base.clone(),
            scope: request.scope,
            filter: request.filter.clone(),
            attributes: request.attributes.clone(),
        }
    }
}

impl fmt::Display for SearchSpec {
    /// The search in LDAP URL order: `base?attributes?scope?filter`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Base => "base",
            Scope::One => "one",
            Scope::Subtree => "sub",
        };
        write!(
            f,
            "{}?{}?{}?{}",
            self.base,
            self.attributes.join(","),
            scope,
            self.filter
        )
    }
}
