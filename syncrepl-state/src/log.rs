//! The on-disk store: an append-only, checksummed log in a state directory.
//!
//! # Format (version 2)
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
//! | 2 | upsert | entryUUID (16 bytes), DN, the BER attribute list (to the end) |
//! | 3 | delete | entryUUID (16 bytes) |
//! | 4 | commit | next sequence number (u64), reserved numbers (u64), flags (u8: 1 reload, 2 cookie, 4 settled), cookie, server, last change (u64, Unix seconds), synced length (u64) |
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
//!   commit and synced. Otherwise it is damage before the tail, a [`Error::Damaged`] unless the
//!   caller asked to repair.
//! - Sequence numbers are reserved before they are handed to a handler: a reserve record is written
//!   (and, with [`FsyncPolicy::EveryCommit`], synced) for a block of numbers, and each commit
//!   repeats the reservation in force. Replay resumes numbering above the last commit's
//!   reservation and above any reserve record after it, even in a torn tail (re-written after the
//!   tail is cut), so numbers never repeat across crashes. A clean close commits the exact next
//!   number, so a restart without a crash continues without a gap.
//! - Compaction writes a snapshot of the live entries to `state.log.tmp`, syncs it, renames it over
//!   `state.log`, syncs the directory and continues appending to the new generation.
//! - A version other than 2 is [`Error::UnsupportedVersion`]; nothing is rewritten.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use syncrepl_proto::{AttributeList, Cookie, EntryUuid, Scope};

use crate::error::Error;
use crate::SearchSpec;

/// The magic at the start of a state log.
pub const MAGIC: &[u8; 8] = b"SYNCREPL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 20;
/// The log's file name in a state directory.
pub const LOG_NAME: &str = "state.log";
const TMP_NAME: &str = "state.log.tmp";
const LOCK_NAME: &str = "lock";
/// A record may not claim more than this, so a damaged length cannot make replay allocate wildly.
const MAX_RECORD: usize = 256 << 20;
/// The largest commit record looked for when deciding whether damage lies before the tail.
const MAX_COMMIT: usize = 1 << 20;
/// The smallest commit body: kind, next_seq, reserved, flags, two empty strings, last_change,
/// synced length.
const MIN_COMMIT: usize = 1 + 8 + 8 + 1 + 4 + 4 + 8 + 8;
/// Buffered records are written out at this size.
const WRITE_CHUNK: usize = 1 << 20;

const KIND_SEARCH: u8 = 1;
const KIND_UPSERT: u8 = 2;
const KIND_DELETE: u8 = 3;
const KIND_COMMIT: u8 = 4;
const KIND_RESERVE: u8 = 5;

const FLAG_RELOAD: u8 = 1;
const FLAG_COOKIE: u8 = 2;
const FLAG_SETTLED: u8 = 4;

/// When the log is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` at every commit: a commit that returned is on disk.
    #[default]
    EveryCommit,
    /// Sync when the oldest unsynced commit is older than `max_delay` or `max_bytes` are unsynced;
    /// a process crash loses nothing committed, a power loss at most that window.
    Group {
        /// Longest time a commit may wait for its sync.
        max_delay: Duration,
        /// Most bytes that may wait for a sync.
        max_bytes: u64,
    },
    /// Never sync explicitly; the operating system decides.
    Os,
}

/// The bookkeeping written with each commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CommitInfo {
    /// The next event sequence number.
    pub(crate) next_seq: u64,
    /// Numbers below this may have been handed out (the reservation in force).
    pub(crate) reserved: u64,
    /// The cookie describing the committed content.
    pub(crate) cookie: Option<Cookie>,
    /// Whether the next sync must be a full reload (after e-syncRefreshRequired).
    pub(crate) needs_reload: bool,
    /// Whether the cookie covers every committed entry; if not, entries upserted since the last
    /// settled commit are suspects for the next refresh to confirm.
    pub(crate) settled: bool,
    /// The server last synced from (an URL without credentials).
    pub(crate) server: String,
    /// Unix time of the last change applied, in seconds.
    pub(crate) last_change: u64,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// The search the state belongs to (first record of every generation).
    Search(SearchSpec),
    /// An entry was added or changed.
    Upsert {
        /// The entryUUID.
        uuid: EntryUuid,
        /// The DN.
        dn: String,
        /// The attributes.
        attributes: AttributeList,
    },
    /// An entry left the content.
    Delete {
        /// The entryUUID.
        uuid: EntryUuid,
    },
    /// Everything before is committed; the bookkeeping as of now.
    Commit {
        /// The bookkeeping.
        info: CommitInfo,
        /// How much of the file was known to be synced when this record was written.
        synced_len: u64,
    },
    /// Sequence numbers below this may have been handed out.
    Reserve(u64),
}

