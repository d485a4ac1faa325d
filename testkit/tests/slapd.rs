//! The fixture against itself: every account, transport and helper checked with the OpenLDAP
//! tools, a server without syncprov, restarts, crashes and servers side by side.

use std::process::Command;
use std::time::{Duration, Instant};

use syncrepl_testkit::slapd::{
    person_dn, person_password, Bind, Error, ReplicaOf, Scope, Slapd, Transport, ADMIN_DN,
    ADMIN_PW, BASE, READER_DN, READER_PW,
};

/// The DNs in `ldapsearch -LLL` output.
fn dns(ldif: &str) -> Vec<&str> {
    ldif.lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .collect()
}

fn people(slapd: &Slapd, transport: Transport, bind: Bind<'_>) -> Result<usize, Error> {
    let text = slapd.ldapsearch(
        transport,
        bind,
        &format!("ou=people,{}", slapd.base_dn()),
        Scope::One,
        "(objectClass=inetOrgPerson)",
        &["1.1"],
    )?;
    Ok(dns(&text).len())
}

/// `ldapsearch -E sync=ro[/cookie]` as the reader: its full output (with comments).
fn sync_refresh(slapd: &Slapd, cookie: Option<&str>, critical: bool) -> syncrepl_testkit::Output {
    let control = match cookie {
        Some(c) => format!("{}sync=ro/{c}", if critical { "!" } else { "" }),
        None => format!("{}sync=ro", if critical { "!" } else { "" }),
    };
    slapd
        .ldap_tool(
            "ldapsearch",
            Transport::Ldap,
            Bind::Reader,
            &[
                "-E",
                &control,
                "-b",
                slapd.base_dn(),
                "(objectClass=*)",
                "dn",
            ],
            None,
        )
        .expect("ldapsearch runs")
}

fn cookie(output: &str) -> Option<&str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("# cookie: "))
        .map(str::trim)
}

