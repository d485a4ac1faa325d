//! A single nats-server with JetStream.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::node::{backoff, make_node_dir, temp_dir, NatsNode};
use super::{Auth, NatsOptions, SERVER_NAME};
use crate::certs;
use crate::host::free_port;
use crate::Error;

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
