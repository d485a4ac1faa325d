//! The mirror's rules (RFC 4533 §3.3–3.4), one test each, on the in-memory and the log store.

use std::path::PathBuf;

use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, Scope, SyncEntry, SyncMode, SyncRequest,
    SyncState,
};
use syncrepl_state::{
    AttributeChange, Change, ChangeKind, Consumer, ConsumerError, Entries, Error, Mirror,
    OpenOptions, SearchSpec,
};

fn spec() -> SearchSpec {
    SearchSpec {
        base: "dc=example,dc=com".into(),
        scope: Scope::Subtree,
        filter: "(objectClass=*)".into(),
        attributes: vec![],
    }
}

fn uuid(n: u8) -> EntryUuid {
    EntryUuid([n; 16])
}

fn cookie(text: &str) -> Cookie {
    Cookie::from(text.as_bytes())
}

fn attrs(pairs: &[(&str, &[&str])]) -> AttributeList {
    AttributeList::build(
        pairs
            .iter()
            .map(|(n, vs)| (*n, vs.iter().map(|v| v.as_bytes()).collect::<Vec<_>>())),
    )
}

fn entry(state: SyncState, n: u8, dn: &str, list: AttributeList, c: Option<&str>) -> Event {
    Event::Entry(SyncEntry {
        state,
        entry_uuid: uuid(n),
        dn: dn.into(),
        attributes: list,
        cookie: c.map(cookie),
    })
}

fn add(n: u8, dn: &str, cn: &str) -> Event {
    entry(SyncState::Add, n, dn, attrs(&[("cn", &[cn])]), None)
}

fn present(n: u8) -> Event {
    entry(SyncState::Present, n, "", AttributeList::default(), None)
}

fn complete(phase: RefreshPhase, c: &str) -> Event {
    Event::RefreshComplete {
        phase,
        cookie: Some(cookie(c)),
        persist: false,
    }
}

/// Records every change as a line.
#[derive(Default)]
struct Log(Vec<String>);

impl Consumer for Log {
    fn on_change(&mut self, c: &Change) -> Result<(), ConsumerError> {
        let names: Vec<&str> = c.delta.iter().map(|c| c.name.as_str()).collect();
        let line = match (c.kind, &c.old_dn) {
            (ChangeKind::Add, _) => format!("{} add {}", c.seq, c.dn()),
            (ChangeKind::Delete, _) => format!("{} delete {}", c.seq, c.dn()),
            (ChangeKind::Modify, None) => {
                format!("{} modify {} {}", c.seq, c.dn(), names.join(","))
            }
            (ChangeKind::Modify, Some(old)) if names.is_empty() => {
                format!("{} rename {old} -> {}", c.seq, c.dn())
            }
            (ChangeKind::Modify, Some(old)) => {
                format!("{} rename {old} -> {} {}", c.seq, c.dn(), names.join(","))
            }
        };
        self.0.push(line);
        Ok(())
    }
    fn on_refresh_done(&mut self, entries: &Entries) -> Result<(), ConsumerError> {
        self.0.push(format!("refresh done {}", entries.len()));
        Ok(())
    }
}

fn request(c: Option<&str>, mode: SyncMode) -> SyncRequest {
    let mut r = SyncRequest::new("dc=example,dc=com", mode);
    r.cookie = c.map(cookie);
    r
}

fn sync(mirror: &mut Mirror, c: Option<&str>, events: Vec<Event>) -> Vec<String> {
    let mut log = Log::default();
    mirror
        .begin_refresh(&request(c, SyncMode::RefreshOnly))
        .expect("begin");
    for e in events {
        mirror.apply(e).expect("apply");
    }
    mirror.deliver(&mut log, true).expect("deliver");
    log.0
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-state-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The mirror's content as sorted lines, to compare states.
fn content(m: &Mirror) -> Vec<String> {
    let mut out: Vec<String> = m
        .entries()
        .iter()
        .map(|(u, e)| format!("{u} {} {:?}", e.dn, e.attributes))
        .collect();
    out.sort();
    out
}

fn initial(m: &mut Mirror) {
    let log = sync(
        m,
        None,
        vec![
            add(1, "uid=a,dc=example,dc=com", "A"),
            add(2, "uid=b,dc=example,dc=com", "B"),
            add(3, "uid=c,dc=example,dc=com", "C"),
            complete(RefreshPhase::Delete, "c1"),
        ],
    );
    assert_eq!(log.len(), 4, "{log:?}");
}

#[test]
fn present_phase_deletes_what_was_not_presented() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            present(1),
            add(2, "uid=b,dc=example,dc=com", "B2"),
            complete(RefreshPhase::Present, "c2"),
        ],
    );
    assert_eq!(
        log,
        [
            "4 modify uid=b,dc=example,dc=com cn",
            "5 delete uid=c,dc=example,dc=com",
            "refresh done 2"
        ]
    );
    assert_eq!(m.cookie(), Some(&cookie("c2")));
}

