//! A throwaway MIT Kerberos realm on 127.0.0.1, for GSSAPI binds to a test slapd.
//!
//! [`Realm::start`] (or [`Realm::builder`] and [`RealmOptions::start`])
//!
//! 1. makes a temporary directory (removed again when the [`Realm`] is dropped; set
//!    `SYNCREPL_TESTKIT_KEEP=1` to keep it),
//! 2. creates the KDC database there with `kdb5_util create -s` and a random master password,
//! 3. adds the service principals `ldap/localhost`, `ldap/127.0.0.1` and `ldap/HOSTNAME` (what
//!    libldap asks for over ldapi) into [`Realm::service_keytab`] and the client principal
//!    `reader` into [`Realm::client_keytab`], all with random keys, with one `kadmin.local`,
//! 4. picks a free port on 127.0.0.1, writes `krb5.conf` and `kdc.conf` for it, and starts
//!    `krb5kdc -n` in the foreground as our child, with its output in `kdc.log`, and
//! 5. waits (bounded) until it accepts TCP connections, and makes sure it is the only KDC on
//!    that port (krb5kdc sets `SO_REUSEPORT`, so a second one on the same port would start
//!    without an error and share the connections; the later one tries another port).
//!
//! ```no_run
//! use syncrepl_testkit::{Bind, Realm, Slapd, Transport};
//!
//! let realm = Realm::start().expect("realm");
//! let ccache = realm.dir().join("reader.ccache");
//! realm.kinit(&ccache, "reader", None).expect("kinit");
//! let slapd = Slapd::builder().gssapi(&realm).start().expect("slapd");
//! let me = slapd.whoami(Transport::Ldap, Bind::gssapi(&realm, &ccache));
//! assert_eq!(me.expect("whoami"), format!("dn:{}", slapd.reader_dn()));
//! ```
//!
//! That takes about 0.1 s. No tool here reads `/etc/krb5.conf` or the caller's ticket cache:
//! every command gets `KRB5_CONFIG` (and the KDC's `KRB5_KDC_PROFILE`) pointing into the
//! directory, and inherits no other `KRB5*` variable but `KRB5_TRACE` (set it, e.g. to
//! `/dev/stderr`, to see what the Kerberos library does). A client process of your own gets the
//! same from [`Realm::client_env`].
//!
//! Tickets can be as short as a second ([`Realm::kinit`] with `Some("3s")`). Once past their end
//! the client library itself treats them as expired, with no clock skew allowance: `klist -s`
//! fails, and a new GSSAPI bind (`ldapwhoami`, `kvno`) fails with "Ticket expired" before it
//! asks the KDC or the server anything, the cached service ticket being as short as the
//! ticket-granting ticket. Unless the client has a keytab (`KRB5_CLIENT_KTNAME`, see
//! [`Realm::client_env`]): then the library gets a new ticket-granting ticket of the default
//! lifetime by itself and stores it in the cache. A session bound before the end goes on
//! working after it, with or without a security layer (a persistent search bound with a 3 s
//! ticket still gets changes made after it ended).
//!
//! Every wait is bounded, and signals only ever go to the KDC this module started, by its PID.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{output_since, sbin, tail, ChildLog};
use crate::tools::{self, Output};
use crate::Error;

/// The default realm name.
pub const REALM: &str = "EXAMPLE.TEST";
/// The client principal made with every realm (its keytab is [`Realm::client_keytab`]); slapd's
/// [`crate::Options::gssapi`] maps it to the reader entry.
pub const READER_PRINCIPAL: &str = "reader";
/// The service principals' service name: `ldap/HOST@REALM`.
pub const SERVICE: &str = "ldap";

/// How the realm is set up. Build it with [`Realm::builder`] and the chainable setters, then
/// [`RealmOptions::start`].
#[derive(Debug, Clone)]
pub struct RealmOptions {
    /// The realm's name: upper-case letters, digits, `.` and `-`. Default [`REALM`]
    /// (`EXAMPLE.TEST`); realms in parallel may share a name, as each has its own KDC and files.
    pub name: String,
    /// The longest ticket the KDC issues, in krb5 duration syntax (`10h`, `1d`, `3600`). Default
    /// `1d`. There is no lower limit: `kinit -l 1s` gets a one-second ticket.
    pub max_life: String,
    /// The longest a ticket can be renewed (`kinit -r`), same syntax. Default `7d`.
    pub max_renewable_life: String,
    /// How long the KDC may take to listen after it is started. Default 10 s.
    pub start_timeout: Duration,
    /// How long one Kerberos tool (`kdb5_util`, `kadmin.local`, `kinit`, `klist`) may take.
    /// Default 30 s.
    pub tool_timeout: Duration,
}

