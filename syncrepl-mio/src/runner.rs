//! Keeping a sink in step with the server: connect, sync, reconnect, stop.

use std::borrow::Cow;
use std::time::Instant;

use syncrepl_proto::{
    ContentEvent, Cookie, Dialect, DirSyncFlags, Event, ResultCode, RootDse, Stage, SyncMode,
    SyncRequest,
};

use crate::connection::{ConnectOptions, Connection, Wake};
use crate::error::{Error, RunError};
use crate::retry::RetrySchedule;
use crate::stop::StopHandle;
use crate::url::Endpoint;

/// What the runner feeds: usually a `syncrepl-state` mirror and its consumer (the `syncrepl`
/// facade joins them).
pub trait SyncSink {
    /// The error the sink can fail with; it stops the run (retrying cannot fix a full disk).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The cookie to resume from, if the sink has one.
    fn cookie(&self) -> Option<Cookie>;

    /// Whether the next sync must ask for a full reload (reloadHint), e.g. after
    /// e-syncRefreshRequired.
    fn wants_reload(&self) -> bool {
        false
    }

    /// The connection to `server` is open and bound; `authz_id` is what Who am I? said, if asked.
    fn on_connected(
        &mut self,
        _server: &Endpoint,
        _authz_id: Option<&str>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A sync search is about to start with this request.
    fn on_search_start(&mut self, _request: &SyncRequest) -> Result<(), Self::Error> {
        Ok(())
    }

    /// One content event of the sync search (entries, syncIdSets, phases, cookies).
    fn on_content(&mut self, event: ContentEvent) -> Result<(), Self::Error>;

    /// Every event received so far was handed over and no more input is waiting: the run is
    /// about to block. The moment to hand changes on without delaying any.
    fn on_drained(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The server answered e-syncRefreshRequired: drop the cookie, keep the entries, reload next.
    fn on_refresh_required(&mut self) -> Result<(), Self::Error>;

    /// When the sink wants [`on_idle`](SyncSink::on_idle) called even if nothing arrives (a group
    /// commit waiting for its fsync).
    fn idle_deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline of [`idle_deadline`](SyncSink::idle_deadline) passed.
    fn on_idle(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The search ended early (stop, lost connection, cancel).
    fn on_interrupted(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// What to sync and how to keep at it.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Where and how to connect.
    pub connect: ConnectOptions,
    /// Further servers holding the same content (OpenLDAP multi-provider replication, replicas):
    /// when a server cannot be reached or the connection is lost, the next one in the list (after
    /// `connect.endpoint`) is tried at once, with the same cookie; when every one has failed in
    /// a row, the retry schedule waits before the next round.
    pub failover: Vec<Endpoint>,
    /// The search (base, scope, filter, attributes, mode); its cookie and reloadHint are filled in
    /// from the sink on every connection.
    pub request: SyncRequest,
    /// When to reconnect after a failure that retrying can fix.
    pub retry: RetrySchedule,
    /// On e-syncRefreshRequired, reload at once with reloadHint (keeping the mirror and emitting only
    /// real differences). When false, the run ends with [`Error::RefreshRequired`].
    pub reload_on_refresh_required: bool,
    /// Which protocol to speak; the request's own [`SyncRequest::dialect`] is filled in from it
    /// on every connection.
    pub dialect: DialectChoice,
    /// The DirSync flags, when the dialect is Active Directory's.
    pub dirsync_flags: DirSyncFlags,
}

/// How the runner chooses the protocol of the sync search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialectChoice {
    /// From the root DSE's supportedControl on every connection: RFC 4533 where the server
    /// offers it, else DirSync where the server offers that (Active Directory, Samba).
    Auto,
    /// RFC 4533 without reading the root DSE.
    #[default]
    Rfc4533,
    /// Active Directory's DirSync and change notification, from the naming context that holds
    /// the base (read from the root DSE).
    ActiveDirectory,
}

impl SyncOptions {
    /// Options with slapd's default retry schedule and automatic reloads.
    pub fn new(connect: ConnectOptions, request: SyncRequest) -> SyncOptions {
        SyncOptions {
            connect,
            failover: Vec::new(),
            request,
            retry: RetrySchedule::default(),
            reload_on_refresh_required: true,
            dialect: DialectChoice::default(),
            dirsync_flags: DirSyncFlags::default(),
        }
    }
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// refreshOnly: the refresh completed and was committed.
    RefreshDone,
    /// The stop handle ended the run; the sink holds its last committed state.
    Stopped,
}

/// Runs the sync until it is done (refreshOnly), stopped, or fails with an error that retrying
/// cannot fix. Connection losses, server restarts and notices of disconnection are retried on
/// `options.retry`, resuming from the sink's cookie, on the next server of
/// [`SyncOptions::failover`] if there are several.
pub fn run<S: SyncSink>(
    options: &SyncOptions,
    sink: &mut S,
    stop: &StopHandle,
) -> Result<Outcome, RunError<S::Error>> {
    let servers: Vec<&Endpoint> = std::iter::once(&options.connect.endpoint)
        .chain(&options.failover)
        .collect();
    let mut current = 0;
    let mut attempt = 0u32;
    let mut reloads_in_a_row = 0u32;
    let mut failed_in_a_row = 0;
    loop {
        if stop.is_stopped() {
            return Ok(Outcome::Stopped);
        }
        let mut progressed = false;
        match run_once(options, servers[current], sink, stop, &mut progressed) {
            Ok(outcome) => return Ok(outcome),
            Err(RunError::Runtime(Error::RefreshRequired))
                if options.reload_on_refresh_required =>
            {
                if progressed {
                    reloads_in_a_row = 0;
                }
                reloads_in_a_row += 1;
                if reloads_in_a_row > 2 {
                    return Err(Error::RefreshRequired.into());
                }
                tracing::info!("server requires a full refresh; reloading");
                continue;
            }
            Err(RunError::Runtime(e)) if e.is_retryable() => {
                if progressed {
                    attempt = 0;
                    reloads_in_a_row = 0;
                    failed_in_a_row = 0;
                }
                failed_in_a_row += 1;
                if servers.len() > 1 {
                    let next = (current + 1) % servers.len();
                    tracing::warn!(
                        error = %e,
                        from = %servers[current],
                        to = %servers[next],
                        "server unavailable; switching to the next one"
                    );
                    current = next;
                    if failed_in_a_row < servers.len() {
                        continue;
                    }
                    failed_in_a_row = 0;
                }
                let Some(delay) = options.retry.delay(attempt) else {
                    return Err(e.into());
                };
                attempt += 1;
                tracing::warn!(error = %e, retry_in = ?delay, attempt, "sync interrupted; will retry");
                if stop.sleep(delay) {
                    return Ok(Outcome::Stopped);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn run_once<S: SyncSink>(
    options: &SyncOptions,
    server: &Endpoint,
    sink: &mut S,
    stop: &StopHandle,
    progressed: &mut bool,
) -> Result<Outcome, RunError<S::Error>> {
    let connect = if *server == options.connect.endpoint {
        Cow::Borrowed(&options.connect)
    } else {
        Cow::Owned(ConnectOptions {
            endpoint: server.clone(),
            ..options.connect.clone()
        })
    };
    let mut conn = Connection::open(&connect, stop).inspect_err(|_| {
        stop.set_waker(None);
    })?;
    match conn.security_layer() {
        Some(layer) => tracing::info!(%server, sasl_layer = %layer, "connected"),
        None => tracing::info!(%server, "connected"),
    }
    let mut result = sync_on(&mut conn, server, options, sink, progressed);
    if let Err(e) = &result {
        // What was applied is committed before the next try; a commit that fails is the
        // error to report, not the interruption (which is kept in the log).
        if let Err(commit) = sink.on_interrupted() {
            tracing::warn!(error = %e, "sync interrupted");
            result = Err(RunError::Sink(commit));
        }
    }
    conn.close();
    result
}

fn sync_on<S: SyncSink>(
    conn: &mut Connection,
    server: &Endpoint,
    options: &SyncOptions,
    sink: &mut S,
    progressed: &mut bool,
) -> Result<Outcome, RunError<S::Error>> {
    sink.on_connected(server, conn.authz_id())
        .map_err(RunError::Sink)?;
    let mut request = options.request.clone();
    request.cookie = sink.cookie();
    request.reload_hint = sink.wants_reload();
    request.dialect = choose_dialect(conn, options)?;
    let ad = matches!(request.dialect, Dialect::ActiveDirectory { .. });
    if ad && request.reload_hint {
        // DirSync has no reloadHint: a reload is a pass without a cookie.
        request.cookie = None;
    }
    sink.on_search_start(&request).map_err(RunError::Sink)?;
    conn.session().start_sync(&request)?;
    let mut stopping = false;
    loop {
        match conn.next(sink.idle_deadline())? {
            Wake::Event(event) => match event.into_content() {
                Ok(content) => {
                    *progressed = true;
                    let done = match &content {
                        ContentEvent::RefreshComplete { persist, .. } => {
                            !persist && options.request.mode == SyncMode::RefreshOnly
                        }
                        _ => false,
                    };
                    let cookie = matches!(
                        content,
                        ContentEvent::NewCookie(_) | ContentEvent::RefreshComplete { .. }
                    );
                    sink.on_content(content).map_err(RunError::Sink)?;
                    if ad && cookie && sink.wants_reload() {
                        // An object entered the search with a partial DirSync update: only a
                        // full pass tells its content, and it runs at once.
                        if conn.session().sync_message_id().is_some() {
                            conn.session().abandon()?;
                        }
                        return Err(Error::RefreshRequired.into());
                    }
                    if done {
                        return Ok(Outcome::RefreshDone);
                    }
                }
                Err(Event::Cancelled | Event::CancelTimedOut) => {
                    sink.on_interrupted().map_err(RunError::Sink)?;
                    return Ok(Outcome::Stopped);
                }
                Err(Event::CancelFailed(result)) => {
                    // 389 Directory Server refuses every Cancel: abandoning is the normal way out.
                    tracing::info!(%result, "the server refused Cancel; abandoning the search");
                    if conn.session().sync_message_id().is_some() {
                        conn.session().abandon()?;
                    }
                    sink.on_interrupted().map_err(RunError::Sink)?;
                    return Ok(Outcome::Stopped);
                }
                Err(Event::RefreshRequired { .. }) => {
                    sink.on_refresh_required().map_err(RunError::Sink)?;
                    return Err(Error::RefreshRequired.into());
                }
                Err(Event::SearchDone { result, .. }) => {
                    if stopping {
                        sink.on_interrupted().map_err(RunError::Sink)?;
                        return Ok(Outcome::Stopped);
                    }
                    return Err(RunError::Runtime(match result.code {
                        ResultCode::UNAVAILABLE_CRITICAL_EXTENSION if !ad => {
                            match conn.root_dse() {
                                Ok(dse) if dse.supports_dirsync() => Error::ActiveDirectory(result),
                                _ => Error::NoSyncProvider(result),
                            }
                        }
                        _ => Error::Search(result),
                    }));
                }
                Err(Event::Referral { uris }) => {
                    // RFC 4533 §3.1: a sync search does not follow referrals; the content stays
                    // what this server holds.
                    tracing::info!(
                        ?uris,
                        "the server sent a search continuation reference; not followed"
                    );
                }
                Err(Event::Unsolicited { name, result }) => {
                    tracing::info!(?name, %result, "unsolicited notification");
                }
                Err(other) => {
                    tracing::warn!(event = ?other, "unexpected event during the sync search; ignored");
                }
            },
            Wake::Drained => sink.on_drained().map_err(RunError::Sink)?,
            Wake::Stop => {
                stopping = true;
                match conn.session().sync_stage() {
                    Some(Stage::Persist) => {
                        conn.session().cancel(Instant::now())?;
                    }
                    Some(Stage::Refresh) => {
                        conn.session().abandon()?;
                        sink.on_interrupted().map_err(RunError::Sink)?;
                        return Ok(Outcome::Stopped);
                    }
                    None => return Ok(Outcome::Stopped),
                }
            }
            Wake::Deadline => sink.on_idle().map_err(RunError::Sink)?,
        }
    }
}

/// The dialect of this connection's sync search, from [`SyncOptions::dialect`] and, unless RFC 4533
/// is forced, the root DSE.
fn choose_dialect(conn: &mut Connection, options: &SyncOptions) -> Result<Dialect, Error> {
    let dse = match options.dialect {
        DialectChoice::Rfc4533 => return Ok(Dialect::Rfc4533),
        DialectChoice::ActiveDirectory => conn.root_dse()?,
        DialectChoice::Auto => match conn.root_dse() {
            Ok(dse) => dse,
            // A server that will not show its root DSE to this identity: RFC 4533, and the
            // search says what is wrong if that is not it.
            Err(Error::Search(result)) => {
                tracing::debug!(%result, "the root DSE could not be read; trying RFC 4533");
                return Ok(Dialect::Rfc4533);
            }
            Err(e) => return Err(e),
        },
    };
    let ad = match options.dialect {
        DialectChoice::ActiveDirectory => true,
        _ if dse.supports_rfc4533() => false,
        _ if dse.supports_dirsync() => true,
        // Neither advertised (some servers hide the root DSE): try RFC 4533 and let the search
        // say what is wrong.
        _ if dse.supported_controls.is_empty() => false,
        _ => return Err(Error::NoSyncControl),
    };
    if !ad {
        return Ok(Dialect::Rfc4533);
    }
    let naming_context = naming_context(&dse, &options.request.base)?;
    tracing::debug!(%naming_context, "Active Directory: DirSync with change notification");
    Ok(Dialect::ActiveDirectory {
        naming_context,
        flags: options.dirsync_flags,
    })
}

fn naming_context(dse: &RootDse, base: &str) -> Result<String, Error> {
    dse.naming_context_of(base)
        .map(str::to_owned)
        .ok_or_else(|| Error::NoNamingContext {
            base: base.to_owned(),
            naming_contexts: dse.naming_contexts.clone(),
        })
}
