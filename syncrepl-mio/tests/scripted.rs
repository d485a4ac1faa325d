//! The runner's reconnect, stop, refused-Cancel, timeout and Notice of Disconnection paths against
//! an in-process scripted server (see `scripted/mod.rs`): each runs in milliseconds, the same way
//! every time. The tests against a real slapd (`connect.rs`, the facade's) stay; these cover what
//! a real server will not do on demand.

// `mod scripted;` alone is ambiguous here: this file is `tests/scripted.rs` itself.
#[path = "scripted/mod.rs"]
mod scripted;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use scripted::{Kind, Reply, ScriptedServer, Seen, Step, BASE};
use syncrepl_mio::{
    run, ConnectOptions, Credentials, DialectChoice, Error, Outcome, RetrySchedule, RunError,
    StopHandle, SyncOptions, SyncSink,
};
use syncrepl_proto::{ContentEvent, Cookie, ResultCode, SyncMode, SyncRequest};

/// Each test needs milliseconds (the timeout one about 250 ms); the bounds asserted are loose so
/// that a loaded machine passes, yet far below the waits a regression would bring (the 5 s cancel
/// timeout, the 5 s of the default retry schedule, the 30 s default request timeout).
const BOUND: Duration = Duration::from_secs(2);
/// How soon something that should happen at once must happen.
const PROMPT: Duration = Duration::from_secs(1);

/// Called with every content event, e.g. to stop the run or signal the server.
type Hook = Box<dyn FnMut(&ContentEvent)>;

/// Records what the runner hands over and keeps the latest cookie, as a mirror would.
#[derive(Default)]
struct Recorder {
    /// The DNs of the entries, in order.
    entries: Vec<String>,
    cookie: Option<Cookie>,
    /// The cookie of each search the runner started.
    searches: Vec<Option<Cookie>>,
    /// When each connection was ready (bound).
    connected: Vec<Instant>,
    /// When each interruption was reported.
    interrupted: Vec<Instant>,
    refresh_required: usize,
    hook: Option<Hook>,
}

impl Recorder {
    fn with_hook(hook: impl FnMut(&ContentEvent) + 'static) -> Recorder {
        Recorder {
            hook: Some(Box::new(hook)),
            ..Recorder::default()
        }
    }
}

impl SyncSink for Recorder {
    type Error = std::io::Error;

    fn cookie(&self) -> Option<Cookie> {
        self.cookie.clone()
    }

    fn on_connected(
        &mut self,
        _server: &syncrepl_mio::Endpoint,
        _authz_id: Option<&str>,
    ) -> Result<(), Self::Error> {
        self.connected.push(Instant::now());
        Ok(())
    }

    fn on_search_start(&mut self, request: &SyncRequest) -> Result<(), Self::Error> {
        self.searches.push(request.cookie.clone());
        Ok(())
    }

    fn on_content(&mut self, event: ContentEvent) -> Result<(), Self::Error> {
        if let Some(hook) = &mut self.hook {
            hook(&event);
        }
        let cookie = match event {
            ContentEvent::Entry(entry) => {
                self.entries.push(entry.dn);
                entry.cookie
            }
            ContentEvent::DirSyncEntry(entry) => {
                self.entries.push(entry.dn);
                None
            }
            ContentEvent::SyncIdSet { cookie, .. }
            | ContentEvent::RefreshPhaseDone { cookie, .. }
            | ContentEvent::RefreshComplete { cookie, .. } => cookie,
            ContentEvent::NewCookie(cookie) => Some(cookie),
        };
        if cookie.is_some() {
            self.cookie = cookie;
        }
        Ok(())
    }

    fn on_refresh_required(&mut self) -> Result<(), Self::Error> {
        self.refresh_required += 1;
        self.cookie = None;
        Ok(())
    }

    fn on_interrupted(&mut self) -> Result<(), Self::Error> {
        self.interrupted.push(Instant::now());
        Ok(())
    }
}

/// A simple bind (so that each connection has a request to answer), retries 10 ms apart five
/// times, and a request timeout long enough never to fire unless a test wants it to.
fn options(server: &ScriptedServer, mode: SyncMode) -> SyncOptions {
    let mut connect = ConnectOptions::new(server.endpoint());
    connect.credentials = Credentials::Simple {
        dn: format!("cn=reader,{BASE}"),
        password: "secret".into(),
    };
    connect.allow_cleartext_password = true;
    connect.connect_timeout = Duration::from_secs(1);
    connect.request_timeout = Duration::from_secs(2);
    let mut options = SyncOptions::new(connect, SyncRequest::new(BASE, mode));
    options.retry = "0.01 5".parse::<RetrySchedule>().expect("valid schedule");
    options
}

