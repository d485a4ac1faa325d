//! Driving a running domain controller with the OpenLDAP client tools and `samba-tool`: the
//! accounts they bind as, helpers that change the directory, and DirSync searches read back.

use std::process::Command;

use base64::Engine as _;

use super::{SambaDc, ADMIN_DN, ADMIN_PW, BASE_DN, REALM, USERS_DN};
use crate::slapd::{Scope, Transport};
use crate::tools::{self, Output};
use crate::Error;

/// Whom a helper's LDAP tool binds as (always a simple bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account<'a> {
    /// No bind: enough for the root DSE only.
    Anonymous,
    /// [`ADMIN_DN`] with [`ADMIN_PW`].
    Administrator,
    /// A user: `name` is a DN (it contains `=`), a user principal name (it contains `@`), or an
    /// account name, which becomes `name@EXAMPLE.TEST`.
    User {
        /// The account.
        name: &'a str,
        /// Its password.
        password: &'a str,
    },
}

/// What a DirSync search returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSync {
    /// The entries as `ldapsearch -LLL -o ldif-wrap=no` printed them, without its comments.
    pub ldif: String,
    /// The cookie of the response control, base64 as ldapsearch prints and takes it; give it to
    /// the next [`SambaDc::dirsync`].
    pub cookie: String,
    /// The response's "more data" flag (Samba 4.17 never pages, so it is false).
    pub more: bool,
}

impl DirSync {
    /// The cookie's bytes (they start with `MSDS`).
    pub fn cookie_bytes(&self) -> Vec<u8> {
        base64_decode(&self.cookie).unwrap_or_default()
    }
}

