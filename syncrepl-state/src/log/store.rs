//! The log-backed store of a state directory: appends, commits, syncs (on this thread or in the
//! background), compaction.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use syncrepl_proto::{AttributeList, EntryUuid};

use crate::error::Error;
use crate::log::io::{Lock, LogFile, LogIo};
use crate::log::record::{
    encode_record, encode_upsert, header, CommitInfo, FsyncPolicy, Record, FORMAT_VERSION,
};
use crate::log::replay::{replay_pipelined, Replayed};
use crate::log::{LOCK_NAME, LOG_NAME, TMP_NAME};
use crate::store::{CommitSync, ReplaySink, Store};

/// Buffered records are written out at this size.
const WRITE_CHUNK: usize = 1 << 20;
/// Bytes written between two background syncs of a long batch.
const BACKGROUND_SYNC: u64 = 16 << 20;
/// How long a [`CommitSync::Soon`] commit may wait for its fsync under
/// [`FsyncPolicy::EveryCommit`].
const SOON: Duration = Duration::from_millis(5);

/// The log-backed store of a state directory.
pub(crate) struct LogStore {
    dir: PathBuf,
    io: Box<dyn LogIo>,
    file: Option<Box<dyn LogFile>>,
    policy: FsyncPolicy,
    generation: u64,
    buffer: Vec<u8>,
    /// Bytes handed to the file, a write still running on another thread included.
    file_len: u64,
    /// Bytes whose write returned: what a crash of the process cannot take back.
    written_len: u64,
    committed_len: u64,
    synced_len: u64,
    unsynced_since: Option<Instant>,
    /// A sync of earlier writes running on another thread, with the length it makes durable:
    /// started when a long batch has written [`BACKGROUND_SYNC`] bytes, so that the disk works
    /// while the next entries are decoded, or when a commit asks for [`CommitSync::Background`].
    background: Option<(JoinHandle<io::Result<()>>, u64)>,
    /// A background sync was asked for up to here while another was running.
    sync_wanted: u64,
    /// Since when a [`CommitSync::Soon`] commit waits for its fsync.
    soon: Option<Instant>,
    since_background: u64,
    /// A write of a full chunk running on another thread, so that copying it into the kernel
    /// overlaps with decoding the next entries. Anything else that touches the file waits for it
    /// first; it gives its buffer back for the next chunk.
    writing: Option<JoinHandle<(io::Result<()>, Vec<u8>)>>,
    spare: Vec<u8>,
    /// The version of the file as found; an older one is rewritten before anything is appended.
    found_version: u32,
    _lock: Box<dyn Send>,
}

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

impl LogStore {
    /// Opens (creating if needed) the state directory `dir`, takes its lock, replays its log into
    /// `sink`, truncates what was not committed and syncs.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        repair: bool,
        mut io: Box<dyn LogIo>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(LogStore, Replayed), Error> {
        io.create_dir(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = match io.lock(&lock_path).map_err(io_err(&lock_path))? {
            Lock::Held(guard) => guard,
            Lock::Busy(holder) => {
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    holder,
                })
            }
        };
        let path = dir.join(LOG_NAME);
        let replayed = match io.open_read(&path).map_err(io_err(&path))? {
            Some((mut reader, len)) => {
                sink.expect_bytes(len);
                replay_pipelined(&path, &mut *reader, len, repair, &mut |r| sink.record(r))?
            }
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
            written_len: replayed.committed_end,
            committed_len: replayed.committed_end,
            synced_len: replayed.committed_end,
            unsynced_since: None,
            background: None,
            sync_wanted: 0,
            soon: None,
            since_background: 0,
            writing: None,
            spare: Vec::new(),
            found_version: replayed.version,
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
        if self.found_version != FORMAT_VERSION && self.file.is_some() {
            // Never append records of this format to a file of another: the file is rewritten
            // first (Mirror::open does it at once).
            return Err(Error::Poisoned);
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
                self.file_len += len;
            }
            None => {
                file.write_all(&self.buffer).map_err(io_err(&path))?;
                self.buffer.clear();
                self.file_len += len;
                self.written_len = self.file_len;
            }
        }
        self.since_background += len;
        if self.policy != FsyncPolicy::Os
            && self.since_background >= BACKGROUND_SYNC
            && self
                .background
                .as_ref()
                .is_none_or(|(b, _)| b.is_finished())
        {
            self.start_background_sync()?;
        }
        Ok(())
    }

    /// Starts syncing, on another thread, everything written so far (after waiting for the write
    /// and the sync already running, if any).
    fn start_background_sync(&mut self) -> Result<(), Error> {
        // The sync must cover only writes that are done.
        self.finish_write()?;
        self.wait_background()?;
        if self.synced_len >= self.file_len {
            return Ok(());
        }
        match self.file.as_ref().and_then(|f| f.sync_handle()) {
            Some(mut handle) => {
                self.since_background = 0;
                let len = self.file_len;
                self.background = Some((std::thread::spawn(move || handle.sync_data()), len));
                Ok(())
            }
            None => self.sync(),
        }
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
                result.map_err(io_err(&path))?;
                self.written_len = self.file_len;
                Ok(())
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

    /// Collects a finished write or background sync without waiting, and starts the sync that
    /// was asked for while another ran.
    fn poll_threads(&mut self) -> Result<(), Error> {
        if self.writing.as_ref().is_some_and(JoinHandle::is_finished) {
            self.finish_write()?;
        }
        if self
            .background
            .as_ref()
            .is_some_and(|(b, _)| b.is_finished())
        {
            self.wait_background()?;
        }
        if self.background.is_none() && self.sync_wanted > self.synced_len {
            if self.writing.is_some() {
                return Ok(());
            }
            self.sync_wanted = 0;
            self.start_background_sync()?;
        }
        Ok(())
    }
}

