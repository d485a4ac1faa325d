//! Crash safety: a log cut at any byte, torn writes, failed fsyncs and a full disk all reopen as a
//! committed state.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, Scope, SyncEntry, SyncMode, SyncRequest,
    SyncState,
};
use syncrepl_state::{
    Change, Consumer, ConsumerError, DeliveryError, Error, LogFile, LogIo, Mirror, OpenOptions,
    SearchSpec, StdIo,
};

fn spec() -> SearchSpec {
    SearchSpec {
        base: "dc=example,dc=com".into(),
        scope: Scope::Subtree,
        filter: "(objectClass=*)".into(),
        attributes: vec![],
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-crash-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn change(n: u8, round: u32, cookie: &str) -> Event {
    let cn = format!("person {n} round {round}");
    Event::Entry(SyncEntry {
        state: SyncState::Modify,
        entry_uuid: EntryUuid([n; 16]),
        dn: format!("uid=p{n},dc=example,dc=com"),
        attributes: AttributeList::build([
            ("cn", vec![cn.as_bytes()]),
            ("description", vec!["x".repeat(40).as_bytes()]),
        ]),
        cookie: Some(Cookie::from(cookie.as_bytes())),
    })
}

fn content(m: &Mirror) -> Vec<String> {
    let mut out: Vec<String> = m
        .entries()
        .iter()
        .map(|(u, e)| format!("{u} {} {:?}", e.dn, e.attributes))
        .collect();
    out.sort();
    out.push(format!("cookie {:?}", m.cookie()));
    out
}

/// Remembers every change handed out, with how long the log was at that moment.
struct Deliveries<'a> {
    log: &'a Path,
    seen: Vec<(u64, u64, Change)>,
}

impl Consumer for Deliveries<'_> {
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        let len = std::fs::metadata(self.log).map_or(0, |m| m.len());
        self.seen.push((change.seq, len, change.clone()));
        Ok(())
    }
}

/// Builds a state with a full refresh and then a few persist changes, each delivered at once;
/// returns the log's bytes, for each commit its end offset and the content it committed, and
/// every change handed out with the log's length at that moment.
type Built = (Vec<u8>, Vec<(u64, Vec<String>)>, Vec<(u64, u64, Change)>);

fn build(dir: &Path) -> Built {
    let mut m = Mirror::open(dir, spec(), OpenOptions::default()).expect("open");
    let log_path = dir.join("state.log");
    let mut seen = Deliveries {
        log: &log_path,
        seen: Vec::new(),
    };
    let mut commits = Vec::new();
    let log_len = || std::fs::metadata(dir.join("state.log")).map_or(0, |m| m.len());
    commits.push((log_len(), content(&m)));
    // Delivering commits twice: once to log the changes (keeping the cookie), once, after the
    // consumer took them, with the new cookie.
    let deliver = |m: &mut Mirror, seen: &mut Deliveries, commits: &mut Vec<(u64, Vec<String>)>| {
        let cookie_before = format!("cookie {:?}", m.cookie());
        let first = seen.seen.len();
        m.deliver(seen, true).expect("deliver");
        let mut logged = content(m);
        if let Some(last) = logged.last_mut() {
            *last = cookie_before;
        }
        let (_, stage_end, _) = seen.seen[first];
        commits.push((stage_end, logged));
        commits.push((log_len(), content(m)));
    };
    let mut request = SyncRequest::new("dc=example,dc=com", SyncMode::RefreshAndPersist);
    request.cookie = None;
    m.begin_refresh(&request).expect("begin");
    for n in 0..5 {
        let Event::Entry(mut e) = change(n, 0, "") else {
            unreachable!("change() makes entries")
        };
        e.cookie = None;
        e.state = SyncState::Add;
        m.apply(Event::Entry(e)).expect("add");
    }
    m.apply(Event::RefreshComplete {
        phase: RefreshPhase::Delete,
        cookie: Some(Cookie::from(b"c0".as_slice())),
        persist: true,
    })
    .expect("refresh done");
    deliver(&mut m, &mut seen, &mut commits);
    for round in 1..4u32 {
        for n in 0..5 {
            m.apply(change(n, round, &format!("c{round}-{n}")))
                .expect("persist change");
            deliver(&mut m, &mut seen, &mut commits);
        }
    }
    drop(m);
    let bytes = std::fs::read(dir.join("state.log")).expect("read log");
    (bytes, commits, seen.seen)
}

