//! Stopping the servers the fixtures started, by their PID only.

use std::process::Child;
use std::time::{Duration, Instant};

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
