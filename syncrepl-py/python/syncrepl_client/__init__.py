"""RFC 4533 LDAP Content Synchronization ("syncrepl") for Python, on the syncrepl Rust core.

Two ways in:

- the old library's API: :class:`Syncrepl` with a callback class (see
  :mod:`syncrepl_client.callbacks`), ``poll()``, ``run()``, ``please_stop()`` and ``unbind()``;
- for new code, :func:`watch`, an iterator of :class:`Change` objects.

The sync runs on a native thread; Python waits for it with the GIL released. A change is
acknowledged once the callback for it returned (or the iterator was asked for the next one), and
the state directory's cookie moves only past acknowledged changes: a callback that raises loses
nothing, the next run delivers that change again with the same ``seq``.
"""

import enum
import functools
import inspect
import os
from collections.abc import Mapping

from . import callbacks, exceptions
from ._native import Change, Stream, SyncError

__all__ = ["Syncrepl", "SyncreplMode", "Change", "watch", "callbacks", "exceptions"]

__version__ = "1.0.0"

#: How long one wait on the native run lasts before Python looks at its signals again.
_TICK = 0.1

#: The callbacks of the changes, in the order the native dispatch takes them.
_CHANGES = ("record_add", "record_delete", "record_rename", "record_change")

#: How many items one call to the native run may return.
_BATCH = 1024

#: The file in the data directory that keeps the LDAP URL, without its password.
_URL_FILE = "ldap_url"

#: python-ldap's SimpleLDAPObject arguments that the old constructor passed on; they have no
#: meaning here and are accepted for compatibility.
_IGNORED = {"trace_level", "trace_file", "trace_stack_limit", "bytes_mode", "bytes_strictness"}

_SCOPES = {0: "base", 1: "one", 2: "sub"}


class SyncreplMode(enum.Enum):
    """The search mode; fixed for the life of a :class:`Syncrepl` instance."""

    REFRESH_ONLY = "refreshOnly"
    """Bring the data in sync with the server, then :meth:`Syncrepl.poll` returns False."""

    REFRESH_AND_PERSIST = "refreshAndPersist"
    """Refresh, then receive every change as it happens until :meth:`Syncrepl.please_stop`."""


def _url_text(url):
    """An LDAP URL string from a string or an object with python-ldap ``LDAPUrl``'s fields."""
    if isinstance(url, str):
        return url
    if hasattr(url, "unparse"):
        return url.unparse()
    from urllib.parse import quote

    scheme = getattr(url, "urlscheme", "ldap") or "ldap"
    hostport = getattr(url, "hostport", "") or ""
    dn = quote(getattr(url, "dn", "") or "", safe="=,+ ")
    attrs = ",".join(getattr(url, "attrs", None) or [])
    scope = getattr(url, "scope", None)
    scope = _SCOPES.get(scope, scope) if scope is not None else ""
    filterstr = quote(getattr(url, "filterstr", "") or "", safe="()=*&|!")
    extensions = []
    who = getattr(url, "who", None)
    cred = getattr(url, "cred", None)
    if who:
        extensions.append("bindname=" + quote(who, safe="="))
    if cred:
        extensions.append("X-BINDPW=" + quote(cred, safe=""))
    return f"{scheme}://{hostport}/{dn}?{attrs}?{scope}?{filterstr}?{','.join(extensions)}"


def _without_password(url):
    """The URL without its ``X-BINDPW`` extension: what is stored with the data."""
    parts = url.split("?", 4)
    if len(parts) < 5:
        return url
    kept = [
        e for e in parts[4].split(",") if e.lstrip("!").split("=", 1)[0].lower() != "x-bindpw"
    ]
    parts[4] = ",".join(kept)
    return "?".join(parts).rstrip("?")


def _flags(options):
    """`syncrepl watch` flags for the keyword arguments."""
    flags = []
    for name, value in options.items():
        if name in _IGNORED:
            continue
        if name == "starttls":
            flags += ["--starttls"] if value else []
        elif name in (
            "allow_cleartext_password", "reset", "sasl_external", "sasl_gssapi", "no_reload"
        ):
            flags += [f"--{name.replace('_', '-')}"] if value else []
        elif name in (
            "ca_file",
            "client_cert",
            "client_key",
            "retry",
            "fsync",
            "expect_identity",
            "sasl_authzid",
            "sasl_secprops",
            "sasl_principal",
            "connect_timeout",
            "request_timeout",
        ):
            if value is not None:
                flags += [f"--{name.replace('_', '-')}", str(value)]
        else:
            raise TypeError(f"unknown keyword argument {name!r}")
    return flags


