//! The consumer's LDAP session: message ids, requests in flight, the sync search and its stages.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::dirsync::{AdOutcome, AdRequest, AdSync, Dialect};
use crate::entry::SyncEntry;
use crate::error::{Error, Violation};
use crate::event::{BindResult, Event, RefreshPhase};
use crate::frame::{message_length, Frame};
use crate::message::{decode_message, ServerMessage, ServerOp};
use crate::request::{self, SyncRequest, CANCEL_OID, NOTICE_OF_DISCONNECTION_OID};
use crate::root_dse::RootDseRead;
use crate::sync::{
    self, SyncDoneValue, SyncIdSetValue, SyncInfoValue, SYNC_DONE_OID, SYNC_INFO_OID,
    SYNC_STATE_OID,
};
use crate::types::{Cookie, EntryUuid, MessageId, ResultCode, SyncMode, SyncState};

/// Limits and timeouts of a [`Session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The largest message accepted from the server, header included; larger ones are refused
    /// with [`Error::MessageTooLarge`] as soon as their length is known. 16 MiB by default.
    pub max_message_size: usize,
    /// How long a bind, StartTLS or Who am I? may wait for its response; `None` waits forever.
    pub request_timeout: Option<Duration>,
    /// How long a cancelled search may take to end before it is abandoned and the session unbound.
    pub cancel_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_message_size: 16 << 20,
            request_timeout: Some(Duration::from_secs(30)),
            cancel_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingKind {
    Bind,
    StartTls,
    WhoAmI,
    Cancel,
}

impl PendingKind {
    fn name(self) -> &'static str {
        match self {
            PendingKind::Bind => "bind",
            PendingKind::StartTls => "StartTLS",
            PendingKind::WhoAmI => "Who am I?",
            PendingKind::Cancel => "Cancel",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: MessageId,
    kind: PendingKind,
    deadline: Option<Instant>,
}

/// The stage a sync search is in (RFC 4533 §3.3, §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Refreshing: entries may be present, added, modified or deleted.
    Refresh,
    /// Persisting (refreshAndPersist after refreshDone): changes stream as they happen.
    Persist,
}

#[derive(Debug, Clone, Copy)]
struct SyncSearch {
    id: MessageId,
    mode: SyncMode,
    stage: Stage,
    cancel_deadline: Option<Instant>,
}

/// The next message id after `next` (RFC 4511 §4.1.1.1: positive, below 2^31), advancing it.
fn allocate(next: &mut MessageId) -> MessageId {
    let id = *next;
    *next = if id >= i32::MAX as u32 { 1 } else { id + 1 };
    id
}

/// Responses to abandoned searches may still be in flight; they are dropped, up to this many ids.
const MAX_ABANDONED: usize = 16;

/// Whether a session can still be used (rustls keeps the same: a state or the error that ended
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Requests may be sent and input read.
    Open,
    /// Unbound or told of disconnection: queued bytes may still be sent, nothing else.
    Closed,
    /// A fatal error ended it; every call returns it again.
    Failed(Error),
}