/// An open log file, behind a trait so tests can inject torn writes, failed syncs and full disks.
pub trait LogFile: Send {
    /// Appends bytes.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Flushes data to stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same file, so that data can be written or synced on another thread
    /// while this one goes on; `None` where that is not possible.
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        None
    }
}

/// The file operations the log needs.
pub trait LogIo: Send {
    /// Reads a whole file, or `None` if it does not exist.
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Opens a file for reading with its length, or `None` if it does not exist.
    fn open_read(&mut self, path: &Path) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        Ok(self.read(path)?.map(|data| {
            let len = data.len() as u64;
            (Box::new(io::Cursor::new(data)) as Box<dyn Read + Send>, len)
        }))
    }
    /// Opens a file for appending, creating it (mode 0600) if needed.
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Creates or truncates a file (mode 0600) for writing.
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Renames a file.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs a directory, making a rename durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

struct StdFile(File);

impl LogFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        self.0
            .try_clone()
            .ok()
            .map(|f| Box::new(StdFile(f)) as Box<dyn LogFile>)
    }
}

impl LogIo for StdIo {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_read(&mut self, path: &Path) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some((
                    Box::new(io::BufReader::with_capacity(1 << 20, file)),
                    len,
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Encodes a record's kind and payload.
fn encode_body(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Search(spec) => {
            out.push(KIND_SEARCH);
            out.push(match spec.scope {
                Scope::Base => 0,
                Scope::One => 1,
                Scope::Subtree => 2,
            });
            put_bytes(out, spec.base.as_bytes());
            put_bytes(out, spec.filter.as_bytes());
            out.extend_from_slice(&(spec.attributes.len() as u32).to_le_bytes());
            for a in &spec.attributes {
                put_bytes(out, a.as_bytes());
            }
        }
        Record::Upsert {
            uuid,
            dn,
            attributes,
        } => upsert_body(*uuid, dn, attributes, out),
        Record::Delete { uuid } => {
            out.push(KIND_DELETE);
            out.extend_from_slice(uuid.as_bytes());
        }
        Record::Commit { info, synced_len } => {
            out.push(KIND_COMMIT);
            out.extend_from_slice(&info.next_seq.to_le_bytes());
            out.extend_from_slice(&info.reserved.to_le_bytes());
            let mut flags = 0;
            if info.needs_reload {
                flags |= FLAG_RELOAD;
            }
            if info.cookie.is_some() {
                flags |= FLAG_COOKIE;
            }
            if info.settled {
                flags |= FLAG_SETTLED;
            }
            out.push(flags);
            put_bytes(
                out,
                info.cookie
                    .as_ref()
                    .map(|c| c.as_bytes())
                    .unwrap_or_default(),
            );
            put_bytes(out, info.server.as_bytes());
            out.extend_from_slice(&info.last_change.to_le_bytes());
            out.extend_from_slice(&synced_len.to_le_bytes());
        }
        Record::Reserve(limit) => {
            out.push(KIND_RESERVE);
            out.extend_from_slice(&limit.to_le_bytes());
        }
    }
}

fn upsert_body(uuid: EntryUuid, dn: &str, attributes: &AttributeList, out: &mut Vec<u8>) {
    out.push(KIND_UPSERT);
    out.extend_from_slice(uuid.as_bytes());
    put_bytes(out, dn.as_bytes());
    out.extend_from_slice(attributes.as_ber());
}

/// Appends a framed record to `out`.
fn encode_record(record: &Record, out: &mut Vec<u8>) {
    frame(out, |out| encode_body(record, out));
}

/// Frames what `body` writes: length before, checksum after.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let body = &out[start + 4..];
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn rest(&mut self) -> &'a [u8] {
        let out = self.data.get(self.pos..).unwrap_or_default();
        self.pos = self.data.len();
        out
    }
    fn done(&self) -> bool {
        self.pos == self.data.len()
    }
}

