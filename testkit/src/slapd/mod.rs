//! A throwaway OpenLDAP slapd with the syncprov overlay on 127.0.0.1, for one test.
//!
//! [`Slapd::builder`] returns [`Options`]; its chainable setters choose the data and the
//! configuration, and [`Options::start`] then
//!
//! 1. makes a temporary directory (removed again when the [`Slapd`] is dropped; set
//!    `SYNCREPL_TESTKIT_KEEP=1` to keep it for a post-mortem),
//! 2. writes certificates (see [`Slapd::ca_pem`]), a `slapd.conf` and the sample data as LDIF,
//! 3. bulk-loads the data with `slapadd -q -w` (which also writes the contextCSN),
//! 4. picks free ports on 127.0.0.1 and starts `slapd -d none` in the foreground as our child, with
//!    its output in `slapd.log` in that directory, and
//! 5. waits (bounded) until it answers an LDAP bind.
//!
//! Accounts (for the default suffix `dc=example,dc=com`; with another suffix the same RDNs sit
//! under it):
//!
//! | who | DN | password | may |
//! | --- | --- | --- | --- |
//! | admin (rootdn) | [`ADMIN_DN`] | [`ADMIN_PW`] | everything |
//! | reader | [`READER_DN`] | [`READER_PW`] | read everything, `userPassword` included |
//! | anonymous | | | read everything but `userPassword` (off with [`Options::anonymous_read`]) |
//! | SASL EXTERNAL over ldapi | any local uid/gid, root included | | is the reader |
//! | SASL EXTERNAL with the client certificate | `cn=reader,o=syncrepl tests` | | is the reader |
//! | SASL GSSAPI ([`Options::gssapi`]) | principal `reader@REALM` | a ticket | is the reader |
//! | SASL GSSAPI | any other principal `NAME@REALM` | a ticket | is `uid=NAME,ou=people,SUFFIX` |
//!
//! Every wait is bounded, and signals only ever go to the child this module started, by its PID.

mod client;
mod config;
mod options;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use self::client::{Bind, Scope, Transport};
pub use self::options::{Gssapi, Options, Peer, ReplicaOf};
use crate::certs;
pub use crate::error::Error;
use crate::host::{free_port, temp_dir};
pub use crate::ldif::{generate_ldif, person_dn, person_ldif, person_password};
use crate::process::{output_since, sbin, tail, ChildLog};
pub use crate::tools::Output;

/// The default suffix.
pub const BASE: &str = "dc=example,dc=com";
/// The rootdn under the default suffix.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// The rootdn's password.
pub const ADMIN_PW: &str = "adminpw";
/// The read-everything account under the default suffix.
pub const READER_DN: &str = "cn=reader,dc=example,dc=com";
/// The reader's password.
pub const READER_PW: &str = "readerpw";

/// A running slapd in its own temporary directory; dropping it stops the server and removes the
/// directory.
#[derive(Debug)]
pub struct Slapd {
    options: Options,
    dir: PathBuf,
    /// Removes the directory when dropped; `None` when it is kept.
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
}

/// Writes the data's LDIF to `data` and bulk-loads it with `slapadd -q -w` (which also writes
/// the contextCSN), with `-S` and the serverID if there is one.
fn load(options: &Options, conf: &Path, data: &Path) -> Result<(), Error> {
    let written = File::create(data).and_then(|f| {
        let mut out = BufWriter::with_capacity(1 << 20, f);
        options.write_ldif(&mut out)?;
        out.flush()
    });
    written.map_err(|e| Error::io(format!("write {}", data.display()), e))?;
    let mut slapadd = Command::new(sbin("slapadd"));
    slapadd.args(["-q", "-w"]);
    if let Some(id) = options.server_id {
        slapadd.arg("-S").arg(id.to_string());
    }
    slapadd.arg("-f").arg(conf).arg("-l").arg(data);
    // Loading takes about 30 µs an entry here; allow far more.
    let budget = Duration::from_secs(60) + Duration::from_millis(2) * (options.people as u32);
    let out = crate::tools::run(slapadd, None, budget)?;
    if !out.success() {
        return Err(Error::Load {
            code: out.code,
            output: format!("{}{}", out.stdout, out.stderr),
        });
    }
    // The data is in the database now; its LDIF is only a cost on disk.
    let _ = std::fs::remove_file(data);
    Ok(())
}

