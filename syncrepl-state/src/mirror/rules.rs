//! The rules of RFC 4533 §3.3–§3.5 that turn the content of a sync search into changes of the
//! mirror: entries with their sync state, syncIdSets, the ends of present and delete phases,
//! renames, e-syncRefreshRequired, and what an interrupted refresh leaves.

use syncrepl_proto::{
    AttributeList, ContentEvent, Cookie, EntryUuid, Event, RefreshPhase, SyncEntry, SyncRequest,
    SyncState,
};

use super::ds389::is_389_cookie;
use super::Mirror;
use crate::change::{diff, Change, ChangeKind};
use crate::entries::{Slot, UuidSet};
use crate::error::Error;
use crate::store::CommitSync;
use crate::Entry;

/// What the refresh in progress has shown so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refresh {
    /// Started without a cookie: the server sends the whole content, so whatever it does not send is
    /// gone, whichever phase it claims.
    pub(super) full: bool,
    saw_present: bool,
    pub(super) saw_delete: bool,
    /// The cookie sent is 389 Directory Server's (see [`is_389_cookie`]).
    ds389: bool,
    /// A DirSync object entered the search with a partial update: a full pass must follow.
    pub(super) reload_after: bool,
}

impl Mirror {
    /// A sync search starts with `request`: present marks start afresh. A search still running
    /// (no [`Mirror::interrupted`] was called) counts as interrupted.
    pub fn begin_refresh(&mut self, request: &SyncRequest) -> Result<(), Error> {
        self.check()?;
        if self.refresh.is_some() || self.dirty() {
            self.interrupted()?;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Four billion refreshes later: old marks could be mistaken for new ones.
            for slot in self.entries.by_uuid.values_mut() {
                slot.mark = 0;
            }
            self.generation = 1;
        }
        self.refresh = Some(Refresh {
            full: request.cookie.is_none(),
            saw_present: false,
            saw_delete: false,
            ds389: request.cookie.as_ref().is_some_and(is_389_cookie),
            reload_after: false,
        });
        Ok(())
    }

    /// The server answered e-syncRefreshRequired (RFC 4533 §3.5): keep the entries, drop the cookie,
    /// and make the next sync a full reload (with reloadHint) whose differences alone are reported.
    /// What was applied since the last commit is kept too: the reload corrects it if needed.
    pub fn refresh_required(&mut self) -> Result<(), Error> {
        self.check()?;
        self.refresh = None;
        self.cookie = None;
        self.server_cookie = None;
        self.needs_reload = true;
        self.cookie_seq = self.seq.next;
        self.guard(|m| m.commit(true, CommitSync::PerPolicy))
    }

    /// The search ended early (stop, lost connection, cancel): what it applied stays, committed as
    /// unsettled with the cookie it started from, and the next refresh confirms it (see [`Mirror`]).
    /// Its changes are logged by that commit and wait in the outbox for [`Mirror::deliver`].
    pub fn interrupted(&mut self) -> Result<(), Error> {
        self.check()?;
        self.refresh = None;
        if self.dirty() {
            self.guard(|m| m.commit(false, CommitSync::PerPolicy))?;
        }
        self.cookie = self.committed.cookie.clone();
        self.server_cookie = self.committed.server_cookie.clone();
        self.needs_reload = self.committed.needs_reload;
        self.cookie_seq = self.seq.next;
        self.refresh_done = false;
        Ok(())
    }

    /// Applies one event of the sync search. The changes it makes wait in the outbox until
    /// [`Mirror::deliver`] logs them and hands them to the consumer; nothing is committed with a
    /// new cookie before the consumer acknowledged every change the cookie covers. Events that are
    /// not content ([`Event::into_content`]) are refused with [`Error::NotContent`].
    pub fn apply(&mut self, event: Event) -> Result<(), Error> {
        let content = event.into_content().map_err(|other| Error::NotContent {
            event: format!("{other:?}"),
        })?;
        self.apply_content(content)
    }

    /// [`Mirror::apply`] for an event already known to be content.
    pub fn apply_content(&mut self, event: ContentEvent) -> Result<(), Error> {
        self.check()?;
        self.guard(|m| m.apply_rules(event))
    }