/// The start of every script: the bind, answered, then the sync search.
fn bind_and_search() -> Vec<Step> {
    vec![
        Step::Expect(Kind::Bind),
        Step::send([Reply::BindOk]),
        Step::Expect(Kind::Search),
    ]
}

fn script(steps: impl IntoIterator<Item = Step>) -> Vec<Step> {
    bind_and_search().into_iter().chain(steps).collect()
}

fn dns(ns: &[u8]) -> Vec<String> {
    ns.iter().map(|n| format!("cn={n},{BASE}")).collect()
}

fn cookie(text: &str) -> Option<Cookie> {
    Some(Cookie::from(text.as_bytes()))
}

fn search_cookie(seen: &Seen) -> Option<Vec<u8>> {
    seen.first(Kind::Search)
        .expect("the connection had a search")
        .cookie
        .clone()
}

fn search_id(seen: &Seen) -> u32 {
    seen.first(Kind::Search)
        .expect("the connection had a search")
        .id
}

#[test]
fn reconnects_after_a_lost_connection_with_the_cookie_held() {
    let server = ScriptedServer::start(vec![
        script([
            Step::send([
                Reply::Entry(1, None),
                Reply::Entry(2, None),
                Reply::NewCookie("c1"),
            ]),
            Step::Close,
        ]),
        script([Step::send([
            Reply::Entry(3, None),
            Reply::RefreshDone(Some("c2")),
        ])]),
    ]);
    let options = options(&server, SyncMode::RefreshOnly);
    let mut sink = Recorder::default();
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &StopHandle::new());
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert_eq!(
        outcome.expect("the second connection completes"),
        Outcome::RefreshDone
    );
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert_eq!(seen.len(), 2);
    // The lost connection is still unbound (the session never learnt it was closed).
    assert_eq!(seen[0].kinds(), [Kind::Bind, Kind::Search, Kind::Unbind]);
    assert_eq!(seen[1].kinds(), [Kind::Bind, Kind::Search, Kind::Unbind]);
    assert_eq!(search_cookie(&seen[0]), None);
    assert_eq!(search_cookie(&seen[1]).as_deref(), Some(b"c1".as_slice()));
    assert_eq!(sink.searches, [None, cookie("c1")]);
    assert_eq!(sink.entries, dns(&[1, 2, 3]));
    assert_eq!(sink.cookie, cookie("c2"));
    assert_eq!((sink.connected.len(), sink.interrupted.len()), (2, 1));
    // Progress was made, so the wait is the schedule's first: 10 ms ± 20 %.
    let gap = sink.connected[1] - sink.interrupted[0];
    assert!(gap >= Duration::from_millis(7), "reconnected after {gap:?}");
}

#[test]
fn stop_in_persist_cancels() {
    let (tx, rx) = mpsc::channel();
    let server = ScriptedServer::start(vec![script([
        Step::send([Reply::Entry(1, None), Reply::RefreshDone(Some("c1"))]),
        Step::Expect(Kind::Cancel),
        // The order slapd uses (syncprov ends the search, then cancel.c answers the Cancel), in one
        // segment: the Cancel's late answer is expected, and the session still unbinds.
        Step::send([
            Reply::SearchDone(ResultCode::CANCELED),
            Reply::CancelResult(ResultCode::SUCCESS),
        ]),
    ])]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut sink = Recorder::with_hook(move |event| {
        if matches!(event, ContentEvent::RefreshComplete { persist: true, .. }) {
            handle.stop();
            let _ = tx.send(Instant::now());
        }
    });
    let options = options(&server, SyncMode::RefreshAndPersist);
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &stop);
    let returned = Instant::now();
    let seen = server.finish();
    let stopped_at = rx.try_recv().expect("the hook stopped the run");

    assert_eq!(outcome.expect("a clean stop"), Outcome::Stopped);
    assert!(returned - started < BOUND, "{:?}", returned - started);
    assert!(
        returned - stopped_at < PROMPT,
        "run returned {:?} after stop",
        returned - stopped_at
    );
    assert_eq!(seen.len(), 1);
    let cancel = seen[0].first(Kind::Cancel).expect("a Cancel");
    assert_eq!(cancel.target, Some(search_id(&seen[0])));
    assert_eq!(
        seen[0].kinds(),
        [Kind::Bind, Kind::Search, Kind::Cancel, Kind::Unbind]
    );
    assert_eq!(sink.entries, dns(&[1]));
    assert_eq!(sink.cookie, cookie("c1"));
    assert_eq!(sink.interrupted.len(), 1);
}

