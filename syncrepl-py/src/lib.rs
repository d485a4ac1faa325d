//! The native half of the Python package `syncrepl_client`: a sync run of the `syncrepl` facade on
//! a thread of its own, pulled one item at a time by Python with the GIL released while it waits.
//!
//! The Python half (`python/syncrepl_client`) gives the old library's API on top of `Stream`:
//! the `Syncrepl` class and its callbacks, and the `watch()` iterator. Options are the command's:
//! a `syncrepl watch` argument list is parsed by the same code, so a flag exists once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use clap::Parser;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use syncrepl::cli::{Cli, Command};
use syncrepl::mio::{Credentials, Outcome, StopHandle};
use syncrepl::proto::AttributeList;
use syncrepl::state::{Entry, Mirror, SearchSpec};
use syncrepl::{changes_with, exit, Change, Changes, Item, PullOptions, RecvTimeoutError};

pyo3::create_exception!(
    _native,
    SyncError,
    pyo3::exceptions::PyException,
    "A failure of the sync run; args are (kind, message), kind naming the cause the way the \
     command's exit codes do."
);

/// The kind of a facade error, for the Python exception hierarchy.
fn kind(e: &syncrepl::Error) -> &'static str {
    match exit::code(e) {
        exit::USAGE => "usage",
        exit::CONNECTION => "connect",
        exit::AUTHENTICATION => "auth",
        exit::PROTOCOL => "protocol",
        exit::REFRESH_REQUIRED => "refresh_required",
        exit::SEARCH => "search",
        exit::STATE => "state",
        exit::CONSUMER => "consumer",
        _ => "failure",
    }
}

fn error(kind: &str, message: impl std::fmt::Display) -> PyErr {
    SyncError::new_err((kind.to_owned(), message.to_string()))
}

/// At most this many attribute names are kept as Python strings (a directory has a few hundred).
const NAMES: usize = 4096;

/// The Python strings of attribute names: the few names of a directory are made once, not once
/// an entry.
type NameCache = HashMap<String, Py<PyString>>;

fn name_cache() -> MutexGuard<'static, NameCache> {
    static CACHE: OnceLock<Mutex<NameCache>> = OnceLock::new();
    CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The Python string of an attribute name, from the cache when it is there.
fn attribute_name<'py>(py: Python<'py>, cache: &mut NameCache, name: &str) -> Bound<'py, PyString> {
    if let Some(held) = cache.get(name) {
        return held.bind(py).clone();
    }
    let made = PyString::new(py, name);
    if cache.len() < NAMES {
        cache.insert(name.to_owned(), made.clone().unbind());
    }
    made
}

/// Attributes as python-ldap gives them: a dict of lists of bytes, in the order the server sent.
fn attributes<'py>(py: Python<'py>, list: &AttributeList) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let mut cache = name_cache();
    for attribute in list {
        let name = attribute_name(py, &mut cache, attribute.name);
        let values = PyList::empty(py);
        for value in attribute.values {
            values.append(PyBytes::new(py, value))?;
        }
        let before = dict.len();
        dict.set_item(&name, &values)?;
        if dict.len() == before {
            // The same attribute twice in one entry: rare; the values go together, in order.
            let merged = PyList::empty(py);
            for v in list
                .into_iter()
                .filter(|a| a.name == attribute.name)
                .flat_map(|a| a.values)
            {
                merged.append(PyBytes::new(py, v))?;
            }
            dict.set_item(name, merged)?;
        }
    }
    Ok(dict)
}

/// One change of the mirror (see `syncrepl_state::Change`), its fields built on access.
#[pyclass(frozen, module = "syncrepl_client._native", name = "Change")]
struct PyChange {
    inner: Change,
}

#[pymethods]
impl PyChange {
    /// The sequence number: growing by one within a run, the same when handed out again.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// `add`, `modify`, `rename` (a modify that renamed) or `delete`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.label()
    }

    /// The DN after the change (for a delete, the last DN).
    #[getter]
    fn dn(&self) -> &str {
        self.inner.dn()
    }

    /// The DN before a rename, else None.
    #[getter]
    fn old_dn(&self) -> Option<&str> {
        self.inner.old_dn.as_deref()
    }

    /// The entryUUID in its text form.
    #[getter]
    fn entry_uuid(&self) -> String {
        self.inner.uuid.to_string()
    }

    /// The whole entry after the change (for a delete, its last state).
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attributes(py, &self.inner.entry.attributes)
    }

    /// The entry before the change (empty for an add).
    #[getter]
    fn old_attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attributes(py, &self.inner.old_attributes())
    }

    /// Per attribute, the values a modify added.
    #[getter]
    fn added<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.delta(py, |c| &c.added)
    }

    /// Per attribute, the values a modify removed.
    #[getter]
    fn removed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.delta(py, |c| &c.removed)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Change seq={} {} {:?}>",
            self.inner.seq,
            self.inner.label(),
            self.inner.dn()
        )
    }
}

