//! What Python gets for each item of the run: `Change` objects, refresh snapshots, tuples, and
//! the calls `Stream.dispatch` makes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use syncrepl::state::Entry;
use syncrepl::{Change, Item};

use crate::attributes::attributes;

/// One change of the mirror (see `syncrepl_state::Change`), its fields built on access.
#[pyclass(frozen, module = "syncrepl_client._native", name = "Change")]
pub(crate) struct PyChange {
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
pub(crate) struct Snapshot {
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

/// One change to the callable for its kind (see [`Stream::dispatch`](crate::stream::Stream::dispatch)).
pub(crate) fn hand_change(
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
pub(crate) fn item_tuple(py: Python<'_>, item: Item) -> PyResult<Bound<'_, PyTuple>> {
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