#[test]
fn sync_id_sets_present_and_delete() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            Event::SyncIdSet {
                uuids: vec![uuid(1), uuid(2)],
                refresh_deletes: false,
                cookie: None,
            },
            Event::RefreshPhaseDone {
                phase: RefreshPhase::Present,
                cookie: None,
            },
            Event::SyncIdSet {
                uuids: vec![uuid(1)],
                refresh_deletes: true,
                cookie: None,
            },
            complete(RefreshPhase::Delete, "c2"),
        ],
    );
    assert_eq!(
        log,
        [
            "4 delete uid=c,dc=example,dc=com",
            "5 delete uid=a,dc=example,dc=com",
            "refresh done 1"
        ]
    );
}

#[test]
fn delete_phase_keeps_unsent_entries() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            entry(
                SyncState::Delete,
                3,
                "uid=c,dc=example,dc=com",
                AttributeList::default(),
                None,
            ),
            complete(RefreshPhase::Delete, "c2"),
        ],
    );
    assert_eq!(log, ["4 delete uid=c,dc=example,dc=com", "refresh done 2"]);
}

#[test]
fn explicit_deletes_then_refresh_deletes_false_keeps_live_entries() {
    // 389 Directory Server's incremental refresh: deletions first, then syncDone without
    // refreshDeletes and no present messages. Live entries must stay.
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            Event::SyncIdSet {
                uuids: vec![uuid(3)],
                refresh_deletes: true,
                cookie: None,
            },
            add(4, "uid=d,dc=example,dc=com", "D"),
            complete(RefreshPhase::Present, "c2"),
        ],
    );
    assert_eq!(
        log,
        [
            "4 delete uid=c,dc=example,dc=com",
            "5 add uid=d,dc=example,dc=com",
            "refresh done 3"
        ]
    );
}

#[test]
fn a_389_incremental_refresh_without_deletes_keeps_live_entries() {
    // 389 Directory Server sends only the changed entries, then syncDone without refreshDeletes
    // and no present messages. Its cookies have their own form; with it, live entries stay.
    let ds389 = "localhost:389#cn=reader,dc=example,dc=com:dc=example,dc=com:(uid=*)#205";
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some(ds389),
        vec![
            add(2, "uid=b,dc=example,dc=com", "B2"),
            complete(RefreshPhase::Present, "localhost:389#x:y:z#206"),
        ],
    );
    assert_eq!(
        log,
        ["4 modify uid=b,dc=example,dc=com cn", "refresh done 3"]
    );
    // The same stream under another server's cookie is a present phase taken at its word.
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("rid=000,csn=20261123000000.000000Z#000000#000#000000"),
        vec![
            add(2, "uid=b,dc=example,dc=com", "B2"),
            complete(RefreshPhase::Present, "c2"),
        ],
    );
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(m.entries().len(), 1);
}

#[test]
fn full_refresh_without_cookie_deletes_stale_entries_whatever_the_phase() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        None,
        vec![
            add(1, "uid=a,dc=example,dc=com", "A"),
            complete(RefreshPhase::Delete, "c2"),
        ],
    );
    assert_eq!(
        log.iter().filter(|l| l.contains("delete")).count(),
        2,
        "{log:?}"
    );
}

