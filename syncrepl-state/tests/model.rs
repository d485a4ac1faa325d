//! Model-based test: random directory operations on a model directory, a simulated provider that
//! answers each sync with a valid RFC 4533 stream (full refresh, present phase, delete phase, mixed,
//! or persist), and after every sync the mirror must equal what the model's search sees. Refreshes
//! are also cut off part-way, by a lost connection (the mirror keeps what it applied) or by a crash
//! (the state directory is reopened), the directory changes meanwhile, and the retried sync must
//! still converge. A downstream consumer applies every change it is handed, dropping duplicates by
//! sequence number, and fails at random points; after a failure the run stops (the state is
//! sometimes reopened as after a crash) and is retried. At the end of every round the downstream
//! copy must equal the mirror, and no sequence number may ever arrive with two contents.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use syncrepl_proto::{
    AttributeList, Cookie, EntryUuid, Event, RefreshPhase, Scope, SyncEntry, SyncMode, SyncRequest,
    SyncState,
};
use syncrepl_state::{
    Change, ChangeKind, Consumer, ConsumerError, DeliveryError, FsyncPolicy, Mirror, OpenOptions,
    SearchSpec,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelEntry {
    dn: String,
    cn: String,
    /// Whether the entry matches the sync search's filter.
    in_filter: bool,
    /// The version of the entry's last change, like slapd's entryCSN: an entry changed since a
    /// cookie is sent in full even if a later change restored its content (RFC 4533 §3.3.1).
    csn: usize,
}

type Snapshot = BTreeMap<u8, ModelEntry>;

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Modify(u8, u8),
    Rename(u8, u8),
    Delete(u8),
    ToggleFilter(u8),
}

#[derive(Debug, Clone, Copy)]
enum Plan {
    Full,
    PresentPhase { ids_as_set: bool },
    DeletePhase { ids_as_set: bool },
    Mixed,
}

/// A refresh cut off after `after` events, by a crash or a lost connection, then `ops` happen on
/// the server before the sync is retried with `retry`.
#[derive(Debug, Clone)]
struct Cut {
    after: usize,
    crash: bool,
    ops: Vec<Op>,
    retry: Plan,
}

/// The downstream consumer fails at its `at`-th change of a round; the run then stops, and the
/// state is reopened first if `crash`.
#[derive(Debug, Clone, Copy)]
struct Failure {
    at: usize,
    crash: bool,
}

#[derive(Debug, Clone)]
struct Round {
    ops: Vec<Op>,
    strategy: Plan,
    cut: Option<Cut>,
    persist_ops: Vec<Op>,
    drop_cookie: bool,
    failure: Option<Failure>,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..10).prop_map(Op::Add),
        2 => (0u8..10, any::<u8>()).prop_map(|(u, v)| Op::Modify(u, v)),
        1 => (0u8..10, 0u8..6).prop_map(|(u, v)| Op::Rename(u, v)),
        2 => (0u8..10).prop_map(Op::Delete),
        1 => (0u8..10).prop_map(Op::ToggleFilter),
    ]
}

fn sync_strategy() -> impl proptest::strategy::Strategy<Value = Plan> {
    prop_oneof![
        Just(Plan::Full),
        any::<bool>().prop_map(|ids_as_set| Plan::PresentPhase { ids_as_set }),
        any::<bool>().prop_map(|ids_as_set| Plan::DeletePhase { ids_as_set }),
        Just(Plan::Mixed),
    ]
}

fn cut() -> impl proptest::strategy::Strategy<Value = Cut> {
    (
        0usize..16,
        any::<bool>(),
        prop::collection::vec(op(), 0..6),
        sync_strategy(),
    )
        .prop_map(|(after, crash, ops, retry)| Cut {
            after,
            crash,
            ops,
            retry,
        })
}

fn round() -> impl proptest::strategy::Strategy<Value = Round> {
    (
        prop::collection::vec(op(), 0..12),
        sync_strategy(),
        prop::option::weighted(0.5, cut()),
        prop::collection::vec(op(), 0..8),
        prop::bool::weighted(0.15),
        prop::option::weighted(
            0.4,
            (0usize..12, any::<bool>()).prop_map(|(at, crash)| Failure { at, crash }),
        ),
    )
        .prop_map(
            |(ops, strategy, cut, persist_ops, drop_cookie, failure)| Round {
                ops,
                strategy,
                cut,
                persist_ops,
                drop_cookie,
                failure,
            },
        )
}

/// The consumer's planned failure.
#[derive(Debug, thiserror::Error)]
#[error("downstream is down")]
struct Down;