/// A sans-IO LDAP session that runs one RFC 4533 sync search: bytes in, events and bytes out.
///
/// The session never touches a socket or a clock. The caller:
///
/// 1. issues commands — [`bind_simple`](Session::bind_simple), [`bind_sasl`](Session::bind_sasl),
///    [`start_tls`](Session::start_tls), [`who_am_i`](Session::who_am_i),
///    [`start_sync`](Session::start_sync), [`cancel`](Session::cancel),
///    [`abandon`](Session::abandon), [`unbind`](Session::unbind) — each queues a request;
/// 2. after every command and every input, drains [`poll_transmit`](Session::poll_transmit) into the
///    connection and [`poll_event`](Session::poll_event) until it returns `None`;
/// 3. feeds whatever the server sent to [`handle_input`](Session::handle_input), in any chunking;
/// 4. waits no longer than [`poll_timeout`](Session::poll_timeout) and then calls
///    [`handle_timeout`](Session::handle_timeout). A spurious or late call does nothing harmful.
///
/// A bind and a StartTLS must complete before anything else is sent (RFC 4511 §4.2.1, §4.14.1): the
/// commands return [`Error::Busy`] meanwhile. After [`Event::TlsReady`] the caller wraps the
/// connection in TLS and carries the same session's bytes through it.
///
/// When the server breaks the protocol, or a request times out, the session fails for good: the
/// fatal error is returned by the call that found it ([`handle_input`](Session::handle_input) or
/// [`handle_timeout`](Session::handle_timeout)) — the one way to learn of it — every later call
/// returns the same error, and events and bytes already queued can still be drained.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use std::time::Instant;
/// use syncrepl_proto::{Event, Session, SessionConfig, SyncMode, SyncRequest};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut stream = TcpStream::connect("127.0.0.1:389")?;
/// let mut session = Session::new(SessionConfig::default());
/// session.bind_simple("cn=reader,dc=example,dc=com", b"secret", Instant::now())?;
/// session.start_sync(&SyncRequest::new("dc=example,dc=com", SyncMode::RefreshOnly))?;
/// let (mut out, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
/// loop {
///     if session.poll_transmit(&mut out) > 0 {
///         stream.write_all(&out)?;
///         out.clear();
///     }
///     while let Some(event) = session.poll_event() {
///         match event {
///             Event::Entry(entry) => println!("{:?} {} {}", entry.state, entry.entry_uuid, entry.dn),
///             Event::RefreshComplete { cookie, .. } => {
///                 println!("done, cookie {cookie:?}");
///                 return Ok(());
///             }
///             other => println!("{other:?}"),
///         }
///     }
///     let n = stream.read(&mut buf)?;
///     if n == 0 {
///         return Err("connection closed".into());
///     }
///     session.handle_input(&buf[..n])?;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    next_id: MessageId,
    inbuf: BytesMut,
    outbuf: Vec<u8>,
    events: VecDeque<Event>,
    pending: Vec<Pending>,
    search: Option<SyncSearch>,
    ad: Option<AdSync>,
    root_dse: Option<RootDseRead>,
    abandoned: VecDeque<MessageId>,
}

