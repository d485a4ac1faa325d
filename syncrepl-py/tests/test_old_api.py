"""Programs written against the old syncrepl_client API, against a real slapd."""

import os
import signal
import threading
import time

import pytest

import syncrepl_client
from syncrepl_client import Syncrepl, SyncreplMode
from syncrepl_client.callbacks import BaseCallback
from syncrepl_client.exceptions import (
    ClosedError,
    LDAPUrlConflict,
    LDAPUrlError,
    LDAPUrlParseError,
)

from conftest import wait_for


def mirror_callback():
    """A callback class with class methods, as the old documentation shows, keeping a dict."""

    class Mirror(BaseCallback):
        entries = {}
        events = []
        bound = []
        refreshed = []

        @classmethod
        def bind_complete(cls, ldap):
            cls.bound.append(ldap.whoami)

        @classmethod
        def refresh_done(cls, items):
            some = next(iter(items))
            assert {k: sorted(v) for k, v in items[some].items()} == cls.entries[some]
            assert some in items and len(items) == len(cls.entries)
            cls.refreshed.append(len(items))

        @classmethod
        def record_add(cls, dn, attrs):
            cls.events.append(("add", dn))
            cls.entries[dn] = {k: sorted(v) for k, v in attrs.items()}

        @classmethod
        def record_delete(cls, dn):
            cls.events.append(("delete", dn))
            del cls.entries[dn]

        @classmethod
        def record_rename(cls, old_dn, new_dn):
            cls.events.append(("rename", old_dn, new_dn))
            cls.entries[new_dn] = cls.entries.pop(old_dn)

        @classmethod
        def record_change(cls, dn, old_attrs, new_attrs):
            cls.events.append(("change", dn))
            assert {k: sorted(v) for k, v in old_attrs.items()} == cls.entries[dn]
            cls.entries[dn] = {k: sorted(v) for k, v in new_attrs.items()}

    return Mirror


def test_refresh_then_persist_then_restart_from_the_data_path(slapd, data_path):
    cb = mirror_callback()
    client = Syncrepl(
        data_path, cb, SyncreplMode.REFRESH_ONLY, slapd.sync_url(reader=True),
        allow_cleartext_password=True,
    )
    assert cb.bound, "bind_complete is called by the constructor"
    while client.poll():
        pass
    client.unbind()
    assert cb.entries == slapd.search()
    stored = open(os.path.join(data_path, "ldap_url")).read()
    assert "X-BINDPW" not in stored and slapd.info["reader_pw"] not in stored
    with pytest.raises(ClosedError):
        client.poll()

    # Refresh and persist in a thread, from the data path alone (the URL was stored), with the
    # password given apart.
    cb.events.clear()
    client = Syncrepl(
        data_path, cb, SyncreplMode.REFRESH_AND_PERSIST,
        password=slapd.info["reader_pw"], allow_cleartext_password=True,
    )
    thread = threading.Thread(target=client.run)
    thread.start()
    wait_for(lambda: cb.refreshed, what="refresh_done")
    base = slapd.base
    slapd.modify(
        f"dn: uid=newbie,ou=people,{base}\nchangetype: add\nobjectClass: inetOrgPerson\n"
        "uid: newbie\ncn: New\nsn: Bie\n"
    )
    slapd.modify(f"dn: {slapd.person(1)}\nchangetype: modify\nreplace: sn\nsn: Changed\n")
    slapd.modify(
        f"dn: {slapd.person(2)}\nchangetype: modrdn\nnewrdn: uid=renamed\ndeleteoldrdn: 1\n"
    )
    slapd.modify(f"dn: {slapd.person(3)}\nchangetype: delete\n")
    wait_for(lambda: ("delete", slapd.person(3)) in cb.events, what="the delete")
    client.please_stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    client.unbind()
    kinds = [e[0] for e in cb.events]
    assert kinds == ["add", "change", "rename", "change", "delete"], cb.events
    assert cb.events[2] == ("rename", slapd.person(2), f"uid=renamed,ou=people,{base}")
    assert cb.entries == slapd.search()

    # Nothing changed meanwhile: a restart says nothing.
    cb.events.clear()
    with Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, slapd.sync_url()) as client:
        client.run()
    assert cb.events == []


