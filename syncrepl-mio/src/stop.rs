//! A handle that stops a running sync from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

#[derive(Debug, Default)]
struct Shared {
    stopped: AtomicBool,
    waker: Mutex<Option<Arc<Waker>>>,
    sleeping: Mutex<()>,
    wake_sleepers: Condvar,
}

/// Stops a sync run: in the persist stage it sends Cancel (RFC 3909) and waits for the search to end,
/// during a refresh it abandons the search; in both cases the mirror keeps its last committed state.
///
/// Cloneable and shareable between threads; calling [`stop`](StopHandle::stop) from a signal-handling
/// thread, another task or a test is the intended use.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Asks the run to stop and wakes its event loop.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let waker = self.shared.waker.lock().ok().and_then(|w| w.clone());
        if let Some(waker) = waker {
            let _ = waker.wake();
        }
        let _guard = self.shared.sleeping.lock();
        self.shared.wake_sleepers.notify_all();
    }

    /// Sleeps for `duration` unless stopped first; returns whether the handle was stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let Ok(mut guard) = self.shared.sleeping.lock() else {
            return self.is_stopped();
        };
        while !self.is_stopped() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self
                .shared
                .wake_sleepers
                .wait_timeout(guard, deadline - now)
            {
                Ok((g, _)) => guard = g,
                Err(_) => break,
            }
        }
        self.is_stopped()
    }

    /// Whether [`stop`](StopHandle::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Sets the waker of the event loop currently running.
    pub(crate) fn set_waker(&self, waker: Option<Arc<Waker>>) {
        if let Ok(mut slot) = self.shared.waker.lock() {
            *slot = waker;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_wakes_the_loop() {
        let mut poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).expect("waker"));
        let handle = StopHandle::new();
        handle.set_waker(Some(waker));
        let other = handle.clone();
        let thread = std::thread::spawn(move || other.stop());
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .expect("poll");
        thread.join().expect("thread");
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        assert!(handle.is_stopped());
    }

    #[test]
    fn stop_interrupts_sleep() {
        let handle = StopHandle::new();
        assert!(!handle.sleep(Duration::from_millis(10)));
        let other = handle.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.stop();
        });
        assert!(handle.sleep(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().expect("thread");
    }
}
