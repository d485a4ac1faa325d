//! Throwaway NATS servers with JetStream on 127.0.0.1: one [`NatsServer`], or a [`NatsCluster`]
//! of three (or more) nodes that elect a JetStream meta leader among themselves.
//!
//! [`NatsServer::start`] (or [`NatsServer::builder`] and [`NatsOptions::start`])
//!
//! 1. makes a temporary directory (removed again when the server is dropped; set
//!    `SYNCREPL_TESTKIT_KEEP=1` to keep it), with certificates when [`NatsOptions::tls`] is on,
//! 2. picks free ports on 127.0.0.1 for clients and for the HTTP monitoring endpoint, and starts
//!    `nats-server -a 127.0.0.1 -p PORT -m MONITOR -js -sd DIR/jetstream` in the foreground as
//!    our child, with its output in `nats.log` in that directory, and
//! 3. waits (bounded) until a TCP client gets the server's `INFO` line with `"jetstream":true`
//!    and `/healthz` on the monitoring port answers 200.
//!
//! [`NatsCluster::start`] (or [`NatsOptions::start_cluster`]) does the same for each node from a
//! configuration file (`server_name` `n1`, `n2`, …, a `cluster` block with its own route port
//! and routes to all the others, `jetstream { store_dir }`), each node in its own subdirectory,
//! and waits until every node answers, all of them name the same JetStream meta leader (from
//! `/jsz`) and every `/healthz` answers 200, which nats-server only does once it knows the meta
//! leader. When a port turns out to be taken, all of them are picked again and the nodes started
//! anew.
//!
//! ```no_run
//! use syncrepl_testkit::nats::{NatsCluster, NatsServer};
//!
//! let mut nats = NatsServer::builder().token("s3cret").start().expect("nats-server");
//! let url = nats.url(); // nats://127.0.0.1:PORT
//! nats.restart().expect("same port, same JetStream store");
//!
//! let mut cluster = NatsCluster::start().expect("three nodes");
//! let urls = cluster.urls(); // nats://127.0.0.1:P1,nats://127.0.0.1:P2,nats://127.0.0.1:P3
//! cluster.stop_node(0);
//! cluster.wait_ready().expect("the other two keep a meta leader");
//! cluster.start_node(0).expect("back in the cluster");
//! # let _ = (url, urls);
//! ```
//!
//! With Debian's nats-server 2.9.10 one server is ready in about 30 ms and a cluster of three
//! in 0.2 to 0.8 s (once in a while about 2 s). A node started again after
//! [`NatsCluster::stop_node`] answers clients at once but names the meta leader in `/jsz` (and
//! passes `/healthz`) only after 1 to 2 s. A meta leader stopped with SIGTERM hands over to
//! another node within about 50 ms; one killed with SIGKILL is replaced only after about 5 s,
//! during which the survivors still name the dead one ([`NatsCluster::wait_ready`] waits for a
//! leader that runs).
//!
//! nats-server writes JetStream data into a `jetstream/` subdirectory of the store directory it
//! is given (`STORE/jetstream/$G/streams/…`); the store survives [`NatsServer::restart`]. Until a
//! cluster has a meta leader, every `/healthz` it is asked logs a warning
//! (`Healthcheck failed: "JetStream has not established contact with a meta leader"`); the
//! fixture only asks once all nodes name a leader in `/jsz`, so there are few.
//!
//! Every wait is bounded, and signals only ever go to the servers this module started, by PID.

mod cluster;
mod node;
mod server;

use std::time::Duration;

use crate::Error;

pub use self::cluster::NatsCluster;
pub use self::node::NatsNode;
pub use self::server::NatsServer;

/// The name of the single server ([`NatsServer`]); cluster nodes are `n1`, `n2`, ….
pub const SERVER_NAME: &str = "syncrepl-nats";
/// The cluster's name in every node's `cluster` block.
pub const CLUSTER_NAME: &str = "syncrepl";

/// How clients must authenticate ([`NatsOptions::auth`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Anyone may connect (the default).
    #[default]
    None,
    /// A user name and password in the client's `CONNECT` (`--user`/`--pass`, or an
    /// `authorization { user, password }` block for cluster nodes).
    User {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
    /// A token in the client's `CONNECT` (`--auth`, or `authorization { token }`).
    Token(String),
}

/// How the servers are set up. Build it with [`NatsServer::builder`] and the chainable setters,
/// or as a struct literal with `..NatsOptions::default()`; then [`NatsOptions::start`] or
/// [`NatsOptions::start_cluster`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// What clients must send to be let in. Default [`Auth::None`].
    pub auth: Auth,
    /// Whether clients must use TLS, with a server certificate for `127.0.0.1` and `localhost`
    /// signed by a CA made for this run ([`NatsServer::ca_pem`]). The server still sends its
    /// first `INFO` line in clear (with `"tls_required":true`), as NATS 2.9 always does. Routes
    /// between cluster nodes stay in clear. Default false.
    pub tls: bool,
    /// Whether nats-server logs debug messages (`-D`, `debug: true`) into its log. Default false.
    pub debug: bool,
    /// How long a server (or the whole cluster) may take to be ready, and how long
    /// [`NatsCluster::wait_ready`] waits. Default 15 s, enough for a cluster to replace a
    /// meta leader killed with SIGKILL (about 5 s).
    pub start_timeout: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            auth: Auth::None,
            tls: false,
            debug: false,
            start_timeout: Duration::from_secs(15),
        }
    }
}

impl NatsOptions {
    /// Sets [`NatsOptions::auth`] to [`Auth::User`].
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::User {
            user: user.into(),
            password: password.into(),
        };
        self
    }
    /// Sets [`NatsOptions::auth`] to [`Auth::Token`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }
    /// Sets [`NatsOptions::auth`].
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    /// Sets [`NatsOptions::tls`].
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
    /// Sets [`NatsOptions::debug`].
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }
    /// Sets [`NatsOptions::start_timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts one server with these options.
    pub fn start(self) -> Result<NatsServer, Error> {
        NatsServer::try_start(self)
    }

    /// Starts a cluster of `nodes` servers with these options (the same authentication and TLS
    /// on every node's client port).
    pub fn start_cluster(self, nodes: usize) -> Result<NatsCluster, Error> {
        NatsCluster::try_start(self, nodes)
    }

    fn check(&self) -> Result<(), Error> {
        // The values go into quoted strings of a configuration file.
        let plain =
            |v: &str| !v.is_empty() && !v.contains(|c: char| c.is_control() || "\"\\".contains(c));
        let ok = match &self.auth {
            Auth::None => true,
            Auth::User { user, password } => plain(user) && plain(password),
            Auth::Token(token) => plain(token),
        };
        if !ok {
            return Err(Error::Options(
                "a NATS user, password or token is empty or has quotes, backslashes or control characters".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(NatsOptions::default().check().is_ok());
        assert!(NatsOptions::default().user("u", "p").check().is_ok());
        assert!(NatsOptions::default().user("u", "p\"q").check().is_err());
        assert!(NatsOptions::default().token("").check().is_err());
        assert!(NatsOptions::default().token("a\nb").check().is_err());
    }
}