/// A downstream copy built from the change stream alone: changes applied as states by entryUUID,
/// duplicates dropped by sequence number.
#[derive(Default)]
struct Downstream {
    last: u64,
    view: BTreeMap<u8, (String, String)>,
    seen: HashMap<u64, Change>,
    /// Fail when this many more changes have been taken.
    fail_in: Option<usize>,
    bad: Option<String>,
}

impl Consumer for Downstream {
    fn on_change(&mut self, c: &Change) -> Result<(), ConsumerError> {
        match self.fail_in {
            Some(0) => {
                self.fail_in = None;
                return Err(Box::new(Down));
            }
            Some(n) => self.fail_in = Some(n - 1),
            None => {}
        }
        match self.seen.get(&c.seq) {
            Some(first) if first != c => {
                self.bad = Some(format!("{} arrived as {first:?} and as {c:?}", c.seq));
            }
            Some(_) => {}
            None => {
                self.seen.insert(c.seq, c.clone());
            }
        }
        if c.seq <= self.last {
            return Ok(());
        }
        self.last = c.seq;
        match c.kind {
            ChangeKind::Delete => {
                self.view.remove(&c.uuid.0[0]);
            }
            ChangeKind::Add | ChangeKind::Modify => {
                self.view.insert(c.uuid.0[0], entry_view(&c.entry));
            }
        }
        Ok(())
    }
}

/// Applies `events`, delivering as the runtime does: after each event in the persist stage and
/// at the end of a refresh (waiting), within a refresh what is already durable. A consumer
/// failure ends the pass as it ends a run: the search counts as interrupted.
fn feed(mirror: &mut Mirror, events: Vec<Event>, down: &mut Downstream) -> Result<(), Down> {
    for event in events {
        let complete = matches!(event, Event::RefreshComplete { .. });
        mirror.apply(event).expect("apply");
        let wait = complete || !mirror.in_refresh();
        match mirror.deliver(down, wait) {
            Ok(_) => {}
            Err(DeliveryError::Consumer { .. }) => {
                mirror.interrupted().expect("interrupted");
                return Err(Down);
            }
            Err(e) => panic!("delivery: {e}"),
        }
    }
    Ok(())
}

fn open(dir: &std::path::Path) -> Mirror {
    Mirror::open(
        dir,
        spec(),
        OpenOptions {
            fsync: FsyncPolicy::Os,
            ..OpenOptions::default()
        },
    )
    .expect("open")
}

fn request(mirror: &Mirror, persist: bool) -> SyncRequest {
    let mode = if persist {
        SyncMode::RefreshAndPersist
    } else {
        SyncMode::RefreshOnly
    };
    let mut request = SyncRequest::new("dc=example,dc=com", mode);
    request.cookie = mirror.cookie().cloned();
    request.reload_hint = mirror.needs_reload();
    request
}

/// The provider: the directory and its history, one snapshot per version.
struct Provider {
    history: Vec<Snapshot>,
}

impl Provider {
    fn now(&self) -> &Snapshot {
        self.history
            .last()
            .expect("history starts with an empty snapshot")
    }

    fn apply(&mut self, op: &Op) {
        let mut next = self.now().clone();
        let csn = self.history.len();
        let dn_taken = |s: &Snapshot, dn: &str| s.values().any(|e| e.dn == dn);
        match *op {
            Op::Add(u) => {
                let dn = format!("uid=u{u},dc=example,dc=com");
                if !next.contains_key(&u) && !dn_taken(&next, &dn) {
                    next.insert(
                        u,
                        ModelEntry {
                            dn,
                            cn: "new".into(),
                            in_filter: true,
                            csn,
                        },
                    );
                }
            }
            Op::Modify(u, v) => {
                if let Some(e) = next.get_mut(&u) {
                    e.cn = format!("cn{v}");
                    e.csn = csn;
                }
            }
            Op::Rename(u, v) => {
                let dn = format!("uid=r{v},ou=moved,dc=example,dc=com");
                if next.contains_key(&u) && !dn_taken(&next, &dn) {
                    if let Some(e) = next.get_mut(&u) {
                        e.dn = dn;
                        e.csn = csn;
                    }
                }
            }
            Op::Delete(u) => {
                next.remove(&u);
            }
            Op::ToggleFilter(u) => {
                if let Some(e) = next.get_mut(&u) {
                    e.in_filter = !e.in_filter;
                    e.csn = csn;
                }
            }
        }
        self.history.push(next);
    }

    fn visible(s: &Snapshot) -> BTreeMap<u8, ModelEntry> {
        s.iter()
            .filter(|(_, e)| e.in_filter)
            .map(|(u, e)| (*u, e.clone()))
            .collect()
    }
}

