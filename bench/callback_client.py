"""One program written against the syncrepl_client API, run with the old library (0.95, on
python-ldap) and with ours: a refreshOnly sync into a data directory, with a callback class that
counts what it is told (both libraries keep the mirror themselves).

Usage: callback_client.py URL DATA_PATH (the reader's password in $BENCH_PW, the bind DN in the
URL's bindname extension). Prints the number of entries on stderr.
"""

import os
import sys
import urllib.parse

import syncrepl_client
from syncrepl_client import Syncrepl, SyncreplMode
from syncrepl_client.callbacks import BaseCallback


class Counter(BaseCallback):
    entries = 0
    values = 0

    @classmethod
    def bind_complete(cls, ldap):
        pass

    @classmethod
    def record_add(cls, dn, attrs):
        cls.entries += 1
        cls.values += len(attrs)

    @classmethod
    def record_delete(cls, dn):
        cls.entries -= 1

    @classmethod
    def record_rename(cls, old_dn, new_dn):
        pass

    @classmethod
    def record_change(cls, dn, old_attrs, new_attrs):
        pass

    @classmethod
    def refresh_done(cls, items):
        pass


def main():
    url, data_path = sys.argv[1:3]
    url += ",X-BINDPW=" + urllib.parse.quote(os.environ["BENCH_PW"], safe="")
    ours = hasattr(syncrepl_client, "watch")
    extra = {"allow_cleartext_password": True} if ours else {}
    if ours and os.environ.get("BENCH_FSYNC"):
        extra["fsync"] = os.environ["BENCH_FSYNC"]
    if not ours:
        # The old library uses data_path as a prefix of its file names.
        data_path = os.path.join(data_path, "")
        os.makedirs(data_path, exist_ok=True)
    client = Syncrepl(data_path, Counter, SyncreplMode.REFRESH_ONLY, url, **extra)
    while client.poll():
        pass
    client.unbind()
    print(f"{Counter.entries} entries", file=sys.stderr)


if __name__ == "__main__":
    main()
