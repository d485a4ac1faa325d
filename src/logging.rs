//! The commands' logging: to stderr, at the level `SYNCREPL_LOG` names (`warn` by default), in
//! colour only on a terminal.

use std::io::{self, IsTerminal};

/// Installs the logger of the `syncrepl` commands (the command and the publishers built on this
/// crate); call it once, at start.
pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SYNCREPL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}