#[test]
fn stop_in_persist_with_the_cancel_answered_first() {
    let server = ScriptedServer::start(vec![script([
        Step::send([Reply::RefreshDone(Some("c1"))]),
        Step::Expect(Kind::Cancel),
        Step::send([
            Reply::CancelResult(ResultCode::SUCCESS),
            Reply::SearchDone(ResultCode::CANCELED),
        ]),
    ])]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut sink = Recorder::with_hook(move |_| handle.stop());
    let options = options(&server, SyncMode::RefreshAndPersist);
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &stop);
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert_eq!(outcome.expect("a clean stop"), Outcome::Stopped);
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert_eq!(
        seen[0].kinds(),
        [Kind::Bind, Kind::Search, Kind::Cancel, Kind::Unbind]
    );
}

#[test]
fn refused_cancel_abandons_at_once() {
    let server = ScriptedServer::start(vec![script([
        Step::send([Reply::Entry(1, Some("c1")), Reply::RefreshDone(None)]),
        Step::Expect(Kind::Cancel),
        // 389 Directory Server's answer; the search stays open.
        Step::send([Reply::CancelResult(ResultCode::CANNOT_CANCEL)]),
        Step::Expect(Kind::Abandon),
    ])]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut sink = Recorder::with_hook(move |event| {
        if matches!(event, ContentEvent::RefreshComplete { .. }) {
            handle.stop();
        }
    });
    let options = options(&server, SyncMode::RefreshAndPersist);
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &stop);
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert_eq!(outcome.expect("still a clean stop"), Outcome::Stopped);
    assert_eq!(
        seen[0].kinds(),
        [
            Kind::Bind,
            Kind::Search,
            Kind::Cancel,
            Kind::Abandon,
            Kind::Unbind
        ]
    );
    let abandon = seen[0].first(Kind::Abandon).expect("an Abandon");
    assert_eq!(abandon.target, Some(search_id(&seen[0])));
    // No waiting for the cancel timeout (5 s): the refusal is acted on as soon as it arrives.
    let cancel = seen[0].first(Kind::Cancel).expect("a Cancel");
    assert!(
        abandon.at - cancel.at < PROMPT,
        "{:?}",
        abandon.at - cancel.at
    );
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert_eq!(sink.cookie, cookie("c1"));
    assert_eq!(sink.interrupted.len(), 1);
}