impl SambaDc {
    /// A command for an OpenLDAP client tool against this server over `transport`
    /// (`Ldaps`, `StartTls`, or `Ldap` in cleartext), bound as `account`; add arguments and run
    /// it as you like, e.g. a change notification search that streams:
    ///
    /// ```no_run
    /// # use syncrepl_testkit::samba::{Account, SambaDc};
    /// # use syncrepl_testkit::Transport;
    /// let dc = SambaDc::start().expect("samba");
    /// let mut cmd = dc.ldap_command("ldapsearch", Transport::Ldaps, Account::Administrator);
    /// cmd.args(["-LLL", "-E", "!1.2.840.113556.1.4.528", "-b", dc.base_dn()]);
    /// cmd.args(["(objectClass=*)", "description"]);
    /// ```
    ///
    /// (ldapsearch buffers its output into a pipe: run it under `stdbuf -oL`.) The tool reads
    /// no `ldap.conf` or `.ldaprc` and none of the caller's `LDAP*` variables; its TLS settings
    /// are [`SambaDc::ca_file`] with `LDAPTLS_REQCERT=demand`. (`LDAPNOINIT=1` would not do: it
    /// turns off the `LDAPTLS_*` variables too.)
    ///
    /// # Panics
    /// For [`Transport::Ldapi`], which Samba does not offer.
    pub fn ldap_command(&self, tool: &str, transport: Transport, account: Account<'_>) -> Command {
        let mut cmd = Command::new(tool);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LDAP") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LDAPCONF", self.dir.join("no-ldap.conf"))
            .env("LDAPRC", self.dir.join("no-ldaprc"))
            .env("LDAPTLS_CACERT", self.ca_file())
            .env("LDAPTLS_REQCERT", "demand");
        match transport {
            Transport::Ldaps => cmd.args(["-H", &self.ldaps_url()]),
            Transport::StartTls => cmd.args(["-H", &self.ldap_url(), "-ZZ"]),
            Transport::Ldap => cmd.args(["-H", &self.ldap_url()]),
            Transport::Ldapi => panic!("Samba does not listen on ldapi"),
        };
        cmd.arg("-x");
        match account {
            Account::Anonymous => {}
            Account::Administrator => {
                cmd.args(["-D", ADMIN_DN, "-w", ADMIN_PW]);
            }
            Account::User { name, password } => {
                cmd.args(["-D", &bind_name(name), "-w", password]);
            }
        }
        cmd
    }

    /// Runs [`SambaDc::ldap_command`] with `args` and `input` on its standard input. Returns how
    /// it ended, success or not; only a tool that could not run or did not finish within
    /// [`SambaOptions::tool_timeout`](super::SambaOptions::tool_timeout) (it is then killed) is
    /// an error.
    pub fn ldap_tool(
        &self,
        tool: &str,
        transport: Transport,
        account: Account<'_>,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, Error> {
        let mut cmd = self.ldap_command(tool, transport, account);
        cmd.args(args);
        tools::run(cmd, input.map(str::as_bytes), self.options.tool_timeout)
    }

    /// Applies LDIF change records (`changetype:` required) as the Administrator over ldaps with
    /// `ldapmodify`, stopping at the first error, which it returns with ldapmodify's stderr.
    pub fn modify(&self, ldif: &str) -> Result<(), Error> {
        self.ldap_tool(
            "ldapmodify",
            Transport::Ldaps,
            Account::Administrator,
            &[],
            Some(ldif),
        )?
        .checked("ldapmodify", &[])
        .map(drop)
    }

    /// Deletes the leaf entry `dn` as the Administrator.
    pub fn delete(&self, dn: &str) -> Result<(), Error> {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n"))
    }

    /// Adds the organizational unit `OU=name` under the naming context; returns its DN.
    pub fn add_ou(&self, name: &str) -> Result<String, Error> {
        let dn = format!("OU={name},{BASE_DN}");
        self.modify(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n"
        ))?;
        Ok(dn)
    }

    /// Creates an enabled user `CN=name,CN=Users,…` that can bind as `name@EXAMPLE.TEST`
    /// with `password` (AD's complexity rules apply); returns its DN. See
    /// [`SambaDc::create_user_in`].
    pub fn create_user(&self, name: &str, password: &str) -> Result<String, Error> {
        self.create_user_in(USERS_DN, name, password)
    }

    /// Creates an enabled user `CN=name` under `parent` with an LDAP add as the Administrator:
    /// `sAMAccountName` and `userPrincipalName` `name@EXAMPLE.TEST`, `unicodePwd` (the password
    /// in double quotes, UTF-16LE) and `userAccountControl: 512` (without both, AD makes the
    /// account disabled, 546). About 10 ms, where `samba-tool user create` takes 0.2 s. Returns
    /// its DN.
    pub fn create_user_in(
        &self,
        parent: &str,
        name: &str,
        password: &str,
    ) -> Result<String, Error> {
        let dn = format!("CN={name},{parent}");
        let mut quoted = Vec::with_capacity(2 * password.len() + 4);
        for unit in format!("\"{password}\"").encode_utf16() {
            quoted.extend_from_slice(&unit.to_le_bytes());
        }
        self.modify(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
             userPrincipalName: {name}@{REALM}\nunicodePwd:: {}\nuserAccountControl: 512\n",
            base64_encode(&quoted)
        ))?;
        Ok(dn)
    }

    /// Runs `samba-tool ARGS` against this server over ldaps (`-s` its smb.conf, `-H` its ldaps
    /// URL, a simple bind as the Administrator), e.g. `["user", "create", "bob", "Bob-pw-1!"]`;
    /// fails with its output unless it exits with 0.
    pub fn samba_tool(&self, args: &[&str]) -> Result<Output, Error> {
        let mut cmd = Command::new("samba-tool");
        let conf = format!("--configfile={}", self.smb_conf().display());
        let url = format!("--URL={}", self.ldaps_url());
        let dn = format!("--simple-bind-dn={ADMIN_DN}");
        let pw = format!("--password={ADMIN_PW}");
        cmd.args(args).args([&conf, &url, &dn, &pw]);
        let out = tools::run(cmd, None, self.options.tool_timeout)?;
        if out.success() {
            return Ok(out);
        }
        Err(Error::Tool {
            tool: format!("samba-tool {}", args.join(" ")),
            code: out.code,
            stderr: format!("{}{}", out.stdout, out.stderr),
        })
    }

    /// `ldapsearch -LLL -o ldif-wrap=no` as the Administrator over ldaps: the LDIF it prints,
    /// without the search result references that it prints as comments (searches below the
    /// naming context's root get one, `# refldaps://example.test/CN=Configuration,…`, for the
    /// configuration partition).
    pub fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, Error> {
        self.search_as(Account::Administrator, base, scope, filter, attrs)
    }

    /// [`SambaDc::search`] bound as `account`.
    pub fn search_as(
        &self,
        account: Account<'_>,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, Error> {
        let args = tools::ldapsearch_args(base, scope_arg(scope), filter, attrs);
        self.ldap_tool("ldapsearch", Transport::Ldaps, account, &args, None)?
            .checked("ldapsearch", &args)
            .map(|out| without_references(&out.stdout))
    }

    /// The objectGUID (16 bytes) of the entry `dn`; search `<GUID=…>` with
    /// [`guid_string`](super::guid_string) to find it again after a rename.
    pub fn object_guid(&self, dn: &str) -> Result<[u8; 16], Error> {
        let ldif = self.search(dn, Scope::Base, "(objectClass=*)", &["objectGUID"])?;
        ldif.lines()
            .find_map(|l| l.strip_prefix("objectGUID:: "))
            .and_then(base64_decode)
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .ok_or_else(|| Error::Tool {
                tool: format!("ldapsearch -b {dn} objectGUID"),
                code: Some(0),
                stderr: format!("no objectGUID in:\n{ldif}"),
            })
    }

    /// A DirSync search (`ldapsearch -E '!dirSync=FLAGS/0/COOKIE'`, critical) of the naming
    /// context as `account`, from `cookie` (base64, from an earlier one) or from the start. Flags:
    /// 0x1 object security (what a user without replication rights must send; it never sees
    /// deletes), 0x800 ancestors first, 0x2000 public data only, 0x80000000 incremental values.
    pub fn dirsync(
        &self,
        account: Account<'_>,
        flags: u32,
        cookie: Option<&str>,
        filter: &str,
        attrs: &[&str],
    ) -> Result<DirSync, Error> {
        let control = match cookie {
            Some(cookie) => format!("!dirSync={flags}/0/{cookie}"),
            None => format!("!dirSync={flags}/0"),
        };
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-E", &control];
        args.extend(["-b", BASE_DN, "-s", "sub", filter]);
        args.extend_from_slice(attrs);
        let out = self
            .ldap_tool("ldapsearch", Transport::Ldaps, account, &args, None)?
            .checked("ldapsearch", &args)?;
        parse_dirsync(&out.stdout).ok_or_else(|| Error::Tool {
            tool: format!("ldapsearch {}", args.join(" ")),
            code: Some(0),
            stderr: format!("no DirSync response control in:\n{}", out.stdout),
        })
    }
}

