#!/usr/bin/env python3
"""What two OpenLDAP providers (serverID 1 and 2, multi-provider) send when a consumer resumes.

A consumer mirrors N people from provider 1, then follows a persist session in which 10 changes
are made on each provider, and stops. 20 more changes are made (10 on each). The resume is then
asked for three times, each through a relay that counts the bytes the server sends:

- with the cookie as the server last sent it (what a client that keeps the last cookie stores:
  one serverID's CSN and a sid), by `ldapsearch -E sync=ro/COOKIE`;
- with the cookie `syncrepl` keeps (every serverID's newest CSN, no sid), by `ldapsearch`;
- by `syncrepl watch --refresh-only` itself.

Run it through bench/run.sh (which builds the binaries), or:
    bench/multiprovider.py --syncrepl target/release/syncrepl \
        --launcher target/release/examples/providers 2000 100000
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

FILTER = "(objectClass=inetOrgPerson)"


class Providers:
    """Two providers started by the testkit's `providers` example; they stop when its stdin closes."""

    def __init__(self, launcher, people):
        self.proc = subprocess.Popen(
            [launcher, "--count", "2", "--people", str(people)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = {}
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                break
            key, _, value = line.partition("=")
            self.info[key] = value
        if "url2" not in self.info:
            raise SystemExit("the providers launcher did not start")
        self.urls = [self.info["url1"], self.info["url2"]]
        self.base = self.info["base"]

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def bind(self, i, who="admin"):
        return ["-x", "-H", self.urls[i], "-D", self.info[f"{who}_dn"], "-w", self.info[f"{who}_pw"]]

    def modify(self, i, ldif):
        subprocess.run(
            ["ldapmodify", "-c"] + self.bind(i), input=ldif, text=True, check=True,
            stdout=subprocess.DEVNULL,
        )

    def context_csns(self, i):
        out = subprocess.run(
            ["ldapsearch", "-LLL"] + self.bind(i) + ["-b", self.base, "-s", "base", "contextCSN"],
            capture_output=True, text=True, check=True,
        ).stdout
        return sorted(re.findall(r"^contextCSN: (\S+)", out, re.M))

    def wait_converged(self):
        deadline = time.time() + 120
        while self.context_csns(0) != self.context_csns(1):
            if time.time() > deadline:
                raise SystemExit("the providers did not converge")
            time.sleep(0.1)

    def sync_url(self, i):
        return f"{self.urls[i]}/{self.base}??sub?{FILTER}"


def changes(providers, tag, start, count):
    """`count` modifies alternating between the providers; returns the markers to wait for."""
    markers = []
    for k in range(count):
        marker = f"{tag}-{k}"
        uid = f"user{start + k:05d}"
        providers.modify(
            k % 2,
            f"dn: uid={uid},ou=people,{providers.base}\nchangetype: modify\n"
            f"replace: description\ndescription: {marker}\n",
        )
        markers.append(marker)
    return markers


class Relay:
    """Accepts one connection and forwards it to `url`, counting the bytes the server sends."""

    def __init__(self, url):
        host, port = url.removeprefix("ldap://").rstrip("/").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ldap://127.0.0.1:{self.listener.getsockname()[1]}"
        self.bytes = 0
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def pump(self, src, dst, count):
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            if count:
                self.bytes += len(data)
            dst.sendall(data)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def serve(self):
        client, _ = self.listener.accept()
        upstream = socket.create_connection(self.upstream)
        up = threading.Thread(target=self.pump, args=(client, upstream, False))
        up.start()
        self.pump(upstream, client, True)
        up.join()
        client.close()
        upstream.close()

    def done(self):
        self.thread.join(timeout=600)
        self.listener.close()
        return self.bytes


def ldapsearch_resume(providers, cookie):
    relay = Relay(providers.urls[0])
    argv = ["ldapsearch", "-LLL"] + providers.bind(0, "reader") + [
        "-b", providers.base, "-s", "sub", "-E", f"!sync=ro/{cookie}", FILTER,
    ]
    argv[argv.index(providers.urls[0])] = relay.url
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.count("\ndn: ") + out.startswith("dn: "), relay.done()


def syncrepl_argv(args, providers, url, state, persist):
    argv = [
        args.syncrepl, "watch", url, "--state", state, "--format", "json",
        "-D", providers.info["reader_dn"], "--password-env", "BENCH_PW",
        "--allow-cleartext-password",
    ]
    if not persist:
        argv.append("--refresh-only")
    return argv


def status(args, state):
    out = subprocess.run(
        [args.syncrepl, "status", "--state", state], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines())
    )
    return fields["cookie"], fields.get("server sent", fields["cookie"])


def run(args, people):
    providers = Providers(args.launcher, people)
    env = dict(os.environ, BENCH_PW=providers.info["reader_pw"])
    state = tempfile.mkdtemp(prefix="syncrepl-bench-mp-")
    try:
        url = providers.sync_url(0)
        subprocess.run(
            syncrepl_argv(args, providers, url, state, False), env=env, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        watch = subprocess.Popen(
            syncrepl_argv(args, providers, url, state, True), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for line in watch.stderr:
            if "refresh done" in line:
                break
        threading.Thread(target=lambda: watch.stderr.read(), daemon=True).start()
        pending = set(changes(providers, "persist", 10, 20))
        for line in watch.stdout:
            pending = {m for m in pending if m not in line}
            if not pending:
                break
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=60)
        merged, raw = status(args, state)
        changes(providers, "resume", 100, 20)
        providers.wait_converged()
        before = ldapsearch_resume(providers, raw)
        after = ldapsearch_resume(providers, merged)
        relay = Relay(providers.urls[0])
        resume_url = f"{relay.url}/{providers.base}??sub?{FILTER}"
        done = subprocess.run(
            syncrepl_argv(args, providers, resume_url, state, False), env=env, check=True,
            capture_output=True, text=True,
        )
        ours = relay.done()
        mirrored = re.search(r"(\d+) changes", done.stderr)
        print(f"N = {people}: resume after a persist session with changes on both providers, "
              "then 20 changes", flush=True)
        print(f"  cookie as last sent  {raw}")
        print(f"  cookie kept          {merged}")
        print(f"  {'resume with':<44} {'entries sent':>12} {'bytes sent':>12}")
        print(f"  {'the cookie as last sent (ldapsearch)':<44} {before[0]:>12} {before[1]:>12}")
        print(f"  {'the cookie syncrepl keeps (ldapsearch)':<44} {after[0]:>12} {after[1]:>12}")
        print(f"  {'syncrepl watch --refresh-only':<44} {'-':>12} {ours:>12}"
              f"  ({mirrored.group(1) if mirrored else '?'} changes)", flush=True)
        if after[0] >= before[0] and people > 100:
            raise SystemExit("the merged cookie did not make the resume smaller")
    finally:
        providers.stop()
        subprocess.run(["rm", "-rf", state], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[2000, 100000])
    parser.add_argument("--syncrepl", required=True)
    parser.add_argument("--launcher", required=True, help="the testkit's providers example")
    args = parser.parse_args()
    for people in args.sizes:
        run(args, people)


if __name__ == "__main__":
    sys.exit(main())
