//! The publisher: a [`Consumer`] of the mirror's change stream that publishes each change to
//! JetStream and takes it only once JetStream has acknowledged it, with a bounded window of
//! publishes in flight instead of one round trip each.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_nats::{Client, HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use syncrepl::proto::Cookie;
use syncrepl::state::{Change, Entries, Mirror};
use syncrepl::{Consumer, ConsumerError};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::acks::{self, Answer, Window, ACK_TIMEOUT};
use crate::subjects::Subjects;
use crate::Error;

/// Header with the change's sequence number (the delivery contract's `seq`).
pub const SEQ_HEADER: &str = "Syncrepl-Seq";
/// Header with the change's kind: `add`, `modify`, `rename`, `delete`.
pub const KIND_HEADER: &str = "Syncrepl-Kind";
/// Header with the entry's entryUUID.
pub const UUID_HEADER: &str = "Syncrepl-EntryUUID";
/// Header with the entry's DN (absent if the DN could not be a header value).
pub const DN_HEADER: &str = "Syncrepl-DN";

/// The file in the state directory holding the mirror's identity for `Nats-Msg-Id`.
const IDENTITY_FILE: &str = "nats-publisher.id";

/// The mirror's identity in message ids: kept in the state directory, and new whenever the
/// mirror starts from nothing (a new state, or `--reset`), whose numbering starts again at 1.
pub fn identity(state: &Path, mirror: &Mirror) -> Result<String, Error> {
    let path = state.join(IDENTITY_FILE);
    if mirror.next_seq() > 1 {
        match std::fs::read_to_string(&path) {
            Ok(text) if valid_identity(text.trim()) => return Ok(text.trim().to_owned()),
            Ok(_) | Err(_) => {}
        }
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let temp = state.join(format!("{IDENTITY_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(state)?.sync_all()
    };
    write().map_err(|e| Error::Identity(format!("{}: {e}", path.display())))?;
    Ok(id)
}

fn valid_identity(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Messages handed to the publishing task at once: one wake-up of the task per batch, not per
/// change (a persist change goes at once, as a batch of one, since a flush follows it).
const BATCH: usize = 128;

/// One message for the publishing task: where, its headers (`Nats-Msg-Id` among them) and body,
/// and the change it carries (none for a marker).
#[derive(Debug)]
pub struct Outgoing {
    subject: Subject,
    headers: HeaderMap,
    payload: Bytes,
    seq: Option<u64>,
}

/// Counts of what the publisher did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages JetStream stored.
    pub stored: u64,
    /// Messages JetStream dropped as already stored (the same `Nats-Msg-Id` within the
    /// duplicate window): changes handed out again after a crash.
    pub duplicates: u64,
}

/// What the acknowledging task learned, shared with the sync thread: counters it updates
/// without a lock, and a lock and condition variable only for a flush that waits.
#[derive(Debug, Default)]
struct Shared {
    /// The publishes in flight, pushed by the publishing task, answered by the acknowledging one.
    window: Mutex<Window>,
    /// Messages acknowledged by JetStream, in order.
    count: AtomicU64,
    /// The highest change sequence number among them.
    acked: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicBool,
    /// The first failure: nothing after it counts.
    error: Mutex<Option<String>>,
    /// The `count` a waiting flush needs (0: none waits), so that it is woken once, not per
    /// acknowledgement.
    waiting_for: AtomicU64,
    changed: Condvar,
}

impl Shared {
    fn error(&self) -> MutexGuard<'_, Option<String>> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, e: impl std::fmt::Display) {
        let _guard = {
            let mut guard = self.error();
            guard.get_or_insert_with(|| e.to_string());
            guard
        };
        self.failed.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// After `count` grew to `count`: wakes a flush that waits for it.
    fn wake(&self, count: u64) {
        // SeqCst with the flush's store of `waiting_for` and load of `count`: one of the two
        // sees the other's write, so no wake-up is lost.
        let target = self.waiting_for.load(Ordering::SeqCst);
        if target != 0 && count >= target {
            let _guard = self.error();
            self.changed.notify_all();
        }
    }

    /// Takes JetStream's answer to one publish; then the publishes answered in order count as
    /// acknowledged, and their permits go back to the publishing task.
    fn take(&self, message: &async_nats::Message, permits: &Semaphore) -> Result<(), String> {
        let index = acks::reply_index(&message.subject)
            .ok_or_else(|| format!("an answer on an unexpected subject {}", message.subject))?;
        let duplicate = match acks::answer(message) {
            Answer::Stored => false,
            Answer::Duplicate => true,
            Answer::Refused(why) => return Err(why),
        };
        let mut window = self.window();
        window.answer(index, duplicate).map_err(|e| e.to_string())?;
        let mut settled = 0;
        for publish in window.settle() {
            settled += 1;
            let counter = if publish.duplicate {
                &self.duplicates
            } else {
                &self.stored
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(seq) = publish.seq {
                self.acked.fetch_max(seq, Ordering::Release);
            }
        }
        drop(window);
        if settled > 0 {
            let count = self.count.fetch_add(settled, Ordering::SeqCst) + settled;
            permits.add_permits(settled as usize);
            self.wake(count);
        }
        Ok(())
    }
}

/// Publishes the change stream to JetStream (see the module documentation).
///
/// The sync thread hands batches of messages to a task on the runtime, which publishes each at
/// once with a reply subject in the publisher's [`Inbox`](acks::Inbox); a second task reads the
/// answers there. Neither waits for the other, so publishes are pipelined; at most
/// `max_in_flight` wait for their acknowledgement.
pub struct Publisher {
    outgoing: mpsc::Sender<Vec<Outgoing>>,
    batch: Vec<Outgoing>,
    shared: Arc<Shared>,
    subjects: Subjects,
    identity: String,
    /// Messages handed to the publishing task.
    sent: u64,
    /// Dropped with the publisher, which ends the acknowledging task.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("subjects", &self.subjects)
            .field("identity", &self.identity)
            .field("sent", &self.sent)
            .finish()
    }
}

/// The publishing task: each message goes out once a permit of the window is free.
async fn publish_all(
    client: Client,
    inbox: String,
    mut batches: mpsc::Receiver<Vec<Outgoing>>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    while let Some(batch) = batches.recv().await {
        for next in batch {
            match permits.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_closed) => return,
            }
            let index = shared.window().push(next.seq, Instant::now());
            let reply = Subject::from(format!("{inbox}.{index}"));
            let published = client
                .publish_with_reply_and_headers(next.subject, reply, next.headers, next.payload)
                .await;
            if let Err(e) = published {
                shared.fail(e);
                permits.close();
                return;
            }
        }
    }
}

