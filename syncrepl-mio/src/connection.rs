//! One LDAP connection driven by mio: connect, optional TLS, bind, and a blocking event pump.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use syncrepl_proto::sasl::{GssapiBind, GssapiContext, Layer, SaslError, SecurityProps};
use syncrepl_proto::{Event, ResultCode, RootDse, Session, SessionConfig};

use crate::error::{ConfigError, Error};
use crate::stop::StopHandle;
use crate::transport::{ReadOutcome, TlsOptions, Transport};
use crate::url::Endpoint;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Bytes read from the socket before the pending events are handed out, so that a consumer slower
/// than the network applies back-pressure instead of buffering the whole refresh.
const READ_CHUNK: usize = 64 * 1024;
/// During a refresh the client usually outpaces the server, and each read would bring a few
/// kilobytes: after a read smaller than this, the next one waits [`GATHER_PAUSE`] so that a larger
/// chunk gathers in the socket buffer, which saves most of the system calls and wake-ups.
const GATHER_BELOW: usize = 16 * 1024;
/// See [`GATHER_BELOW`]; short enough not to matter at the end of a refresh.
const GATHER_PAUSE: Duration = Duration::from_micros(200);

/// How to authenticate.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No bind at all: the connection stays anonymous.
    #[default]
    Anonymous,
    /// A simple bind with a DN and password (RFC 4513 §5.1.3).
    Simple {
        /// The bind DN.
        dn: String,
        /// The password; never logged, never written to disk.
        password: String,
    },
    /// SASL EXTERNAL (RFC 4513 §5.2.3): the identity comes from ldapi:// peer credentials or the
    /// TLS client certificate.
    SaslExternal {
        /// An authorization identity to assume, if any.
        authz_id: Option<String>,
    },
    /// SASL GSSAPI (RFC 4752) with Kerberos credentials from the ccache (`KRB5CCNAME`) or a
    /// client keytab (`KRB5_CLIENT_KTNAME`); needs the `gssapi` cargo feature.
    Gssapi {
        /// The service principal: `None` for `ldap@HOST` with the URL's host as written, never
        /// canonicalised by a reverse lookup (ldap.conf's `SASL_NOCANON`); a name with `/` is a
        /// Kerberos principal (`ldap/host@REALM`), one without a host-based service
        /// (`ldap@host`).
        principal: Option<String>,
        /// An authorization identity to assume (`-X`), e.g. `dn:uid=other,dc=example,dc=com`.
        authz_id: Option<String>,
        /// Which security layers are acceptable (`-O`, RFC 4752 §3.3).
        security: SecurityProps,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Simple { dn, .. } => write!(f, "Simple {{ dn: {dn:?}, password: … }}"),
            Credentials::SaslExternal { authz_id } => {
                write!(f, "SaslExternal {{ authz_id: {authz_id:?} }}")
            }
            Credentials::Gssapi {
                principal,
                authz_id,
                security,
            } => write!(
                f,
                "Gssapi {{ principal: {principal:?}, authz_id: {authz_id:?}, security: {security:?} }}"
            ),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server.
    pub endpoint: Endpoint,
    /// Upgrade an ldap:// connection with StartTLS; required once asked: if the server refuses, the
    /// connection fails rather than continuing in cleartext.
    pub start_tls: bool,
    /// CA and client certificate for ldaps:// and StartTLS.
    pub tls: TlsOptions,
    /// The bind.
    pub credentials: Credentials,
    /// Allow a simple bind with a password over a connection that is neither TLS nor ldapi://.
    pub allow_cleartext_password: bool,
    /// After binding, check with Who am I? (RFC 4532) that the server sees this identity
    /// (e.g. `dn:cn=reader,dc=example,dc=com`).
    pub expect_identity: Option<String>,
    /// Limit on establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit on each request's answer (bind, StartTLS, TLS handshake, Who am I?).
    pub request_timeout: Duration,
    /// How long a stop waits for the server to end the search after Cancel (RFC 3909) before
    /// abandoning it and unbinding.
    pub cancel_timeout: Duration,
    /// TCP keepalive idle time, so a dead peer is noticed on a quiet persist connection.
    pub keepalive: Option<Duration>,
    /// Largest LDAP message accepted from the server.
    pub max_message_size: usize,
}

impl ConnectOptions {
    /// Options for `endpoint` with anonymous access and the usual timeouts.
    pub fn new(endpoint: Endpoint) -> ConnectOptions {
        ConnectOptions {
            endpoint,
            start_tls: false,
            tls: TlsOptions::default(),
            credentials: Credentials::Anonymous,
            allow_cleartext_password: false,
            expect_identity: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            cancel_timeout: SessionConfig::default().cancel_timeout,
            keepalive: Some(Duration::from_secs(60)),
            max_message_size: SessionConfig::default().max_message_size,
        }
    }

