//! The Kerberos realm against itself and against a GSSAPI slapd, with MIT's and OpenLDAP's own
//! tools: tickets, every security layer, required layers, sync refreshes, short tickets, a KDC
//! that goes away, and realms side by side.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use syncrepl_testkit::kerberos::{RealmOptions, READER_PRINCIPAL, REALM};
use syncrepl_testkit::slapd::{person_dn, Scope, BASE, READER_DN};
use syncrepl_testkit::{Bind, Error, Output, Realm, Slapd, Transport};

/// The security strength factor ldapwhoami or ldapsearch reported on stderr (`SASL SSF: N`).
fn ssf(out: &Output) -> Option<u32> {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("SASL SSF: "))
        .and_then(|n| n.trim().parse().ok())
}

/// `ldapwhoami` over plain LDAP with the reader's tickets in `ccache` and `secprops` for `-O`.
fn whoami(slapd: &Slapd, realm: &Realm, ccache: &Path, secprops: Option<&str>) -> Output {
    let bind = Bind::Gssapi {
        realm,
        ccache: Some(ccache),
        keytab: None,
        secprops,
    };
    slapd
        .ldap_tool("ldapwhoami", Transport::Ldap, bind, &[], None)
        .expect("ldapwhoami runs")
}

fn reader_dn() -> String {
    format!("dn:{READER_DN}")
}

/// A realm, the reader's tickets in `DIR/reader.ccache`, and a GSSAPI slapd with `people`.
fn realm_and_slapd(
    people: usize,
    configure: impl FnOnce(syncrepl_testkit::Options) -> syncrepl_testkit::Options,
) -> (Realm, Slapd, std::path::PathBuf) {
    let realm = Realm::start().expect("realm starts");
    let ccache = realm.dir().join("reader.ccache");
    realm
        .kinit(&ccache, READER_PRINCIPAL, None)
        .expect("kinit as the reader");
    let options = configure(Slapd::builder().people(people).tls(false).gssapi(&realm));
    let slapd = options.start().expect("slapd starts");
    (realm, slapd, ccache)
}

