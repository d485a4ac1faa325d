//! The mirror's errors: what is wrong with the state directory, kept apart from I/O failures.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening or updating a mirror.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the state failed (disk full, failed fsync, permissions).
    #[error("state I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another process holds the state directory.
    #[error("state directory {path} is locked by another process{}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        holder: Option<u32>,
    },
    /// The file is not a syncrepl state log.
    #[error("{path} is not a syncrepl state file (bad magic)")]
    NotAStateFile {
        /// The file.
        path: PathBuf,
    },
    /// The state was written by a format this build does not read; nothing was changed.
    #[error("unsupported state format version {found} in {path} (this build reads {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A record before the end of the log is damaged.
    #[error("state log {path} is damaged at offset {offset}, before its tail; open it with repair to truncate there (later changes are then re-read from the server)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
    },
    /// The state belongs to another search.
    #[error(
        "state belongs to a different search: {stored} (asked: {asked}); reset it to start over"
    )]
    SearchMismatch {
        /// The stored search.
        stored: String,
        /// The search asked for.
        asked: String,
    },
    /// A record is well framed and checksummed but its content does not decode.
    #[error("state log {path}: invalid {what} record at offset {offset}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// What kind of record.
        what: &'static str,
        /// Where.
        offset: u64,
    },
    /// A record would exceed the largest size replay accepts (an entry of hundreds of MiB).
    #[error("a state record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The record's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An event that is not content of the sync search was given to the mirror to apply.
    #[error("not a content event of the sync search: {event}")]
    NotContent {
        /// The event.
        event: String,
    },
    /// An earlier write failed; the mirror refuses further changes until reopened.
    #[error("the mirror failed earlier and must be reopened")]
    Poisoned,
}