/// A server that ignores the Cancel: the session abandons the search and unbinds once its cancel
/// timeout (shortened to 100 ms here) has passed.
#[test]
fn ignored_cancel_abandons_after_the_cancel_timeout() {
    let server = ScriptedServer::start(vec![script([
        Step::send([Reply::RefreshDone(Some("c1"))]),
        Step::Expect(Kind::Cancel),
        Step::Expect(Kind::Abandon),
    ])]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut sink = Recorder::with_hook(move |_| handle.stop());
    let mut options = options(&server, SyncMode::RefreshAndPersist);
    options.connect.cancel_timeout = Duration::from_millis(100);
    let outcome = run(&options, &mut sink, &stop);
    let seen = server.finish();

    assert_eq!(outcome.expect("a stop all the same"), Outcome::Stopped);
    assert_eq!(
        seen[0].kinds(),
        [
            Kind::Bind,
            Kind::Search,
            Kind::Cancel,
            Kind::Abandon,
            Kind::Unbind
        ]
    );
    let cancel = seen[0].first(Kind::Cancel).expect("a Cancel");
    let abandon = seen[0].first(Kind::Abandon).expect("an Abandon");
    let waited = abandon.at - cancel.at;
    assert!(
        waited >= Duration::from_millis(100) && waited < BOUND,
        "abandoned {waited:?} after the Cancel"
    );
    assert_eq!(sink.interrupted.len(), 1);
}

#[test]
fn stop_during_the_refresh_abandons() {
    let server = ScriptedServer::start(vec![script([
        Step::send([Reply::Entry(1, Some("c1"))]),
        Step::Expect(Kind::Abandon),
    ])]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut sink = Recorder::with_hook(move |_| handle.stop());
    let options = options(&server, SyncMode::RefreshAndPersist);
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &stop);
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert_eq!(outcome.expect("a clean stop"), Outcome::Stopped);
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert_eq!(
        seen[0].kinds(),
        [Kind::Bind, Kind::Search, Kind::Abandon, Kind::Unbind]
    );
    assert_eq!(
        seen[0].first(Kind::Abandon).and_then(|a| a.target),
        Some(search_id(&seen[0]))
    );
    assert_eq!(sink.cookie, cookie("c1"));
}

#[test]
fn a_silent_server_times_out_and_the_schedule_runs_out() {
    // Six connections: the first try and the five retries of "0.01 5"; each bind is never answered.
    let server = ScriptedServer::start((0..6).map(|_| vec![Step::Expect(Kind::Bind)]).collect());
    let mut options = options(&server, SyncMode::RefreshOnly);
    options.connect.request_timeout = Duration::from_millis(30);
    let mut sink = Recorder::default();
    let started = Instant::now();
    let RunError::Runtime(error) =
        run(&options, &mut sink, &StopHandle::new()).expect_err("gives up")
    else {
        panic!("the recorder does not fail");
    };
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert!(error.is_retryable(), "{error}");
    // The session's request deadline fires, not the connection's own `Error::Timeout("bind")`:
    // both come from `request_timeout`, and the session's is taken a moment earlier.
    assert!(
        matches!(
            &error,
            Error::Protocol(syncrepl_proto::Error::Timeout { operation: "bind" })
        ),
        "{error:?}"
    );
    assert_eq!(seen.len(), 6);
    for connection in &seen {
        // The timed-out session is over, so nothing follows the bind, not even an unbind.
        assert_eq!(connection.kinds(), [Kind::Bind]);
    }
    // 6 × 30 ms of timeouts and 5 × 10 ms (± 20 %) of waits: the schedule was followed.
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert!(sink.connected.is_empty());
}

#[test]
fn notice_of_disconnection_in_persist_reconnects_and_resumes() {
    let (persisting, persisting_rx) = mpsc::channel();
    let server = ScriptedServer::start(vec![
        script([
            Step::send([Reply::Entry(1, None), Reply::RefreshDone(Some("c1"))]),
            Step::WaitFor(persisting_rx),
            Step::send([
                Reply::Entry(2, Some("c2")),
                Reply::NoticeOfDisconnection(ResultCode::UNAVAILABLE),
            ]),
            Step::Close,
        ]),
        script([
            Step::send([Reply::Entry(3, None), Reply::RefreshDone(Some("c3"))]),
            Step::Expect(Kind::Cancel),
            Step::send([
                Reply::CancelResult(ResultCode::SUCCESS),
                Reply::SearchDone(ResultCode::CANCELED),
            ]),
        ]),
    ]);
    let stop = StopHandle::new();
    let handle = stop.clone();
    let mut persists = 0;
    let mut sink = Recorder::with_hook(move |event| {
        if matches!(event, ContentEvent::RefreshComplete { persist: true, .. }) {
            persists += 1;
            match persists {
                1 => persisting.send(()).expect("the server waits"),
                _ => handle.stop(),
            }
        }
    });
    let options = options(&server, SyncMode::RefreshAndPersist);
    let started = Instant::now();
    let outcome = run(&options, &mut sink, &stop);
    let elapsed = started.elapsed();
    let seen = server.finish();

    assert_eq!(
        outcome.expect("stopped on the second connection"),
        Outcome::Stopped
    );
    assert!(elapsed < BOUND, "{elapsed:?}");
    assert_eq!(seen.len(), 2);
    // After a Notice of Disconnection the session is closed: no unbind is sent.
    assert_eq!(seen[0].kinds(), [Kind::Bind, Kind::Search]);
    assert_eq!(
        seen[1].kinds(),
        [Kind::Bind, Kind::Search, Kind::Cancel, Kind::Unbind]
    );
    assert_eq!(search_cookie(&seen[1]).as_deref(), Some(b"c2".as_slice()));
    assert_eq!(sink.searches, [None, cookie("c2")]);
    assert_eq!(sink.entries, dns(&[1, 2, 3]));
    assert_eq!(sink.cookie, cookie("c3"));
    assert_eq!(sink.connected.len(), 2);
    assert_eq!(sink.refresh_required, 0);
}

#[test]
fn a_root_dse_the_reader_may_not_see_leaves_rfc4533() {
    let server = ScriptedServer::start(vec![vec![
        Step::Expect(Kind::Bind),
        Step::send([Reply::BindOk]),
        // The root DSE read of the automatic dialect choice, refused.
        Step::Expect(Kind::Search),
        Step::send([Reply::SearchDone(ResultCode::INSUFFICIENT_ACCESS_RIGHTS)]),
        Step::Expect(Kind::Search),
        Step::send([Reply::Entry(1, None), Reply::RefreshDone(Some("c1"))]),
    ]]);
    let mut options = options(&server, SyncMode::RefreshOnly);
    options.dialect = DialectChoice::Auto;
    let mut sink = Recorder::default();
    let outcome = run(&options, &mut sink, &StopHandle::new());
    let seen = server.finish();
    assert_eq!(outcome.expect("refreshes"), Outcome::RefreshDone);
    assert_eq!(
        seen[0].kinds(),
        [Kind::Bind, Kind::Search, Kind::Search, Kind::Unbind]
    );
    assert_eq!(seen[0].requests[1].mode, None, "a plain search first");
    assert!(seen[0].requests[2].mode.is_some(), "then the sync search");
    assert_eq!(sink.entries, dns(&[1]));
}