fn num_entries(output: &str) -> usize {
    output
        .lines()
        .find_map(|l| l.strip_prefix("# numEntries: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn accounts_read_and_the_admin_writes() {
    let slapd = Slapd::builder()
        .people(30)
        .passwords(true)
        .start()
        .expect("slapd starts");
    assert_eq!(slapd.base_dn(), BASE);
    assert_eq!(
        (slapd.admin_dn(), slapd.admin_password()),
        (ADMIN_DN.into(), ADMIN_PW)
    );
    assert_eq!(
        (slapd.reader_dn(), slapd.reader_password()),
        (READER_DN.into(), READER_PW)
    );

    // Anonymous and the reader read every person; only the reader sees passwords.
    assert_eq!(
        people(&slapd, Transport::Ldap, Bind::Anonymous).expect("anonymous"),
        30
    );
    assert_eq!(
        people(&slapd, Transport::Ldap, Bind::Reader).expect("reader"),
        30
    );
    let user10 = person_dn(10, BASE);
    let anonymous = slapd
        .ldapsearch(
            Transport::Ldap,
            Bind::Anonymous,
            &user10,
            Scope::Base,
            "(objectClass=*)",
            &[],
        )
        .expect("anonymous read");
    assert!(
        anonymous.contains("mail: user00010@example.com"),
        "{anonymous}"
    );
    assert!(!anonymous.contains("userPassword"), "{anonymous}");
    let reader = slapd
        .ldapsearch(
            Transport::Ldap,
            Bind::Reader,
            &user10,
            Scope::Base,
            "(objectClass=*)",
            &[],
        )
        .expect("reader read");
    assert!(reader.contains("userPassword:: "), "{reader}");
    assert_eq!(
        slapd.whoami(Transport::Ldap, Bind::Reader).expect("whoami"),
        format!("dn:{READER_DN}")
    );
    // A generated person binds with its generated password.
    let password = person_password(10);
    let as_user = Bind::Simple {
        dn: &user10,
        password: &password,
    };
    assert_eq!(
        slapd
            .whoami(Transport::Ldap, as_user)
            .expect("person binds"),
        format!("dn:{user10}")
    );
    let wrong = Bind::Simple {
        dn: READER_DN,
        password: "wrong",
    };
    assert!(matches!(
        slapd.whoami(Transport::Ldap, wrong),
        Err(Error::Tool { code: Some(49), .. })
    ));

    // The admin's helpers, each seen by a search.
    let before = slapd.context_csn().expect("slapadd -w wrote a contextCSN");
    slapd.replace(&person_dn(3, BASE), "sn", &["Changed"]);
    let text = slapd.search(BASE, "(uid=user00003)", &["sn"]);
    assert_eq!(text, format!("dn: {}\nsn: Changed\n\n", person_dn(3, BASE)));
    let after = slapd.context_csn().expect("contextCSN");
    assert!(after > before, "{before} then {after}");

    let added = slapd.add_person("newcomer");
    assert_eq!(added, format!("uid=newcomer,ou=people,{BASE}"));
    slapd.add_people(100..103);
    assert_eq!(
        people(&slapd, Transport::Ldapi, Bind::Admin).expect("admin"),
        34
    );
    let renamed = slapd.rename(&added, "uid=renamed", None);
    assert_eq!(renamed, format!("uid=renamed,ou=people,{BASE}"));
    let moved = slapd.rename(&person_dn(101, BASE), "uid=moved", Some(BASE));
    assert_eq!(moved, format!("uid=moved,{BASE}"));
    slapd.delete(&renamed);
    slapd.modify(&format!(
        "dn: {}\nchangetype: delete\n",
        person_dn(102, BASE)
    ));
    let all = slapd.search_scope(BASE, Scope::Sub, "(objectClass=inetOrgPerson)", &["1.1"]);
    let all = dns(&all);
    assert_eq!(all.len(), 32);
    assert!(all.contains(&moved.as_str()) && !all.contains(&renamed.as_str()));
    // Failures are errors with the tool's message, and apply_ldif goes on after one.
    let err = slapd
        .try_modify(&format!(
            "dn: {}\nchangetype: delete\n",
            person_dn(999, BASE)
        ))
        .expect_err("no such entry");
    assert!(matches!(&err, Error::Tool { code: Some(32), .. }), "{err}");
    let stderr = slapd.apply_ldif(&format!(
        "dn: {}\nchangetype: delete\n\ndn: {}\nchangetype: delete\n",
        person_dn(999, BASE),
        person_dn(29, BASE)
    ));
    assert!(stderr.contains("No such object"), "{stderr}");
    assert_eq!(
        people(&slapd, Transport::Ldapi, Bind::Admin).expect("admin"),
        30
    );
    // The legacy anonymous search wraps lines as ldapsearch does by default.
    let wrapped = slapd.search_anonymous(BASE, "(uid=user00001)");
    assert!(wrapped.starts_with(&format!("dn: {}\n", person_dn(1, BASE))));
}

#[test]
fn tls_starttls_and_sasl_external() {
    let slapd = Slapd::builder().people(5).start().expect("slapd starts");
    // The CA file works for the plain OpenLDAP tools, with nothing of the fixture's.
    let out = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", slapd.ca_pem())
        .env("LDAPTLS_REQCERT", "demand")
        .args([
            "-x",
            "-LLL",
            "-H",
            &slapd.ldaps_url(),
            "-b",
            BASE,
            "-s",
            "base",
            "dn",
        ])
        .output()
        .expect("run ldapsearch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("dn: {BASE}\n\n")
    );
    // The same for localhost, the certificate's other name.
    let localhost = format!("ldaps://localhost:{}", slapd.tls_port().expect("TLS port"));
    let out = Command::new("ldapwhoami")
        .env("LDAPTLS_CACERT", slapd.ca_pem())
        .args(["-x", "-H", &localhost])
        .output()
        .expect("run ldapwhoami");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        people(&slapd, Transport::Ldaps, Bind::Reader).expect("ldaps"),
        5
    );
    assert_eq!(
        people(&slapd, Transport::StartTls, Bind::Anonymous).expect("StartTLS"),
        5
    );
    // SASL EXTERNAL over ldapi (as root or any local user) and with the client certificate.
    let reader = format!("dn:{READER_DN}");
    assert_eq!(slapd.external_dn(), READER_DN);
    for transport in [Transport::Ldapi, Transport::Ldaps, Transport::StartTls] {
        assert_eq!(
            slapd.whoami(transport, Bind::External).expect("EXTERNAL"),
            reader,
            "{transport:?}"
        );
    }
    assert_eq!(
        people(&slapd, Transport::Ldapi, Bind::External).expect("ldapi"),
        5
    );
    let out = Command::new("ldapwhoami")
        .env("LDAPTLS_CACERT", slapd.ca_pem())
        .env("LDAPTLS_CERT", slapd.client_cert_pem())
        .env("LDAPTLS_KEY", slapd.client_key_pem())
        .args(["-Q", "-Y", "EXTERNAL", "-H", &slapd.ldaps_url()])
        .output()
        .expect("run ldapwhoami");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), reader);
    // EXTERNAL without a certificate has no identity to offer.
    assert!(slapd.whoami(Transport::Ldap, Bind::External).is_err());
    // A client that trusts another CA refuses the server.
    let out = Command::new("ldapwhoami")
        .env("LDAPTLS_CACERT", slapd.other_ca_pem())
        .args(["-x", "-H", &slapd.ldaps_url()])
        .output()
        .expect("run ldapwhoami");
    assert!(!out.status.success());
}

