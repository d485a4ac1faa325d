//! Command-line arguments of the `syncrepl` tool and how they become runtime options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use syncrepl_mio::DialectChoice;
use syncrepl_mio::{
    ConnectOptions, Credentials, Endpoint, LdapUrl, RetrySchedule, SecurityProps, SyncOptions,
};
use syncrepl_proto::{DirSyncFlags, Scope, SyncMode, SyncRequest};
use syncrepl_state::{FsyncPolicy, Mirror, OpenOptions, SearchSpec};

/// Keep a live local copy of an LDAP directory with RFC 4533 Content Synchronization.
#[derive(Debug, Parser)]
#[command(name = "syncrepl", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mirror the search of an LDAP URL into a state directory and print every change as it happens.
    Watch(Box<WatchArgs>),
    /// Print the mirror as LDIF content records (or JSON), like `ldapsearch -LLL`.
    Dump(DumpArgs),
    /// Show what a state directory holds: search, server, cookie, entries, last change, size.
    Status(StatusArgs),
}

/// Output formats of `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One readable line per change.
    Text,
    /// RFC 2849 change records, replayable with `ldapmodify`.
    Ldif,
    /// One JSON object per line.
    Json,
}

/// Output formats of `dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// LDIF content records, comparable with `ldapsearch -LLL`.
    Ldif,
    /// One JSON object per entry and line.
    Json,
}

/// When the state directory's log is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fsync every commit: nothing acknowledged is ever lost.
    Always,
    /// Group commits (bounded in time and size): at most a few milliseconds of changes at risk on
    /// power loss, none on a crash of the process.
    Group,
    /// Leave it to the operating system.
    Never,
}

/// The protocol of the sync search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    /// From the root DSE's supportedControl: RFC 4533 where offered, else DirSync.
    Auto,
    /// LDAP Content Synchronization (RFC 4533): OpenLDAP, 389 Directory Server.
    Rfc4533,
    /// Active Directory's DirSync with change notification (also Samba AD).
    Ad,
}

/// The SASL mechanisms the command binds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMech {
    /// SASL EXTERNAL (RFC 4422 Appendix A).
    External,
    /// SASL GSSAPI (RFC 4752).
    Gssapi,
}

/// Arguments of `watch`: the search to mirror, and where its changes go.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The search, the servers, the bind and the state.
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Append the changes to FILE instead of writing them to stdout; it is synced before each
    /// commit as `--fsync` says, so that a change counts as delivered only once it is on disk.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What every command that mirrors a search takes (`watch`, and the publishers built on this
