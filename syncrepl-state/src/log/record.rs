//! The records of the state log and their byte layout (see [`crate::log`] for the table).

use std::time::Duration;

use bytes::Bytes;
use syncrepl_proto::{AttributeList, Cookie, EntryUuid, Scope};

use crate::error::Error;
use crate::SearchSpec;

/// The magic at the start of a state log.
pub const MAGIC: &[u8; 8] = b"SYNCREPL";
/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build still reads (and rewrites as [`FORMAT_VERSION`] on open).
pub const OLDEST_READABLE: u32 = 2;
pub(crate) const HEADER_LEN: usize = 20;
/// A record may not claim more than this, so a damaged length cannot make replay allocate wildly;
/// a record that would be larger is refused when written, too.
pub(crate) const MAX_RECORD: usize = 256 << 20;
/// The largest commit record looked for when deciding whether damage lies before the tail.
pub(crate) const MAX_COMMIT: usize = 1 << 20;

pub(crate) const KIND_SEARCH: u8 = 1;
pub(crate) const KIND_UPSERT: u8 = 2;
pub(crate) const KIND_DELETE: u8 = 3;
pub(crate) const KIND_COMMIT: u8 = 4;
pub(crate) const KIND_RESERVE: u8 = 5;

const FLAG_RELOAD: u8 = 1;
const FLAG_COOKIE: u8 = 2;
const FLAG_SETTLED: u8 = 4;
/// The commit ends with the cookie as the server last sent it, which differs from the cookie kept
/// (slapd's, merged per serverID). Readers of format 3 that predate it refuse the flag.
const FLAG_SERVER_COOKIE: u8 = 8;

/// The smallest commit body of a format version: kind, next_seq, reserved, (acked,) flags, two
/// empty strings, last_change, synced length.
pub(crate) fn min_commit(version: u32) -> usize {
    let acked = if version >= 3 { 8 } else { 0 };
    1 + 8 + 8 + acked + 1 + 4 + 4 + 8 + 8
}

/// When the log is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` at every commit: a commit that returned is on disk, and no change is handed to
    /// the consumer before the record that logs it is on disk. A commit that only moves the cookie
    /// past changes the consumer acknowledged is synced within 5 ms or with the next commit.
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
    /// The highest sequence number the consumer acknowledged: logged changes above it are handed
    /// out again on open.
    pub(crate) acked: u64,
    /// The cookie describing the committed content.
    pub(crate) cookie: Option<Cookie>,
    /// Whether the next sync must be a full reload (after e-syncRefreshRequired).
    pub(crate) needs_reload: bool,
    /// Whether the cookie covers every committed entry; if not, entries upserted since the last
    /// settled commit are suspects for the next refresh to confirm.
    pub(crate) settled: bool,
    /// The cookie as the server last sent it, when it differs from `cookie` (which is slapd's
    /// merged CSN set); kept for diagnosis only.
    pub(crate) server_cookie: Option<Cookie>,
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
        /// The sequence number of the change this record logs; 0 in a snapshot, where it is no
        /// change, and in logs of format 2.
        seq: u64,
        /// The entryUUID.
        uuid: EntryUuid,
        /// The DN.
        dn: String,
        /// The attributes.
        attributes: AttributeList,
    },
    /// An entry left the content.
    Delete {
        /// The sequence number of the change (0 in logs of format 2).
        seq: u64,
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

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Encodes a record's kind and payload in the current format.
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
            seq,
            uuid,
            dn,
            attributes,
        } => upsert_body(*seq, *uuid, dn, attributes, out),
        Record::Delete { seq, uuid } => {
            out.push(KIND_DELETE);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(uuid.as_bytes());
        }
        Record::Commit { info, synced_len } => {
            out.push(KIND_COMMIT);
            out.extend_from_slice(&info.next_seq.to_le_bytes());
            out.extend_from_slice(&info.reserved.to_le_bytes());
            out.extend_from_slice(&info.acked.to_le_bytes());
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
            if info.server_cookie.is_some() {
                flags |= FLAG_SERVER_COOKIE;
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
            if let Some(raw) = &info.server_cookie {
                put_bytes(out, raw.as_bytes());
            }
        }
        Record::Reserve(limit) => {
            out.push(KIND_RESERVE);
            out.extend_from_slice(&limit.to_le_bytes());
        }
    }
}

fn upsert_body(seq: u64, uuid: EntryUuid, dn: &str, attributes: &AttributeList, out: &mut Vec<u8>) {
    out.push(KIND_UPSERT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(uuid.as_bytes());
    put_bytes(out, dn.as_bytes());
    out.extend_from_slice(attributes.as_ber());
}

/// Appends a framed record to `out`. A commit is held to [`MAX_COMMIT`] as well, the bound
/// replay uses to find commits past a torn tail: one larger (a huge cookie from a server) would
/// be written and then never found again.
pub(crate) fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<(), Error> {
    let max = match record {
        Record::Commit { .. } => MAX_COMMIT,
        _ => MAX_RECORD,
    };
    frame_within(out, max, |out| encode_body(record, out))
}

/// Appends a framed upsert record without building a [`Record`] (the hot path of a refresh).
pub(crate) fn encode_upsert(
    seq: u64,
    uuid: EntryUuid,
    dn: &str,
    attributes: &AttributeList,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    frame(out, |out| upsert_body(seq, uuid, dn, attributes, out))
}

/// Frames what `body` writes: length before, checksum after. A body above [`MAX_RECORD`] is
/// taken back out of `out` and refused, since replay would take it for damage.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
    frame_within(out, MAX_RECORD, body)
}

