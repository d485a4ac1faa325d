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

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs;
use crate::host::free_port;
use crate::process::{output_since, sbin, tail, ChildLog};
use crate::Error;

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

/// One nats-server process of a [`NatsServer`] or a [`NatsCluster`]: where it listens, where it
/// keeps its files, and its PID while it runs.
#[derive(Debug)]
pub struct NatsNode {
    name: String,
    dir: PathBuf,
    port: u16,
    monitor_port: u16,
    cluster_port: Option<u16>,
    /// nats-server's arguments; a cluster node's are `-c CONFIG`.
    args: Vec<OsString>,
    child: Option<Child>,
    /// The log's length before the last start, to tell that start's output from earlier ones'.
    log_start: u64,
}

impl NatsNode {
    /// Its `server_name`: [`SERVER_NAME`] for a single server, `n1`, `n2`, … in a cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory: the log, a cluster node's `nats.conf`, and the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The JetStream store directory it is given (`-sd`, `store_dir`); nats-server keeps its
    /// data in `jetstream/` below it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("jetstream")
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client listener's address.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The HTTP monitoring port on 127.0.0.1 (`/varz`, `/jsz`, `/healthz`, …).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// `http://127.0.0.1:MONITOR`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The route port of a cluster node, `None` for a single server.
    pub fn cluster_port(&self) -> Option<u16> {
        self.cluster_port
    }

    /// The PID of the running server, `None` when it was stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The path of nats-server's output (every start appends to it).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// What nats-server wrote so far.
    pub fn log(&self) -> String {
        tail(&self.log_path(), usize::MAX)
    }

