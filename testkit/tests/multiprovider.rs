//! The multi-provider fixture against itself: providers that start alike, replicate changes made
//! on either side, and catch up after a restart, checked with the OpenLDAP tools.

use std::time::{Duration, Instant};

use syncrepl_testkit::slapd::{person_dn, Bind, Error, ReplicaOf, Scope, Transport, BASE};
use syncrepl_testkit::{Options, Providers, Slapd};

const WAIT: Duration = Duration::from_secs(15);

/// `dn` and `entryUUID` of every entry, as `ldapsearch -LLL` prints them.
fn uuids(slapd: &Slapd) -> String {
    slapd.search(BASE, "(objectClass=*)", &["entryUUID"])
}

/// The value of `attr` in `dn`, if the entry exists and has it.
fn value(slapd: &Slapd, dn: &str, attr: &str) -> Option<String> {
    let text = slapd
        .ldapsearch(
            Transport::Ldapi,
            Bind::Admin,
            dn,
            Scope::Base,
            "(objectClass=*)",
            &[attr],
        )
        .ok()?;
    let prefix = format!("{attr}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
}

/// The `# cookie:` line of a `-E sync=ro` refresh of provider `slapd` as the reader.
fn refresh_cookie(slapd: &Slapd) -> String {
    let out = slapd
        .ldap_tool(
            "ldapsearch",
            Transport::Ldap,
            Bind::Reader,
            &["-E", "!sync=ro", "-b", BASE, "(objectClass=*)", "1.1"],
            None,
        )
        .expect("ldapsearch runs");
    assert!(out.success(), "{}", out.stderr);
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("# cookie: "))
        .expect("a syncDone cookie")
        .trim()
        .to_owned()
}

#[test]
fn two_providers_start_with_the_same_entries() {
    let started = Instant::now();
    let providers = Providers::start(Options::default().people(50).loglevel("stats"), 2);
    eprintln!("2 providers in {:?}", started.elapsed());
    assert_eq!(providers.count(), 2);
    let urls = providers.urls();
    assert_eq!(urls.len(), 2);
    assert_ne!(urls[0], urls[1]);
    assert_eq!(urls[1], providers.server(1).ldap_url());
    let (one, two) = (providers.server(0), providers.server(1));
    assert_ne!(one.dir(), two.dir());
    assert_eq!(one.options().server_id, Some(1));
    assert_eq!(two.options().server_id, Some(2));
    assert_eq!(two.options().peers.len(), 1);
    assert_eq!(two.options().peers[0].provider, urls[0]);

    // The same entries with the same entryUUIDs, loaded once with serverID 001; each provider
    // then changed the suffix entry once to check that the other replicates from it.
    let entries = uuids(one);
    assert_eq!(entries.matches("entryUUID: ").count(), 53);
    assert_eq!(uuids(two), entries);
    let csns = one.context_csns();
    assert_eq!(csns.len(), 2, "{csns:?}");
    assert!(
        csns[0].contains("#001#") && csns[1].contains("#002#"),
        "{csns:?}"
    );
    assert_eq!(two.context_csns(), csns);
    assert_eq!(one.context_csn().as_ref(), csns.first());
    providers.wait_converged(WAIT).expect("converged");
    providers.wait_same_content(WAIT).expect("same content");

    // With loglevel stats each provider's log shows what it served.
    let people = two
        .ldapsearch(
            Transport::Ldap,
            Bind::Reader,
            &format!("ou=people,{BASE}"),
            Scope::One,
            "(objectClass=inetOrgPerson)",
            &["1.1"],
        )
        .expect("search");
    assert_eq!(people.matches("dn: ").count(), 50);
    let log = two.log();
    assert!(
        log.lines()
            .any(|l| l.contains("SEARCH RESULT") && l.contains("nentries=50")),
        "{log}"
    );
    assert!(!one.log().contains("nentries=50"));
}

#[test]
fn changes_on_either_provider_reach_the_other() {
    let providers = Providers::start(Options::default().people(20).tls(false), 2);
    let (one, two) = (providers.server(0), providers.server(1));
    let changed = person_dn(3, BASE);
    one.replace(&changed, "sn", &["FromOne"]);
    let added = two.add_person("fromtwo");
    providers.wait_converged(WAIT).expect("converged");
    providers.wait_same_content(WAIT).expect("same content");
    for server in providers.servers() {
        assert_eq!(value(server, &changed, "sn").as_deref(), Some("FromOne"));
        assert_eq!(value(server, &added, "sn").as_deref(), Some("fromtwo"));
    }
    assert_eq!(
        value(one, &added, "entryUUID"),
        value(two, &added, "entryUUID")
    );
    assert!(value(one, &added, "entryCSN").is_some_and(|csn| csn.contains("#002#")));

    // contextCSN now has a value for each serverID, the same on both.
    let csns = one.context_csns();
    assert_eq!(csns.len(), 2, "{csns:?}");
    assert!(
        csns[0].contains("#001#") && csns[1].contains("#002#"),
        "{csns:?}"
    );
    assert_eq!(two.context_csns(), csns);
    // A refresh's cookie names the answering server and lists both CSNs.
    let expected = |sid: &str| format!("rid=000,sid={sid},csn={};{}", csns[0], csns[1]);
    assert_eq!(refresh_cookie(two), expected("002"));
    assert_eq!(refresh_cookie(one), expected("001"));

    // A delete and a rename travel too.
    two.delete(&person_dn(5, BASE));
    let renamed = one.rename(&person_dn(6, BASE), "uid=renamed", None);
    providers.wait_converged(WAIT).expect("converged");
    providers.wait_same_content(WAIT).expect("same content");
    for server in providers.servers() {
        assert_eq!(value(server, &person_dn(5, BASE), "uid"), None);
        assert_eq!(value(server, &renamed, "uid").as_deref(), Some("renamed"));
    }
}

