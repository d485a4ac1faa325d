//! A scripted LDAP server for the runtime's failure paths, in the manner of quinn-proto's `Pair`:
//! it runs in the test's process on a loopback socket and plays, for each connection in turn, a
//! script of steps built on the encoders of `syncrepl_proto::wire`.
//!
//! A real slapd will not refuse a Cancel, stay silent after a bind or send a Notice of
//! Disconnection on demand; this server does each of those in milliseconds, the same way every
//! time, and records what the client sent so that a test can assert on it.
//!
//! ```text
//! let server = ScriptedServer::start(vec![
//!     vec![Step::Expect(Kind::Bind), Step::send([Reply::BindOk]), Step::Expect(Kind::Search),
//!          Step::send([Reply::Entry(1, Some("c1")), Reply::RefreshDone(Some("c2"))])],
//! ]);
//! // … run the client against server.endpoint() …
//! let seen = server.finish();
//! assert_eq!(seen[0].kinds(), [Kind::Bind, Kind::Search, Kind::Unbind]);
//! ```

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use syncrepl_mio::Endpoint;
use syncrepl_proto::sync::{self, RefreshPhaseValue, RequestMode, SyncInfoValue, SyncRequestValue};
use syncrepl_proto::{
    message_length, wire, AttributeList, Cookie, EntryUuid, Frame, MessageId, ResultCode,
    SyncState, CANCEL_OID, START_TLS_OID, WHO_AM_I_OID,
};

/// How long the server waits for anything (a connection, a request, a signal, the client closing)
/// before it gives up and reports the script as failed: far beyond what any step should take, so
/// that a broken test fails with a message instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// The search base; test entry `n` is `cn=n,dc=example,dc=com`.
pub(crate) const BASE: &str = "dc=example,dc=com";

/// The entryUUID of test entry `n`: sixteen octets of `n`.
pub(crate) fn uuid(n: u8) -> EntryUuid {
    EntryUuid([n; 16])
}

/// Which operation a request is; what [`Step::Expect`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// BindRequest (`0x60`).
    Bind,
    /// SearchRequest (`0x63`).
    Search,
    /// ExtendedRequest Cancel (`0x77`, 1.3.6.1.1.8).
    Cancel,
    /// ExtendedRequest StartTLS.
    StartTls,
    /// ExtendedRequest Who am I?
    WhoAmI,
    /// Another ExtendedRequest.
    Extended,
    /// AbandonRequest (`0x50`).
    Abandon,
    /// UnbindRequest (`0x42`).
    Unbind,
    /// Any other protocolOp.
    Other,
}

/// A request the client sent, as far as the tests care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// Its message id.
    pub(crate) id: MessageId,
    /// Its operation.
    pub(crate) kind: Kind,
    /// Search: the cookie of the Sync Request Control (`None` without one).
    pub(crate) cookie: Option<Vec<u8>>,
    /// Search: the mode of the Sync Request Control (`None` without the control).
    pub(crate) mode: Option<RequestMode>,
    /// Cancel and Abandon: the message id of the operation to end.
    pub(crate) target: Option<MessageId>,
    /// Other operations: the protocolOp tag; extended ones: the requestName.
    pub(crate) detail: String,
    /// When the server read it.
    pub(crate) at: Instant,
}

