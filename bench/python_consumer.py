"""The client Python users come from: python-ldap's SyncreplConsumer keeping the mirror in a dict.

Usage: python_consumer.py URL BIND_DN BASE FILTER (password in $BENCH_PW). One refreshOnly sync,
then it prints the number of entries mirrored on stderr.
"""

import os
import sys

import ldap
from ldap.ldapobject import SimpleLDAPObject
from ldap.syncrepl import SyncreplConsumer


class DictConsumer(SyncreplConsumer, SimpleLDAPObject):
    def __init__(self, uri):
        SimpleLDAPObject.__init__(self, uri)
        self.entries = {}
        self.cookie = None

    def syncrepl_get_cookie(self):
        return self.cookie

    def syncrepl_set_cookie(self, cookie):
        self.cookie = cookie

    def syncrepl_entry(self, dn, attributes, uuid):
        self.entries[uuid] = (dn, attributes)

    def syncrepl_delete(self, uuids):
        for uuid in uuids:
            self.entries.pop(uuid, None)

    def syncrepl_present(self, uuids, refreshDeletes=False):
        pass

    def syncrepl_refreshdone(self):
        pass


def main():
    url, bind_dn, base, filterstr = sys.argv[1:5]
    consumer = DictConsumer(url)
    consumer.simple_bind_s(bind_dn, os.environ["BENCH_PW"])
    msgid = consumer.syncrepl_search(
        base, ldap.SCOPE_SUBTREE, mode="refreshOnly", filterstr=filterstr
    )
    while consumer.syncrepl_poll(msgid=msgid, all=1, timeout=-1):
        pass
    print(f"{len(consumer.entries)} entries", file=sys.stderr)


if __name__ == "__main__":
    main()