#[test]
fn a_sync_refresh_returns_everything_and_a_cookie() {
    let slapd = Slapd::builder().people(40).start().expect("slapd starts");
    let full = sync_refresh(&slapd, None, true);
    assert!(full.success(), "{}", full.stderr);
    // The suffix, ou=people, the reader and 40 people, each with a sync state control.
    assert_eq!(num_entries(&full.stdout), 43);
    assert_eq!(full.stdout.matches("# SyncState control").count(), 43);
    assert!(full.stdout.contains("# SyncDone control refreshDeletes=1"));
    let first = cookie(&full.stdout).expect("a syncDone cookie");
    assert!(first.starts_with("rid=000,csn="), "{first}");

    // An incremental refresh from that cookie brings only what changed.
    slapd.replace(&person_dn(7, BASE), "title", &["Chief"]);
    let incremental = sync_refresh(&slapd, Some(first), true);
    assert!(incremental.success(), "{}", incremental.stderr);
    assert_eq!(
        num_entries(&incremental.stdout),
        1,
        "{}",
        incremental.stdout
    );
    assert!(incremental.stdout.contains(&person_dn(7, BASE)));
    assert_ne!(cookie(&incremental.stdout), Some(first));
}

#[test]
fn without_syncprov_the_sync_control_is_refused() {
    let slapd = Slapd::builder()
        .people(5)
        .syncprov(false)
        .start()
        .expect("slapd starts");
    assert_eq!(
        people(&slapd, Transport::Ldap, Bind::Anonymous).expect("search"),
        5
    );
    // Critical: unavailableCriticalExtension (12); not critical: entries but no sync controls.
    let critical = sync_refresh(&slapd, None, true);
    assert_eq!(critical.code, Some(12), "{critical:?}");
    let lenient = sync_refresh(&slapd, None, false);
    assert!(lenient.success());
    assert!(!lenient.stdout.contains("SyncDone") && !lenient.stdout.contains("SyncState"));
}

#[test]
fn anonymous_reads_can_be_forbidden() {
    let slapd = Slapd::builder()
        .people(5)
        .anonymous_read(false)
        .start()
        .expect("slapd starts");
    let err = people(&slapd, Transport::Ldap, Bind::Anonymous).expect_err("refused");
    // `require authc`: unwillingToPerform, "authentication required".
    assert!(
        matches!(&err, Error::Tool { code: Some(53), stderr, .. } if stderr.contains("authentication required")),
        "{err}"
    );
    assert_eq!(
        people(&slapd, Transport::Ldap, Bind::Reader).expect("reader"),
        5
    );
    assert_eq!(
        people(&slapd, Transport::Ldapi, Bind::External).expect("external"),
        5
    );
}