/// What the server sends; message ids are those of the requests it last read.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A successful BindResponse to the last bind.
    BindOk,
    /// Test entry `n` (`add`) on the last search, with a cookie in its Sync State Control if given.
    Entry(u8, Option<&'static str>),
    /// A Sync Info newcookie on the last search.
    NewCookie(&'static str),
    /// The end of the refresh on the last search: for refreshOnly a SearchResultDone (success) with
    /// a Sync Done Control, for refreshAndPersist a Sync Info refreshPresent with refreshDone TRUE.
    RefreshDone(Option<&'static str>),
    /// A SearchResultDone with this code (no Sync Done Control) on the last search.
    SearchDone(ResultCode),
    /// The ExtendedResponse to the last Cancel, with this code.
    CancelResult(ResultCode),
    /// An unsolicited Notice of Disconnection (message id 0) with this code.
    NoticeOfDisconnection(ResultCode),
}

/// One step of a connection's script.
#[derive(Debug)]
pub(crate) enum Step {
    /// Reads the next request, which must be of this kind.
    Expect(Kind),
    /// Sends these replies in one write (so that the client reads them together).
    Send(Vec<Reply>),
    /// Waits until the test signals on the channel (or drops its sender).
    WaitFor(Receiver<()>),
    /// Closes the server's side (FIN); what the client still sends is recorded.
    Close,
}

impl Step {
    /// [`Step::Send`] from any list of replies.
    pub(crate) fn send(replies: impl IntoIterator<Item = Reply>) -> Step {
        Step::Send(replies.into_iter().collect())
    }
}

/// What the server saw on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Every request, in order, up to the client's closing the connection.
    pub(crate) requests: Vec<Request>,
}

impl Seen {
    /// The kinds of the requests, in order.
    pub(crate) fn kinds(&self) -> Vec<Kind> {
        self.requests.iter().map(|r| r.kind).collect()
    }

    /// The first request of this kind.
    pub(crate) fn first(&self, kind: Kind) -> Option<&Request> {
        self.requests.iter().find(|r| r.kind == kind)
    }
}

/// A server on `127.0.0.1:0` whose thread accepts one connection per script, in order, plays it,
/// then waits for the client to close before accepting the next. After the last script the
/// listener is closed, so a further connection is refused.
#[derive(Debug)]
pub(crate) struct ScriptedServer {
    addr: SocketAddr,
    thread: Option<JoinHandle<(Vec<Seen>, Option<String>)>>,
}

impl ScriptedServer {
    /// Binds the listener and starts playing `scripts`, one per connection.
    pub(crate) fn start(scripts: Vec<Vec<Step>>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
        let addr = listener.local_addr().expect("the listener's address");
        let thread = std::thread::Builder::new()
            .name("scripted-ldap".into())
            .spawn(move || serve(listener, scripts))
            .expect("spawn the server thread");
        ScriptedServer {
            addr,
            thread: Some(thread),
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint::Ldap {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
    }

    /// Waits for every script to be played and returns what each connection saw; panics, with
    /// what was seen so far, if a step failed (an unexpected request, a wait that ran out).
    pub(crate) fn finish(mut self) -> Vec<Seen> {
        let thread = self.thread.take().expect("finish is called once");
        let (seen, error) = thread.join().expect("the server thread does not panic");
        if let Some(error) = error {
            panic!("scripted server: {error}\nseen: {seen:#?}");
        }
        seen
    }
}

fn serve(listener: TcpListener, scripts: Vec<Vec<Step>>) -> (Vec<Seen>, Option<String>) {
    let mut seen = Vec::new();
    for (n, script) in scripts.into_iter().enumerate() {
        let stream = match accept(&listener) {
            Ok(stream) => stream,
            Err(e) => return (seen, Some(format!("connection {n}: {e}"))),
        };
        let mut conn = Conn::new(stream);
        let result = conn.play(script);
        seen.push(Seen {
            requests: conn.requests,
        });
        if let Err(e) = result {
            return (seen, Some(format!("connection {n}: {e}")));
        }
    }
    (seen, None)
}

fn accept(listener: &TcpListener) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("socket: {e}"))?;
                stream
                    .set_read_timeout(Some(PATIENCE))
                    .map_err(|e| format!("socket: {e}"))?;
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("socket: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("the client did not connect within {PATIENCE:?}"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// One connection being played.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Requests read but not yet taken by [`Step::Expect`].
    unread: VecDeque<Request>,
    requests: Vec<Request>,
    eof: bool,
    bind: Option<MessageId>,
    search: Option<(MessageId, Option<RequestMode>)>,
    cancel: Option<MessageId>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            unread: VecDeque::new(),
            requests: Vec::new(),
            eof: false,
            bind: None,
            search: None,
            cancel: None,
        }
    }

    fn play(&mut self, script: Vec<Step>) -> Result<(), String> {
        for step in script {
            match step {
                Step::Expect(kind) => {
                    let request = self.next_request()?.ok_or_else(|| {
                        format!("expected {kind:?}, but the client closed the connection")
                    })?;
                    if request.kind != kind {
                        return Err(format!("expected {kind:?}, got {request:?}"));
                    }
                    match kind {
                        Kind::Bind => self.bind = Some(request.id),
                        Kind::Search => self.search = Some((request.id, request.mode)),
                        Kind::Cancel => self.cancel = Some(request.id),
                        _ => {}
                    }
                }
                Step::Send(replies) => {
                    let mut out = Vec::new();
                    for reply in &replies {
                        out.extend(self.encode(reply)?);
                    }
                    self.stream
                        .write_all(&out)
                        .map_err(|e| format!("sending {replies:?}: {e}"))?;
                }
                Step::WaitFor(signal) => {
                    // A dropped sender counts as the signal: the test has moved on.
                    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        signal.recv_timeout(PATIENCE)
                    {
                        return Err(format!("no signal from the test within {PATIENCE:?}"));
                    }
                }
                Step::Close => {
                    self.stream
                        .shutdown(Shutdown::Write)
                        .map_err(|e| format!("shutdown: {e}"))?;
                }
            }
        }
        // Whatever the script left, the client must end the connection: read (and record) until
        // it does.
        while self.next_request()?.is_some() {}
        Ok(())
    }

    /// The next request, reading the socket as needed; `None` once the client has closed.
    fn next_request(&mut self) -> Result<Option<Request>, String> {
        loop {
            if let Some(request) = self.unread.pop_front() {
                return Ok(Some(request));
            }
            if self.eof {
                return Ok(None);
            }
            self.read_more()?;
        }
    }

    fn read_more(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk) {
            Ok(n) => n,
            // The client may reset rather than close; either way it is gone.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "nothing from the client within {PATIENCE:?} (it neither sent the next \
                     request nor closed the connection)"
                ))
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        if n == 0 {
            self.eof = true;
            if !self.buf.is_empty() {
                return Err(format!(
                    "the client closed in the middle of a message: {:02x?}",
                    self.buf
                ));
            }
            return Ok(());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        loop {
            match message_length(&self.buf, 1 << 20).map_err(|e| format!("framing: {e}"))? {
                Frame::Complete(len) => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    let request = parse_request(&frame).map_err(|e| {
                        format!("cannot read the client's message {frame:02x?}: {e}")
                    })?;
                    self.requests.push(request.clone());
                    self.unread.push_back(request);
                }
                Frame::Partial(_) => return Ok(()),
            }
        }
    }

    fn encode(&self, reply: &Reply) -> Result<Vec<u8>, String> {
        let search = || {
            self.search
                .ok_or_else(|| format!("{reply:?} needs a search, and none was expected yet"))
        };
        let cookie = |c: &Option<&str>| c.map(|c| Cookie::from(c.as_bytes()));
        Ok(match reply {
            Reply::BindOk => {
                let id = self
                    .bind
                    .ok_or_else(|| "BindOk needs a bind, and none was expected yet".to_owned())?;
                wire::bind_response(id, ResultCode::SUCCESS, "")
            }
            Reply::Entry(n, c) => {
                let (id, _) = search()?;
                let value = n.to_string();
                let attributes = AttributeList::build([("cn", [value.as_bytes()])]);
                let dn = format!("cn={n},{BASE}");
                let c = cookie(c);
                wire::sync_entry(id, &dn, &attributes, SyncState::Add, uuid(*n), c.as_ref())
            }
            Reply::NewCookie(c) => {
                let (id, _) = search()?;
                wire::sync_info(id, &SyncInfoValue::NewCookie(c.as_bytes().into()))
            }
            Reply::RefreshDone(c) => match search()? {
                (id, Some(RequestMode::RefreshAndPersist)) => wire::sync_info(
                    id,
                    &SyncInfoValue::RefreshPresent(RefreshPhaseValue {
                        cookie: c.map(|c| c.as_bytes().into()),
                        refresh_done: true,
                    }),
                ),
                (id, _) => {
                    let c = cookie(c);
                    wire::search_done(id, ResultCode::SUCCESS, "", Some((c.as_ref(), false)))
                }
            },
            Reply::SearchDone(code) => wire::search_done(search()?.0, *code, "", None),
            Reply::CancelResult(code) => {
                let id = self.cancel.ok_or_else(|| {
                    "CancelResult needs a Cancel, and none was expected yet".to_owned()
                })?;
                wire::extended_response(id, *code, None, None)
            }
            Reply::NoticeOfDisconnection(code) => wire::notice_of_disconnection(*code),
        })
    }
}

