//! syncrepl: keep a live local copy of an LDAP directory with RFC 4533 Content Synchronization.
//!
//! This facade re-exports the three layers — the sans-IO protocol core ([`proto`]), the mirror
//! ([`state`]) and the blocking runtime ([`mio`]) — and holds the output formats of the
//! `syncrepl` command.
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

pub use syncrepl_mio as mio;
pub use syncrepl_proto as proto;
pub use syncrepl_state as state;

pub mod cli;
pub mod exit;
pub mod ldif;
pub mod output;
pub mod progress;
