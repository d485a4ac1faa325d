//! Keeping a mirror in step with a real slapd: every kind of change, stops, server restarts and a
//! server that misbehaves on purpose.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncrepl::{changes, Change, ChangeKind, Consumer, ConsumerError, Item};
use syncrepl_mio::{ConnectOptions, Endpoint, LdapUrl, Outcome, StopHandle, SyncOptions};
use syncrepl_proto::{SyncMode, SyncRequest};
use syncrepl_state::{Mirror, SearchSpec};
use syncrepl_testkit::proxy::{Action, Proxy};
use syncrepl_testkit::slapd::{person_ldif, Options, Slapd, BASE};

const FILTER: &str = "(&(objectClass=inetOrgPerson)(!(employeeType=former)))";

fn options(url: &str, mode: SyncMode) -> SyncOptions {
    let endpoint: Endpoint = url.parse::<LdapUrl>().expect("URL").endpoint;
    let mut request = SyncRequest::new(BASE, mode);
    request.filter = FILTER.into();
    let mut options = SyncOptions::new(ConnectOptions::new(endpoint), request);
    options.retry = "0.2 50".parse().expect("schedule");
    options
}

/// Collects callbacks as lines, shared with the test thread.
#[derive(Clone, Default)]
struct Changes(Arc<Mutex<Vec<String>>>);

impl Changes {
    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.lines().iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn push(&self, line: String) {
        if let Ok(mut l) = self.0.lock() {
            l.push(line);
        }
    }
}

impl Consumer for Changes {
    fn on_change(&mut self, c: &Change) -> Result<(), ConsumerError> {
        let names: Vec<&str> = c.delta.iter().map(|c| c.name.as_str()).collect();
        self.push(match (c.kind, &c.old_dn) {
            (ChangeKind::Add, _) => format!("add {}", c.dn()),
            (ChangeKind::Delete, _) => format!("delete {}", c.dn()),
            (ChangeKind::Modify, None) => format!("modify {} {}", c.dn(), names.join(",")),
            (ChangeKind::Modify, Some(old)) => format!("rename {old} -> {}", c.dn()),
        });
        Ok(())
    }
    fn on_refresh_done(&mut self, entries: &syncrepl_state::Entries) -> Result<(), ConsumerError> {
        self.push(format!("refresh done {}", entries.len()));
        Ok(())
    }
}

/// What the server's search returns, as `dn -> sorted attribute lines`, to compare with a mirror.
fn server_view(slapd: &Slapd) -> BTreeMap<String, Vec<String>> {
    let text = slapd.search(BASE, FILTER, &[]);
    let mut out = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines: Vec<String> = block.lines().map(str::to_owned).collect();
        let dn = lines.remove(0);
        let dn = dn.trim_start_matches("dn: ").to_lowercase();
        lines.sort();
        out.insert(dn, lines);
    }
    out
}

fn mirror_view(mirror: &Mirror) -> BTreeMap<String, Vec<String>> {
    mirror
        .entries()
        .iter()
        .map(|(_, e)| {
            let mut lines = Vec::new();
            for a in &e.attributes {
                for v in a.values {
                    lines.push(match std::str::from_utf8(v) {
                        Ok(t) => format!("{}: {t}", a.name),
                        Err(_) => format!("{}:: <binary>", a.name),
                    });
                }
            }
            lines.sort();
            (e.dn.to_lowercase(), lines)
        })
        .collect()
}

fn spawn_sync(
    options: SyncOptions,
    dir: std::path::PathBuf,
    changes: Changes,
    stop: StopHandle,
) -> std::thread::JoinHandle<(Result<Outcome, syncrepl::Error>, Mirror)> {
    std::thread::spawn(move || {
        let spec = SearchSpec::from_request(&options.request);
        let mut mirror = Mirror::open(&dir, spec, Default::default()).expect("open the state");
        let mut consumer = changes;
        let result = syncrepl::run(&options, &mut mirror, &mut consumer, &stop);
        (result, mirror)
    })
}

