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

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs;
use crate::kerberos::Realm;
use crate::ldif;
pub use crate::ldif::{generate_ldif, person_dn, person_ldif, person_password};
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

/// Environment variable that keeps the temporary directory after the test (its path is printed).
pub const KEEP_ENV: &str = "SYNCREPL_TESTKIT_KEEP";

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

/// How the server is set up. Build it with [`Slapd::builder`] and the chainable setters, or as a
/// struct literal with `..Options::default()`; then [`Options::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The database suffix; its first RDN must be `dc=`, `o=` or `ou=`. Default `dc=example,dc=com`.
    pub suffix: String,
    /// How many generated inetOrgPerson entries `uid=user{i:05},ou=people,SUFFIX` to load. Default 50.
    pub people: usize,
    /// How many groupOfNames `cn=group{g:03},ou=groups,SUFFIX` to load (none and no `ou=groups`
    /// when 0, the default); person `i` is a member of group `i % groups`.
    pub groups: usize,
    /// Whether every tenth person (`i % 10 == 0`) gets the userPassword [`person_password`]`(i)`.
    /// Off by default, so that what anonymous clients see equals what the admin sees.
    pub passwords: bool,
    /// More LDIF content records loaded after the generated ones (parents before children).
    pub extra_ldif: String,
    /// Whether to load and configure the syncprov overlay at all. Default true.
    pub syncprov: bool,
    /// Size of syncprov's session log: incremental refreshes further behind use a present phase.
    /// Default 1000.
    pub sessionlog: usize,
    /// Whether to make certificates and listen on ldaps (StartTLS and ldaps). Default true.
    pub tls: bool,
    /// Whether anonymous clients may read (all but userPassword). Default true; when false,
    /// anonymous searches of the suffix fail with a result code from `require authc`.
    pub anonymous_read: bool,
    /// mdb's maxsize in bytes (address space, not disk). Default 8 GiB.
    pub maxsize: u64,
    /// slapd's log levels, space-separated (given to `-d`, output in `slapd.log`), e.g.
    /// `"stats"` to see every operation. Default `"none"`: start-up, shutdown and errors.
    pub loglevel: String,
    /// How long slapd may take to answer after it is started. Default 30 s.
    pub start_timeout: Duration,
    /// How long one LDAP tool run by a helper may take. Default 120 s.
    pub tool_timeout: Duration,
    /// Makes the server an OpenLDAP replica of another one: its database starts empty (nothing is
    /// loaded) and slapd's own syncrepl consumer fills it. `None` (the default) for a provider.
    pub replica_of: Option<ReplicaOf>,
    /// This server's `serverID` (1 to 4095), needed for multi-provider replication: it is written
    /// to the global section, and the initial load's entryCSNs and contextCSN carry it
    /// (`slapadd -S N`). `None` (the default) for serverID 0.
    pub server_id: Option<u32>,
    /// The other providers this one replicates from in multi-provider mode (`multiprovider on`),
    /// one syncrepl consumer each, bound as the rootdn. Empty by default; see
    /// [`crate::multiprovider::Providers`], which fills it in.
    pub peers: Vec<Peer>,
    /// Accepts SASL GSSAPI binds with tickets of a Kerberos realm (set it with
    /// [`Options::gssapi`]): `slapd.conf` gets `sasl-host localhost`, `sasl-realm REALM` and
    /// `authz-regexp` rules that make the principal `reader@REALM` the reader
    /// ([`Options::reader_dn`]) and any other plain `NAME@REALM` `uid=NAME,ou=people,SUFFIX`, and
    /// slapd runs with `KRB5_CONFIG` and `KRB5_KTNAME` from the realm (its replay cache in the
    /// server's directory, no other inherited `KRB5*` variable but `KRB5_TRACE`). `None` (the
    /// default) leaves the configuration and slapd's environment as without Kerberos.
    pub gssapi: Option<Gssapi>,
    /// slapd's `sasl-secprops` (for every SASL mechanism), e.g. `noanonymous,noplain,minssf=56`
    /// to offer GSSAPI binds confidentiality only. `None` (the default): slapd's own default,
    /// which offers no layer, integrity and confidentiality.
    pub sasl_secprops: Option<String>,
    /// slapd's global `security` factors, e.g. `ssf=56`: binds with a weaker layer still
    /// succeed, but every later operation then fails with confidentialityRequired (13). It
    /// applies to simple binds too (ldapi counts as ssf 71, so the admin's helpers still work).
    /// `None` (the default) for none.
    pub security: Option<String>,
}

/// What slapd needs to accept GSSAPI binds ([`Options::gssapi`]); made by
/// [`crate::kerberos::Realm::server_keys`]. The files must outlive the server, so keep the realm
/// alive as long as the [`Slapd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gssapi {
    /// The realm's name, e.g. `EXAMPLE.TEST`.
    pub realm: String,
    /// The realm's `krb5.conf` (slapd's `KRB5_CONFIG`).
    pub krb5_config: PathBuf,
    /// The keytab with the `ldap/…` service keys (slapd's `KRB5_KTNAME`).
    pub keytab: PathBuf,
}

