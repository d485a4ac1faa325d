"""A throwaway slapd for each test, started by the testkit's `slapd` example (built by
scripts/test) and stopped when the test ends."""

import os
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.environ.get(
    "SYNCREPL_SLAPD_LAUNCHER", os.path.join(ROOT, "target", "debug", "examples", "slapd")
)
FILTER = "(objectClass=inetOrgPerson)"


class Slapd:
    def __init__(self, people=50, extra=()):
        env = dict(os.environ, PATH="/usr/sbin:" + os.environ.get("PATH", ""))
        self.proc = subprocess.Popen(
            [LAUNCHER, "--people", str(people), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = {}
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                break
            key, _, value = line.partition("=")
            self.info[key] = value
        if "url" not in self.info:
            raise RuntimeError("the slapd launcher did not start")
        self.url = self.info["url"]
        self.base = self.info["base"]

    def sync_url(self, filterstr=FILTER, reader=False):
        ext = ""
        if reader:
            ext = f"?bindname={self.info['reader_dn'].replace(',', '%2C')},X-BINDPW={self.info['reader_pw']}"
        return f"{self.url}/{self.base}??sub?{filterstr}{ext}"

    def modify(self, ldif):
        subprocess.run(
            ["ldapmodify", "-x", "-H", self.url, "-D", self.info["admin_dn"], "-w",
             self.info["admin_pw"]],
            input=ldif, text=True, check=True, stdout=subprocess.DEVNULL,
        )

    def person(self, i):
        return f"uid=user{i:05d},ou=people,{self.base}"

    def search(self, filterstr=FILTER):
        """dn -> {attribute: sorted values}, from `ldapsearch -LLL` (values are ASCII here)."""
        out = subprocess.run(
            ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", self.url, "-b", self.base,
             filterstr],
            capture_output=True, text=True, check=True,
        ).stdout
        entries = {}
        for block in out.strip().split("\n\n"):
            if not block.strip():
                continue
            lines = block.splitlines()
            dn = lines[0].removeprefix("dn: ")
            attrs = {}
            for line in lines[1:]:
                name, _, value = line.partition(": ")
                attrs.setdefault(name, []).append(value.encode())
            entries[dn] = {k: sorted(v) for k, v in attrs.items()}
        return entries

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def slapd():
    server = Slapd()
    yield server
    server.stop()


@pytest.fixture
def data_path():
    with tempfile.TemporaryDirectory(prefix="syncrepl-py-") as d:
        yield os.path.join(d, "state")


def wait_for(condition, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
