//! A throwaway Samba Active Directory domain controller (Samba 4.17's `samba`) on its own
//! loopback address, so that syncrepl's Active Directory paths (DirSync, change notification,
//! objectGUID, tombstones) can be tested against a real AD implementation.
//!
//! [`SambaDc::start`] (or [`SambaDc::builder`] and [`SambaOptions::start`])
//!
//! 1. provisions the domain `EXAMPLE.TEST` (`DC=example,DC=test`, NetBIOS `EXAMPLE`, DC `DC1`)
//!    once into a template directory with `samba-tool domain provision` (about 4–5 s; it reads no
//!    system `smb.conf`) and turns off password ageing there (`maxPwdAge`/`minPwdAge` 0, with
//!    `ldbmodify`), so that a template made long ago still lets the Administrator bind. The
//!    template is cached under the cargo target directory
//!    (`target/syncrepl-testkit/samba-template-VERSION-fN`, next to `CACHEDIR.TAG`), keyed by the
//!    Samba version, and made under a lock file, so every test process after the first, and
//!    every instance in a process, only copies it (33 MB, about 30 ms). Set
//!    [`CACHE_ENV`] to choose another cache directory;
//! 2. claims a loopback address `127.0.0.N` (N from 2 to 254): Samba's LDAP ports are fixed at
//!    389 and 636 (and 3268/3269 for the global catalog), so each instance needs its own address.
//!    The claim is an exclusive `flock` on `/tmp/syncrepl-testkit-samba-127.0.0.N.lock`, held for
//!    the instance's lifetime (test binaries run concurrently; `/tmp` and not `$TMPDIR`, since
//!    addresses are machine-wide), plus a check that nothing listens on those ports; if Samba
//!    still cannot bind, another address is tried;
//! 3. copies the template into a temporary directory (removed again on drop; set
//!    `SYNCREPL_TESTKIT_KEEP=1` to keep it), makes a CA and a server certificate for
//!    `IP:127.0.0.N` and `DNS:localhost` (the certificate Samba generates itself names the host
//!    only, without subjectAltName, so clients could not verify it), and writes its own
//!    `etc/smb.conf`: only the `ldap` service, bound to that address only, every directory (pid,
//!    lock, state, cache, private, log) inside the instance directory, TLS with those files;
//! 4. starts `samba -i -M single -s DIR/etc/smb.conf` in the foreground as our child, its output
//!    in `DIR/samba.log` (the `single` process model delivers change notifications in about
//!    50 ms; the default `prefork` delays them by up to 5 s), and
//! 5. waits (bounded) until an anonymous root DSE search over ldaps, verified with the CA,
//!    answers: 0.3–0.5 s after the start on an idle machine.
//!
//! SIGTERM stops it in about 30 ms ([`SambaDc::stop`], and on drop); [`SambaDc::start_again`]
//! starts it again on the same address with the same data. Its standard input is a pipe from
//! this process, so it also exits by itself when the test process dies, even by SIGKILL (with
//! `-i`, samba ends at EOF on standard input). It needs Samba's AD DC packages
//! (Debian: `samba-ad-dc samba-dsdb-modules samba-vfs-modules samba-ad-provision winbind
//! ldb-tools`), OpenLDAP's client tools, and root (ports 389 and 636).
//!
//! Every instance copied from one template has the same domain SID and the same objectGUIDs for
//! the provisioned objects; objects added later differ.
//!
//! # Accounts
//!
//! | who | bind DN | password |
//! | --- | --- | --- |
//! | Administrator | [`ADMIN_DN`] or `Administrator@EXAMPLE.TEST` | [`ADMIN_PW`] |
//! | a user from [`SambaDc::create_user`] | `NAME@EXAMPLE.TEST` or its DN | as given |
//! | anonymous | | reads the root DSE only |
//!
//! Simple binds need TLS (ldaps or StartTLS): in cleartext Samba answers `strongAuthRequired`
//! ("BindSimple: Transport encryption required") unless [`SambaOptions::smb_conf`] sets
//! `ldap server require strong auth = no`. A bare `Administrator` does not bind. The password
//! policy is AD's (at least 7 characters from three of: upper case, lower case, digits, others),
//! without ageing.
//!
//! # What this Samba says on the wire (4.17.12, checked with `ldapsearch`)
//!
//! - The root DSE is readable anonymously, over ldaps and in cleartext; anything else needs a
//!   bind ("Operation unavailable without authentication"). `supportedControl` (with duplicates,
//!   as sent): 1.2.840.113556.1.4.1413 (permissive modify, three times), .528 (notification),
//!   .841 (DirSync), .319 (paged results), 2.16.840.1.113730.3.4.9 (VLV), .473 (server-side
//!   sort), .1504 (attribute scoped query), .801 (SD flags, three times), .805 (tree delete),
//!   .1338 (verify name), .529 (extended DN), .417 (show deleted), .2064 (show recycled), .1339
//!   (domain scope), .1340 (search options), .1413 again, .1341 (RODC DCPromo). No
//!   `supportedExtension`: Who am I? fails with protocolError.
//! - A search with base `<GUID=…>` finds the object by its objectGUID, scope base or subtree,
//!   with the GUID as 32 hex digits of the raw bytes or in its string form
//!   ([`guid_string`], the first three fields byte-swapped): for an Administrator whose
//!   objectGUID is `wpeqGmtrtkixoCmX3/flWw==`, `-b '<GUID=c297aa1a6b6bb648b1a02997dff7e55b>'`
//!   and `-b '<GUID=1aaa97c2-6b6b-48b6-b1a0-2997dff7e55b>'` both return `dn:
//!   CN=Administrator,CN=Users,DC=example,DC=test`. Anonymously: operationsError.
//! - DirSync (`ldapsearch -E '!dirSync=FLAGS/0[/COOKIE]'`, the cookie as plain base64; ldapsearch
//!   prints the returned one as `# cookie:: BASE64`, and takes FLAGS in decimal or `0x…`): with
//!   `*`, a user comes back with `nTSecurityDescriptor` (for the Administrator; not for a user
//!   with flag 1) and `parentGUID`, which a plain search does not return, and without `cn` (the
//!   RDN attribute, not even when asked for by name), `distinguishedName`, `whenChanged`,
//!   `uSNCreated`, `uSNChanged`, `badPwdCount`, `badPasswordTime`, `lastLogon`, `lastLogoff`,
//!   `logonCount` (not replicated), which a plain search does; `memberOf` (a back link) neither
//!   way. DN-valued attributes such as `objectCategory` come in extended form,
//!   `<GUID=…>;CN=Person,CN=Schema,…` (but `member` as a plain DN). With an attribute list, an
//!   object is returned only if one of the listed attributes changed since the cookie: `name`
//!   or `*` from the start return all 253 objects of a fresh domain, `objectGUID` or `1.1` only
//!   `CN=Configuration,…` (instanceType 13), and after a cookie nothing at all. `'+'` adds
//!   nothing, to either search.
//! - A tombstone from DirSync with `*` (Administrator, flags 0): DN
//!   `CN=dave\0ADEL:a8f92043-…,CN=Deleted Objects,DC=example,DC=test`, attributes `parentGUID`
//!   (the Deleted Objects container's), `name` (`dave` LF `DEL:GUID`, base64), `isRecycled: TRUE`
//!   (no recycle bin), `lastKnownParent` as an extended DN (`<GUID=…>;CN=Users,DC=example,DC=test`),
//!   `isDeleted: TRUE`, `objectGUID`, `instanceType`; no objectClass.
//! - A non-admin user (made here, no extra rights) gets insufficientAccessRights for DirSync with
//!   flags 0; with flag 1 (object security) the entries it may read (225 of the
//!   Administrator's 253 in a fresh domain, without `nTSecurityDescriptor`), later adds and
//!   modifications, but never deletes (not even with show deleted). Its change notification
//!   search (`-E '!1.2.840.113556.1.4.528'`, filter `(objectClass=*)`) works: a modification
//!   arrives as the entry with its current values. Any other filter: unwillingToPerform.
//! - `samba-tool … -H ldaps://127.0.0.N` fails with `NT_STATUS_INVALID_PARAMETER_MIX` under the
//!   default `tls verify peer = as_strict_as_possible` (it wants a CRL file), with
//!   `NT_STATUS_INVALID_PARAMETER` under `ca_and_name` (no name check for an IP address), and with
//!   SASL ("Sign or Seal are not allowed if TLS is used") under `ca_only`: [`SambaDc::samba_tool`]
//!   binds simply (`--simple-bind-dn`) with `tls verify peer = ca_only` in the instance's
//!   `smb.conf`.
//! - A user added over LDAP without `unicodePwd` and `userAccountControl: 512` is disabled (546);
//!   with a password but no `userAccountControl`, too (bind: invalid credentials, `data 533`).
//!
//! Every wait is bounded, and signals only ever go to the `samba` this module started, by its
//! PID.

