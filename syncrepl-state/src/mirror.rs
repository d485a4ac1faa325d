//! The mirror: entries by entryUUID, a DN index, the cookie, and the rules of RFC 4533 §3.3–3.4.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, SyncEntry, SyncRequest, SyncState,
};

use crate::error::Error;
use crate::log::{CommitInfo, FsyncPolicy, LogIo, LogStore, Record, StdIo};
use crate::{Entry, SearchSpec};

/// By default a refresh commits what it has applied so far once this much is waiting in the log,
/// so that a crash in a long refresh loses a bounded amount of work (see [`Mirror`]).
pub const BATCH_BYTES: u64 = 32 << 20;
/// The first block of sequence numbers reserved on disk in a run; blocks double up to the maximum.
/// The next block is written when fewer than half of the first block's numbers are left, so that a
/// background sync or a commit has usually made it durable by the time it is needed.
const FIRST_RESERVATION: u64 = 1 << 16;
const MAX_RESERVATION: u64 = 1 << 20;

/// What changed in one attribute of a modified entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeChange {
    /// The attribute description, as the new entry spells it (or the old one, if it is gone).
    pub name: String,
    /// Values that appeared.
    pub added: Vec<Vec<u8>>,
    /// Values that disappeared.
    pub removed: Vec<Vec<u8>>,
}

/// Receives what changed: the callbacks the Python `syncrepl_client` offered.
///
/// Every change carries a sequence number. Numbers grow by one per change within a run and never
/// repeat, across restarts and crashes too (they are reserved on disk before they are handed out);
/// after a crash they resume above every number handed out before it, so there may be a gap.
///
/// **Delivery is exactly-once within a run**: a change is reported when it is applied, and a lost
/// connection or a stop does not undo it (the mirror keeps it and commits it; see [`Mirror`]), so
/// the retried sync reports only what is still different. **Across a crash it is at-least-once**:
/// changes applied after the last commit are lost with the process and the server sends them
/// again, so they are reported again, with new numbers. A consumer deduplicates by remembering the
/// last number it processed (nothing at or below it will come again) and by applying changes as
/// states, not as deltas: an add or modify carries the entry's whole new state, a delete its
/// entryUUID, so applying one twice leaves the same result. One case is not repeated: an entry
/// reported added after the last commit, which the server then deletes before the restart, is not
/// reported deleted (the restarted mirror never had it); [`Handler::on_refresh_done`] shows the
/// whole mirror to reconcile against.
pub trait Handler {
    /// The runtime bound to the server; `authz_id` is what Who am I? said, if it was asked.
    fn on_bind(&mut self, _authz_id: Option<&str>) {}
    /// An entry entered the mirror.
    fn on_add(&mut self, _seq: u64, _uuid: EntryUuid, _entry: &Entry) {}
    /// An entry's attributes changed: `changes` lists, per attribute, the values added and removed.
    fn on_modify(
        &mut self,
        _seq: u64,
        _uuid: EntryUuid,
        _old: &Entry,
        _new: &Entry,
        _changes: &[AttributeChange],
    ) {
    }
    /// An entry's DN changed; `entry` has the new DN (an `on_modify` follows, with the next number,
    /// if attributes changed too).
    fn on_rename(&mut self, _seq: u64, _uuid: EntryUuid, _old_dn: &str, _entry: &Entry) {}
    /// An entry left the mirror; `entry` is its last state.
    fn on_delete(&mut self, _seq: u64, _uuid: EntryUuid, _entry: &Entry) {}
    /// A refresh completed and was committed; the whole mirror can be read.
    fn on_refresh_done(&mut self, _entries: &Entries) {}
    /// The committed cookie changed (`None` after e-syncRefreshRequired).
    fn on_cookie(&mut self, _cookie: Option<&Cookie>) {}
}

/// A handler that ignores everything.
impl Handler for () {}

#[derive(Debug, Clone)]
struct Slot {
    entry: Entry,
    /// The refresh generation in which the entry was last sent or presented: the present set, at no
    /// cost beyond four bytes an entry.
    mark: u32,
}

/// Hashes an entryUUID by taking eight of its bytes: UUIDs are already well spread (random or
/// time-based with a varying low part), so hashing them again buys nothing.
#[derive(Debug, Default, Clone, Copy)]
struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29)
                ^ u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

type UuidMap<V> = HashMap<EntryUuid, V, BuildHasherDefault<UuidHasher>>;
type UuidSet = HashSet<EntryUuid, BuildHasherDefault<UuidHasher>>;

/// The entryUUIDs whose DNs share one hash in the DN index: nearly always one.
#[derive(Debug, Clone)]
enum DnBucket {
    One(EntryUuid),
    Many(Vec<EntryUuid>),
}

impl DnBucket {
    fn uuids(&self) -> &[EntryUuid] {
        match self {
            DnBucket::One(uuid) => std::slice::from_ref(uuid),
            DnBucket::Many(uuids) => uuids,
        }
    }
}

