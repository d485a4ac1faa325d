//! The consumer of the change stream: whoever takes the changes (a writer, a broker, a database,
//! a callback) and acknowledges them, which is what lets the cookie move.

use syncrepl_proto::Cookie;

use crate::change::Change;
use crate::entries::Entries;

/// What a consumer fails with: any error, kept as it is and carried to the caller of the run.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Receives the change stream and acknowledges it.
///
/// **A change is acknowledged** when [`Consumer::on_change`] returned `Ok` for it and the
/// [`Consumer::flush`] that follows returned `Ok`. The cookie covering a change is committed only
/// after that, so a consumer that fails (returns `Err`) stops the run with nothing past its last
/// acknowledged change committed, and the next run — in this process or after a crash, a
/// `kill -9` or a power loss (under [`FsyncPolicy::EveryCommit`](crate::FsyncPolicy)) — hands
/// the changes out again from the first unacknowledged one, **with the same sequence numbers and
/// the same content**: a change is logged with its number before it is handed out.
///
/// So delivery is at least once, and duplicates are exact: a consumer that remembers the last
/// number it applied can drop every change at or below it (`seq <= last applied`). Numbers grow
/// by one per change and never repeat; after a crash the numbering of new changes resumes above
/// every number that may have been handed out, so there may be a gap.
pub trait Consumer {
    /// The connection is bound; `authz_id` is what Who am I? said, if it was asked.
    fn on_bind(&mut self, _authz_id: Option<&str>) -> Result<(), ConsumerError> {
        Ok(())
    }

    /// One change. Returning `Ok` takes it; a consumer that only queues it (a broker client
    /// waiting for publish acknowledgements) makes sure of it in [`Consumer::flush`].
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError>;

    /// Called after a batch of changes and before the commit that their acknowledgement allows:
    /// return `Ok` only once every change handed so far is durably taken (written and flushed,
    /// published and confirmed, stored).
    fn flush(&mut self) -> Result<(), ConsumerError> {
        Ok(())
    }

    /// After a failure (of [`Consumer::on_change`] or [`Consumer::flush`]): the highest sequence
    /// number the consumer knows it took for good, if it can tell — a broker client holding some
    /// publish acknowledgements, an iterator whose caller asked past some items. Without it, a
    /// failure on a change counts the changes before it as taken if a [`Consumer::flush`]
    /// succeeds, and a failed flush counts nothing.
    fn acknowledged(&mut self) -> Option<u64> {
        None
    }

    /// A refresh completed and every change of it was acknowledged; the whole mirror can be read.
    /// Its cookie is committed when this returns `Ok`.
    fn on_refresh_done(&mut self, _entries: &Entries) -> Result<(), ConsumerError> {
        Ok(())
    }

    /// The committed cookie changed (`None` after e-syncRefreshRequired).
    fn on_cookie(&mut self, _cookie: Option<&Cookie>) -> Result<(), ConsumerError> {
        Ok(())
    }
}

/// A consumer that takes everything and does nothing with it.
impl Consumer for () {
    fn on_change(&mut self, _: &Change) -> Result<(), ConsumerError> {
        Ok(())
    }
}

impl<C: Consumer + ?Sized> Consumer for &mut C {
    fn on_bind(&mut self, authz_id: Option<&str>) -> Result<(), ConsumerError> {
        (**self).on_bind(authz_id)
    }
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        (**self).on_change(change)
    }
    fn flush(&mut self) -> Result<(), ConsumerError> {
        (**self).flush()
    }
    fn acknowledged(&mut self) -> Option<u64> {
        (**self).acknowledged()
    }
    fn on_refresh_done(&mut self, entries: &Entries) -> Result<(), ConsumerError> {
        (**self).on_refresh_done(entries)
    }
    fn on_cookie(&mut self, cookie: Option<&Cookie>) -> Result<(), ConsumerError> {
        (**self).on_cookie(cookie)
    }
}

/// A [`Consumer`] made of one closure that takes every change; `Ok` acknowledges it.
#[derive(Debug, Clone)]
pub struct FnConsumer<F>(pub F);

impl<F, E> Consumer for FnConsumer<F>
where
    F: FnMut(&Change) -> Result<(), E>,
    E: Into<ConsumerError>,
{
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        (self.0)(change).map_err(Into::into)
    }
}
