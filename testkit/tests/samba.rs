//! The Samba AD domain controller fixture against itself, with OpenLDAP's and Samba's own tools:
//! it starts from the cached template, ldaps verifies with its CA (and not without), entries
//! added are read back, users bind, a restart keeps the data, two run side by side on their own
//! addresses, and DirSync and change notification answer as the module documentation says.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncrepl_testkit::samba::{guid_string, template_dir, Account, SambaDc, ADMIN_DN, BASE_DN};
use syncrepl_testkit::{Scope, Transport};

fn start() -> SambaDc {
    // Provisioning (once per cache) is timed apart from the start.
    let started = Instant::now();
    template_dir().expect("the template");
    let template = started.elapsed();
    let started = Instant::now();
    let dc = SambaDc::start().expect("samba starts");
    println!(
        "template ready in {:.3} s, DC on {} ready in {:.3} s",
        template.as_secs_f64(),
        dc.host(),
        started.elapsed().as_secs_f64()
    );
    dc
}

#[test]
fn it_starts_and_ldaps_verifies_with_its_ca_only() {
    let dc = start();
    assert!(dc.host().starts_with("127.0.0."), "{}", dc.host());
    assert_ne!(dc.host(), "127.0.0.1");
    let root = dc
        .search_as(
            Account::Anonymous,
            "",
            Scope::Base,
            "(objectClass=*)",
            &["supportedControl", "defaultNamingContext"],
        )
        .expect("anonymous root DSE over ldaps");
    assert!(
        root.contains(&format!("defaultNamingContext: {BASE_DN}\n")),
        "{root}"
    );
    for oid in ["1.2.840.113556.1.4.841", "1.2.840.113556.1.4.528"] {
        assert!(
            root.contains(&format!("supportedControl: {oid}\n")),
            "{root}"
        );
    }
    // StartTLS verifies too, and a simple bind works over it.
    let out = dc
        .ldap_tool(
            "ldapsearch",
            Transport::StartTls,
            Account::Administrator,
            &[
                "-LLL",
                "-b",
                BASE_DN,
                "-s",
                "base",
                "(objectClass=*)",
                "1.1",
            ],
            None,
        )
        .expect("ldapsearch runs");
    assert!(out.success(), "{}", out.stderr);
    // In cleartext Samba refuses simple binds.
    let out = dc
        .ldap_tool(
            "ldapsearch",
            Transport::Ldap,
            Account::Administrator,
            &[
                "-LLL",
                "-b",
                BASE_DN,
                "-s",
                "base",
                "(objectClass=*)",
                "1.1",
            ],
            None,
        )
        .expect("ldapsearch runs");
    assert_eq!(out.code, Some(8), "{}", out.stderr);
    // With the system's CAs instead of the fixture's, the certificate is not trusted.
    let mut cmd = dc.ldap_command("ldapsearch", Transport::Ldaps, Account::Anonymous);
    cmd.env("LDAPTLS_CACERT", "/etc/ssl/certs/ca-certificates.crt")
        .args(["-LLL", "-b", "", "-s", "base", "(objectClass=*)", "1.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().expect("ldapsearch runs");
    assert_eq!(status.code(), Some(255), "an untrusted server must fail");
}

#[test]
fn entries_added_are_read_back_and_users_bind() {
    let dc = start();
    let ou = dc.add_ou("people").expect("add an OU");
    assert_eq!(ou, format!("OU=people,{BASE_DN}"));
    let alice = dc
        .create_user_in(&ou, "alice", "Alice-pw-4533!")
        .expect("create a user over LDAP");
    let text = dc
        .search(
            &ou,
            Scope::Sub,
            "(objectClass=user)",
            &["sAMAccountName", "userAccountControl"],
        )
        .expect("search");
    assert_eq!(
        text,
        format!("dn: {alice}\nuserAccountControl: 512\nsAMAccountName: alice\n\n")
    );
    // The user binds by its principal name and by its DN, and reads itself.
    for name in ["alice@EXAMPLE.TEST", "alice", alice.as_str()] {
        let me = dc
            .search_as(
                Account::User {
                    name,
                    password: "Alice-pw-4533!",
                },
                &alice,
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
            )
            .expect("the user binds");
        assert_eq!(me, format!("dn: {alice}\n\n"));
    }
    let wrong = Account::User {
        name: "alice",
        password: "wrong",
    };
    assert!(dc
        .search_as(wrong, "", Scope::Base, "(objectClass=*)", &["1.1"])
        .is_err());
    // samba-tool over ldaps.
    let started = Instant::now();
    dc.samba_tool(&["user", "create", "bob", "Bob-pw-4533!"])
        .expect("samba-tool user create");
    println!(
        "samba-tool user create: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let bob = Account::User {
        name: "bob",
        password: "Bob-pw-4533!",
    };
    let me = dc
        .search_as(bob, "", Scope::Base, "(objectClass=*)", &["1.1"])
        .expect("bob binds");
    assert_eq!(me, "dn:\n\n");
    // A base `<GUID=…>` finds an entry by its objectGUID, in string or raw hex form.
    let guid = dc.object_guid(&alice).expect("objectGUID");
    let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
    for base in [
        format!("<GUID={}>", guid_string(&guid)),
        format!("<GUID={hex}>"),
    ] {
        let found = dc
            .search(&base, Scope::Base, "(objectClass=*)", &["1.1"])
            .expect("search by GUID");
        assert_eq!(found, format!("dn: {alice}\n\n"), "{base}");
    }
}

#[test]
fn a_restart_keeps_the_data_and_the_cookie() {
    let mut dc = start();
    let first = dc
        .dirsync(
            Account::Administrator,
            0,
            None,
            "(objectClass=organizationalUnit)",
            &[],
        )
        .expect("dirsync");
    dc.add_ou("kept").expect("add");
    let pid = dc.pid();
    let started = Instant::now();
    dc.restart().expect("restart");
    println!("restarted in {:.3} s", started.elapsed().as_secs_f64());
    assert_ne!(dc.pid(), pid);
    let text = dc
        .search(BASE_DN, Scope::One, "(ou=kept)", &["1.1"])
        .expect("search");
    assert_eq!(text, format!("dn: OU=kept,{BASE_DN}\n\n"));
    // The cookie from before the restart still works and sees the OU added since.
    let next = dc
        .dirsync(
            Account::Administrator,
            0,
            Some(&first.cookie),
            "(objectClass=organizationalUnit)",
            &[],
        )
        .expect("dirsync from the old cookie");
    record(&next.ldif, &format!("OU=kept,{BASE_DN}"));
    dc.stop();
    assert_eq!(dc.pid(), None);
    assert!(dc
        .search(BASE_DN, Scope::Base, "(objectClass=*)", &["1.1"])
        .is_err());
    dc.start_again().expect("start again");
    dc.search(BASE_DN, Scope::Base, "(objectClass=*)", &["1.1"])
        .expect("search after start_again");
}

#[test]
fn two_run_at_once_on_their_own_addresses() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (a.join().expect("first"), b.join().expect("second"))
    });
    assert_ne!(a.address(), b.address());
    a.add_ou("only-a").expect("add to a");
    b.add_ou("only-b").expect("add to b");
    for (dc, mine, theirs) in [(&a, "only-a", "only-b"), (&b, "only-b", "only-a")] {
        let text = dc
            .search(
                BASE_DN,
                Scope::One,
                "(objectClass=organizationalUnit)",
                &["1.1"],
            )
            .expect("search");
        assert!(text.contains(&format!("dn: OU={mine},")), "{text}");
        assert!(!text.contains(theirs), "{text}");
    }
}

