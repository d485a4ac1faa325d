//! syncrepl: keep a live local copy of an LDAP directory with RFC 4533 Content Synchronization,
//! and hand every change to a consumer that acknowledges it.
//!
//! This facade joins the three layers — the sans-IO protocol core ([`proto`]), the mirror and its
//! change stream ([`state`]) and the blocking runtime ([`mio`]) — in one sync loop ([`run`], or
//! [`changes`] to pull), and holds the output formats of the `syncrepl` command.
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

pub use syncrepl_mio as mio;
pub use syncrepl_proto as proto;
pub use syncrepl_state as state;

pub mod cli;
pub mod destination;
mod error;
pub mod exit;
pub mod ldif;
pub mod logging;
pub mod output;
pub mod progress;
mod pull;
mod sync;

pub use error::Error;
pub use pull::{
    changes, changes_with, Changes, Item, IteratorDropped, PullOptions, RecvTimeoutError,
};
pub use sync::run;
pub use syncrepl_state::{Change, ChangeKind, Consumer, ConsumerError, FnConsumer};
