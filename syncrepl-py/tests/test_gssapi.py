"""Kerberos: the old API's `bindname=GSSAPI` against a slapd of a throwaway MIT realm."""

import os

from syncrepl_client import Syncrepl, SyncreplMode

from conftest import Slapd
from test_old_api import mirror_callback


def test_bindname_gssapi_binds_with_the_ticket_and_is_stored(monkeypatch, data_path):
    server = Slapd(people=20, extra=["--gssapi"])
    try:
        info = server.info
        missing = os.path.join(info["dir"], "no-such.keytab")
        monkeypatch.setenv("KRB5_CONFIG", info["krb5_config"])
        monkeypatch.setenv("KRB5CCNAME", "FILE:" + info["ccache"])
        monkeypatch.setenv("KRB5_CLIENT_KTNAME", missing)
        monkeypatch.setenv("KRB5_KTNAME", missing)
        host = server.url.replace("127.0.0.1", "localhost")
        url = f"{host}/{server.base}??sub?(objectClass=inetOrgPerson)?bindname=GSSAPI"
        cb = mirror_callback()
        client = Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY, url,
                          expect_identity="dn:" + info["reader_dn"])
        while client.poll():
            pass
        client.unbind()
        assert cb.bound == ["dn:" + info["reader_dn"]]
        assert len(cb.entries) == 20
        with open(os.path.join(data_path, "ldap_url")) as f:
            assert "bindname=GSSAPI" in f.read()
        server.modify(f"dn: {server.person(3)}\nchangetype: delete\n")
        again = Syncrepl(data_path, cb, SyncreplMode.REFRESH_ONLY)
        again.run()
        again.unbind()
        assert ("delete", server.person(3)) in cb.events
        assert len(cb.entries) == 19
    finally:
        server.stop()