#[test]
fn dirsync_returns_changes_since_a_cookie_and_tombstones() {
    let dc = start();
    let all = dc
        .dirsync(Account::Administrator, 0, None, "(objectClass=*)", &[])
        .expect("dirsync");
    assert!(all.cookie_bytes().starts_with(b"MSDS"), "{}", all.cookie);
    assert!(!all.more);
    assert!(all.ldif.contains(&format!("dn: {ADMIN_DN}\n")));
    let user = dc.create_user("carol", "Carol-pw-4533!").expect("user");
    let added = dc
        .dirsync(
            Account::Administrator,
            0,
            Some(&all.cookie),
            "(objectClass=*)",
            &[],
        )
        .expect("dirsync");
    let carol = record(&added.ldif, &user);
    assert!(carol.contains("\nsAMAccountName: carol\n"), "{carol}");
    assert!(
        !carol.contains("\ncn:"),
        "DirSync leaves out the RDN attribute"
    );
    dc.delete(&user).expect("delete");
    let deleted = dc
        .dirsync(
            Account::Administrator,
            0,
            Some(&added.cookie),
            "(objectClass=*)",
            &["*"],
        )
        .expect("dirsync");
    let guid = guid_string(&dc_guid(carol));
    let tombstone = record(
        &deleted.ldif,
        &format!("CN=carol\\0ADEL:{guid},CN=Deleted Objects,{BASE_DN}"),
    );
    for line in ["isDeleted: TRUE", "isRecycled: TRUE", "instanceType: 4"] {
        assert!(tombstone.contains(&format!("\n{line}\n")), "{tombstone}");
    }
    assert!(tombstone.contains("\nlastKnownParent:: "), "{tombstone}");
    // Nothing changed since: no entries, a cookie all the same.
    let none = dc
        .dirsync(
            Account::Administrator,
            0,
            Some(&deleted.cookie),
            "(objectClass=*)",
            &[],
        )
        .expect("dirsync");
    assert_eq!(none.ldif, "");
    assert!(!none.cookie.is_empty());
}