fn uuid(u: u8) -> EntryUuid {
    EntryUuid([u; 16])
}

fn cookie(version: usize) -> Cookie {
    Cookie::from(version.to_string().as_bytes())
}

fn version(c: &Cookie) -> usize {
    std::str::from_utf8(c.as_bytes())
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("the provider's cookies are version numbers")
}

fn entry_event(state: SyncState, u: u8, e: Option<&ModelEntry>, c: Option<Cookie>) -> Event {
    Event::Entry(SyncEntry {
        state,
        entry_uuid: uuid(u),
        dn: e.map(|e| e.dn.clone()).unwrap_or_default(),
        attributes: match (state, e) {
            (SyncState::Add | SyncState::Modify, Some(e)) => AttributeList::build([
                ("objectClass", vec![b"inetOrgPerson".as_slice()]),
                ("cn", vec![e.cn.as_bytes()]),
            ]),
            _ => AttributeList::default(),
        },
        cookie: c,
    })
}

/// The refresh stream for a client whose cookie names version `since` (None: no cookie).
fn refresh(p: &Provider, since: Option<usize>, strategy: Plan, persist: bool) -> Vec<Event> {
    let now = Provider::visible(p.now());
    let version_now = p.history.len() - 1;
    let old = since.map(|v| Provider::visible(&p.history[v]));
    let strategy = if old.is_none() { Plan::Full } else { strategy };
    let changed = |u: &u8, e: &ModelEntry| old.as_ref().is_none_or(|o| o.get(u) != Some(e));
    let mut out = Vec::new();
    let end = |phase| Event::RefreshComplete {
        phase,
        cookie: Some(cookie(version_now)),
        persist,
    };
    match strategy {
        Plan::Full => {
            for (u, e) in &now {
                out.push(entry_event(SyncState::Add, *u, Some(e), None));
            }
            // Like slapd: without a cookie the client is assumed empty and the refresh ends as a
            // delete phase; a client with a cookie gets the whole content as a present phase.
            out.push(end(if since.is_some() {
                RefreshPhase::Present
            } else {
                RefreshPhase::Delete
            }));
        }
        Plan::PresentPhase { ids_as_set } | Plan::DeletePhase { ids_as_set } => {
            let present = matches!(strategy, Plan::PresentPhase { .. });
            let mut unchanged = Vec::new();
            for (u, e) in &now {
                if changed(u, e) {
                    out.push(entry_event(SyncState::Modify, *u, Some(e), None));
                } else if present {
                    unchanged.push(*u);
                }
            }
            if present {
                if ids_as_set {
                    out.push(Event::SyncIdSet {
                        uuids: unchanged.into_iter().map(uuid).collect(),
                        refresh_deletes: false,
                        cookie: None,
                    });
                } else {
                    for u in unchanged {
                        out.push(entry_event(SyncState::Present, u, None, None));
                    }
                }
                out.push(end(RefreshPhase::Present));
            } else {
                let gone: Vec<u8> = old
                    .iter()
                    .flat_map(|o| o.keys())
                    .filter(|u| !now.contains_key(u))
                    .copied()
                    .collect();
                if ids_as_set {
                    out.push(Event::SyncIdSet {
                        uuids: gone.into_iter().map(uuid).collect(),
                        refresh_deletes: true,
                        cookie: None,
                    });
                } else {
                    for u in gone {
                        out.push(entry_event(SyncState::Delete, u, None, None));
                    }
                }
                out.push(end(RefreshPhase::Delete));
            }
        }
        Plan::Mixed => {
            for (u, e) in &now {
                if changed(u, e) {
                    out.push(entry_event(SyncState::Add, *u, Some(e), None));
                } else {
                    out.push(entry_event(SyncState::Present, *u, None, None));
                }
            }
            out.push(Event::RefreshPhaseDone {
                phase: RefreshPhase::Present,
                cookie: None,
            });
            out.push(Event::SyncIdSet {
                uuids: vec![uuid(200)],
                refresh_deletes: true,
                cookie: None,
            });
            out.push(end(RefreshPhase::Delete));
        }
    }
    out
}

/// The persist stream for one operation: what changed in the visible content, with cookies.
fn persist_events(before: &Snapshot, after: &Snapshot, version: usize) -> Vec<Event> {
    let (b, a) = (Provider::visible(before), Provider::visible(after));
    let mut out = Vec::new();
    for (u, e) in &a {
        if b.get(u) != Some(e) {
            let state = if b.contains_key(u) {
                SyncState::Modify
            } else {
                SyncState::Add
            };
            out.push(entry_event(state, *u, Some(e), Some(cookie(version))));
        }
    }
    for (u, e) in &b {
        if !a.contains_key(u) {
            out.push(entry_event(
                SyncState::Delete,
                *u,
                Some(e),
                Some(cookie(version)),
            ));
        }
    }
    if out.is_empty() {
        out.push(Event::NewCookie(cookie(version)));
    }
    out
}

