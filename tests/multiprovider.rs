//! OpenLDAP multi-provider replication (two 2.5 providers, serverID 1 and 2) and a cascade: the
//! cookie keeps every provider's CSN, so a resume after a persist session is served from the
//! session log; `watch` fails over between providers without losing a change; a replica that
//! runs syncprov serves a consumer like a provider.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{dump, interrupt, sorted_records, syncrepl, temp_state, wait_line};
use syncrepl_testkit::slapd::{Options, ReplicaOf, Slapd, ADMIN_DN, ADMIN_PW, BASE};
use syncrepl_testkit::Providers;

const FILTER: &str = "(objectClass=inetOrgPerson)";
const CONVERGE: Duration = Duration::from_secs(30);

fn url(server: &str) -> String {
    format!("{server}/{BASE}??sub?{FILTER}")
}

fn person(i: usize) -> String {
    format!("uid=user{i:05},ou=people,{BASE}")
}

/// `syncrepl watch URLS… --refresh-only` into `state`, which must succeed; returns its stderr.
fn refresh_only_from(urls: &[String], state: &Path) -> String {
    let out = syncrepl()
        .arg("watch")
        .args(urls)
        .arg("--state")
        .arg(state)
        .args(["--refresh-only", "--format", "json", "--retry", "0.2 3"])
        .output()
        .expect("run syncrepl");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "watch failed: {stderr}");
    stderr
}

/// `syncrepl status` of `state`, as `(name, value)` lines.
fn status(state: &Path) -> Vec<(String, String)> {
    let out = syncrepl()
        .args(["status", "--state"])
        .arg(state)
        .output()
        .expect("run syncrepl status");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn status_field(state: &Path, name: &str) -> String {
    status(state)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name:?} in status"))
}

fn assert_mirrors(server: &Slapd, state: &Path, step: &str) {
    let ours = sorted_records(&dump(state));
    let theirs = sorted_records(&server.search_anonymous(BASE, FILTER));
    assert_eq!(ours.len(), theirs.len(), "{step}: entry counts differ");
    if ours != theirs {
        let only_ours: Vec<_> = ours.iter().filter(|r| !theirs.contains(r)).collect();
        let only_theirs: Vec<_> = theirs.iter().filter(|r| !ours.contains(r)).collect();
        panic!("{step}: the mirror differs from the server:\nours {only_ours:#?}\ntheirs {only_theirs:#?}");
    }
}

/// A persistent `watch` whose stderr goes to a file, to read what it logged.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Watch {
    fn start(urls: &[String], state: &Path) -> Watch {
        let log = state.with_extension("stderr");
        let mut child = syncrepl()
            .arg("watch")
            .args(urls)
            .arg("--state")
            .arg(state)
            .args(["--format", "json", "--retry", "0.2 +"])
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("stderr file"))
            .spawn()
            .expect("start syncrepl watch");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let watch = Watch { child, lines, log };
        watch.wait_log("refresh done", 1);
        watch
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `what` at least `times` times.
    fn wait_log(&self, what: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(what).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {what:?} ×{times} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(&self, what: &str) {
        wait_line(&self.lines, what);
    }

    fn stop(self) -> String {
        assert_eq!(interrupt(self.child).code(), Some(0), "a clean stop");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        log
    }
}