/// The entries of the mirror, readable by entryUUID and by DN.
#[derive(Debug, Default)]
pub struct Entries {
    by_uuid: UuidMap<Slot>,
    /// entryUUIDs by the hash of their normalized DN (see [`NormalizedDn`](crate::NormalizedDn)):
    /// eight bytes an entry instead of a second copy of its DN; a lookup checks the DNs it finds.
    by_dn: HashMap<u64, DnBucket, BuildHasherDefault<UuidHasher>>,
    dn_hasher: foldhash::fast::RandomState,
    live_bytes: u64,
}

fn footprint(entry: &Entry) -> u64 {
    (entry.dn.len() + entry.attributes.as_ber().len() + 32) as u64
}

impl Entries {
    /// The entry with this entryUUID.
    pub fn get(&self, uuid: &EntryUuid) -> Option<&Entry> {
        self.by_uuid.get(uuid).map(|s| &s.entry)
    }

    /// The entry with this DN, compared the LDAP way (see [`NormalizedDn`](crate::NormalizedDn)).
    pub fn get_by_dn(&self, dn: &str) -> Option<(EntryUuid, &Entry)> {
        let uuid = self.holder(self.dn_hash(dn), dn, None)?;
        self.get(&uuid).map(|e| (uuid, e))
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryUuid, &Entry)> {
        self.by_uuid.iter().map(|(u, s)| (u, &s.entry))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.by_uuid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// Makes room for `additional` more entries at once, instead of growing step by step.
    fn reserve(&mut self, additional: usize) {
        self.by_uuid.reserve(additional);
        self.by_dn.reserve(additional);
    }

    fn dn_hash(&self, dn: &str) -> u64 {
        crate::dn::hash_normalized(dn, &self.dn_hasher)
    }

    /// The entry other than `except` whose DN, of hash `hash`, equals `dn`.
    fn holder(&self, hash: u64, dn: &str, except: Option<EntryUuid>) -> Option<EntryUuid> {
        self.by_dn
            .get(&hash)?
            .uuids()
            .iter()
            .copied()
            .filter(|u| Some(*u) != except)
            .find(|u| {
                self.by_uuid
                    .get(u)
                    .is_some_and(|s| crate::dn::same_dn(&s.entry.dn, dn))
            })
    }

    fn index(&mut self, uuid: EntryUuid, hash: u64) {
        match self.by_dn.get_mut(&hash) {
            None => {
                self.by_dn.insert(hash, DnBucket::One(uuid));
            }
            Some(DnBucket::One(other)) if *other != uuid => {
                let other = *other;
                self.by_dn.insert(hash, DnBucket::Many(vec![other, uuid]));
            }
            Some(DnBucket::Many(uuids)) if !uuids.contains(&uuid) => uuids.push(uuid),
            Some(_) => {}
        }
    }

    fn unindex(&mut self, uuid: EntryUuid, hash: u64) {
        let Some(bucket) = self.by_dn.get_mut(&hash) else {
            return;
        };
        match bucket {
            DnBucket::One(other) if *other == uuid => {
                self.by_dn.remove(&hash);
            }
            DnBucket::Many(uuids) => {
                uuids.retain(|u| *u != uuid);
                if let [only] = uuids[..] {
                    *bucket = DnBucket::One(only);
                }
            }
            DnBucket::One(_) => {}
        }
    }

    fn insert(&mut self, uuid: EntryUuid, slot: Slot) -> Option<Slot> {
        let hash = self.dn_hash(&slot.entry.dn);
        self.insert_hashed(uuid, slot, hash)
    }

    /// Inserts `slot`, whose DN hashes to `hash`.
    fn insert_hashed(&mut self, uuid: EntryUuid, slot: Slot, hash: u64) -> Option<Slot> {
        self.live_bytes += footprint(&slot.entry);
        let old = self.by_uuid.insert(uuid, slot);
        if let Some(old) = &old {
            self.live_bytes = self.live_bytes.saturating_sub(footprint(&old.entry));
            let old_hash = self.dn_hash(&old.entry.dn);
            if old_hash != hash {
                self.unindex(uuid, old_hash);
            }
        }
        self.index(uuid, hash);
        old
    }

    fn remove(&mut self, uuid: &EntryUuid) -> Option<Slot> {
        let old = self.by_uuid.remove(uuid)?;
        self.live_bytes = self.live_bytes.saturating_sub(footprint(&old.entry));
        let hash = self.dn_hash(&old.entry.dn);
        self.unindex(*uuid, hash);
        Some(old)
    }
}

/// Attributes compared as sets: descriptions without regard to case, values as multisets of bytes.
fn canonical(list: &AttributeList) -> Vec<(String, Vec<&[u8]>)> {
    let mut out: Vec<(String, Vec<&[u8]>)> = Vec::new();
    for attribute in list {
        let name = attribute.name.to_ascii_lowercase();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.extend(attribute.values),
            None => out.push((name, attribute.values.collect())),
        }
    }
    for (_, values) in &mut out {
        values.sort_unstable();
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The per-attribute difference between two attribute lists; empty when they are equal as sets.
pub fn diff(old: &AttributeList, new: &AttributeList) -> Vec<AttributeChange> {
    if old == new {
        return Vec::new();
    }
    let (a, b) = (canonical(old), canonical(new));
    let spelled = |list: &AttributeList, lower: &str| {
        list.iter()
            .find(|x| x.name.eq_ignore_ascii_case(lower))
            .map(|x| x.name.to_owned())
    };
    let mut names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    for (n, _) in &b {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for lower in names {
        let before = a
            .iter()
            .find(|(n, _)| n == lower)
            .map(|(_, v)| v.as_slice());
        let after = b
            .iter()
            .find(|(n, _)| n == lower)
            .map(|(_, v)| v.as_slice());
        let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
        if before == after {
            continue;
        }
        let added = after
            .iter()
            .filter(|v| !before.contains(v))
            .map(|v| v.to_vec())
            .collect();
        let removed = before
            .iter()
            .filter(|v| !after.contains(v))
            .map(|v| v.to_vec())
            .collect();
        out.push(AttributeChange {
            name: spelled(new, lower)
                .or_else(|| spelled(old, lower))
                .unwrap_or_else(|| lower.to_owned()),
            added,
            removed,
        });
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Refresh {
    /// Started without a cookie: the server sends the whole content, so whatever it does not send is
    /// gone, whichever phase it claims.
    full: bool,
    saw_present: bool,
    saw_delete: bool,
    /// The cookie sent is 389 Directory Server's (see [`is_389_cookie`]).
    ds389: bool,
}

/// Whether `cookie` has the form of 389 Directory Server's Content Synchronization cookies,
/// `host:port#bind DN:base:filter#changenumber`: that server ends incremental refreshes as present
/// phases without presenting anything, which must not delete what it did not send.
fn is_389_cookie(cookie: &Cookie) -> bool {
    let Ok(text) = std::str::from_utf8(cookie.as_bytes()) else {
        return false;
    };
    let mut parts = text.split('#');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(server), Some(_search), Some(number), None) => {
            server.contains(':') && number.parse::<i64>().is_ok()
        }
        _ => false,
    }
}

/// How to open a state directory.
pub struct OpenOptions {
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Truncate at damage found before the log's tail instead of failing.
    pub repair: bool,
    /// Start again from an empty mirror if the state belongs to another search.
    pub reset: bool,
    /// Within a refresh, commit (unsettled, see [`Mirror`]) once this many bytes of changes wait
    /// in the log ([`BATCH_BYTES`] by default).
    pub batch_bytes: u64,
    /// The file operations (the real file system unless a test injects faults).
    pub io: Box<dyn LogIo>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            fsync: FsyncPolicy::EveryCommit,
            repair: false,
            reset: false,
            batch_bytes: BATCH_BYTES,
            io: Box::new(StdIo),
        }
    }
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("fsync", &self.fsync)
            .field("repair", &self.repair)
            .field("reset", &self.reset)
            .field("batch_bytes", &self.batch_bytes)
            .finish()
    }
}

