//! The mirror: entries by entryUUID, a DN index, the cookie, the outbox of changes, and when each
//! is committed.

mod delivery;
mod dirsync;
mod ds389;
mod rules;

use std::path::Path;

use syncrepl_proto::{Cookie, EntryUuid};

use crate::clock::{Clock, SystemClock};
use crate::entries::{Entries, UuidSet};
use crate::error::Error;
use crate::log::{CommitInfo, FsyncPolicy, LogIo, LogStore, Record, StdIo};
use crate::outbox::Outbox;
use crate::rebuild::{settle, Replayer};
use crate::seq::Sequence;
use crate::store::{CommitSync, MemoryStore, Store};
use crate::{Entry, SearchSpec};

pub use delivery::{Delivered, DeliveryError};
use rules::Refresh;

/// By default a refresh logs what it has applied so far once this much is waiting, so that its
/// changes reach the consumer while it goes on and a crash loses a bounded amount of work (see
/// [`Mirror`]).
pub const BATCH_BYTES: u64 = 4 << 20;

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
    /// The clock the group-commit policy and the last-change stamp read, once per commit (the
    /// system's unless a test drives its own).
    pub clock: Box<dyn Clock>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            fsync: FsyncPolicy::EveryCommit,
            repair: false,
            reset: false,
            batch_bytes: BATCH_BYTES,
            io: Box::new(StdIo),
            clock: Box::new(SystemClock),
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
    /// The committed cookie: what the next sync sends (for slapd, the CSN set merged per
    /// serverID, without `sid`).
    pub cookie: Option<Cookie>,
    /// The cookie as the server last sent it with the committed state, for diagnosis.
    pub server_cookie: Option<Cookie>,
    /// Whether the next sync reloads everything.
    pub needs_reload: bool,
    /// Committed entries.
    pub entries: usize,
    /// Entries the next refresh must confirm (applied by an interrupted refresh).
    pub unconfirmed: usize,
    /// The next sequence number.
    pub next_seq: u64,
    /// The highest sequence number the consumer acknowledged (as committed).
    pub acked: u64,
    /// Changes logged but not acknowledged, which the next run hands out again first.
    pub undelivered: usize,
    /// Unix time of the last change, 0 if none.
    pub last_change: u64,
    /// Bytes of the state log (0 in memory).
    pub store_bytes: u64,
}