    /// A CA file to trust (shorthand for setting `tls.ca_file`).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> ConnectOptions {
        self.tls.ca_file = Some(path.into());
        self
    }
}

/// What [`Connection::next`] woke up for.
#[derive(Debug)]
pub enum Wake {
    /// The session produced an event.
    Event(Event),
    /// The stop handle was used (reported once).
    Stop,
    /// The caller's deadline passed.
    Deadline,
    /// Every event from the input received so far was handed out and no more input is waiting:
    /// the connection is about to block (reported once after each run of events). The moment to
    /// hand a batch of changes on without delaying any.
    Drained,
}

/// An open, bound LDAP connection whose session is pumped by a mio event loop.
#[derive(Debug)]
pub struct Connection {
    poll: Poll,
    events: Events,
    transport: Transport,
    session: Session,
    readable: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
    stop: StopHandle,
    stop_reported: bool,
    request_timeout: Duration,
    authz_id: Option<String>,
    /// The last read was small and a refresh is streaming (see [`GATHER_BELOW`]).
    gather: bool,
    /// Events were handed out since the last [`Wake::Drained`].
    undrained: bool,
    /// The SASL security layer, once a GSSAPI bind chose integrity or confidentiality.
    layer: Option<Layer<Box<dyn GssapiContext + Send>>>,
    /// Bytes between the layer and the socket, kept to reuse their allocation.
    wrapped: Vec<u8>,
    /// The session's fatal error, reported after the events decoded before it.
    failure: Option<syncrepl_proto::Error>,
}

