//! Real slapd captures applied to a mirror: a full refresh, then an incremental refresh served from
//! the session log (syncIdSet deletions) or by a present phase (syncIdSet of all live UUIDs).
//!
//! The captures live in `../shared/captures` beside the workspace (not in a fresh clone); the tests
//! say so and pass when they are absent.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use syncrepl_proto::{Event, Session, SessionConfig, SyncMode, SyncRequest, SyncState};
use syncrepl_state::{Mirror, OpenOptions, SearchSpec};

fn capture(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures")
        .join(format!("{name}.bin"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!(
                "skipped: {} is not here (it is not part of a clone)",
                path.display()
            );
            None
        }
    }
}

/// Decodes a capture (bind = message 1, sync search = message 2) into its events.
fn events(bytes: &[u8], request: &SyncRequest) -> Vec<Event> {
    let mut session = Session::new(SessionConfig::default());
    session.bind_simple("", b"", Instant::now()).expect("bind");
    let first = 2 + usize::from(bytes[1]);
    session
        .handle_input(&bytes[..first])
        .expect("bind response");
    assert!(matches!(session.poll_event(), Some(Event::BindResult(_))));
    session.start_sync(request).expect("start");
    session
        .handle_input(&bytes[first..])
        .expect("the capture decodes");
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn request(cookie: bool) -> SyncRequest {
    let mut r = SyncRequest::new("dc=example,dc=com", SyncMode::RefreshOnly);
    r.attributes = vec!["*".into(), "+".into()];
    if cookie {
        r.cookie = Some(syncrepl_proto::Cookie::from(
            b"from the full refresh".as_slice(),
        ));
    }
    r
}

fn apply(mirror: &mut Mirror, request: &SyncRequest, events: Vec<Event>) {
    mirror.begin_refresh(request).expect("begin");
    for e in events {
        mirror.apply(e).expect("apply");
    }
    mirror.deliver(&mut (), true).expect("deliver");
}

fn full(dir: Option<&std::path::Path>) -> Option<Mirror> {
    let bytes = capture("refresh-10k")?;
    let spec = SearchSpec::from_request(&request(false));
    let mut mirror = match dir {
        Some(dir) => Mirror::open(dir, spec, OpenOptions::default()).expect("open"),
        None => Mirror::in_memory(spec),
    };
    let r = request(false);
    apply(&mut mirror, &r, events(&bytes, &r));
    assert_eq!(mirror.entries().len(), 10_002);
    assert!(mirror.cookie().is_some());
    Some(mirror)
}

#[test]
fn incremental_from_the_session_log() {
    let (Some(mut mirror), Some(bytes)) = (full(None), capture("incr-sessionlog-10k")) else {
        return;
    };
    let r = request(true);
    let evs = events(&bytes, &r);
    let mut sent = HashSet::new();
    let mut deleted = HashSet::new();
    for e in &evs {
        match e {
            Event::Entry(e) if e.state == SyncState::Add => {
                sent.insert(e.entry_uuid);
            }
            Event::SyncIdSet {
                uuids,
                refresh_deletes: true,
                ..
            } => deleted.extend(uuids.iter().copied()),
            _ => {}
        }
    }
    assert_eq!(sent.len(), 868);
    assert_eq!(deleted.len(), 89);
    let before: HashSet<_> = mirror.entries().iter().map(|(u, _)| *u).collect();
    apply(&mut mirror, &r, evs);
    let after: HashSet<_> = mirror.entries().iter().map(|(u, _)| *u).collect();
    let expected: HashSet<_> = before
        .union(&sent)
        .copied()
        .filter(|u| !deleted.contains(u))
        .collect();
    assert_eq!(after, expected);
}

#[test]
fn incremental_by_present_phase_on_disk() {
    let dir = std::env::temp_dir().join(format!("syncrepl-captures-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (Some(mut mirror), Some(bytes)) = (full(Some(&dir)), capture("incr-present-10k")) else {
        return;
    };
    let r = request(true);
    let evs = events(&bytes, &r);
    let mut live = HashSet::new();
    for e in &evs {
        match e {
            Event::Entry(e) => {
                live.insert(e.entry_uuid);
            }
            Event::SyncIdSet {
                uuids,
                refresh_deletes: false,
                ..
            } => live.extend(uuids.iter().copied()),
            _ => {}
        }
    }
    apply(&mut mirror, &r, evs);
    let after: HashSet<_> = mirror.entries().iter().map(|(u, _)| *u).collect();
    assert_eq!(after, live, "exactly the presented and sent entries remain");
    let count = after.len();
    drop(mirror);
    let reopened =
        Mirror::open(&dir, SearchSpec::from_request(&r), OpenOptions::default()).expect("reopen");
    assert_eq!(reopened.entries().len(), count);
    std::fs::remove_dir_all(&dir).ok();
}