/// crate): the search and its servers, the bind, the state directory and the retry policy.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// LDAP URL (RFC 4516) of the search to mirror, e.g.
    /// `ldap://127.0.0.1/ou=people,dc=example,dc=com??sub?(objectClass=inetOrgPerson)`.
    /// The scope defaults to `base` as RFC 4516 says; write `??sub` for a subtree.
    ///
    /// Several servers with the same content (multi-provider replication) may follow, as further
    /// arguments or in the same one separated by spaces (`"ldap://a/… ldap://b"`, like
    /// `ldapsearch -H`): each only `scheme://host:port`, or the same URL with another scheme, host
    /// or port. When the server in use is down, the next one is tried, with the same state.
    #[arg(required = true, num_args = 1.., value_name = "URL")]
    pub url: Vec<String>,
    /// Directory holding the mirror (created if missing). Without it the mirror lives in memory
    /// only, and every run starts with a full refresh.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// One refresh, then exit, instead of listening for changes.
    #[arg(long)]
    pub refresh_only: bool,
    /// Bind DN for a simple bind (overrides the URL's bindname extension).
    #[arg(long, short = 'D')]
    pub bind_dn: Option<String>,
    /// File holding the bind password (its first line).
    #[arg(long, conflicts_with = "password_env")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the bind password.
    #[arg(long)]
    pub password_env: Option<String>,
    /// Bind with SASL EXTERNAL (ldapi:// peer credentials or a TLS client certificate).
    #[arg(long, conflicts_with_all = ["bind_dn", "password_file", "password_env"])]
    pub sasl_external: bool,
    /// Bind with SASL GSSAPI (Kerberos): a ticket from `kinit` in the ccache (`KRB5CCNAME`) or a
    /// client keytab (`KRB5_CLIENT_KTNAME`). The URL extension `bindname=GSSAPI` says the same.
    #[arg(long, conflicts_with_all = ["bind_dn", "password_file", "password_env", "sasl_external"])]
    pub sasl_gssapi: bool,
    /// The SASL mechanism, as ldapsearch's `-Y`: EXTERNAL or GSSAPI.
    #[arg(
        long,
        short = 'Y',
        value_enum,
        ignore_case = true,
        value_name = "MECH",
        conflicts_with_all = ["bind_dn", "password_file", "password_env"]
    )]
    pub sasl_mech: Option<SaslMech>,
    /// The SASL authorization identity to assume, as ldapsearch's `-X`, e.g. `u:reader` or
    /// `dn:uid=reader,ou=people,dc=example,dc=com`.
    #[arg(long, short = 'X', value_name = "AUTHZID")]
    pub sasl_authzid: Option<String>,
    /// SASL security properties, as ldapsearch's `-O`: `minssf=N`, `maxssf=N`, `maxbufsize=N`.
    /// Without them GSSAPI takes the strongest layer offered over plain ldap:// and none over
    /// TLS or ldapi (`maxssf=0` for none, `maxssf=1` for integrity only, `minssf=56` to insist
    /// on confidentiality).
    #[arg(long, short = 'O', value_name = "PROPS")]
    pub sasl_secprops: Option<String>,
    /// The server's Kerberos service principal, if not `ldap@HOST` with the URL's host as
    /// written (no reverse lookup): `ldap/ldap1.example.com@EXAMPLE.COM` or `ldap@ldap1`.
    #[arg(long, value_name = "PRINCIPAL")]
    pub sasl_principal: Option<String>,
    /// Upgrade ldap:// with StartTLS; fail if the server refuses.
    #[arg(long, short = 'Z')]
    pub starttls: bool,
    /// PEM file of CA certificates to trust instead of the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Allow a password over a connection without TLS (not recommended).
    #[arg(long)]
    pub allow_cleartext_password: bool,
    /// Fail unless Who am I? reports this identity after the bind, e.g. `dn:cn=reader,dc=example,dc=com`.
    #[arg(long)]
    pub expect_identity: Option<String>,
    /// Reconnect schedule, slapd style: pairs of seconds and counts, `+` for ever; `none` to exit on
    /// the first connection error.
    #[arg(long, default_value = "5 10 60 +")]
    pub retry: String,
    /// Exit instead of reloading when the server requires a full refresh.
    #[arg(long)]
    pub no_reload: bool,
    /// When to fsync the state.
    #[arg(long, value_enum, default_value_t = Fsync::Always)]
    pub fsync: Fsync,
    /// Start again from an empty mirror if the state directory belongs to another search.
    #[arg(long)]
    pub reset: bool,
    /// Begin with a full reload: the stored cookie is dropped, the server sends the whole content
    /// again, and only real differences are printed. Worth running now and then against servers
    /// that do not report every entry leaving the search (389 Directory Server).
    #[arg(long)]
    pub reload: bool,
    /// The sync protocol: chosen from the server's root DSE by default.
    #[arg(long, value_enum, default_value_t = DialectArg::Auto)]
    pub dialect: DialectArg,
    /// Active Directory: ask DirSync for what the bind identity may read (the object-security
    /// flag) instead of needing the "Replicating Directory Changes" right. AD then reports no
    /// deletes: run with `--reload` now and then to sweep what is gone.
    #[arg(long)]
    pub dirsync_object_security: bool,
    /// Seconds to wait for a TCP connection.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds to wait for each request's answer.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
}

/// Arguments of `dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The state directory.
    #[arg(long)]
    pub state: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Ldif)]
    pub format: DumpFormat,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The state directory.
    #[arg(long)]
    pub state: PathBuf,
}

