//! End-to-end tests of the `syncrepl` command against Active Directory, as a throwaway Samba 4.17
//! AD domain controller (`syncrepl_testkit::samba`): the dialect is found from the root DSE,
//! DirSync mirrors an OU below the naming context exactly as ldapsearch shows it, incremental
//! passes and live changes (change notification) bring every kind of change, renames and deletes
//! carry over to the links that name them, a restart and kill -9 lose nothing, a cookie the server
//! refuses leads to a reload that reports only real differences, and a reader without the
//! replication right syncs with the object-security flag.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{dump, interrupt, syncrepl, temp_state, wait_line, watch};
use syncrepl::proto::{ContentEvent, Cookie};
use syncrepl::state::{Mirror, OpenOptions};
use syncrepl::FnConsumer;
use syncrepl_testkit::samba::{Account, SambaDc, ADMIN_DN, ADMIN_PW, BASE_DN};
use syncrepl_testkit::Scope;

const PEOPLE: &str = "OU=People,DC=example,DC=test";
const ELSEWHERE: &str = "OU=Elsewhere,DC=example,DC=test";
/// What the mirrors ask for, and ldapsearch too. DirSync never sends `cn` (the mirror takes it
/// from the DN) nor the attributes AD does not replicate (uSNChanged, whenChanged, logonCount…),
/// so `*` would not compare.
const ATTRS: &[&str] = &[
    "cn",
    "description",
    "telephoneNumber",
    "member",
    "objectClass",
    "sn",
    "givenName",
    "displayName",
];
const USERS: usize = 30;

struct Ad {
    dc: SambaDc,
    dir: PathBuf,
    password_file: String,
    bind: String,
}