impl Default for RealmOptions {
    fn default() -> Self {
        RealmOptions {
            name: REALM.into(),
            max_life: "1d".into(),
            max_renewable_life: "7d".into(),
            start_timeout: Duration::from_secs(10),
            tool_timeout: Duration::from_secs(30),
        }
    }
}

impl RealmOptions {
    /// Sets [`RealmOptions::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Sets [`RealmOptions::max_life`].
    pub fn max_life(mut self, life: impl Into<String>) -> Self {
        self.max_life = life.into();
        self
    }
    /// Sets [`RealmOptions::max_renewable_life`].
    pub fn max_renewable_life(mut self, life: impl Into<String>) -> Self {
        self.max_renewable_life = life.into();
        self
    }
    /// Sets [`RealmOptions::start_timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
    /// Sets [`RealmOptions::tool_timeout`].
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    /// Starts a realm with these options.
    pub fn start(self) -> Result<Realm, Error> {
        Realm::try_start(self)
    }

    fn check(&self) -> Result<(), Error> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !name_ok {
            return Err(Error::Options(format!(
                "the realm name {:?} must be upper-case letters, digits, '.' and '-'",
                self.name
            )));
        }
        let duration_ok = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric());
        if !duration_ok(&self.max_life) || !duration_ok(&self.max_renewable_life) {
            return Err(Error::Options(format!(
                "ticket lifetimes {:?} / {:?} must be krb5 durations such as 10h or 1d",
                self.max_life, self.max_renewable_life
            )));
        }
        Ok(())
    }
}

/// A running KDC for one realm in its own temporary directory; dropping it stops the KDC and
/// removes the directory (keytabs and ticket caches made there included).
#[derive(Debug)]
pub struct Realm {
    options: RealmOptions,
    dir: PathBuf,
    /// Removes the directory when dropped; `None` when it is kept.
    _temp: Option<tempfile::TempDir>,
    files: Files,
    child: Option<Child>,
    port: u16,
}

/// The realm's files, all in its directory.
#[derive(Debug)]
struct Files {
    krb5_conf: PathBuf,
    kdc_conf: PathBuf,
    service_keytab: PathBuf,
    client_keytab: PathBuf,
}

/// Two handles are equal when they are the same realm (the same directory).
impl PartialEq for Realm {
    fn eq(&self, other: &Realm) -> bool {
        self.dir == other.dir
    }
}

impl Eq for Realm {}

/// Removes every inherited `KRB5*` variable but `KRB5_TRACE` from `command`, so that the
/// caller's own Kerberos settings (a ticket cache, a keytab, another krb5.conf) never leak in.
pub(crate) fn clear_krb5_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("KRB5") && name_text != "KRB5_TRACE" {
            command.env_remove(name);
        }
    }
}

/// `FILE:` and the path, as the Kerberos library names a file cache or keytab.
fn file_name(path: &Path) -> OsString {
    let mut name = OsString::from("FILE:");
    name.push(path);
    name
}

/// A password no one will guess twice (the KDC's master password; nothing ever types it).
fn random_password() -> String {
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

/// A port on 127.0.0.1 that is free for both TCP and UDP now (the KDC listens on both).
fn free_kdc_port() -> Result<u16, Error> {
    for _ in 0..20 {
        let tcp =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind a loopback port", e))?;
        let port = tcp
            .local_addr()
            .map_err(|e| Error::io("read a bound port", e))?
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Options("no free loopback port for the KDC".into()))
}

/// How many TCP sockets listen on 127.0.0.1:`port` in this network namespace, from
/// `/proc/net/tcp`; `None` when that cannot be read.
///
/// krb5kdc sets `SO_REUSEPORT`, so a second KDC started on a port the first one already has does
/// not fail: both listen and the kernel spreads connections between them. Counting listeners
/// is how a new KDC finds out it shares its port.
fn loopback_listeners(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let mut fields = line.split_whitespace();
                // sl, local_address, rem_address, st: 0A is LISTEN.
                fields.nth(1) == Some(local.as_str()) && fields.nth(1) == Some("0A")
            })
            .count(),
    )
}

/// This machine's host name, for the `ldap/HOSTNAME` principal (`None` if it cannot be read or
/// is no plain DNS name).
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
    (plain && name != "localhost").then(|| name.to_owned())
}

