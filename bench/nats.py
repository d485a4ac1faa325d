#!/usr/bin/env python3
"""Fan-out through NATS JetStream: a full refresh published and acknowledged by JetStream against
`syncrepl watch --state` of the same refresh, and the persist latency from `ldapmodify` to the
message reaching a JetStream consumer (`syncrepl-nats dump --follow`), in the same run.

A third client is JetStream's floor: as many messages, of the bodies' mean size and with the same
headers and subjects, published and acknowledged by a client with nothing else to do (the
`jetstream_floor` example). The publisher's time over the floor is what it adds to JetStream's
own cost; nats-server's CPU is read from /proc for each client.

Run it through bench/run.sh, which builds the binaries. One slapd (the testkit's launcher) and
one nats-server with JetStream, both throwaway, serve every client.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from bench import FILTER, Server, measured, median, percentile


class Nats:
    """`nats-server -js` on a free loopback port with its store in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="syncrepl-bench-nats-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    if b"jetstream" in c.recv(4096):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("nats-server did not start")
            time.sleep(0.05)
        self.url = f"nats://127.0.0.1:{self.port}"

    def cpu(self):
        """CPU seconds nats-server has used so far, from /proc."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[100000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-changes", type=int, default=300)
    parser.add_argument("--syncrepl", required=True)
    parser.add_argument("--nats-bin", required=True, help="the syncrepl-nats binary")
    parser.add_argument("--launcher", required=True)
    parser.add_argument("--floor-bin", required=True, help="the jetstream_floor example")
    args = parser.parse_args()
    for n in args.sizes:
        server = Server(args.launcher, n, 1000)
        nats = Nats()
        work = tempfile.mkdtemp(prefix="syncrepl-bench-fanout-")
        env = dict(os.environ, BENCH_PW=server.info["reader_pw"])
        bind = ["-D", server.info["reader_dn"], "--password-env", "BENCH_PW",
                "--allow-cleartext-password"]
        url = server.sync_url()
        try:
            body = body_size(args, url, bind, env, n)
            watch, published, floor = [], [], []
            server_cpu = {"watch": [], "publish": [], "floor": []}

            def run_one(kind, runs, argv):
                before = nats.cpu()
                runs.append(measured(argv, env=env))
                server_cpu[kind].append(nats.cpu() - before)

            for run in range(args.runs):
                state = os.path.join(work, f"watch-{run}")
                run_one("watch", watch,
                        [args.syncrepl, "watch", url, "--state", state, "--refresh-only", *bind])
                state = os.path.join(work, f"publish-{run}")
                run_one("publish", published,
                        [args.nats_bin, "publish", url, "--state", state, "--refresh-only", *bind,
                         "--nats", nats.url, "--stream", f"BENCH{run}", "--subject", f"bench{run}"])
                run_one("floor", floor,
                        [args.floor_bin, nats.url, f"FLOOR{run}", str(n), str(body)])
            ref = median([m.wall for m in watch])
            base = median([m.wall for m in floor])
            print(f"N = {n}: full refresh, medians of {args.runs} runs (bodies {body} bytes)",
                  flush=True)
            for kind, name, runs in [
                ("watch", "syncrepl watch --state", watch),
                ("publish", "syncrepl-nats publish (acknowledged)", published),
                ("floor", "JetStream alone (jetstream_floor)", floor),
            ]:
                wall = median([m.wall for m in runs])
                cpu = median([m.cpu for m in runs])
                rss = median([m.rss_kib for m in runs]) / 1024
                print(f"  {name:<38} wall {wall:7.3f} s  cpu {cpu:7.3f} s  rss {rss:7.1f} MiB"
                      f"  nats-server cpu {median(server_cpu[kind]):6.3f} s"
                      f"  wall / watch: {wall / ref:5.2f}x  wall / floor: {wall / base:5.2f}x",
                      flush=True)
            latency(args, server, nats, work, env, bind)
        finally:
            nats.stop()
            server.stop()
            shutil.rmtree(work, ignore_errors=True)


def body_size(args, url, bind, env, n):
    """The mean size of the publisher's bodies: `watch --format json`'s lines, less newlines."""
    out = subprocess.run(
        [args.syncrepl, "watch", url, "--refresh-only", "--format", "json", *bind],
        env=env, capture_output=True, check=True,
    ).stdout
    return max(1, (len(out) - out.count(b"\n")) // max(1, n))


def latency(args, server, nats, work, env, bind):
    """ldapmodify → publisher → JetStream → a consumer's line, one change at a time."""
    tag = "natslat"
    filterstr = f"(description={tag}*)"
    stream = ["--nats", nats.url, "--stream", "LATENCY", "--subject", "latency"]
    publisher = subprocess.Popen(
        [args.nats_bin, "publish", server.sync_url(filterstr), "--state",
         os.path.join(work, "latency"), *bind, *stream],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    # The stream exists once the publisher has connected; the consumer then follows it.
    deadline = time.time() + 20
    while True:
        probe = subprocess.run([args.nats_bin, "dump", *stream], capture_output=True)
        if probe.returncode == 0:
            break
        if time.time() > deadline:
            raise SystemExit("the publisher did not create its stream")
        time.sleep(0.1)
    follower = subprocess.Popen(
        [args.nats_bin, "dump", "--follow", *stream],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    seen = {}
    cond = threading.Condition()

    def read():
        for raw in follower.stdout:
            now = time.perf_counter()
            try:
                change = json.loads(raw)
            except ValueError:
                continue
            for value in change.get("attributes", {}).get("description", []):
                if isinstance(value, str) and value.startswith(tag):
                    with cond:
                        seen[value] = now
                        cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    modify = subprocess.Popen(
        ["ldapmodify", "-c"] + server.admin(),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    time.sleep(0.5)
    latencies = []
    for i in range(args.latency_changes):
        uid = f"user{i % server.people:05d}"
        value = f"{tag}{i}"
        start = time.perf_counter()
        modify.stdin.write(
            f"dn: uid={uid},ou=people,{server.base}\nchangetype: modify\n"
            f"replace: description\ndescription: {value}\n-\n\n"
        )
        modify.stdin.flush()
        with cond:
            if not cond.wait_for(lambda value=value: value in seen, timeout=10):
                raise SystemExit(f"no message for {value} within 10 s")
            latencies.append((seen.pop(value) - start) * 1000)
    modify.stdin.close()
    modify.wait(timeout=30)
    follower.terminate()
    publisher.terminate()
    follower.wait(timeout=30)
    publisher.wait(timeout=30)
    print(
        f"  persist latency ldapmodify -> JetStream consumer  median {median(latencies):6.2f} ms"
        f"  p99 {percentile(latencies, 99):6.2f} ms  max {max(latencies):6.2f} ms"
        f" ({len(latencies)} changes)",
        flush=True,
    )


if __name__ == "__main__":
    main()
