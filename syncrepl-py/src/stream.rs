//! The sync run in the background that Python pulls item by item, and the handle that stops it.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use clap::Parser;
use pyo3::prelude::*;
use pyo3::types::PyList;
use syncrepl::cli::{Cli, Command};
use syncrepl::mio::{Credentials, Outcome, StopHandle};
use syncrepl::state::{Mirror, SearchSpec};
use syncrepl::{changes_with, Changes, Item, PullOptions, RecvTimeoutError};

use crate::error::{error, kind};
use crate::items::{hand_change, item_tuple};

/// Stops a [`Stream`] from any thread or a signal handler.
#[pyclass(frozen, module = "syncrepl_client._native")]
pub(crate) struct Stopper {
    stop: StopHandle,
}

#[pymethods]
impl Stopper {
    /// Asks the run to stop: a refresh is abandoned, a persist search cancelled, and what was
    /// acknowledged is committed.
    fn stop(&self) {
        self.stop.stop();
    }
}

/// What one wait on the run gave.
enum Taken {
    /// Nothing within the timeout.
    Nothing,
    /// Items, in order.
    Items(Vec<Item>),
    /// The run is over, and ended this way.
    End(&'static str),
}

/// A sync run in the background, pulled item by item. Its methods may be called from any
/// thread, one at a time (a second caller waits); [`Stopper`] works meanwhile.
#[pyclass(frozen, module = "syncrepl_client._native")]
pub(crate) struct Stream {
    changes: Mutex<Option<Changes>>,
    stop: StopHandle,
}

#[pymethods]
impl Stream {
    /// Starts `syncrepl watch URL… [--state STATE] [--refresh-only] FLAGS…` in the background.
    /// `bind_dn` and `password` override the URL's; `snapshot` gives each refresh_done item the
    /// entries.
    #[new]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each.
    #[pyo3(signature = (urls, state, persist, flags, bind_dn=None, password=None, snapshot=false))]
    fn new(
        py: Python<'_>,
        urls: Vec<String>,
        state: Option<PathBuf>,
        persist: bool,
        flags: Vec<String>,
        bind_dn: Option<String>,
        password: Option<String>,
        snapshot: bool,
    ) -> PyResult<Stream> {
        let mut argv: Vec<std::ffi::OsString> = vec!["syncrepl".into(), "watch".into()];
        argv.extend(urls.into_iter().map(Into::into));
        if let Some(state) = &state {
            argv.push("--state".into());
            argv.push(state.into());
        }
        if !persist {
            argv.push("--refresh-only".into());
        }
        argv.extend(flags.into_iter().map(Into::into));
        let cli = Cli::try_parse_from(argv).map_err(|e| error("usage", e.render()))?;
        let Command::Watch(args) = cli.command else {
            return Err(error("usage", "not a watch command"));
        };
        let mut options = args.sync.sync_options().map_err(|e| error("usage", e))?;
        if bind_dn.is_some() || password.is_some() {
            let url_dn = match &options.connect.credentials {
                Credentials::Simple { dn, .. } => Some(dn.clone()),
                _ => None,
            };
            let dn = bind_dn.or(url_dn).unwrap_or_default();
            options.connect.credentials = Credentials::Simple {
                dn,
                password: password.unwrap_or_default(),
            };
        }
        let spec = SearchSpec::from_request(&options.request);
        let open = args.sync.open_options();
        let mirror = match &state {
            Some(dir) => {
                py.allow_threads(|| Mirror::open(dir, spec, open))
                    .map_err(|e| match e {
                        syncrepl::state::Error::SearchMismatch { .. } => error("conflict", e),
                        other => error("state", other),
                    })?
            }
            None => Mirror::in_memory(spec),
        };
        let changes = changes_with(
            options,
            mirror,
            PullOptions {
                refresh_snapshot: snapshot,
            },
        );
        let stop = changes.stop_handle();
        Ok(Stream {
            changes: Mutex::new(Some(changes)),
            stop,
        })
    }

    /// The next item, waiting at most `timeout` seconds with the GIL released: None when nothing
    /// came, else `("bound", authz_id)`, `("change", Change)`, `("refresh_done", count,
    /// Snapshot or None)`, `("cookie", text or None)`, or `("end", "refresh_done" | "stopped")`
    /// once the run is over. Asking for it acknowledges the change returned before. A failed run
    /// raises SyncError.
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<Py<PyAny>>> {
        Ok(match self.take(py, timeout, 1)? {
            Taken::Nothing => None,
            Taken::End(outcome) => Some(("end", outcome).into_pyobject(py)?.into_any().unbind()),
            Taken::Items(items) => match items.into_iter().next() {
                Some(item) => Some(item_tuple(py, item)?.into_any().unbind()),
                None => None,
            },
        })
    }