#[test]
fn identical_modify_emits_nothing_and_order_does_not_matter() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let same = entry(
        SyncState::Modify,
        1,
        "uid=a,dc=example,dc=com",
        attrs(&[("CN", &["A"])]),
        None,
    );
    assert!(sync(&mut m, Some("c1"), vec![same]).is_empty());
    let mut m2 = Mirror::in_memory(spec());
    sync(
        &mut m2,
        None,
        vec![
            entry(
                SyncState::Add,
                1,
                "cn=x",
                attrs(&[("a", &["1", "2"]), ("b", &["3"])]),
                None,
            ),
            complete(RefreshPhase::Delete, "c1"),
        ],
    );
    let reordered = entry(
        SyncState::Modify,
        1,
        "cn=x",
        attrs(&[("b", &["3"]), ("A", &["2", "1"])]),
        None,
    );
    assert!(sync(&mut m2, Some("c1"), vec![reordered]).is_empty());
}

#[test]
fn rename_keeps_the_uuid_and_modify_only_when_attributes_change() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            entry(
                SyncState::Modify,
                1,
                "uid=a2,dc=example,dc=com",
                attrs(&[("cn", &["A"])]),
                None,
            ),
            entry(
                SyncState::Modify,
                2,
                "UID=B,DC=Example,DC=com",
                attrs(&[("cn", &["B"]), ("sn", &["x"])]),
                None,
            ),
        ],
    );
    assert_eq!(
        log,
        [
            "4 rename uid=a,dc=example,dc=com -> uid=a2,dc=example,dc=com",
            "5 rename uid=b,dc=example,dc=com -> UID=B,DC=Example,DC=com sn",
        ]
    );
    assert!(m.entries().get_by_dn("uid=a,dc=example,dc=com").is_none());
    assert_eq!(
        m.entries()
            .get_by_dn("uid=a2, dc=EXAMPLE,dc=com")
            .map(|(u, _)| u),
        Some(uuid(1))
    );
    assert_eq!(
        m.entries()
            .get_by_dn("uid=b,dc=example,dc=com")
            .map(|(u, _)| u),
        Some(uuid(2))
    );
}

#[test]
fn a_new_uuid_on_a_taken_dn_deletes_the_old_entry_first() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let log = sync(
        &mut m,
        Some("c1"),
        vec![add(9, "UID=A,dc=example,dc=com", "A again")],
    );
    assert_eq!(
        log,
        [
            "4 delete uid=a,dc=example,dc=com",
            "5 add UID=A,dc=example,dc=com"
        ]
    );
    assert!(m.entries().get(&uuid(1)).is_none());
}

#[test]
fn modify_events_carry_the_difference() {
    let mut m = Mirror::in_memory(spec());
    sync(
        &mut m,
        None,
        vec![entry(
            SyncState::Add,
            1,
            "cn=x",
            attrs(&[("mail", &["a", "b"]), ("sn", &["s"])]),
            None,
        )],
    );
    let mut d = Vec::<AttributeChange>::new();
    m.apply(entry(
        SyncState::Modify,
        1,
        "cn=x",
        attrs(&[("mail", &["b", "c"])]),
        None,
    ))
    .expect("apply");
    m.deliver(
        &mut syncrepl_state::FnConsumer(|c: &Change| {
            d.extend_from_slice(&c.delta);
            Ok::<(), std::io::Error>(())
        }),
        true,
    )
    .expect("deliver");
    assert_eq!(
        d,
        [
            AttributeChange {
                name: "mail".into(),
                added: vec![b"c".to_vec()],
                removed: vec![b"a".to_vec()]
            },
            AttributeChange {
                name: "sn".into(),
                added: vec![],
                removed: vec![b"s".to_vec()]
            },
        ]
    );
}