/// Decodes a record body (kind and payload), checking every field.
fn decode_body(body: &[u8]) -> Option<Record> {
    let mut c = Cursor { data: body, pos: 0 };
    let record = match c.u8()? {
        KIND_SEARCH => {
            let scope = match c.u8()? {
                0 => Scope::Base,
                1 => Scope::One,
                2 => Scope::Subtree,
                _ => return None,
            };
            let base = c.string()?;
            let filter = c.string()?;
            let n = c.u32()? as usize;
            let mut attributes = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                attributes.push(c.string()?);
            }
            Record::Search(SearchSpec {
                base,
                scope,
                filter,
                attributes,
            })
        }
        KIND_UPSERT => {
            let uuid = EntryUuid::from_slice(c.take(16)?)?;
            let dn = c.string()?;
            let attributes = AttributeList::from_ber(Bytes::copy_from_slice(c.rest())).ok()?;
            Record::Upsert {
                uuid,
                dn,
                attributes,
            }
        }
        KIND_DELETE => Record::Delete {
            uuid: EntryUuid::from_slice(c.take(16)?)?,
        },
        KIND_COMMIT => {
            let next_seq = c.u64()?;
            let reserved = c.u64()?;
            let flags = c.u8()?;
            if flags & !(FLAG_RELOAD | FLAG_COOKIE | FLAG_SETTLED) != 0 {
                return None;
            }
            let cookie = c.bytes()?;
            let server = c.string()?;
            let last_change = c.u64()?;
            let synced_len = c.u64()?;
            Record::Commit {
                info: CommitInfo {
                    next_seq,
                    reserved,
                    cookie: (flags & FLAG_COOKIE != 0).then(|| Cookie::from(cookie)),
                    needs_reload: flags & FLAG_RELOAD != 0,
                    settled: flags & FLAG_SETTLED != 0,
                    server,
                    last_change,
                },
                synced_len,
            }
        }
        KIND_RESERVE => Record::Reserve(c.u64()?),
        _ => return None,
    };
    c.done().then_some(record)
}

fn kind_name(body: &[u8]) -> &'static str {
    match body.first() {
        Some(&KIND_SEARCH) => "search",
        Some(&KIND_UPSERT) => "upsert",
        Some(&KIND_DELETE) => "delete",
        Some(&KIND_COMMIT) => "commit",
        Some(&KIND_RESERVE) => "reserve",
        _ => "unknown",
    }
}

/// What replay found in a state log, besides the records it handed over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// The generation of the file.
    pub(crate) generation: u64,
    /// Where the committed part ends (the file is cut there).
    pub(crate) committed_end: u64,
    /// Bytes after the committed part (torn, uncommitted, or cut by a repair).
    pub(crate) truncated: u64,
    /// The reservation of the last commit.
    pub(crate) committed_reserved: u64,
    /// The highest reservation after the last commit (the tail included, torn or not).
    pub(crate) tail_reserved: u64,
    /// Whether the file had a whole header.
    pub(crate) had_header: bool,
}

