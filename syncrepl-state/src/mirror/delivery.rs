//! Handing the outbox to the consumer: log, wait until durable, hand out, flush, acknowledge, and
//! commit what the acknowledgement allows.

use super::Mirror;
use crate::consumer::{Consumer, ConsumerError};
use crate::error::Error;
use crate::store::CommitSync;

/// What [`Mirror::deliver`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Changes handed out and acknowledged.
    pub changes: usize,
    /// A refresh completed and was committed.
    pub refresh_done: bool,
    /// The committed cookie changed.
    pub cookie_changed: bool,
}

/// Why delivering stopped: the mirror failed, or the consumer did.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The state failed (full disk, failed fsync); the mirror refuses further changes.
    #[error(transparent)]
    State(#[from] Error),
    /// The consumer returned an error; nothing past the last change it acknowledged was
    /// committed, and the changes from `seq` on are handed out again by the next delivery.
    #[error("the consumer failed{}: {source}", seq.map(|s| format!(" at change {s}")).unwrap_or_default())]
    Consumer {
        /// The change it failed on, if it failed on one (not in a flush or a notification).
        seq: Option<u64>,
        /// Its error.
        source: ConsumerError,
    },
}

/// A consumer failure outside `on_change` (a flush, a notification).
fn not_on_a_change(source: ConsumerError) -> DeliveryError {
    DeliveryError::Consumer { seq: None, source }
}

impl Mirror {
    /// Hands the consumer every change that is logged and durable and not yet acknowledged, then
    /// commits what its acknowledgement allows: a cookie whose changes are all acknowledged, the
    /// end of a refresh (after [`Consumer::on_refresh_done`]), or the acknowledged number alone.
    ///
    /// With `wait`, changes applied since the last commit are logged first and this waits until
    /// they are durable (the persist stage, the end of a refresh, a stop); without it only what is
    /// already durable goes out (a long refresh, whose batches are synced in the background).
    /// A consumer's error stops delivery at once and is returned as [`DeliveryError::Consumer`];
    /// the mirror stays usable, and the next delivery starts at the change that failed.
    pub fn deliver<C: Consumer + ?Sized>(
        &mut self,
        consumer: &mut C,
        wait: bool,
    ) -> Result<Delivered, DeliveryError> {
        self.check()?;
        if !wait && self.refresh.is_some() && self.outbox.nothing_logged() {
            // Within a refresh, between two batches: nothing to hand out or commit.
            return Ok(Delivered::default());
        }
        if wait {
            if self.outbox.has_fresh() {
                self.guard(|m| m.commit(false, CommitSync::PerPolicy))?;
            }
            if let Some(offset) = self.outbox.last_stage() {
                self.guard(|m| m.store.wait_durable(offset))?;
            }
        }
        let durable = self.guard(|m| m.store.durable_len())?;
        let mut delivered = Delivered::default();
        let mut last_ok = None;
        let mut failure = None;
        for change in self.outbox.ready(durable) {
            match consumer.on_change(change) {
                Ok(()) => {
                    last_ok = Some(change.seq);
                    delivered.changes += 1;
                }
                Err(source) => {
                    failure = Some((change.seq, source));
                    break;
                }
            }
        }
        if let Some((seq, source)) = failure {
            // What the consumer took before the failing change counts once it is flushed, unless
            // it says itself how far it got; the commit that records it keeps the cookie.
            let taken = match consumer.acknowledged() {
                Some(known) => Some(known),
                None => last_ok.filter(|_| consumer.flush().is_ok()),
            };
            self.record_ack(taken, last_ok)?;
            return Err(DeliveryError::Consumer {
                seq: Some(seq),
                source,
            });
        }
        if let Some(last) = last_ok {
            if let Err(source) = consumer.flush() {
                let taken = consumer.acknowledged();
                self.record_ack(taken, last_ok)?;
                return Err(not_on_a_change(source));
            }
            self.outbox.ack(last);
        }
        let settled_ok = self.refresh.is_none()
            && self.outbox.is_empty()
            && self.cookie_seq == self.seq.next
            && (self.refresh_done
                || self.cookie != self.committed.cookie
                || self.server_cookie != self.committed.server_cookie
                || self.needs_reload != self.committed.needs_reload);
        if settled_ok {
            if self.refresh_done {
                consumer
                    .on_refresh_done(&self.entries)
                    .map_err(not_on_a_change)?;
            }
            let cookie_changed = self.cookie != self.committed.cookie;
            self.guard(|m| m.commit(true, CommitSync::Soon))?;
            delivered.refresh_done = std::mem::take(&mut self.refresh_done);
            delivered.cookie_changed = cookie_changed;
            if cookie_changed {
                consumer
                    .on_cookie(self.committed.cookie.as_ref())
                    .map_err(not_on_a_change)?;
            }
        } else if self.outbox.acked() > self.committed.acked && (wait || self.outbox.is_empty()) {
            self.guard(|m| m.commit(false, CommitSync::Soon))?;
        }
        Ok(delivered)
    }

    /// After a consumer failure: acknowledges what it took (at most what it was handed) and
    /// commits that, so that the next run starts after it.
    fn record_ack(&mut self, taken: Option<u64>, handed: Option<u64>) -> Result<(), DeliveryError> {
        let limit = handed.unwrap_or(self.outbox.acked());
        let Some(taken) = taken.map(|t| t.min(limit)) else {
            return Ok(());
        };
        if taken > self.outbox.acked() {
            self.outbox.ack(taken);
            self.guard(|m| m.commit(false, CommitSync::PerPolicy))?;
        }
        Ok(())
    }
}