impl Ad {
    /// A DC with OU=People (users u1…u30, group g1 with u1…u5, OU=Sub with s1) and OU=Elsewhere.
    fn start(name: &str) -> Ad {
        let dc = SambaDc::start().expect("samba starts");
        let dir = temp_state(name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let password_file = dir.join("admin.pw");
        std::fs::write(&password_file, ADMIN_PW).expect("password file");
        let mut ldif = format!(
            "dn: {PEOPLE}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
             dn: {ELSEWHERE}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
             dn: OU=Sub,{PEOPLE}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
             dn: CN=s1,OU=Sub,{PEOPLE}\nchangetype: add\nobjectClass: user\nsn: Sub\n\n"
        );
        for i in 1..=USERS {
            ldif.push_str(&user_ldif(&format!("u{i}"), PEOPLE));
        }
        ldif.push_str(&format!(
            "dn: CN=g1,{PEOPLE}\nchangetype: add\nobjectClass: group\ndescription: group one\n"
        ));
        for i in 1..=5 {
            ldif.push_str(&format!("member: CN=u{i},{PEOPLE}\n"));
        }
        dc.modify(&ldif).expect("populate");
        Ad {
            dc,
            password_file: password_file.display().to_string(),
            bind: ADMIN_DN.to_owned(),
            dir,
        }
    }

    fn url(&self) -> String {
        format!("{}/{PEOPLE}?{}?sub", self.dc.ldaps_url(), ATTRS.join(","))
    }

    fn args(&self) -> Vec<String> {
        vec![
            "-D".into(),
            self.bind.clone(),
            "--password-file".into(),
            self.password_file.clone(),
            "--ca-file".into(),
            self.dc.ca_file().display().to_string(),
        ]
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// One refreshOnly sync into `state`: what it printed as text.
    fn refresh(&self, state: &Path, extra: &[&str]) -> String {
        let out = syncrepl()
            .args([
                "watch",
                &self.url(),
                "--refresh-only",
                "--format",
                "text",
                "--state",
            ])
            .arg(state)
            .args(self.args())
            .args(extra)
            .output()
            .expect("run syncrepl");
        assert!(
            out.status.success(),
            "watch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn assert_mirrors(&self, state: &Path) {
        self.assert_mirrors_as(state, Account::Administrator);
    }

    fn assert_mirrors_as(&self, state: &Path, account: Account<'_>) {
        let ours = records(&dump(state));
        let theirs = records(
            &self
                .dc
                .search_as(account, PEOPLE, Scope::Sub, "(objectClass=*)", ATTRS)
                .expect("ldapsearch"),
        );
        assert_eq!(ours, theirs, "the mirror equals ldapsearch");
    }
}

impl Drop for Ad {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn user_ldif(name: &str, parent: &str) -> String {
    format!(
        "dn: CN={name},{parent}\nchangetype: add\nobjectClass: user\nsn: {name}\n\
         givenName: Given {name}\ndisplayName: User {name}\ndescription: user {name}\n\
         telephoneNumber: +1 555 {name}\n\n"
    )
}

/// LDIF records with their lines sorted, sorted: LDAP gives attributes in no particular order.
fn records(ldif: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = ldif
        .split("\n\n")
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.starts_with('#'))
        .map(|r| {
            let mut lines: Vec<String> = r.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        })
        .collect();
    out.sort();
    out
}

/// Every kind of change, as LDIF for ldapmodify, and a line of each that `--format text` prints.
fn changes() -> (String, Vec<String>) {
    let ldif = format!(
        "dn: CN=u6,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: changed\n-\n\
         delete: telephoneNumber\n\n\
         {add}\
         dn: CN=g1,{PEOPLE}\nchangetype: modify\nadd: member\nmember: CN=new1,{PEOPLE}\n-\n\
         delete: member\nmember: CN=u1,{PEOPLE}\n\n\
         dn: CN=u2,{PEOPLE}\nchangetype: modrdn\nnewrdn: CN=u2renamed\ndeleteoldrdn: 1\n\n\
         dn: CN=u3,{PEOPLE}\nchangetype: modrdn\nnewrdn: CN=u3\ndeleteoldrdn: 1\n\
         newsuperior: {ELSEWHERE}\n\n\
         dn: CN=u4,{PEOPLE}\nchangetype: delete\n\n\
         dn: OU=Sub,{PEOPLE}\nchangetype: modrdn\nnewrdn: OU=Sub2\ndeleteoldrdn: 1\n\n",
        add = user_ldif("new1", PEOPLE),
    );
    let expect = vec![
        format!("modify  CN=u6,{PEOPLE}: description = [changed]; telephoneNumber removed"),
        format!("add     CN=new1,{PEOPLE}"),
        format!("rename  CN=u2,{PEOPLE} -> CN=u2renamed,{PEOPLE}"),
        format!("delete  CN=u3,{PEOPLE}"),
        format!("delete  CN=u4,{PEOPLE}"),
        format!("rename  OU=Sub,{PEOPLE} -> OU=Sub2,{PEOPLE}"),
        format!("rename  CN=s1,OU=Sub,{PEOPLE} -> CN=s1,OU=Sub2,{PEOPLE}"),
    ];
    (ldif, expect)
}

fn assert_printed(printed: &str, expected: &[String]) {
    for line in expected {
        assert!(
            printed.lines().any(|l| l.starts_with(line.as_str())),
            "{line:?} not in\n{printed}"
        );
    }
}

#[test]
fn full_and_incremental_passes_equal_ldapsearch() {
    let ad = Ad::start("ad-refresh");
    let state = ad.state("state");
    let printed = ad.refresh(&state, &[]);
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("add ")).count(),
        USERS + 4,
        "{printed}"
    );
    ad.assert_mirrors(&state);

    let (ldif, expected) = changes();
    ad.dc.modify(&ldif).expect("changes");
    let printed = ad.refresh(&state, &[]);
    assert_printed(&printed, &expected);
    // The group: u1 removed, new1 added, u2 under its new name (AD's links follow renames),
    // u3 at its new place, u4 gone.
    let group = printed
        .lines()
        .filter(|l| l.starts_with(&format!("modify  CN=g1,{PEOPLE}")))
        .collect::<Vec<_>>();
    assert!(!group.is_empty(), "{printed}");
    ad.assert_mirrors(&state);

    // Nothing changed: nothing printed.
    assert_eq!(ad.refresh(&state, &[]).trim(), "");
    // The same state over StartTLS on the plain port (a simple bind in cleartext is refused).
    let out = syncrepl()
        .arg("watch")
        .arg(format!(
            "{}/{PEOPLE}?{}?sub",
            ad.dc.ldap_url(),
            ATTRS.join(",")
        ))
        .args([
            "--starttls",
            "--refresh-only",
            "--format",
            "text",
            "--state",
        ])
        .arg(&state)
        .args(ad.args())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    let status = syncrepl()
        .args(["status", "--state"])
        .arg(&state)
        .output()
        .expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("cookie:       MSDS"), "{status}");
    assert!(
        status.contains(&format!("entries:      {}", USERS + 3)),
        "the OU, OU=Sub2, s1, g1 and the users, less u3 and u4, plus new1: {status}"
    );
    // status names the dialect's cookie; dump --format json has the objectGUID string.
    let json = syncrepl()
        .args(["dump", "--format", "json", "--state"])
        .arg(&state)
        .output()
        .expect("dump");
    let guid = syncrepl_testkit::samba::guid_string(
        &ad.dc.object_guid(&format!("CN=u5,{PEOPLE}")).expect("guid"),
    );
    assert!(
        String::from_utf8_lossy(&json.stdout).contains(&guid),
        "objectGUID {guid} in the dump"
    );
}

