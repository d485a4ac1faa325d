//! Sequence numbers: one per change, reserved on disk in blocks before they are handed out, so
//! that none is ever handed out twice, across crashes too.

use crate::error::Error;
use crate::log::FsyncPolicy;
use crate::store::Store;

/// The first block of numbers reserved on disk in a run; blocks double up to the maximum. The
/// next block is written when fewer than half of the first block's numbers are left, so that a
/// background sync or a commit has usually made it durable by the time it is needed.
const FIRST_RESERVATION: u64 = 1 << 16;
const MAX_RESERVATION: u64 = 1 << 20;

/// The numbering of a mirror's changes.
#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    /// The number the next change gets.
    pub(crate) next: u64,
    /// Numbers below this are reserved on disk and may be handed out.
    pub(crate) reserved: u64,
    /// A further reservation written ahead: where its record ends, and its limit.
    ahead: Option<(u64, u64)>,
    /// The size of the next block.
    block: u64,
}

impl Sequence {
    /// Numbering that starts at `next`, with nothing reserved beyond it.
    pub(crate) fn starting_at(next: u64) -> Sequence {
        Sequence {
            next,
            reserved: next,
            ahead: None,
            block: FIRST_RESERVATION,
        }
    }

    /// The next number, reserved on disk before it is handed out: a reservation is written
    /// ahead, and used once durable (synced under [`FsyncPolicy::EveryCommit`], written under the
    /// others), syncing now only if it is not yet. A store that keeps nothing needs no
    /// reservation.
    pub(crate) fn take(&mut self, store: &mut dyn Store) -> Result<u64, Error> {
        if store.persistent() {
            let every_commit = store.policy() == FsyncPolicy::EveryCommit;
            if let Some((end, limit)) = self.ahead {
                if !every_commit || store.synced_len()? >= end {
                    self.reserved = self.reserved.max(limit);
                    self.ahead = None;
                }
            }
            if self.ahead.is_none() && self.next + FIRST_RESERVATION / 2 >= self.reserved {
                let limit = self.reserved.max(self.next) + self.block;
                self.ahead = Some((store.reserve(limit)?, limit));
                self.block = (self.block * 2).min(MAX_RESERVATION);
            }
            if self.next >= self.reserved {
                if let Some((_, limit)) = self.ahead.take() {
                    if every_commit {
                        store.sync()?;
                    }
                    self.reserved = limit;
                }
            }
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }
}