    /// `GET PATH` on the monitoring port: the status code and body, `None` when it does not
    /// answer within a second or two. For example `/jsz`, `/healthz`, `/varz`, `/routez`.
    pub fn monitor(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.monitor_port, path)
    }

    /// The JetStream meta leader's name this node reports in `/jsz`, `None` when it knows none
    /// or does not answer. After the leader was killed it still names it until a new one is
    /// elected.
    pub fn meta_leader(&self) -> Option<String> {
        let (status, body) = self.monitor("/jsz")?;
        if status != 200 {
            return None;
        }
        meta_leader_of(&body)
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts nats-server (it must not be running).
    fn spawn(&mut self) -> Result<(), Error> {
        let log_path = self.log_path();
        let log = ChildLog::open(&log_path)?;
        let log_start = log.start;
        let child = Command::new(sbin("nats-server"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.stdout)
            .stderr(log.stderr)
            .spawn()
            .map_err(|e| Error::io(format!("run {}", sbin("nats-server").display()), e))?;
        self.child = Some(child);
        self.log_start = log_start;
        Ok(())
    }

    /// [`Error::Nats`] with `reason` and the end of the log, and whether the output since the
    /// last start says a port was taken.
    fn failure(&self, reason: String) -> Error {
        let path = self.log_path();
        let new = output_since(&path, self.log_start);
        Error::Nats {
            port_in_use: new.contains("address already in use"),
            reason: format!("{}: {reason}", self.name),
            log: tail(&path, 4000),
        }
    }

    /// An error when the server we started has exited (it is then forgotten).
    fn check_alive(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.failure("it is not running".into()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(self.failure(format!("it exited with {status}")))
            }
            Err(e) => Err(Error::io("wait for nats-server", e)),
        }
    }

    /// Whether a client gets an `INFO` line that says JetStream is on.
    fn answers(&self) -> bool {
        client_info(self.addr()).is_some_and(|info| info.contains("\"jetstream\":true"))
    }

    /// Stops the server with SIGTERM to its PID, waits up to 10 s, then SIGKILL.
    fn stop(&mut self) {
        crate::process::terminate(self.child.take(), Duration::from_secs(10));
    }

    /// Kills the server with SIGKILL to its PID.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The temporary directory (kept with [`crate::KEEP_ENV`]) and the guard that removes it.
fn temp_dir(prefix: &str) -> Result<(PathBuf, Option<tempfile::TempDir>), Error> {
    let (dir, temp) = crate::host::temp_dir(prefix)?;
    if dir.to_string_lossy().contains(['"', '\\', '\n']) {
        // The paths go into quoted strings of configuration files.
        return Err(Error::Options(format!(
            "the directory {} has quotes or backslashes; set TMPDIR to a plainer path",
            dir.display()
        )));
    }
    Ok((dir, temp))
}

/// Makes `dir` (and its store directory) for a node.
fn make_node_dir(dir: &Path) -> Result<(), Error> {
    let store = dir.join("jetstream");
    std::fs::create_dir_all(&store).map_err(|e| Error::io(format!("make {}", store.display()), e))
}

/// How long to sleep after `pause`: doubling up to `max`.
fn backoff(pause: &mut Duration, max: Duration) {
    std::thread::sleep(*pause);
    *pause = (*pause * 2).min(max);
}

/// A running nats-server with JetStream in its own temporary directory; dropping it stops the
/// server and removes the directory.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsOptions,
    node: NatsNode,
    dir: PathBuf,
    /// Removes the directory when dropped; `None` when it is kept.
    _temp: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Default options, to change with the chainable setters and then [`NatsOptions::start`].
    pub fn builder() -> NatsOptions {
        NatsOptions::default()
    }

    /// Starts a server with the default options: no authentication, no TLS.
    pub fn start() -> Result<NatsServer, Error> {
        NatsServer::try_start(NatsOptions::default())
    }

    /// Starts a server: directory, certificates if asked for, then nats-server on free ports
    /// (new ones when another process takes one first).
    pub fn try_start(options: NatsOptions) -> Result<NatsServer, Error> {
        options.check()?;
        let (dir, temp) = temp_dir("syncrepl-nats-")?;
        make_node_dir(&dir)?;
        if options.tls {
            certs::write_all(&dir)?;
        }
        let node = NatsNode {
            name: SERVER_NAME.into(),
            dir: dir.clone(),
            port: 0,
            monitor_port: 0,
            cluster_port: None,
            args: Vec::new(),
            child: None,
            log_start: 0,
        };
        let mut server = NatsServer {
            options,
            node,
            dir,
            _temp: temp,
        };
        let mut attempt = 0;
        loop {
            server.node.port = free_port(&[])?;
            server.node.monitor_port = free_port(&[server.node.port])?;
            server.node.args = server.args();
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(Error::Nats {
                    port_in_use: true, ..
                }) if attempt < 5 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// nats-server's command line for the current ports.
    fn args(&self) -> Vec<OsString> {
        let node = &self.node;
        let mut args: Vec<OsString> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            node.port.to_string().into(),
            "-m".into(),
            node.monitor_port.to_string().into(),
            "-n".into(),
            node.name.clone().into(),
            "-js".into(),
            "-sd".into(),
            node.store_dir().into(),
        ];
        match &self.options.auth {
            Auth::None => {}
            Auth::User { user, password } => {
                args.extend([
                    "--user".into(),
                    user.into(),
                    "--pass".into(),
                    password.into(),
                ]);
            }
            Auth::Token(token) => args.extend(["--auth".into(), token.into()]),
        }
        if self.options.tls {
            args.extend([
                "--tls".into(),
                "--tlscert".into(),
                self.dir.join(certs::SERVER_PEM).into(),
                "--tlskey".into(),
                self.dir.join(certs::SERVER_KEY).into(),
            ]);
        }
        if self.options.debug {
            args.push("-D".into());
        }
        args
    }

    /// Starts nats-server on the current ports and waits until it is ready.
    fn launch(&mut self) -> Result<(), Error> {
        self.node.spawn()?;
        let deadline = Instant::now() + self.options.start_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            self.node.check_alive()?;
            if self.node.answers()
                && self
                    .node
                    .monitor("/healthz")
                    .is_some_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Our own child, which never became ready.
                self.node.kill9();
                return Err(self.node.failure(format!(
                    "it was not ready on {} within {:?}",
                    self.node.addr(),
                    self.options.start_timeout
                )));
            }
            backoff(&mut pause, Duration::from_millis(20));
        }
    }

    /// The options it was started with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The process: ports, directories, PID, monitoring.
    pub fn node(&self) -> &NatsNode {
        &self.node
    }

    /// Its temporary directory (`nats.log`, the store, the certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The JetStream store directory (`-sd`); the data is in `jetstream/` below it.
    pub fn store_dir(&self) -> PathBuf {
        self.node.store_dir()
    }

    /// `nats://127.0.0.1:PORT` (with [`NatsOptions::tls`] a client upgrades to TLS there, as the
    /// server's `INFO` requires).
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// The client listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.node.addr()
    }

    /// The HTTP monitoring port on 127.0.0.1.
    pub fn monitor_port(&self) -> u16 {
        self.node.monitor_port
    }

    /// The CA certificate (PEM) that signed the server's certificate, `None` without TLS.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.join(certs::CA_PEM))
    }

    /// The PID of the running server, `None` after [`NatsServer::stop`] or
    /// [`NatsServer::kill9`].
    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// Whether the server is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// The path of nats-server's output.
    pub fn log_path(&self) -> PathBuf {
        self.node.log_path()
    }

    /// What nats-server wrote so far (every start appends).
    pub fn log(&self) -> String {
        self.node.log()
    }

    /// Kills the server abruptly (SIGKILL to our child), as a crash would.
    pub fn kill9(&mut self) {
        self.node.kill9();
    }

    /// Stops the server with SIGTERM (it flushes JetStream and exits), waits up to 10 s, then
    /// SIGKILL. Does nothing when it is not running.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Stops the server if it runs and starts it again on the same ports with the same store,
    /// so that clients can reconnect to the same URL and find their streams; retries while
    /// another process holds a port, up to [`NatsOptions::start_timeout`].
    pub fn restart(&mut self) -> Result<(), Error> {
        self.node.stop();
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            match self.launch() {
                Err(Error::Nats {
                    port_in_use: true, ..
                }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => return other,
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.node.stop();
        // The temporary directory goes with `_temp`, dropped after this.
    }
}

/// Several nats-servers on 127.0.0.1 in one cluster with JetStream, each in its own
/// subdirectory `n1/`, `n2/`, … of one temporary directory; dropping it stops them all and
/// removes the directory. Nodes are numbered from 0 in the methods (`node(0)` is `n1`).
#[derive(Debug)]
pub struct NatsCluster {
    options: NatsOptions,
    nodes: Vec<NatsNode>,
    dir: PathBuf,
    /// Removes the directory when dropped; `None` when it is kept.
    _temp: Option<tempfile::TempDir>,
}

impl NatsCluster {
    /// Default options, to change with the chainable setters and then
    /// [`NatsOptions::start_cluster`].
    pub fn builder() -> NatsOptions {
        NatsOptions::default()
    }

    /// Starts a cluster of three nodes with the default options.
    pub fn start() -> Result<NatsCluster, Error> {
        NatsCluster::try_start(NatsOptions::default(), 3)
    }

    /// Starts a cluster of `nodes` nodes (1 to 9; three is what JetStream needs to survive the
    /// loss of one) and waits until they have a meta leader.
    pub fn try_start(options: NatsOptions, nodes: usize) -> Result<NatsCluster, Error> {
        options.check()?;
        if !(1..=9).contains(&nodes) {
            return Err(Error::Options(format!(
                "a cluster of {nodes} nodes: this fixture makes 1 to 9"
            )));
        }
        let (dir, temp) = temp_dir("syncrepl-natsc-")?;
        if options.tls {
            certs::write_all(&dir)?;
        }
        let mut cluster = NatsCluster {
            options,
            nodes: Vec::with_capacity(nodes),
            dir,
            _temp: temp,
        };
        for i in 1..=nodes {
            let dir = cluster.dir.join(format!("n{i}"));
            make_node_dir(&dir)?;
            cluster.nodes.push(NatsNode {
                name: format!("n{i}"),
                args: vec!["-c".into(), dir.join("nats.conf").into()],
                dir,
                port: 0,
                monitor_port: 0,
                cluster_port: None,
                child: None,
                log_start: 0,
            });
        }
        let mut attempt = 0;
        loop {
            match cluster.launch_all() {
                Ok(()) => return Ok(cluster),
                Err(Error::Nats {
                    port_in_use: true, ..
                }) if attempt < 5 => {
                    attempt += 1;
                    // The nodes may have written peer state for the old ports: start afresh.
                    for node in &mut cluster.nodes {
                        node.stop();
                        let store = node.store_dir();
                        let _ = std::fs::remove_dir_all(&store);
                        make_node_dir(&node.dir)?;
                    }
                }
                Err(e) => {
                    for node in &mut cluster.nodes {
                        node.stop();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Picks new ports for every node, writes the configurations, starts all nodes and waits
    /// until they are ready.
    fn launch_all(&mut self) -> Result<(), Error> {
        let mut taken = Vec::with_capacity(3 * self.nodes.len());
        for node in &mut self.nodes {
            let mut pick = || -> Result<u16, Error> {
                let port = free_port(&taken)?;
                taken.push(port);
                Ok(port)
            };
            node.port = pick()?;
            node.monitor_port = pick()?;
            node.cluster_port = Some(pick()?);
        }
        for i in 0..self.nodes.len() {
            let conf = self.node_conf(i);
            let path = self.nodes[i].dir.join("nats.conf");
            std::fs::write(&path, conf)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        for node in &mut self.nodes {
            node.spawn()?;
        }
        self.wait_ready()
    }

    /// The configuration file of node `i`, with routes to every other node.
    fn node_conf(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let mut c = String::from("# Written by syncrepl-testkit for one test run.\n");
        let _ = writeln!(
            c,
            "server_name: \"{}\"\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n\
             cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{}\"\n  routes: [",
            node.name,
            node.port,
            node.monitor_port,
            node.store_dir().display(),
            node.cluster_port.unwrap_or_default(),
        );
        for (j, other) in self.nodes.iter().enumerate() {
            if j != i {
                let _ = writeln!(
                    c,
                    "    \"nats://127.0.0.1:{}\"",
                    other.cluster_port.unwrap_or_default()
                );
            }
        }
        c.push_str("  ]\n}\n");
        match &self.options.auth {
            Auth::None => {}
            Auth::User { user, password } => {
                let _ = writeln!(
                    c,
                    "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}"
                );
            }
            Auth::Token(token) => {
                let _ = writeln!(c, "authorization {{\n  token: \"{token}\"\n}}");
            }
        }
        if self.options.tls {
            let _ = writeln!(
                c,
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}",
                self.dir.join(certs::SERVER_PEM).display(),
                self.dir.join(certs::SERVER_KEY).display()
            );
        }
        if self.options.debug {
            c.push_str("debug: true\n");
        }
        c
    }

    /// Waits (up to [`NatsOptions::start_timeout`]) until every node that was started and not
    /// stopped answers clients, all of them name the same meta leader, which runs, and every
    /// `/healthz` is 200: after [`NatsCluster::stop_node`] or [`NatsCluster::kill9_node`], before
    /// relying on the rest. That needs a majority of the nodes running. A node that exited
    /// meanwhile is an error.
    pub fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.start_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            for node in &mut self.nodes {
                if node.child.is_some() {
                    node.check_alive()?;
                }
            }
            let detail = match self.readiness() {
                Ok(()) => return Ok(()),
                Err(detail) => detail,
            };
            if Instant::now() >= deadline {
                let index = self
                    .nodes
                    .iter()
                    .position(|n| n.child.is_some())
                    .unwrap_or_default();
                return Err(self.nodes[index].failure(format!(
                    "the cluster was not ready within {:?}: {detail}",
                    self.options.start_timeout
                )));
            }
            backoff(&mut pause, Duration::from_millis(50));
        }
    }

    /// `Ok` when the running nodes are ready (see [`NatsCluster::wait_ready`]), else what is
    /// missing.
    fn readiness(&self) -> Result<(), String> {
        let running: Vec<&NatsNode> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        if running.is_empty() {
            return Err("no node runs".into());
        }
        if let Some(node) = running.iter().find(|n| !n.answers()) {
            return Err(format!("{} does not answer clients", node.name));
        }
        let leaders: Vec<Option<String>> = running.iter().map(|n| n.meta_leader()).collect();
        let agreed = leaders
            .first()
            .cloned()
            .flatten()
            .filter(|l| leaders.iter().all(|o| o.as_ref() == Some(l)));
        match agreed {
            Some(l) if running.iter().any(|n| n.name == l) => {}
            _ => {
                let names: Vec<&str> = running.iter().map(|n| n.name.as_str()).collect();
                return Err(format!(
                    "running nodes {names:?} name the meta leaders {leaders:?}"
                ));
            }
        }
        for node in &running {
            match node.monitor("/healthz") {
                Some((200, _)) => {}
                other => return Err(format!("{}'s /healthz: {other:?}", node.name)),
            }
        }
        Ok(())
    }

    /// The options it was started with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// Its temporary directory (`n1/`, `n2/`, … and the certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no nodes (never: it has 1 to 9).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (from 0; its name is `n{i+1}`).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn node(&self, i: usize) -> &NatsNode {
        &self.nodes[i]
    }

    /// All nodes, `n1` first.
    pub fn nodes(&self) -> &[NatsNode] {
        &self.nodes
    }

    /// Every node's client URL, comma-joined as the Go client, the `nats` tool and nats.py take
    /// them: `nats://127.0.0.1:P1,nats://127.0.0.1:P2,…`. (async-nats wants a list:
    /// [`NatsCluster::url_list`].)
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every node's client URL, `n1`'s first.
    pub fn url_list(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// The CA certificate (PEM) that signed the nodes' certificate, `None` without TLS.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.join(certs::CA_PEM))
    }

    /// The index of the node the running nodes agree is the JetStream meta leader, `None` while
    /// they do not agree or name none.
    pub fn meta_leader(&self) -> Option<usize> {
        let mut leaders = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(NatsNode::meta_leader);
        let first = leaders.next().flatten()?;
        if !leaders.all(|l| l.as_ref() == Some(&first)) {
            return None;
        }
        self.nodes.iter().position(|n| n.name == first)
    }

    /// Whether node `i` runs (it was started and has not exited).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Stops node `i` with SIGTERM (a meta leader hands over first), waits up to 10 s, then
    /// SIGKILL. Does not wait for the others: see [`NatsCluster::wait_ready`]. Does nothing
    /// when it is not running.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Kills node `i` with SIGKILL, as a crash would. When it was the meta leader, the others
    /// elect a new one after about 5 s.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn kill9_node(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// Starts node `i` again on the same ports with its store, and waits until it and every
    /// other running node are ready ([`NatsCluster::wait_ready`]); retries while another
    /// process holds one of its ports, up to [`NatsOptions::start_timeout`]. Only waits when
    /// it runs already.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn start_node(&mut self, i: usize) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.start_timeout;
        if !self.nodes[i].is_running() {
            // Reaps a node that exited by itself.
            self.nodes[i].stop();
            loop {
                self.nodes[i].spawn()?;
                match self.wait_ready() {
                    Err(Error::Nats {
                        port_in_use: true, ..
                    }) if Instant::now() < deadline => {
                        self.nodes[i].stop();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => return other,
                }
            }
        }
        self.wait_ready()
    }

    /// Stops node `i` if it runs and starts it again ([`NatsCluster::start_node`]).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn restart_node(&mut self, i: usize) -> Result<(), Error> {
        self.nodes[i].stop();
        self.start_node(i)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        // The temporary directory goes with `_temp`, dropped after this.
    }
}

/// The first line a NATS server sends a new client, `INFO {…}` without the `INFO ` and the
/// line end; `None` when nothing like it comes within a second.
fn client_info(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // An INFO line is a few hundred bytes; a cluster's lists its peers' URLs too.
    while !line.ends_with(b"\r\n") && line.len() < 64 * 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&line);
    let (first, _) = line.split_once("\r\n")?;
    first.strip_prefix("INFO ").map(str::to_owned)
}

/// `GET PATH` over HTTP/1.0 to 127.0.0.1:`port`: the status and body, `None` when the server
/// does not answer within a second or two.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    // HTTP/1.0: the server closes the connection after the response, which has no chunks.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.take(4 << 20).read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The `leader` of the `meta_cluster` object in a `/jsz` body, if it names one. Server names
/// here are plain (`n1`, …), so the string is taken as it stands, without unescaping.
fn meta_leader_of(jsz: &str) -> Option<String> {
    let rest = &jsz[jsz.find("\"meta_cluster\"")?..];
    let object = &rest[rest.find('{')?..];
    // The object ends at its matching brace (its replicas are objects too); no server name or
    // cluster name here has braces or quotes.
    let mut depth = 0usize;
    let mut end = object.len();
    for (i, b) in object.bytes().enumerate() {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let object = &object[..end];
    let after = &object[object.find("\"leader\"")? + "\"leader\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let name = &value[..value.find('"')?];
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_leader_comes_from_meta_cluster() {
        let leader = "{\n  \"server_id\": \"NB\",\n  \"meta_cluster\": {\n    \"name\": \"syncrepl\",\n    \
             \"leader\": \"n1\",\n    \"peer\": \"fjFyEjc1\",\n    \"replicas\": [\n      {\n        \
             \"name\": \"n2\",\n        \"current\": true\n      }\n    ],\n    \"cluster_size\": 3\n  }\n}";
        assert_eq!(meta_leader_of(leader).as_deref(), Some("n1"));
        let follower =
            "{\"meta_cluster\":{\"name\":\"syncrepl\",\"leader\":\"n3\",\"cluster_size\":3}}";
        assert_eq!(meta_leader_of(follower).as_deref(), Some("n3"));
        let none = "{\"meta_cluster\": {\"name\": \"syncrepl\", \"peer\": \"x\", \"cluster_size\": 3}, \"leader\": \"elsewhere\"}";
        assert_eq!(meta_leader_of(none), None);
        assert_eq!(meta_leader_of("{\"streams\": 0}"), None);
        assert_eq!(
            meta_leader_of("{\"meta_cluster\": {\"leader\": \"\"}}"),
            None
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(NatsOptions::default().check().is_ok());
        assert!(NatsOptions::default().user("u", "p").check().is_ok());
        assert!(NatsOptions::default().user("u", "p\"q").check().is_err());
        assert!(NatsOptions::default().token("").check().is_err());
        assert!(NatsOptions::default().token("a\nb").check().is_err());
    }

    #[test]
    fn cluster_configurations_route_to_the_others() {
        let node = |i: u16| NatsNode {
            name: format!("n{i}"),
            dir: PathBuf::from(format!("/t/n{i}")),
            port: 4000 + i,
            monitor_port: 8000 + i,
            cluster_port: Some(6000 + i),
            args: Vec::new(),
            child: None,
            log_start: 0,
        };
        let cluster = NatsCluster {
            options: NatsOptions::default().token("tok").tls(true),
            nodes: vec![node(1), node(2), node(3)],
            dir: PathBuf::from("/t"),
            _temp: None,
        };
        let conf = cluster.node_conf(1);
        for line in [
            "server_name: \"n2\"\n",
            "listen: \"127.0.0.1:4002\"\n",
            "http: \"127.0.0.1:8002\"\n",
            "  store_dir: \"/t/n2/jetstream\"\n",
            "  name: \"syncrepl\"\n",
            "  listen: \"127.0.0.1:6002\"\n",
            "    \"nats://127.0.0.1:6001\"\n",
            "    \"nats://127.0.0.1:6003\"\n",
            "  token: \"tok\"\n",
            "  cert_file: \"/t/server.pem\"\n",
        ] {
            assert!(conf.contains(line), "{line:?} in\n{conf}");
        }
        assert!(
            !conf.contains("nats://127.0.0.1:6002"),
            "no route to itself:\n{conf}"
        );
        assert_eq!(
            cluster.urls(),
            "nats://127.0.0.1:4001,nats://127.0.0.1:4002,nats://127.0.0.1:4003"
        );
    }
}
