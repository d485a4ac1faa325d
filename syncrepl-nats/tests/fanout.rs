//! End-to-end tests of the JetStream fan-out against a real slapd and real nats-server nodes,
//! started on loopback by the testkit: every change in the stream exactly once, through crashes
//! of the publisher, a node of a cluster going away, and NATS down at start and in the middle.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncrepl_nats::{NatsArgs, Reader, Record, Subjects};
use syncrepl_testkit::slapd::{Options, Slapd, BASE};
use syncrepl_testkit::{NatsCluster, NatsServer};

use common::runtime;

/// The search: people, minus those marked `employeeType: gone` (to move entries out of it).
const FILTER: &str = "(&(objectClass=inetOrgPerson)(!(employeeType=gone)))";
const PREFIX: &str = "dir";

fn url(slapd: &Slapd) -> String {
    format!("{}/{BASE}??sub?{FILTER}", slapd.ldap_url())
}

fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-nats-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `syncrepl-nats publish` of the search into `stream` on `nats`, keeping every change
/// (`--keep 0`) unless `extra` says otherwise.
fn publisher(slapd: &Slapd, state: &Path, nats: &str, stream: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncrepl-nats"));
    command
        .args(["publish", &url(slapd), "--state"])
        .arg(state)
        .args(["--nats", nats, "--stream", stream, "--subject", PREFIX])
        .args(["--retry", "0.2 1000"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The seq of every change in the stream, in stream order, and its markers; read again while a
/// cluster that lost a node elects the stream's new leader.
fn stream_contents(nats: &str, stream: &str) -> (Vec<u64>, Vec<serde_json::Value>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_stream_contents(nats, stream) {
            Ok(contents) => return contents,
            Err(e) => assert!(Instant::now() < deadline, "cannot read {stream}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

type Contents = (Vec<u64>, Vec<serde_json::Value>);

fn try_stream_contents(nats: &str, stream: &str) -> Result<Contents, String> {
    runtime().block_on(async {
        let client = NatsArgs::new(nats).connect().await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut info = match js.get_stream(stream).await {
            Ok(info) => info,
            Err(e) if e.to_string().contains("not found") => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e.to_string()),
        };
        let stored = info.info().await.map_err(|e| e.to_string())?.state.messages;
        let subjects = Subjects::new(PREFIX).expect("prefix");
        let mut reader = Reader::open(&js, stream, subjects)
            .await
            .map_err(|e| e.to_string())?;
        let (mut seqs, mut markers) = (Vec::new(), Vec::new());
        let mut pending = stored;
        while pending > 0 {
            let (record, left) = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .map_err(|_| "no message within 10 s".to_owned())?
                .map_err(|e| e.to_string())?;
            match record {
                Record::Change { body, .. } => seqs.push(body["seq"].as_u64().expect("seq")),
                Record::Marker(body) => markers.push(body),
            }
            pending = left;
        }
        Ok((seqs, markers))
    })
}

/// Waits until the stream holds at least `count` changes.
fn wait_for_changes(nats: &str, stream: &str, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (seqs, _) = stream_contents(nats, stream);
        if seqs.len() >= count {
            return seqs;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never held {count} changes: {}",
            seqs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each change once and in order: sequence numbers strictly increasing. (After a crash or a
/// reopened mirror, numbering resumes past the block reserved on disk, so numbers never handed
/// out are skipped; a change handed out again keeps its number, and a duplicate would show.)
fn assert_once_in_order(seqs: &[u64]) {
    if let Some(w) = seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!(
            "seq {} after {}: a duplicate or a change out of order",
            w[1], w[0]
        );
    }
}

/// The sequence numbers are exactly 1, 2, …, n: no gap, no duplicate (a run without crash).
fn assert_exactly_once(seqs: &[u64]) {
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    if seqs != expected {
        let mut dups = seqs.to_vec();
        dups.sort_unstable();
        dups.dedup();
        panic!(
            "not exactly once: {} messages, {} distinct, max {:?}; first differences: {:?}",
            seqs.len(),
            dups.len(),
            seqs.iter().max(),
            seqs.iter()
                .zip(&expected)
                .filter(|(a, b)| a != b)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
}

/// `syncrepl-nats dump` of the stream: the directory rebuilt from it, records sorted.
fn rebuilt(nats: &str, stream: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_syncrepl-nats"))
        .args([
            "dump",
            "--nats",
            nats,
            "--stream",
            stream,
            "--subject",
            PREFIX,
        ])
        .output()
        .expect("dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sorted(&String::from_utf8(out.stdout).expect("utf8"))
}

/// The directory rebuilt from the stream equals `ldapsearch` of the search, record for record.
fn assert_rebuilt_equals_ldapsearch(slapd: &Slapd, nats: &str, stream: &str) {
    let ours = rebuilt(nats, stream);
    let theirs = sorted(&slapd.search_anonymous(BASE, FILTER));
    assert_eq!(ours.len(), theirs.len(), "entries");
    assert!(ours == theirs, "the rebuilt mirror differs from ldapsearch");
}

/// Waits (while changes flow) until the rebuilt directory equals `ldapsearch`.
fn wait_rebuilt_equals_ldapsearch(slapd: &Slapd, nats: &str, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while rebuilt(nats, stream) != sorted(&slapd.search_anonymous(BASE, FILTER)) {
        assert!(
            Instant::now() < deadline,
            "the stream never caught up with the directory"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sorted(ldif: &str) -> Vec<String> {
    let mut records: Vec<String> = ldif
        .split("\n\n")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    records.sort();
    records
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the publisher did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn person(i: usize) -> String {
    format!("uid=user{i:05},ou=people,{BASE}")
}

#[test]
fn every_kind_of_change_lands_once_and_the_stream_rebuilds_the_directory() {
    let slapd = Slapd::start(Options {
        people: 50,
        ..Options::default()
    });
    let nats = NatsServer::start().expect("nats");
    let state = temp_state("kinds");
    let child = publisher(&slapd, &state, &nats.url(), "KINDS", &["--keep", "0"])
        .spawn()
        .expect("publisher");
    assert_exactly_once(&wait_for_changes(&nats.url(), "KINDS", 50));

    let added = slapd.add_person("fresh");
    slapd.replace(&person(1), "sn", &["Changed"]);
    let renamed = slapd.rename(&person(2), "uid=renamed", None);
    slapd.replace(&person(3), "employeeType", &["gone"]);
    slapd.delete(&person(4));
    slapd.delete(&added);
    let seqs = wait_for_changes(&nats.url(), "KINDS", 56);
    stop(child);
    assert_exactly_once(&seqs);
    let (seqs, markers) = stream_contents(&nats.url(), "KINDS");
    assert_exactly_once(&seqs);
    assert_eq!(seqs.len(), 56);
    assert!(
        markers.iter().any(|m| m["kind"] == "refresh_done"),
        "{markers:?}"
    );
    assert_rebuilt_equals_ldapsearch(&slapd, &nats.url(), "KINDS");
    let _ = renamed;

    // A publisher of the same state, started again, adds nothing: it has nothing new to say.
    let again = publisher(&slapd, &state, &nats.url(), "KINDS", &["--refresh-only"])
        .status()
        .expect("again");
    assert!(again.success());
    assert_exactly_once(&stream_contents(&nats.url(), "KINDS").0);
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn kill_9_of_the_publisher_loses_and_duplicates_nothing() {
    let slapd = Slapd::start(Options {
        people: 3000,
        ..Options::default()
    });
    let nats = NatsServer::start().expect("nats");
    let state = temp_state("kill9");
    let rounds: usize = std::env::var("SYNCREPL_NATS_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut next = 10_000;
    for round in 0..rounds {
        let mut child = publisher(&slapd, &state, &nats.url(), "CRASH", &["--keep", "0"])
            .spawn()
            .expect("publisher");
        // The first rounds end inside the initial refresh, the later ones in the persist stage,
        // with the directory changing meanwhile.
        let alive = Instant::now() + Duration::from_millis(rng.u64(50..400) + 30 * round as u64);
        while Instant::now() < alive {
            let i = rng.usize(0..3000);
            let _ = slapd.apply_ldif(&match rng.u8(0..3) {
                0 => format!(
                    "dn: {}\nchangetype: modify\nreplace: description\ndescription: r{round}\n",
                    person(i)
                ),
                1 => format!("dn: {}\nchangetype: delete\n", person(i)),
                _ => {
                    next += 1;
                    format!(
                        "dn: uid=new{next},ou=people,{BASE}\nchangetype: add\nobjectClass: inetOrgPerson\n\
                         uid: new{next}\ncn: new{next}\nsn: new{next}\n"
                    )
                }
            });
        }
        kill9(&mut child);
    }
    let last = publisher(&slapd, &state, &nats.url(), "CRASH", &["--refresh-only"])
        .status()
        .expect("last run");
    assert!(last.success());
    let (seqs, _) = stream_contents(&nats.url(), "CRASH");
    assert!(seqs.len() > 3000, "{} changes", seqs.len());
    assert_once_in_order(&seqs);
    assert_rebuilt_equals_ldapsearch(&slapd, &nats.url(), "CRASH");
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn a_three_node_cluster_keeps_every_change_when_a_node_stops() {
    let slapd = Slapd::start(Options {
        people: 200,
        ..Options::default()
    });
    let mut cluster = NatsCluster::start().expect("cluster");
    let urls = cluster.urls();
    let state = temp_state("cluster");
    let child = publisher(&slapd, &state, &urls, "REPLICATED", &["--replicas", "3"])
        .spawn()
        .expect("publisher");
    wait_for_changes(&urls, "REPLICATED", 200);
    let stopped = (cluster.meta_leader().unwrap_or(0) + 1) % 3;
    for i in 0..60 {
        if i == 20 {
            cluster.stop_node(stopped);
        }
        slapd.replace(&person(i), "description", &[&format!("during {i}")]);
    }
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != stopped)
        .map(|i| cluster.node(i).url())
        .collect();
    let survivors = survivors.join(",");
    // The stream keeps the last message of each entry: one per entry, the 60 changed ones last.
    wait_rebuilt_equals_ldapsearch(&slapd, &survivors, "REPLICATED");
    let (seqs, _) = stream_contents(&survivors, "REPLICATED");
    assert_eq!(seqs.len(), 200, "one message per entry");
    cluster.start_node(stopped).expect("node back");
    slapd.replace(&person(100), "description", &["after the node came back"]);
    wait_rebuilt_equals_ldapsearch(&slapd, &urls, "REPLICATED");
    stop(child);
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn nats_down_at_start_and_in_the_middle_is_waited_for() {
    let slapd = Slapd::start(Options {
        people: 100,
        ..Options::default()
    });
    let mut nats = NatsServer::start().expect("nats");
    let url = nats.url();
    nats.stop();
    let state = temp_state("down");
    let child = publisher(&slapd, &state, &url, "OUTAGE", &["--keep", "0"])
        .spawn()
        .expect("publisher");
    std::thread::sleep(Duration::from_millis(700));
    nats.restart().expect("nats up");
    assert_exactly_once(&wait_for_changes(&url, "OUTAGE", 100));

    nats.stop();
    for i in 0..10 {
        slapd.replace(&person(i), "description", &["while NATS was down"]);
    }
    std::thread::sleep(Duration::from_millis(500));
    nats.restart().expect("nats up again");
    let seqs = wait_for_changes(&url, "OUTAGE", 110);
    stop(child);
    assert_once_in_order(&seqs);
    assert_eq!(
        seqs.len(),
        110,
        "the ten changes made while NATS was down, once each"
    );
    assert_rebuilt_equals_ldapsearch(&slapd, &url, "OUTAGE");
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn a_stream_with_contradicting_settings_is_refused() {
    let slapd = Slapd::start(Options {
        people: 5,
        ..Options::default()
    });
    let nats = NatsServer::start().expect("nats");
    runtime().block_on(async {
        let client = NatsArgs::new(nats.url()).connect().await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "SHORTLIVED".into(),
            subjects: vec![format!("{PREFIX}.>")],
            max_age: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("create");
    });
    let state = temp_state("conflict");
    let out = publisher(
        &slapd,
        &state,
        &nats.url(),
        "SHORTLIVED",
        &["--refresh-only"],
    )
    .output()
    .expect("publisher");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("max age"), "{err}");
    std::fs::remove_dir_all(&state).ok();
}
