//! The provisioned domain every instance is copied from, made once per Samba version and cached
//! under the cargo target directory (see the module documentation of [`crate::samba`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ADMIN_DN, ADMIN_PW, BASE_DN, DOMAIN, NETBIOS_NAME, REALM};
use crate::process::sbin;
use crate::tools;
use crate::Error;

/// Environment variable naming the directory that caches the provisioned template (default:
/// `syncrepl-testkit` in the cargo target directory of the running test, else in the system's
/// temporary directory).
pub const CACHE_ENV: &str = "SYNCREPL_TESTKIT_SAMBA_CACHE";

/// Bumped whenever the provisioning changes, so that an old cached template is not used.
const TEMPLATE_FORMAT: u32 = 1;
const PROVISION_TIMEOUT: Duration = Duration::from_secs(180);

/// The directory holding the provisioned template, provisioning it first if this process or an
/// earlier one has not (see the module documentation). [`SambaDc::start`](super::SambaDc::start)
/// calls it; call it yourself to pay (or time) the provisioning up front.
pub fn template_dir() -> Result<PathBuf, Error> {
    static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut template = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = template.as_ref() {
        return Ok(dir.clone());
    }
    let dir = cached_template()?;
    *template = Some(dir.clone());
    Ok(dir)
}

/// Where the template is cached: [`CACHE_ENV`], else `syncrepl-testkit` in the cargo target
/// directory holding the running executable (the ancestor with cargo's `CACHEDIR.TAG`), else in
/// the system's temporary directory.
fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
            .map(Path::to_path_buf)
    });
    target
        .unwrap_or_else(std::env::temp_dir)
        .join("syncrepl-testkit")
}

/// Samba's version (`samba -V`: `Version 4.17.12-Debian`) as a file name part.
fn samba_version() -> Result<String, Error> {
    let mut cmd = Command::new(sbin("samba"));
    cmd.arg("-V");
    let out = tools::run(cmd, None, Duration::from_secs(30))?.checked("samba", &["-V"])?;
    let version: String = out
        .stdout
        .trim()
        .trim_start_matches("Version ")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if version.is_empty() {
        return Err(Error::Tool {
            tool: "samba -V".into(),
            code: out.code,
            stderr: "no version printed".into(),
        });
    }
    Ok(version)
}

/// The cached template, provisioned first (under the cache's lock file) if missing.
fn cached_template() -> Result<PathBuf, Error> {
    let root = cache_root();
    std::fs::create_dir_all(&root).map_err(|e| Error::io(format!("make {}", root.display()), e))?;
    let template = root.join(format!(
        "samba-template-{}-f{TEMPLATE_FORMAT}",
        samba_version()?
    ));
    let ready = |dir: &Path| dir.join("TEMPLATE-READY").is_file();
    if ready(&template) {
        return Ok(template);
    }
    let lock_path = root.join("samba-template.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
    let deadline = Instant::now() + PROVISION_TIMEOUT + Duration::from_secs(60);
    while let Err(e) =
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    {
        if Instant::now() >= deadline {
            return Err(Error::io(
                format!(
                    "lock {} (another process provisioning?)",
                    lock_path.display()
                ),
                e.into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if ready(&template) {
        return Ok(template);
    }
    let building = root.join(format!(
        "{}.building",
        template.file_name().map_or_else(
            || "samba-template".into(),
            |n| n.to_string_lossy().into_owned()
        )
    ));
    for stale in [&building, &template] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .map_err(|e| Error::io(format!("remove {}", stale.display()), e))?;
        }
    }
    provision(&building)?;
    std::fs::rename(&building, &template).map_err(|e| {
        Error::io(
            format!("rename {} to {}", building.display(), template.display()),
            e,
        )
    })?;
    // The lock goes with `lock`.
    Ok(template)
}

/// Provisions the domain into `dir` (which must not exist) and turns off password ageing.
fn provision(dir: &Path) -> Result<(), Error> {
    let d = dir.display();
    let mut cmd = Command::new("samba-tool");
    cmd.args(["domain", "provision", "--configfile=/dev/null"])
        .arg(format!("--targetdir={d}"))
        .args([
            &format!("--realm={REALM}"),
            &format!("--domain={DOMAIN}"),
            &format!("--host-name={NETBIOS_NAME}"),
            "--server-role=dc",
            "--dns-backend=NONE",
            &format!("--adminpass={ADMIN_PW}"),
            "--use-rfc2307",
            "--option=interfaces=127.0.0.1/8",
            "--option=bind interfaces only=yes",
            "--option=server services=ldap",
            &format!("--option=pid directory={d}/run"),
            &format!("--option=log file={d}/log/samba.log"),
        ]);
    let out = tools::run(cmd, None, PROVISION_TIMEOUT)?;
    if !out.success() {
        return Err(Error::Tool {
            tool: format!("samba-tool domain provision --targetdir={d}"),
            code: out.code,
            stderr: format!("{}{}", out.stdout, out.stderr),
        });
    }
    let mut cmd = Command::new("ldbmodify");
    cmd.arg("-H").arg(dir.join("private/sam.ldb"));
    let ldif = format!(
        "dn: {BASE_DN}\nchangetype: modify\nreplace: maxPwdAge\nmaxPwdAge: 0\n-\n\
         replace: minPwdAge\nminPwdAge: 0\n-\n"
    );
    tools::run(cmd, Some(ldif.as_bytes()), PROVISION_TIMEOUT)?.checked("ldbmodify", &["-H"])?;
    let marker = dir.join("TEMPLATE-READY");
    std::fs::write(&marker, format!("{REALM} {ADMIN_DN}\n"))
        .map_err(|e| Error::io(format!("write {}", marker.display()), e))
}

/// Copies the directory tree `from` into `to` (which may exist), files with their permissions.
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("make {}", to.display()), e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("list {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", from.display()), e))?;
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if kind.is_dir() {
            copy_tree(&path, &target)?;
            let mode = std::fs::metadata(&path)
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
                .permissions();
            std::fs::set_permissions(&target, mode)
                .map_err(|e| Error::io(format!("chmod {}", target.display()), e))?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("read link {}", path.display()), e))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| Error::io(format!("link {}", target.display()), e))?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target)
                .map_err(|e| Error::io(format!("copy {}", path.display()), e))?;
        }
    }
    Ok(())
}
