//! Pulling changes one at a time: the sync runs on a thread of its own and the caller iterates.
//!
//! A change is acknowledged when the caller asks for the next item, or calls [`Changes::ack`]:
//! the cookie covering it is committed only then, and a change returned but not acknowledged
//! when the iterator is dropped is handed out again by the next run.

pub use std::sync::mpsc::RecvTimeoutError;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use syncrepl_mio::{Outcome, StopHandle, SyncOptions};
use syncrepl_proto::Cookie;
use syncrepl_state::{Change, Consumer, ConsumerError, Entries, Entry, Mirror};

use crate::error::Error;

/// How many items may wait for the caller before the sync thread waits in turn (back-pressure,
/// so a slow caller does not make the refresh pile up in memory).
const QUEUE: usize = 1024;

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The runtime bound to the server; what Who am I? said, if asked.
    Bound {
        /// The authzId.
        authz_id: Option<String>,
    },
    /// A change of the mirror.
    Change(Change),
    /// A refresh completed and every change of it was acknowledged.
    RefreshDone {
        /// How many entries the mirror holds.
        entries: usize,
        /// Every entry at that moment, when [`PullOptions::refresh_snapshot`] asked for it (the
        /// attributes share their bytes with the mirror's).
        snapshot: Option<Arc<Vec<Entry>>>,
    },
    /// The committed cookie changed.
    Cookie(Option<Cookie>),
}

/// What [`changes_with`] hands out beyond the changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// Give every [`Item::RefreshDone`] a snapshot of the mirror's entries, for callers that
    /// show the whole content when a refresh ends (the Python `refresh_done(items)` callback).
    pub refresh_snapshot: bool,
}

/// The iterator went away: the changes it did not acknowledge wait for the next run.
#[derive(Debug, thiserror::Error)]
#[error("the iterator of changes was dropped")]
pub struct IteratorDropped;

/// What the caller acknowledged, shared with the sync thread.
#[derive(Debug, Default)]
struct Acks {
    state: Mutex<AckState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct AckState {
    acked: u64,
    closed: bool,
}

impl Acks {
    fn update(&self, f: impl FnOnce(&mut AckState)) {
        if let Ok(mut state) = self.state.lock() {
            f(&mut state);
        }
        self.changed.notify_all();
    }
}

/// The consumer on the sync thread: sends items, and waits in `flush` until the caller has
/// acknowledged everything sent.
struct Sender {
    tx: SyncSender<Item>,
    acks: Arc<Acks>,
    sent: u64,
    options: PullOptions,
}

impl Sender {
    fn send(&self, item: Item) -> Result<(), ConsumerError> {
        self.tx
            .send(item)
            .map_err(|_| Box::new(IteratorDropped).into())
    }
}

impl Consumer for Sender {
    fn on_bind(&mut self, authz_id: Option<&str>) -> Result<(), ConsumerError> {
        self.send(Item::Bound {
            authz_id: authz_id.map(str::to_owned),
        })
    }

    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        self.send(Item::Change(change.clone()))?;
        self.sent = change.seq;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        let Ok(mut state) = self.acks.state.lock() else {
            return Err(Box::new(IteratorDropped));
        };
        while state.acked < self.sent && !state.closed {
            state = match self.acks.changed.wait(state) {
                Ok(state) => state,
                Err(_) => return Err(Box::new(IteratorDropped)),
            };
        }
        if state.acked < self.sent {
            return Err(Box::new(IteratorDropped));
        }
        Ok(())
    }

    fn acknowledged(&mut self) -> Option<u64> {
        self.acks.state.lock().ok().map(|s| s.acked)
    }

    fn on_refresh_done(&mut self, entries: &Entries) -> Result<(), ConsumerError> {
        let snapshot = self
            .options
            .refresh_snapshot
            .then(|| Arc::new(entries.iter().map(|(_, e)| e.clone()).collect()));
        self.send(Item::RefreshDone {
            entries: entries.len(),
            snapshot,
        })
    }

    fn on_cookie(&mut self, cookie: Option<&Cookie>) -> Result<(), ConsumerError> {
        self.send(Item::Cookie(cookie.cloned()))
    }
}

