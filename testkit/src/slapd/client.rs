//! Driving a running server with the OpenLDAP client tools: the transports and binds they use,
//! and helpers that change the directory and read it back.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{Slapd, ADMIN_PW, READER_PW};
use crate::kerberos::Realm;
use crate::ldif;
use crate::tools::Output;
use crate::Error;

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
    /// [`Options::gssapi`](super::Options::gssapi) of that realm. The tool gets
    /// [`Realm::client_env`] of `ccache` and `keytab`, so it reads neither `/etc/krb5.conf` nor
    /// the caller's tickets. Without `-Q`,
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

impl Slapd {
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
    /// [`Options::tool_timeout`](super::Options::tool_timeout) (it is then killed) is an
    /// error.
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
    /// every tenth with a password if [`Options::passwords`](super::Options::passwords)) in one
    /// `ldapadd`.
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
