//! The on-disk store: an append-only, checksummed log in a state directory.
//!
//! # Format (version 3)
//!
//! The file `state.log` starts with a 20-byte header: the magic `SYNCREPL`, the format version
//! (u32, little-endian) and the generation (u64), which grows with each compaction. Records follow,
//! each `length (u32) | kind (u8) | payload | crc32c (u32)`, where the length counts kind and
//! payload and the CRC32C covers them. All integers are little-endian; a "string" is a u32 length and
//! its bytes.
//!
//! | kind | record | payload |
//! | --- | --- | --- |
//! | 1 | search | scope (u8), base, filter, attribute count (u32), attributes |
//! | 2 | upsert | sequence number (u64, 0 in a snapshot), entryUUID (16 bytes), DN, the BER attribute list (to the end) |
//! | 3 | delete | sequence number (u64), entryUUID (16 bytes) |
//! | 4 | commit | next sequence number (u64), reserved numbers (u64), acknowledged number (u64), flags (u8: 1 reload, 2 cookie, 4 settled), cookie, server, last change (u64, Unix seconds), synced length (u64) |
//! | 5 | reserve | the sequence number below which numbers may have been handed out (u64) |
//!
//! # Rules
//!
//! - Entry changes become visible only with the commit record that follows them: replay applies
//!   whole batches. A commit is *settled* when its cookie covers every entry (the end of a refresh,
//!   a persist-stage cookie) and *unsettled* when it keeps the cookie the refresh started from: the
//!   entries upserted since the last settled commit are then *suspects* that the next refresh must
//!   confirm (see [`crate::Mirror`]).
//! - Every commit records the *synced length*: how much of the file an fsync had made durable when
//!   it was written. Replay stops at the first record that is incomplete, oversized or fails its
//!   checksum. If no later commit claims that the damaged spot had been synced, the damage is a torn
//!   tail (a crash or power loss during unsynced writes): the file is truncated to the last good
//!   commit and synced. Otherwise it is damage before the tail, a [`Error::Damaged`](crate::Error::Damaged) unless the
//!   caller asked to repair.
//! - Sequence numbers are reserved before they are handed to a handler: a reserve record is written
//!   (and, with [`FsyncPolicy::EveryCommit`], synced) for a block of numbers, and each commit
//!   repeats the reservation in force. Replay resumes numbering above the last commit's
//!   reservation and above any reserve record after it, even in a torn tail (re-written after the
//!   tail is cut), so numbers never repeat across crashes. A clean close commits the exact next
//!   number, so a restart without a crash continues without a gap.
//! - Compaction writes a snapshot of the live entries to `state.log.tmp`, syncs it, renames it over
//!   `state.log`, syncs the directory and continues appending to the new generation.
//! - The log is also the *outbox* of the change stream: every upsert and delete record carries
//!   the sequence number of the change it makes, and no change is handed to a consumer before its
//!   record is committed (unsettled, see above) and durable per the [`FsyncPolicy`]. Commits
//!   record the highest number the consumer acknowledged; on open, the changes logged above it are
//!   rebuilt from the records, with the same numbers and content, and handed out again.
//! - Version 2 (the same records without sequence numbers or acknowledged number) is read and
//!   rewritten as version 3 on open; any other version is [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion), and
//!   nothing is rewritten.

mod io;
mod record;
mod replay;
mod store;

pub use io::{Lock, LogFile, LogIo, StdIo};
pub use record::{FsyncPolicy, FORMAT_VERSION, MAGIC, OLDEST_READABLE};

pub(crate) use record::{CommitInfo, Record};
pub(crate) use replay::replay_pipelined;
pub(crate) use store::LogStore;

/// The log's file name in a state directory.
pub const LOG_NAME: &str = "state.log";
const TMP_NAME: &str = "state.log.tmp";
const LOCK_NAME: &str = "lock";