/// A summary of the mirror for `syncrepl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The search.
    pub search: SearchSpec,
    /// The server last used.
    pub server: String,
    /// The committed cookie.
    pub cookie: Option<Cookie>,
    /// Whether the next sync reloads everything.
    pub needs_reload: bool,
    /// Committed entries.
    pub entries: usize,
    /// Entries the next refresh must confirm (applied by an interrupted refresh).
    pub unconfirmed: usize,
    /// The next sequence number.
    pub next_seq: u64,
    /// Unix time of the last change, 0 if none.
    pub last_change: u64,
    /// Bytes of the state log (0 in memory).
    pub store_bytes: u64,
}

/// Rebuilds a mirror's content from the committed records of a log.
#[derive(Default)]
struct Replayer {
    entries: Entries,
    committed: CommitInfo,
    pending: Vec<EntryUuid>,
    suspects: UuidSet,
    /// The search of the first record, if it is one.
    stored: Option<SearchSpec>,
    /// Whether any record came, and whether the first was not a search.
    any: bool,
    bad_first: bool,
    /// Set when the stored search differs from the one asked: the rest is not worth loading.
    skip: bool,
}

impl Replayer {
    fn record(&mut self, record: Record, asked: Option<&SearchSpec>) {
        if !self.any {
            self.any = true;
            match &record {
                Record::Search(stored) => {
                    self.skip = asked.is_some_and(|a| a != stored);
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
                uuid,
                dn,
                attributes,
            } => {
                self.entries.insert(
                    uuid,
                    Slot {
                        entry: Entry { dn, attributes },
                        mark: 0,
                    },
                );
                self.pending.push(uuid);
            }
            Record::Delete { uuid } => {
                self.entries.remove(&uuid);
            }
            Record::Commit { info, .. } => {
                settle(
                    &mut self.pending,
                    &mut self.suspects,
                    info.settled,
                    info.cookie.is_some(),
                );
                self.committed = info;
            }
            Record::Search(_) | Record::Reserve(_) => {}
        }
    }
}

/// What a commit does to the suspects: a settled commit (its cookie covers everything) clears them;
/// an unsettled one keeps the cookie the refresh started from, so what was upserted since becomes
/// suspect. Without a cookie there is nothing to track: the next refresh sends everything.
fn settle(pending: &mut Vec<EntryUuid>, suspects: &mut UuidSet, settled: bool, cookie: bool) {
    if settled {
        suspects.clear();
    } else if cookie {
        suspects.extend(pending.iter().copied());
    }
    pending.clear();
}

/// A local copy of what a sync search sees, kept in step by applying protocol events.
///
/// # Calling protocol
///
/// Open it ([`Mirror::in_memory`], [`Mirror::open`]), then for every sync search: call
/// [`Mirror::begin_refresh`] with the request (its cookie is [`Mirror::cookie`], its reloadHint
/// [`Mirror::needs_reload`]), feed every event of the search to [`Mirror::apply`], and when the
/// search ends early call [`Mirror::interrupted`] (lost connection, stop) or, for
/// e-syncRefreshRequired, [`Mirror::refresh_required`]. With [`FsyncPolicy::Group`], call
/// [`Mirror::sync`] by [`Mirror::sync_due`] when no event comes, and before exiting.
///
/// # What is committed when
///
/// Changes are applied in memory at once and handed to the [`Handler`]. A *commit* writes them to
/// the log with the bookkeeping (cookie, next sequence number) and syncs per the [`FsyncPolicy`];
/// reopening after a crash yields exactly the last commit. Commits happen:
///
/// - **settled**, with the cookie that covers every change: at the end of each refresh, and for
///   each cookie of the persist stage (RFC 4533 §3.4: the cookie "represents the state of the
///   content");
/// - **unsettled**, keeping the cookie the refresh started from: every 32 MiB of changes within a
///   refresh ([`OpenOptions::batch_bytes`]), and when a search is interrupted. An interrupted refresh is *not* undone: the state
///   it leaves (the old content, plus the newer versions and deletions the server already sent) is
///   consistent with the old cookie, whose next refresh sends whatever is still missing. One rule
///   makes this exact: the entries upserted since the last settled commit are *unconfirmed*, and
///   the refresh that completes next deletes those it neither sends nor presents. (Such an entry
///   changed after the old cookie, so if it still existed the server would have to send it, even
///   in a delete phase, which only names deletions of entries the client had at the old cookie.)
///   This relies on RFC 4533 §3.3.1 as servers implement it: an entry changed since the cookie is
///   sent in full even when a later change restored its content (slapd compares entryCSNs).
///
/// So a crash loses at most the changes since the last commit, which the server sends again.
#[derive(Debug)]
pub struct Mirror {
    entries: Entries,
    spec: SearchSpec,
    committed: CommitInfo,
    next_seq: u64,
    /// Numbers below this are reserved on disk and may be handed out.
    reserved: u64,
    /// A further reservation written ahead: where its record ends, and its limit.
    ahead: Option<(u64, u64)>,
    reservation: u64,
    cookie: Option<Cookie>,
    needs_reload: bool,
    server: String,
    last_change: u64,
    generation: u32,
    refresh: Option<Refresh>,
    /// entryUUIDs upserted since the last commit, while there is a cookie to keep.
    pending: Vec<EntryUuid>,
    /// entryUUIDs upserted by an interrupted refresh, for the next refresh to confirm.
    suspects: UuidSet,
    /// Changes were made since `last_change` was stamped: the next commit stamps it (reading the
    /// clock once a commit rather than once a change).
    unstamped: bool,
    store: Option<LogStore>,
    store_bytes: u64,
    batch_bytes: u64,
    poisoned: bool,
}

impl Mirror {
    /// An empty mirror kept in memory only.
    pub fn in_memory(spec: SearchSpec) -> Mirror {
        Mirror {
            entries: Entries::default(),
            spec,
            committed: CommitInfo {
                next_seq: 1,
                settled: true,
                ..CommitInfo::default()
            },
            next_seq: 1,
            reserved: 1,
            ahead: None,
            reservation: FIRST_RESERVATION,
            cookie: None,
            needs_reload: false,
            server: String::new(),
            last_change: 0,
            generation: 0,
            refresh: None,
            pending: Vec::new(),
            suspects: UuidSet::default(),
            unstamped: false,
            store: None,
            store_bytes: 0,
            batch_bytes: BATCH_BYTES,
            poisoned: false,
        }
    }

