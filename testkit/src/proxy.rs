//! A scripted man-in-the-middle between the client and a real slapd: it passes LDAP messages from
//! the server one by one through a script that may pass, replace, inject or cut, so that tests can
//! make a real server misbehave on purpose.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do with one message from the server.
pub enum Action {
    /// Forward it unchanged.
    Pass,
    /// Send these bytes instead.
    Replace(Vec<u8>),
    /// Send these bytes, then the message.
    InjectBefore(Vec<u8>),
    /// Close both connections without forwarding it.
    Cut,
}

/// The script: called with the connection number (0-based), the message's index on that
/// connection and the message's bytes.
pub type Script = dyn FnMut(usize, usize, &[u8]) -> Action + Send;

/// A running proxy; dropping it stops accepting and closes what it opened.
pub struct Proxy {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr, script: Box<Script>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script));
        let (stop, count) = (stopping.clone(), connections.clone());
        let accept = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        client.set_nonblocking(false).ok();
                        spawn_pair(n, client, server, script.clone(), stop.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            addr,
            stopping,
            connections,
            accept: Some(accept),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn spawn_pair(
    n: usize,
    client: TcpStream,
    server: TcpStream,
    script: Arc<Mutex<Box<Script>>>,
    stopping: Arc<AtomicBool>,
) {
    let (mut c_read, mut s_write) = (
        client.try_clone().expect("clone client"),
        server.try_clone().expect("clone server"),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if s_write.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    std::thread::spawn(move || {
        s_read
            .set_read_timeout(Some(Duration::from_millis(200)))
            .ok();
        let mut pending = Vec::new();
        let mut index = 0;
        let mut buf = [0u8; 64 * 1024];
        'outer: while !stopping.load(Ordering::SeqCst) {
            match s_read.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => pending.extend_from_slice(&buf[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => break,
            }
            while let Some(len) = frame_len(&pending) {
                let message: Vec<u8> = pending.drain(..len).collect();
                let action = match script.lock() {
                    Ok(mut s) => s(n, index, &message),
                    Err(_) => Action::Pass,
                };
                index += 1;
                let sent = match action {
                    Action::Pass => c_write.write_all(&message),
                    Action::Replace(bytes) => c_write.write_all(&bytes),
                    Action::InjectBefore(bytes) => c_write
                        .write_all(&bytes)
                        .and_then(|()| c_write.write_all(&message)),
                    Action::Cut => break 'outer,
                };
                if sent.is_err() {
                    break 'outer;
                }
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
        let _ = s_read.shutdown(Shutdown::Both);
    });
}

/// The length of the complete LDAPMessage at the start of `buf`, if it is all there (the
/// protocol core's framing; a message it refuses is passed on as it is, byte by byte).
fn frame_len(buf: &[u8]) -> Option<usize> {
    match syncrepl_proto::message_length(buf, usize::MAX) {
        Ok(syncrepl_proto::Frame::Complete(n)) => Some(n),
        Ok(syncrepl_proto::Frame::Partial(_)) => None,
        Err(_) => (!buf.is_empty()).then_some(buf.len()),
    }
}
