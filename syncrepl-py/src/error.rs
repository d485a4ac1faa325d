//! The one exception of the sync run, `SyncError(kind, message)`, and how a facade error maps to
//! its kind.

use pyo3::prelude::*;
use syncrepl::exit;

pyo3::create_exception!(
    _native,
    SyncError,
    pyo3::exceptions::PyException,
    "A failure of the sync run; args are (kind, message), kind naming the cause the way the \
     command's exit codes do."
);

/// The kind of a facade error, for the Python exception hierarchy.
pub(crate) fn kind(e: &syncrepl::Error) -> &'static str {
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

pub(crate) fn error(kind: &str, message: impl std::fmt::Display) -> PyErr {
    SyncError::new_err((kind.to_owned(), message.to_string()))
}
