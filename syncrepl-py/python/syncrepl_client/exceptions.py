"""Exceptions of syncrepl_client, with the old library's names.

Every exception raised for a failed sync derives from :class:`SyncreplError`; the old names
(:class:`LDAPUrlError`, :class:`LDAPUrlConflict`, :class:`LDAPUrlParseError`,
:class:`ClosedError`) keep their meaning.
"""

__all__ = [
    "SyncreplError",
    "LDAPUrlError",
    "LDAPUrlParseError",
    "LDAPURLParseError",
    "LDAPUrlConflict",
    "ClosedError",
    "ServerDownError",
    "BindError",
    "ProtocolError",
    "RefreshRequiredError",
    "SearchError",
    "DataStoreError",
    "CallbackError",
]


class SyncreplError(Exception):
    """Base class of every error of a sync run."""


class LDAPUrlError(SyncreplError):
    """No usable LDAP URL: none was given and none is stored with the data."""


class LDAPUrlParseError(LDAPUrlError, ValueError):
    """The LDAP URL (or another option) is malformed; the message says where."""


LDAPURLParseError = LDAPUrlParseError
"""The old library raised this spelling; it is the same class."""


class LDAPUrlConflict(LDAPUrlError):
    """The URL's search part (base, scope, filter, attributes) differs from the one the data
    belongs to. Host and credentials may change; the search may not."""


class ClosedError(SyncreplError):
    """The instance was unbound and can no longer be used."""


class ServerDownError(SyncreplError, ConnectionError):
    """The server could not be reached (or TLS failed), and retrying did not help."""


class BindError(SyncreplError):
    """The bind failed, or the identity was not the one expected."""


class ProtocolError(SyncreplError):
    """The server broke the LDAP or RFC 4533 protocol."""


class RefreshRequiredError(SyncreplError):
    """The server requires a full refresh and reloading was turned off."""


class SearchError(SyncreplError):
    """The search failed: no such base, insufficient access, or no sync provider."""


class DataStoreError(SyncreplError, OSError):
    """The data directory: locked by another process, damaged, or not writable."""


class CallbackError(SyncreplError):
    """The consumer of the changes failed."""


_BY_KIND = {
    "usage": LDAPUrlParseError,
    "conflict": LDAPUrlConflict,
    "connect": ServerDownError,
    "auth": BindError,
    "protocol": ProtocolError,
    "refresh_required": RefreshRequiredError,
    "search": SearchError,
    "state": DataStoreError,
    "consumer": CallbackError,
}


def _translate(error):
    """The exception of this module for a native SyncError(kind, message)."""
    kind, message = error.args if len(error.args) == 2 else ("failure", str(error))
    return _BY_KIND.get(kind, SyncreplError)(message)