    /// Up to `max` items as [`Stream::next`] gives them, waiting at most `timeout` seconds for
    /// the first (None when nothing came); asking acknowledges every change returned before.
    fn next_batch(&self, py: Python<'_>, timeout: f64, max: usize) -> PyResult<Option<Py<PyList>>> {
        let items = match self.take(py, timeout, max)? {
            Taken::Nothing => return Ok(None),
            Taken::Items(items) => items,
            Taken::End(outcome) => {
                let end = ("end", outcome).into_pyobject(py)?;
                return Ok(Some(PyList::new(py, [end])?.unbind()));
            }
        };
        let list = PyList::empty(py);
        for item in items {
            list.append(item_tuple(py, item)?)?;
        }
        Ok(Some(list.unbind()))
    }

    /// Takes up to `max` items (waiting at most `timeout` seconds for the first) and hands each
    /// to Python in order, without building Change objects: an add to `add(dn, attrs)`, a delete
    /// to `delete(dn)`, a rename to `rename(old_dn, new_dn)` (then `change` if attributes changed
    /// too), a modify to `change(dn, old_attrs, new_attrs)`, and every other item, as
    /// [`Stream::next`] writes it, to `other(item)`, which returns False at the end. Returns None
    /// when nothing came, False at the end, else True. When a callable raises, the changes before
    /// it are acknowledged and the exception propagates; that change is not acknowledged.
    #[allow(clippy::too_many_arguments)] // The callbacks, one each.
    #[pyo3(signature = (add, delete, rename, change, other, timeout, max))]
    fn dispatch(
        &self,
        py: Python<'_>,
        add: &Bound<'_, PyAny>,
        delete: &Bound<'_, PyAny>,
        rename: &Bound<'_, PyAny>,
        change: &Bound<'_, PyAny>,
        other: &Bound<'_, PyAny>,
        timeout: f64,
        max: usize,
    ) -> PyResult<Option<bool>> {
        let items = match self.take(py, timeout, max)? {
            Taken::Nothing => return Ok(None),
            Taken::Items(items) => items,
            Taken::End(outcome) => {
                other.call1((("end", outcome),))?;
                return Ok(Some(false));
            }
        };
        let mut taken = 0;
        for item in items {
            let result = match item {
                Item::Change(c) => hand_change(py, &c, add, delete, rename, change).map(|()| {
                    taken = c.seq;
                    true
                }),
                other_item => item_tuple(py, other_item)
                    .and_then(|t| other.call1((t,)))
                    .and_then(|r| r.is_truthy()),
            };
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(Some(false)),
                Err(e) => {
                    if taken > 0 {
                        self.ack_through(py, taken);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Some(true))
    }

    /// Acknowledges the changes returned so far up to `seq`: a caller that failed in the middle
    /// of a batch acknowledges what it took, then closes.
    fn ack_through(&self, py: Python<'_>, seq: u64) {
        py.allow_threads(|| {
            if let Some(changes) = self.lock().as_mut() {
                changes.ack_through(seq);
            }
        });
    }

    /// Acknowledges the changes returned so far without asking for the next item.
    fn ack(&self, py: Python<'_>) {
        py.allow_threads(|| {
            if let Some(changes) = self.lock().as_mut() {
                changes.ack();
            }
        });
    }

    /// A handle that stops the run from any thread.
    fn stopper(&self) -> Stopper {
        Stopper {
            stop: self.stop.clone(),
        }
    }

    /// Stops the run if it still goes and waits for it: what was acknowledged is committed, the
    /// change returned last and not acknowledged is handed out again by the next run. Returns
    /// how it ended; a failed run raises SyncError.
    fn close(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.finish(py)
    }
}

impl Stream {
    /// Up to `max` items, waiting at most `timeout` seconds for the first with the GIL
    /// released; at the end of the run, how it ended (a failed run is an error).
    fn take(&self, py: Python<'_>, timeout: f64, max: usize) -> PyResult<Taken> {
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let got = py.allow_threads(|| {
            let mut guard = self.lock();
            guard
                .as_mut()
                .map(|changes| changes.next_batch(wait, max.max(1)))
        });
        match got {
            Some(Ok(items)) => Ok(Taken::Items(items)),
            Some(Err(RecvTimeoutError::Timeout)) => Ok(Taken::Nothing),
            Some(Err(RecvTimeoutError::Disconnected)) | None => Ok(Taken::End(self.finish(py)?)),
        }
    }

    /// The run, locked; a panic elsewhere while it was held does not make it unusable.
    fn lock(&self) -> MutexGuard<'_, Option<Changes>> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish(&self, py: Python<'_>) -> PyResult<&'static str> {
        let result = py.allow_threads(|| {
            let changes = self.lock().take()?;
            Some(changes.finish().map(|(outcome, mut mirror)| {
                let closed = mirror.sync().and_then(|()| mirror.close());
                (outcome, closed)
            }))
        });
        match result {
            None => Ok("stopped"),
            Some(Ok((_, Err(e)))) => Err(error("state", e)),
            Some(Ok((Outcome::RefreshDone, Ok(())))) => Ok("refresh_done"),
            Some(Ok((Outcome::Stopped, Ok(())))) => Ok("stopped"),
            Some(Err(e)) => Err(error(kind(&e), e)),
        }
    }
}