/// A local copy of what a sync search sees, kept in step by applying protocol events, and the
/// outbox of the changes it made until the consumer acknowledges them.
///
/// # Calling protocol
///
/// Open it ([`Mirror::in_memory`], [`Mirror::open`]), hand out what a previous run left
/// unacknowledged ([`Mirror::deliver`]), then for every sync search: call
/// [`Mirror::begin_refresh`] with the request (its cookie is [`Mirror::cookie`], its reloadHint
/// [`Mirror::needs_reload`]), feed every content event of the search to [`Mirror::apply`], call
/// [`Mirror::deliver`] whenever the changes should reach the consumer (the runtime does it when
/// no more input is waiting, and at the end of each refresh), and when the search ends early call
/// [`Mirror::interrupted`] (lost connection, stop) or, for e-syncRefreshRequired,
/// [`Mirror::refresh_required`]. With [`FsyncPolicy::Group`], call [`Mirror::sync`] by
/// [`Mirror::sync_due`] when no event comes, and before exiting.
///
/// # What is committed when
///
/// Changes are applied in memory at once and wait in the outbox. A *commit* writes them to the
/// log with the bookkeeping (cookie, next sequence number, acknowledged number) and syncs per the
/// [`FsyncPolicy`]; reopening after a crash yields exactly the last commit. A change is handed to
/// the consumer only once a commit logged it and that commit is durable, and a cookie is
/// committed only once the consumer acknowledged every change before it. Commits happen:
///
/// - **settled**, with the cookie that covers every change: at the end of each refresh, and for
///   each cookie of the persist stage (RFC 4533 §3.4: the cookie "represents the state of the
///   content"), once the consumer acknowledged the changes;
/// - **unsettled**, keeping the cookie the refresh started from: to log changes before they are
///   handed out (every [`OpenOptions::batch_bytes`] within a refresh, and whenever
///   [`Mirror::deliver`] is asked to wait), to record the acknowledged number, and when a search is
///   interrupted. An interrupted refresh is *not* undone: the state it leaves (the old content,
///   plus the newer versions and deletions the server already sent) is consistent with the old
///   cookie, whose next refresh sends whatever is still missing. One rule makes this exact: the
///   entries upserted since the last settled commit are *unconfirmed*, and the refresh that
///   completes next deletes those it neither sends nor presents. (Such an entry changed after the
///   old cookie, so if it still existed the server would have to send it, even in a delete phase,
///   which only names deletions of entries the client had at the old cookie.) This relies on RFC
///   4533 §3.3.1 as servers implement it: an entry changed since the cookie is sent in full even
///   when a later change restored its content (slapd compares entryCSNs).
///
/// So a crash loses at most the changes since the last commit, which were never handed out and
/// which the server sends again; changes handed out and not acknowledged are handed out again
/// from the log, with the same numbers.
#[derive(Debug)]
pub struct Mirror {
    entries: Entries,
    spec: SearchSpec,
    committed: CommitInfo,
    seq: Sequence,
    /// The newest cookie kept, not necessarily committed: what the server sent, or for slapd
    /// the CSN set merged with it ([`Cookie::merge`]).
    cookie: Option<Cookie>,
    /// The newest cookie as the server sent it, when it differs from `cookie`.
    server_cookie: Option<Cookie>,
    /// The sequence number the next change had when `cookie` arrived: the cookie covers the
    /// changes below it.
    cookie_seq: u64,
    needs_reload: bool,
    /// A refresh completed; its settled commit waits for the consumer.
    refresh_done: bool,
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
    outbox: Outbox,
    store: Box<dyn Store>,
    store_bytes: u64,
    batch_bytes: u64,
    poisoned: bool,
    clock: Box<dyn Clock>,
    /// The search's filter, for the DirSync rules, which apply it here.
    ad_filter: Option<syncrepl_proto::SearchFilter>,
}

impl Mirror {
    /// An empty mirror kept in memory only.
    pub fn in_memory(spec: SearchSpec) -> Mirror {
        let ad_filter = dirsync::parse_ad_filter(&spec.filter);
        Mirror {
            entries: Entries::default(),
            spec,
            committed: CommitInfo {
                next_seq: 1,
                settled: true,
                ..CommitInfo::default()
            },
            seq: Sequence::starting_at(1),
            cookie: None,
            server_cookie: None,
            cookie_seq: 1,
            needs_reload: false,
            refresh_done: false,
            server: String::new(),
            last_change: 0,
            generation: 0,
            refresh: None,
            pending: Vec::new(),
            suspects: UuidSet::default(),
            unstamped: false,
            outbox: Outbox::default(),
            store: Box::new(MemoryStore),
            store_bytes: 0,
            batch_bytes: BATCH_BYTES,
            poisoned: false,
            clock: Box::new(SystemClock),
            ad_filter,
        }
    }

    /// A mirror of what replay found; numbering resumes above every number that may have been
    /// handed out (`tail_reserved`: reservations after the last commit).
    fn from_replay(spec: SearchSpec, mut replayer: Replayer, tail_reserved: u64) -> Mirror {
        let unacked = replayer.take_unacked();
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
        mirror.seq = Sequence::starting_at(mirror.committed.next_seq);
        mirror.outbox = Outbox::restored(unacked, mirror.committed.acked);
        // A state written before slapd's cookies were merged may hold one with a sid: never send
        // that back.
        mirror.committed.cookie = mirror
            .committed
            .cookie
            .take()
            .map(|c| Cookie::merge(None, c));
        mirror.cookie = mirror.committed.cookie.clone();
        mirror.server_cookie = mirror.committed.server_cookie.clone();
        mirror.cookie_seq = mirror.seq.next;
        mirror.needs_reload = mirror.committed.needs_reload;
        mirror.server = mirror.committed.server.clone();
        mirror.last_change = mirror.committed.last_change;
        mirror
    }