def _open(urls, state, persist, options, snapshot):
    bind_dn = options.pop("bind_dn", None)
    password = options.pop("password", None)
    try:
        return Stream(
            urls, state, persist, _flags(options), bind_dn, password, snapshot
        )
    except SyncError as e:
        raise exceptions._translate(e) from None


class _Items(Mapping):
    """The entries when a refresh ended: a read-only mapping of DN to attributes."""

    def __init__(self, snapshot):
        self._snapshot = snapshot

    def __getitem__(self, dn):
        return self._snapshot.get(dn)

    def __iter__(self):
        return iter(self._snapshot.dns())

    def __len__(self):
        return len(self._snapshot)


def _nothing(*args):
    pass


def _accepts(method, name):
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


class Syncrepl:
    """A syncrepl client with the old library's API.

    ``data_path`` is the directory holding the mirror (created if missing); ``callback`` a class
    or instance with the methods of :class:`~syncrepl_client.callbacks.BaseCallback`; ``mode`` a
    :class:`SyncreplMode`; ``ldap_url`` an RFC 4516 URL string (``bindname`` and ``X-BINDPW``
    extensions for a simple bind, ``bindname=GSSAPI`` for Kerberos) or an object with python-ldap ``LDAPUrl``'s fields. The URL is
    stored with the data without its password and used when ``ldap_url`` is omitted; a URL whose
    search part differs from the stored one raises
    :class:`~syncrepl_client.exceptions.LDAPUrlConflict`.

    Keyword arguments: ``starttls``, ``ca_file``, ``client_cert``, ``client_key``,
    ``bind_dn``, ``password``, ``allow_cleartext_password`` (a password is otherwise never sent
    without TLS or ldapi), ``sasl_gssapi``, ``sasl_authzid``, ``sasl_secprops`` (``-O``, e.g.
    ``"minssf=56"``), ``sasl_principal``, ``expect_identity``, ``retry`` (slapd's ``"5 10 60 +"`` or ``"none"``),
    ``fsync`` (``always``, ``group``, ``never``), ``reset``, ``connect_timeout``,
    ``request_timeout``.

    The constructor starts the sync; it returns once the client is bound (calling
    ``bind_complete``) or once a change left over from a previous run is ready.
    """

    def __init__(self, data_path, callback, mode, ldap_url=None, **kwargs):
        if not isinstance(mode, SyncreplMode):
            raise TypeError("mode must be a SyncreplMode")
        self.callback = callback
        self.mode = mode
        self.whoami = None
        self.deleted = False
        self._closed = False
        self._pending = None
        self._stream = None
        self._data_path = os.fspath(data_path)
        url_file = os.path.join(self._data_path, _URL_FILE)
        if ldap_url is None:
            try:
                with open(url_file, encoding="utf-8") as f:
                    url = f.read().strip()
            except FileNotFoundError:
                raise exceptions.LDAPUrlError(
                    f"no LDAP URL given and none stored in {self._data_path}"
                ) from None
        else:
            url = _url_text(ldap_url)
        self._stream = _open(
            [url],
            self._data_path,
            mode is SyncreplMode.REFRESH_AND_PERSIST,
            dict(kwargs),
            snapshot=mode is SyncreplMode.REFRESH_AND_PERSIST,
        )
        self._stopper = self._stream.stopper()
        stored = _without_password(url)
        temporary = url_file + ".new"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(stored + "\n")
        os.replace(temporary, url_file)
        self._methods = {}
        self._send_cookies = _accepts(getattr(callback, "cookie_change", None), "cookie")
        batch = None
        while batch is None:
            batch = self._next()
        if batch[0][0] == "bound":
            self._guarded(batch[:1])
            batch = batch[1:]
        self._pending = batch or None

    def __enter__(self):
        return self

    def __exit__(self, exception_type, value, traceback):
        self.unbind()
        return False

    def _check(self):
        if self._closed:
            raise exceptions.ClosedError("this Syncrepl instance was unbound")

    def _next(self, timeout=_TICK):
        try:
            return self._stream.next_batch(timeout, _BATCH)
        except SyncError as e:
            raise exceptions._translate(e) from None

    def _method(self, name):
        """The callback's method `name` (a no-op if it has none), given ``cursor=None`` if it
        takes one."""
        method = self._methods.get(name)
        if method is None:
            method = getattr(self.callback, name, None)
            if method is None:
                method = _nothing
            elif _accepts(method, "cursor"):
                method = functools.partial(method, cursor=None)
            self._methods[name] = method
        return method

    def _call(self, name, *args):
        self._method(name)(*args)

    def _dispatch(self, item):
        """Hands one item to the callback; False once the run is over."""
        what = item[0]
        if what == "change":
            change = item[1]
            kind = change.kind
            if kind == "add":
                self._call("record_add", change.dn, change.attributes)
            elif kind == "delete":
                self._call("record_delete", change.dn)
            elif kind == "rename":
                self._call("record_rename", change.old_dn, change.dn)
                if change.added or change.removed:
                    self._call("record_change", change.dn, change.old_attributes, change.attributes)
            else:
                self._call("record_change", change.dn, change.old_attributes, change.attributes)
        elif what == "bound":
            self.whoami = item[1]
            self._call("bind_complete", self)
        elif what == "refresh_done":
            if self.mode is SyncreplMode.REFRESH_AND_PERSIST and item[2] is not None:
                self._call("refresh_done", _Items(item[2]))
        elif what == "cookie":
            if self._send_cookies:
                self._call("cookie_change", item[1])
        elif what == "end":
            return False
        return True

    def poll(self):
        """Waits for what the server sends next and hands it to the callback; returns False once
        the refresh is done (refresh-only) or the search was stopped, else True.

        The wait releases the GIL; on the main thread Ctrl-C raises KeyboardInterrupt from here.
        """
        self._check()
        batch, self._pending = self._pending, None
        if batch is not None:
            return self._guarded(batch)
        methods = [self._method(name) for name in _CHANGES]
        while True:
            try:
                going = self._stream.dispatch(*methods, self._dispatch, _TICK, _BATCH)
            except SyncError as e:
                raise exceptions._translate(e) from None
            except BaseException:
                self._fail()
                raise
            if going is not None:
                return going

    def _guarded(self, batch):
        """Dispatches a batch of items; False once the run is over. If a callback raises, the
        changes before acknowledged, the run stops with that change not acknowledged (the next
        run delivers it again) and the exception propagates."""
        done = 0
        try:
            for item in batch:
                if not self._dispatch(item):
                    return False
                if item[0] == "change":
                    done = item[1].seq
        except BaseException:
            if done:
                self._stream.ack_through(done)
            self._fail()
            raise
        return True

    def _fail(self):
        """A callback raised: the run stops, with what it acknowledged committed."""
        self._closed = True
        self.deleted = True
        self._stream.close()

    def run(self):
        """Calls :meth:`poll` until it returns False."""
        while self.poll():
            pass

    def please_stop(self):
        """Asks the search to stop safely; :meth:`poll` then returns False. Thread-safe, and safe
        to call from a signal handler."""
        self._check()
        self._stopper.stop()

    def unbind(self):
        """Stops the search if it still runs, commits what the callback acknowledged and closes
        the data; the instance cannot be used afterwards."""
        if self._closed:
            return True
        self._closed = True
        self.deleted = True
        if self._stream is not None:
            try:
                self._stream.close()
            except SyncError as e:
                raise exceptions._translate(e) from None
        return True


def watch(url, state=None, *, refresh_only=False, **options):
    """Yields every :class:`Change` of the search of ``url`` (a string, or several servers with
    the same content in a list), mirrored in the directory ``state`` (in memory when None).

    A change is acknowledged when the next one is asked for; leaving the loop (``break``, an
    exception) stops the search, and a change not acknowledged is yielded again by the next run.
    Keyword arguments as for :class:`Syncrepl`.
    """
    urls = [url] if isinstance(url, str) else [_url_text(u) for u in url]
    stream = _open(urls, None if state is None else os.fspath(state), not refresh_only,
                   dict(options), snapshot=False)
    taken = 0
    try:
        while True:
            try:
                batch = stream.next_batch(_TICK, _BATCH)
            except SyncError as e:
                raise exceptions._translate(e) from None
            for item in batch or ():
                if item[0] == "change":
                    yield item[1]
                    taken = item[1].seq
                elif item[0] == "end":
                    return
    finally:
        try:
            if taken:
                stream.ack_through(taken)
            stream.close()
        except SyncError as e:
            raise exceptions._translate(e) from None