#[test]
fn a_stopped_provider_catches_up_after_restart() {
    let mut providers = Providers::start(Options::default().people(20).tls(false), 2);
    let (port, pid) = (
        providers.server(1).port(),
        providers.server(1).pid().expect("running"),
    );
    providers.server_mut(1).stop();
    let one = providers.server(0);
    one.replace(&person_dn(1, BASE), "sn", &["WhileDown"]);
    let added = one.add_person("whiledown");
    // Only running providers count: provider 1 alone agrees with itself.
    providers.wait_converged(WAIT).expect("one provider");

    let started = Instant::now();
    providers.server_mut(1).restart();
    let two = providers.server(1);
    assert_eq!(two.port(), port);
    assert_ne!(two.pid(), Some(pid));
    providers.wait_converged(WAIT).expect("caught up");
    providers.wait_same_content(WAIT).expect("same content");
    eprintln!("restarted and caught up in {:?}", started.elapsed());
    assert_eq!(
        value(two, &person_dn(1, BASE), "sn").as_deref(),
        Some("WhileDown")
    );
    assert_eq!(value(two, &added, "uid").as_deref(), Some("whiledown"));

    // Provider 1's consumer found provider 2 again: changes flow the other way as well.
    let added = two.add_person("afterrestart");
    providers.wait_converged(WAIT).expect("converged");
    assert_eq!(
        value(providers.server(0), &added, "uid").as_deref(),
        Some("afterrestart")
    );
    assert_eq!(providers.server(0).context_csns().len(), 2);
}

/// With a session log, a provider that missed a delete and older changes while it was down
/// keeps the older changes out for good (slapd 2.5.13, see the module documentation of
/// `multiprovider`); without one, the present phase brings everything, after a crash too.
#[test]
fn without_a_session_log_deletes_made_while_down_catch_up_too() {
    let options = Options::default().people(20).tls(false).sessionlog(0);
    let mut providers = Providers::start(options, 2);
    providers.server_mut(1).kill9();
    let one = providers.server(0);
    one.replace(&person_dn(1, BASE), "sn", &["WhileDown"]);
    one.add_person("whiledown");
    one.delete(&person_dn(2, BASE));
    providers.server_mut(1).restart();
    providers.wait_converged(WAIT).expect("caught up");
    providers.wait_same_content(WAIT).expect("same content");
    let two = providers.server(1);
    assert!(value(two, &person_dn(2, BASE), "uid").is_none());
    assert_eq!(
        value(two, &person_dn(1, BASE), "sn").as_deref(),
        Some("WhileDown")
    );
}

#[test]
fn three_providers_replicate_with_each_other() {
    let providers = Providers::start(Options::default().people(5).tls(false), 3);
    assert_eq!(providers.server(2).options().peers.len(), 2);
    providers
        .server(2)
        .replace(&person_dn(0, BASE), "sn", &["Three"]);
    providers.server(0).add_person("one");
    providers.wait_converged(WAIT).expect("converged");
    providers.wait_same_content(WAIT).expect("same content");
    let csns = providers.server(1).context_csns();
    assert_eq!(csns.len(), 3, "{csns:?}");
    for (csn, sid) in csns.iter().zip(["#001#", "#002#", "#003#"]) {
        assert!(csn.contains(sid), "{csns:?}");
    }
}

#[test]
fn impossible_setups_are_refused() {
    let replica = Options::default().replica_of(ReplicaOf {
        provider: "ldap://127.0.0.1:1".into(),
        bind_dn: "cn=x".into(),
        password: "x".into(),
    });
    for (options, count) in [
        (Options::default(), 0),
        (replica, 2),
        (Options::default().syncprov(false), 2),
    ] {
        let err = Providers::try_start(options, count).expect_err("refused");
        assert!(matches!(err, Error::Options(_)), "{err}");
    }
    // A single server's peers are checked as well.
    let err = Slapd::builder()
        .peer(1, "ldap://127.0.0.1:1")
        .start()
        .expect_err("no serverID");
    assert!(matches!(err, Error::Options(_)), "{err}");
}