/// A BER element: its tag and content octets.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads one element (low tag numbers, definite lengths: what a client sends) and what follows.
fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("missing element")?;
    let (&first, rest) = rest.split_first().ok_or("missing length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("unsupported length form {first:#04x}"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(format!("element {tag:#04x} of {len} octets is cut short"));
    }
    let (content, rest) = rest.split_at(len);
    Ok((Tlv { tag, content }, rest))
}

fn expect_tag(element: &Tlv<'_>, tag: u8, what: &str) -> Result<(), String> {
    if element.tag == tag {
        Ok(())
    } else {
        Err(format!(
            "{what}: tag {:#04x}, expected {tag:#04x}",
            element.tag
        ))
    }
}

fn integer(content: &[u8]) -> Result<MessageId, String> {
    if content.is_empty() || content.len() > 5 {
        return Err(format!("integer of {} octets", content.len()));
    }
    content
        .iter()
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        .try_into()
        .map_err(|_| "integer out of range".to_owned())
}

/// Reads an LDAPMessage from the client: SEQUENCE { messageID INTEGER, protocolOp, controls [0] }.
fn parse_request(frame: &[u8]) -> Result<Request, String> {
    let (message, _) = tlv(frame)?;
    expect_tag(&message, 0x30, "LDAPMessage")?;
    let (id, rest) = tlv(message.content)?;
    expect_tag(&id, 0x02, "messageID")?;
    let (op, rest) = tlv(rest)?;
    let controls = if rest.is_empty() {
        None
    } else {
        let (controls, _) = tlv(rest)?;
        expect_tag(&controls, 0xa0, "controls")?;
        Some(controls.content)
    };
    let mut request = Request {
        id: integer(id.content)?,
        kind: Kind::Other,
        cookie: None,
        mode: None,
        target: None,
        detail: String::new(),
        at: Instant::now(),
    };
    match op.tag {
        0x60 => request.kind = Kind::Bind,
        0x63 => {
            request.kind = Kind::Search;
            if let Some(value) = sync_request_value(controls.unwrap_or_default())? {
                let value: SyncRequestValue =
                    sync::decode(value, "syncRequestValue").map_err(|e| e.to_string())?;
                request.cookie = value.cookie.map(|c| c.to_vec());
                request.mode = Some(value.mode);
            }
        }
        0x77 => {
            let (name, rest) = tlv(op.content)?;
            expect_tag(&name, 0x80, "requestName")?;
            let oid = String::from_utf8_lossy(name.content).into_owned();
            request.kind = match oid.as_str() {
                CANCEL_OID => {
                    let (value, _) = tlv(rest)?;
                    expect_tag(&value, 0x81, "requestValue")?;
                    let (seq, _) = tlv(value.content)?;
                    expect_tag(&seq, 0x30, "cancelRequestValue")?;
                    let (cancel_id, _) = tlv(seq.content)?;
                    expect_tag(&cancel_id, 0x02, "cancelID")?;
                    request.target = Some(integer(cancel_id.content)?);
                    Kind::Cancel
                }
                START_TLS_OID => Kind::StartTls,
                WHO_AM_I_OID => Kind::WhoAmI,
                _ => Kind::Extended,
            };
            request.detail = oid;
        }
        0x50 => {
            request.kind = Kind::Abandon;
            request.target = Some(integer(op.content)?);
        }
        0x42 => request.kind = Kind::Unbind,
        tag => request.detail = format!("protocolOp {tag:#04x}"),
    }
    Ok(request)
}

/// The value of the Sync Request Control among `controls`, if there is one.
fn sync_request_value(mut controls: &[u8]) -> Result<Option<&[u8]>, String> {
    while !controls.is_empty() {
        let (control, rest) = tlv(controls)?;
        controls = rest;
        expect_tag(&control, 0x30, "Control")?;
        let (oid, mut fields) = tlv(control.content)?;
        expect_tag(&oid, 0x04, "controlType")?;
        if oid.content != sync::SYNC_REQUEST_OID.as_bytes() {
            continue;
        }
        while !fields.is_empty() {
            let (field, rest) = tlv(fields)?;
            fields = rest;
            if field.tag == 0x04 {
                return Ok(Some(field.content));
            }
        }
        return Err("a Sync Request Control without a value".into());
    }
    Ok(None)
}