mod address;
mod client;
mod template;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use self::address::{claim_address, Claim};
use self::template::copy_tree;
use crate::certs;
use crate::process::{output_since, sbin, tail, ChildLog};
use crate::slapd::Transport;
use crate::tools;
use crate::Error;

pub use self::client::{Account, DirSync};
pub use self::template::{template_dir, CACHE_ENV};

/// The Kerberos realm, also the DNS domain in upper case.
pub const REALM: &str = "EXAMPLE.TEST";
/// The NetBIOS domain name.
pub const DOMAIN: &str = "EXAMPLE";
/// The domain controller's NetBIOS name (its host name `DC1.example.test`).
pub const NETBIOS_NAME: &str = "DC1";
/// The domain's naming context.
pub const BASE_DN: &str = "DC=example,DC=test";
/// Where users go by default.
pub const USERS_DN: &str = "CN=Users,DC=example,DC=test";
/// The Administrator's DN.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=test";
/// The Administrator's password (it meets AD's complexity rules).
pub const ADMIN_PW: &str = "Admin-pw-4533!";
const LOG: &str = "samba.log";

/// How the domain controller is run. Build it with [`SambaDc::builder`] and the chainable
/// setters, then [`SambaOptions::start`].
#[derive(Debug, Clone)]
pub struct SambaOptions {
    /// More `[global]` parameters for `smb.conf`, written after the fixture's own (a later line
    /// wins), e.g. `("ldap server require strong auth", "no")` to allow simple binds in
    /// cleartext. Empty by default.
    pub smb_conf: Vec<(String, String)>,
    /// Samba's process model (`-M`). Default `single`: change notifications arrive in about
    /// 50 ms; with `prefork` they take up to 5 s.
    pub process_model: String,
    /// How long `samba` may take until ldaps answers after it is started. Default 30 s.
    pub start_timeout: Duration,
    /// How long one tool run by a helper (`ldapsearch`, `ldapmodify`, `samba-tool`) may take.
    /// Default 60 s.
    pub tool_timeout: Duration,
}