/// The `nentries=` of the sync searches slapd finished since `from` bytes of its log (loglevel
/// stats): what it sent to the consumers that ran meanwhile.
fn entries_sent(server: &Slapd, from: usize) -> Vec<usize> {
    let log = server.log();
    let lines = log.get(from..).unwrap_or_default().lines();
    // `conn=N op=M`: which operation a stats line belongs to.
    let op = |l: &str| -> Option<String> {
        let at = l.find("conn=")?;
        Some(
            l[at..]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    // The root DSE read that chooses the dialect is not the sync search.
    let root_dse: Vec<String> = lines
        .clone()
        .filter(|l| l.contains(" SRCH base=\"\" "))
        .filter_map(op)
        .collect();
    lines
        .filter(|l| l.contains("SEARCH RESULT tag=101"))
        .filter(|l| op(l).is_none_or(|o| !root_dse.contains(&o)))
        .filter_map(|l| l.split("nentries=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse().ok())
        .collect()
}

fn converge(providers: &Providers) {
    providers
        .wait_same_content(CONVERGE)
        .expect("the providers agree");
    providers
        .wait_converged(CONVERGE)
        .expect("contextCSNs agree");
}

/// The cookie the state will send: slapd's CSN set with one CSN per serverID, and no sid.
fn assert_cookie_has_both_servers(state: &Path) {
    let cookie = status_field(state, "cookie");
    assert!(
        !cookie.contains("sid="),
        "a sid is never sent back: {cookie}"
    );
    for sid in ["#001#", "#002#"] {
        assert!(cookie.contains(sid), "no CSN of {sid} in {cookie}");
    }
}

#[test]
fn a_resume_after_a_persist_session_on_both_providers_is_served_from_the_session_log() {
    let providers = Providers::start(Options::default().people(2000).loglevel("stats"), 2);
    let urls = providers.urls();
    let state = temp_state("mp-resume");
    common::refresh_only(&url(&urls[0]), &[], &state);
    assert_mirrors(providers.server(0), &state, "initial refresh");

    let watch = Watch::start(&[url(&urls[0])], &state);
    for i in 0..10 {
        let (server, n) = (providers.server(i % 2), 10 + i);
        server.replace(&person(n), "description", &[&format!("persist {i}")]);
        watch.wait(&format!("persist {i}"));
    }
    watch.stop();
    let raw = status_field(&state, "server sent");
    assert!(
        raw.contains("sid="),
        "the raw cookie is kept for status: {raw}"
    );
    assert_cookie_has_both_servers(&state);

    for i in 0..20 {
        let server = providers.server(i % 2);
        server.replace(&person(100 + i), "description", &[&format!("resume {i}")]);
    }
    converge(&providers);
    let from = providers.server(0).log().len();
    common::refresh_only(&url(&urls[0]), &[], &state);
    let sent = entries_sent(providers.server(0), from);
    assert_eq!(sent.len(), 1, "one sync search: {sent:?}");
    assert!(
        sent[0] >= 20 && sent[0] < 100,
        "20 changes resumed from the session log, not the tree: {} entries sent",
        sent[0]
    );
    assert_mirrors(providers.server(0), &state, "resume");
    assert_cookie_has_both_servers(&state);
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn failover_between_providers_in_refresh_only_and_persist() {
    let mut providers = Providers::start(Options::default().people(200), 2);
    let urls: Vec<String> = providers.urls();
    let both = [url(&urls[0]), urls[1].clone()];
    let state = temp_state("mp-failover");

    refresh_only_from(&both, &state);
    assert_mirrors(providers.server(0), &state, "first refresh");
    assert_eq!(
        status_field(&state, "server"),
        urls[0].trim_end_matches('/')
    );

    // refreshOnly: provider 1 is down, provider 2 takes over with the same state.
    providers
        .server(0)
        .replace(&person(1), "description", &["before the stop"]);
    providers
        .server(1)
        .replace(&person(2), "description", &["before the stop"]);
    converge(&providers);
    providers.server_mut(0).stop();
    providers
        .server(1)
        .replace(&person(3), "description", &["while 1 is down"]);
    providers.server(1).add_person("added-on-2");
    let log = refresh_only_from(&both, &state);
    assert!(
        log.contains("switching to the next one"),
        "the switch is logged: {log}"
    );
    assert_mirrors(providers.server(1), &state, "refresh from provider 2");
    assert_eq!(
        status_field(&state, "server"),
        urls[1].trim_end_matches('/')
    );
    assert_cookie_has_both_servers(&state);

    // Both up again; changes on both between runs, including deletes and a rename.
    providers.server_mut(0).restart();
    converge(&providers);
    providers.server(0).delete(&person(4));
    providers.server(1).delete(&person(5));
    providers
        .server(0)
        .rename(&person(6), "uid=renamed-on-1", None);
    providers
        .server(1)
        .replace(&person(7), "description", &["between runs"]);
    converge(&providers);
    refresh_only_from(&both, &state);
    assert_mirrors(providers.server(0), &state, "refresh with both up");
    assert_mirrors(providers.server(1), &state, "refresh with both up");

    // refreshAndPersist on provider 1, which goes down: the stream moves to provider 2 and
    // carries the changes made on either provider, including those that originated on
    // provider 1 after it came back (provider 2 would withhold them from a consumer that echoed
    // provider 1's sid).
    let watch = Watch::start(&both, &state);
    providers
        .server(0)
        .replace(&person(8), "description", &["persist on 1"]);
    watch.wait("persist on 1");
    providers
        .server(1)
        .replace(&person(9), "description", &["persist on 2"]);
    watch.wait("persist on 2");
    providers.server_mut(0).kill9();
    watch.wait_log("switching to the next one", 1);
    providers
        .server(1)
        .replace(&person(10), "description", &["after the kill"]);
    watch.wait("after the kill");
    providers.server_mut(0).restart();
    providers
        .server(0)
        .replace(&person(11), "description", &["from 1 through 2"]);
    watch.wait("from 1 through 2");
    providers.server(0).add_person("added-on-1");
    watch.wait("added-on-1");
    providers.server(0).delete(&person(12));
    watch.wait(&person(12));
    converge(&providers);
    watch.stop();
    assert_mirrors(providers.server(0), &state, "after persist");
    assert_mirrors(providers.server(1), &state, "after persist");
    assert_eq!(
        status_field(&state, "server"),
        urls[1].trim_end_matches('/')
    );
    assert_cookie_has_both_servers(&state);

    // Changes while no consumer runs, then a resume from provider 1.
    providers
        .server(1)
        .replace(&person(13), "description", &["while stopped"]);
    providers.server(0).delete(&person(14));
    converge(&providers);
    refresh_only_from(&both, &state);
    assert_mirrors(providers.server(0), &state, "last refresh");
    assert_eq!(
        status_field(&state, "server"),
        urls[0].trim_end_matches('/')
    );
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn a_replica_that_runs_syncprov_serves_a_consumer() {
    let provider = Slapd::start(Options::default().people(300));
    let replica = Slapd::start(Options {
        people: 0,
        replica_of: Some(ReplicaOf {
            provider: provider.ldap_url(),
            bind_dn: ADMIN_DN.into(),
            password: ADMIN_PW.into(),
        }),
        ..Options::default()
    });
    let caught_up = || {
        let deadline = Instant::now() + CONVERGE;
        while replica.context_csn() != provider.context_csn()
            || sorted_records(&replica.search_anonymous(BASE, FILTER))
                != sorted_records(&provider.search_anonymous(BASE, FILTER))
        {
            assert!(Instant::now() < deadline, "the replica did not catch up");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    caught_up();
    let state = temp_state("cascade");
    let through = url(&replica.ldap_url());
    common::refresh_only(&through, &[], &state);
    assert_mirrors(&replica, &state, "first refresh through the replica");

    provider.replace(&person(1), "description", &["cascaded"]);
    provider.delete(&person(2));
    provider.add_person("cascade-add");
    caught_up();
    common::refresh_only(&through, &[], &state);
    assert_mirrors(&replica, &state, "incremental through the replica");

    let (child, lines) = common::watch(&through, &[], &state, "json");
    provider.replace(&person(3), "description", &["cascade persist"]);
    wait_line(&lines, "cascade persist");
    provider.rename(&person(4), "uid=cascade-renamed", None);
    wait_line(&lines, "cascade-renamed");
    caught_up();
    assert_eq!(interrupt(child).code(), Some(0), "a clean stop");
    assert_mirrors(&replica, &state, "persist through the replica");
    assert_mirrors(&provider, &state, "persist through the replica");
    std::fs::remove_dir_all(&state).ok();
}