/// A provider that a multi-provider server ([`Options::peers`]) replicates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The consumer's replica ID (1 to 999), unique among this server's peers; the fixture uses
    /// the peer's serverID.
    pub rid: u32,
    /// The peer's URL, e.g. `ldap://127.0.0.1:PORT`.
    pub provider: String,
}

/// Where a replica ([`Options::replica_of`]) replicates from, with a simple bind.
#[derive(Debug, Clone)]
pub struct ReplicaOf {
    /// The provider's URL, e.g. `ldap://127.0.0.1:PORT`.
    pub provider: String,
    /// The DN the consumer binds as.
    pub bind_dn: String,
    /// Its password (written to the replica's configuration, as slapd needs it).
    pub password: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            suffix: BASE.into(),
            people: 50,
            groups: 0,
            passwords: false,
            extra_ldif: String::new(),
            syncprov: true,
            sessionlog: 1000,
            tls: true,
            anonymous_read: true,
            maxsize: 8 << 30,
            loglevel: "none".into(),
            start_timeout: Duration::from_secs(30),
            tool_timeout: Duration::from_secs(120),
            replica_of: None,
            server_id: None,
            peers: Vec::new(),
            gssapi: None,
            sasl_secprops: None,
            security: None,
        }
    }
}

impl Options {
    /// Sets [`Options::suffix`].
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }
    /// Sets [`Options::people`].
    pub fn people(mut self, n: usize) -> Self {
        self.people = n;
        self
    }
    /// Sets [`Options::groups`].
    pub fn groups(mut self, n: usize) -> Self {
        self.groups = n;
        self
    }
    /// Sets [`Options::passwords`].
    pub fn passwords(mut self, on: bool) -> Self {
        self.passwords = on;
        self
    }
    /// Appends to [`Options::extra_ldif`] (a blank line is put between records).
    pub fn extra_ldif(mut self, ldif: &str) -> Self {
        self.extra_ldif.push_str(ldif.trim_end());
        self.extra_ldif.push_str("\n\n");
        self
    }
    /// Sets [`Options::syncprov`].
    pub fn syncprov(mut self, on: bool) -> Self {
        self.syncprov = on;
        self
    }
    /// Sets [`Options::sessionlog`].
    pub fn sessionlog(mut self, size: usize) -> Self {
        self.sessionlog = size;
        self
    }
    /// Sets [`Options::tls`].
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
    /// Sets [`Options::anonymous_read`].
    pub fn anonymous_read(mut self, allowed: bool) -> Self {
        self.anonymous_read = allowed;
        self
    }
    /// Sets [`Options::maxsize`].
    pub fn maxsize(mut self, bytes: u64) -> Self {
        self.maxsize = bytes;
        self
    }
    /// Sets [`Options::loglevel`].
    pub fn loglevel(mut self, level: impl Into<String>) -> Self {
        self.loglevel = level.into();
        self
    }
    /// Sets [`Options::start_timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
    /// Sets [`Options::tool_timeout`].
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }
    /// Sets [`Options::replica_of`].
    pub fn replica_of(mut self, provider: ReplicaOf) -> Self {
        self.replica_of = Some(provider);
        self
    }

    /// Sets [`Options::server_id`].
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = Some(id);
        self
    }
    /// Adds a multi-provider peer to [`Options::peers`].
    pub fn peer(mut self, rid: u32, provider: impl Into<String>) -> Self {
        self.peers.push(Peer {
            rid,
            provider: provider.into(),
        });
        self
    }

    /// Sets [`Options::gssapi`] to accept GSSAPI binds with tickets of `realm`, which must
    /// outlive the server.
    pub fn gssapi(mut self, realm: &Realm) -> Self {
        self.gssapi = Some(realm.server_keys());
        self
    }
    /// Sets [`Options::sasl_secprops`].
    pub fn sasl_secprops(mut self, props: impl Into<String>) -> Self {
        self.sasl_secprops = Some(props.into());
        self
    }
    /// Sets [`Options::security`].
    pub fn security(mut self, factors: impl Into<String>) -> Self {
        self.security = Some(factors.into());
        self
    }

    /// Starts a server with these options.
    pub fn start(self) -> Result<Slapd, Error> {
        Slapd::try_start(self)
    }

    /// The rootdn: `cn=admin,SUFFIX`.
    pub fn admin_dn(&self) -> String {
        format!("cn=admin,{}", self.suffix)
    }

    /// The read-everything account: `cn=reader,SUFFIX`.
    pub fn reader_dn(&self) -> String {
        format!("cn=reader,{}", self.suffix)
    }

    /// The whole LDIF the server is loaded with (see [`Options::write_ldif`]).
    pub fn ldif(&self) -> String {
        let mut out = Vec::with_capacity(1024 * (self.people + 4));
        // Writing to a Vec cannot fail; an invalid suffix gives a plain organizationalUnit.
        self.write_ldif(&mut out)
            .expect("writing to a Vec cannot fail");
        // Every piece is UTF-8 text.
        String::from_utf8(out).expect("the LDIF is UTF-8")
    }

    /// Writes the LDIF the server is loaded with: the suffix entry, `ou=people`, the reader
    /// account, [`Options::people`] people, `ou=groups` and the groups if any, then
    /// [`Options::extra_ldif`].
    pub fn write_ldif(&self, out: &mut impl Write) -> std::io::Result<()> {
        let suffix = &self.suffix;
        let first = suffix.split(',').next().unwrap_or_default();
        let (attr, value) = first.split_once('=').unwrap_or(("ou", first));
        let (attr, value) = (attr.trim().to_ascii_lowercase(), value.trim());
        writeln!(out, "dn: {suffix}")?;
        match attr.as_str() {
            "dc" => writeln!(
                out,
                "objectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}"
            )?,
            "o" => writeln!(out, "objectClass: top\nobjectClass: organization\no: {value}")?,
            _ => writeln!(
                out,
                "objectClass: top\nobjectClass: organizationalUnit\nou: {value}"
            )?,
        }
        writeln!(
            out,
            "description: syncrepl test directory\n\n\
             dn: ou=people,{suffix}\nobjectClass: top\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: cn=reader,{suffix}\nobjectClass: top\nobjectClass: organizationalRole\n\
             objectClass: simpleSecurityObject\ncn: reader\nuserPassword: {READER_PW}\n\
             description: reads everything\n"
        )?;
        let domain = ldif::mail_domain(suffix);
        for i in 0..self.people {
            ldif::write_person(out, i, suffix, &domain, self.passwords)?;
        }
        if self.groups > 0 {
            writeln!(
                out,
                "dn: ou=groups,{suffix}\nobjectClass: top\nobjectClass: organizationalUnit\nou: groups\n"
            )?;
            for g in 0..self.groups {
                ldif::write_group(out, g, self.groups, self.people, suffix)?;
            }
        }
        out.write_all(self.extra_ldif.as_bytes())
    }

    fn check(&self) -> Result<(), Error> {
        let first = self.suffix.split(',').next().unwrap_or_default();
        let attr = first
            .split_once('=')
            .map(|(a, _)| a.trim().to_ascii_lowercase());
        if !matches!(attr.as_deref(), Some("dc" | "o" | "ou")) {
            return Err(Error::Options(format!(
                "the suffix {:?} must start with dc=, o= or ou=",
                self.suffix
            )));
        }
        if let Some(r) = &self.replica_of {
            let plain = |v: &str| !v.is_empty() && !v.contains(['"', '\n', '\\', ' ']);
            if !plain(&r.provider) || r.bind_dn.contains(['"', '\n']) || !plain(&r.password) {
                return Err(Error::Options(
                    "the replica's provider, bind DN or password has characters this fixture does not quote".into(),
                ));
            }
        }
        if self.server_id.is_some_and(|id| !(1..=4095).contains(&id)) {
            return Err(Error::Options(format!(
                "serverID {:?} is not between 1 and 4095",
                self.server_id
            )));
        }
        if !self.peers.is_empty() {
            if self.server_id.is_none() || self.replica_of.is_some() || !self.syncprov {
                return Err(Error::Options(
                    "a multi-provider server needs a serverID and syncprov, and is no plain replica"
                        .into(),
                ));
            }
            let mut rids: Vec<u32> = self.peers.iter().map(|p| p.rid).collect();
            rids.sort_unstable();
            rids.dedup();
            if rids.len() != self.peers.len() || rids.iter().any(|r| !(1..=999).contains(r)) {
                return Err(Error::Options(
                    "the peers' rids must be distinct and between 1 and 999".into(),
                ));
            }
            if self
                .peers
                .iter()
                .any(|p| p.provider.is_empty() || p.provider.contains(['"', '\n', '\\', ' ']))
            {
                return Err(Error::Options(
                    "a peer's URL has characters this fixture does not quote".into(),
                ));
            }
        }
        if let Some(g) = &self.gssapi {
            let realm_ok = !g.realm.is_empty()
                && g.realm
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !realm_ok {
                return Err(Error::Options(format!(
                    "the realm name {:?} must be upper-case letters, digits, '.' and '-'",
                    g.realm
                )));
            }
        }
        for (what, value) in [
            ("sasl-secprops", &self.sasl_secprops),
            ("security", &self.security),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.trim().is_empty() || v.contains(['"', '\n', '\\']))
            {
                return Err(Error::Options(format!(
                    "{what} {value:?} is empty or has characters this fixture does not quote"
                )));
            }
        }
        if self.suffix.contains(['"', '\n', '\\']) {
            return Err(Error::Options(format!(
                "the suffix {:?} has characters this fixture does not quote",
                self.suffix
            )));
        }
        Ok(())
    }

    /// The `slapd.conf` for a server in `dir`.
    fn slapd_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let suffix = &self.suffix;
        let admin = self.admin_dn();
        let reader = self.reader_dn();
        let mut c = String::new();
        c.push_str("# Written by syncrepl-testkit for one test run.\n");
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            let _ = writeln!(c, "include /etc/ldap/schema/{schema}.schema");
        }
        c.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
        if self.syncprov {
            c.push_str("moduleload syncprov\n");
        }
        let _ = writeln!(
            c,
            "pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nloglevel {}\n\
             sizelimit unlimited\ntimelimit unlimited\ntool-threads 1",
            self.loglevel
        );
        if let Some(id) = self.server_id {
            let _ = writeln!(c, "serverID {id}");
        }
        if self.tls {
            let _ = writeln!(
                c,
                "TLSCACertificateFile {d}/{}\nTLSCertificateFile {d}/{}\n\
                 TLSCertificateKeyFile {d}/{}\nTLSVerifyClient allow",
                certs::CA_PEM,
                certs::SERVER_PEM,
                certs::SERVER_KEY
            );
        }
        // SASL EXTERNAL: the identity of a local process over ldapi (any uid and gid, root's
        // being gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth), and the subject of the
        // client certificate over TLS, are both the reader.
        let _ = writeln!(
            c,
            "authz-regexp \"^gidNumber=[0-9]+.uidNumber=[0-9]+,cn=peercred,cn=external,cn=auth$\" \"{reader}\"\n\
             authz-regexp \"^{}$\" \"{reader}\"",
            certs::CLIENT_SUBJECT
        );
        if let Some(g) = &self.gssapi {
            // The GSSAPI identity of `NAME@REALM` is `uid=NAME,cn=realm,cn=gssapi,cn=auth`, the
            // realm in lower case as slapd normalizes the DN before matching.
            let realm = g.realm.to_ascii_lowercase();
            let _ = writeln!(
                c,
                "sasl-host localhost\nsasl-realm {}\n\
                 authz-regexp \"^uid={},cn={realm},cn=gssapi,cn=auth$\" \"{reader}\"\n\
                 authz-regexp \"^uid=([^,/]+),cn={realm},cn=gssapi,cn=auth$\" \"uid=$1,ou=people,{suffix}\"",
                g.realm,
                crate::kerberos::READER_PRINCIPAL,
            );
        }
        if let Some(props) = &self.sasl_secprops {
            let _ = writeln!(c, "sasl-secprops {props}");
        }
        if let Some(factors) = &self.security {
            let _ = writeln!(c, "security {factors}");
        }
        let _ = writeln!(
            c,
            "\ndatabase mdb\nsuffix \"{suffix}\"\nrootdn \"{admin}\"\nrootpw {ADMIN_PW}\n\
             directory {d}/db\nmaxsize {}\ndbnosync\n\
             sizelimit unlimited\ntimelimit unlimited\n\
             index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq",
            self.maxsize
        );
        let anonymous = if self.anonymous_read {
            "read"
        } else {
            c.push_str("require authc\n");
            "auth"
        };
        let _ = writeln!(
            c,
            "access to attrs=userPassword\n    by dn.exact=\"{reader}\" read\n    by self write\n    \
             by anonymous auth\n    by * none\n\
             access to *\n    by dn.exact=\"{reader}\" read\n    by users read\n    by anonymous {anonymous}"
        );
        if let Some(r) = &self.replica_of {
            let _ = writeln!(
                c,
                "syncrepl rid=001 provider={} type=refreshAndPersist retry=\"1 +\"\n  \
                 searchbase=\"{suffix}\" scope=sub schemachecking=off\n  \
                 bindmethod=simple binddn=\"{}\" credentials={}",
                r.provider, r.bind_dn, r.password
            );
        }
        for peer in &self.peers {
            let _ = writeln!(
                c,
                "syncrepl rid={:03} provider={} type=refreshAndPersist retry=\"1 +\"\n  \
                 searchbase=\"{suffix}\" scope=sub schemachecking=off\n  \
                 bindmethod=simple binddn=\"{admin}\" credentials={ADMIN_PW}",
                peer.rid, peer.provider
            );
        }
        if !self.peers.is_empty() {
            c.push_str("multiprovider on\n");
        }
        if self.syncprov {
            let _ = writeln!(
                c,
                "overlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog {}",
                self.sessionlog
            );
        }
        c
    }
}