impl Default for SambaOptions {
    fn default() -> Self {
        SambaOptions {
            smb_conf: Vec::new(),
            process_model: "single".into(),
            start_timeout: Duration::from_secs(30),
            tool_timeout: Duration::from_secs(60),
        }
    }
}

impl SambaOptions {
    /// Adds a `[global]` parameter to [`SambaOptions::smb_conf`].
    pub fn smb_conf(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.smb_conf.push((name.into(), value.into()));
        self
    }
    /// Sets [`SambaOptions::process_model`].
    pub fn process_model(mut self, model: impl Into<String>) -> Self {
        self.process_model = model.into();
        self
    }
    /// Sets [`SambaOptions::start_timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
    /// Sets [`SambaOptions::tool_timeout`].
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    /// Starts a domain controller with these options.
    pub fn start(self) -> Result<SambaDc, Error> {
        SambaDc::try_start(self)
    }

    fn check(&self) -> Result<(), Error> {
        let plain = |s: &str| !s.is_empty() && !s.contains(['\n', '\r', '[', '=']);
        if let Some((name, value)) = self
            .smb_conf
            .iter()
            .find(|(name, value)| !plain(name) || value.contains(['\n', '\r']))
        {
            return Err(Error::Options(format!(
                "the smb.conf parameter {name:?} = {value:?} cannot be written on one line"
            )));
        }
        if !plain(&self.process_model) {
            return Err(Error::Options(format!(
                "the process model {:?} is not a plain word",
                self.process_model
            )));
        }
        Ok(())
    }
}