#[test]
fn the_filter_applies_here_and_an_object_moved_in_comes_whole() {
    let ad = Ad::start("ad-filter");
    ad.dc
        .modify(&user_ldif("x1", ELSEWHERE))
        .expect("a user elsewhere");
    let url = format!(
        "{}/{PEOPLE}?{}?sub?(description=user*)",
        ad.dc.ldaps_url(),
        ATTRS.join(",")
    );
    let refresh = |extra: &[&str]| {
        let out = syncrepl()
            .args([
                "watch",
                &url,
                "--refresh-only",
                "--format",
                "text",
                "--state",
            ])
            .arg(ad.state("state"))
            .args(ad.args())
            .args(extra)
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let printed = refresh(&[]);
    assert_eq!(
        printed.lines().count(),
        USERS,
        "the users (s1 has no description): {printed}"
    );
    ad.dc
        .modify(&format!(
            "dn: CN=u6,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: other\n\n\
             dn: CN=x1,{ELSEWHERE}\nchangetype: modrdn\nnewrdn: CN=x1\ndeleteoldrdn: 1\n\
             newsuperior: {PEOPLE}\n"
        ))
        .expect("changes");
    // u6 stops matching: a delete. x1 moves in with its new DN only: the same run follows with a
    // full pass, which brings it whole and reports nothing else.
    let mut printed: Vec<String> = refresh(&[]).lines().map(str::to_owned).collect();
    printed.sort();
    assert_eq!(
        printed,
        [
            format!("add     CN=x1,{PEOPLE}"),
            format!("delete  CN=u6,{PEOPLE}")
        ]
    );
    let ours = records(&dump(&ad.state("state")));
    let theirs = records(
        &ad.dc
            .search(PEOPLE, Scope::Sub, "(description=user*)", ATTRS)
            .expect("ldapsearch"),
    );
    assert_eq!(ours, theirs);
    assert_eq!(refresh(&[]).trim(), "", "and the next pass has nothing");
}

#[test]
fn live_changes_arrive_within_a_second_and_a_restart_catches_up() {
    let mut ad = Ad::start("ad-live");
    let state = ad.state("state");
    let args = ad.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, rx) = watch(&ad.url(), &args, &state, "text");
    let (_, expected) = changes();
    let steps = [
        format!("dn: CN=u6,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: changed\n-\ndelete: telephoneNumber\n"),
        user_ldif("new1", PEOPLE),
        format!("dn: CN=u2,{PEOPLE}\nchangetype: modrdn\nnewrdn: CN=u2renamed\ndeleteoldrdn: 1\n"),
        format!("dn: CN=u3,{PEOPLE}\nchangetype: modrdn\nnewrdn: CN=u3\ndeleteoldrdn: 1\nnewsuperior: {ELSEWHERE}\n"),
        format!("dn: CN=u4,{PEOPLE}\nchangetype: delete\n"),
        format!("dn: OU=Sub,{PEOPLE}\nchangetype: modrdn\nnewrdn: OU=Sub2\ndeleteoldrdn: 1\n"),
    ];
    let mut latencies = Vec::new();
    for (step, line) in steps.iter().zip(&expected) {
        let started = Instant::now();
        ad.dc.modify(step).expect("change");
        wait_line(&rx, line);
        latencies.push(started.elapsed());
    }
    // The group member change, with its own notification.
    let started = Instant::now();
    ad.dc
        .modify(&format!(
            "dn: CN=g1,{PEOPLE}\nchangetype: modify\nadd: member\nmember: CN=u7,{PEOPLE}\n"
        ))
        .expect("member");
    wait_line(&rx, &format!("modify  CN=g1,{PEOPLE}: member +[CN=u7,"));
    latencies.push(started.elapsed());
    latencies.sort();
    println!("live latencies (ldapmodify to printed line): {latencies:?}");
    assert!(
        latencies[latencies.len() / 2] < Duration::from_secs(1),
        "median {:?}",
        latencies[latencies.len() / 2]
    );
    // A restart of the server: the watch reconnects and resumes from its cookie.
    ad.dc.restart().expect("samba restarts");
    ad.dc
        .modify(&format!(
            "dn: CN=u5,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: after restart\n"
        ))
        .expect("modify after restart");
    wait_line(
        &rx,
        &format!("modify  CN=u5,{PEOPLE}: description = [after restart]"),
    );
    assert!(interrupt(child).success(), "watch exits 0 on SIGINT");
    ad.assert_mirrors(&state);

    // Changes while no one watches come with the next start's first pass.
    ad.dc
        .modify(&format!(
            "dn: CN=u8,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: later\n\n\
             dn: CN=u9,{PEOPLE}\nchangetype: delete\n"
        ))
        .expect("changes while down");
    let (child, rx) = watch(&ad.url(), &args, &state, "text");
    let mut seen = wait_line(&rx, "CN=u9,");
    if !seen.iter().any(|l| l.contains("CN=u8,")) {
        seen.extend(wait_line(&rx, "CN=u8,"));
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("delete  CN=u9,{PEOPLE}"))),
        "{seen:?}"
    );
    assert!(interrupt(child).success());
    ad.assert_mirrors(&state);
}