/// An iterator over the changes of a sync running in the background.
///
/// The iterator ends when the run ends (refreshOnly done, stopped, or failed); [`Changes::finish`]
/// then gives the outcome and the mirror back.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncrepl::mio::{ConnectOptions, LdapUrl, SyncOptions};
/// use syncrepl::proto::{SyncMode, SyncRequest};
/// use syncrepl::state::{Mirror, SearchSpec};
/// use syncrepl::{changes, Item};
///
/// let url: LdapUrl = "ldap://127.0.0.1/dc=example,dc=com??sub".parse()?;
/// let mut request = SyncRequest::new(url.base.clone(), SyncMode::RefreshAndPersist);
/// request.scope = url.scope;
/// let mirror = Mirror::open("state".as_ref(), SearchSpec::from_request(&request), Default::default())?;
/// let mut stream = changes(SyncOptions::new(ConnectOptions::new(url.endpoint), request), mirror);
/// for item in stream.by_ref() {
///     if let Item::Change(change) = item {
///         println!("{} {} {}", change.seq, change.label(), change.dn());
///     }
/// }
/// let (outcome, _mirror) = stream.finish()?;
/// println!("{outcome:?}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Changes {
    rx: Receiver<Item>,
    stop: StopHandle,
    acks: Arc<Acks>,
    /// The number of the last change returned, acknowledged by the next call.
    returned: Option<u64>,
    thread: Option<JoinHandle<(Result<Outcome, Error>, Mirror)>>,
}

/// Starts syncing `mirror` in the background and returns the changes as an iterator.
pub fn changes(options: SyncOptions, mirror: Mirror) -> Changes {
    changes_with(options, mirror, PullOptions::default())
}

/// [`changes`], with more than the changes as `pull` says.
pub fn changes_with(options: SyncOptions, mut mirror: Mirror, pull: PullOptions) -> Changes {
    let (tx, rx) = sync_channel(QUEUE);
    let stop = StopHandle::new();
    let thread_stop = stop.clone();
    let acks = Arc::new(Acks::default());
    let mut sender = Sender {
        tx,
        acks: acks.clone(),
        sent: 0,
        options: pull,
    };
    let thread = std::thread::spawn(move || {
        let result = crate::sync::run(&options, &mut mirror, &mut sender, &thread_stop);
        (result, mirror)
    });
    Changes {
        rx,
        stop,
        acks,
        returned: None,
        thread: Some(thread),
    }
}

impl Changes {
    /// A handle that stops the run from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Acknowledges every change returned so far, so that the cookie covering them can be
    /// committed without asking for the next item.
    pub fn ack(&mut self) {
        if let Some(seq) = self.returned.take() {
            self.acks.update(|s| s.acked = s.acked.max(seq));
        }
    }

    /// Stops the run (if it is still going), waits for it, and returns how it ended with the
    /// mirror. Changes not acknowledged stay in the mirror's outbox for the next run.
    pub fn finish(mut self) -> Result<(Outcome, Mirror), Error> {
        self.close();
        let thread = self
            .thread
            .take()
            .ok_or(Error::Runtime(syncrepl_mio::Error::Stopped))?;
        // Draining while waiting keeps the sync thread from blocking on a full queue.
        while !thread.is_finished() {
            let _ = self.rx.recv_timeout(std::time::Duration::from_millis(10));
        }
        match thread.join() {
            Ok((Err(Error::Consumer { source, .. }), mirror)) if source.is::<IteratorDropped>() => {
                Ok((Outcome::Stopped, mirror))
            }
            Ok((result, mirror)) => result.map(|outcome| (outcome, mirror)),
            Err(_) => Err(Error::Consumer {
                seq: None,
                source: "the sync thread panicked".into(),
            }),
        }
    }

    fn close(&mut self) {
        self.stop.stop();
        self.acks.update(|s| s.closed = true);
    }
}

impl Changes {
    /// Up to `max` items: waits at most `timeout` for the first, then takes what is already
    /// there. Asking acknowledges every change returned before, as [`Iterator::next`] does;
    /// [`Changes::ack_through`] acknowledges part of a batch.
    pub fn next_batch(
        &mut self,
        timeout: std::time::Duration,
        max: usize,
    ) -> Result<Vec<Item>, RecvTimeoutError> {
        self.ack();
        let mut items = vec![self.rx.recv_timeout(timeout)?];
        while items.len() < max {
            match self.rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        if let Some(seq) = items.iter().rev().find_map(|item| match item {
            Item::Change(change) => Some(change.seq),
            _ => None,
        }) {
            self.returned = Some(seq);
        }
        Ok(items)
    }

    /// Acknowledges the changes returned so far up to `seq`, and no further: what a caller that
    /// failed in the middle of a batch took.
    pub fn ack_through(&mut self, seq: u64) {
        if let Some(returned) = self.returned {
            let upto = seq.min(returned);
            self.acks.update(|s| s.acked = s.acked.max(upto));
        }
    }
}

impl Iterator for Changes {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        self.ack();
        let item = self.rx.recv().ok()?;
        if let Item::Change(change) = &item {
            self.returned = Some(change.seq);
        }
        Some(item)
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.close();
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                let _ = self.rx.recv_timeout(std::time::Duration::from_millis(10));
            }
            let _ = thread.join();
        }
    }
}
