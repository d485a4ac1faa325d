//! The local mirror of an LDAP directory kept by RFC 4533 Content Synchronization.
//!
//! A [`Mirror`] holds every entry a sync search can see, keyed by entryUUID with a DN index that
//! compares DNs the LDAP way. It applies the events of `syncrepl-proto` — present and delete phases,
//! syncIdSets, renames, e-syncRefreshRequired — and tells a [`Handler`] what really changed: added,
//! modified (old, new and the difference), renamed, deleted, refresh done, cookie.
//!
//! It lives in memory ([`Mirror::in_memory`]) or in a state directory ([`Mirror::open`]) as an
//! append-only, checksummed log that survives `kill -9` and power loss: changes become durable with
//! the commit that follows them (with the cookie covering them, or, within a long or interrupted
//! refresh, with the cookie the refresh started from), replay truncates a torn tail, and compaction
//! rewrites the log as a snapshot ([`log`] describes the format). No password or other credential
//! is ever written.
//!
//! Delivery to the [`Handler`] is exactly-once within a run and at-least-once across crashes, with
//! sequence numbers that never repeat; [`Handler`] explains how to deduplicate, [`Mirror`] what is
//! committed when.
#![forbid(unsafe_code)]

mod change;
mod dn;
mod error;
pub mod log;
mod mirror;

use std::fmt;

use syncrepl_proto::{AttributeList, Scope, SyncRequest};

pub use change::{Change, FnHandler};
pub use dn::{NormalizedDn, CASE_EXACT};
pub use error::Error;
pub use log::{FsyncPolicy, LogFile, LogIo, StdIo};
pub use mirror::{
    diff, AttributeChange, Entries, Handler, Mirror, OpenOptions, Status, BATCH_BYTES,
};

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
