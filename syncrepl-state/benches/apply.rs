//! Mirror benchmarks, printed as a table: apply rate of a 100,000-entry refresh of real-size entries
//! into the memory store and into the log store (group commit, and fsync at commit), the time to
//! reopen a log of `REOPEN_ENTRIES` entries (1,000,000 by default), and the memory a mirror uses per
//! entry beyond the entries' size on the wire.
//!
//! `cargo bench -p syncrepl-state` (set `REOPEN_ENTRIES=100000` for a quick run).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, Scope, SyncEntry, SyncMode, SyncRequest,
    SyncState,
};
use syncrepl_state::{FsyncPolicy, Mirror, OpenOptions, SearchSpec};

fn spec() -> SearchSpec {
    SearchSpec {
        base: "dc=example,dc=com".into(),
        scope: Scope::Subtree,
        filter: "(objectClass=*)".into(),
        attributes: vec!["*".into(), "+".into()],
    }
}

/// An inetOrgPerson about the size slapd sends with `*` and `+` (~950 bytes on the wire).
fn person(i: u32) -> (EntryUuid, String, AttributeList) {
    let mut uuid = [0u8; 16];
    uuid[..4].copy_from_slice(&i.to_be_bytes());
    uuid[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
    let uid = format!("user{i:07}");
    let dn = format!("uid={uid},ou=people,dc=example,dc=com");
    let cn = format!("Person Number {i}");
    let mail = format!("{uid}@example.com");
    let phone = format!("+1 555 {:04}", i % 10_000);
    let csn = format!("20261122101943.{:06}Z#000000#000#000000", i % 1_000_000);
    let uuid_text = EntryUuid(uuid).to_string();
    let description = format!(
        "Sample person {i} with a description long enough to look like real data in a directory"
    );
    let attrs = AttributeList::build([
        (
            "objectClass",
            vec![
                b"top".as_slice(),
                b"person",
                b"organizationalPerson",
                b"inetOrgPerson",
            ],
        ),
        ("uid", vec![uid.as_bytes()]),
        ("cn", vec![cn.as_bytes()]),
        ("sn", vec![b"Number".as_slice()]),
        ("givenName", vec![b"Person".as_slice()]),
        ("mail", vec![mail.as_bytes()]),
        ("telephoneNumber", vec![phone.as_bytes()]),
        ("title", vec![b"Engineer".as_slice()]),
        ("description", vec![description.as_bytes()]),
        ("structuralObjectClass", vec![b"inetOrgPerson".as_slice()]),
        ("entryUUID", vec![uuid_text.as_bytes()]),
        (
            "creatorsName",
            vec![b"cn=admin,dc=example,dc=com".as_slice()],
        ),
        ("createTimestamp", vec![b"20261122101943Z".as_slice()]),
        ("entryCSN", vec![csn.as_bytes()]),
        (
            "modifiersName",
            vec![b"cn=admin,dc=example,dc=com".as_slice()],
        ),
        ("modifyTimestamp", vec![b"20261122101943Z".as_slice()]),
        ("entryDN", vec![dn.as_bytes()]),
        ("subschemaSubentry", vec![b"cn=Subschema".as_slice()]),
        ("hasSubordinates", vec![b"FALSE".as_slice()]),
    ]);
    (EntryUuid(uuid), dn, attrs)
}

/// Size of the SearchResultEntry with its sync state control, as slapd would send it.
fn wire_size(dn: &str, attrs: &AttributeList) -> usize {
    attrs.as_ber().len() + dn.len() + 12 + 40
}

fn events(n: u32) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let (uuid, dn, attributes) = person(i);
            Event::Entry(SyncEntry {
                state: SyncState::Add,
                entry_uuid: uuid,
                dn,
                attributes,
                cookie: None,
            })
        })
        .collect()
}