impl PyChange {
    fn delta<'py>(
        &self,
        py: Python<'py>,
        side: impl Fn(&syncrepl::state::AttributeChange) -> &Vec<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for change in &self.inner.delta {
            let values = side(change);
            if !values.is_empty() {
                let list = PyList::new(py, values.iter().map(|v| PyBytes::new(py, v)))?;
                dict.set_item(&change.name, list)?;
            }
        }
        Ok(dict)
    }
}

/// The mirror's entries when a refresh ended, read by DN: what `refresh_done(items)` gets.
#[pyclass(frozen, module = "syncrepl_client._native")]
struct Snapshot {
    entries: Arc<Vec<Entry>>,
    by_dn: OnceLock<HashMap<String, usize>>,
}

#[pymethods]
impl Snapshot {
    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// The DNs, in no particular order.
    fn dns(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.dn.clone()).collect()
    }

    /// The attributes of the entry `dn` (as the server wrote the DN).
    fn get<'py>(&self, py: Python<'py>, dn: &str) -> PyResult<Bound<'py, PyDict>> {
        let index = self.by_dn.get_or_init(|| {
            self.entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.dn.clone(), i))
                .collect()
        });
        match index.get(dn).and_then(|&i| self.entries.get(i)) {
            Some(entry) => attributes(py, &entry.attributes),
            None => Err(PyKeyError::new_err(dn.to_owned())),
        }
    }
}

/// Stops a [`Stream`] from any thread or a signal handler.
#[pyclass(frozen, module = "syncrepl_client._native")]
struct Stopper {
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
struct Stream {
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

/// One change to the callable for its kind (see [`Stream::dispatch`]).
fn hand_change(
    py: Python<'_>,
    c: &Change,
    add: &Bound<'_, PyAny>,
    delete: &Bound<'_, PyAny>,
    rename: &Bound<'_, PyAny>,
    change: &Bound<'_, PyAny>,
) -> PyResult<()> {
    match c.label() {
        "add" => {
            add.call1((c.dn(), attributes(py, &c.entry.attributes)?))?;
        }
        "delete" => {
            delete.call1((c.dn(),))?;
        }
        label => {
            if let (Some(old_dn), "rename") = (&c.old_dn, label) {
                rename.call1((old_dn.as_str(), c.dn()))?;
                if c.delta.is_empty() {
                    return Ok(());
                }
            }
            let old = attributes(py, &c.old_attributes())?;
            change.call1((c.dn(), old, attributes(py, &c.entry.attributes)?))?;
        }
    }
    Ok(())
}

/// An item of the run as the Python side reads it (see `Stream.next`).
fn item_tuple(py: Python<'_>, item: Item) -> PyResult<Bound<'_, PyTuple>> {
    let tuple = match item {
        Item::Bound { authz_id } => PyTuple::new(
            py,
            [
                "bound".into_pyobject(py)?.into_any(),
                authz_id.into_pyobject(py)?.into_any(),
            ],
        )?,
        Item::Change(change) => PyTuple::new(
            py,
            [
                "change".into_pyobject(py)?.into_any(),
                Bound::new(py, PyChange { inner: change })?.into_any(),
            ],
        )?,
        Item::RefreshDone { entries, snapshot } => {
            let snapshot = match snapshot {
                Some(entries) => Bound::new(
                    py,
                    Snapshot {
                        entries,
                        by_dn: OnceLock::new(),
                    },
                )?
                .into_any(),
                None => py.None().into_bound(py),
            };
            PyTuple::new(
                py,
                [
                    "refresh_done".into_pyobject(py)?.into_any(),
                    entries.into_pyobject(py)?.into_any(),
                    snapshot,
                ],
            )?
        }
        Item::Cookie(cookie) => PyTuple::new(
            py,
            [
                "cookie".into_pyobject(py)?.into_any(),
                cookie.map(|c| c.to_string()).into_pyobject(py)?.into_any(),
            ],
        )?,
    };
    Ok(tuple)
}

/// The native module of `syncrepl_client`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stream>()?;
    m.add_class::<Stopper>()?;
    m.add_class::<PyChange>()?;
    m.add_class::<Snapshot>()?;
    m.add("SyncError", m.py().get_type::<SyncError>())?;
    Ok(())
}