/// Reads as much of `buf` as the reader has; returns how many bytes that was.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Parses a state log of `len` bytes from `reader`, record by record, without holding the file in
/// memory, and hands the committed records to `sink` in order, each batch when its commit is read.
/// `repair` truncates at damage found before the tail instead of failing.
pub(crate) fn replay_from(
    path: &Path,
    reader: &mut dyn Read,
    len: u64,
    repair: bool,
    sink: &mut dyn FnMut(Record),
) -> Result<Replayed, Error> {
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(io_error)?;
    if got < HEADER_LEN || &header[..8] != MAGIC {
        if got < HEADER_LEN && MAGIC.starts_with(&header[..got.min(8)]) {
            // A file cut while its header was written: nothing was ever committed in it.
            return Ok(Replayed {
                truncated: len,
                ..Replayed::default()
            });
        }
        return Err(Error::NotAStateFile {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut generation_bytes = [0u8; 8];
    generation_bytes.copy_from_slice(&header[12..20]);
    let mut out = Replayed {
        generation: u64::from_le_bytes(generation_bytes),
        had_header: true,
        ..Replayed::default()
    };
    let mut pos = HEADER_LEN as u64;
    let mut committed_end = pos;
    let mut batch: Vec<Record> = Vec::new();
    let mut buf = Vec::new();
    loop {
        if pos == len {
            break;
        }
        let mut prefix = [0u8; 4];
        let got = read_full(reader, &mut prefix).map_err(io_error)?;
        let body_len = u32::from_le_bytes(prefix) as usize;
        let end = pos + 4 + body_len as u64 + 4;
        let framed = got == 4 && (1..=MAX_RECORD).contains(&body_len) && end <= len;
        let mut good = None;
        let mut body_got = 0;
        if framed {
            buf.resize(body_len + 4, 0);
            body_got = read_full(reader, &mut buf).map_err(io_error)?;
            let (body, crc) = buf.split_at(body_len);
            if body_got == buf.len() && crc32c::crc32c(body).to_le_bytes() == crc[..4] {
                match decode_body(body) {
                    Some(record) => good = Some(record),
                    None if repair => {}
                    None => {
                        return Err(Error::BadRecord {
                            path: path.to_owned(),
                            what: kind_name(body),
                            offset: pos,
                        })
                    }
                }
            }
        }
        let Some(record) = good else {
            let mut consumed = prefix[..got].to_vec();
            consumed.extend_from_slice(&buf[..body_got]);
            // The first bad record. Damage before the tail only if a later commit says this spot
            // had been synced; otherwise a torn, unsynced tail.
            let later = scan_commits(path, consumed.get(1..).unwrap_or_default(), reader)?;
            if later.synced_len > pos && !repair {
                return Err(Error::Damaged {
                    path: path.to_owned(),
                    offset: pos,
                });
            }
            out.tail_reserved = out.tail_reserved.max(later.reserved);
            break;
        };
        pos = end;
        match record {
            Record::Reserve(limit) => out.tail_reserved = out.tail_reserved.max(limit),
            Record::Commit { ref info, .. } => {
                out.committed_reserved = info.reserved.max(info.next_seq);
                out.tail_reserved = 0;
                for r in batch.drain(..) {
                    sink(r);
                }
                sink(record);
                committed_end = pos;
            }
            other => batch.push(other),
        }
    }
    out.committed_end = committed_end;
    out.truncated = len - committed_end;
    Ok(out)
}

/// [`replay_from`] on a second thread: reading, checking and decoding records there overlaps with
/// what `sink` does with them here (building the mirror), which makes opening a large state about
/// twice as fast on two cores. Records reach `sink` in the same order.
pub(crate) fn replay_pipelined(
    path: &Path,
    reader: &mut (dyn Read + Send),
    len: u64,
    repair: bool,
    sink: &mut dyn FnMut(Record),
) -> Result<Replayed, Error> {
    const CHUNK: usize = 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(8);
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let result = replay_from(path, reader, len, repair, &mut |record| {
                chunk.push(record);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    // The receiver only goes away if this function is unwinding.
                    let _ = tx.send(full);
                }
            });
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            result
        });
        for chunk in rx {
            for record in chunk {
                sink(record);
            }
        }
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What a scan past damage found.
#[derive(Debug, Default, Clone, Copy)]
struct Later {
    /// The largest synced length claimed by a valid commit record.
    synced_len: u64,
    /// The largest valid reservation.
    reserved: u64,
}

/// Looks, byte by byte, for whole, checksummed commit and reserve records in what follows the first
/// byte of a bad record: `head` (bytes already read) and then the rest of `reader`. Commit records
/// are small, so the scan holds a window of a few MiB however long the file is.
fn scan_commits(path: &Path, head: &[u8], reader: &mut dyn Read) -> Result<Later, Error> {
    const WINDOW: usize = 4 << 20;
    let mut data = head.to_vec();
    let mut eof = false;
    let mut later = Later::default();
    loop {
        if !eof && data.len() < WINDOW {
            let want = (WINDOW - data.len()) as u64;
            let got = (&mut *reader)
                .take(want)
                .read_to_end(&mut data)
                .map_err(|source| Error::Io {
                    path: path.to_owned(),
                    source,
                })?;
            eof = (got as u64) < want;
        }
        let limit = if eof {
            data.len()
        } else {
            data.len().saturating_sub(MAX_COMMIT + 8)
        };
        for i in 0..limit {
            let Some(&kind) = data.get(i + 4) else {
                break;
            };
            if kind != KIND_COMMIT && kind != KIND_RESERVE {
                continue;
            }
            let n = u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
            let plausible = match kind {
                KIND_COMMIT => (MIN_COMMIT..=MAX_COMMIT).contains(&n),
                _ => n == 9,
            };
            let Some(record) = data.get(i + 4..i + 8 + n).filter(|_| plausible) else {
                continue;
            };
            let (body, crc) = record.split_at(n);
            if crc32c::crc32c(body).to_le_bytes() != crc[..4] {
                continue;
            }
            match decode_body(body) {
                Some(Record::Commit { info, synced_len }) => {
                    later.synced_len = later.synced_len.max(synced_len);
                    later.reserved = later.reserved.max(info.reserved.max(info.next_seq));
                }
                Some(Record::Reserve(limit)) => later.reserved = later.reserved.max(limit),
                _ => {}
            }
        }
        if eof {
            return Ok(later);
        }
        data.drain(..limit);
    }
}

/// The log-backed store of a state directory.
pub(crate) struct LogStore {
    dir: PathBuf,
    io: Box<dyn LogIo>,
    file: Option<Box<dyn LogFile>>,
    policy: FsyncPolicy,
    generation: u64,
    buffer: Vec<u8>,
    file_len: u64,
    committed_len: u64,
    synced_len: u64,
    unsynced_since: Option<Instant>,
    /// A sync of earlier writes running on another thread, started when a long batch (a big
    /// refresh) has written more than [`BACKGROUND_SYNC`] bytes, so that the disk works while the
    /// next entries are decoded; the commit waits for it. With the length it makes durable.
    background: Option<(std::thread::JoinHandle<io::Result<()>>, u64)>,
    since_background: u64,
    /// A write of a full chunk running on another thread, so that copying it into the kernel
    /// overlaps with decoding the next entries. Anything else that touches the file waits for it
    /// first; it gives its buffer back for the next chunk.
    writing: Option<std::thread::JoinHandle<(io::Result<()>, Vec<u8>)>>,
    spare: Vec<u8>,
    _lock: File,
}

/// Bytes written between two background syncs of a long batch.
const BACKGROUND_SYNC: u64 = 16 << 20;

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("file_len", &self.file_len)
            .field("committed_len", &self.committed_len)
            .field("synced_len", &self.synced_len)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Takes the state directory's lock, or says who holds it.
fn lock(dir: &Path) -> Result<File, Error> {
    let lock_path = dir.join(LOCK_NAME);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Err(Error::Locked {
                path: dir.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
    }
    // The pid is only a hint for the error message above; failing to write it is harmless.
    let _ = lock.set_len(0);
    let _ = (&lock).write_all(std::process::id().to_string().as_bytes());
    Ok(lock)
}

impl LogStore {
    /// Opens (creating if needed) the state directory `dir`, takes its lock, replays its log into
    /// `sink`, truncates what was not committed and syncs.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        repair: bool,
        mut io: Box<dyn LogIo>,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(LogStore, Replayed), Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        set_private(dir);
        let lock = lock(dir)?;
        let path = dir.join(LOG_NAME);
        let replayed = match io.open_read(&path).map_err(io_err(&path))? {
            Some((mut reader, len)) => replay_pipelined(&path, &mut *reader, len, repair, sink)?,
            None => Replayed::default(),
        };
        let mut store = LogStore {
            dir: dir.to_owned(),
            io,
            file: None,
            policy,
            generation: replayed.generation,
            buffer: Vec::new(),
            file_len: replayed.committed_end,
            committed_len: replayed.committed_end,
            synced_len: replayed.committed_end,
            unsynced_since: None,
            background: None,
            since_background: 0,
            writing: None,
            spare: Vec::new(),
            _lock: lock,
        };
        if replayed.had_header {
            let mut file = store.io.open_append(&path).map_err(io_err(&path))?;
            if replayed.truncated > 0 {
                tracing::warn!(
                    bytes = replayed.truncated,
                    offset = replayed.committed_end,
                    "truncating the uncommitted tail of the state log"
                );
                file.truncate(replayed.committed_end)
                    .map_err(io_err(&path))?;
            }
            store.file = Some(file);
            if replayed.truncated > 0 {
                store.sync()?;
            }
        }
        Ok((store, replayed))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_NAME)
    }

    /// The size of the log file, committed part only.
    pub(crate) fn committed_len(&self) -> u64 {
        self.committed_len
    }

    /// Bytes appended since the last commit.
    pub(crate) fn uncommitted_len(&self) -> u64 {
        self.file_len + self.buffer.len() as u64 - self.committed_len
    }

    /// Starts a new log with a snapshot of `records` (which must start with the search and end with
    /// a commit): temp file, sync, rename, sync the directory.
    pub(crate) fn rewrite(
        &mut self,
        records: &mut dyn Iterator<Item = Record>,
    ) -> Result<(), Error> {
        self.finish_write()?;
        self.wait_background()?;
        let tmp = self.dir.join(TMP_NAME);
        let path = self.log_path();
        let generation = self.generation + 1;
        let mut file = self.io.create(&tmp).map_err(io_err(&tmp))?;
        let mut buf = Vec::with_capacity(WRITE_CHUNK + (64 << 10));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&generation.to_le_bytes());
        let mut total = 0u64;
        for mut record in records {
            if let Record::Commit { synced_len, .. } = &mut record {
                // Everything before it is synced before the rename makes the file visible.
                *synced_len = total + buf.len() as u64;
            }
            encode_record(&record, &mut buf);
            if buf.len() >= WRITE_CHUNK {
                file.write_all(&buf).map_err(io_err(&tmp))?;
                total += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all(&buf).map_err(io_err(&tmp))?;
        total += buf.len() as u64;
        file.sync_data().map_err(io_err(&tmp))?;
        drop(file);
        self.io.rename(&tmp, &path).map_err(io_err(&path))?;
        self.io.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        self.file = Some(self.io.open_append(&path).map_err(io_err(&path))?);
        self.generation = generation;
        self.file_len = total;
        self.committed_len = total;
        self.synced_len = total;
        self.buffer.clear();
        self.unsynced_since = None;
        self.since_background = 0;
        Ok(())
    }

    /// Queues a delete record; it is written at the latest by the next commit and counts only with
    /// it.
    pub(crate) fn append_delete(&mut self, uuid: EntryUuid) -> Result<(), Error> {
        encode_record(&Record::Delete { uuid }, &mut self.buffer);
        self.maybe_write()
    }

    /// Queues an upsert record without building a [`Record`] (the hot path of a refresh).
    pub(crate) fn append_upsert(
        &mut self,
        uuid: EntryUuid,
        dn: &str,
        attributes: &AttributeList,
    ) -> Result<(), Error> {
        frame(&mut self.buffer, |out| {
            upsert_body(uuid, dn, attributes, out)
        });
        self.maybe_write()
    }

    fn maybe_write(&mut self) -> Result<(), Error> {
        if self.buffer.len() >= WRITE_CHUNK {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.finish_write()?;
        let path = self.log_path();
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Poisoned);
        };
        let len = self.buffer.len() as u64;
        let second = if self.buffer.len() >= WRITE_CHUNK {
            file.sync_handle()
        } else {
            None
        };
        match second {
            Some(mut handle) => {
                let chunk = std::mem::replace(&mut self.buffer, std::mem::take(&mut self.spare));
                self.writing = Some(std::thread::spawn(move || {
                    let result = handle.write_all(&chunk);
                    (result, chunk)
                }));
            }
            None => {
                file.write_all(&self.buffer).map_err(io_err(&path))?;
                self.buffer.clear();
            }
        }
        self.file_len += len;
        self.since_background += len;
        if self.policy != FsyncPolicy::Os
            && self.since_background >= BACKGROUND_SYNC
            && self
                .background
                .as_ref()
                .is_none_or(|(b, _)| b.is_finished())
        {
            // The sync must cover only writes that are done.
            self.finish_write()?;
            self.wait_background()?;
            if let Some(mut handle) = self.file.as_ref().and_then(|f| f.sync_handle()) {
                self.since_background = 0;
                let len = self.file_len;
                self.background = Some((std::thread::spawn(move || handle.sync_data()), len));
            }
        }
        Ok(())
    }

    /// Waits for a write running on another thread; its failure is this store's failure.
    fn finish_write(&mut self) -> Result<(), Error> {
        let Some(handle) = self.writing.take() else {
            return Ok(());
        };
        let path = self.log_path();
        match handle.join() {
            Ok((result, mut chunk)) => {
                chunk.clear();
                self.spare = chunk;
                result.map_err(io_err(&path))
            }
            Err(_) => Err(io_err(&path)(io::Error::other("the write thread panicked"))),
        }
    }

    /// Waits for a background sync; its failure is this store's failure.
    fn wait_background(&mut self) -> Result<(), Error> {
        let path = self.log_path();
        let Some((handle, len)) = self.background.take() else {
            return Ok(());
        };
        match handle.join() {
            Ok(Ok(())) => {
                self.synced_len = self.synced_len.max(len);
                Ok(())
            }
            Ok(Err(e)) => Err(io_err(&path)(e)),
            Err(_) => Err(io_err(&path)(io::Error::other("the sync thread panicked"))),
        }
    }

    /// Writes a reservation of sequence numbers below `limit` through to the OS, and returns the
    /// offset where it ends: under [`FsyncPolicy::EveryCommit`] its numbers may be handed out once
    /// [`LogStore::synced_len`] reaches it, under the other policies at once.
    pub(crate) fn reserve(&mut self, limit: u64) -> Result<u64, Error> {
        encode_record(&Record::Reserve(limit), &mut self.buffer);
        self.write_buffer()?;
        Ok(self.file_len)
    }

    /// How much of the file is known to be synced (a finished background sync counts).
    pub(crate) fn synced_len(&mut self) -> Result<u64, Error> {
        if self
            .background
            .as_ref()
            .is_some_and(|(b, _)| b.is_finished())
        {
            self.wait_background()?;
        }
        Ok(self.synced_len)
    }

    /// The fsync policy.
    pub(crate) fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Writes a commit record and syncs according to the policy.
    pub(crate) fn commit(&mut self, info: &CommitInfo) -> Result<(), Error> {
        self.commit_with(info, true)
    }

    /// Writes a commit record that leaves its sync to later: to the next background sync, commit
    /// or [`LogStore::sync`] (the batch commits within a refresh, which promise nothing to anyone).
    pub(crate) fn commit_lazily(&mut self, info: &CommitInfo) -> Result<(), Error> {
        self.commit_with(info, false)
    }

    fn commit_with(&mut self, info: &CommitInfo, may_sync: bool) -> Result<(), Error> {
        encode_record(
            &Record::Commit {
                info: info.clone(),
                synced_len: self.synced_len,
            },
            &mut self.buffer,
        );
        self.write_buffer()?;
        let now = Instant::now();
        let since = *self.unsynced_since.get_or_insert(now);
        let sync = may_sync
            && match self.policy {
                FsyncPolicy::EveryCommit => true,
                FsyncPolicy::Group {
                    max_delay,
                    max_bytes,
                } => now - since >= max_delay || self.file_len - self.synced_len >= max_bytes,
                FsyncPolicy::Os => false,
            };
        if sync {
            self.sync()?;
        }
        self.committed_len = self.file_len;
        Ok(())
    }

    /// When a group commit left data unsynced: the time by which it should be synced.
    pub(crate) fn sync_due(&self) -> Option<Instant> {
        match self.policy {
            FsyncPolicy::Group { max_delay, .. } if self.committed_len > self.synced_len => {
                self.unsynced_since.map(|since| since + max_delay)
            }
            _ => None,
        }
    }

    /// Syncs whatever was written.
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        self.write_buffer()?;
        self.finish_write()?;
        self.wait_background()?;
        let path = self.log_path();
        if let Some(file) = self.file.as_mut() {
            file.sync_data().map_err(io_err(&path))?;
        }
        self.synced_len = self.file_len;
        self.unsynced_since = None;
        Ok(())
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // What a write still running carries is not committed; waiting keeps it from outliving
        // the store (a failure then only means an uncommitted tail, which replay truncates).
        let _ = self.finish_write();
    }
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: the files inside are 0600 whatever the directory's mode.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SearchSpec {
        SearchSpec {
            base: "dc=example,dc=com".into(),
            scope: Scope::Subtree,
            filter: "(objectClass=*)".into(),
            attributes: vec!["*".into(), "+".into()],
        }
    }

    fn commit(next_seq: u64, synced_len: u64) -> Record {
        Record::Commit {
            info: CommitInfo {
                next_seq,
                reserved: next_seq + 10,
                cookie: Some(Cookie::from(b"rid=000,csn=x".as_slice())),
                needs_reload: true,
                settled: true,
                server: "ldap://127.0.0.1:389".into(),
                last_change: 1_700_000_000,
            },
            synced_len,
        }
    }

    fn upsert(n: u8) -> Record {
        Record::Upsert {
            uuid: EntryUuid([n; 16]),
            dn: format!("uid={n},dc=example,dc=com"),
            attributes: AttributeList::build([("cn", vec![b"A".as_slice()])]),
        }
    }

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Search(spec()),
            upsert(7),
            Record::Delete {
                uuid: EntryUuid([8; 16]),
            },
            commit(42, 99),
            Record::Commit {
                info: CommitInfo::default(),
                synced_len: 0,
            },
            Record::Reserve(4096),
        ];
        for record in records {
            let mut buf = Vec::new();
            encode_record(&record, &mut buf);
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert_eq!(decode_body(&buf[4..4 + len]), Some(record));
        }
        assert_eq!(decode_body(&[KIND_DELETE, 1, 2]), None);
        assert_eq!(decode_body(&[99]), None);
    }

    fn image(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut ends = Vec::new();
        for r in records {
            encode_record(r, &mut out);
            ends.push(out.len());
        }
        (out, ends)
    }

    fn replay(data: &[u8], repair: bool) -> Result<(Replayed, Vec<Record>), Error> {
        let mut records = Vec::new();
        let replayed = replay_from(
            Path::new("test.log"),
            &mut io::Cursor::new(data),
            data.len() as u64,
            repair,
            &mut |r| records.push(r),
        )?;
        Ok((replayed, records))
    }

    #[test]
    fn a_torn_unsynced_batch_is_a_tail_but_synced_damage_is_not() {
        // Batch 1 synced (commit 2 says so); batch 2 written but not synced when it committed.
        let mut records = vec![Record::Search(spec()), upsert(1), commit(2, 0)];
        let (first, _) = image(&records);
        records.extend([upsert(2), upsert(3), commit(4, first.len() as u64)]);
        records.push(Record::Reserve(5000));
        let (data, ends) = image(&records);
        // Garbage inside batch 2, whose commit survived: a power loss tore the unsynced batch.
        let mut torn = data.clone();
        torn[ends[3] + 10] ^= 0x55;
        let (replayed, got) = replay(&torn, false).expect("a torn tail");
        assert_eq!(got.len(), 3);
        assert_eq!(replayed.committed_end, first.len() as u64);
        assert_eq!(
            replayed.tail_reserved, 5000,
            "a reservation in the tail still counts"
        );
        assert_eq!(replayed.committed_reserved, 12);
        // Garbage inside batch 1, which commit 4 says was synced: damage before the tail.
        let mut damaged = data.clone();
        damaged[ends[1] - 6] ^= 0x55;
        let err = replay(&damaged, false).expect_err("damage");
        assert!(
            matches!(err, Error::Damaged { offset, .. } if offset == ends[0] as u64),
            "{err}"
        );
        let (_, got) = replay(&damaged, true).expect("repair");
        assert!(got.is_empty(), "repair keeps only what precedes the damage");
        // A length field blown up to past the end is damage too, not a silent truncation.
        let mut long = data.clone();
        long[ends[0] + 3] = 0x7f;
        assert!(matches!(replay(&long, false), Err(Error::Damaged { .. })));
        // Zeros at the end (a file extended but not written) are a tail.
        let mut zeros = data.clone();
        zeros.extend_from_slice(&[0; 100]);
        let (replayed, got) = replay(&zeros, false).expect("zero tail");
        assert_eq!(got.len(), 6);
        assert_eq!(replayed.truncated, 100 + (data.len() - ends[5]) as u64);
    }

    #[test]
    fn other_versions_and_files_are_refused() {
        let (mut data, _) = image(&[Record::Search(spec()), commit(1, 0)]);
        data[8] = 7;
        assert!(matches!(
            replay(&data, true),
            Err(Error::UnsupportedVersion {
                found: 7,
                supported: 2,
                ..
            })
        ));
        assert!(matches!(
            replay(b"not a syncrepl state file", true),
            Err(Error::NotAStateFile { .. })
        ));
        let (replayed, got) = replay(b"SYNC", false).expect("a cut header");
        assert!(got.is_empty() && !replayed.had_header);
    }
}