/// The acknowledging task: reads every answer on the inbox until the publisher is dropped, a
/// publish is refused, or the oldest in flight waited [`ACK_TIMEOUT`].
async fn settle_answers(
    mut answers: Subscriber,
    mut stop: oneshot::Receiver<()>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    let failure = loop {
        let wait = shared.window().oldest().map_or(ACK_TIMEOUT, |sent| {
            (sent + ACK_TIMEOUT).saturating_duration_since(Instant::now())
        });
        let next = tokio::select! {
            _ = &mut stop => return,
            next = tokio::time::timeout(wait, answers.next()) => next,
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => break "the subscription to the acknowledgements ended".to_owned(),
            Err(_elapsed) => {
                let late = shared
                    .window()
                    .oldest()
                    .is_some_and(|s| s.elapsed() >= ACK_TIMEOUT);
                if late {
                    break format!("no acknowledgement from JetStream within {ACK_TIMEOUT:?}");
                }
                continue;
            }
        };
        if let Err(why) = shared.take(&message, &permits) {
            break why;
        }
        // The answers already received, without a timer each.
        let mut refused = None;
        while let Some(Some(message)) = answers.next().now_or_never() {
            if let Err(why) = shared.take(&message, &permits) {
                refused = Some(why);
                break;
            }
        }
        if let Some(why) = refused {
            break why;
        }
    };
    shared.fail(failure);
    permits.close();
}

impl Publisher {
    /// A publisher on `client` (which runs on `runtime`), to `subjects`, answered on `inbox`,
    /// naming messages after `identity`; at most `max_in_flight` publishes wait for their
    /// acknowledgement.
    pub fn new(
        runtime: &Handle,
        client: Client,
        inbox: acks::Inbox,
        subjects: Subjects,
        identity: String,
        max_in_flight: usize,
    ) -> Publisher {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let (outgoing, to_publish) = mpsc::channel::<Vec<Outgoing>>(max_in_flight.div_ceil(BATCH));
        let shared = Arc::new(Shared::default());
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let (prefix, answers) = inbox.into_parts();
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(publish_all(
            client,
            prefix,
            to_publish,
            shared.clone(),
            permits.clone(),
        ));
        runtime.spawn(settle_answers(answers, stopped, shared.clone(), permits));
        Publisher {
            outgoing,
            batch: Vec::with_capacity(BATCH),
            shared,
            subjects,
            identity,
            sent: 0,
            _stop: stop,
        }
    }

