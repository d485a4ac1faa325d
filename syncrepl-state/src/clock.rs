//! Where the mirror reads the time: the group-commit policy's deadlines and the stamp of the last
//! change. Behind a trait so that a test can drive the policy with a clock of its own.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of the two times the mirror uses, read once per commit.
pub trait Clock: Send + std::fmt::Debug {
    /// The monotonic time, for the fsync deadlines of [`FsyncPolicy::Group`](crate::FsyncPolicy).
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch, for the last change `status` shows.
    fn unix_seconds(&self) -> u64;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_seconds(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