#[test]
fn a_realm_starts_in_well_under_a_second_and_issues_tickets() {
    let started = Instant::now();
    let mut realm = Realm::start().expect("realm starts");
    let took = started.elapsed();
    println!("realm started in {:.3} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(realm.realm(), REALM);
    assert_eq!(realm.reader_principal(), "reader@EXAMPLE.TEST");
    assert!(realm.is_kdc_running() && realm.kdc_pid().is_some());
    for file in [
        realm.krb5_config(),
        realm.kdc_config(),
        realm.service_keytab(),
        realm.client_keytab(),
    ] {
        assert!(file.starts_with(realm.dir()) && file.exists(), "{file:?}");
    }
    let conf = std::fs::read_to_string(realm.krb5_config()).expect("krb5.conf");
    assert!(conf.contains(&format!("kdc = 127.0.0.1:{}\n", realm.kdc_port())));
    assert!(conf.contains("default_realm = EXAMPLE.TEST\n"));

    let ccache = realm.dir().join("cc");
    assert!(!realm.has_valid_tgt(&ccache).expect("klist runs"));
    let started = Instant::now();
    realm
        .kinit(&ccache, "reader", None)
        .expect("kinit from the keytab");
    println!("kinit took {:.3} s", started.elapsed().as_secs_f64());
    assert!(realm.has_valid_tgt(&ccache).expect("klist runs"));
    let list = realm.klist(&ccache).expect("klist runs");
    assert!(list.success(), "{list:?}");
    assert!(
        list.stdout
            .contains("Default principal: reader@EXAMPLE.TEST"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"));

    // Principals of one's own, each with its keytab.
    let keytab = realm.add_principal("alice").expect("add alice");
    assert_eq!(keytab, realm.keytab_path("alice@EXAMPLE.TEST"));
    let alice = realm.dir().join("alice.ccache");
    realm
        .kinit(&alice, "alice@EXAMPLE.TEST", Some("10m"))
        .expect("kinit as alice");
    let list = realm.klist(&alice).expect("klist runs").stdout;
    assert!(
        list.contains("Default principal: alice@EXAMPLE.TEST"),
        "{list}"
    );
    // Mistakes are errors that say what is wrong.
    assert!(matches!(
        realm.add_principal("alice"),
        Err(Error::Tool { stderr, .. }) if stderr.contains("already exists")
    ));
    assert!(matches!(
        realm.add_principal("bob@OTHER.TEST"),
        Err(Error::Options(_))
    ));
    assert!(matches!(
        realm.kinit(&alice, "nobody", None),
        Err(Error::Options(_))
    ));
    assert!(matches!(
        Realm::builder().name("lower.case").start(),
        Err(Error::Options(_))
    ));
    let env = realm.client_env(Some(&ccache), None);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "KRB5_CONFIG",
            "KRB5CCNAME",
            "KRB5_CLIENT_KTNAME",
            "KRB5_KTNAME"
        ]
    );
}

#[test]
fn gssapi_binds_are_the_reader_with_every_layer() {
    let (realm, mut slapd, ccache) = realm_and_slapd(20, |o| o);
    for (secprops, expected) in [(Some("maxssf=0"), 0), (Some("maxssf=1"), 1)] {
        let out = whoami(&slapd, &realm, &ccache, secprops);
        assert!(out.success(), "{secprops:?}: {out:?}");
        assert_eq!(out.stdout.trim(), reader_dn());
        assert_eq!(ssf(&out), Some(expected), "{secprops:?}: {}", out.stderr);
    }
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), reader_dn());
    let strength = ssf(&out).expect("an SSF");
    println!("confidentiality by default: SASL SSF {strength}");
    assert!(strength >= 56, "{}", out.stderr);
    // The helpers take the bind like any other; over ldapi libldap asks for ldap/HOSTNAME.
    let bind = Bind::gssapi(&realm, &ccache);
    assert_eq!(
        slapd.whoami(Transport::Ldapi, bind).expect("over ldapi"),
        reader_dn()
    );
    let people = slapd
        .ldapsearch(
            Transport::Ldap,
            bind,
            &format!("ou=people,{BASE}"),
            Scope::One,
            "(objectClass=inetOrgPerson)",
            &["1.1"],
        )
        .expect("the reader searches");
    assert_eq!(people.matches("dn: ").count(), 20);

    // Another principal is the person with its name; a keytab alone gets tickets too.
    let keytab = realm.add_principal("user00003").expect("add user00003");
    let as_person = Bind::Gssapi {
        realm: &realm,
        ccache: None,
        keytab: Some(&keytab),
        secprops: None,
    };
    assert_eq!(
        slapd
            .whoami(Transport::Ldap, as_person)
            .expect("as a person"),
        format!("dn:{}", person_dn(3, BASE))
    );
    // The other binds are as before, and a restart keeps slapd's Kerberos environment.
    assert_eq!(
        slapd.whoami(Transport::Ldap, Bind::Reader).expect("simple"),
        reader_dn()
    );
    slapd.restart();
    assert_eq!(
        slapd
            .whoami(Transport::Ldap, bind)
            .expect("after a restart"),
        reader_dn()
    );
    assert_eq!(
        slapd
            .whoami(Transport::Ldapi, Bind::External)
            .expect("EXTERNAL"),
        reader_dn()
    );
}

#[test]
fn secprops_can_require_confidentiality() {
    let (realm, slapd, ccache) =
        realm_and_slapd(5, |o| o.sasl_secprops("noanonymous,noplain,minssf=56"));
    for secprops in ["maxssf=0", "maxssf=1"] {
        let out = whoami(&slapd, &realm, &ccache, Some(secprops));
        assert!(!out.success(), "{secprops}: {out:?}");
        println!("{secprops} refused: {}", out.stderr.trim());
    }
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(out.success(), "{out:?}");
    assert!(ssf(&out).is_some_and(|s| s >= 56), "{}", out.stderr);
    // EXTERNAL over ldapi counts as strong enough.
    assert_eq!(
        slapd
            .whoami(Transport::Ldapi, Bind::External)
            .expect("EXTERNAL"),
        reader_dn()
    );
}

