//! The group-commit policy (`FsyncPolicy::Group`) driven by a clock of the test's own: commits
//! within `max_delay` of the oldest unsynced one are not synced, the first one after it is, and
//! `sync_due` names the deadline exactly, whatever the machine is doing.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, Scope, SyncEntry, SyncMode, SyncRequest,
    SyncState,
};
use syncrepl_state::{
    Clock, FnConsumer, FsyncPolicy, LogFile, LogIo, Mirror, OpenOptions, SearchSpec, StdIo,
};

/// A clock that moves only when the test says.
#[derive(Debug, Clone)]
struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock");
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        *self.0.lock().expect("clock")
    }
    fn unix_seconds(&self) -> u64 {
        1_700_000_000
    }
}

/// The real file system, counting fsyncs of the log.
#[derive(Clone)]
struct Counting(Arc<AtomicU64>);

struct CountingFile(Box<dyn LogFile>, Arc<AtomicU64>);

impl LogFile for CountingFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        let inner = self.0.sync_handle()?;
        Some(Box::new(CountingFile(inner, self.1.clone())))
    }
}

impl LogIo for Counting {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        StdIo.read(path)
    }
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(CountingFile(
            StdIo.open_append(path)?,
            self.0.clone(),
        )))
    }
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(CountingFile(StdIo.create(path)?, self.0.clone())))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        StdIo.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        StdIo.sync_dir(dir)
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-group-commit-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn modify(n: u8, description: &str, cookie: &str) -> Event {
    Event::Entry(SyncEntry {
        state: SyncState::Modify,
        entry_uuid: EntryUuid([n; 16]),
        dn: format!("cn={n},dc=example,dc=com"),
        attributes: AttributeList::build([("description", vec![description.as_bytes()])]),
        cookie: Some(Cookie::from(cookie.as_bytes())),
    })
}

#[test]
fn syncs_once_the_oldest_unsynced_commit_is_max_delay_old() {
    let dir = temp_dir();
    let clock = TestClock(Arc::new(Mutex::new(Instant::now())));
    let syncs = Arc::new(AtomicU64::new(0));
    let max_delay = Duration::from_millis(100);
    let spec = SearchSpec {
        base: "dc=example,dc=com".into(),
        scope: Scope::Subtree,
        filter: "(objectClass=*)".into(),
        attributes: Vec::new(),
    };
    let mut mirror = Mirror::open(
        &dir,
        spec,
        OpenOptions {
            fsync: FsyncPolicy::Group {
                max_delay,
                max_bytes: 1 << 30,
            },
            io: Box::new(Counting(syncs.clone())),
            clock: Box::new(clock.clone()),
            ..OpenOptions::default()
        },
    )
    .expect("open");
    let mut consumer = FnConsumer(|_: &syncrepl_state::Change| Ok::<(), io::Error>(()));
    let request = SyncRequest::new("dc=example,dc=com", SyncMode::RefreshAndPersist);
    mirror.begin_refresh(&request).expect("begin");
    mirror.apply(modify(1, "a", "c0")).expect("entry");
    mirror
        .apply(Event::RefreshComplete {
            phase: RefreshPhase::Present,
            cookie: Some(Cookie::from(b"c1".as_slice())),
            persist: true,
        })
        .expect("refresh done");
    mirror.deliver(&mut consumer, true).expect("deliver");
    mirror.sync().expect("a clean start");
    let start = clock.now();
    let base = syncs.load(Ordering::SeqCst);
    assert_eq!(mirror.sync_due(), None, "nothing waits for a sync");

    // Persist-stage changes, each committed with its cookie once delivered.
    let mut step = |n: u8, cookie: &str, mirror: &mut Mirror| {
        mirror.apply(modify(n, cookie, cookie)).expect("change");
        mirror.deliver(&mut consumer, true).expect("deliver");
    };
    step(2, "c2", &mut mirror);
    assert_eq!(syncs.load(Ordering::SeqCst), base, "the first commit waits");
    assert_eq!(mirror.sync_due(), Some(start + max_delay));
    clock.advance(Duration::from_millis(60));
    step(3, "c3", &mut mirror);
    assert_eq!(syncs.load(Ordering::SeqCst), base, "still within max_delay");
    assert_eq!(
        mirror.sync_due(),
        Some(start + max_delay),
        "the deadline is the oldest commit's"
    );
    clock.advance(Duration::from_millis(40));
    step(4, "c4", &mut mirror);
    assert_eq!(
        syncs.load(Ordering::SeqCst),
        base + 1,
        "max_delay after the oldest unsynced commit: synced"
    );
    // The commit that records the acknowledgement opens the next window, from now.
    let due = mirror.sync_due();
    assert!(due.is_none_or(|d| d == clock.now() + max_delay), "{due:?}");
    // Quiet: the runner syncs at the deadline (Mirror::sync_due), not before.
    if let Some(due) = due {
        clock.advance(due - clock.now());
        mirror.sync().expect("sync at the deadline");
        assert_eq!(syncs.load(Ordering::SeqCst), base + 2);
        assert_eq!(mirror.sync_due(), None);
    }
    drop(mirror);
    let _ = std::fs::remove_dir_all(&dir);
}