/// The listener a helper's LDAP tool connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldap://127.0.0.1:PORT`, in clear.
    Ldap,
    /// `ldap://127.0.0.1:PORT` with StartTLS required (`-ZZ`), checked against the test CA.
    StartTls,
    /// `ldaps://127.0.0.1:TLSPORT`, checked against the test CA.
    Ldaps,
    /// The Unix socket `ldapi://…`.
    Ldapi,
}

/// Whom a helper's LDAP tool binds as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind<'a> {
    /// No bind (`-x` without a DN).
    Anonymous,
    /// Simple bind as the rootdn.
    Admin,
    /// Simple bind as the reader.
    Reader,
    /// Simple bind with these credentials.
    Simple {
        /// The bind DN.
        dn: &'a str,
        /// The password.
        password: &'a str,
    },
    /// SASL EXTERNAL: over ldapi the process's uid and gid, over TLS the client certificate
    /// ([`Slapd::client_cert_pem`]); both are mapped to the reader.
    External,
    /// SASL GSSAPI with a ticket of `realm` (`-Y GSSAPI -N`: libldap asks for `ldap/127.0.0.1`
    /// over `ldap://127.0.0.1`, and for `ldap/HOSTNAME` over ldapi), for a server started with
    /// [`Options::gssapi`] of that realm. The tool gets [`Realm::client_env`] of `ccache` and
    /// `keytab`, so it reads neither `/etc/krb5.conf` nor the caller's tickets. Without `-Q`,
    /// so its stderr tells the layer chosen: `SASL SSF: 0` for none, `1` for integrity, the
    /// cipher's key length for confidentiality (`256` with this realm's AES-256 keys).
    /// [`Bind::gssapi`] makes the common case.
    Gssapi {
        /// The realm whose configuration the tool uses.
        realm: &'a Realm,
        /// The file cache with the client's tickets (see [`Realm::kinit`]); `None` for a
        /// private memory cache, which only works with a `keytab`.
        ccache: Option<&'a Path>,
        /// A client keytab from which the library gets tickets itself when the cache has none or
        /// they expired (such as [`Realm::client_keytab`]); `None` for none.
        keytab: Option<&'a Path>,
        /// SASL security properties for `-O`: `maxssf=0` for no layer, `maxssf=1` for
        /// integrity, `minssf=56` to insist on confidentiality; `None` for libldap's default
        /// (the strongest the server offers).
        secprops: Option<&'a str>,
    },
}