#[test]
fn kill_9_rounds_lose_nothing() {
    let ad = Ad::start("ad-kill");
    let state = ad.state("state");
    let args = ad.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut added = Vec::new();
    for round in 0..6 {
        let (mut child, rx) = watch(&ad.url(), &args, &state, "ldif");
        for i in 0..4 {
            let name = format!("k{round}x{i}");
            ad.dc.modify(&user_ldif(&name, PEOPLE)).expect("add");
            ad.dc
                .modify(&format!(
                    "dn: CN=u{},{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: round {round} {i}\n",
                    1 + (round * 4 + i) % USERS
                ))
                .expect("modify");
            added.push(name);
        }
        std::thread::sleep(Duration::from_millis(20 * round as u64));
        child.kill().expect("kill -9");
        let _ = child.wait();
        drop(rx);
    }
    // One more pass brings whatever the killed runs had not committed.
    ad.refresh(&state, &[]);
    ad.assert_mirrors(&state);
    let dumped = dump(&state);
    for name in added {
        assert!(
            dumped.contains(&format!("dn: CN={name},{PEOPLE}")),
            "{name} lost"
        );
    }
}

#[test]
fn a_refused_cookie_reloads_and_reports_only_real_differences() {
    let ad = Ad::start("ad-cookie");
    let state = ad.state("state");
    ad.refresh(&state, &[]);
    // Replace the cookie with one the server cannot read, as after a restore from backup or a
    // domain rebuilt: Samba answers unavailableCriticalExtension (12).
    {
        let mut mirror =
            Mirror::open(&state, mirror_spec(&ad), OpenOptions::default()).expect("open the state");
        mirror
            .apply_content(ContentEvent::NewCookie(Cookie::from(
                b"MSDS not a cookie".as_slice(),
            )))
            .expect("apply");
        let mut sink = FnConsumer(|_: &syncrepl::Change| Ok::<(), std::io::Error>(()));
        mirror.deliver(&mut sink, true).expect("commit");
        assert_eq!(
            mirror.cookie().map(|c| c.as_bytes().to_vec()),
            Some(b"MSDS not a cookie".to_vec())
        );
        mirror.close().expect("close");
    }
    ad.dc
        .modify(&format!(
            "dn: CN=u10,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: after\n"
        ))
        .expect("modify");
    let printed = ad.refresh(&state, &[]);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        [format!("modify  CN=u10,{PEOPLE}: description = [after]").as_str()],
        "only the real difference"
    );
    ad.assert_mirrors(&state);
    // With --no-reload the same cookie problem ends the run with its own exit code.
}

fn mirror_spec(ad: &Ad) -> syncrepl::state::SearchSpec {
    let url = syncrepl::mio::LdapUrl::parse(&ad.url()).expect("url");
    syncrepl::state::SearchSpec {
        base: url.base,
        scope: url.scope,
        filter: url.filter,
        attributes: url.attributes,
    }
}