/// Collects what a reopened mirror hands out again.
#[derive(Default)]
struct Collect(Vec<Change>);

impl Consumer for Collect {
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        self.0.push(change.clone());
        Ok(())
    }
}

#[test]
fn cut_at_every_byte_reopens_as_the_last_commit() {
    let dir = temp_dir("build");
    let (bytes, commits, seen) = build(&dir);
    let last_batches = commits[commits.len() - 6].0 as usize;
    let scratch = temp_dir("cut");
    for cut in last_batches..=bytes.len() {
        std::fs::create_dir_all(&scratch).expect("dir");
        std::fs::write(scratch.join("state.log"), &bytes[..cut]).expect("write");
        let mut m = Mirror::open(&scratch, spec(), OpenOptions::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expected = commits
            .iter()
            .rev()
            .find(|(end, _)| *end as usize <= cut)
            .map(|(_, c)| c.clone())
            .expect("a commit before the cut");
        assert_eq!(content(&m), expected, "cut at {cut}");
        // No number handed out before the crash is reused by a new change, and every change
        // handed out and not acknowledged is handed out again, the same.
        let before: Vec<&(u64, u64, Change)> = seen
            .iter()
            .filter(|(_, len, _)| *len as usize <= cut)
            .collect();
        let delivered = before.iter().map(|(seq, _, _)| *seq).max().unwrap_or(0);
        assert!(
            m.next_seq() > delivered,
            "cut at {cut}: {} <= {delivered}",
            m.next_seq()
        );
        let len = std::fs::metadata(scratch.join("state.log"))
            .expect("log")
            .len();
        assert!(len as usize <= cut, "the torn tail was truncated");
        let acked = m.acked();
        let mut again = Collect::default();
        m.deliver(&mut again, false).expect("deliver again");
        for (seq, _, change) in before.iter().filter(|(seq, _, _)| *seq > acked) {
            let found = again.0.iter().find(|c| c.seq == *seq);
            assert_eq!(
                found,
                Some(change),
                "cut at {cut}: change {seq} handed out again"
            );
        }
        for change in &again.0 {
            if let Some((_, _, first)) = seen.iter().find(|(seq, _, _)| *seq == change.seq) {
                assert_eq!(
                    change, first,
                    "cut at {cut}: the same content under one number"
                );
            }
        }
        drop(m);
        std::fs::remove_dir_all(&scratch).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn damage_before_the_tail_is_an_error_unless_repaired() {
    let dir = temp_dir("damage");
    let (mut bytes, commits, _) = build(&dir);
    let offset = commits[3].0 as usize + 6;
    assert!(
        offset < commits[5].0 as usize,
        "inside the batch after commit 3"
    );
    bytes[offset] ^= 0xff;
    std::fs::write(dir.join("state.log"), &bytes).expect("write");
    let err = Mirror::open(&dir, spec(), OpenOptions::default()).expect_err("damaged");
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    assert_eq!(
        std::fs::read(dir.join("state.log")).expect("read"),
        bytes,
        "nothing lost"
    );
    let repaired = Mirror::open(
        &dir,
        spec(),
        OpenOptions {
            repair: true,
            ..OpenOptions::default()
        },
    )
    .expect("repair");
    assert_eq!(content(&repaired), commits[3].1);
    std::fs::remove_dir_all(&dir).ok();
}

/// Fault injection: after `budget` bytes a write is torn (half written, then an error); a failed
/// fsync when `fail_sync` is set; ENOSPC when `full` is set.
#[derive(Clone)]
struct Faulty {
    budget: Arc<AtomicU64>,
    fail_sync: bool,
    full: bool,
}

struct FaultyFile {
    inner: Box<dyn LogFile>,
    faults: Faulty,
}

impl LogFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.faults.full {
            return Err(io::Error::from_raw_os_error(28));
        }
        let left = self.faults.budget.load(Ordering::SeqCst);
        if (buf.len() as u64) > left {
            self.inner
                .write_all(&buf[..(left as usize).min(buf.len() / 2)])?;
            self.faults.budget.store(0, Ordering::SeqCst);
            return Err(io::Error::other("torn write"));
        }
        self.faults
            .budget
            .fetch_sub(buf.len() as u64, Ordering::SeqCst);
        self.inner.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.fail_sync {
            return Err(io::Error::other("fsync failed"));
        }
        self.inner.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        let inner = self.inner.sync_handle()?;
        Some(Box::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }
}

impl LogIo for Faulty {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        StdIo.read(path)
    }
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(FaultyFile {
            inner: StdIo.open_append(path)?,
            faults: self.clone(),
        }))
    }
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(FaultyFile {
            inner: StdIo.create(path)?,
            faults: self.clone(),
        }))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        StdIo.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        StdIo.sync_dir(dir)
    }
}