/// `ldapi://` and the path with every byte but unreserved ones percent-encoded.
fn ldapi_url_for(path: &Path) -> String {
    let mut url = String::from("ldapi://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

/// Whether an LDAP server answers an anonymous bind on `addr` (any BindResponse will do).
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    // BindRequest, message 1, version 3, empty name, simple empty password (RFC 4511 §4.2).
    let bind = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    if stream.write_all(&bind).is_err() {
        return false;
    }
    let mut response = [0u8; 7];
    let ok = stream.read_exact(&mut response).is_ok()
        && response[0] == 0x30
        && response[2..6] == [0x02, 0x01, 0x01, 0x61];
    // UnbindRequest, message 2.
    let _ = stream.write_all(&[0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00]);
    ok
}

impl Slapd {
    /// Default options, to change with the chainable setters and then [`Options::start`].
    pub fn builder() -> Options {
        Options::default()
    }

    /// Starts a server, panicking with slapd's output if it cannot.
    pub fn start(options: Options) -> Slapd {
        match Slapd::try_start(options) {
            Ok(slapd) => slapd,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a server: directory, certificates, configuration, bulk load, then slapd itself.
    pub fn try_start(options: Options) -> Result<Slapd, Error> {
        let mut slapd = Slapd::prepare(options)?;
        slapd.write_conf()?;
        if slapd.options.replica_of.is_none() {
            slapd.load()?;
        }
        // Another process may take a port between our check and slapd's bind: try new ones.
        let mut attempt = 0;
        loop {
            slapd.port = free_port(&[])?;
            slapd.tls_port = if slapd.options.tls {
                Some(free_port(&[slapd.port])?)
            } else {
                None
            };
            match slapd.launch() {
                Ok(()) => return Ok(slapd),
                Err(Error::Start {
                    port_in_use: true, ..
                }) if attempt < 5 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// A server that is not running yet: its temporary directory with an empty `db/` and the
    /// certificates, no configuration, no ports.
    pub(crate) fn prepare(options: Options) -> Result<Slapd, Error> {
        options.check()?;
        let (dir, temp) = temp_dir("syncrepl-slapd-")?;
        let socket = dir.join("ldapi");
        if socket.as_os_str().len() > 100 {
            return Err(Error::Options(format!(
                "the socket path {} is too long for a Unix socket; set TMPDIR to a shorter path",
                socket.display()
            )));
        }
        std::fs::create_dir(dir.join("db"))
            .map_err(|e| Error::io(format!("make {}/db", dir.display()), e))?;
        if options.tls {
            certs::write_all(&dir)?;
        }
        Ok(Slapd {
            port: 0,
            tls_port: None,
            options,
            dir,
            _temp: temp,
            child: None,
        })
    }

    /// Writes `slapd.conf` from the options (again, after they changed).
    pub(crate) fn write_conf(&self) -> Result<(), Error> {
        self.options.check()?;
        let conf = self.dir.join("slapd.conf");
        std::fs::write(&conf, self.options.slapd_conf(&self.dir))
            .map_err(|e| Error::io(format!("write {}", conf.display()), e))
    }

    /// Bulk-loads the data into the empty database (see [`load`]).
    pub(crate) fn load(&self) -> Result<(), Error> {
        load(
            &self.options,
            &self.dir.join("slapd.conf"),
            &self.dir.join("data.ldif"),
        )
    }

    /// The options, to change before [`Slapd::write_conf`].
    pub(crate) fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Sets the ports the next launch listens on.
    pub(crate) fn set_ports(&mut self, port: u16, tls_port: Option<u16>) {
        self.port = port;
        self.tls_port = tls_port;
    }

    /// Starts slapd on the current ports and waits until it answers.
    pub(crate) fn launch(&mut self) -> Result<(), Error> {
        // A killed slapd leaves its socket and PID file behind; both are ours.
        let _ = std::fs::remove_file(self.ldapi_path());
        let _ = std::fs::remove_file(self.dir.join("slapd.pid"));
        let log_path = self.log_path();
        let log = ChildLog::open(&log_path)?;
        let log_start = log.start;
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(tls) = self.tls_port {
            let _ = write!(urls, " ldaps://127.0.0.1:{tls}/");
        }
        let _ = write!(urls, " {}", self.ldapi_url());
        // With -d, slapd stays in the foreground (it never detaches while debugging). Level
        // `none` still prints what slapd always logs (start-up errors such as a port in use),
        // which `-d 0` would silence.
        let mut command = Command::new(sbin("slapd"));
        command
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .args(["-h", &urls, "-d", "none"]);
        for level in self.options.loglevel.split_whitespace() {
            if level != "none" && level != "0" {
                command.args(["-d", level]);
            }
        }
        if let Some(g) = &self.options.gssapi {
            crate::kerberos::clear_krb5_env(&mut command);
            let mut keytab = std::ffi::OsString::from("FILE:");
            keytab.push(&g.keytab);
            let mut no_client_keytab = std::ffi::OsString::from("FILE:");
            no_client_keytab.push(self.dir.join("no-such.keytab"));
            command
                .env("KRB5_CONFIG", &g.krb5_config)
                .env("KRB5_KTNAME", keytab)
                .env("KRB5RCACHEDIR", &self.dir)
                .env("KRB5CCNAME", "MEMORY:slapd")
                .env("KRB5_CLIENT_KTNAME", no_client_keytab);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.stdout)
            .stderr(log.stderr)
            .spawn()
            .map_err(|e| Error::io(format!("run {}", sbin("slapd").display()), e))?;
        let deadline = Instant::now() + self.options.start_timeout;
        let addr = self.addr();
        let failure = |reason: String| {
            let new = output_since(&log_path, log_start);
            Error::Start {
                port_in_use: new.contains("Address already in use") || new.contains("errno=98"),
                reason,
                log: tail(&log_path, 4000),
            }
        };
        let mut pause = Duration::from_millis(2);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(failure(format!("it exited with {status}"))),
                Ok(None) => {}
                Err(e) => return Err(Error::io("wait for slapd", e)),
            }
            if answers(addr) {
                self.child = Some(child);
                return Ok(());
            }
            // Whatever answered (or not), a slapd that exited meanwhile is reported as such.
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            if Instant::now() >= deadline {
                // Our own child, which never answered.
                let _ = child.kill();
                let _ = child.wait();
                return Err(failure(format!(
                    "it did not answer on {addr} within {:?}",
                    self.options.start_timeout
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The options it was started with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Its temporary directory (configuration, database in `db/`, certificates, `slapd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of slapd's output (loglevel [`Options::loglevel`]).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("slapd.log")
    }

    /// What slapd wrote so far.
    pub fn log(&self) -> String {
        tail(&self.log_path(), usize::MAX)
    }

    /// The PID of the running slapd, `None` after [`Slapd::stop`] or [`Slapd::kill9`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether slapd is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The suffix, e.g. `dc=example,dc=com`.
    pub fn base_dn(&self) -> &str {
        &self.options.suffix
    }

    /// The rootdn, `cn=admin,SUFFIX`.
    pub fn admin_dn(&self) -> String {
        self.options.admin_dn()
    }

    /// The rootdn's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PW
    }

    /// The read-everything account, `cn=reader,SUFFIX`.
    pub fn reader_dn(&self) -> String {
        self.options.reader_dn()
    }

    /// The reader's password.
    pub fn reader_password(&self) -> &'static str {
        READER_PW
    }

    /// The DN that SASL EXTERNAL binds map to (over ldapi and with the client certificate):
    /// the reader.
    pub fn external_dn(&self) -> String {
        self.reader_dn()
    }

    /// The client certificate's subject as slapd sees it before mapping:
    /// `cn=reader,o=syncrepl tests`.
    pub fn client_subject(&self) -> &'static str {
        certs::CLIENT_SUBJECT
    }

    /// The plain LDAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ldaps port on 127.0.0.1, `None` when TLS is off.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The plain LDAP listener's address.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The ldaps listener's address, `None` when TLS is off.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_port.map(|p| ([127, 0, 0, 1], p).into())
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:TLSPORT`.
    ///
    /// # Panics
    /// When TLS is off ([`Options::tls`]).
    pub fn ldaps_url(&self) -> String {
        let port = self
            .tls_port
            .expect("ldaps_url: this server was started without TLS");
        format!("ldaps://127.0.0.1:{port}")
    }

    /// The path of the ldapi socket.
    pub fn ldapi_path(&self) -> PathBuf {
        self.dir.join("ldapi")
    }

    /// `ldapi://` and the URL-encoded socket path.
    pub fn ldapi_url(&self) -> String {
        ldapi_url_for(&self.ldapi_path())
    }

    /// The test CA's certificate (PEM), which signed the server and client certificates.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join(certs::CA_PEM)
    }

    /// The same as [`Slapd::ca_pem`].
    pub fn ca_file(&self) -> PathBuf {
        self.ca_pem()
    }

    /// The server's certificate (PEM), for `localhost`, `127.0.0.1` and the host name.
    pub fn server_cert_pem(&self) -> PathBuf {
        self.dir.join(certs::SERVER_PEM)
    }

    /// The client certificate (PEM) for SASL EXTERNAL, subject [`Slapd::client_subject`].
    pub fn client_cert_pem(&self) -> PathBuf {
        self.dir.join(certs::CLIENT_PEM)
    }

    /// The client certificate's private key (PKCS#8 PEM).
    pub fn client_key_pem(&self) -> PathBuf {
        self.dir.join(certs::CLIENT_KEY)
    }

    /// Another CA's certificate, which signed nothing here: trusting only it must fail.
    pub fn other_ca_pem(&self) -> PathBuf {
        self.dir.join(certs::OTHER_CA_PEM)
    }

    /// Kills slapd abruptly (SIGKILL to our child), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops slapd with SIGTERM (it writes its contextCSN checkpoint), waits up to 10 s, then
    /// SIGKILL. Does nothing when it is not running.
    pub fn stop(&mut self) {
        crate::process::terminate(self.child.take(), Duration::from_secs(10));
    }

    /// Stops slapd if it runs and starts it again on the same ports with the same database.
    pub fn try_restart(&mut self) -> Result<(), Error> {
        self.stop();
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            match self.launch() {
                Err(Error::Start {
                    port_in_use: true, ..
                }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                other => return other,
            }
        }
    }

    /// [`Slapd::try_restart`], panicking with slapd's output if it fails.
    pub fn restart(&mut self) {
        if let Err(e) = self.try_restart() {
            panic!("{e}");
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        // The temporary directory goes with `_temp`, dropped after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldapi_urls_encode_the_path() {
        assert_eq!(
            ldapi_url_for(Path::new("/tmp/syncrepl-slapd-aB3/ldapi")),
            "ldapi://%2Ftmp%2Fsyncrepl-slapd-aB3%2Fldapi"
        );
        assert_eq!(ldapi_url_for(Path::new("/a b")), "ldapi://%2Fa%20b");
    }
}