    /// Opens the mirror in state directory `dir` for `spec`, creating it if needed, and replays its
    /// log. A state of another search is [`Error::SearchMismatch`] unless `options.reset` is set;
    /// the host and credentials used to sync are not part of the search and may change.
    pub fn open(dir: &Path, spec: SearchSpec, options: OpenOptions) -> Result<Mirror, Error> {
        let mut replayer = Replayer::for_search(Some(spec.clone()));
        let (store, replayed) = LogStore::open(
            dir,
            options.fsync,
            options.repair,
            options.io,
            &mut replayer,
        )?;
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
        let rewrite = fresh || store.needs_rewrite();
        mirror.store = Box::new(store);
        mirror.batch_bytes = options.batch_bytes.max(1);
        mirror.clock = options.clock;
        if rewrite {
            if !fresh {
                tracing::info!(
                    "the state log is of format {}; rewriting it as format {}",
                    replayed.version,
                    crate::log::FORMAT_VERSION
                );
            }
            mirror.compact()?;
        } else if replayed.tail_reserved > replayed.committed_reserved {
            // Numbers up to a reservation in the cut tail may have been handed out before the
            // crash: commit the reservation again, with the content unchanged.
            let info = mirror.committed.clone();
            mirror
                .store
                .commit(&info, CommitSync::PerPolicy, mirror.clock.now())?;
        }
        Ok(mirror)
    }

    /// Reads the committed state of `dir` without locking or writing it, for inspection while
    /// another process may be syncing (the log is append-only and commits are atomic).
    pub fn load(dir: &Path) -> Result<Mirror, Error> {
        Mirror::load_with(dir, &mut StdIo)
    }