/// A problem with the arguments themselves.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The URL is malformed.
    #[error(transparent)]
    Url(#[from] syncrepl_mio::UrlError),
    /// The retry schedule is malformed.
    #[error(transparent)]
    Retry(#[from] syncrepl_mio::RetryParseError),
    /// The password could not be read.
    #[error("cannot read the password: {0}")]
    Password(String),
    /// The SASL security properties are malformed.
    #[error(transparent)]
    Sasl(#[from] syncrepl_mio::SaslError),
}

impl SyncArgs {
    /// The first URL, checked, and the other servers.
    pub fn ldap_urls(&self) -> Result<(LdapUrl, Vec<Endpoint>), ArgsError> {
        Ok(LdapUrl::parse_many(&self.url.join(" "))?)
    }

    fn password(&self, url: &LdapUrl) -> Result<Option<String>, ArgsError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ArgsError::Password(format!("{}: {e}", path.display())))?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Some).map_err(|_| {
                ArgsError::Password(format!("environment variable {var} is not set"))
            });
        }
        Ok(url.bind_password.clone())
    }

    /// How the state directory is opened: the fsync policy and whether another search's state
    /// is reset.
    pub fn open_options(&self) -> OpenOptions {
        let fsync = match self.fsync {
            Fsync::Always => FsyncPolicy::EveryCommit,
            Fsync::Group => FsyncPolicy::Group {
                max_delay: Duration::from_millis(50),
                max_bytes: 4 << 20,
            },
            Fsync::Never => FsyncPolicy::Os,
        };
        OpenOptions {
            fsync,
            reset: self.reset,
            ..OpenOptions::default()
        }
    }

    /// Opens the mirror these arguments name, for `options` (from [`SyncArgs::sync_options`]):
    /// the state directory, or memory without one; `--reload` drops its cookie.
    pub fn open_mirror(&self, options: &SyncOptions) -> Result<Mirror, syncrepl_state::Error> {
        let spec = SearchSpec::from_request(&options.request);
        let mut mirror = match &self.state {
            Some(dir) => Mirror::open(dir, spec, self.open_options())?,
            None => Mirror::in_memory(spec),
        };
        if self.reload {
            mirror.refresh_required()?;
        }
        Ok(mirror)
    }

    /// The runtime options these arguments describe.
    pub fn sync_options(&self) -> Result<SyncOptions, ArgsError> {
        let (url, failover) = self.ldap_urls()?;
        let mut connect = ConnectOptions::new(url.endpoint.clone());
        connect.start_tls = self.starttls || url.start_tls;
        connect.tls.ca_file = self.ca_file.clone();
        connect.tls.client_cert = self.client_cert.clone();
        connect.tls.client_key = self.client_key.clone();
        connect.allow_cleartext_password = self.allow_cleartext_password;
        connect.expect_identity = self.expect_identity.clone();
        connect.connect_timeout = Duration::from_secs(self.connect_timeout);
        connect.request_timeout = Duration::from_secs(self.request_timeout);
        let bind_dn = self.bind_dn.clone().or_else(|| url.bind_dn.clone());
        let explicit = self.bind_dn.is_some() || self.sasl_external;
        let gssapi = self.sasl_gssapi
            || self.sasl_mech == Some(SaslMech::Gssapi)
            || (url.gssapi && !explicit && self.sasl_mech.is_none());
        connect.credentials = if gssapi {
            let security = match &self.sasl_secprops {
                Some(props) => SecurityProps::parse(props)?,
                None => SecurityProps::default(),
            };
            Credentials::Gssapi {
                principal: self.sasl_principal.clone(),
                authz_id: self.sasl_authzid.clone(),
                security,
            }
        } else if self.sasl_external || self.sasl_mech == Some(SaslMech::External) {
            Credentials::SaslExternal {
                authz_id: self.sasl_authzid.clone(),
            }
        } else if let Some(dn) = bind_dn {
            Credentials::Simple {
                dn,
                password: self.password(&url)?.unwrap_or_default(),
            }
        } else {
            Credentials::Anonymous
        };
        let mode = if self.refresh_only {
            SyncMode::RefreshOnly
        } else {
            SyncMode::RefreshAndPersist
        };
        let mut request = SyncRequest::new(url.base.clone(), mode);
        request.scope = url.scope;
        request.filter = url.filter.clone();
        request.attributes = url.attributes.clone();
        let retry = if self.retry.trim().eq_ignore_ascii_case("none") {
            RetrySchedule::never()
        } else {
            self.retry.parse()?
        };
        let mut options = SyncOptions::new(connect, request);
        options.failover = failover;
        options.retry = retry;
        options.reload_on_refresh_required = !self.no_reload;
        options.dialect = match self.dialect {
            DialectArg::Auto => DialectChoice::Auto,
            DialectArg::Rfc4533 => DialectChoice::Rfc4533,
            DialectArg::Ad => DialectChoice::ActiveDirectory,
        };
        if self.dirsync_object_security {
            options.dirsync_flags.0 |= DirSyncFlags::OBJECT_SECURITY;
        }
        Ok(options)
    }
}

