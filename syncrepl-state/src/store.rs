//! Where the mirror keeps its records: one trait at the level of records and commits, so that the
//! rules of the mirror do not know which store runs, with the log of a state directory
//! ([`crate::log`]) and memory behind it.

use std::time::Instant;

use syncrepl_proto::{AttributeList, EntryUuid};

use crate::error::Error;
use crate::log::{CommitInfo, FsyncPolicy, Record};

/// How a commit wants its sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitSync {
    /// As the fsync policy says, before returning.
    PerPolicy,
    /// As the policy says, but on another thread: [`Store::durable_len`] tells when it is done.
    Background,
    /// Under [`FsyncPolicy::EveryCommit`], within a few milliseconds ([`Store::sync_due`]) or with
    /// the next commit's sync, whichever comes first: for commits that only move the cookie and
    /// the acknowledged number past changes already durable, so that a burst pays one fsync per
    /// batch. Under the other policies, as they say.
    Soon,
}

/// Receives what a store finds when it is opened.
pub(crate) trait ReplaySink {
    /// About how many bytes of records are coming, so that room can be made at once.
    fn expect_bytes(&mut self, _len: u64) {}
    /// One committed record, in log order, each batch when its commit was read.
    fn record(&mut self, record: Record);
}

/// A store of records: appended, made visible by commits, made durable by syncs.
pub(crate) trait Store: Send + std::fmt::Debug {
    /// Whether anything survives the process (sequence numbers are reserved only then).
    fn persistent(&self) -> bool;
    /// The fsync policy.
    fn policy(&self) -> FsyncPolicy;
    /// Whether the records found are of an older format and must be rewritten before appending.
    fn needs_rewrite(&self) -> bool {
        false
    }
    /// Queues a record; it counts only with the next commit.
    fn append(&mut self, record: &Record) -> Result<(), Error>;
    /// Queues an upsert record without building a [`Record`] (the hot path of a refresh).
    fn append_upsert(
        &mut self,
        seq: u64,
        uuid: EntryUuid,
        dn: &str,
        attributes: &AttributeList,
    ) -> Result<(), Error>;
    /// Writes a reservation of sequence numbers below `limit` through to the OS and returns the
    /// offset where it ends: under [`FsyncPolicy::EveryCommit`] its numbers may be handed out once
    /// [`Store::synced_len`] reaches it, under the other policies at once.
    fn reserve(&mut self, limit: u64) -> Result<u64, Error>;
    /// Writes a commit record and syncs as asked; returns the offset where it ends.
    fn commit(&mut self, info: &CommitInfo, sync: CommitSync, now: Instant) -> Result<u64, Error>;
    /// How much is durable as the policy means it (synced under [`FsyncPolicy::EveryCommit`],
    /// written to the OS otherwise), without waiting.
    fn durable_len(&mut self) -> Result<u64, Error>;
    /// Waits until `offset` is durable as the policy means it.
    fn wait_durable(&mut self, offset: u64) -> Result<(), Error>;
    /// How much is known to be synced (a finished background sync counts).
    fn synced_len(&mut self) -> Result<u64, Error>;
    /// Syncs whatever was written.
    fn sync(&mut self) -> Result<(), Error>;
    /// When a group commit left data unsynced: the time by which it should be synced.
    fn sync_due(&self) -> Option<Instant>;
    /// Starts over with a snapshot of `records` (the search first, a commit last).
    fn rewrite(&mut self, records: &mut dyn Iterator<Item = Record>) -> Result<(), Error>;
    /// Bytes of committed records.
    fn committed_len(&self) -> u64;
    /// Bytes appended since the last commit.
    fn uncommitted_len(&self) -> u64;
}

/// The store of a mirror kept in memory only: nothing to write, everything durable at once.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore;

impl Store for MemoryStore {
    fn persistent(&self) -> bool {
        false
    }
    fn policy(&self) -> FsyncPolicy {
        FsyncPolicy::Os
    }
    fn append(&mut self, _: &Record) -> Result<(), Error> {
        Ok(())
    }
    fn append_upsert(
        &mut self,
        _: u64,
        _: EntryUuid,
        _: &str,
        _: &AttributeList,
    ) -> Result<(), Error> {
        Ok(())
    }
    fn reserve(&mut self, _: u64) -> Result<u64, Error> {
        Ok(0)
    }
    fn commit(&mut self, _: &CommitInfo, _: CommitSync, _: Instant) -> Result<u64, Error> {
        Ok(0)
    }
    fn durable_len(&mut self) -> Result<u64, Error> {
        Ok(u64::MAX)
    }
    fn wait_durable(&mut self, _: u64) -> Result<(), Error> {
        Ok(())
    }
    fn synced_len(&mut self) -> Result<u64, Error> {
        Ok(u64::MAX)
    }
    fn sync(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn sync_due(&self) -> Option<Instant> {
        None
    }
    fn rewrite(&mut self, _: &mut dyn Iterator<Item = Record>) -> Result<(), Error> {
        Ok(())
    }
    fn committed_len(&self) -> u64 {
        0
    }
    fn uncommitted_len(&self) -> u64 {
        0
    }
}