/// A running Samba AD domain controller in its own temporary directory, on its own loopback
/// address; dropping it stops the server, removes the directory and frees the address.
#[derive(Debug)]
pub struct SambaDc {
    options: SambaOptions,
    dir: PathBuf,
    server: Option<Child>,
    address: Claim,
    _temp: Option<tempfile::TempDir>,
}

/// Whether Samba's domain controller and its provisioning tool are on this machine.
pub fn available() -> bool {
    sbin("samba").is_absolute() && Path::new("/usr/bin/samba-tool").exists()
}

/// The string form of an objectGUID's 16 bytes, as AD writes it (`<GUID=…>` in extended DNs):
/// the first three fields little-endian, so the bytes `40 62 fe 7a 02 b6 …` read
/// `7afe6240-b602-…`.
pub fn guid_string(guid: &[u8; 16]) -> String {
    syncrepl_proto::object_guid(*guid).to_string()
}

impl SambaDc {
    /// Default options, to change with the chainable setters and then [`SambaOptions::start`].
    pub fn builder() -> SambaOptions {
        SambaOptions::default()
    }

    /// Starts a domain controller with the default options.
    pub fn start() -> Result<SambaDc, Error> {
        SambaDc::try_start(SambaOptions::default())
    }

    /// Starts a domain controller with `options`: template, directory, address, certificates,
    /// configuration, then samba itself.
    pub fn try_start(options: SambaOptions) -> Result<SambaDc, Error> {
        if !available() {
            return Err(Error::Options(
                "Samba's AD DC is not installed (Debian: apt-get install samba-ad-dc \
                 samba-dsdb-modules samba-vfs-modules samba-ad-provision winbind ldb-tools)"
                    .into(),
            ));
        }
        options.check()?;
        let template = template_dir()?;
        let (dir, temp) = crate::host::temp_dir("syncrepl-samba-")?;
        copy_tree(&template, &dir)?;
        for sub in ["tls", "run", "log"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("make {}", path.display()), e))?;
        }
        let mut tried = Vec::new();
        loop {
            let address = claim_address(&tried)?;
            tried.push(address.ip);
            let mut dc = SambaDc {
                options: options.clone(),
                dir: dir.clone(),
                server: None,
                address,
                _temp: None,
            };
            dc.write_tls()?;
            dc.write_conf()?;
            match dc.launch() {
                Ok(()) => {
                    dc._temp = temp;
                    return Ok(dc);
                }
                // Someone outside these locks took the address between the check and the bind.
                Err(Error::Samba {
                    port_in_use: true, ..
                }) if tried.len() < 5 => {}
                Err(e) => {
                    dc._temp = temp;
                    return Err(e);
                }
            }
        }
    }

    /// Makes the CA and the server certificate for this instance's address.
    fn write_tls(&self) -> Result<(), Error> {
        let ip = self.address.ip.to_string();
        let tls = certs::server_tls("syncrepl Samba test CA", vec![ip, "localhost".to_owned()])?;
        for (path, pem) in [
            (self.ca_file(), tls.ca_pem),
            (self.dir.join("tls/server.pem"), tls.cert_pem),
            (self.dir.join("tls/server.key"), tls.key_pem),
        ] {
            std::fs::write(&path, pem)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        // Samba refuses a key file that others may read.
        let key = self.dir.join("tls/server.key");
        rustix::fs::chmod(&key, rustix::fs::Mode::from_raw_mode(0o600))
            .map_err(|e| Error::io(format!("chmod {}", key.display()), e.into()))
    }

    /// Writes `etc/smb.conf` for this instance's directory and address.
    fn write_conf(&self) -> Result<(), Error> {
        let path = self.smb_conf();
        std::fs::write(&path, smb_conf(&self.dir, self.address.ip, &self.options))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    /// Starts `samba` in the foreground as our child and waits until ldaps answers.
    fn launch(&mut self) -> Result<(), Error> {
        let log_path = self.dir.join(LOG);
        let log = ChildLog::open(&log_path)?;
        let log_start = log.start;
        // A killed samba leaves its PID file behind; the next one need not see it.
        let _ = std::fs::remove_file(self.dir.join("run/samba.pid"));
        let server = Command::new(sbin("samba"))
            .args(["-i", "-M", &self.options.process_model, "-s"])
            .arg(self.smb_conf())
            .current_dir(&self.dir)
            // With -i samba exits when its standard input ends: the pipe, kept open in the
            // `Child`, closes when this process ends, however it ends, so no server outlives
            // its test.
            .stdin(Stdio::piped())
            .stdout(log.stdout)
            .stderr(log.stderr)
            .spawn()
            .map_err(|e| Error::io("start samba", e))?;
        self.server = Some(server);
        let started = Instant::now();
        let ldaps = SocketAddr::from((self.address.ip, 636));
        let mut last = String::new();
        loop {
            let exited = match self.server.as_mut().map(Child::try_wait) {
                Some(Ok(status)) => status,
                Some(Err(e)) => return Err(Error::io("wait for samba", e)),
                None => None,
            };
            if let Some(status) = exited {
                self.server = None;
                let log = self.log_since(log_start);
                return Err(Error::Samba {
                    reason: format!("samba exited ({status})"),
                    port_in_use: log.contains("ADDRESS_ALREADY_ASSOCIATED")
                        || log.contains("ADDRESS_IN_USE"),
                    log,
                });
            }
            if TcpStream::connect_timeout(&ldaps, Duration::from_millis(200)).is_ok() {
                let mut probe =
                    self.ldap_command("ldapsearch", Transport::Ldaps, Account::Anonymous);
                probe.args(["-LLL", "-b", "", "-s", "base", "(objectClass=*)", "1.1"]);
                let out = tools::run(probe, None, Duration::from_secs(5))?;
                if out.success() {
                    return Ok(());
                }
                last = out.stderr;
            }
            if started.elapsed() >= self.options.start_timeout {
                let pid = self.pid();
                crate::process::terminate(self.server.take(), Duration::from_secs(10));
                return Err(Error::Samba {
                    reason: format!(
                        "samba (PID {pid:?}) did not answer over ldaps within {:?}; the last \
                         ldapsearch said: {}",
                        self.options.start_timeout,
                        last.trim()
                    ),
                    log: self.log_since(log_start),
                    port_in_use: false,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_since(&self, start: u64) -> String {
        let text = output_since(&self.dir.join(LOG), start);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops the server (our child) with SIGTERM and waits up to 10 s for it to exit (SIGKILL
    /// then). The data stays; [`SambaDc::start_again`] starts it again.
    pub fn stop(&mut self) {
        crate::process::terminate(self.server.take(), Duration::from_secs(10));
    }

    /// Starts the server again after [`SambaDc::stop`] (or after it died), on the same address
    /// with the same data, and waits until it answers. Does nothing while it runs.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if let Some(server) = self.server.as_mut() {
            if matches!(server.try_wait(), Ok(None)) {
                return Ok(());
            }
            self.stop();
        }
        self.launch()
    }

    /// [`SambaDc::stop`], then [`SambaDc::start_again`].
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.launch()
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The loopback address it listens on, `127.0.0.N`.
    pub fn address(&self) -> Ipv4Addr {
        self.address.ip
    }

    /// [`SambaDc::address`] as a string, the host part of its URLs.
    pub fn host(&self) -> String {
        self.address.ip.to_string()
    }

    /// `ldaps://127.0.0.N` (port 636), verifiable with [`SambaDc::ca_file`].
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}", self.address.ip)
    }

    /// `ldap://127.0.0.N` (port 389): StartTLS works there; simple binds need it.
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.address.ip)
    }

    /// The domain's naming context, [`BASE_DN`].
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// The Administrator's DN, [`ADMIN_DN`].
    pub fn admin_dn(&self) -> &'static str {
        ADMIN_DN
    }

    /// The Administrator's password, [`ADMIN_PW`].
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PW
    }

    /// The CA certificate (PEM) that signed the server's certificate; clients verify with it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance's `smb.conf`, for Samba's own tools (`-s`).
    pub fn smb_conf(&self) -> PathBuf {
        self.dir.join("etc/smb.conf")
    }

    /// The end of what samba wrote (its log, as `-i` sends it to standard output), for failure
    /// messages.
    pub fn log(&self) -> String {
        tail(&self.dir.join(LOG), 8000)
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
        // The directory goes with `_temp` and the address with `address`, dropped after this.
    }
}

