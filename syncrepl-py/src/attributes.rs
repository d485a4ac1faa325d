//! Attributes as python-ldap gives them (a dict of lists of bytes), with the attribute names'
//! Python strings made once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use syncrepl::proto::AttributeList;

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
pub(crate) fn attributes<'py>(
    py: Python<'py>,
    list: &AttributeList,
) -> PyResult<Bound<'py, PyDict>> {
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
