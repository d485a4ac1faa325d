//! Starts a throwaway Samba AD domain controller ([`syncrepl_testkit::SambaDc`]) for trying
//! things by hand, prints how to reach it as shell variable assignments, and stops it (removing
//! its directory) when standard input ends or a line is read:
//!
//! ```sh
//! PATH=/usr/sbin:$PATH cargo run -p syncrepl-testkit --bin samba-dc > /tmp/dc.env &
//! . /tmp/dc.env
//! ldapsearch -x -H "$LDAPS_URL" -D "$ADMIN_DN" -w "$ADMIN_PW" -b "$BASE_DN" -s base
//! ```
//!
//! The variables: `LDAPS_URL`, `LDAP_URL`, `BASE_DN`, `ADMIN_DN`, `ADMIN_PW`, `SMB_CONF`,
//! `SAMBA_DIR`, and `LDAPTLS_CACERT`, `LDAPTLS_REQCERT`, `LDAPCONF`, `LDAPRC` as the fixture
//! sets them for its own tools (exported). It prints the timings on standard error.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Instant;

use syncrepl_testkit::samba::{template_dir, SambaDc};

fn main() -> ExitCode {
    let started = Instant::now();
    if let Err(e) = template_dir() {
        eprintln!("samba-dc: {e}");
        return ExitCode::FAILURE;
    }
    let template = started.elapsed();
    let started = Instant::now();
    let dc = match SambaDc::start() {
        Ok(dc) => dc,
        Err(e) => {
            eprintln!("samba-dc: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "samba-dc: template ready in {:.3} s, DC on {} ready in {:.3} s (PID {:?})",
        template.as_secs_f64(),
        dc.host(),
        started.elapsed().as_secs_f64(),
        dc.pid()
    );
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let dir = dc.dir().display().to_string();
    let vars = [
        ("LDAPS_URL", dc.ldaps_url()),
        ("LDAP_URL", dc.ldap_url()),
        ("BASE_DN", dc.base_dn().to_owned()),
        ("ADMIN_DN", dc.admin_dn().to_owned()),
        ("ADMIN_PW", dc.admin_password().to_owned()),
        ("SMB_CONF", dc.smb_conf().display().to_string()),
        ("SAMBA_DIR", dir.clone()),
        ("LDAPTLS_CACERT", dc.ca_file().display().to_string()),
        ("LDAPTLS_REQCERT", "demand".to_owned()),
        ("LDAPCONF", format!("{dir}/no-ldap.conf")),
        ("LDAPRC", format!("{dir}/no-ldaprc")),
    ];
    let mut out = std::io::stdout().lock();
    for (name, value) in vars {
        let _ = writeln!(out, "export {name}={}", quote(&value));
    }
    let _ = out.flush();
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(dc);
    ExitCode::SUCCESS
}
