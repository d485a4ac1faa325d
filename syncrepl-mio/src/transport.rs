//! The byte pipe under the session: TCP or a Unix socket, optionally wrapped in rustls.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::error::{Error, TlsConfigError};

/// TLS settings for ldaps:// and StartTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate chain, for servers that ask for one (and SASL EXTERNAL).
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// Builds the rustls configuration: TLS 1.2 and 1.3, the given CA or the system roots, and the
    /// client certificate if one was given.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| pem_error(path, e))?;
                if certs.is_empty() {
                    return Err(Error::TlsConfig(TlsConfigError::NoCertificate {
                        path: path.clone(),
                    }));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| rejected(path, e))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(Error::TlsConfig(TlsConfigError::NoSystemRoots));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::TlsConfig(TlsConfigError::Provider(e)))?
            .with_root_certificates(roots);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| pem_error(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| rejected(cert, e))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(Error::TlsConfig(
                    TlsConfigError::IncompleteClientCertificate,
                ))
            }
        };
        Ok(Arc::new(config))
    }
}

fn pem_error(path: &Path, source: rustls::pki_types::pem::Error) -> Error {
    Error::TlsConfig(TlsConfigError::Pem {
        path: path.to_owned(),
        source,
    })
}

fn rejected(path: &Path, source: rustls::Error) -> Error {
    Error::TlsConfig(TlsConfigError::Rejected {
        path: path.to_owned(),
        source,
    })
}

/// The socket itself.
#[derive(Debug)]
enum Socket2 {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Socket2 {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket2::Tcp(s) => s.read(buf),
            Socket2::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket2 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket2::Tcp(s) => s.write(buf),
            Socket2::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connected, non-blocking byte stream, encrypted once TLS is set up.
#[derive(Debug)]
pub(crate) struct Transport {
    socket: Socket2,
    tls: Option<ClientConnection>,
    /// Cleartext bytes accepted from the session but not yet written (without TLS).
    pending: Vec<u8>,
}

/// What one read produced.
pub(crate) enum ReadOutcome {
    /// This many bytes of application data.
    Data(usize),
    /// Nothing now; wait for readiness.
    WouldBlock,
    /// The peer closed the connection.
    Closed,
}

impl Transport {
    /// Connects over TCP, trying each address the host resolves to within `timeout`.
    pub(crate) fn connect_tcp(
        host: &str,
        port: u16,
        timeout: Duration,
        keepalive: Option<Duration>,
    ) -> Result<Transport, Error> {
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
                .map_err(|source| Error::Connect { addr, source })?;
            match socket.connect_timeout(&addr.into(), timeout) {
                Ok(()) => {
                    socket.set_tcp_nodelay(true).ok();
                    if let Some(idle) = keepalive {
                        let ka = TcpKeepalive::new()
                            .with_time(idle)
                            .with_interval(Duration::from_secs(10));
                        socket.set_tcp_keepalive(&ka).ok();
                    }
                    socket
                        .set_nonblocking(true)
                        .map_err(|source| Error::Connect { addr, source })?;
                    let std: std::net::TcpStream = socket.into();
                    return Ok(Transport {
                        socket: Socket2::Tcp(TcpStream::from_std(std)),
                        tls: None,
                        pending: Vec::new(),
                    });
                }
                Err(source) => last = Some(Error::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| Error::Resolve {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }))
    }

    /// Connects to a Unix domain socket (ldapi://).
    pub(crate) fn connect_unix(path: &str) -> Result<Transport, Error> {
        let std =
            std::os::unix::net::UnixStream::connect(path).map_err(|source| Error::ConnectUnix {
                path: path.to_owned(),
                source,
            })?;
        std.set_nonblocking(true)
            .map_err(|source| Error::ConnectUnix {
                path: path.to_owned(),
                source,
            })?;
        Ok(Transport {
            socket: Socket2::Unix(UnixStream::from_std(std)),
            tls: None,
            pending: Vec::new(),
        })
    }

    /// Wraps the connection in TLS; the handshake runs as the connection is read and written.
    pub(crate) fn start_tls(&mut self, config: Arc<ClientConfig>, host: &str) -> Result<(), Error> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            Error::TlsConfig(TlsConfigError::ServerName {
                host: host.to_owned(),
            })
        })?;
        let conn = ClientConnection::new(config, name).map_err(Error::Tls)?;
        self.tls = Some(conn);
        Ok(())
    }

    /// Whether TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the TLS handshake is still running.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Registers the socket with mio.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        match &mut self.socket {
            Socket2::Tcp(s) => registry.register(s, token, interest),
            Socket2::Unix(s) => registry.register(s, token, interest),
        }
    }

    /// Updates what readiness the socket waits for.
    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        match &mut self.socket {
            Socket2::Tcp(s) => registry.reregister(s, token, interest),
            Socket2::Unix(s) => registry.reregister(s, token, interest),
        }
    }

    /// Readable always; writable while something waits to be written.
    fn interest(&self) -> Interest {
        if self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Whether bytes wait to be written to the socket.
    pub(crate) fn wants_write(&self) -> bool {
        match &self.tls {
            Some(t) => t.wants_write(),
            None => !self.pending.is_empty(),
        }
    }

    /// Takes application bytes to send; they are written by [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.tls {
            Some(t) => t.writer().write_all(data).map_err(Error::Io),
            None => {
                self.pending.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Writes as much as the socket takes without blocking.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        loop {
            let result = match &mut self.tls {
                Some(t) if t.wants_write() => t.write_tls(&mut self.socket),
                Some(_) => return Ok(()),
                None if self.pending.is_empty() => return Ok(()),
                None => self.socket.write(&self.pending).inspect(|&n| {
                    self.pending.drain(..n);
                }),
            };
            match result {
                Ok(0) => return Err(Error::ConnectionClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Reads application data into `buf`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Error> {
        let Some(tls) = &mut self.tls else {
            return match self.socket.read(buf) {
                Ok(0) => Ok(ReadOutcome::Closed),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if is_retry(&e) => Ok(ReadOutcome::WouldBlock),
                Err(e) => Err(Error::Io(e)),
            };
        };
        // As much as the socket holds, over as many TLS records as fit: a server that writes
        // small records (Samba's are 4 KiB) must not make each read look like a trickle.
        let mut filled = 0;
        let got = |filled: usize, otherwise: ReadOutcome| {
            Ok(if filled > 0 {
                ReadOutcome::Data(filled)
            } else {
                otherwise
            })
        };
        loop {
            match tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return got(filled, ReadOutcome::Closed),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(ReadOutcome::Data(filled));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return got(filled, ReadOutcome::Closed)
                }
                Err(e) => return Err(Error::Io(e)),
            }
            match tls.read_tls(&mut self.socket) {
                Ok(0) => return got(filled, ReadOutcome::Closed),
                Ok(_) => {
                    let state = tls.process_new_packets().map_err(Error::Tls)?;
                    if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                        return got(filled, ReadOutcome::Closed);
                    }
                }
                Err(e) if is_retry(&e) => return got(filled, ReadOutcome::WouldBlock),
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Sends TLS close_notify if TLS is on; best effort.
    pub(crate) fn close(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
        }
        let _ = self.flush();
        if let Socket2::Tcp(s) = &self.socket {
            let _ = SockRef::from(s).shutdown(std::net::Shutdown::Write);
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