    fn apply_rules(&mut self, event: ContentEvent) -> Result<(), Error> {
        match event {
            ContentEvent::Entry(entry) => {
                let cookie = entry.cookie.clone();
                self.entry(entry)?;
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie);
                }
            }
            ContentEvent::DirSyncEntry(entry) => self.dirsync_entry(entry)?,
            ContentEvent::SyncIdSet {
                uuids,
                refresh_deletes,
                cookie,
            } => {
                for uuid in uuids {
                    if refresh_deletes {
                        self.note(|r| r.saw_delete = true);
                        self.delete(uuid)?;
                    } else {
                        self.note(|r| r.saw_present = true);
                        self.mark(uuid);
                    }
                }
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie);
                }
            }
            ContentEvent::RefreshPhaseDone { phase, cookie } => {
                if phase == RefreshPhase::Present {
                    self.end_present_phase()?;
                }
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie);
                }
            }
            ContentEvent::RefreshComplete { phase, cookie, .. } => {
                let full = self.refresh.is_some_and(|r| r.full);
                let reload_after = self.refresh.is_some_and(|r| r.reload_after);
                if phase == RefreshPhase::Present || full {
                    self.end_present_phase()?;
                }
                self.confirm()?;
                self.refresh = None;
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie);
                }
                self.needs_reload = reload_after;
                self.cookie_seq = self.seq.next;
                self.refresh_done = true;
            }
            ContentEvent::NewCookie(cookie) => self.new_cookie(cookie),
        }
        if self.refresh.is_some()
            && (self.store.uncommitted_len() >= self.batch_bytes
                || self.outbox.fresh_bytes() >= self.batch_bytes)
        {
            // A long refresh: log what it applied so far (unsettled, with the cookie it started
            // from) and start making it durable, so that it can be handed out while the refresh
            // goes on and a crash loses a bounded amount of work.
            self.commit(false, CommitSync::Background)?;
        }
        Ok(())
    }

    /// A cookie (RFC 4533 §3.4: it "represents the state of the content"). In the persist stage
    /// it covers the changes before it; in a refresh it is kept for the end (a cookie in the
    /// middle of a present phase describes a content the mirror does not have yet). Either way
    /// it is committed only once the consumer has acknowledged those changes. slapd's cookies
    /// are merged into the CSN set held, per serverID ([`Cookie::merge`]).
    fn new_cookie(&mut self, cookie: Cookie) {
        let kept = Cookie::merge(self.cookie.as_ref(), cookie.clone());
        self.server_cookie = (kept != cookie).then_some(cookie);
        self.cookie = Some(kept);
        if self.refresh.is_none() {
            self.cookie_seq = self.seq.next;
        }
    }

    pub(super) fn note(&mut self, f: impl FnOnce(&mut Refresh)) {
        if let Some(r) = self.refresh.as_mut() {
            f(r);
        }
    }

    fn entry(&mut self, entry: SyncEntry) -> Result<(), Error> {
        match entry.state {
            SyncState::Present => {
                self.note(|r| r.saw_present = true);
                self.mark(entry.entry_uuid);
                Ok(())
            }
            SyncState::Delete => {
                self.note(|r| r.saw_delete = true);
                self.delete(entry.entry_uuid)
            }
            SyncState::Add | SyncState::Modify => {
                self.upsert(entry.entry_uuid, entry.dn, entry.attributes.detach())
            }
        }
    }

    fn mark(&mut self, uuid: EntryUuid) {
        let generation = self.generation;
        if let Some(slot) = self.entries.by_uuid.get_mut(&uuid) {
            slot.mark = generation;
        }
    }

    fn take_seq(&mut self) -> Result<u64, Error> {
        self.unstamped = true;
        self.seq.take(self.store.as_mut())
    }

    pub(super) fn upsert(
        &mut self,
        uuid: EntryUuid,
        dn: String,
        attributes: AttributeList,
    ) -> Result<(), Error> {
        let mark = if self.refresh.is_some() {
            self.generation
        } else {
            self.entries.by_uuid.get(&uuid).map_or(0, |s| s.mark)
        };
        let new = Entry { dn, attributes };
        let hash = self.entries.dn_hash(&new.dn);
        while let Some(holder) = self.entries.holder(hash, &new.dn, Some(uuid)) {
            // RFC 4533 §3.3 has no rename of one entry onto another's DN: the old entry was
            // deleted (or moved away) in a change the client missed.
            tracing::debug!(dn = %new.dn, "a new entryUUID took this DN; deleting the old entry");
            self.delete(holder)?;
        }
        let (old_dn, delta) = match self.entries.by_uuid.get(&uuid) {
            Some(old) => {
                let delta = diff(&old.entry.attributes, &new.attributes);
                if old.entry.dn == new.dn && delta.is_empty() {
                    self.mark(uuid);
                    return Ok(());
                }
                (
                    (old.entry.dn != new.dn).then(|| old.entry.dn.clone()),
                    delta,
                )
            }
            None => (None, Vec::new()),
        };
        let seq = self.take_seq()?;
        self.store
            .append_upsert(seq, uuid, &new.dn, &new.attributes)?;
        if self.committed.cookie.is_some() {
            self.pending.push(uuid);
        }
        let change = Change {
            seq,
            kind: if self.entries.by_uuid.contains_key(&uuid) {
                ChangeKind::Modify
            } else {
                ChangeKind::Add
            },
            uuid,
            entry: new.clone(),
            old_dn,
            delta,
        };
        self.entries
            .insert_hashed(uuid, Slot { entry: new, mark }, hash);
        self.outbox.push(change);
        Ok(())
    }

    pub(super) fn delete(&mut self, uuid: EntryUuid) -> Result<(), Error> {
        if !self.entries.by_uuid.contains_key(&uuid) {
            return Ok(());
        }
        let seq = self.take_seq()?;
        self.store
            .append(&crate::log::Record::Delete { seq, uuid })?;
        if let Some(old) = self.entries.remove(&uuid) {
            self.outbox.push(Change {
                seq,
                kind: ChangeKind::Delete,
                uuid,
                entry: old.entry,
                old_dn: None,
                delta: Vec::new(),
            });
        }
        Ok(())
    }

    /// The end of a present phase (RFC 4533 §3.3.1: "the client MUST delete all entries in its
    /// content not present in the refreshed content"): whatever was neither sent nor presented in
    /// this refresh is gone.
    fn end_present_phase(&mut self) -> Result<(), Error> {
        let Some(refresh) = self.refresh else {
            return Ok(());
        };
        if !refresh.full && !refresh.saw_present && (refresh.saw_delete || refresh.ds389) {
            // 389 Directory Server ends every incremental refresh with refreshDeletes FALSE and
            // no present entry, after the changed entries and the deleted entryUUIDs; taken
            // literally that would delete every unchanged entry (the bug FreeIPA users met).
            tracing::debug!("incremental refresh ended as a present phase without any present entry; keeping unsent entries");
            return Ok(());
        }
        self.delete_unmarked(None)
    }

    /// Deletes the entries of `among` (all if `None`) that this refresh neither sent nor presented.
    fn delete_unmarked(&mut self, among: Option<&UuidSet>) -> Result<(), Error> {
        let generation = self.generation;
        let stale = |(u, s): (&EntryUuid, &Slot)| (s.mark != generation).then_some(*u);
        let gone: Vec<EntryUuid> = match among {
            None => self.entries.by_uuid.iter().filter_map(stale).collect(),
            Some(set) => set
                .iter()
                .filter_map(|u| self.entries.by_uuid.get_key_value(u))
                .filter_map(stale)
                .collect(),
        };
        for uuid in gone {
            self.delete(uuid)?;
        }
        Ok(())
    }

    /// At the end of a refresh: entries an interrupted refresh upserted and this one did not
    /// mention are gone (see [`Mirror`]).
    fn confirm(&mut self) -> Result<(), Error> {
        if self.refresh.is_none() || self.suspects.is_empty() {
            return Ok(());
        }
        let suspects = std::mem::take(&mut self.suspects);
        tracing::debug!(
            count = suspects.len(),
            "confirming entries of an interrupted refresh"
        );
        let result = self.delete_unmarked(Some(&suspects));
        self.suspects = suspects;
        result
    }
}