/// The record of `dn` in `ldif` (up to its blank line).
fn record<'a>(ldif: &'a str, dn: &str) -> &'a str {
    let head = format!("dn: {dn}\n");
    ldif.split_inclusive("\n\n")
        .find(|r| r.starts_with(&head))
        .unwrap_or_else(|| panic!("no {dn} in:\n{ldif}"))
}

/// The objectGUID in an LDIF record.
fn dc_guid(ldif: &str) -> [u8; 16] {
    let b64 = ldif
        .lines()
        .find_map(|l| l.strip_prefix("objectGUID:: "))
        .expect("an objectGUID");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in b64.trim_end_matches('=').bytes() {
        let v = alphabet.iter().position(|&a| a == c).expect("base64");
        acc = ((acc << 6) | v as u32) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out.try_into().expect("16 bytes")
}

/// `cmd` under `stdbuf -oL`, so that what it prints into a pipe comes line by line.
fn line_buffered(cmd: &Command) -> Command {
    let mut wrapped = Command::new("stdbuf");
    wrapped
        .arg("-oL")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

#[test]
fn a_plain_user_syncs_with_object_security_and_gets_notifications() {
    let dc = start();
    dc.create_user("dave", "Dave-pw-4533!").expect("user");
    let dave = Account::User {
        name: "dave",
        password: "Dave-pw-4533!",
    };
    let refused = dc.dirsync(dave, 0, None, "(objectClass=*)", &[]);
    assert!(
        matches!(
            &refused,
            Err(syncrepl_testkit::Error::Tool { code: Some(50), .. })
        ),
        "{refused:?}"
    );
    let first = dc
        .dirsync(dave, 1, None, "(objectClass=*)", &[])
        .expect("dirsync with object security");
    assert!(
        first
            .ldif
            .lines()
            .any(|l| l == format!("dn: CN=dave,CN=Users,{BASE_DN}")),
        "{}",
        first.ldif
    );
    // A change notification search as dave sees a modification at once.
    let ou = dc.add_ou("watched").expect("add");
    let mut cmd = line_buffered(&dc.ldap_command("ldapsearch", Transport::Ldaps, dave));
    cmd.args([
        "-LLL",
        "-o",
        "ldif-wrap=no",
        "-E",
        "!1.2.840.113556.1.4.528",
    ])
    .args(["-b", BASE_DN, "(objectClass=*)", "description"])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn ldapsearch");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            // ldapsearch ends an entry's last line; the blank line after it comes later.
            let done = String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l.starts_with("description: seen "));
            if done && text.ends_with(b"\n") {
                break;
            }
        }
        (String::from_utf8_lossy(&text).into_owned(), Instant::now())
    });
    // The search is registered some time after the start, later on a busy machine: change the
    // OU again until a notification comes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut changed = Vec::new();
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        changed.push(Instant::now());
        dc.modify(&format!(
            "dn: {ou}\nchangetype: modify\nreplace: description\ndescription: seen {}\n",
            changed.len()
        ))
        .expect("modify");
        let until = Instant::now() + Duration::from_millis(500);
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let (text, seen) = reader.join().expect("reader");
    let n: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("description: seen "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no notification: {text:?}"));
    assert_eq!(text, format!("dn: {ou}\ndescription: seen {n}\n"));
    println!(
        "notification {:.3} s after change {n} of {}",
        seen.duration_since(changed[n - 1]).as_secs_f64(),
        changed.len()
    );
}