fn temp_state(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-mio-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn persist_streams_every_kind_of_change_and_stops_cleanly() {
    let slapd = Slapd::start(Options::default());
    let dir = temp_state("persist");
    let changes = Changes::default();
    let stop = StopHandle::new();
    let thread = spawn_sync(
        options(&slapd.ldap_url(), SyncMode::RefreshAndPersist),
        dir.clone(),
        changes.clone(),
        stop.clone(),
    );
    changes.wait_for("refresh done 50");
    slapd.modify(&format!("dn: uid=new,ou=people,{BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: new\ncn: New\nsn: Person\n"));
    changes.wait_for("add uid=new");
    slapd.modify(&format!(
        "dn: uid=new,ou=people,{BASE}\nchangetype: modify\nreplace: cn\ncn: Renewed\n"
    ));
    changes.wait_for("modify uid=new,ou=people,dc=example,dc=com cn");
    slapd.modify(&format!(
        "dn: uid=new,ou=people,{BASE}\nchangetype: modrdn\nnewrdn: uid=newer\ndeleteoldrdn: 1\n"
    ));
    changes.wait_for("rename uid=new,ou=people,dc=example,dc=com -> uid=newer");
    slapd.modify(&format!("dn: uid=user00001,ou=people,{BASE}\nchangetype: modify\nadd: employeeType\nemployeeType: former\n"));
    changes.wait_for("delete uid=user00001");
    slapd.modify(&format!(
        "dn: uid=user00002,ou=people,{BASE}\nchangetype: delete\n"
    ));
    changes.wait_for("delete uid=user00002");
    stop.stop();
    let (result, mirror) = thread.join().expect("sync thread");
    assert_eq!(result.expect("clean stop"), Outcome::Stopped);
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    let committed_cookie = mirror.cookie().cloned();
    assert!(committed_cookie.is_some());
    drop(mirror);
    let reopened = Mirror::open(
        &dir,
        SearchSpec::from_request(&options(&slapd.ldap_url(), SyncMode::RefreshAndPersist).request),
        Default::default(),
    )
    .expect("reopen");
    assert_eq!(
        reopened.cookie().cloned(),
        committed_cookie,
        "the cookie was committed"
    );
    assert_eq!(mirror_view(&reopened), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn refresh_only_resumes_from_the_cookie() {
    let slapd = Slapd::start(Options::default());
    let dir = temp_state("refresh");
    let opts = options(&slapd.ldap_url(), SyncMode::RefreshOnly);
    let (result, mirror) = spawn_sync(
        opts.clone(),
        dir.clone(),
        Changes::default(),
        StopHandle::new(),
    )
    .join()
    .expect("thread");
    assert_eq!(result.expect("refresh"), Outcome::RefreshDone);
    assert_eq!(mirror.entries().len(), 50);
    drop(mirror);
    slapd.modify(&format!(
        "dn: uid=user00003,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Changed\n"
    ));
    slapd.modify(&format!(
        "dn: uid=user00004,ou=people,{BASE}\nchangetype: delete\n"
    ));
    slapd.modify(&person_ldif(900).replace(
        "objectClass: inetOrgPerson",
        "changetype: add\nobjectClass: inetOrgPerson",
    ));
    let changes = Changes::default();
    let (result, mirror) = spawn_sync(opts, dir.clone(), changes.clone(), StopHandle::new())
        .join()
        .expect("thread");
    assert_eq!(result.expect("refresh"), Outcome::RefreshDone);
    let lines = changes.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("modify uid=user00003")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("delete uid=user00004")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("add uid=user00900")),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 4, "only the differences: {lines:?}");
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn stop_during_refresh_keeps_the_last_committed_state() {
    let slapd = Slapd::start(Options {
        people: 3000,
        ..Options::default()
    });
    let dir = temp_state("stop-refresh");
    let stop = StopHandle::new();
    // The proxy slows the refresh down so the stop lands in the middle of it.
    let proxy = Proxy::start(
        slapd.addr(),
        Box::new(|_, index, _| {
            if index > 100 && index % 100 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            Action::Pass
        }),
    );
    let changes = Changes::default();
    let thread = spawn_sync(
        options(
            &format!("ldap://{}", proxy.addr()),
            SyncMode::RefreshAndPersist,
        ),
        dir.clone(),
        changes.clone(),
        stop.clone(),
    );
    changes.wait_for("add uid=user00500");
    stop.stop();
    let (result, mirror) = thread.join().expect("thread");
    assert_eq!(result.expect("stopped"), Outcome::Stopped);
    assert!(
        mirror.cookie().is_none(),
        "no refresh completed, so no cookie was committed"
    );
    assert!(mirror.entries().len() < 3000, "the stop landed mid-refresh");
    let spec = SearchSpec::from_request(&options(&slapd.ldap_url(), SyncMode::RefreshOnly).request);
    drop(mirror);
    let reopened = Mirror::open(&dir, spec, Default::default()).expect("reopen after the stop");
    let server = server_view(&slapd);
    for (dn, attributes) in mirror_view(&reopened) {
        assert_eq!(
            server.get(&dn),
            Some(&attributes),
            "{dn} is kept as the server has it"
        );
    }
    assert!(reopened.cookie().is_none());
    drop(reopened);
    let (result, mirror) = spawn_sync(
        options(&slapd.ldap_url(), SyncMode::RefreshOnly),
        dir.clone(),
        Changes::default(),
        StopHandle::new(),
    )
    .join()
    .expect("thread");
    assert_eq!(result.expect("refresh"), Outcome::RefreshDone);
    assert_eq!(mirror_view(&mirror), server, "the next run converges");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn slapd_killed_and_restarted_mid_persist_converges() {
    let mut slapd = Slapd::start(Options::default());
    let dir = temp_state("restart");
    let changes = Changes::default();
    let stop = StopHandle::new();
    let thread = spawn_sync(
        options(&slapd.ldap_url(), SyncMode::RefreshAndPersist),
        dir.clone(),
        changes.clone(),
        stop.clone(),
    );
    changes.wait_for("refresh done 50");
    slapd.kill9();
    std::thread::sleep(Duration::from_millis(300));
    slapd.restart();
    slapd.modify(&format!(
        "dn: uid=user00005,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: AfterRestart\n"
    ));
    slapd.modify(&format!(
        "dn: uid=user00006,ou=people,{BASE}\nchangetype: delete\n"
    ));
    changes.wait_for("modify uid=user00005");
    changes.wait_for("delete uid=user00006");
    stop.stop();
    let (result, mirror) = thread.join().expect("thread");
    assert_eq!(result.expect("stopped"), Outcome::Stopped);
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn connection_cut_and_notice_of_disconnection_are_retried() {
    let slapd = Slapd::start(Options {
        people: 300,
        ..Options::default()
    });
    let dir = temp_state("cut");
    // First connection: cut in the middle of the refresh. Second: a Notice of Disconnection
    // injected before the 10th message. Third: clean.
    let notice = vec![
        0x30, 0x24, 0x02, 0x01, 0x00, 0x78, 0x1f, 0x0a, 0x01, 0x34, 0x04, 0x00, 0x04, 0x00, 0x8a,
        0x16, b'1', b'.', b'3', b'.', b'6', b'.', b'1', b'.', b'4', b'.', b'1', b'.', b'1', b'4',
        b'6', b'6', b'.', b'2', b'0', b'0', b'3', b'6',
    ];
    let proxy = Proxy::start(
        slapd.addr(),
        Box::new(move |conn, index, _| match (conn, index) {
            (0, 150) => Action::Cut,
            (1, 10) => Action::InjectBefore(notice.clone()),
            _ => Action::Pass,
        }),
    );
    let (result, mirror) = spawn_sync(
        options(&format!("ldap://{}", proxy.addr()), SyncMode::RefreshOnly),
        dir.clone(),
        Changes::default(),
        StopHandle::new(),
    )
    .join()
    .expect("thread");
    assert_eq!(result.expect("converged"), Outcome::RefreshDone);
    assert!(
        proxy.connections() >= 3,
        "{} connections",
        proxy.connections()
    );
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn changes_can_be_pulled_as_an_iterator() {
    let slapd = Slapd::start(Options::default());
    let dir = temp_state("pull");
    let opts = options(&slapd.ldap_url(), SyncMode::RefreshAndPersist);
    let mirror = Mirror::open(
        &dir,
        SearchSpec::from_request(&opts.request),
        Default::default(),
    )
    .expect("open");
    let mut stream = changes(opts, mirror);
    let mut adds = 0;
    for item in stream.by_ref() {
        match item {
            Item::Change(c) if c.kind == ChangeKind::Add => adds += 1,
            Item::RefreshDone { entries, .. } => {
                assert_eq!(entries, 50);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(adds, 50);
    slapd.modify(&format!(
        "dn: uid=user00007,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Pulled\n"
    ));
    let modified = stream.by_ref().find_map(|item| match item {
        Item::Change(c) if c.kind == ChangeKind::Modify => Some((c.entry.dn, c.delta)),
        _ => None,
    });
    let (dn, changes) = modified.expect("the modify arrives");
    assert_eq!(dn, format!("uid=user00007,ou=people,{BASE}"));
    assert_eq!(changes[0].added, vec![b"Pulled".to_vec()]);
    let (outcome, mirror) = stream.finish().expect("finish");
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[derive(Debug, thiserror::Error)]
#[error("the database is down")]
struct DatabaseDown;

#[test]
fn a_failing_consumer_stops_the_run_and_the_next_starts_at_its_change() {
    let slapd = Slapd::start(Options::default());
    let dir = temp_state("failing");
    let opts = options(&slapd.ldap_url(), SyncMode::RefreshOnly);
    let spec = SearchSpec::from_request(&opts.request);
    let mut taken: Vec<Change> = Vec::new();
    // Fails on its 20th change, then (in the same process, same mirror) on its 30th.
    let mut mirror = Mirror::open(&dir, spec.clone(), Default::default()).expect("open");
    for fail_at in [19, 29] {
        let mut consumer = syncrepl::FnConsumer(|c: &Change| {
            if taken.len() == fail_at {
                return Err(DatabaseDown);
            }
            taken.push(c.clone());
            Ok(())
        });
        let err = syncrepl::run(&opts, &mut mirror, &mut consumer, &StopHandle::new())
            .expect_err("the consumer fails");
        let syncrepl::Error::Consumer {
            seq: Some(seq),
            source,
        } = err
        else {
            panic!("not a consumer error: {err}");
        };
        assert!(source.is::<DatabaseDown>(), "{source}");
        assert_eq!(
            seq,
            taken[fail_at - 1].seq + 1,
            "it failed on the next change"
        );
        assert!(mirror.cookie().is_none(), "the refresh was not committed");
        assert_eq!(mirror.acked(), taken[fail_at - 1].seq);
    }
    // A crash now: the next process starts at the change that failed, with the same number.
    drop(mirror);
    let failed_seq = taken[28].seq + 1;
    let mut mirror = Mirror::open(&dir, spec.clone(), Default::default()).expect("reopen");
    assert_eq!(mirror.undelivered(), 50 - 29);
    let mut rest: Vec<Change> = Vec::new();
    let mut consumer = syncrepl::FnConsumer(|c: &Change| {
        rest.push(c.clone());
        Ok::<(), DatabaseDown>(())
    });
    let outcome =
        syncrepl::run(&opts, &mut mirror, &mut consumer, &StopHandle::new()).expect("refresh");
    assert_eq!(outcome, Outcome::RefreshDone);
    assert_eq!(rest.first().map(|c| c.seq), Some(failed_seq));
    assert_eq!(
        rest.len(),
        50 - 29,
        "then every change not taken, and nothing else"
    );
    let mut seqs: Vec<u64> = taken.iter().chain(&rest).map(|c| c.seq).collect();
    seqs.dedup();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    assert!(mirror.cookie().is_some());
    assert_eq!(mirror_view(&mirror), server_view(&slapd));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_dropped_iterator_commits_only_what_it_asked_past() {
    let slapd = Slapd::start(Options::default());
    let dir = temp_state("dropped");
    let opts = options(&slapd.ldap_url(), SyncMode::RefreshAndPersist);
    let spec = SearchSpec::from_request(&opts.request);
    let mirror = Mirror::open(&dir, spec.clone(), Default::default()).expect("open");
    let mut stream = changes(opts.clone(), mirror);
    let mut first = Vec::new();
    for item in stream.by_ref() {
        if let Item::Change(c) = item {
            first.push(c);
            if first.len() == 10 {
                break;
            }
        }
    }
    // The 10th change was returned, but the next was never asked for: it is not acknowledged.
    drop(stream);
    let mirror = Mirror::open(&dir, spec, Default::default()).expect("reopen");
    assert!(mirror.cookie().is_none());
    assert_eq!(mirror.acked(), first[8].seq);
    let mut stream = changes(opts, mirror);
    let again = stream.by_ref().find_map(|item| match item {
        Item::Change(c) => Some(c),
        _ => None,
    });
    assert_eq!(
        again.as_ref(),
        Some(&first[9]),
        "handed out again, the same"
    );
    let mut count = 1;
    for item in stream.by_ref() {
        match item {
            Item::Change(_) => count += 1,
            Item::RefreshDone { entries, .. } => {
                assert_eq!(entries, 50);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(count, 41);
    stream.ack();
    let (outcome, mirror) = stream.finish().expect("finish");
    assert_eq!(outcome, Outcome::Stopped);
    assert!(mirror.cookie().is_some(), "the refresh was committed");
    std::fs::remove_dir_all(&dir).ok();
}