#[test]
fn restarts_keep_the_data_ports_and_directory() {
    let mut slapd = Slapd::builder().people(20).start().expect("slapd starts");
    let (port, tls_port, url, pid) = (
        slapd.port(),
        slapd.tls_port(),
        slapd.ldapi_url(),
        slapd.pid().expect("running"),
    );
    // `-d 0` keeps slapd in the foreground: the PID we hold is slapd itself, our child.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("the process");
    assert_eq!(comm.trim(), "slapd");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process");
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().nth(1));
    assert_eq!(ppid, Some(std::process::id().to_string().as_str()));

    slapd.replace(&person_dn(1, BASE), "sn", &["BeforeRestart"]);
    slapd.restart();
    assert_ne!(slapd.pid(), Some(pid));
    assert_eq!(
        (slapd.port(), slapd.tls_port(), slapd.ldapi_url()),
        (port, tls_port, url)
    );
    assert!(slapd
        .search(BASE, "(sn=BeforeRestart)", &["1.1"])
        .contains("user00001"));

    // A crash: committed changes survive it too.
    slapd.replace(&person_dn(2, BASE), "sn", &["BeforeCrash"]);
    let pid = slapd.pid().expect("running");
    slapd.kill9();
    assert!(!slapd.is_running() && slapd.pid().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // A zombie cannot remain: kill9 waited for it; the PID may be reused by now.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim() != "slapd"
        }
    );
    assert!(people(&slapd, Transport::Ldap, Bind::Anonymous).is_err());
    slapd.restart();
    assert!(slapd
        .search(BASE, "(sn=BeforeCrash)", &["1.1"])
        .contains("user00002"));
    assert_eq!(
        people(&slapd, Transport::Ldap, Bind::Anonymous).expect("search"),
        20
    );

    // stop() is final until the next restart, and the directory goes with the fixture.
    slapd.stop();
    assert!(!slapd.is_running());
    slapd.stop();
    let dir = slapd.dir().to_path_buf();
    drop(slapd);
    if std::env::var_os(syncrepl_testkit::KEEP_ENV).is_none() {
        assert!(!dir.exists());
    }
}

