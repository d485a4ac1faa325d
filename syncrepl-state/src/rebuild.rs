//! Rebuilding a mirror from the committed records of its log: the entries, the suspects of an
//! interrupted refresh, and the outbox of changes logged above the acknowledged number.

use std::collections::HashMap;

use syncrepl_proto::EntryUuid;

use crate::change::{diff, Change, ChangeKind};
use crate::entries::{Entries, Slot, UuidSet};
use crate::log::{CommitInfo, Record};
use crate::store::ReplaySink;
use crate::{Entry, SearchSpec};

/// A record logged a change that the consumer had not acknowledged when its commit was written:
/// the state before it is kept, so that the change can be rebuilt as it was first handed out.
#[derive(Debug)]
struct Unacked {
    seq: u64,
    uuid: EntryUuid,
    before: Option<Slot>,
}

/// Builds a mirror's content from the committed records of a log.
#[derive(Debug, Default)]
pub(crate) struct Replayer {
    pub(crate) entries: Entries,
    pub(crate) committed: CommitInfo,
    pending: Vec<EntryUuid>,
    pub(crate) suspects: UuidSet,
    /// The search of the first record, if it is one.
    pub(crate) stored: Option<SearchSpec>,
    /// The search asked for, if any: a state of another search is not worth loading.
    pub(crate) asked: Option<SearchSpec>,
    /// Whether any record came, and whether the first was not a search.
    any: bool,
    pub(crate) bad_first: bool,
    /// Set when the stored search differs from the one asked: the rest is not worth loading.
    skip: bool,
    unacked: Vec<Unacked>,
}

impl ReplaySink for Replayer {
    fn expect_bytes(&mut self, len: u64) {
        // Entries take about a kilobyte in the log: make room at once rather than rehash as the
        // replay grows the maps.
        self.entries
            .reserve(usize::try_from(len / 1024).unwrap_or(0));
    }

    fn record(&mut self, record: Record) {
        if !self.any {
            self.any = true;
            match &record {
                Record::Search(stored) => {
                    self.skip = self.asked.as_ref().is_some_and(|a| a != stored);
                    self.stored = Some(stored.clone());
                    if self.skip {
                        return;
                    }
                }
                _ => self.bad_first = true,
            }
        }
        if self.skip || self.bad_first {
            return;
        }
        match record {
            Record::Upsert {
                seq,
                uuid,
                dn,
                attributes,
            } => {
                let before = self.entries.insert(
                    uuid,
                    Slot {
                        entry: Entry { dn, attributes },
                        mark: 0,
                    },
                );
                self.note(seq, uuid, before);
                self.pending.push(uuid);
            }
            Record::Delete { seq, uuid } => {
                let before = self.entries.remove(&uuid);
                self.note(seq, uuid, before);
            }
            Record::Commit { info, .. } => {
                settle(
                    &mut self.pending,
                    &mut self.suspects,
                    info.settled,
                    info.cookie.is_some(),
                );
                let acked = info.acked;
                let n = self.unacked.partition_point(|u| u.seq <= acked);
                self.unacked.drain(..n);
                self.committed = info;
            }
            Record::Search(_) | Record::Reserve(_) => {}
        }
    }
}

impl Replayer {
    /// A replayer for a state that should belong to `asked`.
    pub(crate) fn for_search(asked: Option<SearchSpec>) -> Replayer {
        Replayer {
            asked,
            ..Replayer::default()
        }
    }

    fn note(&mut self, seq: u64, uuid: EntryUuid, before: Option<Slot>) {
        // Numbers are 0 in snapshots and old formats: no change to hand out again.
        if seq > self.committed.acked {
            self.unacked.push(Unacked { seq, uuid, before });
        }
    }

    /// The changes logged above the last acknowledged number, rebuilt as they were handed out:
    /// each from the state before it and the state after it (the next change's "before", or the
    /// entry as it is now).
    pub(crate) fn take_unacked(&mut self) -> Vec<Change> {
        let unacked = std::mem::take(&mut self.unacked);
        let mut after: HashMap<EntryUuid, Option<Entry>> = HashMap::new();
        let mut out = Vec::with_capacity(unacked.len());
        for u in unacked.into_iter().rev() {
            let now = after
                .remove(&u.uuid)
                .unwrap_or_else(|| self.entries.get(&u.uuid).cloned());
            let before = u.before.map(|s| s.entry);
            after.insert(u.uuid, before.clone());
            let change = match (before, now) {
                (None, Some(entry)) => Change {
                    seq: u.seq,
                    kind: ChangeKind::Add,
                    uuid: u.uuid,
                    entry,
                    old_dn: None,
                    delta: Vec::new(),
                },
                (Some(entry), None) => Change {
                    seq: u.seq,
                    kind: ChangeKind::Delete,
                    uuid: u.uuid,
                    entry,
                    old_dn: None,
                    delta: Vec::new(),
                },
                (Some(old), Some(entry)) => Change {
                    seq: u.seq,
                    kind: ChangeKind::Modify,
                    uuid: u.uuid,
                    delta: diff(&old.attributes, &entry.attributes),
                    old_dn: (old.dn != entry.dn).then_some(old.dn),
                    entry,
                },
                // A delete of an entry that was not there is never logged.
                (None, None) => continue,
            };
            out.push(change);
        }
        out.reverse();
        out
    }
}

/// What a commit does to the suspects: a settled commit (its cookie covers everything) clears them;
/// an unsettled one keeps the cookie the refresh started from, so what was upserted since becomes
/// suspect. Without a cookie there is nothing to track: the next refresh sends everything.
pub(crate) fn settle(
    pending: &mut Vec<EntryUuid>,
    suspects: &mut UuidSet,
    settled: bool,
    cookie: bool,
) {
    if settled {
        suspects.clear();
    } else if cookie {
        suspects.extend(pending.iter().copied());
    }
    pending.clear();
}