#[test]
fn refresh_required_keeps_entries_and_reload_emits_only_differences() {
    let dir = temp_dir("reload");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    m.refresh_required().expect("refresh required");
    assert_eq!(m.cookie(), None);
    assert!(m.needs_reload());
    assert_eq!(m.entries().len(), 3);
    drop(m);
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
    assert!(m.needs_reload(), "the reload survives a restart");
    let log = sync(
        &mut m,
        None,
        vec![
            add(1, "uid=a,dc=example,dc=com", "A"),
            add(2, "uid=b,dc=example,dc=com", "B changed"),
            complete(RefreshPhase::Delete, "c9"),
        ],
    );
    assert_eq!(
        log,
        [
            "4 modify uid=b,dc=example,dc=com cn",
            "5 delete uid=c,dc=example,dc=com",
            "refresh done 2"
        ]
    );
    assert!(!m.needs_reload());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn persist_commits_with_each_cookie_and_interruptions_keep_what_was_delivered() {
    let dir = temp_dir("persist");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    m.begin_refresh(&request(Some("c1"), SyncMode::RefreshAndPersist))
        .expect("begin");
    let mut log = Log::default();
    m.apply(Event::RefreshComplete {
        phase: RefreshPhase::Delete,
        cookie: Some(cookie("c2")),
        persist: true,
    })
    .expect("done");
    m.deliver(&mut log, true).expect("deliver");
    assert_eq!(m.cookie(), Some(&cookie("c2")));
    m.apply(entry(
        SyncState::Add,
        5,
        "uid=e,dc=example,dc=com",
        attrs(&[("cn", &["E"])]),
        Some("c3"),
    ))
    .expect("add");
    m.deliver(&mut log, true).expect("deliver");
    m.apply(entry(
        SyncState::Delete,
        1,
        "uid=a,dc=example,dc=com",
        AttributeList::default(),
        None,
    ))
    .expect("delete");
    m.deliver(&mut log, true).expect("deliver");
    assert_eq!(
        log.0,
        [
            "refresh done 3",
            "4 add uid=e,dc=example,dc=com",
            "5 delete uid=a,dc=example,dc=com"
        ]
    );
    assert_eq!(m.entries().len(), 3);
    m.interrupted().expect("interrupted");
    assert_eq!(
        m.entries().len(),
        3,
        "what the handler was told stays: exactly-once within a run"
    );
    assert_eq!(m.cookie(), Some(&cookie("c3")));
    assert_eq!(m.next_seq(), 6);
    drop(m);
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
    assert_eq!(
        m.entries().len(),
        3,
        "the interruption committed the delete"
    );
    assert_eq!(m.cookie(), Some(&cookie("c3")));
    assert_eq!(
        m.next_seq(),
        6,
        "sequence numbers survive restarts, without a gap after a clean close"
    );
    // The retried sync repeats the delete: nothing is reported twice.
    let log = sync(
        &mut m,
        Some("c3"),
        vec![
            Event::SyncIdSet {
                uuids: vec![uuid(1)],
                refresh_deletes: true,
                cookie: None,
            },
            complete(RefreshPhase::Delete, "c4"),
        ],
    );
    assert_eq!(log, ["refresh done 3"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_interrupted_refresh_is_confirmed_by_the_next_one() {
    for on_disk in [false, true] {
        let dir = temp_dir("confirm");
        let mut m = if on_disk {
            Mirror::open(&dir, spec(), OpenOptions::default()).expect("open")
        } else {
            Mirror::in_memory(spec())
        };
        initial(&mut m);
        // An incremental refresh adds d and e, modifies b, and is cut off.
        let log = sync(
            &mut m,
            Some("c1"),
            vec![
                add(4, "uid=d,dc=example,dc=com", "D"),
                add(5, "uid=e,dc=example,dc=com", "E"),
                add(2, "uid=b,dc=example,dc=com", "B2"),
            ],
        );
        assert_eq!(log.len(), 3);
        m.interrupted().expect("interrupted");
        assert_eq!(m.cookie(), Some(&cookie("c1")), "the old cookie stays");
        assert_eq!(m.unconfirmed(), 3);
        if on_disk {
            drop(m);
            m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
            assert_eq!(m.entries().len(), 5);
            assert_eq!(m.unconfirmed(), 3, "unconfirmed entries survive a restart");
        }
        // Meanwhile e was deleted on the server. A delete phase from c1 does not name e (it did
        // not exist at c1) but must send d and b, which changed since c1.
        let log = sync(
            &mut m,
            Some("c1"),
            vec![
                add(4, "uid=d,dc=example,dc=com", "D"),
                add(2, "uid=b,dc=example,dc=com", "B2"),
                complete(RefreshPhase::Delete, "c2"),
            ],
        );
        assert_eq!(
            log,
            ["7 delete uid=e,dc=example,dc=com", "refresh done 4"],
            "on disk: {on_disk}"
        );
        assert_eq!(m.unconfirmed(), 0);
        assert!(m.get(&uuid(5)).is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn refresh_required_keeps_what_was_applied_and_reloads() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    sync(
        &mut m,
        Some("c1"),
        vec![add(4, "uid=d,dc=example,dc=com", "D")],
    );
    m.refresh_required().expect("refresh required");
    assert_eq!(m.entries().len(), 4);
    assert!(m.needs_reload() && m.cookie().is_none());
    let log = sync(
        &mut m,
        None,
        vec![
            add(1, "uid=a,dc=example,dc=com", "A"),
            add(2, "uid=b,dc=example,dc=com", "B"),
            add(3, "uid=c,dc=example,dc=com", "C"),
            complete(RefreshPhase::Delete, "c9"),
        ],
    );
    assert_eq!(log, ["5 delete uid=d,dc=example,dc=com", "refresh done 3"]);
}

#[test]
fn state_directory_rules() {
    let dir = temp_dir("dir");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    let err = Mirror::open(&dir, spec(), OpenOptions::default()).expect_err("locked");
    assert!(
        matches!(
            err,
            Error::Locked {
                holder: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("locked by another process"));
    drop(m);

    let mut other = spec();
    other.filter = "(uid=*)".into();
    let err = Mirror::open(&dir, other.clone(), OpenOptions::default()).expect_err("other search");
    assert!(matches!(err, Error::SearchMismatch { .. }), "{err}");
    let reset = Mirror::open(
        &dir,
        other.clone(),
        OpenOptions {
            reset: true,
            ..OpenOptions::default()
        },
    )
    .expect("reset");
    assert_eq!(reset.entries().len(), 0);
    drop(reset);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("state.log"))
        .expect("log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let log_path = dir.join("state.log");
    let mut bytes = std::fs::read(&log_path).expect("read");
    bytes[8] = 7;
    std::fs::write(&log_path, &bytes).expect("write");
    let err = Mirror::open(&dir, other, OpenOptions::default()).expect_err("version");
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 7, .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&log_path).expect("read"),
        bytes,
        "nothing was wiped"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_credential_is_written() {
    let dir = temp_dir("secret");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    m.set_server("ldap://127.0.0.1:389");
    initial(&mut m);
    drop(m);
    let bytes = std::fs::read(dir.join("state.log")).expect("read");
    assert!(!bytes.windows(8).any(|w| w == b"password"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compaction_keeps_the_committed_state() {
    let dir = temp_dir("compact");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    for round in 0..50 {
        let cn = format!("A{round}");
        sync(
            &mut m,
            Some("c1"),
            vec![
                add(1, "uid=a,dc=example,dc=com", &cn),
                complete(RefreshPhase::Delete, "c1"),
            ],
        );
    }
    let before = content(&m);
    let size = std::fs::metadata(dir.join("state.log")).expect("log").len();
    m.compact().expect("compact");
    let after = std::fs::metadata(dir.join("state.log")).expect("log").len();
    assert!(after < size, "{after} < {size}");
    drop(m);
    let m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
    assert_eq!(content(&m), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn group_commit_reports_when_its_fsync_is_due() {
    let dir = temp_dir("group");
    let options = OpenOptions {
        fsync: syncrepl_state::FsyncPolicy::Group {
            max_delay: std::time::Duration::from_secs(3600),
            max_bytes: 1 << 30,
        },
        ..OpenOptions::default()
    };
    let mut m = Mirror::open(&dir, spec(), options).expect("open");
    assert_eq!(m.sync_due(), None);
    initial(&mut m);
    let due = m.sync_due().expect("an fsync is pending");
    assert!(due > std::time::Instant::now());
    m.sync().expect("sync");
    assert_eq!(m.sync_due(), None);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_long_refresh_commits_in_batches_that_a_crash_keeps() {
    let dir = temp_dir("batches");
    let options = || OpenOptions {
        batch_bytes: 1,
        ..OpenOptions::default()
    };
    let mut m = Mirror::open(&dir, spec(), options()).expect("open");
    initial(&mut m);
    // Every change of this refresh is a batch of its own; then the process dies (no interrupted,
    // no clean close of the refresh).
    sync(
        &mut m,
        Some("c1"),
        vec![
            add(4, "uid=d,dc=example,dc=com", "D"),
            add(5, "uid=e,dc=example,dc=com", "E"),
        ],
    );
    drop(m);
    let mut m = Mirror::open(&dir, spec(), options()).expect("reopen");
    assert_eq!(m.entries().len(), 5, "the batches survived");
    assert_eq!(
        m.cookie(),
        Some(&cookie("c1")),
        "with the cookie of the start"
    );
    assert_eq!(m.unconfirmed(), 2);
    // Compaction keeps them unconfirmed.
    m.compact().expect("compact");
    drop(m);
    let mut m = Mirror::open(&dir, spec(), options()).expect("reopen");
    assert_eq!(m.unconfirmed(), 2);
    // d was deleted meanwhile; the retried refresh (present phase) confirms e only.
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            present(1),
            present(2),
            present(3),
            add(5, "uid=e,dc=example,dc=com", "E"),
            complete(RefreshPhase::Present, "c2"),
        ],
    );
    assert_eq!(
        log,
        ["6 delete uid=d,dc=example,dc=com", "refresh done 4"],
        "e is not reported again"
    );
    assert_eq!(m.unconfirmed(), 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sequence_numbers_never_repeat_after_a_crash() {
    let dir = temp_dir("numbers");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    assert_eq!(m.next_seq(), 4);
    // A change applied but never committed, then a crash: simulated by taking the log as it is
    // on disk now, before anything else is written.
    m.begin_refresh(&request(Some("c1"), SyncMode::RefreshOnly))
        .expect("begin");
    m.apply(add(4, "uid=d,dc=example,dc=com", "D"))
        .expect("apply");
    let crashed = temp_dir("numbers-crashed");
    std::fs::create_dir_all(&crashed).expect("dir");
    std::fs::copy(dir.join("state.log"), crashed.join("state.log")).expect("copy");
    drop(m);
    let m = Mirror::open(&crashed, spec(), OpenOptions::default()).expect("reopen");
    assert_eq!(m.entries().len(), 3, "the uncommitted change is gone");
    assert!(
        m.next_seq() > 4,
        "number 4 was handed out before the crash: {}",
        m.next_seq()
    );
    let after = m.next_seq();
    drop(m);
    let m = Mirror::open(&crashed, spec(), OpenOptions::default()).expect("reopen again");
    assert_eq!(m.next_seq(), after, "the reservation was committed again");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&crashed).ok();
}

/// A state written by the previous format (version 2: records without sequence numbers) opens as
/// it was and is rewritten in the current format.
#[test]
fn a_format_2_state_is_read_and_rewritten() {
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    fn frame(log: &mut Vec<u8>, body: &[u8]) {
        log.extend_from_slice(&(body.len() as u32).to_le_bytes());
        log.extend_from_slice(body);
        log.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    }
    let s = spec();
    let mut log = b"SYNCREPL".to_vec();
    log.extend_from_slice(&2u32.to_le_bytes());
    log.extend_from_slice(&0u64.to_le_bytes());
    let mut search = vec![1u8, 2];
    put(&mut search, s.base.as_bytes());
    put(&mut search, s.filter.as_bytes());
    search.extend_from_slice(&0u32.to_le_bytes());
    frame(&mut log, &search);
    let mut upsert = vec![2u8];
    upsert.extend_from_slice(uuid(1).as_bytes());
    put(&mut upsert, b"uid=a,dc=example,dc=com");
    upsert.extend_from_slice(attrs(&[("cn", &["A"])]).as_ber());
    frame(&mut log, &upsert);
    let mut commit = vec![4u8];
    commit.extend_from_slice(&2u64.to_le_bytes());
    commit.extend_from_slice(&2u64.to_le_bytes());
    commit.push(2 | 4);
    put(&mut commit, b"c1");
    put(&mut commit, b"ldap://127.0.0.1:389");
    commit.extend_from_slice(&1_700_000_000u64.to_le_bytes());
    commit.extend_from_slice(&0u64.to_le_bytes());
    frame(&mut log, &commit);
    let dir = temp_dir("format2");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("state.log"), &log).expect("write");
    let mut m = Mirror::open(&dir, s.clone(), OpenOptions::default()).expect("open");
    assert_eq!(m.cookie(), Some(&cookie("c1")));
    assert_eq!(m.entries().len(), 1);
    assert_eq!(m.undelivered(), 0, "old records are no changes to hand out");
    let bytes = std::fs::read(dir.join("state.log")).expect("read");
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes(), "rewritten in format 3");
    let log = sync(
        &mut m,
        Some("c1"),
        vec![
            add(2, "uid=b,dc=example,dc=com", "B"),
            complete(RefreshPhase::Delete, "c2"),
        ],
    );
    assert_eq!(log, ["2 add uid=b,dc=example,dc=com", "refresh done 2"]);
    drop(m);
    let m = Mirror::open(&dir, s, OpenOptions::default()).expect("reopen");
    assert_eq!(m.entries().len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

/// slapd multi-provider: the persist stage's cookies carry one server's CSN each; the mirror keeps
/// the newest CSN of every serverID, never sends a sid back, and keeps the raw cookie for status.
#[test]
fn slapd_cookies_are_merged_per_server_id_and_survive_a_reopen() {
    const A1: &str = "20261201101010.000001Z#000000#001#000000";
    const A2: &str = "20261201101011.000000Z#000000#001#000000";
    const B1: &str = "20261201101009.000000Z#000000#002#000000";
    const B2: &str = "20261201101012.000000Z#000000#002#000000";
    let dir = temp_dir("slapd-cookies");
    let mut m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("open");
    initial(&mut m);
    m.begin_refresh(&request(None, SyncMode::RefreshAndPersist))
        .expect("begin");
    let mut log = Log::default();
    m.apply(Event::RefreshComplete {
        phase: RefreshPhase::Delete,
        cookie: Some(cookie(&format!("rid=000,sid=001,csn={A1};{B1}"))),
        persist: true,
    })
    .expect("done");
    m.deliver(&mut log, true).expect("deliver");
    assert_eq!(m.cookie(), Some(&cookie(&format!("rid=000,csn={A1};{B1}"))));
    let changes = [
        (5, "uid=e", format!("rid=000,sid=001,csn={B2}")),
        (6, "uid=f", format!("rid=000,sid=001,csn={A2}")),
        (7, "uid=g", format!("rid=000,sid=001,csn={B1}")),
    ];
    for (n, uid, c) in &changes {
        m.apply(entry(
            SyncState::Add,
            *n,
            &format!("{uid},dc=example,dc=com"),
            attrs(&[("cn", &[uid])]),
            Some(c),
        ))
        .expect("add");
        m.deliver(&mut log, true).expect("deliver");
    }
    let merged = cookie(&format!("rid=000,csn={A2};{B2}"));
    assert_eq!(m.cookie(), Some(&merged));
    let status = m.status();
    assert_eq!(status.cookie.as_ref(), Some(&merged));
    assert_eq!(status.server_cookie, Some(cookie(&changes[2].2)));
    drop(m);
    let m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
    assert_eq!(m.cookie(), Some(&merged));
    assert_eq!(m.status().server_cookie, Some(cookie(&changes[2].2)));
    drop(m);
    std::fs::remove_dir_all(&dir).ok();
}

/// Any other server's cookie is kept as it came, even after one of slapd's.
#[test]
fn other_cookies_replace_what_was_held() {
    let mut m = Mirror::in_memory(spec());
    initial(&mut m);
    let ds = "127.0.0.1:389#cn=directory manager:dc=example,dc=com:(objectClass=*)#17";
    sync(&mut m, Some("c1"), vec![complete(RefreshPhase::Delete, ds)]);
    assert_eq!(m.cookie(), Some(&cookie(ds)));
    assert_eq!(m.status().server_cookie, Some(cookie(ds)));
}
