//! The delivery contract of `syncrepl watch` against a real slapd: a change counts as delivered
//! only once its reader took it, a failing reader or a full disk stops the run with exit code 9
//! and nothing past the last change taken committed, and the next run hands out again from there
//! with the same sequence numbers and content.

#[allow(dead_code, reason = "each test binary uses some of the shared helpers")]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{syncrepl, temp_state};
use serde_json::Value;
use syncrepl_testkit::slapd::{person_ldif, Options, Slapd, BASE};

const FILTER: &str = "(objectClass=inetOrgPerson)";

fn url(slapd: &Slapd) -> String {
    format!("{}/{BASE}??sub?{FILTER}", slapd.ldap_url())
}

/// An entry as a set of (attribute, value) pairs, attribute names in lower case.
type Values = BTreeSet<(String, Vec<u8>)>;

/// LDIF content records (as ldapsearch prints them) by lower-case DN.
fn ldif_entries(text: &str) -> BTreeMap<String, Values> {
    let mut out = BTreeMap::new();
    for record in text.split("\n\n").filter(|r| !r.trim().is_empty()) {
        let mut lines: Vec<String> = Vec::new();
        for line in record.lines() {
            match (line.strip_prefix(' '), lines.last_mut()) {
                (Some(rest), Some(last)) => last.push_str(rest),
                _ => lines.push(line.to_owned()),
            }
        }
        let mut dn = String::new();
        let mut values = Values::new();
        for line in lines {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let value = match rest.strip_prefix(':') {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .expect("base64"),
                None => rest.trim_start().as_bytes().to_vec(),
            };
            if name == "dn" {
                dn = String::from_utf8(value).expect("DN").to_lowercase();
            } else {
                values.insert((name.to_lowercase(), value));
            }
        }
        out.insert(dn, values);
    }
    out
}

/// A downstream copy built from `watch --format json` lines alone: changes applied as states by
/// entryUUID, duplicates dropped by sequence number, every number checked to carry one content.
#[derive(Default)]
struct Downstream {
    last: u64,
    entries: BTreeMap<String, (String, Values)>,
    lines: HashMap<u64, String>,
    received: usize,
}

impl Downstream {
    fn take(&mut self, line: &str) {
        let change: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let seq = change["seq"].as_u64().expect("seq");
        self.received += 1;
        match self.lines.get(&seq) {
            Some(first) => assert_eq!(first, line, "change {seq} arrived with two contents"),
            None => {
                self.lines.insert(seq, line.to_owned());
            }
        }
        if seq <= self.last {
            return;
        }
        self.last = seq;
        let uuid = change["entryUUID"].as_str().expect("entryUUID").to_owned();
        if change["kind"] == "delete" {
            self.entries.remove(&uuid);
            return;
        }
        let mut values = Values::new();
        for (name, vals) in change["attributes"].as_object().expect("attributes") {
            for v in vals.as_array().expect("values") {
                let bytes = match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    other => base64::engine::general_purpose::STANDARD
                        .decode(other["base64"].as_str().expect("base64"))
                        .expect("base64"),
                };
                values.insert((name.to_lowercase(), bytes));
            }
        }
        let dn = change["dn"].as_str().expect("dn").to_lowercase();
        self.entries.insert(uuid, (dn, values));
    }

    fn view(&self) -> BTreeMap<String, Values> {
        self.entries.values().cloned().collect()
    }
}

