//! JetStream's answers to publishes, and the window of publishes waiting for theirs.
//!
//! A message published with a reply subject to a stream's subject is answered on that subject
//! with a publish acknowledgement: `{"stream":…,"seq":…}`, `"duplicate":true` when the
//! `Nats-Msg-Id` was seen within the duplicate window, or `{"error":…}` when the stream refused
//! it; a 503 status when no stream listens. The publisher sends every message with a reply
//! subject under one inbox of its own (`INBOX.<index>`) and reads all answers from one
//! subscription, so a publish costs no request future, timer or inbox of its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::{Client, Message, StatusCode, Subscriber};
use serde::Deserialize;

use crate::Error;

/// How long JetStream may take to answer the oldest publish in flight before the run stops (as
/// async-nats's own JetStream context waits for a request's answer).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The publisher's inbox: the reply subjects `PREFIX.<index>` of its publishes, and the one
/// subscription that receives every answer.
#[derive(Debug)]
pub struct Inbox {
    prefix: String,
    answers: Subscriber,
}

impl Inbox {
    /// Subscribes to a new inbox on `client`, before anything is published with a reply there.
    pub async fn subscribe(client: &Client) -> Result<Inbox, Error> {
        let prefix = client.new_inbox();
        let answers = client
            .subscribe(format!("{prefix}.*"))
            .await
            .map_err(|e| Error::Publish(format!("subscribing to the acknowledgements: {e}")))?;
        Ok(Inbox { prefix, answers })
    }

    /// Splits the inbox into its subject prefix and its subscription.
    pub fn into_parts(self) -> (String, Subscriber) {
        (self.prefix, self.answers)
    }
}

/// What JetStream answered to one publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The stream stored the message.
    Stored,
    /// The stream had stored a message with the same `Nats-Msg-Id` within its duplicate
    /// window, and dropped this one: it was published again after a crash.
    Duplicate,
    /// The publish was refused (the stream full, no stream on the subject, …): why.
    Refused(String),
}

/// The publish acknowledgement's fields the publisher reads.
#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    error: Option<jetstream::Error>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    duplicate: bool,
}

/// Reads JetStream's answer from `message`, a message on the publisher's inbox.
pub fn answer(message: &Message) -> Answer {
    if let Some(status) = message.status.filter(|s| *s != StatusCode::OK) {
        return Answer::Refused(if status == StatusCode::NO_RESPONDERS {
            "no stream listens on the subject (503 no responders)".to_owned()
        } else {
            let description = message.description.as_deref().unwrap_or("no description");
            format!("status {status}: {description}")
        });
    }
    match serde_json::from_slice::<PubAck>(&message.payload) {
        Ok(PubAck { error: Some(e), .. }) => Answer::Refused(e.to_string()),
        Ok(PubAck {
            stream: Some(_),
            duplicate,
            ..
        }) => {
            if duplicate {
                Answer::Duplicate
            } else {
                Answer::Stored
            }
        }
        Ok(PubAck { stream: None, .. }) | Err(_) => Answer::Refused(format!(
            "not a publish acknowledgement: {:?}",
            String::from_utf8_lossy(&message.payload)
        )),
    }
}

/// The index a reply subject `PREFIX.<index>` names, if it is one.
pub fn reply_index(subject: &str) -> Option<u64> {
    subject.rsplit_once('.')?.1.parse().ok()
}

/// One publish waiting for its answer, or answered before one sent earlier.
#[derive(Debug)]
struct Slot {
    /// The change's sequence number (none for a marker).
    seq: Option<u64>,
    sent: Instant,
    answer: Option<bool>,
}

/// A publish answered, in the order they were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The change's sequence number (none for a marker).
    pub seq: Option<u64>,
    /// Whether JetStream dropped it as a duplicate.
    pub duplicate: bool,
}

/// An answer that matches no publish waiting for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an acknowledgement for publish {0}, which is not in flight")]
pub struct UnknownPublish(pub u64);

/// The publishes in flight, by index (the number in their reply subject, counted from 0). A
/// publish counts as taken only when it and every one before it is answered, so that what the
/// mirror commits is always a prefix of what was sent.
#[derive(Debug, Default)]
pub struct Window {
    /// The index of the first slot.
    first: u64,
    slots: VecDeque<Slot>,
}