fn open_faulty(dir: &Path, faults: Faulty) -> Result<Mirror, Error> {
    Mirror::open(
        dir,
        spec(),
        OpenOptions {
            io: Box::new(faults),
            batch_bytes: 64 << 20,
            ..OpenOptions::default()
        },
    )
}

fn state_error(e: DeliveryError) -> Error {
    match e {
        DeliveryError::State(e) => e,
        other => panic!("not a state error: {other}"),
    }
}

#[test]
fn injected_faults_leave_a_committed_state() {
    let built = temp_dir("faults");
    let (bytes, commits, _) = build(&built);
    let committed = commits.last().map(|(_, c)| c.clone()).expect("commits");
    std::fs::remove_dir_all(&built).ok();

    for faults in [
        Faulty {
            budget: Arc::new(AtomicU64::new(30)),
            fail_sync: false,
            full: false,
        },
        Faulty {
            budget: Arc::new(AtomicU64::new(u64::MAX)),
            fail_sync: true,
            full: false,
        },
        Faulty {
            budget: Arc::new(AtomicU64::new(u64::MAX)),
            fail_sync: false,
            full: true,
        },
    ] {
        let dir = temp_dir("fault");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("state.log"), &bytes).expect("write");
        let mut m = open_faulty(&dir, faults).expect("open");
        let mut taken = Collect::default();
        // The fault surfaces when the change is applied (its number's reservation is written)
        // or when it is logged.
        let err = match m.apply(change(1, 99, "c99")) {
            Err(e) => e,
            Ok(()) => state_error(m.deliver(&mut taken, true).expect_err("the fault surfaces")),
        };
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(
            taken.0.is_empty(),
            "nothing handed out before it was logged"
        );
        assert!(matches!(
            m.apply(change(2, 99, "c100")),
            Err(Error::Poisoned)
        ));
        drop(m);
        let mut reopened = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
        let state = content(&reopened);
        if state != committed {
            // A failed fsync may still leave the written commit in the page cache: then the
            // change is logged, with the old cookie, and waits to be handed out.
            assert_eq!(state.last(), committed.last(), "the cookie did not move");
            assert_eq!(reopened.undelivered(), 1, "{state:?}");
            reopened.deliver(&mut taken, true).expect("deliver");
            assert_eq!(taken.0.len(), 1);
        }
        drop(reopened);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A large refresh writes its chunks on another thread: a torn write or a full disk there still
/// fails the mirror, and the state reopens as the last commit.
#[test]
fn faults_in_background_writes_surface() {
    for full in [false, true] {
        let dir = temp_dir("background");
        let (_, commits, _) = build(&dir);
        let committed = commits.last().map(|(_, c)| c.clone()).expect("commits");
        let faults = Faulty {
            budget: Arc::new(AtomicU64::new(if full { u64::MAX } else { 3 << 20 })),
            fail_sync: false,
            full: false,
        };
        let mut m = open_faulty(&dir, faults.clone()).expect("open");
        m.begin_refresh(&SyncRequest::new(
            "dc=example,dc=com",
            SyncMode::RefreshOnly,
        ))
        .expect("begin");
        let big = "y".repeat(2000);
        let mut failed = None;
        for i in 0..4000u32 {
            if full && i == 1000 {
                // The disk fills while chunks are being written.
                faults.budget.store(0, Ordering::SeqCst);
            }
            let mut uuid = [0u8; 16];
            uuid[..4].copy_from_slice(&i.to_be_bytes());
            uuid[4] = 0xee;
            let event = Event::Entry(SyncEntry {
                state: SyncState::Add,
                entry_uuid: EntryUuid(uuid),
                dn: format!("uid=big{i},dc=example,dc=com"),
                attributes: AttributeList::build([("description", vec![big.as_bytes()])]),
                cookie: None,
            });
            if let Err(e) = m.apply(event) {
                failed = Some(e);
                break;
            }
        }
        let failed = match failed {
            Some(e) => e,
            None => {
                m.apply(Event::RefreshComplete {
                    phase: RefreshPhase::Delete,
                    cookie: Some(Cookie::from(b"big".as_slice())),
                    persist: false,
                })
                .expect("applied in memory");
                state_error(
                    m.deliver(&mut (), true)
                        .expect_err("the fault surfaces by the commit"),
                )
            }
        };
        assert!(matches!(failed, Error::Io { .. }), "{failed}");
        drop(m);
        let reopened = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
        assert_eq!(content(&reopened), committed, "full disk: {full}");
        drop(reopened);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The state directory's creation, lock and reading go through the I/O trait too, so their
/// failures can be injected: each is a typed error and leaves the state as it was.
#[test]
fn failures_to_create_lock_or_read_the_directory_are_typed_errors() {
    struct Refusing {
        what: &'static str,
    }
    impl LogIo for Refusing {
        fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            if self.what == "read" {
                return Err(io::Error::from_raw_os_error(5));
            }
            StdIo.read(path)
        }
        fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
            StdIo.open_append(path)
        }
        fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
            StdIo.create(path)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            StdIo.rename(from, to)
        }
        fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
            StdIo.sync_dir(dir)
        }
        fn create_dir(&mut self, dir: &Path) -> io::Result<()> {
            if self.what == "mkdir" {
                return Err(io::Error::from_raw_os_error(13));
            }
            StdIo.create_dir(dir)
        }
        fn lock(&mut self, path: &Path) -> io::Result<syncrepl_state::Lock> {
            match self.what {
                "lock" => Ok(syncrepl_state::Lock::Busy(Some(4242))),
                "lock-io" => Err(io::Error::from_raw_os_error(37)),
                _ => StdIo.lock(path),
            }
        }
    }
    let dir = temp_dir("refusing");
    let (bytes, commits, _) = build(&dir);
    for what in ["mkdir", "lock", "lock-io", "read"] {
        let err = Mirror::open(
            &dir,
            spec(),
            OpenOptions {
                io: Box::new(Refusing { what }),
                ..OpenOptions::default()
            },
        )
        .expect_err(what);
        match what {
            "lock" => assert!(
                matches!(
                    err,
                    Error::Locked {
                        holder: Some(4242),
                        ..
                    }
                ),
                "{err}"
            ),
            _ => assert!(matches!(err, Error::Io { .. }), "{what}: {err}"),
        }
        assert_eq!(
            std::fs::read(dir.join("state.log")).expect("log"),
            bytes,
            "{what}"
        );
    }
    let err = Mirror::load_with(&dir, &mut Refusing { what: "read" }).expect_err("load");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let loaded = Mirror::load_with(&dir, &mut Refusing { what: "none" }).expect("load");
    assert_eq!(
        content(&loaded),
        commits.last().map(|(_, c)| c.clone()).expect("commits")
    );
    std::fs::remove_dir_all(&dir).ok();
}
