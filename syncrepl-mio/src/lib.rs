//! A blocking runtime for syncrepl on `mio` and `rustls`.
//!
//! It drives the sans-IO core of `syncrepl-proto` over real sockets — `ldap://` (optionally with
//! StartTLS), `ldaps://` and `ldapi://` — binds (anonymous, simple, SASL EXTERNAL, and with the `gssapi` feature SASL GSSAPI with
//! its security layers), runs the sync
//! search and hands its content to a [`SyncSink`], reconnecting on a slapd-style retry schedule
//! until a [`StopHandle`] stops it. It knows nothing of mirrors: the `syncrepl` facade joins it to
//! one.
#![forbid(unsafe_code)]

mod connection;
mod error;
#[cfg(feature = "gssapi")]
mod gssapi;
mod retry;
mod runner;
mod stop;
mod transport;
mod url;

pub use connection::{ConnectOptions, Connection, Credentials, Wake};
pub use error::{ConfigError, Error, RunError, TlsConfigError};
pub use retry::{RetryParseError, RetrySchedule};
pub use runner::{run, DialectChoice, Outcome, SyncOptions, SyncSink};
pub use stop::StopHandle;
pub use syncrepl_proto::sasl::{SaslError, SecurityLayer, SecurityProps};
pub use transport::TlsOptions;
pub use url::{Endpoint, LdapUrl, UrlError, DEFAULT_LDAPI_PATH};
