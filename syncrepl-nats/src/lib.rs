//! Fan-out of a syncrepl mirror's change stream through NATS JetStream.
//!
//! The [`Publisher`] is a consumer of the mirror's changes (the delivery contract of
//! `syncrepl-state`): it publishes each change as one JetStream message — the body is the object
//! `syncrepl watch --format json` prints, headers carry the seq, kind, entryUUID and DN — and takes
//! a change only once JetStream has acknowledged it. Every message carries a `Nats-Msg-Id` made of
//! the mirror's identity and the seq, so a change published again after a crash is dropped by the
//! stream's duplicate window: the stream gets each change exactly once.
//!
//! The stream doubles as a compacted copy of the directory: each entry has its own subject
//! (`PREFIX.entry.<entryUUID>`) on which the stream keeps the last message, a delete being a
//! message too (a tombstone), and markers go to `PREFIX.marker`. [`reader::rebuild`] rebuilds the
//! whole content from the stream alone; the [`reader::Reader`] then follows the live changes.
//!
//! Its async runtime (tokio, for `async-nats`) lives in this crate only.

pub mod acks;
pub mod connect;
pub mod publisher;
pub mod reader;
pub mod stream;
pub mod subjects;

pub use connect::NatsArgs;
pub use publisher::{PublishStats, Publisher};
pub use reader::{rebuild, Reader, Rebuilt, Record};
pub use stream::StreamSettings;
pub use subjects::Subjects;

/// What can go wrong between the mirror and JetStream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The NATS options are wrong (a file that cannot be read, a bad prefix).
    #[error("NATS options: {0}")]
    Options(String),
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// Looking up or creating the stream failed.
    #[error("JetStream stream: {0}")]
    Stream(String),
    /// The stream exists with settings that contradict what the publisher needs.
    #[error("the existing stream {name} cannot hold the change stream: {problems}")]
    StreamConflict {
        /// The stream's name.
        name: String,
        /// What contradicts.
        problems: String,
    },
    /// A publish was refused or not acknowledged (NATS gone, the stream full, a timeout).
    #[error("publishing to JetStream: {0}")]
    Publish(String),
    /// The mirror's identity could not be kept in the state directory.
    #[error("the publisher's identity: {0}")]
    Identity(String),
    /// Reading the stream failed.
    #[error("reading the stream: {0}")]
    Read(String),
    /// A message of the stream is not what the publisher writes.
    #[error("a message of the stream is malformed: {0}")]
    BadMessage(String),
}

impl Error {
    /// Whether trying again later may succeed: NATS unreachable, a publish not acknowledged,
    /// a stream that is full; not a stream whose settings contradict, nor bad options.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connect(_) | Error::Stream(_) | Error::Publish(_) | Error::Read(_)
        )
    }
}