impl<'a> Bind<'a> {
    /// [`Bind::Gssapi`] with the tickets in the file cache `ccache`, no keytab and the default
    /// layer.
    pub fn gssapi(realm: &'a Realm, ccache: &'a Path) -> Bind<'a> {
        Bind::Gssapi {
            realm,
            ccache: Some(ccache),
            keytab: None,
            secprops: None,
        }
    }
}

/// Search scope for [`Slapd::search_scope`] and [`Slapd::ldapsearch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry only.
    Base,
    /// Its immediate children.
    One,
    /// The base and all below it.
    Sub,
    /// All below the base, not the base.
    Children,
}

impl Scope {
    fn arg(self) -> &'static str {
        match self {
            Scope::Base => "base",
            Scope::One => "one",
            Scope::Sub => "sub",
            Scope::Children => "children",
        }
    }
}

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

/// A free port on 127.0.0.1 now; `avoid` are ports already chosen.
pub(crate) fn free_port(avoid: &[u16]) -> Result<u16, Error> {
    for _ in 0..20 {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind a loopback port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("read a bound port", e))?
            .port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
    }
    Err(Error::Options("no free loopback port".into()))
}

/// `/usr/sbin/NAME` if it exists (the server tools live there and `PATH` often lacks it), else
/// `NAME` from `PATH`.
pub(crate) fn sbin(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() {
        path
    } else {
        PathBuf::from(name)
    }
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

/// The last `max` bytes of a file, for error messages.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
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
        let temp = tempfile::Builder::new()
            .prefix("syncrepl-slapd-")
            .tempdir()
            .map_err(|e| Error::io("make a temporary directory", e))?;
        let dir = temp.path().to_path_buf();
        let temp = if std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("syncrepl-testkit: keeping {}", dir.display());
            let _ = temp.keep();
            None
        } else {
            Some(temp)
        };
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
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("duplicate the log file", e))?;
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
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io(format!("run {}", sbin("slapd").display()), e))?;
        let deadline = Instant::now() + self.options.start_timeout;
        let addr = self.addr();
        let failure = |reason: String| {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default())
                .into_owned();
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

    /// A command for an OpenLDAP client tool (`ldapsearch`, `ldapmodify`, `ldapwhoami`, …)
    /// against this server, with `-H` and the bind options set from `transport` and `bind`;
    /// add arguments and run it as you like (for example a `-E sync=rp` search that streams;
    /// ldapsearch buffers its output into a pipe, so run that under `stdbuf -oL`, as the
    /// fixture's own persist test does).
    ///
    /// The tool reads no `ldap.conf` and none of the caller's `LDAP*` variables: its TLS
    /// settings are the test CA (and the client certificate for [`Bind::External`]).
    ///
    /// # Panics
    /// For [`Transport::Ldaps`] when TLS is off.
    pub fn ldap_command(&self, tool: &str, transport: Transport, bind: Bind<'_>) -> Command {
        let mut cmd = Command::new(tool);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LDAP") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LDAPCONF", self.dir.join("no-ldap.conf"))
            .env("LDAPRC", self.dir.join("no-ldaprc"));
        match transport {
            Transport::Ldap => cmd.args(["-H", &self.ldap_url()]),
            Transport::StartTls => cmd.args(["-H", &self.ldap_url(), "-ZZ"]),
            Transport::Ldaps => cmd.args(["-H", &self.ldaps_url()]),
            Transport::Ldapi => cmd.args(["-H", &self.ldapi_url()]),
        };
        if self.options.tls {
            cmd.env("LDAPTLS_CACERT", self.ca_pem())
                .env("LDAPTLS_REQCERT", "demand");
        }
        let (admin, reader) = (self.admin_dn(), self.reader_dn());
        match bind {
            Bind::Anonymous => cmd.arg("-x"),
            Bind::Admin => cmd.args(["-x", "-D", &admin, "-w", ADMIN_PW]),
            Bind::Reader => cmd.args(["-x", "-D", &reader, "-w", READER_PW]),
            Bind::Simple { dn, password } => cmd.args(["-x", "-D", dn, "-w", password]),
            Bind::External => {
                if transport != Transport::Ldapi && self.options.tls {
                    cmd.env("LDAPTLS_CERT", self.client_cert_pem())
                        .env("LDAPTLS_KEY", self.client_key_pem());
                }
                cmd.args(["-Y", "EXTERNAL", "-Q"])
            }
            Bind::Gssapi {
                realm,
                ccache,
                keytab,
                secprops,
            } => {
                crate::kerberos::clear_krb5_env(&mut cmd);
                cmd.envs(realm.client_env(ccache, keytab));
                cmd.args(["-Y", "GSSAPI", "-N"]);
                if let Some(props) = secprops {
                    cmd.args(["-O", props]);
                }
                &mut cmd
            }
        };
        cmd
    }

    /// Runs [`Slapd::ldap_command`] with `args` and `input` on its standard input. Returns how
    /// it ended, success or not; only a tool that could not run or did not finish within
    /// [`Options::tool_timeout`] (it is then killed) is an error.
    pub fn ldap_tool(
        &self,
        tool: &str,
        transport: Transport,
        bind: Bind<'_>,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, Error> {
        let mut cmd = self.ldap_command(tool, transport, bind);
        cmd.args(args);
        crate::tools::run(cmd, input.map(str::as_bytes), self.options.tool_timeout)
    }

    /// [`Slapd::ldap_tool`] as the admin over ldapi, turning a failed run into [`Error::Tool`].
    fn admin_tool(&self, tool: &str, args: &[&str], input: Option<&str>) -> Result<Output, Error> {
        self.ldap_tool(tool, Transport::Ldapi, Bind::Admin, args, input)?
            .checked(tool, args)
    }

    /// Applies LDIF change records (`changetype: add|modify|delete|modrdn`) as the admin with
    /// `ldapmodify`, stopping at the first error.
    pub fn try_modify(&self, ldif: &str) -> Result<(), Error> {
        self.admin_tool("ldapmodify", &[], Some(ldif)).map(drop)
    }

    /// [`Slapd::try_modify`], panicking with `ldapmodify`'s error.
    pub fn modify(&self, ldif: &str) {
        if let Err(e) = self.try_modify(ldif) {
            panic!("{e}");
        }
    }

    /// Applies LDIF change records as the admin with `ldapmodify -c` (going on after errors),
    /// returning what it wrote to stderr (empty when every record applied).
    pub fn apply_ldif(&self, ldif: &str) -> String {
        match self.ldap_tool(
            "ldapmodify",
            Transport::Ldapi,
            Bind::Admin,
            &["-c"],
            Some(ldif),
        ) {
            Ok(out) => out.stderr,
            Err(e) => e.to_string(),
        }
    }

    /// Adds LDIF content records (no `changetype` needed) as the admin with `ldapadd`.
    ///
    /// # Panics
    /// When `ldapadd` fails.
    pub fn add(&self, ldif: &str) {
        if let Err(e) = self.admin_tool("ldapadd", &[], Some(ldif)) {
            panic!("{e}");
        }
    }

    /// Adds an inetOrgPerson `uid=UID,ou=people,SUFFIX` with `cn` and `sn` from `uid`, and
    /// returns its DN.
    ///
    /// # Panics
    /// When the add fails (for example, the entry exists).
    pub fn add_person(&self, uid: &str) -> String {
        let dn = format!("uid={uid},ou=people,{}", self.options.suffix);
        let domain = ldif::mail_domain(&self.options.suffix);
        self.add(&format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             mail: {uid}@{domain}\ndescription: added by a test\n"
        ));
        dn
    }

    /// Adds generated people `range` (the same entries as the initial load would have made;
    /// every tenth with a password if [`Options::passwords`]) in one `ldapadd`.
    ///
    /// # Panics
    /// When the add fails (for example, one exists).
    pub fn add_people(&self, range: std::ops::Range<usize>) {
        let domain = ldif::mail_domain(&self.options.suffix);
        let mut out = Vec::new();
        for i in range {
            // Writing to a Vec cannot fail.
            ldif::write_person(
                &mut out,
                i,
                &self.options.suffix,
                &domain,
                self.options.passwords,
            )
            .expect("writing to a Vec cannot fail");
        }
        self.add(&String::from_utf8_lossy(&out));
    }

    /// Replaces the values of `attr` in `dn` (no values: deletes the attribute).
    ///
    /// # Panics
    /// When the modify fails.
    pub fn replace(&self, dn: &str, attr: &str, values: &[&str]) {
        let mut ldif = format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n");
        for v in values {
            let _ = writeln!(ldif, "{attr}: {v}");
        }
        self.modify(&ldif);
    }

    /// Deletes the entry `dn` with `ldapdelete`.
    ///
    /// # Panics
    /// When the delete fails.
    pub fn delete(&self, dn: &str) {
        if let Err(e) = self.admin_tool("ldapdelete", &[dn], None) {
            panic!("{e}");
        }
    }

    /// Renames `dn` to `new_rdn` (the old RDN value removed), under `new_superior` if given,
    /// with `ldapmodrdn`, and returns the new DN.
    ///
    /// # Panics
    /// When the rename fails.
    pub fn rename(&self, dn: &str, new_rdn: &str, new_superior: Option<&str>) -> String {
        let mut args = vec!["-r"];
        if let Some(sup) = new_superior {
            args.extend(["-s", sup]);
        }
        args.extend([dn, new_rdn]);
        if let Err(e) = self.admin_tool("ldapmodrdn", &args, None) {
            panic!("{e}");
        }
        let parent = match new_superior {
            Some(sup) => sup.to_owned(),
            None => dn
                .split_once(',')
                .map(|(_, p)| p.to_owned())
                .unwrap_or_default(),
        };
        format!("{new_rdn},{parent}")
    }

    /// `ldapsearch -LLL -o ldif-wrap=no` output with this transport, bind and scope, or the
    /// tool's error.
    pub fn ldapsearch(
        &self,
        transport: Transport,
        bind: Bind<'_>,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, Error> {
        let args = crate::tools::ldapsearch_args(base, scope.arg(), filter, attrs);
        self.ldap_tool("ldapsearch", transport, bind, &args, None)?
            .checked("ldapsearch", &args)
            .map(|out| out.stdout)
    }

    /// `ldapsearch -LLL` output as the admin (over ldapi), subtree, without line wrapping.
    ///
    /// # Panics
    /// When the search fails.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        self.search_scope(base, Scope::Sub, filter, attrs)
    }

    /// `ldapsearch -LLL` output as the admin (over ldapi) with a scope, without line wrapping.
    ///
    /// # Panics
    /// When the search fails.
    pub fn search_scope(&self, base: &str, scope: Scope, filter: &str, attrs: &[&str]) -> String {
        match self.ldapsearch(Transport::Ldapi, Bind::Admin, base, scope, filter, attrs) {
            Ok(text) => text,
            Err(e) => panic!("{e}"),
        }
    }

    /// `ldapsearch -LLL` output as an anonymous client over plain LDAP, subtree, wrapped at 76
    /// columns as ldapsearch wraps by default.
    ///
    /// # Panics
    /// When the search fails.
    pub fn search_anonymous(&self, base: &str, filter: &str) -> String {
        let args = ["-LLL", "-b", base, filter];
        match self.ldap_tool("ldapsearch", Transport::Ldap, Bind::Anonymous, &args, None) {
            Ok(out) if out.success() => out.stdout,
            Ok(out) => panic!(
                "ldapsearch {args:?} failed ({:?}): {}",
                out.code, out.stderr
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// The suffix entry's contextCSN (the newest change syncprov has recorded), if it has one;
    /// its first value when several serverIDs have one (see [`Slapd::context_csns`]).
    ///
    /// # Panics
    /// When the search fails.
    pub fn context_csn(&self) -> Option<String> {
        let suffix = self.options.suffix.clone();
        let text = self
            .ldapsearch(
                Transport::Ldapi,
                Bind::Admin,
                &suffix,
                Scope::Base,
                "(objectClass=*)",
                &["contextCSN"],
            )
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("contextCSN: "))
            .map(str::to_owned)
    }

    /// Every value of the suffix entry's contextCSN, ordered by serverID as in slapd's cookies:
    /// one per serverID that has changed the data (multi-provider replication), empty when there
    /// is none or the search fails.
    pub fn context_csns(&self) -> Vec<String> {
        self.try_context_csns().unwrap_or_default()
    }

    /// [`Slapd::context_csns`], with the search's error.
    pub(crate) fn try_context_csns(&self) -> Result<Vec<String>, Error> {
        let text = self.ldapsearch(
            Transport::Ldapi,
            Bind::Admin,
            self.base_dn(),
            Scope::Base,
            "(objectClass=*)",
            &["contextCSN"],
        )?;
        let mut csns: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("contextCSN: "))
            .map(str::to_owned)
            .collect();
        // `TIME#COUNT#SID#MOD`: ordered by serverID, as slapd orders them in its cookies.
        csns.sort_unstable_by(|a, b| (a.split('#').nth(2), a).cmp(&(b.split('#').nth(2), b)));
        Ok(csns)
    }

    /// The identity `ldapwhoami` reports for this transport and bind, like `dn:cn=reader,…`.
    pub fn whoami(&self, transport: Transport, bind: Bind<'_>) -> Result<String, Error> {
        self.ldap_tool("ldapwhoami", transport, bind, &[], None)?
            .checked("ldapwhoami", &[])
            .map(|out| out.stdout.trim().to_owned())
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

    #[test]
    fn the_configuration_follows_the_options() {
        let dir = Path::new("/t");
        let conf = Options::default().slapd_conf(dir);
        assert!(conf.contains("moduleload syncprov\n"));
        assert!(conf.contains("syncprov-sessionlog 1000\n"));
        assert!(conf.contains("TLSCertificateFile /t/server.pem\n"));
        assert!(conf.contains("by anonymous read\n"));
        assert!(conf.contains("maxsize 8589934592\n"));
        let conf = Options::default()
            .syncprov(false)
            .tls(false)
            .anonymous_read(false)
            .suffix("o=acme")
            .slapd_conf(dir);
        assert!(!conf.contains("syncprov"));
        assert!(!conf.contains("TLS"));
        assert!(conf.contains("require authc\n"));
        assert!(conf.contains("rootdn \"cn=admin,o=acme\"\n"));
    }

    #[test]
    fn gssapi_and_security_are_only_there_when_asked_for() {
        let dir = Path::new("/t");
        let plain = Options::default().slapd_conf(dir);
        for absent in [
            "sasl-host",
            "sasl-realm",
            "gssapi",
            "sasl-secprops",
            "security",
        ] {
            assert!(!plain.contains(absent), "{absent}");
        }
        let options = Options {
            gssapi: Some(Gssapi {
                realm: "EXAMPLE.TEST".into(),
                krb5_config: "/k/krb5.conf".into(),
                keytab: "/k/service.keytab".into(),
            }),
            ..Options::default().suffix("o=acme")
        }
        .sasl_secprops("noanonymous,noplain,minssf=56")
        .security("ssf=56");
        assert!(options.check().is_ok());
        let conf = options.slapd_conf(dir);
        assert!(conf.contains("\nsasl-host localhost\nsasl-realm EXAMPLE.TEST\n"));
        assert!(conf.contains(
            "authz-regexp \"^uid=reader,cn=example.test,cn=gssapi,cn=auth$\" \"cn=reader,o=acme\"\n"
        ));
        assert!(conf.contains(
            "authz-regexp \"^uid=([^,/]+),cn=example.test,cn=gssapi,cn=auth$\" \"uid=$1,ou=people,o=acme\"\n"
        ));
        assert!(conf.contains("\nsasl-secprops noanonymous,noplain,minssf=56\nsecurity ssf=56\n"));
        // Global directives, before the database.
        assert!(conf.find("security ssf=56") < conf.find("database mdb"));
        assert!(Options::default().security("a\nb").check().is_err());
        assert!(Options::default().sasl_secprops("").check().is_err());
        let mut lower = options.clone();
        if let Some(g) = &mut lower.gssapi {
            g.realm = "example.test".into();
        }
        assert!(lower.check().is_err());
    }

    #[test]
    fn multi_provider_servers_have_a_server_id_and_peers() {
        let options = Options::default()
            .server_id(2)
            .peer(1, "ldap://127.0.0.1:1000")
            .peer(3, "ldap://127.0.0.1:3000");
        assert!(options.check().is_ok());
        let conf = options.slapd_conf(Path::new("/t"));
        assert!(conf.contains("\nserverID 2\n"));
        assert!(conf.contains("syncrepl rid=001 provider=ldap://127.0.0.1:1000 "));
        assert!(conf.contains("syncrepl rid=003 provider=ldap://127.0.0.1:3000 "));
        assert!(conf.contains("binddn=\"cn=admin,dc=example,dc=com\" credentials=adminpw\n"));
        let (multi, overlay) = (
            conf.find("multiprovider on\n").expect("multiprovider"),
            conf.find("overlay syncprov").expect("syncprov"),
        );
        assert!(conf.rfind("syncrepl rid=").is_some_and(|last| last < multi) && multi < overlay);
        assert!(!Options::default()
            .slapd_conf(Path::new("/t"))
            .contains("serverID"));

        assert!(Options::default().server_id(0).check().is_err());
        assert!(Options::default().server_id(4096).check().is_err());
        let duplicate = Options::default().server_id(1).peer(2, "a").peer(2, "b");
        assert!(duplicate.check().is_err());
        assert!(Options::default()
            .server_id(1)
            .peer(2, "a b")
            .check()
            .is_err());
    }

    #[test]
    fn suffixes_are_checked() {
        assert!(Options::default().suffix("cn=x").check().is_err());
        assert!(Options::default().suffix("ou=x,o=y").check().is_ok());
        let ldif = Options::default().suffix("o=acme").people(1).ldif();
        assert!(
            ldif.starts_with("dn: o=acme\nobjectClass: top\nobjectClass: organization\no: acme\n")
        );
        assert!(ldif.contains("mail: user00000@example.com\n"));
    }
}