#[test]
fn a_reader_without_the_replication_right_uses_object_security() {
    let mut ad = Ad::start("ad-reader");
    ad.dc
        .create_user_in(&format!("CN=Users,{BASE_DN}"), "reader", "Reader-pw-4533!")
        .expect("reader");
    std::fs::write(&ad.password_file, "Reader-pw-4533!").expect("password file");
    ad.bind = "reader@EXAMPLE.TEST".into();
    let state = ad.state("state");
    // Without the flag DirSync refuses: exit 7 with the hint.
    let mut args = ad.args();
    args.extend(["--refresh-only".into(), "--retry".into(), "none".into()]);
    let out = syncrepl()
        .arg("watch")
        .arg(ad.url())
        .arg("--state")
        .arg(&state)
        .args(&args)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--dirsync-object-security"), "{stderr}");

    let flag = ["--dirsync-object-security"];
    ad.refresh(&state, &flag);
    let reader = Account::User {
        name: "reader",
        password: "Reader-pw-4533!",
    };
    ad.assert_mirrors_as(&state, reader);
    ad.dc
        .modify(&format!(
            "dn: CN=u11,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: seen\n\n\
             dn: CN=u12,{PEOPLE}\nchangetype: delete\n"
        ))
        .expect("changes");
    let printed = ad.refresh(&state, &flag);
    assert!(
        printed.contains(&format!("modify  CN=u11,{PEOPLE}")),
        "{printed}"
    );
    // With object security AD does not report deletes: the entry stays until a reload.
    assert!(!printed.contains("delete"), "{printed}");
    let printed = ad.refresh(&state, &["--dirsync-object-security", "--reload"]);
    assert_eq!(
        printed.trim(),
        format!("delete  CN=u12,{PEOPLE}"),
        "the reload sweeps only what is gone"
    );
    ad.assert_mirrors_as(&state, reader);
}

#[test]
fn forcing_rfc4533_says_it_is_active_directory() {
    let ad = Ad::start("ad-dialect");
    let mut args = ad.args();
    args.extend([
        "--refresh-only".into(),
        "--dialect".into(),
        "rfc4533".into(),
        "--retry".into(),
        "none".into(),
    ]);
    let out = syncrepl()
        .arg("watch")
        .arg(ad.url())
        .args(&args)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("it is Active Directory"), "{stderr}");
    // A base outside every naming context is refused before any pass.
    let out = syncrepl()
        .arg("watch")
        .arg(format!("{}/DC=elsewhere,DC=org??sub", ad.dc.ldaps_url()))
        .args(ad.args())
        .args(["--refresh-only", "--dialect", "ad", "--retry", "none"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("naming context"),
        "{out:?}"
    );
}

#[test]
fn gssapi_binds_with_sealing_and_signing() {
    let dc = SambaDc::builder()
        .smb_conf("server services", "ldap, kdc")
        .start()
        .expect("samba with its KDC starts");
    let dir = temp_state("ad-gssapi");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let krb5_conf = dir.join("krb5.conf");
    std::fs::write(
        &krb5_conf,
        format!(
            "[libdefaults]\n default_realm = EXAMPLE.TEST\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n rdns = false\n\n[realms]\n EXAMPLE.TEST = {{\n  kdc = {}\n }}\n",
            dc.host()
        ),
    )
    .expect("krb5.conf");
    let ccache = format!("FILE:{}", dir.join("ccache").display());
    let mut kinit = Command::new("kinit")
        .arg("Administrator@EXAMPLE.TEST")
        .env("KRB5_CONFIG", &krb5_conf)
        .env("KRB5CCNAME", &ccache)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kinit");
    {
        use std::io::Write;
        let mut stdin = kinit.stdin.take().expect("stdin");
        writeln!(stdin, "{ADMIN_PW}").expect("password");
    }
    assert!(kinit.wait().expect("kinit").success(), "kinit");
    // Windows DCs register ldap/ names for themselves; Samba's provision (here) only host/.
    dc.modify(&format!(
        "dn: CN=DC1,OU=Domain Controllers,{BASE_DN}\nchangetype: modify\nadd: servicePrincipalName\n\
         servicePrincipalName: ldap/dc1.example.test\n"
    ))
    .expect("the ldap/ SPN");
    let url = format!("{}/{BASE_DN}??base", dc.ldap_url());
    for (layer, extra) in [("confidentiality", None), ("integrity", Some("maxssf=1"))] {
        let mut command = syncrepl();
        command
            .args([
                "watch",
                &url,
                "--refresh-only",
                "--format",
                "text",
                "--retry",
                "none",
            ])
            .args([
                "-Y",
                "GSSAPI",
                "--sasl-principal",
                "ldap/dc1.example.test@EXAMPLE.TEST",
            ])
            .env("KRB5_CONFIG", &krb5_conf)
            .env("KRB5CCNAME", &ccache)
            .env("SYNCREPL_LOG", "info");
        if let Some(props) = extra {
            command.args(["-O", props]);
        }
        let out = command.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{layer}: {stderr}");
        assert!(
            stderr.contains(&format!("sasl_layer={layer}")),
            "{layer}: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("add     {BASE_DN}")),
            "{out:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
