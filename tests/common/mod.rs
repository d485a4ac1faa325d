//! Helpers shared by the end-to-end tests of the `syncrepl` command, whatever the server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `syncrepl` binary under test.
pub(crate) fn syncrepl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_syncrepl"))
}

/// A state directory path that does not exist yet.
pub(crate) fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "syncrepl-cli-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()) << 20
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `command` (a `syncrepl` subcommand named `what`), which must succeed.
fn succeed(command: &mut Command, what: &str) -> Output {
    let out = command.output().expect("run syncrepl");
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `syncrepl watch URL --state STATE --refresh-only --format ldif EXTRA…`, which must succeed.
pub(crate) fn refresh_only(url: &str, extra: &[&str], state: &Path) -> Output {
    succeed(
        syncrepl()
            .args(["watch", url, "--state"])
            .arg(state)
            .args(["--refresh-only", "--format", "ldif"])
            .args(extra),
        "watch",
    )
}

/// `syncrepl dump --state STATE`, which must succeed.
pub(crate) fn dump(state: &Path) -> String {
    let out = succeed(syncrepl().args(["dump", "--state"]).arg(state), "dump");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// LDIF records sorted, so that two dumps of the same content compare equal.
pub(crate) fn sorted_records(ldif: &str) -> Vec<String> {
    let mut records: Vec<String> = ldif
        .split("\n\n")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    records.sort();
    records
}

/// Starts `syncrepl watch URL --state STATE --format FORMAT EXTRA…` in persist mode, waits for
/// its first refresh to end, and returns the child and a channel of its stdout lines.
pub(crate) fn watch(
    url: &str,
    extra: &[&str],
    state: &Path,
    format: &str,
) -> (Child, mpsc::Receiver<String>) {
    watch_with(syncrepl(), url, extra, state, format)
}

/// [`watch`] with a `syncrepl` command prepared by the caller (its environment, say).
pub(crate) fn watch_with(
    mut command: Command,
    url: &str,
    extra: &[&str],
    state: &Path,
    format: &str,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = command
        .args(["watch", url, "--state"])
        .arg(state)
        .args(["--format", format, "--retry", "0.2 100"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syncrepl watch");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Shown with the output of a failing test.
            eprintln!("watch: {line}");
            let _ = etx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match erx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("refresh done") => break,
            _ => assert!(Instant::now() < deadline, "no refresh done"),
        }
    }
    (child, rx)
}

/// Waits up to 20 s for a line containing `what`; returns every line seen until then.
pub(crate) fn wait_line(rx: &mpsc::Receiver<String>, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            let done = line.contains(what);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
    panic!("no line with {what:?} in {seen:?}");
}

/// Sends SIGINT to `child` (ours) and waits up to 20 s for it to exit.
pub(crate) fn interrupt(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "watch did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}