    /// [`Mirror::load`] through the file operations `io`.
    pub fn load_with(dir: &Path, io: &mut dyn LogIo) -> Result<Mirror, Error> {
        let path = dir.join(crate::log::LOG_NAME);
        let io_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let Some((mut reader, len)) = io.open_read(&path).map_err(io_error)? else {
            return Err(io_error(std::io::ErrorKind::NotFound.into()));
        };
        let mut replayer = Replayer::default();
        let replayed = crate::log::replay_pipelined(&path, &mut *reader, len, false, &mut |r| {
            crate::store::ReplaySink::record(&mut replayer, r)
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

    /// The entries, committed or not: every change the outbox holds is applied.
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
        self.seq.next
    }

    /// The highest sequence number the consumer acknowledged.
    pub fn acked(&self) -> u64 {
        self.outbox.acked()
    }

    /// How many changes were applied and not acknowledged yet.
    pub fn undelivered(&self) -> usize {
        self.outbox.len()
    }

    /// How many changes were applied and not logged yet: [`Mirror::stage`] or the next commit
    /// logs them.
    pub fn unlogged(&self) -> usize {
        self.outbox.fresh_len()
    }

    /// Logs the changes applied since the last commit (an unsettled commit, see [`Mirror`]) and
    /// starts making them durable without waiting, so that [`Mirror::deliver`] can hand them out
    /// soon; the runtime does it now and then during a slow refresh.
    pub fn stage(&mut self) -> Result<(), Error> {
        self.check()?;
        if self.outbox.has_fresh() {
            self.guard(|m| m.commit(false, CommitSync::Background))?;
        }
        Ok(())
    }

    /// How many entries an interrupted refresh applied that the next refresh must confirm.
    pub fn unconfirmed(&self) -> usize {
        self.suspects.len()
    }

    /// Whether a refresh is in progress (between [`Mirror::begin_refresh`] and its end).
    pub fn in_refresh(&self) -> bool {
        self.refresh.is_some()
    }

    /// A summary for `syncrepl status`.
    pub fn status(&self) -> Status {
        let store_bytes = if self.store.persistent() {
            self.store.committed_len()
        } else {
            self.store_bytes
        };
        Status {
            search: self.spec.clone(),
            server: self.committed.server.clone(),
            cookie: self.committed.cookie.clone(),
            server_cookie: self
                .committed
                .server_cookie
                .clone()
                .or_else(|| self.committed.cookie.clone()),
            needs_reload: self.committed.needs_reload,
            entries: self.entries.len(),
            unconfirmed: self.suspects.len(),
            next_seq: self.committed.next_seq.max(1),
            acked: self.committed.acked,
            undelivered: self.outbox.len(),
            last_change: self.committed.last_change,
            store_bytes,
        }
    }

    /// Records the server being synced from, written with the next commit. Pass a URL without
    /// credentials: no password or bind secret is ever given to the mirror.
    pub fn set_server(&mut self, server: &str) {
        self.server = server.to_owned();
    }

    /// Runs `f`, and refuses everything after it fails: memory may then be ahead of the log.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn check(&self) -> Result<(), Error> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Whether anything was applied that no commit has written yet.
    fn dirty(&self) -> bool {
        self.seq.next != self.committed.next_seq || self.store.uncommitted_len() > 0
    }

    /// Commits: settled with the newest cookie (the caller checked that the consumer acknowledged
    /// everything it covers), or unsettled with the committed one. The changes applied since the
    /// last commit are logged by it and may be handed out once it is durable.
    fn commit(&mut self, settled: bool, sync: CommitSync) -> Result<(), Error> {
        if std::mem::take(&mut self.unstamped) {
            self.last_change = self.clock.unix_seconds();
        }
        let info = CommitInfo {
            next_seq: self.seq.next,
            reserved: self.seq.reserved,
            acked: self.outbox.acked(),
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
            server_cookie: if settled {
                self.server_cookie.clone()
            } else {
                self.committed.server_cookie.clone()
            },
            settled,
            server: self.server.clone(),
            last_change: self.last_change,
        };
        let end = self.store.commit(&info, sync, self.clock.now())?;
        self.outbox.logged(end);
        settle(
            &mut self.pending,
            &mut self.suspects,
            settled,
            info.cookie.is_some(),
        );
        self.committed = info;
        self.maybe_compact()
    }

    fn maybe_compact(&mut self) -> Result<(), Error> {
        if self.store.persistent()
            && self.outbox.is_empty()
            && self.store.committed_len() > 2 * self.entries.live_bytes + (8 << 20)
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log as a snapshot of the mirror (a new generation), committing first what is
    /// pending (unsettled, see [`Mirror`]). Changes not yet acknowledged must still be rebuilt
    /// from the log after a crash, so while the outbox holds any, this waits for a later call.
    pub fn compact(&mut self) -> Result<(), Error> {
        self.check()?;
        if !self.outbox.is_empty() {
            tracing::debug!(
                undelivered = self.outbox.len(),
                "compaction postponed until the consumer acknowledged every change"
            );
            return Ok(());
        }
        if self.dirty() {
            self.guard(|m| m.commit(false, CommitSync::PerPolicy))?;
        }
        let head = std::iter::once(Record::Search(self.spec.clone()));
        let suspects = &self.suspects;
        let upserts = |suspect: bool| {
            self.entries
                .by_uuid
                .iter()
                .filter(move |(uuid, _)| suspects.contains(*uuid) == suspect)
                .map(|(uuid, slot)| Record::Upsert {
                    seq: 0,
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
        let result = self
            .store
            .rewrite(&mut head.chain(upserts(false)).chain(settled).chain(unconfirmed));
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// With group commit, when committed changes still wait for their fsync: call [`Mirror::sync`]
    /// by then even if no other change comes.
    pub fn sync_due(&self) -> Option<std::time::Instant> {
        self.store.sync_due()
    }

    /// Makes everything committed durable regardless of the fsync policy (before exiting).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.check()?;
        let result = self.store.sync();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Records a clean close now, which dropping the mirror otherwise does: when everything is
    /// committed, one more commit says that no number beyond the next one was handed out, so that
    /// the next run continues without a gap (without it the next run starts above the reservation,
    /// as after a crash). A program about to exit can then `std::mem::forget` the mirror rather
    /// than free every entry.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.poisoned
            || !self.store.persistent()
            || self.dirty()
            || self.seq.reserved <= self.seq.next
        {
            return Ok(());
        }
        let info = CommitInfo {
            reserved: self.seq.next,
            ..self.committed.clone()
        };
        self.store
            .commit(&info, CommitSync::PerPolicy, self.clock.now())?;
        self.seq.reserved = self.seq.next;
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