/// The instance's `smb.conf`: the provisioned settings with every path inside `dir`, the LDAP
/// service only, on `ip` only, with the instance's certificates.
fn smb_conf(dir: &Path, ip: Ipv4Addr, options: &SambaOptions) -> String {
    let d = dir.display();
    let mut conf = format!(
        "[global]\n\
         \tnetbios name = {NETBIOS_NAME}\n\
         \tworkgroup = {DOMAIN}\n\
         \trealm = {REALM}\n\
         \tserver role = active directory domain controller\n\
         \tserver services = ldap\n\
         \tidmap_ldb:use rfc2307 = yes\n\
         \tinterfaces = {ip}/8\n\
         \tbind interfaces only = yes\n\
         \tprivate dir = {d}/private\n\
         \tstate directory = {d}/state\n\
         \tcache directory = {d}/cache\n\
         \tlock directory = {d}\n\
         \tpid directory = {d}/run\n\
         \tbinddns dir = {d}/bind-dns\n\
         \tncalrpc dir = {d}/run/ncalrpc\n\
         \twinbindd socket directory = {d}/run/winbindd\n\
         \tntp signd socket directory = {d}/run/ntp_signd\n\
         \tlog file = {d}/log/samba.log\n\
         \ttls enabled = yes\n\
         \ttls keyfile = {d}/tls/server.key\n\
         \ttls certfile = {d}/tls/server.pem\n\
         \ttls cafile = {d}/tls/ca.pem\n\
         \ttls verify peer = ca_only\n\
         \tldb:nosync = true\n"
    );
    for (name, value) in &options.smb_conf {
        let _ = writeln!(conf, "\t{name} = {value}");
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_in_microsoft_order() {
        let guid = [
            0x40, 0x62, 0xfe, 0x7a, 0x02, 0xb6, 0x8e, 0x43, 0xb3, 0x50, 0x8a, 0x12, 0x91, 0x9b,
            0x06, 0x99,
        ];
        assert_eq!(guid_string(&guid), "7afe6240-b602-438e-b350-8a12919b0699");
    }

    #[test]
    fn options_are_checked() {
        assert!(SambaOptions::default().check().is_ok());
        let bad = SambaOptions::default().smb_conf("a\nb", "c");
        assert!(bad.check().is_err());
        let bad = SambaOptions::default().smb_conf("log level", "1\n[x]");
        assert!(bad.check().is_err());
        let conf = smb_conf(
            Path::new("/d"),
            Ipv4Addr::new(127, 0, 0, 9),
            &SambaOptions::default().smb_conf("log level", "3"),
        );
        assert!(conf.contains("\tinterfaces = 127.0.0.9/8\n"), "{conf}");
        assert!(conf.ends_with("\tlog level = 3\n"), "{conf}");
    }
}
