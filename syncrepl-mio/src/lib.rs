//! A blocking runtime for syncrepl on `mio` and `rustls`.
//!
//! It drives the sans-IO core of `syncrepl-proto` over real sockets — `ldap://` (optionally with
//! StartTLS), `ldaps://` and `ldapi://` — binds (anonymous, simple, SASL EXTERNAL), and keeps a
//! `syncrepl-state` mirror in step with the server, reconnecting on a slapd-style retry schedule
//! until a [`StopHandle`] stops it.
#![forbid(unsafe_code)]

mod connection;
mod error;
mod pull;
mod retry;
mod runner;
mod sink;
mod stop;
mod transport;
mod url;

pub use connection::{ConnectOptions, Connection, Credentials, Wake};
pub use error::Error;
pub use pull::{changes, Changes};
pub use retry::{RetryParseError, RetrySchedule};
pub use runner::{run, Outcome, SyncOptions, SyncSink};
pub use sink::MirrorSink;
pub use stop::StopHandle;
pub use transport::TlsOptions;
pub use url::{Endpoint, LdapUrl, UrlError, DEFAULT_LDAPI_PATH};
