//! Pulling changes one at a time: the sync runs on a thread of its own and the caller iterates.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use syncrepl_state::{Change, FnHandler, Mirror};

use crate::error::Error;
use crate::runner::{run, Outcome, SyncOptions};
use crate::sink::MirrorSink;
use crate::stop::StopHandle;

/// How many changes may wait for the caller before the sync thread waits in turn (back-pressure,
/// so a slow consumer does not make the refresh pile up in memory).
const QUEUE: usize = 1024;

/// An iterator over the changes of a sync running in the background.
///
/// The iterator ends when the run ends (refreshOnly done, stopped, or failed); [`Changes::finish`]
/// then gives the outcome and the mirror back.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncrepl_mio::{changes, ConnectOptions, LdapUrl, SyncOptions};
/// use syncrepl_proto::{SyncMode, SyncRequest};
/// use syncrepl_state::{Change, Mirror, SearchSpec};
///
/// let url: LdapUrl = "ldap://127.0.0.1/dc=example,dc=com??sub".parse()?;
/// let mut request = SyncRequest::new(url.base.clone(), SyncMode::RefreshAndPersist);
/// request.scope = url.scope;
/// let mirror = Mirror::open("state".as_ref(), SearchSpec::from_request(&request), Default::default())?;
/// let mut stream = changes(SyncOptions::new(ConnectOptions::new(url.endpoint), request), mirror);
/// for change in stream.by_ref() {
///     if let Change::Add { entry, .. } = change {
///         println!("added {}", entry.dn);
///     }
/// }
/// let (outcome, _mirror) = stream.finish()?;
/// println!("{outcome:?}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Changes {
    rx: Receiver<Change>,
    stop: StopHandle,
    thread: Option<JoinHandle<(Result<Outcome, Error>, Mirror)>>,
}

/// Starts syncing `mirror` in the background and returns the changes as an iterator.
pub fn changes(options: SyncOptions, mut mirror: Mirror) -> Changes {
    let (tx, rx) = sync_channel(QUEUE);
    let stop = StopHandle::new();
    let thread_stop = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut handler = FnHandler(move |change| {
            // The receiver is gone only if the caller dropped the iterator; the run is then being
            // stopped and the change has nowhere to go.
            let _ = tx.send(change);
        });
        let server = options.connect.endpoint.to_string();
        let result = {
            let mut sink = MirrorSink::new(&mut mirror, &mut handler, server);
            run(&options, &mut sink, &thread_stop)
        };
        (result, mirror)
    });
    Changes {
        rx,
        stop,
        thread: Some(thread),
    }
}

impl Changes {
    /// A handle that stops the run from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the run (if it is still going), waits for it, and returns how it ended with the mirror.
    pub fn finish(mut self) -> Result<(Outcome, Mirror), Error> {
        self.stop.stop();
        while self.rx.try_recv().is_ok() {}
        let thread = self.thread.take().ok_or(Error::Stopped)?;
        // Draining while waiting keeps the sync thread from blocking on a full queue.
        while !thread.is_finished() {
            let _ = self.rx.recv_timeout(std::time::Duration::from_millis(10));
        }
        match thread.join() {
            Ok((result, mirror)) => result.map(|outcome| (outcome, mirror)),
            Err(_) => Err(Error::Consumer("the sync thread panicked".into())),
        }
    }
}

impl Iterator for Changes {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        self.rx.recv().ok()
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                let _ = self.rx.recv_timeout(std::time::Duration::from_millis(10));
            }
            let _ = thread.join();
        }
    }
}
