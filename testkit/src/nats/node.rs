//! One nats-server process of a single server or a cluster: its ports, files and log, starting
//! it, asking it whether it is ready, and stopping it by its PID.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::cluster::meta_leader_of;
use crate::process::{output_since, sbin, tail, ChildLog};
use crate::Error;

/// One nats-server process of a [`NatsServer`](super::NatsServer) or a
/// [`NatsCluster`](super::NatsCluster): where it listens, where it keeps its files, and its PID
/// while it runs.
#[derive(Debug)]
pub struct NatsNode {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) port: u16,
    pub(super) monitor_port: u16,
    pub(super) cluster_port: Option<u16>,
    /// nats-server's arguments; a cluster node's are `-c CONFIG`.
    pub(super) args: Vec<OsString>,
    pub(super) child: Option<Child>,
    /// The log's length before the last start, to tell that start's output from earlier ones'.
    pub(super) log_start: u64,
}

impl NatsNode {
    /// Its `server_name`: [`SERVER_NAME`](super::SERVER_NAME) for a single server, `n1`, `n2`,
    /// … in a cluster.
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

    pub(super) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts nats-server (it must not be running).
    pub(super) fn spawn(&mut self) -> Result<(), Error> {
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
    pub(super) fn failure(&self, reason: String) -> Error {
        let path = self.log_path();
        let new = output_since(&path, self.log_start);
        Error::Nats {
            port_in_use: new.contains("address already in use"),
            reason: format!("{}: {reason}", self.name),
            log: tail(&path, 4000),
        }
    }

    /// An error when the server we started has exited (it is then forgotten).
    pub(super) fn check_alive(&mut self) -> Result<(), Error> {
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
    pub(super) fn answers(&self) -> bool {
        client_info(self.addr()).is_some_and(|info| info.contains("\"jetstream\":true"))
    }

    /// Stops the server with SIGTERM to its PID, waits up to 10 s, then SIGKILL.
    pub(super) fn stop(&mut self) {
        crate::process::terminate(self.child.take(), Duration::from_secs(10));
    }

    /// Kills the server with SIGKILL to its PID.
    pub(super) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The temporary directory (kept with [`crate::KEEP_ENV`]) and the guard that removes it.
pub(super) fn temp_dir(prefix: &str) -> Result<(PathBuf, Option<tempfile::TempDir>), Error> {
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
pub(super) fn make_node_dir(dir: &Path) -> Result<(), Error> {
    let store = dir.join("jetstream");
    std::fs::create_dir_all(&store).map_err(|e| Error::io(format!("make {}", store.display()), e))
}

/// How long to sleep after `pause`: doubling up to `max`.
pub(super) fn backoff(pause: &mut Duration, max: Duration) {
    std::thread::sleep(*pause);
    *pause = (*pause * 2).min(max);
}

/// The first line a NATS server sends a new client, `INFO {…}` without the `INFO ` and the
/// line end; `None` when nothing like it comes within a second.
pub(super) fn client_info(addr: SocketAddr) -> Option<String> {
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
pub(super) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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
