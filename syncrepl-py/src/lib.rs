//! The native half of the Python package `syncrepl_client`: a sync run of the `syncrepl` facade on
//! a thread of its own, pulled one item at a time by Python with the GIL released while it waits.
//!
//! The Python half (`python/syncrepl_client`) gives the old library's API on top of `Stream`:
//! the `Syncrepl` class and its callbacks, and the `watch()` iterator. Options are the command's:
//! a `syncrepl watch` argument list is parsed by the same code, so a flag exists once.

mod attributes;
mod error;
mod items;
mod stream;

use pyo3::prelude::*;

use crate::error::SyncError;
use crate::items::{PyChange, Snapshot};
use crate::stream::{Stopper, Stream};

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
