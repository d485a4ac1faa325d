//! How the server is set up: [`Options`] and its setters, their checks, and the sample data
//! it is loaded with.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{Slapd, BASE, READER_PW};
use crate::kerberos::Realm;
use crate::ldif;
use crate::Error;

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
    /// Whether every tenth person (`i % 10 == 0`) gets the userPassword
    /// [`person_password`](crate::ldif::person_password)`(i)`. Off by default, so that what
    /// anonymous clients see equals what the admin sees.
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

    pub(super) fn check(&self) -> Result<(), Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