impl Window {
    /// Records a publish of `seq` sent at `now`; returns its index.
    pub fn push(&mut self, seq: Option<u64>, now: Instant) -> u64 {
        self.slots.push_back(Slot {
            seq,
            sent: now,
            answer: None,
        });
        self.first + self.slots.len() as u64 - 1
    }

    /// Records the answer to publish `index`.
    pub fn answer(&mut self, index: u64, duplicate: bool) -> Result<(), UnknownPublish> {
        let slot = index
            .checked_sub(self.first)
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|offset| self.slots.get_mut(offset))
            .filter(|slot| slot.answer.is_none())
            .ok_or(UnknownPublish(index))?;
        slot.answer = Some(duplicate);
        Ok(())
    }

    /// Takes the answered publishes at the front, in order.
    pub fn settle(&mut self) -> impl Iterator<Item = Settled> + '_ {
        std::iter::from_fn(|| {
            let duplicate = self.slots.front()?.answer?;
            let slot = self.slots.pop_front()?;
            self.first += 1;
            Some(Settled {
                seq: slot.seq,
                duplicate,
            })
        })
    }

    /// When the oldest publish still unanswered was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.slots
            .iter()
            .find(|slot| slot.answer.is_none())
            .map(|slot| slot.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(payload: &str, status: Option<StatusCode>) -> Message {
        Message {
            subject: "_INBOX.x.7".into(),
            reply: None,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            headers: None,
            status,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn reads_what_jetstream_answers() {
        let stored = message(r#"{"stream":"S","seq":12}"#, None);
        assert_eq!(answer(&stored), Answer::Stored);
        let duplicate = message(r#"{"stream":"S","seq":12,"duplicate":true}"#, None);
        assert_eq!(answer(&duplicate), Answer::Duplicate);
        let full = message(
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
            None,
        );
        match answer(&full) {
            Answer::Refused(why) => assert!(why.contains("maximum messages exceeded"), "{why}"),
            other => panic!("{other:?}"),
        }
        let nobody = message("", Some(StatusCode::NO_RESPONDERS));
        assert!(matches!(answer(&nobody), Answer::Refused(why) if why.contains("503")));
        for junk in ["", "{}", "[1]", r#"{"seq":3}"#, "\u{0}"] {
            assert!(
                matches!(answer(&message(junk, None)), Answer::Refused(_)),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn reply_subjects_name_their_index() {
        assert_eq!(reply_index("_INBOX.abc.42"), Some(42));
        assert_eq!(reply_index("_INBOX.abc.x"), None);
        assert_eq!(reply_index("nodot"), None);
    }

    #[test]
    fn settles_in_order_whatever_order_the_answers_come_in() {
        let now = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.push(Some(1), now), 0);
        assert_eq!(window.push(None, now), 1);
        assert_eq!(window.push(Some(2), now), 2);
        window.answer(2, true).expect("in flight");
        assert_eq!(window.settle().count(), 0, "publish 0 is not answered yet");
        window.answer(0, false).expect("in flight");
        let settled: Vec<_> = window.settle().collect();
        assert_eq!(
            settled,
            [Settled {
                seq: Some(1),
                duplicate: false
            }]
        );
        assert_eq!(window.oldest(), Some(now));
        window.answer(1, false).expect("in flight");
        let settled: Vec<_> = window.settle().collect();
        assert_eq!(settled.len(), 2);
        assert_eq!(
            settled[1],
            Settled {
                seq: Some(2),
                duplicate: true
            }
        );
        assert_eq!(window.oldest(), None);
        assert_eq!(window.push(Some(3), now), 3);
    }

    #[test]
    fn refuses_answers_to_nothing_in_flight() {
        let mut window = Window::default();
        assert_eq!(window.answer(0, false), Err(UnknownPublish(0)));
        window.push(Some(1), Instant::now());
        window.answer(0, false).expect("in flight");
        assert_eq!(window.answer(0, false), Err(UnknownPublish(0)), "twice");
        assert_eq!(window.settle().count(), 1);
        assert_eq!(window.answer(0, false), Err(UnknownPublish(0)), "settled");
        assert_eq!(
            window.answer(u64::MAX, false),
            Err(UnknownPublish(u64::MAX))
        );
    }
}