/// The short name of a scope, as LDAP URLs write it.
pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Base => "base",
        Scope::One => "one",
        Scope::Subtree => "sub",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(args: &[&str]) -> SyncArgs {
        let mut argv = vec!["syncrepl", "watch"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("valid arguments").command {
            Command::Watch(w) => w.sync,
            other => panic!("not watch: {other:?}"),
        }
    }

    #[test]
    fn url_and_flags_make_options() {
        let w = watch(&[
            "ldap://127.0.0.1:3890/dc=example,dc=com??sub?(uid=*)?bindname=cn=r%2Cdc=example%2Cdc=com,X-BINDPW=pw",
            "--state",
            "/tmp/x",
            "--refresh-only",
            "--retry",
            "1 2",
        ]);
        let o = w.sync_options().expect("valid");
        assert_eq!(o.request.base, "dc=example,dc=com");
        assert_eq!(o.request.scope, Scope::Subtree);
        assert_eq!(o.request.filter, "(uid=*)");
        assert_eq!(o.request.mode, SyncMode::RefreshOnly);
        assert_eq!(
            o.connect.credentials,
            Credentials::Simple {
                dn: "cn=r,dc=example,dc=com".into(),
                password: "pw".into()
            }
        );
        assert_eq!(o.retry.base_delay(1), Some(Duration::from_secs(1)));
        assert_eq!(o.retry.base_delay(2), None);
        assert!(o.failover.is_empty());
    }

    #[test]
    fn gssapi_from_the_url_or_the_flags() {
        let from_url = watch(&["ldap://h/o=x?cn??(cn=*)?bindname=GSSAPI"]);
        assert_eq!(
            from_url.sync_options().expect("valid").connect.credentials,
            Credentials::Gssapi {
                principal: None,
                authz_id: None,
                security: SecurityProps::default(),
            }
        );
        for flag in [&["-Y", "GSSAPI"][..], &["-Y", "gssapi"], &["--sasl-gssapi"]] {
            let mut args = vec!["ldap://h/o=x", "-X", "u:other", "-O", "maxssf=1"];
            args.extend_from_slice(flag);
            args.extend(["--sasl-principal", "ldap/h@EXAMPLE.TEST"]);
            let Credentials::Gssapi {
                principal,
                authz_id,
                security,
            } = watch(&args)
                .sync_options()
                .expect("valid")
                .connect
                .credentials
            else {
                panic!("not GSSAPI: {flag:?}");
            };
            assert_eq!(principal.as_deref(), Some("ldap/h@EXAMPLE.TEST"));
            assert_eq!(authz_id.as_deref(), Some("u:other"));
            assert_eq!(security.max_ssf, Some(1));
        }
        let external = watch(&["ldapi:///o=x", "-Y", "EXTERNAL", "-X", "u:x"]);
        assert_eq!(
            external.sync_options().expect("valid").connect.credentials,
            Credentials::SaslExternal {
                authz_id: Some("u:x".into())
            }
        );
        let simple = watch(&["ldap://h/o=x??base??bindname=GSSAPI", "-D", "cn=a"]);
        assert!(matches!(
            simple.sync_options().expect("valid").connect.credentials,
            Credentials::Simple { .. }
        ));
        let bad = watch(&["ldap://h/o=x", "-Y", "GSSAPI", "-O", "minssf=many"]);
        assert!(matches!(bad.sync_options(), Err(ArgsError::Sasl(_))));
        assert!(Cli::try_parse_from(["syncrepl", "watch", "ldap://h/o=x", "-Y", "PLAIN"]).is_err());
    }

    #[test]
    fn several_servers_as_arguments_or_in_one() {
        for args in [
            vec!["ldap://a/o=x??sub", "ldap://b:1389", "ldaps://c/o=x??sub"],
            vec!["ldap://a/o=x??sub ldap://b:1389", "ldaps://c/o=x??sub"],
        ] {
            let mut args = args;
            args.extend(["--state", "s"]);
            let o = watch(&args).sync_options().expect("valid");
            assert_eq!(o.connect.endpoint.to_string(), "ldap://a:389");
            let others: Vec<String> = o.failover.iter().map(|e| e.to_string()).collect();
            assert_eq!(others, ["ldap://b:1389", "ldaps://c:636"]);
            assert_eq!(o.request.scope, Scope::Subtree);
        }
        let bad = watch(&["ldap://a/o=x??sub", "ldap://b/o=y??sub", "--state", "s"]);
        assert!(matches!(bad.sync_options(), Err(ArgsError::Url(_))));
    }

    #[test]
    fn password_from_a_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("syncrepl-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let file_arg = file.to_string_lossy().into_owned();
        let w = watch(&[
            "ldap://h/o=x",
            "--state",
            "s",
            "-D",
            "cn=a",
            "--password-file",
            &file_arg,
        ]);
        assert!(matches!(
            w.sync_options().expect("valid").connect.credentials,
            Credentials::Simple { password, .. } if password == "from-file"
        ));
        let w = watch(&[
            "ldap://h/o=x",
            "--state",
            "s",
            "-D",
            "cn=a",
            "--password-env",
            "SYNCREPL_TEST_UNSET_VARIABLE",
        ]);
        assert!(matches!(w.sync_options(), Err(ArgsError::Password(_))));
        std::fs::remove_dir_all(&dir).ok();
        assert!(Cli::try_parse_from([
            "syncrepl",
            "watch",
            "ldap://h/",
            "--state",
            "s",
            "--sasl-external",
            "-D",
            "cn=a"
        ])
        .is_err());
        let bad = watch(&["ldap://h/o=x??subtree", "--state", "s"]);
        assert!(matches!(bad.sync_options(), Err(ArgsError::Url(_))));
    }
}
