"""The iterator API for new code."""

from syncrepl_client import watch

from conftest import wait_for  # noqa: F401


def test_watch_yields_changes_and_redelivers_what_was_not_acknowledged(slapd, data_path):
    changes = list(watch(slapd.sync_url(), state=data_path, refresh_only=True))
    assert [c.kind for c in changes] == ["add"] * 50
    assert [c.seq for c in changes] == list(range(1, 51))
    assert changes[0].entry_uuid.count("-") == 4
    slapd.modify(f"dn: {slapd.person(7)}\nchangetype: modify\nreplace: sn\nsn: New\n")
    slapd.modify(f"dn: {slapd.person(8)}\nchangetype: delete\n")
    for change in watch(slapd.sync_url(), state=data_path, refresh_only=True):
        first = change
        break
    again = list(watch(slapd.sync_url(), state=data_path, refresh_only=True))
    assert len(again) == 2, again
    assert (again[0].seq, again[0].kind, again[0].dn) == (first.seq, first.kind, first.dn)
    assert again[1].seq == first.seq + 1
    by_kind = {c.kind: c for c in again}
    assert by_kind["modify"].dn == slapd.person(7)
    assert by_kind["modify"].added == {"sn": [b"New"]}
    assert by_kind["modify"].removed["sn"] != []
    assert by_kind["delete"].dn == slapd.person(8)
    assert list(watch(slapd.sync_url(), state=data_path, refresh_only=True)) == []