/// Applies a whole refresh of `n` entries and returns the time it took, event generation excluded.
fn refresh(mirror: &mut Mirror, n: u32) -> Duration {
    let events = events(n);
    let started = Instant::now();
    mirror
        .begin_refresh(&SyncRequest::new(
            "dc=example,dc=com",
            SyncMode::RefreshOnly,
        ))
        .expect("begin");
    for event in events {
        mirror.apply(event).expect("apply");
        // As the runtime does: batches go out once durable.
        mirror.deliver(&mut (), false).expect("deliver");
    }
    mirror
        .apply(Event::RefreshComplete {
            phase: RefreshPhase::Delete,
            cookie: Some(Cookie::from(b"rid=000,csn=x".as_slice())),
            persist: false,
        })
        .expect("complete");
    mirror.deliver(&mut (), true).expect("deliver");
    started.elapsed()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("syncrepl-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: a smoke run is enough there.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if smoke {
        let mut m = Mirror::in_memory(spec());
        refresh(&mut m, 1000);
        assert_eq!(m.entries().len(), 1000);
        println!(
            "smoke run of the apply benchmark: ok (cargo bench -p syncrepl-state for numbers)"
        );
        return;
    }
    let n = 100_000u32;
    let runs = 3;
    let wire: usize = (0..n)
        .map(|i| {
            let (_, dn, a) = person(i);
            wire_size(&dn, &a)
        })
        .sum();
    println!(
        "{n} entries, {:.0} bytes each on the wire",
        wire as f64 / f64::from(n)
    );

    let before = rss_bytes();
    let mut m = Mirror::in_memory(spec());
    m.begin_refresh(&SyncRequest::new(
        "dc=example,dc=com",
        SyncMode::RefreshOnly,
    ))
    .expect("begin");
    for i in 0..n {
        let (uuid, dn, attributes) = person(i);
        let entry = SyncEntry {
            state: SyncState::Add,
            entry_uuid: uuid,
            dn,
            attributes,
            cookie: None,
        };
        m.apply(Event::Entry(entry)).expect("apply");
        m.deliver(&mut (), false).expect("deliver");
    }
    let after = rss_bytes();
    let per_entry = (after.saturating_sub(before)) as f64 / f64::from(n);
    let wire_each = wire as f64 / f64::from(n);
    println!(
        "memory: {per_entry:.0} bytes per entry resident, {:.0} beyond the attribute bytes, {:.2}x the size on the wire",
        per_entry - (m.entries().iter().map(|(_, e)| e.attributes.as_ber().len()).sum::<usize>() as f64 / f64::from(n)),
        per_entry / wire_each
    );
    drop(m);

    let memory = median(
        (0..runs)
            .map(|_| refresh(&mut Mirror::in_memory(spec()), n))
            .collect(),
    );
    println!(
        "memory store:           {:>8.0} entries/s",
        f64::from(n) / memory.as_secs_f64()
    );
    let policies = [
        (
            "log store, group commit",
            FsyncPolicy::Group {
                max_delay: Duration::from_millis(50),
                max_bytes: 8 << 20,
            },
        ),
        ("log store, fsync/commit", FsyncPolicy::EveryCommit),
        ("log store, no fsync    ", FsyncPolicy::Os),
    ];
    // Round-robin, so that the disk's write-back of one run weighs on every policy alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); policies.len()];
    for _ in 0..runs {
        for (i, (_, policy)) in policies.iter().enumerate() {
            let dir = temp("apply");
            let mut m = Mirror::open(
                &dir,
                spec(),
                OpenOptions {
                    fsync: *policy,
                    ..OpenOptions::default()
                },
            )
            .expect("open");
            times[i].push(refresh(&mut m, n));
            drop(m);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    for ((name, _), t) in policies.iter().zip(times) {
        let t = median(t);
        println!(
            "{name}: {:>8.0} entries/s ({:.2}x the memory store's time)",
            f64::from(n) / t.as_secs_f64(),
            t.as_secs_f64() / memory.as_secs_f64()
        );
    }

    let reopen_n: u32 = std::env::var("REOPEN_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = temp("reopen");
    {
        let mut m = Mirror::open(
            &dir,
            spec(),
            OpenOptions {
                fsync: FsyncPolicy::Os,
                ..OpenOptions::default()
            },
        )
        .expect("open");
        refresh(&mut m, reopen_n);
        m.sync().expect("sync");
    }
    let size = std::fs::metadata(dir.join("state.log")).map_or(0, |m| m.len());
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let m = Mirror::open(&dir, spec(), OpenOptions::default()).expect("reopen");
            assert_eq!(m.entries().len(), reopen_n as usize);
            started.elapsed()
        })
        .collect();
    println!(
        "reopen {reopen_n} entries ({:.0} MB log): {:.2} s (median of {runs})",
        size as f64 / 1e6,
        median(times).as_secs_f64()
    );
    std::fs::remove_dir_all(&dir).ok();
}