impl Connection {
    /// Connects, sets up TLS (ldaps:// or StartTLS), binds and checks the identity.
    pub fn open(options: &ConnectOptions, stop: &StopHandle) -> Result<Connection, Error> {
        let mut transport = match &options.endpoint {
            Endpoint::Ldap { host, port } | Endpoint::Ldaps { host, port } => {
                Transport::connect_tcp(host, *port, options.connect_timeout, options.keepalive)?
            }
            Endpoint::Ldapi { path } => Transport::connect_unix(path)?,
        };
        if let Endpoint::Ldaps { host, .. } = &options.endpoint {
            transport.start_tls(options.tls.client_config()?, host)?;
        }
        let poll = Poll::new().map_err(Error::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(Error::Io)?);
        transport
            .register(poll.registry(), SOCKET)
            .map_err(Error::Io)?;
        stop.set_waker(Some(waker));
        let config = SessionConfig {
            max_message_size: options.max_message_size,
            request_timeout: Some(options.request_timeout),
            cancel_timeout: options.cancel_timeout,
        };
        let mut conn = Connection {
            poll,
            events: Events::with_capacity(16),
            transport,
            session: Session::new(config),
            readable: true,
            buf: vec![0; READ_CHUNK],
            gather: false,
            undrained: false,
            out: Vec::new(),
            stop: stop.clone(),
            stop_reported: false,
            request_timeout: options.request_timeout,
            authz_id: None,
            layer: None,
            wrapped: Vec::new(),
            failure: None,
        };
        if options.start_tls {
            let Endpoint::Ldap { host, .. } = &options.endpoint else {
                return Err(Error::Config(ConfigError::StartTlsNeedsLdap));
            };
            conn.start_tls(options.tls.client_config()?, host)?;
        }
        conn.bind(options)?;
        if let Some(expected) = &options.expect_identity {
            let actual = conn.who_am_i()?;
            if &actual != expected {
                return Err(Error::IdentityMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(conn)
    }

    /// The protocol session, to issue commands.
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The authorization identity the server reported, if Who am I? was asked.
    pub fn authz_id(&self) -> Option<&str> {
        self.authz_id.as_deref()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// The SASL security layer in force: `None` unless a GSSAPI bind chose one.
    pub fn security_layer(&self) -> Option<syncrepl_proto::sasl::SecurityLayer> {
        self.layer.as_ref().map(Layer::security_layer)
    }

    fn start_tls(&mut self, config: Arc<rustls::ClientConfig>, host: &str) -> Result<(), Error> {
        self.session.start_tls(Instant::now())?;
        self.wait_for("StartTLS", |event| match event {
            Event::TlsReady => Ok(Some(())),
            Event::StartTlsRefused(result) => Err(Error::StartTlsRefused(result)),
            _ => Ok(None),
        })?;
        self.transport.start_tls(config, host)?;
        let deadline = Instant::now() + self.request_timeout;
        while self.transport.is_handshaking() {
            self.pump(Some(deadline))?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout("TLS handshake"));
            }
        }
        Ok(())
    }

    fn bind(&mut self, options: &ConnectOptions) -> Result<(), Error> {
        let now = Instant::now();
        let who = match &options.credentials {
            Credentials::Anonymous => return Ok(()),
            Credentials::Simple { dn, password } => {
                let secure = options.endpoint.is_secure_transport() || self.transport.is_tls();
                if !password.is_empty() && !secure && !options.allow_cleartext_password {
                    return Err(Error::CleartextPassword(options.endpoint.to_string()));
                }
                self.session.bind_simple(dn, password.as_bytes(), now)?;
                dn.clone()
            }
            Credentials::SaslExternal { authz_id } => {
                // RFC 4513 §5.2.3: the credentials are the authzId to assume, empty for the
                // identity established by the transport; absent credentials make Cyrus SASL ask
                // for another round.
                let creds = authz_id.as_deref().unwrap_or_default().as_bytes();
                self.session.bind_sasl("EXTERNAL", Some(creds), now)?;
                "SASL EXTERNAL".to_owned()
            }
            Credentials::Gssapi {
                principal,
                authz_id,
                security,
            } => {
                let principal = principal
                    .clone()
                    .unwrap_or_else(|| format!("ldap@{}", options.endpoint.sasl_host()));
                let secure = options.endpoint.is_secure_transport() || self.transport.is_tls();
                return self.bind_gssapi(&principal, authz_id.as_deref(), *security, secure);
            }
        };
        self.wait_for("bind", |event| match event {
            Event::BindResult(b) if b.result.code == ResultCode::SUCCESS => Ok(Some(())),
            Event::BindResult(b) => Err(Error::Bind {
                dn: who.clone(),
                result: b.result,
            }),
            _ => Ok(None),
        })
    }

    /// The round trips of a GSSAPI bind (RFC 4752 §3.1); the layer it chose applies from the
    /// next message on.
    fn bind_gssapi(
        &mut self,
        principal: &str,
        authz_id: Option<&str>,
        security: SecurityProps,
        secure: bool,
    ) -> Result<(), Error> {
        let sasl = |source: SaslError| Error::Sasl {
            mechanism: "GSSAPI",
            source,
        };
        let context = gssapi_context(principal).map_err(sasl)?;
        let mut bind = GssapiBind::new(context, security, authz_id, secure);
        let mut credentials = bind.initial_response().map_err(sasl)?;
        loop {
            self.session
                .bind_sasl("GSSAPI", Some(&credentials), Instant::now())?;
            let answer = self.wait_for("bind", |event| match event {
                Event::BindResult(b) => Ok(Some(b)),
                _ => Ok(None),
            })?;
            match answer.result.code {
                ResultCode::SASL_BIND_IN_PROGRESS => {
                    credentials = bind
                        .challenge(answer.server_sasl_creds.as_deref())
                        .map_err(sasl)?;
                }
                ResultCode::SUCCESS => {
                    let layer = bind.success().map_err(sasl)?;
                    tracing::debug!(%principal, layer = %layer.security_layer(), "GSSAPI bind");
                    if layer.is_active() {
                        self.layer = Some(layer);
                    }
                    return Ok(());
                }
                _ => {
                    return Err(Error::Bind {
                        dn: format!("SASL GSSAPI to {principal}"),
                        result: answer.result,
                    })
                }
            }
        }
    }

    /// Asks Who am I? (RFC 4532) and returns the authzId (`dn:…`, `u:…`, or empty for anonymous).
    pub fn who_am_i(&mut self) -> Result<String, Error> {
        self.session.who_am_i(Instant::now())?;
        let id = self.wait_for("Who am I?", |event| match event {
            Event::WhoAmI {
                authz_id: Some(id), ..
            } => Ok(Some(id)),
            Event::WhoAmI { result, .. } => Err(Error::Search(result)),
            _ => Ok(None),
        })?;
        self.authz_id = Some(id.clone());
        Ok(id)
    }

    /// Reads the root DSE (RFC 4512 §5.1): the controls the server offers and its naming contexts.
    pub fn root_dse(&mut self) -> Result<RootDse, Error> {
        self.session.read_root_dse()?;
        self.wait_for("root DSE read", |event| match event {
            Event::RootDse { root_dse, result } if result.is_success() => Ok(Some(*root_dse)),
            Event::RootDse { result, .. } => Err(Error::Search(result)),
            _ => Ok(None),
        })
    }

    /// Pumps until `pick` accepts an event; other events are dropped (none are expected before the
    /// sync search starts).
    fn wait_for<T>(
        &mut self,
        what: &'static str,
        mut pick: impl FnMut(Event) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            match self.next(Some(deadline))? {
                Wake::Event(event) => {
                    if let Some(value) = pick(event)? {
                        return Ok(value);
                    }
                }
                Wake::Stop => return Err(Error::Stopped),
                Wake::Deadline => return Err(Error::Timeout(what)),
                Wake::Drained => {}
            }
        }
    }

    /// Blocks until the session has an event, the stop handle is used, `deadline` passes, or the
    /// input is drained ([`Wake::Drained`]).
    ///
    /// A Notice of Disconnection and a fatal protocol error come back as errors.
    pub fn next(&mut self, deadline: Option<Instant>) -> Result<Wake, Error> {
        loop {
            match self.session.poll_event() {
                Some(Event::Disconnect(result)) => return Err(Error::Disconnected(result)),
                Some(event) => {
                    self.undrained = true;
                    return Ok(Wake::Event(event));
                }
                None => {}
            }
            if let Some(e) = self.failure.take() {
                self.flush()?;
                return Err(Error::Protocol(e));
            }
            if self.stop.is_stopped() && !self.stop_reported {
                self.stop_reported = true;
                return Ok(Wake::Stop);
            }
            self.flush()?;
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Ok(Wake::Deadline);
            }
            if !self.readable && std::mem::take(&mut self.undrained) {
                return Ok(Wake::Drained);
            }
            self.pump(deadline)?;
        }
    }