#[test]
fn security_ssf_refuses_operations_after_a_weak_bind() {
    let (realm, slapd, ccache) = realm_and_slapd(5, |o| o.security("ssf=56"));
    // The bind itself succeeds; the Who am I? operation after it is refused.
    // (ldapwhoami exits with 1 when the operation fails, and prints the result code.)
    let weak = "Confidentiality required (13)";
    for secprops in ["maxssf=0", "maxssf=1"] {
        let out = whoami(&slapd, &realm, &ccache, Some(secprops));
        assert!(!out.success() && out.stderr.contains(weak), "{out:?}");
        assert!(ssf(&out).is_some_and(|s| s < 56), "{}", out.stderr);
    }
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(out.success(), "{out:?}");
    // Simple binds in clear are weak too; the admin's helpers over ldapi are not.
    let out = slapd
        .ldap_tool("ldapwhoami", Transport::Ldap, Bind::Reader, &[], None)
        .expect("ldapwhoami runs");
    assert!(!out.success() && out.stderr.contains(weak), "{out:?}");
    slapd.replace(&person_dn(1, BASE), "sn", &["Strong"]);
}

#[test]
fn a_sync_refresh_over_gssapi_returns_every_entry() {
    let (realm, slapd, ccache) = realm_and_slapd(40, |o| o);
    // The suffix, ou=people, the reader and the people.
    let expected = 3 + 40;
    for secprops in [Some("maxssf=0"), Some("maxssf=1"), None] {
        let bind = Bind::Gssapi {
            realm: &realm,
            ccache: Some(&ccache),
            keytab: None,
            secprops,
        };
        let out = slapd
            .ldap_tool(
                "ldapsearch",
                Transport::Ldap,
                bind,
                &["-E", "!sync=ro", "-b", BASE, "(objectClass=*)", "dn"],
                None,
            )
            .expect("ldapsearch runs");
        assert!(out.success(), "{secprops:?}: {out:?}");
        assert_eq!(
            out.stdout.matches("\ndn: ").count(),
            expected,
            "{secprops:?}"
        );
        assert!(
            out.stdout.contains("# cookie: rid=000,csn="),
            "{secprops:?}"
        );
    }
}

/// A `-E sync=rp` ldapsearch of `uid=user00001` with `bind`, its output lines (stdout and
/// stderr) sent to a channel.
fn persist(slapd: &Slapd, bind: Bind<'_>) -> (Child, Receiver<String>) {
    let mut search = slapd.ldap_command("ldapsearch", Transport::Ldap, bind);
    search.args(["-E", "!sync=rp", "-b", BASE, "(uid=user00001)", "sn"]);
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ldapsearch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx2.send(line);
        }
    });
    (child, rx)
}