impl Session {
    /// A new session on a freshly opened connection.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::Open,
            next_id: 1,
            inbuf: BytesMut::new(),
            outbuf: Vec::new(),
            events: VecDeque::new(),
            pending: Vec::new(),
            search: None,
            ad: None,
            root_dse: None,
            abandoned: VecDeque::new(),
        }
    }

    /// Feeds bytes received from the server. Complete messages are decoded at once and their events
    /// queued; a partial message waits for more bytes. A broken rule of the protocol is returned,
    /// and ends the session.
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), Error> {
        self.check_failed()?;
        if self.is_closed() {
            return Ok(());
        }
        while !data.is_empty() {
            let room = self.config.max_message_size.max(4096);
            let take = data.len().min(room);
            self.inbuf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Err(e) = self.process_frames() {
                return Err(self.fail(e));
            }
            if self.is_closed() {
                break;
            }
        }
        Ok(())
    }

    /// Checks the clock against the deadlines of requests in flight. Does nothing before the
    /// earliest deadline, so spurious or repeated calls are harmless. A request that timed out is
    /// returned as [`Error::Timeout`], and ends the session.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_failed()?;
        if self.is_closed() {
            return Ok(());
        }
        if let Some(search) = self.search {
            if search.cancel_deadline.is_some_and(|d| d <= now) {
                self.abandon_search(search.id);
                self.queue_unbind();
                self.events.push_back(Event::CancelTimedOut);
                return Ok(());
            }
        }
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| p.deadline.is_some_and(|d| d <= now))
        {
            let error = Error::Timeout {
                operation: p.kind.name(),
            };
            return Err(self.fail(error));
        }
        Ok(())
    }

    /// The next deadline, if any request in flight has one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let pending = self.pending.iter().filter_map(|p| p.deadline);
        let cancel = self.search.and_then(|s| s.cancel_deadline);
        pending.chain(cancel).min()
    }

    /// Appends the bytes queued for the server to `out` and returns how many there were.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.outbuf.len();
        out.append(&mut self.outbuf);
        n
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the session is over: unbound, told of disconnection, or failed. Queued bytes may
    /// still need to be sent.
    pub fn is_closed(&self) -> bool {
        self.state != State::Open
    }

    /// The stage of the sync search, if one is running.
    pub fn sync_stage(&self) -> Option<Stage> {
        self.search.map(|s| s.stage).or_else(|| {
            self.ad.as_ref().map(|ad| {
                if ad.persisting() {
                    Stage::Persist
                } else {
                    Stage::Refresh
                }
            })
        })
    }

    /// The message id of the running sync search (for Active Directory: the DirSync pass in
    /// flight, else the change-notification search).
    pub fn sync_message_id(&self) -> Option<MessageId> {
        self.search
            .map(|s| s.id)
            .or_else(|| self.ad.as_ref().and_then(|ad| ad.searches().next()))
    }

    /// Reads the root DSE (RFC 4512 §5.1), answered by [`Event::RootDse`]: which controls the
    /// server offers (RFC 4533's or DirSync) and its naming contexts.
    pub fn read_root_dse(&mut self) -> Result<MessageId, Error> {
        self.check_ready("read the root DSE")?;
        if self.root_dse.is_some() {
            return Err(Error::InvalidState {
                operation: "read the root DSE",
                reason: "a root DSE read is already running",
            });
        }
        let id = self.allocate_id();
        crate::root_dse::root_dse_search(&mut self.outbuf, id)?;
        self.root_dse = Some(RootDseRead::new(id));
        Ok(id)
    }

    /// Sends a simple bind; an empty DN and password bind anonymously (RFC 4513 §5.1).
    pub fn bind_simple(
        &mut self,
        dn: &str,
        password: &[u8],
        now: Instant,
    ) -> Result<MessageId, Error> {
        self.check_exclusive("bind")?;
        let id = self.allocate_id();
        request::bind_simple(&mut self.outbuf, id, dn, password)?;
        self.track(id, PendingKind::Bind, now);
        Ok(id)
    }

    /// Sends a SASL bind, e.g. `EXTERNAL` over ldapi:// or TLS with a client certificate
    /// (RFC 4513 §5.2.3).
    pub fn bind_sasl(
        &mut self,
        mechanism: &str,
        credentials: Option<&[u8]>,
        now: Instant,
    ) -> Result<MessageId, Error> {
        self.check_exclusive("bind")?;
        let id = self.allocate_id();
        request::bind_sasl(&mut self.outbuf, id, mechanism, credentials)?;
        self.track(id, PendingKind::Bind, now);
        Ok(id)
    }

    /// Sends StartTLS (RFC 4511 §4.14). Wait for [`Event::TlsReady`] before anything else.
    pub fn start_tls(&mut self, now: Instant) -> Result<MessageId, Error> {
        self.check_exclusive("StartTLS")?;
        let id = self.allocate_id();
        request::extended(&mut self.outbuf, id, request::START_TLS_OID, None)?;
        self.track(id, PendingKind::StartTls, now);
        Ok(id)
    }

    /// Sends Who am I? (RFC 4532), answered by [`Event::WhoAmI`].
    pub fn who_am_i(&mut self, now: Instant) -> Result<MessageId, Error> {
        self.check_ready("Who am I?")?;
        let id = self.allocate_id();
        request::extended(&mut self.outbuf, id, request::WHO_AM_I_OID, None)?;
        self.track(id, PendingKind::WhoAmI, now);
        Ok(id)
    }

    /// Starts the sync search (RFC 4533 §3.1). One sync search runs at a time.
    ///
    /// With [`Dialect::ActiveDirectory`] it is a sync over DirSync instead (MS-ADTS
    /// §3.1.1.3.4.1.3): in refreshAndPersist a change-notification search over the naming context
    /// goes out first, then the first DirSync pass, whose id is returned. Each pass ends with the
    /// cookie of the next ([`Event::RefreshComplete`] for the first, [`Event::NewCookie`] later);
    /// a notification starts the next pass, and notifications during a pass fold into one more.
    /// A reloadHint sends no cookie: DirSync's reload is a full pass.
    pub fn start_sync(&mut self, request: &SyncRequest) -> Result<MessageId, Error> {
        self.check_ready("start a sync search")?;
        if self.search.is_some() || self.ad.is_some() {
            return Err(Error::InvalidState {
                operation: "start a sync search",
                reason: "a sync search is already running",
            });
        }
        if let Dialect::ActiveDirectory {
            naming_context,
            flags,
        } = &request.dialect
        {
            crate::filter::check_filter(&request.filter)?;
            let ad = AdRequest {
                naming_context: naming_context.clone(),
                flags: *flags,
                attributes: crate::dirsync::dirsync_attributes(
                    &request.attributes,
                    &request.filter,
                ),
                mode: request.mode,
            };
            let cookie = if request.reload_hint {
                None
            } else {
                request.cookie.clone()
            };
            let next_id = &mut self.next_id;
            let sync = AdSync::start(ad, cookie, &mut self.outbuf, || allocate(next_id))?;
            let id = sync
                .searches()
                .next()
                .expect("AdSync::start sends the first pass");
            self.ad = Some(sync);
            return Ok(id);
        }
        let id = self.allocate_id();
        request::sync_search(&mut self.outbuf, id, request)?;
        self.search = Some(SyncSearch {
            id,
            mode: request.mode,
            stage: Stage::Refresh,
            cancel_deadline: None,
        });
        Ok(id)
    }

    /// Asks the server to end the sync search (Cancel, RFC 3909), the clean way to leave the persist
    /// stage. The search then ends with [`Event::Cancelled`]; if it has not ended after the cancel
    /// timeout, it is abandoned and the session unbound ([`Event::CancelTimedOut`]).
    pub fn cancel(&mut self, now: Instant) -> Result<MessageId, Error> {
        self.check_ready("cancel")?;
        if let Some(ad) = self.ad.take() {
            // Active Directory has no Cancel: abandoning the notification search and the pass is
            // how a DirSync sync ends, at once.
            let last = self.abandon_ad(&ad);
            self.events.push_back(Event::Cancelled);
            return Ok(last);
        }
        let Some(search) = self.search else {
            return Err(Error::InvalidState {
                operation: "cancel",
                reason: "no sync search is running",
            });
        };
        if search.cancel_deadline.is_some() {
            return Err(Error::InvalidState {
                operation: "cancel",
                reason: "the sync search is already being cancelled",
            });
        }
        let id = self.allocate_id();
        let value = request::cancel_value(search.id);
        request::extended(&mut self.outbuf, id, CANCEL_OID, Some(value))?;
        self.pending.push(Pending {
            id,
            kind: PendingKind::Cancel,
            deadline: None,
        });
        self.search = Some(SyncSearch {
            cancel_deadline: Some(now + self.config.cancel_timeout),
            ..search
        });
        Ok(id)
    }

    /// Abandons the sync search at once (RFC 4511 §4.11): no further event comes from it, and
    /// messages the server had already sent for it are dropped.
    pub fn abandon(&mut self) -> Result<(), Error> {
        self.check_ready("abandon")?;
        if let Some(ad) = self.ad.take() {
            self.abandon_ad(&ad);
            return Ok(());
        }
        let Some(search) = self.search else {
            return Err(Error::InvalidState {
                operation: "abandon",
                reason: "no sync search is running",
            });
        };
        self.abandon_search(search.id);
        Ok(())
    }

    /// Queues an unbind (RFC 4511 §4.3) and closes the session; send the queued bytes, then close
    /// the connection.
    pub fn unbind(&mut self) -> Result<(), Error> {
        self.check_failed()?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.queue_unbind();
        Ok(())
    }

    fn queue_unbind(&mut self) {
        let id = self.allocate_id();
        // Encoding an unbind cannot fail: it has no variable parts.
        let _ = request::unbind(&mut self.outbuf, id);
        self.state = State::Closed;
        self.pending.clear();
        self.search = None;
        self.ad = None;
        self.root_dse = None;
    }

    /// Abandons every search of a DirSync sync; the id of the last abandon request.
    fn abandon_ad(&mut self, ad: &AdSync) -> MessageId {
        let mut last = 0;
        for id in ad.searches().collect::<Vec<_>>() {
            last = self.allocate_id();
            // Encoding an abandon cannot fail: it is two integers.
            let _ = request::abandon(&mut self.outbuf, last, id);
            self.remember_abandoned(id);
        }
        last
    }

    fn abandon_search(&mut self, search_id: MessageId) {
        let id = self.allocate_id();
        // Encoding an abandon cannot fail: it is two integers.
        let _ = request::abandon(&mut self.outbuf, id, search_id);
        self.search = None;
        self.remember_abandoned(search_id);
    }

    /// Notes a request whose responses may still arrive and are to be dropped.
    fn remember_abandoned(&mut self, id: MessageId) {
        if self.abandoned.len() == MAX_ABANDONED {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back(id);
    }

    fn allocate_id(&mut self) -> MessageId {
        allocate(&mut self.next_id)
    }

    fn track(&mut self, id: MessageId, kind: PendingKind, now: Instant) {
        let deadline = self.config.request_timeout.map(|t| now + t);
        self.pending.push(Pending { id, kind, deadline });
    }

    fn check_failed(&self) -> Result<(), Error> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Open | State::Closed => Ok(()),
        }
    }

    /// Checks that nothing forbids sending a new request now.
    fn check_ready(&self, operation: &'static str) -> Result<(), Error> {
        self.check_failed()?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| matches!(p.kind, PendingKind::Bind | PendingKind::StartTls))
        {
            return Err(Error::Busy {
                operation,
                pending: p.kind.name(),
            });
        }
        Ok(())
    }

    /// Like [`check_ready`](Self::check_ready), and also requires that nothing else is in flight:
    /// a bind or StartTLS must be the only outstanding operation.
    fn check_exclusive(&self, operation: &'static str) -> Result<(), Error> {
        self.check_ready(operation)?;
        if let Some(p) = self.pending.first() {
            return Err(Error::Busy {
                operation,
                pending: p.kind.name(),
            });
        }
        if self.search.is_some() || self.ad.is_some() {
            return Err(Error::Busy {
                operation,
                pending: "the sync search",
            });
        }
        Ok(())
    }

    fn fail(&mut self, error: Error) -> Error {
        if let State::Failed(first) = &self.state {
            return first.clone();
        }
        self.state = State::Failed(error.clone());
        error
    }

    fn process_frames(&mut self) -> Result<(), Error> {
        loop {
            let total = match message_length(&self.inbuf, self.config.max_message_size)? {
                Frame::Complete(total) => total,
                Frame::Partial(Some(total)) => {
                    self.inbuf.reserve(total.saturating_sub(self.inbuf.len()));
                    return Ok(());
                }
                Frame::Partial(None) => return Ok(()),
            };
            let frame = self.inbuf.split_to(total).freeze();
            let message = decode_message(frame)?;
            self.dispatch(message)?;
            if self.is_closed() {
                return Ok(());
            }
        }
    }

    fn dispatch(&mut self, message: ServerMessage) -> Result<(), Error> {
        if let ServerOp::Other(tag) = message.op {
            return Err(Violation::UnexpectedOperation { tag }.into());
        }
        if message.id == 0 {
            return self.unsolicited(message);
        }
        if let Some(search) = self.search.filter(|s| s.id == message.id) {
            return self.search_message(search, message);
        }
        if self.ad.as_ref().is_some_and(|ad| ad.owns(message.id)) {
            return self.ad_message(message);
        }
        if let Some(read) = self.root_dse.as_mut().filter(|r| r.id == message.id) {
            if let Some(event) = read.message(message)? {
                self.root_dse = None;
                self.events.push_back(event);
            }
            return Ok(());
        }
        if let Some(i) = self.pending.iter().position(|p| p.id == message.id) {
            let pending = self.pending.remove(i);
            return self.response(pending, message);
        }
        if self.abandoned.contains(&message.id) {
            return Ok(());
        }
        Err(Violation::UnknownMessageId { id: message.id }.into())
    }

    fn unsolicited(&mut self, message: ServerMessage) -> Result<(), Error> {
        let ServerOp::Extended { result, name, .. } = message.op else {
            return Err(Violation::UnexpectedResponse {
                id: 0,
                request: "unsolicited notification",
                found: message.op.name(),
            }
            .into());
        };
        if name.as_deref() == Some(NOTICE_OF_DISCONNECTION_OID) {
            self.events.push_back(Event::Disconnect(result));
            self.state = State::Closed;
            self.pending.clear();
            self.search = None;
            self.ad = None;
            self.root_dse = None;
        } else {
            self.events.push_back(Event::Unsolicited { name, result });
        }
        Ok(())
    }

    fn response(&mut self, pending: Pending, message: ServerMessage) -> Result<(), Error> {
        let unexpected = |found| Violation::UnexpectedResponse {
            id: message.id,
            request: pending.kind.name(),
            found,
        };
        match (pending.kind, message.op) {
            (
                PendingKind::Bind,
                ServerOp::Bind {
                    result,
                    server_sasl_creds,
                },
            ) => {
                self.events.push_back(Event::BindResult(BindResult {
                    result,
                    server_sasl_creds,
                }));
            }
            (PendingKind::StartTls, ServerOp::Extended { result, .. }) => {
                if result.is_success() {
                    if !self.inbuf.is_empty() {
                        return Err(Violation::DataAfterStartTls.into());
                    }
                    self.events.push_back(Event::TlsReady);
                } else {
                    self.events.push_back(Event::StartTlsRefused(result));
                }
            }
            (PendingKind::WhoAmI, ServerOp::Extended { result, value, .. }) => {
                let authz_id = if result.is_success() {
                    let raw = value.unwrap_or_default();
                    Some(String::from_utf8(raw.to_vec()).map_err(|_| Violation::BadWhoAmI)?)
                } else {
                    None
                };
                self.events.push_back(Event::WhoAmI { result, authz_id });
            }
            (PendingKind::Cancel, ServerOp::Extended { result, .. }) => {
                if !matches!(result.code, ResultCode::SUCCESS | ResultCode::CANCELED) {
                    if let Some(search) = self.search.as_mut() {
                        search.cancel_deadline = None;
                    }
                    self.events.push_back(Event::CancelFailed(result));
                }
            }
            (_, op) => return Err(unexpected(op.name()).into()),
        }
        Ok(())
    }

    fn search_message(&mut self, search: SyncSearch, message: ServerMessage) -> Result<(), Error> {
        let controls = message.sync_controls(SYNC_STATE_OID.as_bytes(), SYNC_DONE_OID.as_bytes());
        let ServerMessage { id, op, frame, .. } = message;
        match op {
            ServerOp::SearchEntry { dn, attributes } => {
                let (1, Some(value)) = (controls.state_count, controls.state) else {
                    // One control without a value counts as none.
                    let count = match controls.state_count {
                        1 => 0,
                        n => n,
                    };
                    return Err(Violation::SyncStateControlCount { dn, count }.into());
                };
                let fields = sync::read_sync_state(&frame, value).map_err(|e| match e {
                    sync::SyncStateError::Decode(d) => Error::Decode(d),
                    sync::SyncStateError::Violation(v) => Error::Protocol(v),
                })?;
                if search.stage == Stage::Persist && fields.state == SyncState::Present {
                    return Err(Violation::PresentInPersist { dn }.into());
                }
                self.events.push_back(Event::Entry(SyncEntry {
                    state: fields.state,
                    entry_uuid: fields.entry_uuid,
                    dn,
                    attributes,
                    cookie: fields.cookie,
                }));
            }
            ServerOp::Intermediate { name, value } => {
                if name.as_deref() != Some(SYNC_INFO_OID) {
                    return Err(Violation::UnknownIntermediate { name }.into());
                }
                let value = value.unwrap_or_default();
                let info: SyncInfoValue = sync::decode(&value, "syncInfoValue")?;
                self.sync_info(search, info)?;
            }
            ServerOp::SearchReference(uris) => {
                self.events.push_back(Event::Referral { uris });
            }
            ServerOp::Extended { result, .. } if !result.is_success() => {
                // Samba ends a search whose critical control it does not know (the Sync Request
                // Control) with an ExtendedResponse instead of a SearchResultDone.
                self.search = None;
                self.events.push_back(Event::SearchDone {
                    result,
                    cookie: None,
                });
            }
            ServerOp::SearchDone(result) => {
                self.search = None;
                // The Cancel's own response may still come (slapd ends the search with
                // canceled first, then answers the Cancel): it is expected, and dropped.
                let cancels: Vec<MessageId> = self
                    .pending
                    .iter()
                    .filter(|p| p.kind == PendingKind::Cancel)
                    .map(|p| p.id)
                    .collect();
                self.pending.retain(|p| p.kind != PendingKind::Cancel);
                for id in cancels {
                    self.remember_abandoned(id);
                }
                let done = controls
                    .done
                    .map(|v| {
                        let raw = frame.slice(v.start..v.end);
                        sync::decode::<SyncDoneValue>(&raw, "syncDoneValue")
                    })
                    .transpose()?;
                let refresh_deletes = done.as_ref().is_some_and(|d| d.refresh_deletes);
                let cookie = done.and_then(|d| d.cookie).map(|c| Cookie(Bytes::from(c)));
                let event = match result.code {
                    ResultCode::SYNC_REFRESH_REQUIRED => Event::RefreshRequired { result, cookie },
                    ResultCode::CANCELED => Event::Cancelled,
                    ResultCode::SUCCESS
                        if search.mode == SyncMode::RefreshOnly
                            && search.stage == Stage::Refresh =>
                    {
                        Event::RefreshComplete {
                            phase: if refresh_deletes {
                                RefreshPhase::Delete
                            } else {
                                RefreshPhase::Present
                            },
                            cookie,
                            persist: false,
                        }
                    }
                    _ => Event::SearchDone { result, cookie },
                };
                self.events.push_back(event);
            }
            other => {
                return Err(Violation::UnexpectedResponse {
                    id,
                    request: "sync search",
                    found: other.name(),
                }
                .into())
            }
        }
        Ok(())
    }

    fn ad_message(&mut self, message: ServerMessage) -> Result<(), Error> {
        let Some(mut ad) = self.ad.take() else {
            return Ok(());
        };
        let next_id = &mut self.next_id;
        let events = &mut self.events;
        let outcome = ad.message(
            message,
            &mut self.outbuf,
            || allocate(next_id),
            |e| events.push_back(e),
        )?;
        match outcome {
            AdOutcome::Continue => self.ad = Some(ad),
            AdOutcome::Ended(event) => {
                // What is still running of the sync (the notification search after a failed
                // pass) is abandoned with it.
                self.abandon_ad(&ad);
                self.events.extend(event);
            }
        }
        Ok(())
    }

    fn sync_info(&mut self, search: SyncSearch, info: SyncInfoValue) -> Result<(), Error> {
        let cookie = |c: Option<rasn::types::OctetString>| c.map(|c| Cookie(Bytes::from(c)));
        let (phase, value) = match info {
            SyncInfoValue::NewCookie(c) => {
                self.events
                    .push_back(Event::NewCookie(Cookie(Bytes::from(c))));
                return Ok(());
            }
            SyncInfoValue::SyncIdSet(SyncIdSetValue {
                cookie: c,
                refresh_deletes,
                sync_uuids,
            }) => {
                if search.stage == Stage::Persist && !refresh_deletes {
                    return Err(Violation::SyncInfoNotAllowed {
                        message: "syncIdSet with refreshDeletes FALSE",
                        stage: "in the persist stage",
                    }
                    .into());
                }
                let uuids = sync_uuids
                    .iter()
                    .map(|u| {
                        EntryUuid::from_slice(u).ok_or(Violation::BadUuidLength { len: u.len() })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.events.push_back(Event::SyncIdSet {
                    uuids,
                    refresh_deletes,
                    cookie: cookie(c),
                });
                return Ok(());
            }
            SyncInfoValue::RefreshDelete(v) => (RefreshPhase::Delete, v),
            SyncInfoValue::RefreshPresent(v) => (RefreshPhase::Present, v),
        };
        if search.stage == Stage::Persist {
            return Err(Violation::SyncInfoNotAllowed {
                message: match phase {
                    RefreshPhase::Present => "refreshPresent",
                    RefreshPhase::Delete => "refreshDelete",
                },
                stage: "in the persist stage",
            }
            .into());
        }
        let cookie = cookie(value.cookie);
        if value.refresh_done && search.mode == SyncMode::RefreshAndPersist {
            self.search = Some(SyncSearch {
                stage: Stage::Persist,
                ..search
            });
            self.events.push_back(Event::RefreshComplete {
                phase,
                cookie,
                persist: true,
            });
        } else {
            self.events
                .push_back(Event::RefreshPhaseDone { phase, cookie });
        }
        Ok(())
    }
}