fn bind_name(name: &str) -> String {
    if name.contains(['=', '@']) {
        name.to_owned()
    } else {
        format!("{name}@{REALM}")
    }
}

fn scope_arg(scope: Scope) -> &'static str {
    match scope {
        Scope::Base => "base",
        Scope::One => "one",
        Scope::Sub => "sub",
        Scope::Children => "children",
    }
}

/// `ldapsearch -LLL` output without the records that are only comments (references).
fn without_references(ldif: &str) -> String {
    let mut out = String::with_capacity(ldif.len());
    for record in ldif.split_inclusive("\n\n") {
        if record.lines().any(|l| !l.is_empty() && !l.starts_with('#')) {
            out.push_str(record);
        }
    }
    out
}

/// The entries and the response control of `ldapsearch -LLL` with a DirSync control, which it
/// prints as a record of comments after the entries.
fn parse_dirsync(stdout: &str) -> Option<DirSync> {
    let (mut cookie, mut more) = (None, false);
    for line in stdout.lines() {
        if let Some(flag) = line.strip_prefix("# DirSync control continueFlag=") {
            more = flag.trim() != "0";
        } else if let Some(b64) = line.strip_prefix("# cookie:: ") {
            cookie = Some(b64.trim().to_owned());
        } else if let Some(text) = line.strip_prefix("# cookie: ") {
            cookie = Some(base64_encode(text.as_bytes()));
        }
    }
    Some(DirSync {
        ldif: without_references(stdout),
        cookie: cookie?,
        more,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "M", "MS", "MSD", "MSDS", "MSDS\u{3}\0\0"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(encoded.len() % 4, 0);
            assert_eq!(
                base64_decode(&encoded).as_deref(),
                Some(text.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64_encode(b"MSDS"), "TVNEUw==");
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn references_are_left_out() {
        let out = "dn: OU=a,DC=example,DC=test\n\n# refldaps://example.test/CN=Configuration,\
                   DC=example,DC=test??base\n\ndn: OU=b,DC=example,DC=test\nou: b\n\n";
        assert_eq!(
            without_references(out),
            "dn: OU=a,DC=example,DC=test\n\ndn: OU=b,DC=example,DC=test\nou: b\n\n"
        );
        assert_eq!(without_references(""), "");
    }

    #[test]
    fn dirsync_output_is_parsed() {
        let out = "dn: OU=t1,DC=example,DC=test\nname: t1\n\n# DirSync control continueFlag=0\n\
                   # cookie:: TVNEUw==\n\n";
        let parsed = parse_dirsync(out).expect("a control");
        assert_eq!(parsed.ldif, "dn: OU=t1,DC=example,DC=test\nname: t1\n\n");
        assert_eq!(parsed.cookie_bytes(), b"MSDS");
        assert!(!parsed.more);
        assert_eq!(parse_dirsync("dn: x\n\n"), None);
    }

    #[test]
    fn bind_names_get_the_realm() {
        assert_eq!(bind_name("bob"), "bob@EXAMPLE.TEST");
        assert_eq!(bind_name(ADMIN_DN), ADMIN_DN);
    }
}