    /// A mirror of what replay found; numbering resumes above every number that may have been
    /// handed out (`tail_reserved`: reservations after the last commit).
    fn from_replay(spec: SearchSpec, replayer: Replayer, tail_reserved: u64) -> Mirror {
        let mut mirror = Mirror::in_memory(spec);
        mirror.entries = replayer.entries;
        mirror.suspects = replayer.suspects;
        mirror.committed = replayer.committed;
        let committed = &mut mirror.committed;
        committed.next_seq = committed
            .next_seq
            .max(committed.reserved)
            .max(tail_reserved)
            .max(1);
        committed.reserved = committed.next_seq;
        mirror.next_seq = mirror.committed.next_seq;
        mirror.reserved = mirror.next_seq;
        mirror.cookie = mirror.committed.cookie.clone();
        mirror.needs_reload = mirror.committed.needs_reload;
        mirror.server = mirror.committed.server.clone();
        mirror.last_change = mirror.committed.last_change;
        mirror
    }

    /// Opens the mirror in state directory `dir` for `spec`, creating it if needed, and replays its
    /// log. A state of another search is [`Error::SearchMismatch`] unless `options.reset` is set;
    /// the host and credentials used to sync are not part of the search and may change.
    pub fn open(dir: &Path, spec: SearchSpec, options: OpenOptions) -> Result<Mirror, Error> {
        let mut replayer = Replayer::default();
        // Entries take about a kilobyte in the log: make room at once rather than rehash as the
        // replay grows the maps (only a hint; the real file is read through `options.io`).
        let hint = std::fs::metadata(dir.join(crate::log::LOG_NAME)).map_or(0, |m| m.len());
        replayer
            .entries
            .reserve(usize::try_from(hint / 1024).unwrap_or(0));
        let (store, replayed) =
            LogStore::open(dir, options.fsync, options.repair, options.io, &mut |r| {
                replayer.record(r, Some(&spec))
            })?;
        if replayer.bad_first {
            return Err(Error::BadRecord {
                path: dir.join(crate::log::LOG_NAME),
                what: "first",
                offset: 20,
            });
        }
        let fresh = match &replayer.stored {
            None => true,
            Some(stored) if *stored == spec => false,
            Some(_) if options.reset => {
                tracing::info!("the state belongs to another search; starting afresh as asked");
                true
            }
            Some(stored) => {
                return Err(Error::SearchMismatch {
                    stored: stored.to_string(),
                    asked: spec.to_string(),
                })
            }
        };
        let mut mirror = if fresh {
            // Sequence numbers go on from where they were, even after a reset.
            let c = &replayer.committed;
            let reserved = replayed.tail_reserved.max(c.next_seq).max(c.reserved);
            Mirror::from_replay(spec, Replayer::default(), reserved)
        } else {
            Mirror::from_replay(spec, replayer, replayed.tail_reserved)
        };
        mirror.store = Some(store);
        mirror.batch_bytes = options.batch_bytes.max(1);
        if fresh {
            mirror.compact()?;
        } else if replayed.tail_reserved > replayed.committed_reserved {
            // Numbers up to a reservation in the cut tail may have been handed out before the
            // crash: commit the reservation again, with the content unchanged.
            let info = mirror.committed.clone();
            if let Some(store) = mirror.store.as_mut() {
                store.commit(&info)?;
            }
        }
        Ok(mirror)
    }