impl Store for LogStore {
    fn persistent(&self) -> bool {
        true
    }

    fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    fn needs_rewrite(&self) -> bool {
        self.file.is_some() && self.found_version != FORMAT_VERSION
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        encode_record(record, &mut self.buffer)?;
        self.maybe_write()
    }

    fn append_upsert(
        &mut self,
        seq: u64,
        uuid: EntryUuid,
        dn: &str,
        attributes: &AttributeList,
    ) -> Result<(), Error> {
        encode_upsert(seq, uuid, dn, attributes, &mut self.buffer)?;
        self.maybe_write()
    }

    fn reserve(&mut self, limit: u64) -> Result<u64, Error> {
        encode_record(&Record::Reserve(limit), &mut self.buffer)?;
        self.write_buffer()?;
        Ok(self.file_len)
    }

    fn commit(&mut self, info: &CommitInfo, sync: CommitSync, now: Instant) -> Result<u64, Error> {
        encode_record(
            &Record::Commit {
                info: info.clone(),
                synced_len: self.synced_len,
            },
            &mut self.buffer,
        )?;
        self.write_buffer()?;
        let since = *self.unsynced_since.get_or_insert(now);
        let due = match self.policy {
            FsyncPolicy::EveryCommit => true,
            FsyncPolicy::Group {
                max_delay,
                max_bytes,
            } => now - since >= max_delay || self.file_len - self.synced_len >= max_bytes,
            FsyncPolicy::Os => false,
        };
        match sync {
            CommitSync::Soon if self.policy == FsyncPolicy::EveryCommit => {
                self.soon.get_or_insert(now);
            }
            CommitSync::PerPolicy | CommitSync::Soon if due => self.sync()?,
            CommitSync::Background if due => {
                if self.background.is_some() {
                    self.sync_wanted = self.file_len;
                    self.poll_threads()?;
                } else {
                    self.start_background_sync()?;
                }
            }
            _ => {}
        }
        self.committed_len = self.file_len;
        Ok(self.file_len)
    }

    fn durable_len(&mut self) -> Result<u64, Error> {
        self.poll_threads()?;
        Ok(match self.policy {
            FsyncPolicy::EveryCommit => self.synced_len,
            FsyncPolicy::Group { .. } | FsyncPolicy::Os => self.written_len,
        })
    }

    fn wait_durable(&mut self, offset: u64) -> Result<(), Error> {
        if self.durable_len()? >= offset {
            return Ok(());
        }
        self.finish_write()?;
        if self.policy == FsyncPolicy::EveryCommit && self.synced_len < offset {
            self.wait_background()?;
            if self.synced_len < offset {
                self.sync()?;
            }
        }
        Ok(())
    }

    fn synced_len(&mut self) -> Result<u64, Error> {
        if self
            .background
            .as_ref()
            .is_some_and(|(b, _)| b.is_finished())
        {
            self.wait_background()?;
        }
        Ok(self.synced_len)
    }

    fn sync(&mut self) -> Result<(), Error> {
        self.write_buffer()?;
        self.finish_write()?;
        self.wait_background()?;
        let path = self.log_path();
        if let Some(file) = self.file.as_mut() {
            file.sync_data().map_err(io_err(&path))?;
        }
        self.synced_len = self.file_len;
        self.unsynced_since = None;
        self.soon = None;
        Ok(())
    }

    fn sync_due(&self) -> Option<Instant> {
        if self.committed_len <= self.synced_len {
            return None;
        }
        match self.policy {
            FsyncPolicy::Group { max_delay, .. } => {
                self.unsynced_since.map(|since| since + max_delay)
            }
            FsyncPolicy::EveryCommit => self.soon.map(|since| since + SOON),
            FsyncPolicy::Os => None,
        }
    }

    fn rewrite(&mut self, records: &mut dyn Iterator<Item = Record>) -> Result<(), Error> {
        self.finish_write()?;
        self.wait_background()?;
        let tmp = self.dir.join(TMP_NAME);
        let path = self.log_path();
        let generation = self.generation + 1;
        let mut file = self.io.create(&tmp).map_err(io_err(&tmp))?;
        let mut buf = Vec::with_capacity(WRITE_CHUNK + (64 << 10));
        buf.extend_from_slice(&header(generation));
        let mut total = 0u64;
        for mut record in records {
            if let Record::Commit { synced_len, .. } = &mut record {
                // Everything before it is synced before the rename makes the file visible.
                *synced_len = total + buf.len() as u64;
            }
            encode_record(&record, &mut buf)?;
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
        self.found_version = FORMAT_VERSION;
        self.generation = generation;
        self.file_len = total;
        self.written_len = total;
        self.committed_len = total;
        self.synced_len = total;
        self.buffer.clear();
        self.unsynced_since = None;
        self.soon = None;
        self.since_background = 0;
        self.sync_wanted = 0;
        Ok(())
    }

    fn committed_len(&self) -> u64 {
        self.committed_len
    }

    fn uncommitted_len(&self) -> u64 {
        self.file_len + self.buffer.len() as u64 - self.committed_len
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // What a write still running carries is not committed; waiting keeps it from outliving
        // the store (a failure then only means an uncommitted tail, which replay truncates).
        let _ = self.finish_write();
    }
}
