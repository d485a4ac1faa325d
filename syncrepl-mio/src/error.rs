//! The runtime's errors, each saying what went wrong and whether retrying can help.

use std::io;
use std::net::SocketAddr;

use syncrepl_proto::sasl::SaslError;
use syncrepl_proto::{LdapResult, ResultCode};

use crate::url::UrlError;

/// What can stop a sync run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The LDAP URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The configuration is contradictory or incomplete.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        source: io::Error,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The Unix socket connection failed.
    #[error("cannot connect to ldapi socket {path}: {source}")]
    ConnectUnix {
        /// The socket path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection error: {0}")]
    Io(io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    ConnectionClosed,
    /// The TLS configuration could not be built (CA file, client certificate).
    #[error("TLS configuration: {0}")]
    TlsConfig(TlsConfigError),
    /// The TLS session failed, e.g. the server certificate is not trusted or not for this host.
    #[error("TLS error: {0}")]
    Tls(rustls::Error),
    /// The server refused StartTLS; the client never falls back to cleartext.
    #[error("the server refused StartTLS: {0}")]
    StartTlsRefused(LdapResult),
    /// A simple bind with a password over a connection without TLS was refused on the caller's behalf.
    #[error("refusing to send a password over cleartext {0}; use ldaps://, StartTLS or ldapi://, or allow it explicitly")]
    CleartextPassword(String),
    /// The bind failed, e.g. invalid credentials (LDAP 49).
    #[error("{result} binding as {dn}")]
    Bind {
        /// The bind DN (or the SASL mechanism).
        dn: String,
        /// The server's result.
        result: LdapResult,
    },
    /// A SASL bind failed on the client's side: the mechanism refused (no Kerberos ticket, an
    /// expired one, an unknown service principal) or the server's part of the exchange was wrong
    /// (RFC 4752 §3.1).
    #[error("SASL {mechanism} bind: {source}")]
    Sasl {
        /// The mechanism, e.g. `GSSAPI`.
        mechanism: &'static str,
        /// What went wrong.
        source: SaslError,
    },
    /// The SASL security layer failed after the bind: a buffer from the server that does not
    /// unwrap or exceeds the negotiated size (RFC 4422 §3.7).
    #[error("SASL security layer: {0}")]
    SecurityLayer(SaslError),
    /// Who am I? returned another identity than the one expected.
    #[error("bound as {actual:?}, expected {expected:?}")]
    IdentityMismatch {
        /// The expected authzId.
        expected: String,
        /// What the server said.
        actual: String,
    },
    /// The server does not support LDAP Content Synchronization for this search.
    #[error("server does not support LDAP Content Synchronization (no syncprov?): {0}")]
    NoSyncProvider(LdapResult),
    /// The server does not offer RFC 4533 but Active Directory's DirSync, and the RFC 4533 dialect
    /// was asked for.
    #[error("this server does not support RFC 4533 (LDAP Content Synchronization); it is Active Directory: use the AD dialect (DirSync), or let the dialect be chosen from the root DSE: {0}")]
    ActiveDirectory(LdapResult),
    /// The server offers neither RFC 4533 nor DirSync.
    #[error("the server offers neither LDAP Content Synchronization (RFC 4533) nor DirSync (Active Directory): its root DSE lists no such control")]
    NoSyncControl,
    /// A DirSync search must run from a naming context, and none holds the base.
    #[error("no naming context of the server holds the search base {base:?} (it has {naming_contexts:?})")]
    NoNamingContext {
        /// The search base.
        base: String,
        /// The root DSE's namingContexts.
        naming_contexts: Vec<String>,
    },
    /// The sync search failed with an LDAP result.
    #[error("sync search failed: {0}")]
    Search(LdapResult),
    /// The server wants a full reload and the caller does not allow it.
    #[error("the server requires a full refresh (e-syncRefreshRequired)")]
    RefreshRequired,
    /// The server sent a Notice of Disconnection.
    #[error("the server is disconnecting: {0}")]
    Disconnected(LdapResult),
    /// The protocol core refused what the server sent, or a request timed out.
    #[error(transparent)]
    Protocol(#[from] syncrepl_proto::Error),
    /// The stop handle was used before the connection was ready.
    #[error("stopped")]
    Stopped,
    /// A connect or request timed out.
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl Error {
    /// Whether reconnecting later may succeed: network trouble, a server restart, a busy or
    /// unavailable server. Wrong credentials, missing access, a missing base or a server without
    /// syncprov will not fix themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::ConnectUnix { .. }
            | Error::Io(_)
            | Error::ConnectionClosed
            | Error::Disconnected(_)
            | Error::Timeout(_) => true,
            Error::Protocol(e) => matches!(e, syncrepl_proto::Error::Timeout { .. }),
            Error::Sasl {
                source: SaslError::Mechanism(e),
                ..
            } => e.transient,
            Error::Bind { result, .. } | Error::Search(result) => matches!(
                result.code,
                ResultCode::BUSY | ResultCode::UNAVAILABLE | ResultCode::OTHER
            ),
            _ => false,
        }
    }
}

/// A contradiction in the connect options, found before anything is sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// StartTLS (RFC 4511 §4.14) was asked for on an ldaps:// or ldapi:// endpoint.
    #[error("StartTLS applies to ldap:// URLs only")]
    StartTlsNeedsLdap,
}

/// Why the TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file (CA, client certificate or key) could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate.
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate {
        /// The file.
        path: std::path::PathBuf,
    },
    /// rustls refused a certificate or the client key.
    #[error("{}: {source}", path.display())]
    Rejected {
        /// The file it came from.
        path: std::path::PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// No CA file was given and the system has no CA certificates.
    #[error("no system CA certificates found; give a CA file")]
    NoSystemRoots,
    /// The protocol versions could not be set up with the crypto provider.
    #[error("{0}")]
    Provider(rustls::Error),
    /// Only one of the client certificate and key was given.
    #[error("a client certificate needs both a certificate and a key file")]
    IncompleteClientCertificate,
    /// The host is not a name or address a certificate can be checked against.
    #[error("{host:?} is not a valid TLS server name")]
    ServerName {
        /// The host as given.
        host: String,
    },
}

/// Why [`run`](crate::run) ended with an error: the runtime gave up ([`Error`]), or the sink failed
/// with its own error, kept as the sink's type (retrying cannot fix a full disk or a consumer's
/// error).
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// Connecting, binding, the protocol or the search failed, and retrying did not help.
    #[error(transparent)]
    Runtime(#[from] Error),
    /// The [`SyncSink`](crate::SyncSink) failed: its store or its consumer.
    #[error(transparent)]
    Sink(E),
}

impl<E> From<syncrepl_proto::Error> for RunError<E> {
    fn from(e: syncrepl_proto::Error) -> RunError<E> {
        RunError::Runtime(Error::Protocol(e))
    }
}
