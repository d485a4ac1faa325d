//! A throwaway 389 Directory Server (Debian `389-ds-base`) on 127.0.0.1, with the retro changelog
//! and the Content Synchronization plugin on, so that syncrepl can be tested against the other
//! RFC 4533 provider people run (also as Red Hat Directory Server and FreeIPA).
//!
//! 389's installer, `dscreate`, only knows system paths; it takes them from
//! `$PREFIX/share/dirsrv/inf/defaults.inf`. The fixture writes a copy of that file whose paths all
//! point into a temporary directory (no systemd, running as the current user), and a copy of the
//! `dse.ldif` template that listens on 127.0.0.1 only and has both plugins enabled, with the retro
//! changelog recording `nsuniqueid:targetUniqueId` (without it incremental refreshes silently
//! return nothing). `dscreate` then creates the instance, starting and stopping it once (about
//! 4 s); the fixture starts `ns-slapd` itself in the foreground, as its own child (lib389's restart
//! would cost three more seconds of polling), adds `ou=people`, a reader account allowed to read
//! everything, and the people, and on drop stops its child and removes the directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::slapd::BASE;
use crate::tools::Output;
use crate::Error;

/// The Directory Manager's DN.
pub const ADMIN_DN: &str = "cn=Directory Manager";
/// The Directory Manager's password.
pub const ADMIN_PW: &str = "Admin-pw-4533";
/// The reader account: may read and search everything under [`BASE`], nothing more.
pub const READER_DN: &str = "cn=reader,dc=example,dc=com";
/// The reader's password.
pub const READER_PW: &str = "Reader-pw-4533";

const INSTANCE: &str = "synctest";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A running 389 Directory Server instance, stopped and removed on drop.
#[derive(Debug)]
pub struct DirSrv {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    port: u16,
    server: Option<Child>,
}

/// Whether 389 Directory Server's installer is on this machine.
pub fn available() -> bool {
    Path::new("/usr/sbin/dscreate").exists() && Path::new("/usr/sbin/ns-slapd").exists()
}

impl DirSrv {
    /// Creates and starts an instance with `people` generated inetOrgPerson entries
    /// ([`crate::ldif::person_ldif`]) under `ou=people,dc=example,dc=com`.
    pub fn start(people: usize) -> Result<DirSrv, Error> {
        if !available() {
            return Err(Error::Options(
                "389 Directory Server is not installed (Debian: apt-get install 389-ds-base)"
                    .into(),
            ));
        }
        let (root, temp) = crate::host::temp_dir("syncrepl-389-")?;
        let port = crate::host::free_port(&[])?;
        let mut server = DirSrv {
            root,
            _temp: temp,
            port,
            server: None,
        };
        server.write_layout()?;
        server.create()?;
        server.load(people)?;
        Ok(server)
    }

