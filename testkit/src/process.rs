//! The fixtures' child processes: where their programs are, the end of their logs, and
//! stopping them by their PID only.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::Error;

/// `/usr/sbin/NAME` if it exists (the server tools live there and `PATH` often lacks it), else
/// `NAME` from `PATH`.
pub(crate) fn sbin(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() {
        path
    } else {
        PathBuf::from(name)
    }
}

/// The last `max` bytes of a file, for error messages.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// A child's output file, opened for appending before the child starts: where this run's output
/// begins, and a handle each for the child's stdout and stderr.
pub(crate) struct ChildLog {
    /// The file's length before this run, for [`output_since`].
    pub(crate) start: u64,
    /// The handle for the child's stdout.
    pub(crate) stdout: File,
    /// The handle for the child's stderr.
    pub(crate) stderr: File,
}

impl ChildLog {
    /// Opens (or creates) `path` for appending.
    pub(crate) fn open(path: &Path) -> Result<ChildLog, Error> {
        let stdout = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let start = stdout.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = stdout
            .try_clone()
            .map_err(|e| Error::io("duplicate the log file", e))?;
        Ok(ChildLog {
            start,
            stdout,
            stderr,
        })
    }
}

/// What was written to `path` from byte `start` on: one run's output, to tell why it failed.
pub(crate) fn output_since(path: &Path, start: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(start).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(&text[from..]).into_owned()
}

/// Stops `child` (ours) with SIGTERM, waits up to `grace` for it to exit, then SIGKILL and
/// reaps it. Does nothing when there is no child.
pub(crate) fn terminate(child: Option<Child>, grace: Duration) {
    let Some(mut child) = child else {
        return;
    };
    if matches!(child.try_wait(), Ok(None)) {
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + grace;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