impl Realm {
    /// Default options, to change with the chainable setters and then [`RealmOptions::start`].
    pub fn builder() -> RealmOptions {
        RealmOptions::default()
    }

    /// Starts a realm named [`REALM`] with the default options.
    pub fn start() -> Result<Realm, Error> {
        Realm::try_start(RealmOptions::default())
    }

    /// Starts a realm: directory, database, principals and keytabs, then the KDC.
    pub fn try_start(options: RealmOptions) -> Result<Realm, Error> {
        options.check()?;
        let (dir, temp) = crate::host::temp_dir("syncrepl-krb5-")?;
        if dir
            .to_string_lossy()
            .contains(|c: char| c.is_whitespace() || c == '"')
        {
            // kadmin.local splits its requests at spaces, and the paths go into them.
            return Err(Error::Options(format!(
                "the directory {} has spaces or quotes; set TMPDIR to a plainer path",
                dir.display()
            )));
        }
        std::fs::create_dir(dir.join("keytabs"))
            .map_err(|e| Error::io(format!("make {}/keytabs", dir.display()), e))?;
        let files = Files {
            krb5_conf: dir.join("krb5.conf"),
            kdc_conf: dir.join("kdc.conf"),
            service_keytab: dir.join("service.keytab"),
            client_keytab: dir
                .join("keytabs")
                .join(format!("{READER_PRINCIPAL}.keytab")),
        };
        let mut realm = Realm {
            options,
            files,
            dir,
            _temp: temp,
            child: None,
            port: 0,
        };
        // The database does not depend on the port: the configuration is written again for
        // each port tried below.
        realm.port = free_kdc_port()?;
        realm.write_conf()?;
        realm.create_database()?;
        let mut principals = vec![
            format!("{SERVICE}/localhost"),
            format!("{SERVICE}/127.0.0.1"),
        ];
        principals.extend(host_name().map(|h| format!("{SERVICE}/{h}")));
        let mut script = String::new();
        for p in &principals {
            let _ = writeln!(script, "addprinc -randkey {}", realm.principal(p));
        }
        let _ = write!(script, "ktadd -k {}", realm.service_keytab().display());
        for p in &principals {
            let _ = write!(script, " {}", realm.principal(p));
        }
        let reader = realm.principal(READER_PRINCIPAL);
        let _ = writeln!(
            script,
            "\naddprinc -randkey {reader}\nktadd -k {} {reader}",
            realm.client_keytab().display()
        );
        realm.kadmin(&script)?;
        let mut attempt = 0;
        loop {
            match realm.launch() {
                Ok(()) => return Ok(realm),
                Err(Error::Kdc {
                    port_in_use: true, ..
                }) if attempt < 10 => {
                    attempt += 1;
                    realm.port = free_kdc_port()?;
                    realm.write_conf()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `krb5.conf` and `kdc.conf` for the current port.
    fn write_conf(&self) -> Result<(), Error> {
        let (name, port, d) = (&self.options.name, self.port, self.dir.display());
        let krb5 = format!(
            "# Written by syncrepl-testkit for one test run.\n\
             [libdefaults]\n    default_realm = {name}\n    dns_lookup_kdc = false\n    \
             dns_lookup_realm = false\n    dns_canonicalize_hostname = false\n    rdns = false\n    \
             udp_preference_limit = 1\n    ignore_acceptor_hostname = true\n\n\
             [realms]\n    {name} = {{\n        kdc = 127.0.0.1:{port}\n    }}\n\n\
             [domain_realm]\n    localhost = {name}\n    127.0.0.1 = {name}\n"
        );
        let kdc = format!(
            "# Written by syncrepl-testkit for one test run.\n\
             [kdcdefaults]\n    kdc_listen = 127.0.0.1:{port}\n    kdc_tcp_listen = 127.0.0.1:{port}\n\n\
             [realms]\n    {name} = {{\n        database_name = {d}/principal\n        \
             key_stash_file = {d}/stash\n        max_life = {}\n        max_renewable_life = {}\n    }}\n\n\
             [logging]\n    kdc = STDERR\n",
            self.options.max_life, self.options.max_renewable_life
        );
        for (file, text) in [(self.krb5_config(), krb5), (self.kdc_config(), kdc)] {
            std::fs::write(file, text)
                .map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        }
        Ok(())
    }

    /// A command for a Kerberos administration tool, with this realm's configuration only.
    fn admin_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(sbin(tool));
        clear_krb5_env(&mut cmd);
        cmd.env("KRB5_CONFIG", self.krb5_config())
            .env("KRB5_KDC_PROFILE", self.kdc_config())
            .env("KRB5CCNAME", "MEMORY:syncrepl-testkit-admin");
        cmd
    }

    fn create_database(&self) -> Result<(), Error> {
        let mut cmd = self.admin_command("kdb5_util");
        let password = random_password();
        let args = ["create", "-s", "-r", &self.options.name, "-P", &password];
        cmd.args(args);
        tools::run(cmd, None, self.options.tool_timeout)?
            .checked("kdb5_util", &args[..4])
            .map(drop)
    }

    /// Runs `kadmin.local` with `script` (one request a line) on its standard input.
    /// kadmin.local exits with 0 even when a request fails, so anything on its standard error
    /// but its usual notes is an error.
    fn kadmin(&self, script: &str) -> Result<Output, Error> {
        let mut cmd = self.admin_command("kadmin.local");
        cmd.args(["-r", &self.options.name]);
        let out = tools::run(cmd, Some(script.as_bytes()), self.options.tool_timeout)?;
        let complaints: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.starts_with("No policy specified for ")
                    && !l.starts_with("Authenticating as principal ")
            })
            .collect();
        if !out.success() || !complaints.is_empty() {
            return Err(Error::Tool {
                tool: format!("kadmin.local <<< {}", script.trim_end().replace('\n', "; ")),
                code: out.code,
                stderr: complaints.join("\n"),
            });
        }
        Ok(out)
    }

    /// Starts the KDC on the current port and waits until it listens.
    fn launch(&mut self) -> Result<(), Error> {
        let log_path = self.log_path();
        let log = ChildLog::open(&log_path)?;
        let log_start = log.start;
        let mut child = self
            .admin_command("krb5kdc")
            .args(["-n", "-r", &self.options.name])
            .stdin(Stdio::null())
            .stdout(log.stdout)
            .stderr(log.stderr)
            .spawn()
            .map_err(|e| Error::io(format!("run {}", sbin("krb5kdc").display()), e))?;
        let failure = |reason: String| {
            let new = output_since(&log_path, log_start);
            Error::Kdc {
                port_in_use: new.contains("Address already in use"),
                reason,
                log: tail(&log_path, 4000),
            }
        };
        let stop = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        let addr = self.kdc_addr();
        let deadline = Instant::now() + self.options.start_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(failure(format!("it exited with {status}"))),
                Ok(None) => {}
                Err(e) => return Err(Error::io("wait for krb5kdc", e)),
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                if loopback_listeners(self.port).is_some_and(|n| n > 1) {
                    // Another KDC has this port too (see `loopback_listeners`): ours goes.
                    stop(&mut child);
                    return Err(Error::Kdc {
                        reason: format!("another KDC listens on {addr} as well"),
                        log: String::new(),
                        port_in_use: true,
                    });
                }
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Our own child, which never listened.
                stop(&mut child);
                return Err(failure(format!(
                    "it did not listen on {addr} within {:?}",
                    self.options.start_timeout
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Stops the KDC with SIGTERM to its PID, waits up to 5 s, then SIGKILL. Tickets already
    /// obtained keep working with servers; new ones cannot be had until [`Realm::start_kdc`].
    /// Does nothing when it is not running.
    pub fn stop_kdc(&mut self) {
        crate::process::terminate(self.child.take(), Duration::from_secs(5));
    }

    /// Starts the KDC again (after [`Realm::stop_kdc`]) on the same port, so that the
    /// `krb5.conf` clients and servers already read stays right; retries while another process
    /// holds the port, up to [`RealmOptions::start_timeout`]. Does nothing when it runs.
    pub fn start_kdc(&mut self) -> Result<(), Error> {
        if self.is_kdc_running() {
            return Ok(());
        }
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            match self.launch() {
                Err(Error::Kdc {
                    port_in_use: true, ..
                }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => return other,
            }
        }
    }

    /// Whether the KDC is running (it was started and has not exited).
    pub fn is_kdc_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The PID of the running KDC, `None` after [`Realm::stop_kdc`].
    pub fn kdc_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The options it was started with.
    pub fn options(&self) -> &RealmOptions {
        &self.options
    }

    /// The realm's name, e.g. `EXAMPLE.TEST`.
    pub fn realm(&self) -> &str {
        &self.options.name
    }

    /// The KDC's port on 127.0.0.1 (TCP and UDP; clients here use TCP).
    pub fn kdc_port(&self) -> u16 {
        self.port
    }

    /// The KDC's address.
    pub fn kdc_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Its temporary directory (configuration, database, keytabs, `kdc.log`); a good place for
    /// a test's ticket caches, which then go with it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The realm's `krb5.conf`, for `KRB5_CONFIG` of clients and servers.
    pub fn krb5_config(&self) -> &Path {
        &self.files.krb5_conf
    }

    /// The KDC's `kdc.conf` (`KRB5_KDC_PROFILE` of `krb5kdc`, `kdb5_util`, `kadmin.local`).
    pub fn kdc_config(&self) -> &Path {
        &self.files.kdc_conf
    }

    /// What the KDC wrote so far (`kdc.log`: its start-up, every ticket request and error).
    pub fn log(&self) -> String {
        tail(&self.log_path(), usize::MAX)
    }

    /// The path of the KDC's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kdc.log")
    }

    /// The keytab with the keys of `ldap/localhost`, `ldap/127.0.0.1` and `ldap/HOSTNAME`, for
    /// `KRB5_KTNAME` of slapd (see [`crate::Options::gssapi`]).
    pub fn service_keytab(&self) -> &Path {
        &self.files.service_keytab
    }

    /// The keytab of the client principal [`READER_PRINCIPAL`], for [`Realm::kinit`] or
    /// `KRB5_CLIENT_KTNAME` (with which the Kerberos library gets tickets by itself).
    pub fn client_keytab(&self) -> &Path {
        &self.files.client_keytab
    }

    /// `name` with this realm appended (`reader` → `reader@EXAMPLE.TEST`); a name that already
    /// has a realm is returned as it is.
    pub fn principal(&self, name: &str) -> String {
        if name.contains('@') {
            name.to_owned()
        } else {
            format!("{name}@{}", self.options.name)
        }
    }

    /// `reader@REALM`, the client principal made with every realm.
    pub fn reader_principal(&self) -> String {
        self.principal(READER_PRINCIPAL)
    }

    /// The keytab file that [`Realm::add_principal`] writes for `principal` (with or without
    /// the realm), whether it exists or not. The reader's is [`Realm::client_keytab`].
    pub fn keytab_path(&self, principal: &str) -> PathBuf {
        let full = self.principal(principal);
        let name = full
            .strip_suffix(&format!("@{}", self.options.name))
            .unwrap_or(&full);
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join("keytabs").join(format!("{file}.keytab"))
    }

    /// Adds a principal with a random key (`addprinc -randkey`) and writes its keys to a keytab
    /// of its own, whose path it returns (the same as [`Realm::keytab_path`]). `name` is like
    /// `alice`, `alice/admin` or `HTTP/localhost`, with or without `@REALM`. slapd's GSSAPI
    /// option maps a plain `NAME@REALM` other than the reader to `uid=NAME,ou=people,SUFFIX`.
    pub fn add_principal(&self, name: &str) -> Result<PathBuf, Error> {
        let full = self.principal(name);
        let plain = full
            .strip_suffix(&format!("@{}", self.options.name))
            .is_some_and(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
            });
        if !plain {
            return Err(Error::Options(format!(
                "the principal {full:?} must be letters, digits, '-', '.', '_' and '/' in realm {}",
                self.options.name
            )));
        }
        let keytab = self.keytab_path(name);
        self.kadmin(&format!(
            "addprinc -randkey {full}\nktadd -k {} {full}\n",
            keytab.display()
        ))?;
        Ok(keytab)
    }

    /// Gets a ticket-granting ticket for `principal` (with or without `@REALM`) from its keytab
    /// into the file cache `ccache` (made or replaced): `kinit -k -t KEYTAB -c FILE:CCACHE
    /// [-l LIFETIME] PRINCIPAL`. `lifetime` is in krb5 duration syntax (`3s`, `10m`, `1h`),
    /// capped by [`RealmOptions::max_life`]; `None` for the default, a day.
    ///
    /// The keytab is [`Realm::keytab_path`] of the principal, so the reader or one made with
    /// [`Realm::add_principal`].
    pub fn kinit(
        &self,
        ccache: &Path,
        principal: &str,
        lifetime: Option<&str>,
    ) -> Result<(), Error> {
        let keytab = self.keytab_path(principal);
        if !keytab.exists() {
            return Err(Error::Options(format!(
                "no keytab for {} at {} (add it with add_principal)",
                self.principal(principal),
                keytab.display()
            )));
        }
        let principal = self.principal(principal);
        let keytab = keytab.display().to_string();
        let ccache_name = format!("FILE:{}", ccache.display());
        let mut args = vec!["-k", "-t", &keytab, "-c", &ccache_name];
        if let Some(life) = lifetime {
            args.extend(["-l", life]);
        }
        args.push(&principal);
        let mut cmd = self.client_command("kinit", Some(ccache), None);
        cmd.args(&args);
        tools::run(cmd, None, self.options.tool_timeout)?
            .checked("kinit", &args)
            .map(drop)
    }

    /// `klist -c FILE:CCACHE` with this realm's configuration: its output, success or not (it
    /// fails when the cache does not exist).
    pub fn klist(&self, ccache: &Path) -> Result<Output, Error> {
        let mut cmd = self.client_command("klist", Some(ccache), None);
        cmd.arg("-c").arg(file_name(ccache));
        tools::run(cmd, None, self.options.tool_timeout)
    }

    /// Whether `ccache` holds a ticket-granting ticket that has not expired (`klist -s`: the
    /// library's own check, without the clock skew allowance).
    pub fn has_valid_tgt(&self, ccache: &Path) -> Result<bool, Error> {
        let mut cmd = self.client_command("klist", Some(ccache), None);
        cmd.arg("-s").arg("-c").arg(file_name(ccache));
        Ok(tools::run(cmd, None, self.options.tool_timeout)?.success())
    }

    /// The environment a Kerberos client process needs for this realm, and only this realm:
    ///
    /// - `KRB5_CONFIG`: [`Realm::krb5_config`] (the library then reads no `/etc/krb5.conf`),
    /// - `KRB5CCNAME`: `FILE:ccache`, or with `None` a `MEMORY:` cache private to the process,
    /// - `KRB5_CLIENT_KTNAME`: `FILE:keytab`, from which the library gets (and renews) tickets by
    ///   itself when the cache has none or only expired ones; with `None` a file that does not
    ///   exist, so that expired tickets stay expired and the user's default client keytab is
    ///   never read,
    /// - `KRB5_KTNAME`: a file that does not exist (a client accepts no contexts; this keeps
    ///   `/etc/krb5.keytab` out).
    ///
    /// Set these on a [`Command`] after removing the caller's other `KRB5*` variables, as
    /// [`Realm::client_command`] does.
    pub fn client_env(
        &self,
        ccache: Option<&Path>,
        keytab: Option<&Path>,
    ) -> Vec<(String, OsString)> {
        let none = self.dir.join("no-such.keytab");
        vec![
            ("KRB5_CONFIG".into(), self.krb5_config().into()),
            (
                "KRB5CCNAME".into(),
                ccache.map_or_else(|| OsString::from("MEMORY:syncrepl-testkit"), file_name),
            ),
            (
                "KRB5_CLIENT_KTNAME".into(),
                file_name(keytab.unwrap_or(&none)),
            ),
            ("KRB5_KTNAME".into(), file_name(&none)),
        ]
    }

    /// A command for `program` with [`Realm::client_env`] set and no other inherited `KRB5*`
    /// variable but `KRB5_TRACE`.
    pub fn client_command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        ccache: Option<&Path>,
        keytab: Option<&Path>,
    ) -> Command {
        let mut cmd = Command::new(program);
        clear_krb5_env(&mut cmd);
        cmd.envs(self.client_env(ccache, keytab));
        cmd
    }

    /// What a slapd needs to accept GSSAPI binds from this realm (see [`crate::Options::gssapi`]).
    pub fn server_keys(&self) -> crate::slapd::Gssapi {
        crate::slapd::Gssapi {
            realm: self.options.name.clone(),
            krb5_config: self.krb5_config().to_path_buf(),
            keytab: self.service_keytab().to_path_buf(),
        }
    }
}

impl Drop for Realm {
    fn drop(&mut self) {
        self.stop_kdc();
        // The temporary directory goes with `_temp`, dropped after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(RealmOptions::default().check().is_ok());
        assert!(RealmOptions::default().name("A-1.TEST").check().is_ok());
        for bad in ["", "example.test", "EX AMPLE", "EX\"A"] {
            assert!(
                RealmOptions::default().name(bad).check().is_err(),
                "{bad:?}"
            );
        }
        assert!(RealmOptions::default().max_life("3 s").check().is_err());
    }

    #[test]
    fn listeners_on_a_port_are_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert_eq!(loopback_listeners(port), Some(1));
        drop(listener);
        let port = free_kdc_port().expect("a port");
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn master_passwords_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