/// Reads complete lines from `stdout` one byte at a time (so that nothing beyond them leaves the
/// pipe), until `keep` lines or `deadline`; then the pipe is closed.
fn read_lines(
    mut stdout: ChildStdout,
    keep: usize,
    deadline: Instant,
    pause: Duration,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while lines.len() < keep {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &stdout,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match stdout.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => {
                lines.push(String::from_utf8(std::mem::take(&mut line)).expect("UTF-8"));
                // A slow reader lets lines pile up in the pipe before it goes away.
                std::thread::sleep(pause);
            }
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    lines
}

fn start_watch(slapd: &Slapd, state: &Path, extra: &[&str]) -> Child {
    syncrepl()
        .args(["watch", &url(slapd), "--state"])
        .arg(state)
        .args(["--format", "json", "--retry", "0.1 100"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start syncrepl watch")
}

/// `count` random changes on the server (fewer if `stop` is set meanwhile).
fn change(slapd: &Slapd, seed: u64, count: usize, stop: &AtomicBool) {
    {
        let mut rng = fastrand::Rng::with_seed(seed);
        for k in 0..count {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let i = rng.usize(0..200);
            let dn = format!("uid=user{i:05},ou=people,{BASE}");
            let ldif = match rng.u8(0..8) {
                0 => format!("dn: {dn}\nchangetype: delete\n"),
                1 => format!(
                    "dn: {dn}\nchangetype: modrdn\nnewrdn: uid=moved{seed}x{k}\ndeleteoldrdn: 0\n"
                ),
                2 | 3 => person_ldif(10_000 + (seed as usize) * 1000 + k).replacen(
                    "objectClass:",
                    "changetype: add\nobjectClass:",
                    1,
                ),
                _ => format!(
                    "dn: {dn}\nchangetype: modify\nreplace: description\ndescription: {seed} {k}\n"
                ),
            };
            // A change may hit an entry that an earlier one renamed or deleted: that is fine.
            let _ = slapd.apply_ldif(&ldif);
            std::thread::sleep(Duration::from_millis(rng.u64(0..15)));
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_reader_that_dies_at_random_points_loses_nothing() {
    let slapd = Arc::new(Slapd::start(Options {
        people: 200,
        sessionlog: 50,
        ..Options::default()
    }));
    let state = temp_state("reader");
    let mut down = Downstream::default();
    let mut rng = fastrand::Rng::with_seed(10);
    let rounds = std::env::var("SYNCREPL_READER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let (mut failed_runs, mut killed) = (0, 0);
    for round in 0..rounds {
        let refresh_only = rng.u8(0..3) == 0;
        let kill = rng.u8(0..4) == 0;
        let keep = rng.usize(0..60);
        let pause = Duration::from_millis(rng.u64(0..3) * 10);
        let stop = Arc::new(AtomicBool::new(false));
        // Changes made while no watch runs arrive in the next refresh, as one batch.
        change(&slapd, round * 2, rng.usize(0..25), &stop);
        let changes = {
            let (slapd, stop) = (slapd.clone(), stop.clone());
            // Until the run is over: a watch whose reader went away notices at its next write.
            std::thread::spawn(move || change(&slapd, round * 2 + 1, 400, &stop))
        };
        let mut child = start_watch(
            &slapd,
            &state,
            if refresh_only {
                &["--refresh-only"]
            } else {
                &[]
            },
        );
        let stdout = child.stdout.take().expect("stdout");
        let lines = read_lines(
            stdout,
            keep,
            Instant::now() + Duration::from_millis(1500),
            pause,
        );
        for line in &lines {
            down.take(line);
        }
        if kill {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
            killed += 1;
        } else {
            // The pipe is closed: the next write fails, and the run stops with exit code 9
            // (a refresh-only run may also have finished first).
            let status = wait_exit(&mut child, Duration::from_secs(20));
            match status.and_then(|s| s.code()) {
                Some(9) => failed_runs += 1,
                Some(0) if refresh_only => {}
                other => panic!("round {round}: watch ended with {other:?}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        changes.join().expect("changer");
        // A reader that stays: everything not yet taken arrives, and the copy built from the
        // stream alone equals the server.
        let mut verify = start_watch(&slapd, &state, &["--refresh-only"]);
        let stdout = verify.stdout.take().expect("stdout");
        let rest = read_lines(
            stdout,
            usize::MAX,
            Instant::now() + Duration::from_secs(60),
            Duration::ZERO,
        );
        for line in &rest {
            down.take(line);
        }
        let status = wait_exit(&mut verify, Duration::from_secs(20)).expect("verify run ends");
        assert_eq!(status.code(), Some(0), "round {round}");
        let server = ldif_entries(&slapd.search_anonymous(BASE, FILTER));
        assert!(
            down.view() == server,
            "round {round}: the copy from the stream differs from the server ({} vs {} entries)",
            down.view().len(),
            server.len()
        );
    }
    eprintln!(
        "{rounds} rounds: {failed_runs} runs stopped by a closed pipe, {killed} killed, {} lines received, {} distinct changes",
        down.received,
        down.lines.len()
    );
    assert!(
        failed_runs > rounds / 4,
        "{failed_runs} runs failed on the pipe"
    );
    // Within a run numbers grow by one; a run that ends without a clean close makes the next one
    // resume above its reservation. A small gap would be a change that no reader received.
    let mut seqs: Vec<u64> = down.lines.keys().copied().collect();
    seqs.sort_unstable();
    for pair in seqs.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap == 1 || gap > 10_000,
            "changes {pair:?}: {} never received",
            gap - 1
        );
    }
    assert!(
        down.received > down.lines.len(),
        "some changes arrived twice"
    );
    std::fs::remove_dir_all(&state).ok();
}

fn status(state: &Path) -> String {
    let out = syncrepl()
        .args(["status", "--state"])
        .arg(state)
        .output()
        .expect("status");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn a_full_disk_stops_the_run_and_commits_nothing_that_was_not_written() {
    let slapd = Slapd::start(Options {
        people: 300,
        ..Options::default()
    });
    let state = temp_state("full");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = syncrepl()
        .args(["watch", &url(&slapd), "--state"])
        .arg(&state)
        .args(["--refresh-only", "--format", "json"])
        .stdout(full)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    let text = status(&state);
    assert!(text.contains("cookie:       none"), "{text}");
    assert!(text.contains("acknowledged: 0"), "{text}");
    assert!(text.contains("undelivered:  300"), "{text}");

    // The same with --output on a full disk, then a working stdout: every entry arrives, with
    // the numbers it was first given.
    let out = syncrepl()
        .args(["watch", &url(&slapd), "--state"])
        .arg(&state)
        .args([
            "--refresh-only",
            "--format",
            "json",
            "--output",
            "/dev/full",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let out = syncrepl()
        .args(["watch", &url(&slapd), "--state"])
        .arg(&state)
        .args(["--refresh-only", "--format", "json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let mut down = Downstream::default();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        down.take(line);
    }
    let seqs: Vec<u64> = {
        let mut s: Vec<u64> = down.lines.keys().copied().collect();
        s.sort_unstable();
        s
    };
    assert_eq!(seqs.len(), 300);
    assert_eq!(seqs.first(), Some(&1), "the first run's numbers");
    assert_eq!(
        down.view(),
        ldif_entries(&slapd.search_anonymous(BASE, FILTER))
    );
    let text = status(&state);
    assert!(text.contains("cookie:       rid="), "{text}");
    assert!(!text.contains("undelivered"), "{text}");
    std::fs::remove_dir_all(&state).ok();
}