#[test]
fn a_failed_start_says_why_with_slapds_output() {
    let mut slapd = Slapd::builder()
        .people(1)
        .start_timeout(Duration::from_secs(1))
        .start()
        .expect("slapd starts");
    slapd.stop();
    // Someone else takes the port while slapd is down: the restart fails clearly.
    let squatter = std::net::TcpListener::bind(slapd.addr()).expect("take the port");
    let err = slapd.try_restart().expect_err("the port is taken");
    match &err {
        Error::Start {
            port_in_use, log, ..
        } => {
            assert!(*port_in_use, "{err}");
            assert!(log.contains("Address already in use"), "{log}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("slapd did not start"), "{err}");
    drop(squatter);
    slapd.restart();
    assert!(slapd.is_running());

    // Bad data is refused by slapadd, with its message.
    let err = Slapd::builder()
        .people(0)
        .extra_ldif("dn: cn=orphan,ou=nowhere,dc=example,dc=com\nobjectClass: device\ncn: orphan\n")
        .start()
        .expect_err("no parent");
    assert!(matches!(&err, Error::Load { .. }), "{err}");
    assert!(err.to_string().contains("ou=nowhere"), "{err}");
    // An unusable suffix is the caller's mistake.
    let err = Slapd::builder()
        .suffix("cn=x")
        .start()
        .expect_err("bad suffix");
    assert!(matches!(err, Error::Options(_)), "{err}");
}

#[test]
fn servers_run_side_by_side() {
    let started = Instant::now();
    let threads: Vec<_> = (0..3)
        .map(|n| {
            std::thread::spawn(move || {
                Slapd::builder()
                    .people(10 + n)
                    .start()
                    .expect("slapd starts")
            })
        })
        .collect();
    let servers: Vec<Slapd> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    eprintln!("3 servers in {:?}", started.elapsed());
    let mut ports: Vec<u16> = servers
        .iter()
        .flat_map(|s| [s.port(), s.tls_port().expect("TLS")])
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6);
    assert_ne!(servers[0].dir(), servers[1].dir());
    servers[0].delete(&person_dn(0, BASE));
    for (n, s) in servers.iter().enumerate() {
        let expected = 10 + n - usize::from(n == 0);
        assert_eq!(
            people(s, Transport::Ldap, Bind::Anonymous).expect("search"),
            expected
        );
    }
}

#[test]
fn suffix_groups_and_no_tls() {
    let slapd = Slapd::builder()
        .suffix("o=acme")
        .people(7)
        .groups(3)
        .tls(false)
        .extra_ldif("dn: ou=devices,o=acme\nobjectClass: organizationalUnit\nou: devices")
        .extra_ldif("dn: cn=printer,ou=devices,o=acme\nobjectClass: device\ncn: printer")
        .start()
        .expect("slapd starts");
    assert_eq!(slapd.tls_port(), None);
    assert!(!slapd.ca_pem().exists());
    assert_eq!(slapd.admin_dn(), "cn=admin,o=acme");
    assert_eq!(
        people(&slapd, Transport::Ldapi, Bind::External).expect("search"),
        7
    );
    let groups = slapd.search_scope(
        "ou=groups,o=acme",
        Scope::One,
        "(objectClass=*)",
        &["member"],
    );
    assert_eq!(dns(&groups).len(), 3);
    assert_eq!(groups.matches("member: ").count(), 7);
    assert!(groups.contains("member: uid=user00004,ou=people,o=acme"));
    let printer = slapd.search("o=acme", "(cn=printer)", &["1.1"]);
    assert_eq!(dns(&printer), ["cn=printer,ou=devices,o=acme"]);
    let mail = slapd.search("o=acme", "(uid=user00000)", &["mail"]);
    assert!(mail.contains("mail: user00000@example.com"), "{mail}");
}

/// A `-E sync=rp` ldapsearch as the reader, its output lines sent to a channel.
fn persist(
    slapd: &Slapd,
    filter: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut search = slapd.ldap_command("ldapsearch", Transport::Ldap, Bind::Reader);
    search.args(["-E", "!sync=rp", "-b", BASE, filter, "sn"]);
    // ldapsearch buffers its output in a pipe: stdbuf makes it write every line at once.
    let mut line_buffered = Command::new("stdbuf");
    line_buffered
        .arg("-oL")
        .arg(search.get_program())
        .args(search.get_args());
    for (name, value) in search.get_envs() {
        match value {
            Some(value) => line_buffered.env(name, value),
            None => line_buffered.env_remove(name),
        };
    }
    let mut child = line_buffered
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ldapsearch");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {what:?}: {e}"),
        }
    }
}

#[test]
fn a_persistent_search_survives_a_crash_by_reconnecting() {
    let mut slapd = Slapd::builder().people(10).start().expect("slapd starts");
    let (mut child, rx) = persist(&slapd, "(uid=user00005)");
    wait_line(&rx, "refresh done, switching to persist stage");
    slapd.replace(&person_dn(5, BASE), "sn", &["Live"]);
    wait_line(&rx, "sn: Live");
    // The server dies mid-persist: the client sees its connection end.
    slapd.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "ldapsearch outlived the server");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    // Back on the same port and data, a new persistent search picks up from there.
    slapd.restart();
    let (mut child, rx) = persist(&slapd, "(uid=user00005)");
    wait_line(&rx, "sn: Live");
    slapd.replace(&person_dn(5, BASE), "sn", &["AfterCrash"]);
    wait_line(&rx, "sn: AfterCrash");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_replica_catches_up_with_its_provider() {
    let provider = Slapd::builder().people(200).start().expect("provider");
    let replica = Slapd::builder()
        .replica_of(ReplicaOf {
            provider: provider.ldap_url(),
            bind_dn: READER_DN.into(),
            password: READER_PW.into(),
        })
        .start()
        .expect("replica");
    let all = |s: &Slapd| s.search(BASE, "(objectClass=*)", &["*", "entryUUID"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.context_csn().is_none() || replica.context_csn() != provider.context_csn() {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(all(&replica), all(&provider));
}