/// [`frame`] with the limit `max`.
fn frame_within(
    out: &mut Vec<u8>,
    max: usize,
    body: impl FnOnce(&mut Vec<u8>),
) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let body = &out[start + 4..];
    if body.len() > max {
        let size = body.len();
        out.truncate(start);
        return Err(Error::RecordTooLarge { size, max });
    }
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
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

/// Decodes a record body (kind and payload) written in format `version`, checking every field.
pub(crate) fn decode_body(body: &[u8], version: u32) -> Option<Record> {
    let mut c = Cursor { data: body, pos: 0 };
    let v3 = version >= 3;
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
            let seq = if v3 { c.u64()? } else { 0 };
            let uuid = EntryUuid::from_slice(c.take(16)?)?;
            let dn = c.string()?;
            let attributes = AttributeList::from_ber(Bytes::copy_from_slice(c.rest())).ok()?;
            Record::Upsert {
                seq,
                uuid,
                dn,
                attributes,
            }
        }
        KIND_DELETE => {
            let seq = if v3 { c.u64()? } else { 0 };
            Record::Delete {
                seq,
                uuid: EntryUuid::from_slice(c.take(16)?)?,
            }
        }
        KIND_COMMIT => {
            let next_seq = c.u64()?;
            let reserved = c.u64()?;
            let acked = if v3 { c.u64()? } else { 0 };
            let flags = c.u8()?;
            let known = FLAG_RELOAD | FLAG_COOKIE | FLAG_SETTLED | FLAG_SERVER_COOKIE;
            if flags & !known != 0 || (!v3 && flags & FLAG_SERVER_COOKIE != 0) {
                return None;
            }
            let cookie = c.bytes()?;
            let server = c.string()?;
            let last_change = c.u64()?;
            let synced_len = c.u64()?;
            let server_cookie = if flags & FLAG_SERVER_COOKIE != 0 {
                Some(Cookie::from(c.bytes()?))
            } else {
                None
            };
            Record::Commit {
                info: CommitInfo {
                    next_seq,
                    reserved,
                    acked,
                    cookie: (flags & FLAG_COOKIE != 0).then(|| Cookie::from(cookie)),
                    needs_reload: flags & FLAG_RELOAD != 0,
                    settled: flags & FLAG_SETTLED != 0,
                    server_cookie,
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

/// The name of a record's kind, for error messages.
pub(crate) fn kind_name(body: &[u8]) -> &'static str {
    match body.first() {
        Some(&KIND_SEARCH) => "search",
        Some(&KIND_UPSERT) => "upsert",
        Some(&KIND_DELETE) => "delete",
        Some(&KIND_COMMIT) => "commit",
        Some(&KIND_RESERVE) => "reserve",
        _ => "unknown",
    }
}

/// The 20-byte header of a log of `generation`.
pub(crate) fn header(generation: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..].copy_from_slice(&generation.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> SearchSpec {
        SearchSpec {
            base: "dc=example,dc=com".into(),
            scope: Scope::Subtree,
            filter: "(objectClass=*)".into(),
            attributes: vec!["*".into(), "+".into()],
        }
    }

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Search(spec()),
            Record::Upsert {
                seq: 9,
                uuid: EntryUuid([7; 16]),
                dn: "uid=7,dc=example,dc=com".into(),
                attributes: AttributeList::build([("cn", vec![b"A".as_slice()])]),
            },
            Record::Delete {
                seq: 10,
                uuid: EntryUuid([8; 16]),
            },
            Record::Commit {
                info: CommitInfo {
                    next_seq: 42,
                    reserved: 52,
                    acked: 41,
                    cookie: Some(Cookie::from(b"rid=000,csn=x".as_slice())),
                    needs_reload: true,
                    settled: true,
                    server_cookie: Some(Cookie::from(b"rid=000,sid=001,csn=x".as_slice())),
                    server: "ldap://127.0.0.1:389".into(),
                    last_change: 1_700_000_000,
                },
                synced_len: 99,
            },
            Record::Commit {
                info: CommitInfo::default(),
                synced_len: 0,
            },
            Record::Reserve(4096),
        ];
        for record in records {
            let mut buf = Vec::new();
            encode_record(&record, &mut buf).expect("small record");
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert_eq!(decode_body(&buf[4..4 + len], FORMAT_VERSION), Some(record));
        }
        assert_eq!(decode_body(&[KIND_DELETE, 1, 2], FORMAT_VERSION), None);
        assert_eq!(decode_body(&[99], FORMAT_VERSION), None);
    }

    #[test]
    fn format_2_records_decode_without_numbers() {
        let mut body = vec![KIND_DELETE];
        body.extend_from_slice(&[3; 16]);
        assert_eq!(
            decode_body(&body, 2),
            Some(Record::Delete {
                seq: 0,
                uuid: EntryUuid([3; 16])
            })
        );
        assert_eq!(decode_body(&body, 3), None, "format 3 wants a number");
    }

    #[test]
    fn a_record_too_large_is_refused_and_leaves_the_buffer_as_it_was() {
        let mut buf = vec![1, 2, 3];
        let err = frame(&mut buf, |out| out.resize(out.len() + MAX_RECORD + 1, 0))
            .expect_err("too large");
        assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn a_commit_is_held_to_the_bound_replay_searches_with() {
        let commit = |cookie: usize| Record::Commit {
            info: CommitInfo {
                cookie: Some(Cookie::from(&vec![b'c'; cookie][..])),
                ..CommitInfo::default()
            },
            synced_len: 0,
        };
        let mut buf = Vec::new();
        encode_record(&commit(1000), &mut buf).expect("a usual cookie");
        let written = buf.len();
        let err = encode_record(&commit(MAX_COMMIT), &mut buf).expect_err("too large");
        assert!(
            matches!(err, Error::RecordTooLarge { max, .. } if max == MAX_COMMIT),
            "{err}"
        );
        assert_eq!(buf.len(), written);
    }
}