def test_a_raising_callback_loses_nothing(slapd, data_path):
    class Boom(Exception):
        pass

    cb = mirror_callback()
    Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, slapd.sync_url()).run()
    slapd.modify(f"dn: {slapd.person(5)}\nchangetype: modify\nreplace: sn\nsn: First\n")
    slapd.modify(f"dn: {slapd.person(6)}\nchangetype: modify\nreplace: sn\nsn: Second\n")

    class Raising(BaseCallback):
        seen = []

        def record_change(self, dn, old_attrs, new_attrs):
            self.seen.append(dn)
            if dn == slapd.person(6):
                raise Boom(dn)

    raising = Raising()
    client = Syncrepl(data_path, raising, SyncreplMode.REFRESH_ONLY)
    with pytest.raises(Boom):
        client.run()
    assert raising.seen == [slapd.person(5), slapd.person(6)]
    with pytest.raises(ClosedError):
        client.poll()

    again = Raising()
    again.seen = []
    Raising.seen = again.seen
    cb.events.clear()
    Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY).run()
    assert cb.events == [("change", slapd.person(6))], "the change not acknowledged comes again"


def test_please_stop_from_another_thread_ends_run_within_a_second(slapd, data_path):
    cb = mirror_callback()
    client = Syncrepl(data_path, cb, SyncreplMode.REFRESH_AND_PERSIST, slapd.sync_url())
    thread = threading.Thread(target=client.run)
    thread.start()
    wait_for(lambda: cb.refreshed, what="refresh_done")
    started = time.monotonic()
    client.please_stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    client.unbind()


def test_ctrl_c_interrupts_poll_on_the_main_thread(slapd, data_path):
    cb = mirror_callback()
    client = Syncrepl(data_path, cb, SyncreplMode.REFRESH_AND_PERSIST, slapd.sync_url())
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # then installs no handler of its own: this test sets Python's default for its duration.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    # Should the interrupt never arrive, the run stops and pytest.raises fails, instead of the
    # test waiting forever.
    rescue = threading.Timer(10, client.please_stop)
    timer.start()
    rescue.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.run()
    finally:
        rescue.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 5
    client.unbind()
    assert cb.refreshed


def test_please_stop_from_a_signal_handler(slapd, data_path):
    cb = mirror_callback()
    client = Syncrepl(data_path, cb, SyncreplMode.REFRESH_AND_PERSIST, slapd.sync_url())
    previous = signal.signal(signal.SIGUSR1, lambda *_: client.please_stop())
    try:
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
        client.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    client.unbind()


def test_bad_urls_and_a_data_path_of_another_search(slapd, data_path):
    cb = mirror_callback()
    for bad in ["http://x/", "ldap://x/o=x??subtree", "ldap://x/o=x???(cn="]:
        with pytest.raises(LDAPUrlParseError):
            Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, bad)
    with pytest.raises(LDAPUrlError):
        Syncrepl(data_path + "-empty", cb, SyncreplMode.REFRESH_ONLY)
    with pytest.raises(TypeError):
        Syncrepl(data_path, cb, "refreshOnly", slapd.sync_url())
    Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, slapd.sync_url()).run()
    with pytest.raises(LDAPUrlConflict):
        Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, slapd.sync_url("(uid=user0001*)"))
    assert issubclass(syncrepl_client.exceptions.LDAPURLParseError, LDAPUrlError)


def test_an_ldapurl_like_object(slapd, data_path):
    class LDAPUrl:
        urlscheme = "ldap"
        hostport = slapd.url.removeprefix("ldap://")
        dn = slapd.base
        attrs = ["cn", "sn"]
        scope = 2
        filterstr = "(objectClass=inetOrgPerson)"
        who = None
        cred = None

    cb = mirror_callback()
    Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, LDAPUrl()).run()
    assert len(cb.entries) == 50
    assert all(set(a) <= {"cn", "sn"} for a in cb.entries.values())