    fn write_layout(&self) -> Result<(), Error> {
        let root = &self.root;
        let write = |path: PathBuf, text: String| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("make {}", parent.display()), e))?;
            }
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))
        };
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {path}"), e))
        };
        let r = root.display();
        let (user, group) = (id("-un")?, id("-gn")?);
        let mut defaults = String::new();
        for line in read("/usr/share/dirsrv/inf/defaults.inf")?.lines() {
            let line = match line.split_once(" = ") {
                Some(("with_systemd", _)) => "with_systemd = 0".to_owned(),
                Some(("user", _)) => format!("user = {user}"),
                Some(("group", _)) => format!("group = {group}"),
                Some(("data_dir", _)) => format!("data_dir = {r}/share"),
                Some(("tmp_dir", _)) => format!("tmp_dir = {r}/tmp"),
                Some((key, value))
                    if ["/etc", "/var", "/run", "/dev/shm"].iter().any(|p| {
                        value == *p || value.strip_prefix(p).is_some_and(|v| v.starts_with('/'))
                    }) =>
                {
                    let value = value.replacen("/dev/shm", "/shm", 1);
                    format!("{key} = {r}{value}")
                }
                _ => line.to_owned(),
            };
            defaults.push_str(&line);
            defaults.push('\n');
        }
        write(root.join("share/dirsrv/inf/defaults.inf"), defaults)?;
        copy_dir(
            Path::new("/usr/share/dirsrv/data"),
            &root.join("share/dirsrv/data"),
        )?;
        copy_dir(
            Path::new("/etc/dirsrv/schema"),
            &root.join("etc/dirsrv/schema"),
        )?;
        copy_dir(
            Path::new("/etc/dirsrv/config"),
            &root.join("etc/dirsrv/config"),
        )?;
        let template = root.join("share/dirsrv/data/template-dse.ldif");
        let dse = read(&template.to_string_lossy())?;
        write(template, dse_template(&dse)?)?;
        write(
            root.join("instance.inf"),
            format!(
                "[general]\nconfig_version = 2\nfull_machine_name = localhost\nstart = False\n\
                 strict_host_checking = False\nsystemd = False\nselinux = False\n\
                 [slapd]\ninstance_name = {INSTANCE}\nport = {port}\nroot_dn = {ADMIN_DN}\n\
                 root_password = {ADMIN_PW}\nself_sign_cert = False\nuser = {user}\ngroup = {group}\n\
                 ldapi = {r}/run/slapd-{INSTANCE}.socket\n\
                 [backend-userroot]\nsample_entries = no\nsuffix = {BASE}\ncreate_suffix_entry = True\n",
                port = self.port
            ),
        )
    }

    fn create(&mut self) -> Result<(), Error> {
        let mut dscreate = Command::new("/usr/sbin/dscreate");
        dscreate
            .args(["from-file"])
            .arg(self.root.join("instance.inf"))
            .env("PREFIX", &self.root);
        let out = crate::tools::run(dscreate, None, TOOL_TIMEOUT)?;
        if !out.success() {
            return Err(Error::Start {
                reason: format!("dscreate exited with code {:?}", out.code),
                log: format!("{}{}\n{}", out.stdout, out.stderr, self.error_log()),
                port_in_use: false,
            });
        }
        self.launch()
    }

    /// Starts `ns-slapd` in the foreground (`-d 0`) as our child and waits until it accepts
    /// connections.
    fn launch(&mut self) -> Result<(), Error> {
        let root = &self.root;
        let server = Command::new("/usr/sbin/ns-slapd")
            .arg("-D")
            .arg(root.join(format!("etc/dirsrv/slapd-{INSTANCE}")))
            .arg("-i")
            .arg(root.join(format!("run/dirsrv/slapd-{INSTANCE}.pid")))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("start ns-slapd", e))?;
        let server = self.server.insert(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = server
                .try_wait()
                .map_err(|e| Error::io("wait for ns-slapd", e))?;
            if exited.is_some() || Instant::now() >= deadline {
                return Err(Error::Start {
                    reason: match exited {
                        Some(status) => format!("ns-slapd exited: {status}"),
                        None => "ns-slapd did not listen within 30 s".into(),
                    },
                    log: self.error_log(),
                    port_in_use: false,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn load(&self, people: usize) -> Result<(), Error> {
        let mut ldif = format!(
            "dn: {BASE}\nchangetype: modify\nadd: aci\naci: (targetattr=\"*\")(version 3.0; \
             acl \"syncrepl reader\"; allow (read, search, compare) \
             userdn=\"ldap:///{READER_DN}\";)\n\n\
             dn: ou=people,{BASE}\nchangetype: add\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {READER_DN}\nchangetype: add\nobjectClass: person\ncn: reader\nsn: reader\n\
             userPassword: {READER_PW}\n\n"
        );
        for i in 1..=people {
            let person = crate::ldif::person_ldif(i);
            match person.split_once('\n') {
                Some((dn, rest)) => {
                    ldif.push_str(dn);
                    ldif.push_str("\nchangetype: add\n");
                    ldif.push_str(rest);
                }
                None => ldif.push_str(&person),
            }
        }
        self.modify(&ldif)
    }

    /// The end of the server's error log, for failure messages.
    pub fn error_log(&self) -> String {
        let path = self
            .root
            .join(format!("var/log/dirsrv/slapd-{INSTANCE}/errors"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    fn tool(
        &self,
        tool: &str,
        dn: &str,
        password: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, Error> {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", &self.ldap_url(), "-D", dn, "-w", password])
            .args(args)
            .env("LDAPNOINIT", "1");
        crate::tools::run(cmd, input.map(str::as_bytes), TOOL_TIMEOUT)?.checked(tool, args)
    }

    /// Applies LDIF change records as the Directory Manager with `ldapmodify`, stopping at the
    /// first error.
    pub fn modify(&self, ldif: &str) -> Result<(), Error> {
        self.tool("ldapmodify", ADMIN_DN, ADMIN_PW, &[], Some(ldif))
            .map(drop)
    }

    /// `ldapsearch -LLL` of the subtree `base` as the reader: the LDIF it prints.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<String, Error> {
        let args = crate::tools::ldapsearch_args(base, "sub", filter, attrs);
        self.tool("ldapsearch", READER_DN, READER_PW, &args, None)
            .map(|out| out.stdout)
    }

    /// Stops the server (our child) with SIGTERM and waits up to 30 s for it to exit (SIGKILL
    /// then).
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let pid = i32::try_from(server.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(server.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = server.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = server.wait();
    }
}

impl Drop for DirSrv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `dse.ldif` template with the server on 127.0.0.1 only and the retro changelog and the
/// Content Synchronization plugin enabled.
fn dse_template(template: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len() + 256);
    let (mut enabled, mut listening) = (0, false);
    let mut entry = "";
    for line in template.lines() {
        if let Some(dn) = line.strip_prefix("dn: ") {
            entry = dn;
        }
        let plugin = matches!(
            entry,
            "cn=Retro Changelog Plugin,cn=plugins,cn=config"
                | "cn=Content Synchronization,cn=plugins,cn=config"
        );
        if plugin && line.eq_ignore_ascii_case("nsslapd-pluginenabled: off") {
            out.push_str("nsslapd-pluginenabled: on\n");
            enabled += 1;
            if entry.starts_with("cn=Retro") {
                out.push_str("nsslapd-attribute: nsuniqueid:targetUniqueId\n");
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if entry == "cn=config" && line.starts_with("nsslapd-port:") {
            out.push_str("nsslapd-listenhost: 127.0.0.1\n");
            listening = true;
        }
    }
    if enabled == 2 && listening {
        Ok(out)
    } else {
        Err(Error::Options(
            "this 389-ds-base's dse.ldif template has an unexpected layout".into(),
        ))
    }
}

/// The current user's or group's name (`id -un`, `id -gn`): the instance runs as whoever runs the
/// tests.
fn id(flag: &str) -> Result<String, Error> {
    let mut command = Command::new("id");
    command.arg(flag);
    let out = crate::tools::run(command, None, TOOL_TIMEOUT)?;
    match out.stdout.trim() {
        name if out.success() && !name.is_empty() => Ok(name.to_owned()),
        _ => Err(Error::Tool {
            tool: format!("id {flag}"),
            code: out.code,
            stderr: out.stderr,
        }),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("make {}", to.display()), e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("list {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", from.display()), e))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)
                .map_err(|e| Error::io(format!("copy {}", path.display()), e))?;
        }
    }
    Ok(())
}
