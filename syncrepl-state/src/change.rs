//! Changes as values, for callers that prefer a closure or an iterator to a [`Handler`] trait.

use syncrepl_proto::{Cookie, EntryUuid};

use crate::mirror::{AttributeChange, Entries, Handler};
use crate::Entry;

/// One thing that happened to the mirror, owned so it can be sent elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The runtime bound to the server.
    Bound {
        /// What Who am I? said, if asked.
        authz_id: Option<String>,
    },
    /// An entry entered the mirror.
    Add {
        /// Sequence number.
        seq: u64,
        /// entryUUID.
        uuid: EntryUuid,
        /// The entry.
        entry: Entry,
    },
    /// An entry's attributes changed.
    Modify {
        /// Sequence number.
        seq: u64,
        /// entryUUID.
        uuid: EntryUuid,
        /// Before.
        old: Entry,
        /// After.
        new: Entry,
        /// Per attribute, the values added and removed.
        changes: Vec<AttributeChange>,
    },
    /// An entry's DN changed.
    Rename {
        /// Sequence number.
        seq: u64,
        /// entryUUID.
        uuid: EntryUuid,
        /// The DN before.
        old_dn: String,
        /// The entry with its new DN.
        entry: Entry,
    },
    /// An entry left the mirror.
    Delete {
        /// Sequence number.
        seq: u64,
        /// entryUUID.
        uuid: EntryUuid,
        /// Its last state.
        entry: Entry,
    },
    /// A refresh completed and was committed.
    RefreshDone {
        /// How many entries the mirror holds.
        entries: usize,
    },
    /// The committed cookie changed.
    Cookie(Option<Cookie>),
}

/// A [`Handler`] that hands every change to a closure.
#[derive(Debug, Clone)]
pub struct FnHandler<F: FnMut(Change)>(pub F);

impl<F: FnMut(Change)> Handler for FnHandler<F> {
    fn on_bind(&mut self, authz_id: Option<&str>) {
        (self.0)(Change::Bound {
            authz_id: authz_id.map(str::to_owned),
        });
    }
    fn on_add(&mut self, seq: u64, uuid: EntryUuid, entry: &Entry) {
        (self.0)(Change::Add {
            seq,
            uuid,
            entry: entry.clone(),
        });
    }
    fn on_modify(
        &mut self,
        seq: u64,
        uuid: EntryUuid,
        old: &Entry,
        new: &Entry,
        changes: &[AttributeChange],
    ) {
        (self.0)(Change::Modify {
            seq,
            uuid,
            old: old.clone(),
            new: new.clone(),
            changes: changes.to_vec(),
        });
    }
    fn on_rename(&mut self, seq: u64, uuid: EntryUuid, old_dn: &str, entry: &Entry) {
        (self.0)(Change::Rename {
            seq,
            uuid,
            old_dn: old_dn.to_owned(),
            entry: entry.clone(),
        });
    }
    fn on_delete(&mut self, seq: u64, uuid: EntryUuid, entry: &Entry) {
        (self.0)(Change::Delete {
            seq,
            uuid,
            entry: entry.clone(),
        });
    }
    fn on_refresh_done(&mut self, entries: &Entries) {
        (self.0)(Change::RefreshDone {
            entries: entries.len(),
        });
    }
    fn on_cookie(&mut self, cookie: Option<&Cookie>) {
        (self.0)(Change::Cookie(cookie.cloned()));
    }
}
