//! The sync loop: the runtime feeds the mirror, and the mirror's outbox feeds the consumer.

use std::time::{Duration, Instant};

use syncrepl_mio::{Endpoint, Outcome, StopHandle, SyncOptions, SyncSink};
use syncrepl_proto::{ContentEvent, Cookie, SyncRequest};
use syncrepl_state::{Consumer, DeliveryError, Mirror};

use crate::error::Error;

/// Keeps `mirror` in step with the server of `options` and hands every change to `consumer`,
/// until the refresh is done (refreshOnly), `stop` is used, or an error that retrying cannot fix.
///
/// Changes a previous run logged and the consumer did not acknowledge are handed out first,
/// before connecting, with their original sequence numbers. Then each change reaches the consumer
/// once it is logged: at once in the persist stage (all the changes that arrived together, with
/// one commit), and in batches of [`OpenOptions::batch_bytes`](syncrepl_state::OpenOptions)
/// during a refresh. A consumer error stops the run at once with [`Error::Consumer`]; nothing
/// past the last change it acknowledged is committed.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncrepl::mio::{ConnectOptions, LdapUrl, StopHandle, SyncOptions};
/// use syncrepl::proto::{SyncMode, SyncRequest};
/// use syncrepl::state::{Change, FnConsumer, Mirror, OpenOptions, SearchSpec};
///
/// let url: LdapUrl = "ldap://127.0.0.1/dc=example,dc=com??sub".parse()?;
/// let mut request = SyncRequest::new(url.base.clone(), SyncMode::RefreshAndPersist);
/// request.scope = url.scope;
/// let spec = SearchSpec::from_request(&request);
/// let mut mirror = Mirror::open("state".as_ref(), spec, OpenOptions::default())?;
/// let mut consumer = FnConsumer(|change: &Change| {
///     println!("{} {} {}", change.seq, change.label(), change.dn());
///     Ok::<(), std::io::Error>(())
/// });
/// let options = SyncOptions::new(ConnectOptions::new(url.endpoint), request);
/// syncrepl::run(&options, &mut mirror, &mut consumer, &StopHandle::new())?;
/// # Ok(())
/// # }
/// ```
pub fn run<C: Consumer + ?Sized>(
    options: &SyncOptions,
    mirror: &mut Mirror,
    consumer: &mut C,
    stop: &StopHandle,
) -> Result<Outcome, Error> {
    mirror.deliver(consumer, true)?;
    let mut sink = MirrorSink {
        mirror,
        consumer,
        failed: false,
        staged: Instant::now(),
    };
    let result = syncrepl_mio::run(options, &mut sink, stop);
    match result {
        Ok(outcome) => {
            // A stop between two events may leave changes applied and not yet handed out.
            sink.deliver(true)?;
            Ok(outcome)
        }
        Err(e) => Err(e.into()),
    }
}

/// During a refresh, changes are logged at least this often when the input pauses, so that a slow
/// refresh streams its changes instead of holding a whole batch.
const STAGE_EVERY: Duration = Duration::from_millis(100);
/// How soon to look again whether logged changes became durable, while nothing else happens.
const DURABLE_POLL: Duration = Duration::from_millis(2);

/// The runtime's sink: the mirror applies the content, and its outbox is handed to the consumer.
struct MirrorSink<'a, C: Consumer + ?Sized> {
    mirror: &'a mut Mirror,
    consumer: &'a mut C,
    /// The consumer failed: it is not called again in this run.
    failed: bool,
    /// When changes were last logged during a refresh.
    staged: Instant,
}

impl<C: Consumer + ?Sized> MirrorSink<'_, C> {
    fn deliver(&mut self, wait: bool) -> Result<(), DeliveryError> {
        if self.failed {
            return Ok(());
        }
        match self.mirror.deliver(self.consumer, wait) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failed = matches!(e, DeliveryError::Consumer { .. });
                Err(e)
            }
        }
    }
}

impl<C: Consumer + ?Sized> SyncSink for MirrorSink<'_, C> {
    type Error = DeliveryError;

    fn cookie(&self) -> Option<Cookie> {
        self.mirror.cookie().cloned()
    }

    fn wants_reload(&self) -> bool {
        self.mirror.needs_reload()
    }

    fn on_connected(
        &mut self,
        server: &Endpoint,
        authz_id: Option<&str>,
    ) -> Result<(), DeliveryError> {
        // An URL without credentials, recorded with the next commit for `status`.
        self.mirror.set_server(&server.to_string());
        self.consumer.on_bind(authz_id).map_err(|source| {
            self.failed = true;
            DeliveryError::Consumer { seq: None, source }
        })
    }

    fn on_search_start(&mut self, request: &SyncRequest) -> Result<(), DeliveryError> {
        Ok(self.mirror.begin_refresh(request)?)
    }

    fn on_content(&mut self, event: ContentEvent) -> Result<(), DeliveryError> {
        let complete = matches!(event, ContentEvent::RefreshComplete { .. });
        self.mirror.apply_content(event)?;
        if complete {
            self.deliver(true)?;
        } else if self.mirror.in_refresh() {
            // Batches of a long refresh go out as soon as their background sync is done.
            self.deliver(false)?;
        }
        Ok(())
    }

    fn on_drained(&mut self) -> Result<(), DeliveryError> {
        if !self.mirror.in_refresh() {
            // In the persist stage this is where a burst of changes becomes one commit.
            return self.deliver(true);
        }
        if self.mirror.unlogged() > 0 && self.staged.elapsed() >= STAGE_EVERY {
            self.mirror.stage()?;
            self.staged = Instant::now();
        }
        self.deliver(false)
    }

    fn on_refresh_required(&mut self) -> Result<(), DeliveryError> {
        self.deliver(true)?;
        Ok(self.mirror.refresh_required()?)
    }

    fn on_interrupted(&mut self) -> Result<(), DeliveryError> {
        self.mirror.interrupted()?;
        self.deliver(true)?;
        Ok(())
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let logged_waiting = self.mirror.undelivered() > self.mirror.unlogged() && !self.failed;
        let poll = logged_waiting.then(|| Instant::now() + DURABLE_POLL);
        [self.mirror.sync_due(), poll].into_iter().flatten().min()
    }

    fn on_idle(&mut self) -> Result<(), DeliveryError> {
        if self
            .mirror
            .sync_due()
            .is_some_and(|due| due <= Instant::now())
        {
            self.mirror.sync()?;
        }
        self.deliver(false)
    }
}