    /// What was published so far.
    pub fn stats(&self) -> PublishStats {
        PublishStats {
            stored: self.shared.stored.load(Ordering::Acquire),
            duplicates: self.shared.duplicates.load(Ordering::Acquire),
        }
    }

    /// Whether publishing failed (NATS unreachable, the stream full or a publish refused): the
    /// run stopped for the publisher's sake, and trying again later may succeed.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    fn error(&self) -> Option<Error> {
        if !self.failed() {
            return None;
        }
        self.shared.error().clone().map(Error::Publish)
    }

    fn send(&mut self, message: Outgoing) -> Result<(), Error> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        self.batch.push(message);
        self.sent += 1;
        if self.batch.len() >= BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the batch to the publishing task (waiting while `max_in_flight` are on their way).
    fn hand_over(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if self.outgoing.blocking_send(batch).is_err() {
            return Err(self
                .error()
                .unwrap_or_else(|| Error::Publish("the publishing task ended".into())));
        }
        Ok(())
    }

    /// Waits until JetStream has acknowledged everything sent, or a publish failed.
    fn settle_all(&mut self) -> Result<(), Error> {
        self.hand_over()?;
        let shared = &self.shared;
        let mut guard = shared.error();
        shared.waiting_for.store(self.sent.max(1), Ordering::SeqCst);
        let result = loop {
            if let Some(e) = guard.as_ref() {
                break Err(Error::Publish(e.clone()));
            }
            if shared.count.load(Ordering::SeqCst) >= self.sent {
                break Ok(());
            }
            guard = shared
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        shared.waiting_for.store(0, Ordering::SeqCst);
        result
    }

    fn marker(&mut self, kind: &str, body: serde_json::Value) -> Result<(), Error> {
        let acked = self.shared.acked.load(Ordering::Acquire);
        let mut headers = HeaderMap::new();
        headers.insert(KIND_HEADER, kind);
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}-{kind}-{acked}", self.identity).as_str(),
        );
        self.send(Outgoing {
            subject: self.subjects.marker().into(),
            headers,
            payload: Bytes::from(body.to_string()),
            seq: None,
        })?;
        self.settle_all()
    }
}

/// The message of one change: its JSON body (as `watch --format json` prints it) and its
/// headers, to the entry's subject.
pub fn change_message(
    change: &Change,
    subjects: &Subjects,
    identity: &str,
) -> Result<Outgoing, Error> {
    // About what the JSON takes: the values, their names and quotes.
    let mut body = Vec::with_capacity(256 + 2 * change.entry.attributes.as_ber().len());
    syncrepl::output::write_json(&mut body, change)
        .map_err(|e| Error::Publish(format!("encoding change {}: {e}", change.seq)))?;
    let uuid = change.uuid.to_string();
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{identity}-{}", change.seq).as_str(),
    );
    headers.insert(SEQ_HEADER, change.seq.to_string().as_str());
    headers.insert(KIND_HEADER, change.label());
    headers.insert(UUID_HEADER, uuid.as_str());
    if !change.dn().contains(['\r', '\n']) {
        headers.insert(DN_HEADER, change.dn());
    }
    Ok(Outgoing {
        subject: subjects.entry(&uuid).into(),
        headers,
        payload: Bytes::from(body),
        seq: Some(change.seq),
    })
}

impl Consumer for Publisher {
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        let message = change_message(change, &self.subjects, &self.identity)?;
        self.send(message)?;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), ConsumerError> {
        Ok(self.settle_all()?)
    }

    fn acknowledged(&mut self) -> Option<u64> {
        let acked = self.shared.acked.load(Ordering::Acquire);
        (acked > 0).then_some(acked)
    }

    fn on_refresh_done(&mut self, entries: &Entries) -> Result<(), ConsumerError> {
        let body = serde_json::json!({"kind": "refresh_done", "entries": entries.len()});
        Ok(self.marker("refresh_done", body)?)
    }

    fn on_cookie(&mut self, cookie: Option<&Cookie>) -> Result<(), ConsumerError> {
        // The cookie goes only from a value to none: the server asked for a full refresh.
        if cookie.is_none() {
            let body = serde_json::json!({"kind": "refresh_required"});
            self.marker("refresh_required", body)?;
        }
        Ok(())
    }
}
