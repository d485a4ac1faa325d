//! The outbox: changes applied to the mirror and not yet acknowledged by the consumer, in
//! sequence order. A change is handed out only once the commit that logs it is durable, and
//! leaves the outbox when the consumer acknowledges it; the log keeps the same changes, so that
//! a new process hands out again exactly those that were not acknowledged.

use std::collections::VecDeque;

use crate::change::Change;

/// Changes between the mirror and the consumer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Applied, not yet in a commit.
    fresh: Vec<Change>,
    /// About how many bytes the fresh changes hold.
    fresh_bytes: u64,
    /// Logged by a commit, not acknowledged.
    staged: VecDeque<Change>,
    /// For each commit that logged changes: the last number it logged and where it ends in the
    /// store; dropped once durable.
    stages: VecDeque<(u64, u64)>,
    /// Changes up to this number are durable: they may be handed out.
    durable: u64,
    /// The highest number the consumer acknowledged.
    acked: u64,
}

impl Outbox {
    /// An outbox holding `changes`, logged and durable, found when the store was opened, above
    /// the acknowledged number `acked`.
    pub(crate) fn restored(changes: Vec<Change>, acked: u64) -> Outbox {
        let durable = changes.last().map_or(acked, |c| c.seq);
        Outbox {
            fresh: Vec::new(),
            fresh_bytes: 0,
            staged: changes.into(),
            stages: VecDeque::new(),
            durable,
            acked,
        }
    }

    /// A change just applied.
    pub(crate) fn push(&mut self, change: Change) {
        self.fresh_bytes +=
            (change.entry.dn.len() + change.entry.attributes.as_ber().len() + 64) as u64;
        self.fresh.push(change);
    }

    /// About how many bytes the changes not yet in a commit hold.
    pub(crate) fn fresh_bytes(&self) -> u64 {
        self.fresh_bytes
    }

    /// A commit ending at `offset` logged every fresh change.
    pub(crate) fn logged(&mut self, offset: u64) {
        if let Some(last) = self.fresh.last() {
            self.stages.push_back((last.seq, offset));
            self.staged.extend(self.fresh.drain(..));
            self.fresh_bytes = 0;
        }
    }

    /// Where the last commit that logged changes ends, if it is not known to be durable yet.
    pub(crate) fn last_stage(&self) -> Option<u64> {
        self.stages.back().map(|(_, offset)| *offset)
    }

    /// The changes that may be handed out now that the store is durable up to `durable_len`:
    /// logged, durable, not acknowledged.
    pub(crate) fn ready(&mut self, durable_len: u64) -> &[Change] {
        while let Some(&(seq, offset)) = self.stages.front() {
            if offset > durable_len {
                break;
            }
            self.durable = self.durable.max(seq);
            self.stages.pop_front();
        }
        let durable = self.durable;
        let staged = self.staged.make_contiguous();
        let n = staged.partition_point(|c| c.seq <= durable);
        &staged[..n]
    }

    /// The consumer acknowledged every change up to `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
        while self.staged.front().is_some_and(|c| c.seq <= seq) {
            self.staged.pop_front();
        }
    }

    /// The highest number acknowledged.
    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether changes wait for a commit to log them.
    pub(crate) fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// How many changes wait for a commit to log them.
    pub(crate) fn fresh_len(&self) -> usize {
        self.fresh.len()
    }

    /// Whether no logged change waits to be handed out.
    pub(crate) fn nothing_logged(&self) -> bool {
        self.staged.is_empty()
    }

    /// Whether every change applied was acknowledged.
    pub(crate) fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.staged.is_empty()
    }

    /// How many changes were applied and not acknowledged.
    pub(crate) fn len(&self) -> usize {
        self.fresh.len() + self.staged.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeKind;
    use crate::Entry;
    use syncrepl_proto::{AttributeList, EntryUuid};

    fn change(seq: u64) -> Change {
        Change {
            seq,
            kind: ChangeKind::Add,
            uuid: EntryUuid([seq as u8; 16]),
            entry: Entry {
                dn: format!("uid={seq}"),
                attributes: AttributeList::default(),
            },
            old_dn: None,
            delta: Vec::new(),
        }
    }

    #[test]
    fn changes_wait_for_their_commit_to_be_durable() {
        let mut outbox = Outbox::default();
        outbox.push(change(1));
        outbox.push(change(2));
        assert!(outbox.ready(u64::MAX).is_empty(), "not logged yet");
        outbox.logged(100);
        outbox.push(change(3));
        outbox.logged(200);
        assert!(outbox.ready(99).is_empty());
        assert_eq!(outbox.ready(150).len(), 2);
        assert_eq!(outbox.ready(200).len(), 3);
        outbox.ack(2);
        assert_eq!(
            outbox.ready(200).iter().map(|c| c.seq).collect::<Vec<_>>(),
            [3]
        );
        assert_eq!((outbox.acked(), outbox.len()), (2, 1));
        outbox.ack(3);
        assert!(outbox.is_empty());
        let restored = Outbox::restored(vec![change(7), change(8)], 6);
        assert_eq!(restored.len(), 2);
    }
}