    /// Queues the session's bytes on the transport and writes what the socket takes.
    fn flush(&mut self) -> Result<(), Error> {
        let _ = self.session.poll_transmit(&mut self.out);
        match &mut self.layer {
            Some(layer) if !self.out.is_empty() => {
                self.wrapped.clear();
                layer
                    .seal(&self.out, &mut self.wrapped)
                    .map_err(Error::SecurityLayer)?;
                self.transport.queue(&self.wrapped)?;
            }
            _ => self.transport.queue(&self.out)?,
        }
        self.out.clear();
        self.transport.flush()
    }

    /// One round of I/O: read a chunk if the socket may be readable, else wait for readiness.
    fn pump(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        self.flush()?;
        if self.readable {
            if std::mem::take(&mut self.gather) {
                std::thread::sleep(GATHER_PAUSE);
            }
            match self.transport.read(&mut self.buf)? {
                ReadOutcome::Data(n) => {
                    let mut input = self.buf.get(..n).unwrap_or_default();
                    if let Some(layer) = &mut self.layer {
                        self.wrapped.clear();
                        layer
                            .open(input, &mut self.wrapped)
                            .map_err(Error::SecurityLayer)?;
                        input = &self.wrapped;
                    }
                    if let Err(e) = self.session.handle_input(input) {
                        // Reported by next() once the events before it are handed out.
                        self.failure = Some(e);
                        return Ok(());
                    }
                    self.gather = n < GATHER_BELOW
                        && self.session.sync_stage() == Some(syncrepl_proto::Stage::Refresh);
                    self.flush()?;
                    return Ok(());
                }
                ReadOutcome::Closed => return Err(Error::ConnectionClosed),
                ReadOutcome::WouldBlock => {
                    // Processing what was read may have changed what the caller waits for (a
                    // finished TLS handshake): let it look before blocking in poll.
                    self.readable = false;
                    return self.flush();
                }
            }
        }
        let now = Instant::now();
        let wake_at = [self.session.poll_timeout(), deadline]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake_at.map(|t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        self.transport
            .reregister(self.poll.registry(), SOCKET)
            .map_err(Error::Io)?;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
        for event in self.events.iter() {
            if event.token() == SOCKET && (event.is_readable() || event.is_read_closed()) {
                self.readable = true;
            }
        }
        if let Err(e) = self.session.handle_timeout(Instant::now()) {
            self.failure = Some(e);
        }
        Ok(())
    }

    /// Sends an unbind and closes the connection, best effort.
    pub fn close(mut self) {
        if !self.session.is_closed() {
            let _ = self.session.unbind();
        }
        let _ = self.flush();
        self.transport.close();
        self.stop.set_waker(None);
    }
}

/// The GSSAPI context for `principal` from the Kerberos library.
#[cfg(feature = "gssapi")]
fn gssapi_context(principal: &str) -> Result<Box<dyn GssapiContext + Send>, SaslError> {
    let context = crate::gssapi::Kerberos::new(principal)?;
    Ok(Box::new(context))
}

/// Without the `gssapi` feature there is no Kerberos library to supply a context.
#[cfg(not(feature = "gssapi"))]
fn gssapi_context(_principal: &str) -> Result<Box<dyn GssapiContext + Send>, SaslError> {
    Err(SaslError::Mechanism(
        syncrepl_proto::sasl::MechanismError::new(
            "this build has no GSSAPI support (build syncrepl with the cargo feature gssapi)",
        ),
    ))
}