fn wait_line(rx: &Receiver<String>, what: &str) -> String {
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
fn short_tickets_expire_for_clients_but_not_for_open_sessions() {
    let realm = Realm::start().expect("realm starts");
    let slapd = Slapd::builder()
        .people(5)
        .tls(false)
        .gssapi(&realm)
        .start()
        .expect("slapd starts");
    let ccache = realm.dir().join("short.ccache");
    let obtained = Instant::now();
    realm
        .kinit(&ccache, READER_PRINCIPAL, Some("3s"))
        .expect("a three-second ticket");
    assert!(realm.has_valid_tgt(&ccache).expect("klist"));
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(out.success(), "{out:?}");
    // Sessions opened with the ticket, with and without a layer, outlive it.
    let mut sessions = Vec::new();
    for secprops in [Some("maxssf=0"), None] {
        let bind = Bind::Gssapi {
            realm: &realm,
            ccache: Some(&ccache),
            keytab: None,
            secprops,
        };
        let (child, rx) = persist(&slapd, bind);
        wait_line(&rx, "refresh done, switching to persist stage");
        sessions.push((child, rx));
    }
    std::thread::sleep(Duration::from_secs(4).saturating_sub(obtained.elapsed()));
    // Expired for klist and for new binds, the cached service ticket included.
    assert!(!realm.has_valid_tgt(&ccache).expect("klist"));
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("Ticket expired"), "{}", out.stderr);
    // With the client keytab, the library gets a new ticket by itself (and stores it).
    let refreshing = Bind::Gssapi {
        realm: &realm,
        ccache: Some(&ccache),
        keytab: Some(realm.client_keytab()),
        secprops: None,
    };
    assert_eq!(
        slapd
            .whoami(Transport::Ldap, refreshing)
            .expect("refreshed"),
        reader_dn()
    );
    assert!(realm.has_valid_tgt(&ccache).expect("klist"));
    slapd.replace(&person_dn(1, BASE), "sn", &["AfterExpiry"]);
    for (mut child, rx) in sessions {
        wait_line(&rx, "sn: AfterExpiry");
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn tickets_outlive_a_stopped_kdc_and_it_starts_again() {
    let (mut realm, slapd, ccache) = realm_and_slapd(5, |o| o);
    // A first bind puts the service ticket into the cache.
    assert!(whoami(&slapd, &realm, &ccache, None).success());
    let port = realm.kdc_port();
    realm.stop_kdc();
    assert!(!realm.is_kdc_running() && realm.kdc_pid().is_none());
    let fresh = realm.dir().join("fresh.ccache");
    assert!(matches!(
        realm.kinit(&fresh, READER_PRINCIPAL, None),
        Err(Error::Tool { .. })
    ));
    let out = whoami(&slapd, &realm, &ccache, None);
    assert!(
        out.success(),
        "the cached service ticket needs no KDC: {out:?}"
    );
    realm.start_kdc().expect("the KDC starts again");
    assert_eq!(realm.kdc_port(), port);
    realm
        .kinit(&fresh, READER_PRINCIPAL, None)
        .expect("kinit again");
    assert!(whoami(&slapd, &realm, &fresh, Some("maxssf=1")).success());
}

#[test]
fn realms_and_servers_side_by_side_do_not_interfere() {
    let start = || {
        std::thread::spawn(|| {
            let realm = Realm::start().expect("realm starts");
            let ccache = realm.dir().join("reader.ccache");
            realm.kinit(&ccache, READER_PRINCIPAL, None).expect("kinit");
            let slapd = Slapd::builder()
                .people(3)
                .tls(false)
                .gssapi(&realm)
                .start()
                .expect("slapd starts");
            (realm, slapd, ccache)
        })
    };
    let (a, b) = (start(), start());
    let (realm_a, slapd_a, cc_a) = a.join().expect("first");
    let (realm_b, slapd_b, cc_b) = b.join().expect("second");
    assert_ne!(realm_a.dir(), realm_b.dir());
    assert_ne!(realm_a.kdc_port(), realm_b.kdc_port());
    assert_ne!(realm_a, realm_b);
    assert!(whoami(&slapd_a, &realm_a, &cc_a, None).success());
    assert!(whoami(&slapd_b, &realm_b, &cc_b, None).success());
    // Same realm name, different keys: one realm's tickets are worthless to the other's server.
    let out = whoami(&slapd_b, &realm_a, &cc_a, None);
    assert!(!out.success(), "{out:?}");
    // A realm of another name serves its own principals.
    let other = RealmOptions::default()
        .name("OTHER.TEST")
        .start()
        .expect("another realm");
    let ccache = other.dir().join("cc");
    other.kinit(&ccache, "reader", None).expect("kinit");
    let slapd = Slapd::builder()
        .people(1)
        .tls(false)
        .gssapi(&other)
        .start()
        .expect("slapd");
    let out = whoami(&slapd, &other, &ccache, None);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), reader_dn());
    assert!(out.stderr.contains("SASL username: reader@OTHER.TEST"));
}