fn entry_view(e: &syncrepl_state::Entry) -> (String, String) {
    let cn = e
        .attributes
        .get("cn")
        .and_then(|mut v| v.next())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    (e.dn.clone(), cn)
}

fn mirror_view(m: &Mirror) -> BTreeMap<u8, (String, String)> {
    m.entries()
        .iter()
        .map(|(u, e)| (u.0[0], entry_view(e)))
        .collect()
}

fn model_view(s: &Snapshot) -> BTreeMap<u8, (String, String)> {
    Provider::visible(s)
        .into_iter()
        .map(|(u, e)| (u, (e.dn, e.cn)))
        .collect()
}

fn spec() -> SearchSpec {
    SearchSpec {
        base: "dc=example,dc=com".into(),
        scope: Scope::Subtree,
        filter: "(objectClass=inetOrgPerson)".into(),
        attributes: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mirror_equals_the_model_after_every_sync(rounds in prop::collection::vec(round(), 1..8)) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "syncrepl-model-{}-{}",
            std::process::id(),
            CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut provider = Provider { history: vec![Snapshot::new()] };
        let mut mirror = open(&dir);
        let mut down = Downstream::default();
        for round in rounds {
            for op in &round.ops {
                provider.apply(op);
            }
            if round.drop_cookie {
                mirror.deliver(&mut down, true).expect("deliver");
                mirror.refresh_required().expect("refresh required");
            }
            let persist = !round.persist_ops.is_empty();
            let mut strategy = round.strategy;
            if let Some(cut) = &round.cut {
                let since = mirror.cookie().map(version);
                mirror.begin_refresh(&request(&mirror, persist)).expect("begin");
                let events = refresh(&provider, since, strategy, persist);
                for event in events.into_iter().take(cut.after) {
                    mirror.apply(event).expect("apply");
                }
                if cut.crash {
                    drop(mirror);
                    mirror = open(&dir);
                } else {
                    mirror.interrupted().expect("connection lost");
                    mirror.deliver(&mut down, true).expect("deliver");
                }
                for op in &cut.ops {
                    provider.apply(op);
                }
                strategy = cut.retry;
            }
            down.fail_in = round.failure.map(|f| f.at);
            let crash_on_failure = round.failure.is_some_and(|f| f.crash);
            // A run: what a previous one left undelivered first, then the refresh from the
            // committed cookie, then the persist changes; a consumer failure ends it, and the
            // next run starts over from the state.
            let mut persist_done = 0;
            loop {
                let mut run = || -> Result<(), Down> {
                    mirror.deliver(&mut down, true).map_err(|_| Down)?;
                    let since = mirror.cookie().map(version);
                    mirror.begin_refresh(&request(&mirror, persist)).expect("begin");
                    feed(&mut mirror, refresh(&provider, since, strategy, persist), &mut down)?;
                    assert_eq!(mirror_view(&mirror), model_view(provider.now()));
                    while persist_done < round.persist_ops.len() {
                        let before = provider.now().clone();
                        provider.apply(&round.persist_ops[persist_done]);
                        persist_done += 1;
                        let v = provider.history.len() - 1;
                        feed(&mut mirror, persist_events(&before, provider.now(), v), &mut down)?;
                        assert_eq!(mirror_view(&mirror), model_view(provider.now()));
                    }
                    Ok(())
                };
                match run() {
                    Ok(()) => break,
                    Err(Down) if crash_on_failure => {
                        drop(mirror);
                        mirror = open(&dir);
                    }
                    Err(Down) => {}
                }
            }
            down.fail_in = None;
            prop_assert_eq!(mirror_view(&mirror), model_view(provider.now()));
            if persist {
                mirror.interrupted().expect("connection dropped");
                prop_assert_eq!(mirror_view(&mirror), model_view(provider.now()));
            }
            mirror.deliver(&mut down, true).expect("deliver");
            prop_assert_eq!(&down.view, &mirror_view(&mirror), "downstream differs");
            prop_assert_eq!(down.bad.take(), None);
        }
        // What was committed last is what a restart finds.
        let before = mirror_view(&mirror);
        drop(mirror);
        let reopened = open(&dir);
        prop_assert_eq!(mirror_view(&reopened), before);
        drop(reopened);
        std::fs::remove_dir_all(&dir).ok();
    }
}