    /// Reads the committed state of `dir` without locking or writing it, for inspection while
    /// another process may be syncing (the log is append-only and commits are atomic).
    pub fn load(dir: &Path) -> Result<Mirror, Error> {
        let path = dir.join(crate::log::LOG_NAME);
        let io_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut replayer = Replayer::default();
        let replayed = crate::log::replay_pipelined(&path, &mut reader, len, false, &mut |r| {
            replayer.record(r, None)
        })?;
        let Some(spec) = replayer.stored.clone().filter(|_| !replayer.bad_first) else {
            return Err(Error::BadRecord {
                path,
                what: "first",
                offset: 20,
            });
        };
        let mut mirror = Mirror::from_replay(spec, replayer, replayed.tail_reserved);
        mirror.store_bytes = replayed.committed_end;
        Ok(mirror)
    }

    /// The search this mirror belongs to.
    pub fn search(&self) -> &SearchSpec {
        &self.spec
    }

    /// The entries, committed or not: what the handler has been told.
    pub fn entries(&self) -> &Entries {
        &self.entries
    }

    /// The entry with this entryUUID.
    pub fn get(&self, uuid: &EntryUuid) -> Option<&Entry> {
        self.entries.get(uuid)
    }

    /// The entry with this DN, compared the LDAP way.
    pub fn get_by_dn(&self, dn: &str) -> Option<(EntryUuid, &Entry)> {
        self.entries.get_by_dn(dn)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryUuid, &Entry)> {
        self.entries.iter()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cookie to resume from (the committed one).
    pub fn cookie(&self) -> Option<&Cookie> {
        self.committed.cookie.as_ref()
    }

    /// Whether the next sync must be a full reload (after e-syncRefreshRequired).
    pub fn needs_reload(&self) -> bool {
        self.committed.needs_reload
    }

    /// The sequence number the next change will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// How many entries an interrupted refresh applied that the next refresh must confirm.
    pub fn unconfirmed(&self) -> usize {
        self.suspects.len()
    }

    /// A summary for `syncrepl status`.
    pub fn status(&self) -> Status {
        Status {
            search: self.spec.clone(),
            server: self.committed.server.clone(),
            cookie: self.committed.cookie.clone(),
            needs_reload: self.committed.needs_reload,
            entries: self.entries.len(),
            unconfirmed: self.suspects.len(),
            next_seq: self.committed.next_seq.max(1),
            last_change: self.committed.last_change,
            store_bytes: self
                .store
                .as_ref()
                .map_or(self.store_bytes, LogStore::committed_len),
        }
    }

    /// Records the server being synced from, written with the next commit. Pass a URL without
    /// credentials: no password or bind secret is ever given to the mirror.
    pub fn set_server(&mut self, server: &str) {
        self.server = server.to_owned();
    }

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
        });
        Ok(())
    }

    /// The server answered e-syncRefreshRequired (RFC 4533 §3.5): keep the entries, drop the cookie,
    /// and make the next sync a full reload (with reloadHint) whose differences alone are reported.
    /// What was applied since the last commit is kept too: the reload corrects it if needed.
    pub fn refresh_required(&mut self, handler: &mut dyn Handler) -> Result<(), Error> {
        self.check()?;
        self.refresh = None;
        self.cookie = None;
        self.needs_reload = true;
        self.guard(|m| m.commit(true, handler))
    }

    /// The search ended early (stop, lost connection, cancel): what it applied stays, committed as
    /// unsettled with the cookie it started from, and the next refresh confirms it (see [`Mirror`]).
    pub fn interrupted(&mut self) -> Result<(), Error> {
        self.check()?;
        self.refresh = None;
        if self.dirty() {
            self.guard(|m| m.commit(false, &mut ()))?;
        }
        self.cookie = self.committed.cookie.clone();
        self.needs_reload = self.committed.needs_reload;
        Ok(())
    }

    /// Applies one event of the sync search, calling `handler` for each real change.
    pub fn apply(&mut self, event: Event, handler: &mut dyn Handler) -> Result<(), Error> {
        self.check()?;
        self.guard(|m| m.apply_inner(event, handler))
    }

    /// Runs `f`, and refuses everything after it fails: memory may then be ahead of the log.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn dirty(&self) -> bool {
        self.next_seq != self.committed.next_seq
            || self.store.as_ref().is_some_and(|s| s.uncommitted_len() > 0)
    }

    fn apply_inner(&mut self, event: Event, handler: &mut dyn Handler) -> Result<(), Error> {
        match event {
            Event::Entry(entry) => {
                let cookie = entry.cookie.clone();
                self.entry(entry, handler)?;
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie, handler)?;
                }
            }
            Event::SyncIdSet {
                uuids,
                refresh_deletes,
                cookie,
            } => {
                for uuid in uuids {
                    if refresh_deletes {
                        self.note(|r| r.saw_delete = true);
                        self.delete(uuid, handler)?;
                    } else {
                        self.note(|r| r.saw_present = true);
                        self.mark(uuid);
                    }
                }
                if let Some(cookie) = cookie {
                    self.new_cookie(cookie, handler)?;
                }
            }
            Event::RefreshPhaseDone { phase, cookie } => {
                if phase == RefreshPhase::Present {
                    self.end_present_phase(handler)?;
                }
                if cookie.is_some() {
                    self.cookie = cookie;
                }
            }
            Event::RefreshComplete { phase, cookie, .. } => {
                let full = self.refresh.is_some_and(|r| r.full);
                if phase == RefreshPhase::Present || full {
                    self.end_present_phase(handler)?;
                }
                self.confirm(handler)?;
                if cookie.is_some() {
                    self.cookie = cookie;
                }
                self.needs_reload = false;
                self.refresh = None;
                self.commit(true, handler)?;
                handler.on_refresh_done(&self.entries);
            }
            Event::NewCookie(cookie) => self.new_cookie(cookie, handler)?,
            _ => {}
        }
        if self.refresh.is_some()
            && self
                .store
                .as_ref()
                .is_some_and(|s| s.uncommitted_len() >= self.batch_bytes)
        {
            self.commit_with(false, true, handler)?;
        }
        Ok(())
    }

    /// A cookie: in the persist stage it covers the changes before it and is committed at once; in
    /// a refresh it is kept for the end (a cookie in the middle of a present phase describes a
    /// content the mirror does not have yet).
    fn new_cookie(&mut self, cookie: Cookie, handler: &mut dyn Handler) -> Result<(), Error> {
        self.cookie = Some(cookie);
        if self.refresh.is_none() {
            self.commit(true, handler)?;
        }
        Ok(())
    }

    fn note(&mut self, f: impl FnOnce(&mut Refresh)) {
        if let Some(r) = self.refresh.as_mut() {
            f(r);
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn entry(&mut self, entry: SyncEntry, handler: &mut dyn Handler) -> Result<(), Error> {
        match entry.state {
            SyncState::Present => {
                self.note(|r| r.saw_present = true);
                self.mark(entry.entry_uuid);
                Ok(())
            }
            SyncState::Delete => {
                self.note(|r| r.saw_delete = true);
                self.delete(entry.entry_uuid, handler)
            }
            SyncState::Add | SyncState::Modify => self.upsert(
                entry.entry_uuid,
                entry.dn,
                entry.attributes.detach(),
                handler,
            ),
        }
    }

    fn mark(&mut self, uuid: EntryUuid) {
        let generation = self.generation;
        if let Some(slot) = self.entries.by_uuid.get_mut(&uuid) {
            slot.mark = generation;
        }
    }

    /// The next sequence number, reserved on disk before it is handed out: a reservation is written
    /// ahead, and used once durable (synced under [`FsyncPolicy::EveryCommit`], written under the
    /// others), syncing now only if it is not yet.
    fn take_seq(&mut self) -> Result<u64, Error> {
        if let Some(store) = self.store.as_mut() {
            let every_commit = store.policy() == FsyncPolicy::EveryCommit;
            if let Some((end, limit)) = self.ahead {
                if !every_commit || store.synced_len()? >= end {
                    self.reserved = self.reserved.max(limit);
                    self.ahead = None;
                }
            }
            if self.ahead.is_none() && self.next_seq + FIRST_RESERVATION / 2 >= self.reserved {
                let limit = self.reserved.max(self.next_seq) + self.reservation;
                self.ahead = Some((store.reserve(limit)?, limit));
                self.reservation = (self.reservation * 2).min(MAX_RESERVATION);
            }
            if self.next_seq >= self.reserved {
                if let Some((_, limit)) = self.ahead.take() {
                    if every_commit {
                        store.sync()?;
                    }
                    self.reserved = limit;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unstamped = true;
        Ok(seq)
    }

    fn upsert(
        &mut self,
        uuid: EntryUuid,
        dn: String,
        attributes: AttributeList,
        handler: &mut dyn Handler,
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
            self.delete(holder, handler)?;
        }
        let (exists, renamed, changes) = match self.entries.by_uuid.get(&uuid) {
            Some(old) => (
                true,
                old.entry.dn != new.dn,
                diff(&old.entry.attributes, &new.attributes),
            ),
            None => (false, false, Vec::new()),
        };
        if exists && !renamed && changes.is_empty() {
            self.mark(uuid);
            return Ok(());
        }
        if let Some(store) = self.store.as_mut() {
            store.append_upsert(uuid, &new.dn, &new.attributes)?;
        }
        if self.committed.cookie.is_some() {
            self.pending.push(uuid);
        }
        let first = self.take_seq()?;
        let second = if renamed && !changes.is_empty() {
            self.take_seq()?
        } else {
            first
        };
        let previous = self
            .entries
            .insert_hashed(uuid, Slot { entry: new, mark }, hash);
        // The entry was just inserted, so it is there.
        let Some(new) = self.entries.by_uuid.get(&uuid).map(|s| &s.entry) else {
            return Ok(());
        };
        match &previous {
            None => handler.on_add(first, uuid, new),
            Some(old) => {
                if renamed {
                    handler.on_rename(first, uuid, &old.entry.dn, new);
                }
                if !changes.is_empty() {
                    handler.on_modify(second, uuid, &old.entry, new, &changes);
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, uuid: EntryUuid, handler: &mut dyn Handler) -> Result<(), Error> {
        if !self.entries.by_uuid.contains_key(&uuid) {
            return Ok(());
        }
        if let Some(store) = self.store.as_mut() {
            store.append_delete(uuid)?;
        }
        let seq = self.take_seq()?;
        if let Some(old) = self.entries.remove(&uuid) {
            handler.on_delete(seq, uuid, &old.entry);
        }
        Ok(())
    }

    /// The end of a present phase (RFC 4533 §3.3.1: "the client MUST delete all entries in its
    /// content not present in the refreshed content"): whatever was neither sent nor presented in
    /// this refresh is gone.
    fn end_present_phase(&mut self, handler: &mut dyn Handler) -> Result<(), Error> {
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
        self.delete_unmarked(None, handler)
    }

    /// Deletes the entries of `among` (all if `None`) that this refresh neither sent nor presented.
    fn delete_unmarked(
        &mut self,
        among: Option<&UuidSet>,
        handler: &mut dyn Handler,
    ) -> Result<(), Error> {
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
            self.delete(uuid, handler)?;
        }
        Ok(())
    }

    /// At the end of a refresh: entries an interrupted refresh upserted and this one did not
    /// mention are gone (see [`Mirror`]).
    fn confirm(&mut self, handler: &mut dyn Handler) -> Result<(), Error> {
        if self.refresh.is_none() || self.suspects.is_empty() {
            return Ok(());
        }
        let suspects = std::mem::take(&mut self.suspects);
        tracing::debug!(
            count = suspects.len(),
            "confirming entries of an interrupted refresh"
        );
        let result = self.delete_unmarked(Some(&suspects), handler);
        self.suspects = suspects;
        result
    }

    /// Commits: settled with the current cookie, or unsettled with the committed one.
    fn commit(&mut self, settled: bool, handler: &mut dyn Handler) -> Result<(), Error> {
        self.commit_with(settled, false, handler)
    }

    /// Commits, leaving the sync to later if `lazy` (a batch within a refresh: it bounds what a
    /// crash loses, and promises nothing to the server or the handler).
    fn commit_with(
        &mut self,
        settled: bool,
        lazy: bool,
        handler: &mut dyn Handler,
    ) -> Result<(), Error> {
        if std::mem::take(&mut self.unstamped) {
            self.last_change = now_unix();
        }
        let info = CommitInfo {
            next_seq: self.next_seq,
            reserved: self.reserved,
            cookie: if settled {
                self.cookie.clone()
            } else {
                self.committed.cookie.clone()
            },
            needs_reload: if settled {
                self.needs_reload
            } else {
                self.committed.needs_reload
            },
            settled,
            server: self.server.clone(),
            last_change: self.last_change,
        };
        if let Some(store) = self.store.as_mut() {
            if lazy {
                store.commit_lazily(&info)?;
            } else {
                store.commit(&info)?;
            }
        }
        settle(
            &mut self.pending,
            &mut self.suspects,
            settled,
            info.cookie.is_some(),
        );
        let cookie_changed = info.cookie != self.committed.cookie;
        self.committed = info;
        if cookie_changed {
            handler.on_cookie(self.committed.cookie.as_ref());
        }
        self.maybe_compact()
    }

    fn maybe_compact(&mut self) -> Result<(), Error> {
        let Some(store) = self.store.as_ref() else {
            return Ok(());
        };
        if store.committed_len() > 2 * self.entries.live_bytes + (8 << 20) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log as a snapshot of the mirror (a new generation), committing first what is
    /// pending (unsettled, see [`Mirror`]).
    pub fn compact(&mut self) -> Result<(), Error> {
        self.check()?;
        if self.dirty() {
            self.guard(|m| m.commit(false, &mut ()))?;
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let head = std::iter::once(Record::Search(self.spec.clone()));
        let suspects = &self.suspects;
        let upserts = |suspect: bool| {
            self.entries
                .by_uuid
                .iter()
                .filter(move |(uuid, _)| suspects.contains(*uuid) == suspect)
                .map(|(uuid, slot)| Record::Upsert {
                    uuid: *uuid,
                    dn: slot.entry.dn.clone(),
                    attributes: slot.entry.attributes.clone(),
                })
        };
        let commit = |settled: bool| Record::Commit {
            info: CommitInfo {
                settled,
                ..self.committed.clone()
            },
            synced_len: 0,
        };
        // Unconfirmed entries go in a batch of their own, committed unsettled, so that replay
        // finds them unconfirmed again.
        let settled = std::iter::once(commit(true));
        let unconfirmed: Box<dyn Iterator<Item = Record>> = if suspects.is_empty() {
            Box::new(std::iter::empty())
        } else {
            Box::new(upserts(true).chain(std::iter::once(commit(false))))
        };
        let result =
            store.rewrite(&mut head.chain(upserts(false)).chain(settled).chain(unconfirmed));
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// With group commit, when committed changes still wait for their fsync: call [`Mirror::sync`]
    /// by then even if no other change comes.
    pub fn sync_due(&self) -> Option<std::time::Instant> {
        self.store.as_ref().and_then(LogStore::sync_due)
    }

    /// Makes everything committed durable regardless of the fsync policy (before exiting).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.check()?;
        match self.store.as_mut() {
            Some(store) => {
                let result = store.sync();
                if result.is_err() {
                    self.poisoned = true;
                }
                result
            }
            None => Ok(()),
        }
    }

    /// Records a clean close now, which dropping the mirror otherwise does: when everything is
    /// committed, one more commit says that no number beyond the next one was handed out, so that
    /// the next run continues without a gap (without it the next run starts above the reservation,
    /// as after a crash). A program about to exit can then `std::mem::forget` the mirror rather
    /// than free every entry.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.poisoned || self.dirty() || self.reserved <= self.next_seq {
            return Ok(());
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let info = CommitInfo {
            reserved: self.next_seq,
            ..self.committed.clone()
        };
        store.commit(&info)?;
        self.reserved = self.next_seq;
        self.committed = info;
        Ok(())
    }
}

impl Drop for Mirror {
    /// [`Mirror::close`], best effort.
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "could not record the clean close of the state");
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(dn: &str) -> Slot {
        Slot {
            entry: Entry {
                dn: dn.into(),
                attributes: AttributeList::default(),
            },
            mark: 0,
        }
    }

    #[test]
    fn dns_that_share_a_hash_are_told_apart() {
        let mut entries = Entries::default();
        let (a, b, c) = (EntryUuid([1; 16]), EntryUuid([2; 16]), EntryUuid([3; 16]));
        entries.insert_hashed(a, slot("uid=a,dc=example,dc=com"), 42);
        entries.insert_hashed(b, slot("uid=b,dc=example,dc=com"), 42);
        assert_eq!(
            entries.holder(42, "UID=A, dc=Example,dc=com", None),
            Some(a)
        );
        assert_eq!(entries.holder(42, "uid=b,dc=example,dc=com", None), Some(b));
        assert_eq!(entries.holder(42, "uid=b,dc=example,dc=com", Some(b)), None);
        assert_eq!(entries.holder(42, "uid=c,dc=example,dc=com", None), None);
        entries.insert_hashed(c, slot("uid=c,dc=example,dc=com"), 42);
        assert_eq!(entries.by_dn.get(&42).map(|b| b.uuids().len()), Some(3));
        entries.unindex(a, 42);
        entries.unindex(c, 42);
        assert!(matches!(entries.by_dn.get(&42), Some(DnBucket::One(u)) if *u == b));
        entries.unindex(b, 42);
        assert!(entries.by_dn.is_empty());
    }

    #[test]
    fn a_rename_moves_the_dn_index_entry() {
        let mut entries = Entries::default();
        let a = EntryUuid([1; 16]);
        entries.insert(a, slot("uid=a,dc=example,dc=com"));
        entries.insert(a, slot("uid=a2,dc=example,dc=com"));
        assert!(entries.get_by_dn("uid=a,dc=example,dc=com").is_none());
        assert_eq!(
            entries
                .get_by_dn("UID=A2,DC=EXAMPLE,DC=COM")
                .map(|(u, _)| u),
            Some(a)
        );
        assert_eq!(entries.by_dn.len(), 1);
        entries.insert(a, slot("uid=A2,dc=example,dc=com"));
        assert_eq!(entries.by_dn.len(), 1, "a change of case keeps the key");
    }
}
