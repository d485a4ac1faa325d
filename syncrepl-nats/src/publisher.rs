//! The publisher: a [`Consumer`] of the mirror's change stream that publishes each change to
//! JetStream and takes it only once JetStream has acknowledged it, with a bounded window of
//! publishes in flight instead of one round trip each.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;

use std::future::IntoFuture;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use syncrepl::cli::Format;
use syncrepl::proto::Cookie;
use syncrepl::state::{Change, Entries, Mirror};
use syncrepl::{Consumer, ConsumerError};
use tokio::runtime::Handle;

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

/// A publish in flight: the change it carries (none for a marker) and its acknowledgement.
struct InFlight {
    seq: Option<u64>,
    ack: PublishAckFuture,
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

/// Publishes the change stream to JetStream (see the module documentation).
pub struct Publisher {
    runtime: Handle,
    js: Context,
    subjects: Subjects,
    identity: String,
    window: VecDeque<InFlight>,
    max_in_flight: usize,
    acked: u64,
    stats: PublishStats,
    failed: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("subjects", &self.subjects)
            .field("identity", &self.identity)
            .field("in_flight", &self.window.len())
            .field("acked", &self.acked)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Publisher {
    /// A publisher on `js` (whose client runs on `runtime`), to `subjects`, naming messages
    /// after `identity`; at most `max_in_flight` publishes wait for their acknowledgement.
    pub fn new(
        runtime: Handle,
        js: Context,
        subjects: Subjects,
        identity: String,
        max_in_flight: usize,
    ) -> Publisher {
        Publisher {
            runtime,
            js,
            subjects,
            identity,
            window: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            acked: 0,
            stats: PublishStats::default(),
            failed: false,
        }
    }

    /// What was published so far.
    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Whether publishing failed (NATS unreachable, the stream full or a publish refused): the
    /// run stopped for the publisher's sake, and trying again later may succeed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn send(&mut self, subject: String, message: Publish, seq: Option<u64>) -> Result<(), Error> {
        while self.window.len() >= self.max_in_flight {
            self.settle_oldest()?;
        }
        let sent = self
            .runtime
            .block_on(self.js.send_publish(subject, message));
        let ack = sent.map_err(|e| self.fail(Error::Publish(e.to_string())))?;
        self.window.push_back(InFlight { seq, ack });
        Ok(())
    }

    fn settle_oldest(&mut self) -> Result<(), Error> {
        let Some(in_flight) = self.window.pop_front() else {
            return Ok(());
        };
        let ack = self.runtime.block_on(in_flight.ack.into_future());
        let ack = ack.map_err(|e| self.fail(Error::Publish(e.to_string())))?;
        if ack.duplicate {
            self.stats.duplicates += 1;
        } else {
            self.stats.stored += 1;
        }
        if let Some(seq) = in_flight.seq {
            self.acked = self.acked.max(seq);
        }
        Ok(())
    }

    fn settle_all(&mut self) -> Result<(), Error> {
        while !self.window.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = true;
        // What was sent after the failure may or may not be stored: it is published again.
        self.window.clear();
        e
    }

    fn marker(&mut self, kind: &str, body: serde_json::Value) -> Result<(), Error> {
        let id = format!("{}-{kind}-{}", self.identity, self.acked);
        let message = Publish::build()
            .payload(Bytes::from(body.to_string()))
            .header(KIND_HEADER, kind)
            .message_id(id);
        self.send(self.subjects.marker(), message, None)?;
        self.settle_all()
    }
}

/// The message of one change: its JSON (as `watch --format json` prints it) and its headers.
pub fn change_message(change: &Change, identity: &str) -> Result<Publish, Error> {
    let mut body = Vec::new();
    syncrepl::output::write_change(&mut body, Format::Json, change)
        .map_err(|e| Error::Publish(format!("encoding change {}: {e}", change.seq)))?;
    if body.last() == Some(&b'\n') {
        body.pop();
    }
    let mut headers = HeaderMap::new();
    headers.insert(SEQ_HEADER, change.seq.to_string().as_str());
    headers.insert(KIND_HEADER, change.label());
    headers.insert(UUID_HEADER, change.uuid.to_string().as_str());
    if !change.dn().contains(['\r', '\n']) {
        headers.insert(DN_HEADER, change.dn());
    }
    Ok(Publish::build()
        .payload(Bytes::from(body))
        .headers(headers)
        .message_id(format!("{identity}-{}", change.seq)))
}

impl Consumer for Publisher {
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        let message = change_message(change, &self.identity)?;
        self.send(self.subjects.entry(&change.uuid), message, Some(change.seq))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        Ok(self.settle_all()?)
    }

    fn acknowledged(&mut self) -> Option<u64> {
        (self.acked > 0).then_some(self.acked)
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
