//! Feeding a `syncrepl-state` mirror and a handler from the runner.

use syncrepl_proto::{Cookie, Event, SyncRequest};
use syncrepl_state::{Handler, Mirror};

use crate::runner::SyncSink;

/// The usual sink: a [`Mirror`] that applies the events and a [`Handler`] that hears the changes.
pub struct MirrorSink<'a, H: Handler + ?Sized> {
    /// The mirror.
    pub mirror: &'a mut Mirror,
    /// The user's callbacks.
    pub handler: &'a mut H,
    /// The server as it is recorded in the state (an URL without credentials).
    pub server: String,
}

impl<'a, H: Handler + ?Sized> MirrorSink<'a, H> {
    /// A sink applying to `mirror` and calling `handler`.
    pub fn new(mirror: &'a mut Mirror, handler: &'a mut H, server: impl Into<String>) -> Self {
        MirrorSink {
            mirror,
            handler,
            server: server.into(),
        }
    }
}

/// Lets a `&mut H` stand where a `&mut dyn Handler` is needed, whether `H` is sized or not.
struct Forward<'h, H: Handler + ?Sized>(&'h mut H);

impl<H: Handler + ?Sized> Handler for Forward<'_, H> {
    fn on_bind(&mut self, authz_id: Option<&str>) {
        self.0.on_bind(authz_id);
    }
    fn on_add(&mut self, seq: u64, uuid: syncrepl_proto::EntryUuid, entry: &syncrepl_state::Entry) {
        self.0.on_add(seq, uuid, entry);
    }
    fn on_modify(
        &mut self,
        seq: u64,
        uuid: syncrepl_proto::EntryUuid,
        old: &syncrepl_state::Entry,
        new: &syncrepl_state::Entry,
        changes: &[syncrepl_state::AttributeChange],
    ) {
        self.0.on_modify(seq, uuid, old, new, changes);
    }
    fn on_rename(
        &mut self,
        seq: u64,
        uuid: syncrepl_proto::EntryUuid,
        old_dn: &str,
        entry: &syncrepl_state::Entry,
    ) {
        self.0.on_rename(seq, uuid, old_dn, entry);
    }
    fn on_delete(
        &mut self,
        seq: u64,
        uuid: syncrepl_proto::EntryUuid,
        entry: &syncrepl_state::Entry,
    ) {
        self.0.on_delete(seq, uuid, entry);
    }
    fn on_refresh_done(&mut self, entries: &syncrepl_state::Entries) {
        self.0.on_refresh_done(entries);
    }
    fn on_cookie(&mut self, cookie: Option<&Cookie>) {
        self.0.on_cookie(cookie);
    }
}

impl<H: Handler + ?Sized> SyncSink for MirrorSink<'_, H> {
    type Error = syncrepl_state::Error;

    fn cookie(&self) -> Option<Cookie> {
        self.mirror.cookie().cloned()
    }

    fn wants_reload(&self) -> bool {
        self.mirror.needs_reload()
    }

    fn on_connected(&mut self, authz_id: Option<&str>) -> Result<(), Self::Error> {
        self.mirror.set_server(&self.server);
        self.handler.on_bind(authz_id);
        Ok(())
    }

    fn on_search_start(&mut self, request: &SyncRequest) -> Result<(), Self::Error> {
        self.mirror.begin_refresh(request)
    }

    fn on_event(&mut self, event: Event) -> Result<(), Self::Error> {
        self.mirror.apply(event, &mut Forward(&mut *self.handler))
    }

    fn on_refresh_required(&mut self) -> Result<(), Self::Error> {
        self.mirror
            .refresh_required(&mut Forward(&mut *self.handler))
    }

    fn on_interrupted(&mut self) -> Result<(), Self::Error> {
        self.mirror.interrupted()
    }

    fn idle_deadline(&self) -> Option<std::time::Instant> {
        self.mirror.sync_due()
    }

    fn on_idle(&mut self) -> Result<(), Self::Error> {
        self.mirror.sync()
    }
}
