//! The error every fixture returns: what went wrong starting or driving a server or a tool.

use std::time::Duration;

/// What went wrong starting or driving the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not make a certificate.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// The options cannot work (the caller's mistake).
    #[error("invalid options: {0}")]
    Options(String),
    /// `slapadd` refused the data or the configuration.
    #[error("slapadd failed (exit code {code:?}):\n{output}")]
    Load {
        /// slapadd's exit code.
        code: Option<i32>,
        /// What it printed.
        output: String,
    },
    /// slapd exited or did not answer in time; `log` is the end of its output.
    #[error("slapd did not start: {reason}\n--- end of slapd's output ---\n{log}")]
    Start {
        /// What happened.
        reason: String,
        /// The last lines slapd wrote.
        log: String,
        /// Whether slapd could not bind a port (another process took it).
        port_in_use: bool,
    },
    /// krb5kdc exited or did not listen in time ([`crate::kerberos::Realm`]); `log` is the end
    /// of its output.
    #[error("krb5kdc did not start: {reason}\n--- end of krb5kdc's output ---\n{log}")]
    Kdc {
        /// What happened.
        reason: String,
        /// The last lines krb5kdc wrote.
        log: String,
        /// Whether its port was taken (by another process, or by another KDC).
        port_in_use: bool,
    },
    /// samba exited or did not answer over ldaps in time ([`crate::samba`]); `log` is the end of
    /// its log.
    #[error("samba did not start: {reason}\n--- end of samba's log ---\n{log}")]
    Samba {
        /// What happened.
        reason: String,
        /// The last lines samba wrote.
        log: String,
        /// Whether its address was taken by another process.
        port_in_use: bool,
    },
    /// nats-server exited or was not ready in time ([`crate::nats`]); `log` is the end of its
    /// output.
    #[error("nats-server was not ready: {reason}\n--- end of nats-server's output ---\n{log}")]
    Nats {
        /// What happened.
        reason: String,
        /// The last lines nats-server wrote.
        log: String,
        /// Whether it could not bind a port (another process took it).
        port_in_use: bool,
    },
    /// A tool did not finish in time and was killed.
    #[error("{what} did not finish within {after:?}; its stderr: {output}")]
    Timeout {
        /// The program.
        what: String,
        /// The time it was given.
        after: Duration,
        /// What it wrote to stderr.
        output: String,
    },
    /// Multi-provider servers did not come to agree within the time given; `detail` shows what
    /// each one reported last.
    #[error("the providers did not converge within {after:?}:\n{detail}")]
    NotConverged {
        /// The time they were given.
        after: Duration,
        /// Each provider's last answer, one per line.
        detail: String,
    },
    /// An LDAP tool exited with an error.
    #[error("{tool} exited with code {code:?}: {stderr}")]
    Tool {
        /// The program and its arguments.
        tool: String,
        /// Its exit code (the LDAP result code for the OpenLDAP tools).
        code: Option<i32>,
        /// What it wrote to stderr.
        stderr: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
